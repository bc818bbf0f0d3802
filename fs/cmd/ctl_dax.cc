// daxfsctl run | mappers, and the DAX counters of `stat`: the DAX layer's commands. `run` starts
// a program with the preload shim (daxcore/client/shim.cc); `mappers` and the counters read the
// mount's DAX registry (daxcore/registry.h), which the daemon's user (root) may read.
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

#include <climits>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <iostream>
#include <nlohmann/json.hpp>

#include "daxcore/registry.h"
#include "fs/cmd/cli_util.h"
#include "fs/cmd/ctl_commands.h"

namespace daxfs::cli {

namespace {

// The preload library: $DAXFS_PRELOAD, else beside this program's build or install location.
std::string find_preload() {
  if (const char* env = getenv("DAXFS_PRELOAD"); env && *env) return env;
  std::filesystem::path exe = std::filesystem::read_symlink("/proc/self/exe");
  std::filesystem::path dir = exe.parent_path();
  const char* candidates[] = {"../daxcore/libdaxfs_preload.so", "../lib/x86_64-linux-gnu/libdaxfs_preload.so",
                              "../lib/libdaxfs_preload.so", "../lib64/libdaxfs_preload.so"};
  for (const char* c : candidates) {
    std::filesystem::path p = dir / c;
    if (access(p.c_str(), R_OK) == 0) return std::filesystem::canonical(p).string();
  }
  return "";
}

// The mount point of the filesystem with device number `dev` (/proc/self/mountinfo).
std::string mount_of(dev_t dev) {
  std::ifstream in("/proc/self/mountinfo");
  std::string line;
  std::string want = std::to_string(major(dev)) + ":" + std::to_string(minor(dev));
  while (std::getline(in, line)) {
    std::istringstream f(line);
    std::string id, parent, majmin, root, mp;
    f >> id >> parent >> majmin >> root >> mp;
    if (majmin == want) return mp;
  }
  return "";
}

// The registry of the daxfs mount that holds `path` (its root or any file in it); the mount
// point in *mountpoint.
Result<std::string> registry_of(const std::string& path, std::string* mountpoint) {
  struct stat st;
  if (stat(path.c_str(), &st) != 0) return error(errno);
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return error(errno);
  bool ours = on_daxfs(fd);
  close(fd);
  if (!ours) return error(ENODEV);
  std::string mp = mount_of(st.st_dev);
  if (mp.empty()) return error(ENODEV);
  std::string device = TRY(resolve_device(mp, mountpoint));
  if (stat(device.c_str(), &st) != 0) return error(errno);
  return dax::Registry::name_for(st.st_dev, st.st_ino);
}

std::string prot_string(uint32_t prot) {
  std::string s;
  s += (prot & 1) ? 'r' : '-';
  s += (prot & 2) ? 'w' : '-';
  return s;
}

const char* kind_name(dax::MapKind k) {
  switch (k) {
    case dax::MapKind::kDevice: return "device";
    case dax::MapKind::kZero: return "zero";
    case dax::MapKind::kPin: return "pin";
  }
  return "?";
}

// The path of inode `ino` under `mountpoint` (a walk of the tree; empty if not found).
std::string path_of(const std::string& mountpoint, uint64_t ino) {
  std::error_code ec;
  for (auto it = std::filesystem::recursive_directory_iterator(
           mountpoint, std::filesystem::directory_options::skip_permission_denied, ec);
       !ec && it != std::filesystem::recursive_directory_iterator(); it.increment(ec)) {
    struct stat st;
    if (lstat(it->path().c_str(), &st) == 0 && st.st_ino == ino && S_ISREG(st.st_mode)) return it->path().string();
  }
  return "";
}

}  // namespace

nlohmann::json dax_counters_json(const std::string& mountpoint) {
  std::string mp;
  auto name = registry_of(mountpoint, &mp);
  if (!name) return nullptr;
  auto snap = dax::Registry::read(*name);
  if (!snap) return nullptr;
  const dax::DaxCounters& c = snap->header.counters;
  return {{"dax_sessions", c.sessions}, {"dax_live_sessions", snap->sessions.size()},
          {"dax_mappings", snap->mappings.size()}, {"dax_faults", c.faults},
          {"dax_faults_mapped", c.faults_mapped}, {"dax_faults_hole", c.faults_hole},
          {"dax_faults_unwritten", c.faults_unwritten}, {"dax_faults_alloc", c.faults_alloc},
          {"dax_faults_cow", c.faults_cow}, {"dax_faults_retried", c.faults_retried},
          {"dax_faults_failed", c.faults_failed}, {"dax_layout_breaks", c.layout_breaks},
          {"dax_revocations", c.revocations}, {"dax_kills", c.kills}, {"dax_pins", c.pins},
          {"dax_pins_refused", c.pins_refused}, {"dax_poison_revocations", c.poison_revocations},
          {"dax_poison_early", c.poison_early}, {"dax_poison_late", c.poison_late},
          {"dax_lease_ms", snap->header.lease_ms}};
}

void register_dax_commands(CLI::App& app, int& status) {
  struct RunArgs {
    bool early = false, late = false;
    std::vector<std::string> command;
  };
  auto ra = std::make_shared<RunArgs>();
  auto* sub = app.add_subcommand("run", "run CMD with mmap of DAX files routed through the DAX layer");
  sub->add_flag("--early-kill", ra->early, "memory failure: SIGBUS BUS_MCEERR_AO as soon as a mapped page is poisoned");
  sub->add_flag("--late-kill", ra->late, "memory failure: SIGBUS BUS_MCEERR_AR when the page is touched (default)");
  sub->add_option("command", ra->command, "CMD ARGS... (after --)")->required();
  sub->prefix_command(false);
  sub->callback([ra, &status] {
    if (ra->early && ra->late) {
      print_error("run", "--early-kill and --late-kill exclude each other");
      return void(status = 2);
    }
    std::string preload = find_preload();
    if (preload.empty()) {
      print_error("run", "cannot find libdaxfs_preload.so (set DAXFS_PRELOAD)");
      return void(status = 1);
    }
    // Ours first, then whatever the caller preloads already.
    std::string value = preload;
    if (const char* old = getenv("LD_PRELOAD"); old && *old) value += ":" + std::string(old);
    setenv("LD_PRELOAD", value.c_str(), 1);
    if (ra->early) setenv("DAXFS_MCE_KILL", "early", 1);
    if (ra->late) setenv("DAXFS_MCE_KILL", "late", 1);
    std::vector<char*> argv;
    for (auto& a : ra->command) argv.push_back(a.data());
    argv.push_back(nullptr);
    execvp(argv[0], argv.data());
    int e = errno;
    print_error("run", ra->command[0] + ": " + strerror(e));
    status = e == ENOENT ? 127 : 126;
  });

  struct MappersArgs {
    std::string target;
    bool json = false;
  };
  auto ma = std::make_shared<MappersArgs>();
  sub = app.add_subcommand("mappers", "processes holding DAX mappings: pid, file, range, address, protection");
  sub->add_option("target", ma->target, "a daxfs MOUNTPOINT or FILE")->required();
  sub->add_flag("--json", ma->json, "print one JSON document");
  sub->callback([ma, &status] {
    std::string mp;
    auto name = registry_of(ma->target, &mp);
    if (!name) {
      print_error("mappers", ma->target + ": not on a daxfs mount");
      return void(status = 1);
    }
    auto snap = dax::Registry::read(*name);
    if (!snap) {
      print_error("mappers", ma->target + ": cannot read the DAX registry /dev/shm/" + *name + ": " +
                                 strerror(snap.error()));
      return void(status = 1);
    }
    struct stat st;
    if (stat(ma->target.c_str(), &st) != 0) {
      print_error("mappers", ma->target + ": " + strerror(errno));
      return void(status = 1);
    }
    bool one_file = S_ISREG(st.st_mode);
    std::map<uint64_t, std::string> paths;
    nlohmann::json rows = nlohmann::json::array();
    for (const dax::MappingEntry& m : snap->mappings) {
      if (one_file && m.ino != st.st_ino) continue;
      if (!paths.count(m.ino)) paths[m.ino] = one_file ? ma->target : path_of(mp, m.ino);
      rows.push_back({{"pid", m.pid}, {"ino", m.ino}, {"file", paths[m.ino]}, {"offset", m.offset},
                      {"length", m.length}, {"address", m.address},
                      {"device_offset", m.device == UINT64_MAX ? nlohmann::json(nullptr) : nlohmann::json(m.device)},
                      {"protection", prot_string(m.prot)}, {"kind", kind_name(m.kind)}});
    }
    if (ma->json) {
      std::cout << nlohmann::json{{"mountpoint", mp}, {"mappings", rows}}.dump(2) << "\n";
    } else {
      printf("%-8s %-10s %-18s %-14s %-18s %-4s %-6s %s\n", "PID", "OFFSET", "LENGTH", "ADDRESS", "DEVICE", "PROT",
             "KIND", "FILE");
      for (auto& r : rows) {
        std::string dev = r["device_offset"].is_null() ? "-" : std::to_string(r["device_offset"].get<uint64_t>());
        printf("%-8d %-10llu %-18llu 0x%-12llx %-18s %-4s %-6s %s\n", r["pid"].get<int>(),
               (unsigned long long)r["offset"].get<uint64_t>(), (unsigned long long)r["length"].get<uint64_t>(),
               (unsigned long long)r["address"].get<uint64_t>(), dev.c_str(),
               r["protection"].get<std::string>().c_str(), r["kind"].get<std::string>().c_str(),
               r["file"].get<std::string>().c_str());
      }
    }
    status = 0;
  });
}

}  // namespace daxfs::cli
