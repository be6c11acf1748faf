// Host-side layout rules of the CUDA packed-weight layer; built with or without CUDA.
#include "qathw/kernels/cuda.h"

namespace qathw::kernels::cuda {

std::size_t device_packed_bytes(std::size_t count, arith::WeightFormat w) {
  const std::size_t word = static_cast<std::size_t>(kPackedWordBytes);
  return (arith::packed_bytes(count, w) + word - 1) / word * word;
}

std::vector<std::uint8_t> group_packed_codes(const std::vector<std::uint8_t>& packed, arith::WeightFormat w, int patch,
                                             int group_out, int g) {
  const std::size_t count = static_cast<std::size_t>(patch) * group_out;
  const std::size_t first = static_cast<std::size_t>(g) * count;
  std::vector<std::uint8_t> out(device_packed_bytes(count, w), 0);
  for (std::size_t i = 0; i < count; ++i) arith::store_code(out.data(), i, arith::load_code(packed.data(), first + i, w), w);
  return out;
}

}  // namespace qathw::kernels::cuda
