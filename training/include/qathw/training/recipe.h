// A model file's network as a training run takes it: the file's `[training]` recipe applied where
// the user set nothing, and the check that the model reads the data's images. The command line
// (`qat-hw train --model`) and sweeps (`training.model`) both use them.
#pragma once

#include <set>
#include <string>

#include "qathw/model/model_spec.h"
#include "qathw/training/idx.h"
#include "qathw/training/trainer.h"

namespace qathw::training {

// Sets each field of `config` the recipe names ("epochs", "batch", "lr", "weight_decay",
// "qat_init"), except those in `user_set`.
void apply_recipe(const model::Recipe& recipe, TrainConfig& config, const std::set<std::string>& user_set);

// Throws std::runtime_error naming the model's file and its field 'input' when the model does not
// read the images of `data` (found in `data_name`).
void check_model_input(const model::ModelSpec& m, const Dataset& data, const std::string& data_name);

}  // namespace qathw::training
