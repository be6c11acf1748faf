#include "qathw/kernels/conv.h"

#include <cstddef>

namespace qathw::kernels {

void im2col(const float* map, const arith::Conv2dShape& s, int g, float* cols) {
  const std::size_t patch = static_cast<std::size_t>(s.patch());
  for (int oy = 0; oy < s.out_h(); ++oy)
    for (int ox = 0; ox < s.out_w(); ++ox) {
      float* row = cols + (static_cast<std::size_t>(oy) * s.out_w() + ox) * patch;
      arith::for_each_patch_element(s, oy, ox, g, [&](int k, long at) { row[k] = at >= 0 ? map[at] : 0.0f; });
    }
}

void col2im_add(const float* cols, const arith::Conv2dShape& s, int g, float* map_grad) {
  const std::size_t patch = static_cast<std::size_t>(s.patch());
  for (int oy = 0; oy < s.out_h(); ++oy)
    for (int ox = 0; ox < s.out_w(); ++ox) {
      const float* row = cols + (static_cast<std::size_t>(oy) * s.out_w() + ox) * patch;
      arith::for_each_patch_element(s, oy, ox, g, [&](int k, long at) {
        if (at >= 0) map_grad[at] += row[k];
      });
    }
}

}  // namespace qathw::kernels
