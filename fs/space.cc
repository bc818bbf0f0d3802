// Space: reserve, alloc and commit (fs/space.h).
#include "fs/space.h"

#include <cerrno>

namespace daxfs::fs {

Status Space::commit_locked(Txn& txn) {
  std::vector<Txn::Free> frees = txn.frees();
  Status st = journal_->commit(txn);
  if (!st) {
    // A transaction too big for the journal is a bug in its bounds; stop before anything worse.
    shutdown_("transaction of " + std::to_string(txn.bytes()) + " bytes does not fit the journal");
    txn.clear();
    return st;
  }
  counters_.transactions++;
  // Blocks freed by the transaction become allocatable only now that it is durable.
  for (const Txn::Free& f : frees) {
    alloc_.free(f.start, f.length);
    counters_.blocks_freed += f.length;
  }
  return {};
}

Space::DirtyGuard::~DirtyGuard() {
  // Cancelling a transaction that already changed metadata in memory leaves memory ahead of the
  // media: stop, as XFS does when it cancels a dirty transaction. The next mount is consistent.
  if (!txn_.empty()) space_.shutdown_("an operation failed after it had changed metadata");
}

Status Space::reserve_locked(uint64_t blocks) const {
  // Keep a few blocks for the record blocks and inode chunks an operation may need.
  if (alloc_.free_blocks() < blocks + kReserveBlocks) return error(ENOSPC);
  return {};
}

Result<BlockRange> Space::alloc_locked(uint64_t want, uint64_t goal) {
  auto r = alloc_.alloc(want, goal);
  if (r) counters_.blocks_allocated += r->length;
  return r;
}

}  // namespace daxfs::fs
