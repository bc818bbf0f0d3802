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
    case OwnerKind::kRefcount: return "a refcount block";
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

void BlockMap::split(uint64_t at) {
  auto it = map_.upper_bound(at);
  if (it == map_.begin()) return;
  --it;
  if (it->first == at || it->second.end <= at) return;
  Interval tail = it->second;
  it->second.end = at;
  map_.emplace(at, std::move(tail));
}

bool BlockMap::claim(uint64_t start, uint64_t length, Owner owner, Sharing sharing) {
  if (owner.kind != OwnerKind::kData) sharing = Sharing::kExclusive;
  if (find(start, length, sharing)) return false;
  uint64_t end = start + length;
  if (sharing == Sharing::kExclusive || !find(start, length)) {
    map_.emplace(start, Interval{end, owner, {}});
    used_ += length;
    return true;
  }
  // Every owned block of the range is data: split the pieces at the edges, add this mapping to
  // each, and fill the gaps between them.
  split(start);
  split(end);
  uint64_t pos = start;
  for (auto it = map_.lower_bound(start); pos < end;) {
    uint64_t next = it == map_.end() ? end : std::min(end, it->first);
    if (next > pos) {
      map_.emplace(pos, Interval{next, owner, {}});
      used_ += next - pos;
    }
    if (it == map_.end() || it->first >= end) break;
    it->second.sharers.push_back(owner.ino);
    pos = it->second.end;
    ++it;
  }
  return true;
}

std::optional<Owner> BlockMap::find(uint64_t start, uint64_t length, Sharing sharing) const {
  for (auto it = first_ending_after(start); it != map_.end() && it->first < start + length; ++it)
    if (in_the_way(it->second, sharing)) return it->second.owner;
  return std::nullopt;
}

std::vector<Range> BlockMap::unowned(uint64_t start, uint64_t length, Sharing sharing) const {
  std::vector<Range> out;
  auto add = [&](uint64_t s, uint64_t e) {
    if (e <= s) return;
    if (!out.empty() && out.back().start + out.back().length == s)
      out.back().length += e - s;
    else
      out.push_back({s, e - s});
  };
  uint64_t pos = start, end = start + length;
  for (auto it = first_ending_after(start); pos < end; ++it) {
    if (it == map_.end() || it->first >= end) {
      add(pos, end);
      break;
    }
    if (!in_the_way(it->second, sharing)) continue;
    add(pos, it->first);
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

void BlockMap::mappings(
    uint64_t start, uint64_t length,
    const std::function<void(uint64_t, uint64_t, uint64_t, const std::vector<uint64_t>&)>& fn) const {
  const std::vector<uint64_t> none;
  std::vector<uint64_t> owners;
  uint64_t pos = start, end = start + length;
  for (auto it = first_ending_after(start); pos < end; ++it) {
    uint64_t next = it == map_.end() ? end : std::min(end, it->first);
    if (next > pos) fn(pos, next - pos, 0, none);
    if (it == map_.end() || it->first >= end) break;
    uint64_t s = std::max(pos, it->first), e = std::min(end, it->second.end);
    if (it->second.owner.kind == OwnerKind::kData) {
      owners.assign(1, it->second.owner.ino);
      owners.insert(owners.end(), it->second.sharers.begin(), it->second.sharers.end());
      fn(s, e - s, owners.size(), owners);
    } else {
      fn(s, e - s, 0, none);
    }
    pos = e;
  }
}

void BlockMap::for_each_data(
    const std::function<void(uint64_t, uint64_t, uint64_t, const std::vector<uint64_t>&)>& fn) const {
  std::vector<uint64_t> owners;
  for (const auto& [start, iv] : map_) {
    if (iv.owner.kind != OwnerKind::kData) continue;
    owners.assign(1, iv.owner.ino);
    owners.insert(owners.end(), iv.sharers.begin(), iv.sharers.end());
    fn(start, iv.end - start, owners.size(), owners);
  }
}

}  // namespace daxfs::fsck
