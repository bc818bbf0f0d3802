// The filesystem checker: builds a model of everything the metadata on an Image references (inode
// chunks, inodes, record-block chains, extents, directory entries, symlink targets, xattr blobs),
// reports every broken invariant of the format and plans a repair for each one it can fix, as a
// redo-journal transaction per repair. It never writes: the fsck driver commits the plan.
// Not thread-safe; one Checker per pass.
#pragma once

#include <vector>

#include "fs/format.h"
#include "fs/fsck/image.h"
#include "fs/fsck/problem.h"
#include "fs/journal.h"

namespace daxfs::fsck {

struct Fix {
  size_t problem;  // index into CheckResult::problems
  fs::Txn txn;     // the after-images that repair it, committed as one transaction
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
