// Space: reserve, alloc and commit (fs/space.h).
#include "fs/space.h"

#include <algorithm>
#include <vector>

#include <cerrno>

namespace daxfs::fs {

Status Space::commit_locked(Txn& txn) {
  std::vector<Txn::Free> frees = txn.frees();
  Status st = journal_->commit(txn);
  if (!st) {
    // A transaction too big for the journal is a bug in its bounds; stop before anything worse.
    // (EIO: the journal's crash test seam stopped an earlier commit.)
    shutdown_(st.error() == EFBIG ? "transaction of " + std::to_string(txn.bytes()) + " bytes does not fit the journal"
                                  : std::string("the journal refused a commit (crash test seam)"));
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
  for (;;) {
    auto r = alloc_.alloc(want, goal);
    if (!r) {
      // Out of space: retired blocks whose poison was cleared come back, then try again.
      size_t before = retired_.size();
      std::erase_if(retired_, [&](uint64_t b) {
        if (poisoned_ && poisoned_(b, 1)) return false;
        alloc_.free(b, 1);
        return true;
      });
      if (retired_.size() != before) continue;
      return r;
    }
    if (!poisoned_ || !poisoned_(r->start, r->length)) {
      counters_.blocks_allocated += r->length;
      return r;
    }
    uint64_t bad = r->start;
    while (bad < r->end() && !poisoned_(bad, 1)) bad++;
    if (r->end() > bad + 1) alloc_.free(bad + 1, r->end() - bad - 1);
    retired_.push_back(bad);
    if (bad > r->start) {
      BlockRange good{r->start, bad - r->start};
      counters_.blocks_allocated += good.length;
      return good;
    }
    goal = bad + 1;
  }
}

}  // namespace daxfs::fs
