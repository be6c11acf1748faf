#include "qathw/profile/profile.h"

#include <algorithm>
#include <stdexcept>

#include "qathw/arith.h"
#include "qathw/model/int_engine.h"

namespace qathw::profile {
namespace {

std::uint64_t unsigned_magnitude(std::int64_t v) {
  // Negating in unsigned arithmetic: defined for every int64_t, INT64_MIN included.
  return v < 0 ? std::uint64_t{0} - static_cast<std::uint64_t>(v) : static_cast<std::uint64_t>(v);
}

// What one thread has seen of one layer. Every field is merged with + or max, so the totals do
// not depend on how samples were split between threads, nor on the order of merging.
struct LayerTally {
  std::int64_t lowest = 0, highest = 0;
  std::uint64_t overflows = 0, accumulations = 0;
  Histogram accumulators;
  std::int64_t act_max = 0;
  Histogram activations;
};

void merge(Histogram& into, const Histogram& from) {
  if (into.magnitude_bits.size() < from.magnitude_bits.size()) into.magnitude_bits.resize(from.magnitude_bits.size(), 0);
  for (std::size_t b = 0; b < from.magnitude_bits.size(); ++b) into.magnitude_bits[b] += from.magnitude_bits[b];
}

void merge(LayerTally& into, const LayerTally& from) {
  into.lowest = std::min(into.lowest, from.lowest);
  into.highest = std::max(into.highest, from.highest);
  into.overflows += from.overflows;
  into.accumulations += from.accumulations;
  merge(into.accumulators, from.accumulators);
  into.act_max = std::max(into.act_max, from.act_max);
  merge(into.activations, from.activations);
}

// A kernel op of the graph (linear or conv2d) with the quantize op that feeds it.
struct Kernel {
  std::size_t quantize_op = 0, op = 0;
  arith::Conv2dShape conv{};  // conv2d; a linear op is one 1 x 1 "pixel" of in inputs
  bool is_conv = false;
  int in = 0, out = 0, pixels = 1;
  std::vector<std::int8_t> codes;  // out x in
};

std::vector<Kernel> kernels_of(const model::Graph& g) {
  std::vector<Kernel> ks;
  for (std::size_t i = 0; i < g.ops.size(); ++i) {
    const model::Op& op = g.ops[i];
    if (op.type != model::OpType::Linear && op.type != model::OpType::Conv2d) continue;
    Kernel k;
    k.op = i;
    k.quantize_op = g.producer(op.input).value();
    k.is_conv = op.type == model::OpType::Conv2d;
    k.in = op.linear.in;
    k.out = op.linear.out;
    if (k.is_conv) {
      k.conv = op.conv_shape(g.tensor(op.input));
      k.pixels = k.conv.out_h() * k.conv.out_w();
    }
    k.codes = op.linear.codes();
    ks.push_back(std::move(k));
  }
  return ks;
}

// One sample: every op's integers from the integer engine, then each kernel op's dot products
// again with their full-precision running sums (lanes-wide partial sums accumulated under the
// overflow rule, as the array does), tallied with the input codes.
void profile_sample(const model::Bundle& bundle, const model::IntEngine& engine, const std::vector<Kernel>& kernels,
                    const std::uint8_t* pixels, std::vector<LayerTally>& tallies) {
  const arith::Format& f = bundle.target.format;
  const int lanes = bundle.target.array.lanes;
  const std::int64_t acc_lo = arith::signed_min(f.acc_bits), acc_hi = arith::signed_max(f.acc_bits);
  const model::OpOutputs ops = engine.run(pixels);
  std::vector<std::int32_t> patch;
  for (std::size_t l = 0; l < kernels.size(); ++l) {
    const Kernel& k = kernels[l];
    LayerTally& t = tallies[l];
    const std::vector<std::int32_t>& x = ops[k.quantize_op];
    for (const std::int32_t code : x) {
      t.act_max = std::max(t.act_max, arith::magnitude(code));
      record(t.activations, code);
    }
    const int groups = k.is_conv ? k.conv.groups : 1;
    const int go = k.out / groups;
    patch.resize(static_cast<std::size_t>(k.in));
    for (int p = 0; p < k.pixels; ++p)
      for (int g = 0; g < groups; ++g) {
        if (k.is_conv) arith::conv_patch(x.data(), k.conv, p / k.conv.out_w(), p % k.conv.out_w(), g, patch.data());
        else std::copy(x.begin(), x.end(), patch.begin());
        for (int n = g * go; n < (g + 1) * go; ++n) {
          arith::RunningRange range;
          arith::dot(patch.data(), k.codes.data() + static_cast<std::size_t>(n) * k.in, k.in, lanes, f, &range);
          t.lowest = std::min(t.lowest, range.lowest);
          t.highest = std::max(t.highest, range.highest);
          if (range.lowest < acc_lo || range.highest > acc_hi) ++t.overflows;
          ++t.accumulations;
          record(t.accumulators, std::max(range.highest, -range.lowest));
        }
      }
  }
}

}  // namespace

int magnitude_bits(std::int64_t v) { return arith::bit_length(unsigned_magnitude(v)); }

int signed_bits(std::int64_t v) {
  // v >= 0 needs its magnitude bits and a sign bit; v < 0 needs the bits of -v - 1 (= ~v) and one.
  return arith::bit_length(v < 0 ? static_cast<std::uint64_t>(~v) : static_cast<std::uint64_t>(v)) + 1;
}

void record(Histogram& histogram, std::int64_t v) {
  const std::size_t b = static_cast<std::size_t>(magnitude_bits(v));
  if (histogram.magnitude_bits.size() <= b) histogram.magnitude_bits.resize(b + 1, 0);
  ++histogram.magnitude_bits[b];
}

Profile profile_bundle(const model::Bundle& bundle, const std::uint8_t* pixels, std::size_t count) {
  const arith::Format& f = bundle.target.format;
  const std::size_t features = bundle.features();
  const std::vector<Kernel> layers = kernels_of(bundle.graph);
  if (layers.empty()) throw std::invalid_argument("profile: the graph has no linear or conv2d op");
  const model::IntEngine engine(bundle);

  std::vector<LayerTally> totals(layers.size());
#pragma omp parallel
  {
    std::vector<LayerTally> local(layers.size());
#pragma omp for schedule(dynamic, 16) nowait
    for (long i = 0; i < static_cast<long>(count); ++i)
      profile_sample(bundle, engine, layers, pixels + static_cast<std::size_t>(i) * features, local);
#pragma omp critical(qathw_profile_merge)
    for (std::size_t l = 0; l < local.size(); ++l) merge(totals[l], local[l]);
  }

  Profile p;
  p.samples = count;
  const std::int64_t qmax = arith::act_qmax(f.act_bits);
  for (std::size_t l = 0; l < layers.size(); ++l) {
    const Kernel& layer = layers[l];
    LayerTally& t = totals[l];
    LayerProfile lp;
    lp.layer = static_cast<int>(l);
    lp.in = layer.in;
    lp.out = layer.out;
    lp.acc_bits = f.acc_bits;
    lp.act_bits = f.act_bits;
    // The bound: every running sum of channel n is at most sum_k |w_nk| * qmax in magnitude,
    // whatever the data, since every activation code lies in [-qmax, qmax].
    for (int n = 0; n < layer.out; ++n) {
      std::int64_t abs_weights = 0;
      const std::int8_t* w = layer.codes.data() + static_cast<std::size_t>(n) * layer.in;
      for (int k = 0; k < layer.in; ++k) abs_weights += arith::magnitude(w[k]);
      lp.bound_acc_max = std::max(lp.bound_acc_max, abs_weights * qmax);
    }
    lp.provable_acc_bits = signed_bits(lp.bound_acc_max);
    lp.observed_acc_lowest = t.lowest;
    lp.observed_acc_highest = t.highest;
    lp.observed_acc_max = std::max(t.highest, -t.lowest);
    lp.observed_acc_bits = t.accumulations > 0 ? std::max(signed_bits(t.lowest), signed_bits(t.highest)) : 0;
    lp.overflows = t.overflows;
    lp.accumulations = t.accumulations;
    lp.accumulators = std::move(t.accumulators);
    lp.observed_act_max = t.act_max;
    lp.activations = std::move(t.activations);
    p.observed_acc_bits = std::max(p.observed_acc_bits, lp.observed_acc_bits);
    p.provable_acc_bits = std::max(p.provable_acc_bits, lp.provable_acc_bits);
    p.layers.push_back(std::move(lp));
  }
  return p;
}

nlohmann::json to_json(const Profile& profile) {
  nlohmann::json layers = nlohmann::json::array();
  for (const LayerProfile& l : profile.layers) {
    layers.push_back({{"layer", l.layer},
                      {"in", l.in},
                      {"out", l.out},
                      {"acc_bits", l.acc_bits},
                      {"observed_acc_max", l.observed_acc_max},
                      {"observed_acc_lowest", l.observed_acc_lowest},
                      {"observed_acc_highest", l.observed_acc_highest},
                      {"observed_acc_bits", l.observed_acc_bits},
                      {"bound_acc_max", l.bound_acc_max},
                      {"provable_acc_bits", l.provable_acc_bits},
                      {"overflows", l.overflows},
                      {"accumulations", l.accumulations},
                      {"accumulators", {{"magnitude_bits", l.accumulators.magnitude_bits}}},
                      {"act_bits", l.act_bits},
                      {"observed_act_max", l.observed_act_max},
                      {"activations", {{"magnitude_bits", l.activations.magnitude_bits}}}});
  }
  return {{"samples", profile.samples},
          {"observed_acc_bits", profile.observed_acc_bits},
          {"provable_acc_bits", profile.provable_acc_bits},
          {"layers", std::move(layers)}};
}

Profile profile_from_json(const nlohmann::json& json) {
  Profile p;
  p.samples = json.at("samples").get<std::size_t>();
  p.observed_acc_bits = json.at("observed_acc_bits").get<int>();
  p.provable_acc_bits = json.at("provable_acc_bits").get<int>();
  for (const nlohmann::json& j : json.at("layers")) {
    LayerProfile l;
    l.layer = j.at("layer").get<int>();
    l.in = j.at("in").get<int>();
    l.out = j.at("out").get<int>();
    l.acc_bits = j.at("acc_bits").get<int>();
    l.observed_acc_max = j.at("observed_acc_max").get<std::int64_t>();
    l.observed_acc_lowest = j.at("observed_acc_lowest").get<std::int64_t>();
    l.observed_acc_highest = j.at("observed_acc_highest").get<std::int64_t>();
    l.observed_acc_bits = j.at("observed_acc_bits").get<int>();
    l.bound_acc_max = j.at("bound_acc_max").get<std::int64_t>();
    l.provable_acc_bits = j.at("provable_acc_bits").get<int>();
    l.overflows = j.at("overflows").get<std::uint64_t>();
    l.accumulations = j.at("accumulations").get<std::uint64_t>();
    l.accumulators.magnitude_bits = j.at("accumulators").at("magnitude_bits").get<std::vector<std::uint64_t>>();
    l.act_bits = j.at("act_bits").get<int>();
    l.observed_act_max = j.at("observed_act_max").get<std::int64_t>();
    l.activations.magnitude_bits = j.at("activations").at("magnitude_bits").get<std::vector<std::uint64_t>>();
    p.layers.push_back(std::move(l));
  }
  return p;
}

bool operator==(const Histogram& a, const Histogram& b) { return a.magnitude_bits == b.magnitude_bits; }

bool operator==(const LayerProfile& a, const LayerProfile& b) {
  return a.layer == b.layer && a.in == b.in && a.out == b.out && a.acc_bits == b.acc_bits &&
         a.observed_acc_max == b.observed_acc_max && a.observed_acc_bits == b.observed_acc_bits &&
         a.bound_acc_max == b.bound_acc_max && a.provable_acc_bits == b.provable_acc_bits &&
         a.overflows == b.overflows && a.accumulators == b.accumulators && a.act_bits == b.act_bits &&
         a.observed_act_max == b.observed_act_max && a.activations == b.activations &&
         a.observed_acc_lowest == b.observed_acc_lowest && a.observed_acc_highest == b.observed_acc_highest &&
         a.accumulations == b.accumulations;
}

bool operator==(const Profile& a, const Profile& b) {
  return a.layers == b.layers && a.samples == b.samples && a.observed_acc_bits == b.observed_acc_bits &&
         a.provable_acc_bits == b.provable_acc_bits;
}

}  // namespace qathw::profile
