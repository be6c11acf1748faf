// Text corpora (training/include/qathw/training/text.h): the entry rules, the hash split, the
// folder rules, every refused input naming its path, the sequence sampler, and the real fortune
// corpus where Debian's fortunes package is installed.
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <set>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "qathw/training/text.h"
#include "temp_dir.h"

namespace qathw::training {
namespace {

namespace fs = std::filesystem;

void write_text(const fs::path& p, const std::string& text) {
  test::write_binary(p, std::vector<unsigned char>(text.begin(), text.end()));
}

std::string message_of(const fs::path& p) {
  try {
    load_text_corpus(p);
  } catch (const DataError& e) {
    return e.what();
  }
  return "(no error)";
}

std::vector<std::uint8_t> bytes(const std::string& s) { return std::vector<std::uint8_t>(s.begin(), s.end()); }

TEST(TextEntries, FortuneFormat) {
  const TextEntries e = split_entries("First.\n%\nSecond,\n  two lines.\n%\n%\n  \n%\n%%\n% not a separator\nlast");
  EXPECT_EQ(e.format, EntryFormat::Fortune);
  const std::vector<std::string> expected = {"First.\n", "Second,\n  two lines.\n", "%%\n% not a separator\nlast\n"};
  EXPECT_EQ(e.entries, expected);  // the empty and the blank entry are dropped; the last gets its '\n'
  // A blank line inside a fortune is part of it.
  EXPECT_EQ(split_entries("a\n\nb\n%\n").entries, std::vector<std::string>{"a\n\nb\n"});
}

TEST(TextEntries, ParagraphFormat) {
  const TextEntries e = split_entries("One line,\nthen another.\n\n\nSecond.\n \t\r\nThird");
  EXPECT_EQ(e.format, EntryFormat::Paragraph);
  const std::vector<std::string> expected = {"One line,\nthen another.\n", "Second.\n", "Third\n"};
  EXPECT_EQ(e.entries, expected);
  EXPECT_TRUE(split_entries("").entries.empty());
  EXPECT_TRUE(split_entries("\n \n\t\n").entries.empty());
}

TEST(TextCorpusFiles, NamesWithoutExtension) {
  EXPECT_TRUE(is_corpus_file_name("fortunes"));
  EXPECT_TRUE(is_corpus_file_name("songs-poems"));
  EXPECT_FALSE(is_corpus_file_name("fortunes.dat"));
  EXPECT_FALSE(is_corpus_file_name("fortunes.u8"));
  EXPECT_FALSE(is_corpus_file_name(".hidden"));
  EXPECT_FALSE(is_corpus_file_name(""));
}

// The hash is fixed: FNV-1a 64 then splitmix64's finaliser. The split keeps about one entry in ten,
// and identical entries together.
TEST(TextSplit, HashRuleAndFraction) {
  EXPECT_EQ(entry_hash(""), 0xf52a15e9a9b5e89bull);
  EXPECT_EQ(entry_hash("A day for firm decisions!!!!!  Or is it?\n"), 0xe33411feb7303f05ull);
  int validation = 0;
  for (int i = 0; i < 20000; ++i) {
    const std::string entry = "entry number " + std::to_string(i) + "\n";
    validation += is_validation_entry(entry) ? 1 : 0;
    EXPECT_EQ(is_validation_entry(entry), entry_hash(entry) % 10 == 0);
  }
  EXPECT_GT(validation, 1800);
  EXPECT_LT(validation, 2200);
}

TEST(TextCorpusLoad, FileIntoSplitsWithSeparators) {
  test::TempDir dir;
  std::string text;
  std::vector<std::string> entries;
  for (int i = 0; i < 60; ++i) {
    entries.push_back("Fortune " + std::to_string(i) + ":\n\tsome words.\n");
    text += entries.back() + "%\n";
  }
  entries.push_back(entries[3]);  // a duplicate goes where its twin went
  text += entries.back() + "%\n";
  write_text(dir / "corpus.txt", text);  // a file named on its own may have any name
  const TextCorpus c = load_text_corpus(dir / "corpus.txt");
  std::string train, validation;
  std::size_t nv = 0;
  for (const std::string& e : entries) {
    (is_validation_entry(e) ? validation : train) += e + "%\n";
    nv += is_validation_entry(e) ? 1 : 0;
  }
  ASSERT_GT(nv, 0u);  // the fixed texts above put some entries in each split
  EXPECT_EQ(c.train, bytes(train));
  EXPECT_EQ(c.validation, bytes(validation));
  EXPECT_EQ(c.validation_entries, nv);
  EXPECT_EQ(c.train_entries, entries.size() - nv);
  EXPECT_EQ(c.files, std::vector<std::string>{(dir / "corpus.txt").string()});
  EXPECT_EQ(c.source, (dir / "corpus.txt").string());
}

TEST(TextCorpusLoad, FolderReadsFilesWithoutExtensionInNameOrder) {
  test::TempDir dir;
  write_text(dir / "b", "Bee one\n%\nBee two\n%\n");
  write_text(dir / "a", "Para one.\n\nPara two.\n");
  write_text(dir / "empty", "");                                          // adds nothing
  test::write_binary(dir / "a.dat", {0, 0, 0, 2, 0, 0, 0, 1});           // binary index: skipped
  write_text(dir / "a.u8", "not read\n%\n");
  write_text(dir / ".hidden", "not read\n");
  fs::create_directories(dir / "sub");
  write_text(dir / "sub" / "c", "not read either\n");
  const TextCorpus c = load_text_corpus(dir.path());
  const std::vector<std::string> files = {(dir / "a").string(), (dir / "b").string(), (dir / "empty").string()};
  EXPECT_EQ(c.files, files);
  EXPECT_EQ(c.train_entries + c.validation_entries, 4u);
  std::string all(c.train.begin(), c.train.end());
  all.append(c.validation.begin(), c.validation.end());
  for (const char* piece : {"Para one.\n\n", "Para two.\n\n", "Bee one\n%\n", "Bee two\n%\n"})
    EXPECT_NE(all.find(piece), std::string::npos) << piece;
  EXPECT_EQ(all.find("not read"), std::string::npos);
  EXPECT_EQ(all.size(), std::string("Para one.\n\nPara two.\n\nBee one\n%\nBee two\n%\n").size());
}

TEST(TextCorpusLoad, RefusalsNameThePath) {
  test::TempDir dir;
  const fs::path missing = dir / "missing";
  EXPECT_EQ(message_of(missing), missing.string() + ": no such file or folder");
  write_text(dir / "empty", "");
  EXPECT_EQ(message_of(dir / "empty"), (dir / "empty").string() + ": empty file");
  write_text(dir / "binary", std::string("text\0more", 9));
  EXPECT_EQ(message_of(dir / "binary"), (dir / "binary").string() + ": not text (a NUL byte at offset 4)");
  write_text(dir / "blank", "\n  \n%\n\t\n");
  EXPECT_EQ(message_of(dir / "blank"), (dir / "blank").string() + ": holds no text entries (only whitespace)");
  // In a folder, the offending file is named.
  test::TempDir folder;
  write_text(folder / "good", "fine\n");
  write_text(folder / "bad", std::string("\0", 1));
  EXPECT_EQ(message_of(folder.path()), (folder / "bad").string() + ": not text (a NUL byte at offset 0)");
  test::TempDir only_index;
  test::write_binary(only_index / "x.dat", {1, 2, 3});
  EXPECT_EQ(message_of(only_index.path()),
            only_index.path().string() + ": no corpus files (regular files whose names have no extension)");
  test::TempDir whitespace;
  write_text(whitespace / "w", " \n");
  EXPECT_EQ(message_of(whitespace.path()), whitespace.path().string() + ": holds no text entries (only whitespace)");
  ASSERT_EQ(::mkfifo((dir / "fifo").c_str(), 0600), 0);
  EXPECT_NE(message_of(dir / "fifo").find((dir / "fifo").string() + ": neither a regular file nor a folder"),
            std::string::npos);
  write_text(dir / "locked", "secret\n");
  fs::permissions(dir / "locked", fs::perms::none);
  if (::geteuid() != 0) {  // root reads it regardless
    const std::string m = message_of(dir / "locked");
    EXPECT_EQ(m.rfind((dir / "locked").string() + ": cannot open", 0), 0u) << m;
  }
}

TEST(SequenceSampler, SequencesAndTargets) {
  std::vector<std::uint8_t> tokens;
  for (int i = 0; i < 20; ++i) tokens.push_back(static_cast<std::uint8_t>(100 + i));
  SequenceSampler s(tokens, 4, 7, "twenty tokens");
  EXPECT_EQ(s.starts(), 16u);
  EXPECT_EQ(s.tiled(), 4u);  // starts 0, 4, 8, 12: targets 1 .. 16; 17 .. 19 need a partial window
  std::uint8_t in[4], out[4];
  s.sequence(15, in, out);  // the last start
  EXPECT_EQ(std::vector<std::uint8_t>(in, in + 4), (std::vector<std::uint8_t>{115, 116, 117, 118}));
  EXPECT_EQ(std::vector<std::uint8_t>(out, out + 4), (std::vector<std::uint8_t>{116, 117, 118, 119}));
}

TEST(SequenceSampler, SeededUniformStarts) {
  std::vector<std::uint8_t> tokens;
  for (int i = 0; i < 21; ++i) tokens.push_back(static_cast<std::uint8_t>(i));
  SequenceSampler a(tokens, 5, 42, "t"), b(tokens, 5, 42, "t"), c(tokens, 5, 43, "t");
  std::vector<int> seen(a.starts(), 0);
  bool differs = false;
  for (int round = 0; round < 200; ++round) {
    const SequenceBatch x = a.next(8), y = b.next(8), z = c.next(8);
    ASSERT_EQ(x.inputs, y.inputs);
    ASSERT_EQ(x.targets, y.targets);
    differs = differs || x.inputs != z.inputs;
    ASSERT_EQ(x.inputs.size(), 40u);
    for (int i = 0; i < 8; ++i) {
      const int start = x.inputs[static_cast<std::size_t>(i) * 5];
      ++seen[static_cast<std::size_t>(start)];
      for (int t = 0; t < 5; ++t) {
        ASSERT_EQ(x.inputs[static_cast<std::size_t>(i) * 5 + t], start + t);
        ASSERT_EQ(x.targets[static_cast<std::size_t>(i) * 5 + t], start + t + 1);
      }
    }
  }
  EXPECT_TRUE(differs);
  for (std::size_t s = 0; s < seen.size(); ++s) {  // 1600 draws over 16 starts: about 100 each
    EXPECT_GT(seen[s], 50) << s;
    EXPECT_LT(seen[s], 150) << s;
  }
}

TEST(SequenceSampler, TooShortForOneSequence) {
  const std::vector<std::uint8_t> tokens(64, 'x');
  EXPECT_NO_THROW(SequenceSampler(tokens, 63, 1, "t"));
  try {
    SequenceSampler(tokens, 64, 1, "/data/corpus (validation split)");
    FAIL() << "no error";
  } catch (const DataError& e) {
    EXPECT_STREQ(e.what(),
                 "/data/corpus (validation split): 64 tokens, too short for one sequence of context 64 (it needs 65)");
  }
  EXPECT_THROW(SequenceSampler(tokens, 0, 1, "t"), std::invalid_argument);
}

// The real corpus: every file without an extension, about one entry in ten for validation, the
// same result on a second read, and sequences of a context of 256 from both splits.
TEST(TextCorpusFortunes, LoadsAndSamples) {
  if (!fs::is_directory(kDefaultTextCorpus))
    GTEST_SKIP() << kDefaultTextCorpus << " is absent (Debian package fortunes, listed in scripts/debian-packages.txt)";
  const TextCorpus c = load_text_corpus(kDefaultTextCorpus);
  std::size_t expected_files = 0;
  for (const auto& e : fs::directory_iterator(kDefaultTextCorpus))
    expected_files += e.is_regular_file() && is_corpus_file_name(e.path().filename().string()) ? 1 : 0;
  EXPECT_EQ(c.files.size(), expected_files);
  for (const std::string& f : c.files) EXPECT_EQ(fs::path(f).filename().string().find('.'), std::string::npos) << f;
  const double entries = static_cast<double>(c.train_entries + c.validation_entries);
  EXPECT_GT(entries, 1000);
  const double fraction = static_cast<double>(c.validation_entries) / entries;
  EXPECT_GT(fraction, 0.08);
  EXPECT_LT(fraction, 0.12);
  EXPECT_EQ(std::count(c.train.begin(), c.train.end(), 0), 0);
  const TextCorpus again = load_text_corpus(kDefaultTextCorpus);
  EXPECT_EQ(again.train, c.train);
  EXPECT_EQ(again.validation, c.validation);
  SequenceSampler train(c.train, 256, 1, c.source + " (train split)");
  SequenceSampler validation(c.validation, 256, 1, c.source + " (validation split)");
  const SequenceBatch b = train.next(4);
  EXPECT_EQ(b.inputs.size(), 4u * 256);
  EXPECT_GT(validation.tiled(), 100u);
  std::printf("fortunes: %zu files, %zu train entries (%zu bytes), %zu validation entries (%zu bytes)\n",
              c.files.size(), c.train_entries, c.train.size(), c.validation_entries, c.validation.size());
}

}  // namespace
}  // namespace qathw::training
