/* lower.c: the entry functions of a model, one pair per variant:
 *
 *   int NAME_run_ISA(const q8_threads *, const void *const *inputs,
 *                    void *const *outputs, void *scratch)
 *   int NAME_run_quantized_ISA(...the same...)
 *
 * that run the nodes in order: qgemm through a generated kernel
 * (cg_emit_qgemm; f32 inputs quantized first by the variant's quantize
 * loop), split into tasks that the caller's threads may share; every other
 * op through the reference functions of ir/refops.h (linked from
 * libq8support.a, called through ir/refops.def's signatures, refcall.c),
 * which compute exactly what the interpreter computes.
 *
 * The quantized entry takes and gives the quantized form of each input and
 * output that has one (ir/qform.c): such an input's layers read its bytes
 * instead of quantizing the f32 tensor, and such an output is quantized on
 * exit (q8_ref_quantize). Both entries call the same kernels. Values live
 * where layout.c put them. */
#include <stdio.h>
#include <string.h>

#include "module.h"

static LLVMValueRef const_global(Cg *cg, const IrValue *c) {
  Loc *l = &cg->loc[c->id];
  if (!l->global) {
    char name[256];
    snprintf(name, sizeof name, "%s.const.%s", cg->prefix, c->name);
    int64_t n;
    ir_type_numel(&c->type, 1, &n);
    l->global = cg_const_bytes(cg, name, c->data, (size_t)n * ir_dtype_size(c->type.dtype));
  }
  return l->global;
}

/* The run-time address of value `v` inside the entry being built. */
static LLVMValueRef addr(Cg *cg, const IrValue *v) {
  Loc *l = &cg->loc[v->id];
  LLVMValueRef idx;
  switch (l->kind) {
  case LOC_INPUT:
    idx = cg_i64c(cg, l->index);
    return LLVMBuildLoad2(cg->b, cg->ptr, LLVMBuildGEP2(cg->b, cg->ptr, cg->inputs, &idx, 1, ""),
                          v->name);
  case LOC_OUTPUT:
    if (cg->quantized && l->q_offset >= 0) {
      /* The quantized entry quantizes this f32 output on exit. */
      idx = cg_i64c(cg, l->q_offset);
      return LLVMBuildGEP2(cg->b, cg->i8, cg->scratch_ptr, &idx, 1, v->name);
    }
    idx = cg_i64c(cg, l->index);
    return LLVMBuildLoad2(cg->b, cg->ptr, LLVMBuildGEP2(cg->b, cg->ptr, cg->outputs, &idx, 1, ""),
                          v->name);
  case LOC_SCRATCH:
    idx = cg_i64c(cg, l->offset);
    return LLVMBuildGEP2(cg->b, cg->i8, cg->scratch_ptr, &idx, 1, v->name);
  case LOC_CONST:
    return const_global(cg, v);
  case LOC_NONE:
    break;
  }
  q8_die("value %s has no location", v->name);
}

static LLVMValueRef scratch_at(Cg *cg, int64_t offset) {
  LLVMValueRef idx = cg_i64c(cg, offset);
  return LLVMBuildGEP2(cg->b, cg->i8, cg->scratch_ptr, &idx, 1, "");
}

/* q8_ref_quantize of dense f32 x [rows, cols] into y laid out as `yl` (its
 * rows yl->stride bytes apart) with parameters q. */
static void call_quantize(Cg *cg, LLVMValueRef x, LLVMValueRef y, const Loc *yl,
                          const IrQParams *q) {
  int32_t qmin, qmax;
  ir_qbounds(q->dtype, &qmin, &qmax);
  cg_call_ref(cg->mod, cg->b, q8_ref_quantize, x, y, cg_i64c(cg, yl->stride),
              cg_i64c(cg, yl->rows), cg_i64c(cg, yl->cols), LLVMConstReal(cg->f32, q->scale),
              cg_i32c(cg, q->zero_point), cg_i32c(cg, qmin), cg_i32c(cg, qmax),
              cg_i32c(cg, q->dtype == IR_I8));
}

/* Copy quantized inputs into padded rows, and outputs that live in scratch
 * into the caller's buffers. */
static void copy_rows(Cg *cg, LLVMValueRef dst, int64_t dst_stride, LLVMValueRef src,
                      int64_t src_stride, int64_t rows, int64_t row_bytes) {
  if (dst_stride == src_stride) {
    LLVMBuildMemCpy(cg->b, dst, 1, src, 1, cg_i64c(cg, rows * row_bytes));
    return;
  }
  for (int64_t r = 0; r < rows; r++) {
    LLVMValueRef di = cg_i64c(cg, r * dst_stride), si = cg_i64c(cg, r * src_stride);
    LLVMBuildMemCpy(cg->b, LLVMBuildGEP2(cg->b, cg->i8, dst, &di, 1, ""), 1,
                    LLVMBuildGEP2(cg->b, cg->i8, src, &si, 1, ""), 1, cg_i64c(cg, row_bytes));
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
    LLVMBuildCall2(cg->b, pty, pf, (LLVMValueRef[]){cg->thr, kernel, args, cg_i64c(cg, ntasks)}, 4,
                   "");
    LLVMBuildBr(cg->b, done_bb);
  } else {
    LLVMBuildBr(cg->b, loop_bb);
  }
  LLVMPositionBuilderAtEnd(cg->b, loop_bb);
  LLVMValueRef t = LLVMBuildPhi(cg->b, cg->i64, "t");
  LLVMBuildCall2(cg->b, kty, kernel, (LLVMValueRef[]){args, t}, 2, "");
  LLVMValueRef next = LLVMBuildAdd(cg->b, t, cg_i64c(cg, 1), "");
  LLVMValueRef zero = cg_i64c(cg, 0);
  LLVMAddIncoming(t, &zero, &entry_bb, 1);
  LLVMAddIncoming(t, &next, &loop_bb, 1);
  LLVMBuildCondBr(cg->b, LLVMBuildICmp(cg->b, LLVMIntSLT, next, cg_i64c(cg, ntasks), ""), loop_bb,
                  done_bb);
  LLVMPositionBuilderAtEnd(cg->b, done_bb);
}

/* The range of values a quantized input can hold, for the AVX2 check: what
 * the producing qgemm clamps to when known, else the whole type. */
static void input_bounds(const IrValue *x, IrDType t, int32_t *lo, int32_t *hi) {
  ir_qbounds(t, lo, hi);
  const IrNode *p = x->kind == IR_VAL_NODE ? x->def : NULL;
  if (p && p->op == IR_OP_QGEMM && ir_attr_int(p, IR_ATTR_RELU, 0) != 0) {
    int32_t zp = (int32_t)ir_attr_int(p, IR_ATTR_ZERO_POINT, 0);
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
  g.relu = ir_attr_int(n, IR_ATTR_RELU, 0) != 0;
  LLVMValueRef xptr = addr(cg, x);
  if (x->type.dtype == IR_F32 && cg->quantized && x->kind == IR_VAL_INPUT && x->has_qform) {
    /* The quantized entry gets this input's bytes (ir_check_qforms: as this
     * layer would quantize them); rows not a multiple of 4 bytes are copied
     * into padded ones, the layout the kernel reads. */
    g.x_dtype = x->qform.dtype;
    g.x_stride = cg_round_up(g.k, 4);
    if (g.x_stride != g.k) {
      LLVMValueRef xq = scratch_at(cg, cg->xq_offset[idx]);
      copy_rows(cg, xq, g.x_stride, xptr, g.k, g.m, g.k);
      xptr = xq;
    }
    ir_qbounds(g.x_dtype, &g.x_min, &g.x_max);
  } else if (x->type.dtype == IR_F32) {
    /* Quantize the f32 input into padded rows first. */
    IrQParams xq_params;
    if (!ir_get_qparams(n, IR_QPARAMS_IN, &xq_params))
      return ir_error(&m->diag, n->loc, "codegen: qgemm on f32 needs x_scale, x_zero_point and x_dtype");
    g.x_dtype = xq_params.dtype;
    g.x_stride = cg_round_up(g.k, 4);
    float scale = xq_params.scale;
    int32_t zp = xq_params.zero_point;
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
  if (ir_dtype_is_quantized(y_dtype)) {
    int32_t qmin, qmax;
    ir_qbounds(y_dtype, &qmin, &qmax);
    g.y_zero_point = (int32_t)ir_attr_int(n, IR_ATTR_ZERO_POINT, 0);
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

/* qmatmul through q8_ref_qmatmul, the interpreter's own arithmetic: each f32
 * operand is quantized with its parameters into dense rows in scratch first
 * (q8_ref_quantize), an integer one is read where it lives. */
static bool emit_qmatmul(Cg *cg, int idx) {
  IrModule *m = cg->m;
  IrNode *n = m->nodes[idx];
  const IrValue *x = n->opnds[0], *b = n->opnds[1];
  const IrType *xt = &x->type, *bt = &b->type;
  int64_t mm = xt->dims[xt->rank - 2], k = xt->dims[xt->rank - 1], nn = bt->dims[bt->rank - 1];
  const Loc *yl = &cg->loc[n->result->id];
  int64_t batch = yl->rows / (mm ? mm : 1);
  IrQParams px, pb, py = {0};
  if (!ir_get_qparams(n, IR_QPARAMS_IN, &px) || !ir_get_qparams(n, IR_QPARAMS_B, &pb))
    return ir_error(&m->diag, n->loc, "codegen: qmatmul needs the x_* and b_* parameters");
  IrDType yt = n->result->type.dtype;
  int32_t y_min = 0, y_max = 0;
  if (yt != IR_F32) {
    py.scale = (float)ir_attr_float(n, IR_ATTR_SCALE, 1);
    py.zero_point = (int32_t)ir_attr_int(n, IR_ATTR_ZERO_POINT, 0);
    ir_qbounds(yt, &y_min, &y_max);
  }
  LLVMValueRef y = addr(cg, n->result), xp = addr(cg, x), bp = addr(cg, b);
  int64_t x_stride = cg->loc[x->id].stride, b_stride = cg->loc[b->id].stride;
  int64_t at = cg->xq_offset[idx];
  if (xt->dtype == IR_F32) {
    Loc dense = {.rows = batch * mm, .cols = k, .stride = k};
    LLVMValueRef q = scratch_at(cg, at);
    call_quantize(cg, xp, q, &dense, &px);
    xp = q;
    x_stride = k;
    at += cg_round_up(batch * mm * k, 64);
  }
  if (bt->dtype == IR_F32) {
    Loc dense = {.rows = batch * k, .cols = nn, .stride = nn};
    LLVMValueRef q = scratch_at(cg, at);
    call_quantize(cg, bp, q, &dense, &pb);
    bp = q;
    b_stride = nn;
  }
  int y_code = yt == IR_F32 ? Q8_DTYPE_F32 : yt == IR_I8 ? Q8_DTYPE_I8 : Q8_DTYPE_U8;
  cg_call_ref(cg->mod, cg->b, q8_ref_qmatmul, xp, cg_i64c(cg, x_stride),
              cg_i32c(cg, px.dtype == IR_I8), cg_i32c(cg, px.zero_point), bp,
              cg_i64c(cg, b_stride), cg_i32c(cg, pb.dtype == IR_I8), cg_i32c(cg, pb.zero_point), y,
              cg_i64c(cg, yl->stride), cg_i32c(cg, y_code),
              LLVMConstReal(cg->f32, ir_qmatmul_mult(px.scale, pb.scale, py.scale)),
              cg_i32c(cg, py.zero_point), cg_i32c(cg, y_min), cg_i32c(cg, y_max),
              cg_i64c(cg, batch), cg_i64c(cg, mm), cg_i64c(cg, k), cg_i64c(cg, nn));
  return true;
}

/* A call of reference op `op` (ir/refops.def) at the builder's position. */
#define CALL_REF(cg, op, ...) cg_call_ref((cg)->mod, (cg)->b, op, __VA_ARGS__)

enum { MAX_REF_OPNDS = 4 }; /* operands of the ops lowered to reference calls */

static bool emit_node(Cg *cg, int idx, CgIsa isa) {
  IrModule *m = cg->m;
  IrNode *n = m->nodes[idx];
  const Loc *r = &cg->loc[n->result->id];
  int64_t numel = r->rows * r->cols;
  if (n->op == IR_OP_QGEMM)
    return emit_qgemm(cg, idx, isa);
  if (n->op == IR_OP_QMATMUL)
    return emit_qmatmul(cg, idx);
  if (n->op == IR_OP_QLINEAR)
    return ir_error(&m->diag, n->loc,
                    "codegen: qlinear must be folded first (the fold-constants pass)");
  if (n->op == IR_OP_RESHAPE) {
    if (r->kind == LOC_OUTPUT || r->kind == LOC_SCRATCH) {
      /* A reshape that is an output: copy into the caller's buffer. */
      LLVMValueRef dst = addr(cg, n->result), src = addr(cg, n->opnds[0]);
      LLVMBuildMemCpy(cg->b, dst, 4, src, 4, cg_i64c(cg, numel * 4));
    }
    return true;
  }
  /* The result's address, then the operands' in order (the loads of input
   * and output pointers are emitted in this order). */
  if (n->nopnds > MAX_REF_OPNDS)
    q8_die("%s has %d operands", n->result->name, n->nopnds);
  LLVMValueRef y = addr(cg, n->result), in[MAX_REF_OPNDS];
  for (int i = 0; i < n->nopnds; i++)
    in[i] = addr(cg, n->opnds[i]);
  switch (n->op) {
  case IR_OP_LINEAR: {
    const Loc *xl = &cg->loc[n->opnds[0]->id];
    CALL_REF(cg, q8_ref_linear, in[0], in[1], n->nopnds == 3 ? in[2] : LLVMConstNull(cg->ptr), y,
             cg_i64c(cg, xl->rows), cg_i64c(cg, xl->cols), cg_i64c(cg, r->cols));
    return true;
  }
  case IR_OP_MATMUL: {
    const IrType *at = &n->opnds[0]->type, *bt = &n->opnds[1]->type;
    int64_t mm = at->dims[at->rank - 2], k = at->dims[at->rank - 1], nn = bt->dims[bt->rank - 1];
    CALL_REF(cg, q8_ref_matmul, in[0], in[1], y, cg_i64c(cg, numel / (mm * nn)), cg_i64c(cg, mm),
             cg_i64c(cg, k), cg_i64c(cg, nn), cg_i32c(cg, bt->rank > 2));
    return true;
  }
  case IR_OP_ADD:
  case IR_OP_MUL: {
    int64_t na, nb;
    ir_type_numel(&n->opnds[0]->type, 1, &na);
    ir_type_numel(&n->opnds[1]->type, 1, &nb);
    if (n->op == IR_OP_ADD)
      CALL_REF(cg, q8_ref_add, in[0], cg_i64c(cg, na), in[1], cg_i64c(cg, nb), y);
    else
      CALL_REF(cg, q8_ref_mul, in[0], cg_i64c(cg, na), in[1], cg_i64c(cg, nb), y);
    return true;
  }
  case IR_OP_RELU:
    CALL_REF(cg, q8_ref_relu, in[0], y, cg_i64c(cg, numel));
    return true;
  case IR_OP_GELU:
    CALL_REF(cg, q8_ref_gelu, in[0], y, cg_i64c(cg, numel));
    return true;
  case IR_OP_SOFTMAX:
    CALL_REF(cg, q8_ref_softmax, in[0], y, cg_i64c(cg, r->rows), cg_i64c(cg, r->cols));
    return true;
  case IR_OP_LAYERNORM:
    CALL_REF(cg, q8_ref_layernorm, in[0], in[1], in[2],
             LLVMConstReal(cg->f64, ir_attr_float(n, IR_ATTR_EPS, 1e-5)), y, cg_i64c(cg, r->rows),
             cg_i64c(cg, r->cols));
    return true;
  case IR_OP_TRANSPOSE: {
    const IrType *xt = &n->opnds[0]->type;
    int64_t perm[IR_MAX_RANK];
    bool given = ir_attr_ints(n, IR_ATTR_PERM, perm, IR_MAX_RANK) == xt->rank;
    for (int i = 0; !given && i < xt->rank; i++)
      perm[i] = i;
    if (!given) {
      perm[xt->rank - 2] = xt->rank - 1;
      perm[xt->rank - 1] = xt->rank - 2;
    }
    char name[256];
    snprintf(name, sizeof name, "%s.dims.%s", cg->prefix, n->result->name);
    LLVMValueRef dims = cg_const_bytes(cg, name, xt->dims, (size_t)xt->rank * sizeof(int64_t));
    LLVMValueRef permv = cg_const_bytes(cg, name, perm, (size_t)xt->rank * sizeof(int64_t));
    CALL_REF(cg, q8_ref_transpose, in[0], y, cg_i32c(cg, xt->rank), dims, permv);
    return true;
  }
  case IR_OP_QUANTIZE: {
    IrQParams q = {(float)ir_attr_float(n, IR_ATTR_SCALE, 1),
                   (int32_t)ir_attr_int(n, IR_ATTR_ZERO_POINT, 0), n->result->type.dtype};
    call_quantize(cg, in[0], y, r, &q);
    return true;
  }
  case IR_OP_DEQUANTIZE: {
    const Loc *xl = &cg->loc[n->opnds[0]->id];
    CALL_REF(cg, q8_ref_dequantize, in[0], cg_i64c(cg, xl->stride), y, cg_i64c(cg, r->rows),
             cg_i64c(cg, r->cols), LLVMConstReal(cg->f32, (float)ir_attr_float(n, IR_ATTR_SCALE, 1)),
             cg_i32c(cg, (int32_t)ir_attr_int(n, IR_ATTR_ZERO_POINT, 0)),
             cg_i32c(cg, n->opnds[0]->type.dtype == IR_I8));
    return true;
  }
  case IR_OP_QLINEAR_DYN: {
    const Loc *xl = &cg->loc[n->opnds[0]->id];
    const IrValue *ws = n->opnds[2];
    CALL_REF(cg, q8_ref_qlinear_dyn, in[0], in[1], in[2], cg_i64c(cg, ws->type.dims[0]),
             n->nopnds == 4 ? in[3] : LLVMConstNull(cg->ptr), y, cg_i64c(cg, xl->rows),
             cg_i64c(cg, xl->cols), cg_i64c(cg, r->cols));
    return true;
  }
  case IR_OP_QMATMUL_DYN: {
    const IrType *xt = &n->opnds[0]->type, *bt = &n->opnds[1]->type;
    int64_t mm = xt->dims[xt->rank - 2], k = xt->dims[xt->rank - 1];
    CALL_REF(cg, q8_ref_qmatmul_dyn, in[0], in[1], y, scratch_at(cg, cg->xq_offset[idx]),
             cg_i64c(cg, r->rows / (mm ? mm : 1)), cg_i64c(cg, mm), cg_i64c(cg, k),
             cg_i64c(cg, bt->dims[bt->rank - 1]));
    return true;
  }
  case IR_OP_QGEMM:
  case IR_OP_QLINEAR:
  case IR_OP_QMATMUL:
  case IR_OP_RESHAPE:
  case IR_OP_COUNT:
    break;
  }
  q8_unreachable();
}

bool cg_emit_entry(Cg *cg, CgIsa isa, bool quantized, LLVMValueRef *entry) {
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
      LLVMValueRef idx = cg_i64c(cg, i);
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
    LLVMValueRef idx = cg_i64c(cg, i);
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
  LLVMBuildRet(cg->b, cg_i32c(cg, 0));
  *entry = cg->fn;
  return true;
}

