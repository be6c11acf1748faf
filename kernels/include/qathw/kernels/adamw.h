// The AdamW update of one weight, shared by the CPU and CUDA optimizer steps (host and device).
#pragma once

#include <cmath>

#include "qathw/arith/core.h"  // QATHW_HD

namespace qathw::kernels {

// The step's constants, computed once on the host: bias corrections and the decay factor.
struct AdamWCoefficients {
  float lr, beta1, beta2, eps;
  float c1, c2;   // 1 / (1 - beta^step)
  float decay;    // 1 - lr * weight_decay
};

// Decoupled weight decay, then the Adam update with bias correction.
QATHW_HD inline void adamw_update(float& w, float g, float& m, float& v, const AdamWCoefficients& k) {
  m = k.beta1 * m + (1.0f - k.beta1) * g;
  v = k.beta2 * v + (1.0f - k.beta2) * g * g;
  w = w * k.decay - k.lr * (m * k.c1) / (std::sqrt(v * k.c2) + k.eps);
}

}  // namespace qathw::kernels
