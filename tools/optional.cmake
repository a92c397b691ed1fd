# The tools' commands that need a library beyond the engine's (relay and
# inbox: libnats; deliver: libcurl and libsodium; serve: libmicrohttpd). Each
# is built when its libraries are found and left out otherwise (its tests are
# then skipped, saying why); nothing else changes.
#
# stele_optional_command(NAME WHAT "what is built" DEBIAN "packages"
#                        MODULES pkg-config-module... EXCLUDE source-regex
#                        [FALLBACK_LIB lib FALLBACK_HEADER header])
#
# The option STELE_WITH_<NAME> (default ON) leaves the command out on request.
# Sets, for the caller and the top level, STELE_HAVE_<NAME> and
# STELE_<NAME>_LIBS, defines STELE_HAVE_<NAME>=1 for the compiler, and takes
# the sources matching EXCLUDE (a regex on their paths) out of the caller's
# STELE_TOOL_SOURCES when the command cannot be built. FALLBACK_LIB and
# FALLBACK_HEADER are looked for by name when pkg-config finds no module (a
# libnats built from source installs no .pc file).
function(stele_optional_command name)
  cmake_parse_arguments(A "" "WHAT;DEBIAN;EXCLUDE;FALLBACK_LIB;FALLBACK_HEADER" "MODULES" ${ARGN})
  option(STELE_WITH_${name} "Build ${A_WHAT} when its libraries are found" ON)
  set(libs "")
  set(have OFF)
  if(STELE_WITH_${name})
    set(have ON)
    foreach(m IN LISTS A_MODULES)
      string(MAKE_C_IDENTIFIER "STELE_OPT_${m}" prefix)
      pkg_check_modules(${prefix} QUIET IMPORTED_TARGET GLOBAL ${m})
      if(${prefix}_FOUND)
        list(APPEND libs PkgConfig::${prefix})
      else()
        set(have OFF)
      endif()
    endforeach()
    if(NOT have AND A_FALLBACK_LIB)
      find_library(STELE_${name}_FALLBACK_LIB ${A_FALLBACK_LIB})
      find_path(STELE_${name}_FALLBACK_INCLUDE ${A_FALLBACK_HEADER})
      if(STELE_${name}_FALLBACK_LIB AND STELE_${name}_FALLBACK_INCLUDE)
        set(libs ${STELE_${name}_FALLBACK_LIB})
        set(have ON)
      endif()
    endif()
  endif()
  list(JOIN A_MODULES " and " modules)
  if(have)
    message(STATUS "${modules} found: ${A_WHAT} built")
    add_compile_definitions(STELE_HAVE_${name}=1)
  else()
    set(libs "")
    message(STATUS "${modules} not found or STELE_WITH_${name}=OFF (Debian: apt-get install ${A_DEBIAN}): "
                   "${A_WHAT} left out, its tests skipped")
    set(sources ${STELE_TOOL_SOURCES})
    list(FILTER sources EXCLUDE REGEX "${A_EXCLUDE}")
    set(STELE_TOOL_SOURCES ${sources} PARENT_SCOPE)
  endif()
  set(STELE_HAVE_${name} ${have} PARENT_SCOPE)
  set(STELE_${name}_LIBS ${libs} PARENT_SCOPE)
endfunction()
