// FUSE request -> Filesystem call -> reply. Inode numbers: FUSE's root (1) is the filesystem's
// root inode; every other nodeid is the daxfs inode number itself.
#include "fs/fuse/ops.h"

#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/uio.h>
#include <sys/xattr.h>

#include <cstring>
#include <memory>
#include <new>
#include <vector>

#include "fs/daxfs_ioctl.h"

#ifndef XFS_IOC_GOINGDOWN
#define XFS_IOC_GOINGDOWN _IOR('X', 125, uint32_t)
#endif

namespace daxfs::fuse {

namespace {

Daemon& daemon_of(fuse_req_t req) { return *static_cast<Daemon*>(fuse_req_userdata(req)); }
fs::Filesystem& fs_of(fuse_req_t req) { return *daemon_of(req).fs; }

uint64_t to_ino(fuse_req_t req, fuse_ino_t ino) {
  return ino == FUSE_ROOT_ID ? fs_of(req).root_ino() : ino;
}
fuse_ino_t to_nodeid(fuse_req_t req, uint64_t ino) {
  return ino == fs_of(req).root_ino() ? FUSE_ROOT_ID : ino;
}

fs::Cred cred_of(fuse_req_t req) {
  const fuse_ctx* ctx = fuse_req_ctx(req);
  return {static_cast<uint32_t>(ctx->uid), static_cast<uint32_t>(ctx->gid), static_cast<uint32_t>(ctx->umask)};
}

void reply_entry(fuse_req_t req, const Result<struct stat>& st) {
  if (!st) {
    fuse_reply_err(req, st.error());
    return;
  }
  fuse_entry_param e{};
  e.attr = *st;
  e.ino = to_nodeid(req, st->st_ino);
  e.attr.st_ino = e.ino == FUSE_ROOT_ID ? st->st_ino : e.ino;
  e.generation = fs_of(req).generation(st->st_ino);
  e.attr_timeout = daemon_of(req).timeout;
  e.entry_timeout = daemon_of(req).timeout;
  // An interrupted request's reply is dropped: the kernel never counted this lookup.
  if (fuse_reply_entry(req, &e) == -ENOENT) fs_of(req).forget(st->st_ino, 1);
}

void reply_attr(fuse_req_t req, const Result<struct stat>& st) {
  if (!st) {
    fuse_reply_err(req, st.error());
    return;
  }
  fuse_reply_attr(req, &*st, daemon_of(req).timeout);
}

void reply_status(fuse_req_t req, const Status& st) { fuse_reply_err(req, st ? 0 : st.error()); }

// Runs a handler body, turning std::bad_alloc into ENOMEM: no exception crosses libfuse.
template <typename F>
void guarded(fuse_req_t req, F&& body) noexcept {
  try {
    body();
  } catch (const std::bad_alloc&) {
    fuse_reply_err(req, ENOMEM);
  }
}

void op_init(void* userdata, fuse_conn_info* conn) noexcept {
  auto* d = static_cast<Daemon*>(userdata);
  auto want = [conn](unsigned cap) {
    if (conn->capable & cap) conn->want |= cap;
  };
  // ACLs enforced by the kernel and kept by us; the umask applied by us (DONT_MASK), because a
  // default ACL replaces it; ioctls on directories (XFS_IOC_GOINGDOWN on the mount point).
  want(FUSE_CAP_POSIX_ACL);
  want(FUSE_CAP_DONT_MASK);
  want(FUSE_CAP_IOCTL_DIR);
  want(FUSE_CAP_EXPORT_SUPPORT);
  // The kernel clears setuid/setgid on write, truncate and chown (we would have to otherwise).
  conn->want &= ~FUSE_CAP_HANDLE_KILLPRIV;
  conn->want &= ~FUSE_CAP_WRITEBACK_CACHE;  // every write reaches the device before its reply
  conn->max_write = d->max_write;
  conn->time_gran = 1;
}

void op_destroy(void* userdata) noexcept {
  auto* d = static_cast<Daemon*>(userdata);
  d->fs->unmount();
}

void op_lookup(fuse_req_t req, fuse_ino_t parent, const char* name) noexcept {
  guarded(req, [&] { reply_entry(req, fs_of(req).lookup(to_ino(req, parent), name)); });
}

void op_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup) noexcept {
  fs_of(req).forget(to_ino(req, ino), nlookup);
  fuse_reply_none(req);
}

void op_forget_multi(fuse_req_t req, size_t count, fuse_forget_data* forgets) noexcept {
  for (size_t i = 0; i < count; i++) fs_of(req).forget(to_ino(req, forgets[i].ino), forgets[i].nlookup);
  fuse_reply_none(req);
}

void op_getattr(fuse_req_t req, fuse_ino_t ino, fuse_file_info*) noexcept {
  guarded(req, [&] { reply_attr(req, fs_of(req).getattr(to_ino(req, ino))); });
}

void op_setattr(fuse_req_t req, fuse_ino_t ino, struct stat* attr, int to_set, fuse_file_info*) noexcept {
  guarded(req, [&] {
    fs::SetAttr a;
    if (to_set & FUSE_SET_ATTR_MODE) a.valid |= fs::SetAttr::kMode, a.mode = attr->st_mode;
    if (to_set & FUSE_SET_ATTR_UID) a.valid |= fs::SetAttr::kUid, a.uid = attr->st_uid;
    if (to_set & FUSE_SET_ATTR_GID) a.valid |= fs::SetAttr::kGid, a.gid = attr->st_gid;
    if (to_set & FUSE_SET_ATTR_SIZE) a.valid |= fs::SetAttr::kSize, a.size = static_cast<uint64_t>(attr->st_size);
    if (to_set & FUSE_SET_ATTR_ATIME_NOW) a.valid |= fs::SetAttr::kAtimeNow;
    else if (to_set & FUSE_SET_ATTR_ATIME) a.valid |= fs::SetAttr::kAtime, a.atime = attr->st_atim;
    if (to_set & FUSE_SET_ATTR_MTIME_NOW) a.valid |= fs::SetAttr::kMtimeNow;
    else if (to_set & FUSE_SET_ATTR_MTIME) a.valid |= fs::SetAttr::kMtime, a.mtime = attr->st_mtim;
    if (to_set & FUSE_SET_ATTR_CTIME) a.valid |= fs::SetAttr::kCtime, a.ctime = attr->st_ctim;
    reply_attr(req, fs_of(req).setattr(to_ino(req, ino), a));
  });
}

void op_readlink(fuse_req_t req, fuse_ino_t ino) noexcept {
  guarded(req, [&] {
    auto r = fs_of(req).readlink(to_ino(req, ino));
    if (!r) return void(fuse_reply_err(req, r.error()));
    fuse_reply_readlink(req, r->c_str());
  });
}

void op_mknod(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode, dev_t rdev) noexcept {
  guarded(req, [&] { reply_entry(req, fs_of(req).mknod(to_ino(req, parent), name, mode, rdev, cred_of(req))); });
}

void op_mkdir(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode) noexcept {
  guarded(req, [&] { reply_entry(req, fs_of(req).mkdir(to_ino(req, parent), name, mode, cred_of(req))); });
}

void op_symlink(fuse_req_t req, const char* link, fuse_ino_t parent, const char* name) noexcept {
  guarded(req, [&] { reply_entry(req, fs_of(req).symlink(to_ino(req, parent), name, link, cred_of(req))); });
}

void op_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t parent, const char* name) noexcept {
  guarded(req, [&] { reply_entry(req, fs_of(req).link(to_ino(req, ino), to_ino(req, parent), name)); });
}

void op_unlink(fuse_req_t req, fuse_ino_t parent, const char* name) noexcept {
  guarded(req, [&] { reply_status(req, fs_of(req).unlink(to_ino(req, parent), name)); });
}

void op_rmdir(fuse_req_t req, fuse_ino_t parent, const char* name) noexcept {
  guarded(req, [&] { reply_status(req, fs_of(req).rmdir(to_ino(req, parent), name)); });
}

void op_rename(fuse_req_t req, fuse_ino_t parent, const char* name, fuse_ino_t newparent, const char* newname,
               unsigned int flags) noexcept {
  guarded(req, [&] {
    reply_status(req, fs_of(req).rename(to_ino(req, parent), name, to_ino(req, newparent), newname, flags));
  });
}

// A FUSE ioctl carries the file handle but not the open flags, so the handle keeps them: the
// access mode and O_APPEND, which decide what FICLONE-like ioctls may do with the fd. A
// directory's handle (opendir) is 0: neither readable nor writable for those checks.
constexpr uint64_t kHandleOpen = 1ull << 63;
void remember_open_flags(fuse_file_info* fi) {
  fi->fh = kHandleOpen | static_cast<uint64_t>(fi->flags & (O_ACCMODE | O_APPEND));
}
bool handle_writable(const fuse_file_info* fi) {
  if (!fi || !(fi->fh & kHandleOpen)) return false;
  unsigned mode = fi->fh & O_ACCMODE;
  return mode == O_WRONLY || mode == O_RDWR;
}
bool handle_appends(const fuse_file_info* fi) { return fi && (fi->fh & kHandleOpen) && (fi->fh & O_APPEND); }

template <size_t N>
bool all_zero(const uint64_t (&fields)[N]) {
  for (uint64_t f : fields)
    if (f) return false;
  return true;
}

void set_open_mode(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  remember_open_flags(fi);
  // Every operation is durable before its reply, so close(2) has nothing to flush: no FLUSH
  // round trip (FOPEN_NOFLUSH) except after a shutdown, when reporting EIO matters more.
  fi->noflush = fs_of(req).is_shut_down() ? 0 : 1;
  // DAX files never enter the kernel page cache; the others keep theirs across opens, since
  // every change goes through this daemon.
  if (fs_of(req).is_dax(to_ino(req, ino))) {
    fi->direct_io = 1;
  } else {
    fi->keep_cache = 1;
  }
}

void op_open(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) noexcept {
  guarded(req, [&] {
    auto st = fs_of(req).getattr(to_ino(req, ino));
    if (!st) return void(fuse_reply_err(req, st.error()));
    if (S_ISDIR(st->st_mode)) return void(fuse_reply_err(req, EISDIR));
    if ((fi->flags & O_TRUNC) && (fi->flags & O_ACCMODE) != O_RDONLY) {
      fs::SetAttr a;
      a.valid = fs::SetAttr::kSize;
      a.size = 0;
      auto r = fs_of(req).setattr(to_ino(req, ino), a);
      if (!r) return void(fuse_reply_err(req, r.error()));
    }
    set_open_mode(req, ino, fi);
    fuse_reply_open(req, fi);
  });
}

void op_create(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode, fuse_file_info* fi) noexcept {
  guarded(req, [&] {
    auto st = fs_of(req).mknod(to_ino(req, parent), name, (mode & 07777) | S_IFREG, 0, cred_of(req));
    if (!st) return void(fuse_reply_err(req, st.error()));
    fuse_entry_param e{};
    e.attr = *st;
    e.ino = st->st_ino;
    e.generation = fs_of(req).generation(st->st_ino);
    e.attr_timeout = daemon_of(req).timeout;
    e.entry_timeout = daemon_of(req).timeout;
    set_open_mode(req, e.ino, fi);
    if (fuse_reply_create(req, &e, fi) == -ENOENT) fs_of(req).forget(st->st_ino, 1);  // interrupted
  });
}

void op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info*) noexcept {
  guarded(req, [&] {
    if (off < 0) return void(fuse_reply_err(req, EINVAL));
    thread_local std::vector<char> buf;
    if (buf.size() < size) buf.resize(size);
    auto n = fs_of(req).read(to_ino(req, ino), static_cast<uint64_t>(off), size, buf.data());
    if (!n) return void(fuse_reply_err(req, n.error()));
    fuse_reply_buf(req, buf.data(), *n);
  });
}

void op_write(fuse_req_t req, fuse_ino_t ino, const char* data, size_t size, off_t off, fuse_file_info*) noexcept {
  guarded(req, [&] {
    if (off < 0) return void(fuse_reply_err(req, EINVAL));
    // Without CAP_FSETID (approximated by uid 0) a write strips setuid/setgid.
    auto kill = fuse_req_ctx(req)->uid == 0 ? fs::Filesystem::KillPriv::kNo : fs::Filesystem::KillPriv::kYes;
    bool setid = false;
    if (kill == fs::Filesystem::KillPriv::kYes) {
      auto st = fs_of(req).getattr(to_ino(req, ino));
      setid = st && (st->st_mode & (S_ISUID | S_ISGID));
    }
    auto n = fs_of(req).write(to_ino(req, ino), static_cast<uint64_t>(off), data, size, kill);
    if (!n) return void(fuse_reply_err(req, n.error()));
    // The kernel keeps the cached mode after a direct write: tell it the set-id bits went.
    if (setid) fuse_lowlevel_notify_inval_inode(daemon_of(req).se, ino, -1, 0);
    fuse_reply_write(req, *n);
  });
}

void op_flush(fuse_req_t req, fuse_ino_t, fuse_file_info*) noexcept {
  fuse_reply_err(req, fs_of(req).is_shut_down() ? EIO : 0);
}

void op_release(fuse_req_t req, fuse_ino_t, fuse_file_info*) noexcept { fuse_reply_err(req, 0); }

void op_fsync(fuse_req_t req, fuse_ino_t, int, fuse_file_info*) noexcept {
  // Every operation is durable before its reply: there is nothing left to flush.
  fuse_reply_err(req, fs_of(req).is_shut_down() ? EIO : 0);
}

void op_opendir(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) noexcept {
  guarded(req, [&] {
    auto st = fs_of(req).getattr(to_ino(req, ino));
    if (!st) return void(fuse_reply_err(req, st.error()));
    if (!S_ISDIR(st->st_mode)) return void(fuse_reply_err(req, ENOTDIR));
    fuse_reply_open(req, fi);
  });
}

void op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info*) noexcept {
  guarded(req, [&] {
    std::vector<char> buf(size);
    size_t used = 0;
    auto st = fs_of(req).readdir(to_ino(req, ino), static_cast<uint64_t>(off), [&](const fs::DirEntry& e) {
      struct stat s {};
      s.st_ino = e.ino;
      s.st_mode = e.type << 12;
      std::string name(e.name);
      size_t need = fuse_add_direntry(req, buf.data() + used, size - used, name.c_str(), &s,
                                      static_cast<off_t>(e.next_offset));
      if (need > size - used) return false;
      used += need;
      return true;
    });
    if (!st) return void(fuse_reply_err(req, st.error()));
    fuse_reply_buf(req, buf.data(), used);
  });
}

void op_releasedir(fuse_req_t req, fuse_ino_t, fuse_file_info*) noexcept { fuse_reply_err(req, 0); }

void op_fsyncdir(fuse_req_t req, fuse_ino_t, int, fuse_file_info*) noexcept {
  fuse_reply_err(req, fs_of(req).is_shut_down() ? EIO : 0);
}

void op_statfs(fuse_req_t req, fuse_ino_t) noexcept {
  if (fs_of(req).is_shut_down()) return void(fuse_reply_err(req, EIO));
  struct statvfs s = fs_of(req).statfs();
  fuse_reply_statfs(req, &s);
}

void op_setxattr(fuse_req_t req, fuse_ino_t ino, const char* name, const char* value, size_t size,
                 int flags) noexcept {
  guarded(req, [&] {
    reply_status(req, fs_of(req).setxattr(to_ino(req, ino), name, std::string_view(value, size), flags));
  });
}

void reply_sized(fuse_req_t req, const Result<std::string>& r, size_t size) {
  if (!r) return void(fuse_reply_err(req, r.error()));
  if (size == 0) return void(fuse_reply_xattr(req, r->size()));
  if (r->size() > size) return void(fuse_reply_err(req, ERANGE));
  fuse_reply_buf(req, r->data(), r->size());
}

void op_getxattr(fuse_req_t req, fuse_ino_t ino, const char* name, size_t size) noexcept {
  guarded(req, [&] { reply_sized(req, fs_of(req).getxattr(to_ino(req, ino), name), size); });
}

void op_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size) noexcept {
  guarded(req, [&] {
    auto names = fs_of(req).listxattr(to_ino(req, ino));
    if (names && fuse_req_ctx(req)->uid != 0) {
      // trusted.* is visible only with CAP_SYS_ADMIN (Linux filters it in the filesystem).
      std::string visible;
      for (size_t pos = 0; pos < names->size();) {
        size_t end = names->find('\0', pos);
        std::string_view name(names->data() + pos, end - pos);
        if (!name.starts_with("trusted.")) visible.append(name).push_back('\0');
        pos = end + 1;
      }
      return reply_sized(req, Result<std::string>(visible), size);
    }
    reply_sized(req, names, size);
  });
}

void op_removexattr(fuse_req_t req, fuse_ino_t ino, const char* name) noexcept {
  guarded(req, [&] { reply_status(req, fs_of(req).removexattr(to_ino(req, ino), name)); });
}

void op_fallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t off, off_t length, fuse_file_info*) noexcept {
  guarded(req, [&] {
    if (off < 0 || length <= 0) return void(fuse_reply_err(req, EINVAL));
    reply_status(req, fs_of(req).fallocate(to_ino(req, ino), mode, static_cast<uint64_t>(off),
                                           static_cast<uint64_t>(length)));
  });
}

void op_lseek(fuse_req_t req, fuse_ino_t ino, off_t off, int whence, fuse_file_info*) noexcept {
  guarded(req, [&] {
    if (off < 0) return void(fuse_reply_err(req, ENXIO));
    auto r = fs_of(req).lseek(to_ino(req, ino), static_cast<uint64_t>(off), whence);
    if (!r) return void(fuse_reply_err(req, r.error()));
    fuse_reply_lseek(req, static_cast<off_t>(*r));
  });
}

void op_copy_file_range(fuse_req_t req, fuse_ino_t ino_in, off_t off_in, fuse_file_info*, fuse_ino_t ino_out,
                        off_t off_out, fuse_file_info*, size_t len, int flags) noexcept {
  guarded(req, [&] {
    if (flags != 0 || off_in < 0 || off_out < 0) return void(fuse_reply_err(req, EINVAL));
    auto n = fs_of(req).copy_range(to_ino(req, ino_in), static_cast<uint64_t>(off_in), to_ino(req, ino_out),
                                   static_cast<uint64_t>(off_out), len);
    if (!n) return void(fuse_reply_err(req, n.error()));
    fuse_reply_write(req, static_cast<size_t>(*n));
  });
}

// After a remap changed a file under the kernel: its attributes now, its cached pages (page
// cache mode only) from the invalidation worker.
void remapped(fuse_req_t req, uint64_t ino) {
  fuse_ino_t nodeid = to_nodeid(req, ino);
  fuse_lowlevel_notify_inval_inode(daemon_of(req).se, nodeid, -1, 0);
  if (!fs_of(req).is_dax(ino)) daemon_of(req).pages.queue(nodeid);
}

// Whether the caller may read (mask 4) or write (mask 2) a file: root, or the owner/group/other
// permission bit that applies. FICLONE checks the open modes of its fds; a FUSE ioctl carries no
// open flags, so the daemon checks what opening them would have required.
bool may(fuse_req_t req, const struct stat& st, unsigned mask) {
  const fuse_ctx* ctx = fuse_req_ctx(req);
  if (ctx->uid == 0) return true;
  if (ctx->uid == st.st_uid) return (st.st_mode >> 6) & mask;
  if (ctx->gid == st.st_gid) return (st.st_mode >> 3) & mask;
  return st.st_mode & mask;
}

// The caller's permission along `path` (file first, then its directories): read on the file,
// search on each directory, by owner/group/other bits with the caller's supplementary groups.
// An access ACL is not evaluated here: only its owner passes such a step.
bool may_open_by_path(fuse_req_t req, const std::vector<fs::Filesystem::AccessStep>& path) {
  if (path.empty()) return false;
  const fuse_ctx* ctx = fuse_req_ctx(req);
  gid_t groups[256];
  int n = fuse_req_getgroups(req, 256, groups);
  auto in_group = [&](uint32_t gid) {
    if (gid == ctx->gid) return true;
    for (int i = 0; i < std::min(n, 256); i++)
      if (groups[i] == gid) return true;
    return false;
  };
  for (size_t i = 0; i < path.size(); i++) {
    const auto& s = path[i];
    unsigned mask = i == 0 ? 4 : 1;  // read the file, search the directories
    bool ok;
    if (ctx->uid == s.uid) ok = (s.mode >> 6) & mask;
    else if (s.acl) ok = false;
    else if (in_group(s.gid)) ok = (s.mode >> 3) & mask;
    else ok = s.mode & mask;
    if (!ok) return false;
  }
  return true;
}

void ioctl_remap(fuse_req_t req, uint64_t dst, fuse_file_info* fi, const void* in_buf, size_t in_size,
                 bool dedupe) {
  fs::Filesystem& fs = fs_of(req);
  if (in_size < sizeof(daxfs_clone_range)) return void(fuse_reply_err(req, EINVAL));
  daxfs_clone_range args;
  memcpy(&args, in_buf, sizeof args);
  if (!all_zero(args.reserved)) return void(fuse_reply_err(req, EINVAL));
  const fuse_ctx* ctx = fuse_req_ctx(req);
  auto dst_st = fs.getattr(dst);
  if (!dst_st) return void(fuse_reply_err(req, dst_st.error()));
  if (S_ISDIR(dst_st->st_mode)) return void(fuse_reply_err(req, EISDIR));
  if (!S_ISREG(dst_st->st_mode)) return void(fuse_reply_err(req, EINVAL));
  // do_clone_file_range(): the destination fd must be open for writing and not O_APPEND
  // (EBADF). Dedupe has allow_file_dedupe() instead: a read-only fd passes for root, the owner
  // or a caller with write permission (checked below).
  if (!dedupe && (!handle_writable(fi) || handle_appends(fi))) return void(fuse_reply_err(req, EBADF));
  // Destination: what FICLONE's O_WRONLY fd would need; dedupe: allow_file_dedupe() (root,
  // the owner, or write permission).
  if (!may(req, *dst_st, 2) && !(dedupe && ctx->uid == dst_st->st_uid)) return void(fuse_reply_err(req, EACCES));
  // Source: named by inode number, not by an fd the caller opened, so the daemon checks what
  // opening it by its path would have: search permission on every directory up to the root and
  // read permission on the file. Unknown, stale and forbidden sources look the same to a
  // non-root caller.
  uint64_t src = args.src_ino == FUSE_ROOT_ID ? fs.root_ino() : args.src_ino;
  auto st = fs.getattr(src);
  bool found = st && fs.generation(src) == args.src_generation;
  if (ctx->uid != 0 && (!found || !may_open_by_path(req, fs.access_path(src))))
    return void(fuse_reply_err(req, EBADF));
  if (!found) return void(fuse_reply_err(req, st ? ESTALE : EBADF));
  if (dedupe) {
    auto r = fs.dedupe_range(src, args.src_offset, dst, args.dest_offset, args.src_length);
    if (!r) return void(fuse_reply_err(req, r.error()));
    args.bytes = r->differs ? 0 : r->bytes;
    args.status = r->differs ? 1 : 0;
  } else {
    // Without CAP_FSETID (approximated by uid 0) the destination loses setuid/setgid, as on write.
    auto kill = ctx->uid == 0 ? fs::Filesystem::KillPriv::kNo : fs::Filesystem::KillPriv::kYes;
    auto r = fs.clone_range(src, args.src_offset, dst, args.dest_offset, args.src_length, kill);
    if (!r) return void(fuse_reply_err(req, r.error()));
    args.bytes = *r;
    args.status = 0;
  }
  if (!(dedupe && args.status)) remapped(req, dst);
  fuse_reply_ioctl(req, 0, &args, sizeof args);
}

// Reads `length` bytes at `address` in the calling process (process_vm_readv). For the few
// commands whose _IOR encoding hides an input from the FUSE kernel (XFS_IOC_GOINGDOWN's flags).
// False when the daemon may not read the caller (another user's process for a non-root daemon).
bool read_caller(fuse_req_t req, const void* address, void* out, size_t length) {
  iovec local{out, length};
  iovec remote{const_cast<void*>(address), length};
  return process_vm_readv(fuse_req_ctx(req)->pid, &local, 1, &remote, 1, 0) == static_cast<ssize_t>(length);
}

void op_ioctl(fuse_req_t req, fuse_ino_t nodeid, int cmd_arg, void* arg, fuse_file_info* fi, unsigned flags,
              const void* in_buf, size_t in_size, size_t out_size) noexcept {
  guarded(req, [&] {
    if (flags & FUSE_IOCTL_COMPAT) return void(fuse_reply_err(req, ENOTTY));
    fs::Filesystem& fs = fs_of(req);
    uint64_t ino = to_ino(req, nodeid);
    switch (static_cast<unsigned int>(cmd_arg)) {
      case XFS_IOC_GOINGDOWN: {
        // CAP_SYS_ADMIN in XFS; the FUSE kernel checks nothing, so: root only. The flags word
        // (XFS_FSOP_GOING_FLAGS_DEFAULT, LOGFLUSH, NOLOGFLUSH: nothing else, EINVAL) is input to
        // XFS, but the command is _IOR, so the FUSE kernel sends none: read it from the caller.
        if (fuse_req_ctx(req)->uid != 0) return void(fuse_reply_err(req, EPERM));
        uint32_t how = 0;
        if (!read_caller(req, arg, &how, sizeof how)) how = 0;
        if (how > 2) return void(fuse_reply_err(req, EINVAL));
        fs.shutdown("XFS_IOC_GOINGDOWN");
        uint32_t zero = 0;
        return void(fuse_reply_ioctl(req, 0, &zero, std::min(out_size, sizeof zero)));
      }
      case FS_IOC_FSGETXATTR: {
        if (out_size < sizeof(fsxattr)) return void(fuse_reply_err(req, EINVAL));
        auto f = fs.get_xflags(ino);
        if (!f) return void(fuse_reply_err(req, f.error()));
        fsxattr x{};
        x.fsx_xflags = f->xflags;
        x.fsx_extsize = f->extsize;
        x.fsx_projid = f->projid;
        return void(fuse_reply_ioctl(req, 0, &x, sizeof x));
      }
      case FS_IOC_FSSETXATTR: {
        if (in_size < sizeof(fsxattr)) return void(fuse_reply_err(req, EINVAL));
        // inode_owner_or_capable(), as fileattr_set() requires.
        auto attr = fs.getattr(ino);
        if (!attr) return void(fuse_reply_err(req, attr.error()));
        if (fuse_req_ctx(req)->uid != 0 && fuse_req_ctx(req)->uid != attr->st_uid)
          return void(fuse_reply_err(req, EPERM));
        fsxattr x;
        memcpy(&x, in_buf, sizeof x);
        fs::Filesystem::XAttrFlags f{x.fsx_xflags, x.fsx_extsize, x.fsx_projid};
        Status st = fs.set_xflags(ino, f);
        if (!st) return void(fuse_reply_err(req, st.error()));
        return void(fuse_reply_ioctl(req, 0, nullptr, 0));
      }
      case FS_IOC_GETFLAGS: {
        auto f = fs.get_xflags(ino);
        if (!f) return void(fuse_reply_err(req, f.error()));
        long flags_out = (f->xflags & FS_XFLAG_DAX) ? FS_DAX_FL : 0;
        return void(fuse_reply_ioctl(req, 0, &flags_out, std::min(out_size, sizeof flags_out)));
      }
      case DAXFS_IOC_COUNTERS: {
        const fs::Counters& c = fs.counters();
        struct statvfs s = fs.statfs();
        daxfs_counters out{};
        out.version = 1;
        out.transactions = c.transactions;
        out.reads = c.reads, out.writes = c.writes;
        out.bytes_read = c.bytes_read, out.bytes_written = c.bytes_written;
        out.blocks_allocated = c.blocks_allocated, out.blocks_freed = c.blocks_freed;
        out.poison_events = c.poison_events;
        out.recovered_entries = c.recovered_entries, out.orphans_freed = c.orphans_freed;
        out.inodes = fs.inode_count();
        out.free_blocks = s.f_bfree, out.total_blocks = s.f_blocks;
        out.shutdown = fs.is_shut_down();
        out.dax_mode = static_cast<uint64_t>(fs.options().dax);
        out.clones = c.clones, out.dedupes = c.dedupes, out.cow_blocks = c.cow_blocks;
        out.refcount_overflow_copies = c.refcount_overflow_copies, out.post_eof_trimmed = c.post_eof_trimmed;
        return void(fuse_reply_ioctl(req, 0, &out, sizeof out));
      }
      case FS_IOC_GETVERSION: {
        long generation = static_cast<long>(fs.generation(ino));
        return void(fuse_reply_ioctl(req, 0, &generation, std::min(out_size, sizeof generation)));
      }
      case DAXFS_IOC_CLONE_RANGE:
        return ioctl_remap(req, ino, fi, in_buf, in_size, false);
      case DAXFS_IOC_DEDUPE_RANGE:
        return ioctl_remap(req, ino, fi, in_buf, in_size, true);
      case DAXFS_IOC_UNSHARE_RANGE: {
        if (in_size < sizeof(daxfs_range)) return void(fuse_reply_err(req, EINVAL));
        daxfs_range r;
        memcpy(&r, in_buf, sizeof r);
        if (!all_zero(r.reserved)) return void(fuse_reply_err(req, EINVAL));
        // vfs_fallocate(): the fd must be open for writing (EBADF).
        if (!handle_writable(fi)) return void(fuse_reply_err(req, EBADF));
        auto attr = fs.getattr(ino);
        if (!attr) return void(fuse_reply_err(req, attr.error()));
        if (!may(req, *attr, 2)) return void(fuse_reply_err(req, EACCES));
        Status st = fs.unshare_range(ino, r.offset, r.length);
        if (!st) return void(fuse_reply_err(req, st.error()));
        return void(fuse_reply_ioctl(req, 0, nullptr, 0));
      }
      case DAXFS_IOC_FIEMAP: {
        if (in_size < sizeof(daxfs_fiemap) || out_size < sizeof(daxfs_fiemap)) return void(fuse_reply_err(req, EINVAL));
        auto m = std::make_unique<daxfs_fiemap>();
        memcpy(m.get(), in_buf, sizeof(daxfs_fiemap));
        if (!all_zero(m->reserved)) return void(fuse_reply_err(req, EINVAL));
        auto rows = fs.fiemap(ino, m->start, DAXFS_FIEMAP_MAX);
        if (!rows) return void(fuse_reply_err(req, rows.error()));
        m->count = rows->size();
        for (size_t i = 0; i < rows->size(); i++)
          m->extents[i] = {(*rows)[i].logical, (*rows)[i].physical, (*rows)[i].length, (*rows)[i].flags};
        return void(fuse_reply_ioctl(req, 0, m.get(), sizeof(daxfs_fiemap)));
      }
      case DAXFS_IOC_FSMAP: {
        // Every file's layout and owner: CAP_SYS_ADMIN, as xfs_ioc_getfsmap() requires.
        if (fuse_req_ctx(req)->uid != 0) return void(fuse_reply_err(req, EPERM));
        if (in_size < sizeof(daxfs_fsmap) || out_size < sizeof(daxfs_fsmap)) return void(fuse_reply_err(req, EINVAL));
        auto m = std::make_unique<daxfs_fsmap>();
        memcpy(m.get(), in_buf, sizeof(daxfs_fsmap));
        auto rows = fs.fsmap(m->start, m->end, m->skip, DAXFS_FSMAP_MAX);
        m->count = rows.size();
        for (size_t i = 0; i < rows.size(); i++)
          m->rows[i] = {rows[i].physical, rows[i].length, rows[i].kind, rows[i].ino, rows[i].logical, rows[i].flags};
        return void(fuse_reply_ioctl(req, 0, m.get(), sizeof(daxfs_fsmap)));
      }
      case DAXFS_IOC_FILEINFO: {
        auto f = fs.file_info(ino);
        if (!f) return void(fuse_reply_err(req, f.error()));
        daxfs_fileinfo out{};
        out.version = 1;
        out.ino = ino;
        out.size = f->size, out.extents = f->extents, out.data_blocks = f->data_blocks;
        out.unwritten_blocks = f->unwritten_blocks;
        out.dax_flag = f->dax_flag;
        out.dax = fs.is_dax(ino);
        return void(fuse_reply_ioctl(req, 0, &out, sizeof out));
      }
      default:
        return void(fuse_reply_err(req, ENOTTY));
    }
  });
}

}  // namespace

void Invalidator::start(fuse_session* se) {
  se_ = se;
  thread_ = std::thread([this] { run(); });
}

void Invalidator::stop() {
  {
    std::lock_guard<std::mutex> g(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void Invalidator::queue(fuse_ino_t nodeid) {
  {
    std::lock_guard<std::mutex> g(mu_);
    pending_.push_back(nodeid);
  }
  cv_.notify_all();
}

void Invalidator::run() {
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    cv_.wait(lock, [this] { return stopping_ || !pending_.empty(); });
    std::vector<fuse_ino_t> batch;
    batch.swap(pending_);
    lock.unlock();
    for (fuse_ino_t n : batch) fuse_lowlevel_notify_inval_inode(se_, n, 0, 0);
    lock.lock();
    if (stopping_ && pending_.empty()) return;
  }
}

void install_shutdown_hook(Daemon& daemon) {
  daemon.fs->set_shutdown_hook([&daemon] {
    daemon.invalidator = std::thread([&daemon] {
      for (uint64_t ino : daemon.fs->referenced_inodes()) {
        fuse_ino_t nodeid = ino == daemon.fs->root_ino() ? FUSE_ROOT_ID : ino;
        fuse_lowlevel_notify_inval_inode(daemon.se, nodeid, -1, 0);  // attributes only
      }
    });
  });
}

void assign_operations(fuse_lowlevel_ops& ops) {
  ops.init = op_init;
  ops.destroy = op_destroy;
  ops.lookup = op_lookup;
  ops.forget = op_forget;
  ops.forget_multi = op_forget_multi;
  ops.getattr = op_getattr;
  ops.setattr = op_setattr;
  ops.readlink = op_readlink;
  ops.mknod = op_mknod;
  ops.mkdir = op_mkdir;
  ops.symlink = op_symlink;
  ops.link = op_link;
  ops.unlink = op_unlink;
  ops.rmdir = op_rmdir;
  ops.rename = op_rename;
  ops.open = op_open;
  ops.create = op_create;
  ops.read = op_read;
  ops.write = op_write;
  ops.flush = op_flush;
  ops.release = op_release;
  ops.fsync = op_fsync;
  ops.opendir = op_opendir;
  ops.readdir = op_readdir;
  ops.releasedir = op_releasedir;
  ops.fsyncdir = op_fsyncdir;
  ops.statfs = op_statfs;
  ops.setxattr = op_setxattr;
  ops.getxattr = op_getxattr;
  ops.listxattr = op_listxattr;
  ops.removexattr = op_removexattr;
  ops.fallocate = op_fallocate;
  ops.lseek = op_lseek;
  ops.ioctl = op_ioctl;
  ops.copy_file_range = op_copy_file_range;
}

}  // namespace daxfs::fuse
