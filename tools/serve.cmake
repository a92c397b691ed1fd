# `stele serve` (tools/cmd_serve.c) answers HTTP with libmicrohttpd (Debian:
# libmicrohttpd-dev). When it is missing the command is left out of the
# build (and tests/serve is skipped, saying why), nothing else changes. Sets
# STELE_SERVE_LIBS and STELE_HAVE_SERVE, and takes cmd_serve.c out of
# STELE_TOOL_SOURCES when it cannot be built.
option(STELE_WITH_SERVE "Build stele serve when libmicrohttpd is found" ON)
set(STELE_SERVE_LIBS "")
set(STELE_HAVE_SERVE OFF)
if(STELE_WITH_SERVE)
  pkg_check_modules(LIBMHD_SERVE QUIET IMPORTED_TARGET GLOBAL libmicrohttpd)
  if(LIBMHD_SERVE_FOUND)
    set(STELE_SERVE_LIBS PkgConfig::LIBMHD_SERVE)
    set(STELE_HAVE_SERVE ON)
  endif()
endif()
if(STELE_HAVE_SERVE)
  message(STATUS "libmicrohttpd found: stele serve is built")
  add_compile_definitions(STELE_HAVE_SERVE=1)
else()
  message(STATUS "libmicrohttpd not found or STELE_WITH_SERVE=OFF (Debian: apt-get install libmicrohttpd-dev): "
                 "stele serve is left out, tests/serve is skipped")
  list(FILTER STELE_TOOL_SOURCES EXCLUDE REGEX "/cmd_serve\\.c$")
endif()
set(STELE_HAVE_SERVE ${STELE_HAVE_SERVE} PARENT_SCOPE)
