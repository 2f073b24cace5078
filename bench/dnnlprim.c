/* dnnlprim.c: oneDNN primitives for the benchmarks (dnnlprim.h). */
#include "dnnlprim.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "benchutil.h"

dnnl_engine_t eng;
dnnl_stream_t strm;

void dnnl_check(dnnl_status_t s, const char *what) {
  if (s != dnnl_success) {
    char msg[256];
    snprintf(msg, sizeof msg, "oneDNN: %s failed (status %d)", what, (int)s);
    die("%s", msg);
  }
}

dnnl_memory_t dp_mem(DPrim *p, const dnnl_memory_desc_t *md, void *handle) {
  dnnl_memory_t m;
  DN(dnnl_memory_create(&m, md, eng, handle));
  p->own[p->nown++] = m;
  return m;
}

void dp_arg(DPrim *p, int arg, dnnl_memory_t m) {
  p->args[p->nargs].arg = arg;
  p->args[p->nargs++].memory = m;
}

void dp_finish(DPrim *p, dnnl_primitive_desc_t pd) {
  const char *impl = "?";
  dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl);
  snprintf(p->impl, sizeof p->impl, "%s", impl);
  const dnnl_memory_desc_t *sp = dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
  if (sp && dnnl_memory_desc_get_size(sp) > 0)
    dp_arg(p, DNNL_ARG_SCRATCHPAD, dp_mem(p, sp, DNNL_MEMORY_ALLOCATE));
  DN(dnnl_primitive_create(&p->prim, pd));
  DN(dnnl_primitive_desc_destroy(pd));
}

void dp_run(const DPrim *p) {
  DN(dnnl_primitive_execute(p->prim, strm, p->nargs, p->args));
  DN(dnnl_stream_wait(strm));
}

void dp_free(DPrim *p) {
  if (p->prim)
    dnnl_primitive_destroy(p->prim);
  for (int i = 0; i < p->nown; i++)
    dnnl_memory_destroy(p->own[i]);
  memset(p, 0, sizeof *p);
}

void md2(dnnl_memory_desc_t *md, int64_t d0, int64_t d1, dnnl_data_type_t dt,
                dnnl_format_tag_t tag) {
  dnnl_dims_t dims = {d0, d1};
  DN(dnnl_memory_desc_init_by_tag(md, 2, dims, dt, tag));
}

void dp_matmul(DPrim *p, const MatmulSpec *s) {
  memset(p, 0, sizeof *p);
  dnnl_memory_desc_t xmd, wany, bmd, ymd, wuser;
  md2(&xmd, s->m, s->k, s->xt, dnnl_ab);
  md2(&wany, s->k, s->n, s->wt, dnnl_format_tag_any);
  md2(&wuser, s->k, s->n, s->wt, dnnl_ba);
  md2(&ymd, s->m, s->n, s->yt, dnnl_ab);
  bool has_bias = s->bt != dnnl_data_type_undef;
  if (has_bias)
    md2(&bmd, 1, s->n, s->bt, dnnl_ab);
  dnnl_matmul_desc_t desc;
  DN(dnnl_matmul_desc_init(&desc, &xmd, &wany, has_bias ? &bmd : NULL, &ymd));
  dnnl_primitive_attr_t attr;
  DN(dnnl_primitive_attr_create(&attr));
  if (s->scales)
    DN(dnnl_primitive_attr_set_output_scales(attr, s->n, 1 << 1, s->scales));
  if (s->x_zp)
    DN(dnnl_primitive_attr_set_zero_points(attr, DNNL_ARG_SRC, 1, 0, &s->x_zp));
  if (s->y_zp)
    DN(dnnl_primitive_attr_set_zero_points(attr, DNNL_ARG_DST, 1, 0, &s->y_zp));
  if (s->relu) {
    dnnl_post_ops_t po;
    DN(dnnl_post_ops_create(&po));
    DN(dnnl_post_ops_append_eltwise(po, 1.0f, dnnl_eltwise_relu, 0, 0));
    DN(dnnl_primitive_attr_set_post_ops(attr, po));
    dnnl_post_ops_destroy(po);
  }
  dnnl_primitive_desc_t pd;
  DN(dnnl_primitive_desc_create(&pd, &desc, attr, eng, NULL));
  dnnl_primitive_attr_destroy(attr);

  /* The weights, reordered into the chosen layout (with whatever
   * compensation it carries) once, outside the timing. */
  const dnnl_memory_desc_t *wmd = dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
  dnnl_memory_t wsrc, wdst = dp_mem(p, wmd, DNNL_MEMORY_ALLOCATE);
  DN(dnnl_memory_create(&wsrc, &wuser, eng, (void *)s->w));
  dnnl_primitive_desc_t rpd;
  DN(dnnl_reorder_primitive_desc_create(&rpd, &wuser, eng, wmd, eng, NULL));
  dnnl_primitive_t reorder;
  DN(dnnl_primitive_create(&reorder, rpd));
  dnnl_exec_arg_t rargs[2] = {{DNNL_ARG_FROM, wsrc}, {DNNL_ARG_TO, wdst}};
  DN(dnnl_primitive_execute(reorder, strm, 2, rargs));
  DN(dnnl_stream_wait(strm));
  dnnl_primitive_destroy(reorder);
  dnnl_primitive_desc_destroy(rpd);
  dnnl_memory_destroy(wsrc);

  dp_arg(p, DNNL_ARG_SRC, dp_mem(p, &xmd, (void *)s->x));
  dp_arg(p, DNNL_ARG_WEIGHTS, wdst);
  if (has_bias)
    dp_arg(p, DNNL_ARG_BIAS, dp_mem(p, &bmd, (void *)s->bias));
  dp_arg(p, DNNL_ARG_DST, dp_mem(p, &ymd, s->y));
  dp_finish(p, pd);
}

/* q = sat(rint(x * inv_scale) + zp) as u8: the quantizing reorder. */
void dp_quantize(DPrim *p, int64_t m, int64_t k, const float *x, uint8_t *q,
                        float inv_scale, int32_t zp) {
  memset(p, 0, sizeof *p);
  dnnl_memory_desc_t xmd, qmd;
  md2(&xmd, m, k, dnnl_f32, dnnl_ab);
  md2(&qmd, m, k, dnnl_u8, dnnl_ab);
  dnnl_primitive_attr_t attr;
  DN(dnnl_primitive_attr_create(&attr));
  DN(dnnl_primitive_attr_set_output_scales(attr, 1, 0, &inv_scale));
  if (zp)
    DN(dnnl_primitive_attr_set_zero_points(attr, DNNL_ARG_DST, 1, 0, &zp));
  dnnl_primitive_desc_t pd;
  DN(dnnl_reorder_primitive_desc_create(&pd, &xmd, eng, &qmd, eng, attr));
  dnnl_primitive_attr_destroy(attr);
  dp_arg(p, DNNL_ARG_FROM, dp_mem(p, &xmd, (void *)x));
  dp_arg(p, DNNL_ARG_TO, dp_mem(p, &qmd, q));
  dp_finish(p, pd);
}

void run_dnnl(void *c) {
  DRun *r = c;
  for (int i = 0; i < r->n; i++)
    dp_run(&r->p[i]);
}

void quantize_fc(const Fc *l, float sx, float sy, QFc *q) { quantize_fc_range(l, sx, sy, 127, q); }

void quantize_fc_range(const Fc *l, float sx, float sy, int wmax, QFc *q) {
  q->wq = xmalloc((size_t)l->n * l->k);
  q->sw = xmalloc((size_t)l->n * 4);
  q->scale = xmalloc((size_t)l->n * 4);
  q->bias = xmalloc((size_t)l->n * 4);
  for (int j = 0; j < l->n; j++) {
    float m = 0;
    for (int i = 0; i < l->k; i++)
      m = fabsf(l->w[j * l->k + i]) > m ? fabsf(l->w[j * l->k + i]) : m;
    float sw = m > 0 ? (float)((double)m / wmax) : 1;
    for (int i = 0; i < l->k; i++) {
      float v = rintf(l->w[j * l->k + i] / sw);
      q->wq[j * l->k + i] = (int8_t)(v < -wmax ? -wmax : v > wmax ? wmax : v);
    }
    q->sw[j] = sw;
    q->bias[j] = (int32_t)rint((double)l->b[j] / ((double)sx * sw));
    q->scale[j] = sy > 0 ? (float)((double)sx * sw / sy) : (float)((double)sx * sw);
  }
}

void free_qfc(QFc *q) { free(q->wq), free(q->sw), free(q->scale), free(q->bias); }
