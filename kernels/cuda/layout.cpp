// Host-side layout rules of the CUDA packed-weight layer; built with or without CUDA.
#include "qathw/kernels/cuda.h"

namespace qathw::kernels::cuda {

std::size_t device_packed_bytes(std::size_t count, arith::WeightFormat w) {
  const std::size_t word = static_cast<std::size_t>(kPackedWordBytes);
  return (arith::packed_bytes(count, w) + word - 1) / word * word;
}

bool packed_layer_order_free(int in, const arith::Format& f) {
  const std::int64_t bound = arith::act_qmax(f.act_bits) * arith::weight_qmax(f.weights) * static_cast<std::int64_t>(in);
  return f.overflow == arith::Overflow::Wrap || arith::saturation_impossible(bound, f);
}

}  // namespace qathw::kernels::cuda
