// Whole-buffer I/O and the daxfs reflink ioctls for the load test's workers (workers.h). The
// FUSE kernel forwards neither FICLONERANGE nor FIDEDUPERANGE, so clones go through the daemon's
// own ioctls (daxcore/daxfs_ioctl.h), naming the source by inode and generation as daxfsctl does.
#include <errno.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>

#include "daxcore/daxfs_ioctl.h"
#include "tests/load/workers.h"

namespace daxfs::load {

bool write_all(int fd, const char* data, size_t length, off_t offset) {
  while (length > 0) {
    ssize_t n = pwrite(fd, data, length, offset);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    data += n;
    length -= static_cast<size_t>(n);
    offset += n;
  }
  return true;
}

bool read_all(int fd, char* data, size_t length, off_t offset) {
  while (length > 0) {
    ssize_t n = pread(fd, data, length, offset);
    if (n < 0 && errno == EINTR) continue;
    if (n == 0) errno = 0;
    if (n <= 0) return false;
    data += n;
    length -= static_cast<size_t>(n);
    offset += n;
  }
  return true;
}

size_t first_difference(const std::string& got, const std::string& want) {
  size_t n = std::min(got.size(), want.size());
  for (size_t i = 0; i < n; i++)
    if (got[i] != want[i]) return i;
  return got.size() == want.size() ? std::string::npos : n;
}

namespace {

int remap(int src_fd, int dst_fd, daxfs_clone_range& args, unsigned long request) {
  struct stat st;
  if (fstat(src_fd, &st) != 0) return errno;
  long generation = 0;
  if (ioctl(src_fd, FS_IOC_GETVERSION, &generation) != 0) return errno;
  args.src_ino = st.st_ino;
  args.src_generation = static_cast<uint64_t>(generation);
  return ioctl(dst_fd, request, &args) == 0 ? 0 : errno;
}

}  // namespace

int clone_range(int src_fd, int dst_fd, uint64_t src_offset, uint64_t length, uint64_t dst_offset) {
  daxfs_clone_range args{};
  args.src_offset = src_offset;
  args.src_length = length;
  args.dest_offset = dst_offset;
  return remap(src_fd, dst_fd, args, DAXFS_IOC_CLONE_RANGE);
}

int dedupe_range(int src_fd, int dst_fd, uint64_t src_offset, uint64_t length, uint64_t dst_offset, bool* differs) {
  daxfs_clone_range args{};
  args.src_offset = src_offset;
  args.src_length = length;
  args.dest_offset = dst_offset;
  int e = remap(src_fd, dst_fd, args, DAXFS_IOC_DEDUPE_RANGE);
  *differs = args.status == 1;
  return e;
}

}  // namespace daxfs::load
