/* layerir.h: the transformer layers layerbench measures, as q8c text IR
 * with random weights (PyTorch's default initialization), and the same
 * weights for the oneDNN side (bench/dnnllayer.c).
 *
 * Two kinds, batch 1, x f32[?, T, d] in, the same shape out:
 *   encoder (BERT): separate q, k, v linears, attention without a mask,
 *     post-LayerNorm (x + attn -> LN -> FFN -> + -> LN), GELU erf form;
 *   decoder (GPT-2): pre-LayerNorm (x + attn(LN x), then + FFN(LN ...)),
 *     one fused qkv linear [3d, d] cut by split, causal softmax, GELU tanh
 *     form.
 * Heads by reshape [?, T, h, d/h] and transpose; scores scaled by
 * 1/sqrt(d/h) with a literal mul after Q K^T. */
#ifndef Q8_LAYERIR_H
#define Q8_LAYERIR_H

#include <stdbool.h>
#include <stdint.h>

#include "benchutil.h"

typedef struct {
  const char *name; /* "bert-base", the case name */
  bool decoder;     /* GPT-2 style (above) rather than BERT style */
  int t, d, heads, ffn;
  double eps; /* LayerNorm's */
} LayerSpec;

enum { LAYER_MAX_LINEARS = 6 };

typedef struct {
  /* Encoder: wq, wk, wv, wo, w1, w2. Decoder: wqkv, wo, w1, w2. */
  Fc lin[LAYER_MAX_LINEARS];
  const char *lin_name[LAYER_MAX_LINEARS]; /* weight names in the IR: "wq" */
  int nlin;
  float *ln1_g, *ln1_b, *ln2_g, *ln2_b;
} LayerWeights;

/* Linear weights and biases uniform in +-1/sqrt(in) (nn.Linear's default),
 * LayerNorm gamma 1, beta 0 (nn.LayerNorm's), from the bench's rng. */
void layer_weights_init(const LayerSpec *s, LayerWeights *w);
void layer_weights_free(LayerWeights *w);

/* The model as text IR naming weights file `weights_name` (relative to the
 * IR file), and that file at `weights_path`. Returns the IR (malloc'd). */
char *layer_ir(const LayerSpec *s, const char *weights_name);
void layer_write_weights(const LayerSpec *s, const LayerWeights *w, const char *weights_path);

/* Multiply-adds of one run: the linears and both attention matmuls in full
 * (the causal softmax masks scores, but every engine here computes all of
 * Q K^T and P V). */
int64_t layer_macs(const LayerSpec *s);

#endif
