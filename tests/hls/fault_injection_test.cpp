// Proof that the HLS check can fail: the HLS top built with an injected fault (the activation
// quantizer's clamp stops one short of qmax) must be reported by the verify comparison at
// layer 0, the first layer whose quantizer runs; the fault-free top agrees on every layer.
#include <random>

#include <gtest/gtest.h>

#include "../arith/test_support.h"
#include "qathw/hls/hls_engine.h"
#include "qathw/model/int_engine.h"
#include "qathw/training/export.h"
#include "qathw/verify/compare.h"
#include "qathw/verify/engine.h"

// The faulty linear top, compiled in namespace qathw_fault (tests/hls/CMakeLists.txt); the MLP needs
// no other top.
namespace qathw_fault::hls {
void layer_top_ternary_asic(const std::int32_t*, int, int, bool, const std::uint8_t*, const std::int32_t*,
                            const std::int32_t*, std::int32_t*);
}  // namespace qathw_fault::hls

namespace qathw::hls {
namespace {

TEST(HlsFaultInjection, VerifyReportsTheFaultAtLayerZero) {
  const std::uint64_t seed = test::test_seed(41);
  const target::TargetSpec t = target::builtin_target("ternary-asic");
  const model::Bundle b = training::make_bundle(training::make_mlp(64, {24, 12}, 4, seed), t, 8, 8, {});
  std::mt19937_64 rng(seed);
  const std::size_t samples = 20;
  std::vector<std::uint8_t> pixels(samples * 64);
  for (auto& p : pixels) p = static_cast<std::uint8_t>(rng() % 256);
  const auto reference = model::IntEngine(b).run_all(pixels.data(), samples);
  const verify::Comparison clean =
      verify::compare(b.graph, "int", reference, "hls", verify::fused_to_ops(b, run_hls(b, pixels.data(), samples)));
  EXPECT_FALSE(clean.first) << "the fault-free top differs: " << verify::describe(*clean.first);
  const verify::Comparison faulty = verify::compare(
      b.graph, "int", reference, "hls",
      verify::fused_to_ops(b, run_layers(b, pixels.data(), samples, Tops{qathw_fault::hls::layer_top_ternary_asic})));
  ASSERT_TRUE(faulty.first) << "the injected fault went unnoticed; " << test::seed_note(seed);
  EXPECT_EQ(faulty.first->op_name, "layer0.relu") << verify::describe(*faulty.first);
  EXPECT_EQ(faulty.mismatching_samples, samples);
}

}  // namespace
}  // namespace qathw::hls
