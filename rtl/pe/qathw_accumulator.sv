// The accumulator after an exact adder tree (a PE row's, the vector unit's): each valid cycle adds
// the tree's sum into it, then applies the overflow rule (saturate or wrap to AccBits), as
// arith::accumulate and arith::vector_dot do. The one place the rule is written in the RTL.
module qathw_accumulator #(
  parameter int AccBits = 24,
  parameter int TreeBits = 16,  // the adder tree's sum
  parameter int Saturate = 1    // 1: saturate, 0: wrap
) (
  input  logic                       clk_i,
  input  logic                       rst_ni,
  input  logic                       clear_i,    // this valid cycle starts a new sum
  input  logic                       valid_i,
  input  logic signed [TreeBits-1:0] partial_i,  // the adder tree's exact sum
  output logic [AccBits-1:0]         acc_o,      // two's complement
  output logic [AccBits-1:0]         sum_o       // what acc_o becomes after this valid cycle
);
  localparam int SumBits = (AccBits > TreeBits ? AccBits : TreeBits) + 1;
  localparam logic signed [SumBits-1:0] One = SumBits'(1);
  localparam logic signed [SumBits-1:0] AccMax = (One <<< (AccBits - 1)) - One;
  localparam logic signed [SumBits-1:0] AccMin = -(One <<< (AccBits - 1));

  logic signed [AccBits-1:0] acc_q, acc_d;
  logic signed [SumBits-1:0] sum_full;
  always_comb begin
    sum_full = (clear_i ? '0 : SumBits'(acc_q)) + SumBits'(partial_i);
    if (Saturate != 0) begin
      if (sum_full > AccMax) acc_d = AccBits'(AccMax);
      else if (sum_full < AccMin) acc_d = AccBits'(AccMin);
      else acc_d = AccBits'(sum_full);
    end else begin
      acc_d = AccBits'(sum_full);  // keep the low AccBits: two's-complement wrap
    end
  end

  always_ff @(posedge clk_i or negedge rst_ni) begin
    if (!rst_ni) acc_q <= '0;
    else if (valid_i) acc_q <= acc_d;
    else if (clear_i) acc_q <= '0;
  end

  assign acc_o = acc_q;
  assign sum_o = acc_d;
endmodule
