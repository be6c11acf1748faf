// The accelerator: configuration port, activation/code/weight/requant memories (behavioural),
// the activation quantizer (absmax pass, reciprocal, code pass), the PE array, Rows requant units
// and the controller that runs the configured layers on each sample. Per layer it takes
// 2C + M + T C + 1 cycles (C = ceil(in / Lanes) chunks, T = ceil(out / Rows) tiles,
// M = MantBits), the cycle model of docs/sim.md. Samples arrive as a pixel stream; every layer's
// outputs leave as a stream (valid/ready) after the last layer.
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
  parameter int MaxLayers = 4,
  parameter int MaxWidth = 1024,     // widest layer input or output
  parameter int WeightWords = 4096,  // weight memory words of Rows x Lanes codes
  parameter int RequantDepth = 2048,  // requantization pairs, one per output channel of every layer
  // Fault injection, for proving that verification catches a wrong datapath: in this layer the
  // activation quantizer clamps to qmax - 1 instead of qmax. -1: no fault (every real build).
  parameter int FaultClampLayer = -1,
  // Optional $readmemh images of the weight and requantization memories (the configuration port
  // loads them otherwise): hex words of Rows x Lanes codes, and {shift, mantissa} pairs.
  parameter WeightInit = "",
  parameter RequantMantissaInit = "",
  parameter RequantShiftInit = "",
  localparam int CfgBits = Rows * Lanes * 4 > 72 ? Rows * Lanes * 4 : 72  // a weight word or a descriptor
) (
  input  logic                       clk_i,
  input  logic                       rst_ni,
  // Configuration writes: kind 0 weight word, 1 requant pair {shift[5:0], mantissa}, 2 layer
  // descriptor {requant_base[15:0], weight_base[15:0], relu, out[15:0], in[15:0]}, 3 layer count.
  input  logic                       cfg_we_i,
  input  logic [1:0]                 cfg_kind_i,
  input  logic [15:0]                cfg_addr_i,
  input  logic [CfgBits-1:0]         cfg_data_i,
  // One sample's pixels, row-major.
  input  logic                       in_valid_i,
  output logic                       in_ready_o,
  input  logic [7:0]                 in_data_i,
  // Every layer's outputs, layer after layer; out_last_o marks the sample's last word.
  output logic                       out_valid_o,
  input  logic                       out_ready_i,
  output logic [AccBits-1:0]         out_data_o,
  output logic [7:0]                 out_layer_o,
  output logic                       out_last_o,
  // Which layer is computing (for cycle counts and waveforms).
  output logic                       computing_o,
  output logic [7:0]                 layer_o
);
  localparam int ValBits = AccBits > 9 ? AccBits : 9;  // holds a pixel (0..255) or a layer output
  localparam int WBits = Rows * Lanes * 4;
  localparam int IdxBits = $clog2(MaxWidth + 1);
  localparam int XBits = $clog2(MaxWidth);         // index into a layer's values
  localparam int WaBits = $clog2(WeightWords);
  localparam int RaBits = $clog2(RequantDepth);
  localparam int LBits = $clog2(MaxLayers);        // index of a layer
  localparam int ABits = $clog2(MaxLayers + 1);    // index of an activation buffer

  typedef enum logic [2:0] {Idle, Load, Absmax, Recip, Codes, Array, RequantLast, Output} state_e;

  // ---- memories ---------------------------------------------------------------------------
  logic [ValBits-1:0]  act_q [MaxLayers + 1][MaxWidth];  // [0]: pixels; [l + 1]: layer l's outputs
  logic [ActBits-1:0]  code_q [MaxWidth];
  logic [WBits-1:0]    wmem_q [WeightWords];
  logic [MantBits-1:0] rq_mant_q [RequantDepth];
  logic [5:0]          rq_shift_q [RequantDepth];
  logic [15:0]         d_in_q [MaxLayers], d_out_q [MaxLayers], d_wbase_q [MaxLayers], d_rbase_q [MaxLayers];
  logic                d_relu_q [MaxLayers];
  logic [7:0]          layers_q;

  initial begin
    if (WeightInit != "") $readmemh(WeightInit, wmem_q);
    if (RequantMantissaInit != "") $readmemh(RequantMantissaInit, rq_mant_q);
    if (RequantShiftInit != "") $readmemh(RequantShiftInit, rq_shift_q);
  end

  always_ff @(posedge clk_i) begin
    if (cfg_we_i) begin
      unique case (cfg_kind_i)
        2'd0: wmem_q[WaBits'(cfg_addr_i)] <= cfg_data_i[WBits-1:0];
        2'd1: begin
          rq_mant_q[RaBits'(cfg_addr_i)] <= cfg_data_i[MantBits-1:0];
          rq_shift_q[RaBits'(cfg_addr_i)] <= cfg_data_i[MantBits +: 6];
        end
        2'd2: begin
          d_in_q[LBits'(cfg_addr_i)] <= cfg_data_i[15:0];
          d_out_q[LBits'(cfg_addr_i)] <= cfg_data_i[31:16];
          d_relu_q[LBits'(cfg_addr_i)] <= cfg_data_i[32];
          d_wbase_q[LBits'(cfg_addr_i)] <= cfg_data_i[48:33];
          d_rbase_q[LBits'(cfg_addr_i)] <= cfg_data_i[64:49];
        end
        default: layers_q <= cfg_data_i[7:0];
      endcase
    end
  end

  // ---- controller state --------------------------------------------------------------------
  state_e state_q;
  logic [7:0] layer_q;
  logic [IdxBits-1:0] count_q;   // pixels loaded, or words streamed out
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

  // Values of this chunk (Absmax and Codes read Lanes of them per cycle).
  logic [ValBits-1:0] chunk_val [Lanes];
  logic [Lanes-1:0] lane_on;
  always_comb begin
    for (int i = 0; i < Lanes; i++) begin
      lane_on[i] = 32'(chunk_q) * Lanes + i < 32'(in_n);
      chunk_val[i] = lane_on[i] ? act_q[ai_in][XBits'(32'(chunk_q) * Lanes + i)] : '0;
    end
  end

  // Absmax of the token so far and this chunk.
  logic [AccBits:0] amax_next;
  always_comb begin
    amax_next = amax_q;
    for (int i = 0; i < Lanes; i++) begin
      logic signed [AccBits:0] v;
      logic [AccBits:0] mag;
      v = (AccBits + 1)'($signed(chunk_val[i]));  // sign-extends: ValBits <= AccBits + 1
      mag = v[AccBits] ? -v : v;
      if (mag > amax_next) amax_next = mag;
    end
  end

  // The reciprocal unit, started in the last absmax cycle.
  logic recip_start, recip_busy, recip_done;
  logic [MantBits-1:0] inv_mant;
  logic [5:0] inv_shift;
  assign recip_start = state_q == Absmax && chunk_q == chunks - 1;
  qathw_reciprocal #(
    .InBits(AccBits + 1), .ActBits(ActBits), .MantBits(MantBits), .ShiftMin(ShiftMin), .ShiftMax(ShiftMax),
    .HalfEven(HalfEven)
  ) u_recip (
    .clk_i, .rst_ni, .start_i(recip_start), .amax_i(amax_next), .busy_o(recip_busy), .done_o(recip_done),
    .mantissa_o(inv_mant), .shift_o(inv_shift)
  );

  // Lanes activation-code elements.
  localparam logic [ActBits-1:0] QMaxCode = ActBits'((1 << (ActBits - 1)) - 1);
  logic [ActBits-1:0] chunk_code [Lanes];
  for (genvar i = 0; i < Lanes; i++) begin : g_code
    logic [ActBits-1:0] code;
    qathw_act_code #(.InBits(ValBits), .ActBits(ActBits), .MantBits(MantBits), .HalfEven(HalfEven)) u_code (
      .v_i(chunk_val[i]), .mantissa_i(inv_mant), .shift_i(inv_shift), .code_o(code)
    );
    if (FaultClampLayer >= 0) begin : g_fault
      assign chunk_code[i] = (32'(layer_q) == FaultClampLayer && code == QMaxCode) ? code - 1'b1 : code;
    end else begin : g_no_fault
      assign chunk_code[i] = code;
    end
  end

  // The PE array on one chunk of one tile.
  logic [Lanes*ActBits-1:0] x_flat;
  logic [Rows-1:0] row_on;
  logic [Rows*AccBits-1:0] acc_flat;
  logic array_valid, array_clear;
  always_comb begin
    for (int i = 0; i < Lanes; i++)
      x_flat[i*ActBits +: ActBits] = lane_on[i] ? code_q[XBits'(32'(chunk_q) * Lanes + i)] : '0;
    for (int r = 0; r < Rows; r++) row_on[r] = 32'(tile_q) * Rows + r < 32'(out_n);
  end
  assign array_valid = state_q == Array;
  assign array_clear = state_q == Array && chunk_q == 0;
  qathw_pe_array #(
    .Rows(Rows), .Lanes(Lanes), .ActBits(ActBits), .AccBits(AccBits), .WeightInt4(WeightInt4), .Saturate(Saturate)
  ) u_array (
    .clk_i, .rst_ni, .clear_i(array_clear), .valid_i(array_valid), .x_i(x_flat),
    .w_i(wmem_q[WaBits'(32'(d_wbase_q[li]) + 32'(tile_q) * 32'(chunks) + 32'(chunk_q))]), .lane_en_i(lane_on),
    .row_en_i(row_on), .acc_o(acc_flat)
  );

  // Rows requant units on the previous tile's accumulators: in the first chunk cycle of the next
  // tile, or in RequantLast for the last tile.
  logic requant_now;
  logic [15:0] rq_tile;
  logic [AccBits-1:0] z [Rows];
  assign requant_now = (state_q == Array && chunk_q == 0 && tile_q != 0) || state_q == RequantLast;
  assign rq_tile = state_q == RequantLast ? tile_q : tile_q - 16'd1;
  for (genvar r = 0; r < Rows; r++) begin : g_requant
    logic [RaBits-1:0] n;
    assign n = RaBits'(32'(d_rbase_q[li]) + 32'(rq_tile) * Rows + r);
    qathw_requant #(.AccBits(AccBits), .MantBits(MantBits), .HalfEven(HalfEven)) u_requant (
      .acc_i(acc_flat[r*AccBits +: AccBits]), .mantissa_i(rq_mant_q[n]), .shift_i(rq_shift_q[n]),
      .relu_i(d_relu_q[li]), .z_o(z[r])
    );
  end

  // The controller times the reciprocal by its fixed latency; the address bits above each
  // memory's depth are ignored.
  logic unused_inputs;
  assign unused_inputs = ^{recip_busy, recip_done, cfg_addr_i, cfg_data_i};

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
            act_q[0][XBits'(count_q)] <= ValBits'(in_data_i);
            count_q <= count_q + 1'b1;
            if (32'(count_q) + 1 == 32'(d_in_q[0])) begin  // the first layer's inputs
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
          for (int i = 0; i < Lanes; i++)
            if (lane_on[i]) code_q[XBits'(32'(chunk_q) * Lanes + i)] <= chunk_code[i];
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
            if (32'(count_q) + 1 == 32'(out_n)) begin
              count_q <= '0;
              if (layer_q + 1'b1 == layers_q) begin
                state_q <= Load;
                layer_q <= '0;
              end else begin
                layer_q <= layer_q + 1'b1;
              end
            end else begin
              count_q <= count_q + 1'b1;
            end
          end
        end
        default: state_q <= Idle;
      endcase
      if (requant_now)
        for (int r = 0; r < Rows; r++)
          if (32'(rq_tile) * Rows + r < 32'(out_n))
            act_q[ai_out][XBits'(32'(rq_tile) * Rows + r)] <= ValBits'($signed(z[r]));
    end
  end

  assign in_ready_o = state_q == Load;
  assign out_valid_o = state_q == Output;
  assign out_data_o = AccBits'(act_q[ai_out][XBits'(count_q)]);
  assign out_layer_o = layer_q;
  assign out_last_o = state_q == Output && layer_q + 1'b1 == layers_q && 32'(count_q) + 1 == 32'(out_n);
  assign computing_o = state_q == Absmax || state_q == Recip || state_q == Codes || state_q == Array ||
                       state_q == RequantLast;
  assign layer_o = layer_q;
endmodule
