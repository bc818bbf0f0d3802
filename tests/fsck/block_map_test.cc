// BlockMap: claims refuse any overlap, and free space is found between claims.
#include "fs/fsck/block_map.h"

#include <catch2/catch.hpp>

using namespace daxfs::fsck;

TEST_CASE("a block map refuses overlapping claims and lists what is unowned", "[fsck][block_map]") {
  BlockMap m;
  REQUIRE(m.claim(10, 5, {OwnerKind::kData, 1}));   // 10..14
  REQUIRE(m.claim(20, 1, {OwnerKind::kChunk, 0}));  // 20
  CHECK_FALSE(m.claim(14, 2, {OwnerKind::kData, 2}));
  CHECK_FALSE(m.claim(5, 100, {OwnerKind::kData, 2}));
  CHECK(m.claim(15, 5, {OwnerKind::kData, 2}));  // 15..19: touching is fine
  CHECK(m.used() == 11);
  CHECK(m.find(12, 1)->ino == 1);
  CHECK_FALSE(m.find(0, 10));
  CHECK(m.unowned(8, 20) == std::vector<Range>{{8, 2}, {21, 7}});
  CHECK(m.unowned(11, 3).empty());
  CHECK(m.unowned(0, 4) == std::vector<Range>{{0, 4}});
  CHECK(m.first_free(10, 100) == 21u);
  CHECK(m.first_free(3, 100) == 3u);
  CHECK_FALSE(m.first_free(10, 21));
}
