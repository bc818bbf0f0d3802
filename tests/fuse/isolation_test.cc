// Isolation (issue 12, item 6): on a mount the daemon (root) serves with allow_other, an
// unprivileged user (nobody, uid/gid 65534, no supplementary groups) does only what the files'
// permissions and its descriptors' open modes allow, through FUSE, every ioctl, the CLI and the
// DAX layer; a root process without the capabilities an operation needs is refused as Linux
// refuses it; the device, its control file and the DAX registry are closed to others. Each case
// asserts the denial and that nothing changed: the protected files' bytes, modes, owners and
// extents with their sharing (fiemap as root), no poison listed, not shut down.
// The unprivileged work runs in forked children (setresuid) or through setpriv(1); the rules and
// their Linux references are in docs/reliability.md ("Isolation").
#include <fcntl.h>
#include <grp.h>
#include <linux/capability.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <cstring>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "daxcore/daxfs_ioctl.h"
#include "daxcore/protocol.h"
#include "daxcore/registry.h"
#include "pmemdev/control.h"
#include "tests/support/mount.h"
#include "tests/support/proc.h"

#ifndef XFS_IOC_GOINGDOWN
#define XFS_IOC_GOINGDOWN _IOR('X', 125, uint32_t)
#endif

using namespace daxfs::test;

namespace {

constexpr uid_t kNobody = 65534;
const std::string kAsNobody = "setpriv --reuid=65534 --regid=65534 --clear-groups ";

// What a child found wrong, one line per failed expectation, sent to the parent through a pipe.
class Report {
 public:
  explicit Report(int fd) : fd_(fd) {}
  void fail(int line, const std::string& what) {
    std::string text = "line " + std::to_string(line) + ": " + what + "\n";
    (void)!write(fd_, text.data(), text.size());
  }
  // `rc` is the call's result (negative or MAP_FAILED-as-negative: failed), `err` its errno.
  void denied(long rc, int err, int expected, const char* call, int line) {
    if (rc >= 0) return fail(line, std::string(call) + " succeeded; expected " + strerrorname(expected));
    if (err != expected) fail(line, std::string(call) + ": " + strerrorname(err) + ", expected " + strerrorname(expected));
  }
  void allowed(long rc, int err, const char* call, int line) {
    if (rc < 0) fail(line, std::string(call) + " failed: " + strerrorname(err));
  }
  void expect(bool ok, const char* what, int line) {
    if (!ok) fail(line, std::string("expected ") + what);
  }
  static std::string strerrorname(int e) {
    switch (e) {
      case 0: return "success";
      case EACCES: return "EACCES";
      case EPERM: return "EPERM";
      case EBADF: return "EBADF";
      case EINVAL: return "EINVAL";
      case ENODEV: return "ENODEV";
      case ENOTCONN: return "ENOTCONN";
      default: return strerror(e);
    }
  }

 private:
  int fd_;
};

#define DENIED(expected, call)                                        \
  do {                                                                \
    errno = 0;                                                        \
    long rc_ = static_cast<long>(call);                               \
    int e_ = errno;                                                   \
    rep.denied(rc_, e_, expected, #call, __LINE__);                   \
  } while (0)
#define ALLOWED(call)                                                 \
  do {                                                                \
    errno = 0;                                                        \
    long rc_ = static_cast<long>(call);                               \
    int e_ = errno;                                                   \
    rep.allowed(rc_, e_, #call, __LINE__);                            \
  } while (0)
#define EXPECT(cond) rep.expect((cond), #cond, __LINE__)

// mmap's result as a system call's: -1 on failure (errno set), else 0 (the mapping is undone).
long try_mmap(int fd, int prot) {
  void* p = mmap(nullptr, 4096, prot, MAP_SHARED, fd, 0);
  if (p == MAP_FAILED) return -1;
  munmap(p, 4096);
  return 0;
}

enum class Who { kNobody, kRootWithoutCaps };

// Runs `body(Report&)` in a child as `who`: nobody (uid/gid 65534, no supplementary groups), or
// uid 0 with empty capability sets. Returns what the child reported ("" when all held).
template <typename F>
std::string as(Who who, F&& body) {
  int fds[2];
  REQUIRE(pipe2(fds, O_CLOEXEC) == 0);
  pid_t child = fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    close(fds[0]);
    Report rep(fds[1]);
    if (who == Who::kNobody) {
      if (setgroups(0, nullptr) != 0 || setresgid(kNobody, kNobody, kNobody) != 0 ||
          setresuid(kNobody, kNobody, kNobody) != 0 || getuid() != kNobody) {
        rep.fail(__LINE__, "cannot become nobody");
        _exit(1);
      }
    } else {
      __user_cap_header_struct h{_LINUX_CAPABILITY_VERSION_3, 0};
      __user_cap_data_struct d[2]{};
      if (syscall(SYS_capset, &h, d) != 0) {
        rep.fail(__LINE__, "cannot drop the capabilities");
        _exit(1);
      }
    }
    body(rep);
    _exit(0);
  }
  close(fds[1]);
  std::string out;
  char buf[4096];
  ssize_t n;
  while ((n = read(fds[0], buf, sizeof buf)) > 0) out.append(buf, static_cast<size_t>(n));
  close(fds[0]);
  int st;
  REQUIRE(waitpid(child, &st, 0) == child);
  if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) out += "the child died or failed (status " + std::to_string(st) + ")\n";
  return out;
}

// A mount (allow_other) with files of each kind of access nobody may have:
//   secret        root 0600          nobody may not open it
//   public        root 0644          nobody may read it, not write it; shares its blocks with
//   public_clone  root 0644          (a reflink, so a wrongly allowed unshare or CoW would show)
//   closed/inner  root 0644 in a 0700 directory: readable bits, but no path to it
//   shared        root 0666          nobody may read and write it (through a writable fd)
//   pub/          0777               nobody's own files: pub/mine (nobody 0644)
class World {
 public:
  explicit World(const std::string& options = "allow_other") : m_("64M", options) {
    REQUIRE(chmod(m_.dir().path().c_str(), 0755) == 0);
    REQUIRE(chmod(m_.mnt().c_str(), 0755) == 0);
    make("secret", 'S', 0600);
    make("public", 'P', 0644);
    make("public_clone", 'x', 0644);
    REQUIRE(mkdir(m_.path("closed").c_str(), 0700) == 0);
    make("closed/inner", 'I', 0644);
    make("shared", 'W', 0666);
    REQUIRE(mkdir(m_.path("pub").c_str(), 0777) == 0);
    REQUIRE(chmod(m_.path("pub").c_str(), 0777) == 0);
    make("pub/mine", 'M', 0644);
    REQUIRE(chown(m_.path("pub/mine").c_str(), kNobody, kNobody) == 0);
    // public_clone shares public's blocks.
    auto args = clone_from("public");
    int fd = open(m_.path("public_clone").c_str(), O_RDWR | O_CLOEXEC);
    REQUIRE(fd >= 0);
    REQUIRE(ioctl(fd, DAXFS_IOC_CLONE_RANGE, &args) == 0);
    close(fd);
    REQUIRE(slurp(m_.path("public_clone")) == std::string(8192, 'P'));
  }

  // Clone (or dedupe) arguments naming `rel` as the source (its generation read as root).
  daxfs_clone_range clone_from(const std::string& rel, uint64_t length = 8192) const {
    int fd = open(m_.path(rel).c_str(), O_RDONLY | O_CLOEXEC);
    REQUIRE(fd >= 0);
    struct stat st;
    REQUIRE(fstat(fd, &st) == 0);
    long generation = 0;
    REQUIRE(ioctl(fd, FS_IOC_GETVERSION, &generation) == 0);
    close(fd);
    daxfs_clone_range a{};
    a.src_ino = st.st_ino;
    a.src_generation = static_cast<uint64_t>(generation);
    a.src_length = length;
    return a;
  }
  uint64_t ino(const std::string& rel) const {
    struct stat st;
    REQUIRE(stat(m_.path(rel).c_str(), &st) == 0);
    return st.st_ino;
  }

  // Root's view of what must not change: every protected file's mode, owner, bytes and extents
  // (physical offset and flags: sharing, unwritten, poisoned), the badblock list and shutdown.
  std::string state(const std::vector<std::string>& extra = {}) const {
    std::ostringstream out;
    std::vector<std::string> files = {"secret", "public", "public_clone", "closed/inner"};
    files.insert(files.end(), extra.begin(), extra.end());
    for (const auto& rel : files) {
      std::string p = m_.path(rel);
      struct stat st;
      REQUIRE(stat(p.c_str(), &st) == 0);
      std::string data = slurp(p);
      out << rel << " mode " << std::oct << (st.st_mode & 07777) << std::dec << " uid " << st.st_uid << " gid "
          << st.st_gid << " size " << st.st_size << " bytes " << std::hash<std::string>{}(data) << "\n";
      int fd = open(p.c_str(), O_RDONLY | O_CLOEXEC);
      REQUIRE(fd >= 0);
      auto m = std::make_unique<daxfs_fiemap>();
      *m = {};
      REQUIRE(ioctl(fd, DAXFS_IOC_FIEMAP, m.get()) == 0);
      close(fd);
      for (uint64_t i = 0; i < m->count; i++)
        out << "  extent " << m->extents[i].logical << " @" << m->extents[i].physical << " +"
            << m->extents[i].length << " flags " << m->extents[i].flags << "\n";
    }
    auto ctl = daxfs::pmemdev::ControlFile::open(m_.device());
    REQUIRE(ctl);
    out << "badblocks " << (*ctl)->list().size() << "\n";
    int fd = open(m_.mnt().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    REQUIRE(fd >= 0);
    daxfs_counters c{};
    REQUIRE(ioctl(fd, DAXFS_IOC_COUNTERS, &c) == 0);
    close(fd);
    out << "shutdown " << c.shutdown << "\n";
    return out.str();
  }

  Mount& mount() { return m_; }
  std::string path(const std::string& rel) const { return m_.path(rel); }

 private:
  void make(const std::string& rel, char fill, mode_t mode) {
    spit(m_.path(rel), std::string(8192, fill));
    REQUIRE(chmod(m_.path(rel).c_str(), mode) == 0);
  }
  Mount m_;
};

// A DAX session for this process through `fd`: a sealed channel memfd, held "alive" by an OFD
// lock on a second open. Returns the mapped channel (nullptr and the errno in `err` on failure).
daxfs_dax_channel* dax_connect(int fd, daxfs_dax_connect* c, int* err) {
  int chan_fd = static_cast<int>(syscall(SYS_memfd_create, "probe", MFD_CLOEXEC | MFD_ALLOW_SEALING));
  if (chan_fd < 0 || ftruncate(chan_fd, sizeof(daxfs_dax_channel)) != 0 ||
      fcntl(chan_fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW) != 0) {
    *err = errno;
    return nullptr;
  }
  int lock_fd = open(("/proc/self/fd/" + std::to_string(chan_fd)).c_str(), O_RDWR | O_CLOEXEC);
  struct flock lk {};
  lk.l_type = F_WRLCK;
  if (lock_fd < 0 || fcntl(lock_fd, F_OFD_SETLK, &lk) != 0) {
    *err = errno;
    return nullptr;
  }
  memset(c, 0, sizeof *c);
  c->abi = DAXFS_DAX_ABI;
  c->channel_fd = chan_fd;
  if (ioctl(fd, DAXFS_IOC_DAX_CONNECT, c) != 0) {
    *err = errno;
    return nullptr;
  }
  void* p = mmap(nullptr, sizeof(daxfs_dax_channel), PROT_READ | PROT_WRITE, MAP_SHARED, chan_fd, 0);
  *err = p == MAP_FAILED ? errno : 0;
  return p == MAP_FAILED ? nullptr : static_cast<daxfs_dax_channel*>(p);
}

// One fault request through slot 0; the daemon's errno (or -1 when it did not answer in 2 s).
int dax_fault(daxfs_dax_channel* chan, uint64_t token, uint64_t ino, bool write) {
  daxfs_dax_request& slot = chan->requests[0];
  daxfs_dax_request req{};
  req.state = DAXFS_REQ_CLAIMED;
  req.op = DAXFS_OP_FAULT, req.token = token, req.ino = ino, req.offset = 0, req.length = 4096;
  req.prot = write ? PROT_READ | PROT_WRITE : PROT_READ;
  req.flags = write ? DAXFS_FAULT_WRITE : 0;
  memcpy(&slot, &req, sizeof req);
  __atomic_store_n(&slot.state, DAXFS_REQ_SUBMITTED, __ATOMIC_RELEASE);
  __atomic_fetch_add(&chan->doorbell, 1, __ATOMIC_RELEASE);
  syscall(SYS_futex, &chan->doorbell, 1 /* FUTEX_WAKE */, INT32_MAX, nullptr, nullptr, 0);
  for (int i = 0; i < 200 && __atomic_load_n(&slot.state, __ATOMIC_ACQUIRE) != DAXFS_REQ_REPLIED; i++) usleep(10000);
  if (__atomic_load_n(&slot.state, __ATOMIC_ACQUIRE) != DAXFS_REQ_REPLIED) return -1;
  int e = static_cast<int>(slot.error);
  __atomic_store_n(&slot.state, DAXFS_REQ_FREE, __ATOMIC_RELEASE);
  return e;
}

// `text` without the lines that start with `prefix` (the client library's notes on stderr).
std::string without_lines(const std::string& text, const std::string& prefix) {
  std::istringstream in(text);
  std::string line, out;
  while (std::getline(in, line))
    if (line.rfind(prefix, 0) != 0) out += line + "\n";
  return out;
}

std::string file_mode(const std::string& path) {
  struct stat st;
  if (lstat(path.c_str(), &st) != 0) return "missing";
  char buf[16];
  snprintf(buf, sizeof buf, "%04o", st.st_mode & 07777);
  return buf;
}

}  // namespace

TEST_CASE("nobody reads and writes and truncates and changes only what the modes allow through FUSE",
          "[fuse][isolation]") {
  World w;
  std::string before = w.state();
  std::string report = as(Who::kNobody, [&](Report& rep) {
    DENIED(EACCES, open(w.path("secret").c_str(), O_RDONLY));
    DENIED(EACCES, open(w.path("public").c_str(), O_WRONLY));
    DENIED(EACCES, open(w.path("public").c_str(), O_RDWR));
    DENIED(EACCES, open(w.path("public").c_str(), O_RDONLY | O_TRUNC));
    DENIED(EACCES, open(w.path("closed/inner").c_str(), O_RDONLY));
    struct stat st;
    DENIED(EACCES, stat(w.path("closed/inner").c_str(), &st));
    DENIED(EACCES, truncate(w.path("public").c_str(), 0));
    DENIED(EPERM, chmod(w.path("public").c_str(), 0666));
    DENIED(EPERM, chown(w.path("public").c_str(), kNobody, kNobody));
    struct timespec times[2] = {{1, 0}, {1, 0}};
    DENIED(EPERM, utimensat(AT_FDCWD, w.path("public").c_str(), times, 0));
    DENIED(EACCES, setxattr(w.path("public").c_str(), "user.x", "1", 1, 0));
    DENIED(EACCES, unlink(w.path("public").c_str()));
    DENIED(EACCES, rename(w.path("public").c_str(), w.path("pub/stolen").c_str()));
    DENIED(EACCES, open(w.path("new").c_str(), O_CREAT | O_WRONLY, 0644));  // the root dir is 0755
    // A read-only fd of a file nobody may read: reads, nothing else.
    int fd = open(w.path("public").c_str(), O_RDONLY);
    ALLOWED(fd);
    char buf[8192];
    EXPECT(pread(fd, buf, sizeof buf, 0) == 8192 && std::string(buf, 8192) == std::string(8192, 'P'));
    DENIED(EBADF, write(fd, "x", 1));
    DENIED(EBADF, pwrite(fd, "x", 1, 0));
    DENIED(EINVAL, ftruncate(fd, 0));
    DENIED(EBADF, fallocate(fd, 0, 0, 65536));
    DENIED(EBADF, fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, 4096));
    DENIED(EACCES, try_mmap(fd, PROT_READ | PROT_WRITE));
    close(fd);
    // What the modes do allow still works: the 0666 file and nobody's own directory.
    fd = open(w.path("shared").c_str(), O_RDWR);
    ALLOWED(fd);
    ALLOWED(pwrite(fd, "nobody", 6, 0));
    close(fd);
    fd = open(w.path("pub/new").c_str(), O_CREAT | O_WRONLY, 0600);
    ALLOWED(fd);
    close(fd);
  });
  CHECK(report == "");
  CHECK(w.state() == before);
  CHECK(slurp(w.path("shared")).substr(0, 6) == "nobody");
}

TEST_CASE("every daxfs ioctl holds nobody to its fd's open mode and the file's permissions",
          "[fuse][ioctl][isolation]") {
  World w;
  const auto from_secret = w.clone_from("secret");
  const auto from_inner = w.clone_from("closed/inner");
  const auto from_public = w.clone_from("public");
  const auto from_mine = w.clone_from("pub/mine");
  const uint64_t secret_ino = w.ino("secret"), inner_ino = w.ino("closed/inner");
  std::string before = w.state();
  std::string report = as(Who::kNobody, [&](Report& rep) {
    int pro = open(w.path("public").c_str(), O_RDONLY);
    int mine_ro = open(w.path("pub/mine").c_str(), O_RDONLY);
    int shared_ro = open(w.path("shared").c_str(), O_RDONLY);
    int shared_rw = open(w.path("shared").c_str(), O_RDWR);
    int shared_append = open(w.path("shared").c_str(), O_WRONLY | O_APPEND);
    int dir = open(w.mount().mnt().c_str(), O_RDONLY | O_DIRECTORY);
    EXPECT(pro >= 0 && mine_ro >= 0 && shared_ro >= 0 && shared_rw >= 0 && shared_append >= 0 && dir >= 0);
    // Clone: the destination open for writing and not appending (generic_file_rw_checks), the
    // source readable by its path (what opening it would need).
    for (int fd : {pro, mine_ro, shared_ro, shared_append}) {
      auto a = from_mine;
      DENIED(EBADF, ioctl(fd, DAXFS_IOC_CLONE_RANGE, &a));
    }
    auto a = from_secret;
    DENIED(EBADF, ioctl(shared_rw, DAXFS_IOC_CLONE_RANGE, &a));
    a = from_inner;
    DENIED(EBADF, ioctl(shared_rw, DAXFS_IOC_CLONE_RANGE, &a));
    // Dedupe: may_dedupe_file(): not the owner, no write permission, a read-only fd: EPERM.
    a = from_public;
    DENIED(EPERM, ioctl(pro, DAXFS_IOC_DEDUPE_RANGE, &a));
    a = from_mine;
    DENIED(EPERM, ioctl(pro, DAXFS_IOC_DEDUPE_RANGE, &a));
    a = from_secret;
    DENIED(EBADF, ioctl(shared_rw, DAXFS_IOC_DEDUPE_RANGE, &a));
    a = from_public;  // the owner may, through a read-only fd; so may one with write permission
    ALLOWED(ioctl(mine_ro, DAXFS_IOC_DEDUPE_RANGE, &a));
    EXPECT(a.status == 1);  // 'P' and 'M' differ: nothing shared
    a = from_mine;
    ALLOWED(ioctl(shared_ro, DAXFS_IOC_DEDUPE_RANGE, &a));
    // The fallocate modes: an fd open for writing (vfs_fallocate), whoever owns the file.
    for (int fd : {pro, mine_ro, shared_ro}) {
      daxfs_range r{0, 4096, {}};
      DENIED(EBADF, ioctl(fd, DAXFS_IOC_UNSHARE_RANGE, &r));
      DENIED(EBADF, ioctl(fd, DAXFS_IOC_COLLAPSE_RANGE, &r));
      DENIED(EBADF, ioctl(fd, DAXFS_IOC_INSERT_RANGE, &r));
    }
    // fsmap and shutdown: CAP_SYS_ADMIN; FSSETXATTR: the owner (or CAP_FOWNER).
    auto q = std::make_unique<daxfs_fsmap>();
    *q = {};
    q->end = UINT64_MAX;
    DENIED(EPERM, ioctl(dir, DAXFS_IOC_FSMAP, q.get()));
    DENIED(EPERM, ioctl(pro, DAXFS_IOC_FSMAP, q.get()));
    uint32_t how = 0;
    DENIED(EPERM, ioctl(dir, XFS_IOC_GOINGDOWN, &how));
    DENIED(EPERM, ioctl(pro, XFS_IOC_GOINGDOWN, &how));
    fsxattr x{};
    ALLOWED(ioctl(pro, FS_IOC_FSGETXATTR, &x));
    x.fsx_xflags ^= FS_XFLAG_DAX;
    DENIED(EPERM, ioctl(pro, FS_IOC_FSSETXATTR, &x));
    ALLOWED(ioctl(mine_ro, FS_IOC_FSGETXATTR, &x));
    ALLOWED(ioctl(mine_ro, FS_IOC_FSSETXATTR, &x));  // its own file, the flags it has
    // Facts about a file nobody may read, as on Linux (FIEMAP needs only an open fd).
    auto m = std::make_unique<daxfs_fiemap>();
    *m = {};
    ALLOWED(ioctl(pro, DAXFS_IOC_FIEMAP, m.get()));
    EXPECT(m->count == 1 && (m->extents[0].flags & DAXFS_EXTENT_SHARED));
    daxfs_fileinfo info{};
    ALLOWED(ioctl(pro, DAXFS_IOC_FILEINFO, &info));
    // The DAX layer: a grant needs a session, gives what the fd's mode gives, and faults are
    // served only for granted files and only as granted.
    daxfs_dax_grant g{};
    DENIED(ENOTCONN, ioctl(pro, DAXFS_IOC_DAX_GRANT, &g));
    daxfs_dax_connect c;
    int err = 0;
    daxfs_dax_channel* chan = dax_connect(pro, &c, &err);
    EXPECT(chan != nullptr);
    if (!chan) return;
    ALLOWED(ioctl(pro, DAXFS_IOC_DAX_GRANT, &g));
    EXPECT(g.access == DAXFS_DAX_ACCESS_READ);
    const uint64_t public_ino = g.ino;
    g = {};
    DENIED(EACCES, ioctl(shared_append, DAXFS_IOC_DAX_GRANT, &g));  // not open for reading
    DENIED(ENODEV, ioctl(dir, DAXFS_IOC_DAX_GRANT, &g));
    g = {};
    ALLOWED(ioctl(shared_rw, DAXFS_IOC_DAX_GRANT, &g));
    EXPECT(g.access == (DAXFS_DAX_ACCESS_READ | DAXFS_DAX_ACCESS_WRITE));
    EXPECT(dax_fault(chan, c.token, public_ino, false) == 0);
    EXPECT(dax_fault(chan, c.token, public_ino, true) == EACCES);  // a store through a read-only grant
    EXPECT(dax_fault(chan, c.token, secret_ino, false) == EACCES);  // never granted
    EXPECT(dax_fault(chan, c.token, inner_ino, false) == EACCES);
    EXPECT(dax_fault(chan, c.token ^ 1, public_ino, false) == EPERM);  // a forged token
  });
  CHECK(report == "");
  CHECK(w.state() == before);
  CHECK(slurp(w.path("shared")) == std::string(8192, 'W'));
}

TEST_CASE("root without the capabilities may do only what they would allow (uid 0 is not enough)",
          "[fuse][ioctl][isolation]") {
  World w;
  // A file of nobody's that only nobody may read.
  spit(w.path("pub/private"), std::string(8192, 'N'));
  REQUIRE(chown(w.path("pub/private").c_str(), kNobody, kNobody) == 0);
  REQUIRE(chmod(w.path("pub/private").c_str(), 0600) == 0);
  const auto from_private = w.clone_from("pub/private");
  const auto from_public = w.clone_from("public");
  std::vector<std::string> also = {"pub/private", "pub/mine"};
  std::string before = w.state(also);
  std::string report = as(Who::kRootWithoutCaps, [&](Report& rep) {
    EXPECT(getuid() == 0);
    int dir = open(w.mount().mnt().c_str(), O_RDONLY | O_DIRECTORY);
    int mine_ro = open(w.path("pub/mine").c_str(), O_RDONLY);
    int shared_rw = open(w.path("shared").c_str(), O_RDWR);  // root's own file
    EXPECT(dir >= 0 && mine_ro >= 0 && shared_rw >= 0);
    DENIED(EACCES, open(w.path("pub/private").c_str(), O_RDONLY));  // the kernel agrees
    auto q = std::make_unique<daxfs_fsmap>();
    *q = {};
    q->end = UINT64_MAX;
    DENIED(EPERM, ioctl(dir, DAXFS_IOC_FSMAP, q.get()));  // CAP_SYS_ADMIN
    auto a = from_private;  // no CAP_DAC_READ_SEARCH: the source cannot be read
    DENIED(EBADF, ioctl(shared_rw, DAXFS_IOC_CLONE_RANGE, &a));
    a = from_public;  // not the owner, no write permission, no CAP_SYS_ADMIN
    DENIED(EPERM, ioctl(mine_ro, DAXFS_IOC_DEDUPE_RANGE, &a));
    fsxattr x{};
    ALLOWED(ioctl(mine_ro, FS_IOC_FSGETXATTR, &x));
    x.fsx_xflags ^= FS_XFLAG_DAX;
    DENIED(EPERM, ioctl(mine_ro, FS_IOC_FSSETXATTR, &x));  // no CAP_FOWNER
    uint32_t how = 0;  // last: were it allowed, everything after it would fail with EIO
    DENIED(EPERM, ioctl(dir, XFS_IOC_GOINGDOWN, &how));  // CAP_SYS_ADMIN
  });
  CHECK(report == "");
  CHECK(w.state(also) == before);
  CHECK(slurp(w.path("shared")) == std::string(8192, 'W'));
}

TEST_CASE("nobody's FIDEDUPERANGE under the shim follows the VFS's rules for both fds",
          "[dax][fuse][shim][isolation]") {
  World w;
  std::vector<std::string> also = {"pub/mine"};
  std::string before = w.state(also);
  const std::string dedupe = kAsNobody + program("daxfsctl") + " run -- " + build_dir() + "/tests/dax/remap_tool dedupe ";
  std::string out;
  // vfs_dedupe_file_range(): a source fd not open for reading is EINVAL, whatever the destination.
  CHECK(run("SRC_FLAGS=w DST_FLAGS=r " + dedupe + w.path("pub/mine") + " " + w.path("shared") + " 0 8192 0", &out) == 0);
  CHECK(out == "EINVAL\n");
  // may_dedupe_file(): a read-only destination nobody neither owns nor may write: EPERM.
  CHECK(run("SRC_FLAGS=r DST_FLAGS=r " + dedupe + w.path("public_clone") + " " + w.path("public") + " 0 8192 0", &out) == 0);
  CHECK(out == "EPERM\n");
  // A destination nobody may write, through a read-only fd: allowed (the bytes differ).
  CHECK(run("SRC_FLAGS=r DST_FLAGS=r " + dedupe + w.path("pub/mine") + " " + w.path("shared") + " 0 8192 0", &out) == 0);
  CHECK(out == "differs\n");
  CHECK(w.state(also) == before);
}

TEST_CASE("daxfsctl run by nobody: clear errors and nothing done", "[fuse][cli][isolation]") {
  World w;
  auto& m = w.mount();
  const std::string ctl = kAsNobody + program("daxfsctl") + " ";
  std::string before = w.state();
  struct Case {
    std::string args;
    std::string says;  // a piece of the one-line error
  };
  const std::vector<Case> cases = {
      {"reflink " + w.path("secret") + " " + w.path("pub/copy"), "Permission denied"},
      {"reflink " + w.path("pub/mine") + " " + w.path("public"), "Permission denied"},
      {"dedupe " + w.path("pub/mine") + " " + w.path("public"), "Operation not permitted"},
      {"dedupe " + w.path("secret") + " " + w.path("pub/mine"), "Permission denied"},
      {"unshare " + w.path("public"), "Permission denied"},
      {"collapse " + w.path("public") + " --offset 0 --length 4096", "Permission denied"},
      {"insert " + w.path("public") + " --offset 0 --length 4096", "Permission denied"},
      {"fiemap " + w.path("secret"), "Permission denied"},
      {"fiemap " + w.path("closed/inner"), "Permission denied"},
      {"fsmap " + m.mnt(), "Operation not permitted"},
      {"fsmap " + m.device(), "Operation not permitted"},  // a mounted device: asks the mount
      {"inject-error " + m.mnt() + " --offset 1M", "Permission denied"},
      {"inject-error " + m.device() + " --offset 1M", "Permission denied"},
      {"inject-error " + m.mnt() + " --file " + w.path("public") + " --file-offset 0", "Permission denied"},
      {"clear-error " + m.mnt() + " --offset 1M", "Permission denied"},
      {"list-errors " + m.mnt(), "Permission denied"},
      {"shutdown " + m.mnt(), "Operation not permitted"},
      {"remove-device " + m.mnt(), "Permission denied"},
      {"mappers " + m.mnt(), "Permission denied"},
      {"stat " + w.path("secret"), "Permission denied"},
  };
  for (const Case& c : cases) {
    INFO("daxfsctl " << c.args);
    std::string out;
    CHECK(run(ctl + c.args, &out) != 0);
    INFO(out);
    CHECK(out.rfind("daxfsctl: ", 0) == 0);
    CHECK(out.find(c.says) != std::string::npos);
    CHECK(std::count(out.begin(), out.end(), '\n') <= 2);  // a clear line (and pmemdev's, if any)
  }
  CHECK(file_mode(w.path("pub/copy")) == "missing");  // the failed reflink left no file
  CHECK(w.state() == before);
  // What nobody may do still works: its own copy of a file it can read, facts about files.
  std::string out;
  CHECK(run(ctl + "fiemap " + w.path("public") + " --json", &out) == 0);
  CHECK(out.find("shared") != std::string::npos);
  CHECK(run(ctl + "stat " + m.mnt() + " --json", &out) == 0);
  CHECK(out.find("\"shutdown\": false") != std::string::npos);
  CHECK(out.find("dax_counters") == std::string::npos);  // the registry is root's
  CHECK(run(ctl + "reflink " + w.path("public") + " " + w.path("pub/copy"), &out) == 0);
  CHECK(slurp(w.path("pub/copy")) == std::string(8192, 'P'));
}

TEST_CASE("nobody may open neither the device nor its control file nor the DAX registry and channels",
          "[dax][fuse][isolation]") {
  World w;
  auto& m = w.mount();
  struct stat dev;
  REQUIRE(stat(m.device().c_str(), &dev) == 0);
  const std::string registry = "/dev/shm/" + daxfs::dax::Registry::name_for(dev.st_dev, dev.st_ino);
  // A root DAX mapper, so that the registry has a session and the mapper a channel memfd.
  Proc mapper({program("daxfsctl"), "run", "--", build_dir() + "/tests/dax/dax_tool", "sleep", w.path("public")});
  REQUIRE(mapper.line() == "ready");
  CHECK(file_mode(m.device()) == "0600");
  CHECK(file_mode(daxfs::pmemdev::ControlFile::path_for(m.device())) == "0600");
  CHECK(file_mode(registry) == "0600");
  std::vector<std::string> fds;
  for (pid_t pid : {mapper.pid(), m.pid()})
    for (const auto& e : std::filesystem::directory_iterator("/proc/" + std::to_string(pid) + "/fd"))
      fds.push_back(e.path().string());
  std::string before = w.state();
  std::string report = as(Who::kNobody, [&](Report& rep) {
    DENIED(EACCES, open(m.device().c_str(), O_RDONLY));
    DENIED(EACCES, open(daxfs::pmemdev::ControlFile::path_for(m.device()).c_str(), O_RDONLY));
    DENIED(EACCES, open(registry.c_str(), O_RDONLY));
    // The mapper's and the daemon's descriptors (the device, the channel memfd) and memory.
    for (const auto& fd : fds) DENIED(EACCES, open(fd.c_str(), O_RDONLY));
    DENIED(EACCES, open(("/proc/" + std::to_string(mapper.pid()) + "/mem").c_str(), O_RDONLY));
    DENIED(EACCES, open(("/proc/" + std::to_string(m.pid()) + "/mem").c_str(), O_RDONLY));
  });
  CHECK(report == "");
  mapper.signal(SIGKILL);  // dax_tool sleep waits for a kill
  mapper.wait();
  CHECK(w.state() == before);
}

TEST_CASE("a DAX mapping by nobody: none without the device and read-only from a read-only fd",
          "[dax][fuse][isolation]") {
  World w;
  auto& m = w.mount();
  const std::string tool = kAsNobody + program("daxfsctl") + " run -- " + build_dir() + "/tests/dax/isolation_tool ";
  std::string before = w.state();
  std::string out;
  SECTION("the device closed to nobody (0600): the page cache maps, no window into the pool") {
    CHECK(run(tool + "map-ro " + w.path("public"), &out) == 0);
    CHECK(out.find("daxfs-client: DAX unavailable, mapping through the page cache: cannot open the device file: "
                   "Permission denied") != std::string::npos);
    CHECK(without_lines(out, "daxfs-client: ") ==
          "backing kernel\nbytes PPPPPPPP\nmmap-rw EACCES\nmprotect EACCES\nstore sigsegv\ndone\n");
    CHECK(run(tool + "map-rw " + w.path("shared"), &out) == 0);
    CHECK(without_lines(out, "daxfs-client: ") == "backing kernel\ndone\n");
  }
  SECTION("the device readable by nobody's group: DAX, read-only as the fd; no writable window") {
    REQUIRE(chown(m.device().c_str(), 0, kNobody) == 0);
    REQUIRE(chmod(m.device().c_str(), 0640) == 0);
    CHECK(run(tool + "map-ro " + w.path("public"), &out) == 0);
    CHECK(out == "backing dax\nbytes PPPPPPPP\nmmap-rw EACCES\nmprotect EACCES\nstore sigsegv\ndone\n");
    // A read-write fd of a file nobody may write, but a device it may only read: the kernel maps.
    CHECK(run(tool + "map-rw " + w.path("shared"), &out) == 0);
    CHECK(out == "backing kernel\ndone\n");
    // The control file stays closed: the device's mode is no reason to open it.
    CHECK(file_mode(daxfs::pmemdev::ControlFile::path_for(m.device())) == "0600");
    REQUIRE(chmod(m.device().c_str(), 0600) == 0);
  }
  INFO(out);
  // A file nobody may not read: no fd, so no mapping of any kind.
  CHECK(run(tool + "map-ro " + w.path("secret"), &out) == 0);
  CHECK(out.find("open EACCES\n") != std::string::npos);
  CHECK(out.find("backing") == std::string::npos);
  CHECK(w.state() == before);
  CHECK(slurp(w.path("shared")) == std::string(8192, 'W'));
}

TEST_CASE("a control file planted beside the device by another user is refused and links are not followed",
          "[pmemdev][isolation]") {
  TempDir dir;
  REQUIRE(chmod(dir.path().c_str(), 01777) == 0);  // like /dev/shm: anyone may create names
  const std::string mkfs = program("mkfs.daxfs") + " -s 16M ";
  std::string out;
  SECTION("a control file of another user's, made before the device") {
    std::string dev = dir.file("pmem0");
    std::string report = as(Who::kNobody, [&](Report& rep) {
      int fd = open((dev + ".ctl").c_str(), O_CREAT | O_EXCL | O_RDWR, 0666);
      ALLOWED(fd);
      ALLOWED(fchmod(fd, 0666));
      close(fd);
    });
    REQUIRE(report == "");
    CHECK(run(mkfs + dev, &out) != 0);
    INFO(out);
    CHECK(out.find("belongs to uid 65534") != std::string::npos);
    CHECK(file_mode(dev) == "missing");  // the failed mkfs removed the device it made
    struct stat st;
    REQUIRE(stat((dev + ".ctl").c_str(), &st) == 0);
    CHECK(st.st_size == 0);  // never initialised: nobody holds no mutex of ours
  }
  SECTION("a symbolic link in its place") {
    std::string dev = dir.file("pmem1"), victim = dir.file("victim");
    spit(victim, "");
    REQUIRE(chmod(victim.c_str(), 0600) == 0);
    std::string report = as(Who::kNobody, [&](Report& rep) { ALLOWED(symlink(victim.c_str(), (dev + ".ctl").c_str())); });
    REQUIRE(report == "");
    CHECK(run(mkfs + dev, &out) != 0);
    CHECK(file_mode(dev) == "missing");
    CHECK(slurp(victim).empty());  // never written through the link
  }
  SECTION("our own control file, more open than the device, is narrowed to the device's mode") {
    std::string dev = dir.file("pmem2");
    REQUIRE(run(mkfs + dev, &out) == 0);
    std::string ctl = daxfs::pmemdev::ControlFile::path_for(dev);
    REQUIRE(chmod(ctl.c_str(), 0666) == 0);
    CHECK(run(program("daxfsctl") + " list-errors " + dev, &out) == 0);
    CHECK(out.find("pmemdev: " + ctl + " was mode 0666, more open than the device: narrowed to 0600\n") !=
          std::string::npos);
    CHECK(file_mode(ctl) == "0600");
    REQUIRE(chmod(dev.c_str(), 0640) == 0);
    REQUIRE(chmod(ctl.c_str(), 0644) == 0);
    CHECK(run(program("daxfsctl") + " list-errors " + dev, &out) == 0);
    CHECK(file_mode(ctl) == "0640");
  }
}
