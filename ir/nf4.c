/* nf4.c: quantizing weights to 4-bit codes, NF4 or FP4, with one maximum
 * per block of weights of a row (bitsandbytes' quantize_4bit), and the
 * double quantization of those maxima to 8 bits (its compress_statistics).
 * The passes call these to make linear_4bit's constants; the arithmetic
 * that reads them back is q8_ref_linear_4bit (refops.c), whose tables these
 * share. docs/quantization.md, "4-bit weights", states both exactly. */
#include <math.h>
#include <string.h>

#include "ir.h"
#include "refops.h"

/* The decision thresholds of bitsandbytes (its dQuantizeNF4 and
 * dQuantizeFP4): midpoints between neighbouring code values, as float32
 * literals. NF4 code c is the number of thresholds below v; FP4's apply to
 * |v| and give the codes in fp4_after[] in order. */
static const float nf4_thresholds[15] = {
    -0.8480964004993439f, -0.6106329262256622f, -0.4599952697753906f, -0.33967943489551544f,
    -0.23460740596055984f, -0.13791173323988914f, -0.045525018125772476f, 0.03979014977812767f,
    0.1202552504837513f, 0.2035212516784668f, 0.2920137718319893f, 0.3893125355243683f,
    0.5016634166240692f, 0.6427869200706482f, 0.8614784181118011f};
static const float fp4_thresholds[7] = {0.00260417f, 0.0859375f, 0.20833333f, 0.29166667f,
                                        0.4166667f, 0.583333f, 0.8333333f};
static const uint8_t fp4_after[7] = {1, 6, 7, 4, 5, 2, 3};

int ir_4bit_code(float v, int code) {
  if (code == IR_4BIT_NF4) {
    int c = 0;
    for (int i = 0; i < 15; i++)
      c += v > nf4_thresholds[i];
    return c;
  }
  int c = 0, sign = v < 0 ? 8 : 0;
  float u = fabsf(v);
  for (int i = 0; i < 7; i++)
    if (u > fp4_thresholds[i])
      c = fp4_after[i];
  return c + sign;
}

void ir_quantize_4bit(const float *w, int64_t n, int64_t k, int code, int64_t block,
                      uint8_t *packed, float *absmax) {
  memset(packed, 0, (size_t)(n * (k / 2)));
  int zero = code == IR_4BIT_NF4 ? 7 : 0;
  for (int64_t r = 0; r < n; r++)
    for (int64_t g = 0; g < k / block; g++) {
      const float *wb = w + r * k + g * block;
      float a = 0;
      for (int64_t i = 0; i < block; i++)
        a = fabsf(wb[i]) > a ? fabsf(wb[i]) : a;
      absmax[r * (k / block) + g] = a;
      float inv = a > 0 ? 1.0f / a : 0.0f;
      for (int64_t i = 0; i < block; i++) {
        float v = wb[i] * inv;
        v = v > 1.0f ? 1.0f : v < -1.0f ? -1.0f : v;
        int c = a > 0 ? ir_4bit_code(v, code) : zero;
        int64_t kk = g * block + i;
        packed[r * (k / 2) + kk / 2] |= (uint8_t)(c << (4 * (kk % 2)));
      }
    }
}

/* The index of the entry of q8_ref_dq_map nearest to v (in [-1, 1]), the
 * lower one on a tie. */
static int dq_nearest(float v) {
  int lo = 0, hi = 255; /* the largest i with map[i] <= v, or 0 */
  while (lo < hi) {
    int mid = (lo + hi + 1) / 2;
    if (q8_ref_dq_map[mid] <= v)
      lo = mid;
    else
      hi = mid - 1;
  }
  if (lo < 255 && q8_ref_dq_map[lo + 1] - v < v - q8_ref_dq_map[lo])
    return lo + 1;
  return lo;
}

void ir_double_quant(const float *absmax, int64_t count, uint8_t *q, float *absmax2) {
  double sum = 0;
  for (int64_t i = 0; i < count; i++)
    sum += absmax[i];
  float mean = count ? (float)(sum / (double)count) : 0.0f;
  int64_t nb = (count + 255) / 256;
  for (int64_t b = 0; b < nb; b++) {
    int64_t end = (b + 1) * 256 < count ? (b + 1) * 256 : count;
    float s = 0;
    for (int64_t i = b * 256; i < end; i++) {
      float d = fabsf(absmax[i] - mean);
      s = d > s ? d : s;
    }
    absmax2[b] = s;
    float inv = s > 0 ? 1.0f / s : 0.0f;
    for (int64_t i = b * 256; i < end; i++) {
      float v = (absmax[i] - mean) * inv;
      q[i] = (uint8_t)dq_nearest(v > 1.0f ? 1.0f : v < -1.0f ? -1.0f : v);
    }
  }
  absmax2[nb] = mean;
}
