// The calls FUSE never forwards, issued through libc exactly as a program issues them, so that
// under `daxfsctl run` the preload shim answers them (tests/dax/shim_remap_test.cc). One call per
// run; prints "ok", the result, or the errno's name (ENOENT, EXDEV...):
//   clone SRC DST [SRC_OFF LEN DST_OFF]   FICLONE, or FICLONERANGE with the range (SRC opened
//                                         with $SRC_FLAGS: r|w|rw, DST with $DST_FLAGS: rw|r|a)
//   dedupe SRC DST SRC_OFF LEN DST_OFF    FIDEDUPERANGE: "same BYTES" or "differs" or an errno
//   fiemap FILE [START LEN COUNT FLAGS]   FS_IOC_FIEMAP: "mapped N" then "LOGICAL PHYSICAL LENGTH
//                                         FLAGS" per extent (hex flags)
//   fsmap DIR [COUNT]                     FS_IOC_GETFSMAP over the whole device: "entries N" and
//                                         "last FLAGS" (hex) of the last record
//   falloc FILE MODE OFF LEN [r]          fallocate(2); MODE: unshare|unshare-keep|collapse|
//                                         insert|collapse-keep; r: open read-only
#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <linux/fiemap.h>
#include <linux/fs.h>
#include <linux/fsmap.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <string>
#include <vector>

#ifndef FALLOC_FL_UNSHARE_RANGE
#define FALLOC_FL_UNSHARE_RANGE 0x40
#endif

namespace {

int report(int rc) {
  if (rc == 0) {
    printf("ok\n");
    return 0;
  }
  printf("%s\n", strerrorname_np(errno));
  return 0;
}

int open_as(const char* path, const char* env, const char* dflt) {
  const char* how = getenv(env);
  std::string h = how ? how : dflt;
  int flags = h == "r" ? O_RDONLY : h == "w" ? O_WRONLY : h == "a" ? O_WRONLY | O_APPEND : O_RDWR;
  int fd = open(path, flags);
  if (fd < 0) {
    printf("open %s: %s\n", path, strerrorname_np(errno));
    exit(1);
  }
  return fd;
}

uint64_t num(const char* s) { return strtoull(s, nullptr, 0); }

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: remap_tool clone|dedupe|fiemap|fsmap|falloc ARGS (see the source)\n");
    return 2;
  }
  std::string cmd = argv[1];
  if (cmd == "clone" && (argc == 4 || argc == 7)) {
    int src = open_as(argv[2], "SRC_FLAGS", "r");
    int dst = open_as(argv[3], "DST_FLAGS", "rw");
    if (argc == 4) return report(ioctl(dst, FICLONE, src));
    file_clone_range r{};
    r.src_fd = src;
    r.src_offset = num(argv[4]);
    r.src_length = num(argv[5]);
    r.dest_offset = num(argv[6]);
    return report(ioctl(dst, FICLONERANGE, &r));
  }
  if (cmd == "dedupe" && argc == 7) {
    int src = open_as(argv[2], "SRC_FLAGS", "r");
    int dst = open_as(argv[3], "DST_FLAGS", "rw");
    std::vector<char> buf(sizeof(file_dedupe_range) + sizeof(file_dedupe_range_info));
    auto* r = reinterpret_cast<file_dedupe_range*>(buf.data());
    r->src_offset = num(argv[4]);
    r->src_length = num(argv[5]);
    r->dest_count = 1;
    r->info[0].dest_fd = dst;
    r->info[0].dest_offset = num(argv[6]);
    if (ioctl(src, FIDEDUPERANGE, r) != 0) return report(-1);
    if (r->info[0].status == FILE_DEDUPE_RANGE_DIFFERS) {
      printf("differs\n");
    } else if (r->info[0].status < 0) {
      printf("%s\n", strerrorname_np(-r->info[0].status));
    } else {
      printf("same %llu\n", static_cast<unsigned long long>(r->info[0].bytes_deduped));
    }
    return 0;
  }
  if (cmd == "fiemap" && (argc == 3 || argc == 7)) {
    int fd = open(argv[2], O_RDONLY);
    if (fd < 0) return report(-1);
    uint32_t count = argc == 7 ? static_cast<uint32_t>(num(argv[5])) : 64;
    std::vector<char> buf(sizeof(struct fiemap) + count * sizeof(struct fiemap_extent));
    auto* fm = reinterpret_cast<struct fiemap*>(buf.data());
    fm->fm_start = argc == 7 ? num(argv[3]) : 0;
    fm->fm_length = argc == 7 ? num(argv[4]) : FIEMAP_MAX_OFFSET;
    fm->fm_extent_count = count;
    fm->fm_flags = argc == 7 ? static_cast<uint32_t>(num(argv[6])) : 0;
    if (ioctl(fd, FS_IOC_FIEMAP, fm) != 0) {
      int e = errno;
      printf("%s flags 0x%x\n", strerrorname_np(e), fm->fm_flags);
      return 0;
    }
    printf("mapped %u\n", fm->fm_mapped_extents);
    for (uint32_t i = 0; i < fm->fm_mapped_extents && i < count; i++) {
      const fiemap_extent& e = fm->fm_extents[i];
      printf("%llu %llu %llu 0x%x\n", static_cast<unsigned long long>(e.fe_logical),
             static_cast<unsigned long long>(e.fe_physical), static_cast<unsigned long long>(e.fe_length),
             e.fe_flags);
    }
    return 0;
  }
  if (cmd == "fsmap" && (argc == 3 || argc == 4)) {
    int fd = open(argv[2], O_RDONLY);
    if (fd < 0) return report(-1);
    uint32_t count = argc == 4 ? static_cast<uint32_t>(num(argv[3])) : 1000;
    std::vector<char> buf(sizeof(fsmap_head) + count * sizeof(struct fsmap));
    auto* h = reinterpret_cast<fsmap_head*>(buf.data());
    h->fmh_count = count;
    h->fmh_keys[1].fmr_device = UINT32_MAX;
    h->fmh_keys[1].fmr_flags = UINT32_MAX;
    h->fmh_keys[1].fmr_physical = UINT64_MAX;
    h->fmh_keys[1].fmr_owner = UINT64_MAX;
    h->fmh_keys[1].fmr_offset = UINT64_MAX;
    if (ioctl(fd, FS_IOC_GETFSMAP, h) != 0) return report(-1);
    printf("entries %u\n", h->fmh_entries);
    if (count > 0 && h->fmh_entries > 0) printf("last 0x%x\n", h->fmh_recs[h->fmh_entries - 1].fmr_flags);
    return 0;
  }
  if (cmd == "falloc" && (argc == 6 || argc == 7)) {
    std::string m = argv[3];
    int mode = m == "unshare"        ? FALLOC_FL_UNSHARE_RANGE
               : m == "unshare-keep" ? FALLOC_FL_UNSHARE_RANGE | FALLOC_FL_KEEP_SIZE
               : m == "collapse"     ? FALLOC_FL_COLLAPSE_RANGE
               : m == "insert"       ? FALLOC_FL_INSERT_RANGE
               : m == "collapse-keep" ? FALLOC_FL_COLLAPSE_RANGE | FALLOC_FL_KEEP_SIZE
                                      : -1;
    if (mode < 0) return 2;
    int fd = open(argv[2], argc == 7 ? O_RDONLY : O_RDWR);
    if (fd < 0) return report(-1);
    return report(fallocate(fd, mode, static_cast<off_t>(num(argv[4])), static_cast<off_t>(num(argv[5]))));
  }
  fprintf(stderr, "remap_tool: bad arguments\n");
  return 2;
}
