/* dnnllayer.c: a transformer layer from oneDNN primitives (dnnllayer.h). */
#include "dnnllayer.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static void *lbuf(DnnlLayer *L, size_t bytes) {
  if (L->nbuf == DNNL_LAYER_MAX_BUFS)
    die("dnnllayer: too many buffers%s", "");
  return L->buf[L->nbuf++] = xmalloc(bytes);
}

static DPrim *lprim(DnnlLayer *L) {
  if (L->n == DNNL_LAYER_MAX_PRIMS)
    die("dnnllayer: too many primitives%s", "");
  DPrim *p = &L->p[L->n++];
  memset(p, 0, sizeof *p);
  return p;
}

static void mdn(dnnl_memory_desc_t *md, int nd, const int64_t *dims, const int64_t *strides) {
  dnnl_dims_t d, s;
  for (int i = 0; i < nd; i++)
    d[i] = dims[i], s[i] = strides[i];
  DN(dnnl_memory_desc_init_by_strides(md, nd, d, dnnl_f32, s));
}

/* y[T, n] = x[T, k] W^T + b, linear number `li`. */
static void linear(DnnlLayer *L, const LayerSpec *s, const LayerWeights *w, const LinearQ *q,
                   int wmax, int li, const float *x, float *y) {
  const Fc *f = &w->lin[li];
  int64_t T = s->t;
  if (!q) {
    dp_matmul(lprim(L), &(MatmulSpec){T, f->k, f->n, dnnl_f32, dnnl_f32, dnnl_f32, dnnl_f32, x,
                                      f->w, f->b, y, NULL, 0, 0, false});
    return;
  }
  /* The encoder's q, k, v read one x with one set of parameters (q8c's
   * calibration gives them the same): one reorder. */
  if (L->qsrc != x || q[L->qlin].sx != q[li].sx || q[L->qlin].zx != q[li].zx) {
    L->qdst = lbuf(L, (size_t)(T * f->k));
    dp_quantize(lprim(L), T, f->k, x, L->qdst, 1.0f / q[li].sx, q[li].zx);
    L->qsrc = x, L->qlin = li;
  }
  QFc *c = &L->q[L->nq++];
  quantize_fc_range(f, q[li].sx, 0, wmax, c);
  dp_matmul(lprim(L), &(MatmulSpec){T, f->k, f->n, dnnl_u8, dnnl_s8, dnnl_s32, dnnl_f32, L->qdst,
                                    c->wq, c->bias, y, c->scale, q[li].zx, 0, false});
}

/* Attention over `h` heads of q, k, v (rows of `ld` floats, head i at
 * columns i*dh...), into o [T, d]. */
static void attention(DnnlLayer *L, const LayerSpec *s, const float *qp, const float *kp,
                      const float *vp, int64_t ld, float *o) {
  int64_t T = s->t, h = s->heads, dh = s->d / s->heads, d = s->d;
  float *sc = lbuf(L, (size_t)(h * T * T) * 4);
  dnnl_memory_desc_t qmd, kmd, smd, vmd, omd;
  mdn(&qmd, 3, (int64_t[]){h, T, dh}, (int64_t[]){dh, ld, 1});
  mdn(&kmd, 3, (int64_t[]){h, dh, T}, (int64_t[]){dh, 1, ld});
  mdn(&smd, 3, (int64_t[]){h, T, T}, (int64_t[]){T * T, T, 1});
  mdn(&vmd, 3, (int64_t[]){h, T, dh}, (int64_t[]){dh, ld, 1});
  mdn(&omd, 3, (int64_t[]){h, T, dh}, (int64_t[]){dh, d, 1});

  /* S = (Q K^T) / sqrt(dh). */
  DPrim *p = lprim(L);
  dnnl_matmul_desc_t md;
  DN(dnnl_matmul_desc_init(&md, &qmd, &kmd, NULL, &smd));
  dnnl_primitive_attr_t attr;
  DN(dnnl_primitive_attr_create(&attr));
  float scale = (float)(1.0 / sqrt((double)dh));
  DN(dnnl_primitive_attr_set_output_scales(attr, 1, 0, &scale));
  dnnl_primitive_desc_t pd;
  DN(dnnl_primitive_desc_create(&pd, &md, attr, eng, NULL));
  dnnl_primitive_attr_destroy(attr);
  dp_arg(p, DNNL_ARG_SRC, dp_mem(p, &qmd, (void *)qp));
  dp_arg(p, DNNL_ARG_WEIGHTS, dp_mem(p, &kmd, (void *)kp));
  dp_arg(p, DNNL_ARG_DST, dp_mem(p, &smd, sc));
  dp_finish(p, pd);

  if (s->decoder) {
    /* The causal mask: query i sees keys j <= i. */
    float *mask = lbuf(L, (size_t)(T * T) * 4);
    for (int64_t i = 0; i < T; i++)
      for (int64_t j = 0; j < T; j++)
        mask[i * T + j] = j <= i ? 0.0f : -1e30f;
    dnnl_memory_desc_t mmd;
    mdn(&mmd, 3, (int64_t[]){1, T, T}, (int64_t[]){T * T, T, 1});
    p = lprim(L);
    dnnl_binary_desc_t bd;
    DN(dnnl_binary_desc_init(&bd, dnnl_binary_add, &smd, &mmd, &smd));
    DN(dnnl_primitive_desc_create(&pd, &bd, NULL, eng, NULL));
    dnnl_memory_t sm = dp_mem(p, &smd, sc);
    dp_arg(p, DNNL_ARG_SRC_0, sm);
    dp_arg(p, DNNL_ARG_SRC_1, dp_mem(p, &mmd, mask));
    dp_arg(p, DNNL_ARG_DST, sm);
    dp_finish(p, pd);
  }

  /* P = softmax(S) over the keys, in place. */
  p = lprim(L);
  dnnl_softmax_desc_t sd;
  DN(dnnl_softmax_forward_desc_init(&sd, dnnl_forward_inference, &smd, 2));
  DN(dnnl_primitive_desc_create(&pd, &sd, NULL, eng, NULL));
  dnnl_memory_t sm = dp_mem(p, &smd, sc);
  dp_arg(p, DNNL_ARG_SRC, sm);
  dp_arg(p, DNNL_ARG_DST, sm);
  dp_finish(p, pd);

  /* O = P V, written as [T, h, dh] = [T, d]. */
  p = lprim(L);
  DN(dnnl_matmul_desc_init(&md, &smd, &vmd, NULL, &omd));
  DN(dnnl_primitive_desc_create(&pd, &md, NULL, eng, NULL));
  dp_arg(p, DNNL_ARG_SRC, dp_mem(p, &smd, sc));
  dp_arg(p, DNNL_ARG_WEIGHTS, dp_mem(p, &vmd, (void *)vp));
  dp_arg(p, DNNL_ARG_DST, dp_mem(p, &omd, o));
  dp_finish(p, pd);
}

static void layernorm(DnnlLayer *L, const LayerSpec *s, const float *x, float *y,
                      const float *g, const float *b) {
  dnnl_memory_desc_t xmd, gmd;
  md2(&xmd, s->t, s->d, dnnl_f32, dnnl_ab);
  dnnl_dims_t gd = {s->d};
  DN(dnnl_memory_desc_init_by_tag(&gmd, 1, gd, dnnl_f32, dnnl_a));
  dnnl_layer_normalization_desc_t ld;
  DN(dnnl_layer_normalization_forward_desc_init(&ld, dnnl_forward_inference, &xmd, NULL,
                                                (float)s->eps, dnnl_use_scale | dnnl_use_shift));
  dnnl_primitive_desc_t pd;
  DN(dnnl_primitive_desc_create(&pd, &ld, NULL, eng, NULL));
  DPrim *p = lprim(L);
  dp_arg(p, DNNL_ARG_SRC, dp_mem(p, &xmd, (void *)x));
  dp_arg(p, DNNL_ARG_SCALE, dp_mem(p, &gmd, (void *)g));
  dp_arg(p, DNNL_ARG_SHIFT, dp_mem(p, &gmd, (void *)b));
  dp_arg(p, DNNL_ARG_DST, dp_mem(p, &xmd, y));
  dp_finish(p, pd);
}

static void gelu(DnnlLayer *L, const LayerSpec *s, float *x) {
  dnnl_memory_desc_t xmd;
  md2(&xmd, s->t, s->ffn, dnnl_f32, dnnl_ab);
  dnnl_eltwise_desc_t ed;
  DN(dnnl_eltwise_forward_desc_init(&ed, dnnl_forward_inference,
                                    s->decoder ? dnnl_eltwise_gelu_tanh : dnnl_eltwise_gelu_erf,
                                    &xmd, 0, 0));
  dnnl_primitive_desc_t pd;
  DN(dnnl_primitive_desc_create(&pd, &ed, NULL, eng, NULL));
  DPrim *p = lprim(L);
  dnnl_memory_t m = dp_mem(p, &xmd, x);
  dp_arg(p, DNNL_ARG_SRC, m);
  dp_arg(p, DNNL_ARG_DST, m);
  dp_finish(p, pd);
}

static void add(DnnlLayer *L, const LayerSpec *s, const float *a, const float *b, float *y) {
  dnnl_memory_desc_t md;
  md2(&md, s->t, s->d, dnnl_f32, dnnl_ab);
  dnnl_binary_desc_t bd;
  DN(dnnl_binary_desc_init(&bd, dnnl_binary_add, &md, &md, &md));
  dnnl_primitive_desc_t pd;
  DN(dnnl_primitive_desc_create(&pd, &bd, NULL, eng, NULL));
  DPrim *p = lprim(L);
  dp_arg(p, DNNL_ARG_SRC_0, dp_mem(p, &md, (void *)a));
  dp_arg(p, DNNL_ARG_SRC_1, dp_mem(p, &md, (void *)b));
  dp_arg(p, DNNL_ARG_DST, dp_mem(p, &md, y));
  dp_finish(p, pd);
}

void dnnl_layer_build(DnnlLayer *L, const LayerSpec *s, const LayerWeights *w, const float *x,
                      float *y, const LinearQ *q, int wmax) {
  memset(L, 0, sizeof *L);
  size_t T = (size_t)s->t, d = (size_t)s->d;
  float *o = lbuf(L, T * d * 4), *a = lbuf(L, T * d * 4), *r1 = lbuf(L, T * d * 4);
  float *f1 = lbuf(L, T * (size_t)s->ffn * 4), *f2 = lbuf(L, T * d * 4);
  if (s->decoder) {
    float *hx = lbuf(L, T * d * 4), *qkv = lbuf(L, T * 3 * d * 4), *h2 = lbuf(L, T * d * 4);
    layernorm(L, s, x, hx, w->ln1_g, w->ln1_b);
    linear(L, s, w, q, wmax, 0, hx, qkv);
    attention(L, s, qkv, qkv + d, qkv + 2 * d, (int64_t)(3 * d), o);
    linear(L, s, w, q, wmax, 1, o, a);
    add(L, s, x, a, r1);
    layernorm(L, s, r1, h2, w->ln2_g, w->ln2_b);
    linear(L, s, w, q, wmax, 2, h2, f1);
    gelu(L, s, f1);
    linear(L, s, w, q, wmax, 3, f1, f2);
    add(L, s, r1, f2, y);
  } else {
    float *qb = lbuf(L, T * d * 4), *kb = lbuf(L, T * d * 4), *vb = lbuf(L, T * d * 4);
    float *h1 = lbuf(L, T * d * 4), *r2 = lbuf(L, T * d * 4);
    linear(L, s, w, q, wmax, 0, x, qb);
    linear(L, s, w, q, wmax, 1, x, kb);
    linear(L, s, w, q, wmax, 2, x, vb);
    attention(L, s, qb, kb, vb, (int64_t)d, o);
    linear(L, s, w, q, wmax, 3, o, a);
    add(L, s, x, a, r1);
    layernorm(L, s, r1, h1, w->ln1_g, w->ln1_b);
    linear(L, s, w, q, wmax, 4, h1, f1);
    gelu(L, s, f1);
    linear(L, s, w, q, wmax, 5, f1, f2);
    add(L, s, h1, f2, r2);
    layernorm(L, s, r2, y, w->ln2_g, w->ln2_b);
  }
}

void dnnl_layer_free(DnnlLayer *L) {
  for (int i = 0; i < L->n; i++)
    dp_free(&L->p[i]);
  for (int i = 0; i < L->nbuf; i++)
    free(L->buf[i]);
  for (int i = 0; i < L->nq; i++)
    free_qfc(&L->q[i]);
  memset(L, 0, sizeof *L);
}
