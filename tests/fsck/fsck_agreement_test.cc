// One codec, two readers: the same corrupted records are fed to the mount and to fsck.daxfs, and
// they must agree on every one. The mount refuses (EUCLEAN, one line naming fsck.daxfs) exactly
// when fsck -n reports a problem, and after fsck -y the device mounts. The records are written
// byte by byte here, not through the codec, so that a rule the codec gets wrong shows up.
#include <array>
#include <functional>

#include "tests/fsck/fsck_fixture.h"

using namespace daxfs;
using daxfs::test::FsckFixture;

namespace {
constexpr uint64_t kB = fs::kBlockSize;

// The inodes a case damages.
struct Tree {
  uint64_t file = 0;      // "f": blocks 0 and 5 (two extent records), xattrs user.a and user.b
  uint64_t big = 0;       // "big": one xattr of exactly 64 KiB
  uint64_t acl = 0;       // "acl": an access ACL with a named user (stored, not folded into the mode)
  uint64_t dir = 0;       // "d", holding "victim" and "other"
  uint64_t symlink = 0;   // "s" -> "target"
  uint64_t fifo = 0;      // "p"
};

// {u8 name_length, u32 value_length, name, value}
std::string xattr_record(const std::string& name, const std::string& value) {
  std::string r(1, static_cast<char>(name.size()));
  uint32_t vl = static_cast<uint32_t>(value.size());
  r.append(reinterpret_cast<const char*>(&vl), 4);
  return r + name + value;
}

// version 2, then {u16 tag, u16 perm, u32 id} entries.
std::string acl_value(uint32_t version, const std::vector<std::array<uint32_t, 3>>& entries) {
  std::string v(reinterpret_cast<const char*>(&version), 4);
  for (auto [tag, perm, id] : entries) {
    uint16_t t = static_cast<uint16_t>(tag), p = static_cast<uint16_t>(perm);
    v.append(reinterpret_cast<const char*>(&t), 2);
    v.append(reinterpret_cast<const char*>(&p), 2);
    v.append(reinterpret_cast<const char*>(&id), 4);
  }
  return v;
}
std::vector<std::array<uint32_t, 3>> named_user_acl() {
  return {{0x01, 6, 0}, {0x02, 4, 1000}, {0x04, 4, 0}, {0x10, 4, 0}, {0x20, 4, 0}};
}

Tree build(FsckFixture& fx) {
  Tree t;
  auto f = fx.mount();
  auto cred = test::root_cred();
  uint64_t root = f->root_ino();
  auto make = [&](uint64_t dir, const std::string& name) {
    auto st = f->mknod(dir, name, S_IFREG | 0644, 0, cred);
    REQUIRE(st);
    return st->st_ino;
  };
  t.file = make(root, "f");
  const std::string block(kB, 'a');
  REQUIRE(f->write(t.file, 0, block.data(), kB));
  REQUIRE(f->write(t.file, 5 * kB, block.data(), kB));
  REQUIRE(f->setxattr(t.file, "user.a", "1", 0));
  REQUIRE(f->setxattr(t.file, "user.b", "2", 0));
  t.big = make(root, "big");
  REQUIRE(f->setxattr(t.big, "user.v", std::string(65536, 'v'), 0));
  t.acl = make(root, "acl");
  REQUIRE(f->setxattr(t.acl, "system.posix_acl_access", acl_value(2, named_user_acl()), 0));
  t.dir = f->mkdir(root, "d", 0755, cred)->st_ino;
  make(t.dir, "victim");
  make(t.dir, "other");
  t.symlink = f->symlink(root, "s", "target", cred)->st_ino;
  t.fifo = f->mknod(root, "p", S_IFIFO | 0600, 0, cred)->st_ino;
  // Shared blocks: a refcount chain with one record.
  uint64_t g = make(root, "g");
  REQUIRE(f->write(g, 0, std::string(2 * kB, 'g').data(), 2 * kB));
  uint64_t c = make(root, "c");
  REQUIRE(f->clone_range(g, 0, c, 0, 2 * kB));
  return t;
}

// The mount's answer, read-only so that it writes nothing: 0, or its errno and `why`.
int mount_error(FsckFixture& fx, std::string& why) {
  auto d = pmemdev::Device::open(fx.path(), {});
  REQUIRE(d);
  fs::MountOptions ro;
  ro.read_only = fs::ReadOnly::kYes;
  why.clear();
  auto f = fs::Filesystem::mount(std::move(d).value(), ro, why);
  return f ? 0 : f.error();
}

void put_blob(FsckFixture& fx, uint64_t ino, const std::string& blob, uint32_t length) {
  fs::DiskInode d = fx.inode(ino);
  REQUIRE(d.xattr_block != 0);
  REQUIRE(blob.size() <= kB);
  fx.put_bytes(d.xattr_block * kB, blob.data(), blob.size());
  fx.put_inode_field(ino, offsetof(fs::DiskInode, xattr_length), length);
}
void put_blob(FsckFixture& fx, uint64_t ino, const std::string& blob) {
  put_blob(fx, ino, blob, static_cast<uint32_t>(blob.size()));
}

// The offsets of the extent records in use of `ino`'s first record block.
std::vector<uint64_t> extent_records(FsckFixture& fx, uint64_t ino) {
  std::vector<uint64_t> out;
  uint64_t b = fx.inode(ino).head;
  for (uint32_t s = 0; s < fs::kExtentsPerBlock; s++) {
    uint64_t off = b * kB + sizeof(fs::RecordBlockHeader) + s * sizeof(fs::DiskExtent);
    if (fx.get<fs::DiskExtent>(off).length != 0) out.push_back(off);
  }
  return out;
}

uint64_t refcount_record(FsckFixture& fx) {
  uint64_t b = fx.sb().refcount_head;
  REQUIRE(b != 0);
  return b * kB + sizeof(fs::RecordBlockHeader);  // the first slot: the only record
}

void put_name(FsckFixture& fx, uint64_t dir, const std::string& old_name, const std::string& name) {
  uint64_t off = fx.dirent_at(dir, old_name);
  REQUIRE(off != 0);
  REQUIRE(name.size() <= fs::kNameMax);
  fx.put(off + offsetof(fs::DiskDirent, name_length), static_cast<uint8_t>(name.size()));
  fx.put_bytes(off + offsetof(fs::DiskDirent, name), name.data(), name.size());
}

struct Case {
  std::string what;
  std::function<void(FsckFixture&, const Tree&)> damage;
  bool corrupt = true;  // false: a legal state both must accept
};

std::vector<Case> cases() {
  using F = FsckFixture;
  using T = Tree;
  const std::string access = "system.posix_acl_access", dflt = "system.posix_acl_default";
  auto acl_case = [access](std::string what, std::string value) {
    return Case{what, [access, value](F& fx, const T& t) { put_blob(fx, t.acl, xattr_record(access, value)); }};
  };
  auto name_case = [](std::string what, std::string name, bool corrupt = true) {
    return Case{what, [name](F& fx, const T& t) { put_name(fx, t.dir, "victim", name); }, corrupt};
  };
  auto extent_case = [](std::string what, size_t record, size_t field, uint64_t value, size_t bytes,
                        bool corrupt = true) {
    return Case{what,
                [=](F& fx, const T& t) {
                  auto recs = extent_records(fx, t.file);
                  REQUIRE(recs.size() == 2);
                  fx.put_bytes(recs[record] + field, &value, bytes);
                },
                corrupt};
  };
  auto refcount_case = [](std::string what, size_t field, uint64_t value, size_t bytes) {
    return Case{what, [=](F& fx, const T&) { fx.put_bytes(refcount_record(fx) + field, &value, bytes); }};
  };
  return {
      {"nothing damaged", [](F&, const T&) {}, false},
      // The xattr blob.
      {"an xattr value of 64 KiB + 1",
       [](F& fx, const T& t) {
         fs::DiskInode d = fx.inode(t.big);
         fx.put(d.xattr_block * kB + 1, uint32_t{65537});
         fx.put_inode_field(t.big, offsetof(fs::DiskInode, xattr_length), d.xattr_length + 1);
       }},
      {"an xattr name with a NUL byte",
       [](F& fx, const T& t) { put_blob(fx, t.file, xattr_record(std::string("user.\0a", 7), "1")); }},
      {"an xattr with an empty name", [](F& fx, const T& t) { put_blob(fx, t.file, xattr_record("", "1")); }},
      {"two xattrs of one name",
       [](F& fx, const T& t) { put_blob(fx, t.file, xattr_record("user.a", "1") + xattr_record("user.a", "2")); }},
      {"an xattr blob ending inside an attribute",
       [](F& fx, const T& t) {
         std::string blob = xattr_record("user.a", "12");
         put_blob(fx, t.file, blob, static_cast<uint32_t>(blob.size() - 1));
       }},
      {"an xattr blob longer than 1 MiB",
       [](F& fx, const T& t) { fx.put_inode_field(t.file, offsetof(fs::DiskInode, xattr_length), uint32_t{2 << 20}); }},
      {"an xattr length without an xattr block",
       [](F& fx, const T& t) { fx.put_inode_field(t.file, offsetof(fs::DiskInode, xattr_block), uint64_t{0}); }},
      // POSIX ACLs.
      acl_case("an ACL of version 3", acl_value(3, named_user_acl())),
      acl_case("an ACL of a size that is not whole entries", acl_value(2, named_user_acl()) + std::string(1, '\0')),
      acl_case("an ACL entry with an unknown tag", acl_value(2, {{0x01, 6, 0}, {0x40, 4, 0}, {0x04, 4, 0}, {0x20, 4, 0}})),
      acl_case("an ACL with a named user and no mask", acl_value(2, {{0x01, 6, 0}, {0x02, 4, 7}, {0x04, 4, 0}, {0x20, 4, 0}})),
      acl_case("an ACL entry with unknown permission bits", acl_value(2, {{0x01, 9, 0}, {0x04, 4, 0}, {0x20, 4, 0}})),
      {"a default ACL on a file",
       [dflt](F& fx, const T& t) { put_blob(fx, t.acl, xattr_record(dflt, acl_value(2, named_user_acl()))); }},
      // Directory entry names (a 256-byte name cannot be written: name_length is one byte).
      name_case("an entry named ''", ""),
      name_case("an entry named '.'", "."),
      name_case("an entry named '..'", ".."),
      name_case("an entry named 'a/b'", "a/b"),
      name_case("an entry whose name holds a NUL byte", std::string("a\0b", 3)),
      name_case("two entries of one name", "other"),
      name_case("an entry name of 255 bytes", std::string(255, 'x'), false),
      // Extent records.
      extent_case("an extent past the device's end", 1, offsetof(fs::DiskExtent, physical), uint64_t{1} << 40, 8),
      extent_case("an extent in the journal", 1, offsetof(fs::DiskExtent, physical), 1, 8),
      extent_case("an extent past the maximum file size", 1, offsetof(fs::DiskExtent, logical), fs::kMaxFileBlocks, 8),
      extent_case("an extent overlapping another", 1, offsetof(fs::DiskExtent, logical), 0, 8),
      extent_case("an extent with unknown flags", 1, offsetof(fs::DiskExtent, flags), 2, 4),
      // Length 0 is the format's free record: the block it mapped is simply free again.
      extent_case("an extent record of length 0", 1, offsetof(fs::DiskExtent, length), 0, 4, false),
      // Refcount records.
      refcount_case("a refcount record of count 7", offsetof(fs::DiskRefcount, count), 7, 4),
      refcount_case("a refcount record of count 1", offsetof(fs::DiskRefcount, count), 1, 4),
      refcount_case("a refcount record past the device's end", offsetof(fs::DiskRefcount, start), uint64_t{1} << 40, 8),
      {"two overlapping refcount records",
       [](F& fx, const T&) {
         uint64_t at = refcount_record(fx);
         fx.put(at + sizeof(fs::DiskRefcount), fx.get<fs::DiskRefcount>(at));
       }},
      // Symlinks and inodes.
      {"a symlink target of 4096 bytes",
       [](F& fx, const T& t) { fx.put_inode_field(t.symlink, offsetof(fs::DiskInode, size), uint64_t{4096}); }},
      {"a symlink target of 0 bytes",
       [](F& fx, const T& t) { fx.put_inode_field(t.symlink, offsetof(fs::DiskInode, size), uint64_t{0}); }},
      {"a symlink target with a NUL byte",
       [](F& fx, const T& t) { fx.put(fx.inode(t.symlink).head * kB + 2, '\0'); }},
      {"an inode of an invalid mode",
       [](F& fx, const T& t) { fx.put_inode_field(t.fifo, offsetof(fs::DiskInode, mode), uint32_t{0170600}); }},
      {"an inode with unknown flags",
       [](F& fx, const T& t) { fx.put_inode_field(t.file, offsetof(fs::DiskInode, flags), uint32_t{0x80}); }},
      {"a fifo with a block pointer",
       [](F& fx, const T& t) { fx.put_inode_field(t.fifo, offsetof(fs::DiskInode, head), uint64_t{4000}); }},
  };
}
}  // namespace

TEST_CASE("mount and fsck judge the same corrupted records alike", "[fsck][codec]") {
  for (const Case& c : cases()) {
    INFO(c.what);
    FsckFixture fx;
    Tree t = build(fx);
    c.damage(fx, t);
    std::string why;
    int err = mount_error(fx, why);
    INFO("mount: " << (err ? why : "accepted"));
    auto n = fx.check();
    bool refused = err != 0, reported = n.exit_code != fsck::kExitClean;
    CHECK(refused == reported);
    CHECK(refused == c.corrupt);
    if (refused) {
      CHECK(err == EUCLEAN);
      CHECK(why.find("fsck.daxfs") != std::string::npos);
      CHECK(why.find('\n') == std::string::npos);
    }
    if (!reported) continue;
    auto y = fx.repair();
    CHECK(y.exit_code == fsck::kExitCorrected);
    CHECK(fx.check().exit_code == fsck::kExitClean);
    int after = mount_error(fx, why);
    INFO("mount after fsck -y: " << why);
    CHECK(after == 0);
  }
}
