// The rules of the fixed-size records: inode numbers, chunk and record-block headers, inodes,
// extents, refcount records, directory entry names and symlink targets (codec.h).
#include <sys/stat.h>

#include <algorithm>
#include <cstring>

#include "fs/ondisk/codec.h"

namespace daxfs::fs::ondisk {

const char* ino_error(uint64_t ino, const DataArea& area) {
  if (ino_slot(ino) == 0) return "is a chunk header's slot";
  if (!area.contains(ino_block(ino))) return "is outside the data area";
  return nullptr;
}

const char* chunk_error(const ChunkHeader& h) {
  return h.magic == kChunkMagic ? nullptr : "is not an inode chunk (bad magic)";
}

const char* record_block_error(const RecordBlockHeader& h, uint64_t magic, uint64_t owner) {
  if (h.magic != magic) return "has the wrong magic";
  // The refcount chain's blocks belong to no inode; their owner field is not checked.
  if (magic != kRefcountMagic && h.owner != owner) return "belongs to another inode";
  return nullptr;
}

const char* inode_mode_error(uint32_t mode) {
  switch (mode & S_IFMT) {
    case S_IFREG:
    case S_IFDIR:
    case S_IFLNK:
    case S_IFIFO:
    case S_IFCHR:
    case S_IFBLK:
    case S_IFSOCK: return nullptr;
  }
  return "has an invalid mode";
}

const char* inode_flags_error(const DiskInode& d) {
  return (d.flags & ~kInodeDax) ? "has unknown inode flags" : nullptr;
}

const char* inode_head_error(const DiskInode& d) {
  bool has_blocks = S_ISREG(d.mode) || S_ISDIR(d.mode) || S_ISLNK(d.mode);
  return !has_blocks && d.head != 0 ? "is a special file with a block pointer" : nullptr;
}

const char* inode_xattr_length_error(const DiskInode& d) {
  return d.xattr_block == 0 && d.xattr_length != 0 ? "has an xattr length without an xattr block" : nullptr;
}

const char* inode_size_error(const DiskInode& d) {
  // A size past the maximum would have the mount's post-EOF trim free every block "past" it.
  if (S_ISREG(d.mode) && d.size > kMaxFileSize) return "has a file size past the maximum";
  if (S_ISLNK(d.mode) && (d.size == 0 || d.size > kSymlinkMax)) return "is a symlink of length outside 1..4095";
  return nullptr;
}

const char* inode_error(const DiskInode& d) {
  for (const char* why : {inode_mode_error(d.mode), inode_flags_error(d), inode_head_error(d),
                          inode_xattr_length_error(d), inode_size_error(d)})
    if (why) return why;
  return nullptr;
}

const char* extent_logical_error(const DiskExtent& e) {
  if (e.logical >= kMaxFileBlocks || e.length > kMaxFileBlocks - e.logical) return "ends past the maximum file size";
  return nullptr;
}

const char* extent_flags_error(const DiskExtent& e) {
  return (e.flags & ~kExtentUnwritten) ? "has unknown flags" : nullptr;
}

const char* extent_error(const DiskExtent& e, const DataArea& area) {
  if (const char* why = extent_logical_error(e)) return why;
  if (!area.contains(e.physical, e.length)) return "is outside the data area";
  return extent_flags_error(e);
}

const char* refcount_error(const DiskRefcount& r, const DataArea& area) {
  if (!area.contains(r.start, r.length)) return "is outside the data area";
  if (r.count < kMinSharedCount) return "has a count below 2";
  return nullptr;
}

NameError name_error(std::string_view name) {
  if (name.empty()) return NameError::kEmpty;
  if (name.size() > kNameMax) return NameError::kTooLong;
  if (name == "." || name == "..") return NameError::kDot;
  if (name.find('/') != std::string_view::npos || name.find('\0') != std::string_view::npos)
    return NameError::kBadByte;
  return NameError::kNone;
}

const char* describe(NameError e) {
  switch (e) {
    case NameError::kNone: return nullptr;
    case NameError::kEmpty: return "is empty";
    case NameError::kTooLong: return "is longer than 255 bytes";
    case NameError::kDot: return "is '.' or '..'";
    case NameError::kBadByte: return "contains '/' or a NUL byte";
  }
  return "is invalid";
}

Decoded<std::string> decode_dirent_name(const DiskDirent& de) {
  std::string name(de.name, std::min<uint32_t>(de.name_length, kNameMax));
  if (const char* why = describe(name_error(name))) return Decoded<std::string>::invalid(why);
  return name;
}

Decoded<std::string> decode_symlink(const char* block, uint64_t length) {
  if (length == 0 || length > kSymlinkMax) return Decoded<std::string>::invalid("has a length outside 1..4095");
  // The kernel takes a target as a C string: a NUL byte inside would cut it short.
  if (memchr(block, 0, length) != nullptr) return Decoded<std::string>::invalid("has a NUL byte in its target");
  return std::string(block, length);
}

}  // namespace daxfs::fs::ondisk
