// Persistent reference counts of shared blocks: range records {start, length, count >= 2} in a
// chain of record blocks from the superblock, mirrored by an in-memory map. The counts themselves
// come from the reverse map (rmap.h); sync() rewrites the records of a range to match it, inside
// the caller's transaction. A block is free exactly when its count is 0 (no mapping, no record).
// Sharing a 1 TiB extent costs one record, as sharing 4 KiB does. Not thread-safe: used under the
// filesystem's lock.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <vector>

#include "fs/format.h"
#include "fs/inode.h"
#include "fs/journal.h"
#include "fs/rmap.h"
#include "common/result.h"

namespace daxfs::fs {

class RefcountTable {
 public:
  struct Record {
    uint64_t length;
    uint32_t count;
    RecordLoc loc;
  };
  // Allocates one block for a new record block (the filesystem's allocator).
  using BlockAllocator = std::function<Result<uint64_t>()>;

  // Mount: one record read from media; false when it overlaps another (corruption).
  bool load(uint64_t start, const DiskRefcount& rec, RecordLoc loc);
  void load_free_slot(RecordLoc loc) { free_.push_back(loc); }
  void load_block(uint64_t block) { blocks_.push_back(block); }

  // Rewrites the records covering [start, start + length) (extended to whole records) to equal
  // the rmap's counts there. Writes go into `txn`; a new record block, when needed, comes from
  // `alloc`, is initialised in place and linked through `head` (the superblock's refcount_head).
  Status sync(Txn& txn, const Rmap& rmap, uint64_t start, uint64_t length, uint64_t head_offset,
              uint64_t& head, const BlockAllocator& alloc,
              const std::function<void(uint64_t, const void*, size_t)>& persist_copy);
  // The most journal bytes sync() of [start, start + length) can write once the rmap's counts
  // inside that range change by one owner (an unmap): what an operation that must fit the
  // journal reserves for it before the change.
  uint64_t sync_bound(const Rmap& rmap, uint64_t start, uint64_t length) const;
  // Record blocks a rewrite() needs for the records held now.
  size_t blocks_needed() const { return (map_.size() + kRefcountsPerBlock - 1) / kRefcountsPerBlock; }
  // Writes every record into `fresh` (blocks_needed() new blocks, initialised in place and
  // persisted while still unreachable), then points `head` at the new chain in `txn` and frees the
  // old blocks after it commits: a poisoned record block is rebuilt from memory this way.
  void rewrite(Txn& txn, const std::vector<uint64_t>& fresh, uint64_t head_offset, uint64_t& head,
               const std::function<void(uint64_t, const void*, size_t)>& persist_copy);
  // The recorded count of `block` (1 when mapped without a record; the caller knows which).
  uint32_t recorded(uint64_t block) const;
  const std::map<uint64_t, Record>& records() const { return map_; }
  const std::vector<uint64_t>& blocks() const { return blocks_; }

 private:
  std::map<uint64_t, Record> map_;
  std::vector<RecordLoc> free_;
  std::vector<uint64_t> blocks_;
};

}  // namespace daxfs::fs
