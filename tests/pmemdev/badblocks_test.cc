// Table tests of the badblock list's merge and split rules.
#include "pmemdev/badblocks.h"

#include <catch2/catch.hpp>
#include <memory>

using daxfs::pmemdev::BadblockTable;
using daxfs::pmemdev::SectorRange;

namespace {
std::unique_ptr<BadblockTable> table(std::initializer_list<SectorRange> ranges) {
  auto t = std::make_unique<BadblockTable>();
  t->count = 0;
  for (auto r : ranges) REQUIRE(t->add(r.sector, r.sectors));
  return t;
}
}  // namespace

TEST_CASE("adding bad ranges merges overlapping and adjacent ones", "[pmemdev][badblocks]") {
  struct Case {
    const char* name;
    std::vector<SectorRange> before;
    SectorRange add;
    std::vector<SectorRange> after;
  };
  std::vector<Case> cases = {
      {"into empty", {}, {8, 8}, {{8, 8}}},
      {"disjoint before", {{16, 8}}, {0, 8}, {{0, 8}, {16, 8}}},
      {"disjoint after", {{0, 8}}, {16, 8}, {{0, 8}, {16, 8}}},
      {"adjacent before merges", {{8, 8}}, {0, 8}, {{0, 16}}},
      {"adjacent after merges", {{0, 8}}, {8, 8}, {{0, 16}}},
      {"overlap head", {{8, 8}}, {4, 8}, {{4, 12}}},
      {"overlap tail", {{8, 8}}, {12, 8}, {{8, 12}}},
      {"inside existing", {{0, 32}}, {8, 8}, {{0, 32}}},
      {"covers existing", {{8, 8}}, {0, 32}, {{0, 32}}},
      {"bridges two", {{0, 8}, {16, 8}}, {8, 8}, {{0, 24}}},
      {"swallows three", {{2, 2}, {6, 2}, {10, 2}, {40, 1}}, {1, 20}, {{1, 20}, {40, 1}}},
      {"between two without touching", {{0, 4}, {20, 4}}, {10, 2}, {{0, 4}, {10, 2}, {20, 4}}},
  };
  for (const auto& c : cases) {
    SECTION(c.name) {
      auto t = std::make_unique<BadblockTable>();
      t->count = 0;
      for (auto r : c.before) REQUIRE(t->add(r.sector, r.sectors));
      REQUIRE(t->add(c.add.sector, c.add.sectors));
      CHECK(t->list() == c.after);
      CHECK(t->valid());
    }
  }
}

TEST_CASE("clearing bad ranges trims and splits them", "[pmemdev][badblocks]") {
  struct Case {
    const char* name;
    std::vector<SectorRange> before;
    SectorRange clear;
    std::vector<SectorRange> after;
  };
  std::vector<Case> cases = {
      {"nothing there", {{0, 8}}, {16, 8}, {{0, 8}}},
      {"exact", {{8, 8}}, {8, 8}, {}},
      {"head", {{8, 8}}, {0, 12}, {{12, 4}}},
      {"tail", {{8, 8}}, {12, 100}, {{8, 4}}},
      {"middle splits", {{0, 32}}, {8, 8}, {{0, 8}, {16, 16}}},
      {"spanning several", {{0, 4}, {8, 4}, {16, 4}}, {2, 16}, {{0, 2}, {18, 2}}},
      {"adjacent does not touch", {{8, 8}}, {0, 8}, {{8, 8}}},
  };
  for (const auto& c : cases) {
    SECTION(c.name) {
      auto t = std::make_unique<BadblockTable>();
      t->count = 0;
      for (auto r : c.before) REQUIRE(t->add(r.sector, r.sectors));
      REQUIRE(t->clear(c.clear.sector, c.clear.sectors));
      CHECK(t->list() == c.after);
      CHECK(t->valid());
    }
  }
}

TEST_CASE("overlap queries find any bad sector in a range", "[pmemdev][badblocks]") {
  auto t = table({{8, 8}, {100, 1}});
  CHECK_FALSE(t->overlaps(0, 8));
  CHECK(t->overlaps(0, 9));
  CHECK(t->overlaps(15, 1));
  CHECK_FALSE(t->overlaps(16, 84));
  CHECK(t->overlaps(16, 85));
  CHECK_FALSE(t->overlaps(101, UINT64_MAX));  // no overflow near the top
  CHECK(t->intersect(4, 8) == std::vector<SectorRange>{{8, 4}});
}

TEST_CASE("bad input to the table is refused, not applied", "[pmemdev][badblocks]") {
  auto t = table({{8, 8}});
  CHECK(t->add(0, 0).error() == EINVAL);
  CHECK(t->clear(0, 0).error() == EINVAL);
  CHECK(t->add(UINT64_MAX - 1, 4).error() == EOVERFLOW);
  CHECK(t->list() == std::vector<SectorRange>{{8, 8}});
}

TEST_CASE("a full table refuses a new range and a split but still merges", "[pmemdev][badblocks]") {
  auto t = std::make_unique<BadblockTable>();
  t->count = 0;
  for (uint64_t i = 0; i < daxfs::pmemdev::kMaxBadRanges; i++) REQUIRE(t->add(i * 4, 3));
  CHECK(t->add(1'000'000, 1).error() == ENOSPC);
  CHECK(t->clear(9, 1).error() == ENOSPC);  // splitting {8,3} needs a slot
  CHECK(t->count == daxfs::pmemdev::kMaxBadRanges);
  CHECK(t->clear(8, 1));                    // trimming a head needs none
  CHECK(t->add(3, 1));                      // bridges {0,3} and {4,3}: one entry fewer
  CHECK(t->count == daxfs::pmemdev::kMaxBadRanges - 1);
  CHECK(t->valid());
}

TEST_CASE("byte ranges round out to whole sectors", "[pmemdev][badblocks]") {
  using daxfs::pmemdev::bytes_to_sectors;
  CHECK(bytes_to_sectors(8192, 4096).value() == SectorRange{16, 8});
  CHECK(bytes_to_sectors(1, 1).value() == SectorRange{0, 1});
  CHECK(bytes_to_sectors(511, 2).value() == SectorRange{0, 2});
  CHECK(bytes_to_sectors(0, 0).error() == EINVAL);
  CHECK(bytes_to_sectors(UINT64_MAX, 2).error() == EOVERFLOW);
}
