#include "qathw/verify/compare.h"

#include <algorithm>

namespace qathw::verify {
namespace {

// The first difference within one sample, if any, over the ops in `ops`.
std::optional<Divergence> first_in_sample(const model::Graph& g, const std::vector<std::size_t>& ops,
                                          const model::OpOutputs& a, const model::OpOutputs& b) {
  for (std::size_t op : ops) {
    Divergence d;
    d.op = op;
    d.op_name = g.ops[op].name;
    if (op >= a.size() || op >= b.size() || a[op].size() != b[op].size()) {
      d.shape = std::to_string(op < a.size() ? a[op].size() : 0) + " outputs vs " +
                std::to_string(op < b.size() ? b[op].size() : 0);
      return d;
    }
    const auto diff = std::mismatch(a[op].begin(), a[op].end(), b[op].begin());
    if (diff.first != a[op].end()) {
      d.element = static_cast<std::size_t>(diff.first - a[op].begin());
      d.reference_value = *diff.first;
      d.candidate_value = *diff.second;
      return d;
    }
  }
  return std::nullopt;
}

// The ops both engines observe in the first sample; every sample is then compared on them.
std::vector<std::size_t> common_ops(const model::Graph& g, const model::OpOutputs& a, const model::OpOutputs& b) {
  std::vector<std::size_t> ops;
  for (std::size_t op = 0; op < g.ops.size(); ++op)
    if (op < a.size() && op < b.size() && !a[op].empty() && !b[op].empty()) ops.push_back(op);
  // The graph's output is always compared: an engine that lacks it has the wrong shape.
  const std::size_t out = g.producer(g.output).value_or(g.ops.size() - 1);
  if (std::find(ops.begin(), ops.end(), out) == ops.end()) ops.push_back(out);
  return ops;
}

}  // namespace

Comparison compare(const model::Graph& g, const std::string& reference, const std::vector<model::OpOutputs>& a,
                   const std::string& candidate, const std::vector<model::OpOutputs>& b) {
  Comparison c;
  c.samples = std::min(a.size(), b.size());
  if (c.samples == 0 || g.ops.empty()) return c;
  const std::vector<std::size_t> ops = common_ops(g, a.front(), b.front());
  for (std::size_t op : ops) c.ops.push_back(g.ops[op].name);
  for (std::size_t i = 0; i < c.samples; ++i) {
    std::optional<Divergence> d = first_in_sample(g, ops, a[i], b[i]);
    if (!d) continue;
    ++c.mismatching_samples;
    if (!c.first) {
      d->reference = reference;
      d->candidate = candidate;
      d->sample = i;
      c.first = d;
    }
  }
  return c;
}

nlohmann::json to_json(const Comparison& c) {
  nlohmann::json j = {{"samples", c.samples},
                      {"mismatching_samples", c.mismatching_samples},
                      {"ops_compared", c.ops},
                      {"first_divergence", nullptr}};
  if (c.first) {
    const Divergence& d = *c.first;
    j["first_divergence"] = {{"engines", d.reference + " vs " + d.candidate},
                             {"sample", d.sample},
                             {"op", d.op_name},
                             {"op_index", d.op},
                             {"element", d.element},
                             {d.reference, d.reference_value},
                             {d.candidate, d.candidate_value}};
    if (!d.shape.empty()) j["first_divergence"]["shape"] = d.shape;
  }
  return j;
}

std::string describe(const Divergence& d) {
  std::string s = d.reference + " vs " + d.candidate + ": sample " + std::to_string(d.sample) + ", op " + d.op_name;
  if (!d.shape.empty()) return s + ": shapes differ (" + d.shape + ")";
  return s + ", element " + std::to_string(d.element) + ": " + d.reference + " " + std::to_string(d.reference_value) +
         ", " + d.candidate + " " + std::to_string(d.candidate_value);
}

}  // namespace qathw::verify
