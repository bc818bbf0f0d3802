// load_test: issue 12's load test (docs/reliability.md, "Load"). Formats a device in /dev/shm,
// mounts a real daxfs daemon, and runs N worker processes for --seconds: file workers (I/O,
// metadata, xattrs, reflink, copy_file_range, dedupe), mapped workers (DAX stores under daxfsctl
// run) and one victim worker (poison injection), each checking its own files against a model.
// Meanwhile it samples the daemon's memory and open fds. Then it unmounts, runs fsck.daxfs -n,
// and prints a summary ending in "load: PASS" or "load: FAIL" (exit 0 or 1).
//   load_test [--seconds N] [--procs N] [--seed N] [--keep]
//   load_test --worker ID --role files|mapped|victim --dir D --mnt M --ctl C --report R
//             --seconds N --seed N      (how the parent starts each worker)
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <string>
#include <vector>

#include "tests/load/load_parent.h"
#include "tests/load/workers.h"

namespace {

using daxfs::load::Role;

[[noreturn]] void usage(const char* why) {
  std::cerr << "load_test: " << why << "\n"
            << "usage: load_test [--seconds N (60)] [--procs N (16, at least 3)] [--seed N] [--keep]\n";
  exit(2);
}

int worker_main(int argc, char** argv) {
  daxfs::load::WorkerOptions o;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string k = argv[i], v = argv[i + 1];
    if (k == "--worker") o.id = std::stoi(v);
    else if (k == "--role") o.role = v == "mapped" ? Role::kMapped : v == "victim" ? Role::kVictim : Role::kFiles;
    else if (k == "--dir") o.dir = v;
    else if (k == "--mnt") o.mnt = v;
    else if (k == "--ctl") o.ctl = v;
    else if (k == "--report") o.report = v;
    else if (k == "--seconds") o.seconds = std::stod(v);
    else if (k == "--seed") o.seed = std::stoull(v);
    else usage(("unknown worker option " + k).c_str());
  }
  switch (o.role) {
    case Role::kMapped: return daxfs::load::run_mapped_worker(o);
    case Role::kVictim: return daxfs::load::run_victim_worker(o);
    case Role::kFiles: break;
  }
  return daxfs::load::run_files_worker(o);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc > 1 && std::string(argv[1]) == "--worker") return worker_main(argc, argv);
  daxfs::load::LoadOptions o;
  o.seed = static_cast<uint64_t>(time(nullptr));
  for (int i = 1; i < argc; i++) {
    std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) usage((a + " needs a value").c_str());
      return argv[++i];
    };
    try {
      if (a == "--seconds") o.seconds = std::stod(value());
      else if (a == "--procs") o.procs = std::stoi(value());
      else if (a == "--seed") o.seed = std::stoull(value());
      else if (a == "--keep") o.keep = true;
      else if (a == "--help" || a == "-h") usage("the daxfs load test");
      else usage(("unknown option " + a).c_str());
    } catch (const std::exception&) {
      usage(("invalid value for " + a).c_str());
    }
  }
  if (o.seconds <= 0 || o.procs < 3 || o.procs > 64) usage("--seconds must be positive and --procs 3 to 64");
  return daxfs::load::run_load(o) ? 0 : 1;
}
