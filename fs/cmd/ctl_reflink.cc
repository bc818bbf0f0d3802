// daxfsctl reflink | dedupe | unshare | fiemap | fsmap: the reflink work's commands, through the
// daemon's ioctls (fs/daxfs_ioctl.h) since the FUSE kernel forwards neither FICLONERANGE,
// FIDEDUPERANGE nor FALLOC_FL_UNSHARE_RANGE; fsmap of an unmounted DEVICE reads it directly.
#include <fcntl.h>
#include <ftw.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <iostream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>

#include "fs/cmd/cli_util.h"
#include "fs/cmd/ctl_commands.h"
#include "fs/daxfs_ioctl.h"
#include "fs/filesystem.h"

namespace daxfs::cli {

namespace {

struct Fd {
  int fd = -1;
  ~Fd() {
    if (fd >= 0) close(fd);
  }
};

// Opens a file of a daxfs mount; prints the error itself.
bool open_file(const std::string& cmd, const std::string& path, int flags, Fd& out) {
  out.fd = open(path.c_str(), flags | O_CLOEXEC, 0644);
  if (out.fd < 0) {
    print_error(cmd, path + ": " + strerror(errno));
    return false;
  }
  if (!on_daxfs(out.fd)) {
    print_error(cmd, path + ": not on a daxfs mount");
    return false;
  }
  return true;
}

bool size_option(const std::string& cmd, const std::string& name, const std::string& text, uint64_t& out) {
  if (text.empty()) return true;
  auto v = parse_size(text);
  if (!v) {
    print_error(cmd, "invalid " + name + " '" + text + "'");
    return false;
  }
  out = *v;
  return true;
}

std::vector<std::string> flag_names(uint64_t flags) {
  std::vector<std::string> out;
  if (flags & DAXFS_EXTENT_SHARED) out.push_back("shared");
  if (flags & DAXFS_EXTENT_UNWRITTEN) out.push_back("unwritten");
  if (flags & DAXFS_EXTENT_POISONED) out.push_back("poisoned");
  return out;
}

const char* kind_name(uint64_t kind) {
  static const char* kNames[] = {"free", "data", "superblock", "journal", "inodes", "extent-map",
                                 "directory", "symlink", "xattr", "refcount"};
  return kind < 10 ? kNames[kind] : "unknown";
}

std::string join(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& x : v) s += (s.empty() ? "" : ",") + x;
  return s;
}

struct RemapArgs {
  std::string src, dst, src_offset, dst_offset, length;
};

// reflink and dedupe: the same ioctl shape. Returns the exit status.
int remap(const std::string& cmd, const RemapArgs& a, bool dedupe) {
  daxfs_clone_range args{};
  if (!size_option(cmd, "--src-offset", a.src_offset, args.src_offset) ||
      !size_option(cmd, "--dst-offset", a.dst_offset, args.dest_offset) ||
      !size_option(cmd, "--length", a.length, args.src_length))
    return 1;
  Fd src, dst;
  if (!open_file(cmd, a.src, O_RDONLY, src)) return 1;
  // reflink creates a missing destination, and removes it again if the clone fails: a failed
  // command leaves nothing behind.
  bool created = false;
  if (!dedupe) {
    dst.fd = open(a.dst.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    created = dst.fd >= 0;
  }
  if (!created && !open_file(cmd, a.dst, dedupe ? O_RDONLY : O_WRONLY, dst)) return 1;
  auto fail = [&](const std::string& message) {
    print_error(cmd, message);
    if (created) unlink(a.dst.c_str());
    return 1;
  };
  struct stat ss, ds;
  fstat(src.fd, &ss);
  fstat(dst.fd, &ds);
  if (ss.st_dev != ds.st_dev)
    return fail(a.src + " and " + a.dst + " are not on the same filesystem (" + strerror(EXDEV) + ")");
  long generation = 0;
  if (ioctl(src.fd, FS_IOC_GETVERSION, &generation) != 0)
    return fail(a.src + ": not on a daxfs mount (" + strerror(errno) + ")");
  // Without --length, the whole source from --src-offset (FIDEDUPERANGE has no "to EOF" of its own).
  if (dedupe && a.length.empty())
    args.src_length = static_cast<uint64_t>(ss.st_size) > args.src_offset ? ss.st_size - args.src_offset : 0;
  args.src_ino = ss.st_ino;
  args.src_generation = static_cast<uint64_t>(generation);
  if (ioctl(dst.fd, dedupe ? DAXFS_IOC_DEDUPE_RANGE : DAXFS_IOC_CLONE_RANGE, &args) != 0) {
    int e = errno;
    std::string hint = e == EINVAL ? " (offsets must be block-aligned; so must the length unless the range "
                                     "ends at the source's EOF; ranges within one file must not overlap)"
                                   : "";
    return fail(a.src + " -> " + a.dst + ": " + strerror(e) + hint);
  }
  if (dedupe && args.status == 1) {
    std::cout << "differs\n";
    return 3;
  }
  std::cout << (dedupe ? "deduped " : "reflinked ") << args.bytes << " bytes from " << a.src << " to " << a.dst
            << "\n";
  return 0;
}

// inode -> path below a mount point, by walking it (the kernel knows the names).
std::map<uint64_t, std::string>* g_paths;
std::string g_root;
int record_path(const char* path, const struct stat* st, int, FTW*) {
  std::string p(path);
  std::string rel = p.size() > g_root.size() ? p.substr(g_root.size()) : "/";
  g_paths->emplace(st->st_ino, rel);
  return 0;
}

}  // namespace

void register_reflink_commands(CLI::App& app, int& status) {
  for (bool dedupe : {false, true}) {
    auto a = std::make_shared<RemapArgs>();
    auto* sub = app.add_subcommand(dedupe ? "dedupe" : "reflink",
                                   dedupe ? "share a range only if its contents equal the source's (FIDEDUPERANGE)"
                                          : "share a file's blocks with another (FICLONERANGE)");
    sub->add_option("src", a->src, "source file")->required();
    sub->add_option("dst", a->dst, dedupe ? "destination file" : "destination file (created if missing)")->required();
    sub->add_option("--src-offset", a->src_offset, "bytes (block-aligned), default 0");
    sub->add_option("--dst-offset", a->dst_offset, "bytes (block-aligned), default 0");
    sub->add_option("--length", a->length, dedupe ? "bytes; default: the rest of the source"
                                                  : "bytes; default (or 0): to the source's EOF");
    sub->callback([a, dedupe, &status] { status = remap(dedupe ? "dedupe" : "reflink", *a, dedupe); });
  }

  struct UnshareArgs {
    std::string file, offset, length;
  };
  auto u = std::make_shared<UnshareArgs>();
  auto* sub = app.add_subcommand("unshare", "give a range private copies of its shared blocks (FALLOC_FL_UNSHARE_RANGE)");
  sub->add_option("file", u->file, "file")->required();
  sub->add_option("--offset", u->offset, "bytes, default 0");
  sub->add_option("--length", u->length, "bytes, default: to EOF");
  sub->callback([u, &status] {
    const char* cmd = "unshare";
    daxfs_range r{};
    if (!size_option(cmd, "--offset", u->offset, r.offset) || !size_option(cmd, "--length", u->length, r.length))
      return void(status = 1);
    Fd f;
    if (!open_file(cmd, u->file, O_WRONLY, f)) return void(status = 1);
    struct stat st;
    fstat(f.fd, &st);
    if (u->length.empty()) r.length = static_cast<uint64_t>(st.st_size) > r.offset ? st.st_size - r.offset : 0;
    if (r.length == 0) return void(status = 0);
    if (ioctl(f.fd, DAXFS_IOC_UNSHARE_RANGE, &r) != 0) {
      print_error(cmd, u->file + ": " + strerror(errno));
      return void(status = 1);
    }
    status = 0;
  });

  struct MapArgs {
    std::string target, offset, length;
    bool json = false;
  };
  auto fm = std::make_shared<MapArgs>();
  sub = app.add_subcommand("fiemap", "a file's extents: logical, physical (device byte offset), length, flags");
  sub->add_option("file", fm->target, "file")->required();
  sub->add_flag("--json", fm->json, "print one JSON document");
  sub->callback([fm, &status] {
    const char* cmd = "fiemap";
    Fd f;
    if (!open_file(cmd, fm->target, O_RDONLY, f)) return void(status = 1);
    auto m = std::make_unique<daxfs_fiemap>();
    nlohmann::json extents = nlohmann::json::array();
    uint64_t start = 0;
    for (;;) {
      *m = {};
      m->start = start;
      if (ioctl(f.fd, DAXFS_IOC_FIEMAP, m.get()) != 0) {
        print_error(cmd, fm->target + ": " + strerror(errno));
        return void(status = 1);
      }
      for (uint64_t i = 0; i < m->count; i++) {
        const daxfs_extent& e = m->extents[i];
        extents.push_back({{"logical", e.logical}, {"physical", e.physical}, {"length", e.length},
                           {"flags", flag_names(e.flags)}});
        start = e.logical + e.length;
      }
      if (m->count < DAXFS_FIEMAP_MAX) break;
    }
    if (fm->json) {
      std::cout << nlohmann::json{{"file", fm->target}, {"extents", extents}}.dump(2) << "\n";
    } else {
      std::cout << fm->target << ":\n";
      int n = 0;
      for (auto& e : extents)
        std::cout << "  " << n++ << ": [" << e["logical"].get<uint64_t>() << ".."
                  << e["logical"].get<uint64_t>() + e["length"].get<uint64_t>() - 1 << "]: device "
                  << e["physical"].get<uint64_t>() << ".." << e["physical"].get<uint64_t>() + e["length"].get<uint64_t>() - 1
                  << " (" << e["length"].get<uint64_t>() << " bytes)"
                  << (e["flags"].empty() ? "" : " " + join(e["flags"].get<std::vector<std::string>>())) << "\n";
    }
    status = 0;
  });

  auto fs_args = std::make_shared<MapArgs>();
  sub = app.add_subcommand("fsmap", "the reverse map: every device range with its owners, metadata kind, or free");
  sub->add_option("target", fs_args->target, "MOUNTPOINT or DEVICE")->required();
  sub->add_option("--offset", fs_args->offset, "device byte offset, default 0");
  sub->add_option("--length", fs_args->length, "bytes, default: to the end");
  sub->add_flag("--json", fs_args->json, "print one JSON document");
  sub->callback([fs_args, &status] {
    const char* cmd = "fsmap";
    uint64_t offset = 0, length = UINT64_MAX;
    if (!size_option(cmd, "--offset", fs_args->offset, offset) || !size_option(cmd, "--length", fs_args->length, length))
      return void(status = 1);
    uint64_t end = length > UINT64_MAX - offset ? UINT64_MAX : offset + length;
    offset = offset / 4096 * 4096;
    std::string mountpoint;
    auto dev = resolve_device(fs_args->target, &mountpoint);
    if (!dev) {
      print_error(cmd, fs_args->target + ": " + (dev.error() == ENOTBLK ? "not a daxfs mount point or device file"
                                                                        : strerror(dev.error())));
      return void(status = 1);
    }
    if (mountpoint.empty()) mountpoint = mount_of_device(*dev);
    std::vector<fs::Filesystem::MapRow> rows;
    std::map<uint64_t, std::string> paths;
    if (!mountpoint.empty()) {
      Fd m;
      if (!open_file(cmd, mountpoint, O_RDONLY | O_DIRECTORY, m)) return void(status = 1);
      auto q = std::make_unique<daxfs_fsmap>();
      uint64_t start = offset, skip = 0;
      for (;;) {
        *q = {};
        q->start = start;
        q->end = end;
        q->skip = skip;
        if (ioctl(m.fd, DAXFS_IOC_FSMAP, q.get()) != 0) {
          print_error(cmd, mountpoint + ": " + strerror(errno));
          return void(status = 1);
        }
        for (uint64_t i = 0; i < q->count; i++) {
          const daxfs_fsmap_row& r = q->rows[i];
          rows.push_back({r.physical, r.length, r.kind, r.ino, r.logical, r.flags});
          skip = r.physical == start ? skip + 1 : 1;
          start = r.physical;
        }
        if (q->count < DAXFS_FSMAP_MAX) break;
      }
      g_paths = &paths;
      g_root = mountpoint;
      nftw(mountpoint.c_str(), record_path, 64, FTW_PHYS | FTW_MOUNT);
      g_paths = nullptr;
    } else {
      // Unmounted: read the device itself, read-only.
      auto d = pmemdev::Device::open(*dev, {});
      if (!d) {
        print_error(cmd, *dev + ": " + strerror(d.error()));
        return void(status = 1);
      }
      std::string why;
      fs::MountOptions ro;
      ro.read_only = fs::ReadOnly::kYes;
      auto f = fs::Filesystem::mount(std::move(d).value(), ro, why);
      if (!f) {
        print_error(cmd, *dev + ": " + (why.empty() ? strerror(f.error()) : why));
        return void(status = 1);
      }
      rows = (*f)->fsmap(offset, end, 0, SIZE_MAX);
      for (auto& [ino, p] : (*f)->paths()) paths[ino] = p;
      (*f)->unmount();
    }
    nlohmann::json out = nlohmann::json::array();
    for (const auto& r : rows) {
      nlohmann::json j = {{"physical", r.physical}, {"length", r.length}, {"kind", kind_name(r.kind)}};
      if (r.ino) {
        j["inode"] = r.ino;
        if (paths.count(r.ino)) j["path"] = paths[r.ino];
      }
      if (r.kind == DAXFS_OWN_DATA) {
        j["offset"] = r.logical;
        j["flags"] = flag_names(r.flags);
      }
      out.push_back(j);
    }
    if (fs_args->json) {
      std::cout << nlohmann::json{{"device", *dev}, {"rows", out}}.dump(2) << "\n";
    } else {
      for (auto& j : out) {
        std::cout << j["physical"].get<uint64_t>() << ".." << j["physical"].get<uint64_t>() + j["length"].get<uint64_t>() - 1
                  << " " << j["kind"].get<std::string>();
        if (j.contains("inode")) std::cout << " inode " << j["inode"].get<uint64_t>();
        if (j.contains("path")) std::cout << " " << j["path"].get<std::string>();
        if (j.contains("offset")) std::cout << " offset " << j["offset"].get<uint64_t>();
        if (j.contains("flags") && !j["flags"].empty()) std::cout << " " << join(j["flags"].get<std::vector<std::string>>());
        std::cout << "\n";
      }
    }
    status = 0;
  });
}

}  // namespace daxfs::cli
