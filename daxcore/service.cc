// The DAX service (service.h): sessions, the fault service and layout breaks. Why the fault
// records a generation: Linux's dax_iomap_fault holds the file's mapping lock and the DAX entry
// lock from iomap_begin until the pte is in; here the filesystem's locks are gone when
// iomap_begin returns, so the record is only made if no break of the inode started since the
// fault asked (the generation is unchanged), else the fault asks again. A break that starts
// after the record finds it and revokes it.
#include "daxcore/service.h"

#include <poll.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <fstream>

#include "common/futex.h"

namespace daxfs::dax {

namespace {

using Clock = std::chrono::steady_clock;
constexpr uint64_t kPage = DAXFS_DAX_PAGE;
constexpr uint64_t kChunk = 2ull << 20;           // a store fault allocates at most to the 2 MiB boundary
constexpr uint64_t kMaxRequest = 1ull << 40;       // longest range one request may name
constexpr uint64_t kMaxOffset = 1ull << 63;        // file offsets are below 2^63
constexpr int kMaxFaultRetries = 64;
constexpr uint32_t kMaxRecordsPerSession = kMaxMappings / 4;  // no process can fill the registry
constexpr uint32_t kMaxSessionsPerUid = kMaxSessions / 4;      // nor a user take every session
constexpr uint32_t kDeviceOrZero = (1u << uint32_t(MapKind::kDevice)) | (1u << uint32_t(MapKind::kZero));
constexpr uint32_t kZeroOnly = 1u << uint32_t(MapKind::kZero);
constexpr uint32_t kPinOnly = 1u << uint32_t(MapKind::kPin);

std::atomic<uint32_t>* word(uint32_t* w) { return reinterpret_cast<std::atomic<uint32_t>*>(w); }

pid_t tgid_of(pid_t tid) {
  std::ifstream in("/proc/" + std::to_string(tid) + "/status");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("Tgid:", 0) == 0) return static_cast<pid_t>(std::strtol(line.c_str() + 5, nullptr, 10));
  return 0;
}

bool exited(int pidfd) {
  pollfd p{pidfd, POLLIN, 0};
  return poll(&p, 1, 0) > 0;
}

uint64_t end_of(uint64_t offset, uint64_t length) {
  return length == kToEnd || offset + length < offset ? UINT64_MAX : offset + length;
}

}  // namespace

struct DaxService::Session {
  uint32_t slot = 0;
  pid_t pid = 0;
  uid_t uid = 0;
  uint64_t start = 0;
  uint64_t token = 0;
  int pidfd = -1;
  std::unique_ptr<Channel> channel;
  std::unordered_map<uint64_t, uint32_t> grants;   // ino -> DAXFS_DAX_ACCESS_*
  std::unordered_map<uint64_t, uint32_t> records;  // ino -> this session's records of it (one hold)
  uint32_t total_records = 0;
  std::atomic<bool> ended{false};
  ~Session() {
    if (pidfd >= 0) close(pidfd);
  }
};

Result<std::unique_ptr<DaxService>> DaxService::create(DaxFiles& files, const DaxOptions& opts,
                                                       std::vector<pid_t>* killed) {
  std::unique_ptr<DaxService> s(new DaxService(files, opts));
  s->registry_ = TRY(Registry::create(opts.registry, opts.device, opts.mountpoint, opts.lease_ms, killed));
  s->by_slot_.assign(kMaxSessions, nullptr);
  return s;
}

DaxService::~DaxService() { stop(); }

void DaxService::start() {
  std::lock_guard lock(mu_);
  registry_->begin_update();
  registry_->set_daemon_pid(getpid());
  registry_->end_update();
}

DaxCounters DaxService::counters() {
  std::lock_guard lock(mu_);
  return registry_->counters();
}

std::shared_ptr<DaxService::Session> DaxService::session_of(pid_t tgid) {
  auto it = sessions_.find(tgid);
  return it == sessions_.end() ? nullptr : it->second;
}

Result<daxfs_dax_connect> DaxService::connect(pid_t tid, uid_t uid, const daxfs_dax_connect& in) {
  if (in.abi != DAXFS_DAX_ABI) return error(EPROTO);
  for (uint64_t r : in.reserved)
    if (r) return error(EINVAL);
  pid_t tgid = tgid_of(tid);
  if (tgid <= 0) return error(ESRCH);
  uint64_t start = process_start_time(tgid);
  std::vector<uint64_t> released;
  std::shared_ptr<Session> s;
  {
    std::lock_guard lock(mu_);
    if (shut_ || stopped_) return error(EIO);
    s = session_of(tgid);
    // The same process image quotes its token: the same session. Anything else is a new image
    // (an exec: the old one maps nothing any more) and the old session goes.
    if (s && s->start == start && in.token == s->token && !s->ended) {
      // fall through to the reply
    } else {
      if (s) end_session_locked(*s, released);
      s = nullptr;
    }
  }
  release(released);
  if (!s) {
    auto fresh = std::make_shared<Session>();
    fresh->pid = tgid, fresh->uid = uid, fresh->start = start;
    if (getrandom(&fresh->token, sizeof fresh->token, 0) != sizeof fresh->token) return error(EIO);
    fresh->pidfd = static_cast<int>(syscall(SYS_pidfd_open, tgid, 0));
    if (fresh->pidfd < 0) return error(errno);
    // Taken without mu_: pidfd_getfd waits for nothing of the client's, but it is a system call
    // on another process, and mu_ is only for the tables.
    fresh->channel = TRY(Channel::attach(fresh->pidfd, in.channel_fd));
    std::lock_guard lock(mu_);
    if (shut_ || stopped_) return error(EIO);
    if (auto again = session_of(tgid)) {
      end_session_locked(*again, released);  // a second connect raced this one: the last wins
    }
    uint32_t of_uid = 0;
    for (auto& [pid, other] : sessions_)
      if (other->uid == uid) of_uid++;
    if (uid != 0 && of_uid >= kMaxSessionsPerUid) return error(EAGAIN);  // one user cannot take them all
    auto free_slot = std::find(by_slot_.begin(), by_slot_.end(), nullptr);
    if (free_slot == by_slot_.end()) return error(EAGAIN);
    fresh->slot = static_cast<uint32_t>(free_slot - by_slot_.begin());
    sessions_[tgid] = fresh;
    *free_slot = fresh.get();
    registry_->begin_update();
    registry_->set_session(fresh->slot, SessionEntry{1, tgid, static_cast<uint32_t>(uid), 0, start});
    registry_->counters().sessions++;
    registry_->end_update();
    threads_++;
    std::thread(&DaxService::serve, this, fresh).detach();
    s = fresh;
  }
  release(released);
  daxfs_dax_connect out{};
  out.abi = DAXFS_DAX_ABI;
  out.channel_fd = in.channel_fd;
  out.daemon_pid = getpid();
  out.token = s->token;
  out.device_size = opts_.device_size;
  out.lease_ms = opts_.lease_ms;
  out.session = s->slot;
  snprintf(out.device, sizeof out.device, "%s", opts_.device.c_str());
  return out;
}

Result<daxfs_dax_grant> DaxService::grant(pid_t tid, uint64_t ino, bool writable) {
  pid_t tgid = tgid_of(tid);
  daxfs_dax_grant out{};
  {
    std::lock_guard lock(mu_);
    if (shut_ || stopped_) return error(EIO);
    auto s = session_of(tgid);
    if (!s || s->ended) return error(ENOTCONN);
    s->grants[ino] |= DAXFS_DAX_ACCESS_READ | (writable ? DAXFS_DAX_ACCESS_WRITE : 0);
    out.token = s->token;
    out.access = s->grants[ino];
  }
  out.ino = ino;
  out.dax = files_.dax_file(ino) ? 1 : 0;
  return out;
}

void DaxService::serve(std::shared_ptr<Session> s) {
  daxfs_dax_channel* chan = s->channel->shm();
  for (;;) {
    uint32_t bell = __atomic_load_n(&chan->doorbell, __ATOMIC_ACQUIRE);
    {
      std::lock_guard lock(mu_);
      if (s->ended || stopped_) break;
    }
    for (daxfs_dax_request& slot : chan->requests) handle(*s, slot);
    if (exited(s->pidfd) || !s->channel->image_alive()) {  // exited, or exec'd: maps nothing
      end_session(s);
      break;
    }
    futex_wait_ms(word(&chan->doorbell), bell, 100);
  }
  std::lock_guard lock(mu_);
  threads_--;
  threads_cv_.notify_all();
}

void DaxService::handle(Session& s, daxfs_dax_request& slot) {
  if (__atomic_load_n(&slot.state, __ATOMIC_ACQUIRE) != DAXFS_REQ_SUBMITTED) return;
  daxfs_dax_request in;
  memcpy(&in, &slot, sizeof in);  // copied once: the client may change the slot meanwhile
  daxfs_dax_request out{};
  if (in.token != s.token) {
    out.error = EPERM;
  } else if (in.op == DAXFS_OP_FAULT) {
    fault(s, in, out);
  } else if (in.op == DAXFS_OP_UNMAP) {
    unmap(s, in);
  } else if (in.op == DAXFS_OP_PIN || in.op == DAXFS_OP_UNPIN) {
    pin(s, in, out);
  } else {
    out.error = EINVAL;
  }
  slot.error = out.error;
  slot.kind = out.kind;
  slot.r_offset = out.r_offset, slot.r_length = out.r_length, slot.r_device = out.r_device;
  slot.r_prot = out.r_prot, slot.r_revoke_seq = out.r_revoke_seq;
  slot.seq = in.seq;
  __atomic_store_n(&slot.state, DAXFS_REQ_REPLIED, __ATOMIC_RELEASE);  // after the reply's fields
  futex_wake_all(word(&slot.state));
}

// Validates a request's range: page-aligned, non-empty, below 2^63, not absurdly long.
static bool valid_range(const daxfs_dax_request& in) {
  return in.offset % kPage == 0 && in.length > 0 && in.length <= kMaxRequest && in.offset < kMaxOffset &&
         in.offset + in.length <= kMaxOffset;
}

void DaxService::fault(Session& s, const daxfs_dax_request& in, daxfs_dax_request& out) {
  const bool write = in.flags & DAXFS_FAULT_WRITE;
  uint32_t access;
  {
    std::lock_guard lock(mu_);
    auto g = s.grants.find(in.ino);
    access = g == s.grants.end() ? 0 : g->second;
  }
  auto fail = [&](int err) {
    out.error = err;
    std::lock_guard lock(mu_);
    registry_->begin_update();
    registry_->counters().faults_failed++;
    registry_->end_update();
  };
  if (!valid_range(in)) return fail(EINVAL);
  if (!(access & DAXFS_DAX_ACCESS_READ) || (write && !(access & DAXFS_DAX_ACCESS_WRITE))) return fail(EACCES);
  uint32_t prot_allowed = PROT_READ | ((access & DAXFS_DAX_ACCESS_WRITE) && (in.prot & PROT_WRITE) ? PROT_WRITE : 0);
  if (Status st = files_.hold_inode(in.ino); !st) return fail(st.error());
  bool keep_hold = false;
  enum { kMapped, kHole, kUnwritten, kAlloc, kCow } what = kMapped;
  for (int attempt = 0; attempt < kMaxFaultRetries; attempt++) {
    uint64_t generation;
    {
      std::lock_guard lock(mu_);
      if (shut_ || s.ended) break;
      InodeState& st = inodes_[in.ino];
      generation = st.generation;
      st.inflight++;
    }
    auto done_inflight = [&] {
      InodeState& st = inodes_[in.ino];
      st.inflight--;
      bool same = st.generation == generation;
      if (st.mappings.empty() && st.inflight == 0) inodes_.erase(in.ino);
      return same;
    };
    const uint64_t length = in.length;
    int err = 0;
    // The filesystem clips the answer to EOF (ENXIO past it) under its own locks: a size read
    // here could be a truncate's "before" while the blocks are its "after". Reported (split
    // where poison starts or ends): the answer from `offset` is one run of healthy or of
    // poisoned pages, so a poisoned page further on does not fail this fault.
    Result<IomapPair> got = files_.iomap_begin(in.ino, in.offset, length, kIomapFault | kIomapReport);
    bool poisoned = got && (got->map.flags & kIomapPoisoned);
    if (got && write && !poisoned &&
        (got->map.type != IomapType::kMapped || (got->map.flags & kIomapShared))) {
      // A store where blocks must be allocated, converted or copied: at most to the next 2 MiB
      // boundary, as a PMD fault would (never the whole rest of a sparse mapping), and never
      // past the healthy run (a copy from a poisoned block fails).
      bool shared = got->map.flags & kIomapShared;
      uint64_t run = got->map.offset + got->map.length - in.offset;
      Status end = files_.iomap_end(in.ino, got->map, 0, kIomapFault);
      (void)end;
      uint64_t chunk_end = (in.offset / kChunk + 1) * kChunk;
      got = files_.iomap_begin(in.ino, in.offset, std::min({length, chunk_end - in.offset, run}),
                               kIomapFault | kIomapWrite);
      what = shared ? kCow : kAlloc;
    } else if (got && what != kAlloc && what != kCow) {  // an earlier try's copy counts
      what = got->map.type == IomapType::kHole ? kHole
             : got->map.type == IomapType::kUnwritten ? kUnwritten : kMapped;
    }
    if (!got) err = got.error() == ENXIO ? DAXFS_ERR_BEYOND_EOF : got.error();
    std::unique_lock lock(mu_);
    if (!done_inflight()) {
      registry_->begin_update();
      registry_->counters().faults_retried++;
      registry_->end_update();
      lock.unlock();
      if (got) (void)files_.iomap_end(in.ino, got->map, 0, kIomapFault);
      continue;
    }
    if (!err && (s.ended || shut_)) err = EIO;  // ended meanwhile (killed, exec'd, shut down): no record
    if (err) {
      lock.unlock();
      if (got) (void)files_.iomap_end(in.ino, got->map, 0, kIomapFault);
      files_.release_inode(in.ino);
      return fail(err);
    }
    const Iomap& m = got->map;
    if (m.flags & kIomapPoisoned) {
      lock.unlock();
      (void)files_.iomap_end(in.ino, m, 0, kIomapFault);
      files_.release_inode(in.ino);
      return fail(DAXFS_ERR_POISON);
    }
    MappingEntry e{};
    e.session = s.slot, e.pid = s.pid, e.ino = in.ino;
    e.offset = m.offset;
    e.length = std::min(m.length, in.offset + length - m.offset);
    e.address = in.address;
    if (m.type == IomapType::kMapped) {
      e.kind = MapKind::kDevice;
      e.device = m.address;
      e.prot = (m.flags & kIomapShared) ? PROT_READ : prot_allowed;
    } else {
      e.kind = MapKind::kZero;
      e.device = UINT64_MAX;
      e.prot = PROT_READ;
    }
    Added added = add_record_locked(s, e, &keep_hold);
    registry_->begin_update();
    DaxCounters& c = registry_->counters();
    if (added != Added::kFull) {
      c.faults++;
      (what == kMapped ? c.faults_mapped : what == kHole ? c.faults_hole : what == kUnwritten ? c.faults_unwritten
       : what == kAlloc ? c.faults_alloc : c.faults_cow)++;
    } else {
      c.faults_failed++;
    }
    registry_->end_update();
    out.r_revoke_seq = s.channel->posted();  // revokes posted later concern this mapping
    lock.unlock();
    (void)files_.iomap_end(in.ino, m, e.length, kIomapFault);
    if (!keep_hold) files_.release_inode(in.ino);
    if (added == Added::kFull) {
      out.error = ENOMEM;  // the registry (or this process's share of it) is full
      return;
    }
    out.kind = e.kind == MapKind::kDevice ? DAXFS_MAP_DEVICE : DAXFS_MAP_ZERO;
    out.r_offset = e.offset, out.r_length = e.length, out.r_device = e.device, out.r_prot = e.prot;
    return;
  }
  files_.release_inode(in.ino);
  fail(shut_ ? EIO : EAGAIN);
}

void DaxService::unmap(Session& s, const daxfs_dax_request& in) {
  if (!valid_range(in)) return;
  std::vector<uint64_t> released;
  {
    std::lock_guard lock(mu_);
    drop_locked(s, in.ino, in.offset, in.offset + in.length, kDeviceOrZero, released, in.address);
  }
  release(released);
}

void DaxService::pin(Session& s, const daxfs_dax_request& in, daxfs_dax_request& out) {
  if (!valid_range(in)) return void(out.error = EINVAL);
  if (in.op == DAXFS_OP_UNPIN) {
    std::vector<uint64_t> released;
    {
      std::lock_guard lock(mu_);
      drop_locked(s, in.ino, in.offset, in.offset + in.length, kPinOnly, released, in.address);
    }
    pins_cv_.notify_all();
    release(released);
    return;
  }
  if (in.flags & DAXFS_PIN_LONGTERM) {
    // Linux refuses FOLL_LONGTERM pins of fsdax pages: the filesystem could never move the
    // blocks (truncate, reflink, memory failure would wait forever).
    std::lock_guard lock(mu_);
    registry_->begin_update();
    registry_->counters().pins_refused++;
    registry_->end_update();
    return void(out.error = EOPNOTSUPP);
  }
  {
    std::lock_guard lock(mu_);
    auto g = s.grants.find(in.ino);
    if (g == s.grants.end()) return void(out.error = EACCES);
  }
  if (Status st = files_.hold_inode(in.ino); !st) return void(out.error = st.error());
  for (int attempt = 0; attempt < kMaxFaultRetries; attempt++) {
    uint64_t generation;
    {
      std::lock_guard lock(mu_);
      InodeState& st = inodes_[in.ino];
      generation = st.generation;
      st.inflight++;
    }
    auto got = files_.iomap_begin(in.ino, in.offset, in.length, kIomapFault | kIomapReport);
    std::unique_lock lock(mu_);
    InodeState& st = inodes_[in.ino];
    st.inflight--;
    if (st.generation != generation) {
      lock.unlock();
      if (got) (void)files_.iomap_end(in.ino, got->map, 0, kIomapFault);
      continue;
    }
    bool ok = got && got->map.type == IomapType::kMapped && !(got->map.flags & kIomapPoisoned) && !s.ended &&
              !shut_;
    bool full = false, keep_hold = false;
    if (ok) {
      MappingEntry e{};
      e.session = s.slot, e.pid = s.pid, e.ino = in.ino, e.kind = MapKind::kPin;
      e.offset = got->map.offset, e.length = got->map.length, e.device = got->map.address;
      e.address = in.address, e.prot = PROT_READ;
      full = add_record_locked(s, e, &keep_hold) == Added::kFull;
      if (!full) {
        registry_->begin_update();
        registry_->counters().pins++;
        registry_->end_update();
      }
      out.r_offset = e.offset, out.r_length = e.length, out.r_device = e.device;
    }
    if (st.mappings.empty() && st.inflight == 0) inodes_.erase(in.ino);
    lock.unlock();
    if (got) (void)files_.iomap_end(in.ino, got->map, 0, kIomapFault);
    if (!keep_hold) files_.release_inode(in.ino);
    // Only written blocks pin (get_user_pages faults the rest in first: the library does).
    if (!got) return void(out.error = got.error() == ENXIO ? DAXFS_ERR_BEYOND_EOF : got.error());
    if (!ok) return void(out.error = got->map.flags & kIomapPoisoned ? DAXFS_ERR_POISON : EFAULT);
    if (full) return void(out.error = ENOMEM);
    return;
  }
  files_.release_inode(in.ino);
  out.error = EAGAIN;
}

DaxService::Added DaxService::add_record_locked(Session& s, const MappingEntry& e, bool* first) {
  *first = false;
  InodeState& st = inodes_[e.ino];
  auto key = std::make_pair(s.slot, e.offset);
  for (auto [it, end] = st.mappings.equal_range(key); it != end; ++it) {
    const MappingEntry& m = registry_->mapping(it->second);
    if (m.length == e.length && m.device == e.device && m.kind == e.kind && m.prot == e.prot &&
        m.address == e.address && marks_[it->second] == 0)
      return Added::kDuplicate;  // the same fault twice (two threads, a populate after a fault)
  }
  if (s.total_records >= kMaxRecordsPerSession) return Added::kFull;
  registry_->begin_update();
  auto index = registry_->add_mapping(e);
  registry_->end_update();
  if (!index) return Added::kFull;
  marks_[*index] = 0;
  st.mappings.emplace(key, *index);
  s.total_records++;
  *first = s.records[e.ino]++ == 0;
  return Added::kNew;
}

void DaxService::drop_locked(Session& s, uint64_t ino, uint64_t offset, uint64_t end, uint32_t kinds,
                             std::vector<uint64_t>& released, std::optional<uint64_t> address, uint64_t mark) {
  auto it = inodes_.find(ino);
  if (it == inodes_.end()) return;
  auto& records = it->second.mappings;
  std::vector<std::pair<MappingEntry, uint64_t>> pieces;  // what stays of trimmed records, their marks
  int64_t change = 0;               // in the session's record count
  registry_->begin_update();
  auto from = records.lower_bound({s.slot, 0});
  auto to = records.lower_bound({s.slot + 1, 0});
  for (auto r = from; r != to;) {
    MappingEntry& m = registry_->mapping(r->second);
    uint64_t m_end = m.offset + m.length;
    // One mapping maps every file offset o at base + o: a record is that mapping's when its
    // address - offset is the mapping's.
    bool other_mapping = address && m.address - m.offset != *address - offset;
    if (!(kinds & (1u << uint32_t(m.kind))) || m_end <= offset || m.offset >= end || other_mapping ||
        (mark && marks_[r->second] != mark)) {
      ++r;
      continue;
    }
    MappingEntry whole = m;
    const uint64_t whole_mark = marks_[r->second];
    size_t parts = (whole.offset < offset ? 1 : 0) + (m_end > end ? 1 : 0);
    if (parts > 0 && registry_->free_count() < pieces.size() + parts) {
      ++r;  // no room for what stays: the whole record stays (revoking more later is harmless)
      continue;
    }
    registry_->remove_mapping(r->second);
    r = records.erase(r);
    change--;
    // The parts outside [offset, end) stay mapped.
    auto keep = [&](uint64_t lo, uint64_t hi) {
      MappingEntry piece = whole;
      piece.offset = lo, piece.length = hi - lo;
      if (whole.device != UINT64_MAX) piece.device = whole.device + (lo - whole.offset);
      piece.address = whole.address + (lo - whole.offset);
      pieces.emplace_back(piece, whole_mark);
    };
    if (whole.offset < offset) keep(whole.offset, offset);
    if (m_end > end) keep(end, m_end);
  }
  for (const auto& [piece, piece_mark] : pieces) {
    if (auto index = registry_->add_mapping(piece)) {
      marks_[*index] = piece_mark;
      records.emplace(std::make_pair(s.slot, piece.offset), *index);
      change++;
    }
  }
  registry_->end_update();
  s.total_records = static_cast<uint32_t>(static_cast<int64_t>(s.total_records) + change);
  auto r = s.records.find(ino);
  if (r != s.records.end()) {
    int64_t left = static_cast<int64_t>(r->second) + change;
    r->second = static_cast<uint32_t>(std::max<int64_t>(left, 0));
    if (r->second == 0) {
      s.records.erase(r);
      released.push_back(ino);
    }
  }
  if (records.empty() && it->second.inflight == 0) inodes_.erase(it);
}

void DaxService::end_session_locked(Session& s, std::vector<uint64_t>& released) {
  if (s.ended.exchange(true)) return;
  std::vector<uint64_t> inos;
  for (auto& [ino, count] : s.records) inos.push_back(ino);
  for (uint64_t ino : inos) drop_locked(s, ino, 0, UINT64_MAX, ~0u, released);
  registry_->begin_update();
  registry_->clear_session(s.slot);
  registry_->end_update();
  s.channel->mark_dead();
  by_slot_[s.slot] = nullptr;
  auto it = sessions_.find(s.pid);
  if (it != sessions_.end() && it->second.get() == &s) sessions_.erase(it);
  pins_cv_.notify_all();
}

void DaxService::end_session(const std::shared_ptr<Session>& s) {
  std::vector<uint64_t> released;
  {
    std::lock_guard lock(mu_);
    end_session_locked(*s, released);
  }
  release(released);
}

void DaxService::release(const std::vector<uint64_t>& inos) {
  for (uint64_t ino : inos) files_.release_inode(ino);
}

void DaxService::kill(const std::shared_ptr<Session>& s, const char* why) {
  fprintf(stderr, "daxfs: %s: killing pid %d: %s within the lease (%u ms)\n", opts_.mountpoint.c_str(), s->pid,
          why, opts_.lease_ms);
  if (syscall(SYS_pidfd_send_signal, s->pidfd, SIGKILL, nullptr, 0) == 0) {
    pollfd p{s->pidfd, POLLIN, 0};
    poll(&p, 1, 10000);  // readable once it has exited: its mappings are gone
  }
  {
    std::lock_guard lock(mu_);
    registry_->begin_update();
    registry_->counters().kills++;
    registry_->end_update();
  }
  end_session(s);
}

void DaxService::wait_all(const std::vector<Wait>& waits) {
  auto deadline = Clock::now() + std::chrono::milliseconds(opts_.lease_ms);
  for (const Wait& w : waits) {
    Session& s = *w.session;
    for (;;) {
      if (s.ended) break;
      uint32_t bell = s.channel->ack_bell();
      if (s.channel->acked() >= w.seq) break;
      if (exited(s.pidfd) || !s.channel->image_alive()) {  // gone, or exec'd: maps nothing now
        end_session(w.session);
        break;
      }
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
      if (left <= 0) {
        kill(w.session, "it did not let go of its DAX pages");
        break;
      }
      s.channel->wait_ack(bell, static_cast<int>(std::min<long>(left, 100)));
    }
  }
}

void DaxService::break_layout(uint64_t ino, uint64_t offset, uint64_t length, LayoutChange why) {
  const uint64_t end = end_of(offset, length);
  const uint32_t kinds = why == LayoutChange::kFill ? kZeroOnly : kDeviceOrZero;
  std::vector<Wait> waits;
  {
    std::lock_guard lock(mu_);
    auto it = inodes_.find(ino);
    if (it == inodes_.end()) return;  // nobody maps it, nobody is faulting it
    it->second.generation++;
    std::vector<uint32_t> slots;
    for (auto& [key, index] : it->second.mappings) {
      const MappingEntry& m = registry_->mapping(index);
      if (!(kinds & (1u << uint32_t(m.kind))) || m.offset + m.length <= offset || m.offset >= end) continue;
      if (std::find(slots.begin(), slots.end(), m.session) == slots.end()) slots.push_back(m.session);
    }
    for (uint32_t slot : slots) {
      Session* s = by_slot_[slot];
      if (!s || s->ended) continue;
      uint64_t seq = s->channel->post_revoke(ino, offset, end - offset, DAXFS_REVOKE_LAYOUT, 0);
      waits.push_back({sessions_[s->pid], seq ? seq : UINT64_MAX});  // a full ring: not listening
    }
    if (!waits.empty()) {
      registry_->begin_update();
      registry_->counters().layout_breaks++;
      registry_->counters().revocations += waits.size();
      registry_->end_update();
    }
  }
  wait_all(waits);
  std::vector<uint64_t> released;
  {
    std::lock_guard lock(mu_);
    // Each revoked session dropped every page of the range (zero pages or not): so do its records.
    for (const Wait& w : waits) drop_locked(*w.session, ino, offset, end, kDeviceOrZero, released);
  }
  release(released);
  // Pinned blocks (dax_layout_busy_page: page refcounts above the mapping's) are waited for when
  // the blocks are about to be freed, overwritten or moved to other file offsets; a fill, a share
  // or a copy-on-write leaves the pinned blocks where they are (and the faulting process may be
  // the pinner itself).
  if (why != LayoutChange::kTruncate && why != LayoutChange::kPunch && why != LayoutChange::kRemapInto &&
      why != LayoutChange::kZero && why != LayoutChange::kShift)
    return;
  auto deadline = Clock::now() + std::chrono::milliseconds(opts_.lease_ms);
  std::unique_lock lock(mu_);
  for (;;) {
    auto it = inodes_.find(ino);
    std::shared_ptr<Session> holder;
    if (it != inodes_.end()) {
      for (auto& [key, index] : it->second.mappings) {
        const MappingEntry& m = registry_->mapping(index);
        if (m.kind == MapKind::kPin && m.offset < end && m.offset + m.length > offset && by_slot_[m.session]) {
          holder = sessions_[by_slot_[m.session]->pid];
          break;
        }
      }
    }
    if (!holder) return;
    if (Clock::now() >= deadline) {
      lock.unlock();
      kill(holder, "it did not unpin its DAX pages");
      lock.lock();
      continue;
    }
    pins_cv_.wait_until(lock, std::min(deadline, Clock::now() + std::chrono::milliseconds(100)));
  }
}

void DaxService::memory_failure(const std::vector<FileRange>& owners) {
  // mf_dax_kill_procs() for every owner at once: every process that maps the page, through any
  // owner (every reflink sharer), gets its revokes before anyone is waited for, so the sharers'
  // mappers let go in parallel. The client raises the signal itself (a BUS_MCEERR_* code cannot
  // come from another process): at once for early kill, when it touches the page for late kill
  // (its next fault finds the poison).
  std::vector<Wait> waits;  // one per session: its last revoke's sequence
  std::string pids;
  uint64_t mark;
  {
    std::lock_guard lock(mu_);
    mark = ++last_mark_;
    registry_->begin_update();
    for (const FileRange& o : owners) {
      const uint64_t end = end_of(o.offset, o.length);
      auto it = inodes_.find(o.ino);
      if (it == inodes_.end()) continue;
      it->second.generation++;
      std::vector<uint32_t> slots;
      for (auto& [key, index] : it->second.mappings) {
        const MappingEntry& m = registry_->mapping(index);
        if (m.kind == MapKind::kZero || m.offset + m.length <= o.offset || m.offset >= end) continue;
        Session* s = by_slot_[m.session];
        if (s && !s->ended) marks_[index] = mark;  // revoked below: dropped after the wait
        if (std::find(slots.begin(), slots.end(), m.session) == slots.end()) slots.push_back(m.session);
      }
      for (uint32_t slot : slots) {
        Session* s = by_slot_[slot];
        if (!s || s->ended) continue;
        uint64_t seq = s->channel->post_revoke(o.ino, o.offset, end - o.offset, DAXFS_REVOKE_POISON,
                                               opts_.mce_early ? DAXFS_REVOKE_EARLY_KILL : 0);
        auto w = std::find_if(waits.begin(), waits.end(), [&](const Wait& x) { return x.session.get() == s; });
        if (w == waits.end()) {
          waits.push_back({sessions_[s->pid], seq ? seq : UINT64_MAX});  // a full ring: not listening
          pids += " " + std::to_string(s->pid);
        } else {
          w->seq = seq ? std::max(w->seq, seq) : UINT64_MAX;  // acks are in order: the last one covers all
        }
        registry_->counters().poison_revocations++;
        (opts_.mce_early ? registry_->counters().poison_early : registry_->counters().poison_late)++;
      }
    }
    registry_->end_update();
  }
  if (!waits.empty()) {
    fprintf(stderr, "daxfs: %s: memory failure in %zu owner range(s) (first: inode %llu offset %llu): revoked from pid%s (%s kill by mount policy)\n",
            opts_.mountpoint.c_str(), owners.size(), static_cast<unsigned long long>(owners[0].ino),
            static_cast<unsigned long long>(owners[0].offset), pids.c_str(), opts_.mce_early ? "early" : "late");
  }
  wait_all(waits);
  std::vector<uint64_t> released;
  {
    std::lock_guard lock(mu_);
    // Only what this failure revoked: a session that acknowledged early may have refaulted a
    // page since (healed by a recovery write), and that new record must stay.
    for (const Wait& w : waits)
      for (const FileRange& o : owners)
        drop_locked(*w.session, o.ino, o.offset, end_of(o.offset, o.length), kDeviceOrZero, released, std::nullopt,
                    mark);
    // What stays of them (pieces outside the ranges) is live again: a refault may dedupe with it.
    for (const FileRange& o : owners)
      if (auto it = inodes_.find(o.ino); it != inodes_.end())
        for (auto& [key, index] : it->second.mappings)
          if (marks_[index] == mark) marks_[index] = 0;
  }
  release(released);
}

void DaxService::revoke_all(uint32_t why) {
  std::vector<Wait> waits;
  {
    std::lock_guard lock(mu_);
    shut_ = true;
    for (auto& [pid, s] : sessions_) {
      if (s->ended) continue;
      s->channel->mark_dead();
      uint64_t seq = s->channel->post_revoke(0, 0, kToEnd, why, 0);
      waits.push_back({s, seq ? seq : UINT64_MAX});
    }
    if (!waits.empty()) {
      registry_->begin_update();
      registry_->counters().revocations += waits.size();
      registry_->end_update();
    }
  }
  wait_all(waits);
}

void DaxService::shut_down() {
  // Possibly with the filesystem's lock held: the waiting happens on a thread of its own.
  std::lock_guard lock(mu_);
  if (shut_ || shutdown_thread_.joinable()) return;
  shutdown_thread_ = std::thread([this] { revoke_all(DAXFS_REVOKE_SHUTDOWN); });
}

void DaxService::stop() {
  {
    std::lock_guard lock(mu_);
    if (stopped_) return;
  }
  if (shutdown_thread_.joinable()) shutdown_thread_.join();
  revoke_all(DAXFS_REVOKE_SHUTDOWN);
  std::vector<uint64_t> released;
  std::unique_lock lock(mu_);
  std::vector<std::shared_ptr<Session>> all;
  for (auto& [pid, s] : sessions_) all.push_back(s);
  for (auto& s : all) end_session_locked(*s, released);
  stopped_ = true;
  threads_cv_.wait(lock, [this] { return threads_ == 0; });
  lock.unlock();
  release(released);
}

}  // namespace daxfs::dax
