// Random damage sprayed over the metadata of a populated filesystem: whatever the bytes, fsck
// must not crash or hang, and -y must either leave a device that checks clean and mounts (exit
// 1, or 0 when the damage hit nothing that matters) or say it could not (exit 4).
#include <cstdlib>
#include <random>

#include "tests/fsck/fsck_fixture.h"

using namespace daxfs;
using daxfs::test::FsckFixture;

namespace {
void populate(fs::Filesystem& f) {
  auto cred = test::root_cred();
  uint64_t root = f.root_ino();
  uint64_t dirs[3] = {root, f.mkdir(root, "d1", 0755, cred)->st_ino, 0};
  dirs[2] = f.mkdir(dirs[1], "d2", 0755, cred)->st_ino;
  for (int i = 0; i < 45; i++) {
    uint64_t dir = dirs[i % 3];
    auto st = f.mknod(dir, "file" + std::to_string(i), S_IFREG | 0644, 0, cred);
    REQUIRE(st);
    std::string data(static_cast<size_t>(i % 5) * 3000 + 1, static_cast<char>('a' + i % 26));
    REQUIRE(f.write(st->st_ino, static_cast<uint64_t>(i % 4) * 8192, data.data(), data.size()));
    if (i % 7 == 0) REQUIRE(f.setxattr(st->st_ino, "user.n", std::to_string(i), 0));
    if (i % 9 == 0) REQUIRE(f.link(st->st_ino, root, "link" + std::to_string(i)));
  }
  // Shared blocks (a refcount chain and its records): whole clones, a partial one, and a file
  // sharing with itself.
  std::vector<uint64_t> files;
  REQUIRE(f.readdir(root, 0, [&](const fs::DirEntry& e) {
    if (e.name.rfind("file", 0) == 0) files.push_back(e.ino);
    return true;
  }));
  auto clone = [&](uint64_t src, uint64_t dst, uint64_t dst_off, uint64_t max_blocks) {
    uint64_t blocks = std::min<uint64_t>(max_blocks, static_cast<uint64_t>(f.getattr(src)->st_size) / fs::kBlockSize);
    if (blocks > 0) REQUIRE(f.clone_range(src, 0, dst, dst_off, blocks * fs::kBlockSize));  // whole blocks only
  };
  for (size_t i = 0; i + 1 < files.size(); i += 4) clone(files[i], files[i + 1], 0, 64);
  clone(files[2], files[2], 1 << 20, 1);
  clone(files[3], files[6], 4 * fs::kBlockSize, 1);
  REQUIRE(f.symlink(dirs[1], "sym", "../file1", cred));
  REQUIRE(f.mknod(dirs[2], "fifo", S_IFIFO | 0600, 0, cred));
}

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
  auto first = fx.repair();
  if (first.exit_code == fsck::kExitOperational) {
    out.refused++;  // a superblock beyond recognition
    return;
  }
  CHECK((first.exit_code == fsck::kExitClean || first.exit_code == fsck::kExitCorrected ||
         first.exit_code == fsck::kExitUncorrected));
  if (first.exit_code == fsck::kExitUncorrected) {
    out.left++;
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
    populate(*f);
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

// Hidden (run with "[fuzzlong]"): FSCK_FUZZ_ROUNDS rounds (default 2000) of heavier damage.
TEST_CASE("fsck survives long random damage runs", "[.][fuzzlong]") {
  const char* env = getenv("FSCK_FUZZ_ROUNDS");
  uint64_t rounds = env ? strtoull(env, nullptr, 10) : 2000;
  const char* seed = getenv("FSCK_FUZZ_SEED");
  fuzz(seed ? strtoull(seed, nullptr, 10) : 1000, rounds, 24);
}
