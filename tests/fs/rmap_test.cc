// The reverse map: owners per physical range, split and merged at every boundary, and the
// reference counts derived from it.
#include "fs/rmap.h"

#include <catch2/catch.hpp>

using daxfs::fs::Rmap;
using daxfs::fs::RmapOwner;

namespace {
struct Run {
  uint64_t start, length;
  uint32_t count;
  bool operator==(const Run&) const = default;
};
std::vector<Run> counts(const Rmap& r, uint64_t start, uint64_t length) {
  std::vector<Run> out;
  r.for_each_count(start, length, [&](uint64_t s, uint64_t l, uint32_t c) { out.push_back({s, l, c}); });
  return out;
}
}  // namespace

TEST_CASE("rmap owners follow adds and removes, split at every boundary", "[fs][rmap]") {
  Rmap r;
  r.add(100, 10, 1, 0, 0);  // ino 1 maps file blocks 0-9 to 100-109
  CHECK(r.segments() == 1);
  CHECK(r.refcount(100) == 1);
  CHECK(r.refcount(110) == 0);
  r.add(104, 4, 2, 50, 0);  // ino 2 shares 104-107
  CHECK(counts(r, 95, 20) == std::vector<Run>{{95, 5, 0}, {100, 4, 1}, {104, 4, 2}, {108, 2, 1}, {110, 5, 0}});
  auto q = r.query(105, 2);
  REQUIRE(q.size() == 1);
  CHECK(q[0].physical == 105);
  CHECK(q[0].owners == std::vector<RmapOwner>{{1, 5, 0}, {2, 51, 0}});
  r.remove(104, 4, 2, 50);
  CHECK(r.segments() == 1);  // merged back whole
  CHECK(counts(r, 100, 10) == std::vector<Run>{{100, 10, 1}});
  r.remove(100, 3, 1, 0);  // the head only
  CHECK(r.refcount(102) == 0);
  CHECK(r.query(103, 1)[0].owners == std::vector<RmapOwner>{{1, 3, 0}});
  r.remove(103, 7, 1, 3);
  CHECK(r.segments() == 0);
}

TEST_CASE("rmap owners move to other file blocks in place, counts untouched", "[fs][rmap]") {
  Rmap r;
  r.add(100, 10, 1, 0, 0);
  r.add(104, 4, 2, 50, 1);  // ino 2 shares 104-107 (unwritten there)
  r.add(200, 4, 1, 20, 0);  // ino 1 maps 200-203 at file blocks 20-23
  // Ino 1's blocks 4-9 (device 104-109) move to file blocks 14-19 (an insert of 10 at 4).
  r.move(104, 6, 1, 4, 14);
  CHECK(counts(r, 100, 10) == std::vector<Run>{{100, 4, 1}, {104, 4, 2}, {108, 2, 1}});
  CHECK(r.query(105, 1)[0].owners == std::vector<RmapOwner>{{1, 15, 0}, {2, 51, 1}});  // same order
  CHECK(r.query(109, 1)[0].owners == std::vector<RmapOwner>{{1, 19, 0}});
  CHECK(r.query(103, 1)[0].owners == std::vector<RmapOwner>{{1, 3, 0}});
  // Moved back, the segments merge again as before.
  r.move(104, 6, 1, 14, 4);
  CHECK(r.query(100, 10)[0].length == 4);
  r.remove(104, 4, 2, 50);
  CHECK(r.query(100, 10).size() == 1);  // one segment: 100-109 at file blocks 0-9
  CHECK(r.query(100, 10)[0].owners == std::vector<RmapOwner>{{1, 0, 0}});
  // A collapse: 200-203 move down to file blocks 10-13 and continue 100-109 logically only.
  r.move(200, 4, 1, 20, 10);
  CHECK(r.query(201, 1)[0].owners == std::vector<RmapOwner>{{1, 11, 0}});
  CHECK(r.segments() == 2);
}

TEST_CASE("rmap merges only true continuations", "[fs][rmap]") {
  Rmap r;
  r.add(0, 4, 7, 0, 0);
  r.add(4, 4, 7, 4, 0);     // continues ino 7 logically and physically: one segment
  CHECK(r.segments() == 1);
  r.add(8, 4, 7, 100, 0);   // physically adjacent, logically not: stays apart
  CHECK(r.segments() == 2);
  r.add(12, 4, 8, 12, 0);   // another owner
  CHECK(r.segments() == 3);
  r.add(16, 2, 7, 104, 1);  // unwritten flag differs from the segment before? different owner list
  CHECK(r.query(16, 2)[0].owners[0].flags == 1);
}

TEST_CASE("many sharers of one range cost one segment", "[fs][rmap]") {
  Rmap r;
  for (uint64_t ino = 1; ino <= 10000; ino++) r.add(1000, 1 << 20, ino, 0, 0);
  CHECK(r.segments() == 1);
  CHECK(r.refcount(1000 + 12345) == 10000);
  for (uint64_t ino = 1; ino <= 10000; ino++) r.remove(1000, 1 << 20, ino, 0);
  CHECK(r.segments() == 0);
}
