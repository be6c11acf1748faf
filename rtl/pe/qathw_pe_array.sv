// The PE array: Rows rows of Lanes adder-only PEs. Every row sees the same Lanes activation
// codes each cycle (broadcast) and its own Lanes weight codes, so a tile computes Rows output
// channels of one input, one chunk of Lanes products per row per cycle.
module qathw_pe_array #(
  parameter int Rows = 16,
  parameter int Lanes = 16,
  parameter int ActBits = 8,
  parameter int AccBits = 24,
  parameter int WeightInt4 = 0,
  parameter int Saturate = 1,
  localparam int WBits = WeightInt4 != 0 ? 4 : 2  // bits of one weight code: arith::code_bits
) (
  input  logic                         clk_i,
  input  logic                         rst_ni,
  input  logic                         clear_i,
  input  logic                         valid_i,
  input  logic [Lanes*ActBits-1:0]     x_i,        // broadcast to every row
  input  logic [Rows*Lanes*WBits-1:0]  w_i,        // row r's codes at [r*Lanes*WBits +: Lanes*WBits]
  input  logic [Lanes-1:0]             lane_en_i,
  input  logic [Rows-1:0]              row_en_i,   // rows past the last output channel are off
  output logic [Rows*AccBits-1:0]      acc_o       // row r's accumulator at [r*AccBits +: AccBits]
);
  for (genvar r = 0; r < Rows; r++) begin : g_row
    qathw_pe_row #(
      .Lanes(Lanes), .ActBits(ActBits), .AccBits(AccBits), .WeightInt4(WeightInt4), .Saturate(Saturate)
    ) u_row (
      .clk_i,
      .rst_ni,
      .clear_i,
      .valid_i(valid_i & row_en_i[r]),
      .x_i,
      .w_i(w_i[r*Lanes*WBits +: Lanes*WBits]),
      .lane_en_i,
      .acc_o(acc_o[r*AccBits +: AccBits])
    );
  end
endmodule
