// The trainer's convolution lowering: a feature map's patches as the rows of a matrix (im2col),
// so a convolution is a GEMM with the kernels, and the transpose that takes the rows' gradients
// back to the map (col2im). Both walk arith::for_each_patch_run, the patch order the
// hardware and the integer engine use.
#pragma once

#include "qathw/arith.h"

namespace qathw::kernels {

// cols (out_h * out_w rows of patch() values): the patches of group g of one map (in_h x in_w x
// in_c, channels last), padding 0.
void im2col(const float* map, const arith::Conv2dShape& s, int g, float* cols);

// map_grad += the transpose of im2col applied to cols (the same layout as im2col's output).
void col2im_add(const float* cols, const arith::Conv2dShape& s, int g, float* map_grad);

}  // namespace qathw::kernels
