# `stele relay` and `stele inbox` (SPEC.md §21) use the NATS C client,
# libnats (Debian: libnats-dev). Found by pkg-config or by name; when it is
# missing the two commands are left out of the build (and their tests are
# skipped, saying why), nothing else changes. Sets STELE_NATS_LIBS and
# STELE_HAVE_NATS, and takes the NATS sources out of STELE_TOOL_SOURCES when
# there is no libnats.
option(STELE_WITH_NATS "Build stele relay and stele inbox when libnats is found" ON)
set(STELE_NATS_LIBS "")
set(STELE_HAVE_NATS OFF)
if(STELE_WITH_NATS)
  pkg_check_modules(LIBNATS QUIET IMPORTED_TARGET GLOBAL libnats)
endif()
if(NOT STELE_WITH_NATS)
  # Left out on request (-DSTELE_WITH_NATS=OFF), as if libnats were missing.
elseif(LIBNATS_FOUND)
  set(STELE_NATS_LIBS PkgConfig::LIBNATS)
  set(STELE_HAVE_NATS ON)
else()
  find_library(STELE_LIBNATS nats)
  find_path(STELE_LIBNATS_INCLUDE nats/nats.h)
  if(STELE_LIBNATS AND STELE_LIBNATS_INCLUDE)
    set(STELE_NATS_LIBS ${STELE_LIBNATS})
    set(STELE_HAVE_NATS ON)
  endif()
endif()
if(STELE_HAVE_NATS)
  message(STATUS "libnats found: stele relay and stele inbox are built")
  add_compile_definitions(STELE_HAVE_NATS=1)
else()
  message(STATUS "libnats not found or STELE_WITH_NATS=OFF (Debian: apt-get install libnats-dev): "
                 "stele relay and stele inbox are left out, tests/relay is skipped")
  list(FILTER STELE_TOOL_SOURCES EXCLUDE REGEX "/(cmd_relay|cmd_inbox|nats_[a-z_]*)\\.c$")
endif()
set(STELE_HAVE_NATS ${STELE_HAVE_NATS} PARENT_SCOPE)
set(STELE_NATS_LIBS ${STELE_NATS_LIBS} PARENT_SCOPE)
