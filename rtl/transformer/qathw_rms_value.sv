// One feature of RMSNorm: arith::rmsnorm_value. x (saturated to in_bits_i) times 1/rms at
// arith::kRmsNormFracBits (16) fraction bits, rounded, then times the feature's gain pair, rounded
// and saturated to OutBits:
//   u = shift_round(x m_inv, s_inv - 16);  y = saturate(shift_round(u m_g, s_g + 16), OutBits)
module qathw_rms_value #(
  parameter int InBits = 32,    // widest input value; in_bits_i <= InBits
  parameter int OutBits = 24,
  parameter int MantBits = 16,
  parameter int HalfEven = 0,
  localparam int FracBits = 16  // arith::kRmsNormFracBits
) (
  input  logic [InBits-1:0]   x_i,          // two's complement
  input  logic [5:0]          in_bits_i,    // in [1, InBits]
  input  logic [MantBits-1:0] inv_mant_i,   // the token's 1/rms (qathw_rms_inverse)
  input  logic signed [7:0]   inv_shift_i,
  input  logic [MantBits-1:0] gain_mant_i,  // the feature's gain pair
  input  logic [5:0]          gain_shift_i,
  output logic [OutBits-1:0]  y_o           // two's complement
);
  // x / rms is below 2^10 (n <= 2^20), so u fits 28 bits whatever the pair's shift; both products
  // fit int64 where the arith rule does.
  localparam int W1 = InBits + MantBits + 2;
  localparam int W2 = 66;

  logic signed [InBits-1:0] x;
  always_comb begin
    logic signed [InBits-1:0] hi, lo, v;
    hi = '0;
    lo = '0;
    for (int b = 0; b < InBits; b++) begin
      if (32'(b) < 32'(in_bits_i) - 1) hi[b] = 1'b1;
      else lo[b] = 1'b1;
    end
    v = $signed(x_i);
    x = v > hi ? hi : (v < lo ? lo : v);
  end

  logic signed [W1-1:0] p1;
  logic [W1-1:0] u;
  logic signed [7:0] s1;
  assign p1 = W1'(x) * $signed({1'b0, inv_mant_i});
  assign s1 = inv_shift_i - 8'sd16;
  qathw_shift_round #(.Width(W1), .HalfEven(HalfEven)) u_norm (.v_i(p1), .shift_i(s1), .q_o(u));

  logic signed [W2-1:0] p2;
  logic [W2-1:0] y;
  logic signed [7:0] s2;
  assign p2 = W2'($signed(u)) * $signed({1'b0, gain_mant_i});
  assign s2 = $signed({2'b00, gain_shift_i}) + 8'(FracBits);
  qathw_shift_round #(.Width(W2), .HalfEven(HalfEven)) u_gain (.v_i(p2), .shift_i(s2), .q_o(y));

  localparam logic signed [W2-1:0] One = W2'(1);
  localparam logic signed [W2-1:0] YMax = (One <<< (OutBits - 1)) - One;
  localparam logic signed [W2-1:0] YMin = -(One <<< (OutBits - 1));
  always_comb begin
    if ($signed(y) > YMax) y_o = OutBits'(YMax);
    else if ($signed(y) < YMin) y_o = OutBits'(YMin);
    else y_o = OutBits'(y);
  end
endmodule
