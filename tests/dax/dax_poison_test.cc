// Memory failure through the DAX layer, end to end (fstests xfs/550-552 on reflink + DAX): a
// poisoned page is taken from every process that maps it, in every reflink sharer; late-kill
// processes get SIGBUS BUS_MCEERR_AR when they touch it, early-kill ones BUS_MCEERR_AO at once,
// with si_addr the page's address in that process and si_addr_lsb 12; processes that do not map
// the page are untouched; a handler can skip the page and go on. dax_tool poison-watch prints
// "sigbus CODE page N lsb L" (N: the page's index in its mapping of the file).
#include <fcntl.h>
#include <linux/falloc.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <map>
#include <memory>
#include <set>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "tests/support/mount.h"
#include "tests/support/proc.h"

using namespace daxfs::test;

namespace {

constexpr int kAR = 4, kAO = 5;  // BUS_MCEERR_AR, BUS_MCEERR_AO

std::string ctl() { return program("daxfsctl"); }

std::unique_ptr<Proc> watch(const std::string& file, const std::string& policy = "", bool still = false) {
  std::vector<std::string> argv = {ctl(), "run"};
  if (!policy.empty()) argv.push_back(policy);
  argv.insert(argv.end(), {"--", build_dir() + "/tests/dax/dax_tool", "poison-watch", file});
  if (still) argv.push_back("still");
  auto p = std::make_unique<Proc>(argv);
  REQUIRE(p->line() == "ready");
  return p;
}

std::string expect(int code, int page) {
  return "sigbus " + std::to_string(code) + " page " + std::to_string(page) + " lsb 12";
}

void poison(const Mount& m, const std::string& file, uint64_t offset) {
  std::string out;
  INFO(out);
  REQUIRE(run(ctl() + " inject-error " + m.mnt() + " --file " + file + " --file-offset " + std::to_string(offset),
              &out) == 0);
}

bool read_fails(const std::string& path, off_t offset) {
  int fd = open(path.c_str(), O_RDONLY);
  char buf[4096];
  ssize_t n = pread(fd, buf, sizeof buf, offset);
  int e = errno;
  close(fd);
  return n < 0 && e == EIO;
}

}  // namespace

TEST_CASE("xfs/550: a mapped file's poisoned page: late kill on touch, early kill at once", "[dax][fuse][poison]") {
  Mount m;
  std::string f = m.path("f"), g = m.path("g");
  spit(f, std::string(16 * 4096, 'f'));
  spit(g, std::string(16 * 4096, 'g'));
  auto late = watch(f);
  auto early = watch(f, "--early-kill", true);  // touches nothing: only an early kill can reach it
  auto bystander = watch(g);
  poison(m, f, 5 * 4096);
  CHECK(late->line() == expect(kAR, 5));
  CHECK(early->line() == expect(kAO, 5));
  CHECK(bystander->line(300).empty());
  // The page is gone for good (until cleared and rewritten); the rest of the file reads fine.
  CHECK(read_fails(f, 5 * 4096));
  CHECK_FALSE(read_fails(f, 4 * 4096));
  CHECK(late->line(300).empty());  // the handler skipped the page and went on
  for (auto* p : {late.get(), early.get(), bystander.get()}) {
    p->signal(SIGTERM);
    CHECK(p->wait() == 0);
  }
}

TEST_CASE("a read that meets poison: short on a DAX file (dax_iomap_rw), EIO through the page cache",
          "[dax][fuse][poison]") {
  for (std::string dax : {"always", "never"}) {
    DYNAMIC_SECTION("dax=" << dax) {
      Mount m("16M", "dax=" + dax);
      std::string f = m.path("f");
      spit(f, std::string(8 * 4096, 'f'));
      poison(m, f, 5 * 4096);
      int fd = open(f.c_str(), O_RDONLY);
      REQUIRE(fd >= 0);
      std::vector<char> buf(8 * 4096);
      errno = 0;
      ssize_t n = pread(fd, buf.data(), buf.size(), 2 * 4096);  // pages 2..7: 5 is poisoned
      if (dax == "always") {
        CHECK(n == 3 * 4096);  // the bytes before the poisoned page
        CHECK(std::string(buf.data(), 3 * 4096) == std::string(3 * 4096, 'f'));
      } else {
        // The kernel reads ahead in batches and retries page by page: never a zero-filled page.
        if (n >= 0) CHECK(n <= 3 * 4096);
        else CHECK(errno == EIO);
        if (n > 0) CHECK(std::string(buf.data(), n) == std::string(n, 'f'));
      }
      errno = 0;
      CHECK(pread(fd, buf.data(), 4096, 5 * 4096 + 100) < 0);  // starting in it: nothing before
      CHECK(errno == EIO);
      CHECK(pread(fd, buf.data(), 2 * 4096, 6 * 4096) == 2 * 4096);  // after it: fine
      close(fd);
    }
  }
}

TEST_CASE("xfs/551: a file and its full reflink copy, mapped by two processes: both lose the page",
          "[dax][fuse][poison][reflink]") {
  Mount m;
  std::string a = m.path("a"), b = m.path("b");
  spit(a, std::string(8 * 4096, 'a'));
  REQUIRE(run(ctl() + " reflink " + a + " " + b) == 0);
  auto pa = watch(a);
  auto pb = watch(b);
  std::string out;
  REQUIRE(run(ctl() + " inject-error " + m.mnt() + " --file " + a + " --file-offset " + std::to_string(3 * 4096) +
                  " --json",
              &out) == 0);  // the block both files share
  INFO(out);
  std::set<pid_t> lost;  // the processes inject-error says lost the page (through the wrapper)
  nlohmann::json report = nlohmann::json::parse(out);
  for (auto& r : report["mappers"]) {
    lost.insert(r["pid"].get<pid_t>());
    CHECK(r["file_offset"] == 3 * 4096);
  }
  CHECK(lost.size() == 2);
  CHECK(pa->line() == expect(kAR, 3));
  CHECK(pb->line() == expect(kAR, 3));
  CHECK(read_fails(a, 3 * 4096));
  CHECK(read_fails(b, 3 * 4096));
}

TEST_CASE("xfs/552: every second page shared: a shared page reaches both mappers, an unshared one only its own",
          "[dax][fuse][poison][reflink]") {
  Mount m;
  std::string a = m.path("a"), b = m.path("b");
  spit(a, std::string(16 * 4096, 'a'));
  spit(b, std::string(16 * 4096, 'b'));
  for (int page = 0; page < 16; page += 2) {
    std::string off = std::to_string(page * 4096);
    REQUIRE(run(ctl() + " reflink " + a + " " + b + " --src-offset " + off + " --dst-offset " + off +
                " --length 4096") == 0);
  }
  auto pa = watch(a);
  auto pb = watch(b);
  poison(m, a, 4 * 4096);  // shared
  CHECK(pa->line() == expect(kAR, 4));
  CHECK(pb->line() == expect(kAR, 4));
  poison(m, b, 7 * 4096);  // b's own
  CHECK(pb->line() == expect(kAR, 7));
  CHECK(pa->line(300).empty());
  auto counters = nlohmann::json::parse([&] {
    std::string out;
    REQUIRE(run(ctl() + " stat " + m.mnt() + " --json", &out) == 0);
    return out;
  }())["dax_counters"];
  CHECK(counters["dax_poison_revocations"] == 3);
}

TEST_CASE("the mount's mce_kill=early is every process's default; a process's own policy wins",
          "[dax][fuse][poison]") {
  Mount m("64M", "mce_kill=early");
  std::string f = m.path("f");
  spit(f, std::string(4 * 4096, 'e'));
  Proc holder({ctl(), "run", "--", build_dir() + "/tests/dax/dax_tool", "sleep", f});
  REQUIRE(holder.line() == "ready");
  auto late = watch(f, "--late-kill", true);  // its own policy wins: nothing until it touches
  poison(m, f, 4096);
  CHECK(holder.line().rfind("sigbus 5 ", 0) == 0);  // dax_tool's handler: BUS_MCEERR_AO, then exit 7
  CHECK(holder.wait() == 7);
  CHECK(late->line(300).empty());
}

TEST_CASE("a poisoned block that is freed is never handed out again while poisoned", "[dax][fuse][poison]") {
  Mount m("16M");
  std::string x = m.path("x"), y = m.path("y");
  spit(x, std::string(256 * 4096, 'x'));
  auto fm = nlohmann::json::parse([&] {
    std::string out;
    REQUIRE(run(ctl() + " fiemap " + x + " --json", &out) == 0);
    return out;
  }());
  uint64_t bad = fm["extents"][0]["physical"].get<uint64_t>() + 8 * 4096;
  REQUIRE(run(ctl() + " inject-error " + m.mnt() + " --offset " + std::to_string(bad) + " --length 4096") == 0);
  REQUIRE(unlink(x.c_str()) == 0);
  // y takes the freed space: a store through a DAX mapping of every page works, no page is the bad one.
  spit(y, "");
  REQUIRE(truncate(y.c_str(), 512 * 4096) == 0);
  std::string out;
  REQUIRE(run(ctl() + " run -- " + build_dir() + "/tests/dax/dax_tool storm " + y + " 0.3", &out) == 0);
  CHECK(out.rfind("stores ", 0) == 0);
  CHECK(out.find("sigbus 0") != std::string::npos);
  REQUIRE(run(ctl() + " fiemap " + y + " --json", &out) == 0);
  nlohmann::json extents = nlohmann::json::parse(out)["extents"];
  REQUIRE(!extents.empty());
  for (auto& e : extents) {
    uint64_t p = e["physical"], l = e["length"];
    CHECK((bad < p || bad >= p + l));
  }
}

TEST_CASE("remove-device revokes every DAX mapping and shuts down; the next mount has everything",
          "[dax][fuse][poison]") {
  Mount m;
  std::string f = m.path("f");
  spit(f, std::string(8 * 4096, 'r'));
  Proc holder({ctl(), "run", "--", build_dir() + "/tests/dax/dax_tool", "hold", f});
  REQUIRE(holder.line() == "ready");
  std::string out;
  REQUIRE(run(ctl() + " remove-device " + m.mnt(), &out) == 0);
  INFO(out);
  CHECK(holder.line().rfind("sigbus 2 ", 0) == 0);  // its next touch
  CHECK(holder.wait() == 7);
  int fd = open(f.c_str(), O_RDONLY);
  char c;
  CHECK((fd < 0 || pread(fd, &c, 1, 0) < 0));  // shut down: EIO
  if (fd >= 0) close(fd);
  CHECK(run(ctl() + " remove-device " + m.path("f")) != 0);  // a file is not a mount point
  m.stop();
  REQUIRE(run(program("fsck.daxfs") + " -n " + m.device(), &out) == 0);
  m.start();
  CHECK(slurp(f) == std::string(8 * 4096, 'r'));
}

TEST_CASE("a file mapped after its page was poisoned: only that page raises SIGBUS, stores into it too",
          "[dax][fuse][poison][reflink]") {
  Mount m;
  std::string a = m.path("a"), b = m.path("b");
  spit(a, std::string(16 * 4096, 'a'));
  REQUIRE(run(ctl() + " reflink " + a + " " + b) == 0);
  poison(m, a, 5 * 4096);  // nobody maps it yet
  // Maps every page eagerly: all but page 5 map; page 5 raises on its first touch (before "ready").
  Proc pa({ctl(), "run", "--", build_dir() + "/tests/dax/dax_tool", "poison-watch", a});
  CHECK(pa.line() == "sigbus 4 page 5 lsb 12");
  CHECK(pa.line() == "ready");
  CHECK(pa.line(300).empty());
  std::string out;
  // A store into the poisoned shared block of b: a copy-on-write cannot read it: BUS_MCEERR_AR.
  REQUIRE(run(ctl() + " run -- " + build_dir() + "/tests/dax/dax_tool map-at " + b + " " + std::to_string(5 * 4096),
              &out) == 0);
  CHECK(out == "sigbus 4\n");
  REQUIRE(run(ctl() + " run -- " + build_dir() + "/tests/dax/dax_tool map-at " + b + " " + std::to_string(6 * 4096),
              &out) == 0);
  CHECK(out == "ok\n");  // the next page copies fine
}

TEST_CASE("poison injected while unmounted: the mount succeeds, reads fail, a mapper gets BUS_MCEERR_AR",
          "[dax][fuse][poison]") {
  Mount m;
  std::string f = m.path("f");
  spit(f, std::string(8 * 4096, 'u'));
  std::string out;
  REQUIRE(run(ctl() + " fiemap " + f + " --json", &out) == 0);
  uint64_t bad = nlohmann::json::parse(out)["extents"][0]["physical"].get<uint64_t>() + 2 * 4096;
  m.stop();
  REQUIRE(run(ctl() + " inject-error " + m.device() + " --offset " + std::to_string(bad) + " --length 4096") == 0);
  m.start();
  CHECK(read_fails(f, 2 * 4096));
  CHECK_FALSE(read_fails(f, 3 * 4096));
  Proc p({ctl(), "run", "--", build_dir() + "/tests/dax/dax_tool", "poison-watch", f});
  CHECK(p.line() == "sigbus 4 page 2 lsb 12");
  CHECK(p.line() == "ready");
}

// Poison racing with copy-on-write, truncate and clone (issue 10, item 7). Real mounts, real
// processes under the shim: dax_tool race loads or stores every page of its mapping, sweep after
// sweep, counting each SIGBUS by page and si_code, and at the end loads every page once more (its
// "probe"). The poison is injected by device offset from another thread while the test thread
// truncates, clones, unshares or writes, and while the racers fault. Every race runs in rounds,
// each until the injection has returned and one whole cycle of operations ran after it; then the
// invariants are checked exactly, never on timing:
//   - the daemon stays up (stat answers, new files work);
//   - a racer's SIGBUS is BUS_MCEERR_AR on the poisoned page only (BUS_MCEERR_AO there too for an
//     early-kill racer; BUS_ADRERR only past EOF): a store or load of a healthy page never fails;
//   - when the racers stop, a probe of the poisoned page raises BUS_MCEERR_AR for every process
//     whose file still maps the poisoned block, and every other page loads;
//   - read(2) of the block is EIO and fiemap says "poisoned" for every owner that still maps it;
//     a block copied away by a full overwrite is healthy and reads what was written;
//   - the poisoned block is never handed out again: fsmap lists exactly the expected owners and
//     no file's extent lands on it (on a full device too);
//   - after unmount, fsck.daxfs -n exits 0.
namespace {

constexpr uint64_t kPage = 4096;

std::string tool() { return build_dir() + "/tests/dax/dax_tool"; }

nlohmann::json json_of(const std::string& cmd) {
  std::string out;
  INFO(cmd);
  REQUIRE(run(cmd, &out) == 0);
  INFO(out);
  return nlohmann::json::parse(out);
}

// One dax_tool race process and what it reported.
struct Racer {
  std::string file;
  std::unique_ptr<Proc> proc;
  std::map<std::pair<uint64_t, int>, unsigned long> sigbus;  // (page, si_code) -> count, while racing
  std::map<uint64_t, int> probe;                              // page -> si_code of the final load
  std::map<uint64_t, int> value;                              // page -> first byte, when it loaded
};

std::unique_ptr<Racer> racer(const std::string& file, uint64_t pages, const std::string& mode, bool early = false) {
  auto r = std::make_unique<Racer>();
  r->file = file;
  std::vector<std::string> argv = {ctl(), "run"};
  if (early) argv.push_back("--early-kill");
  argv.insert(argv.end(), {"--", tool(), "race", file, std::to_string(pages), mode});
  r->proc = std::make_unique<Proc>(argv);
  REQUIRE(r->proc->line() == "ready");
  return r;
}

std::string report(const Racer& r) {
  std::string s = r.file + ":";
  for (auto& [k, n] : r.sigbus)
    s += " sigbus(page " + std::to_string(k.first) + ", code " + std::to_string(k.second) + ") x" + std::to_string(n);
  for (auto& [page, code] : r.probe) s += " probe(page " + std::to_string(page) + ", code " + std::to_string(code) + ")";
  return s;
}

// Stops a racer and reads its report.
void finish(Racer& r) {
  r.proc->signal(SIGTERM);
  for (;;) {
    std::string l = r.proc->line(20000);
    INFO(r.file << ": " << l);
    REQUIRE(!l.empty());
    if (l == "done") break;
    std::istringstream in(l);
    std::string what;
    uint64_t page = 0;
    int code = -1;
    in >> what >> page >> code;
    if (what == "sigbus") {
      unsigned long n = 0;
      in >> n;
      r.sigbus[{page, code}] = n;
    } else if (what == "value") {
      r.value[page] = code;
    } else {
      REQUIRE(what == "probe");
      r.probe[page] = code;
    }
  }
  CHECK(r.proc->wait() == 0);
}

// Every SIGBUS the racer took while racing is one `allowed` says it may take.
template <class Allowed>
void check_sigbus(const Racer& r, Allowed allowed) {
  INFO(report(r));
  for (auto& [k, n] : r.sigbus) {
    INFO("page " << k.first << " code " << k.second);
    CHECK(allowed(k.first, k.second));
  }
}

// Every page the racer's last load read (all but the probe's SIGBUS pages) held `expect(page)`.
template <class Expect>
void check_values(const Racer& r, Expect expect) {
  for (auto& [page, v] : r.value) {
    INFO(r.file << " page " << page);
    CHECK(v == static_cast<unsigned char>(expect(page)));
  }
}

// What backs one page of a file, from fiemap.
struct Backing {
  bool data = false;  // a written block (not a hole, not unwritten)
  uint64_t physical = 0;
  bool poisoned = false;
};

std::vector<Backing> backing(const std::string& file, uint64_t pages) {
  std::vector<Backing> out(pages);
  nlohmann::json extents = json_of(ctl() + " fiemap " + file + " --json")["extents"];  // kept alive
  for (auto& e : extents) {
    uint64_t logical = e["logical"], physical = e["physical"], length = e["length"];
    bool unwritten = false, poisoned = false;
    for (auto& f : e["flags"]) {
      unwritten |= f == "unwritten";
      poisoned |= f == "poisoned";
    }
    for (uint64_t off = 0; off < length; off += kPage) {
      uint64_t page = (logical + off) / kPage;
      if (page < pages) out[page] = {!unwritten, physical + off, poisoned};
    }
  }
  return out;
}

// Every (file, byte offset) that fsmap says owns the block at device offset `bad`; metadata
// there shows as ("<kind>", device offset). Free (or retired: not listed) blocks have none.
std::set<std::pair<std::string, uint64_t>> owners(const Mount& m, uint64_t bad) {
  std::set<std::pair<std::string, uint64_t>> out;
  auto rows = json_of(ctl() + " fsmap " + m.mnt() + " --offset " + std::to_string(bad) + " --length 4096 --json")["rows"];
  for (auto& r : rows) {
    uint64_t physical = r["physical"], length = r["length"];
    if (r["kind"] == "free" || bad < physical || bad >= physical + length) continue;
    if (r["kind"] == "data") {
      out.insert({r.value("path", "?"), r["offset"].get<uint64_t>() + (bad - physical)});
    } else {
      out.insert({"<" + r["kind"].get<std::string>() + ">", physical});
    }
  }
  return out;
}

// read(2) of one page: 0 and the data, or the errno.
int read_page(const std::string& file, uint64_t page, std::string* data = nullptr) {
  int fd = open(file.c_str(), O_RDONLY);
  if (fd < 0) return errno;
  std::string buf(kPage, '\0');
  ssize_t n = pread(fd, buf.data(), kPage, static_cast<off_t>(page * kPage));
  int e = n < 0 ? errno : 0;
  close(fd);
  if (data && n >= 0) *data = buf.substr(0, static_cast<size_t>(n));
  return e;
}

// Whether device offset `offset` is in the device's badblock list.
bool poisoned_now(const Mount& m, uint64_t offset) {
  nlohmann::json badblocks = json_of(ctl() + " list-errors " + m.mnt() + " --json")["badblocks"];
  for (auto& b : badblocks) {
    uint64_t o = b["offset"], l = b["length"];
    if (offset >= o && offset < o + l) return true;
  }
  return false;
}

uint64_t inodes(const Mount& m) { return json_of(ctl() + " stat " + m.mnt() + " --json")["inodes"].get<uint64_t>(); }

// Waits until the daemon holds `count` inodes: an unlinked file is freed once the kernel forgets
// it (FORGET comes after the unlink returns; one still pending at unmount would be left an
// orphan, freed by the next mount, which fsck reports).
void wait_inodes(const Mount& m, uint64_t count) {
  for (int i = 0; i < 500 && inodes(m) != count; i++) usleep(10000);
  CHECK(inodes(m) == count);
}

// The daemon is up: stat answers, and a new file can be written, read back and removed.
void check_daemon_up(const Mount& m) {
  uint64_t before = inodes(m);
  std::string f = m.path("alive");
  spit(f, "alive");
  CHECK(slurp(f) == "alive");
  CHECK(unlink(f.c_str()) == 0);
  wait_inodes(m, before);
}

// Unmounts; fsck.daxfs -n finds nothing but informational poison findings, and says "clean".
void check_fsck_clean(Mount& m) {
  m.stop();
  std::string out;
  int status = run(program("fsck.daxfs") + " -n " + m.device(), &out);
  INFO(out);
  CHECK(status == 0);
  std::istringstream in(out);
  std::vector<std::string> lines;
  for (std::string l; std::getline(in, l);) lines.push_back(l);
  REQUIRE(!lines.empty());
  CHECK(lines.back().size() >= 7);
  CHECK(lines.back().substr(lines.back().size() - 7) == ": clean");
  for (size_t i = 0; i + 1 < lines.size(); i++) {
    INFO(lines[i]);
    CHECK(lines[i].find("poison") != std::string::npos);
    CHECK(lines[i].size() >= 6);
    CHECK(lines[i].substr(lines[i].size() - 6) == "[info]");
  }
}

// inject-error by device offset on its own thread, racing whatever the test thread does.
class Injection {
 public:
  Injection(const Mount& m, uint64_t offset)
      : cmd_(ctl() + " inject-error " + m.mnt() + " --offset " + std::to_string(offset) + " --length 4096"),
        thread_([this] {
          status_ = run(cmd_, &out_);
          done_ = true;
        }) {}
  ~Injection() { join(); }
  bool done() const { return done_; }
  void join() {
    if (thread_.joinable()) thread_.join();
  }
  // After join().
  int status() const { return status_; }
  const std::string& out() const { return out_; }

 private:
  std::string cmd_;
  std::string out_;
  int status_ = -1;
  std::atomic<bool> done_{false};
  std::thread thread_;
};

// Runs cycle() again and again while the injection runs, and once more after it returned.
template <class Cycle>
void race(Injection& inj, Cycle cycle) {
  for (bool last = false; !last;) {
    last = inj.done();
    cycle(last);
  }
  inj.join();
  INFO(inj.out());
  REQUIRE(inj.status() == 0);
}

// Page i of a round's file holds one letter: pages can be told apart and checked after the race.
std::string pattern(uint64_t pages, int round) {
  std::string s;
  for (uint64_t i = 0; i < pages; i++) s += std::string(kPage, static_cast<char>('a' + (i + round) % 26));
  return s;
}

}  // namespace

TEST_CASE("poison racing with copy-on-write: store faults, unshare and write(2) into a reflinked file",
          "[dax][fuse][poison][poison-race][reflink]") {
  Mount m("64M");
  constexpr uint64_t kPages = 64;
  struct Bad {
    uint64_t device;
    std::string a, b;
    uint64_t page;
  };
  std::vector<Bad> bads;
  for (int round = 0; round < 6; round++) {
    std::string a = m.path("a" + std::to_string(round)), b = m.path("b" + std::to_string(round));
    const std::string data = pattern(kPages, round);
    spit(a, data);
    REQUIRE(run(ctl() + " reflink " + a + " " + b) == 0);
    const uint64_t P = 3 + 9 * round;  // 3 .. 48
    const uint64_t bad = backing(a, kPages)[P].physical;
    bads.push_back({bad, "/a" + std::to_string(round), "/b" + std::to_string(round), P});
    INFO("round " << round << ": page " << P << ", device offset " << bad);
    // Two processes store into every page of b (copy-on-write faults, again after every re-clone),
    // one with early kill; one loads every page of a.
    auto late_store = racer(b, kPages, "store");
    auto early_store = racer(b, kPages, "store", true);
    auto load = racer(a, kPages, "load");
    int fd = open(b.c_str(), O_RDWR);
    REQUIRE(fd >= 0);
    const std::string full(kPage, 'W');
    Injection inj(m, bad);
    race(inj, [&](bool poisoned) {
      // b shares all of a again: the storers copy on write afresh.
      CHECK(run(ctl() + " reflink " + a + " " + b) == 0);
      if (poisoned) {
        auto bb = backing(b, kPages);
        CHECK(bb[P].physical == bad);
        CHECK(bb[P].poisoned);
        CHECK(read_page(b, P) == EIO);
      }
      // A partial write into the shared block: it must copy the rest, which it cannot once the
      // block is poisoned (EIO); nothing else.
      errno = 0;
      ssize_t n = pwrite(fd, "partial", 7, static_cast<off_t>(P * kPage + 100));
      int e = errno;
      if (poisoned) {
        CHECK(n == -1);
        CHECK(e == EIO);
      } else {
        CHECK((n == 7 || (n == -1 && e == EIO)));
      }
      // Unsharing all of b copies the shared block: EIO while it is poisoned, nothing else.
      std::string out;
      int st = run(ctl() + " unshare " + b, &out);
      INFO(out);
      if (poisoned) CHECK(st != 0);
      CHECK((st == 0 || out.find("Input/output error") != std::string::npos));
      // A full overwrite of the (again) shared block never needs its data: it succeeds and
      // leaves b a healthy block holding what was written (a recovery write once poisoned).
      CHECK(run(ctl() + " reflink " + a + " " + b) == 0);
      CHECK(pwrite(fd, full.data(), kPage, static_cast<off_t>(P * kPage)) == static_cast<ssize_t>(kPage));
      auto bb = backing(b, kPages);
      CHECK(bb[P].physical != bad);
      CHECK_FALSE(bb[P].poisoned);
      std::string got;
      CHECK(read_page(b, P, &got) == 0);
      CHECK(got == full);
    });
    close(fd);
    // b shares the poisoned block once more; then the racers stop and probe.
    REQUIRE(run(ctl() + " reflink " + a + " " + b) == 0);
    for (auto* r : {late_store.get(), early_store.get(), load.get()}) finish(*r);
    check_daemon_up(m);
    // While racing: BUS_MCEERR_AR for page P only (and BUS_MCEERR_AO for the early-kill one).
    check_sigbus(*late_store, [&](uint64_t page, int code) { return page == P && code == BUS_MCEERR_AR; });
    check_sigbus(*load, [&](uint64_t page, int code) { return page == P && code == BUS_MCEERR_AR; });
    check_sigbus(*early_store, [&](uint64_t page, int code) {
      return page == P && (code == BUS_MCEERR_AR || code == BUS_MCEERR_AO);
    });
    // Both files map the poisoned block at P: every process that maps it cannot load it; every
    // other page loads the file's data.
    const std::map<uint64_t, int> lost{{P, BUS_MCEERR_AR}};
    for (auto* r : {late_store.get(), early_store.get(), load.get()}) {
      INFO(report(*r));
      CHECK(r->probe == lost);
      check_values(*r, [&](uint64_t i) { return data[i * kPage]; });
    }
    CHECK(owners(m, bad) == std::set<std::pair<std::string, uint64_t>>{{bads.back().a, P * kPage}, {bads.back().b, P * kPage}});
    for (const std::string& f : {a, b}) {
      auto fb = backing(f, kPages);
      for (uint64_t i = 0; i < kPages; i++) {
        INFO(f << " page " << i);
        std::string got;
        if (i == P) {
          CHECK(fb[i].physical == bad);
          CHECK(fb[i].poisoned);
          CHECK(read_page(f, i) == EIO);
        } else {
          CHECK(fb[i].data);
          CHECK(fb[i].physical != bad);
          CHECK_FALSE(fb[i].poisoned);
          CHECK(read_page(f, i, &got) == 0);
          CHECK(got == data.substr(i * kPage, kPage));  // the storers changed nothing
        }
      }
    }
  }
  // No copy made during the races landed on a poisoned block: each is owned only where it was.
  for (const Bad& x : bads) {
    INFO("device offset " << x.device);
    CHECK(owners(m, x.device) == std::set<std::pair<std::string, uint64_t>>{{x.a, x.page * kPage}, {x.b, x.page * kPage}});
  }
  check_fsck_clean(m);
}

TEST_CASE("poison racing with truncate: a mapped file cut and extended around its poisoned block",
          "[dax][fuse][poison][poison-race]") {
  Mount m("16M");
  constexpr uint64_t kPages = 64, kKeep = 16;  // pages below kKeep are never truncated away
  std::vector<uint64_t> bads;
  std::vector<std::string> files;
  for (int round = 0; round < 6; round++) {
    std::string f = m.path("t" + std::to_string(round));
    files.push_back(f);
    const std::string data = pattern(kPages, round);
    spit(f, data);
    const uint64_t P = 20 + 7 * round;  // 20 .. 55: all past kKeep
    const uint64_t bad = backing(f, kPages)[P].physical;
    INFO("round " << round << ": page " << P << ", device offset " << bad);
    auto store = racer(f, kPages, "store");
    auto load = racer(f, kPages, "load");
    auto early = racer(f, kPages, "load", true);
    int fd = open(f.c_str(), O_RDWR);
    REQUIRE(fd >= 0);
    const std::string tail((kPages - kKeep) * kPage, 'R');
    auto size = [&] {
      struct stat st;
      REQUIRE(fstat(fd, &st) == 0);
      return static_cast<uint64_t>(st.st_size);
    };
    // Even rounds: while the poison comes in, the file is cut and extended around the block but
    // keeps it: inside its page (the tail of the page is zeroed; Linux's dax_truncate_page would
    // fail with EIO on a poisoned page), and just past it. Odd rounds: the cycle also drops the
    // block and refills the file, so the poison lands on the file's page, on free space, or on
    // the block some other page of the file got meanwhile; once the cycle after the injection has
    // dropped everything past kKeep again, nobody may own it while it is poisoned. (A store fault
    // or write(2) that stored the whole block after the poison came is a recovery write: it
    // clears the poison, and the block is an ordinary one again.)
    const bool drop = round % 2 == 1;
    Injection inj(m, bad);
    race(inj, [&](bool) {
      errno = 0;
      int rc = ftruncate(fd, static_cast<off_t>(P * kPage + 100));
      CHECK((rc == 0 || errno == EIO));
      CHECK(ftruncate(fd, kPages * kPage) == 0);
      if (drop) {
        CHECK(ftruncate(fd, kKeep * kPage) == 0);
        CHECK(ftruncate(fd, kPages * kPage) == 0);
        CHECK(pwrite(fd, tail.data(), tail.size(), kKeep * kPage) == static_cast<ssize_t>(tail.size()));
      } else {
        CHECK(ftruncate(fd, static_cast<off_t>((P + 1) * kPage)) == 0);
        CHECK(ftruncate(fd, kPages * kPage) == 0);
      }
    });
    const bool still = poisoned_now(m, bad);
    if (still) bads.push_back(bad);
    if (drop) {
      if (still) CHECK(owners(m, bad).empty());
    } else {
      CHECK(still);  // nothing stored over it
      auto fb = backing(f, kPages);
      CHECK(fb[P].physical == bad);
      CHECK(fb[P].poisoned);
      CHECK(read_page(f, P) == EIO);
      CHECK(owners(m, bad) == std::set<std::pair<std::string, uint64_t>>{{"/t" + std::to_string(round), P * kPage}});
    }
    // Then, racing the mappers, the block is truncated away (freed while poisoned) and the file
    // refilled, by the storer's faults and by write(2): no new block may be the poisoned one.
    for (int cycle = 0; cycle < 3; cycle++) {
      CHECK(ftruncate(fd, kKeep * kPage) == 0);
      if (still) CHECK(owners(m, bad).empty());
      CHECK(ftruncate(fd, kPages * kPage) == 0);
      CHECK(ftruncate(fd, static_cast<off_t>(P * kPage + 100)) == 0);  // a healthy page now, or a hole
      CHECK(ftruncate(fd, kPages * kPage) == 0);
      CHECK(pwrite(fd, tail.data(), tail.size(), kKeep * kPage) == static_cast<ssize_t>(tail.size()));
      if (still) CHECK(owners(m, bad).empty());
    }
    CHECK(poisoned_now(m, bad) == still);  // freed while poisoned: nothing clears it
    CHECK(size() == kPages * kPage);
    for (auto* r : {store.get(), load.get(), early.get()}) finish(*r);
    check_daemon_up(m);
    // BUS_MCEERR_AR (or AO, early kill) only for the poisoned page (any page past kKeep in odd
    // rounds: whichever had the block when the poison came), BUS_ADRERR only past the smallest
    // EOF; the pages below it never fail.
    auto allowed = [&](bool ao) {
      return [&, ao](uint64_t page, int code) {
        bool poisoned_page = drop ? page >= kKeep : page == P;
        return (poisoned_page && (code == BUS_MCEERR_AR || (ao && code == BUS_MCEERR_AO))) ||
               (page >= kKeep && code == BUS_ADRERR);
      };
    };
    check_sigbus(*store, allowed(false));
    check_sigbus(*load, allowed(false));
    check_sigbus(*early, allowed(true));
    // The file no longer has the poisoned block: every page of every mapper loads its data.
    for (auto* r : {store.get(), load.get(), early.get()}) {
      INFO(report(*r));
      CHECK(r->probe.empty());
      check_values(*r, [&](uint64_t i) { return i < kKeep ? data[i * kPage] : 'R'; });
    }
    auto fb = backing(f, kPages);
    for (uint64_t i = 0; i < kPages; i++) {
      INFO("page " << i);
      std::string got;
      CHECK(fb[i].data);
      CHECK_FALSE(fb[i].poisoned);
      CHECK(read_page(f, i, &got) == 0);
      CHECK(got == (i < kKeep ? data.substr(i * kPage, kPage) : std::string(kPage, 'R')));
      for (uint64_t b : bads) CHECK(fb[i].physical != b);
    }
    close(fd);
  }
  // The allocator runs dry: it must step over every poisoned free block, to the last one.
  std::string fill = m.path("fill");
  const uint64_t before_fill = inodes(m);
  {
    int fd = open(fill.c_str(), O_CREAT | O_WRONLY, 0644);
    REQUIRE(fd >= 0);
    const std::string chunk(256 * 1024, 'F');
    ssize_t n;
    while ((n = write(fd, chunk.data(), chunk.size())) > 0) {
    }
    CHECK(errno == ENOSPC);
    close(fd);
  }
  for (uint64_t bad : bads) {
    INFO("device offset " << bad);
    CHECK(poisoned_now(m, bad));
    CHECK(owners(m, bad).empty());  // the fill file's blocks and metadata included
  }
  for (const std::string& f : files) {
    nlohmann::json extents = json_of(ctl() + " fiemap " + f + " --json")["extents"];
    for (auto& e : extents) {
      uint64_t p = e["physical"], l = e["length"];
      for (uint64_t bad : bads) CHECK((bad < p || bad >= p + l));
    }
  }
  REQUIRE(unlink(fill.c_str()) == 0);
  wait_inodes(m, before_fill);
  check_daemon_up(m);
  check_fsck_clean(m);
}

TEST_CASE("poison racing with clone: every clone shares the poisoned block and its poison",
          "[dax][fuse][poison][poison-race][reflink]") {
  Mount m("64M");
  constexpr uint64_t kPages = 32;
  for (int round = 0; round < 6; round++) {
    const std::string r = std::to_string(round);
    std::string a = m.path("s" + r), c0 = m.path("c" + r + "-0");
    const std::string data = pattern(kPages, round);
    spit(a, data);
    REQUIRE(run(ctl() + " reflink " + a + " " + c0) == 0);  // a clone made before the poison
    const uint64_t P = 1 + 5 * round;  // 1 .. 26
    const uint64_t bad = backing(a, kPages)[P].physical;
    INFO("round " << round << ": page " << P << ", device offset " << bad);
    auto load = racer(a, kPages, "load");
    auto early = racer(a, kPages, "load", true);
    auto store = racer(c0, kPages, "store");  // copy-on-write faults into c0, re-cloned below
    std::vector<std::string> clones{c0};
    Injection inj(m, bad);
    race(inj, [&](bool) {
      // A new clone of the whole file; the whole file again over c0, which is mapped; and just
      // the poisoned page with its neighbours over c0 once more.
      std::string c = m.path("c" + r + "-" + std::to_string(clones.size()));
      CHECK(run(ctl() + " reflink " + a + " " + c) == 0);
      clones.push_back(c);
      CHECK(run(ctl() + " reflink " + a + " " + c0) == 0);
      std::string range = std::to_string((P - 1) * kPage);
      CHECK(run(ctl() + " reflink " + a + " " + c0 + " --src-offset " + range + " --dst-offset " + range +
                " --length " + std::to_string(3 * kPage)) == 0);
    });
    // A process that maps a clone made after the poison gets BUS_MCEERR_AR at its first touch.
    std::string late = m.path("c" + r + "-late");
    REQUIRE(run(ctl() + " reflink " + a + " " + late) == 0);
    clones.push_back(late);
    auto fresh = racer(late, kPages, "load");
    for (auto* x : {load.get(), early.get(), store.get(), fresh.get()}) finish(*x);
    check_daemon_up(m);
    check_sigbus(*load, [&](uint64_t page, int code) { return page == P && code == BUS_MCEERR_AR; });
    check_sigbus(*store, [&](uint64_t page, int code) { return page == P && code == BUS_MCEERR_AR; });
    check_sigbus(*fresh, [&](uint64_t page, int code) { return page == P && code == BUS_MCEERR_AR; });
    CHECK(fresh->sigbus.count({P, BUS_MCEERR_AR}) == 1);  // its first sweep touched the page
    check_sigbus(*early, [&](uint64_t page, int code) {
      return page == P && (code == BUS_MCEERR_AR || code == BUS_MCEERR_AO);
    });
    const std::map<uint64_t, int> lost{{P, BUS_MCEERR_AR}};
    for (auto* x : {load.get(), early.get(), store.get(), fresh.get()}) {
      INFO(report(*x));
      CHECK(x->probe == lost);
      check_values(*x, [&](uint64_t i) { return data[i * kPage]; });
    }
    // The source and every clone share the one poisoned block at P: fiemap says so for each,
    // reads fail; every other page is the source's data.
    std::set<std::pair<std::string, uint64_t>> expect{{"/s" + r, P * kPage}};
    for (const std::string& f : clones) expect.insert({f.substr(m.mnt().size()), P * kPage});
    CHECK(owners(m, bad) == expect);
    std::vector<std::string> all = clones;
    all.push_back(a);
    for (const std::string& f : all) {
      auto fb = backing(f, kPages);
      for (uint64_t i = 0; i < kPages; i++) {
        INFO(f << " page " << i);
        if (i == P) {
          CHECK(fb[i].physical == bad);
          CHECK(fb[i].poisoned);
          CHECK(read_page(f, i) == EIO);
        } else {
          std::string got;
          CHECK_FALSE(fb[i].poisoned);
          CHECK(fb[i].physical != bad);
          CHECK(read_page(f, i, &got) == 0);
          CHECK(got == data.substr(i * kPage, kPage));
        }
      }
    }
  }
  check_fsck_clean(m);
}

TEST_CASE("a store into a poisoned unwritten page zeroes it and clears the poison, as write(2) would",
          "[dax][fuse][poison]") {
  Mount m;
  std::string u = m.path("u");
  spit(u, "");
  int fd = open(u.c_str(), O_RDWR);
  REQUIRE(fd >= 0);
  REQUIRE(fallocate(fd, 0, 0, 4 * kPage) == 0);
  close(fd);
  auto ub = backing(u, 4);
  REQUIRE_FALSE(ub[1].data);  // unwritten
  REQUIRE(run(ctl() + " inject-error " + m.mnt() + " --offset " + std::to_string(ub[1].physical) +
              " --length 4096") == 0);
  std::string got;
  CHECK(read_page(u, 1, &got) == 0);
  CHECK(got == std::string(kPage, '\0'));
  std::string out;
  REQUIRE(run(ctl() + " run -- " + tool() + " map-at " + u + " " + std::to_string(kPage), &out) == 0);
  CHECK(out == "ok\n");  // was "sigbus 4": the conversion kept the poison
  CHECK(read_page(u, 1, &got) == 0);
  CHECK(got == "\x01" + std::string(kPage - 1, '\0'));
  ub = backing(u, 4);
  CHECK(ub[1].data);
  CHECK_FALSE(ub[1].poisoned);
  auto errors = json_of(ctl() + " list-errors " + m.mnt() + " --json");
  CHECK(errors["badblock_count"] == 0);
}

// The notifier takes the poisoned block's owners from the rmap, then revokes by (inode, file
// offset). While it waits for a stalled mapper (up to the lease), another owner's page can get a
// new, healthy block (here a full overwrite of a reflink sharer's page); a revoke sent for that
// file offset after the wait would hit processes that map the healthy block (an early-kill one
// got BUS_MCEERR_AO for a page it can load: so it was while the owners were revoked one after
// the other, each after the previous one's wait). Every owner's revokes now go out before any
// wait. Made deterministic: the notifier waits on a stopped mapper of the first owner.
TEST_CASE("poison racing with a full overwrite: no revoke by stale owner reaches a healthy page",
          "[dax][fuse][poison][poison-race]") {
  Mount m("64M", "lease=1");
  constexpr uint64_t kPages = 16, P = 5;
  std::string a = m.path("a"), b = m.path("b");
  spit(a, pattern(kPages, 0));
  REQUIRE(run(ctl() + " reflink " + a + " " + b) == 0);  // a's inode first in the rmap's owners
  const uint64_t bad = backing(a, kPages)[P].physical;
  Proc holder({ctl(), "run", "--", tool(), "sleep", a});
  REQUIRE(holder.line() == "ready");
  REQUIRE(holder.stop());  // it cannot acknowledge: the notifier waits the lease for it
  Injection inj(m, bad);
  // The notifier has revoked a's page from the holder and waits for its acknowledgement.
  auto revocations = [&] {
    return json_of(ctl() + " stat " + m.mnt() + " --json")["dax_counters"]["dax_poison_revocations"].get<uint64_t>();
  };
  for (int i = 0; i < 500 && revocations() == 0; i++) usleep(10000);
  REQUIRE(revocations() == 1);
  REQUIRE_FALSE(inj.done());
  // b's page gets a healthy block of its own; an early-kill process maps it.
  int fd = open(b.c_str(), O_WRONLY);
  REQUIRE(fd >= 0);
  const std::string full(kPage, 'W');
  REQUIRE(pwrite(fd, full.data(), kPage, P * kPage) == static_cast<ssize_t>(kPage));
  close(fd);
  auto fb = backing(b, kPages);
  REQUIRE(fb[P].physical != bad);
  REQUIRE_FALSE(fb[P].poisoned);
  auto mapper = racer(b, kPages, "load", true);
  inj.join();  // the holder is killed at the lease
  REQUIRE(inj.status() == 0);
  CHECK(holder.wait() == 128 + SIGKILL);
  finish(*mapper);
  INFO(report(*mapper));
  CHECK(mapper->sigbus.empty());  // it maps a healthy block: no BUS_MCEERR_AO
  CHECK(mapper->probe.empty());
  CHECK(revocations() == 1);
  check_daemon_up(m);
}

// Regression: DaxService::memory_failure posts its revokes, waits for every session it posted
// to (up to the lease: one stalled mapper holds the wait), then drops the records it revoked. It
// used to drop every record those sessions had in the owners' ranges, including one a session made
// during the wait: once the page is healthy again (a recovery write: a full overwrite in place
// clears the poison), the session that acknowledged early refaults it, the identical old record
// counted as its duplicate, and the drop after the wait removed it. The process then mapped the
// block with no record: a later break of that page posted it no revoke, the block was freed and
// handed to another file, and the process read that file's data through the old address. Now the
// revoked records are marked when the revoke is posted (a refault never dedupes against them) and
// only marked records go. Made deterministic: a stopped second mapper keeps the notifier waiting.
TEST_CASE("a page made healthy while the notifier waits keeps its new mapping's record",
          "[dax][fuse][poison][poison-race][poison-refault]") {
  Mount m("16M", "lease=1");
  constexpr uint64_t kPages = 16, P = 5;
  std::string a = m.path("a");
  spit(a, pattern(kPages, 0));
  const uint64_t bad = backing(a, kPages)[P].physical;
  Proc holder({ctl(), "run", "--", tool(), "sleep", a});
  REQUIRE(holder.line() == "ready");
  auto mapper = racer(a, kPages, "load");  // late kill: it touches the page again and again
  REQUIRE(holder.stop());  // the notifier waits the lease for it
  Injection inj(m, bad);
  auto revocations = [&] {
    return json_of(ctl() + " stat " + m.mnt() + " --json")["dax_counters"]["dax_poison_revocations"].get<uint64_t>();
  };
  for (int i = 0; i < 500 && revocations() < 2; i++) usleep(10000);
  REQUIRE(revocations() == 2);  // the holder and the mapper
  REQUIRE_FALSE(inj.done());
  // A recovery write: the page is healthy again, in the same block.
  int fd = open(a.c_str(), O_RDWR);
  REQUIRE(fd >= 0);
  const std::string full(kPage, 'W');
  REQUIRE(pwrite(fd, full.data(), kPage, P * kPage) == static_cast<ssize_t>(kPage));
  REQUIRE_FALSE(poisoned_now(m, bad));
  // The mapper maps the page again (its record: offset P * 4096 in the registry).
  auto mapper_has_page = [&] {
    nlohmann::json rows = json_of(ctl() + " mappers " + m.mnt() + " --json")["mappings"];
    for (auto& r : rows) {
      uint64_t off = r["offset"], len = r["length"];
      if (r["pid"] == mapper->proc->pid() && r["kind"] == "device" && off <= P * kPage && P * kPage < off + len)
        return true;
    }
    return false;
  };
  for (int i = 0; i < 500 && !mapper_has_page(); i++) usleep(10000);
  REQUIRE(mapper_has_page());
  inj.join();  // the holder is killed at the lease, the notifier drops the records it revoked
  REQUIRE(inj.status() == 0);
  CHECK(holder.wait() == 128 + SIGKILL);
  CHECK(mapper_has_page());  // fails: its record is gone, the mapping is not
  // What that costs: punching the page posts the mapper no revoke; the freed block goes to y.
  REQUIRE(fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, P * kPage, kPage) == 0);
  close(fd);
  std::string y = m.path("y");
  {
    int yfd = open(y.c_str(), O_CREAT | O_WRONLY, 0644);
    REQUIRE(yfd >= 0);
    const std::string chunk(256 * 1024, 'Y');
    while (write(yfd, chunk.data(), chunk.size()) > 0) {
    }
    close(yfd);
  }
  finish(*mapper);
  INFO(report(*mapper));
  INFO("the punched block's owners now: " << [&] {
    std::string o;
    for (auto& [f, off] : owners(m, bad)) o += f + "@" + std::to_string(off) + " ";
    return o;
  }());
  CHECK(mapper->value[P] == 0);  // the hole; fails: what the block's new owner wrote there
  REQUIRE(unlink(y.c_str()) == 0);
  check_daemon_up(m);
}
