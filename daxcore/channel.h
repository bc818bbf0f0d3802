// One session's channel (daxcore/protocol.h), daemon side: the client's sealed memfd, taken with
// pidfd_getfd(2), checked (sealed against shrinking, large enough: the daemon must never fault on
// it) and mapped; unmapped and closed by the destructor. Every word the client may write is read
// here as untrusted input.
//
// Thread-safety: post_revoke is called under the DAX service's mutex; the rest from the
// session's own service thread, or with the service's mutex held.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <memory>

#include "common/result.h"
#include "daxcore/protocol.h"

namespace daxfs::dax {

class Channel {
 public:
  // The memfd `client_fd` of the process behind `pidfd`. EBADF: no such fd, or not a sealed
  // memfd of the right size; EPERM: the daemon may not take the process's fds.
  static Result<std::unique_ptr<Channel>> attach(int pidfd, int client_fd);
  ~Channel();
  Channel(const Channel&) = delete;
  Channel& operator=(const Channel&) = delete;

  daxfs_dax_channel* shm() { return chan_; }

  // Whether the process image that connected still holds its lock on the channel (an exec or
  // an exit drops it). Never blocks.
  bool image_alive() const;

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

 private:
  Channel() = default;
  int fd_ = -1;
  daxfs_dax_channel* chan_ = nullptr;
  uint64_t posted_ = 0;  // the daemon's own count: the segment's copy is only a message
};

}  // namespace daxfs::dax
