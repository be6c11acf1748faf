// The deployed model as a typed op graph: named tensors with shapes and element types, and ops
// that read and write them in order. What the trainer exports, the bundle stores and every engine
// runs. docs/bundle.md describes each op's integer rule (the arith core computes it).
#pragma once

#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "qathw/arith.h"

namespace qathw::model {

class GraphError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
  GraphError(std::string field, const std::string& what) : std::runtime_error(what), field_(std::move(field)) {}
  // The manifest field the error is about ("ops[3].input", "tensors[2].shape"), or empty.
  const std::string& field() const { return field_; }

 private:
  std::string field_;
};

// What a tensor's integers are.
enum class DType : std::uint8_t {
  Pixels,  // uint8 input samples
  Values,  // datapath integers: requantized accumulators (signed, acc_bits)
  Codes,   // activation codes (signed, act_bits)
};

// A tensor of `tokens` rows of `features` integers. The per-token quantizer works on each row.
// A feature map (height x width x channels, channels last: docs/arith.md) is one token of
// height * width * channels features: its quantizer sees the whole map, as a convolution needs.
struct Tensor {
  std::string name;
  DType dtype = DType::Values;
  int tokens = 1, features = 0;
  int height = 0, width = 0;  // a feature map's sides; 0 for a tensor that is not a map

  std::size_t size() const { return static_cast<std::size_t>(tokens) * static_cast<std::size_t>(features); }
  bool is_map() const { return height > 0; }
  int channels() const { return is_map() ? features / (height * width) : features; }
};

// A feature map tensor of height x width x channels.
Tensor map_tensor(std::string name, DType dtype, int height, int width, int channels);

enum class OpType : std::uint8_t {
  Quantize,  // activation quantizer, dynamic per-token absmax or static (pairs): Pixels or Values -> Codes
  Linear,    // codes x weight codes, accumulated as the array does, requantized: Codes -> Values
  Relu,      // max(v, 0): Values -> Values
  Conv2d,    // a code map's patches x weight codes, requantized per channel: Codes map -> Values map
  MaxPool,   // the largest value of each window: Values map -> Values map
  AvgPool,   // each window's sum, requantized by the pair of 1 / area: Values map -> Values map
  Add,       // two Values tensors of one shape aligned by their pairs and added: -> Values
  Flatten,   // a map as a plain tensor of one token, the integers unchanged: map -> [1, H W C]
};

// A linear op's parameters: weight codes packed as the weight SRAM holds them (row-major out x
// in) and one requantization pair per output channel.
struct LinearParams {
  int in = 0, out = 0;
  arith::WeightFormat format = arith::WeightFormat::Ternary;
  std::vector<std::uint8_t> packed;
  std::vector<arith::FixedPoint> requant;
  std::vector<float> scales;  // real weight scales (provenance; engines use integers only)
  float reference = 0;        // the layer's reference scale (the largest channel scale)

  int code(int n, int k) const;            // one weight code
  std::vector<std::int8_t> codes() const;  // all codes, unpacked, row-major out x in
};

struct Op {
  OpType type = OpType::Relu;
  std::string name;
  std::string input, output;  // tensor names
  LinearParams linear;        // Linear and Conv2d (a kernel is a row of in = patch codes)
  arith::Window window{};     // Conv2d, MaxPool, AvgPool
  int groups = 1;             // Conv2d
  std::string residual{};     // Add: the second input, added to `input`
  // Quantize: {} dynamic per-token absmax, {1 / scale} static per tensor; AvgPool: {1 / area};
  // Add: {input's, residual's}.
  std::vector<arith::FixedPoint> pairs{};

  // A convolution's shape from its input tensor (a map) and its own fields.
  arith::Conv2dShape conv_shape(const Tensor& input) const;
};

struct Graph {
  std::vector<Tensor> tensors;
  std::vector<Op> ops;  // in execution order
  std::string input, output;

  const Tensor& tensor(const std::string& name) const;  // throws GraphError if absent
  std::optional<std::size_t> find_tensor(const std::string& name) const;
  // The op writing tensor `name`, if any.
  std::optional<std::size_t> producer(const std::string& name) const;
};

std::string to_string(OpType t);
std::string to_string(DType t);
std::optional<OpType> op_type_from_string(const std::string& s);
std::optional<DType> dtype_from_string(const std::string& s);

// Checks that the graph is well formed for a target's format: unique names, every op's input
// written before it is read, each op's input and output types and shapes as its rule requires,
// the weights in the target's format with codes in range and requantization pairs in its scale
// format, every tensor but the input written by an op, and one output tensor of Values. Throws
// GraphError naming the op or tensor, with the manifest field (field()).
void validate(const Graph& g, const arith::Format& f);

// The MLP graph as the trainer builds it: per layer quantize -> linear [-> relu]. `layers` gives
// each layer's parameters; relu[l] whether layer l ends in a ReLU.
Graph mlp_graph(int features, std::vector<LinearParams> layers, const std::vector<bool>& relu);

// Every op's output integers for one sample, in op order. An engine that does not observe an
// op's output (a fused hardware datapath keeps activation codes internal) leaves its entry empty.
using OpOutputs = std::vector<std::vector<std::int32_t>>;

}  // namespace qathw::model
