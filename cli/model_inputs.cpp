#include "model_inputs.h"

#include <algorithm>
#include <memory>
#include <stdexcept>

namespace qathw::cli {

long parse_samples(const std::string& text) {
  if (text == "all") return 0;
  std::size_t used = 0;
  long v = 0;
  try {
    v = std::stol(text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used != text.size() || v < 1) throw std::invalid_argument("--samples: '" + text + "' is not a count or 'all'");
  return v;
}

ModelInputs load_model_inputs(const std::string& model, const std::string& target, const std::string& data,
                              long samples) {
  std::unique_ptr<target::TargetSpec> expected;
  if (!target.empty()) expected = std::make_unique<target::TargetSpec>(target::resolve_target(target));
  ModelInputs in{model::load_bundle(model, expected.get()), {}, 0};
  if (in.bundle.sequence())
    throw std::invalid_argument(model + ": a sequence bundle (input: " + std::to_string(in.bundle.context) +
                                " byte tokens); this command runs bundles of images only");
  in.test = training::load_split(data, training::Split::Test, in.bundle.classes);
  if (in.test.rows != static_cast<std::size_t>(in.bundle.rows) || in.test.cols != static_cast<std::size_t>(in.bundle.cols))
    throw training::DataError(in.test.source + ": images are " + std::to_string(in.test.rows) + "x" +
                              std::to_string(in.test.cols) + ", the bundle expects " + std::to_string(in.bundle.rows) +
                              "x" + std::to_string(in.bundle.cols));
  if (samples > 0 && static_cast<std::size_t>(samples) > in.test.count)
    throw std::invalid_argument("--samples: " + std::to_string(samples) + " is more than the " +
                                std::to_string(in.test.count) + " test images of " + in.test.source);
  in.count = samples > 0 ? static_cast<std::size_t>(samples) : in.test.count;
  return in;
}

}  // namespace qathw::cli
