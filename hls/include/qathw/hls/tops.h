// The HLS tops of one target as the engine calls them: a plain function type per top and the
// table of one target's tops. The types only need the arith core, so the shared object of a
// target built at run time (hls/src/hls_build.cpp) fills the same table as the compiled-in tops.
// Arrays are passed as pointers; their sizes are the target's static bounds (hls_target.h.in):
// kMaxWidth for vectors and per-channel pairs, kMaxMap for feature maps, kMaxWeightBytes for
// packed weights.
#pragma once

#include <cstdint>

#include "qathw/arith/feature_map.h"
#include "qathw/arith/fixed_point.h"

namespace qathw::hls {

// layer_top<T>: a linear layer; dynamic per-token quantizer over in_n values.
using LayerTop = void(const std::int32_t* values, int in_n, int out_n, bool relu, const std::uint8_t* weights,
                      const std::int32_t* rq_mantissa, const std::int32_t* rq_shift, std::int32_t* out);

// conv_top<T>: a conv2d layer over map.in_h x in_w x in_c values, its quantizer static (the
// pair `quantizer`) or dynamic (one token over the whole map).
using ConvTop = void(const std::int32_t* values, arith::Conv2dShape map, bool static_quantizer,
                     arith::FixedPoint quantizer, bool relu, const std::uint8_t* weights,
                     const std::int32_t* rq_mantissa, const std::int32_t* rq_shift, std::int32_t* out);

// pool_top<T>: max pool, or average pool with the pair of 1 / window area, of map.in_h x in_w x
// in_c values (map.window the pooling window).
using PoolTop = void(const std::int32_t* values, arith::Conv2dShape map, bool average, arith::FixedPoint pair,
                     bool relu, std::int32_t* out);

// add_top<T>: residual add of n values each, a in the scale pair_a and b in pair_b.
using AddTop = void(const std::int32_t* a, arith::FixedPoint pair_a, const std::int32_t* b, arith::FixedPoint pair_b,
                    int n, bool relu, std::int32_t* out);

// One target's tops. A table may leave a top out (nullptr): the engine then refuses layers of
// that kind.
struct Tops {
  LayerTop* layer = nullptr;
  ConvTop* conv = nullptr;
  PoolTop* pool = nullptr;
  AddTop* add = nullptr;
};

}  // namespace qathw::hls
