// Memory failure (Linux's xfs_dax_notify_failure()): the device's holder notice for poisoned
// bytes. For file data the reverse map names every owner, every reflink sharer included, and
// each owner's mappers lose the page through the layout sink (the DAX layer signals them; the
// kernel page cache drops its pages); reads of the range fail with EIO from then on.
//
// Metadata is where daxfs does better than XFS, which shuts down (SHUTDOWN_CORRUPT_ONDISK): the
// daemon holds every record in memory, so a poisoned block is rebuilt from that copy in one
// transaction and the bad block is retired (freed, and never handed out again while poisoned):
//   extent-map and directory record blocks, symlink targets, xattr blobs: written to a new block
//     that takes the old one's place in its chain (or in the inode);
//   the refcount records: the whole chain rewritten into new blocks, the superblock repointed;
//   an inode chunk: its location is its inodes' numbers, so it cannot move: the chunk is written
//     whole from memory through the journal, then a recovery write of the same bytes clears the
//     poison (what Linux's pmem driver does for a full-sector write);
//   the journal: between transactions it holds nothing live (the commit empties it): the
//     poisoned blocks get a recovery write of zeros;
//   the superblock: not held apart from the media here: the filesystem shuts down.
// docs/dax-design.md ("Memory failure") says the same for users.
#include <cstdio>
#include <cstring>

#include "fs/filesystem.h"
#include "fs/ondisk/codec.h"

namespace daxfs::fs {

namespace {

const char* kind_name(Filesystem::MetaKind k) {
  switch (k) {
    case Filesystem::MetaKind::kSuper: return "superblock";
    case Filesystem::MetaKind::kJournal: return "journal";
    case Filesystem::MetaKind::kInodes: return "inode chunk";
    case Filesystem::MetaKind::kExtentMap: return "extent map";
    case Filesystem::MetaKind::kDirectory: return "directory";
    case Filesystem::MetaKind::kSymlink: return "symlink target";
    case Filesystem::MetaKind::kXattr: return "xattr blob";
    case Filesystem::MetaKind::kRefcount: return "refcount records";
    case Filesystem::MetaKind::kNone: break;
  }
  return "unowned";
}

}  // namespace

Filesystem::MetaOwner Filesystem::metadata_owner_locked(uint64_t block) const {
  if (block == 0) return {MetaKind::kSuper, 0};
  if (block >= sb_->journal_start && block < sb_->journal_start + sb_->journal_blocks) return {MetaKind::kJournal, 0};
  if (inodes_.chunks().count(block)) return {MetaKind::kInodes, 0};
  for (auto& [ino, in] : inodes_) {
    for (uint64_t b : in->record_blocks)
      if (b == block) return {in->is_dir() ? MetaKind::kDirectory : MetaKind::kExtentMap, ino};
    if (in->is_symlink() && in->d.head == block) return {MetaKind::kSymlink, ino};
    uint64_t xb = in->d.xattr_block, xn = (in->d.xattr_length + kBlockSize - 1) / kBlockSize;
    if (xb != 0 && block >= xb && block < xb + xn) return {MetaKind::kXattr, ino};
  }
  for (uint64_t b : owners_.refcounts().blocks())
    if (b == block) return {MetaKind::kRefcount, 0};
  return {MetaKind::kNone, 0};
}

Result<std::string> Filesystem::rebuild_metadata_locked(uint64_t block, const MetaOwner& owner) {
  Txn txn;
  DirtyGuard guard(space_, txn);
  switch (owner.kind) {
    case MetaKind::kNone:
    case MetaKind::kSuper:
      return error(EIO);
    case MetaKind::kJournal: {
      // No transaction is in flight under the exclusive mu_, and a commit leaves the journal
      // empty: the block holds nothing live.
      char zero[kBlockSize] = {};
      TRY(dev_->write(block * kBlockSize, zero, sizeof zero));
      return std::string("rewritten in place (it held no live transaction)");
    }
    case MetaKind::kInodes: {
      char image[kBlockSize] = {};
      ChunkHeader ch{};
      ch.magic = kChunkMagic;
      ch.next = inodes_.chunks().at(block);
      memcpy(image, &ch, sizeof ch);
      for (uint32_t slot = 1; slot < kInodesPerChunk; slot++) {
        const Inode* in = inodes_.get(make_ino(block, slot));
        if (in && in->d.mode != 0) memcpy(image + slot * kInodeSize, &in->d, sizeof in->d);
      }
      txn.write(block * kBlockSize, image, sizeof image);
      TRY(space_.commit_locked(txn));
      // The journal made the bytes durable; the recovery write of the same bytes clears the poison.
      TRY(dev_->write(block * kBlockSize, image, sizeof image));
      return std::string("rewritten in place from memory (inode numbers are its location)");
    }
    case MetaKind::kExtentMap:
    case MetaKind::kDirectory: {
      Inode& in = *inodes_.get(owner.ino);
      TRY(space_.reserve_locked(1));  // an operation's reserve stays whole
      auto& blocks = in.record_blocks;  // creation order: each block's chain link is the one before
      size_t i = std::find(blocks.begin(), blocks.end(), block) - blocks.begin();
      BlockRange fresh = TRY(space_.alloc_locked(1, block));
      char image[kBlockSize] = {};
      RecordBlockHeader h{owner.kind == MetaKind::kDirectory ? kDirMagic : kExtentMagic, in.ino,
                          i > 0 ? blocks[i - 1] : 0, 0};
      memcpy(image, &h, sizeof h);
      if (owner.kind == MetaKind::kExtentMap) {
        for (auto& [logical, e] : in.extents) {
          if (e.loc.block != block) continue;
          DiskExtent d{logical, e.physical, static_cast<uint32_t>(e.length), e.flags};
          memcpy(image + sizeof h + e.loc.slot * sizeof d, &d, sizeof d);
        }
      } else {
        for (uint32_t slot = 0; slot < kDirentsPerBlock; slot++) {
          const DirSlot& s = in.slots[i * kDirentsPerBlock + slot];
          if (!s.ino) continue;
          DiskDirent de{};
          de.ino = s.ino;
          de.type = s.type;
          de.name_length = static_cast<uint8_t>(s.name.size());
          memcpy(de.name, s.name.data(), s.name.size());
          memcpy(image + sizeof h + slot * sizeof de, &de, sizeof de);
        }
      }
      dev_->memcpy_persist(fresh.start * kBlockSize, image, sizeof image);  // before it is linked
      if (i + 1 == blocks.size()) {
        in.d.head = fresh.start;
        store_inode(txn, in);
      } else {
        txn.write(blocks[i + 1] * kBlockSize + offsetof(RecordBlockHeader, next), &fresh.start, sizeof fresh.start);
      }
      txn.free_after_commit(block, 1);  // poisoned: the allocator retires it rather than reuse it
      blocks[i] = fresh.start;
      for (auto& [logical, e] : in.extents)
        if (e.loc.block == block) e.loc.block = fresh.start;
      for (RecordLoc& loc : in.free_records)
        if (loc.block == block) loc.block = fresh.start;
      TRY(space_.commit_locked(txn));
      return "moved to block " + std::to_string(fresh.start);
    }
    case MetaKind::kSymlink: {
      Inode& in = *inodes_.get(owner.ino);
      TRY(space_.reserve_locked(1));
      BlockRange fresh = TRY(space_.alloc_locked(1, block));
      char image[kBlockSize] = {};
      memcpy(image, in.symlink.data(), in.symlink.size());
      dev_->memcpy_persist(fresh.start * kBlockSize, image, sizeof image);
      in.d.head = fresh.start;
      store_inode(txn, in);
      txn.free_after_commit(block, 1);
      TRY(space_.commit_locked(txn));
      return "moved to block " + std::to_string(fresh.start);
    }
    case MetaKind::kXattr: {
      Inode& in = *inodes_.get(owner.ino);
      TRY(space_.reserve_locked((in.d.xattr_length + kBlockSize - 1) / kBlockSize));
      TRY(xattrs_.store_locked(txn, in));  // a new blob; the old one is freed (and retired)
      TRY(space_.commit_locked(txn));
      return "moved to block " + std::to_string(in.d.xattr_block);
    }
    case MetaKind::kRefcount:
      TRY(space_.reserve_locked(owners_.refcounts().blocks_needed()));
      TRY(owners_.rewrite_refcounts_locked(txn));
      TRY(space_.commit_locked(txn));
      return std::string("the record chain rewritten into new blocks");
  }
  return error(EIO);
}

void Filesystem::notify_failure(uint64_t offset, uint64_t length, pmemdev::FailureKind kind) {
  counters_.poison_events++;
  if (kind == pmemdev::FailureKind::kPreRemove) {
    shutdown("device pre-removal");
    return;
  }
  uint64_t first = offset / kBlockSize;
  uint64_t last = std::max(first + 1, (offset + length + kBlockSize - 1) / kBlockSize);
  struct Owner {
    uint64_t ino, offset;
  };
  std::vector<Owner> owners;
  std::vector<std::string> metadata;  // one line each
  {
    std::unique_lock lock(mu_);
    std::vector<bool> data(last - first, false);
    for (const RmapRange& r : owners_.rmap().query(first, last - first)) {
      for (const RmapOwner& o : r.owners)
        for (uint64_t b = 0; b < r.length; b++) owners.push_back({o.ino, (o.logical + b) * kBlockSize});
      for (uint64_t b = r.physical; b < r.physical + r.length; b++)
        if (b >= first && b < last) data[b - first] = true;
    }
    for (uint64_t b = first; b < last && b < sb_->block_count; b++) {
      // Data, or a notice that is stale by now (cleared since, or delivered again after the
      // device's event queue overflowed, of a block already rebuilt elsewhere): nothing to do.
      if (data[b - first] || !mounted_ || !dev_->poisoned(b * kBlockSize, kBlockSize)) continue;
      MetaOwner m = metadata_owner_locked(b);
      if (m.kind == MetaKind::kNone) continue;  // free: the allocator keeps it back while poisoned
      std::string what = std::string(kind_name(m.kind)) + (m.ino ? " of inode " + std::to_string(m.ino) : "") +
                         " at block " + std::to_string(b);
      if (shutdown_) {
        metadata.push_back(what + ": not rebuilt (the filesystem is shut down)");
      } else if (m.kind == MetaKind::kSuper) {
        metadata.push_back(what + ": cannot be rebuilt");
        shutdown("poison in the superblock");
      } else if (opts_.read_only == ReadOnly::kYes) {
        // Memory holds the truth and nothing reads the block again while mounted; the next
        // mount refuses until the poison is cleared.
        metadata.push_back(what + ": not rebuilt (read-only mount; served from memory)");
      } else if (auto done = rebuild_metadata_locked(b, m)) {
        counters_.metadata_rebuilt++;
        metadata.push_back(what + ": " + *done);
      } else {
        metadata.push_back(what + ": rebuild failed: " + strerror(done.error()));
        shutdown("poisoned " + what + " could not be rebuilt");
      }
    }
  }
  std::string who;
  std::unordered_map<uint64_t, std::string> names;
  if (!owners.empty()) names = paths();  // one walk of the namespace per event, not per owner
  for (const Owner& o : owners) {
    auto name = names.find(o.ino);
    who += " inode " + std::to_string(o.ino) + " (" + (name == names.end() ? "unlinked" : name->second) +
           ") offset " + std::to_string(o.offset) + ";";
  }
  for (const std::string& m : metadata) who += " " + m + ";";
  fprintf(stderr, "daxfs: %s: memory failure at device offset %llu+%llu:%s\n", dev_->path().c_str(),
          static_cast<unsigned long long>(offset), static_cast<unsigned long long>(length),
          who.empty() ? " no file owns it" : who.c_str());
  if (layout_ && !owners.empty()) {
    std::vector<dax::LayoutSink::FileRange> ranges;
    for (const Owner& o : owners) ranges.push_back({o.ino, o.offset, kBlockSize});
    layout_->memory_failure(ranges);  // every sharer's mappers at once
  }
}

}  // namespace daxfs::fs
