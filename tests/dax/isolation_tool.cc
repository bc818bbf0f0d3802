// isolation_tool: what a process may do with a shared mapping of a file it opened read-only, for
// tests/fuse/isolation_test.cc, which runs it as an unprivileged user (nobody), with and without
// `daxfsctl run`. One line per fact on stdout:
//   map-ro FILE       opens FILE O_RDONLY ("open ERRNO" and exit 0 when that fails: no fd, so no
//                     mapping), maps it PROT_READ/MAP_SHARED and prints
//                       "backing dax|kernel|anonymous"  what backs the mapping (/proc/self/maps)
//                       "bytes TEXT"                    its first 8 bytes
//                       "mmap-rw ok|ERRNO"              a PROT_WRITE shared mapping of the fd
//                       "mprotect ok|ERRNO"             making the read-only mapping writable
//                       "store ok|sigsegv|sigbus"       a store into the read-only mapping
//                       "done"
//   map-rw FILE       opens FILE O_RDWR and maps it PROT_READ|PROT_WRITE/MAP_SHARED; prints
//                     "open ERRNO" or "backing dax|kernel|anonymous", then "done" (stores nothing)
// ERRNO is the errno's name (EACCES, EPERM, ...).
#include <fcntl.h>
#include <limits.h>
#include <setjmp.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>

#include "tests/dax/proc_maps.h"

namespace {

sigjmp_buf g_jump;
volatile sig_atomic_t g_signal = 0;

void on_fault(int sig, siginfo_t*, void*) {
  g_signal = sig;
  siglongjmp(g_jump, 1);
}

const char* errno_name(int e) {
  switch (e) {
    case 0: return "ok";
    case EACCES: return "EACCES";
    case EPERM: return "EPERM";
    case EBADF: return "EBADF";
    case EINVAL: return "EINVAL";
    case ENODEV: return "ENODEV";
    case ENOENT: return "ENOENT";
    default: return strerror(e);
  }
}

using daxfs::test::backing;

// Maps `fd` (of `path`) with `prot`; prints "backing ..." and returns the mapping, or prints the
// error under `what` and returns nullptr.
char* map_file(const char* path, int fd, int prot, const char* what, size_t* span) {
  struct stat st;
  if (fstat(fd, &st) != 0) return nullptr;
  *span = (static_cast<size_t>(st.st_size) + 4095) / 4096 * 4096;
  if (*span == 0) *span = 4096;
  void* p = mmap(nullptr, *span, prot, MAP_SHARED, fd, 0);
  if (p == MAP_FAILED) {
    printf("%s %s\n", what, errno_name(errno));
    return nullptr;
  }
  printf("backing %s\n", backing(p, path).c_str());
  return static_cast<char*>(p);
}

int map_ro(const char* path) {
  int fd = open(path, O_RDONLY);
  if (fd < 0) {
    printf("open %s\n", errno_name(errno));
    return 0;
  }
  size_t span;
  char* p = map_file(path, fd, PROT_READ, "mmap-ro", &span);
  if (!p) return 1;
  printf("bytes %.8s\n", p);
  void* w = mmap(nullptr, span, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  printf("mmap-rw %s\n", errno_name(w == MAP_FAILED ? errno : 0));
  if (w != MAP_FAILED) munmap(w, span);
  printf("mprotect %s\n", errno_name(mprotect(p, span, PROT_READ | PROT_WRITE) == 0 ? 0 : errno));
  struct sigaction sa {};
  sa.sa_sigaction = on_fault;
  sa.sa_flags = SA_SIGINFO | SA_NODEFER;
  struct sigaction old_segv, old_bus;
  sigaction(SIGSEGV, &sa, &old_segv);
  sigaction(SIGBUS, &sa, &old_bus);
  if (sigsetjmp(g_jump, 1) == 0) {
    *reinterpret_cast<volatile char*>(p) = '!';
    printf("store ok\n");
  } else {
    printf("store %s\n", g_signal == SIGSEGV ? "sigsegv" : g_signal == SIGBUS ? "sigbus" : "signal");
  }
  sigaction(SIGSEGV, &old_segv, nullptr);
  sigaction(SIGBUS, &old_bus, nullptr);
  munmap(p, span);
  close(fd);
  printf("done\n");
  return 0;
}

int map_rw(const char* path) {
  int fd = open(path, O_RDWR);
  if (fd < 0) {
    printf("open %s\n", errno_name(errno));
    return 0;
  }
  size_t span;
  char* p = map_file(path, fd, PROT_READ | PROT_WRITE, "mmap-rw", &span);
  if (p) munmap(p, span);
  close(fd);
  printf("done\n");
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  setvbuf(stdout, nullptr, _IONBF, 0);
  if (argc != 3) {
    fprintf(stderr, "usage: isolation_tool map-ro|map-rw FILE\n");
    return 2;
  }
  std::string cmd = argv[1];
  if (cmd == "map-ro") return map_ro(argv[2]);
  if (cmd == "map-rw") return map_rw(argv[2]);
  fprintf(stderr, "isolation_tool: unknown command %s\n", argv[1]);
  return 2;
}
