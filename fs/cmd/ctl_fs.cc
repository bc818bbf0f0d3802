// daxfsctl shutdown | stat: commands that talk to a mounted daxfs through its ioctls
// (fs/daxfs_ioctl.h and XFS_IOC_GOINGDOWN).
#include <fcntl.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>

#include "fs/cmd/cli_util.h"
#include "fs/cmd/ctl_commands.h"
#include "daxcore/daxfs_ioctl.h"

#ifndef XFS_IOC_GOINGDOWN
#define XFS_IOC_GOINGDOWN _IOR('X', 125, uint32_t)
#endif

namespace daxfs::cli {

nlohmann::json dax_counters_json(const std::string& mountpoint);  // ctl_dax.cc

namespace {
struct FsArgs {
  std::string target;
  bool json = false;
};

// Opens a file or directory of a daxfs mount; prints the error itself (-1 on failure).
int open_in_daxfs(const std::string& cmd, const std::string& path) {
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    print_error(cmd, path + ": " + strerror(errno));
    return -1;
  }
  if (!on_daxfs(fd)) {
    close(fd);
    print_error(cmd, path + ": not on a daxfs mount");
    return -1;
  }
  return fd;
}
}  // namespace

void register_fs_commands(CLI::App& app, int& status) {
  auto sd = std::make_shared<FsArgs>();
  auto* sub = app.add_subcommand("shutdown", "force a shutdown: every later operation fails with EIO");
  sub->add_option("mountpoint", sd->target, "a daxfs mount point")->required();
  sub->callback([sd, &status] {
    int fd = open_in_daxfs("shutdown", sd->target);
    if (fd < 0) return void(status = 1);
    uint32_t flags = 0;  // XFS_FSOP_GOING_FLAGS_DEFAULT
    int rc = ioctl(fd, XFS_IOC_GOINGDOWN, &flags);
    int e = errno;
    close(fd);
    if (rc != 0) {
      print_error("shutdown", sd->target + ": " + strerror(e));
      return void(status = 1);
    }
    std::cout << sd->target << ": shut down\n";
    status = 0;
  });

  auto st = std::make_shared<FsArgs>();
  sub = app.add_subcommand("stat", "filesystem counters, or one file's DAX flag and extents");
  sub->add_option("target", st->target, "a daxfs MOUNTPOINT or FILE")->required();
  sub->add_flag("--json", st->json, "print one JSON document");
  sub->callback([st, &status] {
    int fd = open_in_daxfs("stat", st->target);
    if (fd < 0) return void(status = 1);
    struct stat sb;
    fstat(fd, &sb);
    nlohmann::json j;
    bool mount_root = false;
    if (S_ISDIR(sb.st_mode)) {  // a mount point: filesystem-wide; anything else: one file
      std::string mp;
      auto dev = resolve_device(st->target, &mp);
      mount_root = dev.ok();
      if (mount_root) j["device"] = *dev;
    }
    if (mount_root) {
      daxfs_counters c{};
      ioctl(fd, DAXFS_IOC_COUNTERS, &c);
      static const char* kDax[] = {"always", "inode", "never"};
      j["mountpoint"] = st->target;
      j["dax"] = kDax[c.dax_mode < 3 ? c.dax_mode : 0];
      j["shutdown"] = c.shutdown != 0;
      j["counters"] = {{"transactions", c.transactions}, {"reads", c.reads}, {"writes", c.writes},
                       {"bytes_read", c.bytes_read}, {"bytes_written", c.bytes_written},
                       {"blocks_allocated", c.blocks_allocated}, {"blocks_freed", c.blocks_freed},
                       {"poison_events", c.poison_events}, {"metadata_rebuilt", c.metadata_rebuilt},
                       {"recovered_entries", c.recovered_entries},
                       {"orphans_freed", c.orphans_freed}, {"post_eof_trimmed", c.post_eof_trimmed},
                       {"clones", c.clones}, {"dedupes", c.dedupes}, {"cow_blocks", c.cow_blocks},
                       {"refcount_overflow_copies", c.refcount_overflow_copies}};
      if (auto d = dax_counters_json(st->target); !d.is_null()) j["dax_counters"] = d;
      j["inodes"] = c.inodes;
      j["size"] = c.total_blocks * 4096;
      j["free"] = c.free_blocks * 4096;
    } else {
      daxfs_fileinfo f{};
      if (ioctl(fd, DAXFS_IOC_FILEINFO, &f) != 0) {
        print_error("stat", st->target + ": " + strerror(errno));
        close(fd);
        return void(status = 1);
      }
      j["path"] = st->target;
      j["ino"] = f.ino;
      j["size"] = f.size;
      j["extents"] = f.extents;
      j["mapped"] = f.data_blocks * 4096;
      j["unwritten"] = f.unwritten_blocks * 4096;
      j["dax_flag"] = f.dax_flag != 0;
      j["dax"] = f.dax != 0;
    }
    close(fd);
    if (st->json) {
      std::cout << j.dump(2) << "\n";
    } else {
      for (auto& [k, v] : j.items()) {
        if (v.is_object()) {
          for (auto& [k2, v2] : v.items()) std::cout << k2 << ": " << v2 << "\n";
        } else {
          std::cout << k << ": " << (v.is_string() ? v.get<std::string>() : v.dump()) << "\n";
        }
      }
    }
    status = 0;
  });
}

}  // namespace daxfs::cli
