// A scope guard that runs its function at scope exit unless disarmed: the rollback of a
// multi-step update that succeeded (SerenityOS ArmedScopeGuard, absl::Cleanup::Cancel()).
// Header-only; not thread-safe (one owner).
#pragma once

#include <utility>

namespace daxfs {

template <typename F>
class [[nodiscard]] ScopeGuard {
 public:
  explicit ScopeGuard(F fn) : fn_(std::move(fn)) {}
  ~ScopeGuard() {
    if (armed_) fn_();
  }
  ScopeGuard(const ScopeGuard&) = delete;
  ScopeGuard& operator=(const ScopeGuard&) = delete;
  void disarm() { armed_ = false; }

 private:
  F fn_;
  bool armed_ = true;
};

}  // namespace daxfs
