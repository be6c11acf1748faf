// How the element rules compose into a layer: the per-token activation quantizer, the
// accumulator epilogue (requantize, then the activation), whether an accumulation order is free,
// and the weight scales' requantization pairs. Each composition is written here once; the
// integer engine, the SystemC model, the HLS C++, the CPU and CUDA kernels and the profiler call
// it (the RTL implements it and is held to it by the tests).
#pragma once

#include "qathw/arith/dot.h"
#include "qathw/arith/quantize.h"

namespace qathw::arith {

// ---- the per-token activation quantizer ----------------------------------------------------

// One token's quantizer once its absmax is known: the reciprocal of the absmax, then the codes.
// Engines that reduce the absmax in parallel (a CUDA block) build it from their reduction.
struct TokenQuantizer {
  std::int64_t amax = 0;
  FixedPoint inv_scale;
  int act_bits = 8;
  Rounding rounding = Rounding::HalfAwayFromZero;

  QATHW_HD std::int64_t code(std::int64_t v) const { return quantize_act(v, inv_scale, act_bits, rounding); }
};

QATHW_HD inline TokenQuantizer token_quantizer(std::int64_t amax, const Format& f) {
  return TokenQuantizer{amax, token_inv_scale(amax, f), f.act_bits, f.rounding};
}

// The absmax reduction's step: the running maximum of |v|.
QATHW_HD constexpr std::int64_t absmax_step(std::int64_t running, std::int64_t v) {
  const std::int64_t m = magnitude(v);
  return m > running ? m : running;
}

// Dynamic per-token absmax quantization (BitNet b1.58) of n values into act_bits codes: absmax,
// reciprocal, codes. Returns the token's quantizer (its absmax and scale pair). The format by
// value and the restricted pointers let the code loop vectorize (uint8 inputs may otherwise alias
// anything): the trainer's QAT forward runs it on every token.
template <typename Value, typename Code>
QATHW_HD TokenQuantizer quantize_token(const Value* __restrict values, int n, Code* __restrict codes, const Format f) {
  std::int64_t amax = 0;
  for (int k = 0; k < n; ++k) amax = absmax_step(amax, static_cast<std::int64_t>(values[k]));
  const TokenQuantizer q = token_quantizer(amax, f);
  for (int k = 0; k < n; ++k) codes[k] = static_cast<Code>(q.code(static_cast<std::int64_t>(values[k])));
  return q;
}

// ---- the accumulator epilogue --------------------------------------------------------------

// An output channel's accumulator requantized by its pair (rounded, saturated to acc_bits), then
// the layer's activation (ReLU or none): the integer a layer writes for the next one.
QATHW_HD constexpr std::int64_t epilogue(std::int64_t acc, FixedPoint pair, bool relu, const Format& f) {
  const std::int64_t q = requantize(acc, pair, f.rounding, f.acc_bits);
  return relu ? arith::relu(q) : q;
}

// ---- accumulation order --------------------------------------------------------------------

// Bound on |any partial sum| of a dot product of k activation codes with k weight codes.
QATHW_HD constexpr std::int64_t dot_abs_bound(std::int64_t k, const Format& f) {
  return act_qmax(f.act_bits) * weight_qmax(f.weights) * k;
}

// Whether the accumulator of a k-term dot product is independent of the order of its additions:
// wrapping is modular, and a saturating accumulator that can never saturate is exact. Where it
// is, an engine may sum in any order (a GEMM, a warp reduction) and apply the overflow rule to
// the exact sum once (accumulator_of_exact_sum); elsewhere it must follow arith::dot's chunks.
QATHW_HD constexpr bool accumulation_order_free(std::int64_t k, const Format& f) {
  return f.overflow == Overflow::Wrap || saturation_impossible(dot_abs_bound(k, f), f);
}

// The accumulator of an order-free dot product from its exact sum.
QATHW_HD constexpr std::int64_t accumulator_of_exact_sum(std::int64_t sum, const Format& f) {
  return apply_overflow(sum, f.acc_bits, f.overflow);
}

// ---- weight scales and requantization pairs -------------------------------------------------

// The requantization pair of an output channel: its weight scale over the layer's reference
// scale (the largest channel scale, so the ratio lies in (0, 1]) in the target's scale format.
QATHW_HD inline FixedPointResult requant_pair(float channel_scale, float reference_scale, const Format& f) {
  return to_fixed_point(static_cast<double>(channel_scale) / static_cast<double>(reference_scale), f);
}

}  // namespace qathw::arith
