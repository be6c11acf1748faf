#include "accelerator.h"

#include <algorithm>
#include <cstring>

namespace qathw::sim {
namespace {

std::uint64_t ceil_div(std::uint64_t a, std::uint64_t b) { return (a + b - 1) / b; }

// An a x b array multiplier as adds: b partial products of a + b bits (b the narrower operand).
std::uint64_t multiplier_bits(std::uint64_t a, std::uint64_t b) { return a < b ? a * (a + b) : b * (a + b); }

// Cycles of the RMSNorm unit's mean: a restoring divider, one bit of the 64-bit dividend per cycle.
constexpr std::uint64_t kRmsNormDivideCycles = 64;

}  // namespace

LayerStats& LayerStats::operator+=(const LayerStats& o) {
  cycles += o.cycles;
  quantizer_cycles += o.quantizer_cycles;
  array_cycles += o.array_cycles;
  requant_cycles += o.requant_cycles;
  unit_cycles += o.unit_cycles;
  macs += o.macs;
  mac_slots += o.mac_slots;
  adds += o.adds;
  weight_read_bits += o.weight_read_bits;
  act_read_bits += o.act_read_bits;
  act_write_bits += o.act_write_bits;
  register_write_bits += o.register_write_bits;
  multiplies += o.multiplies;
  multiplier_bits += o.multiplier_bits;
  return *this;
}

std::uint8_t* Sram::at(std::size_t offset, std::size_t bytes) {
  if (offset > data_.size() || bytes > data_.size() - offset)
    throw std::runtime_error(name_ + ": access [" + std::to_string(offset) + ", +" + std::to_string(bytes) +
                             ") outside its " + std::to_string(data_.size()) + " bytes");
  return data_.data() + offset;
}

const std::uint8_t* Sram::at(std::size_t offset, std::size_t bytes) const {
  return const_cast<Sram*>(this)->at(offset, bytes);
}

arith::Conv2dShape LayerDescriptor::map() const {
  arith::Conv2dShape c;
  c.in_h = static_cast<int>(in_h);
  c.in_w = static_cast<int>(in_w);
  c.in_c = static_cast<int>(in_c);
  c.out_c = static_cast<int>(out_c);
  c.window.kernel_h = static_cast<int>(kernel_h);
  c.window.kernel_w = static_cast<int>(kernel_w);
  c.window.stride_h = static_cast<int>(stride_h);
  c.window.stride_w = static_cast<int>(stride_w);
  c.window.pad_h = static_cast<int>(pad_h);
  c.window.pad_w = static_cast<int>(pad_w);
  c.groups = static_cast<int>(groups);
  return c;
}

ActivationQuantizer::ActivationQuantizer(sc_core::sc_module_name name, const target::TargetSpec& t)
    : sc_module(name), target_(t) {}

template <typename Value, typename Code>
std::uint64_t ActivationQuantizer::quantize(const Value* values, std::uint32_t count, Code* codes, LayerStats& s,
                                            std::int64_t* amax) const {
  const arith::Format& f = target_.format;
  // Pass 1: absmax, `lanes` comparisons per cycle; the reciprocal, one mantissa bit per cycle;
  // pass 2: the codes.
  const std::int64_t a = arith::quantize_token(values, static_cast<int>(count), codes, f).amax;
  if (amax) *amax = a;
  const std::uint64_t passes = ceil_div(count, static_cast<std::uint64_t>(target_.array.lanes));
  const std::uint64_t in_bits = sizeof(Value) == 1 ? 8 : static_cast<std::uint64_t>(f.acc_bits);
  s.act_read_bits += 2 * count * in_bits;
  s.act_write_bits += static_cast<std::uint64_t>(count) * f.act_bits;
  return 2 * passes + static_cast<std::uint64_t>(f.scale_mantissa_bits);
}

template <typename Value, typename Code>
std::uint64_t ActivationQuantizer::quantize_static(const Value* values, std::uint32_t count, arith::FixedPoint pair,
                                                   Code* codes, LayerStats& s) const {
  const arith::Format& f = target_.format;
  // One pass: the calibrated pair is known, so there is no absmax and no reciprocal.
  for (std::uint32_t k = 0; k < count; ++k)
    codes[k] =
        static_cast<Code>(arith::quantize_act(static_cast<std::int64_t>(values[k]), pair, f.act_bits, f.rounding));
  const std::uint64_t in_bits = sizeof(Value) == 1 ? 8 : static_cast<std::uint64_t>(f.acc_bits);
  s.act_read_bits += count * in_bits;
  s.act_write_bits += static_cast<std::uint64_t>(count) * f.act_bits;
  return ceil_div(count, static_cast<std::uint64_t>(target_.array.lanes));
}

PeArray::PeArray(sc_core::sc_module_name name, const target::TargetSpec& t) : sc_module(name), target_(t) {}

template <typename Code>
std::int64_t PeArray::row_dot(const Code* codes, const std::int8_t* w, std::uint32_t k) const {
  const arith::Format& f = target_.format;
  const std::uint32_t lanes = static_cast<std::uint32_t>(target_.array.lanes);
  std::int64_t a = 0;
  for (std::uint32_t base = 0; base < k; base += lanes) {  // one cycle
    const std::uint32_t end = std::min(k, base + lanes);
    std::int64_t partial = 0;  // adder tree
    for (std::uint32_t i = base; i < end; ++i) partial += arith::pe_product(codes[i], w[i], f.weights);
    a = arith::accumulate(a, partial, f);
  }
  return a;
}

template <typename Code>
std::uint64_t PeArray::run_layer(const Code* codes, const std::int8_t* weights, std::uint32_t in,
                                 std::uint32_t out, std::int64_t* acc, LayerStats& s) const {
  const arith::Format& f = target_.format;
  const std::uint32_t rows = static_cast<std::uint32_t>(target_.array.rows);
  const std::uint32_t lanes = static_cast<std::uint32_t>(target_.array.lanes);
  const std::uint64_t chunks = ceil_div(in, lanes);
  std::uint64_t cycles = 0;
  for (std::uint32_t n0 = 0; n0 < out; n0 += rows) {  // one tile: up to `rows` output channels
    const std::uint32_t active = std::min(rows, out - n0);
    for (std::uint32_t r = 0; r < active; ++r)
      acc[n0 + r] = row_dot(codes, weights + static_cast<std::size_t>(n0 + r) * in, in);
    cycles += chunks;
    s.mac_slots += chunks * rows * lanes;
    s.weight_read_bits += static_cast<std::uint64_t>(active) * in * arith::code_bits(f.weights);
    s.act_read_bits += static_cast<std::uint64_t>(in) * f.act_bits;  // codes broadcast to the rows
    s.register_write_bits += static_cast<std::uint64_t>(active) * chunks * f.acc_bits;
  }
  s.macs += static_cast<std::uint64_t>(in) * out;
  s.adds += static_cast<std::uint64_t>(in) * out;  // per chunk: (len - 1) tree adds + 1 accumulator add
  return cycles;  // the adder tree and the accumulator update complete within each cycle
}

template <typename Code>
std::uint64_t PeArray::run_conv(const Code* map, const std::int8_t* weights, const arith::Conv2dShape& c,
                                std::int64_t* acc, LayerStats& s) const {
  const arith::Format& f = target_.format;
  const std::uint32_t rows = static_cast<std::uint32_t>(target_.array.rows);
  const std::uint32_t lanes = static_cast<std::uint32_t>(target_.array.lanes);
  const std::uint32_t patch = static_cast<std::uint32_t>(c.patch());
  const std::uint32_t group_out = static_cast<std::uint32_t>(c.group_out());
  const std::uint64_t chunks = ceil_div(patch, lanes);
  const int out_h = c.out_h(), out_w = c.out_w();
  std::vector<Code> window(patch);  // the patch as the address generator streams it to the lanes
  std::uint64_t cycles = 0;
  for (int g = 0; g < c.groups; ++g) {
    for (std::uint32_t n0 = 0; n0 < group_out; n0 += rows) {  // one tile: up to `rows` of the group's channels
      const std::uint32_t active = std::min(rows, group_out - n0);
      const std::uint32_t first = static_cast<std::uint32_t>(g) * group_out + n0;
      // Weight-stationary: the tile's kernels are read into the rows once, for every pixel.
      s.weight_read_bits += static_cast<std::uint64_t>(active) * patch * arith::code_bits(f.weights);
      for (int oy = 0; oy < out_h; ++oy)
        for (int ox = 0; ox < out_w; ++ox) {
          // The sliding window: padding positions give code 0 without an SRAM read.
          std::uint64_t inside = 0;
          arith::for_each_patch_element(c, oy, ox, g, [&](int k, long at) {
            window[static_cast<std::size_t>(k)] = at >= 0 ? map[at] : Code{0};
            inside += at >= 0 ? 1 : 0;
          });
          std::int64_t* pixel = acc + (static_cast<std::size_t>(oy) * out_w + ox) * c.out_c;
          for (std::uint32_t r = 0; r < active; ++r)
            pixel[first + r] = row_dot(window.data(), weights + static_cast<std::size_t>(first + r) * patch, patch);
          cycles += chunks;
          s.mac_slots += chunks * rows * lanes;
          s.act_read_bits += inside * f.act_bits;  // codes broadcast to the rows
          s.register_write_bits += static_cast<std::uint64_t>(active) * chunks * f.acc_bits;
        }
    }
  }
  const std::uint64_t products = static_cast<std::uint64_t>(out_h) * out_w * c.out_c * patch;
  s.macs += products;
  s.adds += products;
  return cycles;
}

RequantUnit::RequantUnit(sc_core::sc_module_name name, const target::TargetSpec& t) : sc_module(name), target_(t) {}

std::uint64_t RequantUnit::run(const std::int64_t* acc, const std::int32_t* pairs, std::uint32_t out,
                               std::uint32_t channels, bool relu, std::int32_t* z, LayerStats& s) const {
  const arith::Format& f = target_.format;
  for (std::uint32_t n = 0, ch = 0; n < out; ++n, ch = ch + 1 == channels ? 0 : ch + 1)
    z[n] = static_cast<std::int32_t>(
        arith::epilogue(acc[n], arith::FixedPoint{pairs[2 * ch], pairs[2 * ch + 1]}, relu, f));
#ifdef QATHW_SYSTEMC_FAULT_REQUANT
  // Injected fault (tests only): the requantization unit of a layer without ReLU is off by one
  // on channel 0.
  if (!relu && out > 0) z[0] += 1;
#endif
  s.act_write_bits += static_cast<std::uint64_t>(out) * f.acc_bits;
  // Each tile's accumulators are requantized (rows units in parallel) in the cycle after its
  // last chunk, while the array starts the next tile; only the last tile's cycle adds to the layer.
  return 1;
}

PoolUnit::PoolUnit(sc_core::sc_module_name name, const target::TargetSpec& t) : sc_module(name), target_(t) {}

std::uint64_t PoolUnit::run(const std::int32_t* map, const LayerDescriptor& d, std::int32_t* z, LayerStats& s) const {
  const arith::Format& f = target_.format;
  const arith::Conv2dShape c = d.map();
  const arith::Window& w = c.window;
  const bool average = static_cast<Opcode>(d.opcode) == Opcode::AvgPool;
  const arith::FixedPoint pair{d.pair_mantissa[0], d.pair_shift[0]};
  std::uint64_t reads = 0;
  std::size_t at = 0;
  for (int oy = 0; oy < c.out_h(); ++oy)
    for (int ox = 0; ox < c.out_w(); ++ox) {
      std::uint64_t inside = 0;  // the window's positions inside the map: the same for every channel
      arith::for_each_window_index(c.in_h, c.in_w, c.in_c, w, oy, ox, 0, [&](long) { ++inside; });
      reads += inside * static_cast<std::uint64_t>(c.in_c);
      for (int ch = 0; ch < c.in_c; ++ch) {
        const std::int64_t v =
            average ? arith::average_pool(arith::window_sum(map, c.in_h, c.in_w, c.in_c, w, oy, ox, ch), pair, f)
                    : arith::max_pool(map, c.in_h, c.in_w, c.in_c, w, oy, ox, ch);
        z[at++] = static_cast<std::int32_t>(d.relu ? arith::relu(v) : v);
      }
    }
  s.adds += reads;  // one compare (max) or add (average) per value read
  s.act_read_bits += reads * static_cast<std::uint64_t>(f.acc_bits);
  s.act_write_bits += static_cast<std::uint64_t>(d.out) * f.acc_bits;
  // The window is walked `lanes` positions per cycle, one output value after another.
  const std::uint64_t area = static_cast<std::uint64_t>(w.kernel_h) * w.kernel_w;
  return static_cast<std::uint64_t>(d.out) * ceil_div(area, static_cast<std::uint64_t>(target_.array.lanes));
}

AddUnit::AddUnit(sc_core::sc_module_name name, const target::TargetSpec& t) : sc_module(name), target_(t) {}

std::uint64_t AddUnit::run(const std::int32_t* a, const std::int32_t* b, const LayerDescriptor& d, std::int32_t* z,
                           LayerStats& s, const arith::FixedPoint* residual_pair) const {
  const arith::Format& f = target_.format;
  const arith::FixedPoint pair_a{d.pair_mantissa[0], d.pair_shift[0]};
  const arith::FixedPoint pair_b = residual_pair ? *residual_pair : arith::FixedPoint{d.pair_mantissa[1], d.pair_shift[1]};
  for (std::uint32_t k = 0; k < d.out; ++k) {
    const std::int64_t v = arith::add_aligned(a[k], pair_a, b[k], pair_b, f);
    z[k] = static_cast<std::int32_t>(d.relu ? arith::relu(v) : v);
  }
  const std::uint64_t n = d.out;
  s.adds += n;
  s.act_read_bits += 2 * n * static_cast<std::uint64_t>(f.acc_bits);
  s.act_write_bits += n * static_cast<std::uint64_t>(f.acc_bits);
  return ceil_div(n, static_cast<std::uint64_t>(target_.array.lanes));
}

TransformerUnits::TransformerUnits(sc_core::sc_module_name name, const target::TargetSpec& t)
    : sc_module(name), unit(t.vector_unit), target_(t) {}

std::uint64_t TransformerUnits::token_pair(arith::FixedPoint base, const std::int64_t* factors, std::uint32_t count,
                                           arith::FixedPoint& pair, LayerStats& s) const {
  const arith::Format& f = target_.format;
  pair = arith::token_pair(base, factors, static_cast<int>(count), f).value;
  // One mantissa x absmax multiply (and its normalisation) per factor, one after another.
  s.multiplies += count;
  s.multiplier_bits += count * multiplier_bits(static_cast<std::uint64_t>(f.scale_mantissa_bits),
                                               static_cast<std::uint64_t>(f.acc_bits));
  return count;
}

namespace {
std::int64_t table_value(const std::uint8_t* row, std::size_t k, std::size_t bytes) {
  std::uint64_t u = 0;
  for (std::size_t b = 0; b < bytes; ++b) u |= static_cast<std::uint64_t>(row[k * bytes + b]) << (8 * b);
  const unsigned bits = static_cast<unsigned>(8 * bytes);
  const std::uint64_t sign = std::uint64_t{1} << (bits - 1);
  return static_cast<std::int64_t>((u ^ sign) - sign);  // sign-extended from `bits`
}
}  // namespace

std::uint64_t TransformerUnits::embed(const std::uint8_t* token_row, const std::uint8_t* position_row,
                                      const LayerDescriptor& d, std::int32_t* z, LayerStats& s) const {
  const arith::Format& f = target_.format;
  const std::size_t tb = table_bytes(f);
  const arith::FixedPoint pair_a{d.pair_mantissa[0], d.pair_shift[0]}, pair_b{d.pair_mantissa[1], d.pair_shift[1]};
  for (std::uint32_t k = 0; k < d.out; ++k)
    z[k] = static_cast<std::int32_t>(
        arith::add_aligned(table_value(token_row, k, tb), pair_a, table_value(position_row, k, tb), pair_b, f));
  const std::uint64_t n = d.out;
  s.adds += n;
  s.weight_read_bits += 2 * n * 8 * tb;
  s.act_read_bits += 8;  // the token's byte
  s.act_write_bits += n * static_cast<std::uint64_t>(f.acc_bits);
  return ceil_div(n, static_cast<std::uint64_t>(target_.array.lanes));  // the adder's `lanes` per cycle
}

std::uint64_t TransformerUnits::rms_norm(const std::int32_t* x, const std::int32_t* gains, const LayerDescriptor& d,
                                         std::int32_t* z, LayerStats& s) const {
  const arith::Format& f = target_.format;
  const std::uint32_t n = d.out;
  const int in_bits = std::min(f.acc_bits, arith::rmsnorm_max_input_bits(static_cast<int>(n)));
  const std::uint64_t eps = static_cast<std::uint64_t>(d.eps_low) | static_cast<std::uint64_t>(d.eps_high) << 32;
  std::vector<arith::FixedPoint> g(n);
  for (std::uint32_t k = 0; k < n; ++k) g[k] = arith::FixedPoint{gains[2 * k], gains[2 * k + 1]};
  arith::rmsnorm_token(x, static_cast<int>(n), in_bits, eps, g.data(), f.acc_bits, z, f);
  const std::uint64_t N = n, I = static_cast<std::uint64_t>(in_bits), B = static_cast<std::uint64_t>(f.acc_bits);
  const std::uint64_t M = static_cast<std::uint64_t>(f.scale_mantissa_bits);
  // Squares (I x I), then per feature x times 1/rms (I x M) and the result times its gain (B x M).
  s.multiplies += 3 * N;
  s.multiplier_bits += N * (multiplier_bits(I, I) + multiplier_bits(I, M) + multiplier_bits(B, M));
  s.adds += N;  // the sum of squares
  s.weight_read_bits += N * 64;  // the gain pairs
  s.act_read_bits += 2 * N * B;  // the sum's pass and the multiplies' pass
  s.act_write_bits += N * B;
  const std::uint64_t lanes = static_cast<std::uint64_t>(unit.lanes);
  return ceil_div(N, lanes) + kRmsNormDivideCycles + static_cast<std::uint64_t>(arith::isqrt_steps(64)) + M +
         ceil_div(N, lanes);
}

std::uint64_t TransformerUnits::squared_relu(const std::int32_t* x, const LayerDescriptor& d, std::int32_t* z,
                                             LayerStats& s) const {
  const arith::Format& f = target_.format;
  for (std::uint32_t k = 0; k < d.out; ++k)
    z[k] = static_cast<std::int32_t>(arith::squared_relu(x[k], static_cast<int>(d.shift), f.acc_bits, f.rounding));
  const std::uint64_t n = d.out, B = static_cast<std::uint64_t>(f.acc_bits);
  s.multiplies += n;
  s.multiplier_bits += n * multiplier_bits(B, B);
  s.act_read_bits += n * B;
  s.act_write_bits += n * B;
  return ceil_div(n, static_cast<std::uint64_t>(unit.lanes));
}

std::uint64_t TransformerUnits::scores(const std::int8_t* q, const std::int8_t* keys, std::uint32_t t,
                                       std::uint32_t tokens, const arith::FixedPoint* pairs, const LayerDescriptor& d,
                                       std::int32_t* z, LayerStats& s) const {
  const arith::Format& f = target_.format;
  const std::uint32_t H = d.groups, D = d.in, dh = D / H, T = tokens;
  const std::uint32_t n = static_cast<std::uint32_t>(arith::causal_count(static_cast<int>(t)));
  for (std::uint32_t h = 0; h < H; ++h) {
    std::int32_t* row = z + static_cast<std::size_t>(h) * T;
    for (std::uint32_t j = 0; j < T; ++j)
      row[j] = j >= n ? 0
                      : static_cast<std::int32_t>(arith::requantize(
                            arith::vector_dot(q + h * dh, keys + static_cast<std::size_t>(j) * D + h * dh,
                                              static_cast<int>(dh), unit),
                            pairs[h], f.rounding, 32));
  }
  const std::uint64_t rows = static_cast<std::uint64_t>(H) * n, A = static_cast<std::uint64_t>(f.act_bits);
  const std::uint64_t M = static_cast<std::uint64_t>(f.scale_mantissa_bits), O = static_cast<std::uint64_t>(unit.operand_bits) + 1;
  s.multiplies += rows * dh + rows;  // the products; each score's requantization
  s.multiplier_bits += rows * dh * multiplier_bits(O, O) + rows * multiplier_bits(32, M);
  s.adds += rows * dh;
  s.act_read_bits += static_cast<std::uint64_t>(D) * A + static_cast<std::uint64_t>(n) * D * A;  // the query, the keys
  s.act_write_bits += static_cast<std::uint64_t>(H) * T * 32;  // the row, masked entries 0
  // Per head and visible key: the head's dh products `lanes` per cycle; the last score's
  // requantization after them (the others overlap the next dot product).
  return rows * ceil_div(dh, static_cast<std::uint64_t>(unit.lanes)) + 1;
}

std::uint64_t TransformerUnits::softmax(const std::int32_t* x, std::uint32_t t, std::uint32_t tokens,
                                        const LayerDescriptor& d, std::uint8_t* p, LayerStats& s) const {
  const arith::Format& f = target_.format;
  const std::uint32_t H = d.groups, T = tokens;
  const int n = arith::causal_count(static_cast<int>(t));
  const arith::Exp2Table table =
      arith::exp2_table(static_cast<int>(d.index_bits), static_cast<int>(d.value_bits), f.rounding);
  for (std::uint32_t h = 0; h < H; ++h)
    arith::softmax_row(x + static_cast<std::size_t>(h) * T, static_cast<int>(T), n, table, static_cast<int>(d.prob_bits),
                       f, p + static_cast<std::size_t>(h) * T);
  const std::uint64_t rows = H, N = static_cast<std::uint64_t>(n), M = static_cast<std::uint64_t>(f.scale_mantissa_bits);
  s.multiplies += rows * N;  // each exp value times the reciprocal
  s.multiplier_bits += rows * N * multiplier_bits(static_cast<std::uint64_t>(d.value_bits) + 1, M);
  s.adds += 2 * rows * N;  // the maximum's comparisons, the sum
  s.act_read_bits += 3 * rows * N * 32;
  s.act_write_bits += rows * T * static_cast<std::uint64_t>(d.prob_bits);
  // Per row: the maximum, the exp sum (one table lookup per lane and cycle), the reciprocal (one
  // mantissa bit per cycle), the codes (the lookup again and a multiply per lane).
  return rows * (3 * ceil_div(N, static_cast<std::uint64_t>(unit.lanes)) + M);
}

std::uint64_t TransformerUnits::attend(const std::uint8_t* p, const std::int8_t* values, std::uint32_t t,
                                       std::uint32_t tokens, const LayerDescriptor& d, std::int32_t* z,
                                       LayerStats& s) const {
  const arith::Format& f = target_.format;
  const std::uint32_t H = d.groups, D = d.out, dh = D / H, T = tokens;
  const int n = arith::causal_count(static_cast<int>(t));
  for (std::uint32_t h = 0; h < H; ++h)
    for (std::uint32_t e = 0; e < dh; ++e)
      z[h * dh + e] = static_cast<std::int32_t>(
          arith::vector_dot(p + static_cast<std::size_t>(h) * T, values + h * dh + e, n, unit, static_cast<int>(D)));
  const std::uint64_t N = static_cast<std::uint64_t>(n), A = static_cast<std::uint64_t>(f.act_bits);
  const std::uint64_t O = static_cast<std::uint64_t>(unit.operand_bits) + 1;
  s.multiplies += D * N;
  s.multiplier_bits += D * N * multiplier_bits(O, O);
  s.adds += D * N;
  s.act_read_bits += H * N * static_cast<std::uint64_t>(d.prob_bits) + N * D * A;  // the rows, the value columns
  s.act_write_bits += static_cast<std::uint64_t>(D) * static_cast<std::uint64_t>(f.acc_bits);
  // Per output feature: the row's n probabilities times the value column, `lanes` per cycle.
  return D * ceil_div(N, static_cast<std::uint64_t>(unit.lanes));
}

Accelerator::Accelerator(sc_core::sc_module_name name, const target::TargetSpec& t)
    : sc_module(name),
      socket("socket"),
      target_(t),
      period_(1.0 / t.clock_mhz, sc_core::SC_US),
      weights_("weight SRAM", static_cast<std::size_t>(t.memory.weight_sram_kib) * 1024),
      activations_("activation SRAM", static_cast<std::size_t>(t.memory.activation_sram_kib) * 1024),
      quantizer_("quantizer", t),
      array_("pe_array", t),
      requant_("requant", t),
      pool_("pool", t),
      adder_("adder", t),
      transformer_("transformer_units", t) {
  socket.register_b_transport(this, &Accelerator::b_transport);
}

void Accelerator::b_transport(tlm::tlm_generic_payload& trans, sc_core::sc_time& delay) {
  const std::uint64_t addr = trans.get_address();
  const std::size_t len = trans.get_data_length();
  std::uint8_t* data = trans.get_data_ptr();
  const bool write = trans.is_write();
  try {
    switch (addr & address::kRegionMask) {
      case address::kWeights: {
        std::uint8_t* p = weights_.at(addr - address::kWeights, len);
        if (write) {
          std::memcpy(p, data, len);
          decoded_valid_ = false;
        } else {
          std::memcpy(data, p, len);
        }
        break;
      }
      case address::kActivations: {
        std::uint8_t* p = activations_.at(addr - address::kActivations, len);
        write ? std::memcpy(p, data, len) : std::memcpy(data, p, len);
        break;
      }
      default:
        if (addr == address::kLayerCount && write && len == 4) {
          std::uint32_t n = 0;
          std::memcpy(&n, data, 4);
          layers_.assign(n, LayerDescriptor{});
          decoded_valid_ = false;
        } else if (addr == address::kTokens && write && len == 4) {
          std::memcpy(&tokens_, data, 4);
          if (tokens_ == 0) throw std::runtime_error("a sequence of 0 tokens");
        } else if (addr >= address::kDescriptors && write &&
                   (addr - address::kDescriptors) % sizeof(LayerDescriptor) == 0 && len == sizeof(LayerDescriptor) &&
                   (addr - address::kDescriptors) / sizeof(LayerDescriptor) < layers_.size()) {
          std::memcpy(&layers_[(addr - address::kDescriptors) / sizeof(LayerDescriptor)], data, len);
          decoded_valid_ = false;
        } else if (addr == address::kControl && write && len == 4) {
          run_inference(delay);
        } else {
          trans.set_response_status(tlm::TLM_ADDRESS_ERROR_RESPONSE);
          return;
        }
    }
  } catch (const std::runtime_error&) {
    trans.set_response_status(tlm::TLM_ADDRESS_ERROR_RESPONSE);
    return;
  }
  trans.set_response_status(tlm::TLM_OK_RESPONSE);
}

// The weight SRAM's packed fields as codes, decoded once per load (the decoder is combinational).
void Accelerator::decode_weights() {
  decoded_.clear();
  for (const LayerDescriptor& d : layers_) {
    std::size_t count = 0;
    if (static_cast<Opcode>(d.opcode) == Opcode::Linear) count = static_cast<std::size_t>(d.in) * d.out;
    if (static_cast<Opcode>(d.opcode) == Opcode::Conv2d) count = static_cast<std::size_t>(d.map().patch()) * d.out_c;
    const std::uint8_t* packed = weights_.at(d.weight_offset, arith::packed_bytes(count, target_.format.weights));
    std::vector<std::int8_t> codes(count);
    for (std::size_t i = 0; i < count; ++i)
      codes[i] = static_cast<std::int8_t>(arith::load_code(packed, i, target_.format.weights));
    decoded_.push_back(std::move(codes));
  }
  decoded_valid_ = true;
}

const std::int32_t* Accelerator::values(std::uint32_t offset, std::uint32_t count) {
  return reinterpret_cast<const std::int32_t*>(activations_.at(offset, 4 * std::size_t{count}));
}

// The input's codes, by the layer's static pair or the dynamic absmax quantizer.
template <typename Code>
std::uint64_t Accelerator::quantize_input(const LayerDescriptor& d, Code* codes, LayerStats& s, std::int64_t* amax) {
  const arith::FixedPoint pair{d.quant_mantissa, d.quant_shift};
  if (d.input_bits == 8) {
    const std::uint8_t* in = activations_.at(d.input_offset, d.in);
    return d.static_quantizer ? quantizer_.quantize_static(in, d.in, pair, codes, s)
                              : quantizer_.quantize(in, d.in, codes, s, amax);
  }
  const std::int32_t* in = values(d.input_offset, d.in);
  return d.static_quantizer ? quantizer_.quantize_static(in, d.in, pair, codes, s)
                            : quantizer_.quantize(in, d.in, codes, s, amax);
}

// A linear or conv2d layer: the input's codes (int8 or int16 as the target's act_bits need) into
// the scratch area, the PE array, the requantization units.
template <typename Code>
void Accelerator::run_kernel_layer(const LayerDescriptor& d, std::size_t layer, LayerStats& s) {
  const std::vector<std::int8_t>& weights = decoded_[layer];
  // A quantize layer's codes, or the input quantized into the scratch area (its absmax kept for
  // the pairs that follow the token).
  Code* codes = reinterpret_cast<Code*>(
      activations_.at(d.codes_input ? d.input_offset : d.code_offset, sizeof(Code) * std::size_t{d.in}));
  if (!d.codes_input) {
    amax_[layer].assign(1, 0);
    s.quantizer_cycles = quantize_input(d, codes, s, amax_[layer].data());
  }
  const bool conv = static_cast<Opcode>(d.opcode) == Opcode::Conv2d;
  acc_.assign(d.out, 0);
  s.array_cycles = conv ? array_.run_conv(codes, weights.data(), d.map(), acc_.data(), s)
                        : array_.run_layer(codes, weights.data(), d.in, d.out, acc_.data(), s);
  const std::uint32_t channels = conv ? d.out_c : d.out;
  const auto* pairs = reinterpret_cast<const std::int32_t*>(weights_.at(d.requant_offset, 8 * std::size_t{channels}));
  auto* z = reinterpret_cast<std::int32_t*>(activations_.at(d.output_offset, 4 * std::size_t{d.out}));
  s.requant_cycles = requant_.run(acc_.data(), pairs, d.out, channels, d.relu != 0, z, s);
}

const std::int64_t* Accelerator::factors(const LayerDescriptor& d, std::uint32_t head) {
  factor_values_.clear();
  for (std::uint32_t i = 0; i < d.factor_count && i < kMaxFactors; ++i) {
    const std::vector<std::int64_t>& a = amax_.at(d.factor_layer[i]);
    if (a.empty()) throw std::runtime_error("factor layer " + std::to_string(d.factor_layer[i]) + " has no absmax");
    factor_values_.push_back(a.size() == 1 ? a[0] : a.at(head));
  }
  return factor_values_.data();
}

// A quantize layer: codes per token (and group) by the dynamic absmax quantizer, or by its pair
// (times its factors' absmax for this token); a KV cache's token t goes to row t.
template <typename Code>
void Accelerator::run_quantize_layer(const LayerDescriptor& d, std::size_t layer, LayerStats& s) {
  const std::int32_t* x = values(d.input_offset, d.in);
  const std::size_t row = d.cache ? static_cast<std::size_t>(token_) * d.out * sizeof(Code) : 0;
  Code* y = reinterpret_cast<Code*>(activations_.at(d.output_offset + row, sizeof(Code) * std::size_t{d.out}));
  if (d.static_quantizer) {
    arith::FixedPoint pair{d.quant_mantissa, d.quant_shift};
    if (d.factor_count) s.quantizer_cycles += transformer_.token_pair(pair, factors(d, 0), d.factor_count, pair, s);
    s.quantizer_cycles += quantizer_.quantize_static(x, d.out, pair, y, s);
    return;
  }
  const std::uint32_t groups = std::max<std::uint32_t>(1, d.groups), width = d.out / groups;
  amax_[layer].assign(groups, 0);
  for (std::uint32_t g = 0; g < groups; ++g)
    s.quantizer_cycles += quantizer_.quantize(x + g * width, width, y + g * width, s, &amax_[layer][g]);
}

// A transformer layer for the current token; `seen` gets its output integers (the observation port).
void Accelerator::run_transformer_layer(const LayerDescriptor& d, std::size_t layer, std::vector<std::int32_t>& seen,
                                        LayerStats& s) {
  const arith::Format& f = target_.format;
  const std::uint32_t t = token_, T = tokens_;
  seen.resize(d.out);
  const auto int32_out = [&]() {
    return reinterpret_cast<std::int32_t*>(activations_.at(d.output_offset, 4 * std::size_t{d.out}));
  };
  const auto codes_at = [&](std::uint32_t offset, std::size_t count) {
    if (arith::act_code_bytes(f.act_bits) != 1) throw std::runtime_error("the vector unit takes codes of at most 8 bits");
    return reinterpret_cast<const std::int8_t*>(activations_.at(offset, count));
  };
  switch (static_cast<Opcode>(d.opcode)) {
    case Opcode::Embed: {
      const std::size_t row = table_bytes(f) * d.out;
      const std::uint8_t id = *activations_.at(d.input_offset + t, 1);
      s.unit_cycles = transformer_.embed(weights_.at(d.weight_offset + id * row, row),
                                         weights_.at(d.requant_offset + t * row, row), d, int32_out(), s);
      break;
    }
    case Opcode::RmsNorm: {
      const auto* gains = reinterpret_cast<const std::int32_t*>(weights_.at(d.requant_offset, 8 * std::size_t{d.out}));
      s.unit_cycles = transformer_.rms_norm(values(d.input_offset, d.in), gains, d, int32_out(), s);
      break;
    }
    case Opcode::SquaredRelu:
      s.unit_cycles = transformer_.squared_relu(values(d.input_offset, d.in), d, int32_out(), s);
      break;
    case Opcode::Quantize: {
      const std::size_t row = d.cache ? static_cast<std::size_t>(t) * d.out * arith::act_code_bytes(f.act_bits) : 0;
      if (arith::act_code_bytes(f.act_bits) == 1) {
        run_quantize_layer<std::int8_t>(d, layer, s);
        const auto* y = reinterpret_cast<const std::int8_t*>(activations_.at(d.output_offset + row, d.out));
        std::copy(y, y + d.out, seen.begin());
      } else {
        run_quantize_layer<std::int16_t>(d, layer, s);
        const auto* y = reinterpret_cast<const std::int16_t*>(activations_.at(d.output_offset + row, 2 * std::size_t{d.out}));
        std::copy(y, y + d.out, seen.begin());
      }
      return;
    }
    case Opcode::Scores: {
      // The row's pair per head: the static pair times the factors' absmax of this token and head.
      std::vector<arith::FixedPoint> pairs(d.groups);
      std::uint64_t pair_cycles = 0;
      for (std::uint32_t h = 0; h < d.groups; ++h) {
        pairs[h] = arith::FixedPoint{d.pair_mantissa[0], d.pair_shift[0]};
        pair_cycles += transformer_.token_pair(pairs[h], factors(d, h), d.factor_count, pairs[h], s);
      }
      s.unit_cycles = pair_cycles + transformer_.scores(codes_at(d.input_offset, d.in),
                                                        codes_at(d.residual_offset, std::size_t{T} * d.in), t, T,
                                                        pairs.data(), d, int32_out(), s);
      break;
    }
    case Opcode::Softmax: {
      auto* p = activations_.at(d.output_offset, d.out);
      s.unit_cycles = transformer_.softmax(values(d.input_offset, d.in), t, T, d, p, s);
      std::copy(p, p + d.out, seen.begin());
      return;
    }
    case Opcode::Attend:
      s.unit_cycles = transformer_.attend(activations_.at(d.input_offset, d.in),
                                          codes_at(d.residual_offset, std::size_t{T} * d.out), t, T, d, int32_out(), s);
      break;
    default:
      throw std::runtime_error("layer " + std::to_string(layer) + ": unknown opcode " + std::to_string(d.opcode));
  }
  const std::int32_t* z = values(d.output_offset, d.out);
  std::copy(z, z + d.out, seen.begin());
}

void Accelerator::run_inference(sc_core::sc_time& delay) {
  if (!decoded_valid_) decode_weights();
  stats_ = InferenceStats{};
  stats_.layers.assign(layers_.size(), LayerStats{});
  amax_.assign(layers_.size(), {});
  std::vector<std::int32_t> seen;
  // Token-serial, as a decoder with a KV cache: every layer for token 0, then for token 1, ...
  for (token_ = 0; token_ < tokens_; ++token_) {
    std::vector<LayerStats> token_layers;
    LayerStats token_total;
    for (std::size_t l = 0; l < layers_.size(); ++l) {
      const LayerDescriptor& d = layers_[l];
      LayerStats s;
      const std::int32_t* z = nullptr;
      switch (static_cast<Opcode>(d.opcode)) {
        case Opcode::Linear:
        case Opcode::Conv2d:
          if (arith::act_code_bytes(target_.format.act_bits) == 1)
            run_kernel_layer<std::int8_t>(d, l, s);
          else
            run_kernel_layer<std::int16_t>(d, l, s);
          z = values(d.output_offset, d.out);
          break;
        case Opcode::MaxPool:
        case Opcode::AvgPool: {
          auto* out = reinterpret_cast<std::int32_t*>(activations_.at(d.output_offset, 4 * std::size_t{d.out}));
          s.unit_cycles = pool_.run(values(d.input_offset, d.in), d, out, s);
          // An average's requantization follows the pool's last sum, one cycle.
          s.requant_cycles = static_cast<Opcode>(d.opcode) == Opcode::AvgPool ? 1 : 0;
          z = out;
          break;
        }
        case Opcode::Add: {
          auto* out = reinterpret_cast<std::int32_t*>(activations_.at(d.output_offset, 4 * std::size_t{d.out}));
          if (d.factor_count) {  // the residual's pair follows the token
            arith::FixedPoint pair{d.pair_mantissa[1], d.pair_shift[1]};
            s.unit_cycles = transformer_.token_pair(pair, factors(d, 0), d.factor_count, pair, s);
            s.unit_cycles += adder_.run(values(d.input_offset, d.in), values(d.residual_offset, d.out), d, out, s, &pair);
          } else {
            s.unit_cycles = adder_.run(values(d.input_offset, d.in), values(d.residual_offset, d.out), d, out, s);
          }
          z = out;
          break;
        }
        case Opcode::Embed:
        case Opcode::RmsNorm:
        case Opcode::Quantize:
        case Opcode::SquaredRelu:
        case Opcode::Scores:
        case Opcode::Softmax:
        case Opcode::Attend:
          run_transformer_layer(d, l, seen, s);
          z = seen.data();
          break;
        default:
          throw std::runtime_error("layer " + std::to_string(l) + ": unknown opcode " + std::to_string(d.opcode));
      }
      s.cycles = s.quantizer_cycles + s.array_cycles + s.requant_cycles + s.unit_cycles;
      if (observer_) observer_(l, z, d.out);
      // Loosely timed: the layer's time is annotated, then the initiator and the kernel synchronise.
      delay += period_ * static_cast<double>(s.cycles);
      sc_core::wait(delay);
      delay = sc_core::SC_ZERO_TIME;
      stats_.layers[l] += s;
      stats_.total += s;
      token_total += s;
      token_layers.push_back(s);
    }
    stats_.token_cycles.push_back(token_total.cycles);
    if (token_ + 1 == tokens_) {
      stats_.last_token_layers = std::move(token_layers);
      stats_.last_token = token_total;
    }
  }
}

double energy_pj(const LayerStats& s, const target::TargetSpec& t) {
  const target::Energy& e = t.energy;
  return static_cast<double>(s.adds) * t.format.acc_bits * e.add_pj_per_bit +
         static_cast<double>(s.weight_read_bits + s.act_read_bits) * e.sram_read_pj_per_bit +
         static_cast<double>(s.act_write_bits) * e.sram_write_pj_per_bit +
         static_cast<double>(s.register_write_bits) * e.register_pj_per_bit +
         static_cast<double>(s.multiplier_bits) * e.add_pj_per_bit;
}

nlohmann::json to_json(const LayerStats& s) {
  return {{"cycles", s.cycles},
          {"quantizer_cycles", s.quantizer_cycles},
          {"array_cycles", s.array_cycles},
          {"requant_cycles", s.requant_cycles},
          {"unit_cycles", s.unit_cycles},
          {"macs", s.macs},
          {"mac_slots", s.mac_slots},
          {"utilization", s.mac_slots ? static_cast<double>(s.macs) / static_cast<double>(s.mac_slots) : 0.0},
          {"adds", s.adds},
          {"weight_read_bits", s.weight_read_bits},
          {"act_read_bits", s.act_read_bits},
          {"act_write_bits", s.act_write_bits},
          {"register_write_bits", s.register_write_bits},
          {"multiplies", s.multiplies},
          {"multiplier_bits", s.multiplier_bits}};
}

}  // namespace qathw::sim
