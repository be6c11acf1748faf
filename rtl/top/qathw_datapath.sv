// The accelerator's datapath without its memories and controller: the PE array, the activation
// quantizer's absmax reduction, reciprocal unit and Lanes code elements (by the reciprocal, or by a
// static quantizer's pair), and Rows requantization units. qathw_accel instantiates it, so the top `qat-hw synth` synthesises is the datapath the
// RTL tests verify; area is in the datapath, and behavioural memories map to whatever SRAM
// macros or block RAM a flow provides.
module qathw_datapath #(
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
  parameter int ValBits = AccBits > 9 ? AccBits : 9,  // a pixel (0..255) or a layer output
  parameter int AmaxBits = AccBits + 1,              // the absmax: a bit above the widest value
  localparam int WBits = WeightInt4 != 0 ? 4 : 2       // bits of one weight code: arith::code_bits
) (
  input  logic                         clk_i,
  input  logic                         rst_ni,
  // The PE array.
  input  logic                         clear_i,
  input  logic                         valid_i,
  input  logic [Lanes*ActBits-1:0]     x_i,
  input  logic [Rows*Lanes*WBits-1:0]  w_i,
  input  logic [Lanes-1:0]             lane_en_i,
  input  logic [Rows-1:0]              row_en_i,
  // The activation quantizer: Lanes values of one chunk (zero on lanes that are off).
  input  logic [Lanes*ValBits-1:0]     v_i,
  input  logic [AmaxBits-1:0]          amax_i,       // absmax of the token's earlier chunks
  output logic [AmaxBits-1:0]          amax_o,       // absmax of those and of v_i
  input  logic                         recip_start_i,  // start the reciprocal of amax_o
  output logic                         recip_done_o,
  input  logic                         static_i,     // the codes by the static pair below instead
  input  logic [MantBits-1:0]          static_mantissa_i,
  input  logic [5:0]                   static_shift_i,
  output logic [Lanes*ActBits-1:0]     codes_o,      // v_i's codes with the last reciprocal (or the static pair)
  // Rows requantization units on the array's accumulators.
  input  logic [Rows*MantBits-1:0]     rq_mantissa_i,
  input  logic [Rows*6-1:0]            rq_shift_i,
  input  logic                         relu_i,
  output logic [Rows*AccBits-1:0]      z_o
);
  logic [Rows*AccBits-1:0] acc;
  logic [MantBits-1:0] inv_mant;
  logic [5:0] inv_shift;
  logic unused_busy;

  qathw_pe_array #(
    .Rows(Rows), .Lanes(Lanes), .ActBits(ActBits), .AccBits(AccBits), .WeightInt4(WeightInt4), .Saturate(Saturate)
  ) u_array (
    .clk_i, .rst_ni, .clear_i, .valid_i, .x_i, .w_i, .lane_en_i, .row_en_i, .acc_o(acc)
  );

  // Absmax of amax_i and this chunk's magnitudes.
  always_comb begin
    amax_o = amax_i;
    for (int i = 0; i < Lanes; i++) begin
      logic signed [AmaxBits-1:0] v;
      logic [AmaxBits-1:0] mag;
      v = AmaxBits'($signed(v_i[i*ValBits +: ValBits]));  // sign-extends: ValBits < AmaxBits
      mag = v[AmaxBits-1] ? -v : v;
      if (mag > amax_o) amax_o = mag;
    end
  end

  qathw_reciprocal #(
    .InBits(AmaxBits), .ActBits(ActBits), .MantBits(MantBits), .ShiftMin(ShiftMin), .ShiftMax(ShiftMax),
    .HalfEven(HalfEven)
  ) u_recip (
    .clk_i, .rst_ni, .start_i(recip_start_i), .amax_i(amax_o), .qbits_i(5'(ActBits - 1)), .busy_o(unused_busy),
    .done_o(recip_done_o), .mantissa_o(inv_mant), .shift_o(inv_shift)
  );

  // A static quantizer's calibrated pair replaces the token's reciprocal.
  logic [MantBits-1:0] code_mant;
  logic [5:0] code_shift;
  assign code_mant = static_i ? static_mantissa_i : inv_mant;
  assign code_shift = static_i ? static_shift_i : inv_shift;

  for (genvar i = 0; i < Lanes; i++) begin : g_code
    qathw_act_code #(.InBits(ValBits), .ActBits(ActBits), .MantBits(MantBits), .HalfEven(HalfEven)) u_code (
      .v_i(v_i[i*ValBits +: ValBits]), .mantissa_i(code_mant), .shift_i(code_shift),
      .code_o(codes_o[i*ActBits +: ActBits])
    );
  end

  for (genvar r = 0; r < Rows; r++) begin : g_requant
    qathw_requant #(.AccBits(AccBits), .MantBits(MantBits), .HalfEven(HalfEven)) u_requant (
      .acc_i(acc[r*AccBits +: AccBits]), .mantissa_i(rq_mantissa_i[r*MantBits +: MantBits]),
      .shift_i(rq_shift_i[r*6 +: 6]), .relu_i, .z_o(z_o[r*AccBits +: AccBits])
    );
  end
endmodule
