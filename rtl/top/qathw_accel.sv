// The accelerator: configuration port, activation/code/weight/requant memories (behavioural),
// the controller that runs the configured layers on each sample, and qathw_datapath (the PE
// array, the activation quantizer's absmax, reciprocal and code units, Rows requant units). Per layer it takes
// 2C + M + T C + 1 cycles (C = ceil(in / Lanes) chunks, T = ceil(out / Rows) tiles,
// M = MantBits), the cycle model of docs/sim.md. Samples arrive as a stream of Lanes pixels per
// beat; every layer's outputs leave as a stream of Lanes values per beat (valid/ready) after the
// last layer: the width of a code memory word, so a 784-pixel image takes ceil(784 / Lanes) beats.
// The configuration port's layout (generated from qathw/target/config_port.h), unless the build
// lists the package itself.
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
  // Memory sizes: every build passes those of qathw/target/rtl_memories.h (docs/rtl.md, "Memories").
  parameter int MaxLayers = 16,
  parameter int MaxWidth = 1024,     // widest layer input or output
  parameter int WeightWords = 4096,  // weight memory words of Rows x Lanes codes (at most 2^16)
  parameter int RequantDepth = 2048,  // requantization pairs, one per output channel of every layer
  // Fault injection, for proving that verification catches a wrong datapath: in this layer the
  // activation quantizer clamps to qmax - 1 instead of qmax. -1: no fault (every real build).
  parameter int FaultClampLayer = -1,
  // Optional $readmemh images of the weight and requantization memories (the configuration port
  // loads them otherwise): hex words of Rows x Lanes codes, and {shift, mantissa} pairs.
  parameter WeightInit = "",
  parameter RequantMantissaInit = "",
  parameter RequantShiftInit = "",
  localparam int WBits = WeightInt4 != 0 ? 4 : 2,  // bits of one weight code: arith::code_bits
  // A weight word, and at least a descriptor or a requantization pair (qathw_cfg_pkg).
  localparam int CfgBits = Rows * Lanes * WBits > qathw_cfg_pkg::DataMinBits ? Rows * Lanes * WBits
                                                                              : qathw_cfg_pkg::DataMinBits
) (
  input  logic                       clk_i,
  input  logic                       rst_ni,
  // Configuration writes, laid out by qathw_cfg_pkg (generated from qathw/target/config_port.h):
  // a weight word, a requant pair {shift, mantissa}, a layer descriptor {requant_base,
  // weight_base, relu, out, in}, or the layer count.
  input  logic                       cfg_we_i,
  input  logic [qathw_cfg_pkg::KindBits-1:0] cfg_kind_i,
  input  logic [qathw_cfg_pkg::AddrBits-1:0] cfg_addr_i,
  input  logic [CfgBits-1:0]         cfg_data_i,
  // One sample's pixels, row-major, Lanes per beat: pixel b Lanes + i of beat b in bits
  // [8 i +: 8]; the last beat's lanes past the image are ignored.
  input  logic                       in_valid_i,
  output logic                       in_ready_o,
  input  logic [Lanes*8-1:0]         in_data_i,
  // Every layer's outputs, layer after layer, Lanes per beat: value b Lanes + i of the layer in
  // bits [i AccBits +: AccBits], zero past its last; out_last_o marks the sample's last beat.
  output logic                       out_valid_o,
  input  logic                       out_ready_i,
  output logic [Lanes*AccBits-1:0]   out_data_o,
  output logic [7:0]                 out_layer_o,
  output logic                       out_last_o,
  // Which layer is computing (for cycle counts and waveforms).
  output logic                       computing_o,
  output logic [7:0]                 layer_o
);
  localparam int ValBits = AccBits > 9 ? AccBits : 9;  // holds a pixel (0..255) or a layer output
  localparam int WordBits = Rows * Lanes * WBits;        // a weight word
  localparam int CodeWords = (MaxWidth + Lanes - 1) / Lanes;  // code memory words of Lanes codes
  localparam int CwBits = CodeWords > 1 ? $clog2(CodeWords) : 1;
  localparam int IdxBits = $clog2(MaxWidth + 1);
  localparam int XBits = $clog2(MaxWidth);         // index into a layer's values
  localparam int WaBits = $clog2(WeightWords);
  localparam int RaBits = $clog2(RequantDepth);
  localparam int LBits = $clog2(MaxLayers);        // index of a layer
  localparam int ABits = $clog2(MaxLayers + 1);    // index of an activation buffer

  typedef enum logic [2:0] {Idle, Load, Absmax, Recip, Codes, Array, RequantLast, Output} state_e;

  // ---- memories ---------------------------------------------------------------------------
  logic [ValBits-1:0]  act_q [MaxLayers + 1][MaxWidth];  // [0]: pixels; [l + 1]: layer l's outputs
  logic [Lanes*ActBits-1:0] code_q [CodeWords];         // chunk c's codes in word c
  logic [WordBits-1:0] wmem_q [WeightWords];
  logic [MantBits-1:0] rq_mant_q [RequantDepth];
  logic [qathw_cfg_pkg::RequantShiftBits-1:0] rq_shift_q [RequantDepth];
  logic [qathw_cfg_pkg::DescInBits-1:0]          d_in_q [MaxLayers];
  logic [qathw_cfg_pkg::DescOutBits-1:0]         d_out_q [MaxLayers];
  logic [qathw_cfg_pkg::DescWeightBaseBits-1:0]  d_wbase_q [MaxLayers];
  logic [qathw_cfg_pkg::DescRequantBaseBits-1:0] d_rbase_q [MaxLayers];
  logic                d_relu_q [MaxLayers];
  logic [qathw_cfg_pkg::LayerCountBits-1:0] layers_q;

  initial begin
    if (WeightInit != "") $readmemh(WeightInit, wmem_q);
    if (RequantMantissaInit != "") $readmemh(RequantMantissaInit, rq_mant_q);
    if (RequantShiftInit != "") $readmemh(RequantShiftInit, rq_shift_q);
  end

  always_ff @(posedge clk_i) begin
    if (cfg_we_i) begin
      unique case (cfg_kind_i)
        qathw_cfg_pkg::KindWeightWord: wmem_q[WaBits'(cfg_addr_i)] <= cfg_data_i[WordBits-1:0];
        qathw_cfg_pkg::KindRequantPair: begin
          rq_mant_q[RaBits'(cfg_addr_i)] <= cfg_data_i[qathw_cfg_pkg::RequantMantissaLsb +: MantBits];
          rq_shift_q[RaBits'(cfg_addr_i)] <=
              cfg_data_i[qathw_cfg_pkg::RequantMantissaLsb + MantBits +: qathw_cfg_pkg::RequantShiftBits];
        end
        qathw_cfg_pkg::KindLayerDescriptor: begin
          d_in_q[LBits'(cfg_addr_i)] <= cfg_data_i[qathw_cfg_pkg::DescInLsb +: qathw_cfg_pkg::DescInBits];
          d_out_q[LBits'(cfg_addr_i)] <= cfg_data_i[qathw_cfg_pkg::DescOutLsb +: qathw_cfg_pkg::DescOutBits];
          d_relu_q[LBits'(cfg_addr_i)] <= cfg_data_i[qathw_cfg_pkg::DescReluLsb];
          d_wbase_q[LBits'(cfg_addr_i)] <=
              cfg_data_i[qathw_cfg_pkg::DescWeightBaseLsb +: qathw_cfg_pkg::DescWeightBaseBits];
          d_rbase_q[LBits'(cfg_addr_i)] <=
              cfg_data_i[qathw_cfg_pkg::DescRequantBaseLsb +: qathw_cfg_pkg::DescRequantBaseBits];
        end
        qathw_cfg_pkg::KindLayerCount: layers_q <= cfg_data_i[qathw_cfg_pkg::LayerCountLsb +: qathw_cfg_pkg::LayerCountBits];
        default: ;
      endcase
    end
  end

  // ---- controller state --------------------------------------------------------------------
  state_e state_q;
  logic [7:0] layer_q;
  logic [IdxBits-1:0] count_q;   // pixels loaded, or values streamed out, in the beats so far
  logic [15:0] chunk_q, tile_q;
  logic [7:0] recip_q;           // cycles spent in Recip
  logic [AccBits:0] amax_q;

  logic [LBits-1:0] li;  // this layer, as an index
  logic [ABits-1:0] ai_in, ai_out;  // its input and output buffers
  assign li = LBits'(layer_q);
  assign ai_in = ABits'(layer_q);
  assign ai_out = ABits'(layer_q + 8'd1);
  logic [15:0] in_n, out_n, chunks, tiles;
  assign in_n = d_in_q[li];
  assign out_n = d_out_q[li];
  assign chunks = 16'((32'(in_n) + Lanes - 1) / Lanes);
  assign tiles = 16'((32'(out_n) + Rows - 1) / Rows);

  // Values of this chunk (Absmax and Codes read Lanes of them per cycle), zero on lanes past the
  // layer's input.
  logic [Lanes*ValBits-1:0] chunk_val;
  logic [Lanes-1:0] lane_on;
  always_comb begin
    for (int i = 0; i < Lanes; i++) begin
      lane_on[i] = 32'(chunk_q) * Lanes + i < 32'(in_n);
      chunk_val[i*ValBits +: ValBits] = lane_on[i] ? act_q[ai_in][XBits'(32'(chunk_q) * Lanes + i)] : '0;
    end
  end

  // The PE array's inputs: one chunk of one tile.
  logic [Lanes*ActBits-1:0] code_word, x_flat;
  logic [Rows-1:0] row_on;
  logic array_valid, array_clear;
  assign code_word = code_q[CwBits'(chunk_q)];
  always_comb begin
    for (int i = 0; i < Lanes; i++) x_flat[i*ActBits +: ActBits] = lane_on[i] ? code_word[i*ActBits +: ActBits] : '0;
    for (int r = 0; r < Rows; r++) row_on[r] = 32'(tile_q) * Rows + r < 32'(out_n);
  end
  assign array_valid = state_q == Array;
  assign array_clear = state_q == Array && chunk_q == 0;

  // Rows requant units on the previous tile's accumulators: in the first chunk cycle of the next
  // tile, or in RequantLast for the last tile.
  logic requant_now;
  logic [15:0] rq_tile;
  logic [Rows*MantBits-1:0] rq_mant;
  logic [Rows*6-1:0] rq_shift;
  assign requant_now = (state_q == Array && chunk_q == 0 && tile_q != 0) || state_q == RequantLast;
  assign rq_tile = state_q == RequantLast ? tile_q : tile_q - 16'd1;
  for (genvar r = 0; r < Rows; r++) begin : g_requant_pair
    logic [RaBits-1:0] n;
    assign n = RaBits'(32'(d_rbase_q[li]) + 32'(rq_tile) * Rows + r);
    assign rq_mant[r*MantBits +: MantBits] = rq_mant_q[n];
    assign rq_shift[r*6 +: 6] = rq_shift_q[n];
  end

  // The datapath. The reciprocal starts in the last absmax cycle.
  logic recip_start, recip_done;
  logic [AccBits:0] amax_next;
  logic [Lanes*ActBits-1:0] codes;
  logic [Rows*AccBits-1:0] z;
  assign recip_start = state_q == Absmax && chunk_q == chunks - 1;
  qathw_datapath #(
    .Rows(Rows), .Lanes(Lanes), .ActBits(ActBits), .AccBits(AccBits), .MantBits(MantBits), .ShiftMin(ShiftMin),
    .ShiftMax(ShiftMax), .WeightInt4(WeightInt4), .Saturate(Saturate), .HalfEven(HalfEven)
  ) u_datapath (
    .clk_i, .rst_ni, .clear_i(array_clear), .valid_i(array_valid), .x_i(x_flat),
    .w_i(wmem_q[WaBits'(32'(d_wbase_q[li]) + 32'(tile_q) * 32'(chunks) + 32'(chunk_q))]), .lane_en_i(lane_on),
    .row_en_i(row_on), .v_i(chunk_val), .amax_i(amax_q), .amax_o(amax_next), .recip_start_i(recip_start),
    .recip_done_o(recip_done), .codes_o(codes), .rq_mantissa_i(rq_mant), .rq_shift_i(rq_shift),
    .relu_i(d_relu_q[li]), .z_o(z)
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

  // Activation and code memory writes: a beat of Lanes pixels per Load cycle, a chunk's codes
  // (one word) per Codes cycle, and the requant units' values of the previous tile. Verilator
  // 5.006 unrolls loops of at most 64 iterations and refuses delayed array writes in the loops it
  // keeps (BLKLOOPINIT): the Lanes pixels and the Rows values are written by groups of up to 64,
  // one process each.
  always_ff @(posedge clk_i) begin
    if (state_q == Codes) code_q[CwBits'(chunk_q)] <= chunk_codes;
  end
  localparam int WriteGroup = 64;
  for (genvar g = 0; g < (Lanes + WriteGroup - 1) / WriteGroup; g++) begin : g_pixel_write
    localparam int First = g * WriteGroup;
    localparam int Last = (g + 1) * WriteGroup < Lanes ? (g + 1) * WriteGroup : Lanes;  // one past
    always_ff @(posedge clk_i) begin
      if (state_q == Load && in_valid_i)
        for (int i = First; i < Last; i++)
          if (32'(count_q) + i < 32'(d_in_q[0])) act_q[0][XBits'(32'(count_q) + i)] <= ValBits'(in_data_i[i*8 +: 8]);
    end
  end
  for (genvar g = 0; g < (Rows + WriteGroup - 1) / WriteGroup; g++) begin : g_act_write
    localparam int First = g * WriteGroup;
    localparam int Last = (g + 1) * WriteGroup < Rows ? (g + 1) * WriteGroup : Rows;  // one past
    always_ff @(posedge clk_i) begin
      if (requant_now)
        for (int r = First; r < Last; r++)
          if (32'(rq_tile) * Rows + r < 32'(out_n))
            act_q[ai_out][XBits'(32'(rq_tile) * Rows + r)] <= ValBits'($signed(z[r*AccBits +: AccBits]));
    end
  end

  // The controller times the reciprocal by its fixed latency; the address bits above each
  // memory's depth are ignored.
  logic unused_inputs;
  assign unused_inputs = ^{recip_done, cfg_addr_i, cfg_data_i};

  always_ff @(posedge clk_i or negedge rst_ni) begin
    if (!rst_ni) begin
      state_q <= Idle;
      layer_q <= '0;
      count_q <= '0;
      chunk_q <= '0;
      tile_q <= '0;
      recip_q <= '0;
      amax_q <= '0;
    end else begin
      unique case (state_q)
        Idle: begin
          if (layers_q != 0) state_q <= Load;
          count_q <= '0;
        end
        Load: begin
          if (in_valid_i) begin
            count_q <= IdxBits'(32'(count_q) + Lanes);
            if (32'(count_q) + Lanes >= 32'(d_in_q[0])) begin  // the first layer's inputs
              state_q <= Absmax;
              layer_q <= '0;
              chunk_q <= '0;
              amax_q <= '0;
            end
          end
        end
        Absmax: begin
          amax_q <= amax_next;
          if (chunk_q == chunks - 1) begin
            state_q <= Recip;
            recip_q <= '0;
          end else begin
            chunk_q <= chunk_q + 1'b1;
          end
        end
        Recip: begin
          recip_q <= recip_q + 1'b1;
          if (32'(recip_q) + 1 == MantBits) begin
            state_q <= Codes;
            chunk_q <= '0;
          end
        end
        Codes: begin
          if (chunk_q == chunks - 1) begin
            state_q <= Array;
            chunk_q <= '0;
            tile_q <= '0;
          end else begin
            chunk_q <= chunk_q + 1'b1;
          end
        end
        Array: begin
          if (chunk_q == chunks - 1) begin
            chunk_q <= '0;
            if (tile_q == tiles - 1) state_q <= RequantLast;
            else tile_q <= tile_q + 1'b1;
          end else begin
            chunk_q <= chunk_q + 1'b1;
          end
        end
        RequantLast: begin
          chunk_q <= '0;
          amax_q <= '0;
          if (layer_q + 1'b1 == layers_q) begin
            state_q <= Output;
            layer_q <= '0;
            count_q <= '0;
          end else begin
            state_q <= Absmax;
            layer_q <= layer_q + 1'b1;
          end
        end
        Output: begin
          if (out_ready_i) begin
            if (32'(count_q) + Lanes >= 32'(out_n)) begin
              count_q <= '0;
              if (layer_q + 1'b1 == layers_q) begin
                state_q <= Load;
                layer_q <= '0;
              end else begin
                layer_q <= layer_q + 1'b1;
              end
            end else begin
              count_q <= IdxBits'(32'(count_q) + Lanes);
            end
          end
        end
        default: state_q <= Idle;
      endcase
    end
  end

  assign in_ready_o = state_q == Load;
  assign out_valid_o = state_q == Output;
  always_comb begin
    for (int i = 0; i < Lanes; i++)
      out_data_o[i*AccBits +: AccBits] =
          32'(count_q) + i < 32'(out_n) ? AccBits'(act_q[ai_out][XBits'(32'(count_q) + i)]) : '0;
  end
  assign out_layer_o = layer_q;
  assign out_last_o = state_q == Output && layer_q + 1'b1 == layers_q && 32'(count_q) + Lanes >= 32'(out_n);
  assign computing_o = state_q == Absmax || state_q == Recip || state_q == Codes || state_q == Array ||
                       state_q == RequantLast;
  assign layer_o = layer_q;
endmodule
