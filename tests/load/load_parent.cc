// The load test's parent (load_parent.h). The daemon runs in the foreground as our child, as
// tests/support/mount.h runs it (that header pulls in Catch2, so the few lines are repeated here).
#include "tests/load/load_parent.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "tests/load/load_common.h"

namespace daxfs::load {
namespace {

using Clock = std::chrono::steady_clock;

// "Flat": after the warm-up sample the daemon's anonymous memory may grow by at most this much
// (docs/reliability.md, "Load", says why these figures).
constexpr double kRssGrowth = 0.25;
constexpr uint64_t kRssSlackKiB = 16 * 1024;
constexpr uint64_t kFdSlack = 16;

std::string build_dir() {
  auto dir = std::filesystem::read_symlink("/proc/self/exe").parent_path();
  while (!dir.empty() && dir != "/" && !std::filesystem::exists(dir / "build.ninja")) dir = dir.parent_path();
  return dir.string();
}

bool is_mounted(const std::string& mnt) {
  std::ifstream in("/proc/self/mountinfo");
  std::string line;
  while (std::getline(in, line))
    if (line.find(" " + mnt + " ") != std::string::npos) return true;
  return false;
}

// Forks and execs argv; stdout and stderr to `log` when given. The child's pid, or -1.
pid_t spawn(const std::vector<std::string>& argv, const std::string& log = "") {
  pid_t pid = fork();
  if (pid != 0) return pid;
  if (!log.empty()) {
    int fd = open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    dup2(fd, 1);
    dup2(fd, 2);
  }
  std::vector<char*> cargv;
  for (const auto& a : argv) cargv.push_back(const_cast<char*>(a.c_str()));
  cargv.push_back(nullptr);
  execv(cargv[0], cargv.data());
  _exit(127);
}

struct Sample {
  double t = 0;
  uint64_t vm_rss_kib = 0, rss_anon_kib = 0, rss_shmem_kib = 0, fds = 0;
};

bool sample(pid_t pid, double t, Sample& s) {
  s = Sample{};
  s.t = t;
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string key;
  uint64_t value;
  while (in >> key) {
    if (key == "VmRSS:" && in >> value) s.vm_rss_kib = value;
    else if (key == "RssAnon:" && in >> value) s.rss_anon_kib = value;
    else if (key == "RssShmem:" && in >> value) s.rss_shmem_kib = value;
  }
  DIR* d = opendir(("/proc/" + std::to_string(pid) + "/fd").c_str());
  if (!d) return false;
  while (dirent* e = readdir(d)) s.fds += e->d_name[0] != '.';
  closedir(d);
  return s.vm_rss_kib > 0;
}

std::string mib(uint64_t kib) {
  std::ostringstream o;
  o << std::fixed << std::setprecision(1) << kib / 1024.0 << " MiB";
  return o.str();
}

class LoadRun {
 public:
  explicit LoadRun(const LoadOptions& o) : o_(o), build_(build_dir()) {}
  ~LoadRun() { cleanup(); }

  bool run() {
    char tmpl[] = "/dev/shm/daxfs-load-XXXXXX";
    if (!mkdtemp(tmpl)) return problem(std::string("mkdtemp: ") + strerror(errno));
    dir_ = tmpl;
    device_ = dir_ + "/pmem0";
    mnt_ = dir_ + "/mnt";
    std::filesystem::create_directory(mnt_);
    std::cout << "load: " << o_.procs << " processes for " << o_.seconds << " s, seed " << o_.seed << ", device "
              << device_ << "\n";
    std::string out;
    if (run_capture({build_ + "/fs/mkfs.daxfs", "-s", "1G", device_}, &out) != 0) return problem("mkfs: " + out);
    if (!start_daemon()) return false;
    auto t0 = Clock::now();
    auto elapsed = [&] { return std::chrono::duration<double>(Clock::now() - t0).count(); };
    Sample s;
    if (sample(daemon_, 0, s)) samples_.push_back(s);
    start_workers();
    // Sample every sixth of the run; reap workers; watch the daemon. Workers get the run plus a
    // generous grace for their final comparison before they count as hung.
    double interval = o_.seconds / 6, next = interval, limit = o_.seconds + 120 + o_.seconds / 2;
    while (live_workers() > 0) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
      int st;
      if (waitpid(daemon_, &st, WNOHANG) == daemon_) {
        daemon_ = -1;
        problem("the daemon exited during the run (log: " + dir_ + "/daemon.log)");
        break;
      }
      if (elapsed() >= next && next <= o_.seconds + interval / 2) {
        if (sample(daemon_, elapsed(), s)) samples_.push_back(s);
        next += interval;
      }
      if (elapsed() > limit) {
        problem("workers still running " + std::to_string(static_cast<int>(limit)) + " s after the start");
        break;
      }
    }
    if (daemon_ > 0 && sample(daemon_, elapsed(), s)) samples_.push_back(s);  // after the final comparisons
    duration_ = elapsed();
    kill_workers();
    collect_reports();
    stop_daemon();
    if (!mounted_) check_device();
    check_memory();
    summary();
    return problems_.empty();
  }

 private:
  bool problem(const std::string& what) {
    problems_.push_back(what);
    std::cerr << "load: " << what << "\n";
    return false;
  }

  bool start_daemon() {
    daemon_ = spawn({build_ + "/fs/daxfs", device_, mnt_, "-f"}, dir_ + "/daemon.log");
    for (int i = 0; i < 1000 && !is_mounted(mnt_); i++) {
      int st;
      if (waitpid(daemon_, &st, WNOHANG) == daemon_) {
        daemon_ = -1;
        return problem("the daemon exited before mounting (log: " + dir_ + "/daemon.log)");
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    mounted_ = is_mounted(mnt_);
    return mounted_ || problem("the mount did not appear");
  }

  // Worker 0 is the victim; workers 1 .. max(2, procs / 5) map their files; the rest are file workers.
  void start_workers() {
    int mapped = std::max(2, o_.procs / 5);
    std::string self = std::filesystem::read_symlink("/proc/self/exe").string(), ctl = build_ + "/fs/daxfsctl";
    for (int i = 0; i < o_.procs; i++) {
      std::string role = i == 0 ? "victim" : i <= mapped ? "mapped" : "files";
      std::vector<std::string> argv;
      if (role != "files") argv = {ctl, "run", "--"};
      argv.insert(argv.end(), {self, "--worker", std::to_string(i), "--role", role, "--dir",
                               mnt_ + "/w" + std::to_string(i), "--mnt", mnt_, "--ctl", ctl, "--report",
                               report(i), "--seconds", std::to_string(o_.seconds), "--seed",
                               std::to_string(o_.seed * 1000 + static_cast<uint64_t>(i))});
      roles_.push_back(role);
      workers_.push_back(spawn(argv));
    }
  }
  std::string report(int i) const { return dir_ + "/report." + std::to_string(i); }

  int live_workers() {
    int live = 0;
    for (size_t i = 0; i < workers_.size(); i++) {
      if (workers_[i] <= 0) continue;
      int st;
      if (waitpid(workers_[i], &st, WNOHANG) == workers_[i]) {
        workers_[i] = -1;
        int rc = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
        if (rc != 0) problem("worker " + std::to_string(i) + " (" + roles_[i] + ") exited with status " + std::to_string(rc));
      } else {
        live++;
      }
    }
    return live;
  }

  void kill_workers() {
    for (pid_t& pid : workers_) {
      if (pid <= 0) continue;
      kill(pid, SIGKILL);
      int st;
      waitpid(pid, &st, 0);
      pid = -1;
    }
  }

  void collect_reports() {
    for (size_t i = 0; i < workers_.size(); i++) {
      Tally one;
      if (!add_report(report(static_cast<int>(i)), one)) {
        problem("worker " + std::to_string(i) + " (" + roles_[i] + ") left no complete report");
        continue;
      }
      for (auto& [k, n] : one.ops) tally_.ops[k] += n;
      for (auto& [k, n] : one.expected) tally_.expected[k] += n;
      tally_.unexpected += one.unexpected;
    }
    if (tally_.unexpected) problem(std::to_string(tally_.unexpected) + " unexpected errors (above)");
    // The victim must have gone through the whole poison cycle: otherwise nothing was tested.
    if (!tally_.expected["sigbus"] || !tally_.expected["eio-read"]) problem("no poison cycle completed");
  }

  // Unmounts and waits for the daemon (killed and reported after 10 s).
  void stop_daemon() {
    if (mounted_ && umount2(mnt_.c_str(), 0) != 0) {
      problem(std::string("umount: ") + strerror(errno));
      umount2(mnt_.c_str(), MNT_DETACH);
    }
    mounted_ = false;
    if (daemon_ <= 0) return;
    int st;
    for (int i = 0; i < 1000; i++) {
      if (waitpid(daemon_, &st, WNOHANG) == daemon_) {
        daemon_ = -1;
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) problem("the daemon exited with status " + std::to_string(st));
        return;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    kill(daemon_, SIGKILL);
    waitpid(daemon_, &st, 0);
    daemon_ = -1;
    problem("the daemon did not exit after the unmount");
  }

  void check_device() {
    std::string fsck = build_ + "/fs/fsck/fsck.daxfs";
    if (access(fsck.c_str(), X_OK) != 0) fsck = build_ + "/fs/fsck.daxfs";
    fsck_rc_ = run_capture({fsck, "-n", device_}, &fsck_out_);
    if (fsck_rc_ != 0) problem("fsck.daxfs -n exited " + std::to_string(fsck_rc_) + ":\n" + fsck_out_);
    std::string out;
    int rc = run_capture({build_ + "/fs/daxfsctl", "list-errors", device_}, &out);
    if (rc != 0 || out.find("no badblocks") == std::string::npos) problem("poison left on the device: " + out);
  }

  void check_memory() {
    const Sample* warm = nullptr;
    for (const Sample& s : samples_)
      if (!warm && s.t >= o_.seconds * 0.1) warm = &s;
    if (!warm || warm == &samples_.back()) return void(problem("too few memory samples to judge"));
    const Sample& last = samples_.back();
    uint64_t allowed = static_cast<uint64_t>(warm->rss_anon_kib * (1 + kRssGrowth)) + kRssSlackKiB;
    if (last.rss_anon_kib > allowed)
      problem("daemon memory grew: anonymous RSS " + mib(warm->rss_anon_kib) + " -> " + mib(last.rss_anon_kib) +
              " (allowed " + mib(allowed) + ")");
    if (last.fds > warm->fds + kFdSlack)
      problem("daemon fds grew: " + std::to_string(warm->fds) + " -> " + std::to_string(last.fds));
  }

  void summary() {
    uint64_t total = 0;
    for (auto& [k, n] : tally_.ops) total += n;
    std::cout << "load: duration " << std::fixed << std::setprecision(1) << duration_ << " s, " << o_.procs
              << " processes, seed " << o_.seed << "\n";
    std::cout << "load: ops " << total << ":";
    for (auto& [k, n] : tally_.ops) std::cout << " " << k << "=" << n;
    uint64_t expected = 0;
    std::cout << "\nload: expected errors:";
    for (auto& [k, n] : tally_.expected) {
      std::cout << " " << k << "=" << n;
      expected += n;
    }
    std::cout << " (" << expected << ")\nload: unexpected errors: " << tally_.unexpected << "\n";
    for (const Sample& s : samples_)
      std::cout << "load: daemon at " << std::setprecision(0) << s.t << " s: VmRSS " << mib(s.vm_rss_kib)
                << ", RssAnon " << mib(s.rss_anon_kib) << ", RssShmem " << mib(s.rss_shmem_kib) << ", fds " << s.fds
                << "\n";
    std::cout << "load: fsck.daxfs -n: " << (fsck_rc_ == 0 ? "clean (exit 0)" : "exit " + std::to_string(fsck_rc_))
              << "\n";
    for (const auto& p : problems_) std::cout << "load: problem: " << p << "\n";
    if (!problems_.empty()) {
      std::string log;
      run_capture({"/usr/bin/tail", "-n", "20", dir_ + "/daemon.log"}, &log);
      std::cout << "load: the daemon's log ends:\n" << log;
    }
    std::cout << "load: " << (problems_.empty() ? "PASS" : "FAIL") << "\n";
  }

  void cleanup() {
    kill_workers();
    if (mounted_) umount2(mnt_.c_str(), MNT_DETACH);
    if (daemon_ > 0) {
      int st;
      kill(daemon_, SIGKILL);
      waitpid(daemon_, &st, 0);
    }
    if (!dir_.empty() && !o_.keep) {
      std::error_code ec;
      std::filesystem::remove_all(dir_, ec);
    } else if (!dir_.empty()) {
      std::cout << "load: kept " << dir_ << "\n";
    }
  }

  const LoadOptions& o_;
  std::string build_, dir_, device_, mnt_;
  pid_t daemon_ = -1;
  bool mounted_ = false;
  std::vector<pid_t> workers_;
  std::vector<std::string> roles_;
  std::vector<Sample> samples_;
  Tally tally_;
  std::vector<std::string> problems_;
  double duration_ = 0;
  int fsck_rc_ = -1;
  std::string fsck_out_;
};

}  // namespace

bool run_load(const LoadOptions& options) { return LoadRun(options).run(); }

}  // namespace daxfs::load
