// xattr blobs: each inode's attributes are one blob of {u8 name_length, u32 value_length, name,
// value} records, exactly xattr_length bytes, in contiguous blocks, read by the mount's codec
// (fs/ondisk/codec.h). A blob that does not parse is dropped whole. One that parses but holds attributes the filesystem would
// never have stored (a second attribute of one name, a POSIX ACL it cannot parse, which makes
// every create in that directory fail) is rewritten without them, in place, through the journal.
#include <cstddef>
#include <cstring>
#include <unordered_set>

#include "fs/fsck/checker_impl.h"

namespace daxfs::fsck {

namespace {
namespace ondisk = fs::ondisk;
std::string num(uint64_t v) { return std::to_string(v); }

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
    if (name.find('\0') != std::string::npos || !ondisk::xattr_namespace_ok(name)) break;
    pos += 5 + uint64_t{name_length} + value_length;
  }
  return pos;
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
  if (const char* why = ondisk::xattr_length_error(length)) return drop_xattrs(ino, n, "xattr", why);
  if (!range_ok(b, blocks)) return drop_xattrs(ino, n, "xattr", "is outside the data area");
  if (auto o = map_.find(b, blocks))
    return drop_xattrs(ino, n, "duplicate_block", "shares blocks with " + describe(*o));
  std::string blob(length, '\0');
  if (!img_.read(b * fs::kBlockSize, blob.data(), length)) return drop_xattrs(ino, n, "xattr", "is outside the device");
  auto attrs = ondisk::parse_xattrs(blob);
  if (!attrs) return drop_xattrs(ino, n, "xattr", attrs.why());

  std::unordered_set<std::string> names;
  std::string kept, bad;
  // The rules of ondisk::decode_xattrs(), one attribute at a time: the ones it refuses go.
  for (const ondisk::Xattr& a : *attrs) {
    if (!names.insert(a.name).second)
      bad += " a second '" + printable(a.name) + "'";
    else if (ondisk::xattr_error(a, n.is_dir()))
      bad += " an invalid " + a.name;
    else
      ondisk::append_xattr(kept, a.name, a.value);
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
