// A fake of the filesystem's side of the DAX seam (daxcore/files.h) for tests of the DAX service
// without fs/ code: tests/dax/service_test.cc and the dax_protocol fuzz harness
// (tests/fuzz/fuzz_dax_protocol.cc). Thread-safe (one mutex): the service calls it from its
// session threads.
#pragma once

#include <functional>
#include <map>
#include <mutex>
#include <utility>

#include "daxcore/files.h"

namespace daxfs::test {

// A file system of one kind of file: ino -> size and a run of blocks at a fixed device address
// (written), or nothing (a hole). Counts holds; a hook runs inside iomap_begin.
class FakeFiles : public dax::DaxFiles {
 public:
  static constexpr uint64_t kB = 4096;
  struct File {
    uint64_t size = 0;
    uint64_t address = dax::kNoAddress;  // device byte of file offset 0; kNoAddress: all hole
    // Beyond the basic fake (all default to the basic behaviour): the blocks are unwritten
    // (reported kUnwritten), `flags` (kIomapShared, kIomapPoisoned) are reported on every
    // answer, and a begin with kIomapWrite maps the range at `write_address` (an allocation or
    // a copy-on-write target: kMapped, not shared) when that is set.
    bool unwritten = false;
    uint32_t flags = 0;
    uint64_t write_address = dax::kNoAddress;
  };
  std::mutex mu;
  std::map<uint64_t, File> files;
  std::map<uint64_t, int> holds;
  std::function<void()> in_begin;  // runs once, inside the next iomap_begin: set by on_next_begin

  // Sets in_begin under the mutex: the service thread reads it, and the request that makes it do
  // so reaches it through shared memory, an ordering ThreadSanitizer cannot see.
  void on_next_begin(std::function<void()> hook) {
    std::lock_guard lock(mu);
    in_begin = std::move(hook);
  }

  Result<dax::IomapPair> iomap_begin(uint64_t ino, uint64_t offset, uint64_t length, uint32_t ops) override {
    std::function<void()> hook;
    {
      std::lock_guard lock(mu);
      hook = std::exchange(in_begin, nullptr);
    }
    if (hook) hook();
    std::lock_guard lock(mu);
    auto it = files.find(ino);
    if (it == files.end()) return daxfs::error(ENOENT);
    if (ops & dax::kIomapFault) {  // a fault stops at EOF (rounded up to a page)
      uint64_t eof = (it->second.size + kB * 4 - 1) / (kB * 4) * (kB * 4);
      if (offset >= eof) return daxfs::error(ENXIO);
      length = std::min(length, eof - offset);
    }
    dax::Iomap m;
    m.offset = offset;
    m.length = length;
    if ((ops & dax::kIomapWrite) && it->second.write_address != dax::kNoAddress) {
      m.type = dax::IomapType::kMapped;
      m.address = it->second.write_address + offset;
      m.flags = dax::kIomapNew;
      return dax::IomapPair{m, {}};
    }
    if (it->second.address != dax::kNoAddress) {
      m.type = it->second.unwritten ? dax::IomapType::kUnwritten : dax::IomapType::kMapped;
      m.address = it->second.address + offset;
    }
    m.flags = it->second.flags;
    return dax::IomapPair{m, {}};
  }
  Status iomap_end(uint64_t, const dax::Iomap&, uint64_t, uint32_t) override { return {}; }
  bool dax_file(uint64_t) override { return true; }
  Status hold_inode(uint64_t ino) override {
    std::lock_guard lock(mu);
    holds[ino]++;
    return {};
  }
  void release_inode(uint64_t ino) override {
    std::lock_guard lock(mu);
    holds[ino]--;
  }
  int held(uint64_t ino) {
    std::lock_guard lock(mu);
    return holds[ino];
  }
};

}  // namespace daxfs::test
