// round(v / 2^shift) to the nearest integer, ties away from zero or to even: arith::round_shift.
// Requires |v| < 2^(Width-2) (callers size Width one bit above their product): then every shift
// of Width-1 or more rounds to 0 in both modes, which is what the shifters would not compute.
module qathw_round_shift #(
  parameter int Width = 48,        // of v and the result
  parameter int HalfEven = 0       // 0: ties away from zero, 1: ties to even
) (
  input  logic [Width-1:0] v_i,    // two's complement
  input  logic [5:0]       shift_i,
  output logic [Width-1:0] q_o     // two's complement
);
  // Only the target's mode is built (and simulated): the other branch is a constant's.
  always_comb begin
    logic signed [Width-1:0] v, mag, one, half, away, floor_q, rem;
    v = $signed(v_i);
    {mag, one, half, away, floor_q, rem} = '0;  // combinational: every path assigns every variable
    q_o = v_i;
    if (shift_i != 6'd0) begin
      one = Width'(1) << shift_i;
      half = one >>> 1;
      if ({26'd0, shift_i} >= 32'(Width - 1)) begin
        q_o = '0;
      end else if (HalfEven != 0) begin
        // Ties to even: floor, then up when the remainder passes half, or equals it on an odd floor.
        floor_q = v >>> shift_i;
        rem = v - (floor_q <<< shift_i);  // in [0, 2^shift)
        q_o = ((rem > half) || ((rem == half) && floor_q[0])) ? floor_q + 1 : floor_q;
      end else begin
        // Ties away from zero: round the magnitude, restore the sign.
        mag = v[Width-1] ? -v : v;
        away = (mag + half) >>> shift_i;
        q_o = v[Width-1] ? -away : away;
      end
    end
  end
endmodule
