/* fuse_requant.c: the fuse-requant pass. After quantize, every qlinear is
 * bracketed by quantize and dequantize; this pass removes the round trips
 * through f32 so that consecutive int8 layers pass int8 data directly:
 *
 *   1. relu:   qlinear -> dequantize -> relu  becomes  qlinear {relu = 1} ->
 *              dequantize, requantizing to the relu output's own range when it
 *              has one (relu(dequant(q)) = dequant(max(q, zp)) exactly);
 *   2. pairs:  dequantize -> quantize with equal parameters disappears;
 *   3. exit:   qlinear -> dequantize (its only use) becomes qlinear {dtype = f32};
 *   4. entry:  quantize -> qlinear (its only use) becomes qlinear on f32, which
 *              quantizes its input itself with its x_scale and x_zero_point.
 *
 * The model still takes f32 in and gives f32 out. The parameters of a fused
 * entry or exit are kept as the quantized form of the model input or output
 * (`{scale, zero_point, dtype}` on its declaration), which the model's
 * quantized entry takes or gives instead (ir/qform.c). Each step is a local
 * rewrite followed by dead-node removal, so the pass is idempotent and can
 * resume from any dump. */
#include <stdio.h>

#include "passes.h"

static IrNode *producer(const IrValue *v) { return v->kind == IR_VAL_NODE ? v->def : NULL; }

static double attr(const IrNode *n, IrAttrKey key) { return ir_node_attr(n, key)->vals[0]; }

static void set_attr(IrModule *m, IrNode *n, IrAttrKey key, double v) {
  ir_node_set_attr(m, n, key, &v, 1, n->loc);
}

static bool is_int_qlinear(const IrNode *n) {
  return n && n->op == IR_OP_QLINEAR && (IrDType)attr(n, IR_ATTR_DTYPE) != IR_F32;
}

/* Replace node `old` in the list by `new`. */
static void replace_node(IrModule *m, IrNode *old, IrNode *new) {
  for (int i = 0; i < m->nnodes; i++)
    if (m->nodes[i] == old)
      m->nodes[i] = new;
}

static void move_range(IrModule *m, const IrNode *from, IrNode *to) {
  const IrAttr *r = ir_node_attr(from, IR_ATTR_RANGE);
  if (r)
    ir_node_set_attr(m, to, IR_ATTR_RANGE, r->vals, 2, r->loc);
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
    if (!is_int_qlinear(q) || ir_node_attr(q, IR_ATTR_RELU) ||
        ir_count_uses(m, relu->opnds[0]) != 1 || ir_count_uses(m, deq->opnds[0]) != 1)
      continue;
    set_attr(m, q, IR_ATTR_RELU, 1);
    renames[nrenames++] = (Rename){q->result, relu->result->name};
    double lo, hi;
    IrQParams p;
    if (ir_value_range(relu->result, &lo, &hi)) {
      ir_qparams_from_range(lo, hi, (IrDType)attr(q, IR_ATTR_DTYPE), &p);
      set_attr(m, q, IR_ATTR_SCALE, p.scale);
      set_attr(m, q, IR_ATTR_ZERO_POINT, p.zero_point);
    }
    IrNode *d = ir_new_node(m, IR_OP_DEQUANTIZE, relu->result, NULL, &q->result, 1, relu->loc);
    set_attr(m, d, IR_ATTR_SCALE, attr(q, IR_ATTR_SCALE));
    set_attr(m, d, IR_ATTR_ZERO_POINT, attr(q, IR_ATTR_ZERO_POINT));
    move_range(m, relu, d);
    replace_node(m, relu, d);
  }
  ir_remove_dead(m);
  return nrenames;
}

/* Scales are f32 values; compare them as f32, because a scale read back from
 * a dump is the shortest decimal of the f32, not the same double. */
static bool same_scale(double a, double b) { return (float)a == (float)b; }

static bool same_params(const IrNode *a, const IrNode *b) {
  return same_scale(attr(a, IR_ATTR_SCALE), attr(b, IR_ATTR_SCALE)) &&
         attr(a, IR_ATTR_ZERO_POINT) == attr(b, IR_ATTR_ZERO_POINT);
}

static void remove_pairs(IrModule *m) {
  for (int i = 0; i < m->nnodes; i++) {
    IrNode *quant = m->nodes[i], *deq = producer(quant->opnds[0]);
    if (quant->op != IR_OP_QUANTIZE || !deq || deq->op != IR_OP_DEQUANTIZE ||
        !same_params(quant, deq) ||
        deq->opnds[0]->type.dtype != (IrDType)attr(quant, IR_ATTR_DTYPE))
      continue;
    ir_replace_uses(m, quant->result, deq->opnds[0]);
  }
  ir_remove_dead(m);
}

static void fuse_exit(IrModule *m) {
  /* Dequantize nodes that go are only marked here: ir_count_uses must see
   * the whole, unchanged list while the loop runs. */
  bool *gone = ir_alloc(m->arena, (size_t)(m->nnodes + 1) * sizeof *gone);
  for (int i = 0; i < m->nnodes; i++) {
    IrNode *deq = m->nodes[i], *q = producer(deq->opnds[0]);
    if (deq->op != IR_OP_DEQUANTIZE || !is_int_qlinear(q) || ir_count_uses(m, q->result) != 1)
      continue;
    /* A model output keeps the parameters as its quantized form. */
    IrValue *y = deq->result;
    if (ir_output_index(m, y) >= 0 && !y->has_qform) {
      y->has_qform = true;
      y->qform = (IrQParams){(float)attr(q, IR_ATTR_SCALE), (int32_t)attr(q, IR_ATTR_ZERO_POINT),
                             (IrDType)attr(q, IR_ATTR_DTYPE)};
      y->qform_loc = deq->loc;
    }
    set_attr(m, q, IR_ATTR_DTYPE, IR_F32);
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
  }
  int kept = 0;
  for (int i = 0; i < m->nnodes; i++)
    if (!gone[i])
      m->nodes[kept++] = m->nodes[i];
  m->nnodes = kept;
}

static void fuse_entry(IrModule *m) {
  for (int i = 0; i < m->nnodes; i++) {
    IrNode *q = m->nodes[i], *quant = producer(q->opnds[0]);
    if (q->op != IR_OP_QLINEAR || !quant || quant->op != IR_OP_QUANTIZE ||
        ir_count_uses(m, quant->result) != 1 ||
        !same_scale(attr(quant, IR_ATTR_SCALE), attr(q, IR_ATTR_X_SCALE)) ||
        attr(quant, IR_ATTR_ZERO_POINT) != attr(q, IR_ATTR_X_ZERO_POINT))
      continue;
    q->opnds[0] = quant->opnds[0];
  }
  ir_remove_dead(m);
}

bool pass_fuse_requant(IrModule *m, const PassOptions *o) {
  Rename *renames = ir_alloc(m->arena, (size_t)(m->nnodes + 1) * sizeof *renames);
  int nrenames = fuse_relu(m, renames);
  remove_pairs(m);
  for (int i = 0; i < nrenames; i++) {
    char name[512];
    snprintf(name, sizeof name, "%s.q", renames[i].name);
    renames[i].value->name = "";
    renames[i].value->name = ir_unique_name(m, name);
  }
  fuse_exit(m);
  fuse_entry(m);
  ir_set_input_qforms(m);
  return ir_infer_shapes(m);
}
