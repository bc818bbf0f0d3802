// Per-file extent maps: the in-memory map and its records on media (fs/extent_map.h). Every
// change here is written into the caller's transaction; freed data blocks are released after it
// commits.
#include "fs/extent_map.h"

#include <algorithm>
#include <cstring>

#include "fs/inode_table.h"
#include "fs/ondisk/codec.h"

namespace daxfs::fs {

Result<uint64_t> ExtentMap::new_record_block_locked(Txn& txn, Inode& in, uint64_t magic) {
  // Zeroed (every record free) and persisted before the transaction links it at the chain's head.
  BlockRange r = TRY(space_.alloc_locked(1, in.record_blocks.empty() ? 0 : in.record_blocks.back()));
  char block[kBlockSize] = {};
  RecordBlockHeader h{magic, in.ino, in.d.head, 0};
  memcpy(block, &h, sizeof h);
  dev_.memcpy_persist(r.start * kBlockSize, block, sizeof block);
  in.d.head = r.start;
  store_inode(txn, in);
  in.record_blocks.push_back(r.start);
  return r.start;
}

Result<RecordLoc> ExtentMap::alloc_record_locked(Txn& txn, Inode& in) {
  if (in.free_records.empty()) {
    uint64_t b = TRY(new_record_block_locked(txn, in, kExtentMagic));
    for (uint32_t s = kExtentsPerBlock; s-- > 0;) in.free_records.push_back({b, s});
  }
  RecordLoc loc = in.free_records.back();
  in.free_records.pop_back();
  return loc;
}

void ExtentMap::write_extent_locked(Txn& txn, Inode& in, uint64_t logical, const Extent& e) {
  (void)in;
  DiskExtent rec{logical, e.physical, static_cast<uint32_t>(e.length), e.flags};
  txn.write_obj(e.loc.block * kBlockSize + sizeof(RecordBlockHeader) + e.loc.slot * sizeof(DiskExtent), rec);
}

void ExtentMap::clear_record_locked(Txn& txn, Inode& in, RecordLoc loc) {
  DiskExtent zero{};
  txn.write_obj(loc.block * kBlockSize + sizeof(RecordBlockHeader) + loc.slot * sizeof(DiskExtent), zero);
  in.free_records.push_back(loc);
}

Status ExtentMap::map_locked(Txn& txn, Inode& in, uint64_t logical, uint64_t physical, uint64_t length,
                              uint32_t flags) {
  // Mapping blocks somebody else maps already (a clone) changes their reference counts.
  bool was_mapped = owners_.rmap().mapped(physical, length);
  uint64_t p0 = physical, l0 = length;
  while (length > 0) {
    uint64_t n = std::min(length, kMaxExtentLength);
    // Merge into the left neighbour when it continues it logically and physically.
    auto next = in.extents.lower_bound(logical);
    if (next != in.extents.begin()) {
      auto prev = std::prev(next);
      Extent& p = prev->second;
      if (prev->first + p.length == logical && p.physical + p.length == physical && p.flags == flags &&
          p.length + n <= kMaxExtentLength) {
        p.length += n;
        write_extent_locked(txn, in, prev->first, p);
        owners_.rmap().add(physical, n, in.ino, logical, flags);
        in.data_blocks += n;
        logical += n, physical += n, length -= n;
        continue;
      }
    }
    RecordLoc loc = TRY(alloc_record_locked(txn, in));
    Extent e{physical, n, flags, loc};
    in.extents[logical] = e;
    write_extent_locked(txn, in, logical, e);
    owners_.rmap().add(physical, n, in.ino, logical, flags);
    in.data_blocks += n;
    logical += n, physical += n, length -= n;
  }
  if (was_mapped) TRY(owners_.sync_refcounts_locked(txn, p0, l0));
  return {};
}

Status ExtentMap::split_at_locked(Txn& txn, Inode& in, uint64_t at) {
  auto it = in.extents.upper_bound(at);
  if (it == in.extents.begin()) return {};
  --it;
  uint64_t start = it->first;
  if (start == at || start + it->second.length <= at) return {};
  // The right half's record first: the only step that can fail (a new record block).
  RecordLoc loc = TRY(alloc_record_locked(txn, in));
  Extent& left = it->second;  // map nodes stay put while the record is allocated
  Extent right{left.physical + (at - start), start + left.length - at, left.flags, loc};
  left.length = at - start;
  write_extent_locked(txn, in, start, left);
  in.extents.emplace_hint(std::next(it), at, right);
  write_extent_locked(txn, in, at, right);
  // The rmap needs nothing: each block keeps its owner (ino, file block).
  return {};
}

void ExtentMap::move_extent_locked(Txn& txn, Inode& in, uint64_t from, uint64_t to) {
  auto it = in.extents.find(from);
  Extent e = it->second;
  in.extents.erase(it);
  owners_.rmap().move(e.physical, e.length, in.ino, from, to);
  auto next = in.extents.lower_bound(to);
  if (to < from && next != in.extents.begin()) {
    auto prev = std::prev(next);
    Extent& p = prev->second;
    if (prev->first + p.length == to && p.physical + p.length == e.physical && p.flags == e.flags &&
        p.length + e.length <= kMaxExtentLength) {
      p.length += e.length;
      write_extent_locked(txn, in, prev->first, p);
      clear_record_locked(txn, in, e.loc);
      return;
    }
  }
  in.extents.emplace_hint(next, to, e);
  write_extent_locked(txn, in, to, e);
}

ExtentMap::Holes ExtentMap::holes_in(const Inode& in, uint64_t first, uint64_t end) {
  Holes h;
  uint64_t pos = first;  // end of what has been accounted for
  auto it = in.extents.upper_bound(first);
  if (it != in.extents.begin()) --it;
  for (; it != in.extents.end() && it->first < end; ++it) {
    uint64_t s = std::max(first, it->first), e = std::min(end, it->first + it->second.length);
    if (s >= e) continue;
    if (s > pos) h.blocks += s - pos, h.runs++;
    pos = e;
  }
  if (end > pos) h.blocks += end - pos, h.runs++;
  return h;
}

uint64_t ExtentMap::unmapped_blocks(const Inode& in, uint64_t first, uint64_t end) {
  return holes_in(in, first, end).blocks;
}

bool ExtentMap::fully_written(const Inode& in, uint64_t first, uint64_t end) {
  uint64_t pos = first;
  auto it = in.extents.upper_bound(first);
  if (it != in.extents.begin()) --it;
  for (; it != in.extents.end() && it->first < end && pos < end; ++it) {
    if (it->first + it->second.length <= pos) continue;
    if (it->first > pos || it->second.unwritten()) return false;
    pos = it->first + it->second.length;
  }
  return pos >= end;
}

Status ExtentMap::unmap_locked(Txn& txn, Inode& in, uint64_t first, uint64_t end, bool free_blocks) {
  if (first >= end) return {};
  auto it = in.extents.upper_bound(first);
  if (it != in.extents.begin()) --it;
  while (it != in.extents.end() && it->first < end) {
    uint64_t lstart = it->first;
    Extent e = it->second;
    uint64_t lend = lstart + e.length;
    if (lend <= first) {
      ++it;
      continue;
    }
    uint64_t cut_start = std::max(first, lstart), cut_end = std::min(end, lend);
    uint64_t cut_phys = e.physical + (cut_start - lstart), cut_len = cut_end - cut_start;
    owners_.rmap().remove(cut_phys, cut_len, in.ino, cut_start);
    // A block another file still maps only loses a reference; one nobody maps is freed.
    bool was_shared = false;
    owners_.rmap().for_each_count(cut_phys, cut_len, [&](uint64_t s, uint64_t l, uint32_t c) {
      if (c == 0 && free_blocks) txn.free_after_commit(s, l);
      was_shared |= c >= 1;
    });
    if (was_shared || !owners_.refcounts().records().empty()) TRY(owners_.sync_refcounts_locked(txn, cut_phys, cut_len));
    in.data_blocks -= cut_len;
    it = in.extents.erase(it);
    bool keep_left = lstart < cut_start, keep_right = cut_end < lend;
    if (keep_left) {
      Extent left = e;
      left.length = cut_start - lstart;
      in.extents[lstart] = left;
      write_extent_locked(txn, in, lstart, left);
    }
    if (keep_right) {
      Extent right = e;
      right.physical = e.physical + (cut_end - lstart);
      right.length = lend - cut_end;
      if (keep_left) right.loc = TRY(alloc_record_locked(txn, in));
      in.extents[cut_end] = right;
      write_extent_locked(txn, in, cut_end, right);
      it = in.extents.upper_bound(cut_end);
    }
    if (!keep_left && !keep_right) clear_record_locked(txn, in, e.loc);
  }
  return {};
}

uint64_t ExtentMap::remap_chunk_blocks() const {
  // Unmapping or mapping n blocks of shared data can rewrite up to n refcount records (counts
  // alternating block by block): bound the blocks one transaction touches by the journal's size.
  return std::max<uint64_t>(1, space_.journal_capacity() / 256);
}

Status ExtentMap::unmap_batched_locked(Txn& txn, Inode& in, uint64_t first, uint64_t end) {
  constexpr size_t kBatch = 4096;  // extents per transaction: far inside the journal
  const uint64_t chunk = remap_chunk_blocks();
  while (first < end) {
    auto it = in.extents.lower_bound(end);
    size_t n = 0;
    uint64_t start = end, blocks = 0;
    bool more = false;
    while (it != in.extents.begin()) {
      --it;
      uint64_t e_end = std::min(end, it->first + it->second.length);
      if (e_end <= first) break;
      uint64_t e_start = std::max(first, it->first);
      if (n == kBatch || blocks + (e_end - e_start) > chunk) {
        if (n == 0) start = std::max(e_start, e_end - chunk), n = 1;  // part of one big extent
        more = true;
        break;
      }
      start = e_start;
      blocks += e_end - e_start;
      n++;
    }
    if (n == 0) return {};
    TRY(unmap_locked(txn, in, start, end, true));
    if (!more) return {};
    store_inode(txn, in);
    TRY(space_.commit_locked(txn));
    end = start;
  }
  return {};
}

uint64_t ExtentMap::blocks_to_map(const Inode& in, uint64_t first, uint64_t end) const {
  // Data blocks for the holes, plus record blocks for the extents they can become. Each
  // allocation fills the rest of a hole run or uses up a free fragment; a goal inside a free
  // fragment splits it (at most once per run); record blocks taken on the way can each end
  // one more piece (hence kExtentsPerBlock - 1); extents are at most 2^32 - 1 blocks long.
  // Plus one for a split at each end. Assuming one extent per block instead would hold back
  // 1/170 of the device: a large fallocate would fail with ENOSPC while statfs shows the space.
  Holes h = holes_in(in, first, end);
  uint64_t extents = std::min(h.blocks, 2 * h.runs + alloc_.fragments() + h.blocks / UINT32_MAX + 1);
  return h.blocks + (extents + kExtentsPerBlock - 2) / (kExtentsPerBlock - 1) + 2;
}

const Extent* ExtentMap::extent_at(const Inode& in, uint64_t block, uint64_t* start) {
  auto it = in.extents.upper_bound(block);
  if (it == in.extents.begin()) return nullptr;
  --it;
  if (it->first + it->second.length <= block) return nullptr;
  *start = it->first;
  return &it->second;
}

}  // namespace daxfs::fs
