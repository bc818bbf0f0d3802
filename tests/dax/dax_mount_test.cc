// The DAX layer end to end: real mounts, real processes mapping files under `daxfsctl run` (the
// preload shim) and receiving real signals, the real daemon killed. dax_tool (tests/dax) is the
// mapping program; daxfsctl stat/mappers read the registry.
#include <fcntl.h>
#include <linux/falloc.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "daxcore/daxfs_ioctl.h"
#include "tests/support/mount.h"
#include "tests/support/proc.h"

using namespace daxfs::test;

namespace {

std::string ctl() { return program("daxfsctl"); }
std::string tool() { return build_dir() + "/tests/dax/dax_tool"; }

// dax_tool under daxfsctl run: its output, REQUIREd to exit 0.
std::string dax(const std::string& args) {
  std::string out;
  INFO(args);
  REQUIRE(run(ctl() + " run -- " + tool() + " " + args, &out) == 0);
  return out;
}

std::vector<std::string> dax_argv(std::vector<std::string> args) {
  std::vector<std::string> argv = {ctl(), "run", "--", tool()};
  argv.insert(argv.end(), args.begin(), args.end());
  return argv;
}

nlohmann::json json_of(const std::string& cmd) {
  std::string out;
  INFO(cmd);
  REQUIRE(run(cmd, &out) == 0);
  return nlohmann::json::parse(out);
}

nlohmann::json counters(const Mount& m) { return json_of(ctl() + " stat " + m.mnt() + " --json")["counters"]; }
nlohmann::json dax_counters(const Mount& m) {
  return json_of(ctl() + " stat " + m.mnt() + " --json")["dax_counters"];
}

std::string pread_str(const std::string& path, size_t n, off_t off) {
  int fd = open(path.c_str(), O_RDONLY);
  REQUIRE(fd >= 0);
  std::string s(n, '\0');
  ssize_t got = pread(fd, s.data(), n, off);
  close(fd);
  REQUIRE(got >= 0);
  s.resize(static_cast<size_t>(got));
  return s;
}

void fill(const std::string& path, size_t size, char c) { spit(path, std::string(size, c)); }

// Waits (up to tries * 10 ms) for the registry to list no mapping of `pid`.
bool no_mappings_of(const Mount& m, pid_t pid, int tries = 200) {
  for (int i = 0; i <= tries; i++) {
    bool found = false;
    nlohmann::json rows = json_of(ctl() + " mappers " + m.mnt() + " --json")["mappings"];  // kept alive
    for (auto& r : rows)
      if (r["pid"] == pid) found = true;
    if (!found) return true;
    usleep(10000);
  }
  return false;
}

}  // namespace

TEST_CASE("a DAX store is seen by read(2) and in the device at the fiemap offset, with no FUSE write",
          "[dax][fuse]") {
  Mount m;
  std::string f = m.path("f");
  fill(f, 8192, 'x');
  uint64_t writes = counters(m)["writes"];
  CHECK(dax("store " + f + " 100 HELLO") == "dax\n");
  CHECK(counters(m)["writes"] == writes);  // no FUSE WRITE: the store went to the media
  CHECK(pread_str(f, 5, 100) == "HELLO");
  auto fm = json_of(ctl() + " fiemap " + f + " --json");
  REQUIRE(fm["extents"].size() >= 1);
  uint64_t physical = fm["extents"][0]["physical"];
  CHECK(pread_str(m.device(), 5, static_cast<off_t>(physical + 100)) == "HELLO");
  CHECK(dax("load " + f + " 98 9") == "xxHELLOxx");
  auto d = dax_counters(m);
  CHECK(d["dax_faults_mapped"].get<uint64_t>() >= 2);
}

TEST_CASE("a DAX store to a reflinked block copies it: the clone keeps its data", "[dax][fuse][reflink]") {
  Mount m;
  std::string a = m.path("a"), b = m.path("b");
  fill(a, 16384, 'a');
  REQUIRE(run(ctl() + " reflink " + a + " " + b) == 0);
  CHECK(dax("store " + b + " 4096 STORE") == "dax\n");
  CHECK(pread_str(b, 5, 4096) == "STORE");
  CHECK(pread_str(a, 5, 4096) == "aaaaa");
  CHECK(dax("load " + a + " 4096 5") == "aaaaa");
  CHECK(dax_counters(m)["dax_faults_cow"].get<uint64_t>() >= 1);
  // Only the stored block was copied; the others are still shared.
  auto fm = json_of(ctl() + " fiemap " + b + " --json");
  int shared = 0, own = 0;
  for (auto& e : fm["extents"]) {
    bool s = false;
    for (auto& fl : e["flags"]) s |= fl == "shared";
    (s ? shared : own) += static_cast<int>(e["length"].get<uint64_t>() / 4096);
  }
  CHECK(own == 1);
  CHECK(shared == 3);
}

TEST_CASE("holes and unwritten extents load zeros; a store there allocates", "[dax][fuse]") {
  Mount m;
  std::string f = m.path("sparse");
  REQUIRE(truncate(f.c_str(), 0) != 0);  // no such file yet
  fill(f, 0, 0);
  REQUIRE(truncate(f.c_str(), 1 << 20) == 0);
  CHECK(dax("load " + f + " 5000 4") == std::string(4, '\0'));
  CHECK(dax("store " + f + " 300000 HOLE") == "dax\n");
  CHECK(pread_str(f, 4, 300000) == "HOLE");
  int fd = open(f.c_str(), O_RDWR);
  REQUIRE(fd >= 0);
  REQUIRE(fallocate(fd, FALLOC_FL_KEEP_SIZE, 600000, 8192) == 0);
  close(fd);
  CHECK(dax("load " + f + " 600000 4") == std::string(4, '\0'));
  CHECK(dax("store " + f + " 600001 UNW") == "dax\n");
  CHECK(pread_str(f, 5, 600000) == std::string("\0UNW\0", 5));
  auto d = dax_counters(m);
  CHECK(d["dax_faults_hole"].get<uint64_t>() >= 1);
  CHECK(d["dax_faults_unwritten"].get<uint64_t>() >= 1);
  CHECK(d["dax_faults_alloc"].get<uint64_t>() >= 2);
}

TEST_CASE("truncating a mapped file revokes another process's pages: a touch past EOF is SIGBUS",
          "[dax][fuse]") {
  Mount m;
  std::string f = m.path("t");
  fill(f, 65536, 't');
  Proc holder(dax_argv({"hold", f}));
  REQUIRE(holder.line() == "ready");
  auto rows = json_of(ctl() + " mappers " + f + " --json")["mappings"];
  REQUIRE(rows.size() >= 1);
  CHECK(rows[0]["pid"] == holder.pid());
  CHECK(rows[0]["protection"] == "r-");
  REQUIRE(truncate(f.c_str(), 0) == 0);
  CHECK(holder.line().rfind("sigbus 2 ", 0) == 0);  // BUS_ADRERR
  CHECK(holder.wait() == 7);
  CHECK(dax_counters(m)["dax_layout_breaks"].get<uint64_t>() >= 1);
}

TEST_CASE("a stale address never sees another file's data after its blocks are reused", "[dax][fuse]") {
  Mount m("16M");
  std::string x = m.path("x"), y = m.path("y");
  fill(x, 1 << 20, 'A');
  Proc watcher(dax_argv({"watch", x}));
  REQUIRE(watcher.line() == "ready");
  REQUIRE(watcher.line() == "value A");
  // Punch all of x: its blocks are free; y takes them (the device is small and otherwise empty).
  int fd = open(x.c_str(), O_RDWR);
  REQUIRE(fd >= 0);
  REQUIRE(fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, 1 << 20) == 0);
  close(fd);
  fill(y, 8 << 20, 'B');
  CHECK(watcher.line() == "value .");  // the hole: zeros
  watcher.signal(SIGTERM);
  std::string rest = watcher.rest();
  CHECK(rest.find("value B") == std::string::npos);
  CHECK(watcher.wait() == 0);
}

TEST_CASE("collapse and insert range revoke DAX mappers: a watcher sees the bytes that moved", "[dax][fuse][shift]") {
  Mount m;
  std::string f = m.path("f");
  spit(f, std::string(4096, 'A') + std::string(4096, 'B') + std::string(4096, 'C'));
  Proc watcher(dax_argv({"watch", f}));  // loads the file's first byte every millisecond
  REQUIRE(watcher.line() == "ready");
  REQUIRE(watcher.line() == "value A");
  int fd = open(f.c_str(), O_RDWR);
  REQUIRE(fd >= 0);
  daxfs_range r{0, 4096, {}};
  REQUIRE(ioctl(fd, DAXFS_IOC_COLLAPSE_RANGE, &r) == 0);  // B moves to offset 0
  CHECK(watcher.line() == "value B");
  REQUIRE(ioctl(fd, DAXFS_IOC_INSERT_RANGE, &r) == 0);  // a hole at offset 0
  CHECK(watcher.line() == "value .");
  close(fd);
  watcher.signal(SIGTERM);
  CHECK(watcher.wait() == 0);
  CHECK(dax_counters(m)["dax_layout_breaks"].get<uint64_t>() >= 2);
  CHECK(pread_str(f, 8192, 4096) == std::string(4096, 'B') + std::string(4096, 'C'));
}

TEST_CASE("collapse and insert racing with stores in other processes keep the filesystem sound",
          "[dax][fuse][shift][stress]") {
  Mount m("128M", "lease=2");
  {
    std::string f = m.path("race");
    fill(f, 1 << 20, 'r');
    std::vector<std::unique_ptr<Proc>> storms;
    for (int i = 0; i < 3; i++) storms.push_back(std::make_unique<Proc>(dax_argv({"storm", f, "3"})));
    auto t0 = std::chrono::steady_clock::now();
    int ops = 0;
    while (std::chrono::steady_clock::now() - t0 < std::chrono::milliseconds(2500)) {
      int fd = open(f.c_str(), O_RDWR);
      REQUIRE(fd >= 0);
      daxfs_range r{static_cast<uint64_t>(ops % 7) * 65536, 64 << 10, {}};
      CHECK(ioctl(fd, ops++ % 2 ? DAXFS_IOC_COLLAPSE_RANGE : DAXFS_IOC_INSERT_RANGE, &r) == 0);
      close(fd);
    }
    for (auto& s : storms) {
      CHECK(s->wait() == 0);
      std::string out = s->rest();
      INFO(out);
      CHECK(out.rfind("stores ", 0) == 0);
    }
    CHECK(dax_counters(m)["dax_kills"] == 0);
  }
  m.stop();
  std::string out;
  CHECK(run(program("fsck.daxfs") + " -n " + m.device(), &out) == 0);
  INFO(out);
}

TEST_CASE("a mapper that does not let go within the lease is killed before the blocks are freed",
          "[dax][fuse][dax-lease]") {
  Mount m("64M", "lease=0.5");
  std::string f = m.path("f");
  fill(f, 65536, 'k');
  Proc holder(dax_argv({"sleep", f}));
  REQUIRE(holder.line() == "ready");
  REQUIRE_FALSE(no_mappings_of(m, holder.pid(), 0));  // it maps f through the DAX layer
  REQUIRE(holder.stop());  // every thread stopped: its agent cannot answer the revoke
  auto t0 = std::chrono::steady_clock::now();
  REQUIRE(truncate(f.c_str(), 0) == 0);
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0).count();
  CHECK(ms >= 400);  // waited for the lease...
  CHECK(holder.exited_within(2000));
  CHECK(holder.wait() == 128 + SIGKILL);  // ...then killed
  CHECK(dax_counters(m)["dax_kills"] == 1);
  CHECK(no_mappings_of(m, holder.pid()));
}

TEST_CASE("shutdown revokes every DAX mapping: the next touch is SIGBUS", "[dax][fuse]") {
  Mount m;
  std::string f = m.path("f");
  fill(f, 8192, 's');
  Proc holder(dax_argv({"hold", f}));
  REQUIRE(holder.line() == "ready");
  REQUIRE(run(ctl() + " shutdown " + m.mnt()) == 0);
  CHECK(holder.line().rfind("sigbus 2 ", 0) == 0);
  CHECK(holder.wait() == 7);
}

TEST_CASE("the daemon dying leaves its mappers failing cleanly, and the next mount kills stale ones",
          "[dax][fuse][crash]") {
  Mount m;
  std::string f = m.path("f");
  fill(f, 8192, 'd');
  Proc live(dax_argv({"hold", f}));
  REQUIRE(live.line() == "ready");
  Proc stopped(dax_argv({"sleep", f}));
  REQUIRE(stopped.line() == "ready");
  REQUIRE(stopped.stop());  // cannot notice the daemon's death
  m.crash();
  CHECK(live.line().rfind("sigbus 2 ", 0) == 0);  // its agent saw the daemon go: SIGBUS on touch
  CHECK(live.wait() == 7);
  m.start();  // reads the old registry: the stopped mapper could still touch the old blocks
  CHECK(stopped.exited_within(3000));
  CHECK(stopped.wait() == 128 + SIGKILL);
  CHECK(pread_str(f, 1, 0) == "d");
}

TEST_CASE("a client SIGKILLed while it faults leaves no mapping behind", "[dax][fuse]") {
  Mount m;
  std::string f = m.path("f");
  fill(f, 4 << 20, 'z');
  REQUIRE(truncate(f.c_str(), 16 << 20) == 0);  // holes: every store allocates, so faults are many
  for (int round = 0; round < 3; round++) {
    Proc storm(dax_argv({"storm", f, "5"}));
    usleep(100000 + round * 50000);
    storm.signal(SIGKILL);
    CHECK(storm.wait() == 128 + SIGKILL);
    CHECK(no_mappings_of(m, storm.pid()));
  }
  auto t0 = std::chrono::steady_clock::now();
  REQUIRE(truncate(f.c_str(), 0) == 0);  // nobody to wait for
  CHECK(std::chrono::steady_clock::now() - t0 < std::chrono::seconds(2));
}

TEST_CASE("a forked child's stores through an inherited DAX mapping reach the file", "[dax][fuse]") {
  Mount m;
  std::string f = m.path("f");
  fill(f, 8192, 'p');
  CHECK(dax("fork-store " + f + " 10 CHILD") == "child 0 read CHILD\n");
}

TEST_CASE("a DAX mapping at file offset 2^63 - 4096 works at the largest file size", "[dax][fuse]") {
  Mount m;
  std::string f = m.path("big");
  fill(f, 0, 0);
  const uint64_t last = (1ull << 63) - 4096;
  CHECK(dax("map-at " + f + " " + std::to_string(last)) == "sigbus 2\n");  // past EOF
  REQUIRE(truncate(f.c_str(), INT64_MAX) == 0);
  CHECK(dax("map-at " + f + " " + std::to_string(last)) == "ok\n");
  CHECK(pread_str(f, 1, static_cast<off_t>(last)) == "\x01");
  CHECK(dax("map-at " + f + " " + std::to_string(1ull << 63)) == "mmap Invalid argument\n");  // past 2^63 - 1
}

TEST_CASE("many processes map the same file and its clones: each sees its own file", "[dax][fuse][reflink]") {
  Mount m;
  std::string base = m.path("base");
  fill(base, 64 << 10, '.');
  std::vector<std::string> clones;
  for (int i = 0; i < 4; i++) {
    clones.push_back(m.path("clone" + std::to_string(i)));
    REQUIRE(run(ctl() + " reflink " + base + " " + clones.back()) == 0);
  }
  std::vector<std::unique_ptr<Proc>> procs;
  for (int i = 0; i < 8; i++) {
    // Four store into the base (distinct pages), four into one clone each.
    std::string file = i < 4 ? base : clones[i - 4];
    std::string off = std::to_string((i % 4) * 4096 + i);
    procs.push_back(std::make_unique<Proc>(dax_argv({"store", file, off, "P" + std::to_string(i)})));
  }
  for (auto& p : procs) CHECK(p->wait() == 0);
  for (int i = 0; i < 4; i++) CHECK(pread_str(base, 2, (i % 4) * 4096 + i) == "P" + std::to_string(i));
  for (int i = 4; i < 8; i++) {
    std::string mine = pread_str(clones[i - 4], 2, (i % 4) * 4096 + i);
    CHECK(mine == "P" + std::to_string(i));
    // Not the base's stores, and no other clone's.
    for (int j = 0; j < 4; j++)
      if (j != (i % 4)) CHECK(pread_str(clones[i - 4], 1, j * 4096 + j) == ".");
  }
}

TEST_CASE("truncate, punch and reflink racing with stores in other processes keep the filesystem sound",
          "[dax][fuse][stress]") {
  Mount m("128M", "lease=2");
  {
    std::string f = m.path("race"), src = m.path("src");
    fill(f, 1 << 20, 'r');
    fill(src, 256 << 10, 's');
    std::vector<std::unique_ptr<Proc>> storms;
    for (int i = 0; i < 3; i++) storms.push_back(std::make_unique<Proc>(dax_argv({"storm", f, "3"})));
    auto t0 = std::chrono::steady_clock::now();
    int ops = 0;
    while (std::chrono::steady_clock::now() - t0 < std::chrono::milliseconds(2500)) {
      int fd = open(f.c_str(), O_RDWR);
      REQUIRE(fd >= 0);
      switch (ops++ % 4) {
        case 0: CHECK(ftruncate(fd, 256 << 10) == 0); break;
        case 1: CHECK(ftruncate(fd, 1 << 20) == 0); break;
        case 2: CHECK(fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 64 << 10, 128 << 10) == 0); break;
        case 3: CHECK(run(ctl() + " reflink " + src + " " + f + " --dst-offset 0 --src-offset 0 --length 262144") == 0); break;
      }
      close(fd);
    }
    for (auto& s : storms) {
      CHECK(s->wait() == 0);
      std::string out = s->rest();
      INFO(out);
      CHECK(out.rfind("stores ", 0) == 0);
    }
    CHECK(dax_counters(m)["dax_kills"] == 0);
  }
  m.stop();
  std::string out;
  CHECK(run(program("fsck.daxfs") + " -n " + m.device(), &out) == 0);
  INFO(out);
}

TEST_CASE("shutdown with live mappers under stores, repeated, leaves a clean filesystem", "[dax][fuse][stress]") {
  for (int round = 0; round < 3; round++) {
    Mount m("64M", "lease=1");
    std::string f = m.path("f");
    fill(f, 512 << 10, 'g');
    // Storing processes: two that take SIGBUS in their stride (and remap), three that die of it.
    std::vector<std::unique_ptr<Proc>> storms, holders;
    for (int i = 0; i < 2; i++) storms.push_back(std::make_unique<Proc>(dax_argv({"storm", f, "1"})));
    for (int i = 0; i < 3; i++) {
      holders.push_back(std::make_unique<Proc>(dax_argv({"hold", f, "store"})));
      REQUIRE(holders.back()->line() == "ready");
    }
    usleep(200000);
    REQUIRE(run(ctl() + " shutdown " + m.mnt()) == 0);
    for (auto& h : holders) {
      CHECK(h->line().rfind("sigbus 2 ", 0) == 0);  // the next store after the revoke
      CHECK(h->wait() == 7);
    }
    for (auto& s : storms) CHECK(s->wait() == 0);
    std::string device = m.device();
    m.stop();
    std::string out;
    CHECK(run(program("fsck.daxfs") + " -n " + device, &out) == 0);
    INFO(out);
    m.start();  // the log recovers; the data stores made before the shutdown are there
    CHECK(pread_str(f, 1, 511 << 10).size() == 1);
  }
}

namespace {
std::string lib(const std::string& args) {
  std::string out;
  INFO(args);
  REQUIRE(run(build_dir() + "/tests/dax/dax_lib_tool " + args, &out) == 0);
  return out;
}
}  // namespace

TEST_CASE("the client library: private, read-only, MAP_SYNC, mremap and mprotect mappings", "[dax][fuse]") {
  Mount m;
  std::string f = m.path("f");
  fill(f, 16384, 'l');
  CHECK(lib("private " + f) == "kernel unchanged\n");  // MAP_PRIVATE: the kernel's copy-on-write
  CHECK(lib("rdonly " + f) == "write Permission denied\nread dax l\n");
  CHECK(lib("sync " + f) == "map_sync dax\n");
  CHECK(pread_str(f, 1, 0) == "S");
  CHECK(lib("mremap " + f) == "mremap dax same\n");
  CHECK(lib("mprotect " + f) == "segv w\n");
}

TEST_CASE("MAP_SYNC outside the DAX layer fails with EOPNOTSUPP, as on any non-DAX file", "[dax][fuse]") {
  Mount m;
  std::string f = m.path("f");
  fill(f, 4096, 'n');
  int fd = open(f.c_str(), O_RDWR);
  REQUIRE(fd >= 0);
  void* p = mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_SHARED_VALIDATE | MAP_SYNC, fd, 0);
  int e = errno;
  CHECK(p == MAP_FAILED);
  CHECK(e == EOPNOTSUPP);
  close(fd);
}

TEST_CASE("a pinned range holds a layout break until it is unpinned; long-term pins are refused",
          "[dax][fuse]") {
  Mount m;
  std::string f = m.path("f");
  fill(f, 16384, 'p');
  Proc pinner({build_dir() + "/tests/dax/dax_lib_tool", "pin", f});
  REQUIRE(pinner.line() == "longterm Operation not supported");
  REQUIRE(pinner.line() == "pinned");
  auto t0 = std::chrono::steady_clock::now();
  std::thread unpin([&] {
    usleep(300000);
    pinner.signal(SIGUSR1);
  });
  REQUIRE(truncate(f.c_str(), 0) == 0);  // waits for the pin
  unpin.join();
  CHECK(std::chrono::steady_clock::now() - t0 >= std::chrono::milliseconds(250));
  CHECK(pinner.line() == "unpinned");
  pinner.signal(SIGTERM);
  CHECK(pinner.wait() == 0);
  auto d = dax_counters(m);
  CHECK(d["dax_pins"] == 1);
  CHECK(d["dax_pins_refused"] == 1);
  CHECK(d["dax_kills"] == 0);
}
