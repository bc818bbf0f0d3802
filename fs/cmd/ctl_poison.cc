// daxfsctl inject-error | clear-error | list-errors: poison of the emulated device, as
// `ndctl inject-error` / `ndctl clear-errors` / `ndctl list --media-errors` do for real pmem.
// When a holder (a mounted daxfs) has the device, injection is a memory failure that it handles.
#include <fcntl.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <cstring>
#include <optional>
#include <iostream>
#include <memory>
#include <sys/stat.h>

#include <algorithm>
#include <nlohmann/json.hpp>

#include "daxcore/registry.h"
#include <string>

#include "fs/cmd/cli_util.h"
#include "fs/cmd/ctl_commands.h"
#include "daxcore/daxfs_ioctl.h"
#include "fs/cmd/ctl_owners.h"
#include "pmemdev/device.h"

namespace daxfs::cli {

namespace {
constexpr int kNotifyTimeoutMs = 10000;

struct RangeArgs {
  std::string target;
  std::string offset;
  std::string length = "512";
  bool json = false;
  std::string file, file_offset;  // inject-error --file PATH --file-offset N
};

// The device byte offset of the block backing `file` at `file_offset` (through the daemon's
// fiemap); nullopt (error printed) for a hole, an unwritten block or a file not on daxfs.
std::optional<uint64_t> backing_block(const std::string& cmd, const std::string& file, uint64_t file_offset) {
  int fd = open(file.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    print_error(cmd, file + ": " + strerror(errno));
    return std::nullopt;
  }
  if (!on_daxfs(fd)) {
    close(fd);
    print_error(cmd, file + ": not on a daxfs mount");
    return std::nullopt;
  }
  auto m = std::make_unique<daxfs_fiemap>();
  m->start = file_offset / 4096 * 4096;
  int rc = ioctl(fd, DAXFS_IOC_FIEMAP, m.get());
  int e = errno;
  close(fd);
  if (rc != 0) {
    print_error(cmd, file + ": not on a daxfs mount (" + strerror(e) + ")");
    return std::nullopt;
  }
  for (uint64_t i = 0; i < m->count; i++) {
    const daxfs_extent& x = m->extents[i];
    if (file_offset >= x.logical && file_offset < x.logical + x.length) {
      if (x.flags & DAXFS_EXTENT_UNWRITTEN) break;
      return (x.physical + (file_offset - x.logical)) / 4096 * 4096;
    }
  }
  print_error(cmd, file + ": no written block backs file offset " + format_size(file_offset) + " (a hole or unwritten)");
  return std::nullopt;
}

// The device and the validated byte range of a poison command; prints the error itself.
struct Opened {
  std::unique_ptr<pmemdev::Device> device;
  uint64_t offset = 0;
  uint64_t length = 0;
};

std::unique_ptr<pmemdev::Device> open_target(const std::string& cmd, const std::string& target) {
  auto dev_path = resolve_device(target);
  if (!dev_path) {
    print_error(cmd, target + ": " +
                         (dev_path.error() == ENOTBLK ? "not a daxfs mount point or device file"
                                                      : strerror(dev_path.error())));
    return nullptr;
  }
  pmemdev::OpenOptions opts;
  opts.map = pmemdev::Map::kNo;
  auto dev = pmemdev::Device::open(*dev_path, opts);
  if (!dev) {
    print_error(cmd, *dev_path + ": " + strerror(dev.error()));
    return nullptr;
  }
  return std::move(dev).value();
}

bool open_range(const std::string& cmd, const RangeArgs& a, Opened& out) {
  auto offset = parse_size(a.offset);
  if (!offset) {
    print_error(cmd, "invalid offset '" + a.offset + "'");
    return false;
  }
  auto length = parse_size(a.length);
  if (!length) {
    print_error(cmd, "invalid length '" + a.length + "'");
    return false;
  }
  if (*length == 0) {
    print_error(cmd, "length must be greater than zero");
    return false;
  }
  if (*offset > UINT64_MAX - *length) {
    print_error(cmd, "offset " + a.offset + " + length " + a.length + " overflows");
    return false;
  }
  out.device = open_target(cmd, a.target);
  if (!out.device) return false;
  uint64_t size = out.device->size();
  if (*offset >= size) {
    print_error(cmd, "offset " + format_size(*offset) + " is past the end of the device (" +
                         format_size(size) + ")");
    return false;
  }
  if (*length > size - *offset) {
    print_error(cmd, "range " + format_size(*offset) + "+" + format_size(*length) +
                         " runs past the end of the device (" + format_size(size) + ")");
    return false;
  }
  out.offset = *offset;
  out.length = *length;
  return true;
}

nlohmann::json badblocks_json(const pmemdev::Device& dev) {
  nlohmann::json list = nlohmann::json::array();
  for (const auto& r : dev.list_errors())
    list.push_back({{"offset", r.offset}, {"length", r.length}});
  return list;
}

// The owners of each range on the filesystem that holds the device (nullopt when the device is
// not mounted, or the mount's map cannot be read: then they are not known).
std::optional<std::vector<nlohmann::json>> owners_if_mounted(const std::string& target, const pmemdev::Device& dev,
                                                             const std::vector<pmemdev::ByteRange>& ranges) {
  if (ranges.empty() || !dev.held_elsewhere()) return std::nullopt;
  std::string mp;
  (void)resolve_device(target, &mp);
  if (mp.empty()) mp = mount_of_device(dev.path());
  if (mp.empty()) return std::nullopt;
  return range_owners(mp, ranges);
}

void add_range_options(CLI::App* sub, RangeArgs& a, bool offset_required) {
  sub->add_option("target", a.target, "MOUNTPOINT or DEVICE file")->required();
  auto* off = sub->add_option("--offset", a.offset, "byte offset in the device (K/M/G suffixes)");
  if (offset_required) off->required();
  sub->add_option("--length", a.length, "bytes, rounded out to 512-byte sectors (default 512)");
}
}  // namespace

void register_poison_commands(CLI::App& app, int& status) {
  auto inject = std::make_shared<RangeArgs>();
  auto* sub = app.add_subcommand("inject-error", "poison device bytes (ndctl inject-error)");
  add_range_options(sub, *inject, false);
  sub->add_option("--file", inject->file, "poison the block backing this file at --file-offset");
  sub->add_option("--file-offset", inject->file_offset, "byte offset in --file");
  sub->add_flag("--json", inject->json, "print one JSON document");
  sub->callback([inject, &status] {
    const char* cmd = "inject-error";
    Opened o;
    RangeArgs args = *inject;
    if (args.file.empty() != args.file_offset.empty()) {
      print_error(cmd, "--file and --file-offset go together");
      return void(status = 1);
    }
    if (!args.file.empty()) {
      if (!args.offset.empty()) {
        print_error(cmd, "give either --offset or --file with --file-offset");
        return void(status = 1);
      }
      auto fo = parse_size(args.file_offset);
      if (!fo) {
        print_error(cmd, "invalid --file-offset '" + args.file_offset + "'");
        return void(status = 1);
      }
      auto block = backing_block(cmd, args.file, *fo);
      if (!block) return void(status = 1);
      args.offset = std::to_string(*block);
      args.length = "4096";
    } else if (args.offset.empty()) {
      print_error(cmd, "--offset (or --file with --file-offset) is required");
      return void(status = 1);
    }
    if (!open_range(cmd, args, o)) return void(status = 1);
    bool held = o.device->held_elsewhere();
    // Who maps the range through DAX now (the mount's registry): they lose the page.
    nlohmann::json mappers = nlohmann::json::array();
    if (held) {
      struct stat st;
      if (stat(o.device->path().c_str(), &st) == 0) {
        if (auto snap = dax::Registry::read(dax::Registry::name_for(st.st_dev, st.st_ino))) {
          for (const dax::MappingEntry& m : snap->mappings) {
            if (m.kind == dax::MapKind::kZero || m.device >= o.offset + o.length || m.device + m.length <= o.offset)
              continue;
            uint64_t from = std::max(m.device, o.offset);
            mappers.push_back({{"pid", m.pid}, {"ino", m.ino}, {"file_offset", m.offset + (from - m.device)},
                               {"address", m.address + (from - m.device)}});
          }
        }
      }
    }
    auto seq = o.device->inject_error(o.offset, o.length);
    if (!seq) {
      print_error(cmd, std::string("cannot record poison: ") +
                           (seq.error() == ENOSPC ? "the badblock list is full" : strerror(seq.error())));
      return void(status = 1);
    }
    bool notified = held && o.device->wait_notified(*seq, kNotifyTimeoutMs);
    if (held && !notified) print_error(cmd, "warning: the holder did not acknowledge the failure");
    auto sectors = pmemdev::bytes_to_sectors(o.offset, o.length).value();
    // Who owns the poisoned bytes (every reflink sharer), when a mount can say.
    std::optional<std::vector<nlohmann::json>> owners;
    if (held)
      owners = owners_if_mounted(args.target, *o.device,
                                 {{sectors.sector * pmemdev::kSectorSize, sectors.sectors * pmemdev::kSectorSize}});
    if (inject->json) {
      nlohmann::json j = {{"device", o.device->path()},
                          {"offset", sectors.sector * pmemdev::kSectorSize},
                          {"length", sectors.sectors * pmemdev::kSectorSize},
                          {"held", held},
                          {"notified", notified},
                          {"mappers", mappers},
                          {"badblocks", badblocks_json(*o.device)}};
      if (owners) j["owners"] = (*owners)[0];
      std::cout << j.dump(2) << "\n";
    } else {
      std::cout << "poisoned " << o.device->path() << " bytes "
                << sectors.sector * pmemdev::kSectorSize << "+"
                << sectors.sectors * pmemdev::kSectorSize << " (sectors " << sectors.sector << "-"
                << sectors.end() - 1 << ")"
                << (held ? (notified ? "; holder notified" : "; holder did not answer")
                         : "; device not held: recorded only")
                << "\n";
      if (owners) std::cout << format_owners((*owners)[0]);
      for (auto& m : mappers)
        std::cout << "  DAX mapper pid " << m["pid"] << " (inode " << m["ino"] << " offset " << m["file_offset"]
                  << ") lost the page\n";
    }
    status = 0;
  });

  // remove-device: Linux's MF_MEM_PRE_REMOVE. The daemon revokes every DAX mapping (the next
  // touch of one is SIGBUS) and shuts the filesystem down; what was persisted stays, and the
  // next mount recovers.
  auto removal = std::make_shared<std::string>();
  sub = app.add_subcommand("remove-device", "emulate hot-unplug: revoke every DAX mapping, shut down");
  sub->add_option("mountpoint", *removal, "a daxfs mount point")->required();
  sub->callback([removal, &status] {
    const char* cmd = "remove-device";
    std::string mp;
    auto dev_path = resolve_device(*removal, &mp);
    if (!dev_path || mp.empty()) {
      print_error(cmd, *removal + ": not a daxfs mount point");
      return void(status = 1);
    }
    auto dev = open_target(cmd, *removal);
    if (!dev) return void(status = 1);
    if (!dev->held_elsewhere()) {
      print_error(cmd, *removal + ": the device is not held by a mounted daxfs");
      return void(status = 1);
    }
    auto seq = dev->notify_pre_remove();
    if (!seq) {
      print_error(cmd, std::string("cannot notify the holder: ") + strerror(seq.error()));
      return void(status = 1);
    }
    if (!dev->wait_notified(*seq, kNotifyTimeoutMs)) {
      print_error(cmd, "the holder did not acknowledge the removal");
      return void(status = 1);
    }
    std::cout << *dev_path << ": removal announced; " << mp
              << " is shut down and its DAX mappings are revoked (unmount it; the next mount recovers)\n";
    status = 0;
  });

  auto clear = std::make_shared<RangeArgs>();
  sub = app.add_subcommand("clear-error", "clear poison (ndctl clear-errors)");
  add_range_options(sub, *clear, true);
  sub->callback([clear, &status] {
    const char* cmd = "clear-error";
    Opened o;
    if (!open_range(cmd, *clear, o)) return void(status = 1);
    auto rc = o.device->clear_error(o.offset, o.length);
    if (!rc) {
      print_error(cmd, std::string("cannot clear: ") +
                           (rc.error() == ENOSPC ? "the badblock list is full" : strerror(rc.error())));
      return void(status = 1);
    }
    auto sectors = pmemdev::bytes_to_sectors(o.offset, o.length).value();
    std::cout << "cleared " << o.device->path() << " bytes " << sectors.sector * pmemdev::kSectorSize
              << "+" << sectors.sectors * pmemdev::kSectorSize << "\n";
    status = 0;
  });

  auto list = std::make_shared<RangeArgs>();
  sub = app.add_subcommand("list-errors", "the badblock list (ndctl list --media-errors)");
  sub->add_option("target", list->target, "MOUNTPOINT or DEVICE file")->required();
  sub->add_flag("--json", list->json, "print one JSON document");
  sub->callback([list, &status] {
    auto dev = open_target("list-errors", list->target);
    if (!dev) return void(status = 1);
    auto ranges = dev->list_errors();
    auto owners = owners_if_mounted(list->target, *dev, ranges);  // known on a mounted device
    if (list->json) {
      nlohmann::json bad = nlohmann::json::array();
      for (size_t i = 0; i < ranges.size(); i++) {
        bad.push_back({{"offset", ranges[i].offset}, {"length", ranges[i].length}});
        if (owners) bad[i]["owners"] = (*owners)[i];
      }
      nlohmann::json j = {{"device", dev->path()},
                          {"size", dev->size()},
                          {"badblock_count", ranges.size()},
                          {"badblocks", bad}};
      std::cout << j.dump(2) << "\n";
    } else if (ranges.empty()) {
      std::cout << dev->path() << ": no badblocks\n";
    } else {
      for (size_t i = 0; i < ranges.size(); i++) {
        const auto& r = ranges[i];
        std::cout << "offset " << r.offset << " length " << r.length << " (sector "
                  << r.offset / pmemdev::kSectorSize << ", " << r.length / pmemdev::kSectorSize
                  << " sectors)\n";
        if (owners) std::cout << format_owners((*owners)[i]);
      }
    }
    status = 0;
  });
}

}  // namespace daxfs::cli
