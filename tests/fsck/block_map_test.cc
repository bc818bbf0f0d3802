// BlockMap: claims refuse any overlap but data sharing data, and free space is found between claims.
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

TEST_CASE("data claims share data blocks and count every mapping, never metadata", "[fsck][block_map]") {
  BlockMap m;
  REQUIRE(m.claim(10, 4, {OwnerKind::kData, 1}));  // 10..13
  REQUIRE(m.claim(20, 1, {OwnerKind::kRefcount, 0}));
  CHECK_FALSE(m.claim(12, 2, {OwnerKind::kData, 2}));  // exclusive: refused
  CHECK(m.find(12, 2, Sharing::kData) == std::nullopt);
  CHECK(m.claim(12, 4, {OwnerKind::kData, 2}, Sharing::kData));  // 12..15: 12, 13 shared
  CHECK(m.claim(13, 1, {OwnerKind::kData, 2}, Sharing::kData));  // the same file, twice
  CHECK_FALSE(m.claim(18, 4, {OwnerKind::kData, 3}, Sharing::kData));  // over the refcount block
  CHECK(m.find(18, 4, Sharing::kData)->kind == OwnerKind::kRefcount);
  CHECK(m.unowned(8, 14, Sharing::kData) == std::vector<Range>{{8, 12}, {21, 1}});
  CHECK(m.used() == 7);  // 10..15 once each, and 20
  std::vector<std::pair<Range, uint64_t>> runs;
  m.mappings(9, 9, [&](uint64_t s, uint64_t l, uint64_t c, const std::vector<uint64_t>& owners) {
    runs.push_back({{s, l}, c});
    if (s == 13) CHECK(owners == std::vector<uint64_t>{1, 2, 2});
  });
  CHECK(runs == std::vector<std::pair<Range, uint64_t>>{
                    {{9, 1}, 0}, {{10, 2}, 1}, {{12, 1}, 2}, {{13, 1}, 3}, {{14, 2}, 1}, {{16, 2}, 0}});
  uint64_t shared = 0;
  m.for_each_data([&](uint64_t, uint64_t l, uint64_t c, const std::vector<uint64_t>&) { shared += c >= 2 ? l : 0; });
  CHECK(shared == 2);
  CHECK(m.first_free(10, 100) == 16u);
}
