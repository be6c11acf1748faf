// Weight and activation quantizers, exactly as the accelerator (and so the trainer) applies them.
#pragma once

#include "qathw/arith/fixed_point.h"

namespace qathw::arith {

// ---- weights (float master weights -> integer codes; run at training and export time) -----

// Largest weight code magnitude: ternary {-1, 0, 1}; INT4 symmetric [-7, 7].
QATHW_HD constexpr int weight_qmax(WeightFormat w) { return w == WeightFormat::Ternary ? 1 : 7; }

// Lower bound of a weight scale statistic, as in BitNet b1.58 (avoids division by zero).
inline constexpr float kWeightScaleEps = 1e-5f;

// |w| as an unsigned fixed-point integer with 24 fraction bits, |w| saturated at 256 (so at most
// 2^32; a NaN counts as 256). Weight statistics sum these integers, so a mean is the same
// whatever order (CPU thread, GPU block) it is summed in.
inline constexpr int kAbsFracBits = 24;
QATHW_HD inline std::uint64_t abs_fixed(float w) {
  const double a = std::fabs(static_cast<double>(w));
  const double capped = a < 256.0 ? a : 256.0;
  return static_cast<std::uint64_t>(capped * double(std::uint64_t{1} << kAbsFracBits));  // exact scaling, truncates
}

// mean(|w|) from the sum of abs_fixed over `count` weights.
QATHW_HD inline float mean_from_abs_fixed(std::uint64_t sum, std::uint64_t count) {
  return static_cast<float>(std::ldexp(static_cast<double>(sum), -kAbsFracBits) / static_cast<double>(count));
}

// The divisor codes are computed with, from the format's statistic: ternary uses the absmean
// gamma of the whole tensor (BitNet b1.58); INT4 the absmax of one output channel over qmax.
QATHW_HD inline float weight_scale(float statistic, WeightFormat w) {
  const float s = statistic > kWeightScaleEps ? statistic : kWeightScaleEps;
  return w == WeightFormat::Ternary ? s : s / static_cast<float>(weight_qmax(w));
}

// codes = clamp(round(w / scale), -qmax, qmax), as a float holding the integer (what the
// trainer's GEMMs consume).
QATHW_HD inline float weight_code_value(float w, float scale, WeightFormat format, Rounding mode) {
  const float q = round_to_integer(w / scale, mode);
  const float qmax = static_cast<float>(weight_qmax(format));
  return q > qmax ? qmax : (q < -qmax ? -qmax : q);
}

QATHW_HD inline std::int8_t weight_code(float w, float scale, WeightFormat format, Rounding mode) {
  return static_cast<std::int8_t>(weight_code_value(w, scale, format, mode));
}

// Whether w lies inside the range the quantizer does not clip: |w / scale| < qmax + 1/2 (at
// qmax + 1/2 itself the rounded value is already clipped in both rounding modes' worst case).
// Outside it the code is pinned to +-qmax and the straight-through gradient is zero.
QATHW_HD inline bool weight_in_range(float w, float scale, WeightFormat format) {
  return std::fabs(w / scale) < static_cast<float>(weight_qmax(format)) + 0.5f;
}

// ---- activations (integers -> act_bits codes; the hardware's quantizer unit) -------------

// Codes are symmetric: [-qmax, qmax] with qmax = 2^(act_bits-1) - 1 (127 for INT8).
QATHW_HD constexpr std::int64_t act_qmax(int act_bits) { return signed_max(act_bits); }

// Bytes of one activation code in the accelerator's memories (a layer's code scratch, a KV
// cache): one up to 8 bits, else two.
QATHW_HD constexpr int act_code_bytes(int act_bits) { return act_bits <= 8 ? 1 : 2; }

// One element: clamp(round((v * mantissa) / 2^shift), -qmax, qmax). v is an integer the
// datapath holds (a requantized accumulator, or an input pixel), |v| < 2^31.
QATHW_HD constexpr std::int64_t quantize_act(std::int64_t v, FixedPoint inv_scale, int act_bits, Rounding mode) {
  const std::int64_t qmax = act_qmax(act_bits);
  return clamp(round_shift(v * inv_scale.mantissa, inv_scale.shift, mode), -qmax, qmax);
}

// Dynamic per-token absmax (BitNet b1.58): the multiplier for one token whose largest
// magnitude is `amax` maps amax to qmax: reciprocal(amax) = qmax / amax in fixed point.
QATHW_HD inline FixedPoint token_inv_scale(std::int64_t amax, const Format& f) {
  return reciprocal(amax, act_qmax(f.act_bits), f);
}

// The datapath's ReLU on integers (requantized accumulators of hidden layers).
QATHW_HD constexpr std::int64_t relu(std::int64_t v) { return v > 0 ? v : 0; }

// |v|, the per-element step of the absmax reduction.
QATHW_HD constexpr std::int64_t magnitude(std::int64_t v) { return v < 0 ? -v : v; }

}  // namespace qathw::arith
