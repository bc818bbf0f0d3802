// Poisoned blocks (the device's badblock list) and who owns them. fsck repairs none of it: the
// bytes under poison are lost until a whole-block rewrite replaces them or `daxfsctl clear-error`
// clears it, and -y leaves both alone. What fsck adds is the owners, as a mount's memory-failure
// handler would name them: the metadata structure (and its inode) or, for file data, every file
// that maps the block (every reflink sharer), with its path and file offset.
//
// Severity follows the mount (fs/mount.cc, fs/load.cc): poisoned file data, and poison in the
// journal outside a committed transaction (the mount rewrites it), are states a mount handles
// (info); poison in the superblock, the journal's header or committed transaction, or any metadata
// block makes the mount refuse the device (EIO) until it is cleared: an error fsck cannot repair.
#include <algorithm>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "fs/fsck/checker_impl.h"

namespace daxfs::fsck {

namespace {
constexpr uint64_t kBs = fs::kBlockSize;
std::string num(uint64_t v) { return std::to_string(v); }
std::string blocks(uint64_t start, uint64_t length) {
  return length == 1 ? "block " + num(start) : "blocks " + num(start) + "+" + num(length);
}
using Paths = std::unordered_map<uint64_t, std::string>;
std::string path_of(const Paths& paths, uint64_t ino) {
  auto it = paths.find(ino);
  return it == paths.end() ? std::string("no path") : it->second;
}
std::string named(const Paths& paths, uint64_t ino) { return "inode " + num(ino) + " (" + path_of(paths, ino) + ")"; }
}  // namespace

JournalPoison journal_poison(const Image& image, const fs::SuperBlock& sb) {
  const pmemdev::Device& dev = image.device();
  const uint64_t jstart = sb.journal_start * kBs, jbytes = sb.journal_blocks * kBs;
  if (jbytes == 0 || !dev.poisoned(jstart, jbytes)) return JournalPoison::kNone;
  if (dev.poisoned(jstart, kBs)) return JournalPoison::kHeader;
  fs::JournalHeader h{};
  (void)image.read(jstart, &h, sizeof h);  // a healthy block
  if (h.magic == fs::kJournalMagic && dev.poisoned(jstart, std::min<uint64_t>(jbytes, sizeof h + h.bytes)))
    return JournalPoison::kLive;
  return JournalPoison::kDead;
}

// inode -> its path from the root, once the planned repairs are made (a reconnected inode is in
// /lost+found). The first name found for a file with several, as the mount's paths() does.
std::unordered_map<uint64_t, std::string> Checker::known_paths() {
  std::unordered_map<uint64_t, std::string> out;
  if (!live(root_)) return out;
  out[root_] = "/";
  std::vector<uint64_t> stack{root_};
  while (!stack.empty()) {
    uint64_t d = stack.back();
    stack.pop_back();
    Node* dir = live(d);
    if (!dir || !dir->is_dir()) continue;
    std::string prefix = d == root_ ? "/" : out[d] + "/";
    for (const Entry& e : dir->entries) {
      if (e.removed || out.count(e.ino)) continue;
      Node* t = live(e.ino);
      if (!t) continue;
      out[e.ino] = prefix + printable(e.name);
      if (t->is_dir()) stack.push_back(e.ino);
    }
  }
  return out;
}

void Checker::check_poison() {
  const pmemdev::Device& dev = img_.device();
  std::vector<pmemdev::ByteRange> bad = dev.list_errors();
  if (bad.empty()) return;
  Paths paths = known_paths();
  const std::string refused = " has poisoned sectors; a mount refuses the device until the poison is cleared "
                              "(daxfsctl clear-error, then fsck.daxfs -y repairs what the block held)";
  if (dev.poisoned(0, kBs)) report("poisoned_metadata", 0, "the superblock (block 0)" + refused);
  if (JournalPoison jp = journal_poison(img_, sb_); jp != JournalPoison::kNone) {
    std::string where = "(" + blocks(sb_.journal_start, sb_.journal_blocks) + ")";
    if (jp == JournalPoison::kHeader)
      report("poisoned_metadata", 0, "the journal's header (" + blocks(sb_.journal_start, 1) + ")" + refused);
    else if (jp == JournalPoison::kLive)
      report("poisoned_metadata", 0, "the journal's committed transaction " + where + refused);
    else
      report("poisoned_journal", 0,
             "the journal " + where + " has poisoned sectors outside any committed transaction: they hold nothing, "
                                      "and a mount rewrites them",
             Severity::kInfo);
  }
  map_.for_each([&](uint64_t start, uint64_t length, const Owner& o) {
    // Blocks this pass allocated for its repairs are never poisoned (alloc_block() skips them).
    if (o.kind == OwnerKind::kData || o.kind == OwnerKind::kRepair) return;
    if (!dev.poisoned(start * kBs, length * kBs)) return;
    std::string what = describe(o);
    if (o.ino != 0) what += " (" + path_of(paths, o.ino) + ")";
    what += " at " + blocks(start, length);
    if (o.kind == OwnerKind::kChunk) {
      // The inodes whose records the chunk holds: the owners of its poison.
      std::string held;
      for (auto it = nodes_.lower_bound(fs::make_ino(start, 0));
           it != nodes_.end() && fs::ino_block(it->first) == start; ++it)
        if (!it->second.dropped) held += (held.empty() ? "" : ", ") + named(paths, it->first);
      if (!held.empty()) what += ", holding " + held + ",";
    }
    report("poisoned_metadata", o.ino, what + refused);
  });
  check_poisoned_data(bad, paths);
}

// One finding per mapping of poisoned file data: a block two files share is reported for each,
// each naming the other. Poison in free blocks, or in blocks only a file fsck frees maps, has no
// owner and is not reported (the allocator keeps it back).
void Checker::check_poisoned_data(const std::vector<pmemdev::ByteRange>& bad,
                                  const std::unordered_map<uint64_t, std::string>& paths) {
  struct Hit {
    uint64_t ino, logical, device, length;  // bytes
    bool unwritten;
    std::vector<uint64_t> others;  // the other mappings of these bytes, by inode, ascending
  };
  for (const pmemdev::ByteRange& r : bad) {
    uint64_t first = std::max(r.offset / kBs, data_start_);
    uint64_t last = std::min((r.offset + r.length + kBs - 1) / kBs, limit_);
    if (first >= last) continue;
    // Every file that maps some of the range (a file fsck frees maps nothing), then each of its
    // extents over the range once, split where the set of mappings changes: time follows the
    // owners' extents, not the range's length.
    std::set<uint64_t> files;
    map_.mappings(first, last - first, [&](uint64_t, uint64_t, uint64_t, const std::vector<uint64_t>& owners) {
      for (uint64_t ino : owners)
        if (live(ino)) files.insert(ino);
    });
    std::vector<Hit> hits;
    for (uint64_t ino : files) {
      for (const Node::Mapping& m : live(ino)->extents) {
        uint64_t s = std::max(m.physical, first), e = std::min(m.physical + m.length, last);
        if (s >= e) continue;
        map_.mappings(s, e - s, [&](uint64_t ps, uint64_t pl, uint64_t, const std::vector<uint64_t>& owners) {
          uint64_t from = std::max(ps * kBs, r.offset), to = std::min((ps + pl) * kBs, r.offset + r.length);
          if (from >= to) return;
          std::vector<uint64_t> others;  // the other mappings of these bytes
          for (uint64_t o : owners)
            if (live(o)) others.push_back(o);
          std::sort(others.begin(), others.end());
          auto self = std::find(others.begin(), others.end(), ino);
          if (self != others.end()) others.erase(self);  // this mapping
          hits.push_back({ino, m.logical * kBs + (from - m.physical * kBs), from, to - from, m.unwritten,
                          std::move(others)});
        });
      }
    }
    // The pieces of one mapping (neighbouring pieces of one set of owners) become one finding.
    std::sort(hits.begin(), hits.end(),
              [](const Hit& x, const Hit& y) { return std::tie(x.ino, x.logical) < std::tie(y.ino, y.logical); });
    std::vector<Hit> merged;
    for (Hit& h : hits) {
      if (!merged.empty()) {
        Hit& p = merged.back();
        if (p.ino == h.ino && p.logical + p.length == h.logical && p.device + p.length == h.device &&
            p.unwritten == h.unwritten && p.others == h.others) {
          p.length += h.length;
          continue;
        }
      }
      merged.push_back(std::move(h));
    }
    std::sort(merged.begin(), merged.end(), [](const Hit& x, const Hit& y) {
      return std::tie(x.device, x.ino, x.logical) < std::tie(y.device, y.ino, y.logical);
    });
    for (const Hit& h : merged) {
      std::string detail = path_of(paths, h.ino) + ": file offset " +
                           num(h.logical) + "+" + num(h.length) + " (device offset " + num(h.device) + "+" +
                           num(h.length) + ", " +
                           blocks(h.device / kBs, (h.device + h.length - 1) / kBs - h.device / kBs + 1) +
                           ") has poisoned sectors";
      if (!h.others.empty()) {
        detail += "; shared with ";
        for (size_t i = 0; i < h.others.size(); i++) detail += (i ? ", " : "") + named(paths, h.others[i]);
      }
      detail += h.unwritten ? "; the range is unwritten (it reads as zeros)"
                            : "; reads of it fail with EIO until the poison is cleared or the block is rewritten whole";
      report("poisoned_data", h.ino, detail, Severity::kInfo);
    }
  }
}

}  // namespace daxfs::fsck
