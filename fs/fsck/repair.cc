// The checker's driver and the helpers its repairs share. A repair is planned as a journal
// transaction and applied to the model at once, so later phases see the filesystem as it will
// be. New structures (a root, /lost+found, a directory block, an inode chunk) are built whole in
// the transaction that links them in: a crash leaves either none of it or all of it.
#include <time.h>

#include <algorithm>
#include <cstddef>
#include <cstdio>
#include <cstring>

#include "fs/fsck/checker_impl.h"

namespace daxfs::fsck {

std::string printable(const std::string& name) {
  std::string out;
  for (unsigned char c : name) {
    if (c >= 0x20 && c < 0x7f && c != '\\') {
      out.push_back(static_cast<char>(c));
    } else {
      char hex[8];
      snprintf(hex, sizeof hex, "\\x%02x", c);
      out += hex;
    }
  }
  return out;
}

Checker::Checker(const Image& image, const fs::SuperBlock& sb, const CheckOptions& options)
    : img_(image),
      sb_(sb),
      data_start_(sb.journal_start + sb.journal_blocks),
      limit_(std::min(sb.block_count, image.blocks())),
      claimed_(options.claimed_blocks),
      alloc_cursor_(data_start_) {}

CheckResult Checker::run() {
  load_chunks();
  check_inodes();
  claim_chains();
  claim_blobs();
  claim_refcounts();  // metadata: before the data that may share a block with it loses
  claim_extents();
  load_dirents();
  note_generations();  // before any repair creates an inode, so the new one gets a fresh number
  resolve_root();
  check_entries();
  check_dir_links();
  check_connectivity();
  check_counts();
  check_refcounts();  // after every repair that changes mappings
  check_poison();
  collect_stats();
  for (const Problem& p : out_.problems) out_.evidence.errors += p.severity == Severity::kError;
  out_.evidence.past_end = past_end_;
  out_.evidence.first_past_end = first_past_end_;
  return std::move(out_);
}

size_t Checker::report(std::string kind, uint64_t ino, std::string detail, Severity severity) {
  out_.problems.push_back(Problem{std::move(kind), ino, std::move(detail), severity, false, false});
  return out_.problems.size() - 1;
}

void Checker::plan(size_t problem, fs::Txn txn) { plan(std::vector<size_t>{problem}, std::move(txn)); }

void Checker::plan(const std::vector<size_t>& problems, fs::Txn txn, std::vector<InPlaceWrite> prepare) {
  for (size_t p : problems) out_.problems[p].fixable = true;
  out_.fixes.push_back(Fix{problems, std::move(txn), std::move(prepare)});
}

Checker::Node* Checker::live(uint64_t ino) {
  auto it = nodes_.find(ino);
  if (it == nodes_.end() || it->second.dropped) return nullptr;
  return &it->second;
}

// Freeing an inode is clearing its record: blocks are free when nothing references them.
void Checker::drop_inode(uint64_t ino, Node& n, std::string kind, std::string detail, Severity severity) {
  size_t p = report(std::move(kind), ino, std::move(detail), severity);
  plan_write(p, inode_offset(ino), fs::DiskInode{});
  n.dropped = true;
  if (!n.mapped.empty()) remap_problems_.push_back(p);  // its blocks lose a reference each
}

void Checker::remove_entry(Entry& e, std::string kind, uint64_t dir, std::string detail) {
  size_t p = report(std::move(kind), dir, std::move(detail));
  plan_write(p, e.offset + offsetof(fs::DiskDirent, ino), uint64_t{0});  // ino 0: a free slot
  e.removed = true;
}

std::optional<uint64_t> Checker::alloc_block(OwnerKind kind) {
  // Never a poisoned block, as the filesystem's allocator: what fsck builds there would be lost.
  bool poison = !img_.device().list_errors().empty();
  auto b = map_.first_free(alloc_cursor_, limit_);
  while (b && poison && img_.device().poisoned(*b * fs::kBlockSize, fs::kBlockSize))
    b = map_.first_free(*b + 1, limit_);
  if (!b) return std::nullopt;
  map_.claim(*b, 1, {kind, 0});
  alloc_cursor_ = *b + 1;
  fresh_blocks_.insert(*b);
  return b;
}

std::optional<uint64_t> Checker::alloc_inode(fs::Txn& txn) {
  if (next_free_slot_ < free_slots_.size()) return free_slots_[next_free_slot_++];
  // A new chunk at the head of the chain, every slot free but the one handed out.
  auto b = alloc_block();
  if (!b) return std::nullopt;
  std::vector<char> block(fs::kBlockSize, 0);
  fs::ChunkHeader h{};
  h.magic = fs::kChunkMagic;
  h.next = sb_.first_chunk;
  memcpy(block.data(), &h, sizeof h);
  txn.write(*b * fs::kBlockSize, block.data(), fs::kBlockSize);
  sb_.first_chunk = *b;
  txn.write_obj(offsetof(fs::SuperBlock, first_chunk), sb_.first_chunk);
  for (uint32_t slot = 2; slot < fs::kInodesPerChunk; slot++) free_slots_.push_back(fs::make_ino(*b, slot));
  return fs::make_ino(*b, 1);
}

std::optional<uint64_t> Checker::create_dir(fs::Txn& txn, uint64_t parent) {
  auto ino = alloc_inode(txn);
  if (!ino) return std::nullopt;
  Node n;
  n.d.mode = S_IFDIR | 0700;  // root-owned and private, as e2fsck makes /lost+found
  n.d.nlink = 2;
  n.d.generation = sb_.next_generation++;
  n.d.parent = parent != 0 ? parent : *ino;
  timespec now;
  clock_gettime(CLOCK_REALTIME, &now);
  n.d.atime = n.d.mtime = n.d.ctime = n.d.btime = fs::Timespec{now.tv_sec, static_cast<uint32_t>(now.tv_nsec), 0};
  if (parent == 0) n.d.mode = S_IFDIR | 0755;  // a new root
  txn.write_obj(inode_offset(*ino), n.d);
  txn.write_obj(offsetof(fs::SuperBlock, next_generation), sb_.next_generation);
  nodes_[*ino] = std::move(n);
  return ino;
}

std::optional<uint64_t> Checker::free_dirent(fs::Txn& txn, uint64_t dir_ino, Node& dir) {
  for (uint64_t b : dir.blocks) {
    bool fresh = fresh_blocks_.count(b) != 0;
    for (uint32_t slot = 0; slot < fs::kDirentsPerBlock; slot++) {
      uint64_t off = b * fs::kBlockSize + sizeof(fs::RecordBlockHeader) + slot * sizeof(fs::DiskDirent);
      if (taken_.count(off)) continue;
      uint64_t ino = 0;
      if (!fresh) memcpy(&ino, img_.block(b) + (off % fs::kBlockSize), sizeof ino);
      if (ino != 0) continue;
      taken_.insert(off);
      return off;
    }
  }
  // A new directory block at the head of the chain, as fs/dir.cc adds one.
  auto b = alloc_block();
  if (!b) return std::nullopt;
  std::vector<char> block(fs::kBlockSize, 0);
  fs::RecordBlockHeader h{fs::kDirMagic, dir_ino, dir.d.head, 0};
  memcpy(block.data(), &h, sizeof h);
  txn.write(*b * fs::kBlockSize, block.data(), fs::kBlockSize);
  dir.d.head = *b;
  txn.write_obj(inode_offset(dir_ino) + offsetof(fs::DiskInode, head), dir.d.head);
  dir.blocks.insert(dir.blocks.begin(), *b);
  uint64_t off = *b * fs::kBlockSize + sizeof(fs::RecordBlockHeader);
  taken_.insert(off);
  return off;
}

bool Checker::add_entry(fs::Txn& txn, uint64_t dir_ino, Node& dir, const std::string& name, uint64_t target) {
  auto off = free_dirent(txn, dir_ino, dir);
  if (!off) return false;
  const Node& t = nodes_.at(target);
  fs::DiskDirent de{};
  de.ino = target;
  de.type = dtype(t.d.mode);
  de.name_length = static_cast<uint8_t>(name.size());
  memcpy(de.name, name.data(), name.size());
  txn.write_obj(*off, de);
  dir.entries.push_back(Entry{name, target, de.type, *off});
  return true;
}

std::optional<uint64_t> Checker::free_extent_record(const Node& n) {
  for (uint64_t b : n.blocks) {
    for (uint32_t slot = 0; slot < fs::kExtentsPerBlock; slot++) {
      uint64_t off = b * fs::kBlockSize + sizeof(fs::RecordBlockHeader) + slot * sizeof(fs::DiskExtent);
      if (taken_.count(off)) continue;
      fs::DiskExtent e;
      memcpy(&e, img_.block(b) + (off % fs::kBlockSize), sizeof e);
      if (e.length != 0) continue;
      taken_.insert(off);
      return off;
    }
  }
  return std::nullopt;
}

}  // namespace daxfs::fsck
