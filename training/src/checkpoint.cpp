#include "qathw/training/checkpoint.h"

#include <zlib.h>

#include <cstring>
#include <limits>
#include <stdexcept>

#include <nlohmann/json.hpp>

#include "qathw/util/atomic_file.h"

namespace qathw::training {
namespace {

constexpr char kMagic[8] = {'Q', 'A', 'T', 'H', 'W', 'C', 'K', '1'};

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

// An integer field of the header in [lo, hi]: a fraction or a value out of range is refused, not
// cast (a float beyond int's range has no defined conversion).
std::int64_t header_integer(const nlohmann::json& header, const char* key, std::int64_t lo, std::int64_t hi,
                            const std::string& where) {
  const nlohmann::json& v = header.at(key);
  if (!v.is_number_integer() || (v.is_number_unsigned() && v.get<std::uint64_t>() > static_cast<std::uint64_t>(hi)) ||
      v.get<std::int64_t>() < lo || v.get<std::int64_t>() > hi)
    throw std::runtime_error(where + "header field '" + key + "' is not an integer in [" + std::to_string(lo) + ", " +
                             std::to_string(hi) + "]");
  return v.get<std::int64_t>();
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

static std::optional<Checkpoint> read_checkpoint(const std::filesystem::path& path, const std::string& fingerprint) {
  if (!std::filesystem::exists(path)) return std::nullopt;
  const std::string bytes = util::read_file(path);
  const std::string where = path.string() + ": ";
  if (bytes.size() < sizeof kMagic + 8 + 4 || std::memcmp(bytes.data(), kMagic, sizeof kMagic) != 0)
    throw std::runtime_error(where + "not a qat-hw checkpoint");
  std::uint32_t stored_crc = 0;
  std::memcpy(&stored_crc, bytes.data() + bytes.size() - 4, 4);
  if (crc_of(bytes.data(), bytes.size() - 4) != stored_crc)
    throw std::runtime_error(where + "checksum mismatch: the checkpoint is corrupt or truncated");
  std::uint64_t length = 0;
  std::memcpy(&length, bytes.data() + sizeof kMagic, 8);
  std::size_t pos = sizeof kMagic + 8;
  if (length > bytes.size() - pos - 4) throw std::runtime_error(where + "header length out of range");
  const nlohmann::json header = nlohmann::json::parse(bytes.substr(pos, length), nullptr, false);
  if (header.is_discarded()) throw std::runtime_error(where + "unreadable header");
  pos += length;
  if (header.value("fingerprint", "") != fingerprint)
    throw std::runtime_error(where + "belongs to a run with other settings (target, data or training options); "
                             "remove it or run without --resume");
  Checkpoint c;
  c.fingerprint = fingerprint;
  c.epochs_done = static_cast<int>(header_integer(header, "epochs_done", 0, std::numeric_limits<int>::max(), where));
  c.step = header_integer(header, "step", 0, std::numeric_limits<long>::max(), where);
  c.train_seconds = header.at("train_seconds").get<double>();
  auto take = [&](std::vector<float>& v, std::size_t count) {
    if (count > (bytes.size() - 4 - pos) / sizeof(float)) throw std::runtime_error(where + "truncated tensor data");
    v.resize(count);
    std::memcpy(v.data(), bytes.data() + pos, count * sizeof(float));
    pos += count * sizeof(float);
  };
  if (!header.at("layers").is_array()) throw std::runtime_error(where + "header field 'layers' is not an array");
  for (const auto& lj : header.at("layers")) {
    Layer l;
    l.in = static_cast<int>(header_integer(lj, "in", 1, std::numeric_limits<int>::max(), where));
    l.out = static_cast<int>(header_integer(lj, "out", 1, std::numeric_limits<int>::max(), where));
    l.relu = lj.at("relu").get<bool>();
    const std::size_t count = static_cast<std::size_t>(l.in) * l.out;
    take(l.w, count);
    c.adam_m.emplace_back();
    take(c.adam_m.back(), count);
    c.adam_v.emplace_back();
    take(c.adam_v.back(), count);
    c.net.layers.push_back(std::move(l));
  }
  if (pos != bytes.size() - 4) throw std::runtime_error(where + "unexpected trailing data");
  return c;
}

std::optional<Checkpoint> load_checkpoint(const std::filesystem::path& path, const std::string& fingerprint) {
  try {
    return read_checkpoint(path, fingerprint);
  } catch (const nlohmann::json::exception& e) {
    // A header field missing or of the wrong JSON type.
    throw std::runtime_error(path.string() + ": unreadable header (" + e.what() + ")");
  }
}

}  // namespace qathw::training
