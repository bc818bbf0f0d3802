// dax_bench: DAX mappings of daxfs files (libdaxfs-client's daxfs_mmap) against their baselines:
// the device file mapped directly, the kernel page cache (a dax=never mount) and tmpfs. Owns the
// whole run: it formats two devices in DIR, mounts daxfs on them (dax=always, dax=never) as child
// daemons, runs every row interleaved round by round, prints medians and ratios as a Markdown
// table, and unmounts, stops (by pid) and removes everything on every exit. Figures only, never a
// pass/fail gate (docs/benchmarks.md, "DAX mappings").
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/vfs.h>
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
#include <functional>
#include <memory>
#include <random>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "daxcore/client/daxfs_client.h"
#include "daxcore/daxfs_ioctl.h"

namespace {

constexpr uint64_t kPage = 4096;
constexpr uint64_t kMiB = 1ULL << 20;
constexpr uint64_t kGiB = 1ULL << 30;

const char kUsage[] =
    "usage: dax_bench [--quick] [--rounds N] [--dir DIR]\n"
    "DAX mappings (daxfs_mmap) against the device mapping, the page cache (dax=never) and tmpfs:\n"
    "sequential and random copy rates, fault latency, mapping set-up and layout-break latency.\n"
    "Formats and mounts its own devices in DIR and removes them on exit.\n"
    "  --quick      64 MiB files, fewer samples: under a minute\n"
    "  --rounds N   rounds, interleaving the targets; figures are medians (default 5, 3 quick)\n"
    "  --dir DIR    where the devices and the tmpfs baseline file go (default /dev/shm)\n";

struct Failure : std::runtime_error {
  using std::runtime_error::runtime_error;
};

[[noreturn]] void fail_errno(const std::string& what) { throw Failure(what + ": " + strerror(errno)); }

struct Options {
  bool quick = false;
  int rounds = 0;
  std::string dir = "/dev/shm";
};

// The sizes of one run; --quick shrinks all of them.
struct Sizes {
  uint64_t big;             // the sequential/random file and the 1-extent set-up file
  uint64_t buffer;          // the DRAM side of every copy
  uint64_t random_stores;   // 4 KiB stores per random-store measurement
  int fault_samples;        // faults timed per kind and round
  uint64_t extents;         // extents of the fragmented set-up file
  uint64_t break_file;      // the file the layout-break row punches
  int punches;              // punches timed per mapper count and round
  std::string always_size, never_size;  // mkfs.daxfs -s
};

Sizes sizes_for(bool quick) {
  if (quick) return {64 * kMiB, 16 * kMiB, 16384, 256, 1000, 4 * kMiB, 3, "1G", "512M"};
  return {kGiB, 64 * kMiB, 65536, 1024, 10000, 16 * kMiB, 5, "4G", "2G"};
}

uint64_t now_ns() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000ULL + static_cast<uint64_t>(ts.tv_nsec);
}

double median(std::vector<double> v) {
  if (v.empty()) return NAN;
  std::sort(v.begin(), v.end());
  return v.size() % 2 ? v[v.size() / 2] : (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2;
}

double p99(std::vector<double> v) {
  if (v.empty()) return NAN;
  std::sort(v.begin(), v.end());
  size_t i = static_cast<size_t>(std::ceil(0.99 * static_cast<double>(v.size()))) - 1;
  return v[std::min(i, v.size() - 1)];
}

// Keeps the compiler from dropping copies whose destination is never read.
void clobber(const void* p) { asm volatile("" : : "r"(p) : "memory"); }

bool is_mounted(const std::string& mnt) {
  std::ifstream in("/proc/self/mounts");
  std::string dev, dir, rest;
  while (in >> dev >> dir && std::getline(in, rest))
    if (dir == mnt) return true;
  return false;
}

// Runs a program to completion, its output into `log` (appended); its exit status, or -1.
int run_program(const std::vector<std::string>& argv, const std::string& log) {
  pid_t pid = fork();
  if (pid < 0) fail_errno("fork");
  if (pid == 0) {
    signal(SIGPIPE, SIG_DFL);
    int fd = open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
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

std::string read_file_text(const std::string& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// ---- The supervisor: devices, daemons, the worker, and the cleanup ---------------------------

volatile sig_atomic_t g_signal = 0;
extern "C" void on_signal(int sig) { g_signal = sig; }

struct Mount {
  std::string name, device, mnt, log;
  pid_t pid = -1;
  struct stat dev_st {};
};

struct Tools {
  std::string daxfs, mkfs, ctl;
};

Tools find_tools() {
  char exe[4096];
  ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
  if (n <= 0) fail_errno("readlink /proc/self/exe");
  exe[n] = 0;
  // dax_bench lives in BUILD/tests/bench; the daemon and its tools in BUILD/fs.
  std::filesystem::path build = std::filesystem::path(exe).parent_path().parent_path().parent_path();
  Tools t{(build / "fs/daxfs").string(), (build / "fs/mkfs.daxfs").string(), (build / "fs/daxfsctl").string()};
  for (const auto& p : {t.daxfs, t.mkfs, t.ctl})
    if (access(p.c_str(), X_OK) != 0) throw Failure(p + " is not built (run ninja -C " + build.string() + ")");
  return t;
}

// Starts the daemon in the foreground (-f) as our child, in a session of its own (a Ctrl-C is
// for us: we unmount it), and waits up to 10 s for the mount.
void start_daemon(const Tools& tools, Mount& m, const std::string& options) {
  if (mkdir(m.mnt.c_str(), 0755) != 0) fail_errno("mkdir " + m.mnt);
  pid_t pid = fork();
  if (pid < 0) fail_errno("fork");
  if (pid == 0) {
    setsid();
    signal(SIGPIPE, SIG_DFL);
    int fd = open(m.log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd >= 0) dup2(fd, 1), dup2(fd, 2);
    execl(tools.daxfs.c_str(), tools.daxfs.c_str(), m.device.c_str(), m.mnt.c_str(), "-f", "-o", options.c_str(),
          static_cast<char*>(nullptr));
    _exit(127);
  }
  m.pid = pid;
  for (int i = 0; i < 100 && !g_signal; i++) {
    if (is_mounted(m.mnt)) return;
    int status;
    if (waitpid(pid, &status, WNOHANG) == pid) {
      m.pid = -1;
      throw Failure("daxfs (" + options + ") exited before mounting " + m.mnt + ":\n" + read_file_text(m.log));
    }
    usleep(100000);
  }
  if (g_signal) throw Failure("interrupted");
  throw Failure("daxfs (" + options + ") did not mount " + m.mnt + " within 10 s:\n" + read_file_text(m.log));
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

void stop_daemon(Mount& m) {
  if (!m.mnt.empty() && is_mounted(m.mnt)) {
    if (umount2(m.mnt.c_str(), 0) != 0 && run_program({"/bin/fusermount3", "-u", m.mnt}, "/dev/null") != 0) {
      fprintf(stderr, "dax_bench: %s is busy; detaching it\n", m.mnt.c_str());
      umount2(m.mnt.c_str(), MNT_DETACH);
    }
  }
  if (m.pid <= 0) return;
  if (!wait_exit(m.pid, 100)) {
    fprintf(stderr, "dax_bench: daxfs pid %d did not exit after unmounting %s; killing it\n", m.pid, m.mnt.c_str());
    kill(m.pid, SIGTERM);
    if (!wait_exit(m.pid, 20)) {
      kill(m.pid, SIGKILL);
      wait_exit(m.pid, 50);
    }
  }
  m.pid = -1;
}

// The DAX registry and channel segments are named after the device (daxfs.<st_dev>.<st_ino>*);
// the daemon removes them on a clean unmount; this removes what a killed daemon left.
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

int worker_main(const Options& o, const Sizes& s, const Tools& tools, const Mount& always, const Mount& never,
                const std::string& work);

int supervise(const Options& o) {
  Sizes s = sizes_for(o.quick);
  Tools tools = find_tools();
  struct statfs sf;
  if (statfs(o.dir.c_str(), &sf) != 0) fail_errno(o.dir);
  std::string tmpl = o.dir + "/dax-bench.XXXXXX";
  if (!mkdtemp(tmpl.data())) fail_errno("mkdtemp in " + o.dir);
  std::string work = tmpl;
  Mount always{"always", work + "/pmem-always", work + "/mnt-always", work + "/daxfs-always.log"};
  Mount never{"never", work + "/pmem-never", work + "/mnt-never", work + "/daxfs-never.log"};
  int rc = 1;
  pid_t worker = -1;
  try {
    for (auto [m, size] : {std::pair{&always, s.always_size}, std::pair{&never, s.never_size}}) {
      if (run_program({tools.mkfs, "-f", "-s", size, m->device}, work + "/mkfs.log") != 0)
        throw Failure("mkfs.daxfs " + m->device + " failed:\n" + read_file_text(work + "/mkfs.log"));
      if (stat(m->device.c_str(), &m->dev_st) != 0) fail_errno(m->device);
      start_daemon(tools, *m, "dax=" + m->name);
    }
    fflush(stdout);
    worker = fork();
    if (worker < 0) fail_errno("fork");
    if (worker == 0) {
      int r = 1;
      try {
        r = worker_main(o, s, tools, always, never, work);
      } catch (const std::exception& e) {
        fprintf(stderr, "dax_bench: %s\n", e.what());
      }
      fflush(stdout);
      _exit(r);
    }
    int status = 0;
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
      else fprintf(stderr, "dax_bench: the benchmark process died of signal %d\n", WTERMSIG(status));
    }
    worker = -1;
  } catch (const std::exception& e) {
    fprintf(stderr, "dax_bench: %s\n", e.what());
    if (worker > 0) kill(worker, SIGKILL), wait_exit(worker, 50);
  }
  stop_daemon(always);
  stop_daemon(never);
  remove_dax_segments(always);
  remove_dax_segments(never);
  if (is_mounted(always.mnt) || is_mounted(never.mnt)) {
    fprintf(stderr, "dax_bench: a mount under %s is still there; not removing it\n", work.c_str());
    return 1;
  }
  std::error_code ec;
  std::filesystem::remove_all(work, ec);
  if (ec) fprintf(stderr, "dax_bench: removing %s: %s\n", work.c_str(), ec.message().c_str());
  if (g_signal) return 128 + g_signal;
  return rc;
}

// ---- The worker: the measurements ----------------------------------------------------------

// An owned file descriptor.
struct Fd {
  int fd = -1;
  Fd() = default;
  explicit Fd(int f) : fd(f) {}
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  Fd(Fd&& o) noexcept : fd(std::exchange(o.fd, -1)) {}
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

// Writes `size` bytes of a pattern (allocating every block), 1 MiB at a time.
void fill_file(int fd, uint64_t size, const std::string& what) {
  std::vector<char> chunk(kMiB);
  for (size_t i = 0; i < chunk.size(); i++) chunk[i] = static_cast<char>('a' + i % 23);
  for (uint64_t off = 0; off < size; off += kMiB) pwrite_all(fd, chunk.data(), std::min(kMiB, size - off), off, what);
}

std::vector<daxfs_extent> extents_of(int fd) {
  std::vector<daxfs_extent> out;
  auto m = std::make_unique<daxfs_fiemap>();
  uint64_t start = 0;
  for (;;) {
    memset(m.get(), 0, sizeof *m);
    m->start = start;
    if (ioctl(fd, DAXFS_IOC_FIEMAP, m.get()) != 0) fail_errno("DAXFS_IOC_FIEMAP");
    for (uint64_t i = 0; i < m->count; i++) {
      out.push_back(m->extents[i]);
      start = m->extents[i].logical + m->extents[i].length;
    }
    if (m->count < DAXFS_FIEMAP_MAX) break;
  }
  return out;
}

char* dax_map(int fd, uint64_t length, uint64_t offset = 0) {
  void* p = daxfs_mmap(nullptr, length, PROT_READ | PROT_WRITE, MAP_SHARED, fd, static_cast<off_t>(offset));
  if (p == MAP_FAILED) fail_errno("daxfs_mmap");
  if (!daxfs_is_dax(p)) throw Failure("daxfs_mmap gave a kernel mapping, not a DAX one (is the device writable?)");
  return static_cast<char*>(p);
}

void dax_unmap(void* p, uint64_t length) {
  if (daxfs_munmap(p, length) != 0) fail_errno("daxfs_munmap");
}

// One comparison line of the report.
struct Line {
  std::string what, dax, baseline, base;  // formatted figures
  double ratio = NAN;
  std::string target, note;
};

std::string fmt(const char* f, double v) {
  if (std::isnan(v)) return "n/a";
  char b[64];
  snprintf(b, sizeof b, f, v);
  return b;
}

struct Bench {
  Options o;
  Sizes s;
  Tools tools;
  std::string always, never, work, tmp_dir, device;
  char* buf = nullptr;  // the DRAM side of the copies (s.buffer bytes)
  std::vector<Line> lines;
  std::vector<std::string> notes;
  std::mt19937_64 rng{42};

  // Rotates the order of `jobs` by `round`, so that drift spreads over all targets.
  static void interleave(int round, const std::vector<std::function<void()>>& jobs) {
    for (size_t k = 0; k < jobs.size(); k++) jobs[(k + static_cast<size_t>(round)) % jobs.size()]();
  }

  double seq_read(const char* map, uint64_t size) {
    uint64_t t0 = now_ns();
    for (uint64_t off = 0; off < size; off += kMiB) memcpy(buf + off % s.buffer, map + off, kMiB);
    clobber(buf);
    return static_cast<double>(size) / kMiB / (static_cast<double>(now_ns() - t0) / 1e9);
  }
  double seq_write(char* map, uint64_t size) {
    uint64_t t0 = now_ns();
    for (uint64_t off = 0; off < size; off += kMiB) memcpy(map + off, buf + off % s.buffer, kMiB);
    clobber(map);
    return static_cast<double>(size) / kMiB / (static_cast<double>(now_ns() - t0) / 1e9);
  }
  // Thousands of 4 KiB stores per second at the given page offsets.
  double random_stores(char* map, const std::vector<uint32_t>& pages) {
    const uint64_t buf_pages = s.buffer / kPage;
    uint64_t t0 = now_ns();
    for (size_t i = 0; i < pages.size(); i++) memcpy(map + pages[i] * kPage, buf + (i % buf_pages) * kPage, kPage);
    clobber(map);
    return static_cast<double>(pages.size()) / 1e3 / (static_cast<double>(now_ns() - t0) / 1e9);
  }

  // The daemon's fault counter (daxfsctl stat MOUNTPOINT --json: dax_faults).
  uint64_t dax_faults() {
    std::string out = work + "/stat.json";
    unlink(out.c_str());
    if (run_program({tools.ctl, "stat", always, "--json"}, out) != 0) throw Failure("daxfsctl stat failed");
    std::string text = read_file_text(out);
    size_t at = text.find("\"dax_faults\":");
    if (at == std::string::npos) throw Failure("daxfsctl stat --json has no dax_faults");
    return strtoull(text.c_str() + at + 13, nullptr, 10);
  }

  void rows_copy();
  void rows_faults();
  void rows_setup();
  void rows_break();
  void print() const;
};

// Rows 1 and 2: copies through a DAX mapping, the device mapping of the same blocks, and the
// page-cache mapping of a dax=never file, all set up and faulted in before the clock runs.
void Bench::rows_copy() {
  const uint64_t size = s.big;
  Fd dax_fd = open_file(always + "/seq", O_RDWR | O_CREAT);
  Fd pc_fd = open_file(never + "/seq", O_RDWR | O_CREAT);
  fill_file(dax_fd.fd, size, "the DAX file");
  fill_file(pc_fd.fd, size, "the page-cache file");
  if (fsync(pc_fd.fd) != 0) fail_errno("fsync");
  auto extents = extents_of(dax_fd.fd);
  notes.push_back("the " + std::to_string(size / kMiB) + " MiB copy file has " + std::to_string(extents.size()) +
                  " extent(s)");

  // The first pass over each fresh mapping: a store pass, faults included.
  uint64_t t0 = now_ns();
  char* dax = dax_map(dax_fd.fd, size);
  double map_ms = static_cast<double>(now_ns() - t0) / 1e6;
  double first_dax = seq_write(dax, size);
  // The device mapping: the same device blocks, mapped extent by extent as the DAX layer does.
  Fd dev_fd = open_file(device, O_RDWR);
  void* reserve = mmap(nullptr, size, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (reserve == MAP_FAILED) fail_errno("mmap reserve");
  char* dev = static_cast<char*>(reserve);
  for (const auto& e : extents) {
    if (e.logical + e.length > size) throw Failure("an extent past the copy file's size");
    if (mmap(dev + e.logical, e.length, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, dev_fd.fd,
             static_cast<off_t>(e.physical)) == MAP_FAILED)
      fail_errno("mmap of the device");
  }
  double first_dev = seq_write(dev, size);
  char* pc = static_cast<char*>(mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, pc_fd.fd, 0));
  if (pc == MAP_FAILED) fail_errno("mmap of the dax=never file");
  double first_pc = seq_write(pc, size);
  // Both views of the DAX file must show the same bytes (the device offset is the block's).
  if (memcmp(dax, dev, size) != 0) throw Failure("the DAX mapping and the device mapping differ");

  std::vector<uint32_t> pages(s.random_stores);
  for (auto& p : pages) p = static_cast<uint32_t>(rng() % (size / kPage));
  std::vector<double> rd[3], wr[3], rnd[3];
  char* maps[3] = {dax, dev, pc};
  for (int r = 0; r < o.rounds; r++) {
    std::vector<std::function<void()>> jobs;
    for (int t = 0; t < 3; t++)
      jobs.push_back([&, t] {
        rd[t].push_back(seq_read(maps[t], size));
        wr[t].push_back(seq_write(maps[t], size));
        rnd[t].push_back(random_stores(maps[t], pages));
      });
    interleave(r, jobs);
  }
  const char* names[3] = {"DAX", "device mapping", "page cache (dax=never)"};
  // The note gives each side's range over the rounds: this machine's copy rates drift.
  auto range = [](const std::vector<double>& v) {
    auto [lo, hi] = std::minmax_element(v.begin(), v.end());
    return fmt("%.0f", *lo) + "-" + fmt("%.0f", *hi);
  };
  auto add = [&](const std::string& what, std::vector<double>* v, const char* f) {
    for (int t = 1; t < 3; t++)
      lines.push_back({what, fmt(f, median(v[0])), names[t], fmt(f, median(v[t])), median(v[0]) / median(v[t]),
                       t == 1 ? ">= 0.95" : "", "rounds: DAX " + range(v[0]) + ", baseline " + range(v[t])});
  };
  add("seq read (memcpy 1 MiB), MiB/s", rd, "%.0f");
  add("seq write (memcpy 1 MiB), MiB/s", wr, "%.0f");
  add("random 4 KiB stores, k/s", rnd, "%.0f");
  lines.push_back({"first store pass after mmap, MiB/s", fmt("%.0f", first_dax), names[1], fmt("%.0f", first_dev),
                   first_dax / first_dev, "", "one pass, round 0 only"});
  lines.push_back({"first store pass after mmap, MiB/s", fmt("%.0f", first_dax), names[2], fmt("%.0f", first_pc),
                   first_dax / first_pc, "", "one pass, round 0 only"});
  notes.push_back("the run's first daxfs_mmap (the copy file; connects to the daemon, then maps eagerly) took " +
                  fmt("%.2f", map_ms) + " ms");
  dax_unmap(dax, size);
  munmap(reserve, size);
  munmap(pc, size);
  unlink((always + "/seq").c_str());
  unlink((never + "/seq").c_str());
}

// Row 3: the latency of one fault, from the touching instruction to its retry, for each kind of
// DAX fault against a first touch of a tmpfs page. Every DAX file alternates a written block with
// a block of the kind measured, so that each timed touch is exactly one fault of one 4 KiB block
// (a store fault otherwise allocates, converts or copies up to the next 2 MiB boundary).
void Bench::rows_faults() {
  const int n = s.fault_samples;
  const uint64_t len = 2ULL * static_cast<uint64_t>(n) * kPage;
  enum Kind { kHoleRead, kHoleWrite, kUnwritten, kCow, kTmpfsLoad, kTmpfsStore, kKinds };
  std::vector<double> us[kKinds];
  uint64_t faults[kKinds] = {};
  std::vector<char> block(kPage, 'w');
  int seq = 0;

  auto time_touches = [&](char* p, uint64_t first, uint64_t step, bool store, std::vector<double>& out) {
    for (int i = 0; i < n; i++) {
      volatile char* q = p + (first + static_cast<uint64_t>(i) * step) * kPage;
      uint64_t t0 = now_ns();
      if (store) *q = 's';
      else (void)*q;
      uint64_t t1 = now_ns();
      out.push_back(static_cast<double>(t1 - t0) / 1e3);
    }
  };
  // A DAX file of 2n blocks: odd blocks written; even blocks as `prepare` leaves them.
  auto dax_case = [&](Kind kind) {
    std::string path = always + "/fault-" + std::to_string(seq++);
    std::string src = path + ".src";  // the reflink source: it must live while the CoW faults run
    {
      Fd fd = open_file(path, O_RDWR | O_CREAT | O_TRUNC);
      if (kind == kUnwritten && fallocate(fd.fd, 0, 0, static_cast<off_t>(len)) != 0) fail_errno("fallocate");
      if (kind == kCow) {
        {
          Fd sfd = open_file(src, O_RDWR | O_CREAT | O_TRUNC);
          fill_file(sfd.fd, len, "the reflink source");
        }
        if (run_program({tools.ctl, "reflink", src, path}, work + "/daxfsctl.log") != 0)
          throw Failure("daxfsctl reflink failed:\n" + read_file_text(work + "/daxfsctl.log"));
      }
      for (int i = 0; i < n; i++) pwrite_all(fd.fd, block.data(), kPage, (2ULL * i + 1) * kPage, path);
      if (ftruncate(fd.fd, static_cast<off_t>(len)) != 0) fail_errno("ftruncate");
      char* p = dax_map(fd.fd, len);
      // The mapping was populated at mmap; for hole loads, drop it (the pages become
      // placeholders again, as after a revoke) so that the loads fault.
      if (kind == kHoleRead && daxfs_mprotect(p, len, PROT_READ | PROT_WRITE) != 0) fail_errno("daxfs_mprotect");
      uint64_t before = dax_faults();
      time_touches(p, 0, 2, kind != kHoleRead, us[kind]);
      faults[kind] += dax_faults() - before;
      dax_unmap(p, len);
    }
    unlink(path.c_str());
    unlink(src.c_str());
  };
  auto tmpfs_case = [&](Kind kind) {
    std::string path = tmp_dir + "/dax-bench-tmpfs." + std::to_string(getpid());
    Fd fd = open_file(path, O_RDWR | O_CREAT | O_TRUNC);
    unlink(path.c_str());
    if (ftruncate(fd.fd, static_cast<off_t>(n) * kPage) != 0) fail_errno("ftruncate tmpfs");
    void* p = mmap(nullptr, static_cast<uint64_t>(n) * kPage, PROT_READ | PROT_WRITE, MAP_SHARED, fd.fd, 0);
    if (p == MAP_FAILED) fail_errno("mmap tmpfs");
    time_touches(static_cast<char*>(p), 0, 1, kind == kTmpfsStore, us[kind]);
    munmap(p, static_cast<uint64_t>(n) * kPage);
  };
  for (int r = 0; r < o.rounds; r++) {
    std::vector<std::function<void()>> jobs;
    for (Kind k : {kHoleRead, kHoleWrite, kUnwritten, kCow}) jobs.push_back([&, k] { dax_case(k); });
    for (Kind k : {kTmpfsLoad, kTmpfsStore}) jobs.push_back([&, k] { tmpfs_case(k); });
    interleave(r, jobs);
  }
  struct {
    const char* what;
    Kind kind, base;
  } rows[] = {{"hole read fault (load), us", kHoleRead, kTmpfsLoad},
              {"hole write fault (store, allocates), us", kHoleWrite, kTmpfsStore},
              {"unwritten fault (store, converts), us", kUnwritten, kTmpfsStore},
              {"CoW fault (store, copies), us", kCow, kTmpfsStore}};
  for (const auto& row : rows) {
    const auto& d = us[row.kind];
    const auto& b = us[row.base];
    std::string base_name = row.base == kTmpfsLoad ? "tmpfs first load" : "tmpfs first store";
    double per_touch = static_cast<double>(faults[row.kind]) / static_cast<double>(d.size());
    lines.push_back({std::string(row.what) + " median", fmt("%.2f", median(d)), base_name, fmt("%.2f", median(b)),
                     median(d) / median(b), "<= 1.5", fmt("%.2f", per_touch) + " daemon faults per touch"});
    lines.push_back({std::string(row.what) + " p99", fmt("%.2f", p99(d)), base_name, fmt("%.2f", p99(b)),
                     p99(d) / p99(b), "", ""});
  }
  notes.push_back("faults: " + std::to_string(n) + " per kind and round, " + std::to_string(n * o.rounds) +
                  " in all; each is the time of one touching instruction (SIGSEGV, request to the daemon, "
                  "reply, mmap MAP_FIXED, retry)");
}

// Row 4: daxfs_mmap of a whole file, eager population included, and its munmap; 1 extent and
// many. The fragmented file alternates its chunks with a spacer file's blocks.
void Bench::rows_setup() {
  const uint64_t size = s.big;
  const uint64_t chunk = size / s.extents / kPage * kPage;
  if (chunk == 0) throw Failure("too many extents for the file size");
  std::string one_path = always + "/setup-1", frag_path = always + "/setup-n";
  Fd one = open_file(one_path, O_RDWR | O_CREAT | O_TRUNC);
  fill_file(one.fd, size, one_path);
  Fd frag = open_file(frag_path, O_RDWR | O_CREAT | O_TRUNC);
  {
    Fd spacer = open_file(always + "/setup-spacer", O_RDWR | O_CREAT | O_TRUNC);
    std::vector<char> data(chunk, 'f');
    for (uint64_t i = 0; i < s.extents; i++) {
      pwrite_all(frag.fd, data.data(), chunk, i * chunk, frag_path);
      pwrite_all(spacer.fd, data.data(), kPage, i * kPage, "the spacer file");
    }
  }
  unlink((always + "/setup-spacer").c_str());
  const uint64_t frag_size = chunk * s.extents;
  size_t n_one = extents_of(one.fd).size(), n_frag = extents_of(frag.fd).size();
  Fd dev_fd = open_file(device, O_RDWR);
  std::vector<double> map_ms[3], unmap_ms[3];
  for (int r = 0; r < o.rounds; r++) {
    std::vector<std::function<void()>> jobs;
    for (int t = 0; t < 2; t++)
      jobs.push_back([&, t] {
        int fd = t == 0 ? one.fd : frag.fd;
        uint64_t len = t == 0 ? size : frag_size;
        uint64_t t0 = now_ns();
        char* p = dax_map(fd, len);
        uint64_t t1 = now_ns();
        dax_unmap(p, len);
        uint64_t t2 = now_ns();
        map_ms[t].push_back(static_cast<double>(t1 - t0) / 1e6);
        unmap_ms[t].push_back(static_cast<double>(t2 - t1) / 1e6);
      });
    // The kernel's mmap of as many bytes of the device file, for scale. Without MAP_POPULATE, as
    // the DAX layer's mmap(MAP_FIXED) of each extent: page-table entries come at first touch.
    jobs.push_back([&] {
      uint64_t t0 = now_ns();
      void* p = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, dev_fd.fd, 0);
      if (p == MAP_FAILED) fail_errno("mmap of the device");
      uint64_t t1 = now_ns();
      munmap(p, size);
      map_ms[2].push_back(static_cast<double>(t1 - t0) / 1e6);
      unmap_ms[2].push_back(static_cast<double>(now_ns() - t1) / 1e6);
    });
    interleave(r, jobs);
  }
  std::string sz = std::to_string(size / kMiB) + " MiB";
  std::string one_name = "daxfs_mmap, " + std::to_string(n_one) + " extent(s)";
  std::string frag_name = std::to_string(n_frag) + " extents";
  lines.push_back({"daxfs_mmap " + sz + ", " + std::to_string(n_one) + " extent(s), ms", fmt("%.3f", median(map_ms[0])),
                   "kernel mmap of the device, 1 VMA", fmt("%.3f", median(map_ms[2])),
                   median(map_ms[0]) / median(map_ms[2]), "", ""});
  lines.push_back({"daxfs_mmap " + std::to_string(frag_size / kMiB) + " MiB, " + frag_name + ", ms",
                   fmt("%.3f", median(map_ms[1])), one_name, fmt("%.3f", median(map_ms[0])),
                   median(map_ms[1]) / median(map_ms[0]), "",
                   fmt("%.1f", median(map_ms[1]) * 1e3 / static_cast<double>(n_frag)) + " us per extent"});
  lines.push_back({"daxfs_munmap, " + std::to_string(n_one) + " extent(s), ms", fmt("%.3f", median(unmap_ms[0])),
                   "kernel munmap of the device", fmt("%.3f", median(unmap_ms[2])),
                   median(unmap_ms[0]) / median(unmap_ms[2]), "", ""});
  lines.push_back({"daxfs_munmap, " + frag_name + ", ms", fmt("%.3f", median(unmap_ms[1])),
                   "daxfs_munmap, " + std::to_string(n_one) + " extent(s)", fmt("%.3f", median(unmap_ms[0])),
                   median(unmap_ms[1]) / median(unmap_ms[0]), "", ""});
  if (n_frag < s.extents)
    notes.push_back("the fragmented file has " + std::to_string(n_frag) + " extents, not " +
                    std::to_string(s.extents) + ": the allocator merged some");
  unlink(one_path.c_str());
  unlink(frag_path.c_str());
}

// Row 5: the latency of a punch over a range that N other processes map and have touched: the
// daemon revokes every mapper's pages and waits for their acks before the blocks are freed.
void Bench::rows_break() {
  const uint64_t size = s.break_file;
  const std::string path = always + "/break";
  Fd fd = open_file(path, O_RDWR | O_CREAT | O_TRUNC);
  const int counts[] = {0, 1, 16};
  std::vector<double> ms[3];

  auto run = [&](int ci) {
    const int n = counts[ci];
    int ack[2];
    if (pipe2(ack, O_CLOEXEC) != 0) fail_errno("pipe");
    std::vector<int> cmd_w;
    std::vector<pid_t> kids;
    fill_file(fd.fd, size, path);
    for (int k = 0; k < n; k++) {
      int cmd[2];
      if (pipe2(cmd, O_CLOEXEC) != 0) fail_errno("pipe");
      pid_t pid = fork();
      if (pid < 0) fail_errno("fork");
      if (pid == 0) {
        // A mapper: map the file, touch every page, ack; again on each command byte; exit on EOF.
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        close(cmd[1]);
        for (int w : cmd_w) close(w);
        int f = open(path.c_str(), O_RDWR);
        void* m = daxfs_mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, f, 0);
        if (m == MAP_FAILED || !daxfs_is_dax(m)) _exit(3);
        char c = 't';
        do {
          for (uint64_t off = 0; off < size; off += kPage) (void)*static_cast<volatile char*>(static_cast<char*>(m) + off);
          if (write(ack[1], "a", 1) != 1) _exit(4);
        } while (read(cmd[0], &c, 1) == 1);
        _exit(0);
      }
      close(cmd[0]);
      cmd_w.push_back(cmd[1]);
      kids.push_back(pid);
    }
    close(ack[1]);
    auto wait_acks = [&] {
      for (int k = 0; k < n; k++) {
        char c;
        if (read(ack[0], &c, 1) != 1) throw Failure("a mapping process died (see its exit status)");
      }
    };
    try {
      wait_acks();
      for (int p = 0; p < s.punches; p++) {
        if (p > 0) {
          fill_file(fd.fd, size, path);
          for (int w : cmd_w)
            if (write(w, "t", 1) != 1) fail_errno("write to a mapper");
          wait_acks();
        }
        uint64_t t0 = now_ns();
        if (fallocate(fd.fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, static_cast<off_t>(size)) != 0)
          fail_errno("fallocate(PUNCH_HOLE)");
        ms[ci].push_back(static_cast<double>(now_ns() - t0) / 1e6);
      }
    } catch (...) {
      for (pid_t k : kids) kill(k, SIGKILL);
      for (int w : cmd_w) close(w);
      for (pid_t k : kids) waitpid(k, nullptr, 0);
      close(ack[0]);
      throw;
    }
    for (int w : cmd_w) close(w);
    for (pid_t k : kids) {
      int status;
      waitpid(k, &status, 0);
      if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        throw Failure("mapper " + std::to_string(k) + " ended with status " + std::to_string(status));
    }
    close(ack[0]);
  };
  for (int r = 0; r < o.rounds; r++) {
    std::vector<std::function<void()>> jobs;
    for (int ci = 0; ci < 3; ci++) jobs.push_back([&, ci] { run(ci); });
    interleave(r, jobs);
  }
  std::string sz = std::to_string(size / kMiB) + " MiB";
  for (int ci = 1; ci < 3; ci++)
    lines.push_back({"punch " + sz + " mapped by " + std::to_string(counts[ci]) + " process(es), ms",
                     fmt("%.3f", median(ms[ci])), "same punch, no mapper", fmt("%.3f", median(ms[0])),
                     median(ms[ci]) / median(ms[0]), "", "p99 " + fmt("%.3f", p99(ms[ci])) + " ms"});
  unlink(path.c_str());
}

void Bench::print() const {
  printf("| measurement | DAX | baseline | baseline value | DAX / baseline | target | note |\n");
  printf("|---|---:|---|---:|---:|---|---|\n");
  for (const auto& l : lines)
    printf("| %s | %s | %s | %s | %s | %s | %s |\n", l.what.c_str(), l.dax.c_str(), l.baseline.c_str(), l.base.c_str(),
           fmt("%.2f", l.ratio).c_str(), l.target.c_str(), l.note.c_str());
  printf("\n");
  for (const auto& n : notes) printf("- %s\n", n.c_str());
}

// The floor of any user-space fault, for scale: a touch of a PROT_NONE page whose SIGSEGV handler
// makes it writable (no daemon, no mmap). Measured before the DAX layer installs its handler.
extern "C" void unprotect_page(int, siginfo_t* si, void*) {
  auto page = reinterpret_cast<uintptr_t>(si->si_addr) & ~(kPage - 1);
  mprotect(reinterpret_cast<void*>(page), kPage, PROT_READ | PROT_WRITE);
}

double signal_floor_us(int samples) {
  struct sigaction sa {}, old {};
  sa.sa_sigaction = unprotect_page;
  sa.sa_flags = SA_SIGINFO;
  if (sigaction(SIGSEGV, &sa, &old) != 0) fail_errno("sigaction");
  const uint64_t len = static_cast<uint64_t>(samples) * kPage;
  void* m = mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
  if (m == MAP_FAILED) fail_errno("mmap");
  char* p = static_cast<char*>(m);
  for (int i = 0; i < samples; i++) p[static_cast<uint64_t>(i) * kPage] = 1;  // populated, then protected
  mprotect(p, len, PROT_NONE);
  std::vector<double> us;
  for (int i = 0; i < samples; i++) {
    volatile char* q = p + static_cast<uint64_t>(i) * kPage;
    uint64_t t0 = now_ns();
    *q = 2;
    us.push_back(static_cast<double>(now_ns() - t0) / 1e3);
  }
  munmap(p, len);
  sigaction(SIGSEGV, &old, nullptr);
  return median(us);
}

int worker_main(const Options& o, const Sizes& s, const Tools& tools, const Mount& always, const Mount& never,
                const std::string& work) {
  for (int sig : {SIGINT, SIGTERM, SIGHUP}) signal(sig, SIG_DFL);
  double floor_us = signal_floor_us(s.fault_samples);
  if (daxfs_client_init() != 0) fail_errno("daxfs_client_init");
  Bench b;
  b.o = o, b.s = s, b.tools = tools, b.always = always.mnt, b.never = never.mnt, b.work = work;
  b.device = always.device;
  struct statfs sf;
  b.tmp_dir = statfs(work.c_str(), &sf) == 0 && sf.f_type == 0x01021994 /* TMPFS_MAGIC */ ? work : "/dev/shm";
  b.buf = static_cast<char*>(aligned_alloc(kPage, s.buffer));
  if (!b.buf) throw Failure("out of memory");
  memset(b.buf, 'b', s.buffer);
  long cpus = sysconf(_SC_NPROCESSORS_ONLN);
  double load[3] = {0, 0, 0};
  getloadavg(load, 3);
  printf("dax_bench%s: %d round(s), %ld CPUs, load %.2f at start, devices in %s\n\n", o.quick ? " --quick" : "",
         o.rounds, cpus, load[0], work.c_str());
  fflush(stdout);
  uint64_t t0 = now_ns();
  b.notes.push_back("for scale, the floor of any user-space fault: a touch of a PROT_NONE page whose SIGSEGV "
                    "handler mprotects it writable (no daemon, no mmap) takes " + fmt("%.2f", floor_us) +
                    " us (median of " + std::to_string(s.fault_samples) + ")");
  b.rows_copy();
  b.rows_faults();
  b.rows_setup();
  b.rows_break();
  getloadavg(load, 3);
  b.notes.push_back("run took " + fmt("%.0f", static_cast<double>(now_ns() - t0) / 1e9) + " s; load " +
                    fmt("%.2f", load[0]) + " at the end");
  b.print();
  free(b.buf);
  return 0;
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
  // A closed stdout (dax_bench | head) must not kill the supervisor before its cleanup.
  signal(SIGPIPE, SIG_IGN);
  try {
    return supervise(parse_options(argc, argv));
  } catch (const std::exception& e) {
    fprintf(stderr, "dax_bench: %s\n", e.what());
    return 1;
  }
}
