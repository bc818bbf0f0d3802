// The holder interface: how the device tells its one holder (the filesystem) about media
// failures, as Linux's dax_holder_operations->notify_failure does. Implementations are called
// from the device's notifier thread and must be thread-safe against their own callers.
#pragma once

#include <cstdint>

namespace daxfs::pmemdev {

inline constexpr uint64_t kPageSize = 4096;

enum class FailureKind : uint32_t {
  kMemoryFailure = 0,  // poison appeared in [offset, offset + length)
  kPreRemove = 1,      // the device is about to go away (Linux MF_MEM_PRE_REMOVE)
};

const char* failure_kind_name(FailureKind kind);

class Holder {
 public:
  virtual ~Holder() = default;
  // A memory failure is delivered once per 4 KiB page (offset page-aligned, length 4096);
  // a pre-removal once, for the whole device. Runs on the notifier thread; may block briefly.
  virtual void notify_failure(uint64_t offset, uint64_t length, FailureKind kind) = 0;
};

}  // namespace daxfs::pmemdev
