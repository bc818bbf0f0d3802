// The crash loop: SIGKILL the daemon at random moments of a mixed workload, then fsck must find
// the device clean (after journal recovery), the next mount must succeed, and every operation
// that had returned must be there. The workload runs in a child process and logs each completed
// operation to a file outside the mount (the daemon's death cannot touch it).
#include <fcntl.h>
#include <linux/falloc.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstring>
#include <map>
#include <random>
#include <sstream>

#include "tests/support/mount.h"

using namespace daxfs::test;

namespace {

// Content of file `name` at generation `gen`: deterministic, so the checker can recompute it.
std::string content(const std::string& name, uint64_t gen, size_t size) {
  std::string s(size, '\0');
  std::mt19937_64 r(std::hash<std::string>{}(name) ^ gen);
  for (size_t i = 0; i < size; i += 8) {
    uint64_t v = r();
    memcpy(s.data() + i, &v, std::min<size_t>(8, size - i));
  }
  return s;
}

void log_line(int fd, const std::string& line) {
  std::string l = line + "\n";
  if (write(fd, l.data(), l.size()) != static_cast<ssize_t>(l.size())) _exit(3);
}

// The workload: runs until the mount dies. Log: "pending-create NAME" before a file is created,
// "file NAME GEN SIZE" after it is fully written and fsynced, "pending-rm NAME" before and
// "rm NAME" after an unlink, "clone NAME SRC" after a fsynced copy_file_range clone of a logged
// file. A pending state may be found either way after a crash.
[[noreturn]] void workload(const std::string& mnt, const std::string& log, unsigned seed) {
  int lfd = open(log.c_str(), O_WRONLY | O_APPEND);
  std::mt19937 r(seed);
  std::vector<std::string> files;
  uint64_t gen = seed * 1000ULL;
  for (;;) {
    int op = static_cast<int>(r() % 10);
    if (op < 5 || files.empty()) {
      std::string name = "d" + std::to_string(r() % 4) + "/f" + std::to_string(r() % 40);
      if (std::find(files.begin(), files.end(), name) != files.end()) continue;
      mkdir((mnt + "/" + name.substr(0, 2)).c_str(), 0755);
      size_t size = r() % 3 ? r() % 20000 : r() % 400000;
      std::string data = content(name, ++gen, size);
      log_line(lfd, "pending-create " + name);
      int fd = open((mnt + "/" + name).c_str(), O_CREAT | O_EXCL | O_WRONLY, 0644);
      if (fd < 0) {
        if (errno == EEXIST) continue;
        _exit(0);  // the mount is gone
      }
      for (size_t off = 0; off < size;) {
        size_t n = std::min<size_t>(size - off, 1 + r() % 70000);
        if (pwrite(fd, data.data() + off, n, static_cast<off_t>(off)) != static_cast<ssize_t>(n)) _exit(0);
        off += n;
      }
      if (fsync(fd) != 0) _exit(0);
      close(fd);
      log_line(lfd, "file " + name + " " + std::to_string(gen) + " " + std::to_string(size));
      files.push_back(name);
    } else if (op < 6 && r() % 2) {
      // Reflink: copy_file_range shares the source's blocks; then CoW writes into a scratch
      // clone must leave the (logged, checked) source intact.
      size_t i = r() % files.size();
      std::string src = files[i];
      std::string name = "clones/c" + std::to_string(r() % 60);
      mkdir((mnt + "/clones").c_str(), 0755);
      log_line(lfd, "pending-create " + name);
      int in = open((mnt + "/" + src).c_str(), O_RDONLY);
      int out = open((mnt + "/" + name).c_str(), O_CREAT | O_EXCL | O_WRONLY, 0644);
      if (in < 0 || out < 0) {
        if (in >= 0) close(in);
        if (out >= 0) close(out);
        if (errno == EEXIST) continue;
        _exit(0);
      }
      struct stat sb;
      if (fstat(in, &sb) != 0) _exit(0);
      for (off_t done = 0; done < sb.st_size;) {
        ssize_t n = copy_file_range(in, nullptr, out, nullptr, static_cast<size_t>(sb.st_size - done), 0);
        if (n <= 0) _exit(0);
        done += n;
      }
      if (fsync(out) != 0) _exit(0);
      close(in);
      close(out);
      log_line(lfd, "clone " + name + " " + src);
      std::string cow = mnt + "/cow" + std::to_string(r() % 3);
      unlink(cow.c_str());
      in = open((mnt + "/" + src).c_str(), O_RDONLY);
      out = open(cow.c_str(), O_CREAT | O_RDWR, 0644);
      if (in < 0 || out < 0) _exit(0);
      (void)!copy_file_range(in, nullptr, out, nullptr, static_cast<size_t>(sb.st_size), 0);
      std::string junk(1 + r() % 9000, 'J');
      (void)!pwrite(out, junk.data(), junk.size(), static_cast<off_t>(r() % (sb.st_size + 1)));
      close(in);
      close(out);
    } else if (op < 7) {
      size_t i = r() % files.size();
      std::string name = files[i];
      log_line(lfd, "pending-rm " + name);
      if (unlink((mnt + "/" + name).c_str()) != 0) _exit(0);
      log_line(lfd, "rm " + name);
      files.erase(files.begin() + static_cast<long>(i));
    } else if (op < 9) {
      // Scratch churn that is not checked: fallocate, punch, truncate, xattrs, renames.
      std::string scratch = mnt + "/scratch" + std::to_string(r() % 3);
      int fd = open(scratch.c_str(), O_CREAT | O_RDWR, 0644);
      if (fd < 0) _exit(0);
      off_t off = static_cast<off_t>(r() % (8 << 20));
      (void)!fallocate(fd, 0, off, 1 + r() % 300000);
      (void)!fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, off / 2, r() % 100000 + 1);
      (void)!ftruncate(fd, static_cast<off_t>(r() % (4 << 20)));
      (void)!fsetxattr(fd, "user.x", "value", 5, 0);
      close(fd);
      (void)!rename(scratch.c_str(), (mnt + "/scratch" + std::to_string(r() % 3)).c_str());
    } else {
      std::string d = mnt + "/tree" + std::to_string(r() % 5);
      if (mkdir(d.c_str(), 0755) != 0 && errno != EEXIST) _exit(0);
      (void)!rmdir(d.c_str());
    }
  }
}

struct Expect {
  std::string state;  // "file", "pending-create", "pending-rm", "rm"
  uint64_t gen = 0;
  size_t size = 0;
  std::string content_of;  // for clones: the file whose (name, gen) made the content
};

std::map<std::string, Expect> read_log(const std::string& log) {
  std::map<std::string, Expect> out;
  std::ifstream in(log);
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream ls(line);
    std::string what, name;
    ls >> what >> name;
    if (what == "clone") {
      // A clone's content is its source's at the time: copy the source's expectation.
      std::string src;
      ls >> src;
      Expect copy = out[src];
      out[name] = copy;
      out[name].content_of = copy.content_of.empty() ? src : copy.content_of;
      continue;
    }
    Expect& e = out[name];
    e.state = what;
    e.content_of.clear();
    if (what == "file") ls >> e.gen >> e.size;
  }
  return out;
}

}  // namespace

TEST_CASE("SIGKILL of the daemon at random moments loses nothing that was acknowledged",
          "[fuse][crash][slow]") {
  std::string fsck = program("fsck.daxfs");
  REQUIRE(access(fsck.c_str(), X_OK) == 0);
  Mount m("128M");
  std::string log = m.dir().file("ops.log");
  close(open(log.c_str(), O_CREAT | O_WRONLY, 0644));
  std::mt19937 rng(20261122);
  const int kIterations = 50;
  for (int iter = 0; iter < kIterations; iter++) {
    INFO("iteration " << iter);
    pid_t child = fork();
    REQUIRE(child >= 0);
    if (child == 0) workload(m.mnt(), log, static_cast<unsigned>(iter + 1));
    usleep(20000 + rng() % 250000);
    m.kill_daemon();
    int st;
    kill(child, SIGKILL);
    waitpid(child, &st, 0);
    m.detach();

    std::string out;
    int rc = run(fsck + " -n " + m.device(), &out);
    INFO(out);
    REQUIRE(rc == 0);
    m.start();
    for (auto& [name, e] : read_log(log)) {
      struct stat sb;
      bool exists = stat(m.path(name).c_str(), &sb) == 0;
      if (e.state == "rm") {
        INFO(name);
        CHECK_FALSE(exists);
      } else if (e.state == "file") {
        INFO(name);
        REQUIRE(exists);
        std::ifstream in(m.path(name), std::ios::binary);
        std::string data((std::istreambuf_iterator<char>(in)), {});
        CHECK(data.size() == e.size);
        CHECK((data == content(e.content_of.empty() ? name : e.content_of, e.gen, e.size)));
      }
    }
    // Settle pending creations and removals so the next iteration's log stays exact.
    for (auto& [name, e] : read_log(log))
      if (e.state == "pending-rm" || e.state == "pending-create") {
        unlink(m.path(name).c_str());
        std::ofstream(log, std::ios::app) << "rm " << name << "\n";
      }
  }
  m.stop();
  std::string out;
  CHECK(run(fsck + " -n " + m.device(), &out) == 0);
}
