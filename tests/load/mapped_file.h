// A worker's file held mapped with plain mmap(MAP_SHARED) (a DAX mapping under daxfsctl run),
// with its model, and loads/stores that survive a SIGBUS: the signal jumps back and the caller
// gets its si_code. For the mapped and victim workers; one thread per process.
#pragma once

#include <sys/mman.h>

#include <string>

#include "tests/load/workers.h"

namespace daxfs::load {

constexpr size_t kPage = 4096;

// Installs the SIGBUS handler that guarded_copy's jump relies on. A SIGBUS outside a guarded
// copy prints "sigbus CODE ADDR" and ends the process with status 7.
void install_sigbus_handler();

// memcpy with SIGBUS caught: 0, or the si_code of the SIGBUS that stopped it (the copy may be
// partly done then).
int guarded_copy(void* dst, const void* src, size_t length);

struct MappedFile {
  std::string path;
  std::string data;  // the model
  Fd fd;
  char* map = nullptr;
  size_t span = 0;  // mapped bytes: the size rounded up to pages (0: nothing mapped)

  MappedFile(std::string p, int f) : path(std::move(p)), fd(f) {}
  ~MappedFile() { unmap(); }
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  // Maps the whole file (read-write); false with errno on failure. *dax tells whether the
  // device file (not the file itself) backs the mapping.
  bool remap(bool* dax);
  void unmap() {
    if (map) munmap(map, span);
    map = nullptr;
    span = 0;
  }
};

}  // namespace daxfs::load
