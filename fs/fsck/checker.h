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

// What a check saw that says how well the superblock it was given fits the rest of the metadata:
// the geometry stage (geometry.cc) and the chunk-head recovery (chunk_head.cc) compare candidate
// superblocks by it. Counted on the filesystem as the planned repairs leave it.
struct Evidence {
  uint64_t reached = 0;      // inodes reachable from the root through entries, before any reconnection
  uint64_t data_blocks = 0;  // blocks mapped by the extents of the files kept
  uint64_t errors = 0;       // problems of severity kError
  uint64_t oldest_chunk = 0;  // the chunk chain's last block: mkfs.daxfs puts it right after the journal
  bool head_broken = false;   // the superblock's link to the chunk chain leads to no inode chunk
  uint64_t unchained_chunks = 0;  // entries naming an inode in an inode chunk the chain does not reach
  // References to blocks past the device's end, but inside CheckOptions::claimed_blocks: a
  // device truncated below its metadata.
  uint64_t past_end = 0;
  uint64_t first_past_end = 0;  // the first such block met
};

struct CheckResult {
  std::vector<Problem> problems;
  std::vector<Fix> fixes;  // in the order they must be committed
  Stats stats;
  Evidence evidence;
};

struct CheckOptions {
  // The block count the media claims, when it is more than the device has: references between
  // the device's end and it are counted in Evidence::past_end.
  uint64_t claimed_blocks = 0;
  // When the superblock's link to the chunk chain is broken, or leaves out chunks that entries
  // name, look for the chain's real head (chunk_head.cc): the only time fsck scans the device.
  bool recover_head = true;
};

// Checks the filesystem on `image`. `sb` is its superblock as check_superblock() accepted (and
// corrected) it; the checker trusts its geometry and validates everything else. Each fix was
// planned against the state left by the fixes before it, so they must be committed in order;
// the driver re-checks afterwards, since one repair can expose another problem.
// Never crashes on corrupt media; throws only std::bad_alloc.
CheckResult check_filesystem(const Image& image, const fs::SuperBlock& sb, const CheckOptions& options = {});

// Poison in the journal as the mount judges it (fs/mount.cc): kHeader or kLive (a committed
// transaction's bytes) cannot be read, so the transaction can be neither replayed nor discarded
// until the poison is cleared; kDead holds nothing (a mount rewrites it).
enum class JournalPoison { kNone, kDead, kLive, kHeader };
JournalPoison journal_poison(const Image& image, const fs::SuperBlock& sb);

}  // namespace daxfs::fsck
