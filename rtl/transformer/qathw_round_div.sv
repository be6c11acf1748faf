// round(num / den) for num < 2^NumBits, 0 < den < 2^DenBits, ties away from zero or to even:
// arith::round_div. A restoring divider, one dividend bit per cycle: NumBits cycles, the first the
// one with start_i (which takes num_i and den_i); done_o is high in the last, with quot_o valid in
// that cycle and held until the next start.
module qathw_round_div #(
  parameter int NumBits = 64,
  parameter int DenBits = 21,
  parameter int HalfEven = 0
) (
  input  logic               clk_i,
  input  logic               rst_ni,
  input  logic               start_i,
  input  logic [NumBits-1:0] num_i,
  input  logic [DenBits-1:0] den_i,
  output logic               busy_o,
  output logic               done_o,   // the last step's cycle
  output logic [NumBits-1:0] quot_o
);
  logic [NumBits-1:0] num_q, quot_q, result_q;
  logic [DenBits-1:0] den_q, rem_q;  // rem < den
  logic               busy_q;
  int                 count_q;       // the dividend bit of this cycle's step

  // This cycle's step, on the inputs in the start cycle.
  logic [NumBits-1:0] num_in, quot_in, quot_d;
  logic [DenBits-1:0] den_in, rem_in;
  logic [DenBits:0]   rem_shifted;
  logic               take;
  logic [DenBits-1:0] rem_d;
  int                 index;
  always_comb begin
    num_in = start_i ? num_i : num_q;
    den_in = start_i ? den_i : den_q;
    rem_in = start_i ? '0 : rem_q;
    quot_in = start_i ? '0 : quot_q;
    index = start_i ? NumBits - 1 : count_q;
    rem_shifted = {rem_in, num_in[index]};
    take = rem_shifted >= {1'b0, den_in};
    rem_d = DenBits'(take ? rem_shifted - {1'b0, den_in} : rem_shifted);
    quot_d = quot_in | (NumBits'(take) << index);
  end

  // The rounding after the last step: up when 2 r > den, or 2 r == den and the tie goes up.
  logic [DenBits:0]   twice;
  logic               up;
  logic               last;
  logic [NumBits-1:0] rounded;
  always_comb begin
    twice = {rem_d, 1'b0};
    up = (twice > {1'b0, den_in}) || ((twice == {1'b0, den_in}) && ((HalfEven == 0) || quot_d[0]));
    rounded = quot_d + NumBits'(up);
    last = index == 0 && (start_i || busy_q);
  end

  always_ff @(posedge clk_i or negedge rst_ni) begin
    if (!rst_ni) begin
      num_q <= '0;
      quot_q <= '0;
      result_q <= '0;
      den_q <= '0;
      rem_q <= '0;
      busy_q <= 1'b0;
      count_q <= 0;
    end else if (start_i || busy_q) begin
      num_q <= num_in;
      den_q <= den_in;
      rem_q <= rem_d;
      quot_q <= quot_d;
      busy_q <= !last;
      count_q <= index - 1;
      if (last) result_q <= rounded;
    end
  end

  assign busy_o = busy_q || start_i;
  assign done_o = last;
  assign quot_o = last ? rounded : result_q;
endmodule
