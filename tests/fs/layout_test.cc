// The layout sink (daxcore/layout.h) through the Filesystem API with a recording fake: every
// operation that frees, replaces, zeroes, shares or copies a file's blocks tells the sink first,
// with the file range; reads, plain overwrites and allocations into holes do not.
#include <fcntl.h>
#include <linux/falloc.h>

#include <catch2/catch.hpp>
#include <vector>

#include "daxcore/iomap.h"
#include "daxcore/layout.h"
#include "tests/support/fs_fixture.h"

using daxfs::test::FsFixture;
namespace dax = daxfs::dax;

namespace {
constexpr uint64_t kB = 4096;

struct Break {
  uint64_t ino, offset, length;
  dax::LayoutChange why;
  bool operator==(const Break&) const = default;
};

class RecordingSink : public dax::LayoutSink {
 public:
  void break_layout(uint64_t ino, uint64_t offset, uint64_t length, dax::LayoutChange why) override {
    breaks.push_back({ino, offset, length, why});
  }
  void remapped(uint64_t ino) override { remaps.push_back(ino); }
  void shut_down() override { shutdowns++; }
  std::vector<Break> take() { return std::exchange(breaks, {}); }
  std::vector<Break> breaks;
  std::vector<uint64_t> remaps;
  int shutdowns = 0;
};
}  // namespace

TEST_CASE("operations that change a file's blocks break its layout first", "[fs][layout]") {
  FsFixture f;
  RecordingSink sink;
  f->set_layout_sink(&sink);
  uint64_t a = f.make_file(f.root(), "a", std::string(8 * kB, 'a'));
  CHECK(sink.take().empty());  // allocating into holes changes no mapped block
  REQUIRE(f->write(a, kB, "over", 4));
  char buf[16];
  REQUIRE(f->read(a, 0, sizeof buf, buf));
  CHECK(sink.take().empty());  // overwrites in place and reads leave the layout alone

  daxfs::fs::SetAttr shrink;
  shrink.valid = daxfs::fs::SetAttr::kSize;
  shrink.size = 6 * kB + 10;
  REQUIRE(f->setattr(a, shrink));
  CHECK(sink.take() == std::vector<Break>{{a, 6 * kB, dax::kToEnd, dax::LayoutChange::kTruncate}});

  REQUIRE(f->fallocate(a, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, kB, 2 * kB));
  CHECK(sink.take() == std::vector<Break>{{a, kB, 2 * kB, dax::LayoutChange::kPunch}});
  REQUIRE(f->fallocate(a, FALLOC_FL_ZERO_RANGE, 4 * kB, kB));
  CHECK(sink.take() == std::vector<Break>{{a, 4 * kB, kB, dax::LayoutChange::kZero}});
  REQUIRE(f->fallocate(a, 0, 8 * kB, 4 * kB));
  CHECK(sink.take().empty());  // preallocation adds blocks, changes none

  uint64_t b = f.make_file(f.root(), "b", std::string(4 * kB, 'b'));
  REQUIRE(f->clone_range(a, 4 * kB, b, 0, 2 * kB));
  CHECK(sink.take() == std::vector<Break>{{b, 0, 2 * kB, dax::LayoutChange::kRemapInto},
                                          {a, 4 * kB, 2 * kB, dax::LayoutChange::kShare}});
  // A write into a shared block copies it: its layout breaks first (other mappers of the old block).
  REQUIRE(f->write(b, 100, "cow", 3));
  CHECK(sink.take() == std::vector<Break>{{b, 0, kB, dax::LayoutChange::kCow}});
  REQUIRE(f->unshare_range(b, 0, 2 * kB));
  CHECK(sink.take() == std::vector<Break>{{b, 0, 2 * kB, dax::LayoutChange::kCow}});
  REQUIRE(f->unshare_range(b, 0, 2 * kB));
  CHECK(sink.take().empty());  // nothing shared any more: nothing to break

  // A store fault on a shared block, through the iomap seam.
  REQUIRE(f->clone_range(a, 4 * kB, b, 0, kB));
  sink.take();
  auto m = f->iomap_begin(b, 0, kB, dax::kIomapWrite | dax::kIomapFault);
  REQUIRE(m);
  CHECK(sink.take() == std::vector<Break>{{b, 0, kB, dax::LayoutChange::kCow}});
  f->set_layout_sink(nullptr);
}
