// Integer GEMM for the forward pass: activation codes times weight codes, exact in int32.
// Runs on AVX-512 VNNI when the processor has it (checked at run time); callers use the float
// GEMM otherwise. Activation rows are padded to kInt8RowAlign bytes (padded_row).
#pragma once

#include <cstdint>

namespace qathw::kernels {

inline constexpr int kInt8RowAlign = 64;

constexpr int padded_row(int k) { return (k + kInt8RowAlign - 1) / kInt8RowAlign * kInt8RowAlign; }

// Whether the int8 GEMMs can run on this processor.
bool int8_gemm_available();

// Whether callers should use it: available and not switched off (tests and benchmarks switch it
// off to exercise and time the float path).
bool int8_gemm_enabled();
void set_int8_gemm_enabled(bool enabled);

// ---- the product with b packed in column blocks ---------------------------------------------
// Each lane of a vector is one output column and VNNI sums 4 bytes of a row into it: no reduction
// across a vector (which costs as much as the products when a row is a few dozen bytes, a 5 x 5
// patch), and a's rows need only be padded to 4 bytes.

constexpr int padded_depth(int k) { return (k + 3) / 4 * 4; }

// Bytes of n rows of k weight codes packed by pack_int8_columns.
std::size_t packed_columns_bytes(int n, int k);

// Weight codes (floats holding integers, n x k row-major) packed for gemm_u8s8_packed: blocks of
// 16 columns, each padded_depth(k) / 4 groups of 4 codes per column, zero-padded; and the
// offsets 128 * sum_k b[j][k].
void pack_int8_columns(const float* codes, int n, int k, std::int8_t* packed, std::int32_t* offsets);

// Column j's codes, a row of padded_depth(k) int8 codes with zeros past k, into that layout (the
// one place it is written; pack_int8_columns calls it per column).
void pack_int8_column(const std::int8_t* row, int j, int k, std::int8_t* packed);

// c[m x n] (rows ldc apart) = (a - 128)[m x k] . b[n x k]^T, exact in int32, b packed by
// pack_int8_columns. Rows of a are `lda` >= padded_depth(k) bytes apart; bytes past k are read
// but multiply zero codes. With b_offset null, a's bytes are taken as they are (unsigned):
// c = a . b^T. Requires |result| < 2^31 and int8_gemm_available().
void gemm_u8s8_packed(const std::uint8_t* a, int lda, const std::int8_t* packed_b, const std::int32_t* b_offset, int m,
                      int n, int k, std::int32_t* c, int ldc);

// ---- the array's chunked, saturating accumulation -------------------------------------------
// arith::dot with a saturating accumulator: per chunk of the adder tree's `lanes` codes the exact
// partial sum, then acc = clamp(acc + partial, lo, hi). Each chunk is `chunk_groups` groups of 4
// codes of b packed by pack_int8_columns (a chunk shorter than that is padded with zero codes).
struct ChunkedOperands {
  const std::uint8_t* a_high;          // codes + 128, or with a_low: floor(code / 256) + 128
  const std::uint8_t* a_low;           // null, or code mod 256 (unsigned): code = 256 hi + lo
  int lda;                             // bytes between rows of a: chunks * chunk_groups * 4 at least
  const std::int8_t* packed_b;         // pack_int8_columns of n rows of chunks * chunk_groups * 4 codes
  const std::int32_t* chunk_offsets;   // [chunks][n]: 128 * each chunk's sum of each b row
  int chunks, chunk_groups;
  std::int32_t lo, hi;                 // the accumulator's range
};

// c[m x n] (rows ldc apart): the accumulators. Requires |acc| + |partial| < 2^31 for every chunk
// (the caller's bound) and int8_gemm_available().
void gemm_u8s8_chunked_saturate(const ChunkedOperands& x, int m, int n, std::int32_t* c, int ldc);

}  // namespace qathw::kernels
