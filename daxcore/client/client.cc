// libdaxfs-client (daxfs_client.h): the client half of the DAX layer, in the mapping process.
//
//   daxfs_mmap(fd of a DAX file) -> a PROT_NONE placeholder of the mapping's size (a region)
//   touch -> SIGSEGV -> fault(): request {ino, file offset, write?} in the session's channel ->
//     the daemon answers {device bytes | zeros, length, prot} -> mmap(MAP_FIXED) of the device
//     file (or of zeros, read-only) over the placeholder -> the access is retried
//   revoke from the daemon -> the agent thread puts placeholders back and acknowledges
//
// Regions and sessions live in static tables (the fault handler must not allocate), changed
// under g_lock with every signal blocked, so that no handler can run into a holder of it on the
// same thread. g_lock is never held while waiting for the daemon: the daemon may be waiting for
// this process's agent, which needs g_lock. System calls go through syscall(2): the preload
// shim interposes the libc names.
#include "daxcore/client/daxfs_client.h"

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <linux/magic.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <ucontext.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <linux/futex.h>

#include "daxcore/client/client_internal.h"
#include "daxcore/protocol.h"

#if !defined(__x86_64__)
#error "the DAX client tells store faults from loads by the x86-64 page-fault error code"
#endif

#ifndef FUSE_SUPER_MAGIC
#define FUSE_SUPER_MAGIC 0x65735546
#endif
#ifndef MAP_SYNC
#define MAP_SYNC 0x80000
#endif
#ifndef MAP_SHARED_VALIDATE
#define MAP_SHARED_VALIDATE 0x03
#endif
#ifndef MAP_FIXED_NOREPLACE
#define MAP_FIXED_NOREPLACE 0x100000
#endif
#ifndef MADV_POPULATE_READ
#define MADV_POPULATE_READ 22
#define MADV_POPULATE_WRITE 23
#endif
#ifndef BUS_MCEERR_AR
#define BUS_MCEERR_AR 4
#endif
#ifndef BUS_MCEERR_AO
#define BUS_MCEERR_AO 5
#endif

namespace daxfs::client {

namespace {

constexpr uintptr_t kPage = DAXFS_DAX_PAGE;
constexpr int kMaxConns = 16;
constexpr int kMaxRegions = 4096;

struct Conn {
  bool used;
  bool daxfs;      // the mount answered DAXFS_IOC_DAX_CONNECT
  bool dead;       // the session or the filesystem is gone: touches get SIGBUS
  dev_t dev;
  uint64_t token;
  int devfd;
  bool dev_writable;
  int chan_fd;  // the channel memfd (the daemon has its own descriptor of it)
  int lock_fd;  // the second open of it, holding the OFD lock that says "this image lives"
  int daemon_pidfd;
  daxfs_dax_channel* chan;
  std::atomic<uint64_t> seq;
  pthread_t agent;
};

struct Region {
  bool used;
  bool dead;  // its session ended: touches get SIGBUS
  uintptr_t addr;
  size_t length;
  uint64_t ino;
  uint64_t file_off;
  int prot;
  int fd;     // a duplicate of the mapped fd: the file stays open while mapped, as a vma keeps it
  int conn;
  uint32_t access;
  uint64_t id;  // tells a region apart from a later one at the same address
};

Conn g_conns[kMaxConns];
Region g_regions[kMaxRegions];
std::atomic<int> g_lock{0};
std::atomic<int> g_regions_in_use{0};  // a lock-free "any DAX mapping at all?" for the I/O calls
uint64_t g_next_id = 1;
pthread_mutex_t g_connect_mu = PTHREAD_MUTEX_INITIALIZER;  // connects and grants (normal context)
pthread_once_t g_once = PTHREAD_ONCE_INIT;

long sys_futex(void* word, int op, uint32_t val, const timespec* ts) {
  return syscall(SYS_futex, word, op, val, ts, nullptr, 0);
}
void futex_wait_ms(uint32_t* word, uint32_t seen, int ms) {
  timespec ts{ms / 1000, (ms % 1000) * 1000000L};
  sys_futex(word, FUTEX_WAIT, seen, &ts);
}
void futex_wake(uint32_t* word) { sys_futex(word, FUTEX_WAKE, INT32_MAX, nullptr); }

// The table lock: signals blocked while held (client_internal.h, SignalSafeLock).
class TableLock : public SignalSafeLock {
 public:
  TableLock() : SignalSafeLock(g_lock) {}
};

Region* find_region_locked(uintptr_t addr) {
  for (Region& r : g_regions)
    if (r.used && addr >= r.addr && addr - r.addr < r.length) return &r;
  return nullptr;
}

Region* new_region_locked() {
  for (Region& r : g_regions)
    if (!r.used) {
      memset(&r, 0, sizeof r);
      r.used = true;
      g_regions_in_use.fetch_add(1, std::memory_order_relaxed);
      r.id = g_next_id++;
      return &r;
    }
  return nullptr;
}

// Replaces [addr, addr + length) with an inaccessible placeholder (the pages refault).
// Not inherited by a child (MADV_DONTFORK): a child that skipped the fork handler (a raw
// clone) has nothing there, rather than the parent's device pages the daemon does not know of.
bool placeholder(uintptr_t addr, size_t length) {
  void* p = sys_mmap(reinterpret_cast<void*>(addr), length, PROT_NONE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED, -1, 0);
  if (p == MAP_FAILED) return false;
  sys_madvise(p, length, MADV_DONTFORK);
  return true;
}

bool daemon_gone(const Conn& c) {
  if (c.daemon_pidfd < 0) return false;
  pollfd p{c.daemon_pidfd, POLLIN, 0};
  return poll(&p, 1, 0) > 0;
}

// Sends a request and waits for the reply (never with g_lock held). False when the session or
// the daemon is gone.
bool request(Conn& c, daxfs_dax_request& req) {
  daxfs_dax_channel* chan = c.chan;
  if (!chan) return false;
  daxfs_dax_request* slot = nullptr;
  for (;;) {
    for (daxfs_dax_request& r : chan->requests) {
      uint32_t expected = DAXFS_REQ_FREE;
      if (__atomic_compare_exchange_n(&r.state, &expected, DAXFS_REQ_CLAIMED, false, __ATOMIC_ACQUIRE,
                                      __ATOMIC_RELAXED)) {
        slot = &r;
        break;
      }
    }
    if (slot) break;
    if (__atomic_load_n(&chan->dead, __ATOMIC_ACQUIRE) || daemon_gone(c)) return false;
    sched_yield();
  }
  slot->op = req.op;
  slot->token = c.token;
  slot->seq = req.seq = c.seq.fetch_add(1) + 1;
  slot->ino = req.ino, slot->offset = req.offset, slot->length = req.length;
  slot->address = req.address, slot->flags = req.flags, slot->prot = req.prot;
  __atomic_store_n(&slot->state, DAXFS_REQ_SUBMITTED, __ATOMIC_RELEASE);
  __atomic_fetch_add(&chan->doorbell, 1, __ATOMIC_RELEASE);
  futex_wake(&chan->doorbell);
  while (__atomic_load_n(&slot->state, __ATOMIC_ACQUIRE) != DAXFS_REQ_REPLIED) {
    if (__atomic_load_n(&chan->dead, __ATOMIC_ACQUIRE) || daemon_gone(c)) return false;
    futex_wait_ms(&slot->state, DAXFS_REQ_SUBMITTED, 100);
  }
  req.error = slot->error;
  req.kind = slot->kind;
  req.r_offset = slot->r_offset, req.r_length = slot->r_length, req.r_device = slot->r_device;
  req.r_prot = slot->r_prot, req.r_revoke_seq = slot->r_revoke_seq;
  __atomic_store_n(&slot->state, DAXFS_REQ_FREE, __ATOMIC_RELEASE);
  return true;
}

// Applies one revoke to this process's regions of connection `ci`.
// The memory-failure kill policy of this process: the mount's (mce_kill=), or its own
// (DAXFS_MCE_KILL=early|late in the environment, daxfs_set_mce_kill, prctl(PR_MCE_KILL)).
std::atomic<int> g_mce_policy{DAXFS_MCE_KILL_DEFAULT};

// Early-kill signals to raise once g_lock is released: the pages' addresses in this process.
struct EarlyKills {
  static constexpr int kMax = 64;
  uintptr_t addr[kMax];
  int count = 0;
};

void apply_revoke_locked(int ci, const daxfs_dax_revoke& rv, EarlyKills* early) {
  uint64_t rv_end = rv.length > UINT64_MAX - rv.offset ? UINT64_MAX : rv.offset + rv.length;
  int policy = g_mce_policy.load();
  bool kill_now = policy == DAXFS_MCE_KILL_EARLY ||
                  (policy == DAXFS_MCE_KILL_DEFAULT && (rv.flags & DAXFS_REVOKE_EARLY_KILL));
  for (Region& r : g_regions) {
    if (!r.used || r.conn != ci || (rv.ino != 0 && r.ino != rv.ino)) continue;
    uint64_t from = r.file_off > rv.offset ? r.file_off : rv.offset;
    uint64_t r_end = r.file_off + r.length;
    uint64_t to = r_end < rv_end ? r_end : rv_end;
    if (from >= to) continue;
    placeholder(r.addr + (from - r.file_off), to - from);
    if (rv.why == DAXFS_REVOKE_SHUTDOWN) r.dead = true;
    // Poison: the page is gone from this process (its next touch faults, and the daemon answers
    // "poisoned": BUS_MCEERR_AR). Early kill tells it now, with the page's address here.
    if (rv.why == DAXFS_REVOKE_POISON && kill_now) {
      for (uint64_t off = from & ~(kPage - 1); off < to && early->count < EarlyKills::kMax; off += kPage)
        early->addr[early->count++] = r.addr + (off - r.file_off);
    }
  }
}

// Raised on the agent thread itself: the kernel lets a thread send a signal with a kernel
// si_code (BUS_MCEERR_AO) only to itself. BUS_MCEERR_AO is process-directed on Linux too (any
// thread may take it); a program without a handler dies of it, as it would of the kernel's.
void raise_early_kill(uintptr_t addr) {
  siginfo_t si;
  memset(&si, 0, sizeof si);
  si.si_signo = SIGBUS;
  si.si_code = BUS_MCEERR_AO;
  si.si_addr = reinterpret_cast<void*>(addr);
  si.si_addr_lsb = 12;  // a 4 KiB page
  sigset_t bus, old;
  sigemptyset(&bus);
  sigaddset(&bus, SIGBUS);
  pthread_sigmask(SIG_UNBLOCK, &bus, &old);
  syscall(SYS_rt_tgsigqueueinfo, getpid(), syscall(SYS_gettid), SIGBUS, &si);  // delivered here, now
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
}

void kill_conn_locked(int ci) {
  Conn& c = g_conns[ci];
  c.dead = true;
  for (Region& r : g_regions) {
    if (r.used && r.conn == ci) {
      placeholder(r.addr, r.length);
      r.dead = true;
    }
  }
}

// The agent: applies the daemon's revokes in order and acknowledges them; when the daemon dies,
// drops every mapping of its mount (the next touch: SIGBUS).
void* agent_main(void* arg) {
  int ci = static_cast<int>(reinterpret_cast<intptr_t>(arg));
  Conn& c = g_conns[ci];
  daxfs_dax_channel* chan = c.chan;
  uint64_t acked = __atomic_load_n(&chan->revoke_acked, __ATOMIC_ACQUIRE);
  // A reconnect gives the slot a new channel (and a new agent): this one then stops, and never
  // acts on the new connection's state.
  auto current = [&] { return __atomic_load_n(&c.chan, __ATOMIC_ACQUIRE) == chan; };
  while (current()) {
    uint32_t bell = __atomic_load_n(&chan->revoke_bell, __ATOMIC_ACQUIRE);
    uint64_t posted = __atomic_load_n(&chan->revoke_posted, __ATOMIC_ACQUIRE);
    bool progressed = false;
    while (acked < posted) {
      daxfs_dax_revoke rv = chan->ring[(acked + 1) % DAXFS_DAX_RING];
      if (__atomic_load_n(&chan->ring[(acked + 1) % DAXFS_DAX_RING].seq, __ATOMIC_ACQUIRE) != acked + 1) break;
      EarlyKills early;
      {
        TableLock lock;
        apply_revoke_locked(ci, rv, &early);
      }
      for (int i = 0; i < early.count; i++) raise_early_kill(early.addr[i]);
      acked++;
      progressed = true;
    }
    if (progressed) {
      __atomic_store_n(&chan->revoke_acked, acked, __ATOMIC_RELEASE);
      __atomic_fetch_add(&chan->ack_bell, 1, __ATOMIC_RELEASE);
      futex_wake(&chan->ack_bell);
    }
    if (daemon_gone(c) || (__atomic_load_n(&chan->dead, __ATOMIC_ACQUIRE) && acked >= posted)) {
      TableLock lock;
      if (!current()) break;
      kill_conn_locked(ci);
      if (daemon_gone(c)) break;
    }
    futex_wait_ms(&chan->revoke_bell, bell, 200);
  }
  return nullptr;
}

// DAXFS_MCE_KILL=early|late (daxfsctl run --early-kill / --late-kill), read when the first
// session starts rather than at init: a runtime that maps memory before the environment is set
// up (a sanitizer's) can run init that early.
std::atomic<bool> g_mce_settled{false};  // the environment was read, or the program chose

void read_mce_environment() {
  if (g_mce_settled.exchange(true)) return;  // a daxfs_set_mce_kill() call wins
  const char* p = getenv("DAXFS_MCE_KILL");
  if (!p) return;
  if (strcmp(p, "early") == 0) g_mce_policy = DAXFS_MCE_KILL_EARLY;
  if (strcmp(p, "late") == 0) g_mce_policy = DAXFS_MCE_KILL_LATE;
}

bool start_agent(int ci) {
  read_mce_environment();
  Conn& c = g_conns[ci];
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);  // the agent takes no signal of the program's
  int err = pthread_create(&c.agent, nullptr, agent_main, reinterpret_cast<void*>(static_cast<intptr_t>(ci)));
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
  if (err == 0) pthread_detach(c.agent);
  return err == 0;
}

// A fresh channel: a memfd sealed against shrinking and growing (the daemon maps it and must
// never fault on it), not inherited by children, and a second open of it holding an OFD lock that
// tells the daemon this process image lives (exec or exit closes it). False on failure.
bool make_channel(int* mfd_out, int* lock_out, daxfs_dax_channel** chan_out) {
  int mfd = static_cast<int>(syscall(SYS_memfd_create, "daxfs-channel", MFD_CLOEXEC | MFD_ALLOW_SEALING));
  if (mfd < 0) return false;
  void* p = MAP_FAILED;
  int lfd = -1;
  char path[64];
  snprintf(path, sizeof path, "/proc/self/fd/%d", mfd);
  struct flock lk;
  memset(&lk, 0, sizeof lk);
  lk.l_type = F_WRLCK;
  lk.l_whence = SEEK_SET;
  if (ftruncate(mfd, sizeof(daxfs_dax_channel)) != 0 ||
      fcntl(mfd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) != 0 ||
      (p = sys_mmap(nullptr, sizeof(daxfs_dax_channel), PROT_READ | PROT_WRITE, MAP_SHARED, mfd, 0)) ==
          MAP_FAILED ||
      (lfd = open(path, O_RDWR | O_CLOEXEC)) < 0 || fcntl(lfd, F_OFD_SETLK, &lk) != 0) {
    if (p != MAP_FAILED) sys_munmap(p, sizeof(daxfs_dax_channel));
    if (lfd >= 0) close(lfd);
    close(mfd);
    return false;
  }
  sys_madvise(p, sizeof(daxfs_dax_channel), MADV_DONTFORK);
  *mfd_out = mfd;
  *lock_out = lfd;
  *chan_out = static_cast<daxfs_dax_channel*>(p);
  return true;
}

// One line on stderr when a daxfs mount cannot give this process DAX (its mappings then go
// through the kernel's page cache): the user should know the difference. Returns false.
bool warn_no_dax(const char* what, int err) {
  char line[256];
  int n = snprintf(line, sizeof line, "daxfs-client: DAX unavailable, mapping through the page cache: %s: %s\n",
                   what, strerror(err));
  if (n > 0) (void)!write(2, line, static_cast<size_t>(n));
  return false;
}

// Connects connection slot `ci` through `fd` (a file of that mount) with a fresh channel and a
// fresh session. Under g_connect_mu.
bool connect_conn(int ci, int fd) {
  Conn& c = g_conns[ci];
  int mfd, lfd;
  daxfs_dax_channel* chan;
  if (!make_channel(&mfd, &lfd, &chan)) return warn_no_dax("cannot make the channel", errno);
  auto undo = [&] {
    sys_munmap(chan, sizeof *chan);
    close(lfd);
    close(mfd);
    return false;
  };
  daxfs_dax_connect info;
  memset(&info, 0, sizeof info);
  info.abi = DAXFS_DAX_ABI;
  info.channel_fd = mfd;
  if (ioctl(fd, DAXFS_IOC_DAX_CONNECT, &info) != 0 || info.abi != DAXFS_DAX_ABI) {
    int e = errno;
    undo();
    // ENOTTY: a FUSE filesystem that is not daxfs (or one without the DAX layer): quietly not DAX.
    return e == ENOTTY ? false : warn_no_dax("the daemon refused the connection", e);
  }
  info.device[sizeof info.device - 1] = 0;
  if (__atomic_load_n(&chan->magic, __ATOMIC_ACQUIRE) != DAXFS_DAX_MAGIC || chan->size != sizeof *chan)
    return undo();
  // Direct access needs the caller's own access to the device, as device-dax does.
  int devfd = open(info.device, O_RDWR | O_CLOEXEC);
  bool writable = devfd >= 0;
  if (devfd < 0) devfd = open(info.device, O_RDONLY | O_CLOEXEC);
  if (devfd < 0) {
    int e = errno;
    undo();
    return warn_no_dax("cannot open the device file", e);
  }
  if (c.devfd > 0) close(c.devfd);
  if (c.daemon_pidfd > 0) close(c.daemon_pidfd);
  if (c.chan_fd > 0) close(c.chan_fd);
  if (c.lock_fd > 0) close(c.lock_fd);
  c.devfd = devfd;
  c.dev_writable = writable;
  c.token = info.token;
  __atomic_store_n(&c.chan, chan, __ATOMIC_RELEASE);  // an older agent of this slot stops
  c.chan_fd = mfd;
  c.lock_fd = lfd;
  c.daemon_pidfd = static_cast<int>(syscall(SYS_pidfd_open, info.daemon_pid, 0));
  c.dead = false;
  c.daxfs = true;
  return start_agent(ci);
}

// The connection for the mount of `fd` (connected on first use), or -1: not a daxfs mount, or
// DAX is unavailable there (then the kernel's mapping serves).
int conn_for(int fd, const struct stat& st) {
  pthread_mutex_lock(&g_connect_mu);
  int found = -1, free_slot = -1;
  for (int i = 0; i < kMaxConns; i++) {
    if (g_conns[i].used && g_conns[i].dev == st.st_dev) found = i;
    if (!g_conns[i].used && free_slot < 0) free_slot = i;
  }
  if (found >= 0 && !g_conns[found].daxfs) {
    pthread_mutex_unlock(&g_connect_mu);
    return -1;
  }
  if (found >= 0 && g_conns[found].dead) {
    // The mount went away and maybe came back: old regions stay dead, new ones get a session.
    bool again = true;
    {
      TableLock lock;
      for (const Region& r : g_regions)
        if (r.used && r.conn == found) again = false;
    }
    if (again) {
      found = -1 - 0;
      for (int i = 0; i < kMaxConns; i++)
        if (g_conns[i].used && g_conns[i].dev == st.st_dev) {
          g_conns[i].used = false;
          free_slot = i;
        }
    } else {
      found = -1;  // a fresh slot below; the dead one keeps its regions
      for (int i = 0; i < kMaxConns; i++)
        if (g_conns[i].used && g_conns[i].dev == st.st_dev) g_conns[i].dev = static_cast<dev_t>(-1);
    }
  }
  if (found < 0) {
    if (free_slot < 0) {
      pthread_mutex_unlock(&g_connect_mu);
      return -1;
    }
    Conn& c = g_conns[free_slot];
    c.used = true;
    c.dev = st.st_dev;
    c.devfd = -1;
    c.daemon_pidfd = -1;
    c.chan_fd = -1;
    c.lock_fd = -1;
    c.chan = nullptr;
    c.daxfs = false;
    struct statfs sf;
    if (fstatfs(fd, &sf) == 0 && static_cast<unsigned long>(sf.f_type) == FUSE_SUPER_MAGIC)
      connect_conn(free_slot, fd);
    found = free_slot;
  }
  int result = g_conns[found].daxfs ? found : -1;
  pthread_mutex_unlock(&g_connect_mu);
  return result;
}

void raise_sigbus(void* addr, int code, void* ucontext) {
  // Delivered when the handler returns (a handler of the program's may catch it, as on Linux).
  // A program that blocks or ignores SIGBUS is killed by it anyway, as force_sig would.
  struct sigaction sa;
  if (sys_sigaction(SIGBUS, nullptr, &sa) == 0 && sa.sa_handler == SIG_IGN) {
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = SIG_DFL;
    sys_sigaction(SIGBUS, &sa, nullptr);
  }
  if (ucontext) sigdelset(&static_cast<ucontext_t*>(ucontext)->uc_sigmask, SIGBUS);
  siginfo_t si;
  memset(&si, 0, sizeof si);
  si.si_signo = SIGBUS;
  si.si_code = code;
  si.si_addr = addr;
  if (code == BUS_MCEERR_AR) si.si_addr_lsb = 12;
  syscall(SYS_rt_tgsigqueueinfo, getpid(), syscall(SYS_gettid), SIGBUS, &si);
}

}  // namespace

FaultResult fault(uintptr_t addr, bool write, int* bus_code, uintptr_t* mapped_end) {
  daxfs_dax_request req;
  memset(&req, 0, sizeof req);
  int ci;
  uint64_t id;
  {
    TableLock lock;
    Region* r = find_region_locked(addr);
    if (!r) return FaultResult::kNotOurs;
    if (!(r->prot & (PROT_READ | PROT_WRITE | PROT_EXEC)) || (write && !(r->prot & PROT_WRITE)))
      return FaultResult::kNotOurs;  // the program's own protection fault
    if (r->dead || g_conns[r->conn].dead) {
      *bus_code = BUS_ADRERR;
      return FaultResult::kBus;
    }
    uintptr_t page = addr & ~(kPage - 1);
    req.op = DAXFS_OP_FAULT;
    req.ino = r->ino;
    req.offset = r->file_off + (page - r->addr);
    req.length = r->addr + r->length - page;
    req.address = page;
    req.flags = write ? DAXFS_FAULT_WRITE : 0;
    req.prot = static_cast<uint32_t>(r->prot);
    ci = r->conn;
    id = r->id;
  }
  Conn& c = g_conns[ci];
  if (!request(c, req)) {
    *bus_code = BUS_ADRERR;
    return FaultResult::kBus;
  }
  if (req.error == EAGAIN) return FaultResult::kRetry;  // layout breaks kept crossing: again
  if (req.error) {
    *bus_code = req.error == DAXFS_ERR_POISON ? BUS_MCEERR_AR : BUS_ADRERR;
    return FaultResult::kBus;
  }
  TableLock lock;
  if (c.dead) {  // revoked for good (shutdown) while the reply was on its way
    *bus_code = BUS_ADRERR;
    return FaultResult::kBus;
  }
  // A revoke posted since the daemon recorded this mapping may concern it: ask again.
  if (__atomic_load_n(&c.chan->revoke_posted, __ATOMIC_ACQUIRE) != req.r_revoke_seq) return FaultResult::kRetry;
  Region* r = find_region_locked(addr);
  if (!r || r->id != id) return FaultResult::kRetry;
  if (r->dead) {
    *bus_code = BUS_ADRERR;
    return FaultResult::kBus;
  }
  uint64_t from = req.r_offset > r->file_off ? req.r_offset : r->file_off;
  uint64_t to = req.r_offset + req.r_length;
  if (to > r->file_off + r->length) to = r->file_off + r->length;
  if (from >= to || req.r_offset % kPage || req.r_length % kPage) {
    *bus_code = BUS_ADRERR;
    return FaultResult::kBus;
  }
  uintptr_t va = r->addr + (from - r->file_off);
  void* p;
  if (req.kind == DAXFS_MAP_DEVICE) {
    int prot = static_cast<int>(req.r_prot) & r->prot & (PROT_READ | PROT_WRITE);
    if (!c.dev_writable) prot &= ~PROT_WRITE;
    p = sys_mmap(reinterpret_cast<void*>(va), to - from, prot | (r->prot & PROT_EXEC), MAP_SHARED | MAP_FIXED,
                 c.devfd, static_cast<off_t>(req.r_device + (from - req.r_offset)));
  } else {
    p = sys_mmap(reinterpret_cast<void*>(va), to - from, PROT_READ | (r->prot & PROT_EXEC),
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
  }
  if (p == MAP_FAILED) {
    *bus_code = BUS_ADRERR;
    return FaultResult::kBus;
  }
  sys_madvise(p, to - from, MADV_DONTFORK);  // a child gets its own mappings (after_fork_child)
  if (mapped_end) *mapped_end = va + (to - from);
  return FaultResult::kRetry;
}

void handle_fault_signal(int sig, siginfo_t* si, void* ucontext, void (*chain)(int, siginfo_t*, void*)) {
  uintptr_t addr = reinterpret_cast<uintptr_t>(si->si_addr);
  bool write = false;
#if defined(__x86_64__)
  write = static_cast<ucontext_t*>(ucontext)->uc_mcontext.gregs[REG_ERR] & 2;
#endif
  int bus_code = BUS_ADRERR;
  int saved_errno = errno;
  FaultResult r = si->si_code > 0 ? fault(addr, write, &bus_code, nullptr) : FaultResult::kNotOurs;
  errno = saved_errno;
  if (r == FaultResult::kRetry) return;
  if (r == FaultResult::kBus) return raise_sigbus(reinterpret_cast<void*>(addr & ~(kPage - 1)), bus_code, ucontext);
  chain(sig, si, ucontext);
}

bool is_dax_address(uintptr_t addr) {
  TableLock lock;
  return find_region_locked(addr) != nullptr;
}

void* map(void* addr, size_t length, int prot, int flags, int fd, off_t offset) {
  int type = flags & MAP_TYPE;
  if (fd < 0 || (flags & MAP_ANONYMOUS) || (type != MAP_SHARED && type != MAP_SHARED_VALIDATE))
    return sys_mmap(addr, length, prot, flags, fd, offset);
  struct stat st;
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) return sys_mmap(addr, length, prot, flags, fd, offset);
  int ci = conn_for(fd, st);
  if (ci < 0) return sys_mmap(addr, length, prot, flags, fd, offset);
  daxfs_dax_grant grant;
  memset(&grant, 0, sizeof grant);
  pthread_mutex_lock(&g_connect_mu);
  int rc = ioctl(fd, DAXFS_IOC_DAX_GRANT, &grant);
  if (rc != 0 && errno == ENOTCONN && connect_conn(ci, fd)) rc = ioctl(fd, DAXFS_IOC_DAX_GRANT, &grant);
  pthread_mutex_unlock(&g_connect_mu);
  Conn& c = g_conns[ci];
  // Not a DAX file, or DAX unavailable: the kernel maps it (through the page cache).
  if (rc != 0 || !grant.dax || ((prot & PROT_WRITE) && !c.dev_writable))
    return sys_mmap(addr, length, prot, flags, fd, offset);
  if (type == MAP_SHARED_VALIDATE) {
    const int known = MAP_SHARED_VALIDATE | MAP_SYNC | MAP_FIXED | MAP_FIXED_NOREPLACE | MAP_POPULATE |
                      MAP_NORESERVE | MAP_NONBLOCK | MAP_LOCKED | MAP_DENYWRITE | MAP_EXECUTABLE;
    if (flags & ~known) return errno = EOPNOTSUPP, MAP_FAILED;
  }
  if (length == 0 || offset < 0 || offset % static_cast<off_t>(kPage)) return errno = EINVAL, MAP_FAILED;
  size_t span = (length + kPage - 1) & ~(kPage - 1);
  if (span < length || static_cast<uint64_t>(offset) + span < static_cast<uint64_t>(offset) ||
      static_cast<uint64_t>(offset) + span > (1ull << 63))
    return errno = EOVERFLOW, MAP_FAILED;
  // mmap(2) checks the open mode: reading needs a readable fd, shared writing a writable one.
  if (!(grant.access & DAXFS_DAX_ACCESS_READ) || ((prot & PROT_WRITE) && !(grant.access & DAXFS_DAX_ACCESS_WRITE)))
    return errno = EACCES, MAP_FAILED;
  int dup = fcntl(fd, F_DUPFD_CLOEXEC, 256);
  if (dup < 0) dup = fcntl(fd, F_DUPFD_CLOEXEC, 0);
  if (dup < 0) return MAP_FAILED;
  void* p = sys_mmap(addr, span, PROT_NONE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | (flags & (MAP_FIXED | MAP_FIXED_NOREPLACE)), -1, 0);
  if (p == MAP_FAILED) {
    int e = errno;
    close(dup);
    return errno = e, MAP_FAILED;
  }
  uintptr_t a = reinterpret_cast<uintptr_t>(p);
  {
    TableLock lock;
    // MAP_FIXED over older regions: they lose that part (as munmap would).
    forget_range_locked(a, span, nullptr);
    Region* r = new_region_locked();
    if (!r) {
      sys_munmap(p, span);
      close(dup);
      return errno = ENOMEM, MAP_FAILED;
    }
    r->addr = a, r->length = span, r->ino = grant.ino, r->file_off = static_cast<uint64_t>(offset);
    r->prot = prot, r->fd = dup, r->conn = ci, r->access = grant.access;
  }
  // Eagerly, as a PMD fault maps a whole extent: the file's written extents and its holes up to
  // EOF are mapped now, so system calls given addresses in the mapping find them there (the
  // kernel cannot fault a placeholder in for us: it would answer EFAULT).
  populate(a, span, (flags & MAP_POPULATE) && (prot & PROT_WRITE));
  return p;
}

int populate(uintptr_t addr, size_t length, bool write) {
  // Each fault maps a whole extent (or up to a 2 MiB boundary for stores into holes), so this
  // walks extents, not pages. Stops quietly at EOF (a touch there gets SIGBUS later).
  uintptr_t end = addr + length;
  int retries = 0;
  for (uintptr_t p = addr & ~(kPage - 1); p < end;) {
    int code = 0;
    uintptr_t next = p;
    FaultResult r = fault(p, write, &code, &next);
    if (r != FaultResult::kRetry) return r == FaultResult::kBus ? -1 : 0;
    if (next <= p) {
      if (++retries > 1000) return -1;  // breaks keep crossing the fault
      continue;
    }
    retries = 0;
    p = next;
  }
  return 0;
}

// Removes [addr, addr + length) from the regions (the caller unmaps or replaces the memory).
// Fills `unmaps` with what the daemon should forget; closes fds of regions that went whole.
void forget_range_locked(uintptr_t addr, size_t length, Pending* pending) {
  uintptr_t end = addr + length;
  for (Region& r : g_regions) {
    if (!r.used || r.addr >= end || r.addr + r.length <= addr) continue;
    uintptr_t from = r.addr > addr ? r.addr : addr;
    uintptr_t to = r.addr + r.length < end ? r.addr + r.length : end;
    if (pending && pending->count < Pending::kMax) {
      pending->items[pending->count++] = {r.conn, r.ino, r.file_off + (from - r.addr), to - from, from, -1};
    }
    bool left = from > r.addr, right = to < r.addr + r.length;
    if (!left && !right) {
      if (pending && pending->count > 0) pending->items[pending->count - 1].close_fd = r.fd;
      else close(r.fd);
      r.used = false;
      g_regions_in_use.fetch_sub(1, std::memory_order_relaxed);
    } else if (left && right) {
      Region* tail = new_region_locked();
      if (tail) {
        uint64_t id = tail->id;
        *tail = r;
        tail->id = id;
        tail->addr = to;
        tail->length = r.addr + r.length - to;
        tail->file_off = r.file_off + (to - r.addr);
        tail->fd = fcntl(r.fd, F_DUPFD_CLOEXEC, 256);
      }
      r.length = from - r.addr;
    } else if (left) {
      r.length = from - r.addr;
    } else {
      r.file_off += to - r.addr;
      r.length = r.addr + r.length - to;
      r.addr = to;
    }
  }
}

void finish_pending(const Pending& pending) {
  for (int i = 0; i < pending.count; i++) {
    const Pending::Item& it = pending.items[i];
    Conn& c = g_conns[it.conn];
    if (!c.dead && c.chan) {
      daxfs_dax_request req;
      memset(&req, 0, sizeof req);
      req.op = DAXFS_OP_UNMAP;
      req.ino = it.ino, req.offset = it.offset, req.length = it.length;
      req.address = it.address;  // which mapping of the range: the process may map it twice
      request(c, req);
    }
    if (it.close_fd >= 0) close(it.close_fd);
  }
}

int unmap(void* addr, size_t length) {
  uintptr_t a = reinterpret_cast<uintptr_t>(addr);
  if (a % kPage || length == 0) return sys_munmap(addr, length);
  length = (length + kPage - 1) & ~(kPage - 1);
  Pending pending;
  int rc;
  {
    TableLock lock;
    rc = sys_munmap(addr, length);
    if (rc == 0) forget_range_locked(a, length, &pending);
  }
  finish_pending(pending);
  return rc;
}

bool overlaps_region(uintptr_t addr, size_t length) {
  if (g_regions_in_use.load(std::memory_order_relaxed) == 0) return false;
  TableLock lock;
  for (const Region& r : g_regions)
    if (r.used && r.addr < addr + length && addr < r.addr + r.length) return true;
  return false;
}

int protect(void* addr, size_t length, int prot) {
  uintptr_t a = reinterpret_cast<uintptr_t>(addr);
  if (a % kPage) return errno = EINVAL, -1;
  length = (length + kPage - 1) & ~(kPage - 1);
  if (!overlaps_region(a, length)) return sys_mprotect(addr, length, prot);
  Pending pending;
  {
    TableLock lock;
    for (const Region& r : g_regions) {
      if (!r.used || r.addr >= a + length || r.addr + r.length <= a) continue;
      if ((prot & PROT_WRITE) && (!(r.access & DAXFS_DAX_ACCESS_WRITE) || !g_conns[r.conn].dev_writable))
        return errno = EACCES, -1;
    }
    // Split the regions at the range's ends, then give the range the new protection: its pages
    // refault with it (a zero page or a placeholder must never become writable memory).
    for (Region& r : g_regions) {
      if (!r.used || r.addr >= a + length || r.addr + r.length <= a) continue;
      uintptr_t from = r.addr > a ? r.addr : a;
      uintptr_t to = r.addr + r.length < a + length ? r.addr + r.length : a + length;
      if (pending.count < Pending::kMax)
        pending.items[pending.count++] = {r.conn, r.ino, r.file_off + (from - r.addr), to - from, from, -1};
      if (from > r.addr || to < r.addr + r.length) {
        // Carve [from, to) out as a region of its own.
        Region piece = r;
        Region* mid = new_region_locked();
        if (!mid) return errno = ENOMEM, -1;
        uint64_t id = mid->id;
        *mid = piece;
        mid->id = id;
        mid->addr = from, mid->length = to - from, mid->file_off = r.file_off + (from - r.addr);
        mid->fd = fcntl(r.fd, F_DUPFD_CLOEXEC, 256);
        if (to < r.addr + r.length) {
          Region* tail = new_region_locked();
          if (tail) {
            uint64_t tid = tail->id;
            *tail = piece;
            tail->id = tid;
            tail->addr = to, tail->length = r.addr + r.length - to, tail->file_off = r.file_off + (to - r.addr);
            tail->fd = fcntl(r.fd, F_DUPFD_CLOEXEC, 256);
          }
        }
        if (from > r.addr) {
          r.length = from - r.addr;
        } else {
          close(r.fd);
          r.used = false;
          g_regions_in_use.fetch_sub(1, std::memory_order_relaxed);
        }
        mid->prot = prot;
      } else {
        r.prot = prot;
      }
      placeholder(from, to - from);
    }
  }
  finish_pending(pending);
  return 0;
}

int advise(void* addr, size_t length, int advice) {
  uintptr_t a = reinterpret_cast<uintptr_t>(addr);
  if (!overlaps_region(a, length)) return sys_madvise(addr, length, advice);
  if (advice == MADV_POPULATE_READ || advice == MADV_POPULATE_WRITE) {
    if (populate(a, length, advice == MADV_POPULATE_WRITE) != 0) return errno = EFAULT, -1;
    return 0;
  }
  if (advice == MADV_REMOVE) {
    // Frees the file's blocks behind the range (a punch), as on a shared file mapping.
    int fd = -1;
    uint64_t off = 0;
    {
      TableLock lock;
      Region* r = find_region_locked(a);
      if (!r || a + length > r->addr + r->length) return errno = EINVAL, -1;
      fd = fcntl(r->fd, F_DUPFD_CLOEXEC, 0);
      off = r->file_off + (a - r->addr);
    }
    int rc = fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, static_cast<off_t>(off),
                       static_cast<off_t>(length));
    int e = errno;
    close(fd);
    return rc == 0 ? 0 : (errno = e, -1);
  }
  if (advice == MADV_FREE) return errno = EINVAL, -1;  // as for any shared mapping
  return sys_madvise(addr, length, advice);
}

void* remap(void* old_address, size_t old_size, size_t new_size, int flags, void* new_address) {
  uintptr_t a = reinterpret_cast<uintptr_t>(old_address);
  Region copy;
  {
    TableLock lock;
    Region* r = find_region_locked(a);
    if (!r) return sys_mremap(old_address, old_size, new_size, flags, new_address);
    copy = *r;
  }
  if (a % kPage || new_size == 0 || (flags & MREMAP_DONTUNMAP)) return errno = EINVAL, MAP_FAILED;
  old_size = (old_size + kPage - 1) & ~(kPage - 1);
  new_size = (new_size + kPage - 1) & ~(kPage - 1);
  if (a != copy.addr || old_size != copy.length) {
    // Only whole DAX mappings move or grow (the common use); shrinking any part is munmap.
    if (new_size < old_size && !(flags & MREMAP_FIXED)) {
      if (unmap(reinterpret_cast<void*>(a + new_size), old_size - new_size) != 0) return MAP_FAILED;
      return old_address;
    }
    return errno = EINVAL, MAP_FAILED;
  }
  if (new_size <= old_size && !(flags & MREMAP_FIXED)) {
    if (new_size < old_size && unmap(reinterpret_cast<void*>(a + new_size), old_size - new_size) != 0)
      return MAP_FAILED;
    return old_address;
  }
  int fd = fcntl(copy.fd, F_DUPFD_CLOEXEC, 0);
  if (fd < 0) return MAP_FAILED;
  void* target = (flags & MREMAP_FIXED) ? new_address : nullptr;
  int mflags = MAP_SHARED | ((flags & MREMAP_FIXED) ? MAP_FIXED : 0);
  if (!(flags & MREMAP_MAYMOVE) && !(flags & MREMAP_FIXED)) {
    // Grow in place: only if the pages after the mapping are free.
    target = reinterpret_cast<void*>(a + old_size);
    void* tail = map(target, new_size - old_size, copy.prot, MAP_SHARED | MAP_FIXED_NOREPLACE, fd,
                     static_cast<off_t>(copy.file_off + old_size));
    close(fd);
    if (tail == MAP_FAILED) return errno = ENOMEM, MAP_FAILED;
    return old_address;
  }
  void* p = map(target, new_size, copy.prot, mflags, fd, static_cast<off_t>(copy.file_off));
  close(fd);
  if (p == MAP_FAILED) return MAP_FAILED;
  unmap(old_address, old_size);
  return p;
}

int sync(void* addr, size_t length, int flags) {
  // The device's pages are the file's: msync of the range writes back the device file (what
  // libpmem2 does for an emulated device, whose granularity is the page).
  return sys_msync(addr, length, flags);
}

int pin(const void* addr, size_t length, int flags, bool unpin_it) {
  uintptr_t a = reinterpret_cast<uintptr_t>(addr) & ~(kPage - 1);
  uintptr_t end = reinterpret_cast<uintptr_t>(addr) + length;
  if (!unpin_it && populate(a, end - a, flags & DAXFS_CLIENT_PIN_WRITE) != 0) return errno = EFAULT, -1;
  while (a < end) {
    daxfs_dax_request req;
    memset(&req, 0, sizeof req);
    int ci;
    {
      TableLock lock;
      Region* r = find_region_locked(a);
      if (!r) return errno = EFAULT, -1;
      req.op = unpin_it ? DAXFS_OP_UNPIN : DAXFS_OP_PIN;
      req.ino = r->ino;
      req.offset = r->file_off + (a - r->addr);
      uintptr_t stop = end < r->addr + r->length ? ((end + kPage - 1) & ~(kPage - 1)) : r->addr + r->length;
      req.length = stop - a;
      req.address = a;
      req.flags = (flags & DAXFS_CLIENT_PIN_LONGTERM) ? DAXFS_PIN_LONGTERM : 0;
      ci = r->conn;
    }
    if (!request(g_conns[ci], req)) return errno = EIO, -1;
    if (req.error) return errno = req.error >= DAXFS_ERR_BEYOND_EOF ? EFAULT : req.error, -1;
    a += unpin_it ? req.length : (req.r_length ? req.r_length : req.length);
  }
  return 0;
}

void after_fork_child() {
  // The child has the parent's memory but not its session: every DAX page becomes a
  // placeholder again and the child connects as itself (the daemon then knows what it maps).
  g_lock.store(0);
  pthread_mutex_t fresh = PTHREAD_MUTEX_INITIALIZER;
  g_connect_mu = fresh;
  int fd_for[kMaxConns];
  for (int i = 0; i < kMaxConns; i++) fd_for[i] = -1;
  for (Region& r : g_regions) {
    if (!r.used) continue;
    placeholder(r.addr, r.length);
    if (fd_for[r.conn] < 0) fd_for[r.conn] = r.fd;
  }
  for (int i = 0; i < kMaxConns; i++) {
    Conn& c = g_conns[i];
    if (!c.used) continue;
    c.chan = nullptr;  // not inherited (MADV_DONTFORK); the descriptors are the parent's session's
    if (c.chan_fd >= 0) close(c.chan_fd);
    if (c.lock_fd >= 0) close(c.lock_fd);
    c.chan_fd = c.lock_fd = -1;
    if (!c.daxfs || c.dead) continue;
    c.daxfs = false;
    if (fd_for[i] >= 0 && connect_conn(i, fd_for[i])) {
      for (Region& r : g_regions) {
        if (!r.used || r.conn != i) continue;
        daxfs_dax_grant grant;
        memset(&grant, 0, sizeof grant);
        if (ioctl(r.fd, DAXFS_IOC_DAX_GRANT, &grant) != 0) r.dead = true;
      }
    } else {
      c.daxfs = true;
      c.dead = true;
      for (Region& r : g_regions)
        if (r.used && r.conn == i) r.dead = true;
    }
  }
}

sigset_t g_fork_mask;  // the forking thread's signal mask, restored after the fork

void before_fork() {
  pthread_mutex_lock(&g_connect_mu);
  sigset_t all;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &g_fork_mask);  // no handler may wait for g_lock meanwhile
  while (g_lock.exchange(1, std::memory_order_acquire)) sched_yield();
}

void after_fork_parent() {
  g_lock.store(0, std::memory_order_release);
  pthread_sigmask(SIG_SETMASK, &g_fork_mask, nullptr);
  pthread_mutex_unlock(&g_connect_mu);
}

void init_once() {
  install_fault_handler();
  pthread_atfork(before_fork, after_fork_parent, [] {
    g_lock.store(0);
    after_fork_child();
    pthread_sigmask(SIG_SETMASK, &g_fork_mask, nullptr);
  });
}

void init() { pthread_once(&g_once, init_once); }

}  // namespace daxfs::client

using namespace daxfs::client;

extern "C" {

int daxfs_client_init(void) {
  init();
  return 0;
}

void* daxfs_mmap(void* addr, size_t length, int prot, int flags, int fd, off_t offset) {
  init();
  return map(addr, length, prot, flags, fd, offset);
}

int daxfs_munmap(void* addr, size_t length) {
  init();
  return unmap(addr, length);
}

void* daxfs_mremap(void* old_address, size_t old_size, size_t new_size, int flags, void* new_address) {
  init();
  return remap(old_address, old_size, new_size, flags, new_address);
}

int daxfs_mprotect(void* addr, size_t length, int prot) {
  init();
  return protect(addr, length, prot);
}

int daxfs_madvise(void* addr, size_t length, int advice) {
  init();
  return advise(addr, length, advice);
}

int daxfs_msync(void* addr, size_t length, int flags) {
  init();
  return sync(addr, length, flags);
}

int daxfs_flush(const void* addr, size_t length) {
  uintptr_t a = reinterpret_cast<uintptr_t>(addr);
  uintptr_t start = a & ~(kPage - 1);
  return sync(reinterpret_cast<void*>(start), length + (a - start), MS_SYNC);
}

int daxfs_pin(const void* addr, size_t length, int flags) {
  init();
  return pin(addr, length, flags, false);
}

int daxfs_unpin(const void* addr, size_t length) {
  init();
  return pin(addr, length, 0, true);
}

int daxfs_set_mce_kill(int policy) {
  if (policy != DAXFS_MCE_KILL_DEFAULT && policy != DAXFS_MCE_KILL_EARLY && policy != DAXFS_MCE_KILL_LATE)
    return errno = EINVAL, -1;
  g_mce_settled = true;
  g_mce_policy = policy;
  return 0;
}

int daxfs_get_mce_kill(void) {
  read_mce_environment();
  return g_mce_policy.load();
}

int daxfs_is_dax(const void* addr) { return is_dax_address(reinterpret_cast<uintptr_t>(addr)) ? 1 : 0; }

}  // extern "C"
