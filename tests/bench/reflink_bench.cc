// reflink_bench: what reflink costs on daxfs, measured through the Filesystem API (no FUSE, no
// kernel) on a fresh emulated device in /dev/shm: (a) cloning a 1 GiB file against copying it
// (and against a bare memcpy of the same bytes), (b) clone time against the number of extents,
// (c) 4 KiB write latency into shared (copy-on-write) blocks against plain overwrites. Prints
// tables; the figures go in docs/benchmarks.md, never into a pass/fail gate. Single-threaded.
// The device and its ".ctl" file are removed on every exit, failures and Ctrl-C included.
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <numeric>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "tests/bench/bench_device.h"

namespace {

namespace dfs = daxfs::fs;
using namespace daxfs::bench;  // check, Failure, median, kMiB, ...
using Clock = std::chrono::steady_clock;

const char kUsage[] =
    "usage: reflink_bench [--quick] [--dir DIR] [--reps N]\n"
    "Clone vs copy of a 1 GiB file, clone time against extent count (1, 1k, 100k extents), and\n"
    "4 KiB write latency into shared vs unshared blocks, on a daxfs device made in DIR.\n"
    "  --quick     small sizes (128 MiB file, up to 10k extents, 4000 writes): seconds\n"
    "  --dir DIR   where the device file goes (default /dev/shm; should be a tmpfs)\n"
    "  --reps N    repetitions of each clone and copy, the median reported (default 5)\n";

struct Options {
  bool quick = false;
  std::string dir = "/dev/shm";
  int reps = 5;
  // Derived from --quick.
  uint64_t device_size = 8 * kGiB, big_file = kGiB, fallocated = 4 * kGiB, many_extents = 100000;
  uint64_t cow_file = 256 * kMiB, cow_writes = 20000;
};


double percentile(std::vector<double> v, double p) {
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(p * static_cast<double>(v.size())))];
}

std::string human_time(double s) {
  char buf[32];
  if (s < 1e-3) snprintf(buf, sizeof buf, "%.1f µs", s * 1e6);
  else if (s < 1) snprintf(buf, sizeof buf, "%.2f ms", s * 1e3);
  else snprintf(buf, sizeof buf, "%.2f s", s);
  return buf;
}

std::string human_size(uint64_t bytes) {
  char buf[32];
  auto put = [&](double v, const char* unit) {
    bool whole = v == static_cast<double>(static_cast<uint64_t>(v));
    snprintf(buf, sizeof buf, whole ? "%.0f %s" : "%.1f %s", v, unit);
  };
  if (bytes >= kGiB) put(static_cast<double>(bytes) / kGiB, "GiB");
  else if (bytes >= kMiB) put(static_cast<double>(bytes) / kMiB, "MiB");
  else put(static_cast<double>(bytes) / 1024, "KiB");
  return buf;
}

// A formatted, mounted device that removes itself: unmounts, then deletes the device and its
// control file.
class Bench {
 public:
  explicit Bench(const Options& o) : opts_(o), dev_(o.dir, "reflink_bench", o.device_size), fs_(&dev_.fs()) {
    buffer_.resize(kMiB);
    std::mt19937_64 rng(1);
    for (auto& c : buffer_) c = static_cast<char>(rng());  // incompressible, not that it matters here
  }
  Bench(const Bench&) = delete;
  Bench& operator=(const Bench&) = delete;

  dfs::Filesystem& fs() { return *fs_; }
  uint64_t create(const std::string& name) {
    return check(fs_->mknod(fs_->root_ino(), name, S_IFREG | 0644, 0, {}), "create " + name).st_ino;
  }
  void remove(const std::string& name, uint64_t ino) {
    check(fs_->unlink(fs_->root_ino(), name), "unlink " + name);
    fs_->forget(ino, 1);
  }
  // Writes `size` bytes from offset 0 in 1 MiB writes; returns the seconds it took.
  double fill(uint64_t ino, uint64_t size) {
    auto t0 = Clock::now();
    for (uint64_t off = 0; off < size; off += kMiB) {
      size_t n = static_cast<size_t>(std::min(kMiB, size - off));
      check(fs_->write(ino, off, buffer_.data(), n), "write");
    }
    return seconds_since(t0);
  }
  // Copies `src` to `dst` through read() and write() in 1 MiB pieces.
  void copy(uint64_t src, uint64_t dst, uint64_t size) {
    std::vector<char> buf(kMiB);
    for (uint64_t off = 0; off < size; off += kMiB) {
      size_t n = check(fs_->read(src, off, kMiB, buf.data()), "read");
      check(fs_->write(dst, off, buf.data(), n), "write");
    }
  }
  // The median time of `reps` whole-file clones of `src`, each into a new file removed afterwards.
  double clone_time(uint64_t src) {
    std::vector<double> t;
    for (int r = 0; r < opts_.reps; r++) {
      uint64_t dst = create("clone");
      auto t0 = Clock::now();
      check(fs_->clone_range(src, 0, dst, 0, 0), "clone");
      t.push_back(seconds_since(t0));
      remove("clone", dst);
    }
    return median(t);
  }
  uint64_t extents(uint64_t ino) { return check(fs_->file_info(ino), "file_info").extents; }
  const std::vector<char>& buffer() const { return buffer_; }

 private:
  const Options& opts_;
  daxfs::bench::BenchDevice dev_;
  dfs::Filesystem* fs_;
  std::vector<char> buffer_;
};

// (a) Clone of a big file against copying it through the API, and against memcpy.
void bench_clone_vs_copy(Bench& b, const Options& o, uint64_t big) {
  double clone = b.clone_time(big);
  std::vector<double> copies;
  for (int r = 0; r < std::min(o.reps, 3); r++) {
    uint64_t dst = b.create("copy");
    auto t0 = Clock::now();
    b.copy(big, dst, o.big_file);
    copies.push_back(seconds_since(t0));
    b.remove("copy", dst);
  }
  double copy = median(copies);
  std::vector<double> memcpys;
  {
    std::vector<char> from(o.big_file, 1), to(o.big_file, 2);  // touched: no page faults timed
    for (int r = 0; r < 3; r++) {
      auto t0 = Clock::now();
      memcpy(to.data(), from.data(), o.big_file);
      memcpys.push_back(seconds_since(t0));
    }
    if (to[o.big_file / 2] != 1) throw Failure("memcpy went missing");
  }
  double mem = median(memcpys);
  double gib = static_cast<double>(o.big_file) / kGiB;
  printf("\n(a) clone vs copy of a %s file (%lu extent%s), median of %d clones / %zu copies\n\n",
         human_size(o.big_file).c_str(), b.extents(big), b.extents(big) == 1 ? "" : "s", o.reps,
         copies.size());
  printf("| operation | time | GiB/s | time / clone |\n|---|---:|---:|---:|\n");
  printf("| clone (FICLONE) | %s | - | 1 |\n", human_time(clone).c_str());
  printf("| copy: read + write, 1 MiB pieces | %s | %.2f | %.0f |\n", human_time(copy).c_str(), gib / copy,
         copy / clone);
  printf("| memcpy of the bytes (ceiling of any copy) | %s | %.2f | %.0f |\n", human_time(mem).c_str(),
         gib / mem, mem / clone);
}

// (b) Clone time against extent count: files made of 4 KiB writes to every other block, plus
// one-extent files of very different sizes.
void bench_extents(Bench& b, const Options& o, uint64_t big) {
  struct Row {
    std::string what;
    uint64_t ino, bytes;
  };
  std::vector<Row> rows;
  uint64_t small = b.create("small");
  check(b.fs().write(small, 0, b.buffer().data(), kBlock), "write");
  rows.push_back({"4 KiB, written", small, kBlock});
  rows.push_back({human_size(o.big_file) + ", written", big, o.big_file});
  uint64_t prealloc = b.create("prealloc");
  check(b.fs().fallocate(prealloc, 0, 0, o.fallocated), "fallocate");
  rows.push_back({human_size(o.fallocated) + ", fallocated (unwritten)", prealloc, o.fallocated});
  for (uint64_t n : {uint64_t{1000}, o.many_extents}) {
    uint64_t ino = b.create("sparse" + std::to_string(n));
    for (uint64_t i = 0; i < n; i++)
      check(b.fs().write(ino, 2 * i * kBlock, b.buffer().data(), kBlock), "write");
    rows.push_back({"every other 4 KiB block written", ino, (2 * n - 1) * kBlock});
  }
  printf("\n(b) clone time against extent count, median of %d whole-file clones\n\n", o.reps);
  printf("| source file | size | extents | clone | per extent |\n|---|---:|---:|---:|---:|\n");
  for (const Row& r : rows) {
    uint64_t e = b.extents(r.ino);
    double t = b.clone_time(r.ino);
    printf("| %s | %s | %lu | %s | %s |\n", r.what.c_str(), human_size(r.bytes).c_str(), e,
           human_time(t).c_str(), human_time(t / static_cast<double>(e)).c_str());
  }
  b.remove("small", small);
  b.remove("prealloc", prealloc);
  b.remove("sparse1000", rows[3].ino);
  b.remove("sparse" + std::to_string(o.many_extents), rows[4].ino);
}

// (c) Write latency: 4 KiB (whole-block) and 100-byte writes at random distinct blocks of a
// freshly cloned file, every one landing on a still-shared block, against the same writes into
// a file nobody shares.
void bench_cow(Bench& b, const Options& o) {
  uint64_t blocks = o.cow_file / kBlock;
  std::vector<uint64_t> order(blocks);
  std::iota(order.begin(), order.end(), 0);
  std::shuffle(order.begin(), order.end(), std::mt19937_64(7));
  uint64_t src = b.create("cow-src"), plain = b.create("plain");
  b.fill(src, o.cow_file);
  b.fill(plain, o.cow_file);
  uint64_t shared = b.create("cow");
  check(b.fs().clone_range(src, 0, shared, 0, 0), "clone");
  auto run = [&](uint64_t ino, size_t first, size_t size) {
    std::vector<double> t;
    for (size_t i = first; i < first + o.cow_writes; i++) {
      auto t0 = Clock::now();
      check(b.fs().write(ino, order[i] * kBlock + (size < kBlock ? 1000 : 0), b.buffer().data() + i % 1024,
                         size),
            "write");
      t.push_back(seconds_since(t0) * 1e6);
    }
    return t;
  };
  uint64_t cow_before = b.fs().counters().cow_blocks;
  auto cow4k = run(shared, 0, kBlock);
  auto cow100 = run(shared, o.cow_writes, 100);
  uint64_t cowed = b.fs().counters().cow_blocks - cow_before;
  auto plain4k = run(plain, 0, kBlock);
  auto plain100 = run(plain, o.cow_writes, 100);
  printf("\n(c) write latency, %lu writes each at random distinct blocks of a %s file (%lu blocks "
         "unshared)\n\n",
         o.cow_writes, human_size(o.cow_file).c_str(), cowed);
  printf("| write | shared: median | p99 | unshared: median | p99 | shared/unshared median | p99 |\n");
  printf("|---|---:|---:|---:|---:|---:|---:|\n");
  auto row = [](const char* what, const std::vector<double>& s, const std::vector<double>& u) {
    double sm = median(s), sp = percentile(s, 0.99), um = median(u), up = percentile(u, 0.99);
    printf("| %s | %.2f µs | %.2f µs | %.2f µs | %.2f µs | %.1f | %.1f |\n", what, sm, sp, um, up, sm / um,
           sp / up);
  };
  row("4 KiB, block-aligned (CoW: new block, nothing copied)", cow4k, plain4k);
  row("100 B inside a block (CoW: the block copied first)", cow100, plain100);
  b.remove("cow", shared);
  b.remove("cow-src", src);
  b.remove("plain", plain);
}

Options parse_options(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; i++) {
    std::string a = argv[i];
    if (a == "--help" || a == "-h") {
      fputs(kUsage, stdout);
      exit(0);
    } else if (a == "--quick") {
      o.quick = true;
      o.device_size = kGiB, o.big_file = 128 * kMiB, o.fallocated = 256 * kMiB, o.many_extents = 10000;
      o.cow_file = 64 * kMiB, o.cow_writes = 4000;
    } else if (a == "--dir" && i + 1 < argc) {
      o.dir = argv[++i];
    } else if (a == "--reps" && i + 1 < argc) {
      o.reps = atoi(argv[++i]);
      if (o.reps < 1) throw Failure("--reps: needs a positive number");
    } else {
      throw Failure("unknown option '" + a + "' (see --help)");
    }
  }
  return o;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    Options o = parse_options(argc, argv);
    Bench b(o);
    printf("reflink_bench: daxfs on a %s device in %s (cache-line flushes)%s\n",
           human_size(o.device_size).c_str(), o.dir.c_str(), o.quick ? ", --quick" : "");
    uint64_t big = b.create("big");
    double fill = b.fill(big, o.big_file);
    printf("setup: wrote the %s source file in %s (%.2f GiB/s)\n", human_size(o.big_file).c_str(),
           human_time(fill).c_str(), static_cast<double>(o.big_file) / kGiB / fill);
    bench_clone_vs_copy(b, o, big);
    bench_extents(b, o, big);
    b.remove("big", big);
    bench_cow(b, o);
    return 0;
  } catch (const std::exception& e) {
    fprintf(stderr, "reflink_bench: %s\n", e.what());
    remove_device_files();
    return 1;
  }
}
