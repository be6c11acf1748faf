// Weight storage as the accelerator's SRAM holds it: 2-bit ternary, 4-bit INT4, little end first.
#pragma once

#include <cstddef>

#include "qathw/arith/core.h"

namespace qathw::arith {

// Bits per stored weight code.
QATHW_HD constexpr int code_bits(WeightFormat w) { return w == WeightFormat::Ternary ? 2 : 4; }

QATHW_HD constexpr std::size_t packed_bytes(std::size_t count, WeightFormat w) {
  const std::size_t per_byte = static_cast<std::size_t>(8 / code_bits(w));
  return (count + per_byte - 1) / per_byte;
}

// A code as its two's-complement bit field: ternary -1 -> 0b11, 0 -> 0b00, +1 -> 0b01;
// INT4 -8..7 -> 0x8..0x7.
QATHW_HD constexpr std::uint8_t encode_code(int code, WeightFormat w) {
  return static_cast<std::uint8_t>(code & ((1 << code_bits(w)) - 1));
}

// The field back to a code by sign extension. The ternary field 0b10 (-2) is not a code;
// decode_code returns -2 for it and bundle loaders reject it.
QATHW_HD constexpr int decode_code(std::uint8_t field, WeightFormat w) {
  const int bits = code_bits(w);
  const int v = field & ((1 << bits) - 1);
  return (v & (1 << (bits - 1))) ? v - (1 << bits) : v;
}

// Code i sits in byte i / per_byte at bit (i % per_byte) * bits: the first code in the low bits.
QATHW_HD constexpr void store_code(std::uint8_t* packed, std::size_t i, int code, WeightFormat w) {
  const int bits = code_bits(w);
  const std::size_t per_byte = static_cast<std::size_t>(8 / bits);
  const int pos = static_cast<int>(i % per_byte) * bits;
  std::uint8_t& byte = packed[i / per_byte];
  byte = static_cast<std::uint8_t>((byte & ~(((1 << bits) - 1) << pos)) | (encode_code(code, w) << pos));
}

QATHW_HD constexpr int load_code(const std::uint8_t* packed, std::size_t i, WeightFormat w) {
  const int bits = code_bits(w);
  const std::size_t per_byte = static_cast<std::size_t>(8 / bits);
  const int pos = static_cast<int>(i % per_byte) * bits;
  return decode_code(static_cast<std::uint8_t>(packed[i / per_byte] >> pos), w);
}

}  // namespace qathw::arith
