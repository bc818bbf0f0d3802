// See init_flags.h.
#include "fs/fuse/init_flags.h"

#include <linux/fuse.h>
#include <sys/uio.h>
#include <unistd.h>

#include <atomic>
#include <cstddef>
#include <cstring>

namespace daxfs::fuse {

namespace {

constexpr uint64_t kDirectIoAllowMmap = 1ULL << 36;  // FUSE_DIRECT_IO_ALLOW_MMAP (7.39)

std::atomic<uint64_t> init_unique{0};    // the INIT request's id, while its reply is pending
std::atomic<bool> kernel_offers{false};  // the kernel sent the flag in INIT
std::atomic<bool> allowed{false};

ssize_t read_hook(int fd, void* buf, size_t len, void*) {
  ssize_t n = read(fd, buf, len);
  if (n < static_cast<ssize_t>(sizeof(fuse_in_header) + offsetof(fuse_init_in, flags2) + 4)) return n;
  fuse_in_header h;
  memcpy(&h, buf, sizeof h);
  if (h.opcode != FUSE_INIT) return n;
  fuse_init_in in;
  memset(&in, 0, sizeof in);
  memcpy(&in, static_cast<char*>(buf) + sizeof h, std::min(sizeof in, static_cast<size_t>(n) - sizeof h));
  bool ext = in.flags & FUSE_INIT_EXT;
  kernel_offers = ext && (in.flags2 & (kDirectIoAllowMmap >> 32));
  init_unique = h.unique;
  return n;
}

ssize_t writev_hook(int fd, struct iovec* iov, int count, void*) {
  uint64_t unique = init_unique.load();
  if (unique != 0 && count >= 2 && iov[0].iov_len >= sizeof(fuse_out_header)) {
    fuse_out_header h;
    memcpy(&h, iov[0].iov_base, sizeof h);
    size_t need = offsetof(fuse_init_out, flags2) + sizeof(uint32_t);
    if (h.unique == unique && h.error == 0 && iov[1].iov_len >= need) {
      init_unique = 0;
      auto* out = static_cast<fuse_init_out*>(iov[1].iov_base);
      if (kernel_offers && (out->flags & FUSE_INIT_EXT)) {
        out->flags2 |= static_cast<uint32_t>(kDirectIoAllowMmap >> 32);
        allowed = true;
      }
    }
  }
  return writev(fd, iov, count);
}

}  // namespace

bool allow_direct_io_mmap(fuse_session* se) {
  fuse_custom_io io{};
  io.read = read_hook;
  io.writev = writev_hook;
  return fuse_session_custom_io(se, &io, fuse_session_fd(se)) == 0;
}

bool direct_io_mmap_allowed() { return allowed.load(); }

}  // namespace daxfs::fuse
