#include "qathw/verify/compare.h"

#include <algorithm>

namespace qathw::verify {
namespace {

// The first difference within one sample, if any.
std::optional<Divergence> first_in_sample(const training::LayerOutputs& a, const training::LayerOutputs& b) {
  if (a.size() != b.size()) {
    Divergence d;
    d.shape = std::to_string(a.size()) + " layers vs " + std::to_string(b.size());
    return d;
  }
  for (std::size_t l = 0; l < a.size(); ++l) {
    if (a[l].size() != b[l].size()) {
      Divergence d;
      d.layer = l;
      d.shape = std::to_string(a[l].size()) + " outputs vs " + std::to_string(b[l].size());
      return d;
    }
    const auto diff = std::mismatch(a[l].begin(), a[l].end(), b[l].begin());
    if (diff.first != a[l].end()) {
      Divergence d;
      d.layer = l;
      d.element = static_cast<std::size_t>(diff.first - a[l].begin());
      d.reference_value = *diff.first;
      d.candidate_value = *diff.second;
      return d;
    }
  }
  return std::nullopt;
}

}  // namespace

Comparison compare(const std::string& reference, const std::vector<training::LayerOutputs>& a,
                   const std::string& candidate, const std::vector<training::LayerOutputs>& b) {
  Comparison c;
  c.samples = std::min(a.size(), b.size());
  for (std::size_t i = 0; i < c.samples; ++i) {
    std::optional<Divergence> d = first_in_sample(a[i], b[i]);
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
  nlohmann::json j = {{"samples", c.samples}, {"mismatching_samples", c.mismatching_samples}, {"first_divergence", nullptr}};
  if (c.first) {
    const Divergence& d = *c.first;
    j["first_divergence"] = {{"engines", d.reference + " vs " + d.candidate}, {"sample", d.sample}, {"layer", d.layer},
                             {"element", d.element},  {d.reference, d.reference_value}, {d.candidate, d.candidate_value}};
    if (!d.shape.empty()) j["first_divergence"]["shape"] = d.shape;
  }
  return j;
}

std::string describe(const Divergence& d) {
  std::string s = d.reference + " vs " + d.candidate + ": sample " + std::to_string(d.sample) + ", layer " +
                  std::to_string(d.layer);
  if (!d.shape.empty()) return s + ": shapes differ (" + d.shape + ")";
  return s + ", element " + std::to_string(d.element) + ": " + d.reference + " " + std::to_string(d.reference_value) +
         ", " + d.candidate + " " + std::to_string(d.candidate_value);
}

}  // namespace qathw::verify
