// The processing element and the accumulator: sign-select / shift-and-add, adder tree, overflow.
#pragma once

#include "qathw/arith/core.h"

namespace qathw::arith {

// Product of an activation code and a weight code as the adder-only PE forms it, without a
// multiplier. Ternary: sign-select (x, 0 or -x). INT4: shift-and-add over the bits of |w|.
// Equal to x * w for every code; the tests check that exhaustively.
QATHW_HD constexpr std::int64_t pe_product(std::int64_t x, int w, WeightFormat format) {
  if (format == WeightFormat::Ternary) return w > 0 ? x : (w < 0 ? -x : 0);
  const int mag = w < 0 ? -w : w;
  std::int64_t sum = 0;
  for (int bit = 0; bit < 4; ++bit)
    if ((mag >> bit) & 1) sum += x * (std::int64_t{1} << bit);
  return w < 0 ? -sum : sum;
}

// One accumulator update: the adder-tree partial sum (exact: the tree is wide enough for
// `lanes` products) is added to the acc_bits accumulator, then the overflow rule applies.
QATHW_HD constexpr std::int64_t accumulate(std::int64_t acc, std::int64_t partial, const Format& f) {
  return apply_overflow(acc + partial, f.acc_bits, f.overflow);
}

// Dot product of K activation codes with K weight codes as the array computes it: `lanes`
// products per cycle summed by the adder tree, each partial sum accumulated with the overflow
// rule. With Overflow::Wrap the result equals the exact sum wrapped once (wrap is modular);
// with Overflow::Saturate it can differ when an intermediate sum saturates, so the chunking
// by `lanes` is part of the rule.
// The extremes of the exact running sum (no overflow rule) after each partial sum of a dot
// product, starting from 0: what an accumulator wide enough never to overflow would hold.
struct RunningRange {
  std::int64_t lowest = 0, highest = 0;
};

// With `range`, the dot product also reports its exact running sum's extremes (qat-hw profile).
template <typename Act, typename Weight>
QATHW_HD std::int64_t dot(const Act* x, const Weight* w, int k, int lanes, const Format& f,
                          RunningRange* range = nullptr) {
  std::int64_t acc = 0, exact = 0;
  for (int base = 0; base < k; base += lanes) {
    const int end = base + lanes < k ? base + lanes : k;
    std::int64_t partial = 0;
    for (int i = base; i < end; ++i) partial += pe_product(x[i], static_cast<int>(w[i]), f.weights);
    acc = accumulate(acc, partial, f);
    if (range) {
      exact += partial;
      range->lowest = exact < range->lowest ? exact : range->lowest;
      range->highest = exact > range->highest ? exact : range->highest;
    }
  }
  return acc;
}

// Largest |partial sum| bound below which saturating accumulation equals saturating the exact
// sum once: if sum(|x_i * w_i|) <= signed_max(acc_bits), no intermediate sum can saturate.
QATHW_HD constexpr bool saturation_impossible(std::int64_t abs_sum, const Format& f) {
  return abs_sum <= signed_max(f.acc_bits);
}

}  // namespace qathw::arith
