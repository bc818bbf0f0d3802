// Memory failure in metadata (fs/notify_failure.cc): every kind of metadata block the daemon holds
// in memory is rebuilt from that copy when poisoned, the filesystem goes on, and a remount (which
// validates every record) and fsck find it whole; the superblock shuts the filesystem down; poison
// found at mount in metadata refuses the mount with a pointer at fsck, except in the dead part of
// the journal, which the mount rewrites. Poison is injected through a second open of the device
// and the notice delivered by calling notify_failure() (the fixture runs no notifier thread).
#include <fcntl.h>
#include <sys/stat.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <set>

#include "daxcore/daxfs_ioctl.h"
#include "tests/support/fs_fixture.h"

#ifdef DAXFS_HAVE_FSCK
#include "fs/fsck/fsck.h"
#include "fs/fsck/report.h"
#endif

using daxfs::test::FsFixture;
namespace fs = daxfs::fs;
namespace pmemdev = daxfs::pmemdev;

namespace {

constexpr uint64_t kB = 4096;

std::unique_ptr<pmemdev::Device> side_open(const std::string& path) {
  auto dev = pmemdev::Device::open(path, {pmemdev::Create::kNo, 0, pmemdev::Map::kNo});
  REQUIRE(dev);
  return std::move(dev).value();
}

// Poisons one block and tells the filesystem, as the notifier thread would.
void poison(FsFixture& f, uint64_t block) {
  REQUIRE(side_open(f.path())->inject_error(block * kB, kB));
  f->notify_failure(block * kB, kB, pmemdev::FailureKind::kMemoryFailure);
}

bool poisoned(FsFixture& f, uint64_t block) {
  for (const auto& r : side_open(f.path())->list_errors())
    if (r.offset < (block + 1) * kB && block * kB < r.offset + r.length) return true;
  return false;
}

// The metadata blocks of `kind` (owned by `ino` when it is not 0), in device order.
std::vector<uint64_t> meta_blocks(FsFixture& f, uint64_t kind, uint64_t ino = 0) {
  std::vector<uint64_t> out;
  for (const auto& r : f->fsmap(0, UINT64_MAX, 0, SIZE_MAX))
    if (r.kind == kind && (ino == 0 || r.ino == ino))
      for (uint64_t b = r.physical / kB; b < (r.physical + r.length) / kB; b++) out.push_back(b);
  return out;
}

uint64_t rebuilt(FsFixture& f) { return f->counters().metadata_rebuilt.load(); }

void fsck_clean(FsFixture& f) {
#ifdef DAXFS_HAVE_FSCK
  f.unmount();
  auto report = daxfs::fsck::run_fsck({f.path(), daxfs::fsck::Mode::kCheck});
  INFO(daxfs::fsck::format_text(report) << report.error);
  CHECK(report.exit_code == daxfs::fsck::kExitClean);
  f.mount();
#else
  f.remount();
#endif
}

// A file of `n` one-block extents (every other block written): n records.
uint64_t fragmented(FsFixture& f, const std::string& name, uint64_t n) {
  uint64_t ino = f.make_file(f.root(), name);
  for (uint64_t i = 0; i < n; i++) {
    std::string block(kB, static_cast<char>('a' + i % 26));
    REQUIRE(f->write(ino, 2 * i * kB, block.data(), block.size()).value() == kB);
  }
  return ino;
}

void check_fragmented(FsFixture& f, uint64_t ino, uint64_t n) {
  std::string all = f.read_all(ino);
  REQUIRE(all.size() == (2 * n - 1) * kB);
  for (uint64_t i = 0; i < n; i++) {
    INFO("extent " << i);
    REQUIRE(all[2 * i * kB] == static_cast<char>('a' + i % 26));
  }
}

}  // namespace

TEST_CASE("a poisoned extent-map block is rebuilt elsewhere from memory, anywhere in its chain",
          "[fs][poison][metadata]") {
  FsFixture f;
  const uint64_t n = 400;  // three record blocks of 169
  uint64_t ino = fragmented(f, "frag", n);
  auto blocks = meta_blocks(f, DAXFS_OWN_EXTENT_MAP, ino);
  REQUIRE(blocks.size() == 3);
  std::set<uint64_t> bad;
  for (int round = 0; round < 3; round++) {  // middle, then each end, of the chain as it is now
    auto now = meta_blocks(f, DAXFS_OWN_EXTENT_MAP, ino);
    uint64_t victim = now[round == 0 ? 1 : round == 1 ? 0 : 2];
    poison(f, victim);
    bad.insert(victim);
    CHECK_FALSE(f->is_shut_down());
    CHECK(rebuilt(f) == static_cast<uint64_t>(round + 1));
    auto after = meta_blocks(f, DAXFS_OWN_EXTENT_MAP, ino);
    CHECK(after.size() == 3);
    for (uint64_t b : after) CHECK(bad.count(b) == 0);  // retired, never reused
    check_fragmented(f, ino, n);
  }
  // The map keeps working: more extents, a punch, then a remount that validates every record.
  std::string tail(kB, 'z');
  REQUIRE(f->write(ino, 2 * n * kB, tail.data(), tail.size()));
  REQUIRE(f->fallocate(ino, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, 2 * kB));
  fsck_clean(f);
  std::string all = f.read_all(ino);
  CHECK(all[0] == '\0');
  CHECK(all[2 * kB] == 'b');
  CHECK(all[2 * n * kB] == 'z');
  for (uint64_t b : bad) CHECK(poisoned(f, b));  // the poison stays until cleared
}

TEST_CASE("a poisoned directory block is rebuilt elsewhere: every name still resolves",
          "[fs][poison][metadata]") {
  FsFixture f;
  auto dir = f->mkdir(f.root(), "d", 0755, {});
  REQUIRE(dir);
  const int n = 40;  // three dirent blocks of 14
  for (int i = 0; i < n; i++) REQUIRE(f->mknod(dir->st_ino, "name" + std::to_string(i), S_IFREG | 0644, 0, {}));
  auto blocks = meta_blocks(f, DAXFS_OWN_DIRECTORY, dir->st_ino);
  REQUIRE(blocks.size() == 3);
  poison(f, blocks[1]);
  CHECK_FALSE(f->is_shut_down());
  CHECK(rebuilt(f) == 1);
  auto after = meta_blocks(f, DAXFS_OWN_DIRECTORY, dir->st_ino);
  CHECK(std::find(after.begin(), after.end(), blocks[1]) == after.end());
  REQUIRE(f->unlink(dir->st_ino, "name20"));  // a change in the rebuilt block
  fsck_clean(f);
  for (int i = 0; i < n; i++) {
    INFO("name" << i);
    CHECK(static_cast<bool>(f->lookup(dir->st_ino, "name" + std::to_string(i))) == (i != 20));
  }
}

TEST_CASE("a poisoned inode chunk is rewritten in place from memory and its poison cleared",
          "[fs][poison][metadata]") {
  FsFixture f;
  uint64_t a = f.make_file(f.root(), "a", "alpha");
  uint64_t chunk = fs::ino_block(a);
  poison(f, chunk);
  CHECK_FALSE(f->is_shut_down());
  CHECK(rebuilt(f) == 1);
  CHECK_FALSE(poisoned(f, chunk));  // the recovery write cleared it
  uint64_t b = f.make_file(f.root(), "b", "beta");
  fsck_clean(f);
  CHECK(f.read_all(a) == "alpha");
  CHECK(f.read_all(b) == "beta");
  CHECK(f->lookup(f.root(), "a")->st_ino == a);
}

TEST_CASE("a poisoned symlink target and xattr blob move; the refcount chain is rewritten",
          "[fs][poison][metadata]") {
  FsFixture f;
  auto link = f->symlink(f.root(), "l", "/some/target", {});
  REQUIRE(link);
  uint64_t x = f.make_file(f.root(), "x", "data");
  REQUIRE(f->setxattr(x, "user.k", std::string(100, 'v'), 0));
  uint64_t src = fragmented(f, "src", 300);  // many shared ranges: refcount records
  uint64_t dst = f.make_file(f.root(), "dst");
  REQUIRE(f->clone_range(src, 0, dst, 0, 0));
  auto sym = meta_blocks(f, DAXFS_OWN_SYMLINK, link->st_ino);
  auto xat = meta_blocks(f, DAXFS_OWN_XATTR, x);
  auto ref = meta_blocks(f, DAXFS_OWN_REFCOUNT);
  REQUIRE(sym.size() == 1);
  REQUIRE(xat.size() == 1);
  REQUIRE(ref.size() >= 2);
  poison(f, sym[0]);
  poison(f, xat[0]);
  poison(f, ref[0]);
  CHECK_FALSE(f->is_shut_down());
  CHECK(rebuilt(f) == 3);
  CHECK(meta_blocks(f, DAXFS_OWN_SYMLINK, link->st_ino) != sym);
  CHECK(meta_blocks(f, DAXFS_OWN_XATTR, x) != xat);
  for (uint64_t b : meta_blocks(f, DAXFS_OWN_REFCOUNT)) CHECK(b != ref[0]);
  // Sharing still counts right: unsharing one extent and a remount that checks every record.
  std::string w(kB, 'W');
  REQUIRE(f->write(dst, 0, w.data(), w.size()));
  fsck_clean(f);
  CHECK(*f->readlink(link->st_ino) == "/some/target");
  CHECK(*f->getxattr(x, "user.k") == std::string(100, 'v'));
  CHECK(f.read_all(dst).substr(0, kB) == w);
  CHECK(f.read_all(src)[0] == 'a');
}

TEST_CASE("a poisoned journal block is rewritten (it holds nothing between transactions)",
          "[fs][poison][metadata]") {
  FsFixture f;
  uint64_t a = f.make_file(f.root(), "a", "one");
  auto journal = meta_blocks(f, DAXFS_OWN_JOURNAL);
  REQUIRE(journal.size() >= 16);
  poison(f, journal[0]);  // the header
  poison(f, journal[3]);
  CHECK_FALSE(f->is_shut_down());
  CHECK_FALSE(poisoned(f, journal[0]));
  CHECK_FALSE(poisoned(f, journal[3]));
  REQUIRE(f->write(a, 0, "two", 3));  // the journal works
  fsck_clean(f);
  CHECK(f.read_all(a) == "two");
}

TEST_CASE("a poisoned superblock shuts the filesystem down (XFS's floor); the mount then refuses",
          "[fs][poison][metadata]") {
  FsFixture f;
  f.make_file(f.root(), "a", "x");
  poison(f, 0);
  CHECK(f->is_shut_down());
  CHECK(f->mknod(f.root(), "b", S_IFREG | 0644, 0, {}).error() == EIO);
  f.unmount();
  auto d = pmemdev::Device::open(f.path(), {});
  REQUIRE(d);
  std::string why;
  auto again = fs::Filesystem::mount(std::move(d).value(), {}, why);
  CHECK(again.error() == EIO);
  CHECK(why.find("superblock") != std::string::npos);
  CHECK(why.find("clear-error") != std::string::npos);
}

TEST_CASE("poison in metadata found at mount: a clear refusal pointing at fsck, except the dead journal",
          "[fs][poison][metadata]") {
  FsFixture f;
  uint64_t ino = fragmented(f, "frag", 10);
  uint64_t extents = meta_blocks(f, DAXFS_OWN_EXTENT_MAP, ino).at(0);
  uint64_t journal_block = meta_blocks(f, DAXFS_OWN_JOURNAL).at(5);
  f.unmount();
  // The journal's dead part: the mount rewrites it and goes on.
  REQUIRE(side_open(f.path())->inject_error(journal_block * kB, kB));
  f.mount();
  CHECK_FALSE(poisoned(f, journal_block));
  check_fragmented(f, ino, 10);
  f.unmount();
  // An extent-map block: nothing holds it in memory yet: refused, with the way out.
  REQUIRE(side_open(f.path())->inject_error(extents * kB, kB));
  auto d = pmemdev::Device::open(f.path(), {});
  REQUIRE(d);
  std::string why;
  auto refused = fs::Filesystem::mount(std::move(d).value(), {}, why);
  CHECK(refused.error() == EIO);
  CHECK(why.find("poisoned metadata") != std::string::npos);
  CHECK(why.find("extent-map block of inode " + std::to_string(ino)) != std::string::npos);
  CHECK(why.find("fsck.daxfs") != std::string::npos);
  // Cleared (the emulator keeps the bytes), it mounts again.
  REQUIRE(side_open(f.path())->clear_error(extents * kB, kB));
  f.mount();
  check_fragmented(f, ino, 10);
}
