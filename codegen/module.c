/* module.c: the codegen driver. It builds one LLVM module for a folded,
 * quantized module: its values laid out in memory (layout.c), for every
 * variant of the options (isa.def) two entry points (lower.c), and the
 * exported descriptor `q8_model` (descriptor.c); then verifies it. The
 * kernels those entries call (cg_emit_qgemm) and the constants they read
 * are emitted on the way, once per variant. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <llvm-c/Analysis.h>

#include "module.h"

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

LLVMValueRef cg_const_bytes(Cg *cg, const char *name, const void *data, size_t size) {
  /* The size_t variant: (unsigned)size would cut a constant over 4 GiB. */
  return cg_private_const(cg->mod, name, LLVMConstStringInContext2(cg->ctx, data, size, 1));
}

LLVMValueRef cg_const_string(Cg *cg, const char *s) {
  return cg_const_bytes(cg, ".str", s, strlen(s) + 1);
}

LLVMValueRef cg_const_addr(Cg *cg, const void *p) {
  return LLVMConstIntToPtr(LLVMConstInt(cg->i64, (unsigned long long)(uintptr_t)p, 0), cg->ptr);
}

/* The module for `m` with its `?` bound (to o->batch, or to 1 while a
 * run-time batch is built). */
static LLVMModuleRef build_bound(IrModule *m, LLVMContextRef ctx, const CgOptions *o, bool rtb,
                                 bool *batched);

LLVMModuleRef cg_build_module(IrModule *m, LLVMContextRef ctx, const CgOptions *o) {
  char why[200];
  if (o->batch > 0 && m->nnamed > 1 && !m->bound_batch) {
    ir_error(&m->diag, (IrLoc){0},
             "--batch binds '?', but the model's shapes lead with the named dims %s, %s%s: bind "
             "each with --dim NAME=N for fixed shapes, or leave them to each call",
             m->named[0], m->named[1], m->nnamed > 2 ? ", ..." : "");
    return NULL;
  }
  if (o->batch > 0 || m->bound_batch || !cg_runtime_batch_ok(m, why, sizeof why)) {
    ir_bind_batch(m, o->batch > 0 ? o->batch : 1);
    return build_bound(m, ctx, o, false, NULL);
  }
  /* A run-time batch (rtshape.c): built at batch 1, `?` restored after. */
  bool *batched = calloc((size_t)ir_number_values(m) + 1, sizeof *batched);
  if (!batched)
    q8_die("out of memory");
  CgUnbound *u = cg_bind_batch_one(m, batched);
  LLVMModuleRef mod = build_bound(m, ctx, o, true, batched);
  cg_unbind_batch(m, u);
  free(batched);
  return mod;
}

static LLVMModuleRef build_bound(IrModule *m, LLVMContextRef ctx, const CgOptions *o, bool rtb,
                                 bool *batched) {
  if (!ir_verify(m))
    return NULL;
  Cg cg = {.m = m, .o = o, .ctx = ctx, .rtb = rtb, .batched = batched};
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
  bool ok = cg_plan_memory(&cg);
  char err[300];
  if (ok && o->weights_out && !(cg.wfile = cg_weights_open(o->weights_out, err, sizeof err)))
    ok = ir_error(&m->diag, (IrLoc){0}, "--weights-out: %s", err);
  cg.kernel = ir_alloc(m->arena, (size_t)(m->nnodes + 1) * sizeof *cg.kernel);
  cg.kernel_tasks = ir_alloc(m->arena, (size_t)(m->nnodes + 1) * sizeof *cg.kernel_tasks);
  cg.quantizer = ir_alloc(m->arena, (size_t)(m->nnodes + 1) * sizeof *cg.quantizer);
  cg.prep = ir_alloc(m->arena, (size_t)(m->nnodes + 1) * sizeof *cg.prep);
  LLVMValueRef entries[CG_ISA_COUNT][2];
  for (int i = 0; ok && i < o->nisas; i++) {
    memset(cg.kernel, 0, (size_t)(m->nnodes + 1) * sizeof *cg.kernel);
    memset(cg.quantizer, 0, (size_t)(m->nnodes + 1) * sizeof *cg.quantizer);
    memset(cg.prep, 0, (size_t)(m->nnodes + 1) * sizeof *cg.prep);
    ok = cg_emit_entry(&cg, o->isas[i], false, &entries[i][0]) &&
         cg_emit_entry(&cg, o->isas[i], true, &entries[i][1]);
  }
  if (ok)
    cg_emit_descriptor(&cg, entries);
  if (ok && cg.wfile &&
      !cg_weights_finish(cg.wfile, cg.mod,
                         o->weights_name ? o->weights_name : o->weights_out, err, sizeof err))
    ok = ir_error(&m->diag, (IrLoc){0}, "--weights-out: %s", err);
  cg_weights_free(cg.wfile);
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

