// Runs one body on several threads released at once and times them: what fsbench and
// parallel_bench share for their 1-thread vs 2-thread rows. Standard library only (fsbench builds
// with no project dependency).
#pragma once

#include <atomic>
#include <chrono>
#include <exception>
#include <thread>
#include <vector>

namespace daxfs::bench {

// Runs body(0), ..., body(n - 1) on n threads released together; returns the seconds from the
// release until the last one finished. The first failure is rethrown here.
template <typename Body>
double run_threads(int n, Body&& body) {
  std::vector<std::thread> threads;
  std::vector<std::exception_ptr> errors(static_cast<size_t>(n));
  std::atomic<int> ready{0};
  std::atomic<bool> go{false};
  for (int i = 0; i < n; ++i)
    threads.emplace_back([&, i] {
      ready++;
      while (!go.load()) std::this_thread::yield();
      try {
        body(i);
      } catch (...) {
        errors[static_cast<size_t>(i)] = std::current_exception();
      }
    });
  while (ready.load() < n) std::this_thread::yield();
  auto start = std::chrono::steady_clock::now();
  go = true;
  for (auto& t : threads) t.join();
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  for (auto& e : errors)
    if (e) std::rethrow_exception(e);
  return seconds;
}

}  // namespace daxfs::bench
