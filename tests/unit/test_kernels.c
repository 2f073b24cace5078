/* test_kernels.c: the generated int8 GEMM kernels (cg_emit_qgemm:
 * codegen/x86/qgemm.c, codegen/aarch64/qgemm.c) and the input quantization
 * loop (codegen/quantize.c), run and compared byte for byte with the
 * arithmetic of docs/quantization.md.
 *
 * The test carries its own small JIT: kernels are emitted into LLVM modules,
 * optimised with the default<O2> pipeline the compiler uses, and compiled in
 * memory by ORC LLJIT. The JIT's target machine is baseline x86-64, so each
 * function gets exactly the features its variant's attributes name (the
 * generic variant gets SSE2 only, not the host's AVX-512).
 *
 * The variants come from the table (isa.def), two tests per row: a sweep of
 * shapes (m 1..17, k and n with primes and every tail), input and output
 * types, relu, zero points, weights including -127 and 127, random biases and
 * multipliers (some exact powers of two, which make rounding ties), skipped
 * with a message when this CPU cannot execute the variant (AArch64 code runs
 * under qemu in tests/py/test_aarch64.py; no emulator here runs AVX-VNNI);
 * and its assembly, compiled with its architecture's target machine, checked
 * for the instructions it is meant to use (asm_checks: a row without an entry
 * there fails). The reference is computed here from ir_requantize and
 * ir_quantize_value (ir/quant.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <llvm-c/Analysis.h>
#include <llvm-c/LLJIT.h>
#include <llvm-c/Orc.h>
#include <llvm-c/Transforms/PassBuilder.h>

#include "codegen/codegen.h"

/* ---- random numbers (xorshift64*, reproducible) ---- */

typedef struct {
  uint64_t s;
} Rng;

static uint32_t rnd(Rng *r) {
  r->s ^= r->s >> 12;
  r->s ^= r->s << 25;
  r->s ^= r->s >> 27;
  return (uint32_t)((r->s * 0x2545F4914F6CDD1DULL) >> 32);
}

/* Uniform in [lo, hi]. */
static int32_t rnd_in(Rng *r, int32_t lo, int32_t hi) {
  return lo + (int32_t)(rnd(r) % (uint32_t)(hi - lo + 1));
}

static float rnd_unit(Rng *r) { return (float)(rnd(r) >> 8) / (float)(1 << 24); }

/* ---- which variants this machine runs ---- */

#if defined(__x86_64__)
#include <cpuid.h>
static bool cpu_has_avxvnni(void) {
  unsigned a, b, c, d;
  return __get_cpuid_count(7, 1, &a, &b, &c, &d) && (a & (1u << 4));
}
#else
static bool cpu_has_avxvnni(void) { return false; }
#endif

/* A variant runs here when its features are among those of the best
 * variant the machine supports (isa.c checks the OS saves the registers), or
 * for AVX-VNNI, which AVX-512 machines may lack, when cpuid says so. */
static bool can_run(CgIsa isa) {
  if (cg_isa_info[isa].arch != cg_host_arch())
    return false;
  uint64_t have = cg_isa_info[cg_isa_native()].bits;
  if ((cg_isa_info[isa].bits & ~have) == 0)
    return true;
  return isa == CG_ISA_AVXVNNI && cpu_has_avxvnni() &&
         (cg_isa_info[CG_ISA_AVX2].bits & ~have) == 0;
}

/* ---- the JIT ---- */

static LLVMOrcLLJITRef jit;
static LLVMTargetMachineRef tm; /* for the optimisation pipeline and assembly */
static int kernel_counter;

static void check_err(LLVMErrorRef e) {
  if (e) {
    char *msg = LLVMGetErrorMessage(e);
    fail_msg("LLVM: %s", msg);
    LLVMDisposeErrorMessage(msg);
  }
}

/* Baseline x86-64: functions get their features from their attributes. */
static LLVMTargetMachineRef baseline_tm(void) {
  char *triple = LLVMGetDefaultTargetTriple(), *msg = NULL;
  LLVMTargetRef target;
  if (LLVMGetTargetFromTriple(triple, &target, &msg))
    fail_msg("no target for %s: %s", triple, msg);
  LLVMTargetMachineRef t = LLVMCreateTargetMachine(target, triple, "x86-64", "",
                                                   LLVMCodeGenLevelDefault, LLVMRelocPIC,
                                                   LLVMCodeModelJITDefault);
  LLVMDisposeMessage(triple);
  return t;
}

static int setup(void **state) {
  cg_init_llvm(); /* the host's target and every architecture's, for test_asm */
  tm = baseline_tm();
  LLVMOrcLLJITBuilderRef builder = LLVMOrcCreateLLJITBuilder();
  LLVMOrcLLJITBuilderSetJITTargetMachineBuilder(
      builder, LLVMOrcJITTargetMachineBuilderCreateFromTargetMachine(baseline_tm()));
  check_err(LLVMOrcCreateLLJIT(&jit, builder));
  return 0;
}

static int teardown(void **state) {
  check_err(LLVMOrcDisposeLLJIT(jit));
  LLVMDisposeTargetMachine(tm);
  return 0;
}

/* A module being filled with kernels, then compiled as one. */
typedef struct {
  LLVMOrcThreadSafeContextRef tsc;
  LLVMContextRef ctx;
  LLVMModuleRef mod;
} Batch;

static void batch_begin(Batch *b) {
  b->tsc = LLVMOrcCreateNewThreadSafeContext();
  b->ctx = LLVMOrcThreadSafeContextGetContext(b->tsc);
  b->mod = LLVMModuleCreateWithNameInContext("kernels", b->ctx);
}

static void optimize(LLVMModuleRef mod, LLVMTargetMachineRef t) {
  char *msg = NULL;
  if (LLVMVerifyModule(mod, LLVMReturnStatusAction, &msg))
    fail_msg("invalid module: %s", msg);
  LLVMDisposeMessage(msg);
  LLVMPassBuilderOptionsRef opts = LLVMCreatePassBuilderOptions();
  check_err(LLVMRunPasses(mod, "default<O2>", t, opts));
  LLVMDisposePassBuilderOptions(opts);
}

/* Verify, optimise and hand the module to the JIT (which then owns it). */
static void batch_end(Batch *b) {
  optimize(b->mod, tm);
  LLVMOrcThreadSafeModuleRef tsm = LLVMOrcCreateNewThreadSafeModule(b->mod, b->tsc);
  check_err(LLVMOrcLLJITAddLLVMIRModule(jit, LLVMOrcLLJITGetMainJITDylib(jit), tsm));
  LLVMOrcDisposeThreadSafeContext(b->tsc);
}

static void *lookup(const char *name) {
  LLVMOrcExecutorAddress addr = 0;
  check_err(LLVMOrcLLJITLookup(jit, &addr, name));
  return (void *)(uintptr_t)addr;
}

/* ---- one qgemm case ---- */

typedef struct {
  int64_t m, k, n;
  IrDType xt, yt;
  bool relu;
  int wmax;        /* weights in [-wmax, wmax], both ends present */
  int32_t xlo, xhi; /* the range x is drawn from (and the kernel is told) */
  int mult_kind;   /* 0: random; 1: a power of two (exact products, rounding ties) */
  int64_t x_pad, y_pad;
  uint64_t seed;
  int pack_nr;     /* CgGemm.pack_nr: 0, or the block a library's variants share */
} Config;

typedef struct {
  Config c;
  CgGemm g;
  char prefix[32]; /* the layer's name (CgGemm.name) */
  char name[600];  /* the kernel's, as the emitter names it */
  int8_t *wq;
  int32_t *bias;
  float *mult;
  uint8_t *x;
  uint8_t *y;       /* m rows of y_stride elements, plus one guard row */
  size_t ybytes;
  int64_t ntasks;
  void (*fn)(void *, int64_t);
} Case;

static const uint8_t sentinel = 0xA5;

/* The data of a case, drawn from c->seed; its CgGemm points into it. */
static void init_case(Case *t, const Config *c) {
  memset(t, 0, sizeof *t);
  t->c = *c;
  Rng r = {c->seed * 0x9E3779B97F4A7C15ULL + 1};
  int64_t m = c->m, k = c->k, n = c->n;
  t->wq = malloc((size_t)(n * k));
  t->bias = malloc(sizeof(int32_t) * (size_t)n);
  t->mult = malloc(sizeof(float) * (size_t)n);
  for (int64_t i = 0; i < n * k; i++)
    t->wq[i] = (int8_t)rnd_in(&r, -c->wmax, c->wmax);
  t->wq[0] = (int8_t)c->wmax;
  t->wq[n * k - 1] = (int8_t)-c->wmax;
  /* Multipliers that spread the results over the output range (and past
   * it, to test the clamps). */
  double typical = sqrt((double)k) * c->wmax * (c->xhi - c->xlo + 1) / 3.0 + 1;
  for (int64_t j = 0; j < n; j++) {
    t->bias[j] = rnd_in(&r, -(int32_t)typical, (int32_t)typical);
    if (c->mult_kind == 1)
      t->mult[j] = ldexpf(1.0f, -rnd_in(&r, 1, 4));
    else
      t->mult[j] = (float)((0.25 + 2 * rnd_unit(&r)) * 150.0 / typical);
  }
  if (c->yt == IR_F32 && n > 1)
    t->mult[1] = 0; /* 0 * acc: +0.0 or -0.0 before relu */

  int64_t x_stride = (k + 3) / 4 * 4 + c->x_pad;
  t->x = malloc((size_t)(m * x_stride));
  for (int64_t i = 0; i < m * x_stride; i++)
    t->x[i] = (uint8_t)rnd(&r); /* the padding is garbage */
  for (int64_t i = 0; i < m; i++)
    for (int64_t l = 0; l < k; l++)
      t->x[i * x_stride + l] = (uint8_t)rnd_in(&r, c->xlo, c->xhi);

  int64_t y_stride = n + c->y_pad;
  size_t ysz = c->yt == IR_F32 ? 4 : 1;
  t->ybytes = (size_t)((m + 1) * y_stride) * ysz;
  t->y = malloc(t->ybytes);

  CgGemm *g = &t->g;
  g->name = t->prefix;
  g->m = m;
  g->k = k;
  g->n = n;
  g->x_dtype = c->xt;
  g->x_stride = x_stride;
  g->wq = t->wq;
  g->bias = t->bias;
  g->mult = t->mult;
  g->y_dtype = c->yt;
  g->y_stride = y_stride;
  g->x_min = c->xlo;
  g->x_max = c->xhi;
  g->pack_nr = c->pack_nr;
  if (c->yt == IR_F32) {
    g->relu = c->relu;
  } else {
    int32_t qmin, qmax;
    ir_qbounds(c->yt, &qmin, &qmax);
    g->y_zero_point = c->yt == IR_U8 ? rnd_in(&r, 0, 255) : rnd_in(&r, -20, 20);
    g->y_min = c->relu && g->y_zero_point > qmin ? g->y_zero_point : qmin;
    g->y_max = qmax;
  }
}

/* Emit the kernel of a case (under a fresh name) into mod. */
static void emit_case(Case *t, CgIsa isa, LLVMModuleRef mod) {
  snprintf(t->prefix, sizeof t->prefix, "k%d", kernel_counter++);
  char err[256] = "";
  LLVMValueRef fn = cg_emit_qgemm(mod, &t->g, isa, &t->ntasks, err, sizeof err);
  if (!fn)
    fail_msg("cg_emit_qgemm: %s", err);
  size_t len;
  snprintf(t->name, sizeof t->name, "%s", LLVMGetValueName2(fn, &len));
  assert_true(t->ntasks >= 1);
}

static void make_case(Case *t, const Config *c, CgIsa isa, LLVMModuleRef mod) {
  init_case(t, c);
  emit_case(t, isa, mod);
}


static void free_case(Case *t) {
  free(t->wq);
  free(t->bias);
  free(t->mult);
  free(t->x);
  free(t->y);
}

/* The expected output element (i, j) as bytes (1, or 4 for f32). */
static void reference(const Case *t, int64_t i, int64_t j, uint8_t out[4]) {
  const CgGemm *g = &t->g;
  uint32_t acc = (uint32_t)g->bias[j];
  for (int64_t l = 0; l < g->k; l++) {
    uint8_t b = t->x[i * g->x_stride + l];
    int32_t xv = g->x_dtype == IR_U8 ? (int32_t)b : (int32_t)(int8_t)b;
    acc += (uint32_t)(xv * g->wq[j * g->k + l]);
  }
  int32_t s = (int32_t)acc;
  if (g->y_dtype == IR_F32) {
    float y = (float)s * g->mult[j];
    if (g->relu)
      y = y > 0 ? y : 0.0f;
    memcpy(out, &y, 4);
  } else {
    int32_t q = ir_requantize(s, g->mult[j], g->y_zero_point, g->y_min, g->y_max);
    out[0] = (uint8_t)q;
  }
}

static void describe(const Case *t, CgIsa isa, char *buf, size_t len) {
  const Config *c = &t->c;
  snprintf(buf, len, "%s m=%lld k=%lld n=%lld x=%s y=%s relu=%d wmax=%d x in [%d,%d] mult=%d",
           cg_isa_info[isa].name, (long long)c->m, (long long)c->k, (long long)c->n,
           ir_dtype_name(c->xt), ir_dtype_name(c->yt), c->relu, c->wmax, c->xlo, c->xhi,
           c->mult_kind);
}

/* Run every task (last first: they are independent) and compare all of y,
 * the padding between rows and the guard row included, which must keep the
 * sentinel. */
static void run_and_check(Case *t, CgIsa isa) {
  const CgGemm *g = &t->g;
  memset(t->y, sentinel, t->ybytes);
  CgGemmArgs args = {.x = t->x, .y = t->y};
  for (int64_t task = t->ntasks - 1; task >= 0; task--)
    t->fn(&args, task);
  size_t ysz = g->y_dtype == IR_F32 ? 4 : 1;
  for (int64_t i = 0; i <= g->m; i++)
    for (int64_t j = 0; j < g->y_stride; j++) {
      uint8_t want[4];
      if (i < g->m && j < g->n)
        reference(t, i, j, want);
      else
        memset(want, sentinel, 4);
      const uint8_t *got = t->y + (size_t)(i * g->y_stride + j) * ysz;
      if (memcmp(got, want, ysz) != 0) {
        char what[200];
        describe(t, isa, what, sizeof what);
        if (ysz == 4) {
          float a, b;
          memcpy(&a, got, 4);
          memcpy(&b, want, 4);
          fail_msg("%s: y[%lld, %lld] = %a, expected %a", what, (long long)i, (long long)j,
                   (double)a, (double)b);
        }
        fail_msg("%s: y[%lld, %lld] = %d, expected %d", what, (long long)i, (long long)j,
                 got[0], want[0]);
      }
    }
}

/* Compile and run one case whose data the caller may have changed. */
static void check_case(Case *t, CgIsa isa) {
  Batch b;
  batch_begin(&b);
  emit_case(t, isa, b.mod);
  batch_end(&b);
  t->fn = (void (*)(void *, int64_t))lookup(t->name);
  run_and_check(t, isa);
}

/* Emit, compile and check a list of configurations for one variant, in
 * modules of up to 64 kernels. */
static void run_configs(const Config *cs, int count, CgIsa isa) {
  enum { BATCH = 64 };
  Case *cases = calloc(BATCH, sizeof *cases);
  for (int base = 0; base < count; base += BATCH) {
    int nb = count - base < BATCH ? count - base : BATCH;
    Batch b;
    batch_begin(&b);
    for (int i = 0; i < nb; i++)
      make_case(&cases[i], &cs[base + i], isa, b.mod);
    batch_end(&b);
    for (int i = 0; i < nb; i++) {
      cases[i].fn = (void (*)(void *, int64_t))lookup(cases[i].name);
      run_and_check(&cases[i], isa);
      free_case(&cases[i]);
    }
  }
  free(cases);
}

/* A configuration drawn from `seed`, covering the types, relu, the weight
 * bound (64 lets AVX2 use vpmaddubsw for any u8 input), and padding. */
static Config random_config(int64_t m, int64_t k, int64_t n, uint64_t seed) {
  Rng r = {seed * 0x9E3779B97F4A7C15ULL + 7};
  Config c = {.m = m, .k = k, .n = n, .seed = seed};
  c.xt = rnd(&r) % 2 ? IR_I8 : IR_U8;
  static const IrDType ys[3] = {IR_U8, IR_I8, IR_F32};
  c.yt = ys[rnd(&r) % 3];
  c.relu = rnd(&r) % 2;
  c.wmax = rnd(&r) % 2 ? 127 : 64;
  if (c.xt == IR_U8) {
    c.xlo = 0;
    c.xhi = rnd(&r) % 4 ? 255 : 127;
  } else {
    c.xlo = -127;
    c.xhi = 127;
  }
  c.mult_kind = rnd(&r) % 4 == 0;
  static const int64_t pads[4] = {0, 0, 4, 12};
  c.x_pad = pads[rnd(&r) % 4];
  c.y_pad = rnd(&r) % 3 == 0 ? 3 : 0;
  return c;
}

static bool skip_unless_runnable(CgIsa isa) {
  if (can_run(isa))
    return false;
  if (cg_isa_info[isa].arch != cg_host_arch())
    print_message("skipping %s: %s code does not run on this %s machine (tests/py/test_aarch64.py "
                  "runs it under qemu); its assembly is checked by asm %s\n",
                  cg_isa_info[isa].name, cg_arch_of(isa)->name,
                  cg_arch_info[cg_host_arch()].name, cg_isa_info[isa].name);
  else
    print_message("skipping %s: this CPU (native variant %s) cannot execute it; its assembly is "
                  "checked by asm %s\n",
                  cg_isa_info[isa].name, cg_isa_info[cg_isa_native()].name, cg_isa_info[isa].name);
  return true;
}

/* ---- the sweep ---- */

static void sweep(CgIsa isa) {
  if (skip_unless_runnable(isa)) {
    skip();
    return;
  }
  static const int64_t ks[] = {1, 3, 4, 5, 17, 31, 64, 65, 127, 200};
  static const int64_t ns[] = {1, 7, 15, 16, 17, 33, 64, 100};
  int nk = (int)(sizeof ks / sizeof *ks), nn = (int)(sizeof ns / sizeof *ns);
  int count = 17 * nk * nn;
  Config *cs = malloc(sizeof *cs * (size_t)count);
  /* Q8_TEST_QUICK=1 (scripts/sanitize.sh, where code runs 2-5x slower)
   * keeps the m that reach every tile-height case (MR <= 8): 1-3, 7-9, 17. */
  const char *quick = getenv("Q8_TEST_QUICK");
  bool some_m = quick && *quick && strcmp(quick, "0") != 0;
  int i = 0, kept = 0;
  for (int64_t m = 1; m <= 17; m++)
    for (int a = 0; a < nk; a++)
      for (int b = 0; b < nn; b++, i++)
        if (!some_m || m <= 3 || (m >= 7 && m <= 9) || m == 17)
          cs[kept++] = random_config(m, ks[a], ns[b], (uint64_t)i);
  count = kept;
  run_configs(cs, count, isa);
  print_message("%s: %d shapes checked\n", cg_isa_info[isa].name, count);
  free(cs);
}

/* One per row of isa.def: *state is the row's CgIsa. */
static void test_sweep(void **state) { sweep(*(const CgIsa *)*state); }

/* Layers of real size: many tiles, several tasks, long K loops. */
static void test_large(void **state) {
  int ran = 0;
  for (int isa = 0; isa < CG_ISA_COUNT; isa++) {
    if (!can_run((CgIsa)isa) || cg_isa_info[isa].arch != cg_host_arch())
      continue;
    Config cs[4] = {
        random_config(64, 784, 256, 1001),
        random_config(1, 4096, 1024, 1002),
        random_config(33, 1000, 70, 1003),
        random_config(128, 768, 200, 1004),
    };
    cs[0].xt = IR_U8, cs[0].xlo = 0, cs[0].xhi = 255, cs[0].yt = IR_U8;
    cs[1].xt = IR_I8, cs[1].xlo = -127, cs[1].xhi = 127, cs[1].yt = IR_F32;
    run_configs(cs, 4, (CgIsa)isa);
    ran++;
  }
  assert_true(ran > 0);
}

/* The layout several variants share (CgGemm.pack_nr = 16, the largest x86
 * nr): every runnable x86 variant reads it exactly, over shapes that reach
 * blocks narrower than a packed block (AVX2's widened pairs, SSE2's single
 * vector, N edges) and several tasks. */
static void test_shared_layout(void **state) {
  int ran = 0;
  static const int64_t ks[] = {1, 5, 64, 127, 300};
  static const int64_t ns[] = {1, 7, 9, 17, 40, 100, 250};
  enum { NK = sizeof ks / sizeof *ks, NN = sizeof ns / sizeof *ns };
  for (int isa = 0; isa < CG_ISA_COUNT; isa++) {
    if (!can_run((CgIsa)isa) || cg_isa_info[isa].arch != CG_ARCH_X86_64)
      continue;
    Config cs[3 * NK * NN + 2];
    int count = 0;
    for (int64_t m = 1; m <= 9; m += 4)
      for (int a = 0; a < NK; a++)
        for (int b = 0; b < NN; b++) {
          cs[count] = random_config(m, ks[a], ns[b], (uint64_t)(4000 + count));
          cs[count++].pack_nr = 16;
        }
    /* The widened pairs (AVX2's weights could saturate) and a layer of
     * real size. */
    cs[count] = (Config){.m = 5, .k = 37, .n = 50, .xt = IR_U8, .yt = IR_F32, .wmax = 127,
                         .xlo = 0, .xhi = 255, .seed = 4901, .pack_nr = 16};
    count++;
    cs[count] = random_config(64, 784, 256, 4902);
    cs[count++].pack_nr = 16;
    run_configs(cs, count, (CgIsa)isa);
    ran++;
  }
  assert_true(ran > 0);
}

/* One copy: the variants of one layer with pack_nr set put their weights in
 * one global, NAME.w16, that all of their kernels read. */
static void test_shared_weights_once(void **state) {
  Config c = random_config(3, 70, 40, 4950);
  c.pack_nr = 16;
  Case t;
  init_case(&t, &c);
  snprintf(t.prefix, sizeof t.prefix, "shared");
  LLVMModuleRef mod = LLVMModuleCreateWithName("shared");
  int variants = 0;
  for (int isa = 0; isa < CG_ISA_COUNT; isa++) {
    if (cg_isa_info[isa].arch != CG_ARCH_X86_64)
      continue;
    char err[256] = "";
    int64_t ntasks;
    if (!cg_emit_qgemm(mod, &t.g, (CgIsa)isa, &ntasks, err, sizeof err))
      fail_msg("cg_emit_qgemm: %s", err);
    variants++;
  }
  int64_t packed = 0;
  int copies = 0;
  for (LLVMValueRef g = LLVMGetFirstGlobal(mod); g; g = LLVMGetNextGlobal(g)) {
    size_t len;
    const char *name = LLVMGetValueName2(g, &len);
    if (strncmp(name, "shared.w", 8) == 0) {
      copies++;
      size_t bytes;
      LLVMGetAsString(LLVMGetInitializer(g), &bytes);
      packed += (int64_t)bytes;
    }
  }
  assert_true(variants >= 3);
  assert_int_equal(copies, 1);
  assert_int_equal(packed, (int64_t)cg_packed_size_nr(16, 40, 70));
  LLVMDisposeModule(mod);
  free_case(&t);
}

/* Tasks cover the output exactly once: run each alone and check that the
 * elements it writes are disjoint from the others' and that together they
 * are all of y. */
static void check_partition(int64_t m, int64_t k, int64_t n, CgIsa isa) {
  Config c = random_config(m, k, n, 2001);
  c.yt = IR_F32; /* a NaN-free f32 never equals the 0xA5A5A5A5 sentinel by chance here */
  c.y_pad = 0;
  Batch b;
  batch_begin(&b);
  Case t;
  make_case(&t, &c, isa, b.mod);
  batch_end(&b);
  t.fn = (void (*)(void *, int64_t))lookup(t.name);
  assert_true(t.ntasks >= 2);
  int64_t cells = c.m * c.n;
  int *owner = calloc((size_t)cells, sizeof *owner);
  for (int64_t task = 0; task < t.ntasks; task++) {
    memset(t.y, sentinel, t.ybytes);
    CgGemmArgs args = {.x = t.x, .y = t.y};
    t.fn(&args, task);
    int64_t written = 0;
    for (int64_t e = 0; e < cells; e++) {
      uint32_t v;
      memcpy(&v, t.y + 4 * e, 4);
      if (v != 0xA5A5A5A5u) {
        assert_int_equal(owner[e], 0);
        owner[e] = (int)task + 1;
        written++;
      }
    }
    assert_true(written > 0);
  }
  for (int64_t e = 0; e < cells; e++)
    assert_int_not_equal(owner[e], 0);
  free(owner);
  free_case(&t);
}

static void test_tasks_partition(void **state) {
  CgIsa isa = cg_isa_native();
  check_partition(64, 784, 256, isa);  /* split along N */
  check_partition(1200, 256, 20, isa); /* one channel block: split along M */
  Batch b;
  Case t;
  /* A tiny layer is one task. */
  batch_begin(&b);
  make_case(&t, &(Config){.m = 2, .k = 16, .n = 16, .xt = IR_U8, .yt = IR_U8, .wmax = 127,
                           .xlo = 0, .xhi = 255, .seed = 5},
            isa, b.mod);
  assert_int_equal(t.ntasks, 1);
  LLVMDisposeModule(b.mod);
  LLVMOrcDisposeThreadSafeContext(b.tsc);
  free_case(&t);
}

/* pmaddubsw would saturate: x = 255 and weights 127, 127 give 64770 > 32767
 * in int16. The AVX2 kernel must notice and still be exact. */
static void test_avx2_saturating_pairs(void **state) {
  Config c = {.m = 5, .k = 37, .n = 19, .xt = IR_U8, .yt = IR_F32, .wmax = 127,
              .xlo = 0, .xhi = 255, .seed = 3001};
  Case t;
  init_case(&t, &c);
  memset(t.wq, 127, (size_t)(c.n * c.k));
  for (int64_t i = 0; i < c.m; i++)
    memset(t.x + i * t.g.x_stride, 255, (size_t)c.k);
  for (int64_t j = 0; j < c.n; j++)
    t.mult[j] = 1.0f / 64;
  assert_true(cg_pairs_can_saturate(t.wq, c.n, c.k, 0, 255));
  /* Every variant whose form is vpmaddubsw (isa.def: AVX2). */
  int rows = 0, ran = 0;
  for (int isa = 0; isa < CG_ISA_COUNT; isa++) {
    if (cg_isa_info[isa].form != CG_FORM_MADDUBS)
      continue;
    rows++;
    if (skip_unless_runnable((CgIsa)isa))
      continue;
    check_case(&t, (CgIsa)isa);
    /* And the value itself: 37 * 255 * 127 + bias, times 1/64. */
    float y0;
    memcpy(&y0, t.y, 4);
    assert_true(y0 == (float)(37 * 255 * 127 + t.bias[0]) * (1.0f / 64));
    ran++;
  }
  free_case(&t);
  assert_true(rows > 0);
  if (!ran)
    skip();
}

/* Accumulators wrap (K * 255 * 127 passes 2^31 from K = 66,311; the bias
 * can be anywhere in int32), and so does the i8 bias correction. */
static void test_wrapping(void **state) {
  int ran = 0;
  for (int isa = 0; isa < CG_ISA_COUNT; isa++) {
    if (!can_run((CgIsa)isa) || cg_isa_info[isa].arch != cg_host_arch())
      continue;
    ran++;
    for (int xi8 = 0; xi8 < 2; xi8++) {
      Config c = {.m = 3, .k = 70001, .n = 21, .xt = xi8 ? IR_I8 : IR_U8, .yt = IR_F32,
                  .wmax = 127, .xlo = xi8 ? -127 : 0, .xhi = xi8 ? 127 : 255, .seed = 3100};
      Case t;
      init_case(&t, &c);
      for (int64_t j = 0; j < c.n; j++) {
        /* channels 0..6 all 127, 7..13 all -127, the rest random */
        if (j < 14)
          memset(t.wq + j * c.k, j < 7 ? 127 : -127, (size_t)c.k);
        t.bias[j] = j % 3 == 0 ? INT32_MAX : j % 3 == 1 ? INT32_MIN : t.bias[j];
        t.mult[j] = 1.0f;
      }
      for (int64_t l = 0; l < c.k; l++) /* row 0 at the top of the range */
        t.x[l] = (uint8_t)c.xhi;
      check_case(&t, (CgIsa)isa);
      free_case(&t);
    }
  }
  assert_true(ran > 0);
}

/* Multipliers that make NaN and infinities: NaN requantizes to the zero
 * point, infinities clamp, and relu maps NaN and -0.0 to +0.0. */
static void test_special_multipliers(void **state) {
  int ran = 0;
  for (int isa = 0; isa < CG_ISA_COUNT; isa++) {
    if (!can_run((CgIsa)isa) || cg_isa_info[isa].arch != cg_host_arch())
      continue;
    ran++;
    static const IrDType ys[3] = {IR_U8, IR_I8, IR_F32};
    for (int y = 0; y < 3; y++)
      for (int relu = 0; relu < 2; relu++) {
        Config c = {.m = 3, .k = 9, .n = 20, .xt = IR_U8, .yt = ys[y], .relu = relu,
                    .wmax = 127, .xlo = 0, .xhi = 255, .seed = 3200 + (uint64_t)y};
        Case t;
        init_case(&t, &c);
        const float special[6] = {INFINITY, -INFINITY, NAN, 0.0f, -0.0f, 1e30f};
        for (int64_t j = 0; j < c.n; j++)
          t.mult[j] = j < 12 ? special[j % 6] : t.mult[j];
        for (int64_t j = 0; j < 6; j++) /* acc = 0 for half: inf * 0 = NaN */
          memset(t.wq + j * c.k, 0, (size_t)c.k), t.bias[j] = 0;
        check_case(&t, (CgIsa)isa);
        free_case(&t);
      }
  }
  assert_true(ran > 0);
}

/* ---- the instructions each variant uses ---- */

/* A target machine for `isa`'s architecture (isa.c's CgArch: its triple and
 * baseline CPU; each function carries its variant's features). */
static LLVMTargetMachineRef arch_tm(CgIsa isa) {
  const CgArch *a = cg_arch_of(isa);
  LLVMTargetRef target;
  char *msg = NULL;
  if (LLVMGetTargetFromTriple(a->triple, &target, &msg))
    fail_msg("no target for %s: %s", a->triple, msg);
  return LLVMCreateTargetMachine(target, a->triple, a->cpu, "", LLVMCodeGenLevelDefault,
                                 LLVMRelocPIC, LLVMCodeModelDefault);
}

/* The assembly of one kernel for `isa`, malloc'd. */
static char *kernel_asm(CgIsa isa, const Config *c) {
  LLVMContextRef ctx = LLVMContextCreate();
  LLVMModuleRef mod = LLVMModuleCreateWithNameInContext("asm", ctx);
  LLVMTargetMachineRef t = arch_tm(isa);
  Case k;
  make_case(&k, c, isa, mod);
  optimize(mod, t);
  LLVMMemoryBufferRef buf = NULL;
  char *msg = NULL;
  if (LLVMTargetMachineEmitToMemoryBuffer(t, mod, LLVMAssemblyFile, &msg, &buf))
    fail_msg("assembly for %s: %s", cg_isa_info[isa].name, msg);
  size_t len = LLVMGetBufferSize(buf);
  char *s = malloc(len + 1);
  memcpy(s, LLVMGetBufferStart(buf), len);
  s[len] = 0;
  LLVMDisposeMemoryBuffer(buf);
  LLVMDisposeModule(mod);
  LLVMDisposeTargetMachine(t);
  LLVMContextDispose(ctx);
  free_case(&k);
  return s;
}

/* Does a line of `s` contain both a and b (b may be NULL)? */
static bool line_has(const char *s, const char *a, const char *b) {
  for (const char *p = s; (p = strstr(p, a)); p++) {
    const char *eol = strchr(p, '\n');
    const char *bol = p;
    while (bol > s && bol[-1] != '\n')
      bol--;
    if (!b)
      return true;
    const char *q = strstr(bol, b);
    if (q && (!eol || q < eol))
      return true;
  }
  return false;
}

static const Config asm_config = {.m = 12, .k = 100, .n = 40, .xt = IR_U8, .yt = IR_U8,
                                  .wmax = 127, .xlo = 0, .xhi = 255, .seed = 4001};

/* What the assembly of a variant's kernel for asm_config (changed as the
 * check says) must and must not hold. */
typedef struct {
  bool x_i8;              /* an i8 input (x in [-127, 127]) */
  int wmax;               /* weights in [-wmax, wmax]; 0: asm_config's 127 */
  const char *has, *with; /* a line with `has` (and `with`, when not NULL) */
  const char *lacks[3];   /* no line with any of these */
} AsmCheck;

enum { MAX_ASM_CHECKS = 2 };

/* Per row of isa.def (a row without one fails test_asm). */
static const AsmCheck asm_checks[CG_ISA_COUNT][MAX_ASM_CHECKS] = {
    [CG_ISA_AVX512VNNI] = {{.has = "vpdpbusd", .with = "%zmm"}},
    /* LLVM prints the VEX form with a tab: "{vex}\tvpdpbusd". */
    [CG_ISA_AVXVNNI] = {{.x_i8 = true, .has = "{vex}\tvpdpbusd", .with = "%ymm",
                         .lacks = {"%zmm"}}},
    /* |w| <= 64: 255 * 64 * 2 = 32640 fits int16, vpmaddubsw is safe; 127
     * and x up to 255 can saturate: widened pairs and vpmaddwd only. */
    [CG_ISA_AVX2] = {{.wmax = 64, .has = "vpmaddubsw", .with = "%ymm", .lacks = {"vpdpbusd"}},
                     {.has = "vpmaddwd", .with = "%ymm", .lacks = {"vpmaddubsw"}}},
    /* SSE2 has no roundps: no libm call. */
    [CG_ISA_GENERIC] = {{.lacks = {"%ymm", "vpdpbusd", "roundevenf"}}},
    /* No fast-math: nothing fused into a multiply-add. */
    [CG_ISA_AARCH64_I8MM] = {{.has = "usmmla", .lacks = {"fmla", "fmadd"}},
                             {.x_i8 = true, .has = "smmla", .lacks = {"usmmla", "fmla"}}},
    [CG_ISA_AARCH64_DOTPROD] = {{.has = "sdot", .lacks = {"smmla", "fmla", "fmadd"}}},
    [CG_ISA_AARCH64] = {{.has = "smull", .lacks = {"sdot", "fmla", "fmadd"}},
                        {.has = "sadalp"}},
};

/* One per row of isa.def: *state is the row's CgIsa. Compiled for its
 * architecture whatever this machine runs. */
static void test_asm(void **state) {
  CgIsa isa = *(const CgIsa *)*state;
  int checked = 0;
  for (int i = 0; i < MAX_ASM_CHECKS; i++) {
    const AsmCheck *k = &asm_checks[isa][i];
    if (!k->has && !k->lacks[0])
      continue;
    Config c = asm_config;
    if (k->x_i8)
      c.xt = IR_I8, c.xlo = -127, c.xhi = 127;
    if (k->wmax)
      c.wmax = k->wmax;
    char *s = kernel_asm(isa, &c);
    if (k->has && !line_has(s, k->has, k->with))
      fail_msg("%s: no line with %s%s%s", cg_isa_info[isa].name, k->has, k->with ? " and " : "",
               k->with ? k->with : "");
    for (int j = 0; j < 3 && k->lacks[j]; j++)
      if (line_has(s, k->lacks[j], NULL))
        fail_msg("%s: a line with %s", cg_isa_info[isa].name, k->lacks[j]);
    free(s);
    checked++;
  }
  if (!checked)
    fail_msg("%s: no instructions to check: add its row to asm_checks", cg_isa_info[isa].name);
}

/* ---- quantize_rows ---- */

static void check_quantize(CgIsa isa, int64_t m, int64_t k, int64_t x_stride, float scale,
                           int32_t zp, IrDType dtype, const float *x) {
  Batch b;
  batch_begin(&b);
  char name[32];
  snprintf(name, sizeof name, "q%d", kernel_counter++);
  assert_non_null(cg_emit_quantize_rows(b.mod, name, isa, m, k, x_stride, scale, zp, dtype));
  batch_end(&b);
  void (*fn)(const float *, void *) = (void (*)(const float *, void *))lookup(name);
  size_t bytes = (size_t)((m + 1) * x_stride);
  uint8_t *q = malloc(bytes);
  memset(q, sentinel, bytes);
  fn(x, q);
  int32_t qmin, qmax;
  ir_qbounds(dtype, &qmin, &qmax);
  for (int64_t i = 0; i <= m; i++)
    for (int64_t c = 0; c < x_stride; c++) {
      uint8_t want = sentinel;
      if (i < m && c < k)
        want = (uint8_t)ir_quantize_value(x[i * k + c], scale, zp, qmin, qmax);
      uint8_t got = q[i * x_stride + c];
      if (got != want)
        fail_msg("%s quantize m=%lld k=%lld stride=%lld scale=%a zp=%d %s: q[%lld, %lld] "
                 "(x = %a) = %d, expected %d",
                 cg_isa_info[isa].name, (long long)m, (long long)k, (long long)x_stride,
                 (double)scale, zp, ir_dtype_name(dtype), (long long)i, (long long)c,
                 (double)(i < m && c < k ? x[i * k + c] : 0), got, want);
    }
  free(q);
}

static void test_quantize_rows(void **state) {
  static const struct {
    int64_t m, k;
  } shapes[] = {{1, 1}, {3, 5}, {2, 16}, {4, 17}, {5, 33}, {7, 100}, {2, 7}};
  static const float specials[] = {NAN, INFINITY, -INFINITY, 1.25f, -1.25f, 1.75f, 0.25f,
                                   -0.0f, 1e30f, -1e30f, 63.75f, -63.75f, 0.75f, 2.25f};
  int ran = 0;
  for (int isa = 0; isa < CG_ISA_COUNT; isa++) {
    if (!can_run((CgIsa)isa) || cg_isa_info[isa].arch != cg_host_arch())
      continue;
    ran++;
    for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++)
      for (int variant = 0; variant < 4; variant++) {
        int64_t m = shapes[s].m, k = shapes[s].k;
        Rng r = {(uint64_t)(s * 10 + variant + 1) * 0x9E3779B97F4A7C15ULL};
        /* scale 0.5: x / scale is exact, so x = 1.25 gives the tie 2.5 -> 2. */
        float scale = variant % 2 ? 0.5f : 0.0371f;
        IrDType dt = variant < 2 ? IR_U8 : IR_I8;
        int32_t zp = dt == IR_U8 ? (variant ? 128 : 3) : 0;
        float *x = malloc(sizeof(float) * (size_t)(m * k));
        for (int64_t i = 0; i < m * k; i++)
          x[i] = (rnd_unit(&r) * 2 - 1) * scale * 200;
        for (int64_t i = 0; i < m * k; i += 3)
          x[i] = specials[(i / 3 + variant) % (sizeof specials / sizeof *specials)];
        /* Stride larger than k, and a multiple of 4. */
        int64_t stride = (k + 3) / 4 * 4 + 8;
        check_quantize((CgIsa)isa, m, k, stride, scale, zp, dt, x);
        free(x);
      }
  }
  assert_true(ran > 0);
  /* The ties by hand: 2.5 -> 2, 3.5 -> 4, -2.5 -> -2, -0.5 -> 0. */
  float t[4] = {1.25f, 1.75f, -1.25f, -0.25f};
  assert_int_equal(ir_quantize_value(t[0], 0.5f, 0, -127, 127), 2);
  check_quantize(cg_isa_native(), 1, 4, 4, 0.5f, 0, IR_I8, t);
}

int main(void) {
  static CgIsa rows[CG_ISA_COUNT];
  static char names[2][CG_ISA_COUNT][64];
  struct CMUnitTest tests[2 * CG_ISA_COUNT + 8] = {
      cmocka_unit_test(test_quantize_rows),
      cmocka_unit_test(test_avx2_saturating_pairs),
      cmocka_unit_test(test_wrapping),
      cmocka_unit_test(test_special_multipliers),
      cmocka_unit_test(test_tasks_partition),
      cmocka_unit_test(test_large),
      cmocka_unit_test(test_shared_layout),
      cmocka_unit_test(test_shared_weights_once),
  };
  /* Two tests per row of isa.def: its assembly, its sweep. */
  for (int i = 0; i < CG_ISA_COUNT; i++) {
    rows[i] = (CgIsa)i;
    snprintf(names[0][i], sizeof names[0][i], "test_asm %s", cg_isa_info[i].name);
    snprintf(names[1][i], sizeof names[1][i], "test_sweep %s", cg_isa_info[i].name);
    tests[8 + i] = (struct CMUnitTest)cmocka_unit_test_prestate(test_asm, &rows[i]);
    tests[8 + i].name = names[0][i];
    tests[8 + CG_ISA_COUNT + i] = (struct CMUnitTest)cmocka_unit_test_prestate(test_sweep, &rows[i]);
    tests[8 + CG_ISA_COUNT + i].name = names[1][i];
  }
  return cmocka_run_group_tests(tests, setup, teardown);
}
