// The attention datapath's multiply-accumulate unit (arith::VectorUnit, arith::vector_dot):
// VecLanes products of two operands per valid cycle, summed exactly by an adder tree, the sum
// added into the accumulator under the overflow rule (saturate or wrap to VecAccBits). Operands
// are VecOperandBits + 1 bits signed: signed codes (Q, K, V) and unsigned probability codes below
// 2^VecOperandBits both fit.
module qathw_vector_dot #(
  parameter int VecLanes = 16,
  parameter int VecOperandBits = 8,
  parameter int VecAccBits = 32,
  parameter int VecSaturate = 1,  // 1: saturate, 0: wrap
  localparam int OpBits = VecOperandBits + 1
) (
  input  logic                       clk_i,
  input  logic                       rst_ni,
  input  logic                       clear_i,    // this valid cycle starts a new dot product
  input  logic                       valid_i,
  input  logic [VecLanes*OpBits-1:0] a_i,        // two's complement
  input  logic [VecLanes*OpBits-1:0] b_i,        // two's complement
  input  logic [VecLanes-1:0]        lane_en_i,  // lanes past the end of the dot product are off
  output logic [VecAccBits-1:0]      acc_o,      // two's complement
  output logic [VecAccBits-1:0]      sum_o       // what acc_o becomes after this valid cycle
);
  localparam int ProdBits = 2 * OpBits;
  localparam int TreeBits = ProdBits + $clog2(VecLanes) + 1;
  localparam int SumBits = (VecAccBits > TreeBits ? VecAccBits : TreeBits) + 1;

  // The products and the exact adder tree; a lane that is off computes nothing.
  logic signed [TreeBits-1:0] partial;
  always_comb begin
    logic signed [ProdBits-1:0] prod;
    partial = '0;
    for (int l = 0; l < VecLanes; l++) begin
      prod = '0;
      if (valid_i && lane_en_i[l])
        prod = ProdBits'($signed(a_i[l*OpBits +: OpBits])) * ProdBits'($signed(b_i[l*OpBits +: OpBits]));
      partial = partial + TreeBits'(prod);
    end
  end

  localparam logic signed [SumBits-1:0] One = SumBits'(1);
  localparam logic signed [SumBits-1:0] AccMax = (One <<< (VecAccBits - 1)) - One;
  localparam logic signed [SumBits-1:0] AccMin = -(One <<< (VecAccBits - 1));
  logic signed [VecAccBits-1:0] acc_q, acc_d;
  logic signed [SumBits-1:0]    sum_full;
  always_comb begin
    sum_full = (clear_i ? '0 : SumBits'(acc_q)) + SumBits'(partial);
    if (VecSaturate != 0) begin
      if (sum_full > AccMax) acc_d = VecAccBits'(AccMax);
      else if (sum_full < AccMin) acc_d = VecAccBits'(AccMin);
      else acc_d = VecAccBits'(sum_full);
    end else begin
      acc_d = VecAccBits'(sum_full);  // keep the low VecAccBits: two's-complement wrap
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
