/* common.c: setup and small helpers every fuzz target shares (fuzz.h). */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fuzz.h"

#ifndef Q8_FUZZ_DATA
#error "build with -DQ8_FUZZ_DATA=\"<repository>/fuzz/data\" (fuzz/CMakeLists.txt does)"
#endif

_Noreturn void fuzz_fail(const char *file, int line, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "%s:%d: fuzz check failed: ", file, line);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
  abort();
}

static char tmpdir[64];

static void remove_tmpdir(void) {
  /* The targets create only plain files directly inside the directory. */
  char cmd[128];
  if (tmpdir[0] && strncmp(tmpdir, "/tmp/q8fuzz-", 12) == 0) {
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0)
      fprintf(stderr, "could not remove %s\n", tmpdir);
  }
}

const char *fuzz_setup(void) {
  if (tmpdir[0])
    return tmpdir;
  setenv("Q8_MAX_TENSOR_BYTES", "64M", 0);
  strcpy(tmpdir, "/tmp/q8fuzz-XXXXXX");
  if (!mkdtemp(tmpdir)) {
    perror("mkdtemp");
    abort();
  }
  atexit(remove_tmpdir);
  return tmpdir;
}

char *fuzz_cstr(const uint8_t *data, size_t size) {
  char *s = malloc(size + 1);
  fuzz_check(s != NULL, "out of memory");
  if (size)
    memcpy(s, data, size);
  s[size] = '\0';
  return s;
}

void fuzz_write_file(const char *path, const void *data, size_t size) {
  FILE *f = fopen(path, "wb");
  fuzz_check(f != NULL, "cannot create %s", path);
  fuzz_check(size == 0 || fwrite(data, 1, size, f) == size, "cannot write %s", path);
  fuzz_check(fclose(f) == 0, "cannot write %s", path);
}

const char *fuzz_data_dir(void) { return Q8_FUZZ_DATA; }

bool fuzz_internal_error(const char *msg) {
  /* "FILE[:LINE:COL]: error: internal error: ..."; the harness's FILE has no
   * ": error: " in it, while names and strings later in the line may. */
  const char *e = strstr(msg, ": error: ");
  return e && strncmp(e + 9, "internal error", 14) == 0;
}
