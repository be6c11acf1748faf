#include "model_inputs.h"

#include <algorithm>
#include <memory>
#include <stdexcept>

#include "qathw/training/text.h"

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

namespace {

// The tiled validation sequences of a text corpus as a data set of count x context tokens.
training::Dataset text_sequences(const std::string& model, const std::string& data, int context) {
  const bool text = data.rfind("text:", 0) == 0;
  if (!text && data != training::kDefaultDataDir)
    throw std::invalid_argument("--data " + data + ": " + model + " is a language model: give a text corpus as " +
                                "--data text:PATH");
  const training::TextCorpus corpus = training::load_text_corpus(text ? data.substr(5) : training::kDefaultTextCorpus);
  const std::string what = corpus.source + " (validation split)";
  const training::SequenceSampler sampler(corpus.validation, context, 0, what);
  training::Dataset d;
  d.count = sampler.tiled();
  if (d.count == 0) throw training::DataError(what + ": fewer than context + 1 tokens");
  d.rows = static_cast<std::size_t>(context);
  d.cols = 1;
  d.features = d.rows;
  d.classes = training::kByteVocabulary;
  d.pixels.resize(d.count * d.features);
  d.labels.resize(d.count);  // each sequence's first target
  std::vector<std::uint8_t> targets(d.features);
  for (std::size_t i = 0; i < d.count; ++i) {
    sampler.sequence(i * d.features, d.pixels.data() + i * d.features, targets.data());
    d.labels[i] = targets[0];
  }
  d.source = what;
  return d;
}

}  // namespace

ModelInputs load_model_inputs(const std::string& model, const std::string& target, const std::string& data,
                              long samples, bool sequences) {
  std::unique_ptr<target::TargetSpec> expected;
  if (!target.empty()) expected = std::make_unique<target::TargetSpec>(target::resolve_target(target));
  ModelInputs in{model::load_bundle(model, expected.get()), {}, 0};
  if (in.bundle.sequence() && !sequences)
    throw std::invalid_argument(model + ": a sequence bundle (input: " + std::to_string(in.bundle.context) +
                                " byte tokens); this command runs bundles of images only");
  if (in.bundle.sequence()) {
    in.test = text_sequences(model, data, in.bundle.context);
    if (samples > 0 && static_cast<std::size_t>(samples) > in.test.count)
      throw std::invalid_argument("--samples: " + std::to_string(samples) + " is more than the " +
                                  std::to_string(in.test.count) + " sequences of " + in.test.source);
    in.count = samples > 0 ? static_cast<std::size_t>(samples) : in.test.count;
    return in;
  }
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
