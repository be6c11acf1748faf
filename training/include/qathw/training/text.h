// Byte-level text corpora for the language model: a file or a folder of plain text (by default
// the fortune files of Debian's `fortunes`), split into entries, the entries into a training and a
// validation split by a hash of their text, and a seeded sampler of fixed-length sequences with
// next-token targets. docs/text-corpus.md states the rules.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "qathw/training/idx.h"  // DataError

namespace qathw::training {

// Tokens are bytes: the vocabulary is every byte value.
inline constexpr int kByteVocabulary = 256;

// Where Debian's fortunes package installs its fortune files.
inline const char* const kDefaultTextCorpus = "/usr/share/games/fortunes";

// One entry in this many (by the entry's hash) goes to the validation split.
inline constexpr std::uint64_t kValidationEvery = 10;

// Whether a file in a corpus folder is read: its name holds no '.', so the fortune tools' index
// (`.dat`) and UTF-8 copies (`.u8`), hidden files and other extensions are skipped.
bool is_corpus_file_name(const std::string& name);

enum class EntryFormat {
  Fortune,    // entries between lines holding only "%"
  Paragraph,  // entries between blank lines (a text without any "%" line)
};

struct TextEntries {
  EntryFormat format = EntryFormat::Paragraph;
  std::vector<std::string> entries;  // each entry's lines, every line ending in '\n'
};

// A text's entries. Lines end at '\n' (the last line may lack it; it is given one). A text with a
// line that is exactly "%" is in the fortune format, where such lines separate entries; any other
// text is split at blank lines (lines of spaces, tabs and '\r' only). Separator lines belong to no
// entry, and entries of whitespace only are dropped.
TextEntries split_entries(std::string_view text);

// The split's hash of an entry: splitmix64's finaliser of the 64-bit FNV-1a hash of its bytes.
std::uint64_t entry_hash(std::string_view entry);

// Whether an entry belongs to the validation split: entry_hash(entry) mod kValidationEvery is 0.
// The rule reads only the entry's text, so identical entries always land in the same split, and
// adding, removing or reordering files moves no other entry.
bool is_validation_entry(std::string_view entry);

struct TextCorpus {
  std::string source;               // the file or folder read, as given
  std::vector<std::string> files;   // the files read, in reading order
  // Each split's tokens: its entries in reading order, each followed by its separator line ("%\n"
  // in the fortune format, "\n" in the paragraph format).
  std::vector<std::uint8_t> train, validation;
  std::size_t train_entries = 0, validation_entries = 0;
};

// Reads a corpus: a regular file, or a folder's regular files (not its subfolders) whose names
// pass is_corpus_file_name, in byte order of their names. A file's entries follow split_entries.
// Errors (DataError) name the path: missing, neither a file nor a folder, unreadable, an empty
// file, not text (a NUL byte), a folder without corpus files, and a corpus without entries.
TextCorpus load_text_corpus(const std::filesystem::path& path);

// `batch` sequences of `context` tokens, row-major, and their targets: each input token's next
// token in the text.
struct SequenceBatch {
  int batch = 0, context = 0;
  std::vector<std::uint8_t> inputs;
  std::vector<std::uint8_t> targets;
};

// Fixed-length sequences of a token stream. A sequence starting at s holds tokens s .. s +
// context - 1 and targets s + 1 .. s + context, so the stream must hold context + 1 tokens. The
// tokens must outlive the sampler.
class SequenceSampler {
 public:
  // `what` names the stream in errors, e.g. "/usr/share/games/fortunes (validation split)".
  SequenceSampler(const std::vector<std::uint8_t>& tokens, int context, std::uint64_t seed, std::string what);

  int context() const { return context_; }
  // The number of start positions: size - context.
  std::size_t starts() const { return tokens_->size() - static_cast<std::size_t>(context_); }
  // The number of sequences at starts 0, context, 2 context, ... that fit: every token but the
  // first is a target once (the last partial window left out). For evaluation.
  std::size_t tiled() const { return (tokens_->size() - 1) / static_cast<std::size_t>(context_); }

  // The sequence starting at `start` (< starts()): context inputs and context targets.
  void sequence(std::size_t start, std::uint8_t* inputs, std::uint8_t* targets) const;

  // `batch` sequences at starts drawn uniformly from [0, starts()) by the seeded generator
  // (splitmix64, with rejection so every start is equally likely): the same seed gives the same
  // batches on every machine.
  SequenceBatch next(int batch);

 private:
  std::uint64_t draw_below(std::uint64_t bound);

  const std::vector<std::uint8_t>* tokens_;
  int context_;
  std::uint64_t state_;
};

}  // namespace qathw::training
