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
// from request threads. The shutdown hook runs on whatever thread shut the filesystem down,
// possibly with the Filesystem's lock held, and must not call back into it: its attribute
// invalidations (which need referenced_inodes()) run on a thread of their own (Daemon::invalidator).
#pragma once

#define FUSE_USE_VERSION 34
#include <fuse_lowlevel.h>

#include <condition_variable>
#include <mutex>
#include <thread>
#include <vector>

#include "fs/filesystem.h"

namespace daxfs::fuse {

// Page-cache invalidations that must not run on a request thread (see above): queued here from
// any thread, sent in order by a worker of their own. queue() is thread-safe; start() and stop()
// are called once each, by main().
class Invalidator {
 public:
  void start(fuse_session* se);
  void stop();  // sends what is queued, then joins
  void queue(fuse_ino_t nodeid);

 private:
  void run();
  fuse_session* se_ = nullptr;
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<fuse_ino_t> pending_;
  bool stopping_ = false;
  std::thread thread_;
};

struct Daemon {
  fs::Filesystem* fs = nullptr;
  fuse_session* se = nullptr;
  std::thread invalidator;  // drops the kernel's cached attributes after a shutdown
  Invalidator pages;        // drops page-cached data a remap changed under the kernel
  double timeout = 1.0;  // entry and attribute cache timeout, seconds
  unsigned max_write = 1 << 20;
};

void assign_operations(fuse_lowlevel_ops& ops);
// Makes a shutdown visible to stat(2) too: after it, the kernel's cached attributes of every
// inode it knows are invalidated (from a thread of its own, never from a request handler).
void install_shutdown_hook(Daemon& daemon);

}  // namespace daxfs::fuse
