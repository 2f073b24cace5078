/* test_wformat.c: the weight-format table and its functions (ir/wformat.c)
 * and qlinear_grp's reference op, called directly:
 *
 * - parsing: every row, group sizes, scale types, and the exact messages;
 * - bits per weight from the table;
 * - ir_round_scale_f16 against GCC's _Float16 conversion (round to nearest
 *   even) over a sweep of values, and its clamping to the normal range;
 * - ir_quantize_groups: worked cases (symmetric, asymmetric with its zero
 *   point, an all-zero group);
 * - q8_ref_qlinear_grp against the definition written out the plainest way
 *   (int64 sums, the f32 steps one by one), with and without zero points
 *   and bias. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "ir/refops.h"
#include "ir/wformat.h"

static void test_parse(void **state) {
  (void)state;
  IrWSpec s;
  char err[400];
  assert_true(ir_wspec_parse("s8-per-channel", -1, &s, err, sizeof err));
  assert_int_equal(s.id, IR_WF_S8_CHANNEL);
  assert_true(ir_wspec_parse("s4-per-group:32", -1, &s, err, sizeof err));
  assert_int_equal(s.id, IR_WF_S4_GROUP);
  assert_int_equal(s.group, 32);
  assert_int_equal(s.scale_bits, 16);
  assert_true(ir_wspec_parse("u4-per-group:128:f32", -1, &s, err, sizeof err));
  assert_int_equal(s.id, IR_WF_U4_GROUP);
  assert_int_equal(s.group, 128);
  assert_int_equal(s.scale_bits, 32);
  assert_true(ir_wspec_parse("s8-per-group:64:f16,rest", 19, &s, err, sizeof err));
  assert_int_equal(s.id, IR_WF_S8_GROUP);
  assert_int_equal(s.group, 64);
  assert_int_equal(s.scale_bits, 16);
  char buf[64];
  ir_wspec_str(&s, buf, sizeof buf);
  assert_string_equal(buf, "s8-per-group:64");

  assert_false(ir_wspec_parse("s4-per-group:16", -1, &s, err, sizeof err));
  assert_string_equal(err, "weight format 's4-per-group:16' needs a group size: "
                           "s4-per-group:32, :64 or :128");
  assert_false(ir_wspec_parse("s4-per-group:32x", -1, &s, err, sizeof err));
  assert_string_equal(err, "weight format 's4-per-group:32x' needs a group size: "
                           "s4-per-group:32, :64 or :128");
  assert_false(ir_wspec_parse("s8-per-tensor:32", -1, &s, err, sizeof err));
  assert_string_equal(err, "weight format 's8-per-tensor:32' takes no group size");
  assert_false(ir_wspec_parse("int4", -1, &s, err, sizeof err));
  assert_string_equal(err, "unknown weight format 'int4' (s8-per-channel, s8-per-tensor, "
                           "s4-per-group:G, u4-per-group:G, s8-per-group:G)");
}

static void test_bits(void **state) {
  (void)state;
  IrWSpec s4 = {IR_WF_S4_GROUP, 32, 16}, u4 = {IR_WF_U4_GROUP, 32, 16};
  IrWSpec s4f = {IR_WF_S4_GROUP, 128, 32}, ch = {IR_WF_S8_CHANNEL, 0, 32};
  assert_true(ir_wspec_bits_per_weight(&s4, 4096) == 4.5);
  assert_true(ir_wspec_bits_per_weight(&u4, 4096) == 4.625);
  assert_true(ir_wspec_bits_per_weight(&s4f, 4096) == 4.25);
  assert_true(ir_wspec_bits_per_weight(&ch, 4096) == 8 + 32.0 / 4096);
}

static void test_f16(void **state) {
  (void)state;
#if defined(__FLT16_MAX__)
  /* Every 37th f32 bit pattern between 2^-14 and 65504. */
  uint32_t lo = 0x38800000u, hi = 0x477FE000u;
  for (uint32_t u = lo; u <= hi; u += 37) {
    float v;
    memcpy(&v, &u, 4);
    float want = (float)(_Float16)v;
    assert_true(ir_round_scale_f16(v) == want);
  }
#endif
  assert_true(ir_round_scale_f16(1e-9f) == 6.103515625e-05f);
  assert_true(ir_round_scale_f16(1e9f) == 65504.0f);
  assert_true(ir_round_scale_f16(65535.0f) == 65504.0f); /* clamped first */
  assert_true(ir_round_scale_f16(1.0f + 1.0f / 2048) == 1.0f);        /* tie: to even */
  assert_true(ir_round_scale_f16(1.0f + 3.0f / 2048) == 1.0f + 2.0f / 1024);
}

static void test_quantize_groups(void **state) {
  (void)state;
  /* Two groups of 4: symmetric s4 (f32 scales): max 7 gives scale 1. */
  float w[8] = {7, -3.5f, 0.4f, -7, 0, 0, 0, 0};
  int8_t q[8], z[2];
  float s[2];
  IrWSpec sym = {IR_WF_S4_GROUP, 4, 32};
  assert_int_equal(ir_quantize_groups(w, 1, 8, &sym, q, s, NULL), 1);
  assert_true(s[0] == 1.0f && s[1] == 1.0f);
  int8_t want[8] = {7, -4, 0, -7, 0, 0, 0, 0}; /* rint(-3.5) = -4 */
  assert_memory_equal(q, want, 8);
  /* Asymmetric u4: [-1, 2] (widened to include 0): scale 3 / 15 = 0.2,
   * zero point rint(1 / 0.2) = 5. */
  float v[4] = {-1, 2, 0.5f, 0.09f};
  IrWSpec asym = {IR_WF_U4_GROUP, 4, 32};
  assert_int_equal(ir_quantize_groups(v, 1, 4, &asym, q, s, z), 0);
  assert_true(s[0] == (float)(3.0 / 15));
  assert_int_equal(z[0], 5);
  assert_int_equal(q[0], 0);
  assert_int_equal(q[1], 15);
  assert_int_equal(q[2], (int)rintf(0.5f / s[0]) + 5);
  assert_int_equal(q[3], (int)rintf(0.09f / s[0]) + 5);
}

static uint32_t rng_next(uint32_t *s) {
  *s = *s * 1664525u + 1013904223u;
  return *s >> 8;
}

/* The definition, plainly: docs/quantization.md, "Weight formats". */
static void plain(const float *x, const int8_t *w, const float *ws, const int8_t *wz,
                  const float *b, float *y, int64_t m, int64_t k, int64_t n, int64_t g) {
  for (int64_t i = 0; i < m; i++) {
    const float *xi = x + i * k;
    float lo = 0, hi = 0;
    for (int64_t l = 0; l < k; l++)
      if (isfinite(xi[l])) {
        lo = fminf(lo, xi[l]);
        hi = fmaxf(hi, xi[l]);
      }
    float sx = (float)(((double)hi - (double)lo) / 255.0);
    if (!(sx >= 1e-30))
      sx = 1.0f;
    int32_t zx = (int32_t)fmin(fmax(rint(-(double)lo / (double)sx), 0), 255);
    for (int64_t j = 0; j < n; j++) {
      float acc_y = 0;
      for (int64_t gi = 0; gi < k / g; gi++) {
        int64_t acc = 0;
        int32_t zw = wz ? wz[j * (k / g) + gi] : 0;
        for (int64_t l = gi * g; l < (gi + 1) * g; l++) {
          int32_t xq = q8_ref_quantize_value(xi[l], sx, zx, 0, 255);
          acc += (int64_t)(xq - zx) * (w[j * k + l] - zw);
        }
        float t = sx * ws[j * (k / g) + gi];
        t = t * (float)acc;
        acc_y = gi == 0 ? t : acc_y + t;
      }
      y[i * n + j] = b ? acc_y + b[j] : acc_y;
    }
  }
}

static void test_ref_grp(void **state) {
  (void)state;
  uint32_t r = 5;
  enum { M = 3, K = 96, N = 7, G = 32 };
  float x[M * K], ws[N * (K / G)], b[N], y[M * N], want[M * N];
  int8_t w[N * K], wz[N * (K / G)];
  for (int pass = 0; pass < 4; pass++) {
    bool zero = pass & 1, bias = pass & 2;
    for (int i = 0; i < M * K; i++)
      x[i] = (float)((int)(rng_next(&r) % 2001) - 1000) / 137.0f;
    x[5] = NAN;
    x[K + 7] = INFINITY;
    for (int i = 0; i < N * K; i++)
      w[i] = (int8_t)(zero ? (int)(rng_next(&r) % 16) : (int)(rng_next(&r) % 15) - 7);
    for (int i = 0; i < N * (K / G); i++) {
      ws[i] = (float)(1 + rng_next(&r) % 1000) / 4096.0f;
      wz[i] = (int8_t)(rng_next(&r) % 16);
    }
    for (int i = 0; i < N; i++)
      b[i] = (float)((int)(rng_next(&r) % 100) - 50) / 10.0f;
    q8_ref_qlinear_grp(x, w, ws, zero ? wz : NULL, bias ? b : NULL, y, M, K, N, G);
    plain(x, w, ws, zero ? wz : NULL, bias ? b : NULL, want, M, K, N, G);
    assert_memory_equal(y, want, sizeof y);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_parse),
      cmocka_unit_test(test_bits),
      cmocka_unit_test(test_f16),
      cmocka_unit_test(test_quantize_groups),
      cmocka_unit_test(test_ref_grp),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
