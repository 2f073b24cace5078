/* infer.c: shape inference, one function per op (infer_<name>, named in
 * ops.def), each computing the result type from the operand types and
 * checking that the operands fit the op.
 *
 * `?` (IR_DIM_BATCH) is one symbol, the batch size: two dims match when both
 * are `?` or both are the same number. A mismatch is reported at the operand
 * that does not fit, naming both shapes, because that is what a user needs to
 * find the wrong tensor. */
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
  if (d == IR_DIM_BATCH)
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

static bool infer_matmul(IrModule *m, const IrNode *n, IrType *out) {
  if (!all_f32(m, n) || !need_rank(m, n, 0, 2, IR_MAX_RANK, "left operand") ||
      !need_rank(m, n, 1, 2, IR_MAX_RANK, "right operand"))
    return false;
  const IrType *a = &n->opnds[0]->type, *b = &n->opnds[1]->type;
  char b1[96], b2[96], d1[24], d2[24];
  if (b->rank != 2 && b->rank != a->rank)
    return ir_error(&m->diag, opnd_loc(n, 1),
                    "matmul: right operand %s%s is %s; it must be a matrix [K, N] or have "
                    "the left operand's rank %d",
                    sigil(n->opnds[1]), n->opnds[1]->name, tstr(b, b1), a->rank);
  if (b->rank == a->rank)
    for (int i = 0; i < a->rank - 2; i++)
      if (a->dims[i] != b->dims[i])
        return ir_error(&m->diag, opnd_loc(n, 1),
                        "matmul: leading dims differ: %s%s is %s but %s%s is %s",
                        sigil(n->opnds[0]), n->opnds[0]->name, tstr(a, b1),
                        sigil(n->opnds[1]), n->opnds[1]->name, tstr(b, b2));
  int64_t k = a->dims[a->rank - 1], bk = b->dims[b->rank - 2];
  if (k != bk)
    return ir_error(&m->diag, opnd_loc(n, 1),
                    "matmul: %s%s is %s with K = %s but %s%s is %s with K = %s",
                    sigil(n->opnds[0]), n->opnds[0]->name, tstr(a, b1), dim_str(k, d1),
                    sigil(n->opnds[1]), n->opnds[1]->name, tstr(b, b2), dim_str(bk, d2));
  *out = *a;
  out->dims[out->rank - 1] = b->dims[b->rank - 1];
  return true;
}

/* Elementwise binary ops: equal shapes, or one shape a suffix of the other. */
static bool infer_broadcast(IrModule *m, const IrNode *n, IrType *out) {
  if (!all_f32(m, n))
    return false;
  const IrType *a = &n->opnds[0]->type, *b = &n->opnds[1]->type;
  const IrType *lo = a->rank >= b->rank ? b : a, *hi = a->rank >= b->rank ? a : b;
  for (int i = 0; i < lo->rank; i++)
    if (lo->dims[lo->rank - 1 - i] != hi->dims[hi->rank - 1 - i]) {
      char b1[96], b2[96];
      return ir_error(&m->diag, opnd_loc(n, 1),
                      "%s: shapes %s (%s%s) and %s (%s%s) do not broadcast: one must equal "
                      "the trailing dims of the other",
                      ir_op_info[n->op].name, tstr(a, b1), sigil(n->opnds[0]),
                      n->opnds[0]->name, tstr(b, b2), sigil(n->opnds[1]), n->opnds[1]->name);
    }
  *out = *hi;
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

static bool infer_softmax(IrModule *m, const IrNode *n, IrType *out) {
  return need_rank(m, n, 0, 1, IR_MAX_RANK, "input") && infer_unary(m, n, out);
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
    } else {
      if (dims[i] < 0 || (dims[i] && *rest > INT64_MAX / dims[i]))
        return false;
      *rest *= dims[i];
    }
  }
  return true;
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
  for (int i = 0; i < rank; i++)
    out->dims[i] = shape[i];
  int xb, ob;
  int64_t xr, or;
  char b1[96], b2[96];
  if (!count_elems(x->dims, x->rank, &xb, &xr) || !count_elems(out->dims, out->rank, &ob, &or) ||
      xb != ob || xr != or)
    return ir_error(&m->diag, shape_at,
                    "reshape: %s%s is %s, which cannot be reshaped to %s (element counts differ)",
                    sigil(n->opnds[0]), n->opnds[0]->name, tstr(x, b1), tstr(out, b2));
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

static bool infer_qlinear_dyn(IrModule *m, const IrNode *n, IrType *out) {
  return need_dtype(m, n, 0, is_f32, "f32") && need_dtype(m, n, 2, is_f32, "f32") &&
         (n->nopnds < 4 || need_dtype(m, n, 3, is_f32, "f32")) &&
         infer_qlinear_shape(m, n, 2, true, out);
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
          if (n->attrs[a].vals[j] == (double)IR_DIM_BATCH) {
            n->attrs[a].vals[j] = (double)batch;
            any = true;
          }
  }
  if (any)
    m->bound_batch = batch;
}
