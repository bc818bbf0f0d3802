// The load test's tally files and helper-program runner (load_common.h).
#include "tests/load/load_common.h"

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <sstream>

namespace daxfs::load {

bool write_report(const std::string& path, const Tally& t) {
  std::ofstream out(path, std::ios::trunc);
  for (const auto& [kind, n] : t.ops) out << "op " << kind << " " << n << "\n";
  for (const auto& [kind, n] : t.expected) out << "expected " << kind << " " << n << "\n";
  out << "unexpected " << t.unexpected << "\n";
  out.flush();
  return static_cast<bool>(out);
}

bool add_report(const std::string& path, Tally& t) {
  std::ifstream in(path);
  std::string line;
  bool ended = false;  // the "unexpected" line comes last: a report without it is cut short
  while (std::getline(in, line)) {
    std::istringstream words(line);
    std::string what, kind;
    uint64_t n = 0;
    words >> what;
    if (what == "unexpected" && (words >> n)) {
      t.unexpected += n;
      ended = true;
    } else if ((what == "op" || what == "expected") && (words >> kind >> n)) {
      (what == "op" ? t.ops : t.expected)[kind] += n;
    } else {
      return false;
    }
  }
  return ended;
}

int run_capture(const std::vector<std::string>& argv, std::string* out) {
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) return -1;
  pid_t pid = fork();
  if (pid < 0) {
    close(fds[0]);
    close(fds[1]);
    return -1;
  }
  if (pid == 0) {
    dup2(fds[1], 1);
    dup2(fds[1], 2);
    std::vector<char*> cargv;
    for (const auto& a : argv) cargv.push_back(const_cast<char*>(a.c_str()));
    cargv.push_back(nullptr);
    execv(cargv[0], cargv.data());
    _exit(127);
  }
  close(fds[1]);
  std::string text;
  char buf[4096];
  ssize_t n;
  while ((n = read(fds[0], buf, sizeof buf)) > 0 || (n < 0 && errno == EINTR))
    if (n > 0) text.append(buf, static_cast<size_t>(n));
  close(fds[0]);
  int st = 0;
  while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
  }
  if (out) *out = text;
  return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

}  // namespace daxfs::load
