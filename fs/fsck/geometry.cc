// decide_geometry() (see geometry.h). The model is xfs_repair's: when the primary superblock's
// geometry cannot be trusted, it is rebuilt from what else the device says, here its size (mkfs
// makes the filesystem exactly as big as the device), the journal size mkfs.daxfs derives from
// that, and where the metadata begins (the oldest inode chunk sits right after the journal).
// Candidates are compared by checking the whole filesystem under each: a wrong geometry shows as
// inodes and data the check would have to cut away.
#include "fs/fsck/geometry.h"

#include <algorithm>
#include <cstring>
#include <tuple>
#include <unordered_set>

#include "fs/fsck/checker.h"
#include "fs/fsck/super.h"

namespace daxfs::fsck {

namespace {

std::string num(uint64_t v) { return std::to_string(v); }

// The last chunk of the chain the superblock names, followed as far as it goes on the device; 0
// when the link leads nowhere. Only a hint for the journal's size: the checker validates the chain.
uint64_t oldest_chunk_hint(const Image& image, const fs::SuperBlock& sb) {
  uint64_t last = 0;
  std::unordered_set<uint64_t> seen;
  for (uint64_t b = sb.first_chunk; b > 0 && b < image.blocks() && seen.insert(b).second;) {
    fs::ChunkHeader h;
    memcpy(&h, image.block(b), 16);
    if (h.magic != fs::kChunkMagic) break;
    last = b;
    b = h.next;
  }
  return last;
}

struct Candidate {
  fs::SuperBlock sb;
  Evidence evidence;
  bool count_agrees = false;  // the media's journal is what mkfs.daxfs makes for this block count
  bool chunk_agrees = false;  // the oldest inode chunk begins right after this journal
  int changes = 0;            // fields that differ from the media
};

// Better is bigger. What is lost decides first; then which block count the journal's size speaks
// for; then the fewest changes (a geometry a mount accepts and that loses nothing is legal: a
// smaller journal than mkfs.daxfs makes, a filesystem smaller than a grown device); then where
// the metadata begins.
auto rank(const Candidate& c) {
  return std::make_tuple(c.evidence.reached, c.evidence.data_blocks, -static_cast<int64_t>(c.evidence.errors),
                         c.count_agrees, -c.changes, c.chunk_agrees);
}

// Checks the filesystem under `sb`, with a committed journal transaction replayed (into a private
// overlay) as that geometry finds it.
Evidence evaluate(const Image& image, const fs::SuperBlock& sb, uint64_t claimed) {
  Image view = image;
  if (scan_journal(view, sb).state == JournalState::kCommitted) (void)replay_into_overlay(view, sb);
  CheckOptions options;
  options.claimed_blocks = claimed;
  return check_filesystem(view, sb, options).evidence;
}

}  // namespace

GeometryDecision decide_geometry(const Image& image, const fs::SuperBlock& media) {
  GeometryDecision out;
  out.sb = media;
  fs::SuperBlock& sb = out.sb;
  const uint64_t device = image.blocks();
  const bool larger = media.block_count > device;
  if (device < fs::kMinBlocks) {
    out.unrepairable = "the device (" + num(device) + " blocks) is smaller than the smallest daxfs (" +
                       num(fs::kMinBlocks) + " blocks, 16 MiB)";
    if (larger)
      out.unrepairable += " and than its filesystem (" + num(media.block_count) +
                          " blocks): it was truncated (restore its size, then run fsck.daxfs again)";
    return out;
  }
  auto fix = [&](std::string detail) { out.problems.push_back(Problem{"superblock", 0, std::move(detail)}); };
  if (sb.block_size != fs::kBlockSize) {
    fix("the block size " + num(sb.block_size) + " becomes " + num(fs::kBlockSize) + ", the only one daxfs has");
    sb.block_size = fs::kBlockSize;
  }
  // Exactly what mkfs.daxfs writes for this device: every piece of evidence agrees with the fields.
  if (sb.block_count == device && sb.journal_start == 1 && sb.journal_blocks == mkfs_journal_blocks(device))
    return out;

  std::vector<uint64_t> counts{device};
  if (sb.block_count < device) counts.push_back(sb.block_count);
  std::vector<uint64_t> journals{sb.journal_blocks};
  for (uint64_t c : counts) journals.push_back(mkfs_journal_blocks(c));
  for (uint64_t chunk : {oldest_chunk_hint(image, sb), fs::ino_block(sb.root_ino)})
    if (chunk > 1) journals.push_back(chunk - 1);
  const uint64_t claimed = larger ? media.block_count : 0;
  std::vector<Candidate> candidates;
  for (uint64_t c : counts) {
    for (uint64_t j : journals) {
      Candidate k;
      k.sb = sb;
      k.sb.block_count = c;
      k.sb.journal_start = 1;
      k.sb.journal_blocks = j;
      if (fs::geometry_error(k.sb, device) != nullptr) continue;
      bool seen = false;
      for (const Candidate& o : candidates)
        seen |= o.sb.block_count == c && o.sb.journal_blocks == j;
      if (seen) continue;
      k.evidence = evaluate(image, k.sb, claimed);
      k.count_agrees = mkfs_journal_blocks(c) == media.journal_blocks;
      k.chunk_agrees = j + 1 == k.evidence.oldest_chunk;
      k.changes = (c != media.block_count) + (media.journal_start != 1) + (j != media.journal_blocks);
      candidates.push_back(k);
    }
  }
  // Never empty: the device's size with mkfs's journal is always possible on a device this big.
  const Candidate* best = &candidates.front();
  for (const Candidate& k : candidates)
    if (rank(k) > rank(*best)) best = &k;

  // Bigger than the device and referring past its end: the device lost its tail. Shrinking the
  // filesystem would throw away what the metadata says was there (unless the field is garbage
  // that even the journal's size contradicts).
  if (larger && best->evidence.past_end > 0 && media.journal_blocks == mkfs_journal_blocks(media.block_count)) {
    out.unrepairable = "the filesystem (" + num(media.block_count) + " blocks) is larger than its device (" +
                       num(device) + " blocks) and refers to " + num(best->evidence.past_end) +
                       " places past the device's end (the first at block " + num(best->evidence.first_past_end) +
                       "): it was truncated below its metadata (restore its size, " + num(media.block_count) +
                       " blocks of 4096 bytes, then run fsck.daxfs again)";
    out.problems.clear();
    return out;
  }

  if (best->sb.block_count != media.block_count) {
    std::string why = larger ? "is larger than the device (" + num(device) + " blocks)"
                      : media.block_count < fs::kMinBlocks
                          ? "is smaller than any daxfs (" + num(fs::kMinBlocks) + " blocks)"
                          : "disagrees with the device (" + num(device) + " blocks) and the metadata";
    fix("the block count " + num(media.block_count) + " " + why + "; it becomes " + num(best->sb.block_count) +
        (best->sb.block_count == device ? ", the device's" : ""));
  }
  if (best->sb.journal_start != media.journal_start || best->sb.journal_blocks != media.journal_blocks) {
    uint64_t j = best->sb.journal_blocks;
    fs::SuperBlock as_was = best->sb;  // the media's journal in the chosen filesystem
    as_was.journal_start = media.journal_start;
    as_was.journal_blocks = media.journal_blocks;
    bool journal_impossible = fs::geometry_error(as_was, device) != nullptr;
    fix("the journal geometry (start " + num(media.journal_start) + ", " + num(media.journal_blocks) + " blocks) " +
        (journal_impossible ? "is impossible" : "disagrees with the metadata") + "; it becomes start 1, " + num(j) +
        " blocks" +
        (j + 1 == best->evidence.oldest_chunk ? ", ending where the first inode chunk begins"
         : j == mkfs_journal_blocks(best->sb.block_count) ? ", what mkfs.daxfs makes"
                                                           : ""));
  }
  sb.block_count = best->sb.block_count;
  sb.journal_start = best->sb.journal_start;
  sb.journal_blocks = best->sb.journal_blocks;
  return out;
}

}  // namespace daxfs::fsck
