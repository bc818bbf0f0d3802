// File data: read, write, truncate, fallocate and SEEK_DATA/SEEK_HOLE over the extent map.
// Ordering: data stores into newly mapped blocks are flushed (nodrain) before the transaction
// that maps them; Journal::commit() drains before its commit record, so a crash never exposes a
// mapped block whose data is not durable. Overwrites of written blocks are in place, as with DAX
// on XFS: durable at the reply, not atomic against a crash in the middle of the write.
#include <fcntl.h>
#include <linux/falloc.h>
#include <unistd.h>

#include <cstring>

#include "fs/filesystem.h"

namespace daxfs::fs {

namespace {
constexpr size_t kTruncateBatch = 4096;  // extents dropped per transaction
constexpr uint64_t kEndBlock = kMaxFileBlocks;
}  // namespace

Status Filesystem::zero_in_place_locked(Txn& txn, Inode& in, uint64_t from, uint64_t to) {
  if (from >= to) return {};
  // A shared block is copied first: the other sharers never see the zeros.
  TRY(cow_.unshare_blocks_locked(txn, in, from / kBlockSize, (to + kBlockSize - 1) / kBlockSize, from, to));
  // Holes and unwritten blocks already read as zeros; written bytes are zeroed and persisted.
  for (uint64_t b = from / kBlockSize; b * kBlockSize < to; b++) {
    uint64_t s = std::max(from, b * kBlockSize), e = std::min(to, (b + 1) * kBlockSize);
    uint64_t estart;
    const Extent* x = emap_.extent_at(in, b, &estart);
    if (!x || x->unwritten()) continue;
    dev_->memset_persist((x->physical + b - estart) * kBlockSize + s % kBlockSize, 0, e - s);
  }
  return {};
}

void Filesystem::copy_in(uint64_t physical, uint64_t first, uint64_t end, uint64_t data_offset,
                         const char* data, size_t size, bool zero_rest) {
  const uint64_t dst = physical * kBlockSize;
  uint64_t bstart = first * kBlockSize, bend = end * kBlockSize;
  uint64_t ds = std::max(bstart, data_offset), de = std::min(bend, data_offset + size);
  if (zero_rest) {
    if (ds > bstart) dev_->memset_nodrain(dst, 0, ds - bstart);
    if (bend > de) dev_->memset_nodrain(dst + (de - bstart), 0, bend - de);
  }
  if (de > ds) dev_->memcpy_nodrain(dst + (ds - bstart), data + (ds - data_offset), de - ds);
}

std::vector<dax::Iomap> Filesystem::read_plan_locked(const Inode& in, uint64_t offset, size_t n) const {
  std::vector<dax::Iomap> plan;
  for (uint64_t pos = offset, end = offset + n; pos < end;) {
    dax::Iomap m = mapping_at_locked(in, pos / kBlockSize, (end + kBlockSize - 1) / kBlockSize, dax::kIomapRead);
    plan.push_back(m);
    pos = std::min(end, m.end());
  }
  return plan;
}

Result<size_t> Filesystem::copy_out(const std::vector<dax::Iomap>& plan, uint64_t offset, size_t n, char* out) const {
  for (const dax::Iomap& m : plan) {
    uint64_t pos = std::max(offset, m.offset), run_end = std::min(offset + n, m.end());
    if (m.type == dax::IomapType::kMapped) {
      uint64_t dev_off = m.address + (pos - m.offset);
      if ((m.flags & dax::kIomapPoisoned) && dev_->poisoned(dev_off, run_end - pos)) {
        // Up to the first poisoned block (pmem's direct access stops there).
        uint64_t good = pos;
        for (uint64_t b = pos; b < run_end; b = (b / kBlockSize + 1) * kBlockSize) {
          uint64_t b_end = std::min(run_end, (b / kBlockSize + 1) * kBlockSize);
          if (dev_->poisoned(m.address + (b - m.offset), b_end - b)) break;
          good = b_end;
        }
        memcpy(out + (pos - offset), dev_->base() + dev_off, good - pos);
        if (good == offset) return error(EIO);
        return static_cast<size_t>(good - offset);
      }
      memcpy(out + (pos - offset), dev_->base() + dev_off, run_end - pos);
    } else {
      memset(out + (pos - offset), 0, run_end - pos);  // holes and unwritten extents read as zeros
    }
  }
  return n;
}

Status Filesystem::read_range_locked(const Inode& in, uint64_t offset, size_t n, char* out) const {
  size_t got = TRY(copy_out(read_plan_locked(in, offset, n), offset, n, out));
  if (got != n) return error(EIO);
  return {};
}

Result<size_t> Filesystem::read(uint64_t ino, uint64_t offset, size_t size, char* out, bool short_at_poison) {
  // The file's iolock and mmaplock shared: no write, layout change or copy-on-write fault of
  // this file can free or replace the blocks found under mu_, so the copy runs without it.
  std::vector<dax::Iomap> plan;
  size_t n;
  std::optional<InodeLock> held;
  {
    std::shared_lock lock(mu_);
    TRY(check_alive());
    held.emplace(TRY(lock_inode_with(lock, ino, LockMode::kRead)));
    Inode* in = TRY(inodes_.find(ino));
    if (in->is_dir()) return error(EISDIR);
    if (!in->is_reg()) return error(EINVAL);
    if (offset >= in->d.size || size == 0) return size_t{0};
    n = static_cast<size_t>(std::min<uint64_t>(size, in->d.size - offset));
    plan = read_plan_locked(*in, offset, n);
  }
  size_t got = TRY(copy_out(plan, offset, n, out));
  if (got != n && !short_at_poison) return error(EIO);
  n = got;
  counters_.reads++;
  counters_.bytes_read += n;
  return n;
}

Status Filesystem::zero_tail_locked(Txn& txn, Inode& in, uint64_t from) {
  if (from % kBlockSize == 0) return {};
  return zero_in_place_locked(txn, in, from, (from / kBlockSize + 1) * kBlockSize);
}

Status Filesystem::check_recovery_write_locked(const Inode& in, uint64_t offset, size_t size) const {
  // Only a block-aligned store of whole blocks can clear poison (pmem_recovery_write refuses a
  // partial page): a write that covers a poisoned written block in part fails with EIO before
  // anything changes. Holes and unwritten blocks are written whole (zero-filled), so they pass.
  for (uint64_t byte : {offset, offset + size}) {
    if (byte % kBlockSize == 0) continue;
    uint64_t block = byte == offset ? offset / kBlockSize : (offset + size - 1) / kBlockSize, estart;
    const Extent* e = emap_.extent_at(in, block, &estart);
    if (e && !e->unwritten() && dev_->poisoned((e->physical + block - estart) * kBlockSize, kBlockSize))
      return error(EIO);
  }
  return {};
}

Status Filesystem::truncate_locked(Inode& in, uint64_t size, Txn& txn) {
  uint64_t old = in.d.size;
  if (size > old) {
    TRY(zero_tail_locked(txn, in, old));  // bytes past the old EOF must read as zeros
  } else if (size < old) {
    // The caller broke the layout from size / kBlockSize (it holds the inode's kLayout locks).
    TRY(zero_tail_locked(txn, in, size));
    uint64_t first = (size + kBlockSize - 1) / kBlockSize;
    auto from = in.extents.lower_bound(first);
    if (static_cast<size_t>(std::distance(from, in.extents.end())) > 4096) {
      // Commit the new size first; blocks past EOF are then dropped in bounded transactions
      // (a crash in between leaves post-EOF blocks, trimmed at the next mount).
      in.d.size = size;
      store_inode(txn, in);
      TRY(space_.commit_locked(txn));
    }
    TRY(emap_.unmap_batched_locked(txn, in, first, kEndBlock));
  }
  in.d.size = size;
  return {};
}

Status Filesystem::allocate_range_locked(Txn& txn, Inode& in, uint64_t first, uint64_t end, uint32_t flags,
                                         uint64_t* new_blocks) {
  uint64_t pos = first;
  while (pos < end) {
    auto it = in.extents.upper_bound(pos);
    if (it != in.extents.begin()) {
      auto prev = std::prev(it);
      if (prev->first + prev->second.length > pos) {
        pos = prev->first + prev->second.length;
        continue;
      }
    }
    uint64_t hole_end = it == in.extents.end() ? end : std::min(end, it->first);
    uint64_t goal = 0;
    while (pos < hole_end) {
      BlockRange r = TRY(space_.alloc_locked(hole_end - pos, goal));
      TRY(emap_.map_locked(txn, in, pos, r.start, r.length, flags));
      *new_blocks += r.length;
      pos += r.length;
      goal = r.end();
      TRY(commit_if_large_locked(txn, in));
    }
  }
  return {};
}

Status Filesystem::fallocate(uint64_t ino, int mode, uint64_t offset, uint64_t length, KillPriv kill_priv) {
  // vfs_fallocate()'s checks of the arguments, in its order: a negative (as loff_t) offset or a
  // length of 0 (EINVAL), then the mode: one of the exclusive modes, with KEEP_SIZE where it is
  // allowed (EOPNOTSUPP). UNSHARE_RANGE is not offered here (unshare_range() is).
  if (offset > kMaxFileSize || length == 0 || length > kMaxFileSize) return error(EINVAL);
  constexpr int kModeMask = FALLOC_FL_PUNCH_HOLE | FALLOC_FL_COLLAPSE_RANGE | FALLOC_FL_ZERO_RANGE |
                            FALLOC_FL_INSERT_RANGE | FALLOC_FL_UNSHARE_RANGE;
  if (mode & ~(kModeMask | FALLOC_FL_KEEP_SIZE)) return error(EOPNOTSUPP);
  const int kind = mode & kModeMask;
  const bool keep_size = mode & FALLOC_FL_KEEP_SIZE;
  switch (kind) {
    case 0:
    case FALLOC_FL_ZERO_RANGE: break;
    case FALLOC_FL_PUNCH_HOLE:
      if (!keep_size) return error(EOPNOTSUPP);
      break;
    case FALLOC_FL_COLLAPSE_RANGE:
    case FALLOC_FL_INSERT_RANGE:
      if (keep_size) return error(EOPNOTSUPP);
      break;
    default: return error(EOPNOTSUPP);  // UNSHARE_RANGE, or two modes at once
  }
  InodeLock held = TRY(lock_inodes(ino, 0, LockMode::kLayout));
  std::unique_lock lock(mu_);
  TRY(check_writable());
  Inode* in = TRY(inodes_.find(ino));
  if (in->is_dir()) return error(EISDIR);
  if (!in->is_reg()) return error(ENODEV);
  if (length > kMaxFileSize - offset) return error(EFBIG);
  if (kind == FALLOC_FL_COLLAPSE_RANGE || kind == FALLOC_FL_INSERT_RANGE) {
    TRY(kind == FALLOC_FL_COLLAPSE_RANGE ? collapse_range_locked(lock, *in, offset, length, kill_priv)
                                         : insert_range_locked(lock, *in, offset, length, kill_priv));
    lock.unlock();
    if (layout_) layout_->remapped(ino);  // data moved under cached pages; outside the lock
    return {};
  }
  uint64_t end_byte = offset + length;
  Txn txn;
  DirtyGuard guard(space_, txn);
  if (mode & FALLOC_FL_PUNCH_HOLE) {
    TRY(break_layout(lock, ino, offset / kBlockSize, (end_byte + kBlockSize - 1) / kBlockSize,
                     dax::LayoutChange::kPunch));
    // As XFS, the range is not clipped to EOF: post-EOF (preallocated) blocks are punched too.
    uint64_t first = (offset + kBlockSize - 1) / kBlockSize, end = end_byte / kBlockSize;
    // Partial blocks at either end are zeroed in place; whole blocks are unmapped and freed.
    if (first > end) {
      TRY(zero_in_place_locked(txn, *in, offset, end_byte));  // inside one block
    } else {
      TRY(zero_in_place_locked(txn, *in, offset, first * kBlockSize));
      TRY(zero_in_place_locked(txn, *in, end * kBlockSize, end_byte));
      TRY(emap_.unmap_batched_locked(txn, *in, first, end));
    }
    if (kill_priv == KillPriv::kYes) strip_setid(*in);
    touch(*in, true, true);
    store_inode(txn, *in);
    return space_.commit_locked(txn);
  }
  uint64_t first = offset / kBlockSize, end = (end_byte + kBlockSize - 1) / kBlockSize;
  uint64_t need = emap_.blocks_to_map(*in, first, end);
  if (mode & FALLOC_FL_ZERO_RANGE) need += 2 * in->extents.size() / kExtentsPerBlock + 2;  // conversions
  TRY(space_.reserve_locked(need));
  uint64_t added = 0;
  if (mode & FALLOC_FL_ZERO_RANGE) {
    TRY(break_layout(lock, ino, first, end, dax::LayoutChange::kZero));
    // Whole blocks become unwritten (zeros without writing them); partial ones are zeroed.
    uint64_t zfirst = (offset + kBlockSize - 1) / kBlockSize, zend = end_byte / kBlockSize;
    if (zfirst > zend) {
      TRY(zero_in_place_locked(txn, *in, offset, end_byte));
    } else {
      TRY(zero_in_place_locked(txn, *in, offset, zfirst * kBlockSize));
      TRY(zero_in_place_locked(txn, *in, zend * kBlockSize, end_byte));
      // Written extents in [zfirst, zend) turn unwritten in place.
      std::vector<std::pair<uint64_t, Extent>> written;
      auto it = in->extents.upper_bound(zfirst);
      if (it != in->extents.begin()) --it;
      for (; it != in->extents.end() && it->first < zend; ++it) {
        uint64_t s = std::max(zfirst, it->first), e = std::min(zend, it->first + it->second.length);
        if (s >= e || it->second.unwritten()) continue;
        for (uint64_t off = s; off < e; off += emap_.remap_chunk_blocks()) {  // bounded steps
          Extent piece = it->second;
          piece.physical += off - it->first;
          piece.length = std::min(emap_.remap_chunk_blocks(), e - off);
          written.push_back({off, piece});
        }
      }
      for (auto& [s, piece] : written) {
        TRY(emap_.unmap_locked(txn, *in, s, s + piece.length, false));
        TRY(emap_.map_locked(txn, *in, s, piece.physical, piece.length, kExtentUnwritten));
        TRY(commit_if_large_locked(txn, *in));
      }
    }
  }
  TRY(allocate_range_locked(txn, *in, first, end, kExtentUnwritten, &added));
  if (!keep_size && end_byte > in->d.size) {
    TRY(zero_tail_locked(txn, *in, in->d.size));
    in->d.size = end_byte;
  }
  if (kill_priv == KillPriv::kYes) strip_setid(*in);
  touch(*in, (mode & FALLOC_FL_ZERO_RANGE) != 0, true);
  store_inode(txn, *in);
  return space_.commit_locked(txn);
}

Result<uint64_t> Filesystem::lseek(uint64_t ino, uint64_t offset, int whence) {
  std::shared_lock lock(mu_);
  TRY(check_alive());
  Inode* in = TRY(inodes_.find(ino));
  uint64_t size = in->d.size;
  if (whence != SEEK_DATA && whence != SEEK_HOLE) return error(EINVAL);
  if (offset >= size) return error(ENXIO);
  // Data is written extents only: unwritten extents are holes, as XFS reports them for DAX.
  uint64_t end = (size + kBlockSize - 1) / kBlockSize;
  for (uint64_t block = offset / kBlockSize; block < end;) {
    dax::Iomap m = mapping_at_locked(*in, block, end, dax::kIomapRead);
    bool data = m.type == dax::IomapType::kMapped;
    if (data == (whence == SEEK_DATA)) return std::min(std::max(offset, m.offset), size);
    block = m.end() / kBlockSize;
  }
  if (whence == SEEK_DATA) return error(ENXIO);
  return size;  // the implicit hole at EOF
}

Result<Filesystem::FileInfo> Filesystem::file_info(uint64_t ino) {
  std::shared_lock lock(mu_);
  TRY(check_alive());
  Inode* in = TRY(inodes_.find(ino));
  FileInfo f;
  f.size = in->d.size;
  f.extents = in->extents.size();
  f.data_blocks = in->data_blocks;
  for (auto& [l, e] : in->extents)
    if (e.unwritten()) f.unwritten_blocks += e.length;
  f.dax_flag = in->d.flags & kInodeDax;
  return f;
}

bool Filesystem::is_dax(uint64_t ino) {
  std::shared_lock lock(mu_);
  switch (opts_.dax) {
    case DaxMode::kAlways: return true;
    case DaxMode::kNever: return false;
    case DaxMode::kInode: {
      auto in = inodes_.find(ino);
      return in && ((*in)->d.flags & kInodeDax);
    }
  }
  return false;
}

}  // namespace daxfs::fs
