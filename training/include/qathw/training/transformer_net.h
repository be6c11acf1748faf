// A BitNet b1.58 decoder-only language model on bytes (models/bitnet-tiny.toml): its FP32 twin with
// a hand-written backward pass, and the accelerator's integer forward (QAT) through the arith
// core's transformer rules, with straight-through estimators back to the float weights.
// docs/transformer.md states the network, the integer datapath and the training run.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "qathw/arith.h"
#include "qathw/model/model_spec.h"
#include "qathw/target/target_spec.h"
#include "qathw/training/text.h"
#include "qathw/training/trainer.h"

namespace qathw::training {

// ---- the model file ---------------------------------------------------------------------------

// A model file with a [transformer] table: the network's sizes and the recipe of its run.
struct TransformerSpec {
  std::string name, description;
  std::string origin;  // the file (or built-in name) it came from, for messages
  int vocabulary = kByteVocabulary;
  int context = 64;
  int width = 128;
  int layers = 2;
  int heads = 4;
  int ffn = 512;
  model::Recipe recipe;               // [training]: epochs, batch, lr, weight_decay, qat_init
  std::optional<int> steps_per_epoch;  // [training].steps_per_epoch
  int head_dim() const { return width / heads; }
};

// Parses a transformer model file. Throws model::ModelError naming `origin` and the field.
TransformerSpec parse_transformer(std::string_view toml_text, const std::string& origin);

// A built-in transformer (models/NAME.toml) or a .toml file; nullopt when the model names an image
// network (a file or built-in without a [transformer] table). Throws model::ModelError for an
// unknown name, an unreadable file or a malformed transformer.
std::optional<TransformerSpec> resolve_transformer(const std::string& name_or_path);

nlohmann::json to_json(const TransformerSpec& s);

// ---- constants of the integer datapath that are not target fields (yet) ----------------------

// The softmax unit: exp2 table of 2^8 entries (L = 8 fraction bits of the log2-domain scores) with
// 20 fraction bits (softmax_sum_fits holds for rows up to 2048), 8-bit probability codes (255 = 1).
inline constexpr int kExp2IndexBits = 8;
inline constexpr int kExp2ValueBits = 20;
inline constexpr int kProbBits = 8;
// RMSNorm's eps, in the real units of x^2 (the integer rule takes round(eps / s_x^2)).
inline constexpr double kRmsNormEps = 1e-5;
// Each RMSNorm's output scale: the largest gain over 2^12, so every output holds at least 12 bits
// of x / rms (|y| <= 2^12 sqrt(width), far inside the accumulator).
inline constexpr int kNormOutputBits = 12;
// The residual stream's static scale: its calibrated largest magnitude sits 2^6 below the top of
// the accumulator's range.
inline constexpr int kStreamHeadroomBits = 6;

// ---- the network ------------------------------------------------------------------------------

class TransformerNet {
 public:
  // Parameters, in checkpoint order: the token embedding (vocabulary x width), the position
  // embedding (context x width); per layer the attention
  // norm's log-gains, Wq, Wk, Wv, Wo (width x width, out x in), the FFN norm's log-gains, Wup
  // (ffn x width), Wdown (width x ffn); the final norm's log-gains and the LM head (vocabulary x
  // width); then the quantizers' scales as logarithms: the residual stream's (fixed, gradient 0)
  // and per layer K's and V's static steps (learned, LSQ). Gains are learned as logarithms: the
  // norm's gain pairs are unsigned.
  struct Param {
    std::string name;
    int rows = 0, cols = 0;
    std::vector<float> w;
    bool decays = false;  // AdamW's weight decay applies (the matrices)
  };

  // Matrices uniform in +-1/sqrt(fan_in), the embeddings uniform in +-1, gains 1; seeded.
  TransformerNet(TransformerSpec spec, std::uint64_t seed);

  const TransformerSpec& spec() const { return spec_; }
  std::vector<Param>& params() { return p_; }
  const std::vector<Param>& params() const { return p_; }

  // FP32 twin: logits (batch x context x vocabulary) of `batch` sequences of context tokens.
  const std::vector<float>& forward(const std::uint8_t* tokens, int batch);
  // From d(loss)/d(logits) of the last forward (FP32 or quantized): every parameter's gradient.
  // After a quantized forward it is the straight-through backward on the quantized tensors' real
  // values; with `clip`, weight gradients are zero where the weight quantizer clips.
  void backward(const std::vector<float>& dlogits, std::vector<std::vector<float>>& grads, bool clip = false);

  // ---- the accelerator's computation (QAT) ---------------------------------------------------

  // Sets the residual stream's scale and K's and V's steps from a float forward of `batch`
  // sequences: the stream's largest magnitude 2^kStreamHeadroomBits below the accumulator's top,
  // the steps at the `fraction` percentile of |K| and |V| over qmax.
  void calibrate(const std::uint8_t* tokens, int batch, const arith::Format& f, double fraction);
  bool calibrated() const;

  // Quantizes every matrix for the target (arith's weight quantizer), once per step.
  void quantize_weights(const arith::Format& f);

  // The static integers of the accelerator's datapath for the current scales and quantized
  // weights: what forward_quantized computes with and the exported op graph stores. A pair that
  // follows the token is a static pair here, times the token's absmax factors (arith::token_pair).
  struct NormConstants {
    std::vector<arith::FixedPoint> gains;  // g_i / s_y
    double scale = 0;                      // s_y, the real value of one output integer
  };
  struct LayerConstants {
    NormConstants attention_norm, ffn_norm;
    arith::FixedPoint k, v;      // K's and V's quantizer: x the attention norm codes' absmax
    arith::FixedPoint scores;    // a score row: x the attention norm codes' absmax x the head's Q absmax
    arith::FixedPoint o_add;     // the attention branch to the stream: x O's input codes' absmax
    arith::FixedPoint down_add;  // the FFN branch: x Down's input absmax x the FFN norm codes' absmax twice
  };
  struct Datapath {
    arith::FixedPoint one;                 // the stream's own pair (1)
    std::uint64_t eps = 0;                 // RMSNorm's eps in units of the stream squared
    int norm_in_bits = 0, relu_shift = 0;  // RMSNorm's input saturation, the squared ReLU's shift
    std::vector<std::int32_t> token_table, position_table;  // the embeddings at the stream's scale
    std::vector<LayerConstants> layers;
    NormConstants final_norm;
  };
  // Throws std::runtime_error naming the scale that has no pair in the target's scale format.
  Datapath datapath(const arith::Format& f) const;

  // The integers the accelerator computes for `batch` sequences (docs/transformer.md), and the
  // logits' real values (each token's LM head integers times its unit).
  const std::vector<float>& forward_quantized(const std::uint8_t* tokens, int batch, const target::TargetSpec& t);

  // One matrix as the hardware holds it for a step.
  struct QuantizedMatrix {
    std::vector<float> codes, scales, dequantized, ste_mask;
    std::vector<arith::FixedPoint> requant;
    float reference = 0;
    // The codes packed for the int8 GEMM (kernels/int8_gemm.h) and their offsets; empty where it
    // does not run.
    std::vector<std::int8_t> packed;
    std::vector<std::int32_t> packed_offsets;
  };
  const QuantizedMatrix& quantized(std::size_t param) const { return q_[param]; }

  // Every integer of one decoder layer in the last forward_quantized (tokens row-major, width or
  // ffn values each; attention rows batch x heads x context x context).
  struct LayerIntegers {
    std::vector<std::int32_t> x;                   // the residual stream in (width)
    std::vector<std::int32_t> norm1;               // RMSNorm outputs
    std::vector<std::int32_t> q, k, v;             // BitLinear outputs
    std::vector<std::int16_t> q_codes, k_codes, v_codes;  // up to 16 activation bits
    std::vector<std::int32_t> scores;              // log2-domain scores (masked entries 0)
    std::vector<std::uint8_t> probs;               // probability codes
    std::vector<std::int32_t> attention;           // P V accumulators (unit: V's step / qp)
    std::vector<std::int32_t> o;                   // BitLinear O
    std::vector<std::int32_t> x_mid;               // the stream after the attention's add
    std::vector<std::int32_t> norm2, up, act, down;  // FFN: RMSNorm, BitLinear up, squared ReLU, down
  };
  struct Integers {
    std::vector<LayerIntegers> layers;
    std::vector<std::int32_t> x_out;   // the stream after the last layer
    std::vector<std::int32_t> norm;    // the final RMSNorm
    std::vector<std::int32_t> logits;  // the LM head's integers
    std::vector<double> logit_unit;    // per token: the real value of one logit integer
  };
  const Integers& integers() const { return ints_; }

  // Quantizer scales (real values of one integer or code): the stream's, K's and V's per layer.
  double stream_scale() const;
  double k_step(int layer) const;
  double v_step(int layer) const;
  // The output scale of an RMSNorm with these log-gains: max gain / 2^kNormOutputBits.
  static double norm_output_scale(const float* log_gains, int n);
  // The squared ReLU's shift for a target: the up projection's largest |output| can not saturate.
  int squared_relu_shift(const arith::Format& f) const;
  // The real value of a score row's log2-domain pair: q's code scale x K's step x log2(e) /
  // sqrt(head_dim) x 2^kExp2IndexBits (the pair requantizes the row's Q K^T accumulators).
  static double score_pair_value(double q_scale, double k_step, int head_dim);
  // Throws std::runtime_error, naming both widths, when the target's activation codes are wider
  // than its vector unit's operands (attention's Q, K, V codes are its operands).
  static void check_target(const target::TargetSpec& t);

 private:
  // The real values of one decoder layer that the backward pass reads: the FP32 forward's, or in QAT
  // the quantized tensors' (codes times their scales) and the integers' (integers times units).
  struct SavedLayer {
    std::vector<float> x, h1, h1q, q, k, v, kraw, vraw, p, att, attq, x_mid, h2, h2q, u, r, rq;
  };
  std::size_t gain_index(int layer, int which) const;   // which: 0 attention norm, 1 FFN norm
  std::size_t matrix_index(int layer, int which) const;  // 0 q, 1 k, 2 v, 3 o, 4 up, 5 down
  std::size_t final_gain_index() const;
  std::size_t head_index() const;
  std::size_t scale_index() const;  // the stream's log scale; the K and V log steps follow
  void resize_saved(int tokens);

  TransformerSpec spec_;
  std::vector<Param> p_;
  std::vector<QuantizedMatrix> q_;  // per parameter (empty for non-matrices)
  Integers ints_;
  int batch_ = 0;
  bool quantized_pass_ = false;
  double qmax_ = 127;  // the last forward_quantized's largest activation code
  std::vector<std::uint8_t> tokens_;
  std::vector<SavedLayer> saved_;
  std::vector<float> xf_, hf_, hfq_, logits_;  // the final norm's input and output, the head's input
  // Buffers of a step, kept between steps: the forward's branch, the backward's gradients.
  std::vector<float> branch_, dx_, dh_, tmp_, datt_, dr_;
  std::vector<float> dqkv_, gqkv_, wqkv_;  // dQ dK dV per token; Wq Wk Wv's gradients and weights stacked
  std::vector<double> lsq_sums_;  // per token: the K or V step's gradient sum
  // The quantized forward's scratch, kept between steps: a BitLinear's input codes (float and
  // bytes), its accumulators, the residual stream.
  struct QuantizedScratch {
    std::vector<float> codes, acc;
    std::vector<std::uint8_t> code_bytes;
    std::vector<std::int32_t> acc_i32, x;
    std::vector<std::int64_t> acc_exact;
  } qf_;
};

// Bits per byte of a network on a token stream: the mean cross-entropy, in bits, of every target of
// the tiled sequences (SequenceSampler::tiled) of the stream, at most `max_sequences` of them (0:
// all). `quantized`: through forward_quantized (the weights are quantized first).
// With `integers` (quantized only), also every sequence's input tokens and its LM head integers:
// what the exported bundle's integer engine must reproduce.
struct SequenceIntegers {
  std::size_t sequences = 0;
  std::vector<std::uint8_t> inputs;   // sequences x context tokens
  std::vector<std::int32_t> logits;   // sequences x context x vocabulary
};
double bits_per_byte(TransformerNet& net, const std::vector<std::uint8_t>& tokens, bool quantized,
                     const target::TargetSpec& target, std::size_t max_sequences = 0,
                     SequenceIntegers* integers = nullptr);

// ---- the training run -------------------------------------------------------------------------

struct TextPhaseResult {
  bool ran = false;
  double validation_bpb = 0;
  double train_loss = 0;  // mean cross-entropy (nats) of the last epoch's steps
  double steps_per_s = 0;
  long steps = 0;
  double train_seconds = 0;
  int epochs_resumed = 0;
};

struct TextProgress {
  Phase phase;
  int epoch, epochs;
  float loss;            // mean training cross-entropy of the epoch, nats
  float validation_bpb;  // on the first kProgressSequences validation sequences
  float steps_per_s, eta_s;
};

// Validation sequences the per-epoch progress line is measured on (the final figures read all).
inline constexpr std::size_t kProgressSequences = 128;

struct TextTrainResult {
  TextPhaseResult fp32, ptq, qat;
  long steps_per_epoch = 0;
  std::optional<TransformerNet> qat_net;  // the trained (calibrated) QAT network, to export
};

// FP32 twin, PTQ of its weights and QAT of a transformer on a text corpus (config.epochs epochs of
// `steps_per_epoch` steps of config.batch sequences each), with checkpoints after every epoch in
// `checkpoint_dir` and `resume` as for the image trainers.
TextTrainResult train_transformer(const TransformerSpec& spec, const target::TargetSpec& target,
                                  const TrainConfig& config, long steps_per_epoch, const TextCorpus& corpus,
                                  const std::filesystem::path& checkpoint_dir, bool resume,
                                  const std::function<void(const TextProgress&)>& progress);

}  // namespace qathw::training
