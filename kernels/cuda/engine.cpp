#include "qathw/kernels/cuda_engine.h"

#include <algorithm>
#include <stdexcept>

#include "qathw/kernels/device.h"

#if QATHW_HAVE_CUDA
#include "qathw/kernels/cuda.h"
#endif

namespace qathw::kernels {

#if QATHW_HAVE_CUDA

namespace cuda = kernels::cuda;

namespace {

constexpr std::size_t kChunk = 8192;  // samples per pass through the layers

struct EngineLayer {
  int in = 0, out = 0;
  bool relu = false;
  cuda::DeviceArray<std::uint8_t> packed;
  cuda::DeviceArray<arith::FixedPoint> requant;
};

}  // namespace

struct CudaEngine::State {
  arith::Format f;
  int lanes = 1, features = 0, classes = 0;
  std::vector<EngineLayer> layers;

  // Runs samples [0, count) of `pixels`; calls keep(layer, outputs) for each layer whose outputs
  // are wanted (all, or the last only).
  template <typename Code, typename Keep>
  void run(const std::uint8_t* pixels, std::size_t count, bool all_layers, Keep keep) const {
    cuda::DeviceArray<std::uint8_t> input;
    cuda::DeviceArray<Code> codes;
    cuda::DeviceArray<std::int32_t> z[2];
    for (std::size_t start = 0; start < count; start += kChunk) {
      const int samples = static_cast<int>(std::min(kChunk, count - start));
      input.assign(pixels + start * features, static_cast<std::size_t>(samples) * features);
      codes.resize(static_cast<std::size_t>(samples) * features);
      cuda::quantize_tokens(input.data(), samples, features, f, codes.data());
      for (std::size_t l = 0; l < layers.size(); ++l) {
        const EngineLayer& layer = layers[l];
        cuda::DeviceArray<std::int32_t>& out = z[l % 2];
        out.resize(static_cast<std::size_t>(samples) * layer.out);
        cuda::packed_layer(layer.packed.data(), codes.data(), samples, layer.in, layer.out, lanes, f,
                           layer.requant.data(), layer.relu, out.data());
        if (l + 1 < layers.size()) {
          codes.resize(static_cast<std::size_t>(samples) * layer.out);
          cuda::quantize_tokens(out.data(), samples, layer.out, f, codes.data());
        }
        if (all_layers || l + 1 == layers.size()) keep(l, start, samples, out.to_host());
      }
    }
  }
};

CudaEngine::CudaEngine(const model::Bundle& bundle) : s_(std::make_unique<State>()) {
  const kernels::CudaProbe probe = kernels::probe_cuda();
  if (!probe.available) throw std::runtime_error("CUDA engine: no CUDA device: " + probe.reason);
  State& s = *s_;
  s.f = bundle.target.format;
  s.lanes = bundle.target.array.lanes;
  s.features = static_cast<int>(bundle.features());
  s.classes = bundle.classes;
  const model::AcceleratorLowering lowering = model::linear_chain(bundle.graph);
  if (lowering.unsupported) throw std::runtime_error("CUDA engine: " + *lowering.unsupported);
  for (const model::AcceleratorLayer& l : lowering.layers) {
    EngineLayer e;
    e.in = l.in;
    e.out = l.out;
    e.relu = l.relu;
    const std::size_t count = static_cast<std::size_t>(l.in) * l.out;
    std::vector<std::uint8_t> padded(cuda::device_packed_bytes(count, l.params->format), 0);
    std::copy(l.params->packed.begin(), l.params->packed.end(), padded.begin());
    e.packed.assign(padded);
    e.requant.assign(l.params->requant);
    s.layers.push_back(std::move(e));
  }
}

CudaEngine::~CudaEngine() = default;

std::vector<model::LayerOutputs> CudaEngine::run_all(const std::uint8_t* pixels, std::size_t count) const {
  std::vector<model::LayerOutputs> out(count, model::LayerOutputs(s_->layers.size()));
  auto keep = [&](std::size_t l, std::size_t start, int samples, const std::vector<std::int32_t>& z) {
    const std::size_t width = z.size() / static_cast<std::size_t>(samples);
    for (int i = 0; i < samples; ++i)
      out[start + i][l].assign(z.begin() + static_cast<std::ptrdiff_t>(i * width),
                               z.begin() + static_cast<std::ptrdiff_t>((i + 1) * width));
  };
  if (s_->f.act_bits <= 8)
    s_->run<std::int8_t>(pixels, count, true, keep);
  else
    s_->run<std::int16_t>(pixels, count, true, keep);
  return out;
}

std::vector<std::int32_t> CudaEngine::run_batch(const std::uint8_t* pixels, std::size_t count) const {
  std::vector<std::int32_t> out(count * static_cast<std::size_t>(s_->classes));
  auto keep = [&](std::size_t, std::size_t start, int, const std::vector<std::int32_t>& z) {
    std::copy(z.begin(), z.end(), out.begin() + static_cast<std::ptrdiff_t>(start * s_->classes));
  };
  if (s_->f.act_bits <= 8)
    s_->run<std::int8_t>(pixels, count, false, keep);
  else
    s_->run<std::int16_t>(pixels, count, false, keep);
  return out;
}

#else  // no CUDA support in this build

struct CudaEngine::State {};

CudaEngine::CudaEngine(const model::Bundle&) {
  throw std::runtime_error("CUDA engine: " + kernels::probe_cuda().reason);
}
CudaEngine::~CudaEngine() = default;
std::vector<model::LayerOutputs> CudaEngine::run_all(const std::uint8_t*, std::size_t) const { return {}; }
std::vector<std::int32_t> CudaEngine::run_batch(const std::uint8_t*, std::size_t) const { return {}; }

#endif

}  // namespace qathw::kernels
