// The accumulator and range profile: bucket rules, equality with a brute-force computation of
// every accumulator on hand-built bundles, the provable bound against random data, overflow
// reporting, determinism across thread counts, and the JSON round trip.
#include "qathw/profile/profile.h"

#include <omp.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <ostream>
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "../arith/test_support.h"
#include "qathw/model/accelerator_layers.h"
#include "qathw/model/int_engine.h"
#include "qathw/model/model_spec.h"
#include "../model/random_model.h"
#include "qathw/training/export.h"
#include "qathw/training/network.h"

namespace qathw::profile {
namespace {

using model::Bundle;
using model::AcceleratorLayer;
using model::LinearParams;

std::vector<AcceleratorLayer> layers_of(const Bundle& b) { return model::accelerator_layers(b.graph).layers; }

// ---- bucket rules ----------------------------------------------------------------------------

TEST(ProfileHistogram, BucketIsTheBitCountOfTheMagnitude) {
  EXPECT_EQ(magnitude_bits(0), 0);
  EXPECT_EQ(magnitude_bits(1), 1);
  EXPECT_EQ(magnitude_bits(-1), 1);
  EXPECT_EQ(magnitude_bits(2), 2);
  EXPECT_EQ(magnitude_bits(3), 2);
  EXPECT_EQ(magnitude_bits(-3), 2);
  EXPECT_EQ(magnitude_bits(4), 3);
  EXPECT_EQ(magnitude_bits(127), 7);
  EXPECT_EQ(magnitude_bits(128), 8);
  EXPECT_EQ(magnitude_bits(-128), 8);
  EXPECT_EQ(magnitude_bits(255), 8);
  EXPECT_EQ(magnitude_bits(256), 9);
  EXPECT_EQ(magnitude_bits(std::numeric_limits<std::int64_t>::max()), 63);
  EXPECT_EQ(magnitude_bits(std::numeric_limits<std::int64_t>::min()), 64);
  // Every power of two starts a bucket, and the value below it ends the previous one.
  for (int b = 1; b < 63; ++b) {
    const std::int64_t p = std::int64_t{1} << b;
    EXPECT_EQ(magnitude_bits(p), b + 1) << "2^" << b;
    EXPECT_EQ(magnitude_bits(p - 1), b) << "2^" << b << " - 1";
    EXPECT_EQ(magnitude_bits(-p), b + 1) << "-2^" << b;
  }
}

TEST(ProfileHistogram, SignedBitsIsTheSmallestTwosComplementWidth) {
  EXPECT_EQ(signed_bits(0), 1);
  EXPECT_EQ(signed_bits(-1), 1);
  EXPECT_EQ(signed_bits(1), 2);
  EXPECT_EQ(signed_bits(-2), 2);
  EXPECT_EQ(signed_bits(127), 8);
  EXPECT_EQ(signed_bits(128), 9);
  EXPECT_EQ(signed_bits(-128), 8);
  EXPECT_EQ(signed_bits(-129), 9);
  EXPECT_EQ(signed_bits(8388607), 24);
  EXPECT_EQ(signed_bits(8388608), 25);
  // Against the definition, by search, on every value in [-5000, 5000].
  for (std::int64_t v = -5000; v <= 5000; ++v) {
    int b = 1;
    while (!(arith::signed_min(b) <= v && v <= arith::signed_max(b))) ++b;
    ASSERT_EQ(signed_bits(v), b) << "v = " << v;
  }
}

TEST(ProfileHistogram, RecordGrowsToTheHighestBucket) {
  Histogram h;
  EXPECT_TRUE(h.magnitude_bits.empty());
  record(h, 0);
  EXPECT_EQ(h.magnitude_bits, (std::vector<std::uint64_t>{1}));
  record(h, -5);
  record(h, 6);
  record(h, 7);
  record(h, 1);
  EXPECT_EQ(h.magnitude_bits, (std::vector<std::uint64_t>{1, 1, 0, 3}));
  record(h, 1000);  // 10 bits
  ASSERT_EQ(h.magnitude_bits.size(), 11u);
  EXPECT_EQ(h.magnitude_bits[10], 1u);
  EXPECT_EQ(h.magnitude_bits[9], 0u);
}

// ---- hand-built bundles ----------------------------------------------------------------------

struct Shape {
  arith::WeightFormat weights;
  int acc_bits;
  arith::Overflow overflow;
  int lanes;
};

std::string shape_name(const Shape& s) {
  return std::string(s.weights == arith::WeightFormat::Ternary ? "Ternary" : "Int4") + "Acc" + std::to_string(s.acc_bits) +
         (s.overflow == arith::Overflow::Saturate ? "Saturate" : "Wrap") + "Lanes" + std::to_string(s.lanes);
}

void PrintTo(const Shape& s, std::ostream* os) { *os << shape_name(s); }

target::TargetSpec make_target(const Shape& s) {
  target::TargetSpec t = target::builtin_target(s.weights == arith::WeightFormat::Ternary ? "ternary-asic" : "int4-fpga");
  t.format.acc_bits = s.acc_bits;
  t.format.overflow = s.overflow;
  t.array.lanes = s.lanes;
  return t;
}

// A bundle with the given layer sizes and codes drawn by `code(rng)`; requant pairs random in
// the target's scale format.
template <typename CodeFn>
Bundle make_bundle_with(const target::TargetSpec& t, int rows, int cols, const std::vector<int>& sizes,
                        std::mt19937_64& rng, CodeFn code) {
  Bundle b;
  b.target = t;
  b.target_hash = target::content_hash(t);
  b.rows = rows;
  b.cols = cols;
  b.classes = sizes.back();
  int in = rows * cols;
  const int m_bits = t.format.scale_mantissa_bits;
  std::uniform_int_distribution<std::int64_t> mantissa(std::int64_t{1} << (m_bits - 1), (std::int64_t{1} << m_bits) - 1);
  std::uniform_int_distribution<int> shift(m_bits, m_bits + 8);
  std::vector<LinearParams> params;
  std::vector<bool> relu;
  for (std::size_t l = 0; l < sizes.size(); ++l) {
    LinearParams layer;
    layer.in = in;
    layer.out = sizes[l];
    relu.push_back(l + 1 < sizes.size());
    layer.format = t.format.weights;
    const std::size_t n_codes = static_cast<std::size_t>(layer.in) * layer.out;
    layer.packed.assign(arith::packed_bytes(n_codes, layer.format), 0);
    for (std::size_t i = 0; i < n_codes; ++i) arith::store_code(layer.packed.data(), i, code(rng), layer.format);
    for (int n = 0; n < layer.out; ++n) layer.requant.push_back({mantissa(rng), shift(rng)});
    layer.scales.assign(static_cast<std::size_t>(layer.out), 1.0f);
    params.push_back(std::move(layer));
    in = sizes[l];
  }
  b.graph = model::mlp_graph(rows * cols, std::move(params), relu);
  return b;
}

Bundle random_bundle(const Shape& s, std::mt19937_64& rng) {
  const int qw = arith::weight_qmax(s.weights);
  std::uniform_int_distribution<int> code(-qw, qw);
  return make_bundle_with(make_target(s), 5, 4, {13, 7, 4}, rng, [&](std::mt19937_64& r) { return code(r); });
}

std::vector<std::uint8_t> random_pixels(std::size_t count, std::size_t features, std::mt19937_64& rng) {
  std::vector<std::uint8_t> pixels(count * features);
  std::uniform_int_distribution<int> kind(0, 3), byte(0, 255);
  for (std::size_t i = 0; i < count; ++i) {
    // Mixed kinds of images: uniform noise, sparse, saturated, and all zero.
    const int k = kind(rng);
    for (std::size_t j = 0; j < features; ++j) {
      std::uint8_t& p = pixels[i * features + j];
      if (k == 0) p = static_cast<std::uint8_t>(byte(rng));
      else if (k == 1) p = byte(rng) < 40 ? static_cast<std::uint8_t>(byte(rng)) : 0;
      else if (k == 2) p = byte(rng) < 128 ? 255 : 0;
      else p = 0;
    }
  }
  return pixels;
}

// The profile computed independently: plain products x * w, running sums kept by hand, the
// overflow rule written out, the bound and the histograms counted directly. It uses the core
// only for the activation quantizer and requantization, and its layer outputs are checked
// against the integer engine, so the activations it profiles are the deployed model's.
Profile brute_force(const Bundle& b, const std::vector<std::uint8_t>& pixels, std::size_t count) {
  const arith::Format& f = b.target.format;
  const std::int64_t lo = -(std::int64_t{1} << (f.acc_bits - 1)), hi = (std::int64_t{1} << (f.acc_bits - 1)) - 1;
  const std::int64_t span = std::int64_t{1} << f.acc_bits;
  auto bits_of = [](std::int64_t v) {
    std::uint64_t m = static_cast<std::uint64_t>(v < 0 ? -v : v);
    int n = 0;
    while (m) {
      m /= 2;
      ++n;
    }
    return n;
  };
  auto count_in = [&](Histogram& h, std::int64_t v) {
    const std::size_t n = static_cast<std::size_t>(bits_of(v));
    if (h.magnitude_bits.size() <= n) h.magnitude_bits.resize(n + 1);
    h.magnitude_bits[n] += 1;
  };
  auto width = [](std::int64_t v) {
    int w = 1;
    while (v < -(std::int64_t{1} << (w - 1)) || v > (std::int64_t{1} << (w - 1)) - 1) ++w;
    return w;
  };

  Profile p;
  p.samples = count;
  const std::vector<AcceleratorLayer> layers = layers_of(b);
  p.layers.resize(layers.size());
  for (std::size_t l = 0; l < layers.size(); ++l) {
    LayerProfile& lp = p.layers[l];
    const AcceleratorLayer& layer = layers[l];
    lp.layer = static_cast<int>(l);
    lp.in = layer.in;
    lp.out = layer.out;
    lp.acc_bits = f.acc_bits;
    lp.act_bits = f.act_bits;
    for (int n = 0; n < layer.out; ++n) {
      std::int64_t s = 0;
      for (int k = 0; k < layer.in; ++k) s += std::abs(layer.params->code(n, k)) * ((std::int64_t{1} << (f.act_bits - 1)) - 1);
      lp.bound_acc_max = std::max(lp.bound_acc_max, s);
    }
    lp.provable_acc_bits = width(lp.bound_acc_max);
  }
  const model::IntEngine engine(b);
  const std::size_t features = static_cast<std::size_t>(b.rows) * b.cols;
  for (std::size_t i = 0; i < count; ++i) {
    std::vector<std::int64_t> v(pixels.begin() + static_cast<long>(i * features),
                                pixels.begin() + static_cast<long>((i + 1) * features));
    const model::LayerOutputs expected = model::layer_outputs(layers, engine.run(pixels.data() + i * features));
    for (std::size_t l = 0; l < layers.size(); ++l) {
      const AcceleratorLayer& layer = layers[l];
      LayerProfile& lp = p.layers[l];
      std::int64_t amax = 0;
      for (std::int64_t e : v) amax = std::max(amax, e < 0 ? -e : e);
      const arith::FixedPoint inv = arith::token_inv_scale(amax, f);
      std::vector<std::int64_t> x(v.size());
      for (std::size_t k = 0; k < v.size(); ++k) {
        x[k] = arith::quantize_act(v[k], inv, f.act_bits, f.rounding);
        lp.observed_act_max = std::max(lp.observed_act_max, x[k] < 0 ? -x[k] : x[k]);
        count_in(lp.activations, x[k]);
      }
      std::vector<std::int64_t> z(static_cast<std::size_t>(layer.out));
      for (int n = 0; n < layer.out; ++n) {
        std::int64_t reg = 0, sum = 0, low = 0, high = 0;
        for (int k0 = 0; k0 < layer.in; k0 += b.target.array.lanes) {
          std::int64_t group = 0;
          for (int k = k0; k < std::min(layer.in, k0 + b.target.array.lanes); ++k) group += x[k] * layer.params->code(n, k);
          sum += group;
          low = std::min(low, sum);
          high = std::max(high, sum);
          reg += group;
          if (f.overflow == arith::Overflow::Saturate) {
            reg = std::min(std::max(reg, lo), hi);
          } else {
            reg = ((reg - lo) % span + span) % span + lo;
          }
        }
        lp.observed_acc_lowest = std::min(lp.observed_acc_lowest, low);
        lp.observed_acc_highest = std::max(lp.observed_acc_highest, high);
        lp.observed_acc_max = std::max({lp.observed_acc_max, high, -low});
        if (low < lo || high > hi) ++lp.overflows;
        ++lp.accumulations;
        count_in(lp.accumulators, std::max(high, -low));
        const std::int64_t q = arith::requantize(reg, layer.params->requant[n], f.rounding, f.acc_bits);
        z[n] = layer.relu ? std::max<std::int64_t>(q, 0) : q;
        EXPECT_EQ(z[n], expected[l][n]) << "sample " << i << " layer " << l << " channel " << n;
      }
      v = z;
    }
  }
  for (LayerProfile& lp : p.layers) {
    lp.observed_acc_bits = count > 0 ? std::max(width(lp.observed_acc_lowest), width(lp.observed_acc_highest)) : 0;
    p.observed_acc_bits = std::max(p.observed_acc_bits, lp.observed_acc_bits);
    p.provable_acc_bits = std::max(p.provable_acc_bits, lp.provable_acc_bits);
  }
  return p;
}

// Field by field, so a failure names what differs.
void expect_equal(const Profile& got, const Profile& want) {
  EXPECT_EQ(got.samples, want.samples);
  EXPECT_EQ(got.observed_acc_bits, want.observed_acc_bits);
  EXPECT_EQ(got.provable_acc_bits, want.provable_acc_bits);
  ASSERT_EQ(got.layers.size(), want.layers.size());
  for (std::size_t l = 0; l < got.layers.size(); ++l) {
    SCOPED_TRACE("layer " + std::to_string(l));
    const LayerProfile& g = got.layers[l];
    const LayerProfile& w = want.layers[l];
    EXPECT_EQ(g.layer, w.layer);
    EXPECT_EQ(g.in, w.in);
    EXPECT_EQ(g.out, w.out);
    EXPECT_EQ(g.acc_bits, w.acc_bits);
    EXPECT_EQ(g.observed_acc_max, w.observed_acc_max);
    EXPECT_EQ(g.observed_acc_lowest, w.observed_acc_lowest);
    EXPECT_EQ(g.observed_acc_highest, w.observed_acc_highest);
    EXPECT_EQ(g.observed_acc_bits, w.observed_acc_bits);
    EXPECT_EQ(g.bound_acc_max, w.bound_acc_max);
    EXPECT_EQ(g.provable_acc_bits, w.provable_acc_bits);
    EXPECT_EQ(g.overflows, w.overflows);
    EXPECT_EQ(g.accumulations, w.accumulations);
    EXPECT_EQ(g.accumulators.magnitude_bits, w.accumulators.magnitude_bits);
    EXPECT_EQ(g.act_bits, w.act_bits);
    EXPECT_EQ(g.observed_act_max, w.observed_act_max);
    EXPECT_EQ(g.activations.magnitude_bits, w.activations.magnitude_bits);
  }
  EXPECT_TRUE(got == want);
}

class ProfileBruteForce : public ::testing::TestWithParam<Shape> {};

TEST_P(ProfileBruteForce, EqualsAnIndependentComputationOfEveryAccumulator) {
  const std::uint64_t seed = test::test_seed();
  SCOPED_TRACE(test::seed_note(seed));
  std::mt19937_64 rng(seed);
  for (int trial = 0; trial < 4; ++trial) {
    SCOPED_TRACE("trial " + std::to_string(trial));
    const Bundle b = random_bundle(GetParam(), rng);
    const std::size_t count = 150;
    const std::vector<std::uint8_t> pixels = random_pixels(count, 20, rng);
    expect_equal(profile_bundle(b, pixels.data(), count), brute_force(b, pixels, count));
  }
}

TEST_P(ProfileBruteForce, ObservedValuesNeverExceedTheProvableBound) {
  const std::uint64_t seed = test::test_seed() + 1;
  SCOPED_TRACE(test::seed_note(seed));
  std::mt19937_64 rng(seed);
  for (int trial = 0; trial < 20; ++trial) {
    SCOPED_TRACE("trial " + std::to_string(trial));
    const Bundle b = random_bundle(GetParam(), rng);
    const std::size_t count = 200;
    const std::vector<std::uint8_t> pixels = random_pixels(count, 20, rng);
    const Profile p = profile_bundle(b, pixels.data(), count);
    for (const LayerProfile& l : p.layers) {
      EXPECT_LE(l.observed_acc_max, l.bound_acc_max) << "layer " << l.layer;
      EXPECT_LE(l.observed_acc_bits, l.provable_acc_bits) << "layer " << l.layer;
      EXPECT_LE(l.observed_act_max, arith::act_qmax(l.act_bits)) << "layer " << l.layer;
      // Below the provable width nothing can overflow; above the target's, something did.
      if (l.provable_acc_bits <= l.acc_bits) {
        EXPECT_EQ(l.overflows, 0u) << "layer " << l.layer;
      }
      EXPECT_EQ(l.overflows > 0, l.observed_acc_bits > l.acc_bits) << "layer " << l.layer;
      std::uint64_t total = 0;
      for (std::uint64_t c : l.accumulators.magnitude_bits) total += c;
      EXPECT_EQ(total, l.accumulations);
      EXPECT_EQ(l.accumulations, count * static_cast<std::uint64_t>(l.out));
    }
  }
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, ProfileBruteForce,
    ::testing::Values(Shape{arith::WeightFormat::Ternary, 24, arith::Overflow::Saturate, 3},
                      Shape{arith::WeightFormat::Ternary, 8, arith::Overflow::Saturate, 3},
                      Shape{arith::WeightFormat::Ternary, 9, arith::Overflow::Wrap, 1},
                      Shape{arith::WeightFormat::Int4, 24, arith::Overflow::Wrap, 4},
                      Shape{arith::WeightFormat::Int4, 10, arith::Overflow::Saturate, 6},
                      Shape{arith::WeightFormat::Int4, 8, arith::Overflow::Wrap, 32}),
    [](const ::testing::TestParamInfo<Shape>& info) { return shape_name(info.param); });

TEST(ProfileBundle, TrainedShapeBundleEqualsBruteForce) {
  // make_bundle's requant pairs and weight codes, from an untrained network.
  const std::uint64_t seed = test::test_seed() + 2;
  SCOPED_TRACE(test::seed_note(seed));
  std::mt19937_64 rng(seed);
  for (const char* name : {"ternary-asic", "int4-fpga"}) {
    SCOPED_TRACE(name);
    const Bundle b = training::make_bundle(training::make_mlp(6 * 5, {11, 9}, 4, seed), target::builtin_target(name), 6,
                                           5, nlohmann::json::object());
    const std::vector<std::uint8_t> pixels = random_pixels(100, 30, rng);
    expect_equal(profile_bundle(b, pixels.data(), 100), brute_force(b, pixels, 100));
  }
}

TEST(ProfileBundle, TheBoundIsReachedByAllPositiveWeightsOnASaturatedImage) {
  // Every weight +1 and every pixel equal: every code is qmax, every sum is in * qmax.
  std::mt19937_64 rng(1);
  const Bundle b = make_bundle_with(make_target({arith::WeightFormat::Ternary, 24, arith::Overflow::Saturate, 16}), 4,
                                    10, {3}, rng, [](std::mt19937_64&) { return 1; });
  const std::vector<std::uint8_t> pixels(40, 200);
  const Profile p = profile_bundle(b, pixels.data(), 1);
  ASSERT_EQ(p.layers.size(), 1u);
  EXPECT_EQ(p.layers[0].bound_acc_max, 40 * 127);
  EXPECT_EQ(p.layers[0].observed_acc_max, 40 * 127);
  EXPECT_EQ(p.layers[0].observed_acc_highest, 40 * 127);
  EXPECT_EQ(p.layers[0].observed_acc_lowest, 0);
  EXPECT_EQ(p.layers[0].observed_acc_bits, 14);  // 5080 < 2^13
  EXPECT_EQ(p.layers[0].provable_acc_bits, 14);
  EXPECT_EQ(p.layers[0].observed_act_max, 127);
  EXPECT_EQ(p.layers[0].activations.magnitude_bits, (std::vector<std::uint64_t>{0, 0, 0, 0, 0, 0, 0, 40}));
}

TEST(ProfileBundle, ALayerBuiltToOverflowReportsIt) {
  for (arith::Overflow mode : {arith::Overflow::Saturate, arith::Overflow::Wrap}) {
    SCOPED_TRACE(mode == arith::Overflow::Saturate ? "saturate" : "wrap");
    std::mt19937_64 rng(2);
    // 40 inputs of code 127 through all +1 weights: 5080 in an 8-bit accumulator.
    const Bundle b = make_bundle_with(make_target({arith::WeightFormat::Ternary, 8, mode, 8}), 4, 10, {5, 3}, rng,
                                      [](std::mt19937_64&) { return 1; });
    const std::vector<std::uint8_t> pixels(3 * 40, 255);
    const Profile p = profile_bundle(b, pixels.data(), 3);
    ASSERT_EQ(p.layers.size(), 2u);
    const LayerProfile& l = p.layers[0];
    EXPECT_EQ(l.overflows, 15u);  // every channel of every sample
    EXPECT_EQ(l.accumulations, 15u);
    EXPECT_GT(l.observed_acc_bits, l.acc_bits);
    EXPECT_EQ(l.observed_acc_bits, 14);
    EXPECT_EQ(l.observed_acc_max, 5080);
    EXPECT_GT(p.observed_acc_bits, 8);
    expect_equal(p, brute_force(b, pixels, 3));
  }
}

TEST(ProfileBundle, RunningSumsCountNotJustTheFinalSum) {
  // Lanes 1 and the codes +1 x 20 then -1 x 20 on a flat image: the exact sum is 0, but the
  // accumulator passes through 20 * 127 = 2540 on the way, which overflows 8 bits.
  std::mt19937_64 rng(3);
  int i = 0;
  const Bundle b = make_bundle_with(make_target({arith::WeightFormat::Ternary, 8, arith::Overflow::Saturate, 1}), 4,
                                    10, {1}, rng, [&](std::mt19937_64&) { return i++ < 20 ? 1 : -1; });
  const std::vector<std::uint8_t> pixels(40, 9);
  const Profile p = profile_bundle(b, pixels.data(), 1);
  EXPECT_EQ(p.layers[0].observed_acc_max, 2540);
  EXPECT_EQ(p.layers[0].overflows, 1u);
  EXPECT_EQ(p.layers[0].accumulators.magnitude_bits.size(), 13u);  // 2540 has 12 bits
}

TEST(ProfileBundle, ResultDoesNotDependOnTheThreadCount) {
  const std::uint64_t seed = test::test_seed() + 3;
  SCOPED_TRACE(test::seed_note(seed));
  std::mt19937_64 rng(seed);
  const Bundle b = random_bundle({arith::WeightFormat::Int4, 12, arith::Overflow::Saturate, 5}, rng);
  const std::vector<std::uint8_t> pixels = random_pixels(500, 20, rng);
  const int threads = omp_get_max_threads();
  omp_set_num_threads(1);
  const Profile one = profile_bundle(b, pixels.data(), 500);
  omp_set_num_threads(4);
  const Profile four = profile_bundle(b, pixels.data(), 500);
  omp_set_num_threads(threads);
  expect_equal(four, one);
}

TEST(ProfileJson, RoundTripKeepsEveryField) {
  const std::uint64_t seed = test::test_seed() + 4;
  SCOPED_TRACE(test::seed_note(seed));
  std::mt19937_64 rng(seed);
  const Bundle b = random_bundle({arith::WeightFormat::Ternary, 9, arith::Overflow::Wrap, 2}, rng);
  const std::vector<std::uint8_t> pixels = random_pixels(64, 20, rng);
  const Profile p = profile_bundle(b, pixels.data(), 64);
  const nlohmann::json j = to_json(p);
  EXPECT_EQ(j.at("samples"), 64);
  ASSERT_EQ(j.at("layers").size(), 3u);
  EXPECT_EQ(j["layers"][0].at("in"), 20);
  EXPECT_EQ(j["layers"][0].at("out"), 13);
  EXPECT_EQ(j["layers"][0].at("acc_bits"), 9);
  EXPECT_EQ(j["layers"][0].at("provable_acc_bits"), p.layers[0].provable_acc_bits);
  EXPECT_EQ(j["layers"][1].at("observed_acc_max"), p.layers[1].observed_acc_max);
  EXPECT_EQ(j["layers"][2].at("accumulators").at("magnitude_bits").size(),
            p.layers[2].accumulators.magnitude_bits.size());
  // Through text, as a file holds it.
  expect_equal(profile_from_json(nlohmann::json::parse(j.dump(2))), p);
  nlohmann::json broken = j;
  broken["layers"][1].erase("overflows");
  EXPECT_THROW(profile_from_json(broken), nlohmann::json::exception);
}

}  // namespace
}  // namespace qathw::profile

namespace qathw::profile {
namespace {

// A convolutional bundle: one profile entry per kernel op (conv2d and linear), a convolution's
// running sums over every output pixel and channel, checked against a direct computation of the
// patch sums from the quantize op's codes (the integer engine's).
TEST(ProfileBundle, ConvolutionsAreProfiledOverEveryPixel) {
  const std::uint64_t seed = test::test_seed(5);
  SCOPED_TRACE(test::seed_note(seed));
  target::TargetSpec t = target::builtin_target("int4-fpga");
  std::mt19937_64 rng(seed);
  const model::ModelSpec m = model::resolve_model("lenet", 10);
  const Bundle b = test::bundle_of(t, model::lower_model(m, test::random_layer_params(m, t.format.weights, rng),
                                                         t.format));
  const std::size_t count = 2;
  std::vector<std::uint8_t> pixels(count * 784);
  for (auto& p : pixels) p = static_cast<std::uint8_t>(rng() % 256);
  const Profile p = profile_bundle(b, pixels.data(), count);
  ASSERT_EQ(p.layers.size(), 4u);  // conv, conv, linear, linear
  EXPECT_EQ(p.layers[0].in, 25);
  EXPECT_EQ(p.layers[0].out, 16);
  EXPECT_EQ(p.layers[0].accumulations, count * 28 * 28 * 16);
  EXPECT_EQ(p.layers[1].in, 400);
  EXPECT_EQ(p.layers[1].accumulations, count * 10 * 10 * 32);
  EXPECT_EQ(p.layers[2].accumulations, count * 128);

  // Layer 1 (the second convolution: 14x14x16 codes, 5x5 kernel, no padding), directly.
  const model::IntEngine engine(b);
  const std::size_t quantize = 4;  // quantize, conv2d, relu, max_pool, then the second conv2d's quantize op
  ASSERT_EQ(b.graph.ops[quantize].type, model::OpType::Quantize);
  ASSERT_EQ(b.graph.ops[quantize + 1].type, model::OpType::Conv2d);
  const std::vector<std::int8_t> w = b.graph.ops[quantize + 1].linear.codes();
  const int lanes = t.array.lanes;
  std::int64_t lowest = 0, highest = 0, act_max = 0;
  for (std::size_t s = 0; s < count; ++s) {
    const std::vector<std::int32_t> x = engine.run(pixels.data() + s * 784)[quantize];
    for (std::int32_t v : x) act_max = std::max<std::int64_t>(act_max, std::abs(v));
    for (int oy = 0; oy < 10; ++oy)
      for (int ox = 0; ox < 10; ++ox)
        for (int n = 0; n < 32; ++n) {
          std::int64_t sum = 0;
          int k = 0;
          for (int ky = 0; ky < 5; ++ky)
            for (int kx = 0; kx < 5; ++kx)
              for (int c = 0; c < 16; ++c, ++k) {
                sum += static_cast<std::int64_t>(x[((oy + ky) * 14 + ox + kx) * 16 + c]) * w[n * 400 + k];
                if ((k + 1) % lanes == 0 || k + 1 == 400) {  // the end of an array chunk: a running sum
                  lowest = std::min(lowest, sum);
                  highest = std::max(highest, sum);
                }
              }
        }
  }
  EXPECT_EQ(p.layers[1].observed_acc_lowest, lowest);
  EXPECT_EQ(p.layers[1].observed_acc_highest, highest);
  EXPECT_EQ(p.layers[1].observed_act_max, act_max);
  for (const LayerProfile& l : p.layers) EXPECT_LE(l.observed_acc_max, l.bound_acc_max) << "layer " << l.layer;
}

}  // namespace
}  // namespace qathw::profile
