// Persistent refcount records (see refcount.h).
#include "fs/refcount.h"

#include <algorithm>

#include <cstring>

namespace daxfs::fs {

namespace {
uint64_t record_offset(RecordLoc loc) {
  return loc.block * kBlockSize + sizeof(RecordBlockHeader) + loc.slot * sizeof(DiskRefcount);
}
}  // namespace

bool RefcountTable::load(uint64_t start, const DiskRefcount& rec, RecordLoc loc) {
  auto next = map_.lower_bound(start);
  if (next != map_.end() && next->first < start + rec.length) return false;
  if (next != map_.begin() && std::prev(next)->first + std::prev(next)->second.length > start) return false;
  map_[start] = Record{rec.length, rec.count, loc};
  return true;
}

uint32_t RefcountTable::recorded(uint64_t block) const {
  auto it = map_.upper_bound(block);
  if (it == map_.begin()) return 1;
  --it;
  return it->first + it->second.length > block ? it->second.count : 1;
}

Status RefcountTable::sync(Txn& txn, const Rmap& rmap, uint64_t start, uint64_t length, uint64_t head_offset,
                           uint64_t& head, const BlockAllocator& alloc,
                           const std::function<void(uint64_t, const void*, size_t)>& persist_copy) {
  uint64_t end = start + length;
  // Widen to the records the range overlaps or touches: they are rewritten whole, so that
  // neighbours with equal counts merge back into one record.
  auto it = map_.upper_bound(start);
  while (it != map_.begin() && std::prev(it)->first + std::prev(it)->second.length >= start) --it;
  std::vector<std::map<uint64_t, Record>::iterator> old;
  for (; it != map_.end() && it->first <= end; ++it) {
    old.push_back(it);
    start = std::min(start, it->first);
    end = std::max(end, it->first + it->second.length);
  }
  // What the records must say: the runs of count >= 2.
  struct Run {
    uint64_t start, length;
    uint32_t count;
  };
  std::vector<Run> want;
  rmap.for_each_count(start, end - start, [&](uint64_t s, uint64_t l, uint32_t c) {
    if (c >= 2) want.push_back({s, l, c});
  });
  // Unchanged: nothing to write.
  if (want.size() == old.size()) {
    bool same = true;
    for (size_t i = 0; i < want.size() && same; i++)
      same = old[i]->first == want[i].start && old[i]->second.length == want[i].length &&
             old[i]->second.count == want[i].count;
    if (same) return {};
  }
  // Make room first (the only step that can fail), then replace.
  size_t need = 0;
  for (const Run& r : want) need += (r.length + UINT32_MAX - 1) / UINT32_MAX;
  while (free_.size() + old.size() < need) {
    uint64_t b = TRY(alloc());
    char block[kBlockSize] = {};
    RecordBlockHeader h{kRefcountMagic, 0, head, 0};
    memcpy(block, &h, sizeof h);
    persist_copy(b * kBlockSize, block, sizeof block);  // initialised before it is linked
    head = b;
    txn.write(head_offset, &head, sizeof head);
    blocks_.push_back(b);
    for (uint32_t s = kRefcountsPerBlock; s-- > 0;) free_.push_back({b, s});
  }
  for (auto& o : old) {
    DiskRefcount zero{};
    txn.write_obj(record_offset(o->second.loc), zero);
    free_.push_back(o->second.loc);
    map_.erase(o);
  }
  for (const Run& r : want) {
    for (uint64_t s = r.start; s < r.start + r.length;) {
      uint64_t l = std::min<uint64_t>(r.start + r.length - s, UINT32_MAX);
      RecordLoc loc = free_.back();
      free_.pop_back();
      DiskRefcount rec{s, static_cast<uint32_t>(l), r.count};
      txn.write_obj(record_offset(loc), rec);
      map_[s] = Record{l, r.count, loc};
      s += l;
    }
  }
  return {};
}

uint64_t RefcountTable::sync_bound(const Rmap& rmap, uint64_t start, uint64_t length) const {
  // The range sync() widens to (the records it overlaps or touches), the records there (each
  // cleared) and the count runs there now: removing one owner inside [start, start + length)
  // lowers every count there by one, which adds a run boundary at each end at most.
  uint64_t end = start + length, old = 0;
  auto it = map_.upper_bound(start);
  while (it != map_.begin() && std::prev(it)->first + std::prev(it)->second.length >= start) --it;
  for (; it != map_.end() && it->first <= end; ++it) {
    old++;
    start = std::min(start, it->first);
    end = std::max(end, it->first + it->second.length);
  }
  uint64_t runs = 2 + (end - start) / UINT32_MAX;  // records longer than a record holds split
  rmap.for_each_count(start, end - start, [&](uint64_t, uint64_t, uint32_t) { runs++; });
  auto entry = [](uint64_t bytes) { return sizeof(JournalEntry) + (bytes + 7) / 8 * 8; };
  uint64_t new_blocks = runs / kRefcountsPerBlock + 1;  // each links itself through the head
  return (old + runs) * entry(sizeof(DiskRefcount)) + new_blocks * entry(sizeof(uint64_t));
}

void RefcountTable::rewrite(Txn& txn, const std::vector<uint64_t>& fresh, uint64_t head_offset, uint64_t& head,
                            const std::function<void(uint64_t, const void*, size_t)>& persist_copy) {
  auto it = map_.begin();
  uint64_t prev = 0;
  std::vector<RecordLoc> free;
  for (uint64_t b : fresh) {
    char block[kBlockSize] = {};
    RecordBlockHeader h{kRefcountMagic, 0, prev, 0};  // each new block links the one before it
    memcpy(block, &h, sizeof h);
    for (uint32_t slot = 0; slot < kRefcountsPerBlock; slot++) {
      if (it == map_.end()) {
        free.push_back({b, slot});
        continue;
      }
      DiskRefcount r{it->first, static_cast<uint32_t>(it->second.length), it->second.count};
      memcpy(block + sizeof h + slot * sizeof r, &r, sizeof r);
      it->second.loc = {b, slot};
      ++it;
    }
    persist_copy(b * kBlockSize, block, sizeof block);
    prev = b;
  }
  for (uint64_t old : blocks_) txn.free_after_commit(old, 1);
  head = prev;
  txn.write(head_offset, &head, sizeof head);
  blocks_ = fresh;
  std::reverse(free.begin(), free.end());  // the lowest slot is taken first (from the back)
  free_ = std::move(free);
}

}  // namespace daxfs::fs
