#include "qathw/kernels/conv.h"

#include <immintrin.h>

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

PatchRuns::PatchRuns(const arith::Conv2dShape& s, int g) : patch_(s.patch()) {
  for (int oy = 0; oy < s.out_h(); ++oy)
    for (int ox = 0; ox < s.out_w(); ++ox) {
      first_.push_back(static_cast<int>(runs_.size()));
      arith::for_each_patch_run(s, oy, ox, g, [&](int k, long at, int n) { runs_.push_back({k, n, at}); });
    }
  first_.push_back(static_cast<int>(runs_.size()));
}

namespace {

// Runs of a few bytes (a one-channel map's window rows) are most of the work: copied with one
// masked load and store of up to 64 bytes each.
__attribute__((target("avx512f,avx512bw"))) void copy_bytes_avx512(const std::uint8_t* from, int n, std::uint8_t* to) {
  for (; n >= 64; n -= 64, from += 64, to += 64) _mm512_storeu_si512(to, _mm512_loadu_si512(from));
  const __mmask64 mask = (std::uint64_t{1} << n) - 1;  // n < 64
  _mm512_mask_storeu_epi8(to, mask, _mm512_maskz_loadu_epi8(mask, from));
}

template <typename Copy>
void gather_runs(const std::vector<int>& first, const std::vector<PatchRuns::Run>& runs, const std::uint8_t* map,
                 std::uint8_t pad, std::uint8_t* cols, int ld, Copy copy) {
  for (std::size_t p = 0; p + 1 < first.size(); ++p) {
    std::uint8_t* row = cols + p * static_cast<std::size_t>(ld);
    for (int r = first[p]; r < first[p + 1]; ++r) {
      const PatchRuns::Run& run = runs[r];
      if (run.at < 0) std::fill_n(row + run.k, run.n, pad);
      else copy(map + run.at, run.n, row + run.k);
    }
  }
}

}  // namespace

namespace {

// 16 codes at a time, the row's tail under a mask: GCC leaves a row of 25 (a 5 x 5 patch) scalar.
__attribute__((target("avx512f,avx512bw,avx512vl"))) void codes_of_bytes_avx512(const std::uint8_t* bytes, int rows,
                                                                                int count, int ld, float* codes) {
  const __m512i offset = _mm512_set1_epi32(128);
  for (int r = 0; r < rows; ++r) {
    const std::uint8_t* from = bytes + static_cast<std::size_t>(r) * ld;
    float* to = codes + static_cast<std::size_t>(r) * count;
    for (int e = 0; e < count; e += 16) {
      const __mmask16 mask = count - e >= 16 ? 0xFFFF : static_cast<__mmask16>((1u << (count - e)) - 1);
      const __m512i v = _mm512_cvtepu8_epi32(_mm_maskz_loadu_epi8(mask, from + e));
      _mm512_mask_storeu_ps(to + e, mask, _mm512_cvtepi32_ps(_mm512_sub_epi32(v, offset)));
    }
  }
}

}  // namespace

void codes_of_bytes(const std::uint8_t* bytes, int rows, int count, int ld, float* codes) {
  static const bool avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                             __builtin_cpu_supports("avx512vl");
  if (avx512) return codes_of_bytes_avx512(bytes, rows, count, ld, codes);
  for (int r = 0; r < rows; ++r) {
    const std::uint8_t* from = bytes + static_cast<std::size_t>(r) * ld;
    for (int e = 0; e < count; ++e)
      codes[static_cast<std::size_t>(r) * count + e] = static_cast<float>(static_cast<int>(from[e]) - 128);
  }
}

void PatchRuns::gather(const std::uint8_t* map, std::uint8_t pad, std::uint8_t* cols, int ld) const {
  static const bool avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw");
  if (avx512) gather_runs(first_, runs_, map, pad, cols, ld, copy_bytes_avx512);
  else
    gather_runs(first_, runs_, map, pad, cols, ld,
                [](const std::uint8_t* from, int n, std::uint8_t* to) { std::copy_n(from, n, to); });
}

void PatchRuns::scatter_add(const float* cols, float* map_grad) const {
  for (std::size_t p = 0; p + 1 < first_.size(); ++p) {
    const float* row = cols + p * static_cast<std::size_t>(patch_);
    for (int r = first_[p]; r < first_[p + 1]; ++r) {
      const Run& run = runs_[r];
      if (run.at < 0) continue;
      float* __restrict to = map_grad + run.at;
      const float* __restrict from = row + run.k;
      for (int i = 0; i < run.n; ++i) to[i] += from[i];
    }
  }
}

}  // namespace qathw::kernels
