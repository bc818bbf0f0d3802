// Random damage sprayed over the metadata of a populated filesystem: whatever the bytes, fsck
// must not crash or hang, and -y must either leave a device that checks clean and mounts (exit
// 1, or 0 when the damage hit nothing that matters) or say it could not (exit 4). fsck and the
// mount agree throughout: a device the mount refuses is never called clean. One wrong geometry
// field of the superblock, and a device of any size, get the same treatment, and a geometry field
// must never cost a reachable inode.
#include <cstdlib>
#include <map>
#include <random>
#include <vector>

#include "tests/fsck/fsck_fixture.h"

using namespace daxfs;
using daxfs::test::FsckFixture;

namespace {
// Values that steer damage into the deep paths: block and inode numbers that exist.
uint64_t plausible(std::mt19937_64& rng, const fs::SuperBlock& sb) {
  uint64_t data_start = sb.journal_start + sb.journal_blocks;
  switch (rng() % 6) {
    case 0: return 0;
    case 1: return data_start + rng() % 128;
    case 2: return fs::make_ino(data_start + rng() % 128, static_cast<uint32_t>(rng() % 16));
    case 3: return rng() % 4;
    case 4: return ~uint64_t{0} - rng() % 3;
    default: return rng();
  }
}

// Mounts and visits everything: every entry looked up, every file read, every directory
// listed. A repaired filesystem must serve all of it without an error.
void walk(FsckFixture& fx) {
  auto f = fx.mount();
  std::vector<uint64_t> dirs{f->root_ino()};
  size_t visited = 0;
  while (!dirs.empty() && visited < 10000) {
    uint64_t dir = dirs.back();
    dirs.pop_back();
    std::vector<std::string> names;
    REQUIRE(f->readdir(dir, 0, [&](const fs::DirEntry& e) {
      if (e.name != "." && e.name != "..") names.emplace_back(e.name);
      return true;
    }));
    for (const std::string& name : names) {
      visited++;
      auto st = f->lookup(dir, name);
      REQUIRE(st);
      if (S_ISDIR(st->st_mode)) {
        dirs.push_back(st->st_ino);
        auto dotdot = f->lookup(st->st_ino, "..");
        REQUIRE(dotdot);
        CHECK(dotdot->st_ino == dir);
      } else if (S_ISREG(st->st_mode)) {
        std::string buf(static_cast<size_t>(std::min<off_t>(st->st_size, 1 << 20)), '\0');
        CHECK(f->read(st->st_ino, 0, buf.size(), buf.data()));
      } else if (S_ISLNK(st->st_mode)) {
        CHECK(f->readlink(st->st_ino));
      }
    }
  }
  // And the filesystem still takes new work.
  auto st = f->mknod(f->root_ino(), "after-fsck", S_IFREG | 0644, 0, test::root_cred());
  REQUIRE(st);
  REQUIRE(f->write(st->st_ino, 0, "ok", 2));
}

struct Outcome {
  int repaired = 0, left = 0, refused = 0;
};

// One round: damage, fsck -y, and then a clean check, a mount and a full walk.
void round(FsckFixture& fx, const std::string& pristine, uint64_t seed, int max_sprays, Outcome& out) {
  INFO("seed " << seed);
  fx.set_media(pristine);
  const fs::SuperBlock sb = fx.sb();
  const uint64_t data_start = sb.journal_start + sb.journal_blocks;
  std::mt19937_64 rng(seed);
  int sprays = 1 + static_cast<int>(rng() % static_cast<uint64_t>(max_sprays));
  for (int s = 0; s < sprays; s++) {
    // Mostly the low data area, where the chunks, record blocks and blobs live; now and then
    // the superblock, the journal header or the refcount block.
    uint64_t block = data_start + rng() % 96;
    if (rng() % 20 == 0)
      block = rng() % 2 ? 0 : sb.journal_start;
    else if (rng() % 12 == 0)
      block = sb.refcount_head;
    uint64_t at = block * fs::kBlockSize + (rng() % fs::kBlockSize & ~uint64_t{7});
    uint64_t room = (block + 1) * fs::kBlockSize - at;
    if (rng() % 2) {
      uint64_t v = plausible(rng, sb);
      fx.put_bytes(at, &v, std::min<uint64_t>(8, room));
    } else {
      std::string junk(1 + rng() % (rng() % 8 == 0 ? fs::kBlockSize : 300), '\0');
      for (char& c : junk) c = static_cast<char>(rng());
      fx.put_bytes(at, junk.data(), std::min<uint64_t>(junk.size(), room));
    }
  }
  test::check_agreement(fx);
  auto first = fx.repair();
  if (first.exit_code == fsck::kExitOperational) {
    out.refused++;  // a superblock beyond recognition
    return;
  }
  CHECK((first.exit_code == fsck::kExitClean || first.exit_code == fsck::kExitCorrected ||
         first.exit_code == fsck::kExitUncorrected));
  if (first.exit_code == fsck::kExitUncorrected) {
    out.left++;
    test::check_agreement(fx);
    CHECK(fx.repair().exit_code != fsck::kExitOperational);  // a second run copes too
    return;
  }
  if (first.exit_code == fsck::kExitCorrected) out.repaired++;
  auto second = fx.check();
  CHECK(second.exit_code == fsck::kExitClean);
  CHECK(second.problems.empty());
  walk(fx);
}

void fuzz(uint64_t first_seed, uint64_t rounds, int max_sprays) {
  FsckFixture fx;
  {
    auto f = fx.mount();
    test::populate(*f);
  }
  auto pristine_check = fx.check();
  REQUIRE(pristine_check.exit_code == fsck::kExitClean);
  REQUIRE(pristine_check.stats.shared_blocks > 0);
  const std::string pristine = fx.media();
  Outcome out;
  for (uint64_t seed = first_seed; seed < first_seed + rounds; seed++) round(fx, pristine, seed, max_sprays, out);
  WARN("fuzz: " << out.repaired << " repaired, " << out.left << " left uncorrected, " << out.refused << " refused");
}
}  // namespace

TEST_CASE("fsck survives random damage to metadata and repairs what it can", "[fsck][fuzz]") { fuzz(1, 100, 6); }

namespace {
// The superblock's geometry fields (and the two pointers checked with them), each with values
// that are wrong in every way: 0, tiny, around the truth, around the device's size, huge.
struct Field {
  const char* name;
  size_t offset;
  size_t size;
};
const Field kGeometry[] = {
    {"block_size", offsetof(fs::SuperBlock, block_size), 4},
    {"block_count", offsetof(fs::SuperBlock, block_count), 8},
    {"journal_start", offsetof(fs::SuperBlock, journal_start), 8},
    {"journal_blocks", offsetof(fs::SuperBlock, journal_blocks), 8},
    {"first_chunk", offsetof(fs::SuperBlock, first_chunk), 8},
    {"root_ino", offsetof(fs::SuperBlock, root_ino), 8},
};

std::vector<uint64_t> wrong_values(std::mt19937_64& rng, uint64_t truth, uint64_t device_blocks, int randoms) {
  std::vector<uint64_t> v{0,
                          1,
                          2,
                          15,
                          16,
                          100,
                          512,
                          1024,
                          1025,
                          2048,
                          3000,
                          4095,
                          4096,
                          truth - 1,
                          truth + 1,
                          truth / 2,
                          truth * 2,
                          truth << 4,
                          truth ^ (uint64_t{1} << 32),
                          device_blocks - 1,
                          device_blocks,
                          device_blocks + 1,
                          uint64_t{1} << 32,
                          uint64_t{1} << 40,
                          uint64_t{1} << 63,
                          ~uint64_t{0}};
  for (int i = 0; i < randoms; i++) {
    v.push_back(rng() % (2 * device_blocks));
    v.push_back(rng());
  }
  return v;
}

void one_wrong_field(const Field& field, uint64_t value, FsckFixture& fx, const std::string& pristine,
                     const std::map<std::string, std::string>& files) {
  INFO(field.name << " = " << value);
  fx.set_media(pristine);
  fx.put_bytes(field.offset, &value, field.size);
  test::check_agreement(fx);
  auto y = fx.repair();
  // Never "cannot repair", never an operational error: one field is not enough to lose the
  // filesystem, nor any inode in it.
  REQUIRE((y.exit_code == fsck::kExitClean || y.exit_code == fsck::kExitCorrected));
  auto n = fx.check();
  CHECK(n.exit_code == fsck::kExitClean);
  CHECK(n.problems.empty());
  REQUIRE(fx.mounts());
  CHECK(test::listing(fx) == files);
}

void geometry_fuzz(uint64_t seed, int randoms) {
  FsckFixture fx;
  {
    auto f = fx.mount();
    test::populate(*f);
  }
  const auto files = test::listing(fx);
  const std::string pristine = fx.media();
  const fs::SuperBlock sb = fx.sb();
  std::mt19937_64 rng(seed);
  for (const Field& field : kGeometry) {
    uint64_t truth = 0;
    memcpy(&truth, pristine.data() + field.offset, field.size);
    std::vector<uint64_t> values = wrong_values(rng, truth, sb.block_count, randoms);
    if (field.offset == offsetof(fs::SuperBlock, first_chunk) || field.offset == offsetof(fs::SuperBlock, root_ino)) {
      // Every chunk of the chain, and every inode slot of the first chunk.
      for (uint64_t b = sb.first_chunk; b != 0; b = fx.get<fs::ChunkHeader>(b * fs::kBlockSize).next) {
        values.push_back(b);
        if (field.offset == offsetof(fs::SuperBlock, root_ino))
          for (uint32_t slot = 0; slot < fs::kInodesPerChunk; slot++) values.push_back(fs::make_ino(b, slot));
      }
    }
    for (uint64_t value : values) {
      if (field.size == 4) value &= 0xffffffff;
      one_wrong_field(field, value, fx, pristine, files);
    }
  }
}
}  // namespace

TEST_CASE("one wrong geometry field never costs an inode, and fsck and the mount agree on it",
          "[fsck][fuzz][geometry]") {
  geometry_fuzz(11, 4);
}

// Hidden (run with "[fuzzlong]"): FSCK_FUZZ_ROUNDS random values (default 200) per field, twice.
TEST_CASE("one wrong geometry field over a long run", "[.][fuzzlong]") {
  const char* env = getenv("FSCK_FUZZ_ROUNDS");
  int randoms = env ? atoi(env) / 2 : 100;
  const char* seed = getenv("FSCK_FUZZ_SEED");
  geometry_fuzz(seed ? strtoull(seed, nullptr, 10) : 1000, randoms);
}

TEST_CASE("fsck and the mount agree on a device of any size", "[fsck][fuzz][geometry]") {
  FsckFixture fx(64ULL << 20);
  {
    auto f = fx.mount();
    test::populate(*f);
    // Data to 40 MiB, so that some sizes cut it and some do not.
    auto st = f->mknod(f->root_ino(), "big", S_IFREG | 0644, 0, test::root_cred());
    REQUIRE(st);
    std::string chunk(1 << 20, 'B');
    for (uint64_t off = 0; off < (36ULL << 20); off += chunk.size())
      REQUIRE(f->write(st->st_ino, off, chunk.data(), chunk.size()));
  }
  const std::string pristine = fx.media();
  std::mt19937_64 rng(5);
  std::vector<uint64_t> sizes{0, 100, 4095, 4096, 4097, 8191, 65536, 4ULL << 20, (16ULL << 20) - 4096,
                              (16ULL << 20) - 1, 16ULL << 20, (16ULL << 20) + 1, 20ULL << 20, 32ULL << 20,
                              (40ULL << 20) - 4096, 48ULL << 20, (64ULL << 20) - 4096, (64ULL << 20) - 1,
                              (64ULL << 20) + 1, 65ULL << 20, 128ULL << 20};
  for (uint64_t mib = 1; mib < 64; mib++) sizes.push_back(mib << 20);
  for (int i = 0; i < 8; i++) sizes.push_back(rng() % (80ULL << 20));
  for (uint64_t size : sizes) {
    INFO("device size " << size);
    fx.resize(pristine.size());
    fx.set_media(pristine);
    fx.resize(size);
    test::check_agreement(fx);
    auto y = fx.repair();
    if (y.exit_code == fsck::kExitClean || y.exit_code == fsck::kExitCorrected) {
      auto n = fx.check();
      CHECK(n.exit_code == fsck::kExitClean);
      CHECK(n.problems.empty());
      CHECK(fx.mounts());
    } else {
      // Cannot repair (exit 4), or not even a superblock to read (exit 8): the mount refuses too,
      // and the check says so again.
      CHECK((y.exit_code == fsck::kExitUncorrected || y.exit_code == fsck::kExitOperational));
      CHECK(size < (48ULL << 20));  // the data ends before 42 MiB
      CHECK(fx.check().exit_code == y.exit_code);
      CHECK_FALSE(fx.mounts());
    }
  }
}

// Hidden (run with "[fuzzlong]"): FSCK_FUZZ_ROUNDS rounds (default 2000) of heavier damage.
TEST_CASE("fsck survives long random damage runs", "[.][fuzzlong]") {
  const char* env = getenv("FSCK_FUZZ_ROUNDS");
  uint64_t rounds = env ? strtoull(env, nullptr, 10) : 2000;
  const char* seed = getenv("FSCK_FUZZ_SEED");
  fuzz(seed ? strtoull(seed, nullptr, 10) : 1000, rounds, 24);
}
