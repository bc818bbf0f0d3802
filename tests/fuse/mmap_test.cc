// Shared mmap of DAX files outside the DAX layer: the daemon negotiates FUSE_DIRECT_IO_ALLOW_MMAP
// (fs/fuse/init_flags.h), so the kernel maps direct-I/O files through its page cache. What such
// a mapping guarantees (docs/interface.md, "mmap"): stores reach the file by msync(2), munmap or
// writeback; read(2) of the file sees them at once (the kernel writes a mapped file's dirty pages
// back before a direct read); write(2) and truncate are seen by the mapping at once; a store
// past EOF is SIGBUS; MAP_PRIVATE never changes the file. Real mounts, real processes.
#include <fcntl.h>
#include <linux/falloc.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <csignal>
#include <cstring>
#include <string>

#include "tests/support/mount.h"

using namespace daxfs::test;

namespace {
constexpr size_t kLen = 16384;

char* map_file(int fd, int flags, int prot = PROT_READ | PROT_WRITE) {
  void* p = mmap(nullptr, kLen, prot, flags, fd, 0);
  REQUIRE(p != MAP_FAILED);
  return static_cast<char*>(p);
}

std::string pread_str(int fd, size_t n, off_t off) {
  std::string s(n, '\0');
  REQUIRE(pread(fd, s.data(), n, off) == static_cast<ssize_t>(n));
  return s;
}

void exit_with_signal(int sig) { _exit(128 + sig); }

// Runs `fn` in a child process; returns the signal that ended it (0: exited normally). SIGBUS and
// SIGSEGV are caught and turned into an exit status, so that a sanitizer's handler (which would
// exit instead of dying of the signal) does not hide which one it was.
template <typename Fn>
int child_signal(Fn fn) {
  pid_t pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    signal(SIGBUS, exit_with_signal);
    signal(SIGSEGV, exit_with_signal);
    fn();
    _exit(0);
  }
  int st = 0;
  REQUIRE(waitpid(pid, &st, 0) == pid);
  if (WIFSIGNALED(st)) return WTERMSIG(st);
  return WEXITSTATUS(st) > 128 ? WEXITSTATUS(st) - 128 : 0;
}
}  // namespace

TEST_CASE("a shared mapping of a DAX file works and is coherent with read and write", "[fuse][mmap]") {
  for (const char* opts : {"", "dax=never"}) {
    CAPTURE(opts);
    Mount m("64M", opts);
    spit(m.path("f"), std::string(kLen, 'a'));
    int fd = open(m.path("f").c_str(), O_RDWR);
    REQUIRE(fd >= 0);
    char* p = map_file(fd, MAP_SHARED);
    CHECK(std::string(p, 4) == "aaaa");
    memcpy(p, "HELLO", 5);
    CHECK(pread_str(fd, 5, 0) == "HELLO");  // read(2) sees the store before any msync
    REQUIRE(msync(p, kLen, MS_SYNC) == 0);
    REQUIRE(pwrite(fd, "WORLD", 5, 8192) == 5);
    CHECK(std::string(p + 8192, 5) == "WORLD");  // the mapping sees write(2) at once
    // Another process's mapping of the same file sees the same bytes.
    CHECK(child_signal([&] {
            int cfd = open(m.path("f").c_str(), O_RDWR);
            char* q = static_cast<char*>(mmap(nullptr, kLen, PROT_READ | PROT_WRITE, MAP_SHARED, cfd, 0));
            if (q == MAP_FAILED || memcmp(q, "HELLO", 5) != 0 || memcmp(q + 8192, "WORLD", 5) != 0) _exit(1);
            memcpy(q + 100, "child", 5);
            msync(q, kLen, MS_SYNC);
            _exit(0);
          }) == 0);
    CHECK(std::string(p + 100, 5) == "child");
    munmap(p, kLen);
    close(fd);
    // Durable: after an unmount and a new mount, the stores are in the file.
    m.stop();
    m.start(opts);
    fd = open(m.path("f").c_str(), O_RDONLY);
    REQUIRE(fd >= 0);
    CHECK(pread_str(fd, 5, 0) == "HELLO");
    CHECK(pread_str(fd, 5, 100) == "child");
    CHECK(pread_str(fd, 5, 8192) == "WORLD");
    close(fd);
  }
}

TEST_CASE("a shared mapping follows Linux's rules for EOF and MAP_PRIVATE", "[fuse][mmap]") {
  Mount m;
  spit(m.path("f"), std::string(kLen, 'a'));
  int fd = open(m.path("f").c_str(), O_RDWR);
  REQUIRE(fd >= 0);
  SECTION("past EOF after a truncate: SIGBUS, within EOF: the truncated bytes read as zeros") {
    char* p = map_file(fd, MAP_SHARED);
    REQUIRE(ftruncate(fd, 4096 + 10) == 0);
    CHECK(child_signal([&] { (void)*static_cast<volatile char*>(p + 3 * 4096); }) == SIGBUS);
    CHECK(child_signal([&] { *static_cast<volatile char*>(p + 3 * 4096) = 1; }) == SIGBUS);
    CHECK(p[4096 + 9] == 'a');
    CHECK(p[4096 + 10] == 0);  // the EOF page's tail
    munmap(p, kLen);
  }
  SECTION("a punched hole reads as zeros through the mapping at once") {
    char* p = map_file(fd, MAP_SHARED);
    CHECK(p[4096] == 'a');
    REQUIRE(fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 4096, 4096) == 0);
    CHECK(p[4096] == 0);
    CHECK(p[8191] == 0);
    CHECK(p[8192] == 'a');
    munmap(p, kLen);
  }
  SECTION("MAP_PRIVATE stores stay in the process") {
    char* p = map_file(fd, MAP_PRIVATE);
    memcpy(p, "private", 7);
    REQUIRE(msync(p, kLen, MS_SYNC) == 0);
    CHECK(pread_str(fd, 7, 0) == "aaaaaaa");
    munmap(p, kLen);
  }
  SECTION("a read-only open maps read-only only") {
    int ro = open(m.path("f").c_str(), O_RDONLY);
    REQUIRE(ro >= 0);
    CHECK(mmap(nullptr, kLen, PROT_READ | PROT_WRITE, MAP_SHARED, ro, 0) == MAP_FAILED);
    CHECK(errno == EACCES);
    void* p = mmap(nullptr, kLen, PROT_READ, MAP_SHARED, ro, 0);
    CHECK(p != MAP_FAILED);
    if (p != MAP_FAILED) munmap(p, kLen);
    close(ro);
  }
  SECTION("MAP_SYNC is refused (the kernel's mapping is not DAX)") {
    void* p = mmap(nullptr, kLen, PROT_READ | PROT_WRITE, MAP_SHARED_VALIDATE | MAP_SYNC, fd, 0);
    CHECK(p == MAP_FAILED);
    CHECK(errno == EOPNOTSUPP);
  }
  close(fd);
}
