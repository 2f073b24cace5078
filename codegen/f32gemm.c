/* f32gemm.c: the float `linear` (x W^T + b, W a constant) and `matmul` (two
 * activations, batched and broadcast as numpy's) as a register-tiled vector
 * GEMM, one task function per node and variant, split into tasks over the
 * caller's threads (lower.c's cg_run_tasks). lower.c asks cg_emit_f32gemm
 * before it falls back to the reference call.
 *
 * Bit-exact with ir/refops.c's q8_ref_linear / q8_ref_matmul: every output
 * is `acc = 0; acc = acc + x[i,k] * w[k,j]` for k = 0, 1, ... in order, one
 * float32 multiply and one float32 add each (no FMA: plain fmul / fadd,
 * which LLVM neither fuses nor reorders), then `acc + b[j]`, a NaN written
 * as 0x7fc00000 (which NaN comes out of two NaN operands depends on their
 * order, which LLVM may swap, and on the hardware; docs/float.md).
 * The kernel vectorizes over the output columns j and keeps each column's
 * sum in its own lane, so no sum is reordered whatever the vector width.
 *
 *   void NAME.RESULT.f32gemm_MRx16_ISA(F32GemmArgs *args, int64_t task)
 *     task -> (matrix of the batch, group of row tiles, group of panels)
 *     for each 16-column panel of the group         (its weights stay in
 *       for each MR-row tile of the group             cache across the tiles;
 *                                                      M % MR rows: one tile)
 *         acc[MR][16] = 0; for k: acc += x[r, k] * w[k, 16 columns]
 *         acc += bias; store
 *     the last group also does the columns past the last panel: whole
 *     vectors, then single columns (<1 x float>), the same code
 *
 * Panels are 16 columns on every variant (AVX-512: one zmm; AVX2: two ymm;
 * SSE2 and NEON: four 4-float registers), so `linear`'s W is packed once at
 * compile time for all of them: [N / 16][K][16], then the tail columns as
 * [K][vector columns] and [K][single columns], with no padding. A matmul's
 * B [K, N] rows are read in place (16 consecutive floats of row k).
 * Rows per tile: what the variant's registers hold beside the panel's
 * vectors, an x broadcast and a product (isa.def's vregs): 12 AVX-512, 6
 * AVX2 and NEON, 2 SSE2. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "module.h"
#include "vmath.h"

enum { PANEL = 16, MAX_MR = 12, MAX_TASKS = 64 };
static const int64_t min_task_macs = (int64_t)1 << 21;

/* What one node's kernel computes, and how the work is split. */
typedef struct {
  int64_t m, k, n;      /* one matrix: [m, k] x [k, n] */
  int64_t batch;        /* matrices (a matmul's broadcast batch; 1 for linear) */
  int brank;            /* batch axes, their extents and a's and b's strides */
  int64_t bdims[IR_MAX_RANK], astr[IR_MAX_RANK], bstr[IR_MAX_RANK];
  bool packed;          /* b is linear's packed constant W */
  bool bias;
  unsigned lanes;       /* floats per vector register */
  int nrv, mr;          /* vectors per panel, rows per tile */
  int64_t npanels, tail_vecs, tail_cols; /* full panels; the columns past them */
  int64_t rgroups, row_tiles_per_group, pgroups, panels_per_group;
} Plan;

static LLVMValueRef i64c(CgFn *f, int64_t v) { return LLVMConstInt(f->i64, (uint64_t)v, 1); }

static LLVMValueRef at(CgFn *f, LLVMValueRef base, LLVMValueRef i) {
  return LLVMBuildGEP2(f->b, f->f32, base, &i, 1, "");
}

static LLVMValueRef add(CgFn *f, LLVMValueRef a, LLVMValueRef b) {
  return LLVMBuildAdd(f->b, a, b, "");
}

static LLVMValueRef mul(CgFn *f, LLVMValueRef a, int64_t c) {
  return LLVMBuildMul(f->b, a, i64c(f, c), "");
}

static LLVMValueRef min64(CgFn *f, LLVMValueRef a, LLVMValueRef b) {
  return LLVMBuildSelect(f->b, LLVMBuildICmp(f->b, LLVMIntSLT, a, b, ""), a, b, "");
}

static LLVMValueRef vload(CgFn *f, LLVMValueRef p, unsigned w) {
  LLVMValueRef v = LLVMBuildLoad2(f->b, LLVMVectorType(f->f32, w), p, "");
  LLVMSetAlignment(v, 4);
  return v;
}

typedef struct {
  LLVMBasicBlockRef body, exit;
  LLVMValueRef i, hi;
  int64_t step;
} Loop;

/* for (i = lo; i + step <= hi; i += step): the index. */
static LLVMValueRef loop_open(CgFn *f, Loop *l, LLVMValueRef lo, LLVMValueRef hi, int64_t step) {
  LLVMBasicBlockRef pre = LLVMGetInsertBlock(f->b);
  l->body = LLVMAppendBasicBlockInContext(f->ctx, f->fn, "loop");
  l->exit = LLVMAppendBasicBlockInContext(f->ctx, f->fn, "loop.end");
  l->hi = LLVMBuildSub(f->b, hi, i64c(f, step - 1), "");
  LLVMBuildCondBr(f->b, LLVMBuildICmp(f->b, LLVMIntSLT, lo, l->hi, ""), l->body, l->exit);
  LLVMPositionBuilderAtEnd(f->b, l->body);
  l->i = LLVMBuildPhi(f->b, f->i64, "i");
  LLVMAddIncoming(l->i, &lo, &pre, 1);
  l->step = step;
  return l->i;
}

/* Closes the loop; the index after it (lo when it did not run). */
static LLVMValueRef loop_close(CgFn *f, Loop *l, LLVMValueRef lo) {
  LLVMValueRef next = add(f, l->i, i64c(f, l->step));
  LLVMBasicBlockRef cur = LLVMGetInsertBlock(f->b), pre = LLVMGetIncomingBlock(l->i, 0);
  LLVMAddIncoming(l->i, &next, &cur, 1);
  LLVMBuildCondBr(f->b, LLVMBuildICmp(f->b, LLVMIntSLT, next, l->hi, ""), l->body, l->exit);
  LLVMPositionBuilderAtEnd(f->b, l->exit);
  LLVMValueRef end = LLVMBuildPhi(f->b, f->i64, "");
  LLVMAddIncoming(end, &lo, &pre, 1);
  LLVMAddIncoming(end, &next, &cur, 1);
  return end;
}

/* One tile: rows [i, i + mr) of a (row length k) times the column block of b
 * at bp (rows ldb apart: nv vectors of w lanes), into y's columns from j0. */
typedef struct {
  LLVMValueRef a, bias, y; /* the matrix's a and y, the bias (or NULL) */
} Mats;

static void emit_tile(CgFn *f, const Plan *p, const Mats *mt, LLVMValueRef i, LLVMValueRef j0,
                      LLVMValueRef bp, int64_t ldb, int mr, int nv, unsigned w) {
  LLVMTypeRef vt = LLVMVectorType(f->f32, w);
  LLVMValueRef zero = LLVMConstNull(vt);
  LLVMValueRef arow[MAX_MR], acc[MAX_MR][PANEL];
  for (int r = 0; r < mr; r++)
    arow[r] = at(f, mt->a, mul(f, add(f, i, i64c(f, r)), p->k));
  /* The K loop: the accumulators are its phis. */
  LLVMBasicBlockRef pre = LLVMGetInsertBlock(f->b);
  LLVMBasicBlockRef body = LLVMAppendBasicBlockInContext(f->ctx, f->fn, "k");
  LLVMBasicBlockRef done = LLVMAppendBasicBlockInContext(f->ctx, f->fn, "k.end");
  LLVMBuildBr(f->b, body);
  LLVMPositionBuilderAtEnd(f->b, body);
  LLVMValueRef k = LLVMBuildPhi(f->b, f->i64, "k");
  LLVMAddIncoming(k, (LLVMValueRef[]){i64c(f, 0)}, &pre, 1);
  LLVMValueRef phi[MAX_MR][PANEL];
  for (int r = 0; r < mr; r++)
    for (int v = 0; v < nv; v++) {
      phi[r][v] = LLVMBuildPhi(f->b, vt, "acc");
      LLVMAddIncoming(phi[r][v], &zero, &pre, 1);
    }
  /* Load the block's row k, then per row: broadcast x[r, k], multiply, add. */
  LLVMValueRef brow = at(f, bp, mul(f, k, ldb)), bv[PANEL];
  for (int v = 0; v < nv; v++)
    bv[v] = vload(f, at(f, brow, i64c(f, (int64_t)v * w)), w);
  for (int r = 0; r < mr; r++) {
    LLVMValueRef xs = LLVMBuildLoad2(f->b, f->f32, at(f, arow[r], k), "");
    LLVMSetAlignment(xs, 4);
    LLVMValueRef xv = w == 1 ? LLVMBuildInsertElement(f->b, LLVMGetUndef(vt), xs,
                                                      LLVMConstInt(f->i32, 0, 0), "")
                             : cg_splat_value(f->b, xs, w);
    for (int v = 0; v < nv; v++)
      acc[r][v] = LLVMBuildFAdd(f->b, phi[r][v], LLVMBuildFMul(f->b, xv, bv[v], ""), "");
  }
  LLVMValueRef next = add(f, k, i64c(f, 1));
  LLVMBasicBlockRef cur = LLVMGetInsertBlock(f->b);
  LLVMAddIncoming(k, &next, &cur, 1);
  for (int r = 0; r < mr; r++)
    for (int v = 0; v < nv; v++)
      LLVMAddIncoming(phi[r][v], &acc[r][v], &cur, 1);
  LLVMBuildCondBr(f->b, LLVMBuildICmp(f->b, LLVMIntSLT, next, i64c(f, p->k), ""), body, done);
  LLVMPositionBuilderAtEnd(f->b, done);
  /* Add the bias, store the rows. */
  for (int v = 0; v < nv; v++) {
    LLVMValueRef j = add(f, j0, i64c(f, (int64_t)v * w));
    LLVMValueRef bias = mt->bias ? vload(f, at(f, mt->bias, j), w) : NULL;
    for (int r = 0; r < mr; r++) {
      LLVMValueRef s = acc[r][v];
      if (bias)
        s = LLVMBuildFAdd(f->b, s, bias, "");
      /* A NaN is stored as 0x7fc00000 (refops.c's gemm_out). */
      LLVMValueRef nan = LLVMConstBitCast(
          cg_splat(LLVMConstInt(f->i32, 0x7fc00000u, 0), w), vt);
      s = LLVMBuildSelect(f->b, LLVMBuildFCmp(f->b, LLVMRealUNO, s, s, ""), nan, s, "");
      LLVMValueRef yo = add(f, mul(f, add(f, i, i64c(f, r)), p->n), j);
      LLVMSetAlignment(LLVMBuildStore(f->b, s, at(f, mt->y, yo)), 4);
    }
  }
}

/* Rows [r0, r1) of a column block: tiles of mr rows, then (in the last row
 * group, whose r1 is m) one tile of the m % mr rows left. */
static void emit_rows(CgFn *f, const Plan *p, const Mats *mt, LLVMValueRef r0, LLVMValueRef r1,
                      LLVMValueRef j0, LLVMValueRef bp, int64_t ldb, int nv, unsigned w) {
  Loop l;
  LLVMValueRef i = loop_open(f, &l, r0, r1, p->mr);
  emit_tile(f, p, mt, i, j0, bp, ldb, p->mr, nv, w);
  LLVMValueRef rest = loop_close(f, &l, r0);
  int left = (int)(p->m % p->mr);
  if (left > 0) {
    LLVMBasicBlockRef tail = LLVMAppendBasicBlockInContext(f->ctx, f->fn, "rows.tail");
    LLVMBasicBlockRef done = LLVMAppendBasicBlockInContext(f->ctx, f->fn, "rows.end");
    LLVMBuildCondBr(f->b, LLVMBuildICmp(f->b, LLVMIntSLT, rest, r1, ""), tail, done);
    LLVMPositionBuilderAtEnd(f->b, tail);
    emit_tile(f, p, mt, rest, j0, bp, ldb, left, nv, w);
    LLVMBuildBr(f->b, done);
    LLVMPositionBuilderAtEnd(f->b, done);
  }
}

/* The column block starting at column j0 (a constant or a panel index
 * times 16) whose packed weights start at element `packed_at` with rows
 * `packed_ld` apart. */
static void emit_block(CgFn *f, const Plan *p, const Mats *mt, LLVMValueRef b, LLVMValueRef r0,
                       LLVMValueRef r1, LLVMValueRef j0, LLVMValueRef packed_at,
                       int64_t packed_ld, int nv, unsigned w) {
  if (p->packed)
    emit_rows(f, p, mt, r0, r1, j0, at(f, b, packed_at), packed_ld, nv, w);
  else
    emit_rows(f, p, mt, r0, r1, j0, at(f, b, j0), p->n, nv, w);
}

static LLVMValueRef emit_task_fn(Cg *cg, const char *name, CgIsa isa, const Plan *p,
                                 LLVMValueRef packed) {
  CgFn fb = {.mod = cg->mod, .ctx = cg->ctx, .f32 = cg->f32, .i32 = cg->i32, .i64 = cg->i64,
             .ptr = cg->ptr};
  CgFn *f = &fb;
  f->fn = LLVMAddFunction(cg->mod, name,
                          LLVMFunctionType(cg->vd, (LLVMTypeRef[]){cg->ptr, cg->i64}, 2, 0));
  LLVMSetLinkage(f->fn, LLVMPrivateLinkage);
  cg_set_isa_attrs(f->fn, isa);
  f->entry = LLVMAppendBasicBlockInContext(f->ctx, f->fn, "entry");
  f->b = LLVMCreateBuilderInContext(f->ctx);
  LLVMPositionBuilderAtEnd(f->b, f->entry);
  /* F32GemmArgs {a, b, bias, y}. */
  LLVMValueRef args = LLVMGetParam(f->fn, 0), t = LLVMGetParam(f->fn, 1), field[4];
  for (int i = 0; i < 4; i++) {
    LLVMValueRef g = LLVMBuildGEP2(f->b, cg->ptr, args, (LLVMValueRef[]){i64c(f, i)}, 1, "");
    field[i] = LLVMBuildLoad2(f->b, cg->ptr, g, "");
  }
  /* task -> matrix, row group, panel group. */
  int64_t per_matrix = p->rgroups * p->pgroups;
  LLVMValueRef bi = LLVMBuildSDiv(f->b, t, i64c(f, per_matrix), "");
  LLVMValueRef rem = LLVMBuildSRem(f->b, t, i64c(f, per_matrix), "");
  LLVMValueRef rg = LLVMBuildSDiv(f->b, rem, i64c(f, p->pgroups), "");
  LLVMValueRef pg = LLVMBuildSRem(f->b, rem, i64c(f, p->pgroups), "");
  /* The matrix's offsets in a and b: its batch index, axis by axis. */
  LLVMValueRef ao = i64c(f, 0), bo = i64c(f, 0), idx = bi;
  for (int d = p->brank - 1; d >= 0; d--) {
    LLVMValueRef id = LLVMBuildSRem(f->b, idx, i64c(f, p->bdims[d]), "");
    idx = LLVMBuildSDiv(f->b, idx, i64c(f, p->bdims[d]), "");
    ao = add(f, ao, mul(f, id, p->astr[d]));
    bo = add(f, bo, mul(f, id, p->bstr[d]));
  }
  Mats mt = {.a = at(f, field[0], ao),
             .bias = p->bias ? field[2] : NULL,
             .y = at(f, field[3], mul(f, bi, p->m * p->n))};
  LLVMValueRef b = p->packed ? packed : at(f, field[1], bo);
  int64_t rows_per_group = p->row_tiles_per_group * p->mr;
  LLVMValueRef r0 = mul(f, rg, rows_per_group);
  LLVMValueRef r1 = min64(f, add(f, r0, i64c(f, rows_per_group)), i64c(f, p->m));
  /* The group's full panels. */
  if (p->npanels > 0) {
    LLVMValueRef p0 = mul(f, pg, p->panels_per_group);
    LLVMValueRef p1 = min64(f, add(f, p0, i64c(f, p->panels_per_group)), i64c(f, p->npanels));
    Loop l;
    LLVMValueRef pi = loop_open(f, &l, p0, p1, 1);
    emit_block(f, p, &mt, b, r0, r1, mul(f, pi, PANEL), mul(f, pi, PANEL * p->k), PANEL,
               p->nrv, p->lanes);
    loop_close(f, &l, p0);
  }
  /* The last group: the columns past the panels. */
  if (p->tail_vecs > 0 || p->tail_cols > 0) {
    LLVMBasicBlockRef tail = LLVMAppendBasicBlockInContext(f->ctx, f->fn, "tail");
    LLVMBasicBlockRef done = LLVMAppendBasicBlockInContext(f->ctx, f->fn, "tail.end");
    LLVMBuildCondBr(f->b, LLVMBuildICmp(f->b, LLVMIntEQ, pg, i64c(f, p->pgroups - 1), ""), tail,
                    done);
    LLVMPositionBuilderAtEnd(f->b, tail);
    int64_t j0 = p->npanels * PANEL;
    if (p->tail_vecs > 0) {
      int64_t width = p->tail_vecs * p->lanes;
      emit_block(f, p, &mt, b, r0, r1, i64c(f, j0), i64c(f, j0 * p->k), width,
                 (int)p->tail_vecs, p->lanes);
      j0 += width;
    }
    if (p->tail_cols > 0)
      emit_block(f, p, &mt, b, r0, r1, i64c(f, j0), i64c(f, j0 * p->k), p->tail_cols,
                 (int)p->tail_cols, 1);
    LLVMBuildBr(f->b, done);
    LLVMPositionBuilderAtEnd(f->b, done);
  }
  LLVMBuildRetVoid(f->b);
  LLVMDisposeBuilder(f->b);
  return f->fn;
}

/* W [n, k] in the kernel's order: 16-column panels [k][16], then the tail's
 * vector columns [k][tail_vecs * lanes] and single columns [k][tail_cols]. */
static void pack_w(const Plan *p, const float *w, float *dst) {
  int64_t j0 = 0;
  float *o = dst;
  while (j0 < p->n) {
    int64_t width = j0 + PANEL <= p->n ? PANEL : j0 < p->npanels * PANEL + p->tail_vecs * p->lanes
                                                     ? p->tail_vecs * p->lanes
                                                     : p->tail_cols;
    for (int64_t kk = 0; kk < p->k; kk++)
      for (int64_t c = 0; c < width; c++)
        *o++ = w[(j0 + c) * p->k + kk];
    j0 += width;
  }
}

/* Split into tasks of at least min_task_macs each, at most MAX_TASKS: whole
 * matrices first, then panel groups, then row groups. */
static void plan_tasks(Plan *p) {
  int64_t macs = p->batch * p->m * p->n * p->k;
  int64_t want = macs / min_task_macs;
  if (want > MAX_TASKS)
    want = MAX_TASKS;
  int64_t per = want > p->batch ? (want + p->batch - 1) / p->batch : 1;
  int64_t panels = p->npanels > 0 ? p->npanels : 1;
  int64_t pg = per < panels ? per : panels;
  p->panels_per_group = (p->npanels + pg - 1) / pg;
  p->pgroups = p->npanels > 0 ? (p->npanels + p->panels_per_group - 1) / p->panels_per_group : 1;
  int64_t tiles = (p->m + p->mr - 1) / p->mr;
  int64_t rg = (per + p->pgroups - 1) / p->pgroups;
  if (rg > tiles)
    rg = tiles;
  if (rg < 1)
    rg = 1;
  p->row_tiles_per_group = (tiles + rg - 1) / rg;
  p->rgroups = (tiles + p->row_tiles_per_group - 1) / p->row_tiles_per_group;
}

bool cg_emit_f32gemm(Cg *cg, int idx, CgIsa isa, LLVMValueRef *in, LLVMValueRef y) {
  const IrNode *n = cg->m->nodes[idx];
  if (cg->o->scalar_floatops || n->result->type.dtype != IR_F32)
    return false;
  Plan p = {.batch = 1, .lanes = (unsigned)cg_isa_info[isa].nr};
  if (p.lanes < 1 || p.lanes > PANEL || PANEL % p.lanes != 0)
    return false;
  p.nrv = PANEL / (int)p.lanes;
  /* Accumulators fill what the panel's vectors, an x broadcast and a
   * product leave. */
  p.mr = (cg_isa_info[isa].vregs - p.nrv - 2) / p.nrv;
  p.mr = p.mr < 1 ? 1 : p.mr > MAX_MR ? MAX_MR : p.mr;
  const IrType *at_ = &n->opnds[0]->type, *yt = &n->result->type;
  if (n->op == IR_OP_LINEAR) {
    const IrValue *w = n->opnds[1];
    if (w->kind != IR_VAL_CONST || !ir_const_has_data(w) || w->type.dtype != IR_F32 ||
        n->opnds[0]->type.dtype != IR_F32)
      return false;
    const Loc *xl = &cg->loc[n->opnds[0]->id];
    p.m = xl->rows;
    p.k = xl->cols;
    p.n = w->type.dims[0];
    p.packed = true;
    p.bias = n->nopnds == 3;
  } else if (n->op == IR_OP_MATMUL) {
    const IrType *bt = &n->opnds[1]->type;
    if (at_->dtype != IR_F32 || bt->dtype != IR_F32)
      return false;
    p.m = at_->dims[at_->rank - 2];
    p.k = at_->dims[at_->rank - 1];
    p.n = bt->dims[bt->rank - 1];
    p.brank = yt->rank - 2;
    ir_broadcast_strides(at_->dims, at_->rank - 2, p.m * p.k, p.brank, p.astr);
    ir_broadcast_strides(bt->dims, bt->rank - 2, p.k * p.n, p.brank, p.bstr);
    bool b_shared = true, a_whole = true;
    int64_t s = p.m * p.k;
    for (int d = p.brank - 1; d >= 0; d--) {
      p.bdims[d] = yt->dims[d];
      p.batch *= yt->dims[d];
      b_shared = b_shared && p.bstr[d] == 0;
      a_whole = a_whole && p.astr[d] == s;
      s *= yt->dims[d];
    }
    /* One B for every matrix of a contiguous A: one matrix of all rows. */
    if (b_shared && a_whole) {
      p.m *= p.batch;
      p.batch = 1;
      p.brank = 0;
    }
  } else {
    return false;
  }
  if (p.m <= 0 || p.k <= 0 || p.n <= 0 || p.batch <= 0)
    return false;
  p.npanels = p.n / PANEL;
  p.tail_vecs = p.n % PANEL / p.lanes;
  p.tail_cols = p.n % PANEL % p.lanes;
  plan_tasks(&p);
  if (!cg->kernel[idx]) {
    char name[400];
    LLVMValueRef packed = NULL;
    if (p.packed) {
      /* In-process code (jit.c) packs into memory the JIT keeps, read by
       * address: the only copy of W made. */
      const IrValue *w = n->opnds[1];
      size_t bytes = (size_t)(p.n * p.k) * sizeof(float);
      float *buf = cg->o->held ? cg_held_alloc(cg->o->held, bytes) : malloc(bytes);
      if (!buf)
        return false;
      pack_w(&p, ir_const_data(cg->m, w), buf);
      /* In-process code may read another use of W by address (lower.c's
       * const_global): its f32 form stays then. */
      if (!cg->o->held || ir_count_uses(cg->m, w) == 1)
        ir_const_release(cg->m, w);
      snprintf(name, sizeof name, "%s.%s.f32pack_%s", cg->prefix, n->result->name,
               cg_isa_info[isa].name);
      if (cg->o->held) {
        packed = cg_const_addr(cg, buf);
      } else {
        packed = cg_const_bytes(cg, name, buf, bytes);
        free(buf);
      }
    }
    snprintf(name, sizeof name, "%s.%s.f32gemm_%dx%d_%s", cg->prefix, n->result->name, p.mr,
             PANEL, cg_isa_info[isa].name);
    cg->kernel[idx] = emit_task_fn(cg, name, isa, &p, packed);
    cg->kernel_tasks[idx] = p.batch * p.rgroups * p.pgroups;
  }
  /* F32GemmArgs {a, b, bias, y} on the entry's stack. */
  LLVMTypeRef args_ty =
      LLVMStructTypeInContext(cg->ctx, (LLVMTypeRef[]){cg->ptr, cg->ptr, cg->ptr, cg->ptr}, 4, 0);
  LLVMValueRef args = LLVMBuildAlloca(cg->b, args_ty, "f32gemm.args");
  LLVMValueRef vals[4] = {in[0], p.packed ? LLVMConstNull(cg->ptr) : in[1],
                          p.bias ? in[2] : LLVMConstNull(cg->ptr), y};
  for (unsigned i = 0; i < 4; i++)
    LLVMBuildStore(cg->b, vals[i], LLVMBuildStructGEP2(cg->b, args_ty, args, i, ""));
  /* lower.c made W's own constant for the reference call's operand: when
   * nothing else uses it, drop it now (its bytes would be a second copy of
   * the weights in the module until the optimizer removed it); a later use
   * makes it again. */
  if (p.packed) {
    Loc *wl = &cg->loc[n->opnds[1]->id];
    if (wl->global && !LLVMGetFirstUse(wl->global)) {
      LLVMDeleteGlobal(wl->global);
      wl->global = NULL;
    }
  }
  /* As emit_qgemm: below ~2^18 multiply-adds a hand-off costs more than it
   * saves. */
  cg_run_tasks(cg, cg->kernel[idx], args, cg->kernel_tasks[idx],
               p.batch * p.m * p.n * p.k >= (1 << 18));
  return true;
}
