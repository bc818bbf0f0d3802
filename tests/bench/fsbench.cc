// fsbench: the filesystem benchmark behind scripts/bench. It runs one fixed amount of work in a
// directory (1 MiB sequential and 4 KiB random write/read, file create/stat/unlink rates) and prints
// one "name value" line per workload, in MiB/s or operations/s, or one JSON document with --json.
// The work depends only on the options and the seed, so every target does exactly the same work.
// Single-threaded except the parallel workloads (par: 1 thread on 1 file against 2 threads on 2
// files); plain POSIX and the C++ standard library, no project headers.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <filesystem>
#include <functional>
#include <memory>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "tests/bench/run_threads.h"

namespace {

constexpr uint64_t kKiB = 1024;
constexpr uint64_t kMiB = 1024 * kKiB;
constexpr uint64_t kGiB = 1024 * kMiB;
constexpr size_t kSmallIo = 4 * kKiB;
constexpr size_t kLargeIo = kMiB;

const char kUsage[] =
    "usage: fsbench [OPTIONS] DIR\n"
    "Runs 1 MiB sequential and 4 KiB random write/read, file create/stat/unlink, and 1 MiB\n"
    "overwrite/append/read by 1 thread on 1 file against 2 threads on 2 files, in a fresh\n"
    "subdirectory of DIR, removes it, and prints one \"name value\" line per workload.\n"
    "  --quick            small sizes for a fast run (--file-size 32M --seq-size 64M --files 2000)\n"
    "  --file-size SIZE   file for the 4 KiB random workloads (default 256M)\n"
    "  --rand-ops N       4 KiB operations per random phase (default file-size / 4K)\n"
    "  --seq-size SIZE    file for the 1 MiB sequential workloads (default 512M)\n"
    "  --files N          files for create/stat/unlink, all in one directory (default 10000)\n"
    "  --par-size SIZE    bytes per thread for the parallel workloads (default 64M; --quick 16M)\n"
    "  --only LIST        comma-separated subset of seq,rand,meta,par (default all)\n"
    "  --seed N           seed of the random offsets (default 1)\n"
    "  --cached-stat      plain stat(2), answered from the kernel's cache while it is valid,\n"
    "                     instead of statx(AT_STATX_FORCE_SYNC) (as `stat --cached=never`)\n"
    "  --json             print one JSON document instead of name/value lines\n"
    "Sizes take K/M/G suffixes (powers of 1024).\n";

// A failed system call or bad input; main() reports it as one line and removes the work directory.
struct Failure : std::runtime_error {
  using std::runtime_error::runtime_error;
};

[[noreturn]] void fail_errno(const std::string& what, const std::string& path) {
  int saved = errno;
  throw Failure(what + " " + path + ": " + std::strerror(saved));
}

struct Options {
  std::string dir;
  uint64_t file_size = 256 * kMiB;
  uint64_t rand_ops = 0;  // 0: file_size / 4 KiB
  uint64_t seq_size = 512 * kMiB;
  uint64_t files = 10000;  // Under the fd limit: passthrough_ll keeps an fd per known file.
  uint64_t par_size = 64 * kMiB;  // per thread
  uint64_t seed = 1;
  bool seq = true, rand = true, meta = true, par = true;
  bool cached_stat = false, json = false;
};

// One open file descriptor. The destructor closes silently; close() reports the error, which
// matters on FUSE, where close sends FLUSH and can fail.
class Fd {
 public:
  Fd(const std::string& path, int flags, mode_t mode = 0644) : path_(path) {
    fd_ = ::open(path.c_str(), flags | O_CLOEXEC, mode);
    if (fd_ < 0) fail_errno("open", path);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  int get() const { return fd_; }
  const std::string& path() const { return path_; }
  void close() {
    int fd = std::exchange(fd_, -1);
    if (::close(fd) != 0) fail_errno("close", path_);
  }

 private:
  std::string path_;
  int fd_ = -1;
};

uint64_t parse_size(const std::string& option, const std::string& text) {
  char* end = nullptr;
  errno = 0;
  unsigned long long value = std::strtoull(text.c_str(), &end, 10);
  uint64_t unit = 1;
  if (end != text.c_str() && *end != '\0' && end[1] == '\0') {
    switch (*end) {
      case 'K': case 'k': unit = kKiB; ++end; break;
      case 'M': case 'm': unit = kMiB; ++end; break;
      case 'G': case 'g': unit = kGiB; ++end; break;
    }
  }
  if (text.empty() || text[0] == '-' || end == text.c_str() || *end != '\0' || errno == ERANGE ||
      value > UINT64_MAX / unit)
    throw Failure(option + ": '" + text + "' is not a size");
  return value * unit;
}

Options parse_options(int argc, char** argv) {
  Options o;
  std::vector<std::string> args(argv + 1, argv + argc);
  for (size_t i = 0; i < args.size(); ++i) {
    std::string name = args[i], value;
    bool has_value = false;
    if (auto eq = name.find('='); name.rfind("--", 0) == 0 && eq != std::string::npos) {
      value = name.substr(eq + 1);
      name.resize(eq);
      has_value = true;
    }
    auto next = [&]() -> const std::string& {
      if (!has_value) {
        if (i + 1 >= args.size()) throw Failure(name + " needs a value");
        value = args[++i];
      }
      return value;
    };
    if (name == "--help" || name == "-h") {
      std::fputs(kUsage, stdout);
      std::exit(0);
    } else if (name == "--quick") {
      o.file_size = 32 * kMiB, o.seq_size = 64 * kMiB, o.files = 2000, o.par_size = 16 * kMiB;
    } else if (name == "--file-size") {
      o.file_size = parse_size(name, next());
    } else if (name == "--rand-ops") {
      o.rand_ops = parse_size(name, next());
    } else if (name == "--seq-size") {
      o.seq_size = parse_size(name, next());
    } else if (name == "--par-size") {
      o.par_size = parse_size(name, next());
    } else if (name == "--files") {
      o.files = parse_size(name, next());
    } else if (name == "--seed") {
      o.seed = parse_size(name, next());
    } else if (name == "--cached-stat") {
      o.cached_stat = true;
    } else if (name == "--json") {
      o.json = true;
    } else if (name == "--only") {
      o.seq = o.rand = o.meta = o.par = false;
      std::string list = next() + ",";
      for (size_t start = 0, comma; (comma = list.find(',', start)) != std::string::npos;
           start = comma + 1) {
        std::string group = list.substr(start, comma - start);
        if (group == "seq") o.seq = true;
        else if (group == "rand") o.rand = true;
        else if (group == "meta") o.meta = true;
        else if (group == "par") o.par = true;
        else throw Failure("--only: unknown workload group '" + group + "' (seq, rand, meta, par)");
      }
    } else if (name.rfind("-", 0) == 0) {
      throw Failure("unknown option " + name + " (see --help)");
    } else if (o.dir.empty()) {
      o.dir = name;
    } else {
      throw Failure("more than one directory given (see --help)");
    }
  }
  if (o.dir.empty()) throw Failure("no directory given (see --help)");
  if (o.file_size < kSmallIo || o.file_size % kSmallIo != 0)
    throw Failure("--file-size must be a non-zero multiple of 4K");
  if (o.seq_size < kLargeIo || o.seq_size % kLargeIo != 0)
    throw Failure("--seq-size must be a non-zero multiple of 1M");
  if (o.par_size < kLargeIo || o.par_size % kLargeIo != 0)
    throw Failure("--par-size must be a non-zero multiple of 1M");
  if (o.files == 0 || o.files > 10'000'000) throw Failure("--files must be 1..10000000");
  if (o.rand_ops == 0) o.rand_ops = o.file_size / kSmallIo;
  return o;
}

// A buffer aligned for O_DIRECT, filled with incompressible bytes so that no layer can take a
// shortcut on zeroes.
class Buffer {
 public:
  explicit Buffer(size_t size) : size_(size) {
    void* p = nullptr;
    if (posix_memalign(&p, kSmallIo, size) != 0) throw std::bad_alloc();
    data_.reset(static_cast<char*>(p));
    std::mt19937_64 engine(42);
    for (size_t i = 0; i < size; i += sizeof(uint64_t)) {
      uint64_t word = engine();
      std::memcpy(data_.get() + i, &word, sizeof word);
    }
  }
  char* data() { return data_.get(); }
  size_t size() const { return size_; }

 private:
  struct Free {
    void operator()(char* p) const { std::free(p); }
  };
  std::unique_ptr<char, Free> data_;
  size_t size_;
};

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

void pwrite_all(const Fd& fd, const char* data, size_t length, off_t off) {
  while (length > 0) {
    ssize_t n = ::pwrite(fd.get(), data, length, off);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) fail_errno("write", fd.path());
    data += n, length -= size_t(n), off += n;
  }
}

void pread_all(const Fd& fd, char* data, size_t length, off_t off) {
  while (length > 0) {
    ssize_t n = ::pread(fd.get(), data, length, off);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) fail_errno("read", fd.path());
    if (n == 0) throw Failure("read " + fd.path() + ": unexpected end of file");
    data += n, length -= size_t(n), off += n;
  }
}

void sync_file(const Fd& fd) {
  if (::fsync(fd.get()) != 0) fail_errno("fsync", fd.path());
}

// Prepares an open file for a measured phase: drops its clean cached pages (as fio's invalidate=1)
// and gives the kernel the access pattern (as fio's fadvise_hint). Called before the clock starts.
void advise(const Fd& fd, int pattern) {
  posix_fadvise(fd.get(), 0, 0, POSIX_FADV_DONTNEED);
  posix_fadvise(fd.get(), 0, 0, pattern);
}

double mib_per_s(uint64_t bytes, double seconds) { return double(bytes) / kMiB / seconds; }

using Results = std::vector<std::pair<std::string, double>>;

// Writes the file sequentially in 1 MiB requests, fsync and close included, then reads it back.
void run_sequential(const Options& o, const std::string& work, Buffer& buffer, Results& out) {
  std::string path = work + "/seq";
  {
    auto start = Clock::now();
    Fd fd(path, O_CREAT | O_TRUNC | O_WRONLY);
    for (uint64_t off = 0; off < o.seq_size; off += kLargeIo)
      pwrite_all(fd, buffer.data(), kLargeIo, off_t(off));
    sync_file(fd);
    fd.close();
    out.emplace_back("seq1m_write_mibs", mib_per_s(o.seq_size, seconds_since(start)));
  }
  {
    Fd fd(path, O_RDONLY);
    advise(fd, POSIX_FADV_SEQUENTIAL);
    auto start = Clock::now();
    for (uint64_t off = 0; off < o.seq_size; off += kLargeIo)
      pread_all(fd, buffer.data(), kLargeIo, off_t(off));
    fd.close();
    out.emplace_back("seq1m_read_mibs", mib_per_s(o.seq_size, seconds_since(start)));
  }
  if (::unlink(path.c_str()) != 0) fail_errno("unlink", path);
}

// Lays the file out in full (not timed, as fio does), then overwrites 4 KiB blocks at random
// aligned offsets with an fsync at the end, then reads 4 KiB blocks at other random offsets.
void run_random(const Options& o, const std::string& work, Buffer& buffer, Results& out) {
  std::string path = work + "/rand";
  {
    Fd fd(path, O_CREAT | O_TRUNC | O_WRONLY);
    for (uint64_t off = 0; off < o.file_size; off += kLargeIo)
      pwrite_all(fd, buffer.data(), size_t(std::min<uint64_t>(kLargeIo, o.file_size - off)),
                 off_t(off));
    sync_file(fd);
    fd.close();
  }
  std::mt19937_64 engine(o.seed);
  std::uniform_int_distribution<uint64_t> block(0, o.file_size / kSmallIo - 1);
  std::vector<off_t> offsets(o.rand_ops);
  auto draw = [&] {
    for (auto& off : offsets) off = off_t(block(engine) * kSmallIo);
  };
  const uint64_t bytes = o.rand_ops * kSmallIo;
  const size_t slots = buffer.size() / kSmallIo;
  draw();
  {
    Fd fd(path, O_WRONLY);
    advise(fd, POSIX_FADV_RANDOM);
    auto start = Clock::now();
    for (size_t i = 0; i < offsets.size(); ++i)
      pwrite_all(fd, buffer.data() + (i % slots) * kSmallIo, kSmallIo, offsets[i]);
    sync_file(fd);
    fd.close();
    out.emplace_back("rand4k_write_mibs", mib_per_s(bytes, seconds_since(start)));
  }
  draw();
  {
    Fd fd(path, O_RDONLY);
    advise(fd, POSIX_FADV_RANDOM);
    auto start = Clock::now();
    for (off_t off : offsets) pread_all(fd, buffer.data(), kSmallIo, off);
    fd.close();
    out.emplace_back("rand4k_read_mibs", mib_per_s(bytes, seconds_since(start)));
  }
  if (::unlink(path.c_str()) != 0) fail_errno("unlink", path);
}

// Creates (open O_CREAT|O_EXCL + close) empty files in one directory, stats each, unlinks each.
// The stat asks the filesystem (AT_STATX_FORCE_SYNC: a FUSE GETATTR) unless --cached-stat: a plain
// stat(2) of a file created a moment ago is answered from the kernel's attribute cache while the
// daemon's timeout lasts, so it would measure that timeout against the length of the run.
void run_metadata(const Options& o, const std::string& work, Results& out) {
  std::string dir = work + "/files";
  if (::mkdir(dir.c_str(), 0755) != 0) fail_errno("mkdir", dir);
  std::vector<std::string> paths(o.files);
  for (uint64_t i = 0; i < o.files; ++i) {
    char name[32];
    std::snprintf(name, sizeof name, "/f%07" PRIu64, i);
    paths[i] = dir + name;
  }
  auto rate = [&](auto&& op) { // Runs op on every path; returns operations per second.
    auto start = Clock::now();
    for (const auto& path : paths) op(path);
    return double(paths.size()) / seconds_since(start);
  };
  out.emplace_back("create_ops", rate([](const std::string& path) {
    Fd(path, O_CREAT | O_EXCL | O_WRONLY).close();
  }));
  const int stat_flags = o.cached_stat ? AT_STATX_SYNC_AS_STAT : AT_STATX_FORCE_SYNC;
  out.emplace_back("stat_ops", rate([stat_flags](const std::string& path) {
    struct statx st;
    if (::statx(AT_FDCWD, path.c_str(), stat_flags, STATX_BASIC_STATS, &st) != 0)
      fail_errno("stat", path);
  }));
  out.emplace_back("unlink_ops", rate([](const std::string& path) {
    if (::unlink(path.c_str()) != 0) fail_errno("unlink", path);
  }));
  if (::rmdir(dir.c_str()) != 0) fail_errno("rmdir", dir);
}


// Parallel I/O: each workload timed with 1 thread on 1 file, then with 2 threads on 2 files, every
// thread moving the same par_size bytes in 1 MiB requests. Rows: the 1-thread MiB/s, the 2-thread
// aggregate MiB/s, and their ratio (2.0: the two threads did not slow each other down at all).
//   overwrite: the files are written in full first (not timed); timed: the overwrites, fsync, close.
//   append:    files opened O_APPEND on empty files; timed: the writes, fsync, close.
//   read:      reads of the overwritten files after fadvise(DONTNEED); timed: the reads, close.
// Each thread has its own buffer (same incompressible bytes).
void run_parallel(const Options& o, const std::string& work, Results& out) {
  auto path = [&](int i) { return work + "/par" + std::to_string(i); };
  std::vector<Buffer> buffers;
  buffers.emplace_back(kLargeIo);
  buffers.emplace_back(kLargeIo);
  for (int i = 0; i < 2; ++i) {  // lay the files out in full
    Fd fd(path(i), O_CREAT | O_TRUNC | O_WRONLY);
    for (uint64_t off = 0; off < o.par_size; off += kLargeIo)
      pwrite_all(fd, buffers[size_t(i)].data(), kLargeIo, off_t(off));
    sync_file(fd);
    fd.close();
  }
  auto overwrite = [&](int i) {
    Fd fd(path(i), O_WRONLY);
    for (uint64_t off = 0; off < o.par_size; off += kLargeIo)
      pwrite_all(fd, buffers[size_t(i)].data(), kLargeIo, off_t(off));
    sync_file(fd);
    fd.close();
  };
  auto append = [&](int i) {
    std::string p = path(i) + ".append";
    Fd fd(p, O_CREAT | O_TRUNC | O_WRONLY | O_APPEND);
    for (uint64_t off = 0; off < o.par_size; off += kLargeIo)
      pwrite_all(fd, buffers[size_t(i)].data(), kLargeIo, 0);  // O_APPEND: the offset is ignored
    sync_file(fd);
    fd.close();
  };
  auto read = [&](int i) {
    Fd fd(path(i), O_RDONLY);
    for (uint64_t off = 0; off < o.par_size; off += kLargeIo)
      pread_all(fd, buffers[size_t(i)].data(), kLargeIo, off_t(off));
    fd.close();
  };
  auto drop_caches = [&] {  // as advise(), for files opened inside the timed threads
    for (int i = 0; i < 2; ++i) {
      Fd fd(path(i), O_RDONLY);
      posix_fadvise(fd.get(), 0, 0, POSIX_FADV_DONTNEED);
    }
  };
  auto remove_appended = [&] {
    for (int i = 0; i < 2; ++i) {
      std::string p = path(i) + ".append";
      if (::unlink(p.c_str()) != 0 && errno != ENOENT) fail_errno("unlink", p);
    }
  };
  struct Workload {
    const char* name;
    std::function<void(int)> body;
  };
  for (const Workload& w : {Workload{"overwrite", overwrite}, Workload{"append", append}, Workload{"read", read}}) {
    double mibs[2];
    for (int threads = 1; threads <= 2; ++threads) {
      drop_caches();
      remove_appended();
      double seconds = daxfs::bench::run_threads(threads, w.body);
      mibs[threads - 1] = mib_per_s(uint64_t(threads) * o.par_size, seconds);
    }
    std::string base = std::string("par_") + w.name;
    out.emplace_back(base + "_1t_mibs", mibs[0]);
    out.emplace_back(base + "_2t_mibs", mibs[1]);
    out.emplace_back(base + "_2t_per_1t", mibs[1] / mibs[0]);
  }
  remove_appended();
  for (int i = 0; i < 2; ++i)
    if (::unlink(path(i).c_str()) != 0) fail_errno("unlink", path(i));
}

std::string json_string(const std::string& text) {
  std::string quoted = "\"";
  for (unsigned char c : text) {
    if (c == '"' || c == '\\') {
      quoted += '\\';
      quoted += char(c);
    } else if (c < 0x20) {
      char escape[8];
      std::snprintf(escape, sizeof escape, "\\u%04x", c);
      quoted += escape;
    } else {
      quoted += char(c);
    }
  }
  return quoted + "\"";
}

// Ratio rows (names ending in _per_1t) print with two decimals.
bool is_ratio(const std::string& name) {
  return name.size() > 7 && name.compare(name.size() - 7, 7, "_per_1t") == 0;
}

void print(const Options& o, const Results& results) {
  if (!o.json) {
    for (const auto& [name, value] : results)
      std::printf(is_ratio(name) ? "%s %.2f\n" : "%s %.1f\n", name.c_str(), value);
    return;
  }
  std::printf("{\"dir\": %s, \"file_size\": %" PRIu64 ", \"rand_ops\": %" PRIu64
              ", \"seq_size\": %" PRIu64 ", \"files\": %" PRIu64 ", \"par_size\": %" PRIu64
              ", \"seed\": %" PRIu64 ", \"cached_stat\": %s, \"results\": {",
              json_string(o.dir).c_str(), o.file_size, o.rand_ops, o.seq_size, o.files, o.par_size, o.seed,
              o.cached_stat ? "true" : "false");
  for (size_t i = 0; i < results.size(); ++i)
    std::printf(is_ratio(results[i].first) ? "%s%s: %.2f" : "%s%s: %.1f", i ? ", " : "",
                json_string(results[i].first).c_str(), results[i].second);
  std::printf("}}\n");
}

}  // namespace

int main(int argc, char** argv) {
  std::string work;
  try {
    Options o = parse_options(argc, argv);
    std::string path = o.dir + "/fsbench." + std::to_string(::getpid());
    if (::mkdir(path.c_str(), 0755) != 0) fail_errno("mkdir", path);
    work = path;  // Ours from here on: removed on failure.
    Buffer buffer(kLargeIo);
    Results results;
    if (o.seq) run_sequential(o, work, buffer, results);
    if (o.rand) run_random(o, work, buffer, results);
    if (o.meta) run_metadata(o, work, results);
    if (o.par) run_parallel(o, work, results);
    if (::rmdir(work.c_str()) != 0) fail_errno("rmdir", work);
    print(o, results);
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "fsbench: %s\n", e.what());
    std::error_code ignored;
    if (!work.empty()) std::filesystem::remove_all(work, ignored);
    return 1;
  }
}
