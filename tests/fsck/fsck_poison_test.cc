// fsck.daxfs on a device with poison (the badblock list, injected while unmounted as
// `daxfsctl inject-error DEVICE` does): poisoned file data is reported with every owner (inode,
// path, file offset, device offset; every reflink sharer), poisoned metadata with its kind and
// inode. fsck agrees with the mount: poisoned data (and poison in the journal's dead part) is
// informational, the exit code stays 0 and the mount accepts the device; poisoned metadata makes
// the mount refuse, and fsck reports an error it cannot repair (exit 4). -y never writes anything
// for poison nor clears it, and fsck's own repairs never build anything in a poisoned block.
#include <nlohmann/json.hpp>

#include "tests/fsck/fsck_fixture.h"

using namespace daxfs;
using daxfs::test::FsckFixture;
using daxfs::test::has_problem;

namespace {
constexpr uint64_t kB = fs::kBlockSize;

std::unique_ptr<pmemdev::Device> open_device(FsckFixture& fx) {
  auto d = pmemdev::Device::open(fx.path(), {});
  REQUIRE(d);
  return std::move(d).value();
}
void poison(FsckFixture& fx, uint64_t offset, uint64_t length) { REQUIRE(open_device(fx)->inject_error(offset, length)); }
bool poisoned(FsckFixture& fx, uint64_t offset, uint64_t length) { return open_device(fx)->poisoned(offset, length); }
size_t badblocks(FsckFixture& fx) { return open_device(fx)->list_errors().size(); }

uint64_t make_file(fs::Filesystem& f, uint64_t dir, const std::string& name, uint64_t blocks) {
  auto st = f.mknod(dir, name, S_IFREG | 0644, 0, test::root_cred());
  REQUIRE(st);
  std::string data(blocks * kB, 'x');
  REQUIRE(f.write(st->st_ino, 0, data.data(), data.size()).value() == data.size());
  return st->st_ino;
}

// The device byte offset of file block `block` of `ino`.
uint64_t physical(fs::Filesystem& f, uint64_t ino, uint64_t block) {
  auto rows = f.fiemap(ino, 0, 1000);
  REQUIRE(rows);
  for (const auto& r : *rows)
    if (block * kB >= r.logical && block * kB < r.logical + r.length) return r.physical + (block * kB - r.logical);
  FAIL("file block " << block << " of inode " << ino << " is not mapped");
  return 0;
}

std::vector<fsck::Problem> found(const fsck::Report& r, const std::string& kind) {
  std::vector<fsck::Problem> out;
  for (const fsck::Problem& p : r.problems)
    if (p.kind == kind) out.push_back(p);
  return out;
}

std::string at(uint64_t offset) { return std::to_string(offset); }

// Poisoned metadata: the mount refuses; -n and -y report an error they cannot repair (exit 4),
// -y writes nothing and the poison stays; once it is cleared, the device is clean and mounts.
void refused_until_cleared(FsckFixture& fx, size_t expected_badblocks) {
  auto n = fx.check();
  CHECK(n.exit_code == fsck::kExitUncorrected);
  CHECK_FALSE(n.clean);
  CHECK(has_problem(n, "poisoned_metadata"));
  for (const fsck::Problem& p : n.problems) {
    CHECK(p.kind.rfind("poisoned_", 0) == 0);
    CHECK_FALSE(p.fixable);
    if (p.kind == "poisoned_metadata") CHECK(p.severity == fsck::Severity::kError);
  }
  CHECK(fsck::format_text(n).find("[NOT FIXED: fsck.daxfs cannot repair this]") != std::string::npos);
  std::string why;
  CHECK_FALSE(fx.mounts(&why));
  CHECK(why.find("poisoned metadata") != std::string::npos);
  std::string before = fx.media();
  auto y = fx.repair();
  CHECK(y.exit_code == fsck::kExitUncorrected);
  CHECK_FALSE(y.modified);
  CHECK(fx.media() == before);
  CHECK(badblocks(fx) == expected_badblocks);
  auto d = open_device(fx);
  REQUIRE(d->clear_error(0, d->size()));
  d.reset();
  auto clean = fx.check();
  CHECK(clean.exit_code == fsck::kExitClean);
  CHECK(clean.problems.empty());
  CHECK(fx.mounts());
}

// Informational only: -n and -y both exit 0, -y writes nothing and the poison stays.
void info_only(FsckFixture& fx, size_t expected_badblocks) {
  auto n = fx.check();
  CHECK(n.exit_code == fsck::kExitClean);
  CHECK(n.clean);
  for (const fsck::Problem& p : n.problems) {
    CHECK(p.severity == fsck::Severity::kInfo);
    CHECK_FALSE(p.fixable);
  }
  std::string before = fx.media();
  auto y = fx.repair();
  CHECK(y.exit_code == fsck::kExitClean);
  CHECK_FALSE(y.modified);
  CHECK(y.problems.size() == n.problems.size());
  for (const fsck::Problem& p : y.problems) CHECK_FALSE(p.repaired);
  CHECK(fx.media() == before);
  CHECK(badblocks(fx) == expected_badblocks);
  CHECK(fx.mounts());  // the mount agrees: poisoned data does not stop it
}
}  // namespace

TEST_CASE("poisoned file data is reported with its owner's inode, path and offsets", "[fsck][poison]") {
  FsckFixture fx;
  uint64_t dir, a, bad;
  {
    auto f = fx.mount();
    make_file(*f, f->root_ino(), "other", 4);
    dir = f->mkdir(f->root_ino(), "d", 0755, test::root_cred())->st_ino;
    a = make_file(*f, dir, "a", 4);  // the last blocks in use: free blocks follow
    bad = physical(*f, a, 2);
  }
  REQUIRE(fx.check().problems.empty());
  SECTION("a whole block") {
    poison(fx, bad, kB);
    auto r = fx.check();
    auto p = found(r, "poisoned_data");
    REQUIRE(p.size() == 1);
    CHECK(p[0].ino == a);
    CHECK(p[0].severity == fsck::Severity::kInfo);
    CHECK(p[0].detail == "/d/a: file offset 8192+4096 (device offset " + at(bad) + "+4096, block " + at(bad / kB) +
                             ") has poisoned sectors; reads of it fail with EIO until the poison is cleared or the "
                             "block is rewritten whole");
    CHECK(r.problems.size() == 1);  // nothing else: not poisoned_metadata, no other file
    // The text report and JSON carry it like any finding.
    std::string text = fsck::format_text(r);
    CHECK(text.find(fx.path() + ": inode " + at(a) + ": poisoned_data: /d/a: file offset 8192+4096") !=
          std::string::npos);
    CHECK(text.find("[info]") != std::string::npos);
    CHECK(text.find(": clean\n") != std::string::npos);
    nlohmann::json j = fsck::to_json(r);
    REQUIRE(j["problems"].size() == 1);
    const nlohmann::json& jp = j["problems"][0];
    CHECK(jp["kind"] == "poisoned_data");
    CHECK(jp["inode"] == a);
    CHECK(jp["detail"] == p[0].detail);
    CHECK(jp["severity"] == "info");
    CHECK(jp["repaired"] == false);
    CHECK(j["exit"] == 0);
    CHECK(j["clean"] == true);
    info_only(fx, 1);
  }
  SECTION("one sector in the middle of a block") {
    poison(fx, bad + 1024, 512);
    auto p = found(fx.check(), "poisoned_data");
    REQUIRE(p.size() == 1);
    CHECK(p[0].detail.rfind("/d/a: file offset 9216+512 (device offset " + at(bad + 1024) + "+512, block " +
                                at(bad / kB) + ")",
                            0) == 0);
    info_only(fx, 1);
  }
  SECTION("a range running past the file into free blocks: only the file's part, once") {
    poison(fx, bad, 16 * kB);  // a's blocks 2 and 3, then free blocks
    auto r = fx.check();
    auto p = found(r, "poisoned_data");
    REQUIRE(p.size() == 1);
    CHECK(p[0].ino == a);
    CHECK(p[0].detail.rfind("/d/a: file offset 8192+8192 (device offset " + at(bad) + "+8192, blocks " +
                                at(bad / kB) + "+2)",
                            0) == 0);
    CHECK(r.problems.size() == 1);
    info_only(fx, 1);
  }
  SECTION("cleared poison is no longer reported") {
    poison(fx, bad, kB);
    REQUIRE(open_device(fx)->clear_error(bad, kB));
    CHECK(fx.check().problems.empty());
  }
}

TEST_CASE("a poisoned block shared by a file and its reflink clone names both owners", "[fsck][poison][reflink]") {
  FsckFixture fx;
  uint64_t a, b, shared, priv;
  {
    auto f = fx.mount();
    a = make_file(*f, f->root_ino(), "a", 4);
    b = f->mknod(f->root_ino(), "b", S_IFREG | 0644, 0, test::root_cred())->st_ino;
    REQUIRE(f->clone_range(a, 0, b, 0, 4 * kB).value() == 4 * kB);
    // b's block 2 gets a private copy (CoW): a's block 2 is a's alone from then on.
    std::string fresh(kB, 'y');
    REQUIRE(f->write(b, 2 * kB, fresh.data(), fresh.size()));
    shared = physical(*f, a, 1);
    priv = physical(*f, a, 2);
    REQUIRE(physical(*f, b, 1) == shared);
    REQUIRE(physical(*f, b, 2) != priv);
    REQUIRE(priv == shared + kB);
  }
  SECTION("the shared block: one finding per owner, each naming the other") {
    poison(fx, shared, kB);
    auto r = fx.check();
    auto p = found(r, "poisoned_data");
    REQUIRE(p.size() == 2);
    CHECK(p[0].ino == a);
    CHECK(p[0].detail == "/a: file offset 4096+4096 (device offset " + at(shared) + "+4096, block " +
                             at(shared / kB) + ") has poisoned sectors; shared with inode " + at(b) +
                             " (/b); reads of it fail with EIO until the poison is cleared or the block is rewritten "
                             "whole");
    CHECK(p[1].ino == b);
    CHECK(p[1].detail.rfind("/b: file offset 4096+4096 (device offset " + at(shared) + "+4096, block " +
                                at(shared / kB) + ") has poisoned sectors; shared with inode " + at(a) + " (/a);",
                            0) == 0);
    CHECK(r.problems.size() == 2);
    nlohmann::json j = fsck::to_json(r);
    std::vector<uint64_t> owners;
    for (const auto& jp : j["problems"])
      if (jp["kind"] == "poisoned_data") owners.push_back(jp["inode"].get<uint64_t>());
    CHECK(owners == std::vector<uint64_t>{a, b});
    info_only(fx, 1);
  }
  SECTION("a range over a shared and a private block: split where the owners change") {
    poison(fx, shared, 2 * kB);
    auto p = found(fx.check(), "poisoned_data");
    REQUIRE(p.size() == 3);
    CHECK(p[0].ino == a);
    CHECK(p[0].detail.find("file offset 4096+4096 (device offset " + at(shared) + "+4096, block " +
                           at(shared / kB) + ") has poisoned sectors; shared with inode " + at(b)) !=
          std::string::npos);
    CHECK(p[1].ino == b);
    CHECK(p[2].ino == a);
    CHECK(p[2].detail.rfind("/a: file offset 8192+4096 (device offset " + at(priv) + "+4096, block " +
                                at(priv / kB) + ") has poisoned sectors; reads",
                            0) == 0);
    info_only(fx, 1);
  }
}

TEST_CASE("a file that maps one poisoned block twice is reported at both offsets", "[fsck][poison][reflink]") {
  FsckFixture fx;
  uint64_t a, block;
  {
    auto f = fx.mount();
    a = make_file(*f, f->root_ino(), "a", 2);
    REQUIRE(f->clone_range(a, 0, a, 8 * kB, kB));
    block = physical(*f, a, 0);
    REQUIRE(physical(*f, a, 8) == block);
  }
  poison(fx, block, kB);
  auto p = found(fx.check(), "poisoned_data");
  REQUIRE(p.size() == 2);
  CHECK(p[0].detail.rfind("/a: file offset 0+4096", 0) == 0);
  CHECK(p[1].detail.rfind("/a: file offset 32768+4096", 0) == 0);
  for (const auto& q : p) {
    CHECK(q.ino == a);
    CHECK(q.detail.find("shared with inode " + at(a) + " (/a)") != std::string::npos);
  }
  info_only(fx, 1);
}

TEST_CASE("poison in an unwritten extent is reported as such", "[fsck][poison]") {
  FsckFixture fx;
  uint64_t a, block;
  {
    auto f = fx.mount();
    a = f->mknod(f->root_ino(), "a", S_IFREG | 0644, 0, test::root_cred())->st_ino;
    REQUIRE(f->fallocate(a, 0, 0, 4 * kB));
    block = physical(*f, a, 1);
  }
  poison(fx, block, kB);
  auto p = found(fx.check(), "poisoned_data");
  REQUIRE(p.size() == 1);
  CHECK(p[0].ino == a);
  CHECK(p[0].detail == "/a: file offset 4096+4096 (device offset " + at(block) + "+4096, block " + at(block / kB) +
                           ") has poisoned sectors; the range is unwritten (it reads as zeros)");
  info_only(fx, 1);
}

TEST_CASE("poisoned metadata is an error fsck cannot repair, named by kind and owner", "[fsck][poison]") {
  FsckFixture fx;
  uint64_t dir, a;
  {
    auto f = fx.mount();
    dir = f->mkdir(f->root_ino(), "d", 0755, test::root_cred())->st_ino;
    a = make_file(*f, dir, "a", 1);
  }
  fs::SuperBlock sb = fx.sb();
  const std::string refused = " has poisoned sectors; a mount refuses the device until the poison is cleared "
                              "(daxfsctl clear-error, then fsck.daxfs -y repairs what the block held)";
  SECTION("a directory block") {
    uint64_t blk = fx.inode(dir).head;
    poison(fx, blk * kB, 512);
    auto p = found(fx.check(), "poisoned_metadata");
    REQUIRE(p.size() == 1);
    CHECK(p[0].ino == dir);
    CHECK(p[0].detail == "a directory block of inode " + at(dir) + " (/d) at block " + at(blk) + refused);
    refused_until_cleared(fx, 1);
  }
  SECTION("an extent block") {
    uint64_t blk = fx.inode(a).head;
    poison(fx, blk * kB + 4096 - 512, 512);
    auto p = found(fx.check(), "poisoned_metadata");
    REQUIRE(p.size() == 1);
    CHECK(p[0].ino == a);
    CHECK(p[0].detail == "an extent block of inode " + at(a) + " (/d/a) at block " + at(blk) + refused);
    refused_until_cleared(fx, 1);
  }
  SECTION("an inode chunk: the inodes it holds") {
    uint64_t blk = fs::ino_block(a);
    poison(fx, blk * kB, kB);
    auto p = found(fx.check(), "poisoned_metadata");
    REQUIRE(p.size() == 1);
    CHECK(p[0].ino == 0);
    CHECK(p[0].detail.rfind("an inode chunk at block " + at(blk) + ", holding ", 0) == 0);
    CHECK(p[0].detail.find("inode " + at(a) + " (/d/a)") != std::string::npos);
    CHECK(p[0].detail.find("inode " + at(dir) + " (/d)") != std::string::npos);
    refused_until_cleared(fx, 1);
  }
  SECTION("the superblock") {
    poison(fx, 0, 512);
    auto p = found(fx.check(), "poisoned_metadata");
    REQUIRE(p.size() == 1);
    CHECK(p[0].detail == "the superblock (block 0)" + refused);
    refused_until_cleared(fx, 1);
  }
  SECTION("the journal's header") {
    poison(fx, sb.journal_start * kB, 512);
    auto p = found(fx.check(), "poisoned_metadata");
    REQUIRE(p.size() == 1);
    CHECK(p[0].detail == "the journal's header (block " + at(sb.journal_start) + ")" + refused);
    refused_until_cleared(fx, 1);
  }
  SECTION("the journal's committed transaction: neither replayed nor discarded until cleared") {
    // A transaction committed (a crash before its home writes) whose second block is poisoned:
    // fsck -y must not replay bytes it cannot read, nor repair around a change it cannot see.
    const uint64_t home = (sb.block_count - 8) * kB;  // a free block: what it holds is nobody's
    std::string payload(6000, 'J');
    {
      auto d = open_device(fx);
      fs::Journal j(*d, sb.journal_start, sb.journal_blocks);
      fs::Txn t;
      t.write(home, payload.data(), static_cast<uint32_t>(payload.size()));
      j.crash_next_commit_at(fs::Journal::CrashPoint::kAfterCommitRecord);
      REQUIRE(j.commit(t));
    }
    poison(fx, (sb.journal_start + 1) * kB, kB);
    auto n = fx.check();
    CHECK(n.exit_code == fsck::kExitUncorrected);
    auto p = found(n, "poisoned_metadata");
    REQUIRE(p.size() == 1);
    CHECK(p[0].detail == "the journal's committed transaction (blocks " + at(sb.journal_start) + "+" +
                             at(sb.journal_blocks) + ")" + refused);
    CHECK(found(n, "journal_replay").empty());
    std::string before = fx.media();
    auto y = fx.repair();
    CHECK(y.exit_code == fsck::kExitUncorrected);
    CHECK_FALSE(y.modified);
    CHECK(fx.media() == before);  // not replayed: the home block is untouched
    CHECK_FALSE(fx.mounts());
    {
      auto d = open_device(fx);
      REQUIRE(d->clear_error(0, d->size()));
    }
    auto again = fx.repair();  // cleared: the transaction's bytes are whole here, so it replays
    CHECK(again.exit_code <= fsck::kExitCorrected);
    CHECK(open_device(fx)->base()[home + 5999] == 'J');
    CHECK(fx.check().exit_code == fsck::kExitClean);
    CHECK(fx.mounts());
  }
  SECTION("the journal's dead part: informational, the mount rewrites it") {
    poison(fx, (sb.journal_start + 3) * kB, kB);
    auto r = fx.check();
    auto p = found(r, "poisoned_journal");
    REQUIRE(p.size() == 1);
    CHECK(p[0].detail == "the journal (blocks " + at(sb.journal_start) + "+" + at(sb.journal_blocks) +
                             ") has poisoned sectors outside any committed transaction: they hold nothing, and a "
                             "mount rewrites them");
    CHECK(r.problems.size() == 1);
    info_only(fx, 1);  // ends with a mount, which rewrites the block and clears the poison
    CHECK(badblocks(fx) == 0);
    CHECK(fx.check().problems.empty());
  }
  SECTION("metadata and data poisoned together: both kinds") {
    poison(fx, fx.inode(dir).head * kB, kB);
    poison(fx, fx.get<fs::DiskExtent>(fx.extent_at(a)).physical * kB, kB);
    auto r = fx.check();
    CHECK(found(r, "poisoned_metadata").size() == 1);
    CHECK(found(r, "poisoned_data").size() == 1);
    refused_until_cleared(fx, 2);
  }
}

TEST_CASE("poison never changes the exit code of a check that finds errors", "[fsck][poison]") {
  FsckFixture fx;
  uint64_t a, bad;
  {
    auto f = fx.mount();
    a = make_file(*f, f->root_ino(), "a", 2);
    bad = physical(*f, a, 1);
  }
  poison(fx, bad, kB);
  fx.put_inode_field(a, offsetof(fs::DiskInode, nlink), uint32_t{5});
  auto n = fx.check();
  CHECK(n.exit_code == fsck::kExitUncorrected);
  CHECK(has_problem(n, "link_count", a));
  CHECK(has_problem(n, "poisoned_data", a));
  auto y = fx.repair();
  CHECK(y.exit_code == fsck::kExitCorrected);
  CHECK(y.clean);
  CHECK(has_problem(y, "poisoned_data", a));
  for (const fsck::Problem& p : y.problems)
    if (p.kind == "poisoned_data") CHECK_FALSE(p.repaired);
  CHECK(poisoned(fx, bad, kB));  // the repair did not touch the poison
  auto again = fx.check();
  CHECK(again.exit_code == fsck::kExitClean);
  CHECK(again.problems.size() == 1);
  CHECK(has_problem(again, "poisoned_data", a));
}

TEST_CASE("fsck builds new refcount blocks outside poisoned blocks", "[fsck][poison][reflink]") {
  FsckFixture fx;
  const uint64_t n = 2 * fs::kRefcountsPerBlock + 10;  // three record blocks
  {
    auto f = fx.mount();
    uint64_t a = make_file(*f, f->root_ino(), "a", 2 * n);
    uint64_t b = f->mknod(f->root_ino(), "b", S_IFREG | 0644, 0, test::root_cred())->st_ino;
    for (uint64_t i = 0; i < n; i++) REQUIRE(f->clone_range(a, 2 * i * kB, b, 2 * i * kB, kB));
  }
  // The chain's blocks, then the chain lost: they are free, the first fsck would build in.
  std::vector<uint64_t> old;
  for (uint64_t blk = fx.sb().refcount_head; blk != 0; blk = fx.get<fs::RecordBlockHeader>(blk * kB).next)
    old.push_back(blk);
  REQUIRE(old.size() == 3);
  for (uint64_t blk : old) poison(fx, blk * kB, kB);
  fx.put(offsetof(fs::SuperBlock, refcount_head), uint64_t{0});
  auto y = fx.repair();
  CHECK(y.exit_code == fsck::kExitCorrected);
  CHECK(y.clean);
  std::vector<uint64_t> now;
  for (uint64_t blk = fx.sb().refcount_head; blk != 0 && now.size() < 10;
       blk = fx.get<fs::RecordBlockHeader>(blk * kB).next)
    now.push_back(blk);
  CHECK(now.size() == 3);
  for (uint64_t blk : now) CHECK_FALSE(poisoned(fx, blk * kB, kB));
  auto again = fx.check();
  CHECK(again.exit_code == fsck::kExitClean);
  CHECK(again.problems.empty());  // poison in free blocks has no owner to report
  CHECK(fx.mounts());
}
