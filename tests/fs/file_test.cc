// File data through the Filesystem API: writes over holes and unwritten extents, truncate,
// fallocate modes, SEEK_DATA/SEEK_HOLE, the 2^63 - 1 limit, ENOSPC, xattrs and ACLs.
#include <fcntl.h>
#include <linux/falloc.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <sys/statvfs.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <cstring>
#include <thread>

#include "tests/support/fs_fixture.h"

using daxfs::test::FsFixture;
using daxfs::fs::kMaxFileSize;

namespace {
std::string read_at(FsFixture& f, uint64_t ino, uint64_t off, size_t n) {
  std::string out(n, '?');
  auto r = f->read(ino, off, n, out.data());
  REQUIRE(r);
  out.resize(*r);
  return out;
}
}  // namespace

TEST_CASE("writes fill holes, keep surrounding bytes and read back across remounts", "[fs][file]") {
  FsFixture f;
  uint64_t ino = f.make_file(f.root(), "f");
  REQUIRE(f->write(ino, 5000, "middle", 6));
  CHECK(f->getattr(ino)->st_size == 5006);
  CHECK(read_at(f, ino, 0, 10) == std::string(10, '\0'));
  CHECK(read_at(f, ino, 4996, 20) == std::string(4, '\0') + "middle");
  REQUIRE(f->write(ino, 4094, "XXXX", 4));  // straddles the block boundary
  CHECK(read_at(f, ino, 4090, 10) == std::string(4, '\0') + "XXXX" + std::string(2, '\0'));
  CHECK(read_at(f, ino, 4998, 20) == std::string(2, '\0') + "middle");
  f.remount();
  CHECK(read_at(f, ino, 4090, 10) == std::string(4, '\0') + "XXXX" + std::string(2, '\0'));
  CHECK(read_at(f, ino, 4998, 20) == std::string(2, '\0') + "middle");
  CHECK(f->getattr(ino)->st_blocks == 16);  // two 4 KiB blocks
}

TEST_CASE("truncate zeroes the cut tail and frees whole blocks", "[fs][file]") {
  FsFixture f;
  uint64_t ino = f.make_file(f.root(), "f", std::string(3 * 4096, 'a'));
  uint64_t free0 = f->statfs().f_bfree;
  daxfs::fs::SetAttr a;
  a.valid = daxfs::fs::SetAttr::kSize;
  a.size = 100;
  REQUIRE(f->setattr(ino, a));
  CHECK(f->statfs().f_bfree == free0 + 2);
  a.size = 8192;
  REQUIRE(f->setattr(ino, a));
  CHECK(read_at(f, ino, 98, 4) == "aa" + std::string(2, '\0'));
  CHECK(read_at(f, ino, 4096, 4096) == std::string(4096, '\0'));
}

TEST_CASE("fallocate allocates unwritten extents that read as zeros and are holes to SEEK_DATA",
          "[fs][file][fallocate]") {
  FsFixture f;
  uint64_t ino = f.make_file(f.root(), "f", std::string(4096, 'd'));
  REQUIRE(f->fallocate(ino, 0, 4096, 8 * 4096));
  CHECK(f->getattr(ino)->st_size == 9 * 4096);
  CHECK(read_at(f, ino, 4096, 4096) == std::string(4096, '\0'));
  auto info = f->file_info(ino).value();
  CHECK(info.unwritten_blocks == 8);
  CHECK(f->lseek(ino, 0, SEEK_DATA).value() == 0);
  CHECK(f->lseek(ino, 0, SEEK_HOLE).value() == 4096);
  CHECK(f->lseek(ino, 4096, SEEK_DATA).error() == ENXIO);
  // Writing into the unwritten middle converts just that part.
  REQUIRE(f->write(ino, 5 * 4096 + 10, "w", 1));
  CHECK(read_at(f, ino, 5 * 4096, 12) == std::string(10, '\0') + "w" + std::string(1, '\0'));
  CHECK(f->lseek(ino, 4096, SEEK_DATA).value() == 5 * 4096);
  CHECK(f->lseek(ino, 5 * 4096, SEEK_HOLE).value() == 6 * 4096);
  CHECK(f->file_info(ino)->unwritten_blocks == 7);
  // KEEP_SIZE beyond EOF allocates without growing the file.
  REQUIRE(f->fallocate(ino, FALLOC_FL_KEEP_SIZE, 20 * 4096, 4096));
  CHECK(f->getattr(ino)->st_size == 9 * 4096);
  f.remount();
  CHECK(f->file_info(ino)->unwritten_blocks == 8);
  CHECK(read_at(f, ino, 5 * 4096 + 10, 1) == "w");
}

TEST_CASE("punch hole and zero range zero partial blocks and drop or unwrite whole ones",
          "[fs][file][fallocate]") {
  FsFixture f;
  uint64_t ino = f.make_file(f.root(), "f", std::string(4 * 4096, 'x'));
  uint64_t free0 = f->statfs().f_bfree;
  REQUIRE(f->fallocate(ino, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 100, 2 * 4096));
  CHECK(f->getattr(ino)->st_size == 4 * 4096);
  CHECK(read_at(f, ino, 98, 4) == "xx" + std::string(2, '\0'));
  CHECK(read_at(f, ino, 2 * 4096 + 98, 4) == std::string(2, '\0') + "xx");
  CHECK(f->statfs().f_bfree == free0 + 1);  // only block 1 was whole
  CHECK(f->lseek(ino, 4096, SEEK_DATA).value() == 2 * 4096);
  CHECK(f->fallocate(ino, FALLOC_FL_PUNCH_HOLE, 0, 4096).error() == EOPNOTSUPP);

  REQUIRE(f->fallocate(ino, FALLOC_FL_ZERO_RANGE, 3 * 4096 - 5, 4096 + 10));
  CHECK(f->getattr(ino)->st_size == 4 * 4096 + 5);
  std::string z = read_at(f, ino, 3 * 4096 - 6, 4096 + 12);
  CHECK(z.size() == 4096 + 11);
  CHECK(z.find_first_not_of('\0', 1) == std::string::npos);
  CHECK(z[0] == 'x');
  CHECK(f->file_info(ino)->unwritten_blocks >= 1);
  // Modes vfs_fallocate() refuses, and UNSHARE_RANGE, which this call does not offer.
  CHECK(f->fallocate(ino, FALLOC_FL_COLLAPSE_RANGE | FALLOC_FL_KEEP_SIZE, 0, 4096).error() == EOPNOTSUPP);
  CHECK(f->fallocate(ino, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE, 0, 4096).error() ==
        EOPNOTSUPP);
  CHECK(f->fallocate(ino, FALLOC_FL_UNSHARE_RANGE, 0, 4096).error() == EOPNOTSUPP);
  CHECK(f->fallocate(ino, 0x100, 0, 4096).error() == EOPNOTSUPP);
}

TEST_CASE("offsets at and around 2^63 - 1 neither overflow nor exceed the limit", "[fs][file][limits]") {
  FsFixture f;
  uint64_t ino = f.make_file(f.root(), "f");
  REQUIRE(f->write(ino, kMaxFileSize - 1, "z", 1).value() == 1);
  CHECK(f->getattr(ino)->st_size == static_cast<off_t>(kMaxFileSize));
  CHECK(read_at(f, ino, kMaxFileSize - 1, 10) == "z");
  f.remount();  // the extent holding the last possible block is legal on media
  CHECK(read_at(f, ino, kMaxFileSize - 1, 10) == "z");
  CHECK(f->write(ino, kMaxFileSize, "z", 1).error() == EFBIG);
  CHECK(f->write(ino, kMaxFileSize - 1, "zz", 2).value() == 1);  // short write up to the limit
  CHECK(f->fallocate(ino, 0, kMaxFileSize - 4096, 8192).error() == EFBIG);
  daxfs::fs::SetAttr a;
  a.valid = daxfs::fs::SetAttr::kSize;
  a.size = kMaxFileSize + 1;
  CHECK(f->setattr(ino, a).error() == EFBIG);
  a.size = 16ULL << 40;  // 16 TiB sparse
  REQUIRE(f->setattr(ino, a));
  REQUIRE(f->write(ino, (16ULL << 40) - 1, "e", 1));
  CHECK(f->getattr(ino)->st_blocks == 8);
  CHECK(f->lseek(ino, 0, SEEK_DATA).value() == (16ULL << 40) - 4096);
  f.remount();
  CHECK(read_at(f, ino, (16ULL << 40) - 1, 1) == "e");
}

TEST_CASE("running out of space fails cleanly and leaves a consistent filesystem", "[fs][file][enospc]") {
  FsFixture f(16ULL << 20);
  uint64_t ino = f.make_file(f.root(), "fill");
  std::string chunk(1 << 20, 'c');
  uint64_t off = 0;
  while (true) {
    auto r = f->write(ino, off, chunk.data(), chunk.size());
    if (!r) {
      CHECK(r.error() == ENOSPC);
      break;
    }
    off += *r;
  }
  CHECK(f->getattr(ino)->st_size == static_cast<off_t>(off));
  CHECK(f->mkdir(f.root(), "still-works", 0755, {}));  // the reserve keeps metadata possible
  REQUIRE(f->unlink(f.root(), "fill"));
  f->forget(ino, 1);
  f.remount();
  CHECK(f->statfs().f_bfree > 3000);
}

TEST_CASE("statfs promises only space that a large fallocate can have", "[fs][file][enospc]") {
  FsFixture f(8ULL << 30);
  for (int i = 0; i < 64; i++) f.make_file(f.root(), "empty" + std::to_string(i));
  struct statvfs s = f->statfs();
  CHECK(s.f_bavail <= s.f_bfree);
  uint64_t avail = s.f_bavail * s.f_frsize;
  REQUIRE(avail > (1u << 20));
  uint64_t big = f.make_file(f.root(), "big");
  auto st = f->fallocate(big, 0, 0, avail - 512 * 1024);
  INFO("fallocate of " << avail - 512 * 1024 << " bytes: " << (st ? 0 : st.error()));
  REQUIRE(st);
  // What is left is what statfs says: a second file takes it down to the last promised block
  // less the metadata its extents need, and beyond that ENOSPC without a shutdown.
  s = f->statfs();
  CHECK(s.f_bavail * s.f_frsize <= 512 * 1024);
  uint64_t rest = f.make_file(f.root(), "rest");
  CHECK(f->fallocate(rest, 0, 0, 64 * 4096));
  auto over = f->fallocate(rest, 0, 64 * 4096, 1ULL << 30);
  REQUIRE_FALSE(over);
  CHECK(over.error() == ENOSPC);
  CHECK_FALSE(f->is_shut_down());
  f.remount();
  CHECK(f->getattr(big)->st_size == static_cast<off_t>(avail - 512 * 1024));
}

TEST_CASE("xattrs honour create/replace flags and survive remounts", "[fs][xattr]") {
  FsFixture f;
  uint64_t ino = f.make_file(f.root(), "f");
  REQUIRE(f->setxattr(ino, "user.a", "1", 0));
  CHECK(f->setxattr(ino, "user.a", "2", XATTR_CREATE).error() == EEXIST);
  CHECK(f->setxattr(ino, "user.b", "2", XATTR_REPLACE).error() == ENODATA);
  REQUIRE(f->setxattr(ino, "trusted.t", std::string(65536, 'v'), 0));
  CHECK(f->setxattr(ino, "bogus.x", "1", 0).error() == EOPNOTSUPP);
  CHECK(f->setxattr(ino, "user.big", std::string(65537, 'v'), 0).error() == E2BIG);
  f.remount();
  CHECK(f->getxattr(ino, "user.a").value() == "1");
  CHECK(f->getxattr(ino, "trusted.t")->size() == 65536);
  CHECK(f->listxattr(ino).value() == std::string("trusted.t\0user.a\0", 17));
  REQUIRE(f->removexattr(ino, "user.a"));
  CHECK(f->getxattr(ino, "user.a").error() == ENODATA);
}

TEST_CASE("default ACLs are inherited and access ACLs drive the mode", "[fs][xattr][acl]") {
  FsFixture f;
  auto acl = [](std::initializer_list<std::array<uint32_t, 3>> entries) {
    std::string v(4, '\0');
    uint32_t version = 2;
    memcpy(v.data(), &version, 4);
    for (auto& e : entries) {
      uint16_t tag = static_cast<uint16_t>(e[0]), perm = static_cast<uint16_t>(e[1]);
      uint32_t id = e[2];
      v.append(reinterpret_cast<char*>(&tag), 2).append(reinterpret_cast<char*>(&perm), 2)
          .append(reinterpret_cast<char*>(&id), 4);
    }
    return v;
  };
  auto d = f->mkdir(f.root(), "d", 0755, {});
  // user::rwx user:1000:rwx group::r-x mask::rwx other::---
  std::string def = acl({{1, 7, 0}, {2, 7, 1000}, {4, 5, 0}, {0x10, 7, 0}, {0x20, 0, 0}});
  REQUIRE(f->setxattr(d->st_ino, "system.posix_acl_default", def, 0));
  auto file = f->mknod(d->st_ino, "f", S_IFREG | 0666, 0, {0, 0, 022});
  REQUIRE(file);
  CHECK((file->st_mode & 0777) == 0660);  // umask ignored, mask rw-, other ---
  CHECK(f->getxattr(file->st_ino, "system.posix_acl_access"));
  auto sub = f->mkdir(d->st_ino, "sub", 0777, {});
  CHECK(f->getxattr(sub->st_ino, "system.posix_acl_default").value() == def);
  // Without a default ACL the umask applies.
  auto plain = f->mknod(f.root(), "plain", S_IFREG | 0666, 0, {0, 0, 022});
  CHECK((plain->st_mode & 0777) == 0644);
  // A minimal access ACL is folded into the mode and not stored.
  REQUIRE(f->setxattr(plain->st_ino, "system.posix_acl_access", acl({{1, 6, 0}, {4, 0, 0}, {0x20, 4, 0}}), 0));
  CHECK((f->getattr(plain->st_ino)->st_mode & 0777) == 0604);
  CHECK(f->getxattr(plain->st_ino, "system.posix_acl_access").error() == ENODATA);
  CHECK(f->setxattr(plain->st_ino, "system.posix_acl_access", "junk", 0).error() == EINVAL);
}


TEST_CASE("a poison that lands on a block after a large write stored into it stays: the write does not clear it",
          "[fs][file][poison]") {
  // A write of 64 KiB or more copies its data without the global lock, then commits. The blocks
  // it stores whole clear their poison (a recovery write), but only poison that was there before
  // the store: poison that comes after it means the cells lost what was just written, and must
  // stay (reads EIO). It used to be looked for after the copy, so a poison that came in between
  // was cleared and the block read as good. Here the poison is injected once the write's first
  // block holds the new data, while the write still copies the rest.
  constexpr uint64_t kB = 4096, kSize = 64ULL << 20;  // long enough a copy to inject during it
  FsFixture f(192ULL << 20);
  uint64_t ino = f.make_file(f.root(), "big");
  const std::string a(kSize, 'A'), b(kSize, 'B');
  int fd = open(f.path().c_str(), O_RDONLY);
  REQUIRE(fd >= 0);
  int checked = 0;
  for (int round = 0; round < 3; round++) {
    // The first run places the file; the second, into the same (freed) blocks, is raced.
    REQUIRE(f->write(ino, 0, a.data(), a.size()).value() == a.size());
    auto rows = f->fiemap(ino, 0, 1);
    REQUIRE(rows);
    REQUIRE(!rows->empty());
    const uint64_t first = (*rows)[0].physical;
    daxfs::fs::SetAttr cut;
    cut.valid = daxfs::fs::SetAttr::kSize;
    REQUIRE(f->setattr(ino, cut));
    std::atomic<bool> stop{false}, injected{false};
    std::thread injector([&] {
      char c = 0;
      while (!stop && !(pread(fd, &c, 1, static_cast<off_t>(first)) == 1 && c == 'B')) {
      }
      if (stop) return;
      auto dev = daxfs::pmemdev::Device::open(f.path(), {daxfs::pmemdev::Create::kNo, 0, daxfs::pmemdev::Map::kNo});
      if (dev && (*dev)->inject_error(first, kB)) injected = true;
    });
    auto n = f->write(ino, 0, b.data(), b.size());
    stop = true;
    injector.join();
    REQUIRE(n);
    REQUIRE(*n == kSize);
    if (!injected) continue;  // the write landed elsewhere this time
    auto after = f->fiemap(ino, 0, 1);
    REQUIRE(after);
    REQUIRE((*after)[0].physical == first);
    auto dev = daxfs::pmemdev::Device::open(f.path(), {daxfs::pmemdev::Create::kNo, 0, daxfs::pmemdev::Map::kNo});
    REQUIRE(dev);
    CHECK((*dev)->poisoned(first, kB));
    std::string got(kB, '\0');
    CHECK(f->read(ino, 0, kB, got.data()).error() == EIO);
    REQUIRE((*dev)->clear_error(first, kB));
    checked++;
  }
  close(fd);
  CHECK(checked > 0);
}
