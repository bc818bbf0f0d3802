// Space: the transaction machinery of a mounted filesystem. It owns the journal and, with the
// block allocator (owned by the Filesystem, filled by the Loader), answers the three questions
// every metadata-changing operation asks: is there room (reserve), which blocks (alloc), and
// make it durable (commit). Not thread-safe: every `_locked` call expects the filesystem's mu_
// held exclusively (one journal, one transaction at a time); the const queries need it shared.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "fs/alloc.h"
#include "fs/counters.h"
#include "fs/journal.h"
#include "common/result.h"

namespace daxfs::fs {

class Space {
 public:
  // `shutdown` is called (possibly with mu_ held) when a commit fails or a dirty transaction is
  // abandoned: it must not call back into the filesystem synchronously.
  Space(Allocator& alloc, Counters& counters, std::function<void(const std::string&)> shutdown)
      : alloc_(alloc), counters_(counters), shutdown_(std::move(shutdown)) {}
  Space(const Space&) = delete;
  Space& operator=(const Space&) = delete;

  // The journal, opened at mount before recovery; commits need it.
  void set_journal(std::unique_ptr<Journal> journal) { journal_ = std::move(journal); }
  Journal& journal() { return *journal_; }
  // Bytes one transaction may hold.
  size_t journal_capacity() const { return journal_->capacity(); }

  // ENOSPC unless `blocks` and kReserveBlocks more are free (record blocks and inode chunks an
  // operation may need beyond its estimate); statfs reports free space net of them.
  static constexpr uint64_t kReserveBlocks = 8;
  Status reserve_locked(uint64_t blocks) const;
  // Never hands out a poisoned block: one found in a range the allocator picked is retired
  // (kept used in memory only, never on the media) and the rest of the range goes back; retired
  // blocks whose poison was cleared are given back when the allocator runs dry.
  Result<BlockRange> alloc_locked(uint64_t want, uint64_t goal);
  // Blocks alloc_locked() handed out that nothing references yet (an operation gave up before
  // linking them): free again at once.
  void free_unreferenced_locked(uint64_t start, uint64_t length) { alloc_.free(start, length); }
  // How to tell a poisoned range: set once at mount (the device's badblock list).
  void set_poison_check(std::function<bool(uint64_t first, uint64_t count)> poisoned) {
    poisoned_ = std::move(poisoned);
  }
  size_t retired_blocks() const { return retired_.size(); }
  // The poisoned free blocks held back (free on the media: fsmap lists them as free).
  const std::vector<uint64_t>& retired() const { return retired_; }
  // Commits `txn`; the blocks it frees become allocatable only then. A commit that fails (a
  // transaction too big for the journal: a bug in its bounds) shuts the filesystem down and
  // empties `txn`.
  Status commit_locked(Txn& txn);
  // Whether `txn` holds a quarter of the journal: loops over unbounded numbers of extents commit
  // then (Filesystem::commit_if_large_locked).
  bool large(const Txn& txn) const { return txn.bytes() >= journal_->capacity() / 4; }
  // Free blocks net of the reserve (statfs).
  uint64_t available_blocks() const {
    uint64_t free = alloc_.free_blocks();
    return free > kReserveBlocks ? free - kReserveBlocks : 0;
  }

  // Declared right after an operation's Txn: if the operation returns with the transaction
  // still holding changes (it failed halfway), the filesystem shuts down.
  class DirtyGuard {
   public:
    DirtyGuard(Space& space, Txn& txn) : space_(space), txn_(txn) {}
    ~DirtyGuard();
    DirtyGuard(const DirtyGuard&) = delete;
    DirtyGuard& operator=(const DirtyGuard&) = delete;

   private:
    Space& space_;
    Txn& txn_;
  };

 private:
  Allocator& alloc_;
  Counters& counters_;
  std::function<void(const std::string&)> shutdown_;
  std::function<bool(uint64_t, uint64_t)> poisoned_;
  std::vector<uint64_t> retired_;  // poisoned free blocks held back from the allocator
  std::unique_ptr<Journal> journal_;
};

}  // namespace daxfs::fs
