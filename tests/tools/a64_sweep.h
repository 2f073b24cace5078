/* a64_sweep.h: one case of the AArch64 kernel sweep and its data, shared by
 * the two halves of that test:
 *
 *   a64_sweep_gen.c  (x86_64, linked with q8c_core) emits every case's kernel
 *                    into one aarch64 object and writes the case table, a C
 *                    file listing each case's configuration and kernel;
 *   a64_sweep_run.c  (aarch64, under qemu-user) regenerates each case's data
 *                    from its configuration, runs the kernel and compares
 *                    the output bytes with q8_ref_qgemm's.
 *
 * The data comes from the case's seed through integer xorshift and IEEE
 * arithmetic in a fixed order (both sides compile with -ffp-contract=off),
 * so both sides draw the same bytes; the generator records a hash of them
 * in the table and the runner checks it, so a disagreement is reported as
 * such rather than as a wrong kernel. The data is the same as
 * tests/unit/test_kernels.c draws for the x86 kernels.
 *
 * Plain C11, libc and libm only: this header is compiled for both machines. */
#ifndef Q8_A64_SWEEP_H
#define Q8_A64_SWEEP_H

#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "q8model.h" /* Q8_DTYPE_*: the y_dtype q8_ref_qgemm takes */

/* What a case's data is beside random: test_kernels.c's special cases. */
enum {
  SW_RANDOM,       /* as drawn */
  SW_SPECIAL_MULT, /* multipliers inf, -inf, NaN, 0, -0, 1e30 over zero and other sums */
  SW_WRAP,         /* sums that wrap int32: whole channels of 127 and -127, bias at
                    * INT32_MAX and INT32_MIN, one row of x at its top */
};

/* One case: the kernel's shape and types, and how its data is drawn. */
typedef struct {
  const char *isa;   /* the variant's name (cg_isa_info) */
  int64_t m, k, n;
  int x_signed;      /* x is i8 (else u8) */
  int y_dtype;       /* Q8_DTYPE_U8, _I8 or _F32 */
  int relu;
  int wmax;          /* weights in [-wmax, wmax], both ends present */
  int32_t xlo, xhi;  /* the range x is drawn from (and the kernel is told) */
  int mult_kind;     /* 0: random; 1: a power of two (exact products, rounding ties) */
  int64_t x_pad, y_pad;
  uint64_t seed;
  int kind;          /* SW_RANDOM, SW_SPECIAL_MULT or SW_WRAP */
} SwConfig;

/* A case's data, drawn from its configuration. */
typedef struct {
  int8_t *wq;       /* [n, k] */
  int32_t *bias;    /* [n] */
  float *mult;      /* [n] */
  uint8_t *x;       /* m rows of x_stride bytes; the padding is garbage */
  int64_t x_stride; /* bytes */
  int64_t y_stride; /* elements */
  size_t y_size;    /* bytes per element of y */
  size_t y_bytes;   /* m rows of y plus one guard row */
  int32_t y_zero_point, y_min, y_max; /* integer y: relu folded into y_min */
} SwData;

/* xorshift64*, as tests/unit/test_kernels.c. */
typedef struct {
  uint64_t s;
} SwRng;

static inline uint32_t sw_rnd(SwRng *r) {
  r->s ^= r->s >> 12;
  r->s ^= r->s << 25;
  r->s ^= r->s >> 27;
  return (uint32_t)((r->s * 0x2545F4914F6CDD1DULL) >> 32);
}

/* Uniform in [lo, hi]. */
static inline int32_t sw_rnd_in(SwRng *r, int32_t lo, int32_t hi) {
  return lo + (int32_t)(sw_rnd(r) % (uint32_t)(hi - lo + 1));
}

static inline float sw_rnd_unit(SwRng *r) { return (float)(sw_rnd(r) >> 8) / (float)(1 << 24); }

/* The clamp bounds of a quantized type (ir_qbounds: i8 is symmetric). */
static inline void sw_qbounds(int dtype, int32_t *qmin, int32_t *qmax) {
  *qmin = dtype == Q8_DTYPE_U8 ? 0 : -127;
  *qmax = dtype == Q8_DTYPE_U8 ? 255 : 127;
}

static inline void sw_data_free(SwData *d) {
  free(d->wq);
  free(d->bias);
  free(d->mult);
  free(d->x);
  memset(d, 0, sizeof *d);
}

/* Draw the data of case `c` (in the order test_kernels.c's init_case does).
 * False when out of memory. */
static inline bool sw_data_init(SwData *d, const SwConfig *c) {
  memset(d, 0, sizeof *d);
  SwRng r = {c->seed * 0x9E3779B97F4A7C15ULL + 1};
  int64_t m = c->m, k = c->k, n = c->n;
  d->x_stride = (k + 3) / 4 * 4 + c->x_pad;
  d->y_stride = n + c->y_pad;
  d->y_size = c->y_dtype == Q8_DTYPE_F32 ? 4 : 1;
  d->y_bytes = (size_t)((m + 1) * d->y_stride) * d->y_size;
  d->wq = malloc((size_t)(n * k));
  d->bias = malloc(sizeof(int32_t) * (size_t)n);
  d->mult = malloc(sizeof(float) * (size_t)n);
  d->x = malloc((size_t)(m * d->x_stride));
  if (!d->wq || !d->bias || !d->mult || !d->x) {
    sw_data_free(d);
    return false;
  }
  for (int64_t i = 0; i < n * k; i++)
    d->wq[i] = (int8_t)sw_rnd_in(&r, -c->wmax, c->wmax);
  d->wq[0] = (int8_t)c->wmax;
  d->wq[n * k - 1] = (int8_t)-c->wmax;
  /* Multipliers that spread the results over the output range (and past
   * it, to test the clamps). */
  double typical = sqrt((double)k) * c->wmax * (c->xhi - c->xlo + 1) / 3.0 + 1;
  for (int64_t j = 0; j < n; j++) {
    d->bias[j] = sw_rnd_in(&r, -(int32_t)typical, (int32_t)typical);
    if (c->mult_kind == 1)
      d->mult[j] = ldexpf(1.0f, -sw_rnd_in(&r, 1, 4));
    else
      d->mult[j] = (float)((0.25 + 2 * sw_rnd_unit(&r)) * 150.0 / typical);
  }
  if (c->y_dtype == Q8_DTYPE_F32 && n > 1)
    d->mult[1] = 0; /* 0 * acc: +0.0 or -0.0 before relu */
  for (int64_t i = 0; i < m * d->x_stride; i++)
    d->x[i] = (uint8_t)sw_rnd(&r);
  for (int64_t i = 0; i < m; i++)
    for (int64_t l = 0; l < k; l++)
      d->x[i * d->x_stride + l] = (uint8_t)sw_rnd_in(&r, c->xlo, c->xhi);
  if (c->y_dtype != Q8_DTYPE_F32) {
    int32_t qmin, qmax;
    sw_qbounds(c->y_dtype, &qmin, &qmax);
    d->y_zero_point = c->y_dtype == Q8_DTYPE_U8 ? sw_rnd_in(&r, 0, 255) : sw_rnd_in(&r, -20, 20);
    d->y_min = c->relu && d->y_zero_point > qmin ? d->y_zero_point : qmin;
    d->y_max = qmax;
  }
  if (c->kind == SW_SPECIAL_MULT) {
    /* NaN requantizes to the zero point, infinities clamp, relu maps NaN and
     * -0.0 to +0.0; the first 6 channels sum to 0 (inf * 0 = NaN). */
    static const float special[6] = {INFINITY, -INFINITY, NAN, 0.0f, -0.0f, 1e30f};
    for (int64_t j = 0; j < n && j < 12; j++)
      d->mult[j] = special[j % 6];
    for (int64_t j = 0; j < n && j < 6; j++) {
      memset(d->wq + j * k, 0, (size_t)k);
      d->bias[j] = 0;
    }
  } else if (c->kind == SW_WRAP) {
    /* K * 255 * 127 passes 2^31 from K = 66,311. */
    for (int64_t j = 0; j < n; j++) {
      if (j < 14)
        memset(d->wq + j * k, j < 7 ? 127 : -127, (size_t)k);
      d->bias[j] = j % 3 == 0 ? INT32_MAX : j % 3 == 1 ? INT32_MIN : d->bias[j];
      d->mult[j] = 1.0f;
    }
    for (int64_t l = 0; l < k; l++)
      d->x[l] = (uint8_t)c->xhi;
  }
  return true;
}

/* FNV-1a over the bytes the kernel's result depends on. */
static inline uint64_t sw_hash_bytes(uint64_t h, const void *p, size_t n) {
  const uint8_t *b = p;
  for (size_t i = 0; i < n; i++)
    h = (h ^ b[i]) * 0x100000001B3ULL;
  return h;
}

static inline uint64_t sw_data_hash(const SwData *d, const SwConfig *c) {
  uint64_t h = 0xCBF29CE484222325ULL;
  h = sw_hash_bytes(h, d->wq, (size_t)(c->n * c->k));
  h = sw_hash_bytes(h, d->bias, sizeof(int32_t) * (size_t)c->n);
  h = sw_hash_bytes(h, d->mult, sizeof(float) * (size_t)c->n);
  h = sw_hash_bytes(h, d->x, (size_t)(c->m * d->x_stride));
  int32_t q[3] = {d->y_zero_point, d->y_min, d->y_max};
  return sw_hash_bytes(h, q, sizeof q);
}

/* One row of the table a64_sweep_gen writes: the case, its kernel
 * (void kernel(const CgGemmArgs *, int64_t task), called with a pointer to
 * {x, y}) and its task count, and the hash of the data it was emitted with. */
typedef struct {
  SwConfig c;
  void (*kernel)(void *args, int64_t task);
  int64_t ntasks;
  uint64_t data_hash;
} SwCase;

extern const SwCase sw_cases[];
extern const int sw_ncases;

#endif
