// floor(sqrt(n)) of an InBits-wide unsigned value by the restoring digit-by-digit method, one
// result bit per cycle: arith::isqrt(n, InBits). Steps = arith::isqrt_steps(InBits) cycles, the
// first the one with start_i (which takes n_i); done_o is high in the last, with root_o valid in
// that cycle and held until the next start.
module qathw_isqrt #(
  parameter int InBits = 64,
  localparam int Steps = (InBits + 1) / 2,
  localparam int Wide = 2 * Steps
) (
  input  logic              clk_i,
  input  logic              rst_ni,
  input  logic              start_i,
  input  logic [InBits-1:0] n_i,
  output logic              busy_o,
  output logic              done_o,   // the last step's cycle
  output logic [Steps-1:0]  root_o
);
  logic [Wide-1:0] rem_q, root_q, bit_q;
  logic            busy_q;
  int              count_q;  // steps still to come after this cycle's

  // This cycle's step, on the input in the start cycle.
  logic [Wide-1:0] rem_in, root_in, bit_in, trial, rem_d, root_d;
  logic            fits;
  logic            last;
  always_comb begin
    rem_in = start_i ? Wide'(n_i) : rem_q;
    root_in = start_i ? '0 : root_q;
    bit_in = start_i ? (Wide'(1) << (2 * (Steps - 1))) : bit_q;
    trial = root_in + bit_in;
    fits = rem_in >= trial;
    rem_d = fits ? rem_in - trial : rem_in;
    root_d = (root_in >> 1) + (fits ? bit_in : '0);
    last = start_i ? (Steps == 1) : (busy_q && count_q == 0);
  end

  always_ff @(posedge clk_i or negedge rst_ni) begin
    if (!rst_ni) begin
      rem_q <= '0;
      root_q <= '0;
      bit_q <= '0;
      busy_q <= 1'b0;
      count_q <= 0;
    end else if (start_i || busy_q) begin
      rem_q <= rem_d;
      root_q <= root_d;
      bit_q <= bit_in >> 2;
      busy_q <= !last;
      count_q <= start_i ? Steps - 2 : count_q - 1;
    end
  end

  assign busy_o = busy_q || start_i;
  assign done_o = (start_i || busy_q) && last;
  assign root_o = done_o ? Steps'(root_d) : Steps'(root_q);
endmodule
