// Layout queries: a file's extents (fiemap) and the reverse map of the whole device (fsmap),
// with sharing, unwritten and poison flags; and inode -> path for reports.
#include <algorithm>

#include "daxcore/daxfs_ioctl.h"
#include "fs/filesystem.h"

namespace daxfs::fs {

Result<std::vector<Filesystem::MapRow>> Filesystem::fiemap(uint64_t ino, uint64_t start, size_t max) {
  std::shared_lock lock(mu_);
  TRY(check_alive());
  Inode* in = TRY(inodes_.find(ino));
  std::vector<MapRow> out;
  // Holes are absent; mappings split where sharing (XFS reports shared and private parts as
  // separate extents) or poison (whole blocks) changes.
  uint64_t end = in->extents.empty() ? 0 : in->extents.rbegin()->first + in->extents.rbegin()->second.length;
  for (uint64_t block = start / kBlockSize; block < end && out.size() < max;) {
    dax::Iomap m = mapping_at_locked(*in, block, end, dax::kIomapReport);
    block = m.end() / kBlockSize;
    if (m.type == dax::IomapType::kHole) continue;
    MapRow r{};
    r.logical = m.offset;
    r.physical = m.address;
    r.length = m.length;
    r.ino = ino;
    r.kind = DAXFS_OWN_DATA;
    r.flags = ((m.flags & dax::kIomapShared) ? DAXFS_EXTENT_SHARED : 0) |
              (m.type == dax::IomapType::kUnwritten ? DAXFS_EXTENT_UNWRITTEN : 0) |
              ((m.flags & dax::kIomapPoisoned) ? DAXFS_EXTENT_POISONED : 0);
    out.push_back(r);
  }
  return out;
}

std::vector<Filesystem::MapRow> Filesystem::fsmap(uint64_t start, uint64_t end, uint64_t skip, size_t max) {
  std::shared_lock lock(mu_);
  uint64_t first = start / kBlockSize;
  uint64_t last = std::min<uint64_t>(end / kBlockSize + (end % kBlockSize != 0), sb_->block_count);
  std::vector<MapRow> rows;
  auto meta = [&](uint64_t b, uint64_t n, uint64_t kind, uint64_t ino) {
    uint64_t s = std::max(b, first), e = std::min(b + n, last);
    if (s < e) rows.push_back({s * kBlockSize, (e - s) * kBlockSize, kind, ino, 0, 0});
  };
  meta(0, 1, DAXFS_OWN_SUPER, 0);
  meta(sb_->journal_start, sb_->journal_blocks, DAXFS_OWN_JOURNAL, 0);
  std::vector<uint64_t> chunks;
  for (auto& [ino, in] : inodes_) chunks.push_back(ino_block(ino));
  for (uint64_t ino : inodes_.free_slots()) chunks.push_back(ino_block(ino));
  std::sort(chunks.begin(), chunks.end());
  chunks.erase(std::unique(chunks.begin(), chunks.end()), chunks.end());
  for (uint64_t c : chunks) meta(c, 1, DAXFS_OWN_INODES, 0);
  for (auto& [ino, in] : inodes_) {
    for (uint64_t b : in->record_blocks) meta(b, 1, in->is_dir() ? DAXFS_OWN_DIRECTORY : DAXFS_OWN_EXTENT_MAP, ino);
    if (in->is_symlink() && in->d.head) meta(in->d.head, 1, DAXFS_OWN_SYMLINK, ino);
    if (in->d.xattr_block) meta(in->d.xattr_block, (in->d.xattr_length + kBlockSize - 1) / kBlockSize, DAXFS_OWN_XATTR, ino);
  }
  for (uint64_t b : owners_.refcounts().blocks()) meta(b, 1, DAXFS_OWN_REFCOUNT, 0);
  for (const BlockRange& r : alloc_.free_ranges()) meta(r.start, r.length, DAXFS_OWN_FREE, 0);
  // Poisoned free blocks the allocator retired: free on the media, as an unmounted device shows.
  for (uint64_t b : space_.retired()) meta(b, 1, DAXFS_OWN_FREE, 0);
  if (first < last) {
    for (const RmapRange& r : owners_.rmap().query(first, last - first)) {
      for (const RmapOwner& o : r.owners) {
        MapRow row{r.physical * kBlockSize, r.length * kBlockSize, DAXFS_OWN_DATA, o.ino, o.logical * kBlockSize,
                   (r.owners.size() >= 2 ? DAXFS_EXTENT_SHARED : 0u) |
                       ((o.flags & kExtentUnwritten) ? DAXFS_EXTENT_UNWRITTEN : 0u)};
        rows.push_back(row);
      }
    }
  }
  std::stable_sort(rows.begin(), rows.end(), [](const MapRow& a, const MapRow& b) {
    return a.physical != b.physical ? a.physical < b.physical : a.ino < b.ino;
  });
  // Free rows that touch (a retired block beside free ranges) are one free range, as on media.
  std::vector<MapRow> merged;
  for (const MapRow& r : rows) {
    if (!merged.empty() && r.kind == DAXFS_OWN_FREE && merged.back().kind == DAXFS_OWN_FREE &&
        merged.back().physical + merged.back().length == r.physical) {
      merged.back().length += r.length;
      continue;
    }
    merged.push_back(r);
  }
  rows = std::move(merged);
  std::vector<MapRow> out;
  for (const MapRow& r : rows) {
    if (r.physical == start && skip > 0) {
      skip--;
      continue;
    }
    if (out.size() == max) break;
    out.push_back(r);
  }
  return out;
}

std::vector<Filesystem::AccessStep> Filesystem::access_path(uint64_t ino) {
  std::shared_lock lock(mu_);
  std::vector<AccessStep> out;
  auto self = inodes_.find(ino);
  if (!self) return out;
  auto step = [](const Inode& in) {
    return AccessStep{in.d.mode, in.d.uid, in.d.gid, in.xattrs.count("system.posix_acl_access") > 0};
  };
  out.push_back(step(**self));
  // One directory naming it (the first found; a hard link elsewhere is not considered), then up.
  const Inode* dir = nullptr;
  if ((*self)->is_dir()) {
    auto p = inodes_.find((*self)->d.parent);
    if (p && ino != inodes_.root()) dir = *p;
  } else {
    for (auto& [dino, d] : inodes_) {
      if (!d->is_dir()) continue;
      for (const DirSlot& slot : d->slots)
        if (slot.ino == ino) dir = d.get();
      if (dir) break;
    }
    if (!dir) return {};  // unlinked: nobody reaches it by a path
  }
  for (size_t depth = 0; dir && depth <= inodes_.size(); depth++) {
    out.push_back(step(*dir));
    if (dir->ino == inodes_.root()) break;
    auto p = inodes_.find(dir->d.parent);
    dir = p ? *p : nullptr;
  }
  return out;
}

std::unordered_map<uint64_t, std::string> Filesystem::paths() {
  std::shared_lock lock(mu_);
  std::unordered_map<uint64_t, std::string> out{{inodes_.root(), "/"}};
  std::vector<uint64_t> stack{inodes_.root()};
  while (!stack.empty()) {
    uint64_t d = stack.back();
    stack.pop_back();
    const Inode& dir = inodes_.at(d);
    std::string prefix = d == inodes_.root() ? "/" : out[d] + "/";
    for (const DirSlot& s : dir.slots) {
      if (!s.ino || out.count(s.ino)) continue;  // a hard link: the first name found
      out[s.ino] = prefix + s.name;
      const Inode* t = inodes_.get(s.ino);
      if (t && t->is_dir()) stack.push_back(s.ino);
    }
  }
  return out;
}

}  // namespace daxfs::fs
