// Fixed-point scales: how the hardware represents a real multiplier as an integer pair.
#pragma once

#include "qathw/arith/core.h"

namespace qathw::arith {

// The real value mantissa * 2^-shift. mantissa is unsigned and below 2^mantissa_bits of the
// target's scale format; shift is within [scale_shift_min, scale_shift_max].
struct FixedPoint {
  std::int64_t mantissa = 0;
  int shift = 0;
};

enum class FixedPointStatus : std::uint8_t { Ok, TooLarge, TooSmall, NotPositive };

struct FixedPointResult {
  FixedPoint value;
  FixedPointStatus status = FixedPointStatus::Ok;
};

// A positive real scale as the hardware's pair: the largest shift in range for which the
// rounded mantissa still fits, so precision is maximal. `value` too large for the format
// (mantissa would not fit at the smallest shift) or too small (mantissa rounds to 0 at the
// largest shift) is reported, not silently clamped.
QATHW_HD inline FixedPointResult to_fixed_point(double value, const Format& f) {
  FixedPointResult out;
  if (!(value > 0.0)) {
    out.status = FixedPointStatus::NotPositive;
    return out;
  }
  const std::int64_t limit = std::int64_t{1} << f.scale_mantissa_bits;
  int exponent = 0;
  std::frexp(value, &exponent);  // value = frac * 2^exponent, frac in [0.5, 1)
  int shift = f.scale_mantissa_bits - exponent;  // puts value * 2^shift in [2^(M-1), 2^M)
  if (shift > f.scale_shift_max) shift = f.scale_shift_max;
  if (shift < f.scale_shift_min) shift = f.scale_shift_min;
  double m = round_to_integer(std::ldexp(value, shift), f.rounding);
  if (m >= static_cast<double>(limit) && shift > f.scale_shift_min) {  // rounded up to 2^M
    --shift;
    m = round_to_integer(std::ldexp(value, shift), f.rounding);
  }
  if (m >= static_cast<double>(limit)) {
    out.status = FixedPointStatus::TooLarge;
    return out;
  }
  if (m < 1.0) {
    out.status = FixedPointStatus::TooSmall;
    return out;
  }
  out.value = FixedPoint{static_cast<std::int64_t>(m), shift};
  return out;
}

QATHW_HD inline double to_real(FixedPoint p) { return std::ldexp(static_cast<double>(p.mantissa), -p.shift); }

// The hardware's reciprocal unit: qmax / amax as a normalised fixed-point pair, computed with
// integers only (one division per token). amax == 0 gives the pair {0, shift_min}: every code
// of an all-zero token is 0. Requires 0 <= amax <= 2^31 and 1 <= qmax < 2^15. The pair is
// normalised whenever the shift range allows it; target validation requires
// shift_max >= mantissa_bits + acc_bits - act_bits + 1, which covers every amax an acc_bits
// accumulator can hold.
QATHW_HD inline FixedPoint reciprocal(std::int64_t amax, std::int64_t qmax, const Format& f) {
  if (amax <= 0) return FixedPoint{0, f.scale_shift_min};
  const int m_bits = f.scale_mantissa_bits;
  const std::int64_t limit = std::int64_t{1} << m_bits;
  const std::uint64_t a = static_cast<std::uint64_t>(amax);
  const std::uint64_t q = static_cast<std::uint64_t>(qmax);
  // Shift that normalises floor(q * 2^shift / a) into [2^(M-1), 2^M); it keeps q * 2^shift
  // below 2^M * a < 2^62. With d = bitlen(a) - bitlen(q), shift is M-1+d or M+d, the latter
  // when q * 2^d < a.
  const int d = bit_length(a) - bit_length(q);
  const bool below = d >= 0 ? (q << d) < a : q < (a << -d);
  int shift = (m_bits - 1) + d + (below ? 1 : 0);
  if (shift > f.scale_shift_max) shift = f.scale_shift_max;
  if (shift < f.scale_shift_min) {
    // The true mantissa would need more than M bits at the smallest shift: saturate it.
    return FixedPoint{limit - 1, f.scale_shift_min};
  }
  std::uint64_t m = round_div(q << shift, a, f.rounding);
  if (m >= static_cast<std::uint64_t>(limit)) {  // rounding carried into bit M
    if (shift > f.scale_shift_min) {
      m >>= 1;  // m == 2^M exactly, so halving it and the shift is exact
      --shift;
    } else {
      m = static_cast<std::uint64_t>(limit - 1);
    }
  }
  return FixedPoint{static_cast<std::int64_t>(m), shift};
}

// A pair times an unsigned integer, as the hardware forms a scale that follows the token (a
// static pair times the token's absmax): the exact product m n, then, where it needs more than
// mantissa_bits bits, rounded by the target's mode to its top mantissa_bits bits and the shift
// lowered by as many (a carry into bit M halves the mantissa exactly). n == 0 gives {0,
// shift_min}. TooLarge when the shift would fall below shift_min (the value is then the largest
// mantissa at shift_min). Requires 0 <= n < 2^32 and a mantissa below 2^31 (the format's bound).
QATHW_HD inline FixedPointResult scale_pair(FixedPoint p, std::int64_t n, const Format& f) {
  FixedPointResult out;
  const std::uint64_t product = static_cast<std::uint64_t>(p.mantissa) * static_cast<std::uint64_t>(n);
  if (product == 0) {
    out.value = FixedPoint{0, f.scale_shift_min};
    return out;
  }
  const int m_bits = f.scale_mantissa_bits;
  const int drop = bit_length(product) > m_bits ? bit_length(product) - m_bits : 0;
  std::uint64_t m = drop > 0 ? round_shift_unsigned(product, drop, f.rounding) : product;
  int shift = p.shift - drop;
  if (m >> m_bits) {  // rounding carried into bit M: m == 2^M
    m >>= 1;
    --shift;
  }
  if (shift < f.scale_shift_min) {
    out.value = FixedPoint{(std::int64_t{1} << m_bits) - 1, f.scale_shift_min};
    out.status = FixedPointStatus::TooLarge;
    return out;
  }
  out.value = FixedPoint{static_cast<std::int64_t>(m), shift};
  return out;
}

// A static pair times a token's factors, one scale_pair after another in the order given: the
// pair of a token's scale (docs/arith.md, "Pairs that follow the token").
QATHW_HD inline FixedPointResult token_pair(FixedPoint base, const std::int64_t* factors, int count, const Format& f) {
  FixedPointResult r{base, FixedPointStatus::Ok};
  for (int i = 0; i < count && r.status == FixedPointStatus::Ok; ++i) r = scale_pair(r.value, factors[i], f);
  return r;
}

// Multiplies an integer by a fixed-point scale, rounds by the target's mode and saturates to
// `out_bits`: the requantization unit. Requires |v| <= 2^31 and mantissa < 2^31.
QATHW_HD constexpr std::int64_t requantize(std::int64_t v, FixedPoint scale, Rounding mode, int out_bits) {
  return saturate(round_shift(v * scale.mantissa, scale.shift, mode), out_bits);
}

}  // namespace qathw::arith
