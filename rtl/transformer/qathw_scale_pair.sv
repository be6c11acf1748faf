// A pair times an unsigned integer: arith::scale_pair. The exact product m n; where it needs more
// than MantBits bits, rounded to its top MantBits bits (qathw_round_shift: the product is not
// negative, so either mode is round_shift_unsigned's) and the shift lowered by as many; a carry
// into bit MantBits halves the mantissa exactly. n == 0 (or m == 0) gives (0, ShiftMin).
// too_large_o when the shift would fall below ShiftMin (the pair is then (2^M - 1, ShiftMin)).
module qathw_scale_pair #(
  parameter int MantBits = 16,
  parameter int ShiftMin = 0,
  parameter int HalfEven = 0,
  parameter int NBits = 32
) (
  input  logic [MantBits-1:0] mant_i,
  input  logic [5:0]          shift_i,
  input  logic [NBits-1:0]    n_i,
  output logic [MantBits-1:0] mant_o,
  output logic [5:0]          shift_o,
  output logic                too_large_o
);
  localparam int ProdBits = MantBits + NBits;
  localparam int Width = ProdBits + 2;  // qathw_round_shift wants |v| < 2^(Width-2)

  logic [ProdBits-1:0] product;
  int                  bl, drop;
  assign product = ProdBits'(mant_i) * ProdBits'(n_i);
  always_comb begin
    bl = 0;
    for (int i = 0; i < ProdBits; i++) if (product[i]) bl = i + 1;
    drop = bl > MantBits ? bl - MantBits : 0;
  end

  logic [Width-1:0] rounded;
  qathw_round_shift #(.Width(Width), .HalfEven(HalfEven)) u_round (
    .v_i(Width'(product)), .shift_i(6'(drop)), .q_o(rounded)
  );

  always_comb begin
    int shift;
    logic [Width-1:0] m;
    m = rounded;
    shift = $signed({26'd0, shift_i}) - drop;
    if (m[MantBits]) begin  // rounding carried into bit M: m == 2^M
      m = m >> 1;
      shift = shift - 1;
    end
    too_large_o = 1'b0;
    if (product == '0) begin
      mant_o = '0;
      shift_o = 6'(ShiftMin);
    end else if (shift < ShiftMin) begin
      mant_o = '1;
      shift_o = 6'(ShiftMin);
      too_large_o = 1'b1;
    end else begin
      mant_o = MantBits'(m);
      shift_o = 6'(shift);
    end
  end
endmodule
