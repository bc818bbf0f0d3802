// InodeTable: the in-memory inodes of a mounted filesystem, the free inode slots, the root and
// the next inode generation. Allocates inode slots (a new inode chunk through Space when none is
// free) and forgets inodes; the policy of when an inode is released stays with Filesystem. Bound
// to the device (new chunks are initialised in place, the superblock's chunk chain) and Space.
// Not thread-safe: `_locked` calls expect the filesystem's mu_ held exclusively; the const
// queries need it shared.
#pragma once

#include <sys/stat.h>

#include <cstdint>
#include <memory>
#include <unordered_map>
#include <vector>

#include "fs/inode.h"
#include "fs/journal.h"
#include "fs/space.h"
#include "pmemdev/device.h"
#include "common/result.h"

namespace daxfs::fs {

// Writes the inode's on-media copy (in.d) into `txn`.
void store_inode(Txn& txn, const Inode& in);
// Sets the inode's mtime and/or ctime to now.
void touch(Inode& in, bool mtime, bool ctime);
// Clears setuid, and setgid with group execute: a write by one lacking CAP_FSETID.
void strip_setid(Inode& in);
struct stat to_stat(const Inode& in);

class InodeTable {
 public:
  using Map = std::unordered_map<uint64_t, std::unique_ptr<Inode>>;

  InodeTable(pmemdev::Device& dev, Space& space) : dev_(dev), space_(space) {}
  InodeTable(const InodeTable&) = delete;
  InodeTable& operator=(const InodeTable&) = delete;

  // At mount, what the Loader read (no lock: nothing else sees the filesystem yet).
  void adopt(Map inodes, std::vector<uint64_t> free_inos, uint64_t root, uint64_t next_generation);

  // ENOENT for a free inode; find_dir: ENOTDIR for one that is not a directory.
  Result<Inode*> find(uint64_t ino) const;
  Result<Inode*> find_dir(uint64_t ino) const;
  // The in-memory inode whatever its mode, or nullptr when there is none.
  Inode* get(uint64_t ino) const;
  uint64_t root() const { return root_; }
  uint64_t next_generation() const { return next_generation_; }
  size_t size() const { return inodes_.size(); }
  const std::vector<uint64_t>& free_slots() const { return free_inos_; }
  Map::const_iterator begin() const { return inodes_.begin(); }
  Map::const_iterator end() const { return inodes_.end(); }
  const Inode& at(uint64_t ino) const { return *inodes_.at(ino); }
  // The inode chunks (block -> the next chunk of the chain, 0 at its end): what each chunk's
  // header says, kept in memory so that a poisoned chunk can be rewritten from it.
  const std::unordered_map<uint64_t, uint64_t>& chunks() const { return chunk_next_; }

  // A new inode owned by uid/gid in a free slot, stored in `txn`: BSD group semantics under a
  // setgid parent, the parent's DAX flag, a new generation, all times now. A new chunk, when
  // needed, is linked by a transaction of its own.
  Result<Inode*> new_inode_locked(Txn& txn, uint32_t mode, uint32_t uid, uint32_t gid, const Inode& parent,
                                  uint64_t rdev);
  // Forgets the in-memory inode and frees its slot: undoes new_inode_locked() for an operation
  // that failed before committing, or ends a release once the zeroed inode is committed.
  void drop_locked(uint64_t ino);

 private:
  pmemdev::Device& dev_;
  Space& space_;
  Map inodes_;
  std::vector<uint64_t> free_inos_;
  std::unordered_map<uint64_t, uint64_t> chunk_next_;
  uint64_t root_ = 0;
  uint64_t next_generation_ = 1;
};

}  // namespace daxfs::fs
