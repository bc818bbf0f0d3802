// A formatted 32 MiB device in a temp dir for the fsck tests: populate it through the Filesystem
// API, unmount, poke bytes of its media, then run fsck. Each test owns its fixture and device.
#pragma once

#include <catch2/catch.hpp>
#include <cstddef>
#include <cstring>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>

#include "fs/filesystem.h"
#include "fs/fsck/fsck.h"
#include "fs/fsck/report.h"
#include "tests/support/temp_dir.h"

namespace daxfs::test {

class FsckFixture {
 public:
  explicit FsckFixture(uint64_t size = 32ULL << 20, const fs::FormatOptions& format = {}) {
    path_ = dir_.file("pmem0");
    pmemdev::OpenOptions o;
    o.create = pmemdev::Create::kYes;
    o.size = size;
    auto d = pmemdev::Device::open(path_, o);
    REQUIRE(d);
    REQUIRE(fs::format(**d, format));
  }
  const std::string& path() const { return path_; }

  // Mounts through the Filesystem API; fails the test when the mount refuses.
  std::unique_ptr<fs::Filesystem> mount() {
    auto d = pmemdev::Device::open(path_, {});
    REQUIRE(d);
    std::string why;
    auto f = fs::Filesystem::mount(std::move(d).value(), {}, why);
    INFO("mount: " << why);
    REQUIRE(f);
    return std::move(f).value();
  }
  bool mounts() {
    auto d = pmemdev::Device::open(path_, {});
    REQUIRE(d);
    std::string why;
    auto f = fs::Filesystem::mount(std::move(d).value(), {}, why);
    if (!f) UNSCOPED_INFO("mount refused: " << why);
    return static_cast<bool>(f);
  }

  fsck::Report fsck(fsck::Mode mode) {
    fsck::Report r = fsck::run_fsck({path_, mode});
    UNSCOPED_INFO((mode == fsck::Mode::kRepair ? "fsck -y:\n" : "fsck -n:\n") << fsck::format_text(r) << r.error);
    return r;
  }
  fsck::Report check() { return fsck(fsck::Mode::kCheck); }
  fsck::Report repair() { return fsck(fsck::Mode::kRepair); }

  // Raw media access (the device is not claimed: the filesystem must be unmounted).
  template <typename T>
  T get(uint64_t offset) {
    auto d = open();
    T v;
    memcpy(&v, d->base() + offset, sizeof v);
    return v;
  }
  template <typename T>
  void put(uint64_t offset, const T& v) {
    put_bytes(offset, &v, sizeof v);
  }
  void put_bytes(uint64_t offset, const void* data, size_t length) {
    auto d = open();
    REQUIRE(offset + length <= d->size());
    d->memcpy_persist(d->base() + offset, data, length);
  }
  fs::SuperBlock sb() { return get<fs::SuperBlock>(0); }
  static uint64_t inode_at(uint64_t ino) {
    return fs::ino_block(ino) * fs::kBlockSize + fs::ino_slot(ino) * fs::kInodeSize;
  }
  fs::DiskInode inode(uint64_t ino) { return get<fs::DiskInode>(inode_at(ino)); }
  template <typename T>
  void put_inode_field(uint64_t ino, size_t field_offset, const T& v) {
    put(inode_at(ino) + field_offset, v);
  }
  // The media offset of the entry `name` in directory `dir`; 0 when absent.
  uint64_t dirent_at(uint64_t dir, const std::string& name) {
    uint64_t b = inode(dir).head;
    for (int guard = 0; b != 0 && guard < 1000; guard++) {
      for (uint32_t s = 0; s < fs::kDirentsPerBlock; s++) {
        uint64_t off = b * fs::kBlockSize + sizeof(fs::RecordBlockHeader) + s * sizeof(fs::DiskDirent);
        auto de = get<fs::DiskDirent>(off);
        if (de.ino != 0 && std::string(de.name, de.name_length) == name) return off;
      }
      b = get<fs::RecordBlockHeader>(b * fs::kBlockSize).next;
    }
    return 0;
  }
  // The media offset of the first extent record in use of file `ino`; 0 when none.
  uint64_t extent_at(uint64_t ino) {
    uint64_t b = inode(ino).head;
    for (int guard = 0; b != 0 && guard < 1000; guard++) {
      for (uint32_t s = 0; s < fs::kExtentsPerBlock; s++) {
        uint64_t off = b * fs::kBlockSize + sizeof(fs::RecordBlockHeader) + s * sizeof(fs::DiskExtent);
        if (get<fs::DiskExtent>(off).length != 0) return off;
      }
      b = get<fs::RecordBlockHeader>(b * fs::kBlockSize).next;
    }
    return 0;
  }
  std::string media() {
    std::ifstream in(path_, std::ios::binary);
    std::ostringstream s;
    s << in.rdbuf();
    return s.str();
  }
  void set_media(const std::string& bytes) { put_bytes(0, bytes.data(), bytes.size()); }

 private:
  std::unique_ptr<pmemdev::Device> open() {
    auto d = pmemdev::Device::open(path_, {});
    REQUIRE(d);
    return std::move(d).value();
  }
  TempDir dir_;
  std::string path_;
};

inline bool has_problem(const fsck::Report& r, const std::string& kind, uint64_t ino = 0) {
  for (const fsck::Problem& p : r.problems)
    if (p.kind == kind && (ino == 0 || p.ino == ino)) return true;
  return false;
}

inline fs::Cred root_cred() { return fs::Cred{0, 0, 022}; }

}  // namespace daxfs::test
