/* daxfs public ioctl ABI (C and C++). Fixed-size _IOR/_IOW commands, because the FUSE kernel
 * forwards only those ("restricted" ioctls). Issue them on any file or directory of a daxfs mount.
 * Stable: fields are only ever added in the reserved space. See docs/abi.md. */
#ifndef DAXFS_IOCTL_H
#define DAXFS_IOCTL_H

#include <linux/ioctl.h>
#include <stdint.h>

#define DAXFS_IOC_MAGIC 0xDA

/* Filesystem-wide counters (daxfsctl stat MOUNTPOINT). */
struct daxfs_counters {
  uint64_t version; /* 1 */
  uint64_t transactions;
  uint64_t reads, writes, bytes_read, bytes_written;
  uint64_t blocks_allocated, blocks_freed;
  uint64_t poison_events;
  uint64_t recovered_entries, orphans_freed;
  uint64_t inodes, free_blocks, total_blocks;
  uint64_t shutdown; /* 1 once shut down */
  uint64_t dax_mode; /* 0 always, 1 inode, 2 never */
  uint64_t reserved[16];
};
#define DAXFS_IOC_COUNTERS _IOR(DAXFS_IOC_MAGIC, 1, struct daxfs_counters)

/* One file's layout summary (daxfsctl stat FILE). */
struct daxfs_fileinfo {
  uint64_t version; /* 1 */
  uint64_t ino;
  uint64_t size;
  uint64_t extents;
  uint64_t data_blocks;      /* mapped blocks, written or not */
  uint64_t unwritten_blocks;
  uint64_t dax_flag;         /* FS_XFLAG_DAX set on the inode */
  uint64_t dax;              /* opens of this file bypass the page cache under the mount's dax= */
  uint64_t reserved[16];
};
#define DAXFS_IOC_FILEINFO _IOR(DAXFS_IOC_MAGIC, 2, struct daxfs_fileinfo)

#endif /* DAXFS_IOCTL_H */
