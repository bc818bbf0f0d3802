// The load test's victim worker: run under daxfsctl run, it keeps its files mapped (DAX) and,
// about once a second, poisons a block of one of them through `daxfsctl inject-error --file`.
// Then the documented consequences must follow, and are counted as the expected errors: a touch
// of the page is SIGBUS BUS_MCEERR_AR (late kill), pread of the block EIO, a read from the start
// of the file short at the block (dax_iomap_rw), a partial write of the block EIO. It then clears
// the poison (`daxfsctl clear-error`) and rewrites the block whole (a recovery write), after
// which the mapping and pread must equal the model again. Between injections it stores and
// loads through the mappings. One thread.
#include <sys/ioctl.h>

#include <sys/stat.h>

#include <chrono>
#include <cstring>
#include <iostream>
#include <memory>
#include <optional>
#include <vector>

#include "daxcore/daxfs_ioctl.h"
#include "tests/load/mapped_file.h"

namespace daxfs::load {
namespace {

constexpr int kFiles = 3;
constexpr size_t kPages = 16;
constexpr int kBusMceErrAr = 4;  // BUS_MCEERR_AR

class VictimWorker : MappedWorkerBase {
 public:
  explicit VictimWorker(const WorkerOptions& o) : MappedWorkerBase(o, " (victim)") {}

  int run() {
    install_sigbus_handler();
    if (mkdir(o_.dir.c_str(), 0755) != 0) fail("mkdir", o_.dir, errno);
    for (int i = 0; i < kFiles && !stop_; i++) create(i);
    using clock = std::chrono::steady_clock;
    auto deadline = clock::now() + std::chrono::duration<double>(o_.seconds);
    auto next_poison = clock::now() + std::chrono::milliseconds(200);
    while (!stop_ && clock::now() < deadline) {
      MappedFile& f = *files_[rng_.below(files_.size())];
      if (clock::now() >= next_poison) {
        poison_cycle(f, rng_.below(kPages));
        next_poison = clock::now() + std::chrono::milliseconds(500 + rng_.below(1000));
      } else if (rng_.chance(50)) {
        store(f, 8 * 1024);
      } else {
        check(f, "verify");
      }
      usleep(2000);  // a victim, not a load of its own
    }
    for (auto& f : files_)
      if (!stop_) check(*f, "final-verify");
    files_.clear();
    return write_report(o_.report, tally_) ? 0 : 1;
  }

 private:

  void create(int i) {
    std::string path = o_.dir + "/v" + std::to_string(i);
    const char* op;
    auto f = create_mapped(path, rng_.bytes(kPages * kPage), &op);
    if (!f) return fail(op, path, errno, errno ? "" : "not a DAX mapping (is it run under daxfsctl run?)");
    count("create");
    files_.push_back(std::move(f));
  }

  // The mapping and pread both equal the model.
  void check(MappedFile& f, const char* op) {
    std::string mapped(f.data.size(), '\0'), read(f.data.size(), '\0');
    if (int code = guarded_copy(mapped.data(), f.map, mapped.size()))
      return fail(op, f.path, 0, "mapped load: SIGBUS code " + std::to_string(code));
    if (!read_all(f.fd.fd, read.data(), read.size(), 0)) return fail(op, f.path, errno, errno ? "" : "short read");
    if (size_t at = first_difference(mapped, f.data); at != std::string::npos)
      return fail(op, f.path, 0, "mapped bytes differ from the model at " + std::to_string(at));
    if (size_t at = first_difference(read, f.data); at != std::string::npos)
      return fail(op, f.path, 0, "read bytes differ from the model at " + std::to_string(at));
    count(op);
  }

  // The device byte offset of the written block backing `offset`, from the daemon's fiemap.
  std::optional<uint64_t> device_offset(MappedFile& f, uint64_t offset) {
    auto m = std::make_unique<daxfs_fiemap>();
    m->start = offset;
    if (ioctl(f.fd.fd, DAXFS_IOC_FIEMAP, m.get()) != 0) return fail("fiemap", f.path, errno), std::nullopt;
    for (uint64_t i = 0; i < m->count; i++) {
      const daxfs_extent& x = m->extents[i];
      if (offset >= x.logical && offset < x.logical + x.length && !(x.flags & DAXFS_EXTENT_UNWRITTEN))
        return x.physical + (offset - x.logical);
    }
    fail("fiemap", f.path, 0, "no written block at " + std::to_string(offset));
    return std::nullopt;
  }

  bool ctl(const std::vector<std::string>& args, const char* op) {
    std::vector<std::string> argv = {o_.ctl};
    argv.insert(argv.end(), args.begin(), args.end());
    std::string out;
    int rc = run_capture(argv, &out);
    // inject-error succeeds with a warning when the holder did not acknowledge: a failure here.
    if (rc != 0 || out.find("warning") != std::string::npos) {
      fail(op, args.size() > 1 ? args[1] : "", 0, "exit " + std::to_string(rc) + ": " + out);
      return false;
    }
    count(op);
    return true;
  }

  void poison_cycle(MappedFile& f, uint64_t page) {
    const uint64_t at = page * kPage;
    auto physical = device_offset(f, at);
    if (!physical) return;
    if (!ctl({"inject-error", o_.mnt, "--file", f.path, "--file-offset", std::to_string(at)}, "inject-error")) return;
    // The mapping lost the page: a touch is an action-required SIGBUS (the default late kill).
    char byte;
    int code = guarded_copy(&byte, f.map + at, 1);
    if (code != kBusMceErrAr)
      return fail("poisoned touch", f.path, 0, code ? "SIGBUS code " + std::to_string(code) : "no SIGBUS");
    tally_.expected["sigbus"]++;
    char block[kPage];
    ssize_t n = pread(f.fd.fd, block, kPage, static_cast<off_t>(at));
    if (n >= 0 || errno != EIO) return fail("poisoned pread", f.path, errno, n >= 0 ? "read the poisoned block" : "");
    tally_.expected["eio-read"]++;
    if (page > 0) {  // a DAX read that meets the poison further on is short: the bytes before it
      std::string head(f.data.size(), '\0');
      n = pread(f.fd.fd, head.data(), head.size(), 0);
      if (n != static_cast<ssize_t>(at) || head.compare(0, at, f.data, 0, at) != 0)
        return fail("read up to poison", f.path, n < 0 ? errno : 0,
                    n < 0 ? "" : "returned " + std::to_string(n) + " bytes, expected the " + std::to_string(at) + " before the poison");
      count("short-read");
    }
    std::string part = rng_.bytes(100);
    n = pwrite(f.fd.fd, part.data(), part.size(), static_cast<off_t>(at + 10));
    if (n >= 0 || errno != EIO) return fail("partial write of poison", f.path, errno, n >= 0 ? "succeeded" : "");
    tally_.expected["eio-write"]++;
    // Clear (the cells' contents are undefined until rewritten), then rewrite the block whole.
    if (!ctl({"clear-error", o_.mnt, "--offset", std::to_string(*physical), "--length", std::to_string(kPage)},
             "clear-error"))
      return;
    std::string fresh = rng_.bytes(kPage);
    if (!write_all(f.fd.fd, fresh.data(), kPage, static_cast<off_t>(at))) return fail("recovery write", f.path, errno);
    f.data.replace(at, kPage, fresh);
    count("recovery-write");
    check(f, "verify-after-clear");
  }

  std::vector<std::unique_ptr<MappedFile>> files_;
};

}  // namespace

int run_victim_worker(const WorkerOptions& options) { return VictimWorker(options).run(); }

}  // namespace daxfs::load
