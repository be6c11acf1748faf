// The transposes of arith's patch and window walks, as gathers: for one element of a feature
// map, the outputs whose patch (convolution) or window (pool) reads it. The GPU trainer's
// backward kernels sum an input element's gradient from these, one thread per element, with no
// atomics (so deterministically), and in the order the CPU's scatters add into it: outputs in
// ascending (oy, ox). Host and device; tests/cuda/gradient_sources_test.cpp holds them to
// arith::for_each_patch_element and arith::for_each_window_index.
#pragma once

#include "qathw/arith.h"

namespace qathw::kernels::cuda {

// Outputs [lo, hi) along one side whose window (kernel, stride, pad) covers input position pos.
struct OutputRange {
  int lo = 0, hi = 0;
};

QATHW_HD inline OutputRange covering_outputs(int pos, int kernel, int stride, int pad, int out_size) {
  // Output o covers pos when o stride - pad <= pos <= o stride - pad + kernel - 1.
  const int first = pos + pad - kernel + 1;  // o stride >= first
  const int lo = first <= 0 ? 0 : (first + stride - 1) / stride;
  const int last = (pos + pad) / stride;  // o stride <= pos + pad (pos + pad >= 0)
  OutputRange r;
  r.lo = lo;
  r.hi = last + 1 < out_size ? last + 1 : out_size;
  if (r.hi < r.lo) r.hi = r.lo;
  return r;
}

// Calls f(pixel, k) for each output pixel (oy out_w + ox) of convolution s whose patch holds map
// element (y, x, c) as its patch element k (group c / group_in), in ascending (oy, ox).
template <typename F>
QATHW_HD void for_each_patch_reader(const arith::Conv2dShape& s, int y, int x, int c, F f) {
  const arith::Window& w = s.window;
  const int gi = s.group_in(), ci = c % gi;
  const OutputRange ry = covering_outputs(y, w.kernel_h, w.stride_h, w.pad_h, s.out_h());
  const OutputRange rx = covering_outputs(x, w.kernel_w, w.stride_w, w.pad_w, s.out_w());
  for (int oy = ry.lo; oy < ry.hi; ++oy) {
    const int ky = y - (oy * w.stride_h - w.pad_h);
    for (int ox = rx.lo; ox < rx.hi; ++ox) {
      const int kx = x - (ox * w.stride_w - w.pad_w);
      f(oy * s.out_w() + ox, (ky * w.kernel_w + kx) * gi + ci);
    }
  }
}

// Calls f(pixel) for each output pixel (oy out_w + ox) of a pool (window w over an in_h x in_w
// map, out_h x out_w outputs) whose window holds position (y, x), in ascending (oy, ox).
template <typename F>
QATHW_HD void for_each_window_reader(const arith::Window& w, int out_h, int out_w, int y, int x, F f) {
  const OutputRange ry = covering_outputs(y, w.kernel_h, w.stride_h, w.pad_h, out_h);
  const OutputRange rx = covering_outputs(x, w.kernel_w, w.stride_w, w.pad_w, out_w);
  for (int oy = ry.lo; oy < ry.hi; ++oy)
    for (int ox = rx.lo; ox < rx.hi; ++ox) f(oy * out_w + ox);
}

// The split of a long A^T B (the kernel gradient over batch x pixels rows) into fixed chunks of
// rows, each chunk's product apart, then summed in chunk order: the same sums whatever the device.
inline constexpr int kSplitRows = 1024;
QATHW_HD constexpr int split_chunks(long rows) {
  return rows <= kSplitRows ? 1 : static_cast<int>((rows + kSplitRows - 1) / kSplitRows);
}

}  // namespace qathw::kernels::cuda
