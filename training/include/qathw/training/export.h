// Export: a trained MLP as the deployed model (model/): its op graph with the weights quantized
// to the target's codes and one requantization pair per output channel.
#pragma once

#include <nlohmann/json.hpp>

#include "qathw/model/bundle.h"
#include "qathw/target/target_spec.h"
#include "qathw/training/network.h"

namespace qathw::training {

model::Bundle make_bundle(const Mlp& net, const target::TargetSpec& target, int rows, int cols, nlohmann::json training);

}  // namespace qathw::training
