// RMSNorm's 1/rms of one token: arith::sum_squares and arith::rms_inverse. The token's values
// stream in VecLanes per cycle (each saturated to in_bits_i, squared, summed exactly in 64 bits);
// start_i then runs, from the registered sum:
//   S' = S + n eps;  k = floor((64 - bit_length(S')) / 2)  (k = 0 for S' = 0)
//   mean_sq = round_div(S' 4^k, n)      qathw_round_div, 64 cycles
//   mean_sq >= 2^62: mean_sq >>= 2, k -= 1   (k = -1 for some S' >= 2^62, n <= 3)
//   root = isqrt(mean_sq)               qathw_isqrt, arith::isqrt_steps(64) = 32 cycles
//   (m, s) = reciprocal(root, 1)        qathw_reciprocal (shifts [0, 62]), started in the root's
//                                       cycle, MantBits cycles after it
//   inv_rms = (m, s - k)
// done_o rises 64 + 32 + MantBits cycles after start_i's (start_i's included), the cycle the
// per-feature pass can begin: the SystemC model's cycles (docs/sim.md, "Cycle model").
module qathw_rms_inverse #(
  parameter int VecLanes = 16,
  parameter int InBits = 32,     // widest input value (the accumulator); in_bits_i <= InBits
  parameter int MantBits = 16,
  parameter int HalfEven = 0,
  parameter int NBits = 21       // feature counts up to arith::kRmsNormMaxFeatures = 2^20
) (
  input  logic                       clk_i,
  input  logic                       rst_ni,
  // The sum of squares.
  input  logic                       clear_i,    // this valid cycle starts a new token
  input  logic                       valid_i,
  input  logic [VecLanes*InBits-1:0] x_i,        // two's complement
  input  logic [VecLanes-1:0]        lane_en_i,
  input  logic [5:0]                 in_bits_i,  // the saturation width, in [1, InBits]
  // 1/rms.
  input  logic                       start_i,
  input  logic [NBits-1:0]           n_i,        // features, in [1, 2^20]
  input  logic [63:0]                eps_i,      // in units of x^2
  output logic                       busy_o,
  output logic                       done_o,     // one cycle: the outputs below are valid
  output logic [63:0]                sum_o,      // S'
  output logic signed [6:0]          k_o,        // in [-1, 31]
  output logic [63:0]                mean_sq_o,
  output logic [31:0]                root_o,
  output logic [MantBits-1:0]        inv_mant_o,
  output logic signed [7:0]          inv_shift_o
);
  // ---- the sum of squares -------------------------------------------------------------------
  logic [63:0] squares;
  always_comb begin
    logic signed [InBits-1:0] hi, lo, x, v;
    logic signed [63:0] w;
    hi = '0;
    lo = '0;
    for (int b = 0; b < InBits; b++) begin
      if (32'(b) < 32'(in_bits_i) - 1) hi[b] = 1'b1;  // 2^(in_bits-1) - 1
      else lo[b] = 1'b1;                                // -2^(in_bits-1), sign-extended
    end
    squares = '0;
    for (int l = 0; l < VecLanes; l++) begin
      x = $signed(x_i[l*InBits +: InBits]);
      v = x > hi ? hi : (x < lo ? lo : x);
      w = 64'(v);  // sign-extended; the square is below 2^62
      if (lane_en_i[l]) squares = squares + 64'(w * w);
    end
  end

  logic [63:0] sum_q;
  always_ff @(posedge clk_i or negedge rst_ni) begin
    if (!rst_ni) sum_q <= '0;
    else if (valid_i) sum_q <= (clear_i ? '0 : sum_q) + squares;
    else if (clear_i) sum_q <= '0;
  end

  // ---- S', k and the mean square --------------------------------------------------------------
  logic [63:0] total;
  int          bl;
  logic [5:0]  k_start;
  always_comb begin
    total = sum_q + 64'(n_i) * eps_i;
    bl = 0;
    for (int i = 0; i < 64; i++) if (total[i]) bl = i + 1;
    k_start = total == '0 ? 6'd0 : 6'((64 - bl) / 2);
  end

  logic [63:0] total_q;
  logic signed [6:0] k_q;
  logic        div_busy, div_done;
  logic [63:0] quot;
  qathw_round_div #(.NumBits(64), .DenBits(NBits), .HalfEven(HalfEven)) u_div (
    .clk_i, .rst_ni, .start_i, .num_i(total << (2 * k_start)), .den_i(n_i), .busy_o(div_busy), .done_o(div_done),
    .quot_o(quot)
  );

  logic [63:0] mean_sq_q;
  logic        sqrt_start_q;
  always_ff @(posedge clk_i or negedge rst_ni) begin
    if (!rst_ni) begin
      total_q <= '0;
      k_q <= '0;
      mean_sq_q <= '0;
      sqrt_start_q <= 1'b0;
    end else begin
      sqrt_start_q <= div_done;
      if (start_i) begin
        total_q <= total;
        k_q <= $signed({1'b0, k_start});
      end
      if (div_done) begin
        if (quot[63:62] != 2'b00) begin  // only for n <= 3: keeps the root below 2^31
          mean_sq_q <= quot >> 2;
          k_q <= k_q - 7'sd1;
        end else begin
          mean_sq_q <= quot;
        end
      end
    end
  end

  // ---- the root and its reciprocal ----------------------------------------------------------
  logic        sqrt_busy, sqrt_done;
  logic [31:0] root;
  qathw_isqrt #(.InBits(64)) u_sqrt (
    .clk_i, .rst_ni, .start_i(sqrt_start_q), .n_i(mean_sq_q), .busy_o(sqrt_busy), .done_o(sqrt_done), .root_o(root)
  );

  logic                recip_busy, recip_done;
  logic [MantBits-1:0] recip_mant;
  logic [5:0]          recip_shift;
  qathw_reciprocal #(
    .InBits(32), .ActBits(2), .MantBits(MantBits), .ShiftMin(0), .ShiftMax(62), .HalfEven(HalfEven)
  ) u_recip (
    .clk_i, .rst_ni, .start_i(sqrt_done), .amax_i(root), .qbits_i(5'd1), .busy_o(recip_busy), .done_o(recip_done),
    .mantissa_o(recip_mant), .shift_o(recip_shift)
  );

  assign busy_o = div_busy || sqrt_start_q || sqrt_busy || recip_busy;
  assign done_o = recip_done;
  assign sum_o = total_q;
  assign k_o = k_q;
  assign mean_sq_o = mean_sq_q;
  assign root_o = root;
  assign inv_mant_o = recip_mant;
  assign inv_shift_o = $signed({2'b00, recip_shift}) - 8'(k_q);
endmodule
