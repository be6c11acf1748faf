// Seeded randomness for property tests: every failure message carries the seed.
#pragma once

#include <cstdint>
#include <cstdlib>
#include <random>
#include <string>

namespace qathw::test {

// The seed is QATHW_TEST_SEED when set (to replay a failure), else a fixed default.
inline std::uint64_t test_seed(std::uint64_t fallback = 20261124) {
  const char* env = std::getenv("QATHW_TEST_SEED");
  return env ? std::strtoull(env, nullptr, 10) : fallback;
}

inline std::string seed_note(std::uint64_t seed) {
  return "seed " + std::to_string(seed) + " (replay with QATHW_TEST_SEED=" + std::to_string(seed) + ")";
}

}  // namespace qathw::test
