// One session's channel segment (daxcore/protocol.h), daemon side: created with O_EXCL, mode
// 0600 and owned by the client's uid, so that no other user's process can open it; unlinked and
// unmapped by the destructor. Every word the client may write is read here as untrusted input.
//
// Thread-safety: post_revoke is called under the DAX service's mutex; the rest from the
// session's own service thread, or with the service's mutex held.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <string>

#include "common/result.h"
#include "daxcore/protocol.h"

namespace daxfs::dax {

class Channel {
 public:
  static Result<std::unique_ptr<Channel>> create(const std::string& name, uid_t uid, gid_t gid);
  ~Channel();
  Channel(const Channel&) = delete;
  Channel& operator=(const Channel&) = delete;

  const std::string& name() const { return name_; }
  daxfs_dax_channel* shm() { return chan_; }

  // Posts a revoke; returns its sequence number, or 0 when the ring is full (the client has not
  // acknowledged DAXFS_DAX_RING revokes: it is not listening).
  uint64_t post_revoke(uint64_t ino, uint64_t offset, uint64_t length, uint32_t why, uint32_t flags);
  uint64_t posted() const { return posted_; }
  // What the client acknowledged, clamped to what was posted.
  uint64_t acked() const;
  // The acknowledgement doorbell: read it, check acked(), then wait_ack(bell, ...) sleeps only
  // if nothing was acknowledged after the read (at most timeout_ms).
  uint32_t ack_bell() const { return __atomic_load_n(&chan_->ack_bell, __ATOMIC_ACQUIRE); }
  void wait_ack(uint32_t bell, int timeout_ms);
  // Marks the session dead (later faults: SIGBUS) and wakes the client's agent.
  void mark_dead();
  void unlink();  // removes the name (the client has it mapped already)

 private:
  Channel() = default;
  std::string name_;
  daxfs_dax_channel* chan_ = nullptr;
  uint64_t posted_ = 0;  // the daemon's own count: the segment's copy is only a message
  bool linked_ = false;
};

}  // namespace daxfs::dax
