/* test_runtime.c: the runtime (libq8rt) against fake model libraries.
 *
 * The fixtures (tests/fixtures/fake_model.c, paths passed in as FIXTURE_*)
 * are hand-written descriptors whose entry adds 1 to every element of a
 * 64x33 input, one parallel_for task per row. Descriptors built here, in
 * memory, test q8rt_model_from_desc, the descriptor checks and the thread
 * pool itself. Every error path is checked with its exact message. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "q8rt.h"

#define ROWS 64
#define COLS 33

static char err[512];

/* Each test starts from a clean environment: no Q8_* overrides. */
static int clean_env(void **state) {
  (void)state;
  unsetenv("Q8_ISA");
  unsetenv("Q8_CPU_FEATURES");
  unsetenv("Q8_THREADS");
  unsetenv("Q8_SPIN_US");
  err[0] = '\0';
  return 0;
}

/* --- Helpers ------------------------------------------------------------- */

typedef struct {
  float x[ROWS * COLS], y[ROWS * COLS];
  int32_t visits[ROWS], tag;
} io;

static void io_init(io *b, float base) {
  for (int i = 0; i < ROWS * COLS; i++)
    b->x[i] = base + (float)i * 0.25f;
  memset(b->y, 0, sizeof b->y);
  memset(b->visits, 0xff, sizeof b->visits);
  b->tag = -1;
}

static q8rt_status io_run(q8rt_model *m, io *b) {
  const void *in[] = {b->x};
  void *out[] = {b->y, b->visits, &b->tag};
  return q8rt_run(m, 1, in, 3, out, err, sizeof err);
}

/* Whether y = x + 1 and every row ran once. */
static int io_ok(const io *b) {
  for (int i = 0; i < ROWS * COLS; i++)
    if (b->y[i] != b->x[i] + 1.0f)
      return 0;
  for (int r = 0; r < ROWS; r++)
    if (b->visits[r] != 1)
      return 0;
  return 1;
}

static q8rt_model *load_ok(const char *path) {
  q8rt_model *m = NULL;
  q8rt_status s = q8rt_load(path, &m, err, sizeof err);
  if (s != Q8RT_OK)
    fail_msg("q8rt_load(%s): %s: %s", path, q8rt_status_name(s), err);
  assert_non_null(m);
  assert_string_equal(err, "");
  return m;
}

/* Load `path` expecting status `want` and exactly message `msg`. */
static void load_fails(const char *path, q8rt_status want, const char *msg) {
  q8rt_model *m = (q8rt_model *)&m; /* must be reset to NULL */
  q8rt_status s = q8rt_load(path, &m, err, sizeof err);
  assert_string_equal(q8rt_status_name(s), q8rt_status_name(want));
  assert_null(m);
  assert_string_equal(err, msg);
}

static const uint64_t avx2_bits = Q8_FEATURE_AVX2 | Q8_FEATURE_FMA | Q8_FEATURE_F16C;

/* --- Names and CPU features ---------------------------------------------- */

static void test_status_names(void **state) {
  (void)state;
  assert_string_equal(q8rt_status_name(Q8RT_OK), "Q8RT_OK");
  assert_string_equal(q8rt_status_name(Q8RT_ERR_ARG), "Q8RT_ERR_ARG");
  assert_string_equal(q8rt_status_name(Q8RT_ERR_LOAD), "Q8RT_ERR_LOAD");
  assert_string_equal(q8rt_status_name(Q8RT_ERR_FORMAT), "Q8RT_ERR_FORMAT");
  assert_string_equal(q8rt_status_name(Q8RT_ERR_VERSION), "Q8RT_ERR_VERSION");
  assert_string_equal(q8rt_status_name(Q8RT_ERR_CPU), "Q8RT_ERR_CPU");
  assert_string_equal(q8rt_status_name(Q8RT_ERR_NOMEM), "Q8RT_ERR_NOMEM");
  assert_string_equal(q8rt_status_name(Q8RT_ERR_SHAPE), "Q8RT_ERR_SHAPE");
  assert_string_equal(q8rt_status_name(Q8RT_ERR_RUN), "Q8RT_ERR_RUN");
  assert_string_equal(q8rt_status_name((q8rt_status)99), "Q8RT_ERR_?");
  assert_string_equal(q8rt_status_name((q8rt_status)-1), "Q8RT_ERR_?");
}

/* The library's version is this header's (they are built together), and
 * the model ABI it loads is the one q8model.h defines. */
static void test_versions(void **state) {
  (void)state;
  assert_int_equal(q8rt_version(), Q8_VERSION_NUMBER);
  char text[32];
  snprintf(text, sizeof text, "%d.%d.%d", Q8_VERSION_MAJOR, Q8_VERSION_MINOR, Q8_VERSION_PATCH);
  assert_string_equal(q8rt_version_string(), text);
  assert_int_equal(q8rt_model_abi_version(), Q8_MODEL_ABI_VERSION);
}

static void test_feature_names(void **state) {
  (void)state;
  static const struct {
    uint64_t bit;
    const char *name;
  } all[] = {
      {Q8_FEATURE_SSE41, "sse41"},       {Q8_FEATURE_AVX2, "avx2"},
      {Q8_FEATURE_FMA, "fma"},           {Q8_FEATURE_F16C, "f16c"},
      {Q8_FEATURE_AVX512F, "avx512f"},   {Q8_FEATURE_AVX512BW, "avx512bw"},
      {Q8_FEATURE_AVX512VL, "avx512vl"}, {Q8_FEATURE_AVX512VNNI, "avx512vnni"},
      {Q8_FEATURE_AVXVNNI, "avxvnni"},   {Q8_FEATURE_NEON, "neon"},
      {Q8_FEATURE_DOTPROD, "dotprod"},   {Q8_FEATURE_I8MM, "i8mm"},
  };
  for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
    assert_string_equal(q8rt_feature_name(all[i].bit), all[i].name);
  assert_null(q8rt_feature_name(0));
  assert_null(q8rt_feature_name(Q8_FEATURE_AVX2 | Q8_FEATURE_FMA));
  assert_null(q8rt_feature_name((uint64_t)1 << 40));
}

static void test_cpu_features_override(void **state) {
  (void)state;
  uint64_t host = q8rt_cpu_features();
#if defined(__x86_64__)
  assert_int_equal(host & (Q8_FEATURE_NEON | Q8_FEATURE_DOTPROD | Q8_FEATURE_I8MM), 0);
  /* The implication the hardware guarantees, and the one detection must
   * keep: no AVX-512 feature without AVX-512F. */
  if (host & (Q8_FEATURE_AVX512BW | Q8_FEATURE_AVX512VL | Q8_FEATURE_AVX512VNNI))
    assert_true(host & Q8_FEATURE_AVX512F);
#endif
  setenv("Q8_CPU_FEATURES", "none", 1);
  assert_int_equal(q8rt_cpu_features(), 0);
  setenv("Q8_CPU_FEATURES", "avx2,fma", 1);
  assert_int_equal(q8rt_cpu_features(), host & (Q8_FEATURE_AVX2 | Q8_FEATURE_FMA));
  /* Spaces are trimmed; an unknown name is skipped here (q8rt_load reports it). */
  setenv("Q8_CPU_FEATURES", " sse41 , bogus,avx2", 1);
  assert_int_equal(q8rt_cpu_features(), host & (Q8_FEATURE_SSE41 | Q8_FEATURE_AVX2));
  /* Only ever a subset of the real features. */
  setenv("Q8_CPU_FEATURES", "sse41,avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni,avxvnni,"
                            "neon,dotprod,i8mm", 1);
  assert_int_equal(q8rt_cpu_features(), host);
  setenv("Q8_CPU_FEATURES", "", 1); /* empty: no override */
  assert_int_equal(q8rt_cpu_features(), host);
}

/* --- Loading and running ------------------------------------------------- */

static void test_load_run_free(void **state) {
  (void)state;
  q8rt_model *m = load_ok(FIXTURE_ADD1);
  assert_int_equal(q8rt_num_inputs(m), 1);
  assert_int_equal(q8rt_num_outputs(m), 3);
  assert_string_equal(q8rt_input(m, 0)->name, "x");
  assert_int_equal(q8rt_input(m, 0)->dtype, Q8_DTYPE_F32);
  assert_int_equal(q8rt_input(m, 0)->rank, 2);
  assert_int_equal(q8rt_tensor_numel(q8rt_input(m, 0)), ROWS * COLS);
  assert_string_equal(q8rt_output(m, 1)->name, "visits");
  assert_int_equal(q8rt_tensor_numel(q8rt_output(m, 2)), 1);
  assert_null(q8rt_input(m, 1));
  assert_null(q8rt_input(m, -1));
  assert_null(q8rt_output(m, 3));
  assert_string_equal(q8rt_variant(m), "generic");
  assert_string_equal(q8rt_desc(m)->name, "fake");
  assert_int_equal(q8rt_num_threads(m), 1);

  io b;
  for (int rep = 0; rep < 3; rep++) { /* again: the scratch buffer is reused */
    io_init(&b, (float)rep);
    assert_int_equal(io_run(m, &b), Q8RT_OK);
    assert_string_equal(err, "");
    assert_true(io_ok(&b));
    assert_int_equal(b.tag, 1);
  }
  q8rt_free(m);

  /* Loaded twice at once: two models, one library. */
  q8rt_model *a = load_ok(FIXTURE_ADD1), *c = load_ok(FIXTURE_ADD1);
  io_init(&b, 5);
  assert_int_equal(io_run(c, &b), Q8RT_OK);
  assert_true(io_ok(&b));
  q8rt_free(a);
  io_init(&b, 6);
  assert_int_equal(io_run(c, &b), Q8RT_OK);
  assert_true(io_ok(&b));
  q8rt_free(c);
}

/* "libq8fix_add1.so" means the file in the current directory, not a search
 * of the library path. */
static void test_load_relative_path(void **state) {
  (void)state;
  char dir[4096], cwd[4096];
  strcpy(dir, FIXTURE_ADD1);
  char *slash = strrchr(dir, '/');
  assert_non_null(slash);
  *slash = '\0';
  assert_non_null(getcwd(cwd, sizeof cwd));
  assert_int_equal(chdir(dir), 0);
  q8rt_model *m = NULL;
  q8rt_status s = q8rt_load(slash + 1, &m, err, sizeof err);
  q8rt_status s2 = q8rt_load("libq8fix_nonexistent.so", &(q8rt_model *){NULL}, err, sizeof err);
  assert_int_equal(chdir(cwd), 0);
  assert_int_equal(s, Q8RT_OK);
  q8rt_free(m);
  assert_int_equal(s2, Q8RT_ERR_LOAD);
  assert_string_equal(err, "cannot open 'libq8fix_nonexistent.so': No such file or directory");
}

static void copy_file(const char *from, const char *to, long limit) {
  FILE *in = fopen(from, "rb"), *out = fopen(to, "wb");
  assert_non_null(in);
  assert_non_null(out);
  char buf[4096];
  long total = 0;
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, in)) > 0 && (limit < 0 || total < limit)) {
    if (limit >= 0 && total + (long)n > limit)
      n = (size_t)(limit - total);
    assert_int_equal(fwrite(buf, 1, n, out), n);
    total += (long)n;
  }
  fclose(in);
  assert_int_equal(fclose(out), 0);
}

static void test_load_errors(void **state) {
  (void)state;
  char msg[1024];
  load_fails("/nonexistent/model.so", Q8RT_ERR_LOAD,
             "cannot open '/nonexistent/model.so': No such file or directory");

  /* A model library cut to 100 bytes and to half its size, an empty file, a
   * text file, a directory. */
  char dir[] = "/tmp/q8rt_test_XXXXXX";
  assert_non_null(mkdtemp(dir));
  char cut[64], half[64], empty[64], text[64];
  snprintf(cut, sizeof cut, "%s/cut.so", dir);
  snprintf(half, sizeof half, "%s/half.so", dir);
  snprintf(empty, sizeof empty, "%s/empty.so", dir);
  snprintf(text, sizeof text, "%s/text.so", dir);
  FILE *f = fopen(FIXTURE_ADD1, "rb");
  assert_non_null(f);
  fseek(f, 0, SEEK_END);
  long size = ftell(f);
  fclose(f);
  copy_file(FIXTURE_ADD1, cut, 100);
  copy_file(FIXTURE_ADD1, half, size / 2);
  copy_file(FIXTURE_ADD1, empty, 0);
  f = fopen(text, "w");
  assert_non_null(f);
  fputs("model mlp {}\n", f);
  fclose(f);
  const char *cuts[] = {cut, half};
  long sizes[] = {100, size / 2};
  for (int i = 0; i < 2; i++) {
    q8rt_model *m = NULL;
    assert_int_equal(q8rt_load(cuts[i], &m, err, sizeof err), Q8RT_ERR_LOAD);
    assert_null(m);
    /* "...; its headers need <the original size, or at least past the cut>)" */
    snprintf(msg, sizeof msg, "cannot load '%s': the file is truncated (%ld bytes; its headers need ",
             cuts[i], sizes[i]);
    assert_memory_equal(err, msg, strlen(msg));
    long need = strtol(err + strlen(msg), NULL, 10);
    assert_true(need > sizes[i] && need <= size);
    assert_string_equal(err + strlen(err) - 1, ")");
  }
  snprintf(msg, sizeof msg, "not a q8c model: '%s' is not a shared library (no ELF header)", text);
  load_fails(text, Q8RT_ERR_FORMAT, msg);
  snprintf(msg, sizeof msg, "not a q8c model: '%s' is not a shared library (no ELF header)", empty);
  load_fails(empty, Q8RT_ERR_FORMAT, msg);
  snprintf(msg, sizeof msg, "cannot open '%s': Is a directory", dir);
  load_fails(dir, Q8RT_ERR_LOAD, msg);
  unlink(cut);
  unlink(half);
  unlink(empty);
  unlink(text);
  rmdir(dir);

  /* An ELF file dlopen refuses (a position-independent executable): its
   * reason, without the path dlerror() repeats. */
  q8rt_model *exe = NULL;
  if (q8rt_load("/proc/self/exe", &exe, err, sizeof err) == Q8RT_ERR_LOAD)
    assert_memory_equal(err, "cannot load '/proc/self/exe': c", 31);
  assert_null(exe);

  snprintf(msg, sizeof msg, "not a q8c model: '%s' does not export q8_model", FIXTURE_NOSYM);
  load_fails(FIXTURE_NOSYM, Q8RT_ERR_FORMAT, msg);
  snprintf(msg, sizeof msg, "not a q8c model: bad magic 0x12345678 in '%s' (expected 0x4d443851)",
           FIXTURE_BADMAGIC);
  load_fails(FIXTURE_BADMAGIC, Q8RT_ERR_FORMAT, msg);
  load_fails(FIXTURE_ABI99, Q8RT_ERR_VERSION,
             "built by an incompatible q8c (model ABI 99, runtime ABI 4)");

  /* The only variant needs what this "CPU" lacks. */
  setenv("Q8_CPU_FEATURES", "none", 1);
  load_fails(FIXTURE_VNNI, Q8RT_ERR_CPU,
             "no variant of the model runs on this CPU: model variant avx512vnni needs "
             "avx512vnni, avx512bw, which this CPU lacks");
  setenv("Q8_CPU_FEATURES", "avx512bw,avx2", 1);
  if (q8rt_cpu_features() & Q8_FEATURE_AVX512BW)
    load_fails(FIXTURE_VNNI, Q8RT_ERR_CPU,
               "no variant of the model runs on this CPU: model variant avx512vnni needs "
               "avx512vnni, which this CPU lacks");

  /* Bad settings in the environment. */
  setenv("Q8_CPU_FEATURES", "avx2,avx3", 1);
  load_fails(FIXTURE_ADD1, Q8RT_ERR_ARG,
             "Q8_CPU_FEATURES: unknown feature 'avx3' (known: sse41, avx2, fma, f16c, avx512f, "
             "avx512bw, avx512vl, avx512vnni, avxvnni, neon, dotprod, i8mm, none)");
  unsetenv("Q8_CPU_FEATURES");
  const char *bad_threads[] = {"0", "-2", "two", "3x", "257"};
  for (int i = 0; i < 5; i++) {
    setenv("Q8_THREADS", bad_threads[i], 1);
    snprintf(msg, sizeof msg,
             "Q8_THREADS: expected a number of threads from 1 to 256, got '%s'", bad_threads[i]);
    load_fails(FIXTURE_ADD1, Q8RT_ERR_ARG, msg);
  }
  unsetenv("Q8_THREADS");
  setenv("Q8_SPIN_US", "1e3", 1);
  load_fails(FIXTURE_ADD1, Q8RT_ERR_ARG,
             "Q8_SPIN_US: expected microseconds from 0 to 1000000, got '1e3'");
  setenv("Q8_SPIN_US", "0", 1); /* workers sleep at once: still correct */
  setenv("Q8_THREADS", "3", 1);
  q8rt_model *m = load_ok(FIXTURE_ADD1);
  assert_int_equal(q8rt_num_threads(m), 3);
  io b;
  io_init(&b, 1);
  assert_int_equal(io_run(m, &b), Q8RT_OK);
  assert_true(io_ok(&b));
  q8rt_free(m);
}

static void test_null_arguments(void **state) {
  (void)state;
  q8rt_model *m = NULL;
  assert_int_equal(q8rt_load(NULL, &m, err, sizeof err), Q8RT_ERR_ARG);
  assert_string_equal(err, "q8rt_load: path is NULL");
  assert_int_equal(q8rt_load(FIXTURE_ADD1, NULL, err, sizeof err), Q8RT_ERR_ARG);
  assert_string_equal(err, "q8rt_load: out is NULL");
  assert_int_equal(q8rt_load("", &m, err, sizeof err), Q8RT_ERR_ARG);
  assert_string_equal(err, "q8rt_load: path is empty");
  assert_int_equal(q8rt_model_from_desc(NULL, NULL, NULL, &m, err, sizeof err), Q8RT_ERR_ARG);
  assert_string_equal(err, "q8rt_model_from_desc: desc is NULL");
  /* No message buffer, or a tiny one: still a status, no overflow. */
  assert_int_equal(q8rt_load(NULL, &m, NULL, 0), Q8RT_ERR_ARG);
  assert_int_equal(q8rt_load("/nonexistent.so", &m, NULL, 100), Q8RT_ERR_LOAD);
  char tiny[8] = "xxxxxxx";
  assert_int_equal(q8rt_load("/nonexistent.so", &m, tiny, 0), Q8RT_ERR_LOAD);
  assert_string_equal(tiny, "xxxxxxx");
  assert_int_equal(q8rt_load("/nonexistent.so", &m, tiny, sizeof tiny), Q8RT_ERR_LOAD);
  assert_string_equal(tiny, "cannot ");

  assert_int_equal(q8rt_num_inputs(NULL), -1);
  assert_int_equal(q8rt_num_outputs(NULL), -1);
  assert_null(q8rt_input(NULL, 0));
  assert_null(q8rt_output(NULL, 0));
  assert_null(q8rt_variant(NULL));
  assert_null(q8rt_desc(NULL));
  assert_int_equal(q8rt_num_threads(NULL), -1);
  assert_int_equal(q8rt_tensor_numel(NULL), -1);
  assert_int_equal(q8rt_set_threads(NULL, 2, err, sizeof err), Q8RT_ERR_ARG);
  assert_string_equal(err, "q8rt_set_threads: model is NULL");
  q8rt_free(NULL);

  io b;
  io_init(&b, 0);
  const void *in[] = {b.x};
  const void *in_null[] = {NULL};
  void *out[] = {b.y, b.visits, &b.tag};
  void *out_null[] = {b.y, NULL, &b.tag};
  assert_int_equal(q8rt_run(NULL, 1, in, 3, out, err, sizeof err), Q8RT_ERR_ARG);
  assert_string_equal(err, "q8rt_run: model is NULL");
  m = load_ok(FIXTURE_ADD1);
  assert_int_equal(q8rt_run(m, 1, NULL, 3, out, err, sizeof err), Q8RT_ERR_ARG);
  assert_string_equal(err, "q8rt_run: inputs is NULL (the model has 1)");
  assert_int_equal(q8rt_run(m, 1, in_null, 3, out, err, sizeof err), Q8RT_ERR_ARG);
  assert_string_equal(err, "q8rt_run: inputs[0] ('x') is NULL");
  assert_int_equal(q8rt_run(m, 1, in, 3, NULL, err, sizeof err), Q8RT_ERR_ARG);
  assert_string_equal(err, "q8rt_run: outputs is NULL (the model has 3)");
  assert_int_equal(q8rt_run(m, 1, in, 3, out_null, err, sizeof err), Q8RT_ERR_ARG);
  assert_string_equal(err, "q8rt_run: outputs[1] ('visits') is NULL");
  assert_int_equal(q8rt_run(m, 1, in, 3, out_null, NULL, 0), Q8RT_ERR_ARG);
  /* Arrays of another length than the model's: refused before they are read. */
  assert_int_equal(q8rt_run(m, 0, NULL, 3, out, err, sizeof err), Q8RT_ERR_SHAPE);
  assert_string_equal(err, "q8rt_run: 0 inputs given, the model has 1");
  assert_int_equal(q8rt_run(m, 2, in, 3, out, err, sizeof err), Q8RT_ERR_SHAPE);
  assert_string_equal(err, "q8rt_run: 2 inputs given, the model has 1");
  assert_int_equal(q8rt_run(m, 1, in, 1, out, err, sizeof err), Q8RT_ERR_SHAPE);
  assert_string_equal(err, "q8rt_run: 1 output given, the model has 3");
  assert_int_equal(q8rt_run_quantized(m, 1, in, -1, out, err, sizeof err), Q8RT_ERR_SHAPE);
  assert_string_equal(err, "q8rt_run_quantized: -1 outputs given, the model has 3");
  assert_int_equal(b.tag, -1); /* nothing ran */
  assert_int_equal(q8rt_set_threads(m, 0, err, sizeof err), Q8RT_ERR_ARG);
  assert_string_equal(err, "q8rt_set_threads: 0 threads (expected 1 to 256)");
  assert_int_equal(q8rt_set_threads(m, -3, NULL, 0), Q8RT_ERR_ARG);
  assert_int_equal(q8rt_set_threads(m, 257, err, sizeof err), Q8RT_ERR_ARG);
  assert_string_equal(err, "q8rt_set_threads: 257 threads (expected 1 to 256)");
  assert_int_equal(q8rt_num_threads(m), 1);
  assert_int_equal(q8rt_set_threads(m, 1, err, sizeof err), Q8RT_OK);
  assert_string_equal(err, "");
  q8rt_free(m);
}

/* --- Variant choice ------------------------------------------------------ */

static void expect_variant(const char *path, const char *isa, int tag) {
  q8rt_model *m = load_ok(path);
  assert_string_equal(q8rt_variant(m), isa);
  io b;
  io_init(&b, 2);
  assert_int_equal(io_run(m, &b), Q8RT_OK);
  assert_true(io_ok(&b));
  assert_int_equal(b.tag, tag);
  q8rt_free(m);
}

static void test_variant_fallback(void **state) {
  (void)state;
  int host_avx2 = (q8rt_cpu_features() & avx2_bits) == avx2_bits;
  expect_variant(FIXTURE_TWO, host_avx2 ? "avx2" : "generic", host_avx2 ? 2 : 1);
  setenv("Q8_CPU_FEATURES", "none", 1);
  expect_variant(FIXTURE_TWO, "generic", 1);
  setenv("Q8_CPU_FEATURES", "avx2,fma", 1); /* no f16c: still generic */
  expect_variant(FIXTURE_TWO, "generic", 1);
  setenv("Q8_CPU_FEATURES", "avx2,fma,f16c", 1);
  expect_variant(FIXTURE_TWO, host_avx2 ? "avx2" : "generic", host_avx2 ? 2 : 1);
}

static void test_isa_forcing(void **state) {
  (void)state;
  setenv("Q8_ISA", "generic", 1);
  expect_variant(FIXTURE_TWO, "generic", 1);
  expect_variant(FIXTURE_ADD1, "generic", 1);

  setenv("Q8_ISA", "avx2", 1);
  setenv("Q8_CPU_FEATURES", "sse41", 1);
  load_fails(FIXTURE_TWO, Q8RT_ERR_CPU,
             "model variant avx2 needs avx2, fma, f16c, which this CPU lacks");
  setenv("Q8_CPU_FEATURES", "fma", 1);
  if (q8rt_cpu_features() & Q8_FEATURE_FMA)
    load_fails(FIXTURE_TWO, Q8RT_ERR_CPU, "model variant avx2 needs avx2, f16c, which this CPU lacks");
  unsetenv("Q8_CPU_FEATURES");
  if ((q8rt_cpu_features() & avx2_bits) == avx2_bits)
    expect_variant(FIXTURE_TWO, "avx2", 2);

  setenv("Q8_ISA", "neon", 1);
  load_fails(FIXTURE_TWO, Q8RT_ERR_ARG, "no variant 'neon' in model (has: avx2, generic)");
  setenv("Q8_ISA", "avx512vnni", 1);
  load_fails(FIXTURE_ADD1, Q8RT_ERR_ARG, "no variant 'avx512vnni' in model (has: generic)");
  setenv("Q8_CPU_FEATURES", "avx512f", 1);
  load_fails(FIXTURE_VNNI, Q8RT_ERR_CPU,
             "model variant avx512vnni needs avx512vnni, avx512bw, which this CPU lacks");
  unsetenv("Q8_CPU_FEATURES");
  uint64_t vnni = Q8_FEATURE_AVX512VNNI | Q8_FEATURE_AVX512BW;
  if ((q8rt_cpu_features() & vnni) == vnni)
    expect_variant(FIXTURE_VNNI, "avx512vnni", 3);
}

/* --- Threads ------------------------------------------------------------- */

static void test_threads_identical(void **state) {
  (void)state;
  q8rt_model *m = load_ok(FIXTURE_ADD1);
  io ref, b;
  io_init(&ref, 3);
  assert_int_equal(io_run(m, &ref), Q8RT_OK);
  assert_true(io_ok(&ref));
  const int counts[] = {2, 4, 1, 3, 2};
  for (int c = 0; c < 5; c++) {
    assert_int_equal(q8rt_set_threads(m, counts[c], err, sizeof err), Q8RT_OK);
    assert_int_equal(q8rt_num_threads(m), counts[c]);
    for (int rep = 0; rep < 50; rep++) {
      io_init(&b, 3);
      assert_int_equal(io_run(m, &b), Q8RT_OK);
      assert_memory_equal(b.y, ref.y, sizeof b.y);
      assert_true(io_ok(&b));
    }
  }
  q8rt_free(m);
}

typedef struct {
  q8rt_model *m;
  int id, runs, failures;
} app_thread;

static void *app_thread_main(void *p) {
  app_thread *t = p;
  io *b = malloc(sizeof *b);
  char msg[256];
  for (int r = 0; r < t->runs; r++) {
    io_init(b, (float)(t->id * 1000 + r));
    const void *in[] = {b->x};
    void *out[] = {b->y, b->visits, &b->tag};
    if (q8rt_run(t->m, 1, in, 3, out, msg, sizeof msg) != Q8RT_OK || !io_ok(b) || b->tag != 1)
      t->failures++;
  }
  free(b);
  return NULL;
}

/* Four application threads share one model (and its pool); each run's rows
 * go through scratch, so a shared scratch buffer would corrupt results. */
static void test_concurrent_runs(void **state) {
  (void)state;
  q8rt_model *m = load_ok(FIXTURE_ADD1);
  const int pool_sizes[] = {1, 2, 4};
  for (int s = 0; s < 3; s++) {
    assert_int_equal(q8rt_set_threads(m, pool_sizes[s], NULL, 0), Q8RT_OK);
    pthread_t th[4];
    app_thread at[4];
    for (int i = 0; i < 4; i++) {
      at[i] = (app_thread){m, i, 300, 0};
      assert_int_equal(pthread_create(&th[i], NULL, app_thread_main, &at[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
      pthread_join(th[i], NULL);
      assert_int_equal(at[i].failures, 0);
    }
  }
  q8rt_free(m);
}

/* --- Descriptors in memory, and the pool itself ------------------------ */

static const q8_tensor_desc t_in[] = {{"a", Q8_DTYPE_I32, 1, {2}, Q8_DTYPE_I32, 0, 0, 0}};
static const q8_tensor_desc t_out[] = {{"result", Q8_DTYPE_I32, 1, {8}, Q8_DTYPE_I32, 0, 0, 0}};

/* What the pool-checking entry reports: out[0] counters. */
enum { R_FAILURES, R_DISTINCT, R_NESTED, R_CALLS, R_N };

typedef struct {
  atomic_int *visits;
  pthread_t *who;
  const q8_threads *threads;
  atomic_int nested;
  int64_t slow_ns; /* each task busy-waits this long */
} pool_job;

static int64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void visit_task(void *args, int64_t i) {
  pool_job *j = args;
  atomic_fetch_add(&j->visits[i], 1);
  j->who[i] = pthread_self();
  if (j->slow_ns > 0)
    for (int64_t end = now_ns() + j->slow_ns; now_ns() < end;)
      ;
}

static void inner_task(void *args, int64_t i) {
  (void)i;
  atomic_fetch_add(&((pool_job *)args)->nested, 1);
}

/* A task that calls parallel_for again: the pool is busy, so it runs inline. */
static void nesting_task(void *args, int64_t i) {
  pool_job *j = args;
  j->threads->parallel_for(j->threads, inner_task, j, 10);
  visit_task(args, i);
}

static int pool_entry(const q8_threads *threads, const void *const *inputs,
                      void *const *outputs, void *scratch, int64_t batch) {
  (void)scratch, (void)batch;
  int32_t *r = outputs[0];
  /* inputs[0]: the pool's thread count, whether its workers spin */
  int nthreads = ((const int32_t *)inputs[0])[0], spinning = ((const int32_t *)inputs[0])[1];
  memset(r, 0, R_N * sizeof *r);
  if (!threads)
    return 1;
  static const int64_t sizes[] = {0, 1, 2, 3, 4, 5, 7, 64, 1000, 4097};
  atomic_int *visits = calloc(4097, sizeof *visits);
  pthread_t *who = calloc(4097, sizeof *who);
  pool_job j = {visits, who, threads, 0, 0};
  for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
    int64_t n = sizes[s];
    for (int64_t i = 0; i < n; i++)
      atomic_store(&visits[i], 0);
    threads->parallel_for(threads, visit_task, &j, n);
    for (int64_t i = 0; i < n; i++)
      if (atomic_load(&visits[i]) != 1)
        r[R_FAILURES]++;
    r[R_CALLS]++;
  }
  for (int i = 0; i < 8; i++)
    atomic_store(&visits[i], 0);
  threads->parallel_for(threads, nesting_task, &j, 8);
  for (int i = 0; i < 8; i++)
    if (atomic_load(&visits[i]) != 1)
      r[R_FAILURES]++;
  r[R_NESTED] = atomic_load(&j.nested);
  /* Back to back, many times: the hand-off must never lose a wake-up. */
  for (int rep = 0; rep < 20000; rep++) {
    atomic_store(&visits[0], 0);
    atomic_store(&visits[1], 0);
    threads->parallel_for(threads, visit_task, &j, 2);
    if (atomic_load(&visits[0]) != 1 || atomic_load(&visits[1]) != 1)
      r[R_FAILURES]++;
  }
  /* Every thread takes part: one task per thread, each long enough (20 us)
   * for a spinning worker to claim its own chunk before another thread
   * steals it. On a loaded machine a worker may not be scheduled for a
   * while, so keep going until each has been seen, for up to ~100000 jobs
   * (seconds): a worker that never runs is a bug, one that runs late is not. */
  pthread_t seen[8];
  int nseen = 0;
  j.slow_ns = 20000;
  for (int rep = 0; spinning && nseen < nthreads && rep < 100000; rep++) {
    threads->parallel_for(threads, visit_task, &j, nthreads);
    for (int i = 0; i < nthreads; i++) {
      int known = 0;
      for (int k = 0; k < nseen; k++)
        known |= pthread_equal(seen[k], who[i]);
      if (!known && nseen < 8)
        seen[nseen++] = who[i];
    }
  }
  r[R_DISTINCT] = nseen;
  free(visits);
  free(who);
  return 0;
}

static int fail_entry(const q8_threads *threads, const void *const *inputs,
                      void *const *outputs, void *scratch, int64_t batch) {
  (void)threads, (void)inputs, (void)outputs, (void)scratch, (void)batch;
  return 3;
}

/* The statuses of a gather with an id outside its table (Q8_RUN_ERR_*). */
static int bad_id_in_input0(const q8_threads *threads, const void *const *inputs,
                            void *const *outputs, void *scratch, int64_t batch) {
  (void)threads, (void)inputs, (void)outputs, (void)scratch, (void)batch;
  return Q8_RUN_ERR_INPUT_ID + 0;
}

static int bad_computed_id(const q8_threads *threads, const void *const *inputs,
                           void *const *outputs, void *scratch, int64_t batch) {
  (void)threads, (void)inputs, (void)outputs, (void)scratch, (void)batch;
  return Q8_RUN_ERR_ID;
}

static const q8_variant_desc pool_variants[] = {{"generic", 0, pool_entry, pool_entry}};

static q8_model_desc pool_desc(void) {
  return (q8_model_desc){Q8_MODEL_MAGIC, Q8_MODEL_ABI_VERSION, "pool", "test", 1, 1, t_in,
                         t_out, 0, 1, pool_variants, 0, 0, 0, NULL, NULL};
}

static void count_release(void *ctx) { (*(int *)ctx)++; }

/* The pool through an entry point that checks every parallel_for it makes,
 * with 1 to 4 threads, with spinning workers and with workers that sleep as
 * soon as they are idle (Q8_SPIN_US=0: every job wakes them). */
static void test_pool(void **state) {
  (void)state;
  for (int spinning = 1; spinning >= 0; spinning--) {
    if (!spinning)
      setenv("Q8_SPIN_US", "0", 1);
    q8_model_desc d = pool_desc();
    int released = 0;
    q8rt_model *m = NULL;
    assert_int_equal(q8rt_model_from_desc(&d, count_release, &released, &m, err, sizeof err),
                     Q8RT_OK);
    for (int n = 1; n <= 4; n++) {
      assert_int_equal(q8rt_set_threads(m, n, err, sizeof err), Q8RT_OK);
      int32_t cfg[2] = {n, spinning}, r[8];
      const void *in[] = {cfg};
      void *out[] = {r};
      assert_int_equal(q8rt_run(m, 1, in, 1, out, err, sizeof err), Q8RT_OK);
      assert_int_equal(r[R_FAILURES], 0);
      assert_int_equal(r[R_CALLS], 10);
      assert_int_equal(r[R_DISTINCT], spinning ? n : 0);
      assert_int_equal(r[R_NESTED], 80);
    }
    assert_int_equal(released, 0);
    q8rt_free(m);
    assert_int_equal(released, 1);
  }
}

static void test_from_desc(void **state) {
  (void)state;
  int released = 0;
  q8rt_model *m = NULL;
  q8_model_desc d = pool_desc();
  /* No release callback: fine. */
  assert_int_equal(q8rt_model_from_desc(&d, NULL, NULL, &m, err, sizeof err), Q8RT_OK);
  assert_string_equal(q8rt_variant(m), "generic");
  assert_string_equal(q8rt_desc(m)->name, "pool");
  q8rt_free(m);
  assert_int_equal(q8rt_model_from_desc(&d, count_release, &released, NULL, err, sizeof err),
                   Q8RT_ERR_ARG);
  assert_string_equal(err, "q8rt_model_from_desc: out is NULL");

  /* An entry that reports failure. */
  static const q8_variant_desc failing[] = {{"generic", 0, fail_entry, fail_entry}};
  d.variants = failing;
  assert_int_equal(q8rt_model_from_desc(&d, count_release, &released, &m, err, sizeof err),
                   Q8RT_OK);
  int32_t a[2] = {0, 0}, r[8];
  const void *in[] = {a};
  void *out[] = {r};
  assert_int_equal(q8rt_run(m, 1, in, 1, out, err, sizeof err), Q8RT_ERR_RUN);
  assert_string_equal(err, "model variant generic failed (its entry returned 3)");
  assert_int_equal(q8rt_run_quantized(m, 1, in, 1, out, err, sizeof err), Q8RT_ERR_RUN);
  assert_string_equal(err, "model variant generic failed (its quantized entry returned 3)");
  q8rt_free(m);
  assert_int_equal(released, 1);
  released = 0;

  /* A token id outside an embedding table: the message names the input. */
  static const q8_variant_desc bad_id[] = {{"generic", 0, bad_id_in_input0, bad_computed_id}};
  d.variants = bad_id;
  assert_int_equal(q8rt_model_from_desc(&d, count_release, &released, &m, err, sizeof err),
                   Q8RT_OK);
  assert_int_equal(q8rt_run(m, 1, in, 1, out, err, sizeof err), Q8RT_ERR_RUN);
  char want[256];
  snprintf(want, sizeof want,
           "q8rt_run: input '%s' holds a token id outside the embedding table (gather); ids "
           "must be in [0, rows of the table)",
           d.inputs[0].name);
  assert_string_equal(err, want);
  assert_int_equal(q8rt_run_quantized(m, 1, in, 1, out, err, sizeof err), Q8RT_ERR_RUN);
  assert_string_equal(err, "q8rt_run_quantized: a token id computed from the inputs is outside "
                           "the embedding table (gather)");
  assert_int_equal(q8rt_run_quantized(NULL, 1, in, 1, out, err, sizeof err), Q8RT_ERR_ARG);
  assert_string_equal(err, "q8rt_run_quantized: model is NULL");
  assert_int_equal(q8rt_run_quantized(m, 1, in, 1, NULL, err, sizeof err), Q8RT_ERR_ARG);
  assert_string_equal(err, "q8rt_run_quantized: outputs is NULL (the model has 1)");
  q8rt_free(m);
  assert_int_equal(released, 1);

  /* Malformed descriptors: each message, and release never called. */
  static const q8_tensor_desc rank9[] = {{"a", Q8_DTYPE_I32, 9, {1}, Q8_DTYPE_I32, 0, 0, 0}};
  static const q8_tensor_desc negdim[] = {{"a", Q8_DTYPE_I32, 2, {4, -3}, Q8_DTYPE_I32, 0, 0, 0}};
  static const q8_tensor_desc huge[] = {{"a", Q8_DTYPE_I32, 3, {1 << 30, 1 << 30, 1 << 30}, Q8_DTYPE_I32, 0, 0, 0}};
  static const q8_tensor_desc nodtype[] = {{"a", 9, 1, {1}, 9, 0, 0, 0}};
  static const q8_tensor_desc noname[] = {{NULL, Q8_DTYPE_I32, 1, {1}, Q8_DTYPE_I32, 0, 0, 0}};
  /* Quantized forms: only of f32, only u8 or i8, with a positive scale. */
  static const q8_tensor_desc qform_i32[] = {{"a", Q8_DTYPE_I32, 1, {2}, Q8_DTYPE_U8, 0.5f, 3, 0}};
  static const q8_tensor_desc qform_noscale[] = {{"x", Q8_DTYPE_F32, 1, {2}, Q8_DTYPE_I8, 0, 0, 0}};
  static const q8_tensor_desc qform_i32out[] = {{"y", Q8_DTYPE_F32, 1, {8}, Q8_DTYPE_I32, 1, 0, 0}};
  static const q8_variant_desc noisa[] = {{NULL, 0, pool_entry, pool_entry}};
  static const q8_variant_desc norun[] = {{"generic", 0, pool_entry, pool_entry}, {"avx2", 0, NULL, pool_entry}};
  static const q8_variant_desc norunq[] = {{"generic", 0, pool_entry, NULL}};
  static const q8_variant_desc vnni[] = {
      {"avx512vnni", Q8_FEATURE_AVX512VNNI | Q8_FEATURE_AVX512BW | ((uint64_t)1 << 40),
       pool_entry, pool_entry}};
  struct {
    q8_model_desc d;
    q8rt_status status;
    const char *msg;
  } cases[] = {
#define D(...) ((q8_model_desc){Q8_MODEL_MAGIC, Q8_MODEL_ABI_VERSION, "bad", "test", __VA_ARGS__, 0, 0, 0, NULL, NULL})
      {{0x4d443852u, 1, "bad", "test", 1, 1, t_in, t_out, 0, 1, pool_variants, 0, 0, 0, NULL, NULL},
       Q8RT_ERR_FORMAT,
       "not a q8c model: bad magic 0x4d443852 in the descriptor (expected 0x4d443851)"},
      {{Q8_MODEL_MAGIC, 7, "bad", "test", 1, 1, t_in, t_out, 0, 1, pool_variants, 0, 0, 0, NULL, NULL},
       Q8RT_ERR_VERSION,
       "built by an incompatible q8c (model ABI 7, runtime ABI 4)"},
      {D(-1, 1, t_in, t_out, 0, 1, pool_variants), Q8RT_ERR_FORMAT,
       "bad model descriptor: ninputs is -1 (expected 0 to 65536)"},
      {D(1, 0, t_in, t_out, 0, 1, pool_variants), Q8RT_ERR_FORMAT,
       "bad model descriptor: noutputs is 0 (expected 1 to 65536)"},
      {D(1, 1, NULL, t_out, 0, 1, pool_variants), Q8RT_ERR_FORMAT,
       "bad model descriptor: inputs is NULL"},
      {D(1, 1, t_in, NULL, 0, 1, pool_variants), Q8RT_ERR_FORMAT,
       "bad model descriptor: outputs is NULL"},
      {D(1, 1, rank9, t_out, 0, 1, pool_variants), Q8RT_ERR_FORMAT,
       "bad model descriptor: input 0 ('a') has rank 9 (expected 0 to 8)"},
      {D(1, 1, t_in, negdim, 0, 1, pool_variants), Q8RT_ERR_FORMAT,
       "bad model descriptor: output 0 ('a') has dimension 1 of -3"},
      {D(1, 1, huge, t_out, 0, 1, pool_variants), Q8RT_ERR_FORMAT,
       "bad model descriptor: input 0 ('a') is too large"},
      {D(1, 1, nodtype, t_out, 0, 1, pool_variants), Q8RT_ERR_FORMAT,
       "bad model descriptor: input 0 ('a') has unknown dtype 9"},
      {D(1, 1, noname, t_out, 0, 1, pool_variants), Q8RT_ERR_FORMAT,
       "bad model descriptor: input 0 has no name"},
      {D(1, 1, t_in, t_out, -8, 1, pool_variants), Q8RT_ERR_FORMAT,
       "bad model descriptor: scratch_bytes is -8"},
      {D(1, 1, t_in, t_out, 0, 0, pool_variants), Q8RT_ERR_FORMAT,
       "bad model descriptor: nvariants is 0 (expected 1 to 64)"},
      {D(1, 1, t_in, t_out, 0, 1, NULL), Q8RT_ERR_FORMAT,
       "bad model descriptor: variants is NULL"},
      {D(1, 1, t_in, t_out, 0, 1, noisa), Q8RT_ERR_FORMAT,
       "bad model descriptor: variant 0 has no isa name"},
      {D(1, 1, t_in, t_out, 0, 2, norun), Q8RT_ERR_FORMAT,
       "bad model descriptor: variant 1 (avx2) has no f32 entry point"},
      {D(1, 1, t_in, t_out, 0, 1, norunq), Q8RT_ERR_FORMAT,
       "bad model descriptor: variant 0 (generic) has no quantized entry point"},
      {D(1, 1, qform_i32, t_out, 0, 1, pool_variants), Q8RT_ERR_FORMAT,
       "bad model descriptor: input 0 ('a') has quantized form 3 (scale 0.5) for dtype 4"},
      {D(1, 1, qform_noscale, t_out, 0, 1, pool_variants), Q8RT_ERR_FORMAT,
       "bad model descriptor: input 0 ('x') has quantized form 2 (scale 0) for dtype 1"},
      {D(1, 1, t_in, qform_i32out, 0, 1, pool_variants), Q8RT_ERR_FORMAT,
       "bad model descriptor: output 0 ('y') has quantized form 4 (scale 1) for dtype 1"},
      /* A feature bit the runtime does not know is never present. */
      {D(1, 1, t_in, t_out, 0, 1, vnni), Q8RT_ERR_CPU,
       "no variant of the model runs on this CPU: model variant avx512vnni needs avx512vnni, "
       "avx512bw, feature bit 40, which this CPU lacks"},
#undef D
  };
  setenv("Q8_CPU_FEATURES", "none", 1);
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    m = (q8rt_model *)&m;
    q8rt_status s = q8rt_model_from_desc(&cases[i].d, count_release, &released, &m, err,
                                         sizeof err);
    assert_string_equal(q8rt_status_name(s), q8rt_status_name(cases[i].status));
    assert_null(m);
    assert_string_equal(err, cases[i].msg);
  }
  assert_int_equal(released, 1);
  /* A model without inputs may pass inputs = NULL. */
  d = pool_desc();
  d.ninputs = 0;
  d.inputs = NULL;
  d.variants = failing;
  assert_int_equal(q8rt_model_from_desc(&d, NULL, NULL, &m, err, sizeof err), Q8RT_OK);
  assert_int_equal(q8rt_run(m, 0, NULL, 1, out, err, sizeof err), Q8RT_ERR_RUN);
  assert_int_equal(q8rt_run(m, 1, in, 1, out, err, sizeof err), Q8RT_ERR_SHAPE);
  assert_string_equal(err, "q8rt_run: 1 input given, the model has 0");
  q8rt_free(m);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup(test_status_names, clean_env),
      cmocka_unit_test_setup(test_versions, clean_env),
      cmocka_unit_test_setup(test_feature_names, clean_env),
      cmocka_unit_test_setup(test_cpu_features_override, clean_env),
      cmocka_unit_test_setup(test_load_run_free, clean_env),
      cmocka_unit_test_setup(test_load_relative_path, clean_env),
      cmocka_unit_test_setup(test_load_errors, clean_env),
      cmocka_unit_test_setup(test_null_arguments, clean_env),
      cmocka_unit_test_setup(test_variant_fallback, clean_env),
      cmocka_unit_test_setup(test_isa_forcing, clean_env),
      cmocka_unit_test_setup(test_threads_identical, clean_env),
      cmocka_unit_test_setup(test_concurrent_runs, clean_env),
      cmocka_unit_test_setup(test_pool, clean_env),
      cmocka_unit_test_setup(test_from_desc, clean_env),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
