/* module.c: the codegen driver. It lays out a folded, quantized module's
 * values in memory and builds one LLVM module holding:
 *
 *   - for every variant (isa.def) two entry points
 *       int NAME_run_ISA(const q8_threads *, const void *const *inputs,
 *                        void *const *outputs, void *scratch)
 *       int NAME_run_quantized_ISA(...the same...)
 *     that run the nodes in order: qgemm through a generated kernel
 *     (x86/qgemm.c or aarch64/qgemm.c; f32 inputs quantized first by
 *     quantize.c), split into tasks that the caller's threads may share;
 *     every other op through the reference functions of ir/refops.h (linked
 *     from libq8support.a), which compute exactly what the interpreter
 *     computes;
 *     The quantized entry takes and gives the quantized form of each input
 *     and output that has one (ir/qform.c): such an input's layers read its
 *     bytes instead of quantizing the f32 tensor, and such an output is
 *     quantized on exit (q8_ref_quantize). Both entries call the same
 *     kernels;
 *   - the constants those calls read, as private globals;
 *   - the exported descriptor `q8_model` (q8model.h).
 *
 * Memory: inputs and outputs are used in place; every other value gets its
 * own 64-byte aligned slot in the caller's scratch buffer. Quantized values
 * keep rows padded to a multiple of 4 bytes, the layout the kernels read 4
 * bytes at a time, so a quantized input or output whose rows are not is
 * copied on entry or exit. A reshape is free: it shares its operand's slot. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <llvm-c/Analysis.h>

#include "codegen.h"

/* Where a value lives at run time. */
typedef enum { LOC_NONE, LOC_INPUT, LOC_OUTPUT, LOC_SCRATCH, LOC_CONST } LocKind;

typedef struct {
  LocKind kind;
  int index;          /* LOC_INPUT / LOC_OUTPUT */
  int64_t offset;     /* LOC_SCRATCH */
  LLVMValueRef global;/* LOC_CONST */
  int64_t rows, cols; /* the value as [rows, cols]: cols is the last dim */
  int64_t stride;     /* elements between rows (padded for quantized values) */
  int64_t q_offset;   /* a LOC_OUTPUT value with a quantized form: its f32 slot in
                       * scratch at the quantized entry, or -1 */
} Loc;

typedef struct {
  IrModule *m;
  const CgOptions *o;
  LLVMContextRef ctx;
  LLVMModuleRef mod;
  LLVMBuilderRef b;
  LLVMTypeRef i8, i32, i64, f32, f64, ptr, vd;
  Loc *loc;           /* by value id */
  int64_t scratch;    /* bytes */
  int64_t *xq_offset; /* per node: scratch for a qgemm's quantized f32 input, or -1 */
  char prefix[128];   /* the model's name as a C identifier */
  /* per node, for the variant being built: its kernel (shared by the two
   * entries) and task count */
  LLVMValueRef *kernel;
  int64_t *kernel_tasks;
  LLVMValueRef *quantizer; /* its f32 input's quantization loop, or NULL */
  /* inside the entry being built */
  bool quantized;     /* the quantized entry */
  LLVMValueRef fn, thr, inputs, outputs, scratch_ptr;
} Cg;

static int64_t round_up(int64_t x, int64_t to) { return (x + to - 1) / to * to; }

static bool is_quantized(IrDType t) { return t == IR_U8 || t == IR_I8; }

/* `s` made into a C identifier. */
static void c_ident(const char *s, char *out, size_t size) {
  size_t n = 0;
  for (; *s && n + 1 < size; s++)
    out[n++] = (char)((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
                              (*s >= '0' && *s <= '9')
                          ? *s
                          : '_');
  out[n] = '\0';
}

/* ---- layout ---- */

static void shape_of(const IrType *t, int64_t *rows, int64_t *cols) {
  int64_t n;
  ir_type_numel(t, 1, &n);
  *cols = t->rank ? t->dims[t->rank - 1] : 1;
  *rows = *cols ? n / *cols : 0;
}

static int64_t bytes_of(const Loc *l, IrDType t) {
  return l->rows * l->stride * (int64_t)ir_dtype_size(t);
}

/* Reserve `bytes` of scratch (rounded up to 64) and return its offset. Each
 * value fits the memory cap (ir_verify), so `bytes` cannot overflow, but the
 * sum of many can: it saturates at INT64_MAX, which plan_memory refuses. */
static int64_t reserve(Cg *cg, int64_t bytes) {
  int64_t at = cg->scratch, size = round_up(bytes > 0 ? bytes : 1, 64);
  cg->scratch = at > INT64_MAX - size ? INT64_MAX : at + size;
  return at;
}

static void place_in_scratch(Cg *cg, Loc *l, IrDType t) {
  l->kind = LOC_SCRATCH;
  l->offset = reserve(cg, bytes_of(l, t));
}

static bool plan_memory(Cg *cg) {
  IrModule *m = cg->m;
  int nvalues = ir_number_values(m);
  cg->loc = ir_alloc(m->arena, (size_t)nvalues * sizeof *cg->loc);
  cg->xq_offset = ir_alloc(m->arena, (size_t)(m->nnodes + 1) * sizeof *cg->xq_offset);
  for (int i = 0; i < m->ninputs; i++) {
    IrValue *v = m->inputs[i];
    Loc *l = &cg->loc[v->id];
    shape_of(&v->type, &l->rows, &l->cols);
    l->stride = l->cols;
    l->kind = LOC_INPUT;
    l->index = i;
    if (is_quantized(v->type.dtype) && l->cols % 4 != 0) {
      /* Copied into padded rows on entry (rows of a multiple of 4 bytes are
       * read in place). */
      l->stride = round_up(l->cols, 4);
      place_in_scratch(cg, l, v->type.dtype);
    }
  }
  for (int i = 0; i < m->nconsts; i++) {
    Loc *l = &cg->loc[m->consts[i]->id];
    l->kind = LOC_CONST;
    shape_of(&m->consts[i]->type, &l->rows, &l->cols);
    l->stride = l->cols;
  }
  for (int i = 0; i < m->nnodes; i++) {
    IrNode *n = m->nodes[i];
    IrValue *v = n->result;
    Loc *l = &cg->loc[v->id];
    shape_of(&v->type, &l->rows, &l->cols);
    l->stride = is_quantized(v->type.dtype) ? round_up(l->cols, 4) : l->cols;
    int out = ir_output_index(m, v);
    cg->xq_offset[i] = -1;
    if (n->op == IR_OP_QGEMM && n->opnds[0]->type.dtype == IR_F32) {
      Loc xq;
      shape_of(&n->opnds[0]->type, &xq.rows, &xq.cols);
      xq.stride = round_up(xq.cols, 4);
      cg->xq_offset[i] = reserve(cg, xq.rows * xq.stride);
    }
    if (n->op == IR_OP_RESHAPE) {
      /* Same bytes, another shape: share the operand's slot unless the
       * result is an output the caller's buffer must receive. */
      Loc src = cg->loc[n->opnds[0]->id];
      if (out < 0) {
        src.rows = l->rows;
        src.cols = l->cols;
        src.stride = l->stride;
        *l = src;
        continue;
      }
    }
    l->q_offset = -1;
    if (out >= 0 && l->stride == l->cols) {
      l->kind = LOC_OUTPUT;
      l->index = out;
      if (v->has_qform)
        l->q_offset = reserve(cg, bytes_of(l, v->type.dtype));
    } else {
      place_in_scratch(cg, l, v->type.dtype);
    }
  }
  char why[160];
  if (!ir_bytes_allowed((uint64_t)cg->scratch, why, sizeof why))
    return ir_error(&m->diag, (IrLoc){0},
                    "codegen: the scratch memory for the intermediate values (batch size %lld) %s",
                    (long long)(cg->o->batch > 0 ? cg->o->batch : 1), why);
  return true;
}

/* ---- LLVM helpers ---- */

static LLVMValueRef i64c(Cg *cg, int64_t v) { return LLVMConstInt(cg->i64, (unsigned long long)v, 1); }
static LLVMValueRef i32c(Cg *cg, int64_t v) { return LLVMConstInt(cg->i32, (unsigned long long)v, 1); }

/* A private constant global holding `size` bytes, 64-byte aligned. */
static LLVMValueRef const_bytes(Cg *cg, const char *name, const void *data, size_t size) {
  /* The size_t variant: (unsigned)size would cut a constant over 4 GiB. */
  return cg_private_const(cg->mod, name, LLVMConstStringInContext2(cg->ctx, data, size, 1));
}

static LLVMValueRef const_string(Cg *cg, const char *s) {
  return const_bytes(cg, ".str", s, strlen(s) + 1);
}

static LLVMValueRef const_global(Cg *cg, const IrValue *c) {
  Loc *l = &cg->loc[c->id];
  if (!l->global) {
    char name[256];
    snprintf(name, sizeof name, "%s.const.%s", cg->prefix, c->name);
    int64_t n;
    ir_type_numel(&c->type, 1, &n);
    l->global = const_bytes(cg, name, c->data, (size_t)n * ir_dtype_size(c->type.dtype));
  }
  return l->global;
}

/* The run-time address of value `v` inside the entry being built. */
static LLVMValueRef addr(Cg *cg, const IrValue *v) {
  Loc *l = &cg->loc[v->id];
  LLVMValueRef idx;
  switch (l->kind) {
  case LOC_INPUT:
    idx = i64c(cg, l->index);
    return LLVMBuildLoad2(cg->b, cg->ptr, LLVMBuildGEP2(cg->b, cg->ptr, cg->inputs, &idx, 1, ""),
                          v->name);
  case LOC_OUTPUT:
    if (cg->quantized && l->q_offset >= 0) {
      /* The quantized entry quantizes this f32 output on exit. */
      idx = i64c(cg, l->q_offset);
      return LLVMBuildGEP2(cg->b, cg->i8, cg->scratch_ptr, &idx, 1, v->name);
    }
    idx = i64c(cg, l->index);
    return LLVMBuildLoad2(cg->b, cg->ptr, LLVMBuildGEP2(cg->b, cg->ptr, cg->outputs, &idx, 1, ""),
                          v->name);
  case LOC_SCRATCH:
    idx = i64c(cg, l->offset);
    return LLVMBuildGEP2(cg->b, cg->i8, cg->scratch_ptr, &idx, 1, v->name);
  case LOC_CONST:
    return const_global(cg, v);
  case LOC_NONE:
    break;
  }
  q8_die("value %s has no location", v->name);
}

static LLVMValueRef scratch_at(Cg *cg, int64_t offset) {
  LLVMValueRef idx = i64c(cg, offset);
  return LLVMBuildGEP2(cg->b, cg->i8, cg->scratch_ptr, &idx, 1, "");
}

/* Call an external function (a reference op) declared on first use. */
static void call(Cg *cg, const char *name, LLVMTypeRef ret, LLVMTypeRef *types, LLVMValueRef *args,
                 int n) {
  LLVMTypeRef fty = LLVMFunctionType(ret, types, (unsigned)n, 0);
  LLVMValueRef f = LLVMGetNamedFunction(cg->mod, name);
  if (!f)
    f = LLVMAddFunction(cg->mod, name, fty);
  LLVMBuildCall2(cg->b, fty, f, args, (unsigned)n, "");
}

/* Argument lists built left to right, for the calls below. */
typedef struct {
  LLVMTypeRef t[20];
  LLVMValueRef v[20];
  int n;
} Args;

static void arg(Args *a, LLVMTypeRef t, LLVMValueRef v) {
  a->t[a->n] = t;
  a->v[a->n++] = v;
}

static void call_ref(Cg *cg, const char *name, Args *a) {
  call(cg, name, cg->vd, a->t, a->v, a->n);
}

static double attr(const IrNode *n, IrAttrKey k, double dflt) { return ir_node_attr_float(n, k, dflt); }

/* q8_ref_quantize of dense f32 x [rows, cols] into y laid out as `yl` (its
 * rows yl->stride bytes apart) with parameters q. */
static void call_quantize(Cg *cg, LLVMValueRef x, LLVMValueRef y, const Loc *yl,
                          const IrQParams *q) {
  int32_t qmin, qmax;
  ir_qbounds(q->dtype, &qmin, &qmax);
  Args a = {.n = 0};
  arg(&a, cg->ptr, x);
  arg(&a, cg->ptr, y);
  arg(&a, cg->i64, i64c(cg, yl->stride));
  arg(&a, cg->i64, i64c(cg, yl->rows));
  arg(&a, cg->i64, i64c(cg, yl->cols));
  arg(&a, cg->f32, LLVMConstReal(cg->f32, q->scale));
  arg(&a, cg->i32, i32c(cg, q->zero_point));
  arg(&a, cg->i32, i32c(cg, qmin));
  arg(&a, cg->i32, i32c(cg, qmax));
  arg(&a, cg->i32, i32c(cg, q->dtype == IR_I8));
  call_ref(cg, "q8_ref_quantize", &a);
}

/* Copy quantized inputs into padded rows, and outputs that live in scratch
 * into the caller's buffers. */
static void copy_rows(Cg *cg, LLVMValueRef dst, int64_t dst_stride, LLVMValueRef src,
                      int64_t src_stride, int64_t rows, int64_t row_bytes) {
  if (dst_stride == src_stride) {
    LLVMBuildMemCpy(cg->b, dst, 1, src, 1, i64c(cg, rows * row_bytes));
    return;
  }
  for (int64_t r = 0; r < rows; r++) {
    LLVMValueRef di = i64c(cg, r * dst_stride), si = i64c(cg, r * src_stride);
    LLVMBuildMemCpy(cg->b, LLVMBuildGEP2(cg->b, cg->i8, dst, &di, 1, ""), 1,
                    LLVMBuildGEP2(cg->b, cg->i8, src, &si, 1, ""), 1, i64c(cg, row_bytes));
  }
}

/* ---- nodes ---- */

/* Run `kernel(args, t)` for t in [0, ntasks): through the caller's threads
 * when there are any and the layer is worth splitting, else in a loop. */
static void run_tasks(Cg *cg, LLVMValueRef kernel, LLVMValueRef args, int64_t ntasks,
                      bool parallel) {
  LLVMTypeRef kty = LLVMFunctionType(cg->vd, (LLVMTypeRef[]){cg->ptr, cg->i64}, 2, 0);
  LLVMBasicBlockRef loop_bb = LLVMAppendBasicBlockInContext(cg->ctx, cg->fn, "tasks");
  LLVMBasicBlockRef done_bb = LLVMAppendBasicBlockInContext(cg->ctx, cg->fn, "tasks.done");
  LLVMBasicBlockRef entry_bb = LLVMGetInsertBlock(cg->b);
  if (parallel && ntasks > 1) {
    LLVMBasicBlockRef par_bb = LLVMAppendBasicBlockInContext(cg->ctx, cg->fn, "parallel");
    LLVMValueRef no_threads = LLVMBuildICmp(cg->b, LLVMIntEQ, cg->thr, LLVMConstNull(cg->ptr), "");
    LLVMBuildCondBr(cg->b, no_threads, loop_bb, par_bb);
    LLVMPositionBuilderAtEnd(cg->b, par_bb);
    /* q8_threads.parallel_for is the first field. */
    LLVMValueRef pf = LLVMBuildLoad2(cg->b, cg->ptr, cg->thr, "parallel_for");
    LLVMTypeRef pty =
        LLVMFunctionType(cg->vd, (LLVMTypeRef[]){cg->ptr, cg->ptr, cg->ptr, cg->i64}, 4, 0);
    LLVMBuildCall2(cg->b, pty, pf, (LLVMValueRef[]){cg->thr, kernel, args, i64c(cg, ntasks)}, 4,
                   "");
    LLVMBuildBr(cg->b, done_bb);
  } else {
    LLVMBuildBr(cg->b, loop_bb);
  }
  LLVMPositionBuilderAtEnd(cg->b, loop_bb);
  LLVMValueRef t = LLVMBuildPhi(cg->b, cg->i64, "t");
  LLVMBuildCall2(cg->b, kty, kernel, (LLVMValueRef[]){args, t}, 2, "");
  LLVMValueRef next = LLVMBuildAdd(cg->b, t, i64c(cg, 1), "");
  LLVMValueRef zero = i64c(cg, 0);
  LLVMAddIncoming(t, &zero, &entry_bb, 1);
  LLVMAddIncoming(t, &next, &loop_bb, 1);
  LLVMBuildCondBr(cg->b, LLVMBuildICmp(cg->b, LLVMIntSLT, next, i64c(cg, ntasks), ""), loop_bb,
                  done_bb);
  LLVMPositionBuilderAtEnd(cg->b, done_bb);
}

/* The range of values a quantized input can hold, for the AVX2 check: what
 * the producing qgemm clamps to when known, else the whole type. */
static void input_bounds(const IrValue *x, IrDType t, int32_t *lo, int32_t *hi) {
  ir_qbounds(t, lo, hi);
  const IrNode *p = x->kind == IR_VAL_NODE ? x->def : NULL;
  if (p && p->op == IR_OP_QGEMM && ir_node_attr_float(p, IR_ATTR_RELU, 0) != 0) {
    int32_t zp = (int32_t)ir_node_attr_float(p, IR_ATTR_ZERO_POINT, 0);
    if (zp > *lo)
      *lo = zp;
  }
}

static bool emit_qgemm(Cg *cg, int idx, CgIsa isa) {
  IrModule *m = cg->m;
  IrNode *n = m->nodes[idx];
  const IrValue *x = n->opnds[0], *w = n->opnds[1], *bias = n->opnds[2], *mult = n->opnds[3];
  const Loc *xl = &cg->loc[x->id], *yl = &cg->loc[n->result->id];
  IrDType y_dtype = n->result->type.dtype;
  CgGemm g = {0};
  char name[400];
  snprintf(name, sizeof name, "%s.%s", cg->prefix, n->result->name);
  g.name = name;
  g.m = xl->rows;
  g.k = w->type.dims[1];
  g.n = w->type.dims[0];
  g.wq = w->data;
  g.bias = bias->data;
  g.mult = mult->data;
  g.y_dtype = y_dtype;
  g.y_stride = yl->stride;
  g.relu = attr(n, IR_ATTR_RELU, 0) != 0;
  LLVMValueRef xptr = addr(cg, x);
  if (x->type.dtype == IR_F32 && cg->quantized && x->kind == IR_VAL_INPUT && x->has_qform) {
    /* The quantized entry gets this input's bytes (ir_check_qforms: as this
     * layer would quantize them); rows not a multiple of 4 bytes are copied
     * into padded ones, the layout the kernel reads. */
    g.x_dtype = x->qform.dtype;
    g.x_stride = round_up(g.k, 4);
    if (g.x_stride != g.k) {
      LLVMValueRef xq = scratch_at(cg, cg->xq_offset[idx]);
      copy_rows(cg, xq, g.x_stride, xptr, g.k, g.m, g.k);
      xptr = xq;
    }
    ir_qbounds(g.x_dtype, &g.x_min, &g.x_max);
  } else if (x->type.dtype == IR_F32) {
    /* Quantize the f32 input into padded rows first. */
    g.x_dtype = (IrDType)attr(n, IR_ATTR_X_DTYPE, IR_U8);
    g.x_stride = round_up(g.k, 4);
    float scale = (float)attr(n, IR_ATTR_X_SCALE, 1);
    int32_t zp = (int32_t)attr(n, IR_ATTR_X_ZERO_POINT, 0);
    if (!cg->quantizer[idx]) {
      char qname[480];
      snprintf(qname, sizeof qname, "%s.q8_quantize_f32_%s_%s", name,
               g.x_dtype == IR_I8 ? "qs8" : "qu8", cg_isa_info[isa].name);
      cg->quantizer[idx] = cg_arch_of(isa)->emit_quantize(cg->mod, qname, isa, g.m, g.k,
                                                          g.x_stride, scale, zp, g.x_dtype);
    }
    LLVMValueRef qfn = cg->quantizer[idx];
    LLVMValueRef xq = scratch_at(cg, cg->xq_offset[idx]);
    LLVMTypeRef qty = LLVMFunctionType(cg->vd, (LLVMTypeRef[]){cg->ptr, cg->ptr}, 2, 0);
    LLVMBuildCall2(cg->b, qty, qfn, (LLVMValueRef[]){xptr, xq}, 2, "");
    xptr = xq;
    ir_qbounds(g.x_dtype, &g.x_min, &g.x_max);
  } else {
    g.x_dtype = x->type.dtype;
    g.x_stride = xl->stride;
    input_bounds(x, g.x_dtype, &g.x_min, &g.x_max);
  }
  if (is_quantized(y_dtype)) {
    int32_t qmin, qmax;
    ir_qbounds(y_dtype, &qmin, &qmax);
    g.y_zero_point = (int32_t)attr(n, IR_ATTR_ZERO_POINT, 0);
    g.y_min = g.relu && g.y_zero_point > qmin ? g.y_zero_point : qmin;
    g.y_max = qmax;
    g.relu = false;
  }
  char err[512];
  if (!cg->kernel[idx]) {
    cg->kernel_tasks[idx] = 1;
    cg->kernel[idx] = cg_emit_qgemm(cg->mod, &g, isa, &cg->kernel_tasks[idx], err, sizeof err);
    if (!cg->kernel[idx])
      return ir_error(&m->diag, n->loc, "codegen: %s", err);
  }
  LLVMValueRef kernel = cg->kernel[idx];
  int64_t ntasks = cg->kernel_tasks[idx];
  /* CgGemmArgs {x, y} on the entry's stack. */
  LLVMTypeRef args_ty = LLVMStructTypeInContext(cg->ctx, (LLVMTypeRef[]){cg->ptr, cg->ptr}, 2, 0);
  LLVMValueRef args = LLVMBuildAlloca(cg->b, args_ty, "gemm.args");
  LLVMBuildStore(cg->b, xptr, LLVMBuildStructGEP2(cg->b, args_ty, args, 0, ""));
  LLVMBuildStore(cg->b, addr(cg, n->result), LLVMBuildStructGEP2(cg->b, args_ty, args, 1, ""));
  /* Below ~2^18 multiply-adds (~1 us) a hand-off to another thread costs
   * more than it saves. */
  bool parallel = g.m * g.n * g.k >= (1 << 18);
  run_tasks(cg, kernel, args, ntasks, parallel);
  return true;
}

static bool emit_node(Cg *cg, int idx, CgIsa isa) {
  IrModule *m = cg->m;
  IrNode *n = m->nodes[idx];
  const Loc *r = &cg->loc[n->result->id];
  LLVMValueRef y = n->op == IR_OP_RESHAPE ? NULL : addr(cg, n->result);
  Args a = {.n = 0};
  int64_t numel = r->rows * r->cols;
  switch (n->op) {
  case IR_OP_QGEMM:
    return emit_qgemm(cg, idx, isa);
  case IR_OP_LINEAR: {
    const Loc *xl = &cg->loc[n->opnds[0]->id];
    arg(&a, cg->ptr, addr(cg, n->opnds[0]));
    arg(&a, cg->ptr, addr(cg, n->opnds[1]));
    arg(&a, cg->ptr, n->nopnds == 3 ? addr(cg, n->opnds[2]) : LLVMConstNull(cg->ptr));
    arg(&a, cg->ptr, y);
    arg(&a, cg->i64, i64c(cg, xl->rows));
    arg(&a, cg->i64, i64c(cg, xl->cols));
    arg(&a, cg->i64, i64c(cg, r->cols));
    call_ref(cg, "q8_ref_linear", &a);
    return true;
  }
  case IR_OP_MATMUL: {
    const IrType *at = &n->opnds[0]->type, *bt = &n->opnds[1]->type;
    int64_t mm = at->dims[at->rank - 2], k = at->dims[at->rank - 1], nn = bt->dims[bt->rank - 1];
    arg(&a, cg->ptr, addr(cg, n->opnds[0]));
    arg(&a, cg->ptr, addr(cg, n->opnds[1]));
    arg(&a, cg->ptr, y);
    arg(&a, cg->i64, i64c(cg, numel / (mm * nn)));
    arg(&a, cg->i64, i64c(cg, mm));
    arg(&a, cg->i64, i64c(cg, k));
    arg(&a, cg->i64, i64c(cg, nn));
    arg(&a, cg->i32, i32c(cg, bt->rank > 2));
    call_ref(cg, "q8_ref_matmul", &a);
    return true;
  }
  case IR_OP_ADD:
  case IR_OP_MUL: {
    int64_t na, nb;
    ir_type_numel(&n->opnds[0]->type, 1, &na);
    ir_type_numel(&n->opnds[1]->type, 1, &nb);
    arg(&a, cg->ptr, addr(cg, n->opnds[0]));
    arg(&a, cg->i64, i64c(cg, na));
    arg(&a, cg->ptr, addr(cg, n->opnds[1]));
    arg(&a, cg->i64, i64c(cg, nb));
    arg(&a, cg->ptr, y);
    call_ref(cg, n->op == IR_OP_ADD ? "q8_ref_add" : "q8_ref_mul", &a);
    return true;
  }
  case IR_OP_RELU:
  case IR_OP_GELU:
    arg(&a, cg->ptr, addr(cg, n->opnds[0]));
    arg(&a, cg->ptr, y);
    arg(&a, cg->i64, i64c(cg, numel));
    call_ref(cg, n->op == IR_OP_RELU ? "q8_ref_relu" : "q8_ref_gelu", &a);
    return true;
  case IR_OP_SOFTMAX:
    arg(&a, cg->ptr, addr(cg, n->opnds[0]));
    arg(&a, cg->ptr, y);
    arg(&a, cg->i64, i64c(cg, r->rows));
    arg(&a, cg->i64, i64c(cg, r->cols));
    call_ref(cg, "q8_ref_softmax", &a);
    return true;
  case IR_OP_LAYERNORM:
    arg(&a, cg->ptr, addr(cg, n->opnds[0]));
    arg(&a, cg->ptr, addr(cg, n->opnds[1]));
    arg(&a, cg->ptr, addr(cg, n->opnds[2]));
    arg(&a, cg->f64, LLVMConstReal(cg->f64, attr(n, IR_ATTR_EPS, 1e-5)));
    arg(&a, cg->ptr, y);
    arg(&a, cg->i64, i64c(cg, r->rows));
    arg(&a, cg->i64, i64c(cg, r->cols));
    call_ref(cg, "q8_ref_layernorm", &a);
    return true;
  case IR_OP_TRANSPOSE: {
    const IrType *xt = &n->opnds[0]->type;
    int64_t perm[IR_MAX_RANK];
    const IrAttr *p = ir_node_attr(n, IR_ATTR_PERM);
    for (int i = 0; i < xt->rank; i++)
      perm[i] = p ? (int64_t)p->vals[i] : i;
    if (!p) {
      perm[xt->rank - 2] = xt->rank - 1;
      perm[xt->rank - 1] = xt->rank - 2;
    }
    char name[256];
    snprintf(name, sizeof name, "%s.dims.%s", cg->prefix, n->result->name);
    arg(&a, cg->ptr, addr(cg, n->opnds[0]));
    arg(&a, cg->ptr, y);
    arg(&a, cg->i32, i32c(cg, xt->rank));
    arg(&a, cg->ptr, const_bytes(cg, name, xt->dims, (size_t)xt->rank * sizeof(int64_t)));
    arg(&a, cg->ptr, const_bytes(cg, name, perm, (size_t)xt->rank * sizeof(int64_t)));
    call_ref(cg, "q8_ref_transpose", &a);
    return true;
  }
  case IR_OP_RESHAPE:
    if (r->kind == LOC_OUTPUT || r->kind == LOC_SCRATCH) {
      /* A reshape that is an output: copy into the caller's buffer. */
      LLVMValueRef dst = addr(cg, n->result), src = addr(cg, n->opnds[0]);
      LLVMBuildMemCpy(cg->b, dst, 4, src, 4, i64c(cg, numel * 4));
    }
    return true;
  case IR_OP_QUANTIZE: {
    IrQParams q = {(float)attr(n, IR_ATTR_SCALE, 1), (int32_t)attr(n, IR_ATTR_ZERO_POINT, 0),
                   n->result->type.dtype};
    call_quantize(cg, addr(cg, n->opnds[0]), y, r, &q);
    return true;
  }
  case IR_OP_DEQUANTIZE: {
    const Loc *xl = &cg->loc[n->opnds[0]->id];
    arg(&a, cg->ptr, addr(cg, n->opnds[0]));
    arg(&a, cg->i64, i64c(cg, xl->stride));
    arg(&a, cg->ptr, y);
    arg(&a, cg->i64, i64c(cg, r->rows));
    arg(&a, cg->i64, i64c(cg, r->cols));
    arg(&a, cg->f32, LLVMConstReal(cg->f32, (float)attr(n, IR_ATTR_SCALE, 1)));
    arg(&a, cg->i32, i32c(cg, (int32_t)attr(n, IR_ATTR_ZERO_POINT, 0)));
    arg(&a, cg->i32, i32c(cg, n->opnds[0]->type.dtype == IR_I8));
    call_ref(cg, "q8_ref_dequantize", &a);
    return true;
  }
  case IR_OP_QLINEAR_DYN: {
    const Loc *xl = &cg->loc[n->opnds[0]->id];
    const IrValue *ws = n->opnds[2];
    arg(&a, cg->ptr, addr(cg, n->opnds[0]));
    arg(&a, cg->ptr, addr(cg, n->opnds[1]));
    arg(&a, cg->ptr, addr(cg, ws));
    arg(&a, cg->i64, i64c(cg, ws->type.dims[0]));
    arg(&a, cg->ptr, n->nopnds == 4 ? addr(cg, n->opnds[3]) : LLVMConstNull(cg->ptr));
    arg(&a, cg->ptr, y);
    arg(&a, cg->i64, i64c(cg, xl->rows));
    arg(&a, cg->i64, i64c(cg, xl->cols));
    arg(&a, cg->i64, i64c(cg, r->cols));
    call_ref(cg, "q8_ref_qlinear_dyn", &a);
    return true;
  }
  case IR_OP_QLINEAR:
    return ir_error(&m->diag, n->loc,
                    "codegen: qlinear must be folded first (the fold-constants pass)");
  case IR_OP_COUNT:
    break;
  }
  q8_unreachable();
}

static bool emit_entry(Cg *cg, CgIsa isa, bool quantized, LLVMValueRef *entry) {
  IrModule *m = cg->m;
  char name[256];
  snprintf(name, sizeof name, "%s_run_%s%s", cg->prefix, quantized ? "quantized_" : "",
           cg_isa_info[isa].name);
  cg->quantized = quantized;
  LLVMTypeRef fty =
      LLVMFunctionType(cg->i32, (LLVMTypeRef[]){cg->ptr, cg->ptr, cg->ptr, cg->ptr}, 4, 0);
  cg->fn = LLVMAddFunction(cg->mod, name, fty);
  cg_set_isa_attrs(cg->fn, isa);
  cg->thr = LLVMGetParam(cg->fn, 0);
  cg->inputs = LLVMGetParam(cg->fn, 1);
  cg->outputs = LLVMGetParam(cg->fn, 2);
  cg->scratch_ptr = LLVMGetParam(cg->fn, 3);
  LLVMPositionBuilderAtEnd(cg->b, LLVMAppendBasicBlockInContext(cg->ctx, cg->fn, "entry"));
  for (int i = 0; i < m->ninputs; i++) {
    const IrValue *v = m->inputs[i];
    const Loc *l = &cg->loc[v->id];
    if (l->kind == LOC_SCRATCH) {
      LLVMValueRef idx = i64c(cg, i);
      LLVMValueRef src = LLVMBuildLoad2(
          cg->b, cg->ptr, LLVMBuildGEP2(cg->b, cg->ptr, cg->inputs, &idx, 1, ""), "");
      copy_rows(cg, addr(cg, v), l->stride, src, l->cols, l->rows, l->cols);
    }
  }
  for (int i = 0; i < m->nnodes; i++)
    if (!emit_node(cg, i, isa))
      return false;
  for (int i = 0; i < m->noutputs; i++) {
    const IrValue *v = m->outputs[i];
    const Loc *l = &cg->loc[v->id];
    if (l->kind == LOC_OUTPUT && !(quantized && v->has_qform))
      continue;
    LLVMValueRef idx = i64c(cg, i);
    LLVMValueRef dst = LLVMBuildLoad2(
        cg->b, cg->ptr, LLVMBuildGEP2(cg->b, cg->ptr, cg->outputs, &idx, 1, ""), "");
    if (quantized && v->has_qform) {
      /* Dense rows of the quantized form (as ir_interp_quantized). */
      Loc dense = *l;
      dense.stride = l->cols;
      call_quantize(cg, addr(cg, v), dst, &dense, &v->qform);
      continue;
    }
    size_t es = ir_dtype_size(v->type.dtype);
    copy_rows(cg, dst, l->cols * (int64_t)es, addr(cg, v), l->stride * (int64_t)es, l->rows,
              l->cols * (int64_t)es);
  }
  LLVMBuildRet(cg->b, i32c(cg, 0));
  *entry = cg->fn;
  return true;
}

/* ---- the descriptor ---- */

static int32_t abi_dtype(IrDType t) {
  switch (t) {
  case IR_F32:
    return Q8_DTYPE_F32;
  case IR_I8:
    return Q8_DTYPE_I8;
  case IR_U8:
    return Q8_DTYPE_U8;
  case IR_I32:
    return Q8_DTYPE_I32;
  default:
    return 0;
  }
}

/* q8_tensor_desc[] for a list of values, as a private constant. */
static LLVMValueRef tensor_descs(Cg *cg, IrValue **vals, int n, const char *what) {
  LLVMTypeRef dims_ty = LLVMArrayType2(cg->i64, Q8_MODEL_MAX_RANK);
  LLVMTypeRef ty = LLVMStructTypeInContext(
      cg->ctx, (LLVMTypeRef[]){cg->ptr, cg->i32, cg->i32, dims_ty, cg->i32, cg->f32, cg->i32}, 7,
      0);
  LLVMValueRef *elems = calloc((size_t)n + 1, sizeof *elems);
  for (int i = 0; i < n; i++) {
    LLVMValueRef dims[Q8_MODEL_MAX_RANK];
    for (int d = 0; d < Q8_MODEL_MAX_RANK; d++)
      dims[d] = i64c(cg, d < vals[i]->type.rank ? vals[i]->type.dims[d] : 0);
    const IrValue *v = vals[i];
    LLVMValueRef f[7] = {const_string(cg, v->name), i32c(cg, abi_dtype(v->type.dtype)),
                         i32c(cg, v->type.rank), LLVMConstArray2(cg->i64, dims, Q8_MODEL_MAX_RANK),
                         i32c(cg, abi_dtype(ir_boundary_dtype(v, true))),
                         LLVMConstReal(cg->f32, v->has_qform ? v->qform.scale : 0.0),
                         i32c(cg, v->has_qform ? v->qform.zero_point : 0)};
    elems[i] = LLVMConstStructInContext(cg->ctx, f, 7, 0);
  }
  LLVMValueRef arr = LLVMConstArray2(ty, elems, (uint64_t)n);
  free(elems);
  char name[160];
  snprintf(name, sizeof name, "%s.%s", cg->prefix, what);
  LLVMValueRef g = LLVMAddGlobal(cg->mod, LLVMTypeOf(arr), name);
  LLVMSetInitializer(g, arr);
  LLVMSetGlobalConstant(g, 1);
  LLVMSetLinkage(g, LLVMPrivateLinkage);
  return g;
}

static void emit_descriptor(Cg *cg, LLVMValueRef (*entries)[2]) {
  IrModule *m = cg->m;
  const CgOptions *o = cg->o;
  LLVMTypeRef vty = LLVMStructTypeInContext(
      cg->ctx, (LLVMTypeRef[]){cg->ptr, cg->i64, cg->ptr, cg->ptr}, 4, 0);
  LLVMValueRef vars[CG_ISA_COUNT];
  for (int i = 0; i < o->nisas; i++) {
    const CgIsaInfo *info = &cg_isa_info[o->isas[i]];
    LLVMValueRef f[4] = {const_string(cg, info->name), i64c(cg, (int64_t)info->bits),
                         entries[i][0], entries[i][1]};
    vars[i] = LLVMConstStructInContext(cg->ctx, f, 4, 0);
  }
  LLVMValueRef varr = LLVMConstArray2(vty, vars, (uint64_t)o->nisas);
  LLVMValueRef vglob = LLVMAddGlobal(cg->mod, LLVMTypeOf(varr), "q8_model.variants");
  LLVMSetInitializer(vglob, varr);
  LLVMSetGlobalConstant(vglob, 1);
  LLVMSetLinkage(vglob, LLVMPrivateLinkage);

  LLVMValueRef f[] = {
      i32c(cg, Q8_MODEL_MAGIC),
      i32c(cg, Q8_MODEL_ABI_VERSION),
      const_string(cg, m->name),
      const_string(cg, "q8c " Q8_VERSION),
      i32c(cg, m->ninputs),
      i32c(cg, m->noutputs),
      tensor_descs(cg, m->inputs, m->ninputs, "inputs"),
      tensor_descs(cg, m->outputs, m->noutputs, "outputs"),
      i64c(cg, cg->scratch),
      i32c(cg, o->nisas),
      vglob,
  };
  LLVMValueRef desc = LLVMConstStructInContext(cg->ctx, f, sizeof f / sizeof f[0], 0);
  LLVMValueRef g = LLVMAddGlobal(cg->mod, LLVMTypeOf(desc), "q8_model");
  LLVMSetInitializer(g, desc);
  LLVMSetGlobalConstant(g, 1);
  LLVMSetAlignment(g, 8);
}

/* ---- the module ---- */

LLVMModuleRef cg_build_module(IrModule *m, LLVMContextRef ctx, const CgOptions *o) {
  ir_bind_batch(m, o->batch > 0 ? o->batch : 1);
  if (!ir_verify(m))
    return NULL;
  Cg cg = {.m = m, .o = o, .ctx = ctx};
  c_ident(m->name, cg.prefix, sizeof cg.prefix);
  cg.mod = LLVMModuleCreateWithNameInContext(m->name, ctx);
  cg.b = LLVMCreateBuilderInContext(ctx);
  cg.i8 = LLVMInt8TypeInContext(ctx);
  cg.i32 = LLVMInt32TypeInContext(ctx);
  cg.i64 = LLVMInt64TypeInContext(ctx);
  cg.f32 = LLVMFloatTypeInContext(ctx);
  cg.f64 = LLVMDoubleTypeInContext(ctx);
  cg.ptr = LLVMPointerTypeInContext(ctx, 0);
  cg.vd = LLVMVoidTypeInContext(ctx);
  bool ok = plan_memory(&cg);
  cg.kernel = ir_alloc(m->arena, (size_t)(m->nnodes + 1) * sizeof *cg.kernel);
  cg.kernel_tasks = ir_alloc(m->arena, (size_t)(m->nnodes + 1) * sizeof *cg.kernel_tasks);
  cg.quantizer = ir_alloc(m->arena, (size_t)(m->nnodes + 1) * sizeof *cg.quantizer);
  LLVMValueRef entries[CG_ISA_COUNT][2];
  for (int i = 0; ok && i < o->nisas; i++) {
    memset(cg.kernel, 0, (size_t)(m->nnodes + 1) * sizeof *cg.kernel);
    memset(cg.quantizer, 0, (size_t)(m->nnodes + 1) * sizeof *cg.quantizer);
    ok = emit_entry(&cg, o->isas[i], false, &entries[i][0]) &&
         emit_entry(&cg, o->isas[i], true, &entries[i][1]);
  }
  if (ok)
    emit_descriptor(&cg, entries);
  LLVMDisposeBuilder(cg.b);
  if (!ok) {
    LLVMDisposeModule(cg.mod);
    return NULL;
  }
  char *msg = NULL;
  if (LLVMVerifyModule(cg.mod, LLVMReturnStatusAction, &msg)) {
    ir_error(&m->diag, (IrLoc){0}, "internal error: invalid LLVM module: %s", msg);
    LLVMDisposeMessage(msg);
    LLVMDisposeModule(cg.mod);
    return NULL;
  }
  LLVMDisposeMessage(msg);
  return cg.mod;
}
