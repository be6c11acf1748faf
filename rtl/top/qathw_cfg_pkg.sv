// Generated from qathw/target/config_port.h by qathw-target-gen. Do not edit.
// The accelerator's configuration port (qathw_accel: cfg_kind_i, cfg_addr_i, cfg_data_i).
// Checked in as rtl/top/qathw_cfg_pkg.sv; qathw_accel.sv includes it, so the accelerator
// elaborates, lints and synthesizes on its own. The guard allows a build to list it too.
`ifndef QATHW_CFG_PKG_SV
`define QATHW_CFG_PKG_SV
package qathw_cfg_pkg;

  /* verilator lint_off UNUSEDPARAM */

  localparam int KindBits = 2;  // width of cfg_kind_i
  localparam int AddrBits = 16;  // width of cfg_addr_i

  // What one write loads (cfg_kind_i)
  localparam logic [KindBits-1:0] KindWeightWord = KindBits'(0);
  localparam logic [KindBits-1:0] KindRequantPair = KindBits'(1);
  localparam logic [KindBits-1:0] KindLayerDescriptor = KindBits'(2);
  localparam logic [KindBits-1:0] KindLayerCount = KindBits'(3);

  // A layer's op (the descriptor's DescOpcode)
  localparam int OpLinear = 0;
  localparam int OpConv2d = 1;
  localparam int OpMaxPool = 2;
  localparam int OpAvgPool = 3;
  localparam int OpAdd = 4;

  // A layer descriptor: descriptor[<Field>Lsb +: <Field>Bits], written in DescWords words of
  // DescWordBits bits (cfg_addr_i = layer << DescWordIndexBits | word)
  localparam int DescOpcodeLsb = 0;
  localparam int DescOpcodeBits = 3;
  localparam int DescReluLsb = 3;
  localparam int DescReluBits = 1;
  localparam int DescStaticLsb = 4;
  localparam int DescStaticBits = 1;
  localparam int DescInLsb = 5;
  localparam int DescInBits = 20;
  localparam int DescOutLsb = 25;
  localparam int DescOutBits = 20;
  localparam int DescWeightBaseLsb = 45;
  localparam int DescWeightBaseBits = 16;
  localparam int DescRequantBaseLsb = 61;
  localparam int DescRequantBaseBits = 16;
  localparam int DescInputBaseLsb = 77;
  localparam int DescInputBaseBits = 20;
  localparam int DescOutputBaseLsb = 97;
  localparam int DescOutputBaseBits = 20;
  localparam int DescResidualBaseLsb = 117;
  localparam int DescResidualBaseBits = 20;
  localparam int DescInHLsb = 137;
  localparam int DescInHBits = 14;
  localparam int DescInWLsb = 151;
  localparam int DescInWBits = 14;
  localparam int DescInCLsb = 165;
  localparam int DescInCBits = 20;
  localparam int DescOutHLsb = 185;
  localparam int DescOutHBits = 14;
  localparam int DescOutWLsb = 199;
  localparam int DescOutWBits = 14;
  localparam int DescOutCLsb = 213;
  localparam int DescOutCBits = 20;
  localparam int DescGroupsLsb = 233;
  localparam int DescGroupsBits = 16;
  localparam int DescGroupInLsb = 249;
  localparam int DescGroupInBits = 20;
  localparam int DescGroupOutLsb = 269;
  localparam int DescGroupOutBits = 16;
  localparam int DescKernelHLsb = 285;
  localparam int DescKernelHBits = 9;
  localparam int DescKernelWLsb = 294;
  localparam int DescKernelWBits = 9;
  localparam int DescStrideHLsb = 303;
  localparam int DescStrideHBits = 9;
  localparam int DescStrideWLsb = 312;
  localparam int DescStrideWBits = 9;
  localparam int DescPadHLsb = 321;
  localparam int DescPadHBits = 8;
  localparam int DescPadWLsb = 329;
  localparam int DescPadWBits = 8;
  localparam int DescPatchLsb = 337;
  localparam int DescPatchBits = 20;
  localparam int DescStepYLsb = 357;
  localparam int DescStepYBits = 16;
  localparam int DescStepXLsb = 373;
  localparam int DescStepXBits = 8;
  localparam int DescStepCLsb = 381;
  localparam int DescStepCBits = 20;
  localparam int DescQuantMantissaLsb = 401;
  localparam int DescQuantMantissaBits = 31;
  localparam int DescQuantShiftLsb = 432;
  localparam int DescQuantShiftBits = 6;
  localparam int DescPairAMantissaLsb = 438;
  localparam int DescPairAMantissaBits = 31;
  localparam int DescPairAShiftLsb = 469;
  localparam int DescPairAShiftBits = 6;
  localparam int DescPairBMantissaLsb = 475;
  localparam int DescPairBMantissaBits = 31;
  localparam int DescPairBShiftLsb = 506;
  localparam int DescPairBShiftBits = 6;
  localparam int DescriptorBits = 512;
  localparam int DescWordBits = 64;
  localparam int DescWordIndexBits = 3;
  localparam int DescWords = 8;

  // A requantization pair: the mantissa in [RequantMantissaLsb +: MantBits], the shift right above it
  localparam int RequantMantissaLsb = 0;
  localparam int RequantShiftBits = 6;

  // The layer count
  localparam int LayerCountLsb = 0;
  localparam int LayerCountBits = 8;

  // cfg_data_i is as wide as a weight word, and at least DataMinBits wide
  localparam int DataMinBits = 72;

  /* verilator lint_on UNUSEDPARAM */

endpackage
`endif  // QATHW_CFG_PKG_SV
