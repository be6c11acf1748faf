// The accelerator's datapath without its memories and controller: the PE array, Lanes
// activation-code elements, Rows requantization units and the reciprocal unit. The top that
// `qat-hw synth` synthesises: area is in the datapath, and behavioural memories map to whatever
// SRAM macros or block RAM a flow provides.
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
  parameter int HalfEven = 0
) (
  input  logic                         clk_i,
  input  logic                         rst_ni,
  input  logic                         clear_i,
  input  logic                         valid_i,
  input  logic [Lanes*ActBits-1:0]     x_i,
  input  logic [Rows*Lanes*4-1:0]      w_i,
  input  logic [Lanes-1:0]             lane_en_i,
  input  logic [Rows-1:0]              row_en_i,
  input  logic [Lanes*AccBits-1:0]     v_i,          // values to quantize
  input  logic                         recip_start_i,
  input  logic [AccBits:0]             amax_i,
  input  logic [Rows*MantBits-1:0]     rq_mantissa_i,
  input  logic [Rows*6-1:0]            rq_shift_i,
  input  logic                         relu_i,
  output logic [Lanes*ActBits-1:0]     codes_o,
  output logic [Rows*AccBits-1:0]      z_o,
  output logic                         recip_done_o
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

  qathw_reciprocal #(
    .InBits(AccBits + 1), .ActBits(ActBits), .MantBits(MantBits), .ShiftMin(ShiftMin), .ShiftMax(ShiftMax),
    .HalfEven(HalfEven)
  ) u_recip (
    .clk_i, .rst_ni, .start_i(recip_start_i), .amax_i, .busy_o(unused_busy), .done_o(recip_done_o),
    .mantissa_o(inv_mant), .shift_o(inv_shift)
  );

  for (genvar i = 0; i < Lanes; i++) begin : g_code
    qathw_act_code #(.InBits(AccBits), .ActBits(ActBits), .MantBits(MantBits), .HalfEven(HalfEven)) u_code (
      .v_i(v_i[i*AccBits +: AccBits]), .mantissa_i(inv_mant), .shift_i(inv_shift),
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
