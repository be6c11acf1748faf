// The FFN's activation: arith::squared_relu. max(v, 0)^2 scaled by 2^-shift, rounded, saturated
// to OutBits.
module qathw_squared_relu #(
  parameter int InBits = 32,   // |v| < 2^31
  parameter int OutBits = 24,
  parameter int HalfEven = 0
) (
  input  logic [InBits-1:0]  v_i,      // two's complement
  input  logic [5:0]         shift_i,  // in [0, 62]
  output logic [OutBits-1:0] y_o       // two's complement
);
  localparam int Width = 2 * InBits;  // the square is below 2^(2 InBits - 2)

  logic [InBits-1:0] r;
  logic [Width-1:0]  square, rounded;
  assign r = v_i[InBits-1] ? '0 : v_i;
  assign square = Width'(r) * Width'(r);
  qathw_round_shift #(.Width(Width), .HalfEven(HalfEven)) u_round (.v_i(square), .shift_i, .q_o(rounded));

  // rounded >= 0: only the upper bound can be passed.
  localparam logic [Width-1:0] YMax = (Width'(1) << (OutBits - 1)) - Width'(1);
  assign y_o = rounded > YMax ? OutBits'(YMax) : OutBits'(rounded);
endmodule
