// The transformer's ops in the op graph: a tiny BitNet decoder built by hand in the trainer's op
// order (embed, RMSNorm, Q/K/V with per-head and per-token pairs, causal attention, the squared
// ReLU FFN, the LM head). The checks accept it, the bundle keeps every field and table through a
// save and load, and the integer engine's every output equals a forward written here straight
// from the arith rules. Malformed graphs are refused naming the manifest field.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <set>
#include <string>
#include <vector>

#include <unistd.h>

#include <nlohmann/json.hpp>

#include "qathw/model/accelerator_layers.h"
#include "qathw/model/bundle.h"
#include "qathw/model/graph.h"
#include "qathw/model/int_engine.h"
#include "qathw/target/target_spec.h"
#include "../arith/test_support.h"

namespace qathw::model {
namespace {

constexpr int kT = 6, kWidth = 16, kHeads = 2, kFfn = 32, kVocabulary = 256;

Op op(OpType type, const std::string& name, const std::string& in, const std::string& out) {
  Op o;
  o.type = type;
  o.name = name;
  o.input = in;
  o.output = out;
  return o;
}

// A pair m 2^-shift with a random mantissa of the target's 16 bits' top half.
arith::FixedPoint pair(std::mt19937_64& rng, int shift) {
  return {std::uniform_int_distribution<std::int64_t>(1 << 15, (1 << 16) - 1)(rng), shift};
}

LinearParams random_linear(int in, int out, const arith::Format& f, std::mt19937_64& rng) {
  LinearParams p;
  p.in = in;
  p.out = out;
  p.format = f.weights;
  p.packed.assign(arith::packed_bytes(static_cast<std::size_t>(in) * out, f.weights), 0);
  std::uniform_int_distribution<int> code(-arith::weight_qmax(f.weights), arith::weight_qmax(f.weights));
  for (std::size_t k = 0; k < static_cast<std::size_t>(in) * out; ++k)
    arith::store_code(p.packed.data(), k, code(rng), f.weights);
  for (int n = 0; n < out; ++n) p.requant.push_back(pair(rng, 16));
  return p;
}

// One decoder layer and the head, as the trainer orders them. Op indices (used below):
//  0 embed  1 norm1  2 norm1.quantize  3 q  4 k  5 v  6 q.quantize (2 groups)  7 k.quantize
//  8 v.quantize  9 scores  10 softmax  11 attend  12 attend.quantize  13 o  14 add1  15 norm2
//  16 norm2.quantize  17 up  18 squared_relu  19 sq.quantize  20 down  21 add2  22 norm_f
//  23 norm_f.quantize  24 head
Graph transformer_graph(const arith::Format& f, std::mt19937_64& rng) {
  Graph g;
  g.input = "tokens";
  const auto values = [&](const std::string& name, int features) { g.tensors.push_back({name, DType::Values, kT, features}); };
  const auto codes = [&](const std::string& name, int features) { g.tensors.push_back({name, DType::Codes, kT, features}); };
  g.tensors.push_back({"tokens", DType::Pixels, kT, 1});
  std::uniform_int_distribution<std::int32_t> table(-3000, 3000);
  Op embed = op(OpType::Embed, "embed", "tokens", "embed");
  embed.embed.vocabulary = kVocabulary;
  embed.embed.positions = kT + 2;
  embed.embed.width = kWidth;
  for (int k = 0; k < kVocabulary * kWidth; ++k) embed.embed.tokens.push_back(table(rng));
  for (int k = 0; k < (kT + 2) * kWidth; ++k) embed.embed.positions_table.push_back(table(rng));
  embed.pairs = {pair(rng, 16), pair(rng, 16)};
  values("embed", kWidth);
  g.ops.push_back(embed);

  const auto norm = [&](const std::string& name, const std::string& in) {
    Op n = op(OpType::RmsNorm, name, in, name);
    for (int i = 0; i < kWidth; ++i) n.pairs.push_back(pair(rng, 4));  // gains about 2^11 .. 2^12
    n.eps = 7;
    values(name, kWidth);
    g.ops.push_back(n);
  };
  const auto quantize = [&](const std::string& in, int features, int groups = 1) {
    Op q = op(OpType::Quantize, in + ".quantize", in, in + ".codes");
    q.groups = groups;
    codes(in + ".codes", features);
    g.ops.push_back(q);
  };
  const auto linear = [&](const std::string& name, const std::string& in, int from, int to) {
    Op l = op(OpType::Linear, name, in, name);
    l.linear = random_linear(from, to, f, rng);
    values(name, to);
    g.ops.push_back(l);
  };

  norm("l0.norm1", "embed");
  quantize("l0.norm1", kWidth);
  linear("l0.q", "l0.norm1.codes", kWidth, kWidth);
  linear("l0.k", "l0.norm1.codes", kWidth, kWidth);
  linear("l0.v", "l0.norm1.codes", kWidth, kWidth);
  quantize("l0.q", kWidth, kHeads);
  for (const char* kv : {"l0.k", "l0.v"}) {  // static steps, the pair following the norm's absmax
    Op q = op(OpType::Quantize, std::string(kv) + ".quantize", kv, std::string(kv) + ".codes");
    q.pairs = {pair(rng, 31)};
    q.factors = {"l0.norm1.codes"};
    codes(std::string(kv) + ".codes", kWidth);
    g.ops.push_back(q);
  }
  Op scores = op(OpType::Scores, "l0.scores", "l0.q.codes", "l0.scores");
  scores.residual = "l0.k.codes";
  scores.groups = kHeads;
  scores.pairs = {pair(rng, 38)};
  scores.factors = {"l0.norm1.codes", "l0.q.codes"};
  values("l0.scores", kHeads * kT);
  g.ops.push_back(scores);
  Op softmax = op(OpType::Softmax, "l0.softmax", "l0.scores", "l0.probs");
  softmax.groups = kHeads;
  softmax.softmax = {8, 20, 8};
  g.tensors.push_back({"l0.probs", DType::Probs, kT, kHeads * kT});
  g.ops.push_back(softmax);
  Op attend = op(OpType::Attend, "l0.attend", "l0.probs", "l0.attend");
  attend.residual = "l0.v.codes";
  attend.groups = kHeads;
  values("l0.attend", kWidth);
  g.ops.push_back(attend);
  quantize("l0.attend", kWidth);
  linear("l0.o", "l0.attend.codes", kWidth, kWidth);
  Op add1 = op(OpType::Add, "l0.add1", "embed", "l0.add1");
  add1.residual = "l0.o";
  add1.pairs = {{1 << 15, 15}, pair(rng, 30)};
  add1.factors = {"l0.attend.codes"};
  values("l0.add1", kWidth);
  g.ops.push_back(add1);

  norm("l0.norm2", "l0.add1");
  quantize("l0.norm2", kWidth);
  linear("l0.up", "l0.norm2.codes", kWidth, kFfn);
  Op sq = op(OpType::SquaredRelu, "l0.sq", "l0.up", "l0.sq");
  sq.shift = 5;
  values("l0.sq", kFfn);
  g.ops.push_back(sq);
  quantize("l0.sq", kFfn);
  linear("l0.down", "l0.sq.codes", kFfn, kWidth);
  Op add2 = op(OpType::Add, "l0.add2", "l0.add1", "l0.add2");
  add2.residual = "l0.down";
  add2.pairs = {{1 << 15, 15}, pair(rng, 55)};
  add2.factors = {"l0.sq.codes", "l0.norm2.codes", "l0.norm2.codes"};
  values("l0.add2", kWidth);
  g.ops.push_back(add2);

  norm("norm_f", "l0.add2");
  quantize("norm_f", kWidth);
  linear("head", "norm_f.codes", kWidth, kVocabulary);
  g.output = "head";
  return g;
}

Bundle sequence_bundle(Graph g) {
  Bundle b;
  b.target = target::builtin_target("ternary-asic");
  b.target_hash = target::content_hash(b.target);
  b.input_kind = InputKind::Sequence;
  b.context = kT;
  b.classes = kVocabulary;
  b.graph = std::move(g);
  return b;
}

// ---- the forward, straight from the arith rules ------------------------------------------------

using Ints = std::vector<std::int64_t>;

struct Reference {
  std::map<std::string, Ints> tensors;
  std::map<std::string, std::pair<Ints, int>> amax;  // dynamic codes: absmax per (token, group), groups
  std::vector<Ints> outputs;                         // per op
};

Reference reference_forward(const Bundle& b, const std::vector<std::uint8_t>& tokens) {
  const Graph& g = b.graph;
  const arith::Format& f = b.target.format;
  const arith::VectorUnit vu{};
  Reference ref;
  ref.tensors[g.input] = Ints(tokens.begin(), tokens.end());
  // The factors of `o` at token t and head h: each dynamic quantizer's absmax there.
  const auto token_pair = [&](const Op& o, arith::FixedPoint base, int t, int h) {
    std::vector<std::int64_t> n;
    for (const std::string& name : o.factors) {
      const auto& [a, groups] = ref.amax.at(name);
      n.push_back(groups == 1 ? a[t] : a[t * groups + h]);
    }
    return arith::token_pair(base, n.data(), static_cast<int>(n.size()), f).value;
  };
  for (const Op& o : g.ops) {
    const Ints& x = ref.tensors.at(o.input);
    const Tensor& xs = g.tensor(o.input);
    const int T = xs.tokens, F = xs.features;
    const Tensor& ys = g.tensor(o.output);
    Ints y(ys.size(), 0);
    switch (o.type) {
      case OpType::Embed:
        for (int t = 0; t < T; ++t)
          for (int i = 0; i < o.embed.width; ++i)
            y[t * o.embed.width + i] = arith::add_aligned(o.embed.tokens[x[t] * o.embed.width + i], o.pairs[0],
                                                          o.embed.positions_table[t * o.embed.width + i], o.pairs[1], f);
        break;
      case OpType::RmsNorm: {
        const int in_bits = std::min(f.acc_bits, arith::rmsnorm_max_input_bits(F));
        for (int t = 0; t < T; ++t)
          arith::rmsnorm_token(x.data() + t * F, F, in_bits, o.eps, o.pairs.data(), f.acc_bits, y.data() + t * F, f);
        break;
      }
      case OpType::Quantize:
        if (o.pairs.empty()) {
          const int width = F / o.groups;
          Ints a(static_cast<std::size_t>(T) * o.groups);
          for (int t = 0; t < T; ++t)
            for (int q = 0; q < o.groups; ++q) {
              std::int64_t m = 0;
              for (int k = 0; k < width; ++k) m = std::max<std::int64_t>(m, std::llabs(x[t * F + q * width + k]));
              a[t * o.groups + q] = m;
              const arith::FixedPoint inv = arith::reciprocal(m, arith::act_qmax(f.act_bits), f);
              for (int k = 0; k < width; ++k)
                y[t * F + q * width + k] = arith::quantize_act(x[t * F + q * width + k], inv, f.act_bits, f.rounding);
            }
          ref.amax[o.output] = {a, o.groups};
        } else {
          for (int t = 0; t < T; ++t) {
            const arith::FixedPoint p = token_pair(o, o.pairs[0], t, 0);
            for (int k = 0; k < F; ++k) y[t * F + k] = arith::quantize_act(x[t * F + k], p, f.act_bits, f.rounding);
          }
        }
        break;
      case OpType::Linear: {
        const std::vector<std::int8_t> w = o.linear.codes();
        for (int t = 0; t < T; ++t)
          for (int n = 0; n < o.linear.out; ++n) {
            std::vector<std::int16_t> xt(x.begin() + t * F, x.begin() + (t + 1) * F);
            const std::int64_t acc = arith::dot(xt.data(), w.data() + n * F, F, b.target.array.lanes, f);
            y[t * o.linear.out + n] = arith::epilogue(acc, o.linear.requant[n], false, f);
          }
        break;
      }
      case OpType::Add: {
        const Ints& r = ref.tensors.at(o.residual);
        for (int t = 0; t < T; ++t) {
          const arith::FixedPoint p = o.factors.empty() ? o.pairs[1] : token_pair(o, o.pairs[1], t, 0);
          for (int k = 0; k < F; ++k) y[t * F + k] = arith::add_aligned(x[t * F + k], o.pairs[0], r[t * F + k], p, f);
        }
        break;
      }
      case OpType::SquaredRelu:
        for (std::size_t k = 0; k < x.size(); ++k) y[k] = arith::squared_relu(x[k], o.shift, f.acc_bits, f.rounding);
        break;
      case OpType::Scores: {
        const Ints& k = ref.tensors.at(o.residual);
        const int H = o.groups, dh = F / H;
        for (int t = 0; t < T; ++t)
          for (int h = 0; h < H; ++h) {
            const arith::FixedPoint p = token_pair(o, o.pairs[0], t, h);
            for (int j = 0; j <= t; ++j) {  // the causal keys; the rest stay 0
              const std::int64_t acc = arith::vector_dot(x.data() + t * F + h * dh, k.data() + j * F + h * dh, dh, vu);
              y[(t * H + h) * T + j] = arith::requantize(acc, p, f.rounding, 32);
            }
          }
        break;
      }
      case OpType::Softmax: {
        const arith::Exp2Table table = arith::exp2_table(o.softmax.index_bits, o.softmax.value_bits, f.rounding);
        for (int t = 0; t < T; ++t)
          for (int h = 0; h < o.groups; ++h) {
            const std::size_t at = (static_cast<std::size_t>(t) * o.groups + h) * T;
            arith::softmax_row(x.data() + at, T, t + 1, table, o.softmax.prob_bits, f, y.data() + at);
          }
        break;
      }
      case OpType::Attend: {
        // No partial sum can saturate here (6 x 255 x 127): the exact sum is the unit's.
        const Ints& v = ref.tensors.at(o.residual);
        const int H = o.groups, D = g.tensor(o.residual).features, dh = D / H;
        for (int t = 0; t < T; ++t)
          for (int h = 0; h < H; ++h)
            for (int e = 0; e < dh; ++e) {
              std::int64_t sum = 0;
              for (int j = 0; j <= t; ++j) sum += x[(t * H + h) * T + j] * v[j * D + h * dh + e];
              y[t * D + h * dh + e] = arith::saturate(sum, vu.acc_bits);
            }
        break;
      }
      default:
        ADD_FAILURE() << "op type " << to_string(o.type) << " not in the reference";
    }
    ref.tensors[o.output] = y;
    ref.outputs.push_back(y);
  }
  return ref;
}

class TransformerGraph : public ::testing::Test {
 protected:
  void SetUp() override {
    seed_ = test::test_seed();
    rng_.seed(seed_);
    bundle_ = sequence_bundle(transformer_graph(target::builtin_target("ternary-asic").format, rng_));
    dir_ = std::filesystem::temp_directory_path() /
           ("qathw-transformer-graph-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::vector<std::uint8_t> random_tokens() {
    std::vector<std::uint8_t> t(kT);
    for (auto& v : t) v = static_cast<std::uint8_t>(std::uniform_int_distribution<int>(0, 255)(rng_));
    return t;
  }

  // validate() must refuse `g` naming `field`.
  void expect_refused(const Graph& g, const std::string& field, const std::string& fragment = "") {
    try {
      validate(g, bundle_.target.format);
      ADD_FAILURE() << "accepted; expected an error at " << field << "; " << test::seed_note(seed_);
    } catch (const GraphError& e) {
      EXPECT_EQ(e.field(), field) << e.what() << "; " << test::seed_note(seed_);
      EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
    }
  }

  std::uint64_t seed_ = 0;
  std::mt19937_64 rng_;
  Bundle bundle_;
  std::filesystem::path dir_;
};

void expect_same_ops(const Graph& a, const Graph& b) {
  ASSERT_EQ(a.ops.size(), b.ops.size());
  for (std::size_t i = 0; i < a.ops.size(); ++i) {
    const Op& x = a.ops[i];
    const Op& y = b.ops[i];
    SCOPED_TRACE("op " + x.name);
    EXPECT_EQ(x.type, y.type);
    EXPECT_EQ(x.name, y.name);
    EXPECT_EQ(x.input, y.input);
    EXPECT_EQ(x.output, y.output);
    EXPECT_EQ(x.groups, y.groups);
    EXPECT_EQ(x.residual, y.residual);
    ASSERT_EQ(x.pairs.size(), y.pairs.size());
    for (std::size_t k = 0; k < x.pairs.size(); ++k) {
      EXPECT_EQ(x.pairs[k].mantissa, y.pairs[k].mantissa);
      EXPECT_EQ(x.pairs[k].shift, y.pairs[k].shift);
    }
    EXPECT_EQ(x.factors, y.factors);
    EXPECT_EQ(x.shift, y.shift);
    EXPECT_EQ(x.eps, y.eps);
    EXPECT_EQ(x.softmax.index_bits, y.softmax.index_bits);
    EXPECT_EQ(x.softmax.value_bits, y.softmax.value_bits);
    EXPECT_EQ(x.softmax.prob_bits, y.softmax.prob_bits);
    EXPECT_EQ(x.embed.vocabulary, y.embed.vocabulary);
    EXPECT_EQ(x.embed.positions, y.embed.positions);
    EXPECT_EQ(x.embed.width, y.embed.width);
    EXPECT_EQ(x.embed.tokens, y.embed.tokens);
    EXPECT_EQ(x.embed.positions_table, y.embed.positions_table);
    EXPECT_EQ(x.linear.packed, y.linear.packed);
    ASSERT_EQ(x.linear.requant.size(), y.linear.requant.size());
    for (std::size_t k = 0; k < x.linear.requant.size(); ++k) {
      EXPECT_EQ(x.linear.requant[k].mantissa, y.linear.requant[k].mantissa);
      EXPECT_EQ(x.linear.requant[k].shift, y.linear.requant[k].shift);
    }
  }
  ASSERT_EQ(a.tensors.size(), b.tensors.size());
  for (std::size_t i = 0; i < a.tensors.size(); ++i) {
    EXPECT_EQ(a.tensors[i].name, b.tensors[i].name);
    EXPECT_EQ(a.tensors[i].dtype, b.tensors[i].dtype);
    EXPECT_EQ(a.tensors[i].tokens, b.tensors[i].tokens);
    EXPECT_EQ(a.tensors[i].features, b.tensors[i].features);
  }
}

TEST_F(TransformerGraph, ValidatesAndTheFusedEnginesRefuseIt) {
  EXPECT_NO_THROW(validate(bundle_.graph, bundle_.target.format)) << test::seed_note(seed_);
  const AcceleratorLowering l = accelerator_layers(bundle_.graph);
  ASSERT_TRUE(l.unsupported.has_value());
  EXPECT_NE(l.unsupported->find("transformer"), std::string::npos) << *l.unsupported;
  EXPECT_TRUE(l.layers.empty());
}

TEST_F(TransformerGraph, EngineEqualsTheArithRulesOpByOp) {
  const IntEngine engine(bundle_);
  for (int sample = 0; sample < 8; ++sample) {
    const std::vector<std::uint8_t> tokens = random_tokens();
    const OpOutputs out = engine.run(tokens.data());
    const Reference ref = reference_forward(bundle_, tokens);
    ASSERT_EQ(out.size(), ref.outputs.size());
    for (std::size_t i = 0; i < out.size(); ++i) {
      ASSERT_EQ(out[i].size(), ref.outputs[i].size()) << bundle_.graph.ops[i].name;
      for (std::size_t k = 0; k < out[i].size(); ++k)
        ASSERT_EQ(out[i][k], ref.outputs[i][k])
            << "op " << bundle_.graph.ops[i].name << " element " << k << ", sample " << sample << "; "
            << test::seed_note(seed_);
    }
    // The integers are meaningful, not saturated or all zero: the first query's single key takes
    // probability 1 (255), masked scores and probabilities are 0, each row's codes sum near 255.
    const std::vector<std::int32_t>& scores = out[9];
    const std::vector<std::int32_t>& probs = out[10];
    for (int t = 0; t < kT; ++t)
      for (int h = 0; h < kHeads; ++h) {
        const std::size_t at = static_cast<std::size_t>(t * kHeads + h) * kT;
        int sum = 0;
        for (int j = 0; j < kT; ++j) {
          if (j > t) {
            EXPECT_EQ(scores[at + j], 0);
            EXPECT_EQ(probs[at + j], 0);
          }
          EXPECT_LT(std::abs(scores[at + j]), 1 << 24) << "scores near saturation; " << test::seed_note(seed_);
          sum += probs[at + j];
        }
        EXPECT_NEAR(sum, 255, 2 + t) << "row " << t << ", head " << h;
        if (t == 0) {
          EXPECT_EQ(probs[at], 255);
        }
      }
    std::set<std::int32_t> distinct(scores.begin(), scores.end());
    EXPECT_GT(distinct.size(), 10u) << test::seed_note(seed_);
    std::set<std::int32_t> logits(out[24].begin(), out[24].end());
    EXPECT_GT(logits.size(), 100u) << test::seed_note(seed_);
    const std::int64_t top = arith::signed_max(bundle_.target.format.acc_bits);
    for (const std::size_t i : {14u, 21u, 24u})
      for (const std::int32_t v : out[i]) EXPECT_LT(std::abs(v), top) << bundle_.graph.ops[i].name;
  }
}

TEST_F(TransformerGraph, BundleRoundTripKeepsEveryFieldAndEveryOutput) {
  const std::filesystem::path path = dir_ / "model.qhw";
  save_bundle(path, bundle_);
  const Bundle loaded = load_bundle(path);
  EXPECT_TRUE(loaded.sequence());
  EXPECT_EQ(loaded.context, kT);
  EXPECT_EQ(loaded.classes, kVocabulary);
  EXPECT_EQ(loaded.features(), static_cast<std::size_t>(kT));
  expect_same_ops(bundle_.graph, loaded.graph);

  const nlohmann::json m = nlohmann::json::parse(std::ifstream(path / "manifest.json"));
  EXPECT_EQ(m["input"], (nlohmann::json{{"tokens", kT}, {"encoding", "uint8 byte tokens"}}));
  EXPECT_EQ(m["ops"][9]["keys"], "l0.k.codes");
  EXPECT_EQ(m["ops"][9]["factors"], (nlohmann::json{"l0.norm1.codes", "l0.q.codes"}));
  EXPECT_EQ(m["ops"][11]["values"], "l0.v.codes");
  EXPECT_EQ(m["ops"][6]["groups"], kHeads);
  EXPECT_FALSE(m["ops"][2].contains("groups"));  // one group: the field of an image bundle's quantizer
  EXPECT_EQ(m["ops"][10]["softmax"], (nlohmann::json{{"index_bits", 8}, {"value_bits", 20}, {"prob_bits", 8}}));
  EXPECT_EQ(m["ops"][18]["shift"], 5);
  EXPECT_EQ(m["ops"][1]["eps"], 7);
  EXPECT_EQ(m["ops"][1]["pairs"].size(), static_cast<std::size_t>(kWidth));
  EXPECT_EQ(m["ops"][0]["embed"]["token_table"]["bytes"], kVocabulary * kWidth * 4);

  const IntEngine a(bundle_), b(loaded);
  for (int sample = 0; sample < 4; ++sample) {
    const std::vector<std::uint8_t> tokens = random_tokens();
    EXPECT_EQ(a.run(tokens.data()), b.run(tokens.data())) << test::seed_note(seed_);
  }
  // Samples in parallel: the output rows of each sequence.
  std::vector<std::uint8_t> batch;
  for (int s = 0; s < 3; ++s) {
    const auto t = random_tokens();
    batch.insert(batch.end(), t.begin(), t.end());
  }
  const std::vector<std::int32_t> logits = b.run_batch(batch.data(), 3);
  ASSERT_EQ(logits.size(), static_cast<std::size_t>(3 * kT * kVocabulary));
  const OpOutputs second = b.run(batch.data() + kT);
  EXPECT_TRUE(std::equal(second[b.output_op()].begin(), second[b.output_op()].end(),
                         logits.begin() + kT * kVocabulary));
}

TEST_F(TransformerGraph, CorruptEmbeddingTableFailsItsChecksum) {
  const std::filesystem::path path = dir_ / "model.qhw";
  save_bundle(path, bundle_);
  const nlohmann::json m = nlohmann::json::parse(std::ifstream(path / "manifest.json"));
  const std::size_t offset = m["ops"][0]["embed"]["position_table"]["offset"].get<std::size_t>() + 5;
  {
    std::fstream w(path / "weights.bin", std::ios::in | std::ios::out | std::ios::binary);
    w.seekg(static_cast<std::streamoff>(offset));
    char c = 0;
    w.read(&c, 1);
    c = static_cast<char>(c ^ 0x10);
    w.seekp(static_cast<std::streamoff>(offset));
    w.write(&c, 1);
  }
  try {
    load_bundle(path);
    ADD_FAILURE() << "a corrupt embedding table loaded";
  } catch (const BundleError& e) {
    EXPECT_NE(std::string(e.what()).find("checksum mismatch in ops[0].embed.position_table"), std::string::npos)
        << e.what();
  }
}

TEST_F(TransformerGraph, ImageCommandsKnowASequenceBundle) {
  // A sequence bundle whose manifest says it holds images: the embedding reads byte tokens.
  const std::filesystem::path path = dir_ / "model.qhw";
  Bundle b = bundle_;
  b.input_kind = InputKind::Image;
  b.rows = kT;
  b.cols = 1;
  b.classes = kT * kVocabulary;
  save_bundle(path, b);
  try {
    load_bundle(path);
    ADD_FAILURE() << "an embedding of an image loaded";
  } catch (const BundleError& e) {
    EXPECT_NE(std::string(e.what()).find("field 'input.encoding'"), std::string::npos) << e.what();
  }
}

TEST_F(TransformerGraph, RefusesMalformedOpsNamingTheField) {
  const Graph good = bundle_.graph;
  Graph g = good;
  g.ops[7].factors = {"l0.v.codes"};  // written later, and by a static quantizer
  expect_refused(g, "ops[7].factors[0]");
  g = good;
  g.ops[14].factors = {"l0.k.codes"};  // a static quantizer's codes: no absmax of its own
  expect_refused(g, "ops[14].factors[0]", "dynamic quantize");
  g = good;
  g.ops[14].factors = {"l0.o"};  // values, not codes of a quantizer
  expect_refused(g, "ops[14].factors[0]", "dynamic quantize");
  g = good;
  g.ops[7].factors = {"l0.q.codes"};  // two groups: only scores take a per-head factor
  expect_refused(g, "ops[7].factors[0]", "groups");
  g = good;
  g.ops[6].groups = 3;  // does not divide the width
  expect_refused(g, "ops[6].groups", "divide");
  g = good;
  g.ops[9].groups = 3;
  expect_refused(g, "ops[9].groups", "divide");
  g = good;
  g.ops[1].pairs.pop_back();  // a gain pair per feature
  expect_refused(g, "ops[1].pairs", "gain pair per feature");
  g = good;
  g.ops[9].pairs.push_back({1, 1});
  expect_refused(g, "ops[9].pairs");
  g = good;
  g.ops[0].pairs.pop_back();
  expect_refused(g, "ops[0].pairs");
  g = good;
  g.ops[7].pairs.clear();  // dynamic, yet with factors
  expect_refused(g, "ops[7].factors");
  g = good;
  g.ops[9].pairs[0].mantissa = 1 << 16;  // outside the scale format
  expect_refused(g, "ops[9].pairs");
  g = good;
  g.ops[1].eps = std::uint64_t{1} << 62;  // 16 features x (2^46 + 2^62) exceeds 64 bits
  expect_refused(g, "ops[1].eps", "64 bits");
  g = good;
  g.ops[9].input = "l0.q";  // values, not codes
  expect_refused(g, "ops[9].input", "codes");
  g = good;
  g.ops[9].residual = "l0.v";
  expect_refused(g, "ops[9].keys", "codes");
  g = good;
  g.ops[11].residual = "l0.attend.codes";  // written after the attend
  expect_refused(g, "ops[11].values");
  g = good;
  g.ops[11].input = "l0.scores";  // values, not probabilities
  expect_refused(g, "ops[11].input", "probabilities");
  g = good;
  g.ops[10].softmax.prob_bits = 9;  // wider than the vector unit's operands
  expect_refused(g, "ops[10].softmax.prob_bits");
  g = good;
  g.ops[10].softmax.index_bits = 9;
  expect_refused(g, "ops[10].softmax.index_bits");
  g = good;
  g.ops[18].shift = 63;
  expect_refused(g, "ops[18].shift");
  g = good;
  g.ops[0].embed.positions = kT - 1;
  g.ops[0].embed.positions_table.resize(static_cast<std::size_t>(kT - 1) * kWidth);
  expect_refused(g, "ops[0].embed.positions");
  g = good;
  g.ops[0].embed.tokens[3] = 1 << 23;  // beyond the 24-bit accumulator
  expect_refused(g, "ops[0].embed.token_table");
  g = good;
  g.ops[0].embed.vocabulary = 128;
  expect_refused(g, "ops[0].embed.vocabulary");
  g = good;
  g.ops[13].factors = {"l0.attend.codes"};  // a linear op's pairs do not follow the token
  expect_refused(g, "ops[13].factors");
  g = good;
  g.ops[18].groups = 2;
  expect_refused(g, "ops[18].groups");
}

TEST_F(TransformerGraph, ManifestFieldsAreCheckedOnLoad) {
  const std::filesystem::path path = dir_ / "model.qhw";
  save_bundle(path, bundle_);
  const nlohmann::json original = nlohmann::json::parse(std::ifstream(path / "manifest.json"));
  const auto rejected = [&](nlohmann::json m, const std::string& fragment) {
    std::ofstream(path / "manifest.json") << m.dump(2);
    try {
      load_bundle(path);
      ADD_FAILURE() << "loaded; expected " << fragment;
    } catch (const BundleError& e) {
      EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
    }
  };
  nlohmann::json m = original;
  m["ops"][9]["factors"][0] = "l0.v.codes";
  rejected(m, "field 'ops[9].factors[0]'");
  m = original;
  m["ops"][9]["factors"][1] = 3;
  rejected(m, "field 'ops[9].factors[1]': must be a tensor name");
  m = original;
  m["ops"][6]["groups"] = 5;
  rejected(m, "field 'ops[6].groups'");
  m = original;
  m["ops"][1]["eps"] = -1;
  rejected(m, "field 'ops[1].eps'");
  m = original;
  m["ops"][1]["pairs"].erase(0);
  rejected(m, "field 'ops[1].pairs': has 15 pairs; needs 16");
  m = original;
  m["ops"][10]["softmax"]["value_bits"] = 25;
  rejected(m, "field 'ops[10].softmax.value_bits'");
  m = original;
  m["ops"][11].erase("values");
  rejected(m, "field 'ops[11].values': missing");
  m = original;
  m["ops"][18]["eps"] = 1;
  rejected(m, "field 'ops[18].eps': unknown field");
  m = original;
  m["ops"][0]["embed"]["token_table"]["bytes"] = 4;
  rejected(m, "field 'ops[0].embed.token_table.bytes'");
  m = original;
  m["input"]["tokens"] = kT + 1;
  rejected(m, "field 'input.tokens'");
  m = original;
  m["tensors"][11]["dtype"] = "codes";  // l0.probs
  rejected(m, "field 'ops[10].output'");
}

}  // namespace
}  // namespace qathw::model
