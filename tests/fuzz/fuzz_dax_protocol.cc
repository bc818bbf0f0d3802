// libFuzzer harness "dax_protocol": the DAX shared-memory protocol (daxcore/protocol.h) as the
// daemon sees it. A real DaxService (daxcore/service.cc: the session thread, handle(), fault,
// unmap, pin; daxcore/channel.cc) serves one session over the fake filesystem of
// tests/dax/fake_dax_files.h; this process plays the client through its own mapping of the
// channel memfd, which a forked child holds (the session is the child's, as in
// tests/dax/service_test.cc: a kill never hits the fuzzer).
//
// The fake files (inode: what iomap_begin answers; grant):
//   10 written, 11 hole (read-only grant), 12 unwritten, 13 shared with a copy-on-write target,
//   14 poisoned, 15 hole with an allocation target, 16 written, 1 TiB - 4 KiB long; all granted
//   read-write but 11; 17 exists but is not granted; other inodes do not exist.
// Input: up to 32 operations, each u8 op | payload:
//   request  a slot (u8), then every field of struct daxfs_dax_request: op (one of the four or
//            raw), token (the session's or raw), seq, ino, offset, length, address, flags, prot,
//            state (SUBMITTED or raw), garbage in the reply fields or not; the doorbell rung or not
//   wait     for every submitted slot's reply (what the client library does)
//   scribble a channel word the client may write (header words, a revoke ring entry), raw value
//            (revoke_acked: only more than was posted, which the daemon clamps)
//   break    a layout break (inode, range, why) on a thread while the client acknowledges
//            revokes (and, once the break waits for pins, unpins)
//   failure  a memory failure over 1-3 owner ranges, the same way
// Asserted: every submitted request is answered within 5 s (no hang, no lost request), with its
// seq echoed and exactly the reply a model of the service's checks predicts: EPERM for a wrong
// token, EINVAL for an unknown op or a bad range, EACCES without the grant, ENOENT for an unknown
// inode, DAXFS_ERR_BEYOND_EOF, DAXFS_ERR_POISON, EFAULT (pin of a hole), EOPNOTSUPP (long-term
// pin), else success whose mapping lies within the request, at the device address the file's
// blocks are at, never writable beyond the grant, the request's prot, or shared blocks. At the end
// the client unmaps and unpins all it was given: then no inode is held (no record or hold leaks),
// and no client was killed (an honest client never is).
#include <fcntl.h>
#include <linux/futex.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "daxcore/protocol.h"
#include "daxcore/service.h"
#include "tests/dax/fake_dax_files.h"
#include "tests/fuzz/fuzz_util.h"

using namespace daxfs;
using daxfs::fuzz::Input;
using daxfs::test::FakeFiles;

namespace {

constexpr uint64_t kPage = DAXFS_DAX_PAGE;
constexpr uint64_t kTiB = uint64_t{1} << 40;  // every fake file ends below it
constexpr uint64_t kMiB = 1 << 20;

struct FileModel {
  uint64_t ino;
  FakeFiles::File file;
  uint32_t grant;  // DAXFS_DAX_ACCESS_*
};
const std::vector<FileModel>& models() {
  static const std::vector<FileModel> m = {
      {10, {64 * kPage, 1 * kMiB, false, 0, dax::kNoAddress}, DAXFS_DAX_ACCESS_READ | DAXFS_DAX_ACCESS_WRITE},
      {11, {64 * kPage, dax::kNoAddress, false, 0, dax::kNoAddress}, DAXFS_DAX_ACCESS_READ},
      {12, {64 * kPage, 2 * kMiB, true, 0, dax::kNoAddress}, DAXFS_DAX_ACCESS_READ | DAXFS_DAX_ACCESS_WRITE},
      {13, {64 * kPage, 3 * kMiB, false, dax::kIomapShared, 4 * kMiB}, DAXFS_DAX_ACCESS_READ | DAXFS_DAX_ACCESS_WRITE},
      {14, {64 * kPage, 5 * kMiB, false, dax::kIomapPoisoned, dax::kNoAddress},
       DAXFS_DAX_ACCESS_READ | DAXFS_DAX_ACCESS_WRITE},
      {15, {64 * kPage, dax::kNoAddress, false, 0, 6 * kMiB}, DAXFS_DAX_ACCESS_READ | DAXFS_DAX_ACCESS_WRITE},
      {16, {kTiB - kPage, 0, false, 0, dax::kNoAddress}, DAXFS_DAX_ACCESS_READ | DAXFS_DAX_ACCESS_WRITE},
      {17, {64 * kPage, 1 * kMiB, false, 0, dax::kNoAddress}, 0},
  };
  return m;
}
const FileModel* model_of(uint64_t ino) {
  for (const FileModel& m : models())
    if (m.ino == ino) return &m;
  return nullptr;
}

void futex_wake(uint32_t* word) { syscall(SYS_futex, word, FUTEX_WAKE, INT32_MAX, nullptr, nullptr, 0); }

// The service, its fake filesystem, and the client: a child process holding the channel memfd
// and its image lock, and this process's mapping of the channel.
class World {
 public:
  World() {
    for (const FileModel& m : models()) files_.files[m.ino] = m.file;
    dax::DaxOptions o;
    o.device = "/nonexistent";
    o.mountpoint = "/fuzz";
    o.registry = "daxfs-fuzz-dax." + std::to_string(getpid());
    o.lease_ms = 2000;  // an honest client never comes near it
    auto s = dax::DaxService::create(files_, o, nullptr);
    FUZZ_CHECK(s, std::string("cannot create the DAX service: ") + strerror(s.error()));
    service_ = std::move(s).value();
    service_->start();
    connect();
  }
  ~World() {
    ack_everything();
    service_->stop();
    disconnect();
  }

  dax::DaxService& service() { return *service_; }
  FakeFiles& files() { return files_; }
  daxfs_dax_channel* chan() { return chan_; }
  uint64_t token() const { return token_; }

  // Acknowledges every revoke posted so far. Not with the channel's revoke_posted, which the
  // client may have scribbled over (the daemon keeps its own count), but with "all of them":
  // the daemon clamps what a client claims to what it posted. (A client that claims fewer acks
  // than it made may fill the ring, and is then killed as "not listening": right, but that is
  // not what this client does.)
  void ack_posted() {
    if (__atomic_load_n(&chan_->revoke_acked, __ATOMIC_ACQUIRE) != UINT64_MAX) ack_everything();
    __atomic_fetch_add(&chan_->ack_bell, 1, __ATOMIC_RELEASE);
    futex_wake(&chan_->ack_bell);
  }
  // Every revoke that will ever be posted (the daemon clamps the count): for stop().
  void ack_everything() { __atomic_store_n(&chan_->revoke_acked, UINT64_MAX, __ATOMIC_RELEASE); }
  void ring() {
    __atomic_fetch_add(&chan_->doorbell, 1, __ATOMIC_RELEASE);
    futex_wake(&chan_->doorbell);
  }
  bool client_alive() { return waitpid(pid_, nullptr, WNOHANG) == 0; }

 private:
  void connect() {
    mfd_ = static_cast<int>(syscall(SYS_memfd_create, "fuzz-chan", MFD_CLOEXEC | MFD_ALLOW_SEALING));
    FUZZ_CHECK(mfd_ >= 0 && ftruncate(mfd_, sizeof(daxfs_dax_channel)) == 0 &&
                   fcntl(mfd_, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW) == 0,
               "cannot make the channel memfd");
    lfd_ = open(("/proc/self/fd/" + std::to_string(mfd_)).c_str(), O_RDWR | O_CLOEXEC);
    struct flock lk {};
    lk.l_type = F_WRLCK;
    FUZZ_CHECK(lfd_ >= 0 && fcntl(lfd_, F_OFD_SETLK, &lk) == 0, "cannot lock the channel memfd");
    void* p = mmap(nullptr, sizeof(daxfs_dax_channel), PROT_READ | PROT_WRITE, MAP_SHARED, mfd_, 0);
    FUZZ_CHECK(p != MAP_FAILED, "cannot map the channel");
    chan_ = static_cast<daxfs_dax_channel*>(p);
    pid_ = fork();
    FUZZ_CHECK(pid_ >= 0, "fork");
    if (pid_ == 0) {
      prctl(PR_SET_PDEATHSIG, SIGKILL);  // never outlives the fuzzer, even when it crashes
      for (;;) pause();
    }
    daxfs_dax_connect in{};
    in.abi = DAXFS_DAX_ABI;
    in.channel_fd = mfd_;
    auto out = service_->connect(pid_, 0, in);
    FUZZ_CHECK(out, std::string("connect: ") + strerror(out.error()));
    token_ = out->token;
    for (const FileModel& m : models()) {
      if (!m.grant) continue;
      auto g = service_->grant(pid_, m.ino, m.grant & DAXFS_DAX_ACCESS_WRITE);
      FUZZ_CHECK(g && g->access == m.grant, "grant");
    }
  }
  void disconnect() {
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
    munmap(chan_, sizeof *chan_);
    close(lfd_);
    close(mfd_);
  }

  FakeFiles files_;
  std::unique_ptr<dax::DaxService> service_;
  int mfd_ = -1, lfd_ = -1;
  pid_t pid_ = -1;
  daxfs_dax_channel* chan_ = nullptr;
  uint64_t token_ = 0;
};

World& world() {
  static World w;
  return w;
}

// What the client expects of one request, and what it must clean up.
struct Pending {
  bool active = false;
  daxfs_dax_request sent{};
};

// The reply the service's checks predict (0 for success; -1: ENOMEM may come instead of success).
int expected_error(const daxfs_dax_request& in, uint64_t token) {
  if (in.token != token) return EPERM;
  if (in.op < DAXFS_OP_FAULT || in.op > DAXFS_OP_UNPIN) return EINVAL;
  const bool valid = in.offset % kPage == 0 && in.length > 0 && in.length <= kTiB && in.offset < (uint64_t{1} << 63) &&
                     in.offset + in.length <= (uint64_t{1} << 63);
  if (in.op == DAXFS_OP_UNMAP) return 0;  // no reply error, whatever the range
  if (!valid) return EINVAL;
  if (in.op == DAXFS_OP_UNPIN) return 0;
  const FileModel* m = model_of(in.ino);
  if (in.op == DAXFS_OP_PIN && (in.flags & DAXFS_PIN_LONGTERM)) return EOPNOTSUPP;
  const uint32_t grant = m ? m->grant : 0;
  if (in.op == DAXFS_OP_PIN) {
    if (!grant && m) return EACCES;
    if (!m) return EACCES;  // no grant for a file that does not exist either
  } else {
    const bool write = in.flags & DAXFS_FAULT_WRITE;
    if (!(grant & DAXFS_DAX_ACCESS_READ) || (write && !(grant & DAXFS_DAX_ACCESS_WRITE))) return EACCES;
  }
  const uint64_t eof = (m->file.size + 4 * kPage - 1) / (4 * kPage) * (4 * kPage);  // the fake's EOF
  if (in.offset >= eof) return DAXFS_ERR_BEYOND_EOF;
  if (m->file.flags & dax::kIomapPoisoned) return DAXFS_ERR_POISON;
  if (in.op == DAXFS_OP_PIN && (m->file.address == dax::kNoAddress || m->file.unwritten)) return EFAULT;
  return 0;
}

// Checks one reply against the request; notes the mappings the client must drop at the end.
void check_reply(const daxfs_dax_request& in, const daxfs_dax_request& out, uint64_t token,
                 std::set<std::pair<uint64_t, uint64_t>>& mapped, std::set<std::pair<uint64_t, uint64_t>>& pinned) {
  char what[256];
  snprintf(what, sizeof what, "op %u ino %llu offset 0x%llx length 0x%llx flags 0x%x prot 0x%x token %s",
           in.op, static_cast<unsigned long long>(in.ino), static_cast<unsigned long long>(in.offset),
           static_cast<unsigned long long>(in.length), in.flags, in.prot, in.token == token ? "ok" : "wrong");
  FUZZ_CHECK(out.seq == in.seq, std::string(what) + ": seq not echoed");
  const int want = expected_error(in, token);
  const bool may_be_full = want == 0 && (in.op == DAXFS_OP_FAULT || in.op == DAXFS_OP_PIN);
  FUZZ_CHECK(out.error == want || (may_be_full && out.error == ENOMEM),
             std::string(what) + ": error " + std::to_string(out.error) + ", expected " + std::to_string(want));
  if (out.error != 0) return;
  const FileModel* m = model_of(in.ino);
  const uint64_t base = in.address - in.offset;  // the mapping the record belongs to
  if (in.op == DAXFS_OP_FAULT) {
    FUZZ_CHECK(out.r_offset == in.offset && out.r_length > 0 && out.r_length <= in.length,
               std::string(what) + ": the mapping is not within the request");
    const bool write = in.flags & DAXFS_FAULT_WRITE;
    const bool shared = m->file.flags & dax::kIomapShared;
    const bool storable_elsewhere = m->file.write_address != dax::kNoAddress;
    const bool moved = write && storable_elsewhere && (m->file.address == dax::kNoAddress || m->file.unwritten || shared);
    const bool device = moved || (m->file.address != dax::kNoAddress && !m->file.unwritten);
    if (device) {
      FUZZ_CHECK(out.kind == DAXFS_MAP_DEVICE, std::string(what) + ": not a device mapping");
      const uint64_t at = (moved ? m->file.write_address : m->file.address) + out.r_offset;
      FUZZ_CHECK(out.r_device == at, std::string(what) + ": wrong device address");
      const bool may_write = (m->grant & DAXFS_DAX_ACCESS_WRITE) && (in.prot & PROT_WRITE) && (moved || !shared);
      FUZZ_CHECK((out.r_prot & ~uint32_t(PROT_READ | PROT_WRITE)) == 0 && (out.r_prot & PROT_READ),
                 std::string(what) + ": prot " + std::to_string(out.r_prot));
      FUZZ_CHECK(may_write || !(out.r_prot & PROT_WRITE), std::string(what) + ": writable beyond what is allowed");
    } else {
      FUZZ_CHECK(out.kind == DAXFS_MAP_ZERO && out.r_prot == PROT_READ && out.r_device == UINT64_MAX,
                 std::string(what) + ": a hole is not the zero page, read-only");
    }
    mapped.insert({in.ino, base});
  } else if (in.op == DAXFS_OP_PIN) {
    FUZZ_CHECK(out.r_offset == in.offset && out.r_length > 0 && out.r_device == m->file.address + out.r_offset,
               std::string(what) + ": the pin is not of the request's blocks");
    pinned.insert({in.ino, base});
  }
}

// The client side of one input.
class Client {
 public:
  explicit Client(World& w) : w_(w) {}

  void request(Input& in) {
    const uint8_t index = in.u8() % DAXFS_DAX_REQUESTS;
    if (pending_[index].active) wait_one(index);
    daxfs_dax_request r{};
    const uint8_t op = in.u8();
    r.op = op < 240 ? 1 + op % 4 : in.u32();
    r.token = in.u8() < 240 ? w_.token() : in.u64();
    r.seq = in.u32();
    const uint8_t ino = in.u8();
    r.ino = ino < 240 ? 10 + ino % 9 : in.u64();  // 10..18: 18 does not exist
    r.offset = (in.u8() & 3) ? uint64_t{in.u8()} * kPage : fuzz::interesting_u64(in);
    r.length = (in.u8() & 3) ? static_cast<uint64_t>(1 + in.u8() % 32) * kPage : fuzz::interesting_u64(in);
    r.address = (in.u8() & 3) ? 0x7f0000000000 + r.offset : in.u64();
    r.flags = (in.u8() & 3) ? in.u8() & 3 : in.u32();
    r.prot = (in.u8() & 3) ? in.u8() & 3 : in.u32();
    if ((in.u8() & 7) == 0) {  // junk where the reply goes: the daemon must not read it
      r.error = static_cast<int32_t>(in.u32());
      r.kind = in.u32();
      r.r_offset = in.u64(), r.r_length = in.u64(), r.r_device = in.u64();
    }
    daxfs_dax_request& slot = w_.chan()->requests[index];
    memcpy(&slot, &r, sizeof r);
    const uint8_t state = in.u8();
    const uint32_t st = state < 224 ? DAXFS_REQ_SUBMITTED : state % 8;  // CLAIMED, REPLIED, junk: ignored
    __atomic_store_n(&slot.state, st, __ATOMIC_RELEASE);
    if (st == DAXFS_REQ_SUBMITTED) {
      pending_[index] = {true, r};
    } else {
      __atomic_store_n(&slot.state, DAXFS_REQ_FREE, __ATOMIC_RELEASE);  // never served: taken back
    }
    if (state != 255) w_.ring();  // else found on the service's next round (at most 100 ms later)
  }

  void wait_all() {
    for (uint32_t i = 0; i < DAXFS_DAX_REQUESTS; i++)
      if (pending_[i].active) wait_one(i);
  }

  void scribble(Input& in) {
    daxfs_dax_channel* c = w_.chan();
    const uint8_t which = in.u8();
    const uint64_t v = in.u64();
    switch (which % 8) {
      case 0: c->magic = v; break;
      case 1: c->abi = static_cast<uint32_t>(v); break;
      case 2: c->size = static_cast<uint32_t>(v); break;
      case 3: c->dead = static_cast<uint32_t>(v); break;
      case 4: __atomic_store_n(&c->revoke_acked, v | (uint64_t{1} << 63), __ATOMIC_RELEASE); break;  // more than posted
      case 5: __atomic_store_n(&c->revoke_posted, v, __ATOMIC_RELEASE); break;
      case 6: c->pad[v % 4] = v; break;
      default: {
        daxfs_dax_revoke& r = c->ring[(which >> 3) % DAXFS_DAX_RING];
        r.seq = v, r.ino = in.u64(), r.length = in.u64(), r.why = in.u32();
      }
    }
  }

  // A layout break or a memory failure on a thread of its own, while this thread is the
  // client's agent: it acknowledges revokes and, once the break has waited a little (for pins),
  // unpins what it pinned.
  void layout_change(Input& in, bool failure) {
    wait_all();
    std::vector<dax::LayoutSink::FileRange> owners;
    dax::LayoutChange why = dax::LayoutChange::kTruncate;
    const int count = failure ? 1 + in.u8() % 3 : 1;
    for (int i = 0; i < count; i++) {
      const uint8_t ino = in.u8();
      uint64_t offset = (in.u8() & 3) ? uint64_t{in.u8()} * kPage : fuzz::interesting_u64(in);
      uint64_t length = (in.u8() & 3) ? static_cast<uint64_t>(1 + in.u8()) * kPage : fuzz::interesting_u64(in);
      if ((in.u8() & 7) == 0) length = dax::kToEnd;
      owners.push_back({static_cast<uint64_t>(10 + ino % 9), offset, length});
    }
    if (!failure) {
      static const dax::LayoutChange kWhy[] = {dax::LayoutChange::kTruncate, dax::LayoutChange::kPunch,
                                               dax::LayoutChange::kZero,     dax::LayoutChange::kRemapInto,
                                               dax::LayoutChange::kShare,    dax::LayoutChange::kCow,
                                               dax::LayoutChange::kFill,     dax::LayoutChange::kShift};
      why = kWhy[in.u8() % 8];
    }
    std::atomic<bool> done{false};
    std::thread changer([&] {
      if (failure)
        w_.service().memory_failure(owners);
      else
        w_.service().break_layout(owners[0].ino, owners[0].offset, owners[0].length, why);
      done = true;
    });
    const auto start = std::chrono::steady_clock::now();
    bool unpinned = false;
    while (!done) {
      w_.ack_posted();
      if (!unpinned && std::chrono::steady_clock::now() - start > std::chrono::milliseconds(5)) {
        unpin_all();
        unpinned = true;
      }
      FUZZ_CHECK(std::chrono::steady_clock::now() - start < std::chrono::seconds(5),
                 "a layout change did not return within 5 s although the client acknowledged everything");
      usleep(100);
    }
    changer.join();
  }

  // The end of the input: unmap and unpin everything, then nothing may be held.
  void finish() {
    wait_all();
    unpin_all();
    for (const auto& [ino, base] : mapped_) send_and_wait(DAXFS_OP_UNMAP, ino, base);
    mapped_.clear();
    for (const FileModel& m : models()) {
      FUZZ_CHECK(w_.files().held(m.ino) == 0,
                 "inode " + std::to_string(m.ino) + " is still held after the client unmapped and unpinned everything");
    }
    FUZZ_CHECK(w_.client_alive(), "the client was killed");
    FUZZ_CHECK(w_.service().counters().kills == 0, "the service killed an honest client");
  }

 private:
  void wait_one(uint32_t index) {
    daxfs_dax_request& slot = w_.chan()->requests[index];
    const auto start = std::chrono::steady_clock::now();
    while (__atomic_load_n(&slot.state, __ATOMIC_ACQUIRE) != DAXFS_REQ_REPLIED) {
      FUZZ_CHECK(std::chrono::steady_clock::now() - start < std::chrono::seconds(5),
                 "request in slot " + std::to_string(index) + " not answered within 5 s");
      w_.ack_posted();
      usleep(20);
    }
    daxfs_dax_request reply;
    memcpy(&reply, &slot, sizeof reply);
    check_reply(pending_[index].sent, reply, w_.token(), mapped_, pinned_);
    __atomic_store_n(&slot.state, DAXFS_REQ_FREE, __ATOMIC_RELEASE);
    pending_[index].active = false;
  }
  // One well-formed request of the whole of a mapping (below 1 TiB: every fake file ends there).
  void send_and_wait(uint32_t op, uint64_t ino, uint64_t base) {
    const uint32_t index = DAXFS_DAX_REQUESTS - 1;
    if (pending_[index].active) wait_one(index);
    daxfs_dax_request r{};
    r.op = op, r.token = w_.token(), r.ino = ino, r.offset = 0, r.length = kTiB, r.address = base;
    r.seq = 0x5eed;
    daxfs_dax_request& slot = w_.chan()->requests[index];
    memcpy(&slot, &r, sizeof r);
    __atomic_store_n(&slot.state, DAXFS_REQ_SUBMITTED, __ATOMIC_RELEASE);
    pending_[index] = {true, r};
    w_.ring();
    wait_one(index);
  }
  void unpin_all() {
    auto pins = std::move(pinned_);
    pinned_.clear();
    for (const auto& [ino, base] : pins) send_and_wait(DAXFS_OP_UNPIN, ino, base);
  }

  World& w_;
  Pending pending_[DAXFS_DAX_REQUESTS];
  std::set<std::pair<uint64_t, uint64_t>> mapped_, pinned_;  // (ino, address - offset)
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  World& w = world();
  w.ack_posted();  // an earlier input may have left a scribbled count
  Input in(data, size);
  Client client(w);
  for (int i = 0; i < 32 && !in.done(); i++) {
    const uint8_t op = in.u8();
    switch (op % 8) {
      case 0:
      case 1:
      case 2: client.request(in); break;
      case 3: client.wait_all(); break;
      case 4: client.scribble(in); break;
      case 5:
      case 6: client.layout_change(in, false); break;
      default: client.layout_change(in, true); break;
    }
  }
  client.finish();
  return 0;
}
