/* vmath.c: exp, 1 + erf, tanh and the activations built on them, as vector
 * LLVM IR (vmath.h). The operation sequences and constants are those of
 * ir/fmath.h, operation for operation: plain fmul/fadd/fsub/fdiv without
 * fast-math or contraction flags (so LLVM neither reassociates nor fuses
 * them), selects where the scalar code branches (both sides are computed,
 * the lane takes the one the scalar code would), and integer operations on
 * the exponent bits. docs/float.md states the arithmetic. */
#include "vmath.h"

#include "../ir/fmath.h"

unsigned cg_vm_width(LLVMValueRef v) { return LLVMGetVectorSize(LLVMTypeOf(v)); }

LLVMValueRef cg_vm_f(CgFn *f, float c, unsigned w) {
  return cg_splat(LLVMConstReal(f->f32, c), w);
}

static LLVMValueRef vi(CgFn *f, int32_t c, unsigned w) {
  return cg_splat(LLVMConstInt(f->i32, (uint64_t)(int64_t)c, 1), w);
}

static LLVMValueRef mul(CgFn *f, LLVMValueRef a, LLVMValueRef b) {
  return LLVMBuildFMul(f->b, a, b, "");
}
static LLVMValueRef add(CgFn *f, LLVMValueRef a, LLVMValueRef b) {
  return LLVMBuildFAdd(f->b, a, b, "");
}
static LLVMValueRef sub(CgFn *f, LLVMValueRef a, LLVMValueRef b) {
  return LLVMBuildFSub(f->b, a, b, "");
}
static LLVMValueRef sel(CgFn *f, LLVMValueRef c, LLVMValueRef a, LLVMValueRef b) {
  return LLVMBuildSelect(f->b, c, a, b, "");
}
static LLVMValueRef cmp(CgFn *f, LLVMRealPredicate p, LLVMValueRef a, LLVMValueRef b) {
  return LLVMBuildFCmp(f->b, p, a, b, "");
}

LLVMValueRef cg_vm_isnan(CgFn *f, LLVMValueRef v) { return cmp(f, LLVMRealUNO, v, v); }

/* c[0] x^(n-1) + ... + c[n-1] as q8f_horner: p = p * x + c[i]. */
static LLVMValueRef horner(CgFn *f, const float *c, int n, LLVMValueRef x) {
  unsigned w = cg_vm_width(x);
  LLVMValueRef p = cg_vm_f(f, c[0], w);
  for (int i = 1; i < n; i++)
    p = add(f, mul(f, p, x), cg_vm_f(f, c[i], w));
  return p;
}

/* 2^k for integer k of a normal float's exponent range: bits (k + 127) << 23. */
static LLVMValueRef pow2(CgFn *f, LLVMValueRef k) {
  unsigned w = cg_vm_width(k);
  LLVMValueRef e = LLVMBuildShl(f->b, LLVMBuildAdd(f->b, k, vi(f, 127, w), ""), vi(f, 23, w), "");
  return LLVMBuildBitCast(f->b, e, LLVMVectorType(f->f32, w), "");
}

LLVMValueRef cg_vm_exp(CgFn *f, LLVMValueRef x) {
  unsigned w = cg_vm_width(x);
  LLVMValueRef hi = cg_vm_f(f, Q8F_EXP_HI, w), lo = cg_vm_f(f, Q8F_EXP_LO, w);
  LLVMValueRef v = sel(f, cmp(f, LLVMRealOGT, x, hi), hi, x);
  v = sel(f, cmp(f, LLVMRealOLT, v, lo), lo, v);
  LLVMValueRef magic = cg_vm_f(f, Q8F_RINT_MAGIC, w);
  LLVMValueRef k = sub(f, add(f, mul(f, v, cg_vm_f(f, Q8F_LOG2E, w)), magic), magic);
  LLVMValueRef r = sub(f, v, mul(f, k, cg_vm_f(f, Q8F_LN2_C1, w)));
  r = sub(f, r, mul(f, k, cg_vm_f(f, Q8F_LN2_C2, w)));
  LLVMValueRef p = horner(f, q8f_exp_p, Q8F_EXP_NP, r);
  p = add(f, mul(f, p, mul(f, r, r)), r);
  p = add(f, p, cg_vm_f(f, 1.0f, w));
  LLVMValueRef ki = LLVMBuildFPToSI(f->b, k, LLVMVectorType(f->i32, w), "");
  LLVMValueRef k1 = LLVMBuildSDiv(f->b, ki, vi(f, 2, w), "");
  LLVMValueRef k2 = LLVMBuildSub(f->b, ki, k1, "");
  LLVMValueRef y = mul(f, mul(f, p, pow2(f, k1)), pow2(f, k2));
  return sel(f, cg_vm_isnan(f, x), x, y);
}

static LLVMValueRef fabs_v(CgFn *f, LLVMValueRef x) {
  LLVMTypeRef t = LLVMTypeOf(x);
  return cg_intrinsic(f->mod, f->b, "llvm.fabs", &t, 1, &x, 1);
}

LLVMValueRef cg_vm_erf1p(CgFn *f, LLVMValueRef z) {
  unsigned w = cg_vm_width(z);
  LLVMValueRef a = fabs_v(f, z), one = cg_vm_f(f, 1.0f, w);
  LLVMValueRef small = add(f, one, mul(f, z, horner(f, q8f_erf_p, Q8F_ERF_NP, mul(f, z, z))));
  LLVMValueRef big = cg_vm_f(f, Q8F_ERF_BIG, w);
  LLVMValueRef over = cmp(f, LLVMRealOGT, a, big);
  LLVMValueRef t = sel(f, over, big, a);
  LLVMValueRef e = cg_vm_exp(f, horner(f, q8f_erf_q, Q8F_ERF_NQ, t));
  e = sel(f, over, cg_vm_f(f, 0.0f, w), e);
  LLVMValueRef large =
      sel(f, cmp(f, LLVMRealOLT, z, cg_vm_f(f, 0.0f, w)), e, sub(f, cg_vm_f(f, 2.0f, w), e));
  LLVMValueRef y = sel(f, cmp(f, LLVMRealOLT, a, cg_vm_f(f, Q8F_ERF_SMALL, w)), small, large);
  return sel(f, cg_vm_isnan(f, z), z, y);
}

LLVMValueRef cg_vm_tanh(CgFn *f, LLVMValueRef x) {
  unsigned w = cg_vm_width(x);
  LLVMValueRef a = fabs_v(f, x), s = mul(f, x, x);
  LLVMValueRef small = add(f, mul(f, mul(f, horner(f, q8f_tanh_p, Q8F_TANH_NP, s), s), x), x);
  LLVMValueRef one = cg_vm_f(f, 1.0f, w), two = cg_vm_f(f, 2.0f, w);
  LLVMValueRef e = cg_vm_exp(f, mul(f, two, a));
  LLVMValueRef y = sub(f, one, LLVMBuildFDiv(f->b, two, add(f, e, one), ""));
  LLVMValueRef large =
      sel(f, cmp(f, LLVMRealOLT, x, cg_vm_f(f, 0.0f, w)), LLVMBuildFNeg(f->b, y, ""), y);
  LLVMValueRef r = sel(f, cmp(f, LLVMRealOLT, a, cg_vm_f(f, Q8F_TANH_SMALL, w)), small, large);
  return sel(f, cg_vm_isnan(f, x), x, r);
}

LLVMValueRef cg_vm_relu(CgFn *f, LLVMValueRef x) {
  LLVMValueRef zero = cg_vm_f(f, 0.0f, cg_vm_width(x));
  return sel(f, cmp(f, LLVMRealOLT, x, zero), zero, x);
}

LLVMValueRef cg_vm_gelu(CgFn *f, LLVMValueRef x) {
  unsigned w = cg_vm_width(x);
  LLVMValueRef y = mul(f, mul(f, cg_vm_f(f, 0.5f, w), x),
                       cg_vm_erf1p(f, mul(f, x, cg_vm_f(f, Q8F_SQRT1_2, w))));
  return sel(f, cg_vm_isnan(f, x), x, y);
}

LLVMValueRef cg_vm_gelu_tanh(CgFn *f, LLVMValueRef x) {
  unsigned w = cg_vm_width(x);
  LLVMValueRef u = add(f, x, mul(f, cg_vm_f(f, Q8F_GELU_TANH_A, w), mul(f, mul(f, x, x), x)));
  LLVMValueRef e = cg_vm_exp(f, mul(f, u, cg_vm_f(f, Q8F_GELU_TANH_K, w)));
  LLVMValueRef y = LLVMBuildFDiv(f->b, x, add(f, cg_vm_f(f, 1.0f, w), e), "");
  return sel(f, cg_vm_isnan(f, x), x, y);
}

/* num / (1 + exp(-x)), NaN x returned as it is. */
static LLVMValueRef over_one_plus_exp_neg(CgFn *f, LLVMValueRef num, LLVMValueRef x) {
  LLVMValueRef e = cg_vm_exp(f, LLVMBuildFNeg(f->b, x, ""));
  LLVMValueRef y = LLVMBuildFDiv(f->b, num, add(f, cg_vm_f(f, 1.0f, cg_vm_width(x)), e), "");
  return sel(f, cg_vm_isnan(f, x), x, y);
}

LLVMValueRef cg_vm_sigmoid(CgFn *f, LLVMValueRef x) {
  return over_one_plus_exp_neg(f, cg_vm_f(f, 1.0f, cg_vm_width(x)), x);
}

LLVMValueRef cg_vm_silu(CgFn *f, LLVMValueRef x) { return over_one_plus_exp_neg(f, x, x); }
