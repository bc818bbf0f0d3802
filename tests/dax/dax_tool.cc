// dax_tool: a plain program that maps files with mmap(2), for the DAX tests and the demo. Run
// under `daxfsctl run` its shared mappings of DAX files go through the DAX layer; it does not
// know. Output is one line per fact, for scripts to compare.
//   store FILE OFFSET TEXT    store TEXT at OFFSET through a shared mapping (msync'ed); prints
//                             "dax" (the device backs the mapping) or "kernel"
//   load FILE OFFSET LENGTH   prints LENGTH bytes at OFFSET, loaded through a shared mapping
//   hold FILE [store]         maps the file, touches it, prints "ready", then loads (or stores)
//                             its first byte every millisecond until SIGTERM (exit 0)
//   watch FILE                as hold, printing each new value of the first byte ("value C")
//   sleep FILE                maps, touches, prints "ready", then pauses until killed
//   fork-store FILE OFFSET TEXT  maps, forks; the child stores TEXT and exits; the parent waits
//                             and prints what read(2) returns there
//   storm FILE SECONDS        stores into random pages of the whole file for SECONDS, remapping
//                             after each SIGBUS; prints "stores N sigbus M"
//   exec FILE CMD ARGS...     maps FILE, touches it, prints "ready", then execs CMD (which maps
//                             nothing: the daemon must not wait for, or kill, the new image)
//   poison-watch FILE [still] maps the file, touches every page, prints "ready", then keeps
//                             loading every page (or, with "still", touches nothing) and prints
//                             each SIGBUS as "sigbus CODE page N lsb L" (N: page index in the
//                             mapping); a page that raised one is skipped afterwards; SIGTERM ends
//   map-at FILE OFFSET        maps one page at file OFFSET (any value, e.g. 2^63 - 4096), loads
//                             and stores it; prints "ok", "sigbus CODE" or the mmap error
//   race FILE PAGES load|store  maps PAGES pages of FILE (read-write for "store"), touches each
//                             once and prints "ready", then loads (or atomically adds 0 to: a
//                             store that changes nothing) the first byte of every page, sweep
//                             after sweep, until SIGTERM. Every SIGBUS is counted by page and
//                             si_code and the sweep goes on (an early kill, BUS_MCEERR_AO, may
//                             come on any thread: it is only counted). Then prints "sigbus PAGE
//                             CODE COUNT" for each page and code seen (PAGE is PAGES for an
//                             address outside the mapping), loads every page once more and
//                             prints "probe PAGE CODE" for each that raised SIGBUS, "value PAGE
//                             BYTE" (decimal) for each that loaded, and "done"
// Any SIGBUS not expected by the command prints "sigbus CODE ADDR" and exits 7.
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "tests/dax/proc_maps.h"

#include <algorithm>
#include <atomic>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>

namespace {

volatile sig_atomic_t g_stop = 0;
sigjmp_buf g_jump;
volatile sig_atomic_t g_jump_armed = 0;
volatile int g_bus_code = 0;

[[noreturn]] void die(const char* what) {
  fprintf(stderr, "dax_tool: %s: %s\n", what, strerror(errno));
  exit(1);
}

using daxfs::test::backing;

void on_bus(int, siginfo_t* si, void*) {
  if (g_jump_armed) {
    g_bus_code = si->si_code;
    g_jump_armed = 0;
    siglongjmp(g_jump, 1);
  }
  char buf[96];
  int n = snprintf(buf, sizeof buf, "sigbus %d %p\n", si->si_code, si->si_addr);
  (void)!write(1, buf, n);
  _exit(7);
}

void on_term(int) { g_stop = 1; }

struct Mapping {
  char* p;
  size_t span;
  size_t size;
};

Mapping map_file(const char* path, bool store, int* fd_out = nullptr) {
  int fd = open(path, store ? O_RDWR : O_RDONLY);
  if (fd < 0) die(path);
  struct stat st;
  fstat(fd, &st);
  size_t span = (static_cast<size_t>(st.st_size) + 4095) / 4096 * 4096;
  if (span == 0) span = 4096;
  void* p = mmap(nullptr, span, PROT_READ | (store ? PROT_WRITE : 0), MAP_SHARED, fd, 0);
  if (p == MAP_FAILED) die("mmap");
  if (fd_out) {
    *fd_out = fd;
  } else {
    close(fd);
  }
  return {static_cast<char*>(p), span, static_cast<size_t>(st.st_size)};
}

// Loads the byte at p (or atomically adds 0 to it: a store that changes nothing) with the jump
// armed: 0, or the si_code a SIGBUS handler that jumped back here left in g_bus_code. The
// sigsetjmp is alone in its own frame: no caller's variable is live across it.
int guarded_touch(char* p, bool store, unsigned char* loaded = nullptr) {
  if (sigsetjmp(g_jump, 1) != 0) return g_bus_code;
  g_jump_armed = 1;
  std::atomic_signal_fence(std::memory_order_seq_cst);
  unsigned char v;
  if (store) {
    v = static_cast<unsigned char>(__atomic_fetch_add(p, 0, __ATOMIC_RELAXED));
  } else {
    v = static_cast<unsigned char>(*static_cast<volatile char*>(p));
  }
  std::atomic_signal_fence(std::memory_order_seq_cst);
  g_jump_armed = 0;
  if (loaded) *loaded = v;
  return 0;
}

char* g_watch_base = nullptr;
volatile sig_atomic_t g_watch_skip[4096];

void on_watch_bus(int, siginfo_t* si, void*) {
  uintptr_t page = (reinterpret_cast<uintptr_t>(si->si_addr) - reinterpret_cast<uintptr_t>(g_watch_base)) / 4096;
  char buf[96];
  int n = snprintf(buf, sizeof buf, "sigbus %d page %lu lsb %d\n", si->si_code, static_cast<unsigned long>(page),
                   static_cast<int>(si->si_addr_lsb));
  (void)!write(1, buf, n);
  if (page < 4096) g_watch_skip[page] = 1;
  if (g_jump_armed) {  // raised by our own touch (action required): skip the page and go on
    g_jump_armed = 0;
    siglongjmp(g_jump, 1);
  }
}

int poison_watch(const char* path, bool still) {
  Mapping m = map_file(path, false);
  g_watch_base = m.p;
  struct sigaction sa{};
  sa.sa_sigaction = on_watch_bus;
  sa.sa_flags = SA_SIGINFO | SA_NODEFER;
  sigaction(SIGBUS, &sa, nullptr);
  size_t pages = std::min<size_t>((m.size + 4095) / 4096, 4096);
  // Loads every page not known bad; a SIGBUS of the load itself skips the page.
  auto touch_all = [&] {
    for (size_t i = 0; i < pages; i++)
      if (!g_watch_skip[i]) guarded_touch(m.p + i * 4096, false);
  };
  touch_all();
  printf("ready\n");
  while (!g_stop) {
    if (!still) touch_all();
    usleep(1000);
  }
  return 0;
}

int hold(const char* path, bool store, bool watch, bool sleep_only) {
  Mapping m = map_file(path, store);
  volatile char sink = 0;
  for (size_t i = 0; i < m.size; i += 4096) sink = sink + m.p[i];
  printf("ready\n");
  if (sleep_only) {
    for (;;) pause();
  }
  int last = -1;
  while (!g_stop) {
    if (store) {
      __atomic_fetch_add(&m.p[0], 0, __ATOMIC_RELAXED);
    } else {
      int v = static_cast<unsigned char>(m.p[0]);
      if (watch && v != last) {
        printf("value %c\n", v >= 32 && v < 127 ? v : '.');
        last = v;
      }
    }
    usleep(1000);
  }
  return 0;
}

int storm(const char* path, double seconds) {
  int fd;
  Mapping m = map_file(path, true, &fd);
  struct timespec t0, t;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  unsigned seed = static_cast<unsigned>(getpid());
  long stores = 0, buses = 0;
  for (;;) {
    clock_gettime(CLOCK_MONOTONIC, &t);
    if ((t.tv_sec - t0.tv_sec) + (t.tv_nsec - t0.tv_nsec) / 1e9 > seconds || g_stop) break;
    size_t page = rand_r(&seed) % (m.span / 4096);
    if (sigsetjmp(g_jump, 1) == 0) {
      size_t at = page * 4096 + rand_r(&seed) % 4096;
      char value = static_cast<char>('a' + rand_r(&seed) % 26);
      g_jump_armed = 1;
      std::atomic_signal_fence(std::memory_order_seq_cst);  // the store stays between the flags
      *static_cast<volatile char*>(m.p + at) = value;
      std::atomic_signal_fence(std::memory_order_seq_cst);
      g_jump_armed = 0;
      stores++;
    } else {
      // Past EOF after a truncate: map what the file is now.
      buses++;
      munmap(m.p, m.span);
      struct stat st;
      fstat(fd, &st);
      m.span = (static_cast<size_t>(st.st_size) + 4095) / 4096 * 4096;
      if (m.span == 0) m.span = 4096;
      m.p = static_cast<char*>(mmap(nullptr, m.span, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0));
      if (m.p == MAP_FAILED) die("mmap");
    }
  }
  printf("stores %ld sigbus %ld\n", stores, buses);
  return 0;
}

constexpr size_t kRaceMaxPages = 1024;
constexpr int kCodes = 8;  // si_code 0..7 (BUS_ADRALN .. BUS_MCEERR_AO); anything else counts as 0
char* g_race_base = nullptr;
size_t g_race_pages = 0;
pid_t g_race_tid = 0;  // the thread that touches (and arms the jump)
volatile sig_atomic_t g_race_probing = 0;
unsigned long g_race_bus[kRaceMaxPages + 1][kCodes];

void on_race_bus(int, siginfo_t* si, void*) {
  uintptr_t a = reinterpret_cast<uintptr_t>(si->si_addr), base = reinterpret_cast<uintptr_t>(g_race_base);
  size_t page = a >= base && a < base + g_race_pages * 4096 ? (a - base) / 4096 : g_race_pages;
  int code = si->si_code > 0 && si->si_code < kCodes ? si->si_code : 0;
  if (!g_race_probing || si->si_code == BUS_MCEERR_AO) __atomic_fetch_add(&g_race_bus[page][code], 1, __ATOMIC_RELAXED);
  if (si->si_code == BUS_MCEERR_AO) return;  // asynchronous (early kill): nothing to skip
  if (g_jump_armed && static_cast<pid_t>(syscall(SYS_gettid)) == g_race_tid) {
    g_bus_code = si->si_code;
    g_jump_armed = 0;
    siglongjmp(g_jump, 1);
  }
  char buf[96];
  int n = snprintf(buf, sizeof buf, "sigbus %d %p\n", si->si_code, si->si_addr);
  (void)!write(1, buf, n);
  _exit(7);
}

// Loads (or stores into) the first byte of page i: 0, or the si_code of the SIGBUS it raised.
int race_touch(size_t i, bool store) { return guarded_touch(g_race_base + i * 4096, store); }

int race(const char* path, size_t pages, bool store) {
  if (pages == 0 || pages > kRaceMaxPages) {
    fprintf(stderr, "dax_tool: race: 1 to %zu pages\n", kRaceMaxPages);
    return 2;
  }
  int fd = open(path, store ? O_RDWR : O_RDONLY);
  if (fd < 0) die(path);
  void* p = mmap(nullptr, pages * 4096, PROT_READ | (store ? PROT_WRITE : 0), MAP_SHARED, fd, 0);
  if (p == MAP_FAILED) die("mmap");
  close(fd);
  g_race_base = static_cast<char*>(p);
  g_race_pages = pages;
  g_race_tid = static_cast<pid_t>(syscall(SYS_gettid));
  struct sigaction sa{};
  sa.sa_sigaction = on_race_bus;
  sa.sa_flags = SA_SIGINFO | SA_NODEFER;
  sigaction(SIGBUS, &sa, nullptr);
  for (size_t i = 0; i < pages; i++) race_touch(i, false);
  printf("ready\n");
  while (!g_stop) {
    for (size_t i = 0; i < pages && !g_stop; i++) race_touch(i, store);
    usleep(200);  // two cores: leave the daemon and the other racers some
  }
  g_race_probing = 1;
  for (size_t i = 0; i <= pages; i++)
    for (int c = 0; c < kCodes; c++) {
      unsigned long n = __atomic_load_n(&g_race_bus[i][c], __ATOMIC_RELAXED);
      if (n) printf("sigbus %zu %d %lu\n", i, c, n);
    }
  for (size_t i = 0; i < pages; i++) {
    unsigned char v = 0;
    if (int code = guarded_touch(g_race_base + i * 4096, false, &v)) {
      printf("probe %zu %d\n", i, code);
    } else {
      printf("value %zu %d\n", i, v);
    }
  }
  printf("done\n");
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: dax_tool COMMAND FILE ... (see the source)\n");
    return 2;
  }
  std::string cmd = argv[1];
  const char* path = argv[2];
  struct sigaction sa{};
  sa.sa_sigaction = on_bus;
  sa.sa_flags = SA_SIGINFO | SA_NODEFER;
  sigaction(SIGBUS, &sa, nullptr);
  signal(SIGTERM, on_term);
  setvbuf(stdout, nullptr, _IONBF, 0);
  if (cmd == "store" && argc == 5) {
    uint64_t off = strtoull(argv[3], nullptr, 0);
    size_t n = strlen(argv[4]);
    int fd = open(path, O_RDWR);
    if (fd < 0) die(path);
    size_t span = (off + n + 4095) / 4096 * 4096;
    char* p = static_cast<char*>(mmap(nullptr, span, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0));
    if (p == MAP_FAILED) die("mmap");
    memcpy(p + off, argv[4], n);
    if (msync(p, span, MS_SYNC) != 0) die("msync");
    printf("%s\n", backing(p + off, path).c_str());
    munmap(p, span);
    close(fd);
    return 0;
  }
  if (cmd == "load" && argc == 5) {
    uint64_t off = strtoull(argv[3], nullptr, 0);
    size_t n = strtoull(argv[4], nullptr, 0);
    int fd = open(path, O_RDONLY);
    if (fd < 0) die(path);
    size_t span = (off + n + 4095) / 4096 * 4096;
    char* p = static_cast<char*>(mmap(nullptr, span, PROT_READ, MAP_SHARED, fd, 0));
    if (p == MAP_FAILED) die("mmap");
    fwrite(p + off, 1, n, stdout);
    munmap(p, span);
    close(fd);
    return 0;
  }
  if (cmd == "hold") return hold(path, argc > 3 && std::string(argv[3]) == "store", false, false);
  if (cmd == "watch") return hold(path, false, true, false);
  if (cmd == "sleep") return hold(path, false, false, true);
  if (cmd == "fork-store" && argc == 5) {
    uint64_t off = strtoull(argv[3], nullptr, 0);
    int fd;
    Mapping m = map_file(path, true, &fd);
    pid_t child = fork();
    if (child == 0) {
      memcpy(m.p + off, argv[4], strlen(argv[4]));
      _exit(0);
    }
    int status;
    waitpid(child, &status, 0);
    char buf[256] = {};
    size_t n = strlen(argv[4]) < sizeof buf ? strlen(argv[4]) : sizeof buf - 1;
    if (pread(fd, buf, n, static_cast<off_t>(off)) < 0) die("pread");
    printf("child %d read %s\n", WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status), buf);
    return 0;
  }
  if (cmd == "storm" && argc == 4) return storm(path, atof(argv[3]));
  if (cmd == "race" && argc == 5 && (std::string(argv[4]) == "load" || std::string(argv[4]) == "store"))
    return race(path, strtoull(argv[3], nullptr, 0), std::string(argv[4]) == "store");
  if (cmd == "poison-watch") return poison_watch(path, argc > 3 && std::string(argv[3]) == "still");
  if (cmd == "exec" && argc >= 4) {
    Mapping m = map_file(path, false);
    volatile char sink = m.p[0];
    (void)sink;
    printf("ready\n");
    execvp(argv[3], argv + 3);
    die(argv[3]);
  }
  if (cmd == "map-at" && argc == 4) {
    uint64_t off = strtoull(argv[3], nullptr, 0);
    int fd = open(path, O_RDWR);
    if (fd < 0) die(path);
    void* p = mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, static_cast<off_t>(off));
    if (p == MAP_FAILED) {
      printf("mmap %s\n", strerror(errno));
      return 0;
    }
    if (sigsetjmp(g_jump, 1) == 0) {
      g_jump_armed = 1;
      volatile char* c = static_cast<char*>(p);
      c[0] = static_cast<char>(c[0] + 1);
      g_jump_armed = 0;
      printf("ok\n");
    } else {
      printf("sigbus %d\n", g_bus_code);
    }
    return 0;
  }
  fprintf(stderr, "dax_tool: bad command or arguments\n");
  return 2;
}
