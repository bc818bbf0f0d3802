// The questions the DAX side asks a filesystem about a file's blocks: Linux's iomap_begin /
// iomap_end (include/linux/iomap.h). A filesystem implements IomapOps and registers it at
// mount; the DAX fault path, and the filesystem's own read, fiemap and SEEK_DATA/SEEK_HOLE,
// consume its answers. Knows nothing of any filesystem (no fs/ include).
//
// Thread-safety: an implementation is called from any thread; each call is atomic with respect
// to the file's layout (it answers under the filesystem's locks and drops them before returning).
#pragma once

#include <cstdint>

#include "common/result.h"

namespace daxfs::dax {

enum class IomapType : uint8_t {
  kHole,       // nothing backs the range: reads as zeros (IOMAP_HOLE)
  kMapped,     // written blocks at `address` (IOMAP_MAPPED)
  kUnwritten,  // allocated, reads as zeros until written (IOMAP_UNWRITTEN)
};

// Iomap::flags.
inline constexpr uint32_t kIomapShared = 1u << 0;    // IOMAP_F_SHARED: other files own the blocks too
inline constexpr uint32_t kIomapNew = 1u << 1;       // IOMAP_F_NEW: allocated (zeroed) by this begin
inline constexpr uint32_t kIomapPoisoned = 1u << 2;  // some block of the range is poisoned

inline constexpr uint64_t kNoAddress = UINT64_MAX;

// One mapping: [offset, offset + length) of the file (bytes, block-aligned) is backed the same
// way throughout: a hole, or contiguous device bytes from `address`.
struct Iomap {
  uint64_t offset = 0;
  uint64_t length = 0;
  uint64_t address = kNoAddress;  // device byte offset of `offset`; kNoAddress for a hole
  IomapType type = IomapType::kHole;
  uint32_t flags = 0;
  uint64_t end() const { return offset + length; }
};

// What the caller will do with the mapping (IOMAP_* operation flags), a bit mask.
enum IomapOp : uint32_t {
  kIomapRead = 0,
  kIomapWrite = 1u << 0,    // store into the range: must come back kMapped and not shared
  kIomapZero = 1u << 1,     // zero the range
  kIomapUnshare = 1u << 2,  // give shared blocks private copies
  kIomapFault = 1u << 3,    // a page fault of a DAX mapping (with kIomapWrite: a write fault):
                            // the answer stops at EOF (rounded up to a page), ENXIO at or past it
  kIomapReport = 1u << 4,   // fiemap-style reporting: split at sharing and poison boundaries
};

struct IomapPair {
  Iomap map;     // where the caller reads or stores
  Iomap srcmap;  // Linux's srcmap: where the old data came from when begin copied shared
                 // blocks for a write (kHole when nothing was copied)
};

class IomapOps {
 public:
  virtual ~IomapOps() = default;
  // The mapping of `ino` that starts at `offset` (block-aligned down) and covers as much of
  // [offset, offset + length) as one kind of backing does; never longer than asked, possibly
  // shorter. With kIomapWrite the range is made storable first, in one crash-atomic
  // transaction: holes get zeroed written blocks, unwritten blocks are zeroed and converted,
  // shared blocks are copied (CoW) and the copy mapped; the answer is then kMapped, unshared.
  // Errors: ENOENT (no such inode), EINVAL (not a regular file), EIO (shut down, or poison in a
  // block that had to be copied), ENOSPC, EFBIG (past the largest file offset), EROFS, ENXIO (a
  // fault at or past EOF: the size is read under the same locks as the blocks, so a truncate
  // is seen whole or not at all).
  virtual Result<IomapPair> iomap_begin(uint64_t ino, uint64_t offset, uint64_t length, uint32_t ops) = 0;
  // The caller is done with a mapping begin returned; `done` bytes of it were used.
  virtual Status iomap_end(uint64_t ino, const Iomap& map, uint64_t done, uint32_t ops) = 0;
};

}  // namespace daxfs::dax
