# install.cmake: what `cmake --install build --prefix P` puts where.
#
#   P/bin/q8c                          the compiler
#   P/include/{q8c,q8rt,q8model}.h     the public headers
#   P/LIBDIR/libq8rt.so.0              the runtime (SOVERSION 0) and its links
#   P/LIBDIR/libq8c.so.0               the compiler library (q8c_* only)
#   P/LIBDIR/q8c/libq8support.a        linked into every model .so by the
#                                      installed q8c (found relative to it)
#   P/LIBDIR/q8c/aarch64/libq8support.a  the same for --target=aarch64*, when
#                                      the cross toolchain built one
#   P/LIBDIR/pkgconfig/{q8rt,q8c}.pc   pkg-config
#   P/LIBDIR/cmake/q8c/                find_package(q8c): q8c::q8rt, q8c::q8c
#   P/share/man/man1/q8c.1             generated from `q8c --help` (help2man)
#   P/share/doc/q8c/LICENSE
#
# Nothing else: the tests, the bench and the static core stay in the build.
#
# The install is relocatable: q8c finds libq8rt.so and libq8c.so finds
# libq8rt.so through $ORIGIN-relative run paths, and q8c finds
# libq8support.a relative to itself (codegen/emit.c), so a prefix works
# wherever it is copied.
set_target_properties(q8c PROPERTIES INSTALL_RPATH "$ORIGIN/${Q8_BIN_TO_LIB}")
set_target_properties(q8c_shared PROPERTIES INSTALL_RPATH "$ORIGIN")
install(TARGETS q8c RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
install(TARGETS q8rt q8c_shared EXPORT q8cTargets
        LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
        INCLUDES DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(FILES include/q8c.h include/q8rt.h include/q8model.h
        DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(FILES $<TARGET_FILE:q8support> DESTINATION ${CMAKE_INSTALL_LIBDIR}/q8c)
if(TARGET q8_aarch64)
  install(FILES ${Q8_AARCH64_DIR}/libq8support.a DESTINATION ${CMAKE_INSTALL_LIBDIR}/q8c/aarch64)
endif()
install(FILES LICENSE DESTINATION ${CMAKE_INSTALL_DOCDIR})

# pkg-config: the prefix is found from the .pc file's own place (pcfiledir),
# so a copied prefix still works.
file(RELATIVE_PATH Q8_PC_TO_PREFIX ${CMAKE_INSTALL_FULL_LIBDIR}/pkgconfig ${CMAKE_INSTALL_PREFIX})
string(REGEX REPLACE "/$" "" Q8_PC_TO_PREFIX "${Q8_PC_TO_PREFIX}")
foreach(pc q8rt q8c)
  configure_file(${PROJECT_SOURCE_DIR}/cmake/${pc}.pc.in ${PROJECT_BINARY_DIR}/${pc}.pc @ONLY)
  install(FILES ${PROJECT_BINARY_DIR}/${pc}.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
endforeach()

# CMake package: q8cConfig.cmake includes the exported targets.
include(CMakePackageConfigHelpers)
install(EXPORT q8cTargets NAMESPACE q8c:: DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/q8c)
configure_package_config_file(${PROJECT_SOURCE_DIR}/cmake/q8cConfig.cmake.in
  ${PROJECT_BINARY_DIR}/q8cConfig.cmake INSTALL_DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/q8c)
write_basic_package_version_file(${PROJECT_BINARY_DIR}/q8cConfigVersion.cmake
  COMPATIBILITY SameMinorVersion)
install(FILES ${PROJECT_BINARY_DIR}/q8cConfig.cmake ${PROJECT_BINARY_DIR}/q8cConfigVersion.cmake
        DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/q8c)

# The man page, from the driver's own --help and --version, so the two
# cannot disagree (Debian's help2man; without it no page is made).
find_program(HELP2MAN help2man)
if(HELP2MAN)
  add_custom_command(
    OUTPUT ${PROJECT_BINARY_DIR}/q8c.1
    COMMAND ${HELP2MAN} --no-info --no-discard-stderr --name "a quantizing compiler for neural networks"
            --output ${PROJECT_BINARY_DIR}/q8c.1 $<TARGET_FILE:q8c>
    DEPENDS q8c
    COMMENT "Generating the man page q8c.1 from q8c --help"
    VERBATIM)
  add_custom_target(q8c_man ALL DEPENDS ${PROJECT_BINARY_DIR}/q8c.1)
  install(FILES ${PROJECT_BINARY_DIR}/q8c.1 DESTINATION ${CMAKE_INSTALL_MANDIR}/man1)
else()
  message(STATUS "help2man not found: no man page (apt-get install help2man)")
endif()
