// daxfsctl reflink | dedupe | unshare | collapse | insert | fiemap | fsmap: the reflink work's
// commands, through the daemon's ioctls (daxcore/daxfs_ioctl.h) since the FUSE kernel forwards
// neither FICLONERANGE, FIDEDUPERANGE nor the fallocate modes UNSHARE_RANGE, COLLAPSE_RANGE and
// INSERT_RANGE; fsmap of an unmounted DEVICE reads it directly.
// Each command is a function returning the exit status and a register_*_command that declares
// its options. Single-threaded (CLI use).
#include <fcntl.h>
#include <ftw.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <iostream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>

#include "fs/cmd/cli_util.h"
#include "fs/cmd/ctl_commands.h"
#include "daxcore/daxfs_ioctl.h"
#include "fs/cmd/ctl_owners.h"
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

enum class Remap { kClone, kDedupe };

// reflink and dedupe: the same ioctl shape. Returns the exit status.
int remap(const std::string& cmd, const RemapArgs& a, Remap kind) {
  bool dedupe = kind == Remap::kDedupe;
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

// unshare, collapse, insert: a file and a range.
struct RangeArgs {
  std::string file, offset, length;
};

struct MapArgs {
  std::string target, offset, length;
  bool json = false;
};

int unshare(const RangeArgs& u) {
  const char* cmd = "unshare";
  daxfs_range r{};
  if (!size_option(cmd, "--offset", u.offset, r.offset) || !size_option(cmd, "--length", u.length, r.length)) return 1;
  Fd f;
  if (!open_file(cmd, u.file, O_WRONLY, f)) return 1;
  struct stat st;
  fstat(f.fd, &st);
  if (u.length.empty()) r.length = static_cast<uint64_t>(st.st_size) > r.offset ? st.st_size - r.offset : 0;
  if (r.length == 0) return 0;
  if (ioctl(f.fd, DAXFS_IOC_UNSHARE_RANGE, &r) != 0) {
    print_error(cmd, u.file + ": " + strerror(errno));
    return 1;
  }
  return 0;
}

// collapse and insert: FALLOC_FL_COLLAPSE_RANGE / FALLOC_FL_INSERT_RANGE through the daemon's
// ioctl (the FUSE kernel forwards neither mode). Returns the exit status.
int shift(const char* cmd, const RangeArgs& a, unsigned long request) {
  daxfs_range r{};
  if (!size_option(cmd, "--offset", a.offset, r.offset) || !size_option(cmd, "--length", a.length, r.length)) return 1;
  Fd f;
  if (!open_file(cmd, a.file, O_WRONLY, f)) return 1;
  if (ioctl(f.fd, request, &r) != 0) {
    int e = errno;
    std::string hint;
    if (e == EINVAL)
      hint = request == DAXFS_IOC_COLLAPSE_RANGE
                 ? " (offset and length must be multiples of 4096, and the range must end before EOF)"
                 : " (offset and length must be multiples of 4096, and the offset must be before EOF)";
    print_error(cmd, a.file + ": " + strerror(e) + hint);
    return 1;
  }
  return 0;
}

int fiemap(const MapArgs& fm) {
  const char* cmd = "fiemap";
  Fd f;
  if (!open_file(cmd, fm.target, O_RDONLY, f)) return 1;
  auto m = std::make_unique<daxfs_fiemap>();
  nlohmann::json extents = nlohmann::json::array();
  uint64_t start = 0;
  for (;;) {
    *m = {};
    m->start = start;
    if (ioctl(f.fd, DAXFS_IOC_FIEMAP, m.get()) != 0) {
      print_error(cmd, fm.target + ": " + strerror(errno));
      return 1;
    }
    for (uint64_t i = 0; i < m->count; i++) {
      const daxfs_extent& e = m->extents[i];
      extents.push_back({{"logical", e.logical}, {"physical", e.physical}, {"length", e.length},
                         {"flags", flag_names(e.flags)}});
      start = e.logical + e.length;
    }
    if (m->count < DAXFS_FIEMAP_MAX) break;
  }
  if (fm.json) {
    std::cout << nlohmann::json{{"file", fm.target}, {"extents", extents}}.dump(2) << "\n";
    return 0;
  }
  std::cout << fm.target << ":\n";
  int n = 0;
  for (auto& e : extents)
    std::cout << "  " << n++ << ": [" << e["logical"].get<uint64_t>() << ".."
              << e["logical"].get<uint64_t>() + e["length"].get<uint64_t>() - 1 << "]: device "
              << e["physical"].get<uint64_t>() << ".." << e["physical"].get<uint64_t>() + e["length"].get<uint64_t>() - 1
              << " (" << e["length"].get<uint64_t>() << " bytes)"
              << (e["flags"].empty() ? "" : " " + join(e["flags"].get<std::vector<std::string>>())) << "\n";
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
void mount_paths(const std::string& mountpoint, std::map<uint64_t, std::string>& out) {
  g_paths = &out;
  g_root = mountpoint;
  nftw(mountpoint.c_str(), record_path, 64, FTW_PHYS | FTW_MOUNT);
  g_paths = nullptr;
}

// The rows of device range [offset, end) and the paths of their owners.
struct FsMap {
  std::vector<fs::Filesystem::MapRow> rows;
  std::map<uint64_t, std::string> paths;
};

// The FSMAP ioctl of a mounted filesystem over [offset, end), a batch at a time. With a `cmd`,
// prints the error itself.
bool fsmap_rows(const char* cmd, const std::string& mountpoint, uint64_t offset, uint64_t end,
                std::vector<fs::Filesystem::MapRow>& out) {
  Fd m;
  if (cmd == nullptr) {
    m.fd = open(mountpoint.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (m.fd < 0 || !on_daxfs(m.fd)) return false;
  } else if (!open_file(cmd, mountpoint, O_RDONLY | O_DIRECTORY, m)) {
    return false;
  }
  auto q = std::make_unique<daxfs_fsmap>();
  uint64_t start = offset, skip = 0;
  for (;;) {
    *q = {};
    q->start = start;
    q->end = end;
    q->skip = skip;
    if (ioctl(m.fd, DAXFS_IOC_FSMAP, q.get()) != 0) {
      if (cmd != nullptr) print_error(cmd, mountpoint + ": " + strerror(errno));
      return false;
    }
    for (uint64_t i = 0; i < q->count; i++) {
      const daxfs_fsmap_row& r = q->rows[i];
      out.push_back({r.physical, r.length, r.kind, r.ino, r.logical, r.flags});
      skip = r.physical == start ? skip + 1 : 1;
      start = r.physical;
    }
    if (q->count < DAXFS_FSMAP_MAX) break;
  }
  return true;
}

// From a mounted filesystem: its FSMAP ioctl and a walk of the mount for the paths. Prints the
// error itself.
bool fsmap_mounted(const char* cmd, const std::string& mountpoint, uint64_t offset, uint64_t end, FsMap& out) {
  if (!fsmap_rows(cmd, mountpoint, offset, end, out.rows)) return false;
  mount_paths(mountpoint, out.paths);
  return true;
}

// From an unmounted device: mounts it read-only in this process. Prints the error itself.
bool fsmap_unmounted(const char* cmd, const std::string& device, uint64_t offset, uint64_t end, FsMap& out) {
  auto d = pmemdev::Device::open(device, {});
  if (!d) {
    print_error(cmd, device + ": " + strerror(d.error()));
    return false;
  }
  std::string why;
  fs::MountOptions ro;
  ro.read_only = fs::ReadOnly::kYes;
  auto f = fs::Filesystem::mount(std::move(d).value(), ro, why);
  if (!f) {
    print_error(cmd, device + ": " + (why.empty() ? strerror(f.error()) : why));
    return false;
  }
  out.rows = (*f)->fsmap(offset, end, 0, SIZE_MAX);
  for (auto& [ino, p] : (*f)->paths()) out.paths[ino] = p;
  (*f)->unmount();
  return true;
}

void print_fsmap(const std::string& device, FsMap& map, bool json) {
  nlohmann::json out = nlohmann::json::array();
  for (const auto& r : map.rows) {
    nlohmann::json j = {{"physical", r.physical}, {"length", r.length}, {"kind", kind_name(r.kind)}};
    if (r.ino) {
      j["inode"] = r.ino;
      if (map.paths.count(r.ino)) j["path"] = map.paths[r.ino];
    }
    if (r.kind == DAXFS_OWN_DATA) {
      j["offset"] = r.logical;
      j["flags"] = flag_names(r.flags);
    }
    out.push_back(j);
  }
  if (json) {
    std::cout << nlohmann::json{{"device", device}, {"rows", out}}.dump(2) << "\n";
    return;
  }
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

int fsmap(const MapArgs& a) {
  const char* cmd = "fsmap";
  uint64_t offset = 0, length = UINT64_MAX;
  if (!size_option(cmd, "--offset", a.offset, offset) || !size_option(cmd, "--length", a.length, length)) return 1;
  uint64_t end = length > UINT64_MAX - offset ? UINT64_MAX : offset + length;
  offset = offset / 4096 * 4096;
  std::string mountpoint;
  auto dev = resolve_device(a.target, &mountpoint);
  if (!dev) {
    print_error(cmd, a.target + ": " + (dev.error() == ENOTBLK ? "not a daxfs mount point or device file"
                                                               : strerror(dev.error())));
    return 1;
  }
  if (mountpoint.empty()) mountpoint = mount_of_device(*dev);
  FsMap map;
  bool ok = mountpoint.empty() ? fsmap_unmounted(cmd, *dev, offset, end, map)
                               : fsmap_mounted(cmd, mountpoint, offset, end, map);
  if (!ok) return 1;
  print_fsmap(*dev, map, a.json);
  return 0;
}

void register_remap_command(CLI::App& app, int& status, Remap kind) {
  bool dedupe = kind == Remap::kDedupe;
  const char* name = dedupe ? "dedupe" : "reflink";
  auto a = std::make_shared<RemapArgs>();
  auto* sub = app.add_subcommand(name,
                                 dedupe ? "share a range only if its contents equal the source's (FIDEDUPERANGE)"
                                        : "share a file's blocks with another (FICLONERANGE)");
  sub->add_option("src", a->src, "source file")->required();
  sub->add_option("dst", a->dst, dedupe ? "destination file" : "destination file (created if missing)")->required();
  sub->add_option("--src-offset", a->src_offset, "bytes (block-aligned), default 0");
  sub->add_option("--dst-offset", a->dst_offset, "bytes (block-aligned), default 0");
  sub->add_option("--length", a->length, dedupe ? "bytes; default: the rest of the source"
                                                : "bytes; default (or 0): to the source's EOF");
  sub->callback([a, kind, name, &status] { status = remap(name, *a, kind); });
}

void register_unshare_command(CLI::App& app, int& status) {
  auto u = std::make_shared<RangeArgs>();
  auto* sub = app.add_subcommand("unshare", "give a range private copies of its shared blocks (FALLOC_FL_UNSHARE_RANGE)");
  sub->add_option("file", u->file, "file")->required();
  sub->add_option("--offset", u->offset, "bytes, default 0");
  sub->add_option("--length", u->length, "bytes, default: to EOF");
  sub->callback([u, &status] { status = unshare(*u); });
}

void register_shift_command(CLI::App& app, int& status, bool collapse) {
  auto a = std::make_shared<RangeArgs>();
  const char* name = collapse ? "collapse" : "insert";
  auto* sub = app.add_subcommand(
      name, collapse ? "remove a range; the rest of the file moves down over it (FALLOC_FL_COLLAPSE_RANGE)"
                     : "insert a hole; the rest of the file moves up past it (FALLOC_FL_INSERT_RANGE)");
  sub->add_option("file", a->file, "file")->required();
  sub->add_option("--offset", a->offset, "bytes, a multiple of 4096")->required();
  sub->add_option("--length", a->length, "bytes, a multiple of 4096")->required();
  unsigned long request = collapse ? DAXFS_IOC_COLLAPSE_RANGE : DAXFS_IOC_INSERT_RANGE;
  sub->callback([a, name, request, &status] { status = shift(name, *a, request); });
}

void register_fiemap_command(CLI::App& app, int& status) {
  auto a = std::make_shared<MapArgs>();
  auto* sub = app.add_subcommand("fiemap", "a file's extents: logical, physical (device byte offset), length, flags");
  sub->add_option("file", a->target, "file")->required();
  sub->add_flag("--json", a->json, "print one JSON document");
  sub->callback([a, &status] { status = fiemap(*a); });
}

void register_fsmap_command(CLI::App& app, int& status) {
  auto a = std::make_shared<MapArgs>();
  auto* sub = app.add_subcommand("fsmap", "the reverse map: every device range with its owners, metadata kind, or free");
  sub->add_option("target", a->target, "MOUNTPOINT or DEVICE")->required();
  sub->add_option("--offset", a->offset, "device byte offset, default 0");
  sub->add_option("--length", a->length, "bytes, default: to the end");
  sub->add_flag("--json", a->json, "print one JSON document");
  sub->callback([a, &status] { status = fsmap(*a); });
}

}  // namespace

std::optional<std::vector<nlohmann::json>> range_owners(const std::string& mountpoint,
                                                        const std::vector<pmemdev::ByteRange>& ranges) {
  std::vector<std::vector<fs::Filesystem::MapRow>> rows(ranges.size());
  bool inodes = false;
  for (size_t i = 0; i < ranges.size(); i++) {
    const pmemdev::ByteRange& r = ranges[i];
    if (!fsmap_rows(nullptr, mountpoint, r.offset / 4096 * 4096, r.offset + r.length, rows[i])) return std::nullopt;
    for (const auto& row : rows[i]) inodes |= row.ino != 0;
  }
  std::map<uint64_t, std::string> paths;
  if (inodes) mount_paths(mountpoint, paths);
  std::vector<nlohmann::json> out;
  for (size_t i = 0; i < ranges.size(); i++) {
    const pmemdev::ByteRange& r = ranges[i];
    nlohmann::json owners = nlohmann::json::array();
    for (const auto& row : rows[i]) {
      uint64_t from = std::max(row.physical, r.offset), to = std::min(row.physical + row.length, r.offset + r.length);
      if (from >= to || row.kind == DAXFS_OWN_FREE) continue;
      nlohmann::json o = {{"kind", kind_name(row.kind)}, {"device_offset", from}, {"length", to - from}};
      if (row.ino != 0) {
        o["inode"] = row.ino;
        if (paths.count(row.ino)) o["path"] = paths[row.ino];
      }
      if (row.kind == DAXFS_OWN_DATA) {
        o["offset"] = row.logical + (from - row.physical);
        o["flags"] = flag_names(row.flags);
      }
      owners.push_back(std::move(o));
    }
    out.push_back(std::move(owners));
  }
  return out;
}

std::string format_owners(const nlohmann::json& owners) {
  if (owners.empty()) return "  owner: none (free)\n";
  std::string out;
  for (const auto& o : owners) {
    std::string kind = o["kind"].get<std::string>();
    std::string who;
    if (o.contains("inode")) {
      who = "inode " + std::to_string(o["inode"].get<uint64_t>());
      if (o.contains("path")) who += " " + o["path"].get<std::string>();
    }
    if (kind == "data") {
      out += "  owner: " + who + " offset " + std::to_string(o["offset"].get<uint64_t>()) + " length " +
             std::to_string(o["length"].get<uint64_t>());
      if (!o["flags"].empty()) out += " " + join(o["flags"].get<std::vector<std::string>>());
    } else {
      out += "  owner: " + kind + (who.empty() ? "" : " of " + who);
    }
    out += "\n";
  }
  return out;
}

void register_reflink_commands(CLI::App& app, int& status) {
  register_remap_command(app, status, Remap::kClone);
  register_remap_command(app, status, Remap::kDedupe);
  register_unshare_command(app, status);
  register_shift_command(app, status, true);
  register_shift_command(app, status, false);
  register_fiemap_command(app, status);
  register_fsmap_command(app, status);
}

}  // namespace daxfs::cli
