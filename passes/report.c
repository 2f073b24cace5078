/* report.c: the accuracy report (--report). It measures the int8 module `q`,
 * as the pipeline left it, against the float module `ref` it came from, on
 * the calibration samples, layer by layer (the error propagated through the
 * int8 model and the error each layer adds in isolation) and output by
 * output, in memory that does not grow with the samples, and gives the
 * model's size before and after, as a table, JSON or an HTML page. How each
 * figure is measured is in docs/quantization.md, "How the accuracy report
 * measures". */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "passes.h"
#include "../ir/qgroup.h"

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
  /* qmatmul, qmatmul_dyn: the right operand is an activation, b [..., K, N]
   * (wn, wk are its N and K), with its float value and parameters. */
  bool act_b;
  RefValue b;
  IrDType b_in_dtype;  /* the op's operand 1 in q */
  bool has_bq;
  IrDType b_dtype;
  float b_scale;
  int32_t b_zp;
  bool quantized;      /* an int8 op; else a layer left in f32 */
  bool kept;           /* in f32 because --keep-float listed it */
  int64_t bytes;       /* the node's constants in q (weight, bias, scales) */
  Stats prop, iso;
} Layer;

/* A model output: the int8 model's against the float model's. */
typedef struct {
  const IrValue *v;    /* the output of q */
  Stats s;
  int64_t rows, agree; /* rows of the last axis, and those whose argmax agree */
} Output;

typedef struct {
  IrModule *ref, *q;
  IrArena *arena;  /* layers, taps, table cells; freed at the end */
  Layer *layers;
  int nlayers;
  Tap *taps;
  int ntaps;
  Output *outputs;
  int noutputs;
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
  return op == IR_OP_QGEMM || op == IR_OP_QLINEAR || op == IR_OP_QLINEAR_DYN ||
         op == IR_OP_QMATMUL || op == IR_OP_QMATMUL_DYN || op == IR_OP_QLINEAR_OUTL ||
         op == IR_OP_QLINEAR_GRP;
}

/* A layer q left in f32: a linear, or a matmul by a rank-2 constant (the
 * nodes select.c would quantize). */
static bool is_float_layer(const IrNode *n) {
  if (n->result->type.dtype != IR_F32 || n->nopnds < 2 || n->opnds[1]->type.rank != 2 ||
      n->opnds[0]->type.dtype != IR_F32)
    return false;
  return n->op == IR_OP_LINEAR || (n->op == IR_OP_MATMUL && n->opnds[1]->kind == IR_VAL_CONST);
}

static int64_t value_bytes(const IrValue *v) {
  int64_t n;
  return ir_type_numel(&v->type, 1, &n) ? n * (int64_t)ir_dtype_size(v->type.dtype) : 0;
}

/* The bytes of a node's constant operands. */
static int64_t node_const_bytes(const IrNode *n) {
  int64_t total = 0;
  for (int i = 0; i < n->nopnds; i++)
    if (n->opnds[i]->kind == IR_VAL_CONST)
      total += value_bytes(n->opnds[i]);
  return total;
}

/* The name of the float value that value `v` of q stands for. An f32 value
 * keeps its float value's name (a dequantize, an f32 qgemm or qlinear_dyn
 * result, a fused f32 input); an integer one is that name with ".q"
 * appended, or ".q.N" when ir_unique_name found ".q" taken. The suffix is
 * stripped only from integer values, so a user's own %h.q (an f32 linear,
 * say) is paired with itself, not with a %h that may not exist. */
static const char *float_name(IrArena *a, const IrValue *v) {
  const char *name = v->name;
  size_t n = strlen(name);
  if (v->type.dtype == IR_F32)
    return name;
  size_t e = n;
  while (e > 0 && name[e - 1] >= '0' && name[e - 1] <= '9')
    e--;
  if (e < n && e > 3 && name[e - 1] == '.' && strncmp(name + e - 3, ".q.", 3) == 0)
    n = e - 1; /* ".q.N" -> ".q" */
  if (n > 2 && strncmp(name + n - 2, ".q", 2) == 0)
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
  const char *name = float_name(r->arena, qv);
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

/* A qmatmul's right operand: an activation, [..., K, N], quantized with
 * the b_* parameters (qmatmul) or per matrix at run time (qmatmul_dyn). */
static bool setup_act_b(Report *r, const IrNode *n, Layer *l) {
  const IrType *t = &n->opnds[1]->type;
  if (n->nopnds != 2 || t->rank < 2)
    return internal_error(r->q, n->loc, "%%%s has no [..., K, N] right operand",
                          n->result->name);
  l->wk = t->dims[t->rank - 2];
  l->wn = t->dims[t->rank - 1];
  l->b_in_dtype = t->dtype;
  l->has_bq = n->op == IR_OP_QMATMUL;
  if (l->has_bq) {
    IrQParams b;
    if (!qparams(r, n, IR_QPARAMS_B, &b))
      return false;
    l->b_scale = b.scale;
    l->b_zp = b.zero_point;
    l->b_dtype = b.dtype;
  }
  return find_ref_value(r, n, n->opnds[1], &l->b);
}

/* Read what the report shows and needs of quantized op `n`. */
static bool setup_layer(Report *r, const IrNode *n, Layer *l) {
  *l = (Layer){.node = n, .quantized = true, .bytes = node_const_bytes(n)};
  l->act_b = n->op == IR_OP_QMATMUL || n->op == IR_OP_QMATMUL_DYN;
  if (l->act_b && !setup_act_b(r, n, l))
    return false;
  if (!l->act_b && (n->nopnds < 2 || n->opnds[1]->type.rank != 2))
    return internal_error(r->q, n->loc, "%%%s has no [N, K] weight", n->result->name);
  if (!l->act_b) {
    l->wn = n->opnds[1]->type.dims[0];
    l->wk = n->opnds[1]->type.dims[1];
    int64_t packed;
    pass_layer_bits_per_weight(n, &packed);
    if (packed >= 0) /* qlinear_grp: the compiled size, not the IR's i8 values */
      l->bytes = packed;
  }
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

/* A linear or matmul left in f32: the same name in both models. */
static bool setup_float_layer(Report *r, const IrNode *n, Layer *l) {
  const IrType *w = &n->opnds[1]->type;
  bool matmul = n->op == IR_OP_MATMUL;  /* B is [K, N] */
  *l = (Layer){.node = n, .in_dtype = IR_F32, .out_dtype = IR_F32,
               .wn = w->dims[matmul ? 1 : 0], .wk = w->dims[matmul ? 0 : 1],
               .kept = ir_attr_int(n, IR_ATTR_KEEP_FLOAT, 0) == 1,
               .bytes = node_const_bytes(n)};
  return find_ref_value(r, n, n->result, &l->f) && find_ref_value(r, n, n->opnds[0], &l->x);
}

static bool setup(Report *r) {
  IrModule *q = r->q;
  r->layers = ir_alloc(r->arena, (size_t)(q->nnodes + 1) * sizeof *r->layers);
  r->taps = ir_alloc(r->arena, (size_t)(3 * q->nnodes + 1) * sizeof *r->taps);
  r->nref_ids = ir_number_values(r->ref);
  r->nq_ids = ir_number_values(q);
  r->tap_of = ir_alloc(r->arena, (size_t)(r->nref_ids + 1) * sizeof *r->tap_of);
  r->layer_of = ir_alloc(r->arena, (size_t)(r->nq_ids + 1) * sizeof *r->layer_of);
  for (int i = 0; i < q->nnodes; i++) {
    const IrNode *n = q->nodes[i];
    bool ok = true;
    if (is_quantized_op(n->op) || is_float_layer(n))
      r->layer_of[n->result->id] = r->nlayers + 1;
    if (is_quantized_op(n->op))
      ok = setup_layer(r, n, &r->layers[r->nlayers++]);
    else if (is_float_layer(n))
      ok = setup_float_layer(r, n, &r->layers[r->nlayers++]);
    if (!ok)
      return false;
  }
  /* The pipeline keeps the outputs and their order. */
  if (q->noutputs != r->ref->noutputs)
    return internal_error(q, (IrLoc){0}, "the int8 model has %d outputs, the float model %d",
                          q->noutputs, r->ref->noutputs);
  r->noutputs = q->noutputs;
  r->outputs = ir_alloc(r->arena, (size_t)(q->noutputs + 1) * sizeof *r->outputs);
  for (int i = 0; i < q->noutputs; i++)
    r->outputs[i] = (Output){.v = q->outputs[i]};
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
    *data = ir_const_data(r->ref, rv->v);  /* a constant: no `?` */
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

/* A qmatmul's right operand for the isolated run: the float model's value,
 * quantized with the b_* parameters when the op takes it as integers
 * (into *owned, which the caller frees). */
static bool isolated_b(Report *r, Layer *l, int64_t batch, IrTensor *t, void **owned) {
  const IrNode *n = l->node;
  const float *b;
  int64_t nb, numel;
  *owned = NULL;
  if (!ref_tensor(r, l, &l->b, &b, &nb))
    return false;
  t->type = ir_type_bind(&n->opnds[1]->type, batch);
  if (!ir_type_numel(&t->type, batch, &numel) || numel != nb)
    return internal_error(r->q, n->loc, "operand %%%s has %lld elements but %%%s of the float "
                          "model %lld", n->opnds[1]->name, (long long)numel, l->b.v->name,
                          (long long)nb);
  if (l->b_in_dtype == IR_F32) {
    t->data = (void *)b;
    return true;
  }
  int32_t qmin, qmax;
  ir_qbounds(l->b_dtype, &qmin, &qmax);
  if (!(*owned = malloc(numel ? (size_t)numel : 1)))
    return ir_error(&r->q->diag, n->loc, "report: out of memory for %lld values",
                    (long long)numel);
  for (int64_t i = 0; i < numel; i++) {
    int32_t v = ir_quantize_value(b[i], l->b_scale, l->b_zp, qmin, qmax);
    if (l->b_in_dtype == IR_U8)
      ((uint8_t *)*owned)[i] = (uint8_t)v;
    else
      ((int8_t *)*owned)[i] = (int8_t)v;
  }
  t->data = *owned;
  return true;
}

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
  void *xq = NULL, *bq = NULL;
  if (l->act_b && !isolated_b(r, l, batch, &opnds[1], &bq))
    return false;
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
  free(bq);
  return ok;
}

/* The index of the largest of x[0..n), the first one on ties; a NaN, the
 * first one, wins (numpy's argmax). */
static int64_t argmax(const float *x, int64_t n) {
  int64_t best = 0;
  for (int64_t i = 0; i < n; i++) {
    if (isnan(x[i]))
      return i;
    if (x[i] > x[best])
      best = i;
  }
  return best;
}

/* Accumulate model output `x` of q against `f` of ref: the values, and
 * whether each row's argmax over the last axis agrees. */
static bool measure_output(Report *r, Output *out, const IrTensor *f, const IrTensor *x) {
  int64_t nf, nx;
  if (f->type.dtype != IR_F32 || x->type.dtype != IR_F32 || !ir_type_numel(&f->type, 1, &nf) ||
      !ir_type_numel(&x->type, 1, &nx) || nf != nx)
    return internal_error(r->q, out->v->loc, "output %%%s does not match the float model's",
                          out->v->name);
  const float *fd = f->data, *xd = x->data;
  for (int64_t i = 0; i < nf; i++)
    stats_add(&out->s, fd[i], xd[i]);
  int64_t last = f->type.rank ? f->type.dims[f->type.rank - 1] : 1;
  for (int64_t row = 0; last > 0 && row < nf / last; row++) {
    out->rows++;
    out->agree += argmax(fd + row * last, last) == argmax(xd + row * last, last);
  }
  return true;
}

/* Run both models over every sample, one batch at a time. */
static bool run_samples(Report *r, const PassOptions *o, int64_t *nsamples) {
  IrModule *ref = r->ref, *q = r->q;
  PassSamples *rs = pass_samples_open_for(ref, o);
  if (!rs)
    return ref_failed(r);
  PassSamples *qs = pass_samples_open_for(q, o);
  if (!qs) {
    pass_samples_close(rs);
    return false;
  }
  *nsamples = pass_samples_count(rs);
  int64_t done = 0;
  pass_progress(o, "report", 0, *nsamples);
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
    if (!ok) {
      for (int i = 0; i < ref->noutputs; i++)
        free(rout[i].data);
      ok = ref_failed(r);
      break;
    }
    ok = !r->failed && ir_interp_f32(q, batch, qin, qout, observe_q, r) && !r->failed;
    for (int i = 0; ok && i < r->noutputs; i++)
      ok = measure_output(r, &r->outputs[i], &rout[i], &qout[i]);
    for (int i = 0; i < ref->noutputs; i++) {
      free(rout[i].data);
      rout[i].data = NULL;
    }
    for (int i = 0; i < q->noutputs; i++) {
      free(qout[i].data);
      qout[i].data = NULL;
    }
    for (int i = 0; ok && i < r->nlayers; i++)
      ok = measure_isolated(r, &r->layers[i], batch);
    done += batch;
    if (ok)
      pass_progress(o, "report", done, *nsamples);
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
  /* A qlinear_grp holds its 4-bit weights one to a byte in the IR: its
   * operands count as compiled (pass_layer_bits_per_weight), once each. */
  for (int i = 0; i < m->nnodes; i++) {
    const IrNode *n = m->nodes[i];
    int64_t packed = -1;
    if (n->op != IR_OP_QLINEAR_GRP)
      continue;
    pass_layer_bits_per_weight(n, &packed);
    bool seen = false;
    for (int j = 0; j < i && !seen; j++)
      seen = m->nodes[j]->op == IR_OP_QLINEAR_GRP && m->nodes[j]->opnds[1] == n->opnds[1];
    if (seen || packed < 0)
      continue;
    total += packed - node_const_bytes(n);
  }
  return total;
}

/* What the quantized model's weights are, for its size line: the distinct
 * formats of its layers in graph order, joined by " + " ("int8", "nf4:64",
 * "s4-per-group:32 + int8"); "int8" when it has none. */
static const char *quantized_label(IrArena *a, const IrModule *m) {
  enum { MAXF = 8 };
  char names[MAXF][64];
  int nnames = 0;
  for (int i = 0; i < m->nnodes; i++) {
    const IrNode *n = m->nodes[i];
    char f[64];
    if (n->op == IR_OP_LINEAR_4BIT) {
      snprintf(f, sizeof f, "%s:%lld",
               ir_attr_name(n, IR_ATTR_CODE, IR_4BIT_NF4) == IR_4BIT_FP4 ? "fp4" : "nf4",
               (long long)ir_attr_int(n, IR_ATTR_BLOCK, 64));
    } else if (n->op == IR_OP_QLINEAR_GRP) {
      int64_t wbits = ir_attr_int(n, IR_ATTR_WBITS, 8);
      IrWSpec s = {.id = wbits == 8 ? IR_WF_S8_GROUP
                       : ir_qgrp_zero(n) ? IR_WF_U4_GROUP : IR_WF_S4_GROUP,
                   .group = (int)ir_attr_int(n, IR_ATTR_GROUP, 32),
                   .scale_bits = (int)ir_attr_int(n, IR_ATTR_SBITS, 16)};
      ir_wspec_str(&s, f, sizeof f);
    } else if (is_quantized_op(n->op)) {
      snprintf(f, sizeof f, "int8");
    } else {
      continue;
    }
    bool listed = false;
    for (int j = 0; j < nnames && !listed; j++)
      listed = strcmp(names[j], f) == 0;
    if (!listed && nnames < MAXF)
      memcpy(names[nnames++], f, sizeof f);
  }
  char out[MAXF * 67] = "int8";
  for (int j = 0, at = 0; j < nnames; j++)
    at += snprintf(out + at, sizeof out - (size_t)at, "%s%s", j ? " + " : "", names[j]);
  char *copy = ir_alloc(a, strlen(out) + 1);
  memcpy(copy, out, strlen(out) + 1);
  return copy;
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

/* A byte count in the unit that fits: "512 B", "1.5 KiB", "375.9 MiB",
 * "1.2 GiB" (binary units, one decimal; a value that would print as 1024.0
 * moves to the next unit). */
static void fmt_size(char *buf, size_t size, int64_t bytes) {
  static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  if (bytes > -1024 && bytes < 1024) {
    snprintf(buf, size, "%lld B", (long long)bytes);
    return;
  }
  double v = (double)bytes;
  for (int u = 1; u < 5; u++) {
    v /= 1024;
    snprintf(buf, size, "%.1f %s", v, units[u]);
    if (fabs(strtod(buf, NULL)) < 1024)
      return;
  }
}

static const char *size_cell(IrArena *a, int64_t bytes) {
  char b[64];
  fmt_size(b, sizeof b, bytes);
  return cellf(a, "%s", b);
}

enum { NCOLS = 13, NLEFT = 7 /* text columns; then the statistics */, STATS = NLEFT };

/* Columns aligned to the right: the size and every figure. */
static bool right_aligned(int c) { return c == 3 || c >= NLEFT; }

/* Why a layer is in f32. */
static const char *float_reason(const Layer *l) {
  return l->kept ? "kept in f32" : "not quantized";
}

static void row_cells(IrArena *a, const Layer *l, const char **c) {
  const IrNode *n = l->node;
  c[0] = l->f.v->name;
  c[1] = ir_op_info[n->op].name;
  if (l->act_b)
    c[2] = cellf(a, "activation %%%s", l->b.v->name);
  else
    c[2] = n->op == IR_OP_QLINEAR_GRP
               ? cellf(a, "[%lld, %lld] %.3g bits/w", (long long)l->wn, (long long)l->wk,
                       pass_layer_bits_per_weight(n, NULL))
               : cellf(a, "[%lld, %lld]", (long long)l->wn, (long long)l->wk);
  c[3] = size_cell(a, l->bytes);
  const char *from = l->in_dtype == IR_F32 ? "f32->" : "";
  if (l->has_xq)
    c[4] = cellf(a, "%s%s (%.4g, %d)", from, ir_dtype_name(l->x_dtype), l->x_scale,
                 (int)l->x_zp);
  else if (n->op == IR_OP_QLINEAR_DYN &&
           ir_attr_name(n, IR_ATTR_GRANULARITY, IR_DYN_ROW) == IR_DYN_TENSOR)
    c[4] = "f32->u8 (per tensor)"; /* ONNX's DynamicQuantizeLinear */
  else if (n->op == IR_OP_QLINEAR_DYN || n->op == IR_OP_QMATMUL_DYN ||
           n->op == IR_OP_QLINEAR_GRP)
    c[4] = "f32->u8 (per row)";
  else if (n->op == IR_OP_QLINEAR_OUTL)
    c[4] = "f32->u8 (per row) + f32 outliers";
  else
    c[4] = ir_dtype_name(l->in_dtype);
  if (!l->quantized)
    c[5] = cellf(a, "f32 (%s)", float_reason(l));
  else if (l->out_dtype == IR_F32)
    c[5] = "f32";
  else
    c[5] = cellf(a, "%s (%.4g, %d)", ir_dtype_name(l->out_dtype), l->out_scale, (int)l->out_zp);
  c[6] = l->relu ? "yes" : "no";
  stats_cells(a, &l->prop, c + STATS);
  stats_cells(a, &l->iso, c + STATS + 3);
}

static const char *const layer_header[NCOLS] = {
    "layer", "op", "weight", "size", "in (scale, zp)", "out (scale, zp)", "relu",
    "SQNR dB", "max|err|", "cosine", "SQNR dB", "max|err|", "cosine"};

/* Every layer's cells, row after row (arena memory). */
static const char **layer_cells(Report *r) {
  const char **cells = ir_alloc(r->arena, (size_t)(r->nlayers + 1) * NCOLS * sizeof *cells);
  for (int i = 0; i < r->nlayers; i++)
    row_cells(r->arena, &r->layers[i], cells + i * NCOLS);
  return cells;
}

/* Top-1 agreement as a fraction, NaN when there is no row. */
static double top1(const Output *out) {
  return out->rows ? (double)out->agree / (double)out->rows : NAN;
}

enum { NOUTCOLS = 5 };

static const char *const output_header[NOUTCOLS] = {"output", "SQNR dB", "max|err|", "cosine",
                                                    "top-1 agreement"};

static void output_cells(IrArena *a, const Output *out, const char **c) {
  c[0] = out->v->name;
  stats_cells(a, &out->s, c + 1);
  char pct[64];
  fmt_num(pct, sizeof pct, "%.2f%%", 100 * top1(out));
  c[4] = cellf(a, "%s (%lld/%lld rows)", pct, (long long)out->agree, (long long)out->rows);
}

/* "-- title -----" filling `width` columns. */
static void group_header(SupBuf *b, const char *title, int width) {
  int n = (int)strlen(title) + 4;
  sup_buf_printf(b, "-- %s ", title);
  for (; n < width; n++)
    sup_buf_printf(b, "-");
}

/* Column widths of a table of `nrows` rows under `header`. */
static void table_widths(const char *const *header, const char **cells, int nrows, int ncols,
                         int *width) {
  for (int c = 0; c < ncols; c++)
    width[c] = (int)strlen(header[c]);
  for (int i = 0; i < nrows * ncols; i++) {
    int w = (int)strlen(cells[i]);
    width[i % ncols] = w > width[i % ncols] ? w : width[i % ncols];
  }
}

/* The header and the rows; text left-aligned, figures right-aligned (the
 * first `nleft` columns are text, except those right_aligned says). */
static void table_rows(SupBuf *b, const char *const *header, const char **cells, int nrows,
                       int ncols, const int *width, bool layers) {
  for (int i = -1; i < nrows; i++) {
    const char *const *row = i < 0 ? header : cells + i * ncols;
    for (int c = 0; c < ncols; c++) {
      bool right = layers ? right_aligned(c) : c > 0;
      /* The last column left-aligned is not padded: no trailing blanks. */
      if (!right && c == ncols - 1)
        sup_buf_printf(b, "%s%s", c ? "  " : "", row[c]);
      else
        sup_buf_printf(b, "%s%*s", c ? "  " : "", right ? width[c] : -width[c], row[c]);
    }
    sup_buf_printf(b, "\n");
  }
}

/* The scheme, as the options that chose it. */
static const char *method_name(IrArena *a, const PassCalibConfig *c) {
  switch (c->method) {
  case PASS_CALIB_MA_MINMAX:
    return "ma-minmax";
  case PASS_CALIB_PERCENTILE:
    return cellf(a, "percentile:%g", c->percentile);
  case PASS_CALIB_ENTROPY:
    return "entropy";
  case PASS_CALIB_MSE:
    return "mse";
  case PASS_CALIB_AUTO:
    return "auto";
  default:
    return "minmax";
  }
}

static const char *weights_name(IrArena *a, const PassOptions *o) {
  if (o->weights_4bit) /* W4A32 (linear_4bit): the --weights value */
    return cellf(a, "%s:%lld%s", o->weights_4bit - 1 == IR_4BIT_FP4 ? "fp4" : "nf4",
                 (long long)o->weights_block, o->double_quant ? " (double quant)" : "");
  char buf[64];
  IrWSpec s = o->weights_spec;
  if (o->weights_per_tensor)
    s.id = IR_WF_S8_TENSOR;
  ir_wspec_str(&s, buf, sizeof buf);
  return cellf(a, "%s", buf);
}

static const char *activations_name(const PassOptions *o) {
  return o->activations == IR_I8 ? "s8-sym" : "u8-asym";
}

static void options_line(SupBuf *b, IrArena *a, const PassOptions *o) {
  sup_buf_printf(b, "q8c %s: weights %s%s, activations %s", Q8_VERSION, weights_name(a, o),
                 o->reduce_range ? " (7-bit: --reduce-range)" : "",
          o->dynamic ? "dynamic (per row)" : activations_name(o));
  if (!o->dynamic)
    sup_buf_printf(b, ", calibration %s, batch %lld", method_name(a, &o->calib),
            (long long)o->calib_batch);
  if (o->weights_for)
    sup_buf_printf(b, ", weights-for %s", o->weights_for);
  if (o->keep_float)
    sup_buf_printf(b, ", keep-float %s", o->keep_float);
  if (o->smooth)
    sup_buf_printf(b, ", smooth %g", o->smooth_alpha);
  if (o->has_target_sqnr)
    sup_buf_printf(b, ", target-sqnr %g", o->target_sqnr);
  if (o->has_max_top1_drop)
    sup_buf_printf(b, ", max-top1-drop %g", o->max_top1_drop);
  if (o->stop_after)
    sup_buf_printf(b, ", stop-after %s", o->stop_after);
  sup_buf_printf(b, "\n");
}

/* "model size: f32 S, LABEL S' (...)", LABEL naming the quantized model's
 * weight formats (quantized_label). */
static void size_line(SupBuf *b, const char *label, int64_t f32_bytes, int64_t int8_bytes) {
  char f[64], q[64], d[64];
  fmt_size(f, sizeof f, f32_bytes);
  fmt_size(q, sizeof q, int8_bytes);
  fmt_size(d, sizeof d, f32_bytes >= int8_bytes ? f32_bytes - int8_bytes : int8_bytes - f32_bytes);
  sup_buf_printf(b, "model size: f32 %s, %s %s", f, label, q);
  if (int8_bytes > 0 && f32_bytes >= int8_bytes)
    sup_buf_printf(b, " (%.2fx smaller, %s saved)", (double)f32_bytes / (double)int8_bytes, d);
  else if (int8_bytes > 0)
    sup_buf_printf(b, " (%.2fx larger, %s more)", (double)int8_bytes / (double)f32_bytes, d);
  sup_buf_printf(b, "\n");
}

static void write_text(SupBuf *b, Report *r, const PassOptions *o, int64_t nsamples) {
  sup_buf_printf(b, "q8c report: %lld sample%s from %s\n", (long long)nsamples,
          nsamples == 1 ? "" : "s", o->calib_path);
  options_line(b, r->arena, o);
  if (r->nlayers == 0) {
    sup_buf_printf(b, "no layers (linear, matmul by a constant, or their int8 forms) to measure\n");
  } else {
    const char **cells = layer_cells(r);
    int width[NCOLS];
    table_widths(layer_header, cells, r->nlayers, NCOLS, width);
    /* The two groups of statistics, over their three columns each. */
    int indent = 0;
    for (int c = 0; c < NLEFT; c++)
      indent += width[c] + 2;
    sup_buf_printf(b, "%*s", indent, "");
    group_header(b, "propagated", width[STATS] + width[STATS + 1] + width[STATS + 2] + 4);
    sup_buf_printf(b, "  ");
    group_header(b, "isolated", width[STATS + 3] + width[STATS + 4] + width[STATS + 5] + 4);
    sup_buf_printf(b, "\n");
    table_rows(b, layer_header, cells, r->nlayers, NCOLS, width, true);
  }
  if (r->noutputs) {
    const char **cells = ir_alloc(r->arena, (size_t)r->noutputs * NOUTCOLS * sizeof *cells);
    for (int i = 0; i < r->noutputs; i++)
      output_cells(r->arena, &r->outputs[i], cells + i * NOUTCOLS);
    int width[NOUTCOLS];
    table_widths(output_header, cells, r->noutputs, NOUTCOLS, width);
    sup_buf_printf(b, "\nmodel outputs against the float model:\n");
    table_rows(b, output_header, cells, r->noutputs, NOUTCOLS, width, false);
  }
  size_line(b, quantized_label(r->arena, r->q), const_bytes(r->ref), const_bytes(r->q));
  if (o->decisions && o->decisions->len)
    sup_buf_printf(b, "\ndecisions:\n%s", o->decisions->p);
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

/* A JSON string, or null for NULL. */
static void json_str_or_null(SupBuf *b, const char *s) {
  if (s)
    json_str(b, s);
  else
    sup_buf_printf(b, "null");
}

/* A comma-separated list as a JSON array of strings (null for NULL). */
static void json_list(SupBuf *b, IrArena *a, const char *list) {
  if (!list) {
    sup_buf_printf(b, "null");
    return;
  }
  sup_buf_printf(b, "[");
  const char *p;
  size_t len;
  for (const char *rest = list; sup_list_next(&rest, &p, &len);) {
    sup_buf_printf(b, "%s", p == list ? "" : ", ");
    json_str(b, ir_strndup(a, p, len));
  }
  sup_buf_printf(b, "]");
}

/* What chose the scheme: enough to run the same compilation again. */
static void json_options(SupBuf *b, IrArena *a, const PassOptions *o) {
  const PassCalibConfig *c = &o->calib;
  sup_buf_printf(b, "{\"weights\": \"%s\", \"reduce_range\": %s, \"activations\": \"%s\", "
             "\"dynamic\": %s,\n"
             "              \"calib_method\": \"%s\", \"calib_batch\": %lld, "
             "\"calib_momentum\": ",
          weights_name(a, o), o->reduce_range ? "true" : "false", activations_name(o),
          o->dynamic ? "true" : "false",
          method_name(a, c), (long long)o->calib_batch);
  json_num(b, c->method == PASS_CALIB_MA_MINMAX ? c->momentum : NAN);
  sup_buf_printf(b, ", \"calib_percentile\": ");
  json_num(b, c->method == PASS_CALIB_PERCENTILE ? c->percentile : NAN);
  sup_buf_printf(b, ", \"calib_bins\": ");
  bool histogram = c->method == PASS_CALIB_PERCENTILE || c->method == PASS_CALIB_ENTROPY ||
                   c->method == PASS_CALIB_MSE;
  json_num(b, histogram ? c->bins : NAN);
  sup_buf_printf(b, ",\n              \"keep_float\": ");
  json_list(b, a, o->keep_float);
  sup_buf_printf(b, ", \"stop_after\": ");
  json_str_or_null(b, o->stop_after);
  sup_buf_printf(b, "}");
}

static void write_json(SupBuf *b, Report *r, const PassOptions *o, int64_t nsamples) {
  sup_buf_printf(b, "{\n  \"q8c_version\": \"%s\",\n  \"samples\": %lld,\n  \"calib\": ", Q8_VERSION,
          (long long)nsamples);
  json_str(b, o->calib_path);
  sup_buf_printf(b, ",\n  \"options\": ");
  json_options(b, r->arena, o);
  sup_buf_printf(b, ",\n  \"layers\": [");
  for (int i = 0; i < r->nlayers; i++) {
    const Layer *l = &r->layers[i];
    sup_buf_printf(b, "%s\n    {\"name\": ", i ? "," : "");
    json_str(b, l->f.v->name);
    sup_buf_printf(b, ", \"op\": \"%s\", \"quantized\": %s, \"kept_float\": %s, "
               "\"weight_shape\": [%lld, %lld], \"bytes\": %lld, ",
            ir_op_info[l->node->op].name, l->quantized ? "true" : "false",
            l->kept ? "true" : "false", (long long)l->wn, (long long)l->wk, (long long)l->bytes);
    /* qlinear_dyn quantizes each row to u8 with its own scale and zero
     * point: an integer dtype with null parameters. */
    if (!l->act_b && l->quantized)
      sup_buf_printf(b, "\"bits_per_weight\": %.6g, ",
                     pass_layer_bits_per_weight(l->node, NULL));
    sup_buf_printf(b, "\"input\": ");
    if ((l->node->op == IR_OP_QLINEAR_DYN || l->node->op == IR_OP_QMATMUL_DYN ||
         l->node->op == IR_OP_QLINEAR_GRP || l->node->op == IR_OP_QLINEAR_OUTL) && !l->has_xq)
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
  sup_buf_printf(b, "%s],\n  \"outputs\": [", r->nlayers ? "\n  " : "");
  for (int i = 0; i < r->noutputs; i++) {
    const Output *out = &r->outputs[i];
    sup_buf_printf(b, "%s\n    {\"name\": ", i ? "," : "");
    json_str(b, out->v->name);
    sup_buf_printf(b, ", \"sqnr_db\": ");
    json_num(b, stats_sqnr(&out->s));
    sup_buf_printf(b, ", \"max_abs_error\": ");
    json_num(b, out->s.max_err);
    sup_buf_printf(b, ", \"cosine\": ");
    json_num(b, stats_cosine(&out->s));
    sup_buf_printf(b, ", \"top1_agreement\": ");
    json_num(b, top1(out));
    sup_buf_printf(b, ", \"top1_rows\": %lld, \"top1_agree\": %lld}", (long long)out->rows,
            (long long)out->agree);
  }
  int64_t f32_bytes = const_bytes(r->ref), int8_bytes = const_bytes(r->q);
  sup_buf_printf(b, "%s],\n  \"size\": {\"f32_bytes\": %lld, \"int8_bytes\": %lld, \"ratio\": ",
          r->noutputs ? "\n  " : "", (long long)f32_bytes, (long long)int8_bytes);
  json_num(b, int8_bytes > 0 ? (double)f32_bytes / (double)int8_bytes : NAN);
  sup_buf_printf(b, ", \"saved_bytes\": %lld}", (long long)(f32_bytes - int8_bytes));
  /* What smoothing, auto calibration and the autopilot decided, one string
   * per line of o->decisions; the key is there only when they decided. */
  const char *d = o->decisions && o->decisions->len ? o->decisions->p : "";
  if (*d)
    sup_buf_printf(b, ",\n  \"decisions\": [");
  for (int i = 0; *d; i++) {
    size_t n = strcspn(d, "\n");
    sup_buf_printf(b, "%s\n    ", i ? "," : "");
    json_str(b, ir_strndup(r->arena, d, n));
    d += n + (d[n] == '\n');
  }
  sup_buf_printf(b, "%s\n}\n", o->decisions && o->decisions->len ? "\n  ]" : "");
}

/* ---- HTML ---- */

/* Text for HTML: markup characters as entities; control characters and bytes
 * that are not UTF-8 as U+FFFD. */
static void html_str(SupBuf *b, const char *s) {
  const unsigned char *p = (const unsigned char *)s;
  while (*p) {
    int n;
    if (*p == '&')
      sup_buf_printf(b, "&amp;"), p++;
    else if (*p == '<')
      sup_buf_printf(b, "&lt;"), p++;
    else if (*p == '>')
      sup_buf_printf(b, "&gt;"), p++;
    else if (*p == '"')
      sup_buf_printf(b, "&quot;"), p++;
    else if (*p == '\'')
      sup_buf_printf(b, "&#39;"), p++;
    else if (*p < 0x20 && *p != '\n' && *p != '\t')
      sup_buf_printf(b, "&#xfffd;"), p++;
    else if (*p < 0x80)
      sup_buf_printf(b, "%c", *p++);
    else if ((n = utf8_len(p)) > 0)
      sup_buf_printf(b, "%.*s", n, (const char *)p), p += n;
    else
      sup_buf_printf(b, "&#xfffd;"), p++;
  }
}

/* The chart's frame in SVG user units: the plot area is the rectangle inside
 * the margins; layer names go below it, the legend above. */
enum { CHART_W = 560, CHART_H = 360, CHART_L = 56, CHART_R = 16, CHART_T = 44, CHART_B = 104 };

typedef struct {
  double lo, hi;    /* dB at the bottom and top of the plot area */
  double inf_at;    /* where inf is drawn: a row above the finite values */
  double step;      /* between grid lines */
  bool any_inf;
} ChartScale;

/* A scale holding every finite SQNR of both series, in steps of 10 dB or a
 * multiple of it, with 0 dB in view. */
static ChartScale chart_scale(const Report *r) {
  double lo = 0, hi = 10;
  bool any_inf = false;
  for (int i = 0; i < r->nlayers; i++)
    for (int s = 0; s < 2; s++) {
      double v = stats_sqnr(s ? &r->layers[i].iso : &r->layers[i].prop);
      if (isinf(v) && v > 0)
        any_inf = true;
      else if (isfinite(v)) {
        lo = v < lo ? v : lo;
        hi = v > hi ? v : hi;
      }
    }
  double step = 10;
  while ((hi - lo) / step > 8)
    step *= 2;
  ChartScale sc = {floor(lo / step) * step, ceil(hi / step) * step, 0, step, any_inf};
  sc.inf_at = sc.hi + step;
  if (any_inf)
    sc.hi = sc.inf_at;
  return sc;
}

static double chart_x(int i, int n) {
  return CHART_L + (i + 0.5) * (double)(CHART_W - CHART_L - CHART_R) / n;
}

static double chart_y(const ChartScale *sc, double v) {
  return CHART_T + (sc->hi - v) / (sc->hi - sc->lo) * (CHART_H - CHART_T - CHART_B);
}

/* One series: a line through the layers in depth order and a point per layer
 * (class "point SERIES", with the layer's name and its SQNR in a tooltip).
 * inf is drawn on the "inf" row; NaN (nothing to measure) hollow at the
 * bottom. */
static void chart_series(SupBuf *b, const Report *r, const ChartScale *sc, bool isolated) {
  const char *cls = isolated ? "isolated" : "propagated";
  double *y = ir_alloc(r->arena, (size_t)(r->nlayers + 1) * sizeof *y);
  for (int i = 0; i < r->nlayers; i++) {
    double v = stats_sqnr(isolated ? &r->layers[i].iso : &r->layers[i].prop);
    y[i] = chart_y(sc, isnan(v) ? sc->lo : isinf(v) ? (v > 0 ? sc->inf_at : sc->lo) : v);
  }
  sup_buf_printf(b, "<g class=\"series %s\">\n<polyline class=\"line %s\" points=\"", cls, cls);
  for (int i = 0; i < r->nlayers; i++)
    sup_buf_printf(b, "%s%.1f,%.1f", i ? " " : "", chart_x(i, r->nlayers), y[i]);
  sup_buf_printf(b, "\"/>\n");
  for (int i = 0; i < r->nlayers; i++) {
    const Layer *l = &r->layers[i];
    double v = stats_sqnr(isolated ? &l->iso : &l->prop);
    char num[64];
    fmt_num(num, sizeof num, "%.2f", v);
    sup_buf_printf(b, "<circle class=\"point %s%s\" data-layer=\"", cls,
            isnan(v) ? " nan" : isinf(v) ? " inf" : "");
    html_str(b, l->f.v->name);
    /* The propagated point is drawn larger: where both agree (the first
     * layer), it shows around the isolated one. */
    sup_buf_printf(b, "\" data-sqnr=\"%s\" cx=\"%.1f\" cy=\"%.1f\" r=\"%s\"><title>", num,
            chart_x(i, r->nlayers), y[i], isolated ? "3.5" : "5.5");
    html_str(b, l->f.v->name);
    sup_buf_printf(b, " (%s): %s dB</title></circle>\n", cls, num);
  }
  sup_buf_printf(b, "</g>\n");
}

static void write_chart(SupBuf *b, const Report *r) {
  ChartScale sc = chart_scale(r);
  int n = r->nlayers;
  double x0 = CHART_L, x1 = CHART_W - CHART_R, y1 = CHART_H - CHART_B;
  sup_buf_printf(b, "<svg class=\"chart\" width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\" role=\"img\" "
             "aria-label=\"SQNR by layer\">\n",
          CHART_W, CHART_H, CHART_W, CHART_H);
  /* Grid and y axis: a line every step dB, and the inf row. */
  sup_buf_printf(b, "<g class=\"y-axis\">\n");
  for (double v = sc.lo; v <= sc.hi + 1e-9; v += sc.step) {
    bool inf_row = sc.any_inf && v > sc.inf_at - sc.step / 2;
    sup_buf_printf(b, "<line class=\"grid\" x1=\"%.1f\" x2=\"%.1f\" y1=\"%.1f\" y2=\"%.1f\"/>"
               "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\">",
            x0, x1, chart_y(&sc, v), chart_y(&sc, v), x0 - 6, chart_y(&sc, v) + 4);
    if (inf_row)
      sup_buf_printf(b, "inf</text>\n");
    else
      sup_buf_printf(b, "%g</text>\n", v);
  }
  sup_buf_printf(b, "<text transform=\"translate(14 %.1f) rotate(-90)\" text-anchor=\"middle\">"
             "SQNR (dB)</text>\n</g>\n",
          (CHART_T + y1) / 2);
  sup_buf_printf(b, "<line class=\"axis\" x1=\"%.1f\" x2=\"%.1f\" y1=\"%.1f\" y2=\"%.1f\"/>\n", x0, x1,
          y1, y1);
  /* Layer names under the axis, slanted; at most about 40 of them. */
  int every = n > 40 ? (n + 39) / 40 : 1;
  sup_buf_printf(b, "<g class=\"x-axis\">\n");
  for (int i = 0; i < n; i += every) {
    double x = chart_x(i, n);
    sup_buf_printf(b, "<text class=\"layer-name\" transform=\"translate(%.1f %.1f) rotate(-45)\" "
               "text-anchor=\"end\">",
            x + 3, y1 + 12);
    html_str(b, r->layers[i].f.v->name);
    sup_buf_printf(b, "</text>\n");
  }
  sup_buf_printf(b, "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">layer (by depth)</text>\n</g>\n",
          (x0 + x1) / 2, CHART_H - 6);
  chart_series(b, r, &sc, false);
  chart_series(b, r, &sc, true);
  /* The legend, above the plot. */
  static const char *const series[2][2] = {{"propagated", "propagated (int8 model end to end)"},
                                           {"isolated", "isolated (the layer alone)"}};
  sup_buf_printf(b, "<g class=\"legend\">\n");
  for (int s = 0; s < 2; s++) {
    double x = x0 + s * 260;
    sup_buf_printf(b, "<g class=\"legend-item %s\"><line class=\"line %s\" x1=\"%.1f\" x2=\"%.1f\" "
               "y1=\"18\" y2=\"18\"/><circle class=\"point %s\" cx=\"%.1f\" cy=\"18\" r=\"4\"/>"
               "<text x=\"%.1f\" y=\"22\">%s</text></g>\n",
            series[s][0], series[s][0], x, x + 24, series[s][0], x + 12, x + 30, series[s][1]);
  }
  sup_buf_printf(b, "</g>\n</svg>\n");
}

static const char html_style[] =
    "body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#222;background:#fff}\n"
    "h1{font-size:20px;margin:0 0 4px}h2{font-size:16px;margin:24px 0 8px}\n"
    ".meta{color:#555;margin:0 0 16px}\n"
    ".main{display:flex;gap:24px;align-items:flex-start}\n"
    "figure{margin:0}figcaption{color:#555;font-size:12px;max-width:560px}\n"
    "table{border-collapse:collapse;font-variant-numeric:tabular-nums}\n"
    "th,td{padding:3px 6px;border-bottom:1px solid #ddd;text-align:left;white-space:nowrap}\n"
    "td.num{text-align:right}th.group{text-align:center;border-bottom:2px solid #999}\n"
    "tr.float td{color:#666;font-style:italic;background:#f7f7f7}\n"
    "svg text{font:11px system-ui,sans-serif;fill:#333}\n"
    ".grid{stroke:#e6e6e6}.axis{stroke:#888}\n"
    ".line{fill:none;stroke-width:1.5}\n"
    ".line.propagated{stroke:#c0392b}.line.isolated{stroke:#2471a3}\n"
    ".point.propagated{fill:#c0392b}.point.isolated{fill:#2471a3}\n"
    ".point.inf,.point.nan{fill:#fff;stroke-width:2}\n"
    ".point.inf.propagated,.point.nan.propagated{stroke:#c0392b}\n"
    ".point.inf.isolated,.point.nan.isolated{stroke:#2471a3}\n";

/* Text written by a SupBuf writer, escaped into `b`. */
static void html_escaped_line(SupBuf *b, SupBuf *tmp) {
  if (tmp->oom)
    b->oom = true;
  else if (tmp->p) {
    while (tmp->len && tmp->p[tmp->len - 1] == '\n')
      tmp->p[--tmp->len] = '\0';
    html_str(b, tmp->p);
  }
  free(tmp->p);
  *tmp = (SupBuf){0};
}

static void html_row(SupBuf *b, const char *cls, const char *name, const char **cells, int ncols,
                     bool layers) {
  sup_buf_printf(b, "<tr class=\"%s\" data-name=\"", cls);
  html_str(b, name);
  sup_buf_printf(b, "\">");
  for (int c = 0; c < ncols; c++) {
    bool num = layers ? right_aligned(c) : c > 0;
    sup_buf_printf(b, "<td%s>", num ? " class=\"num\"" : "");
    html_str(b, cells[c]);
    sup_buf_printf(b, "</td>");
  }
  sup_buf_printf(b, "</tr>\n");
}

static void write_html(SupBuf *b, Report *r, const PassOptions *o, int64_t nsamples) {
  SupBuf tmp = {0};
  sup_buf_printf(b, "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
             "<title>q8c report: ");
  html_str(b, o->calib_path);
  sup_buf_printf(b, "</title>\n<style>\n%s</style>\n</head>\n<body>\n<h1>q8c accuracy report</h1>\n"
             "<p class=\"meta\" id=\"samples\">%lld sample%s from ",
          html_style, (long long)nsamples, nsamples == 1 ? "" : "s");
  html_str(b, o->calib_path);
  sup_buf_printf(b, "</p>\n<p class=\"meta\" id=\"options\">");
  options_line(&tmp, r->arena, o);
  html_escaped_line(b, &tmp);
  sup_buf_printf(b, "</p>\n<div class=\"main\">\n");
  if (r->nlayers) {
    sup_buf_printf(b, "<figure id=\"chart\">\n");
    write_chart(b, r);
    sup_buf_printf(b, "<figcaption>SQNR of each layer's output against the float model, by depth "
               "(higher is better): propagated through the int8 model, and isolated, the layer "
               "alone on the float model's input.</figcaption>\n</figure>\n");
  }
  const char **cells = layer_cells(r);
  sup_buf_printf(b, "<table id=\"layers\">\n<thead><tr><th colspan=\"%d\"></th>"
             "<th colspan=\"3\" class=\"group\">propagated</th>"
             "<th colspan=\"3\" class=\"group\">isolated</th></tr>\n<tr>",
          NLEFT);
  for (int c = 0; c < NCOLS; c++) {
    sup_buf_printf(b, "<th>");
    html_str(b, layer_header[c]);
    sup_buf_printf(b, "</th>");
  }
  sup_buf_printf(b, "</tr></thead>\n<tbody>\n");
  for (int i = 0; i < r->nlayers; i++)
    html_row(b, r->layers[i].quantized ? "layer" : "layer float", r->layers[i].f.v->name,
             cells + i * NCOLS, NCOLS, true);
  sup_buf_printf(b, "</tbody>\n</table>\n</div>\n");
  if (r->noutputs) {
    sup_buf_printf(b, "<h2>Model outputs against the float model</h2>\n<table id=\"outputs\">\n"
               "<thead><tr>");
    for (int c = 0; c < NOUTCOLS; c++) {
      sup_buf_printf(b, "<th>");
      html_str(b, output_header[c]);
      sup_buf_printf(b, "</th>");
    }
    sup_buf_printf(b, "</tr></thead>\n<tbody>\n");
    const char **oc = ir_alloc(r->arena, (size_t)r->noutputs * NOUTCOLS * sizeof *oc);
    for (int i = 0; i < r->noutputs; i++) {
      output_cells(r->arena, &r->outputs[i], oc + i * NOUTCOLS);
      html_row(b, "output", r->outputs[i].v->name, oc + i * NOUTCOLS, NOUTCOLS, false);
    }
    sup_buf_printf(b, "</tbody>\n</table>\n");
  }
  sup_buf_printf(b, "<p id=\"size\">");
  size_line(&tmp, quantized_label(r->arena, r->q), const_bytes(r->ref), const_bytes(r->q));
  html_escaped_line(b, &tmp);
  sup_buf_printf(b, "</p>\n");
  if (o->decisions && o->decisions->len) {
    sup_buf_printf(b, "<h2>Decisions</h2>\n<pre id=\"decisions\">");
    html_str(b, o->decisions->p);
    sup_buf_printf(b, "</pre>\n");
  }
  sup_buf_printf(b, "</body>\n</html>\n");
}

bool pass_measure(IrModule *ref, IrModule *q, const PassOptions *o, PassMeasure *pm) {
  memset(pm, 0, sizeof *pm);
  Report r = {.ref = ref, .q = q, .arena = ir_arena_new()};
  bool ok = setup(&r) && run_samples(&r, o, &pm->samples);
  if (ok) {
    pm->layers = calloc((size_t)r.nlayers + 1, sizeof *pm->layers);
    pm->outputs = calloc((size_t)r.noutputs + 1, sizeof *pm->outputs);
    ok = pm->layers && pm->outputs;
    if (!ok)
      ir_error(&q->diag, (IrLoc){0}, "out of memory");
  }
  for (int i = 0; ok && i < r.nlayers; i++) {
    const Layer *l = &r.layers[i];
    pm->layers[i] = (PassLayerMeasure){l->f.v->name, l->quantized, l->bytes,
                                       stats_sqnr(&l->iso), stats_sqnr(&l->prop)};
    /* The float value's name (in ref): what --keep-float names. */
  }
  for (int i = 0; ok && i < r.noutputs; i++)
    pm->outputs[i] = (PassOutputMeasure){stats_sqnr(&r.outputs[i].s), top1(&r.outputs[i])};
  if (ok) {
    pm->nlayers = r.nlayers;
    pm->noutputs = r.noutputs;
    pm->f32_bytes = const_bytes(ref);
    pm->bytes = const_bytes(q);
  }
  for (int i = 0; i < r.ntaps; i++)
    free(r.taps[i].data);
  ir_arena_free(r.arena);
  if (!ok)
    pass_measure_free(pm);
  return ok;
}

void pass_measure_free(PassMeasure *pm) {
  free(pm->layers);
  free(pm->outputs);
  memset(pm, 0, sizeof *pm);
}

char *pass_report(IrModule *ref, IrModule *q, const PassOptions *o, PassReportFormat format) {
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
    if (format == PASS_REPORT_JSON)
      write_json(&b, &r, o, nsamples);
    else if (format == PASS_REPORT_HTML)
      write_html(&b, &r, o, nsamples);
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
