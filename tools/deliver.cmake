# `stele deliver` (SPEC.md §22) uses libcurl's multi interface for HTTP and
# libsodium for the HMAC-SHA256 of the Standard Webhooks signature (Debian:
# libcurl4-openssl-dev, libsodium-dev). When either is missing the command is
# left out of the build (and tests/deliver is skipped, saying why), nothing
# else changes. Sets STELE_DELIVER_LIBS and STELE_HAVE_DELIVER, and takes the
# delivery sources out of STELE_TOOL_SOURCES when they cannot be built.
option(STELE_WITH_DELIVER "Build stele deliver when libcurl and libsodium are found" ON)
set(STELE_DELIVER_LIBS "")
set(STELE_HAVE_DELIVER OFF)
if(STELE_WITH_DELIVER)
  pkg_check_modules(LIBCURL QUIET IMPORTED_TARGET GLOBAL libcurl)
  pkg_check_modules(LIBSODIUM QUIET IMPORTED_TARGET GLOBAL libsodium)
  if(LIBCURL_FOUND AND LIBSODIUM_FOUND)
    set(STELE_DELIVER_LIBS PkgConfig::LIBCURL PkgConfig::LIBSODIUM)
    set(STELE_HAVE_DELIVER ON)
  endif()
endif()
if(STELE_HAVE_DELIVER)
  message(STATUS "libcurl and libsodium found: stele deliver is built")
  add_compile_definitions(STELE_HAVE_DELIVER=1)
else()
  message(STATUS "libcurl or libsodium not found or STELE_WITH_DELIVER=OFF (Debian: apt-get install "
                 "libcurl4-openssl-dev libsodium-dev): stele deliver is left out, tests/deliver is skipped")
  list(FILTER STELE_TOOL_SOURCES EXCLUDE REGEX "/(cmd_deliver|webhook_sign)\\.c$")
endif()
set(STELE_HAVE_DELIVER ${STELE_HAVE_DELIVER} PARENT_SCOPE)
set(STELE_DELIVER_LIBS ${STELE_DELIVER_LIBS} PARENT_SCOPE)
