# C synthesis and co-simulation of the datapath's layer top in Vitis HLS, for one built-in target.
# Not run by qat-hw (the vendor tool is not part of it); for users who have Vitis HLS:
#
#   cmake --preset release && cmake --build --preset release     # generates build/release/hls/generated
#   vitis_hls -f hls/run_vitis.tcl -tclargs ternary_asic [xcu250-figd2104-2L-e] [4.0]
#
# Arguments: the target id (ternary_asic or int4_fpga), the part, the clock period in ns.
set id     [expr {[llength $argv] > 0 ? [lindex $argv 0] : "ternary_asic"}]
set part   [expr {[llength $argv] > 1 ? [lindex $argv 1] : "xcu250-figd2104-2L-e"}]
set period [expr {[llength $argv] > 2 ? [lindex $argv 2] : "4.0"}]
set root   [file normalize [file dirname [info script]]/..]
set gen    $root/build/release/hls/generated
set cflags "-std=c++17 -I$root/hls/include -I$root/sim/arith/include -I$gen"

open_project -reset qathw_hls_$id
set_top qathw::hls::layer_top_$id
add_files $gen/layer_top_$id.cpp -cflags $cflags
open_solution -reset solution1 -flow_target vivado
set_part $part
create_clock -period $period -name default
csynth_design
# Co-simulation needs a C testbench driving the top (for example a bundle's first layer through
# qathw::hls::run_layers); csim of the datapath itself is what `qat-hw verify --engines hls` does.
exit
