/* onnx.c: an ONNX model (protobuf, onnx_read.c) to an IrModule.
 *
 * The graph's nodes are sorted (a cycle or an input nobody defines is an
 * error), then translated one by one. Each ONNX value becomes one of:
 *
 *   CONST  a tensor known at import time: initializers, Constant nodes and
 *          everything computed from them alone (shape subgraphs: Shape of a
 *          value whose type is known, Gather, Unsqueeze, Concat, ...) is
 *          folded here; it becomes an IR constant only when an IR op uses it;
 *   IR     an IR value (a graph input or a node's result);
 *   ACC    MatMulInteger's int32 result (ACCF: cast to float), which
 *          becomes a qgemm when Mul by a constant scale completes the
 *          pattern MatMulInteger -> Cast -> Mul.
 *
 * A value produced by DequantizeLinear remembers its quantized origin, so that
 * MatMul/Gemm between dequantized operands (the QDQ form of ONNX Runtime's
 * quantizer) becomes a qgemm on the integers with the model's own scales and
 * zero points. Two float patterns are recognised before translation: the
 * Erf form of GELU and the decomposed LayerNorm that opsets below 17 export.
 * docs/import.md lists the ops and the arithmetic. */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "onnx_internal.h"

typedef enum { OV_CONST, OV_IR, OV_ACC, OV_ACCF } OvKind;

typedef struct {
  OvKind kind;
  HTensor t;        /* OV_CONST */
  IrValue *ir;      /* OV_IR; OV_ACC/ACCF: MatMulInteger's quantized input A */
  int32_t acc_zp;   /* OV_ACC/ACCF: A's zero point (B is in q) */
  IrValue *ir_const;/* OV_CONST made into an IR constant (f32), once */
  const char *name; /* the ONNX name */
  /* Quantized origin (DequantizeLinear): the integer tensor or IR value, its
   * scale (f32, scalar or per axis) and zero point. */
  bool has_q;
  HTensor q;
  IrValue *q_ir;
  HTensor qscale, qzero;
  int qaxis;
  /* A qgemm made here with f32 output, whose int32 bias a following Add of a
   * quantized bias may still fold into. */
  int32_t *qg_bias;
  const float *qg_mult;
  int64_t qg_n;
  int uses; /* consumers among the nodes, plus graph outputs */
} OVal;

typedef struct {
  const char *key;
  OVal *val;
} Slot;

typedef struct Imp Imp;
typedef bool (*TrFn)(Imp *, int);

typedef struct {
  const char *op;
  int min_inputs; /* required inputs, before the optional ones */
  TrFn fn;
  const char *attrs; /* the attributes it accepts, space-separated */
} OpEntry;

/* What a node became in the pattern pre-pass. */
enum { NODE_PLAIN, NODE_SKIP, NODE_GELU, NODE_LAYERNORM };

struct Imp {
  OnnxCtx c;
  ObBuild b;  /* the IR being built (onnx_build.c) */
  IrModule *m;
  const Onnx__GraphProto *g;
  int64_t opset;
  Slot *slots;
  size_t cap;
  int *order;       /* the nodes, sorted */
  int *role;        /* NODE_* per node */
  const char **pat_x;      /* NODE_GELU/LAYERNORM: the pattern's input */
  const char **pat_gamma, **pat_beta;
  double *pat_eps;
  int cur;          /* the node being translated */
};

/* ---- names ---- */

static size_t hash_str(const char *s) {
  size_t h = 14695981039346656037u;
  for (; *s; s++)
    h = (h ^ (unsigned char)*s) * 1099511628211u;
  return h;
}

static OVal *find(const Imp *im, const char *name) {
  for (size_t i = hash_str(name) & (im->cap - 1); im->slots[i].key; i = (i + 1) & (im->cap - 1))
    if (strcmp(im->slots[i].key, name) == 0)
      return im->slots[i].val;
  return NULL;
}

static OVal *define(Imp *im, const char *name) {
  size_t i = hash_str(name) & (im->cap - 1);
  for (; im->slots[i].key; i = (i + 1) & (im->cap - 1))
    if (strcmp(im->slots[i].key, name) == 0)
      return im->slots[i].val; /* redefinition: refused by the caller's check */
  OVal *v = ir_alloc(im->m->arena, sizeof *v);
  v->name = ir_strdup(im->m->arena, name);
  im->slots[i] = (Slot){v->name, v};
  return v;
}

/* An ONNX name in the IR's name characters (letters, digits, `_`, `.`):
 * "/fc1/Gemm_output_0" -> "fc1_Gemm_output_0", "onnx::MatMul_7" ->
 * "onnx_MatMul_7". */
static const char *sanitize(Imp *im, const char *s) {
  size_t n = strlen(s);
  char *out = ir_alloc(im->m->arena, n + 2);
  size_t k = 0;
  for (size_t i = 0; i < n; i++) {
    char ch = s[i];
    bool ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '_' || ch == '.';
    if (ok)
      out[k++] = ch;
    else if (k > 0 && out[k - 1] != '_')
      out[k++] = '_';
  }
  while (k > 0 && out[k - 1] == '_')
    k--;
  if (k == 0)
    out[k++] = 'v';
  out[k] = '\0';
  return out;
}

/* ---- diagnostics ---- */

static const Onnx__NodeProto *node(const Imp *im, int i) { return im->g->node[i]; }

static bool fail(Imp *im, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static bool fail(Imp *im, const char *fmt, ...) {
  char msg[2048];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  if (im->cur < 0)
    return ir_error(&im->m->diag, (IrLoc){0}, "%s", msg);
  const Onnx__NodeProto *n = node(im, im->cur);
  const char *name = onnx_str(n->name);
  return ir_error(&im->m->diag, (IrLoc){0}, "node %d%s%s%s (%s, opset %lld): %s", im->cur,
                  *name ? " '" : "", name, *name ? "'" : "", onnx_str(n->op_type),
                  (long long)im->opset, msg);
}

/* An IR error (from shape inference) with the node named in front. */
static bool rewrap(Imp *im) {
  char msg[sizeof im->m->diag.msg];
  const char *p = strstr(im->m->diag.msg, ": error: ");
  snprintf(msg, sizeof msg, "%s", p ? p + 9 : im->m->diag.msg);
  size_t l = strcspn(msg, "\n");
  msg[l] = '\0';
  im->m->diag.failed = false;
  return fail(im, "%s", msg);
}

/* ---- attributes ---- */

static const Onnx__AttributeProto *attr(const Imp *im, const char *name) {
  const Onnx__NodeProto *n = node(im, im->cur);
  for (size_t i = 0; i < n->n_attribute; i++)
    if (strcmp(onnx_str(n->attribute[i]->name), name) == 0)
      return n->attribute[i];
  return NULL;
}

static int64_t attr_int(const Imp *im, const char *name, int64_t dflt) {
  const Onnx__AttributeProto *a = attr(im, name);
  return a && a->has_i ? a->i : dflt;
}

static double attr_float(const Imp *im, const char *name, double dflt) {
  const Onnx__AttributeProto *a = attr(im, name);
  return a && a->has_f ? a->f : dflt;
}

/* ---- operands ---- */

static int ninputs(const Imp *im) {
  /* Trailing empty names are absent optional inputs. */
  const Onnx__NodeProto *n = node(im, im->cur);
  int k = (int)n->n_input;
  while (k > 0 && !*onnx_str(n->input[k - 1]))
    k--;
  return k;
}

static OVal *in(Imp *im, int i) {
  const Onnx__NodeProto *n = node(im, im->cur);
  if (i >= (int)n->n_input || !*onnx_str(n->input[i]))
    return NULL;
  return find(im, n->input[i]);
}

static const char *out_name(const Imp *im, int i) { return node(im, im->cur)->output[i]; }

static OVal *def_out(Imp *im, int i, OvKind kind) {
  OVal *v = define(im, out_name(im, i));
  v->kind = kind;
  return v;
}

static bool set_ir(Imp *im, int i, IrValue *ir) {
  if (!ir)
    return rewrap(im);
  OVal *v = def_out(im, i, OV_IR);
  v->ir = ir;
  return true;
}

static bool set_const(Imp *im, int i, const HTensor *t) {
  OVal *v = def_out(im, i, OV_CONST);
  v->t = *t;
  return true;
}

static const char *kind_what(OvKind k) {
  switch (k) {
  case OV_ACC: return "the int32 result of MatMulInteger";
  case OV_ACCF: return "MatMulInteger's result cast to float";
  default: return "a value";
  }
}

/* Operand i as an IR value: a constant is made into one (f32). */
static IrValue *need_ir(Imp *im, int i) {
  OVal *v = in(im, i);
  if (!v) {
    fail(im, "input %d is missing", i);
    return NULL;
  }
  if (v->kind == OV_IR)
    return v->ir;
  if (v->kind != OV_CONST) {
    fail(im, "input '%s' is %s; q8c maps MatMulInteger only in the pattern MatMulInteger -> "
             "Cast(FLOAT) -> Mul(constant scale) (docs/import.md)",
         v->name, kind_what(v->kind));
    return NULL;
  }
  if (!v->ir_const) {
    if (v->t.dt != H_F32) {
      fail(im, "constant '%s' is %s; float ops take f32", v->name, onnx_hname(v->t.dt));
      return NULL;
    }
    v->ir_const = ob_const(&im->b, sanitize(im, v->name), &v->t);
  }
  return v->ir_const;
}

static const HTensor *need_const(Imp *im, int i, const char *what) {
  OVal *v = in(im, i);
  if (!v || v->kind != OV_CONST) {
    fail(im, "%s (input %d) must be a constant (an initializer or computed from them)", what, i);
    return NULL;
  }
  return &v->t;
}

static bool is_const(Imp *im, int i) {
  OVal *v = in(im, i);
  return v && v->kind == OV_CONST;
}

/* A scalar constant (or one of a single element). */
static bool need_scalar(Imp *im, int i, const char *what, double *out) {
  const HTensor *t = need_const(im, i, what);
  if (!t)
    return false;
  if (t->numel != 1)
    return fail(im, "%s must have one element, has %lld", what, (long long)t->numel);
  *out = onnx_hget(t, 0);
  return true;
}

static HTensor new_tensor(Imp *im, HDType dt, int rank, const int64_t *dims, bool *ok) {
  HTensor t;
  char err[256];
  *ok = onnx_htensor_new(im->m->arena, dt, rank, dims, &t, err, sizeof err);
  if (!*ok)
    fail(im, "result %s", err);
  return t;
}

/* Element i = v, converted as a C cast would but defined for every v:
 * integers saturate to their type, NaN becomes 0. */
static void hset(HTensor *t, int64_t i, double v) {
  int64_t k = onnx_to_i64(v);
  switch (t->dt) {
  case H_F32: ((float *)t->data)[i] = (float)v; break;
  case H_I64: ((int64_t *)t->data)[i] = k; break;
  case H_I32: ((int32_t *)t->data)[i] = (int32_t)(k < INT32_MIN ? INT32_MIN : k > INT32_MAX ? INT32_MAX : k); break;
  case H_I8: ((int8_t *)t->data)[i] = (int8_t)(k < -128 ? -128 : k > 127 ? 127 : k); break;
  case H_U8: ((uint8_t *)t->data)[i] = (uint8_t)(k < 0 ? 0 : k > 255 ? 255 : k); break;
  }
}

/* An axis in [-rank, rank) as [0, rank); -1 when out of range. */
static int norm_axis(int64_t axis, int rank) {
  if (axis < -rank || axis >= rank)
    return -1;
  return (int)(axis < 0 ? axis + rank : axis);
}

static const IrType *ir_type_of(OVal *v) { return &v->ir->type; }

/* ---- float ops ---- */

static bool tr_identity(Imp *im, int ni) {
  OVal *v = in(im, 0), *o = def_out(im, 0, v->kind);
  OVal keep = *o;
  *o = *v;
  o->name = keep.name;
  o->uses = keep.uses;
  o->ir_const = v->ir_const;
  return true;
}

static bool unary(Imp *im, IrOp op) {
  IrValue *x = need_ir(im, 0);
  return x && set_ir(im, 0, ob_node(&im->b, op, sanitize(im, out_name(im, 0)), &x, 1, NULL, 0));
}

static bool tr_relu(Imp *im, int ni) { return unary(im, IR_OP_RELU); }

static bool tr_gelu(Imp *im, int ni) {
  const Onnx__AttributeProto *a = attr(im, "approximate");
  if (a && a->has_s && !(a->s.len == 4 && memcmp(a->s.data, "none", 4) == 0))
    return fail(im, "approximate='%.*s' is not supported (q8c's gelu is the erf form)",
                (int)a->s.len, (const char *)a->s.data);
  return unary(im, IR_OP_GELU);
}

static bool tr_softmax(Imp *im, int ni) {
  IrValue *x = need_ir(im, 0);
  if (!x)
    return false;
  int rank = x->type.rank;
  int axis = norm_axis(attr_int(im, "axis", im->opset >= 13 ? -1 : 1), rank);
  /* Before opset 13 Softmax flattens to 2-D at `axis`: at the last axis that
   * is the same as over the last axis. */
  if (axis != rank - 1)
    return fail(im, "softmax over axis %d of a rank-%d tensor: q8c's softmax is over the last "
                    "axis only",
                axis, rank);
  return set_ir(im, 0, ob_node(&im->b, IR_OP_SOFTMAX, sanitize(im, out_name(im, 0)), &x, 1, NULL, 0));
}

static IrValue *vec_const(Imp *im, int i, int64_t d, const char *what, float fill) {
  HTensor t;
  bool ok;
  if (in(im, i)) {
    const HTensor *c = need_const(im, i, what);
    if (!c)
      return NULL;
    if (c->dt != H_F32 || c->numel != d) {
      fail(im, "%s must be f32 with %lld elements", what, (long long)d);
      return NULL;
    }
    t = new_tensor(im, H_F32, 1, &d, &ok);
    if (!ok)
      return NULL;
    memcpy(t.data, c->data, (size_t)d * 4);
    return ob_const(&im->b, sanitize(im, in(im, i)->name), &t);
  }
  t = new_tensor(im, H_F32, 1, &d, &ok);
  if (!ok)
    return NULL;
  for (int64_t k = 0; k < d; k++)
    ((float *)t.data)[k] = fill;
  char name[512];
  snprintf(name, sizeof name, "%s.%s", sanitize(im, out_name(im, 0)), what);
  return ob_const(&im->b, name, &t);
}

static bool emit_layernorm(Imp *im, IrValue *x, int gi, int bi, double eps) {
  int64_t d = x->type.dims[x->type.rank - 1];
  IrValue *ops[3] = {x, vec_const(im, gi, d, "scale", 1), NULL};
  if (!ops[1] || !(ops[2] = vec_const(im, bi, d, "bias", 0)))
    return false;
  BAttr a = {IR_ATTR_EPS, 1, {eps}};
  return set_ir(im, 0, ob_node(&im->b, IR_OP_LAYERNORM, sanitize(im, out_name(im, 0)), ops, 3, &a, 1));
}

static bool tr_layernorm(Imp *im, int ni) {
  IrValue *x = need_ir(im, 0);
  if (!x)
    return false;
  const Onnx__NodeProto *n = node(im, ni);
  for (size_t i = 1; i < n->n_output; i++)
    if (*onnx_str(n->output[i]) && find(im, n->output[i]) == NULL) {
      OVal *o = define(im, n->output[i]);
      if (o->uses)
        return fail(im, "output %zu (Mean or InvStdDev) is used; q8c's layernorm gives only Y", i);
    }
  int axis = norm_axis(attr_int(im, "axis", -1), x->type.rank);
  if (axis != x->type.rank - 1)
    return fail(im, "normalization over axes %d.. of a rank-%d tensor: q8c's layernorm is over "
                    "the last axis only",
                axis, x->type.rank);
  return emit_layernorm(im, x, 1, 2, attr_float(im, "epsilon", 1e-5));
}

/* Elementwise f32 fold of two constants with numpy broadcasting. */
static bool fold_binary(Imp *im, const HTensor *a, const HTensor *b, char op) {
  int rank = a->rank > b->rank ? a->rank : b->rank;
  int64_t dims[IR_MAX_RANK];
  for (int i = 0; i < rank; i++) {
    int ia = i - (rank - a->rank), ib = i - (rank - b->rank);
    int64_t da = ia >= 0 ? a->dims[ia] : 1, db = ib >= 0 ? b->dims[ib] : 1;
    if (da != db && da != 1 && db != 1)
      return fail(im, "constant shapes do not broadcast");
    dims[i] = da == 1 ? db : da;
  }
  bool isint = a->dt == H_I64 && b->dt == H_I64, ok;
  HTensor r = new_tensor(im, isint ? H_I64 : H_F32, rank, dims, &ok);
  if (!ok)
    return false;
  for (int64_t e = 0; e < r.numel; e++) {
    int64_t rem = e, ea = 0, eb = 0, sa = 1, sb = 1;
    for (int i = rank - 1; i >= 0; i--) {
      int64_t idx = rem % dims[i];
      rem /= dims[i];
      int ia = i - (rank - a->rank), ib = i - (rank - b->rank);
      if (ia >= 0) {
        ea += (a->dims[ia] == 1 ? 0 : idx) * sa;
        sa *= a->dims[ia];
      }
      if (ib >= 0) {
        eb += (b->dims[ib] == 1 ? 0 : idx) * sb;
        sb *= b->dims[ib];
      }
    }
    if (isint) {
      int64_t x = onnx_hget_i64(a, ea), y = onnx_hget_i64(b, eb), z = 0;
      if (x == ONNX_SYM_BATCH || y == ONNX_SYM_BATCH)
        return fail(im, "arithmetic on the batch dimension '?' of a shape is not supported");
      if ((op == '+' && __builtin_add_overflow(x, y, &z)) ||
          (op == '*' && __builtin_mul_overflow(x, y, &z)) ||
          (op == '-' && __builtin_sub_overflow(x, y, &z)) || (op == '/' && (y == 0 || (x == INT64_MIN && y == -1))))
        return fail(im, "integer overflow or division by zero folding constants");
      if (op == '/')
        z = x / y;
      ((int64_t *)r.data)[e] = z;
    } else {
      float x = (float)onnx_hget(a, ea), y = (float)onnx_hget(b, eb);
      ((float *)r.data)[e] = op == '+' ? x + y : op == '*' ? x * y : op == '-' ? x - y : x / y;
    }
  }
  return set_const(im, 0, &r);
}

/* A constant operand of a suffix broadcast: leading 1s dropped, so that
 * [1, N] against [?, N] is [N]; a single element against anything is []. */
static IrValue *bcast_const(Imp *im, int i, const IrType *other) {
  OVal *v = in(im, i);
  HTensor t = v->t;
  while (t.rank > 0 && t.dims[0] == 1 && (t.rank > other->rank || t.numel == 1 || true)) {
    if (t.rank <= other->rank && other->dims[other->rank - t.rank] == 1)
      break;
    memmove(t.dims, t.dims + 1, sizeof(int64_t) * (size_t)(t.rank - 1));
    t.rank--;
  }
  if (t.dt != H_F32) {
    fail(im, "constant '%s' is %s; float ops take f32", v->name, onnx_hname(t.dt));
    return NULL;
  }
  if (t.rank == v->t.rank)
    return need_ir(im, i);
  return ob_const(&im->b, sanitize(im, v->name), &t);
}

static bool suffix_of(const IrType *lo, const IrType *hi) {
  if (lo->rank > hi->rank)
    return false;
  for (int i = 0; i < lo->rank; i++)
    if (lo->dims[lo->rank - 1 - i] != hi->dims[hi->rank - 1 - i])
      return false;
  return true;
}

static bool try_fold_qbias(Imp *im, OVal *acc, OVal *bias);

static bool binary(Imp *im, IrOp op, char ch) {
  OVal *a = in(im, 0), *b = in(im, 1);
  if (!a || !b)
    return fail(im, "needs two inputs");
  if (a->kind == OV_CONST && b->kind == OV_CONST)
    return fold_binary(im, &a->t, &b->t, ch);
  if (op == IR_OP_ADD && (a->kind == OV_IR && a->qg_bias && b->kind == OV_CONST && b->has_q))
    return try_fold_qbias(im, a, b);
  if (op == IR_OP_ADD && (b->kind == OV_IR && b->qg_bias && a->kind == OV_CONST && a->has_q))
    return try_fold_qbias(im, b, a);
  IrValue *x[2];
  for (int i = 0; i < 2; i++) {
    OVal *o = in(im, 1 - i);
    const IrType *other = o->kind == OV_IR ? ir_type_of(o) : NULL;
    if (in(im, i)->kind == OV_CONST && other)
      x[i] = bcast_const(im, i, other);
    else
      x[i] = need_ir(im, i);
    if (!x[i])
      return false;
  }
  if (!suffix_of(&x[0]->type, &x[1]->type) && !suffix_of(&x[1]->type, &x[0]->type)) {
    char b1[96], b2[96];
    return fail(im, "broadcasting %s against %s: q8c broadcasts only when one shape equals the "
                    "trailing dims of the other (not yet: size-1 axes inside a shape)",
                ir_type_str(&x[0]->type, b1, sizeof b1), ir_type_str(&x[1]->type, b2, sizeof b2));
  }
  return set_ir(im, 0, ob_node(&im->b, op, sanitize(im, out_name(im, 0)), x, 2, NULL, 0));
}

static bool tr_add(Imp *im, int ni) { return binary(im, IR_OP_ADD, '+'); }

static bool tr_sub_div(Imp *im, int ni) {
  /* Only between constants (shape arithmetic); q8c has no sub/div op yet. */
  if (!is_const(im, 0) || !is_const(im, 1))
    return fail(im, "%s of non-constant values is not supported yet (only folded between "
                    "constants)",
                onnx_str(node(im, ni)->op_type));
  return fold_binary(im, &in(im, 0)->t, &in(im, 1)->t, node(im, ni)->op_type[0] == 'S' ? '-' : '/');
}

static bool tr_transpose(Imp *im, int ni) {
  if (is_const(im, 0))
    return fail(im, "Transpose of a constant is not folded yet");
  IrValue *x = need_ir(im, 0);
  if (!x)
    return false;
  const Onnx__AttributeProto *p = attr(im, "perm");
  BAttr a = {IR_ATTR_PERM, x->type.rank, {0}};
  if (p && (int)p->n_ints != x->type.rank)
    return fail(im, "perm has %zu entries for a rank-%d input", p->n_ints, x->type.rank);
  for (int i = 0; i < x->type.rank; i++)
    a.v[i] = p ? (double)p->ints[i] : x->type.rank - 1 - i;
  return set_ir(im, 0, ob_node(&im->b, IR_OP_TRANSPOSE, sanitize(im, out_name(im, 0)), &x, 1, &a, 1));
}

/* Reshape of an IR value to dims (ONNX_SYM_BATCH for `?`, -1 inferred, 0
 * copied when !allowzero). */
static bool reshape_to(Imp *im, IrValue *x, const int64_t *shape, int rank, bool allowzero) {
  if (rank > IR_MAX_RANK)
    return fail(im, "target rank %d is over %d", rank, IR_MAX_RANK);
  int64_t dims[IR_MAX_RANK], in_fixed = 1, out_fixed = 1;
  bool in_batch = false;
  for (int i = 0; i < x->type.rank; i++) {
    if (x->type.dims[i] == IR_DIM_BATCH)
      in_batch = true;
    else
      in_fixed *= x->type.dims[i];
  }
  int infer = -1, nbatch = 0;
  for (int i = 0; i < rank; i++) {
    int64_t d = shape[i];
    if (d == 0 && !allowzero) {
      if (i >= x->type.rank)
        return fail(im, "shape entry %d is 0 (copy) but the input has rank %d", i, x->type.rank);
      d = x->type.dims[i];
    }
    if (d == ONNX_SYM_BATCH)
      d = IR_DIM_BATCH;
    if (d == -1 && shape[i] == -1) {
      if (infer >= 0)
        return fail(im, "shape has two -1 entries");
      infer = i;
      continue;
    }
    if (d == IR_DIM_BATCH) {
      nbatch++;
    } else if (d <= 0) {
      return fail(im, "shape entry %d is %lld", i, (long long)d);
    } else if (out_fixed > INT64_MAX / d) {
      return fail(im, "shape overflows");
    } else {
      out_fixed *= d;
    }
    dims[i] = d;
  }
  if (infer >= 0) {
    if (in_batch && nbatch == 0) {
      if (in_fixed != out_fixed)
        return fail(im, "the -1 entry would be a multiple of the batch dimension; q8c keeps '?' "
                        "as its own axis");
      dims[infer] = IR_DIM_BATCH;
    } else {
      if (out_fixed == 0 || in_fixed % out_fixed)
        return fail(im, "the -1 entry cannot be inferred");
      dims[infer] = in_fixed / out_fixed;
    }
  }
  BAttr a = {IR_ATTR_SHAPE, rank, {0}};
  for (int i = 0; i < rank; i++)
    a.v[i] = (double)dims[i];
  return set_ir(im, 0, ob_node(&im->b, IR_OP_RESHAPE, sanitize(im, out_name(im, 0)), &x, 1, &a, 1));
}

/* A constant tensor reshaped (no data change). */
static bool const_reshape(Imp *im, const HTensor *t, const int64_t *dims, int rank) {
  HTensor r = *t;
  int64_t n = 1;
  bool over = false;
  for (int i = 0; i < rank; i++)
    over |= dims[i] < 0 || __builtin_mul_overflow(n, dims[i], &n);
  if (rank > IR_MAX_RANK || over || n != t->numel)
    return fail(im, "cannot reshape a constant of %lld elements", (long long)t->numel);
  r.rank = rank;
  memcpy(r.dims, dims, sizeof(int64_t) * (size_t)rank);
  return set_const(im, 0, &r);
}

static bool tr_reshape(Imp *im, int ni) {
  const HTensor *s = need_const(im, 1, "the shape");
  if (!s)
    return false;
  if (s->dt != H_I64 || s->rank != 1 || s->numel > IR_MAX_RANK)
    return fail(im, "the shape must be a 1-D int64 tensor of at most %d entries", IR_MAX_RANK);
  int64_t shape[IR_MAX_RANK];
  for (int i = 0; i < s->numel; i++)
    shape[i] = onnx_hget_i64(s, i);
  bool allowzero = attr_int(im, "allowzero", 0) != 0;
  if (is_const(im, 0)) {
    const HTensor *t = &in(im, 0)->t;
    int64_t dims[IR_MAX_RANK], known = 1;
    int infer = -1;
    for (int i = 0; i < s->numel; i++) {
      dims[i] = shape[i] == 0 && !allowzero && i < t->rank ? t->dims[i] : shape[i];
      if (dims[i] == -1)
        infer = i;
      else if (dims[i] <= 0)
        return fail(im, "shape entry %d is %lld", i, (long long)dims[i]);
      else if (__builtin_mul_overflow(known, dims[i], &known))
        return fail(im, "the shape overflows");
    }
    if (infer >= 0)
      dims[infer] = known ? t->numel / known : 0;
    return const_reshape(im, t, dims, (int)s->numel);
  }
  IrValue *x = need_ir(im, 0);
  return x && reshape_to(im, x, shape, (int)s->numel, allowzero);
}

static bool tr_flatten(Imp *im, int ni) {
  IrValue *x = need_ir(im, 0);
  if (!x)
    return false;
  int64_t ax = attr_int(im, "axis", 1);
  int axis = ax == x->type.rank ? x->type.rank : norm_axis(ax, x->type.rank);
  if (axis < 0)
    return fail(im, "axis %lld is out of range", (long long)ax);
  int64_t shape[2] = {1, 1};
  bool b0 = false;
  for (int i = 0; i < x->type.rank; i++) {
    int64_t d = x->type.dims[i];
    if (d == IR_DIM_BATCH) {
      if (i >= axis)
        return fail(im, "flattening the batch dimension into the second axis");
      b0 = true;
      continue;
    }
    shape[i < axis ? 0 : 1] *= d;
  }
  if (b0 && shape[0] != 1)
    return fail(im, "flattening the batch dimension with other axes");
  if (b0)
    shape[0] = ONNX_SYM_BATCH;
  return reshape_to(im, x, shape, 2, true);
}

/* Axes from the `axes` attribute (opset < 13) or input 1. */
static bool get_axes(Imp *im, int64_t *axes, int *n) {
  const Onnx__AttributeProto *a = attr(im, "axes");
  if (a) {
    if (a->n_ints > IR_MAX_RANK)
      return fail(im, "too many axes");
    for (size_t i = 0; i < a->n_ints; i++)
      axes[i] = a->ints[i];
    *n = (int)a->n_ints;
    return true;
  }
  *n = 0;
  if (!in(im, 1))
    return true;
  const HTensor *t = need_const(im, 1, "axes");
  if (!t)
    return false;
  if (t->numel > IR_MAX_RANK)
    return fail(im, "too many axes");
  for (int i = 0; i < t->numel; i++)
    axes[i] = onnx_hget_i64(t, i);
  *n = (int)t->numel;
  return true;
}

/* Unsqueeze/Squeeze: the new dims, for a constant or an IR value alike. */
static bool tr_squeeze_like(Imp *im, int ni) {
  bool unsq = strcmp(node(im, ni)->op_type, "Unsqueeze") == 0;
  OVal *v = in(im, 0);
  if (!v)
    return fail(im, "input 0 is missing");
  int64_t axes[IR_MAX_RANK], dims[IR_MAX_RANK];
  int na, rank;
  const int64_t *src;
  if (!get_axes(im, axes, &na))
    return false;
  if (v->kind == OV_CONST) {
    rank = v->t.rank;
    src = v->t.dims;
  } else {
    IrValue *x = need_ir(im, 0);
    if (!x)
      return false;
    rank = x->type.rank;
    src = x->type.dims;
  }
  int out_rank = unsq ? rank + na : rank;
  bool mark[2 * IR_MAX_RANK] = {0};
  if (out_rank > IR_MAX_RANK)
    return fail(im, "result rank %d is over %d", out_rank, IR_MAX_RANK);
  for (int i = 0; i < na; i++) {
    int a = norm_axis(axes[i], unsq ? out_rank : rank);
    if (a < 0 || a >= (unsq ? out_rank : rank))
      return fail(im, "axis %lld is out of range", (long long)axes[i]);
    mark[a] = true;
  }
  int k = 0, j = 0;
  if (unsq) {
    for (int i = 0; i < out_rank; i++)
      dims[k++] = mark[i] ? 1 : src[j++];
  } else {
    for (int i = 0; i < rank; i++) {
      bool drop = na ? mark[i] : src[i] == 1;
      if (drop && src[i] != 1)
        return fail(im, "squeezing axis %d of size %lld", i, (long long)src[i]);
      if (!drop)
        dims[k++] = src[i];
    }
  }
  if (v->kind == OV_CONST)
    return const_reshape(im, &v->t, dims, k);
  for (int i = 0; i < k; i++)
    if (dims[i] == IR_DIM_BATCH)
      dims[i] = ONNX_SYM_BATCH;
  return reshape_to(im, v->ir, dims, k, true);
}

/* ---- shape subgraphs, folded ---- */

static bool tr_shape(Imp *im, int ni) {
  OVal *v = in(im, 0);
  if (!v)
    return fail(im, "input 0 is missing");
  if (attr(im, "start") || attr(im, "end"))
    return fail(im, "start and end are not supported");
  int rank;
  const int64_t *src;
  if (v->kind == OV_CONST) {
    rank = v->t.rank;
    src = v->t.dims;
  } else {
    IrValue *x = need_ir(im, 0);
    if (!x)
      return false;
    rank = x->type.rank;
    src = x->type.dims;
  }
  int64_t d = rank;
  bool ok;
  HTensor r = new_tensor(im, H_I64, 1, &d, &ok);
  if (!ok)
    return false;
  for (int i = 0; i < rank; i++)
    ((int64_t *)r.data)[i] = src[i] == IR_DIM_BATCH && v->kind == OV_IR ? ONNX_SYM_BATCH : src[i];
  return set_const(im, 0, &r);
}

static bool tr_gather(Imp *im, int ni) {
  if (!is_const(im, 0))
    return fail(im, "Gather of a non-constant tensor is not supported yet (only shapes and "
                    "other constants are folded)");
  const HTensor *t = &in(im, 0)->t, *ix = need_const(im, 1, "indices");
  if (!ix)
    return false;
  int axis = norm_axis(attr_int(im, "axis", 0), t->rank);
  if (t->rank < 1 || axis != 0 || ix->rank > 1)
    return fail(im, "Gather is folded only along axis 0 with scalar or 1-D indices");
  int64_t inner = t->dims[0] ? t->numel / t->dims[0] : 0;
  int64_t dims[IR_MAX_RANK];
  int rank = 0;
  for (int i = 0; i < ix->rank; i++)
    dims[rank++] = ix->dims[i];
  for (int i = 1; i < t->rank; i++)
    dims[rank++] = t->dims[i];
  if (rank > IR_MAX_RANK)
    return fail(im, "result rank is over %d", IR_MAX_RANK);
  bool ok;
  HTensor r = new_tensor(im, t->dt, rank, dims, &ok);
  if (!ok)
    return false;
  size_t es = onnx_hsize(t->dt);
  for (int64_t i = 0; i < ix->numel; i++) {
    int64_t k = onnx_hget_i64(ix, i);
    if (k < 0)
      k += t->dims[0];
    if (k < 0 || k >= t->dims[0])
      return fail(im, "index %lld is out of range [0, %lld)", (long long)onnx_hget_i64(ix, i),
                  (long long)t->dims[0]);
    memcpy((char *)r.data + (size_t)(i * inner) * es, (const char *)t->data + (size_t)(k * inner) * es,
           (size_t)inner * es);
  }
  return set_const(im, 0, &r);
}

static bool tr_concat(Imp *im, int ni) {
  int n = ninputs(im);
  for (int i = 0; i < n; i++)
    if (!is_const(im, i))
      return fail(im, "Concat of non-constant tensors is not supported yet (shapes are folded)");
  const HTensor *t0 = &in(im, 0)->t;
  int axis = norm_axis(attr_int(im, "axis", 0), t0->rank);
  if (t0->rank != 1 || axis != 0)
    return fail(im, "Concat is folded only for 1-D constants");
  int64_t total = 0;
  for (int i = 0; i < n; i++) {
    const HTensor *t = &in(im, i)->t;
    if (t->rank != 1 || t->dt != t0->dt)
      return fail(im, "Concat operands differ in rank or type");
    total += t->numel;
  }
  bool ok;
  HTensor r = new_tensor(im, t0->dt, 1, &total, &ok);
  if (!ok)
    return false;
  size_t es = onnx_hsize(t0->dt), off = 0;
  for (int i = 0; i < n; i++) {
    const HTensor *t = &in(im, i)->t;
    memcpy((char *)r.data + off, t->data, (size_t)t->numel * es);
    off += (size_t)t->numel * es;
  }
  return set_const(im, 0, &r);
}

static bool tensor_attr(Imp *im, const char *name, HTensor *t) {
  const Onnx__AttributeProto *a = attr(im, name);
  char err[512];
  if (!a || !a->t)
    return false;
  if (!onnx_read_tensor(&im->c, a->t, t, err, sizeof err))
    return !fail(im, "%s", err);
  return true;
}

static bool tr_constant(Imp *im, int ni) {
  HTensor t;
  bool ok;
  const Onnx__AttributeProto *a;
  if ((a = attr(im, "value"))) {
    if (!a->t)
      return fail(im, "'value' is not a tensor");
    if (!tensor_attr(im, "value", &t))
      return false;
  } else if ((a = attr(im, "value_float")) || (a = attr(im, "value_int"))) {
    t = new_tensor(im, a->has_f ? H_F32 : H_I64, 0, NULL, &ok);
    if (!ok)
      return false;
    hset(&t, 0, a->has_f ? a->f : (double)a->i);
  } else if ((a = attr(im, "value_floats")) || (a = attr(im, "value_ints"))) {
    bool f = strcmp(a->name, "value_floats") == 0;
    int64_t n = (int64_t)(f ? a->n_floats : a->n_ints);
    t = new_tensor(im, f ? H_F32 : H_I64, 1, &n, &ok);
    if (!ok)
      return false;
    for (int64_t i = 0; i < n; i++) {
      if (f)
        ((float *)t.data)[i] = a->floats[i];
      else
        ((int64_t *)t.data)[i] = a->ints[i];
    }
  } else {
    return fail(im, "Constant needs value, value_float(s) or value_int(s)");
  }
  return set_const(im, 0, &t);
}

static bool tr_constant_of_shape(Imp *im, int ni) {
  const HTensor *s = need_const(im, 0, "the shape");
  if (!s)
    return false;
  if (s->rank != 1 || s->numel > IR_MAX_RANK)
    return fail(im, "the shape must be 1-D with at most %d entries", IR_MAX_RANK);
  int64_t dims[IR_MAX_RANK];
  for (int i = 0; i < s->numel; i++)
    if ((dims[i] = onnx_hget_i64(s, i)) < 0)
      return fail(im, "the shape has the batch dimension or a negative entry: not folded");
  HTensor v = {.dt = H_F32};
  float zero = 0;
  v.data = &zero;
  v.numel = 1;
  if (attr(im, "value") && !tensor_attr(im, "value", &v))
    return false;
  bool ok;
  HTensor r = new_tensor(im, v.dt, (int)s->numel, dims, &ok);
  if (!ok)
    return false;
  for (int64_t i = 0; i < r.numel; i++)
    hset(&r, i, onnx_hget(&v, 0));
  return set_const(im, 0, &r);
}

static bool tr_expand(Imp *im, int ni) {
  if (!is_const(im, 0))
    return fail(im, "Expand of a non-constant tensor is not supported yet");
  const HTensor *s = need_const(im, 1, "the shape");
  if (!s)
    return false;
  if (s->rank != 1 || s->numel > IR_MAX_RANK)
    return fail(im, "the shape must be 1-D with at most %d entries", IR_MAX_RANK);
  int64_t dims[IR_MAX_RANK];
  for (int i = 0; i < s->numel; i++)
    if ((dims[i] = onnx_hget_i64(s, i)) < 0)
      return fail(im, "the shape has the batch dimension or a negative entry: not folded");
  bool ok;
  HTensor ones = new_tensor(im, in(im, 0)->t.dt == H_I64 ? H_I64 : H_F32, (int)s->numel, dims, &ok);
  if (!ok)
    return false;
  for (int64_t i = 0; i < ones.numel; i++)
    hset(&ones, i, 1);
  return fold_binary(im, &in(im, 0)->t, &ones, '*');
}

static bool tr_cast(Imp *im, int ni) {
  OVal *v = in(im, 0);
  int64_t to = attr_int(im, "to", 0);
  if (v && v->kind == OV_ACC && to == ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT) {
    OVal *o = def_out(im, 0, OV_ACCF);
    o->ir = v->ir;
    o->q = v->q;
    o->acc_zp = v->acc_zp;
    return true;
  }
  HDType h;
  switch (to) {
  case ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT: h = H_F32; break;
  case ONNX__TENSOR_PROTO__DATA_TYPE__INT64: h = H_I64; break;
  case ONNX__TENSOR_PROTO__DATA_TYPE__INT32: h = H_I32; break;
  default: return fail(im, "Cast to data type %lld is not supported", (long long)to);
  }
  if (v && v->kind == OV_IR && h == H_F32 && v->ir->type.dtype == IR_F32)
    return tr_identity(im, ni);
  if (!is_const(im, 0))
    return fail(im, "Cast of a non-constant value is not supported (only f32 to f32)");
  bool ok;
  HTensor r = new_tensor(im, h, v->t.rank, v->t.dims, &ok);
  if (!ok)
    return false;
  for (int64_t i = 0; i < r.numel; i++)
    hset(&r, i, v->t.dt == H_I64 ? (double)onnx_hget_i64(&v->t, i) : onnx_hget(&v->t, i));
  return set_const(im, 0, &r);
}

/* ---- linear layers ---- */

/* B[K, N] -> W[N, K] (f32 or i8), times alpha when f32. */
static HTensor transpose2(Imp *im, const HTensor *b, double alpha, bool *ok) {
  int64_t dims[2] = {b->dims[1], b->dims[0]};
  HTensor w = new_tensor(im, b->dt, 2, dims, ok);
  if (!*ok)
    return w;
  for (int64_t k = 0; k < b->dims[0]; k++)
    for (int64_t n = 0; n < b->dims[1]; n++)
      hset(&w, n * dims[1] + k, onnx_hget(b, k * b->dims[1] + n) * (b->dt == H_F32 ? alpha : 1));
  return w;
}

static bool qgemm_from(Imp *im, IrValue *xq, double sx, int32_t zx, const OVal *w, bool trans_b,
                       const OVal *bias, bool u8_out, double sy, int32_t zy);

static bool tr_matmul(Imp *im, int ni) {
  OVal *a = in(im, 0), *b = in(im, 1);
  if (!a || !b)
    return fail(im, "needs two inputs");
  if (a->kind == OV_IR && a->has_q && b->kind == OV_CONST && b->has_q && b->t.rank == 2)
    return qgemm_from(im, a->q_ir, onnx_hget(&a->qscale, 0), (int32_t)onnx_hget(&a->qzero, 0), b,
                      false, NULL, false, 0, 0);
  if (a->kind == OV_CONST && b->kind == OV_CONST)
    return fail(im, "MatMul of two constants is not folded yet");
  IrValue *x[2] = {need_ir(im, 0), NULL};
  if (!x[0] || !(x[1] = need_ir(im, 1)))
    return false;
  return set_ir(im, 0, ob_node(&im->b, IR_OP_MATMUL, sanitize(im, out_name(im, 0)), x, 2, NULL, 0));
}

/* Gemm's C as a bias of N elements times beta, or NULL with none. */
static bool gemm_bias(Imp *im, int64_t n, double beta, IrValue **out) {
  *out = NULL;
  if (!in(im, 2) || beta == 0)
    return true;
  const HTensor *c = need_const(im, 2, "C");
  if (!c)
    return false;
  if (c->dt != H_F32 || !(c->numel == n || c->numel == 1) || (c->rank == 2 && c->dims[0] != 1) ||
      c->rank > 2)
    return fail(im, "C must be f32 of N = %lld elements ([N] or [1, N]) or a scalar; q8c has no "
                    "[M, N] bias",
                (long long)n);
  bool ok;
  HTensor t = new_tensor(im, H_F32, 1, &n, &ok);
  if (!ok)
    return false;
  for (int64_t i = 0; i < n; i++)
    ((float *)t.data)[i] = (float)(onnx_hget(c, c->numel == 1 ? 0 : i) * beta);
  *out = ob_const(&im->b, sanitize(im, in(im, 2)->name), &t);
  return true;
}

static bool tr_gemm(Imp *im, int ni) {
  OVal *a = in(im, 0), *b = in(im, 1);
  if (!a || !b)
    return fail(im, "needs inputs A and B");
  if (attr_int(im, "transA", 0) != 0)
    return fail(im, "transA=1 is not supported");
  bool tb = attr_int(im, "transB", 0) != 0;
  double alpha = attr_float(im, "alpha", 1), beta = attr_float(im, "beta", 1);
  if (a->kind == OV_IR && a->has_q && b->kind == OV_CONST && b->has_q && b->t.rank == 2) {
    if (alpha != 1 || beta != 1)
      return fail(im, "alpha and beta must be 1 in a quantized Gemm");
    return qgemm_from(im, a->q_ir, onnx_hget(&a->qscale, 0), (int32_t)onnx_hget(&a->qzero, 0), b,
                      tb, in(im, 2), false, 0, 0);
  }
  IrValue *x = need_ir(im, 0);
  if (!x)
    return false;
  if (b->kind != OV_CONST)
    return fail(im, "B must be a constant (q8c's linear takes a constant weight)");
  if (b->t.rank != 2 || b->t.dt != H_F32)
    return fail(im, "B must be a 2-D f32 constant");
  bool ok = true;
  HTensor w;
  const char *wname = sanitize(im, b->name);
  char buf[512];
  if (tb && alpha == 1) {
    w = b->t;
  } else if (tb) {
    w = new_tensor(im, H_F32, 2, b->t.dims, &ok);
    for (int64_t i = 0; ok && i < w.numel; i++)
      ((float *)w.data)[i] = (float)(((const float *)b->t.data)[i] * alpha);
  } else {
    w = transpose2(im, &b->t, alpha, &ok);
    snprintf(buf, sizeof buf, "%s.T", wname);
    wname = buf;
  }
  if (!ok)
    return false;
  IrValue *ops[3] = {x, ob_const(&im->b, wname, &w), NULL};
  if (!gemm_bias(im, w.dims[0], beta, &ops[2]))
    return false;
  return set_ir(im, 0, ob_node(&im->b, IR_OP_LINEAR, sanitize(im, out_name(im, 0)), ops,
                               ops[2] ? 3 : 2, NULL, 0));
}

/* ---- quantized ops ---- */

/* Scale and zero point operands (inputs si, zi) of a per-tensor op. */
static bool qparams(Imp *im, int si, int zi, double *s, int32_t *z, HDType *zt) {
  if (!need_scalar(im, si, "the scale", s))
    return false;
  *z = 0;
  *zt = H_U8;
  if (in(im, zi)) {
    const HTensor *t = need_const(im, zi, "the zero point");
    if (!t)
      return false;
    if (t->numel != 1)
      return fail(im, "the zero point must have one element (per-tensor)");
    if (t->dt != H_U8 && t->dt != H_I8)
      return fail(im, "the zero point is %s; q8c reads u8 and i8 zero points", onnx_hname(t->dt));
    *z = (int32_t)onnx_hget(t, 0);
    *zt = t->dt;
  }
  if (!(*s > 0) || !isfinite(*s))
    return fail(im, "the scale %g is not a positive finite number", *s);
  return true;
}

static bool tr_quantize(Imp *im, int ni) {
  OVal *v = in(im, 0);
  if (!v)
    return fail(im, "input 0 is missing");
  if (v->kind == OV_CONST) {
    /* A float weight quantized at import: ONNX's rounding, [-128, 127]. */
    const HTensor *s = need_const(im, 1, "the scale"), *z = in(im, 2) ? need_const(im, 2, "the zero point") : NULL;
    if (!s || (in(im, 2) && !z))
      return false;
    int rank = v->t.rank;
    int axis = norm_axis(attr_int(im, "axis", 1), rank);
    if (s->numel != 1 && (axis < 0 || axis >= rank || s->numel != v->t.dims[axis]))
      return fail(im, "the scale's %lld elements fit neither per-tensor nor axis %d",
                  (long long)s->numel, axis);
    HDType dt = z ? z->dt : H_U8;
    if (dt != H_U8 && dt != H_I8)
      return fail(im, "only u8 and i8 quantization is supported");
    bool ok;
    HTensor r = new_tensor(im, dt, rank, v->t.dims, &ok);
    if (!ok)
      return false;
    int64_t inner = 1;
    for (int i = axis + 1; i < rank; i++)
      inner *= v->t.dims[i];
    for (int64_t i = 0; i < r.numel; i++) {
      int64_t c = s->numel == 1 ? 0 : (i / inner) % s->numel;
      float q = rintf((float)onnx_hget(&v->t, i) / (float)onnx_hget(s, c));
      double zp = z ? onnx_hget(z, z->numel == 1 ? 0 : c) : 0;
      double lo = dt == H_U8 ? 0 : -128, hi = dt == H_U8 ? 255 : 127;
      double qv = q + zp;
      hset(&r, i, qv < lo ? lo : qv > hi ? hi : qv);
    }
    return set_const(im, 0, &r);
  }
  IrValue *x = need_ir(im, 0);
  if (!x)
    return false;
  double s;
  int32_t z;
  HDType zt;
  if (!qparams(im, 1, 2, &s, &z, &zt))
    return false;
  if (zt != H_U8)
    return fail(im, "quantizing activations to %s: q8c's i8 range is [-127, 127] and ONNX's "
                    "[-128, 127], so the results would differ; use u8 activations "
                    "(ONNX Runtime's default, QUInt8)",
                onnx_hname(zt));
  BAttr at[3] = {{IR_ATTR_SCALE, 1, {(float)s}}, {IR_ATTR_ZERO_POINT, 1, {z}}, {IR_ATTR_DTYPE, 1, {IR_U8}}};
  return set_ir(im, 0, ob_node(&im->b, IR_OP_QUANTIZE, sanitize(im, out_name(im, 0)), &x, 1, at, 3));
}

static bool tr_dequantize(Imp *im, int ni) {
  OVal *v = in(im, 0);
  if (!v)
    return fail(im, "input 0 is missing");
  if (v->kind == OV_CONST) {
    const HTensor *s = need_const(im, 1, "the scale"), *z = in(im, 2) ? need_const(im, 2, "the zero point") : NULL;
    if (!s || (in(im, 2) && !z))
      return false;
    if (v->t.dt == H_F32 || v->t.dt == H_I64)
      return fail(im, "dequantizing a %s tensor", onnx_hname(v->t.dt));
    int rank = v->t.rank;
    int axis = norm_axis(attr_int(im, "axis", 1), rank);
    if (s->numel != 1 && (axis < 0 || axis >= rank || s->numel != v->t.dims[axis] || s->rank != 1))
      return fail(im, "the scale's %lld elements fit neither per-tensor nor axis %d",
                  (long long)s->numel, axis);
    if (z && z->numel != s->numel)
      return fail(im, "the zero point and the scale differ in size");
    bool ok;
    HTensor r = new_tensor(im, H_F32, rank, v->t.dims, &ok);
    if (!ok)
      return false;
    int64_t inner = 1;
    for (int i = axis + 1; i < rank; i++)
      inner *= v->t.dims[i];
    for (int64_t i = 0; i < r.numel; i++) {
      int64_t c = s->numel == 1 ? 0 : (i / inner) % s->numel;
      float d = (float)(onnx_hget(&v->t, i) - (z ? onnx_hget(z, c) : 0));
      ((float *)r.data)[i] = d * (float)onnx_hget(s, c);
    }
    OVal *o = def_out(im, 0, OV_CONST);
    o->t = r;
    o->has_q = true;
    o->q = v->t;
    o->qscale = *s;
    if (z) {
      o->qzero = *z;
    } else {
      o->qzero = new_tensor(im, v->t.dt, s->rank, s->dims, &ok);
      if (!ok)
        return false;
      memset(o->qzero.data, 0, (size_t)o->qzero.numel * onnx_hsize(o->qzero.dt));
    }
    o->qaxis = s->numel == 1 ? -1 : axis;
    return true;
  }
  IrValue *x = need_ir(im, 0);
  if (!x)
    return false;
  double s;
  int32_t z;
  HDType zt;
  if (!qparams(im, 1, 2, &s, &z, &zt))
    return false;
  BAttr at[2] = {{IR_ATTR_SCALE, 1, {(float)s}}, {IR_ATTR_ZERO_POINT, 1, {z}}};
  if (!set_ir(im, 0, ob_node(&im->b, IR_OP_DEQUANTIZE, sanitize(im, out_name(im, 0)), &x, 1, at, 2)))
    return false;
  OVal *o = find(im, out_name(im, 0));
  bool ok;
  int64_t one = 1;
  o->has_q = true;
  o->q_ir = x;
  o->qscale = new_tensor(im, H_F32, 0, &one, &ok);
  if (!ok)
    return false;
  hset(&o->qscale, 0, s);
  o->qzero = new_tensor(im, H_I32, 0, &one, &ok);
  if (!ok)
    return false;
  hset(&o->qzero, 0, z);
  return true;
}

/* A qgemm on the integers: xq u8 with (sx, zx); the weight `w` is a
 * DequantizeLinear'd constant B[K, N] (W[N, K] when trans_b), i8 with zero
 * point 0, per-tensor or per output channel. The int32 bias is
 * -zx * sum_k Wq[n, k], plus a quantized Gemm C whose scale is sx * sw[n].
 * u8_out: QLinearMatMul's requantization, mult = f32(f32(sx * sw) / sy). */
static bool qgemm_from(Imp *im, IrValue *xq, double sx, int32_t zx, const OVal *w, bool trans_b,
                       const OVal *bias, bool u8_out, double sy, int32_t zy) {
  if (xq->type.dtype != IR_U8)
    return fail(im, "the quantized input is %s; q8c maps u8 activations only",
                ir_dtype_name(xq->type.dtype));
  const HTensor *q = &w->q;
  if (q->dt != H_I8)
    return fail(im, "the weight '%s' is %s; q8c's weights are i8 (symmetric)", w->name,
                onnx_hname(q->dt));
  for (int64_t i = 0; i < w->qzero.numel; i++)
    if (onnx_hget(&w->qzero, i) != 0)
      return fail(im, "the weight '%s' has a non-zero zero point; q8c's weights are symmetric",
                  w->name);
  int nax = trans_b ? 0 : 1; /* the axis of N in B */
  if (w->qaxis >= 0 && w->qaxis != nax)
    return fail(im, "the weight '%s' is quantized per axis %d; q8c's per-channel scales are per "
                    "output channel (axis %d here)",
                w->name, w->qaxis, nax);
  bool ok = true;
  HTensor wq = trans_b ? *q : transpose2(im, q, 1, &ok);
  if (!ok)
    return false;
  int64_t n = wq.dims[0], k = wq.dims[1];
  for (int64_t i = 0; i < wq.numel; i++)
    if (((const int8_t *)wq.data)[i] == -128)
      return fail(im, "the weight '%s' holds -128; q8c's i8 weights are in [-127, 127] "
                      "(quantize them symmetrically to [-127, 127])",
                  w->name);
  HTensor bt = new_tensor(im, H_I32, 1, &n, &ok), mt = new_tensor(im, H_F32, 1, &n, &ok);
  if (!ok)
    return false;
  const HTensor *bq = NULL;
  IrValue *fbias = NULL;
  if (bias) {
    if (bias->kind == OV_CONST && bias->has_q && bias->q.dt == H_I32) {
      bq = &bias->q;
      if (bq->numel != n)
        return fail(im, "the quantized bias has %lld elements for N = %lld",
                    (long long)bq->numel, (long long)n);
    } else if (!gemm_bias(im, n, 1, &fbias)) {
      return false;
    }
  }
  for (int64_t j = 0; j < n; j++) {
    float sw = (float)onnx_hget(&w->qscale, w->qscale.numel == 1 ? 0 : j);
    float prod = (float)sx * sw;
    if (bq) {
      float bs = (float)onnx_hget(&bias->qscale, bias->qscale.numel == 1 ? 0 : j);
      if (bs != prod || onnx_hget(&bias->qzero, bias->qzero.numel == 1 ? 0 : j) != 0)
        return fail(im, "the quantized bias's scale %.9g is not x_scale * w_scale = %.9g (channel "
                        "%lld); it cannot be added to the int32 accumulator",
                    bs, prod, (long long)j);
    }
    int64_t sum = 0;
    for (int64_t i = 0; i < k; i++)
      sum += ((const int8_t *)wq.data)[j * k + i];
    int64_t b = (bq ? onnx_hget_i64(bq, j) : 0) - (int64_t)zx * sum;
    if (b < INT32_MIN || b > INT32_MAX)
      return fail(im, "the folded bias of channel %lld does not fit int32", (long long)j);
    ((int32_t *)bt.data)[j] = (int32_t)b;
    ((float *)mt.data)[j] = u8_out ? prod / (float)sy : prod;
  }
  char base[512];
  const char *wn = sanitize(im, w->name);
  snprintf(base, sizeof base, "%s%s", wn, trans_b ? "" : ".T");
  const char *on = sanitize(im, out_name(im, 0));
  char bname[600], mname[600];
  snprintf(bname, sizeof bname, "%s.bias", on);
  snprintf(mname, sizeof mname, "%s.mult", on);
  IrValue *ops[4] = {xq, ob_const(&im->b, base, &wq), ob_const(&im->b, bname, &bt),
                     ob_const(&im->b, mname, &mt)};
  BAttr at[3] = {{IR_ATTR_DTYPE, 1, {u8_out ? IR_U8 : IR_F32}},
                 {IR_ATTR_SCALE, 1, {(float)sy}},
                 {IR_ATTR_ZERO_POINT, 1, {zy}}};
  char rname[600];
  snprintf(rname, sizeof rname, "%s%s", on, fbias ? ".acc" : "");
  IrValue *r = ob_node(&im->b, IR_OP_QGEMM, rname, ops, 4, at, u8_out ? 3 : 1);
  if (!r)
    return rewrap(im);
  if (fbias) {
    IrValue *ab[2] = {r, fbias};
    return set_ir(im, 0, ob_node(&im->b, IR_OP_ADD, on, ab, 2, NULL, 0));
  }
  if (!set_ir(im, 0, r))
    return false;
  if (!u8_out) {
    OVal *o = find(im, out_name(im, 0));
    o->qg_bias = bt.data;
    o->qg_mult = mt.data;
    o->qg_n = n;
  }
  return true;
}

/* MatMul -> Add(DequantizeLinear(int32 bias)): the bias joins the int32
 * accumulator when its scale is the multiplier; otherwise a float add. */
static bool try_fold_qbias(Imp *im, OVal *acc, OVal *bias) {
  bool fits = acc->uses == 1 && bias->q.dt == H_I32 && bias->q.numel == acc->qg_n;
  for (int64_t j = 0; fits && j < acc->qg_n; j++) {
    float bs = (float)onnx_hget(&bias->qscale, bias->qscale.numel == 1 ? 0 : j);
    int64_t b = (int64_t)acc->qg_bias[j] + onnx_hget_i64(&bias->q, j);
    fits = bs == acc->qg_mult[j] && onnx_hget(&bias->qzero, bias->qzero.numel == 1 ? 0 : j) == 0 &&
           b >= INT32_MIN && b <= INT32_MAX;
  }
  if (!fits) {
    IrValue *x[2] = {acc->ir, NULL};
    if (!(x[1] = bcast_const(im, acc == in(im, 0) ? 1 : 0, &acc->ir->type)))
      return false;
    return set_ir(im, 0, ob_node(&im->b, IR_OP_ADD, sanitize(im, out_name(im, 0)), x, 2, NULL, 0));
  }
  for (int64_t j = 0; j < acc->qg_n; j++)
    acc->qg_bias[j] += (int32_t)onnx_hget_i64(&bias->q, j);
  acc->qg_bias = NULL;
  OVal *o = def_out(im, 0, OV_IR);
  o->ir = acc->ir;
  return true;
}

static bool tr_qlinear_matmul(Imp *im, int ni) {
  IrValue *a = need_ir(im, 0);
  if (!a)
    return false;
  double sa, sy;
  int32_t za, zy;
  HDType zat, zyt;
  if (!qparams(im, 1, 2, &sa, &za, &zat) || !qparams(im, 6, 7, &sy, &zy, &zyt))
    return false;
  if (zyt != H_U8)
    return fail(im, "an %s result: q8c's i8 range is [-127, 127] and ONNX's [-128, 127]; use u8",
                onnx_hname(zyt));
  OVal *b = in(im, 3);
  const HTensor *sb = need_const(im, 4, "b_scale");
  if (!b || b->kind != OV_CONST || !sb)
    return fail(im, "B must be a constant");
  if (b->t.rank != 2)
    return fail(im, "B must be 2-D");
  /* Present B as a DequantizeLinear'd constant. */
  OVal w = *b;
  bool ok;
  w.has_q = true;
  w.q = b->t;
  w.qscale = *sb;
  w.qaxis = sb->numel == 1 ? -1 : 1;
  if (sb->numel != 1 && sb->numel != b->t.dims[1])
    return fail(im, "b_scale must be per-tensor or per column (N)");
  if (in(im, 5)) {
    const HTensor *zb = need_const(im, 5, "b_zero_point");
    if (!zb)
      return false;
    w.qzero = *zb;
  } else {
    int64_t one = 1;
    w.qzero = new_tensor(im, H_I8, 0, &one, &ok);
    if (!ok)
      return false;
    memset(w.qzero.data, 0, 1);
  }
  return qgemm_from(im, a, sa, za, &w, false, NULL, true, sy, zy);
}

static bool tr_dynamic_quantize(Imp *im, int ni) {
  return fail(im, "DynamicQuantizeLinear is not supported: it quantizes the whole tensor with one "
                  "scale computed in f32 ((max - min) rounded to f32, then / 255), while q8c's "
                  "run-time quantization (qlinear_dyn) is per row with (max - min) exact, so the "
                  "results would differ; import the float model and compile it with --dynamic");
}

/* MatMulInteger(A u8, B i8 constant, a_zero_point, 0) -> Cast(FLOAT) ->
 * Mul(scale constant): a qgemm with f32 output whose multiplier is that
 * scale, exactly: f32(f32(acc) * scale). */
static bool tr_matmul_integer(Imp *im, int ni) {
  IrValue *a = need_ir(im, 0);
  if (!a)
    return false;
  OVal *b = in(im, 1);
  if (!b || b->kind != OV_CONST || b->t.rank != 2 || b->t.dt != H_I8)
    return fail(im, "B must be a 2-D i8 constant");
  double za = 0;
  if (in(im, 2) && !need_scalar(im, 2, "a_zero_point (per tensor)", &za))
    return false;
  if (in(im, 2) && in(im, 2)->t.dt != H_U8)
    return fail(im, "a_zero_point must be u8 (q8c maps u8 activations)");
  if (in(im, 3)) {
    const HTensor *zb = need_const(im, 3, "b_zero_point");
    if (!zb)
      return false;
    for (int64_t i = 0; i < zb->numel; i++)
      if (onnx_hget(zb, i) != 0)
        return fail(im, "b_zero_point must be 0: q8c's weights are symmetric");
  }
  OVal *o = def_out(im, 0, OV_ACC);
  o->ir = a;
  o->q = b->t;
  o->acc_zp = (int32_t)za;
  return true;
}

/* Mul(Cast(MatMulInteger(...)), scale). */
static bool acc_mul(Imp *im, OVal *acc, OVal *c) {
  if (acc->kind != OV_ACCF || c->kind != OV_CONST || c->t.dt != H_F32 ||
      !(c->t.numel == 1 || (c->t.numel == acc->q.dims[1] && c->t.dims[c->t.rank - 1] == c->t.numel)))
    return false;
  OVal w = {.kind = OV_CONST, .name = acc->name};
  bool ok;
  int64_t one = 1;
  w.has_q = true;
  w.q = acc->q;
  w.qscale = c->t;
  w.qaxis = c->t.numel == 1 ? -1 : 1;
  w.qzero = new_tensor(im, H_I8, 0, &one, &ok);
  if (!ok)
    return false;
  memset(w.qzero.data, 0, 1);
  return qgemm_from(im, acc->ir, 1.0, acc->acc_zp, &w, false, NULL, false, 0, 0);
}

static bool tr_mul(Imp *im, int ni) {
  OVal *a = in(im, 0), *b = in(im, 1);
  if (a && b && (a->kind >= OV_ACC || b->kind >= OV_ACC))
    return acc_mul(im, a, b) || acc_mul(im, b, a) ||
           (!im->m->diag.failed &&
            fail(im, "Mul of %s and %s: q8c maps MatMulInteger only in the pattern MatMulInteger "
                     "-> Cast(FLOAT) -> Mul(constant scale) (docs/import.md)",
                 kind_what(a->kind), kind_what(b->kind)));
  return binary(im, IR_OP_MUL, '*');
}

/* ---- patterns found before translation ---- */

static const OpEntry ops[] = {
    {"Add", 2, tr_add, ""},
    {"Cast", 1, tr_cast, "to"},
    {"Concat", 1, tr_concat, "axis"},
    {"Constant", 0, tr_constant, "value value_float value_floats value_int value_ints"},
    {"ConstantOfShape", 1, tr_constant_of_shape, "value"},
    {"DequantizeLinear", 2, tr_dequantize, "axis"},
    {"Div", 2, tr_sub_div, ""},
    {"DynamicQuantizeLinear", 1, tr_dynamic_quantize, ""},
    {"Expand", 2, tr_expand, ""},
    {"Flatten", 1, tr_flatten, "axis"},
    {"Gather", 2, tr_gather, "axis"},
    {"Gelu", 1, tr_gelu, "approximate"},
    {"Gemm", 2, tr_gemm, "alpha beta transA transB"},
    {"Identity", 1, tr_identity, ""},
    {"LayerNormalization", 2, tr_layernorm, "axis epsilon stash_type"},
    {"MatMul", 2, tr_matmul, ""},
    {"MatMulInteger", 2, tr_matmul_integer, ""},
    {"Mul", 2, tr_mul, ""},
    {"QLinearMatMul", 8, tr_qlinear_matmul, ""},
    {"QuantizeLinear", 2, tr_quantize, "axis"},
    {"Relu", 1, tr_relu, ""},
    {"Reshape", 2, tr_reshape, "allowzero"},
    {"Shape", 1, tr_shape, ""},
    {"Softmax", 1, tr_softmax, "axis"},
    {"Squeeze", 1, tr_squeeze_like, "axes"},
    {"Sub", 2, tr_sub_div, ""},
    {"Transpose", 1, tr_transpose, "perm"},
    {"Unsqueeze", 1, tr_squeeze_like, "axes"},
};
enum { NOPS = sizeof ops / sizeof ops[0] };

static const char supported_list[] =
    "Add, Cast, Concat, Constant, ConstantOfShape, DequantizeLinear, DynamicQuantizeLinear, "
    "Expand, Flatten, Gather, Gelu, Gemm, Identity, LayerNormalization, MatMul, MatMulInteger, "
    "Mul, QLinearMatMul, QuantizeLinear, Relu, Reshape, Shape, Softmax, Squeeze, Transpose, "
    "Unsqueeze; Sub and Div between constants; the Erf form of GELU and the decomposed "
    "LayerNorm";

static const OpEntry *op_entry(const char *op) {
  for (int i = 0; i < NOPS; i++)
    if (strcmp(ops[i].op, op) == 0)
      return &ops[i];
  return NULL;
}

/* The node (other than those in skip) that produces `name`, via a map. */
typedef struct {
  const char **names;
  int *node;
  size_t cap;
} ProdMap;

static void pm_put(ProdMap *p, const char *name, int ni) {
  size_t i = hash_str(name) & (p->cap - 1);
  while (p->names[i] && strcmp(p->names[i], name) != 0)
    i = (i + 1) & (p->cap - 1);
  p->names[i] = name;
  p->node[i] = ni;
}

static int pm_get(const ProdMap *p, const char *name) {
  for (size_t i = hash_str(name) & (p->cap - 1); p->names[i]; i = (i + 1) & (p->cap - 1))
    if (strcmp(p->names[i], name) == 0)
      return p->node[i];
  return -1;
}

/* The constant value of `name` if it is a one-element f32 initializer or
 * Constant output (already known: initializers are read first, Constant
 * nodes are checked by hand). */
static bool const_scalar(Imp *im, const ProdMap *pm, const char *name, double *out) {
  OVal *v = find(im, name);
  if (v && v->kind == OV_CONST && v->t.numel == 1) {
    *out = onnx_hget(&v->t, 0);
    return true;
  }
  int p = pm_get(pm, name);
  if (p < 0 || strcmp(onnx_str(node(im, p)->op_type), "Constant") != 0)
    return false;
  const Onnx__NodeProto *n = node(im, p);
  for (size_t i = 0; i < n->n_attribute; i++) {
    const Onnx__AttributeProto *a = n->attribute[i];
    if (strcmp(onnx_str(a->name), "value_float") == 0 && a->has_f) {
      *out = a->f;
      return true;
    }
    if (strcmp(onnx_str(a->name), "value") == 0 && a->t) {
      HTensor t;
      char err[256];
      if (!onnx_read_tensor(&im->c, a->t, &t, err, sizeof err) || t.numel != 1)
        return false;
      *out = onnx_hget(&t, 0);
      return true;
    }
  }
  return false;
}

/* ---- the whole graph ---- */

typedef struct {
  const char **names;
  int *count; /* uses */
  int *user;  /* last user */
  size_t cap;
} UseMap;

static size_t um_slot(UseMap *u, const char *name) {
  size_t i = hash_str(name) & (u->cap - 1);
  while (u->names[i] && strcmp(u->names[i], name) != 0)
    i = (i + 1) & (u->cap - 1);
  u->names[i] = name;
  return i;
}

static int one_user(UseMap *u, const char *name) {
  size_t i = um_slot(u, name);
  return u->count[i] == 1 ? u->user[i] : -1;
}

static bool is_op(const Imp *im, int ni, const char *op) {
  return ni >= 0 && strcmp(onnx_str(node(im, ni)->op_type), op) == 0 &&
         (!node(im, ni)->domain || !*node(im, ni)->domain || strcmp(node(im, ni)->domain, "ai.onnx") == 0);
}

static const char *other_in(const Imp *im, int ni, const char *name) {
  const Onnx__NodeProto *n = node(im, ni);
  if (n->n_input != 2)
    return NULL;
  return strcmp(n->input[0], name) == 0 ? n->input[1] : strcmp(n->input[1], name) == 0 ? n->input[0] : NULL;
}

/* GELU: Div(x, sqrt 2) | Mul(x, 1/sqrt 2) -> Erf -> Add(1) -> Mul(x) -> Mul(0.5). */
static void match_gelu(Imp *im, int erf, UseMap *u, const ProdMap *pm) {
  const Onnx__NodeProto *e = node(im, erf);
  if (e->n_input != 1 || e->n_output != 1)
    return;
  int d = pm_get(pm, e->input[0]);
  if (d < 0 || one_user(u, e->input[0]) != erf || node(im, d)->n_input != 2)
    return;
  const char *x = node(im, d)->input[0];
  double c;
  if (!const_scalar(im, pm, node(im, d)->input[1], &c))
    return;
  if (!((is_op(im, d, "Div") && fabs(c - sqrt(2.0)) < 1e-6) ||
        (is_op(im, d, "Mul") && fabs(c - 1 / sqrt(2.0)) < 1e-6)))
    return;
  int a = one_user(u, e->output[0]);
  const char *one;
  if (!is_op(im, a, "Add") || !(one = other_in(im, a, e->output[0])) ||
      !const_scalar(im, pm, one, &c) || c != 1)
    return;
  int m1 = one_user(u, node(im, a)->output[0]);
  const char *xx;
  if (!is_op(im, m1, "Mul") || !(xx = other_in(im, m1, node(im, a)->output[0])) || strcmp(xx, x) != 0)
    return;
  int m2 = one_user(u, node(im, m1)->output[0]);
  const char *half;
  if (!is_op(im, m2, "Mul") || !(half = other_in(im, m2, node(im, m1)->output[0])) ||
      !const_scalar(im, pm, half, &c) || c != 0.5)
    return;
  im->role[d] = im->role[erf] = im->role[a] = im->role[m1] = NODE_SKIP;
  im->role[m2] = NODE_GELU;
  im->pat_x[m2] = x;
}

/* LayerNorm as opsets below 17 export it: m = ReduceMean(x, [-1]); d = x - m;
 * v = ReduceMean(Pow(d, 2), [-1]); n = d / Sqrt(v + eps); [n * gamma [+ beta]]. */
static void match_layernorm(Imp *im, int r1, UseMap *u, const ProdMap *pm) {
  const Onnx__NodeProto *r = node(im, r1);
  if (r->n_input < 1 || r->n_output != 1)
    return;
  const char *x = r->input[0];
  int s = one_user(u, r->output[0]);
  if (!is_op(im, s, "Sub") || node(im, s)->n_input != 2 || strcmp(node(im, s)->input[0], x) != 0)
    return;
  const char *dn = node(im, s)->output[0];
  size_t di = um_slot(u, dn);
  if (u->count[di] != 2)
    return;
  /* d's users: Pow and Div, in either order. */
  int p = -1, dv = -1;
  for (int i = 0; i < (int)im->g->n_node; i++) {
    const Onnx__NodeProto *n = node(im, i);
    if (n->n_input >= 1 && strcmp(onnx_str(n->input[0]), dn) == 0) {
      if (is_op(im, i, "Pow"))
        p = i;
      else if (is_op(im, i, "Div"))
        dv = i;
    }
  }
  double c, eps;
  if (p < 0 || dv < 0 || node(im, p)->n_input != 2 || !const_scalar(im, pm, node(im, p)->input[1], &c) || c != 2)
    return;
  int r2 = one_user(u, node(im, p)->output[0]);
  if (!is_op(im, r2, "ReduceMean"))
    return;
  int ad = one_user(u, node(im, r2)->output[0]);
  const char *e;
  if (!is_op(im, ad, "Add") || !(e = other_in(im, ad, node(im, r2)->output[0])) || !const_scalar(im, pm, e, &eps))
    return;
  int sq = one_user(u, node(im, ad)->output[0]);
  if (!is_op(im, sq, "Sqrt") || one_user(u, node(im, sq)->output[0]) != dv ||
      node(im, dv)->n_input != 2 || strcmp(node(im, dv)->input[1], node(im, sq)->output[0]) != 0)
    return;
  /* Both ReduceMeans over the last axis only, keepdims. */
  int rs[2] = {r1, r2};
  for (int i = 0; i < 2; i++) {
    const Onnx__NodeProto *n = node(im, rs[i]);
    bool ok = false;
    for (size_t j = 0; j < n->n_attribute; j++) {
      const Onnx__AttributeProto *a = n->attribute[j];
      if (strcmp(onnx_str(a->name), "axes") == 0)
        ok = a->n_ints == 1 && a->ints[0] == -1;
      if (strcmp(onnx_str(a->name), "keepdims") == 0 && a->has_i && a->i == 0)
        return;
    }
    if (!ok || n->n_input != 1)
      return;
  }
  int last = dv;
  const char *gamma = NULL, *beta = NULL;
  int mu = one_user(u, node(im, dv)->output[0]);
  if (is_op(im, mu, "Mul") && (gamma = other_in(im, mu, node(im, dv)->output[0]))) {
    last = mu;
    int ab = one_user(u, node(im, mu)->output[0]);
    if (is_op(im, ab, "Add") && (beta = other_in(im, ab, node(im, mu)->output[0])))
      last = ab;
  }
  int chain[] = {r1, s, p, r2, ad, sq, dv, mu};
  for (size_t i = 0; i < sizeof chain / sizeof chain[0]; i++)
    if (chain[i] >= 0 && chain[i] != last)
      im->role[chain[i]] = NODE_SKIP;
  im->role[last] = NODE_LAYERNORM;
  im->pat_x[last] = x;
  im->pat_gamma[last] = gamma;
  im->pat_beta[last] = beta;
  im->pat_eps[last] = eps;
}

static bool tr_pattern(Imp *im, int ni) {
  OVal *x = find(im, im->pat_x[ni]);
  if (!x || x->kind != OV_IR)
    return fail(im, "the input of the fused pattern is not a tensor q8c computes");
  if (im->role[ni] == NODE_GELU)
    return set_ir(im, 0, ob_node(&im->b, IR_OP_GELU, sanitize(im, out_name(im, 0)), &x->ir, 1, NULL, 0));
  /* Layernorm: gamma and beta come from the Mul and Add; present them as inputs. */
  int64_t d = x->ir->type.dims[x->ir->type.rank - 1];
  IrValue *ops[3] = {x->ir, NULL, NULL};
  const char *gb[2] = {im->pat_gamma[ni], im->pat_beta[ni]};
  for (int i = 0; i < 2; i++) {
    OVal *c = gb[i] ? find(im, gb[i]) : NULL;
    HTensor t;
    bool ok;
    if (gb[i] && (!c || c->kind != OV_CONST || c->t.dt != H_F32 || c->t.numel != d))
      return fail(im, "the LayerNorm pattern's %s is not a constant of %lld elements",
                  i ? "beta" : "gamma", (long long)d);
    t = new_tensor(im, H_F32, 1, &d, &ok);
    if (!ok)
      return false;
    for (int64_t k = 0; k < d; k++)
      ((float *)t.data)[k] = c ? ((const float *)c->t.data)[k] : (float)(1 - i);
    char name[512];
    snprintf(name, sizeof name, "%s", c ? sanitize(im, c->name) : i ? "layernorm.bias" : "layernorm.scale");
    ops[1 + i] = ob_const(&im->b, name, &t);
  }
  BAttr a = {IR_ATTR_EPS, 1, {im->pat_eps[ni]}};
  return set_ir(im, 0, ob_node(&im->b, IR_OP_LAYERNORM, sanitize(im, out_name(im, 0)), ops, 3, &a, 1));
}

static bool check_attrs(Imp *im, const OpEntry *e) {
  const Onnx__NodeProto *n = node(im, im->cur);
  for (size_t i = 0; i < n->n_attribute; i++) {
    const char *name = onnx_str(n->attribute[i]->name);
    const char *p = e->attrs;
    size_t l = strlen(name);
    bool ok = false;
    while (*p && !ok) {
      size_t w = strcspn(p, " ");
      ok = w == l && strncmp(p, name, l) == 0;
      p += w;
      while (*p == ' ')
        p++;
    }
    if (!ok)
      return fail(im, "attribute '%s' is not supported (%s takes: %s)", name, e->op,
                  *e->attrs ? e->attrs : "none");
  }
  return true;
}

/* A graph input's type: f32, rank <= 8, every dim known but a dynamic first. */
static bool input_type(Imp *im, const Onnx__ValueInfoProto *vi, IrType *t) {
  const char *name = onnx_str(vi->name);
  const Onnx__TypeProto *tp = vi->type;
  if (!tp || tp->value_case != ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE || !tp->tensor_type)
    return fail(im, "graph input '%s' is not a tensor", name);
  const Onnx__TypeProto__Tensor *tt = tp->tensor_type;
  if (tt->elem_type != ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT)
    return fail(im, "graph input '%s' has element type %d; q8c models take FLOAT inputs", name,
                (int)tt->elem_type);
  if (!tt->shape)
    return fail(im, "graph input '%s' has no shape", name);
  if (tt->shape->n_dim > IR_MAX_RANK)
    return fail(im, "graph input '%s' has rank %zu (at most %d)", name, tt->shape->n_dim, IR_MAX_RANK);
  memset(t, 0, sizeof *t);
  t->dtype = IR_F32;
  t->rank = (int)tt->shape->n_dim;
  for (int i = 0; i < t->rank; i++) {
    const Onnx__TensorShapeProto__Dimension *d = tt->shape->dim[i];
    if (d->value_case == ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE) {
      if (d->dim_value <= 0 || d->dim_value > ((int64_t)1 << 40))
        return fail(im, "graph input '%s': dimension %d is %lld", name, i, (long long)d->dim_value);
      t->dims[i] = d->dim_value;
    } else if (i == 0) {
      t->dims[i] = IR_DIM_BATCH;
    } else {
      return fail(im, "graph input '%s': dimension %d is symbolic ('%s'); q8c allows only a "
                      "dynamic first axis (the batch, '?')",
                  name, i, d->value_case == ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM ? onnx_str(d->dim_param) : "");
    }
  }
  char err[256];
  size_t bytes;
  if (!ir_type_bytes(t, 1, &bytes, err, sizeof err))
    return fail(im, "graph input '%s' %s", name, err);
  return true;
}

static bool import_graph(Imp *im) {
  const Onnx__GraphProto *g = im->g;
  IrArena *a = im->m->arena;
  size_t nn = g->n_node, total = nn * 4 + g->n_initializer + g->n_input + 16;
  im->cap = 64;
  while (im->cap < 2 * total)
    im->cap *= 2;
  im->slots = ir_alloc(a, im->cap * sizeof *im->slots);
  im->order = ir_alloc(a, (nn + 1) * sizeof(int));
  im->role = ir_alloc(a, (nn + 1) * sizeof(int));
  im->pat_x = ir_alloc(a, (nn + 1) * sizeof(char *));
  im->pat_gamma = ir_alloc(a, (nn + 1) * sizeof(char *));
  im->pat_beta = ir_alloc(a, (nn + 1) * sizeof(char *));
  im->pat_eps = ir_alloc(a, (nn + 1) * sizeof(double));
  im->cur = -1;
  char err[1024];

  for (size_t i = 0; i < g->n_initializer; i++) {
    const Onnx__TensorProto *tp = g->initializer[i];
    if (!*onnx_str(tp->name))
      return fail(im, "initializer %zu has no name", i);
    if (find(im, tp->name))
      return fail(im, "initializer '%s' is defined twice", tp->name);
    OVal *v = define(im, tp->name);
    v->kind = OV_CONST;
    if (!onnx_read_tensor(&im->c, tp, &v->t, err, sizeof err))
      return fail(im, "%s", err);
  }
  for (size_t i = 0; i < g->n_input; i++) {
    const char *name = onnx_str(g->input[i]->name);
    OVal *v = find(im, name);
    if (v)
      continue; /* an initializer also listed as an input (older exporters) */
    IrType t;
    if (!input_type(im, g->input[i], &t))
      return false;
    v = define(im, name);
    v->kind = OV_IR;
    v->ir = ob_input(&im->b, sanitize(im, name), &t);
  }

  /* Producers, checked for redefinition; then use counts. */
  ProdMap pm = {ir_alloc(a, im->cap * sizeof(char *)), ir_alloc(a, im->cap * sizeof(int)), im->cap};
  UseMap um = {ir_alloc(a, im->cap * sizeof(char *)), ir_alloc(a, im->cap * sizeof(int)),
               ir_alloc(a, im->cap * sizeof(int)), im->cap};
  for (size_t i = 0; i < nn; i++) {
    const Onnx__NodeProto *n = g->node[i];
    if (n->n_output < 1 || !*onnx_str(n->output[0])) {
      im->cur = (int)i;
      return fail(im, "the node has no output");
    }
    for (size_t j = 0; j < n->n_output; j++) {
      const char *o = onnx_str(n->output[j]);
      if (!*o)
        continue;
      if (find(im, o) || pm_get(&pm, o) >= 0) {
        im->cur = (int)i;
        return fail(im, "output '%s' is already defined", o);
      }
      pm_put(&pm, o, (int)i);
    }
  }
  for (size_t i = 0; i < nn; i++) {
    const Onnx__NodeProto *n = g->node[i];
    for (size_t j = 0; j < n->n_input; j++) {
      const char *nm = onnx_str(n->input[j]);
      if (!*nm)
        continue;
      if (!find(im, nm) && pm_get(&pm, nm) < 0) {
        im->cur = (int)i;
        return fail(im, "input '%s' is not defined by any node, initializer or graph input", nm);
      }
      size_t s = um_slot(&um, nm);
      um.count[s]++;
      um.user[s] = (int)i;
    }
  }
  for (size_t i = 0; i < g->n_output; i++) {
    size_t s = um_slot(&um, onnx_str(g->output[i]->name));
    um.count[s] += 2; /* an output is never absorbed by a pattern */
  }

  /* Kahn's algorithm: the nodes in an order where each follows its inputs'
   * producers; what is left over lies on a cycle. */
  int *pending = ir_alloc(a, (nn + 1) * sizeof(int));
  int *queue = im->order, head = 0, tail = 0;
  int *succ_start = ir_alloc(a, (nn + 2) * sizeof(int)), nedges = 0;
  for (size_t i = 0; i < nn; i++)
    for (size_t j = 0; j < g->node[i]->n_input; j++) {
      int p = *onnx_str(g->node[i]->input[j]) ? pm_get(&pm, g->node[i]->input[j]) : -1;
      if (p >= 0) {
        pending[i]++;
        succ_start[p + 1]++;
        nedges++;
      }
    }
  for (size_t i = 0; i < nn; i++)
    succ_start[i + 1] += succ_start[i];
  int *succ = ir_alloc(a, (size_t)(nedges + 1) * sizeof(int)), *fillp = ir_alloc(a, (nn + 1) * sizeof(int));
  for (size_t i = 0; i < nn; i++)
    for (size_t j = 0; j < g->node[i]->n_input; j++) {
      int p = *onnx_str(g->node[i]->input[j]) ? pm_get(&pm, g->node[i]->input[j]) : -1;
      if (p >= 0)
        succ[succ_start[p] + fillp[p]++] = (int)i;
    }
  for (size_t i = 0; i < nn; i++)
    if (pending[i] == 0)
      queue[tail++] = (int)i;
  while (head < tail) {
    int i = queue[head++];
    for (int e = succ_start[i]; e < succ_start[i + 1]; e++)
      if (--pending[succ[e]] == 0)
        queue[tail++] = succ[e];
  }
  if (tail < (int)nn) {
    for (size_t i = 0; i < nn; i++)
      if (pending[i]) {
        im->cur = (int)i;
        return fail(im, "the graph has a cycle through this node");
      }
  }

  for (size_t i = 0; i < nn; i++) {
    if (im->role[i] != NODE_PLAIN)
      continue;
    if (is_op(im, (int)i, "Erf"))
      match_gelu(im, (int)i, &um, &pm);
    else if (is_op(im, (int)i, "ReduceMean"))
      match_layernorm(im, (int)i, &um, &pm);
  }

  for (size_t k = 0; k < nn; k++) {
    int i = im->order[k];
    im->cur = i;
    const Onnx__NodeProto *n = g->node[i];
    for (size_t j = 0; j < n->n_output; j++) {
      const char *o = onnx_str(n->output[j]);
      if (*o)
        define(im, o)->uses = um.count[um_slot(&um, o)];
    }
    if (im->role[i] == NODE_SKIP)
      continue;
    if (im->role[i] != NODE_PLAIN) {
      if (!tr_pattern(im, i))
        return false;
      continue;
    }
    const char *dom = onnx_str(n->domain);
    const OpEntry *e = *dom && strcmp(dom, "ai.onnx") != 0 ? NULL : op_entry(onnx_str(n->op_type));
    if (!e)
      return fail(im, "op %s%s%s is not supported; q8c imports: %s", *dom ? dom : "",
                  *dom ? "." : "", onnx_str(n->op_type), supported_list);
    if (n->n_output < 1 || !*onnx_str(n->output[0]))
      return fail(im, "the node has no output");
    for (size_t j = 0; j < n->n_input; j++)
      if (*onnx_str(n->input[j]) && !find(im, n->input[j]))
        return fail(im, "input '%s' is not computed (it is inside a pattern q8c fused)", n->input[j]);
    for (int j = 0; j < e->min_inputs; j++)
      if (j >= (int)n->n_input || !*onnx_str(n->input[j]))
        return fail(im, "input %d is missing (%s takes at least %d)", j, e->op, e->min_inputs);
    if (!check_attrs(im, e) || !e->fn(im, i))
      return false;
    if (!find(im, n->output[0]) && !im->m->diag.failed)
      return fail(im, "internal: no result");
  }
  im->cur = -1;
  for (size_t i = 0; i < g->n_output; i++) {
    const char *name = onnx_str(g->output[i]->name);
    OVal *v = find(im, name);
    if (!v)
      return fail(im, "graph output '%s' is not computed by any node", name);
    if (v->kind != OV_IR)
      return fail(im, "graph output '%s' is a constant (or part of a quantization pattern); q8c "
                      "models compute their outputs",
                  name);
    for (size_t j = 0; j < i; j++)
      if (find(im, onnx_str(g->output[j]->name))->ir == v->ir)
        return fail(im, "graph outputs '%s' and '%s' are the same value; q8c's outputs are "
                        "distinct values",
                    onnx_str(g->output[j]->name), name);
    ob_output(&im->b, v->ir);
  }
  if (g->n_output == 0)
    return fail(im, "the graph has no outputs");
  return ob_finish(&im->b);
}

static char *dir_of(IrArena *a, const char *path) {
  const char *slash = strrchr(path, '/');
  if (!slash)
    return ir_strdup(a, ".");
  if (slash == path)
    return ir_strdup(a, "/");
  return ir_strndup(a, path, (size_t)(slash - path));
}

IrModule *fe_onnx_parse(const char *path, const unsigned char *bytes, size_t size, bool from_file) {
  Imp im = {0};
  const char *base = strrchr(path, '/');
  base = base ? base + 1 : path;
  size_t bl = strcspn(base, ".");
  char name[128];
  snprintf(name, sizeof name, "%.*s", (int)(bl < 100 ? bl : 100), base);
  im.m = ob_begin(&im.b, "model");
  IrModule *m = im.m;
  m->name = strcmp(path, "-") == 0 ? "model" : sanitize(&im, name);
  m->dir = dir_of(m->arena, path);
  ir_diag_init(&m->diag, ir_strdup(m->arena, path), NULL);
  im.c.m = m;
  im.c.dir = from_file ? m->dir : NULL;
  im.cur = -1;
  char err[512];
  Onnx__ModelProto *mp = onnx_unpack(bytes, size, err, sizeof err);
  if (!mp) {
    ir_error(&m->diag, (IrLoc){0}, "%s", err);
    return m;
  }
  im.g = mp->graph;
  im.opset = -1;
  for (size_t i = 0; i < mp->n_opset_import; i++) {
    const char *d = onnx_str(mp->opset_import[i]->domain);
    if ((!*d || strcmp(d, "ai.onnx") == 0) && mp->opset_import[i]->has_version)
      im.opset = mp->opset_import[i]->version;
  }
  if (im.opset < 0)
    fail(&im, "the model imports no opset of the ONNX domain");
  else if (im.opset < 11 || im.opset > 21)
    fail(&im, "opset %lld: q8c imports opsets 11 to 21", (long long)im.opset);
  else
    import_graph(&im);
  onnx_free(mp);
  return m;
}

bool fe_onnx_is_onnx(const char *path, const unsigned char *head, size_t n) {
  size_t l = strlen(path);
  if (l > 5 && strcmp(path + l - 5, ".onnx") == 0)
    return true;
  /* ModelProto's field 1 (ir_version, a varint) comes first in every
   * exporter's output; no text IR starts with byte 0x08. */
  return n > 0 && head[0] == 0x08;
}

IrModule *fe_onnx_parse_file(const char *path) {
  FILE *f = fopen(path, "rb");
  IrModule *m;
  if (!f) {
    ObBuild eb;
    m = ob_begin(&eb, "model");
    ir_diag_init(&m->diag, ir_strdup(m->arena, path), NULL);
    ir_error(&m->diag, (IrLoc){0}, "cannot open: %s", strerror(errno));
    return m;
  }
  unsigned char *buf = NULL;
  size_t len = 0, cap = 0;
  char why[256] = "";
  struct stat st;
  /* A regular file is read in one buffer of its size, which must be within
   * the memory cap; anything else in growing chunks. */
  if (fstat(fileno(f), &st) == 0 && S_ISREG(st.st_mode) && st.st_size > 0) {
    char cap_err[200];
    if ((uint64_t)st.st_size > ((uint64_t)2 << 30)) {
      snprintf(why, sizeof why, "is larger than 2 GiB (a protobuf's limit; larger models keep their weights in external data files)");
    } else if (!ir_bytes_allowed((uint64_t)st.st_size, cap_err, sizeof cap_err)) {
      snprintf(why, sizeof why, "(%lld bytes) %s", (long long)st.st_size, cap_err);
    } else {
      cap = (size_t)st.st_size + 1;
      buf = malloc(cap);
    }
    if (!buf) {
      fclose(f);
      ObBuild eb;
    m = ob_begin(&eb, "model");
      ir_diag_init(&m->diag, ir_strdup(m->arena, path), NULL);
      ir_error(&m->diag, (IrLoc){0}, "the file %s", why[0] ? why : "cannot be read: out of memory");
      return m;
    }
  }
  for (;;) {
    if (len == cap) {
      size_t nc = cap ? cap * 2 : 1 << 16;
      unsigned char *b = nc <= ((size_t)2 << 30) && ir_bytes_allowed(nc, why, sizeof why) ? realloc(buf, nc) : NULL;
      if (!b) {
        if (!why[0])
          snprintf(why, sizeof why, "is larger than 2 GiB (a protobuf's limit; larger models keep their weights in external data files)");
        free(buf);
        buf = NULL;
        break;
      }
      buf = b;
      cap = nc;
    }
    size_t r = fread(buf + len, 1, cap - len, f);
    len += r;
    if (r == 0)
      break;
  }
  bool rerr = ferror(f);
  fclose(f);
  if (!buf || rerr) {
    ObBuild eb;
    m = ob_begin(&eb, "model");
    ir_diag_init(&m->diag, ir_strdup(m->arena, path), NULL);
    ir_error(&m->diag, (IrLoc){0}, "the file %s", rerr ? "cannot be read" : why);
    free(buf);
    return m;
  }
  m = fe_onnx_parse(path, buf, len, true);
  free(buf);
  return m;
}
