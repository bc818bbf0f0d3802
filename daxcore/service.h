// The DAX layer's daemon side: sessions of the processes that map DAX files, the fault service
// that answers their requests from the filesystem's iomap (daxcore/files.h), and the layout sink
// that revokes their pages before blocks change (daxcore/layout.h). Design: docs/dax-design.md.
//
//   client fault -> request in its channel -> session thread: validate, iomap_begin(FAULT[|WRITE])
//     -> record the mapping (registry, per-inode index; generation checked) -> reply
//   filesystem break_layout -> revoke to every session mapping the range -> wait for acks (the
//     lease) -> SIGKILL the late -> drop the records -> return: nobody maps the blocks
//
// Lock order: the filesystem's locks (a break arrives with the inode's locks held) -> mu_.
// mu_ is never held while waiting for a client or calling into the filesystem.
// Thread-safety: every public call from any thread; start/stop once each.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <optional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "common/result.h"
#include "daxcore/channel.h"
#include "daxcore/files.h"
#include "daxcore/layout.h"
#include "daxcore/protocol.h"
#include "daxcore/registry.h"

namespace daxfs::dax {

struct DaxOptions {
  std::string device;      // the device file's path (clients open it)
  std::string mountpoint;
  std::string registry;    // the registry's name (Registry::name_for)
  uint64_t device_size = 0;
  uint32_t lease_ms = 5000;  // how long a revoke may take before the process is killed
  bool mce_early = false;    // mce_kill=early: memory-failure victims get BUS_MCEERR_AO at once
};

class DaxService : public LayoutSink {
 public:
  // Creates the registry (killing a crashed daemon's mappers, listed in `killed`).
  static Result<std::unique_ptr<DaxService>> create(DaxFiles& files, const DaxOptions& opts,
                                                   std::vector<pid_t>* killed);
  ~DaxService() override;
  // After the daemon went into the background (its pid changed): records the daemon's pid.
  void start();
  // Revokes every mapping (waiting for the lease, killing the late), ends every session and
  // joins their threads. Call before the filesystem goes away; idempotent.
  void stop();

  // DAXFS_IOC_DAX_CONNECT from thread `tid` of a process (uid: the request's), with the
  // client's input `in` (channel memfd, token).
  Result<daxfs_dax_connect> connect(pid_t tid, uid_t uid, const daxfs_dax_connect& in);
  // DAXFS_IOC_DAX_GRANT on inode `ino` through a handle open for reading (and writing if
  // `writable`); ENOTCONN without a session.
  Result<daxfs_dax_grant> grant(pid_t tid, uint64_t ino, bool writable);

  // LayoutSink.
  void break_layout(uint64_t ino, uint64_t offset, uint64_t length, LayoutChange why) override;
  void remapped(uint64_t) override {}
  void shut_down() override;
  void memory_failure(const std::vector<FileRange>& owners) override;

  DaxCounters counters();

 private:
  struct Session;
  struct InodeState {
    uint64_t generation = 0;          // bumped by every break of the inode
    // Registry indices of the inode's records, by (session slot, file offset).
    std::multimap<std::pair<uint32_t, uint64_t>, uint32_t> mappings;
    uint32_t inflight = 0;            // faults between reading the generation and recording
  };
  struct Wait {
    std::shared_ptr<Session> session;
    uint64_t seq;
  };

  DaxService(DaxFiles& files, const DaxOptions& opts) : files_(files), opts_(opts) {}
  void serve(std::shared_ptr<Session> s);  // a session's thread
  void handle(Session& s, daxfs_dax_request& slot);
  void fault(Session& s, const daxfs_dax_request& in, daxfs_dax_request& out);
  void unmap(Session& s, const daxfs_dax_request& in);
  void pin(Session& s, const daxfs_dax_request& in, daxfs_dax_request& out);
  // Removes the session's records of `ino` within [offset, end) (of `kinds`; with `address`,
  // only those of the mapping that maps `offset` there), trimming the ones that straddle;
  // inodes whose last record of this session went are added to `released`.
  // With `mark`, only records carrying that revoke mark (marks_) go.
  void drop_locked(Session& s, uint64_t ino, uint64_t offset, uint64_t end, uint32_t kinds,
                   std::vector<uint64_t>& released, std::optional<uint64_t> address = std::nullopt,
                   uint64_t mark = 0);
  // Records `e` for session `s` (an identical record is not added twice). kFull: the registry or
  // the session's share of it is full. *first: this is the session's first record of the inode
  // (the caller's hold on the inode is kept for it).
  enum class Added { kNew, kDuplicate, kFull };
  Added add_record_locked(Session& s, const MappingEntry& e, bool* first);
  void end_session_locked(Session& s, std::vector<uint64_t>& released);
  void end_session(const std::shared_ptr<Session>& s);
  // Waits for each session to acknowledge its revoke, killing those that do not within the lease.
  void wait_all(const std::vector<Wait>& waits);
  void kill(const std::shared_ptr<Session>& s, const char* why);
  void release(const std::vector<uint64_t>& inos);
  std::shared_ptr<Session> session_of(pid_t tgid);
  void revoke_all(uint32_t why);

  DaxFiles& files_;
  DaxOptions opts_;
  std::unique_ptr<Registry> registry_;
  // Per registry index: the memory failure whose revoke covers the record (0: none). A marked
  // record is already revoked, so a refault never counts as its duplicate, and the failure drops
  // only the records it marked: one recorded while it waited (a refault of a page its recovery
  // write healed) stays. Pieces of a trimmed record keep its mark.
  std::vector<uint64_t> marks_ = std::vector<uint64_t>(kMaxMappings, 0);
  uint64_t last_mark_ = 0;
  std::mutex mu_;  // everything below
  std::condition_variable pins_cv_;  // a pin record went
  std::map<pid_t, std::shared_ptr<Session>> sessions_;  // by thread-group id
  std::unordered_map<uint64_t, InodeState> inodes_;
  std::vector<Session*> by_slot_;  // sessions by slot (kMaxSessions entries)
  bool shut_ = false, stopped_ = false;
  uint32_t threads_ = 0;  // live session threads
  std::condition_variable threads_cv_;
  std::thread shutdown_thread_;
};

}  // namespace daxfs::dax
