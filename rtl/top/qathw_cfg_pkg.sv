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

  // A layer descriptor: cfg_data_i[<Field>Lsb +: <Field>Bits]
  localparam int DescInLsb = 0;
  localparam int DescInBits = 16;
  localparam int DescOutLsb = 16;
  localparam int DescOutBits = 16;
  localparam int DescReluLsb = 32;
  localparam int DescReluBits = 1;
  localparam int DescWeightBaseLsb = 33;
  localparam int DescWeightBaseBits = 16;
  localparam int DescRequantBaseLsb = 49;
  localparam int DescRequantBaseBits = 16;
  localparam int DescriptorBits = 65;

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
