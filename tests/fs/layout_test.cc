// The layout sink (daxcore/layout.h) through the Filesystem API with a recording fake: every
// operation that frees, replaces, zeroes, shares or copies a file's blocks tells the sink first,
// with the file range; writes into holes or unwritten blocks say kFill (mappers of the zero page
// refault); reads and plain overwrites tell nothing.
#include <fcntl.h>
#include <linux/falloc.h>

#include <catch2/catch.hpp>
#include <condition_variable>
#include <future>
#include <mutex>
#include <thread>
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
  // Allocating into holes frees no block, but the zero page mapped there goes stale.
  CHECK(sink.take() == std::vector<Break>{{a, 0, 8 * kB, dax::LayoutChange::kFill}});
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
  CHECK(sink.take() == std::vector<Break>{{b, 0, 4 * kB, dax::LayoutChange::kFill}});
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

TEST_CASE("collapse and insert break the layout from the offset to the end", "[fs][layout][shift]") {
  FsFixture f;
  RecordingSink sink;
  f->set_layout_sink(&sink);
  uint64_t a = f.make_file(f.root(), "a", std::string(8 * kB, 'a'));
  sink.take();
  // Every block from the offset on moves (or, in a collapse's range, is freed): mappers of any
  // of them let go first, pinned pages included; cached pages and attributes are stale after.
  REQUIRE(f->fallocate(a, FALLOC_FL_COLLAPSE_RANGE, 2 * kB, kB));
  CHECK(sink.take() == std::vector<Break>{{a, 2 * kB, dax::kToEnd, dax::LayoutChange::kShift}});
  CHECK(sink.remaps == std::vector<uint64_t>{a});
  REQUIRE(f->fallocate(a, FALLOC_FL_INSERT_RANGE, 3 * kB, 2 * kB));
  CHECK(sink.take() == std::vector<Break>{{a, 3 * kB, dax::kToEnd, dax::LayoutChange::kShift}});
  CHECK(sink.remaps == std::vector<uint64_t>{a, a});
  // Refused before anything changes: no break.
  CHECK(f->fallocate(a, FALLOC_FL_COLLAPSE_RANGE, 0, 9 * kB).error() == EINVAL);
  CHECK(f->fallocate(a, FALLOC_FL_INSERT_RANGE, 9 * kB, kB).error() == EINVAL);
  CHECK(sink.take().empty());
  CHECK(sink.remaps.size() == 2);
  f->set_layout_sink(nullptr);
}

namespace {
// A sink whose break_layout of one file waits until released, as the DAX layer's waits for
// that file's mappers; other files' breaks (writes into their holes) pass.
class BlockingSink : public dax::LayoutSink {
 public:
  explicit BlockingSink(uint64_t ino) : ino_(ino) {}
  void break_layout(uint64_t ino, uint64_t, uint64_t, dax::LayoutChange) override {
    if (ino != ino_) return;
    std::unique_lock lock(mu_);
    entered_ = true;
    cv_.notify_all();
    cv_.wait(lock, [&] { return released_; });
  }
  void remapped(uint64_t) override {}
  void shut_down() override {}
  void wait_entered() {
    std::unique_lock lock(mu_);
    cv_.wait(lock, [&] { return entered_; });
  }
  void release() {
    std::lock_guard lock(mu_);
    released_ = true;
    cv_.notify_all();
  }

 private:
  uint64_t ino_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool entered_ = false, released_ = false;
};
}  // namespace

TEST_CASE("a layout break waits with the file's locks only, never the filesystem's", "[fs][layout][locks]") {
  FsFixture f;
  uint64_t a = f.make_file(f.root(), "a", std::string(8 * kB, 'a'));
  uint64_t b = f.make_file(f.root(), "b", std::string(8 * kB, 'b'));
  BlockingSink sink(a);
  f->set_layout_sink(&sink);
  daxfs::fs::SetAttr shrink;
  shrink.valid = daxfs::fs::SetAttr::kSize;
  shrink.size = kB;
  auto truncating = std::async(std::launch::async, [&] { return bool(f->setattr(a, shrink)); });
  sink.wait_entered();  // the truncate of a waits for a's mappers

  // Everything that does not touch a's data goes on meanwhile: other files' I/O, metadata, a's
  // attributes and extent map (as of before the truncate).
  CHECK(f->write(b, 0, "bbbb", 4));
  CHECK(f.read_all(b).substr(0, 4) == "bbbb");
  CHECK(f->fallocate(b, 0, 16 * kB, 4 * kB));
  uint64_t c = f.make_file(f.root(), "c", "new file");
  CHECK(f.read_all(c) == "new file");
  CHECK(f->getattr(a)->st_size == 8 * kB);
  auto rows = f->fiemap(a, 0, 16);
  REQUIRE(rows);
  CHECK(rows->size() == 1);
  CHECK(f->lseek(a, 0, SEEK_HOLE).value() == 8 * kB);
  CHECK(f->statfs().f_bfree > 0);
  // A read of a waits (the truncate holds a's iolock): it sees the file before or after, whole.
  auto reading = std::async(std::launch::async, [&] {
    char buf[2 * kB];
    auto n = f->read(a, 0, sizeof buf, buf);
    return n ? *n : size_t{0};
  });
  CHECK(reading.wait_for(std::chrono::milliseconds(50)) == std::future_status::timeout);
  // So does a fault (the truncate holds a's mmaplock): it never maps blocks being taken away.
  auto faulting = std::async(std::launch::async, [&] {
    return bool(f->iomap_begin(a, 0, kB, dax::kIomapRead | dax::kIomapFault));
  });
  CHECK(faulting.wait_for(std::chrono::milliseconds(50)) == std::future_status::timeout);
  sink.release();
  CHECK(truncating.get());
  CHECK(reading.get() == kB);
  CHECK(faulting.get());
  CHECK(f->getattr(a)->st_size == kB);
  f->set_layout_sink(nullptr);
}

TEST_CASE("an unlinked file is released by the last operation holding it, not under it", "[fs][layout][locks]") {
  FsFixture f;
  uint64_t a = f.make_file(f.root(), "a", std::string(8 * kB, 'a'));
  REQUIRE(f->lookup(f.root(), "a"));  // the caller's reference (an open file)
  BlockingSink sink(a);
  f->set_layout_sink(&sink);
  uint64_t before = f->inode_count();
  daxfs::fs::SetAttr shrink;
  shrink.valid = daxfs::fs::SetAttr::kSize;
  shrink.size = kB;
  auto truncating = std::async(std::launch::async, [&] { return bool(f->setattr(a, shrink)); });
  sink.wait_entered();
  // Unlink and drop every reference while the truncate holds a: the release waits for it.
  REQUIRE(f->unlink(f.root(), "a"));
  f->forget(a, 2);
  CHECK(f->inode_count() == before);
  sink.release();
  CHECK(truncating.get());
  CHECK(f->inode_count() == before - 1);  // released by the truncate's unpin
  CHECK_FALSE(f->getattr(a));
  f->set_layout_sink(nullptr);
}
