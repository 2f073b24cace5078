/* named.c: the rule that makes named dims exact. A model whose shapes lead
 * with named dims (`f32[B, T, 64]`, docs/ir.md "Named dims") is computed as
 * B x T independent rows: its types hold `?` for B, bound to the product
 * B x T, and IR_DIM_FOLDED for T, bound to 1, so a [B, T, 64] tensor is the
 * same bytes as [B x T, 1, 64]. That is the model's meaning only when no
 * node mixes the rows of the prefix; ir_named_check_node refuses, when the
 * node is read, each node that would (a softmax or norm over T, attention's
 * Q K^T over T, a transpose moving T, ...), saying that such a dim is bound
 * at compile time with --dim. */
#include <stdio.h>
#include <string.h>

#include "ir.h"

/* Symbolic dims of t: whether they are exactly the first k dims. */
static bool prefixed(const IrType *t, int k, bool *any) {
  *any = false;
  for (int i = 0; i < t->rank; i++)
    *any |= ir_dim_symbolic(t->dims[i]);
  if (!*any)
    return true;
  if (t->rank < k)
    return false;
  for (int i = 0; i < t->rank; i++)
    if (ir_dim_symbolic(t->dims[i]) != (i < k))
      return false;
  return true;
}

/* The first axis of the result at which the node combines values of
 * different rows, or -1 when each row of the prefix is computed alone. */
static int mixing_axis(const IrNode *n, int k, bool *known) {
  const IrType *t = &n->result->type;
  int r = t->rank;
  *known = true;
  switch (n->op) {
  case IR_OP_SOFTMAX: {
    int64_t ax = ir_attr_int(n, IR_ATTR_AXIS, -1);
    ax = ax < 0 ? ax + r : ax;
    if (ax < k)
      return (int)ax;
    return ir_attr_int(n, IR_ATTR_CAUSAL, 0) && r - 2 < k ? r - 2 : -1;
  }
  case IR_OP_LAYERNORM:
  case IR_OP_RMSNORM:
  case IR_OP_LINEAR:
  case IR_OP_LINEAR_4BIT:
  case IR_OP_QLINEAR:
  case IR_OP_QGEMM:
  case IR_OP_QLINEAR_DYN:
  case IR_OP_QLINEAR_GRP:
    return r - 1 < k ? r - 1 : -1;
  case IR_OP_TRANSPOSE: {
    int64_t perm[IR_MAX_RANK];
    int np = ir_attr_ints(n, IR_ATTR_PERM, perm, IR_MAX_RANK);
    if (np != r)
      return r - 2 < k ? r - 2 : -1; /* swaps the last two */
    for (int i = 0; i < k; i++)
      if (perm[i] != i)
        return i;
    return -1;
  }
  case IR_OP_MATMUL:
  case IR_OP_QMATMUL:
  case IR_OP_QMATMUL_DYN: {
    const IrType *a = &n->opnds[0]->type, *b = &n->opnds[1]->type;
    bool bsym = false;
    for (int i = 0; i < b->rank; i++)
      bsym |= ir_dim_symbolic(b->dims[i]);
    if (a->rank - 1 < k)
      return r - 1;
    return bsym && b->rank - 2 < k ? r - 1 : -1;
  }
  case IR_OP_CONCAT:
  case IR_OP_SLICE:   /* infer.c refuses them along a symbolic dim */
  case IR_OP_RESHAPE: /* both sides lead with the prefix (prefixed) */
  case IR_OP_ADD:
  case IR_OP_MUL:
  case IR_OP_SUB:
  case IR_OP_DIV:
  case IR_OP_RELU:
  case IR_OP_GELU:
  case IR_OP_SIGMOID:
  case IR_OP_TANH:
  case IR_OP_SILU:
  case IR_OP_GATHER:
  case IR_OP_QUANTIZE:
  case IR_OP_DEQUANTIZE:
    return -1;
  default:
    *known = false;
    return 0;
  }
}

bool ir_named_check_node(IrModule *m, const IrNode *n) {
  int k = m->nnamed;
  if (k < 2)
    return true; /* one named dim is the batch `?` under another name */
  char b[160], t[96];
  size_t len = (size_t)snprintf(b, sizeof b, "[");
  for (int i = 0; i < k && len < sizeof b; i++)
    len += (size_t)snprintf(b + len, sizeof b - len, "%s%s", i ? ", " : "", m->named[i]);
  if (len < sizeof b)
    snprintf(b + len, sizeof b - len, "]");
  bool sym = false, any;
  for (int i = 0; i < n->nopnds; i++) {
    if (!prefixed(&n->opnds[i]->type, k, &any))
      return ir_error(&m->diag, n->loc, "%s: operand %d is %s; the named dims %s must lead it",
                      ir_op_info[n->op].name, i,
                      ir_type_str_named(m, &n->opnds[i]->type, t, sizeof t), b);
    sym |= any;
  }
  if (!sym)
    return true;
  const char *op = ir_op_info[n->op].name;
  bool known;
  int ax = mixing_axis(n, k, &known);
  if (known && ax >= 0 && ax < k)
    return ir_error(&m->diag, n->loc,
                    "%s %%%s runs along the named dim '%s' (axis %d); the named dims %s only "
                    "index independent rows: bind '%s' at compile time with --dim %s=N",
                    op, n->result->name, m->named[ax], ax, b, m->named[ax], m->named[ax]);
  if (!prefixed(&n->result->type, k, &any) || !any)
    return ir_error(&m->diag, n->loc,
                    "%s %%%s is %s: it does not keep the named dims %s as its first dims, so "
                    "it mixes their rows; bind them with --dim NAME=N",
                    op, n->result->name, ir_type_str_named(m, &n->result->type, t, sizeof t), b);
  if (!known)
    return ir_error(&m->diag, n->loc,
                    "%s %%%s: %s has no lowering over the named dims %s; bind them with --dim "
                    "NAME=N",
                    op, n->result->name, op, b);
  if (ax >= k)
    return ir_error(&m->diag, n->loc,
                    "%s %%%s runs along the named dims %s; bind them with --dim NAME=N", op,
                    n->result->name, b);
  return true;
}
