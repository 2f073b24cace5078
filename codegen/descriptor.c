/* descriptor.c: the exported `q8_model` descriptor of a model library
 * (include/q8model.h): magic and ABI version, the model's name, its inputs
 * and outputs (name, type, shape and quantized form of each, which dims are
 * a run-time batch), the scratch size (at batch 1, and per further batch
 * row), and one entry per variant with the Q8_FEATURE_* bits it needs and
 * its two entry points. The runtime reads it to choose a variant the CPU
 * runs; a program without the runtime can read it too. */
#include <stdint.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#include "module.h"

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
  case IR_I64:
    return Q8_DTYPE_I64;
  default:
    return 0;
  }
}

/* q8_tensor_desc[] for a list of values, as a private constant. */
static LLVMValueRef tensor_descs(Cg *cg, IrValue **vals, int n, const char *what) {
  LLVMTypeRef dims_ty = LLVMArrayType2(cg->i64, Q8_MODEL_MAX_RANK);
  LLVMTypeRef ty = LLVMStructTypeInContext(
      cg->ctx,
      (LLVMTypeRef[]){cg->ptr, cg->i32, cg->i32, dims_ty, cg->i32, cg->f32, cg->i32, cg->i32}, 8,
      0);
  LLVMValueRef *elems = calloc((size_t)n + 1, sizeof *elems);
  for (int i = 0; i < n; i++) {
    LLVMValueRef dims[Q8_MODEL_MAX_RANK];
    for (int d = 0; d < Q8_MODEL_MAX_RANK; d++)
      dims[d] = cg_i64c(cg, d < vals[i]->type.rank ? vals[i]->type.dims[d] : 0);
    const IrValue *v = vals[i];
    LLVMValueRef f[8] = {cg_const_string(cg, v->name), cg_i32c(cg, abi_dtype(v->type.dtype)),
                         cg_i32c(cg, v->type.rank), LLVMConstArray2(cg->i64, dims, Q8_MODEL_MAX_RANK),
                         cg_i32c(cg, abi_dtype(ir_boundary_dtype(v, true))),
                         LLVMConstReal(cg->f32, v->has_qform ? v->qform.scale : 0.0),
                         cg_i32c(cg, v->has_qform ? v->qform.zero_point : 0),
                         /* batch_dims: rtshape.c's batch is the first dim, or
                          * the named dims leading the shape */
                         cg_i32c(cg, !cg->loc[v->id].batched ? 0
                                     : cg->m->nnamed > 1     ? (int32_t)((1u << cg->m->nnamed) - 1)
                                                             : 1)};
    elems[i] = LLVMConstStructInContext(cg->ctx, f, 8, 0);
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

/* The named dims' names and maxima (--max-dim), as private constants. */
static void named_dims(Cg *cg, LLVMValueRef *names, LLVMValueRef *max) {
  const IrModule *m = cg->m;
  const CgOptions *o = cg->o;
  int k = cg->rtb ? m->nnamed : 0;
  if (k == 0) {
    *names = *max = LLVMConstPointerNull(cg->ptr);
    return;
  }
  LLVMValueRef n[IR_MAX_RANK], v[IR_MAX_RANK];
  for (int i = 0; i < k; i++) {
    int64_t most = INT64_MAX;
    for (int j = 0; j < o->nmax_dims; j++)
      if (strcmp(o->max_dim_names[j], m->named[i]) == 0)
        most = o->max_dim_values[j];
    n[i] = cg_const_string(cg, m->named[i]);
    v[i] = cg_i64c(cg, most);
  }
  LLVMValueRef arrs[2] = {LLVMConstArray2(cg->ptr, n, (uint64_t)k),
                          LLVMConstArray2(cg->i64, v, (uint64_t)k)};
  const char *what[2] = {"named", "named_max"};
  for (int i = 0; i < 2; i++) {
    char name[160];
    snprintf(name, sizeof name, "%s.%s", cg->prefix, what[i]);
    LLVMValueRef g = LLVMAddGlobal(cg->mod, LLVMTypeOf(arrs[i]), name);
    LLVMSetInitializer(g, arrs[i]);
    LLVMSetGlobalConstant(g, 1);
    LLVMSetLinkage(g, LLVMPrivateLinkage);
    *(i ? max : names) = g;
  }
}

void cg_emit_descriptor(Cg *cg, LLVMValueRef (*entries)[2]) {
  IrModule *m = cg->m;
  const CgOptions *o = cg->o;
  LLVMValueRef named, named_max;
  named_dims(cg, &named, &named_max);
  LLVMTypeRef vty = LLVMStructTypeInContext(
      cg->ctx, (LLVMTypeRef[]){cg->ptr, cg->i64, cg->ptr, cg->ptr}, 4, 0);
  LLVMValueRef vars[CG_ISA_COUNT];
  for (int i = 0; i < o->nisas; i++) {
    const CgIsaInfo *info = &cg_isa_info[o->isas[i]];
    LLVMValueRef f[4] = {cg_const_string(cg, info->name), cg_i64c(cg, (int64_t)info->bits),
                         entries[i][0], entries[i][1]};
    vars[i] = LLVMConstStructInContext(cg->ctx, f, 4, 0);
  }
  LLVMValueRef varr = LLVMConstArray2(vty, vars, (uint64_t)o->nisas);
  LLVMValueRef vglob = LLVMAddGlobal(cg->mod, LLVMTypeOf(varr), "q8_model.variants");
  LLVMSetInitializer(vglob, varr);
  LLVMSetGlobalConstant(vglob, 1);
  LLVMSetLinkage(vglob, LLVMPrivateLinkage);

  LLVMValueRef f[] = {
      cg_i32c(cg, Q8_MODEL_MAGIC),
      cg_i32c(cg, Q8_MODEL_ABI_VERSION),
      cg_const_string(cg, m->name),
      cg_const_string(cg, "q8c " Q8_VERSION),
      cg_i32c(cg, m->ninputs),
      cg_i32c(cg, m->noutputs),
      tensor_descs(cg, m->inputs, m->ninputs, "inputs"),
      tensor_descs(cg, m->outputs, m->noutputs, "outputs"),
      cg_i64c(cg, cg->scratch + cg->scratch_pb),
      cg_i32c(cg, o->nisas),
      vglob,
      /* max_batch, scratch_bytes_per_batch (rtshape.c) */
      cg_i64c(cg, !cg->rtb ? 0 : o->max_batch > 0 ? o->max_batch : INT64_MAX),
      cg_i64c(cg, cg->rtb ? cg->scratch_pb : 0),
      /* nnamed, named, named_max (ABI 4) */
      cg_i32c(cg, cg->rtb ? m->nnamed : 0),
      named,
      named_max,
  };
  LLVMValueRef desc = LLVMConstStructInContext(cg->ctx, f, sizeof f / sizeof f[0], 0);
  LLVMValueRef g = LLVMAddGlobal(cg->mod, LLVMTypeOf(desc), "q8_model");
  LLVMSetInitializer(g, desc);
  LLVMSetGlobalConstant(g, 1);
  LLVMSetAlignment(g, 8);
}

