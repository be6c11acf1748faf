// Generated from qathw/target/config_port.h by qathw-target-gen. Do not edit.
// The accelerator's configuration port (qathw_accel: cfg_kind_i, cfg_addr_i, cfg_data_i).
// Checked in as rtl/top/qathw_cfg_pkg.sv; qathw_accel.sv includes it, so the accelerator
// elaborates, lints and synthesizes on its own. The guard allows a build to list it too.
`ifndef QATHW_CFG_PKG_SV
`define QATHW_CFG_PKG_SV
package qathw_cfg_pkg;

  /* verilator lint_off UNUSEDPARAM */

  localparam int KindBits = 3;  // width of cfg_kind_i
  localparam int AddrBits = 16;  // width of cfg_addr_i

  // What one write loads (cfg_kind_i)
  localparam logic [KindBits-1:0] KindWeightWord = KindBits'(0);
  localparam logic [KindBits-1:0] KindRequantPair = KindBits'(1);
  localparam logic [KindBits-1:0] KindLayerDescriptor = KindBits'(2);
  localparam logic [KindBits-1:0] KindLayerCount = KindBits'(3);
  localparam logic [KindBits-1:0] KindTableValue = KindBits'(4);
  localparam logic [KindBits-1:0] KindExp2Entry = KindBits'(5);

  // A layer's op (the descriptor's DescOpcode)
  localparam int OpLinear = 0;
  localparam int OpConv2d = 1;
  localparam int OpMaxPool = 2;
  localparam int OpAvgPool = 3;
  localparam int OpAdd = 4;
  localparam int OpEmbed = 5;
  localparam int OpRmsNorm = 6;
  localparam int OpQuantize = 7;
  localparam int OpSquaredRelu = 8;
  localparam int OpScores = 9;
  localparam int OpSoftmax = 10;
  localparam int OpAttend = 11;

  // A layer descriptor: descriptor[<Field>Lsb +: <Field>Bits], written in DescWords words of
  // DescWordBits bits (cfg_addr_i = layer << DescWordIndexBits | word)
  localparam int DescOpcodeLsb = 0;
  localparam int DescOpcodeBits = 4;
  localparam int DescReluLsb = 4;
  localparam int DescReluBits = 1;
  localparam int DescStaticLsb = 5;
  localparam int DescStaticBits = 1;
  localparam int DescInLsb = 6;
  localparam int DescInBits = 20;
  localparam int DescOutLsb = 26;
  localparam int DescOutBits = 20;
  localparam int DescWeightBaseLsb = 46;
  localparam int DescWeightBaseBits = 16;
  localparam int DescRequantBaseLsb = 62;
  localparam int DescRequantBaseBits = 16;
  localparam int DescInputBaseLsb = 78;
  localparam int DescInputBaseBits = 20;
  localparam int DescOutputBaseLsb = 98;
  localparam int DescOutputBaseBits = 20;
  localparam int DescResidualBaseLsb = 118;
  localparam int DescResidualBaseBits = 20;
  localparam int DescInHLsb = 138;
  localparam int DescInHBits = 14;
  localparam int DescInWLsb = 152;
  localparam int DescInWBits = 14;
  localparam int DescInCLsb = 166;
  localparam int DescInCBits = 20;
  localparam int DescOutHLsb = 186;
  localparam int DescOutHBits = 14;
  localparam int DescOutWLsb = 200;
  localparam int DescOutWBits = 14;
  localparam int DescOutCLsb = 214;
  localparam int DescOutCBits = 20;
  localparam int DescGroupsLsb = 234;
  localparam int DescGroupsBits = 16;
  localparam int DescGroupInLsb = 250;
  localparam int DescGroupInBits = 20;
  localparam int DescGroupOutLsb = 270;
  localparam int DescGroupOutBits = 16;
  localparam int DescKernelHLsb = 286;
  localparam int DescKernelHBits = 9;
  localparam int DescKernelWLsb = 295;
  localparam int DescKernelWBits = 9;
  localparam int DescStrideHLsb = 304;
  localparam int DescStrideHBits = 9;
  localparam int DescStrideWLsb = 313;
  localparam int DescStrideWBits = 9;
  localparam int DescPadHLsb = 322;
  localparam int DescPadHBits = 8;
  localparam int DescPadWLsb = 330;
  localparam int DescPadWBits = 8;
  localparam int DescPatchLsb = 338;
  localparam int DescPatchBits = 20;
  localparam int DescStepYLsb = 358;
  localparam int DescStepYBits = 16;
  localparam int DescStepXLsb = 374;
  localparam int DescStepXBits = 8;
  localparam int DescStepCLsb = 382;
  localparam int DescStepCBits = 20;
  localparam int DescQuantMantissaLsb = 402;
  localparam int DescQuantMantissaBits = 31;
  localparam int DescQuantShiftLsb = 433;
  localparam int DescQuantShiftBits = 6;
  localparam int DescPairAMantissaLsb = 439;
  localparam int DescPairAMantissaBits = 31;
  localparam int DescPairAShiftLsb = 470;
  localparam int DescPairAShiftBits = 6;
  localparam int DescPairBMantissaLsb = 476;
  localparam int DescPairBMantissaBits = 31;
  localparam int DescPairBShiftLsb = 507;
  localparam int DescPairBShiftBits = 6;
  localparam int DescCodesInputLsb = 513;
  localparam int DescCodesInputBits = 1;
  localparam int DescCacheLsb = 514;
  localparam int DescCacheBits = 1;
  localparam int DescEpsLsb = 515;
  localparam int DescEpsBits = 64;
  localparam int DescNormBitsLsb = 579;
  localparam int DescNormBitsBits = 6;
  localparam int DescShiftLsb = 585;
  localparam int DescShiftBits = 6;
  localparam int DescIndexBitsLsb = 591;
  localparam int DescIndexBitsBits = 4;
  localparam int DescProbBitsLsb = 595;
  localparam int DescProbBitsBits = 4;
  localparam int DescHeadDimLsb = 599;
  localparam int DescHeadDimBits = 20;
  localparam int DescFactorCountLsb = 619;
  localparam int DescFactorCountBits = 4;
  localparam int DescFactorHeadsLsb = 623;
  localparam int DescFactorHeadsBits = 8;
  localparam int DescFactor0Lsb = 631;
  localparam int DescFactor0Bits = 8;
  localparam int DescFactor1Lsb = 639;
  localparam int DescFactor1Bits = 8;
  localparam int DescFactor2Lsb = 647;
  localparam int DescFactor2Bits = 8;
  localparam int DescFactor3Lsb = 655;
  localparam int DescFactor3Bits = 8;
  localparam int DescFactor4Lsb = 663;
  localparam int DescFactor4Bits = 8;
  localparam int DescFactor5Lsb = 671;
  localparam int DescFactor5Bits = 8;
  localparam int DescFactor6Lsb = 679;
  localparam int DescFactor6Bits = 8;
  localparam int DescFactor7Lsb = 687;
  localparam int DescFactor7Bits = 8;
  localparam int DescriptorBits = 695;
  localparam int DescWordBits = 64;
  localparam int DescWordIndexBits = 4;
  localparam int DescWords = 11;

  // A requantization pair: the mantissa in [RequantMantissaLsb +: MantBits], the shift right above it
  localparam int RequantMantissaLsb = 0;
  localparam int RequantShiftBits = 6;

  // The layer count and a sequence's tokens
  localparam int LayerCountLsb = 0;
  localparam int LayerCountBits = 8;
  localparam int TokenCountLsb = 8;
  localparam int TokenCountBits = 16;

  // An embedding table's integer, an exp2 table entry
  localparam int TableValueLsb = 0;
  localparam int TableValueBits = 32;
  localparam int Exp2EntryLsb = 0;
  localparam int Exp2EntryBits = 25;

  // cfg_data_i is as wide as a weight word, and at least DataMinBits wide
  localparam int DataMinBits = 72;

  /* verilator lint_on UNUSEDPARAM */

endpackage
`endif  // QATHW_CFG_PKG_SV
