// fsck.daxfs on healthy filesystems and on devices it must refuse: clean exits, counts, -n never
// writing, and exit 8 for a mounted device or a garbage superblock.
#include <sys/xattr.h>

#include <chrono>
#include <random>

#include "tests/fsck/fsck_fixture.h"

using namespace daxfs;
using daxfs::test::FsckFixture;

namespace {
// Directories, files with data, a hard link, a symlink, a fifo, xattrs: one of everything.
void populate(fs::Filesystem& f) {
  auto cred = test::root_cred();
  uint64_t root = f.root_ino();
  auto a = f.mkdir(root, "a", 0755, cred);
  REQUIRE(a);
  REQUIRE(f.mkdir(a->st_ino, "b", 0755, cred));
  auto file = f.mknod(a->st_ino, "file", S_IFREG | 0644, 0, cred);
  REQUIRE(file);
  std::string data(3 * fs::kBlockSize + 100, 'x');
  REQUIRE(f.write(file->st_ino, 0, data.data(), data.size()));
  REQUIRE(f.write(file->st_ino, 1 << 20, "tail", 4));  // a hole, then a second extent
  REQUIRE(f.link(file->st_ino, root, "hardlink"));
  REQUIRE(f.symlink(root, "sym", "a/file", cred));
  REQUIRE(f.mknod(root, "fifo", S_IFIFO | 0644, 0, cred));
  REQUIRE(f.setxattr(file->st_ino, "user.colour", "blue", 0));
  REQUIRE(f.setxattr(a->st_ino, "user.big", std::string(5000, 'v'), 0));
  for (int i = 0; i < 40; i++) REQUIRE(f.mknod(root, "many" + std::to_string(i), S_IFREG | 0600, 0, cred));
}
}  // namespace

TEST_CASE("a freshly formatted filesystem is clean", "[fsck]") {
  FsckFixture fx;
  auto r = fx.check();
  CHECK(r.exit_code == fsck::kExitClean);
  CHECK(r.clean);
  CHECK(r.problems.empty());
  CHECK(r.stats.inodes == 1);
  CHECK(r.stats.directories == 1);
  CHECK(r.stats.used_blocks + r.stats.free_blocks == r.stats.block_count);
  auto y = fx.repair();
  CHECK(y.exit_code == fsck::kExitClean);
  CHECK_FALSE(y.modified);
}

TEST_CASE("a populated filesystem is clean and counted right", "[fsck]") {
  FsckFixture fx;
  {
    auto f = fx.mount();
    populate(*f);
  }
  auto r = fx.check();
  CHECK(r.exit_code == fsck::kExitClean);
  CHECK(r.problems.empty());
  CHECK(r.stats.inodes == 1 + 2 + 1 + 1 + 1 + 40);
  CHECK(r.stats.directories == 3);
  CHECK(r.stats.files == 41);
  CHECK(r.stats.symlinks == 1);
  CHECK(r.stats.special == 1);
  auto j = fsck::to_json(r);
  CHECK(j["clean"] == true);
  CHECK(j["exit"] == 0);
  CHECK(j["inodes"] == 46);
  CHECK(j["problems"].empty());
  CHECK(fx.repair().exit_code == fsck::kExitClean);
}

TEST_CASE("fsck -n never writes the device", "[fsck]") {
  FsckFixture fx;
  uint64_t file;
  {
    auto f = fx.mount();
    populate(*f);
    file = f->lookup(f->root_ino(), "hardlink")->st_ino;
  }
  fx.put_inode_field(file, offsetof(fs::DiskInode, nlink), uint32_t{9});
  std::string before = fx.media();
  auto r = fx.check();
  CHECK(r.exit_code == fsck::kExitUncorrected);
  CHECK_FALSE(r.clean);
  CHECK(fx.media() == before);
}

TEST_CASE("a mounted device is refused with exit 8", "[fsck]") {
  FsckFixture fx;
  auto f = fx.mount();
  auto r = fx.repair();
  CHECK(r.exit_code == fsck::kExitOperational);
  CHECK(r.error.find("mounted") != std::string::npos);
}

TEST_CASE("a missing device or a garbage superblock is an operational error", "[fsck]") {
  FsckFixture fx;
  SECTION("missing") {
    auto r = fsck::run_fsck({fx.path() + ".nope", fsck::Mode::kCheck});
    CHECK(r.exit_code == fsck::kExitOperational);
  }
  SECTION("garbage") {
    std::mt19937_64 rng(7);
    std::string junk(fs::kBlockSize, '\0');
    for (char& c : junk) c = static_cast<char>(rng());
    fx.put_bytes(0, junk.data(), junk.size());
    for (auto mode : {fsck::Mode::kCheck, fsck::Mode::kRepair}) {
      auto r = fx.fsck(mode);
      CHECK(r.exit_code == fsck::kExitOperational);
      CHECK(r.error.find("not a daxfs") != std::string::npos);
    }
  }
  SECTION("garbage after a good magic") {
    std::mt19937_64 rng(8);
    std::string junk(fs::kBlockSize - 16, '\0');
    for (char& c : junk) c = static_cast<char>(rng());
    fx.put_bytes(16, junk.data(), junk.size());  // keeps magic and version
    auto r = fx.repair();
    CHECK((r.exit_code == fsck::kExitOperational || r.exit_code == fsck::kExitUncorrected ||
           r.exit_code == fsck::kExitCorrected));
  }
  SECTION("a newer format version") {
    fx.put(offsetof(fs::SuperBlock, version), uint32_t{fs::kFormatVersion + 1});
    CHECK(fx.repair().exit_code == fsck::kExitOperational);
  }
}

TEST_CASE("corrupt superblock fields are restored", "[fsck]") {
  FsckFixture fx;
  auto good = fx.sb();
  fx.put(offsetof(fs::SuperBlock, block_size), uint32_t{512});
  fx.put(offsetof(fs::SuperBlock, journal_blocks), uint64_t{3});
  fx.put(offsetof(fs::SuperBlock, block_count), uint64_t{1} << 40);
  CHECK_FALSE(fx.mounts());
  auto n = fx.check();
  CHECK(n.exit_code == fsck::kExitUncorrected);
  CHECK(test::has_problem(n, "superblock"));
  auto y = fx.repair();
  CHECK(y.exit_code == fsck::kExitCorrected);
  auto now = fx.sb();
  CHECK(now.block_size == fs::kBlockSize);
  CHECK(now.journal_blocks == good.journal_blocks);
  CHECK(now.block_count == good.block_count);
  CHECK(fx.check().exit_code == fsck::kExitClean);
  CHECK(fx.mounts());
}

// Hidden (run with "[perf]"): time and memory follow the metadata; prints how long a check takes.
TEST_CASE("fsck of a filesystem with many inodes", "[.][perf]") {
  FsckFixture fx(512ULL << 20);
  {
    auto f = fx.mount();
    auto cred = test::root_cred();
    for (int d = 0; d < 100; d++) {
      auto dir = f->mkdir(f->root_ino(), "d" + std::to_string(d), 0755, cred);
      REQUIRE(dir);
      for (int i = 0; i < 1000; i++) {
        auto st = f->mknod(dir->st_ino, "f" + std::to_string(i), S_IFREG | 0644, 0, cred);
        REQUIRE(st);
        if (i % 10 == 0) REQUIRE(f->write(st->st_ino, 0, "data", 4));
      }
    }
  }
  auto start = std::chrono::steady_clock::now();
  auto r = fx.check();
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - start).count();
  CHECK(r.exit_code == fsck::kExitClean);
  CHECK(r.stats.inodes == 100101);
  WARN("fsck -n of " << r.stats.inodes << " inodes: " << ms << " ms");
}
