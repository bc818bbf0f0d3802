// Inodes: allocation in chunks, release of everything an inode owns (in bounded transactions),
// attributes (getattr/setattr) and lookup references.
#include <fcntl.h>
#include <time.h>

#include <cstring>

#include <optional>

#include "fs/filesystem.h"
#include "fs/ondisk/codec.h"

namespace daxfs::fs {

void chmod_access_acl(Inode& in);  // xattr.cc

namespace {
Timespec now_ts() {
  timespec t;
  clock_gettime(CLOCK_REALTIME, &t);
  return {t.tv_sec, static_cast<uint32_t>(t.tv_nsec), 0};
}
Timespec from_timespec(const timespec& t) { return {t.tv_sec, static_cast<uint32_t>(t.tv_nsec), 0}; }
// The most extents one release transaction drops (keeps it well inside the journal).
constexpr size_t kReleaseBatch = 4096;
}  // namespace

Status Filesystem::release_inode_locked(Inode& in) {
  // Data first, in bounded transactions; a crash in between leaves an orphan (nlink 0) that the
  // next mount finishes releasing.
  Txn txn;
  DirtyGuard guard(space_, txn);
  TRY(emap_.unmap_batched_locked(txn, in, 0, kMaxFileBlocks));
  for (uint64_t b : in.record_blocks) txn.free_after_commit(b, 1);
  if (in.is_symlink() && in.d.head) txn.free_after_commit(in.d.head, 1);
  if (in.d.xattr_block) txn.free_after_commit(in.d.xattr_block, (in.d.xattr_length + kBlockSize - 1) / kBlockSize);
  DiskInode zero{};
  txn.write_obj(ondisk::inode_offset(in.ino), zero);
  TRY(space_.commit_locked(txn));
  inodes_.drop_locked(in.ino);
  return {};
}

void Filesystem::maybe_release_locked(Inode& in) {
  if (in.d.nlink != 0 || in.nlookup.load() != 0 || shutdown_ || opts_.read_only == ReadOnly::kYes) return;
  // Pinned by an operation holding its locks: mark it, and the last unpin releases it. Pins are
  // taken under the shared mu_ (not now), dropped without it: the CAS settles who releases.
  for (uint32_t st = in.pin_state.load(); (st & ~Inode::kReleasePending) != 0;) {
    if (in.pin_state.compare_exchange_weak(st, st | Inode::kReleasePending)) return;
  }
  Status st = release_inode_locked(in);
  if (!st) shutdown("cannot release inode " + std::to_string(in.ino) + ": " + strerror(st.error()));
}

Result<struct stat> Filesystem::lookup(uint64_t parent, std::string_view name) {
  std::shared_lock lock(mu_);
  TRY(check_alive());
  if (name == ".") {  // any inode: NFS export looks up "." of files too
    Inode* self = TRY(inodes_.find(parent));
    self->nlookup++;
    return to_stat(*self);
  }
  Inode* dir = TRY(inodes_.find_dir(parent));
  Inode* target = nullptr;
  if (name == "..") {
    target = TRY(inodes_.find(dir->d.parent));
  } else {
    auto it = dir->names.find(std::string(name));
    if (it == dir->names.end()) return error(ENOENT);
    target = TRY(inodes_.find(dir->slots[it->second].ino));
  }
  target->nlookup++;
  return to_stat(*target);
}

void Filesystem::forget(uint64_t ino, uint64_t count) {
  std::unique_lock lock(mu_);
  Inode* found = inodes_.get(ino);
  if (!found) return;
  Inode& in = *found;
  uint64_t cur = in.nlookup.load();
  in.nlookup = cur >= count ? cur - count : 0;
  maybe_release_locked(in);
}

uint64_t Filesystem::generation(uint64_t ino) {
  std::shared_lock lock(mu_);
  auto in = inodes_.find(ino);
  return in ? (*in)->d.generation : 0;
}

Result<struct stat> Filesystem::getattr(uint64_t ino) {
  std::shared_lock lock(mu_);
  // The root stays stat-able after a shutdown, so that the mount point can still be opened for
  // the counters ioctl (daxfsctl stat): its in-memory inode is not read from the media.
  if (ino != inodes_.root()) TRY(check_alive());
  Inode* in = TRY(inodes_.find(ino));
  return to_stat(*in);
}

Result<struct stat> Filesystem::setattr(uint64_t ino, const SetAttr& a) {
  std::optional<InodeLock> held;  // a size change is a layout change
  if (a.valid & SetAttr::kSize) held.emplace(TRY(lock_inodes(ino, 0, LockMode::kLayout)));
  std::unique_lock lock(mu_);
  TRY(check_writable());
  Inode* in = TRY(inodes_.find(ino));
  Txn txn;
  DirtyGuard guard(space_, txn);
  bool changed = false;
  if (a.valid & SetAttr::kSize) {
    if (in->is_dir()) return error(EISDIR);
    if (!in->is_reg()) return error(EINVAL);
    if (a.size > kMaxFileSize) return error(EFBIG);
    if (a.size < in->d.size)
      TRY(break_layout(lock, ino, a.size / kBlockSize, kMaxFileBlocks, dax::LayoutChange::kTruncate));
    TRY(truncate_locked(*in, a.size, txn));
    touch(*in, true, true);  // O_TRUNC and truncate(2) update both, even when the size is unchanged
    changed = true;
  }
  if (a.valid & SetAttr::kMode) {
    uint32_t old_mode = in->d.mode;
    in->d.mode = (in->d.mode & S_IFMT) | (a.mode & 07777);
    if (in->xattrs.count("system.posix_acl_access")) {
      auto saved = in->xattrs;
      chmod_access_acl(*in);
      if (Status st = xattrs_.store_locked(txn, *in); !st) {
        in->xattrs = std::move(saved);
        in->d.mode = old_mode;
        return error(st.error());
      }
    }
    changed = true;
  }
  if (a.valid & SetAttr::kUid) {
    in->d.uid = a.uid;
    changed = true;
  }
  if (a.valid & SetAttr::kGid) {
    in->d.gid = a.gid;
    changed = true;
  }
  if (a.valid & SetAttr::kAtimeNow) in->d.atime = now_ts();
  else if (a.valid & SetAttr::kAtime) in->d.atime = from_timespec(a.atime);
  if (a.valid & SetAttr::kMtimeNow) in->d.mtime = now_ts();
  else if (a.valid & SetAttr::kMtime) in->d.mtime = from_timespec(a.mtime);
  changed |= (a.valid & (SetAttr::kAtime | SetAttr::kMtime | SetAttr::kAtimeNow | SetAttr::kMtimeNow)) != 0;
  if (changed) touch(*in, false, true);
  if (a.valid & SetAttr::kCtime) in->d.ctime = from_timespec(a.ctime);
  store_inode(txn, *in);
  TRY(space_.commit_locked(txn));
  return to_stat(*in);
}

}  // namespace daxfs::fs
