#include "qathw/kernels/dense.h"

#include <omp.h>
#if defined(__SSE__)
#include <xmmintrin.h>
#endif

#include <cmath>

#include <Eigen/Core>

namespace qathw::kernels {
namespace {

using RowMajor = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using ConstMap = Eigen::Map<const RowMajor>;
using Map = Eigen::Map<RowMajor>;

// Flush-to-zero and denormals-are-zero in the calling thread. Late in training, gradients and
// optimizer moments fall into the denormal range, where x86 arithmetic is many times slower:
// without this a run lost half its speed in its second half, at the same accuracy.
void flush_denormals() {
#if defined(__SSE__)
  _mm_setcsr(_mm_getcsr() | 0x8040);  // FTZ (bit 15) | DAZ (bit 6)
#endif
}

}  // namespace

void set_threads(int threads) {
  omp_set_num_threads(threads);
  Eigen::setNbThreads(threads);
  // Every thread of the pool the kernels run on; OpenMP keeps the pool's threads alive.
#pragma omp parallel num_threads(threads)
  flush_denormals();
}

int threads() { return Eigen::nbThreads(); }

void gemm_abt(const float* a, const float* b, int m, int n, int k, float* c) {
  Map(c, m, n).noalias() = ConstMap(a, m, k) * ConstMap(b, n, k).transpose();
}

void gemm_atb(const float* a, const float* b, int m, int n, int k, float* c) {
  Map(c, n, k).noalias() = ConstMap(a, m, n).transpose() * ConstMap(b, m, k);
}

void gemm_ab(const float* a, const float* b, int m, int n, int k, float* c) {
  Map(c, m, k).noalias() = ConstMap(a, m, n) * ConstMap(b, n, k);
}

void adamw_step(float* __restrict w, const float* __restrict grad, float* __restrict m, float* __restrict v,
                std::size_t n, const AdamWParams& p) {
  const AdamWCoefficients k = adamw_coefficients(p);
  const long count = static_cast<long>(n);
#pragma omp parallel for simd schedule(static)
  for (long i = 0; i < count; ++i) adamw_update(w[i], grad[i], m[i], v[i], k);
}

}  // namespace qathw::kernels
