// See kernel_caches.h.
#include "fs/fuse/kernel_caches.h"

namespace daxfs::fuse {

void Invalidator::start(fuse_session* se) {
  se_ = se;
  thread_ = std::thread([this] { run(); });
}

void Invalidator::stop() {
  {
    std::lock_guard<std::mutex> g(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void Invalidator::queue(fuse_ino_t nodeid) {
  {
    std::lock_guard<std::mutex> g(mu_);
    pending_.push_back(nodeid);
  }
  cv_.notify_all();
}

void Invalidator::run() {
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    cv_.wait(lock, [this] { return stopping_ || !pending_.empty(); });
    std::vector<fuse_ino_t> batch;
    batch.swap(pending_);
    lock.unlock();
    for (fuse_ino_t n : batch) fuse_lowlevel_notify_inval_inode(se_, n, 0, 0);
    lock.lock();
    if (stopping_ && pending_.empty()) return;
  }
}

void KernelCaches::stop() {
  pages_.stop();
  if (shutdown_thread_.joinable()) shutdown_thread_.join();
}

void KernelCaches::break_layout(uint64_t, uint64_t, uint64_t, dax::LayoutChange) {}

void KernelCaches::remapped(uint64_t ino) {
  fuse_lowlevel_notify_inval_inode(se_, nodeid(ino), -1, 0);  // attributes only
  if (!fs_.is_dax(ino)) pages_.queue(nodeid(ino));
}

void KernelCaches::memory_failure(const std::vector<FileRange>& owners) {
  for (const FileRange& o : owners) pages_.queue(nodeid(o.ino));
}

void KernelCaches::shut_down() {
  // Makes a shutdown visible to stat(2) too. Called with the filesystem's lock possibly held:
  // the walk runs on a thread of its own.
  std::call_once(shutdown_once_, [this] {
    shutdown_thread_ = std::thread([this] {
      for (uint64_t ino : fs_.referenced_inodes())
        fuse_lowlevel_notify_inval_inode(se_, nodeid(ino), -1, 0);  // attributes only
    });
  });
}

}  // namespace daxfs::fuse
