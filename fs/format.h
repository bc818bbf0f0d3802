// The daxfs on-media format (version 1). Every structure here is stored little-endian at a fixed
// place on the pmem device; see docs/format.md for the picture and the persist ordering.
// Plain data, and the one rule of what superblock geometry is possible (geometry_error(), shared
// by the mount and fsck.daxfs); no thread-safety concerns.
#pragma once

#include <cstddef>
#include <cstdint>

namespace daxfs::fs {

inline constexpr uint32_t kBlockSize = 4096;
inline constexpr uint32_t kBlockShift = 12;
inline constexpr uint32_t kFormatVersion = 1;
inline constexpr uint64_t kSuperMagic = 0x3153465844415844ULL;    // "DXADXFS1"
inline constexpr uint64_t kChunkMagic = 0x4b4e484353465844ULL;    // "DXFSCHNK"
inline constexpr uint64_t kExtentMagic = 0x5458455453465844ULL;   // "DXFSEXTT"
inline constexpr uint64_t kDirMagic = 0x5249444453465844ULL;      // "DXFSDDIR"
inline constexpr uint64_t kJournalMagic = 0x4c4e524a53465844ULL;  // "DXFSJRNL"
inline constexpr uint64_t kRefcountMagic = 0x4346455253465844ULL;  // "DXFSREFC"
inline constexpr uint64_t kMinDeviceSize = 16ULL << 20;
inline constexpr uint64_t kMinBlocks = kMinDeviceSize / kBlockSize;  // the smallest filesystem
inline constexpr uint64_t kMinJournalBlocks = 16;
inline constexpr uint64_t kMaxFileSize = INT64_MAX;  // as XFS: MAX_LFS_FILESIZE
// One past the last file block: the block holding byte kMaxFileSize - 1 is 2^51 - 1.
inline constexpr uint64_t kMaxFileBlocks = (kMaxFileSize + 4095) / 4096;
inline constexpr uint32_t kNameMax = 255;
inline constexpr uint32_t kSymlinkMax = kBlockSize - 1;

// Feature bits (superblock.features). A mount refuses any bit it does not know.
inline constexpr uint64_t kFeatureReflink = 1ULL << 0;
inline constexpr uint64_t kKnownFeatures = kFeatureReflink;

// Block 0.
struct SuperBlock {
  uint64_t magic;
  uint32_t version;
  uint32_t block_size;
  uint64_t features;
  uint64_t block_count;     // device size / block size
  uint64_t journal_start;   // first block of the journal
  uint64_t journal_blocks;
  uint64_t first_chunk;     // head of the inode chunk chain
  uint64_t root_ino;
  uint64_t next_generation;
  uint32_t clean;           // 1 while unmounted cleanly
  uint32_t pad0;
  uint64_t mount_count;
  uint8_t uuid[16];
  char label[32];
  uint64_t created_sec;
  uint64_t refcount_head;   // chain of refcount record blocks (0: nothing is shared)
  uint8_t reserved[4096 - 152];
};
static_assert(sizeof(SuperBlock) == kBlockSize);

// Why the superblock's geometry is impossible on a device of `device_blocks` whole blocks, or
// nullptr when a mount can trust it. The one rule the mount refuses by (fs/mount.cc) and fsck.daxfs
// repairs to (fs/fsck/geometry.cc), so that the two cannot disagree. Geometry only: the chunk
// chain and the root are checked with the rest of the metadata.
inline const char* geometry_error(const SuperBlock& sb, uint64_t device_blocks) {
  if (sb.block_size != kBlockSize) return "the block size is not 4096";
  if (sb.block_count > device_blocks) return "the filesystem is larger than its device";
  if (sb.block_count < kMinBlocks) return "the filesystem is smaller than 16 MiB";
  if (sb.journal_start != 1) return "the journal does not start at block 1";
  if (sb.journal_blocks < kMinJournalBlocks || sb.journal_blocks > sb.block_count / 4)
    return "the journal's size is outside 16 blocks .. a quarter of the filesystem";
  return nullptr;
}

// An inode lives in slot 1..15 of an inode chunk block; its number is (block << 4) | slot, so the
// number says where it is (as XFS inode numbers do). Slot 0 of a chunk holds the chunk header.
inline constexpr uint32_t kInodeSize = 256;
inline constexpr uint32_t kInodesPerChunk = kBlockSize / kInodeSize;  // 16 slots, 15 inodes
inline constexpr uint64_t ino_block(uint64_t ino) { return ino >> 4; }
inline constexpr uint32_t ino_slot(uint64_t ino) { return static_cast<uint32_t>(ino & 15); }
inline constexpr uint64_t make_ino(uint64_t block, uint32_t slot) { return (block << 4) | slot; }

struct ChunkHeader {
  uint64_t magic;
  uint64_t next;  // next chunk block, 0 at the end of the chain
  uint8_t pad[kInodeSize - 16];
};
static_assert(sizeof(ChunkHeader) == kInodeSize);

// Inode flags.
inline constexpr uint32_t kInodeDax = 1u << 0;  // FS_XFLAG_DAX

struct Timespec {
  int64_t sec;
  uint32_t nsec;
  uint32_t pad;
};

struct DiskInode {
  uint32_t mode;   // 0: free slot
  uint32_t uid;
  uint32_t gid;
  uint32_t nlink;
  uint64_t size;
  uint64_t rdev;
  uint64_t generation;
  uint64_t parent;       // directories: the parent directory's ino
  uint64_t head;         // regular file: extent block chain; directory: dirent block chain;
                         // symlink: the block holding the target
  uint64_t xattr_block;  // first block of the xattr blob (contiguous), 0 when none
  uint32_t xattr_length; // bytes in the blob
  uint32_t flags;        // kInode*
  uint32_t projid;
  uint32_t extsize;
  Timespec atime, mtime, ctime, btime;
  uint8_t pad[kInodeSize - 144];
};
static_assert(sizeof(DiskInode) == kInodeSize);
static_assert(offsetof(DiskInode, atime) == 80);

// Extent records, in blocks chained from a regular file's inode. A record with length 0 is free.
inline constexpr uint32_t kExtentUnwritten = 1u << 0;
struct DiskExtent {
  uint64_t logical;   // file block
  uint64_t physical;  // device block
  uint32_t length;    // blocks; 0: free record
  uint32_t flags;
};
static_assert(sizeof(DiskExtent) == 24);

struct RecordBlockHeader {
  uint64_t magic;  // kExtentMagic or kDirMagic
  uint64_t owner;  // the inode
  uint64_t next;   // next block of the chain, 0 at the end
  uint64_t pad;
};
inline constexpr uint32_t kExtentsPerBlock = (kBlockSize - sizeof(RecordBlockHeader)) / sizeof(DiskExtent);

// Directory entries, in blocks chained from a directory's inode. ino 0: free slot.
struct DiskDirent {
  uint64_t ino;
  uint8_t type;      // DT_* of the target
  uint8_t name_length;
  char name[kNameMax];
  uint8_t pad[272 - 8 - 2 - kNameMax];
};
static_assert(sizeof(DiskDirent) == 272);
inline constexpr uint32_t kDirentsPerBlock = (kBlockSize - sizeof(RecordBlockHeader)) / sizeof(DiskDirent);

// Reference counts of shared blocks, in record blocks chained from the superblock (owner 0).
// Only ranges referenced more than once are recorded (XFS's refcount btree does the same): a
// mapped block with no record has count 1, an unmapped one count 0. A record of length 0 is free.
inline constexpr uint32_t kMaxRefcount = 65535;  // past it, cloning copies instead (as XFS at its max)
struct DiskRefcount {
  uint64_t start;   // device block
  uint32_t length;  // blocks; 0: free record
  uint32_t count;   // >= 2
};
static_assert(sizeof(DiskRefcount) == 16);
inline constexpr uint32_t kRefcountsPerBlock = (kBlockSize - sizeof(RecordBlockHeader)) / sizeof(DiskRefcount);

// The redo journal header, at the journal's first block; entries follow it.
struct JournalHeader {
  uint64_t magic;     // kJournalMagic when a committed transaction is present, 0 when empty
  uint64_t seq;
  uint64_t count;     // entries
  uint64_t bytes;     // bytes of entries after the header
  uint64_t checksum;  // FNV-1a 64 of those bytes
  uint64_t pad[3];
};
struct JournalEntry {
  uint64_t offset;  // device byte offset of the home location
  uint32_t length;  // bytes of data after this header (padded to 8 on media)
  uint32_t pad;
};

}  // namespace daxfs::fs
