// The BitNet transformer (training/include/qathw/training/transformer_net.h): the FP32 twin's
// hand-written gradients against finite differences, the QAT forward's integers against a plainly
// written integer reference (scalar loops over the arith rules) on random tiny models of both
// built-in targets, results independent of the thread count, the loss falling on a tiny corpus,
// checkpoints resuming a run, and the model file's errors.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "qathw/kernels/dense.h"
#include "qathw/kernels/int8_gemm.h"
#include "qathw/model/model_spec.h"
#include "qathw/target/target_spec.h"
#include "qathw/training/transformer_net.h"
#include "temp_dir.h"

namespace qathw::training {
namespace {

TransformerSpec tiny_spec(int width = 8, int heads = 2, int ffn = 16, int layers = 2, int context = 5) {
  TransformerSpec s;
  s.name = "tiny";
  s.origin = "test";
  s.width = width;
  s.heads = heads;
  s.ffn = ffn;
  s.layers = layers;
  s.context = context;
  return s;
}

std::vector<std::uint8_t> random_tokens(std::size_t n, std::uint64_t seed, int range = 256) {
  std::mt19937_64 rng(seed);
  std::vector<std::uint8_t> t(n);
  for (auto& v : t) v = static_cast<std::uint8_t>(rng() % static_cast<unsigned>(range));
  return t;
}

// Summed cross-entropy of the logits (double), and its gradient.
double cross_entropy(const std::vector<float>& logits, const std::vector<std::uint8_t>& targets, int vocab,
                     std::vector<float>* dlogits) {
  double loss = 0;
  if (dlogits) dlogits->assign(logits.size(), 0.0f);
  for (std::size_t t = 0; t < targets.size(); ++t) {
    const float* row = logits.data() + t * vocab;
    double top = row[0];
    for (int v = 1; v < vocab; ++v) top = std::max(top, static_cast<double>(row[v]));
    double sum = 0;
    for (int v = 0; v < vocab; ++v) sum += std::exp(row[v] - top);
    loss += std::log(sum) + top - row[targets[t]];
    if (dlogits)
      for (int v = 0; v < vocab; ++v)
        (*dlogits)[t * vocab + v] = static_cast<float>(std::exp(row[v] - top) / sum - (v == targets[t] ? 1.0 : 0.0));
  }
  return loss;
}

// Every parameter tensor's gradient (the quantizer scales excepted) against central differences
// at a few seeded entries.
TEST(TransformerNet, Fp32GradientsMatchFiniteDifferences) {
  const std::uint64_t seed = 11;
  TransformerNet net(tiny_spec(), seed);
  std::mt19937_64 rng(seed);
  for (TransformerNet::Param& p : net.params())  // gains away from 1, so their gradients differ
    if (p.rows == 1 && p.name != "log_scales")
      for (float& g : p.w) g = std::uniform_real_distribution<float>(-0.5f, 0.5f)(rng);
  const int batch = 2, T = net.spec().context;
  const std::vector<std::uint8_t> in = random_tokens(batch * T, seed + 1), out = random_tokens(batch * T, seed + 2);
  std::vector<float> dlogits;
  cross_entropy(net.forward(in.data(), batch), out, 256, &dlogits);
  std::vector<std::vector<float>> grads;
  net.backward(dlogits, grads);
  const float h = 2e-3f;
  int checked = 0;
  for (std::size_t i = 0; i < net.params().size(); ++i) {
    TransformerNet::Param& p = net.params()[i];
    if (p.name == "log_scales") continue;
    for (int n = 0; n < 6; ++n) {
      std::size_t k = rng() % p.w.size();
      if (p.name == "embedding") k = static_cast<std::size_t>(in[rng() % in.size()]) * p.cols + rng() % p.cols;  // a used row
      const float w0 = p.w[k];
      p.w[k] = w0 + h;
      const double up = cross_entropy(net.forward(in.data(), batch), out, 256, nullptr);
      p.w[k] = w0 - h;
      const double down = cross_entropy(net.forward(in.data(), batch), out, 256, nullptr);
      p.w[k] = w0;
      const double fd = (up - down) / (2.0 * h);
      const double an = grads[i][k];
      EXPECT_NEAR(an, fd, 2e-2 * std::max(std::fabs(an), std::fabs(fd)) + 2e-3)
          << "seed " << seed << ": " << p.name << "[" << k << "]";
      ++checked;
    }
  }
  EXPECT_GT(checked, 100);
}

// ---- the integer reference ----------------------------------------------------------------

std::size_t index_of(const TransformerNet& net, const std::string& name) {
  for (std::size_t i = 0; i < net.params().size(); ++i)
    if (net.params()[i].name == name) return i;
  throw std::runtime_error("no parameter " + name);
}

arith::FixedPoint pair_of(double v, const arith::Format& f) {
  if (v == 0.0) return {0, 0};
  const arith::FixedPointResult r = arith::to_fixed_point(v, f);
  EXPECT_EQ(r.status, arith::FixedPointStatus::Ok) << v;
  return r.value;
}

// The accelerator's computation written out plainly, one token and one output at a time.
struct Reference {
  const TransformerNet& net;
  const arith::Format f;
  const int lanes;
  const int T, D, H, dh, F, V;
  const double qmax;

  Reference(const TransformerNet& n, const target::TargetSpec& t)
      : net(n), f(t.format), lanes(t.array.lanes), T(n.spec().context), D(n.spec().width), H(n.spec().heads),
        dh(n.spec().head_dim()), F(n.spec().ffn), V(n.spec().vocabulary),
        qmax(static_cast<double>(arith::act_qmax(t.format.act_bits))) {}

  // RMSNorm of every token with the named gains; the unit of its outputs.
  double norm(const std::vector<std::int32_t>& x, const std::string& gains, std::vector<std::int32_t>& y) const {
    const std::vector<float>& lg = net.params()[index_of(net, gains)].w;
    float top = lg[0];
    for (float g : lg) top = std::max(top, g);
    const double sy = std::ldexp(static_cast<double>(std::exp(top)), -kNormOutputBits);
    std::vector<arith::FixedPoint> pairs;
    for (float g : lg) pairs.push_back(pair_of(static_cast<double>(std::exp(g)) / sy, f));
    const double sx = net.stream_scale();
    const auto eps = static_cast<std::uint64_t>(std::llround(kRmsNormEps / (sx * sx)));
    const int in_bits = std::min(f.acc_bits, arith::rmsnorm_max_input_bits(D));
    y.resize(x.size());
    for (std::size_t t = 0; t < x.size() / D; ++t) {
      const std::int32_t* xt = x.data() + t * D;
      const arith::RmsInverse inv = arith::rms_inverse(arith::sum_squares(xt, D, in_bits), D, eps, f);
      for (int i = 0; i < D; ++i)
        y[t * D + i] = static_cast<std::int32_t>(arith::rmsnorm_value(xt[i], in_bits, inv.inv_rms, pairs[i], f.acc_bits, f.rounding));
    }
    return sy;
  }

  // A static pair times a token's absmax factors, one after another (arith::token_pair).
  arith::FixedPoint follow(double base, std::initializer_list<std::int64_t> factors) const {
    const arith::FixedPointResult r = arith::token_pair(pair_of(base, f), factors.begin(), static_cast<int>(factors.size()), f);
    EXPECT_EQ(r.status, arith::FixedPointStatus::Ok) << base;
    return r.value;
  }
  double reference(const std::string& matrix) const {
    return static_cast<double>(net.quantized(index_of(net, matrix)).reference);
  }

  // BitLinear: per-token codes (their absmax in amax), the array's dot products, the epilogue.
  void linear(const std::vector<std::int32_t>& x, int in, const std::vector<double>& unit_in, const std::string& matrix,
              std::vector<std::int32_t>& z, std::vector<double>& unit_out, std::vector<std::int64_t>& amaxes) const {
    const std::size_t m = index_of(net, matrix);
    const TransformerNet::QuantizedMatrix& q = net.quantized(m);
    const int out = net.params()[m].rows;
    const std::size_t tokens = x.size() / in;
    z.resize(tokens * out);
    unit_out.resize(tokens);
    amaxes.resize(tokens);
    std::vector<std::int32_t> codes(in);
    std::vector<std::int8_t> w(in);
    for (std::size_t t = 0; t < tokens; ++t) {
      std::int64_t amax = 0;
      for (int i = 0; i < in; ++i) amax = std::max<std::int64_t>(amax, std::llabs(x[t * in + i]));
      const arith::FixedPoint inv = arith::token_inv_scale(amax, f);
      for (int i = 0; i < in; ++i) codes[i] = static_cast<std::int32_t>(arith::quantize_act(x[t * in + i], inv, f.act_bits, f.rounding));
      for (int o = 0; o < out; ++o) {
        for (int i = 0; i < in; ++i) w[i] = static_cast<std::int8_t>(q.codes[static_cast<std::size_t>(o) * in + i]);
        const std::int64_t acc = arith::dot(codes.data(), w.data(), in, lanes, f);
        z[t * out + o] = static_cast<std::int32_t>(arith::epilogue(acc, q.requant[o], false, f));
      }
      unit_out[t] = static_cast<double>(amax) * unit_in[t] / qmax * static_cast<double>(q.reference);
      amaxes[t] = amax;
    }
  }

  void add(const std::vector<std::int32_t>& x, const std::vector<std::int32_t>& branch,
           const std::vector<arith::FixedPoint>& pairs, std::vector<std::int32_t>& y) const {
    const arith::FixedPoint one = pair_of(1.0, f);
    y.resize(x.size());
    for (std::size_t t = 0; t < pairs.size(); ++t) {
      const arith::FixedPoint p = pairs[t];
      for (int i = 0; i < D; ++i) y[t * D + i] = static_cast<std::int32_t>(arith::add_aligned(x[t * D + i], one, branch[t * D + i], p, f));
    }
  }

  void check(const std::vector<std::uint8_t>& tokens, int batch, const std::string& what) const {
    const TransformerNet::Integers& got = net.integers();
    const int N = batch * T;
    const double sx = net.stream_scale();
    std::vector<std::int32_t> x(static_cast<std::size_t>(N) * D);
    const std::vector<float>& emb = net.params()[index_of(net, "embedding")].w;
    const std::vector<float>& pos = net.params()[index_of(net, "position")].w;
    const auto integer = [&](float e) {
      return arith::saturate(static_cast<std::int64_t>(arith::round_to_integer(static_cast<double>(e) / sx, f.rounding)),
                             f.acc_bits);
    };
    for (int t = 0; t < N; ++t)
      for (int i = 0; i < D; ++i)
        x[t * D + i] = static_cast<std::int32_t>(
            arith::saturate(integer(emb[tokens[t] * D + i]) + integer(pos[(t % T) * D + i]), f.acc_bits));
    const arith::Exp2Table table = arith::exp2_table(kExp2IndexBits, kExp2ValueBits, f.rounding);
    const arith::VectorUnit vu;
    const std::int64_t qp = arith::prob_qmax(kProbBits);
    std::vector<std::int32_t> n1, q, k, v, o, xm, n2, up, act, down, pv;
    std::vector<double> un, uq, uk, uv, uo, uu, ur, ud;
    std::vector<std::int64_t> a1, a_unused, a_att, a2, a_r;
    std::vector<arith::FixedPoint> add_pairs(N);
    for (int l = 0; l < net.spec().layers; ++l) {
      const TransformerNet::LayerIntegers& g = got.layers[l];
      const std::string p = "layer" + std::to_string(l) + ".";
      const std::string at = what + " layer " + std::to_string(l);
      ASSERT_EQ(g.x, x) << at << " stream";
      const double s1 = norm(x, p + "attention_norm", n1);
      un.assign(N, s1);
      ASSERT_EQ(g.norm1, n1) << at << " norm1";
      linear(n1, D, un, p + "wq", q, uq, a1);
      linear(n1, D, un, p + "wk", k, uk, a1);
      linear(n1, D, un, p + "wv", v, uv, a1);
      ASSERT_EQ(g.q, q) << at << " q";
      ASSERT_EQ(g.k, k) << at << " k";
      ASSERT_EQ(g.v, v) << at << " v";
      const double ks = net.k_step(l), vs = net.v_step(l);
      std::vector<std::int16_t> qc(x.size()), kc(x.size()), vc(x.size());
      std::vector<double> qs(static_cast<std::size_t>(N) * H);
      for (int t = 0; t < N; ++t) {
        const arith::FixedPoint kp = follow(s1 / qmax * reference(p + "wk") / ks, {a1[t]}),
                                vp = follow(s1 / qmax * reference(p + "wv") / vs, {a1[t]});
        for (int h = 0; h < H; ++h) {
          std::int64_t amax = 0;
          for (int e = 0; e < dh; ++e) amax = std::max<std::int64_t>(amax, std::llabs(q[t * D + h * dh + e]));
          const arith::FixedPoint inv = arith::token_inv_scale(amax, f);
          for (int e = 0; e < dh; ++e)
            qc[t * D + h * dh + e] = static_cast<std::int16_t>(arith::quantize_act(q[t * D + h * dh + e], inv, f.act_bits, f.rounding));
          qs[t * H + h] = static_cast<double>(amax);
        }
        for (int i = 0; i < D; ++i) {
          kc[t * D + i] = static_cast<std::int16_t>(arith::quantize_act(k[t * D + i], kp, f.act_bits, f.rounding));
          vc[t * D + i] = static_cast<std::int16_t>(arith::quantize_act(v[t * D + i], vp, f.act_bits, f.rounding));
        }
      }
      ASSERT_EQ(g.q_codes, qc) << at << " q codes";
      ASSERT_EQ(g.k_codes, kc) << at << " k codes";
      ASSERT_EQ(g.v_codes, vc) << at << " v codes";
      pv.assign(x.size(), 0);
      for (int b = 0; b < batch; ++b)
        for (int h = 0; h < H; ++h)
          for (int t = 0; t < T; ++t) {
            const int row = b * T + t;
            const arith::FixedPoint rp =
                follow(TransformerNet::score_pair_value(s1 / qmax * reference(p + "wq") / qmax, ks, dh),
                       {a1[row], static_cast<std::int64_t>(qs[row * H + h])});
            std::vector<std::int32_t> z(T, 0);
            std::vector<std::uint8_t> pr(T, 0);
            for (int j = 0; j < T; ++j) {
              if (!arith::causal_visible(t, j)) continue;
              const std::int64_t a = arith::vector_dot(&qc[row * D + h * dh], &kc[(b * T + j) * D + h * dh], dh, vu);
              z[j] = static_cast<std::int32_t>(arith::requantize(a, rp, f.rounding, 32));
            }
            arith::softmax_row(z.data(), T, arith::causal_count(t), table, kProbBits, f, pr.data());
            const std::size_t r0 = ((static_cast<std::size_t>(b) * H + h) * T + t) * T;
            for (int j = 0; j < T; ++j) {
              ASSERT_EQ(g.scores[r0 + j], z[j]) << at << " score b" << b << " h" << h << " t" << t << " j" << j;
              ASSERT_EQ(g.probs[r0 + j], pr[j]) << at << " prob b" << b << " h" << h << " t" << t << " j" << j;
            }
            for (int e = 0; e < dh; ++e) {
              std::vector<std::int8_t> col(T);
              for (int j = 0; j < T; ++j) col[j] = vc[(b * T + j) * D + h * dh + e];
              pv[row * D + h * dh + e] = static_cast<std::int32_t>(arith::vector_dot(pr.data(), col.data(), t + 1, vu));
            }
          }
      ASSERT_EQ(g.attention, pv) << at << " P V";
      linear(pv, D, std::vector<double>(N, vs / static_cast<double>(qp)), p + "wo", o, uo, a_att);
      ASSERT_EQ(g.o, o) << at << " o";
      for (int t = 0; t < N; ++t)
        add_pairs[t] = follow(vs / static_cast<double>(qp) / qmax * reference(p + "wo") / sx, {a_att[t]});
      add(x, o, add_pairs, xm);
      ASSERT_EQ(g.x_mid, xm) << at << " x_mid";
      const double s2 = norm(xm, p + "ffn_norm", n2);
      un.assign(N, s2);
      ASSERT_EQ(g.norm2, n2) << at << " norm2";
      linear(n2, D, un, p + "wup", up, uu, a2);
      ASSERT_EQ(g.up, up) << at << " up";
      const std::int64_t bound = arith::dot_abs_bound(D, f);
      const int in_bits = std::min(f.acc_bits, arith::bit_length(static_cast<std::uint64_t>(bound)) + 1);
      const int shift = arith::squared_relu_shift(in_bits, f.acc_bits);
      act.resize(up.size());
      ur.resize(N);
      for (int t = 0; t < N; ++t) {
        ur[t] = std::ldexp(uu[t] * uu[t], shift);
        for (int i = 0; i < F; ++i)
          act[t * F + i] = static_cast<std::int32_t>(arith::squared_relu(up[t * F + i], shift, f.acc_bits, f.rounding));
      }
      ASSERT_EQ(g.act, act) << at << " squared ReLU";
      linear(act, F, ur, p + "wdown", down, ud, a_r);
      ASSERT_EQ(g.down, down) << at << " down";
      const double up_unit = s2 / qmax * reference(p + "wup");
      for (int t = 0; t < N; ++t)
        add_pairs[t] = follow(std::ldexp(up_unit * up_unit, shift) / qmax * reference(p + "wdown") / sx,
                              {a_r[t], a2[t], a2[t]});
      add(xm, down, add_pairs, x);
    }
    ASSERT_EQ(got.x_out, x) << what << " stream out";
    std::vector<std::int32_t> nf, logits;
    std::vector<double> ul;
    un.assign(N, norm(x, "final_norm", nf));
    ASSERT_EQ(got.norm, nf) << what << " final norm";
    linear(nf, D, un, "head", logits, ul, a_unused);
    ASSERT_EQ(got.logits, logits) << what << " logits";
    ASSERT_EQ(got.logit_unit, ul) << what << " logit units";
  }
};

// On the int8 GEMM where the processor has it, and on the float GEMM.
TEST(TransformerNet, QuantizedForwardMatchesTheIntegerReference) {
  const bool had_int8 = kernels::int8_gemm_enabled();
  for (const char* target_name : {"ternary-asic", "int4-fpga"}) {
    const target::TargetSpec t = target::builtin_target(target_name);
    for (std::uint64_t seed : {3u, 4u}) {
      kernels::set_int8_gemm_enabled(had_int8 && seed == 3);
      TransformerNet net(tiny_spec(16, 2, 32, 2, 7), seed);
      std::mt19937_64 rng(seed);
      for (TransformerNet::Param& p : net.params())
        if (p.rows == 1 && p.name != "log_scales")
          for (float& g : p.w) g = std::uniform_real_distribution<float>(-0.7f, 0.7f)(rng);
      const int batch = 3;
      const std::vector<std::uint8_t> tokens = random_tokens(static_cast<std::size_t>(batch) * 7, seed + 9);
      net.calibrate(tokens.data(), batch, t.format, 0.99);
      ASSERT_TRUE(net.calibrated());
      net.quantize_weights(t.format);
      const std::vector<float> logits = net.forward_quantized(tokens.data(), batch, t);
      const std::string what = std::string(target_name) + " seed " + std::to_string(seed) +
                               (kernels::int8_gemm_enabled() ? " (int8 GEMM)" : " (float GEMM)");
      Reference(net, t).check(tokens, batch, what);
      const TransformerNet::Integers& z = net.integers();
      for (std::size_t i = 0; i < logits.size(); ++i)
        ASSERT_EQ(logits[i], static_cast<float>(z.logits[i] * z.logit_unit[i / 256])) << what;
      // Attention rows are not degenerate: some probabilities between 0 and 1.
      int between = 0;
      for (std::uint8_t p : z.layers[0].probs) between += p > 0 && p < 255;
      EXPECT_GT(between, 10) << what;
    }
  }
  kernels::set_int8_gemm_enabled(had_int8);
}

TEST(TransformerNet, ResultsDoNotDependOnTheThreadCount) {
  const target::TargetSpec t = target::builtin_target("ternary-asic");
  TransformerNet net(tiny_spec(32, 4, 64, 2, 16), 5);
  const int batch = 8;
  const std::vector<std::uint8_t> in = random_tokens(batch * 16, 6), out = random_tokens(batch * 16, 7);
  net.calibrate(in.data(), batch, t.format, 0.999);
  std::vector<std::vector<float>> grads[2];
  std::vector<std::int32_t> logits[2];
  for (int threads : {1, 2}) {
    kernels::set_threads(threads);
    net.quantize_weights(t.format);
    std::vector<float> dlogits;
    cross_entropy(net.forward_quantized(in.data(), batch, t), out, 256, &dlogits);
    logits[threads - 1] = net.integers().logits;
    net.backward(dlogits, grads[threads - 1]);
  }
  kernels::set_threads(2);
  EXPECT_EQ(logits[0], logits[1]);
  EXPECT_EQ(grads[0], grads[1]);
}

// Heads of 32 lanes and rows of 20 keys: the attention's sums run in whole vectors of 16 and in
// tails (the tiny models above have only tails). The integers against the reference, on both
// targets.
TEST(TransformerNet, QuantizedForwardMatchesTheIntegerReferenceOnWideHeads) {
  for (const char* target_name : {"ternary-asic", "int4-fpga"}) {
    const target::TargetSpec t = target::builtin_target(target_name);
    const std::uint64_t seed = 21;
    TransformerNet net(tiny_spec(64, 2, 64, 1, 20), seed);
    const int batch = 2;
    const std::vector<std::uint8_t> tokens = random_tokens(static_cast<std::size_t>(batch) * 20, seed + 1);
    net.calibrate(tokens.data(), batch, t.format, 0.99);
    net.quantize_weights(t.format);
    net.forward_quantized(tokens.data(), batch, t);
    Reference(net, t).check(tokens, batch, std::string(target_name) + " seed " + std::to_string(seed) + " (wide heads)");
  }
}

// The FP32 twin's logits and gradients on wide heads are the same at 1 and 2 threads, and its
// attention gradients match finite differences.
TEST(TransformerNet, Fp32WideHeadsAreThreadIndependentAndMatchFiniteDifferences) {
  const std::uint64_t seed = 23;
  TransformerNet net(tiny_spec(64, 2, 64, 1, 20), seed);
  const int batch = 2, T = net.spec().context;
  const std::vector<std::uint8_t> in = random_tokens(batch * T, seed + 1), out = random_tokens(batch * T, seed + 2);
  std::vector<std::vector<float>> grads[2];
  std::vector<float> logits[2];
  for (int threads : {1, 2}) {
    kernels::set_threads(threads);
    std::vector<float> dlogits;
    logits[threads - 1] = net.forward(in.data(), batch);
    cross_entropy(logits[threads - 1], out, 256, &dlogits);
    net.backward(dlogits, grads[threads - 1]);
  }
  kernels::set_threads(2);
  EXPECT_EQ(logits[0], logits[1]);
  EXPECT_EQ(grads[0], grads[1]);
  std::mt19937_64 rng(seed);
  const float h = 2e-3f;
  for (const char* name : {"layer0.wq", "layer0.wk", "layer0.wv"}) {
    const std::size_t i = index_of(net, name);
    TransformerNet::Param& p = net.params()[i];
    for (int n = 0; n < 6; ++n) {
      const std::size_t k = rng() % p.w.size();
      const float w0 = p.w[k];
      p.w[k] = w0 + h;
      const double up = cross_entropy(net.forward(in.data(), batch), out, 256, nullptr);
      p.w[k] = w0 - h;
      const double down = cross_entropy(net.forward(in.data(), batch), out, 256, nullptr);
      p.w[k] = w0;
      const double fd = (up - down) / (2.0 * h);
      const double an = grads[0][i][k];
      EXPECT_NEAR(an, fd, 2e-2 * std::max(std::fabs(an), std::fabs(fd)) + 2e-3) << "seed " << seed << ": " << name << "[" << k << "]";
    }
  }
}

// A few steps of AdamW on a short text: the loss falls in both the FP32 and the QAT passes.
TEST(TransformerNet, LossFallsOnATinyCorpus) {
  const target::TargetSpec t = target::builtin_target("ternary-asic");
  const std::string text = "the cat sat on the mat. the dog sat on the log. ";
  std::vector<std::uint8_t> stream;
  for (int r = 0; r < 20; ++r) stream.insert(stream.end(), text.begin(), text.end());
  for (bool quantized : {false, true}) {
    TransformerNet net(tiny_spec(32, 2, 64, 1, 16), 8);
    SequenceSampler sampler(stream, 16, 9, "text");
    if (quantized) {
      const SequenceBatch b = sampler.next(16);
      net.calibrate(b.inputs.data(), b.batch, t.format, 0.999);
    }
    std::vector<std::vector<float>> m, v, grads;
    for (const auto& p : net.params()) m.emplace_back(p.w.size(), 0.0f), v.emplace_back(p.w.size(), 0.0f);
    double first = 0, last = 0;
    for (int step = 0; step < 40; ++step) {
      const SequenceBatch b = sampler.next(8);
      if (quantized) net.quantize_weights(t.format);
      const std::vector<float>& logits =
          quantized ? net.forward_quantized(b.inputs.data(), 8, t) : net.forward(b.inputs.data(), 8);
      std::vector<float> dlogits;
      const double loss = cross_entropy(logits, b.targets, 256, &dlogits) / b.targets.size();
      for (float& d : dlogits) d /= static_cast<float>(b.targets.size());
      net.backward(dlogits, grads);
      kernels::AdamWParams p;
      p.lr = 1e-2f;
      p.step = step + 1;
      for (std::size_t k = 0; k < grads.size(); ++k)
        kernels::adamw_step(net.params()[k].w.data(), grads[k].data(), m[k].data(), v[k].data(), grads[k].size(), p);
      if (step < 3) first += loss / 3;
      if (step >= 37) last += loss / 3;
    }
    EXPECT_LT(last, 0.6 * first) << (quantized ? "QAT" : "FP32") << ": " << first << " -> " << last;
  }
}

// The whole run on a small corpus: every phase reports, and a resumed run restores the same result.
TEST(TransformerNet, TrainingRunResumesFromItsCheckpoints) {
  const target::TargetSpec t = target::builtin_target("ternary-asic");
  TextCorpus corpus;
  corpus.source = "test";
  const std::string a = "a stitch in time saves nine.\n%\n", b = "all that glitters is not gold.\n%\n";
  for (int r = 0; r < 30; ++r) corpus.train.insert(corpus.train.end(), a.begin(), a.end());
  for (int r = 0; r < 4; ++r) corpus.validation.insert(corpus.validation.end(), b.begin(), b.end());
  TrainConfig c;
  c.epochs = 2;
  c.batch = 4;
  c.lr = 5e-3f;
  c.threads = 2;
  c.qat_from_fp32 = true;
  const TransformerSpec spec = tiny_spec(16, 2, 32, 1, 16);
  test::TempDir dir;
  int lines = 0;
  const TextTrainResult r = train_transformer(spec, t, c, 5, corpus, dir.path(), false, [&](const TextProgress&) { ++lines; });
  EXPECT_EQ(lines, 4);
  ASSERT_TRUE(r.fp32.ran && r.ptq.ran && r.qat.ran);
  for (double bpb : {r.fp32.validation_bpb, r.ptq.validation_bpb, r.qat.validation_bpb}) {
    EXPECT_TRUE(std::isfinite(bpb));
    EXPECT_GT(bpb, 0.0);
    EXPECT_LT(bpb, 8.5);
  }
  const TextTrainResult again = train_transformer(spec, t, c, 5, corpus, dir.path(), true, nullptr);
  EXPECT_EQ(again.fp32.epochs_resumed, 2);
  EXPECT_EQ(again.qat.epochs_resumed, 2);
  EXPECT_EQ(again.fp32.validation_bpb, r.fp32.validation_bpb);
  EXPECT_EQ(again.ptq.validation_bpb, r.ptq.validation_bpb);
  EXPECT_EQ(again.qat.validation_bpb, r.qat.validation_bpb);
}

// ---- the model file ---------------------------------------------------------------------------

std::string error_of(const std::string& text) {
  try {
    parse_transformer(text, "m.toml");
  } catch (const model::ModelError& e) {
    return e.what();
  }
  return "(no error)";
}

TEST(TransformerSpec, BuiltinParses) {
  const std::optional<TransformerSpec> s = resolve_transformer("bitnet-tiny");
  ASSERT_TRUE(s);
  EXPECT_EQ(s->origin, "models/bitnet-tiny.toml");
  EXPECT_EQ(s->layers, 2);
  EXPECT_EQ(s->width, 128);
  EXPECT_EQ(s->heads, 4);
  EXPECT_EQ(s->context, 64);
  EXPECT_EQ(s->ffn, 512);
  EXPECT_EQ(s->vocabulary, 256);
  EXPECT_TRUE(s->steps_per_epoch.has_value());
  EXPECT_FALSE(resolve_transformer("lenet").has_value());
  // The image models' parser refuses it by name; it is no image model.
  try {
    model::resolve_model("bitnet-tiny", 10);
    ADD_FAILURE() << "accepted";
  } catch (const model::ModelError& e) {
    EXPECT_NE(std::string(e.what()).find("models/bitnet-tiny.toml: field 'transformer': "), std::string::npos) << e.what();
  }
  for (const std::string& n : model::builtin_model_names()) EXPECT_NE(n, "bitnet-tiny");
}

TEST(TransformerSpec, ErrorsNameTheFileAndField) {
  const std::string ok = "name = \"x\"\n[transformer]\ncontext = 8\nwidth = 16\nlayers = 1\nheads = 2\nffn = 32\n";
  EXPECT_EQ(error_of(ok), "(no error)");
  EXPECT_EQ(error_of("name = \"x\"\n"), "m.toml: field 'transformer': missing: the network's sizes");
  EXPECT_EQ(error_of("name = \"x\"\ntransformer = 3\n"), "m.toml: field 'transformer': must be a table");
  EXPECT_EQ(error_of("name = \"x\"\n[transformer]\ncontext = 8\nwidth = 16\nlayers = 1\nheads = 2\n"),
            "m.toml: field 'transformer.ffn': missing");
  EXPECT_EQ(error_of("name = \"x\"\n[transformer]\ncontext = 8\nwidth = 16\nlayers = 1\nheads = 3\nffn = 32\n"),
            "m.toml: field 'transformer.heads': 3 must divide the width (16)");
  EXPECT_EQ(error_of(ok + "depth = 2\n"),
            "m.toml: field 'transformer.depth': unknown field; allowed here: vocabulary, context, width, layers, heads, ffn");
  EXPECT_EQ(error_of("name = \"x\"\n[transformer]\ncontext = \"long\"\nwidth = 16\nlayers = 1\nheads = 2\nffn = 32\n"),
            "m.toml: field 'transformer.context': must be an integer in [1, 2048]");
  EXPECT_EQ(error_of(ok + "vocabulary = 512\n"), "m.toml: field 'transformer.vocabulary': must be an integer in [256, 256]");
  EXPECT_EQ(error_of(ok + "[training]\nsteps_per_epoch = 0\n"),
            "m.toml: field 'training.steps_per_epoch': must be an integer in [1, 1000000]");
  EXPECT_EQ(error_of(ok + "[training]\nqat_init = \"warm\"\n"),
            "m.toml: field 'training.qat_init': must be \"scratch\" or \"fp32\", not \"warm\"");
  EXPECT_EQ(error_of("name = \"x\"\n[transformer\n").rfind("m.toml:2:", 0), 0u);
}

}  // namespace
}  // namespace qathw::training
