/* gemm_tasks.c: the part of an int8 GEMM kernel every backend shares: the
 * checks of a CgGemm, the split of the work into tasks, and the task
 * function that walks a task's channel blocks and row tiles and calls the
 * backend's tile functions (x86/qgemm.c, aarch64/qgemm.c), and the kernel's
 * name. A backend brings its packing and its tiles; the loop around them is
 * the same everywhere. cg_emit_qgemm picks the backend from the variant's
 * architecture (CgArch.emit_qgemm).
 *
 *   void KERNEL(CgGemmArgs *args, int64_t task)
 *     for nb in this task's channel blocks        (weights of a block stay in
 *       for mt in this task's row tiles            cache across its row tiles)
 *         tile[last row tile?][last block?](x + mt rows, y + nb block + mt
 * rows, w + nb block, bias + nb, mult + nb, rows + mt rows)
 *
 * With a run-time M (CgGemm.runtime_m) the tile is picked by the rows left
 * in the row tile (a switch), and a task of one row tile (every task when
 * M fits one, as at M = 1) switches once and then walks its channel blocks
 * with that tile, as the loop of a fixed M does.
 *
 * w, bias and mult are the kernel's constants, or come in CgGemmArgs when the
 * weights are packed at run time (runtime_w: qmatmul, qmatmul_dyn); rows
 * (CgGemmRow) only with row_terms.
 *
 * Tasks split the channel blocks (and, for large M, the row tiles) into
 * contiguous ranges of at least ~2M multiply-adds each (~10 us at one core's
 * int8 peak, well above a ~1 us thread hand-off), at most 64 tasks. */
#include <stdio.h>
#include <string.h>

#include "codegen.h"

enum { MAX_TASKS = 64 };
static const int64_t min_task_macs = (int64_t)1 << 21;

LLVMValueRef cg_emit_qgemm(LLVMModuleRef mod, const CgGemm *g, CgIsa isa, int64_t *ntasks,
                           char *err, size_t errlen) {
  return cg_arch_of(isa)->emit_qgemm(mod, g, isa, ntasks, err, errlen);
}

bool cg_gemm_check(const CgGemm *g, char *err, size_t errlen) {
  if (g->m <= 0 || g->k <= 0 || g->n <= 0 || g->x_stride < g->k || g->x_stride % 4 != 0 ||
      g->y_stride < g->n) {
    snprintf(err, errlen, "qgemm %s: bad shape m=%lld k=%lld n=%lld x_stride=%lld y_stride=%lld",
             g->name, (long long)g->m, (long long)g->k, (long long)g->n, (long long)g->x_stride,
             (long long)g->y_stride);
    return false;
  }
  if ((g->x_dtype != IR_U8 && g->x_dtype != IR_I8) ||
      (g->y_dtype != IR_U8 && g->y_dtype != IR_I8 && g->y_dtype != IR_F32)) {
    snprintf(err, errlen, "qgemm %s: unsupported types %s -> %s", g->name,
             ir_dtype_name(g->x_dtype), ir_dtype_name(g->y_dtype));
    return false;
  }
  return true;
}

/* XNNPACK's spelling of the input and output types. */
static const char *x_type_name(IrDType t) { return t == IR_I8 ? "qs8" : "qu8"; }

bool cg_gemm_name(LLVMModuleRef mod, const CgGemm *g, CgIsa isa, int mr, int64_t nc, int kc,
                  char *name, size_t size, char *err, size_t errlen) {
  int len = snprintf(name, size, "%s.q8_gemm_%s_%s_%dx%lldc%d_%s", g->name,
                     x_type_name(g->x_dtype), ir_dtype_name(g->y_dtype), mr, (long long)nc, kc,
                     cg_isa_info[isa].name);
  if (len < 0 || (size_t)len >= size) {
    snprintf(err, errlen, "qgemm %s: the kernel's name is too long", g->name);
    return false;
  }
  if (LLVMGetNamedFunction(mod, name)) {
    snprintf(err, errlen, "qgemm %s: a function named %s exists", g->name, name);
    return false;
  }
  return true;
}

/* How many chunks of channel blocks and of row tiles: n_chunks * m_chunks
 * tasks of at least min_task_macs each where the layer allows. */
static void split_tasks(const CgGemm *g, const CgGemmTiles *t, int64_t *n_chunks,
                        int64_t *m_chunks) {
  int64_t want = g->m * g->n * g->k / min_task_macs;
  want = want < 1 ? 1 : want > MAX_TASKS ? MAX_TASKS : want;
  *n_chunks = want < t->nblocks ? want : t->nblocks;
  int64_t mc = want / *n_chunks;
  *m_chunks = mc < 1 ? 1 : mc > t->mtiles ? t->mtiles : mc;
}

typedef struct {
  LLVMBuilderRef b;
  LLVMTypeRef i64, ptr;
} Emit;

static LLVMValueRef i64c(Emit *e, int64_t v) { return LLVMConstInt(e->i64, (uint64_t)v, 1); }

static LLVMValueRef at(Emit *e, LLVMValueRef base, LLVMValueRef i, int64_t scale) {
  return cg_at(e->b, base, i, scale, 0);
}

/* (c * count) / chunks: the first item of chunk c of `count` split evenly. */
static LLVMValueRef chunk_start(Emit *e, LLVMValueRef c, LLVMValueRef count, LLVMValueRef chunks) {
  return LLVMBuildUDiv(e->b, LLVMBuildMul(e->b, c, count, ""), chunks, "");
}

static LLVMValueRef umin(Emit *e, LLVMValueRef a, LLVMValueRef b) {
  return LLVMBuildSelect(e->b, LLVMBuildICmp(e->b, LLVMIntULT, a, b, ""), a, b, "");
}

static LLVMValueRef umax(Emit *e, LLVMValueRef a, LLVMValueRef b) {
  return LLVMBuildSelect(e->b, LLVMBuildICmp(e->b, LLVMIntUGT, a, b, ""), a, b, "");
}

/* split_tasks for a run-time M (m rows, m >= 1): the same rule, in IR. */
static void split_tasks_rt(Emit *e, const CgGemm *g, const CgGemmTiles *t, LLVMValueRef m,
                           LLVMValueRef *n_chunks, LLVMValueRef *m_chunks, LLVMValueRef *mtiles) {
  LLVMValueRef macs = LLVMBuildMul(e->b, m, i64c(e, g->n * g->k), "");
  LLVMValueRef want = LLVMBuildUDiv(e->b, macs, i64c(e, min_task_macs), "");
  want = umin(e, umax(e, want, i64c(e, 1)), i64c(e, MAX_TASKS));
  *n_chunks = umin(e, want, i64c(e, t->nblocks));
  *mtiles = LLVMBuildUDiv(e->b, LLVMBuildAdd(e->b, m, i64c(e, t->tile_rows - 1), ""),
                          i64c(e, t->tile_rows), "");
  LLVMValueRef mc = LLVMBuildUDiv(e->b, want, *n_chunks, "");
  *m_chunks = umin(e, umax(e, mc, i64c(e, 1)), *mtiles);
}

/* `int64_t NAME.ntasks(int64_t m)`: the task count of a run-time M. */
static void emit_ntasks_fn(LLVMModuleRef mod, const CgGemm *g, CgIsa isa, const CgGemmTiles *t) {
  LLVMContextRef ctx = LLVMGetModuleContext(mod);
  Emit e = {LLVMCreateBuilderInContext(ctx), LLVMInt64TypeInContext(ctx),
            LLVMPointerTypeInContext(ctx, 0)};
  char name[600];
  snprintf(name, sizeof name, "%s.ntasks", t->name);
  LLVMValueRef fn = LLVMAddFunction(mod, name, LLVMFunctionType(e.i64, &e.i64, 1, 0));
  LLVMSetLinkage(fn, LLVMPrivateLinkage);
  cg_set_isa_attrs(fn, isa);
  LLVMPositionBuilderAtEnd(e.b, LLVMAppendBasicBlockInContext(ctx, fn, "entry"));
  LLVMValueRef nc, mc, mt;
  split_tasks_rt(&e, g, t, LLVMGetParam(fn, 0), &nc, &mc, &mt);
  LLVMBuildRet(e.b, LLVMBuildMul(e.b, nc, mc, ""));
  LLVMDisposeBuilder(e.b);
}

static LLVMValueRef load_ptr(Emit *e, LLVMValueRef p) { return cg_load(e->b, e->ptr, p, 8); }

/* Call tile[0], or tile[1] instead when last_n (the last channel block,
 * which differs; NULL when none does) holds, then go on to next. */
static void call_tile(Emit *e, LLVMValueRef fn, LLVMTypeRef tile_ty, LLVMValueRef const tile[2],
                      LLVMValueRef last_n, LLVMValueRef *targs, LLVMBasicBlockRef next) {
  if (last_n) {
    LLVMContextRef ctx = LLVMGetTypeContext(tile_ty);
    LLVMBasicBlockRef full = LLVMAppendBasicBlockInContext(ctx, fn, "n.full");
    LLVMBasicBlockRef last = LLVMAppendBasicBlockInContext(ctx, fn, "n.last");
    LLVMBuildCondBr(e->b, last_n, last, full);
    LLVMPositionBuilderAtEnd(e->b, full);
    LLVMBuildCall2(e->b, tile_ty, tile[0], targs, 6, "");
    LLVMBuildBr(e->b, next);
    LLVMPositionBuilderAtEnd(e->b, last);
    LLVMBuildCall2(e->b, tile_ty, tile[1], targs, 6, "");
  } else {
    LLVMBuildCall2(e->b, tile_ty, tile[0], targs, 6, "");
  }
  LLVMBuildBr(e->b, next);
}

/* What the tiles of a channel block and row tile are called with. */
typedef struct {
  const CgGemmTiles *t;
  const CgGemm *g;
  LLVMValueRef w, bias, mult, y, x, rows;
  int64_t ysize;
} Block;

/* The tile arguments of channel block nb and row tile mt (x, y, w, bias,
 * mult, rows at them), and whether nb is the last block. */
static void block_args(Emit *e, const Block *k, LLVMValueRef nb, LLVMValueRef mt,
                       LLVMValueRef targs[6], LLVMValueRef *last_n) {
  const CgGemmTiles *t = k->t;
  const CgGemm *g = k->g;
  LLVMValueRef wb;
  if (t->w_interleave > 1) /* blocks sharing the groups of a packed block */
    wb = cg_at(e->b,
               at(e, k->w, LLVMBuildUDiv(e->b, nb, i64c(e, t->w_interleave), ""),
                  t->w_interleave * t->block_weight_bytes),
               LLVMBuildURem(e->b, nb, i64c(e, t->w_interleave), ""), t->w_sub_bytes, 0);
  else
    wb = at(e, k->w, nb, t->block_weight_bytes);
  LLVMValueRef yb = at(e, k->y, nb, t->block_channels * k->ysize);
  targs[0] = at(e, k->x, mt, t->tile_rows * g->x_stride);
  targs[1] = at(e, yb, mt, t->tile_rows * g->y_stride * k->ysize);
  targs[2] = wb;
  targs[3] = at(e, k->bias, nb, t->block_channels * 4);
  targs[4] = at(e, k->mult, nb, t->block_channels * 4);
  targs[5] = g->row_terms ? at(e, k->rows, mt, t->tile_rows * (int64_t)sizeof(CgGemmRow))
                          : k->rows;
  *last_n = LLVMBuildICmp(e->b, LLVMIntEQ, nb, i64c(e, t->nblocks - 1), "");
}

/* A switch on the rows left in row tile mt of m rows, min(tile_rows, m -
 * mt * tile_rows), to cases[r] (1 <= r <= tile_rows, new blocks). */
static void rows_switch(Emit *e, LLVMContextRef ctx, LLVMValueRef fn, LLVMValueRef m,
                        LLVMValueRef mt, int tile_rows, LLVMBasicBlockRef *cases) {
  LLVMValueRef left = LLVMBuildSub(e->b, m, LLVMBuildMul(e->b, mt, i64c(e, tile_rows), ""), "");
  left = umin(e, left, i64c(e, tile_rows));
  for (int r = 1; r <= tile_rows; r++)
    cases[r] = LLVMAppendBasicBlockInContext(ctx, fn, "m.rows");
  LLVMValueRef sw = LLVMBuildSwitch(e->b, left, cases[tile_rows], (unsigned)tile_rows - 1);
  for (int r = 1; r < tile_rows; r++)
    LLVMAddCase(sw, i64c(e, r), cases[r]);
}

LLVMValueRef cg_emit_gemm_tasks(LLVMModuleRef mod, const CgGemm *g, CgIsa isa, const CgGemmTiles *t,
                                int64_t *ntasks) {
  LLVMContextRef ctx = LLVMGetModuleContext(mod);
  Emit e = {LLVMCreateBuilderInContext(ctx), LLVMInt64TypeInContext(ctx),
            LLVMPointerTypeInContext(ctx, 0)};
  LLVMTypeRef vd = LLVMVoidTypeInContext(ctx);
  int64_t n_chunks = 1, m_chunks = 1;
  if (g->runtime_m)
    emit_ntasks_fn(mod, g, isa, t);
  else
    split_tasks(g, t, &n_chunks, &m_chunks);
  *ntasks = n_chunks * m_chunks;
  bool m_edge = t->tile[1][0] != NULL,
       n_edge = (g->runtime_m ? t->rtile[t->tile_rows][1] : t->tile[0][1]) != NULL;
  int64_t ysize = g->y_dtype == IR_F32 ? 4 : 1;

  LLVMTypeRef tty = LLVMFunctionType(vd, (LLVMTypeRef[]){e.ptr, e.i64}, 2, 0);
  LLVMValueRef fn = LLVMAddFunction(mod, t->name, tty);
  cg_set_isa_attrs(fn, isa);
  LLVMValueRef args = LLVMGetParam(fn, 0), task = LLVMGetParam(fn, 1);
  LLVMBasicBlockRef entry = LLVMAppendBasicBlockInContext(ctx, fn, "entry");
  LLVMBasicBlockRef nloop = LLVMAppendBasicBlockInContext(ctx, fn, "n.loop");
  LLVMBasicBlockRef mloop = LLVMAppendBasicBlockInContext(ctx, fn, "m.loop");
  LLVMBasicBlockRef mnext = LLVMAppendBasicBlockInContext(ctx, fn, "m.next");
  LLVMBasicBlockRef nnext = LLVMAppendBasicBlockInContext(ctx, fn, "n.next");
  LLVMBasicBlockRef done = LLVMAppendBasicBlockInContext(ctx, fn, "done");

  /* This task's channel blocks [nb0, nb1) and row tiles [mt0, mt1). */
  LLVMPositionBuilderAtEnd(e.b, entry);
  LLVMValueRef x = load_ptr(&e, args);
  LLVMValueRef y = load_ptr(&e, at(&e, args, i64c(&e, 1), sizeof(void *)));
  /* Weights packed at run time, and the rows' terms (CgGemmArgs). */
  LLVMValueRef w = t->w, bias = t->bias, mult = t->mult, rows = LLVMConstNull(e.ptr);
  if (g->runtime_w) {
    w = load_ptr(&e, at(&e, args, i64c(&e, 2), sizeof(void *)));
    bias = load_ptr(&e, at(&e, args, i64c(&e, 3), sizeof(void *)));
    mult = load_ptr(&e, at(&e, args, i64c(&e, 4), sizeof(void *)));
  }
  if (g->row_terms)
    rows = load_ptr(&e, at(&e, args, i64c(&e, 5), sizeof(void *)));
  if (t->w_base) /* in the mapped weights file */
    w = cg_at(e.b, load_ptr(&e, t->w_base), i64c(&e, t->w_offset), 1, 0);
  /* The split: constants, or from a run-time M (CgGemmArgs.m). */
  LLVMValueRef n_chunks_v = i64c(&e, n_chunks), m_chunks_v = i64c(&e, m_chunks);
  LLVMValueRef mtiles_v = i64c(&e, t->mtiles), m = NULL;
  if (g->runtime_m) {
    m = cg_load(e.b, e.i64, at(&e, args, i64c(&e, 6), sizeof(void *)), 8);
    split_tasks_rt(&e, g, t, m, &n_chunks_v, &m_chunks_v, &mtiles_v);
  }
  LLVMValueRef nc = LLVMBuildURem(e.b, task, n_chunks_v, "");
  LLVMValueRef mc = LLVMBuildUDiv(e.b, task, n_chunks_v, "");
  LLVMValueRef one = i64c(&e, 1), nblocks_v = i64c(&e, t->nblocks);
  LLVMValueRef nb0 = chunk_start(&e, nc, nblocks_v, n_chunks_v);
  LLVMValueRef nb1 = chunk_start(&e, LLVMBuildAdd(e.b, nc, one, ""), nblocks_v, n_chunks_v);
  LLVMValueRef mt0 = chunk_start(&e, mc, mtiles_v, m_chunks_v);
  LLVMValueRef mt1 = chunk_start(&e, LLVMBuildAdd(e.b, mc, one, ""), mtiles_v, m_chunks_v);

  LLVMTypeRef pt[6] = {e.ptr, e.ptr, e.ptr, e.ptr, e.ptr, e.ptr};
  LLVMTypeRef tile_ty = LLVMFunctionType(vd, pt, 6, 0);
  Block blk = {t, g, w, bias, mult, y, x, rows, ysize};
  LLVMBasicBlockRef pre = entry;
  if (g->runtime_m) {
    /* A task of one row tile (every task when m <= tile_rows, as at
     * M = 1): the switch over its row count once, and a loop over the
     * channel blocks for each, as the kernel of a fixed M has it, rather
     * than a switch per block. */
    LLVMBasicBlockRef single = LLVMAppendBasicBlockInContext(ctx, fn, "one.tile");
    pre = LLVMAppendBasicBlockInContext(ctx, fn, "tiles");
    LLVMBuildCondBr(e.b,
                    LLVMBuildICmp(e.b, LLVMIntEQ, LLVMBuildSub(e.b, mt1, mt0, ""), one, ""),
                    single, pre);
    LLVMPositionBuilderAtEnd(e.b, single);
    LLVMBasicBlockRef cases[CG_MAX_TILE_ROWS + 1];
    rows_switch(&e, ctx, fn, m, mt0, t->tile_rows, cases);
    for (int r = 1; r <= t->tile_rows; r++) {
      LLVMPositionBuilderAtEnd(e.b, cases[r]);
      LLVMBasicBlockRef loop = LLVMAppendBasicBlockInContext(ctx, fn, "one.n");
      LLVMBasicBlockRef next = LLVMAppendBasicBlockInContext(ctx, fn, "one.n.next");
      LLVMBuildBr(e.b, loop);
      LLVMPositionBuilderAtEnd(e.b, loop);
      LLVMValueRef nbr = LLVMBuildPhi(e.b, e.i64, "nb");
      LLVMValueRef targs[6], last_nr;
      block_args(&e, &blk, nbr, mt0, targs, &last_nr);
      call_tile(&e, fn, tile_ty, t->rtile[r], n_edge ? last_nr : NULL, targs, next);
      LLVMPositionBuilderAtEnd(e.b, next);
      LLVMValueRef nbr_next = LLVMBuildAdd(e.b, nbr, one, "");
      LLVMBuildCondBr(e.b, LLVMBuildICmp(e.b, LLVMIntULT, nbr_next, nb1, ""), loop, done);
      LLVMAddIncoming(nbr, &nb0, &cases[r], 1);
      LLVMAddIncoming(nbr, &nbr_next, &next, 1);
    }
    LLVMPositionBuilderAtEnd(e.b, pre);
  }
  LLVMBuildBr(e.b, nloop);

  /* For each channel block (its weights, bias and multipliers) and each
   * row tile: call the tile that fits it. */
  LLVMPositionBuilderAtEnd(e.b, nloop);
  LLVMValueRef nb = LLVMBuildPhi(e.b, e.i64, "nb");
  LLVMBuildBr(e.b, mloop);
  LLVMPositionBuilderAtEnd(e.b, mloop);
  LLVMValueRef mt = LLVMBuildPhi(e.b, e.i64, "mt");
  LLVMValueRef targs[6], last_n;
  block_args(&e, &blk, nb, mt, targs, &last_n);
  LLVMValueRef last_m = LLVMBuildICmp(e.b, LLVMIntEQ, mt, LLVMBuildSub(e.b, mtiles_v, one, ""), "");
  if (g->runtime_m) {
    /* The rows left in this tile: a switch over the tiles of each row
     * count. */
    LLVMBasicBlockRef cases[CG_MAX_TILE_ROWS + 1];
    rows_switch(&e, ctx, fn, m, mt, t->tile_rows, cases);
    for (int r = 1; r <= t->tile_rows; r++) {
      LLVMPositionBuilderAtEnd(e.b, cases[r]);
      call_tile(&e, fn, tile_ty, t->rtile[r], n_edge ? last_n : NULL, targs, mnext);
    }
  }
  for (int lm = 0; !g->runtime_m && lm <= (int)m_edge; lm++) {
    LLVMBasicBlockRef other = NULL;
    if (m_edge && lm == 0) {
      LLVMBasicBlockRef here = LLVMAppendBasicBlockInContext(ctx, fn, "m.full");
      other = LLVMAppendBasicBlockInContext(ctx, fn, "m.last");
      LLVMBuildCondBr(e.b, last_m, other, here);
      LLVMPositionBuilderAtEnd(e.b, here);
    }
    call_tile(&e, fn, tile_ty, t->tile[lm], n_edge ? last_n : NULL, targs, mnext);
    if (other)
      LLVMPositionBuilderAtEnd(e.b, other);
  }

  LLVMPositionBuilderAtEnd(e.b, mnext);
  LLVMValueRef mt_next = LLVMBuildAdd(e.b, mt, one, "");
  LLVMBuildCondBr(e.b, LLVMBuildICmp(e.b, LLVMIntULT, mt_next, mt1, ""), mloop, nnext);
  LLVMAddIncoming(mt, &mt0, &nloop, 1);
  LLVMAddIncoming(mt, &mt_next, &mnext, 1);

  LLVMPositionBuilderAtEnd(e.b, nnext);
  LLVMValueRef nb_next = LLVMBuildAdd(e.b, nb, one, "");
  LLVMBuildCondBr(e.b, LLVMBuildICmp(e.b, LLVMIntULT, nb_next, nb1, ""), nloop, done);
  LLVMAddIncoming(nb, &nb0, &pre, 1);
  LLVMAddIncoming(nb, &nb_next, &nnext, 1);

  LLVMPositionBuilderAtEnd(e.b, done);
  LLVMBuildRetVoid(e.b);
  LLVMDisposeBuilder(e.b);
  return fn;
}
