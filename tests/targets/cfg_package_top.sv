// Reads every value of the generated configuration-port package qathw_cfg_pkg, so that Verilator
// elaborates all of it under -Wall (tests/CMakeLists.txt: targets.cfg_package_lint).
module cfg_package_top (
  output logic [31:0] sum_o,
  output logic [qathw_cfg_pkg::KindBits-1:0] kinds_o
);
  assign sum_o = 32'(qathw_cfg_pkg::AddrBits + qathw_cfg_pkg::DescInLsb + qathw_cfg_pkg::DescInBits +
                     qathw_cfg_pkg::DescOutLsb + qathw_cfg_pkg::DescOutBits + qathw_cfg_pkg::DescReluLsb +
                     qathw_cfg_pkg::DescReluBits + qathw_cfg_pkg::DescWeightBaseLsb +
                     qathw_cfg_pkg::DescWeightBaseBits + qathw_cfg_pkg::DescRequantBaseLsb +
                     qathw_cfg_pkg::DescRequantBaseBits + qathw_cfg_pkg::DescriptorBits +
                     qathw_cfg_pkg::RequantMantissaLsb + qathw_cfg_pkg::RequantShiftBits +
                     qathw_cfg_pkg::LayerCountLsb + qathw_cfg_pkg::LayerCountBits + qathw_cfg_pkg::DataMinBits);
  assign kinds_o = qathw_cfg_pkg::KindWeightWord ^ qathw_cfg_pkg::KindRequantPair ^
                   qathw_cfg_pkg::KindLayerDescriptor ^ qathw_cfg_pkg::KindLayerCount;
endmodule
