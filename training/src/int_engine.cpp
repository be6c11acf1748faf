#include "qathw/training/int_engine.h"

#include <algorithm>

namespace qathw::training {

IntEngine::IntEngine(const Bundle& bundle) : bundle_(bundle) {
  for (const BundleLayer& l : bundle.layers) codes_.push_back(l.codes());
}

LayerOutputs IntEngine::run(const std::uint8_t* pixels) const {
  const arith::Format& f = bundle_.target.format;
  const int lanes = bundle_.target.array.lanes;
  LayerOutputs outputs;
  std::vector<std::int64_t> values(pixels, pixels + static_cast<std::size_t>(bundle_.rows) * bundle_.cols);
  std::vector<std::int16_t> x;
  for (std::size_t l = 0; l < bundle_.layers.size(); ++l) {
    const BundleLayer& layer = bundle_.layers[l];
    // Activation quantizer: per-token absmax, hardware reciprocal, codes.
    std::int64_t amax = 0;
    for (std::int64_t v : values) amax = std::max(amax, arith::magnitude(v));
    const arith::FixedPoint inv = arith::token_inv_scale(amax, f);
    x.resize(values.size());
    for (std::size_t k = 0; k < values.size(); ++k)
      x[k] = static_cast<std::int16_t>(arith::quantize_act(values[k], inv, f.act_bits, f.rounding));
    // PE array: chunked dot products with the accumulator's overflow rule, then requantization.
    std::vector<std::int32_t> z(layer.out);
    const std::int8_t* w = codes_[l].data();
    for (int n = 0; n < layer.out; ++n) {
      const std::int64_t acc = arith::dot(x.data(), w + static_cast<std::size_t>(n) * layer.in, layer.in, lanes, f);
      const std::int64_t q = arith::requantize(acc, layer.requant[n], f.rounding, f.acc_bits);
      z[n] = static_cast<std::int32_t>(layer.relu ? arith::relu(q) : q);
    }
    values.assign(z.begin(), z.end());
    outputs.push_back(std::move(z));
  }
  return outputs;
}

std::vector<LayerOutputs> IntEngine::run_all(const std::uint8_t* pixels, std::size_t count) const {
  const std::size_t features = static_cast<std::size_t>(bundle_.rows) * bundle_.cols;
  std::vector<LayerOutputs> out(count);
#pragma omp parallel for schedule(dynamic, 16)
  for (long i = 0; i < static_cast<long>(count); ++i) out[i] = run(pixels + static_cast<std::size_t>(i) * features);
  return out;
}

std::vector<std::int32_t> IntEngine::run_batch(const std::uint8_t* pixels, std::size_t count) const {
  const std::size_t features = static_cast<std::size_t>(bundle_.rows) * bundle_.cols;
  const int classes = bundle_.classes;
  std::vector<std::int32_t> out(count * classes);
#pragma omp parallel for schedule(dynamic, 16)
  for (long i = 0; i < static_cast<long>(count); ++i) {
    const LayerOutputs o = run(pixels + static_cast<std::size_t>(i) * features);
    std::copy(o.back().begin(), o.back().end(), out.begin() + i * classes);
  }
  return out;
}

}  // namespace qathw::training
