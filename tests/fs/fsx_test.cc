// An fsx-style model test of file data and reflink: random writes, truncates, fallocate modes
// (collapse and insert range among them), clones, dedupes, unshares, copies and reads on a few
// files through the Filesystem API, each
// also applied to an in-memory model (one std::string per file) that follows Linux's semantics
// and errnos. Sizes are compared after every operation; contents, free space and a remount (whose
// load validates refcounts and the namespace) every kCheckEvery operations. Single-threaded.
// A failure prints the seed: DAXFS_FSX_SEED=N reruns the same sequence.
#include <fcntl.h>
#include <linux/falloc.h>

#include <algorithm>
#include <array>
#include <catch2/catch.hpp>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <random>
#include <sstream>
#include <string>

#include "daxcore/daxfs_ioctl.h"
#include "tests/support/fs_fixture.h"

using daxfs::test::FsFixture;

namespace {

constexpr uint64_t kB = 4096;
constexpr uint64_t kMaxSize = 8ULL << 20;  // every generated range ends by here
constexpr int kFiles = 5;
constexpr int kCheckEvery = 500;
constexpr uint64_t kDiffers = UINT64_MAX;  // a dedupe's value when the ranges differ

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
// the files the same way.
struct Model {
  std::array<std::string, kFiles> file;
  void write(int i, uint64_t off, const std::string& data) {
    if (off + data.size() > file[i].size()) file[i].resize(off + data.size());
    file[i].replace(off, data.size(), data);
  }
  Outcome fallocate(int i, int mode, uint64_t off, uint64_t length) {
    std::string& f = file[i];
    if (!(mode & FALLOC_FL_KEEP_SIZE) && off + length > f.size()) f.resize(off + length);
    if ((mode & (FALLOC_FL_PUNCH_HOLE | FALLOC_FL_ZERO_RANGE)) && off < f.size())
      std::fill_n(f.begin() + off, std::min(length, f.size() - off), '\0');
    return {};
  }
  // FALLOC_FL_COLLAPSE_RANGE and FALLOC_FL_INSERT_RANGE: vfs_fallocate() refuses a length of 0,
  // then XFS a range not in whole blocks, a collapse reaching EOF and an insert at or past it
  // (EINVAL); the sizes here never come near EFBIG's.
  Outcome collapse(int i, uint64_t off, uint64_t length) {
    std::string& f = file[i];
    if (length == 0 || off % kB || length % kB || off + length >= f.size()) return {EINVAL};
    f.erase(off, length);
    return {};
  }
  Outcome insert(int i, uint64_t off, uint64_t length) {
    std::string& f = file[i];
    if (length == 0 || off % kB || length % kB || off >= f.size()) return {EINVAL};
    f.insert(off, std::string(length, '\0'));
    return {};
  }
  // FICLONERANGE: __generic_remap_file_range_prep(), generic_remap_checks() and
  // generic_remap_check_len() of fs/remap_range.c, without REMAP_FILE_CAN_SHORTEN.
  Outcome clone(int s, uint64_t src_off, int d, uint64_t dst_off, uint64_t length) {
    uint64_t size_in = file[s].size(), size_out = file[d].size();
    if (length == 0) {
      // An empty clone at the source's EOF does nothing.
      if (src_off == size_in) return {0, 0};
      if (src_off > size_in) return {EINVAL};
      length = size_in - src_off;
    }
    if (src_off % kB || dst_off % kB || src_off >= size_in) return {EINVAL};
    uint64_t count = std::min(length, size_in - src_off), bcount;
    if (src_off + count == size_in) {
      bcount = round_up(size_in) - src_off;
    } else {
      count = count / kB * kB;
      bcount = count;
    }
    if (s == d && dst_off + bcount > src_off && dst_off < src_off + bcount) return {EINVAL};
    // A range past the source's EOF cannot be shortened: EINVAL.
    if (src_off + length > size_in) return {EINVAL};
    if (count != length) return {EINVAL};
    // The partial EOF block may not land in the middle of the destination.
    if (count % kB && dst_off + count < size_out) return {EINVAL};
    write(d, dst_off, file[s].substr(src_off, count));
    return {0, count};
  }
  // FIDEDUPERANGE: vfs_dedupe_file_range(), then the checks above with REMAP_FILE_DEDUP |
  // REMAP_FILE_CAN_SHORTEN. Never changes contents.
  Outcome dedupe(int s, uint64_t src_off, int d, uint64_t dst_off, uint64_t length) {
    uint64_t size_in = file[s].size(), size_out = file[d].size();
    if (src_off + length > size_in) return {EINVAL};
    if (length == 0) return {0, 0};  // a zero-length dedupe does nothing
    if (src_off % kB || dst_off % kB || src_off >= size_in || dst_off >= size_out ||
        dst_off + length > size_out)
      return {EINVAL};
    uint64_t count = length, bcount;
    if (src_off + count == size_in && dst_off + count == size_out) {
      bcount = round_up(size_in) - src_off;
    } else {
      count = bcount = count / kB * kB;  // shortened to whole blocks (REMAP_FILE_CAN_SHORTEN)
    }
    if (s == d && dst_off + bcount > src_off && dst_off < src_off + bcount) return {EINVAL};
    bool same = file[s].compare(src_off, count, file[d], dst_off, count) == 0;
    return {0, same ? count : kDiffers};
  }
  // copy_file_range(): generic_copy_file_checks() shortens to the source's EOF.
  Outcome copy(int s, uint64_t src_off, int d, uint64_t dst_off, uint64_t length) {
    uint64_t n = src_off >= file[s].size() ? 0 : std::min(length, file[s].size() - src_off);
    if (s == d && dst_off + n > src_off && dst_off < src_off + n) return {EINVAL};
    if (n) write(d, dst_off, file[s].substr(src_off, n));
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
  void clip(uint64_t& off, uint64_t& length) {
    if (off >= kMaxSize) off = rand(kMaxSize);
    length = std::min(length, kMaxSize - off);
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
  static daxfs::fs::SetAttr size_attr(uint64_t size) {
    daxfs::fs::SetAttr attr;
    attr.valid = daxfs::fs::SetAttr::kSize;
    attr.size = size;
    return attr;
  }
  void step();
  void check_sizes();
  void check_contents();
  void checkpoint();

  FsFixture f_{256ULL << 20};
  std::mt19937_64 rng_;
  Model model_;
  std::array<uint64_t, kFiles> ino_{};
  uint64_t free_start_ = 0, ops_ = 0;
  std::array<std::string, 8> recent_;  // the last operations run, for failure messages
};

void Fsx::step() {
  ops_++;
  int a = static_cast<int>(rand(kFiles)), b = static_cast<int>(rand(kFiles));
  uint64_t off = pick_offset(size(a)), length = pick_length(), src_off = 0, dst_off = 0;
  clip(off, length);
  std::ostringstream op;
  auto two_files = [&](const char* name) {
    op << name << "(f" << a << ", " << src_off << ", f" << b << ", " << dst_off << ", " << length << ")";
  };
  Outcome want;
  std::function<Outcome()> call;
  unsigned r = static_cast<unsigned>(rand(100));
  if (r < 20) {
    std::string data = random_data(length);
    op << "write(f" << a << ", " << off << ", " << length << ")";
    model_.write(a, off, data);
    want = {0, length};
    call = [&, data = std::move(data)] { return outcome(fs().write(ino_[a], off, data.data(), length)); };
  } else if (r < 26) {
    op << "read(f" << a << ", " << off << ", " << length << ")";
    recent_[ops_ % recent_.size()] = std::to_string(ops_) + ": " + op.str();
    INFO("op " << recent_[ops_ % recent_.size()]);
    std::string got(length, '\0');
    auto n = fs().read(ino_[a], off, length, got.data());
    REQUIRE(n);
    got.resize(*n);
    REQUIRE(got.size() == (off < size(a) ? std::min(length, size(a) - off) : 0));
    REQUIRE((got.empty() || got.compare(0, got.size(), model_.file[a], off, got.size()) == 0));
    return;
  } else if (r < 34) {
    uint64_t to = chance(10) ? 0 : chance(50) ? pick_offset(size(a)) : aligned_in(kMaxSize - 1);
    op << "truncate(f" << a << ", " << to << ")";
    model_.file[a].resize(to);
    call = [&, to] { return outcome(fs().setattr(ino_[a], size_attr(to))); };
  } else if (r < 50 && chance(30)) {
    // Collapse or insert: mostly whole blocks inside the file, sometimes anything at all.
    bool collapse = chance(50);
    uint64_t sz = size(a);
    if (chance(85)) {
      off = aligned_in(sz);
      uint64_t room = collapse ? (sz > off ? (sz - off - 1) / kB : 0) : (kMaxSize - std::min(sz, kMaxSize)) / kB;
      length = (1 + rand(std::max<uint64_t>(std::min<uint64_t>(room, chance(80) ? 16 : 512), 1))) * kB;
    }
    if (!collapse && sz + length > kMaxSize) length = (kMaxSize - std::min(sz, kMaxSize)) / kB * kB;  // 0: EINVAL
    int mode = collapse ? FALLOC_FL_COLLAPSE_RANGE : FALLOC_FL_INSERT_RANGE;
    op << (collapse ? "collapse" : "insert") << "(f" << a << ", " << off << ", " << length << ")";
    want = collapse ? model_.collapse(a, off, length) : model_.insert(a, off, length);
    call = [&, mode] { return outcome(fs().fallocate(ino_[a], mode, off, length)); };
  } else if (r < 50) {
    static constexpr int kModes[] = {
        FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
        FALLOC_FL_ZERO_RANGE, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE, 0, FALLOC_FL_KEEP_SIZE};
    int mode = kModes[rand(6)];
    op << "fallocate(f" << a << ", mode " << mode << ", " << off << ", " << length << ")";
    want = model_.fallocate(a, mode, off, length);
    call = [&, mode] { return outcome(fs().fallocate(ino_[a], mode, off, length)); };
  } else if (r < 66) {
    // Clone: whole files, aligned ranges (to EOF or not), at or past EOF, or anything at all;
    // into the same file mostly where the ranges do not overlap.
    uint64_t ssize = size(a), avail;
    src_off = aligned_in(ssize);
    avail = ssize - src_off;
    unsigned kind = static_cast<unsigned>(rand(10));
    if (kind < 2) {
      src_off = length = 0;
    } else if (kind == 2) {
      src_off = off;  // mostly misaligned: EINVAL
    } else if (kind == 3) {
      src_off = round_up(ssize) + rand(3) * kB;  // at or past EOF: EINVAL
      length = kB;
    } else {
      length = avail >= kB && chance(50) ? (1 + rand(std::min<uint64_t>(avail / kB, 256))) * kB : avail;
      if (length == 0) length = kB;
    }
    uint64_t span = length ? round_up(length) : round_up(ssize);
    dst_off = chance(30) ? round_up(size(b)) : aligned_in(size(b) + 4 * kB);
    if (a == b && chance(70)) {
      dst_off = src_off >= span && chance(50) ? aligned_in(src_off - span)
                                              : round_up(src_off + span) + rand(4) * kB;
    }
    if (chance(5)) dst_off += 1 + rand(kB - 1);
    if (dst_off + span > kMaxSize) dst_off = (kMaxSize - std::min(span, kMaxSize)) / kB * kB;
    two_files("clone");
    want = model_.clone(a, src_off, b, dst_off, length);
    call = [&] { return outcome(fs().clone_range(ino_[a], src_off, ino_[b], dst_off, length)); };
  } else if (r < 76) {
    // Dedupe: mostly of ranges made equal first (a quarter of them then made to differ in one
    // byte), sometimes both ending at their files' EOF.
    src_off = aligned_in(size(a));
    dst_off = aligned_in(size(b));
    uint64_t avail = std::min(size(a) - src_off, size(b) > dst_off ? size(b) - dst_off : 0);
    bool to_eof = chance(20) && src_off < size(a) && dst_off + (size(a) - src_off) <= kMaxSize;
    if (to_eof) {
      length = size(a) - src_off;
    } else if (!chance(15)) {
      length = (1 + rand(std::max<uint64_t>(std::min<uint64_t>(avail / kB, 64), 1))) * kB;
    }
    bool apart = a != b || src_off + length <= dst_off || dst_off + length <= src_off;
    if (src_off + length <= size(a) && apart && chance(70)) {
      std::string data = model_.file[a].substr(src_off, length);
      if (chance(25)) data[rand(length)] ^= 0x5a;
      if (to_eof) {
        model_.file[b].resize(dst_off + length);
        REQUIRE(fs().setattr(ino_[b], size_attr(dst_off + length)));
      }
      model_.write(b, dst_off, data);
      REQUIRE(fs().write(ino_[b], dst_off, data.data(), length).value() == length);
      op << (to_eof ? "truncated, " : "") << "written to match, then ";
    }
    two_files("dedupe");
    want = model_.dedupe(a, src_off, b, dst_off, length);
    call = [&] { return outcome(fs().dedupe_range(ino_[a], src_off, ino_[b], dst_off, length)); };
  } else if (r < 84) {
    op << "unshare(f" << a << ", " << off << ", " << length << ")";
    call = [&] { return outcome(fs().unshare_range(ino_[a], off, length)); };
  } else {
    // Copy: half the time with equal offsets within their blocks, so that the middle is shared.
    src_off = pick_offset(size(a));
    dst_off = chance(50) ? aligned_in(size(b) + kB) + src_off % kB : pick_offset(size(b));
    if (chance(30) && size(a) > src_off) length = size(a) - src_off;
    if (dst_off >= kMaxSize) dst_off = 0;
    length = std::min(length, kMaxSize - dst_off);
    two_files("copy");
    want = model_.copy(a, src_off, b, dst_off, length);
    call = [&] { return outcome(fs().copy_range(ino_[a], src_off, ino_[b], dst_off, length)); };
  }
  recent_[ops_ % recent_.size()] = std::to_string(ops_) + ": " + op.str();
  INFO("op " << recent_[ops_ % recent_.size()]);
  REQUIRE(call() == want);
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
  std::string recent;
  for (uint64_t i = ops_ + 1; i <= ops_ + recent_.size(); i++)
    if (!recent_[i % recent_.size()].empty()) recent += "\n  " + recent_[i % recent_.size()];
  INFO("checkpoint after op " << ops_ << "; the last operations run:" << recent);
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
  fsx.run(5000);
}

TEST_CASE("a hundred thousand random file operations agree with the model", "[fs][fsx][slow]") {
  uint64_t seed = fsx_seed();
  INFO("seed " << seed << " (rerun with DAXFS_FSX_SEED=" << seed << ")");
  Fsx fsx(seed);
  fsx.run(100000);
}
