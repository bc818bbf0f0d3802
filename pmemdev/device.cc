// Device: the libpmem2 mapping of the media file, its driver read/write paths, poison, and the
// holder's notifier thread (see device.h).
#include "pmemdev/device.h"

#include <fcntl.h>
#include <libpmem2.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>

#include "common/scope_guard.h"

namespace daxfs::pmemdev {

const char* failure_kind_name(FailureKind kind) {
  switch (kind) {
    case FailureKind::kMemoryFailure: return "memory-failure";
    case FailureKind::kPreRemove: return "pre-remove";
  }
  return "unknown";
}

namespace {
// libpmem2 reports negative codes; map them to a positive errno once, here, and log its message.
int pmem2_to_errno(int rc, const char* what) {
  fprintf(stderr, "pmemdev: %s: %s\n", what, pmem2_errormsg());
  // Codes above -100000 are negated errnos; the rest are libpmem2's own (bad configuration).
  if (rc < 0 && rc > -100000) return -rc;
  return EINVAL;
}

// Opens the media file, creating it as `create` says; `created` tells whether this call did.
int open_media(const std::string& path, Create create, bool& created) {
  created = false;
  if (create == Create::kNo) return ::open(path.c_str(), O_RDWR | O_CLOEXEC);
  // 0600: the media holds every file's data, whatever the files' own modes.
  int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd >= 0) {
    created = true;
    return fd;
  }
  if (errno != EEXIST || create == Create::kExclusive) return -1;
  return ::open(path.c_str(), O_RDWR | O_CLOEXEC);
}

}  // namespace

Result<std::unique_ptr<Device>> Device::open(const std::string& path, const OpenOptions& opts) {
  bool creating = opts.create != Create::kNo;
  // Everything that can be checked before touching the file is.
  if (creating && (opts.size == 0 || opts.size % kPageSize != 0)) return error(EINVAL);
  if (creating && opts.size > kMaxDeviceSize) return error(EFBIG);
  std::unique_ptr<Device> d(new Device());
  d->path_ = path;
  d->fd_ = open_media(path, opts.create, d->changes_.created_media);
  if (d->fd_ < 0) return error(errno);
  // Declared after d: runs first on a failed return, while d (its fds, its mapping) is alive.
  ScopeGuard revert([&d] {
    Status st = Device::revert(d->path_, d->changes_);
    if (!st) fprintf(stderr, "pmemdev: %s: cannot undo a failed open: %s\n", d->path_.c_str(), strerror(st.error()));
  });
  struct stat st;
  if (fstat(d->fd_, &st) != 0) return error(errno);
  if (!S_ISREG(st.st_mode)) return error(EINVAL);
  if (opts.map == Map::kYes && static_cast<uint64_t>(st.st_size) > kMaxDeviceSize) return error(EFBIG);
  if (creating && static_cast<uint64_t>(st.st_size) < opts.size) {
    if (!d->changes_.created_media) {
      d->changes_.extended = true;
      d->changes_.old_size = static_cast<uint64_t>(st.st_size);
    }
    if (ftruncate(d->fd_, static_cast<off_t>(opts.size)) != 0) return error(errno);
    if (fstat(d->fd_, &st) != 0) return error(errno);
  }
  d->size_ = static_cast<uint64_t>(st.st_size);
  if (d->size_ < kPageSize) return error(EINVAL);
  auto ctl = ControlFile::open(path);
  if (!ctl) return error(ctl.error());
  d->ctl_ = std::move(ctl).value();
  d->changes_.created_control = d->ctl_->created();
  if (opts.map == Map::kNo) {
    revert.disarm();
    return d;
  }

  if (opts.granularity == Granularity::kCacheLine)
    setenv("PMEM2_FORCE_GRANULARITY", "CACHE_LINE", /*overwrite=*/0);  // a user's choice wins
  int rc = pmem2_source_from_fd(&d->src_, d->fd_);
  if (rc) return error(pmem2_to_errno(rc, "pmem2_source_from_fd"));
  pmem2_config* cfg = nullptr;
  rc = pmem2_config_new(&cfg);
  if (rc) return error(pmem2_to_errno(rc, "pmem2_config_new"));
  // Page granularity is the weakest requirement: any mapping satisfies it, and the persist
  // functions libpmem2 hands back are the right ones for the granularity it actually chose.
  rc = pmem2_config_set_required_store_granularity(cfg, PMEM2_GRANULARITY_PAGE);
  if (!rc) rc = pmem2_map_new(&d->map_, cfg, d->src_);
  pmem2_config_delete(&cfg);
  if (rc) return error(pmem2_to_errno(rc, "pmem2_map_new"));
  d->base_ = static_cast<char*>(pmem2_map_get_address(d->map_));
  d->cache_line_ = pmem2_map_get_store_granularity(d->map_) != PMEM2_GRANULARITY_PAGE;
  d->flush_ = pmem2_get_flush_fn(d->map_);
  d->drain_ = pmem2_get_drain_fn(d->map_);
  d->memcpy_ = pmem2_get_memcpy_fn(d->map_);
  d->memset_ = pmem2_get_memset_fn(d->map_);
  revert.disarm();
  return d;
}

Status Device::revert(const std::string& path, const OpenChanges& changes) {
  int first = 0;
  auto note = [&first](int e) {
    if (first == 0) first = e;
  };
  std::string ctl = ControlFile::path_for(path);
  if (changes.created_control && unlink(ctl.c_str()) != 0 && errno != ENOENT) note(errno);
  if (changes.created_media) {
    if (unlink(path.c_str()) != 0 && errno != ENOENT) note(errno);
  } else if (changes.extended) {
    if (truncate(path.c_str(), static_cast<off_t>(changes.old_size)) != 0) note(errno);
  }
  if (first != 0) return error(first);
  return {};
}

bool Device::held(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  bool held = flock(fd, LOCK_SH | LOCK_NB) != 0 && errno == EWOULDBLOCK;
  ::close(fd);
  return held;
}

namespace {
// The warning for one file, or "" when only its owner can read and write it.
std::string exposure_warning(const std::string& file, const char* readers_can, const char* writers_can) {
  struct stat st;
  if (stat(file.c_str(), &st) != 0) return "";
  unsigned mode = st.st_mode & 07777;
  bool writable = (mode & (S_IWGRP | S_IWOTH)) != 0;
  bool readable = (mode & (S_IRGRP | S_IROTH)) != 0;
  if (!writable && !readable) return "";
  char octal[8];
  snprintf(octal, sizeof octal, "%04o", mode);
  return file + " is " + (writable ? "writable" : "readable") + " by other users (mode " + octal +
         "): they can " + (writable ? writers_can : readers_can) + "; chmod 600 " + file;
}
}  // namespace

std::vector<std::string> Device::exposure_warnings(const std::string& path) {
  std::vector<std::string> out;
  std::string media = exposure_warning(path, "read every file's data",
                                       "read and overwrite every file's data");
  if (!media.empty()) out.push_back(media);
  std::string ctl = exposure_warning(ControlFile::path_for(path), "read the device's badblock list",
                                     "poison the device and stall its failure notices");
  if (!ctl.empty()) out.push_back(ctl);
  return out;
}

Device::~Device() {
  release();
  if (map_) pmem2_map_delete(&map_);
  if (src_) pmem2_source_delete(&src_);
  if (fd_ >= 0) ::close(fd_);
}

// A store outside the device is a caller's bug that would scribble on the process: stop here.
void Device::check_store(uint64_t dst, size_t length) const {
  if (dst > size_ || length > size_ - dst) {
    fprintf(stderr, "daxfs: store of %zu bytes at device offset %llu is outside the device (%llu bytes)\n",
            length, static_cast<unsigned long long>(dst), static_cast<unsigned long long>(size_));
    abort();
  }
}

// The trace records a store with what it stores (a copy made before the store: `src` may be
// device memory the same call overwrites) and the flush and fence the libpmem2 call issues.
void Device::memcpy_persist(uint64_t dst, const void* src, size_t length) const {
  check_store(dst, length);
  if (trace_) [[unlikely]] {
    trace_->store(dst, src, length);
    trace_->flush(dst, length);
    trace_->fence();
  }
  memcpy_(base_ + dst, src, length, 0);
}
void Device::memset_persist(uint64_t dst, int c, size_t length) const {
  check_store(dst, length);
  if (trace_) [[unlikely]] {
    trace_->fill(dst, c, length);
    trace_->flush(dst, length);
    trace_->fence();
  }
  memset_(base_ + dst, c, length, 0);
}
void Device::memcpy_nodrain(uint64_t dst, const void* src, size_t length) const {
  check_store(dst, length);
  if (trace_) [[unlikely]] {
    trace_->store(dst, src, length);
    trace_->flush(dst, length);
  }
  memcpy_(base_ + dst, src, length, PMEM2_F_MEM_NODRAIN);
}
void Device::memset_nodrain(uint64_t dst, int c, size_t length) const {
  check_store(dst, length);
  if (trace_) [[unlikely]] {
    trace_->fill(dst, c, length);
    trace_->flush(dst, length);
  }
  memset_(base_ + dst, c, length, PMEM2_F_MEM_NODRAIN);
}
void Device::memcpy_noflush(uint64_t dst, const void* src, size_t length) const {
  check_store(dst, length);
  if (trace_) [[unlikely]] trace_->store(dst, src, length);
  memcpy_(base_ + dst, src, length, PMEM2_F_MEM_NOFLUSH);
}
void Device::flush(uint64_t offset, size_t length) const {
  check_store(offset, length);
  if (trace_) [[unlikely]] trace_->flush(offset, length);
  flush_(base_ + offset, length);
}
void Device::drain() const {
  if (trace_) [[unlikely]] trace_->fence();
  drain_();
}

Status Device::check_range(uint64_t offset, uint64_t length) const {
  if (length == 0) return error(EINVAL);
  if (offset >= size_ || length > size_ - offset) return error(ERANGE);
  return {};
}

Status Device::read(uint64_t offset, void* buf, size_t length) const {
  TRY(check_range(offset, length));
  if (ctl_->overlaps(offset, length)) return error(EIO);
  memcpy(buf, base_ + offset, length);
  return {};
}

Status Device::write(uint64_t offset, const void* buf, size_t length) {
  TRY(check_range(offset, length));
  if (ctl_->overlaps(offset, length)) {
    // The pmem driver's recovery path: only whole, aligned sectors can be cleared by a write.
    if (offset % kSectorSize != 0 || length % kSectorSize != 0) return error(EIO);
    TRY(ctl_->clear(offset, length));
  }
  memcpy_persist(offset, buf, length);
  return {};
}

Result<uint64_t> Device::inject_error(uint64_t offset, uint64_t length) {
  TRY(check_range(offset, length));
  return ctl_->inject(offset, length);
}

Status Device::clear_error(uint64_t offset, uint64_t length) {
  TRY(check_range(offset, length));
  return ctl_->clear(offset, length);
}

std::vector<ByteRange> Device::list_errors() const {
  std::vector<ByteRange> out;
  for (const SectorRange& r : ctl_->list())
    out.push_back({r.sector * kSectorSize, r.sectors * kSectorSize});
  return out;
}

bool Device::poisoned(uint64_t offset, uint64_t length) const {
  return ctl_->overlaps(offset, length);
}

Status Device::claim(Holder* holder, Notifier notifier) {
  if (claimed_) return error(EBUSY);
  // The holder's claim is an flock on the media file: released by the kernel when the holder
  // dies, so a crashed daemon never leaves the device looking held.
  if (flock(fd_, LOCK_EX | LOCK_NB) != 0) return error(errno == EWOULDBLOCK ? EBUSY : errno);
  holder_ = holder;
  claimed_ = true;
  stop_ = false;
  // Failures posted before the claim are history (the holder reads the list itself); read the
  // head here, not in the thread, so that a failure posted right after claim() is not missed.
  claim_seen_ = ctl_->event_head();
  if (notifier == Notifier::kStart) start_notifier();
  return {};
}

void Device::start_notifier() {
  if (!claimed_ || notifier_.joinable()) return;
  uint64_t seen = claim_seen_;
  notifier_ = std::thread([this, seen] { notifier_loop(seen); });
}

void Device::release() {
  if (!claimed_) return;
  stop_ = true;
  ctl_->kick();
  if (notifier_.joinable()) notifier_.join();
  flock(fd_, LOCK_UN);
  claimed_ = false;
  holder_ = nullptr;
}

bool Device::held_elsewhere() const { return !claimed_ && held(path_); }

Result<uint64_t> Device::notify_pre_remove() {
  return ctl_->post(FailureKind::kPreRemove, 0, size_);
}

bool Device::wait_notified(uint64_t seq, int timeout_ms) const {
  if (!claimed_ && !held_elsewhere()) return false;
  return ctl_->wait_ack(seq, timeout_ms);
}

void Device::notifier_loop(uint64_t seen) {
  while (!stop_) {
    bool overflowed = false;
    std::vector<FailureEvent> events = ctl_->wait_events(seen, 200, overflowed);
    if (overflowed) {
      // Events were lost: re-deliver every bad range, which is a superset of what was lost.
      for (const ByteRange& r : list_errors())
        events.push_back({seen, r.offset, r.length,
                          static_cast<uint32_t>(FailureKind::kMemoryFailure), 0});
    }
    for (const FailureEvent& e : events) {
      auto kind = static_cast<FailureKind>(e.kind);
      if (kind == FailureKind::kPreRemove) {
        holder_->notify_failure(0, size_, kind);
        continue;
      }
      uint64_t first = e.offset / kPageSize * kPageSize;
      uint64_t end = std::min(size_, (e.offset + e.length + kPageSize - 1) / kPageSize * kPageSize);
      for (uint64_t page = first; page < end; page += kPageSize)
        holder_->notify_failure(page, kPageSize, kind);
    }
    if (!events.empty() || overflowed) ctl_->ack(seen);
  }
}

}  // namespace daxfs::pmemdev
