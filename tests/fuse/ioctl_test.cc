// The daxfs ioctls against the rules Linux applies to their models (FICLONERANGE,
// FIDEDUPERANGE, fallocate, FS_IOC_FIEMAP, GETFSMAP, XFS_IOC_GOINGDOWN): the fd's open mode,
// reserved fields, flags, who may call. Issued on a real mount by this process and by an
// unprivileged child.
#include <fcntl.h>
#include <grp.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <memory>

#include "daxcore/daxfs_ioctl.h"
#include "tests/support/mount.h"

#ifndef XFS_IOC_GOINGDOWN
#define XFS_IOC_GOINGDOWN _IOR('X', 125, uint32_t)
#endif

using namespace daxfs::test;

namespace {
struct Fd {
  int fd;
  Fd(const std::string& path, int flags) : fd(open(path.c_str(), flags | O_CLOEXEC, 0644)) { REQUIRE(fd >= 0); }
  ~Fd() { close(fd); }
};

daxfs_clone_range clone_args(const std::string& src_path, uint64_t length) {
  Fd src(src_path, O_RDONLY);
  struct stat st;
  REQUIRE(fstat(src.fd, &st) == 0);
  long generation = 0;
  REQUIRE(ioctl(src.fd, FS_IOC_GETVERSION, &generation) == 0);
  daxfs_clone_range a{};
  a.src_ino = st.st_ino;
  a.src_generation = static_cast<uint64_t>(generation);
  a.src_length = length;
  return a;
}

// errno of ioctl(fd, cmd, arg), 0 on success.
template <typename T>
int ioctl_errno(int fd, unsigned long cmd, T* arg) {
  return ioctl(fd, cmd, arg) == 0 ? 0 : errno;
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

TEST_CASE("a clone needs a destination fd open for writing and not appending", "[fuse][ioctl][security]") {
  Mount m;
  spit(m.path("src"), std::string(8192, 'S'));
  spit(m.path("dst"), std::string(8192, 'D'));
  auto args = clone_args(m.path("src"), 0);
  {
    Fd ro(m.path("dst"), O_RDONLY);
    CHECK(ioctl_errno(ro.fd, DAXFS_IOC_CLONE_RANGE, &args) == EBADF);
  }
  {
    Fd app(m.path("dst"), O_WRONLY | O_APPEND);
    CHECK(ioctl_errno(app.fd, DAXFS_IOC_CLONE_RANGE, &args) == EBADF);
  }
  CHECK(slurp(m.path("dst")) == std::string(8192, 'D'));  // nothing was written
  {
    Fd dir(m.mnt(), O_RDONLY);
    CHECK(ioctl_errno(dir.fd, DAXFS_IOC_CLONE_RANGE, &args) == EISDIR);
  }
  {
    Fd rw(m.path("dst"), O_RDWR);
    CHECK(ioctl_errno(rw.fd, DAXFS_IOC_CLONE_RANGE, &args) == 0);
    CHECK(args.bytes == 8192);
  }
  CHECK(slurp(m.path("dst")) == std::string(8192, 'S'));
}

TEST_CASE("reserved fields of the daxfs ioctls must be zero", "[fuse][ioctl]") {
  Mount m;
  spit(m.path("src"), std::string(8192, 'S'));
  spit(m.path("dst"), std::string(8192, 'D'));
  Fd dst(m.path("dst"), O_RDWR);
  for (size_t i = 0; i < 9; i++) {
    auto args = clone_args(m.path("src"), 0);
    args.reserved[i] = 1;
    CHECK(ioctl_errno(dst.fd, DAXFS_IOC_CLONE_RANGE, &args) == EINVAL);
    CHECK(ioctl_errno(dst.fd, DAXFS_IOC_DEDUPE_RANGE, &args) == EINVAL);
  }
  CHECK(slurp(m.path("dst")) == std::string(8192, 'D'));
  for (size_t i = 0; i < 6; i++) {
    daxfs_range r{0, 8192, {}};
    r.reserved[i] = 7;
    CHECK(ioctl_errno(dst.fd, DAXFS_IOC_UNSHARE_RANGE, &r) == EINVAL);
  }
  auto fm = std::make_unique<daxfs_fiemap>();
  *fm = {};
  fm->reserved[1] = 1;
  CHECK(ioctl_errno(dst.fd, DAXFS_IOC_FIEMAP, fm.get()) == EINVAL);
  *fm = {};
  CHECK(ioctl_errno(dst.fd, DAXFS_IOC_FIEMAP, fm.get()) == 0);
  CHECK(fm->count == 1);
}

TEST_CASE("unshare needs an fd open for writing; dedupe follows allow_file_dedupe", "[fuse][ioctl][security]") {
  Mount m("64M", "allow_other");
  REQUIRE(chmod(m.dir().path().c_str(), 0755) == 0);
  REQUIRE(chmod(m.mnt().c_str(), 0777) == 0);
  std::string data(8192, 'Q');
  spit(m.path("a"), data);
  spit(m.path("b"), data);
  REQUIRE(chmod(m.path("a").c_str(), 0644) == 0);
  REQUIRE(chmod(m.path("b").c_str(), 0644) == 0);
  daxfs_range r{0, 8192, {}};
  {
    Fd ro(m.path("b"), O_RDONLY);
    CHECK(ioctl_errno(ro.fd, DAXFS_IOC_UNSHARE_RANGE, &r) == EBADF);
    // Root may dedupe into a file it opened read-only (CAP_SYS_ADMIN in allow_file_dedupe).
    auto args = clone_args(m.path("a"), 8192);
    CHECK(ioctl_errno(ro.fd, DAXFS_IOC_DEDUPE_RANGE, &args) == 0);
    CHECK(args.status == 0);
    CHECK(args.bytes == 8192);
  }
  {
    Fd rw(m.path("b"), O_RDWR);
    CHECK(ioctl_errno(rw.fd, DAXFS_IOC_UNSHARE_RANGE, &r) == 0);
  }
  // nobody neither owns b nor may write it: dedupe through a read-only fd is EACCES/EPERM, and
  // nothing changes. nobody's own file: a read-only fd may dedupe into it.
  spit(m.path("mine"), data);
  REQUIRE(chown(m.path("mine").c_str(), 65534, 65534) == 0);
  auto into_b = clone_args(m.path("a"), 8192);
  auto into_mine = clone_args(m.path("a"), 8192);
  int rc = as_nobody([&] {
    int fd = open(m.path("b").c_str(), O_RDONLY);
    if (fd < 0 || ioctl(fd, DAXFS_IOC_DEDUPE_RANGE, &into_b) == 0) return 1;
    close(fd);
    fd = open(m.path("mine").c_str(), O_RDONLY);
    if (fd < 0 || ioctl(fd, DAXFS_IOC_DEDUPE_RANGE, &into_mine) != 0 || into_mine.status != 0) return 2;
    if (ioctl(fd, DAXFS_IOC_UNSHARE_RANGE, &r) == 0 || errno != EBADF) return 3;
    close(fd);
    return 0;
  });
  CHECK(rc == 0);
}

TEST_CASE("fsmap and FSSETXATTR are refused to callers XFS refuses", "[fuse][ioctl][security]") {
  Mount m("64M", "allow_other");
  REQUIRE(chmod(m.dir().path().c_str(), 0755) == 0);
  REQUIRE(chmod(m.mnt().c_str(), 0777) == 0);
  spit(m.path("f"), "x");
  REQUIRE(chmod(m.path("f").c_str(), 0666) == 0);
  int rc = as_nobody([&] {
    int fd = open(m.mnt().c_str(), O_RDONLY);
    if (fd < 0) return 1;
    auto q = std::make_unique<daxfs_fsmap>();
    *q = {};
    q->end = UINT64_MAX;
    if (ioctl(fd, DAXFS_IOC_FSMAP, q.get()) == 0 || errno != EPERM) return 2;  // CAP_SYS_ADMIN
    close(fd);
    fd = open(m.path("f").c_str(), O_RDWR);
    fsxattr x{};
    x.fsx_xflags = FS_XFLAG_DAX;
    if (ioctl(fd, FS_IOC_FSSETXATTR, &x) == 0 || errno != EPERM) return 3;  // not the owner
    return 0;
  });
  CHECK(rc == 0);
}

TEST_CASE("XFS_IOC_GOINGDOWN takes flags 0, 1 and 2 only", "[fuse][ioctl][shutdown]") {
  Mount m;
  spit(m.path("f"), "alive");
  for (uint32_t bad : {3u, 4u, 8u, 0x100u, 0x80000000u, 0xffffffffu}) {
    Fd fd(m.path("f"), O_RDONLY);
    uint32_t flags = bad;
    CHECK(ioctl_errno(fd.fd, XFS_IOC_GOINGDOWN, &flags) == EINVAL);
  }
  CHECK(slurp(m.path("f")) == "alive");
  uint32_t flags = 2;  // XFS_FSOP_GOING_FLAGS_NOLOGFLUSH
  {
    Fd fd(m.mnt(), O_RDONLY);
    CHECK(ioctl_errno(fd.fd, XFS_IOC_GOINGDOWN, &flags) == 0);
  }
  CHECK(open(m.path("f").c_str(), O_RDONLY) == -1);
  CHECK(errno == EIO);
}

TEST_CASE("daxfsctl stat reports a shut-down filesystem", "[fuse][shutdown]") {
  Mount m;
  std::string out;
  REQUIRE(run(program("daxfsctl") + " shutdown " + m.mnt(), &out) == 0);
  REQUIRE(run(program("daxfsctl") + " stat " + m.mnt() + " --json", &out) == 0);
  INFO(out);
  CHECK(out.find("\"shutdown\": true") != std::string::npos);
  REQUIRE(run(program("daxfsctl") + " stat " + m.mnt(), &out) == 0);
  CHECK(out.find("shutdown: true") != std::string::npos);
}

TEST_CASE("a write into poison fails unless it replaces whole blocks", "[fuse][poison]") {
  for (const char* dax : {"dax=always", "dax=never"}) {
    DYNAMIC_SECTION(dax) {
      Mount m("64M", dax);
      std::string ctl = program("daxfsctl");
      spit(m.path("f"), std::string(16384, 'o'));
      std::string out;
      REQUIRE(run(ctl + " inject-error " + m.mnt() + " --file " + m.path("f") + " --file-offset 4096", &out) == 0);
      int fd = open(m.path("f").c_str(), O_RDWR | O_DIRECT);
      if (fd < 0) fd = open(m.path("f").c_str(), O_RDWR);
      REQUIRE(fd >= 0);
      char buf[4096];
      // A partial write into the poisoned block: EIO, and the block still reads EIO.
      CHECK(pwrite(fd, "partial", 7, 4100) == -1);
      CHECK(errno == EIO);
      CHECK(pwrite(fd, std::string(4096, 'p').data(), 4096, 6144) == -1);  // its second half
      CHECK(errno == EIO);
      CHECK(pread(fd, buf, 4096, 4096) == -1);
      CHECK(errno == EIO);
      // The block before it was not touched by the refused writes.
      REQUIRE(pread(fd, buf, 4096, 0) == 4096);
      CHECK(std::string(buf, 4096) == std::string(4096, 'o'));
      // A write that covers the poisoned block whole (and its neighbours in part) clears the
      // poison, as Linux's recovery write does page by page, and reads back.
      std::string fresh(8192, 'N');
      CHECK(pwrite(fd, fresh.data(), 8192, 2048) == 8192);
      REQUIRE(pread(fd, buf, 4096, 4096) == 4096);
      CHECK(std::string(buf, 4096) == std::string(4096, 'N'));
      close(fd);
      REQUIRE(run(ctl + " list-errors " + m.mnt(), &out) == 0);
      CHECK(out.find("no badblocks") != std::string::npos);
      // Durable: the same bytes after a remount.
      m.stop();
      m.start(dax);
      CHECK(slurp(m.path("f")) == std::string(2048, 'o') + fresh + std::string(6144, 'o'));
    }
  }
}

TEST_CASE("daxfsctl refuses empty option values and files outside daxfs", "[fuse][cli]") {
  Mount m;
  std::string ctl = program("daxfsctl");
  spit(m.path("f"), std::string(8192, 'x'));
  std::string out;
  CHECK(run(ctl + " unshare /dev/null", &out) == 1);
  CHECK(out.find("not on a daxfs mount") != std::string::npos);
  CHECK(run(ctl + " fiemap /dev/null", &out) == 1);
  CHECK(out.find("not on a daxfs mount") != std::string::npos);
  CHECK(run(ctl + " stat /tmp", &out) == 1);
  CHECK(out.find("not on a daxfs mount") != std::string::npos);
  for (const char* cmd : {" unshare F --offset ''", " unshare F --length ''", " fiemap ''",
                          " reflink F G --src-offset ''", " dedupe F G --length ''",
                          " inject-error M --offset ''", " fsmap M --offset ''"}) {
    std::string c = cmd;
    for (size_t p; (p = c.find(" F")) != std::string::npos;) c.replace(p, 2, " " + m.path("f"));
    for (size_t p; (p = c.find(" G")) != std::string::npos;) c.replace(p, 2, " " + m.path("g"));
    for (size_t p; (p = c.find(" M")) != std::string::npos;) c.replace(p, 2, " " + m.mnt());
    INFO(c);
    CHECK(run(ctl + c, &out) == 2);
    CHECK(out.find("an empty value") != std::string::npos);
  }
  CHECK_FALSE(std::filesystem::exists(m.path("g")));
}
