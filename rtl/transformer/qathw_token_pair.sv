// A static pair times a token's factors, one qathw_scale_pair per cycle: arith::token_pair. A
// cycle with load_i takes base_*_i as the pair; a cycle with step_i multiplies the pair (the base
// in a cycle with both) by factor_i, unless an earlier factor made it too large (the rule stops
// there). k factors take k cycles (the first with load_i), the base alone one load cycle.
module qathw_token_pair #(
  parameter int MantBits = 16,
  parameter int ShiftMin = 0,
  parameter int HalfEven = 0,
  parameter int NBits = 32
) (
  input  logic                clk_i,
  input  logic                rst_ni,
  input  logic                load_i,
  input  logic [MantBits-1:0] base_mant_i,
  input  logic [5:0]          base_shift_i,
  input  logic                step_i,
  input  logic [NBits-1:0]    factor_i,   // a dynamic quantizer's absmax
  output logic [MantBits-1:0] mant_o,
  output logic [5:0]          shift_o,
  output logic                too_large_o
);
  logic [MantBits-1:0] mant_q, mant_in, mant_d;
  logic [5:0]          shift_q, shift_in, shift_d;
  logic                too_large_q, too_large_in, too_large_d;

  assign mant_in = load_i ? base_mant_i : mant_q;
  assign shift_in = load_i ? base_shift_i : shift_q;
  assign too_large_in = load_i ? 1'b0 : too_large_q;

  qathw_scale_pair #(.MantBits(MantBits), .ShiftMin(ShiftMin), .HalfEven(HalfEven), .NBits(NBits)) u_scale (
    .mant_i(mant_in), .shift_i(shift_in), .n_i(factor_i), .mant_o(mant_d), .shift_o(shift_d), .too_large_o(too_large_d)
  );

  always_ff @(posedge clk_i or negedge rst_ni) begin
    if (!rst_ni) begin
      mant_q <= '0;
      shift_q <= '0;
      too_large_q <= 1'b0;
    end else if (step_i && !too_large_in) begin
      mant_q <= mant_d;
      shift_q <= shift_d;
      too_large_q <= too_large_d;
    end else if (load_i) begin
      mant_q <= base_mant_i;
      shift_q <= base_shift_i;
      too_large_q <= 1'b0;
    end
  end

  assign mant_o = mant_q;
  assign shift_o = shift_q;
  assign too_large_o = too_large_q;
endmodule
