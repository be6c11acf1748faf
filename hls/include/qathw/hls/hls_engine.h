// The HLS C++ datapath, compiled by the host compiler (C simulation), as an engine over bundles.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "qathw/model/accelerator_layers.h"
#include "qathw/model/bundle.h"

namespace qathw::hls {

// A layer top compiled for one target: hls::layer_top<T> behind a plain function.
using LayerTop = void (*)(const std::int32_t* values, int in_n, int out_n, bool relu, const std::uint8_t* weights,
                          const std::int32_t* rq_mantissa, const std::int32_t* rq_shift, std::int32_t* out);

// Every fused layer's outputs (model::accelerator_layers) of `count` samples through `top`,
// layer after layer. Throws when the graph does not map onto the layer chain.
std::vector<model::LayerOutputs> run_layers(const model::Bundle& bundle, const std::uint8_t* pixels,
                                            std::size_t count, LayerTop top);

// Why the HLS C simulation cannot run the bundle (no top built for its target, or a graph that
// does not map onto the layer chain), or nothing when it can.
std::optional<std::string> hls_unsupported(const model::Bundle& bundle);

// The top built for the bundle's target (matched by content hash); throws when there is none.
std::vector<model::LayerOutputs> run_hls(const model::Bundle& bundle, const std::uint8_t* pixels,
                                            std::size_t count);

}  // namespace qathw::hls
