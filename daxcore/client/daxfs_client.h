/* libdaxfs-client: DAX mappings of daxfs files from user space (C and C++). The LD_PRELOAD shim
 * (`daxfsctl run`) routes mmap/munmap/mremap/msync/madvise/mprotect through these calls; a
 * program may also call them itself. Files that are not DAX files of a daxfs mount get the
 * kernel's mapping, unchanged. Semantics: docs/interface.md ("DAX mappings"); protocol:
 * daxcore/protocol.h. Thread-safe; async-signal-safe where noted. Errors: -1 (MAP_FAILED for
 * the mapping calls) with errno set, as the system calls they stand for. */
#ifndef DAXFS_CLIENT_H
#define DAXFS_CLIENT_H

#include <stddef.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Installs the fault handler (SIGSEGV, chained to the program's) and the fork handlers. Called
 * by every entry point below; idempotent. 0 or -1. */
int daxfs_client_init(void);

void* daxfs_mmap(void* addr, size_t length, int prot, int flags, int fd, off_t offset);
int daxfs_munmap(void* addr, size_t length);
void* daxfs_mremap(void* old_address, size_t old_size, size_t new_size, int flags, void* new_address);
int daxfs_mprotect(void* addr, size_t length, int prot);
int daxfs_madvise(void* addr, size_t length, int advice);
int daxfs_msync(void* addr, size_t length, int flags);

/* Makes the stores in [addr, addr + length) persistent (msync of the device pages). */
int daxfs_flush(const void* addr, size_t length);

/* Pins the blocks behind [addr, addr + length) (faulting them in first): they are not moved or
 * freed, and layout breaks wait (up to the lease, then the process is killed) until
 * daxfs_unpin. DAXFS_PIN_LONGTERM is refused with EOPNOTSUPP, as Linux refuses FOLL_LONGTERM on
 * fsdax. */
#define DAXFS_CLIENT_PIN_WRITE 0x1
#define DAXFS_CLIENT_PIN_LONGTERM 0x2
int daxfs_pin(const void* addr, size_t length, int flags);
int daxfs_unpin(const void* addr, size_t length);

/* Memory-failure kill policy of this process (Linux's prctl(PR_MCE_KILL)): EARLY raises SIGBUS
 * BUS_MCEERR_AO as soon as a mapped page is poisoned; LATE raises BUS_MCEERR_AR when the page is
 * touched; DEFAULT follows the mount's mce_kill=. Also set by DAXFS_MCE_KILL=early|late in the
 * environment (daxfsctl run --early-kill / --late-kill) and, under the shim, by prctl(2). */
#define DAXFS_MCE_KILL_DEFAULT 0
#define DAXFS_MCE_KILL_EARLY 1
#define DAXFS_MCE_KILL_LATE 2
int daxfs_set_mce_kill(int policy);
int daxfs_get_mce_kill(void);

/* The calls the FUSE kernel never forwards, for files of a daxfs mount, with Linux's semantics
 * and errnos (XFS's for the filesystem's own checks): ioctl(2) with FICLONE, FICLONERANGE,
 * FIDEDUPERANGE, FS_IOC_FIEMAP or FS_IOC_GETFSMAP, and fallocate(2) with
 * FALLOC_FL_UNSHARE_RANGE, FALLOC_FL_COLLAPSE_RANGE or FALLOC_FL_INSERT_RANGE. Any other request,
 * and any file of another filesystem, gets the real system call. The preload shim routes
 * ioctl(2) and fallocate(2) here. docs/reflink.md ("Through the shim"). */
int daxfs_ioctl(int fd, unsigned long request, void* arg);
int daxfs_fallocate(int fd, int mode, off_t offset, off_t len);

/* 1 if addr lies in a DAX mapping made by this library, else 0. Async-signal-safe. */
int daxfs_is_dax(const void* addr);

#ifdef __cplusplus
}
#endif

#endif /* DAXFS_CLIENT_H */
