/* test_fmath.c: the float32 approximations of ir/fmath.h (exp, 1 + erf,
 * tanh and the activations built on them) against libm in double, over a
 * sweep of every 4099th float (about a million, all signs and exponents):
 * each stays within the worst error docs/float.md states. And the exact
 * points: what infinities, NaN, zero and the clamps give, and the reduction
 * order of the float ops (16 interleaved partial sums, the halving steps,
 * then the tail), seen through q8_ref_rmsnorm on a row where the order
 * decides the result. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <string.h>

#include "ir/fmath.h"
#include "ir/refops.h"

#define FLT_MAX_D 3.4028234663852886e38
#define FLT_MAX_F 3.40282347e38f

/* The spacing of floats at |r| (a normal float), in double. */
static double ulp_at(double r) {
  int e;
  frexp(fabs(r), &e);
  return ldexp(1.0, e - 24);
}

typedef struct {
  double ulps, abs, tiny; /* worst: ulps where the reference is a normal float,
                           * abs anywhere finite, tiny abs below FLT_MIN */
} Worst;

static void track(Worst *w, float y, double ref) {
  if (isnan(ref) || isinf(ref) || fabs(ref) > FLT_MAX_D)
    return;
  double d = fabs((double)y - ref);
  if (d > w->abs)
    w->abs = d;
  if (fabs(ref) < 1.17549435e-38 && d > w->tiny)
    w->tiny = d;
  if (fabs(ref) >= 1.17549435e-38 && d / ulp_at(ref) > w->ulps)
    w->ulps = d / ulp_at(ref);
}

static void test_error_bounds(void **state) {
  (void)state;
  Worst ex = {0}, th = {0}, er = {0}, sg = {0}, si = {0}, gt = {0}, ge = {0};
  const double c = sqrt(2.0 / 3.14159265358979323846);
  for (uint64_t u = 0; u <= 0xffffffffull; u += 4099) {
    float x = q8f_bits((uint32_t)u);
    if (isnan(x))
      continue;
    double d = x;
    track(&ex, q8f_exp(x), exp(d));
    track(&th, q8f_tanh(x), tanh(d));
    if (d > -4.0)
      track(&er, q8f_erf1p(x), erfc(-d));
    track(&sg, q8f_sigmoid(x), 1.0 / (1.0 + exp(-d)));
    /* Below these, exp(-x) overflows and the result is -0 (docs/float.md). */
    if (d > -88.0)
      track(&si, q8f_silu(x), d / (1.0 + exp(-d)));
    if (d > -10.0)
      track(&gt, q8f_gelu_tanh(x), d / (1.0 + exp(-2.0 * c * (d + 0.044715 * d * d * d))));
    if (d > -5.5)
      track(&ge, q8f_gelu(x), 0.5 * d * erfc(-d / sqrt(2.0)));
  }
  /* docs/float.md's figures (a denser sweep), rounded up. */
  assert_true(ex.ulps <= 1.0);
  assert_true(ex.tiny <= ldexp(1.0, -149)); /* in the denormal range: one rounding */
  assert_true(th.ulps <= 1.5);
  assert_true(er.ulps <= 64.0 && er.abs <= 2.0e-7);
  assert_true(sg.ulps <= 2.5);
  assert_true(si.ulps <= 2.5);
  assert_true(gt.ulps <= 200.0 && gt.abs <= 6.0e-7);
  assert_true(ge.ulps <= 80.0 && ge.abs <= 4.0e-7);
}

static uint32_t bits(float f) {
  uint32_t u;
  memcpy(&u, &f, sizeof u);
  return u;
}

static void test_special_values(void **state) {
  (void)state;
  float nan = q8f_bits(0x7fc01234u), inf = INFINITY;
  assert_true(q8f_exp(0.0f) == 1.0f);
  assert_true(q8f_exp(-inf) == 0.0f && q8f_exp(-104.0f) == 0.0f);
  assert_true(isinf(q8f_exp(inf)) && isinf(q8f_exp(89.0f)));
  assert_true(q8f_exp(88.7f) < FLT_MAX_F && q8f_exp(88.7f) > 3.3e38f);
  assert_true(q8f_exp(-100.0f) > 0.0f); /* a denormal, not flushed */
  assert_int_equal(bits(q8f_exp(nan)), 0x7fc01234u);
  assert_int_equal(bits(q8f_tanh(nan)), 0x7fc01234u);
  assert_int_equal(bits(q8f_gelu(nan)), 0x7fc01234u);
  assert_int_equal(bits(q8f_silu(nan)), 0x7fc01234u);
  assert_true(q8f_tanh(inf) == 1.0f && q8f_tanh(-inf) == -1.0f && q8f_tanh(20.0f) == 1.0f);
  /* x + x^3 P: -0 + (+0) is +0 (docs/float.md: libm's tanh keeps the sign). */
  assert_int_equal(bits(q8f_tanh(-0.0f)), 0x00000000u);
  assert_true(q8f_erf1p(inf) == 2.0f && q8f_erf1p(-inf) == 0.0f && q8f_erf1p(0.0f) == 1.0f);
  assert_true(q8f_sigmoid(-inf) == 0.0f && q8f_sigmoid(inf) == 1.0f);
  assert_true(q8f_gelu(inf) == inf && isnan(q8f_gelu(-inf))); /* -inf * 0, as 0.5 x (1 + erf) */
  assert_true(q8f_gelu_tanh(inf) == inf && isnan(q8f_gelu_tanh(-inf)));
  assert_true(q8f_gelu(-6.0f) == 0.0f); /* 1 + erf is 0 below -4 */
}

/* rmsnorm of [4096, 1 x 16] (17 elements), gamma 1, eps 0: the squares sum
 * to 2^24 + 16 in the specified order (2^24 + 1 rounds to 2^24 in the
 * halving step, then 2 + 4 + 8 whole, then the tail's 1 ties to even), but
 * to 2^24 in a plain left-to-right sum. */
static void test_reduction_order(void **state) {
  (void)state;
  float x[17], g[17], y[17];
  for (int i = 0; i < 17; i++) {
    x[i] = i == 0 ? 4096.0f : 1.0f;
    g[i] = 1.0f;
  }
  q8_ref_rmsnorm(x, g, 0.0, y, 1, 17);
  float n = 17.0f, want = 1.0f / sqrtf(16777232.0f / n), plain = 1.0f / sqrtf(16777216.0f / n);
  assert_true(want != plain);
  assert_true(y[1] == want);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_error_bounds),
      cmocka_unit_test(test_special_values),
      cmocka_unit_test(test_reduction_order),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
