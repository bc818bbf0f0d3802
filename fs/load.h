// The Loader: reads the on-media metadata into a Filesystem at mount (after journal recovery).
// Every record is judged by the one codec (fs/ondisk/codec.h) that fsck.daxfs also uses, so a
// record the mount refuses is one fsck reports. Used by Filesystem::mount() only, under no lock
// (nothing else can see the Filesystem yet).
#pragma once

#include <string>
#include <vector>

#include "fs/filesystem.h"
#include "fs/ondisk/codec.h"

namespace daxfs::fs {

class Loader {
 public:
  // Any check failure is corruption: load() returns EUCLEAN and sets `why` to the reason.
  Loader(Filesystem& fs, std::string& why);
  Status load();

 private:
  Status load_chunks();
  Status load_inode(Inode& in);
  Status load_extents(Inode& in, const std::string& who);
  Status load_dirents(Inode& in, const std::string& who);
  Status load_xattrs(Inode& in, const std::string& who);
  Result<std::vector<uint64_t>> chain(const Inode& in, uint64_t magic);
  Status load_refcounts();
  Status check_shared_blocks();
  Status check_namespace();

  bool block_ok(uint64_t b) const { return area_.contains(b); }
  const char* block(uint64_t b) const;
  Errno corrupt(const std::string& what);

  Filesystem& fs_;
  std::string& why_;
  ondisk::DataArea area_;
};

}  // namespace daxfs::fs
