// round(2^value_bits 2^(-e / 2^L)) for e >= 0: arith::exp2_neg. The table entry of e's L =
// index_bits_i low bits (index_o to the table, entry_i back), shifted right by e >> L with
// rounding; 0 when e >> L exceeds 62.
module qathw_exp2_neg #(
  parameter int EBits = 33,      // e = a row's maximum minus a 32-bit score
  parameter int IndexBits = 8,
  parameter int EntryBits = 25,
  parameter int HalfEven = 0
) (
  input  logic [EBits-1:0]     e_i,           // unsigned
  input  logic [3:0]           index_bits_i,  // L, in [0, IndexBits]
  output logic [IndexBits-1:0] index_o,
  input  logic [EntryBits-1:0] entry_i,
  output logic [EntryBits-1:0] value_o
);
  localparam int Width = EntryBits + 2;  // qathw_round_shift wants |v| < 2^(Width-2)

  logic [EBits-1:0] whole;
  logic [5:0]       shift;
  always_comb begin
    whole = e_i >> index_bits_i;
    shift = whole > EBits'(62) ? 6'd0 : whole[5:0];
    index_o = '0;
    for (int b = 0; b < IndexBits; b++) if (32'(b) < 32'(index_bits_i)) index_o[b] = e_i[b];
  end

  logic [Width-1:0] rounded;
  qathw_round_shift #(.Width(Width), .HalfEven(HalfEven)) u_round (
    .v_i(Width'(entry_i)), .shift_i(shift), .q_o(rounded)
  );

  logic [Width-EntryBits-1:0] unused_rounded_top;  // 0: the entry only gets smaller
  assign unused_rounded_top = rounded[Width-1:EntryBits];
  assign value_o = whole > EBits'(62) ? '0 : EntryBits'(rounded);
endmodule
