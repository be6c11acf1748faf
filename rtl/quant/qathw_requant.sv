// The requantization unit for one value: saturate(round_shift(acc * mantissa, shift), AccBits),
// then ReLU when enabled: arith::requantize and arith::relu. The input is an accumulator, or an
// average pool's window sum (InBits 32).
module qathw_requant #(
  parameter int AccBits = 24,
  parameter int MantBits = 16,
  parameter int HalfEven = 0,
  parameter int InBits = AccBits
) (
  input  logic [InBits-1:0]   acc_i,       // two's complement
  input  logic [MantBits-1:0] mantissa_i,  // unsigned
  input  logic [5:0]          shift_i,
  input  logic                relu_i,
  output logic [AccBits-1:0]  z_o          // two's complement
);
  localparam int ProdBits = (InBits > AccBits ? InBits : AccBits) + MantBits + 1;
  localparam logic signed [ProdBits-1:0] ZMax = ProdBits'((64'sd1 <<< (AccBits - 1)) - 1);
  localparam logic signed [ProdBits-1:0] ZMin = -(ProdBits'(64'sd1 <<< (AccBits - 1)));

  logic signed [ProdBits-1:0] product;
  logic [ProdBits-1:0] rounded_bits;
  assign product = ProdBits'($signed(acc_i)) * $signed({1'b0, mantissa_i});

  qathw_round_shift #(.Width(ProdBits), .HalfEven(HalfEven)) u_round (
    .v_i(product), .shift_i(shift_i), .q_o(rounded_bits)
  );

  logic signed [ProdBits-1:0] rounded;
  logic signed [AccBits-1:0] saturated;
  always_comb begin
    rounded = $signed(rounded_bits);
    if (rounded > ZMax) saturated = AccBits'(ZMax);
    else if (rounded < ZMin) saturated = AccBits'(ZMin);
    else saturated = AccBits'(rounded);
    z_o = (relu_i && saturated[AccBits-1]) ? '0 : saturated;
  end
endmodule
