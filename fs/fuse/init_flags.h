// FUSE_DIRECT_IO_ALLOW_MMAP for libfuse 3.14, which cannot ask for it: the kernel (6.6+, FUSE
// 7.39) lets a file opened with FOPEN_DIRECT_IO (every DAX file: dax=always, dax=inode with the
// flag) be mapped shared only when the daemon's INIT reply carries that flag; without it such a
// mmap fails with ENODEV. libfuse's `conn.want` is 32 bits and this is bit 36, so the daemon
// routes the session's /dev/fuse I/O through fuse_session_custom_io(): reads pass through (the
// INIT request is noted, with whether the kernel offers the flag), writes pass through except
// the INIT reply, which gains the flag when the kernel offered it.
//
// Thread-safety: the hooks run on libfuse's request threads; INIT comes first, alone.
#pragma once

#define FUSE_USE_VERSION 34
#include <fuse_lowlevel.h>

namespace daxfs::fuse {

// Installs the hooks on a session that fuse_session_mount() has mounted. Returns false (and
// leaves the session as it was) when libfuse refuses custom I/O.
bool allow_direct_io_mmap(fuse_session* se);
// Whether the kernel accepted it (known once INIT has been answered).
bool direct_io_mmap_allowed();

}  // namespace daxfs::fuse
