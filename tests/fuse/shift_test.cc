// Collapse and insert range on a real mount: the ioctls DAXFS_IOC_COLLAPSE_RANGE and
// DAXFS_IOC_INSERT_RANGE (the FUSE kernel never forwards those fallocate modes) and daxfsctl
// collapse/insert, checked through the kernel's view of the file; the access rules of the fd
// fallocate(2) would be called on (open for writing, write permission), for root and nobody.
#include <fcntl.h>
#include <grp.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <thread>

#include "daxcore/daxfs_ioctl.h"
#include "tests/support/mount.h"

using namespace daxfs::test;

namespace {
constexpr uint64_t kB = 4096;

struct Fd {
  int fd;
  Fd(const std::string& path, int flags) : fd(open(path.c_str(), flags | O_CLOEXEC)) { REQUIRE(fd >= 0); }
  ~Fd() { close(fd); }
};

std::string pattern(size_t n, unsigned seed) {
  std::string s(n, '\0');
  for (size_t i = 0; i < n; i++) s[i] = static_cast<char>('a' + (i / 512 + seed) % 26);
  return s;
}

int shift(int fd, unsigned long request, uint64_t offset, uint64_t length) {
  daxfs_range r{offset, length, {}};
  return ioctl(fd, request, &r) == 0 ? 0 : errno;
}

// Reads `path` until it holds `want` (a page-cache mount drops the file's pages from a worker
// thread after the ioctl's reply), for up to 5 s.
bool reads_back(const std::string& path, const std::string& want) {
  for (int i = 0; i < 500; i++) {
    if (slurp(path) == want) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return false;
}

// Runs `body` in a child as nobody; its exit status.
template <typename F>
int as_nobody(F&& body) {
  pid_t child = fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    if (setgroups(0, nullptr) != 0 || setgid(65534) != 0 || setuid(65534) != 0) _exit(99);
    _exit(body());
  }
  int st;
  waitpid(child, &st, 0);
  return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}
}  // namespace

TEST_CASE("the collapse and insert ioctls shift a file on a real mount", "[fuse][shift]") {
  for (const char* dax : {"dax=always", "dax=never"}) {
    DYNAMIC_SECTION(dax) {
      Mount m("64M", dax);
      std::string data = pattern(10 * kB + 100, 0);
      spit(m.path("f"), data);
      REQUIRE(slurp(m.path("f")) == data);  // in the page cache under dax=never
      {
        Fd fd(m.path("f"), O_RDWR);
        REQUIRE(shift(fd.fd, DAXFS_IOC_COLLAPSE_RANGE, 2 * kB, 3 * kB) == 0);
        data.erase(2 * kB, 3 * kB);
        struct stat st;
        REQUIRE(fstat(fd.fd, &st) == 0);
        CHECK(st.st_size == static_cast<off_t>(data.size()));  // attributes are dropped at once
        CHECK(reads_back(m.path("f"), data));
        REQUIRE(shift(fd.fd, DAXFS_IOC_INSERT_RANGE, kB, 2 * kB) == 0);
        data.insert(kB, std::string(2 * kB, '\0'));
        REQUIRE(fstat(fd.fd, &st) == 0);
        CHECK(st.st_size == static_cast<off_t>(data.size()));
        CHECK(reads_back(m.path("f"), data));
        // fallocate(2)'s errors: a misaligned offset or length, a length of 0, a collapse
        // reaching EOF, an insert at EOF; reserved fields must be zero.
        for (unsigned long req : {DAXFS_IOC_COLLAPSE_RANGE, DAXFS_IOC_INSERT_RANGE}) {
          CHECK(shift(fd.fd, req, 100, kB) == EINVAL);
          CHECK(shift(fd.fd, req, kB, 100) == EINVAL);
          CHECK(shift(fd.fd, req, kB, 0) == EINVAL);
          daxfs_range r{0, kB, {}};
          r.reserved[5] = 1;
          CHECK(ioctl(fd.fd, req, &r) == -1);
          CHECK(errno == EINVAL);
        }
        uint64_t eof_block = data.size() / kB * kB;
        CHECK(shift(fd.fd, DAXFS_IOC_COLLAPSE_RANGE, kB, eof_block) == EINVAL);
        CHECK(shift(fd.fd, DAXFS_IOC_INSERT_RANGE, eof_block + kB, kB) == EINVAL);
        CHECK(shift(fd.fd, DAXFS_IOC_INSERT_RANGE, 0, (1ULL << 63) - kB) == EFBIG);  // past 2^63 - 1
      }
      CHECK(slurp(m.path("f")) == data);
      m.stop();
      m.start(dax);
      CHECK(slurp(m.path("f")) == data);
    }
  }
}

TEST_CASE("collapse and insert need an fd open for writing and write permission", "[fuse][shift][security]") {
  Mount m("64M", "allow_other");
  REQUIRE(chmod(m.dir().path().c_str(), 0755) == 0);
  REQUIRE(chmod(m.mnt().c_str(), 0777) == 0);
  const std::string data = pattern(8 * kB, 1);
  for (const char* name : {"a", "b", "suid"}) spit(m.path(name), data);
  REQUIRE(chmod(m.path("a").c_str(), 0644) == 0);
  REQUIRE(chmod(m.path("b").c_str(), 0666) == 0);
  REQUIRE(chmod(m.path("suid").c_str(), 04777) == 0);
  {
    // vfs_fallocate(): the fd must be open for writing (EBADF), a directory's never is.
    Fd ro(m.path("a"), O_RDONLY);
    CHECK(shift(ro.fd, DAXFS_IOC_COLLAPSE_RANGE, 0, kB) == EBADF);
    CHECK(shift(ro.fd, DAXFS_IOC_INSERT_RANGE, 0, kB) == EBADF);
    CHECK(shift(ro.fd, DAXFS_IOC_INSERT_RANGE, 0, 0) == EINVAL);  // the arguments are checked first
    Fd dir(m.mnt(), O_RDONLY | O_DIRECTORY);
    CHECK(shift(dir.fd, DAXFS_IOC_COLLAPSE_RANGE, 0, kB) == EBADF);
  }
  int rc = as_nobody([&] {
    // Not writable by nobody: it cannot open a for writing, and a read-only fd is refused.
    int fd = open(m.path("a").c_str(), O_RDONLY);
    if (fd < 0 || shift(fd, DAXFS_IOC_COLLAPSE_RANGE, 0, kB) != EBADF) return 1;
    close(fd);
    // b is: nobody may collapse and insert through a writable fd.
    fd = open(m.path("b").c_str(), O_RDWR);
    if (fd < 0 || shift(fd, DAXFS_IOC_COLLAPSE_RANGE, 0, kB) != 0) return 2;
    if (shift(fd, DAXFS_IOC_INSERT_RANGE, 0, kB) != 0) return 3;
    close(fd);
    // Without CAP_FSETID, a shift strips setuid as a write does.
    fd = open(m.path("suid").c_str(), O_RDWR);
    if (fd < 0 || shift(fd, DAXFS_IOC_INSERT_RANGE, kB, kB) != 0) return 5;
    close(fd);
    return 0;
  });
  CHECK(rc == 0);
  std::string b = data;
  b.erase(0, kB);
  b.insert(0, std::string(kB, '\0'));
  CHECK(slurp(m.path("b")) == b);
  CHECK(slurp(m.path("a")) == data);
  struct stat st;
  REQUIRE(stat(m.path("suid").c_str(), &st) == 0);
  CHECK((st.st_mode & 07777) == 0777);
  CHECK(st.st_size == static_cast<off_t>(data.size() + kB));
  // Write permission taken away while nobody holds a writable fd: the daemon checks it at the
  // call (as for unshare), so the fd is refused (EACCES) and nothing changes.
  int sync_pipe[2];
  REQUIRE(pipe(sync_pipe) == 0);
  int go[2];
  REQUIRE(pipe(go) == 0);
  pid_t child = fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    if (setgroups(0, nullptr) != 0 || setgid(65534) != 0 || setuid(65534) != 0) _exit(99);
    int fd = open(m.path("b").c_str(), O_RDWR);
    char c = fd >= 0 ? 'o' : 'x';
    if (write(sync_pipe[1], &c, 1) != 1) _exit(98);
    if (read(go[0], &c, 1) != 1) _exit(97);
    _exit(shift(fd, DAXFS_IOC_COLLAPSE_RANGE, 0, kB) == EACCES ? 0 : 1);
  }
  char c = 0;
  REQUIRE(read(sync_pipe[0], &c, 1) == 1);
  CHECK(c == 'o');
  REQUIRE(chmod(m.path("b").c_str(), 0644) == 0);
  REQUIRE(write(go[1], "g", 1) == 1);
  int status = 0;
  waitpid(child, &status, 0);
  CHECK(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
  for (int p : {sync_pipe[0], sync_pipe[1], go[0], go[1]}) close(p);
  CHECK(slurp(m.path("b")) == b);
}

TEST_CASE("daxfsctl collapse and insert", "[fuse][shift][cli]") {
  Mount m;
  std::string ctl = program("daxfsctl");
  std::string data = pattern(16 * kB + 10, 2);
  spit(m.path("f"), data);
  std::string out;
  REQUIRE(run(ctl + " collapse " + m.path("f") + " --offset 4K --length 8K", &out) == 0);
  CHECK(out.empty());
  data.erase(kB, 2 * kB);  // 4K and 8K: one block and two
  CHECK(slurp(m.path("f")) == data);
  REQUIRE(run(ctl + " insert " + m.path("f") + " --offset 0 --length 4096", &out) == 0);
  data.insert(0, std::string(kB, '\0'));
  CHECK(slurp(m.path("f")) == data);
  // Errors: one line, exit 1 (2 for a usage error), and the file unchanged.
  CHECK(run(ctl + " collapse " + m.path("f") + " --offset 100 --length 4096", &out) == 1);
  CHECK(out == "daxfsctl: collapse: " + m.path("f") +
                   ": Invalid argument (offset and length must be multiples of 4096, and the range must end "
                   "before EOF)\n");
  CHECK(run(ctl + " insert " + m.path("f") + " --offset 1M --length 4096", &out) == 1);
  CHECK(out.find("daxfsctl: insert: " + m.path("f") + ": Invalid argument") == 0);
  CHECK(run(ctl + " insert " + m.path("f") + " --offset 0", &out) == 2);
  CHECK(out.find("--length") != std::string::npos);
  CHECK(run(ctl + " collapse " + m.path("f") + " --offset x --length 4096", &out) == 1);
  CHECK(out.find("invalid --offset 'x'") != std::string::npos);
  CHECK(run(ctl + " collapse /dev/null --offset 0 --length 4096", &out) == 1);
  CHECK(out.find("not on a daxfs mount") != std::string::npos);
  CHECK(run(ctl + " insert " + m.mnt() + " --offset 0 --length 4096", &out) == 1);
  CHECK(out.find("Is a directory") != std::string::npos);
  CHECK(slurp(m.path("f")) == data);
}
