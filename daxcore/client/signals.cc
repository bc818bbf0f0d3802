// The client's SIGSEGV handler: installed once, kept installed (the shim records the program's
// own sigaction(SIGSEGV) instead of letting it replace ours) and chained to the program's
// handler for every fault that is not a DAX fault.
#include <dlfcn.h>
#include <string.h>

#include <atomic>

#include "daxcore/client/client_internal.h"

namespace daxfs::client {

namespace {

using SigactionFn = int (*)(int, const struct sigaction*, struct sigaction*);
struct sigaction g_program;  // the program's SIGSEGV disposition
std::atomic<bool> g_installed{false};

SigactionFn real_sigaction() {
  static SigactionFn fn = reinterpret_cast<SigactionFn>(dlsym(RTLD_NEXT, "sigaction"));
  return fn ? fn : &::sigaction;
}

void chain(int sig, siginfo_t* si, void* ucontext) {
  struct sigaction prog = g_program;
  if (prog.sa_flags & SA_SIGINFO) {
    if (prog.sa_sigaction) return prog.sa_sigaction(sig, si, ucontext);
  } else if (prog.sa_handler != SIG_DFL && prog.sa_handler != SIG_IGN) {
    return prog.sa_handler(sig);
  }
  // Default (or ignored, which the kernel does not allow for a fault): die of the signal. The
  // faulting access runs again and faults with the default disposition.
  struct sigaction dfl;
  memset(&dfl, 0, sizeof dfl);
  dfl.sa_handler = SIG_DFL;
  real_sigaction()(sig, &dfl, nullptr);
}

void on_segv(int sig, siginfo_t* si, void* ucontext) { handle_fault_signal(sig, si, ucontext, chain); }

}  // namespace

int sys_sigaction(int sig, const struct sigaction* act, struct sigaction* old) {
  return real_sigaction()(sig, act, old);
}

void install_fault_handler() {
  struct sigaction sa, old;
  memset(&sa, 0, sizeof sa);
  sa.sa_sigaction = on_segv;
  sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_RESTART;
  sigemptyset(&sa.sa_mask);
  if (real_sigaction()(SIGSEGV, &sa, &old) == 0) {
    if (!(old.sa_flags & SA_SIGINFO) || old.sa_sigaction != on_segv) g_program = old;
    g_installed = true;
  }
}

int set_program_handler(const struct sigaction* act, struct sigaction* old) {
  if (old) *old = g_program;
  if (act) g_program = *act;
  return 0;
}

}  // namespace daxfs::client
