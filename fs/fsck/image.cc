// Image: block reads with a private copy-on-write overlay (see image.h).
#include "fs/fsck/image.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>

namespace daxfs::fsck {

const char* Image::block(uint64_t b) const {
  if (b >= blocks_) {
    fprintf(stderr, "fsck.daxfs: BUG: block %llu read past the device (%llu blocks)\n",
            static_cast<unsigned long long>(b), static_cast<unsigned long long>(blocks_));
    abort();
  }
  auto it = overlay_.find(b);
  if (it != overlay_.end()) return it->second.data();
  return dev_.base() + b * fs::kBlockSize;
}

bool Image::read(uint64_t offset, void* out, uint64_t length) const {
  uint64_t size = blocks_ * fs::kBlockSize;
  if (offset > size || length > size - offset) return false;
  char* dst = static_cast<char*>(out);
  while (length > 0) {
    uint64_t b = offset / fs::kBlockSize, in = offset % fs::kBlockSize;
    uint64_t n = std::min<uint64_t>(length, fs::kBlockSize - in);
    memcpy(dst, block(b) + in, n);
    dst += n, offset += n, length -= n;
  }
  return true;
}

bool Image::overlay(uint64_t offset, const void* data, uint64_t length) {
  uint64_t size = blocks_ * fs::kBlockSize;
  if (offset > size || length > size - offset) return false;
  const char* src = static_cast<const char*>(data);
  while (length > 0) {
    uint64_t b = offset / fs::kBlockSize, in = offset % fs::kBlockSize;
    uint64_t n = std::min<uint64_t>(length, fs::kBlockSize - in);
    auto [it, fresh] = overlay_.try_emplace(b);
    if (fresh) it->second.assign(dev_.base() + b * fs::kBlockSize, dev_.base() + (b + 1) * fs::kBlockSize);
    memcpy(it->second.data() + in, src, n);
    src += n, offset += n, length -= n;
  }
  return true;
}

}  // namespace daxfs::fsck
