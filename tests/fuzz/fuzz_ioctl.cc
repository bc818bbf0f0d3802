// libFuzzer harness "ioctl": the daemon's ioctl handler (fs/fuse/ioctl.cc, op_ioctl) in process,
// against a mounted Filesystem (and a DaxService for the DAX ioctls), with adversarial argument
// structs, sizes, callers and file handles. libfuse is not linked: the few calls the handler
// makes (fuse_req_ctx, fuse_req_userdata, fuse_req_getgroups, fuse_reply_err, fuse_reply_ioctl)
// are answered here, and record the reply.
//
// Per input: the template device (template_image.h: mkfs + files of several owners and modes, a
// reflink, an unwritten extent, a directory only root may search) is restored and mounted, then up
// to 8 calls, each
//   u8 command (one of the 16 the daemon knows, or a raw u32) | u8 target inode | u8 caller
//   (root, the files' owner 1000, nobody; and its groups) | u8 file handle (none, a directory's,
//   read, write, read-write, append, raw) | u8 shape | the argument struct
// `shape` says whether in_size/out_size are what the FUSE kernel sends for the command
// (_IOC_SIZE when _IOC_WRITE / _IOC_READ) or arbitrary, and whether the struct is built field by
// field (inode numbers and generations that exist, interesting offsets and lengths, reserved
// words zero or not) or raw bytes. The input buffer is allocated at exactly in_size bytes, so
// ASan catches any read beyond it.
// Asserted: every call replies exactly once, with a positive errno or a result of 0; with the
// kernel's sizes, never more bytes than out_size; a call by a caller that is not root never
// changes the bytes of a file only root may write; and after the calls, unmounted, fsck -n finds
// the device clean (no sequence of ioctls corrupts the filesystem).
#include <fcntl.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <linux/futex.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "daxcore/daxfs_ioctl.h"
#include "daxcore/protocol.h"
#include "daxcore/service.h"
#include "fs/fsck/fsck.h"
#include "fs/fsck/report.h"
#include "fs/fuse/request.h"
#include "tests/fuzz/fuzz_util.h"
#include "tests/fuzz/template_image.h"

#ifndef XFS_IOC_GOINGDOWN
#define XFS_IOC_GOINGDOWN _IOR('X', 125, uint32_t)
#endif

using namespace daxfs;
using daxfs::fuzz::Input;

// The request libfuse would hand the handler, and what the handler replied.
struct fuse_req {
  daxfs::fuse::Daemon* daemon = nullptr;
  fuse_ctx ctx{};
  std::vector<gid_t> groups;
  int replies = 0;
  bool replied_error = false;
  int error = 0;  // of fuse_reply_err
  int result = 0;
  size_t reply_size = 0;
};

// The libfuse calls fs/fuse/ioctl.cc makes, answered in process.
extern "C" {
void* fuse_req_userdata(fuse_req_t req) { return req->daemon; }
const struct fuse_ctx* fuse_req_ctx(fuse_req_t req) { return &req->ctx; }
int fuse_req_getgroups(fuse_req_t req, int size, gid_t list[]) {
  // As libfuse: the total count, even when larger than `size`.
  for (int i = 0; i < size && i < static_cast<int>(req->groups.size()); i++) list[i] = req->groups[i];
  return static_cast<int>(req->groups.size());
}
int fuse_reply_err(fuse_req_t req, int err) {
  req->replies++;
  req->replied_error = true;
  req->error = err;
  return 0;
}
int fuse_reply_ioctl(fuse_req_t req, int result, const void* buf, size_t size) {
  req->replies++;
  req->result = result;
  req->reply_size = size;
  if (size > 0) {
    FUZZ_CHECK(buf != nullptr, "fuse_reply_ioctl with a size and no buffer");
    // Touch every byte, as libfuse's writev to /dev/fuse would: ASan reports a reply buffer
    // shorter than its size.
    std::string copy(static_cast<const char*>(buf), size);
    (void)copy;
  }
  return 0;
}
}

namespace {

constexpr uint64_t kB = fs::kBlockSize;
constexpr uint32_t kUser = 1000;
constexpr uint32_t kNobody = 65534;

struct Files {
  uint64_t root, a, b, c, u, priv, secret, sym, fifo, dir, suid;
  std::string a_data;  // a: root's, 0644: only root may change it
};
Files g_files;

void populate(fs::Filesystem& f) {
  const fs::Cred root{0, 0, 0}, user{kUser, kUser, 0};
  Files& n = g_files;
  n.root = f.root_ino();
  auto make = [&](uint64_t parent, const char* name, uint32_t mode, const fs::Cred& cred) {
    return FUZZ_SETUP(f.mknod(parent, name, mode, 0, cred))->st_ino;
  };
  n.a = make(n.root, "a", S_IFREG | 0644, root);
  n.a_data.assign(64 * kB, 'A');
  for (size_t i = 0; i < n.a_data.size(); i += 97) n.a_data[i] = static_cast<char>(i / 97);
  (void)FUZZ_SETUP(f.write(n.a, 0, n.a_data.data(), n.a_data.size()));
  n.b = make(n.root, "b", S_IFREG | 0666, root);
  (void)FUZZ_SETUP(f.clone_range(n.a, 0, n.b, 0, 32 * kB));  // shared blocks
  n.c = make(n.root, "c", S_IFREG | 0664, user);
  std::string c_data(8 * kB, 'C');
  (void)FUZZ_SETUP(f.write(n.c, 0, c_data.data(), c_data.size()));
  (void)FUZZ_SETUP(f.write(n.c, 24 * kB, c_data.data(), c_data.size()));  // a hole between
  n.u = make(n.root, "u", S_IFREG | 0600, user);
  (void)FUZZ_SETUP(f.fallocate(n.u, 0, 0, 16 * kB));  // unwritten
  n.priv = FUZZ_SETUP(f.mkdir(n.root, "priv", 0700, root))->st_ino;
  n.secret = make(n.priv, "secret", S_IFREG | 0644, root);
  (void)FUZZ_SETUP(f.write(n.secret, 0, "secret", 6));
  n.sym = FUZZ_SETUP(f.symlink(n.root, "sym", "a", root))->st_ino;
  n.fifo = make(n.root, "fifo", S_IFIFO | 0666, root);
  n.dir = FUZZ_SETUP(f.mkdir(n.root, "d", 0777, user))->st_ino;
  n.suid = make(n.dir, "suid", S_IFREG | 04775, user);
  (void)FUZZ_SETUP(f.write(n.suid, 0, c_data.data(), c_data.size()));
  (void)FUZZ_SETUP(f.set_xflags(n.c, {FS_XFLAG_DAX, 0, 0}));
}

fuzz::TemplateImage& image() {
  static fuzz::TemplateImage t(fuzz::WorkDir::get().file("ioctl"), populate);
  return t;
}

// The client's end of a DAX channel, made once: a sealed memfd of the channel's size, and the
// image lock the daemon looks for (a second open, OFD-locked). Its descriptor number is one of
// the values the connect call quotes.
struct ChannelMemfd {
  int fd = -1, lock_fd = -1;
  daxfs_dax_channel* chan = nullptr;
  ChannelMemfd() {
    fd = static_cast<int>(syscall(SYS_memfd_create, "fuzz-chan", MFD_CLOEXEC | MFD_ALLOW_SEALING));
    FUZZ_CHECK(fd >= 0 && ftruncate(fd, sizeof(daxfs_dax_channel)) == 0 &&
                   fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW) == 0,
               "cannot make the channel memfd");
    lock_fd = open(("/proc/self/fd/" + std::to_string(fd)).c_str(), O_RDWR | O_CLOEXEC);
    struct flock lk {};
    lk.l_type = F_WRLCK;
    FUZZ_CHECK(lock_fd >= 0 && fcntl(lock_fd, F_OFD_SETLK, &lk) == 0, "cannot lock the channel memfd");
    void* p = mmap(nullptr, sizeof(daxfs_dax_channel), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    FUZZ_CHECK(p != MAP_FAILED, "cannot map the channel memfd");
    chan = static_cast<daxfs_dax_channel*>(p);
  }
  // Acknowledges every revoke the daemon will ever post (the daemon clamps the count to what it
  // posted): the service's stop and shutdown wait for acknowledgements, and kill the process
  // that does not give them: this one.
  void ack_everything() { __atomic_store_n(&chan->revoke_acked, UINT64_MAX, __ATOMIC_RELEASE); }
};

ChannelMemfd& channel_memfd() {
  static ChannelMemfd m;
  return m;
}

// The filesystem of the current input, for a DAX service that outlives the mounts: creating a
// service (its registry) per input would cost more than the rest of the input. The service only
// asks dax_file() here (grant); nothing faults.
class CurrentFiles : public dax::DaxFiles {
 public:
  fs::Filesystem* fs = nullptr;
  Result<dax::IomapPair> iomap_begin(uint64_t ino, uint64_t offset, uint64_t length, uint32_t ops) override {
    if (!fs) return error(ENOENT);
    return fs->iomap_begin(ino, offset, length, ops);
  }
  Status iomap_end(uint64_t ino, const dax::Iomap& map, uint64_t done, uint32_t ops) override {
    if (!fs) return error(ENOENT);
    return fs->iomap_end(ino, map, done, ops);
  }
  bool dax_file(uint64_t ino) override { return fs && fs->dax_file(ino); }
  Status hold_inode(uint64_t ino) override { return fs ? fs->hold_inode(ino) : error(ENOENT); }
  void release_inode(uint64_t ino) override {
    if (fs) fs->release_inode(ino);
  }
};

// The DAX service, made once. It is not the filesystem's layout sink: no process maps anything
// here, so a break would find nothing, and a shutdown (XFS_IOC_GOINGDOWN) would end the service
// for every later input.
struct Dax {
  CurrentFiles files;
  std::unique_ptr<dax::DaxService> service;
  Dax() {
    channel_memfd();  // made first, so that it outlives the service at exit
    dax::DaxOptions o;
    o.device = image().path();
    o.mountpoint = "/fuzz";
    o.registry = "daxfs-fuzz-ioctl." + std::to_string(getpid());
    o.device_size = fuzz::TemplateImage::kSize;
    o.lease_ms = 1000;
    auto s = dax::DaxService::create(files, o, nullptr);
    FUZZ_CHECK(s, std::string("cannot create the DAX service: ") + strerror(s.error()));
    service = std::move(s).value();
    service->start();
  }
  ~Dax() {
    channel_memfd().ack_everything();
    service->stop();
  }
  // Ends this process's session, if an earlier input made one: a connect that quotes no token
  // ends the old session before it looks at the (invalid) descriptor.
  void forget_session() {
    daxfs_dax_connect in{};
    in.abi = DAXFS_DAX_ABI;
    in.channel_fd = -1;
    auto r = service->connect(getpid(), 0, in);
    FUZZ_CHECK(!r && r.error() == EBADF, "a connect with no channel did not fail with EBADF");
    // The ended session's thread sleeps on the doorbell (up to 100 ms) before it sees the end
    // and lets go of the session: ring it, so that it is gone before libFuzzer counts this
    // input's allocations (a session still alive then looks like a leak to LeakSanitizer).
    // And wait until the process has no more threads than before the service had sessions.
    daxfs_dax_channel* chan = channel_memfd().chan;
    __atomic_fetch_add(&chan->doorbell, 1, __ATOMIC_RELEASE);
    syscall(SYS_futex, &chan->doorbell, FUTEX_WAKE, INT32_MAX, nullptr, nullptr, 0);
    for (int i = 0; i < 2000 && thread_count() > base_threads; i++) usleep(500);
  }
  static int thread_count() {
    std::ifstream in("/proc/self/status");
    std::string line;
    while (std::getline(in, line))
      if (line.rfind("Threads:", 0) == 0) return atoi(line.c_str() + 8);
    return 0;
  }
  int base_threads = thread_count();
};

Dax& dax_service() {
  static Dax d;
  return d;
}

// One input's mount: the Filesystem, and the DAX service once a DAX command asks for it.
struct Mount {
  std::unique_ptr<fs::Filesystem> fs;
  fuse::Daemon daemon;

  void start_dax() {
    if (daemon.dax) return;
    Dax& d = dax_service();
    d.files.fs = fs.get();
    d.forget_session();
    daemon.dax = d.service.get();
  }
  void unmount() {
    if (daemon.dax) {
      dax_service().forget_session();
      dax_service().files.fs = nullptr;
    }
    fs.reset();
  }
};

const unsigned kCommands[] = {XFS_IOC_GOINGDOWN,        FS_IOC_FSGETXATTR,       FS_IOC_FSSETXATTR,
                              FS_IOC_GETFLAGS,          FS_IOC_GETVERSION,       DAXFS_IOC_COUNTERS,
                              DAXFS_IOC_CLONE_RANGE,    DAXFS_IOC_DEDUPE_RANGE,  DAXFS_IOC_UNSHARE_RANGE,
                              DAXFS_IOC_COLLAPSE_RANGE, DAXFS_IOC_INSERT_RANGE,  DAXFS_IOC_FIEMAP,
                              DAXFS_IOC_FSMAP,          DAXFS_IOC_FILEINFO,      DAXFS_IOC_DAX_CONNECT,
                              DAXFS_IOC_DAX_GRANT};
constexpr size_t kCommandCount = sizeof kCommands / sizeof kCommands[0];

uint64_t pick_ino(Input& in) {
  const Files& n = g_files;
  const uint64_t known[] = {FUSE_ROOT_ID, n.root, n.a, n.b, n.c, n.u, n.priv, n.secret, n.sym, n.fifo, n.dir, n.suid};
  uint8_t v = in.u8();
  if (v < 240) return known[v % (sizeof known / sizeof known[0])];
  switch (v % 4) {
    case 0: return 0;
    case 1: return n.a + 1 + v % 8;  // a free slot nearby, most likely
    case 2: return in.u16();
    default: return in.u64();
  }
}

template <size_t N>
void fill_reserved(Input& in, uint64_t (&reserved)[N]) {
  if ((in.u8() & 7) != 0) return;  // mostly zero: the handler's checks start there
  reserved[in.u8() % N] = in.u64();
}

// The argument struct of `cmd`, built field by field (most bytes valid, so the call goes deep).
std::string build_struct(Input& in, unsigned cmd, fs::Filesystem& f) {
  std::string out(_IOC_SIZE(cmd), '\0');
  void* p = out.data();
  switch (cmd) {
    case DAXFS_IOC_CLONE_RANGE:
    case DAXFS_IOC_DEDUPE_RANGE: {
      daxfs_clone_range a{};
      a.src_ino = pick_ino(in);
      uint64_t src = a.src_ino == FUSE_ROOT_ID ? f.root_ino() : a.src_ino;
      a.src_generation = in.flip() ? f.generation(src) : in.u64();
      a.src_offset = fuzz::interesting_u64(in);
      a.src_length = fuzz::interesting_u64(in);
      a.dest_offset = fuzz::interesting_u64(in);
      a.bytes = in.flip() ? 0 : in.u64();
      fill_reserved(in, a.reserved);
      memcpy(p, &a, sizeof a);
      break;
    }
    case DAXFS_IOC_UNSHARE_RANGE:
    case DAXFS_IOC_COLLAPSE_RANGE:
    case DAXFS_IOC_INSERT_RANGE: {
      daxfs_range r{};
      r.offset = fuzz::interesting_u64(in);
      r.length = fuzz::interesting_u64(in);
      fill_reserved(in, r.reserved);
      memcpy(p, &r, sizeof r);
      break;
    }
    case DAXFS_IOC_FIEMAP: {
      auto m = std::make_unique<daxfs_fiemap>();
      memset(m.get(), 0, sizeof *m);
      m->start = fuzz::interesting_u64(in);
      m->count = in.flip() ? 0 : in.u64();
      fill_reserved(in, m->reserved);
      memcpy(p, m.get(), sizeof *m);
      break;
    }
    case DAXFS_IOC_FSMAP: {
      auto m = std::make_unique<daxfs_fsmap>();
      memset(m.get(), 0, sizeof *m);
      m->start = fuzz::interesting_u64(in);
      m->end = in.flip() ? UINT64_MAX : fuzz::interesting_u64(in);
      m->skip = in.flip() ? 0 : fuzz::interesting_u64(in);
      memcpy(p, m.get(), sizeof *m);
      break;
    }
    case FS_IOC_FSSETXATTR: {
      fsxattr x{};
      static const uint32_t kFlags[] = {0, FS_XFLAG_DAX, FS_XFLAG_IMMUTABLE, FS_XFLAG_APPEND, ~0u};
      x.fsx_xflags = in.flip() ? kFlags[in.u8() % 5] : in.u32();
      x.fsx_extsize = in.flip() ? 0 : in.u32();
      x.fsx_projid = in.flip() ? 0 : in.u32();
      memcpy(p, &x, sizeof x);
      break;
    }
    case DAXFS_IOC_DAX_CONNECT: {
      auto c = std::make_unique<daxfs_dax_connect>();
      memset(c.get(), 0, sizeof *c);
      c->abi = in.flip() ? DAXFS_DAX_ABI : in.u32();
      uint8_t fd = in.u8();
      c->channel_fd = fd < 200 ? channel_memfd().fd : fd < 250 ? fd % 8 : static_cast<int32_t>(in.u32());
      c->token = in.flip() ? 0 : in.u64();
      fill_reserved(in, c->reserved);
      memcpy(p, c.get(), sizeof *c);
      break;
    }
    default: {  // the rest take nothing in, or a raw struct
      std::string raw = in.bytes(out.size());
      memcpy(p, raw.data(), raw.size());
    }
  }
  return out;
}

// A process with no capabilities (a forked child that became nobody and waits), whose pid the
// calls of users other than root carry: the handler reads the caller's capabilities from
// /proc/PID/status, as the kernel's capable() would check the calling thread's. Root's calls
// carry this process's pid (all capabilities).
pid_t capless_pid() {
  static pid_t pid = [] {
    pid_t child = fork();
    if (child == 0) {
      pid_t parent = getppid();
      if (setresgid(kNobody, kNobody, kNobody) != 0 || setresuid(kNobody, kNobody, kNobody) != 0) _exit(1);
      // Gone with the fuzzer (set after the uid change, which clears it; then a parent already gone).
      if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != parent) _exit(0);
      for (;;) pause();
    }
    FUZZ_CHECK(child > 0, "fork of the capability-less caller failed");
    // Wait until it has dropped its capabilities: its CapEff reads 0.
    for (int i = 0; i < 1000; i++) {
      std::ifstream status("/proc/" + std::to_string(child) + "/status");
      std::string line;
      while (std::getline(status, line))
        if (line.rfind("CapEff:", 0) == 0 && line.find_first_not_of("0\t ", 7) == std::string::npos) return child;
      usleep(1000);
    }
    FUZZ_CHECK(false, "the capability-less caller did not drop its capabilities");
    return child;
  }();
  return pid;
}

void one_call(Input& in, Mount& m, bool& root_called) {
  uint8_t which = in.u8();
  unsigned cmd = which < 240 ? kCommands[which % kCommandCount] : in.u32();
  if (cmd == DAXFS_IOC_DAX_CONNECT || cmd == DAXFS_IOC_DAX_GRANT || (which >= 240 && (which & 1)))
    m.start_dax();  // (sometimes left out for a raw command: then DAX commands are ENOTTY)
  const uint64_t nodeid = pick_ino(in);

  fuse_req req;
  req.daemon = &m.daemon;
  uint8_t who = in.u8();
  static const uint32_t kUids[] = {0, kUser, kNobody};
  req.ctx.uid = kUids[who % 3];
  req.ctx.gid = (who >> 2) & 1 ? kUser : req.ctx.uid;
  req.ctx.pid = req.ctx.uid == 0 ? getpid() : capless_pid();
  req.ctx.umask = 022;
  for (int i = 0; i < (who >> 3) % 4; i++) req.groups.push_back(i == 0 ? kUser : in.u16());
  if ((who >> 5) == 7) req.groups.resize(300, kNobody);  // more than the handler reads
  root_called |= req.ctx.uid == 0;

  fuse_file_info fi{};
  uint8_t handle = in.u8();
  fuse_file_info* fip = &fi;
  static const int kModes[] = {O_RDONLY, O_WRONLY, O_RDWR, O_RDWR | O_APPEND, O_WRONLY | O_APPEND};
  switch (handle % 8) {
    case 0: fip = nullptr; break;
    case 1: fi.fh = 0; break;  // a directory's handle
    case 2: fi.fh = in.u64(); break;
    default: fi.flags = kModes[handle % 5]; fuse::remember_open_flags(&fi);
  }

  const uint8_t shape = in.u8();
  const bool kernel_sizes = (shape & 3) != 0;
  size_t in_size = (_IOC_DIR(cmd) & _IOC_WRITE) ? _IOC_SIZE(cmd) : 0;
  size_t out_size = (_IOC_DIR(cmd) & _IOC_READ) ? _IOC_SIZE(cmd) : 0;
  if (!kernel_sizes) {
    in_size = in.u16() % 8192;
    out_size = in.u16() % 8192;
  }
  std::string content = (shape & 4) ? in.bytes(in_size) : build_struct(in, cmd, *m.fs);
  // Exactly in_size bytes on the heap: a read past the struct the handler was given is an ASan
  // report. (in_size may be smaller or larger than the built struct.)
  std::unique_ptr<char[]> in_buf(new char[in_size ? in_size : 1]);
  memset(in_buf.get(), 0, in_size);
  memcpy(in_buf.get(), content.data(), std::min(in_size, content.size()));

  // The caller's pointer (read by XFS_IOC_GOINGDOWN through process_vm_readv).
  uint32_t caller_word = in.u8() % 4;
  void* arg = &caller_word;
  if (shape & 8) arg = (shape & 16) ? nullptr : reinterpret_cast<void*>(uintptr_t{0xdead0000});
  unsigned flags = (shape & 0xe0) == 0xe0 ? FUSE_IOCTL_COMPAT : 0;

  fuse::op_ioctl(&req, nodeid, static_cast<int>(cmd), arg, fip, flags, in_buf.get(), in_size, out_size);

  char what_text[128];
  snprintf(what_text, sizeof what_text, "ioctl 0x%x on %llu by uid %u", cmd, static_cast<unsigned long long>(nodeid),
           req.ctx.uid);
  const std::string what = what_text;
  FUZZ_CHECK(req.replies == 1, what + ": " + std::to_string(req.replies) + " replies");
  if (req.replied_error)
    FUZZ_CHECK(req.error > 0 && req.error < 4096, what + ": fuse_reply_err(" + std::to_string(req.error) + ")");
  FUZZ_CHECK(req.result == 0, what + ": result " + std::to_string(req.result));
  if (kernel_sizes)
    FUZZ_CHECK(req.reply_size <= out_size, what + ": " + std::to_string(req.reply_size) + " bytes replied, out_size " +
                                               std::to_string(out_size));
  if (cmd == DAXFS_IOC_DAX_CONNECT && !req.replied_error) channel_memfd().ack_everything();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Input in(data, size);
  fuzz::TemplateImage& t = image();
  t.restore();
  Mount m;
  {
    std::string why;
    auto f = t.mount({}, why);
    FUZZ_CHECK(f, "the template does not mount: " + why);
    m.fs = std::move(f).value();
  }
  m.daemon.fs = m.fs.get();
  bool root_called = false;
  for (int i = 0; i < 8 && !in.done(); i++) one_call(in, m, root_called);

  if (!root_called) {
    // Nobody but root may change a: 0644, root's, in a directory others cannot write.
    std::string now(g_files.a_data.size() + 1, '\0');
    auto n = m.fs->read(g_files.a, 0, now.size(), now.data());
    auto st = m.fs->getattr(g_files.a);
    FUZZ_CHECK(n && st, "file a cannot be read");
    now.resize(*n);
    FUZZ_CHECK(now == g_files.a_data && st->st_mode == (S_IFREG | 0644),
               "a caller other than root changed root's file a");
  }
  m.unmount();
  fsck::Report r = fsck::run_fsck({t.path(), fsck::Mode::kCheck});
  FUZZ_CHECK(r.exit_code == fsck::kExitClean, "fsck -n after the ioctls:\n" + fsck::format_text(r) + r.error);
  return 0;
}
