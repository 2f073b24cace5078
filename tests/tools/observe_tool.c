/* observe_tool.c: run one calibration observer over an .npy file, for the
 * numpy cross-check in tests/py/test_observers.py.
 *
 *   observe_tool METHOD[:P] FILE.npy [--batch N] [--momentum M] [--bins B]
 *                [--levels L]
 *
 * METHOD is minmax, ma-minmax, percentile:P, entropy or mse. The f32 (or f64)
 * array is streamed along its first axis N rows at a time (default 1), once
 * per pass the method needs, exactly as the calibration pass feeds batches,
 * so that the test can check both the arithmetic and that batching does not
 * change histogram results. Prints `lo hi` (%.9g) on stdout and the
 * observer's note, if any, as `note: ...` on stderr. Exit status: 0 with a
 * range, 3 when there was no finite value (`0 0` is printed), 1 on bad usage
 * or an unreadable file. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "frontend/frontend.h"
#include "passes/passes.h"

static int usage(void) {
  fprintf(stderr, "usage: observe_tool METHOD[:P] FILE.npy [--batch N] [--momentum M] "
                  "[--bins B] [--levels L]\n"
                  "  METHOD: minmax, ma-minmax, percentile:P, entropy, mse\n");
  return 1;
}

static bool parse_method(const char *s, PassCalibConfig *cfg) {
  if (strcmp(s, "minmax") == 0)
    cfg->method = PASS_CALIB_MINMAX;
  else if (strcmp(s, "ma-minmax") == 0)
    cfg->method = PASS_CALIB_MA_MINMAX;
  else if (strcmp(s, "entropy") == 0)
    cfg->method = PASS_CALIB_ENTROPY;
  else if (strcmp(s, "mse") == 0)
    cfg->method = PASS_CALIB_MSE;
  else if (strncmp(s, "percentile:", 11) == 0) {
    char *end;
    cfg->method = PASS_CALIB_PERCENTILE;
    cfg->percentile = strtod(s + 11, &end);
    return end != s + 11 && !*end;
  } else
    return false;
  return true;
}

/* Stream the whole file through the observer once, `batch` rows at a time. */
static bool feed(PassObserver *o, const char *path, int64_t batch) {
  char err[512];
  FeNpyReader r;
  if (!fe_npy_open(&r, path, err, sizeof err)) {
    fprintf(stderr, "observe_tool: %s\n", err);
    return false;
  }
  if (r.type.dtype != IR_F32) {
    fprintf(stderr, "observe_tool: %s: need f4 or f8 data, not %s\n", path,
            ir_dtype_name(r.type.dtype));
    fe_npy_close(&r);
    return false;
  }
  int64_t row = 1;
  for (int i = 1; i < r.type.rank; i++)
    row *= r.type.dims[i];
  float *buf = malloc((size_t)(batch * row > 0 ? batch * row : 1) * sizeof *buf);
  bool ok = buf != NULL;
  int64_t got;
  while (ok && (got = fe_npy_read_rows(&r, buf, batch, err, sizeof err)) != 0) {
    if (got < 0) {
      fprintf(stderr, "observe_tool: %s: %s\n", path, err);
      ok = false;
    } else {
      pass_observer_update(o, buf, got * row);
    }
  }
  free(buf);
  fe_npy_close(&r);
  return ok;
}

int main(int argc, char **argv) {
  if (argc < 3)
    return usage();
  PassCalibConfig cfg = {.momentum = 0.01, .percentile = 99.99, .bins = 2048, .levels = 256};
  if (!parse_method(argv[1], &cfg))
    return usage();
  const char *path = argv[2];
  int64_t batch = 1;
  for (int i = 3; i < argc; i++) {
    if (i + 1 >= argc)
      return usage();
    const char *opt = argv[i], *val = argv[++i];
    if (strcmp(opt, "--batch") == 0)
      batch = strtoll(val, NULL, 10);
    else if (strcmp(opt, "--momentum") == 0)
      cfg.momentum = strtod(val, NULL);
    else if (strcmp(opt, "--bins") == 0)
      cfg.bins = atoi(val);
    else if (strcmp(opt, "--levels") == 0)
      cfg.levels = atoi(val);
    else
      return usage();
  }
  if (batch < 1)
    return usage();

  PassObserver *o = pass_observer_new(&cfg);
  if (!o) {
    fprintf(stderr, "observe_tool: out of memory\n");
    return 1;
  }
  for (int pass = 0; pass < pass_observer_passes(o); pass++) {
    if (pass > 0)
      pass_observer_next_pass(o);
    if (!feed(o, path, batch)) {
      pass_observer_free(o);
      return 1;
    }
  }
  float lo, hi;
  char note[256];
  bool ok = pass_observer_range(o, &lo, &hi, note, sizeof note);
  pass_observer_free(o);
  printf("%.9g %.9g\n", lo, hi);
  if (note[0])
    fprintf(stderr, "note: %s\n", note);
  return ok ? 0 : 3;
}
