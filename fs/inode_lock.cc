// Per-inode I/O and mapping locks (XFS's IOLOCK and MMAPLOCK; the lock order is in filesystem.h).
// An operation pins its inodes under the shared mu_, drops it, then takes their locks: so it
// never waits for another operation's data copy or layout break while holding the global lock.
// A pinned inode is not released (unlink + forget while a write is in flight): the last unpin
// does that instead. Pins are taken under the shared mu_ and dropped without any lock.
#include "fs/filesystem.h"

namespace daxfs::fs {

namespace {

using Mode = Filesystem::LockMode;

// The iolock's part of a mode: 0 none, 1 shared, 2 exclusive; and the mmaplock's.
int io_part(Mode m) { return m == Mode::kRead ? 1 : m == Mode::kLayout ? 2 : 0; }
int mmap_part(Mode m) { return m == Mode::kFault || m == Mode::kRead ? 1 : 2; }

void take(std::shared_mutex& mu, int part) {
  if (part == 1) mu.lock_shared();
  if (part == 2) mu.lock();
}

void give(std::shared_mutex& mu, int part) {
  if (part == 1) mu.unlock_shared();
  if (part == 2) mu.unlock();
}

}  // namespace

Result<Filesystem::InodeLock> Filesystem::lock_inodes(uint64_t a, uint64_t b, LockMode mode) {
  InodeLock held(*this, mode);
  {
    std::shared_lock lock(mu_);
    TRY(check_alive());
    Inode* first = TRY(inodes_.find(a));
    Inode* second = b == 0 || b == a ? nullptr : TRY(inodes_.find(b));
    if (second && second->ino < first->ino) std::swap(first, second);
    // Pins change under the shared mu_; releases happen under the exclusive one.
    for (Inode* in : {first, second}) {
      if (in) in->pin_state++;
    }
    held.in_[0] = first;
    held.in_[1] = second;
  }
  // XFS's xfs_lock_two_inodes order: both iolocks, then both mmaplocks, lower inode first.
  for (Inode* in : held.in_) {
    if (in) take(in->iolock, io_part(mode));
  }
  for (Inode* in : held.in_) {
    if (in) take(in->mmaplock, mmap_part(mode));
  }
  return held;
}

std::optional<Filesystem::InodeLock> Filesystem::try_lock_inode_locked(Inode& in, LockMode mode) {
  auto try_take = [](std::shared_mutex& mu, int part) {
    return part == 0 || (part == 1 ? mu.try_lock_shared() : mu.try_lock());
  };
  if (!try_take(in.iolock, io_part(mode))) return std::nullopt;
  if (!try_take(in.mmaplock, mmap_part(mode))) {
    give(in.iolock, io_part(mode));
    return std::nullopt;
  }
  in.pin_state++;
  InodeLock held(*this, mode);
  held.in_[0] = &in;
  return held;
}

template <typename MuLock>
Result<Filesystem::InodeLock> Filesystem::lock_inode_with(MuLock& lock, uint64_t ino, LockMode mode) {
  {
    Inode* in = TRY(inodes_.find(ino));
    if (auto held = try_lock_inode_locked(*in, mode)) return std::move(*held);
  }
  lock.unlock();
  InodeLock held = TRY(lock_inodes(ino, 0, mode));
  lock.lock();
  TRY(check_alive());
  return held;
}
template Result<Filesystem::InodeLock> Filesystem::lock_inode_with(std::shared_lock<std::shared_mutex>&, uint64_t,
                                                                  LockMode);
template Result<Filesystem::InodeLock> Filesystem::lock_inode_with(std::unique_lock<std::shared_mutex>&, uint64_t,
                                                                  LockMode);

Filesystem::InodeLock::InodeLock(InodeLock&& other) noexcept : fs_(other.fs_), mode_(other.mode_) {
  in_[0] = std::exchange(other.in_[0], nullptr);
  in_[1] = std::exchange(other.in_[1], nullptr);
}

Filesystem::InodeLock::~InodeLock() {
  for (int i = 1; i >= 0; i--) {
    Inode* in = in_[i];
    if (!in) continue;
    give(in->mmaplock, mmap_part(mode_));
    give(in->iolock, io_part(mode_));
  }
  for (Inode* in : in_) {
    if (in) fs_->unpin(*in);
  }
}

void Filesystem::unpin(Inode& in) {
  uint64_t ino = in.ino;
  // Without mu_: `in` may be released by others as soon as the count is 0, so it is not touched
  // after the decrement unless this was the last pin of an inode marked for release.
  if (in.pin_state.fetch_sub(1) != (Inode::kReleasePending | 1)) return;
  std::unique_lock lock(mu_);
  Inode* again = inodes_.get(ino);  // released meanwhile (a forget saw the count at 0), or reused?
  if (!again || again->pin_state.load() != Inode::kReleasePending) return;
  again->pin_state = 0;
  maybe_release_locked(*again);
}

void Filesystem::break_layout(uint64_t ino, uint64_t first, uint64_t end, dax::LayoutChange why) const {
  if (!layout_ || first >= end) return;
  uint64_t length = end >= kMaxFileBlocks ? dax::kToEnd : (end - first) * kBlockSize;
  layout_->break_layout(ino, first * kBlockSize, length, why);
}

Status Filesystem::break_layout(std::unique_lock<std::shared_mutex>& lock, uint64_t ino, uint64_t first,
                                uint64_t end, dax::LayoutChange why) {
  if (!layout_ || first >= end) return {};
  lock.unlock();
  break_layout(ino, first, end, why);
  lock.lock();
  return check_writable();
}

}  // namespace daxfs::fs
