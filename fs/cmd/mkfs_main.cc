// mkfs.daxfs [-f] [-s SIZE] [-b 4096] [-m reflink=0|1] [-L LABEL] DEVICE
// Creates (or extends to SIZE) the device file and formats it; refuses an existing daxfs
// without -f, as mkfs.xfs refuses an existing filesystem.
#include <CLI/CLI.hpp>
#include <cstring>
#include <iostream>

#include "fs/cmd/cli_util.h"
#include "fs/filesystem.h"

using namespace daxfs;

int main(int argc, char** argv) {
  cli::set_program_name("mkfs.daxfs");
  CLI::App app{"mkfs.daxfs: format an emulated pmem device with daxfs"};
  std::string device, size_text, block_text = "4096", meta, label;
  bool force = false;
  app.add_option("device", device, "the device file (created if missing, with -s)")->required();
  app.add_flag("-f,--force", force, "overwrite an existing daxfs");
  app.add_option("-s,--size", size_text, "create or extend the device file to SIZE (K/M/G)");
  app.add_option("-b,--block-size", block_text, "block size (only 4096)");
  app.add_option("-m", meta, "metadata options: reflink=0|1 (default 1)");
  app.add_option("-L,--label", label, "filesystem label (up to 31 bytes)");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() != 0) {
      cli::print_error("", e.what());
      return 1;
    }
    return app.exit(e);
  }
  fs::FormatOptions fo;
  fo.label = label;
  if (!meta.empty()) {
    if (meta == "reflink=1") fo.reflink = true;
    else if (meta == "reflink=0") fo.reflink = false;
    else return cli::print_error("", "unknown metadata option '" + meta + "' (reflink=0|1)"), 1;
  }
  auto bs = cli::parse_size(block_text);
  if (!bs || *bs != fs::kBlockSize) return cli::print_error("", "block size must be 4096"), 1;
  if (label.size() >= sizeof(fs::SuperBlock::label))
    return cli::print_error("", "label '" + label + "' is longer than 31 bytes"), 1;
  pmemdev::OpenOptions opts;
  if (!size_text.empty()) {
    auto size = cli::parse_size(size_text);
    if (!size) return cli::print_error("", "invalid size '" + size_text + "'"), 1;
    if (*size < fs::kMinDeviceSize)
      return cli::print_error("", "size " + cli::format_size(*size) + " is too small (at least " +
                                       cli::format_size(fs::kMinDeviceSize) + ")"), 1;
    opts.create = pmemdev::Create::kYes;
    opts.size = *size / fs::kBlockSize * fs::kBlockSize;
  }
  auto dev = pmemdev::Device::open(device, opts);
  if (!dev) {
    std::string hint = dev.error() == ENOENT ? " (use -s SIZE to create it)" : "";
    return cli::print_error("", device + ": " + strerror(dev.error()) + hint), 1;
  }
  pmemdev::Device& d = **dev;
  if (d.size() < fs::kMinDeviceSize)
    return cli::print_error("", device + ": the device (" + cli::format_size(d.size()) +
                                    ") is too small (at least " + cli::format_size(fs::kMinDeviceSize) + ")"), 1;
  if (d.held_elsewhere()) return cli::print_error("", device + ": the device is mounted"), 1;
  const auto* sb = reinterpret_cast<const fs::SuperBlock*>(d.base());
  if (sb->magic == fs::kSuperMagic && !force)
    return cli::print_error("", device + " already contains a daxfs (use -f to overwrite it)"), 1;
  Status st = fs::format(d, fo);
  if (!st) return cli::print_error("", device + ": " + strerror(st.error())), 1;
  const auto* nsb = reinterpret_cast<const fs::SuperBlock*>(d.base());
  std::cout << "meta-data=" << device << " bsize=" << fs::kBlockSize << " blocks=" << nsb->block_count
            << " (" << cli::format_size(nsb->block_count * fs::kBlockSize) << ")\n"
            << "log      =internal bsize=" << fs::kBlockSize << " blocks=" << nsb->journal_blocks << "\n"
            << "features =reflink=" << (fo.reflink ? 1 : 0) << (label.empty() ? "" : " label=" + label) << "\n";
  return 0;
}
