/* infer.c: shape inference, one function per op (infer_<name>, named in
 * ops.def), each computing the result type from the operand types and
 * checking that the operands fit the op.
 *
 * `?` (IR_DIM_BATCH) is one symbol, the batch size: two dims match when both
 * are `?` or both are the same number. A mismatch is reported at the operand
 * that does not fit, naming both shapes, because that is what a user needs to
 * find the wrong tensor. */
#include <float.h>
#include <math.h>
#include <stdio.h>

#include "ir.h"

typedef bool InferFn(IrModule *m, const IrNode *n, IrType *out);

/* Where operand `i` is written, falling back to the op keyword. */
static IrLoc opnd_loc(const IrNode *n, int i) {
  return n->opnd_locs && i < n->nopnds ? n->opnd_locs[i] : n->loc;
}

/* "%x" or "@w", for messages. */
static const char *sigil(const IrValue *v) { return v->kind == IR_VAL_CONST ? "@" : "%"; }

static const char *tstr(const IrType *t, char *buf) { return ir_type_str(t, buf, 96); }

static const char *dim_str(int64_t d, char *buf) {
  if (ir_dim_symbolic(d))
    snprintf(buf, 24, "?");
  else
    snprintf(buf, 24, "%lld", (long long)d);
  return buf;
}

static bool need_f32(IrModule *m, const IrNode *n, int i) {
  const IrValue *v = n->opnds[i];
  char b[96];
  if (v->type.dtype == IR_F32)
    return true;
  return ir_error(&m->diag, opnd_loc(n, i), "%s expects f32 operands, but %s%s is %s",
                  ir_op_info[n->op].name, sigil(v), v->name, tstr(&v->type, b));
}

static bool need_rank(IrModule *m, const IrNode *n, int i, int lo, int hi, const char *what) {
  const IrValue *v = n->opnds[i];
  char b[96];
  if (v->type.rank >= lo && v->type.rank <= hi)
    return true;
  return ir_error(&m->diag, opnd_loc(n, i), "%s: %s %s%s must be %s, but it is %s",
                  ir_op_info[n->op].name, what, sigil(v), v->name,
                  lo == hi ? (lo == 1 ? "a vector" : "a matrix") : "at least a matrix",
                  tstr(&v->type, b));
}

static bool all_f32(IrModule *m, const IrNode *n) {
  for (int i = 0; i < n->nopnds; i++)
    if (!need_f32(m, n, i))
      return false;
  return true;
}

static bool infer_linear(IrModule *m, const IrNode *n, IrType *out) {
  if (!all_f32(m, n) || !need_rank(m, n, 0, 1, IR_MAX_RANK, "input") ||
      !need_rank(m, n, 1, 2, 2, "weight"))
    return false;
  const IrValue *x = n->opnds[0], *w = n->opnds[1];
  int64_t k = x->type.dims[x->type.rank - 1], wn = w->type.dims[0], wk = w->type.dims[1];
  char b1[96], b2[96], d[24];
  if (k != wk)
    return ir_error(&m->diag, opnd_loc(n, 1),
                    "linear: input %s%s is %s (%s features) but weight %s%s is %s "
                    "(%lld input features; W is [out, in])",
                    sigil(x), x->name, tstr(&x->type, b1), dim_str(k, d), sigil(w), w->name,
                    tstr(&w->type, b2), (long long)wk);
  if (n->nopnds == 3) {
    const IrValue *bias = n->opnds[2];
    if (bias->type.rank != 1 || bias->type.dims[0] != wn)
      return ir_error(&m->diag, opnd_loc(n, 2),
                      "linear: bias %s%s is %s but weight %s%s has %lld output features",
                      sigil(bias), bias->name, tstr(&bias->type, b1), sigil(w), w->name,
                      (long long)wn);
  }
  *out = x->type;
  out->dims[out->rank - 1] = wn;
  return true;
}

/* "at axis 2, 8 and 16 differ and neither is 1": why two shapes do not
 * broadcast, at axis `axis` of the result (rank `rank`). */
static const char *broadcast_why(const int64_t *a, int ra, const int64_t *b, int rb, int rank,
                                 int axis, char *buf, size_t size) {
  int from_end = rank - axis;
  int64_t da = a[ra - from_end], db = b[rb - from_end];
  char d1[24], d2[24];
  snprintf(buf, size, "at axis %d, %s and %s differ and neither is 1%s", axis, dim_str(da, d1),
           dim_str(db, d2),
           ir_dim_symbolic(da) || ir_dim_symbolic(db) ? " ('?' broadcasts only with '?' or 1)"
                                                    : "");
  return buf;
}

/* A[..., M, K] x B[..., K, N]: the leading (batch) dims broadcast as numpy's
 * matmul does; B[K, N] is one matrix for every batch index of A. */
static bool infer_matmul(IrModule *m, const IrNode *n, IrType *out) {
  if (!all_f32(m, n) || !need_rank(m, n, 0, 2, IR_MAX_RANK, "left operand") ||
      !need_rank(m, n, 1, 2, IR_MAX_RANK, "right operand"))
    return false;
  const IrType *a = &n->opnds[0]->type, *b = &n->opnds[1]->type;
  char b1[96], b2[96], d1[24], d2[24], why[160];
  int64_t k = a->dims[a->rank - 1], bk = b->dims[b->rank - 2];
  if (k != bk)
    return ir_error(&m->diag, opnd_loc(n, 1),
                    "matmul: %s%s is %s with K = %s but %s%s is %s with K = %s",
                    sigil(n->opnds[0]), n->opnds[0]->name, tstr(a, b1), dim_str(k, d1),
                    sigil(n->opnds[1]), n->opnds[1]->name, tstr(b, b2), dim_str(bk, d2));
  int rank, axis;
  *out = *a;
  if (!ir_broadcast_dims(a->dims, a->rank - 2, b->dims, b->rank - 2, out->dims, &rank, &axis))
    return ir_error(&m->diag, opnd_loc(n, 1),
                    "matmul: the batch dims of %s%s (%s) and %s%s (%s) do not broadcast: %s",
                    sigil(n->opnds[0]), n->opnds[0]->name, tstr(a, b1), sigil(n->opnds[1]),
                    n->opnds[1]->name, tstr(b, b2),
                    broadcast_why(a->dims, a->rank - 2, b->dims, b->rank - 2, rank, axis, why,
                                  sizeof why));
  out->rank = rank + 2;
  out->dims[rank] = a->dims[a->rank - 2];
  out->dims[rank + 1] = b->dims[b->rank - 1];
  return true;
}

/* Elementwise binary ops: numpy broadcasting (ir_broadcast_dims). */
static bool infer_broadcast(IrModule *m, const IrNode *n, IrType *out) {
  if (!all_f32(m, n))
    return false;
  const IrType *a = &n->opnds[0]->type, *b = &n->opnds[1]->type;
  int axis;
  *out = *a;
  if (!ir_broadcast_dims(a->dims, a->rank, b->dims, b->rank, out->dims, &out->rank, &axis)) {
    char b1[96], b2[96], why[160];
    return ir_error(&m->diag, opnd_loc(n, 1),
                    "%s: shapes %s (%s%s) and %s (%s%s) do not broadcast: %s",
                    ir_op_info[n->op].name, tstr(a, b1), sigil(n->opnds[0]), n->opnds[0]->name,
                    tstr(b, b2), sigil(n->opnds[1]), n->opnds[1]->name,
                    broadcast_why(a->dims, a->rank, b->dims, b->rank, out->rank, axis, why,
                                  sizeof why));
  }
  return true;
}

static bool infer_add(IrModule *m, const IrNode *n, IrType *out) { return infer_broadcast(m, n, out); }
static bool infer_mul(IrModule *m, const IrNode *n, IrType *out) { return infer_broadcast(m, n, out); }

static bool infer_unary(IrModule *m, const IrNode *n, IrType *out) {
  if (!all_f32(m, n))
    return false;
  *out = n->opnds[0]->type;
  return true;
}

static bool infer_relu(IrModule *m, const IrNode *n, IrType *out) { return infer_unary(m, n, out); }
static bool infer_gelu(IrModule *m, const IrNode *n, IrType *out) { return infer_unary(m, n, out); }

static bool softmax_attrs(IrModule *m, const IrNode *n);
static bool need_dtype(IrModule *m, const IrNode *n, int i, bool (*ok)(IrDType), const char *what);

static bool infer_softmax(IrModule *m, const IrNode *n, IrType *out) {
  return need_rank(m, n, 0, 1, IR_MAX_RANK, "input") && infer_unary(m, n, out) &&
         softmax_attrs(m, n);
}

static bool infer_layernorm(IrModule *m, const IrNode *n, IrType *out) {
  if (!all_f32(m, n) || !need_rank(m, n, 0, 1, IR_MAX_RANK, "input"))
    return false;
  const IrType *x = &n->opnds[0]->type;
  int64_t d = x->dims[x->rank - 1];
  for (int i = 1; i <= 2; i++) {
    const IrValue *p = n->opnds[i];
    if (p->type.rank != 1 || p->type.dims[0] != d) {
      char b1[96], b2[96];
      return ir_error(&m->diag, opnd_loc(n, i),
                      "layernorm: %s %s%s is %s but the input %s%s is %s; it must be [%lld]",
                      i == 1 ? "gamma" : "beta", sigil(p), p->name, tstr(&p->type, b1),
                      sigil(n->opnds[0]), n->opnds[0]->name, tstr(x, b2), (long long)d);
    }
  }
  if (ir_has_attr(n, IR_ATTR_EPS) && !(ir_attr_float(n, IR_ATTR_EPS, 0) >= 0))
    return ir_error(&m->diag, ir_attr_loc(n, IR_ATTR_EPS),
                    "layernorm: eps must be a non-negative number");
  *out = *x;
  return true;
}

static bool infer_transpose(IrModule *m, const IrNode *n, IrType *out) {
  if (!all_f32(m, n))
    return false;
  const IrType *x = &n->opnds[0]->type;
  int64_t perm[IR_MAX_RANK];
  int nperm = ir_attr_ints(n, IR_ATTR_PERM, perm, IR_MAX_RANK);
  IrLoc perm_at = ir_attr_loc(n, IR_ATTR_PERM);
  *out = *x;
  if (nperm < 0) {
    if (x->rank < 2)
      return need_rank(m, n, 0, 2, IR_MAX_RANK, "input");
    out->dims[x->rank - 2] = x->dims[x->rank - 1];
    out->dims[x->rank - 1] = x->dims[x->rank - 2];
    return true;
  }
  if (nperm != x->rank)
    return ir_error(&m->diag, perm_at, "transpose: perm has %d entries but the input has rank %d",
                    nperm, x->rank);
  bool seen[IR_MAX_RANK] = {false};
  for (int i = 0; i < nperm; i++) {
    int64_t p = perm[i];
    if (p < 0 || p >= x->rank || seen[p])
      return ir_error(&m->diag, perm_at,
                      "transpose: perm must list each axis 0..%d exactly once", x->rank - 1);
    seen[p] = true;
    out->dims[i] = x->dims[p];
  }
  return true;
}

/* Element count as batch^nbatch * rest, so shapes with `?` compare exactly. */
static bool count_elems(const int64_t *dims, int rank, int *nbatch, int64_t *rest) {
  *nbatch = 0;
  *rest = 1;
  for (int i = 0; i < rank; i++) {
    if (dims[i] == IR_DIM_BATCH) {
      ++*nbatch;
    } else if (dims[i] == IR_DIM_FOLDED) {
      *nbatch += 16; /* its own symbol: counted apart from `?` */
    } else {
      if (dims[i] < 0 || (dims[i] && *rest > INT64_MAX / dims[i]))
        return false;
      *rest *= dims[i];
    }
  }
  return true;
}

/* A reshape's shape as written: "[?, 3, -1]". */
static const char *shape_str(const int64_t *shape, int rank, char *buf) {
  size_t len = (size_t)snprintf(buf, 96, "[");
  for (int i = 0; i < rank && len < 96; i++) {
    char d[24];
    len += (size_t)snprintf(buf + len, 96 - len, "%s%s", i ? ", " : "",
                            shape[i] == IR_DIM_INFER ? "-1" : dim_str(shape[i], d));
  }
  if (len < 96)
    snprintf(buf + len, 96 - len, "]");
  return buf;
}

static bool infer_reshape(IrModule *m, const IrNode *n, IrType *out) {
  if (!all_f32(m, n))
    return false;
  const IrType *x = &n->opnds[0]->type;
  int64_t shape[IR_MAX_RANK];
  int rank = ir_attr_ints(n, IR_ATTR_SHAPE, shape, IR_MAX_RANK);
  IrLoc shape_at = ir_attr_loc(n, IR_ATTR_SHAPE);
  if (rank < 0)
    return ir_error(&m->diag, n->loc, "reshape needs a {shape = [...]} attribute");
  if (rank > IR_MAX_RANK)
    return ir_error(&m->diag, shape_at, "reshape: rank %d exceeds the maximum of %d", rank,
                    IR_MAX_RANK);
  *out = *x;
  out->rank = rank;
  int infer_at = -1;
  for (int i = 0; i < rank; i++) {
    out->dims[i] = shape[i] == IR_DIM_INFER ? 1 : shape[i];
    if (shape[i] == IR_DIM_INFER && infer_at >= 0)
      return ir_error(&m->diag, shape_at, "reshape: only one dimension may be -1");
    if (shape[i] == IR_DIM_INFER)
      infer_at = i;
  }
  int xb, ob;
  int64_t xr, or;
  char b1[96], b2[96];
  /* -1: the element count of x over the product of the other dims, which
   * must divide it (the `?` count must match either way). */
  if (infer_at >= 0) {
    if (!count_elems(x->dims, x->rank, &xb, &xr) || !count_elems(out->dims, out->rank, &ob, &or) ||
        or <= 0 || xr % or != 0 || xr / or <= 0)
      return ir_error(&m->diag, shape_at,
                      "reshape: %s%s is %s; no size for the -1 in %s makes the element counts "
                      "equal",
                      sigil(n->opnds[0]), n->opnds[0]->name, tstr(x, b1),
                      shape_str(shape, rank, b2));
    out->dims[infer_at] = xr / or;
  }
  if (!count_elems(x->dims, x->rank, &xb, &xr) || !count_elems(out->dims, out->rank, &ob, &or) ||
      xb != ob || xr != or)
    return ir_error(&m->diag, shape_at,
                    "reshape: %s%s is %s, which cannot be reshaped to %s (element counts differ)",
                    sigil(n->opnds[0]), n->opnds[0]->name, tstr(x, b1), tstr(out, b2));
  return true;
}

/* ---- the transformer ops ---- */

static bool infer_sub(IrModule *m, const IrNode *n, IrType *out) { return infer_broadcast(m, n, out); }
static bool infer_div(IrModule *m, const IrNode *n, IrType *out) { return infer_broadcast(m, n, out); }
static bool infer_sigmoid(IrModule *m, const IrNode *n, IrType *out) { return infer_unary(m, n, out); }
static bool infer_tanh(IrModule *m, const IrNode *n, IrType *out) { return infer_unary(m, n, out); }
static bool infer_silu(IrModule *m, const IrNode *n, IrType *out) { return infer_unary(m, n, out); }

/* ---- shape ops of transformers: gather, rmsnorm, concat, slice; softmax's
 * axis and causal mask ---- */

/* The `axis` attribute (default `dflt`) as an index in [0, rank): negative
 * counts from the end, as numpy. */
static bool read_axis(IrModule *m, const IrNode *n, int rank, int64_t dflt, int *axis) {
  int64_t a = ir_attr_int(n, IR_ATTR_AXIS, dflt);
  if (a < -rank || a >= rank)
    return ir_error(&m->diag, ir_attr_loc(n, IR_ATTR_AXIS),
                    "%s: axis %lld is out of range for rank %d (it must be in [%d, %d])",
                    ir_op_info[n->op].name, (long long)a, rank, -rank, rank - 1);
  *axis = (int)(a < 0 ? a + rank : a);
  return true;
}

/* f32, i32 or i64: the element types the data-movement ops carry. */
static bool is_plain(IrDType t) { return t == IR_F32 || t == IR_I32 || t == IR_I64; }
static bool is_index(IrDType t) { return t == IR_I32 || t == IR_I64; }

/* axis and causal; causal masks over the last axis and needs at least as
 * many keys (columns) as queries (rows): the extra keys are a past. */
static bool softmax_attrs(IrModule *m, const IrNode *n) {
  const IrType *x = &n->opnds[0]->type;
  int axis;
  if (!read_axis(m, n, x->rank, -1, &axis))
    return false;
  int64_t causal = ir_attr_int(n, IR_ATTR_CAUSAL, 0);
  if (causal != 0 && causal != 1)
    return ir_error(&m->diag, ir_attr_loc(n, IR_ATTR_CAUSAL), "softmax: causal must be 0 or 1");
  if (!causal)
    return true;
  char b[96];
  if (axis != x->rank - 1 || x->rank < 2)
    return ir_error(&m->diag, ir_attr_loc(n, IR_ATTR_CAUSAL),
                    "softmax: causal masks over the last axis of a [..., queries, keys] input, "
                    "but %s%s is %s with axis %d",
                    sigil(n->opnds[0]), n->opnds[0]->name, tstr(x, b), axis);
  int64_t rows = x->dims[x->rank - 2], cols = x->dims[x->rank - 1];
  if (rows != cols && (ir_dim_symbolic(rows) || ir_dim_symbolic(cols) || cols < rows))
    return ir_error(&m->diag, ir_attr_loc(n, IR_ATTR_CAUSAL),
                    "softmax: causal needs at least as many keys (last dim) as queries "
                    "(the dim before), but %s%s is %s",
                    sigil(n->opnds[0]), n->opnds[0]->name, tstr(x, b));
  return true;
}

static bool infer_gather(IrModule *m, const IrNode *n, IrType *out) {
  const IrValue *t = n->opnds[0], *ids = n->opnds[1];
  char b1[96];
  if (!need_f32(m, n, 0) || !need_rank(m, n, 0, 2, 2, "table") ||
      !need_dtype(m, n, 1, is_index, "i32 or i64"))
    return false;
  if (ir_dim_symbolic(t->type.dims[0]) || ir_dim_symbolic(t->type.dims[1]))
    return ir_error(&m->diag, opnd_loc(n, 0), "gather: table %s%s is %s; it must be [V, D]",
                    sigil(t), t->name, tstr(&t->type, b1));
  if (ids->type.rank + 1 > IR_MAX_RANK)
    return ir_error(&m->diag, opnd_loc(n, 1),
                    "gather: ids %s%s is %s; the result would have more than %d dims",
                    sigil(ids), ids->name, tstr(&ids->type, b1), IR_MAX_RANK);
  *out = ids->type;
  out->dtype = IR_F32;
  out->dims[out->rank++] = t->type.dims[1];
  return true;
}

static bool infer_rmsnorm(IrModule *m, const IrNode *n, IrType *out) {
  if (!all_f32(m, n) || !need_rank(m, n, 0, 1, IR_MAX_RANK, "input"))
    return false;
  const IrType *x = &n->opnds[0]->type;
  const IrValue *g = n->opnds[1];
  int64_t d = x->dims[x->rank - 1];
  char b1[96], b2[96], ds[24];
  if (g->type.rank != 1 || g->type.dims[0] != d)
    return ir_error(&m->diag, opnd_loc(n, 1),
                    "rmsnorm: gamma %s%s is %s but the input %s%s is %s; it must be [%s]",
                    sigil(g), g->name, tstr(&g->type, b1), sigil(n->opnds[0]),
                    n->opnds[0]->name, tstr(x, b2), dim_str(d, ds));
  if (ir_has_attr(n, IR_ATTR_EPS) && !(ir_attr_float(n, IR_ATTR_EPS, 0) >= 0))
    return ir_error(&m->diag, ir_attr_loc(n, IR_ATTR_EPS),
                    "rmsnorm: eps must be a non-negative number");
  *out = *x;
  return true;
}

static bool infer_concat(IrModule *m, const IrNode *n, IrType *out) {
  const IrValue *x0 = n->opnds[0];
  char b1[96], b2[96];
  if (!need_dtype(m, n, 0, is_plain, "f32, i32 or i64") ||
      !need_rank(m, n, 0, 1, IR_MAX_RANK, "input"))
    return false;
  int axis;
  if (!read_axis(m, n, x0->type.rank, -1, &axis))
    return false;
  *out = x0->type;
  for (int i = 0; i < n->nopnds; i++) {
    const IrValue *v = n->opnds[i];
    if (ir_dim_symbolic(v->type.dims[axis]))
      return ir_error(&m->diag, opnd_loc(n, i),
                      "concat: %s%s is %s; it cannot be joined along the batch dim '?'",
                      sigil(v), v->name, tstr(&v->type, b1));
    bool fits = v->type.dtype == x0->type.dtype && v->type.rank == x0->type.rank;
    for (int d = 0; fits && d < x0->type.rank; d++)
      fits = d == axis || v->type.dims[d] == x0->type.dims[d];
    if (!fits)
      return ir_error(&m->diag, opnd_loc(n, i),
                      "concat: %s%s is %s but %s%s is %s; they must have one dtype and rank "
                      "and equal dims except along axis %d",
                      sigil(v), v->name, tstr(&v->type, b1), sigil(x0), x0->name,
                      tstr(&x0->type, b2), axis);
    if (i)
      out->dims[axis] += v->type.dims[axis];
  }
  return true;
}

void ir_slice_bounds(int64_t dim, int64_t start, int64_t end, int64_t *lo, int64_t *hi) {
  start = start < 0 ? start + dim : start;
  end = end < 0 ? end + dim : end;
  *lo = start < 0 ? 0 : start > dim ? dim : start;
  *hi = end < *lo ? *lo : end > dim ? dim : end;
}

static bool infer_slice(IrModule *m, const IrNode *n, IrType *out) {
  const IrValue *x = n->opnds[0];
  char b1[96];
  if (!need_dtype(m, n, 0, is_plain, "f32, i32 or i64") ||
      !need_rank(m, n, 0, 1, IR_MAX_RANK, "input"))
    return false;
  if (!ir_has_attr(n, IR_ATTR_AXIS))
    return ir_error(&m->diag, n->loc, "slice needs the attribute 'axis'");
  int axis;
  if (!read_axis(m, n, x->type.rank, 0, &axis))
    return false;
  int64_t dim = x->type.dims[axis], lo, hi;
  if (ir_dim_symbolic(dim))
    return ir_error(&m->diag, ir_attr_loc(n, IR_ATTR_AXIS),
                    "slice: axis %d of %s%s (%s) is the batch dim '?', which cannot be sliced",
                    axis, sigil(x), x->name, tstr(&x->type, b1));
  ir_slice_bounds(dim, ir_attr_int(n, IR_ATTR_START, 0), ir_attr_int(n, IR_ATTR_END, INT64_MAX),
               &lo, &hi);
  if (hi <= lo)
    return ir_error(&m->diag, n->loc,
                    "slice: [%lld:%lld] of axis %d of %s%s (%s) is empty",
                    (long long)ir_attr_int(n, IR_ATTR_START, 0),
                    (long long)ir_attr_int(n, IR_ATTR_END, dim), axis, sigil(x), x->name,
                    tstr(&x->type, b1));
  *out = x->type;
  out->dims[axis] = hi - lo;
  return true;
}

/* ---- quantized ops ---- */

static bool need_attr(IrModule *m, const IrNode *n, IrAttrKey key) {
  if (ir_has_attr(n, key))
    return true;
  return ir_error(&m->diag, n->loc, "%s needs the attribute '%s'", ir_op_info[n->op].name,
                  ir_attr_info[key].key);
}


/* scale > 0 and a zero point inside the type's range, when present. */
static bool check_qparams(IrModule *m, const IrNode *n, IrAttrKey scale_key, IrAttrKey zp_key,
                          IrDType dtype) {
  double scale = ir_attr_float(n, scale_key, 1);
  if (!(scale > 0 && isfinite(scale)))
    return ir_error(&m->diag, ir_attr_loc(n, scale_key), "%s must be a positive finite number",
                    ir_attr_info[scale_key].key);
  if (ir_has_attr(n, zp_key) && ir_dtype_is_quantized(dtype)) {
    int32_t lo, hi;
    int64_t zp = ir_attr_int(n, zp_key, 0);
    ir_qbounds(dtype, &lo, &hi);
    if (zp < lo || zp > hi)
      return ir_error(&m->diag, ir_attr_loc(n, zp_key), "%s %lld is outside %s's range [%d, %d]",
                      ir_attr_info[zp_key].key, (long long)zp, ir_dtype_name(dtype), lo, hi);
  }
  return true;
}

static IrDType attr_dtype(const IrNode *n, IrAttrKey key) {
  return ir_attr_dtype(n, key, IR_DTYPE_NONE);
}

static bool need_dtype(IrModule *m, const IrNode *n, int i, bool (*ok)(IrDType), const char *what) {
  const IrValue *v = n->opnds[i];
  char b[96];
  if (ok(v->type.dtype))
    return true;
  return ir_error(&m->diag, opnd_loc(n, i), "%s: %s %s%s must be %s, but it is %s",
                  ir_op_info[n->op].name, i == 0 ? "input" : "operand", sigil(v), v->name, what,
                  tstr(&v->type, b));
}

static bool is_f32(IrDType t) { return t == IR_F32; }
static bool is_i8(IrDType t) { return t == IR_I8; }
static bool is_i32(IrDType t) { return t == IR_I32; }
static bool is_qin(IrDType t) { return t == IR_F32 || ir_dtype_is_quantized(t); }

static bool infer_quantize(IrModule *m, const IrNode *n, IrType *out) {
  if (!need_dtype(m, n, 0, is_f32, "f32") || !need_attr(m, n, IR_ATTR_SCALE) ||
      !need_attr(m, n, IR_ATTR_ZERO_POINT) || !need_attr(m, n, IR_ATTR_DTYPE))
    return false;
  IrDType t = attr_dtype(n, IR_ATTR_DTYPE);
  if (!ir_dtype_is_quantized(t))
    return ir_error(&m->diag, ir_attr_loc(n, IR_ATTR_DTYPE),
                    "quantize: dtype must be u8 or i8");
  if (!check_qparams(m, n, IR_ATTR_SCALE, IR_ATTR_ZERO_POINT, t))
    return false;
  *out = n->opnds[0]->type;
  out->dtype = t;
  return true;
}

static bool infer_dequantize(IrModule *m, const IrNode *n, IrType *out) {
  if (!need_dtype(m, n, 0, ir_dtype_is_quantized, "u8 or i8") ||
      !need_attr(m, n, IR_ATTR_SCALE) ||
      !need_attr(m, n, IR_ATTR_ZERO_POINT) ||
      !check_qparams(m, n, IR_ATTR_SCALE, IR_ATTR_ZERO_POINT, n->opnds[0]->type.dtype))
    return false;
  *out = n->opnds[0]->type;
  out->dtype = IR_F32;
  return true;
}

/* The shared shape rule of the quantized linear ops: x[..., K] and Wq[N, K]
 * give [..., N]; operand `vec` (and `vec2` if >= 0) are per-channel vectors of
 * N entries (or 1 when `allow_one`). */
static bool infer_qlinear_shape(IrModule *m, const IrNode *n, int vec, bool allow_one,
                                IrType *out) {
  if (!need_rank(m, n, 0, 1, IR_MAX_RANK, "input") || !need_rank(m, n, 1, 2, 2, "weight") ||
      !need_dtype(m, n, 1, is_i8, "i8"))
    return false;
  const IrValue *x = n->opnds[0], *w = n->opnds[1];
  int64_t k = x->type.dims[x->type.rank - 1], wn = w->type.dims[0];
  char b1[96], b2[96];
  if (k != w->type.dims[1])
    return ir_error(&m->diag, opnd_loc(n, 1),
                    "%s: input %s%s is %s but weight %s%s is %s (W is [out, in])",
                    ir_op_info[n->op].name, sigil(x), x->name, tstr(&x->type, b1), sigil(w),
                    w->name, tstr(&w->type, b2));
  for (int i = vec; i < n->nopnds; i++) {
    const IrValue *v = n->opnds[i];
    bool one = allow_one && i == vec && v->type.dims[0] == 1;
    if (v->type.rank != 1 || (v->type.dims[0] != wn && !one))
      return ir_error(&m->diag, opnd_loc(n, i), "%s: %s%s is %s but must be [%lld]%s",
                      ir_op_info[n->op].name, sigil(v), v->name, tstr(&v->type, b1),
                      (long long)wn, i == vec && allow_one ? " or [1]" : "");
  }
  *out = x->type;
  out->dims[out->rank - 1] = wn;
  return true;
}

/* Input and output parameters of qlinear and qgemm. */
static bool check_q_io(IrModule *m, const IrNode *n, bool need_x_params, IrType *out) {
  IrDType xt = n->opnds[0]->type.dtype;
  if (need_x_params && (!need_attr(m, n, IR_ATTR_X_SCALE) ||
                        !need_attr(m, n, IR_ATTR_X_ZERO_POINT) || !need_attr(m, n, IR_ATTR_X_DTYPE)))
    return false;
  IrDType xq = attr_dtype(n, IR_ATTR_X_DTYPE);
  if (xq != IR_DTYPE_NONE && (!ir_dtype_is_quantized(xq) || (xt != IR_F32 && xt != xq)))
    return ir_error(&m->diag, ir_attr_loc(n, IR_ATTR_X_DTYPE),
                    "%s: x_dtype must be u8 or i8%s", ir_op_info[n->op].name,
                    xt != IR_F32 ? " and match the input's type" : "");
  if (!check_qparams(m, n, IR_ATTR_X_SCALE, IR_ATTR_X_ZERO_POINT, xq != IR_DTYPE_NONE ? xq : xt))
    return false;
  if (!need_attr(m, n, IR_ATTR_DTYPE))
    return false;
  IrDType yt = attr_dtype(n, IR_ATTR_DTYPE);
  if (yt != IR_F32 && !ir_dtype_is_quantized(yt))
    return ir_error(&m->diag, ir_attr_loc(n, IR_ATTR_DTYPE),
                    "%s: dtype must be u8, i8 or f32", ir_op_info[n->op].name);
  if (ir_dtype_is_quantized(yt) &&
      (!need_attr(m, n, IR_ATTR_SCALE) || !need_attr(m, n, IR_ATTR_ZERO_POINT)))
    return false;
  if (!check_qparams(m, n, IR_ATTR_SCALE, IR_ATTR_ZERO_POINT, yt))
    return false;
  int64_t relu = ir_attr_int(n, IR_ATTR_RELU, 0);
  if (relu != 0 && relu != 1)
    return ir_error(&m->diag, ir_attr_loc(n, IR_ATTR_RELU), "relu must be 0 or 1");
  out->dtype = yt;
  return true;
}

static bool infer_qlinear(IrModule *m, const IrNode *n, IrType *out) {
  return need_dtype(m, n, 0, is_qin, "f32, u8 or i8") &&
         need_dtype(m, n, 2, is_f32, "f32") &&
         (n->nopnds < 4 || need_dtype(m, n, 3, is_f32, "f32")) &&
         infer_qlinear_shape(m, n, 2, true, out) && check_q_io(m, n, true, out);
}

static bool infer_qgemm(IrModule *m, const IrNode *n, IrType *out) {
  return need_dtype(m, n, 0, is_qin, "f32, u8 or i8") &&
         need_dtype(m, n, 2, is_i32, "i32") && need_dtype(m, n, 3, is_f32, "f32") &&
         infer_qlinear_shape(m, n, 2, false, out) &&
         check_q_io(m, n, n->opnds[0]->type.dtype == IR_F32, out);
}

/* w_zero_point belongs to ONNX's form only ({granularity = tensor}: the
 * importer's), and lies in [-128, 127]. */
static bool qlinear_dyn_attrs(IrModule *m, const IrNode *n) {
  if (!ir_has_attr(n, IR_ATTR_W_ZERO_POINT))
    return true;
  int64_t z = ir_attr_int(n, IR_ATTR_W_ZERO_POINT, 0);
  if (ir_attr_name(n, IR_ATTR_GRANULARITY, IR_DYN_ROW) != IR_DYN_TENSOR)
    return ir_error(&m->diag, n->loc, "qlinear_dyn: w_zero_point needs {granularity = tensor}");
  if (z < -128 || z > 127)
    return ir_error(&m->diag, n->loc, "qlinear_dyn: w_zero_point %lld is outside [-128, 127]",
                    (long long)z);
  return true;
}

static bool infer_qlinear_dyn(IrModule *m, const IrNode *n, IrType *out) {
  return qlinear_dyn_attrs(m, n) && need_dtype(m, n, 0, is_f32, "f32") &&
         need_dtype(m, n, 2, is_f32, "f32") &&
         (n->nopnds < 4 || need_dtype(m, n, 3, is_f32, "f32")) &&
         infer_qlinear_shape(m, n, 2, true, out);
}

/* qlinear_outl x, Wq, w_scale, Wt, [b]: qlinear_dyn's checks on the
 * operands without Wt, then Wt f32 [K, N] (W^T) and a positive finite
 * threshold. */
static bool infer_qlinear_outl(IrModule *m, const IrNode *n, IrType *out) {
  IrValue *ops[4];
  IrLoc locs[4];
  IrNode view = *n;
  view.nopnds = 0;
  for (int i = 0; i < n->nopnds; i++)
    if (i != 3) {
      locs[view.nopnds] = opnd_loc(n, i);
      ops[view.nopnds++] = n->opnds[i];
    }
  view.opnds = ops;
  view.opnd_locs = locs;
  if (!infer_qlinear_dyn(m, &view, out) || !need_dtype(m, n, 3, is_f32, "f32") ||
      !need_attr(m, n, IR_ATTR_THRESHOLD))
    return false;
  const IrValue *w = n->opnds[1], *wt = n->opnds[3];
  char b1[96], b2[96];
  if (wt->type.rank != 2 || wt->type.dims[0] != w->type.dims[1] ||
      wt->type.dims[1] != w->type.dims[0])
    return ir_error(&m->diag, opnd_loc(n, 3),
                    "%s: %s%s is %s but must be the f32 transpose of %s%s %s",
                    ir_op_info[n->op].name, sigil(wt), wt->name, tstr(&wt->type, b1), sigil(w),
                    w->name, tstr(&w->type, b2));
  double t = ir_attr_float(n, IR_ATTR_THRESHOLD, 0);
  if (!(t > 0 && isfinite(t) && t <= FLT_MAX))
    return ir_error(&m->diag, ir_attr_loc(n, IR_ATTR_THRESHOLD),
                    "threshold must be a positive finite number");
  return true;
}

/* qmatmul and qmatmul_dyn: x [..., M, K] and b [..., K, N] with the same
 * rank (at least 2) and the same leading dims give [..., M, N]. Operands
 * whose leading dims differ (numpy broadcasting) are for the float matmul
 * only. */
static bool infer_qmatmul_shape(IrModule *m, const IrNode *n, IrType *out) {
  if (!need_rank(m, n, 0, 2, IR_MAX_RANK, "left operand") ||
      !need_rank(m, n, 1, 2, IR_MAX_RANK, "right operand"))
    return false;
  const IrValue *x = n->opnds[0], *b = n->opnds[1];
  const IrType *a = &x->type, *t = &b->type;
  char b1[96], b2[96];
  bool same = a->rank == t->rank;
  for (int i = 0; same && i < a->rank - 2; i++)
    same = a->dims[i] == t->dims[i];
  if (!same)
    return ir_error(&m->diag, opnd_loc(n, 1),
                    "%s: %s%s is %s but %s%s is %s; both must have the same rank and the same "
                    "leading dims (no broadcasting)",
                    ir_op_info[n->op].name, sigil(x), x->name, tstr(a, b1), sigil(b), b->name,
                    tstr(t, b2));
  if (a->dims[a->rank - 1] != t->dims[t->rank - 2])
    return ir_error(&m->diag, opnd_loc(n, 1),
                    "%s: %s%s is %s but %s%s is %s: the left operand's last dim (K) must be the "
                    "right operand's second to last",
                    ir_op_info[n->op].name, sigil(x), x->name, tstr(a, b1), sigil(b), b->name,
                    tstr(t, b2));
  *out = *a;
  out->dims[out->rank - 1] = t->dims[t->rank - 1];
  return true;
}

/* One operand's parameters: scale, zero_point and a u8/i8 dtype that is
 * the operand's own when it is integer. */
static bool check_qmatmul_operand(IrModule *m, const IrNode *n, int i, IrQSide side) {
  IrAttrKey k[3];
  ir_qparams_keys(side, k);
  if (!need_attr(m, n, k[0]) || !need_attr(m, n, k[1]) || !need_attr(m, n, k[2]))
    return false;
  IrDType t = n->opnds[i]->type.dtype, q = attr_dtype(n, k[2]);
  if (!ir_dtype_is_quantized(q) || (t != IR_F32 && t != q))
    return ir_error(&m->diag, ir_attr_loc(n, k[2]), "qmatmul: %s must be u8 or i8%s",
                    ir_attr_info[k[2]].key, t != IR_F32 ? " and match the operand's type" : "");
  return check_qparams(m, n, k[0], k[1], q);
}

static bool infer_qmatmul(IrModule *m, const IrNode *n, IrType *out) {
  if (!need_dtype(m, n, 0, is_qin, "f32, u8 or i8") ||
      !need_dtype(m, n, 1, is_qin, "f32, u8 or i8") || !infer_qmatmul_shape(m, n, out) ||
      !check_qmatmul_operand(m, n, 0, IR_QPARAMS_IN) ||
      !check_qmatmul_operand(m, n, 1, IR_QPARAMS_B) || !need_attr(m, n, IR_ATTR_DTYPE))
    return false;
  IrDType yt = attr_dtype(n, IR_ATTR_DTYPE);
  if (yt != IR_F32 && !ir_dtype_is_quantized(yt))
    return ir_error(&m->diag, ir_attr_loc(n, IR_ATTR_DTYPE), "qmatmul: dtype must be u8, i8 or f32");
  if (ir_dtype_is_quantized(yt) &&
      (!need_attr(m, n, IR_ATTR_SCALE) || !need_attr(m, n, IR_ATTR_ZERO_POINT) ||
       !check_qparams(m, n, IR_ATTR_SCALE, IR_ATTR_ZERO_POINT, yt)))
    return false;
  /* The multiplier must be a finite f32, or every result would be +-inf. */
  float mult = ir_qmatmul_mult((float)ir_attr_float(n, IR_ATTR_X_SCALE, 1),
                               (float)ir_attr_float(n, IR_ATTR_B_SCALE, 1),
                               yt == IR_F32 ? 0.0f : (float)ir_attr_float(n, IR_ATTR_SCALE, 1));
  if (!isfinite(mult) || !(mult > 0))
    return ir_error(&m->diag, n->loc,
                    "qmatmul: the multiplier x_scale * b_scale%s is %g, not a positive finite "
                    "f32 number",
                    yt == IR_F32 ? "" : " / scale", (double)mult);
  out->dtype = yt;
  return true;
}

static bool infer_qmatmul_dyn(IrModule *m, const IrNode *n, IrType *out) {
  return need_dtype(m, n, 0, is_f32, "f32") && need_dtype(m, n, 1, is_f32, "f32") &&
         infer_qmatmul_shape(m, n, out);
}

/* linear_4bit x, w, absmax, [absmax2], [b]: x f32 [..., K], w u8 [N, K/2],
 * absmax [N, K/block] (f32, or u8 codes with double_quant = 1 and then
 * absmax2 f32 [ceil(N K/block / 256) + 1]), b f32 [N]; block 32, 64, 128
 * or 256 dividing K. Gives f32 [..., N]. */
static bool is_u8(IrDType t) { return t == IR_U8; }

static bool need_dims(IrModule *m, const IrNode *n, int i, int rank, int64_t d0, int64_t d1) {
  const IrValue *v = n->opnds[i];
  char b1[96], b2[48], b3[24];
  if (v->type.rank == rank && v->type.dims[0] == d0 && (rank == 1 || v->type.dims[1] == d1))
    return true;
  if (rank == 1)
    snprintf(b2, sizeof b2, "[%s]", dim_str(d0, b3));
  else
    snprintf(b2, sizeof b2, "[%lld, %lld]", (long long)d0, (long long)d1);
  return ir_error(&m->diag, opnd_loc(n, i), "%s: %s%s is %s but must be %s",
                  ir_op_info[n->op].name, sigil(v), v->name, tstr(&v->type, b1), b2);
}

static bool infer_linear_4bit(IrModule *m, const IrNode *n, IrType *out) {
  int64_t block = ir_attr_int(n, IR_ATTR_BLOCK, 64), dq = ir_attr_int(n, IR_ATTR_DOUBLE_QUANT, 0);
  if (block != 32 && block != 64 && block != 128 && block != 256)
    return ir_error(&m->diag, ir_attr_loc(n, IR_ATTR_BLOCK),
                    "linear_4bit: block must be 32, 64, 128 or 256, not %lld", (long long)block);
  if (dq != 0 && dq != 1)
    return ir_error(&m->diag, ir_attr_loc(n, IR_ATTR_DOUBLE_QUANT), "double_quant must be 0 or 1");
  int nfixed = dq ? 4 : 3;
  if (n->nopnds < nfixed || n->nopnds > nfixed + 1)
    return ir_error(&m->diag, n->loc, "linear_4bit%s takes %d or %d operands, not %d",
                    dq ? " with double_quant" : "", nfixed, nfixed + 1, n->nopnds);
  if (!need_dtype(m, n, 0, is_f32, "f32") || !need_rank(m, n, 0, 1, IR_MAX_RANK, "input") ||
      !need_dtype(m, n, 1, is_u8, "u8") || !need_rank(m, n, 1, 2, 2, "weight") ||
      !need_dtype(m, n, 2, dq ? is_u8 : is_f32, dq ? "u8" : "f32") ||
      (dq && !need_dtype(m, n, 3, is_f32, "f32")) ||
      (n->nopnds > nfixed && !need_dtype(m, n, nfixed, is_f32, "f32")))
    return false;
  const IrValue *x = n->opnds[0];
  int64_t k = x->type.dims[x->type.rank - 1], nn = n->opnds[1]->type.dims[0];
  char b1[96];
  if (k % block != 0)
    return ir_error(&m->diag, opnd_loc(n, 0),
                    "linear_4bit: input %s%s is %s but its last dim must be a multiple of the "
                    "block (%lld)",
                    sigil(x), x->name, tstr(&x->type, b1), (long long)block);
  int64_t groups = nn * (k / block);
  if (!need_dims(m, n, 1, 2, nn, k / 2) || !need_dims(m, n, 2, 2, nn, k / block) ||
      (dq && !need_dims(m, n, 3, 1, (groups + 255) / 256 + 1, 0)) ||
      (n->nopnds > nfixed && !need_dims(m, n, nfixed, 1, nn, 0)))
    return false;
  *out = x->type;
  out->dims[out->rank - 1] = nn;
  return true;
}
/* Defined at the end of the file. */
static bool infer_qlinear_grp(IrModule *m, const IrNode *n, IrType *out);

static InferFn *const infer_table[IR_OP_COUNT] = {
#define OP(ID, name, minops, maxops, attrs) [IR_OP_##ID] = infer_##name,
#include "ops.def"
#undef OP
};

bool ir_infer_type(IrModule *m, const IrNode *n, IrType *out) {
  for (int i = 0; i < n->nopnds; i++)
    if (n->opnds[i]->type.dtype == IR_DTYPE_NONE)
      q8_die("operand %d of %s has no type", i, ir_op_info[n->op].name);
  return infer_table[n->op](m, n, out);
}

bool ir_infer_shapes(IrModule *m) {
  for (int i = 0; i < m->nnodes; i++) {
    IrNode *n = m->nodes[i];
    if (!ir_infer_type(m, n, &n->result->type))
      return false;
  }
  return true;
}

void ir_bind_batch(IrModule *m, int64_t batch) {
  bool any = false;
  for (int i = 0; i < m->ninputs; i++) {
    IrType t = ir_type_bind(&m->inputs[i]->type, batch);
    any |= !ir_type_equal(&t, &m->inputs[i]->type);
    m->inputs[i]->type = t;
  }
  for (int i = 0; i < m->nnodes; i++) {
    IrNode *n = m->nodes[i];
    IrType t = ir_type_bind(&n->result->type, batch);
    any |= !ir_type_equal(&t, &n->result->type);
    n->result->type = t;
    for (int a = 0; a < n->nattrs; a++)
      if (ir_attr_info[n->attrs[a].key].kind == IR_AKIND_DIMS)
        for (int j = 0; j < n->attrs[a].n; j++)
          if (n->attrs[a].vals[j] == (double)IR_DIM_BATCH ||
              n->attrs[a].vals[j] == (double)IR_DIM_FOLDED) {
            n->attrs[a].vals[j] = n->attrs[a].vals[j] == (double)IR_DIM_BATCH ? (double)batch : 1;
            any = true;
          }
  }
  if (any)
    m->bound_batch = batch;
}

/* qlinear_grp: x f32 [..., K], Wq i8 [N, K], w_scale f32 [N, K / G],
 * [w_zero i8 [N, K / G]], [b f32 [N]]; group G in [1, 256] dividing K;
 * wbits 4 or 8 and sbits 16 or 32 (how the compiled form stores them). */
static bool infer_qlinear_grp(IrModule *m, const IrNode *n, IrType *out) {
  if (!need_rank(m, n, 0, 1, IR_MAX_RANK, "input") || !need_rank(m, n, 1, 2, 2, "weight") ||
      !need_dtype(m, n, 0, is_f32, "f32") || !need_dtype(m, n, 1, is_i8, "i8") ||
      !need_dtype(m, n, 2, is_f32, "f32") || !need_attr(m, n, IR_ATTR_GROUP))
    return false;
  const IrValue *x = n->opnds[0], *w = n->opnds[1];
  int64_t k = x->type.dims[x->type.rank - 1], wn = w->type.dims[0];
  int64_t g = ir_attr_int(n, IR_ATTR_GROUP, 0);
  int64_t wbits = ir_attr_int(n, IR_ATTR_WBITS, 8), sbits = ir_attr_int(n, IR_ATTR_SBITS, 32);
  char b1[96], b2[96];
  if (k != w->type.dims[1])
    return ir_error(&m->diag, opnd_loc(n, 1),
                    "qlinear_grp: input %s%s is %s but weight %s%s is %s (W is [out, in])",
                    sigil(x), x->name, tstr(&x->type, b1), sigil(w), w->name,
                    tstr(&w->type, b2));
  if (g < 1 || g > 256 || k % g != 0)
    return ir_error(&m->diag, ir_attr_loc(n, IR_ATTR_GROUP),
                    "qlinear_grp: group %lld must be in [1, 256] and divide K = %lld",
                    (long long)g, (long long)k);
  if ((wbits != 4 && wbits != 8) || (sbits != 16 && sbits != 32))
    return ir_error(&m->diag, n->loc, "qlinear_grp: wbits must be 4 or 8 and sbits 16 or 32");
  bool has_zero = n->nopnds > 3 && n->opnds[3]->type.dtype == IR_I8;
  int bias_at = has_zero ? 4 : 3;
  for (int i = 2; i < n->nopnds; i++) {
    const IrValue *v = n->opnds[i];
    bool grouped = i < bias_at;
    if (i == bias_at && !need_dtype(m, n, i, is_f32, "f32"))
      return false;
    bool ok = grouped ? v->type.rank == 2 && v->type.dims[0] == wn && v->type.dims[1] == k / g
                      : v->type.rank == 1 && v->type.dims[0] == wn;
    if (!ok) {
      if (grouped)
        return ir_error(&m->diag, opnd_loc(n, i), "qlinear_grp: %s%s is %s but must be [%lld, %lld]",
                        sigil(v), v->name, tstr(&v->type, b1), (long long)wn,
                        (long long)(k / g));
      return ir_error(&m->diag, opnd_loc(n, i), "qlinear_grp: %s%s is %s but must be [%lld]",
                      sigil(v), v->name, tstr(&v->type, b1), (long long)wn);
    }
  }
  if (n->nopnds == 5 && !has_zero)
    return ir_error(&m->diag, opnd_loc(n, 3),
                    "qlinear_grp: with five operands the fourth (the zero points) must be i8");
  *out = x->type;
  out->dims[out->rank - 1] = wn;
  return true;
}
