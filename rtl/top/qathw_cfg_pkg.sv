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
  localparam int DescInHBits = 12;
  localparam int DescInWLsb = 149;
  localparam int DescInWBits = 12;
  localparam int DescInCLsb = 161;
  localparam int DescInCBits = 20;
  localparam int DescOutHLsb = 181;
  localparam int DescOutHBits = 12;
  localparam int DescOutWLsb = 193;
  localparam int DescOutWBits = 12;
  localparam int DescOutCLsb = 205;
  localparam int DescOutCBits = 20;
  localparam int DescGroupsLsb = 225;
  localparam int DescGroupsBits = 16;
  localparam int DescGroupInLsb = 241;
  localparam int DescGroupInBits = 20;
  localparam int DescGroupOutLsb = 261;
  localparam int DescGroupOutBits = 16;
  localparam int DescKernelHLsb = 277;
  localparam int DescKernelHBits = 8;
  localparam int DescKernelWLsb = 285;
  localparam int DescKernelWBits = 8;
  localparam int DescStrideHLsb = 293;
  localparam int DescStrideHBits = 8;
  localparam int DescStrideWLsb = 301;
  localparam int DescStrideWBits = 8;
  localparam int DescPadHLsb = 309;
  localparam int DescPadHBits = 8;
  localparam int DescPadWLsb = 317;
  localparam int DescPadWBits = 8;
  localparam int DescPatchLsb = 325;
  localparam int DescPatchBits = 20;
  localparam int DescStepYLsb = 345;
  localparam int DescStepYBits = 16;
  localparam int DescStepXLsb = 361;
  localparam int DescStepXBits = 8;
  localparam int DescStepCLsb = 369;
  localparam int DescStepCBits = 20;
  localparam int DescQuantMantissaLsb = 389;
  localparam int DescQuantMantissaBits = 31;
  localparam int DescQuantShiftLsb = 420;
  localparam int DescQuantShiftBits = 6;
  localparam int DescPairAMantissaLsb = 426;
  localparam int DescPairAMantissaBits = 31;
  localparam int DescPairAShiftLsb = 457;
  localparam int DescPairAShiftBits = 6;
  localparam int DescPairBMantissaLsb = 463;
  localparam int DescPairBMantissaBits = 31;
  localparam int DescPairBShiftLsb = 494;
  localparam int DescPairBShiftBits = 6;
  localparam int DescriptorBits = 500;
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
