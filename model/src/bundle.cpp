#include "qathw/model/bundle.h"

#include <zlib.h>

#include <algorithm>
#include <cmath>
#include <initializer_list>
#include <limits>
#include <optional>
#include <tuple>
#include <string_view>
#include <vector>

#include "qathw/util/atomic_file.h"
#include "qathw/util/json_fields.h"

namespace qathw::model {
namespace {

constexpr const char* kFormatName = "qat-hw-bundle";
constexpr const char* kWeightLayout = "row-major out x in; code i at bits (i % per_byte) * code_bits";
constexpr const char* kInputEncoding = "uint8 pixels";
constexpr const char* kSequenceEncoding = "uint8 byte tokens";
constexpr const char* kTableLayout = "int32 little-endian, row-major rows x width";

std::uint32_t crc32_of(const std::uint8_t* bytes, std::size_t size) {
  return static_cast<std::uint32_t>(crc32(crc32(0L, Z_NULL, 0), bytes, static_cast<uInt>(size)));
}

// Reads manifest fields with exact types, every error a BundleError naming the file and field.
class Manifest : public util::JsonFields<BundleError> {
 public:
  explicit Manifest(std::string file) : JsonFields(std::move(file), "manifest") {}

  // The object at `key`, which must hold only the keys `allowed`.
  const nlohmann::json& object(const nlohmann::json& j, const char* key, const std::string& field,
                               std::initializer_list<std::string_view> allowed) const {
    const nlohmann::json& v = at(j, key, field);
    check_object(v, field, allowed);
    return v;
  }

  // A real scale: a number in (0, FLT_MAX], so that it converts to a finite float.
  float scale(const nlohmann::json& v, const std::string& field) const {
    const double x = v.is_number() ? v.get<double>() : 0.0;
    if (!v.is_number() || !(x > 0.0) || x > static_cast<double>(std::numeric_limits<float>::max()))
      fail(field, "must be a number in (0, 3.4e38] (a float scale), not " + shown(v));
    return static_cast<float>(x);
  }

  // A linear op's per-output-channel real scales: absent, or exactly `count` of them.
  std::vector<float> scales(const nlohmann::json& j, const char* key, const std::string& field,
                            std::size_t count) const {
    std::vector<float> out;
    if (!j.contains(key)) return out;  // provenance only
    const nlohmann::json& v = array(j, key, field);
    if (v.size() != count)
      fail(field, "has " + std::to_string(v.size()) + " scales; needs one per output channel (" +
                      std::to_string(count) + ")");
    for (std::size_t i = 0; i < v.size(); ++i) out.push_back(scale(v[i], field + "[" + std::to_string(i) + "]"));
    return out;
  }
};

nlohmann::json linear_json(const LinearParams& p, std::size_t offset) {
  nlohmann::json requant = nlohmann::json::array();
  for (const auto& r : p.requant) requant.push_back({r.mantissa, r.shift});
  nlohmann::json j = {{"in", p.in},
                      {"out", p.out},
                      {"weights",
                       {{"offset", offset}, {"bytes", p.packed.size()}, {"crc32", crc32_of(p.packed.data(), p.packed.size())},
                        {"layout", kWeightLayout}}},
                      {"requant", requant}};
  // The real scales are provenance, optional: a kernel made without them (not trained) has none.
  if (!p.scales.empty()) {
    j["weight_scales"] = p.scales;
    j["reference_scale"] = p.reference;
  }
  return j;
}

// Most levels of arrays and objects in the provenance (`training`): 2 are written.
constexpr int kMaxTrainingDepth = 16;

// Whether `v` nests at most `depth` levels of arrays and objects (walked without recursion).
bool shallow(const nlohmann::json& v, int depth) {
  std::vector<std::pair<const nlohmann::json*, int>> todo = {{&v, 1}};
  while (!todo.empty()) {
    const auto [x, level] = todo.back();
    todo.pop_back();
    if (!x->is_structured()) continue;
    if (level > depth) return false;
    for (const auto& e : *x) todo.push_back({&e, level + 1});
  }
  return true;
}

// Most weights of one linear op (in x out), and so most bytes of its packed weights.
constexpr std::int64_t kMaxWidth = std::int64_t{1} << 26;

// Most bytes of manifest.json read.
constexpr std::uint64_t kManifestLimit = std::uint64_t{16} << 20;

// Most memory the parsed manifest may take, as Census estimates it: 16 MiB of "{}," took 570 MB
// parsed. A manifest holds a few values per output channel (its requantization pair and scale).
constexpr std::uint64_t kManifestMemory = std::uint64_t{128} << 20;

// Counts what parsing a JSON text would allocate, without building it (SAX): each container and
// value at a rough cost in bytes (the value itself, a map node per key, vector slack).
class Census : public nlohmann::json_sax<nlohmann::json> {
 public:
  bool over() const { return bytes_ > kManifestMemory; }
  bool null() override { return add(32); }
  bool boolean(bool) override { return add(32); }
  bool number_integer(number_integer_t) override { return add(32); }
  bool number_unsigned(number_unsigned_t) override { return add(32); }
  bool number_float(number_float_t, const string_t&) override { return add(32); }
  bool string(string_t& s) override { return add(80 + s.size()); }
  bool binary(binary_t& b) override { return add(80 + b.size()); }
  bool start_object(std::size_t) override { return add(112); }
  bool key(string_t& k) override { return add(96 + k.size()); }
  bool end_object() override { return true; }
  bool start_array(std::size_t) override { return add(96); }
  bool end_array() override { return true; }
  bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception&) override { return false; }

 private:
  bool add(std::uint64_t cost) {
    bytes_ += cost;
    return !over();
  }
  std::uint64_t bytes_ = 0;
};

// Where a linear op's packed codes lie in the weights file, as its manifest entry declares; the
// file is read once the whole manifest is checked, no further than these blocks reach.
struct WeightBlock {
  std::string field;  // the op's manifest field, "ops[4]"
  std::uint64_t offset = 0, bytes = 0;
  std::uint32_t crc = 0;
  std::string key = "weights";  // the block's object in the op: "weights", "embed.token_table"
};

// An embedding table's block object {offset, bytes, crc32, layout} at `key` of the embed object:
// `rows` x `width` int32 integers.
void read_table(const Manifest& m, const nlohmann::json& e, const char* key, const std::string& field,
                std::int64_t rows, std::int64_t width, std::vector<WeightBlock>& blocks) {
  const std::string tf = field + ".embed." + key;
  const nlohmann::json& w = m.object(e, key, tf, {"offset", "bytes", "crc32", "layout"});
  const std::string layout = m.string(w, "layout", tf + ".layout");
  if (layout != kTableLayout)
    m.fail(tf + ".layout", "must be \"" + std::string(kTableLayout) + "\", not " + Manifest::shown(layout));
  const std::uint64_t offset = static_cast<std::uint64_t>(
      m.integer(w, "offset", tf + ".offset", 0, std::numeric_limits<std::int64_t>::max()));
  const std::uint64_t bytes = static_cast<std::uint64_t>(m.integer(w, "bytes", tf + ".bytes", 0, 4 * kMaxWidth));
  const std::uint32_t crc = static_cast<std::uint32_t>(m.integer(w, "crc32", tf + ".crc32", 0, 0xFFFFFFFFll));
  const std::uint64_t expected = static_cast<std::uint64_t>(rows) * static_cast<std::uint64_t>(width) * 4;
  if (bytes != expected)
    m.fail(tf + ".bytes", std::to_string(bytes) + " does not match rows x width int32 (" + std::to_string(expected) +
                              " bytes)");
  blocks.push_back({field, offset, bytes, crc, std::string("embed.") + key});
}

// An embedding table's integers as weights.bin holds them (int32, little-endian).
nlohmann::json table_json(const std::vector<std::int32_t>& table, std::vector<std::uint8_t>& blob) {
  const std::size_t offset = blob.size();
  for (const std::int32_t v : table)
    for (int b = 0; b < 4; ++b) blob.push_back(static_cast<std::uint8_t>((static_cast<std::uint32_t>(v) >> (8 * b)) & 0xff));
  const std::size_t bytes = blob.size() - offset;
  return {{"offset", offset}, {"bytes", bytes}, {"crc32", crc32_of(blob.data() + offset, bytes)}, {"layout", kTableLayout}};
}

// The features a linear op's input or output tensor declares, when the manifest names one; `in`
// and `out` are checked against them first, so that a wrong width is blamed on its own field.
struct LinearShape {
  std::optional<std::int64_t> in, out;
};

// A linear op's parameters from its manifest object (`field` names it), but for its packed codes:
// `blocks` receives where they lie.
LinearParams read_linear(const Manifest& m, const nlohmann::json& j, const std::string& field, const arith::Format& f,
                         const LinearShape& shape, std::vector<WeightBlock>& blocks) {
  LinearParams p;
  p.format = f.weights;
  p.in = static_cast<int>(m.integer(j, "in", field + ".in", 1, kMaxWidth));
  if (shape.in && p.in != *shape.in)
    m.fail(field + ".in", std::to_string(p.in) + " does not match the " + std::to_string(*shape.in) +
                              " features of its input");
  p.out = static_cast<int>(m.integer(j, "out", field + ".out", 1, kMaxWidth));
  if (shape.out && p.out != *shape.out)
    m.fail(field + ".out", std::to_string(p.out) + " does not match the " + std::to_string(*shape.out) +
                               " features of its output");
  const std::size_t count = static_cast<std::size_t>(p.in) * static_cast<std::size_t>(p.out);
  if (count > static_cast<std::size_t>(kMaxWidth)) m.fail(field, "in x out exceeds 2^26 weights");
  const nlohmann::json& w = m.object(j, "weights", field + ".weights", {"offset", "bytes", "crc32", "layout"});
  const std::string layout = m.string(w, "layout", field + ".weights.layout");
  if (layout != kWeightLayout)
    m.fail(field + ".weights.layout", "must be \"" + std::string(kWeightLayout) + "\", not " +
                                          Manifest::shown(layout));
  const std::uint64_t offset = static_cast<std::uint64_t>(
      m.integer(w, "offset", field + ".weights.offset", 0, std::numeric_limits<std::int64_t>::max()));
  const std::uint64_t bytes = static_cast<std::uint64_t>(m.integer(w, "bytes", field + ".weights.bytes", 0, kMaxWidth));
  const std::uint32_t crc = static_cast<std::uint32_t>(m.integer(w, "crc32", field + ".weights.crc32", 0, 0xFFFFFFFFll));
  if (bytes != arith::packed_bytes(count, p.format))
    m.fail(field + ".weights.bytes", std::to_string(bytes) + " does not match in x out (" +
                                         std::to_string(arith::packed_bytes(count, p.format)) + " bytes)");
  blocks.push_back({field, offset, bytes, crc});
  const nlohmann::json& requant = m.array(j, "requant", field + ".requant");
  if (requant.size() != static_cast<std::size_t>(p.out))
    m.fail(field + ".requant", "has " + std::to_string(requant.size()) + " pairs; needs one per output channel (" +
                                   std::to_string(p.out) + ")");
  for (std::size_t n = 0; n < requant.size(); ++n) {
    const std::string rf = field + ".requant[" + std::to_string(n) + "]";
    if (!requant[n].is_array() || requant[n].size() != 2) m.fail(rf, "must be a pair [mantissa, shift]");
    const std::int64_t mantissa =
        m.integer(requant[n][0], rf + "[0]", 0, (std::int64_t{1} << f.scale_mantissa_bits) - 1);
    const int shift = static_cast<int>(m.integer(requant[n][1], rf + "[1]", f.scale_shift_min, f.scale_shift_max));
    p.requant.push_back({mantissa, shift});
  }
  p.scales = m.scales(j, "weight_scales", field + ".weight_scales", static_cast<std::size_t>(p.out));
  if (j.contains("reference_scale")) p.reference = m.scale(j.at("reference_scale"), field + ".reference_scale");
  return p;
}

// Two integers [a, b] of `key` in [lo, hi] (a window's kernel, stride or padding).
std::pair<int, int> read_two(const Manifest& m, const nlohmann::json& j, const char* key, const std::string& field,
                             std::int64_t lo, std::int64_t hi) {
  const nlohmann::json& a = m.array(j, key, field);
  if (a.size() != 2) m.fail(field, "must be two integers [height, width], not " + Manifest::shown(a));
  return {static_cast<int>(m.integer(a[0], field + "[0]", lo, hi)), static_cast<int>(m.integer(a[1], field + "[1]", lo, hi))};
}

arith::Window read_window(const Manifest& m, const nlohmann::json& j, const std::string& field) {
  arith::Window w;
  std::tie(w.kernel_h, w.kernel_w) = read_two(m, j, "kernel", field + ".kernel", 1, 256);
  std::tie(w.stride_h, w.stride_w) = read_two(m, j, "stride", field + ".stride", 1, 256);
  std::tie(w.pad_h, w.pad_w) = read_two(m, j, "padding", field + ".padding", 0, 255);
  return w;
}

// `count` requantization pairs [mantissa, shift] in the target's scale format (kAnyCount: as many
// as the array holds; the graph's checks count them).
constexpr std::size_t kAnyCount = static_cast<std::size_t>(-1);
std::vector<arith::FixedPoint> read_pairs(const Manifest& m, const nlohmann::json& j, const char* key,
                                          const std::string& field, std::size_t count, const arith::Format& f) {
  const nlohmann::json& a = m.array(j, key, field);
  if (count != kAnyCount && a.size() != count)
    m.fail(field, "has " + std::to_string(a.size()) + " pairs; needs " + std::to_string(count));
  std::vector<arith::FixedPoint> pairs;
  for (std::size_t n = 0; n < a.size(); ++n) {
    const std::string rf = field + "[" + std::to_string(n) + "]";
    if (!a[n].is_array() || a[n].size() != 2) m.fail(rf, "must be a pair [mantissa, shift]");
    const std::int64_t mantissa = m.integer(a[n][0], rf + "[0]", 0, (std::int64_t{1} << f.scale_mantissa_bits) - 1);
    const int shift = static_cast<int>(m.integer(a[n][1], rf + "[1]", f.scale_shift_min, f.scale_shift_max));
    pairs.push_back({mantissa, shift});
  }
  return pairs;
}

// Each kernel op's (linear, conv2d) packed codes from the weights file `blob` (named
// `blob_file`), where `blocks` (one per kernel op, in op order) place them: in the file, matching
// their CRC-32, valid codes.
void read_weights(Graph& g, const std::vector<WeightBlock>& blocks, const std::string& blob,
                  const std::string& blob_file) {
  std::size_t next = 0;
  // The next block's bytes, in the file and matching its CRC-32.
  const auto place = [&](const char* what) -> std::pair<const WeightBlock*, const std::uint8_t*> {
    const WeightBlock& w = blocks.at(next++);
    if (w.offset > blob.size() || w.bytes > blob.size() - w.offset)
      throw BundleError(blob_file + ": truncated: field '" + w.field + "." + w.key + "' places " +
                        std::to_string(w.bytes) + " bytes at offset " + std::to_string(w.offset) +
                        ", beyond the file's " + std::to_string(blob.size()) + " bytes");
    const auto* data = reinterpret_cast<const std::uint8_t*>(blob.data()) + w.offset;
    if (crc32_of(data, w.bytes) != w.crc)
      throw BundleError(blob_file + ": checksum mismatch in " + w.field + (w.key == "weights" ? "" : "." + w.key) +
                        " (corrupt " + what + ")");
    return {&w, data};
  };
  for (Op& op : g.ops) {
    if (op.type == OpType::Embed) {
      for (std::vector<std::int32_t>* table : {&op.embed.tokens, &op.embed.positions_table}) {
        const auto [w, data] = place("embedding table");
        table->resize(w->bytes / 4);
        for (std::size_t k = 0; k < table->size(); ++k)
          (*table)[k] = static_cast<std::int32_t>(static_cast<std::uint32_t>(data[4 * k]) |
                                                  static_cast<std::uint32_t>(data[4 * k + 1]) << 8 |
                                                  static_cast<std::uint32_t>(data[4 * k + 2]) << 16 |
                                                  static_cast<std::uint32_t>(data[4 * k + 3]) << 24);
      }
      continue;
    }
    if (op.type != OpType::Linear && op.type != OpType::Conv2d) continue;
    const auto [wp, data] = place("weights");
    const WeightBlock& w = *wp;
    LinearParams& p = op.linear;
    p.packed.assign(data, data + w.bytes);
    // Codes beyond the quantizer's range (the ternary field 0b10, INT4 -8) are in the weights file.
    const int qmax = arith::weight_qmax(p.format);
    const std::size_t count = static_cast<std::size_t>(p.in) * static_cast<std::size_t>(p.out);
    for (std::size_t k = 0; k < count; ++k) {
      const int c = arith::load_code(p.packed.data(), k, p.format);
      if (c < -qmax || c > qmax)
        throw BundleError(blob_file + ": field '" + w.field + ".weights': invalid weight code " + std::to_string(c) +
                          " at index " + std::to_string(k) + " (" + std::string(target::to_string(p.format)) +
                          " codes lie in [-" + std::to_string(qmax) + ", " + std::to_string(qmax) + "])");
    }
  }
}

// Version 1: a chain of layers {in, out, relu, weights, requant}, each quantize -> linear [-> relu].
Graph read_layers_v1(const Manifest& m, const nlohmann::json& j, const Bundle& b,
                     std::vector<WeightBlock>& blocks) {
  const nlohmann::json& layers = m.array(j, "layers", "layers");
  std::vector<LinearParams> params;
  std::vector<bool> relu;
  int expected_in = b.rows * b.cols;
  for (std::size_t l = 0; l < layers.size(); ++l) {
    const std::string field = "layers[" + std::to_string(l) + "]";
    m.check_object(layers[l], field,
                   {"in", "out", "relu", "weights", "requant", "weight_scales", "reference_scale", "index"});
    // `index`, written by version 1, is the layer's position.
    if (layers[l].contains("index")) m.integer(layers[l], "index", field + ".index", static_cast<std::int64_t>(l),
                                               static_cast<std::int64_t>(l));
    // `in` is the features before the layer: the input's, then the previous layer's `out`.
    params.push_back(read_linear(m, layers[l], field, b.target.format, {expected_in, std::nullopt}, blocks));
    relu.push_back(m.boolean(layers[l], "relu", field + ".relu"));
    expected_in = params.back().out;
  }
  return mlp_graph(b.rows * b.cols, std::move(params), relu);
}

// The fields of the transformer's ops (and the groups and factors of quantize and add): docs/bundle.md,
// "Transformer ops". The graph's checks (validate) state what each must be.
void read_transformer_fields(const Manifest& m, const nlohmann::json& o, const std::string& field,
                             const arith::Format& f, const Graph& g, Op& op, std::vector<WeightBlock>& blocks) {
  const OpType t = op.type;
  if (t == OpType::Quantize && o.contains("groups"))
    op.groups = static_cast<int>(m.integer(o, "groups", field + ".groups", 1, std::int64_t{1} << 26));
  if (t == OpType::Scores || t == OpType::Softmax || t == OpType::Attend)
    op.groups = static_cast<int>(m.integer(o, "groups", field + ".groups", 1, 1 << 16));
  if ((t == OpType::Quantize || t == OpType::Add || t == OpType::Scores) && o.contains("factors")) {
    const nlohmann::json& a = m.array(o, "factors", field + ".factors");
    if (a.size() > 8) m.fail(field + ".factors", "has " + std::to_string(a.size()) + " tensors; at most 8");
    for (std::size_t k = 0; k < a.size(); ++k) {
      if (!a[k].is_string())
        m.fail(field + ".factors[" + std::to_string(k) + "]", "must be a tensor name, not " + Manifest::shown(a[k]));
      op.factors.push_back(a[k].get<std::string>());
    }
  }
  if (t == OpType::Scores) op.residual = m.string(o, "keys", field + ".keys");
  if (t == OpType::Attend) op.residual = m.string(o, "values", field + ".values");
  if (t == OpType::Scores) op.pairs = read_pairs(m, o, "pairs", field + ".pairs", 1, f);
  if (t == OpType::Embed) op.pairs = read_pairs(m, o, "pairs", field + ".pairs", 2, f);
  if (t == OpType::RmsNorm) {
    // A gain pair per feature of the input.
    const auto x = g.find_tensor(op.input);
    const std::size_t count = x ? static_cast<std::size_t>(g.tensors[*x].features) : kAnyCount;
    op.pairs = read_pairs(m, o, "pairs", field + ".pairs", count, f);
    op.eps = static_cast<std::uint64_t>(
        m.integer(o, "eps", field + ".eps", 0, std::numeric_limits<std::int64_t>::max()));
  }
  if (t == OpType::SquaredRelu)
    op.shift = static_cast<int>(m.integer(o, "shift", field + ".shift", 0, arith::kMaxShift));
  if (t == OpType::Softmax) {
    const nlohmann::json& s = m.object(o, "softmax", field + ".softmax", {"index_bits", "value_bits", "prob_bits"});
    op.softmax.index_bits =
        static_cast<int>(m.integer(s, "index_bits", field + ".softmax.index_bits", 0, arith::kMaxExp2IndexBits));
    op.softmax.value_bits =
        static_cast<int>(m.integer(s, "value_bits", field + ".softmax.value_bits", 1, arith::kMaxExp2ValueBits));
    op.softmax.prob_bits = static_cast<int>(m.integer(s, "prob_bits", field + ".softmax.prob_bits", 1, 15));
  }
  if (t == OpType::Embed) {
    const nlohmann::json& e = m.object(o, "embed", field + ".embed",
                                       {"vocabulary", "positions", "width", "token_table", "position_table"});
    EmbedParams& p = op.embed;
    p.vocabulary = static_cast<int>(m.integer(e, "vocabulary", field + ".embed.vocabulary", 1, 1 << 16));
    p.positions = static_cast<int>(m.integer(e, "positions", field + ".embed.positions", 1, 1 << 16));
    p.width = static_cast<int>(m.integer(e, "width", field + ".embed.width", 1, kMaxWidth));
    const std::int64_t rows = std::max(p.vocabulary, p.positions);
    if (rows * p.width > kMaxWidth) m.fail(field + ".embed.width", "a table of more than 2^26 integers");
    read_table(m, e, "token_table", field, p.vocabulary, p.width, blocks);
    read_table(m, e, "position_table", field, p.positions, p.width, blocks);
  }
}

Graph read_graph_v2(const Manifest& m, const nlohmann::json& j, const Bundle& b, std::vector<WeightBlock>& blocks) {
  Graph g;
  const nlohmann::json& tensors = m.array(j, "tensors", "tensors");
  for (std::size_t i = 0; i < tensors.size(); ++i) {
    const std::string field = "tensors[" + std::to_string(i) + "]";
    m.check_object(tensors[i], field, {"name", "dtype", "shape"});
    Tensor t;
    constexpr std::int64_t kMaxSide = std::int64_t{1} << 13;
    t.name = m.string(tensors[i], "name", field + ".name");
    const std::string dtype = m.string(tensors[i], "dtype", field + ".dtype");
    const auto d = dtype_from_string(dtype);
    if (!d)
      m.fail(field + ".dtype", Manifest::shown(dtype) + " is not one of \"uint8\", \"values\", \"codes\", \"probs\"");
    t.dtype = *d;
    const nlohmann::json& shape = m.array(tensors[i], "shape", field + ".shape");
    if (shape.size() == 3) {  // a feature map [height, width, channels]
      const std::int64_t h = m.integer(shape[0], field + ".shape[0]", 1, kMaxSide);
      const std::int64_t w = m.integer(shape[1], field + ".shape[1]", 1, kMaxSide);
      const std::int64_t c = m.integer(shape[2], field + ".shape[2]", 1, std::int64_t{1} << 26);
      if (h * w * c > (std::int64_t{1} << 26)) m.fail(field + ".shape", "holds more than 2^26 elements");
      t = map_tensor(t.name, t.dtype, static_cast<int>(h), static_cast<int>(w), static_cast<int>(c));
      g.tensors.push_back(std::move(t));
      continue;
    }
    if (shape.size() != 2)
      m.fail(field + ".shape", "must be [tokens, features] or a feature map [height, width, channels], not " +
                                   Manifest::shown(shape));
    t.tokens = static_cast<int>(m.integer(shape[0], field + ".shape[0]", 1, std::int64_t{1} << 26));
    t.features = static_cast<int>(m.integer(shape[1], field + ".shape[1]", 1, std::int64_t{1} << 26));
    g.tensors.push_back(std::move(t));
  }
  const nlohmann::json& ops = m.array(j, "ops", "ops");
  for (std::size_t i = 0; i < ops.size(); ++i) {
    const std::string field = "ops[" + std::to_string(i) + "]";
    if (!ops[i].is_object()) m.fail(field, "must be an object, not " + Manifest::shown(ops[i]));
    Op op;
    const std::string type = m.string(ops[i], "type", field + ".type");
    const auto t = op_type_from_string(type);
    if (!t)
      m.fail(field + ".type", Manifest::shown(type) + " is not an op type (\"quantize\", \"linear\", \"relu\", "
                              "\"conv2d\", \"max_pool\", \"avg_pool\", \"add\", \"flatten\", \"embed\", "
                              "\"rms_norm\", \"squared_relu\", \"scores\", \"softmax\", \"attend\")");
    op.type = *t;
    const std::vector<std::string> plain = {"name", "type", "input", "output"};
    const std::vector<std::string> kernel = {"name", "type", "input", "output", "in", "out", "weights", "requant",
                                             "weight_scales", "reference_scale"};
    const std::vector<std::string> window = {"kernel", "stride", "padding"};
    const auto with = [](std::vector<std::string> a, const std::vector<std::string>& b) {
      a.insert(a.end(), b.begin(), b.end());
      return a;
    };
    switch (op.type) {
      case OpType::Linear: m.check_object(ops[i], field, kernel); break;
      case OpType::Conv2d: m.check_object(ops[i], field, with(with(kernel, window), {"groups"})); break;
      case OpType::MaxPool: m.check_object(ops[i], field, with(plain, window)); break;
      case OpType::AvgPool: m.check_object(ops[i], field, with(with(plain, window), {"pairs"})); break;
      case OpType::Add: m.check_object(ops[i], field, with(plain, {"residual", "pairs", "factors"})); break;
      case OpType::Quantize: m.check_object(ops[i], field, with(plain, {"pairs", "groups", "factors"})); break;
      case OpType::Embed: m.check_object(ops[i], field, with(plain, {"pairs", "embed"})); break;
      case OpType::RmsNorm: m.check_object(ops[i], field, with(plain, {"pairs", "eps"})); break;
      case OpType::SquaredRelu: m.check_object(ops[i], field, with(plain, {"shift"})); break;
      case OpType::Scores: m.check_object(ops[i], field, with(plain, {"keys", "groups", "pairs", "factors"})); break;
      case OpType::Softmax: m.check_object(ops[i], field, with(plain, {"groups", "softmax"})); break;
      case OpType::Attend: m.check_object(ops[i], field, with(plain, {"values", "groups"})); break;
      default: m.check_object(ops[i], field, plain); break;
    }
    op.name = m.string(ops[i], "name", field + ".name");
    op.input = m.string(ops[i], "input", field + ".input");
    op.output = m.string(ops[i], "output", field + ".output");
    if (op.type == OpType::Linear || op.type == OpType::Conv2d) {
      // A convolution's `in` is its patch (checked with the graph), its `out` the output's channels.
      LinearShape shape;
      if (const auto x = g.find_tensor(op.input); x && op.type == OpType::Linear) shape.in = g.tensors[*x].features;
      if (const auto y = g.find_tensor(op.output)) shape.out = g.tensors[*y].channels();
      op.linear = read_linear(m, ops[i], field, b.target.format, shape, blocks);
    }
    if (op.type == OpType::Conv2d || op.type == OpType::MaxPool || op.type == OpType::AvgPool)
      op.window = read_window(m, ops[i], field);
    if (op.type == OpType::Conv2d) op.groups = static_cast<int>(m.integer(ops[i], "groups", field + ".groups", 1, 1 << 16));
    if (op.type == OpType::AvgPool || (op.type == OpType::Quantize && ops[i].contains("pairs")))
      op.pairs = read_pairs(m, ops[i], "pairs", field + ".pairs", 1, b.target.format);
    if (op.type == OpType::Add) {
      op.residual = m.string(ops[i], "residual", field + ".residual");
      op.pairs = read_pairs(m, ops[i], "pairs", field + ".pairs", 2, b.target.format);
    }
    read_transformer_fields(m, ops[i], field, b.target.format, g, op, blocks);
    g.ops.push_back(std::move(op));
  }
  g.input = m.string(j, "input_tensor", "input_tensor");
  g.output = m.string(j, "output_tensor", "output_tensor");
  return g;
}

Bundle read_bundle(const std::filesystem::path& path, const target::TargetSpec* expected) {
  const std::string where = path.string();
  if (where.empty()) throw BundleError("'': not a bundle directory (the path is empty)");
  if (!std::filesystem::is_directory(path)) throw BundleError(where + ": not a bundle directory");
  const std::filesystem::path mf_path = path / "manifest.json";
  std::string text;
  try {
    text = util::read_file(mf_path, kManifestLimit);
  } catch (const util::IoError& e) {
    throw BundleError(e.what());
  }
  const Manifest m(mf_path.string());
  Census census;
  nlohmann::json::sax_parse(text, &census);
  if (census.over())
    throw BundleError(m.file() + ": too many JSON values: parsed, they would take more than " +
                      std::to_string(kManifestMemory >> 20) + " MiB (a manifest holds a few per output channel)");
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
  } catch (const nlohmann::json::parse_error& e) {
    throw BundleError(m.file() + ": not valid JSON (error at byte " + std::to_string(e.byte) + ")");
  }
  if (!j.is_object()) throw BundleError(m.file() + ": must hold a JSON object, not " + Manifest::shown(j));
  if (m.string(j, "format", "format") != kFormatName)
    m.fail("format", std::string("must be \"") + kFormatName + "\", not " + Manifest::shown(j["format"]));
  const int version = static_cast<int>(m.integer(j, "version", "version", 1, kBundleVersion));
  // The fields save_bundle writes (version 1: the layer chain instead of the graph); no others.
  if (version == 1)
    m.check_object(j, "", {"format", "version", "target", "target_hash", "input", "classes", "weights_file", "layers",
                           "training"});
  else
    m.check_object(j, "", {"format", "version", "target", "target_hash", "input", "classes", "weights_file",
                           "input_tensor", "output_tensor", "tensors", "ops", "training"});
  Bundle b;
  b.loaded_version = version;
  const nlohmann::json& target_json = m.at(j, "target", "target");
  if (!target_json.is_object())
    m.fail("target", "must be an object (a target spec), not " + Manifest::shown(target_json));
  try {
    b.target = target::target_from_json(target_json, m.file() + " [target]");
  } catch (const target::TargetError& e) {
    throw BundleError(e.what());
  }
  b.target_hash = m.string(j, "target_hash", "target_hash");
  const nlohmann::json& input_json = m.at(j, "input", "input");
  if (input_json.is_object() && input_json.contains("encoding") && input_json["encoding"] == kSequenceEncoding) {
    // A sequence of `tokens` bytes (a transformer's sample).
    const nlohmann::json& input = m.object(j, "input", "input", {"tokens", "encoding"});
    b.input_kind = InputKind::Sequence;
    b.context = static_cast<int>(m.integer(input, "tokens", "input.tokens", 1, 1 << 16));
  } else {
    const nlohmann::json& input = m.object(j, "input", "input", {"rows", "cols", "encoding"});
    b.rows = static_cast<int>(m.integer(input, "rows", "input.rows", 1, 1 << 13));
    b.cols = static_cast<int>(m.integer(input, "cols", "input.cols", 1, 1 << 13));
    const std::string encoding = m.string(input, "encoding", "input.encoding");
    if (encoding != kInputEncoding)
      m.fail("input.encoding", std::string("must be \"") + kInputEncoding + "\", not " + Manifest::shown(encoding) +
                                   " (a sequence's is \"" + kSequenceEncoding + "\", with input.tokens)");
  }
  b.classes = static_cast<int>(m.integer(j, "classes", "classes", 1, std::int64_t{1} << 26));
  // Provenance: free-form, but an object (readers look up its keys), and shallow enough to copy
  // and write back (both recurse).
  if (j.contains("training")) {
    if (!j["training"].is_object()) m.fail("training", "must be an object, not " + Manifest::shown(j["training"]));
    if (!shallow(j["training"], kMaxTrainingDepth))
      m.fail("training", "nested deeper than " + std::to_string(kMaxTrainingDepth) + " levels");
    b.training = j["training"];
  } else {
    b.training = nlohmann::json::object();
  }
  if (target::content_hash(b.target) != b.target_hash)
    m.fail("target_hash", b.target_hash + " does not match the embedded target (" + target::content_hash(b.target) +
                              "): the manifest was altered");
  if (expected && target::content_hash(*expected) != b.target_hash)
    throw BundleError(where + ": built for target '" + b.target.name + "' (hash " + b.target_hash + "), not for '" +
                      expected->name + "' (hash " + target::content_hash(*expected) + ")");

  const std::string weights_name = m.string(j, "weights_file", "weights_file");
  const std::filesystem::path weights_rel(weights_name);
  if (weights_name.empty() || weights_rel.is_absolute() || weights_rel.has_parent_path())
    m.fail("weights_file", "'" + weights_name + "' must name a file inside the bundle directory");
  const std::string blob_file = (path / weights_rel).string();
  // A symbolic link must not lead the loader out of the bundle either.
  std::error_code ec;
  const std::filesystem::path resolved = std::filesystem::weakly_canonical(path / weights_rel, ec);
  if (!ec && resolved.parent_path() != std::filesystem::weakly_canonical(path, ec))
    m.fail("weights_file", "'" + weights_name + "' leads outside the bundle directory (to " + resolved.string() + ")");
  const char* op_list = version == 1 ? "layers" : "ops";
  if (m.array(j, op_list, op_list).empty()) m.fail(op_list, "empty: the graph needs at least one op");
  std::vector<WeightBlock> blocks;
  b.graph = version == 1 ? read_layers_v1(m, j, b, blocks) : read_graph_v2(m, j, b, blocks);
  // The weight blocks are the whole file: bytes after the last one are not part of any op. The
  // file is read no further than the blocks reach (a huge file is refused before it is read).
  std::uint64_t used = 0;
  for (const WeightBlock& w : blocks) used += w.bytes;
  const auto trailing = [&](std::uint64_t size) {
    return BundleError(blob_file + ": " + std::to_string(size) + " bytes, the ops' weight blocks hold " +
                       std::to_string(used) + " (trailing or overlapping data)");
  };
  const std::uintmax_t size = std::filesystem::file_size(path / weights_rel, ec);
  if (!ec && size > used) throw trailing(size);
  std::string blob;
  try {
    blob = util::read_file(path / weights_rel, used);
  } catch (const util::IoError& e) {
    throw BundleError(e.what());
  }
  read_weights(b.graph, blocks, blob, blob_file);
  if (used != blob.size()) throw trailing(blob.size());
  try {
    validate(b.graph, b.target.format, b.target.vector_unit);
  } catch (const GraphError& e) {
    if (e.field().empty()) throw BundleError(m.file() + ": " + e.what());
    m.fail(e.field(), e.what());
  }
  const Tensor& in = b.graph.tensor(b.graph.input);
  const Tensor& out = b.graph.tensor(b.graph.output);
  if (b.sequence()) {
    if (in.is_map() || in.tokens != b.context || in.features != 1)
      m.fail("input.tokens", std::to_string(b.context) + " byte tokens do not match the input tensor " +
                                 std::to_string(in.tokens) + " x " + std::to_string(in.features) +
                                 " (a sequence's is [tokens, 1])");
    if (out.features != b.classes || out.tokens != b.context)
      m.fail("classes", std::to_string(b.classes) + " does not match the output tensor's [" +
                            std::to_string(out.tokens) + ", " + std::to_string(out.features) +
                            "] (a row of classes per token)");
    return b;
  }
  if (in.size() != b.features())
    m.fail("input", "rows x cols = " + std::to_string(b.features()) + " does not match the input tensor's " +
                        std::to_string(in.size()) + " elements");
  for (std::size_t i = 0; i < b.graph.ops.size(); ++i)
    if (b.graph.ops[i].type == OpType::Embed)
      m.fail("input.encoding", "op '" + b.graph.ops[i].name + "' embeds byte tokens: the input must be \"" +
                                   kSequenceEncoding + "\"");
  if (out.size() != static_cast<std::size_t>(b.classes))
    m.fail("classes", std::to_string(b.classes) + " does not match the output tensor's " + std::to_string(out.size()) +
                          " elements");
  return b;
}

}  // namespace

void save_bundle(const std::filesystem::path& path, const Bundle& b) {
  nlohmann::json tensors = nlohmann::json::array();
  for (const Tensor& t : b.graph.tensors)
    tensors.push_back({{"name", t.name},
                       {"dtype", to_string(t.dtype)},
                       {"shape", t.is_map() ? nlohmann::json{t.height, t.width, t.channels()}
                                            : nlohmann::json{t.tokens, t.features}}});
  nlohmann::json ops = nlohmann::json::array();
  std::vector<std::uint8_t> blob;
  for (const Op& op : b.graph.ops) {
    nlohmann::json o = {{"name", op.name}, {"type", to_string(op.type)}, {"input", op.input}, {"output", op.output}};
    if (op.type == OpType::Linear || op.type == OpType::Conv2d) {
      o.update(linear_json(op.linear, blob.size()));
      blob.insert(blob.end(), op.linear.packed.begin(), op.linear.packed.end());
    }
    if (op.type == OpType::Conv2d || op.type == OpType::MaxPool || op.type == OpType::AvgPool) {
      const arith::Window& w = op.window;
      o["kernel"] = {w.kernel_h, w.kernel_w};
      o["stride"] = {w.stride_h, w.stride_w};
      o["padding"] = {w.pad_h, w.pad_w};
    }
    const OpType t = op.type;
    if (t == OpType::Conv2d || t == OpType::Scores || t == OpType::Softmax || t == OpType::Attend ||
        (t == OpType::Quantize && op.groups != 1))
      o["groups"] = op.groups;
    if (t == OpType::Add) o["residual"] = op.residual;
    if (t == OpType::Scores) o["keys"] = op.residual;
    if (t == OpType::Attend) o["values"] = op.residual;
    if (t == OpType::AvgPool || t == OpType::Add || t == OpType::Embed || t == OpType::RmsNorm ||
        t == OpType::Scores || (t == OpType::Quantize && !op.pairs.empty())) {
      nlohmann::json pairs = nlohmann::json::array();
      for (const arith::FixedPoint& p : op.pairs) pairs.push_back({p.mantissa, p.shift});
      o["pairs"] = pairs;
    }
    if ((t == OpType::Quantize || t == OpType::Add || t == OpType::Scores) && !op.factors.empty())
      o["factors"] = op.factors;
    if (t == OpType::RmsNorm) o["eps"] = op.eps;
    if (t == OpType::SquaredRelu) o["shift"] = op.shift;
    if (t == OpType::Softmax)
      o["softmax"] = {{"index_bits", op.softmax.index_bits},
                      {"value_bits", op.softmax.value_bits},
                      {"prob_bits", op.softmax.prob_bits}};
    if (t == OpType::Embed) {
      const EmbedParams& e = op.embed;
      nlohmann::json embed = {{"vocabulary", e.vocabulary}, {"positions", e.positions}, {"width", e.width}};
      embed["token_table"] = table_json(e.tokens, blob);
      embed["position_table"] = table_json(e.positions_table, blob);
      o["embed"] = std::move(embed);
    }
    ops.push_back(std::move(o));
  }
  const nlohmann::json input =
      b.sequence() ? nlohmann::json{{"tokens", b.context}, {"encoding", kSequenceEncoding}}
                   : nlohmann::json{{"rows", b.rows}, {"cols", b.cols}, {"encoding", kInputEncoding}};
  const nlohmann::json manifest = {{"format", kFormatName},
                                   {"version", kBundleVersion},
                                   {"target", target::to_json(b.target)},
                                   {"target_hash", b.target_hash},
                                   {"input", input},
                                   {"classes", b.classes},
                                   {"weights_file", "weights.bin"},
                                   {"input_tensor", b.graph.input},
                                   {"output_tensor", b.graph.output},
                                   {"tensors", tensors},
                                   {"ops", ops},
                                   {"training", b.training.is_null() ? nlohmann::json::object() : b.training}};
  util::write_directory_atomic(path, [&](const std::filesystem::path& staged) {
    util::write_file_atomic(staged / "weights.bin",
                            std::string_view(reinterpret_cast<const char*>(blob.data()), blob.size()));
    util::write_file_atomic(staged / "manifest.json", manifest.dump(2) + "\n");
  });
}

Bundle load_bundle(const std::filesystem::path& path, const target::TargetSpec* expected) {
  try {
    return read_bundle(path, expected);
  } catch (const nlohmann::json::exception& e) {
    // A field of the wrong JSON type the readers above did not check.
    throw BundleError((path / "manifest.json").string() + ": " + e.what());
  }
}

}  // namespace qathw::model
