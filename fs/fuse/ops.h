// The libfuse low-level operations table of the daxfs daemon. The only code (with main.cc) that
// includes fuse_lowlevel.h. Handlers are noexcept and reply exactly once.
#pragma once

#define FUSE_USE_VERSION 34
#include <fuse_lowlevel.h>

#include "fs/filesystem.h"

namespace daxfs::fuse {

struct Daemon {
  fs::Filesystem* fs = nullptr;
  double timeout = 1.0;  // entry and attribute cache timeout, seconds
  unsigned max_write = 1 << 20;
};

void assign_operations(fuse_lowlevel_ops& ops);

}  // namespace daxfs::fuse
