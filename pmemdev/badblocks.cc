// Sorted-range maintenance for the badblock list (see badblocks.h).
#include "pmemdev/badblocks.h"

#include <algorithm>
#include <limits>

namespace daxfs::pmemdev {

Status BadblockTable::add(uint64_t sector, uint64_t sectors) {
  if (sectors == 0) return error(EINVAL);
  if (sector > std::numeric_limits<uint64_t>::max() - sectors) return error(EOVERFLOW);
  uint64_t start = sector, end = sector + sectors;
  // Ranges [first, last) touch or overlap the new one (adjacent ranges merge).
  uint32_t first = 0;
  while (first < count && ranges[first].end() < start) first++;
  uint32_t last = first;
  while (last < count && ranges[last].sector <= end) {
    start = std::min(start, ranges[last].sector);
    end = std::max(end, ranges[last].end());
    last++;
  }
  uint32_t removed = last - first;
  if (removed == 0 && count == kMaxBadRanges) return error(ENOSPC);
  // Replace [first, last) with one merged range.
  SectorRange merged{start, end - start};
  if (removed == 0) {
    std::move_backward(ranges + first, ranges + count, ranges + count + 1);
    count++;
  } else if (removed > 1) {
    std::move(ranges + last, ranges + count, ranges + first + 1);
    count -= removed - 1;
  }
  ranges[first] = merged;
  return {};
}

Status BadblockTable::clear(uint64_t sector, uint64_t sectors) {
  if (sectors == 0) return error(EINVAL);
  if (sector > std::numeric_limits<uint64_t>::max() - sectors) return error(EOVERFLOW);
  uint64_t end = sector + sectors;
  // A range strictly containing the cleared one splits in two and needs one more slot.
  for (uint32_t i = 0; i < count; i++) {
    SectorRange r = ranges[i];
    if (r.sector < sector && r.end() > end) {
      if (count == kMaxBadRanges) return error(ENOSPC);
      std::move_backward(ranges + i + 1, ranges + count, ranges + count + 1);
      ranges[i] = {r.sector, sector - r.sector};
      ranges[i + 1] = {end, r.end() - end};
      count++;
      return {};
    }
  }
  uint32_t out = 0;
  for (uint32_t i = 0; i < count; i++) {
    SectorRange r = ranges[i];
    if (r.end() <= sector || r.sector >= end) {
      ranges[out++] = r;
    } else if (r.sector < sector) {
      ranges[out++] = {r.sector, sector - r.sector};
    } else if (r.end() > end) {
      ranges[out++] = {end, r.end() - end};
    }  // else: entirely cleared.
  }
  count = out;
  return {};
}

bool BadblockTable::overlaps(uint64_t sector, uint64_t sectors) const {
  uint64_t end = sectors > std::numeric_limits<uint64_t>::max() - sector
                     ? std::numeric_limits<uint64_t>::max() : sector + sectors;
  // Binary search for the first range ending after `sector`.
  auto it = std::upper_bound(ranges, ranges + count, sector,
                             [](uint64_t s, const SectorRange& r) { return s < r.end(); });
  return it != ranges + count && it->sector < end;
}

std::vector<SectorRange> BadblockTable::intersect(uint64_t sector, uint64_t sectors) const {
  std::vector<SectorRange> out;
  uint64_t end = sectors > std::numeric_limits<uint64_t>::max() - sector
                     ? std::numeric_limits<uint64_t>::max() : sector + sectors;
  for (uint32_t i = 0; i < count; i++) {
    uint64_t s = std::max(sector, ranges[i].sector);
    uint64_t e = std::min(end, ranges[i].end());
    if (s < e) out.push_back({s, e - s});
  }
  return out;
}

bool BadblockTable::valid() const {
  if (count > kMaxBadRanges) return false;
  for (uint32_t i = 0; i < count; i++) {
    if (ranges[i].sectors == 0) return false;
    if (ranges[i].sector > std::numeric_limits<uint64_t>::max() - ranges[i].sectors) return false;
    if (i > 0 && ranges[i - 1].end() >= ranges[i].sector) return false;
  }
  return true;
}

Result<SectorRange> bytes_to_sectors(uint64_t offset, uint64_t length) {
  if (length == 0) return error(EINVAL);
  if (offset > std::numeric_limits<uint64_t>::max() - length) return error(EOVERFLOW);
  uint64_t first = offset / kSectorSize;
  uint64_t end = (offset + length - 1) / kSectorSize + 1;
  return SectorRange{first, end - first};
}

}  // namespace daxfs::pmemdev
