// Reflink through the Filesystem API: clone shares blocks, writes copy on write, unshare,
// dedupe, copy_file_range, refcounts across remounts, and the reference-count ceiling.
#include <fcntl.h>
#include <linux/falloc.h>

#include <catch2/catch.hpp>

#include "tests/support/fs_fixture.h"

using daxfs::test::FsFixture;

namespace {
std::string pattern(size_t n, char seed) {
  std::string s(n, '\0');
  for (size_t i = 0; i < n; i++) s[i] = static_cast<char>(seed + i % 251);
  return s;
}
}  // namespace

TEST_CASE("a clone shares every block and a write to either copy leaves the other intact",
          "[fs][reflink]") {
  FsFixture f;
  std::string data = pattern(10 * 4096 + 100, 'a');
  uint64_t a = f.make_file(f.root(), "a", data);
  uint64_t b = f.make_file(f.root(), "b");
  uint64_t free0 = f->statfs().f_bfree;
  REQUIRE(f->clone_range(a, 0, b, 0, 0).value() == data.size());
  // Shared blocks count once: only metadata is new (b's extent block, a refcount block).
  CHECK(f->statfs().f_bfree == free0 - 2);
  free0 -= 2;
  CHECK(f.read_all(b) == data);
  CHECK(f->file_info(b)->data_blocks == 11);
  REQUIRE(f->write(b, 4096 + 10, "CHANGED", 7));
  CHECK(f.read_all(a) == data);
  std::string changed = data;
  changed.replace(4096 + 10, 7, "CHANGED");
  CHECK(f.read_all(b) == changed);
  CHECK(f->statfs().f_bfree == free0 - 1);  // one block copied
  f.remount();
  CHECK(f.read_all(a) == data);
  CHECK(f.read_all(b) == changed);
  // Unlinking one sharer frees only what nobody else maps.
  REQUIRE(f->unlink(f.root(), "a"));
  f->forget(a, 1);
  CHECK(f->statfs().f_bfree == free0 - 1 + 1 + 1);  // a's copy of block 1 and its extent block
  CHECK(f.read_all(b) == changed);
  f.remount();
  CHECK(f.read_all(b) == changed);
}

TEST_CASE("clone ranges follow FICLONERANGE rules", "[fs][reflink]") {
  FsFixture f;
  uint64_t a = f.make_file(f.root(), "a", pattern(8 * 4096 + 5, 'x'));
  uint64_t b = f.make_file(f.root(), "b", pattern(2 * 4096, 'y'));
  CHECK(f->clone_range(a, 1, b, 0, 4096).error() == EINVAL);        // misaligned
  CHECK(f->clone_range(a, 0, b, 0, 100).error() == EINVAL);         // length not aligned, not EOF
  CHECK(f->clone_range(a, 0, a, 4096, 8192).error() == EINVAL);     // overlapping, same file
  CHECK(f->clone_range(a, 9 * 4096, b, 0, 4096).error() == EINVAL); // past the source's EOF
  // Range ending at the source's EOF (unaligned) extends the destination exactly.
  REQUIRE(f->clone_range(a, 8 * 4096, b, 4 * 4096, 5).value() == 5);
  CHECK(f->getattr(b)->st_size == 4 * 4096 + 5);
  std::string tail(5, '?');
  REQUIRE(f->read(b, 4 * 4096, 5, tail.data()));
  CHECK(tail == pattern(8 * 4096 + 5, 'x').substr(8 * 4096));
  REQUIRE(f->clone_range(a, 0, a, 16 * 4096, 4096));  // same file, apart: fine (and extends it)
  CHECK(f->getattr(a)->st_size == 17 * 4096);
  // Holes and unwritten extents are cloned as such.
  uint64_t c = f.make_file(f.root(), "c");
  REQUIRE(f->write(c, 8 * 4096, "z", 1));
  REQUIRE(f->fallocate(c, FALLOC_FL_KEEP_SIZE, 0, 4096));
  uint64_t d = f.make_file(f.root(), "d");
  REQUIRE(f->clone_range(c, 0, d, 0, 0));
  auto info = f->file_info(d).value();
  CHECK(info.data_blocks == 2);
  CHECK(info.unwritten_blocks == 1);
}

TEST_CASE("unshare gives private copies and keeps holes", "[fs][reflink]") {
  FsFixture f;
  uint64_t a = f.make_file(f.root(), "a");
  REQUIRE(f->write(a, 0, pattern(4096, 'a').data(), 4096));
  REQUIRE(f->write(a, 3 * 4096, pattern(4096, 'b').data(), 4096));
  uint64_t b = f.make_file(f.root(), "b");
  REQUIRE(f->clone_range(a, 0, b, 0, 0));
  uint64_t free0 = f->statfs().f_bfree;
  REQUIRE(f->unshare_range(b, 0, 4 * 4096));
  CHECK(f->statfs().f_bfree == free0 - 2);
  CHECK(f->file_info(b)->data_blocks == 2);  // holes stayed holes
  CHECK(f.read_all(a) == f.read_all(b));
  REQUIRE(f->unshare_range(b, 0, 4 * 4096));  // nothing shared: nothing done
  CHECK(f->statfs().f_bfree == free0 - 2);
}

TEST_CASE("dedupe shares equal ranges and reports different ones", "[fs][reflink]") {
  FsFixture f;
  std::string data = pattern(4 * 4096, 'q');
  uint64_t a = f.make_file(f.root(), "a", data);
  uint64_t b = f.make_file(f.root(), "b", data);
  uint64_t c = f.make_file(f.root(), "c", pattern(4 * 4096, 'r'));
  uint64_t free0 = f->statfs().f_bfree;
  auto same = f->dedupe_range(a, 0, b, 0, 4 * 4096);
  REQUIRE(same);
  CHECK_FALSE(same->differs);
  CHECK(f->statfs().f_bfree == free0 + 4 - 1);  // b's 4 blocks freed; one refcount block
  auto diff = f->dedupe_range(a, 0, c, 0, 4 * 4096);
  REQUIRE(diff);
  CHECK(diff->differs);
  CHECK(f->dedupe_range(a, 0, b, 0, 8 * 4096).error() == EINVAL);  // past EOF
  CHECK(f.read_all(b) == data);
}

TEST_CASE("copy_file_range copies, sharing the aligned middle", "[fs][reflink]") {
  FsFixture f;
  std::string data = pattern(10 * 4096, 'c');
  uint64_t a = f.make_file(f.root(), "a", data);
  uint64_t b = f.make_file(f.root(), "b");
  uint64_t free0 = f->statfs().f_bfree;
  REQUIRE(f->copy_range(a, 100, b, 100, 9 * 4096).value() == 9 * 4096);
  CHECK(f.read_all(b) == std::string(100, '\0') + data.substr(100, 9 * 4096));
  CHECK(f->statfs().f_bfree == free0 - 4);  // head and tail blocks, b's extent and a refcount block
  uint64_t c = f.make_file(f.root(), "c");
  REQUIRE(f->copy_range(a, 1, c, 0, 5000).value() == 5000);  // unaligned: a plain copy
  CHECK(f.read_all(c) == data.substr(1, 5000));
  CHECK(f->copy_range(a, 20 * 4096, c, 0, 10).value() == 0);  // past EOF: nothing
}

TEST_CASE("punch, zero-range and truncate of shared ranges drop references correctly",
          "[fs][reflink]") {
  FsFixture f;
  std::string data = pattern(8 * 4096, 'p');
  uint64_t a = f.make_file(f.root(), "a", data);
  uint64_t b = f.make_file(f.root(), "b");
  REQUIRE(f->clone_range(a, 0, b, 0, 0));
  uint64_t free0 = f->statfs().f_bfree;
  REQUIRE(f->fallocate(b, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 100, 3 * 4096));  // CoW of 2 partials
  REQUIRE(f->fallocate(b, FALLOC_FL_ZERO_RANGE, 5 * 4096, 4096));
  daxfs::fs::SetAttr t;
  t.valid = daxfs::fs::SetAttr::kSize;
  t.size = 7 * 4096 + 1;
  REQUIRE(f->setattr(b, t));
  CHECK(f.read_all(a) == data);
  std::string want = data.substr(0, 7 * 4096 + 1);
  std::fill(want.begin() + 100, want.begin() + 100 + 3 * 4096, '\0');
  std::fill(want.begin() + 5 * 4096, want.begin() + 6 * 4096, '\0');
  CHECK(f.read_all(b) == want);
  CHECK(f->statfs().f_bfree <= free0);
  f.remount();
  CHECK(f.read_all(a) == data);
  CHECK(f.read_all(b) == want);
}

TEST_CASE("ten thousand clones of one file share its blocks", "[fs][reflink][slow]") {
  FsFixture f(256ULL << 20);
  std::string data = pattern(64 * 1024, 'm');
  uint64_t a = f.make_file(f.root(), "a", data);
  uint64_t free0 = f->statfs().f_bfree;
  for (int i = 0; i < 10000; i++) {
    auto st = f->mknod(f.root(), "c" + std::to_string(i), S_IFREG | 0644, 0, {});
    REQUIRE(st);
    REQUIRE(f->clone_range(a, 0, st->st_ino, 0, 0));
    f->forget(st->st_ino, 1);
  }
  // Data is not copied: each clone costs its inode slot, extent-record block and name only.
  CHECK(free0 - f->statfs().f_bfree <= 10000 + 10000 / 15 + 10000 / 14 + 10);  // + dirents
  f.remount();
  auto c = f->lookup(f.root(), "c9999");
  REQUIRE(c);
  CHECK(f.read_all(c->st_ino) == data);
}

TEST_CASE("at the reference-count ceiling a clone copies instead of sharing", "[fs][reflink][slow]") {
  FsFixture f(1ULL << 30);
  uint64_t a = f.make_file(f.root(), "a", "one block");
  for (uint32_t i = 1; i < daxfs::fs::kMaxRefcount; i++) {
    auto st = f->mknod(f.root(), "c" + std::to_string(i), S_IFREG | 0644, 0, {});
    REQUIRE(st);
    REQUIRE(f->clone_range(a, 0, st->st_ino, 0, 0));
    f->forget(st->st_ino, 1);
  }
  CHECK(f->counters().refcount_overflow_copies == 0);
  uint64_t free0 = f->statfs().f_bfree;
  uint64_t last = f.make_file(f.root(), "last");
  REQUIRE(f->clone_range(a, 0, last, 0, 0));
  CHECK(f->counters().refcount_overflow_copies == 1);
  CHECK(f->statfs().f_bfree < free0);
  CHECK(f.read_all(last) == "one block");
  f.remount();
  CHECK(f.read_all(last) == "one block");
}
