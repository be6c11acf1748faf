// The trainer's convolution lowering: a feature map's patches as the rows of a matrix (im2col),
// so a convolution is a GEMM with the kernels, and the transpose that takes the rows' gradients
// back to the map (col2im). Both walk arith::for_each_patch_run, the patch order the
// hardware and the integer engine use.
#pragma once

#include <cstdint>
#include <vector>

#include "qathw/arith.h"

namespace qathw::kernels {

// cols (out_h * out_w rows of patch() values): the patches of group g of one map (in_h x in_w x
// in_c, channels last), padding 0.
void im2col(const float* map, const arith::Conv2dShape& s, int g, float* cols);

// map_grad += the transpose of im2col applied to cols (the same layout as im2col's output).
void col2im_add(const float* cols, const arith::Conv2dShape& s, int g, float* map_grad);

// The float codes of byte codes + 128: `rows` rows of `count` codes, `ld` bytes apart in `bytes`,
// written contiguously (count floats a row). The kernel gradient's operand from kept byte patches.
void codes_of_bytes(const std::uint8_t* bytes, int rows, int count, int ld, float* codes);

// The runs of every output pixel's patch of one group (arith::for_each_patch_run), listed once
// per layer: im2col of each sample then copies the runs without walking the windows again.
class PatchRuns {
 public:
  PatchRuns() = default;
  PatchRuns(const arith::Conv2dShape& s, int g);

  // im2col of byte codes: out_h * out_w rows, `ld` bytes apart, of the patches of group g of
  // `map` (in_h x in_w x in_c), `pad` where the window lies in the padding. Bytes past patch() in
  // a row are left as they are.
  void gather(const std::uint8_t* map, std::uint8_t pad, std::uint8_t* cols, int ld) const;

  // col2im_add of group g by the listed runs: the same additions in the same order.
  void scatter_add(const float* cols, float* map_grad) const;

  struct Run {
    int k, n;
    long at;  // -1: padding
  };

 private:
  int patch_ = 0;
  std::vector<Run> runs_;
  std::vector<int> first_;  // per output pixel: its first run, and the end of the last
  // The gather reads the map with its padding written around it (the halo map, halo_h x halo_w
  // x in_c): every patch is then the same segments (one per window row when the group holds
  // every channel, else one per window position), at the output pixel's origin in it.
  int in_h_ = 0, in_w_ = 0, in_c_ = 0, top_ = 0, left_ = 0, halo_h_ = 0, halo_w_ = 0, segment_ = 0;
  std::vector<long> origins_;  // per output pixel
  std::vector<int> segments_;  // per segment: its offset from the origin (its patch element: i * segment_)
};

}  // namespace qathw::kernels
