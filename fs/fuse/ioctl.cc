// The daemon's ioctls (ABI in daxcore/daxfs_ioctl.h and docs/interface.md): one function per
// command, reached from op_ioctl's switch. The FUSE kernel checks neither permissions nor open
// modes for an ioctl, so each command checks here what the kernel would have checked for XFS.
// Handlers run on any request thread, concurrently; the Filesystem serializes what it must.
#include <linux/capability.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/uio.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <memory>
#include <vector>

#include "daxcore/protocol.h"
#include "daxcore/daxfs_ioctl.h"
#include "fs/fuse/request.h"

#ifndef XFS_IOC_GOINGDOWN
#define XFS_IOC_GOINGDOWN _IOR('X', 125, uint32_t)
#endif

namespace daxfs::fuse {

namespace {

// One ioctl as libfuse hands it over; `ino` is the daxfs inode it was made on.
struct IoctlCall {
  uint64_t ino;
  void* arg;  // the caller's pointer, in the caller's address space
  fuse_file_info* fi;
  const void* in_buf;
  size_t in_size;
  size_t out_size;
};

template <size_t N>
bool all_zero(const uint64_t (&fields)[N]) {
  for (uint64_t f : fields)
    if (f) return false;
  return true;
}

// The calling process, for the permission checks an ioctl makes in place of the open(2) the
// kernel would have made. Reads the caller's supplementary groups and capabilities once, when a
// check first needs them (both from /proc).
class Caller {
 public:
  explicit Caller(fuse_req_t req) : req_(req), ctx_(fuse_req_ctx(req)) {}
  uint32_t uid() const { return static_cast<uint32_t>(ctx_->uid); }

  // Whether the calling thread has `cap` (CAP_*) in its effective set, as the kernel's capable()
  // asks. Not "uid 0": a root process that dropped CAP_SYS_ADMIN (a container, setpriv, capsh)
  // may not do what needs it, and the FUSE kernel, which checks the same capabilities for the
  // requests it forwards (default_permissions), would refuse it too. False when the thread's
  // status cannot be read (it is gone).
  bool capable(int cap) {
    if (!caps_read_) {
      caps_read_ = true;
      char path[64];
      snprintf(path, sizeof path, "/proc/%d/status", static_cast<int>(ctx_->pid));  // a thread id
      if (FILE* f = fopen(path, "re")) {
        char line[256];
        unsigned long long eff;
        while (fgets(line, sizeof line, f))
          if (sscanf(line, "CapEff: %llx", &eff) == 1) caps_ = eff;
        fclose(f);
      }
    }
    return cap >= 0 && cap < 64 && ((caps_ >> cap) & 1);
  }

  // Whether the caller may read (mask 4), write (2) or search (1) `inode`, as generic_permission()
  // decides: the owner, group or other bits that apply (the group class matched against the
  // caller's primary and supplementary groups), else CAP_DAC_OVERRIDE, or CAP_DAC_READ_SEARCH for
  // a read or a search. An access ACL is not evaluated: with one, only the owner passes on bits.
  bool may(const fs::Filesystem::AccessStep& inode, unsigned mask) {
    if (by_bits(inode, mask)) return true;
    if (capable(CAP_DAC_OVERRIDE)) return true;
    return !(mask & 2) && capable(CAP_DAC_READ_SEARCH);
  }
  // Read permission on the file and search permission on each directory of `path` (the file
  // first, then its directories up to the root, as Filesystem::access_path() gives them).
  bool may_open_by_path(const std::vector<fs::Filesystem::AccessStep>& path) {
    if (path.empty()) return false;
    for (size_t i = 0; i < path.size(); i++)
      if (!may(path[i], i == 0 ? 4 : 1)) return false;
    return true;
  }
  // Setuid and setgid go on a change of the file's data without CAP_FSETID (file_remove_privs()).
  fs::Filesystem::KillPriv kill_priv() {
    return capable(CAP_FSETID) ? fs::Filesystem::KillPriv::kNo : fs::Filesystem::KillPriv::kYes;
  }

 private:
  bool by_bits(const fs::Filesystem::AccessStep& inode, unsigned mask) {
    if (uid() == inode.uid) return (inode.mode >> 6) & mask;
    if (inode.acl) return false;
    if (in_group(inode.gid)) return (inode.mode >> 3) & mask;
    return inode.mode & mask;
  }
  bool in_group(uint32_t gid) {
    if (gid == static_cast<uint32_t>(ctx_->gid)) return true;
    if (group_count_ < 0) group_count_ = std::min(fuse_req_getgroups(req_, kMaxGroups, groups_), kMaxGroups);
    for (int i = 0; i < group_count_; i++)
      if (groups_[i] == gid) return true;
    return false;
  }

  static constexpr int kMaxGroups = 256;
  fuse_req_t req_;
  const fuse_ctx* ctx_;
  int group_count_ = -1;  // not read yet; stays negative if reading them failed
  gid_t groups_[kMaxGroups];
  bool caps_read_ = false;
  uint64_t caps_ = 0;  // CapEff of the calling thread
};

// The permission bits of a file the caller holds an fd of. Its stat carries no ACL flag: the
// bits decide (with an ACL, the group bits are its mask).
fs::Filesystem::AccessStep bits_of(const struct stat& st) { return {st.st_mode, st.st_uid, st.st_gid, false}; }

// Reads `length` bytes at `address` in the calling process (process_vm_readv). For the few
// commands whose _IOR encoding hides an input from the FUSE kernel (XFS_IOC_GOINGDOWN's flags).
// False when the daemon may not read the caller (another user's process for a non-root daemon).
bool read_caller(fuse_req_t req, const void* address, void* out, size_t length) {
  iovec local{out, length};
  iovec remote{const_cast<void*>(address), length};
  return process_vm_readv(fuse_req_ctx(req)->pid, &local, 1, &remote, 1, 0) == static_cast<ssize_t>(length);
}

void ioctl_goingdown(fuse_req_t req, const IoctlCall& call) {
  // CAP_SYS_ADMIN in XFS (xfs_fs_goingdown's caller); the FUSE kernel checks nothing. The flags word
  // (XFS_FSOP_GOING_FLAGS_DEFAULT, LOGFLUSH, NOLOGFLUSH: nothing else, EINVAL) is input to
  // XFS, but the command is _IOR, so the FUSE kernel sends none: read it from the caller.
  if (!Caller(req).capable(CAP_SYS_ADMIN)) return void(fuse_reply_err(req, EPERM));
  uint32_t how = 0;
  if (!read_caller(req, call.arg, &how, sizeof how)) how = 0;
  if (how > 2) return void(fuse_reply_err(req, EINVAL));
  fs_of(req).shutdown("XFS_IOC_GOINGDOWN");
  uint32_t zero = 0;
  fuse_reply_ioctl(req, 0, &zero, std::min(call.out_size, sizeof zero));
}

void ioctl_fsgetxattr(fuse_req_t req, const IoctlCall& call) {
  if (call.out_size < sizeof(fsxattr)) return void(fuse_reply_err(req, EINVAL));
  auto f = fs_of(req).get_xflags(call.ino);
  if (!f) return void(fuse_reply_err(req, f.error()));
  fsxattr x{};
  x.fsx_xflags = f->xflags;
  x.fsx_extsize = f->extsize;
  x.fsx_projid = f->projid;
  fuse_reply_ioctl(req, 0, &x, sizeof x);
}

void ioctl_fssetxattr(fuse_req_t req, const IoctlCall& call) {
  fs::Filesystem& fs = fs_of(req);
  if (call.in_size < sizeof(fsxattr)) return void(fuse_reply_err(req, EINVAL));
  // inode_owner_or_capable() (the owner or CAP_FOWNER), as fileattr_set() requires.
  auto attr = fs.getattr(call.ino);
  if (!attr) return void(fuse_reply_err(req, attr.error()));
  Caller caller(req);
  if (caller.uid() != attr->st_uid && !caller.capable(CAP_FOWNER)) return void(fuse_reply_err(req, EPERM));
  fsxattr x;
  memcpy(&x, call.in_buf, sizeof x);
  Status st = fs.set_xflags(call.ino, {x.fsx_xflags, x.fsx_extsize, x.fsx_projid});
  if (!st) return void(fuse_reply_err(req, st.error()));
  fuse_reply_ioctl(req, 0, nullptr, 0);
}

void ioctl_getflags(fuse_req_t req, const IoctlCall& call) {
  auto f = fs_of(req).get_xflags(call.ino);
  if (!f) return void(fuse_reply_err(req, f.error()));
  long flags = (f->xflags & FS_XFLAG_DAX) ? FS_DAX_FL : 0;
  fuse_reply_ioctl(req, 0, &flags, std::min(call.out_size, sizeof flags));
}

void ioctl_getversion(fuse_req_t req, const IoctlCall& call) {
  long generation = static_cast<long>(fs_of(req).generation(call.ino));
  fuse_reply_ioctl(req, 0, &generation, std::min(call.out_size, sizeof generation));
}

void ioctl_counters(fuse_req_t req, const IoctlCall&) {
  fs::Filesystem& fs = fs_of(req);
  const fs::Counters& c = fs.counters();
  struct statvfs s = fs.statfs();
  daxfs_counters out{};
  out.version = 1;
  out.transactions = c.transactions;
  out.reads = c.reads, out.writes = c.writes;
  out.bytes_read = c.bytes_read, out.bytes_written = c.bytes_written;
  out.blocks_allocated = c.blocks_allocated, out.blocks_freed = c.blocks_freed;
  out.poison_events = c.poison_events;
  out.metadata_rebuilt = c.metadata_rebuilt;
  out.recovered_entries = c.recovered_entries, out.orphans_freed = c.orphans_freed;
  out.inodes = fs.inode_count();
  out.free_blocks = s.f_bfree, out.total_blocks = s.f_blocks;
  out.shutdown = fs.is_shut_down();
  out.dax_mode = static_cast<uint64_t>(fs.options().dax);
  out.clones = c.clones, out.dedupes = c.dedupes, out.cow_blocks = c.cow_blocks;
  out.refcount_overflow_copies = c.refcount_overflow_copies, out.post_eof_trimmed = c.post_eof_trimmed;
  fuse_reply_ioctl(req, 0, &out, sizeof out);
}

enum class Remap { kClone, kDedupe };

// The destination of a clone or dedupe: the file the ioctl was made on. Returns 0 or the errno.
int check_remap_destination(fuse_req_t req, Caller& caller, const IoctlCall& call, Remap kind) {
  auto st = fs_of(req).getattr(call.ino);
  if (!st) return st.error();
  if (S_ISDIR(st->st_mode)) return EISDIR;
  if (!S_ISREG(st->st_mode)) return EINVAL;
  if (kind == Remap::kDedupe) {
    // may_dedupe_file() (vfs_dedupe_file_range_one): CAP_SYS_ADMIN, an fd open for writing, the
    // file's owner, or write permission; anyone else EPERM, whatever the fd.
    if (caller.capable(CAP_SYS_ADMIN) || handle_writable(call.fi) || caller.uid() == st->st_uid ||
        caller.may(bits_of(*st), 2))
      return 0;
    return EPERM;
  }
  // do_clone_file_range() -> generic_file_rw_checks(): the destination fd must be open for
  // writing and not O_APPEND (EBADF); and the caller may write the file (what FICLONE's
  // O_WRONLY fd needed at its open: checked again, since the mode may have changed since).
  if (!handle_writable(call.fi) || handle_appends(call.fi)) return EBADF;
  if (!caller.may(bits_of(*st), 2)) return EACCES;
  return 0;
}

// Source: named by inode number, not by an fd the caller opened, so the daemon checks what
// opening it by its path would have: search permission on every directory up to the root and
// read permission on the file (CAP_DAC_READ_SEARCH or CAP_DAC_OVERRIDE pass, as at open).
// Unknown, stale and forbidden sources look the same to a caller without those capabilities.
// Returns 0 or the errno.
int check_remap_source(fs::Filesystem& fs, Caller& caller, const daxfs_clone_range& args, uint64_t src) {
  auto st = fs.getattr(src);
  bool found = st && fs.generation(src) == args.src_generation;
  if (found && caller.may_open_by_path(fs.access_path(src))) return 0;
  bool sees_all = caller.capable(CAP_DAC_READ_SEARCH) || caller.capable(CAP_DAC_OVERRIDE);
  return sees_all && st && !found ? ESTALE : EBADF;
}

void ioctl_remap(fuse_req_t req, const IoctlCall& call, Remap kind) {
  fs::Filesystem& fs = fs_of(req);
  if (call.in_size < sizeof(daxfs_clone_range)) return void(fuse_reply_err(req, EINVAL));
  daxfs_clone_range args;
  memcpy(&args, call.in_buf, sizeof args);
  if (!all_zero(args.reserved)) return void(fuse_reply_err(req, EINVAL));
  Caller caller(req);
  if (int e = check_remap_destination(req, caller, call, kind)) return void(fuse_reply_err(req, e));
  uint64_t src = args.src_ino == FUSE_ROOT_ID ? fs.root_ino() : args.src_ino;
  if (int e = check_remap_source(fs, caller, args, src)) return void(fuse_reply_err(req, e));
  if (kind == Remap::kDedupe) {
    auto r = fs.dedupe_range(src, args.src_offset, call.ino, args.dest_offset, args.src_length);
    if (!r) return void(fuse_reply_err(req, r.error()));
    args.bytes = r->differs ? 0 : r->bytes;
    args.status = r->differs ? 1 : 0;
  } else {
    // Without CAP_FSETID the destination loses setuid/setgid, as on write (file_modified()).
    auto r = fs.clone_range(src, args.src_offset, call.ino, args.dest_offset, args.src_length, caller.kill_priv());
    if (!r) return void(fuse_reply_err(req, r.error()));
    args.bytes = *r;
    args.status = 0;
  }
  fuse_reply_ioctl(req, 0, &args, sizeof args);
}

// The range of an ioctl that stands for a fallocate(2) mode, and the checks the fd it is issued
// on would get, in vfs_fallocate()'s order: reserved fields zero, then an offset and a length
// that are not negative as loff_t and a length that is not 0 (EINVAL), the fd open for writing
// (EBADF), and the caller may write the file (EACCES). Returns 0 or the errno.
int fallocate_args(fuse_req_t req, Caller& caller, const IoctlCall& call, daxfs_range& r) {
  if (call.in_size < sizeof(daxfs_range)) return EINVAL;
  memcpy(&r, call.in_buf, sizeof r);
  if (!all_zero(r.reserved)) return EINVAL;
  if (r.offset > INT64_MAX || r.length == 0 || r.length > INT64_MAX) return EINVAL;
  if (!handle_writable(call.fi)) return EBADF;
  auto attr = fs_of(req).getattr(call.ino);
  if (!attr) return attr.error();
  if (!caller.may(bits_of(*attr), 2)) return EACCES;
  return 0;
}

void ioctl_unshare(fuse_req_t req, const IoctlCall& call) {
  Caller caller(req);
  daxfs_range r;
  if (int e = fallocate_args(req, caller, call, r)) return void(fuse_reply_err(req, e));
  Status st = fs_of(req).unshare_range(call.ino, r.offset, r.length);
  if (!st) return void(fuse_reply_err(req, st.error()));
  fuse_reply_ioctl(req, 0, nullptr, 0);
}

// FALLOC_FL_COLLAPSE_RANGE / FALLOC_FL_INSERT_RANGE (`mode`), which the FUSE kernel never
// forwards; the Filesystem checks the range against the file as XFS does.
void ioctl_shift(fuse_req_t req, const IoctlCall& call, int mode) {
  Caller caller(req);
  daxfs_range r;
  if (int e = fallocate_args(req, caller, call, r)) return void(fuse_reply_err(req, e));
  // file_modified(): without CAP_FSETID setuid/setgid go, as on write.
  Status st = fs_of(req).fallocate(call.ino, mode, r.offset, r.length, caller.kill_priv());
  if (!st) return void(fuse_reply_err(req, st.error()));
  fuse_reply_ioctl(req, 0, nullptr, 0);
}

void ioctl_fiemap(fuse_req_t req, const IoctlCall& call) {
  if (call.in_size < sizeof(daxfs_fiemap) || call.out_size < sizeof(daxfs_fiemap))
    return void(fuse_reply_err(req, EINVAL));
  auto m = std::make_unique<daxfs_fiemap>();
  memcpy(m.get(), call.in_buf, sizeof(daxfs_fiemap));
  if (!all_zero(m->reserved)) return void(fuse_reply_err(req, EINVAL));
  auto rows = fs_of(req).fiemap(call.ino, m->start, DAXFS_FIEMAP_MAX);
  if (!rows) return void(fuse_reply_err(req, rows.error()));
  m->count = rows->size();
  for (size_t i = 0; i < rows->size(); i++)
    m->extents[i] = {(*rows)[i].logical, (*rows)[i].physical, (*rows)[i].length, (*rows)[i].flags};
  fuse_reply_ioctl(req, 0, m.get(), sizeof(daxfs_fiemap));
}

void ioctl_fsmap(fuse_req_t req, const IoctlCall& call) {
  // Every file's layout and owner: CAP_SYS_ADMIN, as xfs_ioc_getfsmap() requires.
  if (!Caller(req).capable(CAP_SYS_ADMIN)) return void(fuse_reply_err(req, EPERM));
  if (call.in_size < sizeof(daxfs_fsmap) || call.out_size < sizeof(daxfs_fsmap))
    return void(fuse_reply_err(req, EINVAL));
  auto m = std::make_unique<daxfs_fsmap>();
  memcpy(m.get(), call.in_buf, sizeof(daxfs_fsmap));
  auto rows = fs_of(req).fsmap(m->start, m->end, m->skip, DAXFS_FSMAP_MAX);
  m->count = rows.size();
  for (size_t i = 0; i < rows.size(); i++)
    m->rows[i] = {rows[i].physical, rows[i].length, rows[i].kind, rows[i].ino, rows[i].logical, rows[i].flags};
  fuse_reply_ioctl(req, 0, m.get(), sizeof(daxfs_fsmap));
}

void ioctl_fileinfo(fuse_req_t req, const IoctlCall& call) {
  fs::Filesystem& fs = fs_of(req);
  auto f = fs.file_info(call.ino);
  if (!f) return void(fuse_reply_err(req, f.error()));
  daxfs_fileinfo out{};
  out.version = 1;
  out.ino = call.ino;
  out.size = f->size, out.extents = f->extents, out.data_blocks = f->data_blocks;
  out.unwritten_blocks = f->unwritten_blocks;
  out.dax_flag = f->dax_flag;
  out.dax = fs.is_dax(call.ino);
  fuse_reply_ioctl(req, 0, &out, sizeof out);
}

// The DAX layer's session: bound to the calling process (the request's pid), its channel made
// for the caller's uid. Anyone who may open a file of the mount may map it through DAX; the
// device's own permissions decide whether the client can map the blocks (docs/interface.md).
void ioctl_dax_connect(fuse_req_t req, const IoctlCall& call) {
  Daemon& d = daemon_of(req);
  if (!d.dax) return void(fuse_reply_err(req, ENOTTY));
  if (call.in_size < sizeof(daxfs_dax_connect) || call.out_size < sizeof(daxfs_dax_connect))
    return void(fuse_reply_err(req, EINVAL));
  daxfs_dax_connect in;
  memcpy(&in, call.in_buf, sizeof in);
  const fuse_ctx* ctx = fuse_req_ctx(req);
  auto out = d.dax->connect(ctx->pid, ctx->uid, in);
  if (!out) return void(fuse_reply_err(req, out.error()));
  fuse_reply_ioctl(req, 0, &*out, sizeof *out);
}

// The access a DAX mapping of this file may have: what the handle's open mode allows.
void ioctl_dax_grant(fuse_req_t req, const IoctlCall& call) {
  Daemon& d = daemon_of(req);
  if (!d.dax) return void(fuse_reply_err(req, ENOTTY));
  if (call.out_size < sizeof(daxfs_dax_grant)) return void(fuse_reply_err(req, EINVAL));
  auto st = fs_of(req).getattr(call.ino);
  if (!st) return void(fuse_reply_err(req, st.error()));
  if (!S_ISREG(st->st_mode)) return void(fuse_reply_err(req, ENODEV));  // mmap(2) of a directory
  if (!handle_readable(call.fi)) return void(fuse_reply_err(req, EACCES));  // mmap needs a readable fd
  auto out = d.dax->grant(fuse_req_ctx(req)->pid, call.ino, handle_writable(call.fi) && !handle_appends(call.fi));
  if (!out) return void(fuse_reply_err(req, out.error()));
  fuse_reply_ioctl(req, 0, &*out, sizeof *out);
}

}  // namespace

void op_ioctl(fuse_req_t req, fuse_ino_t nodeid, int cmd, void* arg, fuse_file_info* fi, unsigned flags,
              const void* in_buf, size_t in_size, size_t out_size) noexcept {
  guarded(req, [&] {
    if (flags & FUSE_IOCTL_COMPAT) return void(fuse_reply_err(req, ENOTTY));
    const IoctlCall call{to_ino(req, nodeid), arg, fi, in_buf, in_size, out_size};
    // A switch rather than a table: a command listed twice does not compile.
    switch (static_cast<unsigned int>(cmd)) {
      case XFS_IOC_GOINGDOWN: return ioctl_goingdown(req, call);
      case FS_IOC_FSGETXATTR: return ioctl_fsgetxattr(req, call);
      case FS_IOC_FSSETXATTR: return ioctl_fssetxattr(req, call);
      case FS_IOC_GETFLAGS: return ioctl_getflags(req, call);
      case FS_IOC_GETVERSION: return ioctl_getversion(req, call);
      case DAXFS_IOC_COUNTERS: return ioctl_counters(req, call);
      case DAXFS_IOC_CLONE_RANGE: return ioctl_remap(req, call, Remap::kClone);
      case DAXFS_IOC_DEDUPE_RANGE: return ioctl_remap(req, call, Remap::kDedupe);
      case DAXFS_IOC_UNSHARE_RANGE: return ioctl_unshare(req, call);
      case DAXFS_IOC_COLLAPSE_RANGE: return ioctl_shift(req, call, FALLOC_FL_COLLAPSE_RANGE);
      case DAXFS_IOC_INSERT_RANGE: return ioctl_shift(req, call, FALLOC_FL_INSERT_RANGE);
      case DAXFS_IOC_FIEMAP: return ioctl_fiemap(req, call);
      case DAXFS_IOC_FSMAP: return ioctl_fsmap(req, call);
      case DAXFS_IOC_FILEINFO: return ioctl_fileinfo(req, call);
      case DAXFS_IOC_DAX_CONNECT: return ioctl_dax_connect(req, call);
      case DAXFS_IOC_DAX_GRANT: return ioctl_dax_grant(req, call);
      default: return void(fuse_reply_err(req, ENOTTY));
    }
  });
}

}  // namespace daxfs::fuse
