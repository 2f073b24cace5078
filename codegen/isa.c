/* isa.c: the instruction-set variants (isa.def) and what the machine running
 * q8c supports, for --target=native.
 *
 * Detection uses cpuid and, for the AVX and AVX-512 register state, xgetbv:
 * a CPU can have AVX-512 while the operating system does not save its
 * registers, and then the instructions fault. On aarch64 the kernel's hwcaps
 * say it. native picks among the variants of the machine's own
 * architecture: x86_64 code on x86_64, aarch64 code on aarch64. */
#include <string.h>

#include "codegen.h"

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

#if defined(__x86_64__)
#include <cpuid.h>

static uint64_t host_features(void) {
  unsigned a, b, c, d;
  uint64_t f = 0;
  if (!__get_cpuid_count(1, 0, &a, &b, &c, &d))
    return 0;
  bool osxsave = c & (1u << 27), fma = c & (1u << 12), f16c = c & (1u << 29);
  uint64_t xcr0 = 0;
  if (osxsave) {
    unsigned lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    xcr0 = ((uint64_t)hi << 32) | lo;
  }
  bool ymm = (xcr0 & 6) == 6, zmm = (xcr0 & 0xe6) == 0xe6;
  if (ymm && fma)
    f |= Q8_FEATURE_FMA;
  if (ymm && f16c)
    f |= Q8_FEATURE_F16C;
  if (__get_cpuid_count(7, 0, &a, &b, &c, &d)) {
    if (ymm && (b & (1u << 5)))
      f |= Q8_FEATURE_AVX2;
    if (zmm && (b & (1u << 16)))
      f |= Q8_FEATURE_AVX512F;
    if (zmm && (b & (1u << 30)))
      f |= Q8_FEATURE_AVX512BW;
    if (zmm && (b & (1u << 31)))
      f |= Q8_FEATURE_AVX512VL;
    if (zmm && (c & (1u << 11)))
      f |= Q8_FEATURE_AVX512VNNI;
  }
  if (__get_cpuid_count(7, 1, &a, &b, &c, &d) && ymm && (a & (1u << 4)))
    f |= Q8_FEATURE_AVXVNNI;
  return f;
}
#elif defined(__aarch64__) && defined(__linux__)
#include <sys/auxv.h>

/* The bit values from the kernel's uapi/asm/hwcap.h, for older headers. */
#ifndef HWCAP_ASIMD
#define HWCAP_ASIMD (1ul << 1)
#endif
#ifndef HWCAP_ASIMDDP
#define HWCAP_ASIMDDP (1ul << 20)
#endif
#ifndef HWCAP2_I8MM
#define HWCAP2_I8MM (1ul << 13)
#endif

static uint64_t host_features(void) {
  unsigned long hw = getauxval(AT_HWCAP), hw2 = getauxval(AT_HWCAP2);
  uint64_t f = 0;
  if (hw & HWCAP_ASIMD)
    f |= Q8_FEATURE_NEON;
  if (hw & HWCAP_ASIMDDP)
    f |= Q8_FEATURE_DOTPROD;
  if (hw2 & HWCAP2_I8MM)
    f |= Q8_FEATURE_I8MM;
  return f;
}
#else
static uint64_t host_features(void) { return 0; }
#endif

const char *cg_host_arch(void) {
#if defined(__aarch64__)
  return "aarch64";
#else
  return "x86_64";
#endif
}

bool cg_isa_is_aarch64(CgIsa isa) { return strcmp(cg_isa_info[isa].arch, "aarch64") == 0; }

CgIsa cg_isa_native(void) {
  uint64_t have = host_features();
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
