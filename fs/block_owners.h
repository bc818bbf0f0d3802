// BlockOwners: who owns each data block. The reverse map (fs/rmap.h: data blocks -> owners,
// whose counts are the reference counts), the persistent refcount records (fs/refcount.h:
// counts >= 2) and the head of their record-block chain, with the queries and the one update
// that keeps records and rmap equal. Filled by the Loader at mount; afterwards not thread-safe:
// the `_locked` calls expect the filesystem's mu_ (shared for the const ones, exclusive for
// sync_refcounts_locked()).
#pragma once

#include <cstdint>
#include <vector>

#include "fs/inode.h"
#include "fs/journal.h"
#include "fs/refcount.h"
#include "fs/rmap.h"
#include "fs/space.h"
#include "pmemdev/device.h"
#include "common/result.h"

namespace daxfs::fs {

// A mapped piece of a file: file blocks [logical, logical + length) on device blocks from
// `physical`. Collected before remapping, which changes the extent map under an iterator.
struct Piece {
  uint64_t logical, physical, length;
  uint32_t flags;
};
// The mapped pieces of file blocks [first, end), in file order.
std::vector<Piece> pieces_of(const Inode& in, uint64_t first, uint64_t end);

class BlockOwners {
 public:
  // `space` allocates the refcount record blocks; `dev` is where they are initialised.
  BlockOwners(pmemdev::Device& dev, Space& space) : dev_(dev), space_(space) {}
  BlockOwners(const BlockOwners&) = delete;
  BlockOwners& operator=(const BlockOwners&) = delete;

  Rmap& rmap() { return rmap_; }
  const Rmap& rmap() const { return rmap_; }
  RefcountTable& refcounts() { return refcounts_; }
  const RefcountTable& refcounts() const { return refcounts_; }
  // Mount: the superblock's refcount_head.
  void set_refcount_head(uint64_t head) { refcount_head_ = head; }

  // Rewrites the persistent refcount records of a physical range to match the rmap.
  Status sync_refcounts_locked(Txn& txn, uint64_t physical, uint64_t length);
  // Rewrites every refcount record into new blocks (a poisoned record block is rebuilt from
  // memory); the old blocks are freed when `txn` commits.
  Status rewrite_refcounts_locked(Txn& txn);
  // True when some block of the physical range has more than one owner.
  bool shared_locked(uint64_t physical, uint64_t length) const;
  // The blocks of file blocks [first, end) of `in` that have more than one owner.
  uint64_t shared_blocks_locked(const Inode& in, uint64_t first, uint64_t end) const;

 private:
  pmemdev::Device& dev_;
  Space& space_;
  Rmap rmap_;                 // data blocks -> owners; counts are reference counts
  RefcountTable refcounts_;   // the persistent records of counts >= 2
  uint64_t refcount_head_ = 0;
};

}  // namespace daxfs::fs
