/* layout.c: where each value of a folded, quantized module lives while an
 * entry point runs (a Loc), and how much scratch memory the caller must
 * give it.
 *
 * Inputs and outputs are used in place; every other value gets its own
 * 64-byte aligned slot in the caller's scratch buffer. Quantized values keep
 * rows padded to a multiple of 4 bytes, the layout the kernels read 4 bytes
 * at a time, so a quantized input or output whose rows are not is copied on
 * entry or exit (lower.c). A reshape is free: it shares its operand's slot.
 * A qgemm with an f32 input also gets a slot for the quantized copy of it,
 * and an output with a quantized form one for its f32 value at the
 * quantized entry.
 *
 * With a run-time batch (rtshape.c) the values that have the batch dim get
 * their slots in a second region after the first, sized per batch row: a
 * slot's offset there is per batch row, its address scratch + (size of the
 * first region) + offset * batch. */
#include <stdint.h>

#include "module.h"

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
  int64_t at = cg->scratch, size = cg_round_up(bytes > 0 ? bytes : 1, 64);
  cg->scratch = at > INT64_MAX - size ? INT64_MAX : at + size;
  return at;
}

/* The same in the batched region (rtshape.c): `bytes` per batch row. */
static int64_t reserve_batched(Cg *cg, int64_t bytes) {
  int64_t at = cg->scratch_pb, size = cg_round_up(bytes > 0 ? bytes : 1, 64);
  cg->scratch_pb = at > INT64_MAX - size ? INT64_MAX : at + size;
  return at;
}

static void place_in_scratch(Cg *cg, Loc *l, IrDType t) {
  l->kind = LOC_SCRATCH;
  l->offset = l->batched ? reserve_batched(cg, bytes_of(l, t)) : reserve(cg, bytes_of(l, t));
}

bool cg_gemm_runtime_m(const Cg *cg, const IrNode *n) {
  if (!cg->rtb || !cg->batched[n->opnds[0]->id] || !cg_arch_of(cg->o->isas[0])->runtime_m)
    return false;
  /* qlinear_dyn's rows are quantized each from its own range, so its kernel
   * runs over every batch row too (attention.c); one range for the whole
   * batch ({granularity = tensor}) has no run-time batch (rtshape.c). */
  if (n->op == IR_OP_QLINEAR_DYN)
    return ir_attr_name(n, IR_ATTR_GRANULARITY, IR_DYN_ROW) == IR_DYN_ROW &&
           cg_attention_scratch(n) >= 0;
  return n->op == IR_OP_QGEMM;
}

bool cg_plan_memory(Cg *cg) {
  IrModule *m = cg->m;
  int nvalues = ir_number_values(m);
  cg->loc = ir_alloc(m->arena, (size_t)nvalues * sizeof *cg->loc);
  cg->xq_offset = ir_alloc(m->arena, (size_t)(m->nnodes + 1) * sizeof *cg->xq_offset);
  cg->xq_batched = ir_alloc(m->arena, (size_t)(m->nnodes + 1) * sizeof *cg->xq_batched);
  for (int i = 0; i < m->ninputs; i++) {
    IrValue *v = m->inputs[i];
    Loc *l = &cg->loc[v->id];
    shape_of(&v->type, &l->rows, &l->cols);
    l->batched = cg->rtb && cg->batched[v->id];
    l->stride = l->cols;
    l->kind = LOC_INPUT;
    l->index = i;
    if (ir_dtype_is_quantized(v->type.dtype) && l->cols % 4 != 0) {
      /* Copied into padded rows on entry (rows of a multiple of 4 bytes are
       * read in place). */
      l->stride = cg_round_up(l->cols, 4);
      place_in_scratch(cg, l, v->type.dtype);
    }
  }
  for (int i = 0; i < m->nconsts; i++) {
    Loc *l = &cg->loc[m->consts[i]->id];
    l->kind = LOC_CONST;
    shape_of(&m->consts[i]->type, &l->rows, &l->cols);
    l->stride = l->cols;
  }
  /* The first output index of each value, by id: one sweep, not a search
   * per node. */
  int *out_of = ir_alloc(m->arena, (size_t)(nvalues + 1) * sizeof *out_of);
  for (int i = 0; i < nvalues; i++)
    out_of[i] = -1;
  for (int i = m->noutputs - 1; i >= 0; i--)
    if (m->outputs[i]->id >= 0 && m->outputs[i]->id < nvalues)
      out_of[m->outputs[i]->id] = i;
  for (int i = 0; i < m->nnodes; i++) {
    IrNode *n = m->nodes[i];
    IrValue *v = n->result;
    Loc *l = &cg->loc[v->id];
    shape_of(&v->type, &l->rows, &l->cols);
    l->batched = cg->rtb && cg->batched[v->id];
    l->stride = ir_dtype_is_quantized(v->type.dtype) ? cg_round_up(l->cols, 4) : l->cols;
    int out = out_of[v->id];
    cg->xq_offset[i] = -1;
    if (n->op == IR_OP_QGEMM && n->opnds[0]->type.dtype == IR_F32) {
      Loc xq;
      shape_of(&n->opnds[0]->type, &xq.rows, &xq.cols);
      xq.stride = cg_round_up(xq.cols, 4);
      cg->xq_batched[i] = cg_gemm_runtime_m(cg, n);
      cg->xq_offset[i] = cg->xq_batched[i] ? reserve_batched(cg, xq.rows * xq.stride)
                                           : reserve(cg, xq.rows * xq.stride);
    }
    int64_t grp = cg_qgroup_scratch(n);
    if (grp >= 0)
      cg->xq_offset[i] = reserve(cg, grp); /* qlinear_grp's kernel (qgroup.c) */
    int64_t attn = cg_attention_scratch(n);
    if (attn >= 0) {
      /* qmatmul, qmatmul_dyn, qlinear_dyn on the int8 kernels (attention.c);
       * a qlinear_dyn with a run-time M has its quantized rows and their
       * terms for every batch row (in the batched region). */
      cg->xq_batched[i] = cg_gemm_runtime_m(cg, n);
      cg->xq_offset[i] = cg->xq_batched[i] ? reserve_batched(cg, attn) : reserve(cg, attn);
    } else if (n->op == IR_OP_QMATMUL || n->op == IR_OP_QMATMUL_DYN) {
      /* qmatmul: the quantized copies of its f32 operands, dense, one after
       * the other; qmatmul_dyn: its work buffer (one matrix of b and one
       * row of x, quantized: K * N + K bytes). */
      int64_t xn, bn;
      const IrType *xt = &n->opnds[0]->type, *bt = &n->opnds[1]->type;
      ir_type_numel(xt, 1, &xn);
      ir_type_numel(bt, 1, &bn);
      int64_t k = xt->dims[xt->rank - 1], nn = bt->dims[bt->rank - 1];
      if (n->op == IR_OP_QMATMUL_DYN)
        cg->xq_offset[i] = reserve(cg, k * nn + k);
      else if (xt->dtype == IR_F32 || bt->dtype == IR_F32)
        cg->xq_offset[i] = reserve(cg, (xt->dtype == IR_F32 ? cg_round_up(xn, 64) : 0) +
                                           (bt->dtype == IR_F32 ? bn : 0));
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
        l->q_offset = l->batched ? reserve_batched(cg, bytes_of(l, v->type.dtype))
                                 : reserve(cg, bytes_of(l, v->type.dtype));
    } else {
      place_in_scratch(cg, l, v->type.dtype);
    }
  }
  char why[160];
  /* With a run-time batch, the size at batch 1 (the runtime adds the rest). */
  int64_t total = cg->scratch_pb > INT64_MAX - cg->scratch ? INT64_MAX
                                                           : cg->scratch + cg->scratch_pb;
  if (!ir_bytes_allowed((uint64_t)total, why, sizeof why))
    return ir_error(&m->diag, (IrLoc){0},
                    "codegen: the scratch memory for the intermediate values (batch size %lld) %s",
                    (long long)(cg->o->batch > 0 ? cg->o->batch : 1), why);
  return true;
}

