// The per-mount DAX registry: a Boost.Interprocess managed shared-memory segment
// (/dev/shm/daxfs.<st_dev>.<st_ino> of the device) that the daemon alone writes and reads with
// its user's rights (mode 0600): the sessions (client processes), their mappings and the DAX
// counters.
// `daxfsctl mappers` and `daxfsctl stat` read it; the next mount reads it after a daemon crash,
// to kill the processes that may still map the old instance's blocks.
//
// Readers take no lock: the daemon bumps `seq` to odd before a change and to even after it
// (a seqlock), and readers copy and retry. Thread-safety (daemon side): the caller serializes
// every mutating call (the DAX service's mutex).
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/result.h"

namespace daxfs::dax {

inline constexpr uint32_t kMaxSessions = 256;
inline constexpr uint32_t kMaxMappings = 1u << 16;

// The DAX counters (daxfsctl stat).
struct DaxCounters {
  uint64_t sessions = 0;        // connects served
  uint64_t faults = 0;          // fault requests served (every kind below)
  uint64_t faults_mapped = 0;   // written blocks mapped
  uint64_t faults_hole = 0;     // zero page for a hole
  uint64_t faults_unwritten = 0;  // zero page for unwritten blocks
  uint64_t faults_alloc = 0;    // store into a hole or unwritten: blocks allocated or converted
  uint64_t faults_cow = 0;      // store into shared blocks: copied
  uint64_t faults_retried = 0;  // a layout break crossed the fault: asked the filesystem again
  uint64_t faults_failed = 0;   // answered with an error (SIGBUS in the client)
  uint64_t layout_breaks = 0;   // breaks that had mappers to revoke
  uint64_t revocations = 0;     // revokes posted to sessions
  uint64_t kills = 0;           // processes killed after the lease
  uint64_t pins = 0, pins_refused = 0;
  uint64_t poison_revocations = 0;  // memory failures that revoked a mapped page from a process
  uint64_t poison_early = 0;        // ... of a process told to raise BUS_MCEERR_AO at once
  uint64_t poison_late = 0;         // ... of a process that gets BUS_MCEERR_AR when it touches it
  uint64_t reserved[13] = {};
};

struct RegistryHeader {
  uint64_t magic;
  uint32_t abi;
  int32_t daemon_pid;
  uint64_t seq;  // seqlock: odd while the daemon changes the tables
  uint64_t sessions_used;  // high-water marks of the tables
  uint64_t mappings_used;
  uint32_t lease_ms;
  uint32_t pad;
  char device[1024];
  char mountpoint[1024];
  DaxCounters counters;
};

struct SessionEntry {
  uint32_t used;
  int32_t pid;
  uint32_t uid;
  uint32_t pad;
  uint64_t start_time;  // /proc/PID/stat field 22: tells a reused pid apart
};

enum class MapKind : uint32_t { kDevice = 1, kZero = 2, kPin = 3 };

struct MappingEntry {
  uint32_t used;
  uint32_t session;
  int32_t pid;
  uint32_t prot;
  uint64_t ino;
  uint64_t offset, length;  // file bytes
  uint64_t device;          // device byte of `offset` (kDevice, kPin); UINT64_MAX for zeros
  uint64_t address;         // where the process says it maps `offset`
  MapKind kind;
  uint32_t pad;
};

// A consistent copy of the registry (reader side).
struct RegistrySnapshot {
  RegistryHeader header;
  std::vector<SessionEntry> sessions;  // used entries only
  std::vector<MappingEntry> mappings;  // used entries only
};

class Registry {
 public:
  // The segment's name for a device (st_dev/st_ino of the device file), without the leading '/'.
  static std::string name_for(dev_t dev, ino_t ino);
  // Creates the segment `name` (mode 0600: mapping addresses are nobody else's business). An old
  // one is reaped first (reap()); `killed` gets the pids.
  static Result<std::unique_ptr<Registry>> create(const std::string& name, const std::string& device,
                                                  const std::string& mountpoint, uint32_t lease_ms,
                                                  std::vector<pid_t>* killed);
  // Kills (SIGKILL, waited for) every process a crashed daemon's registry `name` lists that still
  // lives (same pid and start time): it may map blocks a new mount will reuse. Their pids. A
  // segment not owned by this user or writable by others is not believed (anyone can create a
  // name in /dev/shm): ignored, and replaced by create(). EUCLEAN: ours but unreadable.
  static Result<std::vector<pid_t>> reap(const std::string& name);
  // Reads the registry `name`; ENOENT when there is none.
  static Result<RegistrySnapshot> read(const std::string& name);
  ~Registry();  // removes the segment
  Registry(const Registry&) = delete;
  Registry& operator=(const Registry&) = delete;

  // Mutations, bracketed by begin_update/end_update (the seqlock).
  void begin_update();
  void end_update();
  DaxCounters& counters() { return header_->counters; }
  void set_daemon_pid(pid_t pid) { header_->daemon_pid = pid; }
  SessionEntry& session(uint32_t slot) { return sessions_[slot]; }
  // A free mapping entry, or nullopt when the table is full.
  std::optional<uint32_t> add_mapping(const MappingEntry& m);
  MappingEntry& mapping(uint32_t index) { return mappings_[index]; }
  void remove_mapping(uint32_t index);
  size_t free_count() const { return free_mappings_.size(); }
  void set_session(uint32_t slot, const SessionEntry& s);
  void clear_session(uint32_t slot);

 private:
  struct Segment;
  Registry() = default;
  std::string name_;
  std::unique_ptr<Segment> segment_;
  RegistryHeader* header_ = nullptr;
  SessionEntry* sessions_ = nullptr;
  MappingEntry* mappings_ = nullptr;
  std::vector<uint32_t> free_mappings_;
};

// The start time of `pid` (clock ticks since boot, /proc/PID/stat field 22); 0 if it is gone.
uint64_t process_start_time(pid_t pid);

}  // namespace daxfs::dax
