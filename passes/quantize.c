/* quantize.c: the quantize pass. Each quantizable node (select.c) becomes
 *
 *   %x.q = quantize %x {scale, zero_point, dtype}          ; once per input
 *   %y.q = qlinear %x.q, @W.q, @W.scale[, @b] {x_..., scale, zero_point, dtype}
 *   %y   = dequantize %y.q {scale, zero_point}
 *
 * so the graph around it is unchanged (it still sees f32 %y), and every
 * later pass works on explicit, printable quantization parameters. With
 * --dynamic it becomes `%y = qlinear_dyn %x, @W.q, @W.scale[, @b]` instead.
 *
 * Weights are int8 symmetric in [-127, 127], per output channel by default
 * (ir_quantize_weights); activation parameters come from the calibrated
 * ranges (ir_qparams_from_range). A matmul by a constant B[K, N] is a linear
 * with W = B^T, stored transposed as `@B.T.q`. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "passes.h"

/* A quantize node already made for a value, to share between its users. */
typedef struct {
  IrValue *x;
  IrNode *node;
} MadeQuantize;

static void set_attr(IrModule *m, IrNode *n, IrAttrKey key, double v) {
  ir_node_set_attr(m, n, key, &v, 1, n->loc);
}

static bool act_params(IrModule *m, const PassOptions *o, IrValue *v, IrQParams *p) {
  double lo, hi;
  if (!ir_value_range(v, &lo, &hi))
    return ir_error(&m->diag, v->loc, "quantize: %%%s has no range (run calibrate first)",
                    v->name);
  if (!ir_qparams_from_range(lo, hi, o->activations, p))
    pass_note(o, "quantize: %%%s has a degenerate range [%g, %g]; using scale 1", v->name, lo,
              hi);
  return true;
}

/* `@W.q` and `@W.scale` for the node's weight, made once per weight. */
static bool weight_consts(IrModule *m, const PassOptions *o, IrNode *n, IrValue **wq_out,
                          IrValue **ws_out) {
  const IrValue *w = n->opnds[1];
  char base[512];
  snprintf(base, sizeof base, "%s%s", w->name, n->op == IR_OP_MATMUL ? ".T" : "");
  char qname[600], sname[600];
  snprintf(qname, sizeof qname, "%s.q", base);
  snprintf(sname, sizeof sname, "%s.scale", base);
  IrValue *wq = ir_find_const(m, qname), *ws = ir_find_const(m, sname);
  if (wq && ws && wq->type.dtype == IR_I8 && ws->type.dtype == IR_F32) {
    *wq_out = wq;
    *ws_out = ws;
    return true;
  }
  int64_t nn, k;
  const float *wf = pass_weight_nk(m, n, &nn, &k);
  for (int64_t i = 0; i < nn * k; i++)
    if (!isfinite(wf[i]))
      return ir_error(&m->diag, n->opnds[1]->loc, "quantize: weight @%s holds %s values", w->name,
                      isnan(wf[i]) ? "NaN" : "infinite");
  int64_t nscales = o->weights_per_tensor ? 1 : nn;
  int8_t *q = ir_alloc_data(m->arena, (size_t)(nn * k));
  float *s = ir_alloc_data(m->arena, (size_t)nscales * sizeof *s);
  if (!q || !s)
    return ir_error(&m->diag, n->loc, "out of memory quantizing @%s", w->name);
  int64_t zero = ir_quantize_weights(wf, nn, k, !o->weights_per_tensor, q, s);
  if (zero)
    pass_note(o, "quantize: @%s has %lld all-zero output channel%s (scale 1)", w->name,
              (long long)zero, zero == 1 ? "" : "s");
  IrType qt = {IR_I8, 2, {nn, k}}, st = {IR_F32, 1, {nscales}};
  *wq_out = ir_add_const(m, ir_unique_const_name(m, qname), qt, q, w->loc);
  *ws_out = ir_add_const(m, ir_unique_const_name(m, sname), st, s, w->loc);
  return true;
}

/* The value names in use: the module's, and those of the nodes this pass
 * made so far, which join the module's list only at the end of the pass
 * (ir_unique_name sees only that list: two quantized layers in a row would
 * both name a value %h.q). A hash set, so that naming stays linear in the
 * number of nodes. */
typedef struct {
  const char **slots;
  size_t cap, count; /* cap: a power of two */
} NameSet;

static size_t hash_name(const char *s) {
  size_t h = 14695981039346656037u;
  for (; *s; s++)
    h = (h ^ (unsigned char)*s) * 1099511628211u;
  return h;
}

static bool name_taken(const NameSet *t, const char *name) {
  for (size_t i = hash_name(name) & (t->cap - 1); t->slots[i]; i = (i + 1) & (t->cap - 1))
    if (strcmp(t->slots[i], name) == 0)
      return true;
  return false;
}

static void name_put(const char **slots, size_t cap, const char *name) {
  size_t i = hash_name(name) & (cap - 1);
  while (slots[i])
    i = (i + 1) & (cap - 1);
  slots[i] = name;
}

static void take_name(IrArena *a, NameSet *t, const char *name) {
  if (2 * (t->count + 1) > t->cap) {
    size_t cap = t->cap ? 2 * t->cap : 64;
    const char **slots = ir_alloc(a, cap * sizeof *slots);
    for (size_t i = 0; i < t->cap; i++)
      if (t->slots[i])
        name_put(slots, cap, t->slots[i]);
    t->slots = slots;
    t->cap = cap;
  }
  name_put(t->slots, t->cap, name);
  t->count++;
}

/* `base`, or `base.1`, `base.2`, ...: the first name not taken; takes it. */
static const char *fresh_name(IrModule *m, NameSet *names, const char *base) {
  char name[600];
  for (int i = 0;; i++) {
    if (i == 0)
      snprintf(name, sizeof name, "%s", base);
    else
      snprintf(name, sizeof name, "%s.%d", base, i);
    if (!name_taken(names, name)) {
      const char *s = ir_strdup(m->arena, name);
      take_name(m->arena, names, s);
      return s;
    }
  }
}

static IrNode *input_quantize(IrModule *m, MadeQuantize *made, int *nmade, IrValue *x,
                              const IrQParams *p, NameSet *names, bool *is_new) {
  for (int i = 0; i < *nmade; i++)
    if (made[i].x == x) {
      *is_new = false;
      return made[i].node;
    }
  char name[512];
  snprintf(name, sizeof name, "%s.q", x->name);
  IrNode *q =
      ir_new_node(m, IR_OP_QUANTIZE, NULL, fresh_name(m, names, name), &x, 1, x->loc);
  set_attr(m, q, IR_ATTR_SCALE, p->scale);
  set_attr(m, q, IR_ATTR_ZERO_POINT, p->zero_point);
  set_attr(m, q, IR_ATTR_DTYPE, p->dtype);
  made[(*nmade)++] = (MadeQuantize){x, q};
  *is_new = true;
  return q;
}

/* Append the nodes that replace quantizable node `n` to out[]. */
static bool rewrite(IrModule *m, const PassOptions *o, IrNode *n, IrNode **out, int *nout,
                    MadeQuantize *made, int *nmade, NameSet *names) {
  IrValue *wq = NULL, *ws = NULL;
  if (!weight_consts(m, o, n, &wq, &ws))
    return false;
  IrValue *x = n->opnds[0], *y = n->result;
  IrValue *bias = n->op == IR_OP_LINEAR && n->nopnds == 3 ? n->opnds[2] : NULL;
  const IrAttr *range = ir_node_attr(n, IR_ATTR_RANGE);
  if (o->dynamic) {
    IrValue *ops[4] = {x, wq, ws, bias};
    IrNode *d = ir_new_node(m, IR_OP_QLINEAR_DYN, y, NULL, ops, bias ? 4 : 3, n->loc);
    if (range)
      ir_node_set_attr(m, d, IR_ATTR_RANGE, range->vals, 2, range->loc);
    out[(*nout)++] = d;
    return true;
  }
  IrQParams px, py;
  if (!act_params(m, o, x, &px) || !act_params(m, o, y, &py))
    return false;
  bool is_new;
  IrNode *xq = input_quantize(m, made, nmade, x, &px, names, &is_new);
  if (is_new)
    out[(*nout)++] = xq;

  char name[512];
  snprintf(name, sizeof name, "%s.q", y->name);
  IrValue *ops[4] = {xq->result, wq, ws, bias};
  IrNode *q = ir_new_node(m, IR_OP_QLINEAR, NULL, fresh_name(m, names, name), ops,
                          bias ? 4 : 3, n->loc);
  set_attr(m, q, IR_ATTR_X_SCALE, px.scale);
  set_attr(m, q, IR_ATTR_X_ZERO_POINT, px.zero_point);
  set_attr(m, q, IR_ATTR_X_DTYPE, px.dtype);
  set_attr(m, q, IR_ATTR_SCALE, py.scale);
  set_attr(m, q, IR_ATTR_ZERO_POINT, py.zero_point);
  set_attr(m, q, IR_ATTR_DTYPE, py.dtype);
  out[(*nout)++] = q;

  IrNode *d = ir_new_node(m, IR_OP_DEQUANTIZE, y, NULL, &q->result, 1, n->loc);
  set_attr(m, d, IR_ATTR_SCALE, py.scale);
  set_attr(m, d, IR_ATTR_ZERO_POINT, py.zero_point);
  if (range)
    ir_node_set_attr(m, d, IR_ATTR_RANGE, range->vals, 2, range->loc);
  out[(*nout)++] = d;
  return true;
}

bool pass_quantize(IrModule *m, const PassOptions *o) {
  /* Every node can become at most three. */
  IrNode **out = ir_alloc(m->arena, (size_t)(3 * m->nnodes + 1) * sizeof *out);
  MadeQuantize *made = ir_alloc(m->arena, (size_t)(m->nnodes + 1) * sizeof *made);
  int nout = 0, nmade = 0;
  NameSet names = {NULL, 0, 0};
  for (int i = 0; i < m->ninputs; i++)
    take_name(m->arena, &names, m->inputs[i]->name);
  for (int i = 0; i < m->nnodes; i++)
    take_name(m->arena, &names, m->nodes[i]->result->name);
  IrNode **old = m->nodes;
  int nold = m->nnodes;
  for (int i = 0; i < nold; i++) {
    IrNode *n = old[i];
    if (!pass_is_quantizable(m, n, o)) {
      /* Remember a --keep-float choice in the IR itself, so that a dump or
       * a saved model compiled later keeps the op in f32 too. */
      PassOptions all = *o;
      all.keep_float = NULL;
      if (pass_is_quantizable(m, n, &all)) {
        double one = 1;
        ir_node_set_attr(m, n, IR_ATTR_KEEP_FLOAT, &one, 1, n->loc);
      }
      out[nout++] = n;
      continue;
    }
    if (!rewrite(m, o, n, out, &nout, made, &nmade, &names))
      return false;
  }
  ir_set_nodes(m, out, nout);
  /* New nodes need their types: infer them in order. */
  return ir_infer_shapes(m);
}
