// The Loader: reads the on-media metadata into a Filesystem's in-memory state at mount (after
// journal recovery). Every record is judged by the one codec (fs/ondisk/codec.h) that fsck.daxfs
// also uses, so a record the mount refuses is one fsck reports. Used by Filesystem::mount() only,
// under no lock (nothing else can see the Filesystem yet). It sees only the pieces it fills
// (LoadTarget), not the Filesystem.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "fs/alloc.h"
#include "fs/block_owners.h"
#include "fs/format.h"
#include "fs/inode.h"
#include "fs/ondisk/codec.h"
#include "pmemdev/device.h"
#include "common/result.h"

namespace daxfs::fs {

// What the Loader reads from (the device, its superblock) and fills: the allocator (every used
// block marked), the rmap and refcount records, the inodes, the free inode slots, the root and
// the next inode generation. All empty before load().
struct LoadTarget {
  const pmemdev::Device& dev;
  const SuperBlock& sb;
  Allocator& alloc;
  BlockOwners& owners;
  std::unordered_map<uint64_t, std::unique_ptr<Inode>>& inodes;
  std::vector<uint64_t>& free_inos;
  uint64_t& root;
  uint64_t& next_generation;
};

class Loader {
 public:
  // Any check failure is corruption: load() returns EUCLEAN and sets `why` to the reason.
  Loader(const LoadTarget& target, std::string& why);
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
  // EIO, with the reason in `why`, when blocks [b, b + n) (metadata: `what`) are poisoned: the
  // mount cannot read them and nothing holds them in memory yet.
  Status readable(uint64_t b, uint64_t n, const std::string& what);
  Errno corrupt(const std::string& what);

  LoadTarget t_;
  std::string& why_;
  ondisk::DataArea area_;
};

}  // namespace daxfs::fs
