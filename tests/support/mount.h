// Real mounts for integration tests: locates the built programs, formats a device, runs the
// daxfs daemon in the foreground as a child (so the test knows its pid and can SIGKILL it), and
// always unmounts and reaps it. One Mount per test; everything lives in the test's TempDir.
#pragma once

#include <fcntl.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "tests/support/temp_dir.h"

namespace daxfs::test {

// The build directory: tests run from build/tests/<binary>.
inline std::string build_dir() {
  auto exe = std::filesystem::read_symlink("/proc/self/exe");
  auto dir = exe.parent_path();
  while (!dir.empty() && !std::filesystem::exists(dir / "build.ninja")) dir = dir.parent_path();
  return dir.string();
}
inline std::string program(const std::string& name) {
  for (const char* sub : {"/fs/", "/fs/fsck/"}) {
    std::string p = build_dir() + sub + name;
    if (access(p.c_str(), X_OK) == 0) return p;
  }
  return build_dir() + "/fs/" + name;
}

// Runs a command line through the shell; returns its exit status, output in `out`.
inline int run(const std::string& cmd, std::string* out = nullptr) {
  FILE* p = popen((cmd + " 2>&1").c_str(), "r");
  if (!p) return -1;
  std::string text;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) text.append(buf, n);
  int st = pclose(p);
  if (out) *out = text;
  return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

inline bool is_mounted(const std::string& mnt) {
  std::ifstream in("/proc/self/mountinfo");
  std::string line;
  while (std::getline(in, line))
    if (line.find(" " + mnt + " ") != std::string::npos) return true;
  return false;
}

// Creates or replaces `path` with `data`, checked.
inline void spit(const std::string& path, const std::string& data) {
  int fd = open(path.c_str(), O_CREAT | O_WRONLY | O_TRUNC | O_CLOEXEC, 0644);
  REQUIRE(fd >= 0);
  REQUIRE(write(fd, data.data(), data.size()) == static_cast<ssize_t>(data.size()));
  close(fd);
}

inline std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

class Mount {
 public:
  explicit Mount(const std::string& size = "64M", const std::string& options = "") {
    device_ = dir_.file("pmem0");
    mnt_ = dir_.file("mnt");
    std::filesystem::create_directory(mnt_);
    std::string out;
    REQUIRE(run(program("mkfs.daxfs") + " -s " + size + " " + device_, &out) == 0);
    start(options);
  }
  ~Mount() { stop(); }
  Mount(const Mount&) = delete;
  Mount& operator=(const Mount&) = delete;

  // Starts the daemon (foreground child) and waits for the mount to appear.
  void start(const std::string& options = "") {
    pid_ = fork();
    REQUIRE(pid_ >= 0);
    if (pid_ == 0) {
      std::vector<std::string> argv = {program("daxfs"), device_, mnt_, "-f"};
      if (!options.empty()) argv.insert(argv.end(), {"-o", options});
      std::vector<char*> cargv;
      for (auto& a : argv) cargv.push_back(a.data());
      cargv.push_back(nullptr);
      int devnull = open("/dev/null", O_WRONLY);
      dup2(devnull, 1);
      execv(cargv[0], cargv.data());
      _exit(127);
    }
    for (int i = 0; i < 500 && !is_mounted(mnt_); i++) {
      int st;
      if (waitpid(pid_, &st, WNOHANG) == pid_) {
        pid_ = -1;
        FAIL("the daxfs daemon exited before mounting");
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    REQUIRE(is_mounted(mnt_));
  }
  // Clean unmount; waits for the daemon to exit.
  void stop() {
    if (pid_ <= 0) return;
    if (umount2(mnt_.c_str(), 0) != 0) umount2(mnt_.c_str(), MNT_DETACH);
    // The daemon exits once unmounted; one that does not within 5 s is killed, never left behind.
    int st;
    for (int i = 0; i < 500; i++) {
      if (waitpid(pid_, &st, WNOHANG) == pid_) {
        pid_ = -1;
        return;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    kill(pid_, SIGKILL);
    waitpid(pid_, &st, 0);
    umount2(mnt_.c_str(), MNT_DETACH);
    pid_ = -1;
  }
  // SIGKILLs the daemon (a crash) and detaches the dead mount.
  void crash() {
    kill_daemon();
    detach();
  }
  // The two halves of crash(), for a test that must stop its own writers in between: once the
  // dead mount is detached, the mount point path is the directory underneath again.
  void kill_daemon() {
    if (pid_ <= 0) return;
    kill(pid_, SIGKILL);
    int st;
    waitpid(pid_, &st, 0);
    pid_ = -1;
  }
  void detach() { umount2(mnt_.c_str(), MNT_DETACH); }
  pid_t pid() const { return pid_; }
  const std::string& device() const { return device_; }
  const std::string& mnt() const { return mnt_; }
  std::string path(const std::string& rel) const { return mnt_ + "/" + rel; }
  const TempDir& dir() const { return dir_; }

 private:
  TempDir dir_;
  std::string device_, mnt_;
  pid_t pid_ = -1;
};

}  // namespace daxfs::test
