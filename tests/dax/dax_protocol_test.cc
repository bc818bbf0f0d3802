// The DAX protocol as an adversary speaks it: raw ioctls and channel requests from a process
// that is not the client library, checking that the daemon refuses what it must (unsealed or
// short channels, forged tokens, bad ranges, files not granted, stores through a read-only
// grant) and survives. Also: a planted registry is not believed, an exec'd image is not waited
// for. Real mounts; the protocol work runs in forked children that exit before the unmount.
#include <fcntl.h>
#include <linux/futex.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <cstring>
#include <string>

#include "daxcore/protocol.h"
#include "daxcore/registry.h"
#include "tests/support/mount.h"
#include "tests/support/proc.h"

using namespace daxfs::test;

namespace {

// Runs `fn` in a child; REQUIREs it to exit 0 (fn returns false or crashes: failure). The
// child's checks print what failed.
template <typename Fn>
void in_child(Fn fn) {
  pid_t pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) _exit(fn() ? 0 : 1);
  int st;
  REQUIRE(waitpid(pid, &st, 0) == pid);
  CHECK(WIFEXITED(st));
  CHECK(WEXITSTATUS(st) == 0);
}

#define EXPECT(cond)                                                         \
  do {                                                                       \
    if (!(cond)) {                                                           \
      fprintf(stderr, "%s:%d: expected %s\n", __FILE__, __LINE__, #cond);    \
      return false;                                                          \
    }                                                                        \
  } while (0)

int memfd(size_t size, unsigned seals) {
  int fd = static_cast<int>(syscall(SYS_memfd_create, "probe", MFD_CLOEXEC | MFD_ALLOW_SEALING));
  if (fd < 0 || ftruncate(fd, static_cast<off_t>(size)) != 0) return -1;
  if (seals && fcntl(fd, F_ADD_SEALS, seals) != 0) return -1;
  return fd;
}

int connect_with(int file_fd, int chan_fd, daxfs_dax_connect* out) {
  memset(out, 0, sizeof *out);
  out->abi = DAXFS_DAX_ABI;
  out->channel_fd = chan_fd;
  return ioctl(file_fd, DAXFS_IOC_DAX_CONNECT, out) == 0 ? 0 : errno;
}

// Sends one request through slot 0 and waits (up to 2 s) for the reply.
bool send(daxfs_dax_channel* chan, daxfs_dax_request req, daxfs_dax_request* reply) {
  daxfs_dax_request& slot = chan->requests[0];
  uint32_t st = slot.state;
  if (st != DAXFS_REQ_FREE && st != DAXFS_REQ_REPLIED) return false;
  req.state = DAXFS_REQ_CLAIMED;
  memcpy(&slot, &req, sizeof req);
  __atomic_store_n(&slot.state, DAXFS_REQ_SUBMITTED, __ATOMIC_RELEASE);
  __atomic_fetch_add(&chan->doorbell, 1, __ATOMIC_RELEASE);
  syscall(SYS_futex, &chan->doorbell, FUTEX_WAKE, INT32_MAX, nullptr, nullptr, 0);
  for (int i = 0; i < 200 && __atomic_load_n(&slot.state, __ATOMIC_ACQUIRE) != DAXFS_REQ_REPLIED; i++)
    usleep(10000);
  memcpy(reply, &slot, sizeof *reply);
  return reply->state == DAXFS_REQ_REPLIED;
}

}  // namespace

TEST_CASE("the daemon refuses channels it could fault on and requests it must not serve", "[dax][fuse]") {
  Mount m;
  std::string f = m.path("f"), other = m.path("other");
  spit(f, std::string(16384, 'f'));
  spit(other, std::string(4096, 'o'));
  in_child([&] {
    int fd = open(f.c_str(), O_RDONLY);
    EXPECT(fd >= 0);
    daxfs_dax_connect c;
    // A channel the client could shrink (no seal), and one too small: refused.
    EXPECT(connect_with(fd, memfd(sizeof(daxfs_dax_channel), 0), &c) == EBADF);
    EXPECT(connect_with(fd, memfd(4096, F_SEAL_SHRINK), &c) == EBADF);
    EXPECT(connect_with(fd, 999, &c) == EBADF);  // not an fd at all
    int chan_fd = memfd(sizeof(daxfs_dax_channel), F_SEAL_SHRINK | F_SEAL_GROW);
    // The lock that says "this image lives" (without it the daemon ends the session at once).
    int lock_fd = open(("/proc/self/fd/" + std::to_string(chan_fd)).c_str(), O_RDWR | O_CLOEXEC);
    struct flock lk{};
    lk.l_type = F_WRLCK;
    EXPECT(lock_fd >= 0 && fcntl(lock_fd, F_OFD_SETLK, &lk) == 0);
    EXPECT(connect_with(fd, chan_fd, &c) == 0);
    EXPECT(ftruncate(chan_fd, 0) != 0);  // the seal holds: the daemon's mapping cannot shrink
    auto* chan = static_cast<daxfs_dax_channel*>(
        mmap(nullptr, sizeof(daxfs_dax_channel), PROT_READ | PROT_WRITE, MAP_SHARED, chan_fd, 0));
    EXPECT(chan != MAP_FAILED);
    EXPECT(chan->magic == DAXFS_DAX_MAGIC);
    daxfs_dax_grant g{};
    EXPECT(ioctl(fd, DAXFS_IOC_DAX_GRANT, &g) == 0);
    EXPECT(g.access == DAXFS_DAX_ACCESS_READ);  // a read-only open
    daxfs_dax_request req{}, reply{};
    req.op = DAXFS_OP_FAULT, req.token = c.token, req.ino = g.ino, req.offset = 0, req.length = 4096;
    req.prot = PROT_READ;
    EXPECT(send(chan, req, &reply) && reply.error == 0 && reply.kind == DAXFS_MAP_DEVICE);
    EXPECT(reply.r_prot == PROT_READ);
    daxfs_dax_request bad = req;
    bad.token ^= 1;
    EXPECT(send(chan, bad, &reply) && reply.error == EPERM);
    bad = req, bad.offset = 100;  // unaligned
    EXPECT(send(chan, bad, &reply) && reply.error == EINVAL);
    bad = req, bad.length = 0;
    EXPECT(send(chan, bad, &reply) && reply.error == EINVAL);
    bad = req, bad.offset = (1ull << 63) - 4096, bad.length = 8192;  // past 2^63
    EXPECT(send(chan, bad, &reply) && reply.error == EINVAL);
    bad = req, bad.offset = UINT64_MAX - 4095;
    EXPECT(send(chan, bad, &reply) && reply.error == EINVAL);
    bad = req, bad.flags = DAXFS_FAULT_WRITE;  // a store through a read-only grant
    EXPECT(send(chan, bad, &reply) && reply.error == EACCES);
    struct stat st;
    EXPECT(stat(other.c_str(), &st) == 0);
    bad = req, bad.ino = st.st_ino;  // a file never granted
    EXPECT(send(chan, bad, &reply) && reply.error == EACCES);
    bad = req, bad.op = 77;
    EXPECT(send(chan, bad, &reply) && reply.error == EINVAL);
    bad = req, bad.offset = 1 << 20;  // past EOF
    EXPECT(send(chan, bad, &reply) && reply.error == DAXFS_ERR_BEYOND_EOF);
    // The client scribbles over its ring and acknowledgement: nothing the daemon believes.
    memset(chan->ring, 0xff, sizeof chan->ring);
    chan->revoke_acked = UINT64_MAX;
    return true;
  });
  // The daemon is alive and well: a truncate of the mapped file does not wait for the dead child.
  auto t0 = std::chrono::steady_clock::now();
  REQUIRE(truncate(f.c_str(), 0) == 0);
  CHECK(std::chrono::steady_clock::now() - t0 < std::chrono::seconds(2));
  CHECK(is_mounted(m.mnt()));
}

TEST_CASE("a process that exec'd after mapping is neither waited for nor killed", "[dax][fuse]") {
  Mount m;
  std::string f = m.path("f");
  spit(f, std::string(65536, 'e'));
  Proc p({program("daxfsctl"), "run", "--", build_dir() + "/tests/dax/dax_tool", "exec", f, "sleep", "2"});
  REQUIRE(p.line() == "ready");
  usleep(200000);  // the exec has happened
  auto t0 = std::chrono::steady_clock::now();
  REQUIRE(truncate(f.c_str(), 0) == 0);
  CHECK(std::chrono::steady_clock::now() - t0 < std::chrono::milliseconds(2000));
  CHECK(p.wait() == 0);  // sleep ran to its end
}

TEST_CASE("a registry planted by someone else is not believed; an unreadable one of ours refuses the mount",
          "[dax][fuse]") {
  Mount m;
  std::string device = m.device();
  m.stop();
  struct stat st;
  REQUIRE(stat(device.c_str(), &st) == 0);
  std::string shm = "/dev/shm/" + daxfs::dax::Registry::name_for(st.st_dev, st.st_ino);
  Proc victim({"sleep", "30"});
  // Junk owned by another user: ignored (and replaced); nobody is killed.
  spit(shm, std::string(8192, 'x'));
  REQUIRE(chown(shm.c_str(), 65534, 65534) == 0);
  m.start();
  CHECK_FALSE(victim.exited_within(200));
  m.stop();
  // Junk of ours (root, 0600): the processes that may map the device cannot be found: refused.
  spit(shm, std::string(8192, 'x'));
  REQUIRE(chmod(shm.c_str(), 0600) == 0);
  std::string out;
  CHECK(run(program("daxfs") + " " + device + " " + m.mnt(), &out) != 0);
  CHECK(out.find("cannot be read") != std::string::npos);
  CHECK_FALSE(is_mounted(m.mnt()));
  unlink(shm.c_str());
  m.start();
  CHECK(is_mounted(m.mnt()));
}
