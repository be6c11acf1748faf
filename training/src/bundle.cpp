#include "qathw/training/bundle.h"

#include <zlib.h>

#include <cstring>
#include <fstream>

#include "qathw/util/atomic_file.h"

namespace qathw::training {
namespace {

constexpr int kFormatVersion = 1;
constexpr const char* kFormatName = "qat-hw-bundle";

std::uint32_t crc32_of(const std::vector<std::uint8_t>& bytes) {
  return static_cast<std::uint32_t>(
      crc32(crc32(0L, Z_NULL, 0), bytes.data(), static_cast<uInt>(bytes.size())));
}

}  // namespace

int BundleLayer::code(int n, int k) const {
  return arith::load_code(packed.data(), static_cast<std::size_t>(n) * in + k, format);
}

std::vector<std::int8_t> BundleLayer::codes() const {
  std::vector<std::int8_t> out_codes(static_cast<std::size_t>(in) * out);
  for (int n = 0; n < out; ++n)
    for (int k = 0; k < in; ++k) out_codes[static_cast<std::size_t>(n) * in + k] = static_cast<std::int8_t>(code(n, k));
  return out_codes;
}

Bundle make_bundle(const Mlp& net, const target::TargetSpec& target, int rows, int cols, nlohmann::json training) {
  Bundle b;
  b.target = target;
  b.target_hash = target::content_hash(target);
  b.rows = rows;
  b.cols = cols;
  b.classes = net.classes();
  b.training = std::move(training);
  std::vector<QuantizedLayer> q;
  quantize_weights(net, target.format, q);
  for (std::size_t l = 0; l < net.layers.size(); ++l) {
    const Layer& layer = net.layers[l];
    BundleLayer bl;
    bl.in = layer.in;
    bl.out = layer.out;
    bl.relu = layer.relu;
    bl.format = target.format.weights;
    bl.packed.assign(arith::packed_bytes(layer.w.size(), target.format.weights), 0);
    for (std::size_t i = 0; i < layer.w.size(); ++i)
      arith::store_code(bl.packed.data(), i, static_cast<int>(q[l].codes[i]), target.format.weights);
    bl.requant = q[l].requant;
    bl.scales = q[l].scales;
    bl.reference = q[l].reference;
    b.layers.push_back(std::move(bl));
  }
  return b;
}

void save_bundle(const std::filesystem::path& path, const Bundle& b) {
  nlohmann::json target_json = target::to_json(b.target);
  nlohmann::json manifest = {{"format", kFormatName},
                             {"version", kFormatVersion},
                             {"target", target_json},
                             {"target_hash", b.target_hash},
                             {"input", {{"rows", b.rows}, {"cols", b.cols}, {"encoding", "uint8 pixels"}}},
                             {"classes", b.classes},
                             {"weights_file", "weights.bin"},
                             {"layers", nlohmann::json::array()},
                             {"training", b.training}};
  std::vector<std::uint8_t> blob;
  for (std::size_t l = 0; l < b.layers.size(); ++l) {
    const BundleLayer& layer = b.layers[l];
    nlohmann::json requant = nlohmann::json::array();
    for (const auto& r : layer.requant) requant.push_back({r.mantissa, r.shift});
    manifest["layers"].push_back({{"index", l},
                                  {"in", layer.in},
                                  {"out", layer.out},
                                  {"relu", layer.relu},
                                  {"weights",
                                   {{"offset", blob.size()},
                                    {"bytes", layer.packed.size()},
                                    {"crc32", crc32_of(layer.packed)},
                                    {"layout", "row-major out x in; code i at bits (i % per_byte) * code_bits"}}},
                                  {"requant", requant},
                                  {"weight_scales", layer.scales},
                                  {"reference_scale", layer.reference}});
    blob.insert(blob.end(), layer.packed.begin(), layer.packed.end());
  }
  const std::filesystem::path staged = util::staging_directory_for(path);
  try {
    util::write_file_atomic(staged / "weights.bin",
                            std::string_view(reinterpret_cast<const char*>(blob.data()), blob.size()));
    util::write_file_atomic(staged / "manifest.json", manifest.dump(2) + "\n");
    util::replace_directory(staged, path);
  } catch (...) {
    std::error_code ec;
    std::filesystem::remove_all(staged, ec);
    throw;
  }
}

namespace {

Bundle read_bundle(const std::filesystem::path& path, const target::TargetSpec* expected) {
  const std::string where = path.string();
  if (!std::filesystem::is_directory(path)) throw BundleError(where + ": not a bundle directory");
  std::string text;
  try {
    text = util::read_file(path / "manifest.json");
  } catch (const util::IoError& e) {
    throw BundleError(e.what());
  }
  const std::string mf = (path / "manifest.json").string();
  const nlohmann::json m = nlohmann::json::parse(text, nullptr, false);
  if (m.is_discarded() || !m.is_object()) throw BundleError(mf + ": not valid JSON");
  auto field = [&](const nlohmann::json& j, const char* key, const std::string& name) -> const nlohmann::json& {
    if (!j.contains(key)) throw BundleError(mf + ": field '" + name + "' missing");
    return j.at(key);
  };
  if (m.value("format", "") != kFormatName) throw BundleError(mf + ": field 'format' is not \"" + kFormatName + "\"");
  if (m.value("version", 0) != kFormatVersion)
    throw BundleError(mf + ": field 'version': " + field(m, "version", "version").dump() + " not supported (expected " +
                      std::to_string(kFormatVersion) + ")");
  Bundle b;
  try {
    b.target = target::target_from_json(field(m, "target", "target"), mf + " [target]");
    b.target_hash = field(m, "target_hash", "target_hash").get<std::string>();
    const nlohmann::json& input = field(m, "input", "input");
    b.rows = field(input, "rows", "input.rows").get<int>();
    b.cols = field(input, "cols", "input.cols").get<int>();
    b.classes = field(m, "classes", "classes").get<int>();
    b.training = m.value("training", nlohmann::json::object());
  } catch (const nlohmann::json::exception& e) {
    throw BundleError(mf + ": " + e.what());
  } catch (const target::TargetError& e) {
    throw BundleError(e.what());
  }
  if (target::content_hash(b.target) != b.target_hash)
    throw BundleError(mf + ": field 'target_hash' " + b.target_hash + " does not match the embedded target (" +
                      target::content_hash(b.target) + "): the manifest was altered");
  if (expected && target::content_hash(*expected) != b.target_hash)
    throw BundleError(where + ": built for target '" + b.target.name + "' (hash " + b.target_hash + "), not for '" +
                      expected->name + "' (hash " + target::content_hash(*expected) + ")");

  std::string blob;
  try {
    blob = util::read_file(path / field(m, "weights_file", "weights_file").get<std::string>());
  } catch (const util::IoError& e) {
    throw BundleError(e.what());
  }
  const arith::WeightFormat wf = b.target.format.weights;
  const nlohmann::json& layers = field(m, "layers", "layers");
  int expected_in = b.rows * b.cols;
  for (std::size_t l = 0; l < layers.size(); ++l) {
    const std::string lname = "layers[" + std::to_string(l) + "]";
    const nlohmann::json& lj = layers[l];
    BundleLayer bl;
    try {
      bl.in = field(lj, "in", lname + ".in").get<int>();
      bl.out = field(lj, "out", lname + ".out").get<int>();
      bl.relu = field(lj, "relu", lname + ".relu").get<bool>();
      bl.format = wf;
      const nlohmann::json& w = field(lj, "weights", lname + ".weights");
      const std::size_t offset = field(w, "offset", lname + ".weights.offset").get<std::size_t>();
      const std::size_t bytes = field(w, "bytes", lname + ".weights.bytes").get<std::size_t>();
      const std::uint32_t crc = field(w, "crc32", lname + ".weights.crc32").get<std::uint32_t>();
      if (bl.in != expected_in || bl.out <= 0)
        throw BundleError(mf + ": field '" + lname + ".in': " + std::to_string(bl.in) + " does not match the " +
                          std::to_string(expected_in) + " outputs before it");
      if (bytes != arith::packed_bytes(static_cast<std::size_t>(bl.in) * bl.out, wf))
        throw BundleError(mf + ": field '" + lname + ".weights.bytes' does not match the layer shape");
      if (offset > blob.size() || bytes > blob.size() - offset)
        throw BundleError((path / "weights.bin").string() + ": truncated (" + lname + " lies beyond its end)");
      bl.packed.assign(blob.begin() + static_cast<std::ptrdiff_t>(offset),
                       blob.begin() + static_cast<std::ptrdiff_t>(offset + bytes));
      if (crc32_of(bl.packed) != crc)
        throw BundleError((path / "weights.bin").string() + ": checksum mismatch in " + lname + " (corrupt weights)");
      for (const auto& r : field(lj, "requant", lname + ".requant")) {
        const arith::FixedPoint fp{r.at(0).get<std::int64_t>(), r.at(1).get<int>()};
        if (fp.mantissa < 0 || fp.mantissa >= (std::int64_t{1} << b.target.format.scale_mantissa_bits) ||
            fp.shift < b.target.format.scale_shift_min || fp.shift > b.target.format.scale_shift_max)
          throw BundleError(mf + ": field '" + lname + ".requant': pair outside the target's scale format");
        bl.requant.push_back(fp);
      }
      if (static_cast<int>(bl.requant.size()) != bl.out)
        throw BundleError(mf + ": field '" + lname + ".requant' needs one pair per output channel");
      bl.scales = lj.value("weight_scales", std::vector<float>{});
      bl.reference = lj.value("reference_scale", 0.0f);
    } catch (const nlohmann::json::exception& e) {
      throw BundleError(mf + ": " + lname + ": " + e.what());
    }
    // Codes beyond the quantizer's range (the ternary field 0b10, INT4 -8) are not weights any
    // trained model has, and the exactness bounds of the engines assume |code| <= qmax.
    for (std::size_t i = 0; i < static_cast<std::size_t>(bl.in) * bl.out; ++i) {
      const int code = arith::load_code(bl.packed.data(), i, wf);
      if (code < -arith::weight_qmax(wf) || code > arith::weight_qmax(wf))
        throw BundleError((path / "weights.bin").string() + ": invalid weight code " + std::to_string(code) + " in " +
                          lname + " (codes lie in [-" + std::to_string(arith::weight_qmax(wf)) + ", " +
                          std::to_string(arith::weight_qmax(wf)) + "])");
    }
    expected_in = bl.out;
    b.layers.push_back(std::move(bl));
  }
  if (b.layers.empty() || expected_in != b.classes)
    throw BundleError(mf + ": the last layer has " + std::to_string(expected_in) + " outputs, field 'classes' says " +
                      std::to_string(b.classes));
  return b;
}

}  // namespace

Bundle load_bundle(const std::filesystem::path& path, const target::TargetSpec* expected) {
  try {
    return read_bundle(path, expected);
  } catch (const nlohmann::json::exception& e) {
    // A field of the wrong JSON type anywhere in the manifest.
    throw BundleError((path / "manifest.json").string() + ": " + e.what());
  }
}

}  // namespace qathw::training
