// The libfuse low-level operations table of the daxfs daemon. The only code (with main.cc) that
// includes fuse_lowlevel.h. Handlers are noexcept and reply exactly once. Handlers live in ops.cc,
// the ioctl commands in ioctl.cc, what both share in request.h.
//
// Threading. main.cc runs libfuse's multi-threaded loop by default (fuse_session_loop_mt: a
// worker per request in flight, at most 16 kept idle), one thread with -s. In the default mode
// any handler may run concurrently with any other, on the same inode too (two writes, a write
// and a clone, a lookup and a forget): handlers keep no state between requests (a file handle
// only remembers its open flags; op_read's buffer is per thread) and call the Filesystem, which
// is thread-safe and serializes what it must (its locks are documented in fs/filesystem.h).
// init runs before the first request, destroy after the last.
//
// Invalidations. Telling the kernel to drop an inode's cached pages makes it take that inode's
// page locks, which a request still in flight may hold while it waits for this daemon's reply:
// sent from a request thread (the only one, with -s) it can deadlock. So page invalidations go
// to the Invalidator's own thread; only attribute invalidations (which touch no page) are sent
// from request threads. All of it is the filesystem's layout sink, KernelCaches
// (fs/fuse/kernel_caches.h): the shutdown notice runs on whatever thread shut the filesystem
// down, possibly with the Filesystem's lock held, so its attribute invalidations (which need
// referenced_inodes()) run on a thread of their own.
#pragma once

#define FUSE_USE_VERSION 34
#include <fuse_lowlevel.h>

#include <condition_variable>
#include <mutex>
#include <thread>
#include <vector>

#include "daxcore/service.h"
#include "fs/filesystem.h"

namespace daxfs::fuse {

struct Daemon {
  fs::Filesystem* fs = nullptr;
  fuse_session* se = nullptr;
  dax::DaxService* dax = nullptr;  // the DAX layer's sessions and fault service
  double timeout = 1.0;  // entry and attribute cache timeout, seconds
  unsigned max_write = 1 << 20;
};

void assign_operations(fuse_lowlevel_ops& ops);

}  // namespace daxfs::fuse
