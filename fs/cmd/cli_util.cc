// Size parsing/printing, error lines and device resolution for the CLI programs.
#include "fs/cmd/cli_util.h"

#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/vfs.h>

#include <cctype>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <vector>

#include "daxcore/daxfs_ioctl.h"

namespace daxfs::cli {

namespace {
std::string g_program = "daxfsctl";

// Undoes the octal escapes (\040 for a space) of /proc/self/mountinfo fields.
std::string unescape_mountinfo(const std::string& s) {
  std::string out;
  for (size_t i = 0; i < s.size(); i++) {
    if (s[i] == '\\' && i + 3 < s.size() + 0 && isdigit(s[i + 1]) && isdigit(s[i + 2]) &&
        isdigit(s[i + 3])) {
      out.push_back(static_cast<char>((s[i + 1] - '0') * 64 + (s[i + 2] - '0') * 8 + (s[i + 3] - '0')));
      i += 3;
    } else {
      out.push_back(s[i]);
    }
  }
  return out;
}
}  // namespace

void set_program_name(const std::string& name) { g_program = name; }

void print_error(const std::string& context, const std::string& message) {
  if (context.empty())
    fprintf(stderr, "%s: %s\n", g_program.c_str(), message.c_str());
  else
    fprintf(stderr, "%s: %s: %s\n", g_program.c_str(), context.c_str(), message.c_str());
}

std::optional<uint64_t> parse_size(const std::string& text) {
  if (text.empty() || text[0] == '-' || text[0] == '+' || isspace(static_cast<unsigned char>(text[0])))
    return std::nullopt;
  errno = 0;
  char* end = nullptr;
  bool hex = text.size() > 2 && text[0] == '0' && (text[1] == 'x' || text[1] == 'X');
  unsigned long long v = strtoull(text.c_str(), &end, hex ? 16 : 10);
  if (errno != 0 || end == text.c_str()) return std::nullopt;
  std::string suffix(end);
  for (char& c : suffix) c = static_cast<char>(tolower(static_cast<unsigned char>(c)));
  int shift = 0;
  if (!suffix.empty() && !hex) {
    static const char* kUnits = "kmgtpe";
    const char* u = suffix[0] ? strchr(kUnits, suffix[0]) : nullptr;
    if (u == nullptr) {
      if (suffix != "b") return std::nullopt;
    } else {
      shift = 10 * static_cast<int>(u - kUnits + 1);
      std::string rest = suffix.substr(1);
      if (!rest.empty() && rest != "b" && rest != "ib") return std::nullopt;
    }
  } else if (!suffix.empty()) {
    return std::nullopt;
  }
  if (shift && v > (ULLONG_MAX >> shift)) return std::nullopt;
  return static_cast<uint64_t>(v) << shift;
}

std::string format_size(uint64_t bytes) {
  static const char kUnits[] = {'E', 'P', 'T', 'G', 'M', 'K'};
  for (int i = 0; i < 6; i++) {
    int shift = 10 * (6 - i);
    uint64_t unit = 1ULL << shift;
    if (bytes >= unit && bytes % unit == 0) return std::to_string(bytes >> shift) + kUnits[i];
  }
  return std::to_string(bytes);
}

namespace {
struct MountEntry {
  std::string mountpoint, source;
};
// The FUSE mounts of /proc/self/mountinfo, in order.
std::vector<MountEntry> fuse_mounts() {
  std::vector<MountEntry> out;
  std::ifstream in("/proc/self/mountinfo");
  std::string line;
  while (std::getline(in, line)) {
    // id parent maj:min root mountpoint options [optional...] - fstype source superopts
    std::istringstream ls(line);
    std::vector<std::string> f;
    std::string w;
    while (ls >> w) f.push_back(w);
    size_t dash = 0;
    while (dash < f.size() && f[dash] != "-") dash++;
    if (f.size() < 5 || dash + 2 >= f.size()) continue;
    const std::string& fstype = f[dash + 1];
    if (fstype != "fuse" && fstype != "fuse.daxfs" && fstype != "fuseblk") continue;
    out.push_back({unescape_mountinfo(f[4]), unescape_mountinfo(f[dash + 2])});
  }
  return out;
}
}  // namespace

Result<std::string> resolve_device(const std::string& path, std::string* mountpoint) {
  struct stat st;
  if (stat(path.c_str(), &st) != 0) return error(errno);
  if (S_ISREG(st.st_mode)) return path;
  if (!S_ISDIR(st.st_mode)) return error(ENODEV);
  char* real = realpath(path.c_str(), nullptr);
  if (real == nullptr) return error(errno);
  std::string want(real);
  free(real);
  std::string found;
  for (const MountEntry& m : fuse_mounts())
    if (m.mountpoint == want) found = m.source;  // the last mount on top wins
  if (found.empty()) return error(ENOTBLK);
  struct stat dst;
  if (stat(found.c_str(), &dst) != 0 || !S_ISREG(dst.st_mode)) return error(ENODEV);
  if (mountpoint) *mountpoint = want;
  return found;
}

std::string mount_of_device(const std::string& device) {
  char* real = realpath(device.c_str(), nullptr);
  if (real == nullptr) return "";
  std::string want(real);
  free(real);
  std::string found;
  for (const MountEntry& m : fuse_mounts())
    if (m.source == want) found = m.mountpoint;
  return found;
}

bool on_daxfs(int fd) {
  constexpr long kFuseSuperMagic = 0x65735546;  // Only FUSE files are asked the daxfs ioctl.
  struct statfs sf;
  // (statfs of a shut-down daxfs fails with EIO: then the ioctl decides.)
  if (fstatfs(fd, &sf) == 0 && sf.f_type != kFuseSuperMagic) return false;
  daxfs_counters c{};
  return ioctl(fd, DAXFS_IOC_COUNTERS, &c) == 0 && c.version == 1;
}

}  // namespace daxfs::cli
