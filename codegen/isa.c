/* isa.c: the instruction-set variants (isa.def) and what the machine running
 * q8c supports, for --target=native.
 *
 * What the CPU supports is asked of the runtime (q8rt_cpu_features), so that
 * `native` means exactly the variant libq8rt would choose here: one
 * detection (cpuid and xgetbv on x86, hwcaps on aarch64), honouring the same
 * Q8_CPU_FEATURES override. native picks among the variants of the machine's
 * own architecture: x86_64 code on x86_64, aarch64 code on aarch64. */
#include <string.h>

#include "codegen.h"
#include "q8rt.h"

const CgIsaInfo cg_isa_info[CG_ISA_COUNT] = {
#define ISA(ID, name, arch, cpu, features, bits) [CG_ISA_##ID] = {name, arch, cpu, features, bits},
#include "isa.def"
#undef ISA
};

int cg_isa_from_name(const char *s, size_t len) {
  for (int i = 0; i < CG_ISA_COUNT; i++)
    if (strlen(cg_isa_info[i].name) == len && memcmp(cg_isa_info[i].name, s, len) == 0)
      return i;
  return -1;
}

const char *cg_host_arch(void) {
#if defined(__aarch64__)
  return "aarch64";
#else
  return "x86_64";
#endif
}

bool cg_isa_is_aarch64(CgIsa isa) { return strcmp(cg_isa_info[isa].arch, "aarch64") == 0; }

CgIsa cg_isa_native(void) {
  uint64_t have = q8rt_cpu_features();
  const char *arch = cg_host_arch();
  for (int i = 0; i < CG_ISA_COUNT; i++)
    if (strcmp(cg_isa_info[i].arch, arch) == 0 && (cg_isa_info[i].bits & ~have) == 0)
      return (CgIsa)i;
  return strcmp(arch, "aarch64") == 0 ? CG_ISA_AARCH64 : CG_ISA_GENERIC;
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
