// The crash-state explorer's workloads (tests/crash/README in docs/reliability.md): a text file of
// filesystem operations, one per line, run through the Filesystem API in one process, and the
// logical state of the filesystem that each operation leaves behind.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "fs/filesystem.h"
#include "common/result.h"

namespace daxfs::crash {

struct Op {
  int line = 0;
  std::string text;               // as written, for reports
  std::vector<std::string> args;  // args[0] is the verb
};

// Parses a workload; an unknown verb or a wrong argument count is an error naming the line.
Result<std::vector<Op>> parse_workload(const std::string& text, std::string& why);

// What a recovered filesystem is compared with: every name and what it holds. Times are left
// out (they are not part of an operation's atomic effect that a user can rely on).
struct Node {
  uint32_t mode = 0, uid = 0, gid = 0;
  uint64_t size = 0, nlink = 0, blocks = 0;
  std::string data;    // a regular file's bytes, a symlink's target
  std::map<std::string, std::string> xattrs;
  bool operator==(const Node&) const = default;
};
using Snapshot = std::map<std::string, Node>;  // by path ("/" for the root)

// Reads the whole tree; an error (EIO, a loop) is a finding of its own.
Result<Snapshot> snapshot(fs::Filesystem& fs, std::string& why);

// How much of an operation may show after a crash in its middle.
enum class Atomicity {
  kAll,      // all or nothing: the state before it or the state after it
  kDataMix,  // its metadata all or nothing; the bytes it stores in place into `path` may be any mix
             // of old and new 8-byte words (as write(2) and DAX stores on any DAX filesystem)
};

// Runs the workload's operations; the device is the one under `fs` (for DAX stores).
class Runner {
 public:
  Runner(fs::Filesystem& fs, const pmemdev::Device& device) : fs_(fs), dev_(device) {}
  ~Runner();
  // Runs `op`; its error (an operation the workload expects to fail writes "!" before the verb)
  // is returned as the one-line `why`. `atomicity`/`path`: what a crash inside it may show.
  Status run(const Op& op, Atomicity& atomicity, std::string& path, std::string& why);
  // Drops every reference the workload still holds (its open files).
  void close_all();

 private:
  Result<uint64_t> resolve(const std::string& path, bool follow_last = true);
  Result<std::pair<uint64_t, std::string>> parent_of(const std::string& path);
  fs::Filesystem& fs_;
  const pmemdev::Device& dev_;
  std::multimap<std::string, uint64_t> open_;  // path as opened -> held inode
};

// The bytes a workload writes: `length` bytes of a pattern that differs by seed and offset.
std::string pattern(uint64_t seed, uint64_t offset, uint64_t length);

}  // namespace daxfs::crash
