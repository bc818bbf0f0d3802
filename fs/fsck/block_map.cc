// BlockMap: the interval map of block owners (see block_map.h).
#include "fs/fsck/block_map.h"

namespace daxfs::fsck {

std::string describe(const Owner& owner) {
  std::string ino = std::to_string(owner.ino);
  switch (owner.kind) {
    case OwnerKind::kChunk: return "an inode chunk";
    case OwnerKind::kExtentBlock: return "an extent block of inode " + ino;
    case OwnerKind::kDirBlock: return "a directory block of inode " + ino;
    case OwnerKind::kSymlink: return "the target block of symlink " + ino;
    case OwnerKind::kXattr: return "the xattr blob of inode " + ino;
    case OwnerKind::kData: return "data of inode " + ino;
    case OwnerKind::kRepair: return "a block fsck allocated";
  }
  return "something";
}

std::map<uint64_t, BlockMap::Interval>::const_iterator BlockMap::first_ending_after(uint64_t block) const {
  auto it = map_.upper_bound(block);
  if (it != map_.begin()) {
    auto prev = std::prev(it);
    if (prev->second.end > block) return prev;
  }
  return it;
}

bool BlockMap::claim(uint64_t start, uint64_t length, Owner owner) {
  if (find(start, length)) return false;
  map_.emplace(start, Interval{start + length, owner});
  used_ += length;
  return true;
}

std::optional<Owner> BlockMap::find(uint64_t start, uint64_t length) const {
  auto it = first_ending_after(start);
  if (it != map_.end() && it->first < start + length) return it->second.owner;
  return std::nullopt;
}

std::vector<Range> BlockMap::unowned(uint64_t start, uint64_t length) const {
  std::vector<Range> out;
  uint64_t pos = start, end = start + length;
  for (auto it = first_ending_after(start); pos < end; ++it) {
    uint64_t next_owned = it == map_.end() ? end : std::min(end, it->first);
    if (next_owned > pos) out.push_back({pos, next_owned - pos});
    if (it == map_.end()) break;
    pos = std::max(pos, it->second.end);
  }
  return out;
}

std::optional<uint64_t> BlockMap::first_free(uint64_t from, uint64_t end) const {
  uint64_t pos = from;
  for (auto it = first_ending_after(from); it != map_.end() && it->first <= pos; ++it)
    pos = std::max(pos, it->second.end);
  if (pos < end) return pos;
  return std::nullopt;
}

}  // namespace daxfs::fsck
