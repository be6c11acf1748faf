#include "qathw/verify/generate.h"

#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <stdexcept>
#include <string>

#include "qathw/verify/engine_run_file.h"

namespace qathw::verify {

std::size_t next_token_window(const std::vector<std::uint8_t>& sequence, int context, std::uint8_t* window) {
  const std::size_t n = std::min(sequence.size(), static_cast<std::size_t>(context));
  std::copy(sequence.end() - static_cast<long>(n), sequence.end(), window);
  std::fill(window + n, window + context, std::uint8_t{0});
  return n - 1;
}

std::uint8_t greedy_token(const std::int32_t* logits, int vocabulary) {
  return static_cast<std::uint8_t>(std::max_element(logits, logits + vocabulary) - logits);
}

namespace {

// One engine run of one window in a child process, handed back in a file (engine_run_file.h): the
// SystemC kernel elaborates once per process, and each generated token is a run of its own.
EngineRun run_in_child(const Engine& engine, const model::Bundle& bundle, const std::uint8_t* window) {
  static std::atomic<unsigned> serial{0};
  const std::filesystem::path file = std::filesystem::temp_directory_path() /
                                     ("qathw-generate-" + std::to_string(::getpid()) + "-" + std::to_string(serial++));
  std::fflush(nullptr);
  const pid_t pid = ::fork();
  if (pid < 0) throw std::runtime_error("engine " + engine.name + ": cannot start a child process");
  if (pid == 0) {
    int code = 0;
    try {
      write_engine_run(file, engine.run(bundle, window, 1));
    } catch (const std::exception& e) {
      std::fprintf(stderr, "qat-hw: engine %s: %s\n", engine.name.c_str(), e.what());
      code = 1;
    }
    std::fflush(nullptr);
    ::_exit(code);
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0)
    if (errno != EINTR) throw std::runtime_error("engine " + engine.name + ": lost its child process");
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    std::error_code ignored;
    std::filesystem::remove(file, ignored);
    throw std::runtime_error("engine " + engine.name + " failed on a token (its child process ended with status " +
                             std::to_string(WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status)) + ")");
  }
  EngineRun run = read_engine_run(file);
  std::filesystem::remove(file);
  return run;
}

}  // namespace

Generation generate(const Engine& engine, const model::Bundle& bundle, const std::vector<std::uint8_t>& prompt,
                    int count) {
  if (!bundle.sequence())
    throw std::invalid_argument("the bundle reads images, not byte tokens: generation needs a language model "
                                "(qat-hw train --model bitnet-tiny)");
  if (prompt.empty()) throw std::invalid_argument("--prompt: give at least one byte of text");
  if (const auto why = engine.unsupported(bundle)) throw std::invalid_argument("engine " + engine.name + ": " + *why);
  const int T = bundle.context, V = bundle.classes;
  const std::size_t out_op = bundle.graph.producer(bundle.graph.output).value();
  Generation g;
  g.tokens = prompt;
  g.prompt_tokens = prompt.size();
  std::vector<std::uint8_t> window(static_cast<std::size_t>(T));
  for (int i = 0; i < count; ++i) {
    const std::size_t last = next_token_window(g.tokens, T, window.data());
    const auto t0 = std::chrono::steady_clock::now();
    EngineRun run = engine.runs_repeatedly ? engine.run(bundle, window.data(), 1)
                                           : run_in_child(engine, bundle, window.data());
    g.seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const std::vector<std::int32_t>& logits = run.outputs.at(0).at(out_op);
    if (logits.size() != static_cast<std::size_t>(T) * V)
      throw std::runtime_error("engine " + engine.name + " did not report the LM head's logits");
    g.tokens.push_back(greedy_token(logits.data() + last * V, V));
    g.stats.push_back(std::move(run.stats));
  }
  return g;
}

}  // namespace qathw::verify
