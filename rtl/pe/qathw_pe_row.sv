// One row of the PE array: Lanes adder-only processing elements feeding an adder tree, and the
// row's accumulator. Weight codes are the fields arith::encode_code stores (pack.h): 2-bit
// ternary (-1 0b11, 0 0b00, +1 0b01) selecting x, 0 or -x (sign-select; 0b10 is not a code), or
// 4-bit INT4 adding shifted copies of x (shift-and-add). Each valid cycle adds the tree's exact sum into the accumulator,
// then applies the overflow rule (saturate or wrap to AccBits: qathw_accumulator), as
// arith::accumulate does.
module qathw_pe_row #(
  parameter int Lanes = 16,
  parameter int ActBits = 8,
  parameter int AccBits = 24,
  parameter int WeightInt4 = 0,  // 0: 2-bit ternary codes, 1: 4-bit INT4 codes (two's complement)
  parameter int Saturate = 1,    // 1: saturate, 0: wrap
  localparam int WBits = WeightInt4 != 0 ? 4 : 2  // bits of one weight code: arith::code_bits
) (
  input  logic                      clk_i,
  input  logic                      rst_ni,
  input  logic                      clear_i,   // this valid cycle starts a new dot product
  input  logic                      valid_i,   // x_i and w_i hold one chunk of Lanes products
  input  logic [Lanes*ActBits-1:0]  x_i,       // activation codes, two's complement
  input  logic [Lanes*WBits-1:0]    w_i,       // weight codes, two's complement
  input  logic [Lanes-1:0]          lane_en_i, // lanes past the end of the dot product are off
  output logic [AccBits-1:0]        acc_o      // two's complement accumulator
);
  localparam int ProdBits = ActBits + 4;
  localparam int TreeBits = ProdBits + $clog2(Lanes) + 1;

  // Products of each lane, without a multiplier. Operand isolation: a lane that is off, or a row
  // in a cycle without a chunk, computes nothing (and the simulation skips it).
  logic signed [ProdBits-1:0] prod [Lanes];
  always_comb begin
    for (int l = 0; l < Lanes; l++) begin
      logic signed [ProdBits-1:0] x;
      logic [WBits-1:0] w;
      logic [WBits-1:0] mag;
      logic signed [ProdBits-1:0] sum;
      {x, w, mag, sum} = '0;
      prod[l] = '0;
      if (valid_i && lane_en_i[l]) begin
        x = ProdBits'($signed(x_i[l*ActBits +: ActBits]));
        w = w_i[l*WBits +: WBits];
        mag = w[WBits-1] ? -w : w;
        if (WeightInt4 != 0) begin
          for (int b = 0; b < WBits; b++) begin
            if (mag[b]) sum = sum + (x <<< b);
          end
        end else begin
          sum = (w != '0) ? x : '0;  // sign-select: |w| is 1 for every ternary code
        end
        prod[l] = w[WBits-1] ? -sum : sum;
      end
    end
  end

  // Adder tree: exact, wide enough for Lanes products.
  logic signed [TreeBits-1:0] partial;
  always_comb begin
    partial = '0;
    for (int l = 0; l < Lanes; l++) partial = partial + TreeBits'(prod[l]);
  end

  // Accumulator with the target's overflow rule; the row reads the held sum only.
  /* verilator lint_off PINCONNECTEMPTY */
  qathw_accumulator #(.AccBits(AccBits), .TreeBits(TreeBits), .Saturate(Saturate)) u_acc (
    .clk_i, .rst_ni, .clear_i, .valid_i, .partial_i(partial), .acc_o, .sum_o()
  );
  /* verilator lint_on PINCONNECTEMPTY */
endmodule
