/* layerir.c: the benchmark's transformer layers as q8c text IR and
 * safetensors weights (layerir.h). */
#include "layerir.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void fc_init(Fc *f, int n, int k) {
  f->n = n, f->k = k;
  f->w = xmalloc((size_t)n * (size_t)k * 4);
  f->b = xmalloc((size_t)n * 4);
  double bound = 1.0 / sqrt((double)k);
  for (int64_t i = 0; i < (int64_t)n * k; i++)
    f->w[i] = (float)((2 * rng_unif() - 1) * bound);
  for (int i = 0; i < n; i++)
    f->b[i] = (float)((2 * rng_unif() - 1) * bound);
}

static float *fill(int n, float v) {
  float *p = xmalloc((size_t)n * 4);
  for (int i = 0; i < n; i++)
    p[i] = v;
  return p;
}

void layer_weights_init(const LayerSpec *s, LayerWeights *w) {
  memset(w, 0, sizeof *w);
  static const char *enc[] = {"wq", "wk", "wv", "wo", "w1", "w2"};
  static const char *dec[] = {"wqkv", "wo", "w1", "w2"};
  int d = s->d;
  if (s->decoder) {
    w->nlin = 4;
    fc_init(&w->lin[0], 3 * d, d);
  } else {
    w->nlin = 6;
    for (int i = 0; i < 3; i++)
      fc_init(&w->lin[i], d, d);
  }
  int o = w->nlin - 3;
  fc_init(&w->lin[o], d, d);
  fc_init(&w->lin[o + 1], s->ffn, d);
  fc_init(&w->lin[o + 2], d, s->ffn);
  for (int i = 0; i < w->nlin; i++)
    w->lin_name[i] = s->decoder ? dec[i] : enc[i];
  w->ln1_g = fill(d, 1), w->ln1_b = fill(d, 0);
  w->ln2_g = fill(d, 1), w->ln2_b = fill(d, 0);
}

void layer_weights_free(LayerWeights *w) {
  for (int i = 0; i < w->nlin; i++)
    free(w->lin[i].w), free(w->lin[i].b);
  free(w->ln1_g), free(w->ln1_b), free(w->ln2_g), free(w->ln2_b);
  memset(w, 0, sizeof *w);
}

void layer_write_weights(const LayerSpec *s, const LayerWeights *w, const char *path) {
  Tensor t[2 * LAYER_MAX_LINEARS + 4];
  char names[LAYER_MAX_LINEARS][16];
  int n = 0;
  for (int i = 0; i < w->nlin; i++) {
    const Fc *f = &w->lin[i];
    /* The bias of "wq" is "bq". */
    snprintf(names[i], sizeof names[i], "b%s", w->lin_name[i] + 1);
    t[n++] = (Tensor){w->lin_name[i], "F32", f->n, f->k, f->w, 4};
    t[n++] = (Tensor){names[i], "F32", f->n, 0, f->b, 4};
  }
  t[n++] = (Tensor){"ln1.g", "F32", s->d, 0, w->ln1_g, 4};
  t[n++] = (Tensor){"ln1.b", "F32", s->d, 0, w->ln1_b, 4};
  t[n++] = (Tensor){"ln2.g", "F32", s->d, 0, w->ln2_g, 4};
  t[n++] = (Tensor){"ln2.b", "F32", s->d, 0, w->ln2_b, 4};
  write_safetensors(path, t, n);
}

/* A growing string. */
typedef struct {
  char *s;
  size_t len, cap;
} Str;

static void put(Str *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void put(Str *b, const char *fmt, ...) {
  for (;;) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(b->s + b->len, b->cap - b->len, fmt, ap);
    va_end(ap);
    if (n >= 0 && (size_t)n < b->cap - b->len) {
      b->len += (size_t)n;
      return;
    }
    b->cap = b->cap * 2 + (size_t)n + 256;
    b->s = realloc(b->s, b->cap);
    if (!b->s)
      die("out of memory%s", "");
  }
}

char *layer_ir(const LayerSpec *s, const char *weights_name) {
  Str b = {malloc(256), 0, 256};
  if (!b.s)
    die("out of memory%s", "");
  b.s[0] = 0;
  int T = s->t, d = s->d, h = s->heads, dh = s->d / s->heads;
  char name[64];
  snprintf(name, sizeof name, "%s", s->name);
  for (char *p = name; *p; p++)
    if (*p == '-')
      *p = '_';
  put(&b, "; %s layer: T %d, d %d, %d heads, FFN %d (bench/layerir.c)\n", s->name, T, d, h,
      s->ffn);
  put(&b, "model %s {\n  weights \"%s\"\n  input %%x : f32[?, %d, %d]\n", name, weights_name, T,
      d);
  if (s->decoder) {
    put(&b, "  %%h = layernorm %%x, @ln1.g, @ln1.b {eps = %g}\n", s->eps);
    put(&b, "  %%qkv = linear %%h, @wqkv, @bqkv\n");
    put(&b, "  %%q, %%k, %%v = split %%qkv {axis = -1}\n");
  } else {
    put(&b, "  %%q = linear %%x, @wq, @bq\n");
    put(&b, "  %%k = linear %%x, @wk, @bk\n");
    put(&b, "  %%v = linear %%x, @wv, @bv\n");
  }
  put(&b, "  %%qh = reshape %%q {shape = [?, %d, %d, %d]}\n", T, h, dh);
  put(&b, "  %%qt = transpose %%qh {perm = [0, 2, 1, 3]}\n");
  put(&b, "  %%kh = reshape %%k {shape = [?, %d, %d, %d]}\n", T, h, dh);
  put(&b, "  %%kt = transpose %%kh {perm = [0, 2, 3, 1]}\n");
  put(&b, "  %%vh = reshape %%v {shape = [?, %d, %d, %d]}\n", T, h, dh);
  put(&b, "  %%vt = transpose %%vh {perm = [0, 2, 1, 3]}\n");
  put(&b, "  %%s = matmul %%qt, %%kt\n");
  put(&b, "  %%ss = mul %%s, %.9g\n", 1.0 / sqrt((double)dh));
  put(&b, "  %%p = softmax %%ss%s\n", s->decoder ? " {causal = 1}" : "");
  put(&b, "  %%o = matmul %%p, %%vt\n");
  put(&b, "  %%ot = transpose %%o {perm = [0, 2, 1, 3]}\n");
  put(&b, "  %%of = reshape %%ot {shape = [?, %d, %d]}\n", T, d);
  put(&b, "  %%a = linear %%of, @wo, @bo\n");
  put(&b, "  %%r1 = add %%x, %%a\n");
  if (s->decoder) {
    put(&b, "  %%h2 = layernorm %%r1, @ln2.g, @ln2.b {eps = %g}\n", s->eps);
    put(&b, "  %%f1 = linear %%h2, @w1, @b1\n");
    put(&b, "  %%g = gelu %%f1 {approximate = tanh}\n");
    put(&b, "  %%f2 = linear %%g, @w2, @b2\n");
    put(&b, "  %%y = add %%r1, %%f2\n");
  } else {
    put(&b, "  %%h1 = layernorm %%r1, @ln1.g, @ln1.b {eps = %g}\n", s->eps);
    put(&b, "  %%f1 = linear %%h1, @w1, @b1\n");
    put(&b, "  %%g = gelu %%f1\n");
    put(&b, "  %%f2 = linear %%g, @w2, @b2\n");
    put(&b, "  %%r2 = add %%h1, %%f2\n");
    put(&b, "  %%y = layernorm %%r2, @ln2.g, @ln2.b {eps = %g}\n", s->eps);
  }
  put(&b, "  output %%y\n}\n");
  return b.s;
}

int64_t layer_macs(const LayerSpec *s) {
  int64_t T = s->t, d = s->d;
  return T * d * (4 * d) + 2 * T * d * s->ffn + 2 * T * T * d;
}
