// What the Filesystem-API benchmarks (reflink_bench, parallel_bench) share: errors as exceptions,
// a median, and a formatted, mounted device in a directory that removes itself (device and
// ".ctl" file) on every exit: normal, failure, or a signal (SIGINT/SIGTERM/SIGHUP).
// Single-threaded set-up; one BenchDevice per process.
#pragma once

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "fs/filesystem.h"
#include "pmemdev/control.h"
#include "pmemdev/device.h"

namespace daxfs::bench {

constexpr uint64_t kBlock = 4096;
constexpr uint64_t kMiB = 1ULL << 20;
constexpr uint64_t kGiB = 1ULL << 30;

struct Failure : std::runtime_error {
  using std::runtime_error::runtime_error;
};

template <typename T>
T check(Result<T> r, const std::string& what) {
  if (!r) throw Failure(what + ": " + std::strerror(r.error()));
  return std::move(r).value();
}
inline void check(const Status& s, const std::string& what) {
  if (!s) throw Failure(what + ": " + std::strerror(s.error()));
}

inline double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.size() % 2 ? v[v.size() / 2] : (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2;
}

inline double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// The device paths, for the signal handler: removing files is async-signal-safe.
inline char g_device_path[4096];
inline char g_ctl_path[4096];

inline void remove_device_files() {
  if (g_device_path[0]) ::unlink(g_device_path);
  if (g_ctl_path[0]) ::unlink(g_ctl_path);
}

extern "C" inline void remove_device_files_and_die(int sig) {
  remove_device_files();
  ::signal(sig, SIG_DFL);
  ::raise(sig);
}

// A device of `size` bytes at DIR/NAME.PID, formatted and mounted; unmounted and removed by the
// destructor (and by a signal, once constructed).
class BenchDevice {
 public:
  BenchDevice(const std::string& dir, const std::string& name, uint64_t size) {
    path_ = dir + "/" + name + "." + std::to_string(::getpid());
    snprintf(g_device_path, sizeof g_device_path, "%s", path_.c_str());
    snprintf(g_ctl_path, sizeof g_ctl_path, "%s", pmemdev::ControlFile::path_for(path_).c_str());
    for (int sig : {SIGINT, SIGTERM, SIGHUP}) ::signal(sig, remove_device_files_and_die);
    pmemdev::OpenOptions open;
    open.create = pmemdev::Create::kYes;
    open.size = size;
    auto device = check(pmemdev::Device::open(path_, open), "create " + path_);
    check(fs::format(*device, {}), "format");
    std::string why;
    auto mounted = fs::Filesystem::mount(std::move(device), {}, why);
    if (!mounted) throw Failure("mount: " + why);
    fs_ = std::move(mounted).value();
  }
  ~BenchDevice() {
    fs_.reset();
    remove_device_files();
  }
  BenchDevice(const BenchDevice&) = delete;
  BenchDevice& operator=(const BenchDevice&) = delete;

  fs::Filesystem& fs() { return *fs_; }

 private:
  std::string path_;
  std::unique_ptr<fs::Filesystem> fs_;
};

}  // namespace daxfs::bench
