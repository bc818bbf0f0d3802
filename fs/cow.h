// Cow: the block-level half of reflink (fs/reflink.cc has the POSIX operations): sharing a
// file's blocks with another file (clone), giving shared blocks private copies (copy-on-write,
// unshare), and the checks a remap makes before it changes anything. On top of ExtentMap (every
// mapping change, refcounts kept by BlockOwners) and Space (copies' blocks, commits of long
// ranges); copies go straight to the device. Not thread-safe: `_locked` calls expect the
// filesystem's mu_ held exclusively and the files' kLayout locks; the layout already broken.
#pragma once

#include <cstdint>

#include "fs/block_owners.h"
#include "fs/counters.h"
#include "fs/extent_map.h"
#include "fs/inode.h"
#include "fs/journal.h"
#include "fs/space.h"
#include "pmemdev/device.h"
#include "common/result.h"

namespace daxfs::fs {

class Cow {
 public:
  Cow(pmemdev::Device& dev, Space& space, BlockOwners& owners, ExtentMap& emap, Counters& counters)
      : dev_(dev), space_(space), owners_(owners), emap_(emap), counters_(counters) {}
  Cow(const Cow&) = delete;
  Cow& operator=(const Cow&) = delete;

  // Gives the shared blocks of file blocks [first, end) private copies (CoW). Whole blocks inside
  // the byte range [skip_from, skip_to) are not copied: the caller overwrites them.
  Status unshare_blocks_locked(Txn& txn, Inode& in, uint64_t first, uint64_t end, uint64_t skip_from,
                               uint64_t skip_to);
  // The checks of a clone (dedupe: FIDEDUPERANGE's) of src_off..+length to dst_off, as Linux's
  // generic_remap_file_range_prep(): the bytes to remap (shortened only for dedupe), and in
  // *blocks the file blocks they cover.
  static Result<uint64_t> remap_prep(const Inode& src, uint64_t src_off, const Inode& dst, uint64_t dst_off,
                                     uint64_t length, bool dedupe, uint64_t* blocks);
  // Maps src's blocks [sfirst, sfirst + n) at dst's dfirst (dst's old blocks released first),
  // sharing them (copying those at the reference-count ceiling); commits long ranges in steps.
  Status clone_blocks_locked(Txn& txn, Inode& src, uint64_t sfirst, Inode& dst, uint64_t dfirst, uint64_t n);
  // Checks a clone of src's blocks [first, end) can complete: space for its metadata and for the
  // blocks at the reference-count ceiling (copied, not shared), and no poison in those. ENOSPC/EIO.
  Status reserve_for_clone_locked(const Inode& src, uint64_t first, uint64_t end) const;

 private:
  // Commits `txn` (with `in` stored) once it holds a quarter of the journal.
  Status commit_if_large_locked(Txn& txn, Inode& in);

  pmemdev::Device& dev_;
  Space& space_;
  BlockOwners& owners_;
  ExtentMap& emap_;
  Counters& counters_;
};

}  // namespace daxfs::fs
