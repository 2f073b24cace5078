/* attention.c: qmatmul, qmatmul_dyn and qlinear_dyn lowered to the int8 GEMM
 * kernels of qgemm (x86/qgemm.c, aarch64/qgemm.c) rather than to reference
 * calls. Their operands' zero points and scales are known only at run time
 * (or the right operand is an activation), so the kernel is emitted with
 * CgGemm.runtime_w / row_terms / row_scale, and the entry prepares, per
 * matrix of the batch (each head), what qgemm's fold-constants prepares at
 * compile time:
 *
 *   qmatmul      x [.., M, K] u8/i8 (f32: quantized first), b [.., K, N]
 *     for each batch index:
 *       pack b as the kernel's weights, wq[n, k] = b[k, n] (^ 0x80 for u8),
 *         with its column sums and bias = flip * colsum      (NAME.q8_pack_b)
 *       each row's terms: add = c (rowsum_x - K zx), zp = zx (NAME.q8_rows)
 *       the kernel: acc + bias + add - zx colsum, requantized as qmatmul's
 *   qmatmul_dyn  x, b f32
 *     for each batch index:
 *       b quantized from its own range (one row of K N), then packed
 *       each row of x quantized from its own range with its terms
 *       the kernel, f32(acc) * f32(sx * sb)
 *   qlinear_dyn  x f32, W constant: the rows of x quantized with their terms,
 *       then the kernel with W packed at compile time, colsum constant,
 *       f32(f32(acc) * f32(sx * sw[n])) + b[n]; {granularity = tensor}: one
 *       range for all rows (ONNX's DynamicQuantizeLinear), and the rows'
 *       terms carry c = -w_zero_point
 *   qlinear_outl  qlinear_dyn's kernel, after q8_ref_outl_detect lists the
 *       batch's outlier columns and (when there are some) copies x with
 *       them zeroed, which the rows are quantized from instead; then
 *       q8_ref_outl_correct adds their f32 products with Wt
 *
 * c = 128 - zb for u8 b (the kernel multiplies b - 128), -zb for i8, so that
 * sum (x - zx)(b - zb) = sum x w + c rowsum_x - zx colsum_w - K zx c in
 * wrapping int32: the reference's value. The algebra, the layout and the
 * measured speed are in docs/kernels.md, "Int8 attention and dynamic
 * layers". */
#include <stdio.h>
#include <string.h>

#include "module.h"

/* The parts of a node's scratch slot (offsets from its start). */
typedef struct {
  int64_t xq, bq, w, bias, mult, rows, xz, cols, total;
} Slot;

static int64_t take(int64_t *at, int64_t bytes) {
  int64_t here = *at;
  *at += cg_round_up(bytes > 0 ? bytes : 1, 64);
  return here;
}

/* x [.., M, K] and b [.., K, N]: batch, M, K, N. */
static void mm_dims(const IrNode *n, int64_t *batch, int64_t *mm, int64_t *k, int64_t *nn) {
  const IrType *xt = &n->opnds[0]->type, *bt = &n->opnds[1]->type;
  *mm = xt->dims[xt->rank - 2];
  *k = xt->dims[xt->rank - 1];
  *nn = bt->dims[bt->rank - 1];
  *batch = 1;
  for (int i = 0; i < xt->rank - 2; i++)
    *batch *= xt->dims[i];
}

/* Whether node n runs the kernels: every dimension positive (else the
 * reference call, which then needs no scratch). */
static bool uses_kernel(const IrNode *n) {
  if (n->op == IR_OP_QLINEAR_DYN || n->op == IR_OP_QLINEAR_OUTL) {
    const IrType *xt = &n->opnds[0]->type, *wt = &n->opnds[1]->type;
    int64_t rows;
    ir_type_numel(xt, 1, &rows);
    return wt->dims[0] > 0 && wt->dims[1] > 0 && rows > 0;
  }
  int64_t batch, mm, k, nn;
  mm_dims(n, &batch, &mm, &k, &nn);
  return batch > 0 && mm > 0 && k > 0 && nn > 0;
}

static Slot slot_of(const IrNode *n) {
  Slot s = {0};
  int64_t at = 0;
  if (n->op == IR_OP_QLINEAR_DYN || n->op == IR_OP_QLINEAR_OUTL) {
    const IrType *xt = &n->opnds[0]->type, *wt = &n->opnds[1]->type;
    int64_t k = wt->dims[1], numel;
    ir_type_numel(xt, 1, &numel);
    int64_t rows = numel / k;
    s.xq = take(&at, rows * cg_round_up(k, 4));
    s.rows = take(&at, rows * (int64_t)sizeof(CgGemmRow));
    if (n->op == IR_OP_QLINEAR_OUTL) {
      /* x with the outlier columns zeroed, and the list of those columns. */
      s.xz = take(&at, numel * 4);
      s.cols = take(&at, k * 4);
    }
    s.total = at;
    return s;
  }
  int64_t batch, mm, k, nn;
  mm_dims(n, &batch, &mm, &k, &nn);
  bool dyn = n->op == IR_OP_QMATMUL_DYN;
  bool xf = n->opnds[0]->type.dtype == IR_F32, bf = n->opnds[1]->type.dtype == IR_F32;
  /* Every backend's packed weights fit round_up(N, 16) x round_up(K, 16). */
  int64_t npad = cg_round_up(nn, 16);
  s.xq = take(&at, xf ? (dyn ? 1 : batch) * mm * cg_round_up(k, 4) : 0);
  s.bq = take(&at, bf ? (dyn ? 1 : batch) * cg_round_up(k * nn, 4) : 0);
  s.w = take(&at, npad * cg_round_up(k, 16));
  s.bias = take(&at, 2 * npad * 4);
  s.mult = take(&at, 2 * npad * 4);
  s.rows = take(&at, mm * (int64_t)sizeof(CgGemmRow));
  s.total = at;
  return s;
}

int64_t cg_attention_scratch(const IrNode *n) {
  if (n->op != IR_OP_QMATMUL && n->op != IR_OP_QMATMUL_DYN && n->op != IR_OP_QLINEAR_DYN &&
      n->op != IR_OP_QLINEAR_OUTL)
    return -1;
  return uses_kernel(n) ? slot_of(n).total : -1;
}

/* ---- the functions emitted beside the kernel ---- */

typedef struct {
  LLVMContextRef ctx;
  LLVMModuleRef mod;
  LLVMBuilderRef b;
  LLVMValueRef fn;
  LLVMTypeRef i8, i32, i64, ptr;
} Fn;

static LLVMValueRef i64k(Fn *f, int64_t v) { return LLVMConstInt(f->i64, (uint64_t)v, 1); }
static LLVMValueRef i32k(Fn *f, int64_t v) { return LLVMConstInt(f->i32, (uint64_t)v, 1); }

/* A new function `name` of the variant taking `nparams` pointers. */
static Fn new_fn(Cg *cg, const char *name, CgIsa isa, int nparams) {
  Fn f = {.ctx = cg->ctx, .mod = cg->mod, .i8 = cg->i8, .i32 = cg->i32, .i64 = cg->i64,
          .ptr = cg->ptr};
  LLVMTypeRef pt[4] = {cg->ptr, cg->ptr, cg->ptr, cg->ptr};
  f.fn = LLVMAddFunction(cg->mod, name, LLVMFunctionType(cg->vd, pt, (unsigned)nparams, 0));
  LLVMSetLinkage(f.fn, LLVMPrivateLinkage);
  cg_set_isa_attrs(f.fn, isa);
  f.b = LLVMCreateBuilderInContext(cg->ctx);
  LLVMPositionBuilderAtEnd(f.b, LLVMAppendBasicBlockInContext(cg->ctx, f.fn, "entry"));
  return f;
}

/* A counted loop: for (i = 0; i < count; i++) around what is built between
 * loop_begin and loop_end; count > 0. */
typedef struct {
  LLVMBasicBlockRef pre, body;
  LLVMValueRef i;
} Loop;

static LLVMValueRef loop_begin(LLVMContextRef ctx, LLVMBuilderRef b, LLVMValueRef fn,
                               LLVMTypeRef i64, Loop *l, const char *name) {
  l->pre = LLVMGetInsertBlock(b);
  l->body = LLVMAppendBasicBlockInContext(ctx, fn, name);
  LLVMBuildBr(b, l->body);
  LLVMPositionBuilderAtEnd(b, l->body);
  l->i = LLVMBuildPhi(b, i64, name);
  return l->i;
}

static void loop_end(LLVMContextRef ctx, LLVMBuilderRef b, LLVMValueRef fn, LLVMTypeRef i64,
                     Loop *l, int64_t count) {
  LLVMValueRef next = LLVMBuildAdd(b, l->i, LLVMConstInt(i64, 1, 0), "");
  LLVMBasicBlockRef latch = LLVMGetInsertBlock(b);
  LLVMBasicBlockRef done = LLVMAppendBasicBlockInContext(ctx, fn, "");
  LLVMValueRef zero = LLVMConstInt(i64, 0, 0);
  LLVMAddIncoming(l->i, &zero, &l->pre, 1);
  LLVMAddIncoming(l->i, &next, &latch, 1);
  LLVMBuildCondBr(b, LLVMBuildICmp(b, LLVMIntEQ, next, LLVMConstInt(i64, (uint64_t)count, 0), ""),
                  done, l->body);
  LLVMPositionBuilderAtEnd(b, done);
}

/* Where wq[n, 0] goes (n a channel, i64), and the step of its block. */
static void stream_of(Fn *f, const CgGemmRuntime *rt, int64_t nn, LLVMValueRef n,
                      LLVMValueRef *base, LLVMValueRef *step) {
  LLVMValueRef blk = LLVMBuildUDiv(f->b, n, i64k(f, rt->cb), "");
  LLVMValueRef within = LLVMBuildURem(f->b, n, i64k(f, rt->cb), "");
  *base = LLVMBuildAdd(
      f->b, LLVMBuildMul(f->b, blk, i64k(f, rt->block_bytes), ""),
      LLVMBuildAdd(f->b,
                   LLVMBuildMul(f->b, LLVMBuildUDiv(f->b, within, i64k(f, rt->cpv), ""),
                                i64k(f, 16), ""),
                   LLVMBuildMul(f->b, LLVMBuildURem(f->b, n, i64k(f, rt->cpv), ""),
                                i64k(f, rt->kstep), ""),
                   ""),
      "");
  *step = LLVMBuildSelect(f->b, LLVMBuildICmp(f->b, LLVMIntEQ, blk, i64k(f, (nn - 1) / rt->cb), ""),
                          i64k(f, rt->last_step_bytes), i64k(f, rt->step_bytes), "");
}

/* The bytes of b at row k (i64), columns n .. n + lanes, as the kernel's
 * signed weights (u8: ^ 0x80). */
static LLVMValueRef load_b(Fn *f, LLVMValueRef b, int64_t b_stride, LLVMValueRef k,
                           LLVMValueRef n, unsigned lanes, bool b_u8) {
  LLVMTypeRef vt = LLVMVectorType(f->i8, lanes);
  LLVMValueRef v = cg_load(f->b, vt, cg_at(f->b, cg_at(f->b, b, k, b_stride, 0), n, 1, 0), 1);
  if (b_u8)
    v = LLVMBuildXor(f->b, v, cg_splat(LLVMConstInt(f->i8, 0x80, 0), lanes), "");
  return v;
}

/* void NAME.q8_pack_b(const void *b, int8_t *w, int32_t *bias): b [K, N]
 * (rows b_stride bytes apart, u8 or i8) as the kernel's weights wq[n, k] =
 * b[k, n] (^ 0x80 when u8), in the packed layout rt describes (zeros past N
 * and K), bias[n] = flip * colsum[n] and bias[npad + n] = colsum[n], the
 * column sums of wq (wrapping; 0 past N).
 *
 * Every layout is made of 16-byte units of cpv channels by kstep K values
 * (cpv * kstep = 16): a whole unit is kstep loads of cpv bytes, one
 * transposing shuffle and one store. Groups of cpv channels go unit by
 * unit along K, then their K tail byte by byte; the channels past the last
 * whole group one byte at a time. */
static LLVMValueRef emit_pack_b(Cg *cg, const char *name, CgIsa isa, const CgGemmRuntime *rt,
                                int64_t k, int64_t nn, int64_t b_stride, bool b_u8) {
  Fn f = new_fn(cg, name, isa, 3);
  LLVMValueRef b = LLVMGetParam(f.fn, 0), w = LLVMGetParam(f.fn, 1), bias = LLVMGetParam(f.fn, 2);
  LLVMBuildMemSet(f.b, w, LLVMConstInt(f.i8, 0, 0), i64k(&f, rt->packed_bytes), 1);
  LLVMBuildMemSet(f.b, bias, LLVMConstInt(f.i8, 0, 0), i64k(&f, 2 * rt->npad * 4), 4);
  unsigned cpv = (unsigned)rt->cpv, kstep = (unsigned)rt->kstep;
  int64_t groups = nn / cpv, steps = k / kstep;
  LLVMTypeRef csv = LLVMVectorType(f.i32, cpv);

  /* Whole groups of cpv channels. */
  if (groups > 0) {
    Loop lg, ls;
    LLVMValueRef gi = loop_begin(f.ctx, f.b, f.fn, f.i64, &lg, "group");
    LLVMValueRef n0 = LLVMBuildMul(f.b, gi, i64k(&f, cpv), "");
    LLVMValueRef base, step;
    stream_of(&f, rt, nn, n0, &base, &step);
    LLVMValueRef cs = LLVMConstNull(csv);
    if (steps > 0) {
      LLVMBasicBlockRef pre = LLVMGetInsertBlock(f.b);
      LLVMValueRef si = loop_begin(f.ctx, f.b, f.fn, f.i64, &ls, "step");
      LLVMValueRef phi = LLVMBuildPhi(f.b, csv, "colsum");
      LLVMValueRef k0 = LLVMBuildMul(f.b, si, i64k(&f, kstep), "");
      /* kstep rows of cpv bytes, row-major, summed per channel. */
      LLVMValueRef part[16], acc = phi;
      for (unsigned j = 0; j < kstep; j++) {
        part[j] = load_b(&f, b, b_stride, LLVMBuildAdd(f.b, k0, i64k(&f, j), ""), n0, cpv, b_u8);
        acc = LLVMBuildAdd(f.b, acc, LLVMBuildSExt(f.b, part[j], csv, ""), "");
      }
      for (unsigned len = cpv, cnt = kstep; cnt > 1; len *= 2, cnt /= 2) {
        int idx[16];
        for (unsigned i = 0; i < 2 * len; i++)
          idx[i] = (int)i;
        for (unsigned j = 0; j < cnt / 2; j++)
          part[j] = cg_shuffle(f.b, part[2 * j], part[2 * j + 1], idx, 2 * len);
      }
      /* Transposed to the unit's order: byte c * kstep + j = row j, channel c. */
      int tr[16];
      for (unsigned i = 0; i < 16; i++)
        tr[i] = (int)((i % kstep) * cpv + i / kstep);
      LLVMValueRef unit = cg_shuffle(f.b, part[0], NULL, tr, 16);
      LLVMValueRef off = LLVMBuildAdd(f.b, base, LLVMBuildMul(f.b, si, step, ""), "");
      LLVMSetAlignment(LLVMBuildStore(f.b, unit, LLVMBuildGEP2(f.b, f.i8, w, &off, 1, "")), 1);
      LLVMAddIncoming(phi, &cs, &pre, 1);
      LLVMBasicBlockRef latch = LLVMGetInsertBlock(f.b);
      LLVMAddIncoming(phi, &acc, &latch, 1);
      loop_end(f.ctx, f.b, f.fn, f.i64, &ls, steps);
      cs = acc;
    }
    /* The K tail of the group, byte by byte. */
    for (int64_t kk = steps * kstep; kk < k; kk++) {
      LLVMValueRef row = load_b(&f, b, b_stride, i64k(&f, kk), n0, cpv, b_u8);
      cs = LLVMBuildAdd(f.b, cs, LLVMBuildSExt(f.b, row, csv, ""), "");
      LLVMValueRef at = LLVMBuildAdd(f.b, base, LLVMBuildMul(f.b, i64k(&f, steps), step, ""), "");
      for (unsigned c = 0; c < cpv; c++) {
        LLVMValueRef off = LLVMBuildAdd(f.b, at, i64k(&f, c * kstep + (kk - steps * kstep)), "");
        LLVMValueRef byte = LLVMBuildExtractElement(f.b, row, i32k(&f, c), "");
        LLVMSetAlignment(LLVMBuildStore(f.b, byte, LLVMBuildGEP2(f.b, f.i8, w, &off, 1, "")), 1);
      }
    }
    /* bias = flip * colsum, then colsum. */
    LLVMSetAlignment(LLVMBuildStore(f.b, LLVMBuildMul(f.b, cs, cg_splat(i32k(&f, rt->flip), cpv), ""),
                                    cg_at(f.b, bias, n0, 4, 0)),
                     4);
    LLVMSetAlignment(LLVMBuildStore(f.b, cs, cg_at(f.b, bias, n0, 4, rt->npad * 4)), 4);
    loop_end(f.ctx, f.b, f.fn, f.i64, &lg, groups);
  }

  /* The channels past the last whole group, one byte at a time. */
  for (int64_t n = groups * cpv; n < nn; n++) {
    LLVMValueRef nv = i64k(&f, n), base, step;
    stream_of(&f, rt, nn, nv, &base, &step);
    Loop lk;
    LLVMBasicBlockRef pre = LLVMGetInsertBlock(f.b);
    LLVMValueRef kk = loop_begin(f.ctx, f.b, f.fn, f.i64, &lk, "k");
    LLVMValueRef cs = LLVMBuildPhi(f.b, f.i32, "colsum");
    LLVMValueRef byte = LLVMBuildExtractElement(f.b, load_b(&f, b, b_stride, kk, nv, 1, b_u8),
                                                i32k(&f, 0), "");
    LLVMValueRef off = LLVMBuildAdd(
        f.b, base,
        LLVMBuildAdd(f.b, LLVMBuildMul(f.b, LLVMBuildUDiv(f.b, kk, i64k(&f, kstep), ""), step, ""),
                     LLVMBuildURem(f.b, kk, i64k(&f, kstep), ""), ""),
        "");
    LLVMSetAlignment(LLVMBuildStore(f.b, byte, LLVMBuildGEP2(f.b, f.i8, w, &off, 1, "")), 1);
    LLVMValueRef next = LLVMBuildAdd(f.b, cs, LLVMBuildSExt(f.b, byte, f.i32, ""), "");
    LLVMValueRef zero = i32k(&f, 0);
    LLVMAddIncoming(cs, &zero, &pre, 1);
    LLVMBasicBlockRef latch = LLVMGetInsertBlock(f.b);
    LLVMAddIncoming(cs, &next, &latch, 1);
    loop_end(f.ctx, f.b, f.fn, f.i64, &lk, k);
    LLVMSetAlignment(LLVMBuildStore(f.b, LLVMBuildMul(f.b, next, i32k(&f, rt->flip), ""),
                                    cg_at(f.b, bias, nv, 4, 0)),
                     4);
    LLVMSetAlignment(LLVMBuildStore(f.b, next, cg_at(f.b, bias, nv, 4, rt->npad * 4)), 4);
  }
  LLVMBuildRetVoid(f.b);
  LLVMDisposeBuilder(f.b);
  return f.fn;
}

/* The sum of `bytes` bytes at p (u8, or i8 when is_signed) as an i32
 * vector of `lanes`, added to acc. */
static LLVMValueRef sum_bytes(Fn *f, LLVMValueRef acc, LLVMValueRef p, unsigned lanes,
                              bool is_signed) {
  LLVMValueRef v = cg_load(f->b, LLVMVectorType(f->i8, lanes), p, 1);
  LLVMTypeRef it = LLVMVectorType(f->i32, lanes);
  v = is_signed ? LLVMBuildSExt(f->b, v, it, "") : LLVMBuildZExt(f->b, v, it, "");
  return LLVMBuildAdd(f->b, acc, v, "");
}

static LLVMValueRef reduce_add(Fn *f, LLVMValueRef v, unsigned lanes) {
  LLVMTypeRef it = LLVMVectorType(f->i32, lanes);
  return cg_intrinsic(f->mod, f->b, "llvm.vector.reduce.add", &it, 1, &v, 1);
}

/* void NAME.q8_rows(const void *x, CgGemmRow *rows): the terms of the mm
 * rows of x (u8 or i8, rows x_stride bytes apart) for a qmatmul whose x has
 * the constant zero point zx: add = c (sum_k x - K zx) (wrapping), zp = zx.
 * The row is summed 16 bytes at a time, then its tail as one shorter
 * vector. */
static LLVMValueRef emit_rows(Cg *cg, const char *name, CgIsa isa, int64_t mm, int64_t k,
                              int64_t x_stride, bool x_i8, int32_t zx, int32_t c) {
  enum { LANES = 16 };
  Fn f = new_fn(cg, name, isa, 2);
  LLVMValueRef x = LLVMGetParam(f.fn, 0), rows = LLVMGetParam(f.fn, 1);
  LLVMTypeRef it = LLVMVectorType(f.i32, LANES);
  int64_t chunks = k / LANES;
  unsigned tail = (unsigned)(k % LANES);
  Loop lr, lk;
  LLVMValueRef r = loop_begin(f.ctx, f.b, f.fn, f.i64, &lr, "r");
  LLVMValueRef xr = cg_at(f.b, x, r, x_stride, 0);
  LLVMValueRef sum = i32k(&f, 0);
  if (chunks > 0) {
    LLVMBasicBlockRef pre = LLVMGetInsertBlock(f.b);
    LLVMValueRef j = loop_begin(f.ctx, f.b, f.fn, f.i64, &lk, "chunk");
    LLVMValueRef acc = LLVMBuildPhi(f.b, it, "acc");
    LLVMValueRef next = sum_bytes(&f, acc, cg_at(f.b, xr, j, LANES, 0), LANES, x_i8);
    LLVMValueRef zero = LLVMConstNull(it);
    LLVMAddIncoming(acc, &zero, &pre, 1);
    LLVMBasicBlockRef latch = LLVMGetInsertBlock(f.b);
    LLVMAddIncoming(acc, &next, &latch, 1);
    loop_end(f.ctx, f.b, f.fn, f.i64, &lk, chunks);
    sum = reduce_add(&f, next, LANES);
  }
  if (tail) {
    LLVMValueRef tv = sum_bytes(&f, LLVMConstNull(LLVMVectorType(f.i32, tail)),
                                cg_at(f.b, xr, i64k(&f, chunks), LANES, 0), tail, x_i8);
    sum = LLVMBuildAdd(f.b, sum, reduce_add(&f, tv, tail), "");
  }
  LLVMValueRef rec = cg_at(f.b, rows, r, sizeof(CgGemmRow), 0);
  LLVMValueRef add = LLVMBuildMul(
      f.b, i32k(&f, c), LLVMBuildSub(f.b, sum, i32k(&f, (int64_t)((uint32_t)k * (uint32_t)zx)), ""),
      "");
  LLVMSetAlignment(LLVMBuildStore(f.b, add, rec), 4);
  LLVMSetAlignment(LLVMBuildStore(f.b, i32k(&f, zx), cg_at(f.b, rec, i64k(&f, 0), 0, 4)), 4);
  loop_end(f.ctx, f.b, f.fn, f.i64, &lr, mm);
  LLVMBuildRetVoid(f.b);
  LLVMDisposeBuilder(f.b);
  return f.fn;
}

/* void NAME.q8_mult(const CgGemmRow *b_row, float *mult, int32_t *c): the
 * terms of qmatmul_dyn's quantized b (one row of K N): mult[0, npad) = sb,
 * *c = 128 - zb. */
static LLVMValueRef emit_mult(Cg *cg, const char *name, CgIsa isa, int64_t npad) {
  Fn f = new_fn(cg, name, isa, 3);
  LLVMValueRef rec = LLVMGetParam(f.fn, 0), mult = LLVMGetParam(f.fn, 1), c = LLVMGetParam(f.fn, 2);
  LLVMValueRef zb = cg_load(f.b, f.i32, cg_at(f.b, rec, i64k(&f, 0), 0, 4), 4);
  LLVMValueRef sb = cg_load(f.b, cg->f32, cg_at(f.b, rec, i64k(&f, 0), 0, 8), 4);
  LLVMSetAlignment(LLVMBuildStore(f.b, LLVMBuildSub(f.b, i32k(&f, 128), zb, ""), c), 4);
  Loop l;
  LLVMValueRef i = loop_begin(f.ctx, f.b, f.fn, f.i64, &l, "n");
  LLVMSetAlignment(LLVMBuildStore(f.b, sb, cg_at(f.b, mult, i, 4, 0)), 4);
  loop_end(f.ctx, f.b, f.fn, f.i64, &l, npad);
  LLVMBuildRetVoid(f.b);
  LLVMDisposeBuilder(f.b);
  return f.fn;
}

/* ---- lowering ---- */

static LLVMValueRef call(Cg *cg, LLVMValueRef fn, LLVMValueRef *args, unsigned n) {
  return LLVMBuildCall2(cg->b, LLVMGlobalGetValueType(fn), fn, args, n, "");
}

static LLVMValueRef offset(Cg *cg, LLVMValueRef base, LLVMValueRef i, int64_t scale) {
  return cg_at(cg->b, base, i, scale, 0);
}

/* CgGemmArgs on the entry's stack: allocated before a loop, x and y set in
 * it (gemm_xy). */
static LLVMTypeRef args_type(Cg *cg) {
  LLVMTypeRef pt[6] = {cg->ptr, cg->ptr, cg->ptr, cg->ptr, cg->ptr, cg->ptr};
  return LLVMStructTypeInContext(cg->ctx, pt, 6, 0);
}

static LLVMValueRef gemm_args(Cg *cg, LLVMValueRef w, LLVMValueRef bias, LLVMValueRef mult,
                              LLVMValueRef rows) {
  LLVMTypeRef ty = args_type(cg);
  LLVMValueRef args = LLVMBuildAlloca(cg->b, ty, "gemm.args");
  LLVMValueRef v[6] = {NULL, NULL, w, bias, mult, rows};
  for (unsigned i = 0; i < 6; i++)
    LLVMBuildStore(cg->b, v[i] ? v[i] : LLVMConstNull(cg->ptr),
                   LLVMBuildStructGEP2(cg->b, ty, args, i, ""));
  return args;
}

static void gemm_xy(Cg *cg, LLVMValueRef args, LLVMValueRef x, LLVMValueRef y) {
  LLVMBuildStore(cg->b, x, LLVMBuildStructGEP2(cg->b, args_type(cg), args, 0, ""));
  LLVMBuildStore(cg->b, y, LLVMBuildStructGEP2(cg->b, args_type(cg), args, 1, ""));
}

/* Emit the kernel of g once per variant (shared by both entries). */
static bool kernel_of(Cg *cg, int idx, CgIsa isa, CgGemm *g) {
  if (cg->kernel[idx])
    return true;
  char err[512];
  g->rt = &cg->prep[idx].rt;
  cg->kernel_tasks[idx] = 1;
  cg->kernel[idx] = cg_emit_qgemm(cg->mod, g, isa, &cg->kernel_tasks[idx], err, sizeof err);
  if (!cg->kernel[idx])
    return ir_error(&cg->m->diag, cg->m->nodes[idx]->loc, "codegen: %s", err);
  return true;
}

static bool parallel_for(int64_t m, int64_t k, int64_t n) { return m * n * k >= (1 << 18); }

/* A dense copy of f32 operand v quantized with q into rows `stride` bytes
 * apart, or its bytes where they are (the quantized entry's input in its
 * quantized form, copied into padded rows when its rows are not). */
static LLVMValueRef quantized_operand(Cg *cg, int idx, CgIsa isa, const IrValue *v,
                                      const IrQParams *q, int64_t rows, int64_t cols,
                                      int64_t stride, int64_t at, LLVMValueRef *fn_cache,
                                      const char *what) {
  LLVMValueRef src = cg_value_addr(cg, v), dst = cg_scratch_addr(cg, at);
  if (cg->quantized && v->kind == IR_VAL_INPUT && v->has_qform) {
    if (stride == cols)
      return src;
    for (int64_t r = 0; r < rows; r++)
      LLVMBuildMemCpy(cg->b, offset(cg, dst, LLVMConstInt(cg->i64, (uint64_t)r, 0), stride), 1,
                      offset(cg, src, LLVMConstInt(cg->i64, (uint64_t)r, 0), cols), 1,
                      LLVMConstInt(cg->i64, (uint64_t)cols, 0));
    return dst;
  }
  if (!*fn_cache) {
    char name[480];
    snprintf(name, sizeof name, "%s.%s.q8_quantize_f32_%s_%s", cg->prefix,
             cg->m->nodes[idx]->result->name, what, cg_isa_info[isa].name);
    *fn_cache = cg_arch_of(isa)->emit_quantize(cg->mod, name, isa, rows, cols, stride, q->scale,
                                               q->zero_point, q->dtype);
  }
  call(cg, *fn_cache, (LLVMValueRef[]){src, dst}, 2);
  return dst;
}

/* The GEMM of node n: M x K by K x N, its kernel named after n's result
 * (in name[size]). The caller fills in the operands' forms. */
static CgGemm gemm_of(const Cg *cg, const IrNode *n, char *name, size_t size, int64_t mm,
                      int64_t k, int64_t nn) {
  snprintf(name, size, "%s.%s", cg->prefix, n->result->name);
  return (CgGemm){.name = name, .m = mm, .k = k, .n = nn};
}

/* The left operand is quantized per row at run time: u8 rows of ks bytes. */
static void rows_quantized_here(CgGemm *g, int64_t ks) {
  g->x_dtype = IR_U8;
  g->x_stride = ks;
  g->x_min = 0;
  g->x_max = 255;
}

/* qmatmul: both operands per tensor, constant parameters. */
static bool emit_qmatmul_kernel(Cg *cg, int idx, CgIsa isa) {
  IrModule *m = cg->m;
  IrNode *n = m->nodes[idx];
  CgPrep *p = &cg->prep[idx];
  const IrValue *x = n->opnds[0], *b = n->opnds[1];
  int64_t batch, mm, k, nn;
  mm_dims(n, &batch, &mm, &k, &nn);
  IrQParams px, pb;
  if (!ir_get_qparams(n, IR_QPARAMS_IN, &px) || !ir_get_qparams(n, IR_QPARAMS_B, &pb))
    return ir_error(&m->diag, n->loc, "codegen: qmatmul needs the x_* and b_* parameters");
  IrDType yt = n->result->type.dtype;
  Slot s = slot_of(n);
  int64_t base = cg->xq_offset[idx];
  const Loc *yl = &cg->loc[n->result->id];
  int64_t ks = cg_round_up(k, 4);

  char name[400];
  CgGemm g = gemm_of(cg, n, name, sizeof name, mm, k, nn);
  g.x_dtype = px.dtype;
  ir_qbounds(px.dtype, &g.x_min, &g.x_max);
  g.y_dtype = yt;
  g.y_stride = yl->stride;
  if (yt != IR_F32) {
    g.y_zero_point = (int32_t)ir_attr_int(n, IR_ATTR_ZERO_POINT, 0);
    ir_qbounds(yt, &g.y_min, &g.y_max);
  }
  /* x: its quantized bytes, padded rows. */
  int64_t x_stride = x->type.dtype == IR_F32 ? ks : cg->loc[x->id].stride;
  g.x_stride = x_stride;
  g.runtime_w = true;
  g.row_terms = true;
  if (!kernel_of(cg, idx, isa, &g))
    return false;
  LLVMValueRef xp;
  if (x->type.dtype == IR_F32) {
    xp = quantized_operand(cg, idx, isa, x, &px, batch * mm, k, ks, base + s.xq, &p->quant_x, "x");
  } else {
    xp = cg_value_addr(cg, x);
  }
  /* b: its quantized bytes, dense [K, N] rows. */
  LLVMValueRef bp;
  int64_t b_stride;
  if (b->type.dtype == IR_F32) {
    b_stride = nn;
    bp = quantized_operand(cg, idx, isa, b, &pb, batch * k, nn, nn, base + s.bq, &p->quant_b, "b");
  } else {
    bp = cg_value_addr(cg, b);
    b_stride = cg->loc[b->id].stride;
  }
  bool b_u8 = pb.dtype == IR_U8;
  int32_t c = (b_u8 ? 128 : 0) - pb.zero_point;
  if (!p->pack) {
    char fname[480];
    snprintf(fname, sizeof fname, "%s.q8_pack_b_%s", name, cg_isa_info[isa].name);
    p->pack = emit_pack_b(cg, fname, isa, &p->rt, k, nn, b_stride, b_u8);
    snprintf(fname, sizeof fname, "%s.q8_rows_%s", name, cg_isa_info[isa].name);
    p->rows = emit_rows(cg, fname, isa, mm, k, x_stride, px.dtype == IR_I8, px.zero_point, c);
  }
  /* The multiplier, the same for every channel. */
  float y_scale = yt == IR_F32 ? 0.0f : (float)ir_attr_float(n, IR_ATTR_SCALE, 1);
  float mult = ir_qmatmul_mult(px.scale, pb.scale, y_scale);
  LLVMValueRef mv = p->mult;
  if (!mv) {
    int64_t npad = p->rt.npad;
    LLVMValueRef *vals = ir_alloc(m->arena, (size_t)npad * sizeof *vals);
    for (int64_t i = 0; i < npad; i++)
      vals[i] = LLVMConstReal(cg->f32, mult);
    char cname[480];
    snprintf(cname, sizeof cname, "%s.mult_%s", name, cg_isa_info[isa].name);
    p->mult = mv = cg_private_const(cg->mod, cname, LLVMConstArray2(cg->f32, vals, (uint64_t)npad));
  }

  /* For each matrix of the batch: pack b, the rows' terms, the kernel. */
  LLVMValueRef w = cg_scratch_addr(cg, base + s.w), bias = cg_scratch_addr(cg, base + s.bias);
  LLVMValueRef rows = cg_scratch_addr(cg, base + s.rows), y = cg_value_addr(cg, n->result);
  int64_t ysize = yt == IR_F32 ? 4 : 1;
  LLVMValueRef args = gemm_args(cg, w, bias, mv, rows);
  Loop l;
  LLVMValueRef bi = loop_begin(cg->ctx, cg->b, cg->fn, cg->i64, &l, "head");
  call(cg, p->pack, (LLVMValueRef[]){offset(cg, bp, bi, k * b_stride), w, bias}, 3);
  LLVMValueRef xb = offset(cg, xp, bi, mm * x_stride);
  call(cg, p->rows, (LLVMValueRef[]){xb, rows}, 2);
  gemm_xy(cg, args, xb, offset(cg, y, bi, mm * yl->stride * ysize));
  cg_run_tasks(cg, cg->kernel[idx], args, cg->kernel_tasks[idx], parallel_for(mm, k, nn));
  loop_end(cg->ctx, cg->b, cg->fn, cg->i64, &l, batch);
  return true;
}

/* qmatmul_dyn: b quantized per matrix, x per row, at run time. */
static bool emit_qmatmul_dyn_kernel(Cg *cg, int idx, CgIsa isa) {
  IrModule *m = cg->m;
  IrNode *n = m->nodes[idx];
  CgPrep *p = &cg->prep[idx];
  int64_t batch, mm, k, nn;
  mm_dims(n, &batch, &mm, &k, &nn);
  Slot s = slot_of(n);
  int64_t base = cg->xq_offset[idx];
  const Loc *yl = &cg->loc[n->result->id];
  int64_t ks = cg_round_up(k, 4);

  char name[400];
  CgGemm g = gemm_of(cg, n, name, sizeof name, mm, k, nn);
  rows_quantized_here(&g, ks);
  g.y_dtype = IR_F32;
  g.y_stride = yl->stride;
  g.runtime_w = true;
  g.row_terms = true;
  g.row_scale = true;
  if (!kernel_of(cg, idx, isa, &g))
    return false;
  if (!p->pack) {
    char fname[480];
    snprintf(fname, sizeof fname, "%s.q8_pack_b_%s", name, cg_isa_info[isa].name);
    p->pack = emit_pack_b(cg, fname, isa, &p->rt, k, nn, nn, true);
    snprintf(fname, sizeof fname, "%s.q8_quantize_rows_dyn_x_%s", name, cg_isa_info[isa].name);
    p->quant_x = cg_emit_quantize_rows_dyn(cg->mod, fname, isa, mm, k, ks);
    snprintf(fname, sizeof fname, "%s.q8_quantize_rows_dyn_b_%s", name, cg_isa_info[isa].name);
    p->quant_b = cg_emit_quantize_rows_dyn(cg->mod, fname, isa, 1, k * nn, k * nn);
    snprintf(fname, sizeof fname, "%s.q8_mult_%s", name, cg_isa_info[isa].name);
    p->mult = emit_mult(cg, fname, isa, p->rt.npad);
  }
  LLVMValueRef xp = cg_value_addr(cg, n->opnds[0]), bp = cg_value_addr(cg, n->opnds[1]);
  LLVMValueRef y = cg_value_addr(cg, n->result);
  LLVMValueRef xq = cg_scratch_addr(cg, base + s.xq), bq = cg_scratch_addr(cg, base + s.bq);
  LLVMValueRef w = cg_scratch_addr(cg, base + s.w), bias = cg_scratch_addr(cg, base + s.bias);
  LLVMValueRef mult = cg_scratch_addr(cg, base + s.mult);
  LLVMValueRef rows = cg_scratch_addr(cg, base + s.rows);
  LLVMValueRef args = gemm_args(cg, w, bias, mult, rows);
  /* b's own terms: one row record, then c, on the stack. */
  LLVMValueRef brow = LLVMBuildAlloca(cg->b, LLVMArrayType(cg->i32, 4), "b.row");
  LLVMValueRef cvar = LLVMBuildAlloca(cg->b, cg->i32, "c");

  /* For each matrix of the batch: b quantized and packed, its scale and
   * c = 128 - zb, x's rows quantized with their terms, the kernel. */
  Loop l;
  LLVMValueRef bi = loop_begin(cg->ctx, cg->b, cg->fn, cg->i64, &l, "head");
  call(cg, p->quant_b,
       (LLVMValueRef[]){offset(cg, bp, bi, k * nn * 4), bq, brow, LLVMConstInt(cg->i32, 0, 0)}, 4);
  call(cg, p->pack, (LLVMValueRef[]){bq, w, bias}, 3);
  call(cg, p->mult, (LLVMValueRef[]){brow, mult, cvar}, 3);
  LLVMValueRef c = LLVMBuildLoad2(cg->b, cg->i32, cvar, "");
  call(cg, p->quant_x, (LLVMValueRef[]){offset(cg, xp, bi, mm * k * 4), xq, rows, c}, 4);
  gemm_xy(cg, args, xq, offset(cg, y, bi, mm * yl->stride * 4));
  cg_run_tasks(cg, cg->kernel[idx], args, cg->kernel_tasks[idx], parallel_for(mm, k, nn));
  loop_end(cg->ctx, cg->b, cg->fn, cg->i64, &l, batch);
  return true;
}

/* qlinear_dyn: W packed at compile time, x's rows quantized at run time.
 * qlinear_outl: the same on x with its outlier columns zeroed, then their
 * f32 correction. */
static bool emit_qlinear_dyn_kernel(Cg *cg, int idx, CgIsa isa) {
  IrModule *m = cg->m;
  IrNode *n = m->nodes[idx];
  CgPrep *p = &cg->prep[idx];
  bool outl = n->op == IR_OP_QLINEAR_OUTL;
  const IrValue *x = n->opnds[0], *wv = n->opnds[1], *ws = n->opnds[2];
  int bias_at = outl ? 4 : 3;
  const IrValue *bv = n->nopnds > bias_at ? n->opnds[bias_at] : NULL;
  int64_t nn = wv->type.dims[0], k = wv->type.dims[1];
  const Loc *xl = &cg->loc[x->id], *yl = &cg->loc[n->result->id];
  int64_t rows_n = xl->rows, ks = cg_round_up(k, 4);
  Slot s = slot_of(n);
  int64_t base = cg->xq_offset[idx];

  char name[400];
  CgGemm g = gemm_of(cg, n, name, sizeof name, rows_n, k, nn);
  rows_quantized_here(&g, ks);
  g.wq = wv->data;
  g.pack_nr = cg_shared_pack_nr(cg->o);
  g.wfile = cg->wfile;
  /* bias 0; the multipliers are the weight scales, one per channel. */
  int32_t *zeros = ir_alloc(m->arena, (size_t)nn * sizeof *zeros);
  float *mult = ir_alloc(m->arena, (size_t)nn * sizeof *mult);
  const float *sw = ws->data;
  int64_t sw_len = ws->type.dims[0];
  for (int64_t i = 0; i < nn; i++) {
    zeros[i] = 0;
    mult[i] = sw[sw_len == 1 ? 0 : i];
  }
  g.bias = zeros;
  g.mult = mult;
  g.fbias = bv ? bv->data : NULL;
  g.y_dtype = IR_F32;
  g.y_stride = yl->stride;
  g.row_terms = true;
  g.row_scale = true;
  if (!kernel_of(cg, idx, isa, &g))
    return false;
  /* ONNX's form: one scale for the whole of x; the weight's zero point
   * as the rows' terms, c = -w_zero_point. */
  bool tensor = ir_attr_name(n, IR_ATTR_GRANULARITY, IR_DYN_ROW) == IR_DYN_TENSOR;
  int64_t c = -ir_attr_int(n, IR_ATTR_W_ZERO_POINT, 0);
  if (!p->quant_x) {
    char fname[480];
    snprintf(fname, sizeof fname, "%s.q8_quantize_%s_dyn_%s", name, tensor ? "tensor" : "rows",
             cg_isa_info[isa].name);
    p->quant_x = (tensor ? cg_emit_quantize_tensor_dyn : cg_emit_quantize_rows_dyn)(
        cg->mod, fname, isa, rows_n, k, ks);
  }
  LLVMValueRef xq = cg_scratch_addr(cg, base + s.xq), rows = cg_scratch_addr(cg, base + s.rows);
  LLVMValueRef xsrc = cg_value_addr(cg, x), count = NULL, cols = NULL;
  if (outl) {
    /* The batch's outlier columns; the rows come from x's zeroed copy when
     * there is one. */
    LLVMValueRef xz = cg_scratch_addr(cg, base + s.xz);
    cols = cg_scratch_addr(cg, base + s.cols);
    float threshold = (float)ir_attr_float(n, IR_ATTR_THRESHOLD, 0);
    LLVMValueRef dargs[] = {xsrc, LLVMConstInt(cg->i64, (uint64_t)rows_n, 1),
                            LLVMConstInt(cg->i64, (uint64_t)k, 1),
                            LLVMConstReal(LLVMFloatTypeInContext(cg->ctx), threshold), cols, xz};
    _Static_assert(sizeof dargs / sizeof dargs[0] == REF_NARGS_q8_ref_outl_detect,
                   "q8_ref_outl_detect: the argument count differs from ir/refops.def");
    count = cg_call_ref_args(cg->mod, cg->b, REF_q8_ref_outl_detect, dargs, 6);
    xsrc = LLVMBuildSelect(cg->b, LLVMBuildICmp(cg->b, LLVMIntNE, count, cg_i32c(cg, 0), ""), xz,
                           xsrc, "x.outl");
  }
  call(cg, p->quant_x, (LLVMValueRef[]){xsrc, xq, rows, LLVMConstInt(cg->i32, (uint64_t)c, 1)}, 4);
  LLVMValueRef args = gemm_args(cg, NULL, NULL, NULL, rows);
  gemm_xy(cg, args, xq, cg_value_addr(cg, n->result));
  cg_run_tasks(cg, cg->kernel[idx], args, cg->kernel_tasks[idx], parallel_for(rows_n, k, nn));
  if (outl)
    cg_call_ref(cg->mod, cg->b, q8_ref_outl_correct, cg_value_addr(cg, x),
                cg_value_addr(cg, n->opnds[3]), cols, count, cg_value_addr(cg, n->result),
                LLVMConstInt(cg->i64, (uint64_t)yl->stride, 1),
                LLVMConstInt(cg->i64, (uint64_t)rows_n, 1), LLVMConstInt(cg->i64, (uint64_t)k, 1),
                LLVMConstInt(cg->i64, (uint64_t)nn, 1));
  return true;
}

bool cg_emit_attention(Cg *cg, int idx, CgIsa isa) {
  switch (cg->m->nodes[idx]->op) {
  case IR_OP_QMATMUL:
    return emit_qmatmul_kernel(cg, idx, isa);
  case IR_OP_QMATMUL_DYN:
    return emit_qmatmul_dyn_kernel(cg, idx, isa);
  case IR_OP_QLINEAR_DYN:
  case IR_OP_QLINEAR_OUTL:
    return emit_qlinear_dyn_kernel(cg, idx, isa);
  default:
    q8_unreachable();
  }
}
