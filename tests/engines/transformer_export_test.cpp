// The exported transformer (training::make_bundle of a TransformerNet): the bundle's integer
// engine computes every integer the trainer's QAT forward computes, op by op, on random tiny
// models of both built-in targets, through a save and load; greedy generation on the integer
// engine picks the tokens the trainer's own logits pick.
#include <gtest/gtest.h>

#include <unistd.h>

#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "qathw/model/bundle.h"
#include "qathw/model/int_engine.h"
#include "qathw/target/target_spec.h"
#include "qathw/training/export.h"
#include "qathw/training/transformer_net.h"
#include "qathw/verify/generate.h"
#include "random_transformer.h"

namespace qathw {
namespace {

using training::TransformerNet;

TransformerNet random_net(int context, std::uint64_t seed) {
  return test::random_transformer(test::TransformerShape{context, 16, 2, 32, 2}, seed);
}

using test::random_tokens;

std::size_t op_index(const model::Graph& g, const std::string& name) {
  for (std::size_t i = 0; i < g.ops.size(); ++i)
    if (g.ops[i].name == name) return i;
  ADD_FAILURE() << "no op " << name;
  return 0;
}

// A token-major slice [b T, (b + 1) T) of a trainer tensor of `features` per token.
template <typename V>
std::vector<std::int32_t> sequence_of(const std::vector<V>& all, int b, int T, int features) {
  const std::size_t n = static_cast<std::size_t>(T) * features;
  return std::vector<std::int32_t>(all.begin() + static_cast<long>(b * n), all.begin() + static_cast<long>((b + 1) * n));
}

TEST(TransformerExport, IntegerEngineEqualsTheTrainerOnEveryOp) {
  const auto dir = std::filesystem::temp_directory_path() / ("qathw-transformer-export-" + std::to_string(::getpid()));
  // The built-in targets; ternary-asic with a vector unit of 3 lanes into 12 saturating bits
  // (attention's sums saturate chunk by chunk: the trainer computes with the target's unit); and
  // 12-bit activations (Q, K and V codes past a byte) on a 5 x 7 array, 32-bit accumulators and
  // a vector unit of 16-bit operands.
  for (const std::string target_name : {"ternary-asic", "int4-fpga", "narrow-vector-unit", "wide-activations"}) {
    target::TargetSpec t = target::builtin_target(target_name == "int4-fpga" ? "int4-fpga" : "ternary-asic");
    if (target_name == "narrow-vector-unit") t.vector_unit = arith::VectorUnit{3, 8, 12, arith::Overflow::Saturate};
    if (target_name == "wide-activations") {
      t.format.act_bits = 12;
      t.format.acc_bits = 32;
      t.array = {5, 7};
      t.vector_unit = arith::VectorUnit{5, 16, 32, arith::Overflow::Saturate};
    }
    for (std::uint64_t seed : {21u, 22u}) {
      const std::string what = target_name + " seed " + std::to_string(seed);
      const int T = 7, batch = 3, H = 2, D = 16, F = 32;
      TransformerNet net = random_net(T, seed);
      const std::vector<std::uint8_t> tokens = random_tokens(static_cast<std::size_t>(batch) * T, seed + 1);
      net.calibrate(tokens.data(), batch, t.format, 0.99);
      model::save_bundle(dir, training::make_bundle(net, t, {{"test", what}}));
      const model::Bundle b = model::load_bundle(dir, &t);
      ASSERT_TRUE(b.sequence()) << what;
      ASSERT_EQ(b.context, T) << what;
      net.quantize_weights(t.format);
      net.forward_quantized(tokens.data(), batch, t);
      const TransformerNet::Integers& z = net.integers();
      const std::vector<model::OpOutputs> got = model::IntEngine(b).run_all(tokens.data(), batch);
      const model::Graph& g = b.graph;
      for (int s = 0; s < batch; ++s) {
        const auto expect = [&](const std::string& op, const std::vector<std::int32_t>& want) {
          ASSERT_EQ(got[s][op_index(g, op)], want) << what << " sequence " << s << " op " << op;
        };
        for (int l = 0; l < 2; ++l) {
          const TransformerNet::LayerIntegers& y = z.layers[l];
          const std::string p = "layer" + std::to_string(l) + ".";
          expect(l == 0 ? "embedding" : "layer0.ffn_add", sequence_of(y.x, s, T, D));
          expect(p + "attention_norm", sequence_of(y.norm1, s, T, D));
          expect(p + "wq", sequence_of(y.q, s, T, D));
          expect(p + "wk", sequence_of(y.k, s, T, D));
          expect(p + "wv", sequence_of(y.v, s, T, D));
          expect(p + "q.quantize", sequence_of(y.q_codes, s, T, D));
          expect(p + "k.quantize", sequence_of(y.k_codes, s, T, D));
          expect(p + "v.quantize", sequence_of(y.v_codes, s, T, D));
          // The trainer's attention rows are [sequence][head][query][key]; the graph's [query][head][key].
          std::vector<std::int32_t> scores(static_cast<std::size_t>(T) * H * T), probs(scores.size());
          for (int h = 0; h < H; ++h)
            for (int q = 0; q < T; ++q)
              for (int k = 0; k < T; ++k) {
                const std::size_t from = ((static_cast<std::size_t>(s) * H + h) * T + q) * T + k;
                scores[(static_cast<std::size_t>(q) * H + h) * T + k] = y.scores[from];
                probs[(static_cast<std::size_t>(q) * H + h) * T + k] = y.probs[from];
              }
          expect(p + "scores", scores);
          expect(p + "softmax", probs);
          expect(p + "attend", sequence_of(y.attention, s, T, D));
          expect(p + "wo", sequence_of(y.o, s, T, D));
          expect(p + "attention_add", sequence_of(y.x_mid, s, T, D));
          expect(p + "ffn_norm", sequence_of(y.norm2, s, T, D));
          expect(p + "wup", sequence_of(y.up, s, T, F));
          expect(p + "squared_relu", sequence_of(y.act, s, T, F));
          expect(p + "wdown", sequence_of(y.down, s, T, D));
        }
        expect("layer1.ffn_add", sequence_of(z.x_out, s, T, D));
        expect("final_norm", sequence_of(z.norm, s, T, D));
        expect("head", sequence_of(z.logits, s, T, 256));
      }
    }
  }
  std::filesystem::remove_all(dir);
}

TEST(TransformerExport, GreedyGenerationOnTheIntegerEnginePicksTheTrainersTokens) {
  const target::TargetSpec t = target::builtin_target("ternary-asic");
  const int T = 6;
  TransformerNet net = random_net(T, 31);
  const std::vector<std::uint8_t> calibration = random_tokens(4 * T, 32);
  net.calibrate(calibration.data(), 4, t.format, 0.99);
  const model::Bundle b = training::make_bundle(net, t, nlohmann::json::object());
  const std::vector<std::uint8_t> prompt = {'a', 'b', 'c'};
  const verify::Generation g = verify::generate(*verify::find_engine("int"), b, prompt, 9);  // slides past T
  ASSERT_EQ(g.tokens.size(), 12u);
  ASSERT_EQ(g.prompt_tokens, 3u);
  net.quantize_weights(t.format);
  std::vector<std::uint8_t> sequence = prompt, window(T);
  for (int i = 0; i < 9; ++i) {
    const std::size_t last = verify::next_token_window(sequence, T, window.data());
    net.forward_quantized(window.data(), 1, t);
    sequence.push_back(verify::greedy_token(net.integers().logits.data() + last * 256, 256));
  }
  EXPECT_EQ(g.tokens, sequence);
  EXPECT_THROW(verify::generate(*verify::find_engine("int"), b, {}, 4), std::invalid_argument);
}

TEST(TransformerExport, GenerationWindowAndTies) {
  std::vector<std::uint8_t> window(4);
  EXPECT_EQ(verify::next_token_window({7, 8}, 4, window.data()), 1u);
  EXPECT_EQ(window, (std::vector<std::uint8_t>{7, 8, 0, 0}));
  EXPECT_EQ(verify::next_token_window({1, 2, 3, 4, 5, 6}, 4, window.data()), 3u);
  EXPECT_EQ(window, (std::vector<std::uint8_t>{3, 4, 5, 6}));
  const std::int32_t logits[] = {-4, 9, 2, 9};
  EXPECT_EQ(verify::greedy_token(logits, 4), 1);
}

}  // namespace
}  // namespace qathw
