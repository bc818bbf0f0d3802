// A formatted 32 MiB device in a temp dir for the fsck tests: populate it through the Filesystem
// API, unmount, poke bytes of its media (or cut the device short), then run fsck. Each test owns
// its fixture and device.
#pragma once

#include <fcntl.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstddef>
#include <cstring>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

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
  std::unique_ptr<fs::Filesystem> mount(const fs::MountOptions& opts = {}) {
    auto d = pmemdev::Device::open(path_, {});
    REQUIRE(d);
    std::string why;
    auto f = fs::Filesystem::mount(std::move(d).value(), opts, why);
    INFO("mount: " << why);
    REQUIRE(f);
    return std::move(f).value();
  }
  // Whether a mount accepts the device (a device too small to open counts as refused); `why`
  // gets the mount's reason.
  bool mounts(std::string* why = nullptr, const fs::MountOptions& opts = {}) {
    auto d = pmemdev::Device::open(path_, {});
    if (!d) {
      UNSCOPED_INFO("the device does not open: " << strerror(d.error()));
      return false;
    }
    std::string reason;
    auto f = fs::Filesystem::mount(std::move(d).value(), opts, reason);
    if (!f) UNSCOPED_INFO("mount refused: " << reason);
    if (why) *why = reason;
    return static_cast<bool>(f);
  }
  // Cuts the device file short (or extends it with zeros), as truncate(1) does.
  void resize(uint64_t size) { REQUIRE(::truncate(path_.c_str(), static_cast<off_t>(size)) == 0); }

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
    d->memcpy_persist(offset, data, length);
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
    std::ifstream in(path_, std::ios::binary | std::ios::ate);
    REQUIRE(in);
    std::string bytes(static_cast<size_t>(in.tellg()), '\0');
    in.seekg(0);
    in.read(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    REQUIRE(in);
    return bytes;
  }
  // Makes the media `bytes` again, writing only the blocks that differ, with plain file I/O (the
  // device is not claimed: no mapping to set up and tear down per fuzz round).
  void set_media(const std::string& bytes) {
    int fd = ::open(path_.c_str(), O_RDWR);
    REQUIRE(fd >= 0);
    std::string now(1 << 20, '\0');
    bool ok = true;
    for (uint64_t at = 0; at < bytes.size() && ok; at += now.size()) {
      size_t n = static_cast<size_t>(std::min<uint64_t>(now.size(), bytes.size() - at));
      ok = ::pread(fd, now.data(), n, static_cast<off_t>(at)) == static_cast<ssize_t>(n);
      for (size_t b = 0; ok && b < n; b += fs::kBlockSize) {
        size_t len = std::min<size_t>(fs::kBlockSize, n - b);
        if (memcmp(now.data() + b, bytes.data() + at + b, len) != 0)
          ok = ::pwrite(fd, bytes.data() + at + b, len, static_cast<off_t>(at + b)) == static_cast<ssize_t>(len);
      }
    }
    ::close(fd);
    REQUIRE(ok);
  }

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

// Every path reachable from the root with what a user sees of it: inode, mode, size, link count,
// and a file's contents (hashed) or a symlink's target. Two listings are equal when no inode,
// name or byte was lost or moved.
inline std::map<std::string, std::string> listing(fs::Filesystem& f) {
  std::map<std::string, std::string> out;
  std::vector<std::pair<uint64_t, std::string>> dirs{{f.root_ino(), ""}};
  while (!dirs.empty() && out.size() < 100000) {
    auto [dir, path] = dirs.back();
    dirs.pop_back();
    std::vector<std::string> names;
    REQUIRE(f.readdir(dir, 0, [&](const fs::DirEntry& e) {
      if (e.name != "." && e.name != "..") names.emplace_back(e.name);
      return true;
    }));
    for (const std::string& name : names) {
      auto st = f.lookup(dir, name);
      REQUIRE(st);
      std::string at = path + "/" + name;
      std::ostringstream v;
      v << st->st_ino << " mode " << std::oct << st->st_mode << std::dec << " size " << st->st_size << " links "
        << st->st_nlink;
      if (S_ISDIR(st->st_mode)) {
        dirs.emplace_back(st->st_ino, at);
      } else if (S_ISREG(st->st_mode)) {
        std::string data(static_cast<size_t>(std::min<off_t>(st->st_size, 4 << 20)), '\0');
        auto n = f.read(st->st_ino, 0, data.size(), data.data());
        REQUIRE(n);
        data.resize(*n);
        v << " data " << std::hash<std::string>{}(data);
      } else if (S_ISLNK(st->st_mode)) {
        auto target = f.readlink(st->st_ino);
        REQUIRE(target);
        v << " -> " << *target;
      }
      out[at] = v.str();
    }
  }
  return out;
}

// A small tree with a bit of everything (50 inodes): directories, files of several sizes (some
// with xattrs and hard links), shared blocks (a refcount chain), a symlink and a fifo.
inline void populate(fs::Filesystem& f) {
  auto cred = root_cred();
  uint64_t root = f.root_ino();
  uint64_t dirs[3] = {root, f.mkdir(root, "d1", 0755, cred)->st_ino, 0};
  dirs[2] = f.mkdir(dirs[1], "d2", 0755, cred)->st_ino;
  for (int i = 0; i < 45; i++) {
    uint64_t dir = dirs[i % 3];
    auto st = f.mknod(dir, "file" + std::to_string(i), S_IFREG | 0644, 0, cred);
    REQUIRE(st);
    std::string data(static_cast<size_t>(i % 5) * 3000 + 1, static_cast<char>('a' + i % 26));
    REQUIRE(f.write(st->st_ino, static_cast<uint64_t>(i % 4) * 8192, data.data(), data.size()));
    if (i % 7 == 0) REQUIRE(f.setxattr(st->st_ino, "user.n", std::to_string(i), 0));
    if (i % 9 == 0) REQUIRE(f.link(st->st_ino, root, "link" + std::to_string(i)));
  }
  // Shared blocks (a refcount chain and its records): whole clones, a partial one, and a file
  // sharing with itself.
  std::vector<uint64_t> files;
  REQUIRE(f.readdir(root, 0, [&](const fs::DirEntry& e) {
    if (e.name.rfind("file", 0) == 0) files.push_back(e.ino);
    return true;
  }));
  auto clone = [&](uint64_t src, uint64_t dst, uint64_t dst_off, uint64_t max_blocks) {
    uint64_t blocks = std::min<uint64_t>(max_blocks, static_cast<uint64_t>(f.getattr(src)->st_size) / fs::kBlockSize);
    if (blocks > 0) REQUIRE(f.clone_range(src, 0, dst, dst_off, blocks * fs::kBlockSize));  // whole blocks only
  };
  for (size_t i = 0; i + 1 < files.size(); i += 4) clone(files[i], files[i + 1], 0, 64);
  clone(files[2], files[2], 1 << 20, 1);
  clone(files[3], files[6], 4 * fs::kBlockSize, 1);
  REQUIRE(f.symlink(dirs[1], "sym", "../file1", cred));
  REQUIRE(f.mknod(dirs[2], "fifo", S_IFIFO | 0600, 0, cred));
}

// What a read-only mount lists (the media is left as it is).
inline std::map<std::string, std::string> listing(FsckFixture& fx) {
  fs::MountOptions ro;
  ro.read_only = fs::ReadOnly::kYes;
  auto f = fx.mount(ro);
  return listing(*f);
}

// fsck -n and the mount agree on the device as it is: a device the mount refuses is never called
// clean. The mount is read-only, so that it changes nothing but what fsck -y would change first
// (it replays a committed journal transaction, or clears a torn one).
inline void check_agreement(FsckFixture& fx) {
  auto n = fx.check();
  std::string why;
  fs::MountOptions ro;
  ro.read_only = fs::ReadOnly::kYes;
  bool mounted = fx.mounts(&why, ro);
  INFO("mount: " << (mounted ? "accepted" : "refused: " + why));
  if (!mounted) CHECK(n.exit_code != fsck::kExitClean);
}

}  // namespace daxfs::test
