# qathw_embed_tomls(HEADER DIR NAMESPACE ARRAY): HEADER (generated at build time) holds the text
# of every DIR/*.toml as NAMESPACE::ARRAY[] = {name, toml}, sorted by file name.
function(qathw_embed_tomls header dir namespace array)
  file(GLOB tomls CONFIGURE_DEPENDS ${dir}/*.toml)
  list(SORT tomls)
  string(REPLACE ";" "|" toml_args "${tomls}")  # a list cannot cross COMMAND whole
  add_custom_command(
    OUTPUT ${header}
    COMMAND ${CMAKE_COMMAND} -DOUT=${header} "-DTOML_FILES=${toml_args}" -DNAMESPACE=${namespace}
            -DARRAY=${array} -P ${PROJECT_SOURCE_DIR}/cmake/embed_toml.cmake
    DEPENDS ${tomls} ${PROJECT_SOURCE_DIR}/cmake/embed_toml.cmake
    COMMENT "Embedding ${dir}/*.toml"
    VERBATIM)
endfunction()
