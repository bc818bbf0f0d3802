// Free-extent allocator (see alloc.h).
#include "fs/alloc.h"

#include <cstdio>
#include <cstdlib>

namespace daxfs::fs {

void Allocator::reset(uint64_t first, uint64_t end) {
  free_.clear();
  first_ = first;
  end_ = end;
  free_blocks_ = end > first ? end - first : 0;
  if (free_blocks_) free_[first] = free_blocks_;
}

bool Allocator::mark_used(uint64_t start, uint64_t length) {
  if (length == 0 || start < first_ || start > end_ || length > end_ - start) return false;
  auto it = free_.upper_bound(start);
  if (it == free_.begin()) return false;
  --it;
  uint64_t fs = it->first, fl = it->second;
  if (start + length > fs + fl) return false;
  free_.erase(it);
  if (start > fs) free_[fs] = start - fs;
  if (start + length < fs + fl) free_[start + length] = fs + fl - (start + length);
  free_blocks_ -= length;
  return true;
}

Result<BlockRange> Allocator::alloc(uint64_t want, uint64_t goal) {
  if (free_.empty()) return error(ENOSPC);
  auto take = [&](std::map<uint64_t, uint64_t>::iterator it, uint64_t n) {
    BlockRange r{it->first, n};
    uint64_t len = it->second;
    free_.erase(it);
    if (len > n) free_[r.start + n] = len - n;
    free_blocks_ -= n;
    return r;
  };
  // 1. Continue right at the goal when it is free (keeps a growing file contiguous).
  auto it = free_.upper_bound(goal);
  if (it != free_.begin()) {
    auto prev = std::prev(it);
    if (goal >= prev->first && goal < prev->first + prev->second) {
      uint64_t fs = prev->first, fl = prev->second;
      uint64_t n = std::min(want, fs + fl - goal);
      free_.erase(prev);
      if (goal > fs) free_[fs] = goal - fs;
      if (goal + n < fs + fl) free_[goal + n] = fs + fl - goal - n;
      free_blocks_ -= n;
      return BlockRange{goal, n};
    }
  }
  // 2. The first extent after the goal that fits whole, then from the start.
  for (auto i = it; i != free_.end(); ++i)
    if (i->second >= want) return take(i, want);
  for (auto i = free_.begin(); i != it && i != free_.end(); ++i)
    if (i->second >= want) return take(i, want);
  // 3. Nothing fits whole: the largest.
  auto best = free_.begin();
  for (auto i = free_.begin(); i != free_.end(); ++i)
    if (i->second > best->second) best = i;
  return take(best, best->second);
}

void Allocator::free(uint64_t start, uint64_t length) {
  if (length == 0) return;
  auto next = free_.lower_bound(start);
  if ((next != free_.end() && next->first < start + length) ||
      (next != free_.begin() && std::prev(next)->first + std::prev(next)->second > start) ||
      start < first_ || start + length > end_) {
    fprintf(stderr, "daxfs: BUG: double free of blocks %llu+%llu\n",
            static_cast<unsigned long long>(start), static_cast<unsigned long long>(length));
    abort();
  }
  uint64_t s = start, l = length;
  if (next != free_.begin()) {
    auto prev = std::prev(next);
    if (prev->first + prev->second == start) {
      s = prev->first;
      l += prev->second;
      free_.erase(prev);
    }
  }
  if (next != free_.end() && next->first == start + length) {
    l += next->second;
    free_.erase(next);
  }
  free_[s] = l;
  free_blocks_ += length;
}

bool Allocator::is_free(uint64_t start, uint64_t length) const {
  auto it = free_.upper_bound(start);
  if (it == free_.begin()) return false;
  --it;
  return start + length <= it->first + it->second;
}

std::vector<BlockRange> Allocator::free_ranges() const {
  std::vector<BlockRange> out;
  for (auto& [s, l] : free_) out.push_back({s, l});
  return out;
}

}  // namespace daxfs::fs
