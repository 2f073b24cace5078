/* floatops.c: the float ops of a model as vector code, one private function
 * per node and variant (NAME.RESULT.OP_ISA), called from the entry (lower.c
 * asks cg_emit_floatop first and falls back to the reference call when it
 * declines):
 *
 *   relu, gelu (erf and tanh forms), sigmoid, tanh, silu   over all elements
 *   add, sub, mul, div   when each operand is the result's shape, one row
 *                        [.., N] broadcast over the rows (a bias), or a scalar
 *   softmax              over the last axis (with the causal mask) or any
 *                        other (vectorized across the inner elements)
 *   layernorm, rmsnorm   over rows
 *   quantize, dequantize the f32 <-> u8/i8 steps between layers, over rows
 *                        (a quantized row may be padded: its Loc's stride)
 *
 * Lane-wise arithmetic is vmath.c's (docs/float.md), the same operations as
 * ir/refops.c's scalar code; a row's tail runs the same code on <1 x float>.
 * Sums follow the one order of docs/float.md (fmath.h, Q8F_SUM_LANES): the
 * 16 interleaved partial sums are 16 / w vectors of the variant's w lanes
 * (isa.def's qlanes: 16 AVX-512, 8 AVX2 and NEON, 4 SSE2), combined in the
 * same halving steps, so every width gives the interpreter's bits. Loops
 * over rows are LLVM IR; accumulators live in allocas that the optimizer
 * promotes to registers. */
#include <math.h>
#include <stdio.h>

#include "../ir/fmath.h"
#include "module.h"
#include "vmath.h"

/* ---- building blocks ---- */

static LLVMValueRef i64c(CgFn *f, int64_t v) { return LLVMConstInt(f->i64, (uint64_t)v, 1); }

/* &base[i] for floats, i an i64 value. */
static LLVMValueRef at(CgFn *f, LLVMValueRef base, LLVMValueRef i) {
  return LLVMBuildGEP2(f->b, f->f32, base, &i, 1, "");
}

static LLVMTypeRef vt(CgFn *f, unsigned w) { return LLVMVectorType(f->f32, w); }

static LLVMValueRef load(CgFn *f, LLVMValueRef base, LLVMValueRef i, unsigned w) {
  LLVMValueRef v = LLVMBuildLoad2(f->b, vt(f, w), at(f, base, i), "");
  LLVMSetAlignment(v, 4);
  return v;
}

static void store(CgFn *f, LLVMValueRef v, LLVMValueRef base, LLVMValueRef i) {
  LLVMSetAlignment(LLVMBuildStore(f->b, v, at(f, base, i)), 4);
}

/* Lane 0 of v in all w lanes. */
static LLVMValueRef bcast(CgFn *f, LLVMValueRef v, unsigned w) {
  int idx[64] = {0};
  return cg_shuffle(f->b, v, NULL, idx, w);
}

/* A variable of type t: an alloca at the top of the function. */
static LLVMValueRef var(CgFn *f, LLVMTypeRef t, LLVMValueRef init) {
  LLVMBuilderRef b = LLVMCreateBuilderInContext(f->ctx);
  LLVMValueRef first = LLVMGetFirstInstruction(f->entry);
  if (first)
    LLVMPositionBuilderBefore(b, first);
  else
    LLVMPositionBuilderAtEnd(b, f->entry);
  LLVMValueRef p = LLVMBuildAlloca(b, t, "");
  LLVMDisposeBuilder(b);
  LLVMBuildStore(f->b, init, p);
  return p;
}

static LLVMValueRef get(CgFn *f, LLVMTypeRef t, LLVMValueRef p) {
  return LLVMBuildLoad2(f->b, t, p, "");
}

typedef struct {
  LLVMBasicBlockRef body, exit;
  LLVMValueRef i, hi;
  int64_t step;
} Loop;

/* for (i = lo; i < hi; i += step) { ... loop_close }: the index. */
static LLVMValueRef loop_open(CgFn *f, Loop *l, LLVMValueRef lo, LLVMValueRef hi, int64_t step) {
  LLVMBasicBlockRef pre = LLVMGetInsertBlock(f->b);
  l->body = LLVMAppendBasicBlockInContext(f->ctx, f->fn, "loop");
  l->exit = LLVMAppendBasicBlockInContext(f->ctx, f->fn, "loop.end");
  LLVMBuildCondBr(f->b, LLVMBuildICmp(f->b, LLVMIntSLT, lo, hi, ""), l->body, l->exit);
  LLVMPositionBuilderAtEnd(f->b, l->body);
  l->i = LLVMBuildPhi(f->b, f->i64, "i");
  LLVMAddIncoming(l->i, &lo, &pre, 1);
  l->hi = hi;
  l->step = step;
  return l->i;
}

static void loop_close(CgFn *f, Loop *l) {
  LLVMValueRef next = LLVMBuildAdd(f->b, l->i, i64c(f, l->step), "");
  LLVMBasicBlockRef cur = LLVMGetInsertBlock(f->b);
  LLVMAddIncoming(l->i, &next, &cur, 1);
  LLVMBuildCondBr(f->b, LLVMBuildICmp(f->b, LLVMIntSLT, next, l->hi, ""), l->body, l->exit);
  LLVMPositionBuilderAtEnd(f->b, l->exit);
}

/* n rounded down to a multiple of m (a power of two). */
static LLVMValueRef floor_to(CgFn *f, LLVMValueRef n, int64_t m) {
  return LLVMBuildAnd(f->b, n, i64c(f, ~(m - 1)), "");
}

/* What a row's loops do at element j for w lanes: its elements (for a sum
 * or maximum), or its work (for a map, returning NULL). */
typedef LLVMValueRef (*RowFn)(CgFn *f, const void *ctx, LLVMValueRef j, unsigned w);

/* fn(j, w) for j in [0, n): w lanes at a time, then one at a time. */
static void row_map(CgFn *f, unsigned w, LLVMValueRef n, RowFn fn, const void *ctx) {
  Loop l;
  LLVMValueRef nv = floor_to(f, n, w);
  if (w > 1) {
    fn(f, ctx, loop_open(f, &l, i64c(f, 0), nv, w), w);
    loop_close(f, &l);
  }
  fn(f, ctx, loop_open(f, &l, w > 1 ? nv : i64c(f, 0), n, 1), 1);
  loop_close(f, &l);
}

/* The sum of fn(j) over j in [0, n) in the order of docs/float.md, as a
 * <1 x float>: Q8F_SUM_LANES partial sums in 16 / w vectors, the halving
 * steps, then the tail in order. */
static LLVMValueRef row_sum(CgFn *f, unsigned w, LLVMValueRef n, RowFn fn, const void *ctx) {
  enum { L = Q8F_SUM_LANES };
  unsigned k = L / w;
  LLVMValueRef acc[L];
  for (unsigned i = 0; i < k; i++)
    acc[i] = var(f, vt(f, w), cg_vm_f(f, 0.0f, w));
  Loop l;
  LLVMValueRef nb = floor_to(f, n, L);
  LLVMValueRef j = loop_open(f, &l, i64c(f, 0), nb, L);
  for (unsigned i = 0; i < k; i++) {
    LLVMValueRef v = fn(f, ctx, LLVMBuildAdd(f->b, j, i64c(f, (int64_t)(i * w)), ""), w);
    LLVMBuildStore(f->b, LLVMBuildFAdd(f->b, get(f, vt(f, w), acc[i]), v, ""), acc[i]);
  }
  loop_close(f, &l);
  /* Lane i += lane i + h, h = L/2 .. 1: across vectors while there are
   * several, then within the last one. */
  LLVMValueRef v[L];
  for (unsigned i = 0; i < k; i++)
    v[i] = get(f, vt(f, w), acc[i]);
  unsigned width = w;
  for (unsigned total = L; total > 1; total /= 2) {
    if (k > 1) {
      for (unsigned i = 0; i < k / 2; i++)
        v[i] = LLVMBuildFAdd(f->b, v[i], v[i + k / 2], "");
      k /= 2;
    } else {
      int lo[32], hi[32];
      for (unsigned i = 0; i < width / 2; i++) {
        lo[i] = (int)i;
        hi[i] = (int)(i + width / 2);
      }
      v[0] = LLVMBuildFAdd(f->b, cg_shuffle(f->b, v[0], NULL, lo, width / 2),
                           cg_shuffle(f->b, v[0], NULL, hi, width / 2), "");
      width /= 2;
    }
  }
  LLVMValueRef r = var(f, vt(f, 1), v[0]);
  LLVMValueRef t = loop_open(f, &l, nb, n, 1);
  LLVMBuildStore(f->b, LLVMBuildFAdd(f->b, get(f, vt(f, 1), r), fn(f, ctx, t, 1), ""), r);
  loop_close(f, &l);
  return get(f, vt(f, 1), r);
}

/* max step of softmax: v where v > m or v is NaN, else m. */
static LLVMValueRef max_step(CgFn *f, LLVMValueRef m, LLVMValueRef v) {
  LLVMValueRef c = LLVMBuildOr(f->b, LLVMBuildFCmp(f->b, LLVMRealOGT, v, m, ""),
                               cg_vm_isnan(f, v), "");
  return LLVMBuildSelect(f->b, c, v, m, "");
}

/* The maximum of fn(j) over j in [0, n) (-inf when empty; a NaN when one
 * is NaN), as a <1 x float>. */
static LLVMValueRef row_max(CgFn *f, unsigned w, LLVMValueRef n, RowFn fn, const void *ctx) {
  LLVMValueRef acc = var(f, vt(f, w), cg_vm_f(f, -INFINITY, w));
  Loop l;
  LLVMValueRef nv = floor_to(f, n, w);
  LLVMValueRef j = loop_open(f, &l, i64c(f, 0), nv, w);
  LLVMBuildStore(f->b, max_step(f, get(f, vt(f, w), acc), fn(f, ctx, j, w)), acc);
  loop_close(f, &l);
  LLVMValueRef v = get(f, vt(f, w), acc);
  for (unsigned width = w; width > 1; width /= 2) {
    int lo[32], hi[32];
    for (unsigned i = 0; i < width / 2; i++) {
      lo[i] = (int)i;
      hi[i] = (int)(i + width / 2);
    }
    v = max_step(f, cg_shuffle(f->b, v, NULL, lo, width / 2),
                 cg_shuffle(f->b, v, NULL, hi, width / 2));
  }
  LLVMValueRef r = var(f, vt(f, 1), v);
  j = loop_open(f, &l, nv, n, 1);
  LLVMBuildStore(f->b, max_step(f, get(f, vt(f, 1), r), fn(f, ctx, j, 1)), r);
  loop_close(f, &l);
  return get(f, vt(f, 1), r);
}

/* ---- the op functions ---- */

/* Start `void NAME(ptr, ... nptrs)` for node n (index idx) and variant isa:
 * true when its body is to be built now, false when the other entry of the
 * variant built it already (cg->kernel[idx]: the two entries share it), and
 * fn_close only calls it. */
static bool fn_open(Cg *cg, CgFn *f, int idx, CgIsa isa, const char *op, unsigned nptrs) {
  const IrNode *n = cg->m->nodes[idx];
  f->mod = cg->mod;
  f->ctx = cg->ctx;
  f->f32 = cg->f32;
  f->i32 = cg->i32;
  f->i64 = cg->i64;
  f->ptr = cg->ptr;
  f->b = NULL;
  if (cg->kernel[idx]) {
    f->fn = cg->kernel[idx];
    return false;
  }
  char name[400];
  snprintf(name, sizeof name, "%s.%s.%s_%s", cg->prefix, n->result->name, op,
           cg_isa_info[isa].name);
  LLVMTypeRef params[4] = {cg->ptr, cg->ptr, cg->ptr, cg->ptr};
  f->fn = LLVMAddFunction(cg->mod, name, LLVMFunctionType(cg->vd, params, nptrs, 0));
  LLVMSetLinkage(f->fn, LLVMPrivateLinkage);
  cg_set_isa_attrs(f->fn, isa);
  cg->kernel[idx] = f->fn;
  f->entry = LLVMAppendBasicBlockInContext(f->ctx, f->fn, "entry");
  f->b = LLVMCreateBuilderInContext(f->ctx);
  LLVMPositionBuilderAtEnd(f->b, f->entry);
  return true;
}

/* Finish the function (when built now) and call it from the entry. */
static void fn_close(Cg *cg, CgFn *f, LLVMValueRef *args, unsigned nargs) {
  if (f->b) {
    LLVMBuildRetVoid(f->b);
    LLVMDisposeBuilder(f->b);
  }
  LLVMBuildCall2(cg->b, LLVMGlobalGetValueType(f->fn), f->fn, args, nargs, "");
}

static unsigned lanes(CgIsa isa) {
  unsigned w = (unsigned)cg_isa_info[isa].qlanes;
  return w >= 1 && w <= Q8F_SUM_LANES && Q8F_SUM_LANES % w == 0 ? w : 4;
}

/* Unary elementwise: y = act(x). */
typedef struct {
  LLVMValueRef x, y;
  LLVMValueRef (*act)(CgFn *, LLVMValueRef);
} Unary;

static LLVMValueRef unary_at(CgFn *f, const void *c, LLVMValueRef j, unsigned w) {
  const Unary *u = c;
  store(f, u->act(f, load(f, u->x, j, w)), u->y, j);
  return NULL;
}

static void emit_unary(Cg *cg, int idx, CgIsa isa, const char *op,
                       LLVMValueRef (*act)(CgFn *, LLVMValueRef), LLVMValueRef x, LLVMValueRef y,
                       int64_t numel) {
  CgFn f;
  if (fn_open(cg, &f, idx, isa, op, 2)) {
    Unary u = {LLVMGetParam(f.fn, 0), LLVMGetParam(f.fn, 1), act};
    row_map(&f, lanes(isa), i64c(&f, numel), unary_at, &u);
  }
  fn_close(cg, &f, (LLVMValueRef[]){x, y}, 2);
}

/* Binary elementwise on rows of `inner`: each operand dense (its row
 * advances), one row (the same row each time) or a scalar. */
typedef enum { OPND_DENSE, OPND_ROW, OPND_SCALAR } OpndKind;

typedef struct {
  LLVMValueRef a, b, y; /* the row's (a, b as their kinds say) */
  OpndKind ak, bk;
  IrOp op;
} Binary;

static LLVMValueRef opnd(CgFn *f, LLVMValueRef p, OpndKind k, LLVMValueRef j, unsigned w) {
  if (k == OPND_SCALAR)
    return bcast(f, load(f, p, i64c(f, 0), 1), w);
  return load(f, p, j, w);
}

static LLVMValueRef binary_at(CgFn *f, const void *c, LLVMValueRef j, unsigned w) {
  const Binary *o = c;
  LLVMValueRef a = opnd(f, o->a, o->ak, j, w), b = opnd(f, o->b, o->bk, j, w), y;
  switch (o->op) {
  case IR_OP_ADD:
    y = LLVMBuildFAdd(f->b, a, b, "");
    break;
  case IR_OP_SUB:
    y = LLVMBuildFSub(f->b, a, b, "");
    break;
  case IR_OP_MUL:
    y = LLVMBuildFMul(f->b, a, b, "");
    break;
  default:
    y = LLVMBuildFDiv(f->b, a, b, "");
    break;
  }
  store(f, y, o->y, j);
  return NULL;
}

static int64_t numel_of(const IrType *t) {
  int64_t p = 1;
  for (int i = 0; i < t->rank; i++)
    p *= t->dims[i];
  return p;
}

/* The operand's kind against result type yt, or -1 for another pattern. */
static int opnd_kind(const IrType *t, const IrType *yt) {
  int64_t ne = numel_of(t), inner = yt->dims[yt->rank - 1];
  if (ne == 1)
    return OPND_SCALAR;
  if (ne == numel_of(yt))
    return OPND_DENSE;
  if (t->rank >= 1 && t->dims[t->rank - 1] == inner && ne == inner)
    return OPND_ROW;
  return -1;
}

static bool emit_binary(Cg *cg, int idx, CgIsa isa, LLVMValueRef a, LLVMValueRef b,
                        LLVMValueRef y) {
  const IrNode *n = cg->m->nodes[idx];
  const IrType *yt = &n->result->type;
  if (yt->rank < 1 || n->opnds[0]->type.dtype != IR_F32 || n->opnds[1]->type.dtype != IR_F32)
    return false;
  int ak = opnd_kind(&n->opnds[0]->type, yt), bk = opnd_kind(&n->opnds[1]->type, yt);
  if (ak < 0 || bk < 0)
    return false;
  int64_t numel = numel_of(yt), inner = yt->dims[yt->rank - 1];
  if (ak != OPND_ROW && bk != OPND_ROW)
    inner = numel; /* one row */
  static const char *names[] = {[IR_OP_ADD] = "add", [IR_OP_SUB] = "sub", [IR_OP_MUL] = "mul",
                                [IR_OP_DIV] = "div"};
  CgFn f;
  bool build = fn_open(cg, &f, idx, isa, names[n->op], 3);
  LLVMValueRef pa = LLVMGetParam(f.fn, 0), pb = LLVMGetParam(f.fn, 1), py = LLVMGetParam(f.fn, 2);
  if (build && numel > 0) {
    Loop l;
    LLVMValueRef r = loop_open(&f, &l, i64c(&f, 0), i64c(&f, numel / inner), 1);
    LLVMValueRef off = LLVMBuildMul(f.b, r, i64c(&f, inner), "");
    Binary o = {ak == OPND_DENSE ? at(&f, pa, off) : pa, bk == OPND_DENSE ? at(&f, pb, off) : pb,
                at(&f, py, off), (OpndKind)ak, (OpndKind)bk, n->op};
    row_map(&f, lanes(isa), i64c(&f, inner), binary_at, &o);
    loop_close(&f, &l);
  }
  fn_close(cg, &f, (LLVMValueRef[]){a, b, y}, 3);
  return true;
}

/* ---- softmax ---- */

typedef struct {
  LLVMValueRef x, y, m; /* the row; m its maximum, then its sum (<1 x float>) */
} Row;

static LLVMValueRef x_at(CgFn *f, const void *c, LLVMValueRef j, unsigned w) {
  return load(f, ((const Row *)c)->x, j, w);
}
static LLVMValueRef y_at(CgFn *f, const void *c, LLVMValueRef j, unsigned w) {
  return load(f, ((const Row *)c)->y, j, w);
}
static LLVMValueRef exp_at(CgFn *f, const void *c, LLVMValueRef j, unsigned w) {
  const Row *r = c;
  LLVMValueRef d = LLVMBuildFSub(f->b, load(f, r->x, j, w), bcast(f, r->m, w), "");
  store(f, cg_vm_exp(f, d), r->y, j);
  return NULL;
}
static LLVMValueRef div_at(CgFn *f, const void *c, LLVMValueRef j, unsigned w) {
  const Row *r = c;
  store(f, LLVMBuildFDiv(f->b, load(f, r->y, j, w), bcast(f, r->m, w), ""), r->y, j);
  return NULL;
}

/* Softmax of x [outer, len] over its rows; causal_rows > 0: row o takes keys
 * [0, o % causal_rows + len - causal_rows + 1) (clamped), the rest get 0. */
static void softmax_rows(CgFn *f, unsigned w, LLVMValueRef x, LLVMValueRef y, int64_t outer,
                         int64_t len, int64_t causal_rows) {
  Loop l;
  LLVMValueRef o = loop_open(f, &l, i64c(f, 0), i64c(f, outer), 1);
  LLVMValueRef off = LLVMBuildMul(f->b, o, i64c(f, len), "");
  Row r = {at(f, x, off), at(f, y, off), NULL};
  LLVMValueRef upto = i64c(f, len);
  if (causal_rows > 0) {
    upto = LLVMBuildAdd(f->b, LLVMBuildSRem(f->b, o, i64c(f, causal_rows), ""),
                        i64c(f, len - causal_rows + 1), "");
    LLVMValueRef lo = i64c(f, 0), hi = i64c(f, len);
    upto = LLVMBuildSelect(f->b, LLVMBuildICmp(f->b, LLVMIntSLT, upto, lo, ""), lo, upto, "");
    upto = LLVMBuildSelect(f->b, LLVMBuildICmp(f->b, LLVMIntSGT, upto, hi, ""), hi, upto, "");
  }
  r.m = row_max(f, w, upto, x_at, &r);
  row_map(f, w, upto, exp_at, &r);
  r.m = row_sum(f, w, upto, y_at, &r);
  row_map(f, w, upto, div_at, &r);
  if (causal_rows > 0) {
    LLVMValueRef rest = LLVMBuildSub(f->b, i64c(f, len), upto, "");
    LLVMBuildMemSet(f->b, at(f, r.y, upto), LLVMConstInt(LLVMInt8TypeInContext(f->ctx), 0, 0),
                    LLVMBuildMul(f->b, rest, i64c(f, 4), ""), 4);
  }
  loop_close(f, &l);
}

/* Softmax over the middle axis of [outer, len, inner], inner > 1: w lines
 * (adjacent c) at a time, each lane with the row order of its own line. */
typedef struct {
  LLVMValueRef x, y, m;
  int64_t inner;
} Lines;

static LLVMValueRef line_off(CgFn *f, const Lines *s, LLVMValueRef j) {
  return LLVMBuildMul(f->b, j, i64c(f, s->inner), "");
}

static void softmax_lines(CgFn *f, unsigned w, const Lines *s, int64_t len) {
  enum { L = Q8F_SUM_LANES };
  Loop l;
  LLVMValueRef m = var(f, vt(f, w), cg_vm_f(f, -INFINITY, w));
  LLVMValueRef j = loop_open(f, &l, i64c(f, 0), i64c(f, len), 1);
  LLVMBuildStore(f->b, max_step(f, get(f, vt(f, w), m), load(f, s->x, line_off(f, s, j), w)), m);
  loop_close(f, &l);
  LLVMValueRef mv = get(f, vt(f, w), m);
  j = loop_open(f, &l, i64c(f, 0), i64c(f, len), 1);
  LLVMValueRef d = LLVMBuildFSub(f->b, load(f, s->x, line_off(f, s, j), w), mv, "");
  store(f, cg_vm_exp(f, d), s->y, line_off(f, s, j));
  loop_close(f, &l);
  LLVMValueRef acc[L];
  for (int i = 0; i < L; i++)
    acc[i] = var(f, vt(f, w), cg_vm_f(f, 0.0f, w));
  int64_t nb = len - len % L;
  j = loop_open(f, &l, i64c(f, 0), i64c(f, nb), L);
  for (int i = 0; i < L; i++) {
    LLVMValueRef v = load(f, s->y, line_off(f, s, LLVMBuildAdd(f->b, j, i64c(f, i), "")), w);
    LLVMBuildStore(f->b, LLVMBuildFAdd(f->b, get(f, vt(f, w), acc[i]), v, ""), acc[i]);
  }
  loop_close(f, &l);
  LLVMValueRef v[L];
  for (int i = 0; i < L; i++)
    v[i] = get(f, vt(f, w), acc[i]);
  for (int h = L / 2; h >= 1; h /= 2)
    for (int i = 0; i < h; i++)
      v[i] = LLVMBuildFAdd(f->b, v[i], v[i + h], "");
  LLVMValueRef sum = var(f, vt(f, w), v[0]);
  j = loop_open(f, &l, i64c(f, nb), i64c(f, len), 1);
  LLVMBuildStore(f->b,
                 LLVMBuildFAdd(f->b, get(f, vt(f, w), sum), load(f, s->y, line_off(f, s, j), w),
                               ""),
                 sum);
  loop_close(f, &l);
  LLVMValueRef sv = get(f, vt(f, w), sum);
  j = loop_open(f, &l, i64c(f, 0), i64c(f, len), 1);
  LLVMValueRef q = LLVMBuildFDiv(f->b, load(f, s->y, line_off(f, s, j), w), sv, "");
  store(f, q, s->y, line_off(f, s, j));
  loop_close(f, &l);
}

static bool emit_softmax(Cg *cg, int idx, CgIsa isa, LLVMValueRef x, LLVMValueRef y) {
  const IrNode *n = cg->m->nodes[idx];
  const IrType *t = &n->result->type;
  int64_t ax = ir_attr_int(n, IR_ATTR_AXIS, -1);
  int axis = (int)(ax < 0 ? ax + t->rank : ax);
  int64_t outer = 1, inner = 1, len = t->dims[axis];
  for (int i = 0; i < axis; i++)
    outer *= t->dims[i];
  for (int i = axis + 1; i < t->rank; i++)
    inner *= t->dims[i];
  int64_t causal_rows = ir_attr_int(n, IR_ATTR_CAUSAL, 0) ? t->dims[t->rank - 2] : 0;
  if (causal_rows > 0 && inner != 1)
    return false;
  CgFn f;
  bool build = fn_open(cg, &f, idx, isa, "softmax", 2);
  LLVMValueRef px = LLVMGetParam(f.fn, 0), py = LLVMGetParam(f.fn, 1);
  unsigned w = lanes(isa);
  if (!build) {
    /* built for the other entry */
  } else if (inner == 1) {
    softmax_rows(&f, w, px, py, outer, len, causal_rows);
  } else if (outer * len > 0) {
    Loop lo, lc;
    LLVMValueRef o = loop_open(&f, &lo, i64c(&f, 0), i64c(&f, outer), 1);
    LLVMValueRef base = LLVMBuildMul(f.b, o, i64c(&f, len * inner), "");
    int64_t cv = inner - inner % w;
    for (int pass = 0; pass < 2; pass++) {
      unsigned pw = pass == 0 ? w : 1;
      LLVMValueRef c = loop_open(&f, &lc, i64c(&f, pass == 0 ? 0 : cv),
                                 i64c(&f, pass == 0 ? cv : inner), pw);
      LLVMValueRef off = LLVMBuildAdd(f.b, base, c, "");
      Lines s = {at(&f, px, off), at(&f, py, off), NULL, inner};
      softmax_lines(&f, pw, &s, len);
      loop_close(&f, &lc);
    }
    loop_close(&f, &lo);
  }
  fn_close(cg, &f, (LLVMValueRef[]){x, y}, 2);
  return true;
}

/* ---- layernorm, rmsnorm ---- */

typedef struct {
  LLVMValueRef x, y, g, b, mean, inv; /* mean and inv: <1 x float> */
} Norm;

static LLVMValueRef nx_at(CgFn *f, const void *c, LLVMValueRef j, unsigned w) {
  return load(f, ((const Norm *)c)->x, j, w);
}
static LLVMValueRef dd_at(CgFn *f, const void *c, LLVMValueRef j, unsigned w) {
  const Norm *s = c;
  LLVMValueRef d = LLVMBuildFSub(f->b, load(f, s->x, j, w), bcast(f, s->mean, w), "");
  return LLVMBuildFMul(f->b, d, d, "");
}
static LLVMValueRef xx_at(CgFn *f, const void *c, LLVMValueRef j, unsigned w) {
  LLVMValueRef v = load(f, ((const Norm *)c)->x, j, w);
  return LLVMBuildFMul(f->b, v, v, "");
}
static LLVMValueRef ln_at(CgFn *f, const void *c, LLVMValueRef j, unsigned w) {
  const Norm *s = c;
  LLVMValueRef d = LLVMBuildFSub(f->b, load(f, s->x, j, w), bcast(f, s->mean, w), "");
  LLVMValueRef v = LLVMBuildFMul(f->b, LLVMBuildFMul(f->b, d, bcast(f, s->inv, w), ""),
                                 load(f, s->g, j, w), "");
  store(f, LLVMBuildFAdd(f->b, v, load(f, s->b, j, w), ""), s->y, j);
  return NULL;
}
static LLVMValueRef rms_at(CgFn *f, const void *c, LLVMValueRef j, unsigned w) {
  const Norm *s = c;
  LLVMValueRef v = LLVMBuildFMul(f->b, load(f, s->x, j, w), bcast(f, s->inv, w), "");
  store(f, LLVMBuildFMul(f->b, v, load(f, s->g, j, w), ""), s->y, j);
  return NULL;
}

/* 1 / sqrt(v + eps), <1 x float>. */
static LLVMValueRef rsqrt_eps(CgFn *f, LLVMValueRef v, float eps) {
  LLVMValueRef s = LLVMBuildFAdd(f->b, v, cg_vm_f(f, eps, 1), "");
  LLVMTypeRef t = vt(f, 1);
  s = cg_intrinsic(f->mod, f->b, "llvm.sqrt", &t, 1, &s, 1);
  return LLVMBuildFDiv(f->b, cg_vm_f(f, 1.0f, 1), s, "");
}

static bool emit_norm(Cg *cg, int idx, CgIsa isa, LLVMValueRef *in, LLVMValueRef y,
                      int64_t rows, int64_t cols) {
  const IrNode *n = cg->m->nodes[idx];
  bool ln = n->op == IR_OP_LAYERNORM;
  float eps = (float)ir_attr_float(n, IR_ATTR_EPS, ln ? 1e-5 : 1e-6);
  unsigned nptr = ln ? 4 : 3, w = lanes(isa);
  CgFn f;
  if (fn_open(cg, &f, idx, isa, ln ? "layernorm" : "rmsnorm", nptr) && rows > 0 && cols > 0) {
    Loop l;
    LLVMValueRef r = loop_open(&f, &l, i64c(&f, 0), i64c(&f, rows), 1);
    LLVMValueRef off = LLVMBuildMul(f.b, r, i64c(&f, cols), "");
    Norm s = {at(&f, LLVMGetParam(f.fn, 0), off), at(&f, LLVMGetParam(f.fn, nptr - 1), off),
              LLVMGetParam(f.fn, 1), ln ? LLVMGetParam(f.fn, 2) : NULL, NULL, NULL};
    LLVMValueRef cn = cg_vm_f(&f, (float)cols, 1), nc = i64c(&f, cols);
    if (ln) {
      s.mean = LLVMBuildFDiv(f.b, row_sum(&f, w, nc, nx_at, &s), cn, "");
      LLVMValueRef var = LLVMBuildFDiv(f.b, row_sum(&f, w, nc, dd_at, &s), cn, "");
      s.inv = rsqrt_eps(&f, var, eps);
      row_map(&f, w, nc, ln_at, &s);
    } else {
      LLVMValueRef ms = LLVMBuildFDiv(f.b, row_sum(&f, w, nc, xx_at, &s), cn, "");
      s.inv = rsqrt_eps(&f, ms, eps);
      row_map(&f, w, nc, rms_at, &s);
    }
    loop_close(&f, &l);
  }
  LLVMValueRef args[4];
  for (unsigned i = 0; i + 1 < nptr; i++)
    args[i] = in[i];
  args[nptr - 1] = y;
  fn_close(cg, &f, args, nptr);
  return true;
}

/* ---- quantize, dequantize ---- */

typedef struct {
  LLVMValueRef x, q; /* the row: f32 and quantized */
  float scale;
  int32_t zp, qmin, qmax;
  bool is_signed;
  CgRound round;
} Quant;

/* &q[j] of bytes. */
static LLVMValueRef at8(CgFn *f, LLVMValueRef q, LLVMValueRef j) {
  return LLVMBuildGEP2(f->b, LLVMInt8TypeInContext(f->ctx), q, &j, 1, "");
}

/* rint of every lane: llvm.roundeven, or on SSE2 (CG_ROUND_MAGIC, no
 * rounding instruction) |v| < 2^23 ? copysign((|v| + 2^23) - 2^23, v) : v,
 * as codegen/quantize.c does. */
static LLVMValueRef rint_v(CgFn *f, LLVMValueRef v, CgRound round) {
  LLVMTypeRef t = LLVMTypeOf(v);
  if (round != CG_ROUND_MAGIC)
    return cg_intrinsic(f->mod, f->b, "llvm.roundeven", &t, 1, &v, 1);
  unsigned w = cg_vm_width(v);
  LLVMValueRef a = cg_intrinsic(f->mod, f->b, "llvm.fabs", &t, 1, &v, 1);
  LLVMValueRef big = cg_vm_f(f, 8388608.0f, w);
  LLVMValueRef r = LLVMBuildFSub(f->b, LLVMBuildFAdd(f->b, a, big, ""), big, "");
  r = cg_intrinsic(f->mod, f->b, "llvm.copysign", &t, 1, (LLVMValueRef[]){r, v}, 2);
  return LLVMBuildSelect(f->b, LLVMBuildFCmp(f->b, LLVMRealOLT, a, big, ""), r, v, "");
}

/* q = clamp(rint(x / scale), qmin - zp, qmax - zp) + zp, NaN -> zp: the
 * operations of q8_ref_quantize_value. */
static LLVMValueRef quant_at(CgFn *f, const void *c, LLVMValueRef j, unsigned w) {
  const Quant *o = c;
  LLVMValueRef v = LLVMBuildFDiv(f->b, load(f, o->x, j, w), cg_vm_f(f, o->scale, w), "");
  LLVMValueRef r = rint_v(f, v, o->round);
  LLVMValueRef lo = cg_vm_f(f, (float)(o->qmin - o->zp), w);
  LLVMValueRef hi = cg_vm_f(f, (float)(o->qmax - o->zp), w);
  r = LLVMBuildSelect(f->b, LLVMBuildFCmp(f->b, LLVMRealOLT, r, lo, ""), lo, r, "");
  r = LLVMBuildSelect(f->b, LLVMBuildFCmp(f->b, LLVMRealOGT, r, hi, ""), hi, r, "");
  r = LLVMBuildSelect(f->b, cg_vm_isnan(f, v), cg_vm_f(f, 0.0f, w), r, "");
  LLVMTypeRef iv = LLVMVectorType(f->i32, w);
  LLVMValueRef i = LLVMBuildAdd(f->b, LLVMBuildFPToSI(f->b, r, iv, ""),
                                cg_splat(LLVMConstInt(f->i32, (uint64_t)(int64_t)o->zp, 1), w),
                                "");
  LLVMValueRef bytes =
      LLVMBuildTrunc(f->b, i, LLVMVectorType(LLVMInt8TypeInContext(f->ctx), w), "");
  LLVMSetAlignment(LLVMBuildStore(f->b, bytes, at8(f, o->q, j)), 1);
  return NULL;
}

/* y = (float)(q - zp) * scale: q8_ref_dequantize's two operations. */
static LLVMValueRef dequant_at(CgFn *f, const void *c, LLVMValueRef j, unsigned w) {
  const Quant *o = c;
  LLVMValueRef q = LLVMBuildLoad2(f->b, LLVMVectorType(LLVMInt8TypeInContext(f->ctx), w),
                                  at8(f, o->q, j), "");
  LLVMSetAlignment(q, 1);
  LLVMTypeRef iv = LLVMVectorType(f->i32, w);
  LLVMValueRef i = o->is_signed ? LLVMBuildSExt(f->b, q, iv, "") : LLVMBuildZExt(f->b, q, iv, "");
  i = LLVMBuildSub(f->b, i, cg_splat(LLVMConstInt(f->i32, (uint64_t)(int64_t)o->zp, 1), w), "");
  LLVMValueRef v = LLVMBuildSIToFP(f->b, i, vt(f, w), "");
  store(f, LLVMBuildFMul(f->b, v, cg_vm_f(f, o->scale, w), ""), o->x, j);
  return NULL;
}

/* quantize (f32 rows of `cols` to rows `q_stride` bytes apart) or
 * dequantize (the reverse), over `rows` rows. */
static void emit_quant(Cg *cg, int idx, CgIsa isa, bool dequant, LLVMValueRef x,
                       LLVMValueRef y, int64_t rows, int64_t cols, int64_t q_stride) {
  const IrNode *n = cg->m->nodes[idx];
  Quant o = {.scale = (float)ir_attr_float(n, IR_ATTR_SCALE, 1),
             .zp = (int32_t)ir_attr_int(n, IR_ATTR_ZERO_POINT, 0),
             .round = cg_isa_info[isa].round};
  IrDType qt = dequant ? n->opnds[0]->type.dtype : n->result->type.dtype;
  ir_qbounds(qt, &o.qmin, &o.qmax);
  o.is_signed = qt == IR_I8;
  CgFn f;
  if (fn_open(cg, &f, idx, isa, dequant ? "dequantize" : "quantize", 2) && rows > 0 &&
      cols > 0) {
    Loop l;
    LLVMValueRef r = loop_open(&f, &l, i64c(&f, 0), i64c(&f, rows), 1);
    LLVMValueRef pin = LLVMGetParam(f.fn, 0), pout = LLVMGetParam(f.fn, 1);
    LLVMValueRef fo = LLVMBuildMul(f.b, r, i64c(&f, cols), "");
    LLVMValueRef qo = LLVMBuildMul(f.b, r, i64c(&f, q_stride), "");
    o.x = at(&f, dequant ? pout : pin, fo);
    o.q = at8(&f, dequant ? pin : pout, qo);
    row_map(&f, lanes(isa), i64c(&f, cols), dequant ? dequant_at : quant_at, &o);
    loop_close(&f, &l);
  }
  fn_close(cg, &f, (LLVMValueRef[]){x, y}, 2);
}

/* ---- the entry point ---- */

bool cg_emit_floatop(Cg *cg, int idx, CgIsa isa, LLVMValueRef *in, LLVMValueRef y) {
  const IrNode *n = cg->m->nodes[idx];
  const Loc *r = &cg->loc[n->result->id];
  if (cg->o->scalar_floatops)
    return false;
  if (n->op == IR_OP_QUANTIZE && n->opnds[0]->type.dtype == IR_F32) {
    emit_quant(cg, idx, isa, false, in[0], y, r->rows, r->cols, r->stride);
    return true;
  }
  if (n->op == IR_OP_DEQUANTIZE && ir_dtype_is_quantized(n->opnds[0]->type.dtype)) {
    emit_quant(cg, idx, isa, true, in[0], y, r->rows, r->cols, cg->loc[n->opnds[0]->id].stride);
    return true;
  }
  if (n->result->type.dtype != IR_F32)
    return false;
  int64_t numel = r->rows * r->cols;
  switch (n->op) {
  case IR_OP_RELU:
    emit_unary(cg, idx, isa, "relu", cg_vm_relu, in[0], y, numel);
    return true;
  case IR_OP_GELU:
    if (ir_attr_name(n, IR_ATTR_APPROXIMATE, IR_GELU_NONE) == IR_GELU_TANH)
      emit_unary(cg, idx, isa, "gelu_tanh", cg_vm_gelu_tanh, in[0], y, numel);
    else
      emit_unary(cg, idx, isa, "gelu", cg_vm_gelu, in[0], y, numel);
    return true;
  case IR_OP_SIGMOID:
    emit_unary(cg, idx, isa, "sigmoid", cg_vm_sigmoid, in[0], y, numel);
    return true;
  case IR_OP_TANH:
    emit_unary(cg, idx, isa, "tanh", cg_vm_tanh, in[0], y, numel);
    return true;
  case IR_OP_SILU:
    emit_unary(cg, idx, isa, "silu", cg_vm_silu, in[0], y, numel);
    return true;
  case IR_OP_ADD:
  case IR_OP_SUB:
  case IR_OP_MUL:
  case IR_OP_DIV:
    return emit_binary(cg, idx, isa, in[0], in[1], y);
  case IR_OP_SOFTMAX:
    return emit_softmax(cg, idx, isa, in[0], y);
  case IR_OP_LAYERNORM:
  case IR_OP_RMSNORM:
    return emit_norm(cg, idx, isa, in, y, r->rows, r->cols);
  default:
    return false;
  }
}
