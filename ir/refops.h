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
/* y[i..., m, n] = sum_k a[i..., m, k] b[i..., k, n] over the batch index
 * i... of batch_rank axes of sizes batch_dims: the matrices of a and b
 * for index i start at sum_j i_j a_strides[j] (b_strides[j]) elements, a
 * stride of 0 repeating one matrix along that axis (numpy broadcasting; a
 * shared B[K, N] has all strides 0). y is dense. Summed in double. */
q8_ref_matmul_fn q8_ref_matmul;
/* Elementwise y[i] = a[i . a_strides] op b[i . b_strides] for every index i
 * of the dense result y of `rank` axes of sizes `dims` (rank 0: one value):
 * strides are in elements, 0 along an axis an operand broadcasts over
 * (numpy broadcasting). One f32 operation per element. */
q8_ref_add_fn q8_ref_add;
q8_ref_mul_fn q8_ref_mul;
q8_ref_sub_fn q8_ref_sub;
q8_ref_div_fn q8_ref_div;
/* y[i] = f(x[i]) for i < n. */
q8_ref_relu_fn q8_ref_relu;
q8_ref_gelu_fn q8_ref_gelu;
q8_ref_sigmoid_fn q8_ref_sigmoid;
q8_ref_tanh_fn q8_ref_tanh;
q8_ref_silu_fn q8_ref_silu;
q8_ref_gelu_tanh_fn q8_ref_gelu_tanh;
/* Over each of `rows` rows of `cols` values. */
q8_ref_softmax_fn q8_ref_softmax;
q8_ref_layernorm_fn q8_ref_layernorm;
/* Softmax over the middle axis of [outer, len, inner]; causal_rows > 0
 * masks key j > i + (len - causal_rows) of query row i (refops.c). */
q8_ref_softmax_axis_fn q8_ref_softmax_axis;
/* x / sqrt(mean(x^2) + eps) * gamma over each of `rows` rows. */
q8_ref_rmsnorm_fn q8_ref_rmsnorm;
/* Embedding lookup: y[n, dim] = table[ids[i]] (ids int64 when ids_i64, else
 * int32). Returns 0, or 1 + the position of the first id outside [0, vocab)
 * (saturated at INT32_MAX) with y untouched. */
q8_ref_gather_fn q8_ref_gather;
/* Strided copy of `rows` rows of row_bytes bytes (concat, slice). */
q8_ref_copy_rows_fn q8_ref_copy_rows;
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
/* qlinear_dyn {granularity = tensor}: x [m, k] quantized to u8 with one
 * scale for the whole tensor, ONNX's DynamicQuantizeLinear arithmetic, and
 * the weight's zero point w_zp subtracted from w. */
q8_ref_qlinear_dyn_tensor_fn q8_ref_qlinear_dyn_tensor;
/* qmatmul: `batch` products x[M, K] b[K, N] of quantized x and b (int8 when
 * *_signed, else uint8; x's rows x_stride bytes apart, b's b_stride), the
 * matrices one after the other, with zero points x_zp and b_zp subtracted
 * before the multiply. y as q8_ref_qgemm's, with one multiplier. */
q8_ref_qmatmul_fn q8_ref_qmatmul;
/* qlinear_grp (docs/quantization.md, "Weight formats"): each row of x
 * quantized to u8 as qlinear_dyn's, w [n, k] with one scale (and, when
 * w_zero is not NULL, one zero point) per `group` inputs of each output:
 * y[n] = sum over the groups in order of f32(sx * w_scale) * f32(acc), + b. */
q8_ref_qlinear_grp_fn q8_ref_qlinear_grp;
/* qmatmul_dyn: f32 x [batch, M, K] and b [batch, K, N], each row of x and
 * each matrix of b quantized to u8 with its own range; `work` holds
 * K * N + K bytes. */
q8_ref_qmatmul_dyn_fn q8_ref_qmatmul_dyn;

/* qlinear_outl (docs/quantization.md, "Outlier decomposition"):
 * q8_ref_outl_detect lists in cols[] (ascending) the columns of x [m, k]
 * where some |x| >= threshold and returns their count; when it is not 0,
 * xz receives x with those columns set to +0 (else xz is untouched).
 * q8_ref_outl_correct adds to y [m, n] (rows y_stride floats apart) the f32
 * sum over the listed columns c, ascending, of x[i, c] * wt[c, n] (wt is
 * W^T in f32, [k, n]); nothing when count is 0. q8_ref_qlinear_outl is the
 * op: detect, qlinear_dyn of xz (or x), correct; `work` holds
 * m * k floats and k int32. */
q8_ref_outl_detect_fn q8_ref_outl_detect;
q8_ref_outl_correct_fn q8_ref_outl_correct;
q8_ref_qlinear_outl_fn q8_ref_qlinear_outl;
/* ---- 4-bit weights (NF4, FP4) ---- */

/* The code tables, [0] NF4 and [1] FP4 (bitsandbytes'), and the signed
 * dynamic 8-bit map of the double-quantized block maxima. */
extern const float q8_ref_4bit_tables[2][16];
extern const float q8_ref_dq_map[256];
/* linear_4bit: y[m, n] = sum_k x[m, k] w[n, k] (+ b[n], b may be NULL),
 * w[n, k] = table[code][c] * absmax[n, k / block] in f32, c the 4-bit code
 * of k in w's row (k / 2 bytes a row, even k in the low nibble). absmax is
 * f32 [n * k / block], or with absmax2 non-NULL its u8 double-quantized
 * codes: absmax = dq_map[q] * absmax2[g / 256] + absmax2[last] (the mean).
 * The sum over k in the order of docs/float.md's reductions. */
q8_ref_linear_4bit_fn q8_ref_linear_4bit;

#endif
