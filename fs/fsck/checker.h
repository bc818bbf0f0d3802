// The filesystem checker: builds a model of everything the metadata on an Image references (inode
// chunks, inodes, record-block chains, extents, directory entries, symlink targets, xattr blobs,
// refcount records), reports every broken invariant of the format and plans a repair for each one
// it can fix, as redo-journal transactions (usually one per repair; the refcount rebuild may take
// several). It never writes: the fsck driver commits the plan.
// Not thread-safe; one Checker per pass.
#pragma once

#include <vector>

#include "fs/format.h"
#include "fs/fsck/image.h"
#include "fs/fsck/problem.h"
#include "fs/journal.h"

namespace daxfs::fsck {

// Bytes written straight to the media, not through the journal.
struct InPlaceWrite {
  uint64_t offset;  // device byte offset
  std::vector<char> bytes;
};

struct Fix {
  // Indices into CheckResult::problems: each is repaired once every fix naming it is committed.
  std::vector<size_t> problems;
  fs::Txn txn;  // the after-images, committed as one transaction
  // Written and persisted just before `txn` commits: new blocks nothing references until `txn`
  // links them (as the filesystem initialises a record block before linking it). Safe only in
  // the state every earlier fix leaves: the driver skips it once an earlier fix failed.
  std::vector<InPlaceWrite> prepare;
};

struct CheckResult {
  std::vector<Problem> problems;
  std::vector<Fix> fixes;  // in the order they must be committed
  Stats stats;
};

// Checks the filesystem on `image`. `sb` is its superblock as check_superblock() accepted (and
// corrected) it; the checker trusts its geometry and validates everything else. Each fix was
// planned against the state left by the fixes before it, so they must be committed in order;
// the driver re-checks afterwards, since one repair can expose another problem.
// Never crashes on corrupt media; throws only std::bad_alloc.
CheckResult check_filesystem(const Image& image, const fs::SuperBlock& sb);

}  // namespace daxfs::fsck
