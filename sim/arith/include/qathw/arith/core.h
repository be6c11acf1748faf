// The integer rules every other part of qat-hw is built on: number formats, rounding, overflow.
// Header-only, pure functions on native integers, callable from host and CUDA device code.
// docs/arith.md states each rule as a formula with worked examples.
#pragma once

#include <cmath>
#include <cstdint>

#if defined(__CUDACC__)
#define QATHW_HD __host__ __device__
#else
#define QATHW_HD
#endif

namespace qathw::arith {

enum class WeightFormat : std::uint8_t { Ternary, Int4 };
enum class ActQuantizer : std::uint8_t { DynamicPerTokenAbsmax, StaticPerTensor };
enum class Rounding : std::uint8_t { HalfAwayFromZero, HalfEven };
enum class Overflow : std::uint8_t { Saturate, Wrap };

// Ranges the rules are defined for; target validation enforces them. They keep every
// intermediate product inside int64: |accumulator| < 2^31 and scale mantissa < 2^31.
inline constexpr int kMinActBits = 2, kMaxActBits = 16;
inline constexpr int kMinAccBits = 8, kMaxAccBits = 32;
inline constexpr int kMinMantissaBits = 2, kMaxMantissaBits = 31;
inline constexpr int kMinShift = 0, kMaxShift = 62;

// The numeric contract of one accelerator target (the arithmetic part of a TargetSpec).
struct Format {
  WeightFormat weights = WeightFormat::Ternary;
  int act_bits = 8;
  ActQuantizer act_quantizer = ActQuantizer::DynamicPerTokenAbsmax;
  Rounding rounding = Rounding::HalfAwayFromZero;
  int acc_bits = 24;
  Overflow overflow = Overflow::Saturate;
  int scale_mantissa_bits = 16;
  int scale_shift_min = 0;
  int scale_shift_max = 62;
};

// The attention datapath's multiply-accumulate unit (a target's [vector_unit]; these defaults when
// the target has none): `lanes` products of two operands per cycle, summed exactly by the adder
// tree, each partial sum accumulated under the overflow rule (the linear op's accumulate, with
// this unit's width). Operands are signed codes of operand_bits (|a| <= 2^(operand_bits-1) - 1:
// Q, K, V) or unsigned codes below 2^operand_bits (softmax probabilities); the multiplier is
// operand_bits + 1 bits signed so it takes both. transformer.h has its rules (vector_dot).
struct VectorUnit {
  int lanes = 16;
  int operand_bits = 8;
  int acc_bits = 32;
  Overflow overflow = Overflow::Saturate;
};
inline constexpr int kMinVectorOperandBits = 2, kMaxVectorOperandBits = 16;

// ---- two's-complement ranges -------------------------------------------------------------

QATHW_HD constexpr std::int64_t signed_max(int bits) { return (std::int64_t{1} << (bits - 1)) - 1; }
QATHW_HD constexpr std::int64_t signed_min(int bits) { return -(std::int64_t{1} << (bits - 1)); }

QATHW_HD constexpr std::int64_t clamp(std::int64_t v, std::int64_t lo, std::int64_t hi) {
  return v < lo ? lo : (v > hi ? hi : v);
}

// v limited to the signed `bits`-bit range [-2^(bits-1), 2^(bits-1) - 1].
QATHW_HD constexpr std::int64_t saturate(std::int64_t v, int bits) {
  return clamp(v, signed_min(bits), signed_max(bits));
}

// v reduced modulo 2^bits into the signed `bits`-bit range (what a bits-wide register keeps).
QATHW_HD constexpr std::int64_t wrap(std::int64_t v, int bits) {
  const std::uint64_t mask = (bits >= 64) ? ~std::uint64_t{0} : ((std::uint64_t{1} << bits) - 1);
  const std::uint64_t low = static_cast<std::uint64_t>(v) & mask;
  const std::uint64_t sign = std::uint64_t{1} << (bits - 1);
  return (low & sign) ? static_cast<std::int64_t>(low) - static_cast<std::int64_t>(sign) * 2
                      : static_cast<std::int64_t>(low);
}

QATHW_HD constexpr std::int64_t apply_overflow(std::int64_t v, int bits, Overflow mode) {
  return mode == Overflow::Saturate ? saturate(v, bits) : wrap(v, bits);
}

// ---- rounding ----------------------------------------------------------------------------

// round(v / 2^shift) to the nearest integer, ties by `mode`. Defined for |v| < 2^62,
// 0 <= shift <= 62. With round_div (the reciprocal's division) the accelerator's only integer
// rounding.
QATHW_HD constexpr std::int64_t round_shift(std::int64_t v, int shift, Rounding mode) {
  // Written without branches on the value or the shift (shift 0 included: half is then 0 and
  // rem 0), as the callers' loops run it on data.
  const std::int64_t one = std::int64_t{1} << shift;
  const std::int64_t half = one >> 1;
  if (mode == Rounding::HalfAwayFromZero) {
    const std::int64_t mag = ((v < 0 ? -v : v) + half) >> shift;
    return v < 0 ? -mag : mag;
  }
  const std::int64_t floor = v >> shift;  // arithmetic shift: rounds toward -infinity
  const std::int64_t rem = v & (one - 1);  // v - floor 2^shift, in [0, 2^shift)
  // Up when rem > half, or rem == half and floor is odd: 2 rem plus floor's low bit against
  // 2^shift says both in one comparison (and never for shift 0).
  return floor + (2 * rem + (floor & 1) > one ? 1 : 0);
}

// round(v / 2^shift) for an unsigned v < 2^64 and shift in [1, 63], ties by `mode` (round_shift
// for values that do not fit int64).
QATHW_HD constexpr std::uint64_t round_shift_unsigned(std::uint64_t v, int shift, Rounding mode) {
  const std::uint64_t q = v >> shift;
  const std::uint64_t rem = v & ((std::uint64_t{1} << shift) - 1);
  const std::uint64_t half = std::uint64_t{1} << (shift - 1);
  // A tie goes up away from zero, or to even when q is odd: one comparison, as in round_shift.
  const std::uint64_t tie_up = mode == Rounding::HalfAwayFromZero ? 1 : (q & 1);
  return q + (rem + tie_up > half ? 1 : 0);
}

// round(num / den) for num >= 0, den > 0, ties by `mode`.
QATHW_HD constexpr std::uint64_t round_div(std::uint64_t num, std::uint64_t den, Rounding mode) {
  const std::uint64_t q = num / den;
  const std::uint64_t r = num % den;
  const std::uint64_t twice = 2 * r;  // r < den < 2^63, so no overflow
  const bool up = twice > den || (twice == den && (mode == Rounding::HalfAwayFromZero || (q & 1) != 0));
  return q + (up ? 1 : 0);
}

// A float or double rounded to the nearest integer (returned in the same type), ties by `mode`.
// Independent of the floating-point environment's rounding mode; exact for every input.
template <typename Real>
QATHW_HD Real round_to_integer(Real x, Rounding mode) {
  // Written as selects, without branches, so loops over it vectorize.
  const Real t = std::trunc(x);
  const Real frac = std::fabs(x - t);  // exact: x and trunc(x) share their exponent range
  const Real away = t + std::copysign(Real(1), x);
  // A tie means |x| < 2^23 (2^52 for double), so t / 2 and its truncation are exact.
  const bool t_even = std::trunc(t * Real(0.5)) * Real(2) == t;
  const bool tie_away = mode == Rounding::HalfAwayFromZero || !t_even;
  const bool up = frac > Real(0.5) || (frac == Real(0.5) && tie_away);
  return up ? away : t;
}

// Number of significant bits of v (0 for 0): a leading-zero count.
QATHW_HD constexpr int bit_length(std::uint64_t v) {
#if defined(__CUDA_ARCH__)
  return 64 - __clzll(static_cast<long long>(v));
#else
  return v == 0 ? 0 : 64 - __builtin_clzll(v);
#endif
}

}  // namespace qathw::arith
