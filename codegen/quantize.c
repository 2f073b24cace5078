/* quantize.c: the loop that quantizes an f32 input into the padded u8/i8 rows
 * a GEMM kernel reads (x86/qgemm.c, aarch64/qgemm.c), for any ISA.
 *
 *   void NAME(const float *x, void *q)
 *   q[r * x_stride + c] = quantize(x[r * k + c]; scale, zp, [qmin, qmax])
 *
 * with quantize exactly as docs/quantization.md states it: a division (fdiv,
 * never a multiplication by 1/scale), NaN -> zp, rint (ties to even), clamp
 * in float to [qmin - zp, qmax - zp], + zp. The row is done a vector at a
 * time (the variant's qlanes, isa.def: 16 floats for AVX-512, 8 for AVX2
 * and NEON, 4 for SSE2) and its tail as one
 * shorter vector; the padding bytes of each row are left as they are (the
 * kernels multiply them by zero weights).
 *
 * cg_emit_quantize_rows_dyn is the same loop with each row's own scale and
 * zero point, found first from the row's range exactly as q8_ref_qlinear_dyn
 * finds them (docs/quantization.md, "Dynamic quantization"), for
 * qlinear_dyn and qmatmul_dyn (attention.c); cg_emit_quantize_tensor_dyn
 * the same with one range for all rows and ONNX's DynamicQuantizeLinear
 * parameters (qlinear_dyn {granularity = tensor}). */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "codegen.h"

typedef struct {
  LLVMContextRef ctx;
  LLVMModuleRef mod;
  LLVMBuilderRef b;
  CgIsa isa;
  LLVMTypeRef i8, i32, i64, f32, f64, ptr;
  /* the parameters: constants, or values of the function being built */
  LLVMValueRef scale, zp; /* f32, i32 */
  LLVMValueRef lo, hi;    /* f32: qmin - zp, qmax - zp */
} Quant;

static LLVMValueRef splat(LLVMValueRef c, unsigned n) { return cg_splat(c, n); }

static LLVMValueRef intrinsic(Quant *q, const char *name, LLVMTypeRef over, LLVMValueRef *args,
                              unsigned nargs) {
  return cg_intrinsic(q->mod, q->b, name, &over, 1, args, nargs);
}

/* rint of every lane; a variant without a rounding instruction (SSE2:
 * CG_ROUND_MAGIC) uses the 2^23 trick of round_even in x86/qgemm.c. */
static LLVMValueRef round_even(Quant *q, LLVMValueRef v, unsigned n) {
  LLVMTypeRef vt = LLVMVectorType(q->f32, n);
  if (cg_isa_info[q->isa].round != CG_ROUND_MAGIC)
    return intrinsic(q, "llvm.roundeven", vt, &v, 1);
  LLVMValueRef a = intrinsic(q, "llvm.fabs", vt, &v, 1);
  LLVMValueRef big = splat(LLVMConstReal(q->f32, 8388608.0), n);
  LLVMValueRef r = LLVMBuildFSub(q->b, LLVMBuildFAdd(q->b, a, big, ""), big, "");
  r = intrinsic(q, "llvm.copysign", vt, (LLVMValueRef[]){r, v}, 2);
  return LLVMBuildSelect(q->b, LLVMBuildFCmp(q->b, LLVMRealOLT, a, big, ""), r, v, "");
}

static void init_types(Quant *q) {
  q->b = LLVMCreateBuilderInContext(q->ctx);
  q->i8 = LLVMInt8TypeInContext(q->ctx);
  q->i32 = LLVMInt32TypeInContext(q->ctx);
  q->i64 = LLVMInt64TypeInContext(q->ctx);
  q->f32 = LLVMFloatTypeInContext(q->ctx);
  q->f64 = LLVMDoubleTypeInContext(q->ctx);
  q->ptr = LLVMPointerTypeInContext(q->ctx, 0);
}

static LLVMValueRef gep(Quant *q, LLVMValueRef base, LLVMValueRef off) {
  return LLVMBuildGEP2(q->b, q->i8, base, &off, 1, "");
}

/* Quantize n floats at src into n bytes at dst; the values as i32 (for row
 * sums). */
static LLVMValueRef quantize_vector(Quant *q, LLVMValueRef src, LLVMValueRef dst, unsigned n) {
  LLVMTypeRef fv = LLVMVectorType(q->f32, n);
  LLVMValueRef x = LLVMBuildLoad2(q->b, fv, src, "");
  LLVMSetAlignment(x, 4);
  LLVMValueRef v = LLVMBuildFDiv(q->b, x, cg_splat_value(q->b, q->scale, n), "");
  LLVMValueRef r = round_even(q, v, n);
  LLVMValueRef lo = cg_splat_value(q->b, q->lo, n), hi = cg_splat_value(q->b, q->hi, n);
  r = LLVMBuildSelect(q->b, LLVMBuildFCmp(q->b, LLVMRealOLT, r, lo, ""), lo, r, "");
  r = LLVMBuildSelect(q->b, LLVMBuildFCmp(q->b, LLVMRealOGT, r, hi, ""), hi, r, "");
  /* NaN -> 0 here, the zero point once zp is added. */
  r = LLVMBuildSelect(q->b, LLVMBuildFCmp(q->b, LLVMRealUNO, v, v, ""), LLVMConstNull(fv), r, "");
  LLVMTypeRef iv = LLVMVectorType(q->i32, n);
  LLVMValueRef i = LLVMBuildAdd(q->b, LLVMBuildFPToSI(q->b, r, iv, ""),
                                cg_splat_value(q->b, q->zp, n), "");
  LLVMValueRef bytes = LLVMBuildTrunc(q->b, i, LLVMVectorType(q->i8, n), "");
  LLVMSetAlignment(LLVMBuildStore(q->b, bytes, dst), 1);
  return i;
}

LLVMValueRef cg_emit_quantize_rows(LLVMModuleRef mod, const char *name, CgIsa isa, int64_t m,
                                   int64_t k, int64_t x_stride, float scale, int32_t zero_point,
                                   IrDType dtype) {
  Quant q = {.mod = mod, .ctx = LLVMGetModuleContext(mod), .isa = isa};
  int32_t qmin, qmax;
  ir_qbounds(dtype, &qmin, &qmax);
  init_types(&q);
  q.scale = LLVMConstReal(q.f32, scale);
  q.zp = LLVMConstInt(q.i32, (uint64_t)zero_point, 1);
  q.lo = LLVMConstReal(q.f32, (float)(qmin - zero_point));
  q.hi = LLVMConstReal(q.f32, (float)(qmax - zero_point));
  unsigned vl = (unsigned)cg_isa_info[isa].qlanes;

  LLVMTypeRef fty =
      LLVMFunctionType(LLVMVoidTypeInContext(q.ctx), (LLVMTypeRef[]){q.ptr, q.ptr}, 2, 0);
  LLVMValueRef fn = LLVMAddFunction(mod, name, fty);
  cg_set_isa_attrs(fn, isa);
  LLVMValueRef x = LLVMGetParam(fn, 0), dst = LLVMGetParam(fn, 1);
  LLVMBasicBlockRef entry = LLVMAppendBasicBlockInContext(q.ctx, fn, "entry");
  LLVMPositionBuilderAtEnd(q.b, entry);
  if (m <= 0 || k <= 0) {
    LLVMBuildRetVoid(q.b);
    LLVMDisposeBuilder(q.b);
    return fn;
  }
  LLVMBasicBlockRef rows = LLVMAppendBasicBlockInContext(q.ctx, fn, "row");
  LLVMBasicBlockRef done = LLVMAppendBasicBlockInContext(q.ctx, fn, "done");
  LLVMBuildBr(q.b, rows);

  /* For each row: its source and destination. */
  LLVMPositionBuilderAtEnd(q.b, rows);
  LLVMValueRef r = LLVMBuildPhi(q.b, q.i64, "r");
  LLVMValueRef src =
      gep(&q, x, LLVMBuildMul(q.b, r, LLVMConstInt(q.i64, (uint64_t)(4 * k), 0), ""));
  LLVMValueRef out =
      gep(&q, dst, LLVMBuildMul(q.b, r, LLVMConstInt(q.i64, (uint64_t)x_stride, 0), ""));

  /* Whole vectors. */
  int64_t nfull = k / vl;
  if (nfull > 0) {
    LLVMBasicBlockRef vloop = LLVMAppendBasicBlockInContext(q.ctx, fn, "vec");
    LLVMBasicBlockRef vdone = LLVMAppendBasicBlockInContext(q.ctx, fn, "vec.done");
    LLVMBuildBr(q.b, vloop);
    LLVMPositionBuilderAtEnd(q.b, vloop);
    LLVMValueRef j = LLVMBuildPhi(q.b, q.i64, "j");
    LLVMValueRef off = LLVMBuildMul(q.b, j, LLVMConstInt(q.i64, vl, 0), "");
    quantize_vector(&q, gep(&q, src, LLVMBuildMul(q.b, off, LLVMConstInt(q.i64, 4, 0), "")),
                    gep(&q, out, off), vl);
    LLVMValueRef jn = LLVMBuildAdd(q.b, j, LLVMConstInt(q.i64, 1, 0), "");
    LLVMValueRef zero = LLVMConstInt(q.i64, 0, 0);
    LLVMAddIncoming(j, &zero, &rows, 1);
    LLVMAddIncoming(j, &jn, &vloop, 1);
    LLVMBuildCondBr(q.b,
                    LLVMBuildICmp(q.b, LLVMIntEQ, jn, LLVMConstInt(q.i64, (uint64_t)nfull, 0), ""),
                    vdone, vloop);
    LLVMPositionBuilderAtEnd(q.b, vdone);
  }
  /* The tail of the row as one shorter vector. */
  unsigned tail = (unsigned)(k % vl);
  if (tail) {
    int64_t off = nfull * vl;
    quantize_vector(&q, gep(&q, src, LLVMConstInt(q.i64, (uint64_t)(4 * off), 0)),
                    gep(&q, out, LLVMConstInt(q.i64, (uint64_t)off, 0)), tail);
  }
  LLVMValueRef rn = LLVMBuildAdd(q.b, r, LLVMConstInt(q.i64, 1, 0), "");
  LLVMBasicBlockRef row_end = LLVMGetInsertBlock(q.b);
  LLVMValueRef zero = LLVMConstInt(q.i64, 0, 0);
  LLVMAddIncoming(r, &zero, &entry, 1);
  LLVMAddIncoming(r, &rn, &row_end, 1);
  LLVMBuildCondBr(q.b, LLVMBuildICmp(q.b, LLVMIntEQ, rn, LLVMConstInt(q.i64, (uint64_t)m, 0), ""),
                  done, rows);
  LLVMPositionBuilderAtEnd(q.b, done);
  LLVMBuildRetVoid(q.b);
  LLVMDisposeBuilder(q.b);
  return fn;
}

/* ---- dynamic quantization: each row from its own range ---- */

/* A loop over `trips` steps of vl elements (off = step * vl, i64) carrying
 * nacc values, which body updates; acc[] holds their final values after. */
typedef void LoopBody(Quant *q, LLVMValueRef off, LLVMValueRef *acc, void *ctx);

static void vec_loop(Quant *q, LLVMValueRef fn, int64_t trips, unsigned vl, int nacc,
                     LLVMValueRef *acc, LoopBody *body, void *ctx) {
  if (trips <= 0)
    return;
  LLVMBasicBlockRef pre = LLVMGetInsertBlock(q->b);
  LLVMBasicBlockRef loop = LLVMAppendBasicBlockInContext(q->ctx, fn, "vec");
  LLVMBasicBlockRef done = LLVMAppendBasicBlockInContext(q->ctx, fn, "vec.done");
  LLVMBuildBr(q->b, loop);
  LLVMPositionBuilderAtEnd(q->b, loop);
  LLVMValueRef j = LLVMBuildPhi(q->b, q->i64, "j"), phi[4];
  for (int a = 0; a < nacc; a++) {
    phi[a] = LLVMBuildPhi(q->b, LLVMTypeOf(acc[a]), "acc");
    LLVMAddIncoming(phi[a], &acc[a], &pre, 1);
    acc[a] = phi[a];
  }
  body(q, LLVMBuildMul(q->b, j, LLVMConstInt(q->i64, vl, 0), ""), acc, ctx);
  LLVMValueRef jn = LLVMBuildAdd(q->b, j, LLVMConstInt(q->i64, 1, 0), "");
  LLVMBasicBlockRef latch = LLVMGetInsertBlock(q->b);
  LLVMValueRef zero = LLVMConstInt(q->i64, 0, 0);
  LLVMAddIncoming(j, &zero, &pre, 1);
  LLVMAddIncoming(j, &jn, &latch, 1);
  for (int a = 0; a < nacc; a++)
    LLVMAddIncoming(phi[a], &acc[a], &latch, 1);
  LLVMBuildCondBr(q->b,
                  LLVMBuildICmp(q->b, LLVMIntEQ, jn, LLVMConstInt(q->i64, (uint64_t)trips, 0), ""),
                  done, loop);
  LLVMPositionBuilderAtEnd(q->b, done);
}

typedef struct {
  LLVMValueRef src, dst; /* the row's floats and bytes */
  unsigned n;            /* lanes of this step */
} Row;

/* The range step: lo = min(lo, x), hi = max(hi, x) over the finite x, as
 * the reference's compares (x < lo, x > hi; non-finite x taken as 0, which
 * the range holds already). */
static void range_step(Quant *q, LLVMValueRef off, LLVMValueRef *acc, void *ctx) {
  Row *row = ctx;
  LLVMTypeRef fv = LLVMVectorType(q->f32, row->n);
  LLVMValueRef x = cg_load(q->b, fv, gep(q, row->src, LLVMBuildMul(q->b, off,
                                                                    LLVMConstInt(q->i64, 4, 0), "")),
                           4);
  LLVMValueRef ax = cg_intrinsic(q->mod, q->b, "llvm.fabs", &fv, 1, &x, 1);
  LLVMValueRef inf = splat(LLVMConstReal(q->f32, (double)INFINITY), row->n);
  LLVMValueRef xf = LLVMBuildSelect(q->b, LLVMBuildFCmp(q->b, LLVMRealOLT, ax, inf, ""), x,
                                    LLVMConstNull(fv), "");
  acc[0] = LLVMBuildSelect(q->b, LLVMBuildFCmp(q->b, LLVMRealOLT, xf, acc[0], ""), xf, acc[0], "");
  acc[1] = LLVMBuildSelect(q->b, LLVMBuildFCmp(q->b, LLVMRealOGT, xf, acc[1], ""), xf, acc[1], "");
}

/* The quantize step: the bytes, and their sum into acc[0] (i32 lanes). */
static void quant_step(Quant *q, LLVMValueRef off, LLVMValueRef *acc, void *ctx) {
  Row *row = ctx;
  LLVMValueRef i = quantize_vector(
      q, gep(q, row->src, LLVMBuildMul(q->b, off, LLVMConstInt(q->i64, 4, 0), "")),
      gep(q, row->dst, off), row->n);
  acc[0] = LLVMBuildAdd(q->b, acc[0], i, "");
}

/* The lanes of v folded into s with select(cmp(lane, s), lane, s). */
static LLVMValueRef fold_lanes(Quant *q, LLVMValueRef v, unsigned n, LLVMRealPredicate cmp,
                               LLVMValueRef s) {
  for (unsigned i = 0; i < n; i++) {
    LLVMValueRef l = LLVMBuildExtractElement(q->b, v, LLVMConstInt(q->i32, i, 0), "");
    s = LLVMBuildSelect(q->b, LLVMBuildFCmp(q->b, cmp, l, s, ""), l, s, "");
  }
  return s;
}

/* rint of a double, ties to even: roundsd/frintn, or on SSE2 (no rounding
 * instruction) the 2^52 trick of round_even. */
static LLVMValueRef round_even_f64(Quant *q, LLVMValueRef v) {
  if (cg_isa_info[q->isa].round != CG_ROUND_MAGIC)
    return cg_intrinsic(q->mod, q->b, "llvm.roundeven", &q->f64, 1, &v, 1);
  LLVMValueRef a = cg_intrinsic(q->mod, q->b, "llvm.fabs", &q->f64, 1, &v, 1);
  LLVMValueRef big = LLVMConstReal(q->f64, 4503599627370496.0);
  LLVMValueRef r = LLVMBuildFSub(q->b, LLVMBuildFAdd(q->b, a, big, ""), big, "");
  r = cg_intrinsic(q->mod, q->b, "llvm.copysign", &q->f64, 1, (LLVMValueRef[]){r, v}, 2);
  return LLVMBuildSelect(q->b, LLVMBuildFCmp(q->b, LLVMRealOLT, a, big, ""), r, v, "");
}

/* The finite range of `count` floats at src widened to include 0: whole
 * vectors, the tail, then the lanes. */
static void range_of(Quant *q, LLVMValueRef fn, LLVMValueRef src, int64_t count, unsigned vl,
                     LLVMValueRef *lo, LLVMValueRef *hi) {
  int64_t nfull = count / vl;
  unsigned tail = (unsigned)(count % vl);
  Row row = {src, NULL, vl};
  LLVMTypeRef fv = LLVMVectorType(q->f32, vl);
  LLVMValueRef acc[2] = {LLVMConstNull(fv), LLVMConstNull(fv)};
  vec_loop(q, fn, nfull, vl, 2, acc, range_step, &row);
  LLVMValueRef zero = LLVMConstReal(q->f32, 0.0);
  *lo = fold_lanes(q, acc[0], vl, LLVMRealOLT, zero);
  *hi = fold_lanes(q, acc[1], vl, LLVMRealOGT, zero);
  if (tail) {
    Row t = row;
    t.n = tail;
    LLVMTypeRef tv = LLVMVectorType(q->f32, tail);
    LLVMValueRef ta[2] = {LLVMConstNull(tv), LLVMConstNull(tv)};
    range_step(q, LLVMConstInt(q->i64, (uint64_t)(nfull * vl), 0), ta, &t);
    *lo = fold_lanes(q, ta[0], tail, LLVMRealOLT, *lo);
    *hi = fold_lanes(q, ta[1], tail, LLVMRealOGT, *hi);
  }
}

/* q8c's parameters of a row (qlinear_dyn, qmatmul_dyn): sx = f32((f64(hi)
 * - f64(lo)) / 255), 1 below 1e-30; zx = rint(-f64(lo) / f64(sx)) clamped
 * to [0, 255] (never NaN: lo and sx are finite). */
static void row_params(Quant *q, LLVMValueRef lo, LLVMValueRef hi, LLVMValueRef *sxp,
                       LLVMValueRef *zxp) {
  LLVMValueRef lod = LLVMBuildFPExt(q->b, lo, q->f64, "");
  LLVMValueRef sxd = LLVMBuildFDiv(q->b, LLVMBuildFSub(q->b, LLVMBuildFPExt(q->b, hi, q->f64, ""), lod, ""),
                                   LLVMConstReal(q->f64, 255.0), "");
  LLVMValueRef sx = LLVMBuildFPTrunc(q->b, sxd, q->f32, "sx");
  LLVMValueRef ok = LLVMBuildFCmp(q->b, LLVMRealOGE, LLVMBuildFPExt(q->b, sx, q->f64, ""),
                                  LLVMConstReal(q->f64, 1e-30), "");
  sx = LLVMBuildSelect(q->b, ok, sx, LLVMConstReal(q->f32, 1.0), "");
  LLVMValueRef zd = round_even_f64(
      q, LLVMBuildFDiv(q->b, LLVMBuildFNeg(q->b, lod, ""), LLVMBuildFPExt(q->b, sx, q->f64, ""), ""));
  LLVMValueRef d0 = LLVMConstReal(q->f64, 0.0), d255 = LLVMConstReal(q->f64, 255.0);
  zd = LLVMBuildSelect(q->b, LLVMBuildFCmp(q->b, LLVMRealOLT, zd, d0, ""), d0, zd, "");
  zd = LLVMBuildSelect(q->b, LLVMBuildFCmp(q->b, LLVMRealOGT, zd, d255, ""), d255, zd, "");
  *sxp = sx;
  *zxp = LLVMBuildFPToSI(q->b, zd, q->i32, "zx");
}

/* ONNX's DynamicQuantizeLinear parameters (q8_ref_qlinear_dyn_tensor), each
 * operation in f32: sx = 1 when hi == lo, else (hi - lo) / 255; zx =
 * rint(max(0, min(255, 0 - lo / sx))) with std::min/max's selects (NaN ->
 * 255). The clamped value is an integer-or-half in [0, 255], exact in f64. */
static void tensor_params(Quant *q, LLVMValueRef lo, LLVMValueRef hi, LLVMValueRef *sxp,
                          LLVMValueRef *zxp) {
  LLVMValueRef one = LLVMConstReal(q->f32, 1.0), c255 = LLVMConstReal(q->f32, 255.0);
  LLVMValueRef zero = LLVMConstReal(q->f32, 0.0);
  LLVMValueRef sx = LLVMBuildSelect(
      q->b, LLVMBuildFCmp(q->b, LLVMRealOEQ, hi, lo, ""), one,
      LLVMBuildFDiv(q->b, LLVMBuildFSub(q->b, hi, lo, ""), c255, ""), "sx");
  LLVMValueRef zf = LLVMBuildFSub(q->b, zero, LLVMBuildFDiv(q->b, lo, sx, ""), "");
  zf = LLVMBuildSelect(q->b, LLVMBuildFCmp(q->b, LLVMRealOLT, zf, c255, ""), zf, c255, "");
  zf = LLVMBuildSelect(q->b, LLVMBuildFCmp(q->b, LLVMRealOLT, zero, zf, ""), zf, zero, "");
  LLVMValueRef zd = round_even_f64(q, LLVMBuildFPExt(q->b, zf, q->f64, ""));
  *sxp = sx;
  *zxp = LLVMBuildFPToSI(q->b, zd, q->i32, "zx");
}

/* cg_emit_quantize_rows_dyn, and with per_tensor one range and one pair of
 * parameters for all m rows, found before the rows are quantized. */
static LLVMValueRef emit_dyn(LLVMModuleRef mod, const char *name, CgIsa isa, int64_t m, int64_t k,
                             int64_t q_stride, bool per_tensor) {
  Quant q = {.mod = mod, .ctx = LLVMGetModuleContext(mod), .isa = isa};
  init_types(&q);
  unsigned vl = (unsigned)cg_isa_info[isa].qlanes, tail = (unsigned)(k % vl);
  int64_t nfull = k / vl;
  LLVMTypeRef fty = LLVMFunctionType(LLVMVoidTypeInContext(q.ctx),
                                     (LLVMTypeRef[]){q.ptr, q.ptr, q.ptr, q.i32}, 4, 0);
  LLVMValueRef fn = LLVMAddFunction(mod, name, fty);
  cg_set_isa_attrs(fn, isa);
  LLVMValueRef x = LLVMGetParam(fn, 0), dst = LLVMGetParam(fn, 1), recs = LLVMGetParam(fn, 2);
  LLVMValueRef c = LLVMGetParam(fn, 3);
  LLVMBasicBlockRef entry = LLVMAppendBasicBlockInContext(q.ctx, fn, "entry");
  LLVMPositionBuilderAtEnd(q.b, entry);
  if (m <= 0 || k <= 0) {
    LLVMBuildRetVoid(q.b);
    LLVMDisposeBuilder(q.b);
    return fn;
  }
  /* Per tensor: the range of all m k values and the parameters, once. */
  LLVMValueRef lo, hi, sx = NULL, zx = NULL;
  if (per_tensor) {
    range_of(&q, fn, x, m * k, vl, &lo, &hi);
    tensor_params(&q, lo, hi, &sx, &zx);
  }
  LLVMBasicBlockRef pre = LLVMGetInsertBlock(q.b);
  LLVMBasicBlockRef rows = LLVMAppendBasicBlockInContext(q.ctx, fn, "row");
  LLVMBasicBlockRef done = LLVMAppendBasicBlockInContext(q.ctx, fn, "done");
  LLVMBuildBr(q.b, rows);

  /* For each row: its source, destination and terms. */
  LLVMPositionBuilderAtEnd(q.b, rows);
  LLVMValueRef r = LLVMBuildPhi(q.b, q.i64, "r");
  Row row = {gep(&q, x, LLVMBuildMul(q.b, r, LLVMConstInt(q.i64, (uint64_t)(4 * k), 0), "")),
             gep(&q, dst, LLVMBuildMul(q.b, r, LLVMConstInt(q.i64, (uint64_t)q_stride, 0), "")),
             vl};
  LLVMValueRef rec = cg_at(q.b, recs, r, sizeof(CgGemmRow), 0);

  /* Per row: the row's range and its parameters. */
  if (!per_tensor) {
    range_of(&q, fn, row.src, k, vl, &lo, &hi);
    row_params(&q, lo, hi, &sx, &zx);
  }

  /* Quantize the row with them, summing its bytes. */
  q.scale = sx;
  q.zp = zx;
  q.lo = LLVMBuildSIToFP(q.b, LLVMBuildNeg(q.b, zx, ""), q.f32, "");
  q.hi = LLVMBuildSIToFP(q.b, LLVMBuildSub(q.b, LLVMConstInt(q.i32, 255, 0), zx, ""), q.f32, "");
  LLVMValueRef sum[1] = {LLVMConstNull(LLVMVectorType(q.i32, vl))};
  vec_loop(&q, fn, nfull, vl, 1, sum, quant_step, &row);
  LLVMValueRef rowsum = cg_intrinsic(q.mod, q.b, "llvm.vector.reduce.add",
                                     (LLVMTypeRef[]){LLVMVectorType(q.i32, vl)}, 1, sum, 1);
  if (tail) {
    Row t = row;
    t.n = tail;
    LLVMValueRef ts[1] = {LLVMConstNull(LLVMVectorType(q.i32, tail))};
    quant_step(&q, LLVMConstInt(q.i64, (uint64_t)(nfull * vl), 0), ts, &t);
    rowsum = LLVMBuildAdd(q.b, rowsum,
                          cg_intrinsic(q.mod, q.b, "llvm.vector.reduce.add",
                                       (LLVMTypeRef[]){LLVMVectorType(q.i32, tail)}, 1, ts, 1),
                          "");
  }

  /* The row's terms: add = c (sum - k zx) (wrapping), zp, scale. */
  LLVMValueRef add = LLVMBuildMul(
      q.b, c,
      LLVMBuildSub(q.b, rowsum, LLVMBuildMul(q.b, zx, LLVMConstInt(q.i32, (uint64_t)k, 0), ""), ""),
      "");
  LLVMSetAlignment(LLVMBuildStore(q.b, add, rec), 4);
  LLVMSetAlignment(LLVMBuildStore(q.b, zx, cg_at(q.b, rec, LLVMConstInt(q.i64, 0, 0), 0, 4)), 4);
  LLVMSetAlignment(LLVMBuildStore(q.b, sx, cg_at(q.b, rec, LLVMConstInt(q.i64, 0, 0), 0, 8)), 4);

  LLVMValueRef rn = LLVMBuildAdd(q.b, r, LLVMConstInt(q.i64, 1, 0), "");
  LLVMBasicBlockRef row_end = LLVMGetInsertBlock(q.b);
  LLVMValueRef zero64 = LLVMConstInt(q.i64, 0, 0);
  LLVMAddIncoming(r, &zero64, &pre, 1);
  LLVMAddIncoming(r, &rn, &row_end, 1);
  LLVMBuildCondBr(q.b, LLVMBuildICmp(q.b, LLVMIntEQ, rn, LLVMConstInt(q.i64, (uint64_t)m, 0), ""),
                  done, rows);
  LLVMPositionBuilderAtEnd(q.b, done);
  LLVMBuildRetVoid(q.b);
  LLVMDisposeBuilder(q.b);
  return fn;
}

LLVMValueRef cg_emit_quantize_rows_dyn(LLVMModuleRef mod, const char *name, CgIsa isa, int64_t m,
                                       int64_t k, int64_t q_stride) {
  return emit_dyn(mod, name, isa, m, k, q_stride, false);
}

LLVMValueRef cg_emit_quantize_tensor_dyn(LLVMModuleRef mod, const char *name, CgIsa isa,
                                         int64_t m, int64_t k, int64_t q_stride) {
  return emit_dyn(mod, name, isa, m, k, q_stride, true);
}
