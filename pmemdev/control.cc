// The shared control file beside a device (see control.h).
//
// Layout (one file, mapped MAP_SHARED by every process that opens the device):
//   header | robust mutex | counters | event ring[kEventRing] | badblock table[2]
// Update protocol for the badblock list, under the mutex:
//   1. copy tables[active] to tables[!active] and apply the change there;
//   2. msync (orders the new table before the switch, for power failure of the host);
//   3. store active = !active (one aligned 32-bit store: the commit point);
//   4. msync.
// A process killed anywhere in 1-4 leaves `active` naming a complete table; the next locker gets
// EOWNERDEAD and marks the mutex consistent.
#include "pmemdev/control.h"

#include <fcntl.h>
#include <pthread.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>

#include "common/futex.h"
#include "common/robust_mutex.h"

namespace daxfs::pmemdev {

namespace {
constexpr uint64_t kMagic = 0x4c54434d454d5044ULL;  // "DPMEMCTL"
constexpr uint32_t kVersion = 1;

// An existing control file is trusted only if it is owned by this user or by the device's
// owner, and it may let group and others do nothing the device does not let them do: whoever
// can write it can hold its mutex forever, post fake memory failures and fill the badblock list,
// and whoever can read it reads the list. A file someone else planted beside the device (in
// /dev/shm anyone can, before the device exists) is refused with EPERM; one of ours that is more
// open than the device is narrowed (fchmod), as `chmod 600` would. Returns 0 or the errno.
int check_existing(int fd, const std::string& device_path, const std::string& path) {
  struct stat st, media;
  if (fstat(fd, &st) != 0) return errno;
  bool have_media = stat(device_path.c_str(), &media) == 0;
  if (!S_ISREG(st.st_mode)) return EINVAL;
  if (st.st_uid != geteuid() && !(have_media && st.st_uid == media.st_uid)) {
    fprintf(stderr, "pmemdev: %s belongs to uid %u, neither this user nor the device's owner: refused (remove it)\n",
            path.c_str(), static_cast<unsigned>(st.st_uid));
    return EPERM;
  }
  mode_t allowed = have_media ? (media.st_mode & 066) : 0;
  mode_t extra = st.st_mode & 066 & ~allowed;
  if (extra == 0) return 0;
  const unsigned was = st.st_mode & 07777, now = was & ~extra;
  if (fchmod(fd, now) != 0) {
    fprintf(stderr, "pmemdev: %s is mode %04o, more open than the device, and cannot be narrowed: refused\n",
            path.c_str(), was);
    return EPERM;
  }
  fprintf(stderr, "pmemdev: %s was mode %04o, more open than the device: narrowed to %04o\n", path.c_str(), was, now);
  return 0;
}

}  // namespace

struct ControlLayout {
  uint64_t magic;
  uint32_t version;
  uint32_t layout_size;
  pthread_mutex_t lock;
  std::atomic<uint32_t> active;     // index of the current table
  std::atomic<uint32_t> badcount;   // tables[active].count, for the lock-free empty check
  std::atomic<uint32_t> doorbell;   // futex: bumped on every posted event
  std::atomic<uint32_t> ack_word;   // futex: bumped on every ack
  std::atomic<uint64_t> event_head; // seq of the newest posted event
  std::atomic<uint64_t> event_ack;  // seq of the newest event the holder has handled
  FailureEvent events[kEventRing];
  BadblockTable tables[2];
};
static_assert(std::atomic<uint32_t>::is_always_lock_free);
static_assert(std::atomic<uint64_t>::is_always_lock_free);

// Scoped hold of the robust mutex. A previous owner that died holding it left the
// double-buffered table whole: nothing to repair.
class ControlFile::Locked : public RobustLock {
 public:
  explicit Locked(ControlLayout* l) : RobustLock(&l->lock) {}
};

Result<std::unique_ptr<ControlFile>> ControlFile::open(const std::string& device_path) {
  std::string path = path_for(device_path);
  // O_EXCL first, so that we know whether we created it (a failed open removes what it made).
  // 0600: whoever can write the file can hold its mutex forever and post fake failures.
  // O_NOFOLLOW: a symbolic link planted in its place (in a world-writable directory such as
  // /dev/shm) would have us initialise whatever file it names (ELOOP instead).
  bool created = true;
  int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (fd < 0 && errno == EEXIST) {
    created = false;
    fd = ::open(path.c_str(), O_RDWR | O_NOFOLLOW | O_CLOEXEC);
    if (fd >= 0) {
      if (int e = check_existing(fd, device_path, path)) {
        ::close(fd);
        return error(e);
      }
    }
  }
  if (fd < 0) return error(errno);
  auto fail = [&](int e) -> Result<std::unique_ptr<ControlFile>> {
    if (created) unlink(path.c_str());
    flock(fd, LOCK_UN);
    ::close(fd);
    return error(e);
  };
  // flock serialises initialisation between processes opening a new control file together.
  if (flock(fd, LOCK_EX) != 0) return fail(errno);
  struct stat st;
  if (fstat(fd, &st) != 0) return fail(errno);
  bool fresh = st.st_size == 0;
  if (!fresh && static_cast<size_t>(st.st_size) != sizeof(ControlLayout)) return fail(EPROTO);
  if (fresh && ftruncate(fd, sizeof(ControlLayout)) != 0) return fail(errno);
  void* p = mmap(nullptr, sizeof(ControlLayout), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (p == MAP_FAILED) return fail(errno);
  auto* l = static_cast<ControlLayout*>(p);
  if (fresh || l->magic != kMagic) {
    if (!fresh && l->magic != 0) {
      munmap(p, sizeof(ControlLayout));
      return fail(EPROTO);
    }
    memset(p, 0, sizeof(ControlLayout));
    init_robust_mutex(&l->lock);
    l->version = kVersion;
    l->layout_size = sizeof(ControlLayout);
    msync(p, sizeof(ControlLayout), MS_SYNC);  // the initialised body before the magic
    l->magic = kMagic;
    msync(p, sizeof(ControlLayout), MS_SYNC);
  }
  if (l->version != kVersion || l->layout_size != sizeof(ControlLayout)) {
    munmap(p, sizeof(ControlLayout));
    return fail(EPROTO);
  }
  uint32_t a = l->active.load();
  if (a > 1 || !l->tables[a].valid()) {
    munmap(p, sizeof(ControlLayout));
    return fail(EUCLEAN);
  }
  l->badcount.store(l->tables[a].count);
  flock(fd, LOCK_UN);
  return std::unique_ptr<ControlFile>(new ControlFile(fd, l, created));
}

ControlFile::~ControlFile() {
  munmap(l_, sizeof(ControlLayout));
  ::close(fd_);
}

Status ControlFile::update_locked(const std::function<Status(BadblockTable&)>& change) {
  uint32_t a = l_->active.load();
  BadblockTable& next = l_->tables[1 - a];
  next = l_->tables[a];
  TRY(change(next));
  msync(l_, sizeof(ControlLayout), MS_SYNC);  // the new table before the switch
  l_->active.store(1 - a);
  l_->badcount.store(next.count);
  msync(l_, sizeof(ControlLayout), MS_SYNC);  // the switch itself
  return {};
}

Result<uint64_t> ControlFile::inject(uint64_t offset, uint64_t length) {
  SectorRange r = TRY(bytes_to_sectors(offset, length));
  Locked lock(l_);
  TRY(update_locked([&](BadblockTable& t) { return t.add(r.sector, r.sectors); }));
  return post_locked(FailureKind::kMemoryFailure, offset, length);
}

Status ControlFile::clear(uint64_t offset, uint64_t length) {
  SectorRange r = TRY(bytes_to_sectors(offset, length));
  Locked lock(l_);
  return update_locked([&](BadblockTable& t) { return t.clear(r.sector, r.sectors); });
}

Result<uint64_t> ControlFile::post(FailureKind kind, uint64_t offset, uint64_t length) {
  Locked lock(l_);
  return post_locked(kind, offset, length);
}

Result<uint64_t> ControlFile::post_locked(FailureKind kind, uint64_t offset, uint64_t length) {
  uint64_t seq = l_->event_head.load() + 1;
  l_->events[seq % kEventRing] = FailureEvent{seq, offset, length, static_cast<uint32_t>(kind), 0};
  l_->event_head.store(seq);  // publishes the slot written above
  l_->doorbell.fetch_add(1);
  futex_wake_all(&l_->doorbell);
  return seq;
}

std::vector<SectorRange> ControlFile::list() {
  Locked lock(l_);
  return l_->tables[l_->active.load()].list();
}

bool ControlFile::overlaps(uint64_t offset, uint64_t length) {
  if (l_->badcount.load(std::memory_order_acquire) == 0) return false;
  auto r = bytes_to_sectors(offset, length);
  if (!r) return false;
  Locked lock(l_);
  return l_->tables[l_->active.load()].overlaps(r->sector, r->sectors);
}

uint64_t ControlFile::event_head() { return l_->event_head.load(); }

std::vector<FailureEvent> ControlFile::wait_events(uint64_t& last_seen, int timeout_ms,
                                                   bool& overflowed) {
  overflowed = false;
  std::vector<FailureEvent> out;
  // Read the doorbell before the head so that a post between the two wakes the wait below.
  uint32_t bell = l_->doorbell.load();
  if (l_->event_head.load() == last_seen) futex_wait_ms(&l_->doorbell, bell, timeout_ms);
  Locked lock(l_);
  uint64_t head = l_->event_head.load();
  if (head - last_seen > kEventRing) {
    overflowed = true;
  } else {
    for (uint64_t s = last_seen + 1; s <= head; s++) out.push_back(l_->events[s % kEventRing]);
  }
  last_seen = head;
  return out;
}

void ControlFile::ack(uint64_t seq) {
  uint64_t cur = l_->event_ack.load();
  while (cur < seq && !l_->event_ack.compare_exchange_weak(cur, seq)) {
  }
  l_->ack_word.fetch_add(1);
  futex_wake_all(&l_->ack_word);
}

bool ControlFile::wait_ack(uint64_t seq, int timeout_ms) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  for (;;) {
    uint32_t word = l_->ack_word.load();
    if (l_->event_ack.load() >= seq) return true;
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now()).count();
    if (left <= 0) return false;
    futex_wait_ms(&l_->ack_word, word, static_cast<int>(std::min<long>(left, 100)));
  }
}

void ControlFile::kick() {
  l_->doorbell.fetch_add(1);
  futex_wake_all(&l_->doorbell);
}

}  // namespace daxfs::pmemdev
