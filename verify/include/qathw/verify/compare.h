// Cross-engine comparison: every layer's output integers of every sample, exactly, and the first
// point where two engines part.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "qathw/training/int_engine.h"

namespace qathw::verify {

// Where two engines first differ: sample, then layer, then element (in that order of search).
struct Divergence {
  std::string reference, candidate;  // engine names
  std::size_t sample = 0, layer = 0, element = 0;
  std::int64_t reference_value = 0, candidate_value = 0;
  std::string shape;  // set when the layer shapes themselves differ
};

struct Comparison {
  std::size_t samples = 0;
  std::size_t mismatching_samples = 0;
  std::optional<Divergence> first;
};

// Compares the per-sample layer outputs of two engines over the first `samples` samples.
Comparison compare(const std::string& reference, const std::vector<training::LayerOutputs>& a,
                   const std::string& candidate, const std::vector<training::LayerOutputs>& b);

nlohmann::json to_json(const Comparison& c);
std::string describe(const Divergence& d);

}  // namespace qathw::verify
