# install.cmake - what `cmake --install` puts where (included by the top-level
# CMakeLists.txt):
#   include/stele.h                          the one public header
#   lib/libstele.so.0 (+ links), libstele.a  the shared and the static library
#   lib/pkgconfig/stele.pc                   `pkg-config --cflags --libs stele`
#   lib/cmake/stele/                         `find_package(stele)`: stele::stele (shared),
#                                            stele::stele_static
# The `stele` tool and its manual pages are installed by tools/CMakeLists.txt,
# stele-bench by the top-level CMakeLists.txt. tests/install checks
# all of this from outside the build tree.
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

set(STELE_CMAKE_DIR ${CMAKE_INSTALL_LIBDIR}/cmake/stele)

# Exported as stele::stele and stele::stele_static.
set_target_properties(stele_shared PROPERTIES EXPORT_NAME stele)
set_target_properties(stele_static PROPERTIES EXPORT_NAME stele_static)

install(TARGETS stele_shared stele_static EXPORT stele-targets
  LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
  ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
  RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR}
  INCLUDES DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(FILES ${PROJECT_SOURCE_DIR}/engine/include/stele.h DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})

# pkg-config: the file finds its prefix from its own location (${pcfiledir}),
# so an install with `cmake --install --prefix P` or DESTDIR stays correct.
if(IS_ABSOLUTE "${CMAKE_INSTALL_LIBDIR}" OR IS_ABSOLUTE "${CMAKE_INSTALL_INCLUDEDIR}")
  set(STELE_PC_PREFIX "${CMAKE_INSTALL_PREFIX}")
  set(STELE_PC_LIBDIR "${CMAKE_INSTALL_FULL_LIBDIR}")
  set(STELE_PC_INCLUDEDIR "${CMAKE_INSTALL_FULL_INCLUDEDIR}")
else()
  file(RELATIVE_PATH up "/root/${CMAKE_INSTALL_LIBDIR}/pkgconfig" "/root")
  string(REGEX REPLACE "/$" "" up "${up}")
  set(STELE_PC_PREFIX "\${pcfiledir}/${up}")
  set(STELE_PC_LIBDIR "\${prefix}/${CMAKE_INSTALL_LIBDIR}")
  set(STELE_PC_INCLUDEDIR "\${prefix}/${CMAKE_INSTALL_INCLUDEDIR}")
endif()
configure_file(${CMAKE_CURRENT_LIST_DIR}/stele.pc.in ${PROJECT_BINARY_DIR}/stele.pc @ONLY)
install(FILES ${PROJECT_BINARY_DIR}/stele.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)

# CMake package.
install(EXPORT stele-targets NAMESPACE stele:: FILE stele-targets.cmake DESTINATION ${STELE_CMAKE_DIR})
configure_package_config_file(${CMAKE_CURRENT_LIST_DIR}/stele-config.cmake.in
  ${PROJECT_BINARY_DIR}/stele-config.cmake INSTALL_DESTINATION ${STELE_CMAKE_DIR})
# 0.x: a minor release may break the API, so only the same minor version matches.
write_basic_package_version_file(${PROJECT_BINARY_DIR}/stele-config-version.cmake
  VERSION ${PROJECT_VERSION} COMPATIBILITY SameMinorVersion)
install(FILES ${PROJECT_BINARY_DIR}/stele-config.cmake ${PROJECT_BINARY_DIR}/stele-config-version.cmake
  DESTINATION ${STELE_CMAKE_DIR})
