// What a check finds and how much of the filesystem it saw: the vocabulary shared by the checker,
// the fsck driver, the report printers and the tests. Plain data; no thread-safety concerns.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace daxfs::fsck {

// kInfo findings are legal states a mount handles by itself (a committed journal transaction,
// an orphan inode after a crash): fsck -y still tidies them, but they never make a device dirty.
enum class Severity { kError, kInfo };

struct Problem {
  std::string kind;    // stable identifier: "link_count", "dirent_dangling", ... (docs/fsck.md)
  uint64_t ino = 0;    // the inode concerned, 0 for filesystem-wide problems
  std::string detail;  // one sentence for humans
  Severity severity = Severity::kError;
  bool fixable = false;   // a repair was planned for it
  bool repaired = false;  // the repair was committed
};

// Data blocks mapped more than once (reflink) and who maps them: fsck's reverse map, as fsmap
// would show it. `owners` are inodes, one per mapping (a file mapping the range twice is there
// twice), ascending.
struct SharedRange {
  uint64_t start;
  uint64_t length;
  std::vector<uint64_t> owners;
};
inline constexpr size_t kMaxSharedRanges = 1000;  // listed in a report; the counts cover them all

struct Stats {
  uint64_t inodes = 0;  // inodes in use
  uint64_t directories = 0;
  uint64_t files = 0;  // regular files
  uint64_t symlinks = 0;
  uint64_t special = 0;  // fifos, sockets, devices
  uint64_t block_count = 0;
  uint64_t used_blocks = 0;  // superblock, journal and every referenced block
  uint64_t free_blocks = 0;
  uint64_t shared_blocks = 0;     // data blocks mapped more than once
  uint64_t refcount_records = 0;  // refcount records in use
  std::vector<SharedRange> shared;  // the first kMaxSharedRanges shared ranges, in block order
  bool shared_truncated = false;    // more shared ranges than `shared` lists
};

}  // namespace daxfs::fsck
