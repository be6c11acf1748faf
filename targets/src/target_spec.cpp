#include "qathw/target/target_spec.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iomanip>
#include <initializer_list>
#include <limits>
#include <sstream>
#include <utility>

#include <toml++/toml.h>

#include "qathw/util/hash.h"

namespace qathw::target {
namespace {

// The spelling of each enum value in TOML and JSON; every enum here has two values.
template <typename E>
using Choices = std::array<std::pair<std::string_view, E>, 2>;

constexpr Choices<arith::WeightFormat> kWeightFormats = {
    {{"ternary", arith::WeightFormat::Ternary}, {"int4", arith::WeightFormat::Int4}}};
constexpr Choices<arith::ActQuantizer> kQuantizers = {
    {{"dynamic_per_token_absmax", arith::ActQuantizer::DynamicPerTokenAbsmax},
     {"static_per_tensor", arith::ActQuantizer::StaticPerTensor}}};
constexpr Choices<arith::Rounding> kRoundings = {
    {{"half_away_from_zero", arith::Rounding::HalfAwayFromZero}, {"half_even", arith::Rounding::HalfEven}}};
constexpr Choices<arith::Overflow> kOverflows = {
    {{"saturate", arith::Overflow::Saturate}, {"wrap", arith::Overflow::Wrap}}};

template <typename E>
std::string_view name_of(E v, const Choices<E>& choices) {
  for (const auto& [name, value] : choices)
    if (value == v) return name;
  return "?";
}

// A string value as a message shows it: quoted, control characters escaped, at most 64 characters.
std::string shown_string(std::string_view s) {
  std::string out = "\"";
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (i == 64) {
      out += "...";
      break;
    }
    const unsigned char c = static_cast<unsigned char>(s[i]);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c < 0x20 || c == 0x7f) {
      char hex[8];
      std::snprintf(hex, sizeof hex, "\\x%02x", c);
      out += hex;
    } else {
      out += static_cast<char>(c);
    }
  }
  return out + "\"";
}

std::string where(const toml::node& node) {
  const auto& pos = node.source().begin;
  return pos.line ? " (line " + std::to_string(pos.line) + ")" : "";
}

// Reads one validated field at a time; every error names the origin and the dotted field.
class Reader {
 public:
  explicit Reader(const std::string& origin) : origin_(origin) {}

  [[noreturn]] void fail(const std::string& field, const std::string& what) const {
    throw TargetError(origin_ + ": field '" + field + "': " + what);
  }

  // Rejects keys that are not in `allowed`; `prefix` is the table's dotted name ("" at the top).
  void only(const toml::table& t, const std::string& prefix, std::initializer_list<std::string_view> allowed) const {
    for (const auto& [key, node] : t) {
      if (std::find(allowed.begin(), allowed.end(), key.str()) != allowed.end()) continue;
      std::string list;
      for (auto a : allowed) list += (list.empty() ? "" : ", ") + std::string(a);
      fail(prefix + std::string(key.str()), "unknown field" + where(node) + "; allowed here: " + list);
    }
  }

  const toml::table& table(const toml::table& root, std::string_view key) const {
    const toml::node* n = root.get(key);
    if (!n) fail(std::string(key), "missing table [" + std::string(key) + "]");
    if (!n->is_table()) fail(std::string(key), "must be a table [" + std::string(key) + "]" + where(*n));
    return *n->as_table();
  }

  // A rule that relates a present, in-range field to others: names the field, the rule and the line.
  [[noreturn]] void fail_rule(const toml::table& t, const std::string& section, std::string_view key,
                              const std::string& rule, std::int64_t got, const std::string& why) const {
    fail(dotted(section, key), rule + where(node(t, section, key)) + ", got " + std::to_string(got) + ": " + why);
  }

  const toml::node& node(const toml::table& t, const std::string& section, std::string_view key) const {
    const toml::node* n = t.get(key);
    if (!n) fail(dotted(section, key), "missing");
    return *n;
  }

  std::int64_t integer(const toml::table& t, const std::string& section, std::string_view key, std::int64_t lo,
                       std::int64_t hi) const {
    const toml::node& n = node(t, section, key);
    const std::string range = "must be an integer in [" + std::to_string(lo) + ", " + std::to_string(hi) + "]";
    if (!n.is_integer()) fail(dotted(section, key), range + where(n) + ", got " + shown(n));
    const std::int64_t v = n.as_integer()->get();
    if (v < lo || v > hi) fail(dotted(section, key), range + where(n) + ", got " + std::to_string(v));
    return v;
  }

  // A number (integer or float) in (lo, hi] when lo_open, else [lo, hi].
  double number(const toml::table& t, const std::string& section, std::string_view key, double lo, double hi,
                bool lo_open) const {
    const toml::node& n = node(t, section, key);
    std::ostringstream range;
    range << "must be a number in " << (lo_open ? "(" : "[") << lo << ", " << hi << "]";
    double v = 0;
    if (n.is_integer()) {
      v = static_cast<double>(n.as_integer()->get());
    } else if (n.is_floating_point()) {
      v = n.as_floating_point()->get();
    } else {
      fail(dotted(section, key), range.str() + where(n) + ", got " + shown(n));
    }
    const bool low_ok = lo_open ? v > lo : v >= lo;
    if (!low_ok || !(v <= hi)) {  // !(v <= hi) also rejects NaN
      // The shortest spelling that reads back as v: 0.1, not 0.10000000000000001.
      std::string got;
      for (int digits = 1; digits <= 17; ++digits) {
        std::ostringstream s;
        s << std::setprecision(digits) << v;
        got = s.str();
        if (std::isnan(v) || std::strtod(got.c_str(), nullptr) == v) break;
      }
      fail(dotted(section, key), range.str() + where(n) + ", got " + got);
    }
    return v + 0.0;  // -0.0 as 0.0: the same value, so the same canonical JSON and hash
  }

  std::string string(const toml::table& t, const std::string& section, std::string_view key) const {
    const toml::node& n = node(t, section, key);
    if (!n.is_string()) fail(dotted(section, key), "must be a string" + where(n) + ", got " + shown(n));
    return n.as_string()->get();
  }

  template <typename E>
  E choice(const toml::table& t, const std::string& section, std::string_view key, const Choices<E>& choices) const {
    const toml::node& n = node(t, section, key);
    std::string list;
    for (const auto& c : choices) list += (list.empty() ? "\"" : ", \"") + std::string(c.first) + "\"";
    if (n.is_string()) {
      const std::string& s = n.as_string()->get();
      for (const auto& [name, value] : choices)
        if (s == name) return value;
      fail(dotted(section, key), "must be one of " + list + where(n) + ", got " + shown_string(s));
    }
    fail(dotted(section, key), "must be one of " + list + where(n) + ", got " + shown(n));
  }

 private:
  static std::string dotted(const std::string& section, std::string_view key) {
    return section.empty() ? std::string(key) : section + "." + std::string(key);
  }
  static std::string shown(const toml::node& n) {
    switch (n.type()) {
      case toml::node_type::string: return "a string";
      case toml::node_type::integer: return "an integer";
      case toml::node_type::floating_point: return "a float";
      case toml::node_type::boolean: return "a boolean";
      case toml::node_type::table: return "a table";
      case toml::node_type::array: return "an array";
      default: return "a date or time";
    }
  }
  const std::string& origin_;
};


}  // namespace

std::string_view to_string(arith::WeightFormat v) { return name_of(v, kWeightFormats); }
std::string_view to_string(arith::ActQuantizer v) { return name_of(v, kQuantizers); }
std::string_view to_string(arith::Rounding v) { return name_of(v, kRoundings); }
std::string_view to_string(arith::Overflow v) { return name_of(v, kOverflows); }

namespace {

// The one validating reader behind every way a target arrives (TOML file, built-in, JSON).
TargetSpec spec_from_table(const toml::table& root, const std::string& origin) {
  const Reader r(origin);
  r.only(root, "", {"name", "description", "weights", "activations", "arithmetic", "scale", "array", "vector_unit",
                    "memory", "clock", "energy"});

  TargetSpec spec;
  spec.origin = origin;
  spec.name = r.string(root, "", "name");
  if (spec.name.empty() || spec.name.find_first_not_of("abcdefghijklmnopqrstuvwxyz0123456789-_") != std::string::npos)
    r.fail("name", "must be non-empty lower-case letters, digits, '-' or '_'" + where(*root.get("name")) + ", got " +
                       shown_string(spec.name));
  if (root.get("description")) spec.description = r.string(root, "", "description");

  arith::Format& f = spec.format;
  const toml::table& weights = r.table(root, "weights");
  r.only(weights, "weights.", {"format"});
  f.weights = r.choice(weights, "weights", "format", kWeightFormats);

  const toml::table& act = r.table(root, "activations");
  r.only(act, "activations.", {"bits", "quantizer"});
  f.act_bits = static_cast<int>(r.integer(act, "activations", "bits", arith::kMinActBits, arith::kMaxActBits));
  f.act_quantizer = r.choice(act, "activations", "quantizer", kQuantizers);

  const toml::table& ar = r.table(root, "arithmetic");
  r.only(ar, "arithmetic.", {"rounding", "accumulator_bits", "overflow"});
  f.rounding = r.choice(ar, "arithmetic", "rounding", kRoundings);
  f.acc_bits =
      static_cast<int>(r.integer(ar, "arithmetic", "accumulator_bits", arith::kMinAccBits, arith::kMaxAccBits));
  f.overflow = r.choice(ar, "arithmetic", "overflow", kOverflows);

  const toml::table& sc = r.table(root, "scale");
  r.only(sc, "scale.", {"mantissa_bits", "shift_min", "shift_max"});
  f.scale_mantissa_bits =
      static_cast<int>(r.integer(sc, "scale", "mantissa_bits", arith::kMinMantissaBits, arith::kMaxMantissaBits));
  f.scale_shift_min = static_cast<int>(r.integer(sc, "scale", "shift_min", arith::kMinShift, arith::kMaxShift));
  // Every layer has a channel with the largest weight scale, whose requantization ratio is exactly
  // 1 (kernels/cpu/quant_ops.cpp: ratios scale / max scale, in (0, 1]). to_fixed_point(1) needs the
  // pair {2^(M-1), M-1}: at any larger shift the mantissa 2^shift no longer fits in M bits.
  if (f.scale_shift_min > f.scale_mantissa_bits - 1)
    r.fail_rule(sc, "scale", "shift_min",
                "must be at most scale.mantissa_bits - 1 = " + std::to_string(f.scale_mantissa_bits - 1),
                f.scale_shift_min,
                "a requantization ratio of 1 (every layer's channel with the largest weight scale) needs the pair "
                "mantissa 2^(mantissa_bits-1), shift mantissa_bits - 1");
  f.scale_shift_max = static_cast<int>(r.integer(sc, "scale", "shift_max", arith::kMinShift, arith::kMaxShift));
  if (f.scale_shift_max < f.scale_shift_min)
    r.fail_rule(sc, "scale", "shift_max", "must be at least scale.shift_min = " + std::to_string(f.scale_shift_min),
                f.scale_shift_max, "the shift range is [shift_min, shift_max]");
  // The reciprocal unit's shift for amax up to 2^(acc_bits-1) (fixed_point.h reciprocal) reaches
  // M + acc_bits - bit_length(qmax), with bit_length(qmax) = act_bits - 1.
  const int shift_needed = f.scale_mantissa_bits + f.acc_bits - f.act_bits + 1;
  if (f.scale_shift_max < shift_needed)
    r.fail_rule(sc, "scale", "shift_max",
                "must be at least scale.mantissa_bits + arithmetic.accumulator_bits - activations.bits + 1 = " +
                    std::to_string(shift_needed),
                f.scale_shift_max,
                "the activation reciprocal qmax / amax of every accumulator magnitude must be representable "
                "normalised");

  const toml::table& arr = r.table(root, "array");
  r.only(arr, "array.", {"rows", "lanes"});
  spec.array.rows = static_cast<int>(r.integer(arr, "array", "rows", 1, 1024));
  spec.array.lanes = static_cast<int>(r.integer(arr, "array", "lanes", 1, 1024));

  // Optional, every key too: a missing one keeps arith's default.
  if (root.get("vector_unit")) {
    const toml::table& vu = r.table(root, "vector_unit");
    r.only(vu, "vector_unit.", {"lanes", "operand_bits", "accumulator_bits", "overflow"});
    arith::VectorUnit& u = spec.vector_unit;
    if (vu.get("lanes")) u.lanes = static_cast<int>(r.integer(vu, "vector_unit", "lanes", 1, 1024));
    if (vu.get("operand_bits"))
      u.operand_bits = static_cast<int>(
          r.integer(vu, "vector_unit", "operand_bits", arith::kMinVectorOperandBits, arith::kMaxVectorOperandBits));
    if (vu.get("accumulator_bits"))
      u.acc_bits =
          static_cast<int>(r.integer(vu, "vector_unit", "accumulator_bits", arith::kMinAccBits, arith::kMaxAccBits));
    if (vu.get("overflow")) u.overflow = r.choice(vu, "vector_unit", "overflow", kOverflows);
  }

  const toml::table& mem = r.table(root, "memory");
  r.only(mem, "memory.", {"weight_sram_kib", "activation_sram_kib", "kv_cache_kib"});
  spec.memory.weight_sram_kib = static_cast<int>(r.integer(mem, "memory", "weight_sram_kib", 1, 1 << 20));
  spec.memory.activation_sram_kib = static_cast<int>(r.integer(mem, "memory", "activation_sram_kib", 1, 1 << 20));
  // Optional (0: none reserved); a region of the activation SRAM, so at most all of it.
  if (mem.get("kv_cache_kib")) {
    spec.memory.kv_cache_kib = static_cast<int>(r.integer(mem, "memory", "kv_cache_kib", 0, 1 << 20));
    if (spec.memory.kv_cache_kib > spec.memory.activation_sram_kib)
      r.fail("memory.kv_cache_kib", "must be at most memory.activation_sram_kib (" +
                                        std::to_string(spec.memory.activation_sram_kib) +
                                        "): the KV caches' region is part of the activation SRAM" +
                                        where(*mem.get("kv_cache_kib")) + ", got " +
                                        std::to_string(spec.memory.kv_cache_kib));
  }

  const toml::table& clk = r.table(root, "clock");
  r.only(clk, "clock.", {"frequency_mhz"});
  // At least 1 MHz: the SystemC model's clock period (1 / f microseconds) is an integer count of
  // picoseconds, which a vanishing frequency overflows.
  spec.clock_mhz = r.number(clk, "clock", "frequency_mhz", 1.0, 100000.0, false);

  const toml::table& en = r.table(root, "energy");
  r.only(en, "energy.", {"source", "add_pj_per_bit", "sram_read_pj_per_bit", "sram_write_pj_per_bit",
                         "register_pj_per_bit"});
  spec.energy.source = r.string(en, "energy", "source");
  spec.energy.add_pj_per_bit = r.number(en, "energy", "add_pj_per_bit", 0.0, 1000.0, false);
  spec.energy.sram_read_pj_per_bit = r.number(en, "energy", "sram_read_pj_per_bit", 0.0, 1000.0, false);
  spec.energy.sram_write_pj_per_bit = r.number(en, "energy", "sram_write_pj_per_bit", 0.0, 1000.0, false);
  spec.energy.register_pj_per_bit = r.number(en, "energy", "register_pj_per_bit", 0.0, 1000.0, false);
  return spec;
}

// JSON objects, strings, integers and floats as the equivalent TOML nodes.
toml::table table_from_json(const nlohmann::json& j, const std::string& origin, const std::string& prefix) {
  if (!j.is_object())
    throw TargetError(origin + (prefix.empty() ? std::string(": the target") : ": field '" + prefix + "':") +
                      " must be an object, not " + j.type_name());
  toml::table t;
  for (const auto& [key, value] : j.items()) {
    // `targets show` adds these two keys to the spec; they are no fields of it.
    if (prefix.empty() && (key == "hash" || key == "origin")) continue;
    const std::string field = prefix.empty() ? key : prefix + "." + key;
    if (value.is_object() && !prefix.empty()) {
      // A target's tables hold scalars only; deeper nesting is never valid (and a million levels
      // would exhaust the stack).
      throw TargetError(origin + ": field '" + field + "': must be a number, a string or a boolean, not an object");
    } else if (value.is_object()) {
      t.insert(key, table_from_json(value, origin, field));
    } else if (value.is_string()) {
      t.insert(key, value.get<std::string>());
    } else if (value.is_number_unsigned() &&
               value.get<std::uint64_t>() > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) {
      // Beyond every field's range; get<int64_t> would wrap it to a negative number.
      throw TargetError(origin + ": field '" + field + "': " + value.dump() + " is beyond the 64-bit integer range");
    } else if (value.is_number_integer()) {
      t.insert(key, value.get<std::int64_t>());
    } else if (value.is_number_float()) {
      t.insert(key, value.get<double>());
    } else if (value.is_boolean()) {
      t.insert(key, value.get<bool>());
    } else {
      throw TargetError(origin + ": field '" + field + "': unsupported JSON value");
    }
  }
  return t;
}

}  // namespace

TargetSpec parse_target(std::string_view toml_text, const std::string& origin) {
  toml::table root;
  try {
    root = toml::parse(toml_text, origin);
  } catch (const toml::parse_error& e) {
    const auto& pos = e.source().begin;
    throw TargetError(origin + ":" + std::to_string(pos.line) + ":" + std::to_string(pos.column) +
                      ": TOML syntax error: " + std::string(e.description()));
  }
  return spec_from_table(root, origin);
}

TargetSpec target_from_json(const nlohmann::json& j, const std::string& origin) {
  return spec_from_table(table_from_json(j, origin, ""), origin);
}

namespace {

// A target file is a page of TOML: 1 MiB is far more than any needs.
constexpr std::size_t kTargetFileLimit = std::size_t{1} << 20;

// The text of target file `path`: a regular file of at most kTargetFileLimit bytes; a device, a
// FIFO or a directory is refused without reading it. (util::read_file does the same; this file
// is also compiled into the configure-time generator, which links nothing but toml++.)
std::string read_target_file(const std::filesystem::path& path) {
  const auto fail = [&](const std::string& what) -> TargetError {
    return TargetError(path.string() + ": " + what);
  };
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
  if (fd < 0) throw fail(std::string("cannot open target file (") + std::strerror(errno) + ")");
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};
  struct stat st {};
  if (::fstat(fd, &st) != 0) throw fail(std::string("cannot read target file (") + std::strerror(errno) + ")");
  if (!S_ISREG(st.st_mode))
    throw fail(std::string("target file is ") +
               (S_ISDIR(st.st_mode)    ? "a directory"
                : S_ISCHR(st.st_mode)  ? "a character device"
                : S_ISBLK(st.st_mode)  ? "a block device"
                : S_ISFIFO(st.st_mode) ? "a FIFO"
                : S_ISSOCK(st.st_mode) ? "a socket"
                                       : "not a plain file") +
               ", not a regular file");
  const auto too_large = [&] {
    return fail("target file larger than the limit of " + std::to_string(kTargetFileLimit) + " bytes");
  };
  if (static_cast<std::uint64_t>(st.st_size) > kTargetFileLimit) throw too_large();
  std::string text;
  char chunk[1 << 14];
  for (;;) {
    const ssize_t n = ::read(fd, chunk, sizeof chunk);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) throw fail(std::string("cannot read target file (") + std::strerror(errno) + ")");
    if (n == 0) break;
    if (text.size() + static_cast<std::size_t>(n) > kTargetFileLimit) throw too_large();
    text.append(chunk, static_cast<std::size_t>(n));
  }
  return text;
}

}  // namespace

TargetSpec load_target_file(const std::filesystem::path& path) {
  return parse_target(read_target_file(path), path.string());
}

nlohmann::json to_json(const TargetSpec& s) {
  const arith::Format& f = s.format;
  return {
      {"name", s.name},
      {"description", s.description},
      {"weights", {{"format", to_string(f.weights)}}},
      {"activations", {{"bits", f.act_bits}, {"quantizer", to_string(f.act_quantizer)}}},
      {"arithmetic",
       {{"rounding", to_string(f.rounding)}, {"accumulator_bits", f.acc_bits}, {"overflow", to_string(f.overflow)}}},
      {"scale",
       {{"mantissa_bits", f.scale_mantissa_bits}, {"shift_min", f.scale_shift_min}, {"shift_max", f.scale_shift_max}}},
      {"array", {{"rows", s.array.rows}, {"lanes", s.array.lanes}}},
      {"vector_unit",
       {{"lanes", s.vector_unit.lanes},
        {"operand_bits", s.vector_unit.operand_bits},
        {"accumulator_bits", s.vector_unit.acc_bits},
        {"overflow", to_string(s.vector_unit.overflow)}}},
      {"memory",
       {{"weight_sram_kib", s.memory.weight_sram_kib},
        {"activation_sram_kib", s.memory.activation_sram_kib},
        {"kv_cache_kib", s.memory.kv_cache_kib}}},
      {"clock", {{"frequency_mhz", s.clock_mhz}}},
      {"energy",
       {{"source", s.energy.source},
        {"add_pj_per_bit", s.energy.add_pj_per_bit},
        {"sram_read_pj_per_bit", s.energy.sram_read_pj_per_bit},
        {"sram_write_pj_per_bit", s.energy.sram_write_pj_per_bit},
        {"register_pj_per_bit", s.energy.register_pj_per_bit}}},
  };
}

std::string content_hash(const TargetSpec& spec) {
  nlohmann::json j = to_json(spec);
  j.erase("name");
  j.erase("description");
  j["energy"].erase("source");
  // A default vector unit is no field the hash has ever covered (targets before it keep theirs).
  if (j["vector_unit"] == to_json(TargetSpec{})["vector_unit"]) j.erase("vector_unit");
  // Nor is no KV cache region.
  if (spec.memory.kv_cache_kib == 0) j["memory"].erase("kv_cache_kib");
  return util::fnv1a64_hex(j.dump());
}

}  // namespace qathw::target
