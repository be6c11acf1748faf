#include "qathw/model/golden.h"

#include <cstdio>
#include <cstring>
#include <sstream>

#include "qathw/util/atomic_file.h"

namespace qathw::model {
namespace {

// NumPy format 1.0: magic, version, header length, a Python dict padded to a 64-byte boundary.
std::string npy_header(const std::string& descr, const std::vector<std::size_t>& shape) {
  std::string dims;
  for (std::size_t d : shape) dims += std::to_string(d) + ", ";
  if (shape.size() > 1) dims.erase(dims.size() - 2);
  std::string dict = "{'descr': '" + descr + "', 'fortran_order': False, 'shape': (" + dims + "), }";
  const std::size_t fixed = 10;  // magic (6) + version (2) + length (2)
  const std::size_t total = (fixed + dict.size() + 1 + 63) / 64 * 64;
  dict.append(total - fixed - dict.size() - 1, ' ');
  dict += '\n';
  std::string h = "\x93NUMPY";
  h += '\x01';
  h += '\x00';
  h += static_cast<char>(dict.size() & 0xff);
  h += static_cast<char>(dict.size() >> 8);
  return h + dict;
}

template <typename T>
void append_le(std::string& out, T v) {
  for (std::size_t b = 0; b < sizeof(T); ++b) out += static_cast<char>((static_cast<std::uint64_t>(v) >> (8 * b)) & 0xff);
}

std::string hex_word(std::uint64_t v, int digits) {
  char buf[24];
  std::snprintf(buf, sizeof buf, "%0*llx\n", digits, static_cast<unsigned long long>(v));
  return buf;
}

}  // namespace

void write_golden_vectors(const std::filesystem::path& dir, const Bundle& b, const std::uint8_t* inputs,
                          const std::vector<OpOutputs>& outputs, const std::string& bundle_path) {
  const Graph& g = b.graph;
  const std::size_t samples = outputs.size();
  const Tensor& in = g.tensor(g.input);
  nlohmann::json index = {{"bundle", bundle_path},
                          {"target", b.target.name},
                          {"target_hash", b.target_hash},
                          {"samples", samples},
                          {"input", nullptr},
                          {"ops", nlohmann::json::array()}};
  util::write_directory_atomic(dir, [&](const std::filesystem::path& staged) {
    {
      std::string npy = npy_header("|u1", {samples, static_cast<std::size_t>(in.tokens), static_cast<std::size_t>(in.features)});
      std::string hex;
      for (std::size_t i = 0; i < samples * in.size(); ++i) {
        npy += static_cast<char>(inputs[i]);
        hex += hex_word(inputs[i], 2);
      }
      util::write_file_atomic(staged / "input.npy", npy);
      util::write_file_atomic(staged / "input.hex", hex);
      index["input"] = {{"tensor", in.name}, {"dtype", "uint8"}, {"shape", {samples, in.tokens, in.features}},
                        {"npy", "input.npy"}, {"hex", "input.hex"}, {"hex_bits", 8}};
    }
    for (std::size_t op = 0; op < g.ops.size(); ++op) {
      const Op& o = g.ops[op];
      const Tensor& t = g.tensor(o.output);
      std::string npy = npy_header("<i4", {samples, static_cast<std::size_t>(t.tokens), static_cast<std::size_t>(t.features)});
      std::string hex;
      for (std::size_t i = 0; i < samples; ++i) {
        const std::vector<std::int32_t>& v = outputs[i].at(op);
        if (v.size() != t.size())
          throw BundleError("golden vectors: op '" + o.name + "' has " + std::to_string(v.size()) + " outputs in sample " +
                            std::to_string(i) + ", its tensor " + std::to_string(t.size()));
        for (std::int32_t x : v) {
          append_le(npy, static_cast<std::uint32_t>(x));
          hex += hex_word(static_cast<std::uint32_t>(x), 8);
        }
      }
      const std::string stem = std::to_string(op) + "_" + o.name;
      util::write_file_atomic(staged / (stem + ".npy"), npy);
      util::write_file_atomic(staged / (stem + ".hex"), hex);
      index["ops"].push_back({{"index", op},
                              {"name", o.name},
                              {"type", to_string(o.type)},
                              {"input", o.input},
                              {"tensor", t.name},
                              {"dtype", to_string(t.dtype)},
                              {"shape", {samples, t.tokens, t.features}},
                              {"npy", stem + ".npy"},
                              {"hex", stem + ".hex"},
                              {"hex_bits", 32}});
    }
    util::write_file_atomic(staged / "index.json", index.dump(2) + "\n");
  });
}

NpyArray read_npy(const std::filesystem::path& path) {
  const std::string data = util::read_file(path);
  const std::string where = path.string();
  if (data.size() < 10 || data.compare(0, 6, "\x93NUMPY") != 0) throw BundleError(where + ": not a .npy file");
  const std::size_t len = static_cast<unsigned char>(data[8]) | (static_cast<std::size_t>(static_cast<unsigned char>(data[9])) << 8);
  if (10 + len > data.size()) throw BundleError(where + ": truncated header");
  const std::string header = data.substr(10, len);
  NpyArray a;
  const bool i4 = header.find("'descr': '<i4'") != std::string::npos;
  const bool u1 = header.find("'descr': '|u1'") != std::string::npos;
  if (!i4 && !u1) throw BundleError(where + ": element type is neither <i4 nor |u1");
  const std::size_t open = header.find("'shape': ("), close = header.find(')', open);
  if (open == std::string::npos || close == std::string::npos) throw BundleError(where + ": no shape");
  std::stringstream dims(header.substr(open + 10, close - open - 10));
  std::string d;
  std::size_t count = 1;
  while (std::getline(dims, d, ','))
    if (d.find_first_not_of(' ') != std::string::npos) {
      a.shape.push_back(std::stoul(d));
      count *= a.shape.back();
    }
  const std::size_t width = i4 ? 4 : 1;
  if (data.size() - 10 - len != count * width) throw BundleError(where + ": size does not match the shape");
  const auto* p = reinterpret_cast<const unsigned char*>(data.data()) + 10 + len;
  for (std::size_t i = 0; i < count; ++i) {
    if (u1) {
      a.values.push_back(p[i]);
    } else {
      std::uint32_t u = 0;
      for (int k = 3; k >= 0; --k) u = (u << 8) | p[4 * i + k];
      a.values.push_back(static_cast<std::int32_t>(u));
    }
  }
  return a;
}

std::vector<std::int64_t> read_memh(const std::filesystem::path& path, int bits) {
  std::stringstream in(util::read_file(path));
  std::vector<std::int64_t> out;
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    const std::uint64_t u = std::stoull(line, nullptr, 16);
    out.push_back(arith::wrap(static_cast<std::int64_t>(u), bits));
  }
  return out;
}

}  // namespace qathw::model
