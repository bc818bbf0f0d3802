// futex wait/wake on a 32-bit word that may live in memory shared between processes (a shared
// file mapping or a shm segment): the doorbells of the device control file and, later, of the
// DAX registry. Header-only; thread- and process-safe as the futex syscall is.
#pragma once

#include <linux/futex.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <climits>
#include <cstdint>

namespace daxfs {

static_assert(sizeof(std::atomic<uint32_t>) == sizeof(uint32_t) && std::atomic<uint32_t>::is_always_lock_free);

// Not FUTEX_PRIVATE: the word may be shared with other processes, which wait on it too.
inline long futex_call(std::atomic<uint32_t>* word, int op, uint32_t value, const timespec* timeout) {
  return syscall(SYS_futex, reinterpret_cast<uint32_t*>(word), op, value, timeout, nullptr, 0);
}

// Wakes every waiter on `word` (after the caller changed it).
inline void futex_wake_all(std::atomic<uint32_t>* word) { futex_call(word, FUTEX_WAKE, INT_MAX, nullptr); }

// Sleeps while `word` still holds `seen`, at most `timeout_ms`; returns early on a wake-up, a
// signal or a spurious wake-up: callers re-check their condition.
inline void futex_wait_ms(std::atomic<uint32_t>* word, uint32_t seen, int timeout_ms) {
  timespec ts{timeout_ms / 1000, (timeout_ms % 1000) * 1000000L};
  futex_call(word, FUTEX_WAIT, seen, &ts);
}

}  // namespace daxfs
