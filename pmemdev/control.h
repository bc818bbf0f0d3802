// The device's control file, "<device>.ctl": what real pmem hardware keeps outside the media.
// It holds the persistent badblock list and the failure doorbell through which any process (the
// CLI) reaches the process holding the device. Shared between processes through a MAP_SHARED
// mapping; all mutation is under a robust process-shared mutex, and every update is
// double-buffered so that a process killed mid-update leaves the old or the new list, never a mix.
// A ControlFile object is thread-safe.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "pmemdev/badblocks.h"
#include "pmemdev/holder.h"
#include "common/result.h"

namespace daxfs::pmemdev {

inline constexpr uint32_t kEventRing = 256;

struct FailureEvent {
  uint64_t seq;     // 1, 2, 3, ... in posting order
  uint64_t offset;  // device byte range
  uint64_t length;
  uint32_t kind;    // FailureKind
  uint32_t pad;
};

struct ControlLayout;  // the shared file's layout; see control.cc

class ControlFile {
 public:
  // Opens (creating and initialising if needed) the control file beside `device_path`; a new
  // one is mode 0600 (it can stall and poison the device). An existing one must be a regular
  // file (not a symbolic link: ELOOP) owned by this user or by the device's owner (EPERM), and
  // its group and other bits are narrowed to the device's (EPERM when that is not allowed).
  // EPROTO when it exists with another format or version, EUCLEAN when its table is corrupt.
  // A control file created by a failed open is removed again.
  static Result<std::unique_ptr<ControlFile>> open(const std::string& device_path);
  static std::string path_for(const std::string& device_path) { return device_path + ".ctl"; }
  ~ControlFile();
  ControlFile(const ControlFile&) = delete;
  // True when open() created the file (it did not exist before).
  bool created() const { return created_; }
  ControlFile& operator=(const ControlFile&) = delete;

  // Adds the sectors covering [offset, offset + length) to the badblock list and posts a failure
  // event for them. Returns the event's sequence number (for wait_ack()).
  Result<uint64_t> inject(uint64_t offset, uint64_t length);
  // Removes the sectors covering the range from the list. Posts no event.
  Status clear(uint64_t offset, uint64_t length);
  // Posts an event without touching the list (device pre-removal).
  Result<uint64_t> post(FailureKind kind, uint64_t offset, uint64_t length);
  std::vector<SectorRange> list();
  // True when any sector of the byte range is bad. Lock-free while the list is empty.
  bool overlaps(uint64_t offset, uint64_t length);

  // Holder side. Waits up to timeout_ms for events after `last_seen` and returns them in order,
  // advancing last_seen. `overflowed` is set when events were lost (the ring wrapped): the
  // holder must then rescan the whole list.
  std::vector<FailureEvent> wait_events(uint64_t& last_seen, int timeout_ms, bool& overflowed);
  uint64_t event_head();
  // The holder says it has handled every event up to `seq`.
  void ack(uint64_t seq);
  // Waits until the holder has acked `seq`; false on timeout.
  bool wait_ack(uint64_t seq, int timeout_ms);
  // Wakes wait_events() callers in this process (used to stop a notifier thread).
  void kick();

 private:
  ControlFile(int fd, ControlLayout* layout, bool created) : fd_(fd), l_(layout), created_(created) {}
  class Locked;
  Result<uint64_t> post_locked(FailureKind kind, uint64_t offset, uint64_t length);
  // The double-buffered update: `change` edits a copy of the list, then one store switches to it.
  Status update_locked(const std::function<Status(BadblockTable&)>& change);
  int fd_;
  ControlLayout* l_;
  bool created_;
};

}  // namespace daxfs::pmemdev
