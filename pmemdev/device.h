// An emulated pmem device: a regular file mapped with libpmem2, whose bytes are the media, plus
// its control file (badblocks, failure doorbell) beside it. The mapping's persist/flush/drain and
// memcpy/memset come from libpmem2 for that map. A Device is thread-safe; the holder callback runs
// on the device's own notifier thread.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "pmemdev/control.h"
#include "pmemdev/holder.h"
#include "pmemdev/trace.h"
#include "common/result.h"

struct pmem2_map;
struct pmem2_source;

namespace daxfs::pmemdev {

struct ByteRange {
  uint64_t offset;
  uint64_t length;
  bool operator==(const ByteRange&) const = default;
};

// The largest device that can be opened mapped (and created). Every program maps the whole device
// (the daemon, mkfs, fsck), and x86-64 gives a process 128 TiB of address space (47 bits); a
// mapping of half of it still finds room beside the program's own (measured: a sparse 64 TiB device
// formats and mounts, 120 TiB fails in pmem2_map_new with ENOMEM). Devices are sparse files, so
// the limit is address space, not memory.
inline constexpr uint64_t kMaxDeviceSize = 64ULL << 40;

enum class Create {
  kNo,
  kYes,        // create the file if it is missing, extend it to OpenOptions::size if smaller
  kExclusive,  // as kYes, but the file must not exist yet (EEXIST)
};
enum class Map { kYes, kNo };  // kNo: control file only (CLI poison commands on a big device)
enum class Granularity {
  kAuto,       // what libpmem2 detects: page (msync) on a file that is not on a DAX fs
  kCacheLine,  // force cache-line flushes (PMEM2_FORCE_GRANULARITY=CACHE_LINE): emulated pmem
};

struct OpenOptions {
  Create create = Create::kNo;
  uint64_t size = 0;  // when creating: create or extend the file to this size (multiple of 4 KiB)
  Map map = Map::kYes;
  Granularity granularity = Granularity::kCacheLine;
};

// What a successful Device::open() changed in the file system, for a caller that fails later and
// must leave things as they were (mkfs): see Device::revert().
struct OpenChanges {
  bool created_media = false;    // the media file did not exist
  bool created_control = false;  // nor did DEVICE.ctl
  bool extended = false;         // the media file existed and was extended from old_size
  uint64_t old_size = 0;
};

class Device {
 public:
  // Opens the device file at `path`. ENOENT when it does not exist (with Create::kNo), EEXIST
  // when it does (with Create::kExclusive), EINVAL for a size that is zero or not a multiple of
  // 4 KiB, or a device smaller than 4 KiB or not a regular file, EFBIG for a device (or a size to
  // create) above kMaxDeviceSize when mapped, and the libpmem2 error (logged to stderr) when
  // mapping fails. Files it creates (the media file, DEVICE.ctl) are mode 0600, private to their
  // owner as a block device is (/dev/pmem0 is root:disk 0660), whatever the umask; an existing
  // file keeps its mode. A failed open leaves the file system as it found it: it removes the
  // files it created and truncates a file it extended back to its old size.
  static Result<std::unique_ptr<Device>> open(const std::string& path, const OpenOptions& opts);
  // Undoes what an open of the device at `path` changed (`changes()` of that Device, which must
  // be destroyed first): removes the files it created, truncates an extended media file back.
  // The first error is returned, after every step has been tried.
  static Status revert(const std::string& path, const OpenChanges& changes);
  // True when some open file description (any process) holds the device at `path`.
  static bool held(const std::string& path);
  // One line for each of the media file and DEVICE.ctl that users other than the owner can
  // read or write (group or other permission bits), saying what they can do and the chmod
  // that stops it; empty when both are private (or missing).
  static std::vector<std::string> exposure_warnings(const std::string& path);
  ~Device();
  Device(const Device&) = delete;
  Device& operator=(const Device&) = delete;

  const std::string& path() const { return path_; }
  uint64_t size() const { return size_; }
  const OpenChanges& changes() const { return changes_; }
  // The mapped media, for loads (nullptr when opened with Map::kNo). Read-only on purpose: every
  // store to the media goes through the methods below, by device offset, so that a trace
  // (set_trace(): power-fail emulation) sees every crash-visible write; the filesystem cannot
  // bypass it.
  const char* base() const { return base_; }
  bool cache_line_granularity() const { return cache_line_; }

  // Stores, by device offset (the range must lie inside the device), with the libpmem2 map's
  // persistence: memcpy/memset_persist store, flush and drain (the bytes are durable when they
  // return); the _nodrain forms store and flush, and a later drain() (an SFENCE) makes them
  // durable. `src` may point into the device (a copy between blocks).
  void memcpy_persist(uint64_t dst, const void* src, size_t length) const;
  void memset_persist(uint64_t dst, int c, size_t length) const;
  void memcpy_nodrain(uint64_t dst, const void* src, size_t length) const;
  void memset_nodrain(uint64_t dst, int c, size_t length) const;
  // A store left in the CPU cache (PMEM2_F_MEM_NOFLUSH), for a caller that flushes it later with
  // flush() (CLWB of the range's cache lines); neither orders anything before drain().
  void memcpy_noflush(uint64_t dst, const void* src, size_t length) const;
  void flush(uint64_t offset, size_t length) const;
  void drain() const;

  // Power-fail emulation (pmemdev/trace.h): while a trace is set, every store, flush and fence
  // above is also recorded in it, in order. Set it before the device is shared between threads
  // (a mount); nullptr stops tracing. Without a trace each call costs one predictable branch.
  void set_trace(PersistTrace* trace) { trace_ = trace; }
  PersistTrace* trace() const { return trace_; }

  // The driver's read path: EIO when any sector of the range is poisoned, EINVAL/ERANGE for a
  // range outside the device.
  Status read(uint64_t offset, void* buf, size_t length) const;
  // The driver's write path, made persistent. Poisoned sectors inside the range are cleared
  // when the write covers them whole and is sector-aligned (a recovery write); a write that
  // only partly covers a poisoned sector fails with EIO and writes nothing.
  Status write(uint64_t offset, const void* buf, size_t length);

  // Poison (ndctl inject-error / clear-errors). Byte ranges are rounded out to sectors.
  // inject_error returns the failure event's sequence number; a holder, if any, is notified
  // asynchronously (wait_notified() waits for it). EINVAL: zero length; ERANGE: past the end.
  Result<uint64_t> inject_error(uint64_t offset, uint64_t length);
  Status clear_error(uint64_t offset, uint64_t length);
  std::vector<ByteRange> list_errors() const;
  bool poisoned(uint64_t offset, uint64_t length) const;

  // Holder interface. claim() makes this process the device's one holder (EBUSY when another
  // open of the device holds it) and starts the notifier thread that calls
  // holder->notify_failure() for every failure posted from now on, by any process. `holder`
  // must outlive release() (or the Device).
  enum class Notifier { kStart, kDeferred };
  Status claim(Holder* holder, Notifier notifier = Notifier::kStart);
  // Starts the notifier thread of a claim made with Notifier::kDeferred (a daemon claims before
  // it forks into the background, and threads do not survive fork()).
  void start_notifier();
  void release();
  // True when some other open file description (any process) holds the device.
  bool held_elsewhere() const;
  // Device pre-removal (MF_MEM_PRE_REMOVE): tells the holder, returns the event's sequence.
  Result<uint64_t> notify_pre_remove();
  // Waits until the holder has handled event `seq`; false on timeout or when nobody holds it.
  bool wait_notified(uint64_t seq, int timeout_ms) const;

 private:
  Device() = default;
  Status check_range(uint64_t offset, uint64_t length) const;
  void check_store(uint64_t dst, size_t length) const;
  void notifier_loop(uint64_t seen);

  std::string path_;
  OpenChanges changes_;
  int fd_ = -1;
  uint64_t size_ = 0;
  char* base_ = nullptr;
  bool cache_line_ = false;
  pmem2_source* src_ = nullptr;
  pmem2_map* map_ = nullptr;
  void (*flush_)(const void*, size_t) = nullptr;
  void (*drain_)() = nullptr;
  void* (*memcpy_)(void*, const void*, size_t, unsigned) = nullptr;
  void* (*memset_)(void*, int, size_t, unsigned) = nullptr;
  std::unique_ptr<ControlFile> ctl_;
  PersistTrace* trace_ = nullptr;
  Holder* holder_ = nullptr;
  bool claimed_ = false;
  uint64_t claim_seen_ = 0;
  std::atomic<bool> stop_{false};
  std::thread notifier_;
};

}  // namespace daxfs::pmemdev
