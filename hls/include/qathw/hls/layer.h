// HLS C++ of the accelerator's datapath (Vitis HLS conventions): one layer streamed through the
// activation quantizer, the PE array tile by tile, and the requantization units. Synthesizable:
// static loop bounds, fixed-size arrays, no allocation, no recursion, no I/O. Every element rule
// is a call into the arith core (sim/arith), which stays inside that subset too.
//
// T is a target's constants struct (generated from its TOML file by CMake): kRows, kLanes,
// kMaxWidth, kMaxMap, kMaxWeightBytes and format(). The tops of feature-map layers (conv2d,
// pools, residual add) are in feature_map.h.
#pragma once

#include <cstdint>

#include "qathw/arith.h"

namespace qathw::hls {

// The activation quantizer over n values: static (arith::quantize_act with the calibrated pair, per
// element) or dynamic (arith::quantize_token: absmax over all n values, the hardware reciprocal,
// codes). N is the port's static size: kMaxWidth for a linear layer, kMaxMap for a feature map,
// which a convolution quantizes as one token (its patches mix pixels; one dot product needs one
// scale).
template <class T, int N = T::kMaxWidth>
void activation_quantizer(const std::int32_t values[N], int n, bool static_quantizer, arith::FixedPoint pair,
                          std::int16_t codes[N]) {
  constexpr arith::Format f = T::format();
  if (static_quantizer) {
  static_codes:
    for (int k = 0; k < N; ++k) {
#pragma HLS PIPELINE II = 1
      if (k < n) codes[k] = static_cast<std::int16_t>(arith::quantize_act(values[k], pair, f.act_bits, f.rounding));
    }
  } else {
    arith::quantize_token(values, n, codes, f);
  }
#ifdef QATHW_HLS_FAULT_CLAMP
  // Injected fault (tests only): the clamp stops one short of qmax.
fault:
  for (int k = 0; k < n; ++k)
    if (codes[k] == arith::act_qmax(f.act_bits)) codes[k] = static_cast<std::int16_t>(codes[k] - 1);
#endif
}

// One tile: kRows output channels of one input, kLanes products per row per cycle. MaxIn and
// MaxWeightBytes are the ports' static sizes: kMaxWidth and kMaxWeightBytes for the layer and
// convolution tops, kMaxFfn and kMaxTokenWeightBytes for the transformer's linear top.
template <class T, int MaxIn = T::kMaxWidth, int MaxWeightBytes = T::kMaxWeightBytes>
void pe_tile(const std::int16_t codes[MaxIn], const std::uint8_t weights[MaxWeightBytes], int in_n,
             int out_n, int n0, std::int64_t acc[T::kRows]) {
  constexpr arith::Format f = T::format();
rows_clear:
  for (int r = 0; r < T::kRows; ++r) {
#pragma HLS UNROLL
    acc[r] = 0;
  }
chunks:
  for (int base = 0; base < MaxIn; base += T::kLanes) {
#pragma HLS PIPELINE II = 1
    if (base < in_n) {
    rows:
      for (int r = 0; r < T::kRows; ++r) {
#pragma HLS UNROLL
        std::int64_t partial = 0;  // the row's adder tree
      lanes:
        for (int i = 0; i < T::kLanes; ++i) {
#pragma HLS UNROLL
          const int k = base + i;
          const int n = n0 + r;
          if (k < in_n && n < out_n) {
            const int w = arith::load_code(weights, static_cast<std::size_t>(n) * in_n + k, f.weights);
            partial += arith::pe_product(codes[k], w, f.weights);
          }
        }
        acc[r] = arith::accumulate(acc[r], partial, f);
      }
    }
  }
}

// The layer top: values in (pixels or the previous layer's outputs), outputs out. Weights packed
// as the SRAM holds them; one requantization pair per output channel.
template <class T>
void layer_top(const std::int32_t values[T::kMaxWidth], int in_n, int out_n, bool relu,
               const std::uint8_t weights[T::kMaxWeightBytes], const std::int32_t rq_mantissa[T::kMaxWidth],
               const std::int32_t rq_shift[T::kMaxWidth], std::int32_t out[T::kMaxWidth]) {
#pragma HLS INTERFACE m_axi port = weights offset = slave bundle = gmem
#pragma HLS INTERFACE s_axilite port = in_n
#pragma HLS INTERFACE s_axilite port = out_n
#pragma HLS INTERFACE s_axilite port = relu
#pragma HLS INTERFACE s_axilite port = return
  constexpr arith::Format f = T::format();
  std::int16_t codes[T::kMaxWidth];
#pragma HLS ARRAY_PARTITION variable = codes cyclic factor = T::kLanes
  std::int64_t acc[T::kRows];
#pragma HLS ARRAY_PARTITION variable = acc complete
  activation_quantizer<T>(values, in_n, false, arith::FixedPoint{}, codes);
tiles:
  for (int n0 = 0; n0 < T::kMaxWidth; n0 += T::kRows) {
    if (n0 < out_n) {
      pe_tile<T>(codes, weights, in_n, out_n, n0, acc);
    requant:
      for (int r = 0; r < T::kRows; ++r) {
#pragma HLS UNROLL
        const int n = n0 + r;
        if (n < out_n) {
          out[n] = static_cast<std::int32_t>(arith::epilogue(acc[r], arith::FixedPoint{rq_mantissa[n], rq_shift[n]}, relu, f));
        }
      }
    }
  }
}

}  // namespace qathw::hls
