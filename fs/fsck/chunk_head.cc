// check_filesystem(), and the one repair that needs more than the metadata's own pointers: a lost
// head of the inode chunk chain. The superblock's first_chunk is a single field in front of every
// inode; when it leads nowhere, or leaves out chunks that directory entries name, the checker alone
// would cut the chain there and lose those inodes. Chunks are never freed and each one links to
// the one made before it, so the real head is a chunk no other chunk links to: the device is
// scanned for chunk headers (the only scan fsck makes, and only then), and each head found is
// tried as the superblock's. The one that lets the most inodes be reached from the root wins.
// No thread-safety concerns (pure functions of an Image).
#include <algorithm>
#include <cstring>
#include <unordered_map>
#include <unordered_set>

#include "fs/fsck/checker_impl.h"

namespace daxfs::fsck {

namespace {

constexpr size_t kMaxHeads = 8;  // candidates tried; more means chunk-like blocks in file data

struct Head {
  uint64_t block;
  uint64_t chunks;  // length of its chain
  bool has_root;    // its chain holds the superblock's root inode
};

// Chunk headers in the data area, and which of them no other links to.
std::vector<Head> find_heads(const Image& image, const fs::SuperBlock& sb) {
  uint64_t start = sb.journal_start + sb.journal_blocks, limit = std::min(sb.block_count, image.blocks());
  std::unordered_map<uint64_t, uint64_t> next;  // chunk block -> its link
  for (uint64_t b = start; b < limit; b++) {
    fs::ChunkHeader h;
    memcpy(&h, image.block(b), 16);
    if (!fs::ondisk::chunk_error(h)) next.emplace(b, h.next);
  }
  std::unordered_set<uint64_t> linked;
  for (auto [b, n] : next) linked.insert(n);
  std::vector<Head> heads;
  for (auto [b, n] : next) {
    if (linked.count(b)) continue;
    Head h{b, 0, false};
    std::unordered_set<uint64_t> seen;
    for (uint64_t c = b; next.count(c) && seen.insert(c).second; c = next[c]) {
      h.chunks++;
      h.has_root |= c == fs::ino_block(sb.root_ino);
    }
    heads.push_back(h);
  }
  std::sort(heads.begin(), heads.end(), [](const Head& a, const Head& b) {
    if (a.has_root != b.has_root) return a.has_root;
    if (a.chunks != b.chunks) return a.chunks > b.chunks;
    return a.block < b.block;
  });
  if (heads.size() > kMaxHeads) heads.resize(kMaxHeads);
  return heads;
}

bool better(const Evidence& a, const Evidence& b) {
  if (a.reached != b.reached) return a.reached > b.reached;
  if (a.data_blocks != b.data_blocks) return a.data_blocks > b.data_blocks;
  return a.errors < b.errors;
}

}  // namespace

CheckResult check_filesystem(const Image& image, const fs::SuperBlock& sb, const CheckOptions& options) {
  CheckResult best = Checker(image, sb, options).run();
  const Evidence base = best.evidence;
  if (!options.recover_head || (!base.head_broken && base.unchained_chunks == 0)) return best;
  CheckOptions once = options;
  once.recover_head = false;
  const Head* chosen = nullptr;
  std::vector<Head> heads = find_heads(image, sb);
  for (const Head& h : heads) {
    if (h.block == sb.first_chunk) continue;
    fs::SuperBlock alt = sb;
    alt.first_chunk = h.block;
    CheckResult r = Checker(image, alt, once).run();
    if (better(r.evidence, best.evidence)) {
      best = std::move(r);
      chosen = &h;
    }
  }
  if (chosen == nullptr) return best;
  // The new head goes first: every later fix was planned with it in place (a new chunk links to it).
  std::string why = base.head_broken ? "leads to no inode chunk"
                                     : "leaves out inode chunks that directory entries name";
  Problem p{"chunk_chain", 0,
            "the superblock's link to the inode chunk chain (block " + std::to_string(sb.first_chunk) + ") " + why +
                "; the chain found by scanning the device, from block " + std::to_string(chosen->block) + " (" +
                std::to_string(chosen->chunks) + " chunks), takes its place"};
  p.fixable = true;
  best.problems.insert(best.problems.begin(), p);
  for (Fix& f : best.fixes)
    for (size_t& i : f.problems) i++;
  fs::Txn txn;
  txn.write_obj(offsetof(fs::SuperBlock, first_chunk), chosen->block);
  best.fixes.insert(best.fixes.begin(), Fix{{0}, std::move(txn), {}});
  best.evidence.errors++;
  return best;
}

}  // namespace daxfs::fsck
