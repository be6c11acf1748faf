// Export: a trained network as the deployed model (model/): its op graph with the weights
// quantized to the target's codes and one requantization pair per output channel.
#pragma once

#include <nlohmann/json.hpp>

#include "qathw/model/bundle.h"
#include "qathw/target/target_spec.h"
#include "qathw/training/network.h"
#include "qathw/training/spec_net.h"
#include "qathw/training/transformer_net.h"

namespace qathw::training {

model::Bundle make_bundle(const Mlp& net, const target::TargetSpec& target, int rows, int cols, nlohmann::json training);

// A model file's network: model::lower_model's graph (a dynamic quantizer before each kernel).
model::Bundle make_bundle(SpecNet& net, const target::TargetSpec& target, nlohmann::json training);

// A transformer (calibrated): one sequence of `context` byte tokens per sample, the ops of
// forward_quantized in its order, with the pairs of TransformerNet::datapath (docs/transformer.md).
// Quantizes the weights for the target.
model::Bundle make_bundle(TransformerNet& net, const target::TargetSpec& target, nlohmann::json training);

}  // namespace qathw::training
