// The on-media codec (fs/ondisk/codec.h) on its own: each rule, each decoder, and the encoders
// against their decoders.
#include <sys/stat.h>

#include <catch2/catch.hpp>
#include <cstring>

#include "fs/ondisk/codec.h"

using namespace daxfs::fs;
namespace od = daxfs::fs::ondisk;

namespace {
std::string record(const std::string& name, uint32_t value_length, const std::string& value) {
  std::string r(1, static_cast<char>(name.size()));
  r.append(reinterpret_cast<const char*>(&value_length), 4);
  return r + name + value;
}
std::string record(const std::string& name, const std::string& value) {
  return record(name, static_cast<uint32_t>(value.size()), value);
}
std::vector<od::AclEntry> minimal_acl() {
  return {{od::kAclUserObj, 6, 0}, {od::kAclGroupObj, 4, 0}, {od::kAclOther, 4, 0}};
}
std::vector<od::AclEntry> named_acl() {
  return {{od::kAclUserObj, 6, 0}, {od::kAclUser, 4, 1000}, {od::kAclGroupObj, 4, 0}, {od::kAclMask, 4, 0},
          {od::kAclOther, 4, 0}};
}
}  // namespace

TEST_CASE("codec: names follow check_name()'s rules", "[codec]") {
  CHECK(od::name_error("a") == od::NameError::kNone);
  CHECK(od::name_error(std::string(255, 'x')) == od::NameError::kNone);
  CHECK(od::name_error(std::string(256, 'x')) == od::NameError::kTooLong);
  CHECK(od::name_error("") == od::NameError::kEmpty);
  CHECK(od::name_error(".") == od::NameError::kDot);
  CHECK(od::name_error("..") == od::NameError::kDot);
  CHECK(od::name_error("...") == od::NameError::kNone);
  CHECK(od::name_error("a/b") == od::NameError::kBadByte);
  CHECK(od::name_error(std::string("a\0b", 3)) == od::NameError::kBadByte);
  CHECK(od::describe(od::NameError::kNone) == nullptr);
  DiskDirent de{};
  de.ino = 17;
  de.name_length = 3;
  memcpy(de.name, "abc", 3);
  auto name = od::decode_dirent_name(de);
  REQUIRE(name);
  CHECK(*name == "abc");
  de.name_length = 0;
  CHECK_FALSE(od::decode_dirent_name(de));
  de.name_length = 2;
  memcpy(de.name, "..", 2);
  CHECK(std::string(od::decode_dirent_name(de).why()) == "is '.' or '..'");
}

TEST_CASE("codec: inode numbers and the data area", "[codec]") {
  od::DataArea area{100, 1000};
  CHECK(area.contains(100));
  CHECK_FALSE(area.contains(99));
  CHECK(area.contains(999));
  CHECK_FALSE(area.contains(1000));
  CHECK(area.contains(990, 10));
  CHECK_FALSE(area.contains(990, 11));
  CHECK_FALSE(area.contains(200, 0));
  CHECK_FALSE(area.contains(500, ~uint64_t{0}));  // no wrap
  CHECK(od::ino_error(make_ino(100, 1), area) == nullptr);
  CHECK(od::ino_error(make_ino(100, 0), area) != nullptr);
  CHECK(od::ino_error(make_ino(5, 3), area) != nullptr);
  CHECK(od::inode_offset(make_ino(100, 3)) == 100 * kBlockSize + 3 * kInodeSize);
  SuperBlock sb{};
  sb.journal_start = 1;
  sb.journal_blocks = 16;
  sb.block_count = 4096;
  CHECK(od::data_area(sb).start == 17);
  CHECK(od::data_area(sb).limit == 4096);
}

TEST_CASE("codec: chunk and record-block headers", "[codec]") {
  ChunkHeader ch{};
  CHECK(od::chunk_error(ch) != nullptr);
  ch.magic = kChunkMagic;
  CHECK(od::chunk_error(ch) == nullptr);
  RecordBlockHeader h{kExtentMagic, 33, 0, 0};
  CHECK(od::record_block_error(h, kExtentMagic, 33) == nullptr);
  CHECK(od::record_block_error(h, kDirMagic, 33) != nullptr);
  CHECK(od::record_block_error(h, kExtentMagic, 34) != nullptr);
  RecordBlockHeader r{kRefcountMagic, 0, 0, 0};
  CHECK(od::record_block_error(r, kRefcountMagic, 0) == nullptr);
}

TEST_CASE("codec: inode fields", "[codec]") {
  DiskInode d{};
  d.mode = S_IFREG | 0644;
  CHECK(od::inode_error(d) == nullptr);
  d.mode = 0170644;
  CHECK(od::inode_error(d) != nullptr);
  d.mode = S_IFIFO | 0600;
  d.head = 5;
  CHECK(od::inode_head_error(d) != nullptr);
  d.head = 0;
  d.flags = 2;
  CHECK(od::inode_flags_error(d) != nullptr);
  d.flags = kInodeDax;
  CHECK(od::inode_error(d) == nullptr);
  d.xattr_length = 10;
  CHECK(od::inode_xattr_length_error(d) != nullptr);
  d.xattr_length = 0;
  d.mode = S_IFREG | 0644;
  d.size = kMaxFileSize;
  CHECK(od::inode_size_error(d) == nullptr);
  d.size = kMaxFileSize + 1;
  CHECK(od::inode_size_error(d) != nullptr);
  d.mode = S_IFLNK | 0777;
  d.size = kSymlinkMax;
  CHECK(od::inode_size_error(d) == nullptr);
  d.size = kSymlinkMax + 1;
  CHECK(od::inode_size_error(d) != nullptr);
  d.size = 0;
  CHECK(od::inode_size_error(d) != nullptr);
}

TEST_CASE("codec: extent and refcount records", "[codec]") {
  od::DataArea area{100, 1000};
  CHECK(od::extent_error({0, 100, 5, 0}, area) == nullptr);
  CHECK(od::extent_error({0, 100, 5, kExtentUnwritten}, area) == nullptr);
  CHECK(od::extent_error({0, 99, 5, 0}, area) != nullptr);
  CHECK(od::extent_error({0, 998, 5, 0}, area) != nullptr);
  CHECK(od::extent_error({kMaxFileBlocks, 100, 1, 0}, area) != nullptr);
  CHECK(od::extent_error({kMaxFileBlocks - 1, 100, 2, 0}, area) != nullptr);
  CHECK(od::extent_error({0, 100, 5, 4}, area) != nullptr);
  std::map<uint64_t, uint64_t> ranges{{10, 5}, {20, 5}};  // [10,15) [20,25)
  auto end = [](auto it) { return it->first + it->second; };
  CHECK_FALSE(od::overlaps(ranges, 15, 5, end));
  CHECK(od::overlaps(ranges, 14, 1, end));
  CHECK(od::overlaps(ranges, 0, 11, end));
  CHECK(od::overlaps(ranges, 12, 100, end));
  CHECK_FALSE(od::overlaps(ranges, 25, ~uint64_t{0} - 25, end));
  CHECK(od::refcount_error({100, 5, 2}, area) == nullptr);
  CHECK(od::refcount_error({100, 5, 1}, area) != nullptr);
  CHECK(od::refcount_error({999, 5, 2}, area) != nullptr);
}

TEST_CASE("codec: symlink targets", "[codec]") {
  char block[kBlockSize] = {};
  memcpy(block, "target", 6);
  auto t = od::decode_symlink(block, 6);
  REQUIRE(t);
  CHECK(*t == "target");
  CHECK_FALSE(od::decode_symlink(block, 0));
  CHECK_FALSE(od::decode_symlink(block, kSymlinkMax + 1));
  CHECK_FALSE(od::decode_symlink(block, 7));  // the NUL after it
}

TEST_CASE("codec: POSIX ACLs", "[codec]") {
  for (const auto& acl : {minimal_acl(), named_acl()}) {
    auto back = od::decode_acl(od::encode_acl(acl));
    REQUIRE(back);
    CHECK(back->size() == acl.size());
  }
  std::string good = od::encode_acl(named_acl());
  std::string v = good;
  v[0] = 3;
  CHECK(std::string(od::decode_acl(v).why()) == "has an ACL version other than 2");
  CHECK_FALSE(od::decode_acl(good + "x"));
  CHECK_FALSE(od::decode_acl(good.substr(0, 3)));
  auto bad_tag = named_acl();
  bad_tag[1].tag = 0x40;
  CHECK_FALSE(od::decode_acl(od::encode_acl(bad_tag)));
  auto no_mask = named_acl();
  no_mask.erase(no_mask.begin() + 3);
  CHECK_FALSE(od::decode_acl(od::encode_acl(no_mask)));
  auto two_owners = minimal_acl();
  two_owners.push_back(two_owners[0]);
  CHECK_FALSE(od::decode_acl(od::encode_acl(two_owners)));
  auto bad_perm = minimal_acl();
  bad_perm[0].perm = 8;
  CHECK_FALSE(od::decode_acl(od::encode_acl(bad_perm)));
}

TEST_CASE("codec: xattr blobs", "[codec]") {
  std::map<std::string, std::string> xattrs{{"user.a", "1"}, {"user.big", std::string(65536, 'v')}};
  std::string blob = od::encode_xattrs(xattrs);
  auto back = od::decode_xattrs(blob, false);
  REQUIRE(back);
  CHECK(*back == xattrs);
  CHECK(od::decode_xattrs("", false));

  auto why = [](const std::string& b, bool is_dir = false) {
    auto d = od::decode_xattrs(b, is_dir);
    return d ? std::string() : std::string(d.why());
  };
  CHECK(why(record("user.v", 65537, std::string(65537, 'v'))) == "has a value longer than 64 KiB");
  CHECK(why(record(std::string("user.\0a", 7), "1")) == "has an attribute name with a NUL byte");
  CHECK(why(record("", "1")) == "has an attribute with an empty name");
  CHECK(why(record("user.a", "1") + record("user.a", "2")) == "holds two attributes of one name");
  CHECK(why(record("user.a", "12").substr(0, 12)) == "ends inside an attribute");
  CHECK(why("abc") == "ends inside an attribute header");
  std::string acl = od::encode_acl(minimal_acl());
  CHECK(why(record(od::kAclAccess, acl)).empty());
  CHECK(why(record(od::kAclDefault, acl)) == "holds a default ACL on a non-directory");
  CHECK(why(record(od::kAclDefault, acl), true).empty());
  CHECK(why(record(od::kAclAccess, acl + "x")) == "is not a whole number of ACL entries");
  // parse_xattrs() alone keeps a second name (fsck drops just that one).
  auto parsed = od::parse_xattrs(record("user.a", "1") + record("user.a", "2"));
  REQUIRE(parsed);
  CHECK(parsed->size() == 2);

  od::DataArea area{100, 1000};
  CHECK(od::xattr_blob_error(100, 1, area) == nullptr);
  CHECK(od::xattr_blob_error(100, 0, area) != nullptr);
  CHECK(od::xattr_blob_error(100, od::kMaxXattrBlob + 1, area) != nullptr);
  CHECK(od::xattr_blob_error(999, kBlockSize + 1, area) != nullptr);
  CHECK(od::xattr_namespace_ok("user.x"));
  CHECK(od::xattr_namespace_ok(od::kAclDefault));
  CHECK_FALSE(od::xattr_namespace_ok("system.other"));
}
