// Internal to fs/fuse: what the request handlers of ops.cc and ioctl.cc share. Finding a request's
// daemon and filesystem, mapping FUSE nodeids to inode numbers, the open flags a file handle
// remembers, and the guard that keeps exceptions out of libfuse. Stateless: safe on any thread.
#pragma once

#include <fcntl.h>

#include <cstdint>
#include <new>

#include "fs/fuse/ops.h"

namespace daxfs::fuse {

inline Daemon& daemon_of(fuse_req_t req) { return *static_cast<Daemon*>(fuse_req_userdata(req)); }
inline fs::Filesystem& fs_of(fuse_req_t req) { return *daemon_of(req).fs; }

// FUSE's root (1) is the filesystem's root inode; every other nodeid is the inode number itself.
inline uint64_t to_ino(fuse_req_t req, fuse_ino_t nodeid) {
  return nodeid == FUSE_ROOT_ID ? fs_of(req).root_ino() : nodeid;
}
inline fuse_ino_t to_nodeid(fuse_req_t req, uint64_t ino) {
  return ino == fs_of(req).root_ino() ? FUSE_ROOT_ID : ino;
}

// Runs a handler body, turning std::bad_alloc into ENOMEM: no exception crosses libfuse.
template <typename F>
void guarded(fuse_req_t req, F&& body) noexcept {
  try {
    body();
  } catch (const std::bad_alloc&) {
    fuse_reply_err(req, ENOMEM);
  }
}

// A FUSE ioctl carries the file handle but not the open flags, so the handle keeps them: the
// access mode and O_APPEND, which decide what FICLONE-like ioctls may do with the fd. A
// directory's handle (opendir) is 0: neither readable nor writable for those checks.
constexpr uint64_t kHandleOpen = 1ull << 63;
inline void remember_open_flags(fuse_file_info* fi) {
  fi->fh = kHandleOpen | static_cast<uint64_t>(fi->flags & (O_ACCMODE | O_APPEND));
}
inline bool handle_writable(const fuse_file_info* fi) {
  if (!fi || !(fi->fh & kHandleOpen)) return false;
  unsigned mode = fi->fh & O_ACCMODE;
  return mode == O_WRONLY || mode == O_RDWR;
}
inline bool handle_readable(const fuse_file_info* fi) {
  return fi && (fi->fh & kHandleOpen) && (fi->fh & O_ACCMODE) != O_WRONLY;
}
inline bool handle_appends(const fuse_file_info* fi) {
  return fi && (fi->fh & kHandleOpen) && (fi->fh & O_APPEND);
}

// ops.ioctl (ioctl.cc): the daemon's ioctls, fs/daxfs_ioctl.h and the XFS/VFS ones it answers.
void op_ioctl(fuse_req_t req, fuse_ino_t nodeid, int cmd, void* arg, fuse_file_info* fi, unsigned flags,
              const void* in_buf, size_t in_size, size_t out_size) noexcept;

}  // namespace daxfs::fuse
