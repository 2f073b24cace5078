#!/usr/bin/env bash
# test_install.sh: install q8c into a temporary prefix and use it as a user
# would, from that prefix alone:
#   1. the files are where cmake/install.cmake says, libq8rt.so has its
#      SONAME, libq8c.so exports q8c_* and nothing else, the man page exists;
#   2. the prefix is moved elsewhere (the install is relocatable), and the
#      installed q8c compiles the bundled MLP to a .so;
#   3. consumer_rt, built with pkg-config (q8rt.pc), runs that .so;
#   4. consumer_rt and consumer_jit, built with find_package(q8c), run the
#      .so and the JIT: all three print the same bits;
#   5. consumer_jit built with add_subdirectory() of the source tree (only
#      when Q8_TEST_SUBDIR=1: it rebuilds q8c) prints them too.
# Ends with "N passed, M failed".
#
#   test_install.sh BUILD_DIR SOURCE_DIR
#
# In a sanitizer build the installed libraries are instrumented, so the
# consumers are built with the same flags (Q8_TEST_LDFLAGS, as the Python
# tests do for programs linked against a model library).
set -uo pipefail
build=$(cd "$1" && pwd)
src=$(cd "$2" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
pass=0
fail=0
check() { # check "what" command...
  local what=$1
  shift
  if "$@" >"$tmp/out.log" 2>&1; then
    pass=$((pass + 1))
  else
    fail=$((fail + 1))
    echo "FAIL: $what"
    sed 's/^/    /' "$tmp/out.log" | tail -20
  fi
}

check "cmake --install" cmake --install "$build" --prefix "$tmp/prefix"
libdir=$(cd "$tmp/prefix" && ls -d lib*/ | head -1)
libdir=${libdir%/}
for f in bin/q8c include/q8c.h include/q8rt.h include/q8model.h "$libdir/libq8rt.so" \
  "$libdir/libq8rt.so.0" "$libdir/libq8c.so" "$libdir/libq8c.so.0" \
  "$libdir/q8c/libq8support.a" "$libdir/pkgconfig/q8rt.pc" "$libdir/pkgconfig/q8c.pc" \
  "$libdir/cmake/q8c/q8cConfig.cmake" share/man/man1/q8c.1 share/doc/q8c/LICENSE; do
  check "installed $f" test -f "$tmp/prefix/$f"
done
check "libq8rt.so's SONAME is libq8rt.so.0" \
  sh -c "objdump -p '$tmp/prefix/$libdir/libq8rt.so' | grep -q 'SONAME *libq8rt.so.0'"
check "libq8c.so exports only q8c_* functions" \
  sh -c "nm -D --defined-only '$tmp/prefix/$libdir/libq8c.so' | awk '{print \$3}' | grep -v '^q8c_' | grep . && exit 1; nm -D --defined-only '$tmp/prefix/$libdir/libq8c.so' | grep -q ' q8c_compile$'"
check "the man page documents --target" grep -q -- 'target' "$tmp/prefix/share/man/man1/q8c.1"

# Move the prefix: everything below must work from the new place alone.
mv "$tmp/prefix" "$tmp/moved"
p=$tmp/moved
check "installed q8c --version" "$p/bin/q8c" --version
check "installed q8c compiles the example MLP" \
  "$p/bin/q8c" "$src/examples/mlp/mlp.ir" --calib "$src/examples/mlp/calib.npy" --batch 4 \
  -o "$tmp/mlp.so"

export PKG_CONFIG_PATH=$p/$libdir/pkgconfig
check "pkg-config finds q8rt and q8c" pkg-config --exists q8rt q8c
check "consumer_rt builds with pkg-config" \
  sh -c "cc -std=c11 -Wall -Werror ${Q8_TEST_LDFLAGS:-} $src/tests/install/consumer_rt.c \
         -o $tmp/rt_pc \$(pkg-config --cflags --libs q8rt) -Wl,-rpath,$p/$libdir"
check "consumer_rt (pkg-config) runs the .so" sh -c "'$tmp/rt_pc' '$tmp/mlp.so' > '$tmp/rt_pc.txt'"

check "consumer builds with find_package(q8c)" \
  sh -c "cmake -S '$src/tests/install/consumer' -B '$tmp/consumer' -DCMAKE_PREFIX_PATH='$p' \
         -DCMAKE_C_FLAGS='-Wall -Werror ${Q8_TEST_LDFLAGS:-}' >/dev/null && cmake --build '$tmp/consumer' -j2"
check "consumer_rt (find_package) runs the .so" \
  sh -c "'$tmp/consumer/consumer_rt' '$tmp/mlp.so' > '$tmp/rt_cm.txt'"
check "consumer_jit (find_package) compiles and runs the model" \
  sh -c "'$tmp/consumer/consumer_jit' '$src/examples/mlp/mlp.ir' '$src/examples/mlp/calib.npy' 4 \
         > '$tmp/jit_cm.txt'"
check "pkg-config and find_package builds give the same bits" cmp "$tmp/rt_pc.txt" "$tmp/rt_cm.txt"
check "the JIT gives the .so's bits" cmp "$tmp/rt_cm.txt" "$tmp/jit_cm.txt"
check "the outputs are not empty" test -s "$tmp/rt_cm.txt"

if [ "${Q8_TEST_SUBDIR:-0}" = 1 ]; then
  check "consumer builds with add_subdirectory(q8c)" \
    sh -c "cmake -S '$src/tests/install/subdir' -B '$tmp/subdir' -DQ8C_SOURCE_DIR='$src' \
           >/dev/null && cmake --build '$tmp/subdir' -j2 >/dev/null"
  check "consumer_jit (add_subdirectory) gives the same bits" \
    sh -c "'$tmp/subdir/consumer_jit' '$src/examples/mlp/mlp.ir' '$src/examples/mlp/calib.npy' 4 \
           | cmp - '$tmp/jit_cm.txt'"
else
  echo "skipped: add_subdirectory consumer (set Q8_TEST_SUBDIR=1; it rebuilds q8c)"
fi
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
