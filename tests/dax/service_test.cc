// DaxService (daxcore/service.h) against a fake filesystem: no fs/ code, no FUSE. The client is
// a forked child that only holds the channel memfd and its image lock (created before the fork,
// so the test knows the descriptor numbers); the test itself plays the client's part in the
// channel (requests, acknowledgements) through its own mapping of the same memfd.
#include <fcntl.h>
#include <linux/futex.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <cstring>
#include <functional>
#include <map>
#include <mutex>
#include <thread>

#include "daxcore/service.h"
#include "tests/dax/fake_dax_files.h"

namespace dax = daxfs::dax;
using daxfs::Result;
using daxfs::Status;

namespace {

constexpr uint64_t kB = 4096;
using daxfs::test::FakeFiles;
constexpr uint64_t kBase = 0x7f0000000000;  // where the fake client "maps" file offset 0

// A client process: a child that holds the channel memfd and its image lock and waits.
class FakeClient {
 public:
  FakeClient() {
    mfd_ = static_cast<int>(syscall(SYS_memfd_create, "chan", MFD_CLOEXEC | MFD_ALLOW_SEALING));
    REQUIRE(mfd_ >= 0);
    REQUIRE(ftruncate(mfd_, sizeof(daxfs_dax_channel)) == 0);
    REQUIRE(fcntl(mfd_, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW) == 0);
    lfd_ = open(("/proc/self/fd/" + std::to_string(mfd_)).c_str(), O_RDWR | O_CLOEXEC);
    REQUIRE(lfd_ >= 0);
    struct flock lk{};
    lk.l_type = F_WRLCK;
    REQUIRE(fcntl(lfd_, F_OFD_SETLK, &lk) == 0);
    chan_ = static_cast<daxfs_dax_channel*>(
        mmap(nullptr, sizeof(daxfs_dax_channel), PROT_READ | PROT_WRITE, MAP_SHARED, mfd_, 0));
    REQUIRE(chan_ != MAP_FAILED);
    pid_ = fork();
    REQUIRE(pid_ >= 0);
    if (pid_ == 0) {
      for (;;) pause();
    }
  }
  ~FakeClient() {
    kill(pid_, SIGKILL);
    int st;
    waitpid(pid_, &st, 0);
    munmap(chan_, sizeof *chan_);
    close(lfd_);
    close(mfd_);
  }
  // Connects as the child (the service takes the memfd from the child by its number).
  void connect(dax::DaxService& s) {
    daxfs_dax_connect in{};
    in.abi = DAXFS_DAX_ABI;
    in.channel_fd = mfd_;
    auto out = s.connect(pid_, 0, in);
    REQUIRE(out);
    token_ = out->token;
  }
  // One request through slot 0; the reply.
  daxfs_dax_request send(uint32_t op, uint64_t ino, uint64_t offset, uint64_t length, uint32_t flags = 0) {
    daxfs_dax_request& slot = chan_->requests[0];
    slot.op = op, slot.token = token_, slot.ino = ino, slot.offset = offset, slot.length = length;
    slot.flags = flags, slot.prot = PROT_READ | PROT_WRITE;
    slot.address = kBase + offset;  // one mapping of the whole file, at kBase
    __atomic_store_n(&slot.state, DAXFS_REQ_SUBMITTED, __ATOMIC_RELEASE);
    __atomic_fetch_add(&chan_->doorbell, 1, __ATOMIC_RELEASE);
    syscall(SYS_futex, &chan_->doorbell, FUTEX_WAKE, INT32_MAX, nullptr, nullptr, 0);
    for (int i = 0; i < 500 && __atomic_load_n(&slot.state, __ATOMIC_ACQUIRE) != DAXFS_REQ_REPLIED; i++)
      usleep(2000);
    REQUIRE(slot.state == DAXFS_REQ_REPLIED);
    daxfs_dax_request reply = slot;
    __atomic_store_n(&slot.state, DAXFS_REQ_FREE, __ATOMIC_RELEASE);
    return reply;
  }
  uint64_t posted() const { return __atomic_load_n(&chan_->revoke_posted, __ATOMIC_ACQUIRE); }
  const daxfs_dax_revoke& revoke(uint64_t seq) const { return chan_->ring[seq % DAXFS_DAX_RING]; }
  void ack(uint64_t seq) {
    __atomic_store_n(&chan_->revoke_acked, seq, __ATOMIC_RELEASE);
    __atomic_fetch_add(&chan_->ack_bell, 1, __ATOMIC_RELEASE);
    syscall(SYS_futex, &chan_->ack_bell, FUTEX_WAKE, INT32_MAX, nullptr, nullptr, 0);
  }
  pid_t pid() const { return pid_; }
  bool dead() {
    int st;
    return waitpid(pid_, &st, WNOHANG) == pid_;
  }

 private:
  int mfd_ = -1, lfd_ = -1;
  pid_t pid_ = -1;
  daxfs_dax_channel* chan_ = nullptr;
  uint64_t token_ = 0;
};

struct Fixture {
  FakeFiles files;
  std::unique_ptr<dax::DaxService> service;
  explicit Fixture(uint32_t lease_ms = 2000) {
    files.files[10] = {64 * kB, 1 << 20};          // written, device bytes from 1 MiB
    files.files[11] = {64 * kB, dax::kNoAddress};  // a hole
    dax::DaxOptions o;
    o.device = "/nonexistent";
    o.registry = "daxfs-service-test." + std::to_string(getpid());
    o.lease_ms = lease_ms;
    auto s = dax::DaxService::create(files, o, nullptr);
    REQUIRE(s);
    service = std::move(*s);
  }
  ~Fixture() { service->stop(); }
};

}  // namespace

TEST_CASE("a fault is answered from the filesystem's iomap and recorded; unmap releases the inode",
          "[dax][service]") {
  Fixture f;
  FakeClient c;
  c.connect(*f.service);
  REQUIRE(f.service->grant(c.pid(), 10, true));
  auto r = c.send(DAXFS_OP_FAULT, 10, 8 * kB, 4 * kB, DAXFS_FAULT_WRITE);
  CHECK(r.error == 0);
  CHECK(r.kind == DAXFS_MAP_DEVICE);
  CHECK(r.r_device == (1 << 20) + 8 * kB);
  CHECK(r.r_prot == (PROT_READ | PROT_WRITE));
  CHECK(f.files.held(10) == 1);  // the inode is held while mapped
  // The same fault again: no second record, still one hold.
  c.send(DAXFS_OP_FAULT, 10, 8 * kB, 4 * kB, DAXFS_FAULT_WRITE);
  CHECK(f.files.held(10) == 1);
  CHECK(f.service->counters().faults == 2);
  c.send(DAXFS_OP_UNMAP, 10, 0, 64 * kB);
  CHECK(f.files.held(10) == 0);
  // A hole maps the zero page read-only; past EOF is refused.
  REQUIRE(f.service->grant(c.pid(), 11, false));
  r = c.send(DAXFS_OP_FAULT, 11, 0, 64 * kB);
  CHECK(r.kind == DAXFS_MAP_ZERO);
  CHECK(r.r_prot == PROT_READ);
  CHECK(c.send(DAXFS_OP_FAULT, 11, 64 * kB, kB * 4).error == DAXFS_ERR_BEYOND_EOF);
  CHECK(c.send(DAXFS_OP_FAULT, 11, 0, 4 * kB, DAXFS_FAULT_WRITE).error == EACCES);  // read-only grant
}

TEST_CASE("a fault sees the size and the blocks of one moment: a truncate meanwhile is past EOF",
          "[dax][service]") {
  // The regression: the size was read before iomap_begin, the blocks after it; a truncate that
  // ran in between (its break found no mapping yet) left a zero page mapped past the new EOF.
  Fixture f;
  FakeClient c;
  c.connect(*f.service);
  REQUIRE(f.service->grant(c.pid(), 11, true));
  f.files.on_next_begin([&] {  // the truncate completes while the fault waits for the file's locks
    f.service->break_layout(11, 0, dax::kToEnd, dax::LayoutChange::kTruncate);
    std::lock_guard lock(f.files.mu);
    f.files.files[11].size = 0;
  });
  CHECK(c.send(DAXFS_OP_FAULT, 11, 0, 64 * kB).error == DAXFS_ERR_BEYOND_EOF);
  CHECK(c.send(DAXFS_OP_FAULT, 11, 0, 4 * kB, DAXFS_FAULT_WRITE).error == DAXFS_ERR_BEYOND_EOF);
  CHECK(f.files.held(11) == 0);  // no record, no hold
  CHECK(f.service->counters().faults == 0);
  // A shrink to a partial page: the answer stops at EOF rounded up to the page.
  {
    std::lock_guard lock(f.files.mu);
    f.files.files[11].size = 5 * kB + 1;
  }
  auto r = c.send(DAXFS_OP_FAULT, 11, 0, 64 * kB);
  CHECK(r.error == 0);
  CHECK(r.r_length == 8 * kB);
}

TEST_CASE("a layout break revokes the mappers of the range and waits for their acknowledgement",
          "[dax][service]") {
  Fixture f;
  FakeClient c;
  c.connect(*f.service);
  REQUIRE(f.service->grant(c.pid(), 10, true));
  c.send(DAXFS_OP_FAULT, 10, 0, 16 * kB);
  // A break elsewhere in the file: nothing to revoke.
  f.service->break_layout(10, 32 * kB, 4 * kB, dax::LayoutChange::kPunch);
  CHECK(c.posted() == 0);
  std::atomic<bool> returned{false};
  std::thread breaker([&] {
    f.service->break_layout(10, 4 * kB, 4 * kB, dax::LayoutChange::kPunch);
    returned = true;
  });
  for (int i = 0; i < 500 && c.posted() == 0; i++) usleep(1000);
  REQUIRE(c.posted() == 1);
  CHECK(c.revoke(1).ino == 10);
  CHECK(c.revoke(1).offset == 4 * kB);
  CHECK(c.revoke(1).why == DAXFS_REVOKE_LAYOUT);
  usleep(50000);
  CHECK_FALSE(returned);  // waits for the client
  c.ack(1);
  breaker.join();
  CHECK(returned);
  CHECK_FALSE(c.dead());
  // The record was trimmed, not dropped: a break of what stays revokes again.
  std::thread again([&] { f.service->break_layout(10, 12 * kB, 4 * kB, dax::LayoutChange::kTruncate); });
  for (int i = 0; i < 500 && c.posted() == 1; i++) usleep(1000);
  CHECK(c.posted() == 2);
  c.ack(2);
  again.join();
  auto counters = f.service->counters();
  CHECK(counters.layout_breaks == 2);
  CHECK(counters.kills == 0);
}

TEST_CASE("a mapper that does not acknowledge within the lease is killed", "[dax][service]") {
  Fixture f(200);
  FakeClient c;
  c.connect(*f.service);
  REQUIRE(f.service->grant(c.pid(), 10, true));
  c.send(DAXFS_OP_FAULT, 10, 0, 16 * kB);
  auto t0 = std::chrono::steady_clock::now();
  f.service->break_layout(10, 0, dax::kToEnd, dax::LayoutChange::kTruncate);
  CHECK(std::chrono::steady_clock::now() - t0 >= std::chrono::milliseconds(180));
  for (int i = 0; i < 100 && !c.dead(); i++) usleep(10000);
  CHECK(f.service->counters().kills == 1);
  CHECK(f.files.held(10) == 0);  // its records went with it
}

TEST_CASE("a break that crosses a fault makes the fault ask again", "[dax][service]") {
  Fixture f;
  FakeClient c;
  c.connect(*f.service);
  REQUIRE(f.service->grant(c.pid(), 10, true));
  // Inside the fault's iomap_begin the file's blocks move (a break runs, nobody maps yet).
  f.files.on_next_begin([&] {
    f.service->break_layout(10, 0, dax::kToEnd, dax::LayoutChange::kRemapInto);
    std::lock_guard lock(f.files.mu);
    f.files.files[10].address = 8 << 20;
  });
  auto r = c.send(DAXFS_OP_FAULT, 10, 0, 4 * kB);
  CHECK(r.error == 0);
  CHECK(r.r_device == 8 << 20);  // the new blocks, never the old ones
  CHECK(f.service->counters().faults_retried == 1);
}

TEST_CASE("a kFill break revokes zero-page mappings only; long-term pins are refused", "[dax][service]") {
  Fixture f;
  FakeClient c;
  c.connect(*f.service);
  REQUIRE(f.service->grant(c.pid(), 10, true));
  REQUIRE(f.service->grant(c.pid(), 11, true));
  c.send(DAXFS_OP_FAULT, 10, 0, 16 * kB);  // device pages
  f.service->break_layout(10, 0, 16 * kB, dax::LayoutChange::kFill);
  CHECK(c.posted() == 0);
  c.send(DAXFS_OP_FAULT, 11, 0, 16 * kB);  // zero pages
  std::thread filler([&] { f.service->break_layout(11, 0, 4 * kB, dax::LayoutChange::kFill); });
  for (int i = 0; i < 500 && c.posted() == 0; i++) usleep(1000);
  CHECK(c.posted() == 1);
  c.ack(1);
  filler.join();
  CHECK(c.send(DAXFS_OP_PIN, 10, 0, 4 * kB, DAXFS_PIN_LONGTERM).error == EOPNOTSUPP);
  CHECK(c.send(DAXFS_OP_PIN, 10, 0, 4 * kB).error == 0);
  CHECK(c.send(DAXFS_OP_PIN, 11, 0, 4 * kB).error == EFAULT);  // a hole has nothing to pin
  CHECK(f.service->counters().pins == 1);
  CHECK(f.service->counters().pins_refused == 1);
}
