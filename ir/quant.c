/* quant.c: the quantization arithmetic, exactly as docs/quantization.md
 * states it. The parameters and folded constants that must agree bit for bit
 * between the passes, the reference interpreter and generated code are
 * computed here once; the per-element quantize and requantize steps are the
 * ops' own and live in refops.c (ir_quantize_value and ir_requantize call
 * them).
 *
 * Two habits keep it exact and portable: each f32 result comes from one IEEE
 * operation (a division, a multiplication, rintf) or from a double computation
 * rounded to f32 once; and rounding is always round-half-to-even (rint under
 * the default rounding mode), never round-half-away (round). */
#include <math.h>

#include "ir.h"
#include "refops.h"

/* A scale below this is treated as degenerate: its reciprocal products would
 * overflow f32 in the multipliers. */
static const double min_scale = 1e-30;

void ir_qbounds(IrDType t, int32_t *qmin, int32_t *qmax) {
  if (t == IR_U8) {
    *qmin = 0;
    *qmax = 255;
  } else if (t == IR_I8) {
    *qmin = -127;
    *qmax = 127;
  } else {
    q8_die("no quantized bounds for %s", ir_dtype_name(t));
  }
}

void ir_qbounds_bits(IrDType t, int bits, int32_t *qmin, int32_t *qmax) {
  ir_qbounds(t, qmin, qmax);
  if (bits == 7) {
    *qmin = t == IR_U8 ? 64 : -63;
    *qmax = t == IR_U8 ? 191 : 63;
  }
}

bool ir_qparams_from_range(double lo, double hi, IrDType dtype, IrQParams *out) {
  return ir_qparams_from_range_bits(lo, hi, dtype, 8, out);
}

bool ir_qparams_from_range_bits(double lo, double hi, IrDType dtype, int bits, IrQParams *out) {
  int32_t qmin, qmax;
  ir_qbounds_bits(dtype, bits, &qmin, &qmax);
  /* Ranges are f32 values (observers produce f32; the printer writes them as
   * f32): round them first, so a range read back from a dump gives the same
   * parameters as the one calibrated in memory. */
  lo = (float)lo;
  hi = (float)hi;
  bool ok = isfinite(lo) && isfinite(hi) && lo <= hi;
  if (!ok)
    lo = hi = 0;
  out->dtype = dtype;
  if (dtype == IR_I8) {
    double m = fmax(fabs(lo), fabs(hi));
    double scale = m / (double)qmax;
    ok = ok && scale >= min_scale;
    out->scale = ok ? (float)scale : 1.0f;
    out->zero_point = 0;
    return ok;
  }
  /* u8 asymmetric: widen to include 0 so that 0 is exactly representable. */
  lo = fmin(lo, 0.0);
  hi = fmax(hi, 0.0);
  double scale = (hi - lo) / (double)(qmax - qmin);
  ok = ok && scale >= min_scale;
  out->scale = ok ? (float)scale : 1.0f;
  double zp = qmin + rint(-lo / (double)out->scale);
  out->zero_point = (int32_t)fmin(fmax(zp, (double)qmin), (double)qmax);
  return ok;
}

/* These two are the ops' own arithmetic, so they live with the ops in
 * refops.c, which compiled models link. */
int32_t ir_quantize_value(float x, float scale, int32_t zp, int32_t qmin, int32_t qmax) {
  return q8_ref_quantize_value(x, scale, zp, qmin, qmax);
}

int32_t ir_requantize(int32_t acc, float mult, int32_t zp, int32_t qmin, int32_t qmax) {
  return q8_ref_requantize(acc, mult, zp, qmin, qmax);
}

int64_t ir_quantize_weights(const float *w, int64_t n, int64_t k, bool per_channel, int8_t *wq,
                            float *w_scale) {
  return ir_quantize_weights_q(w, n, k, per_channel, 127, wq, w_scale);
}

int64_t ir_quantize_weights_q(const float *w, int64_t n, int64_t k, bool per_channel, int qmax,
                              int8_t *wq, float *w_scale) {
  int64_t zero_channels = 0;
  int64_t groups = per_channel ? n : 1, rows = per_channel ? 1 : n;
  for (int64_t g = 0; g < groups; g++) {
    const float *row = w + g * rows * k;
    float m = 0;
    for (int64_t i = 0; i < rows * k; i++)
      m = fmaxf(m, fabsf(row[i]));
    double scale = m / (double)qmax;
    if (scale < min_scale) {
      scale = 1.0;
      zero_channels += rows;
    }
    float s = (float)scale;
    w_scale[g] = s;
    for (int64_t i = 0; i < rows * k; i++) {
      float r = rintf(row[i] / s);
      float hi = (float)qmax;
      wq[g * rows * k + i] = (int8_t)(r != r ? 0 : r < -hi ? -hi : r > hi ? hi : r);
    }
  }
  return zero_channels;
}

int64_t ir_fold_qlinear(const int8_t *wq, const float *w_scale, int w_scale_len, const float *b,
                        int64_t n, int64_t k, float x_scale, int32_t x_zp, float y_scale,
                        int32_t *bias, float *mult) {
  int64_t saturated = 0;
  for (int64_t c = 0; c < n; c++) {
    double sw = w_scale[w_scale_len == 1 ? 0 : c];
    double sxw = (double)x_scale * sw;
    int64_t wsum = 0;
    for (int64_t i = 0; i < k; i++)
      wsum += wq[c * k + i];
    double folded = (b ? rint((double)b[c] / sxw) : 0.0) - (double)x_zp * (double)wsum;
    if (folded > INT32_MAX || folded < INT32_MIN || isnan(folded)) {
      saturated++;
      folded = isnan(folded) ? 0 : folded > 0 ? INT32_MAX : INT32_MIN;
    }
    bias[c] = (int32_t)folded;
    mult[c] = (float)(y_scale > 0 ? sxw / (double)y_scale : sxw);
  }
  return saturated;
}

float ir_qmatmul_mult(float x_scale, float b_scale, float y_scale) {
  double sxb = (double)x_scale * (double)b_scale;
  return (float)(y_scale > 0 ? sxb / (double)y_scale : sxb);
}
