#include "qathw/model/bundle.h"

#include <zlib.h>

#include <cmath>
#include <limits>

#include "qathw/util/atomic_file.h"

namespace qathw::model {
namespace {

constexpr const char* kFormatName = "qat-hw-bundle";
constexpr const char* kWeightLayout = "row-major out x in; code i at bits (i % per_byte) * code_bits";

std::uint32_t crc32_of(const std::uint8_t* bytes, std::size_t size) {
  return static_cast<std::uint32_t>(crc32(crc32(0L, Z_NULL, 0), bytes, static_cast<uInt>(size)));
}

// Reads manifest fields with exact types: an integer field must hold an integer in range (no
// fraction, no 64-bit value cast down), and every error names the file and the field.
class Manifest {
 public:
  explicit Manifest(std::string file) : file_(std::move(file)) {}

  [[noreturn]] void fail(const std::string& field, const std::string& what) const {
    throw BundleError(file_ + ": field '" + field + "': " + what);
  }

  const nlohmann::json& at(const nlohmann::json& j, const char* key, const std::string& field) const {
    if (!j.is_object()) fail(field, "its parent is not an object");
    const auto it = j.find(key);
    if (it == j.end()) fail(field, "missing");
    return *it;
  }

  std::int64_t integer(const nlohmann::json& v, const std::string& field, std::int64_t lo, std::int64_t hi) const {
    std::int64_t x = 0;
    if (v.is_number_unsigned()) {
      const std::uint64_t u = v.get<std::uint64_t>();
      if (u > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()))
        fail(field, std::to_string(u) + " is out of range [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
      x = static_cast<std::int64_t>(u);
    } else if (v.is_number_integer()) {
      x = v.get<std::int64_t>();
    } else {
      fail(field, "must be an integer, not " + v.dump());
    }
    if (x < lo || x > hi)
      fail(field, std::to_string(x) + " is out of range [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
    return x;
  }
  std::int64_t integer(const nlohmann::json& j, const char* key, const std::string& field, std::int64_t lo,
                       std::int64_t hi) const {
    return integer(at(j, key, field), field, lo, hi);
  }

  std::string string(const nlohmann::json& j, const char* key, const std::string& field) const {
    const nlohmann::json& v = at(j, key, field);
    if (!v.is_string()) fail(field, "must be a string, not " + v.dump());
    return v.get<std::string>();
  }

  bool boolean(const nlohmann::json& j, const char* key, const std::string& field) const {
    const nlohmann::json& v = at(j, key, field);
    if (!v.is_boolean()) fail(field, "must be true or false, not " + v.dump());
    return v.get<bool>();
  }

  const nlohmann::json& array(const nlohmann::json& j, const char* key, const std::string& field) const {
    const nlohmann::json& v = at(j, key, field);
    if (!v.is_array()) fail(field, "must be an array");
    return v;
  }

  std::vector<float> floats(const nlohmann::json& j, const char* key, const std::string& field) const {
    std::vector<float> out;
    if (!j.contains(key)) return out;  // provenance only
    const nlohmann::json& v = array(j, key, field);
    for (std::size_t i = 0; i < v.size(); ++i) {
      if (!v[i].is_number()) fail(field + "[" + std::to_string(i) + "]", "must be a number");
      out.push_back(v[i].get<float>());
    }
    return out;
  }

  const std::string& file() const { return file_; }

 private:
  std::string file_;
};

nlohmann::json linear_json(const LinearParams& p, std::size_t offset) {
  nlohmann::json requant = nlohmann::json::array();
  for (const auto& r : p.requant) requant.push_back({r.mantissa, r.shift});
  return {{"in", p.in},
          {"out", p.out},
          {"weights",
           {{"offset", offset}, {"bytes", p.packed.size()}, {"crc32", crc32_of(p.packed.data(), p.packed.size())},
            {"layout", kWeightLayout}}},
          {"requant", requant},
          {"weight_scales", p.scales},
          {"reference_scale", p.reference}};
}

// Most weights of one linear op (in x out), and so most bytes of its packed weights.
constexpr std::int64_t kMaxWidth = std::int64_t{1} << 26;

// Most bytes of manifest.json read.
constexpr std::uint64_t kManifestLimit = std::uint64_t{16} << 20;

// Most bytes of the weights file read: what the manifest's linear ops can hold at most (each op
// at most kMaxWidth bytes), counted from its op list ("ops", or "layers" in version 1) before the
// ops are checked; every offset and size is checked against the file afterwards. Without an op
// list (an error reported with its field once the ops are read), read_file's default.
std::uint64_t weights_limit(const nlohmann::json& manifest) {
  std::uint64_t ops = 0;
  bool listed = false;
  for (const char* key : {"ops", "layers"}) {
    const auto it = manifest.find(key);
    if (it != manifest.end() && it->is_array()) {
      ops += it->size();
      listed = true;
    }
  }
  return listed ? ops * static_cast<std::uint64_t>(kMaxWidth) : util::kDefaultReadLimit;
}

// A linear op's parameters from its manifest object (`field` names it) and the weights blob.
LinearParams read_linear(const Manifest& m, const nlohmann::json& j, const std::string& field, const std::string& blob,
                         const std::string& blob_file, const arith::Format& f) {
  LinearParams p;
  p.format = f.weights;
  p.in = static_cast<int>(m.integer(j, "in", field + ".in", 1, kMaxWidth));
  p.out = static_cast<int>(m.integer(j, "out", field + ".out", 1, kMaxWidth));
  const std::size_t count = static_cast<std::size_t>(p.in) * static_cast<std::size_t>(p.out);
  if (count > static_cast<std::size_t>(kMaxWidth)) m.fail(field, "in x out exceeds 2^26 weights");
  const nlohmann::json& w = m.at(j, "weights", field + ".weights");
  const std::uint64_t offset = static_cast<std::uint64_t>(
      m.integer(w, "offset", field + ".weights.offset", 0, std::numeric_limits<std::int64_t>::max()));
  const std::uint64_t bytes = static_cast<std::uint64_t>(m.integer(w, "bytes", field + ".weights.bytes", 0, kMaxWidth));
  const std::uint32_t crc = static_cast<std::uint32_t>(m.integer(w, "crc32", field + ".weights.crc32", 0, 0xFFFFFFFFll));
  if (bytes != arith::packed_bytes(count, p.format))
    m.fail(field + ".weights.bytes", std::to_string(bytes) + " does not match in x out (" +
                                         std::to_string(arith::packed_bytes(count, p.format)) + " bytes)");
  if (offset > blob.size() || bytes > blob.size() - offset)
    throw BundleError(blob_file + ": truncated (" + field + " lies beyond its end)");
  const auto* data = reinterpret_cast<const std::uint8_t*>(blob.data()) + offset;
  p.packed.assign(data, data + bytes);
  if (crc32_of(p.packed.data(), p.packed.size()) != crc)
    throw BundleError(blob_file + ": checksum mismatch in " + field + " (corrupt weights)");
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
  p.scales = m.floats(j, "weight_scales", field + ".weight_scales");
  if (j.contains("reference_scale")) {
    const nlohmann::json& r = j.at("reference_scale");
    if (!r.is_number()) m.fail(field + ".reference_scale", "must be a number");
    p.reference = r.get<float>();
  }
  return p;
}

// Version 1: a chain of layers {in, out, relu, weights, requant}, each quantize -> linear [-> relu].
Graph read_layers_v1(const Manifest& m, const nlohmann::json& j, const Bundle& b, const std::string& blob,
                     const std::string& blob_file) {
  const nlohmann::json& layers = m.array(j, "layers", "layers");
  std::vector<LinearParams> params;
  std::vector<bool> relu;
  int expected_in = b.rows * b.cols;
  for (std::size_t l = 0; l < layers.size(); ++l) {
    const std::string field = "layers[" + std::to_string(l) + "]";
    params.push_back(read_linear(m, layers[l], field, blob, blob_file, b.target.format));
    if (params.back().in != expected_in)
      m.fail(field + ".in", std::to_string(params.back().in) + " does not match the " + std::to_string(expected_in) +
                                " outputs before it");
    relu.push_back(m.boolean(layers[l], "relu", field + ".relu"));
    expected_in = params.back().out;
  }
  if (params.empty()) m.fail("layers", "empty");
  return mlp_graph(b.rows * b.cols, std::move(params), relu);
}

Graph read_graph_v2(const Manifest& m, const nlohmann::json& j, const Bundle& b, const std::string& blob,
                    const std::string& blob_file) {
  Graph g;
  const nlohmann::json& tensors = m.array(j, "tensors", "tensors");
  for (std::size_t i = 0; i < tensors.size(); ++i) {
    const std::string field = "tensors[" + std::to_string(i) + "]";
    Tensor t;
    t.name = m.string(tensors[i], "name", field + ".name");
    const std::string dtype = m.string(tensors[i], "dtype", field + ".dtype");
    const auto d = dtype_from_string(dtype);
    if (!d) m.fail(field + ".dtype", "'" + dtype + "' is not uint8, values or codes");
    t.dtype = *d;
    const nlohmann::json& shape = m.array(tensors[i], "shape", field + ".shape");
    if (shape.size() != 2) m.fail(field + ".shape", "must be [tokens, features]");
    t.tokens = static_cast<int>(m.integer(shape[0], field + ".shape[0]", 1, std::int64_t{1} << 26));
    t.features = static_cast<int>(m.integer(shape[1], field + ".shape[1]", 1, std::int64_t{1} << 26));
    g.tensors.push_back(std::move(t));
  }
  const nlohmann::json& ops = m.array(j, "ops", "ops");
  for (std::size_t i = 0; i < ops.size(); ++i) {
    const std::string field = "ops[" + std::to_string(i) + "]";
    Op op;
    op.name = m.string(ops[i], "name", field + ".name");
    const std::string type = m.string(ops[i], "type", field + ".type");
    const auto t = op_type_from_string(type);
    if (!t) m.fail(field + ".type", "'" + type + "' is not an op type (quantize, linear, relu)");
    op.type = *t;
    op.input = m.string(ops[i], "input", field + ".input");
    op.output = m.string(ops[i], "output", field + ".output");
    if (op.type == OpType::Linear) op.linear = read_linear(m, ops[i], field, blob, blob_file, b.target.format);
    g.ops.push_back(std::move(op));
  }
  g.input = m.string(j, "input_tensor", "input_tensor");
  g.output = m.string(j, "output_tensor", "output_tensor");
  return g;
}

Bundle read_bundle(const std::filesystem::path& path, const target::TargetSpec* expected) {
  const std::string where = path.string();
  if (!std::filesystem::is_directory(path)) throw BundleError(where + ": not a bundle directory");
  const std::filesystem::path mf_path = path / "manifest.json";
  std::string text;
  try {
    text = util::read_file(mf_path, kManifestLimit);
  } catch (const util::IoError& e) {
    throw BundleError(e.what());
  }
  const Manifest m(mf_path.string());
  const nlohmann::json j = nlohmann::json::parse(text, nullptr, false);
  if (j.is_discarded() || !j.is_object()) throw BundleError(m.file() + ": not valid JSON");
  if (!j.contains("format") || j["format"] != kFormatName)
    m.fail("format", std::string("is not \"") + kFormatName + "\"");
  const int version = static_cast<int>(m.integer(j, "version", "version", 1, kBundleVersion));
  Bundle b;
  b.loaded_version = version;
  try {
    b.target = target::target_from_json(m.at(j, "target", "target"), m.file() + " [target]");
  } catch (const target::TargetError& e) {
    throw BundleError(e.what());
  }
  b.target_hash = m.string(j, "target_hash", "target_hash");
  const nlohmann::json& input = m.at(j, "input", "input");
  b.rows = static_cast<int>(m.integer(input, "rows", "input.rows", 1, 1 << 13));
  b.cols = static_cast<int>(m.integer(input, "cols", "input.cols", 1, 1 << 13));
  b.classes = static_cast<int>(m.integer(j, "classes", "classes", 1, std::int64_t{1} << 26));
  b.training = j.value("training", nlohmann::json::object());
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
  std::string blob;
  try {
    blob = util::read_file(path / weights_rel, weights_limit(j));
  } catch (const util::IoError& e) {
    throw BundleError(e.what());
  }
  b.graph = version == 1 ? read_layers_v1(m, j, b, blob, blob_file) : read_graph_v2(m, j, b, blob, blob_file);
  // The weight blocks are the whole file: bytes after the last one are not part of any op.
  std::size_t used = 0;
  for (const Op& op : b.graph.ops)
    if (op.type == OpType::Linear) used += op.linear.packed.size();
  if (used != blob.size())
    throw BundleError(blob_file + ": " + std::to_string(blob.size()) + " bytes, the ops' weight blocks hold " +
                      std::to_string(used) + " (trailing or overlapping data)");
  try {
    validate(b.graph, b.target.format);
  } catch (const GraphError& e) {
    throw BundleError(m.file() + ": " + e.what());
  }
  const Tensor& in = b.graph.tensor(b.graph.input);
  if (in.size() != b.features())
    m.fail("input", "rows x cols = " + std::to_string(b.features()) + " does not match the input tensor's " +
                        std::to_string(in.size()) + " elements");
  const Tensor& out = b.graph.tensor(b.graph.output);
  if (out.size() != static_cast<std::size_t>(b.classes))
    m.fail("classes", std::to_string(b.classes) + " does not match the output tensor's " + std::to_string(out.size()) +
                          " elements");
  return b;
}

}  // namespace

void save_bundle(const std::filesystem::path& path, const Bundle& b) {
  nlohmann::json tensors = nlohmann::json::array();
  for (const Tensor& t : b.graph.tensors)
    tensors.push_back({{"name", t.name}, {"dtype", to_string(t.dtype)}, {"shape", {t.tokens, t.features}}});
  nlohmann::json ops = nlohmann::json::array();
  std::vector<std::uint8_t> blob;
  for (const Op& op : b.graph.ops) {
    nlohmann::json o = {{"name", op.name}, {"type", to_string(op.type)}, {"input", op.input}, {"output", op.output}};
    if (op.type == OpType::Linear) {
      o.update(linear_json(op.linear, blob.size()));
      blob.insert(blob.end(), op.linear.packed.begin(), op.linear.packed.end());
    }
    ops.push_back(std::move(o));
  }
  const nlohmann::json manifest = {{"format", kFormatName},
                                   {"version", kBundleVersion},
                                   {"target", target::to_json(b.target)},
                                   {"target_hash", b.target_hash},
                                   {"input", {{"rows", b.rows}, {"cols", b.cols}, {"encoding", "uint8 pixels"}}},
                                   {"classes", b.classes},
                                   {"weights_file", "weights.bin"},
                                   {"input_tensor", b.graph.input},
                                   {"output_tensor", b.graph.output},
                                   {"tensors", tensors},
                                   {"ops", ops},
                                   {"training", b.training}};
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
