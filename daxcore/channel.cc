// Channels (channel.h). Why a client memfd and not a segment the daemon creates: whoever can
// write a /dev/shm file can also truncate it, and a daemon store into a truncated mapping is a
// SIGBUS in the daemon. A memfd sealed with F_SEAL_SHRINK cannot shrink, whoever holds it.
#include "daxcore/channel.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cstring>

#include "common/futex.h"

namespace daxfs::dax {

namespace {
std::atomic<uint32_t>* word(uint32_t* w) { return reinterpret_cast<std::atomic<uint32_t>*>(w); }
}  // namespace

Result<std::unique_ptr<Channel>> Channel::attach(int pidfd, int client_fd) {
  if (client_fd < 0) return error(EBADF);
  int fd = static_cast<int>(syscall(SYS_pidfd_getfd, pidfd, client_fd, 0));
  if (fd < 0) return error(errno == ESRCH ? ESRCH : errno == EBADF ? EBADF : EPERM);
  std::unique_ptr<Channel> c(new Channel);
  c->fd_ = fd;
  int seals = fcntl(fd, F_GET_SEALS);
  struct stat st;
  if (seals < 0 || !(seals & F_SEAL_SHRINK) || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) ||
      st.st_size < static_cast<off_t>(sizeof(daxfs_dax_channel)))
    return error(EBADF);
  void* p = mmap(nullptr, sizeof(daxfs_dax_channel), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (p == MAP_FAILED) return error(errno);
  c->chan_ = static_cast<daxfs_dax_channel*>(p);
  memset(c->chan_, 0, sizeof *c->chan_);
  c->chan_->abi = DAXFS_DAX_ABI;
  c->chan_->size = sizeof(daxfs_dax_channel);
  __atomic_store_n(&c->chan_->magic, DAXFS_DAX_MAGIC, __ATOMIC_RELEASE);  // last: the rest is ready
  return c;
}

Channel::~Channel() {
  if (chan_) munmap(chan_, sizeof *chan_);
  if (fd_ >= 0) close(fd_);
}

bool Channel::image_alive() const {
  struct flock probe;
  memset(&probe, 0, sizeof probe);
  probe.l_type = F_WRLCK;
  probe.l_whence = SEEK_SET;
  // Our descriptor shares the client's first open of the memfd; the client locks a second one.
  if (fcntl(fd_, F_OFD_GETLK, &probe) != 0) return true;  // cannot tell: assume it lives
  return probe.l_type != F_UNLCK;
}

uint64_t Channel::post_revoke(uint64_t ino, uint64_t offset, uint64_t length, uint32_t why, uint32_t flags) {
  if (posted_ - acked() >= DAXFS_DAX_RING) return 0;
  uint64_t seq = posted_ + 1;
  daxfs_dax_revoke& r = chan_->ring[seq % DAXFS_DAX_RING];
  r.ino = ino, r.offset = offset, r.length = length, r.why = why, r.flags = flags;
  __atomic_store_n(&r.seq, seq, __ATOMIC_RELEASE);
  posted_ = seq;
  __atomic_store_n(&chan_->revoke_posted, seq, __ATOMIC_RELEASE);  // orders the record before it
  __atomic_fetch_add(&chan_->revoke_bell, 1, __ATOMIC_RELEASE);
  futex_wake_all(word(&chan_->revoke_bell));
  return seq;
}

uint64_t Channel::acked() const {
  uint64_t a = __atomic_load_n(&chan_->revoke_acked, __ATOMIC_ACQUIRE);
  return a > posted_ ? posted_ : a;  // a client that claims more than it was sent is not believed
}

void Channel::wait_ack(uint32_t bell, int timeout_ms) { futex_wait_ms(word(&chan_->ack_bell), bell, timeout_ms); }

void Channel::mark_dead() {
  __atomic_store_n(&chan_->dead, 1u, __ATOMIC_RELEASE);
  __atomic_fetch_add(&chan_->revoke_bell, 1, __ATOMIC_RELEASE);
  futex_wake_all(word(&chan_->revoke_bell));
  for (auto& r : chan_->requests) futex_wake_all(word(&r.state));
}

}  // namespace daxfs::dax
