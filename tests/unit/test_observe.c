/* test_observe.c: the calibration observers (passes/observe.c).
 *
 * Degenerate inputs first (constant, zeros, a single value, nothing at all,
 * NaN and Inf), checked for every method, since the calibration pass must get
 * a usable range and an honest note whatever the activations look like. Then
 * the arithmetic that can be worked out by hand: ma-minmax's moving averages
 * and a percentile over a ten-bin histogram, and the mse search against a
 * brute-force search written here in real units. Then behaviour: percentile
 * and entropy clip a far outlier that minmax keeps, mse clips it only when
 * the quantization grid is coarse enough for clipping to pay, and every
 * method except ma-minmax gives bit-identical ranges whatever the batching.
 * The numpy cross-check of every method is tests/py/test_observers.py. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "passes/passes.h"

static const PassCalibMethod ALL[] = {PASS_CALIB_MINMAX, PASS_CALIB_MA_MINMAX,
                                      PASS_CALIB_PERCENTILE, PASS_CALIB_ENTROPY,
                                      PASS_CALIB_MSE};
enum { NALL = sizeof ALL / sizeof ALL[0] };

static PassCalibConfig config(PassCalibMethod m) {
  return (PassCalibConfig){
      .method = m, .momentum = 0.01, .percentile = 99.99, .bins = 2048, .levels = 256};
}

typedef struct {
  bool ok;
  float lo, hi;
  char note[256];
} Result;

/* Run every pass of `cfg` over x[0..n), cutting it into batches whose sizes
 * cycle through `sizes` (one batch of n when sizes is NULL). */
static Result observe_batched(PassCalibConfig cfg, const float *x, int64_t n,
                              const int64_t *sizes, int nsizes) {
  PassObserver *o = pass_observer_new(&cfg);
  assert_non_null(o);
  for (int pass = 0; pass < pass_observer_passes(o); pass++) {
    if (pass > 0)
      pass_observer_next_pass(o);
    int64_t at = 0;
    for (int b = 0; at < n; b++) {
      int64_t len = sizes ? sizes[b % nsizes] : n;
      if (len > n - at)
        len = n - at;
      pass_observer_update(o, x + at, len);
      at += len;
    }
  }
  Result r;
  r.ok = pass_observer_range(o, &r.lo, &r.hi, r.note, sizeof r.note);
  pass_observer_free(o);
  return r;
}

static Result observe(PassCalibConfig cfg, const float *x, int64_t n) {
  return observe_batched(cfg, x, n, NULL, 0);
}

/* ---- deterministic test data ---- */

/* xorshift64*: the same numbers on every platform. */
static double uniform01(uint64_t *state) {
  *state ^= *state >> 12;
  *state ^= *state << 25;
  *state ^= *state >> 27;
  return (double)((*state * 2685821657736338717ull) >> 11) / 9007199254740992.0;
}

static float *gaussian(int64_t n, uint64_t seed) {
  float *x = malloc((size_t)n * sizeof *x);
  assert_non_null(x);
  uint64_t s = seed;
  for (int64_t i = 0; i < n; i++) {
    double u1 = uniform01(&s), u2 = uniform01(&s);
    x[i] = (float)(sqrt(-2.0 * log(1.0 - u1)) * cos(6.283185307179586 * u2));
  }
  return x;
}

/* ---- degenerate inputs ---- */

static void test_passes(void **state) {
  (void)state;
  for (int i = 0; i < NALL; i++) {
    PassCalibConfig c = config(ALL[i]);
    PassObserver *o = pass_observer_new(&c);
    assert_non_null(o);
    bool hist = ALL[i] != PASS_CALIB_MINMAX && ALL[i] != PASS_CALIB_MA_MINMAX;
    assert_int_equal(pass_observer_passes(o), hist ? 2 : 1);
    pass_observer_free(o);
  }
}

static void test_constant(void **state) {
  (void)state;
  float x[100];
  for (int i = 0; i < 100; i++)
    x[i] = 0.5f;
  for (int i = 0; i < NALL; i++) {
    Result r = observe(config(ALL[i]), x, 100);
    assert_true(r.ok);
    assert_true(r.lo == 0.5f && r.hi == 0.5f);
    assert_string_equal(r.note, "all values equal 0.5");
  }
}

static void test_all_zeros(void **state) {
  (void)state;
  float x[37] = {0};
  for (int i = 0; i < NALL; i++) {
    Result r = observe(config(ALL[i]), x, 37);
    assert_true(r.ok);
    assert_true(r.lo == 0 && r.hi == 0);
    assert_string_equal(r.note, "all values equal 0");
  }
}

static void test_single_value(void **state) {
  (void)state;
  float x[1] = {-3.25f};
  for (int i = 0; i < NALL; i++) {
    Result r = observe(config(ALL[i]), x, 1);
    assert_true(r.ok);
    assert_true(r.lo == -3.25f && r.hi == -3.25f);
    assert_string_equal(r.note, "all values equal -3.25");
  }
}

static void test_empty(void **state) {
  (void)state;
  for (int i = 0; i < NALL; i++) {
    Result r = observe(config(ALL[i]), NULL, 0);
    assert_false(r.ok);
    assert_true(r.lo == 0 && r.hi == 0);
    assert_string_equal(r.note, "no finite values (0 NaN, 0 Inf)");
  }
}

static void test_only_nonfinite(void **state) {
  (void)state;
  float x[] = {NAN, INFINITY, -INFINITY};
  for (int i = 0; i < NALL; i++) {
    Result r = observe(config(ALL[i]), x, 3);
    assert_false(r.ok);
    assert_true(r.lo == 0 && r.hi == 0);
    assert_string_equal(r.note, "no finite values (1 NaN, 2 Inf)");
  }
}

static void test_nan_inf_ignored(void **state) {
  (void)state;
  float x[] = {NAN, 1, NAN, -2, INFINITY, 3, NAN};
  for (int i = 0; i < NALL; i++) {
    Result r = observe(config(ALL[i]), x, 7);
    assert_true(r.ok);
    assert_string_equal(r.note, "3 NaN and 1 Inf values ignored");
    assert_true(r.lo >= -2 && r.hi <= 3 && r.lo < r.hi);
    if (ALL[i] == PASS_CALIB_MINMAX)
      assert_true(r.lo == -2 && r.hi == 3);
  }
  /* One of each kind, alone, and combined with a degenerate range. */
  float y[] = {1, NAN, 1};
  Result r = observe(config(PASS_CALIB_MSE), y, 3);
  assert_true(r.ok && r.lo == 1 && r.hi == 1);
  assert_string_equal(r.note, "all values equal 1; 1 NaN value ignored");
  float z[] = {-1, -INFINITY, 2};
  r = observe(config(PASS_CALIB_MINMAX), z, 3);
  assert_string_equal(r.note, "1 Inf value ignored");
}

/* A caller that skips the second pass gets min and max and a note, not a
 * division by an empty histogram. */
static void test_missing_second_pass(void **state) {
  (void)state;
  PassCalibConfig c = config(PASS_CALIB_PERCENTILE);
  PassObserver *o = pass_observer_new(&c);
  assert_non_null(o);
  float x[] = {-1, 4, 2};
  pass_observer_update(o, x, 3);
  float lo, hi;
  char note[128];
  assert_true(pass_observer_range(o, &lo, &hi, note, sizeof note));
  assert_true(lo == -1 && hi == 4);
  assert_string_equal(note, "the histogram pass did not run; using min and max");
  /* A NULL note is allowed. */
  assert_true(pass_observer_range(o, &lo, &hi, NULL, 0));
  pass_observer_free(o);
}

/* ---- arithmetic by hand ---- */

static void test_ma_minmax_by_hand(void **state) {
  (void)state;
  PassCalibConfig c = config(PASS_CALIB_MA_MINMAX);
  c.momentum = 0.5;
  PassObserver *o = pass_observer_new(&c);
  assert_non_null(o);
  float lo, hi;
  char note[128];

  float b1[] = {1, 2, 3};  /* the first batch sets min 1, max 3 */
  pass_observer_update(o, b1, 3);
  assert_true(pass_observer_range(o, &lo, &hi, note, sizeof note));
  assert_true(lo == 1 && hi == 3);

  float b2[] = {5, 0};     /* min 1 + 0.5 (0 - 1) = 0.5, max 3 + 0.5 (5 - 3) = 4 */
  pass_observer_update(o, b2, 2);
  assert_true(pass_observer_range(o, &lo, &hi, note, sizeof note));
  assert_true(lo == 0.5f && hi == 4);

  float b3[] = {NAN, INFINITY};  /* no finite value: skipped, but counted */
  pass_observer_update(o, b3, 2);
  pass_observer_update(o, b3, 0);
  assert_true(pass_observer_range(o, &lo, &hi, note, sizeof note));
  assert_true(lo == 0.5f && hi == 4);
  assert_string_equal(note, "1 NaN and 1 Inf values ignored");

  float b4[] = {2, 2};     /* min 0.5 + 0.5 (2 - 0.5) = 1.25, max 4 + 0.5 (2 - 4) = 3 */
  pass_observer_update(o, b4, 2);
  assert_true(pass_observer_range(o, &lo, &hi, note, sizeof note));
  assert_true(lo == 1.25f && hi == 3);
  pass_observer_free(o);

  /* The default momentum 0.01: min 0 + 0.01 (-10 - 0) = -0.1. */
  c = config(PASS_CALIB_MA_MINMAX);
  o = pass_observer_new(&c);
  float d1[] = {0, 1}, d2[] = {-10, 1};
  pass_observer_update(o, d1, 2);
  pass_observer_update(o, d2, 2);
  assert_true(pass_observer_range(o, &lo, &hi, note, sizeof note));
  assert_float_equal(lo, -0.1, 1e-7);
  assert_true(hi == 1);
  pass_observer_free(o);
}

/* 0, 1, ..., 99 in 10 bins of width 9.9: bin k holds 10k .. 10k+9, ten
 * values each. 90% of 100 is reached from below at bin 8 (hi = edge 9 =
 * 89.1) and from above at bin 1 (lo = edge 1 = 9.9). */
static void test_percentile_by_hand(void **state) {
  (void)state;
  float x[100];
  for (int i = 0; i < 100; i++)
    x[i] = (float)i;
  PassCalibConfig c = config(PASS_CALIB_PERCENTILE);
  c.bins = 10;
  c.percentile = 90;
  Result r = observe(c, x, 100);
  assert_true(r.ok);
  assert_float_equal(r.lo, 9.9, 1e-5);
  assert_float_equal(r.hi, 89.1, 1e-5);
  assert_string_equal(r.note, "");
  /* Just over 90% needs one more bin on each side. */
  c.percentile = 90.5;
  r = observe(c, x, 100);
  assert_float_equal(r.lo, 0, 1e-5);
  assert_float_equal(r.hi, 99, 1e-5);
  /* 100 is the whole histogram: exactly min and max. */
  c.percentile = 100;
  c.bins = 2048;
  r = observe(c, x, 100);
  assert_true(r.lo == 0 && r.hi == 99);
}

/* mse against a direct search in real units over a 16-bin histogram of
 * width 1 ([0, 16]) whose values sit at bin centres, with 4 levels so that
 * the optimum is well inside. */
static void test_mse_brute_force(void **state) {
  (void)state;
  const int counts[16] = {1, 50, 200, 400, 200, 50, 5, 1, 0, 0, 0, 0, 0, 0, 0, 3};
  float x[1000];
  int n = 0;
  x[n++] = 0;   /* min, in bin 0 */
  x[n++] = 16;  /* max, in bin 15 */
  int hist[16];
  for (int k = 0; k < 16; k++) {
    hist[k] = counts[k] + (k == 0 || k == 15);
    for (int j = 0; j < counts[k]; j++)
      x[n++] = (float)k + 0.5f;
  }
  const int levels = 4;
  double best = INFINITY;
  int bs = -1, bt = -1;
  for (int s = 0; s < 16; s++) {
    for (int t = 16; t > s; t--) {
      double d = (double)(t - s) / (levels - 1), e = 0;
      for (int k = 0; k < 16; k++) {
        /* Every value stands at its bin's centre, as the method assumes. */
        double centre = k + 0.5;
        if (centre < s)
          e += hist[k] * (s - centre) * (s - centre);
        else if (centre > t)
          e += hist[k] * (centre - t) * (centre - t);
        else
          e += hist[k] * d * d / 12;
      }
      if (e < best) {
        best = e;
        bs = s;
        bt = t;
      }
    }
  }
  assert_true(bs > 0 || bt < 16);  /* the data was chosen so that clipping pays */
  PassCalibConfig c = config(PASS_CALIB_MSE);
  c.bins = 16;
  c.levels = levels;
  Result r = observe(c, x, n);
  assert_true(r.ok);
  assert_true(r.lo == (float)bs && r.hi == (float)bt);
}

/* ---- behaviour ---- */

enum { NOUT = 100000 };

static void test_outlier_clipping(void **state) {
  (void)state;
  float *x = gaussian(NOUT + 1, 42);
  x[NOUT / 2] = 1000;  /* one far outlier among 100000 N(0, 1) values */

  Result r = observe(config(PASS_CALIB_MINMAX), x, NOUT + 1);
  assert_true(r.hi == 1000);

  PassCalibConfig c = config(PASS_CALIB_PERCENTILE);
  r = observe(c, x, NOUT + 1);
  assert_true(r.hi > 2 && r.hi < 10);
  assert_true(r.lo < -2 && r.lo > -10);

  /* Entropy cannot go below 128 of its 2048 bins over [0, 1000], i.e.
   * 128.5 * 1000 / 2048 = 62.7 (it settles at 255 bins, the last count
   * before Q starts merging the Gaussian's bins in pairs): far below the
   * outlier all the same. */
  r = observe(config(PASS_CALIB_ENTROPY), x, NOUT + 1);
  assert_true(r.hi > 2 && r.hi < 200);
  assert_true(r.lo < -2);

  /* mse keeps most of one outlier in 100001 values at 256 levels (clipping
   * it to ~4 costs ~1000^2 = 1e6, keeping it (1004 / 255)^2 / 12 * 1e5 =
   * 1.3e5), and clips it at 16 levels, where keeping it would cost
   * (1004 / 15)^2 / 12 * 1e5 = 3.7e7; it then gives up a little of the
   * Gaussian to come nearer the outlier (the range is about [-1.5, 26]). */
  c = config(PASS_CALIB_MSE);
  r = observe(c, x, NOUT + 1);
  assert_true(r.hi > 500);
  c.levels = 16;
  r = observe(c, x, NOUT + 1);
  assert_true(r.hi > 2 && r.hi < 100);
  assert_true(r.lo < 0);
  free(x);
}

/* Uniform data has nothing to clip: entropy keeps (nearly) all of it. */
static void test_entropy_uniform(void **state) {
  (void)state;
  float *x = malloc(NOUT * sizeof *x);
  assert_non_null(x);
  uint64_t s = 7;
  for (int i = 0; i < NOUT; i++)
    x[i] = (float)uniform01(&s);
  Result r = observe(config(PASS_CALIB_ENTROPY), x, NOUT);
  assert_true(r.ok);
  assert_true(r.hi > 0.9f);
  assert_true(r.lo == r.lo && r.lo < 0.001f);
  free(x);
}

static void test_streaming(void **state) {
  (void)state;
  enum { N = 10007 };
  float *x = gaussian(N, 3);
  x[17] = 40;
  x[5000] = -25;
  x[9000] = NAN;
  const int64_t sizes[] = {1, 7, 1000, 333, 2};
  for (int i = 0; i < NALL; i++) {
    if (ALL[i] == PASS_CALIB_MA_MINMAX)
      continue;  /* depends on the batching by definition */
    PassCalibConfig c = config(ALL[i]);
    Result one = observe(c, x, N);
    Result many = observe_batched(c, x, N, sizes, 5);
    Result singles = observe_batched(c, x, N, sizes, 1);
    assert_true(one.ok && many.ok && singles.ok);
    assert_true(one.lo == many.lo && one.hi == many.hi);
    assert_true(one.lo == singles.lo && one.hi == singles.hi);
    assert_string_equal(one.note, "1 NaN value ignored");
    assert_string_equal(many.note, one.note);
  }
  free(x);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_passes),
      cmocka_unit_test(test_constant),
      cmocka_unit_test(test_all_zeros),
      cmocka_unit_test(test_single_value),
      cmocka_unit_test(test_empty),
      cmocka_unit_test(test_only_nonfinite),
      cmocka_unit_test(test_nan_inf_ignored),
      cmocka_unit_test(test_missing_second_pass),
      cmocka_unit_test(test_ma_minmax_by_hand),
      cmocka_unit_test(test_percentile_by_hand),
      cmocka_unit_test(test_mse_brute_force),
      cmocka_unit_test(test_outlier_clipping),
      cmocka_unit_test(test_entropy_uniform),
      cmocka_unit_test(test_streaming),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
