// What the RTL block tests share: the target the blocks were Verilated for, the clock and the
// reset of a Verilated block, and reading a two's-complement port.
#pragma once

#include <cstdint>

#include "qathw/target/target_spec.h"

namespace qathw::rtl {

// QATHW_RTL_TARGET: the built-in target whose parameters the test's blocks were Verilated with.
inline const target::TargetSpec& spec() {
  static const target::TargetSpec t = target::builtin_target(QATHW_RTL_TARGET);
  return t;
}

inline std::uint64_t mask(int bits) { return bits >= 64 ? ~std::uint64_t{0} : (std::uint64_t{1} << bits) - 1; }

// The low `width` bits of v as a two's-complement value.
inline std::int64_t sign_extend(std::uint64_t v, int width) {
  const std::uint64_t sign = std::uint64_t{1} << (width - 1);
  v &= mask(width);
  return static_cast<std::int64_t>((v ^ sign) - sign);
}

// One clock cycle: a falling then a rising edge.
template <typename Model>
void tick(Model& m) {
  m.clk_i = 0;
  m.eval();
  m.clk_i = 1;
  m.eval();
}

// The active-low asynchronous reset, released.
template <typename Model>
void reset(Model& m) {
  m.clk_i = 0;
  m.rst_ni = 0;
  m.eval();
  m.rst_ni = 1;
  m.eval();
}

}  // namespace qathw::rtl
