#include "cuda_model_trainer.h"

#include <algorithm>
#include <climits>
#include <cmath>
#include <map>
#include <stdexcept>
#include <string>

#include "../../kernels/cuda/gradient_sources.h"
#include "qathw/kernels/quant_ops.h"

#if QATHW_HAVE_CUDA
#include "qathw/kernels/cuda.h"
#endif

namespace qathw::training {

using model::LayerKind;
using model::LayerSpec;

SpecGraph spec_graph(const model::ModelSpec& spec) {
  SpecGraph g;
  std::map<std::string, std::size_t> named;
  std::size_t previous = kSpecInput;
  for (std::size_t i = 0; i < spec.layers.size(); ++i) {
    const LayerSpec& l = spec.layers[i];
    const auto find = [&](const std::string& name) {
      const auto it = named.find(name);
      if (it == named.end()) throw std::logic_error(spec.origin + ": layer " + std::to_string(i) + " reads unknown layer " + name);
      return it->second;
    };
    g.source.push_back(l.input.empty() ? previous : find(l.input));
    g.residual.push_back(l.kind == LayerKind::Add ? find(l.residual) : kSpecInput);
    if (!l.name.empty()) named[l.name] = i;
    previous = i;
  }
  return g;
}

arith::Conv2dShape layer_shape(const LayerSpec& l) {
  arith::Conv2dShape s;
  s.in_h = std::max(1, l.in_shape.height);
  s.in_w = std::max(1, l.in_shape.width);
  s.in_c = l.in_shape.channels;
  s.out_c = l.kind == LayerKind::Conv2d ? l.out : l.in_shape.channels;
  s.window = l.window;
  s.groups = l.kind == LayerKind::Conv2d ? l.groups : 1;
  return s;
}

namespace {

bool has_kernel(const LayerSpec& l) { return l.kind == LayerKind::Conv2d || l.kind == LayerKind::Linear; }

// The largest scratch buffers a step needs (elements), over every layer.
struct ScratchSizes {
  std::size_t acc = 0;       // a GEMM's accumulators (rows x group outputs)
  std::size_t group = 0;     // a group's outputs or output gradients (grouped convolutions)
  std::size_t dcols = 0;     // a group's patch gradients
  std::size_t dinput = 0;    // a kernel layer's input gradient
  std::size_t partials = 0;  // the split A^T B's chunks
};

ScratchSizes scratch_sizes(const model::ModelSpec& spec, int batch) {
  ScratchSizes z;
  const std::size_t b = static_cast<std::size_t>(batch);
  for (const LayerSpec& l : spec.layers) {
    if (!has_kernel(l)) continue;
    const std::size_t in = static_cast<std::size_t>(l.in_shape.size());
    z.dinput = std::max(z.dinput, b * in);
    if (l.kind == LayerKind::Linear) {
      z.acc = std::max(z.acc, b * l.out);
      const std::size_t chunks = static_cast<std::size_t>(kernels::cuda::split_chunks(batch));
      if (chunks > 1) z.partials = std::max(z.partials, chunks * l.out * in);
      continue;
    }
    const arith::Conv2dShape s = layer_shape(l);
    const std::size_t rows = b * s.out_h() * s.out_w();
    z.acc = std::max(z.acc, rows * s.group_out());
    if (s.groups > 1) z.group = std::max(z.group, rows * s.group_out());
    z.dcols = std::max(z.dcols, rows * s.patch());
    const std::size_t chunks = static_cast<std::size_t>(kernels::cuda::split_chunks(static_cast<long>(rows)));
    if (chunks > 1) z.partials = std::max(z.partials, chunks * s.group_out() * static_cast<std::size_t>(s.patch()));
  }
  return z;
}

}  // namespace

std::size_t spec_step_device_bytes(const model::ModelSpec& spec, int batch, bool quantized) {
  const std::size_t b = static_cast<std::size_t>(batch);
  std::size_t bytes = b * static_cast<std::size_t>(spec.input.size()) * 4;  // the input's integers or values
  for (const LayerSpec& l : spec.layers) {
    const std::size_t out = b * static_cast<std::size_t>(l.out_shape.size());
    bytes += out * 8 + b * 4;  // outputs, their gradients, units
    if (l.kind == LayerKind::MaxPool) bytes += out * 4;  // argmax
    if (!has_kernel(l)) continue;
    const std::size_t n = static_cast<std::size_t>(model::kernel_fan_in(l)) * l.out;
    bytes += n * (quantized ? 28 : 16);  // w, m, v, grad; codes, dequantized, mask
    bytes += static_cast<std::size_t>(l.out) * 24 + b * 16;
    if (quantized) bytes += b * static_cast<std::size_t>(l.in_shape.size()) * 4;  // input codes
    if (l.kind == LayerKind::Conv2d) {
      const arith::Conv2dShape s = layer_shape(l);
      bytes += b * s.out_h() * s.out_w() * static_cast<std::size_t>(s.patch()) * s.groups * 4;  // kept patches
    }
  }
  const ScratchSizes z = scratch_sizes(spec, batch);
  // QAT: the float accumulators and, where a float GEMM is not exact, the int64 ones (counted
  // whenever: the format is not known here); a group's integers beside its floats.
  if (quantized) bytes += z.acc * (4 + 8) + z.group * 4;
  bytes += z.group * 4 + z.dcols * 4 + z.dinput * 4 + z.partials * 4;
  // The batch's pixels and labels, and the logits (QAT).
  bytes += b * (static_cast<std::size_t>(spec.input.size()) + 1) + (quantized ? b * spec.classes() * 4 : 0);
  return bytes;
}

}  // namespace qathw::training

#if QATHW_HAVE_CUDA

namespace qathw::training {

namespace cuda = kernels::cuda;
template <typename T>
using DeviceArray = cuda::DeviceArray<T>;

namespace {

// GEMMs over any number of rows (the tiled kernels' grid takes 65535 row tiles at once).
constexpr std::size_t kGemmRows = std::size_t{65535} * 64;

void gemm_abt_rows(const float* a, const float* b, std::size_t m, int n, int k, float* c) {
  for (std::size_t r = 0; r < m; r += kGemmRows)
    cuda::gemm_abt(a + r * k, b, static_cast<int>(std::min(kGemmRows, m - r)), n, k, c + r * n);
}
void gemm_ab_rows(const float* a, const float* b, std::size_t m, int n, int k, float* c) {
  for (std::size_t r = 0; r < m; r += kGemmRows)
    cuda::gemm_ab(a + r * n, b, static_cast<int>(std::min(kGemmRows, m - r)), n, k, c + r * k);
}

struct DeviceLayer {
  LayerSpec spec;
  std::size_t source = kSpecInput, residual = kSpecInput;
  std::size_t in_size = 0, out_size = 0;
  arith::Conv2dShape shape;
  bool kernel = false, fixed = false;  // fixed: a static quantizer (QAT)
  int fan_in = 0, step_index = -1;
  arith::FixedPoint average_pair;
  // Kernel layers: the weights and their optimizer state and gradient; in QAT their fake
  // quantization, the input codes and their per-sample scales; for convolutions the patches.
  DeviceArray<float> w, m, v, grad;
  DeviceArray<float> codes_w, scales, dequantized, ste_mask, reference;
  DeviceArray<arith::FixedPoint> requant;
  DeviceArray<unsigned long long> abs_sum;
  DeviceArray<int> bad_channel;
  DeviceArray<float> codes, patches, code_scale;
  DeviceArray<std::int64_t> amax;
  DeviceArray<arith::FixedPoint> pairs;  // a static quantizer's (1) or an add's (2)
  DeviceArray<float> pair_step;
  // Outputs: integers (QAT) or values (FP32), per-sample units (QAT), their gradients. A flatten
  // and the unit of a layer that keeps its input's read the source's buffers.
  DeviceArray<std::int32_t> z, argmax;
  DeviceArray<float> y, unit, d;
  const std::int32_t* z_out = nullptr;
  const float* y_out = nullptr;
  const float* unit_out = nullptr;
};

}  // namespace

struct CudaModelTrainer::State {
  std::string origin;
  arith::Format f;
  int lanes = 1, batch = 0, features = 0, classes = 0;
  bool quantized = false, clip = false;
  DeviceArray<std::uint8_t> pixels, labels, batch_pixels, batch_labels;
  DeviceArray<std::uint32_t> order;
  std::vector<DeviceLayer> layers;
  std::vector<std::size_t> kernel_layers, static_layers;
  DeviceArray<std::int32_t> input_z, group_z;
  DeviceArray<float> input_y, input_unit, logits;
  DeviceArray<float> acc, group_y, dcols, dinput, partials;
  DeviceArray<std::int64_t> acc_exact;
  DeviceArray<double> lsq_partials;
  DeviceArray<cuda::LossTotals> totals;
  // Static quantizers: the steps of this step (exp of the log steps), their gradients, and the
  // pair faults of every layer (a static quantizer's or an add's): flag and value.
  DeviceArray<float> steps, step_grads, fault_values;
  DeviceArray<int> faults;
  std::vector<float> log_steps, step_m, step_v, step_values;  // host: the learned log steps

  const std::int32_t* z_in(std::size_t i) const {
    return layers[i].source == kSpecInput ? input_z.data() : layers[layers[i].source].z_out;
  }
  const float* y_in(std::size_t i) const {
    return layers[i].source == kSpecInput ? input_y.data() : layers[layers[i].source].y_out;
  }
  const float* unit_in(std::size_t i) const {
    return layers[i].source == kSpecInput ? input_unit.data() : layers[layers[i].source].unit_out;
  }
  float* d_in(std::size_t i) { return layers[i].source == kSpecInput ? nullptr : layers[layers[i].source].d.data(); }
  const float* logits_of_step() const { return quantized ? logits.data() : layers.back().y_out; }

  void forward();
  void backward();
  void check_faults();
  void update_steps(const kernels::AdamWParams& p);
};

CudaModelTrainer::CudaModelTrainer(const SpecNet& net, const std::vector<std::vector<float>*>& parameters,
                                   const std::vector<std::vector<float>>& adam_m,
                                   const std::vector<std::vector<float>>& adam_v, const arith::Format& f, int lanes,
                                   int batch, const Dataset& train, bool quantized, bool ste_clip)
    : s_(std::make_unique<State>()) {
  State& s = *s_;
  const model::ModelSpec& spec = net.spec();
  s.origin = spec.origin.empty() ? spec.name : spec.origin;
  s.f = f;
  s.lanes = lanes;
  s.batch = batch;
  s.features = static_cast<int>(train.features);
  s.classes = spec.classes();
  s.quantized = quantized;
  s.clip = ste_clip;
  if (static_cast<std::size_t>(spec.input.size()) != train.features)
    throw std::runtime_error(s.origin + ": the model reads " + std::to_string(spec.input.size()) +
                             " values per sample; the training set has " + std::to_string(train.features));

  // The kernels take a convolution's rows (batch x output pixels) as an int.
  for (std::size_t i = 0; i < spec.layers.size(); ++i) {
    const LayerSpec& l = spec.layers[i];
    if (l.kind != LayerKind::Conv2d) continue;
    const arith::Conv2dShape c = layer_shape(l);
    if (static_cast<std::size_t>(batch) * c.out_h() * c.out_w() > static_cast<std::size_t>(INT_MAX))
      throw std::runtime_error("training on CUDA: model " + spec.name + ": layer " + std::to_string(i) +
                               ": batch x output pixels exceeds 2^31 - 1 at batch " + std::to_string(batch) +
                               "; use a smaller --batch, or --device cpu");
  }
  // Memory first: a clear refusal rather than an allocation failure halfway.
  const std::size_t need = spec_step_device_bytes(spec, batch, quantized) + train.pixels.size() + train.labels.size() +
                           train.count * 4;
  const cuda::DeviceMemory memory = cuda::device_memory();
  const auto mib = [](std::size_t bytes) { return std::to_string((bytes + (1u << 20) - 1) >> 20) + " MiB"; };
  const std::string advice = "; use a smaller --batch, or --device cpu";
  if (need > memory.free)
    throw std::runtime_error("training on CUDA: model " + spec.name + " needs about " + mib(need) +
                             " of device memory at batch " + std::to_string(batch) + ", and the device has " +
                             mib(memory.free) + " free (of " + mib(memory.total) + ")" + advice);

  try {
    const SpecGraph graph = spec_graph(spec);
    const std::vector<bool> fixed = quantized ? net.static_quantizers(f) : std::vector<bool>(spec.layers.size(), false);
    const std::size_t b = static_cast<std::size_t>(batch);
    s.pixels.assign(train.pixels);
    s.labels.assign(train.labels);
    s.batch_pixels.resize(b * train.features);
    s.batch_labels.resize(b);
    if (quantized) {
      s.input_z.resize(b * train.features);
      s.input_unit.assign(std::vector<float>(b, 1.0f / 255.0f));
    } else {
      s.input_y.resize(b * train.features);
    }
    s.layers.resize(spec.layers.size());
    std::size_t parameter = 0;
    for (std::size_t i = 0; i < spec.layers.size(); ++i) {
      const LayerSpec& l = spec.layers[i];
      DeviceLayer& d = s.layers[i];
      d.spec = l;
      d.source = graph.source[i];
      d.residual = graph.residual[i];
      d.in_size = static_cast<std::size_t>(l.in_shape.size());
      d.out_size = static_cast<std::size_t>(l.out_shape.size());
      d.shape = layer_shape(l);
      d.kernel = has_kernel(l);
      d.fixed = fixed[i];
      const std::size_t outputs = b * d.out_size;
      d.d.resize(outputs);
      if (l.kind == LayerKind::AvgPool || l.kind == LayerKind::GlobalAvgPool) {
        const arith::FixedPointResult pair = arith::average_pool_pair(l.window, f);
        if (quantized && pair.status != arith::FixedPointStatus::Ok)
          throw std::runtime_error(s.origin + ": layer " + std::to_string(i) + ": 1 / area has no pair in the " +
                                   "target's scale format");
        d.average_pair = pair.value;
      }
      if (l.kind == LayerKind::Flatten) {
        // The source's buffers as they are (a flatten of channels-last maps moves nothing).
        const DeviceLayer* src = d.source == kSpecInput ? nullptr : &s.layers[d.source];
        d.z_out = src ? src->z_out : s.input_z.data();
        d.y_out = src ? src->y_out : s.input_y.data();
      } else if (quantized) {
        d.z.resize(outputs);
        d.z_out = d.z.data();
      } else {
        d.y.resize(outputs);
        d.y_out = d.y.data();
      }
      if (l.kind == LayerKind::MaxPool) d.argmax.resize(outputs);
      if (quantized) {
        if (d.kernel || l.kind == LayerKind::Add) {
          d.unit.resize(b);
          d.unit_out = d.unit.data();
        } else {
          d.unit_out = d.source == kSpecInput ? s.input_unit.data() : s.layers[d.source].unit_out;
        }
        if (l.kind == LayerKind::Add) d.pairs.resize(2);
      }
      if (!d.kernel) continue;
      d.fan_in = model::kernel_fan_in(l);
      const std::size_t n = static_cast<std::size_t>(d.fan_in) * l.out;
      if (parameter >= parameters.size() || parameters[parameter]->size() != n)
        throw std::logic_error("CudaModelTrainer: parameter " + std::to_string(parameter) + " is not layer " +
                               std::to_string(i) + "'s kernel");
      d.w.assign(*parameters[parameter]);
      d.m.assign(adam_m[parameter]);
      d.v.assign(adam_v[parameter]);
      ++parameter;
      d.grad.resize(n);
      s.kernel_layers.push_back(i);
      if (l.kind == LayerKind::Conv2d)
        d.patches.resize(b * d.shape.out_h() * d.shape.out_w() * static_cast<std::size_t>(d.shape.patch()) *
                         d.shape.groups);
      if (!quantized) continue;
      d.codes_w.resize(n);
      d.dequantized.resize(n);
      d.ste_mask.resize(n);
      d.scales.resize(static_cast<std::size_t>(l.out));
      d.requant.resize(static_cast<std::size_t>(l.out));
      d.reference.resize(1);
      d.abs_sum.resize(1);
      d.bad_channel.assign(std::vector<int>{cuda::kNoBadChannel});
      d.codes.resize(b * d.in_size);
      d.code_scale.resize(b);
      if (d.fixed) {
        d.step_index = static_cast<int>(s.static_layers.size());
        s.static_layers.push_back(i);
        d.pairs.resize(1);
        d.pair_step.resize(1);
      } else {
        d.amax.resize(b);
      }
      if (!kernels::float_accumulation_exact(d.fan_in, f)) {
        const std::size_t rows = l.kind == LayerKind::Conv2d ? b * d.shape.out_h() * d.shape.out_w() : b;
        const std::size_t size = rows * (l.kind == LayerKind::Conv2d ? d.shape.group_out() : l.out);
        if (s.acc_exact.size() < size) s.acc_exact.resize(size);
      }
    }
    // The learned log steps follow the kernels.
    for (std::size_t k = 0; k < s.static_layers.size(); ++k, ++parameter) {
      if (parameter >= parameters.size() || parameters[parameter]->size() != 1)
        throw std::logic_error("CudaModelTrainer: parameter " + std::to_string(parameter) + " is not a log step");
      s.log_steps.push_back((*parameters[parameter])[0]);
      s.step_m.push_back(adam_m[parameter][0]);
      s.step_v.push_back(adam_v[parameter][0]);
    }
    if (parameter != parameters.size())
      throw std::logic_error("CudaModelTrainer: " + std::to_string(parameters.size()) + " parameters for " +
                             std::to_string(parameter));
    if (!s.static_layers.empty()) {
      s.steps.resize(s.static_layers.size());
      s.step_grads.resize(s.static_layers.size());
      s.step_values.resize(s.static_layers.size());
    }
    if (quantized) {
      s.faults.assign(std::vector<int>(spec.layers.size(), 0));
      s.fault_values.resize(spec.layers.size());
      s.logits.resize(b * s.classes);
    }
    const ScratchSizes z = scratch_sizes(spec, batch);
    if (quantized) {
      s.acc.resize(z.acc);
      s.group_z.resize(z.group);
    }
    s.group_y.resize(z.group);  // a group's outputs (FP32) and output gradients
    s.dcols.resize(z.dcols);
    s.dinput.resize(z.dinput);
    s.partials.resize(std::max<std::size_t>(z.partials, 1));
    std::size_t lsq = 1;
    for (std::size_t i : s.static_layers) lsq = std::max(lsq, cuda::lsq_partials(b * s.layers[i].in_size));
    s.lsq_partials.resize(lsq);
    s.totals.assign(std::vector<cuda::LossTotals>{cuda::LossTotals{}});
  } catch (const cuda::CudaError& e) {
    throw std::runtime_error("training on CUDA: model " + spec.name + " at batch " + std::to_string(batch) +
                             ": " + e.what() + " (about " + mib(need) + " needed, " + mib(memory.free) + " free)" +
                             advice);
  }
}

CudaModelTrainer::~CudaModelTrainer() = default;

void CudaModelTrainer::set_order(const std::vector<std::uint32_t>& order) { s_->order.assign(order); }


void CudaModelTrainer::State::forward() {
  const std::size_t b = static_cast<std::size_t>(batch);
  if (quantized) {
    cuda::widen_pixels(batch_pixels.data(), b * features, input_z.data());
    // quantize_kernels
    for (std::size_t i : kernel_layers) {
      DeviceLayer& d = layers[i];
      cuda::quantize_weights(d.w.data(), d.spec.out, d.fan_in, f,
                             {d.codes_w.data(), d.scales.data(), d.dequantized.data(), d.ste_mask.data(),
                              d.requant.data(), d.reference.data(), d.abs_sum.data(), d.bad_channel.data()});
    }
  } else {
    cuda::pixels_over_255(batch_pixels.data(), b * features, input_y.data());
  }
  for (std::size_t i = 0; i < layers.size(); ++i) {
    DeviceLayer& d = layers[i];
    const LayerSpec& l = d.spec;
    const std::size_t outputs = b * d.out_size;
    switch (l.kind) {
      case LayerKind::Conv2d:
      case LayerKind::Linear: {
        const bool conv = l.kind == LayerKind::Conv2d;
        const arith::Conv2dShape& s = d.shape;
        const int k = d.fan_in, groups = conv ? s.groups : 1, go = conv ? s.group_out() : l.out;
        const std::size_t rows = conv ? b * s.out_h() * s.out_w() : b;
        // The GEMM operand: a linear layer's inputs, a convolution's patches (group by group).
        const float* maps = y_in(i);
        if (quantized) {
          // The input quantizer: codes, each sample's code scale and the output's unit.
          if (d.fixed) {
            cuda::static_quantizer(unit_in(i), steps.data() + d.step_index, d.reference.data(), batch, f,
                                   {d.pairs.data(), d.pair_step.data(), d.code_scale.data(), d.unit.data(),
                                    faults.data() + i, fault_values.data() + i});
            cuda::quantize_static_codes(z_in(i), b * d.in_size, d.pairs.data(), f, d.codes.data());
          } else {
            cuda::quantize_tokens(z_in(i), batch, static_cast<int>(d.in_size), f, d.codes.data(), d.amax.data());
            cuda::dynamic_units(d.amax.data(), unit_in(i), batch, f.act_bits, d.reference.data(), d.code_scale.data(),
                                d.unit.data());
          }
          maps = d.codes.data();
        }
        const bool float_exact = kernels::float_accumulation_exact(k, f);
        for (int g = 0; g < groups; ++g) {
          const float* a = maps;
          if (conv) {
            float* p = d.patches.data() + static_cast<std::size_t>(g) * rows * k;
            cuda::conv_patches(maps, batch, s, g, p);
            a = p;
          }
          const std::size_t first = static_cast<std::size_t>(g) * go;
          if (quantized) {
            // The array on the codes: a float GEMM where every sum is exact, else arith::dot's
            // chunks of `lanes`; then the epilogue.
            std::int32_t* out = groups == 1 ? d.z.data() : group_z.data();
            const float* wg = d.codes_w.data() + first * k;
            if (float_exact) {
              gemm_abt_rows(a, wg, rows, go, k, acc.data());
              cuda::accumulator_epilogue(acc.data(), static_cast<int>(rows), go, d.requant.data() + first, false, f,
                                         out);
            } else {
              cuda::accumulate_exact(a, wg, static_cast<int>(rows), go, k, lanes, f, acc_exact.data());
              cuda::accumulator_epilogue(acc_exact.data(), static_cast<int>(rows), go, d.requant.data() + first, false,
                                         f, out);
            }
            if (groups > 1) cuda::place_columns(group_z.data(), rows, go, d.z.data(), l.out, static_cast<int>(first));
          } else {
            float* out = groups == 1 ? d.y.data() : group_y.data();
            gemm_abt_rows(a, d.w.data() + first * k, rows, go, k, out);
            if (groups > 1) cuda::place_columns(group_y.data(), rows, go, d.y.data(), l.out, static_cast<int>(first));
          }
        }
        break;
      }
      case LayerKind::Relu:
        if (quantized) cuda::relu_integers(z_in(i), outputs, d.z.data());
        else cuda::relu_values(y_in(i), outputs, d.y.data());
        break;
      case LayerKind::MaxPool:
        if (quantized) cuda::max_pool(z_in(i), batch, d.shape, d.z.data(), d.argmax.data());
        else cuda::max_pool(y_in(i), batch, d.shape, d.y.data(), d.argmax.data());
        break;
      case LayerKind::AvgPool:
      case LayerKind::GlobalAvgPool:
        if (quantized) cuda::pool(z_in(i), batch, d.shape, true, d.average_pair, false, f, d.z.data());
        else cuda::average_pool_values(y_in(i), batch, d.shape, d.y.data());
        break;
      case LayerKind::Add:
        // Both operands in the larger of their units (fixed: every quantizer upstream is static).
        if (quantized) {
          const DeviceLayer& r = layers[d.residual];
          cuda::add_pairs(unit_in(i), r.unit_out, batch, f, d.pairs.data(), d.unit.data(), faults.data() + i);
          cuda::add_aligned(z_in(i), r.z_out, outputs, d.pairs.data(), f, d.z.data());
        } else {
          cuda::add_values(y_in(i), layers[d.residual].y_out, outputs, d.y.data());
        }
        break;
      case LayerKind::Flatten:
        break;  // reads its source's buffers
    }
  }
  if (quantized)
    cuda::integer_values(layers.back().z_out, batch, classes, layers.back().unit_out, logits.data());
}

void CudaModelTrainer::State::backward() {
  const std::size_t b = static_cast<std::size_t>(batch);
  // Every gradient buffer is added into (the last one holds d loss / d logits).
  for (std::size_t i = 0; i + 1 < layers.size(); ++i) layers[i].d.zero();
  for (std::size_t i = layers.size(); i-- > 0;) {
    DeviceLayer& d = layers[i];
    const LayerSpec& l = d.spec;
    const std::size_t outputs = b * d.out_size;
    float* dy = d.d.data();
    float* dx = d_in(i);  // null: the pixels need no gradient
    switch (l.kind) {
      case LayerKind::Conv2d:
      case LayerKind::Linear: {
        const bool conv = l.kind == LayerKind::Conv2d;
        const arith::Conv2dShape& s = d.shape;
        const int k = d.fan_in, groups = conv ? s.groups : 1, go = conv ? s.group_out() : l.out;
        const std::size_t rows = conv ? b * s.out_h() * s.out_w() : b;
        // A static quantizer's input gradient first goes to its codes' real values (dinput),
        // which the step's gradient reads; then through the quantizer's clip to dx.
        const bool lsq = quantized && d.fixed;
        float* dcodes = lsq ? dinput.data() : nullptr;
        const float* w = quantized ? d.dequantized.data() : d.w.data();
        const auto group_dy = [&](int g) -> const float* {
          if (groups == 1) return dy;
          cuda::take_columns(dy, rows, l.out, g * go, go, group_y.data());
          return group_y.data();
        };
        if (dx || lsq) {
          if (!conv) {
            gemm_ab_rows(dy, w, b, l.out, k, dinput.data());
            if (!lsq) cuda::add_into(dx, dinput.data(), b * d.in_size);
          } else {
            for (int g = 0; g < groups; ++g) {
              gemm_ab_rows(group_dy(g), w + static_cast<std::size_t>(g) * go * k, rows, go, k, dcols.data());
              cuda::conv_input_gradient(dcols.data(), batch, s, g, !lsq, lsq ? dcodes : dx);
            }
          }
        }
        // The kernel's gradient: in QAT the operand holds codes, so each sample's code scale
        // moves onto its output gradients, (s dy)^T codes = dy^T (s codes).
        if (quantized) cuda::scale_rows(dy, batch, static_cast<int>(d.out_size), d.code_scale.data());
        for (int g = 0; g < groups; ++g) {
          const float* a = conv ? d.patches.data() + static_cast<std::size_t>(g) * rows * k
                                : (quantized ? d.codes.data() : y_in(i));
          cuda::gemm_atb_split(group_dy(g), a, static_cast<int>(rows), go, k, partials.data(),
                               d.grad.data() + static_cast<std::size_t>(g) * go * k);
        }
        if (quantized && clip) cuda::multiply(d.grad.data(), d.ste_mask.data(), d.grad.size());
        if (lsq)
          cuda::lsq_backward(dcodes, z_in(i), d.codes.data(), b * d.in_size, unit_in(i), d.pair_step.data(), f.act_bits,
                             static_cast<double>(d.in_size), dx, lsq_partials.data(), step_grads.data() + d.step_index);
        break;
      }
      case LayerKind::Relu:
        if (!dx) break;
        // QAT: the input integers' sign, as SpecNet tests it (also where SpecNet fuses the ReLU
        // into a following max pool and tests the pool's output: that output is the ReLU of the
        // integer at the argmax, positive exactly where this integer is).
        if (quantized) cuda::relu_input_gradient(dy, z_in(i), outputs, dx);
        else cuda::relu_input_gradient(dy, y_in(i), outputs, dx);
        break;
      case LayerKind::MaxPool:
        if (dx) cuda::pool_input_gradient(dy, d.argmax.data(), batch, d.shape, dx);
        break;
      case LayerKind::AvgPool:
      case LayerKind::GlobalAvgPool:
        if (dx) cuda::pool_input_gradient(dy, nullptr, batch, d.shape, dx);
        break;
      case LayerKind::Add:
        if (dx) cuda::add_into(dx, dy, outputs);
        cuda::add_into(layers[d.residual].d.data(), dy, outputs);
        break;
      case LayerKind::Flatten:
        if (dx) cuda::add_into(dx, dy, outputs);
        break;
    }
  }
}

void CudaModelTrainer::State::check_faults() {
  for (std::size_t i : kernel_layers) {
    DeviceLayer& d = layers[i];
    if (!quantized) break;
    const int bad = d.bad_channel.to_host()[0];
    if (bad == cuda::kNoBadChannel) continue;
    const std::vector<float> scales = d.scales.to_host();
    const float reference = *std::max_element(scales.begin(), scales.end());
    throw std::runtime_error(origin + ": layer " + std::to_string(i) + ": weight scale ratio " +
                             std::to_string(scales[bad] / reference) + " of output channel " + std::to_string(bad) +
                             " is not representable in the target's scale format");
  }
  if (!quantized) return;
  const std::vector<int> bad = faults.to_host();
  for (std::size_t i = 0; i < bad.size(); ++i) {
    if (!bad[i]) continue;
    if (layers[i].spec.kind == LayerKind::Add)
      throw std::runtime_error(origin + ": layer " + std::to_string(i) + ": the add's operand scales differ beyond " +
                               "the target's scale format");
    const float value = fault_values.to_host()[i];
    throw std::runtime_error(origin + ": layer " + std::to_string(i) + ": the static quantizer's pair (input unit / " +
                             "step = " + std::to_string(value) + ") has no pair in the target's scale format");
  }
}

void CudaModelTrainer::State::update_steps(const kernels::AdamWParams& p) {
  // As the CPU trainer: d loss / d log s = s d loss / d s, AdamW without weight decay.
  const std::vector<float> grads = step_grads.to_host();  // waits for the step
  check_faults();
  kernels::AdamWParams q = p;
  q.weight_decay = 0.0f;
  for (std::size_t k = 0; k < log_steps.size(); ++k) {
    const float g = grads[k] * step_values[k];
    kernels::adamw_step(&log_steps[k], &g, &step_m[k], &step_v[k], 1, q);
  }
}

void CudaModelTrainer::step(std::size_t first, const kernels::AdamWParams& p) {
  State& s = *s_;
  if (!s.static_layers.empty()) {
    for (std::size_t k = 0; k < s.log_steps.size(); ++k) s.step_values[k] = std::exp(s.log_steps[k]);
    s.steps.assign(s.step_values);
  }
  cuda::gather_rows(s.pixels.data(), s.labels.data(), s.order.data() + first, s.batch, s.features,
                    s.batch_pixels.data(), s.batch_labels.data());
  s.forward();
  cuda::softmax_cross_entropy(s.logits_of_step(), s.batch_labels.data(), s.batch, s.classes, s.layers.back().d.data(),
                              s.totals.data());
  s.backward();
  for (std::size_t i : s.kernel_layers) {
    DeviceLayer& d = s.layers[i];
    cuda::adamw_step(d.w.data(), d.grad.data(), d.m.data(), d.v.data(), d.w.size(), p);
  }
  if (!s.static_layers.empty()) s.update_steps(p);
}

CudaModelTrainer::Totals CudaModelTrainer::take_totals() {
  State& s = *s_;
  cuda::synchronize();
  const cuda::LossTotals t = s.totals.to_host()[0];
  s.totals.zero();
  s.check_faults();
  return {t.loss_sum, static_cast<long>(t.correct)};
}

CudaModelTrainer::Inspection CudaModelTrainer::inspect() const {
  const State& s = *s_;
  const std::size_t b = static_cast<std::size_t>(s.batch);
  Inspection r;
  if (s.quantized)
    for (const DeviceLayer& d : s.layers) {
      std::vector<std::int32_t> z(b * d.out_size);
      if (!z.empty()) cuda::download(z.data(), d.z_out, z.size() * sizeof(std::int32_t));
      r.integers.push_back(std::move(z));
    }
  r.logits.resize(b * s.classes);
  cuda::download(r.logits.data(), s.logits_of_step(), r.logits.size() * sizeof(float));
  for (std::size_t i : s.kernel_layers) r.gradients.push_back(s.layers[i].grad.to_host());
  if (!s.static_layers.empty()) {
    r.step_gradients = s.step_grads.to_host();
    for (std::size_t k = 0; k < r.step_gradients.size(); ++k)
      r.gradients.push_back({r.step_gradients[k] * s.step_values[k]});
  }
  return r;
}

void CudaModelTrainer::download(const std::vector<std::vector<float>*>& parameters,
                                std::vector<std::vector<float>>& adam_m, std::vector<std::vector<float>>& adam_v) const {
  const State& s = *s_;
  std::size_t k = 0;
  for (std::size_t i : s.kernel_layers) {
    const DeviceLayer& d = s.layers[i];
    *parameters[k] = d.w.to_host();
    adam_m[k] = d.m.to_host();
    adam_v[k] = d.v.to_host();
    ++k;
  }
  for (std::size_t j = 0; j < s.log_steps.size(); ++j, ++k) {
    *parameters[k] = {s.log_steps[j]};
    adam_m[k] = {s.step_m[j]};
    adam_v[k] = {s.step_v[j]};
  }
}

}  // namespace qathw::training

#endif  // QATHW_HAVE_CUDA
