// Dense float kernels of training: GEMMs on row-major buffers and the optimizer step.
// With integer-valued codes as inputs the GEMMs are exact while every partial sum stays below
// 2^24; they never use reduced-precision (TF32/BF16) arithmetic.
#pragma once

#include <cmath>
#include <cstddef>

#include "qathw/kernels/adamw.h"

namespace qathw::kernels {

// Threads used by the host kernels (OpenMP); results do not depend on the count.
// Sets flush-to-zero and denormals-are-zero in the calling thread and in each of the pool's
// (denormal arithmetic is slow on x86; training needs no values that small). The first call
// also keeps large buffers on the heap (glibc), where the GEMMs' packing buffers are reused.
void set_threads(int threads);
int threads();

// c[m x n] = a[m x k] * b[n x k]^T
void gemm_abt(const float* a, const float* b, int m, int n, int k, float* c);
// c[n x k] = a[m x n]^T * b[m x k]
void gemm_atb(const float* a, const float* b, int m, int n, int k, float* c);
// c[m x k] = a[m x n] * b[n x k]
void gemm_ab(const float* a, const float* b, int m, int n, int k, float* c);

struct AdamWParams {
  float lr = 1e-3f;
  float beta1 = 0.9f;
  float beta2 = 0.999f;
  float eps = 1e-8f;
  float weight_decay = 0.0f;
  long step = 1;  // 1-based, for bias correction
};

inline AdamWCoefficients adamw_coefficients(const AdamWParams& p) {
  return {p.lr,
          p.beta1,
          p.beta2,
          p.eps,
          1.0f / (1.0f - std::pow(p.beta1, static_cast<float>(p.step))),
          1.0f / (1.0f - std::pow(p.beta2, static_cast<float>(p.step))),
          1.0f - p.lr * p.weight_decay};
}

// Decoupled weight decay (AdamW): w -= lr * wd * w, then the Adam update with bias correction
// (adamw_update of adamw.h for each weight).
void adamw_step(float* w, const float* grad, float* m, float* v, std::size_t n, const AdamWParams& p);

}  // namespace qathw::kernels
