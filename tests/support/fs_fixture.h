// A formatted device in a temp dir, mounted through the Filesystem API (no FUSE), remountable.
#pragma once

#include <catch2/catch.hpp>
#include <memory>
#include <string>

#include "fs/filesystem.h"
#include "tests/support/temp_dir.h"

namespace daxfs::test {

class FsFixture {
 public:
  explicit FsFixture(uint64_t size = 64ULL << 20) {
    path_ = dir_.file("pmem0");
    pmemdev::OpenOptions o;
    o.create = pmemdev::Create::kYes;
    o.size = size;
    auto d = pmemdev::Device::open(path_, o);
    REQUIRE(d);
    REQUIRE(fs::format(**d, {}));
    mount();
  }
  fs::Filesystem& fs() { return *fs_; }
  fs::Filesystem* operator->() { return fs_.get(); }
  const std::string& path() const { return path_; }
  uint64_t root() const { return fs_->root_ino(); }
  void mount(fs::MountOptions opts = {}) {
    auto d = pmemdev::Device::open(path_, {});
    REQUIRE(d);
    std::string why;
    auto f = fs::Filesystem::mount(std::move(d).value(), opts, why);
    INFO(why);
    REQUIRE(f);
    fs_ = std::move(f).value();
  }
  void unmount() { fs_.reset(); }
  void remount() {
    unmount();
    mount();
  }
  // Creates a regular file with `data`; returns its ino.
  uint64_t make_file(uint64_t parent, const std::string& name, const std::string& data = "") {
    auto st = fs_->mknod(parent, name, S_IFREG | 0644, 0, {});
    REQUIRE(st);
    if (!data.empty()) REQUIRE(fs_->write(st->st_ino, 0, data.data(), data.size()).value() == data.size());
    return st->st_ino;
  }
  std::string read_all(uint64_t ino) {
    auto st = fs_->getattr(ino);
    REQUIRE(st);
    std::string out(static_cast<size_t>(st->st_size), '\0');
    auto n = fs_->read(ino, 0, out.size(), out.data());
    REQUIRE(n);
    out.resize(*n);
    return out;
  }

 private:
  TempDir dir_;
  std::string path_;
  std::unique_ptr<fs::Filesystem> fs_;
};

}  // namespace daxfs::test
