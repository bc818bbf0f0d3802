// The Checker behind check_filesystem() (private to fs/fsck). Its phases run in this order, each
// on the model the earlier ones left, with every planned repair already applied to the model:
//
//   structure.cc  chunks -> inodes -> record-block chains -> symlink/xattr blobs -> (the
//                 refcount chain, refcounts.cc) -> extents -> directory entries (every block
//                 claimed in one BlockMap as it is met)
//   xattrs.cc     xattr blobs: their syntax, and the POSIX ACLs in them
//   names.cc      generations -> root -> entry targets and types -> one name per directory
//                 -> reachability (loops, orphans, reconnection to /lost+found) -> link counts
//                 and parents
//   poison.cc     poisoned blocks (informational), each with its owners: metadata by kind and
//                 inode, file data by inode, path and offset (every reflink sharer)
//   refcounts.cc  then the refcount records against the extent maps, and their rebuild, after
//                 every repair that changes mappings
//   repair.cc     run(), and the helpers repairs share (blocks, inode slots, directory slots)
//
// Claim order decides who keeps a doubly-referenced block: metadata (chunks, then record blocks,
// then symlink targets and xattr blobs, then refcount blocks) before file data, and inodes in
// ascending order, so the later owner is the one that loses it. On a reflink filesystem data
// blocks may be claimed by any number of extents: the BlockMap keeps every mapping.
#pragma once

#include <sys/stat.h>

#include <algorithm>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "fs/fsck/block_map.h"
#include "fs/fsck/checker.h"
#include "fs/ondisk/codec.h"

namespace daxfs::fsck {

// Every record is judged by the rules the mount reads by (fs/ondisk/codec.h): what one refuses,
// the other reports. The checker adds only how each one is repaired.
using fs::ondisk::inode_offset;

inline uint8_t dtype(uint32_t mode) { return static_cast<uint8_t>((mode >> 12) & 15); }
// A name as it may be printed: bytes outside printable ASCII become \xNN.
std::string printable(const std::string& name);

class Checker {
 public:
  Checker(const Image& image, const fs::SuperBlock& sb, const CheckOptions& options = {});
  CheckResult run();

 private:
  struct Entry {
    std::string name;
    uint64_t ino;
    uint8_t type;
    uint64_t offset;  // device byte offset of its DiskDirent
    bool removed = false;
  };
  struct Node {
    fs::DiskInode d{};             // as it will be once the planned repairs are committed
    bool dropped = false;          // freed by a planned repair
    std::vector<uint64_t> blocks;  // record blocks, chain order (head first)
    std::vector<Entry> entries;    // directories: the entries kept so far
    uint64_t data_blocks = 0;
    std::vector<Range> mapped;     // regular files: the device blocks its kept extents map
    struct Mapping {
      uint64_t logical, physical, length;  // blocks
      bool unwritten;
    };
    std::vector<Mapping> extents;  // regular files: the same, with the file blocks that map them
    bool is_dir() const { return S_ISDIR(d.mode); }
    bool is_reg() const { return S_ISREG(d.mode); }
    bool is_symlink() const { return S_ISLNK(d.mode); }
  };

  // structure.cc
  void load_chunks();
  void check_inodes();
  void claim_chains();
  void claim_blobs();
  void check_symlink(uint64_t ino, Node& n);
  // xattrs.cc
  void check_xattrs(uint64_t ino, Node& n);
  void drop_xattrs(uint64_t ino, Node& n, const std::string& kind, const std::string& why);
  // refcounts.cc
  void claim_refcounts();
  void check_refcounts();
  void rebuild_refcounts(const BlockMap& live, const std::vector<size_t>& problems);
  void collect_shared(const BlockMap& live);
  // structure.cc
  void claim_extents();
  void claim_file_extents(uint64_t ino, Node& n);
  void load_dirents();

  // names.cc
  void resolve_root();
  void check_entries();
  void note_unchained(uint64_t ino);
  void check_dir_links();
  void check_connectivity();
  void break_loops(const std::vector<uint64_t>& unreached_dirs, std::map<uint64_t, uint64_t>& container,
                   std::vector<uint64_t>& reconnect);
  void reconnect(const std::vector<uint64_t>& inos);
  void check_counts();
  void note_generations();
  // poison.cc
  void check_poison();
  void check_poisoned_data(const std::vector<pmemdev::ByteRange>& bad,
                           const std::unordered_map<uint64_t, std::string>& paths);
  std::unordered_map<uint64_t, std::string> known_paths();
  void collect_stats();

  // repair.cc
  size_t report(std::string kind, uint64_t ino, std::string detail, Severity severity = Severity::kError);
  void plan(size_t problem, fs::Txn txn);
  void plan(const std::vector<size_t>& problems, fs::Txn txn, std::vector<InPlaceWrite> prepare = {});
  template <typename T>
  void plan_write(size_t problem, uint64_t offset, const T& value) {
    fs::Txn txn;
    txn.write_obj(offset, value);
    plan(problem, std::move(txn));
  }
  void drop_inode(uint64_t ino, Node& n, std::string kind, std::string detail, Severity severity = Severity::kError);
  void remove_entry(Entry& e, std::string kind, uint64_t ino, std::string detail);
  std::optional<uint64_t> alloc_block(OwnerKind kind = OwnerKind::kRepair);
  std::optional<uint64_t> alloc_inode(fs::Txn& txn);
  std::optional<uint64_t> create_dir(fs::Txn& txn, uint64_t parent);
  bool add_entry(fs::Txn& txn, uint64_t dir_ino, Node& dir, const std::string& name, uint64_t target);
  std::optional<uint64_t> free_dirent(fs::Txn& txn, uint64_t dir_ino, Node& dir);
  std::optional<uint64_t> free_extent_record(const Node& n);
  Node* live(uint64_t ino);  // an inode in use and not dropped, or nullptr

  // Every block number read from the media goes through here, so this is also where references
  // past the device's end (a truncated device) are counted.
  bool range_ok(uint64_t start, uint64_t length) const {
    bool ok = fs::ondisk::DataArea{data_start_, limit_}.contains(start, length);
    uint64_t end = img_.blocks();
    if (!ok && start < claimed_ && (start >= end || length > end - start)) {
      if (past_end_++ == 0) first_past_end_ = std::max(start, end);
    }
    return ok;
  }
  bool block_ok(uint64_t b) const { return range_ok(b, 1); }
  bool reflink() const { return (sb_.features & fs::kFeatureReflink) != 0; }

  const Image& img_;
  fs::SuperBlock sb_;  // as it will be once the planned repairs are committed
  uint64_t data_start_;
  uint64_t limit_;
  uint64_t claimed_;  // CheckOptions::claimed_blocks
  mutable uint64_t past_end_ = 0, first_past_end_ = 0;
  BlockMap map_;
  std::map<uint64_t, Node> nodes_;    // ordered: deterministic reports and claim order
  std::vector<uint64_t> free_slots_;  // free inode slots of the loaded chunks, ascending
  size_t next_free_slot_ = 0;
  std::set<uint64_t> taken_;                   // record/dirent slots repairs have filled (media offsets)
  std::unordered_set<uint64_t> fresh_blocks_;  // blocks repairs allocated: all slots free
  uint64_t alloc_cursor_;
  uint64_t root_ = 0;
  // The refcount chain as claimed (chain order, head first) and its slots.
  struct RefcountSlot {
    uint64_t offset;  // device byte offset of the DiskRefcount
    fs::DiskRefcount rec;
    bool valid;  // inside the data area and overlapping no earlier record
  };
  std::vector<uint64_t> refcount_blocks_;
  std::vector<RefcountSlot> refcount_slots_;  // records in use, chain order
  std::vector<uint64_t> refcount_free_;       // offsets of free slots, chain order
  std::vector<size_t> refcount_problems_;     // problems the rebuild of the records completes
  std::vector<size_t> remap_problems_;        // repairs that take mappings away (a dropped file)
  CheckResult out_;
};

}  // namespace daxfs::fsck
