// The softmax unit on one attention row: arith::softmax_row. The row's first count_i scores take
// part (count_i = arith::causal_count(t), at least 1); they are read VecLanes per cycle, chunk
// rd_chunk_o of the row on z_i (a combinational read), in three passes:
//   Max    zmax = max z_j                                           ceil(count / VecLanes) cycles
//   Sum    w_j = exp2_neg(zmax - z_j) (the table), W = sum w_j      ceil(count / VecLanes) cycles
//   Recip  (m, s) = reciprocal(W, qp), qp = 2^prob_bits - 1,        MantBits cycles (started in
//          shifts [0, 62] (qathw_reciprocal)                        Sum's last cycle)
//   Codes  p_j = min(round(w_j m 2^-s), qp), w_j looked up again    ceil(count / VecLanes) cycles
// Lanes of the last chunk past count_i give code 0 (the masked positions; the rest of the row is
// the controller's zeros). The first Max cycle is start_i's; done_o rises in the cycle after the
// last Codes cycle: 3 ceil(count / VecLanes) + MantBits cycles after start_i's (start_i's
// included), the SystemC model's cycles per row (docs/sim.md, "Cycle model").
module qathw_softmax_row #(
  parameter int VecLanes = 16,
  parameter int MantBits = 16,
  parameter int HalfEven = 0,
  parameter int CountBits = 16,
  parameter int ProbBits = 8,     // widest probability code: arith::VectorUnit's operand_bits
  localparam int ScoreBits = 32,  // a score: the Q K^T accumulator requantized to 32 bits
  localparam int IndexBits = 8,   // arith::kMaxExp2IndexBits
  localparam int EntryBits = 25   // 2^arith::kMaxExp2ValueBits, the largest entry
) (
  input  logic                          clk_i,
  input  logic                          rst_ni,
  // The exp2 table (arith::exp2_table, from the host).
  input  logic                          tbl_we_i,
  input  logic [IndexBits-1:0]          tbl_addr_i,
  input  logic [EntryBits-1:0]          tbl_data_i,
  // The row.
  input  logic                          start_i,
  input  logic [CountBits-1:0]          count_i,       // visible scores, >= 1
  input  logic [3:0]                    index_bits_i,  // the table's L
  input  logic [3:0]                    prob_bits_i,   // in [1, ProbBits]
  output logic [CountBits-1:0]          rd_chunk_o,
  input  logic [VecLanes*ScoreBits-1:0] z_i,           // chunk rd_chunk_o, two's complement
  output logic                          code_valid_o,  // code_o holds chunk rd_chunk_o's codes
  output logic [VecLanes*ProbBits-1:0]  code_o,        // unsigned
  output logic                          busy_o,
  output logic                          done_o,        // one cycle; the row's figures below held
  output logic [ScoreBits-1:0]          max_o,
  output logic [31:0]                   sum_o,
  output logic [MantBits-1:0]           inv_mant_o,
  output logic [5:0]                    inv_shift_o
);
  typedef enum logic [2:0] {Idle, Max, Sum, Recip, Codes} state_e;

  state_e               state_q;
  logic [CountBits-1:0] count_q, chunk_q;
  logic [3:0]           index_bits_q, prob_bits_q;
  logic [ScoreBits-1:0] max_q;
  logic [31:0]          sum_q;
  logic                 done_q;
  int                   recip_count_q;  // Recip cycles still to come after this one

  logic [CountBits-1:0] count, chunk, chunks;
  logic [3:0]           index_bits;
  logic                 last_chunk;
  always_comb begin
    count = state_q == Idle ? count_i : count_q;
    index_bits = state_q == Idle ? index_bits_i : index_bits_q;
    chunk = state_q == Idle ? '0 : chunk_q;
    chunks = CountBits'((32'(count) + VecLanes - 1) / VecLanes);
    last_chunk = chunk + 1'b1 == chunks;
  end
  assign rd_chunk_o = chunk;

  // The lanes of this chunk that take part.
  logic [VecLanes-1:0] on;
  always_comb begin
    for (int l = 0; l < VecLanes; l++) on[l] = 32'(chunk) * VecLanes + l < 32'(count);
  end

  // Max: the chunk's largest score, with the running maximum after the first chunk.
  logic signed [ScoreBits-1:0] chunk_max;
  always_comb begin
    chunk_max = state_q == Idle ? $signed(z_i[0 +: ScoreBits]) : $signed(max_q);  // lane 0 is always on then
    for (int l = 0; l < VecLanes; l++) begin
      if (on[l] && $signed(z_i[l*ScoreBits +: ScoreBits]) > chunk_max) chunk_max = $signed(z_i[l*ScoreBits +: ScoreBits]);
    end
  end

  // Sum and Codes: every lane's exp value from the table.
  logic [VecLanes*IndexBits-1:0] tbl_index;
  logic [VecLanes*EntryBits-1:0] tbl_entry;
  logic [VecLanes*EntryBits-1:0] w;
  qathw_exp2_table #(.Ports(VecLanes), .IndexBits(IndexBits), .EntryBits(EntryBits)) u_table (
    .clk_i, .we_i(tbl_we_i), .waddr_i(tbl_addr_i), .wdata_i(tbl_data_i), .raddr_i(tbl_index), .rdata_o(tbl_entry)
  );
  for (genvar l = 0; l < VecLanes; l++) begin : g_exp
    logic [ScoreBits:0] e;
    assign e = (ScoreBits + 1)'($signed(max_q)) - (ScoreBits + 1)'($signed(z_i[l*ScoreBits +: ScoreBits]));
    qathw_exp2_neg #(.EBits(ScoreBits + 1), .IndexBits(IndexBits), .EntryBits(EntryBits), .HalfEven(HalfEven)) u_exp (
      .e_i(e), .index_bits_i(index_bits), .index_o(tbl_index[l*IndexBits +: IndexBits]),
      .entry_i(tbl_entry[l*EntryBits +: EntryBits]), .value_o(w[l*EntryBits +: EntryBits])
    );
  end

  logic [31:0] chunk_sum;
  always_comb begin
    chunk_sum = state_q == Sum && chunk_q != '0 ? sum_q : '0;
    for (int l = 0; l < VecLanes; l++) if (on[l]) chunk_sum = chunk_sum + 32'(w[l*EntryBits +: EntryBits]);
  end

  // The reciprocal of the sum, started in Sum's last cycle.
  logic                recip_start, recip_busy, unused_recip_done;
  logic [MantBits-1:0] inv_mant;
  logic [5:0]          inv_shift;
  assign recip_start = state_q == Sum && last_chunk;
  qathw_reciprocal #(
    .InBits(32), .ActBits(ProbBits + 1), .MantBits(MantBits), .ShiftMin(0), .ShiftMax(62), .HalfEven(HalfEven)
  ) u_recip (
    .clk_i, .rst_ni, .start_i(recip_start), .amax_i(chunk_sum), .qbits_i(5'(prob_bits_q)), .busy_o(recip_busy),
    .done_o(unused_recip_done), .mantissa_o(inv_mant), .shift_o(inv_shift)
  );

  // Codes: w m rounded by s, at most qp.
  localparam int ProdBits = EntryBits + MantBits + 2;
  logic [ProbBits-1:0] qp;
  always_comb begin
    qp = '0;
    for (int b = 0; b < ProbBits; b++) if (32'(b) < 32'(prob_bits_q)) qp[b] = 1'b1;
  end
  for (genvar l = 0; l < VecLanes; l++) begin : g_code
    logic [ProdBits-1:0] product, rounded;
    assign product = ProdBits'(w[l*EntryBits +: EntryBits]) * ProdBits'(inv_mant);
    qathw_round_shift #(.Width(ProdBits), .HalfEven(HalfEven)) u_round (
      .v_i(product), .shift_i(state_q == Codes ? inv_shift : 6'd0), .q_o(rounded)
    );
    assign code_o[l*ProbBits +: ProbBits] =
        !on[l] ? '0 : (rounded >= ProdBits'(qp) ? qp : ProbBits'(rounded));
  end
  assign code_valid_o = state_q == Codes;

  always_ff @(posedge clk_i or negedge rst_ni) begin
    if (!rst_ni) begin
      state_q <= Idle;
      count_q <= '0;
      chunk_q <= '0;
      index_bits_q <= '0;
      prob_bits_q <= '0;
      max_q <= '0;
      sum_q <= '0;
      done_q <= 1'b0;
      recip_count_q <= 0;
    end else begin
      done_q <= 1'b0;
      unique case (state_q)
        Idle: if (start_i) begin
          count_q <= count_i;
          index_bits_q <= index_bits_i;
          prob_bits_q <= prob_bits_i;
          max_q <= chunk_max;
          chunk_q <= last_chunk ? '0 : CountBits'(1);
          state_q <= last_chunk ? Sum : Max;
        end
        Max: begin
          max_q <= chunk_max;
          chunk_q <= last_chunk ? '0 : chunk_q + 1'b1;
          if (last_chunk) state_q <= Sum;
        end
        Sum: begin
          sum_q <= chunk_sum;
          chunk_q <= last_chunk ? '0 : chunk_q + 1'b1;
          recip_count_q <= MantBits - 1;
          if (last_chunk) state_q <= Recip;
        end
        Recip: begin  // the reciprocal's MantBits steps; its pair is there in the next cycle
          recip_count_q <= recip_count_q - 1;
          if (recip_count_q == 0) state_q <= Codes;
        end
        Codes: begin
          chunk_q <= last_chunk ? '0 : chunk_q + 1'b1;
          if (last_chunk) begin
            state_q <= Idle;
            done_q <= 1'b1;
          end
        end
        default: state_q <= Idle;
      endcase
    end
  end

  assign busy_o = state_q != Idle || recip_busy;
  assign done_o = done_q;
  assign max_o = max_q;
  assign sum_o = sum_q;
  assign inv_mant_o = inv_mant;
  assign inv_shift_o = inv_shift;
endmodule
