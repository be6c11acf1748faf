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

// Samples per pass through the layers: at most 8192, and fewer where a sample's maps and
// patches are large (every layer's outputs stay on the device, for residual adds).
std::size_t chunk_samples(std::size_t bytes_per_sample) {
  constexpr std::size_t kMaxSamples = 8192, kBudget = std::size_t{1} << 30;
  return std::max<std::size_t>(1, std::min(kMaxSamples, kBudget / std::max<std::size_t>(1, bytes_per_sample)));
}

struct EngineLayer {
  model::AcceleratorLayer op;  // its params pointer is not kept: the weights are below
  std::vector<cuda::DeviceArray<std::uint8_t>> packed;  // per group (one for a linear layer)
  cuda::DeviceArray<arith::FixedPoint> requant;         // per output channel
};

// The packed-weight layer over any number of rows (the kernel's grid takes up to 65535 at once).
template <typename Code>
void packed_rows(const std::uint8_t* packed, const Code* x, std::size_t rows, int in, int out, int lanes,
                 const arith::Format& f, const arith::FixedPoint* requant, bool relu, std::int32_t* z) {
  constexpr std::size_t kRows = 65535;
  for (std::size_t r = 0; r < rows; r += kRows)
    cuda::packed_layer(packed, x + r * in, static_cast<int>(std::min(kRows, rows - r)), in, out, lanes, f, requant,
                       relu, z + r * out);
}

}  // namespace

struct CudaEngine::State {
  arith::Format f;
  int lanes = 1, features = 0, classes = 0;
  std::size_t samples_per_chunk = 1;
  std::vector<EngineLayer> layers;

  // A kernel layer's input codes: by its static pair, or per sample (one token per map).
  template <typename In, typename Code>
  void quantize(const EngineLayer& l, const In* values, int samples, Code* codes) const {
    if (!l.op.quantizer.empty())
      cuda::quantize_static(values, static_cast<std::size_t>(samples) * l.op.in, l.op.quantizer.front(), f, codes);
    else
      cuda::quantize_tokens(values, samples, l.op.in, f, codes);
  }

  // Runs samples [0, count) of `pixels`; calls keep(layer, outputs) for each layer whose outputs
  // are wanted (all, or the last only).
  template <typename Code, typename Keep>
  void run(const std::uint8_t* pixels, std::size_t count, bool all_layers, Keep keep) const {
    cuda::DeviceArray<std::uint8_t> input;
    cuda::DeviceArray<Code> codes, patches;
    cuda::DeviceArray<std::int32_t> group_out;
    std::vector<cuda::DeviceArray<std::int32_t>> z(layers.size());
    for (std::size_t start = 0; start < count; start += samples_per_chunk) {
      const int samples = static_cast<int>(std::min(samples_per_chunk, count - start));
      input.assign(pixels + start * features, static_cast<std::size_t>(samples) * features);
      for (std::size_t l = 0; l < layers.size(); ++l) {
        const EngineLayer& layer = layers[l];
        const model::AcceleratorLayer& op = layer.op;
        cuda::DeviceArray<std::int32_t>& out = z[l];
        out.resize(static_cast<std::size_t>(samples) * op.out);
        const bool from_pixels = op.input == model::AcceleratorLayer::kPixels;
        switch (op.kind) {
          case model::AcceleratorOp::Linear:
          case model::AcceleratorOp::Conv2d: {
            codes.resize(static_cast<std::size_t>(samples) * op.in);
            if (from_pixels)
              quantize(layer, input.data(), samples, codes.data());
            else
              quantize(layer, z[op.input].data(), samples, codes.data());
            if (op.kind == model::AcceleratorOp::Linear) {
              packed_rows(layer.packed[0].data(), codes.data(), static_cast<std::size_t>(samples), op.in, op.out, lanes,
                          f, layer.requant.data(), op.relu, out.data());
              break;
            }
            const arith::Conv2dShape& s = op.map;
            const std::size_t rows = static_cast<std::size_t>(samples) * s.out_h() * s.out_w();
            patches.resize(rows * s.patch());
            for (int g = 0; g < s.groups; ++g) {
              cuda::conv_patches(codes.data(), samples, s, g, patches.data());
              const arith::FixedPoint* pairs = layer.requant.data() + static_cast<std::size_t>(g) * s.group_out();
              if (s.groups == 1) {
                packed_rows(layer.packed[0].data(), patches.data(), rows, s.patch(), s.out_c, lanes, f, pairs, op.relu,
                            out.data());
              } else {
                group_out.resize(rows * s.group_out());
                packed_rows(layer.packed[g].data(), patches.data(), rows, s.patch(), s.group_out(), lanes, f, pairs,
                            op.relu, group_out.data());
                cuda::place_columns(group_out.data(), rows, s.group_out(), out.data(), s.out_c, g * s.group_out());
              }
            }
            break;
          }
          case model::AcceleratorOp::MaxPool:
          case model::AcceleratorOp::AvgPool:
            cuda::pool(z[op.input].data(), samples, op.map, op.kind == model::AcceleratorOp::AvgPool,
                       op.pairs.empty() ? arith::FixedPoint{} : op.pairs[0], op.relu, f, out.data());
            break;
          case model::AcceleratorOp::Add:
            cuda::add_aligned(z[op.input].data(), z[op.residual].data(), out.size(), op.pairs[0], op.pairs[1], op.relu,
                              f, out.data());
            break;
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
  const model::AcceleratorLowering lowering = model::accelerator_layers(bundle.graph);
  if (lowering.unsupported) throw std::runtime_error("CUDA engine: " + *lowering.unsupported);
  const std::size_t code_bytes = arith::act_code_bytes(s.f.act_bits);
  std::size_t bytes_per_sample = static_cast<std::size_t>(s.features);
  for (const model::AcceleratorLayer& l : lowering.layers) {
    EngineLayer e;
    e.op = l;
    e.op.params = nullptr;
    bytes_per_sample += 4 * static_cast<std::size_t>(l.out) + code_bytes * static_cast<std::size_t>(l.in);
    if (l.kind == model::AcceleratorOp::Conv2d) {
      const arith::Conv2dShape& m = l.map;
      bytes_per_sample += static_cast<std::size_t>(m.out_h()) * m.out_w() * (code_bytes * m.patch() + 4 * m.group_out());
      for (int g = 0; g < m.groups; ++g) {
        cuda::DeviceArray<std::uint8_t> packed;
        packed.assign(cuda::group_packed_codes(l.params->packed, l.params->format, m.patch(), m.group_out(), g));
        e.packed.push_back(std::move(packed));
      }
      e.requant.assign(l.params->requant);
    } else if (l.kind == model::AcceleratorOp::Linear) {
      cuda::DeviceArray<std::uint8_t> packed;
      packed.assign(cuda::group_packed_codes(l.params->packed, l.params->format, l.in, l.out, 0));
      e.packed.push_back(std::move(packed));
      e.requant.assign(l.params->requant);
    }
    s.layers.push_back(std::move(e));
  }
  s.samples_per_chunk = chunk_samples(bytes_per_sample);
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
