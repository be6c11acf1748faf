# The dependency rule of the layout: the hardware models and the engines read the deployed model
# (model/), never the trainer. Checked at configure time on the link graph, so a change that makes
# a hardware model link the trainer stops the build.
function(qathw_collect_links target out)
  set(seen ${${out}})
  get_target_property(links ${target} LINK_LIBRARIES)
  get_target_property(interface ${target} INTERFACE_LINK_LIBRARIES)
  foreach(lib IN LISTS links interface)
    string(REGEX REPLACE "^\\$<LINK_ONLY:(.*)>$" "\\1" lib "${lib}")
    if(TARGET ${lib} AND NOT lib IN_LIST seen)
      list(APPEND seen ${lib})
      set(${out} ${seen})
      qathw_collect_links(${lib} ${out})
      set(seen ${${out}})
    endif()
  endforeach()
  set(${out} ${seen} PARENT_SCOPE)
endfunction()

function(qathw_forbid_link forbidden)
  foreach(target IN LISTS ARGN)
    if(NOT TARGET ${target})  # not in this build (QATHW_FUZZ)
      continue()
    endif()
    set(reached "")
    qathw_collect_links(${target} reached)
    if(${forbidden} IN_LIST reached)
      message(FATAL_ERROR "${target} links ${forbidden} (through: ${reached}); the hardware models and engines "
                          "read model/, not the trainer")
    endif()
  endforeach()
endfunction()

qathw_forbid_link(qathw_training qathw_model qathw_systemc qathw_rtl qathw_rtl_flow qathw_hls qathw_hls_tops
                  qathw_verify qathw_profile qathw_kernels)
