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
#include "pmemdev/result.h"

struct pmem2_map;
struct pmem2_source;

namespace daxfs::pmemdev {

struct ByteRange {
  uint64_t offset;
  uint64_t length;
  bool operator==(const ByteRange&) const = default;
};

enum class Create { kNo, kYes };
enum class Map { kYes, kNo };  // kNo: control file only (CLI poison commands on a big device)
enum class Granularity {
  kAuto,       // what libpmem2 detects: page (msync) on a file that is not on a DAX fs
  kCacheLine,  // force cache-line flushes (PMEM2_FORCE_GRANULARITY=CACHE_LINE): emulated pmem
};

struct OpenOptions {
  Create create = Create::kNo;
  uint64_t size = 0;  // with kYes: create or extend the file to this size (multiple of 4 KiB)
  Map map = Map::kYes;
  Granularity granularity = Granularity::kCacheLine;
};

class Device {
 public:
  // Opens the device file at `path`. ENOENT when it does not exist (without Create::kYes),
  // EINVAL for a size that is zero or not a multiple of 4 KiB, or a device smaller than 4 KiB,
  // and the libpmem2 error (logged to stderr) when mapping fails.
  static Result<std::unique_ptr<Device>> open(const std::string& path, const OpenOptions& opts);
  ~Device();
  Device(const Device&) = delete;
  Device& operator=(const Device&) = delete;

  const std::string& path() const { return path_; }
  uint64_t size() const { return size_; }
  // The mapped media (nullptr when opened with Map::kNo). Direct loads and stores are the
  // caller's business; persist them with persist().
  char* base() const { return base_; }
  bool cache_line_granularity() const { return cache_line_; }

  // Persistence primitives of the libpmem2 map.
  void persist(const void* addr, size_t length) const;
  void flush(const void* addr, size_t length) const;
  void drain() const;
  // Copies/sets device memory and makes it persistent before returning.
  void memcpy_persist(void* dst, const void* src, size_t length) const;
  void memset_persist(void* dst, int c, size_t length) const;
  // Same, but only flushed: the caller orders it later with drain().
  void memcpy_nodrain(void* dst, const void* src, size_t length) const;
  void memset_nodrain(void* dst, int c, size_t length) const;

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
  void notifier_loop(uint64_t seen);

  std::string path_;
  int fd_ = -1;
  uint64_t size_ = 0;
  char* base_ = nullptr;
  bool cache_line_ = false;
  pmem2_source* src_ = nullptr;
  pmem2_map* map_ = nullptr;
  void (*persist_)(const void*, size_t) = nullptr;
  void (*flush_)(const void*, size_t) = nullptr;
  void (*drain_)() = nullptr;
  void* (*memcpy_)(void*, const void*, size_t, unsigned) = nullptr;
  void* (*memset_)(void*, int, size_t, unsigned) = nullptr;
  std::unique_ptr<ControlFile> ctl_;
  Holder* holder_ = nullptr;
  bool claimed_ = false;
  uint64_t claim_seen_ = 0;
  std::atomic<bool> stop_{false};
  std::thread notifier_;
};

}  // namespace daxfs::pmemdev
