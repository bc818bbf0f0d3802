// The badblock list: sorted, non-overlapping, non-adjacent ranges of 512-byte sectors, as Linux's
// block/badblocks.c keeps them. A plain fixed-capacity POD so that it can live in the shared
// control file beside the device. Not thread-safe: callers hold the control file's lock.
#pragma once

#include <cstdint>
#include <vector>

#include "common/result.h"

namespace daxfs::pmemdev {

inline constexpr uint64_t kSectorSize = 512;
inline constexpr uint32_t kMaxBadRanges = 1024;

struct SectorRange {
  uint64_t sector;   // first bad sector
  uint64_t sectors;  // number of sectors, > 0
  uint64_t end() const { return sector + sectors; }
  bool operator==(const SectorRange&) const = default;
};

struct BadblockTable {
  uint32_t count;
  uint32_t pad;
  SectorRange ranges[kMaxBadRanges];

  // Marks [sector, sector + sectors) bad, merging with overlapping and adjacent ranges.
  // ENOSPC when the table would need more than kMaxBadRanges entries (nothing changed then).
  Status add(uint64_t sector, uint64_t sectors);
  // Clears [sector, sector + sectors), splitting a range that straddles it. ENOSPC when the
  // split needs a slot the table does not have (nothing changed then).
  Status clear(uint64_t sector, uint64_t sectors);
  // True when any sector of [sector, sector + sectors) is bad.
  bool overlaps(uint64_t sector, uint64_t sectors) const;
  // The bad ranges that intersect [sector, sector + sectors), clipped to it.
  std::vector<SectorRange> intersect(uint64_t sector, uint64_t sectors) const;
  std::vector<SectorRange> list() const { return {ranges, ranges + count}; }
  // Structural invariants (sorted, disjoint, non-adjacent, non-empty, count in range); used to
  // validate a table read from a file another process wrote.
  bool valid() const;
};

// Rounds a byte range out to whole sectors. EINVAL for a zero length, EOVERFLOW when
// offset + length overflows.
Result<SectorRange> bytes_to_sectors(uint64_t offset, uint64_t length);

}  // namespace daxfs::pmemdev
