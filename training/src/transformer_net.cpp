#include "qathw/training/transformer_net.h"

#include <toml++/toml.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <random>
#include <sstream>
#include <stdexcept>

#include "qathw/kernels/dense.h"
#include "qathw/kernels/int8_gemm.h"
#include "qathw/kernels/quant_ops.h"
#include "qathw/training/checkpoint.h"
#include "qathw/training/network.h"

namespace qathw::training {

// ---- the model file ---------------------------------------------------------------------------

namespace {

[[noreturn]] void field_error(const std::string& origin, const std::string& field, const std::string& what) {
  throw model::ModelError(origin + ": field '" + field + "': " + what);
}

// Refuses any key of `t` not in `allowed`, naming it with `prefix`.
void only(const std::string& origin, const toml::table& t, const std::string& prefix,
          std::initializer_list<std::string_view> allowed) {
  for (const auto& [k, v] : t) {
    bool ok = false;
    for (auto a : allowed) ok = ok || k.str() == a;
    if (ok) continue;
    std::string list;
    for (auto a : allowed) list += (list.empty() ? "" : ", ") + std::string(a);
    field_error(origin, prefix + std::string(k.str()), "unknown field; allowed here: " + list);
  }
}

int integer_field(const std::string& origin, const toml::table& t, const std::string& prefix, const char* key,
                  int fallback, long lo, long hi) {
  if (!t.contains(key)) return fallback;
  const auto v = t.get(key)->value_exact<std::int64_t>();
  if (!v || *v < lo || *v > hi)
    field_error(origin, prefix + key, "must be an integer in [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
  return static_cast<int>(*v);
}

double real_field(const std::string& origin, const toml::table& t, const std::string& prefix, const char* key,
                  double lo, double hi) {
  const toml::node& n = *t.get(key);
  const auto v = n.value<double>();
  if (!(n.is_floating_point() || n.is_integer()) || !v || !std::isfinite(*v) || *v < lo || *v > hi) {
    std::ostringstream range;
    range << "must be a number in [" << lo << ", " << hi << "]";
    field_error(origin, prefix + key, range.str());
  }
  return *v;
}

std::string string_field(const std::string& origin, const toml::table& t, const std::string& prefix, const char* key,
                         bool required) {
  if (!t.contains(key)) {
    if (required) field_error(origin, prefix + key, "missing");
    return "";
  }
  const auto v = t.get(key)->value<std::string>();
  if (!t.get(key)->is_string() || !v) field_error(origin, prefix + key, "must be a string");
  return *v;
}

}  // namespace

TransformerSpec parse_transformer(std::string_view toml_text, const std::string& origin) {
  toml::table root;
  try {
    root = toml::parse(toml_text, origin);
  } catch (const toml::parse_error& e) {
    const auto& pos = e.source().begin;
    throw model::ModelError(origin + ":" + std::to_string(pos.line) + ":" + std::to_string(pos.column) +
                            ": TOML syntax error: " + std::string(e.description()));
  }
  only(origin, root, "", {"name", "description", "transformer", "training"});
  TransformerSpec s;
  s.origin = origin;
  s.name = string_field(origin, root, "", "name", true);
  if (s.name.empty()) field_error(origin, "name", "must not be empty");
  s.description = string_field(origin, root, "", "description", false);
  if (!root.contains("transformer")) field_error(origin, "transformer", "missing: the network's sizes");
  const toml::table* t = root["transformer"].as_table();
  if (!t) field_error(origin, "transformer", "must be a table");
  const std::string tp = "transformer.";
  only(origin, *t, tp, {"vocabulary", "context", "width", "layers", "heads", "ffn"});
  for (const char* key : {"context", "width", "layers", "heads", "ffn"})
    if (!t->contains(key)) field_error(origin, tp + key, "missing");
  s.vocabulary = integer_field(origin, *t, tp, "vocabulary", kByteVocabulary, kByteVocabulary, kByteVocabulary);
  // Rows of the softmax fit its reciprocal unit (softmax_sum_fits) up to 2048.
  s.context = integer_field(origin, *t, tp, "context", 0, 1, 2048);
  s.width = integer_field(origin, *t, tp, "width", 0, 1, 4096);
  s.layers = integer_field(origin, *t, tp, "layers", 0, 1, 64);
  s.heads = integer_field(origin, *t, tp, "heads", 0, 1, 256);
  s.ffn = integer_field(origin, *t, tp, "ffn", 0, 1, 16384);
  if (s.width % s.heads != 0)
    field_error(origin, tp + "heads", std::to_string(s.heads) + " must divide the width (" + std::to_string(s.width) + ")");
  if (!arith::softmax_sum_fits(s.context, kExp2ValueBits))
    field_error(origin, tp + "context", "rows of " + std::to_string(s.context) + " overflow the softmax's sum");

  if (root.contains("training")) {
    const toml::table* r = root["training"].as_table();
    if (!r) field_error(origin, "training", "must be a table of recipe defaults");
    const std::string rp = "training.";
    only(origin, *r, rp, {"epochs", "steps_per_epoch", "batch", "lr", "weight_decay", "qat_init"});
    if (r->contains("epochs")) s.recipe.epochs = integer_field(origin, *r, rp, "epochs", 0, 1, 10000);
    if (r->contains("steps_per_epoch"))
      s.steps_per_epoch = integer_field(origin, *r, rp, "steps_per_epoch", 0, 1, 1000000);
    if (r->contains("batch")) s.recipe.batch = integer_field(origin, *r, rp, "batch", 0, 1, 65536);
    if (r->contains("lr")) s.recipe.lr = static_cast<float>(real_field(origin, *r, rp, "lr", 1e-7, 10.0));
    if (r->contains("weight_decay"))
      s.recipe.weight_decay = static_cast<float>(real_field(origin, *r, rp, "weight_decay", 0.0, 10.0));
    if (r->contains("qat_init")) {
      s.recipe.qat_init = string_field(origin, *r, rp, "qat_init", true);
      if (*s.recipe.qat_init != "scratch" && *s.recipe.qat_init != "fp32")
        field_error(origin, rp + "qat_init", "must be \"scratch\" or \"fp32\", not \"" + *s.recipe.qat_init + "\"");
    }
  }
  return s;
}

std::optional<TransformerSpec> resolve_transformer(const std::string& name_or_path) {
  std::string origin;
  const std::string text = model::model_text(name_or_path, origin);
  if (!model::is_transformer_model(text)) return std::nullopt;
  return parse_transformer(text, origin);
}

nlohmann::json to_json(const TransformerSpec& s) {
  nlohmann::json j = {{"name", s.name},       {"description", s.description}, {"vocabulary", s.vocabulary},
                      {"context", s.context}, {"width", s.width},             {"layers", s.layers},
                      {"heads", s.heads},     {"ffn", s.ffn}};
  j["training"] = model::to_json(s.recipe);
  if (s.steps_per_epoch) j["training"]["steps_per_epoch"] = *s.steps_per_epoch;
  return j;
}

// ---- the network ------------------------------------------------------------------------------

namespace {

constexpr double kLog2e = 1.4426950408889634;

// y = g x / sqrt(mean(x^2) + eps) over each of `rows` tokens of n values.
void rmsnorm_forward(const float* x, const float* log_gains, int rows, int n, float* y) {
  std::vector<float> g(static_cast<std::size_t>(n));
  for (int i = 0; i < n; ++i) g[i] = std::exp(log_gains[i]);
#pragma omp parallel for schedule(static)
  for (int t = 0; t < rows; ++t) {
    const float* xt = x + static_cast<std::size_t>(t) * n;
    double ss = 0;
    for (int i = 0; i < n; ++i) ss += static_cast<double>(xt[i]) * xt[i];
    const float r = static_cast<float>(1.0 / std::sqrt(ss / n + kRmsNormEps));
    for (int i = 0; i < n; ++i) y[static_cast<std::size_t>(t) * n + i] = g[i] * xt[i] * r;
  }
}

// From dy: dx (written) and d(loss)/d(log gain) (added), for y = g x r, r = 1/sqrt(mean(x^2) + eps).
void rmsnorm_backward(const float* x, const float* log_gains, const float* dy, int rows, int n, float* dx,
                      float* dlog_gains) {
  std::vector<float> g(static_cast<std::size_t>(n));
  for (int i = 0; i < n; ++i) g[i] = std::exp(log_gains[i]);
  std::vector<float> r(static_cast<std::size_t>(rows));
#pragma omp parallel for schedule(static)
  for (int t = 0; t < rows; ++t) {
    const float* xt = x + static_cast<std::size_t>(t) * n;
    const float* dyt = dy + static_cast<std::size_t>(t) * n;
    double ss = 0, dot = 0;
    for (int i = 0; i < n; ++i) {
      ss += static_cast<double>(xt[i]) * xt[i];
      dot += static_cast<double>(g[i]) * dyt[i] * xt[i];
    }
    const double rt = 1.0 / std::sqrt(ss / n + kRmsNormEps);
    r[t] = static_cast<float>(rt);
    const float c = static_cast<float>(dot * rt * rt * rt / n);
    for (int i = 0; i < n; ++i) dx[static_cast<std::size_t>(t) * n + i] = g[i] * dyt[i] * r[t] - xt[i] * c;
  }
  // The gains' sums over tokens: per feature in token order (the same whatever the threads), the
  // features across a vector.
  std::vector<double> sums(static_cast<std::size_t>(n), 0.0);
  double* __restrict acc = sums.data();
  for (int t = 0; t < rows; ++t) {
    const float* dyt = dy + static_cast<std::size_t>(t) * n;
    const float* xt = x + static_cast<std::size_t>(t) * n;
    const float rt = r[t];
    for (int i = 0; i < n; ++i) acc[i] += static_cast<double>(dyt[i]) * xt[i] * rt;
  }
  for (int i = 0; i < n; ++i) dlog_gains[i] += static_cast<float>(sums[i] * g[i]);
}

// The first `count` of a row of n keys rounded up to a multiple of 16 (at most n): a row's sums
// over keys run that far in whole vectors; the sums past count are formed and left unused.
int padded_count(int count, int n) { return std::min(n, (count + 15) / 16 * 16); }

// out[c] = sum over rows r in [r0, r1), in order from 0, of coef[r coef_stride] rows[r ld + c], for
// c in [0, n): columns in blocks of 16 held in registers across the rows, then one by one.
template <int W, typename Acc, typename Coef, typename Row>
inline void weighted_rows_block(const Coef* coef, std::size_t coef_stride, const Row* rows, std::size_t ld, int r0,
                                int r1, Acc* out) {
  Acc acc[W] = {};
  for (int r = r0; r < r1; ++r) {
    const Acc c = static_cast<Acc>(coef[static_cast<std::size_t>(r) * coef_stride]);
    const Row* row = rows + static_cast<std::size_t>(r) * ld;
    for (int u = 0; u < W; ++u) acc[u] += c * static_cast<Acc>(row[u]);
  }
  for (int u = 0; u < W; ++u) out[u] = acc[u];
}

template <typename Acc, typename Coef, typename Row>
void weighted_rows(const Coef* coef, std::size_t coef_stride, const Row* rows, std::size_t ld, int r0, int r1, int n,
                   Acc* out) {
  int c = 0;
  for (; c + 16 <= n; c += 16) weighted_rows_block<16>(coef, coef_stride, rows + c, ld, r0, r1, out + c);
  for (; c < n; ++c) weighted_rows_block<1>(coef, coef_stride, rows + c, ld, r0, r1, out + c);
}

void add_into(float* a, const float* b, std::size_t n) {
  for (std::size_t i = 0; i < n; ++i) a[i] += b[i];
}

// The pair of `value`; what + what_suffix names it in the error (the name built only then).
arith::FixedPoint pair_or_fail(double value, const arith::Format& f, const std::string& what,
                               const char* what_suffix = "") {
  if (value == 0.0) return arith::FixedPoint{0, 0};  // an all-zero token: its integers are 0
  const arith::FixedPointResult r = arith::to_fixed_point(value, f);
  if (r.status != arith::FixedPointStatus::Ok)
    throw std::runtime_error(what + what_suffix + " (" + std::to_string(value) +
                             ") has no pair in the target's scale format");
  return r.value;
}

// A static pair times each of `count` tokens' absmax factors (arith::token_pair), the tokens in
// parallel: factors(i, fs) writes token i's factors (at most 3) and returns how many. what()
// names the pair in the error when a token's pair exceeds the target's scale format.
template <typename Factors, typename What>
void token_pairs(arith::FixedPoint base, int count, Factors factors, const arith::Format& f,
                 std::vector<arith::FixedPoint>& out, What what) {
  out.resize(static_cast<std::size_t>(count));
  int bad = count;  // the first token without a pair
#pragma omp parallel for schedule(static) reduction(min : bad) if (count > 4096)
  for (int i = 0; i < count; ++i) {
    std::int64_t fs[3];
    const arith::FixedPointResult r = arith::token_pair(base, fs, factors(i, fs), f);
    if (r.status == arith::FixedPointStatus::Ok) out[static_cast<std::size_t>(i)] = r.value;
    else bad = std::min(bad, i);
  }
  if (bad < count) throw std::runtime_error(what() + ": a token's pair exceeds the target's scale format");
}

// Calls fn with a copy of f whose rounding mode is a compile-time constant, so that the arith
// rules inlined into fn's loops lose their run-time branches on the mode (the same integers).
template <typename Fn>
void with_rounding(const arith::Format& f, Fn&& fn) {
  const auto run = [&](auto mode) {
    arith::Format g = f;
    g.rounding = decltype(mode)::value;
    const arith::Format fixed = g;
    fn(fixed, mode);
  };
  if (f.rounding == arith::Rounding::HalfAwayFromZero)
    run(std::integral_constant<arith::Rounding, arith::Rounding::HalfAwayFromZero>{});
  else
    run(std::integral_constant<arith::Rounding, arith::Rounding::HalfEven>{});
}

}  // namespace

TransformerNet::TransformerNet(TransformerSpec spec, std::uint64_t seed) : spec_(std::move(spec)) {
  std::mt19937_64 rng(seed);
  const int d = spec_.width, v = spec_.vocabulary, ffn = spec_.ffn;
  const auto matrix = [&](const std::string& name, int rows, int cols, float bound, bool decays) {
    Param p{name, rows, cols, std::vector<float>(static_cast<std::size_t>(rows) * cols), decays};
    std::uniform_real_distribution<float> u(-bound, bound);
    for (float& w : p.w) w = u(rng);
    p_.push_back(std::move(p));
  };
  const auto gains = [&](const std::string& name) { p_.push_back({name, 1, d, std::vector<float>(d, 0.0f), false}); };
  const auto fan = [](int in) { return 1.0f / std::sqrt(static_cast<float>(in)); };
  matrix("embedding", v, d, 1.0f, false);
  matrix("position", spec_.context, d, 1.0f, false);
  for (int l = 0; l < spec_.layers; ++l) {
    const std::string n = "layer" + std::to_string(l) + ".";
    gains(n + "attention_norm");
    for (const char* w : {"wq", "wk", "wv", "wo"}) matrix(n + w, d, d, fan(d), true);
    gains(n + "ffn_norm");
    matrix(n + "wup", ffn, d, fan(d), true);
    matrix(n + "wdown", d, ffn, fan(ffn), true);
  }
  gains("final_norm");
  matrix("head", v, d, fan(d), true);
  p_.push_back({"log_scales", 1, 1 + 2 * spec_.layers, std::vector<float>(1 + 2 * spec_.layers, 0.0f), false});
  q_.resize(p_.size());
  saved_.resize(static_cast<std::size_t>(spec_.layers));
}

std::size_t TransformerNet::gain_index(int layer, int which) const { return 2 + 8 * layer + (which ? 5 : 0); }
std::size_t TransformerNet::matrix_index(int layer, int which) const {
  static constexpr int kAt[] = {1, 2, 3, 4, 6, 7};
  return 2 + 8 * layer + kAt[which];
}
std::size_t TransformerNet::final_gain_index() const { return 2 + 8 * spec_.layers; }
std::size_t TransformerNet::head_index() const { return 3 + 8 * spec_.layers; }
std::size_t TransformerNet::scale_index() const { return 4 + 8 * spec_.layers; }

double TransformerNet::stream_scale() const { return std::exp(static_cast<double>(p_[scale_index()].w[0])); }
double TransformerNet::k_step(int layer) const { return std::exp(static_cast<double>(p_[scale_index()].w[1 + 2 * layer])); }
double TransformerNet::v_step(int layer) const { return std::exp(static_cast<double>(p_[scale_index()].w[2 + 2 * layer])); }

bool TransformerNet::calibrated() const {
  for (float s : p_[scale_index()].w)
    if (s == 0.0f) return false;
  return true;
}

double TransformerNet::norm_output_scale(const float* log_gains, int n) {
  const float top = *std::max_element(log_gains, log_gains + n);
  return std::ldexp(static_cast<double>(std::exp(top)), -kNormOutputBits);
}

int TransformerNet::squared_relu_shift(const arith::Format& f) const {
  // The up projection's integers are requantized accumulators (pairs <= 1) of width products.
  const std::int64_t bound = arith::dot_abs_bound(spec_.width, f);
  const int in_bits = std::min(f.acc_bits, arith::bit_length(static_cast<std::uint64_t>(bound)) + 1);
  return arith::squared_relu_shift(in_bits, f.acc_bits);
}

void TransformerNet::resize_saved(int tokens) {
  const std::size_t nd = static_cast<std::size_t>(tokens) * spec_.width;
  const std::size_t nf = static_cast<std::size_t>(tokens) * spec_.ffn;
  const std::size_t np = static_cast<std::size_t>(batch_) * spec_.heads * spec_.context * spec_.context;
  for (SavedLayer& s : saved_) {
    for (std::vector<float>* v : {&s.x, &s.h1, &s.h1q, &s.q, &s.k, &s.v, &s.kraw, &s.vraw, &s.att, &s.attq, &s.x_mid,
                                  &s.h2, &s.h2q})
      v->resize(nd);
    for (std::vector<float>* v : {&s.u, &s.r, &s.rq}) v->resize(nf);
    s.p.resize(np);  // each forward writes every probability
  }
  xf_.resize(nd);
  hf_.resize(nd);
  hfq_.resize(nd);
  logits_.resize(static_cast<std::size_t>(tokens) * spec_.vocabulary);
}

const std::vector<float>& TransformerNet::forward(const std::uint8_t* tokens, int batch) {
  const int T = spec_.context, D = spec_.width, H = spec_.heads, dh = spec_.head_dim(), F = spec_.ffn;
  const int N = batch * T;
  batch_ = batch;
  quantized_pass_ = false;
  tokens_.assign(tokens, tokens + N);
  resize_saved(N);
  // The stream: each layer's input where the backward pass reads it, the last layer's output in xf_.
  branch_.resize(static_cast<std::size_t>(N) * D);
  float* x0 = saved_[0].x.data();
  for (int t = 0; t < N; ++t) {
    const float* e = p_[0].w.data() + static_cast<std::size_t>(tokens[t]) * D;
    const float* pos = p_[1].w.data() + static_cast<std::size_t>(t % T) * D;
    for (int i = 0; i < D; ++i) x0[static_cast<std::size_t>(t) * D + i] = e[i] + pos[i];
  }
  const float inv_sqrt = 1.0f / std::sqrt(static_cast<float>(dh));
  for (int l = 0; l < spec_.layers; ++l) {
    SavedLayer& s = saved_[l];
    // The FP32 pass has no quantizers: the backward pass reads h1, att, h2 and r for h1q, attq, h2q
    // and rq (saved_input).
    rmsnorm_forward(s.x.data(), p_[gain_index(l, 0)].w.data(), N, D, s.h1.data());
    kernels::gemm_abt(s.h1.data(), p_[matrix_index(l, 0)].w.data(), N, D, D, s.q.data());
    kernels::gemm_abt(s.h1.data(), p_[matrix_index(l, 1)].w.data(), N, D, D, s.k.data());
    kernels::gemm_abt(s.h1.data(), p_[matrix_index(l, 2)].w.data(), N, D, D, s.v.data());
    // Per sequence and head: the head's keys transposed (dh x T), so each score row is summed
    // over the head's lanes in order with the keys across a vector.
#pragma omp parallel
    {
      std::vector<float> kt(static_cast<std::size_t>(dh) * T), row(static_cast<std::size_t>(T));
#pragma omp for schedule(static)
      for (int bh = 0; bh < batch * H; ++bh) {
        const int b = bh / H, h = bh % H;
        const float* k0 = s.k.data() + static_cast<std::size_t>(b * T) * D + h * dh;
        const float* v0 = s.v.data() + static_cast<std::size_t>(b * T) * D + h * dh;
        for (int j = 0; j < T; ++j)
          for (int e = 0; e < dh; ++e) kt[static_cast<std::size_t>(e) * T + j] = k0[static_cast<std::size_t>(j) * D + e];
        for (int t = 0; t < T; ++t) {
          const float* qt = s.q.data() + static_cast<std::size_t>(b * T + t) * D + h * dh;
          const int count = t + 1;
          weighted_rows(qt, 1, kt.data(), T, 0, dh, padded_count(count, T), row.data());
          float top = -INFINITY;
          for (int j = 0; j < count; ++j) top = std::max(top, row[j] *= inv_sqrt);
          float sum = 0;
          for (int j = 0; j < count; ++j) sum += (row[j] = std::exp(row[j] - top));
          float* p = s.p.data() + (static_cast<std::size_t>(bh) * T + t) * T;
          for (int j = 0; j < count; ++j) p[j] = row[j] / sum;
          std::fill(p + count, p + T, 0.0f);  // masked
          weighted_rows(p, 1, v0, D, 0, count, dh, s.att.data() + static_cast<std::size_t>(b * T + t) * D + h * dh);
        }
      }
    }
    const std::size_t nd = branch_.size();
    float* branch = branch_.data();
    kernels::gemm_abt(s.att.data(), p_[matrix_index(l, 3)].w.data(), N, D, D, branch);
    for (std::size_t i = 0; i < nd; ++i) s.x_mid[i] = s.x[i] + branch[i];
    rmsnorm_forward(s.x_mid.data(), p_[gain_index(l, 1)].w.data(), N, D, s.h2.data());
    kernels::gemm_abt(s.h2.data(), p_[matrix_index(l, 4)].w.data(), N, F, D, s.u.data());
    {
      const float* u = s.u.data();
      float* __restrict r = s.r.data();
      const long n = static_cast<long>(s.u.size());
#pragma omp parallel for schedule(static)
      for (long i = 0; i < n; ++i) {
        const float v = std::max(u[i], 0.0f);
        r[i] = v * v;
      }
    }
    kernels::gemm_abt(s.r.data(), p_[matrix_index(l, 5)].w.data(), N, D, F, branch);
    float* next = l + 1 < spec_.layers ? saved_[l + 1].x.data() : xf_.data();
    for (std::size_t i = 0; i < nd; ++i) next[i] = s.x_mid[i] + branch[i];
  }
  rmsnorm_forward(xf_.data(), p_[final_gain_index()].w.data(), N, D, hf_.data());
  kernels::gemm_abt(hf_.data(), p_[head_index()].w.data(), N, spec_.vocabulary, D, logits_.data());
  return logits_;
}

void TransformerNet::backward(const std::vector<float>& dlogits, std::vector<std::vector<float>>& grads, bool clip) {
  const int T = spec_.context, D = spec_.width, H = spec_.heads, dh = spec_.head_dim(), F = spec_.ffn,
            V = spec_.vocabulary;
  const int batch = batch_, N = batch * T;
  const std::size_t nd = static_cast<std::size_t>(N) * D;
  // The matrices' gradients are written whole (gemm_atb); the others are sums, from 0.
  grads.resize(p_.size());
  for (std::size_t i = 0; i < p_.size(); ++i) {
    if (grads[i].size() == p_[i].w.size() && p_[i].decays) continue;
    grads[i].assign(p_[i].w.size(), 0.0f);
  }
  const auto w = [&](std::size_t i) { return quantized_pass_ ? q_[i].dequantized.data() : p_[i].w.data(); };
  // A quantizer's output, or in the FP32 pass (no quantizers) its input.
  const auto saved_input = [&](const std::vector<float>& quantized, const std::vector<float>& real) {
    return quantized_pass_ ? quantized.data() : real.data();
  };
  for (std::vector<float>* b : {&dx_, &dh_, &tmp_, &datt_}) b->resize(nd);
  // dQ, dK and dV side by side in each token's row (3 x width), for one GEMM of the three.
  const std::size_t ld3 = 3 * static_cast<std::size_t>(D);
  dqkv_.resize(static_cast<std::size_t>(N) * ld3);
  gqkv_.resize(ld3 * D);
  wqkv_.resize(ld3 * D);
  dr_.resize(static_cast<std::size_t>(N) * F);
  std::vector<float>&dx = dx_, &dhn = dh_, &tmp = tmp_, &datt = datt_, &dr = dr_;
  float* dqkv = dqkv_.data();
  const float inv_sqrt = 1.0f / std::sqrt(static_cast<float>(dh));

  const std::size_t head = head_index();
  kernels::gemm_atb(dlogits.data(), saved_input(hfq_, hf_), N, V, D, grads[head].data());
  kernels::gemm_ab(dlogits.data(), w(head), N, V, D, dhn.data());
  rmsnorm_backward(xf_.data(), p_[final_gain_index()].w.data(), dhn.data(), N, D, dx.data(),
                   grads[final_gain_index()].data());
  std::vector<float>& scales = grads[scale_index()];
  for (int l = spec_.layers; l-- > 0;) {
    SavedLayer& s = saved_[l];
    // FFN: x = x_mid + Wdown rq, rq the squared ReLU of u = Wup h2q (quantizers straight through).
    kernels::gemm_atb(dx.data(), saved_input(s.rq, s.r), N, D, F, grads[matrix_index(l, 5)].data());
    kernels::gemm_ab(dx.data(), w(matrix_index(l, 5)), N, D, F, dr.data());
    {
      const float* u = s.u.data();
      float* __restrict d = dr.data();
      const long n = static_cast<long>(dr.size());
#pragma omp parallel for schedule(static)
      for (long i = 0; i < n; ++i) d[i] *= 2.0f * std::max(u[i], 0.0f);
    }
    kernels::gemm_atb(dr.data(), saved_input(s.h2q, s.h2), N, F, D, grads[matrix_index(l, 4)].data());
    kernels::gemm_ab(dr.data(), w(matrix_index(l, 4)), N, F, D, dhn.data());
    rmsnorm_backward(s.x_mid.data(), p_[gain_index(l, 1)].w.data(), dhn.data(), N, D, tmp.data(),
                     grads[gain_index(l, 1)].data());
    add_into(dx.data(), tmp.data(), nd);
    // Attention: x_mid = x + Wo attq.
    kernels::gemm_atb(dx.data(), saved_input(s.attq, s.att), N, D, D, grads[matrix_index(l, 3)].data());
    kernels::gemm_ab(dx.data(), w(matrix_index(l, 3)), N, D, D, datt.data());
    // Per sequence and head: the rows of d(loss)/dP (the head's values transposed, dh x T) and of
    // d(loss)/dS, then dQ = dS K by query, dK = dS^T Q and dV = P^T d(att) by key, each sum in
    // the order of its rows (weighted_rows) and written whole.
#pragma omp parallel
    {
      std::vector<float> vt(static_cast<std::size_t>(dh) * T), dp(static_cast<std::size_t>(T)),
          ds(static_cast<std::size_t>(T) * T);
#pragma omp for schedule(static)
      for (int bh = 0; bh < batch * H; ++bh) {
        const int b = bh / H, h = bh % H;
        const std::size_t a0 = static_cast<std::size_t>(b * T) * D + h * dh;
        for (int j = 0; j < T; ++j)
          for (int e = 0; e < dh; ++e) vt[static_cast<std::size_t>(e) * T + j] = s.v[a0 + static_cast<std::size_t>(j) * D + e];
        const float* p0 = s.p.data() + static_cast<std::size_t>(bh) * T * T;
        for (int t = 0; t < T; ++t) {
          const std::size_t at = a0 + static_cast<std::size_t>(t) * D;
          const float* p = p0 + static_cast<std::size_t>(t) * T;
          const int count = t + 1;
          weighted_rows(datt.data() + at, 1, vt.data(), T, 0, dh, padded_count(count, T), dp.data());
          float sum = 0;
          for (int j = 0; j < count; ++j) sum += p[j] * dp[j];
          float* dst = ds.data() + static_cast<std::size_t>(t) * T;
          for (int j = 0; j < count; ++j) dst[j] = p[j] * (dp[j] - sum) * inv_sqrt;
          weighted_rows(dst, 1, s.k.data() + a0, D, 0, count, dh, dqkv + static_cast<std::size_t>(b * T + t) * ld3 + h * dh);
        }
        for (int j = 0; j < T; ++j) {
          float* row = dqkv + static_cast<std::size_t>(b * T + j) * ld3 + h * dh;
          weighted_rows(ds.data() + j, T, s.q.data() + a0, D, j, T, dh, row + D);
          weighted_rows(p0 + j, T, datt.data() + a0, D, j, T, dh, row + 2 * D);
        }
      }
    }
    if (quantized_pass_) {
      // K and V's static quantizers (LSQ): the gradient passes where the code does not clip; the
      // step's gradient, taken to its logarithm, scaled by 1 / sqrt(width x qmax).
      const double q = qmax_;
      for (int which = 0; which < 2; ++which) {
        float* g = dqkv + (which ? 2 * D : D);  // dK or dV in each token's row
        const std::vector<float>& raw = which ? s.vraw : s.kraw;
        const std::vector<float>& quantized = which ? s.v : s.k;
        const double step = which ? v_step(l) : k_step(l);
        // Each token's sum in parallel, then the tokens' in order (the same whatever the threads).
        lsq_sums_.resize(static_cast<std::size_t>(N));
#pragma omp parallel for schedule(static)
        for (int tok = 0; tok < N; ++tok) {
          const std::size_t i0 = static_cast<std::size_t>(tok) * D;
          float* gt = g + static_cast<std::size_t>(tok) * ld3;
          double sum = 0;
          for (int e = 0; e < D; ++e) {
            const std::size_t i = i0 + e;
            const double t = raw[i] / step;
            if (t < -q) {
              sum -= gt[e] * q;
              gt[e] = 0;
            } else if (t > q) {
              sum += gt[e] * q;
              gt[e] = 0;
            } else {
              sum += gt[e] * (quantized[i] / step - t);
            }
          }
          lsq_sums_[tok] = sum;
        }
        double ds = 0;
        for (int tok = 0; tok < N; ++tok) ds += lsq_sums_[tok];
        scales[1 + 2 * l + which] = static_cast<float>(ds * step / std::sqrt(static_cast<double>(D) * q));
      }
    }
    // Wq, Wk and Wv as one 3 width x width matrix: their gradients in one GEMM, and
    // d(loss)/d(h1) = dQ Wq + dK Wk + dV Wv in another.
    kernels::gemm_atb(dqkv, saved_input(s.h1q, s.h1), N, 3 * D, D, gqkv_.data());
    const std::size_t dd = static_cast<std::size_t>(D) * D;
    for (int m = 0; m < 3; ++m) {
      std::copy_n(gqkv_.data() + m * dd, dd, grads[matrix_index(l, m)].data());
      std::copy_n(w(matrix_index(l, m)), dd, wqkv_.data() + m * dd);
    }
    kernels::gemm_ab(dqkv, wqkv_.data(), N, 3 * D, D, dhn.data());
    rmsnorm_backward(s.x.data(), p_[gain_index(l, 0)].w.data(), dhn.data(), N, D, tmp.data(),
                     grads[gain_index(l, 0)].data());
    add_into(dx.data(), tmp.data(), nd);
  }
  // The embeddings: each token's and position's row, in token order.
  for (int t = 0; t < N; ++t) {
    add_into(grads[0].data() + static_cast<std::size_t>(tokens_[t]) * D, dx.data() + static_cast<std::size_t>(t) * D, D);
    add_into(grads[1].data() + static_cast<std::size_t>(t % T) * D, dx.data() + static_cast<std::size_t>(t) * D, D);
  }
  if (clip && quantized_pass_)
    for (std::size_t i = 0; i < p_.size(); ++i)
      if (!q_[i].ste_mask.empty())
        for (std::size_t k = 0; k < grads[i].size(); ++k) grads[i][k] *= q_[i].ste_mask[k];
}

// ---- QAT --------------------------------------------------------------------------------------

void TransformerNet::calibrate(const std::uint8_t* tokens, int batch, const arith::Format& f, double fraction) {
  forward(tokens, batch);
  float top = 0;
  const auto amax = [](const std::vector<float>& v, float m) {
    for (float x : v) m = std::max(m, std::fabs(x));
    return m;
  };
  for (const SavedLayer& s : saved_) top = amax(s.x_mid, amax(s.x, top));
  top = std::max(amax(xf_, top), 1e-6f);
  std::vector<float>& logs = p_[scale_index()].w;
  logs[0] = static_cast<float>(std::log(static_cast<double>(top)) -
                               (f.acc_bits - 1 - kStreamHeadroomBits) * std::log(2.0));
  const double q = static_cast<double>(arith::act_qmax(f.act_bits));
  const auto percentile = [&](std::vector<float> v) {
    for (float& x : v) x = std::fabs(x);
    const std::size_t k = std::min(v.size() - 1, static_cast<std::size_t>(std::ceil(fraction * v.size())) - 1);
    std::nth_element(v.begin(), v.begin() + static_cast<long>(k), v.end());
    return std::max(static_cast<double>(v[k]), 1e-6);
  };
  for (int l = 0; l < spec_.layers; ++l) {
    logs[1 + 2 * l] = static_cast<float>(std::log(percentile(saved_[l].k) / q));
    logs[2 + 2 * l] = static_cast<float>(std::log(percentile(saved_[l].v) / q));
  }
}

void TransformerNet::quantize_weights(const arith::Format& f) {
  for (std::size_t i = 0; i < p_.size(); ++i) {
    const Param& p = p_[i];
    QuantizedMatrix& q = q_[i];
    if (!p.decays) continue;  // the matrices (the embedding is the stream's integers)
    const std::size_t n = p.w.size();
    q.codes.resize(n);
    q.dequantized.resize(n);
    q.ste_mask.resize(n);
    q.scales.resize(static_cast<std::size_t>(p.rows));
    q.requant.resize(static_cast<std::size_t>(p.rows));
    q.reference = kernels::quantize_weights(p.w.data(), p.rows, p.cols, f, q.codes.data(), q.scales.data(),
                                            q.dequantized.data(), q.ste_mask.data(), q.requant.data());
    // The codes packed for the int8 GEMM where it runs and its int32 sums are exact.
    if (kernels::int8_gemm_enabled() && kernels::int8_accumulation_exact(p.cols, f)) {
      q.packed.resize(kernels::packed_columns_bytes(p.rows, p.cols));
      q.packed_offsets.resize(static_cast<std::size_t>(p.rows));
      kernels::pack_int8_columns(q.codes.data(), p.rows, p.cols, q.packed.data(), q.packed_offsets.data());
    } else {
      q.packed.clear();
      q.packed_offsets.clear();
    }
  }
}

TransformerNet::Datapath TransformerNet::datapath(const arith::Format& f) const {
  const int D = spec_.width;
  const double sx = stream_scale(), qmax = static_cast<double>(arith::act_qmax(f.act_bits)),
               qp = static_cast<double>(arith::prob_qmax(kProbBits));
  Datapath d;
  d.one = pair_or_fail(1.0, f, "the stream's own pair");
  d.eps = static_cast<std::uint64_t>(std::llround(kRmsNormEps / (sx * sx)));
  d.norm_in_bits = std::min(f.acc_bits, arith::rmsnorm_max_input_bits(D));
  d.relu_shift = squared_relu_shift(f);
  const auto table = [&](const Param& p, std::vector<std::int32_t>& out) {
    out.resize(p.w.size());
    for (std::size_t k = 0; k < p.w.size(); ++k)
      out[k] = static_cast<std::int32_t>(arith::saturate(
          static_cast<std::int64_t>(arith::round_to_integer(static_cast<double>(p.w[k]) / sx, f.rounding)), f.acc_bits));
  };
  table(p_[0], d.token_table);
  table(p_[1], d.position_table);
  const auto norm = [&](std::size_t gains) {
    NormConstants n;
    const float* lg = p_[gains].w.data();
    n.scale = norm_output_scale(lg, D);
    n.gains.resize(static_cast<std::size_t>(D));
    for (int i = 0; i < D; ++i)
      n.gains[i] = pair_or_fail(static_cast<double>(std::exp(lg[i])) / n.scale, f, p_[gains].name, "'s gain pair");
    return n;
  };
  // A BitLinear's output integer is worth (its input codes' absmax) x (the input's unit) / qmax x
  // the matrix's reference scale; the pairs below are those products' static parts.
  for (int l = 0; l < spec_.layers; ++l) {
    LayerConstants c;
    c.attention_norm = norm(gain_index(l, 0));
    c.ffn_norm = norm(gain_index(l, 1));
    const auto ref = [&](int which) { return static_cast<double>(q_[matrix_index(l, which)].reference); };
    const auto& name = [&](int which) -> const std::string& { return p_[matrix_index(l, which)].name; };
    const double s1 = c.attention_norm.scale / qmax;
    c.k = pair_or_fail(s1 * ref(1) / k_step(l), f, name(1), "'s static quantizer");
    c.v = pair_or_fail(s1 * ref(2) / v_step(l), f, name(2), "'s static quantizer");
    c.scores = pair_or_fail(score_pair_value(s1 * ref(0) / qmax, k_step(l), spec_.head_dim()), f, name(0),
                            "'s score row pair");
    c.o_add = pair_or_fail(v_step(l) / qp / qmax * ref(3) / sx, f, name(3), "'s alignment to the stream");
    const double up = c.ffn_norm.scale / qmax * ref(4);
    c.down_add = pair_or_fail(std::ldexp(up * up, d.relu_shift) / qmax * ref(5) / sx, f, name(5),
                              "'s alignment to the stream");
    d.layers.push_back(std::move(c));
  }
  d.final_norm = norm(final_gain_index());
  return d;
}

void TransformerNet::check_target(const target::TargetSpec& t) {
  if (t.format.act_bits > t.vector_unit.operand_bits)
    throw std::runtime_error("the vector unit takes " + std::to_string(t.vector_unit.operand_bits) +
                             "-bit operands; the target's activation codes have " + std::to_string(t.format.act_bits));
}

const std::vector<float>& TransformerNet::forward_quantized(const std::uint8_t* tokens, int batch,
                                                            const target::TargetSpec& t) {
  if (!calibrated()) throw std::logic_error("forward_quantized: the stream scale and K/V steps are not calibrated");
  check_target(t);
  const arith::Format& f = t.format;
  const int lanes = t.array.lanes;
  const int T = spec_.context, D = spec_.width, H = spec_.heads, dh = spec_.head_dim(), F = spec_.ffn,
            V = spec_.vocabulary;
  const int N = batch * T;
  const std::size_t nd = static_cast<std::size_t>(N) * D, nf = static_cast<std::size_t>(N) * F;
  batch_ = batch;
  quantized_pass_ = true;
  tokens_.assign(tokens, tokens + N);
  resize_saved(N);
  ints_.layers.resize(static_cast<std::size_t>(spec_.layers));
  const arith::VectorUnit vu = t.vector_unit;
  const double qmax = static_cast<double>(arith::act_qmax(f.act_bits));
  qmax_ = qmax;
  const std::int64_t qp = arith::prob_qmax(kProbBits);
  const arith::Exp2Table table = arith::exp2_table(kExp2IndexBits, kExp2ValueBits, f.rounding);
  const double sx = stream_scale();
  const Datapath dp = datapath(f);
  const int norm_in_bits = dp.norm_in_bits;
  const std::uint64_t eps = dp.eps;
  const arith::FixedPoint one = dp.one;
  const int relu_shift = dp.relu_shift;

  // A BitLinear's input: per-token codes (arith's dynamic quantizer) and their absmax, the real
  // value c of one code per token (absmax x unit / qmax), and the codes' real values for the
  // backward pass. With the int8 GEMM, also the codes + 128 as bytes, rows padded to 4 bytes.
  std::vector<float>& codes = qf_.codes;
  std::vector<std::uint8_t>& code_bytes = qf_.code_bytes;
  const bool int8 = kernels::int8_gemm_enabled() && f.act_bits <= 8;
  const auto quantize_input = [&](const std::int32_t* x, const std::vector<double>& unit_in, int cols,
                                  std::vector<double>& c, float* real, std::vector<std::int64_t>& amax) {
    codes.resize(static_cast<std::size_t>(N) * cols);
    amax.resize(static_cast<std::size_t>(N));
    if (int8) code_bytes.resize(static_cast<std::size_t>(N) * kernels::padded_depth(cols));
    kernels::quantize_tokens(x, N, cols, f, codes.data(), amax.data(), int8 ? code_bytes.data() : nullptr,
                             kernels::padded_depth(cols));
    c.resize(static_cast<std::size_t>(N));
    for (int t = 0; t < N; ++t) c[t] = static_cast<double>(amax[t]) * unit_in[t] / qmax;
#pragma omp parallel for schedule(static)
    for (int t = 0; t < N; ++t) {
      const float* code = codes.data() + static_cast<std::size_t>(t) * cols;
      float* __restrict r = real + static_cast<std::size_t>(t) * cols;
      const double ct = c[t];
      for (int i = 0; i < cols; ++i) r[i] = static_cast<float>(code[i] * ct);
    }
  };
  // The array on the current codes: exact accumulators, the requantization epilogue; the output's
  // unit per token is c x the matrix's reference scale.
  std::vector<float>& acc = qf_.acc;
  std::vector<std::int32_t>& acc_i32 = qf_.acc_i32;
  std::vector<std::int64_t>& acc_exact = qf_.acc_exact;
  const auto apply = [&](std::size_t param, int in, const std::vector<double>& c, std::vector<std::int32_t>& z,
                         std::vector<double>& unit_out) {
    const QuantizedMatrix& m = q_[param];
    const int out = p_[param].rows;
    z.resize(static_cast<std::size_t>(N) * out);
    if (int8 && !m.packed.empty()) {
      acc_i32.resize(z.size());
      kernels::gemm_u8s8_packed(code_bytes.data(), kernels::padded_depth(in), m.packed.data(), m.packed_offsets.data(), N,
                                out, in, acc_i32.data(), out);
      kernels::accumulator_epilogue(acc_i32.data(), N, out, m.requant.data(), false, f, z.data());
    } else if (kernels::float_accumulation_exact(in, f)) {
      acc.resize(z.size());
      kernels::gemm_abt(codes.data(), m.codes.data(), N, out, in, acc.data());
      kernels::accumulator_epilogue(acc.data(), N, out, m.requant.data(), false, f, z.data());
    } else {
      acc_exact.resize(z.size());
      kernels::accumulate_exact(codes.data(), m.codes.data(), N, out, in, lanes, f, acc_exact.data());
      kernels::accumulator_epilogue(acc_exact.data(), N, out, m.requant.data(), false, f, z.data());
    }
    unit_out.resize(static_cast<std::size_t>(N));
    for (int t = 0; t < N; ++t) unit_out[t] = c[t] * static_cast<double>(m.reference);
  };
  // RMSNorm of the stream's integers with a norm's gain pairs; the output's unit is s_y.
  const auto norm = [&](const std::vector<std::int32_t>& x, const NormConstants& nc, std::vector<std::int32_t>& y,
                        std::vector<double>& unit) {
    const double sy = nc.scale;
    const std::vector<arith::FixedPoint>& pairs = nc.gains;
    y.resize(x.size());
    // arith::rmsnorm_token's steps with the rounding mode fixed, and arith::rmsnorm_value's two
    // roundings in two loops over the token's features: the first at the token's shift, the
    // second at each gain's.
    std::vector<std::int64_t> gain_mantissa(static_cast<std::size_t>(D));
    std::vector<int> gain_shift(static_cast<std::size_t>(D));
    for (int i = 0; i < D; ++i) {
      gain_mantissa[i] = pairs[i].mantissa;
      gain_shift[i] = pairs[i].shift + arith::kRmsNormFracBits;
    }
    const bool gain_shifts_in_range =
        std::all_of(gain_shift.begin(), gain_shift.end(), [](int v) { return v >= 1 && v <= arith::kMaxShift; });
    with_rounding(f, [&](const arith::Format& fr, auto mode) {
      constexpr arith::Rounding kMode = decltype(mode)::value;
#pragma omp parallel
      {
        std::vector<std::int64_t> u(static_cast<std::size_t>(D));
#pragma omp for schedule(static)
        for (int t = 0; t < N; ++t) {
          const std::int32_t* xt = x.data() + static_cast<std::size_t>(t) * D;
          std::int32_t* yt = y.data() + static_cast<std::size_t>(t) * D;
          const arith::RmsInverse inv = arith::rms_inverse(arith::sum_squares(xt, D, norm_in_bits), D, eps, fr);
          const std::int64_t inv_mantissa = inv.inv_rms.mantissa;
          const int inv_shift = inv.inv_rms.shift - arith::kRmsNormFracBits;
          const int n = D, in_bits = norm_in_bits, out_bits = fr.acc_bits;  // constants of the loops
          std::int64_t* __restrict ut = u.data();
          const std::int64_t* gm = gain_mantissa.data();
          const int* gs = gain_shift.data();
          if (gain_shifts_in_range && inv_shift >= 1 && inv_shift <= arith::kMaxShift) {
            // Every shift in [1, 62], told to the compiler: shift_round's branches on the shift
            // fold away and the loops vectorise (the same rule on the same values).
            for (int i = 0; i < n; ++i) {
              if (inv_shift < 1 || inv_shift > arith::kMaxShift) __builtin_unreachable();
              ut[i] = arith::shift_round(arith::saturate(xt[i], in_bits) * inv_mantissa, inv_shift, kMode);
            }
            for (int i = 0; i < n; ++i) {
              const int shift = gs[i];
              if (shift < 1 || shift > arith::kMaxShift) __builtin_unreachable();
              yt[i] = static_cast<std::int32_t>(arith::saturate(arith::shift_round(ut[i] * gm[i], shift, kMode), out_bits));
            }
            continue;
          }
          for (int i = 0; i < n; ++i)
            ut[i] = arith::shift_round(arith::saturate(xt[i], in_bits) * inv_mantissa, inv_shift, kMode);
          for (int i = 0; i < n; ++i)
            yt[i] = static_cast<std::int32_t>(arith::saturate(arith::shift_round(ut[i] * gm[i], gs[i], kMode), out_bits));
        }
      }
    });
    unit.assign(static_cast<std::size_t>(N), sy);
  };
  // x + branch: the branch aligned to the stream's scale by each token's pair (its unit / s_x).
  const auto residual_add = [&](const std::vector<std::int32_t>& x, const std::vector<std::int32_t>& branch,
                                const std::vector<arith::FixedPoint>& pairs, std::vector<std::int32_t>& y) {
    y.resize(x.size());
    with_rounding(f, [&](const arith::Format& fr, auto mode) {
#pragma omp parallel
      {
      std::vector<std::int64_t> aligned(2 * static_cast<std::size_t>(D));
#pragma omp for schedule(static)
      for (int t = 0; t < N; ++t) {
        const std::size_t k0 = static_cast<std::size_t>(t) * D;
        const std::int32_t* xt = x.data() + k0;
        const std::int32_t* bt = branch.data() + k0;
        std::int32_t* yt = y.data() + k0;
        const arith::FixedPoint pair = pairs[t], unit_pair = one;
        const int n = D;  // a constant of the loop, which stores integers
        if (pair.shift >= 1 && pair.shift <= arith::kMaxShift && unit_pair.shift >= 1 &&
            unit_pair.shift <= arith::kMaxShift) {
          // arith::add_aligned's two requantizations in a loop each, with both shifts' range told
          // to the compiler, so that all three loops vectorise.
          const arith::Rounding rounding = decltype(mode)::value;
          const int bits = fr.acc_bits;
          std::int64_t* __restrict a = aligned.data();
          std::int64_t* __restrict c = aligned.data() + n;
          for (int i = 0; i < n; ++i) {
            if (unit_pair.shift < 1 || unit_pair.shift > arith::kMaxShift) __builtin_unreachable();
            a[i] = arith::requantize(xt[i], unit_pair, rounding, bits);
          }
          for (int i = 0; i < n; ++i) {
            if (pair.shift < 1 || pair.shift > arith::kMaxShift) __builtin_unreachable();
            c[i] = arith::requantize(bt[i], pair, rounding, bits);
          }
          for (int i = 0; i < n; ++i) yt[i] = static_cast<std::int32_t>(arith::saturate(a[i] + c[i], bits));
          continue;
        }
        for (int i = 0; i < n; ++i) yt[i] = static_cast<std::int32_t>(arith::add_aligned(xt[i], unit_pair, bt[i], pair, fr));
      }
      }
    });
  };
  const auto real_of = [&](const std::vector<std::int32_t>& z, double unit, std::vector<float>& real) {
    real.resize(z.size());
    const std::int32_t* in = z.data();
    float* __restrict out = real.data();
    const long n = static_cast<long>(z.size());
#pragma omp parallel for schedule(static)
    for (long i = 0; i < n; ++i) out[i] = static_cast<float>(in[i] * unit);
  };

  // The embeddings: the token's and the position's table integers at the stream's scale, added.
  std::vector<std::int32_t>& x = qf_.x;
  x.resize(nd);
  const std::vector<std::int32_t>& token_table = dp.token_table;
  const std::vector<std::int32_t>& position_table = dp.position_table;
  with_rounding(f, [&](const arith::Format& fr, auto) {
    const int n = D;
#pragma omp parallel for schedule(static)
    for (int t = 0; t < N; ++t) {
      const std::int32_t* e = token_table.data() + static_cast<std::size_t>(tokens[t]) * D;
      const std::int32_t* pos = position_table.data() + static_cast<std::size_t>(t % T) * D;
      std::int32_t* xt = x.data() + static_cast<std::size_t>(t) * D;
      const arith::FixedPoint unit_pair = one;
      for (int i = 0; i < n; ++i) xt[i] = static_cast<std::int32_t>(arith::add_aligned(e[i], unit_pair, pos[i], unit_pair, fr));
    }
  });
  std::vector<double> c, unit_n, unit_q, unit_k, unit_v, unit_o, unit_u, unit_r, unit_d;
  // Per token: the absmax of the attention norm's codes, of O's, the FFN norm's and Down's input
  // codes (the factors of the pairs that follow the token), and a branch's alignment pairs.
  std::vector<std::int64_t> amax_n1, amax_att, amax_n2, amax_r, amax_head;
  std::vector<arith::FixedPoint> add_pairs(static_cast<std::size_t>(N));
  for (int l = 0; l < spec_.layers; ++l) {
    SavedLayer& s = saved_[l];
    LayerIntegers& z = ints_.layers[l];
    const LayerConstants& lc = dp.layers[l];
    z.x = x;
    real_of(z.x, sx, s.x);
    norm(z.x, lc.attention_norm, z.norm1, unit_n);
    quantize_input(z.norm1.data(), unit_n, D, c, s.h1q.data(), amax_n1);
    apply(matrix_index(l, 0), D, c, z.q, unit_q);
    apply(matrix_index(l, 1), D, c, z.k, unit_k);
    apply(matrix_index(l, 2), D, c, z.v, unit_v);
    // Q per token and head (dynamic absmax); K and V at their static steps, each token's pair its
    // unit over the step.
    const double ks = k_step(l), vs = v_step(l);
    z.q_codes.resize(nd);
    z.k_codes.resize(nd);
    z.v_codes.resize(nd);
    std::vector<double> q_scale(static_cast<std::size_t>(N) * H);
    std::vector<std::int64_t> q_amax(static_cast<std::size_t>(N) * H);
    std::vector<arith::FixedPoint> k_pair, v_pair;
    const auto norm_codes = [&](int t, std::int64_t* fs) {
      fs[0] = amax_n1[t];
      return 1;
    };
    token_pairs(lc.k, N, norm_codes, f, k_pair, [&] { return p_[matrix_index(l, 1)].name + "'s static quantizer"; });
    token_pairs(lc.v, N, norm_codes, f, v_pair, [&] { return p_[matrix_index(l, 2)].name + "'s static quantizer"; });
    with_rounding(f, [&](const arith::Format& fr, auto mode) {
      constexpr arith::Rounding kMode = decltype(mode)::value;
#pragma omp parallel for schedule(static)
      for (int t = 0; t < N; ++t) {
        for (int h = 0; h < H; ++h) {
          const std::size_t at = static_cast<std::size_t>(t) * D + h * dh;
          const arith::TokenQuantizer tq = arith::quantize_token(z.q.data() + at, dh, z.q_codes.data() + at, fr);
          q_scale[static_cast<std::size_t>(t) * H + h] = static_cast<double>(tq.amax) * unit_q[t] / qmax;
          q_amax[static_cast<std::size_t>(t) * H + h] = tq.amax;
        }
        const std::size_t k0 = static_cast<std::size_t>(t) * D;
        const arith::FixedPoint kp = k_pair[t], vp = v_pair[t];
        const double uk = unit_k[t], uv = unit_v[t];
        // Pointers and sizes as constants of the loop.
        const int n = D, act_bits = fr.act_bits;
        const std::int32_t* kin = z.k.data() + k0;
        const std::int32_t* vin = z.v.data() + k0;
        std::int16_t* __restrict kc = z.k_codes.data() + k0;
        std::int16_t* __restrict vc = z.v_codes.data() + k0;
        for (int i = 0; i < n; ++i) {
          kc[i] = static_cast<std::int16_t>(arith::quantize_act(kin[i], kp, act_bits, kMode));
          vc[i] = static_cast<std::int16_t>(arith::quantize_act(vin[i], vp, act_bits, kMode));
        }
        for (int i = 0; i < D; ++i) {
          const std::size_t k = k0 + i;
          s.q[k] = static_cast<float>(z.q_codes[k] * q_scale[static_cast<std::size_t>(t) * H + i / dh]);
          s.k[k] = static_cast<float>(z.k_codes[k] * ks);
          s.v[k] = static_cast<float>(z.v_codes[k] * vs);
          s.kraw[k] = static_cast<float>(z.k[k] * uk);
          s.vraw[k] = static_cast<float>(z.v[k] * uv);
        }
      }
    });
    // Scores, softmax and P V on the vector unit, per sequence and head.
    std::vector<arith::FixedPoint> row_pair;
    const auto row_factors = [&](int r, std::int64_t* fs) {
      fs[0] = amax_n1[r / H];
      fs[1] = q_amax[r];
      return 2;
    };
    token_pairs(lc.scores, N * H, row_factors, f, row_pair, [] { return std::string("a score row's log2-domain pair"); });
    // Sums any order may form (vector_dot_order_free), below 2^31 so int32 holds them exactly.
    const std::int64_t code_max = arith::act_qmax(f.act_bits);
    const bool qk_order_free = arith::vector_dot_order_free(dh, code_max, code_max, vu) &&
                               static_cast<std::int64_t>(dh) * code_max * code_max < (std::int64_t{1} << 31);
    const bool pv_order_free = arith::vector_dot_order_free(T, qp, code_max, vu) &&
                               static_cast<std::int64_t>(T) * qp * code_max < (std::int64_t{1} << 31);
    const std::size_t np = static_cast<std::size_t>(batch) * H * T * T;
    z.scores.resize(np);
    z.probs.resize(np);
    z.attention.resize(nd);
    // Per sequence and head. Where Q K^T's sums are order-free, the head's key codes transposed
    // (dh x T, int32) so that each score row is summed with the keys across a vector.
    with_rounding(f, [&](const arith::Format& fr, auto mode) {
      constexpr arith::Rounding kMode = decltype(mode)::value;
#pragma omp parallel
      {
        // Sizes and rules as this thread's constants: the loops below store integers, which the
        // compiler would otherwise have to reload them around.
        const int head_dim = dh, acc_bits = vu.acc_bits;
        const arith::Overflow overflow = vu.overflow;
        std::vector<std::int32_t> kt(qk_order_free ? static_cast<std::size_t>(dh) * T : 0);
        std::vector<std::int32_t> row(static_cast<std::size_t>(T));
#pragma omp for schedule(static)
        for (int bh = 0; bh < batch * H; ++bh) {
          const int b = bh / H, h = bh % H;
          const std::int16_t* k0 = z.k_codes.data() + static_cast<std::size_t>(b * T) * D + h * dh;
          if (qk_order_free)
            for (int j = 0; j < T; ++j)
              for (int e = 0; e < dh; ++e) kt[static_cast<std::size_t>(e) * T + j] = k0[static_cast<std::size_t>(j) * D + e];
          for (int t = 0; t < T; ++t) {
            const std::size_t at = static_cast<std::size_t>(b * T + t) * D + h * dh;
            std::int32_t* zr = z.scores.data() + (static_cast<std::size_t>(bh) * T + t) * T;
            std::uint8_t* pr = z.probs.data() + (static_cast<std::size_t>(bh) * T + t) * T;
            const arith::FixedPoint pair = row_pair[static_cast<std::size_t>(b * T + t) * H + h];
            const int count = arith::causal_count(t);
            const std::int16_t* qt = z.q_codes.data() + at;
            if (qk_order_free) {  // the exact sums in int32, the overflow rule once
              const std::int32_t* r = row.data();
              weighted_rows(qt, 1, kt.data(), T, 0, head_dim, padded_count(count, T), row.data());
              for (int j = 0; j < count; ++j)
                zr[j] = static_cast<std::int32_t>(
                    arith::requantize(arith::apply_overflow(r[j], acc_bits, overflow), pair, kMode, 32));
            } else {
              for (int j = 0; j < count; ++j) {
                const std::int16_t* kj = k0 + static_cast<std::size_t>(j) * D;
                zr[j] = static_cast<std::int32_t>(arith::requantize(arith::vector_dot(qt, kj, dh, vu), pair, kMode, 32));
              }
            }
            std::fill(zr + count, zr + T, 0);  // masked
            arith::softmax_row(zr, T, count, table, kProbBits, fr, pr);
            const std::int16_t* v0 = z.v_codes.data() + static_cast<std::size_t>(b * T) * D + h * dh;
            std::int32_t* out = z.attention.data() + at;
            if (pv_order_free) {  // each output's exact sum, the keys outermost so the head's lanes vectorise
              weighted_rows(pr, 1, v0, D, 0, count, head_dim, out);
              for (int e = 0; e < head_dim; ++e)
                out[e] = static_cast<std::int32_t>(arith::apply_overflow(out[e], acc_bits, overflow));
            } else {
              for (int e = 0; e < dh; ++e)
                out[e] = static_cast<std::int32_t>(arith::vector_dot(pr, v0 + e, count, vu, D));
            }
            float* p = s.p.data() + (static_cast<std::size_t>(bh) * T + t) * T;
            for (int j = 0; j < T; ++j) p[j] = static_cast<float>(pr[j]) / static_cast<float>(qp);
          }
        }
      }
    });
    const std::vector<double> unit_att(static_cast<std::size_t>(N), vs / static_cast<double>(qp));
    real_of(z.attention, unit_att[0], s.att);
    quantize_input(z.attention.data(), unit_att, D, c, s.attq.data(), amax_att);
    apply(matrix_index(l, 3), D, c, z.o, unit_o);
    const auto o_factors = [&](int t, std::int64_t* fs) {
      fs[0] = amax_att[t];
      return 1;
    };
    token_pairs(lc.o_add, N, o_factors, f, add_pairs,
                [&] { return p_[matrix_index(l, 3)].name + "'s alignment to the stream"; });
    residual_add(z.x, z.o, add_pairs, z.x_mid);
    real_of(z.x_mid, sx, s.x_mid);
    // FFN.
    norm(z.x_mid, lc.ffn_norm, z.norm2, unit_n);
    quantize_input(z.norm2.data(), unit_n, D, c, s.h2q.data(), amax_n2);
    apply(matrix_index(l, 4), D, c, z.up, unit_u);
    z.act.resize(nf);
    unit_r.resize(static_cast<std::size_t>(N));
    with_rounding(f, [&](const arith::Format& fr, auto mode) {
      constexpr arith::Rounding kMode = decltype(mode)::value;
#pragma omp parallel for schedule(static)
      for (int t = 0; t < N; ++t) {
        unit_r[t] = std::ldexp(unit_u[t] * unit_u[t], relu_shift);
        const std::size_t k0 = static_cast<std::size_t>(t) * F;
        // Pointers, sizes and the shift as constants of the loop, which stores integers.
        const std::int32_t* up = z.up.data() + k0;
        std::int32_t* __restrict act = z.act.data() + k0;
        float* __restrict u = s.u.data() + k0;
        const int n = F, shift = relu_shift, out_bits = fr.acc_bits;
        const double unit = unit_u[t];
        if (shift >= 1 && shift <= arith::kMaxShift) {
          for (int i = 0; i < n; ++i) {  // the shift's range told to the compiler: round_shift's test of 0 folds
            if (shift < 1 || shift > arith::kMaxShift) __builtin_unreachable();
            act[i] = static_cast<std::int32_t>(arith::squared_relu(up[i], shift, out_bits, kMode));
          }
        } else {
          for (int i = 0; i < n; ++i) act[i] = static_cast<std::int32_t>(arith::squared_relu(up[i], shift, out_bits, kMode));
        }
        for (int i = 0; i < n; ++i) u[i] = static_cast<float>(up[i] * unit);
      }
    });
    quantize_input(z.act.data(), unit_r, F, c, s.rq.data(), amax_r);
    apply(matrix_index(l, 5), F, c, z.down, unit_d);
    const auto down_factors = [&](int t, std::int64_t* fs) {
      fs[0] = amax_r[t];
      fs[1] = fs[2] = amax_n2[t];
      return 3;
    };
    token_pairs(lc.down_add, N, down_factors, f, add_pairs,
                [&] { return p_[matrix_index(l, 5)].name + "'s alignment to the stream"; });
    residual_add(z.x_mid, z.down, add_pairs, x);
  }
  ints_.x_out = x;
  real_of(x, sx, xf_);
  norm(x, dp.final_norm, ints_.norm, unit_n);
  quantize_input(ints_.norm.data(), unit_n, D, c, hfq_.data(), amax_head);
  apply(head_index(), D, c, ints_.logits, ints_.logit_unit);
#pragma omp parallel for schedule(static)
  for (int t = 0; t < N; ++t) {
    const std::int32_t* in = ints_.logits.data() + static_cast<std::size_t>(t) * V;
    float* __restrict out = logits_.data() + static_cast<std::size_t>(t) * V;
    const double unit = ints_.logit_unit[t];
    for (int i = 0; i < V; ++i) out[i] = static_cast<float>(in[i] * unit);
  }
  return logits_;
}

double TransformerNet::score_pair_value(double q_scale, double k_step, int head_dim) {
  return q_scale * k_step * kLog2e / std::sqrt(static_cast<double>(head_dim)) * std::ldexp(1.0, kExp2IndexBits);
}

// ---- evaluation -------------------------------------------------------------------------------

double bits_per_byte(TransformerNet& net, const std::vector<std::uint8_t>& tokens, bool quantized,
                     const target::TargetSpec& target, std::size_t max_sequences, SequenceIntegers* integers) {
  const int T = net.spec().context, V = net.spec().vocabulary;
  if (integers && !quantized) throw std::logic_error("bits_per_byte: integers come from the quantized forward");
  const SequenceSampler sampler(tokens, T, 0, "evaluation");
  std::size_t count = sampler.tiled();
  if (max_sequences) count = std::min(count, max_sequences);
  if (count == 0) throw std::runtime_error("the validation split holds fewer than context + 1 tokens");
  if (quantized) net.quantize_weights(target.format);
  constexpr std::size_t kBatch = 32;
  std::vector<std::uint8_t> in(kBatch * T), out(kBatch * T);
  if (integers) {
    integers->sequences = count;
    integers->inputs.resize(count * T);
    integers->logits.resize(count * T * V);
  }
  double nats = 0;
  for (std::size_t start = 0; start < count; start += kBatch) {
    const int batch = static_cast<int>(std::min(kBatch, count - start));
    for (int b = 0; b < batch; ++b)
      sampler.sequence((start + b) * static_cast<std::size_t>(T), in.data() + b * T, out.data() + b * T);
    const std::vector<float>& logits =
        quantized ? net.forward_quantized(in.data(), batch, target) : net.forward(in.data(), batch);
    if (integers) {
      std::copy(in.begin(), in.begin() + batch * T, integers->inputs.begin() + static_cast<long>(start * T));
      const std::vector<std::int32_t>& z = net.integers().logits;
      std::copy(z.begin(), z.begin() + static_cast<long>(batch) * T * V,
                integers->logits.begin() + static_cast<long>(start * T * V));
    }
    for (int t = 0; t < batch * T; ++t) {
      const float* row = logits.data() + static_cast<std::size_t>(t) * V;
      const float top = *std::max_element(row, row + V);
      double sum = 0;
      for (int v = 0; v < V; ++v) sum += std::exp(static_cast<double>(row[v]) - top);
      nats += std::log(sum) - (static_cast<double>(row[out[t]]) - top);
    }
  }
  return nats / (static_cast<double>(count) * T * std::log(2.0));
}

// ---- the training run -------------------------------------------------------------------------

namespace {

using Clock = std::chrono::steady_clock;

// Sequences the static scales are calibrated on (drawn from the training split).
constexpr int kCalibrationSequences = 32;

std::uint64_t epoch_seed(std::uint64_t seed, int epoch) {
  return seed * 0x9E3779B97F4A7C15ull + static_cast<std::uint64_t>(epoch) + 1;
}

Mlp checkpoint_layers(const TransformerNet& net) {
  Mlp m;
  for (const TransformerNet::Param& p : net.params()) m.layers.push_back({p.cols, p.rows, false, p.w});
  return m;
}

void calibrate(TransformerNet& net, const target::TargetSpec& target, const TrainConfig& c, const TextCorpus& corpus) {
  SequenceSampler sampler(corpus.train, net.spec().context, c.seed ^ 0xC0FFEEull, corpus.source + " (training split)");
  const SequenceBatch b = sampler.next(kCalibrationSequences);
  net.calibrate(b.inputs.data(), b.batch, target.format, c.calibration);
}

TextPhaseResult run_text_phase(Phase phase, const TransformerSpec& spec, const target::TargetSpec& target,
                               const TrainConfig& c, long steps_per_epoch, const TextCorpus& corpus,
                               const std::filesystem::path& checkpoint, bool resume,
                               const std::function<void(const TextProgress&)>& progress, TransformerNet& net) {
  const bool quantized = phase != Phase::Fp32;
  const long total = steps_per_epoch * c.epochs;
  nlohmann::json fj = to_json(c);
  for (const char* k : {"hidden", "threads", "fit_threads", "train_fp32", "distill"}) fj.erase(k);
  if (!quantized) fj.erase("qat_init");
  fj["model"] = to_json(spec);
  fj["phase"] = phase_name(phase);
  fj["target"] = quantized ? target::content_hash(target) : "";
  fj["data"] = {{"train_tokens", corpus.train.size()}, {"validation_tokens", corpus.validation.size()}};
  fj["steps_per_epoch"] = steps_per_epoch;
  const std::string fp = fj.dump();

  std::vector<TransformerNet::Param>& params = net.params();
  std::vector<std::vector<float>> m, v;
  for (const TransformerNet::Param& p : params) {
    m.emplace_back(p.w.size(), 0.0f);
    v.emplace_back(p.w.size(), 0.0f);
  }
  TextPhaseResult result;
  result.ran = true;
  int start_epoch = 0;
  long step = 0;
  double seconds_before = 0;
  if (resume) {
    const Mlp fresh = checkpoint_layers(net);
    if (auto ck = load_checkpoint(checkpoint, fp, {&fresh, c.epochs, steps_per_epoch})) {
      for (std::size_t k = 0; k < params.size(); ++k) params[k].w = std::move(ck->net.layers[k].w);
      m = std::move(ck->adam_m);
      v = std::move(ck->adam_v);
      start_epoch = ck->epochs_done;
      step = ck->step;
      seconds_before = ck->train_seconds;
      result.epochs_resumed = start_epoch;
    }
  }
  if (start_epoch == 0 && quantized) calibrate(net, target, c, corpus);
  std::vector<std::vector<float>> grads;
  std::vector<float> dlogits;
  double seconds_this_run = 0;
  long steps_this_run = 0;
  const int V = spec.vocabulary;
  for (int epoch = start_epoch; epoch < c.epochs; ++epoch) {
    SequenceSampler sampler(corpus.train, spec.context, epoch_seed(c.seed, epoch), corpus.source + " (training split)");
    double loss_sum = 0;
    const auto t0 = Clock::now();
    for (long s = 0; s < steps_per_epoch; ++s, ++step) {
      const SequenceBatch b = sampler.next(c.batch);
      const int n = b.batch * b.context;
      if (quantized) net.quantize_weights(target.format);
      const std::vector<float>& logits = quantized
                                             ? net.forward_quantized(b.inputs.data(), b.batch, target)
                                             : net.forward(b.inputs.data(), b.batch);
      int correct = 0;
      loss_sum += softmax_cross_entropy(logits, b.targets.data(), n, V, dlogits, correct);
      net.backward(dlogits, grads, quantized && c.ste_clip);
      kernels::AdamWParams p;
      p.lr = learning_rate(c, step, total);
      p.step = step + 1;
      const float decay = weight_decay(c, step, total);
      for (std::size_t k = 0; k < params.size(); ++k) {
        p.weight_decay = params[k].decays ? decay : 0.0f;
        kernels::adamw_step(params[k].w.data(), grads[k].data(), m[k].data(), v[k].data(), grads[k].size(), p);
      }
    }
    const double seconds = std::chrono::duration<double>(Clock::now() - t0).count();
    seconds_this_run += seconds;
    steps_this_run += steps_per_epoch;
    save_checkpoint(checkpoint, Checkpoint{fp, epoch + 1, step, seconds_before + seconds_this_run,
                                           checkpoint_layers(net), m, v});
    result.train_loss = loss_sum / static_cast<double>(steps_per_epoch);
    if (progress) {
      const double rate = steps_this_run / seconds_this_run;
      const double val = bits_per_byte(net, corpus.validation, quantized, target, kProgressSequences);
      progress({phase, epoch + 1, c.epochs, static_cast<float>(result.train_loss), static_cast<float>(val),
                static_cast<float>(steps_per_epoch / seconds),
                static_cast<float>((c.epochs - epoch - 1) * steps_per_epoch / rate)});
    }
  }
  result.validation_bpb = bits_per_byte(net, corpus.validation, quantized, target);
  result.steps = steps_this_run;
  result.train_seconds = seconds_this_run;
  result.steps_per_s = seconds_this_run > 0 ? steps_this_run / seconds_this_run : 0;
  return result;
}

}  // namespace

TextTrainResult train_transformer(const TransformerSpec& spec, const target::TargetSpec& target,
                                  const TrainConfig& config, long steps_per_epoch, const TextCorpus& corpus,
                                  const std::filesystem::path& checkpoint_dir, bool resume,
                                  const std::function<void(const TextProgress&)>& progress) {
  if (config.distill) throw std::invalid_argument("--distill: the transformer trainer has no distillation phase yet");
  if (config.device == TrainDevice::Cuda)
    throw std::runtime_error("training on CUDA: the transformer trains on the CPU only; use --device cpu");
  if (corpus.train.size() <= static_cast<std::size_t>(spec.context) ||
      corpus.validation.size() <= static_cast<std::size_t>(spec.context))
    throw std::runtime_error(corpus.source + ": each split needs more than the context's " +
                             std::to_string(spec.context) + " tokens");
  // Before the first phase: a target the quantized network cannot run on stops here, not after
  // the FP32 twin has trained.
  TransformerNet::check_target(target);
  kernels::set_threads(config.threads);
  std::filesystem::create_directories(checkpoint_dir);
  TextTrainResult r;
  r.steps_per_epoch = steps_per_epoch;
  TransformerNet fp32(spec, config.seed);
  if (config.train_fp32) {
    r.fp32 = run_text_phase(Phase::Fp32, spec, target, config, steps_per_epoch, corpus, checkpoint_dir / "fp32.ckpt",
                            resume, progress, fp32);
    TransformerNet ptq = fp32;
    calibrate(ptq, target, config, corpus);
    r.ptq.ran = true;
    r.ptq.validation_bpb = bits_per_byte(ptq, corpus.validation, true, target);
  }
  TransformerNet qat = config.qat_from_fp32 && config.train_fp32 ? fp32 : TransformerNet(spec, config.seed);
  r.qat = run_text_phase(Phase::Qat, spec, target, config, steps_per_epoch, corpus, checkpoint_dir / "qat.ckpt", resume,
                         progress, qat);
  r.qat_net = std::move(qat);
  return r;
}

}  // namespace qathw::training
