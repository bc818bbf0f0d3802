// BlockOwners: rmap and refcount queries and the refcount-record update (fs/block_owners.h).
#include "fs/block_owners.h"

#include <algorithm>
#include <cstddef>

namespace daxfs::fs {

std::vector<Piece> pieces_of(const Inode& in, uint64_t first, uint64_t end) {
  std::vector<Piece> out;
  auto it = in.extents.upper_bound(first);
  if (it != in.extents.begin()) --it;
  for (; it != in.extents.end() && it->first < end; ++it) {
    uint64_t s = std::max(first, it->first), e = std::min(end, it->first + it->second.length);
    if (s < e) out.push_back({s, it->second.physical + (s - it->first), e - s, it->second.flags});
  }
  return out;
}

Status BlockOwners::sync_refcounts_locked(Txn& txn, uint64_t physical, uint64_t length) {
  uint64_t head = refcount_head_;
  auto alloc = [this]() -> Result<uint64_t> {
    BlockRange r = TRY(space_.alloc_locked(1, 0));
    return r.start;
  };
  auto persist = [this](uint64_t dst, const void* src, size_t n) { dev_.memcpy_persist(dst, src, n); };
  TRY(refcounts_.sync(txn, rmap_, physical, length, offsetof(SuperBlock, refcount_head), head, alloc,
                      persist));
  refcount_head_ = head;
  return {};
}

Status BlockOwners::rewrite_refcounts_locked(Txn& txn) {
  std::vector<uint64_t> fresh;
  for (size_t i = 0; i < refcounts_.blocks_needed(); i++) {
    auto r = space_.alloc_locked(1, 0);
    if (!r) {
      for (uint64_t b : fresh) space_.free_unreferenced_locked(b, 1);
      return error(r.error());
    }
    fresh.push_back(r->start);
  }
  uint64_t head = refcount_head_;
  auto persist = [this](uint64_t dst, const void* src, size_t n) { dev_.memcpy_persist(dst, src, n); };
  refcounts_.rewrite(txn, fresh, offsetof(SuperBlock, refcount_head), head, persist);
  refcount_head_ = head;
  return {};
}

bool BlockOwners::shared_locked(uint64_t physical, uint64_t length) const {
  bool shared = false;
  rmap_.for_each_count(physical, length, [&](uint64_t, uint64_t, uint32_t c) { shared |= c >= 2; });
  return shared;
}

uint64_t BlockOwners::shared_blocks_locked(const Inode& in, uint64_t first, uint64_t end) const {
  uint64_t n = 0;
  for (const Piece& pc : pieces_of(in, first, end))
    rmap_.for_each_count(pc.physical, pc.length, [&](uint64_t, uint64_t l, uint32_t c) { n += c >= 2 ? l : 0; });
  return n;
}

}  // namespace daxfs::fs
