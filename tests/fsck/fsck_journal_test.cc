// fsck.daxfs and the redo journal: a committed transaction is checked as replayed by -n (in a
// private overlay, the media untouched) and replayed by -y; a torn one is discarded; an
// impossible one (which a mount refuses) is reported and discarded.
#include "fs/journal.h"
#include "tests/fsck/fsck_fixture.h"

using namespace daxfs;
using daxfs::test::FsckFixture;
using daxfs::test::has_problem;

namespace {
struct Write {
  uint64_t offset;
  std::string data;
};

// Leaves a transaction in the journal as a crash right after the commit point would.
void leave_transaction(FsckFixture& fx, const std::vector<Write>& writes, bool good_checksum = true) {
  auto sb = fx.sb();
  std::string buf;
  for (const Write& w : writes) {
    fs::JournalEntry e{w.offset, static_cast<uint32_t>(w.data.size()), 0};
    buf.append(reinterpret_cast<const char*>(&e), sizeof e);
    buf.append(w.data);
    buf.append((8 - w.data.size() % 8) % 8, '\0');
  }
  fs::JournalHeader h{};
  h.magic = fs::kJournalMagic;
  h.seq = 7;
  h.count = writes.size();
  h.bytes = buf.size();
  h.checksum = fs::header_checksum(h, buf.data()) + (good_checksum ? 0 : 1);
  uint64_t start = sb.journal_start * fs::kBlockSize;
  fx.put_bytes(start + sizeof h, buf.data(), buf.size());
  fx.put(start, h);
}

std::string u32(uint32_t v) { return std::string(reinterpret_cast<const char*>(&v), 4); }

uint64_t make_file(FsckFixture& fx) {
  auto f = fx.mount();
  return f->mknod(f->root_ino(), "f", S_IFREG | 0644, 0, test::root_cred())->st_ino;
}
}  // namespace

TEST_CASE("a committed journal transaction is checked as replayed, then replayed by -y", "[fsck][journal]") {
  FsckFixture fx;
  uint64_t file = make_file(fx);
  uint64_t nlink_at = FsckFixture::inode_at(file) + offsetof(fs::DiskInode, nlink);
  fx.put(nlink_at, uint32_t{7});                // wrong on the media...
  leave_transaction(fx, {{nlink_at, u32(1)}});  // ...right once the journal is replayed
  std::string before = fx.media();
  auto n = fx.check();
  CHECK(has_problem(n, "journal_replay"));
  CHECK_FALSE(has_problem(n, "link_count"));
  CHECK(n.exit_code == fsck::kExitClean);
  CHECK(fx.media() == before);  // the replay went to the overlay only
  auto y = fx.repair();
  CHECK(has_problem(y, "journal_replay"));
  CHECK(y.exit_code == fsck::kExitCorrected);
  CHECK(fx.get<uint32_t>(nlink_at) == 1);
  CHECK(fx.get<fs::JournalHeader>(fx.sb().journal_start * fs::kBlockSize).magic == 0);
  auto again = fx.check();
  CHECK(again.exit_code == fsck::kExitClean);
  CHECK(again.problems.empty());
  CHECK(fx.mounts());
}

TEST_CASE("a torn journal transaction is not replayed", "[fsck][journal]") {
  FsckFixture fx;
  uint64_t file = make_file(fx);
  uint64_t nlink_at = FsckFixture::inode_at(file) + offsetof(fs::DiskInode, nlink);
  leave_transaction(fx, {{nlink_at, u32(7)}}, /*good_checksum=*/false);
  auto n = fx.check();
  CHECK(has_problem(n, "journal_torn"));
  CHECK(n.exit_code == fsck::kExitClean);
  auto y = fx.repair();
  CHECK(y.exit_code == fsck::kExitCorrected);
  CHECK(fx.get<uint32_t>(nlink_at) == 1);
  CHECK(fx.check().problems.empty());
}

TEST_CASE("an impossible committed transaction is reported and discarded", "[fsck][journal]") {
  FsckFixture fx;
  make_file(fx);
  uint64_t into_journal = fx.sb().journal_start * fs::kBlockSize + 8192;
  leave_transaction(fx, {{into_journal, "evil"}});
  CHECK_FALSE(fx.mounts());
  auto n = fx.check();
  CHECK(has_problem(n, "journal_corrupt"));
  CHECK(n.exit_code == fsck::kExitUncorrected);
  auto y = fx.repair();
  CHECK(y.exit_code == fsck::kExitCorrected);
  CHECK(fx.check().exit_code == fsck::kExitClean);
  CHECK(fx.mounts());
}
