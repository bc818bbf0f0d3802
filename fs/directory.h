// Directory: the entries of a directory inode (Inode::slots, names, free_slots) and their dirent
// records on media. Every change is written into the caller's transaction; a directory grows by
// record blocks from ExtentMap (the inode is stored then) and never shrinks while it lives.
// Not thread-safe: `_locked` calls expect the filesystem's mu_ held exclusively.
#pragma once

#include <string_view>

#include "fs/extent_map.h"
#include "fs/inode.h"
#include "fs/journal.h"
#include "common/result.h"

namespace daxfs::fs {

class Directory {
 public:
  explicit Directory(ExtentMap& emap) : emap_(emap) {}
  Directory(const Directory&) = delete;
  Directory& operator=(const Directory&) = delete;

  // The name rule the mount and fsck.daxfs read entries by (fs/ondisk/codec.h), as errnos:
  // ENOENT (empty), ENAMETOOLONG, EEXIST (a dot name), EINVAL (a byte no name may hold).
  static Status check_name(std::string_view name);
  // Adds `name` -> target to `dir` (the caller checked it is absent); fails only when a new
  // record block is needed and cannot be had.
  Status add_locked(Txn& txn, Inode& dir, std::string_view name, const Inode& target);
  // Removes `name`, which must be there (aborts otherwise: callers looked it up under mu_).
  void remove_locked(Txn& txn, Inode& dir, std::string_view name);
  // Points the existing entry `name` at `target`.
  void set_locked(Txn& txn, Inode& dir, std::string_view name, const Inode& target);

 private:
  ExtentMap& emap_;
};

}  // namespace daxfs::fs
