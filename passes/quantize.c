/* quantize.c: the quantize pass. Each quantizable node (select.c) becomes
 * quantize -> qlinear -> dequantize (qlinear_dyn with --dynamic), so the
 * graph around it still sees f32 and every later pass works on explicit,
 * printable quantization parameters; fuse_requant.c then removes the round
 * trips. A matmul of two activations (same leading dims) becomes qmatmul on
 * both quantized operands (qmatmul_dyn with --dynamic); one whose leading
 * dims broadcast stays in f32, with a note. The rewrite, the weights'
 * scheme and matmul by a constant are in docs/quantization.md, "The quantize and fuse-requant passes". */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "passes.h"

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
  bool per_tensor = pass_weight_spec(o, w->name).id == IR_WF_S8_TENSOR;
  int64_t nscales = per_tensor ? 1 : nn;
  int8_t *q = ir_alloc_data(m->arena, (size_t)(nn * k));
  float *s = ir_alloc_data(m->arena, (size_t)nscales * sizeof *s);
  if (!q || !s)
    return ir_error(&m->diag, n->loc, "out of memory quantizing @%s", w->name);
  int64_t zero = ir_quantize_weights(wf, nn, k, !per_tensor, q, s);
  if (zero)
    pass_note(o, "quantize: @%s has %lld all-zero output channel%s (scale 1)", w->name,
              (long long)zero, zero == 1 ? "" : "s");
  IrType qt = {IR_I8, 2, {nn, k}}, st = {IR_F32, 1, {nscales}};
  *wq_out = ir_add_const(m, ir_unique_const_name(m, qname), qt, q, w->loc);
  *ws_out = ir_add_const(m, ir_unique_const_name(m, sname), st, s, w->loc);
  return true;
}

/* The quantize node made for each value so far, by value id, to share it
 * between the value's users. */
typedef struct {
  int count;
  IrNode **by_id;
} Made;

static IrNode *input_quantize(IrModule *m, Made *made, IrValue *x, const IrQParams *p,
                              bool *is_new) {
  bool numbered = x->id >= 0 && x->id < made->count;
  *is_new = !numbered || !made->by_id[x->id] || made->by_id[x->id]->opnds[0] != x;
  if (!*is_new)
    return made->by_id[x->id];
  char name[512];
  snprintf(name, sizeof name, "%s.q", x->name);
  /* The name table holds the nodes made so far (ir_new_node takes their
   * names), so two quantized layers in a row do not both name a value %h.q. */
  IrNode *q = ir_new_node(m, IR_OP_QUANTIZE, NULL, ir_unique_name(m, name), &x, 1, x->loc);
  ir_set_qparams(m, q, IR_QPARAMS_OUT, p);
  if (numbered)
    made->by_id[x->id] = q;
  return q;
}

/* Append the quantized form of float node `n` to out[]: the integer node
 * `op` (named after n's result with ".q", reading `ops`, with input, right
 * operand and output parameters px, pb (NULL: none) and py) and the
 * dequantize that gives n's result its float value again. */
static void emit_quantized(IrModule *m, const IrNode *n, IrOp op, IrValue **ops, int nops,
                           const IrQParams *px, const IrQParams *pb, const IrQParams *py,
                           IrNode **out, int *nout) {
  char name[512];
  snprintf(name, sizeof name, "%s.q", n->result->name);
  IrNode *q = ir_new_node(m, op, NULL, ir_unique_name(m, name), ops, nops, n->loc);
  ir_set_qparams(m, q, IR_QPARAMS_IN, px);
  if (pb)
    ir_set_qparams(m, q, IR_QPARAMS_B, pb);
  ir_set_qparams(m, q, IR_QPARAMS_OUT, py);
  out[(*nout)++] = q;

  IrNode *d = ir_new_node(m, IR_OP_DEQUANTIZE, n->result, NULL, &q->result, 1, n->loc);
  ir_set_attr_float(m, d, IR_ATTR_SCALE, py->scale);
  ir_set_attr_int(m, d, IR_ATTR_ZERO_POINT, py->zero_point);
  ir_copy_attr(m, n, d, IR_ATTR_RANGE);
  out[(*nout)++] = d;
}

/* Append the nodes that replace matmul of two activations `n` to out[]. */
static bool rewrite_act_matmul(IrModule *m, const PassOptions *o, IrNode *n, IrNode **out,
                               int *nout, Made *made) {
  IrValue *x = n->opnds[0], *b = n->opnds[1], *y = n->result;
  if (o->dynamic) {
    IrValue *ops[2] = {x, b};
    IrNode *d = ir_new_node(m, IR_OP_QMATMUL_DYN, y, NULL, ops, 2, n->loc);
    ir_copy_attr(m, n, d, IR_ATTR_RANGE);
    out[(*nout)++] = d;
    return true;
  }
  IrQParams px, pb, py;
  if (!act_params(m, o, x, &px) || !act_params(m, o, b, &pb) || !act_params(m, o, y, &py))
    return false;
  bool is_new;
  IrNode *xq = input_quantize(m, made, x, &px, &is_new);
  if (is_new)
    out[(*nout)++] = xq;
  IrNode *bq = xq;
  if (b != x) {
    bq = input_quantize(m, made, b, &pb, &is_new);
    if (is_new)
      out[(*nout)++] = bq;
  }
  IrValue *ops[2] = {xq->result, bq->result};
  emit_quantized(m, n, IR_OP_QMATMUL, ops, 2, &px, &pb, &py, out, nout);
  return true;
}

/* Append the nodes that replace quantizable node `n` to out[]. */
static bool rewrite(IrModule *m, const PassOptions *o, IrNode *n, IrNode **out, int *nout,
                    Made *made) {
  bool grouped = pass_node_grouped(m, n, o), done = false;
  if (grouped && !pass_quantize_grouped(m, o, n, out, nout, &done))
    return false;
  if (done)
    return true;
  IrValue *wq = NULL, *ws = NULL;
  if (!weight_consts(m, o, n, &wq, &ws))
    return false;
  IrValue *x = n->opnds[0], *y = n->result;
  IrValue *bias = n->op == IR_OP_LINEAR && n->nopnds == 3 ? n->opnds[2] : NULL;
  if (o->dynamic || grouped) {
    IrValue *ops[4] = {x, wq, ws, bias};
    IrNode *d = ir_new_node(m, IR_OP_QLINEAR_DYN, y, NULL, ops, bias ? 4 : 3, n->loc);
    ir_copy_attr(m, n, d, IR_ATTR_RANGE);
    out[(*nout)++] = d;
    return true;
  }
  IrQParams px, py;
  if (!act_params(m, o, x, &px) || !act_params(m, o, y, &py))
    return false;
  bool is_new;
  IrNode *xq = input_quantize(m, made, x, &px, &is_new);
  if (is_new)
    out[(*nout)++] = xq;

  IrValue *ops[4] = {xq->result, wq, ws, bias};
  emit_quantized(m, n, IR_OP_QLINEAR, ops, bias ? 4 : 3, &px, NULL, &py, out, nout);
  return true;
}

bool pass_quantize(IrModule *m, const PassOptions *o) {
  /* Every node can become at most four (a qmatmul quantizes two operands). */
  IrNode **out = ir_alloc(m->arena, (size_t)(4 * m->nnodes + 1) * sizeof *out);
  Made made = {ir_number_values(m), NULL};
  made.by_id = ir_alloc(m->arena, (size_t)(made.count + 1) * sizeof *made.by_id);
  int nout = 0;
  IrNode **old = m->nodes;
  int nold = m->nnodes;
  for (int i = 0; i < nold; i++) {
    IrNode *n = old[i];
    bool fits;
    if (pass_is_act_matmul(n, &fits) && !fits) {
      char b1[160], b2[160];
      pass_note(o, "quantize: %%%s = matmul %%%s %s, %%%s %s stays in f32: a quantized matmul "
                "of two activations needs the same rank and the same leading dims",
                n->result->name, n->opnds[0]->name,
                ir_type_str(&n->opnds[0]->type, b1, sizeof b1), n->opnds[1]->name,
                ir_type_str(&n->opnds[1]->type, b2, sizeof b2));
    }
    if (!pass_is_quantizable(m, n, o)) {
      /* Remember a --keep-float choice in the IR itself, so that a dump or
       * a saved model compiled later keeps the op in f32 too. */
      PassOptions all = *o;
      all.keep_float = NULL;
      if (pass_is_quantizable(m, n, &all))
        ir_set_attr_int(m, n, IR_ATTR_KEEP_FLOAT, 1);
      out[nout++] = n;
      continue;
    }
    if (pass_is_act_matmul(n, &fits) ? !rewrite_act_matmul(m, o, n, out, &nout, &made)
                                      : !rewrite(m, o, n, out, &nout, &made))
      return false;
  }
  ir_set_nodes(m, out, nout);
  /* New nodes need their types: infer them in order. */
  return ir_infer_shapes(m);
}
