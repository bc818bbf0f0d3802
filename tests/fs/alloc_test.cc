// The free-extent allocator: goal-directed, contiguous where possible, exact accounting.
#include "fs/alloc.h"

#include <catch2/catch.hpp>

using daxfs::fs::Allocator;
using daxfs::fs::BlockRange;

TEST_CASE("allocation continues at the goal and falls back to first fit", "[fs][alloc]") {
  Allocator a;
  a.reset(10, 110);
  CHECK(a.free_blocks() == 100);
  CHECK(a.alloc(10, 0).value() == BlockRange{10, 10});
  CHECK(a.alloc(5, 50).value() == BlockRange{50, 5});   // goal is free: take it
  CHECK(a.alloc(5, 20).value() == BlockRange{20, 5});   // continues the first range
  CHECK(a.free_blocks() == 80);
  CHECK(a.alloc(1000, 0).value() == BlockRange{55, 55}); // nothing fits: the largest
  a.free(50, 5);
  a.free(20, 5);
  CHECK(a.is_free(20, 5));
  CHECK(a.free_ranges() == std::vector<BlockRange>{{20, 35}});
}

TEST_CASE("freeing merges with both neighbours", "[fs][alloc]") {
  Allocator a;
  a.reset(0, 30);
  REQUIRE(a.mark_used(0, 30));
  a.free(0, 10);
  a.free(20, 10);
  a.free(10, 10);
  CHECK(a.free_ranges() == std::vector<BlockRange>{{0, 30}});
  CHECK(a.free_blocks() == 30);
}

TEST_CASE("marking used detects double references and out-of-range blocks", "[fs][alloc]") {
  Allocator a;
  a.reset(10, 100);
  CHECK(a.mark_used(20, 10));
  CHECK_FALSE(a.mark_used(25, 1));   // used twice
  CHECK_FALSE(a.mark_used(5, 1));    // before the data area
  CHECK_FALSE(a.mark_used(95, 10));  // past the end
  CHECK_FALSE(a.mark_used(50, 0));
  CHECK(a.free_blocks() == 80);
}

TEST_CASE("an empty allocator says ENOSPC", "[fs][alloc]") {
  Allocator a;
  a.reset(0, 4);
  REQUIRE(a.alloc(4, 0));
  CHECK(a.alloc(1, 0).error() == ENOSPC);
}
