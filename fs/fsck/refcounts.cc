// The refcount phases of the checker (reflink filesystems): the chain of refcount record blocks,
// every record, and the records against the extent maps, both ways. The BlockMap holds every
// mapping of every data block, so it is fsck's reverse map, and the count a block must have is
// read off it: a record {start, length, count} must cover exactly the blocks mapped count >= 2
// times, with that count (fs/format.h).
//
// The counts are taken twice:
//   - as on the media (every extent claimed, an orphan's included): what the records are checked
//     against, so a legal state (an orphan still holding its references) is never an error;
//   - as after the planned repairs (a file fsck frees maps nothing): what they are rebuilt to.
//
// The rebuild keeps every record that is right, clears the wrong ones, writes the missing ones
// into the slots so freed and the chain's free slots, and the rest into new blocks built in place
// before the last transaction links them; chain blocks left empty are unlinked (allocation is
// derived from references, so they are free once nothing points at them).
//
//   head -> [new] -> [old: kept] -> [old: empty] -> [old: kept]      before the last commit
//   head -> [new] -> [old: kept] ----------------->  [old: kept]      after it
#include <algorithm>
#include <cstddef>
#include <cstring>
#include <unordered_map>

#include "fs/fsck/checker_impl.h"

namespace daxfs::fsck {

namespace {
std::string num(uint64_t v) { return std::to_string(v); }
std::string span(uint64_t start, uint64_t length) { return num(start) + "+" + num(length); }

// "inode 12" / "inodes 12 (twice), 17": who maps a shared range.
std::string owners_text(std::vector<uint64_t> owners) {
  std::sort(owners.begin(), owners.end());
  std::string out = owners.size() > 1 && owners.front() != owners.back() ? "inodes " : "inode ";
  size_t shown = 0;
  for (size_t i = 0; i < owners.size();) {
    size_t j = i;
    while (j < owners.size() && owners[j] == owners[i]) j++;
    if (shown++ == 8) {
      out += ", ...";
      break;
    }
    if (i > 0) out += ", ";
    out += num(owners[i]);
    if (j - i > 1) out += j - i == 2 ? " (twice)" : " (" + num(j - i) + " times)";
    i = j;
  }
  return out;
}

// Calls fn(start, length) for the parts of [start, start + length) no range of `cover`
// (start -> length, disjoint) covers.
template <typename Fn>
void uncovered(const std::map<uint64_t, uint64_t>& cover, uint64_t start, uint64_t length, Fn&& fn) {
  uint64_t pos = start, end = start + length;
  auto it = cover.upper_bound(start);
  if (it != cover.begin() && std::prev(it)->first + std::prev(it)->second > start) --it;
  for (; pos < end; ++it) {
    uint64_t next = it == cover.end() ? end : std::min(end, it->first);
    if (next > pos) fn(pos, next - pos);
    if (it == cover.end() || it->first >= end) break;
    pos = std::max(pos, it->first + it->second);
  }
}

uint64_t slot_offset(uint64_t block, uint32_t slot) {
  return block * fs::kBlockSize + sizeof(fs::RecordBlockHeader) + slot * sizeof(fs::DiskRefcount);
}

struct Write {
  uint64_t offset;
  uint64_t value[2];
  uint32_t length;  // 8 or 16
};
}  // namespace

void Checker::claim_refcounts() {
  const uint64_t head_at = offsetof(fs::SuperBlock, refcount_head);
  if (!reflink() && sb_.refcount_head != 0 && block_ok(sb_.refcount_head) && !map_.find(sb_.refcount_head, 1)) {
    // A refcount chain only a reflink filesystem writes, whose head is a refcount block: the
    // feature bit is what was lost (one damaged word), not the chain. Dropping the chain instead
    // would strip every shared extent from all but its first owner: the clones' data gone.
    fs::RecordBlockHeader h{};
    memcpy(&h, img_.block(sb_.refcount_head), sizeof h);
    if (h.magic == fs::kRefcountMagic) {
      size_t p = report("features", 0,
                        "the superblock's reflink feature bit is clear, yet it names a refcount chain (block " +
                            num(sb_.refcount_head) + "); the bit is set again");
      sb_.features |= fs::kFeatureReflink;
      plan_write(p, offsetof(fs::SuperBlock, features), sb_.features);
    }
  }
  if (!reflink()) {
    // Nothing may be shared, so no record may exist: the chain is dropped whole (its blocks are
    // free once nothing points at them).
    if (sb_.refcount_head != 0) {
      size_t p = report("refcount_chain", 0,
                        "the filesystem does not use reflink, yet the superblock names a refcount chain (block " +
                            num(sb_.refcount_head) + "); the chain is dropped");
      sb_.refcount_head = 0;
      plan_write(p, head_at, uint64_t{0});
    }
    return;
  }
  uint64_t link = head_at;  // where the pointer to `b` lives
  for (uint64_t b = sb_.refcount_head; b != 0;) {
    std::string why;
    fs::RecordBlockHeader h{};
    if (!block_ok(b)) {
      why = "is outside the data area";
    } else if (auto o = map_.find(b, 1)) {
      why = o->kind == OwnerKind::kRefcount ? "closes a cycle" : "is already " + describe(*o);
    } else {
      memcpy(&h, img_.block(b), sizeof h);
      if (h.magic != fs::kRefcountMagic) why = "is not a refcount block (bad magic)";
    }
    if (!why.empty()) {
      size_t p = report("refcount_chain", 0,
                        "the refcount chain's link to block " + num(b) + " " + why +
                            "; the chain is cut there and the records are rebuilt");
      plan_write(p, link, uint64_t{0});
      if (link == head_at) sb_.refcount_head = 0;
      refcount_problems_.push_back(p);
      break;
    }
    map_.claim(b, 1, {OwnerKind::kRefcount, 0});
    refcount_blocks_.push_back(b);
    for (uint32_t slot = 0; slot < fs::kRefcountsPerBlock; slot++) {
      uint64_t off = slot_offset(b, slot);
      fs::DiskRefcount r;
      memcpy(&r, img_.block(b) + (off % fs::kBlockSize), sizeof r);
      if (r.length == 0)
        refcount_free_.push_back(off);
      else
        refcount_slots_.push_back({off, r, false});
    }
    link = b * fs::kBlockSize + offsetof(fs::RecordBlockHeader, next);
    b = h.next;
  }
}

void Checker::check_refcounts() {
  if (!reflink()) return;  // claim_file_extents() let nothing be shared
  // The records themselves: inside the data area, overlapping no earlier one (chain order, as
  // the mount loads them). The codec's other rule, a count of at least 2
  // (ondisk::refcount_error()), falls out of the comparison with the mappings below: such a
  // record never matches, and is reported as a mismatch or stale.
  std::map<uint64_t, uint64_t> cover;             // valid records: start -> length
  std::map<uint64_t, const RefcountSlot*> valid;  // by start
  for (RefcountSlot& s : refcount_slots_) {
    const fs::DiskRefcount& r = s.rec;
    std::string what = "the refcount record for blocks " + span(r.start, r.length) + " (count " + num(r.count) + ")";
    std::string why;
    if (!range_ok(r.start, r.length)) {
      why = "is outside the data area";
    } else {
      auto next = cover.lower_bound(r.start);
      if (next != cover.end() && next->first < r.start + r.length)
        why = "overlaps the record for blocks " + span(next->first, next->second);
      else if (next != cover.begin() && std::prev(next)->first + std::prev(next)->second > r.start)
        why = "overlaps the record for blocks " + span(std::prev(next)->first, std::prev(next)->second);
    }
    if (!why.empty()) {
      refcount_problems_.push_back(report("refcount_record", 0, what + " " + why + "; it is removed"));
      continue;
    }
    s.valid = true;
    cover.emplace(r.start, r.length);
    valid.emplace(r.start, &s);
  }
  // Each record against the mappings on the media: count >= 2, and equal to it, at every block.
  for (const auto& [start, s] : valid) {
    const fs::DiskRefcount& r = s->rec;
    bool found = false, shared = false;
    uint64_t bad_start = 0, bad_length = 0, bad_count = 0;
    map_.mappings(r.start, r.length, [&](uint64_t ps, uint64_t pl, uint64_t c, const std::vector<uint64_t>&) {
      if (c >= 2 && c == r.count) return;
      if (!found || (c >= 2 && !shared)) bad_start = ps, bad_length = pl, bad_count = c;
      found = true;
      shared |= c >= 2;
    });
    if (!found) continue;
    std::string what = "the refcount record for blocks " + span(r.start, r.length);
    std::string have =
        "blocks " + span(bad_start, bad_length) + " have " + num(bad_count) + " mapping" + (bad_count == 1 ? "" : "s");
    if (shared)
      refcount_problems_.push_back(
          report("refcount_mismatch", 0,
                 what + " says " + num(r.count) + (r.count == 1 ? " reference" : " references") + ", but " + have +
                     "; the records are corrected"));
    else
      refcount_problems_.push_back(report(
          "refcount_stale", 0,
          what + " (count " + num(r.count) + ") covers blocks that are not shared (" + have + "); it is removed"));
  }
  // Every block mapped more than once must be covered by a record: one report per run.
  struct Run {
    uint64_t start, length, count;
    std::vector<uint64_t> owners;
  };
  std::optional<Run> run;
  auto flush = [&] {
    if (!run) return;
    refcount_problems_.push_back(report("refcount_missing", 0,
                                        "blocks " + span(run->start, run->length) + " are mapped " + num(run->count) +
                                            " times (" + owners_text(run->owners) +
                                            ") but have no refcount record; one is added"));
    run.reset();
  };
  map_.for_each_data([&](uint64_t start, uint64_t length, uint64_t c, const std::vector<uint64_t>& owners) {
    if (c < 2) return;
    uncovered(cover, start, length, [&](uint64_t us, uint64_t ul) {
      if (run && run->start + run->length == us && run->count == c) {
        run->length += ul;
        return;
      }
      flush();
      run = Run{us, ul, c, owners};
    });
  });
  flush();

  // The counts once the planned repairs are committed: a file fsck frees maps nothing.
  BlockMap live;
  for (const auto& [ino, n] : nodes_)
    if (!n.dropped)
      for (const Range& r : n.mapped) live.claim(r.start, r.length, {OwnerKind::kData, ino}, Sharing::kData);
  collect_shared(live);
  rebuild_refcounts(live, refcount_problems_);
}

void Checker::collect_shared(const BlockMap& live) {
  Stats& s = out_.stats;
  live.for_each_data([&](uint64_t start, uint64_t length, uint64_t c, const std::vector<uint64_t>& owners) {
    if (c < 2) return;
    s.shared_blocks += length;
    std::vector<uint64_t> sorted = owners;
    std::sort(sorted.begin(), sorted.end());
    if (!s.shared.empty() && s.shared.back().start + s.shared.back().length == start &&
        s.shared.back().owners == sorted) {
      s.shared.back().length += length;
    } else if (s.shared.size() < kMaxSharedRanges) {
      s.shared.push_back({start, length, std::move(sorted)});
    } else {
      s.shared_truncated = true;
    }
  });
}

void Checker::rebuild_refcounts(const BlockMap& live, const std::vector<size_t>& reported) {
  // The records that stay: valid, and right at every block.
  std::map<uint64_t, uint64_t> kept;            // start -> length
  std::vector<uint64_t> gone;                   // offsets of the records that go
  std::unordered_map<uint64_t, size_t> in_use;  // chain block -> records it holds afterwards
  for (uint64_t b : refcount_blocks_) in_use[b] = 0;
  for (const RefcountSlot& s : refcount_slots_) {
    bool right = s.valid;
    if (right)
      live.mappings(s.rec.start, s.rec.length, [&](uint64_t, uint64_t, uint64_t c, const std::vector<uint64_t>&) {
        right &= c >= 2 && c == s.rec.count;
      });
    if (right) {
      kept.emplace(s.rec.start, s.rec.length);
      in_use[s.offset / fs::kBlockSize]++;
    } else {
      gone.push_back(s.offset);
    }
  }
  // The records to add: runs of one count >= 2 no kept record covers, at most 2^32 - 1 blocks each.
  std::vector<fs::DiskRefcount> want;
  live.for_each_data([&](uint64_t start, uint64_t length, uint64_t c, const std::vector<uint64_t>&) {
    if (c < 2) return;
    uint32_t count = static_cast<uint32_t>(std::min<uint64_t>(c, UINT32_MAX));
    uncovered(kept, start, length, [&](uint64_t us, uint64_t ul) {
      while (ul > 0) {
        uint64_t take;
        fs::DiskRefcount* last = want.empty() ? nullptr : &want.back();
        if (last && last->start + last->length == us && last->count == count && last->length < UINT32_MAX) {
          take = std::min<uint64_t>(ul, UINT32_MAX - last->length);
          last->length += static_cast<uint32_t>(take);
        } else {
          take = std::min<uint64_t>(ul, UINT32_MAX);
          want.push_back({us, static_cast<uint32_t>(take), count});
        }
        us += take;
        ul -= take;
      }
    });
  });
  out_.stats.refcount_records = kept.size() + want.size();
  if (gone.empty() && want.empty()) {
    // Right for the repaired filesystem: whatever was reported against the media is repaired by
    // the repairs that free files (their references were the difference).
    std::vector<size_t> open;
    for (size_t p : reported)
      if (!out_.problems[p].fixable) open.push_back(p);
    if (open.empty()) return;
    for (Fix& f : out_.fixes) {
      bool frees = std::any_of(f.problems.begin(), f.problems.end(), [&](size_t p) {
        return std::find(remap_problems_.begin(), remap_problems_.end(), p) != remap_problems_.end();
      });
      if (!frees) continue;
      f.problems.insert(f.problems.end(), open.begin(), open.end());
      for (size_t p : open) out_.problems[p].fixable = true;
    }
    return;
  }
  std::vector<size_t> problems = reported;
  problems.insert(problems.end(), remap_problems_.begin(), remap_problems_.end());
  if (problems.empty())  // not expected: records wrong only after fsck's repairs, and none freed a file
    problems.push_back(
        report("refcount_update", 0, "the refcount records are rewritten to match the extent maps", Severity::kInfo));

  // Slots: those of the records that go, then the free ones; then new blocks.
  std::vector<Write> writes;
  size_t next = 0;
  auto fill = [&](uint64_t off, bool clear) {
    Write w{off, {0, 0}, sizeof(fs::DiskRefcount)};
    if (next < want.size()) {
      memcpy(w.value, &want[next++], sizeof(fs::DiskRefcount));
      in_use[off / fs::kBlockSize]++;
    } else if (!clear) {
      return;
    }
    writes.push_back(w);
  };
  for (uint64_t off : gone) fill(off, true);
  for (uint64_t off : refcount_free_) {
    if (next == want.size()) break;
    fill(off, false);
  }
  std::vector<uint64_t> fresh;  // new blocks, in chain order
  size_t rest = want.size() - next;
  for (size_t i = 0; i < (rest + fs::kRefcountsPerBlock - 1) / fs::kRefcountsPerBlock; i++) {
    auto b = alloc_block(OwnerKind::kRefcount);
    if (!b) {
      report("refcount_space", 0,
             "no free block is left to hold " + num(rest) + " refcount records; the records cannot be rebuilt");
      return;
    }
    fresh.push_back(*b);
  }

  // The chain afterwards: the new blocks, then the old ones that still hold a record.
  std::vector<uint64_t> chain = fresh;
  for (uint64_t b : refcount_blocks_)
    if (in_use[b] > 0) chain.push_back(b);
  std::vector<InPlaceWrite> prepare;
  for (size_t i = 0; i < fresh.size(); i++) {
    InPlaceWrite w{fresh[i] * fs::kBlockSize, std::vector<char>(fs::kBlockSize, 0)};
    fs::RecordBlockHeader h{fs::kRefcountMagic, 0, i + 1 < chain.size() ? chain[i + 1] : 0, 0};
    memcpy(w.bytes.data(), &h, sizeof h);
    for (uint32_t slot = 0; slot < fs::kRefcountsPerBlock && next < want.size(); slot++, next++)
      memcpy(w.bytes.data() + sizeof h + slot * sizeof(fs::DiskRefcount), &want[next], sizeof(fs::DiskRefcount));
    prepare.push_back(std::move(w));
  }
  size_t first_link = writes.size();
  uint64_t head = chain.empty() ? 0 : chain.front();
  if (head != sb_.refcount_head) writes.push_back({offsetof(fs::SuperBlock, refcount_head), {head, 0}, 8});
  sb_.refcount_head = head;
  for (size_t i = 0, at = fresh.size(); i < refcount_blocks_.size(); i++) {
    uint64_t b = refcount_blocks_[i];
    if (in_use[b] == 0) continue;
    uint64_t want_next = ++at < chain.size() ? chain[at] : 0;  // chain[at - 1] is b
    uint64_t has_next = i + 1 < refcount_blocks_.size() ? refcount_blocks_[i + 1] : 0;
    if (want_next != has_next)
      writes.push_back({b * fs::kBlockSize + offsetof(fs::RecordBlockHeader, next), {want_next, 0}, 8});
  }

  // Transactions that fit the journal; the new blocks are built just before the one that links
  // them (the first link write: the head, which changes whenever there are new blocks, since a
  // new block cannot be the old head).
  const uint64_t budget = sb_.journal_blocks * fs::kBlockSize - sizeof(fs::JournalHeader);
  fs::Txn txn;
  std::vector<InPlaceWrite> pending;
  for (size_t i = 0; i < writes.size(); i++) {
    const Write& w = writes[i];
    if (txn.bytes() + sizeof(fs::JournalEntry) + 16 > budget) {
      plan(problems, std::move(txn), std::move(pending));
      txn = fs::Txn{};
      pending.clear();
    }
    txn.write(w.offset, w.value, w.length);
    if (i == first_link) pending = std::move(prepare);
  }
  if (!txn.empty()) plan(problems, std::move(txn), std::move(pending));
}

}  // namespace daxfs::fsck
