/* lower.c: the entry functions of a model, NAME_run_ISA and
 * NAME_run_quantized_ISA for each variant, which run the nodes in order:
 * qgemm through a generated kernel split into tasks the caller's threads may
 * share, the float ops as vector code (floatops.c) for the broadcast patterns
 * it has, every other op through the reference functions of ir/refops.h, so
 * they compute exactly what the interpreter computes; the quantized entry
 * takes and gives the quantized form of each input and output that has one
 * (ir/qform.c). Their signatures and what each entry does are in
 * docs/kernels.md, "The entry functions". */
#include <stdio.h>
#include <string.h>

#include "module.h"

static LLVMValueRef const_global(Cg *cg, const IrValue *c) {
  /* In-process code (jit.c): the data where it is; a view's f32 form is
   * made now and kept while the code lives (f32gemm.c lets go only of a
   * weight nothing else reads). */
  if (cg->o->held)
    return cg_const_addr(cg, ir_const_data(cg->m, c));
  Loc *l = &cg->loc[c->id];
  if (!l->global) {
    char name[256];
    snprintf(name, sizeof name, "%s.const.%s", cg->prefix, c->name);
    int64_t n;
    ir_type_numel(&c->type, 1, &n);
    l->global = cg_const_bytes(cg, name, ir_const_data(cg->m, c),
                               (size_t)n * ir_dtype_size(c->type.dtype));
    ir_const_release(cg->m, c); /* LLVM holds its copy */
  }
  return l->global;
}

/* Scratch slot `offset` of a value: in the batched region (per batch row,
 * after the fixed region) when it has a run-time batch. */
static LLVMValueRef slot_at(Cg *cg, const Loc *l, int64_t offset, const char *name) {
  LLVMValueRef idx = cg_i64c(cg, offset);
  if (l->batched)
    idx = LLVMBuildAdd(cg->b, LLVMBuildMul(cg->b, idx, cg->nb, ""), cg_i64c(cg, cg->scratch), "");
  return LLVMBuildGEP2(cg->b, cg->i8, cg->scratch_ptr, &idx, 1, name);
}

/* The run-time address of value `v` inside the entry being built (of the
 * current batch row inside a loop over them, rtshape.c). */
static LLVMValueRef addr_all(Cg *cg, const IrValue *v);
static LLVMValueRef addr(Cg *cg, const IrValue *v) {
  return cg_batch_row_at(cg, v, addr_all(cg, v));
}

/* The same for the whole value. */
static LLVMValueRef addr_all(Cg *cg, const IrValue *v) {
  Loc *l = &cg->loc[v->id];
  LLVMValueRef idx;
  switch (l->kind) {
  case LOC_INPUT:
    idx = cg_i64c(cg, l->index);
    return LLVMBuildLoad2(cg->b, cg->ptr, LLVMBuildGEP2(cg->b, cg->ptr, cg->inputs, &idx, 1, ""),
                          v->name);
  case LOC_OUTPUT:
    if (cg->quantized && l->q_offset >= 0) /* the quantized entry quantizes it on exit */
      return slot_at(cg, l, l->q_offset, v->name);
    idx = cg_i64c(cg, l->index);
    return LLVMBuildLoad2(cg->b, cg->ptr, LLVMBuildGEP2(cg->b, cg->ptr, cg->outputs, &idx, 1, ""),
                          v->name);
  case LOC_SCRATCH:
    return slot_at(cg, l, l->offset, v->name);
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
static void run_tasks_n(Cg *cg, LLVMValueRef kernel, LLVMValueRef args, LLVMValueRef ntasks,
                        bool parallel);
static void run_tasks(Cg *cg, LLVMValueRef kernel, LLVMValueRef args, int64_t ntasks,
                      bool parallel) {
  run_tasks_n(cg, kernel, args, cg_i64c(cg, ntasks), parallel && ntasks > 1);
}

/* The same for a task count known at run time (a qgemm's with a run-time
 * M): through the threads when parallel, there are any and ntasks > 1. */
static void run_tasks_n(Cg *cg, LLVMValueRef kernel, LLVMValueRef args, LLVMValueRef ntasks,
                        bool parallel) {
  LLVMTypeRef kty = LLVMFunctionType(cg->vd, (LLVMTypeRef[]){cg->ptr, cg->i64}, 2, 0);
  LLVMBasicBlockRef loop_bb = LLVMAppendBasicBlockInContext(cg->ctx, cg->fn, "tasks");
  LLVMBasicBlockRef done_bb = LLVMAppendBasicBlockInContext(cg->ctx, cg->fn, "tasks.done");
  LLVMBasicBlockRef entry_bb = LLVMGetInsertBlock(cg->b);
  if (parallel) {
    LLVMBasicBlockRef par_bb = LLVMAppendBasicBlockInContext(cg->ctx, cg->fn, "parallel");
    LLVMValueRef no_threads = LLVMBuildICmp(cg->b, LLVMIntEQ, cg->thr, LLVMConstNull(cg->ptr), "");
    if (!LLVMIsConstant(ntasks))
      no_threads = LLVMBuildOr(
          cg->b, no_threads, LLVMBuildICmp(cg->b, LLVMIntSLT, ntasks, cg_i64c(cg, 2), ""), "");
    LLVMBuildCondBr(cg->b, no_threads, loop_bb, par_bb);
    LLVMPositionBuilderAtEnd(cg->b, par_bb);
    /* q8_threads.parallel_for is the first field. */
    LLVMValueRef pf = LLVMBuildLoad2(cg->b, cg->ptr, cg->thr, "parallel_for");
    LLVMTypeRef pty =
        LLVMFunctionType(cg->vd, (LLVMTypeRef[]){cg->ptr, cg->ptr, cg->ptr, cg->i64}, 4, 0);
    LLVMBuildCall2(cg->b, pty, pf, (LLVMValueRef[]){cg->thr, kernel, args, ntasks}, 4, "");
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
  LLVMBuildCondBr(cg->b, LLVMBuildICmp(cg->b, LLVMIntSLT, next, ntasks, ""), loop_bb, done_bb);
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

/* A qgemm's slot for its quantized input (in the batched region with a
 * run-time M). */
static LLVMValueRef xq_at(Cg *cg, int idx) { return cg_node_slot(cg, idx, 0); }

/* p + bytes * the current batch row. */
static LLVMValueRef batch_bytes_at(Cg *cg, LLVMValueRef p, int64_t bytes) {
  LLVMValueRef off = LLVMBuildMul(cg->b, cg->batch_row, cg_i64c(cg, bytes), "");
  return LLVMBuildGEP2(cg->b, cg->i8, p, &off, 1, "");
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
  /* A run-time M (rtshape.c): the kernel runs once over all batch rows, and
   * what comes before it runs per batch row over the batch's slots. */
  g.runtime_m = cg_gemm_runtime_m(cg, n);
  CgBatchLoop loop;
  g.pack_nr = cg_shared_pack_nr(cg->o); /* one copy of the weights for all variants */
  g.wfile = cg->wfile;
  LLVMValueRef xptr = addr(cg, x);
  if (x->type.dtype == IR_F32 && cg->quantized && x->kind == IR_VAL_INPUT && x->has_qform) {
    /* The quantized entry gets this input's bytes (ir_check_qforms: as this
     * layer would quantize them); rows not a multiple of 4 bytes are copied
     * into padded ones, the layout the kernel reads. */
    g.x_dtype = x->qform.dtype;
    g.x_stride = cg_round_up(g.k, 4);
    if (g.x_stride != g.k) {
      LLVMValueRef xq = xq_at(cg, idx);
      if (g.runtime_m) {
        cg_batch_loop_open(cg, &loop);
        copy_rows(cg, batch_bytes_at(cg, xq, g.m * g.x_stride), g.x_stride,
                  batch_bytes_at(cg, xptr, g.m * g.k), g.k, g.m, g.k);
        cg_batch_loop_close(cg, &loop);
      } else {
        copy_rows(cg, xq, g.x_stride, xptr, g.k, g.m, g.k);
      }
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
    LLVMValueRef xq = xq_at(cg, idx);
    LLVMTypeRef qty = LLVMFunctionType(cg->vd, (LLVMTypeRef[]){cg->ptr, cg->ptr}, 2, 0);
    if (g.runtime_m) {
      cg_batch_loop_open(cg, &loop);
      LLVMBuildCall2(cg->b, qty, qfn,
                     (LLVMValueRef[]){batch_bytes_at(cg, xptr, g.m * g.k * 4),
                                      batch_bytes_at(cg, xq, g.m * g.x_stride)},
                     2, "");
      cg_batch_loop_close(cg, &loop);
    } else {
      LLVMBuildCall2(cg->b, qty, qfn, (LLVMValueRef[]){xptr, xq}, 2, "");
    }
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
  if (g.runtime_m) {
    /* CgGemmArgs {x, y, .m = rows * batch}. */
    LLVMTypeRef p = cg->ptr;
    LLVMTypeRef args_ty =
        LLVMStructTypeInContext(cg->ctx, (LLVMTypeRef[]){p, p, p, p, p, p, cg->i64}, 7, 0);
    LLVMValueRef args = LLVMBuildAlloca(cg->b, args_ty, "gemm.args");
    LLVMBuildStore(cg->b, xptr, LLVMBuildStructGEP2(cg->b, args_ty, args, 0, ""));
    LLVMBuildStore(cg->b, addr(cg, n->result), LLVMBuildStructGEP2(cg->b, args_ty, args, 1, ""));
    cg_run_gemm_m(cg, kernel, args, args_ty, 6, LLVMBuildMul(cg->b, cg_i64c(cg, g.m), cg->nb, "m"));
    return true;
  }
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

/* A private constant array of int64 (dims, strides) for a reference call;
 * a null pointer when empty (the callee reads none of it). */
static LLVMValueRef const_i64s(Cg *cg, const IrNode *n, const char *what, const int64_t *v,
                               int count) {
  if (count == 0)
    return LLVMConstNull(cg->ptr);
  char name[256];
  snprintf(name, sizeof name, "%s.%s.%s", cg->prefix, what, n->result->name);
  return cg_const_bytes(cg, name, v, (size_t)count * sizeof(int64_t));
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

/* ---- shape ops of transformers (their arithmetic: ir/refops.c) ---- */

static int64_t dims_prod(const IrType *t, int from, int to) {
  int64_t p = 1;
  for (int i = from; i < to; i++)
    p *= t->dims[i];
  return p;
}

static int axis_of(const IrNode *n, int rank, int64_t dflt) {
  int64_t ax = ir_attr_int(n, IR_ATTR_AXIS, dflt);
  return (int)(ax < 0 ? ax + rank : ax);
}

static void emit_softmax(Cg *cg, const IrNode *n, LLVMValueRef x, LLVMValueRef y) {
  const IrType *t = &n->result->type;
  int axis = axis_of(n, t->rank, -1);
  int64_t causal_rows = ir_attr_int(n, IR_ATTR_CAUSAL, 0) ? t->dims[t->rank - 2] : 0;
  CALL_REF(cg, q8_ref_softmax_axis, x, y, cg_i64c(cg, dims_prod(t, 0, axis)),
           cg_i64c(cg, t->dims[axis]), cg_i64c(cg, dims_prod(t, axis + 1, t->rank)),
           cg_i64c(cg, causal_rows));
}

/* The status an entry returns when the ids of gather node `n` hold one
 * outside the table: Q8_RUN_ERR_INPUT_ID + i when they are model input i
 * (seen through slices), else Q8_RUN_ERR_ID. */
static int32_t gather_status(const Cg *cg, const IrNode *n) {
  const IrValue *ids = n->opnds[1];
  while (ids->kind == IR_VAL_NODE && ids->def->op == IR_OP_SLICE)
    ids = ids->def->opnds[0];
  for (int i = 0; ids->kind == IR_VAL_INPUT && i < cg->m->ninputs; i++)
    if (cg->m->inputs[i] == ids)
      return Q8_RUN_ERR_INPUT_ID + i;
  return Q8_RUN_ERR_ID;
}

/* q8_ref_gather, and a return of the error status from the entry when it
 * finds an id outside the table (nothing is read out of bounds). */
static void emit_gather(Cg *cg, const IrNode *n, LLVMValueRef table, LLVMValueRef ids,
                        LLVMValueRef y) {
  const IrType *tt = &n->opnds[0]->type, *it = &n->opnds[1]->type;
  int64_t count = dims_prod(it, 0, it->rank);
  /* cg_call_ref gives no value: the table's argument count is checked here. */
  LLVMValueRef args[] = {table, cg_i64c(cg, tt->dims[0]), cg_i64c(cg, tt->dims[1]), ids,
                         cg_i32c(cg, it->dtype == IR_I64), cg_i64c(cg, count), y};
  _Static_assert(sizeof args / sizeof args[0] == REF_NARGS_q8_ref_gather,
                 "q8_ref_gather: the argument count differs from ir/refops.def");
  LLVMValueRef bad = cg_call_ref_args(cg->mod, cg->b, REF_q8_ref_gather, args, 7);
  LLVMBasicBlockRef fail_bb = LLVMAppendBasicBlockInContext(cg->ctx, cg->fn, "gather.bad_id");
  LLVMBasicBlockRef ok_bb = LLVMAppendBasicBlockInContext(cg->ctx, cg->fn, "gather.ok");
  LLVMBuildCondBr(cg->b, LLVMBuildICmp(cg->b, LLVMIntNE, bad, cg_i32c(cg, 0), ""), fail_bb,
                  ok_bb);
  LLVMPositionBuilderAtEnd(cg->b, fail_bb);
  LLVMBuildRet(cg->b, cg_i32c(cg, gather_status(cg, n)));
  LLVMPositionBuilderAtEnd(cg->b, ok_bb);
}

/* Each operand's rows side by side in the result's (q8_ref_copy_rows). */
static void emit_concat(Cg *cg, const IrNode *n, const LLVMValueRef *in, LLVMValueRef y) {
  const IrType *t = &n->result->type;
  int axis = axis_of(n, t->rank, -1);
  int64_t es = (int64_t)ir_dtype_size(t->dtype), outer = dims_prod(t, 0, axis);
  int64_t inner = dims_prod(t, axis + 1, t->rank) * es, y_row = t->dims[axis] * inner, at = 0;
  for (int i = 0; i < n->nopnds; i++) {
    int64_t row = n->opnds[i]->type.dims[axis] * inner;
    LLVMValueRef off = cg_i64c(cg, at);
    CALL_REF(cg, q8_ref_copy_rows, in[i], cg_i64c(cg, row),
             LLVMBuildGEP2(cg->b, cg->i8, y, &off, 1, ""), cg_i64c(cg, y_row),
             cg_i64c(cg, outer), cg_i64c(cg, row));
    at += row;
  }
}

static void emit_slice(Cg *cg, const IrNode *n, LLVMValueRef x, LLVMValueRef y) {
  const IrType *xt = &n->opnds[0]->type;
  int axis = axis_of(n, xt->rank, 0);
  int64_t lo, hi, es = (int64_t)ir_dtype_size(xt->dtype);
  ir_slice_bounds(xt->dims[axis], ir_attr_int(n, IR_ATTR_START, 0),
                  ir_attr_int(n, IR_ATTR_END, INT64_MAX), &lo, &hi);
  int64_t inner = dims_prod(xt, axis + 1, xt->rank) * es;
  LLVMValueRef off = cg_i64c(cg, lo * inner);
  CALL_REF(cg, q8_ref_copy_rows, LLVMBuildGEP2(cg->b, cg->i8, x, &off, 1, ""),
           cg_i64c(cg, xt->dims[axis] * inner), y, cg_i64c(cg, (hi - lo) * inner),
           cg_i64c(cg, dims_prod(xt, 0, axis)), cg_i64c(cg, (hi - lo) * inner));
}

enum { MAX_REF_OPNDS = 8 }; /* operands of the ops lowered to reference calls */

static bool emit_node(Cg *cg, int idx, CgIsa isa) {
  IrModule *m = cg->m;
  IrNode *n = m->nodes[idx];
  const Loc *r = &cg->loc[n->result->id];
  int64_t numel = r->rows * r->cols;
  if (n->op == IR_OP_QGEMM)
    return emit_qgemm(cg, idx, isa);
  if (cg_attention_scratch(n) >= 0) /* qmatmul, qmatmul_dyn, qlinear_dyn */
    return cg_emit_attention(cg, idx, isa);
  if (n->op == IR_OP_QMATMUL)
    return emit_qmatmul(cg, idx);
  if (n->op == IR_OP_LINEAR_4BIT)
    return cg_emit_linear_4bit(cg, idx, isa);
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
  /* The float ops as vector code (floatops.c, f32gemm.c) where it has them. */
  if (cg_emit_f32gemm(cg, idx, isa, in, y) || cg_emit_floatop(cg, idx, isa, in, y))
    return true;
  switch (n->op) {
  case IR_OP_LINEAR: {
    const Loc *xl = &cg->loc[n->opnds[0]->id];
    CALL_REF(cg, q8_ref_linear, in[0], in[1], n->nopnds == 3 ? in[2] : LLVMConstNull(cg->ptr), y,
             cg_i64c(cg, xl->rows), cg_i64c(cg, xl->cols), cg_i64c(cg, r->cols));
    return true;
  }
  case IR_OP_MATMUL: {
    /* The batch dims broadcast: strides in elements per batch axis, 0 where
     * an operand repeats (all of B[K, N]'s). */
    const IrType *at = &n->opnds[0]->type, *bt = &n->opnds[1]->type, *yt = &n->result->type;
    int64_t mm = at->dims[at->rank - 2], k = at->dims[at->rank - 1], nn = bt->dims[bt->rank - 1];
    int brank = yt->rank - 2;
    int64_t as[IR_MAX_RANK], bs[IR_MAX_RANK];
    ir_broadcast_strides(at->dims, at->rank - 2, mm * k, brank, as);
    ir_broadcast_strides(bt->dims, bt->rank - 2, k * nn, brank, bs);
    CALL_REF(cg, q8_ref_matmul, in[0], const_i64s(cg, n, "astrides", as, brank), in[1],
             const_i64s(cg, n, "bstrides", bs, brank), y, cg_i32c(cg, brank),
             const_i64s(cg, n, "dims", yt->dims, brank), cg_i64c(cg, mm), cg_i64c(cg, k),
             cg_i64c(cg, nn));
    return true;
  }
  case IR_OP_ADD:
  case IR_OP_MUL:
  case IR_OP_SUB:
  case IR_OP_DIV: {
    /* Numpy broadcasting: strides over the result's axes, 0 where an
     * operand repeats. */
    const IrType *at = &n->opnds[0]->type, *bt = &n->opnds[1]->type, *yt = &n->result->type;
    int64_t as[IR_MAX_RANK], bs[IR_MAX_RANK];
    ir_broadcast_strides(at->dims, at->rank, 1, yt->rank, as);
    ir_broadcast_strides(bt->dims, bt->rank, 1, yt->rank, bs);
    LLVMValueRef asv = const_i64s(cg, n, "astrides", as, yt->rank),
                 bsv = const_i64s(cg, n, "bstrides", bs, yt->rank),
                 dims = const_i64s(cg, n, "dims", yt->dims, yt->rank),
                 rank = cg_i32c(cg, yt->rank);
    if (n->op == IR_OP_ADD)
      CALL_REF(cg, q8_ref_add, in[0], asv, in[1], bsv, y, rank, dims);
    else if (n->op == IR_OP_MUL)
      CALL_REF(cg, q8_ref_mul, in[0], asv, in[1], bsv, y, rank, dims);
    else if (n->op == IR_OP_SUB)
      CALL_REF(cg, q8_ref_sub, in[0], asv, in[1], bsv, y, rank, dims);
    else
      CALL_REF(cg, q8_ref_div, in[0], asv, in[1], bsv, y, rank, dims);
    return true;
  }
  case IR_OP_RELU:
    CALL_REF(cg, q8_ref_relu, in[0], y, cg_i64c(cg, numel));
    return true;
  case IR_OP_GELU:
    if (ir_attr_name(n, IR_ATTR_APPROXIMATE, IR_GELU_NONE) == IR_GELU_TANH)
      CALL_REF(cg, q8_ref_gelu_tanh, in[0], y, cg_i64c(cg, numel));
    else
      CALL_REF(cg, q8_ref_gelu, in[0], y, cg_i64c(cg, numel));
    return true;
  case IR_OP_SOFTMAX:
    emit_softmax(cg, n, in[0], y);
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
  case IR_OP_GATHER:
    emit_gather(cg, n, in[0], in[1], y);
    return true;
  case IR_OP_RMSNORM:
    CALL_REF(cg, q8_ref_rmsnorm, in[0], in[1],
             LLVMConstReal(cg->f64, ir_attr_float(n, IR_ATTR_EPS, 1e-6)), y, cg_i64c(cg, r->rows),
             cg_i64c(cg, r->cols));
    return true;
  case IR_OP_CONCAT:
    emit_concat(cg, n, in, y);
    return true;
  case IR_OP_SLICE:
    emit_slice(cg, n, in[0], y);
    return true;
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
    if (ir_attr_name(n, IR_ATTR_GRANULARITY, IR_DYN_ROW) == IR_DYN_TENSOR) {
      CALL_REF(cg, q8_ref_qlinear_dyn_tensor, in[0], in[1], in[2], cg_i64c(cg, ws->type.dims[0]),
               cg_i32c(cg, (int32_t)ir_attr_int(n, IR_ATTR_W_ZERO_POINT, 0)),
               n->nopnds == 4 ? in[3] : LLVMConstNull(cg->ptr), y, cg_i64c(cg, xl->rows),
               cg_i64c(cg, xl->cols), cg_i64c(cg, r->cols));
      return true;
    }
    CALL_REF(cg, q8_ref_qlinear_dyn, in[0], in[1], in[2], cg_i64c(cg, ws->type.dims[0]),
             n->nopnds == 4 ? in[3] : LLVMConstNull(cg->ptr), y, cg_i64c(cg, xl->rows),
             cg_i64c(cg, xl->cols), cg_i64c(cg, r->cols));
    return true;
  }
  case IR_OP_QLINEAR_OUTL: {
    /* Only with a dimension 0 (else attention.c): no column can be an
     * outlier, so it is qlinear_dyn's result. */
    const Loc *xl = &cg->loc[n->opnds[0]->id];
    CALL_REF(cg, q8_ref_qlinear_dyn, in[0], in[1], in[2], cg_i64c(cg, n->opnds[2]->type.dims[0]),
             n->nopnds == 5 ? in[4] : LLVMConstNull(cg->ptr), y, cg_i64c(cg, xl->rows),
             cg_i64c(cg, xl->cols), cg_i64c(cg, r->cols));
    return true;
  }
  case IR_OP_QLINEAR_GRP:
    return cg_emit_qgroup(cg, idx, isa, in, y);
  case IR_OP_SIGMOID:
    CALL_REF(cg, q8_ref_sigmoid, in[0], y, cg_i64c(cg, numel));
    return true;
  case IR_OP_TANH:
    CALL_REF(cg, q8_ref_tanh, in[0], y, cg_i64c(cg, numel));
    return true;
  case IR_OP_SILU:
    CALL_REF(cg, q8_ref_silu, in[0], y, cg_i64c(cg, numel));
    return true;
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
  case IR_OP_LINEAR_4BIT:
  case IR_OP_COUNT:
    break;
  }
  q8_unreachable();
}

LLVMValueRef cg_node_slot(Cg *cg, int idx, int64_t offset) {
  Loc l = {.batched = cg->xq_batched[idx]};
  return slot_at(cg, &l, cg->xq_offset[idx] + offset, "");
}

void cg_run_gemm_m(Cg *cg, LLVMValueRef kernel, LLVMValueRef args, LLVMTypeRef args_ty,
                   unsigned m_field, LLVMValueRef m) {
  LLVMBuildStore(cg->b, m, LLVMBuildStructGEP2(cg->b, args_ty, args, m_field, ""));
  char tname[700];
  size_t len;
  snprintf(tname, sizeof tname, "%s.ntasks", LLVMGetValueName2(kernel, &len));
  LLVMValueRef nfn = LLVMGetNamedFunction(cg->mod, tname);
  if (!nfn)
    q8_die("no %s", tname);
  LLVMValueRef nt = LLVMBuildCall2(cg->b, LLVMGlobalGetValueType(nfn), nfn, &m, 1, "ntasks");
  run_tasks_n(cg, kernel, args, nt, true);
}

LLVMValueRef cg_value_addr(Cg *cg, const IrValue *v) { return addr(cg, v); }
LLVMValueRef cg_scratch_addr(Cg *cg, int64_t offset) { return scratch_at(cg, offset); }
void cg_run_tasks(Cg *cg, LLVMValueRef kernel, LLVMValueRef args, int64_t ntasks, bool parallel) {
  run_tasks(cg, kernel, args, ntasks, parallel);
}

/* p, the caller's dense buffer of value v (elements of es bytes), at the
 * current batch row inside a loop over them. */
static LLVMValueRef dense_row_at(Cg *cg, const IrValue *v, LLVMValueRef p, size_t es) {
  const Loc *l = &cg->loc[v->id];
  if (!cg->batch_row || !l->batched)
    return p;
  LLVMValueRef off =
      LLVMBuildMul(cg->b, cg->batch_row, cg_i64c(cg, l->rows * l->cols * (int64_t)es), "");
  return LLVMBuildGEP2(cg->b, cg->i8, p, &off, 1, "");
}

static void emit_output(Cg *cg, const IrValue *v, LLVMValueRef dst);

bool cg_emit_entry(Cg *cg, CgIsa isa, bool quantized, LLVMValueRef *entry) {
  IrModule *m = cg->m;
  char name[256];
  snprintf(name, sizeof name, "%s_run_%s%s", cg->prefix, quantized ? "quantized_" : "",
           cg_isa_info[isa].name);
  cg->quantized = quantized;
  LLVMTypeRef fty =
      LLVMFunctionType(cg->i32, (LLVMTypeRef[]){cg->ptr, cg->ptr, cg->ptr, cg->ptr, cg->i64}, 5, 0);
  cg->fn = LLVMAddFunction(cg->mod, name, fty);
  cg_set_isa_attrs(cg->fn, isa);
  cg->thr = LLVMGetParam(cg->fn, 0);
  cg->inputs = LLVMGetParam(cg->fn, 1);
  cg->outputs = LLVMGetParam(cg->fn, 2);
  cg->scratch_ptr = LLVMGetParam(cg->fn, 3);
  cg->nb = LLVMGetParam(cg->fn, 4);
  cg->batch_row = NULL;
  LLVMPositionBuilderAtEnd(cg->b, LLVMAppendBasicBlockInContext(cg->ctx, cg->fn, "entry"));
  CgBatchLoop loop;
  for (int i = 0; i < m->ninputs; i++) {
    const IrValue *v = m->inputs[i];
    const Loc *l = &cg->loc[v->id];
    if (l->kind == LOC_SCRATCH) {
      LLVMValueRef idx = cg_i64c(cg, i);
      LLVMValueRef src = LLVMBuildLoad2(
          cg->b, cg->ptr, LLVMBuildGEP2(cg->b, cg->ptr, cg->inputs, &idx, 1, ""), "");
      if (l->batched)
        cg_batch_loop_open(cg, &loop);
      copy_rows(cg, addr(cg, v), l->stride, dense_row_at(cg, v, src, 1), l->cols, l->rows,
                l->cols);
      if (l->batched)
        cg_batch_loop_close(cg, &loop);
    }
  }
  for (int i = 0; i < m->nnodes; i++) {
    /* A node with the run-time batch runs once per batch row (rtshape.c),
     * but for a qgemm or qlinear_dyn with a run-time M. */
    bool rows = cg->loc[m->nodes[i]->result->id].batched && !cg_gemm_runtime_m(cg, m->nodes[i]);
    if (rows)
      cg_batch_loop_open(cg, &loop);
    if (!emit_node(cg, i, isa))
      return false;
    if (rows)
      cg_batch_loop_close(cg, &loop);
  }
  for (int i = 0; i < m->noutputs; i++) {
    const IrValue *v = m->outputs[i];
    const Loc *l = &cg->loc[v->id];
    if (l->kind == LOC_OUTPUT && !(quantized && v->has_qform))
      continue;
    LLVMValueRef idx = cg_i64c(cg, i);
    LLVMValueRef dst = LLVMBuildLoad2(
        cg->b, cg->ptr, LLVMBuildGEP2(cg->b, cg->ptr, cg->outputs, &idx, 1, ""), "");
    if (l->batched)
      cg_batch_loop_open(cg, &loop);
    emit_output(cg, v, dst);
    if (l->batched)
      cg_batch_loop_close(cg, &loop);
  }
  LLVMBuildRet(cg->b, cg_i32c(cg, 0));
  *entry = cg->fn;
  return true;
}

/* Output v (in scratch, or an f32 output the quantized entry gives
 * quantized) into the caller's buffer dst: the current batch row of it
 * inside a loop over them. */
static void emit_output(Cg *cg, const IrValue *v, LLVMValueRef dst) {
  const Loc *l = &cg->loc[v->id];
  if (cg->quantized && v->has_qform) {
    dst = dense_row_at(cg, v, dst, ir_dtype_size(v->qform.dtype));
    {
      /* Dense rows of the quantized form (as ir_interp_quantized). */
      Loc dense = *l;
      dense.stride = l->cols;
      call_quantize(cg, addr(cg, v), dst, &dense, &v->qform);
      return;
    }
  }
  size_t es = ir_dtype_size(v->type.dtype);
  copy_rows(cg, dense_row_at(cg, v, dst, es), l->cols * (int64_t)es, addr(cg, v),
            l->stride * (int64_t)es, l->rows, l->cols * (int64_t)es);
}

