/* rtshape.c: a run-time batch. A model compiled without --batch whose `?`
 * is the leading dim of every value that has one is compiled once for any
 * batch: its types are bound to batch 1 while the code is built (so every
 * lowering sees the shapes of one batch row, as a --batch 1 compile does)
 * and restored after, the entries take the batch as their last argument,
 * and:
 *
 *   - qgemm, and qlinear_dyn quantizing per row, run their kernel once
 *     over all batch x rows rows (M at run time: gemm_tasks.c picks the
 *     row tiles and the M tail; cg_gemm_runtime_m says which nodes);
 *   - every other node whose result has the batch runs once per batch row
 *     (cg_batch_loop_open/close around its fixed-shape lowering), each
 *     batched operand and the result offset by that row's bytes, so each
 *     computes exactly what the batch-1 code computes;
 *   - scratch is two regions: first what does not grow with the batch (a
 *     node's work buffers, reused by each batch row), then one slot per
 *     batched value, a multiple of 64 bytes per batch row (layout.c): the
 *     descriptor gives the size at batch 1 and the bytes per further row.
 *
 * A model that does not qualify (a `?` elsewhere than the first dim, two of
 * them, or an op that reduces over the first dim) is compiled with `?` = 1
 * as before, and its descriptor says it has fixed shapes. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "module.h"

static int batch_count(const IrType *t, bool *leading) {
  int count = 0;
  for (int i = 0; i < t->rank; i++)
    count += t->dims[i] == IR_DIM_BATCH;
  *leading = t->rank > 0 && t->dims[0] == IR_DIM_BATCH;
  return count;
}

/* Whether node n computes each batch row of its result from the same batch
 * row of its batched operands alone (and the unbatched ones whole). */
static bool row_wise(const IrNode *n, char *why, size_t size) {
  const IrType *t = &n->result->type;
  const char *op = ir_op_info[n->op].name;
  switch (n->op) {
  case IR_OP_SOFTMAX: {
    int64_t ax = ir_attr_int(n, IR_ATTR_AXIS, -1);
    ax = ax < 0 ? ax + t->rank : ax;
    if (ax == 0 || (ir_attr_int(n, IR_ATTR_CAUSAL, 0) && t->rank <= 2)) {
      snprintf(why, size, "softmax %%%s runs over the batch dim", n->result->name);
      return false;
    }
    return true;
  }
  case IR_OP_QLINEAR_DYN:
    /* ONNX's DynamicQuantizeLinear takes one range over the whole batch. */
    if (ir_attr_name(n, IR_ATTR_GRANULARITY, IR_DYN_ROW) == IR_DYN_TENSOR) {
      snprintf(why, size, "qlinear_dyn %%%s quantizes the whole batch with one range",
               n->result->name);
      return false;
    }
    /* fall through */
  case IR_OP_LAYERNORM:
  case IR_OP_RMSNORM:
  case IR_OP_QGEMM:
  case IR_OP_LINEAR:
  case IR_OP_LINEAR_4BIT:
  case IR_OP_QLINEAR_GRP:
    if (t->rank < 2) {
      snprintf(why, size, "%s %%%s runs over the batch dim", op, n->result->name);
      return false;
    }
    return true;
  case IR_OP_TRANSPOSE: {
    int64_t perm[IR_MAX_RANK];
    int np = ir_attr_ints(n, IR_ATTR_PERM, perm, IR_MAX_RANK);
    if ((np == t->rank && perm[0] != 0) || (np != t->rank && t->rank <= 2)) {
      snprintf(why, size, "transpose %%%s moves the batch dim", n->result->name);
      return false;
    }
    return true;
  }
  case IR_OP_CONCAT:
  case IR_OP_SLICE: {
    int64_t ax = ir_attr_int(n, IR_ATTR_AXIS, n->op == IR_OP_CONCAT ? -1 : 0);
    if ((ax < 0 ? ax + t->rank : ax) == 0) {
      snprintf(why, size, "%s %%%s runs along the batch dim", op, n->result->name);
      return false;
    }
    return true;
  }
  case IR_OP_MATMUL:
  case IR_OP_QMATMUL:
  case IR_OP_QMATMUL_DYN:
  case IR_OP_ADD:
  case IR_OP_MUL:
  case IR_OP_SUB:
  case IR_OP_DIV:
  case IR_OP_RELU:
  case IR_OP_GELU:
  case IR_OP_SIGMOID:
  case IR_OP_TANH:
  case IR_OP_SILU:
  case IR_OP_GATHER:
  case IR_OP_RESHAPE:
  case IR_OP_QUANTIZE:
  case IR_OP_DEQUANTIZE:
    return true;
  default:
    snprintf(why, size, "%s %%%s has no run-time batch lowering", op, n->result->name);
    return false;
  }
}

bool cg_runtime_batch_ok(const IrModule *m, char *why, size_t size) {
  bool leading, any = false;
  for (int i = 0; i < m->ninputs; i++) {
    int c = batch_count(&m->inputs[i]->type, &leading);
    if (c > 1 || (c == 1 && !leading)) {
      snprintf(why, size, "input %%%s has '?' elsewhere than its first dim",
               m->inputs[i]->name);
      return false;
    }
    any |= c == 1;
  }
  for (int i = 0; i < m->nnodes; i++) {
    const IrNode *n = m->nodes[i];
    int c = batch_count(&n->result->type, &leading);
    if (c > 1 || (c == 1 && !leading)) {
      snprintf(why, size, "%%%s has '?' elsewhere than its first dim", n->result->name);
      return false;
    }
    bool opnd_batched = false;
    for (int j = 0; j < n->nopnds; j++)
      opnd_batched |= batch_count(&n->opnds[j]->type, &leading) > 0;
    if (c == 0 && opnd_batched) {
      snprintf(why, size, "%%%s drops the batch dim", n->result->name);
      return false;
    }
    if (c == 1 && !row_wise(n, why, size))
      return false;
  }
  if (!any)
    snprintf(why, size, "no input has a '?' dim");
  return any;
}

/* ---- binding to batch 1 while the code is built ---- */

struct CgUnbound {
  IrType *types;   /* by value id: inputs then node results */
  double **batch_attrs; /* DIMS attribute entries that held `?` or a folded named dim */
  double *batch_vals;   /* which of the two each held */
  int nattrs;
  int64_t bound_batch;
};

CgUnbound *cg_bind_batch_one(IrModule *m, bool *batched) {
  int nvalues = ir_number_values(m);
  CgUnbound *u = calloc(1, sizeof *u);
  int nattrs = 0;
  for (int i = 0; i < m->nnodes; i++)
    for (int a = 0; a < m->nodes[i]->nattrs; a++)
      if (ir_attr_info[m->nodes[i]->attrs[a].key].kind == IR_AKIND_DIMS)
        nattrs += m->nodes[i]->attrs[a].n;
  if (!u || !(u->types = calloc((size_t)nvalues + 1, sizeof *u->types)) ||
      !(u->batch_attrs = calloc((size_t)nattrs + 1, sizeof *u->batch_attrs)) ||
      !(u->batch_vals = calloc((size_t)nattrs + 1, sizeof *u->batch_vals)))
    q8_die("out of memory binding the batch");
  for (int i = 0; i < m->ninputs; i++)
    u->types[m->inputs[i]->id] = m->inputs[i]->type;
  for (int i = 0; i < m->nnodes; i++) {
    IrNode *n = m->nodes[i];
    u->types[n->result->id] = n->result->type;
    for (int a = 0; a < n->nattrs; a++)
      if (ir_attr_info[n->attrs[a].key].kind == IR_AKIND_DIMS)
        for (int j = 0; j < n->attrs[a].n; j++)
          if (ir_dim_symbolic((int64_t)n->attrs[a].vals[j])) {
            u->batch_vals[u->nattrs] = n->attrs[a].vals[j];
            u->batch_attrs[u->nattrs++] = &n->attrs[a].vals[j];
          }
  }
  for (int i = 0; i < nvalues; i++) {
    bool leading;
    batched[i] = batch_count(&u->types[i], &leading) > 0;
  }
  u->bound_batch = m->bound_batch;
  ir_bind_batch(m, 1);
  return u;
}

void cg_unbind_batch(IrModule *m, CgUnbound *u) {
  for (int i = 0; i < m->ninputs; i++)
    m->inputs[i]->type = u->types[m->inputs[i]->id];
  for (int i = 0; i < m->nnodes; i++)
    m->nodes[i]->result->type = u->types[m->nodes[i]->result->id];
  for (int i = 0; i < u->nattrs; i++)
    *u->batch_attrs[i] = u->batch_vals[i];
  m->bound_batch = u->bound_batch;
  free(u->types);
  free(u->batch_attrs);
  free(u->batch_vals);
  free(u);
}

/* ---- in the entry being built ---- */

int64_t cg_batch_row_bytes(const Cg *cg, const IrValue *v) {
  const Loc *l = &cg->loc[v->id];
  return l->rows * l->stride * (int64_t)ir_dtype_size(v->type.dtype);
}

LLVMValueRef cg_batch_row_at(Cg *cg, const IrValue *v, LLVMValueRef p) {
  if (!cg->batch_row || !cg->loc[v->id].batched)
    return p;
  LLVMValueRef off = LLVMBuildMul(cg->b, cg->batch_row, cg_i64c(cg, cg_batch_row_bytes(cg, v)), "");
  return LLVMBuildGEP2(cg->b, cg->i8, p, &off, 1, "");
}

void cg_batch_loop_open(Cg *cg, CgBatchLoop *l) {
  l->head = LLVMAppendBasicBlockInContext(cg->ctx, cg->fn, "batch.row");
  l->from = LLVMGetInsertBlock(cg->b);
  LLVMBuildBr(cg->b, l->head);
  LLVMPositionBuilderAtEnd(cg->b, l->head);
  l->row = LLVMBuildPhi(cg->b, cg->i64, "b");
  LLVMValueRef zero = cg_i64c(cg, 0);
  LLVMAddIncoming(l->row, &zero, &l->from, 1);
  cg->batch_row = l->row;
}

void cg_batch_loop_close(Cg *cg, CgBatchLoop *l) {
  LLVMValueRef next = LLVMBuildAdd(cg->b, l->row, cg_i64c(cg, 1), "");
  LLVMBasicBlockRef tail = LLVMGetInsertBlock(cg->b);
  LLVMBasicBlockRef done = LLVMAppendBasicBlockInContext(cg->ctx, cg->fn, "batch.done");
  LLVMBuildCondBr(cg->b, LLVMBuildICmp(cg->b, LLVMIntSLT, next, cg->nb, ""), l->head, done);
  LLVMAddIncoming(l->row, &next, &tail, 1);
  LLVMPositionBuilderAtEnd(cg->b, done);
  cg->batch_row = NULL;
}
