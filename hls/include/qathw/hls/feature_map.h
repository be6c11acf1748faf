// HLS C++ of the layers on feature maps (Vitis HLS conventions): conv2d on the PE array, the
// pooling unit (max and average) and the residual adder. Same subset as layer.h: static loop
// bounds (kMaxMap values per map, kMaxWidth channels and patch codes), fixed-size arrays, no
// allocation, no recursion, no I/O; every element rule a call into the arith core
// (docs/arith.md, "Feature maps"). Maps are height x width x channels, channels last.
#pragma once

#include <cstdint>

#include "qathw/arith.h"
#include "qathw/hls/layer.h"

namespace qathw::hls {

// conv2d: the map's quantizer (static, or dynamic over the whole map), then per output pixel
// and group the patch (arith::conv_patch: order ky, kx, ci, padding code 0) through the PE array
// tile by tile (pe_tile, kRows channels of the group at a time), the group's requantization
// units and ReLU. The kernel is stored as a linear layer's weights, out_c x patch, so a
// linear layer is the convolution of a 1 x 1 map with in_c = its input width.
template <class T>
void conv_top(const std::int32_t values[T::kMaxMap], arith::Conv2dShape map, bool static_quantizer,
              arith::FixedPoint quantizer, bool relu, const std::uint8_t weights[T::kMaxWeightBytes],
              const std::int32_t rq_mantissa[T::kMaxWidth], const std::int32_t rq_shift[T::kMaxWidth],
              std::int32_t out[T::kMaxMap]) {
#pragma HLS INTERFACE m_axi port = weights offset = slave bundle = gmem
#pragma HLS INTERFACE s_axilite port = map
#pragma HLS INTERFACE s_axilite port = static_quantizer
#pragma HLS INTERFACE s_axilite port = quantizer
#pragma HLS INTERFACE s_axilite port = relu
#pragma HLS INTERFACE s_axilite port = return
  constexpr arith::Format f = T::format();
  std::int16_t codes[T::kMaxMap];  // the quantized map, read by the sliding window
  std::int16_t patch[T::kMaxWidth];
#pragma HLS ARRAY_PARTITION variable = patch cyclic factor = T::kLanes
  std::int64_t acc[T::kRows];
#pragma HLS ARRAY_PARTITION variable = acc complete
  activation_quantizer<T, T::kMaxMap>(values, map.in_h * map.in_w * map.in_c, static_quantizer, quantizer, codes);
  const int ow = map.out_w(), out_pixels = map.out_h() * ow;
  const int group_out = map.group_out(), patch_n = map.patch();
  int oy = 0, ox = 0;  // counters instead of a division per pixel
pixels:
  for (int p = 0; p < T::kMaxMap; ++p) {
    if (p < out_pixels) {
    groups:
      for (int g = 0; g < T::kMaxWidth; ++g) {
        if (g < map.groups) {
          arith::conv_patch(codes, map, oy, ox, g, patch);
        tiles:
          for (int t = 0; t < T::kMaxWidth; t += T::kRows) {
            if (t < group_out) {
              const int n0 = g * group_out + t;
              pe_tile<T>(patch, weights, patch_n, (g + 1) * group_out, n0, acc);
            requant:
              for (int r = 0; r < T::kRows; ++r) {
#pragma HLS UNROLL
                const int n = n0 + r;
                if (t + r < group_out)
                  out[p * map.out_c + n] = static_cast<std::int32_t>(
                      arith::epilogue(acc[r], arith::FixedPoint{rq_mantissa[n], rq_shift[n]}, relu, f));
              }
            }
          }
        }
      }
      if (++ox == ow) {
        ox = 0;
        ++oy;
      }
    }
  }
}

// The pooling unit: one output per cycle in the order (oy, ox, c), the largest value of the
// window (arith::max_pool; padding takes no part) or its exact sum requantized by the pair of
// 1 / window area (arith::average_pool of arith::window_sum), then ReLU when fused.
template <class T>
void pool_top(const std::int32_t values[T::kMaxMap], arith::Conv2dShape map, bool average, arith::FixedPoint pair,
              bool relu, std::int32_t out[T::kMaxMap]) {
#pragma HLS INTERFACE s_axilite port = map
#pragma HLS INTERFACE s_axilite port = average
#pragma HLS INTERFACE s_axilite port = pair
#pragma HLS INTERFACE s_axilite port = relu
#pragma HLS INTERFACE s_axilite port = return
  constexpr arith::Format f = T::format();
  const int channels = map.in_c, ow = map.out_w(), n = map.out_h() * ow * channels;
  int oy = 0, ox = 0, c = 0;
outputs:
  for (int at = 0; at < T::kMaxMap; ++at) {
    if (at < n) {
      const std::int64_t v =
          average ? arith::average_pool(arith::window_sum(values, map.in_h, map.in_w, channels, map.window, oy, ox, c),
                                        pair, f)
                  : arith::max_pool(values, map.in_h, map.in_w, channels, map.window, oy, ox, c);
      out[at] = static_cast<std::int32_t>(relu ? arith::relu(v) : v);
      if (++c == channels) {
        c = 0;
        if (++ox == ow) {
          ox = 0;
          ++oy;
        }
      }
    }
  }
}

// The residual adder: each operand requantized by its pair into the output's scale, summed and
// saturated (arith::add_aligned), then ReLU when fused; one element per cycle.
template <class T>
void add_top(const std::int32_t a[T::kMaxMap], arith::FixedPoint pair_a, const std::int32_t b[T::kMaxMap],
             arith::FixedPoint pair_b, int n, bool relu, std::int32_t out[T::kMaxMap]) {
#pragma HLS INTERFACE s_axilite port = pair_a
#pragma HLS INTERFACE s_axilite port = pair_b
#pragma HLS INTERFACE s_axilite port = n
#pragma HLS INTERFACE s_axilite port = relu
#pragma HLS INTERFACE s_axilite port = return
  constexpr arith::Format f = T::format();
elements:
  for (int k = 0; k < T::kMaxMap; ++k) {
#pragma HLS PIPELINE II = 1
    if (k < n) {
      const std::int64_t v = arith::add_aligned(a[k], pair_a, b[k], pair_b, f);
      out[k] = static_cast<std::int32_t>(relu ? arith::relu(v) : v);
    }
  }
}

}  // namespace qathw::hls
