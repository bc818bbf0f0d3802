// The load test's shared pieces (docs/reliability.md, "Load"): the worker options, the random
// source, the per-worker tally of operations and errors, and running a helper program. One
// instance per process; nothing here is thread-safe (each worker is one thread).
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace daxfs::load {

// What a worker process does (--role).
enum class Role {
  kFiles,   // I/O, metadata, xattrs, reflink, copy_file_range, dedupe in its own directory
  kMapped,  // plain mmap(MAP_SHARED) stores + msync, write, truncate, punch, clone (run under daxfsctl run)
  kVictim,  // maps its files and poisons them itself: expects EIO and SIGBUS, clears, rewrites
};

struct WorkerOptions {
  int id = 0;
  Role role = Role::kFiles;
  std::string dir;      // the worker's own directory on the mount (created by the worker)
  std::string mnt;      // the mount point (inject-error and clear-error name it)
  std::string ctl;      // daxfsctl
  std::string report;   // where the worker writes its tally at the end
  double seconds = 60;  // how long the random mix runs before the final comparison
  uint64_t seed = 1;
};

// xorshift64*: fast, reproducible from --seed.
class Rng {
 public:
  explicit Rng(uint64_t seed) : s_(seed * 0x9E3779B97F4A7C15ull + 1) {}
  uint64_t next() {
    s_ ^= s_ >> 12;
    s_ ^= s_ << 25;
    s_ ^= s_ >> 27;
    return s_ * 0x2545F4914F6CDD1Dull;
  }
  uint64_t below(uint64_t n) { return n == 0 ? 0 : next() % n; }
  bool chance(int percent) { return below(100) < static_cast<uint64_t>(percent); }
  std::string bytes(size_t n) {
    std::string s(n, '\0');
    for (size_t i = 0; i < n; i += 8) {
      uint64_t v = next();
      for (size_t j = 0; j < 8 && i + j < n; j++) s[i + j] = static_cast<char>(v >> (8 * j));
    }
    return s;
  }

 private:
  uint64_t s_;
};

// Operations done (by kind), expected errors (EIO and SIGBUS from injected poison) and
// unexpected ones (each also printed to stderr as it happens).
struct Tally {
  std::map<std::string, uint64_t> ops;
  std::map<std::string, uint64_t> expected;
  uint64_t unexpected = 0;
};

// Writes the tally as "op KIND N", "expected KIND N", "unexpected N" lines; false on an I/O error.
bool write_report(const std::string& path, const Tally& t);
// Adds a report file's counts to `t`; false when the file is missing or malformed.
bool add_report(const std::string& path, Tally& t);

// Runs argv (no shell) with stdout and stderr captured into `out`; its exit status, or 128 + the
// signal that ended it, or -1 when it could not be started.
int run_capture(const std::vector<std::string>& argv, std::string* out);

}  // namespace daxfs::load
