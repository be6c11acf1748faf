# C synthesis of one of the datapath's tops in Vitis HLS, for one built-in target.
# Not run by qat-hw (the vendor tool is not part of it); for users who have Vitis HLS:
#
#   cmake --preset release && cmake --build --preset release     # generates build/release/hls/generated
#   vitis_hls -f hls/run_vitis.tcl -tclargs ternary_asic [xcu250-figd2104-2L-e] [4.0] [layer]
#
# Arguments: the target id (ternary_asic or int4_fpga), the part, the clock period in ns, the top
# (layer: a linear layer, conv, pool or add; a transformer unit: embed, rmsnorm, group_quantizer,
# static_quantizer, token_linear, squared_relu, token_add, scores, softmax or attend).
set id     [expr {[llength $argv] > 0 ? [lindex $argv 0] : "ternary_asic"}]
set part   [expr {[llength $argv] > 1 ? [lindex $argv 1] : "xcu250-figd2104-2L-e"}]
set period [expr {[llength $argv] > 2 ? [lindex $argv 2] : "4.0"}]
set top    [expr {[llength $argv] > 3 ? [lindex $argv 3] : "layer"}]
set root   [file normalize [file dirname [info script]]/..]
set gen    $root/build/release/hls/generated
set cflags "-std=c++17 -I$root/hls/include -I$root/sim/arith/include -I$gen"

open_project -reset qathw_hls_${top}_$id
set_top qathw::hls::${top}_top_$id
add_files [expr {[lsearch {layer conv pool add} $top] >= 0 ? "$gen/layer_top_$id.cpp" : "$gen/transformer_top_$id.cpp"}] -cflags $cflags
open_solution -reset solution1 -flow_target vivado
set_part $part
create_clock -period $period -name default
csynth_design
# Co-simulation needs a C testbench driving the top (for example a bundle's first layer through
# qathw::hls::run_layers); csim of the datapath itself is what `qat-hw verify --engines hls` does.
exit
