// A temporary directory owned by one test, removed (with everything in it) when the test ends,
// whether it passed or not. Lives in /dev/shm when possible: emulated pmem wants RAM speed.
#pragma once

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <string>

namespace daxfs::test {

class TempDir {
 public:
  TempDir() {
    std::string base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    std::string tmpl = base + "/daxfs-test-XXXXXX";
    char* p = mkdtemp(tmpl.data());
    if (p == nullptr) abort();
    path_ = p;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  std::string file(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

}  // namespace daxfs::test
