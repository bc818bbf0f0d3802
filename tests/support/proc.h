// A child process for integration tests: started with its stdout on a pipe the test reads line
// by line, signalled and reaped by pid; killed and reaped by the destructor if still running, so
// that no test leaves a process behind.
#pragma once

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

namespace daxfs::test {

class Proc {
 public:
  explicit Proc(const std::vector<std::string>& argv) {
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) != 0) return;
    pid_ = fork();
    if (pid_ == 0) {
      dup2(fds[1], 1);
      std::vector<char*> cargv;
      for (const auto& a : argv) cargv.push_back(const_cast<char*>(a.c_str()));
      cargv.push_back(nullptr);
      execvp(cargv[0], cargv.data());
      _exit(127);
    }
    close(fds[1]);
    out_ = fds[0];
  }
  ~Proc() {
    if (pid_ > 0 && !reaped_) {
      kill(pid_, SIGKILL);
      int st;
      waitpid(pid_, &st, 0);
    }
    if (out_ >= 0) close(out_);
  }
  Proc(const Proc&) = delete;
  Proc& operator=(const Proc&) = delete;

  pid_t pid() const { return pid_; }
  void signal(int sig) const { kill(pid_, sig); }
  // Sends SIGSTOP and waits until every thread is stopped (kill(2) returns before they are: a
  // thread that runs meanwhile, such as the DAX client's agent, may still answer a revoke).
  bool stop(int timeout_ms = 5000) const {
    kill(pid_, SIGSTOP);
    auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
    while (std::chrono::steady_clock::now() < deadline) {
      if (all_threads_stopped()) return true;
      usleep(1000);
    }
    return false;
  }

  bool all_threads_stopped() const {
    std::string dir = "/proc/" + std::to_string(pid_) + "/task";
    DIR* d = opendir(dir.c_str());
    if (!d) return false;
    bool all = true, any = false;
    while (dirent* e = readdir(d)) {
      if (e->d_name[0] == '.') continue;
      std::ifstream in(dir + "/" + e->d_name + "/stat");
      std::string stat((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
      size_t paren = stat.rfind(')');
      if (paren == std::string::npos || paren + 2 >= stat.size()) continue;  // gone meanwhile
      any = true;
      if (stat[paren + 2] != 'T') all = false;
    }
    closedir(d);
    return any && all;
  }

  // The next line of output (without the newline); "" at EOF or after timeout_ms.
  std::string line(int timeout_ms = 10000) {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
    for (;;) {
      size_t nl = buf_.find('\n');
      if (nl != std::string::npos) {
        std::string l = buf_.substr(0, nl);
        buf_.erase(0, nl + 1);
        return l;
      }
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) return "";
      pollfd p{out_, POLLIN, 0};
      if (poll(&p, 1, static_cast<int>(left.count())) <= 0) return "";
      char tmp[4096];
      ssize_t n = read(out_, tmp, sizeof tmp);
      if (n <= 0) return "";
      buf_.append(tmp, static_cast<size_t>(n));
    }
  }
  // Everything it prints until it exits.
  std::string rest() {
    std::string all = buf_;
    buf_.clear();
    char tmp[4096];
    ssize_t n;
    while ((n = read(out_, tmp, sizeof tmp)) > 0) all.append(tmp, static_cast<size_t>(n));
    return all;
  }
  // Waits for it; its exit status, or 128 + the signal that ended it.
  int wait() {
    if (reaped_) return status_;
    int st;
    waitpid(pid_, &st, 0);
    reaped_ = true;
    status_ = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    return status_;
  }
  // Whether it has exited within timeout_ms (then wait() returns at once).
  bool exited_within(int timeout_ms) {
    for (int i = 0; i < timeout_ms / 10 + 1; i++) {
      int st;
      if (waitpid(pid_, &st, WNOHANG) == pid_) {
        reaped_ = true;
        status_ = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
        return true;
      }
      usleep(10000);
    }
    return false;
  }

 private:
  pid_t pid_ = -1;
  int out_ = -1;
  std::string buf_;
  bool reaped_ = false;
  int status_ = -1;
};

}  // namespace daxfs::test
