// The redo journal: every crash-visible metadata update is a Txn of (device offset, bytes)
// after-images, committed as a unit. Data written to newly allocated blocks is persisted before
// the commit that makes it reachable (the caller drains it; commit() drains again first).
// Not thread-safe: the filesystem serialises transactions under its exclusive lock.
#pragma once

#include <cstdint>
#include <cstring>
#include <vector>

#include "fs/format.h"
#include "pmemdev/device.h"
#include "common/result.h"

namespace daxfs::fs {

class Txn {
 public:
  // Records that the bytes at device offset `offset` become `data` when the txn commits.
  void write(uint64_t offset, const void* data, uint32_t length);
  template <typename T>
  void write_obj(uint64_t offset, const T& obj) {
    write(offset, &obj, sizeof(T));
  }
  bool empty() const { return count_ == 0; }
  size_t bytes() const { return buf_.size(); }
  void clear() {
    buf_.clear();
    count_ = 0;
    frees_.clear();
  }
  // Blocks this transaction stops referencing: they become allocatable only after it commits,
  // and stay allocated if it is abandoned.
  struct Free {
    uint64_t start, length;
  };
  void free_after_commit(uint64_t start, uint64_t length) { frees_.push_back({start, length}); }
  const std::vector<Free>& frees() const { return frees_; }

 private:
  friend class Journal;
  std::vector<char> buf_;  // JournalEntry + data (padded to 8) ...
  uint64_t count_ = 0;
  std::vector<Free> frees_;
};

class Journal {
 public:
  Journal(pmemdev::Device& device, uint64_t start_block, uint64_t blocks)
      : dev_(device), start_(start_block * kBlockSize), size_(blocks * kBlockSize) {}

  // Bytes one transaction may hold.
  size_t capacity() const { return size_ - sizeof(JournalHeader); }
  // Writes the transaction to the journal, makes it durable (the commit point), applies it to
  // the home locations and empties the journal. EFBIG when it exceeds capacity() (a bug in the
  // caller, which bounds its transactions): nothing is written then.
  Status commit(Txn& txn);
  // At mount: replays a committed transaction a crash left behind. Returns the number of
  // entries replayed (0 when the journal was empty); EUCLEAN for an entry outside the device.
  Result<uint64_t> recover();
  // mkfs: an empty journal.
  void format();
  uint64_t commits() const { return seq_; }

  // Test seam: makes the commit() `skip` commits from now (the next one by default) stop at
  // `point`, as if the process died there; every commit() after it then fails with EIO and
  // writes nothing, as a dead process writes nothing.
  enum class CrashPoint { kNone, kAfterEntries, kAfterCommitRecord, kAfterApply };

  // Test seam of the crash-state explorer (tests/crash): a commit protocol with one ordering step
  // removed, process-wide, to show that the explorer catches it. Never set outside tests.
  enum class Bug {
    kNone,
    kNoFenceBeforeCommit,  // step 2's drain removed: the commit record may outrun entries and data
    kNoFenceAfterApply,    // step 4's drain removed: the journal may empty before its home writes
    kNoFlushApply,         // step 4's home writes stored without a flush
  };
  static void inject_bug_for_testing(Bug bug);
  void crash_next_commit_at(CrashPoint point, uint64_t skip = 0) {
    crash_at_ = point;
    crash_skip_ = skip;
  }

 private:
  const JournalHeader* header() const {
    return reinterpret_cast<const JournalHeader*>(dev_.base() + start_);
  }
  Status apply(const char* entries, uint64_t bytes, uint64_t count, bool check_only);
  static Bug bug_;
  pmemdev::Device& dev_;
  uint64_t start_;
  uint64_t size_;
  uint64_t seq_ = 0;
  CrashPoint crash_at_ = CrashPoint::kNone;
  uint64_t crash_skip_ = 0;
  bool crashed_ = false;  // stopped at a crash point: no later commit writes anything
};

uint64_t fnv1a64(const void* data, size_t length);
uint64_t header_checksum(const JournalHeader& h, const char* entries);

}  // namespace daxfs::fs
