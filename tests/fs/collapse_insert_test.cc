// Collapse and insert range (fallocate's FALLOC_FL_COLLAPSE_RANGE and FALLOC_FL_INSERT_RANGE)
// through the Filesystem API, with XFS's semantics: every errno; the data after the range moves
// exactly; holes, unwritten extents and shared (reflinked) extents keep their kind as they move,
// with their reference counts; blocks a collapse frees go back (shared ones lose a reference);
// remounts keep everything and fsck finds every device clean. Crash atomicity: one transaction
// (a crash at each commit step leaves all of it or none of it), and for a file with more extents
// than one transaction holds, steps that each leave a consistent file.
#include <fcntl.h>
#include <linux/falloc.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstring>
#include <map>
#include <string>
#include <unordered_map>
#include <vector>

#include "daxcore/daxfs_ioctl.h"
#include "tests/support/fs_fixture.h"

#ifdef DAXFS_HAVE_FSCK
#include "fs/fsck/fsck.h"
#include "fs/fsck/report.h"
#endif

using daxfs::fs::Filesystem;
using daxfs::fs::Journal;
using daxfs::fs::kMaxFileSize;
using daxfs::test::FsFixture;

namespace {

constexpr uint64_t kB = 4096;
constexpr int kCollapse = FALLOC_FL_COLLAPSE_RANGE;
constexpr int kInsert = FALLOC_FL_INSERT_RANGE;

// `blocks` blocks, each filled with "<tag>:<block>;" repeated: a block that moved is told apart.
std::string stamped(uint64_t blocks, char tag) {
  std::string out;
  for (uint64_t b = 0; b < blocks; b++) {
    std::string unit = std::string(1, tag) + ":" + std::to_string(b) + ";";
    std::string block;
    while (block.size() < kB) block += unit;
    out += block.substr(0, kB);
  }
  return out;
}

// The model of each operation: what the file's bytes become.
std::string collapsed(std::string s, uint64_t off, uint64_t len) { return s.erase(off, len); }
std::string inserted(std::string s, uint64_t off, uint64_t len) { return s.insert(off, std::string(len, '\0')); }

// Unmounts, runs fsck.daxfs -n on the device, mounts again: the device is clean, and the
// allocator rebuilt from the metadata agrees with the one kept up to date (no block leaked or
// freed twice).
void check_fsck(FsFixture& f) {
  uint64_t free_before = f->statfs().f_bfree;
#ifdef DAXFS_HAVE_FSCK
  f.unmount();
  auto report = daxfs::fsck::run_fsck({f.path(), daxfs::fsck::Mode::kCheck});
  INFO(daxfs::fsck::format_text(report) << report.error);
  CHECK(report.exit_code == daxfs::fsck::kExitClean);
  CHECK(report.clean);
  f.mount();
#else
  f.remount();
#endif
  CHECK(f->statfs().f_bfree == free_before);
  CHECK(f->counters().post_eof_trimmed == 0);
}

std::vector<Filesystem::MapRow> fiemap(FsFixture& f, uint64_t ino) {
  auto rows = f->fiemap(ino, 0, SIZE_MAX);
  REQUIRE(rows);
  return *rows;
}

// The row of `rows` that maps byte `logical`, or null.
const Filesystem::MapRow* row_at(const std::vector<Filesystem::MapRow>& rows, uint64_t logical) {
  for (const auto& r : rows)
    if (r.logical <= logical && logical < r.logical + r.length) return &r;
  return nullptr;
}

}  // namespace

TEST_CASE("collapse and insert refuse what vfs_fallocate and XFS refuse", "[fs][shift]") {
  FsFixture f;
  const std::string data = stamped(8, 'a') + "tail";  // 8 blocks and 4 bytes: EOF inside block 8
  uint64_t ino = f.make_file(f.root(), "f", data);
  const uint64_t size = data.size();
  for (int mode : {kCollapse, kInsert}) {
    INFO("mode " << mode);
    CHECK(f->fallocate(ino, mode, 0, 0).error() == EINVAL);          // a length of 0
    CHECK(f->fallocate(ino, mode, 1ULL << 63, kB).error() == EINVAL);  // offset < 0 as loff_t
    CHECK(f->fallocate(ino, mode, 0, 1ULL << 63).error() == EINVAL);  // length < 0 as loff_t
    CHECK(f->fallocate(ino, mode, 100, kB).error() == EINVAL);        // offset not a block multiple
    CHECK(f->fallocate(ino, mode, kB, 100).error() == EINVAL);        // length not a block multiple
    CHECK(f->fallocate(ino, mode, kB, kMaxFileSize - kB + 1).error() == EFBIG);  // past the largest file
    // Not to be combined with KEEP_SIZE or another mode (vfs_fallocate(): EOPNOTSUPP).
    CHECK(f->fallocate(ino, mode | FALLOC_FL_KEEP_SIZE, 0, kB).error() == EOPNOTSUPP);
    CHECK(f->fallocate(ino, mode | FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, kB).error() == EOPNOTSUPP);
    CHECK(f->fallocate(ino, mode | FALLOC_FL_ZERO_RANGE, 0, kB).error() == EOPNOTSUPP);
  }
  CHECK(f->fallocate(ino, kCollapse | kInsert, 0, kB).error() == EOPNOTSUPP);
  // Collapse: a range reaching EOF is a truncate (EINVAL), even when it ends inside the EOF block.
  CHECK(f->fallocate(ino, kCollapse, 8 * kB, kB).error() == EINVAL);
  CHECK(f->fallocate(ino, kCollapse, 0, 9 * kB).error() == EINVAL);
  CHECK(f->fallocate(ino, kCollapse, 12 * kB, kB).error() == EINVAL);
  // Insert: at or past EOF is EINVAL; a new size past the largest file is EFBIG (checked first).
  CHECK(f->fallocate(ino, kInsert, size, kB).error() == EINVAL);
  CHECK(f->fallocate(ino, kInsert, 9 * kB, kB).error() == EINVAL);
  CHECK(f->fallocate(ino, kInsert, 20 * kB, kB).error() == EINVAL);
  CHECK(f->fallocate(ino, kInsert, 0, kMaxFileSize / kB * kB).error() == EFBIG);
  CHECK(f->fallocate(ino, kInsert, 4 * kB, kMaxFileSize / kB * kB - 4 * kB).error() == EFBIG);
  // Not a regular file: EISDIR for a directory, ENODEV for anything else.
  auto dir = f->mkdir(f.root(), "d", 0755, {});
  REQUIRE(dir);
  CHECK(f->fallocate(dir->st_ino, kCollapse, 0, kB).error() == EISDIR);
  CHECK(f->fallocate(dir->st_ino, kInsert, 0, kB).error() == EISDIR);
  auto fifo = f->mknod(f.root(), "p", S_IFIFO | 0644, 0, {});
  REQUIRE(fifo);
  CHECK(f->fallocate(fifo->st_ino, kCollapse, 0, kB).error() == ENODEV);
  auto link = f->symlink(f.root(), "l", "f", {});
  REQUIRE(link);
  CHECK(f->fallocate(link->st_ino, kInsert, 0, kB).error() == ENODEV);
  // Nothing changed.
  CHECK(f.read_all(ino) == data);
  // The smallest legal ones: a collapse ending right before the EOF block, an insert at its start.
  REQUIRE(f->fallocate(ino, kCollapse, 7 * kB, kB));
  REQUIRE(f->fallocate(ino, kInsert, 7 * kB, kB));
  CHECK(f.read_all(ino) == inserted(collapsed(data, 7 * kB, kB), 7 * kB, kB));
  check_fsck(f);
  // A read-only mount and a shut-down filesystem refuse them too.
  f.unmount();
  daxfs::fs::MountOptions ro;
  ro.read_only = daxfs::fs::ReadOnly::kYes;
  f.mount(ro);
  CHECK(f->fallocate(ino, kCollapse, 0, kB).error() == EROFS);
  f.remount();
  f->shutdown("test");
  CHECK(f->fallocate(ino, kInsert, 0, kB).error() == EIO);
}

TEST_CASE("collapse removes the range and moves the rest of the file down exactly", "[fs][shift]") {
  FsFixture f;
  uint64_t ino = f.make_file(f.root(), "f");
  // Three extents of different blocks (written one after another with a clone in between, so
  // that they do not continue each other), EOF inside the last block.
  std::string data = stamped(20, 'x') + "end";
  REQUIRE(f->write(ino, 0, data.data(), 6 * kB).value() == 6 * kB);
  uint64_t spacer = f.make_file(f.root(), "spacer", std::string(kB, 's'));
  REQUIRE(f->write(ino, 6 * kB, data.data() + 6 * kB, data.size() - 6 * kB).value() == data.size() - 6 * kB);
  REQUIRE(f->unlink(f.root(), "spacer"));
  f->forget(spacer, 1);
  uint64_t free0 = f->statfs().f_bfree;
  auto before = f->getattr(ino).value();
  uint64_t txns = f->counters().transactions;
  // A range that cuts both extents in the middle.
  REQUIRE(f->fallocate(ino, kCollapse, 4 * kB, 5 * kB));
  CHECK(f->counters().transactions == txns + 1);  // one transaction
  data = collapsed(data, 4 * kB, 5 * kB);
  CHECK(f->getattr(ino)->st_size == static_cast<off_t>(data.size()));
  CHECK(f.read_all(ino) == data);
  CHECK(f->statfs().f_bfree == free0 + 5);  // the range's blocks came back
  CHECK(f->getattr(ino)->st_blocks == before.st_blocks - 5 * 8);
  auto after = f->getattr(ino).value();
  CHECK((after.st_mtim.tv_sec > before.st_mtim.tv_sec ||
         (after.st_mtim.tv_sec == before.st_mtim.tv_sec && after.st_mtim.tv_nsec >= before.st_mtim.tv_nsec)));
  // At offset 0, and a range ending right before the EOF block.
  REQUIRE(f->fallocate(ino, kCollapse, 0, kB));
  data = collapsed(data, 0, kB);
  uint64_t last = (data.size() - 1) / kB;
  REQUIRE(f->fallocate(ino, kCollapse, kB, (last - 1) * kB));
  data = collapsed(data, kB, (last - 1) * kB);
  CHECK(f.read_all(ino) == data);
  check_fsck(f);
  CHECK(f.read_all(ino) == data);
}

TEST_CASE("insert opens a hole at the offset and moves the rest of the file up exactly", "[fs][shift]") {
  FsFixture f;
  std::string data = stamped(12, 'y') + "end";
  uint64_t ino = f.make_file(f.root(), "f", data);
  uint64_t free0 = f->statfs().f_bfree;
  uint64_t blocks0 = f->getattr(ino)->st_blocks;
  uint64_t txns = f->counters().transactions;
  // In the middle of the (one) extent: it splits, the right part moves.
  REQUIRE(f->fallocate(ino, kInsert, 5 * kB, 3 * kB));
  CHECK(f->counters().transactions == txns + 1);
  data = inserted(data, 5 * kB, 3 * kB);
  CHECK(f->getattr(ino)->st_size == static_cast<off_t>(data.size()));
  CHECK(f.read_all(ino) == data);
  CHECK(f->getattr(ino)->st_blocks == static_cast<blkcnt_t>(blocks0));  // no block allocated
  CHECK(f->statfs().f_bfree == free0);
  CHECK(f->file_info(ino)->extents == 2);
  CHECK(f->lseek(ino, 0, SEEK_HOLE).value() == 5 * kB);
  CHECK(f->lseek(ino, 5 * kB, SEEK_DATA).value() == 8 * kB);
  // At offset 0, at an extent boundary, and in the EOF block.
  REQUIRE(f->fallocate(ino, kInsert, 0, kB));
  data = inserted(data, 0, kB);
  REQUIRE(f->fallocate(ino, kInsert, 6 * kB, 2 * kB));
  data = inserted(data, 6 * kB, 2 * kB);
  uint64_t eof_block = (data.size() - 1) / kB * kB;
  REQUIRE(f->fallocate(ino, kInsert, eof_block, kB));
  data = inserted(data, eof_block, kB);
  CHECK(f.read_all(ino) == data);
  // A write into an inserted hole fills it.
  REQUIRE(f->write(ino, 100, "fill", 4));
  data.replace(100, 4, "fill");
  CHECK(f.read_all(ino) == data);
  check_fsck(f);
  CHECK(f.read_all(ino) == data);
  // Collapse takes the inserted holes out again.
  for (uint64_t off : {eof_block, uint64_t{6 * kB}, uint64_t{0}}) {
    uint64_t len = off == 6 * kB ? 2 * kB : kB;
    REQUIRE(f->fallocate(ino, kCollapse, off, len));
    data = collapsed(data, off, len);
  }
  CHECK(f.read_all(ino) == data);
  check_fsck(f);
}

TEST_CASE("holes and unwritten extents keep their kind as they move", "[fs][shift]") {
  FsFixture f;
  uint64_t ino = f.make_file(f.root(), "f");
  // Blocks: 0-1 data, 2-3 hole, 4-6 unwritten, 7 data, 8-9 unwritten past EOF (preallocated).
  std::string data = stamped(2, 'd') + std::string(5 * kB, '\0') + stamped(1, 'e');
  REQUIRE(f->write(ino, 0, data.data(), 2 * kB));
  REQUIRE(f->fallocate(ino, 0, 4 * kB, 3 * kB));
  REQUIRE(f->write(ino, 7 * kB, data.data() + 7 * kB, kB));
  REQUIRE(f->fallocate(ino, FALLOC_FL_KEEP_SIZE, 8 * kB, 2 * kB));
  CHECK(f->file_info(ino)->unwritten_blocks == 5);
  // Collapse block 1: the hole, the unwritten blocks, the data and the preallocation move down.
  REQUIRE(f->fallocate(ino, kCollapse, kB, kB));
  data = collapsed(data, kB, kB);
  CHECK(f.read_all(ino) == data);
  CHECK(f->getattr(ino)->st_size == 7 * static_cast<off_t>(kB));
  auto rows = fiemap(f, ino);
  REQUIRE(rows.size() == 4);
  CHECK((rows[0].logical == 0 && rows[0].length == kB && rows[0].flags == 0));
  CHECK((rows[1].logical == 3 * kB && rows[1].length == 3 * kB && rows[1].flags == DAXFS_EXTENT_UNWRITTEN));
  CHECK((rows[2].logical == 6 * kB && rows[2].length == kB && rows[2].flags == 0));
  CHECK((rows[3].logical == 7 * kB && rows[3].length == 2 * kB && rows[3].flags == DAXFS_EXTENT_UNWRITTEN));
  CHECK(f->lseek(ino, 0, SEEK_HOLE).value() == kB);  // unwritten blocks are holes to SEEK_DATA
  CHECK(f->lseek(ino, kB, SEEK_DATA).value() == 6 * kB);
  CHECK(f->file_info(ino)->unwritten_blocks == 5);
  // Insert inside the unwritten extent: both halves stay unwritten, the hole between reads zeros.
  REQUIRE(f->fallocate(ino, kInsert, 4 * kB, 2 * kB));
  data = inserted(data, 4 * kB, 2 * kB);
  CHECK(f.read_all(ino) == data);
  rows = fiemap(f, ino);
  REQUIRE(rows.size() == 5);
  CHECK((rows[1].logical == 3 * kB && rows[1].length == kB && rows[1].flags == DAXFS_EXTENT_UNWRITTEN));
  CHECK((rows[2].logical == 6 * kB && rows[2].length == 2 * kB && rows[2].flags == DAXFS_EXTENT_UNWRITTEN));
  CHECK((rows[3].logical == 8 * kB && rows[3].flags == 0));
  CHECK((rows[4].logical == 9 * kB && rows[4].length == 2 * kB && rows[4].flags == DAXFS_EXTENT_UNWRITTEN));
  CHECK(f->file_info(ino)->unwritten_blocks == 5);
  check_fsck(f);
  CHECK(f.read_all(ino) == data);
  CHECK(fiemap(f, ino).size() == 5);
  // A write into a moved unwritten block converts it there.
  REQUIRE(f->write(ino, 7 * kB, "w", 1));
  data[7 * kB] = 'w';
  CHECK(f.read_all(ino) == data);
}

TEST_CASE("a collapse joins extents that continue each other once the range is gone", "[fs][shift]") {
  FsFixture f;
  uint64_t ino = f.make_file(f.root(), "f", stamped(6, 'm'));
  // Punch out blocks 2-3: the extent is cut in two whose device blocks are 2 apart.
  REQUIRE(f->fallocate(ino, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 2 * kB, 2 * kB));
  REQUIRE(f->file_info(ino)->extents == 2);
  // Insert a hole, collapse it again: the halves are where they were, still two extents.
  std::string data = f.read_all(ino);
  REQUIRE(f->fallocate(ino, kInsert, 3 * kB, 4 * kB));
  REQUIRE(f->fallocate(ino, kCollapse, 3 * kB, 4 * kB));
  CHECK(f.read_all(ino) == data);
  CHECK(f->file_info(ino)->extents == 2);
  // A file whose two extents are on consecutive device blocks with a hole between them (clone
  // a's first and last blocks into b, apart): collapsing the hole makes them one extent.
  uint64_t a = f.make_file(f.root(), "a", stamped(2, 'c'));
  uint64_t b = f.make_file(f.root(), "b");
  REQUIRE(f->clone_range(a, 0, b, 0, kB));
  REQUIRE(f->clone_range(a, kB, b, 5 * kB, kB));
  REQUIRE(f->write(b, 8 * kB, "t", 1));
  REQUIRE(f->file_info(b)->extents == 3);
  REQUIRE(f->fallocate(b, kCollapse, kB, 4 * kB));
  CHECK(f->file_info(b)->extents == 2);
  auto rows = fiemap(f, b);
  REQUIRE(!rows.empty());
  CHECK((rows[0].logical == 0 && rows[0].length == 2 * kB && rows[0].flags == DAXFS_EXTENT_SHARED));
  CHECK(f.read_all(b) == stamped(2, 'c') + std::string(2 * kB, '\0') + "t");
  check_fsck(f);
}

TEST_CASE("shared extents move with their reference counts; the clone is untouched", "[fs][shift][reflink]") {
  FsFixture f;
  const std::string orig = stamped(16, 'r');
  uint64_t a = f.make_file(f.root(), "a", orig);
  uint64_t b = f.make_file(f.root(), "b");
  REQUIRE(f->clone_range(a, 0, b, 0, 0));
  uint64_t free0 = f->statfs().f_bfree;
  auto b_rows = fiemap(f, b);
  REQUIRE(b_rows.size() == 1);
  const uint64_t phys = b_rows[0].physical;

  // Collapse a's blocks 4-7: b keeps them (they just lose a's reference), a's rest moves down
  // and stays shared with b.
  REQUIRE(f->fallocate(a, kCollapse, 4 * kB, 4 * kB));
  std::string da = collapsed(orig, 4 * kB, 4 * kB);
  CHECK(f.read_all(a) == da);
  CHECK(f.read_all(b) == orig);
  CHECK(f->statfs().f_bfree == free0);  // nothing freed: b still maps the collapsed blocks
  auto ra = fiemap(f, a);
  REQUIRE(ra.size() == 2);
  for (const auto& r : ra) CHECK(r.flags == DAXFS_EXTENT_SHARED);
  CHECK(ra[1].logical == 4 * kB);
  CHECK(ra[1].physical == phys + 8 * kB);  // the same device blocks, four file blocks down
  auto rb = fiemap(f, b);
  REQUIRE(rb.size() == 3);
  CHECK((rb[1].logical == 4 * kB && rb[1].length == 4 * kB && rb[1].flags == 0));  // only b's now
  CHECK(rb[0].flags == DAXFS_EXTENT_SHARED);
  CHECK(rb[2].flags == DAXFS_EXTENT_SHARED);
  check_fsck(f);  // the refcount records match the mappings

  // Insert into b: its shared blocks move up, still shared with a; a is untouched.
  REQUIRE(f->fallocate(b, kInsert, 2 * kB, 3 * kB));
  std::string db = inserted(orig, 2 * kB, 3 * kB);
  CHECK(f.read_all(b) == db);
  CHECK(f.read_all(a) == da);
  rb = fiemap(f, b);
  const auto* moved = row_at(rb, 5 * kB);
  REQUIRE(moved);
  CHECK((moved->physical == phys + 2 * kB && moved->flags == DAXFS_EXTENT_SHARED));
  CHECK(row_at(rb, 2 * kB) == nullptr);
  CHECK(f->statfs().f_bfree == free0);
  check_fsck(f);

  // Collapse b's private blocks (now at 7-10): they are freed.
  REQUIRE(f->fallocate(b, kCollapse, 7 * kB, 4 * kB));
  db = collapsed(db, 7 * kB, 4 * kB);
  CHECK(f.read_all(b) == db);
  CHECK(f->statfs().f_bfree == free0 + 4);
  for (const auto& r : fiemap(f, b)) CHECK(r.flags == DAXFS_EXTENT_SHARED);
  check_fsck(f);
  CHECK(f.read_all(a) == da);
  CHECK(f.read_all(b) == db);

  // Once b is gone, a's blocks are private again: every block b mapped was a's too, so only b's
  // extent-record block comes back.
  REQUIRE(f->unlink(f.root(), "b"));
  f->forget(b, 1);
  for (const auto& r : fiemap(f, a)) CHECK(r.flags == 0);
  CHECK(f->statfs().f_bfree == free0 + 4 + 1);
  check_fsck(f);
  CHECK(f.read_all(a) == da);
}

TEST_CASE("blocks shared within one file move with their references", "[fs][shift][reflink]") {
  FsFixture f;
  std::string data = stamped(16, 's');
  uint64_t ino = f.make_file(f.root(), "f", data);
  // Blocks 0-3 cloned over 8-11: the file maps its first four device blocks twice.
  REQUIRE(f->clone_range(ino, 0, ino, 8 * kB, 4 * kB));
  data.replace(8 * kB, 4 * kB, data, 0, 4 * kB);
  uint64_t free0 = f->statfs().f_bfree;
  // Collapse 4-7: the second copy moves down next to the first (same device blocks).
  REQUIRE(f->fallocate(ino, kCollapse, 4 * kB, 4 * kB));
  data = collapsed(data, 4 * kB, 4 * kB);
  CHECK(f.read_all(ino) == data);
  CHECK(f->statfs().f_bfree == free0 + 4);
  auto rows = fiemap(f, ino);
  REQUIRE(row_at(rows, 0));
  REQUIRE(row_at(rows, 4 * kB));
  CHECK(row_at(rows, 4 * kB)->physical == row_at(rows, 0)->physical);
  CHECK(row_at(rows, 4 * kB)->flags == DAXFS_EXTENT_SHARED);
  check_fsck(f);
  // Collapse the first copy: the second is private now, and the blocks stay.
  REQUIRE(f->fallocate(ino, kCollapse, 0, 4 * kB));
  data = collapsed(data, 0, 4 * kB);
  CHECK(f.read_all(ino) == data);
  CHECK(f->statfs().f_bfree == free0 + 4);
  for (const auto& r : fiemap(f, ino)) CHECK(r.flags == 0);
  check_fsck(f);
  CHECK(f.read_all(ino) == data);
}

TEST_CASE("collapse and insert strip setuid for a caller without CAP_FSETID", "[fs][shift]") {
  FsFixture f;
  uint64_t ino = f.make_file(f.root(), "f", stamped(4, 'u'));
  daxfs::fs::SetAttr a;
  a.valid = daxfs::fs::SetAttr::kMode;
  a.mode = S_IFREG | 04755;
  REQUIRE(f->setattr(ino, a));
  REQUIRE(f->fallocate(ino, kInsert, 0, kB));
  CHECK((f->getattr(ino)->st_mode & 07777) == 04755);
  REQUIRE(f->fallocate(ino, kCollapse, 0, kB, Filesystem::KillPriv::kYes));
  CHECK((f->getattr(ino)->st_mode & 07777) == 0755);
}

namespace {
// Runs `op` on a fresh mount of `f` in a child process whose journal stops the commit `skip`
// commits from the first at `point` (and refuses every later one), as a daemon killed there
// would; the child exits without unmounting. Returns what the operation returned (0 or errno).
template <typename Op>
int crash_child(FsFixture& f, Journal::CrashPoint point, uint64_t skip, Op op) {
  f.unmount();
  pid_t pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    int rc = 100;
    try {
      f.mount();
      f->crash_commit_for_testing(point, skip);
      auto st = op(f.fs());
      rc = st ? 0 : st.error();
    } catch (...) {
      rc = 101;
    }
    _exit(rc);
  }
  int status = 0;
  REQUIRE(waitpid(pid, &status, 0) == pid);
  REQUIRE(WIFEXITED(status));
  f.mount();  // replays what the child committed
  return WEXITSTATUS(status);
}
}  // namespace

TEST_CASE("a collapse or an insert is one transaction: a crash leaves all of it or none",
          "[fs][shift][crash]") {
  using CP = Journal::CrashPoint;
  struct Case {
    const char* name;
    CP point;
    bool done;
  };
  for (int mode : {kCollapse, kInsert}) {
    for (Case c : {Case{"after the entries", CP::kAfterEntries, false},
                   Case{"after the commit record", CP::kAfterCommitRecord, true},
                   Case{"after applying", CP::kAfterApply, true}}) {
      DYNAMIC_SECTION((mode == kCollapse ? "collapse, " : "insert, ") << c.name) {
        FsFixture f;
        // Shared, unwritten and written extents, and a hole, across the range.
        std::string data = stamped(24, 'c');
        uint64_t ino = f.make_file(f.root(), "f", data);
        uint64_t clone = f.make_file(f.root(), "g");
        REQUIRE(f->clone_range(ino, 8 * kB, clone, 0, 8 * kB));
        REQUIRE(f->fallocate(ino, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 2 * kB, kB));
        REQUIRE(f->fallocate(ino, FALLOC_FL_ZERO_RANGE, 18 * kB, 2 * kB));
        data.replace(2 * kB, kB, std::string(kB, '\0'));
        data.replace(18 * kB, 2 * kB, std::string(2 * kB, '\0'));
        const std::string want = mode == kCollapse ? collapsed(data, kB, 10 * kB) : inserted(data, 5 * kB, 3 * kB);
        const auto rows0 = fiemap(f, ino);
        int rc = crash_child(f, c.point, 0, [&](Filesystem& fs) {
          return mode == kCollapse ? fs.fallocate(ino, mode, kB, 10 * kB) : fs.fallocate(ino, mode, 5 * kB, 3 * kB);
        });
        CHECK(rc == 0);  // one commit: the crash stopped it, nothing came after to refuse
        CHECK(f.read_all(ino) == (c.done ? want : data));
        if (!c.done) CHECK(fiemap(f, ino).size() == rows0.size());
        CHECK(f.read_all(clone) == stamped(24, 'c').substr(8 * kB, 8 * kB));
        check_fsck(f);
        CHECK(f.read_all(ino) == (c.done ? want : data));
      }
    }
  }
}

namespace {
// Block-level check of a collapse or insert of file blocks [off, off + len) that may have been
// cut short by a crash: every block maps the device block it mapped before, with the same flags,
// at its old place or moved by `len` (down for a collapse, up for an insert); a collapse's range
// is gone. The moved blocks are the lowest of those after the range for a collapse and the
// highest from `off` on for an insert (XFS's order). Returns {moved, not moved} of the blocks
// the operation moves.
std::pair<uint64_t, uint64_t> check_moves(const std::vector<Filesystem::MapRow>& before,
                                          const std::vector<Filesystem::MapRow>& after, uint64_t off,
                                          uint64_t len, bool insert) {
  std::unordered_map<uint64_t, std::pair<uint64_t, uint64_t>> was;  // device block -> (file block, flags)
  for (const auto& r : before)
    for (uint64_t i = 0; i < r.length / kB; i++) was[r.physical / kB + i] = {r.logical / kB + i, r.flags};
  uint64_t moved = 0, stayed = 0, seen = 0;
  uint64_t lowest_moved = UINT64_MAX, highest_moved = 0, lowest_stayed = UINT64_MAX, highest_stayed = 0;
  for (const auto& r : after) {
    for (uint64_t i = 0; i < r.length / kB; i++) {
      auto it = was.find(r.physical / kB + i);
      REQUIRE(it != was.end());
      uint64_t old = it->second.first, now = r.logical / kB + i;
      INFO("device block " << it->first << " was at file block " << old << ", now at " << now);
      CHECK((r.flags & DAXFS_EXTENT_UNWRITTEN) == (it->second.second & DAXFS_EXTENT_UNWRITTEN));
      REQUIRE(!(!insert && old >= off && old < off + len));  // a collapsed block is gone
      seen++;
      bool affected = insert ? old >= off : old >= off + len;
      if (!affected) {
        REQUIRE(now == old);
        continue;
      }
      if (now == old) {
        stayed++;
        lowest_stayed = std::min(lowest_stayed, old);
        highest_stayed = std::max(highest_stayed, old);
      } else {
        REQUIRE(now == (insert ? old + len : old - len));
        moved++;
        lowest_moved = std::min(lowest_moved, old);
        highest_moved = std::max(highest_moved, old);
      }
    }
  }
  uint64_t collapsed_blocks = 0;
  for (const auto& [phys, where] : was)
    if (!insert && where.first >= off && where.first < off + len) collapsed_blocks++;
  CHECK(seen + collapsed_blocks == was.size());
  if (moved && stayed) CHECK((insert ? highest_stayed < lowest_moved : highest_moved < lowest_stayed));
  return {moved, stayed};
}
}  // namespace

TEST_CASE("a file with more extents than one transaction holds shifts in steps, each consistent",
          "[fs][shift][crash][slow]") {
  // 160,000 one-block extents: a collapse or insert near the start rewrites about 6 MB of
  // records, more than the 4 MiB journal holds.
  const uint64_t n = 160000;
  FsFixture f(720ULL << 20);
  uint64_t ino = f.make_file(f.root(), "big");
  // Unwritten blocks (no data pages), even blocks first: no two neighbours continue each other
  // on the device, so each block is an extent. Every 64th block is written with a stamp.
  for (uint64_t pass = 0; pass < 2; pass++)
    for (uint64_t b = pass; b < n; b += 2) REQUIRE(f->fallocate(ino, 0, b * kB, kB));
  auto stamp = [](uint64_t b) { return "stamp " + std::to_string(b) + "."; };
  for (uint64_t b = 0; b < n; b += 64) REQUIRE(f->write(ino, b * kB, stamp(b).data(), stamp(b).size()));
  REQUIRE(f->file_info(ino)->extents == n);
  // Where each stamp is: device block -> the stamp; a read at the block's place finds it.
  std::map<uint64_t, std::string> stamps;
  for (const auto& r : fiemap(f, ino))
    for (uint64_t i = 0; i < r.length / kB; i++)
      if ((r.logical / kB + i) % 64 == 0) stamps[r.physical / kB + i] = stamp(r.logical / kB + i);
  auto check_stamps = [&]() {
    uint64_t found = 0;
    for (const auto& r : fiemap(f, ino)) {
      for (uint64_t i = 0; i < r.length / kB; i++) {
        auto s = stamps.find(r.physical / kB + i);
        if (s == stamps.end()) continue;
        std::string got(s->second.size(), '?');
        REQUIRE(f->read(ino, r.logical + i * kB, got.size(), got.data()).value() == got.size());
        REQUIRE(got == s->second);
        found++;
      }
    }
    CHECK(found == stamps.size());
  };
  // The stamps of the blocks mapped at file blocks [first, first + count) in `rows` go.
  auto forget_stamps = [&](const std::vector<Filesystem::MapRow>& rows, uint64_t first, uint64_t count) {
    for (uint64_t b = first; b < first + count; b++)
      if (const auto* r = row_at(rows, b * kB)) stamps.erase(r->physical / kB + (b - r->logical / kB));
  };
  const uint64_t off = 8, len = 8;  // blocks

  SECTION("whole, in several transactions") {
    auto before = fiemap(f, ino);
    uint64_t size0 = f->getattr(ino)->st_size, txns = f->counters().transactions;
    REQUIRE(f->fallocate(ino, kInsert, off * kB, len * kB));
    CHECK(f->counters().transactions >= txns + 2);
    CHECK(f->getattr(ino)->st_size == static_cast<off_t>(size0 + len * kB));
    auto moves = check_moves(before, fiemap(f, ino), off, len, true);
    CHECK(moves.first == n - off);
    CHECK(moves.second == 0);
    check_stamps();
    check_fsck(f);

    before = fiemap(f, ino);
    txns = f->counters().transactions;
    uint64_t free0 = f->statfs().f_bfree;
    // Collapse the inserted hole and the 8 blocks after it.
    REQUIRE(f->fallocate(ino, kCollapse, off * kB, 2 * len * kB));
    CHECK(f->counters().transactions >= txns + 2);
    CHECK(f->getattr(ino)->st_size == static_cast<off_t>(size0 - len * kB));
    CHECK(f->statfs().f_bfree == free0 + len);
    forget_stamps(before, off, 2 * len);
    moves = check_moves(before, fiemap(f, ino), off, 2 * len, false);
    CHECK(moves.first == n - off - len);
    CHECK(moves.second == 0);
    check_stamps();
    check_fsck(f);
  }

  SECTION("cut short by a crash after the first step") {
    // An insert: the new size and the last extents moved, the others not yet.
    auto before = fiemap(f, ino);
    uint64_t size0 = f->getattr(ino)->st_size;
    int rc = crash_child(f, Journal::CrashPoint::kAfterApply, 0,
                         [&](Filesystem& fs) { return fs.fallocate(ino, kInsert, off * kB, len * kB); });
    CHECK(rc == EIO);  // the second step's commit was refused: the "daemon" was dead
    CHECK(f->getattr(ino)->st_size == static_cast<off_t>(size0 + len * kB));
    auto moves = check_moves(before, fiemap(f, ino), off, len, true);
    CHECK(moves.first > 0);
    CHECK(moves.second > 0);
    check_stamps();
    check_fsck(f);

    // A collapse of that file: the range gone and the first extents after it moved, the old size.
    before = fiemap(f, ino);
    size0 = f->getattr(ino)->st_size;
    rc = crash_child(f, Journal::CrashPoint::kAfterCommitRecord, 0,
                     [&](Filesystem& fs) { return fs.fallocate(ino, kCollapse, 2 * kB, len * kB); });
    CHECK(rc == EIO);
    CHECK(f->getattr(ino)->st_size == static_cast<off_t>(size0));
    forget_stamps(before, 2, len);
    moves = check_moves(before, fiemap(f, ino), 2, len, false);
    CHECK(moves.first > 0);
    CHECK(moves.second > 0);
    check_stamps();
    check_fsck(f);
  }
}
