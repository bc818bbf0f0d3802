// What the libFuzzer harnesses of tests/fuzz/ share: reading structured values from the
// fuzzer's bytes (Input), the harnesses' own assertion (FUZZ_CHECK: a message and abort(), which
// libFuzzer reports as a crash and saves the input for), and the per-process work directory.
// Not thread-safe: a harness runs one input at a time on libFuzzer's thread.
#pragma once

#include <sys/stat.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

namespace daxfs::fuzz {

// The fuzzer's bytes as a stream of little values. Once exhausted every read yields zeros, so a
// harness never has to check before reading; done() says when to stop a loop.
class Input {
 public:
  Input(const uint8_t* data, size_t size) : data_(data), size_(size) {}
  bool done() const { return at_ >= size_; }
  size_t left() const { return size_ - at_; }
  uint8_t u8() { return static_cast<uint8_t>(take(1)); }
  uint16_t u16() { return static_cast<uint16_t>(take(2)); }
  uint32_t u32() { return static_cast<uint32_t>(take(4)); }
  uint64_t u64() { return take(8); }
  bool flip() { return u8() & 1; }
  // Up to `n` bytes (fewer when the input ends).
  std::string bytes(size_t n) {
    n = std::min(n, left());
    std::string out(reinterpret_cast<const char*>(data_ + at_), n);
    at_ += n;
    return out;
  }
  template <typename T>
  const T& pick(const std::vector<T>& from) {
    return from[u8() % from.size()];
  }

 private:
  uint64_t take(size_t n) {
    uint64_t v = 0;
    for (size_t i = 0; i < n && at_ < size_; i++) v |= uint64_t{data_[at_++]} << (8 * i);
    return v;
  }
  const uint8_t* data_;
  size_t size_;
  size_t at_ = 0;
};

// Values that reach edge cases: around 0, block and page boundaries, 2^31, 2^32, 2^63 and 2^64.
inline uint64_t interesting_u64(Input& in) {
  static const uint64_t kValues[] = {0,
                                     1,
                                     4095,
                                     4096,
                                     4097,
                                     8192,
                                     65536,
                                     1 << 20,
                                     (2 << 20) - 4096,
                                     2 << 20,
                                     (uint64_t{1} << 31) - 1,
                                     uint64_t{1} << 31,
                                     uint64_t{1} << 32,
                                     uint64_t{1} << 40,
                                     (uint64_t{1} << 62),
                                     INT64_MAX - 4095,
                                     INT64_MAX - 4096 + 1,
                                     INT64_MAX,
                                     uint64_t{INT64_MAX} + 1,
                                     UINT64_MAX - 4095,
                                     UINT64_MAX - 1,
                                     UINT64_MAX};
  uint8_t how = in.u8();
  switch (how % 4) {
    case 0: return kValues[(how >> 2) % (sizeof kValues / sizeof kValues[0])];
    case 1: return uint64_t{in.u8()} * 4096;         // a small block multiple
    case 2: return uint64_t{in.u16()} + (how >> 2);  // small, unaligned
    default: return in.u64();
  }
}

}  // namespace daxfs::fuzz

// The sanitizers' report stream, which libFuzzer keeps open under -close_fd_mask (scripts/fuzz
// closes the harnesses' own stdout and stderr: the programs under test print a lot).
extern "C" void __sanitizer_report_error_summary(const char* summary) __attribute__((weak));

namespace daxfs::fuzz {

[[noreturn]] inline void fail(const char* file, int line, const char* expr, const std::string& detail) {
  std::string message = std::string("daxfs-fuzz: ") + file + ":" + std::to_string(line) + ": FUZZ_CHECK(" + expr +
                        ") failed" + (detail.empty() ? "" : ": ") + detail;
  fprintf(stderr, "\n%s\n", message.c_str());
  fflush(stderr);
  if (__sanitizer_report_error_summary) __sanitizer_report_error_summary(message.c_str());
  abort();
}

// Asserts a property of the code under test; `detail` (a std::string expression) is printed
// only on failure.
#define FUZZ_CHECK(cond, detail)                                                    \
  do {                                                                              \
    if (!(cond)) ::daxfs::fuzz::fail(__FILE__, __LINE__, #cond, std::string(detail)); \
  } while (0)

// The process's work directory: $DAXFS_FUZZ_TMP (scripts/fuzz points it at its own temp dir and
// removes that even after a crash), else /dev/shm or /tmp. A fresh daxfs-fuzz-XXXXXX inside it,
// removed when the process exits normally.
class WorkDir {
 public:
  static const WorkDir& get() {
    static WorkDir dir;
    return dir;
  }
  std::string file(const std::string& name) const { return path_ + "/" + name; }
  const std::string& path() const { return path_; }
  ~WorkDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }

 private:
  WorkDir() {
    const char* env = getenv("DAXFS_FUZZ_TMP");
    std::string base = env && *env ? env : access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    std::string tmpl = base + "/daxfs-fuzz-XXXXXX";
    if (mkdtemp(tmpl.data()) == nullptr) {
      perror("daxfs-fuzz: mkdtemp");
      abort();
    }
    path_ = tmpl;
  }
  std::string path_;
};

}  // namespace daxfs::fuzz
