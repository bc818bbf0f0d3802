// The iomap seam (daxcore/iomap.h) through the Filesystem API: what begin answers for holes,
// unwritten, written, shared and poisoned blocks, and what an allocating (write/fault) begin
// does to each, durable across a remount. The DAX layer sees the filesystem only through this.
#include <fcntl.h>
#include <linux/falloc.h>

#include <catch2/catch.hpp>

#include "daxcore/iomap.h"
#include "tests/support/fs_fixture.h"

using daxfs::test::FsFixture;
namespace dax = daxfs::dax;

namespace {
constexpr uint64_t kB = 4096;

dax::Iomap begin(FsFixture& f, uint64_t ino, uint64_t off, uint64_t len, uint32_t ops, dax::Iomap* src = nullptr) {
  auto r = f->iomap_begin(ino, off, len, ops);
  INFO("iomap_begin(" << off << ", " << len << ", " << ops << "): " << (r ? 0 : r.error()));
  REQUIRE(r);
  REQUIRE(f->iomap_end(ino, r->map, r->map.length, ops));
  if (src) *src = r->srcmap;
  return r->map;
}

}  // namespace

TEST_CASE("iomap_begin reports holes, unwritten and written ranges one kind at a time", "[fs][iomap]") {
  FsFixture f;
  uint64_t ino = f.make_file(f.root(), "f");
  REQUIRE(f->write(ino, 4 * kB, std::string(2 * kB, 'w').data(), 2 * kB));  // blocks 4..5
  REQUIRE(f->fallocate(ino, FALLOC_FL_KEEP_SIZE, 8 * kB, 2 * kB));           // blocks 8..9 unwritten
  auto m = begin(f, ino, 0, 16 * kB, dax::kIomapRead);
  CHECK(m.type == dax::IomapType::kHole);
  CHECK(m.offset == 0);
  CHECK(m.length == 4 * kB);
  CHECK(m.address == dax::kNoAddress);
  m = begin(f, ino, 4 * kB + 100, 12 * kB, dax::kIomapRead);  // offsets round down to the block
  CHECK(m.type == dax::IomapType::kMapped);
  CHECK(m.offset == 4 * kB);
  CHECK(m.length == 2 * kB);
  CHECK(m.address % kB == 0);
  m = begin(f, ino, 6 * kB, 10 * kB, dax::kIomapRead);
  CHECK(m.type == dax::IomapType::kHole);
  CHECK(m.length == 2 * kB);
  m = begin(f, ino, 8 * kB, 8 * kB, dax::kIomapRead);
  CHECK(m.type == dax::IomapType::kUnwritten);
  CHECK(m.length == 2 * kB);
  // Never longer than asked.
  m = begin(f, ino, 0, kB, dax::kIomapRead);
  CHECK(m.length == kB);
  // Bad requests.
  CHECK(f->iomap_begin(ino, 0, 0, dax::kIomapRead).error() == EINVAL);
  CHECK(f->iomap_begin(f.root(), 0, kB, dax::kIomapRead).error() == EINVAL);
  CHECK(f->iomap_begin(999999, 0, kB, dax::kIomapRead).error() == ENOENT);
  CHECK(f->iomap_begin(ino, daxfs::fs::kMaxFileSize, kB, dax::kIomapRead).error() == EFBIG);
  // The last block below 2^63 - 1 with a length that would overflow: clipped, a hole.
  m = begin(f, ino, daxfs::fs::kMaxFileSize - kB, UINT64_MAX, dax::kIomapRead);
  CHECK(m.type == dax::IomapType::kHole);
  CHECK(m.offset == (daxfs::fs::kMaxFileSize - kB) / kB * kB);
  CHECK(m.end() <= daxfs::fs::kMaxFileBlocks * kB);
}

TEST_CASE("a write begin makes holes and unwritten blocks written zeros in one transaction", "[fs][iomap]") {
  FsFixture f;
  uint64_t ino = f.make_file(f.root(), "f", std::string(3 * kB, 'd'));
  daxfs::fs::SetAttr grow;
  grow.valid = daxfs::fs::SetAttr::kSize;
  grow.size = 6 * kB;  // a sparse tail: faults happen within EOF
  REQUIRE(f->setattr(ino, grow));
  REQUIRE(f->fallocate(ino, FALLOC_FL_KEEP_SIZE, 4 * kB, 2 * kB));
  uint64_t free0 = f->statfs().f_bfree;
  // A hole at block 3 becomes one zeroed written block, flagged new.
  auto m = begin(f, ino, 3 * kB, kB, dax::kIomapWrite | dax::kIomapFault);
  CHECK(m.type == dax::IomapType::kMapped);
  CHECK((m.flags & dax::kIomapNew) != 0);
  CHECK((m.flags & dax::kIomapShared) == 0);
  CHECK(m.length == kB);
  CHECK(f->statfs().f_bfree < free0);
  // Unwritten block 4 is converted: written, same address.
  auto before = begin(f, ino, 4 * kB, kB, dax::kIomapRead);
  REQUIRE(before.type == dax::IomapType::kUnwritten);
  m = begin(f, ino, 4 * kB, kB, dax::kIomapWrite | dax::kIomapFault);
  CHECK(m.type == dax::IomapType::kMapped);
  CHECK(m.address == before.address);
  // An already written private block comes back as it is, nothing allocated.
  uint64_t free1 = f->statfs().f_bfree;
  auto w = begin(f, ino, 0, kB, dax::kIomapWrite | dax::kIomapFault);
  CHECK(w.type == dax::IomapType::kMapped);
  CHECK((w.flags & dax::kIomapNew) == 0);
  CHECK(f->statfs().f_bfree == free1);
  // The size does not change (a fault never extends a file); the data reads back.
  CHECK(f->getattr(ino)->st_size == static_cast<off_t>(6 * kB));
  f.remount();
  auto b3 = begin(f, ino, 3 * kB, kB, dax::kIomapRead);
  auto b4 = begin(f, ino, 4 * kB, kB, dax::kIomapRead);
  CHECK(b3.type == dax::IomapType::kMapped);
  CHECK(b4.type == dax::IomapType::kMapped);
  CHECK(begin(f, ino, 5 * kB, kB, dax::kIomapRead).type == dax::IomapType::kUnwritten);
  CHECK(f.read_all(ino) == std::string(3 * kB, 'd') + std::string(3 * kB, '\0'));
}

TEST_CASE("a fault begin stops at EOF, read under the same locks as the blocks", "[fs][iomap]") {
  FsFixture f;
  uint64_t ino = f.make_file(f.root(), "f", std::string(2 * kB + 1, 'e'));  // EOF inside block 2
  auto m = begin(f, ino, 0, 64 * kB, dax::kIomapFault);
  CHECK(m.type == dax::IomapType::kMapped);
  CHECK(m.length == 3 * kB);  // up to EOF rounded up to the block, not the 64 KiB asked
  CHECK(f->iomap_begin(ino, 3 * kB, kB, dax::kIomapFault).error() == ENXIO);
  // A store fault past EOF allocates nothing.
  uint64_t free0 = f->statfs().f_bfree;
  CHECK(f->iomap_begin(ino, 3 * kB, kB, dax::kIomapFault | dax::kIomapWrite).error() == ENXIO);
  CHECK(f->statfs().f_bfree == free0);
  // After a truncate to 0 nothing is within EOF; a plain (non-fault) begin still answers.
  daxfs::fs::SetAttr cut;
  cut.valid = daxfs::fs::SetAttr::kSize;
  cut.size = 0;
  REQUIRE(f->setattr(ino, cut));
  CHECK(f->iomap_begin(ino, 0, kB, dax::kIomapFault).error() == ENXIO);
  CHECK(f->iomap_begin(ino, 0, kB, dax::kIomapFault | dax::kIomapWrite).error() == ENXIO);
  CHECK(begin(f, ino, 0, kB, dax::kIomapRead).type == dax::IomapType::kHole);
}

TEST_CASE("a write begin on shared blocks copies them and leaves the other sharer intact", "[fs][iomap][reflink]") {
  FsFixture f;
  std::string data(4 * kB, 's');
  uint64_t a = f.make_file(f.root(), "a", data);
  uint64_t b = f.make_file(f.root(), "b");
  REQUIRE(f->clone_range(a, 0, b, 0, 0));
  auto shared = begin(f, b, 0, 4 * kB, dax::kIomapReport);
  CHECK((shared.flags & dax::kIomapShared) != 0);
  dax::Iomap src;
  auto m = begin(f, b, kB, kB, dax::kIomapWrite | dax::kIomapFault, &src);
  CHECK(m.type == dax::IomapType::kMapped);
  CHECK((m.flags & dax::kIomapShared) == 0);
  CHECK(src.type == dax::IomapType::kMapped);
  CHECK((src.flags & dax::kIomapShared) != 0);
  CHECK(src.address == shared.address + kB);
  CHECK(m.address != src.address);
  // The copy holds the old data; a's block is still the shared one.
  CHECK(f.read_all(b) == data);
  auto am = begin(f, a, kB, kB, dax::kIomapReport);
  CHECK(am.address == src.address);
  CHECK((am.flags & dax::kIomapShared) == 0);  // b no longer maps it
  f.remount();
  CHECK(f.read_all(a) == data);
  CHECK(f.read_all(b) == data);
}

TEST_CASE("a report begin splits at poison; a write begin refuses to copy a poisoned shared block",
          "[fs][iomap][poison]") {
  FsFixture f;
  uint64_t a = f.make_file(f.root(), "a", std::string(4 * kB, 'p'));
  auto whole = begin(f, a, 0, 4 * kB, dax::kIomapReport);
  REQUIRE(whole.length == 4 * kB);
  {
    auto dev = daxfs::pmemdev::Device::open(f.path(), {daxfs::pmemdev::Create::kNo, 0, daxfs::pmemdev::Map::kNo});
    REQUIRE(dev);
    REQUIRE((*dev)->inject_error(whole.address + 2 * kB, kB));
  }
  auto m = begin(f, a, 0, 4 * kB, dax::kIomapReport);
  CHECK(m.length == 2 * kB);
  CHECK((m.flags & dax::kIomapPoisoned) == 0);
  m = begin(f, a, 2 * kB, 2 * kB, dax::kIomapReport);
  CHECK(m.length == kB);
  CHECK((m.flags & dax::kIomapPoisoned) != 0);
  // A store fault into a shared poisoned block would have to copy it: EIO, nothing changes.
  uint64_t b = f.make_file(f.root(), "b");
  REQUIRE(f->clone_range(a, 0, b, 0, 0));
  uint64_t free0 = f->statfs().f_bfree;
  auto r = f->iomap_begin(b, 2 * kB, kB, dax::kIomapWrite | dax::kIomapFault);
  REQUIRE_FALSE(r);
  CHECK(r.error() == EIO);
  CHECK(f->statfs().f_bfree == free0);
  CHECK_FALSE(f->is_shut_down());
}

TEST_CASE("a write begin over a poisoned unwritten block zeroes it whole and clears the poison",
          "[fs][iomap][poison]") {
  // A store fault into preallocated space whose block went bad: the conversion stores zeros over
  // the whole block, a recovery write (XFS_BMAPI_ZERO through the pmem driver), as write(2)
  // into it is. It used to keep the poison: the fault raised BUS_MCEERR_AR and the file, which
  // read zeros there before, read EIO after.
  FsFixture f;
  uint64_t u = f.make_file(f.root(), "u");
  REQUIRE(f->fallocate(u, 0, 0, 4 * kB));
  auto m = begin(f, u, 0, 4 * kB, dax::kIomapReport);
  REQUIRE(m.type == dax::IomapType::kUnwritten);
  REQUIRE(m.length == 4 * kB);
  const uint64_t bad = m.address + kB;
  {
    auto dev = daxfs::pmemdev::Device::open(f.path(), {daxfs::pmemdev::Create::kNo, 0, daxfs::pmemdev::Map::kNo});
    REQUIRE(dev);
    REQUIRE((*dev)->inject_error(bad, kB));
  }
  std::string got(kB, 'x');
  REQUIRE(f->read(u, kB, kB, got.data()));  // unwritten: zeros, poison or not
  CHECK(got == std::string(kB, '\0'));
  m = begin(f, u, kB, kB, dax::kIomapWrite | dax::kIomapFault);
  CHECK(m.type == dax::IomapType::kMapped);
  CHECK(m.address == bad);
  CHECK((m.flags & dax::kIomapPoisoned) == 0);
  m = begin(f, u, kB, kB, dax::kIomapReport);
  CHECK((m.flags & dax::kIomapPoisoned) == 0);
  f.remount();  // the badblock list is persistent: cleared for good
  REQUIRE(f->read(u, kB, kB, got.data()));
  CHECK(got == std::string(kB, '\0'));
  auto dev = daxfs::pmemdev::Device::open(f.path(), {daxfs::pmemdev::Create::kNo, 0, daxfs::pmemdev::Map::kNo});
  REQUIRE(dev);
  CHECK_FALSE((*dev)->poisoned(bad, kB));
}
