// Mount: superblock checks, journal recovery, loading every inode's metadata (fs/load.cc),
// freeing orphans; and unmount, shutdown and statfs. The holder's failure notice: fs/notify_failure.cc.
#include <sys/file.h>
#include <syslog.h>
#include <time.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "fs/filesystem.h"
#include "fs/load.h"

namespace daxfs::fs {

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
  fs->sb_ = reinterpret_cast<const SuperBlock*>(fs->dev_->base());
  Status claimed = fs->dev_->claim(fs.get(), pmemdev::Device::Notifier::kDeferred);
  if (!claimed) {
    why = claimed.error() == EBUSY ? "the device is already mounted (held by another process)"
                                   : std::string("cannot claim the device: ") + strerror(claimed.error());
    return error(claimed.error());
  }
  fs->space_.set_journal(std::make_unique<Journal>(*fs->dev_, fs->sb_->journal_start, fs->sb_->journal_blocks));
  // The allocator never hands out a poisoned block (until the poison is cleared).
  pmemdev::Device* dev = fs->dev_.get();
  fs->space_.set_poison_check(
      [dev](uint64_t first, uint64_t count) { return dev->poisoned(first * kBlockSize, count * kBlockSize); });
  // Poison in the journal: a committed transaction in poisoned blocks cannot be replayed (the
  // mount refuses); anything else there is dead and gets a recovery write of zeros below.
  const uint64_t jstart = fs->sb_->journal_start * kBlockSize, jbytes = fs->sb_->journal_blocks * kBlockSize;
  bool heal_journal = false;
  if (dev->poisoned(jstart, jbytes)) {
    JournalHeader h;
    memcpy(&h, dev->base() + jstart, sizeof h);
    bool header_bad = dev->poisoned(jstart, kBlockSize);
    bool live_bad = h.magic == kJournalMagic &&
                    dev->poisoned(jstart, std::min<uint64_t>(jbytes, sizeof(JournalHeader) + h.bytes));
    if (header_bad || live_bad) {
      why = std::string("poisoned metadata: the journal's ") +
            (header_bad ? "header" : "committed transaction") +
            " cannot be read. `fsck.daxfs -n " + dev->path() + "` lists the poisoned blocks; `daxfsctl clear-error " +
            dev->path() + " --offset " + std::to_string(jstart) + " --length " + std::to_string(jbytes) +
            "`, then `fsck.daxfs -y " + dev->path() + "`, repairs the structure (the transaction may be lost)";
      return error(EIO);
    }
    heal_journal = opts.read_only == ReadOnly::kNo;
  }
  auto replayed = fs->space_.journal().recover();
  if (!replayed) {
    why = "the journal is corrupt (run fsck.daxfs)";
    return error(replayed.error());
  }
  if (heal_journal) {
    char zero[kBlockSize] = {};
    for (uint64_t off = jstart; off < jstart + jbytes; off += kBlockSize) {
      if (!dev->poisoned(off, kBlockSize)) continue;
      if (Status st = dev->write(off, zero, sizeof zero); !st) {
        why = "cannot rewrite a poisoned journal block: " + std::string(strerror(st.error()));
        return error(st.error());
      }
      fprintf(stderr, "daxfs: %s: poisoned journal block at device offset %llu held nothing live: rewritten\n",
              dev->path().c_str(), static_cast<unsigned long long>(off));
    }
  }
  // The replay may have rewritten the superblock: check it again before trusting its geometry.
  TRY(check_superblock(*fs->dev_, why));
  fs->counters_.recovered_entries = *replayed;
  InodeTable::Map inodes;
  std::vector<uint64_t> free_inos;
  uint64_t root = 0, next_generation = 1;
  Loader loader({*fs->dev_, *fs->sb_, fs->alloc_, fs->owners_, inodes, free_inos, root, next_generation}, why);
  TRY(loader.load());
  fs->inodes_.adopt(std::move(inodes), std::move(free_inos), root, next_generation);
  return finish_mount(std::move(fs), opts);
}

Status Filesystem::check_superblock(const pmemdev::Device& device, std::string& why) {
  const auto* sb = reinterpret_cast<const SuperBlock*>(device.base());
  if (device.poisoned(0, kBlockSize)) {
    why = "poisoned metadata: the superblock (block 0) cannot be read. `daxfsctl clear-error " + device.path() +
          " --offset 0 --length 4096`, then `fsck.daxfs -y " + device.path() +
          "`, repairs the structure (what the block held may be lost)";
    return error(EIO);
  }
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
        TRY(fs->emap_.unmap_locked(txn, *in, s, e, true));
        TRY(fs->commit_if_large_locked(txn, *in));
      }
      store_inode(txn, *in);
      TRY(fs->space_.commit_locked(txn));
      fs->counters_.post_eof_trimmed += stale.size();
    }
    Txn txn;
    SuperBlock s = *fs->sb_;
    s.clean = 0;
    s.mount_count++;
    txn.write(0, &s, offsetof(SuperBlock, uuid));
    TRY(fs->space_.commit_locked(txn));
  }
  // Poison recorded while unmounted: say whose data it is (reads of it fail with EIO; the
  // allocator keeps free poisoned blocks back).
  for (const auto& bad : fs->dev_->list_errors()) {
    std::string who;
    uint64_t first = bad.offset / kBlockSize, last = (bad.offset + bad.length + kBlockSize - 1) / kBlockSize;
    for (const RmapRange& r : fs->owners_.rmap().query(first, last - first))  // mu_ held (above)
      for (const RmapOwner& o : r.owners)
        who += " inode " + std::to_string(o.ino) + " offset " + std::to_string(o.logical * kBlockSize) + ";";
    fprintf(stderr, "daxfs: %s: poisoned at mount: device offset %llu+%llu:%s\n", fs->dev_->path().c_str(),
            static_cast<unsigned long long>(bad.offset), static_cast<unsigned long long>(bad.length),
            who.empty() ? " free (kept back from the allocator while poisoned)" : who.c_str());
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
      s.next_generation = inodes_.next_generation();
      txn.write(0, &s, offsetof(SuperBlock, uuid));
      (void)space_.commit_locked(txn);
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
    if (in->nlookup.load() > 0 || ino == inodes_.root()) out.push_back(ino);
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

Status Filesystem::commit_if_large_locked(Txn& txn, Inode& in) {
  if (!space_.large(txn)) return {};
  store_inode(txn, in);
  return space_.commit_locked(txn);
}

struct statvfs Filesystem::statfs() {
  std::shared_lock lock(mu_);
  struct statvfs s {};
  s.f_bsize = kBlockSize;
  s.f_frsize = kBlockSize;
  s.f_blocks = sb_->block_count;
  // Net of the blocks every operation keeps back (as XFS reports f_bfree/f_bavail net of its
  // reserve pool): what statfs promises, an allocation can have.
  s.f_bfree = space_.available_blocks();
  s.f_bavail = s.f_bfree;
  s.f_ffree = inodes_.free_slots().size() + alloc_.free_blocks() * (kInodesPerChunk - 1);
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

}  // namespace daxfs::fs
