// qat-hw generate MODEL --prompt TEXT --tokens N --engine int|systemc|rtl|hls: greedy text
// generation with a language-model bundle on one engine; prints the text and tokens/s.
#include <cstdio>
#include <iostream>
#include <map>
#include <memory>

#include "commands.h"
#include "option_checks.h"
#include "qathw/model/bundle.h"
#include "qathw/target/target_spec.h"
#include "qathw/util/atomic_file.h"
#include "qathw/verify/generate.h"

namespace qathw::cli {
namespace {

struct GenerateOptions {
  std::string model;
  std::string prompt;
  int tokens = 64;
  std::string engine = "int";
  std::string target;
  std::string json;
};

int run_generate(const GenerateOptions& o) {
  std::optional<target::TargetSpec> expected;
  if (!o.target.empty()) expected = target::resolve_target(o.target);
  const model::Bundle bundle = model::load_bundle(o.model, expected ? &*expected : nullptr);
  const verify::Engine* engine = verify::find_engine(o.engine);
  if (!engine) throw std::invalid_argument("--engine " + o.engine + ": no such engine");
  const std::vector<std::uint8_t> prompt(o.prompt.begin(), o.prompt.end());
  const verify::Generation g = verify::generate(*engine, bundle, prompt, o.tokens);
  const std::string text(g.tokens.begin(), g.tokens.end());
  std::cout << text << "\n" << std::flush;
  const std::size_t generated = g.tokens.size() - g.prompt_tokens;
  const double rate = g.seconds > 0 ? static_cast<double>(generated) / g.seconds : 0;
  char line[160];
  std::snprintf(line, sizeof line, "generate: engine %s, %zu tokens in %.2f s: %.1f tokens/s\n", o.engine.c_str(),
                generated, g.seconds, rate);
  std::cerr << line;
  // The SystemC model's step of one token with the KV cache (the window full): cycles and energy,
  // by kind of layer.
  const nlohmann::json& last = g.stats.empty() ? nlohmann::json() : g.stats.back();
  if (last.is_object() && last.contains("per_token")) {
    const nlohmann::json& step = last["per_token"];
    const double cycles = step["cycles"].get<double>(), energy = step["energy_pj"].get<double>();
    std::snprintf(line, sizeof line, "generate: %s: a token step with the KV cache: %.0f cycles (%.1f us at %g MHz), %.1f nJ\n",
                  o.engine.c_str(), cycles, cycles / bundle.target.clock_mhz, bundle.target.clock_mhz, energy / 1000);
    std::cerr << line;
    std::map<std::string, std::pair<double, double>> by_kind;  // cycles, pJ
    for (const nlohmann::json& l : step["layers"]) {
      auto& k = by_kind[l["kind"].get<std::string>()];
      k.first += l["cycles"].get<double>();
      k.second += l["energy_pj"].get<double>();
    }
    for (const auto& [kind, v] : by_kind) {
      std::snprintf(line, sizeof line, "  %-14s %8.0f cycles (%4.1f%%)  %8.1f nJ (%4.1f%%)\n", kind.c_str(), v.first,
                    100 * v.first / cycles, v.second / 1000, 100 * v.second / energy);
      std::cerr << line;
    }
  }
  if (!o.json.empty()) {
    const nlohmann::json j = {{"engine", o.engine},
                              {"model", o.model},
                              {"target", bundle.target.name},
                              {"target_hash", bundle.target_hash},
                              {"prompt", std::vector<int>(g.tokens.begin(), g.tokens.begin() + static_cast<long>(g.prompt_tokens))},
                              {"tokens", std::vector<int>(g.tokens.begin() + static_cast<long>(g.prompt_tokens), g.tokens.end())},
                              {"seconds", g.seconds},
                              {"tokens_per_s", rate},
                              {"stats", g.stats}};
    util::write_file_atomic(o.json, j.dump(2) + "\n");
  }
  return kExitOk;
}

}  // namespace

void add_generate_command(CLI::App& app, int& exit_code) {
  auto o = std::make_shared<GenerateOptions>();
  auto* cmd = app.add_subcommand("generate", "Generate text with a language-model bundle on one engine (greedy)");
  cmd->add_option("model", o->model, "Bundle directory (model.qhw) of a language model")->required()->check(NonEmptyPath);
  cmd->add_option("--prompt", o->prompt, "The text to continue (bytes; at least one)")->required();
  cmd->add_option("--tokens", o->tokens, "Tokens to generate")->capture_default_str()->check(CLI::Range(1, 1 << 20));
  cmd->add_option("--engine", o->engine, "Engine: int, systemc, rtl, hls (those that run the bundle's ops)")
      ->capture_default_str()
      ->check(CLI::IsMember({"int", "systemc", "rtl", "hls"}));
  cmd->add_option("--target", o->target, "Require the bundle to be built for this target")->check(NonEmptyTarget);
  cmd->add_option("--json", o->json, "Write the prompt's and generated tokens and tokens/s as JSON to this file")
      ->check(NonEmptyPath);
  cmd->callback([o, &exit_code] { exit_code = run_generate(*o); });
}

}  // namespace qathw::cli
