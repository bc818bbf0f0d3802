// Which metadata structure or file owns each block: an interval map whose size follows the
// number of references in the metadata (one entry per chunk, record block, blob or extent), never
// the device size. fsck uses it to catch a block referenced twice, to find free blocks for its
// repairs and, on a reflink filesystem, as its reverse map: a data block may be claimed by several
// extents, and the map keeps every one of those owners. Not thread-safe.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace daxfs::fsck {

enum class OwnerKind : uint8_t { kChunk, kExtentBlock, kDirBlock, kSymlink, kXattr, kRefcount, kData, kRepair };

struct Owner {
  OwnerKind kind;
  uint64_t ino;  // 0 for chunks, refcount blocks and blocks fsck allocates
};

// "inode chunk", "extent block of inode 42", "data of inode 42", ...
std::string describe(const Owner& owner);

struct Range {
  uint64_t start;
  uint64_t length;
  bool operator==(const Range&) const = default;
};

// Whether a claim of file data may share blocks already held as file data (reflink: every extent
// that maps a block is one reference to it). Nothing ever shares a metadata block.
enum class Sharing { kExclusive, kData };

class BlockMap {
 public:
  // Claims [start, start + length) for `owner` (length > 0, no overflow: the caller validated
  // the range). false, claiming nothing, when any block of it is owned already; with
  // Sharing::kData and a kData owner, blocks held as data are not in the way: each gains
  // `owner.ino` as one more mapping.
  bool claim(uint64_t start, uint64_t length, Owner owner, Sharing sharing = Sharing::kExclusive);
  // The owner of the first block in the range that would refuse such a claim, if any.
  std::optional<Owner> find(uint64_t start, uint64_t length, Sharing sharing = Sharing::kExclusive) const;
  // The parts of [start, start + length) that such a claim could take, in order.
  std::vector<Range> unowned(uint64_t start, uint64_t length, Sharing sharing = Sharing::kExclusive) const;
  // The first block in [from, end) nobody owns.
  std::optional<uint64_t> first_free(uint64_t from, uint64_t end) const;
  // Blocks owned, each counted once however many files map it.
  uint64_t used() const { return used_; }
  // Calls fn(start, length, owner) for every claim, in block order (for shared data, the first
  // owner of each piece).
  template <typename Fn>
  void for_each(Fn&& fn) const {
    for (const auto& [start, iv] : map_) fn(start, iv.end - start, iv.owner);
  }
  // Data references to the blocks of [start, start + length), in order, one call per piece with
  // one set of owners: fn(start, length, mappings, owners), owners being the inodes of the
  // mappings in claim order (an inode mapping the blocks twice appears twice). Unowned and
  // metadata blocks have 0 mappings. Neighbouring pieces may have equal counts.
  void mappings(uint64_t start, uint64_t length,
                const std::function<void(uint64_t, uint64_t, uint64_t, const std::vector<uint64_t>&)>& fn) const;
  // The same over every data block (pieces of 0 mappings are skipped).
  void for_each_data(const std::function<void(uint64_t, uint64_t, uint64_t, const std::vector<uint64_t>&)>& fn) const;

 private:
  struct Interval {
    uint64_t end;
    Owner owner;
    std::vector<uint64_t> sharers;  // data: the inodes of the mappings after the first
  };
  static bool in_the_way(const Interval& iv, Sharing sharing) {
    return sharing == Sharing::kExclusive || iv.owner.kind != OwnerKind::kData;
  }
  // The first interval that ends after `block` (it may start after it too).
  std::map<uint64_t, Interval>::const_iterator first_ending_after(uint64_t block) const;
  // Splits the interval containing `at` (if any starts before it) so that one starts there.
  void split(uint64_t at);
  std::map<uint64_t, Interval> map_;  // start -> interval; disjoint
  uint64_t used_ = 0;
};

}  // namespace daxfs::fsck
