# Target parameters at configure time, from the one C++ generator (targets/, qathw/target/target_gen.h).
#
# verilate() runs Verilator while CMake configures, so RTL parameters are needed before anything is
# built. This file compiles the target parser, validator and generator (the sources of the
# qathw-target-gen program) once per configure in which they changed, with try_compile, and runs it:
#
#   QATHW_BUILTIN_TARGETS    the built-in target names: targets/*.toml without ".toml", sorted
#   qathw_target_params(NAME PREFIX)
#       validates targets/NAME.toml (an invalid target stops the configure with the file and the
#       field) and sets the variables of its generated CMake fragment: PREFIX_ROWS, PREFIX_LANES,
#       PREFIX_ACT_BITS, PREFIX_ACC_BITS, PREFIX_MANT_BITS, PREFIX_SHIFT_MIN, PREFIX_SHIFT_MAX,
#       PREFIX_WEIGHT_INT4, PREFIX_SATURATE, PREFIX_HALF_EVEN, PREFIX_VERILATOR_ARGS (the -G list),
#       PREFIX_NAME, PREFIX_HASH; and PREFIX_SV_PACKAGE, PREFIX_HEADER: the generated SystemVerilog
#       package and C++ header of the target; PREFIX_MEMORY_ARGS, the -G list of the RTL's memory
#       sizes (qathw/target/rtl_memories.h).
#   QATHW_CFG_SV_PACKAGE     the generated SystemVerilog package qathw_cfg_pkg: the configuration
#                            port's layout (qathw/target/config_port.h), which qathw_accel reads
include_guard(GLOBAL)

file(GLOB _qathw_builtin_tomls CONFIGURE_DEPENDS ${PROJECT_SOURCE_DIR}/targets/*.toml)
list(SORT _qathw_builtin_tomls)
set(_qathw_names)
foreach(_toml IN LISTS _qathw_builtin_tomls)
  get_filename_component(_stem ${_toml} NAME_WE)
  list(APPEND _qathw_names ${_stem})
endforeach()
set(QATHW_BUILTIN_TARGETS ${_qathw_names} CACHE INTERNAL "Built-in target names (targets/*.toml)")

# The generator, built from the same sources as the qathw-target-gen program.
set(_qathw_gen_dir ${PROJECT_BINARY_DIR}/target-gen)
set(_qathw_gen_sources ${PROJECT_SOURCE_DIR}/targets/src/target_spec.cpp
                       ${PROJECT_SOURCE_DIR}/targets/src/target_gen.cpp
                       ${PROJECT_SOURCE_DIR}/targets/tools/qathw_target_gen.cpp)
file(GLOB_RECURSE _qathw_gen_headers ${PROJECT_SOURCE_DIR}/targets/include/*.h
                                     ${PROJECT_SOURCE_DIR}/sim/arith/include/*.h
                                     ${PROJECT_SOURCE_DIR}/util/include/qathw/util/hash.h)
set(_qathw_gen_includes ${PROJECT_SOURCE_DIR}/targets/include ${PROJECT_SOURCE_DIR}/sim/arith/include
                        ${PROJECT_SOURCE_DIR}/util/include)
set(_qathw_gen_flags -Wall -Wextra -Wpedantic)
if(QATHW_WERROR)
  list(APPEND _qathw_gen_flags -Werror)
endif()
set(_qathw_gen_stamp "${CMAKE_CXX_COMPILER};${CMAKE_CXX_FLAGS};${_qathw_gen_flags}")
foreach(_file IN LISTS _qathw_gen_sources _qathw_gen_headers)
  file(SHA256 ${_file} _sum)
  string(APPEND _qathw_gen_stamp ";${_file}=${_sum}")
endforeach()
string(SHA256 _qathw_gen_stamp "${_qathw_gen_stamp}")
set_property(DIRECTORY ${PROJECT_SOURCE_DIR} APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS
             ${_qathw_gen_sources} ${_qathw_gen_headers})
set(QATHW_TARGET_GEN ${_qathw_gen_dir}/qathw-target-gen CACHE INTERNAL "The configure-time target generator")
if(NOT EXISTS ${QATHW_TARGET_GEN} OR NOT _qathw_gen_stamp STREQUAL "${_QATHW_TARGET_GEN_STAMP}")
  message(STATUS "qat-hw: building the target generator for configure time")
  try_compile(_qathw_gen_ok ${_qathw_gen_dir}/build
    SOURCES ${_qathw_gen_sources}
    CMAKE_FLAGS "-DINCLUDE_DIRECTORIES=${_qathw_gen_includes}"
    COMPILE_DEFINITIONS ${_qathw_gen_flags}
    LINK_LIBRARIES tomlplusplus::tomlplusplus nlohmann_json::nlohmann_json
    CXX_STANDARD 17
    CXX_STANDARD_REQUIRED ON
    CXX_EXTENSIONS OFF
    OUTPUT_VARIABLE _qathw_gen_log
    COPY_FILE ${QATHW_TARGET_GEN}
    COPY_FILE_ERROR _qathw_gen_copy_error)
  if(NOT _qathw_gen_ok OR _qathw_gen_copy_error)
    message(FATAL_ERROR "cannot build the target generator (targets/src, targets/tools) at configure time: "
                        "${_qathw_gen_copy_error}\n${_qathw_gen_log}")
  endif()
  set(_QATHW_TARGET_GEN_STAMP ${_qathw_gen_stamp} CACHE INTERNAL "Sources hash of QATHW_TARGET_GEN")
endif()

# The configuration port's package, the same for every target.
set(QATHW_CFG_SV_PACKAGE ${PROJECT_BINARY_DIR}/generated/rtl/qathw_cfg_pkg.sv CACHE INTERNAL
    "The generated SystemVerilog package of the configuration port's layout")
execute_process(COMMAND ${QATHW_TARGET_GEN} --cfg-sv ${QATHW_CFG_SV_PACKAGE}
                RESULT_VARIABLE _qathw_cfg_rc ERROR_VARIABLE _qathw_cfg_err)
if(NOT _qathw_cfg_rc EQUAL 0)
  message(FATAL_ERROR "cannot write ${QATHW_CFG_SV_PACKAGE}: ${_qathw_cfg_err}")
endif()

function(qathw_target_params name prefix)
  set(file ${PROJECT_SOURCE_DIR}/targets/${name}.toml)
  string(REPLACE "-" "_" id ${name})
  set(dir ${PROJECT_BINARY_DIR}/generated/targets)
  set(fragment ${dir}/${name}.${prefix}.cmake)
  set(package ${dir}/qathw_target_${id}_pkg.sv)
  set(header ${dir}/qathw_target_${id}.h)
  execute_process(
    COMMAND ${QATHW_TARGET_GEN} ${file} --cmake ${prefix} ${fragment} --sv ${package} --hpp ${header}
    RESULT_VARIABLE rc ERROR_VARIABLE err OUTPUT_VARIABLE out)
  set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS ${file})
  if(NOT rc EQUAL 0)
    string(STRIP "${err}" err)
    message(FATAL_ERROR "target ${name}: ${err}")
  endif()
  include(${fragment})
  foreach(var IN LISTS ${prefix}_VARIABLES)
    set(${var} "${${var}}" PARENT_SCOPE)
  endforeach()
  set(${prefix}_SV_PACKAGE ${package} PARENT_SCOPE)
  set(${prefix}_HEADER ${header} PARENT_SCOPE)
endfunction()
