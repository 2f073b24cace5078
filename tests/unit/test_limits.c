/* test_limits.c: sizes that overflow 64 bits or exceed the memory cap
 * (Q8_MAX_TENSOR_BYTES, ir_max_tensor_bytes) are refused with a message
 * before anything is allocated, at every place that allocates for model
 * data: the parser's types, the safetensors and .npy loaders, the
 * interpreter's buffers, a batch of calibration samples, and a compiled
 * model's scratch memory.
 *
 * Each refusal is checked by its message; that it comes before any
 * allocation is shown by the sizes involved (terabytes: an attempt would
 * fail as "out of memory", or not return quickly) and, for the small caps,
 * by the sanitizer build, whose allocator would report a failed allocation.
 *
 * And memory that runs out all the same is an error the caller gets, never
 * an abort (test_out_of_memory). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "frontend/frontend.h"
#include "passes/passes.h"
#include "q8c.h"

static char dir[64];

static int make_dir(void **state) {
  (void)state;
  unsetenv("Q8_MAX_TENSOR_BYTES");
  snprintf(dir, sizeof dir, "/tmp/q8_limits_XXXXXX");
  return mkdtemp(dir) ? 0 : -1;
}

static int remove_dir(void **state) {
  (void)state;
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  return system(cmd) == 0 ? 0 : -1;
}

static int reset_env(void **state) {
  (void)state;
  unsetenv("Q8_MAX_TENSOR_BYTES");
  return 0;
}

static const char *path_in_dir(const char *name) {
  static char buf[4][256];
  static int next;
  char *p = buf[next++ % 4];
  snprintf(p, 256, "%s/%s", dir, name);
  return p;
}

/* weights.safetensors in the test directory: w f32[4, 8], b f32[4]. */
static void write_weights(void) {
  static float w[32], b[4];
  for (int i = 0; i < 32; i++)
    w[i] = (float)(i % 5) - 2;
  FeTensor ts[2] = {{"w", {IR_F32, 2, {4, 8}}, w, sizeof w}, {"b", {IR_F32, 1, {4}}, b, sizeof b}};
  char err[256];
  assert_true(fe_safetensors_write(path_in_dir("weights.safetensors"), ts, 2, err, sizeof err));
}

/* Parse `text` as dir/model.ir and expect it to fail with `want` after the
 * "path:line:col: error: " prefix (the first line of the message). */
static void parse_fails(const char *text, const char *want) {
  IrModule *m = fe_parse(path_in_dir("model.ir"), text);
  assert_true(m->diag.failed);
  const char *e = strstr(m->diag.msg, "error: ");
  assert_non_null(e);
  size_t n = strcspn(e + 7, "\n");
  char first[1024];
  snprintf(first, sizeof first, "%.*s", (int)n, e + 7);
  assert_string_equal(first, want);
  ir_module_free(m);
}

static void test_cap_setting(void **state) {
  (void)state;
  uint64_t limit;
  char err[256];
  assert_true(ir_max_tensor_bytes(&limit, err, sizeof err));
  assert_int_equal(limit, (uint64_t)16 << 30);
  static const struct {
    const char *env;
    uint64_t want;
  } ok[] = {{"1", 1}, {"4096", 4096}, {"2K", 2048}, {"64m", 64 << 20}, {"3G", 3ull << 30},
            {"1T", 1ull << 40}, {"1048576T", 1ull << 60}, {"", (uint64_t)16 << 30}};
  for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
    setenv("Q8_MAX_TENSOR_BYTES", ok[i].env, 1);
    assert_true(ir_max_tensor_bytes(&limit, err, sizeof err));
    assert_int_equal(limit, ok[i].want);
  }
  static const char *const bad[] = {"0", "-1", "abc", "16GB", "1.5G", "G", "1048577T",
                                    "99999999999999999999999", " 5", "5 "};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    setenv("Q8_MAX_TENSOR_BYTES", bad[i], 1);
    assert_false(ir_max_tensor_bytes(&limit, err, sizeof err));
    char want[256];
    snprintf(want, sizeof want,
             "Q8_MAX_TENSOR_BYTES: expected a byte count from 1 to 2^60 such as 16G, got '%s'",
             bad[i]);
    assert_string_equal(err, want);
    /* A malformed setting refuses every allocation, with its own message. */
    assert_false(ir_bytes_allowed(1, err, sizeof err));
    assert_string_equal(err, want);
  }
  setenv("Q8_MAX_TENSOR_BYTES", "1K", 1);
  assert_true(ir_bytes_allowed(1024, err, sizeof err));
  assert_false(ir_bytes_allowed(1025, err, sizeof err));
  assert_string_equal(err, "needs 1025 bytes, over the limit of 1024 (Q8_MAX_TENSOR_BYTES)");
  IrType t = {IR_F32, 2, {IR_DIM_BATCH, 64}};
  size_t bytes;
  assert_true(ir_type_bytes(&t, 4, &bytes, err, sizeof err));
  assert_int_equal(bytes, 1024);
  assert_false(ir_type_bytes(&t, 5, &bytes, err, sizeof err));
  assert_string_equal(err, "needs 1280 bytes, over the limit of 1024 (Q8_MAX_TENSOR_BYTES)");
  IrType huge = {IR_I32, 2, {1LL << 62, 2}};
  assert_false(ir_type_bytes(&huge, 1, &bytes, err, sizeof err));
  assert_string_equal(err, "has more elements than 64-bit arithmetic holds");
  IrType bytes_wrap = {IR_I32, 1, {1LL << 62}}; /* 2^62 elements fit, 2^64 bytes do not */
  assert_false(ir_type_bytes(&bytes_wrap, 1, &bytes, err, sizeof err));
  assert_string_equal(err, "has more elements than 64-bit arithmetic holds");
}

/* The example: an input of a trillion features, with weights that
 * exist, is refused at its declaration, not when something allocates it. */
static void test_parser_types(void **state) {
  (void)state;
  write_weights();
  parse_fails("model big {\n"
              "  weights \"weights.safetensors\"\n"
              "  input %x : f32[?, 1000000000000]\n"
              "  %y = relu %x\n"
              "  output %y\n"
              "}\n",
              "%x : f32[?, 1000000000000] with the batch size 1 needs 4000000000000 bytes, over "
              "the limit of 17179869184 (Q8_MAX_TENSOR_BYTES)");
  /* Rank 8 of the largest dimension the parser takes: the count overflows. */
  parse_fails("model big {\n"
              "  input %x : f32[1000000000000000, 1000000000000000, 1000000000000000, "
              "1000000000000000, 1000000000000000, 1000000000000000, 1000000000000000, "
              "1000000000000000]\n"
              "  %y = relu %x\n"
              "  output %y\n"
              "}\n",
              "%x : f32[1000000000000000, 1000000000000000, 1000000000000000, "
              "1000000000000000, 1000000000000000, 1000000000000000, 1000000000000000, "
              "1000000000000000] has more elements than 64-bit arithmetic holds");
  /* Operands that fit, a result that does not: [?, 1e7, 1] x [?, 1, 1e7]. */
  parse_fails("model outer {\n"
              "  input %a : f32[?, 10000000, 1]\n"
              "  input %b : f32[?, 1, 10000000]\n"
              "  %p = matmul %a, %b\n"
              "  output %p\n"
              "}\n",
              "%p : f32[?, 10000000, 10000000] with the batch size 1 needs 400000000000000 "
              "bytes, over the limit of 17179869184 (Q8_MAX_TENSOR_BYTES)");
  /* The cap is a setting: 1K refuses 2 KiB rows and takes 1 KiB ones. */
  setenv("Q8_MAX_TENSOR_BYTES", "1K", 1);
  parse_fails("model m {\n  input %x : f32[?, 512]\n  %y = relu %x\n  output %y\n}\n",
              "%x : f32[?, 512] with the batch size 1 needs 2048 bytes, over the limit of 1024 "
              "(Q8_MAX_TENSOR_BYTES)");
  IrModule *m = fe_parse(path_in_dir("model.ir"),
                         "model m {\n  input %x : f32[?, 256]\n  %y = relu %x\n  output %y\n}\n");
  assert_false(m->diag.failed);
  ir_module_free(m);
  setenv("Q8_MAX_TENSOR_BYTES", "lots", 1);
  parse_fails("model m {\n  input %x : f32[?, 4]\n  %y = relu %x\n  output %y\n}\n",
              "%x : f32[?, 4] with the batch size 1 Q8_MAX_TENSOR_BYTES: expected a byte count "
              "from 1 to 2^60 such as 16G, got 'lots'");
}

/* The interpreter checks each buffer with the batch size it runs with. */
static void test_interpreter_batch(void **state) {
  (void)state;
  IrModule *m = fe_parse(path_in_dir("model.ir"),
                         "model m {\n  input %x : f32[?, 64]\n  %y = relu %x\n  output %y\n}\n");
  assert_false(m->diag.failed);
  int64_t batch = (int64_t)1 << 40;
  float dummy;
  IrTensor in = {ir_type_bind(&m->inputs[0]->type, batch), &dummy}, out = {{0}, NULL};
  assert_false(ir_interp_f32(m, batch, &in, &out, NULL, NULL));
  assert_non_null(strstr(m->diag.msg,
                         "error: %x : f32[?, 64] with the batch size 1099511627776 needs "
                         "281474976710656 bytes, over the limit of 17179869184 "
                         "(Q8_MAX_TENSOR_BYTES)"));
  assert_null(out.data);
  ir_module_free(m);
}

static void test_safetensors_cap(void **state) {
  (void)state;
  /* F16[300]: 600 bytes in the file, 1200 once widened to f32. */
  static uint16_t h[300];
  char hdr[128];
  int n = snprintf(hdr, sizeof hdr,
                   "{\"h\":{\"dtype\":\"F16\",\"shape\":[300],\"data_offsets\":[0,600]}}");
  size_t size = 8 + (size_t)n + sizeof h;
  unsigned char *file = calloc(1, size);
  file[0] = (unsigned char)n;
  memcpy(file + 8, hdr, (size_t)n);
  memcpy(file + 8 + n, h, sizeof h);
  IrArena *a = ir_arena_new();
  FeTensorSet set;
  char err[512];
  setenv("Q8_MAX_TENSOR_BYTES", "1K", 1);
  assert_false(fe_safetensors_parse(a, file, size, &set, err, sizeof err));
  assert_string_equal(err, "tensor 'h': F16[300] needs 1200 bytes, over the limit of 1024 "
                           "(Q8_MAX_TENSOR_BYTES)");
  setenv("Q8_MAX_TENSOR_BYTES", "2K", 1);
  assert_true(fe_safetensors_parse(a, file, size, &set, err, sizeof err));
  assert_int_equal(set.n, 1);

  /* The whole file is read into memory: it is held to the cap as well. */
  FILE *f = fopen(path_in_dir("big.safetensors"), "wb");
  assert_non_null(f);
  assert_int_equal(fwrite(file, 1, size, f), size);
  fclose(f);
  setenv("Q8_MAX_TENSOR_BYTES", "512", 1);
  assert_false(fe_safetensors_read(a, path_in_dir("big.safetensors"), &set, err, sizeof err));
  char want[160];
  snprintf(want, sizeof want, "the file needs %zu bytes, over the limit of 512 (Q8_MAX_TENSOR_BYTES)",
           size);
  assert_string_equal(err, want);
  /* A file without a size (a device, a pipe) stops at the cap instead of
   * reading until memory runs out: /dev/zero never ends. */
  setenv("Q8_MAX_TENSOR_BYTES", "1M", 1);
  assert_false(fe_safetensors_read(a, "/dev/zero", &set, err, sizeof err));
  assert_string_equal(err, "the file is larger than the limit of 1048576 bytes "
                           "(Q8_MAX_TENSOR_BYTES)");
  ir_arena_free(a);
  free(file);
}

static void write_npy(const char *name, IrType t) {
  int64_t n;
  assert_true(ir_type_numel(&t, 1, &n));
  float *x = calloc((size_t)n, sizeof *x);
  for (int64_t i = 0; i < n; i++)
    x[i] = (float)(i % 9) - 4;
  IrTensor tensor = {t, x};
  char err[256];
  assert_true(fe_npy_write(path_in_dir(name), &tensor, err, sizeof err));
  free(x);
}

static void test_npy_cap(void **state) {
  (void)state;
  write_npy("a.npy", (IrType){IR_F32, 1, {300}});
  setenv("Q8_MAX_TENSOR_BYTES", "1K", 1);
  IrTensor t;
  char err[256];
  assert_false(fe_npy_read(path_in_dir("a.npy"), &t, err, sizeof err));
  assert_string_equal(err, "array of shape (300,) needs 1200 bytes, over the limit of 1024 "
                           "(Q8_MAX_TENSOR_BYTES)");
  assert_null(t.data);
  setenv("Q8_MAX_TENSOR_BYTES", "2K", 1);
  assert_true(fe_npy_read(path_in_dir("a.npy"), &t, err, sizeof err));
  free(t.data);
}

/* One sample fits, a batch of them does not. */
static void test_calibration_batch(void **state) {
  (void)state;
  write_npy("calib.npy", (IrType){IR_F32, 2, {20, 64}});
  setenv("Q8_MAX_TENSOR_BYTES", "1K", 1);
  IrModule *m = fe_parse(path_in_dir("model.ir"),
                         "model m {\n  input %x : f32[?, 64]\n  %y = relu %x\n  output %y\n}\n");
  assert_false(m->diag.failed);
  PassSamples *s = pass_samples_open(m, path_in_dir("calib.npy"), 16);
  assert_null(s);
  char want[512];
  snprintf(want, sizeof want,
           "%s: a batch of 16 samples for %%x needs 4096 bytes, over the limit of 1024 "
           "(Q8_MAX_TENSOR_BYTES); lower --calib-batch",
           path_in_dir("calib.npy"));
  assert_non_null(strstr(m->diag.msg, want));
  m->diag.failed = false;
  s = pass_samples_open(m, path_in_dir("calib.npy"), 4);
  assert_non_null(s);
  pass_samples_close(s);
  ir_module_free(m);
}

/* Every value of a compiled model fits the cap, but their sum, its scratch
 * memory, does not. */
static void test_compile_scratch(void **state) {
  (void)state;
  write_weights();
  q8c_module *m;
  q8c_parse_string(path_in_dir("model.ir"),
                   "model m {\n"
                   "  weights \"weights.safetensors\"\n"
                   "  input %x : f32[?, 8]\n"
                   "  %h = linear %x, @w, @b\n"
                   "  %a = relu %h\n"
                   "  %g = gelu %a\n"
                   "  %y = relu %g\n"
                   "  output %y\n"
                   "}\n", &m);
  assert_null(q8c_module_error(m));
  q8c_quant_options qo = {.dynamic = 1};
  assert_int_equal(q8c_quantize(m, &qo), Q8C_OK);
  /* %x is 32 x 8 f32, 1 KiB; %h, %a and %g are 32 x 4 f32, 512 bytes each,
   * and live in scratch (%y is the caller's output buffer), with the
   * qlinear_dyn's quantized rows of %x (32 x 8 bytes) and their terms (32 x
   * 16 bytes, codegen/attention.c): 2304 bytes. */
  setenv("Q8_MAX_TENSOR_BYTES", "1K", 1);
  q8c_compile_options co = {.batch = 32, .target = "generic", .opt_level = 1};
  q8rt_model *rt = (q8rt_model *)&rt;
  assert_int_equal(q8c_compile(m, &co, &rt), Q8C_ERR_COMPILE);
  assert_null(rt);
  assert_non_null(strstr(q8c_module_error(m),
                         "error: codegen: the scratch memory for the intermediate values (batch "
                         "size 32) needs 2304 bytes, over the limit of 1024 "
                         "(Q8_MAX_TENSOR_BYTES)"));
  q8c_module_free(m);
}

/* Size in the other direction: many statements. Parsing, verifying and the
 * passes are linear (or n log n) in the number of nodes; they were
 * quadratic (name lookups, the verifier's checks, dead-node removal), and a
 * model of 100k statements, a 2.6 MB file, took hours. */
static void test_many_nodes(void **state) {
  (void)state;
  enum { N = 100000 };
  size_t cap = (size_t)N * 64, len = 0;
  char *text = malloc(cap);
  len += (size_t)snprintf(text + len, cap - len, "model chain {\n  input %%v0 : f32[?, 4]\n");
  for (int i = 1; i < N; i++)
    len += (size_t)snprintf(text + len, cap - len, "  %%v%d = relu %%v%d\n", i, i - 1);
  /* The dead half: unused values the passes remove. */
  for (int i = 0; i < N / 2; i++)
    len += (size_t)snprintf(text + len, cap - len, "  %%d%d = gelu %%v%d\n", i, i);
  snprintf(text + len, cap - len, "  output %%v%d\n}\n", N - 1);
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  IrModule *m = fe_parse(path_in_dir("chain.ir"), text);
  assert_false(m->diag.failed);
  assert_int_equal(m->nnodes, N - 1 + N / 2);
  PassOptions o;
  pass_options_init(&o);
  o.dynamic = true;
  assert_true(pass_run_pipeline(m, &o));
  assert_int_equal(m->nnodes, N - 1);
  clock_gettime(CLOCK_MONOTONIC, &t1);
  double seconds = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
  /* About 1 s here, a few under sanitizers; quadratic code takes hours. */
  assert_true(seconds < 60);
  ir_module_free(m);
  /* A duplicate far down is still found, and the first one is reported. */
  len = 0;
  len += (size_t)snprintf(text + len, cap - len, "model dup {\n  input %%v0 : f32[?, 4]\n");
  for (int i = 1; i < N; i++)
    len += (size_t)snprintf(text + len, cap - len, "  %%v%d = relu %%v%d\n", i, i - 1);
  len += (size_t)snprintf(text + len, cap - len, "  %%v77 = relu %%v0\n  %%v5 = relu %%v0\n");
  snprintf(text + len, cap - len, "  output %%v%d\n}\n", N - 1);
  m = fe_parse(path_in_dir("dup.ir"), text);
  assert_true(m->diag.failed);
  char want[128];
  snprintf(want, sizeof want, "dup.ir:%d:3: error: value %%v77 is already defined at line 79",
           N + 2);
  assert_non_null(strstr(m->diag.msg, want));
  ir_module_free(m);
  free(text);
}

/* Out of memory is an error the caller gets, never an abort. With
 * Q8_TEST_ARENA_LIMIT=N every arena refuses to hand out more than N bytes:
 * a failed ir_alloc jumps back to the q8c_* entry point (the recovery point
 * of ir/arena.c), a failed ir_alloc_data is reported by its caller, and both
 * come out as Q8C_ERR_NOMEM with "out of memory" in the module's message.
 * The module stays usable for what a failed module allows (its error, free),
 * and the sanitizer build checks that the jump leaks nothing. A sweep of
 * limits runs out at many points of the parser and the passes.
 *
 * Not in the sweep: q8c_compile. It returns Q8C_ERR_NOMEM too, but a jump
 * out of codegen's arena allocations leaves the LLVM objects of that compile
 * behind (libLLVM's memory, not the arena's), which the sanitizer build
 * rightly reports; codegen must allocate from the arena before it creates
 * LLVM objects, or set its own recovery point, before it can be swept. */
static void test_out_of_memory(void **state) {
  (void)state;
  write_weights();
  const char *text = "model m {\n"
                     "  weights \"weights.safetensors\"\n"
                     "  input %x : f32[?, 8]\n"
                     "  %h = linear %x, @w, @b\n"
                     "  %y = relu %h\n"
                     "  output %y\n"
                     "}\n";
  const char *path = path_in_dir("model.ir");
  char want[512];

  /* No memory at all: the parse's first allocation jumps back. */
  setenv("Q8_TEST_ARENA_LIMIT", "0", 1);
  q8c_module *m = NULL;
  assert_int_equal(q8c_parse_string(path, text, &m), Q8C_ERR_NOMEM);
  assert_non_null(m);
  snprintf(want, sizeof want, "%s: error: out of memory", path);
  assert_string_equal(q8c_module_error(m), want);
  assert_int_equal(q8c_num_inputs(m), -1);
  assert_null(q8c_input_name(m, 0));
  assert_int_equal(q8c_quantize(m, NULL), Q8C_ERR_NOMEM); /* its first error */
  q8c_module_free(m);

  /* More and more memory, until the whole job succeeds. */
  enum { PARSE, QUANTIZE, RUN, NSTEPS };
  int nomem[NSTEPS] = {0}, jumps = 0;
  bool done = false;
  for (int limit = 256; !done && limit < (1 << 20); limit += 256) {
    char v[32];
    snprintf(v, sizeof v, "%d", limit);
    setenv("Q8_TEST_ARENA_LIMIT", v, 1);
    m = NULL;
    q8c_quant_options qo = {.dynamic = 1};
    float x[16] = {0}, y[8];
    const float *in[1] = {x};
    float *out[1] = {y};
    int step = PARSE;
    q8c_status s = q8c_parse_string(path, text, &m);
    if (s == Q8C_OK && ++step)
      s = q8c_quantize(m, &qo);
    if (s == Q8C_OK && ++step)
      s = q8c_run_reference(m, 2, 1, in, 1, out);
    assert_non_null(m);
    if (s == Q8C_OK) {
      done = true;
    } else {
      if (s != Q8C_ERR_NOMEM)
        fail_msg("limit %d, step %d: %s: %s", limit, step, q8c_status_name(s),
                 q8c_module_error(m));
      assert_non_null(strstr(q8c_module_error(m), "out of memory"));
      nomem[step]++;
      /* Exactly this message: from the jump, not from a caller of
       * ir_alloc_data. */
      jumps += strcmp(strstr(q8c_module_error(m), "error: "), "error: out of memory") == 0;
    }
    q8c_module_free(m);
  }
  unsetenv("Q8_TEST_ARENA_LIMIT");
  print_message("out of memory while parsing %d times, quantizing %d, running %d (%d jumps)\n",
                nomem[PARSE], nomem[QUANTIZE], nomem[RUN], jumps);
  assert_true(done);
  assert_true(nomem[PARSE] > 0);
  assert_true(nomem[QUANTIZE] > 0);
  assert_true(jumps > 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_teardown(test_cap_setting, reset_env),
      cmocka_unit_test_teardown(test_parser_types, reset_env),
      cmocka_unit_test_teardown(test_interpreter_batch, reset_env),
      cmocka_unit_test_teardown(test_safetensors_cap, reset_env),
      cmocka_unit_test_teardown(test_npy_cap, reset_env),
      cmocka_unit_test_teardown(test_calibration_batch, reset_env),
      cmocka_unit_test_teardown(test_compile_scratch, reset_env),
      cmocka_unit_test(test_many_nodes),
      cmocka_unit_test(test_out_of_memory),
  };
  return cmocka_run_group_tests(tests, make_dir, remove_dir);
}
