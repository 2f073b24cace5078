/* vmath.h: the float32 math of docs/float.md as LLVM IR on vectors of any
 * width (vmath.c), for the float-op emitters (floatops.c). Each function
 * performs, lane by lane, exactly the operations of its scalar twin in
 * ir/fmath.h, from the same constants, so the interpreter's bits come out.
 * Every value is a vector <w x float> (w >= 1; a tail element is <1 x
 * float>). */
#ifndef Q8_CODEGEN_VMATH_H
#define Q8_CODEGEN_VMATH_H

#include "codegen.h"

/* A function being built, and the types its code uses. */
typedef struct {
  LLVMModuleRef mod;
  LLVMContextRef ctx;
  LLVMBuilderRef b;
  LLVMValueRef fn;
  LLVMBasicBlockRef entry;
  LLVMTypeRef f32, i32, i64, ptr;
} CgFn;

/* A constant <w x float> (or <w x i32>) of copies of c. */
LLVMValueRef cg_vm_f(CgFn *f, float c, unsigned w);
/* The lane count of vector v. */
unsigned cg_vm_width(LLVMValueRef v);
/* v == v lane by lane is false: <w x i1>. */
LLVMValueRef cg_vm_isnan(CgFn *f, LLVMValueRef v);

LLVMValueRef cg_vm_exp(CgFn *f, LLVMValueRef x);     /* q8f_exp */
LLVMValueRef cg_vm_erf1p(CgFn *f, LLVMValueRef z);   /* q8f_erf1p */
LLVMValueRef cg_vm_tanh(CgFn *f, LLVMValueRef x);    /* q8f_tanh */
LLVMValueRef cg_vm_relu(CgFn *f, LLVMValueRef x);    /* x < 0 ? 0 : x */
LLVMValueRef cg_vm_gelu(CgFn *f, LLVMValueRef x);    /* q8f_gelu */
LLVMValueRef cg_vm_gelu_tanh(CgFn *f, LLVMValueRef x); /* q8f_gelu_tanh */
LLVMValueRef cg_vm_sigmoid(CgFn *f, LLVMValueRef x); /* q8f_sigmoid */
LLVMValueRef cg_vm_silu(CgFn *f, LLVMValueRef x);    /* q8f_silu */

#endif
