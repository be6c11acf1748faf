#include "qathw/model/model_spec.h"

#include <toml++/toml.h>

#include <cmath>
#include <map>
#include <set>
#include <sstream>

#include "builtin_models.h"
#include "qathw/util/atomic_file.h"

namespace qathw::model {
namespace {

const std::pair<LayerKind, const char*> kKinds[] = {
    {LayerKind::Conv2d, "conv2d"},   {LayerKind::Linear, "linear"},   {LayerKind::Relu, "relu"},
    {LayerKind::MaxPool, "max_pool"}, {LayerKind::AvgPool, "avg_pool"}, {LayerKind::GlobalAvgPool, "global_avg_pool"},
    {LayerKind::Add, "add"},         {LayerKind::Flatten, "flatten"}};

std::string shape_text(const Shape& s) {
  if (s.is_map())
    return "[" + std::to_string(s.height) + ", " + std::to_string(s.width) + ", " + std::to_string(s.channels) + "]";
  return "[" + std::to_string(s.channels) + "]";
}

// Reads fields of one TOML table; every error names the origin and the dotted field.
class Fields {
 public:
  Fields(const std::string& origin, const toml::table& t, std::string prefix)
      : origin_(origin), t_(t), prefix_(std::move(prefix)) {}

  [[noreturn]] void fail(const std::string& key, const std::string& what) const {
    throw ModelError(origin_ + ": field '" + prefix_ + key + "': " + what);
  }

  void only(std::initializer_list<std::string_view> allowed) const {
    for (const auto& [k, v] : t_) {
      bool ok = false;
      for (auto a : allowed) ok = ok || k.str() == a;
      if (ok) continue;
      std::string list;
      for (auto a : allowed) list += (list.empty() ? "" : ", ") + std::string(a);
      fail(std::string(k.str()), "unknown field; allowed here: " + list);
    }
  }

  bool has(const char* key) const { return t_.contains(key); }

  // A finite number (an integer is taken as one) in [lo, hi].
  double real(const char* key, double lo, double hi) const {
    const toml::node& n = *t_.get(key);
    const auto v = n.value<double>();
    if (!(n.is_floating_point() || n.is_integer()) || !v || !std::isfinite(*v) || *v < lo || *v > hi)
      fail(key, "must be a number in [" + shown(lo) + ", " + shown(hi) + "]");
    return *v;
  }
  static std::string shown(double v) {
    std::ostringstream o;
    o << v;
    return o.str();
  }

  std::string string(const char* key, bool required) const {
    if (!has(key)) {
      if (required) fail(key, "missing");
      return "";
    }
    const auto v = t_[key].value<std::string>();
    if (!t_[key].is_string() || !v) fail(key, "must be a string");
    return *v;
  }

  long integer(const toml::node& n, const std::string& key, long lo, long hi) const {
    const auto v = n.value_exact<std::int64_t>();
    if (!v || *v < lo || *v > hi)
      fail(key, "must be an integer in [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
    return static_cast<long>(*v);
  }

  long integer(const char* key, long fallback, long lo, long hi) const {
    return has(key) ? integer(*t_.get(key), key, lo, hi) : fallback;
  }

  // An integer, or [height, width] of two.
  std::pair<int, int> pair(const char* key, int fallback, long lo, long hi) const {
    if (!has(key)) return {fallback, fallback};
    const toml::node& n = *t_.get(key);
    if (const toml::array* a = n.as_array()) {
      if (a->size() != 2) fail(key, "must be an integer or [height, width]");
      return {static_cast<int>(integer(*a->get(0), std::string(key) + "[0]", lo, hi)),
              static_cast<int>(integer(*a->get(1), std::string(key) + "[1]", lo, hi))};
    }
    if (!n.is_integer()) fail(key, "must be an integer or [height, width]");
    const int v = static_cast<int>(integer(n, key, lo, hi));
    return {v, v};
  }

 private:
  const std::string& origin_;
  const toml::table& t_;
  std::string prefix_;
};

arith::Window read_window(const Fields& f, int default_stride_from_kernel) {
  arith::Window w;
  std::tie(w.kernel_h, w.kernel_w) = f.pair("kernel", 0, 1, 256);
  if (w.kernel_h == 0) f.fail("kernel", "missing");
  // Pools step by their kernel unless told; convolutions by 1.
  const auto [sh, sw] = f.pair("stride", 0, 1, 256);
  w.stride_h = sh ? sh : (default_stride_from_kernel ? w.kernel_h : 1);
  w.stride_w = sw ? sw : (default_stride_from_kernel ? w.kernel_w : 1);
  std::tie(w.pad_h, w.pad_w) = f.pair("padding", 0, 0, 255);
  return w;
}

// The window over `in` (a map), as the graph checks it.
void check_window(const Fields& f, const arith::Window& w, const Shape& in) {
  if (w.pad_h >= w.kernel_h || w.pad_w >= w.kernel_w) f.fail("padding", "must be below the kernel");
  if (in.height + 2 * w.pad_h < w.kernel_h || in.width + 2 * w.pad_w < w.kernel_w)
    f.fail("kernel", "[" + std::to_string(w.kernel_h) + ", " + std::to_string(w.kernel_w) + "] is larger than the " +
                         "padded input " + shape_text(in));
}

}  // namespace

std::string to_string(LayerKind k) {
  for (const auto& [v, name] : kKinds)
    if (v == k) return name;
  return "?";
}

ModelSpec parse_model(std::string_view toml_text, const std::string& origin, int classes) {
  toml::table root;
  try {
    root = toml::parse(toml_text, origin);
  } catch (const toml::parse_error& e) {
    const auto& pos = e.source().begin;
    throw ModelError(origin + ":" + std::to_string(pos.line) + ":" + std::to_string(pos.column) +
                     ": TOML syntax error: " + std::string(e.description()));
  }
  const Fields top(origin, root, "");
  if (top.has("transformer"))
    top.fail("transformer", "the model is a transformer language model: it trains on text (qat-hw train --model " +
                                origin + " --data text:PATH), not as an image network");
  top.only({"name", "description", "input", "layers", "training"});
  ModelSpec m;
  m.origin = origin;
  m.name = top.string("name", true);
  if (m.name.empty()) top.fail("name", "must not be empty");
  m.description = top.string("description", false);
  const toml::array* input = root["input"].as_array();
  if (!top.has("input")) top.fail("input", "missing: the image shape [height, width, channels]");
  if (!input || input->size() != 3) top.fail("input", "must be [height, width, channels]");
  m.input.height = static_cast<int>(top.integer(*input->get(0), "input[0]", 1, 8192));
  m.input.width = static_cast<int>(top.integer(*input->get(1), "input[1]", 1, 8192));
  m.input.channels = static_cast<int>(top.integer(*input->get(2), "input[2]", 1, 4096));
  if (m.input.size() > (1L << 26)) top.fail("input", "holds more than 2^26 values");

  if (top.has("training")) {
    const toml::table* t = root["training"].as_table();
    if (!t) top.fail("training", "must be a table of recipe defaults");
    const Fields r(origin, *t, "training.");
    r.only({"epochs", "batch", "lr", "weight_decay", "qat_init"});
    if (r.has("epochs")) m.recipe.epochs = static_cast<int>(r.integer("epochs", 0, 1, 10000));
    if (r.has("batch")) m.recipe.batch = static_cast<int>(r.integer("batch", 0, 1, 65536));
    if (r.has("lr")) m.recipe.lr = static_cast<float>(r.real("lr", 1e-7, 10.0));
    if (r.has("weight_decay")) m.recipe.weight_decay = static_cast<float>(r.real("weight_decay", 0.0, 10.0));
    if (r.has("qat_init")) {
      m.recipe.qat_init = r.string("qat_init", true);
      if (*m.recipe.qat_init != "scratch" && *m.recipe.qat_init != "fp32")
        r.fail("qat_init", "must be \"scratch\" or \"fp32\", not \"" + *m.recipe.qat_init + "\"");
    }
  }

  if (!top.has("layers")) top.fail("layers", "missing: a list of [[layers]] tables");
  const toml::array* layers = root["layers"].as_array();
  if (!layers || !layers->is_array_of_tables() || layers->empty())
    top.fail("layers", "must be a non-empty list of [[layers]] tables");
  if (layers->size() > 1024) top.fail("layers", "more than 1024 layers");

  std::map<std::string, Shape> named;
  Shape x = m.input;
  for (std::size_t i = 0; i < layers->size(); ++i) {
    const toml::table& t = *layers->get(i)->as_table();
    const std::string key = "layers[" + std::to_string(i) + "].";
    const Fields f(origin, t, key);
    LayerSpec l;
    const std::string type = f.string("type", true);
    bool known = false;
    for (const auto& [v, name] : kKinds)
      if (type == name) l.kind = v, known = true;
    if (!known)
      f.fail("type", "'" + type + "' is not a layer type (conv2d, linear, relu, max_pool, avg_pool, global_avg_pool, "
                     "add, flatten)");
    const bool last = i + 1 == layers->size();
    // A layer reads the previous layer's output, or the named layer's (`input`): a branch.
    if (f.has("input")) {
      l.input = f.string("input", true);
      const auto from = named.find(l.input);
      if (from == named.end()) f.fail("input", "'" + l.input + "' names no earlier layer");
      x = from->second;
    }
    l.in_shape = x;
    const auto needs_map = [&] {
      if (!x.is_map()) f.fail("type", type + " needs a feature map; its input is " + shape_text(x));
    };
    switch (l.kind) {
      case LayerKind::Conv2d: {
        f.only({"type", "name", "input", "out", "kernel", "stride", "padding", "groups"});
        needs_map();
        l.out = static_cast<int>(f.integer("out", 0, 1, 4096));
        if (!l.out) f.fail("out", "missing: the output channels");
        l.window = read_window(f, 0);
        check_window(f, l.window, x);
        l.groups = static_cast<int>(f.integer("groups", 1, 1, 4096));
        if (x.channels % l.groups || l.out % l.groups)
          f.fail("groups", std::to_string(l.groups) + " must divide the input channels (" + std::to_string(x.channels) +
                               ") and out (" + std::to_string(l.out) + ")");
        x = {l.window.out_h(x.height), l.window.out_w(x.width), l.out};
        break;
      }
      case LayerKind::Linear: {
        f.only({"type", "name", "input", "out"});
        if (x.is_map()) f.fail("type", "linear needs a vector: its input is the feature map " + shape_text(x) +
                                           " (flatten it first)");
        if (!f.has("out")) f.fail("out", "missing: the outputs (\"classes\" for the last layer)");
        const toml::node& out = *t.get("out");
        if (out.is_string()) {
          if (out.value<std::string>() != "classes") f.fail("out", "must be an integer or \"classes\"");
          l.out = classes;
        } else {
          l.out = static_cast<int>(f.integer(out, key + "out", 1, 65536) + 0);
        }
        x = {0, 0, l.out};
        break;
      }
      case LayerKind::MaxPool:
      case LayerKind::AvgPool:
        f.only({"type", "name", "input", "kernel", "stride", "padding"});
        needs_map();
        l.window = read_window(f, 1);
        check_window(f, l.window, x);
        x = {l.window.out_h(x.height), l.window.out_w(x.width), x.channels};
        break;
      case LayerKind::GlobalAvgPool:
        f.only({"type", "name", "input"});
        needs_map();
        l.window = {x.height, x.width, 1, 1, 0, 0};
        x = {1, 1, x.channels};
        break;
      case LayerKind::Add: {
        f.only({"type", "name", "input", "residual"});
        l.residual = f.string("residual", true);
        const auto r = named.find(l.residual);
        if (r == named.end()) f.fail("residual", "'" + l.residual + "' names no earlier layer");
        if (r->second.height != x.height || r->second.width != x.width || r->second.channels != x.channels)
          f.fail("residual", "'" + l.residual + "' is " + shape_text(r->second) + ", this layer's input " +
                                 shape_text(x));
        break;
      }
      case LayerKind::Flatten:
        f.only({"type", "name", "input"});
        needs_map();
        x = {0, 0, static_cast<int>(x.size())};
        break;
      case LayerKind::Relu:
        f.only({"type", "name", "input"});
        break;
    }
    if (x.size() > (1L << 26)) f.fail("type", "the output " + shape_text(x) + " holds more than 2^26 values");
    l.name = f.string("name", false);
    if (f.has("name")) {
      if (l.name.empty()) f.fail("name", "must not be empty");
      if (!named.emplace(l.name, x).second) f.fail("name", "'" + l.name + "' names two layers");
    }
    l.out_shape = x;
    if (last && (l.kind != LayerKind::Linear || l.out != classes))
      f.fail("type", "the last layer must be a linear layer of the " + std::to_string(classes) +
                         " classes (out = \"classes\")");
    m.layers.push_back(std::move(l));
  }
  if (model_macs(m) > (1L << 32)) top.fail("layers", "more than 2^32 multiply-accumulates per sample");
  return m;
}

int kernel_fan_in(const LayerSpec& l) {
  if (l.kind == LayerKind::Linear) return l.in_shape.channels;
  if (l.kind == LayerKind::Conv2d) return l.window.kernel_h * l.window.kernel_w * (l.in_shape.channels / l.groups);
  return 0;
}

long model_macs(const ModelSpec& m) {
  long macs = 0;
  for (const LayerSpec& l : m.layers) {
    const long outputs = l.kind == LayerKind::Conv2d ? l.out_shape.size() : l.out;
    if (kernel_fan_in(l) > 0) macs += outputs * kernel_fan_in(l);
  }
  return macs;
}

long model_parameters(const ModelSpec& m) {
  long n = 0;
  for (const LayerSpec& l : m.layers) n += static_cast<long>(kernel_fan_in(l)) * (kernel_fan_in(l) > 0 ? l.out : 0);
  return n;
}

nlohmann::json to_json(const Recipe& r) {
  nlohmann::json j = nlohmann::json::object();
  if (r.epochs) j["epochs"] = *r.epochs;
  if (r.batch) j["batch"] = *r.batch;
  if (r.lr) j["lr"] = *r.lr;
  if (r.weight_decay) j["weight_decay"] = *r.weight_decay;
  if (r.qat_init) j["qat_init"] = *r.qat_init;
  return j;
}

nlohmann::json to_json(const ModelSpec& m) {
  const auto shape = [](const Shape& s) {
    return s.is_map() ? nlohmann::json{s.height, s.width, s.channels} : nlohmann::json{s.channels};
  };
  nlohmann::json layers = nlohmann::json::array();
  for (const LayerSpec& l : m.layers) {
    nlohmann::json j = {{"type", to_string(l.kind)}, {"in", shape(l.in_shape)}, {"out", shape(l.out_shape)}};
    if (!l.name.empty()) j["name"] = l.name;
    if (!l.input.empty()) j["input"] = l.input;
    if (!l.residual.empty()) j["residual"] = l.residual;
    const arith::Window& w = l.window;
    if (l.kind == LayerKind::Conv2d || l.kind == LayerKind::MaxPool || l.kind == LayerKind::AvgPool) {
      j["kernel"] = {w.kernel_h, w.kernel_w};
      j["stride"] = {w.stride_h, w.stride_w};
      j["padding"] = {w.pad_h, w.pad_w};
    }
    if (l.kind == LayerKind::Conv2d) j["groups"] = l.groups;
    layers.push_back(j);
  }
  return {{"name", m.name},           {"description", m.description}, {"origin", m.origin},
          {"input", shape(m.input)},  {"classes", m.classes()},       {"parameters", model_parameters(m)},
          {"macs", model_macs(m)},    {"layers", layers},            {"training", to_json(m.recipe)}};
}

Graph lower_model(const ModelSpec& m, std::vector<LayerParams> params, const arith::Format& f) {
  if (params.size() != m.layers.size()) throw ModelError(m.origin + ": one parameter set per layer is needed");
  Graph g;
  g.input = "input";
  g.tensors.push_back(map_tensor("input", DType::Pixels, m.input.height, m.input.width, m.input.channels));
  const auto tensor_of = [](const std::string& name, DType dtype, const Shape& s) {
    return s.is_map() ? map_tensor(name, dtype, s.height, s.width, s.channels) : Tensor{name, dtype, 1, s.channels};
  };
  std::map<std::string, std::string> output_of;  // layer name -> its output tensor
  std::string x = g.input;
  for (std::size_t i = 0; i < m.layers.size(); ++i) {
    const LayerSpec& l = m.layers[i];
    const std::string p = "layer" + std::to_string(i) + ".";
    if (!l.input.empty()) x = output_of.at(l.input);
    Op op;
    op.type = l.kind == LayerKind::Conv2d          ? OpType::Conv2d
              : l.kind == LayerKind::Linear        ? OpType::Linear
              : l.kind == LayerKind::Relu          ? OpType::Relu
              : l.kind == LayerKind::MaxPool       ? OpType::MaxPool
              : l.kind == LayerKind::Add           ? OpType::Add
              : l.kind == LayerKind::Flatten       ? OpType::Flatten
                                                   : OpType::AvgPool;  // avg_pool, global_avg_pool
    op.name = p + to_string(op.type);
    op.window = l.window;
    op.groups = l.groups;
    if (op.type == OpType::Conv2d || op.type == OpType::Linear) {
      // The kernel reads codes: a quantizer of its own on the layer's input.
      Op q;
      q.type = OpType::Quantize;
      q.name = p + "quantize";
      q.input = x;
      q.output = p + "codes";
      q.pairs = params[i].input_quantizer;
      g.tensors.push_back(tensor_of(q.output, DType::Codes, l.in_shape));
      g.ops.push_back(q);
      x = q.output;
      op.linear = std::move(params[i].kernel);
    }
    if (op.type == OpType::AvgPool) {
      const arith::FixedPointResult r = arith::average_pool_pair(l.window, f);
      if (r.status != arith::FixedPointStatus::Ok)
        throw ModelError(m.origin + ": field 'layers[" + std::to_string(i) + "].kernel': 1 / area has no pair in the " +
                         "target's scale format");
      op.pairs = {r.value};
    }
    if (op.type == OpType::Add) {
      op.residual = output_of.at(l.residual);
      op.pairs = params[i].pairs;
    }
    op.input = x;
    op.output = p + to_string(op.type);
    // A flatten keeps its input's type (the pixels, for an MLP); every other op writes values.
    const DType dtype = op.type == OpType::Flatten ? g.tensor(x).dtype : DType::Values;
    g.tensors.push_back(tensor_of(op.output, dtype, l.out_shape));
    g.ops.push_back(std::move(op));
    x = g.ops.back().output;
    if (!l.name.empty()) output_of[l.name] = x;
  }
  g.output = x;
  return g;
}

std::vector<std::string> builtin_model_names() {
  std::vector<std::string> names;
  for (const auto& b : kBuiltinModels)
    if (!is_transformer_model(b.toml)) names.emplace_back(b.name);
  return names;
}

bool is_transformer_model(std::string_view toml_text) {
  try {
    return toml::parse(toml_text).contains("transformer");
  } catch (const toml::parse_error&) {
    return false;
  }
}

std::string model_text(const std::string& name_or_path, std::string& origin) {
  if (!is_model_path(name_or_path)) {
    for (const auto& b : kBuiltinModels)
      if (b.name == name_or_path) {
        origin = "models/" + name_or_path + ".toml";
        return std::string(b.toml);
      }
    std::string list;
    for (const auto& b : kBuiltinModels) list += (list.empty() ? "" : ", ") + std::string(b.name);
    throw ModelError("unknown model '" + name_or_path + "' (built-in: " + list + "; or a .toml file)");
  }
  // A model file is a page of TOML: 1 MiB is far more than any needs.
  origin = name_or_path;
  try {
    return util::read_file(name_or_path, std::uint64_t{1} << 20);
  } catch (const util::IoError& e) {
    throw ModelError(e.what());
  }
}

bool is_model_path(const std::string& name_or_path) {
  return name_or_path.find('/') != std::string::npos ||
         (name_or_path.size() > 5 && name_or_path.substr(name_or_path.size() - 5) == ".toml");
}

ModelSpec resolve_model(const std::string& name_or_path, int classes) {
  std::string origin;
  const std::string text = model_text(name_or_path, origin);
  return parse_model(text, origin, classes);
}

}  // namespace qathw::model
