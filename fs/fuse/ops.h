// The libfuse low-level operations table of the daxfs daemon. The only code (with main.cc) that
// includes fuse_lowlevel.h. Handlers are noexcept and reply exactly once.
#pragma once

#define FUSE_USE_VERSION 34
#include <fuse_lowlevel.h>

#include <thread>

#include "fs/filesystem.h"

namespace daxfs::fuse {

struct Daemon {
  fs::Filesystem* fs = nullptr;
  fuse_session* se = nullptr;
  std::thread invalidator;  // drops the kernel's cached attributes after a shutdown
  double timeout = 1.0;  // entry and attribute cache timeout, seconds
  unsigned max_write = 1 << 20;
};

void assign_operations(fuse_lowlevel_ops& ops);
// Makes a shutdown visible to stat(2) too: after it, the kernel's cached attributes of every
// inode it knows are invalidated (from a thread of its own, never from a request handler).
void install_shutdown_hook(Daemon& daemon);

}  // namespace daxfs::fuse
