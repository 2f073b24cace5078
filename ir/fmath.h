/* fmath.h: the float32 approximations of exp, 1 + erf and tanh that every
 * float op of q8c computes with, defined once. The coefficients below are
 * read by two implementations that must agree bit for bit: the scalar C
 * functions here (ir/refops.c, so the interpreter and libq8support.a) and
 * the vector LLVM IR of codegen/vmath.c. Each function is a fixed sequence
 * of IEEE float32 operations, every one rounded on its own (no fused
 * multiply-add: this header's users are compiled with -ffp-contract=off and
 * the generated code has no contraction flags), so any implementation that
 * performs the same sequence gets the same bits. docs/float.md states the
 * sequences, the clamping, NaN and infinity behaviour, the reduction order
 * of the float ops and the measured worst errors against libm.
 *
 * Plain C, no IR types and no libm: it is compiled alone for every target. */
#ifndef Q8_IR_FMATH_H
#define Q8_IR_FMATH_H

#include <stdint.h>
#include <string.h>

/* exp: clamp to [LO, HI], k = rint(x log2 e) by the 1.5 * 2^23 trick,
 * r = x - k ln2 in two steps (C1 has 9 significant bits, so k C1 is exact),
 * p = 1 + r + r^2 P(r) (Cephes expf's P), then p 2^k1 2^k2 with k1 = k / 2
 * (truncating), k2 = k - k1: both factors are normal floats, so results
 * between FLT_MIN and denormals round once. */
#define Q8F_EXP_HI 89.0f
#define Q8F_EXP_LO -104.0f
#define Q8F_LOG2E 1.44269502f
#define Q8F_RINT_MAGIC 12582912.0f /* 1.5 * 2^23 */
#define Q8F_LN2_C1 0.693359375f
#define Q8F_LN2_C2 -2.12194440e-4f
enum { Q8F_EXP_NP = 6 };
static const float q8f_exp_p[Q8F_EXP_NP] = {1.9875691500e-4f, 1.3981999507e-3f, 8.3334519073e-3f,
                                            4.1665795894e-2f, 1.6666665459e-1f, 5.0000001201e-1f};

/* 1 + erf(z): for |z| < SMALL, 1 + z P(z^2); else e = exp(Q(t)), t = |z|,
 * Q(t) ~ log(erfc(t)) on [SMALL, BIG], and 1 + erf(z) = e (z < 0) or 2 - e;
 * for |z| > BIG, 0 (z < 0) or 2 (erf is 1 in float from 3.92 up). */
#define Q8F_ERF_SMALL 0.875f
#define Q8F_ERF_BIG 4.0f
enum { Q8F_ERF_NP = 6, Q8F_ERF_NQ = 9 };
static const float q8f_erf_p[Q8F_ERF_NP] = {-6.23505272e-4f, 5.03871823e-3f, -2.67962925e-2f,
                                            1.12826079e-1f,  -3.76125693e-1f, 1.12837911e+0f};
static const float q8f_erf_q[Q8F_ERF_NQ] = {1.60541322e-6f, -4.54146757e-5f, 5.91242337e-4f,
                                            -4.73285234e-3f, 2.63431408e-2f, -1.09939106e-1f,
                                            -6.31979942e-1f, -1.13014078e+0f, 2.96655489e-4f};

/* tanh: for |x| < SMALL, x + x^3 P(x^2) (Cephes tanhf's P); else
 * 1 - 2 / (exp(2 |x|) + 1) with x's sign. */
#define Q8F_TANH_SMALL 0.625f
enum { Q8F_TANH_NP = 5 };
static const float q8f_tanh_p[Q8F_TANH_NP] = {-5.70498872745e-3f, 2.06390887954e-2f,
                                              -5.37397155531e-2f, 1.33314422036e-1f,
                                              -3.33332819422e-1f};

/* The constants of the ops built on them (docs/float.md, "The ops"). */
#define Q8F_SQRT1_2 0.707106769f          /* gelu: x / sqrt 2 as x * this */
#define Q8F_GELU_TANH_K -1.59576917f      /* gelu tanh: -2 sqrt(2 / pi) */
#define Q8F_GELU_TANH_A 0.044715f

/* The reductions of the float ops (softmax's sum, layernorm's and rmsnorm's
 * sums) add a row in Q8F_SUM_LANES interleaved partial sums over its first
 * n - n % Q8F_SUM_LANES elements, combine them in halving steps (lane i +=
 * lane i + h for h = 8, 4, 2, 1) and add the rest of the row in order
 * (ir/refops.c's ROW_SUM, floatops.c's row_sum). */
enum { Q8F_SUM_LANES = 16 };

static inline float q8f_bits(uint32_t u) {
  float f;
  memcpy(&f, &u, sizeof f);
  return f;
}

static inline int q8f_isnan(float x) { return x != x; }

static inline float q8f_fabs(float x) {
  uint32_t u;
  memcpy(&u, &x, sizeof u);
  return q8f_bits(u & 0x7fffffffu);
}

static inline float q8f_horner(const float *c, int n, float x) {
  float p = c[0];
  for (int i = 1; i < n; i++)
    p = p * x + c[i];
  return p;
}

static inline float q8f_exp(float x) {
  if (q8f_isnan(x))
    return x;
  float v = x > Q8F_EXP_HI ? Q8F_EXP_HI : x;
  v = v < Q8F_EXP_LO ? Q8F_EXP_LO : v;
  float k = (v * Q8F_LOG2E + Q8F_RINT_MAGIC) - Q8F_RINT_MAGIC;
  float r = v - k * Q8F_LN2_C1;
  r = r - k * Q8F_LN2_C2;
  float p = q8f_horner(q8f_exp_p, Q8F_EXP_NP, r);
  p = p * (r * r) + r;
  p = p + 1.0f;
  int32_t ki = (int32_t)k, k1 = ki / 2, k2 = ki - k1;
  return (p * q8f_bits((uint32_t)(k1 + 127) << 23)) * q8f_bits((uint32_t)(k2 + 127) << 23);
}

static inline float q8f_erf1p(float z) {
  if (q8f_isnan(z))
    return z;
  float a = q8f_fabs(z);
  if (a < Q8F_ERF_SMALL)
    return 1.0f + z * q8f_horner(q8f_erf_p, Q8F_ERF_NP, z * z);
  float t = a > Q8F_ERF_BIG ? Q8F_ERF_BIG : a;
  float e = q8f_exp(q8f_horner(q8f_erf_q, Q8F_ERF_NQ, t));
  e = a > Q8F_ERF_BIG ? 0.0f : e;
  return z < 0.0f ? e : 2.0f - e;
}

static inline float q8f_tanh(float x) {
  if (q8f_isnan(x))
    return x;
  float a = q8f_fabs(x);
  if (a < Q8F_TANH_SMALL) {
    float s = x * x;
    return (q8f_horner(q8f_tanh_p, Q8F_TANH_NP, s) * s) * x + x;
  }
  float y = 1.0f - 2.0f / (q8f_exp(2.0f * a) + 1.0f);
  return x < 0.0f ? -y : y;
}

/* The activations (docs/float.md): a NaN input is returned as it is. */
static inline float q8f_gelu(float x) {
  return q8f_isnan(x) ? x : (0.5f * x) * q8f_erf1p(x * Q8F_SQRT1_2);
}

static inline float q8f_gelu_tanh(float x) {
  if (q8f_isnan(x))
    return x;
  float u = x + Q8F_GELU_TANH_A * ((x * x) * x);
  return x / (1.0f + q8f_exp(u * Q8F_GELU_TANH_K));
}

static inline float q8f_sigmoid(float x) {
  return q8f_isnan(x) ? x : 1.0f / (1.0f + q8f_exp(-x));
}

static inline float q8f_silu(float x) { return q8f_isnan(x) ? x : x / (1.0f + q8f_exp(-x)); }

#endif
