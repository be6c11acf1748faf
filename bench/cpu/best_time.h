// The benchmarks' timer: best of `trials` runs of `reps` calls (after one warm-up call), in ms per
// call. On a shared machine the minimum is the least noisy estimate.
#pragma once

#include <algorithm>
#include <chrono>
#include <functional>

inline double best_time_ms(int trials, int reps, const std::function<void()>& f) {
  f();
  double best = 1e300;
  for (int trial = 0; trial < trials; ++trial) {
    const auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < reps; ++i) f();
    best = std::min(best, std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count() / reps);
  }
  return best;
}
