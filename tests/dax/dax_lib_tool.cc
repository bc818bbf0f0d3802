// dax_lib_tool: the client library's C API used directly (no preload), for the DAX tests.
//   private FILE        MAP_PRIVATE store: prints "kernel unchanged" (not DAX, file untouched)
//   rdonly FILE         read-only open: a writable shared map fails EACCES, a readable one is DAX
//   sync FILE           MAP_SHARED_VALIDATE|MAP_SYNC is accepted for a DAX mapping: "map_sync dax"
//   pin FILE            long-term pin refused (EOPNOTSUPP); a short pin taken: prints "pinned",
//                       unpins on SIGUSR1 ("unpinned"), exits on SIGTERM
//   mremap FILE         a one-page DAX mapping grown to four pages moves and still maps the file
//   mprotect FILE       after mprotect(PROT_READ) a store dies of SIGSEGV: "segv"; loads still work
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <string>

#include "daxcore/client/daxfs_client.h"

#ifndef MAP_SYNC
#define MAP_SYNC 0x80000
#endif
#ifndef MAP_SHARED_VALIDATE
#define MAP_SHARED_VALIDATE 0x03
#endif

namespace {
volatile sig_atomic_t g_usr1 = 0, g_term = 0;
void on_usr1(int) { g_usr1 = 1; }
void on_term(int) { g_term = 1; }

int fail(const char* what) {
  printf("%s: %s\n", what, strerror(errno));
  return 1;
}
}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: dax_lib_tool COMMAND FILE\n");
    return 2;
  }
  setvbuf(stdout, nullptr, _IONBF, 0);
  std::string cmd = argv[1];
  const char* path = argv[2];
  daxfs_client_init();
  if (cmd == "private") {
    int fd = open(path, O_RDWR);
    if (fd < 0) return fail("open");
    char* p = static_cast<char*>(daxfs_mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0));
    if (p == MAP_FAILED) return fail("mmap");
    char before = p[0];
    p[0] = static_cast<char>(before + 1);
    char now;
    if (pread(fd, &now, 1, 0) != 1) return fail("pread");
    printf("%s %s\n", daxfs_is_dax(p) ? "dax" : "kernel", now == before ? "unchanged" : "changed");
    return 0;
  }
  if (cmd == "rdonly") {
    int fd = open(path, O_RDONLY);
    if (fd < 0) return fail("open");
    void* w = daxfs_mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    printf("write %s\n", w == MAP_FAILED ? strerror(errno) : "mapped");
    char* r = static_cast<char*>(daxfs_mmap(nullptr, 4096, PROT_READ, MAP_SHARED, fd, 0));
    if (r == MAP_FAILED) return fail("mmap");
    printf("read %s %c\n", daxfs_is_dax(r) ? "dax" : "kernel", r[0]);
    return 0;
  }
  if (cmd == "sync") {
    int fd = open(path, O_RDWR);
    if (fd < 0) return fail("open");
    char* p = static_cast<char*>(
        daxfs_mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_SHARED_VALIDATE | MAP_SYNC, fd, 0));
    if (p == MAP_FAILED) return fail("map_sync");
    p[0] = 'S';
    if (daxfs_flush(p, 1) != 0) return fail("flush");
    printf("map_sync %s\n", daxfs_is_dax(p) ? "dax" : "kernel");
    return 0;
  }
  if (cmd == "pin") {
    signal(SIGUSR1, on_usr1);
    signal(SIGTERM, on_term);
    int fd = open(path, O_RDWR);
    if (fd < 0) return fail("open");
    char* p = static_cast<char*>(daxfs_mmap(nullptr, 8192, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0));
    if (p == MAP_FAILED) return fail("mmap");
    if (daxfs_pin(p, 8192, DAXFS_CLIENT_PIN_LONGTERM) == 0) return fail("long-term pin taken");
    printf("longterm %s\n", strerror(errno));
    if (daxfs_pin(p, 8192, DAXFS_CLIENT_PIN_WRITE) != 0) return fail("pin");
    printf("pinned\n");
    while (!g_usr1 && !g_term) usleep(1000);
    if (g_usr1) {
      if (daxfs_unpin(p, 8192) != 0) return fail("unpin");
      printf("unpinned\n");
    }
    while (!g_term) usleep(1000);
    return 0;
  }
  if (cmd == "mremap") {
    int fd = open(path, O_RDWR);
    if (fd < 0) return fail("open");
    char* p = static_cast<char*>(daxfs_mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0));
    if (p == MAP_FAILED) return fail("mmap");
    char* q = static_cast<char*>(daxfs_mremap(p, 4096, 4 * 4096, MREMAP_MAYMOVE, nullptr));
    if (q == MAP_FAILED) return fail("mremap");
    char c;
    if (pread(fd, &c, 1, 3 * 4096 + 7) != 1) return fail("pread");
    printf("mremap %s %s\n", daxfs_is_dax(q) ? "dax" : "kernel", q[3 * 4096 + 7] == c ? "same" : "different");
    return 0;
  }
  if (cmd == "mprotect") {
    int fd = open(path, O_RDWR);
    if (fd < 0) return fail("open");
    char* p = static_cast<char*>(daxfs_mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0));
    if (p == MAP_FAILED) return fail("mmap");
    p[0] = 'w';
    if (daxfs_mprotect(p, 4096, PROT_READ) != 0) return fail("mprotect");
    pid_t child = fork();
    if (child == 0) {
      *static_cast<volatile char*>(p) = 'x';
      _exit(0);
    }
    int st;
    waitpid(child, &st, 0);
    printf("%s %c\n", WIFSIGNALED(st) && WTERMSIG(st) == SIGSEGV ? "segv" : "stored", p[0]);
    return 0;
  }
  fprintf(stderr, "dax_lib_tool: bad command\n");
  return 2;
}
