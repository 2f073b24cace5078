/* refops.h: the reference arithmetic of every op, on plain arrays.
 *
 * These functions are the semantics docs/ir.md and docs/quantization.md
 * state, written once: the interpreter (interp.c) calls them, and compiled
 * models call the same code (built into libq8support.a and linked into every
 * model .so, or found in the process by the JIT) for the layers that have no
 * generated kernel. So a float op gives bit-identical results in both.
 *
 * No IR types and nothing but libc and libm: this file is compiled for every
 * target q8c supports. Quantized buffers have rows `stride` bytes apart. */
#ifndef Q8_REFOPS_H
#define Q8_REFOPS_H

#include <stdint.h>

/* ---- f32 ops ---- */

/* y[m, n] = x[m, k] W[n, k]^T + b[n] (b may be NULL), summed in double. */
void q8_ref_linear(const float *x, const float *w, const float *b, float *y, int64_t m,
                   int64_t k, int64_t n);
/* y[batch, m, n] = a[batch, m, k] b[k, n] (b_batched: b[batch, k, n]). */
void q8_ref_matmul(const float *a, const float *b, float *y, int64_t batch, int64_t m, int64_t k,
                   int64_t n, int b_batched);
/* Elementwise with trailing broadcast: the shorter operand (na or nb
 * elements) repeats over the longer; y has max(na, nb) elements. */
void q8_ref_add(const float *a, int64_t na, const float *b, int64_t nb, float *y);
void q8_ref_mul(const float *a, int64_t na, const float *b, int64_t nb, float *y);
void q8_ref_relu(const float *x, float *y, int64_t n);
void q8_ref_gelu(const float *x, float *y, int64_t n);
void q8_ref_softmax(const float *x, float *y, int64_t rows, int64_t cols);
void q8_ref_layernorm(const float *x, const float *gamma, const float *beta, double eps, float *y,
                      int64_t rows, int64_t cols);
/* y = numpy.transpose(x, perm) for 4-byte elements; dims are x's. */
void q8_ref_transpose(const float *x, float *y, int rank, const int64_t *dims, const int64_t *perm);

/* ---- quantized ops ---- */

int32_t q8_ref_quantize_value(float x, float scale, int32_t zp, int32_t qmin, int32_t qmax);
int32_t q8_ref_requantize(int32_t acc, float mult, int32_t zp, int32_t qmin, int32_t qmax);
/* x [rows, cols] dense -> q (int8 when is_signed, else uint8), bounds
 * [qmin, qmax]. */
void q8_ref_quantize(const float *x, void *q, int64_t q_stride, int64_t rows, int64_t cols,
                     float scale, int32_t zp, int32_t qmin, int32_t qmax, int is_signed);
void q8_ref_dequantize(const void *q, int64_t q_stride, float *y, int64_t rows, int64_t cols,
                       float scale, int32_t zp, int is_signed);
/* qgemm on quantized x (int8 when x_signed, else uint8): y is uint8, int8
 * (y_dtype 3 or 2, Q8_DTYPE_*) requantized to [y_min, y_max] around zp, or
 * f32 (y_dtype 1) with optional relu. Accumulation wraps in int32. */
void q8_ref_qgemm(const void *x, int64_t x_stride, int x_signed, const int8_t *w,
                  const int32_t *bias, const float *mult, void *y, int64_t y_stride, int y_dtype,
                  int64_t m, int64_t k, int64_t n, int32_t zp, int32_t y_min, int32_t y_max,
                  int relu);
/* qlinear_dyn: per-row dynamic quantization of x, w_scale_len 1 or n, b may
 * be NULL. */
void q8_ref_qlinear_dyn(const float *x, const int8_t *w, const float *w_scale,
                        int64_t w_scale_len, const float *b, float *y, int64_t m, int64_t k,
                        int64_t n);

#endif
