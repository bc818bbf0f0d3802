// What backs an address of this process, from /proc/self/maps: the path of the mapped file, ""
// for anonymous memory, nullopt when nothing is mapped there. For the DAX test programs, which
// tell a DAX mapping (the device file, or the layer's zero pages) from the kernel's (the file).
#pragma once

#include <climits>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <optional>
#include <string>

namespace daxfs::test {

inline std::optional<std::string> mapping_path(const void* addr) {
  std::ifstream maps("/proc/self/maps");
  std::string line;
  uintptr_t a = reinterpret_cast<uintptr_t>(addr);
  while (std::getline(maps, line)) {
    unsigned long lo, hi;
    if (sscanf(line.c_str(), "%lx-%lx", &lo, &hi) != 2 || a < lo || a >= hi) continue;
    size_t slash = line.find('/');
    return slash == std::string::npos ? std::string() : line.substr(slash);
  }
  return std::nullopt;
}

// What backs `addr`, a mapping of `file`: "dax" (the device file, a path other than the mapped
// file's), "kernel" (the file itself: the page cache), "anonymous", or "?" when unknown.
inline std::string backing(const void* addr, const char* file) {
  char real[PATH_MAX];
  auto path = mapping_path(addr);
  if (!realpath(file, real) || !path) return "?";
  if (path->empty()) return "anonymous";
  return *path == real ? "kernel" : "dax";
}

}  // namespace daxfs::test
