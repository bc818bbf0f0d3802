// The sink a filesystem tells before a file's blocks change under the processes that may map
// them: Linux's dax_break_layout() / xfs_break_layouts() as an upcall interface. The DAX layer
// implements it (revoke the pages, wait for the mappers or kill them after the lease); the
// daemon's page-cache invalidations hang off the same interface. Registered at mount; knows
// nothing of any filesystem.
//
// Thread-safety: called from the filesystem's request threads, several at once. An
// implementation must not call back into the filesystem.
#pragma once

#include <cstdint>
#include <vector>

namespace daxfs::dax {

// Why a layout breaks (what will happen to the blocks once break_layout returns).
enum class LayoutChange : uint8_t {
  kTruncate,   // blocks past the new EOF are freed
  kPunch,      // blocks of the range are freed
  kZero,       // the range's blocks are zeroed or turned unwritten
  kRemapInto,  // clone/dedupe/copy_file_range replace the range's blocks with another file's
  kShare,      // the range's blocks become shared (clone/dedupe source): stores must CoW from now
  kCow,        // shared blocks of the range get private copies (a write, unshare)
  kFill,       // holes or unwritten blocks of the range become data: zero-page mappers refault
  kShift,      // collapse/insert range: the range's blocks move to other file offsets (a collapse
               // frees the collapsed blocks first)
};

inline constexpr uint64_t kToEnd = UINT64_MAX;  // length: to the largest file offset

class LayoutSink {
 public:
  virtual ~LayoutSink() = default;
  // Before the blocks backing bytes [offset, offset + length) of file `ino` change as `why`
  // says. Returns when no mapping can store into them any more (kShare) or touch them at all
  // (everything else): each mapper has dropped them, or was killed after the lease.
  virtual void break_layout(uint64_t ino, uint64_t offset, uint64_t length, LayoutChange why) = 0;
  // After `ino`'s blocks were replaced (clone/dedupe/copy into it): cached attributes and pages
  // of it are stale.
  virtual void remapped(uint64_t ino) = 0;
  // The filesystem shut down: every mapping is revoked and every cache dropped.
  virtual void shut_down() = 0;
  // Memory failure: a poisoned device page, as every owner's file range that it backs (bytes
  // [offset, offset + length) of `ino`; every reflink sharer of the page: Linux's
  // mf_dax_kill_procs for each owner). Every mapper of any of them loses the page and is
  // signalled as its kill policy says, all at once, not owner after owner; returns when they
  // have let go (or were killed after the lease).
  struct FileRange {
    uint64_t ino, offset, length;
  };
  virtual void memory_failure(const std::vector<FileRange>& owners) {
    (void)owners;  // a sink that caches nothing has nothing to do
  }
};

// Two sinks told the same things in turn (the daemon's kernel caches, then the DAX layer).
class LayoutTee : public LayoutSink {
 public:
  LayoutTee(LayoutSink& first, LayoutSink& second) : first_(first), second_(second) {}
  void break_layout(uint64_t ino, uint64_t offset, uint64_t length, LayoutChange why) override {
    first_.break_layout(ino, offset, length, why);
    second_.break_layout(ino, offset, length, why);
  }
  void remapped(uint64_t ino) override {
    first_.remapped(ino);
    second_.remapped(ino);
  }
  void shut_down() override {
    first_.shut_down();
    second_.shut_down();
  }
  void memory_failure(const std::vector<FileRange>& owners) override {
    first_.memory_failure(owners);
    second_.memory_failure(owners);
  }

 private:
  LayoutSink& first_;
  LayoutSink& second_;
};

}  // namespace daxfs::dax
