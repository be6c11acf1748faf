// The integer rules of the ops on feature maps: 2-D convolution (stride, padding, groups,
// depthwise), max and average pooling, and the residual add of two tensors of different scales.
// A feature map is height x width x channels, channels last (a pixel's channels are contiguous:
// the order the activation SRAM holds them and the array's lanes read them).
//
// A convolution is the linear op's arithmetic on patches: output pixel (oy, ox), channel co is
// arith::dot of the patch of its group with co's kernel, in the order (ky, kx, ci) with `lanes`
// products per chunk under the accumulator's overflow rule, then epilogue(acc, requant[co]). The
// kernel is stored as a linear op's weights, row-major out_c x patch. Padding reads code 0 (the
// quantizer is symmetric: code 0 is the real value 0).
#pragma once

#include <cstdint>

#include "qathw/arith/layer.h"

namespace qathw::arith {

// A 2-D window over a feature map: convolution kernels and pooling windows alike.
struct Window {
  int kernel_h = 1, kernel_w = 1;
  int stride_h = 1, stride_w = 1;
  int pad_h = 0, pad_w = 0;  // zero rows/columns added on each side

  // Output size along one side; the window must fit the padded input (in + 2 pad >= kernel).
  QATHW_HD static constexpr int out_size(int in, int kernel, int stride, int pad) {
    return (in + 2 * pad - kernel) / stride + 1;
  }
  QATHW_HD constexpr int out_h(int in_h) const { return out_size(in_h, kernel_h, stride_h, pad_h); }
  QATHW_HD constexpr int out_w(int in_w) const { return out_size(in_w, kernel_w, stride_w, pad_w); }
};

struct Conv2dShape {
  int in_h = 1, in_w = 1, in_c = 1, out_c = 1;
  Window window;
  int groups = 1;  // in_c and out_c both divisible by it; groups == in_c == out_c is depthwise

  QATHW_HD constexpr int out_h() const { return window.out_h(in_h); }
  QATHW_HD constexpr int out_w() const { return window.out_w(in_w); }
  QATHW_HD constexpr int group_in() const { return in_c / groups; }   // input channels per group
  QATHW_HD constexpr int group_out() const { return out_c / groups; }  // output channels per group
  // The dot product's length: one output channel's kernel, and one row of its weights.
  QATHW_HD constexpr int patch() const { return window.kernel_h * window.kernel_w * group_in(); }
};

// The patch of output pixel (oy, ox), group g, as runs: f(k, at, n) for patch elements k .. k +
// n - 1 in the order (ky, kx, ci), which lie at map indices at .. at + n - 1 of the in_h x in_w x
// in_c map, or (at = -1) in the padding. Runs are as long as the layout allows: a window row's
// positions inside the map are one run when the group holds every channel. The one statement of
// the patch order: the element walk below, the gather, the trainer's im2col and its transpose
// (col2im) all follow it.
template <typename F>
QATHW_HD void for_each_patch_run(const Conv2dShape& s, int oy, int ox, int g, F f) {
  const int gi = s.group_in();
  int k = 0;
  for (int ky = 0; ky < s.window.kernel_h; ++ky) {
    const int y = oy * s.window.stride_h - s.window.pad_h + ky;
    int run_k = k, run_n = 0;
    long run_at = -1;
    for (int kx = 0; kx < s.window.kernel_w; ++kx, k += gi) {
      const int x = ox * s.window.stride_w - s.window.pad_w + kx;
      const bool inside = y >= 0 && y < s.in_h && x >= 0 && x < s.in_w;
      const long at = inside ? (static_cast<long>(y) * s.in_w + x) * s.in_c + static_cast<long>(g) * gi : -1L;
      const bool extends = run_n > 0 && (at < 0 ? run_at < 0 : run_at >= 0 && run_at + run_n == at);
      if (extends) {
        run_n += gi;
        continue;
      }
      if (run_n > 0) f(run_k, run_at, run_n);
      run_k = k;
      run_n = gi;
      run_at = at;
    }
    if (run_n > 0) f(run_k, run_at, run_n);
  }
}

// The same patch element by element: f(k, at) for k = 0 .. patch() - 1, `at` the element's map
// index or -1 in the padding.
template <typename F>
QATHW_HD void for_each_patch_element(const Conv2dShape& s, int oy, int ox, int g, F f) {
  for_each_patch_run(s, oy, ox, g, [&](int k, long at, int n) {
    for (int i = 0; i < n; ++i) f(k + i, at < 0 ? -1L : at + i);
  });
}

// The patch that output pixel (oy, ox) of group g reads: patch() codes in the order (ky, kx, ci),
// 0 where the window lies in the padding. `map` is in_h x in_w x in_c.
template <typename Code>
QATHW_HD void conv_patch(const Code* map, const Conv2dShape& s, int oy, int ox, int g, Code* patch) {
  for_each_patch_element(s, oy, ox, g, [&](int k, long at) { patch[k] = at >= 0 ? map[at] : Code{0}; });
}

// One output of a convolution: channel co's accumulator over its patch (`patch` as conv_patch
// gathered it for co's group; `kernel` co's patch() weight codes), requantized by its pair.
template <typename Code, typename Weight>
QATHW_HD std::int64_t conv_output(const Code* patch, const Weight* kernel, const Conv2dShape& s, int lanes,
                                  FixedPoint pair, const Format& f) {
  return epilogue(dot(patch, kernel, s.patch(), lanes, f), pair, false, f);
}

// ---- pooling (on requantized values, before the next quantizer) ---------------------------

// Calls f(at) with the index (in the in_h x in_w x channels map) of channel c at each position of
// output pixel (oy, ox)'s window that lies inside the map (padding positions are skipped): the
// one statement of a pooling window, which the pools below and the trainer's pools walk.
template <typename F>
QATHW_HD void for_each_window_index(int in_h, int in_w, int channels, const Window& w, int oy, int ox, int c, F f) {
  for (int ky = 0; ky < w.kernel_h; ++ky) {
    const int y = oy * w.stride_h - w.pad_h + ky;
    if (y < 0 || y >= in_h) continue;
    for (int kx = 0; kx < w.kernel_w; ++kx) {
      const int x = ox * w.stride_w - w.pad_w + kx;
      if (x >= 0 && x < in_w) f((static_cast<long>(y) * in_w + x) * channels + c);
    }
  }
}

// Calls f(v) for channel c's value at each in-map position of output pixel (oy, ox)'s window.
template <typename Value, typename F>
QATHW_HD void for_each_in_window(const Value* map, int in_h, int in_w, int channels, const Window& w, int oy, int ox,
                                 int c, F f) {
  for_each_window_index(in_h, in_w, channels, w, oy, ox, c, [&](long at) { f(static_cast<std::int64_t>(map[at])); });
}

// The largest value of channel c in the window of output pixel (oy, ox). Padding takes no part
// (a window lying wholly in the padding is refused by the graph checks).
template <typename Value>
QATHW_HD std::int64_t max_pool(const Value* map, int in_h, int in_w, int channels, const Window& w, int oy, int ox,
                               int c) {
  bool any = false;
  std::int64_t best = 0;
  for_each_in_window(map, in_h, in_w, channels, w, oy, ox, c, [&](std::int64_t v) {
    if (!any || v > best) best = v;
    any = true;
  });
  return best;
}

// The exact integer sum of channel c over the window (padding adds 0): an average pool is this
// sum requantized by the pair of 1 / (kernel_h kernel_w) (average_pool). A global average pool is
// the window of the whole map.
template <typename Value>
QATHW_HD std::int64_t window_sum(const Value* map, int in_h, int in_w, int channels, const Window& w, int oy, int ox,
                                 int c) {
  std::int64_t sum = 0;
  for_each_in_window(map, in_h, in_w, channels, w, oy, ox, c, [&](std::int64_t v) { sum += v; });
  return sum;
}

// An average pool's pair: 1 / (kernel_h kernel_w) in the target's scale format (the status says
// when it has none).
QATHW_HD inline FixedPointResult average_pool_pair(const Window& w, const Format& f) {
  return to_fixed_point(1.0 / (static_cast<double>(w.kernel_h) * w.kernel_w), f);
}

// An average pool's output: the window's sum times the pair (1 / window area, in the target's
// scale format), rounded and saturated to acc_bits like every requantization. requantize's
// product needs |v| <= 2^31, so the sum is first saturated to 32 bits (a sum beyond that needs
// more than 128 values at the extremes of a 24-bit accumulator).
QATHW_HD inline std::int64_t average_pool(std::int64_t window_sum, FixedPoint pair, const Format& f) {
  return requantize(saturate(window_sum, 32), pair, f.rounding, f.acc_bits);
}

// ---- residual add --------------------------------------------------------------------------

// Two tensors of different scales added in the output's scale: each operand requantized by its
// own pair (its scale over the output's), the two results summed and saturated to acc_bits.
QATHW_HD inline std::int64_t add_aligned(std::int64_t a, FixedPoint pair_a, std::int64_t b, FixedPoint pair_b,
                                         const Format& f) {
  return saturate(requantize(a, pair_a, f.rounding, f.acc_bits) + requantize(b, pair_b, f.rounding, f.acc_bits),
                  f.acc_bits);
}

}  // namespace qathw::arith
