// What the commands that run a deployed bundle share: the bundle, checked against an optional
// target, and the test split it runs on, checked against the bundle's input shape.
#pragma once

#include <string>

#include "qathw/model/bundle.h"
#include "qathw/training/idx.h"

namespace qathw::cli {

struct ModelInputs {
  model::Bundle bundle;
  training::Dataset test;
  std::size_t count = 0;  // samples to run: the first `count` test images
};

// A --samples value: a count of at least 1, or "all" (returned as 0).
long parse_samples(const std::string& text);

// `target` empty: any target; `samples` 0: the whole test split, more than it holds: an error.
// With `sequences`, a language-model bundle is accepted: its samples are the tiled validation
// sequences of a text corpus (`data` text:PATH, or the default corpus when `data` is the image
// default), `test` then holds them as count x context tokens; without, it is refused.
ModelInputs load_model_inputs(const std::string& model, const std::string& target, const std::string& data,
                              long samples, bool sequences = false);

}  // namespace qathw::cli
