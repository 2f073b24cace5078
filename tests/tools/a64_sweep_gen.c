/* a64_sweep_gen.c: the host half of the AArch64 kernel sweep (the other is
 * a64_sweep_run.c, a64_sweep.h says how they fit; a64_sweep.cmake runs the
 * whole test).
 *
 *   a64_sweep_gen OBJECT.o CASES.c
 *
 * For every aarch64 variant of codegen/isa.def it emits the int8 GEMM kernel
 * of every case of the sweep tests/unit/test_kernels.c runs on x86 (m 1..17
 * times K and N values with primes and every tail of the tiles and of the
 * K chunks, below; u8 and i8 inputs, u8, i8 and f32 outputs, relu, weight
 * bounds 64 and 127, padded rows, power-of-two multipliers, drawn per case as
 * test_kernels.c draws them) and of its other cases (layers of real size,
 * wrapping sums, NaN and infinite multipliers), all into one LLVM module,
 * optimised and written as one aarch64 object; and CASES.c, the table of the
 * cases (a64_sweep.h's SwCase) naming each one's kernel. Exit status 0, or 1
 * with a message when a kernel cannot be emitted or the object written. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <llvm-c/Analysis.h>
#include <llvm-c/Transforms/PassBuilder.h>

#include "a64_sweep.h"
#include "codegen/codegen.h"

/* ---- the calls into codegen, all here (adapt them when its API changes) ---- */

/* The variants swept: the aarch64 rows of the table, best first. */
static int swept_variants(CgIsa out[CG_ISA_COUNT]) {
  int n = 0;
  for (int i = 0; i < CG_ISA_COUNT; i++)
    if (cg_isa_info[i].arch == CG_ARCH_AARCH64)
      out[n++] = (CgIsa)i;
  return n;
}

static const char *variant_name(CgIsa isa) { return cg_isa_info[isa].name; }

/* Emit case `c` (data `d`) for `isa` into mod as the task function `name`. */
static bool emit_kernel(LLVMModuleRef mod, const char *name, CgIsa isa, const SwConfig *c,
                        const SwData *d, int64_t *ntasks, char *err, size_t errlen) {
  CgGemm g = {
      .name = name,
      .m = c->m,
      .k = c->k,
      .n = c->n,
      .x_dtype = c->x_signed ? IR_I8 : IR_U8,
      .x_stride = d->x_stride,
      .wq = d->wq,
      .bias = d->bias,
      .mult = d->mult,
      .y_dtype = c->y_dtype == Q8_DTYPE_F32  ? IR_F32
                 : c->y_dtype == Q8_DTYPE_I8 ? IR_I8
                                             : IR_U8,
      .y_stride = d->y_stride,
      .y_zero_point = d->y_zero_point,
      .y_min = d->y_min,
      .y_max = d->y_max,
      .relu = c->y_dtype == Q8_DTYPE_F32 && c->relu,
      .x_min = c->xlo,
      .x_max = c->xhi,
  };
  if (c->y_dtype != Q8_DTYPE_F32) { /* the header's bounds are the compiler's */
    int32_t qmin, qmax, smin, smax;
    ir_qbounds(g.y_dtype, &qmin, &qmax);
    sw_qbounds(c->y_dtype, &smin, &smax);
    if (qmin != smin || qmax != smax) {
      snprintf(err, errlen, "a64_sweep.h's bounds of %s are [%d, %d], ir_qbounds' [%d, %d]",
               ir_dtype_name(g.y_dtype), smin, smax, qmin, qmax);
      return false;
    }
  }
  *ntasks = 1;
  /* The kernel is named by what it is (cg_gemm_name, after the layer name
   * given); the runner calls it by the case's own name. */
  LLVMValueRef fn = cg_emit_qgemm_aarch64(mod, &g, isa, ntasks, err, errlen);
  if (!fn)
    return false;
  LLVMSetValueName2(fn, name, strlen(name));
  LLVMSetLinkage(fn, LLVMExternalLinkage);
  return true;
}

/* ---- the sweep: test_kernels.c's ---- */

/* A configuration drawn from `seed` as test_kernels.c's random_config: the
 * types, relu, the weight bound, the multipliers and the padding. */
static SwConfig random_config(const char *isa, int64_t m, int64_t k, int64_t n, uint64_t seed) {
  SwRng r = {seed * 0x9E3779B97F4A7C15ULL + 7};
  SwConfig c = {.isa = isa, .m = m, .k = k, .n = n, .seed = seed};
  c.x_signed = sw_rnd(&r) % 2;
  static const int ys[3] = {Q8_DTYPE_U8, Q8_DTYPE_I8, Q8_DTYPE_F32};
  c.y_dtype = ys[sw_rnd(&r) % 3];
  c.relu = sw_rnd(&r) % 2;
  c.wmax = sw_rnd(&r) % 2 ? 127 : 64;
  if (!c.x_signed) {
    c.xlo = 0;
    c.xhi = sw_rnd(&r) % 4 ? 255 : 127;
  } else {
    c.xlo = -127;
    c.xhi = 127;
  }
  c.mult_kind = sw_rnd(&r) % 4 == 0;
  static const int64_t pads[4] = {0, 0, 4, 12};
  c.x_pad = pads[sw_rnd(&r) % 4];
  c.y_pad = sw_rnd(&r) % 3 == 0 ? 3 : 0;
  return c;
}

/* K and N. test_kernels.c sweeps K {1, 3, 4, 5, 17, 31, 64, 65, 127, 200} x
 * N {1, 7, 15, 16, 17, 33, 64, 100} on x86; all of it for the three aarch64
 * variants (4,080 kernels) takes about 215 s of CPU to optimise and compile
 * here (some 50 ms a kernel), so by default the sweep keeps the values that
 * make different aarch64 code (aarch64/qgemm.c), every m 1..17 with each:
 *
 *   K: round_up(K, 4) = 16 * whole chunks + a tail of 0, 4, 8 or 12 bytes;
 *      the whole chunks run in a loop unrolled 1 to 4 times (0 to 3 left
 *      over; 0, 1 or many trips), and the bytes between K and round_up(K, 4)
 *      meet zero weights. Kept: 1 (0 chunks, tail 4, 3 bytes past K), 5 (0,
 *      8), 17 (1, 4), 31 (2, 0), 59 (3, 12), 65 (4, 4), 200 (12, 8, none
 *      past K). 3 and 4 make 1's code; 64 and 127 (whole chunks, no tail)
 *      31's, with the long loop of 65 and 200. 59 is new: no K of the x86
 *      list has the 12-byte tail, or 3 chunks left over.
 *   N: channel quads, split evenly into blocks of up to 4 quads (2 for plain
 *      NEON), whose vector count sets the rows of a tile; a last block that
 *      differs, or whose last quad is partial, has a tile of its own. Kept:
 *      1 (one partial quad), 7 (2 quads, 3 valid), 15 (4 quads, 3 valid),
 *      17 (blocks of 3 and 2 quads, 1 valid), 100 (blocks of 4 full quads
 *      and a last of 1). 16 and 64 make 100's first tile; 33 makes 17's.
 *
 * Q8_TEST_FULL=1 sweeps test_kernels.c's lists (and 59) instead. */
static const int64_t ks_full[] = {1, 3, 4, 5, 17, 31, 59, 64, 65, 127, 200};
static const int64_t ns_full[] = {1, 7, 15, 16, 17, 33, 64, 100};
static const int64_t ks_kept[] = {1, 5, 17, 31, 59, 65, 200};
static const int64_t ns_kept[] = {1, 7, 15, 17, 100};
#define COUNT(a) ((int)(sizeof a / sizeof *a))
enum { MAX_SWEEP_PER_VARIANT = 17 * COUNT(ks_full) * COUNT(ns_full) };

static bool env_flag(const char *name) {
  const char *v = getenv(name);
  return v && *v && strcmp(v, "0") != 0;
}

/* The cases of one variant, appended to cs; returns the new count. The seed
 * of a case is its index in test_kernels.c's sweep order over the lists.
 * Q8_TEST_QUICK=1 keeps the m of test_kernels.c's quick mode (1-3, 7-9, 17). */
static int sweep(const char *isa, SwConfig *cs, int count) {
  bool full = env_flag("Q8_TEST_FULL"), some_m = env_flag("Q8_TEST_QUICK");
  const int64_t *ks = full ? ks_full : ks_kept, *ns = full ? ns_full : ns_kept;
  int nk = full ? COUNT(ks_full) : COUNT(ks_kept), nn = full ? COUNT(ns_full) : COUNT(ns_kept);
  int i = 0;
  for (int64_t m = 1; m <= 17; m++)
    for (int a = 0; a < nk; a++)
      for (int b = 0; b < nn; b++, i++)
        if (!some_m || m <= 3 || (m >= 7 && m <= 9) || m == 17)
          cs[count++] = random_config(isa, m, ks[a], ns[b], (uint64_t)i);
  return count;
}

/* test_kernels.c's other cases: layers of real size (many tiles and tasks,
 * long K loops), sums that wrap int32, and multipliers that make NaN and
 * infinities. Seeds as there. */
static int extras(const char *isa, SwConfig *cs, int count) {
  SwConfig large[4] = {
      random_config(isa, 64, 784, 256, 1001),
      random_config(isa, 1, 4096, 1024, 1002),
      random_config(isa, 33, 1000, 70, 1003),
      random_config(isa, 128, 768, 200, 1004),
  };
  large[0].x_signed = 0, large[0].xlo = 0, large[0].xhi = 255, large[0].y_dtype = Q8_DTYPE_U8;
  large[1].x_signed = 1, large[1].xlo = -127, large[1].xhi = 127;
  large[1].y_dtype = Q8_DTYPE_F32;
  for (int i = 0; i < 4; i++)
    cs[count++] = large[i];
  for (int xi8 = 0; xi8 < 2; xi8++)
    cs[count++] = (SwConfig){.isa = isa, .m = 3, .k = 70001, .n = 21, .x_signed = xi8,
                             .y_dtype = Q8_DTYPE_F32, .wmax = 127, .xlo = xi8 ? -127 : 0,
                             .xhi = xi8 ? 127 : 255, .seed = 3100, .kind = SW_WRAP};
  static const int ys[3] = {Q8_DTYPE_U8, Q8_DTYPE_I8, Q8_DTYPE_F32};
  for (int y = 0; y < 3; y++)
    for (int relu = 0; relu < 2; relu++)
      cs[count++] = (SwConfig){.isa = isa, .m = 3, .k = 9, .n = 20, .y_dtype = ys[y],
                               .relu = relu, .wmax = 127, .xlo = 0, .xhi = 255,
                               .seed = 3200 + (uint64_t)y, .kind = SW_SPECIAL_MULT};
  return count;
}
enum { EXTRAS = 4 + 2 + 6 };

/* ---- the object and the table ---- */

static bool fail_llvm(const char *what, char *msg) {
  fprintf(stderr, "a64_sweep_gen: %s: %s\n", what, msg ? msg : "");
  LLVMDisposeMessage(msg);
  return false;
}

/* Verify, optimise (default<O2> and the default code generation level, as
 * test_kernels.c does) and write mod as an aarch64 object; the CPU seconds
 * of the two steps in *opt_s, *cg_s. */
static bool write_object(LLVMModuleRef mod, const char *path, double *opt_s, double *cg_s) {
  const char *triple = "aarch64-unknown-linux-gnu";
  LLVMTargetRef target;
  char *msg = NULL;
  if (LLVMGetTargetFromTriple(triple, &target, &msg))
    return fail_llvm(triple, msg);
  LLVMTargetMachineRef tm =
      LLVMCreateTargetMachine(target, triple, "generic", "", LLVMCodeGenLevelDefault,
                              LLVMRelocPIC, LLVMCodeModelDefault);
  LLVMSetTarget(mod, triple);
  LLVMTargetDataRef dl = LLVMCreateTargetDataLayout(tm);
  LLVMSetModuleDataLayout(mod, dl);
  LLVMDisposeTargetData(dl);
  bool ok = false;
  if (LLVMVerifyModule(mod, LLVMReturnStatusAction, &msg)) {
    fail_llvm("invalid module", msg);
    goto done;
  }
  LLVMDisposeMessage(msg);
  msg = NULL;
  clock_t t0 = clock();
  LLVMPassBuilderOptionsRef opts = LLVMCreatePassBuilderOptions();
  LLVMErrorRef e = LLVMRunPasses(mod, "default<O2>", tm, opts);
  *opt_s = (double)(clock() - t0) / CLOCKS_PER_SEC;
  t0 = clock();
  LLVMDisposePassBuilderOptions(opts);
  if (e) {
    fail_llvm("optimisation", LLVMGetErrorMessage(e));
    goto done;
  }
  if (LLVMTargetMachineEmitToFile(tm, mod, (char *)path, LLVMObjectFile, &msg)) {
    fail_llvm(path, msg);
    goto done;
  }
  *cg_s = (double)(clock() - t0) / CLOCKS_PER_SEC;
  ok = true;
done:
  LLVMDisposeTargetMachine(tm);
  return ok;
}

static const char *dtype_c(int t) {
  return t == Q8_DTYPE_F32 ? "Q8_DTYPE_F32" : t == Q8_DTYPE_I8 ? "Q8_DTYPE_I8" : "Q8_DTYPE_U8";
}

static bool write_table(const char *path, const SwCase *cases, int n) {
  FILE *f = fopen(path, "w");
  if (!f) {
    perror(path);
    return false;
  }
  fprintf(f, "/* The cases of the AArch64 kernel sweep, written by a64_sweep_gen. */\n"
             "#include \"a64_sweep.h\"\n\n");
  for (int i = 0; i < n; i++)
    fprintf(f, "void a64_sweep_%d(void *, int64_t);\n", i);
  fprintf(f, "\nconst SwCase sw_cases[] = {\n");
  for (int i = 0; i < n; i++) {
    const SwConfig *c = &cases[i].c;
    fprintf(f,
            "    {{\"%s\", %" PRId64 ", %" PRId64 ", %" PRId64 ", %d, %s, %d, %d, %d, %d, %d, "
            "%" PRId64 ", %" PRId64 ", %" PRIu64 "u, %d}, a64_sweep_%d, %" PRId64 ", 0x%016" PRIx64
            "u},\n",
            c->isa, c->m, c->k, c->n, c->x_signed, dtype_c(c->y_dtype), c->relu, c->wmax, c->xlo,
            c->xhi, c->mult_kind, c->x_pad, c->y_pad, c->seed, c->kind, i, cases[i].ntasks,
            cases[i].data_hash);
  }
  fprintf(f, "};\nconst int sw_ncases = %d;\n", n);
  if (fclose(f) != 0) {
    perror(path);
    return false;
  }
  return true;
}

int main(int argc, char **argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: a64_sweep_gen OBJECT.o CASES.c\n");
    return 2;
  }
  clock_t start = clock();
  cg_init_llvm();
  CgIsa isas[CG_ISA_COUNT];
  int nisas = swept_variants(isas);
  size_t most = (size_t)nisas * (MAX_SWEEP_PER_VARIANT + EXTRAS);
  SwConfig *configs = malloc(sizeof *configs * most);
  CgIsa *isa_of = malloc(sizeof *isa_of * most);
  SwCase *cases = calloc(most, sizeof *cases);
  if (!configs || !isa_of || !cases) {
    fprintf(stderr, "a64_sweep_gen: out of memory\n");
    return 1;
  }
  int n = 0;
  for (int v = 0; v < nisas; v++) {
    int first = n;
    n = sweep(variant_name(isas[v]), configs, n);
    n = extras(variant_name(isas[v]), configs, n);
    for (int i = first; i < n; i++)
      isa_of[i] = isas[v];
  }

  LLVMContextRef ctx = LLVMContextCreate();
  LLVMModuleRef mod = LLVMModuleCreateWithNameInContext("a64_sweep", ctx);
  int rc = 0;
  for (int i = 0; i < n && rc == 0; i++) {
    const SwConfig *c = &configs[i];
    SwData d;
    if (!sw_data_init(&d, c)) {
      fprintf(stderr, "a64_sweep_gen: out of memory\n");
      rc = 1;
      break;
    }
    char name[32], err[512] = "";
    snprintf(name, sizeof name, "a64_sweep_%d", i);
    cases[i].c = *c;
    cases[i].data_hash = sw_data_hash(&d, c);
    if (!emit_kernel(mod, name, isa_of[i], c, &d, &cases[i].ntasks, err, sizeof err)) {
      fprintf(stderr,
              "a64_sweep_gen: %s m=%" PRId64 " k=%" PRId64 " n=%" PRId64 ": cannot emit: %s\n",
              c->isa, c->m, c->k, c->n, err);
      rc = 1;
    }
    sw_data_free(&d);
  }
  double emit_s = (double)(clock() - start) / CLOCKS_PER_SEC, opt_s = 0, cg_s = 0;
  if (rc == 0 && !write_object(mod, argv[1], &opt_s, &cg_s))
    rc = 1;
  if (rc == 0 && !write_table(argv[2], cases, n))
    rc = 1;
  LLVMDisposeModule(mod);
  LLVMContextDispose(ctx);
  if (rc == 0)
    printf("a64_sweep_gen: %d kernels (%d variants x %d cases); CPU seconds: emit %.1f, "
           "optimise %.1f, compile %.1f\n",
           n, nisas, nisas ? n / nisas : 0, emit_s, opt_s, cg_s);
  free(configs);
  free(isa_of);
  free(cases);
  return rc;
}
