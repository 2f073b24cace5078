/* smooth_attn.c: where the smooth pass (smooth.c) can fold the division of
 * an attention output's channels: through the heads back into the V
 * projection.
 *
 * The input of attention's output projection (o_proj, c_proj, BERT's
 * attention.output.dense) is the heads merged again,
 *
 *   x = reshape(transpose(matmul(P, transpose(reshape(v)))))
 *
 * with v [.., S, C] split into H heads of hd = C / H channels and merged
 * back in the same order, so channel j of x is channel j of v in every
 * position: out[.., i, j] = sum_t P[.., h, i, t] v[.., t, j] (h = j / hd).
 * That is linear in v's channel j, so x_j / s_j = (P (v / s))_j: dividing
 * output row j of the linear that makes v (its weight row and bias) by s_j
 * divides x_j by s_j, whatever P is (softmax of Q K^T, masked or not). When
 * v is a slice of a fused QKV projection ([.., 3C] split along the last
 * axis), the rows are those of the slice. Each value in the chain must have
 * that one use, so nothing else sees the scaled values; the other slices of
 * a fused projection must not overlap v's rows. Only shape ops and the
 * matmul's right operand are crossed: the chain is checked exactly, never
 * guessed. docs/quantization.md, "Smoothing", has the rule. */
#include <stdio.h>
#include <string.h>

#include "passes.h"

/* The node that makes v when v has exactly one use, else NULL. */
static IrNode *only_def(const IrModule *m, const IrValue *v, IrOp op) {
  if (v->kind != IR_VAL_NODE || v->def->op != op || ir_count_uses(m, v) != 1 ||
      v->type.dtype != IR_F32)
    return NULL;
  return v->def;
}

/* A transpose that swaps the two axes before the last one, keeping the
 * others. */
static bool swaps_heads(const IrNode *t) {
  int r = t->opnds[0]->type.rank;
  int64_t perm[IR_MAX_RANK];
  if (r < 3 || ir_attr_ints(t, IR_ATTR_PERM, perm, IR_MAX_RANK) != r)
    return false;
  for (int i = 0; i < r; i++) {
    int64_t want = i == r - 3 ? r - 2 : i == r - 2 ? r - 3 : i;
    if (perm[i] != want)
      return false;
  }
  return true;
}

/* `flat` [lead.., C] and `split` [lead.., H, hd] with H hd = C: the last axis
 * split into heads, row-major, leading dims the same. */
static bool splits(const IrType *flat, const IrType *split, int64_t c) {
  if (split->rank != flat->rank + 1 || flat->rank < 1 || flat->dims[flat->rank - 1] != c ||
      split->dims[split->rank - 2] * split->dims[split->rank - 1] != c)
    return false;
  for (int i = 0; i < flat->rank - 1; i++)
    if (flat->dims[i] != split->dims[i])
      return false;
  return true;
}

/* [start, end) of a slice along the last axis of its operand, or false. */
static bool last_axis_slice(const IrNode *s, int64_t *start, int64_t *end) {
  const IrType *t = &s->opnds[0]->type;
  int64_t axis = ir_attr_int(s, IR_ATTR_AXIS, 0), dim = t->dims[t->rank - 1];
  if (axis != -1 && axis != t->rank - 1)
    return false;
  int64_t a = ir_attr_int(s, IR_ATTR_START, 0), b = ir_attr_int(s, IR_ATTR_END, dim);
  a = a < 0 ? a + dim : a;
  b = b < 0 ? b + dim : b;
  a = a < 0 ? 0 : a > dim ? dim : a;
  b = b < 0 ? 0 : b > dim ? dim : b;
  *start = a;
  *end = b;
  return a < b;
}

/* A linear (or matmul by a constant) with a constant f32 weight whose
 * outputs [off, off + c) exist, and a constant bias if any. */
static bool scalable(const IrNode *p, int64_t off, int64_t c) {
  if ((p->op != IR_OP_LINEAR && p->op != IR_OP_MATMUL) || p->nopnds < 2)
    return false;
  const IrValue *w = p->opnds[1];
  if (w->kind != IR_VAL_CONST || w->literal || w->type.dtype != IR_F32 || w->type.rank != 2)
    return false;
  int64_t nout = w->type.dims[p->op == IR_OP_LINEAR ? 0 : 1];
  if (off + c > nout)
    return false;
  if (p->nopnds > 2) {
    const IrValue *b = p->opnds[2];
    if (p->op != IR_OP_LINEAR || b->kind != IR_VAL_CONST || b->literal ||
        b->type.dtype != IR_F32 || b->type.rank != 1 || b->type.dims[0] != nout)
      return false;
  }
  return true;
}

IrNode *pass_smooth_through_attention(const IrModule *m, const IrValue *x, int64_t c,
                                      int64_t *off) {
  /* x = reshape(a), a [.., S, H, hd] */
  if (x->kind != IR_VAL_NODE || x->def->op != IR_OP_RESHAPE)
    return NULL;
  IrNode *t1 = only_def(m, x->def->opnds[0], IR_OP_TRANSPOSE);
  if (!t1 || !splits(&x->type, &t1->result->type, c) || !swaps_heads(t1))
    return NULL;
  /* a = transpose(o), o = matmul(P, vt) [.., H, S, hd] */
  IrNode *mm = only_def(m, t1->opnds[0], IR_OP_MATMUL);
  if (!mm || mm->opnds[0] == mm->opnds[1])
    return NULL;
  IrNode *t2 = only_def(m, mm->opnds[1], IR_OP_TRANSPOSE);
  if (!t2 || !swaps_heads(t2))
    return NULL;
  /* vt = transpose(vh), vh = reshape(v) [.., S, H, hd], the heads of x */
  IrNode *r2 = only_def(m, t2->opnds[0], IR_OP_RESHAPE);
  const IrType *vh = r2 ? &r2->result->type : NULL;
  const IrType *ah = &t1->result->type;
  if (!r2 || vh->rank != ah->rank || vh->dims[vh->rank - 1] != ah->dims[ah->rank - 1] ||
      vh->dims[vh->rank - 2] != ah->dims[ah->rank - 2] || !splits(&r2->opnds[0]->type, vh, c))
    return NULL;
  /* v = linear(..) with c outputs, or a slice of one along the last axis */
  const IrValue *v = r2->opnds[0];
  if (v->kind != IR_VAL_NODE || ir_count_uses(m, v) != 1 || v->type.dtype != IR_F32)
    return NULL;
  IrNode *p = v->def;
  *off = 0;
  if (p->op == IR_OP_SLICE) {
    int64_t a, b;
    const IrValue *qkv = p->opnds[0];
    if (!last_axis_slice(p, &a, &b) || b - a != c || qkv->kind != IR_VAL_NODE ||
        qkv->type.dtype != IR_F32)
      return NULL;
    /* Every other use of the fused projection: a slice of other rows. */
    int uses = 0;
    for (int i = 0; i < m->nnodes; i++) {
      const IrNode *u = m->nodes[i];
      for (int k = 0; k < u->nopnds; k++) {
        if (u->opnds[k] != qkv)
          continue;
        int64_t ua, ub;
        if (u != p && (u->op != IR_OP_SLICE || k != 0 || !last_axis_slice(u, &ua, &ub) ||
                       (ua < b && a < ub)))
          return NULL;
        uses++;
      }
    }
    if (uses != ir_count_uses(m, qkv)) /* a model output */
      return NULL;
    *off = a;
    p = qkv->def;
  }
  return scalable(p, *off, c) ? p : NULL;
}
