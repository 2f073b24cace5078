/* verify.c: the IR's invariants, checked after parsing and after every pass
 * (in tests and debug builds), so that a pass that breaks the graph is caught
 * where it happens rather than as a wrong answer later.
 *
 * Invariants: names are unique; every operand is an input, a constant of the
 * module, or the result of an earlier node; operand counts and attribute keys
 * are those ops.def allows; every type is known and equals what inference
 * computes from the operands; every output is a defined value. */
#include <string.h>

#include "ir.h"

static bool is_const_of(const IrModule *m, const IrValue *v) {
  for (int i = 0; i < m->nconsts; i++)
    if (m->consts[i] == v)
      return true;
  return false;
}

/* Defined before node `upto` (inputs, constants, results of nodes[0..upto)). */
static bool defined_before(const IrModule *m, const IrValue *v, int upto) {
  switch (v->kind) {
  case IR_VAL_INPUT:
    for (int i = 0; i < m->ninputs; i++)
      if (m->inputs[i] == v)
        return true;
    return false;
  case IR_VAL_CONST:
    return is_const_of(m, v) && v->data;
  case IR_VAL_NODE:
    for (int i = 0; i < upto; i++)
      if (m->nodes[i]->result == v)
        return true;
    return false;
  }
  return false;
}

static bool check_names(IrModule *m) {
  int n = m->ninputs + m->nnodes;
  for (int i = 0; i < n; i++) {
    const IrValue *a = i < m->ninputs ? m->inputs[i] : m->nodes[i - m->ninputs]->result;
    for (int j = 0; j < i; j++) {
      const IrValue *b = j < m->ninputs ? m->inputs[j] : m->nodes[j - m->ninputs]->result;
      if (strcmp(a->name, b->name) == 0)
        return ir_error(&m->diag, a->loc, "value %%%s is defined twice", a->name);
    }
  }
  for (int i = 0; i < m->nconsts; i++)
    for (int j = 0; j < i; j++)
      if (strcmp(m->consts[i]->name, m->consts[j]->name) == 0)
        return ir_error(&m->diag, m->consts[i]->loc, "constant @%s appears twice",
                        m->consts[i]->name);
  return true;
}

static bool check_node(IrModule *m, int idx) {
  const IrNode *n = m->nodes[idx];
  const IrOpInfo *info = &ir_op_info[n->op];
  if (n->nopnds < info->min_operands || n->nopnds > info->max_operands)
    return ir_error(&m->diag, n->loc, "%s has %d operands; it takes %d to %d", info->name,
                    n->nopnds, info->min_operands, info->max_operands);
  for (int i = 0; i < n->nopnds; i++)
    if (!defined_before(m, n->opnds[i], idx))
      return ir_error(&m->diag, n->loc, "%s: operand %s%s is not defined before its use",
                      info->name, n->opnds[i]->kind == IR_VAL_CONST ? "@" : "%",
                      n->opnds[i]->name);
  for (int i = 0; i < n->nattrs; i++) {
    IrAttrKey k = n->attrs[i].key;
    if (!((info->attrs | IR_ATTRS_ANY_OP) & (1u << k)))
      return ir_error(&m->diag, n->attrs[i].loc, "%s does not take the attribute '%s'",
                      info->name, ir_attr_info[k].key);
  }
  IrType t;
  if (!ir_infer_type(m, n, &t))
    return false;
  char b1[96], b2[96];
  if (!ir_type_equal(&t, &n->result->type))
    return ir_error(&m->diag, n->loc, "%%%s has type %s but %s computes %s", n->result->name,
                    ir_type_str(&n->result->type, b1, sizeof b1), info->name,
                    ir_type_str(&t, b2, sizeof b2));
  return true;
}

/* Every value fits in memory with the batch size 1: its element count and
 * byte size overflow nothing and stay under the cap (ir_max_tensor_bytes),
 * so that no later stage tries to allocate, or compute offsets for, a shape
 * that cannot exist. (A larger batch is checked where it is bound.) */
static bool check_size(IrModule *m, const IrValue *v) {
  char err[192], t[192];
  size_t bytes;
  if (ir_type_bytes(&v->type, 1, &bytes, err, sizeof err))
    return true;
  bool batched = false;
  for (int i = 0; i < v->type.rank; i++)
    batched |= v->type.dims[i] == IR_DIM_BATCH;
  return ir_error(&m->diag, v->loc, "%s%s : %s%s %s", v->kind == IR_VAL_CONST ? "@" : "%",
                  v->name, ir_type_str(&v->type, t, sizeof t),
                  batched ? " with the batch size 1" : "", err);
}

bool ir_verify(IrModule *m) {
  if (m->diag.failed)
    return false;
  if (!check_names(m))
    return false;
  for (int i = 0; i < m->ninputs; i++) {
    if (m->inputs[i]->type.dtype == IR_DTYPE_NONE)
      return ir_error(&m->diag, m->inputs[i]->loc, "input %%%s has no type", m->inputs[i]->name);
    if (!check_size(m, m->inputs[i]))
      return false;
  }
  for (int i = 0; i < m->nconsts; i++)
    if (!check_size(m, m->consts[i]))
      return false;
  for (int i = 0; i < m->nnodes; i++)
    if (!check_node(m, i) || !check_size(m, m->nodes[i]->result))
      return false;
  if (m->noutputs == 0)
    return ir_error(&m->diag, (IrLoc){0}, "model '%s' has no outputs", m->name);
  for (int i = 0; i < m->noutputs; i++)
    if (m->outputs[i]->kind == IR_VAL_CONST || !defined_before(m, m->outputs[i], m->nnodes))
      return ir_error(&m->diag, m->output_locs ? m->output_locs[i] : (IrLoc){0},
                      "output %%%s is not a value defined in the model", m->outputs[i]->name);
  return true;
}
