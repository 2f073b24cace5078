/* wformat.c: the weight-format table (wformat.def), the spelling of a
 * format with its group size and scale type, and the group-wise weight
 * quantization the quantize pass runs for qlinear_grp. The arithmetic is
 * docs/quantization.md, "Weight formats": per group of G input channels of
 * an output channel, a scale (rounded to f16 unless ":f32") and, for the
 * asymmetric formats, a zero point; every division is an f32 division, the
 * scale's own in double rounded once, as ir_quantize_weights. */
#include "wformat.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const IrWFormatInfo ir_wformat_info[IR_WF_COUNT] = {
#define WFORMAT(ID, name, bits, qmin, qmax, zero, grouped) {name, bits, qmin, qmax, zero, grouped},
#include "wformat.def"
#undef WFORMAT
};

static void list_formats(char *buf, size_t len) {
  size_t at = 0;
  buf[0] = '\0';
  for (int i = 0; i < IR_WF_COUNT && at < len; i++)
    at += (size_t)snprintf(buf + at, len - at, "%s%s%s", i ? ", " : "", ir_wformat_info[i].name,
                           ir_wformat_info[i].grouped ? ":G" : "");
}

bool ir_wspec_parse(const char *s, long len, IrWSpec *spec, char *err, size_t errlen) {
  char buf[128];
  size_t n = len >= 0 ? (size_t)len : strlen(s);
  if (n >= sizeof buf)
    n = sizeof buf - 1;
  memcpy(buf, s, n);
  buf[n] = '\0';
  char *colon = strchr(buf, ':');
  size_t nl = colon ? (size_t)(colon - buf) : n;
  for (int i = 0; i < IR_WF_COUNT; i++) {
    const IrWFormatInfo *f = &ir_wformat_info[i];
    if (strlen(f->name) != nl || strncmp(f->name, buf, nl) != 0)
      continue;
    *spec = (IrWSpec){(IrWFormatId)i, 0, 32};
    if (!f->grouped) {
      if (colon) {
        snprintf(err, errlen, "weight format '%s' takes no group size", buf);
        return false;
      }
      return true;
    }
    char *end = NULL;
    long g = colon ? strtol(colon + 1, &end, 10) : 0;
    if (!colon || end == colon + 1 || (g != 32 && g != 64 && g != 128) ||
        (*end && *end != ':')) {
      snprintf(err, errlen, "weight format '%s' needs a group size: %s:32, :64 or :128", buf,
               f->name);
      return false;
    }
    spec->group = (int)g;
    spec->scale_bits = 16;
    if (*end) {
      if (strcmp(end, ":f16") != 0 && strcmp(end, ":f32") != 0) {
        snprintf(err, errlen, "weight format '%s': the scale type is f16 or f32, not '%s'", buf,
                 end + 1);
        return false;
      }
      spec->scale_bits = strcmp(end, ":f32") == 0 ? 32 : 16;
    }
    return true;
  }
  char names[400];
  list_formats(names, sizeof names);
  snprintf(err, errlen, "unknown weight format '%s' (%s)", buf, names);
  return false;
}

double ir_wspec_bits_per_weight(const IrWSpec *spec, int64_t k) {
  const IrWFormatInfo *f = &ir_wformat_info[spec->id];
  if (f->grouped)
    return f->bits + (double)(spec->scale_bits + (f->zero ? f->bits : 0)) / spec->group;
  if (spec->id == IR_WF_S8_CHANNEL)
    return 8 + (k > 0 ? 32.0 / (double)k : 0);
  return 8;
}

void ir_wspec_str(const IrWSpec *spec, char *buf, size_t len) {
  const IrWFormatInfo *f = &ir_wformat_info[spec->id];
  if (!f->grouped)
    snprintf(buf, len, "%s", f->name);
  else
    snprintf(buf, len, "%s:%d%s", f->name, spec->group, spec->scale_bits == 32 ? ":f32" : "");
}

float ir_round_scale_f16(float v) {
  const float lo = 6.103515625e-05f, hi = 65504.0f; /* 2^-14, the largest f16 */
  v = v < lo ? lo : v > hi ? hi : v;
  uint32_t u;
  memcpy(&u, &v, 4);
  /* Keep 10 of the 23 mantissa bits, rounding to nearest even; a carry
   * into the exponent is the right result. */
  u = (u + 0xFFFu + ((u >> 13) & 1u)) & ~0x1FFFu;
  memcpy(&v, &u, 4);
  return v > hi ? hi : v;
}

static float finish_scale(double s, const IrWSpec *spec) {
  float f = (float)s;
  return spec->scale_bits == 16 ? ir_round_scale_f16(f) : f;
}

int64_t ir_quantize_groups(const float *w, int64_t n, int64_t k, const IrWSpec *spec,
                           int8_t *wq, float *scale, int8_t *zero) {
  const IrWFormatInfo *f = &ir_wformat_info[spec->id];
  int64_t g = spec->group, ng = k / g, empty = 0;
  for (int64_t r = 0; r < n; r++)
    for (int64_t j = 0; j < ng; j++) {
      const float *v = w + r * k + j * g;
      int8_t *q = wq + r * k + j * g;
      float s;
      int32_t z = 0;
      if (f->zero) {
        /* Asymmetric: the group's range widened to include 0, as the u8
         * activations (so that 0 is exactly representable). */
        float lo = 0, hi = 0;
        for (int64_t i = 0; i < g; i++) {
          lo = fminf(lo, v[i]);
          hi = fmaxf(hi, v[i]);
        }
        double sd = ((double)hi - (double)lo) / (f->qmax - f->qmin);
        if (sd < 1e-30) {
          s = 1.0f;
          empty++;
        } else {
          s = finish_scale(sd, spec);
        }
        double zd = rint(-(double)lo / (double)s) + f->qmin;
        z = (int32_t)fmin(fmax(zd, f->qmin), f->qmax);
        zero[r * ng + j] = (int8_t)z;
      } else {
        float m = 0;
        for (int64_t i = 0; i < g; i++)
          m = fmaxf(m, fabsf(v[i]));
        double sd = m / (double)f->qmax;
        if (sd < 1e-30) {
          s = 1.0f;
          empty++;
        } else {
          s = finish_scale(sd, spec);
        }
      }
      scale[r * ng + j] = s;
      for (int64_t i = 0; i < g; i++) {
        float t = rintf(v[i] / s);
        t = t != t ? 0 : t;
        double c = fmin(fmax((double)t, (double)(f->qmin - z)), (double)(f->qmax - z)) + z;
        q[i] = (int8_t)c;
      }
    }
  return empty;
}
