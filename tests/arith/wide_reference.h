// Wide-integer (__int128) references for the fixed-point rules, written independently of the core:
// division-based rather than shift-based.
#pragma once

#include <cstdint>

#include "qathw/arith/core.h"

namespace qathw::test {

__extension__ typedef __int128 i128;  // GCC and Clang; pedantic mode needs __extension__

// round(p / 2^shift) computed by truncating division and a remainder comparison.
inline i128 reference_round_pow2(i128 p, int shift, arith::Rounding mode) {
  const i128 den = static_cast<i128>(1) << shift;
  i128 q = p / den;  // truncates toward zero
  i128 r = p - q * den;
  const i128 twice = 2 * (r < 0 ? -r : r);
  const bool tie = twice == den;
  const bool away = twice > den || (tie && (mode == arith::Rounding::HalfAwayFromZero || (q % 2) != 0));
  if (away) q += (p < 0) ? -1 : 1;
  return q;
}

inline std::int64_t reference_clamp(i128 v, std::int64_t lo, std::int64_t hi) {
  return v < lo ? lo : (v > hi ? hi : static_cast<std::int64_t>(v));
}

}  // namespace qathw::test
