// fsck.daxfs on reflink filesystems: shared blocks built through the Filesystem API (clone, CoW
// writes, dedupe, unshare) are clean; damaged refcount records and chains are reported and
// rebuilt from the extent maps; sharing without reflink, or with metadata, stays a duplicate.
#include <map>

#include "fs/fsck/checker.h"
#include "fs/fsck/super.h"
#include "tests/fsck/fsck_fixture.h"

using namespace daxfs;
using daxfs::test::FsckFixture;
using daxfs::test::has_problem;

namespace {
constexpr uint64_t kB = fs::kBlockSize;

uint64_t make_file(fs::Filesystem& f, const std::string& name, const std::string& data) {
  auto st = f.mknod(f.root_ino(), name, S_IFREG | 0644, 0, test::root_cred());
  REQUIRE(st);
  if (!data.empty()) REQUIRE(f.write(st->st_ino, 0, data.data(), data.size()).value() == data.size());
  return st->st_ino;
}

// Blocks of distinct bytes, so that a block read from the wrong place shows.
std::string pattern(uint64_t blocks, char seed) {
  std::string s(blocks * kB, '\0');
  for (uint64_t b = 0; b < blocks; b++) std::fill_n(s.begin() + b * kB, kB, static_cast<char>(seed + b));
  return s;
}

std::string contents(fs::Filesystem& f, uint64_t ino) {
  auto st = f.getattr(ino);
  REQUIRE(st);
  std::string out(static_cast<size_t>(st->st_size), '\0');
  REQUIRE(f.read(ino, 0, out.size(), out.data()).value() == out.size());
  return out;
}

// The media offset of every refcount record in use, in chain order.
std::vector<uint64_t> records(FsckFixture& fx) {
  std::vector<uint64_t> out;
  uint64_t b = fx.sb().refcount_head;
  for (int guard = 0; b != 0 && guard < 1000; guard++) {
    for (uint32_t s = 0; s < fs::kRefcountsPerBlock; s++) {
      uint64_t off = b * kB + sizeof(fs::RecordBlockHeader) + s * sizeof(fs::DiskRefcount);
      if (fx.get<fs::DiskRefcount>(off).length != 0) out.push_back(off);
    }
    b = fx.get<fs::RecordBlockHeader>(b * kB).next;
  }
  return out;
}

// The media offset of the first free record slot of the chain; 0 when none.
uint64_t free_slot(FsckFixture& fx) {
  uint64_t b = fx.sb().refcount_head;
  for (int guard = 0; b != 0 && guard < 1000; guard++) {
    for (uint32_t s = 0; s < fs::kRefcountsPerBlock; s++) {
      uint64_t off = b * kB + sizeof(fs::RecordBlockHeader) + s * sizeof(fs::DiskRefcount);
      if (fx.get<fs::DiskRefcount>(off).length == 0) return off;
    }
    b = fx.get<fs::RecordBlockHeader>(b * kB).next;
  }
  return 0;
}

// Files sharing blocks every way the API allows: a whole clone, a partial clone into the middle
// of a third file, a file sharing with itself, a CoW write, a dedupe and an unshare.
struct Shared {
  std::map<uint64_t, std::string> data;  // ino -> contents
  uint64_t a = 0, b = 0, c = 0, d = 0;
};

Shared populate(FsckFixture& fx) {
  Shared s;
  auto f = fx.mount();
  s.a = make_file(*f, "a", pattern(8, 'a'));
  s.b = make_file(*f, "b", "");
  REQUIRE(f->clone_range(s.a, 0, s.b, 0, 0).value() == 8 * kB);  // b shares all of a: count 2
  s.c = make_file(*f, "c", pattern(6, 'A'));
  REQUIRE(f->clone_range(s.a, 2 * kB, s.c, 1 * kB, 3 * kB));  // a[2,5) count 3
  REQUIRE(f->clone_range(s.a, 0, s.a, 10 * kB, 2 * kB));      // a maps its blocks 0, 1 twice: count 3
  std::string x(kB, 'x');
  REQUIRE(f->write(s.b, 6 * kB, x.data(), x.size()));  // CoW: a[6] back to count 1
  s.d = make_file(*f, "d", pattern(4, 'a'));           // a's first blocks, by value
  auto dd = f->dedupe_range(s.a, 0, s.d, 0, 4 * kB);
  REQUIRE(dd);
  REQUIRE_FALSE(dd->differs);
  REQUIRE(f->unshare_range(s.c, 2 * kB, kB));  // one block of c's clone copied back out
  for (uint64_t ino : {s.a, s.b, s.c, s.d}) s.data[ino] = contents(*f, ino);
  return s;
}

void data_equal(fs::Filesystem& f, const Shared& s) {
  for (const auto& [ino, want] : s.data) {
    INFO("inode " << ino);
    CHECK(contents(f, ino) == want);
  }
}

void data_intact(FsckFixture& fx, const Shared& s) {
  auto f = fx.mount();
  data_equal(*f, s);
  // And the filesystem still shares and copies on write (leaving the sharing as it was).
  auto e = make_file(*f, "e", "");
  REQUIRE(f->clone_range(s.a, 0, e, 0, 0));
  std::string y(kB, 'y');
  REQUIRE(f->write(e, 0, y.data(), y.size()));
  CHECK(contents(*f, s.a) == s.data.at(s.a));
  REQUIRE(f->unlink(f->root_ino(), "e"));
  f->forget(e, 1);  // the creator's lookup reference: e is freed now, not left an orphan
}

// fsck -y repairs, a second check is clean, and the mount agrees. The media is left as fsck
// wrote it (data_intact() mounts and writes).
void repaired_and_clean(FsckFixture& fx) {
  auto y = fx.repair();
  CHECK(y.exit_code == fsck::kExitCorrected);
  auto again = fx.check();
  CHECK(again.exit_code == fsck::kExitClean);
  CHECK(again.problems.empty());
  CHECK(fx.mounts());
}
}  // namespace

TEST_CASE("a reflink filesystem with shared blocks is clean", "[fsck][reflink]") {
  FsckFixture fx;
  Shared s = populate(fx);
  REQUIRE_FALSE(records(fx).empty());
  auto n = fx.check();
  CHECK(n.exit_code == fsck::kExitClean);
  CHECK(n.problems.empty());
  CHECK(n.stats.shared_blocks > 0);
  CHECK(n.stats.refcount_records == records(fx).size());
  auto y = fx.repair();
  CHECK(y.exit_code == fsck::kExitClean);
  CHECK_FALSE(y.modified);
  data_intact(fx, s);
  CHECK(fx.check().exit_code == fsck::kExitClean);  // the filesystem's own updates are clean too
}

TEST_CASE("the report lists shared ranges with their owners", "[fsck][reflink]") {
  FsckFixture fx;
  uint64_t a, b;
  {
    auto f = fx.mount();
    a = make_file(*f, "a", pattern(3, 'a'));
    b = make_file(*f, "b", "");
    REQUIRE(f->clone_range(a, 0, b, 0, 0));
  }
  auto r = fx.check();
  REQUIRE(r.exit_code == fsck::kExitClean);
  CHECK(r.stats.shared_blocks == 3);
  CHECK(r.stats.refcount_records == 1);
  REQUIRE(r.stats.shared.size() == 1);
  CHECK(r.stats.shared[0].length == 3);
  CHECK(r.stats.shared[0].owners == std::vector<uint64_t>{std::min(a, b), std::max(a, b)});
  auto j = fsck::to_json(r);
  CHECK(j["shared_blocks"] == 3);
  CHECK(j["refcount_records"] == 1);
  CHECK(j["shared"][0]["count"] == 2);
  CHECK(j["shared"][0]["owners"].size() == 2);
  CHECK(j["shared_truncated"] == false);
  CHECK(fsck::format_text(r).find("(3 shared, 1 refcount record)") != std::string::npos);
}

TEST_CASE("a corrupted refcount is reported and repaired", "[fsck][reflink]") {
  FsckFixture fx;
  Shared s = populate(fx);
  uint64_t rec = records(fx).front();
  auto good = fx.get<fs::DiskRefcount>(rec);
  SECTION("a count too high") { fx.put_bytes(rec + offsetof(fs::DiskRefcount, count), "\x07\0\0\0", 4); }
  SECTION("a count of 1") { fx.put_bytes(rec + offsetof(fs::DiskRefcount, count), "\x01\0\0\0", 4); }
  CHECK_FALSE(fx.mounts());
  auto n = fx.check();
  CHECK(n.exit_code == fsck::kExitUncorrected);
  CHECK(has_problem(n, "refcount_mismatch"));
  repaired_and_clean(fx);
  // Only that record was rewritten: its slot says what it said before the damage.
  CHECK(fx.get<fs::DiskRefcount>(rec).count == good.count);
  CHECK(fx.get<fs::DiskRefcount>(rec).start == good.start);
  data_intact(fx, s);
}

TEST_CASE("a lost reflink feature bit is set again from the refcount chain, and no clone loses its data",
          "[fsck][reflink]") {
  FsckFixture fx;
  Shared s = populate(fx);
  fs::SuperBlock sb = fx.sb();
  REQUIRE(sb.refcount_head != 0);
  fx.put<uint64_t>(offsetof(fs::SuperBlock, features), sb.features & ~fs::kFeatureReflink);
  CHECK_FALSE(fx.mounts());  // refcount records on a filesystem without reflink
  auto n = fx.check();
  CHECK(n.exit_code == fsck::kExitUncorrected);
  CHECK(has_problem(n, "features"));
  CHECK_FALSE(has_problem(n, "refcount_chain"));
  repaired_and_clean(fx);
  CHECK((fx.sb().features & fs::kFeatureReflink) != 0);
  data_intact(fx, s);
}

TEST_CASE("a deleted refcount record is reported missing and added back", "[fsck][reflink]") {
  FsckFixture fx;
  Shared s = populate(fx);
  size_t before = records(fx).size();
  fx.put(records(fx).front(), fs::DiskRefcount{});
  CHECK_FALSE(fx.mounts());
  auto n = fx.check();
  CHECK(has_problem(n, "refcount_missing"));
  CHECK_FALSE(has_problem(n, "refcount_mismatch"));
  repaired_and_clean(fx);
  CHECK(records(fx).size() == before);
  data_intact(fx, s);
}

TEST_CASE("a refcount record over blocks that are not shared is stale", "[fsck][reflink]") {
  FsckFixture fx;
  Shared s = populate(fx);
  uint64_t slot = free_slot(fx);
  REQUIRE(slot != 0);
  SECTION("over blocks mapped once") {
    // c's own first block (its clone starts at file block 1).
    auto x = fx.get<fs::DiskExtent>(fx.extent_at(s.c));
    REQUIRE(x.logical == 0);
    fx.put(slot, fs::DiskRefcount{x.physical, 1, 2});
  }
  SECTION("over free blocks") {
    const fs::SuperBlock sb = fx.sb();
    fx.put(slot, fs::DiskRefcount{sb.block_count - 10, 5, 3});
  }
  CHECK_FALSE(fx.mounts());
  auto n = fx.check();
  CHECK(has_problem(n, "refcount_stale"));
  CHECK_FALSE(has_problem(n, "refcount_missing"));
  repaired_and_clean(fx);
  CHECK(fx.get<fs::DiskRefcount>(slot).length == 0);
  data_intact(fx, s);
}

TEST_CASE("refcount records outside the data area or overlapping another are removed", "[fsck][reflink]") {
  FsckFixture fx;
  Shared s = populate(fx);
  uint64_t slot = free_slot(fx);
  REQUIRE(slot != 0);
  SECTION("outside") { fx.put(slot, fs::DiskRefcount{fx.sb().block_count - 1, 5, 2}); }
  SECTION("overlapping") {
    auto first = fx.get<fs::DiskRefcount>(records(fx).front());
    fx.put(slot, fs::DiskRefcount{first.start, first.length, first.count});
  }
  CHECK_FALSE(fx.mounts());
  auto n = fx.check();
  CHECK(has_problem(n, "refcount_record"));
  repaired_and_clean(fx);
  CHECK(fx.get<fs::DiskRefcount>(slot).length == 0);
  data_intact(fx, s);
}

TEST_CASE("a refcount chain with a bad block or a cycle is cut and the records rebuilt", "[fsck][reflink]") {
  FsckFixture fx;
  Shared s = populate(fx);
  uint64_t head = fx.sb().refcount_head;
  size_t before = records(fx).size();
  SECTION("bad magic at the head: every record is rebuilt in a new block") {
    fx.put(head * kB, uint64_t{0x1234});
    auto n = fx.check();
    CHECK(has_problem(n, "refcount_chain"));
    CHECK(has_problem(n, "refcount_missing"));
    repaired_and_clean(fx);
    // The damaged block is free once the cut commits: the rebuild may well reuse it.
    CHECK(fx.get<fs::RecordBlockHeader>(fx.sb().refcount_head * kB).magic == fs::kRefcountMagic);
  }
  SECTION("a cycle: the link back is cut, the records stay") {
    fx.put(head * kB + offsetof(fs::RecordBlockHeader, next), head);
    CHECK_FALSE(fx.mounts());
    auto n = fx.check();
    CHECK(has_problem(n, "refcount_chain"));
    CHECK_FALSE(has_problem(n, "refcount_missing"));
    repaired_and_clean(fx);
    CHECK(fx.sb().refcount_head == head);
  }
  SECTION("a link outside the device") {
    fx.put(head * kB + offsetof(fs::RecordBlockHeader, next), uint64_t{1} << 40);
    CHECK(has_problem(fx.check(), "refcount_chain"));
    repaired_and_clean(fx);
  }
  SECTION("a head that is a file's extent block") {
    fx.put(offsetof(fs::SuperBlock, refcount_head), fx.inode(s.a).head);
    auto n = fx.check();
    CHECK(has_problem(n, "refcount_chain"));
    repaired_and_clean(fx);
  }
  CHECK(records(fx).size() == before);
  data_intact(fx, s);
}

TEST_CASE("many records are rebuilt across blocks, and emptied chain blocks are dropped", "[fsck][reflink]") {
  FsckFixture fx;
  Shared s;
  const uint64_t n = 2 * fs::kRefcountsPerBlock + 10;  // three record blocks
  {
    auto f = fx.mount();
    s.a = make_file(*f, "a", pattern(2 * n, 'a'));
    s.b = make_file(*f, "b", "");
    for (uint64_t i = 0; i < n; i++)
      REQUIRE(f->clone_range(s.a, 2 * i * kB, s.b, 2 * i * kB, kB));  // every other block
    s.data[s.a] = contents(*f, s.a);
    s.data[s.b] = contents(*f, s.b);
  }
  REQUIRE(records(fx).size() == n);
  REQUIRE(fx.check().exit_code == fsck::kExitClean);
  SECTION("every count wrong: every slot is rewritten in place") {
    for (uint64_t rec : records(fx)) fx.put_bytes(rec + offsetof(fs::DiskRefcount, count), "\x09\0\0\0", 4);
    repaired_and_clean(fx);
    CHECK(records(fx).size() == n);
  }
  SECTION("the whole chain lost: three new blocks") {
    fx.put(offsetof(fs::SuperBlock, refcount_head), uint64_t{0});
    auto r = fx.check();
    CHECK(has_problem(r, "refcount_missing"));
    CHECK(r.stats.refcount_records == n);
    repaired_and_clean(fx);
    CHECK(records(fx).size() == n);
  }
  SECTION("nothing shared any more: the chain is dropped") {
    {
      auto f = fx.mount();
      REQUIRE(f->unshare_range(s.b, 0, 2 * n * kB));
    }
    REQUIRE(records(fx).empty());
    REQUIRE(fx.sb().refcount_head != 0);  // the filesystem keeps its empty record blocks
    CHECK(fx.check().exit_code == fsck::kExitClean);
    fx.put(free_slot(fx), fs::DiskRefcount{fx.get<fs::DiskExtent>(fx.extent_at(s.a)).physical, 1, 2});
    CHECK(has_problem(fx.check(), "refcount_stale"));
    repaired_and_clean(fx);
    CHECK(fx.sb().refcount_head == 0);
  }
  data_intact(fx, s);
}

TEST_CASE("an orphan's references are legal, and freeing it rewrites the records", "[fsck][reflink]") {
  FsckFixture fx;
  Shared s;
  uint64_t orphan;
  {
    auto f = fx.mount();
    s.a = make_file(*f, "a", pattern(4, 'a'));
    orphan = make_file(*f, "orphan", "");
    REQUIRE(f->clone_range(s.a, 0, orphan, 0, 0));
    s.data[s.a] = contents(*f, s.a);
  }
  // Unlinked while open when the filesystem went down: no entry, no links, its extents intact.
  uint64_t entry = fx.dirent_at(fx.sb().root_ino, "orphan");
  REQUIRE(entry != 0);
  fx.put(entry + offsetof(fs::DiskDirent, ino), uint64_t{0});
  fx.put_inode_field(orphan, offsetof(fs::DiskInode, nlink), uint32_t{0});
  REQUIRE(records(fx).size() == 1);
  SECTION("its record is legal") {
    auto n = fx.check();
    CHECK(n.exit_code == fsck::kExitClean);  // only informational findings
    CHECK(has_problem(n, "orphan", orphan));
    CHECK(n.stats.shared_blocks == 0);  // as it will be
  }
  SECTION("its record missing is an error that freeing it repairs") {
    fx.put(records(fx).front(), fs::DiskRefcount{});
    auto n = fx.check();
    CHECK(n.exit_code == fsck::kExitUncorrected);
    CHECK(has_problem(n, "refcount_missing"));
    for (const fsck::Problem& p : n.problems) CHECK(p.fixable);
  }
  auto y = fx.repair();
  CHECK(y.exit_code == fsck::kExitCorrected);
  auto again = fx.check();
  CHECK(again.problems.empty());
  CHECK(records(fx).empty());
  data_intact(fx, s);
}

TEST_CASE("sharing with metadata is a duplicate even with reflink", "[fsck][reflink]") {
  FsckFixture fx;
  uint64_t a, b;
  {
    auto f = fx.mount();
    a = make_file(*f, "a", pattern(2, 'a'));
    b = make_file(*f, "b", pattern(2, 'b'));
  }
  uint64_t eb = fx.extent_at(b);
  auto xb = fx.get<fs::DiskExtent>(eb);
  fx.put(eb, fs::DiskExtent{xb.logical, fx.inode(a).head, 1, 0});  // b's data is a's extent block
  CHECK_FALSE(fx.mounts());
  auto n = fx.check();
  CHECK(has_problem(n, "duplicate_block", b));
  CHECK_FALSE(has_problem(n, "refcount_missing"));
  CHECK(fx.repair().exit_code == fsck::kExitCorrected);
  CHECK(fx.check().exit_code == fsck::kExitClean);
  auto f = fx.mount();
  CHECK(contents(*f, a) == pattern(2, 'a'));
  CHECK(f->file_info(b)->data_blocks == 0);
}

TEST_CASE("without reflink, two files mapping one block are a duplicate, not sharing", "[fsck][reflink]") {
  FsckFixture fx(32ULL << 20, fs::FormatOptions{.reflink = false});
  uint64_t a, b;
  {
    auto f = fx.mount();
    a = make_file(*f, "a", pattern(2, 'a'));
    b = make_file(*f, "b", pattern(2, 'b'));
    CHECK(f->clone_range(a, 0, b, 0, 0).error() == EOPNOTSUPP);
  }
  REQUIRE(a < b);
  uint64_t eb = fx.extent_at(b);
  auto xa = fx.get<fs::DiskExtent>(fx.extent_at(a));
  fx.put(eb, fs::DiskExtent{0, xa.physical, 2, 0});  // b maps a's blocks
  auto n = fx.check();
  CHECK(has_problem(n, "duplicate_block", b));
  CHECK_FALSE(has_problem(n, "refcount_missing"));
  CHECK(n.stats.shared_blocks == 0);
  CHECK(fx.repair().exit_code == fsck::kExitCorrected);
  CHECK(fx.check().exit_code == fsck::kExitClean);
  auto f = fx.mount();
  CHECK(contents(*f, a) == pattern(2, 'a'));
  CHECK(f->file_info(b)->data_blocks == 0);
}

TEST_CASE("without reflink, a refcount chain is dropped", "[fsck][reflink]") {
  FsckFixture fx(32ULL << 20, fs::FormatOptions{.reflink = false});
  fx.put(offsetof(fs::SuperBlock, refcount_head), fx.sb().journal_start + fx.sb().journal_blocks + 50);
  auto n = fx.check();
  CHECK(has_problem(n, "refcount_chain"));
  CHECK(fx.repair().exit_code == fsck::kExitCorrected);
  CHECK(fx.sb().refcount_head == 0);
  CHECK(fx.check().exit_code == fsck::kExitClean);
  CHECK(fx.mounts());
}

TEST_CASE("a rebuild larger than the journal commits in several transactions", "[fsck][reflink]") {
  FsckFixture fx;
  Shared s;
  // More record rewrites (32 journal bytes each) than a 16-block journal holds (2046).
  const uint64_t n = 2100;
  {
    auto f = fx.mount();
    s.a = make_file(*f, "a", pattern(2 * n, 'a'));
    s.b = make_file(*f, "b", "");
    for (uint64_t i = 0; i < n; i++) REQUIRE(f->clone_range(s.a, 2 * i * kB, s.b, 2 * i * kB, kB));
    s.data[s.a] = contents(*f, s.a);
    s.data[s.b] = contents(*f, s.b);
  }
  // The smallest journal a mount accepts (the journal is empty after a clean unmount; the blocks
  // it gives up join the data area, unreferenced).
  fx.put(offsetof(fs::SuperBlock, journal_blocks), uint64_t{16});
  REQUIRE(fx.check().exit_code == fsck::kExitClean);
  REQUIRE(records(fx).size() == n);
  for (uint64_t rec : records(fx)) fx.put_bytes(rec + offsetof(fs::DiskRefcount, count), "\x05\0\0\0", 4);
  auto r = fx.check();
  CHECK(r.exit_code == fsck::kExitUncorrected);
  {
    // The plan: every transaction fits, and it takes more than one.
    auto dev = pmemdev::Device::open(fx.path(), {});
    REQUIRE(dev);
    fsck::Image image(**dev);
    auto sc = fsck::check_superblock(image);
    REQUIRE(sc.fatal.empty());
    auto plan = fsck::check_filesystem(image, sc.sb);
    CHECK(plan.fixes.size() >= 2);
    for (const fsck::Fix& fix : plan.fixes) CHECK(fix.txn.bytes() <= 16 * kB - sizeof(fs::JournalHeader));
  }
  repaired_and_clean(fx);
  CHECK(records(fx).size() == n);
  // Only read back: a clone of `a` would need one transaction larger than this journal.
  auto f = fx.mount();
  data_equal(*f, s);
}
