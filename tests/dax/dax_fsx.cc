// dax_fsx: an fsx-style model test of one file on a daxfs mount, mixing system-call I/O with
// mapped loads and stores through the client library (daxfs_mmap: the DAX layer on a DAX file,
// the kernel's page-cache mapping otherwise). Every read, mapped load and touch of a long-lived
// mapping is checked against an in-memory model of the file's bytes and size; touches of pages
// wholly past EOF must raise SIGBUS and touches inside EOF must not. The first mismatch ends the
// run with the op number, the op, the offset and expected vs got, after the last ops done.
//   dax_fsx [--seed N] [--ops N] [--size BYTES] [--skip KIND]... [--check-every N] [--trace] FILE
// Built twice: dax_fsx calls the client library; dax_fsx_plain (DAX_FSX_PLAIN) calls plain
// mmap/munmap/msync, ioctl and fallocate, for running under `daxfsctl run` (the preload shim
// routes them). Clone (FICLONERANGE), dedupe (FIDEDUPERANGE), collapse and insert range are
// among the operations: the calls the FUSE kernel never forwards, answered by the DAX layer's
// client side (daxfs_ioctl/daxfs_fallocate, or the shim's ioctl/fallocate).
#include <fcntl.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <setjmp.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cinttypes>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <random>
#include <set>
#include <string>
#include <vector>

#ifndef DAX_FSX_PLAIN
#include "daxcore/client/daxfs_client.h"
#else
#include <climits>

#include "tests/dax/proc_maps.h"
namespace {
std::string g_file_real;  // the file's own path: a mapping backed by it is the kernel's
int daxfs_client_init() { return 0; }
void* daxfs_mmap(void* a, size_t n, int prot, int flags, int fd, off_t off) { return mmap(a, n, prot, flags, fd, off); }
int daxfs_munmap(void* a, size_t n) { return munmap(a, n); }
int daxfs_msync(void* a, size_t n, int flags) { return msync(a, n, flags); }
int daxfs_ioctl(int fd, unsigned long req, void* arg) { return ioctl(fd, req, arg); }
int daxfs_fallocate(int fd, int mode, off_t off, off_t len) { return fallocate(fd, mode, off, len); }
int daxfs_flush(const void* a, size_t n) {
  uintptr_t p = reinterpret_cast<uintptr_t>(a), start = p & ~uintptr_t{4095};
  return msync(reinterpret_cast<void*>(start), n + (p - start), MS_SYNC);
}
// DAX when /proc/self/maps backs the address by anything but the file itself (the device, or
// the layer's zero pages and placeholders).
int daxfs_is_dax(const void* addr) {
  auto path = daxfs::test::mapping_path(addr);
  return path && *path != g_file_real;
}
}  // namespace
#endif

namespace {

constexpr uint64_t kPage = 4096;
constexpr size_t kHistory = 24;  // ops printed before a failure

// The operation kinds, as named in the log and in --skip.
enum Kind {
  kWrite, kRead, kMapStore, kMapLoad, kTruncate, kPunch, kZero, kPrealloc, kCopy, kCopyFrom, kTouch,
  kClone, kDedupe, kCollapse, kInsert, kKinds
};
const char* const kKindNames[kKinds] = {"pwrite",   "pread",  "mapstore", "mapload", "truncate",
                                        "punch",    "zerorange", "falloc", "copy",  "copyfrom",
                                        "touch",    "clone",  "dedupe",   "collapse", "insert"};
const int kWeights[kKinds] = {14, 12, 12, 12, 7, 6, 6, 5, 5, 4, 10, 5, 3, 3, 3};

struct Options {
  uint64_t seed = 0;
  long ops = 1000;
  uint64_t size = 1 << 20;
  std::set<std::string> skip;
  bool trace = false;  // every operation to stderr as it runs
  long check_every = 250;  // a full check (pread and the long-lived mapping) every N ops
  std::string file;
};

// The state the SIGBUS handler shares with the touch that armed it.
sigjmp_buf g_jump;
volatile sig_atomic_t g_armed = 0;
void* volatile g_bus_addr = nullptr;
volatile int g_bus_code = 0;
volatile long g_op = 0;  // for the message of an unexpected SIGBUS

void on_bus(int, siginfo_t* si, void*) {
  if (g_armed) {
    g_armed = 0;
    g_bus_addr = si->si_addr;
    g_bus_code = si->si_code;
    siglongjmp(g_jump, 1);
  }
  char buf[128];
  int n = snprintf(buf, sizeof buf, "dax_fsx: op %ld: unexpected SIGBUS code %d at %p\n", static_cast<long>(g_op),
                   si->si_code, si->si_addr);
  (void)!write(2, buf, static_cast<size_t>(n));
  _exit(3);
}

class Fsx {
 public:
  explicit Fsx(const Options& o) : opt_(o), rng_(o.seed) {}

  int run() {
    fd_ = open(opt_.file.c_str(), O_RDWR | O_CREAT | O_TRUNC, 0644);
    if (fd_ < 0) return sys_fail("open " + opt_.file);
    src_path_ = opt_.file + ".src";
    src_fd_ = open(src_path_.c_str(), O_RDWR | O_CREAT | O_TRUNC, 0644);
    if (src_fd_ < 0) return sys_fail("open " + src_path_);
    // The second file, source of copyfrom: fixed random bytes, half the maximum size.
    src_.resize(opt_.size / 2);
    for (auto& c : src_) c = static_cast<char>(rng_());
    if (pwrite(src_fd_, src_.data(), src_.size(), 0) != static_cast<ssize_t>(src_.size()))
      return sys_fail("pwrite " + src_path_);

    map_len_ = round_up(opt_.size);
    long_map_ = static_cast<char*>(daxfs_mmap(nullptr, map_len_, PROT_READ | PROT_WRITE, MAP_SHARED, fd_, 0));
    if (long_map_ == MAP_FAILED) return sys_fail("daxfs_mmap of the long-lived mapping");
    long_dax_ = daxfs_is_dax(long_map_) != 0;

    std::discrete_distribution<int> pick(std::begin(kWeights), std::end(kWeights));
    for (op_ = 1; op_ <= opt_.ops; op_++) {
      g_op = op_;
      int k;
      do k = pick(rng_); while (opt_.skip.count(kKindNames[k]));
      int r = do_op(static_cast<Kind>(k));
      if (r != 0) return r;
      // A random touch of the long-lived mapping between operations.
      if (!opt_.skip.count("touch") && (r = touch(rand_below(map_len_), chance(4))) != 0) return r;
      if (op_ % opt_.check_every == 0 && (r = check_all()) != 0) return r;
    }
    op_ = opt_.ops;
    int r = check_all();
    if (r != 0) return r;
    daxfs_munmap(long_map_, map_len_);
    close(fd_);
    close(src_fd_);
    unlink(src_path_.c_str());
    printf("dax_fsx: seed %" PRIu64 ": %ld ops ok, final size %zu\n", opt_.seed, opt_.ops, model_.size());
    printf("dax_fsx: mappings %ld dax, %ld kernel; long-lived mapping %s; sigbus %ld\n", dax_maps_, kernel_maps_,
           long_dax_ ? "dax" : "kernel", sigbus_);
    // "yes" when every mapping went through the DAX layer, "no" when none did.
    long dax = dax_maps_ + (long_dax_ ? 1 : 0), all = dax_maps_ + kernel_maps_ + 1;
    printf("exercised dax: %s\n", dax == all ? "yes" : dax == 0 ? "no" : "partly");
    return 0;
  }

 private:
  static uint64_t round_up(uint64_t x) { return (x + kPage - 1) / kPage * kPage; }
  uint64_t rand_below(uint64_t n) { return n ? rng_() % n : 0; }
  bool chance(int one_in) { return rng_() % static_cast<uint64_t>(one_in) == 0; }

  // An offset in [0, limit): page aligned a quarter of the time.
  uint64_t offset(uint64_t limit) {
    uint64_t off = rand_below(limit);
    return chance(4) ? off / kPage * kPage : off;
  }
  // A length of 1..64 KiB (sometimes whole pages), cut at `limit - off`.
  uint64_t length(uint64_t off, uint64_t limit) {
    uint64_t len = chance(4) ? (1 + rand_below(16)) * kPage : 1 + rand_below(64 << 10);
    return std::min(len, limit - off);
  }

  void log(const char* fmt, ...) {
    char buf[160];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    last_ = std::string("op ") + std::to_string(op_) + ": " + buf;
    history_.push_back(last_);
    if (opt_.trace) fprintf(stderr, "%s\n", last_.c_str());
    if (history_.size() > kHistory) history_.pop_front();
  }
  void print_history() {
    fprintf(stderr, "dax_fsx: seed %" PRIu64 "; the last operations (model size now %zu):\n", opt_.seed,
            model_.size());
    for (const auto& h : history_) fprintf(stderr, "  %s\n", h.c_str());
    fprintf(stderr, "dax_fsx: rerun with --seed %" PRIu64 " --ops %ld --size %" PRIu64 "\n", opt_.seed, op_,
            opt_.size);
  }
  int fail(const char* fmt, ...) {
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    fprintf(stderr, "dax_fsx: FAIL at %s: %s\n", last_.c_str(), buf);
    print_history();
    return 1;
  }
  int sys_fail(const std::string& what) {
    int e = errno;
    fprintf(stderr, "dax_fsx: FAIL at %s: %s: %s\n", last_.empty() ? "setup" : last_.c_str(), what.c_str(),
            strerror(e));
    if (!history_.empty()) print_history();
    return 2;
  }

  // Compares `got` (n bytes read at file offset `off`) with the model.
  int compare(const char* how, uint64_t off, const char* got, size_t n) {
    for (size_t i = 0; i < n; i++) {
      char want = off + i < model_.size() ? model_[off + i] : 0;
      if (got[i] != want) {
        size_t bad = 0;
        while (i + bad < n && got[i + bad] != (off + i + bad < model_.size() ? model_[off + i + bad] : 0)) bad++;
        return fail("%s: offset %" PRIu64 " (0x%" PRIx64 "): expected 0x%02x got 0x%02x (%zu bad bytes from there)",
                    how, off + i, off + i, static_cast<unsigned char>(want), static_cast<unsigned char>(got[i]), bad);
      }
    }
    return 0;
  }

  void model_write(uint64_t off, const std::string& data) {
    if (off + data.size() > model_.size()) model_.resize(off + data.size());
    model_.replace(off, data.size(), data);
  }
  void model_zero(uint64_t off, uint64_t len) {
    if (off < model_.size()) std::fill_n(model_.begin() + static_cast<ptrdiff_t>(off), std::min(len, model_.size() - off), '\0');
  }
  std::string random_bytes(size_t n) {
    std::string s(n, '\0');
    // A run counting up from a random byte: shifted or stale data is easy to recognize.
    unsigned char base = static_cast<unsigned char>(rng_());
    for (size_t i = 0; i < n; i++) s[i] = static_cast<char>(base + (i % 251) + 1);
    return s;
  }

  int check_size() {
    struct stat st;
    if (fstat(fd_, &st) != 0) return sys_fail("fstat");
    if (static_cast<uint64_t>(st.st_size) != model_.size())
      return fail("size: expected %zu got %" PRIu64, model_.size(), static_cast<uint64_t>(st.st_size));
    return 0;
  }

  // Maps [off, off + len) of the file (page-aligned around it) with daxfs_mmap; counts DAX.
  char* map_range(uint64_t off, uint64_t len, int prot, uint64_t* base, uint64_t* span) {
    *base = off / kPage * kPage;
    *span = round_up(off + len) - *base;
    void* p = daxfs_mmap(nullptr, *span, prot, MAP_SHARED, fd_, static_cast<off_t>(*base));
    if (p == MAP_FAILED) return nullptr;
    (daxfs_is_dax(p) ? dax_maps_ : kernel_maps_)++;
    return static_cast<char*>(p);
  }

  int do_op(Kind k) {
    uint64_t max = opt_.size, size = model_.size();
    switch (k) {
      case kWrite: {
        uint64_t off = offset(max), len = length(off, max);
        log("pwrite off %" PRIu64 " len %" PRIu64, off, len);
        std::string d = random_bytes(len);
        if (pwrite(fd_, d.data(), len, static_cast<off_t>(off)) != static_cast<ssize_t>(len)) return sys_fail("pwrite");
        model_write(off, d);
        return check_size();
      }
      case kRead: {
        uint64_t off = offset(max), len = length(off, max);
        log("pread off %" PRIu64 " len %" PRIu64, off, len);
        std::string got(len, '\0');
        ssize_t n = pread(fd_, got.data(), len, static_cast<off_t>(off));
        if (n < 0) return sys_fail("pread");
        uint64_t want = off < size ? std::min(len, size - off) : 0;
        if (static_cast<uint64_t>(n) != want) return fail("pread: expected %" PRIu64 " bytes got %zd", want, n);
        return compare("pread", off, got.data(), static_cast<size_t>(n));
      }
      case kMapStore: {
        if (size == 0) return 0;
        uint64_t off = offset(size), len = length(off, size);
        int sync = static_cast<int>(rand_below(3));  // 0 none, 1 msync, 2 daxfs_flush
        log("mapstore off %" PRIu64 " len %" PRIu64 " %s", off, len, sync == 0 ? "" : sync == 1 ? "msync" : "flush");
        uint64_t base, span;
        char* p = map_range(off, len, PROT_READ | PROT_WRITE, &base, &span);
        if (!p) return sys_fail("daxfs_mmap");
        std::string d = random_bytes(len);
        memcpy(p + (off - base), d.data(), len);
        if (sync == 1 && daxfs_msync(p, span, MS_SYNC) != 0) return sys_fail("daxfs_msync");
        if (sync == 2 && daxfs_flush(p + (off - base), len) != 0) return sys_fail("daxfs_flush");
        if (daxfs_munmap(p, span) != 0) return sys_fail("daxfs_munmap");
        model_write(off, d);
        return check_size();
      }
      case kMapLoad: {
        if (size == 0) return 0;
        uint64_t off = offset(size), len = length(off, size);
        log("mapload off %" PRIu64 " len %" PRIu64, off, len);
        uint64_t base, span;
        char* p = map_range(off, len, PROT_READ, &base, &span);
        if (!p) return sys_fail("daxfs_mmap");
        std::string got(p + (off - base), len);
        // The tail of the EOF page, when mapped, reads as zeros.
        std::string tail;
        if (size < base + span) tail.assign(p + (size - base), base + span - size);
        daxfs_munmap(p, span);
        if (int r = compare("mapload", off, got.data(), len)) return r;
        return compare("mapload past EOF in the EOF page", size, tail.data(), tail.size());
      }
      case kTruncate: {
        uint64_t to = chance(3) ? rand_below(max + 1) / kPage * kPage : rand_below(max + 1);
        log("truncate %" PRIu64 " -> %" PRIu64, size, to);
        if (ftruncate(fd_, static_cast<off_t>(to)) != 0) return sys_fail("ftruncate");
        model_.resize(to);
        if (int r = check_size()) return r;
        return touch_eof();
      }
      case kPunch: {
        uint64_t off = offset(max), len = length(off, max);
        log("punch off %" PRIu64 " len %" PRIu64, off, len);
        if (fallocate(fd_, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, static_cast<off_t>(off), static_cast<off_t>(len)) != 0)
          return sys_fail("fallocate punch");
        model_zero(off, len);
        return check_size();
      }
      case kZero: {
        uint64_t off = offset(max), len = length(off, max);
        bool keep = chance(2);
        log("zerorange off %" PRIu64 " len %" PRIu64 "%s", off, len, keep ? " keep_size" : "");
        if (fallocate(fd_, FALLOC_FL_ZERO_RANGE | (keep ? FALLOC_FL_KEEP_SIZE : 0), static_cast<off_t>(off),
                      static_cast<off_t>(len)) != 0)
          return sys_fail("fallocate zero range");
        if (!keep && off + len > model_.size()) model_.resize(off + len);
        model_zero(off, len);
        if (int r = check_size()) return r;
        return touch_eof();
      }
      case kPrealloc: {
        uint64_t off = offset(max), len = length(off, max);
        bool keep = !chance(4);
        log("falloc off %" PRIu64 " len %" PRIu64 "%s", off, len, keep ? " keep_size" : "");
        if (fallocate(fd_, keep ? FALLOC_FL_KEEP_SIZE : 0, static_cast<off_t>(off), static_cast<off_t>(len)) != 0)
          return sys_fail("fallocate");
        if (!keep && off + len > model_.size()) model_.resize(off + len);
        if (int r = check_size()) return r;
        return touch_eof();
      }
      case kClone:
        return clone_op(max);
      case kDedupe:
        return dedupe_op();
      case kCollapse:
        return shift_op(true, max);
      case kInsert:
        return shift_op(false, max);
      case kCopy: {
        // Within the file: the ranges must not overlap (EINVAL otherwise).
        if (size < 2) return 0;
        uint64_t src = offset(size), len = length(src, size);
        uint64_t dst = offset(max);
        if (dst + len > max) len = max - dst;
        if (len == 0 || (dst < src + len && src < dst + len)) return 0;
        log("copy src %" PRIu64 " dst %" PRIu64 " len %" PRIu64, src, dst, len);
        return copy_range(fd_, model_, src, dst, len);
      }
      case kCopyFrom: {
        uint64_t src = offset(src_.size()), len = length(src, src_.size());
        uint64_t dst = offset(max);
        if (dst + len > max) len = max - dst;
        if (len == 0) return 0;
        log("copyfrom src %" PRIu64 " dst %" PRIu64 " len %" PRIu64, src, dst, len);
        return copy_range(src_fd_, src_, src, dst, len);
      }
      case kTouch: {
        uint64_t off = rand_below(map_len_);
        bool store = chance(2);
        return touch(off, store);
      }
      case kKinds:
        break;
    }
    return 0;
  }

  // copy_file_range from `in` (whose bytes are `in_model`) into the file; short copies continue.
  int copy_range(int in, const std::string& in_model, uint64_t src, uint64_t dst, uint64_t len) {
    std::string data = in_model.substr(src, std::min<uint64_t>(len, in_model.size() - src));
    uint64_t done = 0;
    while (done < len) {
      off64_t s = static_cast<off64_t>(src + done), d = static_cast<off64_t>(dst + done);
      ssize_t n = copy_file_range(in, &s, fd_, &d, len - done, 0);
      if (n < 0) return sys_fail("copy_file_range");
      if (n == 0) break;
      done += static_cast<uint64_t>(n);
    }
    if (done != data.size()) return fail("copy_file_range: expected %zu bytes got %" PRIu64, data.size(), done);
    model_write(dst, data);
    return check_size();
  }

  // FICLONERANGE of whole blocks, from the second file or from elsewhere in this one (ranges
  // that do not overlap), into this file: the model copies the bytes; the blocks are shared.
  int clone_op(uint64_t max) {
    bool self = chance(2);
    const std::string& from = self ? model_ : src_;
    uint64_t blocks_in = from.size() / kPage;
    if (blocks_in == 0) return 0;
    uint64_t sb = rand_below(blocks_in), n = 1 + rand_below(std::min<uint64_t>(16, blocks_in - sb));
    uint64_t db = rand_below(max / kPage);
    n = std::min(n, max / kPage - db);
    if (n == 0 || (self && db < sb + n && sb < db + n)) return 0;
    uint64_t src = sb * kPage, dst = db * kPage, len = n * kPage;
    log("clone %s src %" PRIu64 " dst %" PRIu64 " len %" PRIu64, self ? "self" : "from src", src, dst, len);
    file_clone_range r{};
    r.src_fd = static_cast<int64_t>(self ? fd_ : src_fd_);
    r.src_offset = src, r.src_length = len, r.dest_offset = dst;
    if (daxfs_ioctl(fd_, FICLONERANGE, &r) != 0) return sys_fail("FICLONERANGE");
    model_write(dst, from.substr(src, len));
    last_clone_ = {src, dst, len, self};
    return check_size();
  }

  // FIDEDUPERANGE from the second file (or this one) into this file, within both EOFs: "same"
  // exactly when the model says the bytes are equal (often: the range of the last clone).
  int dedupe_op() {
    uint64_t size = model_.size();
    bool again = last_clone_.len && chance(2);
    bool self = again ? last_clone_.self : chance(3);
    const std::string& from = self ? model_ : src_;
    uint64_t src, dst, len;
    if (again) {
      src = last_clone_.src, dst = last_clone_.dst, len = last_clone_.len;
    } else {
      if (from.size() < kPage || size < kPage) return 0;
      src = rand_below(from.size() / kPage) * kPage, dst = rand_below(size / kPage) * kPage;
      len = (1 + rand_below(4)) * kPage;
    }
    if (src + len > from.size() || dst + len > size || (self && dst < src + len && src < dst + len)) return 0;
    bool equal = from.compare(src, len, model_, dst, len) == 0;
    log("dedupe %s src %" PRIu64 " dst %" PRIu64 " len %" PRIu64 " (%s)", self ? "self" : "from src", src, dst, len,
        equal ? "equal" : "differs");
    std::vector<char> buf(sizeof(file_dedupe_range) + sizeof(file_dedupe_range_info));
    auto* r = reinterpret_cast<file_dedupe_range*>(buf.data());
    r->src_offset = src, r->src_length = len, r->dest_count = 1;
    r->info[0].dest_fd = fd_;
    r->info[0].dest_offset = dst;
    if (daxfs_ioctl(self ? fd_ : src_fd_, FIDEDUPERANGE, r) != 0) return sys_fail("FIDEDUPERANGE");
    int32_t status = r->info[0].status;
    if (status < 0) {
      errno = -status;
      return sys_fail("FIDEDUPERANGE status");
    }
    if (equal != (status == FILE_DEDUPE_RANGE_SAME) || (equal && r->info[0].bytes_deduped != len))
      return fail("dedupe: expected %s got status %d bytes %llu", equal ? "same" : "differs", status,
                  static_cast<unsigned long long>(r->info[0].bytes_deduped));
    return check_size();
  }

  // FALLOC_FL_COLLAPSE_RANGE / FALLOC_FL_INSERT_RANGE of whole blocks inside EOF (XFS's rules):
  // the bytes after the range move left, or right over a new hole.
  int shift_op(bool collapse, uint64_t max) {
    uint64_t size = model_.size(), blocks = size / kPage;
    if (blocks < 2) return 0;
    uint64_t ob = rand_below(blocks - 1), n = 1 + rand_below(std::min<uint64_t>(8, blocks - 1 - ob));
    uint64_t off = ob * kPage, len = n * kPage;
    if (collapse && off + len >= size) return 0;
    if (!collapse && size + len > max) return 0;
    log("%s off %" PRIu64 " len %" PRIu64 " (size %" PRIu64 ")", collapse ? "collapse" : "insert", off, len, size);
    int mode = collapse ? FALLOC_FL_COLLAPSE_RANGE : FALLOC_FL_INSERT_RANGE;
    if (daxfs_fallocate(fd_, mode, static_cast<off_t>(off), static_cast<off_t>(len)) != 0)
      return sys_fail(collapse ? "fallocate collapse" : "fallocate insert");
    if (collapse) {
      model_.erase(off, len);
    } else {
      model_.insert(off, std::string(len, '\0'));
    }
    if (int r = check_size()) return r;
    return touch_eof();
  }

  // One byte of the long-lived mapping at `off`: a load (compared with the model) or, inside EOF,
  // a store. A page with any byte inside EOF must not SIGBUS; a page wholly past EOF must.
  int touch(uint64_t off, bool store) {
    uint64_t size = model_.size();
    bool inside_page = off < round_up(size);
    store = store && off < size;
    char value = static_cast<char>(rng_() | 1);
    log("touch %s off %" PRIu64 " (size %" PRIu64 ")", store ? "store" : "load", off, size);
    volatile char* p = long_map_ + off;
    char got = 0;
    if (sigsetjmp(g_jump, 1) == 0) {
      g_armed = 1;
      std::atomic_signal_fence(std::memory_order_seq_cst);
      if (store) {
        *p = value;
      } else {
        got = *p;
      }
      std::atomic_signal_fence(std::memory_order_seq_cst);
      g_armed = 0;
    } else {
      sigbus_++;
      uintptr_t page = reinterpret_cast<uintptr_t>(p) / kPage * kPage;
      uintptr_t at = reinterpret_cast<uintptr_t>(static_cast<void*>(g_bus_addr));
      if (inside_page) return fail("SIGBUS (code %d) inside EOF: the page holds file bytes", g_bus_code);
      if (at / kPage * kPage != page) return fail("SIGBUS at %p, not in the touched page %#lx", g_bus_addr, page);
      return 0;
    }
    if (!inside_page) return fail("no SIGBUS: page %" PRIu64 " is wholly past EOF %zu", off / kPage, size);
    if (store) {
      model_[off] = value;
      return 0;
    }
    return compare("touch load", off, &got, 1);
  }

  // After a size change: the last byte inside EOF (and the rest of its page) loads; the first
  // page wholly past EOF raises SIGBUS.
  int touch_eof() {
    if (opt_.skip.count("touch")) return 0;
    uint64_t size = model_.size();
    if (size > 0) {
      if (int r = touch(size - 1, false)) return r;
      if (size % kPage != 0)
        if (int r = touch(round_up(size) - 1, false)) return r;
    }
    if (round_up(size) < map_len_) return touch(round_up(size) + rand_below(kPage), false);
    return 0;
  }

  // Everything: pread of the whole file and loads of every byte inside EOF through the
  // long-lived mapping (and the zeroed tail of its EOF page).
  int check_all() {
    if (int r = check_size()) return r;
    log("check all (size %zu)", model_.size());
    std::string got(model_.size(), '\0');
    ssize_t n = pread(fd_, got.data(), got.size(), 0);
    if (n != static_cast<ssize_t>(got.size())) return fail("pread of the whole file: %zd bytes", n);
    if (int r = compare("pread whole file", 0, got.data(), got.size())) return r;
    if (opt_.skip.count("touch")) return 0;
    uint64_t end = round_up(model_.size());
    std::string mapped(end, '\0');
    if (sigsetjmp(g_jump, 1) == 0) {
      g_armed = 1;
      std::atomic_signal_fence(std::memory_order_seq_cst);
      memcpy(mapped.data(), long_map_, end);
      std::atomic_signal_fence(std::memory_order_seq_cst);
      g_armed = 0;
    } else {
      return fail("SIGBUS at %p loading the long-lived mapping inside EOF", g_bus_addr);
    }
    return compare("long-lived mapping", 0, mapped.data(), mapped.size());
  }

  Options opt_;
  std::mt19937_64 rng_;
  std::string model_, src_, src_path_;
  int fd_ = -1, src_fd_ = -1;
  struct {
    uint64_t src = 0, dst = 0, len = 0;
    bool self = false;
  } last_clone_;  // dedupe often tries this range again: equal data, unless changed since
  char* long_map_ = nullptr;
  uint64_t map_len_ = 0;
  bool long_dax_ = false;
  long op_ = 0, dax_maps_ = 0, kernel_maps_ = 0, sigbus_ = 0;
  std::string last_;
  std::deque<std::string> history_;
};

[[noreturn]] void usage() {
  fprintf(stderr, "usage: dax_fsx [--seed N] [--ops N] [--size BYTES] [--skip KIND]... [--check-every N] [--trace] FILE\n  kinds:");
  for (const char* k : kKindNames) fprintf(stderr, " %s", k);
  fprintf(stderr, "\n");
  exit(2);
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  o.seed = std::random_device{}();
  for (int i = 1; i < argc; i++) {
    std::string a = argv[i];
    auto value = [&]() -> const char* {
      if (i + 1 >= argc) usage();
      return argv[++i];
    };
    if (a == "--seed") {
      o.seed = strtoull(value(), nullptr, 0);
    } else if (a == "--ops") {
      o.ops = strtol(value(), nullptr, 0);
    } else if (a == "--size") {
      o.size = strtoull(value(), nullptr, 0);
    } else if (a == "--check-every") {
      o.check_every = strtol(value(), nullptr, 0);
    } else if (a == "--trace") {
      o.trace = true;
    } else if (a == "--skip") {
      std::string k = value();
      if (std::find_if(std::begin(kKindNames), std::end(kKindNames), [&](const char* n) { return k == n; }) ==
          std::end(kKindNames))
        usage();
      o.skip.insert(k);
    } else if (!a.empty() && a[0] == '-') {
      usage();
    } else if (o.file.empty()) {
      o.file = a;
    } else {
      usage();
    }
  }
  if (o.file.empty() || o.size < 2 * kPage || o.ops < 0 || o.check_every < 1) usage();
  if (o.skip.size() >= static_cast<size_t>(kKinds)) usage();
  setvbuf(stdout, nullptr, _IOLBF, 0);
  printf("dax_fsx: seed %" PRIu64 " ops %ld size %" PRIu64 " file %s\n", o.seed, o.ops, o.size, o.file.c_str());
#ifdef DAX_FSX_PLAIN
  char real[PATH_MAX];
  if (realpath(o.file.c_str(), real)) g_file_real = real;
  else g_file_real = o.file;  // created by the run: resolved by its directory below
  {
    std::string dir = o.file.substr(0, o.file.rfind('/') + 1), base = o.file.substr(o.file.rfind('/') + 1);
    if (realpath(dir.empty() ? "." : dir.c_str(), real)) g_file_real = std::string(real) + "/" + base;
  }
#endif
  if (daxfs_client_init() != 0) {
    perror("dax_fsx: daxfs_client_init");
    return 2;
  }
  struct sigaction sa = {};
  sa.sa_sigaction = on_bus;
  sa.sa_flags = SA_SIGINFO | SA_NODEFER;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGBUS, &sa, nullptr);
  return Fsx(o).run();
}
