// The calls FUSE never forwards, answered by the preload shim (daxcore/client/remap.cc) for
// unmodified programs under `daxfsctl run`: FICLONE/FICLONERANGE, FIDEDUPERANGE, FS_IOC_FIEMAP,
// FS_IOC_GETFSMAP and fallocate's UNSHARE/COLLAPSE/INSERT. Real mounts, real programs (cp,
// xfs_io when installed, tests/dax/remap_tool), the VFS's errnos. The same programs without the
// shim get what any FUSE filesystem gives them.
#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>

#include "tests/support/mount.h"

using namespace daxfs::test;

namespace {

std::string ctl() { return program("daxfsctl"); }
std::string remap() { return build_dir() + "/tests/dax/remap_tool"; }

// remap_tool under the shim (with `env` set): its first output line.
std::string shim(const std::string& args, const std::string& env = "") {
  std::string out;
  INFO(args);
  REQUIRE(run(env + " " + ctl() + " run -- " + remap() + " " + args, &out) == 0);
  return out.substr(0, out.find('\n'));
}
std::string shim_all(const std::string& args) {
  std::string out;
  INFO(args);
  REQUIRE(run(ctl() + " run -- " + remap() + " " + args, &out) == 0);
  return out;
}

// daxfsctl fiemap FILE --json: the extents' flags, in order.
std::vector<std::string> flags_of(const std::string& file) {
  std::string out;
  REQUIRE(run(ctl() + " fiemap " + file + " --json", &out) == 0);
  auto j = nlohmann::json::parse(out);
  std::vector<std::string> flags;
  for (const auto& e : j["extents"]) {
    std::string f;
    for (const auto& x : e["flags"]) f += (f.empty() ? "" : ",") + x.get<std::string>();
    flags.push_back(f);
  }
  return flags;
}

void fill(const std::string& path, size_t n, char c) { spit(path, std::string(n, c)); }

bool have(const std::string& prog) { return run("command -v " + prog + " >/dev/null 2>&1") == 0; }

}  // namespace

TEST_CASE("cp --reflink=always shares every block under the shim, and fails without it",
          "[dax][fuse][shim]") {
  Mount m;
  fill(m.path("a"), 3 << 20, 'a');
  std::string out;
  CHECK(run("cp --reflink=always " + m.path("a") + " " + m.path("plain") + " 2>/dev/null") != 0);
  REQUIRE(run(ctl() + " run -- cp --reflink=always " + m.path("a") + " " + m.path("b"), &out) == 0);
  CHECK(slurp(m.path("b")) == slurp(m.path("a")));
  for (std::string f : {"a", "b"}) {
    auto flags = flags_of(m.path(f));
    REQUIRE_FALSE(flags.empty());
    for (const auto& x : flags) CHECK(x.find("shared") != std::string::npos);
  }
}

TEST_CASE("FICLONE and FICLONERANGE: the VFS's checks on the caller's descriptors, then the clone",
          "[dax][fuse][shim]") {
  Mount m, other;
  fill(m.path("src"), 16384, 's');
  fill(m.path("dst"), 0, 0);
  fill(other.path("far"), 4096, 'f');
  CHECK(shim("clone " + m.path("src") + " " + m.path("dst")) == "ok");
  CHECK(slurp(m.path("dst")) == std::string(16384, 's'));
  CHECK(shim("clone " + m.path("src") + " " + m.path("dst") + " 4096 4096 8192") == "ok");  // FICLONERANGE
  // Across mounts: EXDEV; a write-only source, a read-only or append-only destination: EBADF.
  CHECK(shim("clone " + other.path("far") + " " + m.path("dst")) == "EXDEV");
  CHECK(shim("clone " + m.path("src") + " " + m.path("dst"), "SRC_FLAGS=w") == "EBADF");
  CHECK(shim("clone " + m.path("src") + " " + m.path("dst"), "DST_FLAGS=r") == "EBADF");
  CHECK(shim("clone " + m.path("src") + " " + m.path("dst"), "DST_FLAGS=a") == "EBADF");
  // The filesystem's own rules (XFS's): unaligned offsets, overlapping ranges of one file.
  CHECK(shim("clone " + m.path("src") + " " + m.path("dst") + " 100 4096 0") == "EINVAL");
  CHECK(shim("clone " + m.path("src") + " " + m.path("src") + " 0 8192 4096", "SRC_FLAGS=rw") == "EINVAL");
  // Without the shim the kernel never forwards FICLONE: the program sees what FUSE answers.
  std::string out;
  REQUIRE(run(remap() + " clone " + m.path("src") + " " + m.path("dst"), &out) == 0);
  CHECK(out != "ok\n");
}

TEST_CASE("FIDEDUPERANGE: same data is shared, different data says differs", "[dax][fuse][shim]") {
  Mount m;
  fill(m.path("a"), 8192, 'x');
  fill(m.path("b"), 8192, 'x');
  fill(m.path("c"), 8192, 'y');
  CHECK(shim("dedupe " + m.path("a") + " " + m.path("b") + " 0 8192 0") == "same 8192");
  for (const auto& x : flags_of(m.path("b"))) CHECK(x.find("shared") != std::string::npos);
  CHECK(shim("dedupe " + m.path("a") + " " + m.path("c") + " 0 8192 0") == "differs");
  CHECK(flags_of(m.path("c")) == std::vector<std::string>{""});
  CHECK(shim("dedupe " + m.path("a") + " " + m.path("a") + " 0 4096 4096") == "same 4096");  // within one file
}

TEST_CASE("FS_IOC_FIEMAP: extents, shared/unwritten/last flags, counting, fiemap_prep's errors",
          "[dax][fuse][shim]") {
  Mount m;
  fill(m.path("f"), 8192, 'f');
  REQUIRE(run(ctl() + " reflink " + m.path("f") + " " + m.path("g")) == 0);
  std::string f = m.path("f");
  std::string out = shim_all("fiemap " + f);
  std::istringstream in(out);
  std::string line;
  std::getline(in, line);
  CHECK(line == "mapped 1");
  uint64_t logical, physical, length;
  std::string flags;
  in >> logical >> physical >> length >> flags;
  CHECK(logical == 0);
  CHECK(length == 8192);
  CHECK(flags == "0x2001");  // FIEMAP_EXTENT_SHARED | FIEMAP_EXTENT_LAST
  // A range inside the extent: trimmed to it, in blocks.
  CHECK(shim_all("fiemap " + f + " 4096 100 8 0").find("4096 " + std::to_string(physical + 4096) + " 4096 0x2001") !=
        std::string::npos);
  CHECK(shim("fiemap " + f + " 0 -1 0 0") == "mapped 1");  // count only
  CHECK(shim("fiemap " + f + " 0 0 8 0") == "EINVAL flags 0x0");
  CHECK(shim("fiemap " + f + " 0 -1 8 0x2") == "EBADR flags 0x2");  // FIEMAP_FLAG_XATTR: unsupported
  CHECK(shim("fiemap " + f + " 0 -1 8 0x1") == "mapped 1");          // FIEMAP_FLAG_SYNC
  CHECK(shim("fiemap " + m.mnt()) == "EOPNOTSUPP flags 0x0");
}

TEST_CASE("FS_IOC_GETFSMAP: the reverse map, counted or listed, the last record flagged",
          "[dax][fuse][shim]") {
  Mount m;
  fill(m.path("f"), 8192, 'f');
  std::string count = shim("fsmap " + m.mnt() + " 0");
  REQUIRE(count.rfind("entries ", 0) == 0);
  int n = std::stoi(count.substr(8));
  CHECK(n >= 5);  // superblock, journal, inodes, the file's data and extent map, free space...
  std::string all = shim_all("fsmap " + m.mnt());
  CHECK(all.find("entries " + std::to_string(n) + "\n") == 0);
  CHECK(all.find("last 0x30") != std::string::npos);  // FMR_OF_SPECIAL_OWNER | FMR_OF_LAST: free space
  CHECK(shim("fsmap " + m.mnt() + " 2").rfind("entries 2", 0) == 0);
}

TEST_CASE("fallocate UNSHARE/COLLAPSE/INSERT: vfs_fallocate's checks, then the filesystem's",
          "[dax][fuse][shim]") {
  Mount m;
  fill(m.path("f"), 16384, 'u');
  REQUIRE(run(ctl() + " reflink " + m.path("f") + " " + m.path("g")) == 0);
  std::string f = m.path("f");
  CHECK(shim("falloc " + f + " unshare 0 4096") == "ok");
  CHECK(flags_of(f).at(0) == "");  // the first block is private now
  CHECK(shim("falloc " + f + " unshare-keep 4096 4096") == "ok");
  CHECK(shim("falloc " + f + " unshare 0 4096 r") == "EBADF");          // read-only fd
  CHECK(shim("falloc " + f + " collapse-keep 0 4096") == "EOPNOTSUPP");  // no KEEP_SIZE (Linux 6.11+)
  CHECK(shim("falloc " + f + " unshare 0 0") == "EINVAL");              // empty
  CHECK(shim("falloc " + m.mnt() + " unshare 0 4096 r") == "EBADF");    // a directory opens read-only
}

TEST_CASE("xfs_io's reflink, dedupe, funshare and fiemap work under the shim", "[dax][fuse][shim]") {
  if (!have("xfs_io")) {
    WARN("xfs_io is not installed: skipped");
    return;
  }
  Mount m;
  fill(m.path("a"), 65536, 'a');
  fill(m.path("b"), 65536, 'a');
  fill(m.path("c"), 0, 0);
  std::string io = ctl() + " run -- xfs_io";
  std::string out;
  REQUIRE(run(io + " -c 'reflink " + m.path("a") + " 0 0 65536' " + m.path("c"), &out) == 0);
  CHECK(out.find("linked 65536/65536 bytes") != std::string::npos);
  REQUIRE(run(io + " -c 'dedupe " + m.path("a") + " 0 0 65536' " + m.path("b"), &out) == 0);
  CHECK(out.find("deduped 65536/65536 bytes") != std::string::npos);
  REQUIRE(run(io + " -c 'funshare 0 4096' -c 'fiemap -v' " + m.path("c"), &out) == 0);
  CHECK(out.find("0: [0..7]:") != std::string::npos);
  CHECK(out.find("1: [8..127]:") != std::string::npos);
  CHECK(out.find("0x2001") != std::string::npos);  // the rest: shared, last
  REQUIRE(run(io + " -c 'fsmap' " + m.mnt(), &out) == 0);
  CHECK(out.find("journalling log") != std::string::npos);
  CHECK(out.find("free space") != std::string::npos);
}
