// Host-side layout rules of the CUDA packed-weight layer; built with or without CUDA.
#include "qathw/kernels/cuda.h"

namespace qathw::kernels::cuda {

std::size_t device_packed_bytes(std::size_t count, arith::WeightFormat w) {
  const std::size_t word = static_cast<std::size_t>(kPackedWordBytes);
  return (arith::packed_bytes(count, w) + word - 1) / word * word;
}

}  // namespace qathw::kernels::cuda
