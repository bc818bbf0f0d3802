// parallel_bench: does I/O to different files proceed in parallel inside daxfs? Measured through
// the Filesystem API (no FUSE, no kernel) on a fresh emulated device in /dev/shm: for sequential
// 1 MiB overwrite, append and read, and 4 KiB random overwrite and read, 1 thread on 1 file against 2
// threads on 2 files, each thread moving the same bytes. Prints a Markdown table with the 1-thread
// and the 2-thread aggregate throughput and their ratio (2.0: perfect parallelism; 1.0: the two
// threads take turns). The figures go in docs/benchmarks.md, never into a pass/fail gate.
// The device and its ".ctl" file are removed on every exit, failures and Ctrl-C included.
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <functional>
#include <memory>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "tests/bench/bench_device.h"
#include "tests/bench/run_threads.h"

namespace {

namespace dfs = daxfs::fs;
using namespace daxfs::bench;  // check, Failure, median, kMiB, ...

const char kUsage[] =
    "usage: parallel_bench [--quick] [--dir DIR] [--size SIZE_MIB] [--reps N]\n"
    "1 thread on 1 file against 2 threads on 2 files, through the Filesystem API: sequential\n"
    "1 MiB overwrite, append and read, 4 KiB random overwrite and read, on a daxfs device in DIR.\n"
    "  --quick          16 MiB per thread, 3 repetitions: about a second\n"
    "  --dir DIR        where the device file goes (default /dev/shm; should be a tmpfs)\n"
    "  --size MIB       MiB per thread and workload (default 64)\n"
    "  --reps N         repetitions; each figure is the median (default 5)\n";

struct Options {
  std::string dir = "/dev/shm";
  uint64_t size = 64 * kMiB;
  int reps = 5;
  bool quick = false;
};

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
      o.quick = true, o.size = 16 * kMiB, o.reps = 3;
    } else if (a == "--dir") {
      o.dir = value();
    } else if (a == "--size") {
      o.size = std::stoull(value()) * kMiB;
      if (o.size == 0 || o.size > 4 * kGiB) throw Failure("--size must be 1..4096");
    } else if (a == "--reps") {
      o.reps = std::stoi(value());
      if (o.reps < 1 || o.reps > 99) throw Failure("--reps must be 1..99");
    } else {
      throw Failure("unknown argument " + a + " (see --help)");
    }
  }
  return o;
}


class Bench {
 public:
  // 2 laid-out files, 2 appended, metadata.
  explicit Bench(const Options& o)
      : o_(o), dev_(o.dir, "parallel_bench", std::max<uint64_t>(kGiB, 6 * o.size)), fs_(&dev_.fs()) {
    for (int i = 0; i < 2; i++) {
      buffers_[i].resize(kMiB);
      std::mt19937_64 rng(1 + i);
      for (auto& c : buffers_[i]) c = static_cast<char>(rng());
      files_[i] = create("f" + std::to_string(i));
      for (uint64_t off = 0; off < o.size; off += kMiB) write(i, files_[i], off, kMiB);  // laid out in full
    }
  }
  Bench(const Bench&) = delete;
  Bench& operator=(const Bench&) = delete;

  uint64_t create(const std::string& name) {
    return check(fs_->mknod(fs_->root_ino(), name, S_IFREG | 0644, 0, {}), "create " + name).st_ino;
  }
  void remove(const std::string& name, uint64_t ino) {
    check(fs_->unlink(fs_->root_ino(), name), "unlink " + name);
    fs_->forget(ino, 1);
  }
  void write(int thread, uint64_t ino, uint64_t off, size_t n) {
    size_t done = check(fs_->write(ino, off, buffers_[thread].data(), n), "write");
    if (done != n) throw Failure("short write");
  }
  void read(int thread, uint64_t ino, uint64_t off, size_t n) {
    size_t done = check(fs_->read(ino, off, n, buffers_[thread].data()), "read");
    if (done != n) throw Failure("short read");
  }

  // The workloads, as thread bodies.
  void overwrite(int i) {
    for (uint64_t off = 0; off < o_.size; off += kMiB) write(i, files_[i], off, kMiB);
  }
  void read_all(int i) {
    for (uint64_t off = 0; off < o_.size; off += kMiB) read(i, files_[i], off, kMiB);
  }
  void append(int i) {
    for (uint64_t off = 0; off < o_.size; off += kMiB) write(i, appended_[i], off, kMiB);
  }
  void random_4k(int i, bool writes) {
    std::mt19937_64 rng(100 + i);
    const uint64_t blocks = o_.size / kBlock;
    for (uint64_t n = 0; n < blocks; n++) {
      uint64_t off = (rng() % blocks) * kBlock;
      if (writes) write(i, files_[i], off, kBlock);
      else read(i, files_[i], off, kBlock);
    }
  }
  // Fresh empty files for the append workload (untimed).
  void new_appended() {
    for (int i = 0; i < 2; i++) {
      if (appended_[i]) remove("a" + std::to_string(i), appended_[i]);
      appended_[i] = create("a" + std::to_string(i));
    }
  }

 private:
  Options o_;
  daxfs::bench::BenchDevice dev_;
  dfs::Filesystem* fs_;
  std::vector<char> buffers_[2];
  uint64_t files_[2] = {0, 0};
  uint64_t appended_[2] = {0, 0};
};

}  // namespace

int main(int argc, char** argv) {
  try {
    Options o = parse_options(argc, argv);
    Bench b(o);
    struct Workload {
      const char* name;
      std::function<void(int)> body;
      bool appends;
    };
    const Workload workloads[] = {
        {"seq 1 MiB overwrite", [&](int i) { b.overwrite(i); }, false},
        {"seq 1 MiB append", [&](int i) { b.append(i); }, true},
        {"seq 1 MiB read", [&](int i) { b.read_all(i); }, false},
        {"rand 4 KiB overwrite", [&](int i) { b.random_4k(i, true); }, false},
        {"rand 4 KiB read", [&](int i) { b.random_4k(i, false); }, false},
    };
    printf("parallel_bench: daxfs through the Filesystem API, %llu MiB per thread, median of %d, %u CPUs%s\n\n",
           static_cast<unsigned long long>(o.size / kMiB), o.reps, std::thread::hardware_concurrency(),
           o.quick ? ", --quick" : "");
    printf("| workload | 1 thread, 1 file: MiB/s | 2 threads, 2 files: MiB/s | 2T / 1T |\n");
    printf("|---|---:|---:|---:|\n");
    for (const Workload& w : workloads) {
      std::vector<double> one, two, ratio;
      for (int r = 0; r < o.reps; r++) {
        double mibs[2];
        for (int threads = 1; threads <= 2; threads++) {
          if (w.appends) b.new_appended();
          double s = run_threads(threads, w.body);
          mibs[threads - 1] = static_cast<double>(threads * o.size) / kMiB / s;
        }
        one.push_back(mibs[0]);
        two.push_back(mibs[1]);
        ratio.push_back(mibs[1] / mibs[0]);
      }
      printf("| %s | %.0f | %.0f | %.2f |\n", w.name, median(one), median(two), median(ratio));
      fflush(stdout);
    }
    return 0;
  } catch (const std::exception& e) {
    fprintf(stderr, "parallel_bench: %s\n", e.what());
    remove_device_files();
    return 1;
  }
}
