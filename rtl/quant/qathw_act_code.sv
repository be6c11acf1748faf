// One element of the activation quantizer: clamp(round_shift(v * mantissa, shift), -qmax, qmax)
// with qmax = 2^(ActBits-1) - 1: arith::quantize_act.
module qathw_act_code #(
  parameter int InBits = 24,    // the value's width (two's complement)
  parameter int ActBits = 8,
  parameter int MantBits = 16,
  parameter int HalfEven = 0
) (
  input  logic [InBits-1:0]   v_i,
  input  logic [MantBits-1:0] mantissa_i,  // the token's reciprocal
  input  logic [5:0]          shift_i,
  output logic [ActBits-1:0]  code_o       // two's complement
);
  localparam int ProdBits = InBits + MantBits + 1;
  localparam logic signed [ProdBits-1:0] QMax = ProdBits'((64'sd1 <<< (ActBits - 1)) - 1);

  logic signed [ProdBits-1:0] product;
  logic [ProdBits-1:0] rounded_bits;
  assign product = ProdBits'($signed(v_i)) * $signed({1'b0, mantissa_i});

  qathw_round_shift #(.Width(ProdBits), .HalfEven(HalfEven)) u_round (
    .v_i(product), .shift_i(shift_i), .q_o(rounded_bits)
  );

  logic signed [ProdBits-1:0] rounded;
  always_comb begin
    rounded = $signed(rounded_bits);
    if (rounded > QMax) code_o = ActBits'(QMax);
    else if (rounded < -QMax) code_o = ActBits'(-QMax);
    else code_o = ActBits'(rounded);
  end
endmodule
