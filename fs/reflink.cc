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

Result<uint64_t> Filesystem::clone_range(uint64_t src_ino, uint64_t src_off, uint64_t dst_ino, uint64_t dst_off,
                                         uint64_t length, KillPriv kill_priv) {
  InodeLock held = TRY(lock_inodes(src_ino, dst_ino, LockMode::kLayout));
  std::unique_lock lock(mu_);
  TRY(check_writable());
  if (!(sb_->features & kFeatureReflink)) return error(EOPNOTSUPP);
  Inode* src = TRY(inodes_.find(src_ino));
  Inode* dst = TRY(inodes_.find(dst_ino));
  uint64_t blocks = 0;
  uint64_t count = TRY(cow_.remap_prep(*src, src_off, *dst, dst_off, length, false, &blocks));
  if (blocks == 0) return uint64_t{0};
  uint64_t sfirst = src_off / kBlockSize, dfirst = dst_off / kBlockSize;
  TRY(cow_.reserve_for_clone_locked(*src, sfirst, sfirst + blocks));
  TRY(break_layout(lock, dst_ino, dfirst, dfirst + blocks, dax::LayoutChange::kRemapInto));
  TRY(break_layout(lock, src_ino, sfirst, sfirst + blocks, dax::LayoutChange::kShare));
  Txn txn;
  DirtyGuard guard(space_, txn);
  if (dst_off > dst->d.size) TRY(zero_tail_locked(txn, *dst, dst->d.size));
  TRY(cow_.clone_blocks_locked(txn, *src, sfirst, *dst, dfirst, blocks));
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
  uint64_t count = TRY(cow_.remap_prep(*src, src_off, *dst, dst_off, length, true, &blocks));
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
  TRY(cow_.reserve_for_clone_locked(*src, src_off / kBlockSize, src_off / kBlockSize + blocks));
  TRY(break_layout(lock, dst_ino, dst_off / kBlockSize, dst_off / kBlockSize + blocks,
                   dax::LayoutChange::kRemapInto));
  TRY(break_layout(lock, src_ino, src_off / kBlockSize, src_off / kBlockSize + blocks, dax::LayoutChange::kShare));
  Txn txn;
  DirtyGuard guard(space_, txn);
  TRY(cow_.clone_blocks_locked(txn, *src, src_off / kBlockSize, *dst, dst_off / kBlockSize, blocks));
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
  TRY(cow_.unshare_blocks_locked(txn, *in, first, end, 0, 0));
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
