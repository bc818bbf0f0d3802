// A process-shared robust mutex (pthread_mutex_t in shared memory): a holder that dies leaves it
// to the next locker, which is told so and must find the protected data consistent (update
// protocols under it are written to survive a kill at any point). Header-only.
#pragma once

#include <pthread.h>

#include <cerrno>

namespace daxfs {

// Initialises a mutex in zeroed shared memory (once, by whoever creates the memory).
inline void init_robust_mutex(pthread_mutex_t* mutex) {
  pthread_mutexattr_t attr;
  pthread_mutexattr_init(&attr);
  pthread_mutexattr_setpshared(&attr, PTHREAD_PROCESS_SHARED);
  pthread_mutexattr_setrobust(&attr, PTHREAD_MUTEX_ROBUST);
  pthread_mutex_init(mutex, &attr);
  pthread_mutexattr_destroy(&attr);
}

// Scoped hold. owner_died(): the previous holder died holding it (the mutex is made consistent
// again here; the caller decides whether the data needs repair).
class RobustLock {
 public:
  explicit RobustLock(pthread_mutex_t* mutex) : mutex_(mutex) {
    int rc = pthread_mutex_lock(mutex_);
    owner_died_ = rc == EOWNERDEAD;
    if (owner_died_) pthread_mutex_consistent(mutex_);
  }
  ~RobustLock() { pthread_mutex_unlock(mutex_); }
  RobustLock(const RobustLock&) = delete;
  RobustLock& operator=(const RobustLock&) = delete;
  bool owner_died() const { return owner_died_; }

 private:
  pthread_mutex_t* mutex_;
  bool owner_died_ = false;
};

}  // namespace daxfs
