// The load test's mapped worker: run under daxfsctl run, it keeps its files mapped with plain
// mmap(MAP_SHARED) (DAX mappings) and mixes stores + msync through the mappings with write(2),
// truncate, punch and reflink clones between its files (layout breaks and copy-on-write under
// its own mappings), checking mapped loads and pread against the model. One thread.
#include <linux/falloc.h>

#include <sys/stat.h>

#include <chrono>
#include <cstring>
#include <iostream>
#include <memory>
#include <vector>

#include "tests/load/mapped_file.h"

namespace daxfs::load {
namespace {

constexpr size_t kMaxSize = 512 * 1024;
constexpr int kFiles = 4;

class MappedWorker : MappedWorkerBase {
 public:
  explicit MappedWorker(const WorkerOptions& o) : MappedWorkerBase(o, "") {}

  int run() {
    install_sigbus_handler();
    if (mkdir(o_.dir.c_str(), 0755) != 0) fail("mkdir", o_.dir, errno);
    for (int i = 0; i < kFiles && !stop_; i++) create(i);
    auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(o_.seconds);
    while (!stop_ && std::chrono::steady_clock::now() < deadline) step();
    for (auto& f : files_)
      if (!stop_) verify(*f, "final-verify");
    files_.clear();  // unmaps
    return write_report(o_.report, tally_) ? 0 : 1;
  }

 private:

  void create(int i) {
    std::string path = o_.dir + "/m" + std::to_string(i);
    const char* op;
    auto f = create_mapped(path, rng_.bytes(16 * 1024 + rng_.below(240 * 1024)), &op);
    if (!f) return fail(op, path, errno, errno ? "" : "not a DAX mapping (is it run under daxfsctl run?)");
    count("create");
    files_.push_back(std::move(f));
  }

  void remap(MappedFile& f) {
    bool dax;
    if (!f.remap(&dax)) fail("mmap", f.path, errno);
  }

  void step() {
    MappedFile& f = *files_[rng_.below(files_.size())];
    uint64_t r = rng_.below(100);
    if (f.data.empty() || r < 10) return write_at(f);
    if (r < 45) return store(f, 16 * 1024);
    if (r < 60) return load(f);
    if (r < 68) return truncate_to(f);
    if (r < 76) return punch(f);
    if (r < 84) return clone_into(f);
    return verify(f, "pread-verify");
  }

  void load(MappedFile& f) {
    size_t offset = rng_.below(f.data.size());
    size_t length = std::min<size_t>(1 + rng_.below(32 * 1024), f.data.size() - offset);
    std::string got(length, '\0');
    if (int code = guarded_copy(got.data(), f.map + offset, length))
      return fail("load", f.path, 0, "SIGBUS code " + std::to_string(code));
    if (size_t at = first_difference(got, f.data.substr(offset, length)); at != std::string::npos)
      return fail("load", f.path, 0, "mapped bytes differ from the model at " + std::to_string(offset + at));
    count("mapped-load");
  }

  void write_at(MappedFile& f) {
    size_t offset = rng_.below(std::min(f.data.size() + 8 * 1024, kMaxSize));
    size_t length = std::min<size_t>(1 + rng_.below(16 * 1024), kMaxSize - offset);
    std::string bytes = rng_.bytes(length);
    if (!write_all(f.fd.fd, bytes.data(), length, static_cast<off_t>(offset))) return fail("write", f.path, errno);
    size_t old = f.data.size();
    if (f.data.size() < offset + length) f.data.resize(offset + length, '\0');
    f.data.replace(offset, length, bytes);
    if (f.data.size() != old) remap(f);
    count("write");
  }

  void truncate_to(MappedFile& f) {
    size_t size = rng_.below(kMaxSize);
    if (ftruncate(f.fd.fd, static_cast<off_t>(size)) != 0) return fail("truncate", f.path, errno);
    f.data.resize(size, '\0');
    remap(f);
    count("truncate");
  }

  void punch(MappedFile& f) {
    size_t offset = rng_.below(f.data.size()), length = 1 + rng_.below(64 * 1024);
    if (fallocate(f.fd.fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, static_cast<off_t>(offset),
                  static_cast<off_t>(length)) != 0)
      return fail("punch", f.path, errno);
    std::fill_n(f.data.begin() + static_cast<long>(offset), std::min(length, f.data.size() - offset), '\0');
    count("punch");
  }

  // Clones whole blocks of another of its files into this one: both stay mapped.
  void clone_into(MappedFile& dst) {
    MappedFile& src = *files_[rng_.below(files_.size())];
    uint64_t blocks = src.data.size() / kPage;
    if (&src == &dst || blocks == 0) return store(dst, 16 * 1024);
    uint64_t src_off = rng_.below(blocks) * kPage;
    uint64_t length = (1 + rng_.below(blocks - src_off / kPage)) * kPage;
    uint64_t dst_off = rng_.below(dst.data.size() / kPage + 1) * kPage;
    if (dst_off + length > kMaxSize) return punch(dst);
    if (int e = clone_range(src.fd.fd, dst.fd.fd, src_off, length, dst_off)) return fail("clone", src.path, e);
    size_t old = dst.data.size();
    if (dst.data.size() < dst_off + length) dst.data.resize(dst_off + length, '\0');
    dst.data.replace(dst_off, length, src.data.substr(src_off, length));
    if (dst.data.size() != old) remap(dst);
    count("clone-range");
  }

  void verify(MappedFile& f, const char* op) {
    struct stat st;
    if (fstat(f.fd.fd, &st) != 0) return fail(op, f.path, errno);
    if (static_cast<size_t>(st.st_size) != f.data.size())
      return fail(op, f.path, 0, "size " + std::to_string(st.st_size) + ", model " + std::to_string(f.data.size()));
    std::string got(f.data.size(), '\0');
    if (!read_all(f.fd.fd, got.data(), got.size(), 0)) return fail(op, f.path, errno, errno ? "" : "short read");
    if (size_t at = first_difference(got, f.data); at != std::string::npos)
      return fail(op, f.path, 0, "differs from the model at byte " + std::to_string(at));
    count(op);
  }

  std::vector<std::unique_ptr<MappedFile>> files_;
};

}  // namespace

int run_mapped_worker(const WorkerOptions& options) { return MappedWorker(options).run(); }

}  // namespace daxfs::load
