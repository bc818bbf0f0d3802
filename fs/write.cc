// write(2). The common case (no shared block in the range, not past EOF) runs in three steps so
// that writes and reads of other files proceed while this one copies its data:
//   1. under mu_: checks, the space reserve, record slots for the new extents (committed on their
//      own when a record block is added), blocks for the holes (allocated in memory only);
//   2. without mu_ (the file's iolock and mmaplock held: nobody else reads, maps or changes its
//      layout): the data is stored into those blocks, flushed without a drain;
//   3. under mu_: the new blocks are mapped, unwritten ones converted, size and times updated, all
//      in one transaction; Journal::commit() drains the data stores before its commit record.
// A crash before 3 leaves the new blocks free and the unwritten ones unwritten (reading zeros),
// overwrites of written blocks in place: as with DAX on XFS, durable at the reply and not atomic
// against a crash in the middle. Writes that copy shared blocks (CoW), start past EOF or are
// smaller than 64 KiB take the one-step path under mu_ (write_locked), after any layout break.
#include <cstring>

#include "common/scope_guard.h"
#include "fs/filesystem.h"

namespace daxfs::fs {

namespace {
constexpr size_t kSplitWriteBytes = 64 << 10;  // from this size on, the copy runs without mu_
}  // namespace

Result<size_t> Filesystem::write(uint64_t ino, uint64_t offset, const char* data, size_t size,
                                 KillPriv kill_priv) {
  std::optional<InodeLock> held;  // released after mu_ (the last unpin may need mu_)
  std::unique_lock lock(mu_);
  held.emplace(TRY(lock_inode_with(lock, ino, LockMode::kLayout)));
  TRY(check_writable());
  Inode* in = TRY(inodes_.find(ino));  // pinned: still there
  if (in->is_dir()) return error(EISDIR);
  if (!in->is_reg()) return error(EINVAL);
  if (size == 0) return size_t{0};
  if (offset >= kMaxFileSize) return error(EFBIG);
  size = static_cast<size_t>(std::min<uint64_t>(size, kMaxFileSize - offset));
  uint64_t first = offset / kBlockSize, end = (offset + size - 1) / kBlockSize + 1;
  TRY(check_recovery_write_locked(*in, offset, size));
  if (owners_.shared_blocks_locked(*in, first, end) > 0) {
    // Our own mappings of the shared blocks go before the copy (dax_iomap_iter unmaps them);
    // with our locks held nothing can share more of the file meanwhile.
    lock.unlock();
    break_layout(ino, first, end, dax::LayoutChange::kCow);
    lock.lock();
    TRY(check_writable());
    return write_locked(*in, offset, data, size, kill_priv);
  }
  // Holes and unwritten blocks that become data: DAX mappers of the zero page there refault
  // (dax_insert_entry unmaps a zero-page entry when blocks replace it).
  if (!emap_.fully_written(*in, first, end)) {
    TRY(break_layout(lock, ino, first, end, dax::LayoutChange::kFill));
  }
  // Small writes and writes past EOF in one step: for a few blocks two trips through mu_ cost
  // more than the copy they would let others overlap.
  if (offset > in->d.size || size < kSplitWriteBytes) return write_locked(*in, offset, data, size, kill_priv);

  std::vector<WriteRun> runs;
  TRY(plan_write_locked(*in, first, end, runs));
  // Poison this write will clear is looked for now, before it stores: poison that comes while it
  // copies means those cells lost what it stored, and stays.
  std::vector<BlockRange> recovered;
  for (const WriteRun& r : runs)
    note_recovery(r.physical, r.first, r.end, offset, size, r.kind != WriteRun::kWritten, recovered);
  lock.unlock();
  for (const WriteRun& r : runs) copy_in(r.physical, r.first, r.end, offset, data, size, r.kind != WriteRun::kWritten);
  lock.lock();
  TRY(check_writable());  // a shutdown meanwhile: nothing is committed (the blocks stay in memory)
  return finish_write_locked(*in, offset, size, runs, recovered, kill_priv);
}

void Filesystem::note_recovery(uint64_t physical, uint64_t first, uint64_t end, uint64_t offset, size_t size,
                               bool zero_filled, std::vector<BlockRange>& recovered) const {
  // Only whole blocks: a partial store into a poisoned block does not replace its lost data (and
  // one that was poisoned when the write started was refused). Zero-filled blocks are whole.
  if (!dev_->poisoned(physical * kBlockSize, (end - first) * kBlockSize)) return;  // the usual case
  for (uint64_t b = first; b < end; b++) {
    bool whole = zero_filled || (b * kBlockSize >= offset && (b + 1) * kBlockSize <= offset + size);
    uint64_t p = physical + (b - first);
    if (!whole || !dev_->poisoned(p * kBlockSize, kBlockSize)) continue;
    if (!recovered.empty() && recovered.back().end() == p) {
      recovered.back().length++;
    } else {
      recovered.push_back({p, 1});
    }
  }
}

Status Filesystem::plan_write_locked(Inode& in, uint64_t first, uint64_t end, std::vector<WriteRun>& runs) {
  ExtentMap::Holes holes = emap_.holes_in(in, first, end);
  TRY(space_.reserve_locked(emap_.blocks_to_map(in, first, end) + 2));
  // Every record the mapping step may need is taken now (it must not fail for space later): one
  // per new run, up to three per converted run (the piece and a split on each side), placed
  // before the data so that a sequentially written file is not split by its record blocks.
  uint64_t unwritten_runs = 0;
  auto it = in.extents.upper_bound(first);
  if (it != in.extents.begin()) --it;
  for (; it != in.extents.end() && it->first < end; ++it)
    if (it->second.unwritten() && it->first + it->second.length > first) unwritten_runs++;
  Txn txn;
  DirtyGuard guard(space_, txn);
  auto ensure_records = [&](uint64_t records) -> Status {
    while (in.free_records.size() < records) {
      uint64_t b = TRY(emap_.new_record_block_locked(txn, in, kExtentMagic));
      for (uint32_t s = kExtentsPerBlock; s-- > 0;) in.free_records.push_back({b, s});
    }
    return {};
  };
  TRY(ensure_records(holes.runs + unwritten_runs * 3));

  // Blocks allocated below are in memory only: a failure before they are mapped gives them back.
  ScopeGuard give_back([&] {
    for (const WriteRun& r : runs)
      if (r.kind == WriteRun::kNew) alloc_.free(r.physical, r.end - r.first);
  });
  for (uint64_t pos = first; pos < end;) {
    uint64_t estart = 0;
    const Extent* e = emap_.extent_at(in, pos, &estart);
    if (e) {
      uint64_t stop = std::min(end, estart + e->length);
      runs.push_back({pos, stop, e->physical + (pos - estart),
                      e->unwritten() ? WriteRun::kUnwritten : WriteRun::kWritten});
      pos = stop;
      continue;
    }
    auto next = in.extents.upper_bound(pos);
    uint64_t hole_end = next == in.extents.end() ? end : std::min(end, next->first);
    uint64_t goal = 0;
    if (next != in.extents.begin()) {
      auto prev = std::prev(next);
      goal = prev->second.physical + prev->second.length + (pos - prev->first - prev->second.length);
    }
    while (pos < hole_end) {
      // Allocated in memory only: mapped (and so allocated on media) by finish_write_locked.
      BlockRange r = TRY(space_.alloc_locked(hole_end - pos, goal));
      runs.push_back({pos, pos + r.length, r.start, WriteRun::kNew});
      pos += r.length;
      goal = r.end();
    }
  }
  uint64_t new_runs = 0;
  for (const WriteRun& r : runs) new_runs += r.kind == WriteRun::kNew;
  TRY(ensure_records(new_runs + unwritten_runs * 3));  // more only when the holes were fragmented
  if (!txn.empty()) TRY(space_.commit_locked(txn));  // new record blocks, linked and empty
  give_back.disarm();
  return {};
}

Result<size_t> Filesystem::finish_write_locked(Inode& in, uint64_t offset, size_t size,
                                               const std::vector<WriteRun>& runs,
                                               const std::vector<BlockRange>& recovered, KillPriv kill_priv) {
  Txn txn;
  DirtyGuard guard(space_, txn);
  for (const WriteRun& r : runs) {
    uint64_t n = r.end - r.first;
    if (r.kind == WriteRun::kUnwritten) TRY(emap_.unmap_locked(txn, in, r.first, r.end, false));
    if (r.kind != WriteRun::kWritten) TRY(emap_.map_locked(txn, in, r.first, r.physical, n, 0));
  }
  if (offset + size > in.d.size) in.d.size = offset + size;
  if (kill_priv == KillPriv::kYes) strip_setid(in);
  touch(in, true, true);
  store_inode(txn, in);
  TRY(space_.commit_locked(txn));  // drains the data stored without mu_ before the commit record
  // Poisoned blocks this write replaced whole (found before it stored): cleared now that the data
  // is durable (Linux dax_recovery_write).
  for (const BlockRange& r : recovered) TRY(dev_->clear_error(r.start * kBlockSize, r.length * kBlockSize));
  counters_.writes++;
  counters_.bytes_written += size;
  return size;
}

// The one-step write, all under mu_: for copy-on-write (the layout is broken already), writes
// past EOF (the tail block is zeroed first, which may copy it) and small writes.
Result<size_t> Filesystem::write_locked(Inode& inode, uint64_t offset, const char* data, size_t size,
                                            KillPriv kill_priv) {
  Inode* in = &inode;
  uint64_t first = offset / kBlockSize, end = (offset + size - 1) / kBlockSize + 1;
  uint64_t shared = owners_.shared_blocks_locked(*in, first, end);
  TRY(space_.reserve_locked(emap_.blocks_to_map(*in, first, end) + shared + 2));
  Txn txn;
  DirtyGuard guard(space_, txn);
  if (offset > in->d.size) TRY(zero_tail_locked(txn, *in, in->d.size));
  // Copy-on-write: shared blocks in the range get private copies first (the bytes this write
  // replaces are not copied); the loop below then writes them in place.
  TRY(cow_.unshare_blocks_locked(txn, *in, first, end, offset, offset + size));
  if (in->free_records.empty() && emap_.unmapped_blocks(*in, first, end) > 0) {
    // Place a new record block before the data, not between this write's blocks and the next
    // write's, which would split a sequentially written file into extents.
    RecordLoc loc = TRY(emap_.alloc_record_locked(txn, *in));
    in->free_records.push_back(loc);
  }
  // Poisoned blocks this write stores whole, noted before it stores, cleared once the data is
  // durable. Usually none: no allocation.
  std::vector<BlockRange> recovered;
  uint64_t pos = first;
  while (pos < end) {
    auto it = in->extents.upper_bound(pos);
    if (it != in->extents.begin()) {
      auto prev = std::prev(it);
      if (prev->first + prev->second.length > pos) {
        uint64_t estart = prev->first;
        Extent e = prev->second;
        uint64_t run_end = std::min(end, estart + e.length);
        uint64_t phys = e.physical + (pos - estart);
        note_recovery(phys, pos, run_end, offset, size, e.unwritten(), recovered);
        if (!e.unwritten()) {
          copy_in(phys, pos, run_end, offset, data, size, false);
        } else {
          // Unwritten: write the data, zero the rest of its blocks, then mark them written.
          copy_in(phys, pos, run_end, offset, data, size, true);
          TRY(emap_.unmap_locked(txn, *in, pos, run_end, false));
          TRY(emap_.map_locked(txn, *in, pos, phys, run_end - pos, 0));
        }
        pos = run_end;
        continue;
      }
    }
    uint64_t hole_end = it == in->extents.end() ? end : std::min(end, it->first);
    uint64_t goal = 0;
    if (it != in->extents.begin()) {
      auto prev = std::prev(it);
      goal = prev->second.physical + prev->second.length + (pos - prev->first - prev->second.length);
    }
    while (pos < hole_end) {
      BlockRange r = TRY(space_.alloc_locked(hole_end - pos, goal));
      note_recovery(r.start, pos, pos + r.length, offset, size, true, recovered);
      copy_in(r.start, pos, pos + r.length, offset, data, size, true);
      TRY(emap_.map_locked(txn, *in, pos, r.start, r.length, 0));
      pos += r.length;
      goal = r.end();
    }
  }
  if (offset + size > in->d.size) in->d.size = offset + size;
  if (kill_priv == KillPriv::kYes) strip_setid(*in);
  touch(*in, true, true);
  store_inode(txn, *in);
  TRY(space_.commit_locked(txn));  // drains the data copied above before the commit record
  // A recovery write (Linux dax_recovery_write): the new data is durable (the commit drained
  // it), so poison in the blocks it replaced whole can go now. A crash in between leaves the
  // poison and the new data; the write can be repeated.
  for (const BlockRange& r : recovered) TRY(dev_->clear_error(r.start * kBlockSize, r.length * kBlockSize));
  counters_.writes++;
  counters_.bytes_written += size;
  return size;
}

}  // namespace daxfs::fs
