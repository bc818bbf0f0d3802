// fsck.daxfs as a library: check, and optionally repair, an unmounted daxfs device. The program
// (fsck_main.cc) and the tests call run_fsck(); report.h prints its Report.
// Not thread-safe: one run at a time per device (the run holds the device's claim throughout).
#pragma once

#include <string>
#include <vector>

#include "fs/fsck/problem.h"

namespace daxfs::fsck {

// Exit codes, as e2fsck's.
inline constexpr int kExitClean = 0;
inline constexpr int kExitCorrected = 1;
inline constexpr int kExitUncorrected = 4;
inline constexpr int kExitOperational = 8;
inline constexpr int kExitUsage = 16;

enum class Mode {
  kCheck,   // -n: never writes the device
  kRepair,  // -y: repairs everything it can, through the journal
};

struct Options {
  std::string device;
  Mode mode = Mode::kCheck;
};

struct Report {
  std::string device;
  Mode mode = Mode::kCheck;
  // Everything found: repaired ones first (in the order they were found, across passes), then
  // what the final pass still sees.
  std::vector<Problem> problems;
  Stats stats;            // of the final pass
  bool clean = false;     // no error left (informational findings do not count)
  bool modified = false;  // the device was written
  int passes = 0;
  std::string error;  // the operational error behind an exit 8
  int exit_code = kExitOperational;
};

// Opens `options.device`, refuses it when it is mounted (held by another process) or not a daxfs
// (exit 8, `error` says why), claims it for the duration, and checks it. kCheck: reports only;
// a committed journal transaction is replayed into a private overlay so the check sees what a
// mount would. kRepair: replays the journal, then alternates check and repair passes until a
// pass finds nothing more to repair (at most a few). Never throws.
Report run_fsck(const Options& options) noexcept;

}  // namespace daxfs::fsck
