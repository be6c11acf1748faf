#include "qathw/training/spec_net.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <random>
#include <stdexcept>

#include "qathw/kernels/conv.h"
#include "qathw/kernels/dense.h"
#include "qathw/kernels/int8_gemm.h"
#include "qathw/kernels/quant_ops.h"
#include "qathw/training/calibration.h"

namespace qathw::training {
namespace {

using model::LayerKind;
using model::LayerSpec;
constexpr std::size_t kInput = std::numeric_limits<std::size_t>::max();

arith::Conv2dShape conv_shape(const LayerSpec& l) {
  arith::Conv2dShape s;
  s.in_h = l.in_shape.height;
  s.in_w = l.in_shape.width;
  s.in_c = l.in_shape.channels;
  s.out_c = l.out;
  s.window = l.window;
  s.groups = l.groups;
  return s;
}

// Calls f(b, oy, ox, c, at) for each output of pooling layer l over the batch, `at` its index in
// the layer's output (batch x out_h x out_w x channels); samples in parallel, so f may write only
// to sample b's values.
template <typename F>
void for_each_pool_output(const LayerSpec& l, int batch, F f) {
  const std::size_t per_sample = static_cast<std::size_t>(l.out_shape.size());
#pragma omp parallel for schedule(static)
  for (int b = 0; b < batch; ++b) {
    std::size_t at = static_cast<std::size_t>(b) * per_sample;
    for (int oy = 0; oy < l.out_shape.height; ++oy)
      for (int ox = 0; ox < l.out_shape.width; ++ox)
        for (int c = 0; c < l.out_shape.channels; ++c) f(b, oy, ox, c, at++);
  }
}

// A pool's windows listed once: each output pixel's in-map positions (arith::for_each_window_index,
// in its order) as the map index of channel 0; channel c's index is that plus c.
struct PoolWindows {
  std::vector<int> offsets;
  std::vector<int> first;  // per output pixel: its first offset, and the end of the last
};

PoolWindows pool_windows(const LayerSpec& l) {
  PoolWindows w;
  const model::Shape& in = l.in_shape;
  for (int oy = 0; oy < l.out_shape.height; ++oy)
    for (int ox = 0; ox < l.out_shape.width; ++ox) {
      w.first.push_back(static_cast<int>(w.offsets.size()));
      arith::for_each_window_index(in.height, in.width, in.channels, l.window, oy, ox, 0,
                                   [&](long k) { w.offsets.push_back(static_cast<int>(k)); });
      if (static_cast<int>(w.offsets.size()) == w.first.back())
        throw std::logic_error("a pooling window lies wholly in the padding");
    }
  w.first.push_back(static_cast<int>(w.offsets.size()));
  return w;
}

// Whether a pool's windows tile its input: every position in exactly one window.
bool pool_tiles(const LayerSpec& l) {
  const arith::Window& w = l.window;
  return w.stride_h == w.kernel_h && w.stride_w == w.kernel_w && w.pad_h == 0 && w.pad_w == 0 &&
         l.out_shape.height * w.stride_h == l.in_shape.height && l.out_shape.width * w.stride_w == l.in_shape.width;
}

// Samples a convolution takes at a time: a chunk's patches go through one GEMM (a few samples
// keep its operands in cache), chunks run in parallel. Chunks are fixed, so every sum, the
// kernel gradient's included, is formed the same way whatever the thread count.
constexpr int kChunk = 4;

template <typename F>
void for_each_chunk(int batch, F f) {
  const int chunks = (batch + kChunk - 1) / kChunk;
#pragma omp parallel for schedule(dynamic, 1)
  for (int c = 0; c < chunks; ++c) f(c, c * kChunk, std::min(kChunk, batch - c * kChunk));
}

// A thread's scratch buffer, kept between calls (the chunks of every step reuse it).
template <typename T = float>
std::vector<T>& thread_scratch(int which, std::size_t size) {
  thread_local std::vector<T> buffers[5];
  buffers[which].resize(size);
  return buffers[which];
}

// Group g's channels of `n` samples' outputs (n x pixels x out_c) to or from a dense block
// (n x pixels rows of go).
void gather_group(const float* y, int n, int pixels, int out_c, int g, int go, float* block) {
  for (long r = 0; r < static_cast<long>(n) * pixels; ++r) std::copy_n(y + r * out_c + g * go, go, block + r * go);
}
template <typename T>
void scatter_group(const T* block, int n, int pixels, int out_c, int g, int go, T* y) {
  for (long r = 0; r < static_cast<long>(n) * pixels; ++r) std::copy_n(block + r * go, go, y + r * out_c + g * go);
}

}  // namespace

SpecNet::SpecNet(model::ModelSpec spec, std::uint64_t seed) : spec_(std::move(spec)) {
  std::mt19937_64 rng(seed);
  std::map<std::string, std::size_t> named;
  std::size_t previous = kInput;
  for (std::size_t i = 0; i < spec_.layers.size(); ++i) {
    const LayerSpec& l = spec_.layers[i];
    source_.push_back(l.input.empty() ? previous : named.at(l.input));
    residual_.push_back(l.kind == LayerKind::Add ? named.at(l.residual) : kInput);
    std::vector<float> w;
    if (l.kind == LayerKind::Conv2d || l.kind == LayerKind::Linear) {
      const int in = model::kernel_fan_in(l);
      std::uniform_real_distribution<float> u(-1.0f / std::sqrt(static_cast<float>(in)), 1.0f / std::sqrt(static_cast<float>(in)));
      w.resize(static_cast<std::size_t>(in) * l.out);
      for (float& v : w) v = u(rng);
    }
    w_.push_back(std::move(w));
    if (!l.name.empty()) named[l.name] = i;
    previous = i;
  }
  out_.resize(spec_.layers.size());
  patch_runs_.resize(spec_.layers.size());
  for (std::size_t i = 0; i < spec_.layers.size(); ++i)
    if (spec_.layers[i].kind == LayerKind::Conv2d)
      for (int g = 0; g < spec_.layers[i].groups; ++g) patch_runs_[i].emplace_back(conv_shape(spec_.layers[i]), g);
  patches_.resize(spec_.layers.size());
  code_patches_.resize(spec_.layers.size());
  code_scale_.resize(spec_.layers.size());
  argmax_.resize(spec_.layers.size());
  steps_.assign(spec_.layers.size(), 0.0f);
}

const float* SpecNet::input_of(std::size_t layer) const {
  return source_[layer] == kInput ? input_ : out_[source_[layer]].data();
}

const std::vector<float>& SpecNet::forward(const float* input, int batch) {
  batch_ = batch;
  input_ = input;
  quantized_pass_ = false;
  for (std::size_t i = 0; i < spec_.layers.size(); ++i) {
    const LayerSpec& l = spec_.layers[i];
    const std::size_t in_size = static_cast<std::size_t>(l.in_shape.size());
    const std::size_t out_size = static_cast<std::size_t>(l.out_shape.size());
    const float* x = input_of(i);
    std::vector<float>& y = out_[i];
    y.assign(static_cast<std::size_t>(batch) * out_size, 0.0f);
    switch (l.kind) {
      case LayerKind::Linear:
        kernels::gemm_abt(x, w_[i].data(), batch, l.out, l.in_shape.channels, y.data());
        break;
      case LayerKind::Conv2d: {
        const arith::Conv2dShape s = conv_shape(l);
        const int pixels = s.out_h() * s.out_w(), patch = s.patch(), go = s.group_out();
        keep_patches(i, batch, s, false);
        code_scale_[i].clear();
        for_each_chunk(batch, [&](int, int b0, int n) {
          std::vector<float>& scratch_cols = thread_scratch(0, static_cast<std::size_t>(n) * pixels * patch);
          std::vector<float>& part = thread_scratch(1, static_cast<std::size_t>(n) * pixels * go);
          for (int g = 0; g < s.groups; ++g) {
            float* cols = patches_[i].empty() ? scratch_cols.data() : kept_patches(patches_[i], g, b0, batch, s, patch);
            for (int j = 0; j < n; ++j)
              kernels::im2col(x + (b0 + j) * in_size, s, g, cols + static_cast<std::size_t>(j) * pixels * patch);
            kernels::gemm_abt(cols, w_[i].data() + static_cast<std::size_t>(g) * go * patch, n * pixels, go,
                              patch, part.data());
            scatter_group(part.data(), n, pixels, s.out_c, g, go, y.data() + b0 * out_size);
          }
        });
        break;
      }
      case LayerKind::Relu:
        for (std::size_t k = 0; k < y.size(); ++k) y[k] = std::max(x[k], 0.0f);
        break;
      case LayerKind::MaxPool:
      case LayerKind::AvgPool:
      case LayerKind::GlobalAvgPool: {
        const model::Shape& in = l.in_shape;
        const bool max = l.kind == LayerKind::MaxPool;
        const float area = static_cast<float>(l.window.kernel_h * l.window.kernel_w);
        if (max) argmax_[i].assign(y.size(), 0);
        for_each_pool_output(l, batch, [&](int b, int oy, int ox, int c, std::size_t at) {
          const float* xb = x + b * in_size;
          float acc = max ? -std::numeric_limits<float>::infinity() : 0.0f;
          long best = -1;
          arith::for_each_window_index(in.height, in.width, in.channels, l.window, oy, ox, c, [&](long k) {
            if (!max) {
              acc += xb[k];
              return;
            }
            if (best < 0) best = k;  // a window of -inf or NaN only: its first position takes the gradient
            if (xb[k] > acc) acc = xb[k], best = k;
          });
          y[at] = max ? acc : acc / area;
          if (max) argmax_[i][at] = static_cast<std::int32_t>(best);
        });
        break;
      }
      case LayerKind::Add: {
        const float* r = out_[residual_[i]].data();
        for (std::size_t k = 0; k < y.size(); ++k) y[k] = x[k] + r[k];
        break;
      }
      case LayerKind::Flatten:
        std::copy_n(x, y.size(), y.begin());
        break;
    }
  }
  return out_.back();
}

void SpecNet::backward(const std::vector<float>& dlogits, std::vector<std::vector<float>>& grads) {
  if (quantized_pass_) throw std::logic_error("backward after forward_quantized: use backward_quantized");
  backward_pass(dlogits, grads);
}

void SpecNet::backward_quantized(const std::vector<float>& dlogits, bool clip, std::vector<std::vector<float>>& grads) {
  if (!quantized_pass_) throw std::logic_error("backward_quantized after a float forward");
  backward_pass(dlogits, grads);
  if (!clip) return;
  for (std::size_t i = 0; i < grads.size(); ++i)
    for (std::size_t k = 0; k < grads[i].size(); ++k) grads[i][k] *= q_[i].ste_mask[k];
}

void SpecNet::backward_pass(const std::vector<float>& dlogits, std::vector<std::vector<float>>& grads) {
  const int batch = batch_;
  const std::size_t layers = spec_.layers.size();
  grads.resize(layers);  // each step: the buffers keep their memory
  for (std::size_t i = 0; i < layers; ++i)
    if (w_[i].empty()) grads[i].clear();
  std::vector<std::vector<float>>& d = dout_;  // d(loss)/d(each layer's output)
  d.resize(layers);
  // A layer's gradient buffer is zeroed only where something adds into it: the first ReLU or
  // tiling max pool to reach it writes it whole, each element 0 + the value it would have added.
  std::vector<bool> written(layers, false);
  for (std::size_t i = 0; i < layers; ++i) d[i].resize(out_[i].size());
  d.back() = dlogits;
  written.back() = true;
  const auto zeroed = [&](std::size_t j) {
    if (!written[j]) std::fill(d[j].begin(), d[j].end(), 0.0f);
    written[j] = true;
  };
  std::vector<float>& scratch = scratch_[0];
  std::vector<float>& dcodes = scratch_[1];
  step_grads_.assign(layers, 0.0f);
  // Per-sample passes writing a layer's input gradient whole, for any range of samples: a ReLU's,
  // and a max pool's whose windows tile its input (each position gets its output's gradient where
  // it holds the argmax, else 0).
  // Whether a ReLU passes the gradient at input k: its input is positive (in QAT its integers,
  // whose sign their real values share; the forward keeps no other real values).
  const auto relu_passes = [&](std::size_t j) {
    return [x = quantized_pass_ ? nullptr : input_of(j),
            z = quantized_pass_ ? z_[source_[j]].data() : nullptr](std::size_t k) { return x ? x[k] > 0.0f : z[k] > 0; };
  };
  const auto relu_backward = [&](std::size_t j, int b0, int n) {
    const std::size_t size = static_cast<std::size_t>(spec_.layers[j].out_shape.size());
    const float* __restrict dy = d[j].data();
    float* __restrict dx = d[source_[j]].data();
    if (quantized_pass_) {
      const std::int32_t* __restrict z = z_[source_[j]].data();
      for (std::size_t k = b0 * size; k < (b0 + n) * size; ++k) dx[k] = 0.0f + (z[k] > 0 ? dy[k] : 0.0f);
    } else {
      const float* __restrict x = input_of(j);
      for (std::size_t k = b0 * size; k < (b0 + n) * size; ++k) dx[k] = 0.0f + (x[k] > 0.0f ? dy[k] : 0.0f);
    }
  };
  // A max pool's backward into `to` (its input's gradient from sample b0 on). With `relu_before`
  // (QAT) also that of the ReLU between the pool and its source: the gradient passes where the
  // pool's output is positive (the ReLU's input at the argmax is then the same integer), and the
  // ReLU's gradient is never written.
  const auto max_pool_backward = [&](std::size_t j, const PoolWindows& w, int b0, int n, float* to,
                                     bool relu_before) {
    const LayerSpec& l = spec_.layers[j];
    const std::size_t in_size = static_cast<std::size_t>(l.in_shape.size());
    const int channels = l.out_shape.channels, out_pixels = l.out_shape.height * l.out_shape.width;
    for (int b = b0; b < b0 + n; ++b)
      for (int p = 0; p < out_pixels; ++p) {
        const std::size_t at = (static_cast<std::size_t>(b) * out_pixels + p) * channels;
        const std::int32_t* __restrict best = argmax_[j].data() + at;
        const std::int32_t* __restrict pooled = relu_before ? z_[j].data() + at : nullptr;  // no integers in FP32
        const float* __restrict dy = d[j].data() + at;
        for (int e = w.first[p]; e < w.first[p + 1]; ++e) {
          const int o = w.offsets[e];
          float* __restrict map = to + (b - b0) * in_size + o;
          // Every operand loaded whatever the comparisons (a blend, not masked loads).
          if (relu_before) {
            for (int c = 0; c < channels; ++c) {
              const float g = dy[c];
              map[c] = ((best[c] == o + c) & (pooled[c] > 0)) ? g : 0.0f;
            }
          } else {
            for (int c = 0; c < channels; ++c) {
              const float g = dy[c];
              map[c] = best[c] == o + c ? g : 0.0f;
            }
          }
        }
      }
  };
  // A convolution runs these for the chain of ReLUs and tiling max pools after it, chunk by
  // chunk, just before its own chunk reads their result; where each layer of the chain, and the
  // convolution, has no other reader.
  std::vector<int> readers(layers, 0);
  for (std::size_t j = 0; j < layers; ++j) {
    if (source_[j] != kInput) ++readers[source_[j]];
    if (residual_[j] != kInput) ++readers[residual_[j]];
  }
  std::vector<std::size_t> chain_end(layers, 0);  // per convolution: one past its chain
  std::vector<bool> in_chain(layers, false);
  for (std::size_t c = 0; c < layers; ++c) {
    if (spec_.layers[c].kind != LayerKind::Conv2d) continue;
    std::size_t e = c + 1;
    while (e < layers && source_[e] == e - 1 && readers[e - 1] == 1 &&
           (spec_.layers[e].kind == LayerKind::Relu ||
            (spec_.layers[e].kind == LayerKind::MaxPool && pool_tiles(spec_.layers[e]))))
      in_chain[e++] = true;
    chain_end[c] = e;
  }
  for (std::size_t i = layers; i-- > 0;) {
    if (in_chain[i]) continue;  // run by the convolution before it
    const LayerSpec& l = spec_.layers[i];
    const std::size_t in_size = static_cast<std::size_t>(l.in_shape.size());
    const std::size_t out_size = static_cast<std::size_t>(l.out_shape.size());
    for (std::size_t j = i + 1; j < chain_end[i]; ++j) written[j - 1] = true;  // its chain writes these
    zeroed(i);  // an output nothing reads has gradient 0
    const float* dy = d[i].data();
    float* dx = source_[i] == kInput ? nullptr : d[source_[i]].data();  // the input needs no gradient
    const bool writes_whole = l.kind == LayerKind::Relu || (l.kind == LayerKind::MaxPool && pool_tiles(l));
    // A kernel layer's QAT input is its quantized codes' real values; the others read their
    // input's real values either way.
    const bool kernel = l.kind == LayerKind::Conv2d || l.kind == LayerKind::Linear;
    const float* x = quantized_pass_ && kernel ? kin_[i].data() : input_of(i);
    const float* w = quantized_pass_ && kernel ? q_[i].dequantized.data() : w_[i].data();
    // A static quantizer's input gradient first goes to its output (the codes' real values):
    // the step's gradient needs it even where the input, the pixels, needs none.
    const bool lsq = quantized_pass_ && kernel && !xs_[i].empty();
    float* const dx_source = dx;
    if (lsq) {
      dcodes.assign(static_cast<std::size_t>(batch) * in_size, 0.0f);
      dx = dcodes.data();
    }
    // Whether this layer writes its input's gradient whole rather than adding into it.
    const bool assign = dx_source && !lsq && writes_whole && !written[source_[i]];
    if (dx_source && !assign) zeroed(source_[i]);
    if (dx_source) written[source_[i]] = true;
    if (l.kind == LayerKind::Add) zeroed(residual_[i]);
    switch (l.kind) {
      case LayerKind::Linear: {
        const int in = l.in_shape.channels;
        grads[i].resize(w_[i].size());
        kernels::gemm_atb(dy, x, batch, l.out, in, grads[i].data());
        if (dx) {
          scratch.resize(static_cast<std::size_t>(batch) * in);
          kernels::gemm_ab(dy, w, batch, l.out, in, scratch.data());
          for (std::size_t k = 0; k < scratch.size(); ++k) dx[k] += scratch[k];
        }
        break;
      }
      case LayerKind::Conv2d: {
        const arith::Conv2dShape s = conv_shape(l);
        const int pixels = s.out_h() * s.out_w(), patch = s.patch(), go = s.group_out();
        // Each chunk's kernel gradient apart, summed in chunk order after.
        const int chunks = (batch + kChunk - 1) / kChunk;
        const std::size_t kernel_size = w_[i].size();
        chunk_grads_.resize(static_cast<std::size_t>(chunks) * kernel_size);  // the chunks' GEMMs write it all
        // The chain after it: its last layer's gradient is whole; each layer writes the one before.
        const std::size_t end = chain_end[i];
        std::vector<PoolWindows> windows(end);
        if (end > i + 1) zeroed(end - 1);
        for (std::size_t j = i + 1; j < end; ++j)
          if (spec_.layers[j].kind == LayerKind::MaxPool) windows[j] = pool_windows(spec_.layers[j]);
        for_each_chunk(batch, [&](int c, int b0, int n) {
          // The convolution's output gradient for the chunk: in its buffer, or where the chain
          // ends in a ReLU and a max pool (QAT), written by the pool into the thread's scratch.
          const float* dy_chunk = dy + b0 * out_size;
          for (std::size_t j = end; j-- > i + 1;) {
            if (spec_.layers[j].kind == LayerKind::Relu) {
              relu_backward(j, b0, n);
            } else if (quantized_pass_ && j == i + 2 && spec_.layers[i + 1].kind == LayerKind::Relu) {
              std::vector<float>& chunk_dy = thread_scratch(4, static_cast<std::size_t>(n) * out_size);
              max_pool_backward(j, windows[j], b0, n, chunk_dy.data(), true);
              dy_chunk = chunk_dy.data();
              break;
            } else {
              max_pool_backward(j, windows[j], b0, n, d[source_[j]].data() + b0 * spec_.layers[j].in_shape.size(), false);
            }
          }
          const std::size_t rows = static_cast<std::size_t>(n) * pixels;
          const bool kept = !patches_[i].empty() || !code_patches_[i].empty();
          std::vector<float>& scratch_cols = thread_scratch(0, patches_[i].empty() ? rows * patch : 0);
          const int code_row = kernels::padded_depth(patch);
          std::vector<float>& dyg = thread_scratch(1, s.groups > 1 ? rows * go : 0);
          std::vector<float>& dcols = thread_scratch(2, dx ? rows * patch : 0);
          std::vector<float>& scaled = thread_scratch(3, code_scale_[i].empty() ? 0 : rows * go);
          for (int g = 0; g < s.groups; ++g) {
            // The group's output gradients (one group: the chunk's block of the layer's).
            const float* dy_group = dy_chunk;
            if (s.groups > 1) {
              gather_group(dy_chunk, n, pixels, s.out_c, g, go, dyg.data());
              dy_group = dyg.data();
            }
            const float* cols = scratch_cols.data();
            const float* dy_kernel = dy_group;
            if (kept) {
              // The forward's patches. In QAT they hold codes: each sample's code scale moves onto
              // its output gradients, (s dy)^T codes = dy^T (s codes). Byte codes (the int8
              // GEMM's) become the same float codes first, read from memory in sequence.
              if (!patches_[i].empty()) {
                cols = kept_patches(patches_[i], g, b0, batch, s, patch);
              } else {
                kernels::codes_of_bytes(kept_patches(code_patches_[i], g, b0, batch, s, code_row), static_cast<int>(rows),
                                        patch, code_row, scratch_cols.data());
              }
              if (!code_scale_[i].empty()) {
                const std::size_t per_sample = static_cast<std::size_t>(pixels) * go;
                for (int j = 0; j < n; ++j) {
                  const float scale = code_scale_[i][b0 + j];
                  for (std::size_t e = j * per_sample; e < (j + 1) * per_sample; ++e) scaled[e] = dy_group[e] * scale;
                }
                dy_kernel = scaled.data();
              }
            } else {
              for (int j = 0; j < n; ++j)
                kernels::im2col(x + (b0 + j) * in_size, s, g,
                                scratch_cols.data() + static_cast<std::size_t>(j) * pixels * patch);
            }
            const std::size_t at = static_cast<std::size_t>(g) * go * patch;
            kernels::gemm_atb(dy_kernel, cols, static_cast<int>(rows), go, patch,
                              chunk_grads_.data() + static_cast<std::size_t>(c) * kernel_size + at);
            if (dx) {
              kernels::gemm_ab(dy_group, w + at, static_cast<int>(rows), go, patch, dcols.data());
              for (int j = 0; j < n; ++j)
                patch_runs_[i][g].scatter_add(dcols.data() + static_cast<std::size_t>(j) * pixels * patch,
                                              dx + (b0 + j) * in_size);
            }
          }
        });
        // Each weight's chunks summed in chunk order, the weights shared among the threads.
        grads[i].resize(kernel_size);
        float* __restrict grad = grads[i].data();
        const float* __restrict parts = chunk_grads_.data();
#pragma omp parallel for schedule(static)
        for (std::size_t k = 0; k < kernel_size; ++k) {
          float sum = 0.0f;
          for (int c = 0; c < chunks; ++c) sum += parts[static_cast<std::size_t>(c) * kernel_size + k];
          grad[k] = sum;
        }
        break;
      }
      case LayerKind::Relu:
        if (assign) {
#pragma omp parallel for schedule(static)
          for (int b = 0; b < batch; ++b) relu_backward(i, b, 1);
        } else if (dx) {
          const auto passes = relu_passes(i);
#pragma omp parallel for schedule(static)
          for (std::size_t k = 0; k < d[i].size(); ++k) dx[k] += passes(k) ? dy[k] : 0.0f;
        }
        break;
      case LayerKind::MaxPool:
        if (assign) {
          const PoolWindows w = pool_windows(l);
#pragma omp parallel for schedule(static)
          for (int b = 0; b < batch; ++b) max_pool_backward(i, w, b, 1, dx + b * in_size, false);
        } else if (dx) {
#pragma omp parallel for schedule(static)
          for (int b = 0; b < batch; ++b)
            for (std::size_t k = 0; k < out_size; ++k) {
              const std::size_t at = static_cast<std::size_t>(b) * out_size + k;
              dx[b * in_size + static_cast<std::size_t>(argmax_[i][at])] += dy[at];
            }
        }
        break;
      case LayerKind::AvgPool:
      case LayerKind::GlobalAvgPool: {
        if (!dx) break;
        const model::Shape& in = l.in_shape;
        const float area = static_cast<float>(l.window.kernel_h * l.window.kernel_w);
        for_each_pool_output(l, batch, [&](int b, int oy, int ox, int c, std::size_t at) {
          const float g = dy[at] / area;
          arith::for_each_window_index(in.height, in.width, in.channels, l.window, oy, ox, c,
                                       [&](long k) { dx[b * in_size + k] += g; });
        });
        break;
      }
      case LayerKind::Add: {
        float* dr = d[residual_[i]].data();
        for (std::size_t k = 0; k < d[i].size(); ++k) {
          if (dx) dx[k] += dy[k];
          dr[k] += dy[k];
        }
        break;
      }
      case LayerKind::Flatten:
        if (dx)
          for (std::size_t k = 0; k < d[i].size(); ++k) dx[k] += dy[k];
        break;
    }
    if (lsq) step_grads_[i] = lsq_backward(i, dcodes, dx_source);
  }
}

float SpecNet::lsq_backward(std::size_t i, const std::vector<float>& dcodes, float* dx) const {
  // LSQ: the quantizer's output v = clamp(round(x / s), -Q, Q) * s passes the gradient to x where
  // it does not clip; d v / d s is round(x / s) - x / s there and -Q or Q where it clips. The step's
  // gradient is scaled by 1 / sqrt(features x Q) (Esser et al., 2020).
  const std::vector<float>& t = xs_[i];
  const float q = static_cast<float>(qmax_), step = pair_steps_[i];
  double ds = 0;
  for (std::size_t k = 0; k < t.size(); ++k) {
    const float g = dcodes[k];
    if (t[k] < -q) {
      ds -= g * q;
    } else if (t[k] > q) {
      ds += g * q;
    } else {
      ds += g * (kin_[i][k] / step - t[k]);
      if (dx) dx[k] += g;
    }
  }
  const double features = static_cast<double>(spec_.layers[i].in_shape.size());
  return static_cast<float>(ds / std::sqrt(features * q));
}

void SpecNet::quantize_kernels(const arith::Format& f) {
  q_.resize(spec_.layers.size());  // each step: the buffers keep their memory
  for (std::size_t i = 0; i < spec_.layers.size(); ++i) {
    const LayerSpec& l = spec_.layers[i];
    QuantizedKernel& q = q_[i];
    if (w_[i].empty()) {
      q = {};
      continue;
    }
    const int in = model::kernel_fan_in(l);
    const std::size_t n = w_[i].size();
    q.codes.resize(n);
    q.dequantized.resize(n);
    q.ste_mask.resize(n);
    q.scales.resize(static_cast<std::size_t>(l.out));
    q.requant.resize(static_cast<std::size_t>(l.out));
    q.reference = kernels::quantize_weights(w_[i].data(), l.out, in, f, q.codes.data(), q.scales.data(),
                                            q.dequantized.data(), q.ste_mask.data(), q.requant.data());
    if (kernels::int8_gemm_enabled() && kernels::int8_accumulation_exact(in, f)) {
      const int groups = l.kind == LayerKind::Conv2d ? l.groups : 1, go = l.out / groups;
      const std::size_t bytes = kernels::packed_columns_bytes(go, in);
      q.packed.resize(bytes * groups);
      q.packed_offsets.resize(static_cast<std::size_t>(l.out));
      for (int g = 0; g < groups; ++g)
        kernels::pack_int8_columns(q.codes.data() + static_cast<std::size_t>(g) * go * in, go, in,
                                   q.packed.data() + g * bytes, q.packed_offsets.data() + g * go);
    } else {
      q.packed.clear();
      q.packed_offsets.clear();
    }
  }
}

std::vector<bool> SpecNet::static_quantizers(const arith::Format& f) const {
  // A layer's output reaches an add: its units must be the same in every sample, so every
  // quantizer upstream of it is static.
  const std::size_t n = spec_.layers.size();
  std::vector<bool> feeds_add(n, false);
  for (std::size_t i = n; i-- > 0;) {
    if (spec_.layers[i].kind == LayerKind::Add) feeds_add[i] = true;
    if (!feeds_add[i]) continue;
    if (source_[i] != kInput) feeds_add[source_[i]] = true;
    if (residual_[i] != kInput) feeds_add[residual_[i]] = true;
  }
  std::vector<bool> fixed(n, false);
  const bool all = f.act_quantizer == arith::ActQuantizer::StaticPerTensor;
  for (std::size_t i = 0; i < n; ++i) fixed[i] = !w_[i].empty() && (all || feeds_add[i]);
  return fixed;
}

std::int64_t SpecNet::calibrate(const std::vector<std::int32_t>& values) const {
  const std::int64_t amax = calibration_fraction_ >= 1.0 ? calibrate_minmax(values)
                                                          : calibrate_percentile(values, calibration_fraction_);
  return std::max<std::int64_t>(amax, 1);
}

void SpecNet::calibrate_static(const std::uint8_t* pixels, int batch, const arith::Format& f, int lanes,
                               double fraction) {
  calibration_fraction_ = fraction;
  calibrating_ = true;
  try {
    forward_quantized(pixels, batch, f, lanes);
  } catch (...) {
    calibrating_ = false;
    throw;
  }
  calibrating_ = false;
}

const std::vector<float>& SpecNet::forward_quantized(const std::uint8_t* pixels, int batch, const arith::Format& f,
                                                     int lanes) {
  const std::vector<bool> fixed = static_quantizers(f);
  if (!calibrating_)
    for (std::size_t i = 0; i < fixed.size(); ++i)
      if (fixed[i] && !(steps_[i] > 0.0f))
        throw std::logic_error("forward_quantized: layer " + std::to_string(i) + "'s static quantizer is not calibrated");
  // Buffers keep their memory from step to step (clear() keeps the capacity).
  xs_.resize(spec_.layers.size());
  for (std::vector<float>& v : xs_) v.clear();
  pair_steps_.assign(spec_.layers.size(), 0.0f);
  qmax_ = arith::act_qmax(f.act_bits);
  input_pairs_.assign(spec_.layers.size(), {});
  add_pairs_.assign(spec_.layers.size(), {});
  batch_ = batch;
  quantized_pass_ = true;
  z_.resize(spec_.layers.size());
  kin_.resize(spec_.layers.size());
  // unit[i][b]: the real value of one integer of layer i's output in sample b.
  std::vector<std::vector<float>> unit(spec_.layers.size());
  const std::vector<float> pixel_unit(static_cast<std::size_t>(batch), 1.0f / 255.0f);
  const float qmax = static_cast<float>(arith::act_qmax(f.act_bits));
  const std::size_t in0 = static_cast<std::size_t>(spec_.input.size());
  std::vector<std::int32_t>& input = input_integers_;
  input.assign(pixels, pixels + static_cast<std::size_t>(batch) * in0);
  std::vector<float>& codes = scratch_[0];
  std::vector<std::int64_t> amax(static_cast<std::size_t>(batch));
  // Per-sample passes, for any range of samples [b0, b0 + n): a ReLU's and a max pool's outputs,
  // and the real values the backward pass reads (the logits, the ReLUs' inputs; kernel layers
  // read their codes, pools their argmax). A convolution runs the ReLUs and max pools after it
  // chunk by chunk, on its outputs while they are in cache.
  const auto relu_samples = [&](std::size_t j, int b0, int n) {
    const std::size_t size = static_cast<std::size_t>(spec_.layers[j].out_shape.size());
    const std::int32_t* __restrict from = z_[source_[j]].data();
    std::int32_t* __restrict to = z_[j].data();
    for (std::size_t k = b0 * size; k < (b0 + n) * size; ++k) to[k] = static_cast<std::int32_t>(arith::relu(from[k]));
  };
  const auto max_pool_samples = [&](std::size_t j, const PoolWindows& w, int b0, int n) {
    // arith::max_pool's maximum over the window's positions in the map, found with the first
    // position holding it, which takes the gradient. Channels are contiguous: the loops over
    // them vectorize.
    const LayerSpec& l = spec_.layers[j];
    const std::size_t in_size = static_cast<std::size_t>(l.in_shape.size());
    const int channels = l.out_shape.channels, out_pixels = l.out_shape.height * l.out_shape.width;
    for (int b = b0; b < b0 + n; ++b) {
      const std::int32_t* xb = z_[source_[j]].data() + b * in_size;
      for (int p = 0; p < out_pixels; ++p) {
        const std::size_t at = (static_cast<std::size_t>(b) * out_pixels + p) * channels;
        std::int32_t* __restrict yp = z_[j].data() + at;
        std::int32_t* __restrict best = argmax_[j].data() + at;
        const int o0 = w.offsets[w.first[p]];
        for (int c = 0; c < channels; ++c) yp[c] = xb[o0 + c], best[c] = o0 + c;
        for (int e = w.first[p] + 1; e < w.first[p + 1]; ++e) {
          const std::int32_t* xe = xb + w.offsets[e];
          const int o = w.offsets[e];
          for (int c = 0; c < channels; ++c)
            if (xe[c] > yp[c]) yp[c] = xe[c], best[c] = o + c;
        }
      }
    }
  };
  const auto real_values = [&](std::size_t j, int b0, int n) {
    if (j + 1 != spec_.layers.size()) return;  // the backward's ReLUs read the integers
    const std::size_t size = static_cast<std::size_t>(spec_.layers[j].out_shape.size());
    for (int b = b0; b < b0 + n; ++b)
      for (std::size_t k = 0; k < size; ++k)
        out_[j][b * size + k] = static_cast<float>(z_[j][b * size + k]) * unit[j][b];
  };
  std::size_t fused_end = 0;  // layers before it that a convolution ran
  for (std::size_t i = 0; i < spec_.layers.size(); ++i) {
    const LayerSpec& l = spec_.layers[i];
    const std::size_t in_size = static_cast<std::size_t>(l.in_shape.size());
    const std::size_t out_size = static_cast<std::size_t>(l.out_shape.size());
    const std::vector<std::int32_t>& x = source_[i] == kInput ? input : z_[source_[i]];
    const std::vector<float>& unit_in = source_[i] == kInput ? pixel_unit : unit[source_[i]];
    unit[i] = unit_in;
    std::vector<std::int32_t>& y = z_[i];
    y.resize(static_cast<std::size_t>(batch) * out_size);  // every layer writes each of its outputs
    out_[i].resize(y.size());
    if (i < fused_end) continue;
    bool real_values_done = false;
    switch (l.kind) {
      case LayerKind::Conv2d:
      case LayerKind::Linear: {
        const QuantizedKernel& q = q_[i];
        codes.resize(x.size());
        kin_[i].resize(codes.size());
        // The int8 GEMM reads the codes + 128 as bytes, each sample's padded to 4 bytes.
        const bool int8 = !q.packed.empty();
        const int code_row = kernels::padded_depth(static_cast<int>(in_size));
        if (int8) input_codes_.resize(static_cast<std::size_t>(batch) * code_row);
        if (fixed[i]) {
          // Static: one pair for the tensor, unit_in / step (the units upstream are fixed).
          if (calibrating_) steps_[i] = static_cast<float>(calibrate(x) * unit_in[0] / qmax);
          const arith::FixedPointResult pair = arith::to_fixed_point(unit_in[0] / steps_[i], f);
          if (pair.status != arith::FixedPointStatus::Ok)
            throw std::runtime_error(spec_.origin + ": layer " + std::to_string(i) + ": the static quantizer's " +
                                     "pair (input unit / step = " + std::to_string(unit_in[0] / steps_[i]) +
                                     ") has no pair in the target's scale format");
          input_pairs_[i] = {pair.value};
          const float step = static_cast<float>(unit_in[0] / arith::to_real(pair.value));  // the step the pair gives
          pair_steps_[i] = step;
          xs_[i].resize(codes.size());
#pragma omp parallel for schedule(static)
          for (std::size_t k = 0; k < x.size(); ++k) {
            codes[k] = static_cast<float>(arith::quantize_act(x[k], pair.value, f.act_bits, f.rounding));
            kin_[i][k] = codes[k] * step;
            xs_[i][k] = static_cast<float>(x[k]) * unit_in[0] / step;
          }
          std::fill(unit[i].begin(), unit[i].end(), step * q.reference);
          code_scale_[i].assign(static_cast<std::size_t>(batch), step);
          if (int8)
            for (int b = 0; b < batch; ++b)
              for (std::size_t e = 0; e < in_size; ++e)
                input_codes_[b * code_row + e] = static_cast<std::uint8_t>(static_cast<int>(codes[b * in_size + e]) + 128);
        } else {
          // Dynamic: one token per sample (the whole map).
          code_scale_[i].resize(static_cast<std::size_t>(batch));
          kernels::quantize_tokens(x.data(), batch, static_cast<int>(in_size), f, codes.data(), amax.data(),
                                   int8 ? input_codes_.data() : nullptr, code_row);
#pragma omp parallel for schedule(static)
          for (int b = 0; b < batch; ++b) {
            const float scale = static_cast<float>(amax[b]) * unit_in[b] / qmax;
            for (std::size_t k = 0; k < in_size; ++k) kin_[i][b * in_size + k] = codes[b * in_size + k] * scale;
            unit[i][b] = scale * q.reference;
            code_scale_[i][b] = scale;
          }
        }
        // The array on the codes: a linear layer's batch at once; a convolution's patches chunk
        // by chunk. Accumulators exact: a float GEMM where no partial sum can round, else the
        // array's chunks of `lanes`.
        const int k = model::kernel_fan_in(l);
        const bool float_exact = kernels::float_accumulation_exact(k, f);
        const auto array = [&](const float* cols, int rows, int g, int go, std::int32_t* out) {
          std::vector<float>& acc = thread_scratch(1, static_cast<std::size_t>(rows) * go);
          const float* wg = q.codes.data() + static_cast<std::size_t>(g) * go * k;
          const arith::FixedPoint* pairs = q.requant.data() + static_cast<std::size_t>(g) * go;
          if (float_exact) {
            kernels::gemm_abt(cols, wg, rows, go, k, acc.data());
            kernels::accumulator_epilogue(acc.data(), rows, go, pairs, false, f, out);
          } else {
            thread_local std::vector<std::int64_t> acc_i;
            acc_i.resize(static_cast<std::size_t>(rows) * go);
            kernels::accumulate_exact(cols, wg, rows, go, k, lanes, f, acc_i.data());
            kernels::accumulator_epilogue(acc_i.data(), rows, go, pairs, false, f, out);
          }
        };
        // The same on byte codes, rows `lda` bytes apart: exact int32 sums (int8_accumulation_exact).
        const auto array_int8 = [&](const std::uint8_t* a, int lda, int rows, int g, int go, std::int32_t* out) {
          std::vector<std::int32_t>& acc = thread_scratch<std::int32_t>(0, static_cast<std::size_t>(rows) * go);
          const std::size_t bytes = kernels::packed_columns_bytes(go, k);
          kernels::gemm_u8s8_packed(a, lda, q.packed.data() + g * bytes, q.packed_offsets.data() + g * go, rows, go, k,
                                    acc.data(), go);
          kernels::accumulator_epilogue(acc.data(), rows, go, q.requant.data() + static_cast<std::size_t>(g) * go, false, f,
                                        out);
        };
        if (l.kind == LayerKind::Linear) {
          if (int8) array_int8(input_codes_.data(), code_row, batch, 0, l.out, y.data());
          else array(codes.data(), batch, 0, l.out, y.data());
          break;
        }
        const arith::Conv2dShape s = conv_shape(l);
        const int pixels = s.out_h() * s.out_w(), go = s.group_out(), patch_row = kernels::padded_depth(k);
        keep_patches(i, batch, s, int8);
        // The ReLUs and max pools that follow, each reading the one before.
        std::vector<PoolWindows> windows(spec_.layers.size());
        fused_end = i + 1;
        for (; fused_end < spec_.layers.size() && source_[fused_end] == fused_end - 1; ++fused_end) {
          const LayerSpec& next = spec_.layers[fused_end];
          if (next.kind != LayerKind::Relu && next.kind != LayerKind::MaxPool) break;
          const std::size_t size = static_cast<std::size_t>(batch) * next.out_shape.size();
          unit[fused_end] = unit[i];
          z_[fused_end].resize(size);
          out_[fused_end].resize(size);
          if (next.kind == LayerKind::MaxPool) {
            windows[fused_end] = pool_windows(next);
            argmax_[fused_end].resize(size);
          }
        }
        for_each_chunk(batch, [&](int, int b0, int n) {
          const int rows = n * pixels;
          thread_local std::vector<std::int32_t> part;
          part.resize(static_cast<std::size_t>(rows) * go);
          // One group: the chunk's outputs are a block of the layer's.
          std::int32_t* out = s.groups == 1 ? y.data() + b0 * out_size : part.data();
          for (int g = 0; g < s.groups; ++g) {
            if (int8) {
              std::vector<std::uint8_t>& scratch =
                  thread_scratch<std::uint8_t>(0, code_patches_[i].empty() ? static_cast<std::size_t>(rows) * patch_row : 0);
              std::uint8_t* cols =
                  code_patches_[i].empty() ? scratch.data() : kept_patches(code_patches_[i], g, b0, batch, s, patch_row);
              for (int j = 0; j < n; ++j)
                patch_runs_[i][g].gather(input_codes_.data() + static_cast<std::size_t>(b0 + j) * code_row, 128,
                                         cols + static_cast<std::size_t>(j) * pixels * patch_row, patch_row);
              array_int8(cols, patch_row, rows, g, go, out);
            } else {
              std::vector<float>& scratch_cols = thread_scratch(0, static_cast<std::size_t>(rows) * k);
              float* cols = patches_[i].empty() ? scratch_cols.data() : kept_patches(patches_[i], g, b0, batch, s, k);
              for (int j = 0; j < n; ++j)
                kernels::im2col(codes.data() + (b0 + j) * in_size, s, g, cols + static_cast<std::size_t>(j) * pixels * k);
              array(cols, rows, g, go, out);
            }
            if (s.groups > 1) scatter_group(part.data(), n, pixels, s.out_c, g, go, y.data() + b0 * out_size);
          }
          real_values(i, b0, n);
          for (std::size_t j = i + 1; j < fused_end; ++j) {
            if (spec_.layers[j].kind == LayerKind::Relu) relu_samples(j, b0, n);
            else max_pool_samples(j, windows[j], b0, n);
            real_values(j, b0, n);
          }
        });
        real_values_done = true;
        break;
      }
      case LayerKind::Relu:
#pragma omp parallel for schedule(static)
        for (int b = 0; b < batch; ++b) relu_samples(i, b, 1);
        break;
      case LayerKind::MaxPool:
      case LayerKind::AvgPool:
      case LayerKind::GlobalAvgPool: {
        const model::Shape& in = l.in_shape;
        const bool max = l.kind == LayerKind::MaxPool;
        const arith::FixedPointResult area_pair = arith::average_pool_pair(l.window, f);
        if (!max && area_pair.status != arith::FixedPointStatus::Ok)
          throw std::runtime_error(spec_.origin + ": layer " + std::to_string(i) + ": 1 / area has no pair in the " +
                                   "target's scale format");
        if (max) {
          const PoolWindows w = pool_windows(l);
          argmax_[i].resize(y.size());
#pragma omp parallel for schedule(static)
          for (int b = 0; b < batch; ++b) max_pool_samples(i, w, b, 1);
          break;
        }
        for_each_pool_output(l, batch, [&](int b, int oy, int ox, int c, std::size_t at) {
          const std::int32_t* xb = x.data() + b * in_size;
          y[at] = static_cast<std::int32_t>(arith::average_pool(
              arith::window_sum(xb, in.height, in.width, in.channels, l.window, oy, ox, c), area_pair.value, f));
        });
        break;
      }
      case LayerKind::Flatten:
        y = x;
        break;
      case LayerKind::Add: {
        // Both operands in the larger of their units (fixed: every quantizer upstream is static).
        const std::vector<std::int32_t>& r = z_[residual_[i]];
        const float unit_r = unit[residual_[i]][0], unit_out = std::max(unit_in[0], unit_r);
        const arith::FixedPointResult pa = arith::to_fixed_point(unit_in[0] / unit_out, f);
        const arith::FixedPointResult pb = arith::to_fixed_point(unit_r / unit_out, f);
        if (pa.status != arith::FixedPointStatus::Ok || pb.status != arith::FixedPointStatus::Ok)
          throw std::runtime_error(spec_.origin + ": layer " + std::to_string(i) + ": the add's operand scales " +
                                   "differ beyond the target's scale format");
        add_pairs_[i] = {pa.value, pb.value};
#pragma omp parallel for schedule(static)
        for (std::size_t k = 0; k < y.size(); ++k)
          y[k] = static_cast<std::int32_t>(arith::add_aligned(x[k], pa.value, r[k], pb.value, f));
        std::fill(unit[i].begin(), unit[i].end(), unit_out);
        break;
      }
    }
    if (!real_values_done) {
#pragma omp parallel for schedule(static)
      for (int b = 0; b < batch; ++b) real_values(i, b, 1);
    }
  }
  input_ = nullptr;  // kernel layers read kin_; no layer reads the input's real values
  return out_.back();
}

void SpecNet::keep_patches(std::size_t layer, int batch, const arith::Conv2dShape& s, bool codes) {
  const std::size_t rows = static_cast<std::size_t>(batch) * s.groups * s.out_h() * s.out_w();
  const bool keep = rows * s.patch() <= max_kept_patches_;
  if (keep && !codes) patches_[layer].resize(rows * s.patch());
  else patches_[layer].clear();
  if (keep && codes) code_patches_[layer].resize(rows * kernels::padded_depth(s.patch()));
  else code_patches_[layer].clear();
}

template <typename T>
T* SpecNet::kept_patches(std::vector<T>& kept, int g, int b0, int batch, const arith::Conv2dShape& s, int row) const {
  const std::size_t rows = (static_cast<std::size_t>(g) * batch + b0) * s.out_h() * s.out_w();
  return kept.data() + rows * row;
}

}  // namespace qathw::training
