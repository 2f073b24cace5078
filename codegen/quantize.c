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
 * kernels multiply them by zero weights). */
#include <stdio.h>
#include <string.h>

#include "codegen.h"

typedef struct {
  LLVMContextRef ctx;
  LLVMModuleRef mod;
  LLVMBuilderRef b;
  CgIsa isa;
  LLVMTypeRef i8, i32, i64, f32, ptr;
  float scale;
  int32_t zp, qmin, qmax;
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

static LLVMValueRef gep(Quant *q, LLVMValueRef base, LLVMValueRef off) {
  return LLVMBuildGEP2(q->b, q->i8, base, &off, 1, "");
}

/* Quantize n floats at src into n bytes at dst. */
static void quantize_vector(Quant *q, LLVMValueRef src, LLVMValueRef dst, unsigned n) {
  LLVMTypeRef fv = LLVMVectorType(q->f32, n);
  LLVMValueRef x = LLVMBuildLoad2(q->b, fv, src, "");
  LLVMSetAlignment(x, 4);
  LLVMValueRef v = LLVMBuildFDiv(q->b, x, splat(LLVMConstReal(q->f32, q->scale), n), "");
  LLVMValueRef r = round_even(q, v, n);
  LLVMValueRef lo = splat(LLVMConstReal(q->f32, (float)(q->qmin - q->zp)), n);
  LLVMValueRef hi = splat(LLVMConstReal(q->f32, (float)(q->qmax - q->zp)), n);
  r = LLVMBuildSelect(q->b, LLVMBuildFCmp(q->b, LLVMRealOLT, r, lo, ""), lo, r, "");
  r = LLVMBuildSelect(q->b, LLVMBuildFCmp(q->b, LLVMRealOGT, r, hi, ""), hi, r, "");
  /* NaN -> 0 here, the zero point once zp is added. */
  r = LLVMBuildSelect(q->b, LLVMBuildFCmp(q->b, LLVMRealUNO, v, v, ""), LLVMConstNull(fv), r, "");
  LLVMTypeRef iv = LLVMVectorType(q->i32, n);
  LLVMValueRef i = LLVMBuildAdd(q->b, LLVMBuildFPToSI(q->b, r, iv, ""),
                                splat(LLVMConstInt(q->i32, (uint64_t)q->zp, 1), n), "");
  LLVMValueRef bytes = LLVMBuildTrunc(q->b, i, LLVMVectorType(q->i8, n), "");
  LLVMSetAlignment(LLVMBuildStore(q->b, bytes, dst), 1);
}

LLVMValueRef cg_emit_quantize_rows(LLVMModuleRef mod, const char *name, CgIsa isa, int64_t m,
                                   int64_t k, int64_t x_stride, float scale, int32_t zero_point,
                                   IrDType dtype) {
  Quant q = {
      .mod = mod, .ctx = LLVMGetModuleContext(mod), .isa = isa, .scale = scale, .zp = zero_point};
  ir_qbounds(dtype, &q.qmin, &q.qmax);
  q.b = LLVMCreateBuilderInContext(q.ctx);
  q.i8 = LLVMInt8TypeInContext(q.ctx);
  q.i32 = LLVMInt32TypeInContext(q.ctx);
  q.i64 = LLVMInt64TypeInContext(q.ctx);
  q.f32 = LLVMFloatTypeInContext(q.ctx);
  q.ptr = LLVMPointerTypeInContext(q.ctx, 0);
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
