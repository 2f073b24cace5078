/* fuzz.h: what the fuzz targets share (fuzz/common.c).
 *
 * Each fuzz_NAME.c defines LLVMFuzzerTestOneInput (and LLVMFuzzerInitialize
 * when it needs setup) and is linked two ways: with libFuzzer (-DQ8_FUZZ=ON,
 * fuzz/build.sh) to search for crashes, and with replay.c into replay_NAME,
 * which ctest runs over fuzz/corpus/NAME and fuzz/regress/NAME so that every
 * seed and every input that once crashed stays a test in every build.
 *
 * A target calls fuzz_check() for the properties it asserts beyond "no
 * crash": on failure it prints the message and aborts, which both libFuzzer
 * and the replay driver report as a failure. */
#ifndef Q8_FUZZ_H
#define Q8_FUZZ_H

#include <stddef.h>
#include <stdint.h>

#include "frontend/frontend.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Abort with `msg` when `ok` is false. */
#define fuzz_check(ok, ...) ((ok) ? (void)0 : fuzz_fail(__FILE__, __LINE__, __VA_ARGS__))
_Noreturn void fuzz_fail(const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Common setup: a small tensor-size cap (Q8_MAX_TENSOR_BYTES, 64 MiB unless
 * already set) so that no input can make the library allocate more than a
 * fuzzer's memory limit allows, and a private temporary directory, removed
 * at exit. Returns the directory. Idempotent. */
const char *fuzz_setup(void);

/* The input as a NUL-terminated malloc'd string (NUL bytes inside kept). */
char *fuzz_cstr(const uint8_t *data, size_t size);

/* Write `size` bytes to the file `path`; aborts on failure (the harness's
 * own temporary files must work). */
void fuzz_write_file(const char *path, const void *data, size_t size);

/* Does a diagnostic report a bug in q8c ("error: internal error: ...")
 * rather than a problem with the input? */
bool fuzz_internal_error(const char *msg);

/* The directory of committed files the targets read (fuzz/data). */
const char *fuzz_data_dir(void);

#endif
