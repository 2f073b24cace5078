/* dnnllayer.h: a transformer layer (layerir.h) run by oneDNN primitive by
 * primitive, as a user of oneDNN without a graph compiler would write it.
 *
 * int8: every linear is a quantizing reorder f32 -> u8 of its input (scale
 * and zero point from q8c's static calibration of the same model on the
 * same samples; the encoder's q, k, v share one), then a u8 x s8 matmul
 * (per-channel s8 weights reordered once into oneDNN's layout, s32 bias,
 * per-channel output scales, the source zero point) writing f32. f32: the
 * same matmuls in f32. (Without VNNI, oneDNN 2.6's int8 matmul multiplies
 * with vpmaddubsw, which sums pairs of u8 x s8 products into a saturating
 * s16: with full-range s8 weights a layer of this bench loses 16 dB of
 * SQNR, so there the weights are quantized to [-63, 63], as oneDNN
 * advises for such CPUs.) Both: the attention matmuls Q K^T (scaled through
 * the output scale) and P V in f32, batched over the heads by strides into
 * the q, k, v and output buffers (no transposes), the decoder's causal
 * mask a binary add of a [1, T, T] tensor (0, or -1e30 above the
 * diagonal), softmax, layer normalization with scale and shift, eltwise
 * GELU (erf or tanh) in place, residual adds as binary adds. */
#ifndef Q8_DNNLLAYER_H
#define Q8_DNNLLAYER_H

#include "dnnlprim.h"
#include "layerir.h"

/* A linear's input parameters for the int8 layer: real = (q - zx) * sx. */
typedef struct {
  float sx;
  int32_t zx;
} LinearQ;

enum { DNNL_LAYER_MAX_PRIMS = 32, DNNL_LAYER_MAX_BUFS = 32 };

typedef struct {
  DPrim p[DNNL_LAYER_MAX_PRIMS];
  int n;
  void *buf[DNNL_LAYER_MAX_BUFS]; /* activations and constants it owns */
  int nbuf;
  QFc q[LAYER_MAX_LINEARS];
  int nq;
  const float *qsrc; /* the last quantized input, shared by the next linear */
  uint8_t *qdst;
  int qlin; /* the linear whose parameters quantized it */
} DnnlLayer;

/* Build the layer's primitives (under the current omp_get_max_threads) to
 * read x [T, d] and write y [T, d]. q: one LinearQ per linear (int8), or
 * NULL (f32); wmax: the int8 weights' range [-wmax, wmax] (quantize_fc_range:
 * 63 where oneDNN's int8 matmul would saturate full-range s8). */
void dnnl_layer_build(DnnlLayer *L, const LayerSpec *s, const LayerWeights *w, const float *x,
                      float *y, const LinearQ *q, int wmax);
void dnnl_layer_free(DnnlLayer *L);

#endif
