/* quantize.c: the quantize pass. Each quantizable node (select.c) becomes
 * quantize -> qlinear -> dequantize (qlinear_dyn with --dynamic,
 * qlinear_outl with --outliers), so the
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
  int64_t zero = ir_quantize_weights_q(wf, nn, k, !per_tensor,
                                       o->reduce_range ? IR_WEIGHT_QMAX_7BIT : 127, q, s);
  if (zero)
    pass_note(o, "quantize: @%s has %lld all-zero output channel%s (scale 1)", w->name,
              (long long)zero, zero == 1 ? "" : "s");
  IrType qt = {IR_I8, 2, {nn, k}}, st = {IR_F32, 1, {nscales}};
  *wq_out = ir_add_const(m, ir_unique_const_name(m, qname), qt, q, w->loc);
  *ws_out = ir_add_const(m, ir_unique_const_name(m, sname), st, s, w->loc);
  return true;
}

/* qlinear_outl's f32 W^T [K, N] (--outliers): a matmul's constant B as it
 * is; for a linear, `@W.T`, made once per weight. */
static IrValue *weight_t(IrModule *m, IrNode *n) {
  IrValue *w = n->opnds[1];
  if (n->op == IR_OP_MATMUL)
    return w;
  char name[600];
  snprintf(name, sizeof name, "%s.T", w->name);
  IrValue *wt = ir_find_const(m, name);
  int64_t nn = w->type.dims[0], k = w->type.dims[1];
  if (wt && wt->type.dtype == IR_F32 && wt->type.rank == 2 && wt->type.dims[0] == k &&
      wt->type.dims[1] == nn)
    return wt;
  float *t = ir_alloc_data(m->arena, (size_t)(nn * k) * sizeof *t);
  if (!t) {
    ir_error(&m->diag, n->loc, "out of memory transposing @%s", w->name);
    return NULL;
  }
  const float *wf = ir_const_data(m, w);
  for (int64_t i = 0; i < nn; i++)
    for (int64_t j = 0; j < k; j++)
      t[j * nn + i] = wf[i * k + j];
  IrType tt = {IR_F32, 2, {k, nn}};
  return ir_add_const(m, ir_unique_const_name(m, name), tt, t, w->loc);
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
  IrQParams had;
  *is_new = !numbered || !made->by_id[x->id] || made->by_id[x->id]->opnds[0] != x ||
            !ir_get_qparams(made->by_id[x->id], IR_QPARAMS_OUT, &had) ||
            had.dtype != p->dtype || had.scale != p->scale || had.zero_point != p->zero_point;
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
  /* --reduce-range: b over its 7-bit window (ir_qbounds_bits), which the
   * qmatmul's b_bits = 7 clamps it to. */
  double lo, hi;
  if (o->reduce_range && ir_value_range(b, &lo, &hi))
    ir_qparams_from_range_bits(lo, hi, o->activations, 7, &pb);
  bool is_new;
  IrNode *xq = input_quantize(m, made, x, &px, &is_new);
  if (is_new)
    out[(*nout)++] = xq;
  IrNode *bq = xq;
  if (b != x || o->reduce_range) { /* b's own parameters */
    bq = input_quantize(m, made, b, &pb, &is_new);
    if (is_new)
      out[(*nout)++] = bq;
  }
  IrValue *ops[2] = {xq->result, bq->result};
  emit_quantized(m, n, IR_OP_QMATMUL, ops, 2, &px, &pb, &py, out, nout);
  if (o->reduce_range)
    ir_set_attr_int(m, out[*nout - 2], IR_ATTR_B_BITS, 7);
  return true;
}

/* --weights=nf4:G / fp4:G: `linear_4bit x, @W.nf4, @W.absmax[, @W.absmax2],
 * [b]` in place of n (W4A32: x and the result stay f32), its constants made
 * once per weight (ir/nf4.c). False with *done unset when K is not a
 * multiple of G: the layer is quantized as int8 instead, with a note. */
static bool rewrite_4bit(IrModule *m, const PassOptions *o, IrNode *n, IrNode **out, int *nout,
                         bool *done) {
  const IrValue *w = n->opnds[1];
  int code = o->weights_4bit - 1;
  int64_t block = o->weights_block, nn, k;
  const float *wf = pass_weight_nk(m, n, &nn, &k);
  *done = false;
  if (k % block != 0) {
    pass_note(o, "quantize: @%s has K = %lld, not a multiple of the block (%lld): int8 instead "
              "of %s", w->name, (long long)k, (long long)block, code ? "fp4" : "nf4");
    return true;
  }
  char base[512], name[600];
  snprintf(base, sizeof base, "%s%s.%s%lld%s", w->name, n->op == IR_OP_MATMUL ? ".T" : "",
           code ? "fp4_" : "nf4_", (long long)block, o->double_quant ? "dq" : "");
  int64_t groups = nn * (k / block), nb2 = (groups + 255) / 256 + 1;
  IrValue *ops[5];
  int nops = 0;
  ops[nops++] = n->opnds[0];
  snprintf(name, sizeof name, "%s.codes", base);
  IrValue *wq = ir_find_const(m, name);
  if (wq) {
    ops[nops++] = wq;
    snprintf(name, sizeof name, "%s.absmax", base);
    ops[nops++] = ir_find_const(m, name);
    if (o->double_quant) {
      snprintf(name, sizeof name, "%s.absmax2", base);
      ops[nops++] = ir_find_const(m, name);
    }
  } else {
    for (int64_t i = 0; i < nn * k; i++)
      if (!isfinite(wf[i]))
        return ir_error(&m->diag, w->loc, "quantize: weight @%s holds %s values", w->name,
                        isnan(wf[i]) ? "NaN" : "infinite");
    uint8_t *codes = ir_alloc_data(m->arena, (size_t)(nn * (k / 2)));
    float *absmax = ir_alloc_data(m->arena, (size_t)groups * sizeof *absmax);
    uint8_t *aq = o->double_quant ? ir_alloc_data(m->arena, (size_t)groups) : NULL;
    float *a2 = o->double_quant ? ir_alloc_data(m->arena, (size_t)nb2 * sizeof *a2) : NULL;
    if (!codes || !absmax || (o->double_quant && (!aq || !a2)))
      return ir_error(&m->diag, n->loc, "out of memory quantizing @%s", w->name);
    ir_quantize_4bit(wf, nn, k, code, block, codes, absmax);
    IrType ct = {IR_U8, 2, {nn, k / 2}}, at = {IR_F32, 2, {nn, k / block}};
    snprintf(name, sizeof name, "%s.codes", base);
    ops[nops++] = ir_add_const(m, ir_unique_const_name(m, name), ct, codes, w->loc);
    snprintf(name, sizeof name, "%s.absmax", base);
    if (o->double_quant) {
      ir_double_quant(absmax, groups, aq, a2);
      at.dtype = IR_U8;
      ops[nops++] = ir_add_const(m, ir_unique_const_name(m, name), at, aq, w->loc);
      IrType t2 = {IR_F32, 1, {nb2}};
      snprintf(name, sizeof name, "%s.absmax2", base);
      ops[nops++] = ir_add_const(m, ir_unique_const_name(m, name), t2, a2, w->loc);
    } else {
      ops[nops++] = ir_add_const(m, ir_unique_const_name(m, name), at, absmax, w->loc);
    }
  }
  if (n->op == IR_OP_LINEAR && n->nopnds == 3)
    ops[nops++] = n->opnds[2];
  IrNode *q = ir_new_node(m, IR_OP_LINEAR_4BIT, n->result, NULL, ops, nops, n->loc);
  ir_set_attr_name(m, q, IR_ATTR_CODE, code);
  ir_set_attr_int(m, q, IR_ATTR_BLOCK, block);
  if (o->double_quant)
    ir_set_attr_int(m, q, IR_ATTR_DOUBLE_QUANT, 1);
  ir_copy_attr(m, n, q, IR_ATTR_RANGE);
  out[(*nout)++] = q;
  *done = true;
  return true;
}

/* Append the nodes that replace quantizable node `n` to out[]. */
static bool rewrite(IrModule *m, const PassOptions *o, IrNode *n, IrNode **out, int *nout,
                    Made *made) {
  bool done = false;
  if (o->weights_4bit && !pass_weight_overridden(o, n->opnds[1]->name) &&
      (!rewrite_4bit(m, o, n, out, nout, &done) || done))
    return done;
  bool grouped = pass_node_grouped(m, n, o);
  if (grouped && !pass_quantize_grouped(m, o, n, out, nout, &done))
    return false;
  if (done)
    return true;
  IrValue *wq = NULL, *ws = NULL;
  if (!weight_consts(m, o, n, &wq, &ws))
    return false;
  IrValue *x = n->opnds[0], *y = n->result;
  IrValue *bias = n->op == IR_OP_LINEAR && n->nopnds == 3 ? n->opnds[2] : NULL;
  if (o->dynamic && o->outliers > 0) {
    IrValue *wt = weight_t(m, n);
    if (!wt)
      return false;
    IrValue *ops[5] = {x, wq, ws, wt, bias};
    IrNode *d = ir_new_node(m, IR_OP_QLINEAR_OUTL, y, NULL, ops, bias ? 5 : 4, n->loc);
    ir_set_attr_float(m, d, IR_ATTR_THRESHOLD, (float)o->outliers);
    ir_copy_attr(m, n, d, IR_ATTR_RANGE);
    out[(*nout)++] = d;
    return true;
  }
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
    /* The weight's quantized form exists: its f32 form, if it is a view's,
     * goes (ir_const_release), so one f32 weight at a time is ever held. */
    ir_const_release(m, n->opnds[1]);
  }
  ir_set_nodes(m, out, nout);
  /* New nodes need their types: infer them in order. */
  return ir_infer_shapes(m);
}
