// The train/validation split of a text corpus as qat-hw reads it (training/text.h), printed in the
// format of `bench/peers/bitnet_lm.py --check-split`, so the peer's re-implementation of the entry
// rules and the hash can be compared with the C++ code byte for byte:
//
//   text_split_check [PATH] [CONTEXT] [SEED]     (defaults /usr/share/games/fortunes, 64, 1)
//
// Prints one JSON object: files, each split's entries, bytes and FNV-1a 64 of its token stream,
// the tiled evaluation windows of the validation split at CONTEXT, and FNV-1a 64 of the inputs
// and targets of the first two batches of 4 that SequenceSampler(train, CONTEXT, SEED) draws.
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>
#include <vector>

#include "qathw/training/text.h"

namespace {

std::uint64_t fnv1a64(const std::vector<std::uint8_t>& bytes, std::uint64_t h = 0xcbf29ce484222325ull) {
  for (const std::uint8_t c : bytes) {
    h ^= c;
    h *= 0x100000001b3ull;
  }
  return h;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace qathw::training;
  const std::string path = argc > 1 ? argv[1] : kDefaultTextCorpus;
  const int context = argc > 2 ? std::atoi(argv[2]) : 64;
  const std::uint64_t seed = argc > 3 ? std::strtoull(argv[3], nullptr, 10) : 1;
  try {
    const TextCorpus c = load_text_corpus(path);
    SequenceSampler train(c.train, context, seed, c.source + " (train split)");
    const SequenceSampler validation(c.validation, context, seed, c.source + " (validation split)");
    std::uint64_t inputs = 0xcbf29ce484222325ull, targets = 0xcbf29ce484222325ull;
    for (int i = 0; i < 2; ++i) {
      const SequenceBatch b = train.next(4);
      inputs = fnv1a64(b.inputs, inputs);
      targets = fnv1a64(b.targets, targets);
    }
    std::printf(
        "{\"files\": %zu, \"train_entries\": %zu, \"validation_entries\": %zu, \"train_bytes\": %zu, "
        "\"validation_bytes\": %zu, \"train_fnv1a64\": \"%016" PRIx64 "\", \"validation_fnv1a64\": \"%016" PRIx64
        "\", \"context\": %d, \"validation_windows\": %zu, \"seed\": %" PRIu64
        ", \"sampler_inputs_fnv1a64\": \"%016" PRIx64 "\", \"sampler_targets_fnv1a64\": \"%016" PRIx64 "\"}\n",
        c.files.size(), c.train_entries, c.validation_entries, c.train.size(), c.validation.size(), fnv1a64(c.train),
        fnv1a64(c.validation), context, validation.tiled(), seed, inputs, targets);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "text_split_check: %s\n", e.what());
    return 1;
  }
  return 0;
}
