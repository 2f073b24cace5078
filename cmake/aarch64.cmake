# The AArch64 pieces q8c needs to link and run --target=aarch64* models,
# cross-compiled with Debian's toolchain (apt-get install gcc-aarch64-linux-gnu)
# into ${PROJECT_BINARY_DIR}/aarch64/:
#
#   libq8support.a  the reference ops (ir/refops.c) an aarch64 model .so links
#   libq8rt.so      the runtime (runtime/*.c), for aarch64 programs
#
# q8c looks for the first in the build tree it was built in, so `q8c
# --target=aarch64-dotprod -o m.so` works from a build with the toolchain.
# Without it the rest builds as before and a message says what is missing;
# q8c can still emit aarch64 assembly and objects. tests/CMakeLists.txt adds
# the test runner (tests/tools/run_model.c) the same way.
set(Q8_AARCH64_DIR ${PROJECT_BINARY_DIR}/aarch64)
target_compile_definitions(q8c_core PRIVATE
  Q8_SUPPORT_LIB_AARCH64_BUILD="${Q8_AARCH64_DIR}/libq8support.a")

find_program(Q8_AARCH64_CC aarch64-linux-gnu-gcc)
find_program(Q8_AARCH64_AR aarch64-linux-gnu-ar)
if(NOT Q8_AARCH64_CC OR NOT Q8_AARCH64_AR)
  message(STATUS "aarch64-linux-gnu-gcc not found: no AArch64 libq8support.a or libq8rt.so "
                 "(apt-get install gcc-aarch64-linux-gnu to link --target=aarch64* models)")
  return()
endif()

# The flags of the native build: C11, no contraction (GCC fuses a * b + c
# into fmadd on AArch64 unless told not to, which would change the bits of
# the reference ops), warnings.
set(Q8_AARCH64_CFLAGS -std=c11 -O2 -g -fPIC -ffp-contract=off -Wall -Wextra
    -Wno-unused-parameter -D_POSIX_C_SOURCE=200809L "-DQ8_VERSION=\"${PROJECT_VERSION}\""
    -I${PROJECT_SOURCE_DIR}/include)
if(Q8_WERROR)
  list(APPEND Q8_AARCH64_CFLAGS -Werror)
endif()

add_custom_command(
  OUTPUT ${Q8_AARCH64_DIR}/libq8support.a
  COMMAND ${CMAKE_COMMAND} -E make_directory ${Q8_AARCH64_DIR}
  COMMAND ${Q8_AARCH64_CC} ${Q8_AARCH64_CFLAGS} -c ${PROJECT_SOURCE_DIR}/ir/refops.c
          -o ${Q8_AARCH64_DIR}/refops.o
  COMMAND ${CMAKE_COMMAND} -E rm -f ${Q8_AARCH64_DIR}/libq8support.a
  COMMAND ${Q8_AARCH64_AR} rcs ${Q8_AARCH64_DIR}/libq8support.a ${Q8_AARCH64_DIR}/refops.o
  DEPENDS ${PROJECT_SOURCE_DIR}/ir/refops.c ${PROJECT_SOURCE_DIR}/ir/refops.h
          ${PROJECT_SOURCE_DIR}/ir/fmath.h
  COMMENT "Cross-compiling libq8support.a for aarch64"
  VERBATIM)

file(GLOB Q8_AARCH64_RT_SOURCES CONFIGURE_DEPENDS ${PROJECT_SOURCE_DIR}/runtime/*.c)
file(GLOB Q8_AARCH64_RT_HEADERS CONFIGURE_DEPENDS ${PROJECT_SOURCE_DIR}/runtime/*.h)
add_custom_command(
  OUTPUT ${Q8_AARCH64_DIR}/libq8rt.so
  COMMAND ${CMAKE_COMMAND} -E make_directory ${Q8_AARCH64_DIR}
  COMMAND ${Q8_AARCH64_CC} ${Q8_AARCH64_CFLAGS} -fvisibility=hidden -shared
          -Wl,-soname,libq8rt.so -o ${Q8_AARCH64_DIR}/libq8rt.so ${Q8_AARCH64_RT_SOURCES}
          -lpthread -ldl
  DEPENDS ${Q8_AARCH64_RT_SOURCES} ${Q8_AARCH64_RT_HEADERS} ${PROJECT_SOURCE_DIR}/include/q8rt.h
          ${PROJECT_SOURCE_DIR}/include/q8model.h
  COMMENT "Cross-compiling libq8rt.so for aarch64"
  VERBATIM)

add_custom_target(q8_aarch64 ALL
  DEPENDS ${Q8_AARCH64_DIR}/libq8support.a ${Q8_AARCH64_DIR}/libq8rt.so)
