// The fsck driver (see fsck.h): opening and claiming the device, the superblock and journal
// stages, then check passes, committing each planned repair as its own journal transaction.
//
//   open + claim ──> superblock ──> journal ──> superblock again ──> check ─┬─> report
//   (exit 8 when       (exit 8 when   -n: overlay   (a replay may          │
//    mounted)           not a daxfs)  -y: replay     have rewritten it)     └─ -y: commit fixes,
//                                                                             check again
#include "fs/fsck/fsck.h"

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <map>
#include <memory>
#include <new>
#include <vector>

#include "fs/fsck/checker.h"
#include "fs/fsck/super.h"
#include "fs/journal.h"
#include "pmemdev/device.h"

namespace daxfs::fsck {

namespace {

// Repairs expose other problems (a removed entry changes a link count, a cut chain orphans
// entries): a few passes reach the fixed point; more means a repair does not stick.
constexpr int kMaxPasses = 8;

// fsck claims the device so that no mount starts while it works; it wants no failure notices.
class NoHolder : public pmemdev::Holder {
 public:
  void notify_failure(uint64_t, uint64_t, pmemdev::FailureKind) override {}
};
NoHolder g_holder;  // outlives every Device's release()

std::string key(const Problem& p) { return p.kind + '\n' + std::to_string(p.ino) + '\n' + p.detail; }

class Run {
 public:
  Run(const Options& options, Report& report) : opts_(options), r_(report) {}

  void go() {
    auto dev = pmemdev::Device::open(opts_.device, {});
    if (!dev) return fail(std::string("cannot open the device: ") + strerror(dev.error()));
    dev_ = std::move(dev).value();
    if (dev_->held_elsewhere()) return fail("the device is mounted (held by another process)");
    Status claimed = dev_->claim(&g_holder, pmemdev::Device::Notifier::kDeferred);
    if (!claimed)
      return fail(claimed.error() == EBUSY ? "the device is mounted (held by another process)"
                                           : std::string("cannot claim the device: ") + strerror(claimed.error()));
    Image image(*dev_);
    SuperCheck sc = check_superblock(image);
    if (!sc.fatal.empty()) return fail(sc.fatal);
    if (!sc.unrepairable.empty()) return unrepairable(sc.unrepairable);
    JournalPoison jp = journal_poison(image, sc.sb);
    if (jp == JournalPoison::kHeader || jp == JournalPoison::kLive) {
      // As the mount: the last transaction cannot be read, so it is neither replayed (its bytes
      // are lost) nor discarded (it may be the only record of an operation), and no repair may
      // run on a filesystem whose last change is unknown. Check only; the poison pass says what
      // to do (clear-error, then fsck.daxfs -y).
      saw_poisoned_journal_ = true;
    } else if (journal(image, sc.sb)) {
      sc = check_superblock(image);  // the replayed transaction may have rewritten the superblock
      if (!sc.fatal.empty()) return fail(sc.fatal);
      if (!sc.unrepairable.empty()) return unrepairable(sc.unrepairable);
    }
    superblock(sc);
    passes(image);
    finish();
  }

 private:
  void fail(std::string why) {
    r_.error = std::move(why);
    r_.clean = false;
    r_.exit_code = kExitOperational;
  }
  bool repairing() const { return opts_.mode == Mode::kRepair && !saw_poisoned_journal_; }
  bool saw_poisoned_journal_ = false;

  // A geometry no repair can make right (a truncated device): reported, nothing written, exit 4.
  // Checking the rest under a geometry that is known wrong would only plan damage.
  void unrepairable(const std::string& why) {
    add(Problem{"device_size", 0, why});
    finish();
  }

  // Returns whether a committed transaction was replayed (on the media, or into the overlay).
  bool journal(Image& image, const fs::SuperBlock& sb) {
    JournalScan scan = scan_journal(image, sb);
    if (scan.state == JournalState::kEmpty) return false;
    fs::Journal j(*dev_, sb.journal_start, sb.journal_blocks);
    Problem p;
    switch (scan.state) {
      case JournalState::kEmpty: return false;
      case JournalState::kTorn:
        p = {"journal_torn", 0, "the journal holds an incomplete commit record, which a mount discards",
             Severity::kInfo};
        if (repairing()) (void)j.recover();  // discards it: the checksum does not match
        break;
      case JournalState::kCommitted:
        p = {"journal_replay", 0,
             "the journal holds a committed transaction of " + std::to_string(scan.entries) +
                 " entries, which a mount replays; " +
                 (repairing() ? "it is replayed" : "the check sees the filesystem as replayed"),
             Severity::kInfo};
        if (repairing() && !j.recover()) j.format();  // scan_journal() vetted every entry
        if (!repairing()) (void)replay_into_overlay(image, sb);
        break;
      case JournalState::kCorrupt:
        p = {"journal_corrupt", 0,
             "the journal's committed transaction is impossible (" + scan.why +
                 "), so a mount refuses the device; it is discarded"};
        if (repairing()) j.format();
        break;
    }
    p.fixable = true;
    p.repaired = repairing();
    r_.modified |= repairing();
    add(p);
    return scan.state == JournalState::kCommitted;
  }

  void superblock(const SuperCheck& sc) {
    sb_ = sc.sb;
    bool ok = false;
    if (repairing() && !sc.problems.empty()) {
      fs::Journal j(*dev_, sb_.journal_start, sb_.journal_blocks);
      fs::Txn txn;
      txn.write_obj(0, sb_);
      ok = static_cast<bool>(j.commit(txn));
      r_.modified |= ok;
    }
    for (Problem p : sc.problems) {
      p.fixable = true;
      p.repaired = ok;
      add(p);
    }
  }

  void passes(Image& image) {
    for (;;) {
      if (repairing()) {
        // Repairs may have moved the root or the chunk head. The geometry was decided once, on
        // the evidence, and committed: it is not decided again on a filesystem half repaired.
        fs::SuperBlock media;
        if (!image.read_obj(0, media)) return fail("the superblock cannot be read");
        media.version = sb_.version;
        media.block_size = sb_.block_size;
        media.block_count = sb_.block_count;
        media.journal_start = sb_.journal_start;
        media.journal_blocks = sb_.journal_blocks;
        sb_ = media;
      }
      CheckResult cr = check_filesystem(image, sb_);
      r_.passes++;
      if (!repairing() || cr.fixes.empty() || r_.passes >= kMaxPasses) {
        final_ = std::move(cr);
        return;
      }
      fs::Journal j(*dev_, sb_.journal_start, sb_.journal_blocks);
      std::vector<bool> failed(cr.problems.size(), false);
      bool any_failed = false;  // from here on, the state differs from the one fixes were planned on
      for (Fix& f : cr.fixes) {
        // A fix that does not fit is left for the final report. In-place writes are safe only on
        // the state the fix was planned on: after a failure, the block may still be in use.
        bool ok = f.txn.bytes() <= j.capacity() && !(any_failed && !f.prepare.empty());
        if (ok) {
          for (const InPlaceWrite& w : f.prepare) write_in_place(w);
          r_.modified |= !f.prepare.empty();
          ok = static_cast<bool>(j.commit(f.txn));  // drains the in-place writes first
        }
        r_.modified |= ok;
        any_failed |= !ok;
        if (!ok)
          for (size_t p : f.problems) failed[p] = true;
      }
      for (size_t i = 0; i < cr.problems.size(); i++) {
        Problem& p = cr.problems[i];
        p.repaired = p.fixable && !failed[i];
        if (p.repaired) add(p);
      }
    }
  }

  void finish() {
    if (!r_.error.empty()) return;
    for (const Problem& p : final_.problems) {
      auto seen = index_.find(key(p));
      if (seen == index_.end())
        add(p);
      else
        r_.problems[seen->second].repaired = false;  // repaired, yet it came back
    }
    r_.stats = final_.stats;
    r_.clean = true;
    for (const Problem& p : r_.problems)
      if (p.severity == Severity::kError && !p.repaired) r_.clean = false;
    r_.exit_code = !r_.clean ? kExitUncorrected : r_.modified ? kExitCorrected : kExitClean;
  }

  // Bytes into a block nothing references yet (the checker allocated it), persisted before the
  // commit that links it.
  void write_in_place(const InPlaceWrite& w) {
    if (w.offset > dev_->size() || w.bytes.size() > dev_->size() - w.offset) {
      fprintf(stderr, "fsck.daxfs: BUG: an in-place write at %llu is outside the device\n",
              static_cast<unsigned long long>(w.offset));
      abort();
    }
    dev_->memcpy_persist(w.offset, w.bytes.data(), w.bytes.size());
  }

  void add(const Problem& p) {
    if (!index_.emplace(key(p), r_.problems.size()).second) return;
    r_.problems.push_back(p);
  }

  const Options& opts_;
  Report& r_;
  std::unique_ptr<pmemdev::Device> dev_;
  fs::SuperBlock sb_{};
  CheckResult final_;
  std::map<std::string, size_t> index_;  // problem key -> index in r_.problems
};

}  // namespace

Report run_fsck(const Options& options) noexcept {
  Report report;
  try {
    report.device = options.device;
    report.mode = options.mode;
    Run(options, report).go();
  } catch (const std::bad_alloc&) {
    report.error = "out of memory";
    report.exit_code = kExitOperational;
  } catch (const std::exception& e) {
    report.error = e.what();
    report.exit_code = kExitOperational;
  }
  return report;
}

}  // namespace daxfs::fsck
