// Reflink through a real mount: daxfsctl reflink/dedupe/unshare/fiemap/fsmap and
// copy_file_range(2), checked through the kernel's view of the files.
#include <fcntl.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/wait.h>
#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>
#include <set>

#include "daxcore/daxfs_ioctl.h"
#include "tests/support/mount.h"

using namespace daxfs::test;

namespace {
std::string random_bytes(size_t n, unsigned seed) {
  std::string s(n, '\0');
  for (size_t i = 0; i < n; i++) s[i] = static_cast<char>((i * 2654435761u + seed) >> 13);
  return s;
}
nlohmann::json json_of(const std::string& cmd) {
  std::string out;
  REQUIRE(run(cmd, &out) == 0);
  return nlohmann::json::parse(out);
}
bool all_shared(const nlohmann::json& fiemap) {
  for (auto& e : fiemap["extents"]) {
    auto f = e["flags"].get<std::vector<std::string>>();
    if (std::find(f.begin(), f.end(), "shared") == f.end()) return false;
  }
  return !fiemap["extents"].empty();
}
}  // namespace

TEST_CASE("two reflinked files share every block until one is written", "[fuse][reflink]") {
  Mount m;
  std::string ctl = program("daxfsctl");
  std::string data = random_bytes(300000, 1);
  spit(m.path("a"), data);
  std::string out;
  REQUIRE(run(ctl + " reflink " + m.path("a") + " " + m.path("b"), &out) == 0);
  CHECK(out.find("reflinked 300000 bytes") != std::string::npos);
  CHECK(slurp(m.path("b")) == data);
  auto fa = json_of(ctl + " fiemap " + m.path("a") + " --json");
  auto fb = json_of(ctl + " fiemap " + m.path("b") + " --json");
  CHECK(all_shared(fa));
  CHECK(all_shared(fb));
  CHECK(fa["extents"][0]["physical"] == fb["extents"][0]["physical"]);
  // fsmap shows both owners of the shared range.
  auto fsmap = json_of(ctl + " fsmap " + m.mnt() + " --json");
  std::set<std::string> owners;
  for (auto& r : fsmap["rows"])
    if (r["kind"] == "data" && r["physical"] == fa["extents"][0]["physical"]) owners.insert(r["path"]);
  CHECK(owners == std::set<std::string>{"/a", "/b"});
  // A write to b copies the block it touches; a is untouched.
  int fd = open(m.path("b").c_str(), O_WRONLY);
  REQUIRE(pwrite(fd, "NEW", 3, 5000) == 3);
  close(fd);
  std::string changed = data;
  changed.replace(5000, 3, "NEW");
  CHECK(slurp(m.path("a")) == data);
  CHECK(slurp(m.path("b")) == changed);
  // Unshare removes the sharing; dedupe of equal ranges shares again, of different ones differs.
  REQUIRE(run(ctl + " unshare " + m.path("b"), &out) == 0);
  CHECK_FALSE(all_shared(json_of(ctl + " fiemap " + m.path("b") + " --json")));
  CHECK(slurp(m.path("b")) == changed);
  spit(m.path("c"), data);
  REQUIRE(run(ctl + " dedupe " + m.path("a") + " " + m.path("c"), &out) == 0);
  CHECK(all_shared(json_of(ctl + " fiemap " + m.path("c") + " --json")));
  CHECK(run(ctl + " dedupe " + m.path("a") + " " + m.path("b"), &out) == 3);
  CHECK(out.find("differs") != std::string::npos);
  CHECK(slurp(m.path("b")) == changed);
  m.stop();
  std::string fsck;
  CHECK(run(program("fsck.daxfs") + " -n " + m.device(), &fsck) == 0);
  INFO(fsck);
  auto offline = json_of(ctl + " fsmap " + m.device() + " --json");  // unmounted: read directly
  CHECK(offline["rows"].size() > 5);
  m.start();
  CHECK(slurp(m.path("a")) == data);
  CHECK(slurp(m.path("c")) == data);
}

TEST_CASE("copy_file_range through the kernel copies and shares the aligned middle", "[fuse][reflink]") {
  Mount m;
  std::string data = random_bytes(10 * 4096 + 123, 2);
  spit(m.path("src"), data);
  int in = open(m.path("src").c_str(), O_RDONLY);
  int out = open(m.path("dst").c_str(), O_CREAT | O_WRONLY, 0644);
  REQUIRE(in >= 0);
  REQUIRE(out >= 0);
  loff_t off_in = 0, off_out = 0;
  ssize_t n = copy_file_range(in, &off_in, out, &off_out, data.size(), 0);
  CHECK(n == static_cast<ssize_t>(data.size()));
  close(in);
  close(out);
  CHECK(slurp(m.path("dst")) == data);
  auto f = json_of(program("daxfsctl") + " fiemap " + m.path("dst") + " --json");
  bool any_shared = false;
  for (auto& e : f["extents"]) {
    auto flags = e["flags"].get<std::vector<std::string>>();
    any_shared |= std::find(flags.begin(), flags.end(), "shared") != flags.end();
  }
  CHECK(any_shared);
}

TEST_CASE("reflink commands refuse bad input with one line", "[fuse][reflink]") {
  Mount m;
  std::string ctl = program("daxfsctl");
  spit(m.path("a"), random_bytes(3 * 4096, 3));
  std::string out;
  CHECK(run(ctl + " reflink " + m.path("a") + " " + m.path("b") + " --src-offset 1", &out) == 1);
  CHECK(out.find("Invalid argument") != std::string::npos);
  CHECK(run(ctl + " reflink " + m.path("a") + " " + m.path("a") + " --dst-offset 4K", &out) == 1);
  CHECK(run(ctl + " reflink " + m.path("a") + " /tmp/not-on-daxfs-" + std::to_string(getpid()), &out) == 1);
  CHECK(out.find("same filesystem") != std::string::npos);
  unlink(("/tmp/not-on-daxfs-" + std::to_string(getpid())).c_str());
  CHECK(run(ctl + " reflink " + m.path("missing") + " " + m.path("b"), &out) == 1);
  CHECK(out.find("No such file") != std::string::npos);
  CHECK(run(ctl + " fiemap " + m.path("a") + " --bogus", &out) != 0);
}

TEST_CASE("a clone cannot read what the caller could not open", "[fuse][reflink][security]") {
  Mount m("64M", "allow_other");
  REQUIRE(chmod(m.dir().path().c_str(), 0755) == 0);  // mkdtemp made it 0700
  REQUIRE(chmod(m.mnt().c_str(), 0777) == 0);
  REQUIRE(mkdir(m.path("private").c_str(), 0700) == 0);
  spit(m.path("private/secret"), std::string(8192, 'S'));
  REQUIRE(chmod(m.path("private/secret").c_str(), 0644) == 0);  // readable, but unreachable
  spit(m.path("public"), std::string(8192, 'P'));
  REQUIRE(chmod(m.path("public").c_str(), 0644) == 0);
  struct stat secret, pub;
  REQUIRE(stat(m.path("private/secret").c_str(), &secret) == 0);
  REQUIRE(stat(m.path("public").c_str(), &pub) == 0);
  long secret_gen = 0, pub_gen = 0;
  int fd = open(m.path("private/secret").c_str(), O_RDONLY);
  REQUIRE(ioctl(fd, FS_IOC_GETVERSION, &secret_gen) == 0);
  close(fd);
  fd = open(m.path("public").c_str(), O_RDONLY);
  REQUIRE(ioctl(fd, FS_IOC_GETVERSION, &pub_gen) == 0);
  close(fd);
  pid_t child = fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    if (setgid(65534) != 0 || setuid(65534) != 0) _exit(10);
    int out = open(m.path("mine").c_str(), O_CREAT | O_RDWR, 0644);
    if (out < 0) _exit(11);
    daxfs_clone_range args{};
    args.src_ino = secret.st_ino;
    args.src_generation = static_cast<uint64_t>(secret_gen);
    if (ioctl(out, DAXFS_IOC_CLONE_RANGE, &args) == 0 || errno != EBADF) _exit(12);
    args.src_ino = pub.st_ino;  // a file the caller can open: allowed, as FICLONE would be
    args.src_generation = static_cast<uint64_t>(pub_gen);
    if (ioctl(out, DAXFS_IOC_CLONE_RANGE, &args) != 0) _exit(13);
    _exit(0);
  }
  int st;
  waitpid(child, &st, 0);
  REQUIRE(WIFEXITED(st));
  CHECK(WEXITSTATUS(st) == 0);
  CHECK(slurp(m.path("mine")) == std::string(8192, 'P'));
}
