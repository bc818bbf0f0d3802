// dax_fsx (tests/dax/dax_fsx.cc) on real mounts: a few seeds of mixed system-call and mapped I/O
// checked against its model, on dax=always (the DAX layer) and dax=never (the kernel's page-cache
// mapping, same semantics), then fsck of the unmounted device. Also PMDK's libpmemobj on a daxfs
// file, under `daxfsctl run` (MAP_SYNC accepted: real pmem) and without (msync fallback).
#include <unistd.h>

#include <catch2/catch.hpp>
#include <string>
#include <vector>

#include "tests/support/mount.h"

using namespace daxfs::test;

namespace {

std::string fsx() { return build_dir() + "/tests/dax/dax_fsx"; }
// The plain-mmap build under daxfsctl run: the same model through the preload shim.
std::string fsx_shim() { return program("daxfsctl") + " run -- " + build_dir() + "/tests/dax/dax_fsx_plain"; }

// Runs dax_fsx on `file` for one seed; REQUIREs exit 0 and returns its output.
std::string run_fsx(const std::string& file, int seed, int ops, const std::string& extra = "",
                    const std::string& program = fsx()) {
  std::string cmd = program + " --seed " + std::to_string(seed) + " --ops " + std::to_string(ops) + " " + extra + " " + file;
  std::string out;
  int rc = run(cmd, &out);
  INFO(cmd);
  INFO(out);
  REQUIRE(rc == 0);
  return out;
}

void fsck_clean(const std::string& device) {
  std::string out;
  int rc = run(program("fsck.daxfs") + " -n " + device, &out);
  INFO(out);
  CHECK(rc == 0);
}

}  // namespace

TEST_CASE("dax_fsx: mapped and system-call I/O match the model on dax=always and dax=never",
          "[dax][fuse][fsx]") {
  const int seeds[] = {1, 2, 3};
  for (const char* mode : {"always", "never"}) {
    DYNAMIC_SECTION("dax=" << mode) {
      bool dax_mode = std::string(mode) == "always";
      Mount m("64M", std::string("dax=") + mode);
      for (int seed : seeds) {
        // The client library called directly, then plain mmap(2) calls through the preload shim.
        for (const std::string& prog : {fsx(), fsx_shim()}) {
          // On dax=never the kernel's page cache and attributes are dropped asynchronously after
          // a clone, dedupe, collapse or insert (the daemon cannot invalidate them on a request
          // thread: docs/reflink.md), so a read right after one may see the old bytes: those
          // four run on dax=always only, where every access reaches the media.
          std::string extra = dax_mode ? "" : "--skip clone --skip dedupe --skip collapse --skip insert";
          std::string out = run_fsx(m.path("fsx." + std::to_string(seed)), seed, 2000, extra, prog);
          // dax=always goes through the DAX layer; dax=never gets the kernel's mapping.
          INFO(out);
          CHECK(out.find(dax_mode ? "exercised dax: yes" : "exercised dax: no") != std::string::npos);
        }
      }
      m.stop();
      fsck_clean(m.device());
    }
  }
}

TEST_CASE("libpmemobj keeps a transaction on a daxfs file, with and without daxfs run", "[dax][fuse][pmemobj]") {
  std::string tool = build_dir() + "/tests/dax/pmemobj_tool";
  if (access(tool.c_str(), X_OK) != 0) {
    WARN("pmemobj_tool is not built (no libpmemobj): skipped");
    return;
  }
  Mount m("64M", "dax=always");
  for (bool under_run : {true, false}) {
    std::string file = m.path(under_run ? "pool.run" : "pool.plain");
    std::string cmd = (under_run ? program("daxfsctl") + " run -- " : std::string()) + tool + " " + file;
    std::string out;
    int rc = run(cmd, &out);
    INFO(cmd);
    INFO(out);
    REQUIRE(rc == 0);
    CHECK(out.find("reopened ok") != std::string::npos);
    // Under daxfsctl run MAP_SYNC is accepted, so PMDK treats the mapping as pmem; without it
    // the kernel refuses MAP_SYNC and PMDK falls back to msync.
    CHECK(out.find(under_run ? "is_pmem 1" : "is_pmem 0") != std::string::npos);
  }
  m.stop();
  fsck_clean(m.device());
}
