// fsck.daxfs on structural damage: blocks referenced twice (without reflink; with it, see
// fsck_refcount_test.cc), cycles in the inode chunk chain and in record-block chains, bad extents,
// bad inode modes, symlinks and xattr blobs.
#include "tests/fsck/fsck_fixture.h"

using namespace daxfs;
using daxfs::test::FsckFixture;
using daxfs::test::has_problem;

namespace {
void repaired_and_clean(FsckFixture& fx) {
  auto y = fx.repair();
  CHECK(y.exit_code == fsck::kExitCorrected);
  auto again = fx.check();
  CHECK(again.exit_code == fsck::kExitClean);
  CHECK(again.problems.empty());
  CHECK(fx.mounts());
}

uint64_t make_file(fs::Filesystem& f, uint64_t dir, const std::string& name, const std::string& data) {
  auto st = f.mknod(dir, name, S_IFREG | 0644, 0, test::root_cred());
  REQUIRE(st);
  if (!data.empty()) REQUIRE(f.write(st->st_ino, 0, data.data(), data.size()).value() == data.size());
  return st->st_ino;
}
}  // namespace

TEST_CASE("a block referenced by two files stays with the first; the second loses it", "[fsck]") {
  FsckFixture fx(32ULL << 20, fs::FormatOptions{.reflink = false});  // with reflink, sharing is legal
  uint64_t a, b;
  {
    auto f = fx.mount();
    a = make_file(*f, f->root_ino(), "a", std::string(2 * fs::kBlockSize, 'A'));
    b = make_file(*f, f->root_ino(), "b", std::string(3 * fs::kBlockSize, 'B'));
  }
  REQUIRE(a < b);  // claims go in inode order: b is the later owner
  auto xa = fx.get<fs::DiskExtent>(fx.extent_at(a));
  uint64_t eb = fx.extent_at(b);
  auto xb = fx.get<fs::DiskExtent>(eb);
  REQUIRE(xb.length == 3);
  fx.put(eb, fs::DiskExtent{xb.logical, xa.physical, 1, 0});  // b's first block is a's
  fx.put(eb + sizeof(fs::DiskExtent), fs::DiskExtent{1, xb.physical + 1, 2, 0});
  CHECK_FALSE(fx.mounts());
  auto n = fx.check();
  CHECK(has_problem(n, "duplicate_block", b));
  CHECK_FALSE(has_problem(n, "duplicate_block", a));
  repaired_and_clean(fx);
  auto f = fx.mount();
  std::string got(2 * fs::kBlockSize, '\0');
  CHECK(f->read(a, 0, got.size(), got.data()).value() == got.size());
  CHECK(got == std::string(2 * fs::kBlockSize, 'A'));
  CHECK(f->file_info(b)->data_blocks == 2);
  std::string head(fs::kBlockSize, 'z');
  CHECK(f->read(b, 0, head.size(), head.data()).value() == head.size());
  CHECK(head == std::string(fs::kBlockSize, '\0'));  // a hole now
}

TEST_CASE("a block shared in the middle of an extent splits it into two records", "[fsck]") {
  FsckFixture fx(32ULL << 20, fs::FormatOptions{.reflink = false});  // with reflink, sharing is legal
  uint64_t first, second;
  {
    auto f = fx.mount();
    first = make_file(*f, f->root_ino(), "first", std::string(fs::kBlockSize, '1'));
    second = make_file(*f, f->root_ino(), "second", std::string(5 * fs::kBlockSize, '2'));
  }
  REQUIRE(first < second);
  uint64_t e1 = fx.extent_at(first);
  auto x1 = fx.get<fs::DiskExtent>(e1);
  auto x2 = fx.get<fs::DiskExtent>(fx.extent_at(second));
  REQUIRE(x2.length == 5);
  fx.put(e1, fs::DiskExtent{x1.logical, x2.physical + 2, 1, 0});
  auto n = fx.check();
  CHECK(has_problem(n, "duplicate_block", second));
  repaired_and_clean(fx);
  auto f = fx.mount();
  auto info = f->file_info(second);
  CHECK(info->data_blocks == 4);
  CHECK(info->extents == 2);
  std::string got(5 * fs::kBlockSize, '\0');
  CHECK(f->read(second, 0, got.size(), got.data()).value() == got.size());
  CHECK(got.substr(0, 2 * fs::kBlockSize) == std::string(2 * fs::kBlockSize, '2'));
  CHECK(got.substr(2 * fs::kBlockSize, fs::kBlockSize) == std::string(fs::kBlockSize, '\0'));
  CHECK(got.substr(3 * fs::kBlockSize) == std::string(2 * fs::kBlockSize, '2'));
}

TEST_CASE("a cycle in the inode chunk chain is cut without losing inodes", "[fsck]") {
  FsckFixture fx;
  std::vector<uint64_t> inos;
  {
    auto f = fx.mount();
    for (int i = 0; i < 40; i++) inos.push_back(make_file(*f, f->root_ino(), "f" + std::to_string(i), "x"));
  }
  // The chain runs newest first; point the oldest chunk back at the newest.
  auto sb = fx.sb();
  uint64_t head = sb.first_chunk, last = head;
  for (uint64_t b = head; b != 0; b = fx.get<fs::ChunkHeader>(b * fs::kBlockSize).next) last = b;
  REQUIRE(last != head);
  fx.put(last * fs::kBlockSize + offsetof(fs::ChunkHeader, next), head);
  CHECK_FALSE(fx.mounts());
  auto n = fx.check();
  CHECK(has_problem(n, "chunk_chain"));
  CHECK(n.stats.inodes == 41);
  repaired_and_clean(fx);
  auto f = fx.mount();
  for (int i = 0; i < 40; i++) CHECK(f->lookup(f->root_ino(), "f" + std::to_string(i)));
}

TEST_CASE("a cycle in a directory's block chain is cut without losing entries", "[fsck]") {
  FsckFixture fx;
  uint64_t root;
  {
    auto f = fx.mount();
    root = f->root_ino();
    for (int i = 0; i < 40; i++) make_file(*f, root, "f" + std::to_string(i), "");
  }
  uint64_t head = fx.inode(root).head, last = head;
  for (uint64_t b = head; b != 0; b = fx.get<fs::RecordBlockHeader>(b * fs::kBlockSize).next) last = b;
  REQUIRE(last != head);
  fx.put(last * fs::kBlockSize + offsetof(fs::RecordBlockHeader, next), head);
  CHECK_FALSE(fx.mounts());
  auto n = fx.check();
  CHECK(has_problem(n, "record_chain", root));
  repaired_and_clean(fx);
  auto f = fx.mount();
  for (int i = 0; i < 40; i++) CHECK(f->lookup(root, "f" + std::to_string(i)));
}

TEST_CASE("a cycle in a file's extent block chain is cut", "[fsck]") {
  FsckFixture fx;
  uint64_t file;
  {
    auto f = fx.mount();
    file = make_file(*f, f->root_ino(), "sparse", "");
    // Every other block: more extents than one record block holds.
    for (uint64_t i = 0; i < 200; i++) REQUIRE(f->write(file, 2 * i * fs::kBlockSize, "s", 1));
  }
  uint64_t head = fx.inode(file).head, last = head;
  for (uint64_t b = head; b != 0; b = fx.get<fs::RecordBlockHeader>(b * fs::kBlockSize).next) last = b;
  REQUIRE(last != head);
  fx.put(last * fs::kBlockSize + offsetof(fs::RecordBlockHeader, next), last);  // onto itself
  auto n = fx.check();
  CHECK(has_problem(n, "record_chain", file));
  repaired_and_clean(fx);
  auto f = fx.mount();
  CHECK(f->file_info(file)->extents == 200);
}

TEST_CASE("extents outside the device, past the maximum size or overlapping are cleared", "[fsck]") {
  FsckFixture fx;
  uint64_t file;
  {
    auto f = fx.mount();
    file = make_file(*f, f->root_ino(), "f", std::string(4 * fs::kBlockSize, 'f'));
    REQUIRE(f->write(file, 100 * fs::kBlockSize, "x", 1));
  }
  uint64_t first = fx.extent_at(file);
  auto e = fx.get<fs::DiskExtent>(first);
  SECTION("outside the device") {
    fx.put(first, fs::DiskExtent{e.logical, fx.sb().block_count - 1, 4, 0});
    CHECK(has_problem(fx.check(), "extent", file));
  }
  SECTION("past the maximum file size") {
    fx.put(first, fs::DiskExtent{fs::kMaxFileBlocks - 3, e.physical, 4, 0});
    CHECK(has_problem(fx.check(), "extent", file));
  }
  SECTION("the last file block is legal") {
    fx.put(first, fs::DiskExtent{fs::kMaxFileBlocks - 4, e.physical, 4, 0});
    CHECK(fx.check().problems.empty());
    return;
  }
  SECTION("overlapping") {
    uint64_t second = first + sizeof(fs::DiskExtent);
    auto e2 = fx.get<fs::DiskExtent>(second);
    REQUIRE(e2.length != 0);
    fx.put(second, fs::DiskExtent{2, e2.physical, e2.length, 0});
    CHECK(has_problem(fx.check(), "extent_overlap", file));
  }
  CHECK_FALSE(fx.mounts());
  repaired_and_clean(fx);
}

TEST_CASE("post-EOF extents are legal", "[fsck]") {
  FsckFixture fx;
  uint64_t file;
  {
    auto f = fx.mount();
    file = make_file(*f, f->root_ino(), "f", std::string(8 * fs::kBlockSize, 'f'));
  }
  fx.put_inode_field(file, offsetof(fs::DiskInode, size), uint64_t{10});  // as after a crashed truncate
  auto r = fx.check();
  CHECK(r.exit_code == fsck::kExitClean);
  CHECK(r.problems.empty());
}

TEST_CASE("an inode with an invalid mode is cleared with its entries", "[fsck]") {
  FsckFixture fx;
  uint64_t file;
  {
    auto f = fx.mount();
    file = make_file(*f, f->root_ino(), "f", "data");
  }
  fx.put_inode_field(file, offsetof(fs::DiskInode, mode), uint32_t{0170644});
  auto n = fx.check();
  CHECK(has_problem(n, "inode_mode", file));
  CHECK(has_problem(n, "dirent_dangling"));
  repaired_and_clean(fx);
  CHECK(fx.inode(file).mode == 0);
}

TEST_CASE("a symlink with a bad length or target block is cleared", "[fsck]") {
  FsckFixture fx;
  uint64_t link;
  {
    auto f = fx.mount();
    link = f->symlink(f->root_ino(), "l", "target", test::root_cred())->st_ino;
  }
  SECTION("length") { fx.put_inode_field(link, offsetof(fs::DiskInode, size), uint64_t{5000}); }
  SECTION("block") { fx.put_inode_field(link, offsetof(fs::DiskInode, head), uint64_t{1}); }
  CHECK_FALSE(fx.mounts());
  CHECK(has_problem(fx.check(), "symlink", link));
  repaired_and_clean(fx);
}

TEST_CASE("a corrupt xattr blob is dropped", "[fsck]") {
  FsckFixture fx;
  uint64_t file;
  {
    auto f = fx.mount();
    file = make_file(*f, f->root_ino(), "f", "data");
    REQUIRE(f->setxattr(file, "user.a", "1", 0));
    REQUIRE(f->setxattr(file, "user.b", "22", 0));
  }
  auto in = fx.inode(file);
  REQUIRE(in.xattr_block != 0);
  bool salvaged = false;
  SECTION("a value length running past the blob") { fx.put(in.xattr_block * fs::kBlockSize + 1, uint32_t{1000000}); }
  SECTION("an empty name") { fx.put(in.xattr_block * fs::kBlockSize, uint8_t{0}); }
  SECTION("a blob past the end of the device") {
    fx.put_inode_field(file, offsetof(fs::DiskInode, xattr_block), fx.sb().block_count);
  }
  SECTION("a blob length of zero: the records at its start are salvaged") {
    fx.put_inode_field(file, offsetof(fs::DiskInode, xattr_length), uint32_t{0});
    salvaged = true;
  }
  CHECK_FALSE(fx.mounts());
  auto n = fx.check();
  CHECK(has_problem(n, "xattr", file));
  repaired_and_clean(fx);
  auto f = fx.mount();
  if (salvaged) {
    CHECK(f->getxattr(file, "user.a").value() == "1");
    CHECK(f->getxattr(file, "user.b").value() == "22");
  } else {
    CHECK(f->getxattr(file, "user.a").error() == ENODATA);
  }
  char buf[4];
  CHECK(f->read(file, 0, 4, buf).value() == 4);
}

TEST_CASE("an xattr blob with a repeated name or a broken ACL keeps its other attributes", "[fsck]") {
  FsckFixture fx;
  uint64_t dir, file;
  // A default ACL: version 2, then owner rwx, group r-x, other r-x.
  std::string acl("\x02\0\0\0", 4);
  for (auto [tag, perm] : {std::pair<uint16_t, uint16_t>{1, 7}, {4, 5}, {0x20, 5}}) {
    uint32_t id = UINT32_MAX;
    acl.append(reinterpret_cast<const char*>(&tag), 2).append(reinterpret_cast<const char*>(&perm), 2);
    acl.append(reinterpret_cast<const char*>(&id), 4);
  }
  {
    auto f = fx.mount();
    dir = f->mkdir(f->root_ino(), "d", 0755, test::root_cred())->st_ino;
    REQUIRE(f->setxattr(dir, "system.posix_acl_default", acl, 0));
    REQUIRE(f->setxattr(dir, "user.keep", "me", 0));
    file = make_file(*f, f->root_ino(), "f", "data");
    REQUIRE(f->setxattr(file, "user.a", "1", 0));
    REQUIRE(f->setxattr(file, "user.b", "2", 0));
  }
  // Blobs are sorted by name: the ACL's version is right after its 5-byte header and name;
  // "user.b" is the second record of the file's blob.
  fx.put(fx.inode(dir).xattr_block * fs::kBlockSize + 5 + 24, uint32_t{99});
  fx.put(fx.inode(file).xattr_block * fs::kBlockSize + 2 * 5 + 6 + 1 + 5, 'a');
  auto n = fx.check();
  CHECK(has_problem(n, "xattr", dir));
  CHECK(has_problem(n, "xattr", file));
  repaired_and_clean(fx);
  auto f = fx.mount();
  CHECK(f->getxattr(dir, "user.keep").value() == "me");
  CHECK(f->getxattr(dir, "system.posix_acl_default").error() == ENODATA);
  CHECK(f->mknod(dir, "new", S_IFREG | 0644, 0, test::root_cred()));  // EUCLEAN before the repair
  CHECK(f->getxattr(file, "user.a").value() == "1");
  CHECK(f->listxattr(file).value() == std::string("user.a\0", 7));
}

TEST_CASE("an impossible file size is set from the extents; until then the mount refuses the device",
          "[fsck]") {
  // Issue 7, item 6: the mount took 2^64 - 1, rounded EOF to block 0 and trimmed every extent.
  for (uint64_t size : {~uint64_t{0}, uint64_t{1} << 63, (uint64_t{1} << 63) + 4095}) {
    INFO("size " << size);
    FsckFixture fx;
    const std::string data(3 * fs::kBlockSize, 'D');
    uint64_t ino;
    {
      auto f = fx.mount();
      ino = make_file(*f, f->root_ino(), "f", data);
    }
    fx.put_inode_field(ino, offsetof(fs::DiskInode, size), size);
    const std::string before = fx.media();
    std::string why;
    CHECK_FALSE(fx.mounts(&why));
    CHECK(why.find("size") != std::string::npos);
    CHECK(why.find("fsck.daxfs") != std::string::npos);
    bool unchanged = fx.media() == before;  // nothing trimmed, nothing written
    CHECK(unchanged);
    auto n = fx.check();
    CHECK(n.exit_code == fsck::kExitUncorrected);
    CHECK(has_problem(n, "inode_size", ino));
    repaired_and_clean(fx);
    CHECK(fx.inode(ino).size == data.size());
    auto f = fx.mount();
    CHECK(f->counters().post_eof_trimmed == 0);
    std::string got(data.size(), '\0');
    CHECK(f->read(ino, 0, got.size(), got.data()).value() == data.size());
    CHECK(got == data);
  }
}
