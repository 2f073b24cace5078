/* wformat.h: weight formats (wformat.def): the table, the parsing of a
 * format spelling ("s4-per-group:32", "u4-per-group:128:f32") and the
 * group-wise weight quantization of docs/quantization.md, "Weight formats". */
#ifndef Q8_IR_WFORMAT_H
#define Q8_IR_WFORMAT_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum {
#define WFORMAT(ID, name, bits, qmin, qmax, zero, grouped) IR_WF_##ID,
#include "wformat.def"
#undef WFORMAT
  IR_WF_COUNT
} IrWFormatId;

typedef struct {
  const char *name;
  int bits, qmin, qmax;
  bool zero, grouped;
} IrWFormatInfo;

extern const IrWFormatInfo ir_wformat_info[IR_WF_COUNT];

/* One format with its parameters. */
typedef struct {
  IrWFormatId id;
  int group;      /* grouped formats: G; else 0 */
  int scale_bits; /* grouped formats: 16 (f16 scales, the default) or 32 */
} IrWSpec;

/* Parse `s` (a whole string, or its first `len` bytes when len >= 0) into
 * *spec; false with a message in err (naming the formats) otherwise. */
bool ir_wspec_parse(const char *s, long len, IrWSpec *spec, char *err, size_t errlen);
/* Bits per weight including scales and zero points for a layer of K inputs. */
double ir_wspec_bits_per_weight(const IrWSpec *spec, int64_t k);
/* The spelling of spec ("s4-per-group:32", ":f32" only when not the default). */
void ir_wspec_str(const IrWSpec *spec, char *buf, size_t len);

/* f32 v rounded to the nearest f16 value (ties to even) after clamping it
 * to the normal f16 range [2^-14, 65504]; v must be positive and finite. */
float ir_round_scale_f16(float v);

/* Quantize W [n, k] group-wise (spec grouped, k a multiple of its G) into
 * wq [n, k] (values in [qmin, qmax]), scale [n, k / G] and, for an
 * asymmetric format, zero [n, k / G] (NULL otherwise). The number of
 * all-zero groups (scale 1) is returned. */
int64_t ir_quantize_groups(const float *w, int64_t n, int64_t k, const IrWSpec *spec,
                           int8_t *wq, float *scale, int8_t *zero);
#endif
