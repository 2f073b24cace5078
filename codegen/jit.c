/* jit.c: compiling a model in memory with LLVM ORC (LLJIT), for
 * applications that go from IR text to running code without writing a file.
 *
 * The module is the same one emit.c writes to a .so. The reference ops it
 * calls are bound to this library's own copies by address (the JIT need not
 * find them among the process's exported symbols), and libc/libm functions
 * (memcpy, erf, exp) come from the process. Each compilation has its own
 * LLJIT instance and LLVM context, so threads may compile at the same time.
 *
 * With CgOptions.jit_in_place the code reads the IR's constants where they
 * are, by address, and the packed copies codegen makes (f32gemm.c) live in
 * memory the CgJit holds (CgHeld: anonymous maps, transparent huge pages
 * asked for, so that filling them takes few page faults): the weights are
 * never LLVM constants, never in an object file, never copied again. */
#define _DEFAULT_SOURCE /* MAP_ANONYMOUS, madvise */
#include <llvm-c/LLJIT.h>
#include <llvm-c/Orc.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "../ir/refops.h"
#include "codegen.h"

struct CgHeld {
  struct {
    void *p;
    size_t size;
  } *maps;
  int n, cap;
};

struct CgJit {
  LLVMOrcLLJITRef jit;
  CgHeld held;
};

void *cg_held_alloc(CgHeld *h, size_t size) {
  if (h->n == h->cap) {
    int cap = h->cap ? 2 * h->cap : 16;
    void *maps = realloc(h->maps, (size_t)cap * sizeof *h->maps);
    if (!maps)
      return NULL;
    h->maps = maps;
    h->cap = cap;
  }
  size = size ? size : 1;
  void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED)
    return NULL;
#ifdef MADV_HUGEPAGE
  madvise(p, size, MADV_HUGEPAGE); /* advice: failing changes nothing */
#endif
  h->maps[h->n].p = p;
  h->maps[h->n++].size = size;
  return p;
}

static void held_free(CgHeld *h) {
  for (int i = 0; i < h->n; i++)
    munmap(h->maps[i].p, h->maps[i].size);
  free(h->maps);
  memset(h, 0, sizeof *h);
}

static bool orc_error(IrModule *m, const char *what, LLVMErrorRef e) {
  char *msg = LLVMGetErrorMessage(e);
  ir_error(&m->diag, (IrLoc){0}, "jit: %s: %s", what, msg);
  LLVMDisposeErrorMessage(msg);
  return false;
}

/* The reference ops a compiled model may call, by name and address: every
 * row of ir/refops.def. */
static const struct {
  const char *name;
  void (*fn)(void);
} refops[] = {
#define REFOP(ret, name, args) {#name, (void (*)(void))name},
#include "../ir/refops.def"
#undef REFOP
};

static bool define_refops(IrModule *m, LLVMOrcLLJITRef jit, LLVMOrcJITDylibRef jd) {
  enum { N = sizeof refops / sizeof refops[0] };
  LLVMOrcCSymbolMapPair pairs[N];
  for (int i = 0; i < N; i++) {
    pairs[i].Name = LLVMOrcLLJITMangleAndIntern(jit, refops[i].name);
    pairs[i].Sym.Address = (LLVMOrcExecutorAddress)(uintptr_t)refops[i].fn;
    pairs[i].Sym.Flags.GenericFlags = LLVMJITSymbolGenericFlagsExported |
                                      LLVMJITSymbolGenericFlagsCallable;
    pairs[i].Sym.Flags.TargetFlags = 0;
  }
  LLVMOrcMaterializationUnitRef mu = LLVMOrcAbsoluteSymbols(pairs, N);
  LLVMErrorRef e = LLVMOrcJITDylibDefine(jd, mu);
  return e ? orc_error(m, "defining the reference ops", e) : true;
}

CgJit *cg_jit_compile(IrModule *m, const CgOptions *o, const q8_model_desc **desc) {
  if (o->nisas > 0 && cg_isa_info[o->isas[0]].arch != cg_host_arch()) {
    const char *arch = cg_arch_of(o->isas[0])->name;
    ir_error(&m->diag, (IrLoc){0},
             "jit: cannot run %s code on this %s machine (compile a .so with -o and run it on an "
             "%s machine or emulator)",
             arch, cg_arch_info[cg_host_arch()].name, arch);
    return NULL;
  }
  cg_init_llvm();
  CgJit *cj = calloc(1, sizeof *cj);
  if (!cj) {
    ir_error(&m->diag, (IrLoc){0}, "jit: out of memory");
    return NULL;
  }
  LLVMErrorRef e = LLVMOrcCreateLLJIT(&cj->jit, NULL);
  if (e) {
    orc_error(m, "cannot create LLJIT", e);
    free(cj);
    return NULL;
  }
  LLVMOrcJITDylibRef jd = LLVMOrcLLJITGetMainJITDylib(cj->jit);
  LLVMOrcDefinitionGeneratorRef gen;
  e = LLVMOrcCreateDynamicLibrarySearchGeneratorForProcess(
      &gen, LLVMOrcLLJITGetGlobalPrefix(cj->jit), NULL, NULL);
  if (e) {
    orc_error(m, "cannot search the process for symbols", e);
    cg_jit_free(cj);
    return NULL;
  }
  LLVMOrcJITDylibAddGenerator(jd, gen);
  if (!define_refops(m, cj->jit, jd)) {
    cg_jit_free(cj);
    return NULL;
  }

  LLVMOrcThreadSafeContextRef tsc = LLVMOrcCreateNewThreadSafeContext();
  CgOptions oh = *o;
  oh.held = o->jit_in_place ? &cj->held : NULL;
  LLVMModuleRef mod = cg_build_optimized(m, &oh, LLVMOrcThreadSafeContextGetContext(tsc));
  if (!mod) {
    LLVMOrcDisposeThreadSafeContext(tsc);
    cg_jit_free(cj);
    return NULL;
  }
  LLVMOrcThreadSafeModuleRef tsm = LLVMOrcCreateNewThreadSafeModule(mod, tsc);
  LLVMOrcDisposeThreadSafeContext(tsc); /* the module holds its own reference */
  e = LLVMOrcLLJITAddLLVMIRModule(cj->jit, jd, tsm);
  if (e) {
    LLVMOrcDisposeThreadSafeModule(tsm);
    orc_error(m, "cannot add the module", e);
    cg_jit_free(cj);
    return NULL;
  }
  LLVMOrcExecutorAddress addr = 0;
  e = LLVMOrcLLJITLookup(cj->jit, &addr, "q8_model");
  if (e) {
    orc_error(m, "cannot compile the model", e);
    cg_jit_free(cj);
    return NULL;
  }
  *desc = (const q8_model_desc *)(uintptr_t)addr;
  return cj;
}

void cg_jit_free(CgJit *cj) {
  if (!cj)
    return;
  if (cj->jit) {
    LLVMErrorRef e = LLVMOrcDisposeLLJIT(cj->jit);
    if (e)
      LLVMConsumeError(e);
  }
  held_free(&cj->held);
  free(cj);
}
