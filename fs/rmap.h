// The reverse map: for every device block mapped by a file, its owners (inode, file block,
// unwritten flag), every reflink sharer included. An in-memory index of disjoint physical
// segments, each with its owner list, rebuilt at mount from the extent maps and kept in step by
// every map/unmap, so it is exactly their inverse. A segment's owner count is the block's
// reference count (XFS's refcount btree keeps the same number on media; so does daxfs, see
// refcount.h). Not thread-safe: used under the filesystem's lock.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <vector>

namespace daxfs::fs {

struct RmapOwner {
  uint64_t ino;
  uint64_t logical;  // file block mapped to the segment's first block
  uint32_t flags;    // kExtentUnwritten
  bool operator==(const RmapOwner&) const = default;
};

// One physical range and who maps it (an fsmap row).
struct RmapRange {
  uint64_t physical;
  uint64_t length;
  std::vector<RmapOwner> owners;  // owner.logical is for `physical`
};

class Rmap {
 public:
  // Records that `ino` maps file blocks [logical, logical + length) to device blocks
  // [physical, physical + length).
  void add(uint64_t physical, uint64_t length, uint64_t ino, uint64_t logical, uint32_t flags);
  // Forgets that mapping (it must have been added). Aborts when it was not: a bug.
  void remove(uint64_t physical, uint64_t length, uint64_t ino, uint64_t logical);
  // That mapping moves to file blocks from `new_logical` (collapse/insert range shift it): the
  // owner keeps its place in each segment's owner list, so counts and neighbours are unchanged.
  // Aborts when the mapping was not added: a bug.
  void move(uint64_t physical, uint64_t length, uint64_t ino, uint64_t logical, uint64_t new_logical);
  // True when any block of the range is mapped by some file.
  bool mapped(uint64_t physical, uint64_t length) const;
  // The references to block `physical` (0 when unmapped).
  uint32_t refcount(uint64_t physical) const;
  // Calls `fn(start, length, count)` for maximal runs of [physical, physical + length) with the
  // same reference count (count 0: no file maps it).
  void for_each_count(uint64_t physical, uint64_t length,
                      const std::function<void(uint64_t, uint64_t, uint32_t)>& fn) const;
  // The owners of every mapped block in [physical, physical + length), clipped to it.
  std::vector<RmapRange> query(uint64_t physical, uint64_t length) const;
  size_t segments() const { return seg_.size(); }
  // Every segment, in physical order: fn(start, length, owners).
  void for_each_segment(const std::function<void(uint64_t, uint64_t, const std::vector<RmapOwner>&)>& fn) const {
    for (const auto& [start, s] : seg_) fn(start, s.length, s.owners);
  }
  void clear() { seg_.clear(); }

 private:
  struct Segment {
    uint64_t length;
    std::vector<RmapOwner> owners;
  };
  // Splits the segment containing `at` so that a segment starts there.
  void split(uint64_t at);
  // Merges [first, last] with neighbours whose owners continue them exactly.
  void merge_around(uint64_t first, uint64_t end);
  std::map<uint64_t, Segment> seg_;
};

}  // namespace daxfs::fs
