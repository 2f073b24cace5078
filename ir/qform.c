/* qform.c: the quantized boundary of a model: which f32 inputs and outputs
 * have a quantized form (`{scale, zero_point, dtype}` on their declaration),
 * which the model's quantized entry takes and gives instead of f32, so that
 * run_quantized(quantize(x)) == quantize(run(x)) bit for bit, as the
 * interpreter (ir_interp_quantized) and the generated entries compute. The
 * rules are in docs/quantization.md, "The quantized boundary" and "The
 * quantized boundary in the IR". */
#include <math.h>

#include "ir.h"

static bool is_qlayer(IrOp op) { return op == IR_OP_QLINEAR || op == IR_OP_QGEMM; }

bool ir_qform_use_ok(const IrNode *n, const IrValue *x, const IrQParams *q) {
  if (!is_qlayer(n->op) || n->opnds[0] != x)
    return false;
  for (int i = 1; i < n->nopnds; i++)
    if (n->opnds[i] == x)
      return false;
  IrQParams p;
  return ir_get_qparams(n, IR_QPARAMS_IN, &p) && p.scale == q->scale &&
         p.zero_point == q->zero_point && p.dtype == q->dtype;
}

/* Inputs by index, for one sweep over the graph instead of one per input:
 * ir_number_values gives inputs the ids 0..ninputs-1. */
static int input_index(const IrModule *m, const IrValue *v) {
  return v->kind == IR_VAL_INPUT && v->id >= 0 && v->id < m->ninputs && m->inputs[v->id] == v
             ? v->id
             : -1;
}

/* Which inputs are also outputs. */
static bool *inputs_that_are_outputs(IrModule *m) {
  bool *out = ir_alloc(m->arena, (size_t)(m->ninputs + 1) * sizeof *out);
  for (int i = 0; i < m->noutputs; i++) {
    int k = input_index(m, m->outputs[i]);
    if (k >= 0)
      out[k] = true;
  }
  return out;
}

void ir_set_input_qforms(IrModule *m) {
  /* Per input: the parameters its first user quantizes it with, and
   * whether every use so far is a quantized layer that does the same. */
  typedef struct {
    bool seen, ok;
    IrQParams q;
  } Uses;
  ir_number_values(m);
  Uses *u = ir_alloc(m->arena, (size_t)(m->ninputs + 1) * sizeof *u);
  for (int i = 0; i < m->ninputs; i++)
    u[i].ok = true;
  for (int j = 0; j < m->nnodes; j++) {
    const IrNode *n = m->nodes[j];
    for (int k = 0; k < n->nopnds; k++) {
      int i = input_index(m, n->opnds[k]);
      if (i < 0 || !u[i].ok)
        continue;
      if (!u[i].seen) {
        if (!is_qlayer(n->op) || !ir_get_qparams(n, IR_QPARAMS_IN, &u[i].q)) {
          u[i].ok = false;
          continue;
        }
        u[i].seen = true;
      }
      u[i].ok = ir_qform_use_ok(n, n->opnds[k], &u[i].q);
    }
  }
  bool *is_output = inputs_that_are_outputs(m);
  for (int i = 0; i < m->ninputs; i++) {
    IrValue *x = m->inputs[i];
    if (x->has_qform || x->type.dtype != IR_F32 || is_output[i] || !u[i].ok || !u[i].seen)
      continue;
    x->has_qform = true;
    x->qform = u[i].q;
    x->qform_loc = x->loc;
  }
}

static bool check_params(IrModule *m, const IrValue *v, const char *what) {
  const IrQParams *q = &v->qform;
  if (!ir_dtype_is_quantized(q->dtype))
    return ir_error(&m->diag, v->qform_loc, "%s %%%s: the dtype of its quantized form must be u8 or i8, not %s",
                    what, v->name, ir_dtype_name(q->dtype));
  if (!(q->scale > 0) || !isfinite(q->scale))
    return ir_error(&m->diag, v->qform_loc,
                    "%s %%%s: the scale of its quantized form must be a positive finite f32",
                    what, v->name);
  int32_t lo, hi;
  ir_qbounds(q->dtype, &lo, &hi);
  if (q->zero_point < lo || q->zero_point > hi)
    return ir_error(&m->diag, v->qform_loc,
                    "%s %%%s: zero_point %d is outside %s [%d, %d]", what, v->name,
                    (int)q->zero_point, ir_dtype_name(q->dtype), (int)lo, (int)hi);
  if (v->type.dtype != IR_F32)
    return ir_error(&m->diag, v->qform_loc,
                    "%s %%%s is %s: only an f32 %s has a quantized form", what, v->name,
                    ir_dtype_name(v->type.dtype), what);
  return true;
}

bool ir_check_qforms(IrModule *m) {
  /* The first node (in order) that uses each input against its quantized
   * form, found in one sweep; reported input by input. */
  ir_number_values(m);
  const IrNode **bad = ir_alloc(m->arena, (size_t)(m->ninputs + 1) * sizeof *bad);
  for (int j = 0; j < m->nnodes; j++) {
    const IrNode *n = m->nodes[j];
    for (int k = 0; k < n->nopnds; k++) {
      int i = input_index(m, n->opnds[k]);
      if (i >= 0 && m->inputs[i]->has_qform && !bad[i] &&
          !ir_qform_use_ok(n, m->inputs[i], &m->inputs[i]->qform))
        bad[i] = n;
    }
  }
  bool *is_output = inputs_that_are_outputs(m);
  for (int i = 0; i < m->ninputs; i++) {
    const IrValue *x = m->inputs[i];
    if (!x->has_qform)
      continue;
    if (!check_params(m, x, "input"))
      return false;
    if (is_output[i])
      return ir_error(&m->diag, x->qform_loc,
                      "input %%%s is also an output, so it cannot have a quantized form", x->name);
    if (bad[i])
      return ir_error(&m->diag, bad[i]->loc,
                      "%s uses input %%%s, which has a quantized form: only quantized "
                      "layers that quantize it with the same scale, zero_point and dtype "
                      "(x_scale, x_zero_point, x_dtype) may use it",
                      ir_op_info[bad[i]->op].name, x->name);
  }
  for (int i = 0; i < m->noutputs; i++)
    if (m->outputs[i]->has_qform && m->outputs[i]->kind != IR_VAL_INPUT &&
        !check_params(m, m->outputs[i], "output"))
      return false;
  return true;
}

bool ir_has_qforms(const IrModule *m) {
  for (int i = 0; i < m->ninputs; i++)
    if (m->inputs[i]->has_qform)
      return true;
  for (int i = 0; i < m->noutputs; i++)
    if (m->outputs[i]->has_qform)
      return true;
  return false;
}

IrDType ir_boundary_dtype(const IrValue *v, bool quantized) {
  return quantized && v->has_qform ? v->qform.dtype : v->type.dtype;
}
