#include "cuda_trainer.h"

#if QATHW_HAVE_CUDA

#include <algorithm>
#include <stdexcept>
#include <string>

#include "qathw/kernels/cuda.h"
#include "qathw/kernels/quant_ops.h"

namespace qathw::training {

namespace cuda = kernels::cuda;
template <typename T>
using DeviceArray = cuda::DeviceArray<T>;

namespace {

struct DeviceLayer {
  int in = 0, out = 0;
  bool relu = false;
  DeviceArray<float> w, m, v, grad;
  // The weights' fake quantization (QAT).
  DeviceArray<float> codes, scales, dequantized, ste_mask, reference;
  DeviceArray<arith::FixedPoint> requant;
  DeviceArray<unsigned long long> abs_sum;
  DeviceArray<int> bad_channel;
  // Per batch: the layer's input (activation codes, or FP32 reals), per-token code scales, and
  // its requantized integers (QAT).
  DeviceArray<float> input, code_scale;
  DeviceArray<std::int32_t> z;
};

}  // namespace

struct CudaTrainer::State {
  arith::Format f;
  int lanes = 1, batch = 0, features = 0, classes = 0;
  bool quantized = false, clip = false;
  DeviceArray<std::uint8_t> pixels, labels, batch_pixels, batch_labels;
  DeviceArray<std::uint32_t> order;
  std::vector<DeviceLayer> layers;
  DeviceArray<float> acc, logits, dlogits, scratch[2];
  DeviceArray<std::int64_t> acc_exact;
  DeviceArray<cuda::LossTotals> totals;
};

CudaTrainer::CudaTrainer(const Mlp& net, const std::vector<std::vector<float>>& adam_m,
                         const std::vector<std::vector<float>>& adam_v, const arith::Format& f, int lanes, int batch,
                         const Dataset& train, bool quantized, bool ste_clip)
    : s_(std::make_unique<State>()) {
  State& s = *s_;
  s.f = f;
  s.lanes = lanes;
  s.batch = batch;
  s.features = static_cast<int>(train.features);
  s.classes = net.classes();
  s.quantized = quantized;
  s.clip = ste_clip;
  s.pixels.assign(train.pixels);
  s.labels.assign(train.labels);
  s.batch_pixels.resize(static_cast<std::size_t>(batch) * train.features);
  s.batch_labels.resize(static_cast<std::size_t>(batch));
  const std::size_t b = static_cast<std::size_t>(batch);
  std::size_t largest_output = 0, largest_input = 0;
  s.layers.resize(net.layers.size());
  for (std::size_t l = 0; l < net.layers.size(); ++l) {
    const Layer& src = net.layers[l];
    DeviceLayer& d = s.layers[l];
    d.in = src.in;
    d.out = src.out;
    d.relu = src.relu;
    const std::size_t n = src.w.size();
    d.w.assign(src.w);
    d.m.assign(adam_m[l]);
    d.v.assign(adam_v[l]);
    d.grad.resize(n);
    d.input.resize(b * src.in);
    d.code_scale.resize(b);
    largest_output = std::max(largest_output, b * src.out);
    if (l > 0) largest_input = std::max(largest_input, b * src.in);
    if (quantized) {
      d.codes.resize(n);
      d.dequantized.resize(n);
      d.ste_mask.resize(n);
      d.scales.resize(src.out);
      d.requant.resize(src.out);
      d.reference.resize(1);
      d.abs_sum.resize(1);
      d.bad_channel.assign(std::vector<int>{cuda::kNoBadChannel});
      d.z.resize(b * src.out);
    }
  }
  s.acc.resize(largest_output);
  if (quantized) s.acc_exact.resize(largest_output);
  s.logits.resize(b * s.classes);
  s.dlogits.resize(b * s.classes);
  for (auto& scratch : s.scratch) scratch.resize(largest_input);
  s.totals.assign(std::vector<cuda::LossTotals>{cuda::LossTotals{}});
}

CudaTrainer::~CudaTrainer() = default;

void CudaTrainer::set_order(const std::vector<std::uint32_t>& order) { s_->order.assign(order); }

void CudaTrainer::step(std::size_t first, const kernels::AdamWParams& p) {
  State& s = *s_;
  const int batch = s.batch;
  const std::size_t b = static_cast<std::size_t>(batch);
  std::vector<DeviceLayer>& layers = s.layers;
  const std::size_t last = layers.size() - 1;
  cuda::gather_rows(s.pixels.data(), s.labels.data(), s.order.data() + first, batch, s.features, s.batch_pixels.data(),
                    s.batch_labels.data());
  if (s.quantized) {
    // quantize_weights
    for (DeviceLayer& d : layers)
      cuda::quantize_weights(d.w.data(), d.out, d.in, s.f,
                             {d.codes.data(), d.scales.data(), d.dequantized.data(), d.ste_mask.data(), d.requant.data(),
                              d.reference.data(), d.abs_sum.data(), d.bad_channel.data()});
    // forward_quantized
    cuda::quantize_tokens(s.batch_pixels.data(), batch, s.features, s.f, layers[0].input.data(), nullptr,
                          {layers[0].code_scale.data(), nullptr, nullptr, 1.0f / 255.0f});
    for (std::size_t l = 0; l <= last; ++l) {
      DeviceLayer& d = layers[l];
      if (kernels::float_accumulation_exact(d.in, s.f)) {
        cuda::gemm_abt(d.input.data(), d.codes.data(), batch, d.out, d.in, s.acc.data());
        cuda::accumulator_epilogue(s.acc.data(), batch, d.out, d.requant.data(), d.relu, s.f, d.z.data());
      } else {
        cuda::accumulate_exact(d.input.data(), d.codes.data(), batch, d.out, d.in, s.lanes, s.f, s.acc_exact.data());
        cuda::accumulator_epilogue(s.acc_exact.data(), batch, d.out, d.requant.data(), d.relu, s.f, d.z.data());
      }
      if (d.relu && l < last) {
        DeviceLayer& next = layers[l + 1];
        cuda::quantize_tokens(d.z.data(), batch, d.out, s.f, next.input.data(), nullptr,
                              {next.code_scale.data(), d.code_scale.data(), d.reference.data(), 1.0f});
      }
    }
    cuda::integer_logits(layers[last].z.data(), batch, s.classes, layers[last].code_scale.data(),
                         layers[last].reference.data(), s.logits.data());
  } else {
    // forward_fp32
    cuda::pixels_to_unit(s.batch_pixels.data(), b * s.features, layers[0].input.data());
    for (std::size_t l = 0; l <= last; ++l) {
      DeviceLayer& d = layers[l];
      float* y = l < last ? layers[l + 1].input.data() : s.logits.data();
      cuda::gemm_abt(d.input.data(), d.w.data(), batch, d.out, d.in, y);
      if (d.relu) cuda::relu(y, b * d.out);
    }
  }
  cuda::softmax_cross_entropy(s.logits.data(), s.batch_labels.data(), batch, s.classes, s.dlogits.data(),
                              s.totals.data());

  // backward_quantized / backward_fp32
  float* dy = s.dlogits.data();
  int next = 0;
  for (std::size_t l = layers.size(); l-- > 0;) {
    DeviceLayer& d = layers[l];
    const std::size_t inputs = b * d.in;
    if (s.quantized) {
      float* dx = nullptr;
      if (l > 0) {
        dx = s.scratch[next].data();
        cuda::gemm_ab(dy, d.dequantized.data(), batch, d.out, d.in, dx);
        cuda::zero_where_not_positive(dx, layers[l - 1].z.data(), inputs);
      }
      cuda::scale_rows(dy, batch, d.out, d.code_scale.data());
      cuda::gemm_atb(dy, d.input.data(), batch, d.out, d.in, d.grad.data());
      if (s.clip) cuda::multiply(d.grad.data(), d.ste_mask.data(), d.grad.size());
      if (l == 0) break;
      dy = dx;
    } else {
      cuda::gemm_atb(dy, d.input.data(), batch, d.out, d.in, d.grad.data());
      if (l == 0) break;
      float* dx = s.scratch[next].data();
      cuda::gemm_ab(dy, d.w.data(), batch, d.out, d.in, dx);
      cuda::zero_where_not_positive(dx, d.input.data(), inputs);
      dy = dx;
    }
    next ^= 1;
  }
  for (DeviceLayer& d : layers) cuda::adamw_step(d.w.data(), d.grad.data(), d.m.data(), d.v.data(), d.w.size(), p);
}

CudaTrainer::Totals CudaTrainer::take_totals() {
  State& s = *s_;
  cuda::synchronize();
  const cuda::LossTotals t = s.totals.to_host()[0];
  s.totals.zero();
  if (s.quantized) {
    for (DeviceLayer& d : s.layers) {
      const int bad = d.bad_channel.to_host()[0];
      if (bad != cuda::kNoBadChannel) {
        const std::vector<float> scales = d.scales.to_host();
        const float reference = *std::max_element(scales.begin(), scales.end());
        throw std::runtime_error("weight scale ratio " + std::to_string(scales[bad] / reference) +
                                 " of output channel " + std::to_string(bad) +
                                 " is not representable in the target's scale format");
      }
    }
  }
  return {t.loss_sum, static_cast<long>(t.correct)};
}

CudaTrainer::Inspection CudaTrainer::inspect() const {
  Inspection r;
  if (s_->quantized) r.output_integers = s_->layers.back().z.to_host();
  r.logits = s_->logits.to_host();
  for (const DeviceLayer& d : s_->layers) r.gradients.push_back(d.grad.to_host());
  return r;
}

void CudaTrainer::download(Mlp& net, std::vector<std::vector<float>>& adam_m,
                           std::vector<std::vector<float>>& adam_v) const {
  for (std::size_t l = 0; l < s_->layers.size(); ++l) {
    const DeviceLayer& d = s_->layers[l];
    net.layers[l].w = d.w.to_host();
    adam_m[l] = d.m.to_host();
    adam_v[l] = d.v.to_host();
  }
}

}  // namespace qathw::training

#endif  // QATHW_HAVE_CUDA
