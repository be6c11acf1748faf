// v * 2^-shift rounded, for a shift of either sign: arith::shift_round. A left shift when shift < 0
// (exact; the caller keeps the result inside Width), qathw_round_shift for shift in [0, 62], and
// 0 beyond 62. Requires |v| < 2^(Width-2), as qathw_round_shift does.
module qathw_shift_round #(
  parameter int Width = 64,   // of v and the result
  parameter int HalfEven = 0
) (
  input  logic [Width-1:0]  v_i,     // two's complement
  input  logic signed [7:0] shift_i,
  output logic [Width-1:0]  q_o      // two's complement
);
  logic [5:0] right;
  logic [Width-1:0] rounded;
  assign right = (shift_i > 8'sd0 && shift_i <= 8'sd62) ? shift_i[5:0] : 6'd0;

  qathw_round_shift #(.Width(Width), .HalfEven(HalfEven)) u_round (.v_i, .shift_i(right), .q_o(rounded));

  always_comb begin
    if (shift_i < 8'sd0) q_o = v_i << (-shift_i);
    else if (shift_i > 8'sd62) q_o = '0;
    else q_o = rounded;
  end
endmodule
