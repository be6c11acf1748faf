// Cross-engine comparison: every op's output integers of every sample, exactly, and the first
// point where two engines part.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "qathw/model/graph.h"

namespace qathw::verify {

// Where two engines first differ: sample, then op (in graph order), then element.
struct Divergence {
  std::string reference, candidate;  // engine names
  std::size_t sample = 0, op = 0, element = 0;
  std::string op_name;
  std::int64_t reference_value = 0, candidate_value = 0;
  std::string shape;  // set when the output shapes themselves differ
};

struct Comparison {
  std::size_t samples = 0;
  std::size_t mismatching_samples = 0;
  std::vector<std::string> ops;  // the ops both engines observe, compared in every sample
  std::optional<Divergence> first;
};

// Compares the per-sample op outputs of two engines over their common samples, on every op both
// observe (an engine leaves an op's entry empty when it does not observe it). Two engines with no
// op in common, or one that observes the graph's output and one that does not, differ in shape.
Comparison compare(const model::Graph& graph, const std::string& reference, const std::vector<model::OpOutputs>& a,
                   const std::string& candidate, const std::vector<model::OpOutputs>& b);

nlohmann::json to_json(const Comparison& c);
std::string describe(const Divergence& d);

}  // namespace qathw::verify
