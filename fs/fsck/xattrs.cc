// xattr blobs: each inode's attributes are one blob of {u8 name_length, u32 value_length, name,
// value} records, exactly xattr_length bytes, in contiguous blocks (fs/xattr.cc). A blob that
// does not parse is dropped whole. One that parses but holds attributes the filesystem would
// never have stored (a second attribute of one name, a POSIX ACL it cannot parse, which makes
// every create in that directory fail) is rewritten without them, in place, through the journal.
#include <cstddef>
#include <cstring>
#include <unordered_set>

#include "fs/fsck/checker_impl.h"

namespace daxfs::fsck {

namespace {
std::string num(uint64_t v) { return std::to_string(v); }

struct Attr {
  std::string name;
  std::string value;
};

// Splits a blob into its attributes; returns why it does not parse, or "".
std::string parse(const std::string& blob, std::vector<Attr>& out) {
  uint64_t pos = 0, n = blob.size();
  while (pos < n) {
    if (n - pos < 5) return "ends inside an attribute header";
    uint8_t name_length = static_cast<uint8_t>(blob[pos]);
    uint32_t value_length;
    memcpy(&value_length, blob.data() + pos + 1, 4);
    pos += 5;
    if (name_length == 0) return "has an attribute with an empty name";
    if (value_length > kMaxXattrValue) return "has a value longer than 64 KiB";
    if (n - pos < uint64_t{name_length} + value_length) return "ends inside an attribute";
    std::string name = blob.substr(pos, name_length);
    if (name.find('\0') != std::string::npos) return "has an attribute name with a NUL byte";
    out.push_back({std::move(name), blob.substr(pos + name_length, value_length)});
    pos += uint64_t{name_length} + value_length;
  }
  return "";
}

bool known_namespace(const std::string& name) {
  for (const char* prefix : {"user.", "trusted.", "security.", "system.posix_acl_access", "system.posix_acl_default"})
    if (name.rfind(prefix, 0) == 0) return true;
  return false;
}

// The bytes of `block` that form whole, plausible attribute records (a name in a namespace the
// filesystem accepts), up to the first that is not one: what a blob whose length was lost held.
uint64_t salvageable(const char* block) {
  uint64_t pos = 0;
  while (fs::kBlockSize - pos >= 5) {
    uint8_t name_length = static_cast<uint8_t>(block[pos]);
    uint32_t value_length;
    memcpy(&value_length, block + pos + 1, 4);
    if (name_length == 0 || fs::kBlockSize - pos - 5 < uint64_t{name_length} + value_length) break;
    std::string name(block + pos + 5, name_length);
    if (name.find('\0') != std::string::npos || !known_namespace(name)) break;
    pos += 5 + uint64_t{name_length} + value_length;
  }
  return pos;
}

// The kernel's ACL format as fs/xattr.cc's parse_acl() accepts it: version 2, then 8-byte entries
// {u16 tag, u16 perm, u32 id} with one owner, group and other entry, and a mask when any named
// user or group entry is present.
bool acl_ok(const std::string& v) {
  if (v.size() < 4 || (v.size() - 4) % 8 != 0) return false;
  uint32_t version;
  memcpy(&version, v.data(), 4);
  if (version != 2) return false;
  int user_obj = 0, group_obj = 0, other = 0, mask = 0, named = 0;
  for (size_t i = 4; i < v.size(); i += 8) {
    uint16_t tag, perm;
    memcpy(&tag, v.data() + i, 2);
    memcpy(&perm, v.data() + i + 2, 2);
    if (perm & ~7u) return false;
    switch (tag) {
      case 0x01: user_obj++; break;
      case 0x04: group_obj++; break;
      case 0x20: other++; break;
      case 0x10: mask++; break;
      case 0x02:
      case 0x08: named++; break;
      default: return false;
    }
  }
  return user_obj == 1 && group_obj == 1 && other == 1 && mask <= 1 && (named == 0 || mask == 1);
}
}  // namespace

void Checker::drop_xattrs(uint64_t ino, Node& n, const std::string& kind, const std::string& why) {
  size_t p = report(kind, ino,
                    "the xattr blob at block " + num(n.d.xattr_block) + " " + why + "; the inode's xattrs are dropped");
  n.d.xattr_block = 0;
  n.d.xattr_length = 0;
  fs::Txn txn;
  txn.write_obj(inode_offset(ino) + offsetof(fs::DiskInode, xattr_block), n.d.xattr_block);
  txn.write_obj(inode_offset(ino) + offsetof(fs::DiskInode, xattr_length), n.d.xattr_length);
  plan(p, std::move(txn));
}

void Checker::check_xattrs(uint64_t ino, Node& n) {
  uint64_t b = n.d.xattr_block, length = n.d.xattr_length;
  uint64_t blocks = (length + fs::kBlockSize - 1) / fs::kBlockSize;
  if (length == 0 && block_ok(b) && !map_.find(b, 1)) {
    // Its records may still be there (fs/xattr.cc once lost the length on a failed setxattr).
    length = salvageable(img_.block(b));
    if (length == 0) return drop_xattrs(ino, n, "xattr", "has a length of 0");
    size_t p = report("xattr", ino,
                      "the xattr blob at block " + num(b) + " has a length of 0; the " + num(length) +
                          " bytes of attributes at its start are kept");
    n.d.xattr_length = static_cast<uint32_t>(length);
    plan_write(p, inode_offset(ino) + offsetof(fs::DiskInode, xattr_length), n.d.xattr_length);
    blocks = 1;
  }
  if (length == 0) return drop_xattrs(ino, n, "xattr", "has a length of 0");
  if (length > kMaxXattrBlob) return drop_xattrs(ino, n, "xattr", "is longer than 1 MiB (" + num(length) + " bytes)");
  if (!range_ok(b, blocks)) return drop_xattrs(ino, n, "xattr", "is outside the data area");
  if (auto o = map_.find(b, blocks))
    return drop_xattrs(ino, n, "duplicate_block", "shares blocks with " + describe(*o));
  std::string blob(length, '\0');
  if (!img_.read(b * fs::kBlockSize, blob.data(), length)) return drop_xattrs(ino, n, "xattr", "is outside the device");
  std::vector<Attr> attrs;
  std::string why = parse(blob, attrs);
  if (!why.empty()) return drop_xattrs(ino, n, "xattr", why);

  std::unordered_set<std::string> names;
  std::string kept, bad;
  for (const Attr& a : attrs) {
    bool acl = a.name == "system.posix_acl_access" || a.name == "system.posix_acl_default";
    if (!names.insert(a.name).second) {
      bad += " a second '" + printable(a.name) + "'";
    } else if (acl && (!acl_ok(a.value) || (a.name == "system.posix_acl_default" && !n.is_dir()))) {
      bad += " an invalid " + a.name;
    } else {
      uint8_t name_length = static_cast<uint8_t>(a.name.size());
      uint32_t value_length = static_cast<uint32_t>(a.value.size());
      kept.push_back(static_cast<char>(name_length));
      kept.append(reinterpret_cast<const char*>(&value_length), 4);
      kept += a.name + a.value;
    }
  }
  if (bad.empty()) {
    map_.claim(b, blocks, {OwnerKind::kXattr, ino});
    return;
  }
  // The shorter blob fits the old blocks; rewriting it in place is one transaction when it fits
  // the journal (with room for the entry headers), else the blob goes.
  uint64_t capacity = sb_.journal_blocks * fs::kBlockSize - sizeof(fs::JournalHeader);
  if (kept.size() + 256 > capacity) return drop_xattrs(ino, n, "xattr", "holds" + bad + " and is too big to rewrite");
  size_t p = report("xattr", ino, "the xattr blob at block " + num(b) + " holds" + bad + "; they are dropped");
  fs::Txn txn;
  if (kept.empty()) {
    n.d.xattr_block = 0;
  } else {
    txn.write(b * fs::kBlockSize, kept.data(), static_cast<uint32_t>(kept.size()));
    map_.claim(b, (kept.size() + fs::kBlockSize - 1) / fs::kBlockSize, {OwnerKind::kXattr, ino});
  }
  n.d.xattr_length = static_cast<uint32_t>(kept.size());
  txn.write_obj(inode_offset(ino) + offsetof(fs::DiskInode, xattr_block), n.d.xattr_block);
  txn.write_obj(inode_offset(ino) + offsetof(fs::DiskInode, xattr_length), n.d.xattr_length);
  plan(p, std::move(txn));
}

}  // namespace daxfs::fsck
