// The in-memory reverse map (see rmap.h).
#include "fs/rmap.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>

namespace daxfs::fs {

void Rmap::split(uint64_t at) {
  auto it = seg_.upper_bound(at);
  if (it == seg_.begin()) return;
  --it;
  uint64_t start = it->first;
  if (start == at || start + it->second.length <= at) return;
  Segment right;
  right.length = start + it->second.length - at;
  for (RmapOwner o : it->second.owners) {
    o.logical += at - start;
    right.owners.push_back(o);
  }
  it->second.length = at - start;
  seg_.emplace(at, std::move(right));
}

void Rmap::merge_around(uint64_t first, uint64_t end) {
  // Two neighbours merge when the right one's owners are the left one's, advanced by its length.
  auto it = seg_.upper_bound(first);
  if (it != seg_.begin()) --it;
  if (it != seg_.begin()) --it;
  while (it != seg_.end() && it->first <= end) {
    auto next = std::next(it);
    if (next == seg_.end()) break;
    bool joins = it->first + it->second.length == next->first &&
                 it->second.owners.size() == next->second.owners.size();
    if (joins) {
      for (size_t i = 0; i < it->second.owners.size() && joins; i++) {
        RmapOwner o = it->second.owners[i];
        o.logical += it->second.length;
        joins = o == next->second.owners[i];
      }
    }
    if (joins) {
      it->second.length += next->second.length;
      seg_.erase(next);
    } else {
      it = next;
    }
  }
}

void Rmap::add(uint64_t physical, uint64_t length, uint64_t ino, uint64_t logical, uint32_t flags) {
  if (length == 0) return;
  uint64_t end = physical + length;
  split(physical);
  split(end);
  uint64_t pos = physical;
  auto it = seg_.lower_bound(physical);
  while (pos < end) {
    if (it == seg_.end() || it->first > pos) {
      // A gap: a new segment up to the next one.
      uint64_t gap_end = it == seg_.end() ? end : std::min(end, it->first);
      Segment s{gap_end - pos, {{ino, logical + (pos - physical), flags}}};
      it = std::next(seg_.emplace(pos, std::move(s)).first);
      pos = gap_end;
      continue;
    }
    it->second.owners.push_back({ino, logical + (pos - physical), flags});
    pos = it->first + it->second.length;
    ++it;
  }
  merge_around(physical, end);
}

namespace {
// The owner entry (ino, logical) of a segment at `at`; aborts when there is none (a bug).
std::vector<RmapOwner>::iterator owner_of(std::vector<RmapOwner>& owners, uint64_t ino, uint64_t logical,
                                          uint64_t at) {
  auto o = std::find_if(owners.begin(), owners.end(),
                        [&](const RmapOwner& x) { return x.ino == ino && x.logical == logical; });
  if (o == owners.end()) {
    fprintf(stderr, "daxfs: BUG: rmap has no owner ino %llu block %llu at %llu\n",
            static_cast<unsigned long long>(ino), static_cast<unsigned long long>(logical),
            static_cast<unsigned long long>(at));
    abort();
  }
  return o;
}
}  // namespace

void Rmap::remove(uint64_t physical, uint64_t length, uint64_t ino, uint64_t logical) {
  if (length == 0) return;
  uint64_t end = physical + length;
  split(physical);
  split(end);
  for (auto it = seg_.lower_bound(physical); it != seg_.end() && it->first < end;) {
    auto& owners = it->second.owners;
    owners.erase(owner_of(owners, ino, logical + (it->first - physical), it->first));
    it = owners.empty() ? seg_.erase(it) : std::next(it);
  }
  merge_around(physical, end);
}

void Rmap::move(uint64_t physical, uint64_t length, uint64_t ino, uint64_t logical, uint64_t new_logical) {
  if (length == 0) return;
  uint64_t end = physical + length;
  split(physical);
  split(end);
  for (auto it = seg_.lower_bound(physical); it != seg_.end() && it->first < end; ++it)
    owner_of(it->second.owners, ino, logical + (it->first - physical), it->first)->logical =
        new_logical + (it->first - physical);
  merge_around(physical, end);
}

bool Rmap::mapped(uint64_t physical, uint64_t length) const {
  auto it = seg_.upper_bound(physical);
  if (it != seg_.begin() && std::prev(it)->first + std::prev(it)->second.length > physical) return true;
  return it != seg_.end() && it->first < physical + length;
}

uint32_t Rmap::refcount(uint64_t physical) const {
  auto it = seg_.upper_bound(physical);
  if (it == seg_.begin()) return 0;
  --it;
  if (it->first + it->second.length <= physical) return 0;
  return static_cast<uint32_t>(it->second.owners.size());
}

void Rmap::for_each_count(uint64_t physical, uint64_t length,
                          const std::function<void(uint64_t, uint64_t, uint32_t)>& fn) const {
  uint64_t end = physical + length, pos = physical, run_start = physical;
  uint32_t run_count = 0;
  bool have = false;
  auto piece = [&](uint64_t piece_end, uint32_t count) {  // [pos, piece_end) has `count`
    if (piece_end <= pos) return;
    if (have && count != run_count) {
      fn(run_start, pos - run_start, run_count);
      run_start = pos;
    }
    if (!have) run_start = pos, have = true;
    run_count = count;
    pos = piece_end;
  };
  auto it = seg_.upper_bound(physical);
  if (it != seg_.begin()) --it;
  while (pos < end) {
    while (it != seg_.end() && it->first + it->second.length <= pos) ++it;
    if (it == seg_.end() || it->first >= end) {
      piece(end, 0);
      break;
    }
    if (it->first > pos) {
      piece(it->first, 0);
      continue;
    }
    piece(std::min(end, it->first + it->second.length), static_cast<uint32_t>(it->second.owners.size()));
    ++it;
  }
  if (have) fn(run_start, pos - run_start, run_count);
}

std::vector<RmapRange> Rmap::query(uint64_t physical, uint64_t length) const {
  std::vector<RmapRange> out;
  uint64_t end = physical + length;
  auto it = seg_.upper_bound(physical);
  if (it != seg_.begin()) --it;
  for (; it != seg_.end() && it->first < end; ++it) {
    uint64_t s = std::max(it->first, physical), e = std::min(end, it->first + it->second.length);
    if (s >= e) continue;
    RmapRange r{s, e - s, it->second.owners};
    for (RmapOwner& o : r.owners) o.logical += s - it->first;
    out.push_back(std::move(r));
  }
  return out;
}

}  // namespace daxfs::fs
