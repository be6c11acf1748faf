// A network to train, as a models/*.toml file describes it: the input's shape and a list of
// layers (docs/models.md). Parsing infers every layer's output shape and refuses what the op graph
// could not hold, naming the file and the field; the trainer builds its modules from the spec and
// exports the op graph, with an activation quantizer before each conv2d and linear layer.
#pragma once

#include <filesystem>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "qathw/arith.h"
#include "qathw/model/graph.h"

namespace qathw::model {

class ModelError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// A layer's output: a feature map (height x width x channels) or a plain vector of `channels`.
struct Shape {
  int height = 0, width = 0, channels = 0;
  bool is_map() const { return height > 0; }
  long size() const { return is_map() ? static_cast<long>(height) * width * channels : channels; }
};

enum class LayerKind : std::uint8_t { Conv2d, Linear, Relu, MaxPool, AvgPool, GlobalAvgPool, Add, Flatten };

struct LayerSpec {
  LayerKind kind = LayerKind::Relu;
  std::string name;      // optional; `input` and an add's `residual` refer to layers by name
  std::string input;     // the named layer this one reads; empty: the previous layer
  int out = 0;           // conv2d: output channels; linear: outputs (the classes for the last layer)
  arith::Window window;  // conv2d and the pools
  int groups = 1;        // conv2d
  std::string residual;  // add
  Shape in_shape, out_shape;  // inferred
};

// The recipe a model file recommends (its [training] table): defaults for `qat-hw train`'s
// options, which the command line overrides. Unset fields keep the trainer's defaults.
struct Recipe {
  std::optional<int> epochs, batch;
  std::optional<float> lr, weight_decay;
  std::optional<std::string> qat_init;  // "scratch" or "fp32"
};

struct ModelSpec {
  std::string name, description;
  Recipe recipe;
  std::string origin;  // the file (or built-in name) it came from, for messages
  Shape input;         // a feature map; its height x width is the image
  std::vector<LayerSpec> layers;
  int classes() const { return layers.back().out; }
};

std::string to_string(LayerKind k);

// Parses and checks a spec for `classes` output classes (the last layer is a linear layer of that
// many outputs: `out = "classes"`, or an integer equal to it). Throws ModelError naming `origin`
// and the field.
ModelSpec parse_model(std::string_view toml_text, const std::string& origin, int classes);

// Whether resolve_model reads `name_or_path` as a file (it holds a '/' or ends in .toml) rather
// than a built-in name.
bool is_model_path(const std::string& name_or_path);

// A built-in model (models/*.toml, compiled in) by name, or a .toml file.
ModelSpec resolve_model(const std::string& name_or_path, int classes);
// The built-in image models (a transformer's file, with its [transformer] table, is not one).
std::vector<std::string> builtin_model_names();
// The text of a built-in model or a .toml file, and `origin` set to name it in messages.
std::string model_text(const std::string& name_or_path, std::string& origin);
// Whether a model file's text holds a [transformer] table (the trainer's TransformerSpec reads it).
bool is_transformer_model(std::string_view toml_text);

// Multiply-accumulates of one sample through the model's conv2d and linear layers.
long model_macs(const ModelSpec& m);
// Kernel weights of the model's conv2d and linear layers.
long model_parameters(const ModelSpec& m);
// Kernel weights of one layer (0 for layers without a kernel); a conv2d kernel row is a patch.
int kernel_fan_in(const LayerSpec& l);

// The model as JSON: every layer's type, fields and inferred shapes (`qat-hw models show`, and
// what identifies a model in a training run's checkpoints).
nlohmann::json to_json(const ModelSpec& m);
nlohmann::json to_json(const Recipe& r);

// What a model's layer brings to the op graph besides its shape: a conv2d or linear layer its
// kernel (LinearParams) and, for a static input quantizer, its pair; an add its two pairs (the
// input's and the residual's). Average pools take the pair of 1 / area in the target's format.
struct LayerParams {
  LinearParams kernel;
  std::vector<arith::FixedPoint> input_quantizer;  // {} dynamic, {1 / scale} static
  std::vector<arith::FixedPoint> pairs;            // add
};

// The op graph of a model: the input a feature map of pixels; each conv2d and linear layer reads
// activation codes through a quantize op of its own; relu, pools, add and flatten as ops of
// their own. `params` has one entry per layer (used for conv2d, linear and add). Tensors and ops
// are named "layer<i>.<type>" ("layer<i>.quantize" and "layer<i>.codes" for a quantizer).
// Throws ModelError when a pool's 1 / area has no pair in the target's scale format.
Graph lower_model(const ModelSpec& m, std::vector<LayerParams> params, const arith::Format& f);

}  // namespace qathw::model
