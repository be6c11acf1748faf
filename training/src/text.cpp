#include "qathw/training/text.h"

#include <algorithm>
#include <stdexcept>
#include <system_error>

#include "qathw/util/atomic_file.h"

namespace qathw::training {
namespace {

namespace fs = std::filesystem;

std::uint64_t splitmix64_mix(std::uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

bool is_blank(std::string_view line) {
  return std::all_of(line.begin(), line.end(), [](char c) { return c == ' ' || c == '\t' || c == '\r'; });
}

bool is_whitespace(std::string_view text) {
  return std::all_of(text.begin(), text.end(),
                     [](char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; });
}

// The text's lines without their '\n'; a final line without '\n' counts, an empty one does not.
std::vector<std::string_view> lines_of(std::string_view text) {
  std::vector<std::string_view> lines;
  std::size_t begin = 0;
  while (begin < text.size()) {
    const std::size_t end = text.find('\n', begin);
    if (end == std::string_view::npos) {
      lines.push_back(text.substr(begin));
      break;
    }
    lines.push_back(text.substr(begin, end - begin));
    begin = end + 1;
  }
  return lines;
}

std::string read_corpus_file(const fs::path& path, bool must_hold_text) {
  std::string text;
  try {
    text = util::read_file(path);
  } catch (const util::IoError& e) {
    throw DataError(e.what());
  }
  if (must_hold_text && text.empty()) throw DataError(path.string() + ": empty file");
  const std::size_t nul = text.find('\0');
  if (nul != std::string::npos)
    throw DataError(path.string() + ": not text (a NUL byte at offset " + std::to_string(nul) + ")");
  return text;
}

void append(std::vector<std::uint8_t>& tokens, std::string_view bytes) {
  tokens.insert(tokens.end(), bytes.begin(), bytes.end());
}

}  // namespace

bool is_corpus_file_name(const std::string& name) { return !name.empty() && name.find('.') == std::string::npos; }

TextEntries split_entries(std::string_view text) {
  const std::vector<std::string_view> lines = lines_of(text);
  TextEntries out;
  out.format = std::any_of(lines.begin(), lines.end(), [](std::string_view l) { return l == "%"; })
                   ? EntryFormat::Fortune
                   : EntryFormat::Paragraph;
  std::string entry;
  const auto close = [&] {
    if (!is_whitespace(entry)) out.entries.push_back(entry);
    entry.clear();
  };
  for (const std::string_view line : lines) {
    const bool separator = out.format == EntryFormat::Fortune ? line == "%" : is_blank(line);
    if (separator) {
      close();
      continue;
    }
    entry.append(line);
    entry.push_back('\n');
  }
  close();
  return out;
}

std::uint64_t entry_hash(std::string_view entry) {
  std::uint64_t h = 0xcbf29ce484222325ull;  // FNV-1a 64, as util::fnv1a64_hex
  for (const unsigned char c : entry) {
    h ^= c;
    h *= 0x100000001b3ull;
  }
  return splitmix64_mix(h);
}

bool is_validation_entry(std::string_view entry) { return entry_hash(entry) % kValidationEvery == 0; }

TextCorpus load_text_corpus(const fs::path& path) {
  TextCorpus corpus;
  corpus.source = path.string();
  std::error_code ec;
  const fs::file_status st = fs::status(path, ec);
  if (!fs::exists(st)) throw DataError(path.string() + ": no such file or folder");
  std::vector<fs::path> files;
  const bool folder = fs::is_directory(st);
  if (folder) {
    fs::directory_iterator it(path, ec);
    if (ec) throw DataError(path.string() + ": cannot list the folder: " + ec.message());
    for (const fs::directory_entry& e : it) {
      const std::string name = e.path().filename().string();
      std::error_code fec;
      if (is_corpus_file_name(name) && e.is_regular_file(fec)) files.push_back(e.path());
    }
    if (files.empty())
      throw DataError(path.string() + ": no corpus files (regular files whose names have no extension)");
    std::sort(files.begin(), files.end(),
              [](const fs::path& a, const fs::path& b) { return a.filename().string() < b.filename().string(); });
  } else if (fs::is_regular_file(st)) {
    files.push_back(path);
  } else {
    throw DataError(path.string() + ": neither a regular file nor a folder");
  }
  for (const fs::path& file : files) {
    // A file named on its own must hold text; in a folder an empty file adds no entries.
    const std::string text = read_corpus_file(file, !folder);
    const TextEntries entries = split_entries(text);
    const std::string_view separator = entries.format == EntryFormat::Fortune ? "%\n" : "\n";
    for (const std::string& entry : entries.entries) {
      const bool validation = is_validation_entry(entry);
      std::vector<std::uint8_t>& tokens = validation ? corpus.validation : corpus.train;
      append(tokens, entry);
      append(tokens, separator);
      ++(validation ? corpus.validation_entries : corpus.train_entries);
    }
    corpus.files.push_back(file.string());
  }
  if (corpus.train_entries + corpus.validation_entries == 0)
    throw DataError(path.string() + ": holds no text entries (only whitespace)");
  return corpus;
}

SequenceSampler::SequenceSampler(const std::vector<std::uint8_t>& tokens, int context, std::uint64_t seed,
                                 std::string what)
    : tokens_(&tokens), context_(context), state_(seed) {
  if (context < 1) throw std::invalid_argument("sequence context must be at least 1, got " + std::to_string(context));
  if (tokens.size() < static_cast<std::size_t>(context) + 1)
    throw DataError(what + ": " + std::to_string(tokens.size()) + " tokens, too short for one sequence of context " +
                    std::to_string(context) + " (it needs " + std::to_string(context + 1) + ")");
}

void SequenceSampler::sequence(std::size_t start, std::uint8_t* inputs, std::uint8_t* targets) const {
  const std::uint8_t* at = tokens_->data() + start;
  std::copy(at, at + context_, inputs);
  std::copy(at + 1, at + 1 + context_, targets);
}

std::uint64_t SequenceSampler::draw_below(std::uint64_t bound) {
  // Values at or above the largest multiple of bound are drawn again: each residue equally likely.
  const std::uint64_t limit = ~std::uint64_t{0} - (~std::uint64_t{0} % bound + 1) % bound;
  for (;;) {
    state_ += 0x9e3779b97f4a7c15ull;  // splitmix64
    const std::uint64_t x = splitmix64_mix(state_);
    if (x <= limit) return x % bound;
  }
}

SequenceBatch SequenceSampler::next(int batch) {
  if (batch < 1) throw std::invalid_argument("batch must be at least 1, got " + std::to_string(batch));
  SequenceBatch b;
  b.batch = batch;
  b.context = context_;
  const std::size_t n = static_cast<std::size_t>(batch) * static_cast<std::size_t>(context_);
  b.inputs.resize(n);
  b.targets.resize(n);
  for (int i = 0; i < batch; ++i) {
    const std::size_t start = static_cast<std::size_t>(draw_below(starts()));
    const std::size_t at = static_cast<std::size_t>(i) * static_cast<std::size_t>(context_);
    sequence(start, b.inputs.data() + at, b.targets.data() + at);
  }
  return b;
}

}  // namespace qathw::training
