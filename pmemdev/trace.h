// Power-fail emulation. A PersistTrace attached to a Device (Device::set_trace) records every
// crash-visible write the device is asked for, in program order: each store (its bytes), each
// flush (CLWB of a range's cache lines) and each fence (SFENCE: drain). PowerFail replays such a
// trace over the image it started from and materialises the device "as if power failed here":
//   - a store is durable once a flush of its cache line and then a fence came after it;
//   - every other store is in flight: each cache line keeps, independently, a prefix of its
//     in-flight stores (a line is written back whole, and stores reach it in program order);
//   - the first store a line loses may tear at 8 bytes: a random subset of its aligned 8-byte
//     words reached the media (non-temporal stores drain through write-combining buffers;
//     only an aligned 8-byte store is atomic).
// This is the model of the pmem crash checkers (Yat, Vinter, Chipmunk) and of x86 ADR platforms,
// where the CPU caches are lost at power failure and the memory controller's queue is not.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <mutex>
#include <set>
#include <vector>

namespace daxfs::pmemdev {

inline constexpr uint64_t kCacheLine = 64;

struct TraceEvent {
  enum class Kind : uint8_t { kStore, kFlush, kFence };
  Kind kind;
  uint64_t offset = 0, length = 0;  // kStore, kFlush: the device range
  uint64_t data = 0;                // kStore: where its bytes start in the trace's byte log
};

// Thread-safe: the filesystem stores from several threads (the events are then in the order the
// trace took them, which is one legal order of a multi-threaded program's stores per line).
class PersistTrace {
 public:
  void store(uint64_t offset, const void* src, size_t length);
  void fill(uint64_t offset, int c, size_t length);  // a memset
  void flush(uint64_t offset, size_t length);
  void fence();

  size_t size() const;  // events so far
  uint64_t fences() const;
  // A copy of the events from `from` on, and the byte log (read once the traced work is done).
  std::vector<TraceEvent> events(size_t from = 0) const;
  const char* bytes(const TraceEvent& e) const { return bytes_.data() + e.data; }

 private:
  mutable std::mutex mu_;
  std::vector<TraceEvent> events_;
  std::vector<char> bytes_;
  uint64_t fences_ = 0;
};

// Replays a trace over the image it began on, forward only.
class PowerFail {
 public:
  // `image`: the device's bytes when tracing began.
  PowerFail(std::vector<char> image, const PersistTrace& trace);

  size_t position() const { return pos_; }  // events applied so far
  size_t events() const { return events_.size(); }
  const TraceEvent& event(size_t i) const { return events_[i]; }
  // Applies the events before `index` (>= position()).
  void advance_to(size_t index);

  // The in-flight cache lines at this position and how many stores each holds.
  size_t pending_lines() const { return pending_.size(); }

  enum class Choice {
    kNone,    // every in-flight line lost: only what was flushed and fenced
    kAll,     // every store reached the media (what the program saw)
    kRandom,  // each line all its stores, with a chance drawn per state, or else a random proper
              // prefix of them, the first one lost torn at random
  };
  // Writes the device image of a power failure at this position into `out` (the image's size).
  // kRandom draws from `seed`; returns false when the draw came out the same as kNone or kAll
  // (a state those choices already give).
  bool materialise(char* out, Choice choice, uint64_t seed) const;
  const std::vector<char>& durable() const { return durable_; }

 private:
  struct Line {
    std::vector<uint32_t> stores;  // event indices, in order
    size_t flushed = 0;            // how many of them a flush since the last fence captured
  };
  void apply(char* out, const TraceEvent& e, uint64_t line, const std::set<uint64_t>* words = nullptr) const;

  const PersistTrace& trace_;
  std::vector<TraceEvent> events_;
  std::vector<char> durable_;
  std::map<uint64_t, Line> pending_;  // by cache line number
  std::set<uint64_t> flushed_lines_;
  size_t pos_ = 0;
};

}  // namespace daxfs::pmemdev
