/* daxfs public ioctl ABI (C and C++). Fixed-size _IOR/_IOW commands, because the FUSE kernel
 * forwards only those ("restricted" ioctls). Issue them on any file or directory of a daxfs mount.
 * The filesystem implements them; it lives in daxcore/ because the client side (the preload
 * shim, which answers FICLONE, FIEMAP and the like with them) must not include fs/ headers.
 * Stable: fields are only ever added in the reserved space, which callers must zero (EINVAL
 * otherwise). Access rules per command: docs/reflink.md. */
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
  uint64_t clones, dedupes, cow_blocks, refcount_overflow_copies, post_eof_trimmed;
  uint64_t metadata_rebuilt; /* poisoned metadata blocks rebuilt from memory */
  uint64_t reserved[10];
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

/* Reflink (the FUSE kernel forwards neither FICLONERANGE nor FIDEDUPERANGE). Issued on the
 * destination file, naming the source by inode number (st_ino) and generation
 * (FS_IOC_GETVERSION on the source): both must name a live file of the same mount. Since no fd
 * proves the caller could open the source, the daemon checks what opening it by its path would:
 * search permission on each directory up to the root and read permission on the file (EBADF
 * otherwise, as for an unknown or stale inode; CAP_DAC_READ_SEARCH passes). The destination
 * needs write permission, as the fd the ioctl is issued on would (dedupe: CAP_SYS_ADMIN, an fd
 * open for writing, ownership or write permission, else EPERM, as Linux's may_dedupe_file()). */
struct daxfs_clone_range {
  uint64_t src_ino;
  uint64_t src_generation;
  uint64_t src_offset;
  uint64_t src_length;   /* 0: to the source's EOF (FICLONERANGE) */
  uint64_t dest_offset;
  uint64_t bytes;        /* out: bytes remapped */
  uint64_t status;       /* out (dedupe): 0 same and shared, 1 differs (FILE_DEDUPE_RANGE_DIFFERS) */
  uint64_t reserved[9];
};
#define DAXFS_IOC_CLONE_RANGE _IOWR(DAXFS_IOC_MAGIC, 3, struct daxfs_clone_range)
#define DAXFS_IOC_DEDUPE_RANGE _IOWR(DAXFS_IOC_MAGIC, 4, struct daxfs_clone_range)

/* FALLOC_FL_UNSHARE_RANGE (never forwarded by FUSE). */
struct daxfs_range {
  uint64_t offset;
  uint64_t length;
  uint64_t reserved[6];
};
#define DAXFS_IOC_UNSHARE_RANGE _IOW(DAXFS_IOC_MAGIC, 5, struct daxfs_range)
/* FALLOC_FL_COLLAPSE_RANGE and FALLOC_FL_INSERT_RANGE (never forwarded by FUSE), with XFS's
 * rules: block-aligned offset and length (EINVAL), collapse not reaching EOF (EINVAL), insert
 * not at or past EOF (EINVAL) and not growing the file past the largest size (EFBIG). As the fd
 * fallocate(2) is called on: open for writing (EBADF), the file writable by the caller (EACCES). */
#define DAXFS_IOC_COLLAPSE_RANGE _IOW(DAXFS_IOC_MAGIC, 8, struct daxfs_range)
#define DAXFS_IOC_INSERT_RANGE _IOW(DAXFS_IOC_MAGIC, 9, struct daxfs_range)

/* A file's extents from `start` (bytes): up to DAXFS_FIEMAP_MAX per call; call again from the
 * end of the last one until count < DAXFS_FIEMAP_MAX. Holes are absent. */
#define DAXFS_FIEMAP_MAX 120
#define DAXFS_EXTENT_SHARED 0x1
#define DAXFS_EXTENT_UNWRITTEN 0x2
#define DAXFS_EXTENT_POISONED 0x4
struct daxfs_extent {
  uint64_t logical;   /* bytes */
  uint64_t physical;  /* byte offset in the device */
  uint64_t length;    /* bytes */
  uint64_t flags;     /* DAXFS_EXTENT_* */
};
struct daxfs_fiemap {
  uint64_t start;     /* in */
  uint64_t count;     /* out */
  uint64_t reserved[2];
  struct daxfs_extent extents[DAXFS_FIEMAP_MAX];
};
#define DAXFS_IOC_FIEMAP _IOWR(DAXFS_IOC_MAGIC, 6, struct daxfs_fiemap)

/* The reverse map from device byte `start` (a block boundary) up to `end`: one row per owner of
 * each physical range (every reflink sharer), metadata rows, and free rows. Call again with
 * start = the last row's physical and skip = the rows returned at that physical, until
 * count < DAXFS_FSMAP_MAX. */
#define DAXFS_FSMAP_MAX 100
enum daxfs_owner_kind {
  DAXFS_OWN_FREE = 0, DAXFS_OWN_DATA = 1, DAXFS_OWN_SUPER = 2, DAXFS_OWN_JOURNAL = 3,
  DAXFS_OWN_INODES = 4, DAXFS_OWN_EXTENT_MAP = 5, DAXFS_OWN_DIRECTORY = 6, DAXFS_OWN_SYMLINK = 7,
  DAXFS_OWN_XATTR = 8, DAXFS_OWN_REFCOUNT = 9
};
struct daxfs_fsmap_row {
  uint64_t physical;  /* bytes */
  uint64_t length;    /* bytes */
  uint64_t kind;      /* enum daxfs_owner_kind */
  uint64_t ino;       /* owner inode (data, extent map, directory, symlink, xattr), else 0 */
  uint64_t logical;   /* data: byte offset in the file */
  uint64_t flags;     /* DAXFS_EXTENT_UNWRITTEN / DAXFS_EXTENT_SHARED */
};
struct daxfs_fsmap {
  uint64_t start;     /* in: bytes */
  uint64_t end;       /* in: bytes (exclusive) */
  uint64_t count;     /* out */
  uint64_t skip;      /* in: rows starting at `start` already returned (a range with many owners) */
  struct daxfs_fsmap_row rows[DAXFS_FSMAP_MAX];
};
#define DAXFS_IOC_FSMAP _IOWR(DAXFS_IOC_MAGIC, 7, struct daxfs_fsmap)

#endif /* DAXFS_IOCTL_H */
