// Names through the Filesystem API: create, link, unlink, rename (flags), readdir, orphans, and
// persistence across remounts.
#include <dirent.h>
#include <linux/fs.h>
#include <sys/sysmacros.h>

#include <catch2/catch.hpp>
#include <cstring>
#include <set>

#include "tests/support/fs_fixture.h"

using daxfs::test::FsFixture;

namespace {
std::set<std::string> names(daxfs::fs::Filesystem& fs, uint64_t dir) {
  std::set<std::string> out;
  REQUIRE(fs.readdir(dir, 0, [&](const daxfs::fs::DirEntry& e) {
    out.insert(std::string(e.name));
    return true;
  }));
  return out;
}
}  // namespace

TEST_CASE("files, directories, links and nodes survive a remount", "[fs][namespace]") {
  FsFixture f;
  uint64_t a = f.make_file(f.root(), "a", "hello");
  auto d = f->mkdir(f.root(), "d", 0750, {1000, 1000, 0});
  REQUIRE(d);
  REQUIRE(f->symlink(d->st_ino, "s", "../a", {}));
  REQUIRE(f->link(a, d->st_ino, "hard"));
  REQUIRE(f->mknod(f.root(), "fifo", S_IFIFO | 0600, 0, {}));
  REQUIRE(f->mknod(f.root(), "chr", S_IFCHR | 0600, makedev(1, 3), {}));
  f.remount();
  CHECK(names(f.fs(), f.root()) == std::set<std::string>{".", "..", "a", "d", "fifo", "chr"});
  auto st = f->lookup(f.root(), "d");
  REQUIRE(st);
  CHECK(st->st_uid == 1000);
  CHECK((st->st_mode & 07777) == 0750);
  CHECK(st->st_nlink == 2);
  auto s = f->lookup(st->st_ino, "s");
  REQUIRE(s);
  CHECK(f->readlink(s->st_ino).value() == "../a");
  CHECK(f->lookup(st->st_ino, "hard")->st_nlink == 2);
  CHECK(f.read_all(a) == "hello");
  auto c = f->lookup(f.root(), "chr");
  CHECK(S_ISCHR(c->st_mode));
  CHECK(c->st_rdev == makedev(1, 3));
  CHECK(S_ISFIFO(f->lookup(f.root(), "fifo")->st_mode));
  CHECK(f->lookup(f.root(), "..")->st_ino == f.root());
}

TEST_CASE("namespace errors follow POSIX", "[fs][namespace]") {
  FsFixture f;
  auto d = f->mkdir(f.root(), "d", 0755, {});
  f.make_file(d->st_ino, "x");
  uint64_t file = f.make_file(f.root(), "file");
  CHECK(f->mknod(f.root(), "file", S_IFREG | 0644, 0, {}).error() == EEXIST);
  CHECK(f->rmdir(f.root(), "d").error() == ENOTEMPTY);
  CHECK(f->rmdir(f.root(), "file").error() == ENOTDIR);
  CHECK(f->unlink(f.root(), "d").error() == EISDIR);
  CHECK(f->unlink(f.root(), "nope").error() == ENOENT);
  CHECK(f->link(d->st_ino, f.root(), "dlink").error() == EPERM);
  CHECK(f->lookup(file, "x").error() == ENOTDIR);
  CHECK(f->mknod(f.root(), std::string(256, 'n'), S_IFREG, 0, {}).error() == ENAMETOOLONG);
  CHECK(f->mknod(f.root(), std::string(255, 'n'), S_IFREG, 0, {}));
  CHECK(f->symlink(f.root(), "long", std::string(4096, 't'), {}).error() == ENAMETOOLONG);
  CHECK(f->symlink(f.root(), "max", std::string(4095, 't'), {}));
}

TEST_CASE("rename replaces, refuses with NOREPLACE and swaps with EXCHANGE", "[fs][namespace][rename]") {
  FsFixture f;
  uint64_t a = f.make_file(f.root(), "a", "A");
  uint64_t b = f.make_file(f.root(), "b", "B");
  auto d1 = f->mkdir(f.root(), "d1", 0755, {});
  auto d2 = f->mkdir(f.root(), "d2", 0755, {});
  auto sub = f->mkdir(d1->st_ino, "sub", 0755, {});

  CHECK(f->rename(f.root(), "a", f.root(), "b", RENAME_NOREPLACE).error() == EEXIST);
  REQUIRE(f->rename(f.root(), "a", f.root(), "b", RENAME_EXCHANGE));
  CHECK(f->lookup(f.root(), "a")->st_ino == b);
  CHECK(f->lookup(f.root(), "b")->st_ino == a);
  CHECK(f->rename(f.root(), "a", f.root(), "zz", RENAME_EXCHANGE).error() == ENOENT);
  CHECK(f->rename(f.root(), "a", f.root(), "b", RENAME_EXCHANGE | RENAME_NOREPLACE).error() == EINVAL);

  // A directory cannot move below itself; over a non-empty directory is refused.
  CHECK(f->rename(f.root(), "d1", sub->st_ino, "loop", 0).error() == EINVAL);
  CHECK(f->rename(f.root(), "d2", f.root(), "d1", 0).error() == ENOTEMPTY);
  CHECK(f->rename(f.root(), "a", f.root(), "d2", 0).error() == EISDIR);
  CHECK(f->rename(f.root(), "d2", f.root(), "a", 0).error() == ENOTDIR);

  // Moving a directory fixes both parents' link counts and its "..".
  REQUIRE(f->rename(d1->st_ino, "sub", d2->st_ino, "sub", 0));
  CHECK(f->getattr(d1->st_ino)->st_nlink == 2);
  CHECK(f->getattr(d2->st_ino)->st_nlink == 3);
  CHECK(f->lookup(sub->st_ino, "..")->st_ino == d2->st_ino);

  // Replacing a file drops the old one's link.
  REQUIRE(f->rename(f.root(), "a", f.root(), "b", 0));
  CHECK(f->lookup(f.root(), "a").error() == ENOENT);
  CHECK(f.read_all(f->lookup(f.root(), "b")->st_ino) == "B");
  f.remount();
  CHECK(f.read_all(f->lookup(f.root(), "b")->st_ino) == "B");
  CHECK(f->lookup(d2->st_ino, "sub"));
  CHECK(f->getattr(d2->st_ino)->st_nlink == 3);
}

TEST_CASE("an unlinked file lives while referenced and is freed at mount after a crash",
          "[fs][namespace][orphan]") {
  FsFixture f;
  uint64_t ino = f.make_file(f.root(), "tmp", std::string(1 << 20, 'x'));
  uint64_t free_before = f->statfs().f_bfree;
  REQUIRE(f->unlink(f.root(), "tmp"));  // the creator still holds a lookup reference
  CHECK(f->getattr(ino)->st_nlink == 0);
  CHECK(f.read_all(ino).size() == 1 << 20);
  CHECK(f->statfs().f_bfree == free_before);
  f.remount();  // the reference dies with the daemon: the mount frees the orphan
  CHECK(f->counters().orphans_freed == 1);
  CHECK(f->getattr(ino).error() == ENOENT);
  CHECK(f->statfs().f_bfree >= free_before + 256);

  uint64_t ino2 = f.make_file(f.root(), "tmp2", "data");
  REQUIRE(f->unlink(f.root(), "tmp2"));
  f->forget(ino2, 1);  // the last reference: freed now
  CHECK(f->getattr(ino2).error() == ENOENT);
}

TEST_CASE("a directory of 100k entries keeps lookups fast and readdir complete", "[fs][namespace][slow]") {
  FsFixture f(256ULL << 20);
  auto d = f->mkdir(f.root(), "big", 0755, {});
  for (int i = 0; i < 100000; i++) {
    auto st = f->mknod(d->st_ino, "entry-" + std::to_string(i), S_IFREG | 0644, 0, {});
    REQUIRE(st);
    f->forget(st->st_ino, 1);
  }
  f.remount();
  CHECK(f->lookup(d->st_ino, "entry-99999"));
  CHECK(f->lookup(d->st_ino, "entry-0"));
  // Resume readdir from the middle, as a small getdents buffer would.
  size_t count = 0;
  uint64_t off = 0;
  bool more = true;
  while (more) {
    size_t batch = 0;
    more = false;
    REQUIRE(f->readdir(d->st_ino, off, [&](const daxfs::fs::DirEntry& e) {
      if (batch == 1000) {
        more = true;
        return false;
      }
      batch++;
      count++;
      off = e.next_offset;
      return true;
    }));
  }
  CHECK(count == 100000 + 2);
  REQUIRE(f->unlink(d->st_ino, "entry-5"));
  CHECK(f->lookup(d->st_ino, "entry-5").error() == ENOENT);
}

TEST_CASE("setgid directories pass their group on; new directories inherit the DAX flag",
          "[fs][namespace]") {
  FsFixture f;
  auto d = f->mkdir(f.root(), "g", 02775, {0, 500, 0});
  REQUIRE(f->set_xflags(d->st_ino, {FS_XFLAG_DAX, 0, 0}));
  auto sub = f->mkdir(d->st_ino, "sub", 0755, {1000, 1000, 0});
  REQUIRE(sub);
  CHECK(sub->st_gid == 500);
  CHECK((sub->st_mode & S_ISGID));
  CHECK(f->get_xflags(sub->st_ino)->xflags == FS_XFLAG_DAX);
  auto file = f->mknod(sub->st_ino, "f", S_IFREG | 0644, 0, {1000, 1000, 0});
  CHECK(file->st_gid == 500);
  CHECK(f->get_xflags(file->st_ino)->xflags == FS_XFLAG_DAX);
}

TEST_CASE("mount refuses a namespace whose invariants are broken instead of hanging or freeing wrongly",
          "[fs][namespace][corrupt]") {
  FsFixture f;
  auto a = f->mkdir(f.root(), "a", 0755, {});
  auto b = f->mkdir(a->st_ino, "b", 0755, {});
  uint64_t file = f.make_file(f.root(), "file", "x");
  std::string path = f.path();
  uint64_t a_ino = a->st_ino, b_ino = b->st_ino;
  f.unmount();
  auto poke = [&](uint64_t ino, size_t field_offset, uint64_t value, size_t size) {
    auto d = daxfs::pmemdev::Device::open(path, {});
    REQUIRE(d);
    uint64_t at = daxfs::fs::ino_block(ino) * daxfs::fs::kBlockSize +
                  daxfs::fs::ino_slot(ino) * daxfs::fs::kInodeSize + field_offset;
    (*d)->memcpy_persist(at, &value, size);
  };
  auto mount_fails_with = [&](const std::string& what) {
    auto d = daxfs::pmemdev::Device::open(path, {});
    REQUIRE(d);
    std::string why;
    auto fs = daxfs::fs::Filesystem::mount(std::move(d).value(), {}, why);
    CHECK(fs.error() == EUCLEAN);
    CHECK(why.find(what) != std::string::npos);
  };
  SECTION("a parent-pointer loop") {
    poke(a_ino, offsetof(daxfs::fs::DiskInode, parent), b_ino, 8);
    mount_fails_with("parent pointer");
  }
  SECTION("a wrong link count") {
    poke(file, offsetof(daxfs::fs::DiskInode, nlink), 2, 4);
    mount_fails_with("link count");
  }
  SECTION("a wrong file type in an entry") {
    // A fifo on its own right (no block pointer, which the codec refuses first): only the
    // entry's type is wrong.
    poke(file, offsetof(daxfs::fs::DiskInode, mode), S_IFIFO | 0644, 4);
    poke(file, offsetof(daxfs::fs::DiskInode, head), 0, 8);
    mount_fails_with("wrong file type");
  }
}
