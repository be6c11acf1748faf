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
#include "qathw/arith/transformer.h"

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

// The transformer's tops (transformer.h), one token (and head) per call. Sizes: kMaxWidth for a
// token of the residual stream, kMaxFfn for any token's features (quantizers, the linear layer,
// the squared ReLU), kMaxContext for an attention row, kMaxContext x kMaxWidth for the key and
// value caches, kMaxHeads for a token's group absmax, kMaxFactors for the absmax a pair follows.
using EmbedTop = void(int token, int position, int width, const std::int32_t* tokens, const std::int32_t* positions,
                      arith::FixedPoint pair_token, arith::FixedPoint pair_position, std::int32_t* out);
using RmsNormTop = void(const std::int32_t* values, int n, std::uint64_t eps, const arith::FixedPoint* gains,
                        std::int32_t* out);
using GroupQuantizerTop = void(const std::int32_t* values, int n, int groups, std::int32_t* codes, std::int64_t* amax);
using StaticQuantizerTop = void(const std::int32_t* values, int n, arith::FixedPoint pair, const std::int64_t* factors,
                                int factor_count, std::int32_t* codes);
using TokenLinearTop = void(const std::int32_t* codes, int in_n, int out_n, const std::uint8_t* weights,
                            const std::int32_t* rq_mantissa, const std::int32_t* rq_shift, std::int32_t* out);
using SquaredReluTop = void(const std::int32_t* values, int n, int shift, std::int32_t* out);
using TokenAddTop = void(const std::int32_t* a, arith::FixedPoint pair_a, const std::int32_t* b, arith::FixedPoint pair_b,
                         const std::int64_t* factors, int factor_count, int n, std::int32_t* out);
using ScoresTop = void(const std::int32_t* query, const std::int32_t* keys, int width, int heads, int head, int position,
                       int context, arith::FixedPoint pair, const std::int64_t* factors, int factor_count,
                       std::int32_t* row);
using SoftmaxTop = void(const std::int32_t* scores, int position, int context, const arith::Exp2Table& table,
                        int prob_bits, std::int32_t* probs);
using AttendTop = void(const std::int32_t* probs, const std::int32_t* values, int width, int heads, int head,
                       int position, std::int32_t* out);

// One target's tops. A table may leave a top out (nullptr): the engine then refuses layers of
// that kind.
struct Tops {
  LayerTop* layer = nullptr;
  ConvTop* conv = nullptr;
  PoolTop* pool = nullptr;
  AddTop* add = nullptr;
  // The transformer's units.
  EmbedTop* embed = nullptr;
  RmsNormTop* rmsnorm = nullptr;
  GroupQuantizerTop* group_quantizer = nullptr;
  StaticQuantizerTop* static_quantizer = nullptr;
  TokenLinearTop* token_linear = nullptr;
  SquaredReluTop* squared_relu = nullptr;
  TokenAddTop* token_add = nullptr;
  ScoresTop* scores = nullptr;
  SoftmaxTop* softmax = nullptr;
  AttendTop* attend = nullptr;
};

}  // namespace qathw::hls
