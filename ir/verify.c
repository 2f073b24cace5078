/* verify.c: the IR's invariants, checked after parsing and after every pass
 * (in tests and debug builds), so that a pass that breaks the graph is caught
 * where it happens rather than as a wrong answer later.
 *
 * Linear in the size of the graph (values by id, names in a hash table):
 * it runs after every pass, on models of 100k nodes.
 *
 * Invariants: names are unique; every operand is an input, a constant of the
 * module, or the result of an earlier node; operand counts and attribute keys
 * are those ops.def allows; every type is known and equals what inference
 * computes from the operands; every output is a defined value; quantized
 * forms of inputs and outputs are consistent (qform.c). */
#include <stdlib.h>

#include "ir.h"

/* Where each value is defined, by value id, so that "defined before node
 * i" is one lookup: the verifier runs after every pass, and must stay linear
 * in the size of the graph (a hostile model may have 100k nodes). */
typedef struct {
  int count;
  const IrValue **by_id; /* the value numbered id, to tell a stranger with a stale id */
  int *pos;              /* node results: the node's index; inputs and constants: -1 */
} Defs;

static Defs index_defs(IrModule *m) {
  Defs d = {ir_number_values(m), NULL, NULL};
  /* Scratch from malloc, not the arena: the verifier runs after every pass. */
  d.by_id = calloc((size_t)d.count + 1, sizeof *d.by_id);
  d.pos = calloc((size_t)d.count + 1, sizeof *d.pos);
  if (!d.by_id || !d.pos)
    q8_die("out of memory verifying the module");
  for (int i = 0; i < m->ninputs; i++) {
    d.by_id[m->inputs[i]->id] = m->inputs[i];
    d.pos[m->inputs[i]->id] = -1;
  }
  for (int i = 0; i < m->nconsts; i++) {
    d.by_id[m->consts[i]->id] = m->consts[i];
    d.pos[m->consts[i]->id] = -1;
  }
  for (int i = 0; i < m->nnodes; i++) {
    d.by_id[m->nodes[i]->result->id] = m->nodes[i]->result;
    d.pos[m->nodes[i]->result->id] = i;
  }
  return d;
}

/* Defined before node `upto` (inputs, constants, results of nodes[0..upto)). */
static bool defined_before(const Defs *d, const IrValue *v, int upto) {
  if (!v || v->id < 0 || v->id >= d->count || d->by_id[v->id] != v)
    return false;
  switch (v->kind) {
  case IR_VAL_INPUT:
    return d->pos[v->id] == -1;
  case IR_VAL_CONST:
    return d->pos[v->id] == -1 && ir_const_has_data(v);
  case IR_VAL_NODE:
    return d->pos[v->id] >= 0 && d->pos[v->id] < upto;
  }
  return false;
}

/* The first definition (in order) that repeats an earlier name, or NULL:
 * one pass with a hash table, not a comparison of every pair. */
static IrValue *first_repeat(IrValue *(*def)(IrModule *, int), IrModule *m, int n) {
  SupMap seen = {0};
  IrValue *dup = NULL;
  if (!sup_map_reserve(&seen, (size_t)n))
    q8_die("out of memory");
  for (int i = 0; i < n && !dup; i++) {
    IrValue *v = def(m, i);
    if (sup_map_get(&seen, v->name))
      dup = v;
    else if (!sup_map_put(&seen, v->name, v))
      q8_die("out of memory");
  }
  sup_map_free(&seen);
  return dup;
}

/* Inputs, then node results, in order of definition. */
static IrValue *value_def(IrModule *m, int i) {
  return i < m->ninputs ? m->inputs[i] : m->nodes[i - m->ninputs]->result;
}

static IrValue *const_def(IrModule *m, int i) { return m->consts[i]; }

static bool check_names(IrModule *m) {
  const IrValue *a = first_repeat(value_def, m, m->ninputs + m->nnodes);
  if (a)
    return ir_error(&m->diag, a->loc, "value %%%s is defined twice", a->name);
  a = first_repeat(const_def, m, m->nconsts);
  if (a)
    return ir_error(&m->diag, a->loc, "constant @%s appears twice", a->name);
  return true;
}

static bool check_node(IrModule *m, const Defs *d, int idx) {
  const IrNode *n = m->nodes[idx];
  const IrOpInfo *info = &ir_op_info[n->op];
  if (n->nopnds < info->min_operands || n->nopnds > info->max_operands)
    return ir_error(&m->diag, n->loc, "%s has %d operands; it takes %d to %d", info->name,
                    n->nopnds, info->min_operands, info->max_operands);
  for (int i = 0; i < n->nopnds; i++)
    if (!defined_before(d, n->opnds[i], idx))
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

/* Nodes in order, then outputs. */
static bool check_graph(IrModule *m, const Defs *d) {
  for (int i = 0; i < m->nnodes; i++)
    if (!check_node(m, d, i) || !check_size(m, m->nodes[i]->result))
      return false;
  if (m->noutputs == 0)
    return ir_error(&m->diag, (IrLoc){0}, "model '%s' has no outputs", m->name);
  for (int i = 0; i < m->noutputs; i++)
    if (m->outputs[i]->kind == IR_VAL_CONST || !defined_before(d, m->outputs[i], m->nnodes))
      return ir_error(&m->diag, m->output_locs ? m->output_locs[i] : (IrLoc){0},
                      "output %%%s is not a value defined in the model", m->outputs[i]->name);
  return true;
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
  Defs d = index_defs(m);
  bool ok = check_graph(m, &d);
  free(d.by_id);
  free(d.pos);
  return ok && ir_check_qforms(m);
}
