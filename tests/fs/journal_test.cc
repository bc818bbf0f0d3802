// The redo journal: a transaction is all-or-nothing across a crash at every step of commit().
#include "fs/journal.h"

#include <catch2/catch.hpp>
#include <cstring>

#include "tests/support/temp_dir.h"

using namespace daxfs;
using daxfs::test::TempDir;

namespace {
std::unique_ptr<pmemdev::Device> device(const std::string& path) {
  pmemdev::OpenOptions o;
  o.create = pmemdev::Create::kYes;
  o.size = 1 << 20;
  auto d = pmemdev::Device::open(path, o);
  REQUIRE(d);
  return std::move(d).value();
}
std::string at(pmemdev::Device& d, uint64_t off, size_t n) { return std::string(d.base() + off, n); }
}  // namespace

TEST_CASE("a committed transaction reaches its home locations and empties the journal", "[fs][journal]") {
  TempDir dir;
  auto d = device(dir.file("dev"));
  fs::Journal j(*d, 1, 16);
  j.format();
  fs::Txn t;
  t.write(100 * 4096, "alpha", 5);
  t.write(101 * 4096 + 7, "beta", 4);
  REQUIRE(j.commit(t));
  CHECK(at(*d, 100 * 4096, 5) == "alpha");
  CHECK(at(*d, 101 * 4096 + 7, 4) == "beta");
  CHECK(t.empty());
  CHECK(j.recover().value() == 0);  // nothing left to redo
}

TEST_CASE("a crash at each step of commit leaves the old or the new state, never a mix",
          "[fs][journal][crash]") {
  using CP = fs::Journal::CrashPoint;
  struct Case {
    const char* name;
    CP point;
    bool new_state;
  };
  for (Case c : {Case{"after the entries", CP::kAfterEntries, false},
                 Case{"after the commit record", CP::kAfterCommitRecord, true},
                 Case{"after applying", CP::kAfterApply, true}}) {
    SECTION(c.name) {
      TempDir dir;
      auto d = device(dir.file("dev"));
      {
        fs::Journal j(*d, 1, 16);
        j.format();
        fs::Txn t;
        t.write(100 * 4096, "old1", 4);
        t.write(200 * 4096, "old2", 4);
        REQUIRE(j.commit(t));
        t.write(100 * 4096, "new1", 4);
        t.write(200 * 4096, "new2", 4);
        j.crash_next_commit_at(c.point);
        REQUIRE(j.commit(t));
      }
      fs::Journal j(*d, 1, 16);  // the next mount
      REQUIRE(j.recover());
      std::string a = at(*d, 100 * 4096, 4), b = at(*d, 200 * 4096, 4);
      if (c.new_state) {
        CHECK(a == "new1");
        CHECK(b == "new2");
      } else {
        CHECK(a == "old1");
        CHECK(b == "old2");
      }
      CHECK(j.recover().value() == 0);
    }
  }
}

TEST_CASE("a crash seam set commits ahead stops that commit and refuses every later one",
          "[fs][journal][crash]") {
  TempDir dir;
  auto d = device(dir.file("dev"));
  {
    fs::Journal j(*d, 1, 16);
    j.format();
    j.crash_next_commit_at(fs::Journal::CrashPoint::kAfterEntries, 1);  // the second commit
    fs::Txn t;
    t.write(100 * 4096, "one!", 4);
    REQUIRE(j.commit(t));
    t.write(100 * 4096, "two!", 4);
    REQUIRE(j.commit(t));  // "died" before its commit record
    CHECK(t.empty());      // the transaction went with the process
    t.write(100 * 4096, "3rd!", 4);
    CHECK(j.commit(t).error() == EIO);  // a dead process writes nothing more
    CHECK(at(*d, 100 * 4096, 4) == "one!");
  }
  fs::Journal j(*d, 1, 16);
  CHECK(j.recover().value() == 0);
  CHECK(at(*d, 100 * 4096, 4) == "one!");
}

TEST_CASE("a torn commit record is not replayed", "[fs][journal][crash]") {
  TempDir dir;
  auto d = device(dir.file("dev"));
  fs::Journal j(*d, 1, 16);
  j.format();
  fs::Txn t;
  t.write(100 * 4096, "new!", 4);
  j.crash_next_commit_at(fs::Journal::CrashPoint::kAfterCommitRecord);
  REQUIRE(j.commit(t));
  const uint64_t byte = 4096 + sizeof(fs::JournalHeader) + 20;
  char flipped = static_cast<char>(d->base()[byte] ^ 1);
  d->memcpy_persist(byte, &flipped, 1);  // an entry byte that never made it
  fs::Journal again(*d, 1, 16);
  CHECK(again.recover().value() == 0);
  CHECK(at(*d, 100 * 4096, 4) == std::string(4, '\0'));
}

TEST_CASE("a transaction larger than the journal is refused whole", "[fs][journal]") {
  TempDir dir;
  auto d = device(dir.file("dev"));
  fs::Journal j(*d, 1, 2);
  j.format();
  fs::Txn t;
  std::string big(8192, 'x');
  t.write(100 * 4096, big.data(), static_cast<uint32_t>(big.size()));
  CHECK(j.commit(t).error() == EFBIG);
  CHECK(at(*d, 100 * 4096, 1) == std::string(1, '\0'));
}

TEST_CASE("a replayed entry pointing outside the device or into the journal is corruption",
          "[fs][journal]") {
  TempDir dir;
  auto d = device(dir.file("dev"));
  fs::Journal j(*d, 1, 16);
  j.format();
  fs::Txn t;
  t.write(4096 + 100, "evil", 4);  // into the journal itself
  j.crash_next_commit_at(fs::Journal::CrashPoint::kAfterCommitRecord);
  // commit() would abort when applying a bad entry: stop before it applies.
  REQUIRE(j.commit(t));
  fs::Journal again(*d, 1, 16);
  CHECK(again.recover().error() == EUCLEAN);
}
