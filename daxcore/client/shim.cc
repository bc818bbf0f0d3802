// The LD_PRELOAD shim (`daxfsctl run -- CMD`): interposes the memory-mapping calls of libc so
// that shared mappings of DAX files of a daxfs mount go through the client library; every other
// mapping, and every other call, reaches libc untouched. sigaction/signal for SIGSEGV are
// recorded rather than installed, so the DAX fault handler stays first in line and chains to
// the program's. Inherited by children: the environment keeps LD_PRELOAD across exec, and the
// library's fork handler reconnects a forked child.
// Both mmap and mmap64 are defined here: without the header's redirect of one to the other.
#undef _FILE_OFFSET_BITS
#include <dlfcn.h>
#include <errno.h>
#include <stdarg.h>
#include <string.h>
#include <sys/prctl.h>

#include "daxcore/client/client_internal.h"
#include "daxcore/client/daxfs_client.h"

using namespace daxfs::client;

namespace {
__attribute__((constructor)) void shim_init() { init(); }
}  // namespace

// I/O system calls whose buffer lies in a DAX mapping. The kernel holds the buffer's pages while
// it copies (or DMAs) into or out of them; a layout break meanwhile must wait, as Linux's
// dax_layout_busy_page() waits for page references, or the copy could land in a block already
// given to another file. So the buffer is faulted in and pinned for the call (which also spares
// the kernel an EFAULT on a revoked, untouched page). Other system calls are not covered
// (docs/interface.md).
namespace {
template <typename Fn, typename... Args>
ssize_t io_pinned(const char* name, void* buf, size_t length, bool store, Args... args) {
  static Fn real = reinterpret_cast<Fn>(dlsym(RTLD_NEXT, name));
  if (length == 0 || !overlaps_region(reinterpret_cast<uintptr_t>(buf), length)) return real(args...);
  bool pinned = daxfs_pin(buf, length, store ? DAXFS_CLIENT_PIN_WRITE : 0) == 0;
  ssize_t r = real(args...);
  int saved = errno;
  if (pinned) daxfs_unpin(buf, length);
  errno = saved;
  return r;
}
}  // namespace

extern "C" {

__attribute__((visibility("default"))) void* mmap(void* addr, size_t length, int prot, int flags, int fd,
                                                  off_t offset) {
  init();
  return map(addr, length, prot, flags, fd, offset);
}

__attribute__((visibility("default"))) void* mmap64(void* addr, size_t length, int prot, int flags, int fd,
                                                    off_t offset) {
  init();
  return map(addr, length, prot, flags, fd, offset);
}

__attribute__((visibility("default"))) int munmap(void* addr, size_t length) {
  init();
  return unmap(addr, length);
}

__attribute__((visibility("default"))) void* mremap(void* old_address, size_t old_size, size_t new_size,
                                                    int flags, ...) {
  void* new_address = nullptr;
  if (flags & MREMAP_FIXED) {
    va_list ap;
    va_start(ap, flags);
    new_address = va_arg(ap, void*);
    va_end(ap);
  }
  init();
  return remap(old_address, old_size, new_size, flags, new_address);
}

__attribute__((visibility("default"))) int mprotect(void* addr, size_t length, int prot) {
  init();
  return protect(addr, length, prot);
}

__attribute__((visibility("default"))) int madvise(void* addr, size_t length, int advice) {
  init();
  return advise(addr, length, advice);
}

__attribute__((visibility("default"))) int msync(void* addr, size_t length, int flags) {
  init();
  return sync(addr, length, flags);
}

__attribute__((visibility("default"))) ssize_t read(int fd, void* buf, size_t n) {
  return io_pinned<ssize_t (*)(int, void*, size_t)>("read", buf, n, true, fd, buf, n);
}
__attribute__((visibility("default"))) ssize_t write(int fd, const void* buf, size_t n) {
  return io_pinned<ssize_t (*)(int, const void*, size_t)>("write", const_cast<void*>(buf), n, false, fd, buf, n);
}
__attribute__((visibility("default"))) ssize_t pread(int fd, void* buf, size_t n, off_t off) {
  return io_pinned<ssize_t (*)(int, void*, size_t, off_t)>("pread", buf, n, true, fd, buf, n, off);
}
__attribute__((visibility("default"))) ssize_t pread64(int fd, void* buf, size_t n, off_t off) {
  return io_pinned<ssize_t (*)(int, void*, size_t, off_t)>("pread64", buf, n, true, fd, buf, n, off);
}
__attribute__((visibility("default"))) ssize_t pwrite(int fd, const void* buf, size_t n, off_t off) {
  return io_pinned<ssize_t (*)(int, const void*, size_t, off_t)>("pwrite", const_cast<void*>(buf), n, false, fd,
                                                                buf, n, off);
}
__attribute__((visibility("default"))) ssize_t pwrite64(int fd, const void* buf, size_t n, off_t off) {
  return io_pinned<ssize_t (*)(int, const void*, size_t, off_t)>("pwrite64", const_cast<void*>(buf), n, false, fd,
                                                                  buf, n, off);
}

// The ioctls and fallocate modes FUSE never forwards (remap.cc); everything else goes straight
// to the kernel.
__attribute__((visibility("default"))) int ioctl(int fd, unsigned long request, ...) {
  va_list ap;
  va_start(ap, request);
  void* arg = va_arg(ap, void*);
  va_end(ap);
  int result;
  if (remap_ioctl(fd, request, arg, &result)) return result;
  return static_cast<int>(syscall(SYS_ioctl, fd, request, arg));
}

__attribute__((visibility("default"))) int fallocate(int fd, int mode, off_t offset, off_t len) {
  int result;
  if (remap_fallocate(fd, mode, offset, len, &result)) return result;
  return static_cast<int>(syscall(SYS_fallocate, fd, mode, offset, len));
}
__attribute__((visibility("default"))) int fallocate64(int fd, int mode, off_t offset, off_t len) {
  return fallocate(fd, mode, offset, len);
}

// prctl(PR_MCE_KILL, PR_MCE_KILL_SET, EARLY|LATE|DEFAULT) also sets the DAX layer's policy
// (the kernel's own setting is kept too).
__attribute__((visibility("default"))) int prctl(int option, ...) {
  va_list ap;
  va_start(ap, option);
  unsigned long a2 = va_arg(ap, unsigned long), a3 = va_arg(ap, unsigned long);
  unsigned long a4 = va_arg(ap, unsigned long), a5 = va_arg(ap, unsigned long);
  va_end(ap);
  if (option == PR_MCE_KILL && a2 == PR_MCE_KILL_CLEAR) daxfs_set_mce_kill(DAXFS_MCE_KILL_DEFAULT);
  if (option == PR_MCE_KILL && a2 == PR_MCE_KILL_SET) {
    daxfs_set_mce_kill(a3 == PR_MCE_KILL_EARLY  ? DAXFS_MCE_KILL_EARLY
                       : a3 == PR_MCE_KILL_LATE ? DAXFS_MCE_KILL_LATE
                                                : DAXFS_MCE_KILL_DEFAULT);
  }
  return static_cast<int>(syscall(SYS_prctl, option, a2, a3, a4, a5));
}

__attribute__((visibility("default"))) int sigaction(int sig, const struct sigaction* act,
                                                     struct sigaction* old) {
  if (sig != SIGSEGV) return sys_sigaction(sig, act, old);
  init();
  return set_program_handler(act, old);
}

__attribute__((visibility("default"))) sighandler_t signal(int sig, sighandler_t handler) {
  struct sigaction sa, old;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = handler;
  sa.sa_flags = SA_RESTART;
  sigemptyset(&sa.sa_mask);
  if (sig != SIGSEGV) {
    if (sys_sigaction(sig, &sa, &old) != 0) return SIG_ERR;
    return old.sa_handler;
  }
  init();
  set_program_handler(&sa, &old);
  return old.sa_handler;
}

}  // extern "C"
