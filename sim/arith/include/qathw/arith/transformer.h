// The integer rules of a BitNet b1.58 transformer beyond the linear layer: the bit-serial square
// root, the vector unit (INT8 x INT8 dot products: attention's Q K^T and P V), RMSNorm, the
// integer softmax over a causally masked row, and the squared ReLU. docs/arith.md, "Transformer
// ops", states each rule with its rounding, overflow and precision, and worked examples.
#pragma once

#include <cstdint>

#include "qathw/arith/layer.h"

namespace qathw::arith {

// ---- square root ---------------------------------------------------------------------------

// Steps (cycles) of the bit-serial square root of an input_bits-wide unsigned value: one result
// bit per step.
QATHW_HD constexpr int isqrt_steps(int input_bits) { return (input_bits + 1) / 2; }

// floor(sqrt(n)) for n < 2^input_bits, input_bits in [1, 64]. The restoring digit-by-digit
// method: each step tries one result bit with one subtraction, so the unit takes
// isqrt_steps(input_bits) steps whatever n is (no leading-zero skip, as in hardware).
QATHW_HD constexpr std::uint64_t isqrt(std::uint64_t n, int input_bits = 64) {
  const int steps = isqrt_steps(input_bits);
  std::uint64_t rem = n, root = 0;
  std::uint64_t bit = std::uint64_t{1} << (2 * (steps - 1));  // the trial bit, squared: 4^(steps-1)
  for (int i = 0; i < steps; ++i) {
    // root holds the result so far shifted left by the bits still to come; root + bit < 2^64.
    // Written as selects: the digit's branch would be taken at random.
    const std::uint64_t trial = root + bit;
    const bool fits = rem >= trial;
    rem -= fits ? trial : 0;
    root = (root >> 1) + (fits ? bit : 0);
    bit >>= 2;
  }
  return root;
}

// v * 2^-shift rounded by `mode`, for a shift of either sign: a left shift when shift < 0 (exact;
// the caller keeps |v| 2^-shift below 2^62), round_shift for shift in [0, 62], and 0 beyond (|v| <
// 2^62 is then below half an LSB). The ops below scale by pairs whose shifts can leave [0, 62].
QATHW_HD constexpr std::int64_t shift_round(std::int64_t v, int shift, Rounding mode) {
  if (shift < 0) return v * (std::int64_t{1} << -shift);
  if (shift > kMaxShift) return 0;
  return round_shift(v, shift, mode);
}

// ---- the vector unit: INT8 x INT8 dot products ------------------------------------------------

// The unit is arith::VectorUnit (core.h: a target's [vector_unit]).

// The accumulator format of the unit, for the core's accumulate.
QATHW_HD constexpr Format vector_accumulator(const VectorUnit& u) {
  Format f;
  f.acc_bits = u.acc_bits;
  f.overflow = u.overflow;
  return f;
}

// a[0..k) . b[0], b[stride], ..., b[(k-1) stride] as the unit computes it (stride lets P V read a
// column of V stored token-major). With Overflow::Wrap the result is the exact sum wrapped once;
// with Overflow::Saturate the chunking by `lanes` is part of the rule (as for arith::dot).
template <typename A, typename B>
QATHW_HD std::int64_t vector_dot(const A* a, const B* b, int k, const VectorUnit& u, int stride = 1) {
  const Format acc_format = vector_accumulator(u);
  std::int64_t acc = 0;
  for (int base = 0; base < k; base += u.lanes) {
    const int end = base + u.lanes < k ? base + u.lanes : k;
    std::int64_t partial = 0;
    for (int i = base; i < end; ++i)
      partial += static_cast<std::int64_t>(a[i]) * static_cast<std::int64_t>(b[static_cast<long>(i) * stride]);
    acc = accumulate(acc, partial, acc_format);
  }
  return acc;
}

// Whether a k-term dot product with |a| <= a_max and |b| <= b_max can be summed in any order
// (a GEMM) with the overflow rule applied once to the exact sum: the accumulator wraps, or no
// partial sum can reach the saturation bound (k a_max b_max <= 2^(acc_bits-1) - 1).
QATHW_HD constexpr bool vector_dot_order_free(std::int64_t k, std::int64_t a_max, std::int64_t b_max,
                                              const VectorUnit& u) {
  return u.overflow == Overflow::Wrap || k * a_max * b_max <= signed_max(u.acc_bits);
}

// ---- RMSNorm -------------------------------------------------------------------------------

// Fraction bits of the normalised value x / rms between the norm's two multiplies.
inline constexpr int kRmsNormFracBits = 16;
// Largest feature count of one token the rule is stated for (it bounds x / rms by 2^10).
inline constexpr int kRmsNormMaxFeatures = 1 << 20;

// Whether the sum of squares of n values saturated to in_bits, plus n eps, fits 64 bits unsigned:
// n (2^(2 in_bits - 2) + eps) <= 2^64 - 1. in_bits in [1, 32], eps < 2^63.
QATHW_HD constexpr bool rmsnorm_sum_fits(int n, int in_bits, std::uint64_t eps) {
  const std::uint64_t largest_square = std::uint64_t{1} << (2 * in_bits - 2);  // (-2^(in_bits-1))^2
  return largest_square + eps <= ~std::uint64_t{0} / static_cast<std::uint64_t>(n);
}

// The widest input saturation (at most 32 bits) whose sum of squares fits for n features, eps 0:
// 28 bits for 256 features, 24 bits up to 2^18 - 1 features.
QATHW_HD constexpr int rmsnorm_max_input_bits(int n) {
  int bits = 32;
  while (bits > 1 && !rmsnorm_sum_fits(n, bits, 0)) --bits;
  return bits;
}

// A token's 1/rms and the steps that produced it (engines compare these too).
struct RmsInverse {
  std::uint64_t sum = 0;     // S' = sum of x_i^2 + n eps, exact
  int k = 0;                 // the mean square's scale: mean_sq = S' 4^k / n
  std::uint64_t mean_sq = 0; // round(S' 4^k / n), in [2^42, 2^62) when S' > 0
  std::uint64_t root = 0;    // isqrt(mean_sq) = floor(rms 2^k)
  // 1/rms = mantissa 2^-shift: the reciprocal unit's pair of root (mantissa normalised to M bits)
  // with k taken off its shift. The pair never leaves the norm unit, so its shift is not held to
  // the target's scale range (it lies in [M - 11, M + 31]); {0, 0} for an all-zero token.
  FixedPoint inv_rms;
};

// 1/rms of a token from its sum of squares S (sum_squares) and feature count n, with eps (in
// units of x^2) added to the mean square: rms = sqrt(S / n + eps). Integer steps:
//   S' = S + n eps;  k = floor((64 - bit_length(S')) / 2), so S' 4^k lies in [2^62, 2^64)
//   mean_sq = round_div(S' 4^k, n);  if mean_sq >= 2^62: mean_sq >>= 2, k -= 1
//   root = isqrt(mean_sq) < 2^31;  (m, s) = reciprocal(root, 1) with shifts [0, 62]
//   inv_rms = (m, s - k)
// Requires 1 <= n <= kRmsNormMaxFeatures and rmsnorm_sum_fits for the inputs.
QATHW_HD inline RmsInverse rms_inverse(std::uint64_t sum_sq, int n, std::uint64_t eps, const Format& f) {
  RmsInverse out;
  out.sum = sum_sq + static_cast<std::uint64_t>(n) * eps;
  if (out.sum == 0) return out;
  out.k = (64 - bit_length(out.sum)) / 2;
  out.mean_sq = round_div(out.sum << (2 * out.k), static_cast<std::uint64_t>(n), f.rounding);
  if (out.mean_sq >= (std::uint64_t{1} << 62)) {  // only for n <= 3: keep the root below 2^31
    out.mean_sq >>= 2;
    --out.k;
  }
  out.root = isqrt(out.mean_sq);
  // The norm's own reciprocal: the target's mantissa width and rounding, the full shift range
  // (its pair feeds the next multiply directly and is never stored as a scale).
  Format unit = f;
  unit.scale_shift_min = 0;
  unit.scale_shift_max = kMaxShift;
  const FixedPoint r = reciprocal(static_cast<std::int64_t>(out.root), 1, unit);
  out.inv_rms = FixedPoint{r.mantissa, r.shift - out.k};
  return out;
}

// The exact sum of squares of n values, each first saturated to in_bits.
template <typename Value>
QATHW_HD std::uint64_t sum_squares(const Value* x, int n, int in_bits) {
  std::uint64_t sum = 0;
  for (int i = 0; i < n; ++i) {
    const std::int64_t v = saturate(static_cast<std::int64_t>(x[i]), in_bits);
    sum += static_cast<std::uint64_t>(v * v);
  }
  return sum;
}

// One feature's output: x (saturated to in_bits) times 1/rms at kRmsNormFracBits fraction bits,
// rounded, then times the feature's gain pair, rounded and saturated to out_bits:
//   u = round(x m_inv 2^-(s_inv - F));  y = saturate(round(u m_g 2^-(s_g + F)), out_bits)
// The gain pair is g_i / s_y (the learned gain over the output's scale) in the target's scale
// format; the input's scale cancels in x / rms.
QATHW_HD constexpr std::int64_t rmsnorm_value(std::int64_t x, int in_bits, FixedPoint inv_rms, FixedPoint gain,
                                              int out_bits, Rounding mode) {
  const std::int64_t u = shift_round(saturate(x, in_bits) * inv_rms.mantissa, inv_rms.shift - kRmsNormFracBits, mode);
  return saturate(shift_round(u * gain.mantissa, gain.shift + kRmsNormFracBits, mode), out_bits);
}

// RMSNorm of one token of n values: sum of squares, 1/rms, then every feature with its gain pair.
// Returns the token's 1/rms. A per-token absmax quantizer after it (quantize_token) sees codes
// that, in real arithmetic, do not depend on 1/rms: it cancels in absmax scaling.
template <typename Value, typename Out>
QATHW_HD RmsInverse rmsnorm_token(const Value* x, int n, int in_bits, std::uint64_t eps, const FixedPoint* gains,
                                  int out_bits, Out* y, const Format& f) {
  const RmsInverse inv = rms_inverse(sum_squares(x, n, in_bits), n, eps, f);
  for (int i = 0; i < n; ++i)
    y[i] = static_cast<Out>(
        rmsnorm_value(static_cast<std::int64_t>(x[i]), in_bits, inv.inv_rms, gains[i], out_bits, f.rounding));
  return inv;
}

// ---- causal masking ------------------------------------------------------------------------

// Whether key position `key` takes part in the attention row of query position `query`: the keys
// up to and including the query (positions count from 0 in the sequence).
QATHW_HD constexpr bool causal_visible(int query, int key) { return key <= query; }

// The number of leading keys of query position `query`'s row that take part: query + 1.
QATHW_HD constexpr int causal_count(int query) { return query + 1; }

// ---- integer softmax -----------------------------------------------------------------------

// Index bits (L) of the exp2 table: at most 2^8 = 256 entries.
inline constexpr int kMaxExp2IndexBits = 8;
// Fraction bits (P_e) of the table's values, at most 24: the table is computed at 32 fraction bits.
inline constexpr int kMaxExp2ValueBits = 24;

// The softmax unit's table: entry[f] = 2^(-f / 2^L) with value_bits fraction bits, for
// f in [0, 2^L). entry[0] = 2^value_bits exactly.
struct Exp2Table {
  int index_bits = 0;
  int value_bits = 0;
  std::uint32_t entry[1 << kMaxExp2IndexBits] = {};
};

// The table, from integers only (a ROM generator every engine can run):
//   c_j = 2^(-1/2^j) at 32 fraction bits: c_1 = isqrt(2^63), c_(j+1) = isqrt(c_j 2^32)
//   p = 2^32; for each set bit i of f, lowest first: p = round(p c_(L-i) / 2^32)
//   entry[f] = round(p / 2^(32 - value_bits))
// Every rounding follows `mode`. |entry[f] - 2^value_bits 2^(-f/2^L)| <= 1/2 + 2^-6 (tested), for
// index_bits in [0, 8] and value_bits in [1, 24].
QATHW_HD constexpr Exp2Table exp2_table(int index_bits, int value_bits, Rounding mode) {
  Exp2Table t;
  t.index_bits = index_bits;
  t.value_bits = value_bits;
  std::uint64_t c[kMaxExp2IndexBits + 1] = {};
  if (index_bits >= 1) c[1] = isqrt(std::uint64_t{1} << 63);
  for (int j = 2; j <= index_bits; ++j) c[j] = isqrt(c[j - 1] << 32);
  for (int f = 0; f < (1 << index_bits); ++f) {
    std::uint64_t p = std::uint64_t{1} << 32;
    for (int i = 0; i < index_bits; ++i)
      if ((f >> i) & 1) p = round_shift_unsigned(p * c[index_bits - i], 32, mode);  // p c < 2^64
    t.entry[f] = static_cast<std::uint32_t>(round_shift_unsigned(p, 32 - value_bits, mode));
  }
  return t;
}

// round(2^value_bits 2^(-e / 2^L)) for e >= 0 (a score's distance below the row's maximum, in the
// log2 domain with L fraction bits): the table entry of e's L low bits, shifted right by the
// integer part e >> L with rounding by `mode`.
QATHW_HD constexpr std::int64_t exp2_neg(std::int64_t e, const Exp2Table& t, Rounding mode) {
  const std::int64_t whole = e >> t.index_bits;
  const std::int64_t entry = t.entry[e & ((std::int64_t{1} << t.index_bits) - 1)];
  // Beyond kMaxShift the value is 0, and so is the entry (< 2^25) shifted by kMaxShift: a select,
  // not a branch on the score.
  return round_shift(entry, static_cast<int>(whole < kMaxShift ? whole : kMaxShift), mode);
}

// Whether a row of n scores keeps the softmax sum within the reciprocal unit's input:
// n 2^value_bits <= 2^31 (every exp value is at most 2^value_bits).
QATHW_HD constexpr bool softmax_sum_fits(int n, int value_bits) {
  return static_cast<std::int64_t>(n) << value_bits <= (std::int64_t{1} << 31);
}

// The largest probability code: prob_bits unsigned, qp = 2^prob_bits - 1 stands for 1.
QATHW_HD constexpr std::int64_t prob_qmax(int prob_bits) { return (std::int64_t{1} << prob_bits) - 1; }

// A row's maximum, exp sum and the reciprocal pair of the sum (engines compare these too).
struct SoftmaxRow {
  std::int64_t max = 0;   // the largest score taking part
  std::int64_t sum = 0;   // W = sum of the exp values, in [2^value_bits, n 2^value_bits]
  FixedPoint inv_sum;     // reciprocal(W, qp) with shifts [0, 62]
};

// Integer softmax of one attention row into unsigned probability codes. z holds n scores in the
// log2 domain with L = t.index_bits fraction bits (z = round(score log2(e) 2^L), a requantize of
// the Q K^T accumulator by the pair of s_q s_k log2(e) 2^L / sqrt(d_head)); the first `count`
// (1 <= count <= n) take part, the others are masked and get code 0:
//   zmax = max z_j;  w_j = exp2_neg(zmax - z_j);  W = sum w_j   (W < 2^31: softmax_sum_fits)
//   (m, s) = reciprocal(W, qp) with shifts [0, 62];  p_j = min(round(w_j m 2^-s), qp)
// Rounding follows the target's mode and the reciprocal has its mantissa bits. The codes need not
// sum to qp. Precision: |p_j / qp - softmax(z 2^-L ln 2)_j| <= 1/(2 qp) + 2^-M + n 2^-value_bits.
template <typename Score, typename Prob>
QATHW_HD SoftmaxRow softmax_row(const Score* z, int n, int count, const Exp2Table& t, int prob_bits, const Format& f,
                                Prob* p) {
  SoftmaxRow row;
  row.max = static_cast<std::int64_t>(z[0]);
  for (int j = 1; j < count; ++j) row.max = z[j] > row.max ? static_cast<std::int64_t>(z[j]) : row.max;
  for (int j = 0; j < count; ++j) row.sum += exp2_neg(row.max - static_cast<std::int64_t>(z[j]), t, f.rounding);
  Format unit = f;  // the softmax's own reciprocal: full shift range, like the norm's
  unit.scale_shift_min = 0;
  unit.scale_shift_max = kMaxShift;
  const std::int64_t qp = prob_qmax(prob_bits);
  row.inv_sum = reciprocal(row.sum, qp, unit);
  for (int j = 0; j < n; ++j) {
    if (j >= count) {
      p[j] = Prob{0};
      continue;
    }
    // The exp value again rather than a stored one: the same integer, and no row buffer.
    const std::int64_t w = exp2_neg(row.max - static_cast<std::int64_t>(z[j]), t, f.rounding);
    const std::int64_t code = round_shift(w * row.inv_sum.mantissa, row.inv_sum.shift, f.rounding);
    p[j] = static_cast<Prob>(code < qp ? code : qp);
  }
  return row;
}

// ---- squared ReLU --------------------------------------------------------------------------

// The FFN's activation on an integer v (|v| < 2^31): max(v, 0)^2 scaled by 2^-shift, rounded by
// `mode`, saturated to out_bits. The output's scale is the input's squared times 2^shift.
QATHW_HD constexpr std::int64_t squared_relu(std::int64_t v, int shift, int out_bits, Rounding mode) {
  const std::int64_t r = v > 0 ? v : 0;
  return saturate(round_shift(r * r, shift, mode), out_bits);
}

// The smallest shift at which no input saturated to in_bits (in [1, 31]) saturates out_bits.
QATHW_HD constexpr int squared_relu_shift(int in_bits, int out_bits) {
  const std::int64_t top = signed_max(in_bits);
  int shift = 0;
  while (shift < kMaxShift && round_shift(top * top, shift, Rounding::HalfAwayFromZero) > signed_max(out_bits)) ++shift;
  return shift;
}

}  // namespace qathw::arith
