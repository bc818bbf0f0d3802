// The filesystem's event counters (Filesystem::counters(), `daxfsctl stats`): relaxed atomics,
// bumped by whoever does the work (the filesystem, its Space, the Loader).
#pragma once

#include <atomic>
#include <cstdint>

namespace daxfs::fs {

struct Counters {
  std::atomic<uint64_t> transactions{0};
  std::atomic<uint64_t> reads{0}, writes{0};
  std::atomic<uint64_t> bytes_read{0}, bytes_written{0};
  std::atomic<uint64_t> blocks_allocated{0}, blocks_freed{0};
  std::atomic<uint64_t> poison_events{0}, metadata_rebuilt{0};
  std::atomic<uint64_t> recovered_entries{0}, orphans_freed{0}, post_eof_trimmed{0};
  std::atomic<uint64_t> clones{0}, dedupes{0}, cow_blocks{0}, refcount_overflow_copies{0};
};

}  // namespace daxfs::fs
