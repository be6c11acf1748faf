// The HLS C++ datapath, compiled by the host compiler (C simulation), as an engine over bundles.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "qathw/hls/tops.h"
#include "qathw/model/accelerator_layers.h"
#include "qathw/model/bundle.h"

namespace qathw::hls {

// Every layer's outputs (model::accelerator_layers) of `count` samples through one target's
// tops, layer after layer, each reading the layer (or the pixels) the lowering names. Throws
// when the graph does not map onto the accelerator's layers, exceeds the tops' static sizes, or
// needs a top `tops` leaves out.
std::vector<model::LayerOutputs> run_layers(const model::Bundle& bundle, const std::uint8_t* pixels,
                                            std::size_t count, const Tops& tops);

// Why the HLS C simulation cannot run the bundle (no top built for its target, a graph that does
// not map onto the accelerator's layers, or a layer larger than the tops' static sizes, naming
// the op and the limit), or nothing when it can. A sequence bundle is asked of the transformer's
// tops (sequence_unsupported, sequence_engine.h) and runs on run_hls_sequences.
std::optional<std::string> hls_unsupported(const model::Bundle& bundle);

// The tops built for the bundle's target (matched by content hash, else built at run time), on an
// image bundle.
std::vector<model::LayerOutputs> run_hls(const model::Bundle& bundle, const std::uint8_t* pixels,
                                            std::size_t count);

}  // namespace qathw::hls
