/* fuse_requant.c: the fuse-requant pass. After quantize (quantize.c), every
 * qlinear is bracketed by quantize and dequantize; this pass removes the
 * round trips through f32 (fusing relu, dropping equal pairs, fusing the
 * model's entry and exit into its layers) so that consecutive int8 layers
 * pass int8 data directly, leaving the fused parameters as the quantized form
 * of the model's inputs and outputs (ir/qform.c). The entry and exit steps
 * apply to qmatmul too (either operand), so attention's qmatmul -> softmax ->
 * qmatmul converts once each way. Its four steps, and why it
 * is idempotent and linear, are in docs/quantization.md, "The quantize and
 * fuse-requant passes". */
#include <stdio.h>

#include "passes.h"

static IrNode *producer(const IrValue *v) { return v->kind == IR_VAL_NODE ? v->def : NULL; }

static bool is_int_qlinear(const IrNode *n) {
  return n && n->op == IR_OP_QLINEAR && ir_attr_dtype(n, IR_ATTR_DTYPE, IR_F32) != IR_F32;
}

/* A qlinear or qmatmul with an integer result: fuse_exit's candidates. */
static bool is_int_qlayer(const IrNode *n) {
  return is_int_qlinear(n) ||
         (n && n->op == IR_OP_QMATMUL && ir_attr_dtype(n, IR_ATTR_DTYPE, IR_F32) != IR_F32);
}

/* Dequantize `d` by the result parameters of `q`, copied as stored (a
 * scale read from a dump is a double, not always an f32). */
static void set_dequant_params(IrModule *m, IrNode *d, const IrNode *q) {
  ir_set_attr_float(m, d, IR_ATTR_SCALE, ir_attr_float(q, IR_ATTR_SCALE, 0));
  ir_set_attr_int(m, d, IR_ATTR_ZERO_POINT, ir_attr_int(q, IR_ATTR_ZERO_POINT, 0));
}

static void move_range(IrModule *m, const IrNode *from, IrNode *to) {
  ir_copy_attr(m, from, to, IR_ATTR_RANGE);
}

/* A qlinear that absorbed a relu computes the relu's value: it is renamed
 * after it ("%a.q" for relu result %a) once the quantize node holding that
 * name is gone, because the report pairs each int8 op with the float value
 * of its name less ".q". */
typedef struct {
  IrValue *value;
  const char *name;
} Rename;

static int fuse_relu(IrModule *m, Rename *renames) {
  int nrenames = 0;
  for (int i = 0; i < m->nnodes; i++) {
    IrNode *relu = m->nodes[i], *deq = producer(relu->opnds[0]);
    if (relu->op != IR_OP_RELU || !deq || deq->op != IR_OP_DEQUANTIZE)
      continue;
    IrNode *q = producer(deq->opnds[0]);
    if (!is_int_qlinear(q) || ir_has_attr(q, IR_ATTR_RELU) ||
        ir_count_uses(m, relu->opnds[0]) != 1 || ir_count_uses(m, deq->opnds[0]) != 1)
      continue;
    ir_set_attr_int(m, q, IR_ATTR_RELU, 1);
    renames[nrenames++] = (Rename){q->result, relu->result->name};
    double lo, hi;
    IrQParams p;
    if (ir_value_range(relu->result, &lo, &hi)) {
      ir_qparams_from_range(lo, hi, ir_attr_dtype(q, IR_ATTR_DTYPE, IR_DTYPE_NONE), &p);
      ir_set_attr_float(m, q, IR_ATTR_SCALE, p.scale);
      ir_set_attr_int(m, q, IR_ATTR_ZERO_POINT, p.zero_point);
    }
    IrNode *d = ir_new_node(m, IR_OP_DEQUANTIZE, relu->result, NULL, &q->result, 1, relu->loc);
    set_dequant_params(m, d, q);
    move_range(m, relu, d);
    ir_set_node(m, i, d);
  }
  ir_remove_dead(m);
  return nrenames;
}

/* Scales are f32 values; compare them as f32, because a scale read back from
 * a dump is the shortest decimal of the f32, not the same double. */
static bool same_scale(double a, double b) { return (float)a == (float)b; }

static bool same_params(const IrNode *a, const IrNode *b) {
  return same_scale(ir_attr_float(a, IR_ATTR_SCALE, 0), ir_attr_float(b, IR_ATTR_SCALE, 0)) &&
         ir_attr_int(a, IR_ATTR_ZERO_POINT, 0) == ir_attr_int(b, IR_ATTR_ZERO_POINT, 0);
}

/* Replacements by value id: from[id] becomes to[id]. */
typedef struct {
  int count;
  IrValue **from, **to;
} Subst;

static bool replaced(const Subst *s, const IrValue *v) {
  return v->id >= 0 && v->id < s->count && s->from[v->id] == v;
}

static void remove_pairs(IrModule *m) {
  /* The value each removed quantize's result becomes, by value id; then
   * one sweep over every operand and output (ir_replace_uses per pair
   * would rescan the graph per pair). A source that is itself replaced (a
   * chain quantize -> dequantize -> quantize -> ...) is resolved when it
   * is recorded: the earlier pair is recorded first. */
  int count = ir_number_values(m);
  Subst sub = {count, ir_alloc(m->arena, (size_t)(count + 1) * sizeof *sub.from),
               ir_alloc(m->arena, (size_t)(count + 1) * sizeof *sub.to)};
  bool any = false;
  for (int i = 0; i < m->nnodes; i++) {
    IrNode *quant = m->nodes[i], *deq = producer(quant->opnds[0]);
    if (quant->op != IR_OP_QUANTIZE || !deq || deq->op != IR_OP_DEQUANTIZE ||
        !same_params(quant, deq) ||
        deq->opnds[0]->type.dtype != ir_attr_dtype(quant, IR_ATTR_DTYPE, IR_DTYPE_NONE))
      continue;
    IrValue *src = deq->opnds[0];
    if (replaced(&sub, src))
      src = sub.to[src->id];
    sub.from[quant->result->id] = quant->result;
    sub.to[quant->result->id] = src;
    any = true;
  }
  if (!any)
    return;
  for (int i = 0; i < m->nnodes; i++) {
    IrNode *n = m->nodes[i];
    for (int j = 0; j < n->nopnds; j++) {
      if (replaced(&sub, n->opnds[j]))
        n->opnds[j] = sub.to[n->opnds[j]->id];
    }
  }
  for (int i = 0; i < m->noutputs; i++) {
    if (replaced(&sub, m->outputs[i]))
      m->outputs[i] = sub.to[m->outputs[i]->id];
  }
  ir_remove_dead(m); /* recounts uses */
}

static void fuse_exit(IrModule *m) {
  /* Dequantize nodes that go are only marked here, and leave the list at
   * the end (ir_set_nodes): the use counts describe the unchanged list
   * while the loop runs. Outputs are marked once, by value id. */
  int count = ir_number_values(m);
  bool *is_output = ir_alloc(m->arena, (size_t)(count + 1) * sizeof *is_output);
  for (int i = 0; i < m->noutputs; i++)
    if (m->outputs[i]->id >= 0 && m->outputs[i]->id < count)
      is_output[m->outputs[i]->id] = true;
  bool *gone = ir_alloc(m->arena, (size_t)(m->nnodes + 1) * sizeof *gone);
  int ngone = 0;
  for (int i = 0; i < m->nnodes; i++) {
    IrNode *deq = m->nodes[i], *q = producer(deq->opnds[0]);
    if (deq->op != IR_OP_DEQUANTIZE || !is_int_qlayer(q) || ir_count_uses(m, q->result) != 1)
      continue;
    /* A model output keeps the parameters as its quantized form. */
    IrValue *y = deq->result;
    if (y->id >= 0 && y->id < count && is_output[y->id] && !y->has_qform) {
      y->has_qform = true;
      ir_get_qparams(q, IR_QPARAMS_OUT, &y->qform);
      y->qform_loc = deq->loc;
    }
    ir_set_attr_dtype(m, q, IR_ATTR_DTYPE, IR_F32);
    ir_node_remove_attr(q, IR_ATTR_SCALE);
    ir_node_remove_attr(q, IR_ATTR_ZERO_POINT);
    move_range(m, deq, q);
    /* q takes over the dequantize's value; the dequantize keeps q's old
     * result as its operand, and nothing else uses it. */
    IrValue *old = q->result;
    q->result = deq->result;
    q->result->def = q;
    deq->result = old;
    gone[i] = true;
    ngone++;
  }
  if (!ngone)
    return;
  IrNode **kept = ir_alloc(m->arena, (size_t)(m->nnodes + 1) * sizeof *kept);
  int nkept = 0;
  for (int i = 0; i < m->nnodes; i++)
    if (!gone[i])
      kept[nkept++] = m->nodes[i];
  ir_set_nodes(m, kept, nkept);
}

/* qmatmul's operand `i`: a quantize (used by nothing else) with the
 * parameters the qmatmul gives that operand is fused into it. */
static void fuse_qmatmul_entry(IrModule *m, IrNode *q, int i) {
  IrNode *quant = producer(q->opnds[i]);
  IrQParams p;
  if (!quant || quant->op != IR_OP_QUANTIZE || ir_count_uses(m, quant->result) != 1 ||
      !ir_get_qparams(q, i == 0 ? IR_QPARAMS_IN : IR_QPARAMS_B, &p) ||
      !same_scale(ir_attr_float(quant, IR_ATTR_SCALE, 0), p.scale) ||
      ir_attr_int(quant, IR_ATTR_ZERO_POINT, 0) != p.zero_point ||
      ir_attr_dtype(quant, IR_ATTR_DTYPE, IR_DTYPE_NONE) != p.dtype)
    return;
  ir_set_operand(m, q, i, quant->opnds[0]);
}

static void fuse_entry(IrModule *m) {
  for (int i = 0; i < m->nnodes; i++) {
    if (m->nodes[i]->op == IR_OP_QMATMUL) {
      fuse_qmatmul_entry(m, m->nodes[i], 0);
      fuse_qmatmul_entry(m, m->nodes[i], 1);
      continue;
    }
    IrNode *q = m->nodes[i], *quant = producer(q->opnds[0]);
    if (q->op != IR_OP_QLINEAR || !quant || quant->op != IR_OP_QUANTIZE ||
        ir_count_uses(m, quant->result) != 1 ||
        !same_scale(ir_attr_float(quant, IR_ATTR_SCALE, 0), ir_attr_float(q, IR_ATTR_X_SCALE, 0)) ||
        ir_attr_int(quant, IR_ATTR_ZERO_POINT, 0) != ir_attr_int(q, IR_ATTR_X_ZERO_POINT, 0))
      continue;
    ir_set_operand(m, q, 0, quant->opnds[0]);
  }
  ir_remove_dead(m);
}

bool pass_fuse_requant(IrModule *m, const PassOptions *o) {
  ir_fill_uses(m); /* counts right even if the caller edited operands directly */
  Rename *renames = ir_alloc(m->arena, (size_t)(m->nnodes + 1) * sizeof *renames);
  int nrenames = fuse_relu(m, renames);
  remove_pairs(m);
  for (int i = 0; i < nrenames; i++) {
    char name[512];
    snprintf(name, sizeof name, "%s.q", renames[i].name);
    ir_rename_value(m, renames[i].value, name);
  }
  fuse_exit(m);
  fuse_entry(m);
  ir_set_input_qforms(m);
  return ir_infer_shapes(m);
}
