// The trainer's quantization kernels: index and reduction structure here, every element rule a
// call into the arith core. Raw row-major buffers, so a device backend can mirror each
// signature on device pointers. Float buffers named `codes` hold integer values exactly.
#pragma once

#include <cstdint>

#include "qathw/arith.h"

namespace qathw::kernels {

// Fake-quantizes an out x in weight matrix: integer codes, per-output-channel real scales
// (ternary: one absmean gamma repeated; INT4: absmax / 7 per row), dequantized weights
// (codes * scale, for the backward pass), the straight-through mask (1 where the quantizer does
// not clip), and per-channel requantization pairs scale[n] / reference as the hardware applies
// them to accumulators. Returns the reference scale. Throws std::runtime_error when a ratio
// cannot be represented in the target's fixed-point format.
float quantize_weights(const float* w, int out, int in, const arith::Format& f, float* codes, float* scales,
                       float* dequantized, float* ste_mask, arith::FixedPoint* requant);

// Per-token activation quantizer on integers: for each of `rows` tokens of `cols` values, the
// absmax, the hardware reciprocal and the codes. Writes codes (as floats), each token's absmax
// and, when `offset_codes` is not null, the codes + 128 as bytes in rows of `ld` bytes (the
// int8 GEMM's operand; needs act_bits <= 8).
template <typename Int>
void quantize_tokens(const Int* values, int rows, int cols, const arith::Format& f, float* codes,
                     std::int64_t* amax, std::uint8_t* offset_codes = nullptr, int ld = 0);

// Accumulator epilogue of a layer: exact integer accumulators (held in floats) pass through the
// accumulator's overflow rule, the per-channel requantization and, for hidden layers, ReLU.
// Acc is float (exact integers from a float GEMM), std::int32_t (the int8 GEMM) or std::int64_t
// (accumulate_exact).
template <typename Acc>
void accumulator_epilogue(const Acc* acc, int rows, int cols, const arith::FixedPoint* requant, bool relu,
                          const arith::Format& f, std::int32_t* z);

// Whether a float GEMM of a layer's codes gives its accumulators exactly: every partial sum is
// an integer below 2^24 (so float arithmetic is exact), and either the accumulator wraps
// (modular, so order never matters) or no sum can reach the saturation limit.
bool float_accumulation_exact(int in, const arith::Format& f);

// The same for an int32 GEMM on int8 codes: codes fit bytes and no sum reaches 2^31.
bool int8_accumulation_exact(int in, const arith::Format& f);

// The accumulators of `rows` tokens as the array forms them (arith::dot: the adder tree's partial
// sum of each `lanes` products, accumulated under the overflow rule), for layers where
// float_accumulation_exact is false: a saturating accumulator that can saturate, or codes too
// wide for float or int8 GEMMs. With AVX-512 VNNI (codes up to 16 bits as one or two bytes, every
// accumulator plus a chunk's partial sum within int32): the int8 GEMM's chunked kernel, each
// chunk's exact sum saturated into the accumulator in registers. Otherwise vectorised over
// output channels: each partial sum formed in float in pieces whose sums of |products| stay
// below 2^24 (so exactly), then accumulated in int64 with arith::accumulate. Order-free formats
// take one chunk of the whole row.
void accumulate_exact(const float* codes, const float* weight_codes, int rows, int out, int in, int lanes,
                      const arith::Format& f, std::int64_t* acc);

}  // namespace qathw::kernels
