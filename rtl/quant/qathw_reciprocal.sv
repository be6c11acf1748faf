// The reciprocal unit: qmax / amax as a normalised fixed-point pair (mantissa, shift), by a
// restoring divider that produces one mantissa bit per cycle; MantBits cycles from start to done
// whatever the input. Bit-exact with arith::reciprocal (normalisation, shift limits, rounding).
// qmax = 2^qbits_i - 1: the activation quantizer's 2^(ActBits-1) - 1 (qbits_i = ActBits - 1, a
// constant there), the softmax's 2^prob_bits - 1, the RMSNorm's 1.
module qathw_reciprocal #(
  parameter int InBits = 32,    // amax is unsigned, below 2^InBits
  parameter int ActBits = 8,    // qbits_i <= ActBits - 1
  parameter int MantBits = 16,
  parameter int ShiftMin = 0,
  parameter int ShiftMax = 62,
  parameter int HalfEven = 0
) (
  input  logic                clk_i,
  input  logic                rst_ni,
  input  logic                start_i,
  input  logic [InBits-1:0]   amax_i,
  input  logic [4:0]          qbits_i,     // bit length of qmax, in [1, ActBits - 1]; read with start_i
  output logic                busy_o,
  output logic                done_o,      // one cycle, MantBits cycles after start_i
  output logic [MantBits-1:0] mantissa_o,  // valid with done_o, held until the next start
  output logic [5:0]          shift_o
);
  localparam int NumBits = MantBits + InBits + 1;  // q << shift < 2^M * amax
  localparam int QBitsMax = ActBits - 1;
  localparam logic [MantBits:0] Limit = (MantBits + 1)'(1) << MantBits;
  localparam logic [MantBits-1:0] MantMax = '1;

  // Start-of-division set-up (combinational on amax_i and qbits_i).
  logic [NumBits-1:0] qmax;
  int bl_a;
  int d;
  int shift_norm;
  logic below;
  always_comb begin
    qmax = '0;
    for (int i = 0; i < QBitsMax; i++) if (32'(i) < {27'd0, qbits_i}) qmax[i] = 1'b1;
    bl_a = 0;
    for (int i = 0; i < InBits; i++) if (amax_i[i]) bl_a = i + 1;
    d = bl_a - $signed({27'd0, qbits_i});
    if (d >= 0) below = (qmax << d) < NumBits'(amax_i);
    else below = qmax < (NumBits'(amax_i) << (-d));
    shift_norm = (MantBits - 1) + d + (below ? 1 : 0);
  end

  logic [InBits-1:0]   a_q;
  logic [NumBits-1:0]  num_q;    // q << shift; its low MantBits bits are fed in one per cycle
  logic [InBits-1:0]   rem_q;    // partial remainder, < amax
  logic [MantBits-1:0] quo_q;
  logic [5:0]          shift_q;
  logic                zero_q, saturate_q, busy_q, done_q;
  int                  count_q;
  logic [MantBits-1:0] mant_q;
  logic [5:0]          shift_out_q;

  // One restoring-division step on the current partial remainder.
  logic [InBits:0] rem_shifted;
  logic            take;
  assign rem_shifted = {rem_q, num_q[count_q]};
  assign take = rem_shifted >= {1'b0, a_q};

  // The final rounding, on the remainder and quotient after the last step.
  logic [InBits:0]     rem_last;
  logic [MantBits-1:0] quo_last;
  logic [InBits+1:0]   twice;
  logic                up;
  logic [MantBits:0]   rounded;
  always_comb begin
    rem_last = take ? rem_shifted - {1'b0, a_q} : rem_shifted;
    quo_last = quo_q | (MantBits'(take) << count_q);
    twice = {rem_last, 1'b0};
    up = (twice > {2'b0, a_q}) || ((twice == {2'b0, a_q}) && ((HalfEven == 0) || quo_last[0]));
    rounded = {1'b0, quo_last} + (MantBits + 1)'(up);
  end

  always_ff @(posedge clk_i or negedge rst_ni) begin
    if (!rst_ni) begin
      a_q <= '0;
      num_q <= '0;
      rem_q <= '0;
      quo_q <= '0;
      shift_q <= '0;
      zero_q <= 1'b0;
      saturate_q <= 1'b0;
      busy_q <= 1'b0;
      done_q <= 1'b0;
      count_q <= 0;
      mant_q <= '0;
      shift_out_q <= '0;
    end else begin
      done_q <= 1'b0;
      if (start_i && !busy_q) begin
        int s;
        s = shift_norm > ShiftMax ? ShiftMax : shift_norm;
        a_q <= amax_i;
        zero_q <= amax_i == '0;
        saturate_q <= s < ShiftMin;
        shift_q <= 6'(s < ShiftMin ? ShiftMin : s);
        num_q <= qmax << (s < ShiftMin ? ShiftMin : s);
        // The quotient fits MantBits bits, so the bits above them are below amax: start there.
        rem_q <= InBits'((qmax << (s < ShiftMin ? ShiftMin : s)) >> MantBits);
        quo_q <= '0;
        count_q <= MantBits - 1;
        busy_q <= 1'b1;
      end else if (busy_q) begin
        rem_q <= InBits'(take ? rem_shifted - {1'b0, a_q} : rem_shifted);
        quo_q <= quo_q | (MantBits'(take) << count_q);
        if (count_q == 0) begin
          busy_q <= 1'b0;
          done_q <= 1'b1;
          if (zero_q) begin
            mant_q <= '0;
            shift_out_q <= 6'(ShiftMin);
          end else if (saturate_q) begin
            mant_q <= MantMax;
            shift_out_q <= 6'(ShiftMin);
          end else if (rounded == Limit) begin  // rounding carried into bit M
            if ({26'd0, shift_q} > 32'(ShiftMin)) begin
              mant_q <= MantBits'(Limit >> 1);
              shift_out_q <= shift_q - 6'd1;
            end else begin
              mant_q <= MantMax;
              shift_out_q <= shift_q;
            end
          end else begin
            mant_q <= MantBits'(rounded);
            shift_out_q <= shift_q;
          end
        end else begin
          count_q <= count_q - 1;
        end
      end
    end
  end

  assign busy_o = busy_q;
  assign done_o = done_q;
  assign mantissa_o = mant_q;
  assign shift_o = shift_out_q;
endmodule
