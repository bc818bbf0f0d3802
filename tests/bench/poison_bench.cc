// poison_bench: the memory-failure notifier path (issue 10, item 8). Owns the whole run, as
// dax_bench does: formats two devices in DIR, mounts daxfs on them (mce_kill=early) as child
// daemons, runs the measurements in a forked worker, prints Markdown tables, and unmounts, stops
// (by pid) and removes everything on every exit. Figures only, never a pass/fail gate
// (docs/benchmarks.md, "Memory failure").
//
// (1) Injection to the LAST of N mapper processes signalled: N = 1, 16, 64 processes (forked,
//     libdaxfs-client's daxfs_mmap) map either the same file or one reflink clone each, so the
//     poisoned block has 1 or N + 1 owners. Each mapper's SIGBUS handler (BUS_MCEERR_AO, early
//     kill) reads CLOCK_MONOTONIC and reports it through a pipe; the clock starts just before
//     pmemdev::Device::inject_error() (what `daxfsctl inject-error` calls), a fresh block per round.
// (2) The notifier with ~1M extents mounted against a nearly empty filesystem:
//     Filesystem::notify_failure timed in-process (before the daemon mounts the device), injection
//     to the holder's acknowledgement (Device::wait_notified(): the daemon's notify_failure has
//     returned) with no mapper and with one, `daxfsctl inject-error --json` as a whole command,
//     the mount time and the daemon's RSS.
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "daxcore/client/daxfs_client.h"
#include "daxcore/daxfs_ioctl.h"
#include "fs/filesystem.h"
#include "pmemdev/device.h"

#ifndef BUS_MCEERR_AO
#define BUS_MCEERR_AO 5
#endif

namespace {

namespace pmemdev = daxfs::pmemdev;

constexpr uint64_t kPage = 4096;
constexpr uint64_t kMiB = 1ULL << 20;
constexpr int kWaitMs = 10000;  // for any one acknowledgement or signal: far beyond the lease

const char kUsage[] =
    "usage: poison_bench [--quick] [--rounds N] [--dir DIR]\n"
    "The memory-failure notifier path: daxfsctl inject-error's library call to the last of N DAX\n"
    "mappers signalled (SIGBUS BUS_MCEERR_AO, mce_kill=early; N = 1, 16, 64; one file or one\n"
    "reflink clone each), and the notifier's cost with ~1M extents mounted against an empty\n"
    "filesystem. Formats and mounts its own devices in DIR and removes them on exit.\n"
    "  --quick      100k extents instead of 1M (1 GiB devices instead of 8 GiB), 3 rounds, fewer\n"
    "               samples: seconds (the full run: about a minute, 4 GiB of DIR)\n"
    "  --rounds N   injections per mapper count (after a cold one) and daxfsctl runs; figures are\n"
    "               medians over them (default 5, 3 quick)\n"
    "  --dir DIR    where the devices go (default /dev/shm)\n"
    "  --verbose    print every injection's CLOCK_MONOTONIC start and each mapper's signal time\n"
    "               (ms after it) on stderr, e.g. to cut a perf record -k mono trace\n";

struct Failure : std::runtime_error {
  using std::runtime_error::runtime_error;
};

[[noreturn]] void fail_errno(const std::string& what) { throw Failure(what + ": " + strerror(errno)); }

struct Options {
  bool quick = false;
  bool verbose = false;  // every injection's raw times on stderr (for perf record -k mono)
  int rounds = 0;
  std::string dir = "/dev/shm";
};

struct Sizes {
  uint64_t extents;         // of the big filesystem: every other block of one file written
  std::string device_size;  // mkfs.daxfs -s, both devices
  int samples;              // no-mapper injections per filesystem
  int mapper_samples;       // one-mapper injections per filesystem (after a cold one)
  int probes;               // in-process notify_failure calls per filesystem
};

Sizes sizes_for(bool quick) {
  if (quick) return {100000, "1G", 21, 7, 200};
  return {1000000, "8G", 101, 21, 1000};
}

uint64_t now_ns() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000ULL + static_cast<uint64_t>(ts.tv_nsec);
}
double ms_between(uint64_t a, uint64_t b) { return (static_cast<double>(b) - static_cast<double>(a)) / 1e6; }

double median(std::vector<double> v) {
  if (v.empty()) return NAN;
  std::sort(v.begin(), v.end());
  return v.size() % 2 ? v[v.size() / 2] : (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2;
}
double min_of(const std::vector<double>& v) { return v.empty() ? NAN : *std::min_element(v.begin(), v.end()); }
double max_of(const std::vector<double>& v) { return v.empty() ? NAN : *std::max_element(v.begin(), v.end()); }

std::string fmt(const char* f, double v) {
  if (std::isnan(v)) return "n/a";
  char b[64];
  snprintf(b, sizeof b, f, v);
  return b;
}

bool is_mounted(const std::string& mnt) {
  std::ifstream in("/proc/self/mounts");
  std::string dev, dir, rest;
  while (in >> dev >> dir && std::getline(in, rest))
    if (dir == mnt) return true;
  return false;
}

std::string read_file_text(const std::string& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// Runs a program to completion, its output into `log` (truncated first); its exit status, or -1.
int run_program(const std::vector<std::string>& argv, const std::string& log) {
  pid_t pid = fork();
  if (pid < 0) fail_errno("fork");
  if (pid == 0) {
    signal(SIGPIPE, SIG_DFL);
    int fd = open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd >= 0) dup2(fd, 1), dup2(fd, 2);
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    execv(args[0], args.data());
    _exit(127);
  }
  int status;
  while (waitpid(pid, &status, 0) < 0)
    if (errno != EINTR) return -1;
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

bool wait_exit(pid_t pid, int tenths) {
  for (int i = 0; i < tenths; i++) {
    int status;
    pid_t r = waitpid(pid, &status, WNOHANG);
    if (r == pid || (r < 0 && errno == ECHILD)) return true;
    usleep(100000);
  }
  return false;
}

// ---- The supervisor: devices, daemons, the worker, and the cleanup ---------------------------

volatile sig_atomic_t g_signal = 0;
extern "C" void on_signal(int sig) { g_signal = sig; }

// What the builder measured in-process (see prepare_device), passed to the supervisor in a file.
struct Probe {
  double notify_us_median = NAN, notify_us_min = NAN, notify_us_max = NAN;
  double api_mount_ms = NAN;
  int calls = 0;
};

struct Mount {
  std::string name, device, mnt, log;
  pid_t pid = -1;
  struct stat dev_st {};
  double mount_ms = NAN;  // the daemon's start to the mount's appearance
  double build_s = NAN;   // preparing the device before the mount (the extents, the probe)
  Probe probe;
};

struct Tools {
  std::string daxfs, mkfs, ctl;
};

Tools find_tools() {
  char exe[4096];
  ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
  if (n <= 0) fail_errno("readlink /proc/self/exe");
  exe[n] = 0;
  // poison_bench lives in BUILD/tests/bench; the daemon and its tools in BUILD/fs.
  std::filesystem::path build = std::filesystem::path(exe).parent_path().parent_path().parent_path();
  Tools t{(build / "fs/daxfs").string(), (build / "fs/mkfs.daxfs").string(), (build / "fs/daxfsctl").string()};
  for (const auto& p : {t.daxfs, t.mkfs, t.ctl})
    if (access(p.c_str(), X_OK) != 0) throw Failure(p + " is not built (run ninja -C " + build.string() + ")");
  return t;
}

const char kDaemonOptions[] = "mce_kill=early";

// Starts the daemon in the foreground (-f) as our child, in a session of its own (a Ctrl-C is
// for us: we unmount it), and waits up to 60 s for the mount (a mount of 1M extents rebuilds
// its reverse map first). Returns the milliseconds it took to appear.
double start_daemon(const Tools& tools, Mount& m) {
  if (mkdir(m.mnt.c_str(), 0755) != 0 && errno != EEXIST) fail_errno("mkdir " + m.mnt);
  uint64_t t0 = now_ns();
  pid_t pid = fork();
  if (pid < 0) fail_errno("fork");
  if (pid == 0) {
    setsid();
    signal(SIGPIPE, SIG_DFL);
    int fd = open(m.log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd >= 0) dup2(fd, 1), dup2(fd, 2);
    execl(tools.daxfs.c_str(), tools.daxfs.c_str(), m.device.c_str(), m.mnt.c_str(), "-f", "-o", kDaemonOptions,
          static_cast<char*>(nullptr));
    _exit(127);
  }
  m.pid = pid;
  for (int i = 0; i < 6000 && !g_signal; i++) {
    if (is_mounted(m.mnt)) return ms_between(t0, now_ns());
    int status;
    if (waitpid(pid, &status, WNOHANG) == pid) {
      m.pid = -1;
      throw Failure("daxfs exited before mounting " + m.mnt + ":\n" + read_file_text(m.log));
    }
    usleep(10000);
  }
  if (g_signal) throw Failure("interrupted");
  throw Failure("daxfs did not mount " + m.mnt + " within 60 s:\n" + read_file_text(m.log));
}

void stop_daemon(Mount& m) {
  if (!m.mnt.empty() && is_mounted(m.mnt)) {
    if (umount2(m.mnt.c_str(), 0) != 0 && run_program({"/bin/fusermount3", "-u", m.mnt}, "/dev/null") != 0) {
      fprintf(stderr, "poison_bench: %s is busy; detaching it\n", m.mnt.c_str());
      umount2(m.mnt.c_str(), MNT_DETACH);
    }
  }
  if (m.pid <= 0) return;
  if (!wait_exit(m.pid, 300)) {
    fprintf(stderr, "poison_bench: daxfs pid %d did not exit after unmounting %s; killing it\n", m.pid,
            m.mnt.c_str());
    kill(m.pid, SIGTERM);
    if (!wait_exit(m.pid, 20)) {
      kill(m.pid, SIGKILL);
      wait_exit(m.pid, 50);
    }
  }
  m.pid = -1;
}

// The DAX registry segment is named after the device (daxfs.<st_dev>.<st_ino>*); the daemon
// removes it on a clean unmount; this removes what a killed daemon left.
void remove_dax_segments(const Mount& m) {
  if (m.dev_st.st_ino == 0) return;
  std::string prefix = "daxfs." + std::to_string(m.dev_st.st_dev) + "." + std::to_string(m.dev_st.st_ino);
  DIR* d = opendir("/dev/shm");
  if (!d) return;
  while (dirent* e = readdir(d)) {
    std::string n = e->d_name;
    if (n == prefix || n.rfind(prefix + ".", 0) == 0) unlink(("/dev/shm/" + n).c_str());
  }
  closedir(d);
}

int worker_main(const Options& o, const Sizes& s, const Tools& tools, const Mount& small, const Mount& full,
                const std::string& work);

// Prepares a device before the daemon mounts it, through the Filesystem API in this process
// (about 100 times faster than 4 KiB writes through FUSE), and times its notifier there:
// - `extents` extents: one file with every other 4 KiB block written, so that each block is an
//   extent and a reverse-map segment of its own;
// - then a remount (the reverse map is rebuilt from the extent maps: timed), and `probes` calls of
//   Filesystem::notify_failure (the holder callback the device's notifier thread makes) for
//   distinct blocks of a small file: the filesystem's share of the notifier path (reverse-map
//   query, the log line) with no FUSE, no DAX layer and no wake-ups. No poison is recorded.
// Writes the Probe to `out`; 0 on success.
int prepare_device(const std::string& device, uint64_t extents, int probes, const std::string& out) {
  try {
    auto mount = [&](double* ms) {
      uint64_t t0 = now_ns();
      auto dev = pmemdev::Device::open(device, {});
      if (!dev) throw Failure(device + ": " + strerror(dev.error()));
      std::string why;
      auto mounted = daxfs::fs::Filesystem::mount(std::move(dev).value(), {}, why);
      if (!mounted) throw Failure("mount " + device + ": " + why);
      if (ms) *ms = ms_between(t0, now_ns());
      return std::move(mounted).value();
    };
    auto create = [](daxfs::fs::Filesystem& fs, const char* name) {
      auto st = fs.mknod(fs.root_ino(), name, S_IFREG | 0644, 0, {});
      if (!st) throw Failure(std::string("create ") + name + ": " + strerror(st.error()));
      return st->st_ino;
    };
    auto write = [](daxfs::fs::Filesystem& fs, uint64_t ino, uint64_t off, const char* data, size_t n) {
      auto w = fs.write(ino, off, data, n);
      if (!w) throw Failure(std::string("write: ") + strerror(w.error()));
    };
    uint64_t probe_ino;
    {
      auto fs = mount(nullptr);
      std::vector<char> block(kPage, 'x');
      if (extents > 0) {
        uint64_t ino = create(*fs, "extents");
        for (uint64_t i = 0; i < extents; i++) write(*fs, ino, 2 * i * kPage, block.data(), kPage);
        fs->forget(ino, 1);
      }
      probe_ino = create(*fs, "probe");
      std::vector<char> data(static_cast<size_t>(probes) * kPage, 'y');
      write(*fs, probe_ino, 0, data.data(), data.size());
      fs->forget(probe_ino, 1);
      fs->unmount();
    }
    Probe p;
    auto fs = mount(&p.api_mount_ms);
    std::vector<uint64_t> blocks;
    for (uint64_t start = 0; blocks.size() < static_cast<size_t>(probes);) {
      auto rows = fs->fiemap(probe_ino, start, 64);
      if (!rows || rows->empty()) throw Failure("fiemap of the probe file");
      for (const auto& r : *rows)
        for (uint64_t b = 0; b < r.length && blocks.size() < static_cast<size_t>(probes); b += kPage)
          blocks.push_back(r.physical + b);
      start = rows->back().logical + rows->back().length;
    }
    std::vector<double> us;
    for (uint64_t b : blocks) {
      uint64_t t0 = now_ns();
      fs->notify_failure(b, kPage, pmemdev::FailureKind::kMemoryFailure);
      us.push_back(static_cast<double>(now_ns() - t0) / 1e3);
    }
    fs->unmount();
    p.notify_us_median = median(us), p.notify_us_min = min_of(us), p.notify_us_max = max_of(us);
    p.calls = static_cast<int>(us.size());
    FILE* f = fopen(out.c_str(), "w");
    if (!f) fail_errno(out);
    fprintf(f, "%.6f %.6f %.6f %.6f %d\n", p.notify_us_median, p.notify_us_min, p.notify_us_max, p.api_mount_ms,
            p.calls);
    fclose(f);
    return 0;
  } catch (const std::exception& e) {
    fprintf(stderr, "poison_bench: preparing %s: %s\n", device.c_str(), e.what());
    return 1;
  }
}

Probe read_probe(const std::string& path) {
  Probe p;
  FILE* f = fopen(path.c_str(), "r");
  if (!f) fail_errno(path);
  int n = fscanf(f, "%lf %lf %lf %lf %d", &p.notify_us_median, &p.notify_us_min, &p.notify_us_max, &p.api_mount_ms,
                 &p.calls);
  fclose(f);
  if (n != 5) throw Failure(path + ": not what the builder writes");
  return p;
}

int supervise(const Options& o) {
  Sizes s = sizes_for(o.quick);
  Tools tools = find_tools();
  std::string tmpl = o.dir + "/poison-bench.XXXXXX";
  if (!mkdtemp(tmpl.data())) fail_errno("mkdtemp in " + o.dir);
  std::string work = tmpl;
  Mount small{"small", work + "/pmem-small", work + "/mnt-small", work + "/daxfs-small.log"};
  Mount full{"full", work + "/pmem-full", work + "/mnt-full", work + "/daxfs-full.log"};
  int rc = 1;
  pid_t worker = -1, builder = -1;
  try {
    for (Mount* m : {&small, &full}) {
      if (run_program({tools.mkfs, "-f", "-s", s.device_size, m->device}, work + "/mkfs.log") != 0)
        throw Failure("mkfs.daxfs " + m->device + " failed:\n" + read_file_text(work + "/mkfs.log"));
      if (stat(m->device.c_str(), &m->dev_st) != 0) fail_errno(m->device);
    }
    // The extents and the in-process notifier probe, in a child per device (the Filesystem
    // starts threads; this process forks more later). Its stderr (the filesystem's log line for
    // every probe) goes to a log file.
    int status = 0;
    for (Mount* m : {&small, &full}) {
      const uint64_t extents = m == &full ? s.extents : 0;
      fprintf(stderr, "poison_bench: preparing %s: %llu extents (every other 4 KiB block of one file)\n",
              m->name.c_str(), static_cast<unsigned long long>(extents));
      const std::string log = work + "/prepare-" + m->name + ".log", out = work + "/probe-" + m->name;
      fflush(stdout);
      fflush(stderr);
      uint64_t t0 = now_ns();
      builder = fork();
      if (builder < 0) fail_errno("fork");
      if (builder == 0) {
        for (int sig : {SIGINT, SIGTERM, SIGHUP}) signal(sig, SIG_DFL);
        int fd = open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd >= 0) dup2(fd, 2);
        _exit(prepare_device(m->device, extents, s.probes, out));
      }
      while (waitpid(builder, &status, 0) < 0) {
        if (errno != EINTR) fail_errno("waitpid");
        if (g_signal) throw Failure("interrupted");
      }
      builder = -1;
      if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        std::string text = read_file_text(log);
        size_t at = text.find("poison_bench:");
        throw Failure("preparing " + m->device + " failed: " + (at == std::string::npos ? text : text.substr(at)));
      }
      m->build_s = ms_between(t0, now_ns()) / 1e3;
      m->probe = read_probe(out);
    }
    for (Mount* m : {&small, &full}) m->mount_ms = start_daemon(tools, *m);
    fflush(stdout);
    fflush(stderr);
    worker = fork();
    if (worker < 0) fail_errno("fork");
    if (worker == 0) {
      int r = 1;
      try {
        r = worker_main(o, s, tools, small, full, work);
      } catch (const std::exception& e) {
        fprintf(stderr, "poison_bench: %s\n", e.what());
      }
      fflush(stdout);
      _exit(r);
    }
    while (waitpid(worker, &status, 0) < 0) {
      if (errno != EINTR) fail_errno("waitpid");
      if (g_signal) {
        kill(worker, SIGTERM);
        if (!wait_exit(worker, 50)) kill(worker, SIGKILL), wait_exit(worker, 50);
        worker = -1;
        break;
      }
    }
    if (worker > 0) {
      if (WIFEXITED(status)) rc = WEXITSTATUS(status);
      else fprintf(stderr, "poison_bench: the benchmark process died of signal %d\n", WTERMSIG(status));
    }
    worker = -1;
  } catch (const std::exception& e) {
    fprintf(stderr, "poison_bench: %s\n", e.what());
    for (pid_t p : {worker, builder})
      if (p > 0) kill(p, SIGKILL), wait_exit(p, 50);
  }
  stop_daemon(small);
  stop_daemon(full);
  remove_dax_segments(small);
  remove_dax_segments(full);
  if (is_mounted(small.mnt) || is_mounted(full.mnt)) {
    fprintf(stderr, "poison_bench: a mount under %s is still there; not removing it\n", work.c_str());
    return 1;
  }
  std::error_code ec;
  std::filesystem::remove_all(work, ec);
  if (ec) fprintf(stderr, "poison_bench: removing %s: %s\n", work.c_str(), ec.message().c_str());
  if (g_signal) return 128 + g_signal;
  return rc;
}

// ---- The worker: the measurements ----------------------------------------------------------

struct Fd {
  int fd = -1;
  Fd() = default;
  explicit Fd(int f) : fd(f) {}
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  Fd(Fd&& o) noexcept : fd(std::exchange(o.fd, -1)) {}
  Fd& operator=(Fd&& o) noexcept {
    if (this != &o) {
      if (fd >= 0) close(fd);
      fd = std::exchange(o.fd, -1);
    }
    return *this;
  }
  ~Fd() {
    if (fd >= 0) close(fd);
  }
};

Fd open_file(const std::string& path, int flags) {
  int fd = open(path.c_str(), flags | O_CLOEXEC, 0644);
  if (fd < 0) fail_errno("open " + path);
  return Fd(fd);
}

void pwrite_all(int fd, const void* buf, size_t n, uint64_t off, const std::string& what) {
  const char* p = static_cast<const char*>(buf);
  while (n > 0) {
    ssize_t w = pwrite(fd, p, n, static_cast<off_t>(off));
    if (w <= 0) fail_errno("write " + what);
    p += w, n -= static_cast<size_t>(w), off += static_cast<uint64_t>(w);
  }
}

// A file of `pages` written 4 KiB pages (one extent, normally).
void make_file(const std::string& path, uint64_t pages) {
  Fd fd = open_file(path, O_RDWR | O_CREAT | O_TRUNC);
  std::vector<char> data(pages * kPage, 'p');
  pwrite_all(fd.fd, data.data(), data.size(), 0, path);
}

// The device byte offset of the block behind `path` at page `page` (DAXFS_IOC_FIEMAP).
uint64_t device_offset(const std::string& path, uint64_t page) {
  Fd fd = open_file(path, O_RDONLY);
  auto m = std::make_unique<daxfs_fiemap>();
  memset(m.get(), 0, sizeof *m);
  m->start = page * kPage;
  if (ioctl(fd.fd, DAXFS_IOC_FIEMAP, m.get()) != 0) fail_errno("DAXFS_IOC_FIEMAP " + path);
  const uint64_t at = page * kPage;
  for (uint64_t i = 0; i < m->count; i++) {
    const daxfs_extent& x = m->extents[i];
    if (at >= x.logical && at < x.logical + x.length && !(x.flags & DAXFS_EXTENT_UNWRITTEN))
      return x.physical + (at - x.logical);
  }
  throw Failure(path + ": no written block at page " + std::to_string(page));
}

daxfs_fileinfo file_info(const std::string& path) {
  Fd fd = open_file(path, O_RDONLY);
  daxfs_fileinfo fi{};
  if (ioctl(fd.fd, DAXFS_IOC_FILEINFO, &fi) != 0) fail_errno("DAXFS_IOC_FILEINFO " + path);
  return fi;
}

// ---- Mappers: forked processes that map a file through libdaxfs-client --------------------

// What a mapper's SIGBUS handler reports, one write(2) each (atomic: below PIPE_BUF).
struct Record {
  int32_t index;   // the mapper's number
  int32_t code;    // si_code
  int64_t page;    // the page of its mapping that si_addr points into
  uint64_t t_ns;   // CLOCK_MONOTONIC when the handler ran
  uint64_t cpu_ns; // CLOCK_THREAD_CPUTIME_ID of the thread it ran on (the client's agent)
};

int g_report_fd = -1;
int32_t g_index = -1;
uintptr_t g_base = 0;

extern "C" void on_sigbus(int, siginfo_t* si, void*) {
  Record r{g_index, si->si_code, static_cast<int64_t>((reinterpret_cast<uintptr_t>(si->si_addr) - g_base) / kPage), 0,
           0};
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  r.t_ns = static_cast<uint64_t>(ts.tv_sec) * 1000000000ULL + static_cast<uint64_t>(ts.tv_nsec);
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  r.cpu_ns = static_cast<uint64_t>(ts.tv_sec) * 1000000000ULL + static_cast<uint64_t>(ts.tv_nsec);
  if (write(g_report_fd, &r, sizeof r) != sizeof r) {
    // nothing to do in a handler; the parent counts the records
  }
}

// N processes, mapper k mapping files[k] (read-only, MAP_SHARED, the whole file, every page
// touched once) until the group is destroyed. Each prints nothing; it reports "ready" (one byte)
// and then one Record per SIGBUS.
class Mappers {
 public:
  // Pages before `first_touch` are not touched: earlier rounds poisoned them (a touch would
  // raise BUS_MCEERR_AR again and again).
  Mappers(const std::vector<std::string>& files, uint64_t length, uint64_t first_touch) {
    int ready[2], report[2], hold[2];
    if (pipe2(ready, O_CLOEXEC) != 0 || pipe2(report, O_CLOEXEC) != 0 || pipe2(hold, O_CLOEXEC) != 0)
      fail_errno("pipe");
    ready_ = Fd(ready[0]), report_ = Fd(report[0]), hold_ = Fd(hold[1]);
    {
      Fd ready_w(ready[1]), report_w(report[1]), hold_r(hold[0]);
      for (size_t k = 0; k < files.size(); k++) {
        pid_t pid = fork();
        if (pid < 0) {
          int e = errno;
          stop();
          errno = e;
          fail_errno("fork");
        }
        if (pid == 0) {
          close(hold_.fd);  // only the parent may hold it open: its close is the exit signal
          child(static_cast<int>(k), files[k], length, first_touch, ready_w.fd, report_w.fd, hold_r.fd);
        }
        pids_.push_back(pid);
      }
      last_cpu_ns.assign(files.size(), 0);
    }  // the parent's copies of the children's ends: closed, so that a dead group reads EOF
    // Every mapper has mapped and touched its file (or died).
    for (size_t k = 0; k < files.size(); k++) {
      char c;
      if (!read_within(ready_.fd, &c, 1, kWaitMs)) {
        stop();
        throw Failure("a mapper did not map its file (daxfs_mmap failed or gave no DAX mapping?)");
      }
    }
  }
  ~Mappers() { stop(); }
  Mappers(const Mappers&) = delete;
  Mappers& operator=(const Mappers&) = delete;

  size_t size() const { return pids_.size(); }
  // Each mapper's agent CPU time at its previous signal (0: none yet), to take differences.
  mutable std::vector<uint64_t> last_cpu_ns;
  int report_fd() const { return report_.fd; }

  // Discards what is already in the report pipe; how many records that was.
  int drain() const {
    int n = 0;
    Record r;
    pollfd pf{report_.fd, POLLIN, 0};
    while (poll(&pf, 1, 0) > 0 && read(report_.fd, &r, sizeof r) == sizeof r) n++;
    return n;
  }

  // Reads exactly n bytes from fd within timeout_ms; false on timeout or EOF.
  static bool read_within(int fd, void* buf, size_t n, int timeout_ms) {
    uint64_t deadline = now_ns() + static_cast<uint64_t>(timeout_ms) * 1000000ULL;
    char* p = static_cast<char*>(buf);
    while (n > 0) {
      uint64_t t = now_ns();
      if (t >= deadline) return false;
      pollfd pf{fd, POLLIN, 0};
      int r = poll(&pf, 1, static_cast<int>((deadline - t) / 1000000ULL) + 1);
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0) return false;
      ssize_t got = read(fd, p, n);
      if (got < 0 && errno == EINTR) continue;
      if (got <= 0) return false;
      p += got, n -= static_cast<size_t>(got);
    }
    return true;
  }

 private:
  [[noreturn]] static void child(int index, const std::string& file, uint64_t length, uint64_t first_touch,
                                 int ready_w, int report_w, int hold_r) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() == 1) _exit(9);
    for (int sig : {SIGINT, SIGTERM, SIGHUP}) signal(sig, SIG_DFL);
    g_report_fd = report_w, g_index = index;
    struct sigaction sa {};
    sa.sa_sigaction = on_sigbus;
    sa.sa_flags = SA_SIGINFO | SA_RESTART;
    sigaction(SIGBUS, &sa, nullptr);
    int fd = open(file.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) _exit(2);
    void* m = daxfs_mmap(nullptr, length, PROT_READ, MAP_SHARED, fd, 0);
    if (m == MAP_FAILED || !daxfs_is_dax(m)) _exit(3);
    g_base = reinterpret_cast<uintptr_t>(m);
    for (uint64_t off = first_touch * kPage; off < length; off += kPage)
      (void)*static_cast<volatile char*>(static_cast<char*>(m) + off);
    if (write(ready_w, "r", 1) != 1) _exit(4);
    char c;
    while (read(hold_r, &c, 1) != 0) {  // until the parent closes its end (or dies)
      if (errno != EINTR) break;
    }
    _exit(0);
  }

  void stop() {
    hold_ = Fd();  // EOF: every mapper exits
    for (pid_t p : pids_) {
      if (!wait_exit(p, 50)) {
        kill(p, SIGKILL);
        wait_exit(p, 50);
      }
    }
    pids_.clear();
  }

  Fd ready_, report_, hold_;
  std::vector<pid_t> pids_;
};

// The device opened as `daxfsctl inject-error` opens it: the control file only.
pmemdev::OpenOptions ctl_only_options() {
  pmemdev::OpenOptions opts;
  opts.map = pmemdev::Map::kNo;
  return opts;
}

// One injection: the clock starts before Device::inject_error, then waits for the holder's
// acknowledgement and for one SIGBUS record from each mapper.
struct Sample {
  double inject_ms = NAN;    // inject_error returned
  double notified_ms = NAN;  // wait_notified returned (the daemon's notify_failure is done)
  double first_ms = NAN, last_ms = NAN;  // first and last mapper's SIGBUS handler
  int signalled = 0;         // records received that were right (BUS_MCEERR_AO, the right page)
  int wrong = 0;             // records with another code or page
  bool notified = false;
  uint64_t t0_ns = 0;
  std::vector<double> each_ms;  // every right record's signal time, in arrival order
  // Each signalled mapper's agent CPU time since its previous signal (the revoke's whole cycle:
  // wake-up, region scan, placeholder mmap, signal, ack, and the idle wake-ups in between).
  std::vector<double> cpu_us;
};

Sample inject(pmemdev::Device& dev, uint64_t offset, uint64_t page, const Mappers* mappers) {
  Sample s;
  if (mappers) s.wrong += mappers->drain();  // stale records: none expected
  uint64_t t0 = now_ns();
  s.t0_ns = t0;
  auto seq = dev.inject_error(offset, kPage);
  uint64_t t1 = now_ns();
  if (!seq) throw Failure(std::string("inject_error: ") + strerror(seq.error()));
  s.notified = dev.wait_notified(*seq, kWaitMs);
  uint64_t t2 = now_ns();
  s.inject_ms = ms_between(t0, t1);
  s.notified_ms = ms_between(t0, t2);
  if (!mappers) return s;
  uint64_t first = UINT64_MAX, last = 0;
  for (size_t k = 0; k < mappers->size(); k++) {
    Record r;
    if (!Mappers::read_within(mappers->report_fd(), &r, sizeof r, kWaitMs)) break;
    if (r.code != BUS_MCEERR_AO || r.page != static_cast<int64_t>(page)) {
      s.wrong++;
      continue;
    }
    s.signalled++;
    s.each_ms.push_back(ms_between(t0, r.t_ns));
    if (r.index >= 0 && static_cast<size_t>(r.index) < mappers->last_cpu_ns.size()) {
      uint64_t& prev = mappers->last_cpu_ns[static_cast<size_t>(r.index)];
      if (prev) s.cpu_us.push_back(static_cast<double>(r.cpu_ns - prev) / 1e3);
      prev = r.cpu_ns;
    }
    first = std::min(first, r.t_ns), last = std::max(last, r.t_ns);
  }
  if (s.signalled > 0) s.first_ms = ms_between(t0, first), s.last_ms = ms_between(t0, last);
  return s;
}

struct Bench {
  Options o;
  Sizes s;
  Tools tools;
  std::string work;
  Mount small, full;
  std::vector<std::string> notes;
  std::vector<std::string> problems;  // missed signals or acknowledgements: printed, exit status 1

  void reflink(const std::string& src, const std::string& dst) {
    if (run_program({tools.ctl, "reflink", src, dst}, work + "/daxfsctl.log") != 0)
      throw Failure("daxfsctl reflink failed:\n" + read_file_text(work + "/daxfsctl.log"));
  }
  void check(const Sample& x, size_t expect, const std::string& what) {
    if (o.verbose) {
      std::vector<double> each = x.each_ms;
      std::sort(each.begin(), each.end());
      std::string list;
      for (double ms : each) list += " " + fmt("%.3f", ms);
      fprintf(stderr, "poison_bench: %s: t0 %llu.%09llu, ack %.3f ms, signals (ms):%s\n", what.c_str(),
              static_cast<unsigned long long>(x.t0_ns / 1000000000ULL),
              static_cast<unsigned long long>(x.t0_ns % 1000000000ULL), x.notified_ms, list.c_str());
    }
    if (!x.notified) problems.push_back(what + ": the holder did not acknowledge within 10 s");
    if (static_cast<size_t>(x.signalled) != expect || x.wrong)
      problems.push_back(what + ": " + std::to_string(x.signalled) + " of " + std::to_string(expect) +
                         " mappers signalled as expected, " + std::to_string(x.wrong) + " wrong records");
  }

  void part_mappers();
  void part_extents();
};

// Part 1: injection to the last SIGBUS for N = 1, 16, 64 mappers of one file, or of one reflink
// clone each. Each variant forks its N mappers once (not timed); they map the whole source (or
// clone) and stay. Injection k poisons page k of the source, a fresh block each time (no
// clear-error needed). Injection 0 is the first revoke those processes ever see (cold: their
// client library's tables, lazily bound symbols and signal path are touched for the first time)
// and is reported on its own; injections 1..rounds are the figures.
void Bench::part_mappers() {
  const int counts[] = {1, 16, 64};
  struct Variant {
    bool clones;
    int n;
    std::string source;
    std::vector<std::string> files;  // what mapper k maps
    std::vector<uint64_t> offsets;   // the device offset of page k of the source
    Sample cold;
    std::vector<Sample> samples;
  };
  std::vector<Variant> variants;
  const uint64_t pages = static_cast<uint64_t>(o.rounds) + 1;
  for (bool clones : {false, true}) {
    for (int n : counts) {
      Variant v{clones, n, small.mnt + "/p1-" + (clones ? "clones-" : "same-") + std::to_string(n), {}, {}, {}, {}};
      make_file(v.source, pages);
      for (int k = 0; k < n; k++) {
        if (!clones) {
          v.files.push_back(v.source);
          continue;
        }
        std::string c = v.source + ".c" + std::to_string(k);
        reflink(v.source, c);
        v.files.push_back(c);
      }
      for (uint64_t p = 0; p < pages; p++) v.offsets.push_back(device_offset(v.source, p));
      if (clones && device_offset(v.files.back(), 0) != v.offsets[0])
        throw Failure("a reflink clone does not share its source's block");
      variants.push_back(std::move(v));
    }
  }
  auto dev = pmemdev::Device::open(small.device, ctl_only_options());
  if (!dev) throw Failure(small.device + ": " + strerror(dev.error()));
  fprintf(stderr, "poison_bench: part 1: %zu variants x (1 + %d) injections\n", variants.size(), o.rounds);
  for (Variant& v : variants) {
    Mappers m(v.files, pages * kPage, 0);
    const std::string name = std::string(v.clones ? "clones" : "same file") + ", N=" + std::to_string(v.n);
    for (uint64_t p = 0; p < pages; p++) {
      usleep(20000);  // let the fork and mapping storm, or the previous injection, settle
      Sample x = inject(**dev, v.offsets[p], p, &m);
      check(x, m.size(), name + (p == 0 ? ", cold" : ", round " + std::to_string(p)));
      if (p == 0) v.cold = x;
      else v.samples.push_back(x);
    }
  }
  printf("### Injection to the last mapper's SIGBUS (mce_kill=early), ms, %d rounds\n\n", o.rounds);
  printf("| mappers N | mapped file | owners of the block | last SIGBUS: median | min | max | first SIGBUS: median | "
         "holder ack: median | cold: last SIGBUS | agent CPU per revoke, us | 64 mappers < 10 ms? |\n");
  printf("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---|\n");
  for (const Variant& v : variants) {
    std::vector<double> last, first, ack, cpu;
    for (const Sample& x : v.samples) {
      if (static_cast<size_t>(x.signalled) == v.files.size()) last.push_back(x.last_ms);
      first.push_back(x.first_ms), ack.push_back(x.notified_ms);
      cpu.insert(cpu.end(), x.cpu_us.begin(), x.cpu_us.end());
    }
    std::string target = v.n == 64 ? (median(last) < 10.0 ? "yes" : "no") : "";
    double cold = static_cast<size_t>(v.cold.signalled) == v.files.size() ? v.cold.last_ms : NAN;
    printf("| %d | %s | %d | %s | %s | %s | %s | %s | %s | %s | %s |\n", v.n,
           v.clones ? "one reflink clone each" : "the same file", v.clones ? v.n + 1 : 1,
           fmt("%.3f", median(last)).c_str(), fmt("%.3f", min_of(last)).c_str(), fmt("%.3f", max_of(last)).c_str(),
           fmt("%.3f", median(first)).c_str(), fmt("%.3f", median(ack)).c_str(), fmt("%.3f", cold).c_str(),
           fmt("%.0f", median(cpu)).c_str(), target.c_str());
  }
  printf("\n");
}

// Part 2: the notifier with ~1M extents mounted. The full filesystem has one file with every
// other block written (each block an extent and a reverse-map segment of its own), written before
// the daemon mounted it (the mount rebuilt the reverse map from them: its time is a note). Both
// filesystems get a small victim file; each sample poisons a fresh page of it.
void Bench::part_extents() {
  const uint64_t extents = file_info(full.mnt + "/extents").extents;
  const int rounds = o.rounds;
  const uint64_t victim_pages = static_cast<uint64_t>(s.samples + 1 + s.mapper_samples + rounds);
  Mount* mounts[2] = {&small, &full};
  std::string victims[2];
  for (int i = 0; i < 2; i++) {
    victims[i] = mounts[i]->mnt + "/victim";
    make_file(victims[i], victim_pages);
  }
  auto rss = [](pid_t pid) -> double {
    std::ifstream in("/proc/" + std::to_string(pid) + "/status");
    std::string line;
    while (std::getline(in, line))
      if (line.rfind("VmRSS:", 0) == 0) return strtod(line.c_str() + 6, nullptr) / 1024;
    return NAN;
  };
  std::vector<uint64_t> offsets[2];
  for (int i = 0; i < 2; i++)
    for (uint64_t p = 0; p < victim_pages; p++) offsets[i].push_back(device_offset(victims[i], p));
  std::unique_ptr<pmemdev::Device> devs[2];
  for (int i = 0; i < 2; i++) {
    auto d = pmemdev::Device::open(mounts[i]->device, ctl_only_options());
    if (!d) throw Failure(mounts[i]->device + ": " + strerror(d.error()));
    devs[i] = std::move(d).value();
  }
  const std::string names[2] = {"nearly empty", std::to_string(extents) + " extents"};
  // (a) no mapper: inject -> acknowledged. The two filesystems alternate, the first one changing.
  std::vector<double> ack[2], inj[2];
  uint64_t page = 0;
  for (int k = 0; k < s.samples; k++, page++) {
    for (int j = 0; j < 2; j++) {
      int i = (j + k) % 2;
      Sample x = inject(*devs[i], offsets[i][page], page, nullptr);
      check(x, 0, names[i] + ", no mapper, sample " + std::to_string(k));
      ack[i].push_back(x.notified_ms), inj[i].push_back(x.inject_ms);
    }
  }
  // (b) one mapper of each victim (both alive throughout): inject -> SIGBUS, and ->
  // acknowledged; the first injection (cold, see part 1) is not counted.
  std::vector<double> sig1[2], ack1[2];
  {
    Mappers m0({victims[0]}, victim_pages * kPage, page), m1({victims[1]}, victim_pages * kPage, page);
    const Mappers* m[2] = {&m0, &m1};
    for (int r = 0; r <= s.mapper_samples; r++, page++) {
      for (int j = 0; j < 2; j++) {
        int i = (j + r) % 2;
        usleep(20000);
        Sample x = inject(*devs[i], offsets[i][page], page, m[i]);
        check(x, 1, names[i] + ", 1 mapper, " + (r == 0 ? "cold" : "round " + std::to_string(r)));
        if (r == 0) continue;
        if (x.signalled == 1) sig1[i].push_back(x.last_ms);
        ack1[i].push_back(x.notified_ms);
      }
    }
  }
  // (c) the command as a user runs it: daxfsctl inject-error MNT --file F --file-offset X --json
  // (fiemap, registry read, inject, wait for the acknowledgement, JSON), wall time.
  std::vector<double> cli[2];
  for (int r = 0; r < rounds; r++, page++) {
    for (int j = 0; j < 2; j++) {
      int i = (j + r) % 2;
      uint64_t t0 = now_ns();
      int rc = run_program({tools.ctl, "inject-error", mounts[i]->mnt, "--file", victims[i], "--file-offset",
                            std::to_string(page * kPage), "--json"},
                           work + "/inject.json");
      double ms = ms_between(t0, now_ns());
      std::string out = read_file_text(work + "/inject.json");
      if (rc != 0 || out.find("\"notified\": true") == std::string::npos)
        problems.push_back(names[i] + ": daxfsctl inject-error failed or was not acknowledged:\n" + out);
      else
        cli[i].push_back(ms);
    }
  }
  printf("### The notifier with %llu extents mounted\n\n", static_cast<unsigned long long>(extents));
  printf("| measurement | nearly empty: median | min | max | %s extents: median | min | max | ratio of medians |\n",
         std::to_string(extents).c_str());
  printf("|---|---:|---:|---:|---:|---:|---:|---:|\n");
  auto line = [&](const std::string& what, const char* f, double m0, double lo0, double hi0, double m1, double lo1,
                  double hi1) {
    printf("| %s | %s | %s | %s | %s | %s | %s | %s |\n", what.c_str(), fmt(f, m0).c_str(), fmt(f, lo0).c_str(),
           fmt(f, hi0).c_str(), fmt(f, m1).c_str(), fmt(f, lo1).c_str(), fmt(f, hi1).c_str(), fmt("%.2f", m1 / m0).c_str());
  };
  auto row = [&](const std::string& what, const std::vector<double>* v) {
    line(what, "%.3f", median(v[0]), min_of(v[0]), max_of(v[0]), median(v[1]), min_of(v[1]), max_of(v[1]));
  };
  const Probe& p0 = small.probe;
  const Probe& p1 = full.probe;
  line("Filesystem::notify_failure in-process, no FUSE, no DAX layer (" + std::to_string(p0.calls) + " calls), us",
       "%.2f", p0.notify_us_median, p0.notify_us_min, p0.notify_us_max, p1.notify_us_median, p1.notify_us_min,
       p1.notify_us_max);
  row("inject -> holder ack, no mapper (" + std::to_string(s.samples) + " samples), ms", ack);
  row("inject_error call alone, no mapper, ms", inj);
  row("inject -> SIGBUS, 1 mapper (" + std::to_string(s.mapper_samples) + " samples), ms", sig1);
  row("inject -> holder ack, 1 mapper, ms", ack1);
  row("`daxfsctl inject-error --json` wall time, no mapper (" + std::to_string(rounds) + " runs), ms", cli);
  line("mount: the daemon's start to the mount, ms (once)", "%.0f", small.mount_ms, NAN, NAN, full.mount_ms, NAN, NAN);
  line("mount through the Filesystem API, ms (once)", "%.0f", p0.api_mount_ms, NAN, NAN, p1.api_mount_ms, NAN, NAN);
  line("daemon RSS after the run, MiB", "%.0f", rss(small.pid), NAN, NAN, rss(full.pid), NAN, NAN);
  printf("\n");
  notes.push_back("the big file has " + std::to_string(extents) + " extents (DAXFS_IOC_FILEINFO); preparing the "
                  "device through the Filesystem API (the writes, a remount, the probe) took " +
                  fmt("%.1f", full.build_s) + " s");
}

int worker_main(const Options& o, const Sizes& s, const Tools& tools, const Mount& small, const Mount& full,
                const std::string& work) {
  for (int sig : {SIGINT, SIGTERM, SIGHUP}) signal(sig, SIG_DFL);
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  Bench b;
  b.o = o, b.s = s, b.tools = tools, b.work = work, b.small = small, b.full = full;
  double load[3] = {0, 0, 0};
  getloadavg(load, 3);
  printf("poison_bench%s: %d round(s), %ld CPUs, load %.2f at start, devices (%s each) in %s, mount option %s\n\n",
         o.quick ? " --quick" : "", o.rounds, sysconf(_SC_NPROCESSORS_ONLN), load[0], s.device_size.c_str(),
         work.c_str(), kDaemonOptions);
  fflush(stdout);
  uint64_t t0 = now_ns();
  b.part_mappers();
  fflush(stdout);
  b.part_extents();
  getloadavg(load, 3);
  b.notes.push_back("run took " + fmt("%.0f", ms_between(t0, now_ns()) / 1e3) + " s; load " + fmt("%.2f", load[0]) +
                    " at the end");
  for (const auto& n : b.notes) printf("- %s\n", n.c_str());
  for (const auto& p : b.problems) printf("- PROBLEM: %s\n", p.c_str());
  return b.problems.empty() ? 0 : 1;
}

Options parse_options(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; i++) {
    std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) throw Failure(a + " needs a value");
      return argv[++i];
    };
    if (a == "--help" || a == "-h") {
      fputs(kUsage, stdout);
      exit(0);
    } else if (a == "--quick") {
      o.quick = true;
    } else if (a == "--verbose") {
      o.verbose = true;
    } else if (a == "--rounds") {
      std::string v = value();
      char* end;
      long n = strtol(v.c_str(), &end, 10);
      if (*end || n < 1 || n > 99) throw Failure("--rounds must be 1..99");
      o.rounds = static_cast<int>(n);
    } else if (a == "--dir") {
      o.dir = value();
    } else {
      throw Failure("unknown option " + a + " (see --help)");
    }
  }
  if (o.rounds == 0) o.rounds = o.quick ? 3 : 5;
  return o;
}

}  // namespace

int main(int argc, char** argv) {
  setvbuf(stdout, nullptr, _IOLBF, 0);
  struct sigaction sa {};
  sa.sa_handler = on_signal;  // no SA_RESTART: the supervisor's waits return EINTR
  for (int sig : {SIGINT, SIGTERM, SIGHUP}) sigaction(sig, &sa, nullptr);
  signal(SIGPIPE, SIG_IGN);  // a closed stdout must not kill the supervisor before its cleanup
  try {
    return supervise(parse_options(argc, argv));
  } catch (const std::exception& e) {
    fprintf(stderr, "poison_bench: %s\n", e.what());
    return 1;
  }
}
