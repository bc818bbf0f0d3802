// The holder interface across processes: notify_failure delivery per page, pre-removal, claims,
// and the badblock list's survival of writers that are SIGKILLed mid-update.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstring>
#include <mutex>
#include <random>
#include <vector>

#include "pmemdev/device.h"
#include "tests/support/temp_dir.h"

using namespace daxfs::pmemdev;
using daxfs::test::TempDir;

namespace {
constexpr uint64_t kSize = 1 << 20;

std::unique_ptr<Device> open_dev(const std::string& path, Map map = Map::kYes) {
  OpenOptions o;
  o.create = Create::kYes;
  o.size = kSize;
  o.map = map;
  auto d = Device::open(path, o);
  REQUIRE(d);
  return std::move(d).value();
}

// Records every notification it gets.
class RecordingHolder : public Holder {
 public:
  void notify_failure(uint64_t offset, uint64_t length, FailureKind kind) override {
    std::lock_guard<std::mutex> g(mu_);
    calls_.push_back({offset, length, kind});
  }
  struct Call {
    uint64_t offset, length;
    FailureKind kind;
  };
  std::vector<Call> calls() {
    std::lock_guard<std::mutex> g(mu_);
    return calls_;
  }

 private:
  std::mutex mu_;
  std::vector<Call> calls_;
};

// Writes each notification to a pipe, for a holder living in a child process.
class PipeHolder : public Holder {
 public:
  explicit PipeHolder(int fd) : fd_(fd) {}
  void notify_failure(uint64_t offset, uint64_t length, FailureKind kind) override {
    uint64_t rec[3] = {offset, length, static_cast<uint64_t>(kind)};
    if (::write(fd_, rec, sizeof rec) != sizeof rec) _exit(3);
  }

 private:
  int fd_;
};

bool read_full(int fd, void* buf, size_t n) {
  char* p = static_cast<char*>(buf);
  while (n) {
    ssize_t r = ::read(fd, p, n);
    if (r <= 0) return false;
    p += r;
    n -= static_cast<size_t>(r);
  }
  return true;
}

void reap(pid_t pid) {
  int st;
  waitpid(pid, &st, 0);
}
}  // namespace

TEST_CASE("a holder in another process is told of each poisoned page",
          "[pmemdev][holder][multiprocess]") {
  TempDir dir;
  std::string path = dir.file("pmem0");
  open_dev(path);
  int to_parent[2];
  REQUIRE(pipe(to_parent) == 0);
  pid_t child = fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    // The holder: claims the device, reports notifications until killed.
    close(to_parent[0]);
    OpenOptions o;
    auto d = Device::open(path, o);
    if (!d) _exit(1);
    PipeHolder holder(to_parent[1]);
    if (!(*d)->claim(&holder)) _exit(2);
    uint64_t ready[3] = {~0ULL, 0, 0};
    if (::write(to_parent[1], ready, sizeof ready) != sizeof ready) _exit(3);
    pause();
    _exit(0);
  }
  close(to_parent[1]);
  uint64_t rec[3];
  REQUIRE(read_full(to_parent[0], rec, sizeof rec));
  REQUIRE(rec[0] == ~0ULL);

  auto cli = open_dev(path, Map::kNo);  // the CLI's view: no mapping needed
  CHECK(cli->held_elsewhere());
  auto seq = cli->inject_error(8192 + 100, 8192);  // touches pages 8K, 12K, 16K
  REQUIRE(seq);
  CHECK(cli->wait_notified(*seq, 5000));
  std::vector<uint64_t> pages;
  for (int i = 0; i < 3; i++) {
    REQUIRE(read_full(to_parent[0], rec, sizeof rec));
    CHECK(rec[1] == 4096);
    CHECK(rec[2] == static_cast<uint64_t>(FailureKind::kMemoryFailure));
    pages.push_back(rec[0]);
  }
  CHECK(pages == std::vector<uint64_t>{8192, 12288, 16384});

  seq = cli->notify_pre_remove();
  REQUIRE(seq);
  CHECK(cli->wait_notified(*seq, 5000));
  REQUIRE(read_full(to_parent[0], rec, sizeof rec));
  CHECK(rec[0] == 0);
  CHECK(rec[1] == kSize);
  CHECK(rec[2] == static_cast<uint64_t>(FailureKind::kPreRemove));

  kill(child, SIGKILL);
  reap(child);
  close(to_parent[0]);
  // The holder died: the claim went with it and the next failure is only recorded.
  CHECK_FALSE(cli->held_elsewhere());
  seq = cli->inject_error(0, 512);
  REQUIRE(seq);
  CHECK_FALSE(cli->wait_notified(*seq, 200));
  CHECK(cli->list_errors().size() == 2);
}

TEST_CASE("a device has at most one holder", "[pmemdev][holder]") {
  TempDir dir;
  std::string path = dir.file("pmem0");
  auto a = open_dev(path);
  auto b = open_dev(path);
  RecordingHolder ha, hb;
  REQUIRE(a->claim(&ha));
  CHECK(b->claim(&hb).error() == EBUSY);
  CHECK(b->held_elsewhere());
  a->release();
  CHECK(b->claim(&hb));
  auto seq = a->inject_error(4096, 4096);
  REQUIRE(seq);
  CHECK(a->wait_notified(*seq, 5000));
  auto calls = hb.calls();
  REQUIRE(calls.size() == 1);
  CHECK(calls[0].offset == 4096);
  CHECK(ha.calls().empty());
}

TEST_CASE("the badblock list survives writers SIGKILLed mid-update",
          "[pmemdev][holder][crash][multiprocess]") {
  TempDir dir;
  std::string path = dir.file("pmem0");
  open_dev(path, Map::kNo);
  std::mt19937 rng(12345);
  for (int round = 0; round < 20; round++) {
    pid_t child = fork();
    REQUIRE(child >= 0);
    if (child == 0) {
      auto d = Device::open(path, OpenOptions{.map = Map::kNo});
      if (!d) _exit(1);
      std::mt19937 r(static_cast<unsigned>(getpid()));
      for (;;) {
        uint64_t off = (r() % 2048) * 512;
        uint64_t len = (r() % 16 + 1) * 512;
        if (off + len > kSize) continue;
        if (r() % 2)
          (void)(*d)->inject_error(off, len);
        else
          (void)(*d)->clear_error(off, len);
      }
    }
    usleep(1000 + rng() % 20000);
    kill(child, SIGKILL);
    reap(child);
    // Reopening validates the table; a lock left by the dead writer must not wedge us.
    auto d = Device::open(path, OpenOptions{.map = Map::kNo});
    REQUIRE(d);
    auto before = (*d)->list_errors();
    for (size_t i = 1; i < before.size(); i++)
      REQUIRE(before[i - 1].offset + before[i - 1].length < before[i].offset);
    REQUIRE((*d)->inject_error(kSize - 512, 512));
    REQUIRE((*d)->clear_error(kSize - 512, 512));
  }
}
