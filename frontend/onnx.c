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
 *          pattern MatMulInteger -> Cast -> Mul;
 *   DYNQ   an output of DynamicQuantizeLinear (`ir` its f32 input), and
 *   DSCALE its x_scale times a constant weight scale: with a MatMulInteger
 *          of the same x, cast to float and multiplied by that product
 *          (ONNX Runtime's quantize_dynamic), they become a qlinear_dyn
 *          {granularity = tensor};
 *   FUSED  the result of a node inside a fused pattern: never computed.
 *
 * A value produced by DequantizeLinear remembers its quantized origin, so that
 * MatMul/Gemm between dequantized operands (the QDQ form of ONNX Runtime's
 * quantizer) becomes a qgemm on the integers with the model's own scales and
 * zero points. Float patterns are recognised before translation: the Erf
 * and tanh forms of GELU, SiLU, the decomposed LayerNorm that opsets below 17
 * export and LLaMA's RMSNorm; a MatMul by a constant takes the bias Add after
 * it into a linear. Two marks on IR values carry what the IR cannot say
 * itself until an op consumes it: `causal` (scores under a constant causal
 * mask, for the Softmax that becomes softmax {causal = 1}) and `rows` (a
 * [-1, D] view folding the batch into rows, GPT-2's Conv1D, for the linear
 * and the Reshape back). Symbolic input dims are bound by name (--dim).
 * docs/import.md lists the ops and the arithmetic. */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "onnx_internal.h"

typedef enum { OV_CONST, OV_IR, OV_ACC, OV_ACCF, OV_DYNQ, OV_DSCALE, OV_FUSED } OvKind;

typedef struct {
  OvKind kind;
  HTensor t;        /* OV_CONST */
  IrValue *ir;      /* OV_IR; OV_ACC/ACCF: MatMulInteger's quantized input A */
  int32_t acc_zp;   /* OV_ACC/ACCF: A's zero point (B is in q); with dyn, W's */
  bool dyn;         /* OV_ACC/ACCF: A is DynamicQuantizeLinear's: q is W [N, K] i8 */
  int dq_part;      /* OV_DYNQ: the output (0 y, 1 y_scale, 2 y_zero_point) */
  const char *dq_node; /* OV_DYNQ/DSCALE: the DynamicQuantizeLinear node's name */
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
  /* Scores (`ir`) with a causal mask still to apply: a Where or Add of a
   * constant lower-triangular mask, which a Softmax over the last axis
   * takes as {causal = 1}; anything else using it is an error. */
  bool causal;
  /* `ir` [?, ..., D] standing for its rows, ir.reshape(-1, D): a view that
   * folds the batch axis into the rows, which the IR cannot express.
   * GPT-2's Conv1D (addmm on x.view(-1, D), then a view back) exports it;
   * Gemm/MatMul by a constant and bias Adds work row by row, so they apply
   * to `ir` itself, and the Reshape back to [?, ..., N] ends the view. */
  bool rows;
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

/* What a node became in the pattern pre-pass. NODE_ALIAS: the node's
 * result is the value named by pat_x (a bias Add fused into the linear that
 * MatMul made). */
enum { NODE_PLAIN, NODE_SKIP, NODE_GELU, NODE_LAYERNORM, NODE_GELU_TANH, NODE_SILU, NODE_RMSNORM,
       NODE_ALIAS };

struct UseMap;

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
  const FeDims *dims;  /* --dim bindings, or NULL */
  struct UseMap *um;   /* use counts of every ONNX name */
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
  case OV_DYNQ: return "an output of DynamicQuantizeLinear";
  case OV_DSCALE: return "DynamicQuantizeLinear's y_scale times a weight scale";
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
  if (v->kind == OV_IR && v->rows) {
    fail(im, "input '%s' is a [-1, %lld] view folding the batch axis '?' into its rows; q8c maps "
             "it only through Gemm/MatMul by a constant and Add of a bias, back to a Reshape "
             "that restores the batch axis",
         v->name, (long long)v->ir->type.dims[v->ir->type.rank - 1]);
    return NULL;
  }
  if (v->kind == OV_IR && v->causal) {
    fail(im, "input '%s' carries a causal mask (Where or Add of a constant lower-triangular "
             "mask); q8c maps it only on its way (through Add) to a Softmax over the last axis, "
             "which becomes softmax {causal = 1}",
         v->name);
    return NULL;
  }
  if (v->kind == OV_IR)
    return v->ir;
  if (v->kind == OV_DYNQ || v->kind == OV_DSCALE) {
    fail(im, "input '%s' is %s (node '%s'); q8c maps DynamicQuantizeLinear only in ONNX "
             "Runtime's pattern: MatMulInteger(y, W, y_zero_point, W_zero_point) -> Cast(FLOAT) "
             "-> Mul(., Mul(y_scale, W_scale)) [-> Add(bias)], W and W_scale constants "
             "(docs/import.md)",
         v->name, kind_what(v->kind), v->dq_node);
    return NULL;
  }
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

/* The numpy broadcast shape of n constants; false when they do not fit. */
static bool bshape(const HTensor *const *ts, int n, int64_t *dims, int *rank) {
  *rank = 0;
  for (int k = 0; k < n; k++)
    if (ts[k]->rank > *rank)
      *rank = ts[k]->rank;
  for (int i = 0; i < *rank; i++) {
    dims[i] = 1;
    for (int k = 0; k < n; k++) {
      int it = i - (*rank - ts[k]->rank);
      int64_t d = it >= 0 ? ts[k]->dims[it] : 1;
      if (d != 1 && dims[i] != 1 && d != dims[i])
        return false;
      if (d != 1)
        dims[i] = d;
    }
  }
  return true;
}

/* The element of t that element e of the broadcast result [dims] reads. */
static int64_t bidx(const HTensor *t, const int64_t *dims, int rank, int64_t e) {
  int64_t idx = 0, s = 1;
  for (int i = rank - 1; i >= 0; i--) {
    int64_t k = e % dims[i];
    e /= dims[i];
    int it = i - (rank - t->rank);
    if (it >= 0) {
      idx += (t->dims[it] == 1 ? 0 : k) * s;
      s *= t->dims[it];
    }
  }
  return idx;
}

/* Elementwise fold of two constants with numpy broadcasting: + - * / on f32
 * (or on i64 when both are, C's truncating division), `p` pow, and the
 * comparisons `<` `>` `=` giving bool (u8). */
static bool fold_binary(Imp *im, const HTensor *a, const HTensor *b, char op) {
  const HTensor *ts[2] = {a, b};
  int64_t dims[IR_MAX_RANK];
  int rank;
  if (!bshape(ts, 2, dims, &rank))
    return fail(im, "constant shapes do not broadcast");
  bool isint = a->dt != H_F32 && b->dt != H_F32, cmp = op == '<' || op == '>' || op == '=', ok;
  HTensor r = new_tensor(im, cmp ? H_U8 : isint ? H_I64 : H_F32, rank, dims, &ok);
  if (!ok)
    return false;
  for (int64_t e = 0; e < r.numel; e++) {
    int64_t ea = bidx(a, dims, rank, e), eb = bidx(b, dims, rank, e);
    if (isint) {
      int64_t x = onnx_hget_i64(a, ea), y = onnx_hget_i64(b, eb), z = 0;
      if (op == '=') {
        ((uint8_t *)r.data)[e] = x == y;
        continue;
      }
      if (x == ONNX_SYM_BATCH || y == ONNX_SYM_BATCH)
        return fail(im, "arithmetic on the batch dimension '?' of a shape is not supported");
      if (cmp) {
        ((uint8_t *)r.data)[e] = op == '<' ? x < y : x > y;
        continue;
      }
      if ((op == '+' && __builtin_add_overflow(x, y, &z)) ||
          (op == '*' && __builtin_mul_overflow(x, y, &z)) ||
          (op == '-' && __builtin_sub_overflow(x, y, &z)) || (op == '/' && (y == 0 || (x == INT64_MIN && y == -1))) ||
          op == 'p')
        return fail(im, "integer overflow, division by zero or Pow folding integer constants");
      if (op == '/')
        z = x / y;
      ((int64_t *)r.data)[e] = z;
    } else {
      float x = (float)onnx_hget(a, ea), y = (float)onnx_hget(b, eb);
      if (cmp)
        ((uint8_t *)r.data)[e] = op == '<' ? x < y : op == '>' ? x > y : x == y;
      else
        ((float *)r.data)[e] = op == '+' ? x + y : op == '*' ? x * y : op == '-' ? x - y
                             : op == '/' ? x / y : (float)pow(x, y);
    }
  }
  return set_const(im, 0, &r);
}

/* A constant operand of a suffix broadcast: leading 1s dropped, so that
 * [1, N] against [?, N] is [N]; a single element against anything is []. */
static IrValue *bcast_const(Imp *im, int i, const IrType *other) {
  OVal *v = in(im, i);
  HTensor t = v->t;
  /* Dropping a leading 1 changes nothing while the other operand's rank is
   * at least this one's. */
  while (t.rank > 0 && t.dims[0] == 1 && t.rank <= other->rank) {
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

/* Is the constant c the causal mask of scores x[..., Q, K] (K >= Q; c's
 * leading dims 1, its last two [Q, K])? Query i sees key j when
 * j <= i + K - Q. `additive`: c holds 0 where seen and at most -10000
 * elsewhere (exp of that underflows to 0, so softmax gives those keys
 * weight 0, as softmax {causal = 1} does); CAUSAL_SEEN: c is a condition,
 * non-zero exactly where seen; CAUSAL_HIDDEN: non-zero exactly where not
 * (torch's masked_fill(ones.triu(K - Q + 1), -inf) as Where(c, -inf, x)). */
enum { CAUSAL_SEEN, CAUSAL_ADDITIVE, CAUSAL_HIDDEN };

static bool causal_const(const HTensor *c, const IrType *x, int form) {
  bool additive = form == CAUSAL_ADDITIVE;
  if (c->rank < 2 || x->rank < 2 || c->rank > x->rank || (additive && c->dt != H_F32))
    return false;
  int64_t q = x->dims[x->rank - 2], k = x->dims[x->rank - 1];
  if (q == IR_DIM_BATCH || k == IR_DIM_BATCH || k < q || c->dims[c->rank - 2] != q ||
      c->dims[c->rank - 1] != k)
    return false;
  for (int i = 0; i < c->rank - 2; i++)
    if (c->dims[i] != 1)
      return false;
  for (int64_t i = 0; i < q; i++)
    for (int64_t j = 0; j < k; j++) {
      double v = onnx_hget(c, i * k + j);
      bool seen = j <= i + k - q;
      if (additive ? (seen ? v != 0 : !(v <= -10000))
                   : (v != 0) != (form == CAUSAL_SEEN ? seen : !seen))
        return false;
    }
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
  if (op == IR_OP_ADD) {
    /* Scores + a constant causal mask: the scores, to be masked by softmax. */
    for (int i = 0; i < 2; i++) {
      OVal *x = in(im, i), *c = in(im, 1 - i);
      if (x->kind == OV_IR && c->kind == OV_CONST && x->ir->type.dtype == IR_F32 &&
          causal_const(&c->t, &x->ir->type, CAUSAL_ADDITIVE)) {
        OVal *o = def_out(im, 0, OV_IR);
        o->ir = x->ir;
        o->causal = true;
        return true;
      }
    }
  }
  bool causal = op == IR_OP_ADD && ((a->kind == OV_IR && a->causal) || (b->kind == OV_IR && b->causal));
  /* A bias added to rows: a constant of the rows' width. */
  bool rows = false;
  for (int i = 0; i < 2; i++) {
    OVal *x = in(im, i), *c = in(im, 1 - i);
    if (op == IR_OP_ADD && x->kind == OV_IR && x->rows && c->kind == OV_CONST && c->t.rank <= 2 &&
        c->t.numel == x->ir->type.dims[x->ir->type.rank - 1])
      rows = true;
  }
  IrValue *x[2];
  for (int i = 0; i < 2; i++) {
    OVal *o = in(im, 1 - i), *v = in(im, i);
    const IrType *other = o->kind == OV_IR ? ir_type_of(o) : NULL;
    if (v->kind == OV_CONST && other)
      x[i] = bcast_const(im, i, other);
    else if ((causal || rows) && v->kind == OV_IR)
      x[i] = v->ir; /* the mask rides along to the softmax; rows stay rows */
    else
      x[i] = need_ir(im, i);
    if (!x[i])
      return false;
  }
  if (!set_ir(im, 0, ob_node(&im->b, op, sanitize(im, out_name(im, 0)), x, 2, NULL, 0)))
    return false;
  find(im, out_name(im, 0))->causal = causal;
  find(im, out_name(im, 0))->rows = rows;
  return true;
}

static bool tr_add(Imp *im, int ni) { return binary(im, IR_OP_ADD, '+'); }

static bool tr_sub(Imp *im, int ni) { return binary(im, IR_OP_SUB, '-'); }

static bool tr_div(Imp *im, int ni) { return binary(im, IR_OP_DIV, '/'); }

/* A scalar f32 constant, for the ops written as a multiplication. */
static IrValue *scalar_const(Imp *im, const char *what, float v) {
  bool ok;
  HTensor t = new_tensor(im, H_F32, 0, NULL, &ok);
  if (!ok)
    return NULL;
  ((float *)t.data)[0] = v;
  char name[512];
  snprintf(name, sizeof name, "%s.%s", sanitize(im, out_name(im, 0)), what);
  return ob_const(&im->b, name, &t);
}

/* Unary folds of constants: Sqrt, Neg, Reciprocal, Sigmoid, Tanh, Not. */
static bool fold_unary(Imp *im, const HTensor *t, char op) {
  bool ok;
  bool keep_int = op == 'n' && t->dt != H_F32;
  HTensor r = new_tensor(im, op == '!' ? H_U8 : keep_int ? H_I64 : H_F32, t->rank, t->dims, &ok);
  if (!ok)
    return false;
  for (int64_t i = 0; i < r.numel; i++) {
    if (keep_int) {
      int64_t v = onnx_hget_i64(t, i);
      if (v == ONNX_SYM_BATCH || v == INT64_MIN)
        return fail(im, "negating the batch dimension '?' of a shape is not supported");
      ((int64_t *)r.data)[i] = -v;
      continue;
    }
    float x = (float)onnx_hget(t, i);
    float y = op == 's' ? sqrtf(x) : op == 'n' ? -x : op == 'r' ? 1.0f / x
            : op == 'g' ? (float)(1 / (1 + exp(-(double)x))) : op == 't' ? (float)tanh(x) : (float)(x == 0);
    hset(&r, i, y);
  }
  return set_const(im, 0, &r);
}

static bool unary_or_fold(Imp *im, IrOp op, char ch) {
  if (is_const(im, 0))
    return fold_unary(im, &in(im, 0)->t, ch);
  IrValue *x = need_ir(im, 0);
  return x && set_ir(im, 0, ob_node(&im->b, op, sanitize(im, out_name(im, 0)), &x, 1, NULL, 0));
}

static bool tr_sigmoid(Imp *im, int ni) { return unary_or_fold(im, IR_OP_SIGMOID, 'g'); }

static bool tr_tanh(Imp *im, int ni) { return unary_or_fold(im, IR_OP_TANH, 't'); }

/* Sqrt, Reciprocal and Not: constants only (in a graph, Sqrt and
 * Reciprocal appear inside the LayerNorm and RMSNorm patterns). */
static bool tr_fold_only(Imp *im, int ni) {
  const char *op = onnx_str(node(im, ni)->op_type);
  if (!is_const(im, 0))
    return fail(im, "%s of a computed tensor is not supported (q8c has no such op; Sqrt and "
                    "Reciprocal are mapped inside the LayerNorm and RMSNorm patterns, and folded "
                    "between constants)",
                op);
  return fold_unary(im, &in(im, 0)->t, op[0] == 'S' ? 's' : op[0] == 'R' ? 'r' : '!');
}

/* Neg: -x is x * -1 exactly. */
static bool tr_neg(Imp *im, int ni) {
  if (is_const(im, 0))
    return fold_unary(im, &in(im, 0)->t, 'n');
  IrValue *x[2] = {need_ir(im, 0), NULL};
  if (!x[0] || !(x[1] = scalar_const(im, "neg", -1)))
    return false;
  return set_ir(im, 0, ob_node(&im->b, IR_OP_MUL, sanitize(im, out_name(im, 0)), x, 2, NULL, 0));
}

/* Pow: folded between constants; x^2 of a computed x is x * x (what
 * PyTorch computes for pow(x, 2)); other exponents only inside patterns. */
static bool tr_pow(Imp *im, int ni) {
  if (is_const(im, 0) && is_const(im, 1))
    return fold_binary(im, &in(im, 0)->t, &in(im, 1)->t, 'p');
  if (!is_const(im, 1) || in(im, 1)->t.numel != 1 || onnx_hget(&in(im, 1)->t, 0) != 2)
    return fail(im, "Pow of a computed tensor is mapped only with the exponent 2 (as x * x), "
                    "and inside the tanh-GELU, LayerNorm and RMSNorm patterns");
  IrValue *x[2] = {need_ir(im, 0), NULL};
  if (!x[0])
    return false;
  x[1] = x[0];
  return set_ir(im, 0, ob_node(&im->b, IR_OP_MUL, sanitize(im, out_name(im, 0)), x, 2, NULL, 0));
}

static bool tr_compare(Imp *im, int ni) {
  const char *op = onnx_str(node(im, ni)->op_type);
  if (!is_const(im, 0) || !is_const(im, 1))
    return fail(im, "%s of computed tensors is not supported (only folded between constants)", op);
  return fold_binary(im, &in(im, 0)->t, &in(im, 1)->t, op[0] == 'E' ? '=' : op[0] == 'L' ? '<' : '>');
}

static bool tr_range(Imp *im, int ni) {
  const HTensor *t[3];
  for (int i = 0; i < 3; i++) {
    if (!(t[i] = need_const(im, i, i == 0 ? "start" : i == 1 ? "limit" : "delta")))
      return false;
    if (t[i]->numel != 1)
      return fail(im, "start, limit and delta must be scalars");
    if (onnx_hget_i64(t[i], 0) == ONNX_SYM_BATCH)
      return fail(im, "a Range over the batch dimension '?' is not supported");
  }
  double a = onnx_hget(t[0], 0), l = onnx_hget(t[1], 0), d = onnx_hget(t[2], 0);
  if (d == 0 || !isfinite(a) || !isfinite(l) || !isfinite(d))
    return fail(im, "delta is 0 or a bound is not finite");
  double cnt = ceil((l - a) / d);
  if (cnt > (double)((int64_t)1 << 40))
    return fail(im, "the range has too many elements");
  int64_t n = cnt > 0 ? (int64_t)cnt : 0;
  bool ok;
  HTensor r = new_tensor(im, t[0]->dt, 1, &n, &ok);
  if (!ok)
    return false;
  for (int64_t i = 0; i < n; i++)
    hset(&r, i, a + (double)i * d);
  return set_const(im, 0, &r);
}

/* Where: folded between constants; Where(causal mask, scores, c <= -10000)
 * leaves the scores marked for softmax {causal = 1}. */
static bool tr_where(Imp *im, int ni) {
  OVal *c = in(im, 0), *a = in(im, 1), *b = in(im, 2);
  if (c->kind == OV_CONST && a->kind == OV_CONST && b->kind == OV_CONST) {
    const HTensor *ts[3] = {&c->t, &a->t, &b->t};
    int64_t dims[IR_MAX_RANK];
    int rank;
    bool ok;
    if (!bshape(ts, 3, dims, &rank))
      return fail(im, "constant shapes do not broadcast");
    if ((a->t.dt == H_F32) != (b->t.dt == H_F32))
      return fail(im, "X and Y differ in type");
    HTensor r = new_tensor(im, a->t.dt == H_F32 ? H_F32 : H_I64, rank, dims, &ok);
    if (!ok)
      return false;
    for (int64_t e = 0; e < r.numel; e++) {
      bool pick = onnx_hget(&c->t, bidx(&c->t, dims, rank, e)) != 0;
      const HTensor *s = pick ? &a->t : &b->t;
      int64_t k = bidx(s, dims, rank, e);
      if (r.dt == H_F32)
        ((float *)r.data)[e] = (float)onnx_hget(s, k);
      else
        ((int64_t *)r.data)[e] = onnx_hget_i64(s, k);
    }
    return set_const(im, 0, &r);
  }
  if (c->kind == OV_CONST && a->kind == OV_IR && b->kind == OV_CONST && b->t.numel == 1 &&
      onnx_hget(&b->t, 0) <= -10000 && a->ir->type.dtype == IR_F32 &&
      causal_const(&c->t, &a->ir->type, CAUSAL_SEEN)) {
    OVal *o = def_out(im, 0, OV_IR);
    o->ir = a->ir;
    o->causal = true;
    return true;
  }
  /* The same with the condition inverted: Where(hidden, c, scores). */
  if (c->kind == OV_CONST && b->kind == OV_IR && a->kind == OV_CONST && a->t.numel == 1 &&
      onnx_hget(&a->t, 0) <= -10000 && b->ir->type.dtype == IR_F32 &&
      causal_const(&c->t, &b->ir->type, CAUSAL_HIDDEN)) {
    OVal *o = def_out(im, 0, OV_IR);
    o->ir = b->ir;
    o->causal = true;
    return true;
  }
  return fail(im, "Where is mapped only between constants (folded) and in the causal-mask form "
                  "Where(mask, scores, c): mask a constant [..., Q, K] lower-triangular mask (key "
                  "j seen by query i when j <= i + K - Q), c a constant <= -10000 (or "
                  "Where(not mask, c, scores)), the result "
                  "going (through Add) to a Softmax over the last axis, which becomes softmax "
                  "{causal = 1}");
}

/* Trilu: folded on constants only (torch's triu, opset 14 and later: the
 * causal mask masked_fill(ones(Q, K).triu(K - Q + 1), -inf) builds, a
 * ConstantOfShape once the sequence is bound). The upper (or lower)
 * triangle of the last two axes from diagonal k is kept, the rest is 0. */
static bool tr_trilu(Imp *im, int ni) {
  if (!is_const(im, 0))
    return fail(im, "Trilu of a computed tensor is not supported (only folded on constants, as "
                    "in a causal mask)");
  const HTensor *x = &in(im, 0)->t;
  int64_t k = 0;
  if (in(im, 1)) {
    const HTensor *kt = need_const(im, 1, "k");
    if (!kt)
      return false;
    if (kt->numel != 1 || onnx_hget_i64(kt, 0) == ONNX_SYM_BATCH)
      return fail(im, "k must be a scalar, not the batch dimension '?'");
    k = onnx_hget_i64(kt, 0);
  }
  if (x->rank < 2)
    return fail(im, "the input has rank %d; Trilu takes rank 2 or more", x->rank);
  bool upper = attr_int(im, "upper", 1) != 0, ok;
  HTensor r = new_tensor(im, x->dt, x->rank, x->dims, &ok);
  if (!ok)
    return false;
  int64_t rows = x->dims[x->rank - 2], cols = x->dims[x->rank - 1];
  for (int64_t e = 0; e < r.numel; e++) {
    int64_t i = e / cols % rows, j = e % cols;
    bool keep = upper ? j - i >= k : j - i <= k;
    if (x->dt == H_I64)
      ((int64_t *)r.data)[e] = keep ? onnx_hget_i64(x, e) : 0;
    else
      hset(&r, e, keep ? onnx_hget(x, e) : 0);
  }
  return set_const(im, 0, &r);
}

static bool tr_softmax(Imp *im, int ni) {
  OVal *v = in(im, 0);
  bool causal = v && v->kind == OV_IR && v->causal;
  IrValue *x = causal ? v->ir : need_ir(im, 0);
  if (!x)
    return false;
  int rank = x->type.rank;
  int64_t ax = attr_int(im, "axis", im->opset >= 13 ? -1 : 1);
  int axis = norm_axis(ax, rank);
  if (axis < 0)
    return fail(im, "axis %lld is out of range for a rank-%d tensor", (long long)ax, rank);
  /* Before opset 13 Softmax flattens to 2-D at `axis`: at the last axis that
   * is the same as over the last axis. */
  if (axis != rank - 1 && (im->opset < 13 || causal))
    return fail(im, "softmax over axis %d of a rank-%d tensor: %s", axis, rank,
                causal ? "a causal mask needs the last axis"
                       : "before opset 13 Softmax flattens the axes from `axis` on; q8c maps "
                         "it at the last axis only");
  BAttr a[1];
  int na = 0;
  if (causal)
    a[na++] = (BAttr){IR_ATTR_CAUSAL, 1, {1}};
  else if (axis != rank - 1)
    a[na++] = (BAttr){IR_ATTR_AXIS, 1, {axis}};
  return set_ir(im, 0, ob_node(&im->b, IR_OP_SOFTMAX, sanitize(im, out_name(im, 0)), &x, 1, a, na));
}

/* A slice of an IR value along one axis: [start, end) after numpy's
 * clamping; a slice that keeps the whole axis is no node. */
static IrValue *slice_axis(Imp *im, IrValue *x, int axis, int64_t s, int64_t e, const char *name) {
  int64_t d = x->type.dims[axis];
  if (d == IR_DIM_BATCH) {
    if (s == 0 && e >= INT32_MAX)
      return x;
    fail(im, "slicing the batch axis '?' is not supported");
    return NULL;
  }
  if (s < 0)
    s += d;
  if (e < 0)
    e += d;
  s = s < 0 ? 0 : s > d ? d : s;
  e = e < 0 ? 0 : e > d ? d : e;
  if (s == 0 && e == d)
    return x;
  if (e <= s) {
    fail(im, "the slice [%lld, %lld) of axis %d is empty", (long long)s, (long long)e, axis);
    return NULL;
  }
  BAttr a[3] = {{IR_ATTR_AXIS, 1, {axis}}, {IR_ATTR_START, 1, {(double)s}}, {IR_ATTR_END, 1, {(double)e}}};
  IrValue *r = ob_node(&im->b, IR_OP_SLICE, name, &x, 1, a, 3);
  if (!r)
    rewrap(im);
  return r;
}

/* A constant sliced along its axes (step 1): [st[i], en[i]) per axis, as
 * output `out`. */
static bool const_slice(Imp *im, const HTensor *t, int out, const int64_t *st, const int64_t *en) {
  int64_t dims[IR_MAX_RANK];
  for (int i = 0; i < t->rank; i++)
    dims[i] = en[i] - st[i];
  bool ok;
  HTensor r = new_tensor(im, t->dt, t->rank, dims, &ok);
  if (!ok)
    return false;
  size_t es = onnx_hsize(t->dt);
  for (int64_t e = 0; e < r.numel; e++) {
    int64_t rem = e, src = 0, stride = 1;
    for (int i = t->rank - 1; i >= 0; i--) {
      int64_t k = rem % dims[i];
      rem /= dims[i];
      src += (k + st[i]) * stride;
      stride *= t->dims[i];
    }
    memcpy((char *)r.data + (size_t)e * es, (const char *)t->data + (size_t)src * es, es);
  }
  OVal *o = def_out(im, out, OV_CONST);
  o->t = r;
  return true;
}

static bool read_ints(Imp *im, int i, const char *what, int64_t *v, int *n) {
  const HTensor *t = need_const(im, i, what);
  if (!t)
    return false;
  if (t->rank > 1 || t->numel > IR_MAX_RANK || (t->dt != H_I64 && t->dt != H_I32))
    return fail(im, "%s must be a 1-D integer tensor of at most %d entries", what, IR_MAX_RANK);
  for (int k = 0; k < t->numel; k++)
    v[k] = onnx_hget_i64(t, k);
  *n = (int)t->numel;
  return true;
}

static bool tr_slice(Imp *im, int ni) {
  OVal *v = in(im, 0);
  int64_t st[IR_MAX_RANK], en[IR_MAX_RANK], ax[IR_MAX_RANK], step[IR_MAX_RANK];
  int ns, ne, na, nst;
  if (!read_ints(im, 1, "starts", st, &ns) || !read_ints(im, 2, "ends", en, &ne))
    return false;
  if (ns != ne)
    return fail(im, "starts and ends differ in length");
  na = ns;
  for (int k = 0; k < na; k++)
    ax[k] = k;
  if (in(im, 3)) {
    if (!read_ints(im, 3, "axes", ax, &na))
      return false;
    if (na != ns)
      return fail(im, "axes and starts differ in length");
  }
  if (in(im, 4)) {
    if (!read_ints(im, 4, "steps", step, &nst))
      return false;
    for (int k = 0; k < nst; k++)
      if (step[k] != 1)
        return fail(im, "steps other than 1 are not supported (step %lld)", (long long)step[k]);
  }
  for (int k = 0; k < na; k++)
    if (st[k] == ONNX_SYM_BATCH || en[k] == ONNX_SYM_BATCH)
      return fail(im, "a slice bound is the batch dimension '?'");
  if (v->kind == OV_CONST) {
    int rank = v->t.rank;
    int64_t s[IR_MAX_RANK], e[IR_MAX_RANK];
    for (int i = 0; i < rank; i++)
      s[i] = 0, e[i] = v->t.dims[i];
    for (int k = 0; k < na; k++) {
      int a = norm_axis(ax[k], rank);
      if (a < 0)
        return fail(im, "axis %lld is out of range", (long long)ax[k]);
      int64_t d = v->t.dims[a], b0 = st[k], b1 = en[k];
      b0 = b0 < 0 ? b0 + d : b0;
      b1 = b1 < 0 ? b1 + d : b1;
      s[a] = b0 < 0 ? 0 : b0 > d ? d : b0;
      e[a] = b1 < s[a] ? s[a] : b1 > d ? d : b1;
    }
    return const_slice(im, &v->t, 0, s, e);
  }
  IrValue *x = need_ir(im, 0);
  if (!x)
    return false;
  for (int k = 0; k < na && x; k++) {
    int a = norm_axis(ax[k], x->type.rank);
    if (a < 0)
      return fail(im, "axis %lld is out of range", (long long)ax[k]);
    x = slice_axis(im, x, a, st[k], en[k], sanitize(im, out_name(im, 0)));
  }
  if (!x)
    return false;
  def_out(im, 0, OV_IR)->ir = x;
  return true;
}

/* Split: one slice per output; sizes from input 1 (opset 13 on), the
 * `split` attribute (before), or equal parts. */
static bool tr_split(Imp *im, int ni) {
  OVal *v = in(im, 0);
  const Onnx__NodeProto *n = node(im, ni);
  int nout = (int)n->n_output;
  if (v->kind != OV_CONST && !need_ir(im, 0))
    return false;
  const IrType *xt = v->kind == OV_IR ? &v->ir->type : NULL;
  int rank = xt ? xt->rank : v->t.rank;
  int64_t ax = attr_int(im, "axis", 0);
  int axis = norm_axis(ax, rank);
  if (axis < 0)
    return fail(im, "axis %lld is out of range", (long long)ax);
  int64_t d = xt ? xt->dims[axis] : v->t.dims[axis];
  if (d == IR_DIM_BATCH)
    return fail(im, "splitting the batch axis '?' is not supported");
  int64_t sizes[64];
  if (nout > 64)
    return fail(im, "more than 64 outputs");
  const Onnx__AttributeProto *sa = attr(im, "split");
  if (in(im, 1)) {
    const HTensor *t = need_const(im, 1, "split");
    if (!t)
      return false;
    if (t->numel != nout)
      return fail(im, "split has %lld entries for %d outputs", (long long)t->numel, nout);
    for (int i = 0; i < nout; i++)
      sizes[i] = onnx_hget_i64(t, i);
  } else if (sa) {
    if ((int)sa->n_ints != nout)
      return fail(im, "split has %zu entries for %d outputs", sa->n_ints, nout);
    for (int i = 0; i < nout; i++)
      sizes[i] = sa->ints[i];
  } else {
    int64_t part = (d + nout - 1) / nout; /* opset 18's num_outputs: the last may be smaller */
    for (int i = 0; i < nout; i++)
      sizes[i] = i < nout - 1 ? part : d - part * (nout - 1);
  }
  int64_t off = 0;
  for (int i = 0; i < nout; i++) {
    if (sizes[i] <= 0 || sizes[i] > d - off)
      return fail(im, "the parts' sizes do not add up to the axis' %lld", (long long)d);
    if (*onnx_str(n->output[i])) {
      if (xt) {
        IrValue *r = slice_axis(im, v->ir, axis, off, off + sizes[i], sanitize(im, n->output[i]));
        if (!r)
          return false;
        def_out(im, i, OV_IR)->ir = r;
      } else {
        int64_t s[IR_MAX_RANK] = {0}, e[IR_MAX_RANK];
        memcpy(e, v->t.dims, sizeof(int64_t) * (size_t)rank);
        s[axis] = off;
        e[axis] = off + sizes[i];
        if (!const_slice(im, &v->t, i, s, e))
          return false;
      }
    }
    off += sizes[i];
  }
  if (off != d)
    return fail(im, "the parts' sizes add up to %lld, not the axis' %lld", (long long)off,
                (long long)d);
  return true;
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
      if (in_fixed != out_fixed && rank == 2 && infer == 0 && x->type.rank >= 3 &&
          dims[1] == x->type.dims[x->type.rank - 1] && x->type.dtype == IR_F32) {
        OVal *o = def_out(im, 0, OV_IR);
        o->ir = x;
        o->rows = true;
        return true;
      }
      if (in_fixed != out_fixed)
        return fail(im, "the -1 entry would be a multiple of the batch dimension; q8c keeps '?' "
                        "as its own axis (except in x.reshape(-1, D) feeding a linear layer)");
      dims[infer] = IR_DIM_BATCH;
    } else {
      if (out_fixed == 0 || in_fixed % out_fixed)
        return fail(im, "the -1 entry cannot be inferred");
      dims[infer] = in_fixed / out_fixed;
    }
  }
  /* A reshape to the same shape is no node (so also for integer ids, which
   * q8c's reshape does not take). */
  bool same = rank == x->type.rank;
  for (int i = 0; same && i < rank; i++)
    same = dims[i] == x->type.dims[i];
  if (same)
    return set_ir(im, 0, x);
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
  OVal *v = in(im, 0);
  if (v->kind == OV_IR && v->rows) {
    /* The view ends where the shape gives the rows their axes back. */
    const IrType *t = &v->ir->type;
    bool same = s->numel == t->rank;
    for (int i = 0; same && i < t->rank; i++)
      same = shape[i] == (t->dims[i] == IR_DIM_BATCH ? ONNX_SYM_BATCH : t->dims[i]) ||
             (i == 0 && shape[i] == -1);
    if (!same)
      return fail(im, "reshaping a [-1, D] view of the batch's rows to other than their "
                      "original axes is not supported");
    return set_ir(im, 0, v->ir);
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
  OVal *dv = in(im, 0), *iv = in(im, 1);
  if (dv->kind == OV_CONST && iv->kind == OV_IR) {
    /* An embedding: a constant table [V, D] indexed by ids. */
    IrValue *ops[2] = {NULL, iv->ir};
    if (iv->causal || (iv->ir->type.dtype != IR_I64 && iv->ir->type.dtype != IR_I32))
      return fail(im, "the indices are %s; a gather of a table takes int64 or int32 ids",
                  ir_dtype_name(iv->ir->type.dtype));
    if (norm_axis(attr_int(im, "axis", 0), dv->t.rank) != 0 || dv->t.rank != 2 || dv->t.dt != H_F32)
      return fail(im, "a Gather of computed indices is mapped only as an embedding: a 2-D f32 "
                      "constant table indexed along axis 0");
    if (!(ops[0] = need_ir(im, 0)))
      return false;
    return set_ir(im, 0, ob_node(&im->b, IR_OP_GATHER, sanitize(im, out_name(im, 0)), ops, 2, NULL, 0));
  }
  if (dv->kind == OV_IR && iv->kind == OV_CONST) {
    /* x[:, k] and the like: a slice, and a reshape that drops the axis for
     * a scalar index. */
    IrValue *x = need_ir(im, 0);
    if (!x)
      return false;
    int64_t ax = attr_int(im, "axis", 0);
    int axis = norm_axis(ax, x->type.rank);
    if (axis < 0)
      return fail(im, "axis %lld is out of range", (long long)ax);
    if (iv->t.numel != 1 || iv->t.rank > 1)
      return fail(im, "a Gather of a computed tensor is mapped only with one constant index (a "
                      "slice)");
    int64_t k = onnx_hget_i64(&iv->t, 0), d = x->type.dims[axis];
    if (d == IR_DIM_BATCH)
      return fail(im, "gathering along the batch axis '?' is not supported");
    if (k < -d || k >= d)
      return fail(im, "index %lld is out of range [%lld, %lld)", (long long)k, (long long)-d, (long long)d);
    if (k < 0)
      k += d;
    char name[512];
    snprintf(name, sizeof name, "%s%s", sanitize(im, out_name(im, 0)), iv->t.rank ? "" : ".slice");
    IrValue *r = slice_axis(im, x, axis, k, k + 1, name);
    if (!r)
      return false;
    if (iv->t.rank == 1)
      return set_ir(im, 0, r);
    int64_t dims[IR_MAX_RANK];
    int n = 0;
    for (int i = 0; i < r->type.rank; i++)
      if (i != axis)
        dims[n++] = r->type.dims[i] == IR_DIM_BATCH ? ONNX_SYM_BATCH : r->type.dims[i];
    return reshape_to(im, r, dims, n, true);
  }
  if (!is_const(im, 0))
    return fail(im, "Gather is mapped as an embedding (constant table, computed ids), a slice "
                    "(computed tensor, one constant index) or folded (constants)");
  const HTensor *t = &in(im, 0)->t, *ix = need_const(im, 1, "indices");
  if (!ix)
    return false;
  int axis = norm_axis(attr_int(im, "axis", 0), t->rank);
  if (t->rank < 1 || axis != 0)
    return fail(im, "Gather is folded only along axis 0");
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
  bool all_const = true;
  for (int i = 0; i < n; i++)
    all_const &= is_const(im, i);
  if (!all_const) {
    if (n > 8)
      return fail(im, "%d operands; q8c's concat takes at most 8", n);
    IrValue *x[8];
    for (int i = 0; i < n; i++)
      if (!(x[i] = need_ir(im, i)))
        return false;
    BAttr a = {IR_ATTR_AXIS, 1, {(double)attr_int(im, "axis", 0)}};
    return set_ir(im, 0, ob_node(&im->b, IR_OP_CONCAT, sanitize(im, out_name(im, 0)), x, n, &a, 1));
  }
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

/* The tensor attribute `name`; false, with a message, when it is missing,
 * not a tensor or unreadable. */
static bool tensor_attr(Imp *im, const char *name, HTensor *t) {
  const Onnx__AttributeProto *a = attr(im, name);
  char err[512];
  if (!a || !a->t)
    return fail(im, "attribute '%s' is not a tensor", name);
  if (!onnx_read_tensor(&im->c, a->t, t, err, sizeof err))
    return fail(im, "%s", err);
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
  const HTensor *s = need_const(im, 1, "the shape");
  if (!s)
    return false;
  if (s->rank != 1 || s->numel > IR_MAX_RANK)
    return fail(im, "the shape must be 1-D with at most %d entries", IR_MAX_RANK);
  int64_t dims[IR_MAX_RANK];
  /* Expanding to the batch dimension keeps size 1 there: the ops that use
   * the result broadcast it the same. */
  for (int i = 0; i < s->numel; i++)
    if ((dims[i] = onnx_hget_i64(s, i)) == ONNX_SYM_BATCH)
      dims[i] = 1;
    else if (dims[i] < 0)
      return fail(im, "the shape has a negative entry %lld", (long long)dims[i]);
  if (!is_const(im, 0)) {
    /* A computed tensor: only an Expand that changes nothing. */
    IrValue *x = need_ir(im, 0);
    if (!x)
      return false;
    bool same = s->numel <= x->type.rank;
    for (int i = 0; same && i < s->numel; i++) {
      int64_t d = x->type.dims[x->type.rank - s->numel + i];
      same = dims[i] == 1 || dims[i] == d;
    }
    if (!same)
      return fail(im, "Expand of a computed tensor is mapped only when it changes no shape (the "
                      "elementwise ops broadcast by themselves)");
    return set_ir(im, 0, x);
  }
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
    o->dyn = v->dyn;
    o->rows = v->rows;
    return true;
  }
  HDType h;
  switch (to) {
  case ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT: h = H_F32; break;
  case ONNX__TENSOR_PROTO__DATA_TYPE__INT64: h = H_I64; break;
  case ONNX__TENSOR_PROTO__DATA_TYPE__INT32: h = H_I32; break;
  case ONNX__TENSOR_PROTO__DATA_TYPE__BOOL: h = H_U8; break;
  default: return fail(im, "Cast to data type %lld is not supported", (long long)to);
  }
  if (v && v->kind == OV_IR) {
    IrDType d = v->ir->type.dtype;
    bool isint = d == IR_I64 || d == IR_I32;
    /* f32 to f32 changes nothing; int64 and int32 ids pass as they are
     * (gather takes both). */
    if ((h == H_F32 && d == IR_F32) || ((h == H_I64 || h == H_I32) && isint))
      return tr_identity(im, ni);
    if (h == H_F32 && isint)
      return fail(im, "Cast of integer tensor '%s' to FLOAT: q8c has no cast op; an integer graph "
                      "input that reaches only such Casts (through Unsqueeze/Reshape/Squeeze: an "
                      "attention mask) is read as f32 instead",
                  v->name);
    return fail(im, "Cast of a computed %s tensor to data type %lld is not supported",
                ir_dtype_name(d), (long long)to);
  }
  if (!is_const(im, 0))
    return fail(im, "Cast of a non-constant value is not supported (only f32 to f32)");
  bool ok;
  HTensor r = new_tensor(im, h, v->t.rank, v->t.dims, &ok);
  if (!ok)
    return false;
  for (int64_t i = 0; i < r.numel; i++) {
    double x = v->t.dt == H_I64 ? (double)onnx_hget_i64(&v->t, i) : onnx_hget(&v->t, i);
    hset(&r, i, to == ONNX__TENSOR_PROTO__DATA_TYPE__BOOL ? x != 0 : x);
  }
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

static int one_user(struct UseMap *u, const char *name);
static bool is_op(const Imp *im, int ni, const char *op);
static const char *other_in(const Imp *im, int ni, const char *name);

/* MatMul(x, B) with B a 2-D f32 constant: linear(x, B^T), so the quantizer
 * sees a linear layer; an Add of a constant of N elements that only this
 * MatMul feeds (how torch exports nn.Linear on 3-D inputs) becomes its bias. */
static bool matmul_linear(Imp *im, const OVal *b) {
  bool rows = in(im, 0)->rows;
  IrValue *x = rows ? in(im, 0)->ir : need_ir(im, 0);
  if (!x)
    return false;
  bool ok = true;
  HTensor w = transpose2(im, &b->t, 1, &ok);
  if (!ok)
    return false;
  char wname[512];
  snprintf(wname, sizeof wname, "%s.T", sanitize(im, b->name));
  IrValue *ops[3] = {x, ob_const(&im->b, wname, &w), NULL};
  int64_t n = w.dims[0];
  const char *out = out_name(im, 0), *bn;
  int u = one_user(im->um, out);
  OVal *c;
  if (is_op(im, u, "Add") && im->role[u] == NODE_PLAIN && (bn = other_in(im, u, out)) &&
      (c = find(im, bn)) && c->kind == OV_CONST && !c->has_q && c->t.dt == H_F32 &&
      c->t.numel == n && c->t.rank >= 1 && c->t.dims[c->t.rank - 1] == n && c->t.rank <= x->type.rank) {
    HTensor bt = c->t;
    bt.rank = 1;
    bt.dims[0] = n;
    ops[2] = ob_const(&im->b, sanitize(im, c->name), &bt);
    im->role[u] = NODE_ALIAS;
    im->pat_x[u] = out;
  }
  if (!set_ir(im, 0, ob_node(&im->b, IR_OP_LINEAR, sanitize(im, out), ops, ops[2] ? 3 : 2, NULL, 0)))
    return false;
  find(im, out)->rows = rows;
  return true;
}

static bool tr_matmul(Imp *im, int ni) {
  OVal *a = in(im, 0), *b = in(im, 1);
  if (!a || !b)
    return fail(im, "needs two inputs");
  if (a->kind == OV_IR && a->has_q && b->kind == OV_CONST && b->has_q && b->t.rank == 2)
    return qgemm_from(im, a->q_ir, onnx_hget(&a->qscale, 0), (int32_t)onnx_hget(&a->qzero, 0), b,
                      false, NULL, false, 0, 0);
  if (a->kind == OV_CONST && b->kind == OV_CONST)
    return fail(im, "MatMul of two constants is not folded yet");
  if (a->kind == OV_IR && !a->causal && b->kind == OV_CONST && b->t.rank == 2 && b->t.dt == H_F32)
    return matmul_linear(im, b);
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
  bool rows = a->kind == OV_IR && a->rows;
  IrValue *x = rows ? a->ir : need_ir(im, 0);
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
  if (!set_ir(im, 0, ob_node(&im->b, IR_OP_LINEAR, sanitize(im, out_name(im, 0)), ops,
                             ops[2] ? 3 : 2, NULL, 0)))
    return false;
  find(im, out_name(im, 0))->rows = rows;
  return true;
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

/* DynamicQuantizeLinear(x): its three outputs stand for x until the
 * pattern of ONNX Runtime's quantize_dynamic consumes them (tr_matmul_integer,
 * tr_mul); anything else using them is refused (need_ir). */
static bool tr_dynamic_quantize(Imp *im, int ni) {
  OVal *v = in(im, 0);
  bool rows = v && v->kind == OV_IR && v->rows;
  IrValue *x = rows ? v->ir : need_ir(im, 0);
  if (!x)
    return false;
  if (x->type.dtype != IR_F32)
    return fail(im, "the input is %s; DynamicQuantizeLinear takes f32", ir_dtype_name(x->type.dtype));
  const char *nn = onnx_str(node(im, ni)->name);
  for (int i = 0; i < (int)node(im, ni)->n_output && i < 3; i++) {
    if (!*onnx_str(out_name(im, i)))
      continue;
    OVal *o = def_out(im, i, OV_DYNQ);
    o->ir = x;
    o->dq_part = i;
    o->dq_node = *nn ? nn : out_name(im, 0);
    o->rows = rows;
  }
  return true;
}

/* The weight of a MatMulInteger on DynamicQuantizeLinear's y: B [K, N] i8
 * or u8, b_zero_point per tensor or per column (N), as qlinear_dyn's
 * Wq [N, K] i8 and w_zero_point with the same differences Wq - zp:
 *   one zero point z: i8 B as it is, zp = z; u8 B as B - 128, zp = z - 128;
 *   per-column zero points that differ: Wq = B - zb[n], zp = 0, which must
 *   fit [-128, 127]. */
static bool dyn_weight(Imp *im, const HTensor *b, const HTensor *zb, HTensor *wq, int32_t *zp) {
  int64_t k = b->dims[0], n = b->dims[1];
  if (zb && zb->dt != b->dt)
    return fail(im, "b_zero_point is %s and B %s; they must have the same type",
                onnx_hname(zb->dt), onnx_hname(b->dt));
  if (zb && zb->numel != 1 && zb->numel != n)
    return fail(im, "b_zero_point has %lld elements; q8c takes one, or one per column (N = %lld)",
                (long long)zb->numel, (long long)n);
  bool same = true;
  for (int64_t j = 1; zb && j < zb->numel; j++)
    same = same && onnx_hget(zb, j) == onnx_hget(zb, 0);
  int64_t dims[2] = {n, k};
  bool ok;
  *wq = new_tensor(im, H_I8, 2, dims, &ok);
  if (!ok)
    return false;
  int32_t shift = same && b->dt == H_U8 ? 128 : 0;
  *zp = same ? (zb ? (int32_t)onnx_hget(zb, 0) : 0) - shift : 0;
  for (int64_t j = 0; j < n; j++) {
    int32_t z = same ? shift : (int32_t)onnx_hget(zb, j);
    for (int64_t i = 0; i < k; i++) {
      int32_t v = (int32_t)onnx_hget(b, i * n + j) - z;
      if (v < -128 || v > 127)
        return fail(im, "B[%lld, %lld] - b_zero_point[%lld] = %d does not fit int8: q8c takes "
                        "per-column zero points only when every B - zero point does (one zero "
                        "point for the whole of B is always taken)",
                    (long long)i, (long long)j, (long long)j, v);
      ((int8_t *)wq->data)[j * k + i] = (int8_t)v;
    }
  }
  return true;
}

/* MatMulInteger(y, B, y_zero_point, b_zero_point) on DynamicQuantizeLinear's
 * outputs: the weight kept as given (dyn_weight), the rest in tr_mul. */
static bool matmul_integer_dyn(Imp *im, OVal *a) {
  OVal *za = in(im, 2), *b = in(im, 1);
  if (a->dq_part != 0)
    return fail(im, "input A is DynamicQuantizeLinear's %s; MatMulInteger takes its y",
                a->dq_part == 1 ? "y_scale" : "y_zero_point");
  if (!za || za->kind != OV_DYNQ || za->dq_part != 2 || za->ir != a->ir)
    return fail(im, "a_zero_point is not the y_zero_point of the DynamicQuantizeLinear ('%s') "
                    "that quantized A",
                a->dq_node);
  if (!b || b->kind != OV_CONST || b->t.rank != 2 || (b->t.dt != H_I8 && b->t.dt != H_U8))
    return fail(im, "B must be a 2-D i8 or u8 constant");
  const HTensor *zb = NULL;
  if (in(im, 3) && !(zb = need_const(im, 3, "b_zero_point")))
    return false;
  HTensor wq;
  int32_t zp = 0;
  if (!dyn_weight(im, &b->t, zb, &wq, &zp))
    return false;
  OVal *o = def_out(im, 0, OV_ACC);
  o->ir = a->ir;
  o->q = wq;
  o->acc_zp = zp;
  o->dyn = true;
  o->rows = a->rows;
  o->dq_node = a->dq_node;
  return true;
}

/* MatMulInteger(A u8, B i8 constant, a_zero_point, 0) -> Cast(FLOAT) ->
 * Mul(scale constant): a qgemm with f32 output whose multiplier is that
 * scale, exactly: f32(f32(acc) * scale). */
static bool tr_matmul_integer(Imp *im, int ni) {
  if (in(im, 0) && in(im, 0)->kind == OV_DYNQ)
    return matmul_integer_dyn(im, in(im, 0));
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

/* Mul(y_scale, W_scale): W_scale an f32 constant of one element or N. */
static bool dyn_scale(Imp *im, OVal *s, OVal *c) {
  if (s->kind != OV_DYNQ || s->dq_part != 1 || c->kind != OV_CONST || c->t.dt != H_F32 ||
      c->t.numel < 1 || (c->t.rank > 0 && c->t.dims[c->t.rank - 1] != c->t.numel))
    return false;
  OVal *o = def_out(im, 0, OV_DSCALE);
  o->ir = s->ir;
  o->qscale = c->t;
  o->dq_node = s->dq_node;
  o->rows = s->rows;
  return true;
}

/* Mul(Cast(MatMulInteger(y, ...)), Mul(y_scale, W_scale)) [-> Add(bias)]:
 *   qlinear_dyn x, Wq, W_scale[, bias] {granularity = tensor, w_zero_point}
 * whose epilogue is the graph's f32(f32(acc) * f32(y_scale * W_scale)),
 * then + bias: an Add of a constant of N elements that only this Mul feeds. */
static bool dyn_linear(Imp *im, OVal *acc, OVal *sc) {
  if (acc->kind != OV_ACCF || !acc->dyn)
    return false;
  if (sc->kind != OV_DSCALE)
    return fail(im, "Mul of MatMulInteger's result (on DynamicQuantizeLinear's y) by %s: q8c maps "
                    "it only as Mul(Cast(acc), Mul(y_scale, W_scale)), the scales multiplied "
                    "first, as ONNX Runtime's quantize_dynamic writes it (another order rounds "
                    "differently)",
                sc->kind == OV_CONST ? "a constant" : kind_what(sc->kind));
  if (sc->ir != acc->ir)
    return fail(im, "the y_scale multiplied here is of another DynamicQuantizeLinear ('%s') than "
                    "the one that quantized MatMulInteger's input",
                sc->dq_node);
  int64_t n = acc->q.dims[0];
  if (sc->qscale.numel != 1 && sc->qscale.numel != n)
    return fail(im, "W_scale has %lld elements for N = %lld; q8c takes one, or one per column",
                (long long)sc->qscale.numel, (long long)n);
  const char *out = out_name(im, 0), *bn;
  int u = one_user(im->um, out);
  OVal *c;
  bool fuse = is_op(im, u, "Add") && im->role[u] == NODE_PLAIN && (bn = other_in(im, u, out)) &&
              (c = find(im, bn)) && c->kind == OV_CONST && !c->has_q && c->t.dt == H_F32 &&
              c->t.numel == n && c->t.rank >= 1 && c->t.dims[c->t.rank - 1] == n &&
              c->t.rank <= acc->ir->type.rank;
  /* Named after the Add when it is fused: the graph's output, often. */
  const char *on = sanitize(im, fuse ? onnx_str(node(im, u)->output[0]) : out);
  HTensor sw = sc->qscale;
  sw.rank = 1;
  sw.dims[0] = sw.numel;
  char wname[600], sname[600];
  snprintf(wname, sizeof wname, "%s.Wq", on);
  snprintf(sname, sizeof sname, "%s.W_scale", on);
  IrValue *ops[4] = {acc->ir, ob_const(&im->b, wname, &acc->q), ob_const(&im->b, sname, &sw), NULL};
  if (fuse) {
    HTensor bt = c->t;
    bt.rank = 1;
    bt.dims[0] = n;
    ops[3] = ob_const(&im->b, sanitize(im, c->name), &bt);
    im->role[u] = NODE_ALIAS;
    im->pat_x[u] = out;
  }
  BAttr at[2] = {{IR_ATTR_GRANULARITY, 1, {IR_DYN_TENSOR}},
                 {IR_ATTR_W_ZERO_POINT, 1, {acc->acc_zp}}};
  if (!set_ir(im, 0, ob_node(&im->b, IR_OP_QLINEAR_DYN, on, ops, ops[3] ? 4 : 3, at,
                             acc->acc_zp ? 2 : 1)))
    return false;
  find(im, out)->rows = acc->rows;
  return true;
}

static bool tr_mul(Imp *im, int ni) {
  OVal *a = in(im, 0), *b = in(im, 1);
  if (a && b && (dyn_scale(im, a, b) || dyn_scale(im, b, a)))
    return true;
  if (a && b && ((a->kind == OV_ACCF && a->dyn) || (b->kind == OV_ACCF && b->dyn)))
    return (a->kind == OV_ACCF && a->dyn) ? dyn_linear(im, a, b) : dyn_linear(im, b, a);
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
    {"Div", 2, tr_div, ""},
    {"DynamicQuantizeLinear", 1, tr_dynamic_quantize, ""},
    {"Equal", 2, tr_compare, ""},
    {"Expand", 2, tr_expand, ""},
    {"Flatten", 1, tr_flatten, "axis"},
    {"Gather", 2, tr_gather, "axis"},
    {"Gelu", 1, tr_gelu, "approximate"},
    {"Gemm", 2, tr_gemm, "alpha beta transA transB"},
    {"Greater", 2, tr_compare, ""},
    {"Identity", 1, tr_identity, ""},
    {"LayerNormalization", 2, tr_layernorm, "axis epsilon stash_type"},
    {"Less", 2, tr_compare, ""},
    {"MatMul", 2, tr_matmul, ""},
    {"MatMulInteger", 2, tr_matmul_integer, ""},
    {"Mul", 2, tr_mul, ""},
    {"Neg", 1, tr_neg, ""},
    {"Not", 1, tr_fold_only, ""},
    {"Pow", 2, tr_pow, ""},
    {"QLinearMatMul", 8, tr_qlinear_matmul, ""},
    {"QuantizeLinear", 2, tr_quantize, "axis"},
    {"Range", 3, tr_range, ""},
    {"Reciprocal", 1, tr_fold_only, ""},
    {"Relu", 1, tr_relu, ""},
    {"Reshape", 2, tr_reshape, "allowzero"},
    {"Shape", 1, tr_shape, ""},
    {"Sigmoid", 1, tr_sigmoid, ""},
    {"Slice", 3, tr_slice, ""},
    {"Softmax", 1, tr_softmax, "axis"},
    {"Split", 1, tr_split, "axis split num_outputs"},
    {"Sqrt", 1, tr_fold_only, ""},
    {"Squeeze", 1, tr_squeeze_like, "axes"},
    {"Sub", 2, tr_sub, ""},
    {"Tanh", 1, tr_tanh, ""},
    {"Transpose", 1, tr_transpose, "perm"},
    {"Trilu", 1, tr_trilu, "upper"},
    {"Unsqueeze", 1, tr_squeeze_like, "axes"},
    {"Where", 3, tr_where, ""},
};

enum { NOPS = sizeof ops / sizeof ops[0] };

static const char supported_list[] =
    "Add, Cast, Concat, Constant, ConstantOfShape, DequantizeLinear, Div, DynamicQuantizeLinear, "
    "Expand, Flatten, Gather, Gelu, Gemm, Identity, LayerNormalization, MatMul, MatMulInteger, "
    "Mul, Neg, Pow, QLinearMatMul, QuantizeLinear, Relu, Reshape, Shape, Sigmoid, Slice, "
    "Softmax, Split, Squeeze, Sub, Tanh, Transpose, Unsqueeze, Where; Equal, Greater, Less, Not, "
    "Range, Reciprocal, Sqrt and Trilu between constants; the patterns of GELU (Erf and tanh forms), "
    "SiLU, LayerNorm and RMSNorm";

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

typedef struct UseMap {
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

static int one_user(struct UseMap *u, const char *name) {
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

/* Binary node ni with one operand a constant scalar within tol of want:
 * the other operand's name, else NULL. */
static const char *with_const(Imp *im, const ProdMap *pm, int ni, double want, double tol) {
  const Onnx__NodeProto *n = node(im, ni);
  if (n->n_input != 2)
    return NULL;
  for (int i = 0; i < 2; i++) {
    double c;
    if (const_scalar(im, pm, n->input[i], &c) && fabs(c - want) <= tol)
      return n->input[1 - i];
  }
  return NULL;
}

static int64_t node_int_attr(const Onnx__NodeProto *n, const char *name, int64_t dflt) {
  for (size_t i = 0; i < n->n_attribute; i++)
    if (strcmp(onnx_str(n->attribute[i]->name), name) == 0 && n->attribute[i]->has_i)
      return n->attribute[i]->i;
  return dflt;
}

/* gelu_new: 0.5 * x * (1 + tanh(sqrt(2 / pi) * (x + 0.044715 * x^3))), as
 * torch exports it: Mul(x, 0.5) times Add(Tanh(Mul(Add(x, Mul(Pow(x, 3),
 * 0.044715)), sqrt(2/pi))), 1), or x times that Add, then times 0.5; x^3
 * may be Mul(x, Mul(x, x)) (F.gelu(approximate="tanh")'s export). */
static void match_gelu_tanh(Imp *im, int t, UseMap *u, const ProdMap *pm) {
  const Onnx__NodeProto *tn = node(im, t);
  if (tn->n_input != 1 || tn->n_output != 1)
    return;
  int m3 = pm_get(pm, tn->input[0]);
  const char *s, *x = NULL;
  if (!is_op(im, m3, "Mul") || one_user(u, tn->input[0]) != t ||
      !(s = with_const(im, pm, m3, 0.7978845608028654, 1e-6)))
    return;
  int a1 = pm_get(pm, s), m2 = -1, p = -1, p2 = -1;
  if (!is_op(im, a1, "Add") || one_user(u, s) != m3 || node(im, a1)->n_input != 2)
    return;
  for (int k = 0; k < 2 && !x; k++) {
    const char *cx = node(im, a1)->input[k], *mn = node(im, a1)->input[1 - k], *pn;
    double e;
    m2 = pm_get(pm, mn);
    if (!is_op(im, m2, "Mul") || one_user(u, mn) != a1 || !(pn = with_const(im, pm, m2, 0.044715, 1e-7)))
      continue;
    p = pm_get(pm, pn);
    if (is_op(im, p, "Pow") && one_user(u, pn) == m2 && node(im, p)->n_input == 2 &&
        strcmp(node(im, p)->input[0], cx) == 0 && const_scalar(im, pm, node(im, p)->input[1], &e) && e == 3)
      x = cx;
    /* x^3 as F.gelu(approximate="tanh") exports it: Mul(x, Mul(x, x)). */
    const char *sq;
    if (!x && is_op(im, p, "Mul") && one_user(u, pn) == m2 && node(im, p)->n_input == 2 &&
        (sq = other_in(im, p, cx)) && (p2 = pm_get(pm, sq)) >= 0 && is_op(im, p2, "Mul") &&
        one_user(u, sq) == p && node(im, p2)->n_input == 2 &&
        strcmp(node(im, p2)->input[0], cx) == 0 && strcmp(node(im, p2)->input[1], cx) == 0)
      x = cx;
    else if (!x)
      p2 = -1;
  }
  if (!x)
    return;
  int a2 = one_user(u, tn->output[0]);
  if (!is_op(im, a2, "Add") || !with_const(im, pm, a2, 1, 0))
    return;
  const char *a2o = node(im, a2)->output[0], *h;
  int m4 = one_user(u, a2o), m1, last;
  if (!is_op(im, m4, "Mul") || !(h = other_in(im, m4, a2o)))
    return;
  const char *hx;
  m1 = pm_get(pm, h);
  if (is_op(im, m1, "Mul") && one_user(u, h) == m4 && (hx = with_const(im, pm, m1, 0.5, 0)) &&
      strcmp(hx, x) == 0) {
    last = m4;
  } else if (strcmp(h, x) == 0) {
    last = one_user(u, node(im, m4)->output[0]);
    if (!is_op(im, last, "Mul") || !with_const(im, pm, last, 0.5, 0))
      return;
    m1 = m4;
  } else {
    return;
  }
  int chain[] = {p2, p, m2, a1, m3, t, a2, m1, m4};
  for (size_t i = 0; i < sizeof chain / sizeof chain[0]; i++)
    if (chain[i] >= 0 && chain[i] != last)
      im->role[chain[i]] = NODE_SKIP;
  im->role[last] = NODE_GELU_TANH;
  im->pat_x[last] = x;
}

/* SiLU: Mul(x, Sigmoid(x)). */
static void match_silu(Imp *im, int s, UseMap *u, const ProdMap *pm) {
  const Onnx__NodeProto *sn = node(im, s);
  if (sn->n_input != 1 || sn->n_output != 1)
    return;
  int m = one_user(u, sn->output[0]);
  const char *o;
  if (!is_op(im, m, "Mul") || !(o = other_in(im, m, sn->output[0])) || strcmp(o, sn->input[0]) != 0)
    return;
  im->role[s] = NODE_SKIP;
  im->role[m] = NODE_SILU;
  im->pat_x[m] = sn->input[0];
}

/* ReduceMean over the last axis only, keeping it. */
static bool reduce_last(Imp *im, int r, const ProdMap *pm) {
  const Onnx__NodeProto *n = node(im, r);
  if (node_int_attr(n, "keepdims", 1) == 0)
    return false;
  for (size_t j = 0; j < n->n_attribute; j++)
    if (strcmp(onnx_str(n->attribute[j]->name), "axes") == 0)
      return n->n_input == 1 && n->attribute[j]->n_ints == 1 && n->attribute[j]->ints[0] == -1;
  double a; /* opset 18: axes as input 1 */
  return n->n_input == 2 && const_scalar(im, pm, n->input[1], &a) && a == -1;
}

/* RMSNorm as LLaMA writes it: x * rsqrt(mean(x^2, -1) + eps) [* weight]:
 * Pow(x, 2) -> ReduceMean -> Add(eps) -> Sqrt -> Div(1, .) | Reciprocal ->
 * Mul(x, .) [-> Cast(FLOAT)] [-> Mul(weight, .)]. */
static void match_rmsnorm(Imp *im, int p, UseMap *u, const ProdMap *pm) {
  const Onnx__NodeProto *pn = node(im, p);
  double c, eps = 0, one;
  if (pn->n_input != 2 || pn->n_output != 1 || !const_scalar(im, pm, pn->input[1], &c) || c != 2)
    return;
  const char *x = pn->input[0], *e = NULL;
  int r = one_user(u, pn->output[0]);
  if (!is_op(im, r, "ReduceMean") || !reduce_last(im, r, pm))
    return;
  int ad = one_user(u, node(im, r)->output[0]);
  if (!is_op(im, ad, "Add") || !(e = other_in(im, ad, node(im, r)->output[0])) ||
      !const_scalar(im, pm, e, &eps))
    return;
  int sq = one_user(u, node(im, ad)->output[0]);
  if (!is_op(im, sq, "Sqrt"))
    return;
  const char *so = node(im, sq)->output[0];
  int v = one_user(u, so);
  if (!(is_op(im, v, "Reciprocal") ||
        (is_op(im, v, "Div") && node(im, v)->n_input == 2 && strcmp(node(im, v)->input[1], so) == 0 &&
         const_scalar(im, pm, node(im, v)->input[0], &one) && one == 1)))
    return;
  int mu = one_user(u, node(im, v)->output[0]);
  const char *o;
  if (!is_op(im, mu, "Mul") || !(o = other_in(im, mu, node(im, v)->output[0])) || strcmp(o, x) != 0)
    return;
  int last = mu, cs = -1, mw = -1;
  const char *cur = node(im, mu)->output[0], *gamma = NULL;
  int k = one_user(u, cur);
  if (is_op(im, k, "Cast") && node_int_attr(node(im, k), "to", 0) == ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT) {
    cs = last = k;
    cur = node(im, k)->output[0];
    k = one_user(u, cur);
  }
  OVal *g;
  /* The weight an initializer, or a Constant node (a tensor torch traced
   * as a constant), which the translation checks once it is defined. */
  if (is_op(im, k, "Mul") && (gamma = other_in(im, k, cur)) &&
      (((g = find(im, gamma)) && g->kind == OV_CONST) || is_op(im, pm_get(pm, gamma), "Constant")))
    mw = last = k;
  else
    gamma = NULL;
  int chain[] = {p, r, ad, sq, v, mu, cs, mw};
  for (size_t i = 0; i < sizeof chain / sizeof chain[0]; i++)
    if (chain[i] >= 0 && chain[i] != last)
      im->role[chain[i]] = NODE_SKIP;
  im->role[last] = NODE_RMSNORM;
  im->pat_x[last] = x;
  im->pat_gamma[last] = gamma;
  im->pat_eps[last] = eps;
}

static bool tr_pattern(Imp *im, int ni) {
  OVal *x = find(im, im->pat_x[ni]);
  if (im->role[ni] == NODE_ALIAS) {
    OVal *o = def_out(im, 0, x->kind), keep = *o;
    *o = *x;
    o->name = keep.name;
    o->uses = keep.uses;
    return true;
  }
  if (!x || x->kind != OV_IR || x->causal || x->rows)
    return fail(im, "the input of the fused pattern is not a tensor q8c computes (or is causally "
                    "masked scores, or a [-1, D] view of the batch's rows)");
  const char *on = sanitize(im, out_name(im, 0));
  if (im->role[ni] == NODE_GELU)
    return set_ir(im, 0, ob_node(&im->b, IR_OP_GELU, on, &x->ir, 1, NULL, 0));
  if (im->role[ni] == NODE_GELU_TANH) {
    BAttr a = {IR_ATTR_APPROXIMATE, 1, {IR_GELU_TANH}};
    return set_ir(im, 0, ob_node(&im->b, IR_OP_GELU, on, &x->ir, 1, &a, 1));
  }
  if (im->role[ni] == NODE_SILU)
    return set_ir(im, 0, ob_node(&im->b, IR_OP_SILU, on, &x->ir, 1, NULL, 0));
  if (im->role[ni] == NODE_RMSNORM) {
    int64_t d = x->ir->type.dims[x->ir->type.rank - 1];
    OVal *c = im->pat_gamma[ni] ? find(im, im->pat_gamma[ni]) : NULL;
    if (c && (c->kind != OV_CONST || c->t.dt != H_F32 || c->t.numel != d))
      return fail(im, "the RMSNorm pattern's weight is not a constant of %lld elements", (long long)d);
    bool ok;
    HTensor t = new_tensor(im, H_F32, 1, &d, &ok);
    if (!ok)
      return false;
    for (int64_t k = 0; k < d; k++)
      ((float *)t.data)[k] = c ? ((const float *)c->t.data)[k] : 1.0f;
    char name[512];
    snprintf(name, sizeof name, "%s", c ? sanitize(im, c->name) : "rmsnorm.weight");
    IrValue *ops[2] = {x->ir, ob_const(&im->b, name, &t)};
    BAttr a = {IR_ATTR_EPS, 1, {im->pat_eps[ni]}};
    return set_ir(im, 0, ob_node(&im->b, IR_OP_RMSNORM, on, ops, 2, &a, 1));
  }
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

/* Does the integer tensor `name` reach only Casts to FLOAT, through
 * Unsqueeze/Reshape/Squeeze/Flatten (and Shape, which reads only its dims)?
 * Then it is a mask, read as f32 (q8c has no cast op). */
static bool only_cast_to_float(Imp *im, const char *name, int depth) {
  const Onnx__GraphProto *g = im->g;
  bool any = false;
  if (depth > 16)
    return false;
  for (size_t i = 0; i < g->n_output; i++)
    if (strcmp(onnx_str(g->output[i]->name), name) == 0)
      return false;
  for (size_t i = 0; i < g->n_node; i++) {
    const Onnx__NodeProto *n = g->node[i];
    for (size_t j = 0; j < n->n_input; j++) {
      if (strcmp(onnx_str(n->input[j]), name) != 0)
        continue;
      const char *op = onnx_str(n->op_type);
      if (strcmp(op, "Shape") == 0)
        continue;
      if (j == 0 && (strcmp(op, "Unsqueeze") == 0 || strcmp(op, "Reshape") == 0 ||
                     strcmp(op, "Squeeze") == 0 || strcmp(op, "Flatten") == 0) &&
          n->n_output == 1) {
        if (!only_cast_to_float(im, n->output[0], depth + 1))
          return false;
        any = true;
      } else if (strcmp(op, "Cast") == 0 &&
                 node_int_attr(n, "to", 0) == ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT) {
        any = true;
      } else {
        return false;
      }
    }
  }
  return any;
}

/* A graph input's type: f32 (or int64/int32 ids), rank <= 8, every dim
 * known or bound by --dim, but a dynamic first axis (the batch). */
static bool input_type(Imp *im, const Onnx__ValueInfoProto *vi, IrType *t) {
  const char *name = onnx_str(vi->name);
  const Onnx__TypeProto *tp = vi->type;
  if (!tp || tp->value_case != ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE || !tp->tensor_type)
    return fail(im, "graph input '%s' is not a tensor", name);
  const Onnx__TypeProto__Tensor *tt = tp->tensor_type;
  IrDType dt;
  switch (tt->elem_type) {
  case ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT: dt = IR_F32; break;
  case ONNX__TENSOR_PROTO__DATA_TYPE__INT64: dt = IR_I64; break;
  case ONNX__TENSOR_PROTO__DATA_TYPE__INT32: dt = IR_I32; break;
  default:
    return fail(im, "graph input '%s' has element type %d; q8c models take FLOAT inputs and "
                    "INT64 or INT32 token ids",
                name, (int)tt->elem_type);
  }
  if (dt != IR_F32 && only_cast_to_float(im, name, 0))
    dt = IR_F32;
  if (!tt->shape)
    return fail(im, "graph input '%s' has no shape", name);
  if (tt->shape->n_dim > IR_MAX_RANK)
    return fail(im, "graph input '%s' has rank %zu (at most %d)", name, tt->shape->n_dim, IR_MAX_RANK);
  memset(t, 0, sizeof *t);
  t->dtype = dt;
  t->rank = (int)tt->shape->n_dim;
  for (int i = 0; i < t->rank; i++) {
    const Onnx__TensorShapeProto__Dimension *d = tt->shape->dim[i];
    const char *param = d->value_case == ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM
                            ? onnx_str(d->dim_param) : "";
    int bound = -1;
    for (int k = 0; *param && im->dims && k < im->dims->n; k++)
      if (strcmp(im->dims->name[k], param) == 0)
        bound = k;
    if (d->value_case == ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE) {
      if (d->dim_value <= 0 || d->dim_value > ((int64_t)1 << 40))
        return fail(im, "graph input '%s': dimension %d is %lld", name, i, (long long)d->dim_value);
      t->dims[i] = d->dim_value;
    } else if (bound >= 0) {
      t->dims[i] = im->dims->value[bound];
    } else if (i == 0) {
      t->dims[i] = IR_DIM_BATCH;
    } else if (*param) {
      return fail(im, "graph input '%s': dimension %d is symbolic ('%s'); bind it with --dim "
                      "%s=N (q8c keeps only the first axis dynamic, the batch '?')",
                  name, i, param, param);
    } else {
      return fail(im, "graph input '%s': dimension %d is unknown (no dim_value or dim_param); "
                      "q8c keeps only the first axis dynamic, the batch '?'",
                  name, i);
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
  im->um = &um;

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
    else if (is_op(im, (int)i, "Tanh"))
      match_gelu_tanh(im, (int)i, &um, &pm);
    else if (is_op(im, (int)i, "Sigmoid"))
      match_silu(im, (int)i, &um, &pm);
    else if (is_op(im, (int)i, "Pow"))
      match_rmsnorm(im, (int)i, &um, &pm);
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
    if (im->role[i] == NODE_SKIP) {
      for (size_t j = 0; j < n->n_output; j++)
        if (*onnx_str(n->output[j]))
          find(im, n->output[j])->kind = OV_FUSED;
      continue;
    }
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
      if (*onnx_str(n->input[j]) && (!find(im, n->input[j]) || find(im, n->input[j])->kind == OV_FUSED))
        return fail(im, "input '%s' is not computed (it is inside a pattern q8c fused)", n->input[j]);
    for (int j = 0; j < e->min_inputs; j++)
      if (j >= (int)n->n_input || !*onnx_str(n->input[j]))
        return fail(im, "input %d is missing (%s takes at least %d)", j, e->op, e->min_inputs);
    if (!check_attrs(im, e) || !e->fn(im, i) || im->m->diag.failed)
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
    if (v->kind >= OV_ACC && v->kind <= OV_DSCALE)
      return fail(im, "graph output '%s' is %s, which q8c maps only inside a quantized "
                      "MatMulInteger pattern ending in Mul (docs/import.md)",
                  name, kind_what(v->kind));
    if (v->kind != OV_IR)
      return fail(im, "graph output '%s' is a constant (or part of a quantization pattern); q8c "
                      "models compute their outputs",
                  name);
    if (v->causal || v->rows)
      return fail(im, "graph output '%s' is %s", name,
                  v->causal ? "causally masked scores, which q8c maps only into a Softmax"
                            : "a [-1, D] view folding the batch axis into rows, which the IR "
                              "cannot express");
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

IrModule *fe_onnx_parse(const char *path, const unsigned char *bytes, size_t size, bool from_file,
                        const FeDims *dims) {
  Imp im = {0};
  im.dims = dims;
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

IrModule *fe_onnx_parse_file(const char *path, const FeDims *dims) {
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
  m = fe_onnx_parse(path, buf, len, true, dims);
  free(buf);
  return m;
}
