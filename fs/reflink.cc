// Reflink: clone, dedupe, copy_file_range, copy-on-write and unshare on top of the reverse map's
// reference counts, with XFS's semantics (fs/xfs/xfs_reflink.c, fs/remap_range.c).
//
//   A: ---AAAAAAAA-------      clone A[3,11) to B[0,8): B maps A's blocks, counts go 1 -> 2
//   B: AAAAAAAA---------       a write to B[2] then copies that block first (CoW): only B
//   B: AABAAAAA---------       sees the new data; A's block keeps count 1 again.
//
// Every step commits through the journal: a crash leaves each file with its old or new mapping
// and counts that match (the refcount records are rewritten in the same transaction as the
// extent records). Long ranges commit every quarter journal, each step a consistent state.
#include <cstring>

#include "fs/filesystem.h"

namespace daxfs::fs {


Status Filesystem::unshare_blocks_locked(Txn& txn, Inode& in, uint64_t first, uint64_t end,
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
    if ((pc.flags & kExtentUnwritten) || !dev_->poisoned(pc.physical * kBlockSize, pc.length * kBlockSize))
      continue;
    for (uint64_t b = 0; b < pc.length; b++) {
      uint64_t fb = (pc.logical + b) * kBlockSize;
      if (fb >= skip_from && fb + kBlockSize <= skip_to) continue;
      if (dev_->poisoned((pc.physical + b) * kBlockSize, kBlockSize)) return error(EIO);
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
          dev_->memcpy_nodrain(dev_->base() + (r.start + b) * kBlockSize, dev_->base() + (old + b) * kBlockSize,
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

Result<uint64_t> Filesystem::remap_prep_locked(Inode& src, uint64_t src_off, Inode& dst, uint64_t dst_off,
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

Status Filesystem::clone_blocks_locked(Txn& txn, Inode& src, uint64_t sfirst, Inode& dst, uint64_t dfirst,
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
          dev_->memcpy_nodrain(dev_->base() + r.start * kBlockSize,
                               dev_->base() + (pc.physical + done) * kBlockSize, r.length * kBlockSize);
        TRY(emap_.map_locked(txn, dst, at + done, r.start, r.length, pc.flags));
        counters_.refcount_overflow_copies += r.length;
        done += r.length;
      }
    }
    TRY(commit_if_large_locked(txn, dst));
  }
  return {};
}

Status Filesystem::reserve_for_clone_locked(const Inode& src, uint64_t first, uint64_t end) const {
  // Blocks at the count ceiling are copied, not shared: reserve them too, and refuse poison in
  // them before anything changes.
  uint64_t copies = 0;
  bool poisoned = false;
  for (const Piece& pc : pieces_of(src, first, end))
    owners_.rmap().for_each_count(pc.physical, pc.length, [&](uint64_t s, uint64_t l, uint32_t c) {
      if (c < kMaxRefcount) return;
      copies += l;
      if (!(pc.flags & kExtentUnwritten) && dev_->poisoned(s * kBlockSize, l * kBlockSize)) poisoned = true;
    });
  if (poisoned) return error(EIO);
  return space_.reserve_locked(copies + src.extents.size() / kExtentsPerBlock + 2 * src.extents.size() / kRefcountsPerBlock + 8);
}

Result<uint64_t> Filesystem::clone_range(uint64_t src_ino, uint64_t src_off, uint64_t dst_ino, uint64_t dst_off,
                                         uint64_t length, KillPriv kill_priv) {
  InodeLock held = TRY(lock_inodes(src_ino, dst_ino, LockMode::kLayout));
  std::unique_lock lock(mu_);
  TRY(check_writable());
  if (!(sb_->features & kFeatureReflink)) return error(EOPNOTSUPP);
  Inode* src = TRY(inodes_.find(src_ino));
  Inode* dst = TRY(inodes_.find(dst_ino));
  uint64_t blocks = 0;
  uint64_t count = TRY(remap_prep_locked(*src, src_off, *dst, dst_off, length, false, &blocks));
  if (blocks == 0) return uint64_t{0};
  uint64_t sfirst = src_off / kBlockSize, dfirst = dst_off / kBlockSize;
  TRY(reserve_for_clone_locked(*src, sfirst, sfirst + blocks));
  TRY(break_layout(lock, dst_ino, dfirst, dfirst + blocks, dax::LayoutChange::kRemapInto));
  TRY(break_layout(lock, src_ino, sfirst, sfirst + blocks, dax::LayoutChange::kShare));
  Txn txn;
  DirtyGuard guard(space_, txn);
  if (dst_off > dst->d.size) TRY(zero_tail_locked(txn, *dst, dst->d.size));
  TRY(clone_blocks_locked(txn, *src, sfirst, *dst, dfirst, blocks));
  if (dst_off + count > dst->d.size) dst->d.size = dst_off + count;
  if (kill_priv == KillPriv::kYes) strip_setid(*dst);
  touch(*dst, true, true);
  store_inode(txn, *dst);
  TRY(space_.commit_locked(txn));
  counters_.clones++;
  lock.unlock();
  if (layout_) layout_->remapped(dst_ino);  // outside the lock: it talks to the kernel
  return count;
}

Result<Filesystem::DedupeResult> Filesystem::dedupe_range(uint64_t src_ino, uint64_t src_off, uint64_t dst_ino,
                                                          uint64_t dst_off, uint64_t length) {
  InodeLock held = TRY(lock_inodes(src_ino, dst_ino, LockMode::kLayout));
  std::unique_lock lock(mu_);
  TRY(check_writable());
  if (!(sb_->features & kFeatureReflink)) return error(EOPNOTSUPP);
  Inode* src = TRY(inodes_.find(src_ino));
  Inode* dst = TRY(inodes_.find(dst_ino));
  uint64_t blocks = 0;
  uint64_t count = TRY(remap_prep_locked(*src, src_off, *dst, dst_off, length, true, &blocks));
  DedupeResult out{count, false};
  if (blocks == 0) return out;
  // Compare what the two ranges read (holes and unwritten as zeros), a chunk at a time.
  std::vector<char> a(1 << 20), b(1 << 20);
  for (uint64_t done = 0; done < count;) {
    size_t n = static_cast<size_t>(std::min<uint64_t>(a.size(), count - done));
    TRY(read_range_locked(*src, src_off + done, n, a.data()));
    TRY(read_range_locked(*dst, dst_off + done, n, b.data()));
    if (memcmp(a.data(), b.data(), n) != 0) {
      out.differs = true;
      return out;
    }
    done += n;
  }
  TRY(reserve_for_clone_locked(*src, src_off / kBlockSize, src_off / kBlockSize + blocks));
  TRY(break_layout(lock, dst_ino, dst_off / kBlockSize, dst_off / kBlockSize + blocks,
                   dax::LayoutChange::kRemapInto));
  TRY(break_layout(lock, src_ino, src_off / kBlockSize, src_off / kBlockSize + blocks, dax::LayoutChange::kShare));
  Txn txn;
  DirtyGuard guard(space_, txn);
  TRY(clone_blocks_locked(txn, *src, src_off / kBlockSize, *dst, dst_off / kBlockSize, blocks));
  store_inode(txn, *dst);  // contents are unchanged: no mtime update (as XFS)
  TRY(space_.commit_locked(txn));
  counters_.dedupes++;
  lock.unlock();
  if (layout_) layout_->remapped(dst_ino);  // outside the lock: it talks to the kernel
  return out;
}

Status Filesystem::unshare_range(uint64_t ino, uint64_t offset, uint64_t length) {
  InodeLock held = TRY(lock_inodes(ino, 0, LockMode::kLayout));
  std::unique_lock lock(mu_);
  TRY(check_writable());
  Inode* in = TRY(inodes_.find(ino));
  if (in->is_dir()) return error(EISDIR);
  if (!in->is_reg()) return error(EINVAL);
  if (length == 0) return error(EINVAL);
  if (offset > kMaxFileSize || length > kMaxFileSize - offset) return error(EFBIG);
  uint64_t first = offset / kBlockSize, end = (offset + length + kBlockSize - 1) / kBlockSize;
  uint64_t need = owners_.shared_blocks_locked(*in, first, end);
  if (need == 0) return {};
  TRY(space_.reserve_locked(need + need / kExtentsPerBlock + 4));
  TRY(break_layout(lock, ino, first, end, dax::LayoutChange::kCow));
  Txn txn;
  DirtyGuard guard(space_, txn);
  TRY(unshare_blocks_locked(txn, *in, first, end, 0, 0));
  store_inode(txn, *in);
  return space_.commit_locked(txn);
}

Result<uint64_t> Filesystem::copy_range(uint64_t src_ino, uint64_t src_off, uint64_t dst_ino, uint64_t dst_off,
                                        uint64_t length) {
  // copy_file_range(): the result is a copy; block-aligned middles are shared rather than copied.
  uint64_t n;
  {
    std::shared_lock lock(mu_);
    TRY(check_alive());
    Inode* src = TRY(inodes_.find(src_ino));
    Inode* dst = TRY(inodes_.find(dst_ino));
    if (src->is_dir() || dst->is_dir()) return error(EISDIR);
    if (!src->is_reg() || !dst->is_reg()) return error(EINVAL);
    if (src_off >= src->d.size) return uint64_t{0};
    n = std::min(length, src->d.size - src_off);
    if (dst_off >= kMaxFileSize) return error(EFBIG);
    n = std::min(n, kMaxFileSize - dst_off);
    if (src_ino == dst_ino && dst_off < src_off + n && src_off < dst_off + n) return error(EINVAL);
  }
  uint64_t done = 0;
  auto copy_bytes = [&](uint64_t len) -> Status {
    std::vector<char> buf(static_cast<size_t>(std::min<uint64_t>(len, 1 << 20)));
    for (uint64_t left = len; left > 0;) {
      size_t chunk = static_cast<size_t>(std::min<uint64_t>(left, buf.size()));
      size_t got = TRY(read(src_ino, src_off + done, chunk, buf.data()));
      if (got == 0) break;
      size_t put = TRY(write(dst_ino, dst_off + done, buf.data(), got));
      done += put;
      left -= put;
    }
    return {};
  };
  bool sharable = (src_off % kBlockSize) == (dst_off % kBlockSize) && (sb_->features & kFeatureReflink);
  if (!sharable) {
    TRY(copy_bytes(n));
    return done;
  }
  uint64_t head = std::min(n, (kBlockSize - src_off % kBlockSize) % kBlockSize);
  TRY(copy_bytes(head));
  uint64_t middle = (n - head) / kBlockSize * kBlockSize;
  if (middle > 0) {
    uint64_t got = TRY(clone_range(src_ino, src_off + done, dst_ino, dst_off + done, middle));
    done += got;
  }
  TRY(copy_bytes(n - done));
  return done;
}

}  // namespace daxfs::fs
