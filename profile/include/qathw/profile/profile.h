// Accumulator and activation range profile of a deployed bundle on data: per kernel op (linear or
// conv2d, the ops with accumulators; a convolution's `in` is its patch), what the
// accumulators and activation codes reached against the target's widths, and the accumulator
// width that provably never overflows for these trained weights. Architects set the accumulator
// axis of a sweep from it; sweeps record it per point. docs/profile.md describes the figures.
#pragma once

#include <cstdint>
#include <vector>

#include <nlohmann/json.hpp>

#include "qathw/model/bundle.h"

namespace qathw::profile {

struct Histogram {
  // Bucket b counts values whose magnitude needs exactly b bits (b = 0 for the value 0, b = 1
  // for |v| = 1, b = 2 for 2..3, ...): the form that reads directly against a bit width.
  // The vector ends at the highest non-empty bucket (empty when nothing was counted).
  std::vector<std::uint64_t> magnitude_bits;
};

struct LayerProfile {
  int layer = 0, in = 0, out = 0;
  int acc_bits = 0;                     // the target's accumulator width
  std::int64_t observed_acc_max = 0;    // largest |accumulator| seen on the data (before overflow handling)
  int observed_acc_bits = 0;            // signed width that holds every accumulator value seen
  std::int64_t bound_acc_max = 0;       // max over output channels of sum_k |w code| * max activation code
  int provable_acc_bits = 0;            // signed width that holds bound_acc_max: never overflows
  std::uint64_t overflows = 0;          // accumulator values seen outside the target's range
  Histogram accumulators;               // over every accumulator value of the data
  int act_bits = 0;                     // the target's activation width
  std::int64_t observed_act_max = 0;    // largest |activation code| at the layer's input
  Histogram activations;                // over the layer's input activation codes

  // An accumulator value is one dot product (one sample, one output channel): the largest
  // magnitude its full-precision running sum takes at any accumulator update (after each group
  // of `lanes` products), i.e. what an accumulator wide enough never to overflow would hold.
  // For in <= lanes it is the magnitude of the exact sum.
  std::int64_t observed_acc_lowest = 0;   // most negative running sum seen (0 if none below 0)
  std::int64_t observed_acc_highest = 0;  // most positive running sum seen (0 if none above 0)
  std::uint64_t accumulations = 0;        // accumulator values counted: samples x out
};

struct Profile {
  std::vector<LayerProfile> layers;
  std::size_t samples = 0;
  int observed_acc_bits = 0;   // max over layers
  int provable_acc_bits = 0;   // max over layers
};

// Runs the first `count` samples of `pixels` (count x features, uint8) through the bundle with
// the integer engine's arithmetic and profiles every kernel op. Samples run in parallel; the result
// does not depend on the number of threads.
Profile profile_bundle(const model::Bundle& bundle, const std::uint8_t* pixels, std::size_t count);

nlohmann::json to_json(const Profile& profile);
// The inverse of to_json; throws nlohmann::json::exception on a missing or mistyped field.
Profile profile_from_json(const nlohmann::json& json);

// Histogram bucket of v: bits of |v| (0 for 0).
int magnitude_bits(std::int64_t v);
// The smallest signed two's-complement width that holds v (1 for 0 and -1, 2 for 1, 8 for -128).
int signed_bits(std::int64_t v);
// Counts v in its bucket, growing the histogram as needed.
void record(Histogram& histogram, std::int64_t v);

bool operator==(const Histogram& a, const Histogram& b);
bool operator==(const LayerProfile& a, const LayerProfile& b);
bool operator==(const Profile& a, const Profile& b);

}  // namespace qathw::profile
