// Reads one value of the generated package of ternary-asic, so that Verilator elaborates it under
// -Wall (tests/CMakeLists.txt: targets.sv_package_lint).
module sv_package_top (
  output logic [31:0] rows_o
);
  assign rows_o = 32'(qathw_target_ternary_asic_pkg::Rows);
endmodule
