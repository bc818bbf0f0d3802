// Copy-on-write and block sharing (fs/cow.h), the block-level half of reflink (fs/reflink.cc).
#include "fs/cow.h"

#include <algorithm>
#include <vector>

#include "fs/inode_table.h"

namespace daxfs::fs {

Status Cow::commit_if_large_locked(Txn& txn, Inode& in) {
  if (!space_.large(txn)) return {};
  store_inode(txn, in);
  return space_.commit_locked(txn);
}

Status Cow::unshare_blocks_locked(Txn& txn, Inode& in, uint64_t first, uint64_t end,
                                  uint64_t skip_from, uint64_t skip_to) {
  // The shared parts of the range's pieces.
  std::vector<Piece> pieces;
  for (const Piece& pc : pieces_of(in, first, end))
    owners_.rmap().for_each_count(pc.physical, pc.length, [&](uint64_t ps, uint64_t l, uint32_t c) {
      if (c >= 2) pieces.push_back({pc.logical + (ps - pc.physical), ps, l, pc.flags});
    });
  // Poison in a block to be copied fails the operation before anything changes (a block the
  // caller overwrites whole is not copied, so its poison does not matter: a recovery write).
  for (const Piece& pc : pieces) {
    if ((pc.flags & kExtentUnwritten) || !dev_.poisoned(pc.physical * kBlockSize, pc.length * kBlockSize))
      continue;
    for (uint64_t b = 0; b < pc.length; b++) {
      uint64_t fb = (pc.logical + b) * kBlockSize;
      if (fb >= skip_from && fb + kBlockSize <= skip_to) continue;
      if (dev_.poisoned((pc.physical + b) * kBlockSize, kBlockSize)) return error(EIO);
    }
  }
  // Skipped blocks hold no data until the caller writes them: no intermediate commit may make
  // them reachable before that (callers that skip touch at most a write's 1 MiB).
  const bool skipping = skip_from < skip_to;
  for (const Piece& pc : pieces) {
    for (uint64_t done = 0; done < pc.length;) {
      BlockRange r = TRY(space_.alloc_locked(std::min(pc.length - done, emap_.remap_chunk_blocks()), 0));
      uint64_t logical = pc.logical + done, old = pc.physical + done;
      if (!(pc.flags & kExtentUnwritten)) {
        // Copy the old data, except whole blocks the caller is about to overwrite anyway. The
        // copy is flushed; the commit below drains it before the new mapping is visible.
        for (uint64_t b = 0; b < r.length; b++) {
          uint64_t fb = (logical + b) * kBlockSize;
          if (fb >= skip_from && fb + kBlockSize <= skip_to) continue;
          dev_.memcpy_nodrain((r.start + b) * kBlockSize, dev_.base() + (old + b) * kBlockSize,
                               kBlockSize);
        }
      }
      TRY(emap_.unmap_locked(txn, in, logical, logical + r.length, true));
      TRY(emap_.map_locked(txn, in, logical, r.start, r.length, pc.flags));
      counters_.cow_blocks += r.length;
      done += r.length;
      if (!skipping) TRY(commit_if_large_locked(txn, in));
    }
  }
  return {};
}

Result<uint64_t> Cow::remap_prep(const Inode& src, uint64_t src_off, const Inode& dst, uint64_t dst_off,
                                 uint64_t length, bool dedupe, uint64_t* blocks) {
  // generic_remap_file_range_prep(), generic_remap_checks() and generic_remap_check_len() of
  // fs/remap_range.c: clone may not shorten a request (FICLONERANGE), dedupe may
  // (REMAP_FILE_DEDUP | REMAP_FILE_CAN_SHORTEN).
  const bool can_shorten = dedupe;
  *blocks = 0;
  if (src.is_dir() || dst.is_dir()) return error(EISDIR);
  if (!src.is_reg() || !dst.is_reg()) return error(EINVAL);
  uint64_t size_in = src.d.size, size_out = dst.d.size;
  if (length == 0) {  // zero-length dedupe does nothing; clone goes to the source's EOF
    if (dedupe || src_off == size_in) return uint64_t{0};
    if (src_off > size_in) return error(EINVAL);
    length = size_in - src_off;
  }
  if (src_off % kBlockSize || dst_off % kBlockSize) return error(EINVAL);
  if (src_off > UINT64_MAX - length || dst_off > UINT64_MAX - length) return error(EINVAL);
  if (dedupe && (src_off >= size_in || src_off + length > size_in || dst_off >= size_out ||
                 dst_off + length > size_out))
    return error(EINVAL);
  if (src_off >= size_in) return error(EINVAL);
  uint64_t count = std::min(length, size_in - src_off);
  if (dst_off >= kMaxFileSize) return error(EFBIG);  // generic_write_check_limits()
  count = std::min(count, kMaxFileSize - dst_off);
  uint64_t bcount;
  if (src_off + count == size_in && (!dedupe || dst_off + count == size_out)) {
    bcount = (size_in + kBlockSize - 1) / kBlockSize * kBlockSize - src_off;  // up to src's EOF block
  } else {
    if (count % kBlockSize) {
      if (!can_shorten) return error(EINVAL);
      count = count / kBlockSize * kBlockSize;
    }
    bcount = count;
  }
  if (&src == &dst && dst_off + bcount > src_off && dst_off < src_off + bcount) return error(EINVAL);
  if (count != length && !can_shorten) return error(EINVAL);
  // A partial EOF block may only land at or past the destination's EOF, never inside it.
  if (count % kBlockSize && dst_off + count < size_out) {
    if (!can_shorten) return error(EINVAL);
    count = count / kBlockSize * kBlockSize;
  }
  *blocks = (count + kBlockSize - 1) / kBlockSize;
  return count;
}

Status Cow::clone_blocks_locked(Txn& txn, Inode& src, uint64_t sfirst, Inode& dst, uint64_t dfirst,
                                uint64_t n) {
  // The destination's old blocks go first (released or dereferenced), then every source piece is
  // mapped again: holes stay holes, unwritten stays unwritten.
  TRY(emap_.unmap_batched_locked(txn, dst, dfirst, dfirst + n));
  // Pieces no longer than a chunk: each step's refcount rewrite must fit the journal.
  std::vector<Piece> pieces;
  for (const Piece& pc : pieces_of(src, sfirst, sfirst + n))
    for (uint64_t off = 0; off < pc.length; off += emap_.remap_chunk_blocks())
      pieces.push_back({pc.logical + off, pc.physical + off, std::min(emap_.remap_chunk_blocks(), pc.length - off), pc.flags});
  for (const Piece& pc : pieces) {
    uint64_t at = dfirst + (pc.logical - sfirst);
    // At the maximum count a block is copied instead of shared (XFS does the same at MAXREFCOUNT).
    uint32_t top = 0;
    owners_.rmap().for_each_count(pc.physical, pc.length, [&](uint64_t, uint64_t, uint32_t c) { top = std::max(top, c); });
    if (top < kMaxRefcount) {
      TRY(emap_.map_locked(txn, dst, at, pc.physical, pc.length, pc.flags));
    } else {
      for (uint64_t done = 0; done < pc.length;) {
        BlockRange r = TRY(space_.alloc_locked(pc.length - done, 0));
        if (!(pc.flags & kExtentUnwritten))
          dev_.memcpy_nodrain(r.start * kBlockSize,
                               dev_.base() + (pc.physical + done) * kBlockSize, r.length * kBlockSize);
        TRY(emap_.map_locked(txn, dst, at + done, r.start, r.length, pc.flags));
        counters_.refcount_overflow_copies += r.length;
        done += r.length;
      }
    }
    TRY(commit_if_large_locked(txn, dst));
  }
  return {};
}

Status Cow::reserve_for_clone_locked(const Inode& src, uint64_t first, uint64_t end) const {
  // Blocks at the count ceiling are copied, not shared: reserve them too, and refuse poison in
  // them before anything changes.
  uint64_t copies = 0;
  bool poisoned = false;
  for (const Piece& pc : pieces_of(src, first, end))
    owners_.rmap().for_each_count(pc.physical, pc.length, [&](uint64_t s, uint64_t l, uint32_t c) {
      if (c < kMaxRefcount) return;
      copies += l;
      if (!(pc.flags & kExtentUnwritten) && dev_.poisoned(s * kBlockSize, l * kBlockSize)) poisoned = true;
    });
  if (poisoned) return error(EIO);
  return space_.reserve_locked(copies + src.extents.size() / kExtentsPerBlock + 2 * src.extents.size() / kRefcountsPerBlock + 8);
}

}  // namespace daxfs::fs
