// Text generation with a language-model bundle on any engine: greedy decoding, one engine run per
// new token, so that every engine that runs the bundle produces the same tokens.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "qathw/model/bundle.h"
#include "qathw/verify/engine.h"

namespace qathw::verify {

struct Generation {
  std::vector<std::uint8_t> tokens;  // the prompt's, then the generated ones
  std::size_t prompt_tokens = 0;
  double seconds = 0;  // the engine runs of the generated tokens
  nlohmann::json stats = nlohmann::json::array();  // per generated token, the engine's figures (cycles)
};

// The window of a next-token prediction: the last `context` tokens of `sequence`, then zeros up to
// `context` (causal attention: positions after the last never reach it). Returns the position whose
// logits predict the next token.
std::size_t next_token_window(const std::vector<std::uint8_t>& sequence, int context, std::uint8_t* window);

// The next token from one position's logit integers: the largest, the lowest index on ties.
std::uint8_t greedy_token(const std::int32_t* logits, int vocabulary);

// `count` tokens after `prompt` (at least one token), each from the engine's LM head integers at
// the last position. Throws std::invalid_argument for a bundle that is no language model, an
// empty prompt or an engine that cannot run the bundle (naming why).
Generation generate(const Engine& engine, const model::Bundle& bundle, const std::vector<std::uint8_t>& prompt,
                    int count);

}  // namespace qathw::verify
