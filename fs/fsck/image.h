// The device as fsck sees it: its whole blocks, read straight from the mapping, under an optional
// private overlay. `fsck.daxfs -n` replays a committed journal transaction into the overlay, so
// the check sees what a mount would see without writing a byte of the media.
// Not thread-safe (one checker at a time).
#pragma once

#include <cstdint>
#include <cstring>
#include <unordered_map>
#include <vector>

#include "fs/format.h"
#include "pmemdev/device.h"

namespace daxfs::fsck {

class Image {
 public:
  // `device` must stay open and mapped for the Image's lifetime.
  explicit Image(const pmemdev::Device& device) : dev_(device), blocks_(device.size() / fs::kBlockSize) {}

  const pmemdev::Device& device() const { return dev_; }
  // Whole blocks on the device (a trailing partial block is not part of any filesystem).
  uint64_t blocks() const { return blocks_; }
  // The 4 KiB of block `b` (overlay first). `b` must be < blocks(): every caller validates a
  // block number read from the media before asking for it, so a bad one here is a bug (abort).
  const char* block(uint64_t b) const;
  // Copies `length` bytes at device byte `offset` into `out`; false (nothing copied) when the
  // range is not inside the device's whole blocks.
  bool read(uint64_t offset, void* out, uint64_t length) const;
  template <typename T>
  bool read_obj(uint64_t offset, T& out) const {
    return read(offset, &out, sizeof(T));
  }
  // Writes into the private overlay, never the media; false when out of range.
  bool overlay(uint64_t offset, const void* data, uint64_t length);
  bool has_overlay() const { return !overlay_.empty(); }

 private:
  const pmemdev::Device& dev_;
  uint64_t blocks_;
  // block -> private copy; bounded by the journal's size (the only thing written into it).
  std::unordered_map<uint64_t, std::vector<char>> overlay_;
};

}  // namespace daxfs::fsck
