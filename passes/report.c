/* report.c: the accuracy report (--report). It measures the int8 module `q`,
 * as the pipeline left it, against the float module `ref` it came from, on the
 * calibration samples, and gives the model's size before and after.
 *
 * Each quantized op of q (qgemm, qlinear, qlinear_dyn) replaces one float
 * value F of ref: the pipeline names the op's result after it, with ".q"
 * appended when the result is integer (quantize.c, fuse_requant.c), and its
 * input after the float value X it quantizes. Both modules run batch by batch
 * over the samples; for each op two errors are accumulated against F:
 *
 *   propagated  the op's output in the int8 model run end to end, so it
 *               includes the error of every layer before it;
 *   isolated    the op alone (ir_interp_node) fed the float model's X,
 *               quantized with the op's own input parameters when it takes
 *               integers: the error this layer adds by itself.
 *
 * Integer outputs are dequantized as the dequantize op does, (float)(q - zp)
 * * scale in f32. The statistics (SQNR, max abs error, cosine similarity) are
 * sums in double updated as values stream by, so memory holds one batch of the
 * needed float values and never grows with the number of samples.
 *
 * The result is a fixed-width table for people or JSON for tools; inf and NaN
 * figures print as "inf"/"nan" in text and null in JSON. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "passes.h"

/* ---- streaming statistics ---- */

/* Sums over every element seen of ref (the float value) and x (the int8
 * model's), in double. */
typedef struct {
  double ref2, err2, x2, dot;
  double max_err;  /* NaN once any error was NaN */
} Stats;

static void stats_add(Stats *s, double r, double x) {
  double e = r - x, a = fabs(e);
  s->ref2 += r * r;
  s->err2 += e * e;
  s->x2 += x * x;
  s->dot += r * x;
  if (isnan(a) || isnan(s->max_err))
    s->max_err = NAN;
  else if (a > s->max_err)
    s->max_err = a;
}

/* 10 log10(sum ref^2 / sum err^2): inf for an exact result, NaN when both
 * sums are 0 (nothing to measure). */
static double stats_sqnr(const Stats *s) {
  if (s->err2 == 0)
    return s->ref2 == 0 ? NAN : INFINITY;
  return 10.0 * log10(s->ref2 / s->err2);
}

/* 1 when both are all zero (they agree), 0 when only one is. */
static double stats_cosine(const Stats *s) {
  if (s->ref2 == 0 && s->x2 == 0)
    return 1.0;
  if (s->ref2 == 0 || s->x2 == 0)
    return 0.0;
  return s->dot / sqrt(s->ref2 * s->x2);
}

/* ---- what is measured ---- */

/* A value of ref whose tensor is copied out of each float run. */
typedef struct {
  const IrValue *v;
  float *data;    /* this batch's tensor */
  int64_t numel;  /* -1 until the value was seen in this batch */
  size_t cap;     /* floats allocated in data */
} Tap;

/* Where the float model's tensor for a value comes from in a batch. */
typedef struct {
  const IrValue *v;  /* a value of ref */
  int input;         /* index among ref's inputs, or -1 */
  int tap;           /* index among the taps (node results), or -1 */
} RefValue;

typedef struct {
  const IrNode *node;  /* the quantized op of q */
  RefValue f, x;       /* the float value it replaces, and its input's */
  IrDType in_dtype;    /* the op's operand 0 in q: f32, u8 or i8 */
  bool has_xq;         /* x_scale, x_zero_point and x_dtype are given */
  IrDType x_dtype;
  float x_scale;
  int32_t x_zp;
  IrDType out_dtype;   /* f32, u8 or i8 */
  float out_scale;     /* u8, i8 results */
  int32_t out_zp;
  bool relu;
  int64_t wn, wk;      /* the weight's [N, K] */
  Stats prop, iso;
} Layer;

typedef struct {
  IrModule *ref, *q;
  IrArena *arena;  /* layers, taps, table cells; freed at the end */
  Layer *layers;
  int nlayers;
  Tap *taps;
  int ntaps;
  /* By value id (ir_number_values of each module), so that the observers
   * find a node's entry in O(1): 1 + the index of the tap of a ref value,
   * and of the layer of a q node's result; 0 for none. */
  int nref_ids, nq_ids;
  int *tap_of, *layer_of;
  const IrTensor *ref_inputs;  /* the current batch, as given to ref */
  bool failed;                 /* an observer met an error: message in q->diag */
} Report;

/* The entry of `v` in an id-indexed table of module values, or -1. */
static int by_id(const int *table, int count, const IrValue *v) {
  return v->id >= 0 && v->id < count ? table[v->id] - 1 : -1;
}

static bool is_quantized_op(IrOp op) {
  return op == IR_OP_QGEMM || op == IR_OP_QLINEAR || op == IR_OP_QLINEAR_DYN;
}

/* The float value's name: `name` less a trailing ".q". */
static const char *float_name(IrArena *a, const char *name) {
  size_t n = strlen(name);
  if (n > 2 && strcmp(name + n - 2, ".q") == 0)
    n -= 2;
  return ir_strndup(a, name, n);
}

static bool internal_error(IrModule *q, IrLoc loc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static bool internal_error(IrModule *q, IrLoc loc, const char *fmt, ...) {
  char msg[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  return ir_error(&q->diag, loc, "internal error: report: %s", msg);
}

/* ref's messages are shown through q's diagnostic, which the caller reads. */
static bool ref_failed(Report *r) {
  if (!r->q->diag.failed) {
    r->q->diag.failed = true;
    snprintf(r->q->diag.msg, sizeof r->q->diag.msg, "%s",
             r->ref->diag.msg[0] ? r->ref->diag.msg : "the float model failed to run");
  }
  return false;
}

/* Pair value `qv` of q with its float value in ref, adding a tap for it. */
static bool find_ref_value(Report *r, const IrNode *n, const IrValue *qv, RefValue *out) {
  const char *name = float_name(r->arena, qv->name);
  IrValue *v = ir_find_value(r->ref, name);
  if (!v && qv == n->result)
    return internal_error(r->q, n->loc, "%s %%%s: the float model has no value %%%s for it to "
                          "replace", ir_op_info[n->op].name, n->result->name, name);
  if (!v)
    return internal_error(r->q, n->loc, "%s %%%s: its input %%%s has no float value %%%s in "
                          "the float model", ir_op_info[n->op].name, n->result->name, qv->name,
                          name);
  if (v->type.dtype != IR_F32)
    return internal_error(r->q, n->loc, "%%%s in the original model is not f32", name);
  *out = (RefValue){v, -1, -1};
  /* Inputs are numbered first: an input's id is its index. */
  if (v->kind == IR_VAL_INPUT && v->id >= 0 && v->id < r->ref->ninputs &&
      r->ref->inputs[v->id] == v)
    out->input = v->id;
  if (out->input >= 0 || v->kind != IR_VAL_NODE)
    return true;
  out->tap = by_id(r->tap_of, r->nref_ids, v);
  if (out->tap < 0 && v->id >= 0 && v->id < r->nref_ids) {
    out->tap = r->ntaps++;
    r->taps[out->tap] = (Tap){v, NULL, -1, 0};
    r->tap_of[v->id] = out->tap + 1;
  }
  return true;
}

/* The input or output parameters of `n`, all three, or an internal error
 * naming the first missing one. */
static bool qparams(Report *r, const IrNode *n, IrQSide side, IrQParams *q) {
  if (ir_get_qparams(n, side, q))
    return true;
  IrAttrKey keys[3];
  ir_qparams_keys(side, keys);
  int k = 0;
  while (k < 2 && ir_has_attr(n, keys[k]))
    k++;
  return internal_error(r->q, n->loc, "%s %%%s has no '%s'", ir_op_info[n->op].name,
                        n->result->name, ir_attr_info[keys[k]].key);
}

/* Read what the report shows and needs of quantized op `n`. */
static bool setup_layer(Report *r, const IrNode *n, Layer *l) {
  *l = (Layer){.node = n};
  if (n->nopnds < 2 || n->opnds[1]->type.rank != 2)
    return internal_error(r->q, n->loc, "%%%s has no [N, K] weight", n->result->name);
  l->wn = n->opnds[1]->type.dims[0];
  l->wk = n->opnds[1]->type.dims[1];
  l->in_dtype = n->opnds[0]->type.dtype;
  l->out_dtype = n->result->type.dtype;
  if (l->in_dtype != IR_F32 && !ir_dtype_is_quantized(l->in_dtype))
    return internal_error(r->q, n->loc, "%%%s: input of type %s", n->result->name,
                          ir_dtype_name(l->in_dtype));
  if (l->out_dtype != IR_F32 && !ir_dtype_is_quantized(l->out_dtype))
    return internal_error(r->q, n->loc, "%%%s: result of type %s", n->result->name,
                          ir_dtype_name(l->out_dtype));
  l->relu = ir_attr_int(n, IR_ATTR_RELU, 0) == 1;
  l->has_xq = ir_has_attr(n, IR_ATTR_X_SCALE);
  if (l->has_xq || ir_dtype_is_quantized(l->in_dtype)) {
    IrQParams x;
    if (!qparams(r, n, IR_QPARAMS_IN, &x))
      return false;
    l->x_scale = x.scale;
    l->x_zp = x.zero_point;
    l->x_dtype = x.dtype;
    if (!ir_dtype_is_quantized(l->x_dtype) || (l->in_dtype != IR_F32 && l->x_dtype != l->in_dtype))
      return internal_error(r->q, n->loc, "%%%s: x_dtype does not fit its input",
                            n->result->name);
    l->has_xq = true;
  }
  if (ir_dtype_is_quantized(l->out_dtype)) {
    /* The result's dtype is its type's; scale and zero_point must be given. */
    IrAttrKey keys[3];
    ir_qparams_keys(IR_QPARAMS_OUT, keys);
    for (int k = 0; k < 2; k++)
      if (!ir_has_attr(n, keys[k]))
        return internal_error(r->q, n->loc, "%s %%%s has no '%s'", ir_op_info[n->op].name,
                              n->result->name, ir_attr_info[keys[k]].key);
    l->out_scale = (float)ir_attr_float(n, IR_ATTR_SCALE, 0);
    l->out_zp = (int32_t)ir_attr_int(n, IR_ATTR_ZERO_POINT, 0);
  }
  return find_ref_value(r, n, n->result, &l->f) && find_ref_value(r, n, n->opnds[0], &l->x);
}

static bool setup(Report *r) {
  IrModule *q = r->q;
  r->layers = ir_alloc(r->arena, (size_t)(q->nnodes + 1) * sizeof *r->layers);
  r->taps = ir_alloc(r->arena, (size_t)(2 * q->nnodes + 1) * sizeof *r->taps);
  r->nref_ids = ir_number_values(r->ref);
  r->nq_ids = ir_number_values(q);
  r->tap_of = ir_alloc(r->arena, (size_t)(r->nref_ids + 1) * sizeof *r->tap_of);
  r->layer_of = ir_alloc(r->arena, (size_t)(r->nq_ids + 1) * sizeof *r->layer_of);
  for (int i = 0; i < q->nnodes; i++) {
    if (!is_quantized_op(q->nodes[i]->op))
      continue;
    r->layer_of[q->nodes[i]->result->id] = r->nlayers + 1;
    if (!setup_layer(r, q->nodes[i], &r->layers[r->nlayers++]))
      return false;
  }
  return true;
}

/* ---- running the samples ---- */

/* The float model's tensor of `rv` in this batch. */
static bool ref_tensor(Report *r, const Layer *l, const RefValue *rv, const float **data,
                       int64_t *numel) {
  if (rv->input >= 0) {
    const IrTensor *t = &r->ref_inputs[rv->input];
    *data = t->data;
    ir_type_numel(&t->type, 1, numel);
  } else if (rv->tap >= 0) {
    *data = r->taps[rv->tap].data;
    *numel = r->taps[rv->tap].numel;
  } else {
    *data = rv->v->data;  /* a constant: no `?` */
    ir_type_numel(&rv->v->type, 1, numel);
  }
  if (*numel < 0 || (!*data && *numel > 0))
    return internal_error(r->q, l->node->loc, "%%%s was not computed by the float model",
                          rv->v->name);
  return true;
}

/* The float run: copy the values the layers need. */
static void observe_ref(void *user, const IrNode *node, const IrTensor *t) {
  Report *r = user;
  int i = by_id(r->tap_of, r->nref_ids, node->result);
  if (i >= 0 && r->taps[i].v == node->result) {
    Tap *tap = &r->taps[i];
    int64_t n;
    if (t->type.dtype != IR_F32 || !ir_type_numel(&t->type, 1, &n)) {
      internal_error(r->q, node->loc, "%%%s is not f32", tap->v->name);
      r->failed = true;
      return;
    }
    if ((size_t)n > tap->cap) {
      float *p = realloc(tap->data, (size_t)n * sizeof *p);
      if (!p) {
        r->failed = true;
        ir_error(&r->q->diag, (IrLoc){0}, "report: out of memory for %lld values of %%%s",
                 (long long)n, tap->v->name);
        return;
      }
      tap->data = p;
      tap->cap = (size_t)n;
    }
    if (n)
      memcpy(tap->data, t->data, (size_t)n * sizeof(float));
    tap->numel = n;
    return;
  }
}

/* real = (q - zero_point) * scale, one f32 multiply as dequantize computes it. */
static float dequant_at(const Layer *l, const IrTensor *t, int64_t i) {
  switch (t->type.dtype) {
  case IR_U8:
    return (float)(((const uint8_t *)t->data)[i] - l->out_zp) * l->out_scale;
  case IR_I8:
    return (float)(((const int8_t *)t->data)[i] - l->out_zp) * l->out_scale;
  default:
    return ((const float *)t->data)[i];
  }
}

/* Accumulate the error of layer output `t` against the float value. */
static bool measure(Report *r, Layer *l, Stats *s, const IrTensor *t) {
  const float *f;
  int64_t nf, n;
  if (!ref_tensor(r, l, &l->f, &f, &nf))
    return false;
  if (t->type.dtype != l->out_dtype)
    return internal_error(r->q, l->node->loc, "%%%s is %s, not %s", l->node->result->name,
                          ir_dtype_name(t->type.dtype), ir_dtype_name(l->out_dtype));
  if (!ir_type_numel(&t->type, 1, &n) || n != nf)
    return internal_error(r->q, l->node->loc,
                          "%%%s has %lld elements but %%%s of the float model %lld",
                          l->node->result->name, (long long)n, l->f.v->name, (long long)nf);
  for (int64_t i = 0; i < n; i++)
    stats_add(s, f[i], dequant_at(l, t, i));
  return true;
}

/* The int8 run: measure each quantized op's output as it is produced, so no
 * copy of it is kept. */
static void observe_q(void *user, const IrNode *node, const IrTensor *t) {
  Report *r = user;
  int i = by_id(r->layer_of, r->nq_ids, node->result);
  if (!r->failed && i >= 0 && r->layers[i].node == node &&
      !measure(r, &r->layers[i], &r->layers[i].prop, t))
    r->failed = true;
}

/* Operand count of any op in ops.def, and then some. */
enum { MAX_OPERANDS = 8 };

/* Run layer `l` alone on the float model's input (quantized with the op's
 * own parameters when it takes integers) and accumulate its error. */
static bool measure_isolated(Report *r, Layer *l, int64_t batch) {
  const IrNode *n = l->node;
  const float *x;
  int64_t nx, numel;
  if (n->nopnds > MAX_OPERANDS)
    return internal_error(r->q, n->loc, "%%%s has too many operands", n->result->name);
  if (!ref_tensor(r, l, &l->x, &x, &nx))
    return false;
  IrTensor opnds[MAX_OPERANDS], out = {.data = NULL};
  memset(opnds, 0, sizeof opnds);
  opnds[0].type = ir_type_bind(&n->opnds[0]->type, batch);
  if (!ir_type_numel(&opnds[0].type, batch, &numel) || numel != nx)
    return internal_error(r->q, n->loc, "input %%%s has %lld elements but %%%s of the float "
                          "model %lld", n->opnds[0]->name, (long long)numel, l->x.v->name,
                          (long long)nx);
  void *xq = NULL;
  if (l->in_dtype == IR_F32) {
    opnds[0].data = (void *)x;
  } else {
    int32_t qmin, qmax;
    ir_qbounds(l->x_dtype, &qmin, &qmax);
    xq = malloc(numel ? (size_t)numel : 1);
    if (!xq)
      return ir_error(&r->q->diag, n->loc, "report: out of memory for %lld values",
                      (long long)numel);
    for (int64_t i = 0; i < numel; i++) {
      int32_t v = ir_quantize_value(x[i], l->x_scale, l->x_zp, qmin, qmax);
      if (l->in_dtype == IR_U8)
        ((uint8_t *)xq)[i] = (uint8_t)v;
      else
        ((int8_t *)xq)[i] = (int8_t)v;
    }
    opnds[0].data = xq;
  }
  bool ok = ir_interp_node(r->q, n, batch, opnds, &out) && measure(r, l, &l->iso, &out);
  free(out.data);
  free(xq);
  return ok;
}

/* Run both models over every sample, one batch at a time. */
static bool run_samples(Report *r, const PassOptions *o, int64_t *nsamples) {
  IrModule *ref = r->ref, *q = r->q;
  int64_t rows = o->calib_batch > 0 ? o->calib_batch : 16;
  PassSamples *rs = pass_samples_open(ref, o->calib_path, rows);
  if (!rs)
    return ref_failed(r);
  PassSamples *qs = pass_samples_open(q, o->calib_path, rows);
  if (!qs) {
    pass_samples_close(rs);
    return false;
  }
  *nsamples = pass_samples_count(rs);
  IrTensor *rin = calloc((size_t)ref->ninputs + 1, sizeof *rin);
  IrTensor *qin = calloc((size_t)q->ninputs + 1, sizeof *qin);
  IrTensor *rout = calloc((size_t)ref->noutputs + 1, sizeof *rout);
  IrTensor *qout = calloc((size_t)q->noutputs + 1, sizeof *qout);
  bool ok = rin && qin && rout && qout;
  if (!ok)
    ir_error(&q->diag, (IrLoc){0}, "report: out of memory");
  r->ref_inputs = rin;
  while (ok) {
    int64_t batch = pass_samples_next(rs, rin);
    if (batch < 0) {
      ok = ref_failed(r);
      break;
    }
    int64_t qbatch = pass_samples_next(qs, qin);
    if (qbatch < 0)
      ok = false;
    else if (qbatch != batch)
      ok = internal_error(q, (IrLoc){0}, "the two models read batches of %lld and %lld samples",
                          (long long)batch, (long long)qbatch);
    if (!ok || batch == 0)
      break;
    for (int i = 0; i < r->ntaps; i++)
      r->taps[i].numel = -1;
    /* The float model first: the int8 run measures against its values. */
    ok = ir_interp_f32(ref, batch, rin, rout, observe_ref, r);
    for (int i = 0; i < ref->noutputs; i++)
      free(rout[i].data);
    if (!ok) {
      ok = ref_failed(r);
      break;
    }
    ok = !r->failed && ir_interp_f32(q, batch, qin, qout, observe_q, r) && !r->failed;
    for (int i = 0; i < q->noutputs; i++)
      free(qout[i].data);
    for (int i = 0; ok && i < r->nlayers; i++)
      ok = measure_isolated(r, &r->layers[i], batch);
  }
  free(rin);
  free(qin);
  free(rout);
  free(qout);
  pass_samples_close(rs);
  pass_samples_close(qs);
  return ok;
}

static int64_t const_bytes(const IrModule *m) {
  int64_t total = 0;
  for (int i = 0; i < m->nconsts; i++) {
    int64_t n;
    if (ir_type_numel(&m->consts[i]->type, 1, &n))
      total += n * (int64_t)ir_dtype_size(m->consts[i]->type.dtype);
  }
  return total;
}

/* ---- output ---- */

/* A number for the table: `fmt`, or inf/-inf/nan. */
static void fmt_num(char *buf, size_t size, const char *fmt, double v) {
  if (isnan(v))
    snprintf(buf, size, "nan");
  else if (isinf(v))
    snprintf(buf, size, "%sinf", v < 0 ? "-" : "");
  else
    snprintf(buf, size, fmt, v);
}

enum { NCOLS = 12, NLEFT = 6 /* text columns, left-aligned; then numbers */ };

static char *cellf(IrArena *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static char *cellf(IrArena *a, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(NULL, 0, fmt, ap);
  va_end(ap);
  char *p = ir_alloc(a, n > 0 ? (size_t)n + 1 : 1);
  va_start(ap, fmt);
  vsnprintf(p, n > 0 ? (size_t)n + 1 : 1, fmt, ap);
  va_end(ap);
  return p;
}

static void stats_cells(IrArena *a, const Stats *s, const char **cells) {
  char b[64];
  fmt_num(b, sizeof b, "%.2f", stats_sqnr(s));
  cells[0] = cellf(a, "%s", b);
  fmt_num(b, sizeof b, "%.4g", s->max_err);
  cells[1] = cellf(a, "%s", b);
  fmt_num(b, sizeof b, "%.6f", stats_cosine(s));
  cells[2] = cellf(a, "%s", b);
}

static void row_cells(IrArena *a, const Layer *l, const char **c) {
  const IrNode *n = l->node;
  c[0] = l->f.v->name;
  c[1] = ir_op_info[n->op].name;
  c[2] = cellf(a, "[%lld, %lld]", (long long)l->wn, (long long)l->wk);
  const char *from = l->in_dtype == IR_F32 ? "f32->" : "";
  if (l->has_xq)
    c[3] = cellf(a, "%s%s (%.4g, %d)", from, ir_dtype_name(l->x_dtype), l->x_scale,
                 (int)l->x_zp);
  else if (n->op == IR_OP_QLINEAR_DYN)
    c[3] = "f32->u8 (per row)";
  else
    c[3] = ir_dtype_name(l->in_dtype);
  if (l->out_dtype == IR_F32)
    c[4] = "f32";
  else
    c[4] = cellf(a, "%s (%.4g, %d)", ir_dtype_name(l->out_dtype), l->out_scale, (int)l->out_zp);
  c[5] = l->relu ? "yes" : "no";
  stats_cells(a, &l->prop, c + 6);
  stats_cells(a, &l->iso, c + 9);
}

/* "-- title -----" filling `width` columns. */
static void group_header(SupBuf *b, const char *title, int width) {
  int n = (int)strlen(title) + 4;
  sup_buf_printf(b, "-- %s ", title);
  for (; n < width; n++)
    sup_buf_printf(b, "-");
}

static void size_line(SupBuf *b, int64_t f32_bytes, int64_t int8_bytes) {
  sup_buf_printf(b, "model size: f32 %.1f KiB, int8 %.1f KiB", f32_bytes / 1024.0,
          int8_bytes / 1024.0);
  if (int8_bytes > 0 && f32_bytes >= int8_bytes)
    sup_buf_printf(b, " (%.2fx smaller, %.1f KiB saved)", (double)f32_bytes / (double)int8_bytes,
            (f32_bytes - int8_bytes) / 1024.0);
  else if (int8_bytes > 0)
    sup_buf_printf(b, " (%.2fx larger, %.1f KiB more)", (double)int8_bytes / (double)f32_bytes,
            (int8_bytes - f32_bytes) / 1024.0);
  sup_buf_printf(b, "\n");
}

static void write_text(SupBuf *b, Report *r, const PassOptions *o, int64_t nsamples) {
  static const char *const header[NCOLS] = {
      "layer", "op", "weight", "in (scale, zp)", "out (scale, zp)", "relu",
      "SQNR dB", "max|err|", "cosine", "SQNR dB", "max|err|", "cosine"};
  sup_buf_printf(b, "q8c report: %lld sample%s from %s\n", (long long)nsamples,
          nsamples == 1 ? "" : "s", o->calib_path);
  if (r->nlayers == 0) {
    sup_buf_printf(b, "no quantized ops (qgemm, qlinear, qlinear_dyn) to measure\n");
  } else {
    const char **cells = ir_alloc(r->arena, (size_t)r->nlayers * NCOLS * sizeof *cells);
    int width[NCOLS];
    for (int c = 0; c < NCOLS; c++)
      width[c] = (int)strlen(header[c]);
    for (int i = 0; i < r->nlayers; i++) {
      row_cells(r->arena, &r->layers[i], cells + i * NCOLS);
      for (int c = 0; c < NCOLS; c++) {
        int w = (int)strlen(cells[i * NCOLS + c]);
        width[c] = w > width[c] ? w : width[c];
      }
    }
    /* The two groups of statistics, over their three columns each. */
    int indent = 0;
    for (int c = 0; c < NLEFT; c++)
      indent += width[c] + 2;
    sup_buf_printf(b, "%*s", indent, "");
    group_header(b, "propagated", width[6] + width[7] + width[8] + 4);
    sup_buf_printf(b, "  ");
    group_header(b, "isolated", width[9] + width[10] + width[11] + 4);
    sup_buf_printf(b, "\n");
    for (int i = -1; i < r->nlayers; i++) {
      const char *const *row = i < 0 ? header : cells + i * NCOLS;
      for (int c = 0; c < NCOLS; c++)
        sup_buf_printf(b, "%s%*s", c ? "  " : "", c < NLEFT ? -width[c] : width[c], row[c]);
      sup_buf_printf(b, "\n");
    }
  }
  size_line(b, const_bytes(r->ref), const_bytes(r->q));
}

/* A JSON string: escapes for '"', '\' and control characters; bytes that are
 * not UTF-8 become U+FFFD, so the document is valid whatever a path holds. */
static int utf8_len(const unsigned char *p) {
  unsigned c = p[0], lo = 0x80, hi = 0xBF;
  int n;
  if (c >= 0xC2 && c <= 0xDF) {
    n = 2;
  } else if (c >= 0xE0 && c <= 0xEF) {
    n = 3;
    lo = c == 0xE0 ? 0xA0 : lo;  /* no overlong forms */
    hi = c == 0xED ? 0x9F : hi;  /* no surrogates */
  } else if (c >= 0xF0 && c <= 0xF4) {
    n = 4;
    lo = c == 0xF0 ? 0x90 : lo;
    hi = c == 0xF4 ? 0x8F : hi;  /* up to U+10FFFF */
  } else {
    return 0;
  }
  if (p[1] < lo || p[1] > hi)
    return 0;
  for (int i = 2; i < n; i++)
    if (p[i] < 0x80 || p[i] > 0xBF)
      return 0;
  return n;
}

static void json_str(SupBuf *b, const char *s) {
  const unsigned char *p = (const unsigned char *)s;
  sup_buf_printf(b, "\"");
  while (*p) {
    int n;
    if (*p == '"' || *p == '\\')
      sup_buf_printf(b, "\\%c", *p++);
    else if (*p < 0x20)
      sup_buf_printf(b, "\\u%04x", *p++);
    else if (*p < 0x80)
      sup_buf_printf(b, "%c", *p++);
    else if ((n = utf8_len(p)) > 0)
      sup_buf_printf(b, "%.*s", n, (const char *)p), p += n;
    else
      sup_buf_printf(b, "\\ufffd"), p++;
  }
  sup_buf_printf(b, "\"");
}

/* Finite numbers as %.9g; inf and NaN have no JSON spelling: null. */
static void json_num(SupBuf *b, double v) {
  if (isfinite(v))
    sup_buf_printf(b, "%.9g", v);
  else
    sup_buf_printf(b, "null");
}

static void json_stats(SupBuf *b, const Stats *s) {
  sup_buf_printf(b, "{\"sqnr_db\": ");
  json_num(b, stats_sqnr(s));
  sup_buf_printf(b, ", \"max_abs_error\": ");
  json_num(b, s->max_err);
  sup_buf_printf(b, ", \"cosine\": ");
  json_num(b, stats_cosine(s));
  sup_buf_printf(b, "}");
}

/* {"dtype", "scale", "zero_point"}; scale and zero point null when none. */
static void json_qparams(SupBuf *b, IrDType t, bool quantized, float scale, int32_t zp) {
  sup_buf_printf(b, "{\"dtype\": \"%s\", \"scale\": ", ir_dtype_name(t));
  if (quantized) {
    json_num(b, scale);
    sup_buf_printf(b, ", \"zero_point\": %d}", (int)zp);
  } else {
    sup_buf_printf(b, "null, \"zero_point\": null}");
  }
}

static void write_json(SupBuf *b, Report *r, const PassOptions *o, int64_t nsamples) {
  sup_buf_printf(b, "{\n  \"samples\": %lld,\n  \"calib\": ", (long long)nsamples);
  json_str(b, o->calib_path);
  sup_buf_printf(b, ",\n  \"layers\": [");
  for (int i = 0; i < r->nlayers; i++) {
    const Layer *l = &r->layers[i];
    sup_buf_printf(b, "%s\n    {\"name\": ", i ? "," : "");
    json_str(b, l->f.v->name);
    sup_buf_printf(b, ", \"op\": \"%s\", \"weight_shape\": [%lld, %lld], \"input\": ",
            ir_op_info[l->node->op].name, (long long)l->wn, (long long)l->wk);
    /* qlinear_dyn quantizes each row to u8 with its own scale and zero
     * point: an integer dtype with null parameters. */
    if (l->node->op == IR_OP_QLINEAR_DYN && !l->has_xq)
      json_qparams(b, IR_U8, false, 0, 0);
    else
      json_qparams(b, l->has_xq ? l->x_dtype : l->in_dtype, l->has_xq, l->x_scale, l->x_zp);
    sup_buf_printf(b, ", \"output\": ");
    json_qparams(b, l->out_dtype, l->out_dtype != IR_F32, l->out_scale, l->out_zp);
    sup_buf_printf(b, ", \"relu\": %s, \"propagated\": ", l->relu ? "true" : "false");
    json_stats(b, &l->prop);
    sup_buf_printf(b, ", \"isolated\": ");
    json_stats(b, &l->iso);
    sup_buf_printf(b, "}");
  }
  int64_t f32_bytes = const_bytes(r->ref), int8_bytes = const_bytes(r->q);
  sup_buf_printf(b, "%s],\n  \"size\": {\"f32_bytes\": %lld, \"int8_bytes\": %lld, \"ratio\": ",
          r->nlayers ? "\n  " : "", (long long)f32_bytes, (long long)int8_bytes);
  json_num(b, int8_bytes > 0 ? (double)f32_bytes / (double)int8_bytes : NAN);
  sup_buf_printf(b, ", \"saved_bytes\": %lld}\n}\n", (long long)(f32_bytes - int8_bytes));
}

char *pass_report(IrModule *ref, IrModule *q, const PassOptions *o, bool json) {
  if (!ref || !q || !o) {
    if (q)
      internal_error(q, (IrLoc){0}, "no float model to measure against");
    return NULL;
  }
  if (!o->calib_path) {
    ir_error(&q->diag, (IrLoc){0}, "the report measures on calibration samples: give --calib FILE");
    return NULL;
  }
  Report r = {.ref = ref, .q = q, .arena = ir_arena_new()};
  SupBuf b = {0};
  int64_t nsamples = 0;
  bool ok = setup(&r) && run_samples(&r, o, &nsamples);
  if (ok) {
    if (json)
      write_json(&b, &r, o, nsamples);
    else
      write_text(&b, &r, o, nsamples);
    if (b.oom)
      ok = ir_error(&q->diag, (IrLoc){0}, "report: out of memory");
  }
  for (int i = 0; i < r.ntaps; i++)
    free(r.taps[i].data);
  ir_arena_free(r.arena);
  if (!ok) {
    sup_buf_free(&b);
    return NULL;
  }
  return sup_buf_take(&b);
}
