// fsck.daxfs [-n] [-y] [--json] DEVICE: check (and with -y repair) an unmounted daxfs device.
// Exit codes as e2fsck's: 0 clean, 1 errors corrected, 4 errors left uncorrected, 8 operational
// error (cannot open, not a daxfs, mounted), 16 usage error. See docs/fsck.md.
#include <CLI/CLI.hpp>
#include <iostream>

#include "fs/cmd/cli_util.h"
#include "fs/fsck/fsck.h"
#include "fs/fsck/report.h"

using namespace daxfs;

int main(int argc, char** argv) {
  cli::set_program_name("fsck.daxfs");
  CLI::App app{"fsck.daxfs: check and repair an unmounted daxfs device"};
  std::string device;
  bool no = false, yes = false, preen = false, force = false, json = false;
  app.add_option("device", device, "the device file")->required();
  app.add_flag("-n,--no", no, "check only; never write the device (the default)");
  app.add_flag("-y,--yes", yes, "repair every problem found");
  app.add_flag("-p,-a,--preen", preen, "same as -y (every daxfs repair is safe to make unattended)");
  app.add_flag("-f,--force", force, "accepted for compatibility: the check is always complete");
  app.add_flag("--json", json, "print one JSON document on stdout");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() != 0) {
      cli::print_error("", e.what());
      return fsck::kExitUsage;
    }
    return app.exit(e);
  }
  if (no && (yes || preen)) {
    cli::print_error("", "only one of -n and -y (or -p) may be given");
    return fsck::kExitUsage;
  }
  fsck::Options opts;
  opts.device = device;
  opts.mode = yes || preen ? fsck::Mode::kRepair : fsck::Mode::kCheck;
  fsck::Report report = fsck::run_fsck(opts);
  if (json) {
    std::cout << fsck::to_json(report).dump(2, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
  } else {
    std::cout << fsck::format_text(report);
  }
  std::cout.flush();
  if (!report.error.empty()) cli::print_error(device, report.error);
  return report.exit_code;
}
