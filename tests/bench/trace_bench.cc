// trace_bench: what power-fail tracing (pmemdev/trace.h) costs. (a) A store through the Device
// with no trace set, against the same libpmem2 memcpy on a second mapping of the same file made
// here with libpmem2 alone (the Device before tracing existed: the difference is the trace check
// and the bounds check); (b) the same store with a trace set; (c) 4 KiB file overwrites and file
// creates through the Filesystem API, untraced and traced. Rounds interleaved, medians printed;
// the figures go in docs/reliability.md, never into a pass/fail gate.
#include <fcntl.h>
#include <libpmem2.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "fs/filesystem.h"
#include "pmemdev/trace.h"

using namespace daxfs;
using Clock = std::chrono::steady_clock;

namespace {
double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}
[[noreturn]] void die(const std::string& why) {
  fprintf(stderr, "trace_bench: %s\n", why.c_str());
  exit(1);
}
}  // namespace

int main(int argc, char** argv) {
  int rounds = argc > 1 ? atoi(argv[1]) : 7;
  char tmpl[] = "/dev/shm/daxfs-trace-bench-XXXXXX";
  if (!mkdtemp(tmpl)) die("mkdtemp");
  std::string dir = tmpl, path = dir + "/pmem0";
  auto cleanup = [&] {
    unlink(path.c_str());
    unlink((path + ".ctl").c_str());
    rmdir(dir.c_str());
  };
  pmemdev::OpenOptions o;
  o.create = pmemdev::Create::kYes;
  o.size = 64 << 20;
  auto dev = pmemdev::Device::open(path, o);
  if (!dev) die("device");
  if (!fs::format(**dev, {})) die("format");

  // The baseline: libpmem2 directly, as the Device calls it, on a map of the same file.
  setenv("PMEM2_FORCE_GRANULARITY", "CACHE_LINE", 0);
  int fd = open(path.c_str(), O_RDWR);
  pmem2_source* src = nullptr;
  pmem2_config* cfg = nullptr;
  pmem2_map* map = nullptr;
  if (pmem2_source_from_fd(&src, fd) || pmem2_config_new(&cfg) ||
      pmem2_config_set_required_store_granularity(cfg, PMEM2_GRANULARITY_PAGE) || pmem2_map_new(&map, cfg, src))
    die("libpmem2 map");
  char* raw = static_cast<char*>(pmem2_map_get_address(map));
  pmem2_memcpy_fn raw_memcpy = pmem2_get_memcpy_fn(map);
  pmem2_drain_fn raw_drain = pmem2_get_drain_fn(map);

  constexpr int kStores = 200000;
  constexpr uint64_t kArea = 32 << 20;  // past the filesystem's first blocks: nothing mounted
  char line[64] = "a cache line's worth of metadata, stored and flushed";
  std::vector<double> t_raw, t_off, t_on;
  auto per_store = [&](auto&& store) {
    auto t0 = Clock::now();
    for (int i = 0; i < kStores; i++) store(kArea + (i % 8192) * 64);
    return std::chrono::duration<double, std::nano>(Clock::now() - t0).count() / kStores;
  };
  for (int r = 0; r < rounds; r++) {
    t_raw.push_back(per_store([&](uint64_t off) {
      raw_memcpy(raw + off, line, sizeof line, PMEM2_F_MEM_NODRAIN);
      raw_drain();
    }));
    t_off.push_back(per_store([&](uint64_t off) {
      (*dev)->memcpy_nodrain(off, line, sizeof line);
      (*dev)->drain();
    }));
    pmemdev::PersistTrace trace;
    (*dev)->set_trace(&trace);
    t_on.push_back(per_store([&](uint64_t off) {
      (*dev)->memcpy_nodrain(off, line, sizeof line);
      (*dev)->drain();
    }));
    (*dev)->set_trace(nullptr);
  }
  pmem2_map_delete(&map);
  pmem2_config_delete(&cfg);
  pmem2_source_delete(&src);
  close(fd);
  dev->reset();

  // Through the filesystem: 4 KiB overwrites and creates, untraced and traced.
  std::vector<double> w_off, w_on, c_off, c_on;
  for (int r = 0; r < rounds; r++) {
    for (bool traced : {false, true}) {
      pmemdev::PersistTrace trace;
      auto d = pmemdev::Device::open(path, {});
      if (!d) die("reopen");
      if (traced) (*d)->set_trace(&trace);
      std::string why;
      auto f = fs::Filesystem::mount(std::move(d).value(), {}, why);
      if (!f) die("mount: " + why);
      fs::Filesystem& fsys = **f;
      std::string name = "f" + std::to_string(r) + (traced ? "t" : "u");
      auto st = fsys.mknod(fsys.root_ino(), name, S_IFREG | 0644, 0, {});
      if (!st) die("mknod");
      std::vector<char> block(4096, 'x');
      for (int i = 0; i < 256; i++) (void)fsys.write(st->st_ino, i * 4096ull, block.data(), 4096);
      auto t0 = Clock::now();
      for (int i = 0; i < 20000; i++) (void)fsys.write(st->st_ino, (i % 256) * 4096ull, block.data(), 4096);
      (traced ? w_on : w_off).push_back(std::chrono::duration<double, std::nano>(Clock::now() - t0).count() / 20000);
      auto mk = fsys.mkdir(fsys.root_ino(), name + "d", 0755, {});
      if (!mk) die("mkdir");
      t0 = Clock::now();
      for (int i = 0; i < 2000; i++) {
        auto c = fsys.mknod(mk->st_ino, std::to_string(i), S_IFREG | 0644, 0, {});
        if (!c) die("create");
        fsys.forget(c->st_ino, 1);
      }
      (traced ? c_on : c_off).push_back(std::chrono::duration<double, std::nano>(Clock::now() - t0).count() / 2000);
      for (int i = 0; i < 2000; i++) (void)fsys.unlink(mk->st_ino, std::to_string(i));
      (void)fsys.rmdir(fsys.root_ino(), name + "d");
      (void)fsys.unlink(fsys.root_ino(), name);
      fsys.forget(st->st_ino, 1);
      fsys.forget(mk->st_ino, 1);
    }
  }
  cleanup();
  printf("| operation (median of %d rounds) | libpmem2 directly | Device, no trace | Device, traced |\n", rounds);
  printf("|---|---|---|---|\n");
  printf("| 64-byte store + flush + fence | %.1f ns | %.1f ns (%.3fx) | %.1f ns (%.2fx) |\n", median(t_raw),
         median(t_off), median(t_off) / median(t_raw), median(t_on), median(t_on) / median(t_raw));
  printf("| 4 KiB file overwrite (Filesystem API) | | %.2f us | %.2f us (%.2fx) |\n", median(w_off) / 1000,
         median(w_on) / 1000, median(w_on) / median(w_off));
  printf("| file create (Filesystem API) | | %.2f us | %.2f us (%.2fx) |\n", median(c_off) / 1000, median(c_on) / 1000,
         median(c_on) / median(c_off));
  return 0;
}
