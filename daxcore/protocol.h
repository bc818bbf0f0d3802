/* The DAX layer's wire protocol between the daxfs daemon and the processes that map its files
 * (the client library and the LD_PRELOAD shim). C, versioned, no pointers: fixed-size records and
 * 32/64-bit words accessed with atomic loads and stores. Everything a client writes here is input
 * to the daemon, which copies and validates it (docs/dax-design.md, "Trust").
 *
 *   1. The client creates its channel: a memfd of sizeof(struct daxfs_dax_channel), sealed
 *      against shrinking (F_SEAL_SHRINK: the daemon maps it and must never fault on it), and
 *      holds an OFD write lock on it through a second, close-on-exec open of it (the daemon tests
 *      the lock to learn whether the process image that connected still exists).
 *      ioctl(fd, DAXFS_IOC_DAX_CONNECT) on any file of the mount names the memfd: the daemon
 *      binds a session to the calling process (its thread group, found from the request's pid),
 *      takes the memfd with pidfd_getfd(2), checks its seals and size, maps it, initializes it,
 *      and returns the session token and the device path. A process that has a session quotes
 *      its token and gets the same session; a new image (after exec) quotes none.
 *   2. ioctl(fd, DAXFS_IOC_DAX_GRANT) on each file to map: the file's inode, whether it is a DAX
 *      file, and the access the fd's open mode gives (a read-only open maps read-only).
 *   3. Requests (fault, unmap, pin, unpin) in the channel's request slots, rung by a futex on
 *      `doorbell`; replies in the same slot, woken on its `state`.
 *   4. Revokes from the daemon in the ring, rung on `revoke_bell`; the client drops the pages
 *      and acknowledges with `revoke_acked` (+ a futex wake on `ack_bell`).
 */
#ifndef DAXFS_DAX_PROTOCOL_H
#define DAXFS_DAX_PROTOCOL_H

#include <linux/ioctl.h>
#include <stdint.h>

#define DAXFS_DAX_ABI 1
#define DAXFS_DAX_MAGIC 0x6461786368616e31ull /* "daxchan1" */
#define DAXFS_DAX_PAGE 4096u

#ifndef DAXFS_IOC_MAGIC
#define DAXFS_IOC_MAGIC 0xDA
#endif

struct daxfs_dax_connect {
  uint32_t abi;       /* in: DAXFS_DAX_ABI; out: the daemon's */
  int32_t channel_fd; /* in: the client's sealed channel memfd (a file descriptor number) */
  uint64_t token;     /* in: the session's token if this process image has one, else 0;
                         out: the session's token, quoted in every request */
  int32_t daemon_pid; /* out: the daemon's pid (clients watch it with a pidfd) */
  uint32_t lease_ms;  /* out: how long a revoke may take before the daemon kills */
  uint64_t device_size;
  uint32_t session;   /* out: the session's slot (informational) */
  uint32_t pad;
  char device[1024];  /* out: the device file: the client maps its blocks from it */
  uint64_t reserved[8]; /* in: zero */
};
#define DAXFS_IOC_DAX_CONNECT _IOWR(DAXFS_IOC_MAGIC, 16, struct daxfs_dax_connect)

#define DAXFS_DAX_ACCESS_READ 0x1
#define DAXFS_DAX_ACCESS_WRITE 0x2
struct daxfs_dax_grant {
  uint64_t token;  /* out: the session's token (EPERM: no session: connect first) */
  uint64_t ino;    /* out: the inode the ioctl was made on */
  uint32_t access; /* out: DAXFS_DAX_ACCESS_* the fd's open mode allows */
  uint32_t dax;    /* out: 1 if the file is a DAX file (else: map it through the kernel) */
  uint64_t reserved[6];
};
#define DAXFS_IOC_DAX_GRANT _IOR(DAXFS_IOC_MAGIC, 17, struct daxfs_dax_grant)

/* Request slot states (the slot's futex word). */
enum {
  DAXFS_REQ_FREE = 0,      /* anyone may claim it (client: CAS FREE -> CLAIMED) */
  DAXFS_REQ_CLAIMED = 1,   /* a client thread fills it */
  DAXFS_REQ_SUBMITTED = 2, /* ready for the daemon */
  DAXFS_REQ_REPLIED = 3,   /* the daemon answered; the client reads and frees it */
};

/* Request operations. */
enum {
  DAXFS_OP_FAULT = 1, /* map [offset, offset+length) of ino from offset on; flags: WRITE */
  DAXFS_OP_UNMAP = 2, /* the client no longer maps [offset, offset+length) of ino at `address`
                         (its other mappings of the range, at other addresses, stay) */
  DAXFS_OP_PIN = 3,   /* hold the blocks of the range (get_user_pages); flags: LONGTERM refused */
  DAXFS_OP_UNPIN = 4,
};
#define DAXFS_FAULT_WRITE 0x1
#define DAXFS_PIN_LONGTERM 0x2

/* Reply kinds. */
enum {
  DAXFS_MAP_DEVICE = 1, /* map device bytes [device, device+length) at file offset `offset` */
  DAXFS_MAP_ZERO = 2,   /* a hole or unwritten extent: map zeros read-only */
};

/* Reply errors beyond plain errnos (positive errnos otherwise: EIO, ENOSPC, EACCES, ...). */
#define DAXFS_ERR_BEYOND_EOF 100000 /* SIGBUS BUS_ADRERR, as a fault past EOF on Linux */
#define DAXFS_ERR_POISON 100001     /* SIGBUS BUS_MCEERR_AR: the page is poisoned */

struct daxfs_dax_request {
  uint32_t state; /* DAXFS_REQ_*; futex */
  uint32_t op;
  uint64_t token;
  uint64_t seq; /* the client's, echoed back */
  uint64_t ino;
  uint64_t offset; /* file bytes, page-aligned */
  uint64_t length;
  uint64_t address; /* where the client maps offset (daxfsctl mappers; UNMAP: which mapping) */
  uint32_t flags;
  uint32_t prot; /* PROT_* the client's mapping allows */
  /* Reply. */
  int32_t error; /* 0, a positive errno, or DAXFS_ERR_* */
  uint32_t kind; /* DAXFS_MAP_* */
  uint64_t r_offset;
  uint64_t r_length;
  uint64_t r_device;
  uint32_t r_prot;
  uint32_t r_pad;
  uint64_t r_revoke_seq; /* revokes posted to this session when the mapping was recorded */
  uint64_t pad[2];
};

/* A revoke: drop every page of [offset, offset+length) of ino (ino 0: of every file). */
enum {
  DAXFS_REVOKE_LAYOUT = 1,   /* a layout break: refault later */
  DAXFS_REVOKE_SHUTDOWN = 2, /* the filesystem is gone: later touches get SIGBUS */
  DAXFS_REVOKE_POISON = 3,   /* memory failure: SIGBUS BUS_MCEERR_A[OR] (see `flags`) */
};
#define DAXFS_REVOKE_EARLY_KILL 0x1 /* poison: raise BUS_MCEERR_AO now, if the page is mapped */
struct daxfs_dax_revoke {
  uint64_t seq;
  uint64_t ino;
  uint64_t offset;
  uint64_t length;
  uint32_t why; /* DAXFS_REVOKE_* */
  uint32_t flags;
};

#define DAXFS_DAX_REQUESTS 16
#define DAXFS_DAX_RING 256

struct daxfs_dax_channel {
  uint64_t magic; /* DAXFS_DAX_MAGIC */
  uint32_t abi;
  uint32_t size; /* sizeof(struct daxfs_dax_channel) */
  uint32_t doorbell;    /* client: +1 and wake after submitting a request */
  uint32_t dead;        /* daemon: 1 once the session or filesystem is gone */
  uint32_t revoke_bell; /* daemon: +1 and wake after posting revokes */
  uint32_t ack_bell;    /* client: +1 and wake after acknowledging */
  uint64_t revoke_posted; /* daemon: revokes posted so far (ring[seq % DAXFS_DAX_RING]) */
  uint64_t revoke_acked;  /* client: revokes done so far */
  uint64_t pad[4];
  struct daxfs_dax_revoke ring[DAXFS_DAX_RING];
  struct daxfs_dax_request requests[DAXFS_DAX_REQUESTS];
};

#endif /* DAXFS_DAX_PROTOCOL_H */
