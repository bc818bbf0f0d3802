// End-to-end through a real FUSE mount of the daemon: POSIX calls from this process, mount
// refusals, DAX open modes, shutdown and recovery, and mount(8) through mount.fuse3.
#include <fcntl.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstring>

#include "daxcore/daxfs_ioctl.h"

#ifndef XFS_IOC_GOINGDOWN
#define XFS_IOC_GOINGDOWN _IOR('X', 125, uint32_t)
#endif
#include "fs/format.h"
#include "tests/support/mount.h"

using namespace daxfs::test;

TEST_CASE("a real mount serves POSIX calls and keeps them across a remount", "[fuse]") {
  Mount m;
  spit(m.path("a"), "hello world");
  REQUIRE(mkdir(m.path("d").c_str(), 0755) == 0);
  REQUIRE(symlink("../a", m.path("d/s").c_str()) == 0);
  REQUIRE(link(m.path("a").c_str(), m.path("d/h").c_str()) == 0);
  REQUIRE(mkfifo(m.path("fifo").c_str(), 0600) == 0);
  REQUIRE(renameat2(AT_FDCWD, m.path("a").c_str(), AT_FDCWD, m.path("d/h").c_str(), RENAME_NOREPLACE) == -1);
  CHECK(errno == EEXIST);
  spit(m.path("b"), "bee");
  REQUIRE(renameat2(AT_FDCWD, m.path("a").c_str(), AT_FDCWD, m.path("b").c_str(), RENAME_EXCHANGE) == 0);
  CHECK(slurp(m.path("a")) == "bee");
  REQUIRE(setxattr(m.path("b").c_str(), "user.k", "v", 1, 0) == 0);
  timespec times[2] = {{1000, 123456789}, {2000, 987654321}};
  REQUIRE(utimensat(AT_FDCWD, m.path("b").c_str(), times, 0) == 0);
  REQUIRE(chmod(m.path("b").c_str(), 0600) == 0);
  REQUIRE(chown(m.path("b").c_str(), 1234, 5678) == 0);

  int fd = open(m.path("sparse").c_str(), O_CREAT | O_RDWR, 0644);
  REQUIRE(fd >= 0);
  REQUIRE(pwrite(fd, "x", 1, 1 << 20) == 1);
  REQUIRE(fallocate(fd, 0, 0, 65536) == 0);
  CHECK(lseek(fd, 0, SEEK_DATA) == 1 << 20);
  CHECK(lseek(fd, 0, SEEK_HOLE) == 0);
  REQUIRE(fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 1 << 20, 4096) == 0);
  CHECK(lseek(fd, 0, SEEK_DATA) == -1);
  CHECK(errno == ENXIO);
  char big = 'y';
  CHECK(pwrite(fd, &big, 1, INT64_MAX) == -1);  // offset + count overflows: the kernel says EINVAL
  CHECK(errno == EINVAL);
  REQUIRE(pwrite(fd, &big, 1, INT64_MAX - 1) == 1);  // the last byte a file can hold
  struct stat big_st;
  REQUIRE(fstat(fd, &big_st) == 0);
  CHECK(big_st.st_size == INT64_MAX);
  REQUIRE(ftruncate(fd, 1 << 20) == 0);
  REQUIRE(fdatasync(fd) == 0);
  close(fd);

  struct statvfs sv;
  REQUIRE(statvfs(m.mnt().c_str(), &sv) == 0);
  CHECK(sv.f_bsize == 4096);
  CHECK(sv.f_namemax == 255);

  m.stop();
  m.start();
  CHECK(slurp(m.path("b")) == "hello world");
  CHECK(slurp(m.path("d/s")) == "bee");
  struct stat st;
  REQUIRE(stat(m.path("b").c_str(), &st) == 0);
  CHECK(st.st_mtim.tv_sec == 2000);
  CHECK(st.st_mtim.tv_nsec == 987654321);
  CHECK(st.st_atim.tv_nsec == 123456789);
  CHECK((st.st_mode & 07777) == 0600);
  CHECK(st.st_uid == 1234);
  CHECK(st.st_gid == 5678);
  char v[8] = {};
  CHECK(getxattr(m.path("b").c_str(), "user.k", v, sizeof v) == 1);
  REQUIRE(stat(m.path("fifo").c_str(), &st) == 0);
  CHECK(S_ISFIFO(st.st_mode));
}

TEST_CASE("unlink of an open file keeps its data until the last close", "[fuse]") {
  Mount m;
  spit(m.path("f"), std::string(100000, 'q'));
  int fd = open(m.path("f").c_str(), O_RDONLY);
  REQUIRE(fd >= 0);
  REQUIRE(unlink(m.path("f").c_str()) == 0);
  std::string buf(100000, '\0');
  CHECK(pread(fd, buf.data(), buf.size(), 0) == 100000);
  CHECK(buf == std::string(100000, 'q'));
  close(fd);
}

TEST_CASE("the mount shows the device as its source and plain fuse as its type", "[fuse]") {
  Mount m;
  std::ifstream in("/proc/self/mountinfo");
  std::string line, found;
  while (std::getline(in, line))
    if (line.find(" " + m.mnt() + " ") != std::string::npos) found = line;
  CHECK(found.find(" - fuse " + m.device() + " ") != std::string::npos);
  std::string out;
  CHECK(run(program("daxfsctl") + " list-errors " + m.mnt(), &out) == 0);  // resolves to the device
}

TEST_CASE("mount refuses what is not a usable daxfs with one clear line", "[fuse]") {
  TempDir dir;
  std::string mnt = dir.file("mnt"), dev = dir.file("dev");
  std::filesystem::create_directory(mnt);
  std::string out;
  REQUIRE(run("truncate -s 64M " + dev) == 0);
  CHECK(run(program("daxfs") + " " + dev + " " + mnt, &out) != 0);
  CHECK(out.find("not a daxfs filesystem") != std::string::npos);
  CHECK(std::count(out.begin(), out.end(), '\n') == 1);

  REQUIRE(run(program("mkfs.daxfs") + " " + dev, &out) == 0);
  {
    // A newer format version.
    int fd = open(dev.c_str(), O_RDWR);
    uint32_t v = daxfs::fs::kFormatVersion + 1;
    REQUIRE(pwrite(fd, &v, 4, offsetof(daxfs::fs::SuperBlock, version)) == 4);
    CHECK(run(program("daxfs") + " " + dev + " " + mnt, &out) != 0);
    CHECK(out.find("newer than this daxfs supports") != std::string::npos);
    v = daxfs::fs::kFormatVersion;
    REQUIRE(pwrite(fd, &v, 4, offsetof(daxfs::fs::SuperBlock, version)) == 4);
    close(fd);
  }
  REQUIRE(run("truncate -s 32M " + dev) == 0);
  CHECK(run(program("daxfs") + " " + dev + " " + mnt, &out) != 0);
  CHECK(out.find("smaller than its filesystem") != std::string::npos);
  CHECK(run(program("mkfs.daxfs") + " -f " + dev, &out) == 0);
  CHECK(run(program("mkfs.daxfs") + " " + dev, &out) != 0);
  CHECK(out.find("already contains a daxfs") != std::string::npos);
  CHECK(run(program("mkfs.daxfs") + " -s 1M " + dir.file("tiny"), &out) != 0);
  CHECK(out.find("too small") != std::string::npos);
  CHECK(run(program("daxfs") + " " + dir.file("missing") + " " + mnt, &out) != 0);
  CHECK(out.find("No such file or directory") != std::string::npos);
}

TEST_CASE("a device already mounted is refused", "[fuse]") {
  Mount m;
  TempDir other;
  std::filesystem::create_directory(other.file("mnt"));
  std::string out;
  CHECK(run(program("daxfs") + " " + m.device() + " " + other.file("mnt"), &out) != 0);
  CHECK(out.find("already mounted") != std::string::npos);
  CHECK(run(program("mkfs.daxfs") + " -f " + m.device(), &out) != 0);
}

TEST_CASE("DAX files bypass the page cache; dax=never and dax=inode use it as asked", "[fuse][dax]") {
  SECTION("dax=always (the default)") {
    Mount m;
    spit(m.path("f"), std::string(8192, 'a'));
    int fd = open(m.path("f").c_str(), O_RDWR);
    // direct_io, and still mappable shared (FUSE_DIRECT_IO_ALLOW_MMAP; tests/fuse/mmap_test.cc).
    void* p = mmap(nullptr, 8192, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    CHECK(p != MAP_FAILED);
    if (p != MAP_FAILED) munmap(p, 8192);
    daxfs_fileinfo info{};
    REQUIRE(ioctl(fd, DAXFS_IOC_FILEINFO, &info) == 0);
    CHECK(info.dax == 1);
    close(fd);
  }
  SECTION("dax=never") {
    Mount m("64M", "dax=never");
    spit(m.path("f"), std::string(8192, 'a'));
    int fd = open(m.path("f").c_str(), O_RDWR);
    void* p = mmap(nullptr, 8192, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    REQUIRE(p != MAP_FAILED);
    memcpy(p, "mapped", 6);
    REQUIRE(msync(p, 8192, MS_SYNC) == 0);
    munmap(p, 8192);
    char buf[6];
    REQUIRE(pread(fd, buf, 6, 0) == 6);
    CHECK(std::string(buf, 6) == "mapped");
    close(fd);
  }
  SECTION("dax=inode follows FS_XFLAG_DAX, inherited from the directory") {
    Mount m("64M", "dax=inode");
    REQUIRE(mkdir(m.path("d").c_str(), 0755) == 0);
    int dfd = open(m.path("d").c_str(), O_RDONLY);
    fsxattr x{};
    REQUIRE(ioctl(dfd, FS_IOC_FSGETXATTR, &x) == 0);
    x.fsx_xflags |= FS_XFLAG_DAX;
    REQUIRE(ioctl(dfd, FS_IOC_FSSETXATTR, &x) == 0);
    close(dfd);
    spit(m.path("d/dax"), "x");
    spit(m.path("plain"), "x");
    daxfs_fileinfo info{};
    int fd = open(m.path("d/dax").c_str(), O_RDONLY);
    REQUIRE(ioctl(fd, DAXFS_IOC_FILEINFO, &info) == 0);
    CHECK(info.dax_flag == 1);
    CHECK(info.dax == 1);
    close(fd);
    fd = open(m.path("plain").c_str(), O_RDONLY);
    REQUIRE(ioctl(fd, DAXFS_IOC_FILEINFO, &info) == 0);
    CHECK(info.dax == 0);
    close(fd);
  }
}

TEST_CASE("shutdown fails every later operation with EIO and the next mount recovers", "[fuse][shutdown]") {
  Mount m;
  spit(m.path("kept"), "durable");
  std::string out;
  REQUIRE(run(program("daxfsctl") + " shutdown " + m.mnt(), &out) == 0);
  int fd = open(m.path("kept").c_str(), O_RDONLY);
  CHECK(fd == -1);
  CHECK(errno == EIO);
  CHECK(mkdir(m.path("new").c_str(), 0755) == -1);
  CHECK(errno == EIO);
  struct statvfs sv;
  CHECK(statvfs(m.mnt().c_str(), &sv) == -1);
  m.stop();
  m.start();
  CHECK(slurp(m.path("kept")) == "durable");
  REQUIRE(run(program("daxfsctl") + " stat " + m.mnt() + " --json", &out) == 0);
  CHECK(out.find("\"shutdown\": false") != std::string::npos);
}

TEST_CASE("mount.fuse3 starts the daemon and remounts it in place", "[fuse][mount8]") {
  // mount(8) -t fuse.daxfs runs exactly this helper (with the system's PATH, where an installed
  // daxfs lives); here PATH points at the build.
  TempDir dir;
  std::string dev = dir.file("dev"), mnt = dir.file("mnt");
  std::filesystem::create_directory(mnt);
  std::string out;
  REQUIRE(run(program("mkfs.daxfs") + " -s 32M " + dev, &out) == 0);
  std::string helper = "PATH=" + build_dir() + "/fs:$PATH mount.fuse3 ";
  REQUIRE(run(helper + dev + " " + mnt + " -t daxfs -o dax=never", &out) == 0);
  INFO(out);
  CHECK(is_mounted(mnt));
  REQUIRE(run(helper + dev + " " + mnt + " -t daxfs -o remount,ro", &out) == 0);
  CHECK(mkdir((mnt + "/x").c_str(), 0755) == -1);
  CHECK(errno == EROFS);
  CHECK(run("umount " + mnt, &out) == 0);
  for (int i = 0; i < 100 && is_mounted(mnt); i++) usleep(10000);
  CHECK_FALSE(is_mounted(mnt));
  // The daemon exits after umount and releases the device.
  for (int i = 0; i < 200; i++) {
    if (run(program("mkfs.daxfs") + " -f " + dev, &out) == 0) break;
    usleep(10000);
  }
  CHECK(out.find("meta-data") != std::string::npos);
}

TEST_CASE("only root may shut the filesystem down", "[fuse][shutdown]") {
  Mount m("64M", "allow_other");
  spit(m.path("f"), "x");
  REQUIRE(chmod(m.dir().path().c_str(), 0755) == 0);  // mkdtemp made it 0700
  REQUIRE(chmod(m.mnt().c_str(), 0755) == 0);
  pid_t child = fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    if (setgid(65534) != 0 || setuid(65534) != 0) _exit(2);
    int fd = open(m.path("f").c_str(), O_RDONLY);
    uint32_t flags = 0;
    int rc = ioctl(fd, XFS_IOC_GOINGDOWN, &flags);
    _exit(rc == -1 && errno == EPERM ? 0 : 1);
  }
  int st;
  waitpid(child, &st, 0);
  CHECK(WIFEXITED(st));
  CHECK(WEXITSTATUS(st) == 0);
  CHECK(slurp(m.path("f")) == "x");  // still alive
}
