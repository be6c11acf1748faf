#include "qathw/training/recipe.h"

#include <stdexcept>

namespace qathw::training {

void apply_recipe(const model::Recipe& r, TrainConfig& config, const std::set<std::string>& user_set) {
  const auto use = [&](const char* field) { return user_set.count(field) == 0; };
  if (r.epochs && use("epochs")) config.epochs = *r.epochs;
  if (r.batch && use("batch")) config.batch = *r.batch;
  if (r.lr && use("lr")) config.lr = *r.lr;
  if (r.weight_decay && use("weight_decay")) config.weight_decay = *r.weight_decay;
  if (r.qat_init && use("qat_init")) config.qat_from_fp32 = *r.qat_init == "fp32";
}

void check_model_input(const model::ModelSpec& m, const Dataset& data, const std::string& data_name) {
  if (m.input.height == static_cast<int>(data.rows) && m.input.width == static_cast<int>(data.cols) &&
      m.input.channels == 1)
    return;
  throw std::runtime_error(m.origin + ": field 'input': the model reads maps of " + std::to_string(m.input.height) +
                           "x" + std::to_string(m.input.width) + "x" + std::to_string(m.input.channels) + "; " +
                           data_name + " has images of " + std::to_string(data.rows) + "x" +
                           std::to_string(data.cols) + "x1");
}

}  // namespace qathw::training
