// The libfuse low-level operations table of the daxfs daemon. The only code (with main.cc) that
// includes fuse_lowlevel.h. Handlers are noexcept and reply exactly once.
#pragma once

#define FUSE_USE_VERSION 34
#include <fuse_lowlevel.h>

#include <condition_variable>
#include <mutex>
#include <thread>
#include <vector>

#include "fs/filesystem.h"

namespace daxfs::fuse {

// Page-cache invalidations that must not run on the request thread (the kernel may wait on
// requests only that thread would serve): queued here, sent by a worker of their own.
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
