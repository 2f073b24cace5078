/* refcall.c: calls from generated code to the reference ops (ir/refops.h),
 * the functions a compiled model runs for the layers without a generated
 * kernel. Their LLVM function types come from the same table as their C
 * prototypes, ir/refops.def, so the two cannot disagree; a call whose
 * argument count or types differ from the table stops q8c (cg_call_ref
 * checks the count at compile time already). */
#include "codegen.h"

/* The LLVM types the table's argument macros stand for. */
typedef enum { T_VOID, T_PTR, T_I64, T_I32, T_F32, T_F64 } RefType;

/* INT is C's int: 32 bits wherever q8c runs or compiles for (LP64). */
_Static_assert(sizeof(int) == 4, "refops.def's INT is passed as i32");

enum { MAX_ARGS = 20 };

#define UNPAREN(...) __VA_ARGS__
#define PTR(ctype, name) T_PTR
#define I64(name) T_I64
#define I32(name) T_I32
#define INT(name) T_I32
#define F32(name) T_F32
#define F64(name) T_F64
static const struct {
  const char *name;
  RefType ret;
  unsigned nargs;
  RefType args[MAX_ARGS];
} refops[REF_COUNT] = {
#define REFOP(ret, name, args) [REF_##name] = {#name, T_##ret, CG_NARGS args, {UNPAREN args}},
#include "../ir/refops.def"
#undef REFOP
};
#undef PTR
#undef I64
#undef I32
#undef INT
#undef F32
#undef F64
#undef UNPAREN

static LLVMTypeRef llvm_type(LLVMContextRef ctx, RefType t) {
  switch (t) {
  case T_VOID:
    return LLVMVoidTypeInContext(ctx);
  case T_PTR:
    return LLVMPointerTypeInContext(ctx, 0);
  case T_I64:
    return LLVMInt64TypeInContext(ctx);
  case T_I32:
    return LLVMInt32TypeInContext(ctx);
  case T_F32:
    return LLVMFloatTypeInContext(ctx);
  case T_F64:
    return LLVMDoubleTypeInContext(ctx);
  }
  q8_unreachable();
}

LLVMTypeRef cg_ref_type(LLVMContextRef ctx, CgRefOp op) {
  LLVMTypeRef args[MAX_ARGS];
  for (unsigned i = 0; i < refops[op].nargs; i++)
    args[i] = llvm_type(ctx, refops[op].args[i]);
  return LLVMFunctionType(llvm_type(ctx, refops[op].ret), args, refops[op].nargs, 0);
}

LLVMValueRef cg_call_ref_args(LLVMModuleRef mod, LLVMBuilderRef b, CgRefOp op, LLVMValueRef *args,
                              unsigned n) {
  LLVMContextRef ctx = LLVMGetModuleContext(mod);
  if (n != refops[op].nargs)
    q8_die("%s called with %u arguments; ir/refops.def gives it %u", refops[op].name, n,
           refops[op].nargs);
  for (unsigned i = 0; i < n; i++)
    if (LLVMTypeOf(args[i]) != llvm_type(ctx, refops[op].args[i]))
      q8_die("%s: argument %u has another type than ir/refops.def's", refops[op].name, i + 1);
  LLVMTypeRef fty = cg_ref_type(ctx, op);
  LLVMValueRef f = LLVMGetNamedFunction(mod, refops[op].name);
  if (!f)
    f = LLVMAddFunction(mod, refops[op].name, fty);
  return LLVMBuildCall2(b, fty, f, args, n, "");
}
