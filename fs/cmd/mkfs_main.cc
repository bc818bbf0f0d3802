// mkfs.daxfs [-f] [-s SIZE] [-b 4096] [-m reflink=0|1] [-L LABEL] DEVICE
// Creates (or extends to SIZE) the device file and formats it; refuses an existing daxfs
// without -f, as mkfs.xfs refuses an existing filesystem. Every check that can refuse runs before
// the file is touched; a failure after that removes a file mkfs created, or truncates a file it
// extended back to its old size (the format itself fails only before its first store).
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cstring>
#include <iostream>

#include "fs/cmd/cli_util.h"
#include "fs/filesystem.h"

using namespace daxfs;

namespace {

int fail(const std::string& message) {
  cli::print_error("", message);
  return 1;
}

std::string directory_of(const std::string& path) {
  size_t slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  return slash == 0 ? "/" : path.substr(0, slash);
}

// Bytes an unprivileged writer can still allocate in the file system holding `dir`.
Result<uint64_t> free_bytes(const std::string& dir) {
  struct statvfs vfs;
  if (statvfs(dir.c_str(), &vfs) != 0) return error(errno);
  return static_cast<uint64_t>(vfs.f_bavail) * vfs.f_frsize;
}

// Reads the first bytes of the file to see whether it holds a daxfs (without mapping it).
Result<bool> holds_daxfs(const std::string& path) {
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return error(errno);
  uint64_t magic = 0;
  ssize_t n = pread(fd, &magic, sizeof magic, offsetof(fs::SuperBlock, magic));
  int e = errno;
  close(fd);
  if (n < 0) return error(e);
  return n == sizeof magic && magic == fs::kSuperMagic;
}

// Reverts the device's open (removes what it created, truncates back what it extended) unless
// disarmed. The Device is closed first.
class Rollback {
 public:
  explicit Rollback(std::unique_ptr<pmemdev::Device>& device) : device_(device) {}
  ~Rollback() {
    if (!armed_) return;
    std::string path = device_->path();
    pmemdev::OpenChanges changes = device_->changes();
    device_.reset();
    Status st = pmemdev::Device::revert(path, changes);
    if (!st) cli::print_error("", path + ": cannot undo the changes: " + strerror(st.error()));
  }
  Rollback(const Rollback&) = delete;
  Rollback& operator=(const Rollback&) = delete;
  void disarm() { armed_ = false; }

 private:
  std::unique_ptr<pmemdev::Device>& device_;
  bool armed_ = true;
};

}  // namespace

int main(int argc, char** argv) {
  cli::set_program_name("mkfs.daxfs");
  CLI::App app{"mkfs.daxfs: format an emulated pmem device with daxfs"};
  std::string device, size_text, block_text = "4096", meta, label;
  bool force = false;
  app.add_option("device", device, "the device file (created if missing, with -s; mode 0600)")->required();
  app.add_flag("-f,--force", force, "overwrite an existing daxfs");
  app.add_option("-s,--size", size_text,
                 "create or extend the device file to SIZE (K/M/G/T; 16M to " +
                     cli::format_size(pmemdev::kMaxDeviceSize) + ")");
  app.add_option("-b,--block-size", block_text, "block size (only 4096)");
  app.add_option("-m", meta, "metadata options: reflink=0|1 (default 1)");
  app.add_option("-L,--label", label, "filesystem label (up to 31 bytes)");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() != 0) return fail(e.what());
    return app.exit(e);
  }
  fs::FormatOptions fo;
  fo.label = label;
  if (!meta.empty()) {
    if (meta == "reflink=1") fo.reflink = true;
    else if (meta == "reflink=0") fo.reflink = false;
    else return fail("unknown metadata option '" + meta + "' (reflink=0|1)");
  }
  auto bs = cli::parse_size(block_text);
  if (!bs || *bs != fs::kBlockSize) return fail("block size must be 4096");
  if (label.size() >= sizeof(fs::SuperBlock::label))
    return fail("label '" + label + "' is longer than 31 bytes");
  const std::string max_text = cli::format_size(pmemdev::kMaxDeviceSize);
  // Every program maps the whole device: the limit is address space (see kMaxDeviceSize).
  const std::string why_max = "the largest device daxfs can map (max " + max_text + ")";
  uint64_t wanted = 0;
  if (!size_text.empty()) {
    auto size = cli::parse_size(size_text);
    if (!size) return fail("invalid size '" + size_text + "'");
    if (*size < fs::kMinDeviceSize)
      return fail("size " + cli::format_size(*size) + " is too small (at least " +
                  cli::format_size(fs::kMinDeviceSize) + ")");
    if (*size > pmemdev::kMaxDeviceSize) return fail("size " + size_text + " is larger than " + why_max);
    wanted = *size / fs::kBlockSize * fs::kBlockSize;
  }

  // Every check before the file is touched.
  struct stat st;
  bool exists = stat(device.c_str(), &st) == 0;
  if (!exists && errno != ENOENT) return fail(device + ": " + strerror(errno));
  if (!exists && wanted == 0) return fail(device + ": " + strerror(ENOENT) + " (use -s SIZE to create it)");
  if (exists && S_ISDIR(st.st_mode)) return fail(device + ": " + strerror(EISDIR));
  if (exists && !S_ISREG(st.st_mode))
    return fail(device + ": not a regular file (an emulated pmem device is a plain file)");
  uint64_t current = exists ? static_cast<uint64_t>(st.st_size) : 0;
  uint64_t target = std::max(current, wanted);
  if (target > pmemdev::kMaxDeviceSize)
    return fail(device + ": the device (" + cli::format_size(target) + ") is larger than " + why_max);
  if (target < fs::kMinDeviceSize)
    return fail(device + ": the device (" + cli::format_size(target) + ") is too small (at least " +
                cli::format_size(fs::kMinDeviceSize) + ")");
  if (target > current) {
    // A sparse device must still be backed when the filesystem fills it: a store the file
    // system holding the device cannot back kills the daemon with SIGBUS.
    uint64_t allocated = exists ? static_cast<uint64_t>(st.st_blocks) * 512 : 0;
    uint64_t needed = target > allocated ? target - allocated : 0;
    std::string dir = directory_of(device);
    auto available = free_bytes(dir);
    if (!available) return fail(device + ": " + strerror(available.error()));
    if (needed > *available) {
      uint64_t max = (*available + allocated) / (1 << 20) * (1 << 20);
      return fail("size " + size_text + " is larger than the free space of the filesystem holding " + dir +
                  " (max " + cli::format_size(max) + ")");
    }
  }
  if (exists) {
    if (pmemdev::Device::held(device)) return fail(device + ": the device is mounted");
    auto daxfs = holds_daxfs(device);
    if (!daxfs) return fail(device + ": " + strerror(daxfs.error()));
    if (*daxfs && !force) return fail(device + " already contains a daxfs (use -f to overwrite it)");
  }

  pmemdev::OpenOptions opts;
  if (!exists) opts.create = pmemdev::Create::kExclusive;
  else if (target > current) opts.create = pmemdev::Create::kYes;
  opts.size = target;
  auto opened = pmemdev::Device::open(device, opts);  // reverts its own changes when it fails
  if (!opened) {
    if (opened.error() == EFBIG) return fail(device + ": the device is larger than " + why_max);
    return fail(device + ": " + strerror(opened.error()));
  }
  std::unique_ptr<pmemdev::Device> dev = std::move(opened).value();
  Rollback rollback(dev);
  // A daemon may have claimed the device since the check above.
  if (dev->held_elsewhere()) return fail(device + ": the device is mounted");
  Status formatted = fs::format(*dev, fo);
  if (!formatted) return fail(device + ": " + strerror(formatted.error()));
  rollback.disarm();

  const auto* nsb = reinterpret_cast<const fs::SuperBlock*>(dev->base());
  std::cout << "meta-data=" << device << " bsize=" << fs::kBlockSize << " blocks=" << nsb->block_count
            << " (" << cli::format_size(nsb->block_count * fs::kBlockSize) << ")\n"
            << "log      =internal bsize=" << fs::kBlockSize << " blocks=" << nsb->journal_blocks << "\n"
            << "features =reflink=" << (fo.reflink ? 1 : 0) << (label.empty() ? "" : " label=" + label) << "\n";
  // mkfs never changes the mode of a file the user made; it says when others can read it.
  for (const std::string& warning : pmemdev::Device::exposure_warnings(device))
    cli::print_error("", "warning: " + warning);
  return 0;
}
