// The load test's parent: device, daemon, workers, memory samples, fsck, summary. Starts and
// reaps every process it uses by pid and removes its device directory (unless --keep), on
// failure too.
#pragma once

#include <cstdint>

namespace daxfs::load {

struct LoadOptions {
  double seconds = 60;
  int procs = 16;
  uint64_t seed = 1;
  bool keep = false;  // keep the device directory (device, daemon log, worker reports)
};

// Runs the whole test and prints its summary; true when it passed ("load: PASS").
bool run_load(const LoadOptions& options);

}  // namespace daxfs::load
