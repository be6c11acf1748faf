// HLS C++ of the transformer's units (Vitis HLS conventions), one token (and, for attention, one
// head) per call: the embedding lookup and add, RMSNorm, the per-group dynamic quantizer, the
// static quantizer whose pair follows the token, the linear layer on the PE array (pe_tile),
// the squared ReLU, the residual add whose pair follows the token, and attention's three units
// on the target's vector unit (T::vector_unit()): the scores of one query against the cached keys, the
// causal softmax row, and the row's probabilities times the cached values. Synthesizable: static
// loop bounds, fixed-size arrays, no allocation, no recursion, no I/O; every element rule is a call
// into the arith core (docs/bundle.md, "Transformer ops", states the ops; docs/arith.md the rules).
//
// T is a target's constants struct (hls_target.h.in): besides kRows, kLanes, format() and
// vector_unit(), the transformer's static sizes kMaxContext (tokens of a sequence: the key and
// value caches' rows, an attention row), kMaxWidth (a token's features in the residual stream),
// kMaxFfn (a token's features anywhere: the FFN's hidden layer; a linear layer's inputs and
// outputs), kMaxHeads,
// kMaxFactors (the absmax values a pair follows) and kMaxTokenWeightBytes (a linear layer's
// packed weights). Tensors travel as the graph's integers (int32 ports): activation codes in
// act_bits, probabilities in prob_bits.
#pragma once

#include <cstdint>

#include "qathw/arith.h"
#include "qathw/hls/layer.h"

namespace qathw::hls {

// Byte tokens: the embedding's token table has a row per byte value.
inline constexpr int kVocabulary = 256;

// The embedding unit: the token's row of the token table plus the position's row of the position
// table, each aligned by its pair (arith::add_aligned), `width` features.
template <class T>
void embed_top(int token, int position, int width, const std::int32_t tokens[kVocabulary * T::kMaxWidth],
               const std::int32_t positions[T::kMaxContext * T::kMaxWidth], arith::FixedPoint pair_token,
               arith::FixedPoint pair_position, std::int32_t out[T::kMaxWidth]) {
#pragma HLS INTERFACE m_axi port = tokens offset = slave bundle = gmem
#pragma HLS INTERFACE m_axi port = positions offset = slave bundle = gmem
#pragma HLS INTERFACE s_axilite port = token
#pragma HLS INTERFACE s_axilite port = position
#pragma HLS INTERFACE s_axilite port = width
#pragma HLS INTERFACE s_axilite port = return
  constexpr arith::Format f = T::format();
  const int row = (token & (kVocabulary - 1)) * width, at = position * width;
features:
  for (int k = 0; k < T::kMaxWidth; ++k) {
#pragma HLS PIPELINE II = 1
    if (k < width)
      out[k] = static_cast<std::int32_t>(arith::add_aligned(tokens[row + k], pair_token, positions[at + k], pair_position, f));
  }
}

// The norm unit: RMSNorm of one token of n values (arith::rmsnorm_token: sum of squares of the
// inputs saturated to min(acc_bits, rmsnorm_max_input_bits(n)), the bit-serial square root, the
// reciprocal, each feature times 1/rms and its gain pair, saturated to acc_bits).
template <class T>
void rmsnorm_top(const std::int32_t values[T::kMaxWidth], int n, std::uint64_t eps,
                 const arith::FixedPoint gains[T::kMaxWidth], std::int32_t out[T::kMaxWidth]) {
#pragma HLS INTERFACE s_axilite port = n
#pragma HLS INTERFACE s_axilite port = eps
#pragma HLS INTERFACE s_axilite port = return
  constexpr arith::Format f = T::format();
  const int max_bits = arith::rmsnorm_max_input_bits(n);
  const int in_bits = f.acc_bits < max_bits ? f.acc_bits : max_bits;
  arith::rmsnorm_token(values, n, in_bits, eps, gains, f.acc_bits, out, f);
}

// The dynamic quantizer of one token: `groups` groups of n / groups features, each its own absmax
// (arith::quantize_token), the absmax of each group kept for the pairs that follow the token.
template <class T>
void group_quantizer_top(const std::int32_t values[T::kMaxFfn], int n, int groups, std::int32_t codes[T::kMaxFfn],
                         std::int64_t amax[T::kMaxHeads]) {
#pragma HLS INTERFACE s_axilite port = n
#pragma HLS INTERFACE s_axilite port = groups
#pragma HLS INTERFACE s_axilite port = return
  constexpr arith::Format f = T::format();
  const int width = n / groups;
group:
  for (int g = 0; g < T::kMaxHeads; ++g) {
    if (g < groups) amax[g] = arith::quantize_token(values + g * width, width, codes + g * width, f).amax;
  }
}

// The static quantizer of one token: the calibrated pair times the absmax of its factors'
// quantizers at this token (arith::token_pair; none: the pair itself), then each code
// (arith::quantize_act).
template <class T>
void static_quantizer_top(const std::int32_t values[T::kMaxFfn], int n, arith::FixedPoint pair,
                          const std::int64_t factors[T::kMaxFactors], int factor_count,
                          std::int32_t codes[T::kMaxFfn]) {
#pragma HLS INTERFACE s_axilite port = n
#pragma HLS INTERFACE s_axilite port = factor_count
#pragma HLS INTERFACE s_axilite port = return
  constexpr arith::Format f = T::format();
  const arith::FixedPoint p = arith::token_pair(pair, factors, factor_count, f).value;
codes:
  for (int k = 0; k < T::kMaxFfn; ++k) {
#pragma HLS PIPELINE II = 1
    if (k < n) codes[k] = static_cast<std::int32_t>(arith::quantize_act(values[k], p, f.act_bits, f.rounding));
  }
}

// The linear layer on one token's codes: the PE array tile by tile (pe_tile, kRows outputs of
// kLanes products per cycle, the accumulator's width and overflow rule), then kRows
// requantization units (arith::epilogue, no activation: the squared ReLU is a unit of its own).
template <class T>
void token_linear_top(const std::int32_t codes_in[T::kMaxFfn], int in_n, int out_n,
                      const std::uint8_t weights[T::kMaxTokenWeightBytes], const std::int32_t rq_mantissa[T::kMaxFfn],
                      const std::int32_t rq_shift[T::kMaxFfn], std::int32_t out[T::kMaxFfn]) {
#pragma HLS INTERFACE m_axi port = weights offset = slave bundle = gmem
#pragma HLS INTERFACE s_axilite port = in_n
#pragma HLS INTERFACE s_axilite port = out_n
#pragma HLS INTERFACE s_axilite port = return
  constexpr arith::Format f = T::format();
  std::int16_t codes[T::kMaxFfn];
#pragma HLS ARRAY_PARTITION variable = codes cyclic factor = T::kLanes
  std::int64_t acc[T::kRows];
#pragma HLS ARRAY_PARTITION variable = acc complete
load:
  for (int k = 0; k < T::kMaxFfn; ++k) {
#pragma HLS PIPELINE II = 1
    if (k < in_n) codes[k] = static_cast<std::int16_t>(codes_in[k]);
  }
tiles:
  for (int n0 = 0; n0 < T::kMaxFfn; n0 += T::kRows) {
    if (n0 < out_n) {
      pe_tile<T, T::kMaxFfn, T::kMaxTokenWeightBytes>(codes, weights, in_n, out_n, n0, acc);
    requant:
      for (int r = 0; r < T::kRows; ++r) {
#pragma HLS UNROLL
        const int n = n0 + r;
        if (n < out_n)
          out[n] = static_cast<std::int32_t>(arith::epilogue(acc[r], arith::FixedPoint{rq_mantissa[n], rq_shift[n]}, false, f));
      }
    }
  }
}

// The FFN's activation on n values: max(v, 0)^2 shifted right by `shift` (arith::squared_relu).
template <class T>
void squared_relu_top(const std::int32_t values[T::kMaxFfn], int n, int shift, std::int32_t out[T::kMaxFfn]) {
#pragma HLS INTERFACE s_axilite port = n
#pragma HLS INTERFACE s_axilite port = shift
#pragma HLS INTERFACE s_axilite port = return
  constexpr arith::Format f = T::format();
elements:
  for (int k = 0; k < T::kMaxFfn; ++k) {
#pragma HLS PIPELINE II = 1
    if (k < n) out[k] = static_cast<std::int32_t>(arith::squared_relu(values[k], shift, f.acc_bits, f.rounding));
  }
}

// The residual adder of one token: a in pair_a, b in the pair that follows the token
// (arith::token_pair of pair_b and the factors' absmax), aligned and added (arith::add_aligned).
template <class T>
void token_add_top(const std::int32_t a[T::kMaxWidth], arith::FixedPoint pair_a, const std::int32_t b[T::kMaxWidth],
                   arith::FixedPoint pair_b, const std::int64_t factors[T::kMaxFactors], int factor_count, int n,
                   std::int32_t out[T::kMaxWidth]) {
#pragma HLS INTERFACE s_axilite port = n
#pragma HLS INTERFACE s_axilite port = factor_count
#pragma HLS INTERFACE s_axilite port = return
  constexpr arith::Format f = T::format();
  const arith::FixedPoint pb = arith::token_pair(pair_b, factors, factor_count, f).value;
elements:
  for (int k = 0; k < T::kMaxWidth; ++k) {
#pragma HLS PIPELINE II = 1
    if (k < n) out[k] = static_cast<std::int32_t>(arith::add_aligned(a[k], pair_a, b[k], pb, f));
  }
}

// The scores of query position `position` and head `head` (features [head dh, (head + 1) dh) of
// `width`, dh = width / heads): its codes against each visible key of the key cache (a row of
// `width` codes per position) on the vector unit (arith::vector_dot, T::vector_unit()), each
// requantized to 32 bits by the pair that follows the token and head (arith::token_pair); the
// row's `context` entries past causal_count(position) are 0.
template <class T>
void scores_top(const std::int32_t query[T::kMaxWidth], const std::int32_t keys[T::kMaxContext * T::kMaxWidth],
                int width, int heads, int head, int position, int context, arith::FixedPoint pair,
                const std::int64_t factors[T::kMaxFactors], int factor_count, std::int32_t row[T::kMaxContext]) {
#pragma HLS INTERFACE m_axi port = keys offset = slave bundle = kv
#pragma HLS INTERFACE s_axilite port = width
#pragma HLS INTERFACE s_axilite port = heads
#pragma HLS INTERFACE s_axilite port = head
#pragma HLS INTERFACE s_axilite port = position
#pragma HLS INTERFACE s_axilite port = context
#pragma HLS INTERFACE s_axilite port = return
  constexpr arith::Format f = T::format();
  constexpr arith::VectorUnit vu = T::vector_unit();
  const int dh = width / heads, count = arith::causal_count(position);
  const arith::FixedPoint p = arith::token_pair(pair, factors, factor_count, f).value;
keys_loop:
  for (int j = 0; j < T::kMaxContext; ++j) {
    if (j < count)
      row[j] = static_cast<std::int32_t>(arith::requantize(
          arith::vector_dot(query + head * dh, keys + j * width + head * dh, dh, vu), p, f.rounding, 32));
    else if (j < context)
      row[j] = 0;
  }
}

// The softmax unit on one row of `context` scores, the first causal_count(position) taking part
// (arith::softmax_row with the exp2 table ROM, arith::exp2_table of the op's sizes); the masked
// entries get code 0.
template <class T>
void softmax_top(const std::int32_t scores[T::kMaxContext], int position, int context, const arith::Exp2Table& table,
                 int prob_bits, std::int32_t probs[T::kMaxContext]) {
#pragma HLS INTERFACE s_axilite port = position
#pragma HLS INTERFACE s_axilite port = context
#pragma HLS INTERFACE s_axilite port = prob_bits
#pragma HLS INTERFACE s_axilite port = return
  constexpr arith::Format f = T::format();
  arith::softmax_row(scores, context, arith::causal_count(position), table, prob_bits, f, probs);
}

// P V of query position `position` and head `head`: the row's probabilities times each of the
// head's dh value columns of the value cache (stride `width`) on the vector unit
// (arith::vector_dot, T::vector_unit()), written to the head's features of `out`.
template <class T>
void attend_top(const std::int32_t probs[T::kMaxContext], const std::int32_t values[T::kMaxContext * T::kMaxWidth],
                int width, int heads, int head, int position, std::int32_t out[T::kMaxWidth]) {
#pragma HLS INTERFACE m_axi port = values offset = slave bundle = kv
#pragma HLS INTERFACE s_axilite port = width
#pragma HLS INTERFACE s_axilite port = heads
#pragma HLS INTERFACE s_axilite port = head
#pragma HLS INTERFACE s_axilite port = position
#pragma HLS INTERFACE s_axilite port = return
  constexpr arith::VectorUnit vu = T::vector_unit();
  const int dh = width / heads, count = arith::causal_count(position);
columns:
  for (int e = 0; e < T::kMaxWidth; ++e) {
    if (e < dh)
      out[head * dh + e] = static_cast<std::int32_t>(arith::vector_dot(probs, values + head * dh + e, count, vu, width));
  }
}

}  // namespace qathw::hls
