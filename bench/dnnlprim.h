/* dnnlprim.h: oneDNN primitives as the benchmarks run them: one engine and
 * stream, a primitive with its arguments and the memory it owns (DPrim),
 * the matmul and quantizing reorder q8bench compares against, a sequence
 * of primitives as one timed implementation (DRun), and a float linear
 * layer's int8 constants as q8c's default scheme would choose them
 * (per-channel symmetric s8 weights, the bias in the accumulator's scale). */
#ifndef Q8_DNNLPRIM_H
#define Q8_DNNLPRIM_H

#include <stdbool.h>
#include <stdint.h>

#include <oneapi/dnnl/dnnl.h>

#include "benchutil.h"

extern dnnl_engine_t eng;
extern dnnl_stream_t strm;

/* Dies naming the call when s is not dnnl_success. */
void dnnl_check(dnnl_status_t s, const char *what);
#define DN(call) dnnl_check((call), #call)

/* One primitive ready to run: its arguments, the memory it owns. */
typedef struct {
  dnnl_primitive_t prim;
  dnnl_exec_arg_t args[8];
  int nargs;
  dnnl_memory_t own[8];
  int nown;
  char impl[96];
} DPrim;

/* A memory object over `handle` (or DNNL_MEMORY_ALLOCATE), owned by p. */
dnnl_memory_t dp_mem(DPrim *p, const dnnl_memory_desc_t *md, void *handle);
void dp_arg(DPrim *p, int arg, dnnl_memory_t m);
/* Record the implementation's name, add a scratchpad if it wants one,
 * create the primitive; destroys pd. */
void dp_finish(DPrim *p, dnnl_primitive_desc_t pd);
/* Execute and wait. */
void dp_run(const DPrim *p);
void dp_free(DPrim *p);
void md2(dnnl_memory_desc_t *md, int64_t d0, int64_t d1, dnnl_data_type_t dt,
         dnnl_format_tag_t tag);

/* A matmul y[M, N] = x[M, K] * W^T with W given as [N, K] (oneDNN's [K, N]
 * in format "ba"), reordered once into the layout oneDNN chooses. Integer:
 * y = sat(rint(scale[n] * (sum (x - x_zp) * w + bias[n]))) + y_zp (oneDNN
 * 2.x applies the s32 bias before the output scales). relu: an eltwise
 * post-op (f32 only; u8 outputs clamp at their zero point already). */
typedef struct {
  int64_t m, k, n;
  dnnl_data_type_t xt, wt, bt, yt; /* bt = dnnl_data_type_undef: no bias */
  const void *x, *w, *bias;
  void *y;
  const float *scales; /* per output channel, or NULL */
  int32_t x_zp, y_zp;
  bool relu;
} MatmulSpec;

void dp_matmul(DPrim *p, const MatmulSpec *s);
/* q = sat(rint(x * inv_scale) + zp) as u8, x and q [m, k]: the quantizing
 * reorder. */
void dp_quantize(DPrim *p, int64_t m, int64_t k, const float *x, uint8_t *q, float inv_scale,
                 int32_t zp);

/* n primitives run in order: one implementation for measure(). */
typedef struct {
  DPrim *p;
  int n;
} DRun;

void run_dnnl(void *c);

/* One oneDNN int8 layer's constants: per-channel weights, scales, bias. */
typedef struct {
  int8_t *wq;
  float *sw, *scale;
  int32_t *bias;
} QFc;

/* Per-channel s8 weights (max |w| / 127), the bias rounded to the scale
 * sx * sw, the output scale sx * sw / sy (sy = 0: an f32 output,
 * sx * sw). */
void quantize_fc(const Fc *l, float sx, float sy, QFc *q);
/* The same with weights in [-wmax, wmax] (sw = max |w| / wmax): 63 keeps
 * oneDNN's AVX2 int8 path (vpmaddubsw, pairs of u8 x s8 products summed to
 * a saturating s16) from saturating. */
void quantize_fc_range(const Fc *l, float sx, float sy, int wmax, QFc *q);
void free_qfc(QFc *q);

#endif
