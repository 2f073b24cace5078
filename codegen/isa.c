/* isa.c: the targets. The variants (isa.def, one row each), the two
 * architectures they belong to (one CgArch each: triple, linker, emitters,
 * packing), --target parsing, and what the machine running q8c supports,
 * for --target=native. An architecture is only ever named here: everything
 * else asks a variant's row or its CgArch.
 *
 * What the CPU supports is asked of the runtime (q8rt_cpu_features), so that
 * `native` means exactly the variant libq8rt would choose here: one
 * detection (cpuid and xgetbv on x86, hwcaps on aarch64), honouring the same
 * Q8_CPU_FEATURES override. native picks among the variants of the machine's
 * own architecture: x86_64 code on x86_64, aarch64 code on aarch64. */
#include <stdio.h>
#include <string.h>

#include "codegen.h"
#include "q8rt.h"

const CgIsaInfo cg_isa_info[CG_ISA_COUNT] = {
#define ISA(ID, name, arch, cpu, features, bits, vregs, nr, form, max_mr, max_nrv, spare, round, \
            prefetch, qlanes)                                                                   \
  [CG_ISA_##ID] = {name,    CG_ARCH_##arch,  cpu,   features,        bits,     vregs,           \
                   nr,      CG_FORM_##form,  max_mr, max_nrv,        spare,    CG_ROUND_##round, \
                   prefetch, qlanes},
#include "isa.def"
#undef ISA
};

#ifndef Q8_SUPPORT_LIB_BUILD
#define Q8_SUPPORT_LIB_BUILD NULL
#endif
#ifndef Q8_SUPPORT_LIB_AARCH64_BUILD
#define Q8_SUPPORT_LIB_AARCH64_BUILD NULL
#endif

/* Register LLVM's target for the architecture. */
static void init_x86_64(void) {
  LLVMInitializeX86TargetInfo();
  LLVMInitializeX86Target();
  LLVMInitializeX86TargetMC();
  LLVMInitializeX86AsmPrinter();
}

static void init_aarch64(void) {
  LLVMInitializeAArch64TargetInfo();
  LLVMInitializeAArch64Target();
  LLVMInitializeAArch64TargetMC();
  LLVMInitializeAArch64AsmPrinter();
}

/* The x86_64 driver is the host's own cc: q8c is built on x86_64 or
 * cross-compiles from it. */
const CgArch cg_arch_info[CG_ARCH_COUNT] = {
    [CG_ARCH_X86_64] = {.name = "x86_64",
                        .triple = "x86_64-pc-linux-gnu",
                        .cpu = "x86-64",
                        .init_llvm = init_x86_64,
                        .baseline = CG_ISA_GENERIC,
                        .cc = "cc",
                        .cc_env = "CC",
                        .cc_package = "gcc",
                        .lib_env = "Q8_SUPPORT_LIB",
                        .lib_beside = "libq8support.a",
                        .lib_build = Q8_SUPPORT_LIB_BUILD,
                        .cross = false,
                        .emit_qgemm = cg_emit_qgemm_x86,
                        .runtime_m = true,
                        .packed_size = cg_packed_size,
                        .pack = cg_pack_weights,
                        .emit_quantize = cg_emit_quantize_rows},
    [CG_ARCH_AARCH64] = {.name = "aarch64",
                         .triple = "aarch64-unknown-linux-gnu",
                         .cpu = "generic",
                         .init_llvm = init_aarch64,
                         .baseline = CG_ISA_AARCH64,
                         .cc = "aarch64-linux-gnu-gcc",
                         .cc_env = "Q8_CC_AARCH64",
                         .cc_package = "gcc-aarch64-linux-gnu",
                         .lib_env = "Q8_SUPPORT_LIB_AARCH64",
                         .lib_beside = "aarch64/libq8support.a",
                         .lib_build = Q8_SUPPORT_LIB_AARCH64_BUILD,
                         .cross = true,
                         .emit_qgemm = cg_emit_qgemm_aarch64,
                         .runtime_m = true,
                         .packed_size = NULL,
                         .pack = NULL,
                         .emit_quantize = cg_emit_quantize_rows},
};

const CgArch *cg_arch_of(CgIsa isa) { return &cg_arch_info[cg_isa_info[isa].arch]; }

int cg_isa_from_name(const char *s, size_t len) {
  for (int i = 0; i < CG_ISA_COUNT; i++)
    if (strlen(cg_isa_info[i].name) == len && memcmp(cg_isa_info[i].name, s, len) == 0)
      return i;
  return -1;
}

CgArchId cg_host_arch(void) {
#if defined(__aarch64__)
  return CG_ARCH_AARCH64;
#else
  return CG_ARCH_X86_64;
#endif
}

CgIsa cg_isa_native(void) {
  uint64_t have = q8rt_cpu_features();
  CgArchId arch = cg_host_arch();
  for (int i = 0; i < CG_ISA_COUNT; i++)
    if (cg_isa_info[i].arch == arch && (cg_isa_info[i].bits & ~have) == 0)
      return (CgIsa)i;
  return cg_arch_info[arch].baseline;
}

void cg_set_isa_attrs(LLVMValueRef fn, CgIsa isa) {
  LLVMContextRef ctx = LLVMGetTypeContext(LLVMTypeOf(fn));
  const CgIsaInfo *info = &cg_isa_info[isa];
  LLVMAttributeRef cpu = LLVMCreateStringAttribute(ctx, "target-cpu", 10, info->cpu,
                                                   (unsigned)strlen(info->cpu));
  LLVMAddAttributeAtIndex(fn, LLVMAttributeFunctionIndex, cpu);
  if (info->features[0]) {
    LLVMAttributeRef feat = LLVMCreateStringAttribute(ctx, "target-features", 15, info->features,
                                                      (unsigned)strlen(info->features));
    LLVMAddAttributeAtIndex(fn, LLVMAttributeFunctionIndex, feat);
  }
}

int cg_shared_pack_nr(const CgOptions *o) {
  if (o->nisas < 2 || !cg_arch_of(o->isas[0])->pack)
    return 0;
  int p = 0;
  for (int i = 0; i < o->nisas; i++)
    p = cg_isa_info[o->isas[i]].nr > p ? cg_isa_info[o->isas[i]].nr : p;
  for (int i = 0; i < o->nisas; i++)
    if (p % cg_isa_info[o->isas[i]].nr != 0)
      return 0;
  return p;
}

bool cg_parse_targets(const char *list, CgOptions *o, char *err, size_t errlen) {
  o->nisas = 0;
  const char *p;
  size_t len;
  for (const char *rest = list; sup_list_next(&rest, &p, &len);) {
    int isa = len == 6 && memcmp(p, "native", 6) == 0 ? (int)cg_isa_native()
                                                      : cg_isa_from_name(p, len);
    if (isa < 0) {
      char names[256] = "";
      for (int i = 0; i < CG_ISA_COUNT; i++)
        snprintf(names + strlen(names), sizeof names - strlen(names), "%s, ", cg_isa_info[i].name);
      snprintf(err, errlen, "unknown target '%.*s' (native, %.*s)", (int)len, p,
               (int)strlen(names) - 2, names);
      return false;
    }
    bool dup = false;
    for (int i = 0; i < o->nisas; i++)
      dup |= o->isas[i] == (CgIsa)isa;
    if (!dup)
      o->isas[o->nisas++] = (CgIsa)isa;
  }
  if (o->nisas == 0) {
    snprintf(err, errlen, "no target given");
    return false;
  }
  /* One library, one architecture: the object has one ELF machine. */
  for (int i = 1; i < o->nisas; i++)
    if (cg_isa_info[o->isas[i]].arch != cg_isa_info[o->isas[0]].arch) {
      snprintf(err, errlen,
               "'%s' is %s code but '%s' is %s: one model library holds one architecture's "
               "variants (compile one library per architecture)",
               cg_isa_info[o->isas[0]].name, cg_arch_of(o->isas[0])->name,
               cg_isa_info[o->isas[i]].name, cg_arch_of(o->isas[i])->name);
      return false;
    }
  /* Best first: the order of isa.def, whatever the order given. */
  for (int i = 0; i < o->nisas; i++)
    for (int j = i + 1; j < o->nisas; j++)
      if (o->isas[j] < o->isas[i]) {
        CgIsa t = o->isas[i];
        o->isas[i] = o->isas[j];
        o->isas[j] = t;
      }
  return true;
}
