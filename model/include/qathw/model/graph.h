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
  Pixels,  // uint8 input samples: an image's pixels, or a sequence's byte tokens
  Values,  // datapath integers: requantized accumulators (signed, acc_bits)
  Codes,   // activation codes (signed, act_bits)
  Probs,   // softmax probability codes (unsigned, prob_bits: 2^prob_bits - 1 is 1)
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
  // The transformer's ops (docs/bundle.md, "Transformer ops"); a sequence is one sample of
  // `context` tokens, attention's heads are `groups` equal slices of a token's features.
  Embed,        // byte tokens [T, 1] -> Values [T, width]: token table row + position table row
  RmsNorm,      // per token: RMSNorm with gain pairs: Values -> Values
  SquaredRelu,  // relu(v)^2 shifted right by `shift`: Values -> Values
  Scores,       // per token and head: Q codes . each visible key's codes, requantized: -> Values [T, heads x T]
  Softmax,      // per token and head: the causal row's integer softmax: Values [T, heads x T] -> Probs
  Attend,       // per token and head: probabilities . the value codes' columns: Probs, Codes -> Values [T, width]
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

// An embedding's integer tables at the stream's scale: a row per token value and per position.
struct EmbedParams {
  int vocabulary = 0, positions = 0, width = 0;
  std::vector<std::int32_t> tokens;     // vocabulary x width
  std::vector<std::int32_t> positions_table;  // positions x width
};

// The softmax unit's sizes: the exp2 table's index and value bits, the probability codes' bits.
struct SoftmaxParams {
  int index_bits = 0, value_bits = 0, prob_bits = 0;
};

struct Op {
  OpType type = OpType::Relu;
  std::string name;
  std::string input, output;  // tensor names
  LinearParams linear;        // Linear and Conv2d (a kernel is a row of in = patch codes)
  arith::Window window{};     // Conv2d, MaxPool, AvgPool
  // Conv2d: its groups; Quantize (dynamic): a scale per group of a token's features; Scores,
  // Softmax, Attend: the attention heads.
  int groups = 1;
  // The second input: Add's residual (added to `input`), Scores' key codes, Attend's value codes.
  std::string residual{};
  // Quantize: {} dynamic per-token (per group) absmax, {1 / scale} static; AvgPool: {1 / area};
  // Add: {input's, residual's}; RmsNorm: a gain pair per feature; Embed: {token's, position's};
  // Scores: {the row's static pair}.
  std::vector<arith::FixedPoint> pairs{};
  // A pair that follows the token: the codes tensors (each written by a dynamic Quantize) whose
  // per-token absmax multiply the op's last pair, in this order (arith::token_pair): static
  // Quantize, Add (the residual's pair) and Scores (a factor of `groups` groups gives the head's).
  std::vector<std::string> factors{};
  int shift = 0;           // SquaredRelu
  std::uint64_t eps = 0;   // RmsNorm: eps in units of the input squared
  SoftmaxParams softmax{};  // Softmax
  EmbedParams embed{};      // Embed

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
// GraphError naming the op or tensor, with the manifest field (field()). The attention ops'
// operands must fit the target's vector unit.
void validate(const Graph& g, const arith::Format& f, const arith::VectorUnit& vector_unit = {});

// The MLP graph as the trainer builds it: per layer quantize -> linear [-> relu]. `layers` gives
// each layer's parameters; relu[l] whether layer l ends in a ReLU.
Graph mlp_graph(int features, std::vector<LinearParams> layers, const std::vector<bool>& relu);

// Every op's output integers for one sample, in op order. An engine that does not observe an
// op's output (a fused hardware datapath keeps activation codes internal) leaves its entry empty.
using OpOutputs = std::vector<std::vector<std::int32_t>>;

}  // namespace qathw::model
