/* irbuild.c: small LLVM IR building blocks every code generator here uses
 * (module.c, quantize.c, gemm_tasks.c, x86/qgemm.c, aarch64/qgemm.c):
 * constant vectors and shuffles, target intrinsics by name, private constant
 * globals, byte addressing. Each takes the LLVM builder or module it works
 * on, so any emitter can call it whatever its own state looks like. */
#include <string.h>

#include "codegen.h"

LLVMValueRef cg_splat(LLVMValueRef c, unsigned n) {
  LLVMValueRef v[64];
  for (unsigned i = 0; i < n; i++)
    v[i] = c;
  return LLVMConstVector(v, n);
}

LLVMValueRef cg_shuffle(LLVMBuilderRef b, LLVMValueRef x, LLVMValueRef y, const int *idx,
                        unsigned n) {
  LLVMTypeRef i32 = LLVMInt32TypeInContext(LLVMGetTypeContext(LLVMTypeOf(x)));
  LLVMValueRef m[64];
  for (unsigned i = 0; i < n; i++)
    m[i] = LLVMConstInt(i32, (uint64_t)(int64_t)idx[i], 1);
  return LLVMBuildShuffleVector(b, x, y ? y : LLVMGetUndef(LLVMTypeOf(x)), LLVMConstVector(m, n),
                                "");
}

LLVMValueRef cg_intrinsic(LLVMModuleRef mod, LLVMBuilderRef b, const char *name, LLVMTypeRef *over,
                          size_t nover, LLVMValueRef *args, unsigned nargs) {
  unsigned id = LLVMLookupIntrinsicID(name, strlen(name));
  if (!id)
    q8_die("LLVM has no intrinsic %s", name);
  LLVMValueRef fn = LLVMGetIntrinsicDeclaration(mod, id, over, nover);
  LLVMTypeRef fty = LLVMIntrinsicGetType(LLVMGetModuleContext(mod), id, over, nover);
  return LLVMBuildCall2(b, fty, fn, args, nargs, "");
}

LLVMValueRef cg_private_const(LLVMModuleRef mod, const char *name, LLVMValueRef init) {
  LLVMValueRef g = LLVMAddGlobal(mod, LLVMTypeOf(init), name);
  LLVMSetInitializer(g, init);
  LLVMSetGlobalConstant(g, 1);
  LLVMSetLinkage(g, LLVMPrivateLinkage);
  LLVMSetUnnamedAddress(g, LLVMGlobalUnnamedAddr);
  LLVMSetAlignment(g, 64);
  return g;
}

LLVMValueRef cg_at(LLVMBuilderRef b, LLVMValueRef base, LLVMValueRef i, int64_t scale,
                   int64_t off) {
  LLVMContextRef ctx = LLVMGetTypeContext(LLVMTypeOf(i));
  LLVMTypeRef i64 = LLVMInt64TypeInContext(ctx);
  LLVMValueRef o = LLVMBuildMul(b, i, LLVMConstInt(i64, (uint64_t)scale, 1), "");
  if (off)
    o = LLVMBuildAdd(b, o, LLVMConstInt(i64, (uint64_t)off, 1), "");
  return LLVMBuildGEP2(b, LLVMInt8TypeInContext(ctx), base, &o, 1, "");
}

LLVMValueRef cg_load(LLVMBuilderRef b, LLVMTypeRef t, LLVMValueRef p, unsigned align) {
  LLVMValueRef v = LLVMBuildLoad2(b, t, p, "");
  LLVMSetAlignment(v, align);
  return v;
}

LLVMValueRef cg_splat_value(LLVMBuilderRef b, LLVMValueRef v, unsigned n) {
  LLVMContextRef ctx = LLVMGetTypeContext(LLVMTypeOf(v));
  LLVMTypeRef vt = LLVMVectorType(LLVMTypeOf(v), n);
  LLVMValueRef x = LLVMBuildInsertElement(b, LLVMGetUndef(vt), v,
                                          LLVMConstInt(LLVMInt32TypeInContext(ctx), 0, 0), "");
  int zeros[64] = {0};
  return cg_shuffle(b, x, NULL, zeros, n);
}
