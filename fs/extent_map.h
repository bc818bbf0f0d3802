// ExtentMap: the operations on a file's extent map (Inode::extents) and its records on media.
// Every change is written into the caller's transaction (and the rmap and refcount records kept
// equal through BlockOwners); freed data blocks are released after it commits. Bound to the
// device (record blocks are initialised in place), Space (record and data block allocation,
// commits of batched unmaps), BlockOwners and the allocator (its fragmentation bounds the
// reserve). Not thread-safe: `_locked` calls expect the filesystem's mu_ held exclusively;
// the const queries need it shared (and the file's layout not changing).
#pragma once

#include <cstdint>

#include "fs/alloc.h"
#include "fs/block_owners.h"
#include "fs/inode.h"
#include "fs/journal.h"
#include "fs/space.h"
#include "pmemdev/device.h"
#include "common/result.h"

namespace daxfs::fs {

class ExtentMap {
 public:
  ExtentMap(pmemdev::Device& dev, Space& space, BlockOwners& owners, const Allocator& alloc)
      : dev_(dev), space_(space), owners_(owners), alloc_(alloc) {}
  ExtentMap(const ExtentMap&) = delete;
  ExtentMap& operator=(const ExtentMap&) = delete;

  // A new, empty record block with header `magic`, linked at the head of the inode's chain
  // (the inode is stored in `txn`).
  Result<uint64_t> new_record_block_locked(Txn& txn, Inode& in, uint64_t magic);
  Result<RecordLoc> alloc_record_locked(Txn& txn, Inode& in);
  void write_extent_locked(Txn& txn, Inode& in, uint64_t logical, const Extent& e);
  void clear_record_locked(Txn& txn, Inode& in, RecordLoc loc);
  Status map_locked(Txn& txn, Inode& in, uint64_t logical, uint64_t physical, uint64_t length,
                    uint32_t flags);
  // Removes mappings in [first, end) (logical blocks); frees the blocks when free_blocks.
  Status unmap_locked(Txn& txn, Inode& in, uint64_t first, uint64_t end, bool free_blocks);
  // Unmaps and frees [first, end), committing (with `in`) every 4096 extents from the end
  // backwards, so that any number of extents fits the journal; the last batch is left in `txn`.
  Status unmap_batched_locked(Txn& txn, Inode& in, uint64_t first, uint64_t end);

  // Collapse and insert range (fs/shift.cc). split_at_locked: the extent holding file block
  // `at` becomes two, one starting at `at` (nothing to do at an extent boundary or in a hole);
  // its blocks, flags and sharing are unchanged. move_extent_locked: the extent starting at file
  // block `from` moves to start at `to`, its record rewritten in place and its rmap owner moved
  // (its blocks, flags and reference counts unchanged); moved left, it merges into a left
  // neighbour that it continues logically and physically. The caller keeps [to, to + length)
  // free of other extents.
  Status split_at_locked(Txn& txn, Inode& in, uint64_t at);
  void move_extent_locked(Txn& txn, Inode& in, uint64_t from, uint64_t to);
  // Longest extent one record holds.
  static constexpr uint64_t kMaxExtentLength = 1ULL << 30;

  struct Holes {
    uint64_t blocks = 0;  // unmapped blocks in the range
    uint64_t runs = 0;    // maximal runs of them
  };
  static Holes holes_in(const Inode& in, uint64_t first, uint64_t end);
  static uint64_t unmapped_blocks(const Inode& in, uint64_t first, uint64_t end);
  // Whether every block of [first, end) is mapped and written (no hole, nothing unwritten).
  static bool fully_written(const Inode& in, uint64_t first, uint64_t end);
  // The most blocks mapping [first, end) can take (data and extent-record blocks): the reserve
  // an operation checks before it changes anything.
  uint64_t blocks_to_map(const Inode& in, uint64_t first, uint64_t end) const;
  // The most blocks one remapping step may cover so that its transaction fits the journal.
  uint64_t remap_chunk_blocks() const;
  // The extent holding file block `block` (its logical start in *start), or nullptr for a hole.
  static const Extent* extent_at(const Inode& in, uint64_t block, uint64_t* start);

 private:
  pmemdev::Device& dev_;
  Space& space_;
  BlockOwners& owners_;
  const Allocator& alloc_;
};

}  // namespace daxfs::fs
