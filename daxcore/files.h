// What the DAX layer asks of the filesystem beyond iomap begin/end: a file's size (faults past
// EOF get SIGBUS), whether it is a DAX file, and a hold on the inode while a process maps it (a
// vma's reference to its file: an unlinked file's blocks stay allocated until its last mapper
// lets go). Implemented by the filesystem, registered at mount; knows nothing of any filesystem.
//
// Thread-safety: called from any thread, without any lock of the DAX layer held.
#pragma once

#include <cstdint>

#include "common/result.h"
#include "daxcore/iomap.h"

namespace daxfs::dax {

class DaxFiles : public IomapOps {
 public:
  // The file's size in bytes; ENOENT for a free inode, EINVAL for a non-regular file.
  virtual Result<uint64_t> dax_file_size(uint64_t ino) = 0;
  // Whether opens of the file bypass the page cache (the mount's dax= and the file's flag).
  virtual bool dax_file(uint64_t ino) = 0;
  // Keeps the inode (and so its blocks) allocated until the matching release, even once it is
  // unlinked and forgotten. ENOENT for a free inode.
  virtual Status hold_inode(uint64_t ino) = 0;
  virtual void release_inode(uint64_t ino) = 0;
};

}  // namespace daxfs::dax
