// Persistent refcount records follow the reverse map's counts through every split and merge.
#include "fs/refcount.h"

#include <catch2/catch.hpp>
#include <cstring>
#include <vector>

using namespace daxfs::fs;

namespace {
// A fake device: a few blocks of memory, an allocator handing out blocks from 100 up.
struct Harness {
  std::vector<char> media = std::vector<char>(200 * kBlockSize);
  uint64_t next_block = 100;
  uint64_t head = 0;
  RefcountTable table;
  Rmap rmap;
  Txn txn;
  void sync(uint64_t start, uint64_t length) {
    auto alloc = [this]() -> daxfs::Result<uint64_t> { return next_block++; };
    auto copy = [this](uint64_t d, const void* s, size_t n) { memcpy(media.data() + d, s, n); };
    REQUIRE(table.sync(txn, rmap, start, length, 0, head, alloc, copy));
  }
  struct Rec {
    uint64_t start, length;
    uint32_t count;
    bool operator==(const Rec&) const = default;
  };
  std::vector<Rec> records() const {
    std::vector<Rec> out;
    for (auto& [s, r] : table.records()) out.push_back({s, r.length, r.count});
    return out;
  }
};
}  // namespace

TEST_CASE("refcount records appear, split, merge and vanish with the sharing they describe",
          "[fs][refcount]") {
  Harness h;
  h.rmap.add(10, 20, 1, 0, 0);  // ino 1 maps 10-29
  h.sync(10, 20);
  CHECK(h.records().empty());  // count 1: no record
  CHECK(h.head == 0);
  h.rmap.add(10, 20, 2, 0, 0);  // a clone: count 2 everywhere
  h.sync(10, 20);
  CHECK(h.records() == std::vector<Harness::Rec>{{10, 20, 2}});
  CHECK(h.head == 100);          // a record block was made and linked
  h.rmap.add(15, 5, 3, 0, 0);    // a third sharer in the middle
  h.sync(15, 5);
  CHECK(h.records() == std::vector<Harness::Rec>{{10, 5, 2}, {15, 5, 3}, {20, 10, 2}});
  h.rmap.remove(15, 5, 3, 0);    // gone again: the records merge back
  h.sync(15, 5);
  CHECK(h.records() == std::vector<Harness::Rec>{{10, 20, 2}});
  h.rmap.remove(10, 5, 2, 0);    // CoW of the clone's head: the head is count 1 again
  h.sync(10, 5);
  CHECK(h.records() == std::vector<Harness::Rec>{{15, 15, 2}});
  h.rmap.remove(15, 15, 2, 5);
  h.sync(15, 15);
  CHECK(h.records().empty());
  CHECK(h.table.recorded(12) == 1);
}

TEST_CASE("an unchanged range writes nothing", "[fs][refcount]") {
  Harness h;
  h.rmap.add(0, 8, 1, 0, 0);
  h.rmap.add(0, 8, 2, 0, 0);
  h.sync(0, 8);
  size_t bytes = h.txn.bytes();
  h.sync(0, 8);
  h.sync(2, 3);
  CHECK(h.txn.bytes() == bytes);
}

TEST_CASE("loading refuses overlapping records", "[fs][refcount]") {
  RefcountTable t;
  CHECK(t.load(10, {10, 5, 2, }, {1, 0}));
  CHECK_FALSE(t.load(12, {12, 5, 2}, {1, 1}));
  CHECK_FALSE(t.load(5, {5, 6, 2}, {1, 2}));
  CHECK(t.load(15, {15, 5, 3}, {1, 3}));
  CHECK(t.recorded(16) == 3);
}
