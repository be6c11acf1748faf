#include "qathw/training/checkpoint.h"

#include <zlib.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <limits>
#include <stdexcept>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "qathw/util/atomic_file.h"
#include "qathw/util/json_fields.h"

namespace qathw::training {
namespace {

constexpr char kMagic[8] = {'Q', 'A', 'T', 'H', 'W', 'C', 'K', '1'};

// Most bytes of the JSON header: a few hundred for any real network.
constexpr std::uint64_t kMaxHeader = std::uint64_t{1} << 20;

// Most inputs or outputs of a layer (a bundle's widest tensor).
constexpr std::int64_t kMaxWidth = std::int64_t{1} << 26;

// Reads header fields with exact types; every error names the file and the field.
class Fields : public util::JsonFields<std::runtime_error> {
 public:
  explicit Fields(std::string file) : JsonFields(std::move(file), "header") {}

  double seconds(const nlohmann::json& j, const char* key, const std::string& field) const {
    const nlohmann::json& v = at(j, key, field);
    if (!v.is_number() || !std::isfinite(v.get<double>()) || v.get<double>() < 0)
      fail(field, "must be a finite number of seconds >= 0, not " + shown(v));
    return v.get<double>();
  }
};

void append(std::string& out, const void* data, std::size_t bytes) {
  out.append(static_cast<const char*>(data), bytes);
}

void append_floats(std::string& out, const std::vector<float>& v) { append(out, v.data(), v.size() * sizeof(float)); }

std::uint32_t crc_of(const char* data, std::size_t bytes) {
  uLong crc = crc32(0L, Z_NULL, 0);
  while (bytes > 0) {
    const uInt chunk = static_cast<uInt>(std::min<std::size_t>(bytes, 1u << 30));
    crc = crc32(crc, reinterpret_cast<const Bytef*>(data), chunk);
    data += chunk;
    bytes -= chunk;
  }
  return static_cast<std::uint32_t>(crc);
}

}  // namespace

void save_checkpoint(const std::filesystem::path& path, const Checkpoint& c) {
  nlohmann::json header = {{"fingerprint", c.fingerprint},
                           {"epochs_done", c.epochs_done},
                           {"step", c.step},
                           {"train_seconds", c.train_seconds},
                           {"layers", nlohmann::json::array()}};
  for (const Layer& l : c.net.layers) header["layers"].push_back({{"in", l.in}, {"out", l.out}, {"relu", l.relu}});
  const std::string text = header.dump();
  std::string out;
  append(out, kMagic, sizeof kMagic);
  const std::uint64_t length = text.size();
  append(out, &length, sizeof length);
  out += text;
  for (std::size_t l = 0; l < c.net.layers.size(); ++l) {
    append_floats(out, c.net.layers[l].w);
    append_floats(out, c.adam_m[l]);
    append_floats(out, c.adam_v[l]);
  }
  const std::uint32_t crc = crc_of(out.data(), out.size());
  append(out, &crc, sizeof crc);
  util::write_file_atomic(path, out);
}

std::optional<Checkpoint> load_checkpoint(const std::filesystem::path& path, const std::string& fingerprint,
                                          const CheckpointExpectation& expect) {
  if (!std::filesystem::exists(path)) return std::nullopt;
  const std::string where = path.string() + ": ";
  // With the run's network known, the file's size is too (its header aside): read no more.
  std::uint64_t limit = util::kDefaultReadLimit;
  if (expect.net) {
    limit = sizeof kMagic + 8 + kMaxHeader + 4;
    for (const Layer& l : expect.net->layers) limit += 3 * l.w.size() * sizeof(float);
  }
  const std::string bytes = util::read_file(path, limit);
  if (bytes.size() < sizeof kMagic + 8 + 4 || std::memcmp(bytes.data(), kMagic, sizeof kMagic) != 0)
    throw std::runtime_error(where + "not a qat-hw checkpoint");
  std::uint32_t stored_crc = 0;
  std::memcpy(&stored_crc, bytes.data() + bytes.size() - 4, 4);
  if (crc_of(bytes.data(), bytes.size() - 4) != stored_crc)
    throw std::runtime_error(where + "checksum mismatch: the checkpoint is corrupt or truncated");
  std::uint64_t length = 0;
  std::memcpy(&length, bytes.data() + sizeof kMagic, 8);
  std::size_t pos = sizeof kMagic + 8;
  if (length > bytes.size() - pos - 4 || length > kMaxHeader)
    throw std::runtime_error(where + "header length " + std::to_string(length) + " is beyond the file's " +
                             std::to_string(bytes.size()) + " bytes or the " + std::to_string(kMaxHeader) +
                             "-byte limit");
  const nlohmann::json header = nlohmann::json::parse(bytes.substr(pos, length), nullptr, false);
  if (header.is_discarded()) throw std::runtime_error(where + "unreadable header (not valid JSON)");
  pos += length;
  const Fields h(path.string());
  h.check_object(header, "", {"fingerprint", "epochs_done", "step", "train_seconds", "layers"});
  if (h.string(header, "fingerprint", "fingerprint") != fingerprint)
    throw std::runtime_error(where + "belongs to a run with other settings (target, data or training options); "
                             "remove it or run without --resume");
  Checkpoint c;
  c.fingerprint = fingerprint;
  // A checkpoint is written after an epoch: at least 1, at most the run's epochs.
  c.epochs_done = static_cast<int>(h.integer(header, "epochs_done", "epochs_done", 1,
                                             expect.epochs > 0 ? expect.epochs : std::numeric_limits<int>::max()));
  if (expect.steps_per_epoch > 0) {
    const long steps = c.epochs_done * expect.steps_per_epoch;
    c.step = static_cast<long>(h.integer(header, "step", "step", steps, steps));
  } else {
    c.step = static_cast<long>(h.integer(header, "step", "step", 0, std::numeric_limits<long>::max()));
  }
  c.train_seconds = h.seconds(header, "train_seconds", "train_seconds");
  const nlohmann::json& layers = h.array(header, "layers", "layers");
  if (layers.empty()) h.fail("layers", "must list at least one layer");
  if (expect.net && layers.size() != expect.net->layers.size())
    h.fail("layers", "must have " + std::to_string(expect.net->layers.size()) + " layers (the run's network), not " +
                         std::to_string(layers.size()));
  auto take = [&](std::vector<float>& v, std::size_t count, const std::string& field, const std::string& what) {
    if (count * sizeof(float) > bytes.size() - 4 - pos)
      throw std::runtime_error(where + "field '" + field + "': the " + what +
                               " lie beyond the end of the tensor data (truncated)");
    v.resize(count);
    std::memcpy(v.data(), bytes.data() + pos, count * sizeof(float));
    pos += count * sizeof(float);
    // A finite state only: NaN or infinity would poison every later step.
    for (std::size_t i = 0; i < count; ++i)
      if (!std::isfinite(v[i]))
        throw std::runtime_error(where + "field '" + field + "': " + what + ": value " + std::to_string(i) +
                                 " is NaN or infinite");
  };
  for (std::size_t i = 0; i < layers.size(); ++i) {
    const std::string field = "layers[" + std::to_string(i) + "]";
    const nlohmann::json& lj = layers[i];
    h.check_object(lj, field, {"in", "out", "relu"});
    Layer l;
    l.in = static_cast<int>(h.integer(lj, "in", field + ".in", 1, kMaxWidth));
    l.out = static_cast<int>(h.integer(lj, "out", field + ".out", 1, kMaxWidth));
    l.relu = h.boolean(lj, "relu", field + ".relu");
    if (expect.net) {
      const Layer& e = expect.net->layers[i];
      const auto differs = [&](const std::string& key, const std::string& want, const std::string& got) {
        h.fail(field + "." + key, "must be " + want + " (the run's network), not " + got);
      };
      if (l.in != e.in) differs("in", std::to_string(e.in), std::to_string(l.in));
      if (l.out != e.out) differs("out", std::to_string(e.out), std::to_string(l.out));
      if (l.relu != e.relu) differs("relu", e.relu ? "true" : "false", l.relu ? "true" : "false");
    }
    const std::size_t count = static_cast<std::size_t>(l.in) * static_cast<std::size_t>(l.out);
    take(l.w, count, field, "weights");
    c.adam_m.emplace_back();
    take(c.adam_m.back(), count, field, "first moments");
    c.adam_v.emplace_back();
    take(c.adam_v.back(), count, field, "second moments");
    for (std::size_t k = 0; k < count; ++k)
      if (c.adam_v.back()[k] < 0.0f)
        throw std::runtime_error(where + "field '" + field + "': second moments: value " + std::to_string(k) +
                                 " is negative (a mean of squares)");
    c.net.layers.push_back(std::move(l));
  }
  if (pos != bytes.size() - 4)
    throw std::runtime_error(where + std::to_string(bytes.size() - 4 - pos) +
                             " bytes of tensor data beyond what the header's layers hold (trailing data)");
  return c;
}

}  // namespace qathw::training
