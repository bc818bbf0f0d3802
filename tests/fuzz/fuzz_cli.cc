// libFuzzer harness "cli": the argument parsing (and what follows it) of daxfsctl, mkfs.daxfs
// and fsck.daxfs, in process: their main() functions are compiled again as daxfsctl_main,
// mkfs_main and fsck_main (tests/fuzz/meson.build) and called with an argv built from the input.
//
// Sandbox: everything happens in the process's work directory (fuzz_util.h), which is the
// current directory; no argument contains a '/' (raw bytes have it replaced) or is "." or "..",
// so every path an argument names is in that directory. It holds a formatted 16 MiB device
// "dev" (with its .ctl file), a small non-daxfs file "junk", an empty directory "dir" and a fake
// preload library; before each input the directory is brought back to exactly that (extra files
// removed, changed ones rewritten: mkfs -f, fsck -y and inject-error change them). Files cannot
// grow past 64 MiB (RLIMIT_FSIZE, SIGXFSZ ignored: mkfs -s 1T gets EFBIG). `daxfsctl run` never
// executes anything: execvp is answered here (ENOENT or EACCES), after the real code has
// checked its arguments and set its environment (restored afterwards).
//
// Input: u8 program, then up to 16 arguments, each u8 kind | payload: a token from a dictionary
// of subcommands, options, values (sizes with every suffix, hex, negative, overflowing, empty),
// and the directory's names, or raw bytes (u8 length).
// Asserted: the program returns (no crash, no uncaught exception, which would terminate the
// real program) with one of its documented exit statuses: daxfsctl 0, 1 (an operation failed), 2
// (usage), 126/127 (run: cannot execute / not found); mkfs.daxfs 0, 1; fsck.daxfs 0, 1, 4, 8,
// 16 (usage).
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "tests/fuzz/fuzz_util.h"
#include "tests/fuzz/template_image.h"

int daxfsctl_main(int argc, char** argv);
int mkfs_main(int argc, char** argv);
int fsck_main(int argc, char** argv);

namespace {
int g_exec_calls = 0;
}

// `daxfsctl run` ends in execvp: never in this process.
extern "C" int execvp(const char* file, char* const argv[]) {
  (void)argv;
  g_exec_calls++;
  errno = file && file[0] == 'x' ? EACCES : ENOENT;
  return -1;
}

using namespace daxfs;
using daxfs::fuzz::Input;

namespace {

const std::vector<std::string>& dictionary() {
  static const std::vector<std::string> d = {
      // daxfsctl subcommands and their options
      "inject-error", "clear-error", "list-errors", "remove-device", "shutdown", "stat", "reflink", "dedupe",
      "unshare", "collapse", "insert", "fiemap", "fsmap", "run", "mappers", "--offset", "--length", "--file",
      "--file-offset", "--json", "--src-offset", "--dst-offset", "--early-kill", "--late-kill", "--help", "-h",
      "--", "--offset=4096", "--length=", "--bogus",
      // mkfs.daxfs, fsck.daxfs
      "-f", "--force", "-s", "--size", "-b", "--block-size", "-m", "reflink=0", "reflink=1", "reflink=2", "-L",
      "--label", "-n", "-y", "-p", "-a", "--no", "--yes", "--preen", "-ny", "-fy",
      // values
      "0", "1", "512", "4096", "4097", "8K", "16M", "16m", "15M", "64M", "65M", "1G", "1T", "2T", "1P", "16E",
      "17E", "4KiB", "4kb", "4x", "0x1000", "0X10", "0x", "-1", "-4096", "+4096", " 4096", "4096 ",
      "18446744073709551615", "18446744073709551616", "99999999999999999999", "1e3", "9223372036854775807",
      "9223372036854775808", "", "=", "-", "label-of-more-than-thirty-one-bytes-long",
      // the directory's names
      "dev", "dev", "dev", "junk", "dir", "missing", "new", "dev.ctl", "lib.so", "x-not-executable"};
  return d;
}

std::string raw_arg(Input& in) {
  std::string s = in.bytes(in.u8() % 48);
  for (char& c : s) {
    if (c == '/') c = '_';
    if (c == '\0') c = '0';  // argv strings end at the first NUL anyway
  }
  if (s == "." || s == "..") s = "x";
  return s;
}

// The work directory is the current directory while an Inside lives (only then: libFuzzer
// opens its corpus and writes its artifacts by relative paths).
class Inside {
 public:
  Inside() {
    saved_ = open(".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    FUZZ_CHECK(saved_ >= 0 && chdir(fuzz::WorkDir::get().path().c_str()) == 0, "chdir to the work directory");
  }
  ~Inside() {
    FUZZ_CHECK(fchdir(saved_) == 0, "chdir back");
    close(saved_);
  }
  Inside(const Inside&) = delete;
  Inside& operator=(const Inside&) = delete;

 private:
  int saved_;
};

// The work directory as it must be before each input.
class Sandbox {
 public:
  Sandbox() {
    const fuzz::WorkDir& dir = fuzz::WorkDir::get();
    Inside inside;
    struct rlimit limit {64ULL << 20, 64ULL << 20};
    FUZZ_CHECK(setrlimit(RLIMIT_FSIZE, &limit) == 0, "setrlimit");
    signal(SIGXFSZ, SIG_IGN);
    device_ = std::make_unique<fuzz::TemplateImage>(dir.file("dev"), [](fs::Filesystem& f) {
      auto st = FUZZ_SETUP(f.mknod(f.root_ino(), "file", S_IFREG | 0644, 0, fuzz::root_cred()));
      (void)FUZZ_SETUP(f.write(st->st_ino, 0, "data", 4));
    });
    write_file("junk", std::string(100, 'j'));
    write_file("lib.so", "not really a library");
    write_file("x-not-executable", "#!/bin/false\n");
    FUZZ_CHECK(mkdir("dir", 0755) == 0, "mkdir dir");
    setenv("DAXFS_PRELOAD", dir.file("lib.so").c_str(), 1);  // so `run` gets as far as execvp
    for (const auto& e : std::filesystem::directory_iterator(".")) {
      std::string name = e.path().filename().string();
      if (e.is_regular_file() && name != "dev") saved_[name] = read_file(name);
      if (e.is_directory()) dirs_.insert(name);
    }
    FUZZ_CHECK(saved_.count("dev.ctl") == 1, "the device has no .ctl file");
  }

  void restore() {
    std::error_code ec;  // (called inside the work directory)
    for (const auto& e : std::filesystem::directory_iterator(".")) {
      std::string name = e.path().filename().string();
      bool keep = name == "dev" || saved_.count(name) || dirs_.count(name);
      if (!keep || (dirs_.count(name) && !std::filesystem::is_empty(e.path(), ec)) ||
          (dirs_.count(name) == 0 && !e.is_regular_file()))
        std::filesystem::remove_all(e.path(), ec);
    }
    for (const std::string& d : dirs_) mkdir(d.c_str(), 0755);
    for (const auto& [name, bytes] : saved_)
      if (read_file(name) != bytes) write_file(name, bytes);
    if (std::filesystem::file_size("dev", ec) != fuzz::TemplateImage::kSize)
      std::filesystem::resize_file("dev", fuzz::TemplateImage::kSize, ec);
    chmod("dev", 0600);
    device_->restore();
  }

 private:
  static std::string read_file(const std::string& name) {
    std::ifstream in(name, std::ios::binary);
    std::ostringstream s;
    s << in.rdbuf();
    return s.str();
  }
  static void write_file(const std::string& name, const std::string& bytes) {
    std::ofstream out(name, std::ios::binary | std::ios::trunc);
    out << bytes;
    FUZZ_CHECK(out.good(), "cannot write " + name);
  }
  std::unique_ptr<fuzz::TemplateImage> device_;
  std::map<std::string, std::string> saved_;  // every regular file but the device
  std::set<std::string> dirs_;
};

// The environment `run` changes.
struct SavedEnv {
  std::map<std::string, std::string> values;
  std::set<std::string> absent;
  SavedEnv() {
    for (const char* name : {"LD_PRELOAD", "DAXFS_MCE_KILL"}) {
      if (const char* v = getenv(name))
        values[name] = v;
      else
        absent.insert(name);
    }
  }
  ~SavedEnv() {
    for (const auto& [name, value] : values) setenv(name.c_str(), value.c_str(), 1);
    for (const std::string& name : absent) unsetenv(name.c_str());
  }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static Sandbox sandbox;
  Inside inside;
  sandbox.restore();
  Input in(data, size);
  const uint8_t program = in.u8() % 3;
  static const char* kNames[] = {"daxfsctl", "mkfs.daxfs", "fsck.daxfs"};
  std::vector<std::string> args{kNames[program]};
  const int count = in.u8() % 17;
  for (int i = 0; i < count && !in.done(); i++) {
    const uint8_t kind = in.u8();
    args.push_back(kind < 200 ? dictionary()[in.u8() % dictionary().size()] : raw_arg(in));
  }
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);

  int status;
  {
    SavedEnv env;
    const int argc = static_cast<int>(args.size());
    status = program == 0 ? daxfsctl_main(argc, argv.data())
             : program == 1 ? mkfs_main(argc, argv.data())
                            : fsck_main(argc, argv.data());
  }
  std::string line;
  for (const std::string& a : args) line += " '" + a + "'";
  switch (program) {
    case 0:
      FUZZ_CHECK(status == 0 || status == 1 || status == 2 || status == 126 || status == 127,
                 "daxfsctl exit " + std::to_string(status) + ":" + line);
      break;
    case 1:
      FUZZ_CHECK(status == 0 || status == 1, "mkfs.daxfs exit " + std::to_string(status) + ":" + line);
      break;
    default:
      FUZZ_CHECK(status == 0 || status == 1 || status == 4 || status == 8 || status == 16,
                 "fsck.daxfs exit " + std::to_string(status) + ":" + line);
  }
  return 0;
}
