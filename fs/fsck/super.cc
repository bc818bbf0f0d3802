// Superblock validation and a read-only view of the redo journal (see super.h). The journal rules
// mirror Journal::recover() and Journal::apply() in fs/journal.cc exactly: what fsck calls
// committed is what a mount replays, and what it calls corrupt is what a mount refuses.
#include "fs/fsck/super.h"

#include <algorithm>
#include <cstring>
#include <functional>

#include "fs/fsck/geometry.h"
#include "fs/journal.h"

namespace daxfs::fsck {

namespace {
std::string num(uint64_t v) { return std::to_string(v); }

// Walks the entries of the transaction in the journal area `area` as Journal::apply() does,
// calling fn(offset, data, length) for each; returns why the walk failed, or "".
std::string walk_entries(const Image& image, const fs::SuperBlock& sb, const std::vector<char>& area, uint64_t count,
                         const std::function<void(uint64_t, const char*, uint32_t)>& fn) {
  uint64_t device_size = image.device().size();
  uint64_t jstart = sb.journal_start * fs::kBlockSize, jend = jstart + sb.journal_blocks * fs::kBlockSize;
  uint64_t bytes = area.size(), pos = 0;
  for (uint64_t i = 0; i < count; i++) {
    if (bytes - pos < sizeof(fs::JournalEntry)) return "entry " + num(i) + " is truncated";
    fs::JournalEntry e;
    memcpy(&e, area.data() + pos, sizeof e);
    pos += sizeof e;
    uint64_t padded = (uint64_t{e.length} + 7) & ~uint64_t{7};
    if (bytes - pos < padded) return "entry " + num(i) + "'s data is truncated";
    if (e.offset >= device_size || e.length > device_size - e.offset)
      return "entry " + num(i) + " writes outside the device (offset " + num(e.offset) + ")";
    if (e.offset < jend && e.offset + e.length > jstart)
      return "entry " + num(i) + " writes into the journal itself (offset " + num(e.offset) + ")";
    if (fn) fn(e.offset, area.data() + pos, e.length);
    pos += padded;
  }
  return "";
}

// Reads a committed transaction's bytes; false when the header is not a complete commit record.
bool read_transaction(const Image& image, const fs::SuperBlock& sb, fs::JournalHeader& h, std::vector<char>& area) {
  uint64_t start = sb.journal_start * fs::kBlockSize;
  uint64_t capacity = sb.journal_blocks * fs::kBlockSize - sizeof(fs::JournalHeader);
  if (!image.read_obj(start, h) || h.magic != fs::kJournalMagic || h.bytes > capacity) return false;
  area.resize(h.bytes);
  if (!image.read(start + sizeof h, area.data(), h.bytes)) return false;
  return fs::header_checksum(h, area.data()) == h.checksum;
}
}  // namespace

SuperCheck check_superblock(const Image& image) {
  SuperCheck out;
  fs::SuperBlock& sb = out.sb;
  if (!image.read_obj(0, sb)) {
    out.fatal = "the device is too small to hold a daxfs";
    return out;
  }
  if (sb.magic != fs::kSuperMagic) {
    out.fatal = "not a daxfs filesystem (no daxfs superblock)";
    return out;
  }
  if (sb.version > fs::kFormatVersion) {
    out.fatal = "the filesystem has format version " + num(sb.version) + ", newer than this fsck.daxfs supports (" +
                num(fs::kFormatVersion) + ")";
    return out;
  }
  if (sb.features & ~fs::kKnownFeatures) {
    out.fatal = "the filesystem uses unknown features (" + num(sb.features & ~fs::kKnownFeatures) + ")";
    return out;
  }
  if (sb.version != fs::kFormatVersion) {
    out.problems.push_back(Problem{"superblock", 0,
                                   "the format version " + num(sb.version) + " becomes " + num(fs::kFormatVersion)});
    sb.version = fs::kFormatVersion;
  }
  GeometryDecision g = decide_geometry(image, sb);
  if (!g.unrepairable.empty()) {
    out.unrepairable = std::move(g.unrepairable);
    out.problems.clear();
    return out;
  }
  sb = g.sb;
  out.problems.insert(out.problems.end(), g.problems.begin(), g.problems.end());
  return out;
}

JournalScan scan_journal(const Image& image, const fs::SuperBlock& sb) {
  JournalScan out;
  fs::JournalHeader h;
  if (!image.read_obj(sb.journal_start * fs::kBlockSize, h) || h.magic != fs::kJournalMagic) return out;
  std::vector<char> area;
  if (!read_transaction(image, sb, h, area)) {
    out.state = JournalState::kTorn;
    return out;
  }
  out.why = walk_entries(image, sb, area, h.count, nullptr);
  out.state = out.why.empty() ? JournalState::kCommitted : JournalState::kCorrupt;
  out.entries = h.count;
  return out;
}

bool replay_into_overlay(Image& image, const fs::SuperBlock& sb) {
  fs::JournalHeader h;
  std::vector<char> area;
  if (!read_transaction(image, sb, h, area)) return false;
  if (!walk_entries(image, sb, area, h.count, nullptr).empty()) return false;
  (void)walk_entries(image, sb, area, h.count, [&](uint64_t offset, const char* data, uint32_t length) {
    // A write into a trailing partial block lands outside every block fsck reads: harmless.
    (void)image.overlay(offset, data, length);
  });
  return true;
}

}  // namespace daxfs::fsck
