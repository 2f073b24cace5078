# a64_sweep.cmake: the AArch64 kernel sweep test (tests/CMakeLists.txt
# registers it as a64.kernel_sweep; a64_sweep.h describes the parts).
#
#   cmake -DGEN=a64_sweep_gen -DCC=aarch64-linux-gnu-gcc -DSUPPORT=libq8support.a
#         -DSRC=source-dir -DOUT=scratch-dir [-DWERROR=ON] -P a64_sweep.cmake
#
# 1. a64_sweep_gen emits every aarch64 variant's kernels for every case into
#    OUT/a64_sweep_kernels.o and writes the case table OUT/a64_sweep_cases.c;
# 2. CC links tools/a64_sweep_run.c, the table, the kernels and the aarch64
#    reference ops (SUPPORT) into OUT/a64_sweep_run;
# 3. one qemu-aarch64 -cpu max process runs every case; its last line is
#    `N passed, M failed`.
# Without the cross compiler, qemu-user or the aarch64 libc it prints
# "a64_sweep: skipped: REASON" (CTest then counts the test as skipped).
set(SYSROOT /usr/aarch64-linux-gnu)

function(skip reason)
  message("a64_sweep: skipped: ${reason}")
endfunction()

function(step what)
  string(TIMESTAMP t0 "%s")
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc)
  string(TIMESTAMP t1 "%s")
  math(EXPR dt "${t1} - ${t0}")
  message("a64_sweep: ${what}: ${dt} s")
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "a64_sweep: ${what} failed (${rc})")
  endif()
endfunction()

if(NOT CC)
  skip("no aarch64 cross compiler (apt-get install gcc-aarch64-linux-gnu, then reconfigure)")
  return()
endif()
if(NOT EXISTS ${SUPPORT})
  skip("no ${SUPPORT} (build the q8_aarch64 target)")
  return()
endif()
find_program(QEMU qemu-aarch64)
if(NOT QEMU)
  skip("no qemu-aarch64 (apt-get install qemu-user)")
  return()
endif()
if(NOT IS_DIRECTORY ${SYSROOT}/lib)
  skip("no aarch64 libc in ${SYSROOT} (apt-get install libc6-dev-arm64-cross)")
  return()
endif()

file(MAKE_DIRECTORY ${OUT})
step("emit the kernels" ${GEN} ${OUT}/a64_sweep_kernels.o ${OUT}/a64_sweep_cases.c)
# The flags of cmake/aarch64.cmake's build of the reference ops: no
# contraction (the data is drawn with the generator's float arithmetic).
set(flags -std=c11 -O2 -ffp-contract=off -Wall -Wextra -D_POSIX_C_SOURCE=200809L)
if(WERROR)
  list(APPEND flags -Werror)
endif()
step("link the runner" ${CC} ${flags} -I${SRC}/include -I${SRC} -I${SRC}/tests/tools
     ${SRC}/tests/tools/a64_sweep_run.c ${OUT}/a64_sweep_cases.c ${OUT}/a64_sweep_kernels.o
     ${SUPPORT} -lm -o ${OUT}/a64_sweep_run)
step("run every case in qemu-aarch64 -cpu max" ${QEMU} -cpu max -L ${SYSROOT}
     ${OUT}/a64_sweep_run)
