// The filesystem's answer to "what backs this file range" (daxcore/iomap.h): one walk of the
// extent map that read, fiemap, SEEK_DATA/SEEK_HOLE and the DAX fault path all use, and the
// allocating begin for stores (holes, unwritten extents and shared blocks made storable in one
// transaction, as xfs_direct_write_iomap_begin does for DAX with XFS_BMAPI_ZERO).
//
// Ordering (kIomapWrite): the zeroes of new or converted blocks and the copies of shared ones are
// flushed before the transaction that maps them; Journal::commit() drains before its commit
// record, so a crash never exposes a mapped block whose zeroes or copied data are not durable.
#include "daxcore/iomap.h"

#include "fs/filesystem.h"

namespace daxfs::fs {

dax::Iomap Filesystem::mapping_at_locked(const Inode& in, uint64_t first, uint64_t end, uint32_t ops) const {
  dax::Iomap m;
  m.offset = first * kBlockSize;
  uint64_t estart = 0;
  const Extent* e = emap_.extent_at(in, first, &estart);
  if (!e) {
    auto next = in.extents.upper_bound(first);
    uint64_t stop = next == in.extents.end() ? end : std::min(end, next->first);
    m.length = (stop - first) * kBlockSize;
    return m;
  }
  uint64_t stop = std::min(end, estart + e->length);
  uint64_t phys = e->physical + (first - estart);
  m.type = e->unwritten() ? dax::IomapType::kUnwritten : dax::IomapType::kMapped;
  m.address = phys * kBlockSize;
  if (ops & (dax::kIomapWrite | dax::kIomapUnshare | dax::kIomapReport | dax::kIomapFault)) {
    // Split where the sharing changes: the leading run with one answer to "shared?".
    uint64_t run = 0;
    bool shared = false, done = false;
    owners_.rmap().for_each_count(phys, stop - first, [&](uint64_t, uint64_t l, uint32_t c) {
      if (done) return;
      if (run == 0) shared = c >= 2;
      if (run > 0 && (c >= 2) != shared) {
        done = true;
        return;
      }
      run += l;
    });
    stop = first + run;
    if (shared) m.flags |= dax::kIomapShared;
  }
  if (!e->unwritten() && dev_->poisoned(phys * kBlockSize, (stop - first) * kBlockSize)) {
    if (ops & dax::kIomapReport) {
      // Whole blocks: only the bad ones say "poisoned".
      bool bad = dev_->poisoned(phys * kBlockSize, kBlockSize);
      uint64_t b = first + 1;
      while (b < stop && dev_->poisoned((phys + (b - first)) * kBlockSize, kBlockSize) == bad) b++;
      stop = b;
      if (bad) m.flags |= dax::kIomapPoisoned;
    } else {
      m.flags |= dax::kIomapPoisoned;
    }
  }
  m.length = (stop - first) * kBlockSize;
  return m;
}

Status Filesystem::make_storable_locked(Txn& txn, Inode& in, uint64_t first, uint64_t end,
                                        std::vector<BlockRange>& recovered) {
  // Shared blocks first (copied whole: a fault stores into any byte of them).
  TRY(cow_.unshare_blocks_locked(txn, in, first, end, 0, 0));
  // The zeroing below stores whole blocks: poison found in them before it is a recovery write
  // (XFS_BMAPI_ZERO zeroes through the pmem driver, which clears whole poisoned sectors), cleared
  // by the caller once the transaction is durable, as write(2) does.
  auto note_zeroed = [&](uint64_t start, uint64_t length) {
    if (dev_->poisoned(start * kBlockSize, length * kBlockSize)) recovered.push_back({start, length});
  };
  for (uint64_t pos = first; pos < end;) {
    dax::Iomap m = mapping_at_locked(in, pos, end, dax::kIomapRead);
    uint64_t stop = pos + m.length / kBlockSize;
    if (m.type == dax::IomapType::kUnwritten) {
      uint64_t phys = m.address / kBlockSize;
      note_zeroed(phys, stop - pos);
      dev_->memset_nodrain(m.address, 0, m.length);  // zeros become real data
      TRY(emap_.unmap_locked(txn, in, pos, stop, false));
      TRY(emap_.map_locked(txn, in, pos, phys, stop - pos, 0));
    } else if (m.type == dax::IomapType::kHole) {
      uint64_t goal = 0;
      for (uint64_t at = pos; at < stop;) {
        BlockRange r = TRY(space_.alloc_locked(stop - at, goal));
        note_zeroed(r.start, r.length);  // poisoned after the allocator looked: rare
        dev_->memset_nodrain(r.start * kBlockSize, 0, r.length * kBlockSize);
        TRY(emap_.map_locked(txn, in, at, r.start, r.length, 0));
        at += r.length;
        goal = r.end();
      }
    }
    pos = stop;
  }
  return {};
}

Result<dax::IomapPair> Filesystem::iomap_begin(uint64_t ino, uint64_t offset, uint64_t length, uint32_t ops) {
  if (length == 0) return error(EINVAL);
  if (offset >= kMaxFileSize) return error(EFBIG);
  uint64_t first = offset / kBlockSize;
  length = std::min(length, kMaxFileSize - offset);  // no overflow of offset + length below
  uint64_t end = (offset + length - 1) / kBlockSize + 1;
  const bool fault = ops & dax::kIomapFault;
  // A fault sees the size under the same locks as the blocks (dax_iomap_fault checks i_size
  // under the MMAPLOCK): a size read before a truncate took the locks would map the zero page,
  // or allocate blocks, past the new EOF.
  auto clip_to_eof = [&](const Inode& in) -> Status {
    if (!fault) return {};
    uint64_t eof = (in.d.size + kBlockSize - 1) / kBlockSize;
    if (first >= eof) return error(ENXIO);
    end = std::min(end, eof);
    return {};
  };
  if (!(ops & (dax::kIomapWrite | dax::kIomapZero | dax::kIomapUnshare))) {
    InodeLock held = TRY(lock_inodes(ino, 0, fault ? LockMode::kFault : LockMode::kRead));
    std::shared_lock lock(mu_);
    TRY(check_alive());
    Inode* in = TRY(inodes_.find(ino));
    if (!in->is_reg()) return error(EINVAL);
    TRY(clip_to_eof(*in));
    return dax::IomapPair{mapping_at_locked(*in, first, end, ops), {}};
  }
  // A fault holds the mapping lock shared (xfs_dax_fault's MMAPLOCK), and exclusive once it knows
  // it must copy shared blocks; other callers hold the layout locks, as a write does.
  LockMode mode = fault ? LockMode::kFault : LockMode::kLayout;
  for (;;) {
    InodeLock held = TRY(lock_inodes(ino, 0, mode));
    std::unique_lock lock(mu_);
    TRY(check_writable());
    Inode* in = TRY(inodes_.find(ino));
    if (!in->is_reg()) return error(EINVAL);
    TRY(clip_to_eof(*in));
    dax::IomapPair out;
    dax::Iomap before = mapping_at_locked(*in, first, end, ops);
    // Fast path: already written and private (the common store fault).
    if (before.type == dax::IomapType::kMapped && !(before.flags & dax::kIomapShared)) return dax::IomapPair{before, {}};
    uint64_t stop = first + before.length / kBlockSize;  // one kind of backing at a time
    // A store fault that allocates, converts or copies holds the mapping lock exclusive
    // (dax_iomap_fault's entry lock): no other fault may map the zero page or the old blocks of
    // the range between the layout break and the new mapping.
    if (mode == LockMode::kFault) {
      mode = LockMode::kFaultCow;  // drop everything, take the mapping lock exclusive, look again
      continue;
    }
    if (before.flags & dax::kIomapShared) {
      out.srcmap = before;
      TRY(break_layout(lock, ino, first, stop, dax::LayoutChange::kCow));  // other mappers of the old blocks
    } else if (ops & dax::kIomapWrite) {
      // Holes and unwritten blocks become data: mappers of the zero page there must refault.
      TRY(break_layout(lock, ino, first, stop, dax::LayoutChange::kFill));
    }
    return storable_iomap_locked(*in, first, stop, ops, before, out);
  }
}

Result<dax::IomapPair> Filesystem::storable_iomap_locked(Inode& inode, uint64_t first, uint64_t end, uint32_t ops,
                                                         const dax::Iomap& before, dax::IomapPair out) {
  Inode* in = &inode;
  TRY(space_.reserve_locked(emap_.blocks_to_map(*in, first, end) + owners_.shared_blocks_locked(*in, first, end) + 2));
  Txn txn;
  DirtyGuard guard(space_, txn);
  std::vector<BlockRange> recovered;
  if (ops & dax::kIomapWrite) {
    TRY(make_storable_locked(txn, *in, first, end, recovered));
  } else {
    // Zero and unshare leave holes and unwritten blocks as they are (they read as zeros
    // already); shared blocks get private copies first.
    TRY(cow_.unshare_blocks_locked(txn, *in, first, end, 0, 0));
  }
  store_inode(txn, *in);
  TRY(space_.commit_locked(txn));  // drains the zeroes and copies above before the commit record
  for (const BlockRange& r : recovered) TRY(dev_->clear_error(r.start * kBlockSize, r.length * kBlockSize));
  out.map = mapping_at_locked(*in, first, end, ops);
  if (before.type != out.map.type) out.map.flags |= dax::kIomapNew;
  return out;
}

Status Filesystem::iomap_end(uint64_t ino, const dax::Iomap& map, uint64_t done, uint32_t ops) {
  // Nothing is reserved beyond what begin committed (stores into DAX mappings need no
  // completion step: the blocks were written and zeroed by begin), so there is nothing to undo.
  (void)ino, (void)map, (void)done, (void)ops;
  return {};
}

Status Filesystem::hold_inode(uint64_t ino) {
  std::shared_lock lock(mu_);  // pins are taken under the shared mu_ (fs/inode_lock.cc)
  TRY(check_alive());
  Inode* in = TRY(inodes_.find(ino));
  in->pin_state++;
  return {};
}

void Filesystem::release_inode(uint64_t ino) {
  Inode* in;
  {
    std::shared_lock lock(mu_);
    in = inodes_.get(ino);  // pinned by hold_inode: still there
  }
  if (in) unpin(*in);
}

}  // namespace daxfs::fs
