/* interp.c: the reference interpreter, the oracle every later stage is
 * checked against and the engine the calibration pass runs. It gives every
 * value a dense buffer in its own dtype and runs the nodes in order, one
 * eval_<name> per op of ops.def, each checking its operands and leaving the
 * arithmetic to refops.c, the code compiled models link too. Its rules are in
 * docs/ir.md, "The interpreter". */

#include <float.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ir.h"
#include "refops.h"

typedef struct {
  const IrValue *value;
  IrType type;       /* `?` bound, in the value's own dtype */
  int64_t numel;
  size_t bytes;      /* numel * the dtype's size */
  const void *data;  /* NULL until the value is computed */
  void *owned;       /* malloc'd storage to free, or NULL (constants, inputs) */
} Slot;

/* More than any op in ops.def takes, checked before a node runs. */
enum { MAX_OPERANDS = 8 };

typedef bool EvalFn(IrDiag *d, const IrNode *n, const Slot *const *a, Slot *r);

/* "%x" or "@w", as the text IR spells the value. */
static const char *sigil(const IrValue *v) { return v->kind == IR_VAL_CONST ? "@" : "%"; }

/* Product of dims[from..to). Types were checked with ir_type_numel, so no
 * partial product can overflow. */
static int64_t prod(const int64_t *dims, int from, int to) {
  int64_t p = 1;
  for (int i = from; i < to; i++)
    p *= dims[i];
  return p;
}

static bool same_dims(const int64_t *a, const int64_t *b, int n) {
  for (int i = 0; i < n; i++)
    if (a[i] != b[i])
      return false;
  return true;
}

static bool same_shape(const Slot *x, const Slot *r) {
  return x->type.rank == r->type.rank && same_dims(x->type.dims, r->type.dims, x->type.rank);
}

/* The shared message of the consistency checks: names every operand shape
 * and the result shape, which is what is needed to see which one is off. */
static bool bad_shapes(IrDiag *d, const IrNode *n, const Slot *const *a, const Slot *r) {
  char shapes[1024], buf[160];
  size_t len = 0;
  shapes[0] = '\0';
  for (int i = 0; i < n->nopnds && len < sizeof shapes; i++)
    len += (size_t)snprintf(shapes + len, sizeof shapes - len, "%s%s%s %s", i ? ", " : "",
                            sigil(a[i]->value), a[i]->value->name,
                            ir_dims_str(a[i]->type.dims, a[i]->type.rank, buf, sizeof buf));
  return ir_error(d, n->loc, "%s: operands %s do not give the result %%%s %s",
                  ir_op_info[n->op].name, shapes, r->value->name,
                  ir_dims_str(r->type.dims, r->type.rank, buf, sizeof buf));
}

/* ---- the float ops ---- */

static const float *f32_of(const Slot *s) { return s->data; }
static float *f32_out(Slot *r) { return r->owned; }

/* Float ops read and write f32 only. Shape inference enforces it; this keeps
 * an integer tensor in a hand-built module from being read as floats. */
static bool need_f32(IrDiag *d, const IrNode *n, const Slot *const *a, const Slot *r) {
  char buf[160];
  for (int i = 0; i < n->nopnds; i++)
    if (a[i]->type.dtype != IR_F32)
      return ir_error(d, n->loc, "%s expects f32 operands, but %s%s is %s",
                      ir_op_info[n->op].name, sigil(a[i]->value), a[i]->value->name,
                      ir_type_str(&a[i]->type, buf, sizeof buf));
  if (r->type.dtype != IR_F32)
    return ir_error(d, n->loc, "%s gives f32, but its result %%%s is declared %s",
                    ir_op_info[n->op].name, r->value->name,
                    ir_type_str(&r->type, buf, sizeof buf));
  return true;
}

/* x [..., K], W [N, K], b [N] -> [..., N] = x W^T + b. */
static bool eval_linear(IrDiag *d, const IrNode *n, const Slot *const *a, Slot *r) {
  if (!need_f32(d, n, a, r))
    return false;
  const Slot *x = a[0], *w = a[1], *b = n->nopnds > 2 ? a[2] : NULL;
  int rank = x->type.rank;
  if (rank < 1 || w->type.rank != 2 || r->type.rank != rank)
    return bad_shapes(d, n, a, r);
  int64_t k = x->type.dims[rank - 1], nout = w->type.dims[0];
  if (w->type.dims[1] != k || r->type.dims[rank - 1] != nout ||
      !same_dims(x->type.dims, r->type.dims, rank - 1) ||
      (b && (b->type.rank != 1 || b->type.dims[0] != nout)))
    return bad_shapes(d, n, a, r);
  q8_ref_linear(f32_of(x), f32_of(w), b ? f32_of(b) : NULL, f32_out(r),
                prod(x->type.dims, 0, rank - 1), k, nout);
  return true;
}

/* A [..., M, K] times B [..., K, N], the batch dims broadcast as numpy's
 * matmul (a B [K, N] is one matrix for every batch index of A). */
static bool eval_matmul(IrDiag *d, const IrNode *n, const Slot *const *a, Slot *r) {
  if (!need_f32(d, n, a, r))
    return false;
  const Slot *x = a[0], *y = a[1];
  int xr = x->type.rank, yr = y->type.rank, rank, axis;
  int64_t batch[IR_MAX_RANK];
  if (xr < 2 || yr < 2 ||
      !ir_broadcast_dims(x->type.dims, xr - 2, y->type.dims, yr - 2, batch, &rank, &axis) ||
      r->type.rank != rank + 2 || !same_dims(batch, r->type.dims, rank))
    return bad_shapes(d, n, a, r);
  int64_t m = x->type.dims[xr - 2], k = x->type.dims[xr - 1], nout = y->type.dims[yr - 1];
  if (y->type.dims[yr - 2] != k || r->type.dims[rank] != m || r->type.dims[rank + 1] != nout)
    return bad_shapes(d, n, a, r);
  int64_t xs[IR_MAX_RANK], ys[IR_MAX_RANK];
  ir_broadcast_strides(x->type.dims, xr - 2, m * k, rank, xs);
  ir_broadcast_strides(y->type.dims, yr - 2, k * nout, rank, ys);
  q8_ref_matmul(f32_of(x), xs, f32_of(y), ys, f32_out(r), rank, batch, m, k, nout);
  return true;
}

/* The elementwise binary ops: numpy broadcasting, the result's shape the
 * broadcast of the operands'; `fn` is q8_ref_add, _sub, _mul or _div (one
 * signature). */
static bool eval_binary(IrDiag *d, const IrNode *n, const Slot *const *a, Slot *r,
                        q8_ref_add_fn *fn) {
  if (!need_f32(d, n, a, r))
    return false;
  const Slot *x = a[0], *y = a[1];
  int64_t dims[IR_MAX_RANK], xs[IR_MAX_RANK], ys[IR_MAX_RANK];
  int rank, axis;
  if (!ir_broadcast_dims(x->type.dims, x->type.rank, y->type.dims, y->type.rank, dims, &rank,
                         &axis) ||
      r->type.rank != rank || !same_dims(dims, r->type.dims, rank))
    return bad_shapes(d, n, a, r);
  ir_broadcast_strides(x->type.dims, x->type.rank, 1, rank, xs);
  ir_broadcast_strides(y->type.dims, y->type.rank, 1, rank, ys);
  fn(f32_of(x), xs, f32_of(y), ys, f32_out(r), rank, dims);
  return true;
}

static bool eval_add(IrDiag *d, const IrNode *n, const Slot *const *a, Slot *r) {
  return eval_binary(d, n, a, r, q8_ref_add);
}

static bool eval_mul(IrDiag *d, const IrNode *n, const Slot *const *a, Slot *r) {
  return eval_binary(d, n, a, r, q8_ref_mul);
}

static bool eval_relu(IrDiag *d, const IrNode *n, const Slot *const *a, Slot *r) {
  if (!need_f32(d, n, a, r))
    return false;
  if (!same_shape(a[0], r))
    return bad_shapes(d, n, a, r);
  q8_ref_relu(f32_of(a[0]), f32_out(r), r->numel);
  return true;
}

/* The activations: y[i] = f(x[i]) through `fn` (q8_ref_relu's signature). */
static bool eval_unary(IrDiag *d, const IrNode *n, const Slot *const *a, Slot *r,
                       q8_ref_relu_fn *fn) {
  if (!need_f32(d, n, a, r))
    return false;
  if (!same_shape(a[0], r))
    return bad_shapes(d, n, a, r);
  fn(f32_of(a[0]), f32_out(r), r->numel);
  return true;
}

/* The erf form, or the tanh approximation with {approximate = tanh}. */
static bool eval_gelu(IrDiag *d, const IrNode *n, const Slot *const *a, Slot *r) {
  const IrAttr *at = ir_node_attr(n, IR_ATTR_APPROXIMATE);
  if (at && (at->n != 1 || !(at->vals[0] == IR_GELU_NONE || at->vals[0] == IR_GELU_TANH)))
    return ir_error(d, ir_attr_loc(n, IR_ATTR_APPROXIMATE),
                    "gelu: approximate must be none or tanh");
  bool tanh_form = at && at->vals[0] == IR_GELU_TANH;
  return eval_unary(d, n, a, r, tanh_form ? q8_ref_gelu_tanh : q8_ref_gelu);
}

static int axis_of(const IrNode *n, int rank, int64_t dflt);

/* Over `axis` (default the last), with the causal mask over the last axis
 * when asked (q8_ref_softmax_axis). */
static bool eval_softmax(IrDiag *d, const IrNode *n, const Slot *const *a, Slot *r) {
  if (!need_f32(d, n, a, r))
    return false;
  const Slot *x = a[0];
  int rank = x->type.rank, axis = axis_of(n, rank, -1);
  if (rank < 1 || !same_shape(x, r) || axis < 0)
    return bad_shapes(d, n, a, r);
  int64_t causal_rows = 0;
  if (ir_attr_int(n, IR_ATTR_CAUSAL, 0)) {
    if (axis != rank - 1 || rank < 2 || x->type.dims[rank - 1] < x->type.dims[rank - 2])
      return bad_shapes(d, n, a, r);
    causal_rows = x->type.dims[rank - 2];
  }
  q8_ref_softmax_axis(f32_of(x), f32_out(r), prod(x->type.dims, 0, axis), x->type.dims[axis],
                      prod(x->type.dims, axis + 1, rank), causal_rows);
  return true;
}

/* Over the last axis, gamma and beta [D]. */
static bool eval_layernorm(IrDiag *d, const IrNode *n, const Slot *const *a, Slot *r) {
  if (!need_f32(d, n, a, r))
    return false;
  const Slot *x = a[0], *gamma = a[1], *beta = a[2];
  if (x->type.rank < 1 || !same_shape(x, r))
    return bad_shapes(d, n, a, r);
  int64_t len = x->type.dims[x->type.rank - 1];
  if (gamma->type.rank != 1 || gamma->type.dims[0] != len || beta->type.rank != 1 ||
      beta->type.dims[0] != len)
    return bad_shapes(d, n, a, r);
  double eps = ir_attr_float(n, IR_ATTR_EPS, 1e-5);
  q8_ref_layernorm(f32_of(x), f32_of(gamma), f32_of(beta), eps, f32_out(r),
                   prod(x->type.dims, 0, x->type.rank - 1), len);
  return true;
}

/* result[i_0, ..., i_{r-1}] = x[j] where j[perm[k]] = i_k, as numpy.transpose:
 * the perm (or the default swap of the last two axes) is checked here. */
static bool eval_transpose(IrDiag *d, const IrNode *n, const Slot *const *a, Slot *r) {
  if (!need_f32(d, n, a, r))
    return false;
  const Slot *x = a[0];
  int rank = x->type.rank;
  int64_t perm[IR_MAX_RANK];
  const IrAttr *pa = ir_node_attr(n, IR_ATTR_PERM);
  if (pa) {
    bool seen[IR_MAX_RANK] = {false};
    if (pa->n != rank)
      return ir_error(d, pa->loc, "transpose: perm has %d entries but the input has rank %d",
                      pa->n, rank);
    for (int i = 0; i < rank; i++) {
      double p = pa->vals[i];
      if (!(p >= 0 && p < rank) || p != (int)p || seen[(int)p])
        return ir_error(d, pa->loc, "transpose: perm must list each axis 0..%d exactly once",
                        rank - 1);
      perm[i] = (int)p;
      seen[perm[i]] = true;
    }
  } else {
    if (rank < 2)
      return bad_shapes(d, n, a, r);
    for (int i = 0; i < rank; i++)
      perm[i] = i;
    perm[rank - 2] = rank - 1;
    perm[rank - 1] = rank - 2;
  }
  if (r->type.rank != rank)
    return bad_shapes(d, n, a, r);
  for (int i = 0; i < rank; i++)
    if (r->type.dims[i] != x->type.dims[perm[i]])
      return bad_shapes(d, n, a, r);

  q8_ref_transpose(f32_of(x), f32_out(r), rank, x->type.dims, perm);
  return true;
}

/* Row-major data does not move; only the type changes. */
static bool eval_reshape(IrDiag *d, const IrNode *n, const Slot *const *a, Slot *r) {
  if (!need_f32(d, n, a, r))
    return false;
  if (a[0]->numel != r->numel)
    return bad_shapes(d, n, a, r);
  if (r->numel)
    memcpy(r->owned, a[0]->data, r->bytes);
  return true;
}

/* ---- the transformer ops ---- */

static bool eval_sub(IrDiag *d, const IrNode *n, const Slot *const *a, Slot *r) {
  return eval_binary(d, n, a, r, q8_ref_sub);
}

static bool eval_div(IrDiag *d, const IrNode *n, const Slot *const *a, Slot *r) {
  return eval_binary(d, n, a, r, q8_ref_div);
}

static bool eval_sigmoid(IrDiag *d, const IrNode *n, const Slot *const *a, Slot *r) {
  return eval_unary(d, n, a, r, q8_ref_sigmoid);
}

static bool eval_tanh(IrDiag *d, const IrNode *n, const Slot *const *a, Slot *r) {
  return eval_unary(d, n, a, r, q8_ref_tanh);
}

static bool eval_silu(IrDiag *d, const IrNode *n, const Slot *const *a, Slot *r) {
  return eval_unary(d, n, a, r, q8_ref_silu);
}

/* ---- shape ops of transformers ---- */

/* The `axis` attribute (default `dflt`) in [0, rank), or -1 when out of it. */
static int axis_of(const IrNode *n, int rank, int64_t dflt) {
  int64_t ax = ir_attr_int(n, IR_ATTR_AXIS, dflt);
  ax = ax < 0 ? ax + rank : ax;
  return ax >= 0 && ax < rank ? (int)ax : -1;
}

/* table [V, D] f32, ids (i32 or i64) [...] -> [..., D]. An id outside the
 * table is the user's error, reported with its position and value. */
static bool eval_gather(IrDiag *d, const IrNode *n, const Slot *const *a, Slot *r) {
  const Slot *t = a[0], *ids = a[1];
  char buf[160];
  if (t->type.dtype != IR_F32 || (ids->type.dtype != IR_I32 && ids->type.dtype != IR_I64) ||
      r->type.dtype != IR_F32)
    return ir_error(d, n->loc, "gather takes an f32 table and i32 or i64 ids, but %s%s is %s",
                    sigil(ids->value), ids->value->name,
                    ir_type_str(&ids->type, buf, sizeof buf));
  int rank = ids->type.rank;
  if (t->type.rank != 2 || r->type.rank != rank + 1 ||
      !same_dims(ids->type.dims, r->type.dims, rank) || r->type.dims[rank] != t->type.dims[1])
    return bad_shapes(d, n, a, r);
  bool i64 = ids->type.dtype == IR_I64;
  int64_t vocab = t->type.dims[0];
  int32_t bad = q8_ref_gather(f32_of(t), vocab, t->type.dims[1], ids->data, i64, ids->numel,
                              f32_out(r));
  if (bad) {
    /* Only the message: find the first bad id again (the status saturates). */
    int64_t at = bad - 1, id = 0;
    for (; at < ids->numel; at++) {
      id = i64 ? ((const int64_t *)ids->data)[at] : ((const int32_t *)ids->data)[at];
      if (id < 0 || id >= vocab)
        break;
    }
    return ir_error(d, n->loc,
                    "gather: id %lld at position %lld of %s%s is outside the table %s%s "
                    "(ids must be in [0, %lld))",
                    (long long)id, (long long)at, sigil(ids->value), ids->value->name,
                    sigil(t->value), t->value->name, (long long)vocab);
  }
  return true;
}

/* Over the last axis, gamma [D]. */
static bool eval_rmsnorm(IrDiag *d, const IrNode *n, const Slot *const *a, Slot *r) {
  if (!need_f32(d, n, a, r))
    return false;
  const Slot *x = a[0], *gamma = a[1];
  if (x->type.rank < 1 || !same_shape(x, r))
    return bad_shapes(d, n, a, r);
  int64_t len = x->type.dims[x->type.rank - 1];
  if (gamma->type.rank != 1 || gamma->type.dims[0] != len)
    return bad_shapes(d, n, a, r);
  q8_ref_rmsnorm(f32_of(x), f32_of(gamma), ir_attr_float(n, IR_ATTR_EPS, 1e-6), f32_out(r),
                 prod(x->type.dims, 0, x->type.rank - 1), len);
  return true;
}

/* Operands and result of one element type, f32, i32 or i64. */
static bool need_plain(IrDiag *d, const IrNode *n, const Slot *const *a, const Slot *r) {
  char buf[160];
  IrDType t = r->type.dtype;
  if (t != IR_F32 && t != IR_I32 && t != IR_I64)
    return ir_error(d, n->loc, "%s moves f32, i32 or i64 data, but its result is %s",
                    ir_op_info[n->op].name, ir_type_str(&r->type, buf, sizeof buf));
  for (int i = 0; i < n->nopnds; i++)
    if (a[i]->type.dtype != t)
      return ir_error(d, n->loc, "%s: %s%s is %s but the result is %s", ir_op_info[n->op].name,
                      sigil(a[i]->value), a[i]->value->name,
                      ir_type_str(&a[i]->type, buf, sizeof buf), ir_dtype_name(t));
  return true;
}

/* Along `axis`: each operand's rows of inner * its dim elements go side by
 * side into the result's rows (q8_ref_copy_rows). */
static bool eval_concat(IrDiag *d, const IrNode *n, const Slot *const *a, Slot *r) {
  if (!need_plain(d, n, a, r))
    return false;
  int rank = r->type.rank, axis = axis_of(n, rank, -1);
  if (axis < 0)
    return bad_shapes(d, n, a, r);
  int64_t sum = 0;
  for (int i = 0; i < n->nopnds; i++) {
    const IrType *t = &a[i]->type;
    if (t->rank != rank || !same_dims(t->dims, r->type.dims, axis) ||
        !same_dims(t->dims + axis + 1, r->type.dims + axis + 1, rank - axis - 1))
      return bad_shapes(d, n, a, r);
    sum += t->dims[axis];
  }
  if (sum != r->type.dims[axis])
    return bad_shapes(d, n, a, r);
  size_t es = ir_dtype_size(r->type.dtype);
  int64_t outer = prod(r->type.dims, 0, axis), inner = prod(r->type.dims, axis + 1, rank);
  int64_t y_row = r->type.dims[axis] * inner * (int64_t)es, at = 0;
  for (int i = 0; i < n->nopnds; i++) {
    int64_t row = a[i]->type.dims[axis] * inner * (int64_t)es;
    q8_ref_copy_rows(a[i]->data, row, (char *)r->owned + at, y_row, outer, row);
    at += row;
  }
  return true;
}

/* x[..., start:end, ...] along `axis`, numpy's bounds (ir_slice_bounds). */
static bool eval_slice(IrDiag *d, const IrNode *n, const Slot *const *a, Slot *r) {
  if (!need_plain(d, n, a, r))
    return false;
  const Slot *x = a[0];
  int rank = x->type.rank, axis = axis_of(n, rank, 0);
  if (axis < 0 || r->type.rank != rank)
    return bad_shapes(d, n, a, r);
  int64_t lo, hi;
  ir_slice_bounds(x->type.dims[axis], ir_attr_int(n, IR_ATTR_START, 0),
                  ir_attr_int(n, IR_ATTR_END, INT64_MAX), &lo, &hi);
  if (r->type.dims[axis] != hi - lo || !same_dims(x->type.dims, r->type.dims, axis) ||
      !same_dims(x->type.dims + axis + 1, r->type.dims + axis + 1, rank - axis - 1))
    return bad_shapes(d, n, a, r);
  size_t es = ir_dtype_size(r->type.dtype);
  int64_t inner = prod(x->type.dims, axis + 1, rank) * (int64_t)es;
  q8_ref_copy_rows((const char *)x->data + lo * inner, x->type.dims[axis] * inner, r->owned,
                   (hi - lo) * inner, prod(x->type.dims, 0, axis), (hi - lo) * inner);
  return true;
}

/* ---- the quantized ops ---- */

#define DT(t) (1u << (t))

/* Operand `i` must have one of the dtypes in `mask` (DT bits), spelled `what`. */
static bool need_dtype(IrDiag *d, const IrNode *n, const Slot *const *a, int i, unsigned mask,
                       const char *what) {
  char buf[160];
  if (mask & DT(a[i]->type.dtype))
    return true;
  return ir_error(d, n->loc, "%s: %s %s%s must be %s, but it is %s", ir_op_info[n->op].name,
                  i == 0 ? "input" : "operand", sigil(a[i]->value), a[i]->value->name, what,
                  ir_type_str(&a[i]->type, buf, sizeof buf));
}

static bool need_result_dtype(IrDiag *d, const IrNode *n, const Slot *r, IrDType t) {
  char buf[160];
  if (r->type.dtype == t)
    return true;
  return ir_error(d, n->loc, "%s gives %s, but its result %%%s is declared %s",
                  ir_op_info[n->op].name, ir_dtype_name(t), r->value->name,
                  ir_type_str(&r->type, buf, sizeof buf));
}

/* The readers below check the stored numbers themselves (a module built by
 * hand may hold a zero point of 2.5), so they read the IrAttr of a key of
 * the kind they expect rather than the typed accessors, which assume a
 * verified module. */
static IrLoc attr_loc(const IrNode *n, const IrAttr *at) {
  return at->loc.line ? at->loc : n->loc;
}

static const IrAttr *need_attr(IrDiag *d, const IrNode *n, IrAttrKey key) {
  const IrAttr *at = ir_node_attr(n, key);
  if (at && at->n >= 1)
    return at;
  ir_error(d, n->loc, "%s needs the attribute '%s'", ir_op_info[n->op].name,
           ir_attr_info[key].key);
  return NULL;
}

/* A scale attribute as the f32 the arithmetic uses (passes store values that
 * f32 represents exactly); it must stay positive and finite in f32. */
static bool read_scale(IrDiag *d, const IrNode *n, IrAttrKey key, float *out) {
  const IrAttr *at = need_attr(d, n, key);
  if (!at)
    return false;
  double v = at->vals[0];
  float s = v > 0 && v <= FLT_MAX ? (float)v : 0.0f;
  if (!(s > 0))
    return ir_error(d, attr_loc(n, at), "%s: %s = %g is not a positive finite f32 number",
                    ir_op_info[n->op].name, ir_attr_info[key].key, v);
  *out = s;
  return true;
}

/* A zero point: an integer inside the range of the quantized type `t`. */
static bool read_zero_point(IrDiag *d, const IrNode *n, IrAttrKey key, IrDType t, int32_t *out) {
  const IrAttr *at = need_attr(d, n, key);
  int32_t qmin, qmax;
  if (!at)
    return false;
  ir_qbounds(t, &qmin, &qmax);
  double v = at->vals[0];
  if (!(v >= qmin && v <= qmax) || v != rint(v))
    return ir_error(d, attr_loc(n, at), "%s: %s %g is not an integer in %s's range [%d, %d]",
                    ir_op_info[n->op].name, ir_attr_info[key].key, v, ir_dtype_name(t), qmin,
                    qmax);
  *out = (int32_t)v;
  return true;
}

/* A DTYPE attribute that must be one of `mask`, spelled `what`. */
static bool read_dtype(IrDiag *d, const IrNode *n, IrAttrKey key, unsigned mask,
                       const char *what, IrDType *out) {
  const IrAttr *at = need_attr(d, n, key);
  if (!at)
    return false;
  double v = at->vals[0];
  if (!(v > IR_DTYPE_NONE && v < IR_DTYPE_COUNT) || v != rint(v) || !(mask & DT((int)v)))
    return ir_error(d, attr_loc(n, at), "%s: %s must be %s", ir_op_info[n->op].name,
                    ir_attr_info[key].key, what);
  *out = (IrDType)(int)v;
  return true;
}

static bool read_relu(IrDiag *d, const IrNode *n, bool *out) {
  const IrAttr *at = ir_node_attr(n, IR_ATTR_RELU);
  *out = false;
  if (!at)
    return true;
  if (at->n < 1 || (at->vals[0] != 0 && at->vals[0] != 1))
    return ir_error(d, attr_loc(n, at), "%s: relu must be 0 or 1", ir_op_info[n->op].name);
  *out = at->vals[0] == 1;
  return true;
}

/* x [..., K] and Wq [N, K] give r [..., N]; operands 2.. are vectors of N
 * entries, the first of them (w_scale) [1] too when `one_ok`. */
static bool linear_shapes(IrDiag *d, const IrNode *n, const Slot *const *a, const Slot *r,
                          bool one_ok, int64_t *rows, int64_t *k, int64_t *nout) {
  const Slot *x = a[0], *w = a[1];
  int rank = x->type.rank;
  if (rank < 1 || w->type.rank != 2 || r->type.rank != rank)
    return bad_shapes(d, n, a, r);
  *k = x->type.dims[rank - 1];
  *nout = w->type.dims[0];
  if (w->type.dims[1] != *k || r->type.dims[rank - 1] != *nout ||
      !same_dims(x->type.dims, r->type.dims, rank - 1))
    return bad_shapes(d, n, a, r);
  for (int i = 2; i < n->nopnds; i++) {
    const IrType *t = &a[i]->type;
    bool one = one_ok && i == 2 && t->rank == 1 && t->dims[0] == 1;
    if (t->rank != 1 || (t->dims[0] != *nout && !one))
      return bad_shapes(d, n, a, r);
  }
  *rows = prod(x->type.dims, 0, rank - 1);
  return true;
}

/* Scratch room for `count` values of `size` bytes (quantized inputs, folded
 * constants), or NULL with a message. */
static void *scratch(IrDiag *d, const IrNode *n, int64_t count, size_t size) {
  void *p = NULL;
  if ((uint64_t)count <= SIZE_MAX / size)
    p = malloc(count ? (size_t)count * size : 1);
  if (!p)
    ir_error(d, n->loc, "%s: out of memory for %lld scratch values", ir_op_info[n->op].name,
             (long long)count);
  return p;
}

/* x -> round(x / scale) + zero_point, saturated to the dtype's range. */
static bool eval_quantize(IrDiag *d, const IrNode *n, const Slot *const *a, Slot *r) {
  IrDType t;
  float scale;
  int32_t zp, qmin, qmax;
  if (!need_dtype(d, n, a, 0, DT(IR_F32), "f32") ||
      !read_dtype(d, n, IR_ATTR_DTYPE, DT(IR_U8) | DT(IR_I8), "u8 or i8", &t) ||
      !need_result_dtype(d, n, r, t) || !read_scale(d, n, IR_ATTR_SCALE, &scale) ||
      !read_zero_point(d, n, IR_ATTR_ZERO_POINT, t, &zp))
    return false;
  if (!same_shape(a[0], r))
    return bad_shapes(d, n, a, r);
  ir_qbounds(t, &qmin, &qmax);
  /* Dense, so the whole tensor is one row. */
  q8_ref_quantize(f32_of(a[0]), r->owned, r->numel, 1, r->numel, scale, zp, qmin, qmax,
                  t == IR_I8);
  return true;
}

/* q -> (float)(q - zero_point) * scale: one f32 multiply. */
static bool eval_dequantize(IrDiag *d, const IrNode *n, const Slot *const *a, Slot *r) {
  IrDType t = a[0]->type.dtype;
  float scale;
  int32_t zp;
  if (!need_dtype(d, n, a, 0, DT(IR_U8) | DT(IR_I8), "u8 or i8") ||
      !need_result_dtype(d, n, r, IR_F32) || !read_scale(d, n, IR_ATTR_SCALE, &scale) ||
      !read_zero_point(d, n, IR_ATTR_ZERO_POINT, t, &zp))
    return false;
  if (!same_shape(a[0], r))
    return bad_shapes(d, n, a, r);
  q8_ref_dequantize(a[0]->data, r->numel, f32_out(r), 1, r->numel, scale, zp, t == IR_I8);
  return true;
}

/* The attributes and shapes of qgemm and qlinear, read and checked once. */
typedef struct {
  IrDType xt;                  /* the input's dtype: f32, u8 or i8 */
  IrDType xq;                  /* its quantized type: x_dtype, or xt when integer */
  float x_scale;               /* 0 when not given (qgemm with an integer input) */
  int32_t x_zp, x_qmin, x_qmax;
  IrDType yt;                  /* the result's dtype: f32, u8 or i8 */
  float y_scale;               /* 0 when yt is f32 */
  int32_t y_zp, y_lo, y_qmax;  /* integer result range [y_lo, y_qmax]; relu raises y_lo */
  bool relu;
  int64_t rows, k, nout;
} QGemm;

/* `need_x`: the input's scale, zero point and x_dtype are required even for
 * an integer input (qlinear folds them; qgemm needs them only for f32). */
static bool read_qgemm(IrDiag *d, const IrNode *n, const Slot *const *a, const Slot *r,
                       bool need_x, bool one_ok, QGemm *p) {
  *p = (QGemm){.xt = a[0]->type.dtype};
  if (!need_dtype(d, n, a, 0, DT(IR_F32) | DT(IR_U8) | DT(IR_I8), "f32, u8 or i8") ||
      !need_dtype(d, n, a, 1, DT(IR_I8), "i8"))
    return false;
  need_x = need_x || p->xt == IR_F32;
  p->xq = p->xt;
  if (need_x || ir_has_attr(n, IR_ATTR_X_DTYPE)) {
    if (!read_dtype(d, n, IR_ATTR_X_DTYPE, DT(IR_U8) | DT(IR_I8), "u8 or i8", &p->xq))
      return false;
    if (p->xt != IR_F32 && p->xq != p->xt)
      return ir_error(d, n->loc, "%s: x_dtype %s does not match the input's type %s",
                      ir_op_info[n->op].name, ir_dtype_name(p->xq), ir_dtype_name(p->xt));
  }
  ir_qbounds(p->xq, &p->x_qmin, &p->x_qmax);
  if ((need_x || ir_has_attr(n, IR_ATTR_X_SCALE)) &&
      !read_scale(d, n, IR_ATTR_X_SCALE, &p->x_scale))
    return false;
  if ((need_x || ir_has_attr(n, IR_ATTR_X_ZERO_POINT)) &&
      !read_zero_point(d, n, IR_ATTR_X_ZERO_POINT, p->xq, &p->x_zp))
    return false;
  if (!read_dtype(d, n, IR_ATTR_DTYPE, DT(IR_F32) | DT(IR_U8) | DT(IR_I8), "u8, i8 or f32",
                  &p->yt) ||
      !need_result_dtype(d, n, r, p->yt) || !read_relu(d, n, &p->relu))
    return false;
  if (p->yt != IR_F32) {
    int32_t qmin;
    if (!read_scale(d, n, IR_ATTR_SCALE, &p->y_scale) ||
        !read_zero_point(d, n, IR_ATTR_ZERO_POINT, p->yt, &p->y_zp))
      return false;
    ir_qbounds(p->yt, &qmin, &p->y_qmax);
    /* relu clamps at the real 0, which is the zero point. */
    p->y_lo = p->relu && p->y_zp > qmin ? p->y_zp : qmin;
  }
  return linear_shapes(d, n, a, r, one_ok, &p->rows, &p->k, &p->nout);
}

/* The y_dtype code q8_ref_qgemm takes for a result dtype (Q8_DTYPE_*). */
static int ref_dtype(IrDType t) {
  switch (t) {
  case IR_F32: return 1;
  case IR_I8: return 2;
  case IR_U8: return 3;
  default: q8_unreachable();
  }
}

/* The integer GEMM of qgemm on the folded constants bias (i32 [N]) and mult
 * (f32 [N]), q8_ref_qgemm, on x as it is (u8, i8) or quantized with x_scale
 * and x_zp first (f32). The input's zero point is in bias already
 * (ir_fold_qlinear put it there), so the quantized x is used as it is. */
static bool run_qgemm(IrDiag *d, const IrNode *n, const QGemm *p, const Slot *x,
                      const int8_t *wq, const int32_t *bias, const float *mult, Slot *r) {
  const void *xq = x->data;
  void *owned = NULL;
  bool x_signed = p->xq == IR_I8;
  if (p->xt == IR_F32) {
    if (!(owned = scratch(d, n, x->numel, 1)))
      return false;
    q8_ref_quantize(f32_of(x), owned, p->k, p->rows, p->k, p->x_scale, p->x_zp, p->x_qmin,
                    p->x_qmax, x_signed);
    xq = owned;
  }
  q8_ref_qgemm(xq, p->k, x_signed, wq, bias, mult, r->owned, p->nout, ref_dtype(p->yt), p->rows,
               p->k, p->nout, p->y_zp, p->y_lo, p->y_qmax, p->relu);
  free(owned);
  return true;
}

/* x, Wq [N, K] i8, bias [N] i32, mult [N] f32: the folded form of qlinear. */
static bool eval_qgemm(IrDiag *d, const IrNode *n, const Slot *const *a, Slot *r) {
  QGemm p;
  if (!read_qgemm(d, n, a, r, false, false, &p) || !need_dtype(d, n, a, 2, DT(IR_I32), "i32") ||
      !need_dtype(d, n, a, 3, DT(IR_F32), "f32"))
    return false;
  return run_qgemm(d, n, &p, a[0], a[1]->data, a[2]->data, f32_of(a[3]), r);
}

/* x, Wq [N, K] i8, w_scale [N] or [1] f32, [b [N] f32]. Defined as its folded
 * form: ir_fold_qlinear's constants run through qgemm, so folding a qlinear
 * into a qgemm never changes a bit. */
static bool eval_qlinear(IrDiag *d, const IrNode *n, const Slot *const *a, Slot *r) {
  QGemm p;
  if (!read_qgemm(d, n, a, r, true, true, &p) || !need_dtype(d, n, a, 2, DT(IR_F32), "f32") ||
      (n->nopnds > 3 && !need_dtype(d, n, a, 3, DT(IR_F32), "f32")))
    return false;
  int32_t *bias = scratch(d, n, p.nout, sizeof *bias);
  float *mult = bias ? scratch(d, n, p.nout, sizeof *mult) : NULL;
  bool ok = bias && mult;
  if (ok) {
    /* ir_fold_qlinear only tells a length of 1 (per tensor) from any other. */
    int w_scale_len = a[2]->type.dims[0] == 1 ? 1 : (int)(p.nout < INT_MAX ? p.nout : INT_MAX);
    ir_fold_qlinear(a[1]->data, f32_of(a[2]), w_scale_len, n->nopnds > 3 ? f32_of(a[3]) : NULL,
                    p.nout, p.k, p.x_scale, p.x_zp, p.y_scale, bias, mult);
    ok = run_qgemm(d, n, &p, a[0], a[1]->data, bias, mult, r);
  }
  free(bias);
  free(mult);
  return ok;
}

/* x f32, Wq [N, K] i8, w_scale [N] or [1] f32, [b [N] f32] -> f32, each row
 * of x quantized to u8 with its own range (q8_ref_qlinear_dyn), or with
 * {granularity = tensor} the whole of x with one (q8_ref_qlinear_dyn_tensor). */
static bool eval_qlinear_dyn(IrDiag *d, const IrNode *n, const Slot *const *a, Slot *r) {
  int64_t rows, k, nout;
  if (!need_dtype(d, n, a, 0, DT(IR_F32), "f32") || !need_dtype(d, n, a, 1, DT(IR_I8), "i8") ||
      !need_dtype(d, n, a, 2, DT(IR_F32), "f32") ||
      (n->nopnds > 3 && !need_dtype(d, n, a, 3, DT(IR_F32), "f32")) ||
      !need_result_dtype(d, n, r, IR_F32) ||
      !linear_shapes(d, n, a, r, true, &rows, &k, &nout))
    return false;
  const float *b = n->nopnds > 3 ? f32_of(a[3]) : NULL;
  if (ir_attr_name(n, IR_ATTR_GRANULARITY, IR_DYN_ROW) == IR_DYN_TENSOR)
    q8_ref_qlinear_dyn_tensor(f32_of(a[0]), a[1]->data, f32_of(a[2]), a[2]->type.dims[0],
                              (int32_t)ir_attr_int(n, IR_ATTR_W_ZERO_POINT, 0), b, f32_out(r),
                              rows, k, nout);
  else
    q8_ref_qlinear_dyn(f32_of(a[0]), a[1]->data, f32_of(a[2]), a[2]->type.dims[0], b,
                       f32_out(r), rows, k, nout);
  return true;
}

/* x f32, Wq [N, K] i8, w_scale [N] or [1], Wt [K, N] f32, [b [N]] -> f32:
 * qlinear_dyn on the columns of x below the threshold, f32 on the others
 * (q8_ref_qlinear_outl). The shapes are qlinear_dyn's, Wt aside. */
static bool eval_qlinear_outl(IrDiag *d, const IrNode *n, const Slot *const *a, Slot *r) {
  const Slot *av[4];
  IrValue *ops[4];
  IrNode view = *n;
  view.nopnds = 0;
  for (int i = 0; i < n->nopnds; i++)
    if (i != 3) {
      av[view.nopnds] = a[i];
      ops[view.nopnds++] = n->opnds[i];
    }
  view.opnds = ops;
  view.opnd_locs = NULL;
  int64_t rows, k, nout;
  if (!need_dtype(d, n, a, 0, DT(IR_F32), "f32") || !need_dtype(d, n, a, 1, DT(IR_I8), "i8") ||
      !need_dtype(d, n, a, 2, DT(IR_F32), "f32") || !need_dtype(d, n, a, 3, DT(IR_F32), "f32") ||
      (n->nopnds > 4 && !need_dtype(d, n, a, 4, DT(IR_F32), "f32")) ||
      !need_result_dtype(d, n, r, IR_F32) ||
      !linear_shapes(d, &view, av, r, true, &rows, &k, &nout))
    return false;
  if (a[3]->type.rank != 2 || a[3]->type.dims[0] != k || a[3]->type.dims[1] != nout)
    return bad_shapes(d, n, a, r);
  float threshold = (float)ir_attr_float(n, IR_ATTR_THRESHOLD, 0);
  if (!(threshold > 0 && isfinite(threshold)))
    return ir_error(d, n->loc, "qlinear_outl: threshold must be a positive finite number");
  void *work = scratch(d, n, rows * k + k, sizeof(float));
  if (!work)
    return false;
  q8_ref_qlinear_outl(f32_of(a[0]), a[1]->data, f32_of(a[2]), a[2]->type.dims[0], f32_of(a[3]),
                      n->nopnds > 4 ? f32_of(a[4]) : NULL, threshold, f32_out(r), work, rows, k,
                      nout);
  free(work);
  return true;
}

/* x [..., M, K] and b [..., K, N] (the same leading dims) give r [..., M, N]:
 * the batch count and M, K, N. */
static bool qmatmul_shapes(IrDiag *d, const IrNode *n, const Slot *const *a, const Slot *r,
                           int64_t *batch, int64_t *mm, int64_t *k, int64_t *nn) {
  const Slot *x = a[0], *b = a[1];
  int rank = x->type.rank;
  if (rank < 2 || b->type.rank != rank || r->type.rank != rank ||
      !same_dims(x->type.dims, b->type.dims, rank - 2) ||
      !same_dims(x->type.dims, r->type.dims, rank - 2))
    return bad_shapes(d, n, a, r);
  *mm = x->type.dims[rank - 2];
  *k = x->type.dims[rank - 1];
  *nn = b->type.dims[rank - 1];
  if (b->type.dims[rank - 2] != *k || r->type.dims[rank - 2] != *mm ||
      r->type.dims[rank - 1] != *nn)
    return bad_shapes(d, n, a, r);
  *batch = prod(x->type.dims, 0, rank - 2);
  return true;
}

/* Operand `i` of a qmatmul as the quantized bytes the arithmetic reads: as
 * it is when u8/i8 (its dtype must be the side's), else quantized with the
 * side's parameters into *owned. Reads the parameters into *q. The right
 * operand of a qmatmul with b_bits = 7 is clamped to its 7-bit window
 * (ir_qbounds_bits): quantized with those bounds, or an integer copy
 * clamped. */
static bool qmatmul_operand(IrDiag *d, const IrNode *n, const Slot *const *a, int i,
                            IrQSide side, IrQParams *q, const void **data, void **owned) {
  int bits = side == IR_QPARAMS_B ? (int)ir_attr_int(n, IR_ATTR_B_BITS, 8) : 8;
  if (bits != 7 && bits != 8)
    return ir_error(d, n->loc, "qmatmul: b_bits must be 7 or 8, not %d", bits);
  IrAttrKey k[3];
  ir_qparams_keys(side, k);
  IrDType t = a[i]->type.dtype;
  *owned = NULL;
  if (!need_dtype(d, n, a, i, DT(IR_F32) | DT(IR_U8) | DT(IR_I8), "f32, u8 or i8") ||
      !read_dtype(d, n, k[2], DT(IR_U8) | DT(IR_I8), "u8 or i8", &q->dtype) ||
      !read_scale(d, n, k[0], &q->scale) ||
      !read_zero_point(d, n, k[1], q->dtype, &q->zero_point))
    return false;
  if (t != IR_F32 && t != q->dtype)
    return ir_error(d, n->loc, "qmatmul: %s %s does not match the type %s of %s%s",
                    ir_attr_info[k[2]].key, ir_dtype_name(q->dtype), ir_dtype_name(t),
                    sigil(a[i]->value), a[i]->value->name);
  *data = a[i]->data;
  int32_t qmin, qmax;
  ir_qbounds_bits(q->dtype, bits, &qmin, &qmax);
  if (t == IR_F32) {
    if (!(*owned = scratch(d, n, a[i]->numel, 1)))
      return false;
    q8_ref_quantize(f32_of(a[i]), *owned, a[i]->numel, 1, a[i]->numel, q->scale, q->zero_point,
                    qmin, qmax, q->dtype == IR_I8);
    *data = *owned;
  } else if (bits == 7) {
    if (!(*owned = scratch(d, n, a[i]->numel, 1)))
      return false;
    for (int64_t e = 0; e < a[i]->numel; e++) {
      int32_t v = t == IR_I8 ? ((const int8_t *)a[i]->data)[e] : ((const uint8_t *)a[i]->data)[e];
      v = v < qmin ? qmin : v > qmax ? qmax : v;
      if (t == IR_I8)
        ((int8_t *)*owned)[e] = (int8_t)v;
      else
        ((uint8_t *)*owned)[e] = (uint8_t)v;
    }
    *data = *owned;
  }
  return true;
}

/* x, b (f32, u8 or i8) -> f32, u8 or i8: q8_ref_qmatmul on both operands
 * quantized, with the one multiplier ir_qmatmul_mult gives. */
static bool eval_qmatmul(IrDiag *d, const IrNode *n, const Slot *const *a, Slot *r) {
  int64_t batch, mm, k, nn;
  IrQParams px, pb, py = {0};
  IrDType yt;
  if (!read_dtype(d, n, IR_ATTR_DTYPE, DT(IR_F32) | DT(IR_U8) | DT(IR_I8), "u8, i8 or f32",
                  &yt) ||
      !need_result_dtype(d, n, r, yt) || !qmatmul_shapes(d, n, a, r, &batch, &mm, &k, &nn))
    return false;
  int32_t y_min = 0, y_max = 0;
  if (yt != IR_F32) {
    if (!read_scale(d, n, IR_ATTR_SCALE, &py.scale) ||
        !read_zero_point(d, n, IR_ATTR_ZERO_POINT, yt, &py.zero_point))
      return false;
    ir_qbounds(yt, &y_min, &y_max);
  }
  const void *xq, *bq;
  void *xo = NULL, *bo = NULL;
  bool ok = qmatmul_operand(d, n, a, 0, IR_QPARAMS_IN, &px, &xq, &xo) &&
            qmatmul_operand(d, n, a, 1, IR_QPARAMS_B, &pb, &bq, &bo);
  if (ok)
    q8_ref_qmatmul(xq, k, px.dtype == IR_I8, px.zero_point, bq, nn, pb.dtype == IR_I8,
                   pb.zero_point, r->owned, nn, ref_dtype(yt),
                   ir_qmatmul_mult(px.scale, pb.scale, py.scale), py.zero_point, y_min, y_max,
                   batch, mm, k, nn);
  free(xo);
  free(bo);
  return ok;
}

/* x, b f32 -> f32, quantized at run time: each row of x and each matrix of
 * b to u8 with its own range (q8_ref_qmatmul_dyn). */
static bool eval_qmatmul_dyn(IrDiag *d, const IrNode *n, const Slot *const *a, Slot *r) {
  int64_t batch, mm, k, nn;
  if (!need_dtype(d, n, a, 0, DT(IR_F32), "f32") || !need_dtype(d, n, a, 1, DT(IR_F32), "f32") ||
      !need_result_dtype(d, n, r, IR_F32) || !qmatmul_shapes(d, n, a, r, &batch, &mm, &k, &nn))
    return false;
  void *work = scratch(d, n, k * nn + k, 1);
  if (!work)
    return false;
  q8_ref_qmatmul_dyn(f32_of(a[0]), f32_of(a[1]), f32_out(r), work, batch, mm, k, nn);
  free(work);
  return true;
}

/* x f32 [..., K], w u8 [N, K/2], absmax f32 [N, K/block] (or u8 with
 * double_quant, then absmax2 f32), [b f32 [N]] -> f32 [..., N]
 * (q8_ref_linear_4bit; the shapes are infer_linear_4bit's). */
static bool eval_linear_4bit(IrDiag *d, const IrNode *n, const Slot *const *a, Slot *r) {
  int64_t block = ir_attr_int(n, IR_ATTR_BLOCK, 64), dq = ir_attr_int(n, IR_ATTR_DOUBLE_QUANT, 0);
  int nfixed = dq ? 4 : 3;
  if ((block != 32 && block != 64 && block != 128 && block != 256) || (dq != 0 && dq != 1) ||
      n->nopnds < nfixed || n->nopnds > nfixed + 1)
    return ir_error(d, n->loc, "linear_4bit: bad block, double_quant or operand count");
  if (!need_dtype(d, n, a, 0, DT(IR_F32), "f32") || !need_dtype(d, n, a, 1, DT(IR_U8), "u8") ||
      !need_dtype(d, n, a, 2, DT(dq ? IR_U8 : IR_F32), dq ? "u8" : "f32") ||
      (dq && !need_dtype(d, n, a, 3, DT(IR_F32), "f32")) ||
      (n->nopnds > nfixed && !need_dtype(d, n, a, nfixed, DT(IR_F32), "f32")) ||
      !need_result_dtype(d, n, r, IR_F32))
    return false;
  const IrType *xt = &a[0]->type, *wt = &a[1]->type, *at = &a[2]->type;
  int rank = xt->rank;
  if (rank < 1 || r->type.rank != rank || wt->rank != 2 || at->rank != 2)
    return bad_shapes(d, n, a, r);
  int64_t k = xt->dims[rank - 1], nout = wt->dims[0], rows = prod(xt->dims, 0, rank - 1);
  int64_t groups = k % block == 0 ? nout * (k / block) : -1;
  if (groups < 0 || wt->dims[1] != k / 2 || at->dims[0] != nout || at->dims[1] != k / block ||
      r->type.dims[rank - 1] != nout || !same_dims(xt->dims, r->type.dims, rank - 1) ||
      (dq && (a[3]->type.rank != 1 || a[3]->type.dims[0] != (groups + 255) / 256 + 1)) ||
      (n->nopnds > nfixed && (a[nfixed]->type.rank != 1 || a[nfixed]->type.dims[0] != nout)))
    return bad_shapes(d, n, a, r);
  q8_ref_linear_4bit(f32_of(a[0]), a[1]->data, a[2]->data, dq ? f32_of(a[3]) : NULL,
                     ir_attr_name(n, IR_ATTR_CODE, 0), n->nopnds > nfixed ? f32_of(a[nfixed]) : NULL,
                     f32_out(r), rows, k, nout, block);
  return true;
}

/* x f32, Wq [N, K] i8, w_scale [N, K / G] f32, [w_zero [N, K / G] i8],
 * [b [N] f32] -> f32 (q8_ref_qlinear_grp; infer_qlinear_grp checked the
 * shapes of the operands). */
static bool eval_qlinear_grp(IrDiag *d, const IrNode *n, const Slot *const *a, Slot *r) {
  bool has_zero = n->nopnds > 3 && a[3]->type.dtype == IR_I8;
  int bias_at = has_zero ? 4 : 3;
  if (!need_dtype(d, n, a, 0, DT(IR_F32), "f32") || !need_dtype(d, n, a, 1, DT(IR_I8), "i8") ||
      !need_dtype(d, n, a, 2, DT(IR_F32), "f32") ||
      (n->nopnds > bias_at && !need_dtype(d, n, a, bias_at, DT(IR_F32), "f32")) ||
      !need_result_dtype(d, n, r, IR_F32))
    return false;
  const Slot *x = a[0], *w = a[1];
  int rank = x->type.rank;
  int64_t k = x->type.dims[rank - 1], nout = w->type.dims[0];
  int64_t g = ir_attr_int(n, IR_ATTR_GROUP, 0);
  if (rank < 1 || w->type.rank != 2 || w->type.dims[1] != k || r->type.rank != rank ||
      r->type.dims[rank - 1] != nout || g < 1 || g > 256 || k % g != 0 ||
      a[2]->type.rank != 2 || a[2]->type.dims[0] != nout || a[2]->type.dims[1] != k / g)
    return bad_shapes(d, n, a, r);
  q8_ref_qlinear_grp(f32_of(x), w->data, f32_of(a[2]), has_zero ? a[3]->data : NULL,
                     n->nopnds > bias_at ? f32_of(a[bias_at]) : NULL, f32_out(r),
                     prod(x->type.dims, 0, rank - 1), k, nout, g);
  return true;
}

static EvalFn *const eval_table[IR_OP_COUNT] = {
#define OP(ID, name, minops, maxops, attrs) [IR_OP_##ID] = eval_##name,
#include "ops.def"
#undef OP
};

/* ---- running a module ---- */

/* Give slot `s` the type of `v` with `?` bound, and room for its elements when
 * `alloc` is set. */
static bool bind_slot(IrDiag *d, const IrValue *v, int64_t batch, bool alloc, Slot *s) {
  char buf[160];
  s->value = v;
  if (v->type.dtype <= IR_DTYPE_NONE || v->type.dtype >= IR_DTYPE_COUNT || v->type.rank < 0 ||
      v->type.rank > IR_MAX_RANK)
    return ir_error(d, v->loc, "%s%s has no type; shapes must be inferred before running",
                    sigil(v), v->name);
  s->type = ir_type_bind(&v->type, batch);
  char why[192];
  if (!ir_type_bytes(&s->type, batch, &s->bytes, why, sizeof why))
    return ir_error(d, v->loc, "%s%s : %s with the batch size %lld %s", sigil(v), v->name,
                    ir_type_str(&v->type, buf, sizeof buf), (long long)batch, why);
  ir_type_numel(&s->type, batch, &s->numel);
  if (!alloc)
    return true;
  if (!(s->owned = malloc(s->bytes ? s->bytes : 1)))
    return ir_error(d, (IrLoc){0}, "out of memory for %s%s (%lld elements of %s)", sigil(v),
                    v->name, (long long)s->numel, ir_dtype_name(s->type.dtype));
  return true;
}

/* Inputs come in the module input's own dtype, with `?` bound; at the
 * quantized entry, those with a quantized form come in it (its layers then
 * read the integers as they are). */
static bool bind_inputs(IrModule *m, int64_t batch, bool quantized, const IrTensor *inputs,
                        Slot *slots) {
  char b1[160], b2[160];
  if (m->ninputs && !inputs)
    return ir_error(&m->diag, (IrLoc){0}, "the model has %d inputs but none were given",
                    m->ninputs);
  for (int i = 0; i < m->ninputs; i++) {
    const IrValue *v = m->inputs[i];
    const IrTensor *t = &inputs[i];
    Slot *s = &slots[v->id];
    if (!bind_slot(&m->diag, v, batch, false, s))
      return false;
    if (ir_boundary_dtype(v, quantized) != s->type.dtype) {
      s->type.dtype = ir_boundary_dtype(v, quantized);
      s->bytes = (size_t)s->numel * ir_dtype_size(s->type.dtype);
    }
    if (t->type.dtype != s->type.dtype)
      return ir_error(&m->diag, (IrLoc){0}, "input '%s' is %s but the model expects %s",
                      v->name, ir_type_str(&t->type, b1, sizeof b1),
                      ir_type_str(&s->type, b2, sizeof b2));
    if (t->type.rank != s->type.rank || !same_dims(t->type.dims, s->type.dims, s->type.rank))
      return ir_error(&m->diag, (IrLoc){0}, "input '%s' has shape %s but the model expects %s",
                      v->name, ir_dims_str(t->type.dims, t->type.rank, b1, sizeof b1),
                      ir_type_str(&s->type, b2, sizeof b2));
    if (!t->data && s->numel)
      return ir_error(&m->diag, (IrLoc){0}, "input '%s' has no data", v->name);
    s->data = t->data;
  }
  return true;
}

/* Constants are read in place, in their own dtype: float ops accept only f32
 * ones, quantized ops read integer ones as the integers they are. */
static bool load_consts(IrModule *m, int64_t batch, Slot *slots) {
  for (int i = 0; i < m->nconsts; i++) {
    const IrValue *v = m->consts[i];
    Slot *s = &slots[v->id];
    if (!bind_slot(&m->diag, v, batch, false, s))
      return false;
    if (!ir_const_has_data(v) && s->numel)
      return ir_error(&m->diag, v->loc, "constant @%s has no data", v->name);
    s->data = (void *)ir_const_data(m, v);
  }
  return true;
}

/* The slot of operand `v`, or NULL with a message when `v` is not a value of
 * this module computed before this node. */
static const Slot *operand(IrModule *m, const IrNode *n, const IrValue *v, Slot *slots,
                           int count) {
  if (!v || v->id < 0 || v->id >= count || slots[v->id].value != v) {
    ir_error(&m->diag, n->loc, "%s: an operand is not a value of this module",
             ir_op_info[n->op].name);
    return NULL;
  }
  const Slot *s = &slots[v->id];
  if (!s->data && s->numel) {
    ir_error(&m->diag, n->loc, "%%%s is used before it is computed", v->name);
    return NULL;
  }
  return s;
}

static bool check_node(IrDiag *d, const IrNode *n) {
  if ((unsigned)n->op >= IR_OP_COUNT || n->nopnds < ir_op_info[n->op].min_operands ||
      n->nopnds > ir_op_info[n->op].max_operands || n->nopnds > MAX_OPERANDS || !n->result)
    return ir_error(d, n->loc, "node %%%s has a bad op or operand count",
                    n->result ? n->result->name : "?");
  return true;
}

/* Bind the result slot of `n` and compute it from `args`. */
static bool eval_node(IrDiag *d, const IrNode *n, int64_t batch, const Slot *const *args,
                      Slot *r) {
  if (!bind_slot(d, n->result, batch, true, r) || !eval_table[n->op](d, n, args, r))
    return false;
  r->data = r->owned;
  return true;
}

static bool run_nodes(IrModule *m, int64_t batch, Slot *slots, int count, IrObserver observe,
                      void *user) {
  for (int i = 0; i < m->nnodes; i++) {
    const IrNode *n = m->nodes[i];
    if (!check_node(&m->diag, n))
      return false;
    const Slot *args[MAX_OPERANDS];
    for (int j = 0; j < n->nopnds; j++)
      if (!(args[j] = operand(m, n, n->opnds[j], slots, count)))
        return false;
    Slot *r = &slots[n->result->id];
    if (!eval_node(&m->diag, n, batch, args, r))
      return false;
    if (observe) {
      IrTensor t = {r->type, r->owned};
      observe(user, n, &t);
    }
  }
  return true;
}

/* Outputs are copies: one value may be output twice, or be an input or a
 * constant the interpreter does not own. At the quantized entry an output
 * with a quantized form is quantized into the copy. */
static bool copy_outputs(IrModule *m, bool quantized, const Slot *slots, IrTensor *outputs) {
  for (int i = 0; i < m->noutputs; i++) {
    const IrValue *v = m->outputs[i];
    const Slot *s = &slots[v->id];
    bool quantize = quantized && v->has_qform && s->type.dtype == IR_F32;
    size_t bytes = quantize ? (size_t)s->numel : s->bytes;
    void *p = malloc(bytes ? bytes : 1);
    if (!p) {
      for (int j = 0; j < i; j++) {
        free(outputs[j].data);
        outputs[j].data = NULL;
      }
      return ir_error(&m->diag, (IrLoc){0}, "out of memory for output %s%s",
                      sigil(s->value), s->value->name);
    }
    outputs[i].type = s->type;
    outputs[i].data = p;
    if (quantize) {
      const IrQParams *q = &v->qform;
      int32_t qmin, qmax;
      ir_qbounds(q->dtype, &qmin, &qmax);
      q8_ref_quantize(s->data, p, s->numel, 1, s->numel, q->scale, q->zero_point, qmin, qmax,
                      q->dtype == IR_I8);
      outputs[i].type.dtype = q->dtype;
    } else if (s->bytes) {
      memcpy(p, s->data, s->bytes);
    }
  }
  return true;
}

static bool interp(IrModule *m, int64_t batch, bool quantized, const IrTensor *inputs,
                   IrTensor *outputs, IrObserver observe, void *user) {
  if (m->noutputs && !outputs)
    return ir_error(&m->diag, (IrLoc){0}, "no room was given for the %d outputs", m->noutputs);
  for (int i = 0; i < m->noutputs; i++)
    outputs[i].data = NULL;
  int count = ir_number_values(m);
  Slot *slots = calloc(count ? (size_t)count : 1, sizeof *slots);
  if (!slots)
    return ir_error(&m->diag, (IrLoc){0}, "out of memory for %d values", count);
  bool ok = bind_inputs(m, batch, quantized, inputs, slots) && load_consts(m, batch, slots) &&
            run_nodes(m, batch, slots, count, observe, user);
  /* An output that is none of the module's values would index past slots. */
  for (int i = 0; ok && i < m->noutputs; i++) {
    const IrValue *v = m->outputs[i];
    if (v->id < 0 || v->id >= count || slots[v->id].value != v || (!slots[v->id].data &&
                                                                     slots[v->id].numel))
      ok = ir_error(&m->diag, m->output_locs ? m->output_locs[i] : (IrLoc){0},
                    "output %s is not a computed value of this module", v->name);
  }
  ok = ok && copy_outputs(m, quantized, slots, outputs);
  for (int i = 0; i < count; i++)
    free(slots[i].owned);
  free(slots);
  return ok;
}

bool ir_interp_f32(IrModule *m, int64_t batch, const IrTensor *inputs, IrTensor *outputs,
                   IrObserver observe, void *user) {
  return interp(m, batch, false, inputs, outputs, observe, user);
}

bool ir_interp_quantized(IrModule *m, int64_t batch, const IrTensor *inputs, IrTensor *outputs) {
  return interp(m, batch, true, inputs, outputs, NULL, NULL);
}

/* The node alone: its operands come from `opnds`, or from the module for
 * constants left without data; no other value of the module is touched. */
bool ir_interp_node(IrModule *m, const IrNode *n, int64_t batch, const IrTensor *opnds,
                    IrTensor *out) {
  char b1[160], b2[160];
  if (!out)
    return ir_error(&m->diag, (IrLoc){0}, "no room was given for the result");
  out->data = NULL;
  if (!n)
    return ir_error(&m->diag, (IrLoc){0}, "no node was given");
  if (!check_node(&m->diag, n))
    return false;
  Slot slots[MAX_OPERANDS] = {{0}}, r = {0};
  const Slot *args[MAX_OPERANDS];
  for (int i = 0; i < n->nopnds; i++) {
    const IrValue *v = n->opnds[i];
    const IrTensor *t = opnds ? &opnds[i] : NULL;
    Slot *s = &slots[i];
    if (!v)
      return ir_error(&m->diag, n->loc, "%s: operand %d is missing", ir_op_info[n->op].name, i);
    if (!bind_slot(&m->diag, v, batch, false, s))
      return false;
    if (t && t->data) {
      if (t->type.dtype != s->type.dtype || t->type.rank != s->type.rank ||
          !same_dims(t->type.dims, s->type.dims, s->type.rank))
        return ir_error(&m->diag, n->loc,
                        "%s: operand %s%s was given as %s but the node expects %s",
                        ir_op_info[n->op].name, sigil(v), v->name,
                        ir_type_str(&t->type, b1, sizeof b1),
                        ir_type_str(&s->type, b2, sizeof b2));
      s->data = t->data;
    } else if (v->kind == IR_VAL_CONST && (ir_const_has_data(v) || !s->numel)) {
      s->data = (void *)ir_const_data(m, v);
    } else if (s->numel) {
      return ir_error(&m->diag, n->loc, "%s: operand %s%s has no data%s", ir_op_info[n->op].name,
                      sigil(v), v->name,
                      v->kind == IR_VAL_CONST ? "" : " (only constants may be left without)");
    }
    args[i] = s;
  }
  if (!eval_node(&m->diag, n, batch, args, &r)) {
    free(r.owned);
    return false;
  }
  out->type = r.type;
  out->data = r.owned;
  return true;
}
