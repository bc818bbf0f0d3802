// Guarded mapped access and MappedFile (mapped_file.h).
#include "tests/load/mapped_file.h"

#include <limits.h>
#include <setjmp.h>
#include <signal.h>
#include <sys/stat.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "tests/dax/proc_maps.h"

namespace daxfs::load {
namespace {

sigjmp_buf g_jump;
volatile sig_atomic_t g_armed = 0;
volatile int g_code = 0;

void on_sigbus(int, siginfo_t* si, void*) {
  if (g_armed) {
    g_armed = 0;
    g_code = si->si_code;
    siglongjmp(g_jump, 1);
  }
  char buf[96];
  int n = snprintf(buf, sizeof buf, "load: unexpected sigbus %d %p\n", si->si_code, si->si_addr);
  (void)!write(2, buf, static_cast<size_t>(n));
  _exit(7);
}

}  // namespace

void install_sigbus_handler() {
  struct sigaction sa{};
  sa.sa_sigaction = on_sigbus;
  sa.sa_flags = SA_SIGINFO | SA_NODEFER;
  sigaction(SIGBUS, &sa, nullptr);
}

int guarded_copy(void* dst, const void* src, size_t length) {
  if (sigsetjmp(g_jump, 1) != 0) return g_code;
  g_armed = 1;
  std::atomic_signal_fence(std::memory_order_seq_cst);
  // volatile byte loops: memcpy may be inlined into wide accesses the compiler could move
  // outside the armed window.
  auto* d = static_cast<volatile char*>(dst);
  auto* s = static_cast<const volatile char*>(src);
  for (size_t i = 0; i < length; i++) d[i] = s[i];
  std::atomic_signal_fence(std::memory_order_seq_cst);
  g_armed = 0;
  return 0;
}

bool MappedFile::remap(bool* dax) {
  unmap();
  *dax = false;
  if (data.empty()) return true;
  size_t want = (data.size() + kPage - 1) / kPage * kPage;
  void* p = mmap(nullptr, want, PROT_READ | PROT_WRITE, MAP_SHARED, fd.fd, 0);
  if (p == MAP_FAILED) return false;
  map = static_cast<char*>(p);
  span = want;
  char real[PATH_MAX];
  auto backing = daxfs::test::mapping_path(map);
  *dax = realpath(path.c_str(), real) && backing && !backing->empty() && *backing != real;
  return true;
}

std::unique_ptr<MappedFile> create_mapped(const std::string& path, std::string data, const char** op) {
  auto f = std::make_unique<MappedFile>(path, open(path.c_str(), O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC, 0644));
  *op = "create";
  if (!f->fd.ok()) return nullptr;
  f->data = std::move(data);
  *op = "write";
  if (!write_all(f->fd.fd, f->data.data(), f->data.size(), 0)) return nullptr;
  *op = "mmap";
  bool dax = false;
  if (!f->remap(&dax)) return nullptr;
  if (!dax) {
    errno = 0;
    return nullptr;
  }
  return f;
}

}  // namespace daxfs::load
