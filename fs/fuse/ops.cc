// FUSE request -> Filesystem call -> reply, for every operation but the ioctls (ioctl.cc), and the
// invalidation workers. Inode numbers: FUSE's root (1) is the filesystem's root inode; every
// other nodeid is the daxfs inode number itself. Handlers run on any loop thread (ops.h).
#include "fs/fuse/ops.h"

#include <string>
#include <vector>

#include "fs/fuse/request.h"

namespace daxfs::fuse {

namespace {

fs::Cred cred_of(fuse_req_t req) {
  const fuse_ctx* ctx = fuse_req_ctx(req);
  return {static_cast<uint32_t>(ctx->uid), static_cast<uint32_t>(ctx->gid), static_cast<uint32_t>(ctx->umask)};
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

// Replies to a request that makes the kernel count one more lookup of the inode: lookup, mknod,
// mkdir, symlink, link, and create (with `fi`: the file it opened, too).
void reply_entry(fuse_req_t req, const Result<struct stat>& st, fuse_file_info* fi = nullptr) {
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
  int sent;
  if (fi) {
    set_open_mode(req, e.ino, fi);
    sent = fuse_reply_create(req, &e, fi);
  } else {
    sent = fuse_reply_entry(req, &e);
  }
  // An interrupted request's reply is dropped: the kernel never counted this lookup.
  if (sent == -ENOENT) fs_of(req).forget(st->st_ino, 1);
}

void reply_attr(fuse_req_t req, const Result<struct stat>& st) {
  if (!st) {
    fuse_reply_err(req, st.error());
    return;
  }
  fuse_reply_attr(req, &*st, daemon_of(req).timeout);
}

void reply_status(fuse_req_t req, const Status& st) { fuse_reply_err(req, st ? 0 : st.error()); }

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
    reply_entry(req, fs_of(req).mknod(to_ino(req, parent), name, (mode & 07777) | S_IFREG, 0, cred_of(req)), fi);
  });
}

void op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info*) noexcept {
  guarded(req, [&] {
    if (off < 0) return void(fuse_reply_err(req, EINVAL));
    thread_local std::vector<char> buf;
    if (buf.size() < size) buf.resize(size);
    // A DAX file's reads are direct I/O: the kernel hands a short read to the caller as is, so a
    // read that meets poison returns what comes before it (Linux's DAX read). Through the page
    // cache a short read would look like EOF: there the read fails with EIO, and the kernel's
    // page-by-page retry gives the same answer at page granularity.
    fs::Filesystem& fs = fs_of(req);
    uint64_t i = to_ino(req, ino);
    auto n = fs.read(i, static_cast<uint64_t>(off), size, buf.data(), fs.is_dax(i));
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

}  // namespace

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
