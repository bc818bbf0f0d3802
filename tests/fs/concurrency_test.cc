// Concurrency through the Filesystem API: many std::threads on one mounted filesystem, mixing
// I/O on private files, overwrites of one file in disjoint and overlapping ranges, truncate and
// punch racing I/O, clone/dedupe/unshare between two files in both directions while both are
// written, namespace churn in a shared directory, and readers of attributes and layout. Each
// thread runs a fixed number of iterations (no wall-clock bounds). Afterwards: no unexpected
// errno, per-file models match, remount keeps contents and sizes, fsck finds the device clean.
// Meant to be run under ThreadSanitizer too (docs/testing.md).
#include <fcntl.h>
#include <linux/falloc.h>
#include <sys/stat.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <cstring>
#include <functional>
#include <map>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "daxcore/iomap.h"
#include "tests/support/fs_fixture.h"

#ifdef DAXFS_HAVE_FSCK
#include "fs/fsck/fsck.h"
#include "fs/fsck/report.h"
#endif

using daxfs::Result;
using daxfs::Status;
using daxfs::fs::Filesystem;
using daxfs::fs::kBlockSize;
using daxfs::test::FsFixture;

namespace {

// Iteration counts: about 2 s in a debugoptimized build. ThreadSanitizer with -Dbuildtype=debug is
// about 60 times slower here, so it runs a quarter of them (about 25 s).
#if defined(__SANITIZE_THREAD__)
constexpr int kScale = 4;
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
constexpr int kScale = 4;
#else
constexpr int kScale = 1;
#endif
#else
constexpr int kScale = 1;
#endif
constexpr int kOwnIters = 6000 / kScale;
constexpr int kStripeIters = 6000 / kScale;
constexpr int kOverlapIters = 4000 / kScale;
constexpr int kTruncIters = 3000 / kScale;
constexpr int kPairIters = 2500 / kScale;
constexpr int kNsIters = 6000 / kScale;
constexpr int kReaderIters = 2500 / kScale;

constexpr uint64_t kPairBlocks = 64;   // P and Q: fixed size, whole stamped blocks
constexpr uint64_t kTruncBlocks = 32;  // T: at most this many blocks
constexpr uint64_t kOverlapBlocks = 32;
constexpr uint64_t kStripeBlocks = 16;  // per thread, in S
constexpr int kStripeThreads = 3;
constexpr int kOwnThreads = 3;
constexpr uint64_t kOwnMax = 512 * 1024;  // owned files stay below this

// Failures seen on worker threads (Catch2 assertions are for the main thread only).
class Errors {
 public:
  void add(const std::string& what) {
    std::lock_guard g(mu_);
    if (list_.size() < 50) list_.push_back(what);
    count_++;
  }
  // Records `what` unless `r` succeeded or failed with one of `allowed`. Returns r.ok().
  template <typename R>
  bool check(const R& r, const char* what, std::initializer_list<int> allowed = {}) {
    if (r.ok()) return true;
    for (int e : allowed)
      if (r.error() == e) return false;
    add(std::string(what) + ": " + std::strerror(r.error()));
    return false;
  }
  size_t count() {
    std::lock_guard g(mu_);
    return count_;
  }
  std::string summary() {
    std::lock_guard g(mu_);
    std::string s;
    for (auto& e : list_) s += e + "\n";
    return s;
  }

 private:
  std::mutex mu_;
  std::vector<std::string> list_;
  size_t count_ = 0;
};

// A whole block of one non-zero 64-bit stamp repeated.
void fill_block(char* b, uint64_t stamp) {
  for (size_t i = 0; i < kBlockSize; i += 8) memcpy(b + i, &stamp, 8);
}
// A block is consistent when it is all zeros or one stamp throughout (never a mix of two writes).
bool block_consistent(const char* b) {
  uint64_t first;
  memcpy(&first, b, 8);
  for (size_t i = 8; i < kBlockSize; i += 8)
    if (memcmp(b + i, &first, 8) != 0) return false;
  return true;
}
uint64_t stamp_of(int thread, uint64_t seq) { return (uint64_t(thread + 1) << 48) | (seq << 1) | 1; }

// Reads [0, blocks) of `ino` and reports blocks that are neither zero nor one stamp.
void check_blocks(Filesystem& fs, Errors& errs, uint64_t ino, uint64_t blocks, const char* name) {
  std::string buf(blocks * kBlockSize, '\0');
  auto n = fs.read(ino, 0, buf.size(), buf.data());
  if (!errs.check(n, name)) return;
  for (size_t b = 0; b + kBlockSize <= *n; b += kBlockSize)
    if (!block_consistent(buf.data() + b)) {
      errs.add(std::string(name) + ": torn block " + std::to_string(b / kBlockSize));
      return;
    }
}

std::string random_bytes(std::mt19937_64& rng, size_t n) {
  std::string s(n, '\0');
  for (auto& c : s) c = static_cast<char>(rng());
  return s;
}

daxfs::fs::SetAttr size_attr(uint64_t size) {
  daxfs::fs::SetAttr a;
  a.valid = daxfs::fs::SetAttr::kSize;
  a.size = size;
  return a;
}

// Name -> (size, contents) of every regular file in `dir`.
std::map<std::string, std::string> snapshot(Filesystem& fs, uint64_t dir, const std::string& prefix) {
  std::map<std::string, std::string> out;
  std::vector<std::pair<std::string, uint64_t>> entries;
  REQUIRE(fs.readdir(dir, 0, [&](const daxfs::fs::DirEntry& e) {
    if (e.name != "." && e.name != "..") entries.emplace_back(std::string(e.name), e.ino);
    return true;
  }));
  for (auto& [name, ino] : entries) {
    auto st = fs.getattr(ino);
    REQUIRE(st);
    if (S_ISDIR(st->st_mode)) {
      auto sub = snapshot(fs, ino, prefix + name + "/");
      out.insert(sub.begin(), sub.end());
      continue;
    }
    std::string data(static_cast<size_t>(st->st_size), '\0');
    auto n = fs.read(ino, 0, data.size(), data.data());
    REQUIRE(n);
    REQUIRE(*n == data.size());
    out[prefix + name] = std::to_string(st->st_size) + ":" + data;
  }
  return out;
}

}  // namespace

TEST_CASE("threads doing I/O, reflink, truncate and namespace changes leave a consistent filesystem",
          "[fs][concurrency]") {
  FsFixture f(256ULL << 20);
  Filesystem& fs = f.fs();
  Errors errs;
  const uint64_t root = f.root();

  // Files each owned by one writer thread: contents follow a model exactly.
  std::vector<uint64_t> own(kOwnThreads);
  std::vector<std::string> own_model(kOwnThreads);
  for (int i = 0; i < kOwnThreads; i++) own[i] = f.make_file(root, "own" + std::to_string(i));
  // S: one file, each stripe thread owns a disjoint range of it.
  uint64_t s = f.make_file(root, "S");
  std::vector<std::string> stripe_model(kStripeThreads, std::string(kStripeBlocks * kBlockSize, '\0'));
  REQUIRE(fs.fallocate(s, 0, 0, kStripeThreads * kStripeBlocks * kBlockSize));
  // O: one file written by two threads in overlapping whole-block ranges.
  uint64_t o = f.make_file(root, "O");
  // T: written, truncated and punched at once.
  uint64_t t = f.make_file(root, "T");
  // P and Q: fixed-size files of stamped blocks, cloned/deduped/unshared both ways while written.
  uint64_t p = f.make_file(root, "P"), q = f.make_file(root, "Q");
  {
    std::string init(kPairBlocks * kBlockSize, '\0');
    for (uint64_t b = 0; b < kPairBlocks; b++) fill_block(init.data() + b * kBlockSize, stamp_of(99, b));
    REQUIRE(fs.write(p, 0, init.data(), init.size()).value() == init.size());
    REQUIRE(fs.write(q, 0, init.data(), init.size()).value() == init.size());
  }
  uint64_t ns = fs.mkdir(root, "ns", 0755, {}).value().st_ino;
  const std::vector<uint64_t> all_files = {own[0], own[1], own[2], s, o, t, p, q};

  std::vector<std::thread> threads;
  std::atomic<bool> go{false};
  auto spawn = [&](std::function<void()> body) {
    threads.emplace_back([&go, body = std::move(body)] {
      while (!go.load()) std::this_thread::yield();
      body();
    });
  };

  // Private files: random writes, appends, truncates, punches and same-file clones; every read
  // must equal the model.
  for (int i = 0; i < kOwnThreads; i++)
    spawn([&, i] {
      std::mt19937_64 rng(100 + i);
      std::string& m = own_model[i];
      uint64_t ino = own[i];
      for (int it = 0; it < kOwnIters; it++) {
        int op = static_cast<int>(rng() % 10);
        if (op <= 2) {  // overwrite/extend at a random offset
          uint64_t off = rng() % (kOwnMax / 2);
          std::string d = random_bytes(rng, 1 + rng() % 20000);
          if (errs.check(fs.write(ino, off, d.data(), d.size()), "own write")) {
            if (m.size() < off + d.size()) m.resize(off + d.size(), '\0');
            m.replace(off, d.size(), d);
          }
        } else if (op == 3) {  // append
          if (m.size() > kOwnMax - 70000) continue;
          std::string d = random_bytes(rng, 1 + rng() % 65536);
          if (errs.check(fs.write(ino, m.size(), d.data(), d.size()), "own append")) m += d;
        } else if (op == 4 && it % 5 == 0) {  // truncate, down or up
          uint64_t size = rng() % (kOwnMax / 2);
          if (errs.check(fs.setattr(ino, size_attr(size)), "own truncate")) m.resize(size, '\0');
        } else if (op == 5) {  // punch a hole
          uint64_t off = rng() % (kOwnMax / 2), len = 1 + rng() % 40000;
          if (errs.check(fs.fallocate(ino, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, off, len), "own punch") &&
              off < m.size())
            std::fill(m.begin() + off, m.begin() + std::min<uint64_t>(m.size(), off + len), '\0');
        } else if (op == 6) {  // clone a block range to a disjoint place in the same file
          uint64_t blocks = m.size() / kBlockSize;
          if (blocks < 4) continue;
          uint64_t len = 1 + rng() % 2, src = rng() % (blocks - len);
          uint64_t dst = src + len + rng() % 8;
          if (errs.check(fs.clone_range(ino, src * kBlockSize, ino, dst * kBlockSize, len * kBlockSize),
                         "own clone")) {
            std::string piece = m.substr(src * kBlockSize, len * kBlockSize);
            if (m.size() < (dst + len) * kBlockSize) m.resize((dst + len) * kBlockSize, '\0');
            m.replace(dst * kBlockSize, piece.size(), piece);
          }
        } else {  // read back a random range
          if (m.empty()) continue;
          uint64_t off = rng() % m.size();
          size_t n = 1 + rng() % 70000;
          std::string got(n, '\0');
          auto r = fs.read(ino, off, n, got.data());
          if (!errs.check(r, "own read")) continue;
          size_t want = std::min<uint64_t>(n, m.size() - off);
          if (*r != want || memcmp(got.data(), m.data() + off, want) != 0)
            errs.add("own" + std::to_string(i) + ": read at " + std::to_string(off) + " differs from the model");
        }
      }
    });

  // S: disjoint ranges of one file, unaligned writes; each thread checks its own range.
  for (int k = 0; k < kStripeThreads; k++)
    spawn([&, k] {
      std::mt19937_64 rng(200 + k);
      std::string& m = stripe_model[k];
      const uint64_t base = k * kStripeBlocks * kBlockSize;
      for (int it = 0; it < kStripeIters; it++) {
        uint64_t off = rng() % m.size();
        if (rng() % 3 != 0) {
          std::string d = random_bytes(rng, 1 + rng() % std::min<uint64_t>(m.size() - off, 9000));
          if (errs.check(fs.write(s, base + off, d.data(), d.size()), "stripe write")) m.replace(off, d.size(), d);
        } else {
          size_t n = 1 + rng() % (m.size() - off);
          std::string got(n, '\0');
          auto r = fs.read(s, base + off, n, got.data());
          if (errs.check(r, "stripe read") && (*r != n || memcmp(got.data(), m.data() + off, n) != 0))
            errs.add("S stripe " + std::to_string(k) + ": read differs from the model");
        }
      }
    });

  // O: two writers of overlapping whole-block ranges and a reader checking blocks are never torn.
  for (int k = 0; k < 2; k++)
    spawn([&, k] {
      std::mt19937_64 rng(300 + k);
      std::string buf(8 * kBlockSize, '\0');
      for (int it = 0; it < kOverlapIters; it++) {
        uint64_t n = 1 + rng() % 8, first = rng() % (kOverlapBlocks - n + 1);
        for (uint64_t b = 0; b < n; b++) fill_block(buf.data() + b * kBlockSize, stamp_of(10 + k, it));
        errs.check(fs.write(o, first * kBlockSize, buf.data(), n * kBlockSize), "overlap write");
      }
    });
  spawn([&] {
    for (int it = 0; it < kOverlapIters / 2; it++) check_blocks(fs, errs, o, kOverlapBlocks, "O read");
  });

  // T: a writer, a truncater and a puncher racing, and a reader checking blocks are never torn.
  spawn([&] {
    std::mt19937_64 rng(400);
    std::string buf(4 * kBlockSize, '\0');
    for (int it = 0; it < kTruncIters; it++) {
      uint64_t n = 1 + rng() % 4, first = rng() % (kTruncBlocks - n + 1);
      for (uint64_t b = 0; b < n; b++) fill_block(buf.data() + b * kBlockSize, stamp_of(20, it));
      errs.check(fs.write(t, first * kBlockSize, buf.data(), n * kBlockSize), "T write");
    }
  });
  spawn([&] {
    std::mt19937_64 rng(401);
    for (int it = 0; it < kTruncIters; it++)
      errs.check(fs.setattr(t, size_attr((rng() % (kTruncBlocks + 1)) * kBlockSize)), "T truncate");
  });
  spawn([&] {
    std::mt19937_64 rng(402);
    for (int it = 0; it < kTruncIters; it++) {
      uint64_t n = 1 + rng() % 6, first = rng() % kTruncBlocks;
      int mode = FALLOC_FL_KEEP_SIZE | (it % 4 == 3 ? FALLOC_FL_ZERO_RANGE : FALLOC_FL_PUNCH_HOLE);
      errs.check(fs.fallocate(t, mode, first * kBlockSize, n * kBlockSize), "T punch/zero");
    }
  });
  spawn([&] {
    for (int it = 0; it < kTruncIters / 2; it++) check_blocks(fs, errs, t, kTruncBlocks, "T read");
  });

  // P and Q: writers on both, clones and dedupes P->Q and Q->P (inode pairs locked in both
  // orders), unshares, and a reader of both.
  for (int k = 0; k < 2; k++)
    spawn([&, k] {
      std::mt19937_64 rng(500 + k);
      uint64_t ino = k == 0 ? p : q;
      std::string buf(4 * kBlockSize, '\0');
      for (int it = 0; it < kPairIters; it++) {
        uint64_t n = 1 + rng() % 4, first = rng() % (kPairBlocks - n + 1);
        for (uint64_t b = 0; b < n; b++) fill_block(buf.data() + b * kBlockSize, stamp_of(30 + k, it));
        errs.check(fs.write(ino, first * kBlockSize, buf.data(), n * kBlockSize), "pair write");
      }
    });
  for (int k = 0; k < 2; k++)
    spawn([&, k] {
      std::mt19937_64 rng(600 + k);
      uint64_t src = k == 0 ? p : q, dst = k == 0 ? q : p;
      for (int it = 0; it < kPairIters; it++) {
        uint64_t n = 1 + rng() % 8, sf = rng() % (kPairBlocks - n + 1), df = rng() % (kPairBlocks - n + 1);
        switch (it % 4) {
          case 0:
          case 1:
            errs.check(fs.clone_range(src, sf * kBlockSize, dst, df * kBlockSize, n * kBlockSize), "clone");
            break;
          case 2:
            errs.check(fs.dedupe_range(src, sf * kBlockSize, dst, df * kBlockSize, n * kBlockSize), "dedupe");
            break;
          case 3:
            errs.check(fs.unshare_range(dst, df * kBlockSize, n * kBlockSize), "unshare");
            break;
        }
      }
    });
  spawn([&] {
    for (int it = 0; it < kPairIters / 2; it++) {
      check_blocks(fs, errs, p, kPairBlocks, "P read");
      check_blocks(fs, errs, q, kPairBlocks, "Q read");
      // A write-ready mapping (CoW of shared blocks) changes no bytes.
      uint64_t ino = it % 2 ? p : q, off = (it % (kPairBlocks - 1)) * kBlockSize;
      auto m = fs.iomap_begin(ino, off, 2 * kBlockSize, daxfs::dax::kIomapWrite);
      if (errs.check(m, "iomap_begin write")) errs.check(fs.iomap_end(ino, m->map, 0, daxfs::dax::kIomapWrite), "iomap_end");
    }
  });

  // Namespace churn in ns/: create (and write), unlink, rename, lookup+read. Races make ENOENT
  // and EEXIST legitimate; nothing else is.
  for (int k = 0; k < 2; k++)
    spawn([&, k] {
      std::mt19937_64 rng(700 + k);
      auto name = [&] { return "n" + std::to_string(rng() % 12); };
      for (int it = 0; it < kNsIters; it++) {
        switch (rng() % 5) {
          case 0: {
            auto st = fs.mknod(ns, name(), S_IFREG | 0644, 0, {});
            if (!errs.check(st, "ns mknod", {EEXIST})) break;
            std::string d(1 + rng() % 9000, static_cast<char>('a' + k));
            errs.check(fs.write(st->st_ino, 0, d.data(), d.size()), "ns write");
            fs.forget(st->st_ino, 1);
            break;
          }
          case 1:
            errs.check(fs.unlink(ns, name()), "ns unlink", {ENOENT});
            break;
          case 2:
            errs.check(fs.rename(ns, name(), ns, name(), 0), "ns rename", {ENOENT});
            break;
          default: {
            auto st = fs.lookup(ns, name());
            if (!errs.check(st, "ns lookup", {ENOENT})) break;
            std::string buf(16384, '\0');
            auto r = fs.read(st->st_ino, 0, buf.size(), buf.data());
            // Each file holds one thread's letter throughout (or is still empty).
            if (errs.check(r, "ns read") && *r > 0 &&
                buf.find_first_not_of(buf[0], 0) < *r)
              errs.add("ns: a file mixes two writers' bytes");
            errs.check(fs.getattr(st->st_ino), "ns getattr");
            fs.forget(st->st_ino, 1);
          }
        }
      }
    });

  // Readers of attributes and layout over every file.
  spawn([&] {
    for (int it = 0; it < kReaderIters; it++) {
      uint64_t ino = all_files[it % all_files.size()];
      errs.check(fs.getattr(ino), "getattr");
      struct statvfs sv = fs.statfs();
      if (sv.f_bfree > sv.f_blocks) errs.add("statfs: more free blocks than blocks");
      errs.check(fs.fiemap(ino, 0, 64), "fiemap");
      (void)fs.fsmap(0, UINT64_MAX, 0, 256);
      uint32_t ops = it % 2 ? daxfs::dax::kIomapRead : daxfs::dax::kIomapReport;
      auto m = fs.iomap_begin(ino, (it % 16) * kBlockSize, 4 * kBlockSize, ops);
      if (errs.check(m, "iomap_begin")) errs.check(fs.iomap_end(ino, m->map, 0, ops), "iomap_end");
      errs.check(fs.lseek(ino, 0, SEEK_DATA), "lseek", {ENXIO});
      std::vector<uint64_t> seen;
      errs.check(fs.readdir(ns, 0, [&](const daxfs::fs::DirEntry& e) {
                   seen.push_back(e.ino);
                   return true;
                 }),
                 "readdir");
    }
  });

  go = true;
  for (auto& th : threads) th.join();
  INFO(errs.summary());
  REQUIRE(errs.count() == 0);

  // Final contents: the models, and no torn blocks where the content is not deterministic.
  for (int i = 0; i < kOwnThreads; i++) {
    INFO("own" << i);
    CHECK(f.read_all(own[i]) == own_model[i]);
  }
  std::string s_model;
  for (auto& m : stripe_model) s_model += m;
  CHECK(f.read_all(s) == s_model);
  CHECK(f->getattr(p)->st_size == kPairBlocks * kBlockSize);
  CHECK(f->getattr(q)->st_size == kPairBlocks * kBlockSize);
  for (auto [ino, blocks] : {std::pair{o, kOverlapBlocks}, {t, kTruncBlocks}, {p, kPairBlocks}, {q, kPairBlocks}})
    check_blocks(fs, errs, ino, blocks, "final read");
  INFO(errs.summary());
  REQUIRE(errs.count() == 0);

  // Remount: the same names, sizes and bytes.
  auto before = snapshot(fs, root, "");
  f.unmount();
#ifdef DAXFS_HAVE_FSCK
  {
    auto report = daxfs::fsck::run_fsck({f.path(), daxfs::fsck::Mode::kCheck});
    INFO(daxfs::fsck::format_text(report) << report.error);
    CHECK(report.exit_code == daxfs::fsck::kExitClean);
    CHECK(report.clean);
  }
#endif
  f.mount();
  auto after = snapshot(f.fs(), f.root(), "");
  CHECK(after.size() == before.size());
  CHECK(after == before);
  for (int i = 0; i < kOwnThreads; i++) CHECK(f.read_all(own[i]) == own_model[i]);
}
