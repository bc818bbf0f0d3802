// Channel segments (channel.h).
#include "daxcore/channel.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <cstring>

#include "common/futex.h"

namespace daxfs::dax {

namespace {
std::atomic<uint32_t>* word(uint32_t* w) { return reinterpret_cast<std::atomic<uint32_t>*>(w); }
}  // namespace

Result<std::unique_ptr<Channel>> Channel::create(const std::string& name, uid_t uid, gid_t gid) {
  int fd = shm_open(name.c_str(), O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC, 0600);
  if (fd < 0) return error(errno);
  std::unique_ptr<Channel> c(new Channel);
  c->name_ = name;
  c->linked_ = true;
  int err = 0;
  if (fchown(fd, uid, gid) != 0 || ftruncate(fd, sizeof(daxfs_dax_channel)) != 0) err = errno;
  void* p = err ? MAP_FAILED : mmap(nullptr, sizeof(daxfs_dax_channel), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (!err && p == MAP_FAILED) err = errno;
  close(fd);
  if (err) return error(err);  // the destructor unlinks the name
  c->chan_ = static_cast<daxfs_dax_channel*>(p);
  memset(c->chan_, 0, sizeof *c->chan_);
  c->chan_->magic = DAXFS_DAX_MAGIC;
  c->chan_->abi = DAXFS_DAX_ABI;
  c->chan_->size = sizeof(daxfs_dax_channel);
  return c;
}

Channel::~Channel() {
  if (chan_) munmap(chan_, sizeof *chan_);
  unlink();
}

void Channel::unlink() {
  if (linked_) shm_unlink(name_.c_str());
  linked_ = false;
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
