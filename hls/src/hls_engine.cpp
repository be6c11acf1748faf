#include "qathw/hls/hls_engine.h"

#include <stdexcept>

#include "hls_build.h"
#include "qathw/target/target_spec.h"
#include "qathw/util/process.h"

namespace qathw::hls {

// One top per built-in target, compiled in (hls/CMakeLists.txt generates the table).
struct BuiltinTop {
  const char* target;
  LayerTop top;
};
extern const BuiltinTop kBuiltinTops[];
extern const int kBuiltinTopCount;

namespace {

LayerTop builtin_top(const model::Bundle& bundle) {
  for (int i = 0; i < kBuiltinTopCount; ++i)
    if (target::content_hash(target::builtin_target(kBuiltinTops[i].target)) == bundle.target_hash)
      return kBuiltinTops[i].top;
  return nullptr;
}

}  // namespace

std::vector<model::LayerOutputs> run_layers(const model::Bundle& bundle, const std::uint8_t* pixels,
                                            std::size_t count, LayerTop top) {
  const model::AcceleratorLowering lowering = model::linear_chain(bundle.graph);
  if (lowering.unsupported) throw std::runtime_error("HLS: " + *lowering.unsupported);
  const int features = static_cast<int>(bundle.features());
  if (features > kMaxWidth) throw std::runtime_error("the HLS datapath takes layers up to " + std::to_string(kMaxWidth) + " wide");
  std::vector<std::vector<std::int32_t>> mantissa, shift;
  for (const auto& l : lowering.layers) {
    if (l.in > kMaxWidth || l.out > kMaxWidth) throw std::runtime_error("the HLS datapath takes layers up to " + std::to_string(kMaxWidth) + " wide");
    mantissa.emplace_back(kMaxWidth, 0);
    shift.emplace_back(kMaxWidth, 0);
    for (int n = 0; n < l.out; ++n) {
      mantissa.back()[n] = static_cast<std::int32_t>(l.params->requant[n].mantissa);
      shift.back()[n] = l.params->requant[n].shift;
    }
  }
  std::vector<model::LayerOutputs> outputs(count);
  std::vector<std::int32_t> values(kMaxWidth), out(kMaxWidth);
  for (std::size_t i = 0; i < count; ++i) {
    for (int k = 0; k < features; ++k) values[k] = pixels[i * features + k];
    for (std::size_t l = 0; l < lowering.layers.size(); ++l) {
      const model::AcceleratorLayer& layer = lowering.layers[l];
      top(values.data(), layer.in, layer.out, layer.relu, layer.params->packed.data(), mantissa[l].data(),
          shift[l].data(), out.data());
      outputs[i].emplace_back(out.begin(), out.begin() + layer.out);
      std::copy(out.begin(), out.begin() + layer.out, values.begin());
    }
  }
  return outputs;
}

std::optional<std::string> hls_unsupported(const model::Bundle& bundle) {
  if (!builtin_top(bundle) && !util::program_available("c++"))
    return "no HLS top for target '" + bundle.target.name + "' and no C++ compiler (c++) to build one";
  return model::linear_chain(bundle.graph).unsupported;
}

std::vector<model::LayerOutputs> run_hls(const model::Bundle& bundle, const std::uint8_t* pixels,
                                         std::size_t count) {
  LayerTop top = builtin_top(bundle);
  if (!top) top = runtime_top(bundle.target);
  return run_layers(bundle, pixels, count, top);
}

}  // namespace qathw::hls
