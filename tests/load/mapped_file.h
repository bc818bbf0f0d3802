// A worker's file held mapped with plain mmap(MAP_SHARED) (a DAX mapping under daxfsctl run),
// with its model, and loads/stores that survive a SIGBUS: the signal jumps back and the caller
// gets its si_code. For the mapped and victim workers; one thread per process.
#pragma once

#include <sys/mman.h>

#include <algorithm>
#include <cerrno>
#include <memory>
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

// Creates `path` (it must not exist) holding `data`, and maps it whole. The whole file is
// written, so every page is a device page under daxfsctl run: a mapping that is not DAX fails.
// On failure: nullptr, the failing step in *op ("create", "write", "mmap") and errno (0 for a
// mapping that is not DAX).
std::unique_ptr<MappedFile> create_mapped(const std::string& path, std::string data, const char** op);

// A worker of mapped files (the mapped and the victim workers).
class MappedWorkerBase : protected WorkerBase {
 protected:
  using WorkerBase::WorkerBase;
  // Stores up to `max_length` random bytes at a random offset through the mapping, msyncs the
  // pages stored to, and updates the model. A SIGBUS or an msync error is unexpected.
  void store(MappedFile& f, size_t max_length) {
    size_t offset = rng_.below(f.data.size());
    size_t length = std::min<size_t>(1 + rng_.below(max_length), f.data.size() - offset);
    std::string bytes = rng_.bytes(length);
    if (int code = guarded_copy(f.map + offset, bytes.data(), length))
      return fail("store", f.path, 0, "SIGBUS code " + std::to_string(code));
    size_t page = offset / kPage * kPage;
    if (msync(f.map + page, offset + length - page, MS_SYNC) != 0) return fail("msync", f.path, errno);
    f.data.replace(offset, length, bytes);
    count("mapped-store");
  }
};

}  // namespace daxfs::load
