// Internal to the client library (client.cc, signals.cc, shim.cc): the real system calls, the
// fault entry point of the SIGSEGV handler and the calls the public API and the shim share.
#pragma once

#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>

#include <atomic>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

namespace daxfs::client {

// A spin lock taken with every signal blocked: no signal handler can run on the holder's thread
// and wait for the lock it holds (a handler that touches DAX memory faults, and the fault path
// takes these locks). Held only for table lookups and mmap calls, never across a wait.
class SignalSafeLock {
 public:
  explicit SignalSafeLock(std::atomic<int>& word) : word_(word) {
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old_);
    while (word_.exchange(1, std::memory_order_acquire)) sched_yield();
  }
  ~SignalSafeLock() {
    word_.store(0, std::memory_order_release);
    pthread_sigmask(SIG_SETMASK, &old_, nullptr);
  }
  SignalSafeLock(const SignalSafeLock&) = delete;
  SignalSafeLock& operator=(const SignalSafeLock&) = delete;

 private:
  std::atomic<int>& word_;
  sigset_t old_;
};

// The kernel's calls, never the interposed libc names.
inline void* sys_mmap(void* addr, size_t length, int prot, int flags, int fd, off_t offset) {
  long r = syscall(SYS_mmap, addr, length, prot, flags, fd, offset);
  return r < 0 && r > -4096 ? MAP_FAILED : reinterpret_cast<void*>(r);
}
inline int sys_munmap(void* addr, size_t length) { return static_cast<int>(syscall(SYS_munmap, addr, length)); }
inline int sys_mprotect(void* addr, size_t length, int prot) {
  return static_cast<int>(syscall(SYS_mprotect, addr, length, prot));
}
inline int sys_madvise(void* addr, size_t length, int advice) {
  return static_cast<int>(syscall(SYS_madvise, addr, length, advice));
}
inline int sys_msync(void* addr, size_t length, int flags) {
  return static_cast<int>(syscall(SYS_msync, addr, length, flags));
}
inline void* sys_mremap(void* old_address, size_t old_size, size_t new_size, int flags, void* new_address) {
  long r = syscall(SYS_mremap, old_address, old_size, new_size, flags, new_address);
  return r < 0 && r > -4096 ? MAP_FAILED : reinterpret_cast<void*>(r);
}
// libc's sigaction (found past any interposer).
int sys_sigaction(int sig, const struct sigaction* act, struct sigaction* old);

// The calls FUSE never forwards, for files of a daxfs mount (remap.cc): true when the call was
// answered (its return value in *result, errno set on failure), false when it is not ours (the
// caller makes the real call).
bool remap_ioctl(int fd, unsigned long req, void* arg, int* result);
bool remap_fallocate(int fd, int mode, off_t offset, off_t len, int* result);

enum class FaultResult { kRetry, kBus, kNotOurs };
// Serves a fault at `addr` (a store if `write`). kRetry: return from the handler (the access
// is retried); kBus: raise SIGBUS with *bus_code; kNotOurs: the program's own fault.
// *mapped_end (if given) gets the end of what was mapped (kRetry without a mapping: unchanged).
FaultResult fault(uintptr_t addr, bool write, int* bus_code, uintptr_t* mapped_end);
// The SIGSEGV handler's body; `chain` runs the program's handler for faults that are not ours.
void handle_fault_signal(int sig, siginfo_t* si, void* ucontext, void (*chain)(int, siginfo_t*, void*));
void install_fault_handler();  // signals.cc
// The program asks for SIGSEGV handling (the shim's sigaction): recorded, ours stays installed.
int set_program_handler(const struct sigaction* act, struct sigaction* old);

// What munmap/mprotect tell the daemon after dropping g_lock.
struct Pending {
  static constexpr int kMax = 64;
  struct Item {
    int conn;
    uint64_t ino, offset, length;
    uintptr_t address;  // where the process mapped `offset`
    int close_fd;
  } items[kMax];
  int count = 0;
};
void forget_range_locked(uintptr_t addr, size_t length, Pending* pending);
void finish_pending(const Pending& pending);
// Maps [addr, addr + length) ahead of touches; -1 if it stopped early (EOF, an error).
int populate(uintptr_t addr, size_t length, bool write);
// The range overlaps a DAX region (the shim's EFAULT retries).
bool overlaps_region(uintptr_t addr, size_t length);

void init();
void* map(void* addr, size_t length, int prot, int flags, int fd, off_t offset);
int unmap(void* addr, size_t length);
void* remap(void* old_address, size_t old_size, size_t new_size, int flags, void* new_address);
int protect(void* addr, size_t length, int prot);
int advise(void* addr, size_t length, int advice);
int sync(void* addr, size_t length, int flags);
bool is_dax_address(uintptr_t addr);

}  // namespace daxfs::client
