#include "qathw/kernels/conv.h"

#include <algorithm>
#include <cstddef>

namespace qathw::kernels {

void im2col(const float* map, const arith::Conv2dShape& s, int g, float* cols) {
  const std::size_t patch = static_cast<std::size_t>(s.patch());
  for (int oy = 0; oy < s.out_h(); ++oy)
    for (int ox = 0; ox < s.out_w(); ++ox) {
      float* row = cols + (static_cast<std::size_t>(oy) * s.out_w() + ox) * patch;
      arith::for_each_patch_run(s, oy, ox, g, [&](int k, long at, int n) {
        if (at < 0) std::fill_n(row + k, n, 0.0f);
        else std::copy_n(map + at, n, row + k);
      });
    }
}

void col2im_add(const float* cols, const arith::Conv2dShape& s, int g, float* map_grad) {
  const std::size_t patch = static_cast<std::size_t>(s.patch());
  for (int oy = 0; oy < s.out_h(); ++oy)
    for (int ox = 0; ox < s.out_w(); ++ox) {
      const float* row = cols + (static_cast<std::size_t>(oy) * s.out_w() + ox) * patch;
      arith::for_each_patch_run(s, oy, ox, g, [&](int k, long at, int n) {
        if (at < 0) return;
        float* to = map_grad + at;
        const float* from = row + k;
        for (int i = 0; i < n; ++i) to[i] += from[i];
      });
    }
}

}  // namespace qathw::kernels
