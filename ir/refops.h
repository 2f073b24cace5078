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

/* The function types, from refops.def: q8_ref_linear_fn and so on. Each
 * function below is declared with its type, so its definition (refops.c),
 * the LLVM types of the calls to it (codegen/refcall.c) and the JIT's
 * symbol list (codegen/jit.c) all come from that one table. */
#if defined(PTR) || defined(I64) || defined(I32) || defined(INT) || defined(F32) || \
    defined(F64) || defined(REFOP)
#error "refops.h uses PTR, I64, I32, INT, F32, F64 and REFOP for refops.def: include it first"
#endif
#define Q8_REF_RET_VOID void
#define Q8_REF_RET_I32 int32_t
#define PTR(ctype, name) ctype *name
#define I64(name) int64_t name
#define I32(name) int32_t name
#define INT(name) int name
#define F32(name) float name
#define F64(name) double name
#define REFOP(ret, name, args) typedef Q8_REF_RET_##ret name##_fn args;
#include "refops.def"
#undef REFOP
#undef PTR
#undef I64
#undef I32
#undef INT
#undef F32
#undef F64
#undef Q8_REF_RET_VOID
#undef Q8_REF_RET_I32

/* ---- f32 ops ---- */

/* y[m, n] = x[m, k] W[n, k]^T + b[n] (b may be NULL), summed in double. */
q8_ref_linear_fn q8_ref_linear;
/* y[batch, m, n] = a[batch, m, k] b[k, n] (b_batched: b[batch, k, n]). */
q8_ref_matmul_fn q8_ref_matmul;
/* Elementwise with trailing broadcast: the shorter operand (na or nb
 * elements) repeats over the longer; y has max(na, nb) elements. */
q8_ref_add_fn q8_ref_add;
q8_ref_mul_fn q8_ref_mul;
/* y[i] = f(x[i]) for i < n. */
q8_ref_relu_fn q8_ref_relu;
q8_ref_gelu_fn q8_ref_gelu;
/* Over each of `rows` rows of `cols` values. */
q8_ref_softmax_fn q8_ref_softmax;
q8_ref_layernorm_fn q8_ref_layernorm;
/* y = numpy.transpose(x, perm) for 4-byte elements; dims are x's. */
q8_ref_transpose_fn q8_ref_transpose;

/* ---- quantized ops ---- */

/* One value, as docs/quantization.md states: quantize(x) and
 * requantize(acc) into [qmin, qmax] around zp. */
q8_ref_quantize_value_fn q8_ref_quantize_value;
q8_ref_requantize_fn q8_ref_requantize;
/* x [rows, cols] dense -> q (int8 when is_signed, else uint8), bounds
 * [qmin, qmax]. */
q8_ref_quantize_fn q8_ref_quantize;
/* q [rows, cols] (int8 when is_signed, else uint8, rows q_stride bytes
 * apart) -> dense f32 y: (q - zp) * scale. */
q8_ref_dequantize_fn q8_ref_dequantize;
/* qgemm on quantized x (int8 when x_signed, else uint8): y is uint8, int8
 * (y_dtype 3 or 2, Q8_DTYPE_*) requantized to [y_min, y_max] around zp, or
 * f32 (y_dtype 1) with optional relu. Accumulation wraps in int32. */
q8_ref_qgemm_fn q8_ref_qgemm;
/* qlinear_dyn: per-row dynamic quantization of x, w_scale_len 1 or n, b may
 * be NULL. */
q8_ref_qlinear_dyn_fn q8_ref_qlinear_dyn;
/* qmatmul: `batch` products x[M, K] b[K, N] of quantized x and b (int8 when
 * *_signed, else uint8; x's rows x_stride bytes apart, b's b_stride), the
 * matrices one after the other, with zero points x_zp and b_zp subtracted
 * before the multiply. y as q8_ref_qgemm's, with one multiplier. */
q8_ref_qmatmul_fn q8_ref_qmatmul;
/* qmatmul_dyn: f32 x [batch, M, K] and b [batch, K, N], each row of x and
 * each matrix of b quantized to u8 with its own range; `work` holds
 * K * N + K bytes. */
q8_ref_qmatmul_dyn_fn q8_ref_qmatmul_dyn;

#endif
