/* test_refops.c: the reference ops of ir/refops.c called directly, on plain
 * arrays, for what the interpreter never asks of them (it always passes dense
 * rows): row strides with padding that holds garbage, transposes of rank 4
 * under every permutation, broadcasting with the shorter operand first, and
 * the integer GEMM checked against a straightforward int64 computation over a
 * sweep of m, k and n with primes and every tail case. Compiled models call
 * these same functions (libq8support.a) with exactly such strides.
 *
 * Expected values are worked out by hand, or computed here in the plainest
 * way from docs/quantization.md (int64 sums, wrapped to int32 at the end). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ir/refops.h"

/* The y_dtype codes (Q8_DTYPE_* in include/q8model.h). */
enum { Y_F32 = 1, Y_I8 = 2, Y_U8 = 3 };

/* A small deterministic generator, so failures reproduce. */
static uint32_t rng_next(uint32_t *s) {
  *s = *s * 1664525u + 1013904223u;
  return *s >> 8;
}

static int32_t rng_int(uint32_t *s, int32_t lo, int32_t hi) {
  return lo + (int32_t)(rng_next(s) % (uint32_t)(hi - lo + 1));
}

static float rng_float(uint32_t *s, float lo, float hi) {
  return lo + (hi - lo) * (float)rng_next(s) / (float)(1u << 24);
}

/* Bit-exact floats: the same bits (so -0.0 differs from +0.0). */
static void check_floats(const float *got, const float *want, int n) {
  for (int i = 0; i < n; i++)
    if (memcmp(&got[i], &want[i], sizeof(float)) != 0)
      fail_msg("element %d: got %.9g, want %.9g", i, got[i], want[i]);
}

#define CHECK_F(got, ...)                                                                   \
  check_floats(got, (float[]){__VA_ARGS__}, (int)(sizeof((float[]){__VA_ARGS__}) / sizeof(float)))

/* ---- the shape ops of transformers ---- */

/* softmax_axis with inner = 1 is q8_ref_softmax, bit for bit; over a middle
 * axis it is q8_ref_softmax of the transposed lines. */
static void test_softmax_axis(void **state) {
  (void)state;
  uint32_t s = 3;
  float x[2 * 5 * 3], y[30], want[30], line[5], out[5];
  for (int i = 0; i < 30; i++)
    x[i] = rng_float(&s, -8, 8);
  q8_ref_softmax(x, want, 6, 5);
  q8_ref_softmax_axis(x, y, 6, 5, 1, 0);
  check_floats(y, want, 30);
  q8_ref_softmax_axis(x, y, 2, 5, 3, 0); /* [2, 5, 3] over axis 1 */
  for (int o = 0; o < 2; o++)
    for (int c = 0; c < 3; c++) {
      for (int j = 0; j < 5; j++)
        line[j] = x[o * 15 + j * 3 + c];
      q8_ref_softmax(line, out, 1, 5);
      for (int j = 0; j < 5; j++)
        if (memcmp(&y[o * 15 + j * 3 + c], &out[j], sizeof(float)) != 0)
          fail_msg("[%d, %d, %d]: got %.9g, want %.9g", o, j, c, y[o * 15 + j * 3 + c], out[j]);
    }
}

/* Causal, 2 queries over 4 keys (a past of 2), two heads: row i sees keys
 * 0..i+2 and gives the others exactly 0; the visible part is the softmax of
 * just those keys. */
static void test_softmax_causal(void **state) {
  (void)state;
  const float x[16] = {1, 2, 3, 100, 4, 3, 2, 1, 0, 0, 0, 7, -1, -2, -3, -4};
  float y[16], want[4];
  q8_ref_softmax_axis(x, y, 4, 4, 1, 2);
  for (int r = 0; r < 4; r++) {
    int visible = r % 2 + 3;
    q8_ref_softmax(x + r * 4, want, 1, visible);
    check_floats(y + r * 4, want, visible);
    for (int j = visible; j < 4; j++)
      if (y[r * 4 + j] != 0.0f)
        fail_msg("row %d key %d: %g, want 0", r, j, y[r * 4 + j]);
  }
}

static void test_rmsnorm(void **state) {
  (void)state;
  const float x[4] = {3, -4, 0, 0}, g[2] = {1, 2};
  float y[4];
  q8_ref_rmsnorm(x, g, 0.0, y, 2, 2);
  /* row 0: rms = sqrt(12.5); row 1 all zero with eps 0 gives 0 * inf = NaN */
  CHECK_F(y, (float)(3 / sqrt(12.5)), (float)(-8 / sqrt(12.5)), y[2], y[3]);
  if (!isnan(y[2]))
    fail_msg("0 / sqrt(0) is %g, want NaN", y[2]);
  q8_ref_rmsnorm(x + 2, g, 1.0, y, 1, 2);
  CHECK_F(y, 0, 0);
}

/* Ids are checked first: a bad one returns its position + 1 and writes nothing. */
static void test_gather(void **state) {
  (void)state;
  const float table[6] = {0, 1, 10, 11, 20, 21};
  const int32_t ids32[3] = {2, 0, 2};
  const int64_t ids64[3] = {1, 3, 0}, neg[2] = {0, -1};
  float y[6] = {-1, -1, -1, -1, -1, -1};
  assert_int_equal(q8_ref_gather(table, 3, 2, ids32, 0, 3, y), 0);
  CHECK_F(y, 20, 21, 0, 1, 20, 21);
  for (int i = 0; i < 6; i++)
    y[i] = -1;
  assert_int_equal(q8_ref_gather(table, 3, 2, ids64, 1, 3, y), 2);
  CHECK_F(y, -1, -1, -1, -1, -1, -1);
  assert_int_equal(q8_ref_gather(table, 3, 2, neg, 1, 2, y), 2);
  assert_int_equal(q8_ref_gather(table, 3, 2, ids64, 1, 0, y), 0);
}

static void test_copy_rows(void **state) {
  (void)state;
  const int64_t x[6] = {1, 2, 3, 4, 5, 6};
  int64_t y[4] = {0};
  /* slice x[:, 1:3] of a [2, 3] i64 array */
  q8_ref_copy_rows(x + 1, 3 * 8, y, 2 * 8, 2, 2 * 8);
  assert_memory_equal(y, ((int64_t[]){2, 3, 5, 6}), sizeof y);
}

/* ---- broadcast ---- */

/* The shorter operand may come first: [3] + [2, 3] repeats a over b's rows
 * (a's strides over the result [2, 3] are {0, 1}). */
static void test_broadcast_shorter_first(void **state) {
  (void)state;
  const float a[] = {1, 2, 3}, b[] = {10, 20, 30, 40, 50, 60};
  const int64_t dims[] = {2, 3}, sa[] = {0, 1}, sb[] = {3, 1};
  float y[6];
  q8_ref_add(a, sa, b, sb, y, 2, dims);
  CHECK_F(y, 11, 22, 33, 41, 52, 63);
  q8_ref_mul(a, sa, b, sb, y, 2, dims);
  CHECK_F(y, 10, 40, 90, 40, 100, 180);
  q8_ref_add(b, sb, a, sa, y, 2, dims);
  CHECK_F(y, 11, 22, 33, 41, 52, 63);
  q8_ref_mul(b, sb, a, sa, y, 2, dims);
  CHECK_F(y, 10, 40, 90, 40, 100, 180);
  q8_ref_sub(a, sa, b, sb, y, 2, dims);
  CHECK_F(y, -9, -18, -27, -39, -48, -57);
  q8_ref_div(b, sb, a, sa, y, 2, dims);
  CHECK_F(y, 10, 10, 10, 40, 25, 20);
  /* A scalar (all strides 0) first, and equal shapes. */
  const int64_t s0[] = {0, 0};
  q8_ref_mul((const float[]){-2}, s0, b, sb, y, 2, dims);
  CHECK_F(y, -20, -40, -60, -80, -100, -120);
  q8_ref_add(b, sb, b, sb, y, 2, dims);
  CHECK_F(y, 20, 40, 60, 80, 100, 120);
  /* Rank 0: one value. */
  q8_ref_sub((const float[]){5}, NULL, (const float[]){7}, NULL, y, 0, NULL);
  CHECK_F(y, -2);
}

/* Size-1 dims on both sides: a [2, 1, 3] with b [4, 1] gives [2, 4, 3],
 * checked element by element against the definition. */
static void test_broadcast_size1_both(void **state) {
  (void)state;
  float a[6], b[4], y[24];
  for (int i = 0; i < 6; i++)
    a[i] = (float)(i + 1);
  for (int i = 0; i < 4; i++)
    b[i] = (float)(100 * (i + 1));
  const int64_t dims[] = {2, 4, 3}, sa[] = {3, 0, 1}, sb[] = {0, 1, 0};
  q8_ref_add(a, sa, b, sb, y, 3, dims);
  for (int i = 0; i < 2; i++)
    for (int j = 0; j < 4; j++)
      for (int k = 0; k < 3; k++)
        assert_true(y[(i * 4 + j) * 3 + k] == a[i * 3 + k] + b[j]);
}

/* An empty result ([0, 3]) writes nothing. */
static void test_broadcast_empty(void **state) {
  (void)state;
  const float a[] = {1, 2, 3};
  const int64_t dims[] = {0, 3}, s[] = {0, 1};
  float y[3] = {7, 7, 7};
  q8_ref_add(a, s, a, s, y, 2, dims);
  q8_ref_div(a, s, a, s, y, 2, dims);
  CHECK_F(y, 7, 7, 7);
}

/* matmul with broadcast batch dims: a [2, 1, 1, 2] x b [3, 2, 1] gives
 * [2, 3, 1, 1]; a's matrix follows the first batch axis, b's the second. */
static void test_matmul_broadcast_batch(void **state) {
  (void)state;
  const float a[] = {1, 2, 3, 4}, b[] = {1, 1, 10, 20, 100, 300};
  const int64_t dims[] = {2, 3}, sa[] = {2, 0}, sb[] = {0, 2};
  float y[6];
  q8_ref_matmul(a, sa, b, sb, y, 2, dims, 1, 2, 1);
  CHECK_F(y, 3, 50, 700, 7, 110, 1500);
  /* A shared B [K, N]: all strides 0. */
  const int64_t one[] = {2}, s1[] = {2}, s0[] = {0};
  q8_ref_matmul(a, s1, b, s0, y, 1, one, 1, 2, 1);
  CHECK_F(y, 3, 7);
}

/* The activations at points whose values are known exactly in f32. */
static void test_activations(void **state) {
  (void)state;
  const float x[] = {0.0f, -INFINITY, INFINITY, -1000.0f};
  float y[4];
  q8_ref_sigmoid(x, y, 4);
  CHECK_F(y, 0.5f, 0.0f, 1.0f, 0.0f);
  q8_ref_tanh(x, y, 4);
  CHECK_F(y, 0.0f, -1.0f, 1.0f, -1.0f);
  q8_ref_silu(x, y, 2);
  assert_true(y[0] == 0.0f && isnan(y[1]));
  q8_ref_silu(x + 3, y, 1);
  CHECK_F(y, -0.0f);
  q8_ref_gelu_tanh(x + 2, y, 1);
  CHECK_F(y, INFINITY);
  q8_ref_gelu_tanh((const float[]){1.0f}, y, 1);
  /* 0.5 (1 + tanh(sqrt(2/pi) 1.044715)) = 0.8411919906082768 */
  assert_true(fabsf(y[0] - 0.84119199f) < 1e-7f);
}

/* ---- transpose ---- */

/* Every one of the 24 permutations of x [2, 3, 4, 5] against the definition
 * y[i_0, .., i_3] = x[j] with j[perm[k]] = i_k, worked out index by index. */
static void test_transpose_rank4_every_perm(void **state) {
  (void)state;
  const int64_t dims[4] = {2, 3, 4, 5};
  float x[120], y[120];
  for (int i = 0; i < 120; i++)
    x[i] = (float)i;
  int count = 0;
  for (int64_t p0 = 0; p0 < 4; p0++)
    for (int64_t p1 = 0; p1 < 4; p1++)
      for (int64_t p2 = 0; p2 < 4; p2++)
        for (int64_t p3 = 0; p3 < 4; p3++) {
          const int64_t perm[4] = {p0, p1, p2, p3};
          if (p0 == p1 || p0 == p2 || p0 == p3 || p1 == p2 || p1 == p3 || p2 == p3)
            continue;
          count++;
          memset(y, 0xff, sizeof y);
          q8_ref_transpose(x, y, 4, dims, perm);
          int64_t ydims[4], idx[4], j[4];
          for (int k = 0; k < 4; k++)
            ydims[k] = dims[perm[k]];
          for (int64_t e = 0; e < 120; e++) {
            int64_t rest = e;
            for (int k = 3; k >= 0; k--) {
              idx[k] = rest % ydims[k];
              rest /= ydims[k];
            }
            for (int k = 0; k < 4; k++)
              j[perm[k]] = idx[k];
            int64_t off = ((j[0] * dims[1] + j[1]) * dims[2] + j[2]) * dims[3] + j[3];
            if (y[e] != x[off])
              fail_msg("perm [%lld %lld %lld %lld], element %lld: got %g, want %g",
                       (long long)p0, (long long)p1, (long long)p2, (long long)p3,
                       (long long)e, y[e], x[off]);
          }
        }
  assert_int_equal(count, 24);
}

/* One case written out: perm [2, 0, 3, 1] of [2, 3, 4, 5] gives [4, 2, 5, 3];
 * y[1, 1, 2, 0] is x[1, 0, 1, 2] = 60 + 5 + 2. Axes of size 1 are carried over
 * too: [1, 2, 1, 3] with perm [3, 1, 0, 2] gives [3, 2, 1, 1]. */
static void test_transpose_rank4_by_hand(void **state) {
  (void)state;
  const int64_t dims[4] = {2, 3, 4, 5}, perm[4] = {2, 0, 3, 1};
  float x[120], y[120];
  for (int i = 0; i < 120; i++)
    x[i] = (float)i;
  q8_ref_transpose(x, y, 4, dims, perm);
  /* y [4, 2, 5, 3]: element [1, 1, 2, 0] is at ((1 * 2 + 1) * 5 + 2) * 3 + 0. */
  assert_true(y[((1 * 2 + 1) * 5 + 2) * 3 + 0] == 67.0f);
  assert_true(y[0] == 0.0f && y[1] == 20.0f && y[2] == 40.0f && y[3] == 1.0f);

  const int64_t d1[4] = {1, 2, 1, 3}, p1[4] = {3, 1, 0, 2};
  const float x1[6] = {0, 1, 2, 3, 4, 5};
  float y1[6];
  q8_ref_transpose(x1, y1, 4, d1, p1);
  CHECK_F(y1, 0, 3, 1, 4, 2, 5);
}

/* ---- quantize and dequantize with row strides ---- */

/* Rows of q are q_stride bytes apart; the bytes between hold garbage that
 * must not change the result. */
static void test_dequantize_strided(void **state) {
  (void)state;
  const uint8_t fills[] = {0x00, 0xff, 0x5a};
  for (int f = 0; f < 3; f++) {
    uint8_t qu[2 * 5];
    int8_t qi[2 * 5];
    memset(qu, fills[f], sizeof qu);
    memset(qi, fills[f], sizeof qi);
    memcpy(qu, (uint8_t[]){0, 10, 255}, 3);
    memcpy(qu + 5, (uint8_t[]){11, 12, 13}, 3);
    memcpy(qi, (int8_t[]){-128, 127, 0}, 3);
    memcpy(qi + 5, (int8_t[]){-3, -4, 1}, 3);
    float y[6];
    q8_ref_dequantize(qu, 5, y, 2, 3, 0.5f, 10, 0);
    CHECK_F(y, -5, 0, 122.5f, 0.5f, 1, 1.5f);
    q8_ref_dequantize(qi, 5, y, 2, 3, 0.25f, -3, 1);
    CHECK_F(y, -31.25f, 32.5f, 0.75f, 0, -0.25f, 1);
  }
}

/* Only the first cols bytes of each row of q are written. */
static void test_quantize_strided(void **state) {
  (void)state;
  const float x[] = {1.25f, -1.25f, NAN, 1000, 0.25f, -1000, INFINITY, 0};
  uint8_t qu[2 * 6];
  int8_t qi[2 * 6];
  memset(qu, 0xa5, sizeof qu);
  memset(qi, 0x5a, sizeof qi);
  q8_ref_quantize(x, qu, 6, 2, 4, 0.5f, 10, 0, 255, 0);
  const uint8_t want_u[] = {12, 8, 10, 255, 0xa5, 0xa5, 10, 0, 255, 10, 0xa5, 0xa5};
  assert_memory_equal(qu, want_u, sizeof qu);
  /* i8 with zp 3: x / scale clamped to [-130, 124] before the zero point. */
  q8_ref_quantize(x, qi, 6, 2, 4, 0.5f, 3, -127, 127, 1);
  const int8_t want_i[] = {5, 1, 3, 127, 0x5a, 0x5a, 3, -127, 127, 3, 0x5a, 0x5a};
  assert_memory_equal(qi, want_i, sizeof qi);
}

/* ---- qgemm ---- */

/* The definition, computed the plain way: the sum in int64, wrapped to int32
 * at the end, then scaled; y dense [m, n] in y_dtype. x is dense [m, k]. */
static void qgemm_int64(const int32_t *x, const int8_t *w, const int32_t *bias,
                        const float *mult, void *y, int y_dtype, int64_t m, int64_t k,
                        int64_t n, int32_t zp, int32_t y_min, int32_t y_max, int relu) {
  for (int64_t i = 0; i < m; i++)
    for (int64_t j = 0; j < n; j++) {
      int64_t acc = bias[j];
      for (int64_t l = 0; l < k; l++)
        acc += (int64_t)x[i * k + l] * w[j * k + l];
      int64_t low = (int64_t)(uint32_t)(uint64_t)acc;
      int32_t acc32 = (int32_t)(low >= 2147483648LL ? low - 4294967296LL : low);
      float p = (float)acc32 * mult[j];
      if (y_dtype == Y_F32) {
        ((float *)y)[i * n + j] = relu && !(p > 0) ? 0.0f : p;
        continue;
      }
      float r = rintf(p);
      float lo = (float)(y_min - zp), hi = (float)(y_max - zp);
      int32_t q = isnan(r) ? zp : (int32_t)(r < lo ? lo : r > hi ? hi : r) + zp;
      if (y_dtype == Y_U8)
        ((uint8_t *)y)[i * n + j] = (uint8_t)q;
      else
        ((int8_t *)y)[i * n + j] = (int8_t)q;
    }
}

/* int8 input, including -128 (which the kernel must read as -128, not 128),
 * to an i8 output with zero point 1: acc = [[-2, 392], [1, 3]] times 0.5 is
 * [[-1, 196], [0.5, 1.5]]; the ties round to even (0 and 2) and 196
 * saturates at 127 - 1. relu raises the lower bound to the zero point. x rows
 * are 4 bytes apart, y rows 3, and the padding holds garbage. */
static void test_qgemm_i8_in_i8_out(void **state) {
  (void)state;
  const int8_t w[] = {1, 1, 1, -1, 2, 0};
  const int32_t bias[] = {0, 10};
  const float mult[] = {0.5f, 0.5f};
  const uint8_t fills[] = {0x00, 0x80, 0x7f};
  for (int f = 0; f < 3; f++) {
    int8_t x[2 * 4], y[2 * 3];
    memset(x, fills[f], sizeof x);
    memcpy(x, (int8_t[]){-128, 127, -1}, 3);
    memcpy(x + 4, (int8_t[]){3, -2, 0}, 3);
    memset(y, 0x55, sizeof y);
    q8_ref_qgemm(x, 4, 1, w, bias, mult, y, 3, Y_I8, 2, 3, 2, 1, -127, 127, 0);
    assert_memory_equal(y, ((int8_t[]){0, 127, 0x55, 1, 3, 0x55}), sizeof y);
    q8_ref_qgemm(x, 4, 1, w, bias, mult, y, 3, Y_I8, 2, 3, 2, 1, 1, 127, 0);
    assert_memory_equal(y, ((int8_t[]){1, 127, 0x55, 1, 3, 0x55}), sizeof y);
  }
}

/* The same bytes read as u8 (-128 is 128, -1 is 255) to an f32 output, x rows
 * 4 bytes apart, y rows 4 floats apart: acc row 0 = [128 + 127 + 255,
 * -128 + 254 + 10, 0] = [510, 136, 0], row 1 = [3 + 254, -3 + 508 + 10, 0] =
 * [257, 515, 0]. mult -0.25 makes channel 1 negative and channel 2 -0.0;
 * relu turns both into +0.0. */
static void test_qgemm_u8_in_f32_out_relu(void **state) {
  (void)state;
  const int8_t w[] = {1, 1, 1, -1, 2, 0, 0, 0, 0};
  const int32_t bias[] = {0, 10, 0};
  const float mult[] = {0.5f, -0.25f, -0.25f};
  uint8_t x[2 * 4] = {128, 127, 255, 0xee, 3, 254, 0, 0xee};
  float y[2 * 4] = {9, 9, 9, 9, 9, 9, 9, 9};
  q8_ref_qgemm(x, 4, 0, w, bias, mult, y, 4, Y_F32, 2, 3, 3, 0, 0, 0, 1);
  CHECK_F(y, 255, 0, 0, 9, 128.5f, 0, 0, 9);
  q8_ref_qgemm(x, 4, 0, w, bias, mult, y, 4, Y_F32, 2, 3, 3, 0, 0, 0, 0);
  CHECK_F(y, 255, -34, -0.0f, 9, 128.5f, -128.75f, -0.0f, 9);
}

/* A sweep over m, k and n with primes and every tail of 4, 8 and 16, both
 * input types and all three output types, relu on and off: q8_ref_qgemm on
 * strided x and y (padding filled with garbage, which must neither be read
 * nor written) equals the int64 computation on dense arrays. Some biases sit
 * at the ends of int32 so that the accumulator wraps. */
static void test_qgemm_matches_int64(void **state) {
  (void)state;
  const int64_t ms[] = {1, 2, 3, 5, 7};
  const int64_t ks[] = {0, 1, 2, 3, 4, 5, 7, 8, 15, 16, 17, 31, 33, 64, 67};
  const int64_t ns[] = {1, 2, 3, 5, 8, 13, 17};
  const int ydts[] = {Y_F32, Y_I8, Y_U8};
  uint32_t s = 12345;
  int cases = 0, wrapped = 0;
  for (size_t mi = 0; mi < sizeof ms / sizeof *ms; mi++)
    for (size_t ki = 0; ki < sizeof ks / sizeof *ks; ki++)
      for (size_t ni = 0; ni < sizeof ns / sizeof *ns; ni++)
        for (int xs = 0; xs <= 1; xs++)
          for (int yi = 0; yi < 3; yi++)
            for (int relu = 0; relu <= 1; relu++) {
              int64_t m = ms[mi], k = ks[ki], n = ns[ni];
              int ydt = ydts[yi];
              size_t ysize = ydt == Y_F32 ? sizeof(float) : 1;
              int64_t x_stride = k + rng_int(&s, 0, 5), y_stride = n + rng_int(&s, 0, 3);
              uint8_t *x = malloc((size_t)(m * x_stride) + 1);
              int32_t *xd = malloc((size_t)(m * k + 1) * sizeof *xd);
              int8_t *w = malloc((size_t)(n * k) + 1);
              int32_t *bias = malloc((size_t)n * sizeof *bias);
              float *mult = malloc((size_t)n * sizeof *mult);
              void *y = malloc((size_t)(m * y_stride) * ysize);
              void *want = malloc((size_t)(m * n) * ysize);
              void *pad = malloc((size_t)(m * y_stride) * ysize);
              assert_true(x && xd && w && bias && mult && y && want && pad);
              for (int64_t i = 0; i < m * x_stride; i++)
                x[i] = (uint8_t)rng_next(&s);
              for (int64_t i = 0; i < m; i++)
                for (int64_t l = 0; l < k; l++) {
                  uint8_t b = x[i * x_stride + l];
                  xd[i * k + l] = xs ? (int8_t)b : b;
                }
              for (int64_t i = 0; i < n * k; i++)
                w[i] = (int8_t)rng_int(&s, -128, 127);
              for (int64_t j = 0; j < n; j++) {
                int c = rng_int(&s, 0, 7);
                bias[j] = c == 0   ? INT32_MAX - rng_int(&s, 0, 3000)
                          : c == 1 ? INT32_MIN + rng_int(&s, 0, 3000)
                                   : rng_int(&s, -20000, 20000);
                wrapped += c <= 1;
                float mag = ydt == Y_F32 ? rng_float(&s, 1e-3f, 1) : rng_float(&s, 1e-4f, 0.02f);
                mult[j] = rng_int(&s, 0, 5) == 0 ? -mag : mag;
              }
              int32_t zp = ydt == Y_U8 ? rng_int(&s, 0, 255) : ydt == Y_I8 ? rng_int(&s, -20, 20) : 0;
              int32_t y_min = ydt == Y_U8 ? 0 : -127, y_max = ydt == Y_U8 ? 255 : 127;
              if (relu && ydt != Y_F32 && zp > y_min)
                y_min = zp;
              memset(y, 0xa7, (size_t)(m * y_stride) * ysize);
              memcpy(pad, y, (size_t)(m * y_stride) * ysize);

              q8_ref_qgemm(x, x_stride, xs, w, bias, mult, y, y_stride, ydt, m, k, n, zp, y_min,
                           y_max, relu);
              qgemm_int64(xd, w, bias, mult, want, ydt, m, k, n, zp, y_min, y_max, relu);
              for (int64_t i = 0; i < m; i++) {
                const uint8_t *got = (const uint8_t *)y + (size_t)(i * y_stride) * ysize;
                if (memcmp(got, (const uint8_t *)want + (size_t)(i * n) * ysize,
                           (size_t)n * ysize) != 0)
                  fail_msg("m %lld k %lld n %lld x %s y_dtype %d relu %d: row %lld differs",
                           (long long)m, (long long)k, (long long)n, xs ? "i8" : "u8", ydt, relu,
                           (long long)i);
                size_t row_end = (size_t)(i * y_stride + n) * ysize;
                size_t pad_bytes = (size_t)(y_stride - n) * ysize;
                if (memcmp((uint8_t *)y + row_end, (uint8_t *)pad + row_end, pad_bytes) != 0)
                  fail_msg("m %lld k %lld n %lld: the padding of y row %lld was written",
                           (long long)m, (long long)k, (long long)n, (long long)i);
              }
              /* Other garbage in x's padding gives the same bytes. */
              for (int64_t i = 0; i < m; i++)
                for (int64_t l = k; l < x_stride; l++)
                  x[i * x_stride + l] ^= 0xff;
              q8_ref_qgemm(x, x_stride, xs, w, bias, mult, pad, y_stride, ydt, m, k, n, zp,
                           y_min, y_max, relu);
              assert_memory_equal(pad, y, (size_t)(m * y_stride) * ysize);
              cases++;
              free(x);
              free(xd);
              free(w);
              free(bias);
              free(mult);
              free(y);
              free(want);
              free(pad);
            }
  assert_int_equal(cases, 5 * 15 * 7 * 2 * 3 * 2);
  assert_true(wrapped > 0);
}

/* ---- qlinear_dyn ---- */

/* One qlinear_dyn of x [2, k] against the untiled definition
 * (docs/quantization.md, "Dynamic quantization") with an int64 sum. */
static void check_qlinear_dyn(uint32_t *s, int64_t k, int64_t n, int per_tensor, int has_bias) {
  const int64_t m = 2;
  float *x = malloc((size_t)(m * k + 1) * sizeof *x);
  int8_t *w = malloc((size_t)(n * k) + 1);
  float *ws = malloc((size_t)n * sizeof *ws), *b = malloc((size_t)n * sizeof *b);
  float *y = malloc((size_t)(m * n) * sizeof *y), *want = malloc((size_t)(m * n) * sizeof *y);
  int32_t *xq = malloc((size_t)(k + 1) * sizeof *xq);
  assert_true(x && w && ws && b && y && want && xq);
  for (int64_t i = 0; i < m * k; i++)
    x[i] = rng_float(s, -3, 5);
  if (k > 3) {
    x[1] = NAN;
    x[2] = -INFINITY;
  }
  for (int64_t i = 0; i < n * k; i++)
    w[i] = (int8_t)rng_int(s, -127, 127);
  for (int64_t j = 0; j < n; j++) {
    ws[j] = rng_float(s, 1e-3f, 0.05f);
    b[j] = rng_float(s, -1, 1);
  }
  const float *bias = has_bias ? b : NULL;
  q8_ref_qlinear_dyn(x, w, ws, per_tensor ? 1 : n, bias, y, m, k, n);

  for (int64_t i = 0; i < m; i++) {
    /* The row's u8 parameters from its finite range widened to include 0. */
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
    int32_t zx = (int32_t)fmin(fmax(rint(-(double)lo / (double)sx), 0.0), 255.0);
    for (int64_t l = 0; l < k; l++)
      xq[l] = q8_ref_quantize_value(xi[l], sx, zx, 0, 255) - zx;
    for (int64_t j = 0; j < n; j++) {
      int64_t acc = 0;
      for (int64_t l = 0; l < k; l++)
        acc += (int64_t)xq[l] * w[j * k + l];
      assert_true(acc >= INT32_MIN && acc <= INT32_MAX);
      float t = sx * ws[per_tensor ? 0 : j];
      float v = (float)(int32_t)acc * t;
      if (bias)
        v = v + bias[j];
      want[i * n + j] = v;
    }
  }
  if (memcmp(y, want, (size_t)(m * n) * sizeof *y) != 0)
    fail_msg("k %lld n %lld per_tensor %d bias %d: differs from the untiled definition",
             (long long)k, (long long)n, per_tensor, has_bias);
  free(x);
  free(w);
  free(ws);
  free(b);
  free(y);
  free(want);
  free(xq);
}

/* qlinear_dyn works through tiles of N and K (so that it needs no
 * allocation); on both sides of every tile edge it must equal the untiled
 * definition. */
static void test_qlinear_dyn_untiled(void **state) {
  (void)state;
  const int64_t ks[] = {0, 1, 511, 512, 513, 1031};
  const int64_t ns[] = {1, 127, 128, 129, 257};
  uint32_t s = 99;
  for (size_t ki = 0; ki < sizeof ks / sizeof *ks; ki++)
    for (size_t ni = 0; ni < sizeof ns / sizeof *ns; ni++)
      for (int per_tensor = 0; per_tensor <= 1; per_tensor++)
        for (int has_bias = 0; has_bias <= 1; has_bias++)
          check_qlinear_dyn(&s, ks[ki], ns[ni], per_tensor, has_bias);
}

/* qlinear_dyn {granularity = tensor}: ONNX's DynamicQuantizeLinear by hand.
 * x = [-1, 0, 1, 0.5]: lo = -1, hi = 1, sx = f32(2 / 255), 0 - lo / sx =
 * 127.49999 in f32 (not the tie 127.5), so zx = 127; x / sx rounds to
 * -127, 0, 127, 64; xq = 0, 127, 254, 191. With w = [4, 5, 6, -1] less
 * w_zp = 3: acc = -127 * 1 + 127 * 3 + 64 * -4 = -2. */
static void test_qlinear_dyn_tensor_by_hand(void **state) {
  (void)state;
  const float x[4] = {-1, 0, 1, 0.5f};
  const int8_t w[4] = {4, 5, 6, -1};
  const float ws = 0.5f, b = 0.25f;
  float y;
  q8_ref_qlinear_dyn_tensor(x, w, &ws, 1, 3, &b, &y, 1, 4, 1);
  float sx = 2.0f / 255.0f;
  assert_true(y == (float)-2 * (sx * 0.5f) + 0.25f);
  /* All zeros: scale 1, zero point 0 (ONNX Runtime's rule), y = b. */
  const float z[6] = {0};
  const int8_t w2[6] = {-128, 127, 9, 0, 1, -7};
  const float ws2[2] = {0.5f, 2}, b2[2] = {1, -1};
  float y2[4];
  q8_ref_qlinear_dyn_tensor(z, w2, ws2, 2, 5, b2, y2, 2, 3, 2);
  for (int i = 0; i < 4; i++)
    assert_true(y2[i] == b2[i % 2]);
  q8_ref_qlinear_dyn_tensor(z, w2, ws2, 2, -128, NULL, y2, 2, 3, 2);
  for (int i = 0; i < 4; i++)
    assert_true(y2[i] == 0 && !signbit(y2[i]));
}

/* The tiled qlinear_dyn_tensor against its untiled definition with an int64
 * sum, across tile edges, with weight zero points -128, 0 and 77. */
static void test_qlinear_dyn_tensor_untiled(void **state) {
  (void)state;
  const int64_t ks[] = {1, 512, 513}, ns[] = {1, 128, 129}, m = 3;
  const int32_t zps[] = {-128, 0, 77};
  uint32_t s = 7;
  for (size_t ki = 0; ki < 3; ki++)
    for (size_t ni = 0; ni < 3; ni++)
      for (size_t zi = 0; zi < 3; zi++) {
        int64_t k = ks[ki], n = ns[ni];
        float *x = malloc((size_t)(m * k) * sizeof *x), *ws = malloc((size_t)n * sizeof *ws);
        float *y = malloc((size_t)(m * n) * sizeof *y);
        int8_t *w = malloc((size_t)(n * k));
        assert_true(x && ws && y && w);
        for (int64_t i = 0; i < m * k; i++)
          x[i] = rng_float(&s, -2, 7);
        for (int64_t i = 0; i < n * k; i++)
          w[i] = (int8_t)rng_int(&s, -128, 127);
        for (int64_t j = 0; j < n; j++)
          ws[j] = rng_float(&s, 1e-3f, 0.05f);
        q8_ref_qlinear_dyn_tensor(x, w, ws, n, zps[zi], NULL, y, m, k, n);
        float lo = 0, hi = 0;
        for (int64_t i = 0; i < m * k; i++) {
          lo = fminf(lo, x[i]);
          hi = fmaxf(hi, x[i]);
        }
        float sx = hi == lo ? 1.0f : (hi - lo) / 255.0f;
        int32_t zx = (int32_t)rintf(fminf(fmaxf(0.0f - lo / sx, 0.0f), 255.0f));
        for (int64_t i = 0; i < m; i++)
          for (int64_t j = 0; j < n; j++) {
            int64_t acc = 0;
            for (int64_t l = 0; l < k; l++)
              acc += (int64_t)(q8_ref_quantize_value(x[i * k + l], sx, zx, 0, 255) - zx) *
                     (w[j * k + l] - zps[zi]);
            assert_true(acc >= INT32_MIN && acc <= INT32_MAX);
            if (y[i * n + j] != (float)(int32_t)acc * (sx * ws[j]))
              fail_msg("k %lld n %lld w_zp %d: y[%lld, %lld] differs", (long long)k,
                       (long long)n, zps[zi], (long long)i, (long long)j);
          }
        free(x);
        free(ws);
        free(y);
        free(w);
      }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_broadcast_shorter_first),
      cmocka_unit_test(test_broadcast_empty),
      cmocka_unit_test(test_broadcast_size1_both),
      cmocka_unit_test(test_matmul_broadcast_batch),
      cmocka_unit_test(test_activations),
      cmocka_unit_test(test_transpose_rank4_every_perm),
      cmocka_unit_test(test_transpose_rank4_by_hand),
      cmocka_unit_test(test_dequantize_strided),
      cmocka_unit_test(test_quantize_strided),
      cmocka_unit_test(test_qgemm_i8_in_i8_out),
      cmocka_unit_test(test_qgemm_u8_in_f32_out_relu),
      cmocka_unit_test(test_qgemm_matches_int64),
      cmocka_unit_test(test_qlinear_dyn_untiled),
      cmocka_unit_test(test_qlinear_dyn_tensor_by_hand),
      cmocka_unit_test(test_qlinear_dyn_tensor_untiled),
      cmocka_unit_test(test_softmax_axis),
      cmocka_unit_test(test_softmax_causal),
      cmocka_unit_test(test_rmsnorm),
      cmocka_unit_test(test_gather),
      cmocka_unit_test(test_copy_rows),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
