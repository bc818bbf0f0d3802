// Memory failure through the DAX layer, end to end (fstests xfs/550-552 on reflink + DAX): a
// poisoned page is taken from every process that maps it, in every reflink sharer; late-kill
// processes get SIGBUS BUS_MCEERR_AR when they touch it, early-kill ones BUS_MCEERR_AO at once,
// with si_addr the page's address in that process and si_addr_lsb 12; processes that do not map
// the page are untouched; a handler can skip the page and go on. dax_tool poison-watch prints
// "sigbus CODE page N lsb L" (N: the page's index in its mapping of the file).
#include <fcntl.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <memory>
#include <set>
#include <nlohmann/json.hpp>
#include <string>
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
