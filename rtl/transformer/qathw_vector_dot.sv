// The attention datapath's multiply-accumulate unit (arith::VectorUnit, arith::vector_dot):
// VecLanes products of two operands per valid cycle, summed exactly by an adder tree, the sum
// added into the accumulator under the overflow rule (saturate or wrap to VecAccBits,
// qathw_accumulator). Operands
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

  qathw_accumulator #(.AccBits(VecAccBits), .TreeBits(TreeBits), .Saturate(VecSaturate)) u_acc (
    .clk_i, .rst_ni, .clear_i, .valid_i, .partial_i(partial), .acc_o, .sum_o
  );
endmodule
