#include "qathw/training/network.h"

#include <algorithm>
#include <cmath>

#include "qathw/kernels/dense.h"
#include "qathw/kernels/int8_gemm.h"
#include "qathw/kernels/quant_ops.h"

namespace qathw::training {

Mlp make_mlp(int inputs, const std::vector<int>& hidden, int classes, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  Mlp net;
  int in = inputs;
  std::vector<int> outs = hidden;
  outs.push_back(classes);
  for (std::size_t l = 0; l < outs.size(); ++l) {
    Layer layer;
    layer.in = in;
    layer.out = outs[l];
    layer.relu = l + 1 < outs.size();
    const float bound = 1.0f / std::sqrt(static_cast<float>(in));
    std::uniform_real_distribution<float> u(-bound, bound);
    layer.w.resize(static_cast<std::size_t>(layer.out) * in);
    for (auto& x : layer.w) x = u(rng);
    net.layers.push_back(std::move(layer));
    in = outs[l];
  }
  return net;
}

void quantize_weights(const Mlp& net, const arith::Format& f, std::vector<QuantizedLayer>& out) {
  out.resize(net.layers.size());
  for (std::size_t l = 0; l < net.layers.size(); ++l) {
    const Layer& layer = net.layers[l];
    QuantizedLayer& q = out[l];
    const std::size_t n = layer.w.size();
    q.codes.resize(n);
    q.dequantized.resize(n);
    q.ste_mask.resize(n);
    q.scales.resize(layer.out);
    q.requant.resize(layer.out);
    q.reference = kernels::quantize_weights(layer.w.data(), layer.out, layer.in, f, q.codes.data(), q.scales.data(),
                                            q.dequantized.data(), q.ste_mask.data(), q.requant.data());
    if (kernels::int8_gemm_enabled() && kernels::int8_accumulation_exact(layer.in, f)) {
      q.codes_s8.resize(kernels::packed_columns_bytes(layer.out, layer.in));
      q.code_offsets.resize(layer.out);
      kernels::pack_int8_columns(q.codes.data(), layer.out, layer.in, q.codes_s8.data(), q.code_offsets.data());
    } else {
      q.codes_s8.clear();
    }
  }
}

namespace {

void size_activations(const Mlp& net, int batch, Activations& act) {
  const std::size_t layers = net.layers.size();
  act.batch = batch;
  act.inputs.resize(layers);
  act.code_scale.resize(layers);
  act.z.resize(layers);
  act.fp32_outputs.resize(layers);
  for (std::size_t l = 0; l < layers; ++l) act.inputs[l].resize(static_cast<std::size_t>(batch) * net.layers[l].in);
  act.logits.resize(static_cast<std::size_t>(batch) * net.classes());
  act.amax.resize(batch);
  act.inputs_u8.resize(layers);
}

}  // namespace

void forward_fp32(const Mlp& net, const std::uint8_t* pixels, int batch, Activations& act) {
  size_activations(net, batch, act);
  std::vector<float>& x0 = act.inputs[0];
  for (std::size_t i = 0; i < x0.size(); ++i) x0[i] = static_cast<float>(pixels[i]) * (1.0f / 255.0f);
  for (std::size_t l = 0; l < net.layers.size(); ++l) {
    const Layer& layer = net.layers[l];
    std::vector<float>& y = act.fp32_outputs[l];
    y.resize(static_cast<std::size_t>(batch) * layer.out);
    kernels::gemm_abt(act.inputs[l].data(), layer.w.data(), batch, layer.out, layer.in, y.data());
    if (layer.relu) {
      for (float& v : y) v = std::max(v, 0.0f);
      act.inputs[l + 1] = y;
    }
  }
  act.logits = act.fp32_outputs.back();
}

void forward_quantized(const Mlp& net, const std::vector<QuantizedLayer>& q, const arith::Format& f, int lanes,
                       const std::uint8_t* pixels, int batch, Activations& act) {
  size_activations(net, batch, act);
  const float qmax = static_cast<float>(arith::act_qmax(f.act_bits));
  // Byte codes for the int8 GEMM of layer l (quantize_weights packed its weights when it runs).
  auto offset_codes = [&](std::size_t l) -> std::uint8_t* {
    if (q[l].codes_s8.empty()) return nullptr;
    std::vector<std::uint8_t>& buf = act.inputs_u8[l];
    buf.resize(static_cast<std::size_t>(batch) * kernels::padded_row(net.layers[l].in));
    return buf.data();
  };
  // unit[b]: the real value of one integer of the current layer's input, per token.
  std::vector<float> unit(batch, 1.0f / 255.0f);
  kernels::quantize_tokens(pixels, batch, net.inputs(), f, act.inputs[0].data(), act.amax.data(), offset_codes(0),
                           kernels::padded_row(net.inputs()));
  for (std::size_t l = 0; l < net.layers.size(); ++l) {
    const Layer& layer = net.layers[l];
    const QuantizedLayer& ql = q[l];
    std::vector<float>& scale = act.code_scale[l];
    scale.resize(batch);
    for (int b = 0; b < batch; ++b) scale[b] = static_cast<float>(act.amax[b]) * unit[b] / qmax;

    const std::size_t outputs = static_cast<std::size_t>(batch) * layer.out;
    act.z[l].resize(outputs);
    if (!ql.codes_s8.empty()) {
      act.acc_i32.resize(outputs);
      kernels::gemm_u8s8_packed(act.inputs_u8[l].data(), kernels::padded_row(layer.in), ql.codes_s8.data(),
                                ql.code_offsets.data(), batch, layer.out, layer.in, act.acc_i32.data(), layer.out);
      kernels::accumulator_epilogue(act.acc_i32.data(), batch, layer.out, ql.requant.data(), layer.relu, f,
                                    act.z[l].data());
    } else if (kernels::float_accumulation_exact(layer.in, f)) {
      act.acc.resize(outputs);
      kernels::gemm_abt(act.inputs[l].data(), ql.codes.data(), batch, layer.out, layer.in, act.acc.data());
      kernels::accumulator_epilogue(act.acc.data(), batch, layer.out, ql.requant.data(), layer.relu, f,
                                    act.z[l].data());
    } else {
      act.acc_exact.resize(outputs);
      kernels::accumulate_exact(act.inputs[l].data(), ql.codes.data(), batch, layer.out, layer.in, lanes, f,
                                act.acc_exact.data());
      kernels::accumulator_epilogue(act.acc_exact.data(), batch, layer.out, ql.requant.data(), layer.relu, f,
                                    act.z[l].data());
    }
    for (int b = 0; b < batch; ++b) unit[b] = scale[b] * ql.reference;
    if (layer.relu) {
      kernels::quantize_tokens(act.z[l].data(), batch, layer.out, f, act.inputs[l + 1].data(), act.amax.data(),
                               offset_codes(l + 1), kernels::padded_row(layer.out));
    }
  }
  const int classes = net.classes();
  const std::vector<std::int32_t>& z = act.z.back();
  for (int b = 0; b < batch; ++b)
    for (int c = 0; c < classes; ++c) {
      const std::size_t i = static_cast<std::size_t>(b) * classes + c;
      act.logits[i] = static_cast<float>(z[i]) * unit[b];
    }
}

float softmax_cross_entropy(const std::vector<float>& logits, const std::uint8_t* labels, int batch, int classes,
                            std::vector<float>& dlogits, int& correct) {
  dlogits.resize(logits.size());
  // Rows in parallel where there are many (a language model's tokens), each row's loss kept and
  // summed in row order after: the same result whatever the thread count.
  std::vector<double> row_loss(static_cast<std::size_t>(batch));
  std::vector<std::uint8_t> hit(static_cast<std::size_t>(batch));
#pragma omp parallel for schedule(static) if (static_cast<long>(batch) * classes >= (1L << 16))
  for (int b = 0; b < batch; ++b) {
    const float* row = logits.data() + static_cast<std::size_t>(b) * classes;
    float* d = dlogits.data() + static_cast<std::size_t>(b) * classes;
    const int best = argmax(row, classes);
    hit[b] = best == labels[b];
    const float top = row[best];
    float sum = 0;
    for (int c = 0; c < classes; ++c) sum += (d[c] = std::exp(row[c] - top));
    row_loss[b] = std::log(sum) - (row[labels[b]] - top);
    for (int c = 0; c < classes; ++c) d[c] = (d[c] / sum - (c == labels[b] ? 1.0f : 0.0f)) / static_cast<float>(batch);
  }
  double loss = 0;
  correct = 0;
  for (int b = 0; b < batch; ++b) {
    loss += row_loss[b];
    correct += hit[b];
  }
  return static_cast<float>(loss / batch);
}

float distillation_loss(const std::vector<float>& logits, const std::vector<float>& teacher, const std::uint8_t* labels,
                        int batch, int classes, float temperature, float weight, std::vector<float>& dlogits,
                        int& correct) {
  const float ce = softmax_cross_entropy(logits, labels, batch, classes, dlogits, correct);
  const float t = temperature;
  double kl = 0;
  std::vector<float> ps(static_cast<std::size_t>(classes)), pt(ps.size());
  // softmax(row / T) into p; returns log of its normaliser, so log p[c] = row[c] / T - top - log sum.
  const auto softmax = [&](const float* row, std::vector<float>& p) {
    const float top = row[argmax(row, classes)] / t;
    float sum = 0;
    for (int c = 0; c < classes; ++c) sum += (p[c] = std::exp(row[c] / t - top));
    for (int c = 0; c < classes; ++c) p[c] /= sum;
    return top + std::log(sum);
  };
  for (int b = 0; b < batch; ++b) {
    const float* zs = logits.data() + static_cast<std::size_t>(b) * classes;
    const float* zt = teacher.data() + static_cast<std::size_t>(b) * classes;
    const float ls = softmax(zs, ps), lt = softmax(zt, pt);
    float* d = dlogits.data() + static_cast<std::size_t>(b) * classes;
    for (int c = 0; c < classes; ++c) {
      if (pt[c] > 0) kl += pt[c] * ((zt[c] / t - lt) - (zs[c] / t - ls));
      // d/dz of T^2 KL is T (p_s - p_t); the cross-entropy's part is already in d.
      d[c] = (1.0f - weight) * d[c] + weight * t * (ps[c] - pt[c]) / static_cast<float>(batch);
    }
  }
  return (1.0f - weight) * ce + weight * t * t * static_cast<float>(kl / batch);
}

void backward_fp32(const Mlp& net, Activations& act, const std::vector<float>& dlogits,
                   std::vector<std::vector<float>>& grads) {
  const int batch = act.batch;
  grads.resize(net.layers.size());
  const float* dy = dlogits.data();
  int next = 0;  // which scratch buffer receives the next input gradient
  for (std::size_t l = net.layers.size(); l-- > 0;) {
    const Layer& layer = net.layers[l];
    grads[l].resize(layer.w.size());
    kernels::gemm_atb(dy, act.inputs[l].data(), batch, layer.out, layer.in, grads[l].data());
    if (l == 0) break;  // the first layer needs no input gradient
    std::vector<float>& dx = act.grad_scratch[next];
    dx.resize(static_cast<std::size_t>(batch) * layer.in);
    kernels::gemm_ab(dy, layer.w.data(), batch, layer.out, layer.in, dx.data());
    const std::vector<float>& x = act.inputs[l];  // post-ReLU outputs of layer l-1
    for (std::size_t i = 0; i < dx.size(); ++i)
      if (x[i] <= 0.0f) dx[i] = 0.0f;
    dy = dx.data();
    next ^= 1;
  }
}

void backward_quantized(const Mlp& net, const std::vector<QuantizedLayer>& q, Activations& act,
                        const std::vector<float>& dlogits, bool clip, std::vector<std::vector<float>>& grads) {
  const int batch = act.batch;
  grads.resize(net.layers.size());
  std::vector<float> dy_buf(dlogits);  // small (batch x classes)
  std::vector<float>* dy = &dy_buf;
  int next = 0;
  for (std::size_t l = net.layers.size(); l-- > 0;) {
    const Layer& layer = net.layers[l];
    const QuantizedLayer& ql = q[l];
    // d(loss)/d(dequantized W) = (dy * code_scale per token)^T . input codes. dy is scaled in
    // place: its unscaled values are not needed again (dx below uses them first, so compute dx
    // before scaling).
    std::vector<float>* dx = nullptr;
    if (l > 0) {
      dx = &act.grad_scratch[next];
      dx->resize(static_cast<std::size_t>(batch) * layer.in);
      kernels::gemm_ab(dy->data(), ql.dequantized.data(), batch, layer.out, layer.in, dx->data());
      const std::int32_t* __restrict z = act.z[l - 1].data();  // ReLU'd integers feeding this layer
      float* __restrict d = dx->data();
      const long count = static_cast<long>(dx->size());
#pragma omp parallel for simd schedule(static) if (count > 32768)
      for (long i = 0; i < count; ++i) d[i] = z[i] > 0 ? d[i] : 0.0f;
    }
    const std::vector<float>& s = act.code_scale[l];
#pragma omp parallel for schedule(static) if (static_cast<long>(batch) * layer.out > 32768)
    for (int b = 0; b < batch; ++b) {
      float* row = dy->data() + static_cast<std::size_t>(b) * layer.out;
      for (int n = 0; n < layer.out; ++n) row[n] *= s[b];
    }
    grads[l].resize(layer.w.size());
    kernels::gemm_atb(dy->data(), act.inputs[l].data(), batch, layer.out, layer.in, grads[l].data());
    if (clip)
      for (std::size_t i = 0; i < grads[l].size(); ++i) grads[l][i] *= ql.ste_mask[i];
    if (l == 0) break;
    dy = dx;
    next ^= 1;
  }
}

}  // namespace qathw::training
