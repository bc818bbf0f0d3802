// What the DAX layer asks of the filesystem beyond iomap begin/end (which also answers "past
// EOF?" for faults, under the same locks as the blocks): whether a file is a DAX file, and a hold
// on the inode while a process maps it (a vma's reference to its file: an unlinked file's blocks
// stay allocated until its last mapper lets go). Implemented by the filesystem, registered at mount; knows nothing of any filesystem.
//
// Thread-safety: called from any thread, without any lock of the DAX layer held.
#pragma once

#include <cstdint>

#include "common/result.h"
#include "daxcore/iomap.h"

namespace daxfs::dax {

class DaxFiles : public IomapOps {
 public:
  // Whether opens of the file bypass the page cache (the mount's dax= and the file's flag).
  virtual bool dax_file(uint64_t ino) = 0;
  // Keeps the inode (and so its blocks) allocated until the matching release, even once it is
  // unlinked and forgotten. ENOENT for a free inode.
  virtual Status hold_inode(uint64_t ino) = 0;
  virtual void release_inode(uint64_t ino) = 0;
};

}  // namespace daxfs::dax
