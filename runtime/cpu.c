/* cpu.c: which Q8_FEATURE_* bits this CPU has, so that the runtime never
 * calls a variant whose instructions would fault.
 *
 * x86_64: cpuid for the instructions and xgetbv for the register state: a
 * CPU may implement AVX-512 while the operating system does not save the ZMM
 * registers, and then the instructions fault. aarch64: the kernel's hwcaps.
 * This duplicates codegen/isa.c on purpose: the runtime is a separate
 * library and includes no compiler header.
 *
 * Q8_CPU_FEATURES (for tests) names the features to pretend; it is
 * intersected with the detected set, so it can only take features away. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

const struct q8rt_feature_info q8rt_features_known[] = {
    {"sse41", Q8_FEATURE_SSE41},
    {"avx2", Q8_FEATURE_AVX2},
    {"fma", Q8_FEATURE_FMA},
    {"f16c", Q8_FEATURE_F16C},
    {"avx512f", Q8_FEATURE_AVX512F},
    {"avx512bw", Q8_FEATURE_AVX512BW},
    {"avx512vl", Q8_FEATURE_AVX512VL},
    {"avx512vnni", Q8_FEATURE_AVX512VNNI},
    {"avxvnni", Q8_FEATURE_AVXVNNI},
    {"neon", Q8_FEATURE_NEON},
    {"dotprod", Q8_FEATURE_DOTPROD},
    {"i8mm", Q8_FEATURE_I8MM},
};
const int q8rt_nfeatures_known =
    (int)(sizeof q8rt_features_known / sizeof q8rt_features_known[0]);

#if defined(__x86_64__)
#include <cpuid.h>

static uint64_t detect(void) {
  unsigned a, b, c, d;
  uint64_t f = 0;
  if (!__get_cpuid_count(1, 0, &a, &b, &c, &d))
    return 0;
  int osxsave = (c >> 27) & 1, fma = (c >> 12) & 1, f16c = (c >> 29) & 1;
  if (c & (1u << 19))
    f |= Q8_FEATURE_SSE41;
  uint64_t xcr0 = 0;
  if (osxsave) {
    unsigned lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    xcr0 = ((uint64_t)hi << 32) | lo;
  }
  /* XMM|YMM state enabled; for AVX-512 also opmask, ZMM0-15 high, ZMM16-31. */
  int ymm = (xcr0 & 0x6) == 0x6, zmm = (xcr0 & 0xe6) == 0xe6;
  if (ymm && fma)
    f |= Q8_FEATURE_FMA;
  if (ymm && f16c)
    f |= Q8_FEATURE_F16C;
  unsigned max7; /* leaf 7's highest subleaf */
  if (__get_cpuid_count(7, 0, &max7, &b, &c, &d)) {
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
    if (max7 >= 1) {
      __get_cpuid_count(7, 1, &a, &b, &c, &d);
      if (ymm && (a & (1u << 4)))
        f |= Q8_FEATURE_AVXVNNI;
    }
  }
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

static uint64_t detect(void) {
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
static uint64_t detect(void) { return 0; }
#endif

static pthread_once_t detect_once = PTHREAD_ONCE_INIT;
static uint64_t detected;

static void detect_init(void) { detected = detect(); }

static uint64_t host_features(void) {
  pthread_once(&detect_once, detect_init);
  return detected;
}

/* Parse a Q8_CPU_FEATURES value into *out. An unknown name is skipped when
 * `lenient`, else the parse fails (returns 0) with *bad, *badlen the name. */
static int parse_features(const char *s, int lenient, uint64_t *out, const char **bad,
                          size_t *badlen) {
  uint64_t f = 0;
  while (*s) {
    while (*s == ' ' || *s == ',')
      s++;
    const char *start = s;
    while (*s && *s != ',')
      s++;
    size_t len = (size_t)(s - start);
    while (len > 0 && start[len - 1] == ' ')
      len--;
    if (len == 0)
      continue;
    if (len == 4 && memcmp(start, "none", 4) == 0)
      continue;
    int found = 0;
    for (int i = 0; i < q8rt_nfeatures_known; i++) {
      const char *name = q8rt_features_known[i].name;
      if (strlen(name) == len && memcmp(name, start, len) == 0) {
        f |= q8rt_features_known[i].bit;
        found = 1;
      }
    }
    if (!found && !lenient) {
      *bad = start;
      *badlen = len;
      return 0;
    }
  }
  *out = f;
  return 1;
}

/* The host's features restricted by Q8_CPU_FEATURES (parse_features says
 * what `lenient` means): 0 with the unknown name in *bad, *badlen. */
static int restricted_features(int lenient, uint64_t *out, const char **bad, size_t *badlen) {
  uint64_t have = host_features();
  const char *env = getenv("Q8_CPU_FEATURES");
  if (env && *env) {
    uint64_t want = 0;
    if (!parse_features(env, lenient, &want, bad, badlen))
      return 0;
    have &= want;
  }
  *out = have;
  return 1;
}

q8rt_status q8rt_effective_features(uint64_t *out, char *err, size_t errlen) {
  const char *bad;
  size_t badlen;
  if (restricted_features(0, out, &bad, &badlen))
    return Q8RT_OK;
  char known[256] = "";
  for (int i = 0; i < q8rt_nfeatures_known; i++) {
    strcat(known, q8rt_features_known[i].name);
    strcat(known, ", ");
  }
  strcat(known, "none");
  return q8rt_fail(Q8RT_ERR_ARG, err, errlen, "Q8_CPU_FEATURES: unknown feature '%.*s' (known: %s)",
                   (int)badlen, bad, known);
}

Q8RT_API uint64_t q8rt_cpu_features(void) {
  uint64_t have = 0;
  const char *bad;
  size_t badlen;
  restricted_features(1, &have, &bad, &badlen); /* lenient: cannot fail */
  return have;
}

Q8RT_API const char *q8rt_feature_name(uint64_t bit) {
  for (int i = 0; i < q8rt_nfeatures_known; i++)
    if (q8rt_features_known[i].bit == bit)
      return q8rt_features_known[i].name;
  return NULL;
}
