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
  // The halo: as much padding as the windows reach on each side.
  const arith::Window& w = s.window;
  in_h_ = s.in_h, in_w_ = s.in_w, in_c_ = s.in_c;
  top_ = w.pad_h, left_ = w.pad_w;
  halo_h_ = std::max(s.in_h + top_, (s.out_h() - 1) * w.stride_h + w.kernel_h);
  halo_w_ = std::max(s.in_w + left_, (s.out_w() - 1) * w.stride_w + w.kernel_w);
  for (int oy = 0; oy < s.out_h(); ++oy)
    for (int ox = 0; ox < s.out_w(); ++ox)
      origins_.push_back((static_cast<long>(oy) * w.stride_h * halo_w_ + static_cast<long>(ox) * w.stride_w) * s.in_c +
                         static_cast<long>(g) * s.group_in());
  const bool whole_rows = s.group_in() == s.in_c;  // a window row is one segment
  segment_ = whole_rows ? w.kernel_w * s.in_c : s.group_in();
  for (int ky = 0; ky < w.kernel_h; ++ky)
    for (int kx = 0; kx < (whole_rows ? 1 : w.kernel_w); ++kx)
      segments_.push_back((ky * halo_w_ + kx) * s.in_c);
}

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

namespace {

// One vector of bytes (a function, not a lambda: a lambda does not take its caller's target).
template <typename V>
__attribute__((target("avx512f,avx512bw,avx512vl"))) inline void copy_vector(const std::uint8_t* from,
                                                                              std::uint8_t* to) {
  if constexpr (sizeof(V) == 16)
    _mm_storeu_si128(reinterpret_cast<__m128i*>(to), _mm_loadu_si128(reinterpret_cast<const __m128i*>(from)));
  else
    _mm512_storeu_si512(to, _mm512_loadu_si512(from));
}

// Every segment of every patch is `n` bytes, copied a vector at a time from the halo (which has
// room past its end) with unmasked stores reaching past the segment, into the next ones, which
// write over them; the last segments of a row, whose vector would reach past the patch, store
// under a mask, the row's bytes past its patch untouched. Vectors as narrow as the segments
// allow: a one-channel map's 5-byte window rows are most of the work.
template <typename V>
__attribute__((target("avx512f,avx512bw,avx512vl"))) void gather_segments(const std::uint8_t* halo,
                                                                           const std::vector<long>& origins,
                                                                           const std::vector<int>& segments, int n,
                                                                           std::uint8_t* cols, int ld) {
  constexpr int width = sizeof(V);
  const int last = (n - 1) / width * width;  // the last vector's first byte
  const std::uint64_t mask = ~std::uint64_t{0} >> (64 - (n - last));
  const int count = static_cast<int>(segments.size());
  // The first segment whose whole last vector would reach past the patch: it and the ones after
  // store under the mask.
  int whole = 0;
  while (whole < count && whole * n + last + width <= count * n) ++whole;
  for (std::size_t p = 0; p < origins.size(); ++p) {
    const std::uint8_t* origin = halo + origins[p];
    std::uint8_t* row = cols + p * static_cast<std::size_t>(ld);
    for (int i = 0; i < count; ++i, row += n) {
      const std::uint8_t* from = origin + segments[i];
      for (int e = 0; e < last; e += width) copy_vector<V>(from + e, row + e);
      if (i < whole) copy_vector<V>(from + last, row + last);
      else if constexpr (width == 16)
        _mm_mask_storeu_epi8(row + last, static_cast<__mmask16>(mask), _mm_loadu_si128(reinterpret_cast<const __m128i*>(from + last)));
      else _mm512_mask_storeu_epi8(row + last, mask, _mm512_loadu_si512(from + last));
    }
  }
}

}  // namespace

void PatchRuns::gather(const std::uint8_t* map, std::uint8_t pad, std::uint8_t* cols, int ld) const {
  // The map in its halo, with 64 bytes to spare for the copies' whole vectors.
  thread_local std::vector<std::uint8_t> padded;
  padded.assign(static_cast<std::size_t>(halo_h_) * halo_w_ * in_c_ + 64, pad);
  const std::size_t line = static_cast<std::size_t>(in_w_) * in_c_;
  for (int y = 0; y < in_h_; ++y)
    std::copy_n(map + y * line, line, padded.data() + ((static_cast<std::size_t>(y) + top_) * halo_w_ + left_) * in_c_);
  const std::uint8_t* halo = padded.data();
  static const bool avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                             __builtin_cpu_supports("avx512vl");
  if (avx512 && segment_ <= 16) return gather_segments<__m128i>(halo, origins_, segments_, segment_, cols, ld);
  if (avx512) return gather_segments<__m512i>(halo, origins_, segments_, segment_, cols, ld);
  for (std::size_t p = 0; p < origins_.size(); ++p)
    for (std::size_t i = 0; i < segments_.size(); ++i)
      std::copy_n(halo + origins_[p] + segments_[i], segment_, cols + p * static_cast<std::size_t>(ld) + i * segment_);
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
