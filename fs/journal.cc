// The redo journal (see journal.h). Commit protocol, with the persist that orders each step:
//   1. copy the entries after the header              memcpy_nodrain
//   2. drain        -> entries (and the caller's data blocks) durable before the header
//   3. write header {magic, seq, count, bytes, checksum}; persist  -> COMMIT POINT
//   4. apply the entries to their home locations; drain  -> home copies durable
//   5. header.magic = 0; persist  -> the journal is empty before any later txn touches it
// A crash before 3 loses the txn (nothing reachable changed); after 3, recovery redoes step 4.
#include "fs/journal.h"

#include <cstddef>
#include <utility>

namespace daxfs::fs {

uint64_t fnv1a64(const void* data, size_t length) {
  const auto* p = static_cast<const unsigned char*>(data);
  uint64_t h = 0xcbf29ce484222325ULL;
  for (size_t i = 0; i < length; i++) {
    h ^= p[i];
    h *= 0x100000001b3ULL;
  }
  return h;
}

// Covers the entries and the header fields that say how to read them, so that a header torn by a
// power failure (seq/count of one transaction, bytes of another) never replays a prefix.
uint64_t header_checksum(const JournalHeader& h, const char* entries) {
  uint64_t fields[3] = {h.seq, h.count, h.bytes};
  return fnv1a64(fields, sizeof fields) ^ fnv1a64(entries, h.bytes);
}

Journal::Bug Journal::bug_ = Journal::Bug::kNone;
void Journal::inject_bug_for_testing(Bug bug) { bug_ = bug; }

void Txn::write(uint64_t offset, const void* data, uint32_t length) {
  JournalEntry e{offset, length, 0};
  size_t at = buf_.size();
  size_t padded = (length + 7) & ~size_t{7};
  buf_.resize(at + sizeof e + padded);
  memcpy(buf_.data() + at, &e, sizeof e);
  memcpy(buf_.data() + at + sizeof e, data, length);
  count_++;
}

Status Journal::apply(const char* entries, uint64_t bytes, uint64_t count, bool check_only) {
  uint64_t pos = 0;
  for (uint64_t i = 0; i < count; i++) {
    if (bytes - pos < sizeof(JournalEntry)) return error(EUCLEAN);
    JournalEntry e;
    memcpy(&e, entries + pos, sizeof e);
    pos += sizeof e;
    uint64_t padded = (uint64_t{e.length} + 7) & ~uint64_t{7};
    if (bytes - pos < padded) return error(EUCLEAN);
    if (e.offset >= dev_.size() || e.length > dev_.size() - e.offset) return error(EUCLEAN);
    // The journal may never redirect a write into itself.
    if (e.offset < start_ + size_ && e.offset + e.length > start_) return error(EUCLEAN);
    if (!check_only) {
      if (bug_ == Bug::kNoFlushApply) [[unlikely]]
        dev_.memcpy_noflush(e.offset, entries + pos, e.length);
      else
        dev_.memcpy_nodrain(e.offset, entries + pos, e.length);
    }
    pos += padded;
  }
  return {};
}

Status Journal::commit(Txn& txn) {
  if (txn.empty()) return {};
  if (crashed_) return error(EIO);  // the test seam's process "died" at an earlier commit
  if (txn.bytes() > capacity()) return error(EFBIG);
  dev_.memcpy_nodrain(start_ + sizeof(JournalHeader), txn.buf_.data(), txn.bytes());
  if (bug_ != Bug::kNoFenceBeforeCommit) [[likely]]
    dev_.drain();  // (2) entries and the caller's flushed data before the commit record
  CrashPoint crash = CrashPoint::kNone;
  if (crash_at_ != CrashPoint::kNone) {
    if (crash_skip_ > 0)
      crash_skip_--;
    else
      crash = std::exchange(crash_at_, CrashPoint::kNone);
  }
  crashed_ = crash != CrashPoint::kNone;
  // At a crash point the transaction is gone with the process that built it.
  auto died = [&txn]() -> Status {
    txn.clear();
    return {};
  };
  if (crash == CrashPoint::kAfterEntries) return died();
  JournalHeader h{};
  h.magic = kJournalMagic;
  h.seq = ++seq_;
  h.count = txn.count_;
  h.bytes = txn.bytes();
  h.checksum = header_checksum(h, txn.buf_.data());
  dev_.memcpy_persist(start_, &h, sizeof h);  // (3) the commit point
  if (crash == CrashPoint::kAfterCommitRecord) return died();
  Status st = apply(txn.buf_.data(), txn.bytes(), txn.count_, false);
  if (!st) abort();  // entries were built by this process: a bad one is a bug
  if (bug_ != Bug::kNoFenceAfterApply) [[likely]]
    dev_.drain();  // (4) home locations durable before the journal is emptied
  if (crash == CrashPoint::kAfterApply) return died();
  uint64_t zero = 0;
  dev_.memcpy_persist(start_ + offsetof(JournalHeader, magic), &zero, sizeof zero);  // (5)
  txn.clear();
  return {};
}

Result<uint64_t> Journal::recover() {
  JournalHeader h;
  memcpy(&h, header(), sizeof h);
  if (h.magic != kJournalMagic) return uint64_t{0};
  seq_ = h.seq;
  const char* area = dev_.base() + start_ + sizeof(JournalHeader);
  // A header whose checksum does not match was never committed whole: nothing to redo.
  if (h.bytes > capacity() || header_checksum(h, area) != h.checksum) {
    uint64_t zero = 0;
    dev_.memcpy_persist(start_ + offsetof(JournalHeader, magic), &zero, sizeof zero);
    return uint64_t{0};
  }
  TRY(apply(area, h.bytes, h.count, true));
  TRY(apply(area, h.bytes, h.count, false));
  dev_.drain();  // replayed home locations before the journal is emptied
  uint64_t zero = 0;
  dev_.memcpy_persist(start_ + offsetof(JournalHeader, magic), &zero, sizeof zero);
  return h.count;
}

void Journal::format() {
  JournalHeader h{};
  dev_.memcpy_persist(start_, &h, sizeof h);
}

}  // namespace daxfs::fs
