// Bit fields of Verilator ports: plain integers up to 64 bits, VlWide arrays of 32-bit words above.
#pragma once

#include <cstdint>
#include <type_traits>

namespace qathw::rtl {

template <typename Port>
void put_bits(Port& port, int offset, int width, std::uint64_t value) {
  for (int b = 0; b < width; ++b) {
    const bool bit = (value >> b) & 1;
    const int at = offset + b;
    if constexpr (std::is_integral_v<Port>) {
      port = static_cast<Port>(bit ? (port | (Port{1} << at)) : (port & ~(Port{1} << at)));
    } else {
      const std::uint32_t mask = std::uint32_t{1} << (at % 32);
      port[at / 32] = bit ? (port[at / 32] | mask) : (port[at / 32] & ~mask);
    }
  }
}

template <typename Port>
std::uint64_t get_bits(const Port& port, int offset, int width) {
  std::uint64_t v = 0;
  for (int b = 0; b < width; ++b) {
    const int at = offset + b;
    bool bit;
    if constexpr (std::is_integral_v<Port>) {
      bit = (port >> at) & 1;
    } else {
      bit = (port[at / 32] >> (at % 32)) & 1;
    }
    v |= static_cast<std::uint64_t>(bit) << b;
  }
  return v;
}

template <typename Port>
void clear_bits(Port& port) {
  if constexpr (std::is_integral_v<Port>) {
    port = 0;
  } else {
    for (auto& w : port.m_storage) w = 0;
  }
}

}  // namespace qathw::rtl
