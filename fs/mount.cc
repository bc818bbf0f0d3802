// Mount: superblock checks, journal recovery, loading every inode's metadata into memory (time
// and memory follow the metadata, not the device size), rebuilding the allocator, freeing
// orphans; and unmount, shutdown, statfs and the holder's failure notice.
#include <sys/file.h>
#include <syslog.h>
#include <time.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "fs/filesystem.h"

namespace daxfs::fs {

// Reads the on-media metadata into a Filesystem. Every check failure is corruption: mount
// refuses with EUCLEAN and the reason (fsck.daxfs repairs).
class Loader {
 public:
  Loader(Filesystem& fs, std::string& why) : fs_(fs), why_(why) {}

  Status load() {
    const SuperBlock& sb = *fs_.sb_;
    fs_.alloc_.reset(sb.journal_start + sb.journal_blocks, sb.block_count);
    fs_.next_generation_ = sb.next_generation;
    uint64_t chunk = sb.first_chunk;
    while (chunk != 0) {
      if (!block_ok(chunk) || !fs_.alloc_.mark_used(chunk, 1))
        return corrupt("inode chunk " + std::to_string(chunk) + " is out of range or used twice");
      const char* p = block(chunk);
      ChunkHeader ch;
      memcpy(&ch, p, sizeof ch);
      if (ch.magic != kChunkMagic) return corrupt("bad inode chunk magic at block " + std::to_string(chunk));
      for (uint32_t slot = 1; slot < kInodesPerChunk; slot++) {
        uint64_t ino = make_ino(chunk, slot);
        auto in = std::make_unique<Inode>();
        in->ino = ino;
        memcpy(&in->d, p + slot * kInodeSize, sizeof(DiskInode));
        if (in->d.mode == 0) {
          fs_.free_inos_.push_back(ino);
          continue;
        }
        fs_.inodes_[ino] = std::move(in);
      }
      chunk = ch.next;
    }
    // Newest chunk first in the chain: hand out low slots of the newest chunks first.
    std::reverse(fs_.free_inos_.begin(), fs_.free_inos_.end());
    for (auto& [ino, in] : fs_.inodes_) {
      TRY(load_inode(*in));
      // The superblock's copy is written only at a clean unmount: never reuse a generation.
      fs_.next_generation_ = std::max(fs_.next_generation_, in->d.generation + 1);
    }
    TRY(load_refcounts());
    auto root = fs_.inodes_.find(sb.root_ino);
    if (root == fs_.inodes_.end() || !root->second->is_dir()) return corrupt("the root directory is missing");
    fs_.root_ = sb.root_ino;
    return check_namespace();
  }

 private:
  // The namespace invariants an operation relies on (a wrong link count would let an unlink free
  // an inode another entry still names; a parent loop would hang rename): every entry names a
  // live inode of the type it says; a directory has exactly one entry, in the directory its
  // parent pointer names; link counts match; everything live is reachable from the root.
  Status check_namespace() {
    std::unordered_map<uint64_t, uint32_t> refs;
    for (auto& [ino, in] : fs_.inodes_) {
      if (!in->is_dir()) continue;
      for (const DirSlot& s : in->slots) {
        if (s.ino == 0) continue;
        std::string where = "directory " + std::to_string(ino) + " entry '" + s.name + "'";
        auto t = fs_.inodes_.find(s.ino);
        if (t == fs_.inodes_.end() || t->second->d.nlink == 0) return corrupt(where + " names a free inode");
        const Inode& target = *t->second;
        if (s.type != ((target.d.mode >> 12) & 15)) return corrupt(where + " has the wrong file type");
        if (target.is_dir()) {
          in->subdirs++;
          if (s.ino == fs_.root_ || target.d.parent != ino) return corrupt(where + " disagrees with its parent pointer");
        }
        refs[s.ino]++;
      }
    }
    Inode& root = *fs_.inodes_.at(fs_.root_);
    if (root.d.parent != fs_.root_) return corrupt("the root directory's parent is not itself");
    for (auto& [ino, in] : fs_.inodes_) {
      uint32_t r = refs[ino];
      std::string who = "inode " + std::to_string(ino);
      if (in->d.nlink == 0) {
        if (r != 0) return corrupt(who + " has link count 0 but is named");
        continue;  // an orphan: freed below
      }
      if (in->is_dir()) {
        if (ino != fs_.root_ && r != 1) return corrupt(who + " is a directory with " + std::to_string(r) + " names");
        if (in->d.nlink != 2 + in->subdirs) return corrupt(who + " has a wrong link count");
      } else if (in->d.nlink != r) {
        return corrupt(who + " has link count " + std::to_string(in->d.nlink) + " but " + std::to_string(r) + " names");
      }
    }
    // Reachability: a disconnected cycle of directories would satisfy every count above.
    std::vector<uint64_t> stack{fs_.root_};
    size_t reached = 0;
    std::unordered_map<uint64_t, bool> seen{{fs_.root_, true}};
    while (!stack.empty()) {
      Inode& d = *fs_.inodes_.at(stack.back());
      stack.pop_back();
      reached++;
      for (const DirSlot& s : d.slots)
        if (s.ino && !seen[s.ino]) {
          seen[s.ino] = true;
          if (fs_.inodes_.at(s.ino)->is_dir()) stack.push_back(s.ino);
          else reached++;
        }
    }
    size_t live = 0;
    for (auto& [ino, in] : fs_.inodes_) live += in->d.nlink != 0;
    if (reached != live) return corrupt(std::to_string(live - reached) + " inodes are not reachable from the root");
    return {};
  }

  bool block_ok(uint64_t b) const {
    const SuperBlock& sb = *fs_.sb_;
    return b >= sb.journal_start + sb.journal_blocks && b < sb.block_count;
  }
  const char* block(uint64_t b) const { return fs_.dev_->base() + b * kBlockSize; }
  Errno corrupt(const std::string& what) {
    why_ = what + " (run fsck.daxfs)";
    return error(EUCLEAN);
  }

  // Data blocks: each mapped block is allocated once however many files share it, and must not
  // be metadata; the persistent refcount records must say exactly what the extent maps imply.
  Status load_refcounts() {
    for (uint64_t b = fs_.sb_->refcount_head, n = 0; b != 0; n++) {
      if (!block_ok(b) || !fs_.alloc_.mark_used(b, 1) || n > fs_.sb_->block_count)
        return corrupt("refcount block " + std::to_string(b) + " is out of range or used twice");
      RecordBlockHeader h;
      memcpy(&h, block(b), sizeof h);
      if (h.magic != kRefcountMagic) return corrupt("refcount block " + std::to_string(b) + " has a bad header");
      fs_.refcounts_.load_block(b);
      for (uint32_t slot = 0; slot < kRefcountsPerBlock; slot++) {
        DiskRefcount r;
        memcpy(&r, block(b) + sizeof(RecordBlockHeader) + slot * sizeof(DiskRefcount), sizeof r);
        if (r.length == 0) {
          fs_.refcounts_.load_free_slot({b, slot});
          continue;
        }
        if (r.count < 2 || !fs_.refcounts_.load(r.start, r, {b, slot}))
          return corrupt("refcount record at block " + std::to_string(r.start) + " is invalid or overlaps another");
      }
      b = h.next;
    }
    fs_.refcount_head_ = fs_.sb_->refcount_head;
    bool ok = true;
    std::string what;
    if (!(fs_.sb_->features & kFeatureReflink)) {
      // Without reflink nothing may be shared, and there are no refcounts.
      if (fs_.sb_->refcount_head != 0) return corrupt("refcount records on a filesystem without reflink");
      fs_.rmap_.for_each_segment([&](uint64_t start, uint64_t, const std::vector<RmapOwner>& owners) {
        if (ok && owners.size() > 1) {
          ok = false;
          what = "block " + std::to_string(start) + " is mapped twice on a filesystem without reflink";
        }
      });
      if (!ok) return corrupt(what);
    }
    fs_.rmap_.for_each_segment([&](uint64_t start, uint64_t length, const std::vector<RmapOwner>&) {
      if (ok && !fs_.alloc_.mark_used(start, length)) {
        ok = false;
        what = "data blocks " + std::to_string(start) + "+" + std::to_string(length) + " are also metadata or out of range";
      }
    });
    if (!ok) return corrupt(what);
    // Recorded counts against the counts the extent maps imply, both ways.
    for (const auto& [start, rec] : fs_.refcounts_.records()) {
      fs_.rmap_.for_each_count(start, rec.length, [&](uint64_t s, uint64_t, uint32_t c) {
        if (ok && c != rec.count) {
          ok = false;
          what = "block " + std::to_string(s) + " has refcount record " + std::to_string(rec.count) + " but " +
                 std::to_string(c) + " mappings";
        }
      });
    }
    fs_.rmap_.for_each_segment([&](uint64_t start, uint64_t length, const std::vector<RmapOwner>& owners) {
      if (ok && owners.size() >= 2) {
        for (uint64_t b = start; b < start + length && ok;) {
          auto it = fs_.refcounts_.records().upper_bound(b);
          if (it == fs_.refcounts_.records().begin() || std::prev(it)->first + std::prev(it)->second.length <= b) {
            ok = false;
            what = "block " + std::to_string(b) + " is shared without a refcount record";
            break;
          }
          --it;
          b = it->first + it->second.length;
        }
      }
    });
    if (!ok) return corrupt(what);
    return {};
  }

  // Walks a record-block chain; returns its blocks in creation order.
  Result<std::vector<uint64_t>> chain(const Inode& in, uint64_t magic) {
    std::vector<uint64_t> blocks;
    for (uint64_t b = in.d.head; b != 0;) {
      if (!block_ok(b) || !fs_.alloc_.mark_used(b, 1))
        return corrupt("inode " + std::to_string(in.ino) + " record block out of range or used twice");
      RecordBlockHeader h;
      memcpy(&h, block(b), sizeof h);
      if (h.magic != magic || h.owner != in.ino)
        return corrupt("inode " + std::to_string(in.ino) + " record block " + std::to_string(b) + " has a bad header");
      blocks.push_back(b);
      b = h.next;
    }
    std::reverse(blocks.begin(), blocks.end());
    return blocks;
  }

  Status load_inode(Inode& in) {
    std::string who = "inode " + std::to_string(in.ino);
    if (in.is_reg()) {
      // Never trust an impossible size: the post-EOF trim at mount would free every block past
      // it (fsck.daxfs sets it from the extents instead, keeping the data).
      if (in.d.size > kMaxFileSize)
        return corrupt(who + " has an impossible file size " + std::to_string(in.d.size));
      in.record_blocks = TRY(chain(in, kExtentMagic));
      for (uint64_t b : in.record_blocks) {
        for (uint32_t slot = 0; slot < kExtentsPerBlock; slot++) {
          DiskExtent e;
          memcpy(&e, block(b) + sizeof(RecordBlockHeader) + slot * sizeof(DiskExtent), sizeof e);
          if (e.length == 0) {
            in.free_records.push_back({b, slot});
            continue;
          }
          if (e.logical >= kMaxFileBlocks || e.length > kMaxFileBlocks - e.logical)
            return corrupt(who + " has an extent beyond the maximum file size");
          if (!block_ok(e.physical) || e.length > fs_.sb_->block_count - e.physical)
            return corrupt(who + " maps blocks " + std::to_string(e.physical) + "+" + std::to_string(e.length) +
                           " that are out of range");
          fs_.rmap_.add(e.physical, e.length, in.ino, e.logical, e.flags & kExtentUnwritten);
          auto next = in.extents.lower_bound(e.logical);
          if ((next != in.extents.end() && next->first < e.logical + e.length) ||
              (next != in.extents.begin() && std::prev(next)->first + std::prev(next)->second.length > e.logical))
            return corrupt(who + " has overlapping extents");
          in.extents[e.logical] = Extent{e.physical, e.length, e.flags & kExtentUnwritten, {b, slot}};
          in.data_blocks += e.length;
        }
      }
    } else if (in.is_dir()) {
      in.record_blocks = TRY(chain(in, kDirMagic));
      for (size_t ord = 0; ord < in.record_blocks.size(); ord++) {
        uint64_t b = in.record_blocks[ord];
        for (uint32_t slot = 0; slot < kDirentsPerBlock; slot++) {
          DiskDirent de;
          memcpy(&de, block(b) + sizeof(RecordBlockHeader) + slot * sizeof(DiskDirent), sizeof de);
          uint32_t index = static_cast<uint32_t>(ord * kDirentsPerBlock + slot);
          in.slots.emplace_back();
          if (de.ino == 0) {
            in.free_slots.push_back(index);
            continue;
          }
          if (de.name_length == 0 || de.name_length > kNameMax)
            return corrupt(who + " has a directory entry with a bad name length");
          std::string name(de.name, de.name_length);
          if (name == "." || name == ".." || name.find('/') != std::string::npos ||
              name.find('\0') != std::string::npos || !in.names.emplace(name, index).second)
            return corrupt(who + " has a bad or duplicate entry '" + name + "'");
          in.slots.back() = DirSlot{de.ino, de.type, std::move(name)};
        }
      }
      std::reverse(in.free_slots.begin(), in.free_slots.end());  // lowest first from the back
    } else if (in.is_symlink()) {
      if (in.d.size == 0 || in.d.size > kSymlinkMax || !block_ok(in.d.head) || !fs_.alloc_.mark_used(in.d.head, 1))
        return corrupt(who + " is a symlink with a bad target block");
      in.symlink.assign(block(in.d.head), in.d.size);
    }
    if (in.d.xattr_block != 0) {
      uint64_t blocks = (in.d.xattr_length + kBlockSize - 1) / kBlockSize;
      if (blocks == 0 || !block_ok(in.d.xattr_block) || !fs_.alloc_.mark_used(in.d.xattr_block, blocks))
        return corrupt(who + " has a bad xattr block");
      const char* p = block(in.d.xattr_block);
      uint64_t pos = 0, n = in.d.xattr_length;
      while (pos < n) {
        if (n - pos < 5) return corrupt(who + " has a truncated xattr");
        uint8_t nl = static_cast<uint8_t>(p[pos]);
        uint32_t vl;
        memcpy(&vl, p + pos + 1, 4);
        pos += 5;
        if (nl == 0 || n - pos < uint64_t{nl} + vl) return corrupt(who + " has a truncated xattr");
        in.xattrs.emplace(std::string(p + pos, nl), std::string(p + pos + nl, vl));
        pos += nl + vl;
      }
    }
    return {};
  }

  Filesystem& fs_;
  std::string& why_;
};

Filesystem::Filesystem(std::unique_ptr<pmemdev::Device> device, const MountOptions& opts)
    : dev_(std::move(device)), opts_(opts) {}

Filesystem::~Filesystem() {
  unmount();
  dev_->release();  // stops the notifier thread before any member it uses goes away
}

Result<std::unique_ptr<Filesystem>> Filesystem::mount(std::unique_ptr<pmemdev::Device> device,
                                                      const MountOptions& opts, std::string& why) {
  if (device->size() < sizeof(SuperBlock)) {
    why = "the device is too small to hold a daxfs";
    return error(EINVAL);
  }
  TRY(check_superblock(*device, why));
  std::unique_ptr<Filesystem> fs(new Filesystem(std::move(device), opts));
  fs->sb_ = reinterpret_cast<SuperBlock*>(fs->dev_->base());
  Status claimed = fs->dev_->claim(fs.get(), pmemdev::Device::Notifier::kDeferred);
  if (!claimed) {
    why = claimed.error() == EBUSY ? "the device is already mounted (held by another process)"
                                   : std::string("cannot claim the device: ") + strerror(claimed.error());
    return error(claimed.error());
  }
  fs->journal_ = std::make_unique<Journal>(*fs->dev_, fs->sb_->journal_start, fs->sb_->journal_blocks);
  auto replayed = fs->journal_->recover();
  if (!replayed) {
    why = "the journal is corrupt (run fsck.daxfs)";
    return error(replayed.error());
  }
  // The replay may have rewritten the superblock: check it again before trusting its geometry.
  TRY(check_superblock(*fs->dev_, why));
  fs->counters_.recovered_entries = *replayed;
  Loader loader(*fs, why);
  TRY(loader.load());
  return finish_mount(std::move(fs), opts);
}

Status Filesystem::check_superblock(const pmemdev::Device& device, std::string& why) {
  const auto* sb = reinterpret_cast<const SuperBlock*>(device.base());
  if (sb->magic != kSuperMagic) {
    why = "not a daxfs filesystem (no daxfs superblock; format it with mkfs.daxfs)";
    return error(EINVAL);
  }
  if (sb->version > kFormatVersion) {
    why = "the filesystem has format version " + std::to_string(sb->version) +
          ", newer than this daxfs supports (" + std::to_string(kFormatVersion) + ")";
    return error(EPROTONOSUPPORT);
  }
  if (sb->features & ~kKnownFeatures) {
    why = "the filesystem uses unknown features";
    return error(EPROTONOSUPPORT);
  }
  if (sb->version != kFormatVersion) {
    why = "unsupported format version " + std::to_string(sb->version) + " (run fsck.daxfs)";
    return error(EINVAL);
  }
  // The geometry rule fsck.daxfs repairs to (fs/format.h): what one refuses, the other reports.
  uint64_t device_blocks = device.size() / kBlockSize;
  if (sb->block_size == kBlockSize && sb->block_count > device_blocks) {
    why = "the device (" + std::to_string(device.size()) + " bytes) is smaller than its filesystem (" +
          std::to_string(sb->block_count * kBlockSize) + " bytes) (run fsck.daxfs)";
    return error(EINVAL);
  }
  if (const char* bad = geometry_error(*sb, device_blocks)) {
    why = std::string("the superblock's geometry is corrupt: ") + bad + " (run fsck.daxfs)";
    return error(sb->block_size != kBlockSize ? EINVAL : EUCLEAN);
  }
  // Pointers the Loader would follow before it can say which one is wrong (fsck.daxfs checks them
  // with the chunk chain and the root).
  if (sb->first_chunk >= sb->block_count || ino_block(sb->root_ino) >= sb->block_count) {
    why = "the superblock's geometry is corrupt: the inode chunk chain or the root is outside the filesystem "
          "(run fsck.daxfs)";
    return error(EUCLEAN);
  }
  return {};
}

Result<std::unique_ptr<Filesystem>> Filesystem::finish_mount(std::unique_ptr<Filesystem> fs,
                                                             const MountOptions& opts) {
  std::unique_lock lock(fs->mu_);
  fs->mounted_ = true;
  if (opts.read_only == ReadOnly::kNo) {
    // Orphans: unlinked while open when the last daemon died.
    std::vector<Inode*> orphans;
    for (auto& [ino, in] : fs->inodes_)
      if (in->d.nlink == 0) orphans.push_back(in.get());
    for (Inode* in : orphans) {
      TRY(fs->release_inode_locked(*in));
      fs->counters_.orphans_freed++;
    }
    // Written blocks past EOF are what a crash in the middle of a long truncate leaves: their
    // old data must never come back through a later extension. (Unwritten ones are
    // preallocation, legal past EOF.) The Loader refused any size past kMaxFileSize, so EOF is
    // a valid size here and the rounding cannot wrap.
    for (auto& [ino, in] : fs->inodes_) {
      if (!in->is_reg()) continue;
      if (in->d.size > kMaxFileSize) {
        fprintf(stderr, "daxfs: BUG: inode %llu has size %llu past the maximum after loading\n",
                static_cast<unsigned long long>(ino), static_cast<unsigned long long>(in->d.size));
        abort();
      }
      uint64_t eof = in->d.size / kBlockSize + (in->d.size % kBlockSize != 0);
      std::vector<std::pair<uint64_t, uint64_t>> stale;
      auto it = in->extents.upper_bound(eof);
      if (it != in->extents.begin()) --it;
      for (; it != in->extents.end(); ++it) {
        uint64_t s = std::max(eof, it->first), e = it->first + it->second.length;
        if (s < e && !it->second.unwritten()) stale.push_back({s, e});
      }
      if (stale.empty()) continue;
      Txn txn;
      for (auto [s, e] : stale) {
        TRY(fs->unmap_locked(txn, *in, s, e, true));
        TRY(fs->commit_if_large_locked(txn, *in));
      }
      fs->store_inode(txn, *in);
      TRY(fs->commit_locked(txn));
      fs->counters_.post_eof_trimmed += stale.size();
    }
    Txn txn;
    SuperBlock s = *fs->sb_;
    s.clean = 0;
    s.mount_count++;
    txn.write(0, &s, offsetof(SuperBlock, uuid));
    TRY(fs->commit_locked(txn));
  }
  return fs;
}

void Filesystem::unmount() {
  {
    std::unique_lock lock(mu_);
    if (!mounted_) return;
    mounted_ = false;
    if (opts_.read_only == ReadOnly::kNo && !shutdown_) {
      Txn txn;
      SuperBlock s = *sb_;
      s.clean = 1;
      s.next_generation = next_generation_;
      txn.write(0, &s, offsetof(SuperBlock, uuid));
      (void)commit_locked(txn);
    }
  }
  // Outside mu_: the notifier thread being joined may be waiting for it in notify_failure().
  dev_->release();
}

void Filesystem::shutdown(const std::string& reason) {
  if (shutdown_.exchange(true)) return;
  fprintf(stderr, "daxfs: %s: filesystem shut down: %s\n", dev_->path().c_str(), reason.c_str());
  if (layout_) layout_->shut_down();
}

std::vector<uint64_t> Filesystem::referenced_inodes() {
  std::shared_lock lock(mu_);
  std::vector<uint64_t> out;
  for (auto& [ino, in] : inodes_)
    if (in->nlookup.load() > 0 || ino == root_) out.push_back(ino);
  return out;
}

Status Filesystem::check_alive() const {
  if (shutdown_.load()) return error(EIO);
  return {};
}

Status Filesystem::check_writable() const {
  TRY(check_alive());
  if (opts_.read_only == ReadOnly::kYes) return error(EROFS);
  return {};
}

Status Filesystem::commit_locked(Txn& txn) {
  std::vector<Txn::Free> frees = txn.frees();
  Status st = journal_->commit(txn);
  if (!st) {
    // A transaction too big for the journal is a bug in its bounds; stop before anything worse.
    shutdown("transaction of " + std::to_string(txn.bytes()) + " bytes does not fit the journal");
    txn.clear();
    return st;
  }
  counters_.transactions++;
  // Blocks freed by the transaction become allocatable only now that it is durable.
  for (const Txn::Free& f : frees) {
    alloc_.free(f.start, f.length);
    counters_.blocks_freed += f.length;
  }
  return {};
}

Status Filesystem::commit_if_large_locked(Txn& txn, Inode& in) {
  if (txn.bytes() < journal_->capacity() / 4) return {};
  store_inode(txn, in);
  return commit_locked(txn);
}

Filesystem::DirtyGuard::~DirtyGuard() {
  // Cancelling a transaction that already changed metadata in memory leaves memory ahead of the
  // media: stop, as XFS does when it cancels a dirty transaction. The next mount is consistent.
  if (!txn_.empty()) fs_.shutdown("an operation failed after it had changed metadata");
}

Status Filesystem::reserve_locked(uint64_t blocks) const {
  // Keep a few blocks for the record blocks and inode chunks an operation may need.
  if (alloc_.free_blocks() < blocks + kReserveBlocks) return error(ENOSPC);
  return {};
}

Result<BlockRange> Filesystem::alloc_locked(uint64_t want, uint64_t goal) {
  auto r = alloc_.alloc(want, goal);
  if (r) counters_.blocks_allocated += r->length;
  return r;
}



struct statvfs Filesystem::statfs() {
  std::shared_lock lock(mu_);
  struct statvfs s {};
  s.f_bsize = kBlockSize;
  s.f_frsize = kBlockSize;
  s.f_blocks = sb_->block_count;
  // Net of the blocks every operation keeps back (as XFS reports f_bfree/f_bavail net of its
  // reserve pool): what statfs promises, an allocation can have.
  uint64_t free = alloc_.free_blocks();
  s.f_bfree = free > kReserveBlocks ? free - kReserveBlocks : 0;
  s.f_bavail = s.f_bfree;
  s.f_ffree = free_inos_.size() + alloc_.free_blocks() * (kInodesPerChunk - 1);
  s.f_favail = s.f_ffree;
  s.f_files = inodes_.size() + s.f_ffree;
  s.f_namemax = kNameMax;
  s.f_fsid = 0;
  memcpy(&s.f_fsid, sb_->uuid, sizeof s.f_fsid);
  return s;
}

uint64_t Filesystem::inode_count() {
  std::shared_lock lock(mu_);
  return inodes_.size();
}

void Filesystem::notify_failure(uint64_t offset, uint64_t length, pmemdev::FailureKind kind) {
  counters_.poison_events++;
  if (kind == pmemdev::FailureKind::kPreRemove) {
    shutdown("device pre-removal");
    return;
  }
  // Issue 5 walks the rmap here. Until then: data poison is caught by reads (EIO); poison in
  // metadata shuts the filesystem down rather than risk returning wrong data.
  uint64_t block = offset / kBlockSize;
  bool metadata = block < sb_->journal_start + sb_->journal_blocks;
  fprintf(stderr, "daxfs: %s: memory failure at device offset %llu+%llu%s\n", dev_->path().c_str(),
          static_cast<unsigned long long>(offset), static_cast<unsigned long long>(length),
          metadata ? " (superblock/journal)" : "");
  if (metadata) shutdown("poison in the superblock or journal");
}

}  // namespace daxfs::fs
