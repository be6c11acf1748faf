// Wall-clock seconds since a steady-clock time point: the stage times of runs and reports.
#pragma once

#include <chrono>

namespace qathw::util {

inline double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace qathw::util
