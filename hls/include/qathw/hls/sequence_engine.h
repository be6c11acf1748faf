// The HLS C++ datapath on sequence bundles (the transformer): the graph's ops in order, each op
// token by token (attention also head by head) through one target's transformer tops
// (transformer.h), every op's output integers kept.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "qathw/hls/tops.h"
#include "qathw/model/bundle.h"

namespace qathw::hls {

// Why the transformer tops cannot run the sequence bundle: an op with no top, or a size beyond
// the tops' static bounds, naming the op (or the bundle's context) and the limit; nothing when
// they can.
std::optional<std::string> sequence_unsupported(const model::Bundle& bundle);

// Every op's outputs of `count` sequences (`bundle.context` byte tokens each) through `tops`.
// Throws when sequence_unsupported says why, or when `tops` leaves out a top the graph needs.
std::vector<model::OpOutputs> run_sequences(const model::Bundle& bundle, const std::uint8_t* tokens,
                                            std::size_t count, const Tops& tops);

// run_sequences on the tops of the bundle's target (compiled in, else built at run time).
std::vector<model::OpOutputs> run_hls_sequences(const model::Bundle& bundle, const std::uint8_t* tokens,
                                                std::size_t count);

}  // namespace qathw::hls
