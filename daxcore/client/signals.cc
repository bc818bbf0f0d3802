// The client's SIGSEGV handler: installed once, kept installed (the shim records the program's
// own sigaction(SIGSEGV) instead of letting it replace ours) and chained to the program's
// handler for every fault that is not a DAX fault.
#include <dlfcn.h>
#include <pthread.h>
#include <sched.h>
#include <string.h>

#include <atomic>

#include "daxcore/client/client_internal.h"

namespace daxfs::client {

namespace {

using SigactionFn = int (*)(int, const struct sigaction*, struct sigaction*);
struct sigaction g_program;  // the program's SIGSEGV disposition, under g_program_lock
std::atomic<int> g_program_lock{0};

// g_program is read by the handler and written by the shim's sigaction.
class ProgramLock : public SignalSafeLock {
 public:
  ProgramLock() : SignalSafeLock(g_program_lock) {}
};

SigactionFn real_sigaction() {
  static SigactionFn fn = reinterpret_cast<SigactionFn>(dlsym(RTLD_NEXT, "sigaction"));
  return fn ? fn : &::sigaction;
}

void chain(int sig, siginfo_t* si, void* ucontext) {
  struct sigaction prog;
  {
    ProgramLock lock;
    prog = g_program;
  }
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
  // SA_NODEFER: a handler of the program's that runs while a thread waits for a DAX fault (a
  // SIGALRM, say) may touch DAX memory itself and fault again.
  sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_RESTART | SA_NODEFER;
  sigemptyset(&sa.sa_mask);
  if (real_sigaction()(SIGSEGV, &sa, &old) == 0) {
    ProgramLock lock;
    if (!(old.sa_flags & SA_SIGINFO) || old.sa_sigaction != on_segv) g_program = old;
  }
}

int set_program_handler(const struct sigaction* act, struct sigaction* old) {
  ProgramLock lock;
  if (old) *old = g_program;
  if (act) g_program = *act;
  return 0;
}

}  // namespace daxfs::client
