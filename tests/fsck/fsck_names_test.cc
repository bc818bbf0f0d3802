// fsck.daxfs on namespace damage: link counts, dangling entries, entry types, orphans, directory
// hard links, parent pointers, and unreachable directories reconnected into /lost+found. Each
// case: -n reports the kind, -y repairs it (exit 1), a second check is clean, and the mount works.
#include "tests/fsck/fsck_fixture.h"

using namespace daxfs;
using daxfs::test::FsckFixture;
using daxfs::test::has_problem;

namespace {
// -y repairs everything (exit 1), then the device is clean and mounts.
void repaired_and_clean(FsckFixture& fx) {
  auto y = fx.repair();
  CHECK(y.exit_code == fsck::kExitCorrected);
  CHECK(y.clean);
  auto again = fx.check();
  CHECK(again.exit_code == fsck::kExitClean);
  CHECK(again.problems.empty());
  CHECK(fx.mounts());
}

struct Tree {
  uint64_t root, dir, sub, file;
};
Tree make_tree(FsckFixture& fx) {
  auto f = fx.mount();
  auto cred = test::root_cred();
  Tree t;
  t.root = f->root_ino();
  t.dir = f->mkdir(t.root, "dir", 0755, cred)->st_ino;
  t.sub = f->mkdir(t.dir, "sub", 0755, cred)->st_ino;
  t.file = f->mknod(t.dir, "file", S_IFREG | 0644, 0, cred)->st_ino;
  REQUIRE(f->write(t.file, 0, "hello", 5));
  return t;
}
}  // namespace

TEST_CASE("fsck fixes a wrong link count", "[fsck]") {
  FsckFixture fx;
  Tree t = make_tree(fx);
  fx.put_inode_field(t.file, offsetof(fs::DiskInode, nlink), uint32_t{5});
  fx.put_inode_field(t.dir, offsetof(fs::DiskInode, nlink), uint32_t{2});  // has one subdirectory
  auto n = fx.check();
  CHECK(n.exit_code == fsck::kExitUncorrected);
  CHECK(has_problem(n, "link_count", t.file));
  CHECK(has_problem(n, "link_count", t.dir));
  repaired_and_clean(fx);
  CHECK(fx.inode(t.file).nlink == 1);
  CHECK(fx.inode(t.dir).nlink == 3);
}

TEST_CASE("fsck removes an entry naming a free inode", "[fsck]") {
  FsckFixture fx;
  Tree t = make_tree(fx);
  uint64_t off = fx.dirent_at(t.dir, "file");
  REQUIRE(off != 0);
  uint64_t free_ino = fs::make_ino(fs::ino_block(t.root), 15);  // a slot never handed out
  fx.put(off, free_ino);
  CHECK_FALSE(fx.mounts());
  auto n = fx.check();
  CHECK(has_problem(n, "dirent_dangling", t.dir));
  // The file lost its only name: it is reconnected into /lost+found.
  CHECK(has_problem(n, "disconnected", t.file));
  repaired_and_clean(fx);
  auto f = fx.mount();
  auto lf = f->lookup(f->root_ino(), "lost+found");
  REQUIRE(lf);
  auto back = f->lookup(lf->st_ino, "#" + std::to_string(t.file));
  REQUIRE(back);
  CHECK(back->st_ino == t.file);
  CHECK(f->lookup(t.dir, "file").error() == ENOENT);
}

TEST_CASE("fsck fixes an entry whose type disagrees with its inode", "[fsck]") {
  FsckFixture fx;
  Tree t = make_tree(fx);
  uint64_t off = fx.dirent_at(t.dir, "sub");
  fx.put(off + offsetof(fs::DiskDirent, type), uint8_t{8});  // DT_REG for a directory
  auto n = fx.check();
  CHECK(has_problem(n, "dirent_type", t.dir));
  repaired_and_clean(fx);
  CHECK(fx.get<fs::DiskDirent>(off).type == 4);  // DT_DIR
}

TEST_CASE("fsck frees an orphan inode left by a crash", "[fsck]") {
  FsckFixture fx;
  uint64_t orphan;
  {
    auto f = fx.mount();
    auto st = f->mknod(f->root_ino(), "tmp", S_IFREG | 0644, 0, test::root_cred());
    orphan = st->st_ino;
    std::string data(64 * 1024, 'o');
    REQUIRE(f->write(orphan, 0, data.data(), data.size()));
    REQUIRE(f->unlink(f->root_ino(), "tmp"));  // still open (looked up): kept as nlink 0
  }
  REQUIRE(fx.inode(orphan).mode != 0);
  auto n = fx.check();
  CHECK(has_problem(n, "orphan", orphan));
  CHECK(n.exit_code == fsck::kExitClean);  // legal: the mount frees it
  CHECK(n.clean);
  repaired_and_clean(fx);
  CHECK(fx.inode(orphan).mode == 0);
}

TEST_CASE("fsck reconnects a disconnected directory into lost+found", "[fsck]") {
  FsckFixture fx;
  Tree t = make_tree(fx);
  fx.put(fx.dirent_at(t.root, "dir"), uint64_t{0});  // the directory's only name is gone
  auto n = fx.check();
  CHECK(has_problem(n, "disconnected", t.dir));
  CHECK(has_problem(n, "link_count", t.root));
  CHECK_FALSE(has_problem(n, "disconnected", t.file));  // comes back with its directory
  repaired_and_clean(fx);
  auto f = fx.mount();
  auto lf = f->lookup(f->root_ino(), "lost+found");
  REQUIRE(lf);
  CHECK(lf->st_nlink == 3);
  auto dir = f->lookup(lf->st_ino, "#" + std::to_string(t.dir));
  REQUIRE(dir);
  CHECK(dir->st_ino == t.dir);
  auto file = f->lookup(t.dir, "file");
  REQUIRE(file);
  char buf[8] = {};
  CHECK(f->read(file->st_ino, 0, 5, buf).value() == 5);
  CHECK(std::string(buf) == "hello");
  CHECK(f->getattr(f->root_ino())->st_nlink == 3);  // dir gone, lost+found added
}

TEST_CASE("fsck removes a second name of a directory and fixes parent pointers", "[fsck]") {
  FsckFixture fx;
  Tree t = make_tree(fx);
  // Turn "file" into a second entry for "sub": a directory hard link.
  uint64_t off = fx.dirent_at(t.dir, "file");
  fx.put(off, t.sub);
  fx.put(off + offsetof(fs::DiskDirent, type), uint8_t{4});
  fx.put_inode_field(t.sub, offsetof(fs::DiskInode, parent), t.root);
  auto n = fx.check();
  CHECK(has_problem(n, "dir_hardlink", t.dir));
  CHECK(has_problem(n, "dir_parent", t.sub));
  repaired_and_clean(fx);
  CHECK(fx.inode(t.sub).parent == t.dir);
}

TEST_CASE("fsck breaks a loop of directories unreachable from the root", "[fsck]") {
  FsckFixture fx;
  Tree t = make_tree(fx);
  // dir holds sub; make sub hold dir, and drop dir's entry in the root.
  fx.put(fx.dirent_at(t.root, "dir"), uint64_t{0});
  uint64_t off = fx.dirent_at(t.dir, "file");
  fx.put(off, t.dir);
  fx.put(off + offsetof(fs::DiskDirent, type), uint8_t{4});
  auto n = fx.check();
  CHECK(has_problem(n, "dir_loop"));
  CHECK(has_problem(n, "disconnected", t.file));
  repaired_and_clean(fx);
  auto f = fx.mount();
  auto lf = f->lookup(f->root_ino(), "lost+found");
  REQUIRE(lf);
  CHECK(f->lookup(lf->st_ino, "#" + std::to_string(t.dir)));
}

TEST_CASE("fsck replaces a destroyed root directory", "[fsck]") {
  FsckFixture fx;
  Tree t = make_tree(fx);
  fx.put_inode_field(t.root, offsetof(fs::DiskInode, mode), uint32_t{S_IFREG | 0644});
  auto n = fx.check();
  CHECK(has_problem(n, "root"));
  auto y = fx.repair();
  CHECK(y.exit_code == fsck::kExitCorrected);
  CHECK(fx.check().exit_code == fsck::kExitClean);
  auto f = fx.mount();
  CHECK(f->root_ino() != t.root);
  auto lf = f->lookup(f->root_ino(), "lost+found");
  REQUIRE(lf);
  CHECK(f->lookup(lf->st_ino, "#" + std::to_string(t.dir)));
}
