// The load test's worker processes (load_test --worker ...): each owns one directory of the
// mount, runs a random mix of operations against an in-memory model of its files until its time
// is up, compares every file with the model, and writes its tally (load_common.h) to
// options.report. A worker stops at its first unexpected error (printed to stderr), since its
// model can no longer be trusted after it. Each returns the process's exit status: 0 when the
// report was written (the report, not the status, says whether it passed).
#pragma once

#include <fcntl.h>
#include <unistd.h>

#include <cstring>
#include <deque>
#include <iostream>
#include <string>

#include "tests/load/load_common.h"

namespace daxfs::load {

int run_files_worker(const WorkerOptions& options);
int run_mapped_worker(const WorkerOptions& options);   // under daxfsctl run: DAX mappings
int run_victim_worker(const WorkerOptions& options);   // under daxfsctl run: poison

// What every worker keeps: its options, random source, tally and stop flag. fail() counts an
// unexpected error, prints it and stops the worker (its model can no longer be trusted).
class WorkerBase {
 protected:
  WorkerBase(const WorkerOptions& o, std::string label) : o_(o), rng_(o.seed), label_(std::move(label)) {}
  void fail(const std::string& op, const std::string& what, int e, const std::string& detail = "") {
    std::cerr << "load: worker " << o_.id << label_ << ": " << op << " " << what << ": "
              << (detail.empty() ? strerror(e) : detail) << "\n";
    for (const auto& h : history_) std::cerr << "load: worker " << o_.id << label_ << ":   before it: " << h << "\n";
    tally_.unexpected++;
    stop_ = true;
  }
  void count(const char* op) { tally_.ops[op]++; }
  // The last few operations, printed with a failure: what led to it.
  void did(std::string what) {
    if (history_.size() == kHistory) history_.pop_front();
    history_.push_back(std::move(what));
  }

  const WorkerOptions& o_;
  Rng rng_;
  Tally tally_;
  bool stop_ = false;

 private:
  static constexpr size_t kHistory = 24;
  std::string label_;
  std::deque<std::string> history_;
};

// An owned file descriptor.
struct Fd {
  int fd = -1;
  explicit Fd(int f = -1) : fd(f) {}
  ~Fd() {
    if (fd >= 0) close(fd);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  bool ok() const { return fd >= 0; }
};

// pwrite/pread of the whole buffer (retrying short transfers); false with errno set on failure,
// or errno 0 when a read hit EOF early.
bool write_all(int fd, const char* data, size_t length, off_t offset);
bool read_all(int fd, char* data, size_t length, off_t offset);

// The first offset at which `got` differs from `want` (lengths included), or npos.
size_t first_difference(const std::string& got, const std::string& want);

// Clones (DAXFS_IOC_CLONE_RANGE, FICLONERANGE semantics; length 0: to the source's EOF) or
// dedupes (DAXFS_IOC_DEDUPE_RANGE; *differs set from the status) a range of src_fd into dst_fd.
// 0 or an errno.
int clone_range(int src_fd, int dst_fd, uint64_t src_offset, uint64_t length, uint64_t dst_offset);
int dedupe_range(int src_fd, int dst_fd, uint64_t src_offset, uint64_t length, uint64_t dst_offset, bool* differs);

}  // namespace daxfs::load
