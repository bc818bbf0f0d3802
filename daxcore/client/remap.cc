// The calls the FUSE kernel never forwards to a daemon, answered for files of a daxfs mount:
// FICLONE, FICLONERANGE, FIDEDUPERANGE, FS_IOC_FIEMAP, FS_IOC_GETFSMAP and fallocate(2)'s
// FALLOC_FL_UNSHARE_RANGE, FALLOC_FL_COLLAPSE_RANGE and FALLOC_FL_INSERT_RANGE. Each is checked
// as the VFS checks it (fs/remap_range.c, fs/ioctl.c ioctl_fiemap + fiemap_prep, fs/open.c
// vfs_fallocate, xfs_ioc_getfsmap) with the caller's own descriptors, then carried out through the
// mount's fixed-size ioctls (daxcore/daxfs_ioctl.h, which the daemon checks again). The
// filesystem's own checks (alignment, EOF, overlap, permissions) and errnos are the daemon's, as
// XFS's are XFS's. Descriptors of any other filesystem go to the real call untouched.
// Semantics and departures: docs/reflink.md ("Through the shim").
#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <linux/fiemap.h>
#include <linux/fs.h>
#include <linux/fsmap.h>
#include <linux/magic.h>
#include <pthread.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <map>
#include <vector>

#include "daxcore/client/client_internal.h"
#include "daxcore/daxfs_ioctl.h"

#ifndef FUSE_SUPER_MAGIC
#define FUSE_SUPER_MAGIC 0x65735546
#endif
#ifndef FALLOC_FL_UNSHARE_RANGE
#define FALLOC_FL_UNSHARE_RANGE 0x40
#endif

namespace daxfs::client {

namespace {

long sys_ioctl(int fd, unsigned long req, void* arg) { return syscall(SYS_ioctl, fd, req, arg); }

// Mounts known to be daxfs (or not), by st_dev: one probe (DAXFS_IOC_COUNTERS) per mount.
struct MountVerdict {
  dev_t dev;
  bool daxfs;
};
constexpr int kVerdicts = 32;
MountVerdict g_verdicts[kVerdicts];
int g_verdict_count = 0;
pthread_mutex_t g_verdict_mu = PTHREAD_MUTEX_INITIALIZER;

// Whether `fd` is a file of a daxfs mount; fills `st`. Never touches errno on the way.
bool on_daxfs(int fd, struct stat* st) {
  int saved = errno;
  struct statfs sf;
  bool fuse = fstat(fd, st) == 0 && fstatfs(fd, &sf) == 0 && static_cast<unsigned long>(sf.f_type) == FUSE_SUPER_MAGIC;
  if (!fuse) {
    errno = saved;
    return false;
  }
  pthread_mutex_lock(&g_verdict_mu);
  for (int i = 0; i < g_verdict_count; i++) {
    if (g_verdicts[i].dev == st->st_dev) {
      bool v = g_verdicts[i].daxfs;
      pthread_mutex_unlock(&g_verdict_mu);
      errno = saved;
      return v;
    }
  }
  pthread_mutex_unlock(&g_verdict_mu);
  daxfs_counters c;
  memset(&c, 0, sizeof c);
  bool v = sys_ioctl(fd, DAXFS_IOC_COUNTERS, &c) == 0 && c.version >= 1;
  pthread_mutex_lock(&g_verdict_mu);
  if (g_verdict_count < kVerdicts) g_verdicts[g_verdict_count++] = {st->st_dev, v};
  pthread_mutex_unlock(&g_verdict_mu);
  errno = saved;
  return v;
}

int fail(int err) {
  errno = err;
  return -1;
}

int access_mode(int fd) {
  int fl = fcntl(fd, F_GETFL);
  return fl < 0 ? -1 : fl;
}

// The same mount (vfs: the same vfsmount, else EXDEV): daxfs mounts are one per st_dev.
bool same_mount(const struct stat& a, const struct stat& b) { return a.st_dev == b.st_dev; }

// generic_file_rw_checks(): regular files, source readable, destination writable, not O_APPEND.
int rw_checks(int src_fd, const struct stat& ss, int dst_fd, const struct stat& ds) {
  if (S_ISDIR(ss.st_mode) || S_ISDIR(ds.st_mode)) return EISDIR;
  if (!S_ISREG(ss.st_mode) || !S_ISREG(ds.st_mode)) return EINVAL;
  int sf = access_mode(src_fd), df = access_mode(dst_fd);
  if (sf < 0 || df < 0) return EBADF;
  if ((sf & O_ACCMODE) == O_WRONLY || (df & O_ACCMODE) == O_RDONLY || (df & O_APPEND)) return EBADF;
  return 0;
}

// FICLONE / FICLONERANGE on `dst_fd` (ioctl_file_clone -> vfs_clone_file_range).
int clone(int dst_fd, const struct stat& ds, int src_fd, uint64_t src_off, uint64_t len, uint64_t dst_off) {
  struct stat ss;
  if (fstat(src_fd, &ss) != 0) return fail(EBADF);
  if (!same_mount(ss, ds)) return fail(EXDEV);
  if (int e = rw_checks(src_fd, ss, dst_fd, ds)) return fail(e);
  long generation = 0;
  if (sys_ioctl(src_fd, FS_IOC_GETVERSION, &generation) != 0) return -1;
  daxfs_clone_range a;
  memset(&a, 0, sizeof a);
  a.src_ino = ss.st_ino;
  a.src_generation = static_cast<uint64_t>(generation);
  a.src_offset = src_off;
  a.src_length = len;
  a.dest_offset = dst_off;
  return sys_ioctl(dst_fd, DAXFS_IOC_CLONE_RANGE, &a) == 0 ? 0 : -1;
}

// FIDEDUPERANGE on the source `src_fd` (vfs_dedupe_file_range): per destination a status.
int dedupe(int src_fd, const struct stat& ss, file_dedupe_range* r) {
  // vfs_dedupe_file_range(): the source fd must be open for reading (EINVAL), first of all.
  int sf = access_mode(src_fd);
  if (sf < 0) return fail(EBADF);
  if ((sf & O_ACCMODE) == O_WRONLY) return fail(EINVAL);
  if (r->reserved1 || r->reserved2) return fail(EINVAL);
  if (S_ISDIR(ss.st_mode)) return fail(EISDIR);
  if (!S_ISREG(ss.st_mode)) return fail(EINVAL);
  long generation = 0;
  if (sys_ioctl(src_fd, FS_IOC_GETVERSION, &generation) != 0) return -1;
  uint64_t len = r->src_length < (1ull << 30) ? r->src_length : (1ull << 30);  // Linux's 1 GiB cap
  for (uint16_t i = 0; i < r->dest_count; i++) {
    file_dedupe_range_info& info = r->info[i];
    info.bytes_deduped = 0;
    struct stat ds;
    if (fstat(static_cast<int>(info.dest_fd), &ds) != 0) {
      info.status = -EBADF;
      continue;
    }
    if (info.reserved) {
      info.status = -EINVAL;
      continue;
    }
    if (!same_mount(ss, ds)) {
      info.status = -EXDEV;
      continue;
    }
    if (S_ISDIR(ds.st_mode)) {
      info.status = -EISDIR;
      continue;
    }
    // may_dedupe_file() (CAP_SYS_ADMIN, an fd open for writing, ownership or write permission:
    // EPERM otherwise) is the daemon's check: it sees the caller's credentials.
    daxfs_clone_range a;
    memset(&a, 0, sizeof a);
    a.src_ino = ss.st_ino;
    a.src_generation = static_cast<uint64_t>(generation);
    a.src_offset = r->src_offset;
    a.src_length = len;
    a.dest_offset = info.dest_offset;
    if (len == 0) {
      info.status = FILE_DEDUPE_RANGE_SAME;
      continue;
    }
    if (sys_ioctl(static_cast<int>(info.dest_fd), DAXFS_IOC_DEDUPE_RANGE, &a) != 0) {
      info.status = -errno;
      continue;
    }
    if (a.status == 1) {
      info.status = FILE_DEDUPE_RANGE_DIFFERS;
    } else {
      info.status = FILE_DEDUPE_RANGE_SAME;
      info.bytes_deduped = a.bytes;
    }
  }
  return 0;
}

// FS_IOC_FIEMAP (ioctl_fiemap + fiemap_prep + iomap_fiemap): extents overlapping
// [fm_start, fm_start + fm_length), the last of them flagged LAST; fm_extent_count 0 counts.
int fiemap(int fd, const struct stat& st, struct fiemap* fm) {
  constexpr uint64_t kMaxBytes = (1ull << 63) - 1;
  constexpr uint32_t kSupported = FIEMAP_FLAG_SYNC;
  if (fm->fm_extent_count > UINT32_MAX / sizeof(struct fiemap_extent)) return fail(EINVAL);
  if (!S_ISREG(st.st_mode)) return fail(EOPNOTSUPP);  // XFS's directories have no ->fiemap
  uint64_t start = fm->fm_start, len = fm->fm_length;
  if (len == 0) return fail(EINVAL);
  if (start >= kMaxBytes) return fail(EFBIG);
  if (len > kMaxBytes || kMaxBytes - len < start) len = kMaxBytes - start;
  if (fm->fm_flags & ~kSupported) {
    fm->fm_flags &= ~kSupported;  // what is not supported, as fiemap_prep answers
    return fail(EBADR);
  }
  if ((fm->fm_flags & FIEMAP_FLAG_SYNC) && fsync(fd) != 0) return -1;
  const uint64_t first = start & ~uint64_t{4095};
  const uint64_t end = start + len;
  const uint64_t last = end > kMaxBytes - 4095 ? end : (end + 4095) & ~uint64_t{4095};  // xfs_bmapi_read's range
  uint32_t mapped = 0;
  bool have_prev = false;
  struct fiemap_extent prev;
  memset(&prev, 0, sizeof prev);
  // Emits `prev` (flags | extra); false once the caller's array is full.
  auto emit = [&](uint32_t extra) {
    prev.fe_flags |= extra;
    if (fm->fm_extent_count == 0) {
      mapped++;
      return true;
    }
    if (mapped >= fm->fm_extent_count) return false;
    fm->fm_extents[mapped++] = prev;
    return mapped < fm->fm_extent_count;
  };
  static daxfs_fiemap q;  // large; calls are serialised by its lock
  static pthread_mutex_t q_mu = PTHREAD_MUTEX_INITIALIZER;
  pthread_mutex_lock(&q_mu);
  uint64_t at = first;
  bool full = false;
  int err = 0;
  while (!full && at < end) {
    memset(&q, 0, sizeof q);
    q.start = at;
    if (sys_ioctl(fd, DAXFS_IOC_FIEMAP, &q) != 0) {
      err = errno;
      break;
    }
    for (uint64_t i = 0; i < q.count && !full; i++) {
      const daxfs_extent& e = q.extents[i];
      if (e.logical >= end) {
        at = end;
        break;
      }
      if (e.logical + e.length <= start) continue;
      // Trimmed to the asked range in whole blocks, as xfs_bmapi_read trims its mappings.
      uint64_t lo = e.logical > first ? e.logical : first;
      uint64_t hi = e.logical + e.length < last ? e.logical + e.length : last;
      uint32_t flags = ((e.flags & DAXFS_EXTENT_SHARED) ? FIEMAP_EXTENT_SHARED : 0) |
                       ((e.flags & DAXFS_EXTENT_UNWRITTEN) ? FIEMAP_EXTENT_UNWRITTEN : 0);
      uint64_t phys = e.physical + (lo - e.logical);
      // The daemon splits where poison starts and ends; fiemap has no poison flag, and XFS keeps
      // one record for contiguous blocks of one state: one extent.
      if (have_prev && prev.fe_logical + prev.fe_length == lo && prev.fe_physical + prev.fe_length == phys &&
          prev.fe_flags == flags) {
        prev.fe_length += hi - lo;
        continue;
      }
      if (have_prev && !emit(0)) full = true;
      prev.fe_logical = lo;
      prev.fe_physical = phys;
      prev.fe_length = hi - lo;
      prev.fe_flags = flags;
      have_prev = true;
    }
    if (q.count < DAXFS_FIEMAP_MAX) break;
    const daxfs_extent& last = q.extents[q.count - 1];
    at = last.logical + last.length > at ? last.logical + last.length : end;
  }
  if (!err && !full && have_prev) emit(FIEMAP_EXTENT_LAST);
  pthread_mutex_unlock(&q_mu);
  if (err) return fail(err);
  fm->fm_mapped_extents = mapped;
  return 0;
}

// XFS_IOC_FSGEOMETRY (xfs_fs.h, version 5): xfs_io asks for it before fsmap (block size, AG
// geometry for -v). daxfs answers as one allocation group spanning the device.
struct XfsGeometry {
  uint32_t blocksize, rtextsize, agblocks, agcount, logblocks, sectsize, inodesize, imaxpct;
  uint64_t datablocks, rtblocks, rtextents, logstart;
  unsigned char uuid[16];
  uint32_t sunit, swidth;
  int32_t version;
  uint32_t flags, logsectsize, rtsectsize, dirblocksize, logsunit, sick, checked;
  uint64_t reserved[17];
};
static_assert(sizeof(XfsGeometry) == 256, "struct xfs_fsop_geom");
constexpr unsigned long kXfsFsGeometry = _IOR('X', 126, XfsGeometry);

int geometry(int fd, XfsGeometry* g) {
  struct statfs sf;
  if (fstatfs(fd, &sf) != 0) return -1;
  memset(g, 0, sizeof *g);
  g->blocksize = static_cast<uint32_t>(sf.f_bsize);
  g->datablocks = sf.f_blocks;
  g->agcount = 1;
  g->agblocks = sf.f_blocks > UINT32_MAX ? UINT32_MAX : static_cast<uint32_t>(sf.f_blocks);
  g->sectsize = g->logsectsize = 512;
  g->inodesize = 256;
  g->dirblocksize = g->blocksize;
  g->version = 5;
  memcpy(g->uuid, &sf.f_fsid, sizeof sf.f_fsid < sizeof g->uuid ? sizeof sf.f_fsid : sizeof g->uuid);
  return 0;
}

// XFS's special owners (xfs_fs.h), so that xfs_io -c fsmap names them.
constexpr uint64_t fmr_owner(char type, uint32_t code) { return (uint64_t(uint8_t(type)) << 32) | code; }
constexpr uint64_t kOwnFs = fmr_owner('X', 1), kOwnLog = fmr_owner('X', 2), kOwnInodes = fmr_owner('X', 5),
                   kOwnRefc = fmr_owner('X', 6);

bool key_after(const struct fsmap& r, const struct fsmap& k) {
  if (r.fmr_physical != k.fmr_physical) return r.fmr_physical > k.fmr_physical;
  if (r.fmr_owner != k.fmr_owner) return r.fmr_owner > k.fmr_owner;
  return r.fmr_offset > k.fmr_offset;
}

// FS_IOC_GETFSMAP (xfs_ioc_getfsmap): the reverse map after the low key, up to the high key.
// The daemon splits rows where the sharing count changes; XFS keeps one rmap record per owner
// extent (shared if any of it is), so a file's contiguous pieces are merged back into one record
// here. Each call reads the map from the device's start, so that a record merged across a page
// boundary is never returned twice (xfs_io asks for 131072 records at once: one call).
int getfsmap(int fd, const struct stat& st, struct fsmap_head* h) {
  if (h->fmh_iflags & ~FMH_IF_VALID) return fail(EINVAL);
  for (uint64_t r : h->fmh_reserved)
    if (r) return fail(EINVAL);
  for (const struct fsmap& k : h->fmh_keys)
    if (k.fmr_reserved[0] || k.fmr_reserved[1] || k.fmr_reserved[2]) return fail(EINVAL);
  // xfs_ioc_getfsmap needs CAP_SYS_ADMIN.
  {
    struct {
      uint32_t version;
      int pid;
    } hdr{0x20080522, 0};
    struct {
      uint32_t effective, permitted, inheritable;
    } data[2] = {};
    if (syscall(SYS_capget, &hdr, data) != 0 || !(data[0].effective & (1u << 21))) return fail(EPERM);
  }
  const struct fsmap low = h->fmh_keys[0], high = h->fmh_keys[1];
  uint32_t dev = static_cast<uint32_t>((minor(st.st_dev) & 0xff) | (major(st.st_dev) << 8) |
                                       ((minor(st.st_dev) & ~0xffu) << 12));
  std::vector<struct fsmap> recs;
  // Open data records by owner: the index of the one a contiguous next piece extends.
  std::map<uint64_t, size_t> open;
  static daxfs_fsmap q;
  static pthread_mutex_t q_mu = PTHREAD_MUTEX_INITIALIZER;
  pthread_mutex_lock(&q_mu);
  uint64_t at = 0, skip = 0;
  int err = 0;
  for (;;) {
    memset(&q, 0, sizeof q);
    q.start = at;
    q.end = high.fmr_physical == UINT64_MAX ? UINT64_MAX : high.fmr_physical + 1;
    q.skip = skip;
    if (sys_ioctl(fd, DAXFS_IOC_FSMAP, &q) != 0) {
      err = errno;
      break;
    }
    for (uint64_t i = 0; i < q.count; i++) {
      const daxfs_fsmap_row& row = q.rows[i];
      struct fsmap r;
      memset(&r, 0, sizeof r);
      r.fmr_device = dev;
      r.fmr_physical = row.physical;
      r.fmr_length = row.length;
      bool data = false;
      switch (row.kind) {
        case DAXFS_OWN_FREE: r.fmr_owner = FMR_OWN_FREE; r.fmr_flags = FMR_OF_SPECIAL_OWNER; break;
        case DAXFS_OWN_SUPER: r.fmr_owner = kOwnFs; r.fmr_flags = FMR_OF_SPECIAL_OWNER; break;
        case DAXFS_OWN_JOURNAL: r.fmr_owner = kOwnLog; r.fmr_flags = FMR_OF_SPECIAL_OWNER; break;
        case DAXFS_OWN_INODES: r.fmr_owner = kOwnInodes; r.fmr_flags = FMR_OF_SPECIAL_OWNER; break;
        case DAXFS_OWN_REFCOUNT: r.fmr_owner = kOwnRefc; r.fmr_flags = FMR_OF_SPECIAL_OWNER; break;
        case DAXFS_OWN_EXTENT_MAP: r.fmr_owner = row.ino; r.fmr_flags = FMR_OF_EXTENT_MAP; break;
        case DAXFS_OWN_XATTR: r.fmr_owner = row.ino; r.fmr_flags = FMR_OF_ATTR_FORK; break;
        default:  // data, directory and symlink blocks: the inode's own blocks
          data = true;
          r.fmr_owner = row.ino;
          r.fmr_offset = row.logical;
          if (row.flags & DAXFS_EXTENT_UNWRITTEN) r.fmr_flags |= FMR_OF_PREALLOC;
          if (row.flags & DAXFS_EXTENT_SHARED) r.fmr_flags |= FMR_OF_SHARED;
          break;
      }
      if (data) {
        auto it = open.find(r.fmr_owner);
        if (it != open.end()) {
          struct fsmap& o = recs[it->second];
          if (o.fmr_physical + o.fmr_length == r.fmr_physical && o.fmr_offset + o.fmr_length == r.fmr_offset &&
              (o.fmr_flags & FMR_OF_PREALLOC) == (r.fmr_flags & FMR_OF_PREALLOC)) {
            o.fmr_length += r.fmr_length;
            o.fmr_flags |= r.fmr_flags & FMR_OF_SHARED;
            continue;
          }
        }
        open[r.fmr_owner] = recs.size();
      }
      recs.push_back(r);
    }
    if (q.count < DAXFS_FSMAP_MAX) break;
    uint64_t last = q.rows[q.count - 1].physical;
    uint64_t same = 0;
    for (uint64_t i = 0; i < q.count; i++)
      if (q.rows[i].physical == last) same++;
    skip = last == at ? skip + same : same;
    at = last;
  }
  pthread_mutex_unlock(&q_mu);
  if (err) return fail(err);
  std::sort(recs.begin(), recs.end(), [](const struct fsmap& a, const struct fsmap& b) {
    if (a.fmr_physical != b.fmr_physical) return a.fmr_physical < b.fmr_physical;
    if (a.fmr_owner != b.fmr_owner) return a.fmr_owner < b.fmr_owner;
    return a.fmr_offset < b.fmr_offset;
  });
  uint32_t filled = 0, total = 0;
  size_t last_index = 0;
  for (size_t i = 0; i < recs.size(); i++) {
    if (recs[i].fmr_physical > high.fmr_physical || !key_after(recs[i], low)) continue;
    total++;
    last_index = i;
  }
  for (size_t i = 0; i < recs.size() && h->fmh_count > 0 && filled < h->fmh_count; i++) {
    if (recs[i].fmr_physical > high.fmr_physical || !key_after(recs[i], low)) continue;
    h->fmh_recs[filled] = recs[i];
    if (i == last_index) h->fmh_recs[filled].fmr_flags |= FMR_OF_LAST;
    filled++;
  }
  h->fmh_entries = h->fmh_count == 0 ? total : filled;
  h->fmh_oflags = FMH_OF_DEV_T;
  return 0;
}

}  // namespace

bool remap_ioctl(int fd, unsigned long req, void* arg, int* result) {
  if (req != FICLONE && req != FICLONERANGE && req != FIDEDUPERANGE && req != FS_IOC_FIEMAP &&
      req != FS_IOC_GETFSMAP && req != kXfsFsGeometry)
    return false;
  struct stat st;
  if (!on_daxfs(fd, &st)) return false;
  switch (req) {
    case FICLONE:
      *result = clone(fd, st, static_cast<int>(reinterpret_cast<intptr_t>(arg)), 0, 0, 0);
      break;
    case FICLONERANGE: {
      auto* r = static_cast<file_clone_range*>(arg);
      *result = clone(fd, st, static_cast<int>(r->src_fd), r->src_offset, r->src_length, r->dest_offset);
      break;
    }
    case FIDEDUPERANGE:
      *result = dedupe(fd, st, static_cast<file_dedupe_range*>(arg));
      break;
    case FS_IOC_FIEMAP:
      *result = fiemap(fd, st, static_cast<struct fiemap*>(arg));
      break;
    case FS_IOC_GETFSMAP:
      *result = getfsmap(fd, st, static_cast<struct fsmap_head*>(arg));
      break;
    case kXfsFsGeometry:
      *result = geometry(fd, static_cast<XfsGeometry*>(arg));
      break;
  }
  return true;
}

bool remap_fallocate(int fd, int mode, off_t offset, off_t len, int* result) {
  const int ours = FALLOC_FL_UNSHARE_RANGE | FALLOC_FL_COLLAPSE_RANGE | FALLOC_FL_INSERT_RANGE;
  if (!(mode & ours)) return false;
  struct stat st;
  if (!on_daxfs(fd, &st)) return false;
  // vfs_fallocate()'s checks, in its order.
  auto check = [&]() -> int {
    // Linux 6.11+ (this kernel): one mode at a time; collapse and insert without KEEP_SIZE;
    // anything else EOPNOTSUPP (fs/open.c vfs_fallocate), as Filesystem::fallocate answers.
    if (offset < 0 || len <= 0) return EINVAL;
    const int one_mode = mode & ~FALLOC_FL_KEEP_SIZE;
    if (one_mode != FALLOC_FL_UNSHARE_RANGE && one_mode != FALLOC_FL_COLLAPSE_RANGE &&
        one_mode != FALLOC_FL_INSERT_RANGE)
      return EOPNOTSUPP;
    if (one_mode != FALLOC_FL_UNSHARE_RANGE && (mode & FALLOC_FL_KEEP_SIZE)) return EOPNOTSUPP;
    int fl = access_mode(fd);
    if (fl < 0 || (fl & O_ACCMODE) == O_RDONLY || (fl & O_PATH)) return EBADF;
    if (S_ISFIFO(st.st_mode)) return ESPIPE;
    if (S_ISDIR(st.st_mode)) return EISDIR;
    if (!S_ISREG(st.st_mode)) return ENODEV;
    if (static_cast<uint64_t>(offset) + static_cast<uint64_t>(len) > static_cast<uint64_t>(INT64_MAX)) return EFBIG;
    return 0;
  };
  if (int e = check()) {
    *result = fail(e);
    return true;
  }
  daxfs_range r;
  memset(&r, 0, sizeof r);
  r.offset = static_cast<uint64_t>(offset);
  r.length = static_cast<uint64_t>(len);
  unsigned long req = (mode & FALLOC_FL_COLLAPSE_RANGE) ? DAXFS_IOC_COLLAPSE_RANGE
                      : (mode & FALLOC_FL_INSERT_RANGE) ? DAXFS_IOC_INSERT_RANGE
                                                        : DAXFS_IOC_UNSHARE_RANGE;
  if (sys_ioctl(fd, req, &r) == 0) {
    *result = 0;
  } else {
    *result = fail(errno == ENOTTY ? EOPNOTSUPP : errno);  // a daemon without the call
  }
  return true;
}

}  // namespace daxfs::client

using namespace daxfs::client;

extern "C" {

int daxfs_ioctl(int fd, unsigned long request, void* arg) {
  int result;
  if (remap_ioctl(fd, request, arg, &result)) return result;
  return static_cast<int>(syscall(SYS_ioctl, fd, request, arg));
}

int daxfs_fallocate(int fd, int mode, off_t offset, off_t len) {
  int result;
  if (remap_fallocate(fd, mode, offset, len, &result)) return result;
  return static_cast<int>(syscall(SYS_fallocate, fd, mode, offset, len));
}

}  // extern "C"
