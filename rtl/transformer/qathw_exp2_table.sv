// The softmax unit's exp2 table (arith::Exp2Table): 2^IndexBits entries of EntryBits, written by
// the host (arith::exp2_table computes them), read by Ports lanes at once.
module qathw_exp2_table #(
  parameter int Ports = 16,
  parameter int IndexBits = 8,   // arith::kMaxExp2IndexBits
  parameter int EntryBits = 25   // entry[0] = 2^value_bits, value_bits <= arith::kMaxExp2ValueBits = 24
) (
  input  logic                       clk_i,
  input  logic                       we_i,
  input  logic [IndexBits-1:0]       waddr_i,
  input  logic [EntryBits-1:0]       wdata_i,
  input  logic [Ports*IndexBits-1:0] raddr_i,
  output logic [Ports*EntryBits-1:0] rdata_o
);
  logic [EntryBits-1:0] entry_q [2**IndexBits];

  always_ff @(posedge clk_i) begin
    if (we_i) entry_q[waddr_i] <= wdata_i;
  end

  always_comb begin
    for (int p = 0; p < Ports; p++) rdata_o[p*EntryBits +: EntryBits] = entry_q[raddr_i[p*IndexBits +: IndexBits]];
  end
endmodule
