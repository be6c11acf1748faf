// The HLS C++ datapath, compiled by the host compiler (C simulation), as an engine over bundles.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "qathw/training/bundle.h"
#include "qathw/training/int_engine.h"

namespace qathw::hls {

// A layer top compiled for one target: hls::layer_top<T> behind a plain function.
using LayerTop = void (*)(const std::int32_t* values, int in_n, int out_n, bool relu, const std::uint8_t* weights,
                          const std::int32_t* rq_mantissa, const std::int32_t* rq_shift, std::int32_t* out);

// Every layer's outputs of `count` samples through `top`, layer after layer.
std::vector<training::LayerOutputs> run_layers(const training::Bundle& bundle, const std::uint8_t* pixels,
                                               std::size_t count, LayerTop top);

// The top built for the bundle's target (matched by content hash); throws when there is none.
std::vector<training::LayerOutputs> run_hls(const training::Bundle& bundle, const std::uint8_t* pixels,
                                            std::size_t count);

}  // namespace qathw::hls
