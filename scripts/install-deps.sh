#!/usr/bin/env bash
# Install what q8c needs to build and test, from Debian 12's own packages:
# a C compiler and CMake, LLVM 19 (C API), cmocka, and Python with numpy
# (tests only); for the AArch64 tests the cross toolchain and qemu-user; for
# fuzzing and the sanitizer build clang 19 and its runtime; for ONNX import
# protobuf-c (its compiler at build time) and onnx.proto, and for its tests
# python3-onnx and python3-torch; help2man and pkg-config for the man page
# and the install test; a comma-decimal locale (de_DE.UTF-8) for the test
# that q8c reads and writes numbers the same under any locale; chromium to
# render the --report=html page in the tests (headless). Run as root, or as a
# user who can sudo.
set -euo pipefail
packages=(gcc libc6-dev make cmake llvm-19-dev libcmocka-dev python3 python3-numpy
          gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user help2man pkg-config locales
          clang-19 libclang-rt-19-dev chromium
          libprotobuf-c-dev protobuf-c-compiler libonnx-dev python3-onnx python3-torch)
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
# The comma-decimal locale the locale test runs under (tests/unit/test_locale.c).
if ! locale -a 2>/dev/null | grep -qi '^de_DE\.utf-\?8$'; then
  $SUDO sed -i 's/^# *\(de_DE\.UTF-8 UTF-8\)/\1/' /etc/locale.gen
  grep -q '^de_DE.UTF-8 UTF-8' /etc/locale.gen || echo 'de_DE.UTF-8 UTF-8' | $SUDO tee -a /etc/locale.gen >/dev/null
  $SUDO locale-gen >/dev/null
fi
