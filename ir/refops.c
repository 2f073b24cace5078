/* refops.c: the reference arithmetic of every op, on plain arrays
 * (refops.h). The interpreter (interp.c) checks a node's operands and calls
 * these; compiled models link the same object code from libq8support.a for
 * the layers that have no generated kernel. So there is one definition of
 * each op's arithmetic, and docs/ir.md and docs/quantization.md describe it.
 *
 * Only libc and libm, no IR types: this file is compiled alone for every
 * target. Nothing here allocates, so nothing here can fail; the caller
 * guarantees the shapes (the interpreter checks them against the node).
 *
 * The float ops compute in float32 with the approximations of fmath.h and
 * the reduction order of docs/float.md, one IEEE operation at a time, so
 * the vector code of codegen/floatops.c gives the same bits; linear and
 * matmul sum each output in float32 over k in order, a multiply then an
 * add per term, the bias last (codegen/f32gemm.c's order).
 * The quantized ops are exact: int32 accumulators with two's-complement
 * wraparound, computed in uint32 where wrapping is defined; every float
 * expression is one IEEE operation stored into a float variable, never
 * contracted into a fused multiply-add. */

/* No contraction of a * b + c into an FMA: it would round once where the
 * quantized semantics round twice. GCC ignores the standard pragma (and warns
 * about it under -Wall, silenced here) but does not contract in ISO C mode,
 * which the build uses (-std=c11 without extensions, and -ffp-contract=off). */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunknown-pragmas"
#pragma STDC FP_CONTRACT OFF
#pragma GCC diagnostic pop

#include <math.h>
#include <stdint.h>
#include <string.h>

#include "fmath.h"
#include "refops.h"

/* The y_dtype codes of q8_ref_qgemm: Q8_DTYPE_* of include/q8model.h, which
 * this file does not include (it belongs to the compiled-model ABI). */
enum { DTYPE_F32 = 1, DTYPE_I8 = 2, DTYPE_U8 = 3 };

/* The IR's rank limit (IR_MAX_RANK in ir.h), for q8_ref_transpose's index
 * arrays. */
enum { MAX_RANK = 8 };

/* ---- f32 ops ---- */

/* What linear and matmul write for a NaN sum: the positive quiet NaN
 * 0x7fc00000. Which NaN an IEEE add or multiply of two NaNs returns depends
 * on the operands' order (x86 keeps the first one's, and LLVM may swap the
 * operands of the commutative fadd and fmul) and on the hardware (the default
 * NaN of inf - inf is 0xffc00000 on x86, 0x7fc00000 on Arm), so the kernels
 * of codegen/f32gemm.c write this one NaN, as this does (docs/float.md). */
static float gemm_out(float acc) {
  if (acc == acc)
    return acc;
  uint32_t bits = 0x7fc00000u;
  memcpy(&acc, &bits, sizeof acc);
  return acc;
}

void q8_ref_linear(const float *x, const float *w, const float *b, float *y, int64_t m,
                   int64_t k, int64_t n) {
  for (int64_t i = 0; i < m; i++) {
    const float *xi = x + i * k;
    for (int64_t j = 0; j < n; j++) {
      const float *wj = w + j * k;
      float acc = 0;
      for (int64_t l = 0; l < k; l++) {
        float p = xi[l] * wj[l];
        acc = acc + p;
      }
      if (b)
        acc = acc + b[j];
      y[i * n + j] = gemm_out(acc);
    }
  }
}

/* The batch index walks the result's batch axes in order, with the offsets
 * of a's and b's matrices kept up to date as in q8_ref_transpose. */
void q8_ref_matmul(const float *a, const int64_t *a_strides, const float *b,
                   const int64_t *b_strides, float *y, int batch_rank, const int64_t *batch_dims,
                   int64_t m, int64_t k, int64_t n) {
  if (batch_rank < 0 || batch_rank > MAX_RANK)
    return;
  int64_t batch = 1, idx[MAX_RANK] = {0}, ao = 0, bo = 0;
  for (int i = 0; i < batch_rank; i++)
    batch *= batch_dims[i];
  for (int64_t bi = 0; bi < batch; bi++) {
    const float *ab = a + ao, *bb = b + bo;
    float *yb = y + bi * m * n;
    for (int64_t i = 0; i < m; i++)
      for (int64_t j = 0; j < n; j++) {
        float acc = 0;
        for (int64_t l = 0; l < k; l++) {
          float p = ab[i * k + l] * bb[l * n + j];
          acc = acc + p;
        }
        yb[i * n + j] = gemm_out(acc);
      }
    /* Advance the batch index, carrying into earlier axes. */
    for (int d = batch_rank - 1; d >= 0; d--) {
      ao += a_strides[d];
      bo += b_strides[d];
      if (++idx[d] < batch_dims[d])
        break;
      ao -= idx[d] * a_strides[d];
      bo -= idx[d] * b_strides[d];
      idx[d] = 0;
    }
  }
}

/* The elementwise binary ops, one loop for all four: the innermost axis
 * runs as a plain loop (the operation chosen outside it), the outer axes
 * advance an index as q8_ref_transpose does. An empty result writes
 * nothing; a scalar result is one element. */
typedef enum { BIN_ADD, BIN_SUB, BIN_MUL, BIN_DIV } BinOp;

static void binary(BinOp op, const float *a, const int64_t *as, const float *b,
                   const int64_t *bs, float *y, int rank, const int64_t *dims) {
  if (rank < 0 || rank > MAX_RANK)
    return;
  int64_t numel = 1;
  for (int i = 0; i < rank; i++)
    numel *= dims[i];
  if (numel == 0)
    return;
  int64_t inner = rank ? dims[rank - 1] : 1, ai = rank ? as[rank - 1] : 0,
          bi = rank ? bs[rank - 1] : 0;
  int64_t idx[MAX_RANK] = {0}, ao = 0, bo = 0;
  for (int64_t e = 0; e < numel; e += inner) {
    const float *ar = a + ao, *br = b + bo;
    float *yr = y + e;
    switch (op) {
    case BIN_ADD:
      for (int64_t j = 0; j < inner; j++)
        yr[j] = ar[j * ai] + br[j * bi];
      break;
    case BIN_SUB:
      for (int64_t j = 0; j < inner; j++)
        yr[j] = ar[j * ai] - br[j * bi];
      break;
    case BIN_MUL:
      for (int64_t j = 0; j < inner; j++)
        yr[j] = ar[j * ai] * br[j * bi];
      break;
    case BIN_DIV:
      for (int64_t j = 0; j < inner; j++)
        yr[j] = ar[j * ai] / br[j * bi];
      break;
    }
    /* Advance the index of the outer axes, carrying into earlier ones. */
    for (int d = rank - 2; d >= 0; d--) {
      ao += as[d];
      bo += bs[d];
      if (++idx[d] < dims[d])
        break;
      ao -= idx[d] * as[d];
      bo -= idx[d] * bs[d];
      idx[d] = 0;
    }
  }
}

void q8_ref_add(const float *a, const int64_t *a_strides, const float *b,
                const int64_t *b_strides, float *y, int rank, const int64_t *dims) {
  binary(BIN_ADD, a, a_strides, b, b_strides, y, rank, dims);
}

void q8_ref_mul(const float *a, const int64_t *a_strides, const float *b,
                const int64_t *b_strides, float *y, int rank, const int64_t *dims) {
  binary(BIN_MUL, a, a_strides, b, b_strides, y, rank, dims);
}

void q8_ref_relu(const float *x, float *y, int64_t n) {
  /* Written as a comparison that is false for NaN, so NaN passes through as
   * numpy's maximum lets it. */
  for (int64_t i = 0; i < n; i++)
    y[i] = x[i] < 0 ? 0.0f : x[i];
}

/* The exact erf form, not the tanh approximation some frameworks use; the
 * float32 arithmetic of docs/float.md (fmath.h). */
void q8_ref_gelu(const float *x, float *y, int64_t n) {
  for (int64_t i = 0; i < n; i++)
    y[i] = q8f_gelu(x[i]);
}

/* The sum of expr over j in [0, n) in the order of docs/float.md (fmath.h):
 * Q8F_SUM_LANES interleaved partial sums, combined in halving steps, then
 * the rest of the row in order. */
#define ROW_SUM(out, n, j, expr)                                                                  \
  do {                                                                                           \
    float p_[Q8F_SUM_LANES] = {0};                                                               \
    int64_t nb_ = (n) - (n) % Q8F_SUM_LANES, j = 0;                                              \
    for (; j < nb_; j++)                                                                         \
      p_[j % Q8F_SUM_LANES] = p_[j % Q8F_SUM_LANES] + (expr);                                    \
    for (int h_ = Q8F_SUM_LANES / 2; h_ >= 1; h_ /= 2)                                           \
      for (int i_ = 0; i_ < h_; i_++)                                                            \
        p_[i_] = p_[i_] + p_[i_ + h_];                                                           \
    float r_ = p_[0];                                                                            \
    for (; j < (n); j++)                                                                         \
      r_ = r_ + (expr);                                                                          \
    (out) = r_;                                                                                  \
  } while (0)

/* Over each row: q8_ref_softmax_axis with inner = 1. */
void q8_ref_softmax(const float *x, float *y, int64_t rows, int64_t cols) {
  q8_ref_softmax_axis(x, y, rows, cols, 1, 0);
}

/* Softmax over the middle axis of x [outer, len, inner], on each of the
 * outer * inner lines, in float32 (docs/float.md): m = the line's maximum
 * (NaN when it holds one), y_j = exp(x_j - m) (q8f_exp), s = their sum in
 * the order of ROW_SUM, y_j = y_j / s. causal_rows > 0 (inner must be 1):
 * the rows are queries i = row % causal_rows over len keys, and key j > i +
 * (len - causal_rows) (the keys of a past come first) gets weight 0; it is
 * left out of the maximum and the sum. */
void q8_ref_softmax_axis(const float *x, float *y, int64_t outer, int64_t len, int64_t inner,
                         int64_t causal_rows) {
  for (int64_t o = 0; o < outer; o++)
    for (int64_t c = 0; c < inner; c++) {
      const float *xi = x + o * len * inner + c;
      float *yi = y + o * len * inner + c;
      int64_t upto = len; /* keys [0, upto) take part */
      if (causal_rows > 0) {
        upto = o % causal_rows + (len - causal_rows) + 1;
        upto = upto < 0 ? 0 : upto > len ? len : upto;
      }
      float max = -INFINITY, sum;
      for (int64_t j = 0; j < upto; j++)
        if (xi[j * inner] > max || q8f_isnan(xi[j * inner]))
          max = xi[j * inner];
      for (int64_t j = 0; j < upto; j++)
        yi[j * inner] = q8f_exp(xi[j * inner] - max);
      ROW_SUM(sum, upto, j, yi[j * inner]);
      for (int64_t j = 0; j < upto; j++)
        yi[j * inner] = yi[j * inner] / sum;
      for (int64_t j = upto; j < len; j++)
        yi[j * inner] = 0.0f;
    }
}

/* x * (1 / sqrt(mean(x^2) + eps)) * gamma over each row, in float32 with
 * the sum of ROW_SUM (docs/float.md). */
void q8_ref_rmsnorm(const float *x, const float *gamma, double eps, float *y, int64_t rows,
                    int64_t cols) {
  float e = (float)eps, n = (float)cols;
  for (int64_t i = 0; i < rows; i++) {
    const float *xi = x + i * cols;
    float *yi = y + i * cols, ss;
    ROW_SUM(ss, cols, j, xi[j] * xi[j]);
    float inv = 1.0f / sqrtf(ss / n + e);
    for (int64_t j = 0; j < cols; j++)
      yi[j] = (xi[j] * inv) * gamma[j];
  }
}

/* y[i, :] = table[ids[i], :]. Every id is checked before anything is read:
 * an id outside [0, vocab) returns 1 + its position (saturated at
 * INT32_MAX) and leaves y unwritten. */
int32_t q8_ref_gather(const float *table, int64_t vocab, int64_t dim, const void *ids,
                      int ids_i64, int64_t n, float *y) {
  for (int64_t i = 0; i < n; i++) {
    int64_t id = ids_i64 ? ((const int64_t *)ids)[i] : ((const int32_t *)ids)[i];
    if (id < 0 || id >= vocab)
      return i < INT32_MAX - 1 ? (int32_t)(i + 1) : INT32_MAX;
  }
  for (int64_t i = 0; i < n; i++) {
    int64_t id = ids_i64 ? ((const int64_t *)ids)[i] : ((const int32_t *)ids)[i];
    memcpy(y + i * dim, table + id * dim, (size_t)dim * sizeof *y);
  }
  return 0;
}

/* `rows` rows of row_bytes bytes, x_stride and y_stride bytes apart: the
 * data movement of concat and slice, for any element type. */
void q8_ref_copy_rows(const void *x, int64_t x_stride, void *y, int64_t y_stride, int64_t rows,
                      int64_t row_bytes) {
  for (int64_t i = 0; i < rows; i++)
    memcpy((char *)y + i * y_stride, (const char *)x + i * x_stride, (size_t)row_bytes);
}

/* Over each row, with the biased variance (divide by cols, as numpy's var()
 * and every framework's layernorm do), in float32 with the sums of ROW_SUM
 * (docs/float.md): mean = sum(x) / n, d = x - mean, var = sum(d d) / n,
 * y = d * (1 / sqrt(var + eps)) * gamma + beta. */
void q8_ref_layernorm(const float *x, const float *gamma, const float *beta, double eps, float *y,
                      int64_t rows, int64_t cols) {
  float e = (float)eps, n = (float)cols;
  for (int64_t i = 0; i < rows; i++) {
    const float *xi = x + i * cols;
    float *yi = y + i * cols, mean, var;
    ROW_SUM(mean, cols, j, xi[j]);
    mean = mean / n;
    ROW_SUM(var, cols, j, (xi[j] - mean) * (xi[j] - mean));
    var = var / n;
    float inv = 1.0f / sqrtf(var + e);
    for (int64_t j = 0; j < cols; j++)
      yi[j] = ((xi[j] - mean) * inv) * gamma[j] + beta[j];
  }
}

/* y[i_0, ..., i_{r-1}] = x[j] where j[perm[k]] = i_k. The loop walks y in
 * order, keeping y's index as a counter and the matching offset into x up to
 * date. `perm` must list each axis 0..rank-1 once; a rank beyond the IR's
 * limit writes nothing. */
void q8_ref_transpose(const float *x, float *y, int rank, const int64_t *dims, const int64_t *perm) {
  if (rank < 0 || rank > MAX_RANK)
    return;
  int64_t xstride[MAX_RANK], ydims[MAX_RANK], idx[MAX_RANK] = {0}, off = 0;
  int64_t stride = 1, numel = 1;
  for (int i = rank - 1; i >= 0; i--) {
    xstride[i] = stride;
    stride *= dims[i];
  }
  for (int i = 0; i < rank; i++) {
    ydims[i] = dims[perm[i]];
    numel *= ydims[i];
  }
  /* When the last axis stays last (attention's [B, T, H, hd] <-> [B, H, T,
   * hd]), each run of it is contiguous in both: copy runs, walk the rest. */
  int64_t run = 1;
  int walk = rank;
  if (rank > 0 && perm[rank - 1] == rank - 1) {
    run = dims[rank - 1];
    walk = rank - 1;
    if (run == 0)
      return;
  }
  for (int64_t e = 0; e < numel; e += run) {
    memcpy(y + e, x + off, (size_t)run * sizeof *y);
    /* Advance y's index, carrying into earlier axes. */
    for (int k = walk - 1; k >= 0; k--) {
      off += xstride[perm[k]];
      if (++idx[k] < ydims[k])
        break;
      off -= idx[k] * xstride[perm[k]];
      idx[k] = 0;
    }
  }
}

/* ---- the transformer ops: sub, div, sigmoid, tanh, silu, gelu (tanh) ---- */

void q8_ref_sub(const float *a, const int64_t *a_strides, const float *b,
                const int64_t *b_strides, float *y, int rank, const int64_t *dims) {
  binary(BIN_SUB, a, a_strides, b, b_strides, y, rank, dims);
}

void q8_ref_div(const float *a, const int64_t *a_strides, const float *b,
                const int64_t *b_strides, float *y, int rank, const int64_t *dims) {
  binary(BIN_DIV, a, a_strides, b, b_strides, y, rank, dims);
}

/* The activations below are the float32 arithmetic of docs/float.md
 * (fmath.h); each returns a NaN input as it is. */
void q8_ref_sigmoid(const float *x, float *y, int64_t n) {
  for (int64_t i = 0; i < n; i++)
    y[i] = q8f_sigmoid(x[i]);
}

void q8_ref_tanh(const float *x, float *y, int64_t n) {
  for (int64_t i = 0; i < n; i++)
    y[i] = q8f_tanh(x[i]);
}

/* x * sigmoid(x), written as one division. */
void q8_ref_silu(const float *x, float *y, int64_t n) {
  for (int64_t i = 0; i < n; i++)
    y[i] = q8f_silu(x[i]);
}

/* The tanh approximation of gelu (`gelu {approximate = tanh}`), PyTorch's
 * gelu(approximate='tanh'), as x * sigmoid(2 u) = 0.5 x (1 + tanh u). */
void q8_ref_gelu_tanh(const float *x, float *y, int64_t n) {
  for (int64_t i = 0; i < n; i++)
    y[i] = q8f_gelu_tanh(x[i]);
}

/* ---- quantized ops ---- */

int32_t q8_ref_quantize_value(float x, float scale, int32_t zp, int32_t qmin, int32_t qmax) {
  float v = x / scale;
  if (isnan(v))
    return zp;
  float r = rintf(v);
  float lo = (float)(qmin - zp), hi = (float)(qmax - zp);
  r = r < lo ? lo : r > hi ? hi : r;
  return (int32_t)r + zp;
}

int32_t q8_ref_requantize(int32_t acc, float mult, int32_t zp, int32_t qmin, int32_t qmax) {
  float r = rintf((float)acc * mult);
  float lo = (float)(qmin - zp), hi = (float)(qmax - zp);
  if (isnan(r))
    return zp;
  r = r < lo ? lo : r > hi ? hi : r;
  return (int32_t)r + zp;
}

/* The int32 with the bits of `u`: the two's-complement wraparound of the
 * accumulators, without the implementation-defined unsigned-to-signed cast. */
static int32_t wrap_i32(uint32_t u) {
  return u <= INT32_MAX ? (int32_t)u : -(int32_t)(UINT32_MAX - u) - 1;
}

/* q was clamped to [qmin, qmax] (inside the type's range), so the conversion
 * is exact. */
void q8_ref_quantize(const float *x, void *q, int64_t q_stride, int64_t rows, int64_t cols,
                     float scale, int32_t zp, int32_t qmin, int32_t qmax, int is_signed) {
  for (int64_t i = 0; i < rows; i++) {
    const float *xi = x + i * cols;
    for (int64_t j = 0; j < cols; j++) {
      int32_t v = q8_ref_quantize_value(xi[j], scale, zp, qmin, qmax);
      if (is_signed)
        ((int8_t *)q)[i * q_stride + j] = (int8_t)v;
      else
        ((uint8_t *)q)[i * q_stride + j] = (uint8_t)v;
    }
  }
}

/* y = (float)(q - zp) * scale: one f32 multiply. */
void q8_ref_dequantize(const void *q, int64_t q_stride, float *y, int64_t rows, int64_t cols,
                       float scale, int32_t zp, int is_signed) {
  for (int64_t i = 0; i < rows; i++)
    for (int64_t j = 0; j < cols; j++) {
      int64_t e = i * q_stride + j;
      int32_t qv = is_signed ? ((const int8_t *)q)[e] : ((const uint8_t *)q)[e];
      float v = (float)(qv - zp);
      y[i * cols + j] = v * scale;
    }
}

/* docs/quantization.md, "The quantized linear layer":
 *   acc[m, n] = bias[n] + sum_k x[m, k] w[n, k]   (int32, wrapping)
 *   y = requantize(acc, mult[n], zp, y_min, y_max), or (float)acc * mult[n]
 * The input's zero point is in bias already, so x is used as it is. Only the
 * first k bytes of each row of x are read; y_stride counts elements of y
 * (floats when y_dtype is f32). */
void q8_ref_qgemm(const void *x, int64_t x_stride, int x_signed, const int8_t *w,
                  const int32_t *bias, const float *mult, void *y, int64_t y_stride, int y_dtype,
                  int64_t m, int64_t k, int64_t n, int32_t zp, int32_t y_min, int32_t y_max,
                  int relu) {
  for (int64_t i = 0; i < m; i++) {
    const int8_t *xs = (const int8_t *)x + i * x_stride;
    const uint8_t *xu = (const uint8_t *)x + i * x_stride;
    for (int64_t j = 0; j < n; j++) {
      /* Multiply-accumulate in uint32, where wraparound is defined. Each
       * product (at most 255 * 128 in magnitude) is exact in int32. */
      const int8_t *wj = w + j * k;
      uint32_t acc = (uint32_t)bias[j];
      if (x_signed)
        for (int64_t l = 0; l < k; l++)
          acc += (uint32_t)((int32_t)xs[l] * (int32_t)wj[l]);
      else
        for (int64_t l = 0; l < k; l++)
          acc += (uint32_t)((int32_t)xu[l] * (int32_t)wj[l]);
      int32_t s = wrap_i32(acc);
      int64_t e = i * y_stride + j;
      /* Requantize, or scale to f32 (relu there maps -0.0 and NaN to +0.0). */
      if (y_dtype == DTYPE_U8) {
        ((uint8_t *)y)[e] = (uint8_t)q8_ref_requantize(s, mult[j], zp, y_min, y_max);
      } else if (y_dtype == DTYPE_I8) {
        ((int8_t *)y)[e] = (int8_t)q8_ref_requantize(s, mult[j], zp, y_min, y_max);
      } else if (y_dtype == DTYPE_F32) {
        float v = (float)s * mult[j];
        if (relu)
          v = v > 0 ? v : 0.0f;
        ((float *)y)[e] = v;
      }
    }
  }
}

/* Tiles of qlinear_dyn: the accumulators of NB outputs and KB quantized
 * inputs live on the stack, so the function needs no allocation. */
enum { DYN_NB = 128, DYN_KB = 512 };

/* One row of qlinear_dyn once its quantization (sx, zx) is known, in tiles:
 *   acc[n] = sum_k (xq - zx) (w[n, k] - w_zp)   (int32, wrapping)
 *   y[n] = (float)acc * (sx * w_scale[n]) + b[n], each operation in f32
 * The row is quantized one tile of K at a time for each tile of N (so up to
 * ceil(n / DYN_NB) times: the same values each time). Wrapping sums give the
 * same bits however they are split. */
static void dyn_row(const float *xi, float sx, int32_t zx, const int8_t *w, int32_t w_zp,
                    const float *w_scale, int64_t w_scale_len, const float *b, float *yi,
                    int64_t k, int64_t n) {
  for (int64_t j0 = 0; j0 < n; j0 += DYN_NB) {
    int64_t nb = n - j0 < DYN_NB ? n - j0 : DYN_NB;
    uint32_t acc[DYN_NB] = {0};
    for (int64_t l0 = 0; l0 < k; l0 += DYN_KB) {
      int64_t kb = k - l0 < DYN_KB ? k - l0 : DYN_KB;
      /* A tile of the row quantized, less its zero point. */
      int32_t xq[DYN_KB];
      for (int64_t l = 0; l < kb; l++)
        xq[l] = q8_ref_quantize_value(xi[l0 + l], sx, zx, 0, 255) - zx;
      /* Multiply-accumulate in uint32, where wraparound is defined. */
      for (int64_t j = 0; j < nb; j++) {
        const int8_t *wj = w + (j0 + j) * k + l0;
        for (int64_t l = 0; l < kb; l++)
          acc[j] += (uint32_t)(xq[l] * ((int32_t)wj[l] - w_zp));
      }
    }
    /* Scale back to f32 and add the bias: three separate roundings. */
    for (int64_t j = 0; j < nb; j++) {
      float t = sx * w_scale[w_scale_len == 1 ? 0 : j0 + j];
      float v = (float)wrap_i32(acc[j]) * t;
      if (b)
        v = v + b[j0 + j];
      yi[j0 + j] = v;
    }
  }
}

/* docs/quantization.md, "Dynamic quantization": each row of x quantized to
 * u8 with its own range,
 *   [lo, hi] = the row's finite range widened to include 0
 *   sx = (hi - lo) / 255 (1 when below 1e-30), zx = rint(-lo / sx) in [0, 255]
 *   acc[n] = sum_k (xq - zx) w[n, k]   (int32, wrapping)
 *   y = (float)acc * (sx * w_scale[n]) + b[n], each operation in f32
 * (dyn_row). */
void q8_ref_qlinear_dyn(const float *x, const int8_t *w, const float *w_scale,
                        int64_t w_scale_len, const float *b, float *y, int64_t m, int64_t k,
                        int64_t n) {
  for (int64_t i = 0; i < m; i++) {
    const float *xi = x + i * k;
    /* The row's range over its finite elements, widened to include 0. */
    float lo = 0, hi = 0;
    for (int64_t l = 0; l < k; l++)
      if (isfinite(xi[l])) {
        lo = xi[l] < lo ? xi[l] : lo;
        hi = xi[l] > hi ? xi[l] : hi;
      }
    /* u8 parameters for the row. */
    float sx = (float)(((double)hi - (double)lo) / 255.0);
    if (!(sx >= 1e-30))
      sx = 1.0f;
    double zd = rint(-(double)lo / (double)sx);
    int32_t zx = (int32_t)fmin(fmax(zd, 0.0), 255.0);
    dyn_row(xi, sx, zx, w, 0, w_scale, w_scale_len, b, y + i * n, k, n);
  }
}

/* ONNX's DynamicQuantizeLinear parameters of `count` values (ONNX Runtime's
 * GetQuantizationParameter), each operation in f32:
 *   lo = min(0, min of the finite v), hi = max(0, max of the finite v)
 *   s = 1 when hi == lo (v all zeros), else (hi - lo) / 255
 *   z = rint(max(0, min(255, 0 - lo / s)))   (std::min/std::max: NaN -> 255) */
static void dyn_tensor_params(const float *v, int64_t count, float *s, int32_t *z) {
  float lo = 0, hi = 0;
  for (int64_t l = 0; l < count; l++)
    if (isfinite(v[l])) {
      lo = v[l] < lo ? v[l] : lo;
      hi = v[l] > hi ? v[l] : hi;
    }
  float sv = hi == lo ? 1.0f : (hi - lo) / 255.0f;
  float zf = 0.0f - lo / sv;
  zf = zf < 255.0f ? zf : 255.0f;
  zf = 0.0f < zf ? zf : 0.0f;
  *s = sv;
  *z = (int32_t)rintf(zf);
}

/* docs/quantization.md, "ONNX's DynamicQuantizeLinear": x quantized to u8
 * with one scale and zero point for all its m rows (dyn_tensor_params),
 *   acc[n] = sum_k (xq - zx) (w[n, k] - w_zp)   (int32, wrapping)
 *   y = (float)acc * (sx * w_scale[n]) + b[n], each operation in f32
 * (dyn_row). */
void q8_ref_qlinear_dyn_tensor(const float *x, const int8_t *w, const float *w_scale,
                               int64_t w_scale_len, int32_t w_zp, const float *b, float *y,
                               int64_t m, int64_t k, int64_t n) {
  float sx;
  int32_t zx;
  dyn_tensor_params(x, m * k, &sx, &zx);
  for (int64_t i = 0; i < m; i++)
    dyn_row(x + i * k, sx, zx, w, w_zp, w_scale, w_scale_len, b, y + i * n, k, n);
}

/* ---- qmatmul: the matmul of two activations ---- */

/* Element i of a quantized buffer, int8 when is_signed, else uint8. */
static int32_t qload(const void *p, int64_t i, int is_signed) {
  return is_signed ? ((const int8_t *)p)[i] : ((const uint8_t *)p)[i];
}

/* docs/quantization.md, "Quantized matmul of two activations":
 *   acc[m, n] = sum_k (x[m, k] - x_zp) (b[k, n] - b_zp)   (int32, wrapping)
 *   y = requantize(acc, mult, zp, y_min, y_max), or (float)acc * mult
 * for each of the `batch` matrices. Each product is at most 255 * 255 in
 * magnitude, exact in int32; the sum wraps in uint32. y_stride counts
 * elements of y (floats when y_dtype is f32). */
void q8_ref_qmatmul(const void *x, int64_t x_stride, int x_signed, int32_t x_zp, const void *b,
                    int64_t b_stride, int b_signed, int32_t b_zp, void *y, int64_t y_stride,
                    int y_dtype, float mult, int32_t zp, int32_t y_min, int32_t y_max,
                    int64_t batch, int64_t m, int64_t k, int64_t n) {
  for (int64_t bi = 0; bi < batch; bi++) {
    const uint8_t *xb = (const uint8_t *)x + bi * m * x_stride;
    const uint8_t *bb = (const uint8_t *)b + bi * k * b_stride;
    for (int64_t i = 0; i < m; i++)
      for (int64_t j = 0; j < n; j++) {
        uint32_t acc = 0;
        for (int64_t l = 0; l < k; l++) {
          int32_t xv = qload(xb, i * x_stride + l, x_signed) - x_zp;
          int32_t bv = qload(bb, l * b_stride + j, b_signed) - b_zp;
          acc += (uint32_t)(xv * bv);
        }
        int32_t s = wrap_i32(acc);
        int64_t e = (bi * m + i) * y_stride + j;
        if (y_dtype == DTYPE_U8)
          ((uint8_t *)y)[e] = (uint8_t)q8_ref_requantize(s, mult, zp, y_min, y_max);
        else if (y_dtype == DTYPE_I8)
          ((int8_t *)y)[e] = (int8_t)q8_ref_requantize(s, mult, zp, y_min, y_max);
        else if (y_dtype == DTYPE_F32)
          ((float *)y)[e] = (float)s * mult;
      }
  }
}

/* u8 parameters for `count` values at run time, as qlinear_dyn's rows:
 * the finite range widened to include 0, s = (hi - lo) / 255 (1 below
 * 1e-30), z = rint(-lo / s) in [0, 255]. */
static void dyn_params(const float *v, int64_t count, float *s, int32_t *z) {
  float lo = 0, hi = 0;
  for (int64_t l = 0; l < count; l++)
    if (isfinite(v[l])) {
      lo = v[l] < lo ? v[l] : lo;
      hi = v[l] > hi ? v[l] : hi;
    }
  float sv = (float)(((double)hi - (double)lo) / 255.0);
  if (!(sv >= 1e-30))
    sv = 1.0f;
  double zd = rint(-(double)lo / (double)sv);
  *s = sv;
  *z = (int32_t)fmin(fmax(zd, 0.0), 255.0);
}

/* docs/quantization.md, "Dynamic quantization" of a matmul of two
 * activations: each matrix of b quantized to u8 with its own range (into
 * work[0, k n)), each row of x likewise (into work[k n, k n + k)), then
 *   acc = sum_k (xq - zx) (bq - zb)   (int32, wrapping)
 *   y = (float)acc * (sx * sb), each operation in f32. */
void q8_ref_qmatmul_dyn(const float *x, const float *b, float *y, void *work, int64_t batch,
                        int64_t m, int64_t k, int64_t n) {
  uint8_t *bq = work, *xq = (uint8_t *)work + k * n;
  for (int64_t bi = 0; bi < batch; bi++) {
    const float *bm = b + bi * k * n;
    float sb;
    int32_t zb;
    dyn_params(bm, k * n, &sb, &zb);
    for (int64_t e = 0; e < k * n; e++)
      bq[e] = (uint8_t)q8_ref_quantize_value(bm[e], sb, zb, 0, 255);
    for (int64_t i = 0; i < m; i++) {
      const float *xi = x + (bi * m + i) * k;
      float sx;
      int32_t zx;
      dyn_params(xi, k, &sx, &zx);
      for (int64_t l = 0; l < k; l++)
        xq[l] = (uint8_t)q8_ref_quantize_value(xi[l], sx, zx, 0, 255);
      float t = sx * sb;
      for (int64_t j = 0; j < n; j++) {
        uint32_t acc = 0;
        for (int64_t l = 0; l < k; l++)
          acc += (uint32_t)(((int32_t)xq[l] - zx) * ((int32_t)bq[l * n + j] - zb));
        y[(bi * m + i) * n + j] = (float)wrap_i32(acc) * t;
      }
    }
  }
}

/* ---- qlinear_outl: LLM.int8 outlier decomposition ---- */

/* docs/quantization.md, "Outlier decomposition": column c of x [m, k] is an
 * outlier column when |x[i, c]| >= threshold for some row i (NaN never is;
 * +-Inf always is). cols[] receives them ascending; when there is one, xz
 * receives x with those columns +0. cols[] serves as the flags first. */
int32_t q8_ref_outl_detect(const float *x, int64_t m, int64_t k, float threshold, int32_t *cols,
                           float *xz) {
  for (int64_t c = 0; c < k; c++)
    cols[c] = 0;
  for (int64_t i = 0; i < m; i++) {
    const float *xi = x + i * k;
    for (int64_t c = 0; c < k; c++)
      cols[c] |= fabsf(xi[c]) >= threshold;
  }
  int32_t count = 0;
  for (int64_t c = 0; c < k; c++)
    if (cols[c])
      cols[count++] = (int32_t)c;
  if (count == 0)
    return 0;
  for (int64_t i = 0; i < m; i++) {
    memcpy(xz + i * k, x + i * k, (size_t)k * sizeof *xz);
    for (int32_t j = 0; j < count; j++)
      xz[i * k + cols[j]] = 0.0f;
  }
  return count;
}

/* One tile of the f32 part for NB outputs: o = x0 * w0, then o = o + xc *
 * wc for the next columns (each product rounded, then the sum), y = y + o.
 * Spelled twice, for whole tiles with NB the constant OUTL_NB (so that the
 * compiler's cheapest vectorization applies: no remainder loop) and for the
 * tail with NB = nb. */
enum { OUTL_NB = 256 };

#define OUTL_TILE(NB)                                                  \
  do {                                                                 \
    float o[OUTL_NB];                                                  \
    const float *w0 = wt + (int64_t)cols[0] * n;                       \
    float x0 = xi[cols[0]];                                            \
    for (int64_t j = 0; j < (NB); j++)                                 \
      o[j] = x0 * w0[j];                                               \
    for (int32_t c = 1; c < count; c++) {                              \
      const float *wc = wt + (int64_t)cols[c] * n;                     \
      float xc = xi[cols[c]];                                          \
      for (int64_t j = 0; j < (NB); j++) {                             \
        float p = xc * wc[j];                                          \
        o[j] = o[j] + p;                                               \
      }                                                                \
    }                                                                  \
    for (int64_t j = 0; j < (NB); j++)                                 \
      yi[j] = yi[j] + o[j];                                            \
  } while (0)

static void outl_tile_full(const float *xi, const float *wt, const int32_t *cols, int32_t count,
                           float *yi, int64_t n) {
  OUTL_TILE(OUTL_NB);
}

static void outl_tile_tail(const float *xi, const float *wt, const int32_t *cols, int32_t count,
                           float *yi, int64_t n, int64_t nb) {
  OUTL_TILE(nb);
}

/* The f32 part: o[i, j] = x[i, c0] * wt[c0, j], then o = o + x[i, c] *
 * wt[c, j] for the next columns c ascending, and y[i, j] = y[i, j] +
 * o[i, j], by tiles of OUTL_NB outputs (o on the stack, the loops over j
 * along rows of wt). */
void q8_ref_outl_correct(const float *x, const float *wt, const int32_t *cols, int32_t count,
                         float *y, int64_t y_stride, int64_t m, int64_t k, int64_t n) {
  if (count <= 0)
    return;
  for (int64_t i = 0; i < m; i++) {
    const float *xi = x + i * k;
    int64_t j0 = 0;
    for (; j0 + OUTL_NB <= n; j0 += OUTL_NB)
      outl_tile_full(xi, wt + j0, cols, count, y + i * y_stride + j0, n);
    if (j0 < n)
      outl_tile_tail(xi, wt + j0, cols, count, y + i * y_stride + j0, n, n - j0);
  }
}

/* y = qlinear_dyn(x with the outlier columns +0) (its bias included), plus
 * the f32 outlier part. work: m k floats, then k int32. */
void q8_ref_qlinear_outl(const float *x, const int8_t *w, const float *w_scale,
                         int64_t w_scale_len, const float *wt, const float *b, float threshold,
                         float *y, void *work, int64_t m, int64_t k, int64_t n) {
  float *xz = work;
  int32_t *cols = (int32_t *)(xz + m * k);
  int32_t count = q8_ref_outl_detect(x, m, k, threshold, cols, xz);
  q8_ref_qlinear_dyn(count ? xz : x, w, w_scale, w_scale_len, b, y, m, k, n);
  q8_ref_outl_correct(x, wt, cols, count, y, n, m, k, n);
}
/* ---- 4-bit weights: NF4 and FP4 (docs/quantization.md, "4-bit weights") ---- */

/* bitsandbytes' code tables (get_4bit_type): NF4's 16 values as float32
 * literals, and FP4 (e2m1 with bnb's code order, 0 0.0625 8 12 4 6 2 3 and
 * their negatives) divided by 12 in float32. */
const float q8_ref_4bit_tables[2][16] = {
    {-1.0f, -0.6961928009986877f, -0.5250730514526367f, -0.39491748809814453f,
     -0.28444138169288635f, -0.18477343022823334f, -0.09105003625154495f, 0.0f,
     0.07958029955625534f, 0.16093020141124725f, 0.24611230194568634f, 0.33791524171829224f,
     0.44070982933044434f, 0.5626170039176941f, 0.7229568362236023f, 1.0f},
    {0.0f, 0x1.555556p-8f, 0x1.555556p-1f, 1.0f, 0x1.555556p-2f, 0.5f, 0x1.555556p-3f, 0.25f,
     -0.0f, -0x1.555556p-8f, -0x1.555556p-1f, -1.0f, -0x1.555556p-2f, -0.5f, -0x1.555556p-3f,
     -0.25f},
};

/* bitsandbytes' signed dynamic 8-bit map (create_dynamic_map(signed=True,
 * max_exponent_bits=7, total_bits=8), computed in float32 by torch and
 * sorted): the code of the double-quantized block maxima. Exact float32
 * values, strictly increasing, from -0.99296874 to 1. */
const float q8_ref_dq_map[256] = {
    -0x1.fc6666p-1f, -0x1.f53332p-1f, -0x1.eep-1f, -0x1.e6ccccp-1f,
    -0x1.df9998p-1f, -0x1.d86666p-1f, -0x1.d13334p-1f, -0x1.cap-1f,
    -0x1.c2ccccp-1f, -0x1.bb9998p-1f, -0x1.b46666p-1f, -0x1.ad3332p-1f,
    -0x1.a6p-1f, -0x1.9eccccp-1f, -0x1.979998p-1f, -0x1.906666p-1f,
    -0x1.893334p-1f, -0x1.82p-1f, -0x1.7acccep-1f, -0x1.73999ap-1f,
    -0x1.6c6668p-1f, -0x1.653334p-1f, -0x1.5ep-1f, -0x1.56cccep-1f,
    -0x1.4f999ap-1f, -0x1.486666p-1f, -0x1.413334p-1f, -0x1.3ap-1f,
    -0x1.32ccccp-1f, -0x1.2b999ap-1f, -0x1.246668p-1f, -0x1.1d3334p-1f,
    -0x1.16p-1f, -0x1.0eccccp-1f, -0x1.07999ap-1f, -0x1.006666p-1f,
    -0x1.f26668p-2f, -0x1.e4p-2f, -0x1.d59998p-2f, -0x1.c73334p-2f,
    -0x1.b8ccccp-2f, -0x1.aa6664p-2f, -0x1.9cp-2f, -0x1.8d9998p-2f,
    -0x1.7f3334p-2f, -0x1.70ccccp-2f, -0x1.626664p-2f, -0x1.54p-2f,
    -0x1.459998p-2f, -0x1.373334p-2f, -0x1.28ccccp-2f, -0x1.1a6668p-2f,
    -0x1.0cp-2f, -0x1.fb3334p-3f, -0x1.de6668p-3f, -0x1.c1999ap-3f,
    -0x1.a4ccccp-3f, -0x1.88p-3f, -0x1.6b3332p-3f, -0x1.4e6666p-3f,
    -0x1.31999ap-3f, -0x1.14ccccp-3f, -0x1.fp-4f, -0x1.b66668p-4f,
    -0x1.93d70ap-4f, -0x1.8851eap-4f, -0x1.7ccccep-4f, -0x1.7147aep-4f,
    -0x1.65c29p-4f, -0x1.5a3d7p-4f, -0x1.4eb85p-4f, -0x1.433334p-4f,
    -0x1.37ae14p-4f, -0x1.2c28f6p-4f, -0x1.20a3d6p-4f, -0x1.151ebap-4f,
    -0x1.09999ap-4f, -0x1.fc28f4p-5f, -0x1.e51ebap-5f, -0x1.ce147ap-5f,
    -0x1.b70a3ep-5f, -0x1.ap-5f, -0x1.88f5c2p-5f, -0x1.71eb86p-5f,
    -0x1.5ae146p-5f, -0x1.43d70ap-5f, -0x1.2ccccep-5f, -0x1.15c28ep-5f,
    -0x1.fd70a4p-6f, -0x1.cf5c26p-6f, -0x1.a147aep-6f, -0x1.733334p-6f,
    -0x1.451eb8p-6f, -0x1.170a3ep-6f, -0x1.d1eb86p-7f, -0x1.75c29p-7f,
    -0x1.3e76c8p-7f, -0x1.2c083p-7f, -0x1.19999ap-7f, -0x1.072b02p-7f,
    -0x1.e978d4p-8f, -0x1.c49ba6p-8f, -0x1.9fbe76p-8f, -0x1.7ae148p-8f,
    -0x1.56041ap-8f, -0x1.3126e8p-8f, -0x1.0c49bap-8f, -0x1.ced914p-9f,
    -0x1.851eb8p-9f, -0x1.3b645ap-9f, -0x1.e353f8p-10f, -0x1.4fdf3ap-10f,
    -0x1.eecbfep-11f, -0x1.b3d07cp-11f, -0x1.78d5p-11f, -0x1.3dd982p-11f,
    -0x1.02de02p-11f, -0x1.8fc506p-12f, -0x1.19ce0ap-12f, -0x1.47ae16p-13f,
    -0x1.743e96p-14f, -0x1.15df66p-14f, -0x1.6f0068p-15f, -0x1.64840cp-16f,
    -0x1.040bfep-17f, -0x1.b43528p-19f, -0x1.27476ep-21f, 0.0f,
    0x1.27476ep-21f, 0x1.b43528p-19f, 0x1.040bfep-17f, 0x1.64840cp-16f,
    0x1.6f0068p-15f, 0x1.15df66p-14f, 0x1.743e96p-14f, 0x1.47ae16p-13f,
    0x1.19ce0ap-12f, 0x1.8fc506p-12f, 0x1.02de02p-11f, 0x1.3dd982p-11f,
    0x1.78d5p-11f, 0x1.b3d07cp-11f, 0x1.eecbfep-11f, 0x1.4fdf3ap-10f,
    0x1.e353f8p-10f, 0x1.3b645ap-9f, 0x1.851eb8p-9f, 0x1.ced914p-9f,
    0x1.0c49bap-8f, 0x1.3126e8p-8f, 0x1.56041ap-8f, 0x1.7ae148p-8f,
    0x1.9fbe76p-8f, 0x1.c49ba6p-8f, 0x1.e978d4p-8f, 0x1.072b02p-7f,
    0x1.19999ap-7f, 0x1.2c083p-7f, 0x1.3e76c8p-7f, 0x1.75c29p-7f,
    0x1.d1eb86p-7f, 0x1.170a3ep-6f, 0x1.451eb8p-6f, 0x1.733334p-6f,
    0x1.a147aep-6f, 0x1.cf5c26p-6f, 0x1.fd70a4p-6f, 0x1.15c28ep-5f,
    0x1.2ccccep-5f, 0x1.43d70ap-5f, 0x1.5ae146p-5f, 0x1.71eb86p-5f,
    0x1.88f5c2p-5f, 0x1.ap-5f, 0x1.b70a3ep-5f, 0x1.ce147ap-5f,
    0x1.e51ebap-5f, 0x1.fc28f4p-5f, 0x1.09999ap-4f, 0x1.151ebap-4f,
    0x1.20a3d6p-4f, 0x1.2c28f6p-4f, 0x1.37ae14p-4f, 0x1.433334p-4f,
    0x1.4eb85p-4f, 0x1.5a3d7p-4f, 0x1.65c29p-4f, 0x1.7147aep-4f,
    0x1.7ccccep-4f, 0x1.8851eap-4f, 0x1.93d70ap-4f, 0x1.b66668p-4f,
    0x1.fp-4f, 0x1.14ccccp-3f, 0x1.31999ap-3f, 0x1.4e6666p-3f,
    0x1.6b3332p-3f, 0x1.88p-3f, 0x1.a4ccccp-3f, 0x1.c1999ap-3f,
    0x1.de6668p-3f, 0x1.fb3334p-3f, 0x1.0cp-2f, 0x1.1a6668p-2f,
    0x1.28ccccp-2f, 0x1.373334p-2f, 0x1.459998p-2f, 0x1.54p-2f,
    0x1.626664p-2f, 0x1.70ccccp-2f, 0x1.7f3334p-2f, 0x1.8d9998p-2f,
    0x1.9cp-2f, 0x1.aa6664p-2f, 0x1.b8ccccp-2f, 0x1.c73334p-2f,
    0x1.d59998p-2f, 0x1.e4p-2f, 0x1.f26668p-2f, 0x1.006666p-1f,
    0x1.07999ap-1f, 0x1.0eccccp-1f, 0x1.16p-1f, 0x1.1d3334p-1f,
    0x1.246668p-1f, 0x1.2b999ap-1f, 0x1.32ccccp-1f, 0x1.3ap-1f,
    0x1.413334p-1f, 0x1.486666p-1f, 0x1.4f999ap-1f, 0x1.56cccep-1f,
    0x1.5ep-1f, 0x1.653334p-1f, 0x1.6c6668p-1f, 0x1.73999ap-1f,
    0x1.7acccep-1f, 0x1.82p-1f, 0x1.893334p-1f, 0x1.906666p-1f,
    0x1.979998p-1f, 0x1.9eccccp-1f, 0x1.a6p-1f, 0x1.ad3332p-1f,
    0x1.b46666p-1f, 0x1.bb9998p-1f, 0x1.c2ccccp-1f, 0x1.cap-1f,
    0x1.d13334p-1f, 0x1.d86666p-1f, 0x1.df9998p-1f, 0x1.e6ccccp-1f,
    0x1.eep-1f, 0x1.f53332p-1f, 0x1.fc6666p-1f, 0x1.p+0f,
};

/* The f32 block maximum of group g (flat index over [N, K / block]): as
 * stored, or decoded from its double-quantized form (u8 code, the scale of
 * its block of 256 maxima in absmax2[g / 256], their mean last). */
static float absmax_of(const void *absmax, const float *absmax2, int64_t ngroups, int64_t g) {
  if (!absmax2)
    return ((const float *)absmax)[g];
  float a = q8_ref_dq_map[((const uint8_t *)absmax)[g]] * absmax2[g / 256];
  return a + absmax2[(ngroups + 255) / 256];
}

/* y[m, n] = sum_k x[m, k] * w[n, k] (+ b[n]) with w[n, k] = table[code] *
 * absmax[n, k / block] in f32 and the sum in the order of ROW_SUM: what
 * every kernel of linear_4bit reproduces (codegen/nf4.c). */
void q8_ref_linear_4bit(const float *x, const uint8_t *w, const void *absmax,
                        const float *absmax2, int code, const float *b, float *y, int64_t m,
                        int64_t k, int64_t n, int64_t block) {
  const float *table = q8_ref_4bit_tables[code ? 1 : 0];
  int64_t ngroups = n * (k / block);
  for (int64_t j = 0; j < n; j++) {
    const uint8_t *wr = w + j * (k / 2);
    for (int64_t i = 0; i < m; i++) {
      const float *xi = x + i * k;
      /* w[n, l] is rebuilt per row of x here; a kernel dequantizes it once
       * (the same f32 product either way). */
      float s;
      ROW_SUM(s, k, l,
              xi[l] * (table[(wr[l / 2] >> (4 * (l % 2))) & 15] *
                       absmax_of(absmax, absmax2, ngroups, j * (k / block) + l / block)));
      y[i * n + j] = b ? s + b[j] : s;
    }
  }
}

/* ---- qlinear_grp: grouped weights, activations quantized per row ---- */

enum { GRP_MAX = 256 }; /* the largest group (infer_qlinear_grp checks) */

/* docs/quantization.md, "Weight formats": each row of x quantized to u8
 * exactly as qlinear_dyn's; for each output j and group g of `group`
 * inputs (in ascending order)
 *   acc = sum_{k in g} (xq[k] - zx) (w[j, k] - zw[j, g])   (int32, exact)
 *   t = f32(f32(sx * w_scale[j, g]) * f32(acc))
 *   y[j] = t (g = 0), f32(y[j] + t) after
 * then y[j] = f32(y[j] + b[j]). zw is 0 without w_zero. A group's quantized
 * inputs are made once per row (GRP_MAX on the stack). */
void q8_ref_qlinear_grp(const float *x, const int8_t *w, const float *w_scale,
                        const int8_t *w_zero, const float *b, float *y, int64_t m, int64_t k,
                        int64_t n, int64_t group) {
  int64_t ng = group > 0 ? k / group : 0;
  for (int64_t i = 0; i < m; i++) {
    const float *xi = x + i * k;
    float *yi = y + i * n;
    float sx;
    int32_t zx;
    dyn_params(xi, k, &sx, &zx);
    for (int64_t g = 0; g < ng; g++) {
      int32_t xq[GRP_MAX];
      for (int64_t l = 0; l < group; l++)
        xq[l] = q8_ref_quantize_value(xi[g * group + l], sx, zx, 0, 255) - zx;
      for (int64_t j = 0; j < n; j++) {
        const int8_t *wj = w + j * k + g * group;
        int32_t zw = w_zero ? w_zero[j * ng + g] : 0;
        uint32_t acc = 0;
        for (int64_t l = 0; l < group; l++)
          acc += (uint32_t)(xq[l] * ((int32_t)wj[l] - zw));
        float t = sx * w_scale[j * ng + g];
        t = t * (float)wrap_i32(acc);
        yi[j] = g == 0 ? t : yi[j] + t;
      }
    }
    for (int64_t j = 0; j < n; j++) {
      if (ng == 0)
        yi[j] = 0.0f;
      if (b)
        yi[j] = yi[j] + b[j];
    }
  }
}
