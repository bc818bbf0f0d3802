// Operations on unbounded numbers of extents stay inside the journal; ENOSPC is found before
// anything changes; a crash in the middle of a long truncate never brings old data back; the
// mount never frees data on the strength of an invalid field, and refuses an impossible geometry
// pointing at fsck.daxfs. (Found by review and issue 7; each case failed before its fix.)
#include <fcntl.h>
#include <linux/falloc.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <thread>

#include "tests/support/fs_fixture.h"

using daxfs::test::FsFixture;

TEST_CASE("punch and zero-range over 100k extents commit in batches", "[fs][robust][slow]") {
  FsFixture f(1ULL << 30);
  uint64_t x = f.make_file(f.root(), "X");
  const int n = 110000;  // ~4.4 MB of journal entries in one transaction before the fix
  for (int i = 0; i < n; i++) REQUIRE(f->fallocate(x, FALLOC_FL_KEEP_SIZE, 2ULL * i * 4096, 4096));
  REQUIRE(f->file_info(x)->extents == static_cast<uint64_t>(n));
  REQUIRE(f->fallocate(x, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, 2ULL * n * 4096));
  CHECK(f->file_info(x)->extents == 0);
  CHECK_FALSE(f->is_shut_down());

  uint64_t y = f.make_file(f.root(), "Y");
  const int m = 60000;
  for (int i = 0; i < m; i++) REQUIRE(f->write(y, 2ULL * i * 4096, "w", 1));
  REQUIRE(f->fallocate(y, FALLOC_FL_ZERO_RANGE, 0, 2ULL * m * 4096));
  CHECK_FALSE(f->is_shut_down());
  std::string b(1, '?');
  REQUIRE(f->read(y, 4096ULL * 2 * 777, 1, b.data()));
  CHECK(b[0] == '\0');
  f.remount();
  CHECK(f->file_info(y)->unwritten_blocks == 2ULL * m);
}

TEST_CASE("ENOSPC is found before anything changes", "[fs][robust][enospc]") {
  FsFixture f(16ULL << 20);
  std::string blk(4096, 'A');
  // A: an extent of 3 blocks then 168 single-block extents: its record block is full.
  uint64_t a = f.make_file(f.root(), "A");
  std::string three(3 * 4096, 'A');
  REQUIRE(f->write(a, 0, three.data(), three.size()));
  for (int i = 0; i < 168; i++) REQUIRE(f->write(a, (4 + 2 * i) * 4096ULL, blk.data(), 4096));
  REQUIRE(f->file_info(a)->extents == 169);
  // G fills the device; every other block punched: free space is single blocks.
  uint64_t g = f.make_file(f.root(), "G");
  uint64_t off = 0;
  while (f->write(g, off, blk.data(), 4096)) off += 4096;
  for (uint64_t b = 1; b + 1 < off / 4096; b += 2)
    REQUIRE(f->fallocate(g, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, b * 4096, 4096));
  uint64_t free0 = f->statfs().f_bfree;
  // As many blocks as are free: the extent records could not fit, so it must fail up front.
  uint64_t c = f.make_file(f.root(), "C");
  CHECK(f->fallocate(c, 0, 0, (free0 - 8) * 4096).error() == ENOSPC);
  CHECK(f->getattr(c)->st_blocks == 0);
  CHECK(f->statfs().f_bfree == free0);
  // Splitting A's first extent needs a record block: there is one.
  REQUIRE(f->fallocate(a, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 4096, 4096));
  std::string got(4096, '?');
  REQUIRE(f->read(a, 2 * 4096, 4096, got.data()));
  CHECK(got == blk);
  CHECK_FALSE(f->is_shut_down());
  f.remount();
  REQUIRE(f->read(a, 2 * 4096, 4096, got.data()));
  CHECK(got == blk);
}

TEST_CASE("a crash in the middle of a long truncate never brings old data back", "[fs][robust][crash]") {
  FsFixture f(512ULL << 20);
  uint64_t x = f.make_file(f.root(), "X");
  const int n = 20000;  // > 4096 extents: the size commits first, then batches from the end
  for (int i = 0; i < n; i++) REQUIRE(f->write(x, 2ULL * i * 4096, "SECRET", 6));
  uint64_t old_size = f->getattr(x)->st_size;
  f.unmount();
  pid_t pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    f.mount();
    uint64_t base = f->counters().transactions.load();
    std::thread killer([&] {
      while (f->counters().transactions.load() < base + 2) {
      }
      kill(getpid(), SIGKILL);  // dies between two truncate batches
    });
    daxfs::fs::SetAttr a;
    a.valid = daxfs::fs::SetAttr::kSize;
    a.size = 0;
    (void)f->setattr(x, a);
    for (;;) pause();
  }
  int status;
  waitpid(pid, &status, 0);
  REQUIRE(WIFSIGNALED(status));
  f.mount();
  CHECK(f->getattr(x)->st_size == 0);
  CHECK(f->counters().post_eof_trimmed > 0);
  daxfs::fs::SetAttr a;
  a.valid = daxfs::fs::SetAttr::kSize;
  a.size = old_size;
  REQUIRE(f->setattr(x, a));
  std::string buf(4096, '?');
  REQUIRE(f->read(x, 0, 4096, buf.data()));
  CHECK(buf.substr(0, 6) == std::string(6, '\0'));
}

TEST_CASE("a failed removexattr keeps the attribute", "[fs][robust][xattr]") {
  FsFixture f;
  uint64_t ino = f.make_file(f.root(), "f");
  REQUIRE(f->setxattr(ino, "user.keep", "v", 0));
  CHECK(f->removexattr(ino, "user.nope").error() == ENODATA);
  CHECK(f->getxattr(ino, "user.keep").value() == "v");
  REQUIRE(f->removexattr(ino, "user.keep"));
  f.remount();
  CHECK(f->getxattr(ino, "user.keep").error() == ENODATA);
}

TEST_CASE("a journal replay that corrupts the superblock is caught before it is used",
          "[fs][robust][corrupt]") {
  FsFixture f(16ULL << 20);
  f.unmount();
  {
    auto d = daxfs::pmemdev::Device::open(f.path(), {});
    REQUIRE(d);
    const auto* sb = reinterpret_cast<const daxfs::fs::SuperBlock*>((*d)->base());
    daxfs::fs::Journal j(**d, sb->journal_start, sb->journal_blocks);
    daxfs::fs::Txn t;
    uint64_t bogus = 1ULL << 40;  // first_chunk far past the end of the device
    t.write(offsetof(daxfs::fs::SuperBlock, first_chunk), &bogus, 8);
    j.crash_next_commit_at(daxfs::fs::Journal::CrashPoint::kAfterCommitRecord);
    REQUIRE(j.commit(t));
  }
  auto d = daxfs::pmemdev::Device::open(f.path(), {});
  REQUIRE(d);
  std::string why;
  auto m = daxfs::fs::Filesystem::mount(std::move(d).value(), {}, why);
  CHECK(m.error() == EUCLEAN);
  CHECK(why.find("geometry") != std::string::npos);
}

TEST_CASE("a clone over finely alternating reference counts stays inside the journal",
          "[fs][robust][reflink][slow]") {
  FsFixture f(2ULL << 30);
  const uint64_t blocks = 96000;  // 48,000 alternating count runs: far more records than one txn holds
  uint64_t a = f.make_file(f.root(), "a");
  REQUIRE(f->fallocate(a, 0, 0, blocks * 4096));
  REQUIRE(f->write(a, 0, "x", 1));
  uint64_t b = f.make_file(f.root(), "b");
  for (uint64_t i = 0; i < blocks; i += 2) REQUIRE(f->clone_range(a, i * 4096, b, i * 4096, 4096));
  uint64_t e = f.make_file(f.root(), "e");
  REQUIRE(f->clone_range(a, 0, e, 0, 0));
  CHECK_FALSE(f->is_shut_down());
  REQUIRE(f->fallocate(a, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, blocks * 4096));
  CHECK_FALSE(f->is_shut_down());
  f.remount();  // the mount re-verifies every refcount record against the mappings
  CHECK(f->file_info(e)->data_blocks == blocks);
}

namespace {
// Writes `value` at device byte `offset` of an unmounted filesystem's device.
template <typename T>
void poke(const std::string& path, uint64_t offset, const T& value) {
  auto d = daxfs::pmemdev::Device::open(path, {});
  REQUIRE(d);
  REQUIRE(offset + sizeof value <= (*d)->size());
  (*d)->memcpy_persist(offset, &value, sizeof value);
}
uint64_t size_offset(uint64_t ino) {
  return daxfs::fs::ino_block(ino) * 4096 + daxfs::fs::ino_slot(ino) * 256 + offsetof(daxfs::fs::DiskInode, size);
}
}  // namespace

TEST_CASE("mount refuses an impossible file size instead of trimming the file's data",
          "[fs][robust][corrupt]") {
  // Issue 7, item 6: a size of 2^64 - 1 rounded EOF to block 0, and the post-EOF trim at mount
  // freed every extent of the file.
  for (uint64_t size : {~uint64_t{0}, uint64_t{1} << 63, (uint64_t{1} << 63) + 1}) {
    INFO("size " << size);
    FsFixture f;
    const std::string data(5 * 4096, 'K');
    uint64_t ino = f.make_file(f.root(), "k", data);
    f.unmount();
    poke(f.path(), size_offset(ino), size);
    auto d = daxfs::pmemdev::Device::open(f.path(), {});
    REQUIRE(d);
    std::string why;
    auto m = daxfs::fs::Filesystem::mount(std::move(d).value(), {}, why);
    CHECK(m.error() == EUCLEAN);
    CHECK(why.find("size") != std::string::npos);
    CHECK(why.find("fsck.daxfs") != std::string::npos);
    CHECK(std::count(why.begin(), why.end(), '\n') == 0);
    // Nothing was freed: with the size back, every byte is there.
    poke(f.path(), size_offset(ino), uint64_t{data.size()});
    f.mount();
    CHECK(f->counters().post_eof_trimmed == 0);
    CHECK(f->file_info(ino)->data_blocks == 5);
    CHECK(f.read_all(ino) == data);
  }
}

TEST_CASE("the post-EOF trim at mount keeps every block inside the largest valid size", "[fs][robust]") {
  FsFixture f;
  const std::string data(3 * 4096, 'M');
  uint64_t ino = f.make_file(f.root(), "m", data);
  f.unmount();
  poke(f.path(), size_offset(ino), daxfs::fs::kMaxFileSize);
  f.mount();
  CHECK(f->counters().post_eof_trimmed == 0);
  CHECK(f->file_info(ino)->data_blocks == 3);
  std::string got(data.size(), '\0');
  REQUIRE(f->read(ino, 0, got.size(), got.data()).value() == got.size());
  CHECK(got == data);
}

TEST_CASE("mount refuses an impossible superblock geometry with one line pointing at fsck.daxfs",
          "[fs][robust][corrupt]") {
  FsFixture f;  // 64 MiB: 16384 blocks, a 1024-block journal
  f.unmount();
  auto refused = [&](const std::string& what, const std::string& phrase) {
    INFO(what);
    auto d = daxfs::pmemdev::Device::open(f.path(), {});
    REQUIRE(d);
    std::string why;
    auto m = daxfs::fs::Filesystem::mount(std::move(d).value(), {}, why);
    CHECK_FALSE(m);
    CHECK(why.find(phrase) != std::string::npos);
    CHECK(why.find("fsck.daxfs") != std::string::npos);
  };
  const size_t count = offsetof(daxfs::fs::SuperBlock, block_count);
  for (uint64_t blocks : {uint64_t{100}, uint64_t{1024}, uint64_t{2048}, uint64_t{3000}}) {
    poke(f.path(), count, blocks);
    refused("block_count " + std::to_string(blocks), "geometry");
  }
  poke(f.path(), count, uint64_t{1} << 40);
  refused("block_count 2^40", "smaller than its filesystem");
  poke(f.path(), count, uint64_t{16384});
  poke(f.path(), offsetof(daxfs::fs::SuperBlock, journal_blocks), uint64_t{15});
  refused("journal_blocks 15", "geometry");
  poke(f.path(), offsetof(daxfs::fs::SuperBlock, journal_blocks), uint64_t{1024});
  REQUIRE(truncate(f.path().c_str(), 8 << 20) == 0);
  refused("a device cut to 8 MiB", "smaller than its filesystem");
  REQUIRE(truncate(f.path().c_str(), 64 << 20) == 0);
  f.mount();  // the tail reads as zeros, where nothing was stored
}
