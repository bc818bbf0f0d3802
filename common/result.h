// Result<T>: a value or a positive errno, the common error currency of every layer
// (fuse_reply_err() takes a positive errno). Header-only; no shared state.
#pragma once

#include <cassert>
#include <cerrno>
#include <optional>
#include <type_traits>
#include <utility>
#include <variant>

namespace daxfs {

struct Errno {
  int value;
};

inline Errno error(int e) { return Errno{e}; }

template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}  // NOLINT: implicit by design.
  Result(Errno e) : v_(e) { assert(e.value > 0); }  // NOLINT
  bool ok() const { return v_.index() == 0; }
  explicit operator bool() const { return ok(); }
  int error() const { return ok() ? 0 : std::get<1>(v_).value; }
  T& value() & { assert(ok()); return std::get<0>(v_); }
  const T& value() const& { assert(ok()); return std::get<0>(v_); }
  T&& value() && { assert(ok()); return std::get<0>(std::move(v_)); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }

 private:
  std::variant<T, Errno> v_;
};

// Result<void>: success, or an errno.
template <>
class [[nodiscard]] Result<void> {
 public:
  Result() = default;
  Result(Errno e) : err_(e.value) { assert(e.value > 0); }  // NOLINT
  bool ok() const { return err_ == 0; }
  explicit operator bool() const { return ok(); }
  int error() const { return err_; }

 private:
  int err_ = 0;
};

using Status = Result<void>;

inline Status ok_status() { return {}; }

}  // namespace daxfs

// TRY(expr): evaluate a Result; on error return its errno from the enclosing function.
#define DAXFS_CONCAT_(a, b) a##b
#define DAXFS_CONCAT(a, b) DAXFS_CONCAT_(a, b)
#define TRY(expr)                                                        \
  ({                                                                     \
    auto DAXFS_CONCAT(_try_, __LINE__) = (expr);                         \
    if (!DAXFS_CONCAT(_try_, __LINE__))                                  \
      return ::daxfs::Errno{DAXFS_CONCAT(_try_, __LINE__).error()};      \
    ::daxfs::detail::unwrap(std::move(DAXFS_CONCAT(_try_, __LINE__)));   \
  })

namespace daxfs::detail {
template <typename T>
T unwrap(Result<T>&& r) { return std::move(r).value(); }
inline void unwrap(Result<void>&&) {}
}  // namespace daxfs::detail
