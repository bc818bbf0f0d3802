// An fsx-style model test of file data and reflink: random writes, truncates, fallocate modes,
// clones, dedupes, unshares, copies and reads on a few files through the Filesystem API, each
// also applied to an in-memory model (one std::string per file) that follows Linux's semantics
// and errnos. Sizes are compared after every operation; contents, free space and a remount (whose
// load validates refcounts and the namespace) every kCheckEvery operations. Single-threaded.
// A failure prints the seed: DAXFS_FSX_SEED=N reruns the same sequence.
#include <fcntl.h>
#include <linux/falloc.h>

#include <array>
#include <catch2/catch.hpp>
#include <cstdlib>
#include <cstring>
#include <random>
#include <map>
#include <sstream>

#include "fs/daxfs_ioctl.h"
#include "tests/support/fs_fixture.h"

using daxfs::test::FsFixture;

namespace {

constexpr uint64_t kB = 4096;
constexpr uint64_t kMaxSize = 8ULL << 20;  // every generated range ends by here
constexpr int kFiles = 5;
constexpr int kCheckEvery = 500;
constexpr uint64_t kDiffers = UINT64_MAX;  // a dedupe's value when the ranges differ
// daxfs answers differently from Linux in the cases where the model calls bug() (each names the
// deviation); the generator skips exactly those operations. Set false to run them and fail.
constexpr bool kSkipKnownBugs = true;

uint64_t round_up(uint64_t x) { return (x + kB - 1) / kB * kB; }

// What an operation returned: 0 or a positive errno, and its value (bytes, or kDiffers).
struct Outcome {
  int err = 0;
  uint64_t value = 0;
  bool operator==(const Outcome&) const = default;
};
std::ostream& operator<<(std::ostream& os, const Outcome& o) {
  return o.err ? os << "errno " << o.err : os << "ok " << o.value;
}

template <typename T>
Outcome outcome(const daxfs::Result<T>& r) {
  if (!r) return {r.error(), 0};
  if constexpr (std::is_same_v<T, daxfs::fs::Filesystem::DedupeResult>) {
    return {0, r->differs ? kDiffers : r->bytes};
  } else if constexpr (std::is_integral_v<T>) {
    return {0, static_cast<uint64_t>(*r)};
  } else {
    return {0, 0};
  }
}

// The files as Linux leaves them. An operation returns what the system call would and changes
// the files the same way, except where it calls bug(): there daxfs is known to differ, and the
// model changes nothing (the operation is skipped while kSkipKnownBugs).
struct Model {
  std::array<std::string, kFiles> file;
  bool known_bug = false;

  Outcome bug(Outcome linux_answer) {
    known_bug = true;
    return linux_answer;
  }
  void write(int i, uint64_t off, const std::string& data) {
    if (off + data.size() > file[i].size()) file[i].resize(off + data.size());
    file[i].replace(off, data.size(), data);
  }
  Outcome fallocate(int i, int mode, uint64_t off, uint64_t len) {
    std::string& f = file[i];
    if (!(mode & FALLOC_FL_KEEP_SIZE) && off + len > f.size()) f.resize(off + len);
    if ((mode & (FALLOC_FL_PUNCH_HOLE | FALLOC_FL_ZERO_RANGE)) && off < f.size())
      std::fill_n(f.begin() + off, std::min(len, f.size() - off), '\0');
    return {};
  }
  // FICLONERANGE: __generic_remap_file_range_prep(), generic_remap_checks() and
  // generic_remap_check_len() of fs/remap_range.c, without REMAP_FILE_CAN_SHORTEN.
  Outcome clone(int s, uint64_t so, int d, uint64_t doff, uint64_t len) {
    uint64_t size_in = file[s].size(), size_out = file[d].size();
    if (len == 0) {
      // Bug C: daxfs says EINVAL for an empty clone at the source's EOF.
      if (so == size_in) return bug({0, 0});
      if (so > size_in) return {EINVAL};
      len = size_in - so;
    }
    if (so % kB || doff % kB || so >= size_in) return {EINVAL};
    uint64_t count = std::min(len, size_in - so), bcount;
    if (so + count == size_in) {
      bcount = round_up(size_in) - so;
    } else {
      count = count / kB * kB;
      bcount = count;
    }
    if (s == d && doff + bcount > so && doff < so + bcount) return {EINVAL};
    // Bug B: a range past the source's EOF; daxfs clips it to EOF and clones.
    if (so + len > size_in) return bug({EINVAL});
    if (count != len) return {EINVAL};
    // Bug A: the partial EOF block into the middle of the destination; daxfs clones it and
    // zeroes the destination's bytes after the source's EOF in that block.
    if (count % kB && doff + count < size_out) return bug({EINVAL});
    write(d, doff, file[s].substr(so, count));
    return {0, count};
  }
  // FIDEDUPERANGE: vfs_dedupe_file_range(), then the checks above with REMAP_FILE_DEDUP |
  // REMAP_FILE_CAN_SHORTEN. Never changes contents.
  Outcome dedupe(int s, uint64_t so, int d, uint64_t doff, uint64_t len) {
    uint64_t size_in = file[s].size(), size_out = file[d].size();
    if (so + len > size_in) return {EINVAL};
    if (len == 0) return bug({0, 0});  // Bug D: daxfs dedupes to EOF (or EINVAL).
    if (so % kB || doff % kB || so >= size_in || doff >= size_out || doff + len > size_out)
      return {EINVAL};
    uint64_t count = len, bcount;
    bool shortened = false;
    if (so + count == size_in && doff + count == size_out) {
      bcount = round_up(size_in) - so;
    } else {
      shortened = count % kB != 0;
      count = bcount = count / kB * kB;
    }
    if (s == d && doff + bcount > so && doff < so + bcount) return {EINVAL};
    bool same = file[s].compare(so, count, file[d], doff, count) == 0;
    Outcome o{0, same ? count : kDiffers};
    return shortened ? bug(o) : o;  // Bug E: daxfs says EINVAL instead of shortening.
  }
  // copy_file_range(): generic_copy_file_checks() shortens to the source's EOF.
  Outcome copy(int s, uint64_t so, int d, uint64_t doff, uint64_t len) {
    uint64_t n = so >= file[s].size() ? 0 : std::min(len, file[s].size() - so);
    if (s == d && doff + n > so && doff < so + n) return {EINVAL};
    if (n) write(d, doff, file[s].substr(so, n));
    return {0, n};
  }
};

class Fsx {
 public:
  explicit Fsx(uint64_t seed) : rng_(seed) {
    for (int i = 0; i < kFiles; i++) ino_[i] = f_.make_file(f_.root(), "f" + std::to_string(i));
    free_start_ = fs().statfs().f_bfree;  // after the directory's block
  }
  // Runs `ops` operations with a checkpoint every kCheckEvery and at the end; then removes the
  // files and checks that every block came back.
  void run(uint64_t ops) {
    while (ops_ < ops) {
      step();
      if (ops_ % kCheckEvery == 0) checkpoint();
    }
    checkpoint();
    for (int i = 0; i < kFiles; i++) REQUIRE(fs().unlink(f_.root(), "f" + std::to_string(i)));
    f_.remount();
    // Everything comes back but the refcount record blocks, which the chain keeps for reuse.
    uint64_t refcount_blocks = 0;
    for (const auto& row : fs().fsmap(0, UINT64_MAX, 0, SIZE_MAX)) {
      INFO("row kind " << row.kind << " at " << row.physical);
      REQUIRE(row.kind != DAXFS_OWN_DATA);
      REQUIRE(row.kind != DAXFS_OWN_EXTENT_MAP);
      if (row.kind == DAXFS_OWN_REFCOUNT) refcount_blocks += row.length / kB;
    }
    CHECK(fs().statfs().f_bfree + refcount_blocks == free_start_);
  }
  uint64_t skipped() const { return skipped_; }

 private:
  daxfs::fs::Filesystem& fs() { return f_.fs(); }
  uint64_t rand(uint64_t n) { return rng_() % n; }
  bool chance(unsigned pct) { return rand(100) < pct; }
  uint64_t size(int i) const { return model_.file[i].size(); }
  uint64_t aligned_in(uint64_t size) { return rand(size / kB + 1) * kB; }  // a block start <= size
  uint64_t pick_offset(uint64_t size) {
    switch (rand(5)) {
      case 0: return rand(size + 1);
      case 1: return size > kB ? size - kB + rand(3 * kB) : rand(3 * kB);  // around EOF
      case 2: return rand(kMaxSize);
      case 3: return aligned_in(size + kB);
      default: return rand(std::max(size, 64 * kB));
    }
  }
  uint64_t pick_length() {
    switch (rand(10)) {
      case 0: case 1: case 2: case 3: case 4: return 1 + rand(2 * kB);
      case 5: case 6: case 7: return 1 + rand(64 << 10);
      case 8: return (1 + rand(64)) * kB;
      default: return 1 + rand(1 << 20);  // large
    }
  }
  void clip(uint64_t& off, uint64_t& len) {
    if (off >= kMaxSize) off = rand(kMaxSize);
    len = std::min(len, kMaxSize - off);
  }
  std::string random_data(uint64_t n) {
    std::string s(n, '\0');
    for (uint64_t i = 0, x = rng_(); i < n; i += 8) {
      x = x * 6364136223846793005ULL + 1442695040888963407ULL;
      uint64_t v = x ^ (x >> 29);
      memcpy(&s[i], &v, std::min<uint64_t>(8, n - i));
    }
    return s;
  }
  // Writes `data` to both (a dedupe's preparation).
  void put(int i, uint64_t off, const std::string& data) {
    model_.write(i, off, data);
    REQUIRE(fs().write(ino_[i], off, data.data(), data.size()).value() == data.size());
  }
  void step();
  void check_sizes();
  void check_contents();
  void checkpoint();

  FsFixture f_{256ULL << 20};
  std::mt19937_64 rng_;
  Model model_;
  std::array<uint64_t, kFiles> ino_{};
  uint64_t free_start_ = 0, ops_ = 0, skipped_ = 0;
 public: std::map<std::string, int> stats_; uint64_t maxsize_ = 0;
};

void Fsx::step() {
  ops_++;
  int a = static_cast<int>(rand(kFiles)), b = static_cast<int>(rand(kFiles));
  uint64_t off = pick_offset(size(a)), len = pick_length();
  clip(off, len);
  std::ostringstream op;
  Outcome want;
  std::function<Outcome()> call;
  model_.known_bug = false;
  unsigned r = static_cast<unsigned>(rand(100));
  if (r < 20) {
    std::string data = random_data(len);
    op << "write(f" << a << ", " << off << ", " << len << ")";
    model_.write(a, off, data);
    want = {0, len};
    call = [&, data = std::move(data)] { return outcome(fs().write(ino_[a], off, data.data(), data.size())); };
  } else if (r < 26) {
    op << "read(f" << a << ", " << off << ", " << len << ")";
    std::string got(len, '\0');
    auto n = fs().read(ino_[a], off, len, got.data());
    REQUIRE(n);
    got.resize(*n);
    INFO("op " << ops_ << ": " << op.str());
    REQUIRE(got.size() == (off < size(a) ? std::min(len, size(a) - off) : 0));
    REQUIRE((got.empty() || got.compare(0, got.size(), model_.file[a], off, got.size()) == 0));
    return;
  } else if (r < 34) {
    uint64_t to = chance(10) ? 0 : chance(50) ? pick_offset(size(a)) : aligned_in(kMaxSize - 1);
    op << "truncate(f" << a << ", " << to << ")";
    model_.file[a].resize(to);
    daxfs::fs::SetAttr attr;
    attr.valid = daxfs::fs::SetAttr::kSize;
    attr.size = to;
    call = [&, attr] { return outcome(fs().setattr(ino_[a], attr)); };
  } else if (r < 50) {
    static constexpr int kModes[] = {
        FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
        FALLOC_FL_ZERO_RANGE, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE, 0, FALLOC_FL_KEEP_SIZE};
    int mode = kModes[rand(6)];
    op << "fallocate(f" << a << ", mode " << mode << ", " << off << ", " << len << ")";
    want = model_.fallocate(a, mode, off, len);
    call = [&, mode] { return outcome(fs().fallocate(ino_[a], mode, off, len)); };
  } else if (r < 66) {
    // Clone: whole files, aligned ranges (to EOF or not), past EOF, or anything at all.
    uint64_t ssize = size(a), so = aligned_in(ssize), avail = ssize - so;
    unsigned kind = static_cast<unsigned>(rand(10));
    if (kind < 2) {
      so = len = 0;
    } else if (kind == 2) {
      so = off;  // mostly misaligned: EINVAL
    } else if (kind == 3) {
      so = round_up(ssize) + rand(3) * kB;  // at or past EOF: EINVAL
      len = kB;
    } else {
      len = avail >= kB && chance(50) ? (1 + rand(std::min<uint64_t>(avail / kB, 256))) * kB : avail;
      if (len == 0) len = kB;
    }
    uint64_t span = len ? round_up(len) : round_up(ssize);
    uint64_t doff = chance(30) ? round_up(size(b)) : aligned_in(size(b) + 4 * kB);
    if (a == b && chance(70)) {  // same file, placed not to overlap
      doff = so >= span && chance(50) ? aligned_in(so - span) : round_up(so + span) + rand(4) * kB;
    }
    if (chance(5)) doff += 1 + rand(kB - 1);
    if (doff + span > kMaxSize) doff = (kMaxSize - std::min(span, kMaxSize)) / kB * kB;
    op << "clone(f" << a << ", " << so << ", f" << b << ", " << doff << ", " << len << ")";
    want = model_.clone(a, so, b, doff, len);
    call = [&, so, doff] { return outcome(fs().clone_range(ino_[a], so, ino_[b], doff, len)); };
  } else if (r < 76) {
    // Dedupe: mostly ranges made equal first (sometimes then made to differ in one byte).
    uint64_t so = aligned_in(size(a)), doff = aligned_in(size(b));
    uint64_t avail = std::min(size(a) - so, size(b) > doff ? size(b) - doff : 0);
    bool to_eof = chance(20) && doff + (size(a) - so) <= kMaxSize && so < size(a);
    if (to_eof) {
      len = size(a) - so;
    } else if (!chance(15)) {
      len = (1 + rand(std::max<uint64_t>(std::min<uint64_t>(avail / kB, 64), 1))) * kB;
    }
    if (len > 0 && so + len <= size(a) && (a != b || so + len <= doff || doff + len <= so) && chance(70)) {
      std::string data = model_.file[a].substr(so, len);
      if (chance(25)) data[rand(len)] ^= 0x5a;
      if (to_eof) {
        model_.file[b].resize(doff + len);
        daxfs::fs::SetAttr attr;
        attr.valid = daxfs::fs::SetAttr::kSize;
        attr.size = doff + len;
        REQUIRE(fs().setattr(ino_[b], attr));
      }
      put(b, doff, data);
    }
    op << "dedupe(f" << a << ", " << so << ", f" << b << ", " << doff << ", " << len << ")";
    want = model_.dedupe(a, so, b, doff, len);
    call = [&, so, doff] { return outcome(fs().dedupe_range(ino_[a], so, ino_[b], doff, len)); };
  } else if (r < 84) {
    op << "unshare(f" << a << ", " << off << ", " << len << ")";
    call = [&] { return outcome(fs().unshare_range(ino_[a], off, len)); };
  } else {
    // Copy: half the time with equal offsets within their blocks, so that the middle is shared.
    uint64_t so = pick_offset(size(a));
    uint64_t doff = chance(50) ? aligned_in(size(b) + kB) + so % kB : pick_offset(size(b));
    if (chance(30)) len = size(a) > so ? size(a) - so : len;
    if (doff >= kMaxSize) doff = 0;
    len = std::min(len, kMaxSize - doff);
    op << "copy(f" << a << ", " << so << ", f" << b << ", " << doff << ", " << len << ")";
    want = model_.copy(a, so, b, doff, len);
    call = [&, so, doff] { return outcome(fs().copy_range(ino_[a], so, ino_[b], doff, len)); };
  }
  if (model_.known_bug && kSkipKnownBugs) {
    skipped_++; stats_["skip " + op.str().substr(0, op.str().find('('))]++;
    return;
  }
  INFO("op " << ops_ << ": " << op.str());
  REQUIRE(call() == want);
  { std::string k = op.str().substr(0, op.str().find('(')); if (k == "fallocate") k += op.str().substr(op.str().find("mode"), 8);
    auto& st = stats_[k + (want.err ? " err" + std::to_string(want.err) : want.value == kDiffers ? " differs" : " ok")]; st++; }
  check_sizes();
}

void Fsx::check_sizes() {
  for (int i = 0; i < kFiles; i++) {
    INFO("file f" << i);
    REQUIRE(static_cast<uint64_t>(fs().getattr(ino_[i])->st_size) == size(i));
  }
  struct statvfs s = fs().statfs();
  REQUIRE(s.f_bfree <= s.f_blocks);  // free space never "negative" (wrapped)
}

void Fsx::check_contents() {
  for (int i = 0; i < kFiles; i++) {
    std::string got = f_.read_all(ino_[i]);
    const std::string& want = model_.file[i];
    auto diff = std::mismatch(got.begin(), got.end(), want.begin(), want.end());
    INFO("file f" << i << " size " << got.size() << ", model " << want.size() << ", first difference at "
                  << (diff.first - got.begin()));
    REQUIRE((got.size() == want.size() && diff.first == got.end()));
  }
}

void Fsx::checkpoint() {
  INFO("checkpoint after op " << ops_);
  check_sizes();
  check_contents();
  uint64_t free_before = fs().statfs().f_bfree;
  f_.remount();
  // The allocator rebuilt from the metadata agrees with the one kept up to date: no block leaked
  // or counted twice; and nothing was left for the mount to clean up.
  REQUIRE(fs().statfs().f_bfree == free_before);
  REQUIRE(fs().counters().post_eof_trimmed == 0);
  REQUIRE(fs().counters().orphans_freed == 0);
  check_contents();
}

uint64_t fsx_seed() {
  if (const char* s = getenv("DAXFS_FSX_SEED")) return strtoull(s, nullptr, 0);
  return std::random_device{}();
}

}  // namespace

TEST_CASE("random file operations agree with a model of Linux semantics", "[fs][fsx]") {
  uint64_t seed = fsx_seed();
  INFO("seed " << seed << " (rerun with DAXFS_FSX_SEED=" << seed << ")");
  Fsx fsx(seed);
  fsx.run(getenv("OPS") ? atoi(getenv("OPS")) : 5000);
  for (auto& [k, v] : fsx.stats_) printf("%-30s %d\n", k.c_str(), v);
}

TEST_CASE("a hundred thousand random file operations agree with the model", "[fs][fsx][slow]") {
  uint64_t seed = fsx_seed();
  INFO("seed " << seed << " (rerun with DAXFS_FSX_SEED=" << seed << ")");
  Fsx fsx(seed);
  fsx.run(100000);
}
