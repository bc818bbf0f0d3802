// The in-memory inode: the DRAM copy of an on-media inode plus the indexes built from its record
// blocks at mount (extent map, directory slots and name index, xattrs). Guarded by the
// filesystem's lock (see filesystem.h); nlookup is atomic because lookups run under the shared lock.
// Each inode also carries its own I/O and mapping locks, taken before the filesystem's lock (the
// lock order is in filesystem.h).
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <shared_mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "fs/format.h"

namespace daxfs::fs {

// Where a record (extent or dirent) lives on media: a record block and a slot in it.
struct RecordLoc {
  uint64_t block = 0;
  uint32_t slot = 0;
};

struct Extent {
  uint64_t physical;  // first device block
  uint64_t length;    // blocks
  uint32_t flags;     // kExtentUnwritten
  RecordLoc loc;      // its record on media
  bool unwritten() const { return flags & kExtentUnwritten; }
};

struct DirSlot {
  uint64_t ino = 0;  // 0: free
  uint8_t type = 0;
  std::string name;
};

struct Inode {
  uint64_t ino = 0;
  DiskInode d{};
  // Regular files: logical block -> extent; never overlapping.
  std::map<uint64_t, Extent> extents;
  uint64_t data_blocks = 0;  // blocks mapped by `extents` (st_blocks / 8)
  // Record blocks (extents or dirents) in creation order; the media chain runs newest first.
  std::vector<uint64_t> record_blocks;
  std::vector<RecordLoc> free_records;  // free extent-record slots
  // Directories: slot index = ordinal of the block * kDirentsPerBlock + slot in the block.
  std::vector<DirSlot> slots;
  std::vector<uint32_t> free_slots;
  std::unordered_map<std::string, uint32_t> names;  // name -> slot index
  uint64_t subdirs = 0;
  std::map<std::string, std::string> xattrs;
  std::string symlink;
  std::atomic<uint64_t> nlookup{0};
  // XFS's IOLOCK: shared by read, exclusive by everything that changes the file's data or layout
  // (write, truncate, fallocate, clone/dedupe, unshare). Excludes layout changes from each other
  // and makes a read see a write whole.
  // On cache lines of their own (alignas; the object's size rounds up to 64 too): every read and
  // write stores to them, and no other inode's or field's data may share their lines.
  alignas(64) std::shared_mutex iolock;
  // XFS's MMAPLOCK: shared by DAX faults, exclusive by layout changes (taken after iolock), so a
  // fault never maps blocks that a truncate, punch or remap is taking away.
  std::shared_mutex mmaplock;
  // Operations holding the inode's locks (Filesystem::InodeLock), in the low bits, and
  // kReleasePending: an unlinked inode whose last reference goes while it is pinned is released
  // by the last unpin instead. One word, so that unpin needs no lock (fs/inode_lock.cc).
  static constexpr uint32_t kReleasePending = 1u << 31;
  std::atomic<uint32_t> pin_state{0};

  bool is_dir() const { return (d.mode & 0170000) == 0040000; }
  bool is_reg() const { return (d.mode & 0170000) == 0100000; }
  bool is_symlink() const { return (d.mode & 0170000) == 0120000; }
  RecordLoc dirent_loc(uint32_t index) const {
    return {record_blocks[index / kDirentsPerBlock], index % kDirentsPerBlock};
  }
};

}  // namespace daxfs::fs
