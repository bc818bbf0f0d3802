// The one on-media codec: the rules that say whether a record read from the media is valid, and
// the encoders of the records whose byte layout is more than a struct (the xattr blob, POSIX
// ACLs). The mount (fs/load.cc), fsck.daxfs (fs/fsck/) and the filesystem's write side
// (fs/xattr.cc, fs/dir.cc) all call these, so what the mount accepts, what fsck accepts and what
// the filesystem writes are the same by construction (docs/format.md, "The codec").
//
// A rule returns nullptr when the record is valid, else a short reason ("is outside the data
// area") that the caller completes with what the record is; a decoder returns the decoded value
// or such a reason. Depends only on fs/format.h; pure functions, no shared state.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "fs/format.h"

namespace daxfs::fs::ondisk {

// A decoded value, or why the record does not decode.
template <typename T>
class Decoded {
 public:
  Decoded(T value) : value_(std::move(value)) {}  // NOLINT: implicit by design, as Result<T>.
  static Decoded invalid(const char* why) { return Decoded(why); }
  bool ok() const { return value_.has_value(); }
  explicit operator bool() const { return ok(); }
  const T& value() const& { return *value_; }
  T&& value() && { return std::move(*value_); }
  const T& operator*() const& { return *value_; }
  const T* operator->() const { return &*value_; }
  const char* why() const { return why_; }

 private:
  explicit Decoded(const char* why) : why_(why) {}
  std::optional<T> value_;
  const char* why_ = nullptr;
};

// ---- Where things are -------------------------------------------------------------------------

// The blocks metadata and data may live in: after the journal, before `limit` (the filesystem's
// end; fsck passes the device's end when that comes first).
struct DataArea {
  uint64_t start;
  uint64_t limit;
  bool contains(uint64_t first, uint64_t length) const {
    return first >= start && first < limit && length > 0 && length <= limit - first;
  }
  bool contains(uint64_t block) const { return contains(block, 1); }
};
inline DataArea data_area(const SuperBlock& sb) {
  return {sb.journal_start + sb.journal_blocks, sb.block_count};
}

// An inode's device byte offset (fs/format.h: the number says where the inode is).
inline uint64_t inode_offset(uint64_t ino) { return ino_block(ino) * kBlockSize + ino_slot(ino) * kInodeSize; }
// Why `ino` cannot name an inode: slot 0 is a chunk header, and the block must be in the area.
const char* ino_error(uint64_t ino, const DataArea& area);

// ---- Chunks and record blocks -----------------------------------------------------------------

const char* chunk_error(const ChunkHeader& h);
// A block of a record chain: the magic of its kind, owned by `owner` (0: the refcount chain).
const char* record_block_error(const RecordBlockHeader& h, uint64_t magic, uint64_t owner);

// ---- Inodes -----------------------------------------------------------------------------------
// One rule per field, so that fsck can repair each on its own; inode_error() is all of them.

const char* inode_mode_error(uint32_t mode);        // not one of the seven file types
const char* inode_flags_error(const DiskInode& d);  // flags fs/format.h does not define
const char* inode_head_error(const DiskInode& d);   // a special file with a block pointer
const char* inode_xattr_length_error(const DiskInode& d);  // a blob length with no blob
const char* inode_size_error(const DiskInode& d);   // a regular file or symlink of impossible size
const char* inode_error(const DiskInode& d);

// ---- Extents ----------------------------------------------------------------------------------

const char* extent_logical_error(const DiskExtent& e);  // past the maximum file size
const char* extent_flags_error(const DiskExtent& e);    // unknown flags
// All the rules of one record (length 0 is a free record, not checked). Overlaps are a rule of a
// file's records together: see overlaps().
const char* extent_error(const DiskExtent& e, const DataArea& area);

// Whether [start, start + length) overlaps a range of `ranges` (a map start -> anything, of
// disjoint ranges); end(it) is the end of the range at iterator `it`. Extents of one file and
// refcount records must not overlap.
template <typename Map, typename End>
bool overlaps(const Map& ranges, uint64_t start, uint64_t length, End end) {
  auto next = ranges.lower_bound(start);
  if (next != ranges.end() && next->first - start < length) return true;
  return next != ranges.begin() && end(std::prev(next)) > start;
}

// ---- Refcount records -------------------------------------------------------------------------

// The record alone: inside the area, and a count of at least 2 (only shared ranges are recorded).
inline constexpr uint32_t kMinSharedCount = 2;
const char* refcount_error(const DiskRefcount& r, const DataArea& area);

// ---- Directory entries ------------------------------------------------------------------------

// What is wrong with a name, in the order the checks run; the filesystem maps each to its errno
// (Directory::check_name() in fs/directory.cc), the readers to a reason.
enum class NameError { kNone, kEmpty, kTooLong, kDot, kBadByte };
NameError name_error(std::string_view name);
const char* describe(NameError e);
// The entry's name, or why it is not a valid one (an entry in use: ino != 0).
Decoded<std::string> decode_dirent_name(const DiskDirent& de);

// ---- Symlinks ---------------------------------------------------------------------------------

// The target in the first `length` bytes of its block (kBlockSize bytes).
Decoded<std::string> decode_symlink(const char* block, uint64_t length);

// ---- POSIX ACLs (the kernel's xattr format: version 2, then 8-byte entries) -------------------

inline constexpr uint32_t kAclVersion = 2;
enum : uint16_t { kAclUserObj = 1, kAclUser = 2, kAclGroupObj = 4, kAclGroup = 8, kAclMask = 0x10, kAclOther = 0x20 };
struct AclEntry {
  uint16_t tag, perm;
  uint32_t id;
};
inline constexpr const char* kAclAccess = "system.posix_acl_access";
inline constexpr const char* kAclDefault = "system.posix_acl_default";

// One owner, group and other entry, at most one mask, and a mask when any named entry is present.
Decoded<std::vector<AclEntry>> decode_acl(std::string_view value);
std::string encode_acl(const std::vector<AclEntry>& acl);

// ---- Xattr blobs: (u8 name_length, u32 value_length, name, value)* ----------------------------

inline constexpr uint64_t kMaxXattrBlob = 1 << 20;   // the largest blob the filesystem writes
inline constexpr uint64_t kMaxXattrValue = 65536;    // XATTR_SIZE_MAX: setxattr refuses more

struct Xattr {
  std::string name;
  std::string value;
};

// Where the blob is: a length of 1 .. 1 MiB (xattr_length_error()) in blocks of the area (block
// 0 means no blob).
const char* xattr_length_error(uint64_t length);
const char* xattr_blob_error(uint64_t block, uint64_t length, const DataArea& area);
// The attributes one by one, as they are framed: every name non-empty without a NUL byte, every
// value at most 64 KiB, the records exactly filling the blob.
Decoded<std::vector<Xattr>> parse_xattrs(std::string_view blob);
// What no single attribute of an inode may be: an ACL that does not decode, a default ACL on
// anything but a directory.
const char* xattr_error(const Xattr& x, bool is_dir);
// The whole blob as the mount takes it: parse_xattrs(), xattr_error() on each, no name twice.
Decoded<std::map<std::string, std::string>> decode_xattrs(std::string_view blob, bool is_dir);

// The namespaces setxattr accepts.
bool xattr_namespace_ok(std::string_view name);
void append_xattr(std::string& blob, std::string_view name, std::string_view value);
std::string encode_xattrs(const std::map<std::string, std::string>& xattrs);

}  // namespace daxfs::fs::ondisk
