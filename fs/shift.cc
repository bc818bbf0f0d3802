// Collapse and insert range: fallocate(2)'s FALLOC_FL_COLLAPSE_RANGE and FALLOC_FL_INSERT_RANGE
// with XFS's semantics (fs/xfs/xfs_file.c xfs_falloc_collapse_range / xfs_falloc_insert_range,
// fs/xfs/xfs_bmap_util.c xfs_collapse_file_space / xfs_insert_file_space).
//
//   collapse [2,4):  A A B B C C D     ->  A A C C D          B's blocks freed, C and D move left
//   insert   [2,4):  A A B B C C D     ->  A A - - B B C C D  a hole, B C D move right
//
// Extents move whole: each keeps its device blocks, its unwritten flag and its sharing (the rmap
// owner moves with it; reference counts are by device block and do not change), so a moved
// extent costs one rewritten 24-byte record. Crash atomicity: the operation is one transaction
// when it fits the journal; otherwise it commits in steps, in XFS's order, each leaving a
// consistent file (docs/format.md, "Crash consistency"):
//   collapse: punch the range, shift left from the first extent after it, the new size last;
//   insert: split at the offset and the new size first, then shift right from the last extent;
// so no two extents ever overlap and no moved extent is ever past EOF.
#include "fs/filesystem.h"

namespace daxfs::fs {

namespace {
constexpr uint64_t kEndBlock = kMaxFileBlocks;
// Journal bytes of an entry holding `n` bytes (fs/journal.cc, Txn::write).
constexpr uint64_t entry_bytes(uint64_t n) { return sizeof(JournalEntry) + (n + 7) / 8 * 8; }
constexpr uint64_t kInodeEntry = entry_bytes(sizeof(DiskInode));
constexpr uint64_t kExtentEntry = entry_bytes(sizeof(DiskExtent));
}  // namespace

Status Filesystem::make_room_locked(Txn& txn, Inode& in, uint64_t more) {
  // The inode is stored once more when the operation ends (its size, its times).
  if (txn.bytes() + more + kInodeEntry <= space_.journal_capacity()) return {};
  store_inode(txn, in);
  return space_.commit_locked(txn);
}

Status Filesystem::collapse_range_locked(std::unique_lock<std::shared_mutex>& lock, Inode& in, uint64_t offset,
                                         uint64_t length, KillPriv kill_priv) {
  // xfs_falloc_collapse_range(): whole blocks; a collapse reaching EOF would be a truncate.
  if (offset % kBlockSize || length % kBlockSize) return error(EINVAL);
  if (offset + length >= in.d.size) return error(EINVAL);
  const uint64_t first = offset / kBlockSize, end = (offset + length) / kBlockSize, shift = end - first;
  // The punch may split an extent (a record block) and refcount records (their blocks).
  TRY(space_.reserve_locked(2 + pieces_of(in, first, end).size() / kRefcountsPerBlock));
  // Every mapper of the file from the offset on lets go first: those blocks are freed or move.
  TRY(break_layout(lock, in.ino, first, kEndBlock, dax::LayoutChange::kShift));
  Txn txn;
  DirtyGuard guard(space_, txn);
  // 1. The range's blocks go (a shared block only loses this file's reference), in pieces
  // whose refcount rewrite fits one transaction, as unmap_batched_locked() bounds them.
  const uint64_t chunk = emap_.remap_chunk_blocks();
  for (const Piece& pc : pieces_of(in, first, end)) {
    for (uint64_t done = 0; done < pc.length; done += chunk) {
      uint64_t n = std::min(chunk, pc.length - done);
      // Two extent records, a new record block (the inode stored again) and the refcounts.
      uint64_t worst = 2 * kExtentEntry + kInodeEntry +
                       owners_.refcounts().sync_bound(owners_.rmap(), pc.physical + done, n);
      TRY(make_room_locked(txn, in, worst));
      TRY(emap_.unmap_locked(txn, in, pc.logical + done, pc.logical + done + n, true));
    }
  }
  // 2. Every extent after the range moves left by its length, the first one first: the range
  // is a hole now, so each lands where nothing is (and may merge into its left neighbour).
  std::vector<uint64_t> starts;
  for (auto it = in.extents.lower_bound(end); it != in.extents.end(); ++it) starts.push_back(it->first);
  for (uint64_t s : starts) {
    TRY(make_room_locked(txn, in, 2 * kExtentEntry));
    emap_.move_extent_locked(txn, in, s, s - shift);
  }
  // 3. The new size, with the last extents moved: until then a crash leaves the old size.
  in.d.size -= length;
  if (kill_priv == KillPriv::kYes) strip_setid(in);
  touch(in, true, true);
  store_inode(txn, in);
  return space_.commit_locked(txn);
}

Status Filesystem::insert_range_locked(std::unique_lock<std::shared_mutex>& lock, Inode& in, uint64_t offset,
                                       uint64_t length, KillPriv kill_priv) {
  // xfs_falloc_insert_range(): whole blocks; the new size within the largest (EFBIG); the
  // offset inside the file (EINVAL at or past EOF: that is a truncate up).
  if (offset % kBlockSize || length % kBlockSize) return error(EINVAL);
  if (length > kMaxFileSize - in.d.size) return error(EFBIG);
  if (offset >= in.d.size) return error(EINVAL);
  const uint64_t first = offset / kBlockSize, shift = length / kBlockSize;
  // Blocks preallocated past EOF move too: none may end past the largest file (EINVAL, as
  // xfs_bmap_can_insert_extents() refuses a shift that overflows the last extent's offset).
  if (!in.extents.empty()) {
    auto last = std::prev(in.extents.end());
    uint64_t last_end = last->first + last->second.length;
    if (last_end > first && last_end > kEndBlock - shift) return error(EINVAL);
  }
  TRY(space_.reserve_locked(1));  // the split's record
  TRY(break_layout(lock, in.ino, first, kEndBlock, dax::LayoutChange::kShift));
  Txn txn;
  DirtyGuard guard(space_, txn);
  // 1. An extent boundary at the offset, and the new size: a crash from here on leaves the
  // moved extents inside EOF (a mount trims written blocks past it).
  TRY(emap_.split_at_locked(txn, in, first));
  in.d.size += length;
  // 2. Every extent from the offset on moves right by the length, the last one first, each
  // into space the ones before it left (or past them): extents never overlap.
  std::vector<uint64_t> starts;
  for (auto it = in.extents.lower_bound(first); it != in.extents.end(); ++it) starts.push_back(it->first);
  for (auto s = starts.rbegin(); s != starts.rend(); ++s) {
    TRY(make_room_locked(txn, in, kExtentEntry));
    emap_.move_extent_locked(txn, in, *s, *s + shift);
  }
  if (kill_priv == KillPriv::kYes) strip_setid(in);
  touch(in, true, true);
  store_inode(txn, in);
  return space_.commit_locked(txn);
}

}  // namespace daxfs::fs
