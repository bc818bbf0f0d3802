// The block allocator: an in-memory map of free extents, rebuilt at mount from everything the
// metadata references (so it never needs persisting and cannot disagree with the metadata after a
// crash). Frees made inside a transaction are applied only after it commits (see Filesystem).
// Not thread-safe: used under the filesystem's exclusive lock.
#pragma once

#include <cstdint>
#include <map>
#include <vector>

#include "common/result.h"

namespace daxfs::fs {

struct BlockRange {
  uint64_t start;
  uint64_t length;
  uint64_t end() const { return start + length; }
  bool operator==(const BlockRange&) const = default;
};

class Allocator {
 public:
  // Everything in [first, end) free.
  void reset(uint64_t first, uint64_t end);
  // Marks a range used. false when some of it is already used or outside the device (the
  // metadata references a block twice: corruption).
  bool mark_used(uint64_t start, uint64_t length);
  // Allocates up to `want` (> 0) contiguous blocks, preferring the free extent at or after
  // `goal`, else the first one that fits whole, else the largest. ENOSPC when nothing is free.
  Result<BlockRange> alloc(uint64_t want, uint64_t goal);
  // Returns a range; aborts if any block of it is already free (a double free is a bug).
  void free(uint64_t start, uint64_t length);
  bool is_free(uint64_t start, uint64_t length) const;
  uint64_t free_blocks() const { return free_blocks_; }
  uint64_t total_blocks() const { return end_ - first_; }
  // Free extents: an upper bound on the pieces one large allocation can come back in.
  uint64_t fragments() const { return free_.size(); }
  std::vector<BlockRange> free_ranges() const;

 private:
  std::map<uint64_t, uint64_t> free_;  // start -> length; disjoint, never adjacent
  uint64_t free_blocks_ = 0;
  uint64_t first_ = 0, end_ = 0;
};

}  // namespace daxfs::fs
