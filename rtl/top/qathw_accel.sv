// The accelerator: configuration port, activation/code/weight/requant memories (behavioural),
// the controller that executes the op-coded layer descriptors on each sample, and qathw_datapath
// (the PE array, the activation quantizer's absmax, reciprocal and code units, Rows requant
// units), beside the pool unit (max and sum of Lanes window positions per cycle, a requant unit
// for an average) and the add unit (Lanes element pairs per cycle, each operand requantized by
// its pair). Each layer takes the cycles of the SystemC model's cycle model (docs/sim.md):
//   linear, conv2d: quantizer 2 C + M (dynamic) or C (static), C = ceil(in / Lanes); array
//                   g T H' W' P (T tiles of Rows channels per group, P = ceil(patch / Lanes)
//                   chunks per output pixel); 1 requant cycle for the last tile;
//   max, avg pool:  out ceil(kh kw / Lanes), and 1 for an average's last requantization;
//   add:            ceil(out / Lanes).
// A convolution runs weight-stationary, its patches read from the code memory by a sliding-window
// address generator: each lane walks its patch element (ky, kx, ci) in the order of
// arith::for_each_patch_run, Lanes elements per chunk, padding positions giving code 0. A linear
// layer is a 1 x 1 map of `in` channels. Samples arrive as a stream of Lanes pixels per beat;
// every layer's outputs leave as a stream of Lanes values per beat (valid/ready) after the last
// layer. A Transformer build also runs a sequence's layers token by token (docs/rtl.md,
// "Transformer layers": g_transformer below). The configuration port's layout (generated from
// qathw/target/config_port.h), unless the build lists the package itself.
`ifndef QATHW_CFG_PKG_SV
`include "qathw_cfg_pkg.sv"
`endif

module qathw_accel #(
  parameter int Rows = 16,
  parameter int Lanes = 16,
  parameter int ActBits = 8,
  parameter int AccBits = 24,
  parameter int MantBits = 16,
  parameter int ShiftMin = 0,
  parameter int ShiftMax = 62,
  parameter int WeightInt4 = 0,
  parameter int Saturate = 1,
  parameter int HalfEven = 0,
  // The transformer's layers (opcodes Embed .. Attend, docs/rtl.md "Transformer layers"): 1 builds
  // the units of rtl/transformer/ beside the array, the table and absmax memories and the token
  // loop; 0 (an image-only build) leaves them out. The vector unit: the target's [vector_unit].
  parameter int Transformer = 0,
  parameter int VecLanes = 16,
  parameter int VecOperandBits = 8,
  parameter int VecAccBits = 32,
  parameter int VecSaturate = 1,
  // Memory sizes: every build passes those of qathw/target/rtl_memories.h (docs/rtl.md, "Memories").
  parameter int MaxLayers = 16,
  parameter int ActWords = 262144,   // activation memory: the pixels and every layer's outputs
  parameter int CodeDepth = 65536,   // code memory: one linear or conv2d layer's input codes
  parameter int WeightWords = 4096,  // weight memory words of Rows x Lanes codes (at most 2^16)
  parameter int RequantDepth = 2048,  // requantization pairs, one per output channel of every layer
  parameter int TableDepth = 65536,   // embedding table integers (Transformer builds)
  parameter int MaxGroups = 16,       // absmax registers per layer: a dynamic quantizer's groups
  // Fault injection, for proving that verification catches a wrong datapath: in this layer the
  // activation quantizer clamps to qmax - 1 instead of qmax. -1: no fault (every real build).
  parameter int FaultClampLayer = -1,
  // Optional $readmemh images of the weight and requantization memories (the configuration port
  // loads them otherwise): hex words of Rows x Lanes codes, and {shift, mantissa} pairs.
  parameter WeightInit = "",
  parameter RequantMantissaInit = "",
  parameter RequantShiftInit = "",
  localparam int WBits = WeightInt4 != 0 ? 4 : 2,  // bits of one weight code: arith::code_bits
  // A weight word, and at least a descriptor word or a requantization pair (qathw_cfg_pkg).
  localparam int CfgBits = Rows * Lanes * WBits > qathw_cfg_pkg::DataMinBits ? Rows * Lanes * WBits
                                                                              : qathw_cfg_pkg::DataMinBits,
  // A stored value: a pixel (0..255) or a layer output; a Transformer build also holds the
  // scores (32 bits) and the vector unit's sums.
  localparam int ValBits = Transformer != 0 ? (AccBits > 32 ? AccBits : 32) : (AccBits > 9 ? AccBits : 9),
  localparam int OutBits = Transformer != 0 ? ValBits : AccBits
) (
  input  logic                       clk_i,
  input  logic                       rst_ni,
  // Configuration writes, laid out by qathw_cfg_pkg (generated from qathw/target/config_port.h):
  // a weight word, a requant pair {shift, mantissa}, a word of a layer descriptor, or the layer
  // count.
  input  logic                       cfg_we_i,
  input  logic [qathw_cfg_pkg::KindBits-1:0] cfg_kind_i,
  input  logic [qathw_cfg_pkg::AddrBits-1:0] cfg_addr_i,
  input  logic [CfgBits-1:0]         cfg_data_i,
  // One sample's pixels, row-major, Lanes per beat: pixel b Lanes + i of beat b in bits
  // [8 i +: 8]; the last beat's lanes past the image are ignored.
  input  logic                       in_valid_i,
  output logic                       in_ready_o,
  input  logic [Lanes*8-1:0]         in_data_i,
  // A sequence (the token count written): one beat per token, its byte in bits [7:0].
  // Every layer's outputs, layer after layer, Lanes per beat: value b Lanes + i of the layer in
  // bits [i OutBits +: OutBits] (out_bits_o: AccBits, or 32 in a Transformer build), zero past its
  // last; out_last_o marks the sample's last beat. A sequence's layers leave after each token.
  output logic                       out_valid_o,
  input  logic                       out_ready_i,
  output logic [Lanes*OutBits-1:0]   out_data_o,
  output logic [5:0]                 out_bits_o,
  output logic [7:0]                 out_layer_o,
  output logic                       out_last_o,
  // Which layer is computing (for cycle counts and waveforms).
  output logic                       computing_o,
  output logic [7:0]                 layer_o
);
  // The quantizer's absmax: one bit above the widest value it reads.
  localparam int AmaxBits = Transformer != 0 && ValBits > AccBits ? ValBits + 1 : AccBits + 1;
  localparam int WordBits = Rows * Lanes * WBits;        // a weight word
  localparam int DescBits = qathw_cfg_pkg::DescWords * qathw_cfg_pkg::DescWordBits;
  localparam int AwBits = $clog2(ActWords);
  localparam int CdBits = $clog2(CodeDepth);
  localparam int WaBits = $clog2(WeightWords);
  localparam int RaBits = $clog2(RequantDepth);
  localparam int LBits = $clog2(MaxLayers);          // index of a layer
  localparam int Ports0 = Rows > Lanes ? Rows : Lanes;
  localparam int Ports = Transformer != 0 && VecLanes > Ports0 ? VecLanes : Ports0;  // activation memory writes per cycle
  // An average pool's window sum (up to 2^16 positions), and at least 34 bits: it saturates to 32.
  localparam int SumBits = AccBits + 18 > 34 ? AccBits + 18 : 34;

  typedef enum logic [3:0] {
    Idle, Load, Absmax, Recip, Codes, Array, RequantLast, Pool, PoolLast, AddUnit, Output,
    Pair,   // a pair that follows the token: the base times its factors, one per cycle
    Embed,  // the adder on the embedding tables' rows
    Unit    // a transformer unit (rms_norm, squared_relu, scores, softmax, attend): g_transformer
  } state_e;

  // ---- memories ---------------------------------------------------------------------------
  logic [ValBits-1:0]  act_q [ActWords];   // the pixels at 0, then each layer's outputs
  logic [ActBits-1:0]  code_q [CodeDepth]; // a kernel layer's input codes
  logic [WordBits-1:0] wmem_q [WeightWords];
  logic [MantBits-1:0] rq_mant_q [RequantDepth];
  logic [qathw_cfg_pkg::RequantShiftBits-1:0] rq_shift_q [RequantDepth];
  logic [DescBits-1:0] desc_q [MaxLayers];
  logic [qathw_cfg_pkg::LayerCountBits-1:0] layers_q;
  logic [qathw_cfg_pkg::TokenCountBits-1:0] tokens_q;  // a sequence's tokens; 0: an image

  initial begin
    if (WeightInit != "") $readmemh(WeightInit, wmem_q);
    if (RequantMantissaInit != "") $readmemh(RequantMantissaInit, rq_mant_q);
    if (RequantShiftInit != "") $readmemh(RequantShiftInit, rq_shift_q);
  end

  logic [LBits-1:0] cfg_layer;
  int cfg_word;
  assign cfg_layer = LBits'(cfg_addr_i >> qathw_cfg_pkg::DescWordIndexBits);
  assign cfg_word = 32'(cfg_addr_i[qathw_cfg_pkg::DescWordIndexBits-1:0]);
  always_ff @(posedge clk_i) begin
    if (cfg_we_i) begin
      unique case (cfg_kind_i)
        qathw_cfg_pkg::KindWeightWord: wmem_q[WaBits'(cfg_addr_i)] <= cfg_data_i[WordBits-1:0];
        qathw_cfg_pkg::KindRequantPair: begin
          rq_mant_q[RaBits'(cfg_addr_i)] <= cfg_data_i[qathw_cfg_pkg::RequantMantissaLsb +: MantBits];
          rq_shift_q[RaBits'(cfg_addr_i)] <=
              cfg_data_i[qathw_cfg_pkg::RequantMantissaLsb + MantBits +: qathw_cfg_pkg::RequantShiftBits];
        end
        qathw_cfg_pkg::KindLayerDescriptor:
          if (cfg_word < qathw_cfg_pkg::DescWords)
            desc_q[cfg_layer][cfg_word * qathw_cfg_pkg::DescWordBits +: qathw_cfg_pkg::DescWordBits] <=
                cfg_data_i[qathw_cfg_pkg::DescWordBits-1:0];
        default: ;
      endcase
    end
  end

  // The layer count, zero after reset: the controller stays idle until the host has written it
  // (last, after the descriptors).
  always_ff @(posedge clk_i or negedge rst_ni) begin
    if (!rst_ni) begin
      layers_q <= '0;
      tokens_q <= '0;
    end else if (cfg_we_i && cfg_kind_i == qathw_cfg_pkg::KindLayerCount) begin
      layers_q <= cfg_data_i[qathw_cfg_pkg::LayerCountLsb +: qathw_cfg_pkg::LayerCountBits];
      tokens_q <= cfg_data_i[qathw_cfg_pkg::TokenCountLsb +: qathw_cfg_pkg::TokenCountBits];
    end
  end

  // ---- controller state --------------------------------------------------------------------
  state_e state_q;
  logic [7:0] layer_q;
  int count_q;              // pixels loaded, or values streamed out, in the beats so far
  int chunk_q;              // chunk of the pass, of the patch or of the window
  int group_q, tile_q, oy_q, ox_q, ch_q;
  int out_q;                // a pool's output value
  logic [7:0] recip_q;      // cycles spent in Recip
  logic [AmaxBits-1:0] amax_q;
  int token_q;              // the sequence's token the layers run for
  logic seq;                // a sequence: the layers run per token, their outputs leave per token
  int tokens;
  assign seq = Transformer != 0 && tokens_q != '0;
  assign tokens = 32'(tokens_q);
  // The transformer units' writes into the activation memory, and the end of a Unit layer
  // (g_transformer).
  logic [Ports-1:0] tf_wr_on;
  int tf_wr_at [Ports];
  logic [ValBits-1:0] tf_wr_val [Ports];
  logic tf_wr_any, unit_done;

  // ---- this layer's descriptor -------------------------------------------------------------
  logic [LBits-1:0] li;
  logic [DescBits-1:0] d, dn;  // this layer's and the next one's
  assign li = LBits'(layer_q);
  assign d = desc_q[li];
  assign dn = desc_q[LBits'(layer_q + 8'd1)];
  int d_op, d_in, d_out, d_wbase, d_rbase, d_ibase, d_obase, d_resbase;
  int d_in_h, d_in_w, d_in_c, d_out_h, d_out_w, d_out_c, d_groups, d_gin, d_gout;
  int d_kh, d_kw, d_sh, d_sw, d_ph, d_pw, d_patch, d_step_y, d_step_x, d_step_c;
  logic d_relu, d_static;
  logic [MantBits-1:0] d_qmant, d_amant, d_bmant;
  logic [5:0] d_qshift, d_ashift, d_bshift;
  assign d_op = 32'(d[qathw_cfg_pkg::DescOpcodeLsb +: qathw_cfg_pkg::DescOpcodeBits]);
  assign d_relu = d[qathw_cfg_pkg::DescReluLsb];
  assign d_static = d[qathw_cfg_pkg::DescStaticLsb];
  assign d_in = 32'(d[qathw_cfg_pkg::DescInLsb +: qathw_cfg_pkg::DescInBits]);
  assign d_out = 32'(d[qathw_cfg_pkg::DescOutLsb +: qathw_cfg_pkg::DescOutBits]);
  assign d_wbase = 32'(d[qathw_cfg_pkg::DescWeightBaseLsb +: qathw_cfg_pkg::DescWeightBaseBits]);
  assign d_rbase = 32'(d[qathw_cfg_pkg::DescRequantBaseLsb +: qathw_cfg_pkg::DescRequantBaseBits]);
  assign d_ibase = 32'(d[qathw_cfg_pkg::DescInputBaseLsb +: qathw_cfg_pkg::DescInputBaseBits]);
  assign d_obase = 32'(d[qathw_cfg_pkg::DescOutputBaseLsb +: qathw_cfg_pkg::DescOutputBaseBits]);
  assign d_resbase = 32'(d[qathw_cfg_pkg::DescResidualBaseLsb +: qathw_cfg_pkg::DescResidualBaseBits]);
  assign d_in_h = 32'(d[qathw_cfg_pkg::DescInHLsb +: qathw_cfg_pkg::DescInHBits]);
  assign d_in_w = 32'(d[qathw_cfg_pkg::DescInWLsb +: qathw_cfg_pkg::DescInWBits]);
  assign d_in_c = 32'(d[qathw_cfg_pkg::DescInCLsb +: qathw_cfg_pkg::DescInCBits]);
  assign d_out_h = 32'(d[qathw_cfg_pkg::DescOutHLsb +: qathw_cfg_pkg::DescOutHBits]);
  assign d_out_w = 32'(d[qathw_cfg_pkg::DescOutWLsb +: qathw_cfg_pkg::DescOutWBits]);
  assign d_out_c = 32'(d[qathw_cfg_pkg::DescOutCLsb +: qathw_cfg_pkg::DescOutCBits]);
  assign d_groups = 32'(d[qathw_cfg_pkg::DescGroupsLsb +: qathw_cfg_pkg::DescGroupsBits]);
  assign d_gin = 32'(d[qathw_cfg_pkg::DescGroupInLsb +: qathw_cfg_pkg::DescGroupInBits]);
  assign d_gout = 32'(d[qathw_cfg_pkg::DescGroupOutLsb +: qathw_cfg_pkg::DescGroupOutBits]);
  assign d_kh = 32'(d[qathw_cfg_pkg::DescKernelHLsb +: qathw_cfg_pkg::DescKernelHBits]);
  assign d_kw = 32'(d[qathw_cfg_pkg::DescKernelWLsb +: qathw_cfg_pkg::DescKernelWBits]);
  assign d_sh = 32'(d[qathw_cfg_pkg::DescStrideHLsb +: qathw_cfg_pkg::DescStrideHBits]);
  assign d_sw = 32'(d[qathw_cfg_pkg::DescStrideWLsb +: qathw_cfg_pkg::DescStrideWBits]);
  assign d_ph = 32'(d[qathw_cfg_pkg::DescPadHLsb +: qathw_cfg_pkg::DescPadHBits]);
  assign d_pw = 32'(d[qathw_cfg_pkg::DescPadWLsb +: qathw_cfg_pkg::DescPadWBits]);
  assign d_patch = 32'(d[qathw_cfg_pkg::DescPatchLsb +: qathw_cfg_pkg::DescPatchBits]);
  assign d_step_y = 32'(d[qathw_cfg_pkg::DescStepYLsb +: qathw_cfg_pkg::DescStepYBits]);
  assign d_step_x = 32'(d[qathw_cfg_pkg::DescStepXLsb +: qathw_cfg_pkg::DescStepXBits]);
  assign d_step_c = 32'(d[qathw_cfg_pkg::DescStepCLsb +: qathw_cfg_pkg::DescStepCBits]);
  // Pairs: mantissas of MantBits (the harness refuses wider ones), shifts of 6 bits.
  assign d_qmant = d[qathw_cfg_pkg::DescQuantMantissaLsb +: MantBits];
  assign d_qshift = d[qathw_cfg_pkg::DescQuantShiftLsb +: qathw_cfg_pkg::DescQuantShiftBits];
  assign d_amant = d[qathw_cfg_pkg::DescPairAMantissaLsb +: MantBits];
  assign d_ashift = d[qathw_cfg_pkg::DescPairAShiftLsb +: qathw_cfg_pkg::DescPairAShiftBits];
  assign d_bmant = d[qathw_cfg_pkg::DescPairBMantissaLsb +: MantBits];
  assign d_bshift = d[qathw_cfg_pkg::DescPairBShiftLsb +: qathw_cfg_pkg::DescPairBShiftBits];
  int d_hdim, d_factor_count;
  logic d_cache;
  assign d_hdim = 32'(d[qathw_cfg_pkg::DescHeadDimLsb +: qathw_cfg_pkg::DescHeadDimBits]);
  assign d_factor_count = 32'(d[qathw_cfg_pkg::DescFactorCountLsb +: qathw_cfg_pkg::DescFactorCountBits]);
  assign d_cache = d[qathw_cfg_pkg::DescCacheLsb];

  // The first state of a layer: its quantizer's (a kernel layer) or its unit's.
  function automatic state_e first_state(input logic [DescBits-1:0] desc);
    int op;
    logic factors;  // the layer's last pair follows the token
    op = 32'(desc[qathw_cfg_pkg::DescOpcodeLsb +: qathw_cfg_pkg::DescOpcodeBits]);
    factors = desc[qathw_cfg_pkg::DescFactorCountLsb +: qathw_cfg_pkg::DescFactorCountBits] != '0;
    if (op == qathw_cfg_pkg::OpMaxPool || op == qathw_cfg_pkg::OpAvgPool) return Pool;
    if (op == qathw_cfg_pkg::OpAdd) return Transformer != 0 && factors ? Pair : AddUnit;
    if (Transformer != 0) begin
      if (op == qathw_cfg_pkg::OpEmbed) return Embed;
      if (op == qathw_cfg_pkg::OpRmsNorm || op == qathw_cfg_pkg::OpSquaredRelu || op == qathw_cfg_pkg::OpScores ||
          op == qathw_cfg_pkg::OpSoftmax || op == qathw_cfg_pkg::OpAttend)
        return Unit;
      if (op == qathw_cfg_pkg::OpQuantize && desc[qathw_cfg_pkg::DescStaticLsb]) return factors ? Pair : Codes;
      if (op == qathw_cfg_pkg::OpLinear && desc[qathw_cfg_pkg::DescCodesInputLsb]) return Array;
    end
    return desc[qathw_cfg_pkg::DescStaticLsb] ? Codes : Absmax;
  endfunction

  logic kernel, average, quantize;
  int pass_len, pass_chunks, patch_chunks, tiles, q_off, orow;
  assign kernel = d_op == qathw_cfg_pkg::OpLinear || d_op == qathw_cfg_pkg::OpConv2d;
  assign average = d_op == qathw_cfg_pkg::OpAvgPool;
  assign quantize = Transformer != 0 && d_op == qathw_cfg_pkg::OpQuantize;
  // The quantizer's pass: a kernel layer's input, a quantize layer's group (DescHeadDim features,
  // group group_q at q_off); the add's and the embedding's output.
  assign pass_len = kernel ? d_in : quantize ? d_hdim : d_out;
  assign q_off = quantize ? group_q * d_hdim : 0;
  assign orow = Transformer != 0 && d_cache ? token_q * d_out : 0;  // a KV cache's row of this token
  assign pass_chunks = (pass_len + Lanes - 1) / Lanes;  // quantizer passes; the add
  assign patch_chunks = (d_patch + Lanes - 1) / Lanes;
  assign tiles = (d_gout + Rows - 1) / Rows;

  // ---- linear passes: the quantizer's over the input, the add unit's over the output -------
  // (Each unit reads its memories only in its own states: the simulation evaluates less.)
  logic [Lanes*ValBits-1:0] chunk_val;
  logic [Lanes-1:0] lane_on;
  logic quantizing;
  assign quantizing = state_q == Absmax || state_q == Codes;
  always_comb begin
    for (int i = 0; i < Lanes; i++) begin
      lane_on[i] = chunk_q * Lanes + i < pass_len;
      chunk_val[i*ValBits +: ValBits] = quantizing && lane_on[i] ? act_q[AwBits'(d_ibase + q_off + chunk_q * Lanes + i)] : '0;
    end
  end

  // ---- the sliding-window address generator --------------------------------------------------
  // Lane i's patch element (ky, kx, ci) in chunk c is element c Lanes + i: lane i's element of the
  // first chunk (a chain of increments), then each chunk steps every lane by Lanes elements
  // (DescStep*, one carry per digit). The window's origin is output pixel (oy, ox) times the
  // stride, less the padding; a pool walks its window with one channel per group.
  int init_y [Lanes], init_x [Lanes], init_c [Lanes];
  int step_y_q [Lanes], step_x_q [Lanes], step_c_q [Lanes];  // the lanes' elements after this chunk
  int lane_y [Lanes], lane_x [Lanes], lane_c [Lanes];
  logic windowing;  // the array or the pool unit reads through the window
  assign windowing = state_q == Array || state_q == Pool;
  always_comb begin
    init_y[0] = 0;
    init_x[0] = 0;
    init_c[0] = 0;
    for (int i = 1; i < Lanes; i++) begin
      if (!windowing || chunk_q != 0) begin
        init_c[i] = 0;
        init_x[i] = 0;
        init_y[i] = 0;
        continue;
      end
      init_c[i] = init_c[i-1] + 1;
      init_x[i] = init_x[i-1];
      init_y[i] = init_y[i-1];
      if (init_c[i] >= d_gin) begin
        init_c[i] = 0;
        init_x[i] = init_x[i] + 1;
        if (init_x[i] >= d_kw) begin
          init_x[i] = 0;
          init_y[i] = init_y[i] + 1;
        end
      end
    end
    for (int i = 0; i < Lanes; i++) begin
      lane_y[i] = chunk_q == 0 ? init_y[i] : step_y_q[i];
      lane_x[i] = chunk_q == 0 ? init_x[i] : step_x_q[i];
      lane_c[i] = chunk_q == 0 ? init_c[i] : step_c_q[i];
    end
  end

  int origin_y, origin_x, channel_base;
  assign origin_y = oy_q * d_sh - d_ph;
  assign origin_x = ox_q * d_sw - d_pw;
  assign channel_base = state_q == Pool ? ch_q : group_q * d_gin;
  logic [Lanes-1:0] win_on;
  int win_at [Lanes];  // index into the input map
  always_comb begin
    for (int i = 0; i < Lanes; i++) begin
      int y, x;
      if (!windowing) begin
        win_on[i] = 1'b0;
        win_at[i] = 0;
        continue;
      end
      y = origin_y + lane_y[i];
      x = origin_x + lane_x[i];
      win_on[i] = chunk_q * Lanes + i < d_patch && y >= 0 && y < d_in_h && x >= 0 && x < d_in_w;
      win_at[i] = (y * d_in_w + x) * d_in_c + channel_base + lane_c[i];
    end
  end

  // The step registers follow every cycle: a patch or window advances one chunk per Array or
  // Pool cycle (the controller never stalls there), and chunk 0 takes the chain above.
  for (genvar i = 0; i < Lanes; i++) begin : g_lane_step
    int c, x;
    logic carry_c, carry_x;
    assign c = lane_c[i] + d_step_c;
    assign carry_c = c >= d_gin;
    assign x = lane_x[i] + d_step_x + (carry_c ? 1 : 0);
    assign carry_x = x >= d_kw;
    always_ff @(posedge clk_i) begin
      step_c_q[i] <= carry_c ? c - d_gin : c;
      step_x_q[i] <= carry_x ? x - d_kw : x;
      step_y_q[i] <= lane_y[i] + d_step_y + (carry_x ? 1 : 0);
    end
  end

  // ---- the PE array's inputs: one chunk of one output pixel's patch, one tile ---------------
  logic [Lanes*ActBits-1:0] x_flat;
  logic [Rows-1:0] row_on;
  logic array_valid, array_clear, unit_last;
  logic codes_input;  // a linear layer reading a quantize layer's codes from the activation memory
  assign codes_input = Transformer != 0 && d[qathw_cfg_pkg::DescCodesInputLsb];
  always_comb begin
    for (int i = 0; i < Lanes; i++)
      x_flat[i*ActBits +: ActBits] = !win_on[i] ? '0 : codes_input ? ActBits'(act_q[AwBits'(d_ibase + win_at[i])])
                                                                   : code_q[CdBits'(win_at[i])];
    for (int r = 0; r < Rows; r++) row_on[r] = tile_q * Rows + r < d_gout;
  end
  assign array_valid = state_q == Array;
  assign array_clear = state_q == Array && chunk_q == 0;
  assign unit_last = chunk_q == patch_chunks - 1;  // the last chunk of a patch or window

  // Rows requant units take a finished tile's accumulators in the next cycle, while the array
  // starts the next pixel or tile (or in RequantLast, after the layer's last).
  logic rq_valid_q;
  int rq_out_q, rq_pair_q, rq_rows_q;  // the tile's first output address and pair, its rows
  logic [Rows*MantBits-1:0] rq_mant;
  logic [Rows*6-1:0] rq_shift;
  for (genvar r = 0; r < Rows; r++) begin : g_requant_pair
    logic [RaBits-1:0] n;
    assign n = RaBits'(rq_pair_q + r);
    assign rq_mant[r*MantBits +: MantBits] = rq_mant_q[n];
    assign rq_shift[r*6 +: 6] = rq_valid_q ? rq_shift_q[n] : 6'd0;  // idle units: see the add unit
  end

  // A static quantizer's pair: the descriptor's, or (a quantize layer with factors) the token's.
  logic [MantBits-1:0] q_mant, tp_mant;
  logic [5:0] q_shift, tp_shift;
  assign q_mant = quantize && d_factor_count != 0 ? tp_mant : d_qmant;
  assign q_shift = quantize && d_factor_count != 0 ? tp_shift : d_qshift;

  // The datapath. The reciprocal starts in the last absmax cycle.
  logic recip_start, recip_done;
  logic [AmaxBits-1:0] amax_next;
  logic [Lanes*ActBits-1:0] codes;
  logic [Rows*AccBits-1:0] z;
  assign recip_start = state_q == Absmax && chunk_q == pass_chunks - 1;
  qathw_datapath #(
    .Rows(Rows), .Lanes(Lanes), .ActBits(ActBits), .AccBits(AccBits), .MantBits(MantBits), .ShiftMin(ShiftMin),
    .ShiftMax(ShiftMax), .WeightInt4(WeightInt4), .Saturate(Saturate), .HalfEven(HalfEven), .ValBits(ValBits),
    .AmaxBits(AmaxBits)
  ) u_datapath (
    .clk_i, .rst_ni, .clear_i(array_clear), .valid_i(array_valid), .x_i(x_flat),
    .w_i(wmem_q[WaBits'(d_wbase + (group_q * tiles + tile_q) * patch_chunks + chunk_q)]), .lane_en_i(win_on),
    .row_en_i(row_on), .v_i(chunk_val), .amax_i(amax_q), .amax_o(amax_next), .recip_start_i(recip_start),
    // Outside the code pass the code units take the static path with a shift of 0 (their codes
    // are not stored then), which keeps their rounding out of the simulation.
    .recip_done_o(recip_done), .static_i(d_static || state_q != Codes), .static_mantissa_i(q_mant),
    .static_shift_i(state_q == Codes ? q_shift : 6'd0),
    .codes_o(codes), .rq_mantissa_i(rq_mant), .rq_shift_i(rq_shift), .relu_i(d_relu), .z_o(z)
  );

  // This chunk's codes, as the code memory stores them.
  localparam logic [ActBits-1:0] QMaxCode = ActBits'((1 << (ActBits - 1)) - 1);
  logic [Lanes*ActBits-1:0] chunk_codes;
  for (genvar i = 0; i < Lanes; i++) begin : g_code
    logic [ActBits-1:0] code;
    assign code = codes[i*ActBits +: ActBits];
    if (FaultClampLayer >= 0) begin : g_fault
      assign chunk_codes[i*ActBits +: ActBits] =
          (32'(layer_q) == FaultClampLayer && code == QMaxCode) ? code - 1'b1 : code;
    end else begin : g_no_fault
      assign chunk_codes[i*ActBits +: ActBits] = code;
    end
  end

  // ---- the pool unit: Lanes window positions per cycle -------------------------------------
  // Pools and adds read earlier layers' outputs (AccBits values), never the pixels: the lowering
  // (model::accelerator_layers) refuses a pool or add of the input.
  logic signed [AccBits-1:0] max_q;
  logic any_q;
  logic signed [SumBits-1:0] sum_q;
  logic signed [AccBits-1:0] pool_max;
  logic pool_any;
  logic signed [SumBits-1:0] pool_sum;
  always_comb begin
    pool_max = max_q;
    pool_any = any_q;
    pool_sum = sum_q;
    for (int i = 0; i < Lanes; i++) begin
      logic signed [AccBits-1:0] v;
      v = state_q == Pool && win_on[i] ? AccBits'($signed(act_q[AwBits'(d_ibase + win_at[i])])) : '0;
      if (state_q == Pool && win_on[i]) begin
        if (!pool_any || v > pool_max) pool_max = v;
        pool_any = 1'b1;
        pool_sum = pool_sum + SumBits'(v);
      end
    end
  end
  // An average's window sum, saturated to 32 bits (arith::average_pool), is requantized by 1 / area
  // in the next cycle, while the unit starts the next window (or in PoolLast, after the last).
  logic avg_valid_q;
  logic signed [31:0] avg_sum_q;
  int avg_out_q;
  logic [AccBits-1:0] avg_z;
  localparam logic signed [SumBits-1:0] Sum32Max = SumBits'(64'sh7fffffff);
  localparam logic signed [SumBits-1:0] Sum32Min = -SumBits'(64'sh80000000);
  qathw_requant #(.AccBits(AccBits), .MantBits(MantBits), .HalfEven(HalfEven), .InBits(32)) u_avg_requant (
    .acc_i(avg_sum_q), .mantissa_i(d_amant), .shift_i(avg_valid_q ? d_ashift : 6'd0), .relu_i(d_relu), .z_o(avg_z)
  );

  // ---- the add unit: Lanes element pairs per cycle ------------------------------------------
  // An embedding's rows come from the table memory (g_transformer); the residual's pair of an add
  // with factors is the token's.
  logic [Lanes*AccBits-1:0] add_z, emb_a, emb_b;
  logic adding;
  logic [MantBits-1:0] b_mant;
  logic [5:0] b_shift;
  assign adding = state_q == AddUnit || state_q == Embed;
  assign b_mant = Transformer != 0 && d_factor_count != 0 ? tp_mant : d_bmant;
  assign b_shift = Transformer != 0 && d_factor_count != 0 ? tp_shift : d_bshift;
  for (genvar i = 0; i < Lanes; i++) begin : g_add
    localparam logic signed [AccBits:0] ZMax = (AccBits + 1)'((64'sd1 <<< (AccBits - 1)) - 1);
    localparam logic signed [AccBits:0] ZMin = -(AccBits + 1)'(64'sd1 <<< (AccBits - 1));
    logic [AccBits-1:0] a, b, qa, qb;
    logic signed [AccBits:0] s;
    assign a = state_q == Embed ? emb_a[i*AccBits +: AccBits] :
               state_q == AddUnit ? AccBits'(act_q[AwBits'(d_ibase + chunk_q * Lanes + i)]) : '0;
    assign b = state_q == Embed ? emb_b[i*AccBits +: AccBits] :
               state_q == AddUnit ? AccBits'(act_q[AwBits'(d_resbase + chunk_q * Lanes + i)]) : '0;
    // Outside AddUnit a shift of 0 keeps the idle units' rounding out of the simulation (a
    // shift of 0 takes the rounding shifter's first branch).
    qathw_requant #(.AccBits(AccBits), .MantBits(MantBits), .HalfEven(HalfEven)) u_a (
      .acc_i(a), .mantissa_i(d_amant), .shift_i(adding ? d_ashift : 6'd0), .relu_i(1'b0), .z_o(qa)
    );
    qathw_requant #(.AccBits(AccBits), .MantBits(MantBits), .HalfEven(HalfEven)) u_b (
      .acc_i(b), .mantissa_i(b_mant), .shift_i(adding ? b_shift : 6'd0), .relu_i(1'b0), .z_o(qb)
    );
    always_comb begin
      logic signed [AccBits-1:0] sat;
      s = (AccBits + 1)'($signed(qa)) + (AccBits + 1)'($signed(qb));
      if (s > ZMax) sat = AccBits'(ZMax);
      else if (s < ZMin) sat = AccBits'(ZMin);
      else sat = AccBits'(s);
      add_z[i*AccBits +: AccBits] = d_relu && sat < 0 ? '0 : sat;
    end
  end

  // ---- the transformer's units (docs/rtl.md, "Transformer layers") --------------------------
  // A Transformer build: the embedding tables, the absmax registers (every dynamic quantizer's, per
  // group, of the current token: the factors of the pairs that follow it), the token pair, and the
  // units of rtl/transformer/ that run a Unit layer in phases:
  //   rms_norm      NSum (ceil(F / VecLanes)), NWait (the 1/rms: 64 + 32 + MantBits, started in
  //                 its first cycle), NApply (ceil(F / VecLanes), the first in the 1/rms's done cycle)
  //   squared_relu  SqApply, ceil(F / VecLanes)
  //   scores        SPair (heads x factors), SDot (per head and visible key ceil(dh / VecLanes)
  //                 chunks; each score requantized in the next cycle), SLast (the last score)
  //   softmax       XRow: per head one qathw_softmax_row, 3 ceil(n / VecLanes) + MantBits
  //   attend        ADot (per output feature ceil(n / VecLanes) chunks, the feature written in its
//                 last chunk's cycle)
  if (Transformer != 0) begin : g_transformer
    localparam int OpBits = VecOperandBits + 1;
    localparam int TbBits = $clog2(TableDepth);
    localparam int AmBits = $clog2(MaxLayers * MaxGroups);
    typedef enum logic [3:0] { TIdle, NSum, NWait, NApply, SqApply, SPair, SDot, SLast, XRow, ADot } phase_e;

    // The descriptor's transformer fields.
    logic [63:0] d_eps;
    logic [5:0] d_norm_bits, d_shift;
    logic [3:0] d_index_bits, d_prob_bits;
    logic [7:0] d_factor_heads;
    int d_factor [8];
    assign d_eps = d[qathw_cfg_pkg::DescEpsLsb +: qathw_cfg_pkg::DescEpsBits];
    assign d_norm_bits = d[qathw_cfg_pkg::DescNormBitsLsb +: qathw_cfg_pkg::DescNormBitsBits];
    assign d_shift = d[qathw_cfg_pkg::DescShiftLsb +: qathw_cfg_pkg::DescShiftBits];
    assign d_index_bits = d[qathw_cfg_pkg::DescIndexBitsLsb +: qathw_cfg_pkg::DescIndexBitsBits];
    assign d_prob_bits = d[qathw_cfg_pkg::DescProbBitsLsb +: qathw_cfg_pkg::DescProbBitsBits];
    assign d_factor_heads = d[qathw_cfg_pkg::DescFactorHeadsLsb +: qathw_cfg_pkg::DescFactorHeadsBits];
    assign d_factor[0] = 32'(d[qathw_cfg_pkg::DescFactor0Lsb +: qathw_cfg_pkg::DescFactor0Bits]);
    assign d_factor[1] = 32'(d[qathw_cfg_pkg::DescFactor1Lsb +: qathw_cfg_pkg::DescFactor1Bits]);
    assign d_factor[2] = 32'(d[qathw_cfg_pkg::DescFactor2Lsb +: qathw_cfg_pkg::DescFactor2Bits]);
    assign d_factor[3] = 32'(d[qathw_cfg_pkg::DescFactor3Lsb +: qathw_cfg_pkg::DescFactor3Bits]);
    assign d_factor[4] = 32'(d[qathw_cfg_pkg::DescFactor4Lsb +: qathw_cfg_pkg::DescFactor4Bits]);
    assign d_factor[5] = 32'(d[qathw_cfg_pkg::DescFactor5Lsb +: qathw_cfg_pkg::DescFactor5Bits]);
    assign d_factor[6] = 32'(d[qathw_cfg_pkg::DescFactor6Lsb +: qathw_cfg_pkg::DescFactor6Bits]);
    assign d_factor[7] = 32'(d[qathw_cfg_pkg::DescFactor7Lsb +: qathw_cfg_pkg::DescFactor7Bits]);

    // The embedding tables (the host writes them), AccBits integers.
    logic [AccBits-1:0] tbl_q [TableDepth];
    always_ff @(posedge clk_i) begin
      if (cfg_we_i && cfg_kind_i == qathw_cfg_pkg::KindTableValue)
        tbl_q[TbBits'(cfg_addr_i)] <= cfg_data_i[qathw_cfg_pkg::TableValueLsb +: AccBits];
    end
    int tok_row, pos_row;  // the token's and the position's rows
    assign tok_row = d_wbase + 32'(act_q[AwBits'(d_ibase + token_q)]) * d_out;
    assign pos_row = d_rbase + token_q * d_out;
    for (genvar i = 0; i < Lanes; i++) begin : g_embed
      assign emb_a[i*AccBits +: AccBits] = state_q == Embed ? tbl_q[TbBits'(tok_row + chunk_q * Lanes + i)] : '0;
      assign emb_b[i*AccBits +: AccBits] = state_q == Embed ? tbl_q[TbBits'(pos_row + chunk_q * Lanes + i)] : '0;
    end

    // The absmax registers: a dynamic quantizer's, per group, at the end of its absmax pass.
    logic [AmaxBits-1:0] amax_reg [MaxLayers * MaxGroups];
    always_ff @(posedge clk_i) begin
      if (state_q == Absmax && chunk_q == pass_chunks - 1)
        amax_reg[AmBits'(32'(li) * MaxGroups + group_q)] <= amax_next;
    end

    // ---- the Unit layers' sequencer ----
    phase_e ph_q, ph;
    int th_q, tj_q, te_q, tc_q, tk_q;  // head, key (or output feature), feature in the head, chunk, factor
    logic pend_q, cap_q;
    int pend_at_q, pend_h_q, cap_h_q;
    logic [MantBits-1:0] spair_mant_q [MaxGroups];
    logic [5:0] spair_shift_q [MaxGroups];
    logic [MantBits-1:0] inv_mant_q;
    logic signed [7:0] inv_shift_q;

    int n_vis, feat_chunks, key_chunks, head_chunks;
    assign n_vis = token_q + 1;  // arith::causal_count(t)
    assign feat_chunks = (d_out + VecLanes - 1) / VecLanes;
    assign key_chunks = (n_vis + VecLanes - 1) / VecLanes;
    assign head_chunks = (d_hdim + VecLanes - 1) / VecLanes;
    always_comb begin
      ph = ph_q;
      if (ph_q == TIdle) begin
        unique case (d_op)
          qathw_cfg_pkg::OpRmsNorm: ph = NSum;
          qathw_cfg_pkg::OpSquaredRelu: ph = SqApply;
          qathw_cfg_pkg::OpScores: ph = d_factor_count != 0 ? SPair : SDot;
          qathw_cfg_pkg::OpSoftmax: ph = XRow;
          default: ph = ADot;
        endcase
      end
      if (state_q != Unit) ph = TIdle;
    end

    // The token pair: the Pair state's factors (head 0), or the scores' per head.
    logic tp_load, tp_step, unused_too_large;
    logic [2:0] tp_k;  // the factor
    int tp_h;
    logic [MantBits-1:0] tp_base_mant;
    logic [5:0] tp_base_shift;
    logic [AmaxBits-1:0] tp_factor;
    always_comb begin
      tp_k = 3'(state_q == Pair ? chunk_q : tk_q);
      tp_h = state_q == Pair ? 0 : th_q;
      tp_load = (state_q == Pair && chunk_q == 0) || (ph == SPair && tk_q == 0);
      tp_step = state_q == Pair || ph == SPair;
      tp_base_mant = quantize ? d_qmant : d_op == qathw_cfg_pkg::OpAdd ? d_bmant : d_amant;
      tp_base_shift = quantize ? d_qshift : d_op == qathw_cfg_pkg::OpAdd ? d_bshift : d_ashift;
      tp_factor = amax_reg[AmBits'(d_factor[tp_k] * MaxGroups + (d_factor_heads[tp_k] ? tp_h : 0))];
    end
    qathw_token_pair #(.MantBits(MantBits), .ShiftMin(ShiftMin), .HalfEven(HalfEven), .NBits(AmaxBits)) u_token_pair (
      .clk_i, .rst_ni, .load_i(tp_load), .base_mant_i(tp_base_mant), .base_shift_i(tp_base_shift), .step_i(tp_step),
      .factor_i(tp_factor), .mant_o(tp_mant), .shift_o(tp_shift), .too_large_o(unused_too_large)
    );

    // RMSNorm: the sum of squares and 1/rms, then VecLanes features per cycle.
    logic rms_done;
    logic [MantBits-1:0] rms_inv_mant, inv_mant;
    logic signed [7:0] rms_inv_shift, inv_shift;
    logic [63:0] unused_sum, unused_mean_sq;
    logic signed [6:0] unused_k;
    logic [31:0] unused_root;
    logic unused_rms_busy;
    logic [VecLanes*ValBits-1:0] vx;  // VecLanes values of chunk tc of the input
    logic [VecLanes-1:0] v_on;
    int v_chunk;
    logic napply;
    assign napply = ph == NApply || (ph == NWait && rms_done);
    assign v_chunk = ph == NWait ? 0 : tc_q;
    always_comb begin
      for (int i = 0; i < VecLanes; i++) begin
        v_on[i] = v_chunk * VecLanes + i < d_out;
        vx[i*ValBits +: ValBits] = (ph == NSum || napply || ph == SqApply) && v_on[i]
            ? act_q[AwBits'(d_ibase + v_chunk * VecLanes + i)] : '0;
      end
    end
    qathw_rms_inverse #(.VecLanes(VecLanes), .InBits(ValBits), .MantBits(MantBits), .HalfEven(HalfEven)) u_rms (
      .clk_i, .rst_ni, .clear_i(ph == NSum && tc_q == 0), .valid_i(ph == NSum), .x_i(vx), .lane_en_i(v_on),
      .in_bits_i(d_norm_bits), .start_i(ph == NWait && tc_q == 0), .n_i(21'(d_out)), .eps_i(d_eps),
      .busy_o(unused_rms_busy), .done_o(rms_done), .sum_o(unused_sum), .k_o(unused_k), .mean_sq_o(unused_mean_sq),
      .root_o(unused_root), .inv_mant_o(rms_inv_mant), .inv_shift_o(rms_inv_shift)
    );
    assign inv_mant = rms_done ? rms_inv_mant : inv_mant_q;
    assign inv_shift = rms_done ? rms_inv_shift : inv_shift_q;
    logic [VecLanes*AccBits-1:0] norm_y, sq_y;
    for (genvar i = 0; i < VecLanes; i++) begin : g_feature
      logic [RaBits-1:0] g;
      assign g = RaBits'(d_rbase + v_chunk * VecLanes + i);
      qathw_rms_value #(.InBits(ValBits), .OutBits(AccBits), .MantBits(MantBits), .HalfEven(HalfEven)) u_value (
        .x_i(vx[i*ValBits +: ValBits]), .in_bits_i(d_norm_bits), .inv_mant_i(inv_mant), .inv_shift_i(inv_shift),
        .gain_mant_i(napply ? rq_mant_q[g] : '0), .gain_shift_i(napply ? rq_shift_q[g] : 6'd0),
        .y_o(norm_y[i*AccBits +: AccBits])
      );
      qathw_squared_relu #(.InBits(ValBits), .OutBits(AccBits), .HalfEven(HalfEven)) u_square (
        .v_i(vx[i*ValBits +: ValBits]), .shift_i(ph == SqApply ? d_shift : 6'd0), .y_o(sq_y[i*AccBits +: AccBits])
      );
    end

    // The vector unit: Q K^T (SDot) and P V (ADot).
    logic [VecLanes*OpBits-1:0] va, vb;
    logic [VecLanes-1:0] vd_on;
    logic [VecAccBits-1:0] dot, dot_sum;
    always_comb begin
      for (int i = 0; i < VecLanes; i++) begin
        int k;
        k = tc_q * VecLanes + i;
        vd_on[i] = ph == SDot ? k < d_hdim : ph == ADot ? k < n_vis : 1'b0;
        va[i*OpBits +: OpBits] = '0;
        vb[i*OpBits +: OpBits] = '0;
        if (vd_on[i] && ph == SDot) begin  // the query's head th against key tj
          va[i*OpBits +: OpBits] = OpBits'(act_q[AwBits'(d_ibase + th_q * d_hdim + k)]);
          vb[i*OpBits +: OpBits] = OpBits'(act_q[AwBits'(d_resbase + tj_q * d_in + th_q * d_hdim + k)]);
        end else if (vd_on[i]) begin  // head th's probabilities against the value column th dh + te
          va[i*OpBits +: OpBits] = OpBits'(act_q[AwBits'(d_ibase + th_q * tokens + k)]);
          vb[i*OpBits +: OpBits] = OpBits'(act_q[AwBits'(d_resbase + k * d_out + th_q * d_hdim + te_q)]);
        end
      end
    end
    qathw_vector_dot #(.VecLanes(VecLanes), .VecOperandBits(VecOperandBits), .VecAccBits(VecAccBits),
                       .VecSaturate(VecSaturate)) u_dot (
      .clk_i, .rst_ni, .clear_i(tc_q == 0), .valid_i(ph == SDot || ph == ADot), .a_i(va), .b_i(vb), .lane_en_i(vd_on),
      .acc_o(dot), .sum_o(dot_sum)
    );
    // A score: the dot product requantized to 32 bits by its head's pair (the static pair without factors).
    logic [MantBits-1:0] s_mant;
    logic [5:0] s_shift;
    logic [31:0] score;
    assign s_mant = d_factor_count != 0 ? spair_mant_q[pend_h_q[$clog2(MaxGroups)-1:0]] : d_amant;
    assign s_shift = d_factor_count != 0 ? spair_shift_q[pend_h_q[$clog2(MaxGroups)-1:0]] : d_ashift;
    qathw_requant #(.AccBits(32), .MantBits(MantBits), .HalfEven(HalfEven), .InBits(VecAccBits)) u_score (
      .acc_i(dot), .mantissa_i(s_mant), .shift_i(pend_q && d_op == qathw_cfg_pkg::OpScores ? s_shift : 6'd0),
      .relu_i(1'b0), .z_o(score)
    );

    // Softmax: one row per head.
    logic [15:0] sm_chunk;
    logic sm_valid, sm_done, unused_sm_busy;
    logic [VecLanes*32-1:0] sm_z;
    logic [VecLanes*VecOperandBits-1:0] sm_code;
    logic [31:0] unused_max, unused_sm_sum;
    logic [MantBits-1:0] unused_sm_mant;
    logic [5:0] unused_sm_shift;
    always_comb begin
      for (int i = 0; i < VecLanes; i++)
        sm_z[i*32 +: 32] = ph == XRow ? 32'(act_q[AwBits'(d_ibase + th_q * tokens + 32'(sm_chunk) * VecLanes + i)]) : '0;
    end
    qathw_softmax_row #(.VecLanes(VecLanes), .MantBits(MantBits), .HalfEven(HalfEven), .ProbBits(VecOperandBits)) u_softmax (
      .clk_i, .rst_ni, .tbl_we_i(cfg_we_i && cfg_kind_i == qathw_cfg_pkg::KindExp2Entry), .tbl_addr_i(8'(cfg_addr_i)),
      .tbl_data_i(cfg_data_i[qathw_cfg_pkg::Exp2EntryLsb +: qathw_cfg_pkg::Exp2EntryBits]),
      .start_i(ph == XRow && (ph_q == TIdle || sm_done)), .count_i(16'(n_vis)), .index_bits_i(d_index_bits),
      .prob_bits_i(d_prob_bits), .rd_chunk_o(sm_chunk), .z_i(sm_z), .code_valid_o(sm_valid), .code_o(sm_code),
      .busy_o(unused_sm_busy), .done_o(sm_done), .max_o(unused_max), .sum_o(unused_sm_sum), .inv_mant_o(unused_sm_mant),
      .inv_shift_o(unused_sm_shift)
    );
    logic sm_last;  // the last chunk of a row's codes
    assign sm_last = ph == XRow && sm_valid && 32'(sm_chunk) == key_chunks - 1;

    logic a_last;  // the last chunk of an attend feature
    assign a_last = ph == ADot && tc_q == key_chunks - 1;
    assign unit_done = (ph == NApply && tc_q == feat_chunks - 1) || (ph == NWait && rms_done && feat_chunks == 1) ||
                       (ph == SqApply && tc_q == feat_chunks - 1) || ph == SLast ||
                       (a_last && te_q == d_hdim - 1 && th_q == d_groups - 1) || (sm_last && th_q == d_groups - 1);

    // Writes: VecLanes features (rms_norm, squared_relu), a chunk of codes (softmax), an attend
    // feature (its sum, in its last chunk's cycle), a score (the cycle after its last chunk).
    always_comb begin
      tf_wr_any = 1'b0;
      for (int p = 0; p < Ports; p++) begin
        tf_wr_on[p] = 1'b0;
        tf_wr_at[p] = 0;
        tf_wr_val[p] = '0;
      end
      if (napply || ph == SqApply) begin
        tf_wr_any = 1'b1;
        for (int i = 0; i < VecLanes; i++) begin
          tf_wr_on[i] = v_on[i];
          tf_wr_at[i] = d_obase + v_chunk * VecLanes + i;
          tf_wr_val[i] = ValBits'($signed(napply ? norm_y[i*AccBits +: AccBits] : sq_y[i*AccBits +: AccBits]));
        end
      end else if (ph == XRow && sm_valid) begin
        tf_wr_any = 1'b1;
        for (int i = 0; i < VecLanes; i++) begin
          tf_wr_on[i] = 32'(sm_chunk) * VecLanes + i < n_vis;
          tf_wr_at[i] = d_obase + th_q * tokens + 32'(sm_chunk) * VecLanes + i;
          tf_wr_val[i] = ValBits'(sm_code[i*VecOperandBits +: VecOperandBits]);
        end
      end else if (a_last) begin
        tf_wr_any = 1'b1;
        tf_wr_on[0] = 1'b1;
        tf_wr_at[0] = d_obase + th_q * d_hdim + te_q;
        tf_wr_val[0] = ValBits'($signed(dot_sum));
      end else if (pend_q) begin
        tf_wr_any = 1'b1;
        tf_wr_on[0] = 1'b1;
        tf_wr_at[0] = pend_at_q;
        tf_wr_val[0] = ValBits'($signed(score));
      end
    end

    always_ff @(posedge clk_i or negedge rst_ni) begin
      if (!rst_ni) begin
        ph_q <= TIdle;
        th_q <= 0;
        tj_q <= 0;
        te_q <= 0;
        tc_q <= 0;
        tk_q <= 0;
        pend_q <= 1'b0;
        pend_at_q <= 0;
        pend_h_q <= 0;
        cap_q <= 1'b0;
        cap_h_q <= 0;
        inv_mant_q <= '0;
        inv_shift_q <= '0;
        for (int h = 0; h < MaxGroups; h++) begin
          spair_mant_q[h] <= '0;
          spair_shift_q[h] <= '0;
        end
      end else begin
        pend_q <= 1'b0;
        cap_q <= 1'b0;
        if (cap_q) begin  // a head's pair, the cycle after its last factor
          spair_mant_q[cap_h_q[$clog2(MaxGroups)-1:0]] <= tp_mant;
          spair_shift_q[cap_h_q[$clog2(MaxGroups)-1:0]] <= tp_shift;
        end
        if (state_q != Unit || unit_done) begin
          ph_q <= TIdle;
          th_q <= 0;
          tj_q <= 0;
          te_q <= 0;
          tc_q <= 0;
          tk_q <= 0;
        end else begin
          ph_q <= ph;
          unique case (ph)
            NSum: begin
              tc_q <= tc_q + 1;
              if (tc_q == feat_chunks - 1) begin
                ph_q <= NWait;
                tc_q <= 0;
              end
            end
            NWait: begin
              tc_q <= 1;  // the start cycle was tc 0
              if (rms_done) begin  // apply chunk 0 ran this cycle
                inv_mant_q <= rms_inv_mant;
                inv_shift_q <= rms_inv_shift;
                ph_q <= NApply;
              end
            end
            NApply, SqApply: tc_q <= tc_q + 1;
            SPair: begin
              if (tk_q == d_factor_count - 1) begin
                tk_q <= 0;
                cap_q <= 1'b1;
                cap_h_q <= th_q;
                if (th_q == d_groups - 1) begin
                  th_q <= 0;
                  ph_q <= SDot;
                end else begin
                  th_q <= th_q + 1;
                end
              end else begin
                tk_q <= tk_q + 1;
              end
            end
            SDot: begin
              if (tc_q != head_chunks - 1) begin
                tc_q <= tc_q + 1;
              end else begin
                tc_q <= 0;
                pend_q <= 1'b1;
                pend_at_q <= d_obase + th_q * tokens + tj_q;
                pend_h_q <= th_q;
                if (tj_q != n_vis - 1) begin
                  tj_q <= tj_q + 1;
                end else begin
                  tj_q <= 0;
                  if (th_q != d_groups - 1) th_q <= th_q + 1;
                  else ph_q <= SLast;
                end
              end
            end
            XRow: if (sm_last) th_q <= th_q + 1;
            ADot: begin
              if (tc_q != key_chunks - 1) begin
                tc_q <= tc_q + 1;
              end else begin  // the feature is written this cycle (the last one ends the layer)
                tc_q <= 0;
                if (te_q != d_hdim - 1) begin
                  te_q <= te_q + 1;
                end else begin
                  te_q <= 0;
                  th_q <= th_q + 1;
                end
              end
            end
            default: ;
          endcase
        end
      end
    end

    logic unused_tf;
    assign unused_tf = ^{unused_too_large, unused_sum, unused_mean_sq, unused_k, unused_root, unused_rms_busy,
                         unused_sm_busy, unused_max, unused_sm_sum, unused_sm_mant, unused_sm_shift, pend_h_q, cap_h_q};
  end else begin : g_no_transformer
    assign tp_mant = '0;
    assign tp_shift = '0;
    assign emb_a = '0;
    assign emb_b = '0;
    assign tf_wr_any = 1'b0;
    assign unit_done = 1'b0;
    always_comb begin
      for (int p = 0; p < Ports; p++) begin
        tf_wr_on[p] = 1'b0;
        tf_wr_at[p] = 0;
        tf_wr_val[p] = '0;
      end
    end
  end

  // ---- memory writes -----------------------------------------------------------------------
  // One write port of Ports values per cycle into the activation memory: a beat of pixels (Load),
  // a tile's requantized outputs, a pool's output, an add's chunk. Verilator 5.006 unrolls loops
  // of at most 64 iterations and refuses delayed array writes in the loops it keeps
  // (BLKLOOPINIT): the values are written by groups of up to 64, one process each.
  logic [Ports-1:0] wr_on;
  int wr_at [Ports];
  logic [ValBits-1:0] wr_val [Ports];
  always_comb begin
    for (int p = 0; p < Ports; p++) begin
      wr_on[p] = 1'b0;
      wr_at[p] = 0;
      wr_val[p] = '0;
    end
    if (state_q == Load && in_valid_i) begin
      for (int i = 0; i < Lanes; i++) begin  // a sequence's token t at t
        wr_on[i] = count_q + i < d_in;
        wr_at[i] = (seq ? token_q : 0) + count_q + i;
        wr_val[i] = ValBits'(in_data_i[i*8 +: 8]);
      end
    end else if (rq_valid_q) begin
      for (int r = 0; r < Rows; r++) begin
        wr_on[r] = r < rq_rows_q;
        wr_at[r] = rq_out_q + r;
        wr_val[r] = ValBits'($signed(z[r*AccBits +: AccBits]));
      end
    end else if (avg_valid_q) begin
      wr_on[0] = 1'b1;
      wr_at[0] = avg_out_q;
      wr_val[0] = ValBits'($signed(avg_z));
    end else if (state_q == Pool && !average && unit_last) begin
      wr_on[0] = 1'b1;
      wr_at[0] = d_obase + out_q;
      wr_val[0] = d_relu && pool_max < 0 ? '0 : ValBits'(pool_max);
    end else if (tf_wr_any) begin
      for (int p = 0; p < Ports; p++) begin
        wr_on[p] = tf_wr_on[p];
        wr_at[p] = tf_wr_at[p];
        wr_val[p] = tf_wr_val[p];
      end
    end else if (state_q == Codes && quantize) begin
      for (int i = 0; i < Lanes; i++) begin  // a quantize layer's codes (a KV cache's row)
        wr_on[i] = lane_on[i];
        wr_at[i] = d_obase + orow + q_off + chunk_q * Lanes + i;
        wr_val[i] = ValBits'($signed(chunk_codes[i*ActBits +: ActBits]));
      end
    end else if (adding) begin
      for (int i = 0; i < Lanes; i++) begin
        wr_on[i] = lane_on[i];
        wr_at[i] = d_obase + chunk_q * Lanes + i;
        wr_val[i] = ValBits'($signed(add_z[i*AccBits +: AccBits]));
      end
    end
  end
  localparam int WriteGroup = 64;
  for (genvar g = 0; g < (Ports + WriteGroup - 1) / WriteGroup; g++) begin : g_act_write
    localparam int First = g * WriteGroup;
    localparam int Last = (g + 1) * WriteGroup < Ports ? (g + 1) * WriteGroup : Ports;  // one past
    always_ff @(posedge clk_i) begin
      for (int p = First; p < Last; p++)
        if (wr_on[p]) act_q[AwBits'(wr_at[p])] <= wr_val[p];
    end
  end
  for (genvar g = 0; g < (Lanes + WriteGroup - 1) / WriteGroup; g++) begin : g_code_write
    localparam int First = g * WriteGroup;
    localparam int Last = (g + 1) * WriteGroup < Lanes ? (g + 1) * WriteGroup : Lanes;  // one past
    always_ff @(posedge clk_i) begin
      if (state_q == Codes)
        for (int i = First; i < Last; i++)
          if (lane_on[i]) code_q[CdBits'(chunk_q * Lanes + i)] <= chunk_codes[i*ActBits +: ActBits];
    end
  end

  // The controller times the reciprocal by its fixed latency; the address bits above each
  // memory's depth are ignored; the kernel height is the patch's (DescPatch), the next
  // descriptor's other fields are read when its layer runs.
  logic unused_inputs;
  // An image-only build has no transformer units to size.
  assign unused_inputs = ^{recip_done, cfg_addr_i, cfg_data_i, d_kh, dn, 32'(VecOperandBits), 32'(VecAccBits),
                           32'(VecSaturate), 32'(TableDepth), 32'(MaxGroups)};

  // ---- the controller ----------------------------------------------------------------------
  // Starts layer l + 1 (or the output stream after the last layer).
  logic last_layer;
  assign last_layer = layer_q + 1'b1 == layers_q;

  always_ff @(posedge clk_i or negedge rst_ni) begin
    if (!rst_ni) begin
      state_q <= Idle;
      layer_q <= '0;
      token_q <= 0;
      count_q <= 0;
      chunk_q <= 0;
      group_q <= 0;
      tile_q <= 0;
      oy_q <= 0;
      ox_q <= 0;
      ch_q <= 0;
      out_q <= 0;
      recip_q <= '0;
      amax_q <= '0;
      rq_valid_q <= 1'b0;
      rq_out_q <= 0;
      rq_pair_q <= 0;
      rq_rows_q <= 0;
      max_q <= '0;
      any_q <= 1'b0;
      sum_q <= '0;
      avg_valid_q <= 1'b0;
      avg_sum_q <= '0;
      avg_out_q <= 0;
    end else begin
      rq_valid_q <= 1'b0;
      avg_valid_q <= 1'b0;
      // A finished layer hands over to the next one's first state, its counters at zero.
      if ((state_q == RequantLast) || (state_q == PoolLast) ||
          (state_q == Pool && !average && unit_last && out_q == d_out - 1) ||
          (adding && chunk_q == pass_chunks - 1) ||
          (state_q == Codes && quantize && chunk_q == pass_chunks - 1 && (d_static || group_q == d_groups - 1)) ||
          (state_q == Unit && unit_done)) begin
        chunk_q <= 0;
        group_q <= 0;
        tile_q <= 0;
        oy_q <= 0;
        ox_q <= 0;
        ch_q <= 0;
        out_q <= 0;
        amax_q <= '0;
        any_q <= 1'b0;
        sum_q <= '0;
        if (last_layer) begin
          state_q <= Output;
          layer_q <= '0;
          count_q <= 0;
        end else begin
          state_q <= first_state(dn);
          layer_q <= layer_q + 1'b1;
        end
      end else begin
        unique case (state_q)
          Idle: begin
            if (layers_q != 0) state_q <= Load;
            count_q <= 0;
          end
          Load: begin
            if (in_valid_i) begin
              count_q <= count_q + Lanes;
              if (count_q + Lanes >= d_in) begin  // the first layer's inputs
                state_q <= first_state(d);
                chunk_q <= 0;
                amax_q <= '0;
              end
            end
          end
          Absmax: begin
            amax_q <= amax_next;
            if (chunk_q == pass_chunks - 1) begin
              state_q <= Recip;
              recip_q <= '0;
            end else begin
              chunk_q <= chunk_q + 1;
            end
          end
          Recip: begin
            recip_q <= recip_q + 1'b1;
            if (32'(recip_q) + 1 == MantBits) begin
              state_q <= Codes;
              chunk_q <= 0;
            end
          end
          Codes: begin
            if (chunk_q == pass_chunks - 1) begin
              // A kernel layer's array; a quantize layer's next group (its last ends the layer).
              state_q <= quantize ? Absmax : Array;
              chunk_q <= 0;
              if (quantize) group_q <= group_q + 1;
              amax_q <= '0;
            end else begin
              chunk_q <= chunk_q + 1;
            end
          end
          Array: begin
            if (!unit_last) begin
              chunk_q <= chunk_q + 1;
            end else begin
              // The pixel's tile is done: requantize it next cycle; then the next pixel, tile, group.
              chunk_q <= 0;
              rq_valid_q <= 1'b1;
              rq_out_q <= d_obase + (oy_q * d_out_w + ox_q) * d_out_c + group_q * d_gout + tile_q * Rows;
              rq_pair_q <= d_rbase + group_q * d_gout + tile_q * Rows;
              rq_rows_q <= d_gout - tile_q * Rows < Rows ? d_gout - tile_q * Rows : Rows;
              if (ox_q != d_out_w - 1) begin
                ox_q <= ox_q + 1;
              end else begin
                ox_q <= 0;
                if (oy_q != d_out_h - 1) begin
                  oy_q <= oy_q + 1;
                end else begin
                  oy_q <= 0;
                  if (tile_q != tiles - 1) begin
                    tile_q <= tile_q + 1;
                  end else begin
                    tile_q <= 0;
                    if (group_q != d_groups - 1) group_q <= group_q + 1;
                    else state_q <= RequantLast;
                  end
                end
              end
            end
          end
          Pool: begin
            if (!unit_last) begin
              chunk_q <= chunk_q + 1;
              max_q <= pool_max;
              any_q <= pool_any;
              sum_q <= pool_sum;
            end else begin
              // The window is done (a max is written this cycle, an average requantized next).
              chunk_q <= 0;
              any_q <= 1'b0;
              sum_q <= '0;
              avg_valid_q <= average;
              avg_sum_q <= pool_sum > Sum32Max ? 32'sh7fffffff : pool_sum < Sum32Min ? 32'sh80000000 : 32'(pool_sum);
              avg_out_q <= d_obase + out_q;
              out_q <= out_q + 1;
              if (ch_q != d_in_c - 1) begin
                ch_q <= ch_q + 1;
              end else begin
                ch_q <= 0;
                if (ox_q != d_out_w - 1) begin
                  ox_q <= ox_q + 1;
                end else begin
                  ox_q <= 0;
                  oy_q <= oy_q + 1;
                end
              end
              if (average && out_q == d_out - 1) state_q <= PoolLast;
            end
          end
          AddUnit, Embed: chunk_q <= chunk_q + 1;
          Pair: begin  // factor chunk_q; then the codes or the adder with the token's pair
            if (chunk_q == d_factor_count - 1) begin
              state_q <= quantize ? Codes : AddUnit;
              chunk_q <= 0;
            end else begin
              chunk_q <= chunk_q + 1;
            end
          end
          Unit: ;  // g_transformer runs the layer until unit_done
          Output: begin
            if (out_ready_i) begin
              if (count_q + Lanes >= d_out) begin
                count_q <= 0;
                if (last_layer) begin
                  // The next token of a sequence, or the next sample.
                  state_q <= Load;
                  layer_q <= '0;
                  token_q <= seq && token_q + 1 < tokens ? token_q + 1 : 0;
                end else begin
                  layer_q <= layer_q + 1'b1;
                end
              end else begin
                count_q <= count_q + Lanes;
              end
            end
          end
          default: state_q <= Idle;
        endcase
      end
    end
  end

  assign in_ready_o = state_q == Load;
  assign out_valid_o = state_q == Output;
  // A sequence's scores and probabilities past the token's visible positions are 0 on the stream
  // (the units never read them).
  logic masked_rows;
  assign masked_rows = seq && (d_op == qathw_cfg_pkg::OpScores || d_op == qathw_cfg_pkg::OpSoftmax);
  always_comb begin
    for (int i = 0; i < Lanes; i++)
      out_data_o[i*OutBits +: OutBits] =
          state_q == Output && count_q + i < d_out && !(masked_rows && (count_q + i) % tokens > token_q)
              ? OutBits'(act_q[AwBits'(d_obase + orow + count_q + i)]) : '0;
  end
  assign out_bits_o = 6'(OutBits);
  assign out_layer_o = layer_q;
  assign out_last_o = state_q == Output && last_layer && count_q + Lanes >= d_out && (!seq || token_q + 1 >= tokens);
  assign computing_o = state_q == Absmax || state_q == Recip || state_q == Codes || state_q == Array ||
                       state_q == RequantLast || state_q == Pool || state_q == PoolLast || state_q == AddUnit ||
                       state_q == Pair || state_q == Embed || state_q == Unit;
  assign layer_o = layer_q;
endmodule
