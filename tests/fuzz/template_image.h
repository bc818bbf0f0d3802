// A device file made once per fuzzing process (mkfs, then filled through the Filesystem API)
// and brought back to those bytes before each input: the harnesses that mount or fsck damage it
// and need the same starting point every time. The restore compares the device with the saved
// bytes block by block through a mapping of its own and copies only what differs (a 16 MiB
// device, a few dozen changed blocks per input), so no file is created or mapped per input.
// Not thread-safe; the filesystem must be unmounted around restore().
#pragma once

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <functional>
#include <memory>
#include <string>

#include "fs/filesystem.h"
#include "tests/fuzz/fuzz_util.h"

namespace daxfs::fuzz {

class TemplateImage {
 public:
  static constexpr uint64_t kSize = fs::kMinDeviceSize;  // the smallest daxfs: 16 MiB

  // Formats `path`, mounts it, runs `fill`, unmounts (`fill` may leave a crashed journal through
  // Filesystem::crash_commit_for_testing) and saves the bytes. Aborts when any step fails: the
  // harness cannot run without its template.
  TemplateImage(std::string path, const std::function<void(fs::Filesystem&)>& fill) : path_(std::move(path)) {
    {
      pmemdev::OpenOptions o;
      o.create = pmemdev::Create::kYes;
      o.size = kSize;
      auto d = pmemdev::Device::open(path_, o);
      FUZZ_CHECK(d, "cannot create the template device " + path_);
      FUZZ_CHECK(fs::format(**d, {}), "mkfs of the template failed");
    }
    {
      std::string why;
      auto f = mount({}, why);
      FUZZ_CHECK(f, "the template does not mount: " + why);
      fill(**f);
    }
    fd_ = ::open(path_.c_str(), O_RDWR | O_CLOEXEC);
    FUZZ_CHECK(fd_ >= 0, "cannot open " + path_);
    void* p = mmap(nullptr, kSize, PROT_READ | PROT_WRITE, MAP_SHARED, fd_, 0);
    FUZZ_CHECK(p != MAP_FAILED, "cannot map " + path_);
    media_ = static_cast<uint8_t*>(p);
    saved_.assign(reinterpret_cast<const char*>(media_), kSize);
  }
  ~TemplateImage() {
    if (media_) munmap(media_, kSize);
    if (fd_ >= 0) ::close(fd_);
  }
  TemplateImage(const TemplateImage&) = delete;
  TemplateImage& operator=(const TemplateImage&) = delete;

  const std::string& path() const { return path_; }
  // The device's bytes, writable (the same pages the mount and fsck map).
  uint8_t* media() { return media_; }
  const uint8_t* saved() const { return reinterpret_cast<const uint8_t*>(saved_.data()); }
  const fs::SuperBlock& saved_super() const { return *reinterpret_cast<const fs::SuperBlock*>(saved_.data()); }

  // Makes the device the template again.
  void restore() {
    for (uint64_t at = 0; at < kSize; at += fs::kBlockSize)
      if (memcmp(media_ + at, saved_.data() + at, fs::kBlockSize) != 0)
        memcpy(media_ + at, saved_.data() + at, fs::kBlockSize);
  }

  Result<std::unique_ptr<fs::Filesystem>> mount(const fs::MountOptions& opts, std::string& why) {
    auto d = pmemdev::Device::open(path_, {});
    if (!d) {
      why = std::string("the device does not open: ") + strerror(d.error());
      return error(d.error());
    }
    return fs::Filesystem::mount(std::move(d).value(), opts, why);
  }

 private:
  std::string path_;
  int fd_ = -1;
  uint8_t* media_ = nullptr;
  std::string saved_;
};

inline fs::Cred root_cred() { return fs::Cred{0, 0, 022}; }

// A template-building step that must succeed: returns its result, aborts with the call's text
// when it failed.
template <typename R>
R setup(R r, const char* what) {
  FUZZ_CHECK(r, std::string("template setup: ") + what + ": " + (r ? "" : strerror(r.error())));
  return r;
}
#define FUZZ_SETUP(expr) ::daxfs::fuzz::setup((expr), #expr)

}  // namespace daxfs::fuzz
