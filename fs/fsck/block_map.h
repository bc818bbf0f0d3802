// Which metadata structure or file owns each block: an interval map whose size follows the
// number of references in the metadata (one entry per chunk, record block, blob or extent), never
// the device size. fsck uses it to catch a block referenced twice and to find free blocks for
// its repairs. Not thread-safe.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace daxfs::fsck {

enum class OwnerKind : uint8_t { kChunk, kExtentBlock, kDirBlock, kSymlink, kXattr, kData, kRepair };

struct Owner {
  OwnerKind kind;
  uint64_t ino;  // 0 for chunks and blocks fsck allocates
};

// "inode chunk", "extent block of inode 42", "data of inode 42", ...
std::string describe(const Owner& owner);

struct Range {
  uint64_t start;
  uint64_t length;
  bool operator==(const Range&) const = default;
};

class BlockMap {
 public:
  // Claims [start, start + length) for `owner` (length > 0, no overflow: the caller validated
  // the range). false, claiming nothing, when any block of it is owned already.
  bool claim(uint64_t start, uint64_t length, Owner owner);
  // The owner of the first owned block in the range, if any.
  std::optional<Owner> find(uint64_t start, uint64_t length) const;
  // The parts of [start, start + length) nobody owns, in order.
  std::vector<Range> unowned(uint64_t start, uint64_t length) const;
  // The first block in [from, end) nobody owns.
  std::optional<uint64_t> first_free(uint64_t from, uint64_t end) const;
  uint64_t used() const { return used_; }
  // Calls fn(start, length, owner) for every claim, in block order.
  template <typename Fn>
  void for_each(Fn&& fn) const {
    for (const auto& [start, iv] : map_) fn(start, iv.end - start, iv.owner);
  }

 private:
  struct Interval {
    uint64_t end;
    Owner owner;
  };
  // The first interval that ends after `block` (it may start after it too).
  std::map<uint64_t, Interval>::const_iterator first_ending_after(uint64_t block) const;
  std::map<uint64_t, Interval> map_;  // start -> interval; disjoint
  uint64_t used_ = 0;
};

}  // namespace daxfs::fsck
