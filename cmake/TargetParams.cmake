# qathw_target_params(NAME PREFIX): reads targets/NAME.toml and sets PREFIX_<FIELD> variables
# (PREFIX_ROWS, PREFIX_LANES, PREFIX_ACT_BITS, PREFIX_ACC_BITS, PREFIX_MANT_BITS,
# PREFIX_SHIFT_MIN, PREFIX_SHIFT_MAX, PREFIX_WEIGHT_INT4, PREFIX_SATURATE, PREFIX_HALF_EVEN),
# so RTL parameters come from the target spec and are never copied by hand. The C++ parser
# validates targets; this only reads the built-in files, which its tests keep valid.
find_package(Python3 3.11 REQUIRED COMPONENTS Interpreter)  # tomllib
function(qathw_target_params name prefix)
  set(file ${PROJECT_SOURCE_DIR}/targets/${name}.toml)
  execute_process(
    COMMAND ${Python3_EXECUTABLE} -c "
import sys, tomllib
t = tomllib.load(open(sys.argv[1], 'rb'))
v = dict(ROWS=t['array']['rows'], LANES=t['array']['lanes'], ACT_BITS=t['activations']['bits'],
         ACC_BITS=t['arithmetic']['accumulator_bits'], MANT_BITS=t['scale']['mantissa_bits'],
         SHIFT_MIN=t['scale']['shift_min'], SHIFT_MAX=t['scale']['shift_max'],
         WEIGHT_INT4=int(t['weights']['format'] == 'int4'),
         SATURATE=int(t['arithmetic']['overflow'] == 'saturate'),
         HALF_EVEN=int(t['arithmetic']['rounding'] == 'half_even'))
print(';'.join(f'{k}={x}' for k, x in v.items()), end='')
" ${file}
    OUTPUT_VARIABLE pairs RESULT_VARIABLE rc ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "${file}: cannot read the target's RTL parameters: ${err}")
  endif()
  set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS ${file})
  foreach(pair IN LISTS pairs)
    string(REPLACE "=" ";" kv ${pair})
    list(GET kv 0 key)
    list(GET kv 1 value)
    set(${prefix}_${key} ${value} PARENT_SCOPE)
  endforeach()
endfunction()
