// The daemon's layout sink (daxcore/layout.h): what the kernel caches of a daxfs mount must
// forget when the filesystem changes blocks under it. Attributes are invalidated at once (no
// page is touched, so a request thread may send it); cached pages from a worker of their own,
// because the kernel may wait for requests only a request thread would serve; after a shutdown,
// every known inode's attributes from a thread of its own.
//
// Thread-safety: the LayoutSink calls come from any request thread; attach(), start() and
// stop() are called once each, by main(), in that order.
#pragma once

#define FUSE_USE_VERSION 34
#include <fuse_lowlevel.h>

#include <condition_variable>
#include <mutex>
#include <thread>
#include <vector>

#include "daxcore/layout.h"
#include "fs/filesystem.h"

namespace daxfs::fuse {

// Page-cache invalidations that must not run on a request thread: queued here from any thread,
// sent in order by a worker of their own.
class Invalidator {
 public:
  void start(fuse_session* se);
  void stop();  // sends what is queued, then joins
  void queue(fuse_ino_t nodeid);

 private:
  void run();
  fuse_session* se_ = nullptr;
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<fuse_ino_t> pending_;
  bool stopping_ = false;
  std::thread thread_;
};

class KernelCaches : public dax::LayoutSink {
 public:
  explicit KernelCaches(fs::Filesystem& fs) : fs_(fs) {}
  // The session whose kernel caches these are (before the daemon forks).
  void attach(fuse_session* se) { se_ = se; }
  // Starts the page worker (after the fork: threads do not survive it).
  void start() { pages_.start(se_); }
  // Sends what is queued and joins both workers.
  void stop();

  // The kernel drops its own cached pages for the truncates, punches and zero ranges it
  // forwards (fuse_do_setattr, fuse_file_fallocate), and a CoW or a share keeps every byte a
  // reader sees: nothing to do for page-cache mappers. DAX mappers are the DAX layer's. What it
  // does not forward (clone, dedupe, collapse and insert range: ioctls) ends in remapped().
  void break_layout(uint64_t ino, uint64_t offset, uint64_t length, dax::LayoutChange why) override;
  void remapped(uint64_t ino) override;
  void shut_down() override;
  // Page-cache mappers of the file lose their cached pages: the next touch refaults, the read
  // fails (EIO on poison) and the kernel sends them SIGBUS.
  void memory_failure(const std::vector<FileRange>& owners) override;

 private:
  fuse_ino_t nodeid(uint64_t ino) const { return ino == fs_.root_ino() ? FUSE_ROOT_ID : ino; }
  fs::Filesystem& fs_;
  fuse_session* se_ = nullptr;
  Invalidator pages_;
  std::thread shutdown_thread_;
  std::once_flag shutdown_once_;
};

}  // namespace daxfs::fuse
