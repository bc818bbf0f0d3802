// XattrStore: an inode's extended attributes (Inode::xattrs) on media: one blob in contiguous
// blocks, replaced copy-on-write (the new blob is persisted in new blocks, then the caller's
// transaction points the inode at it and frees the old one). Bound to the device, Space and the
// allocator. Not thread-safe: `_locked` calls expect the filesystem's mu_ held exclusively.
#pragma once

#include <cstdint>

#include "fs/alloc.h"
#include "fs/inode.h"
#include "fs/journal.h"
#include "fs/space.h"
#include "pmemdev/device.h"
#include "common/result.h"

namespace daxfs::fs {

class XattrStore {
 public:
  XattrStore(pmemdev::Device& dev, Space& space, Allocator& alloc) : dev_(dev), space_(space), alloc_(alloc) {}
  XattrStore(const XattrStore&) = delete;
  XattrStore& operator=(const XattrStore&) = delete;

  // Writes in.xattrs as a new blob and points the inode at it in `txn` (stored). ENOSPC (too big
  // or no room) leaves the inode and the media unchanged.
  Status store_locked(Txn& txn, Inode& in);

 private:
  pmemdev::Device& dev_;
  Space& space_;
  Allocator& alloc_;
};

// POSIX ACL inheritance and umask for a new inode `in` in `dir` (posix_acl_create()); changes
// only memory (fs/xattr.cc).
Status apply_create_acl(const Inode& dir, Inode& in, uint32_t umask);

}  // namespace daxfs::fs
