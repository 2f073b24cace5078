/* test_misuse.c: the compiler API (q8c.h) used wrongly gives an error and a
 * message, never a crash; and NaN and Inf inputs have the defined result,
 * the same bits from compiled code and from the interpreter.
 *
 * The runtime API's misuse (NULL arguments, files that are not models,
 * truncated libraries, another model ABI, bad settings) is covered by
 * test_runtime.c; NaN/Inf through a compiled .so by tests/py/test_degenerate.py.
 * Here: every q8c_* entry point with NULL or out-of-range arguments, a
 * module used after it failed, q8c_run_reference on a module whose inputs or
 * outputs are not f32, and NaN/+-Inf/huge inputs through the JIT. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "frontend/frontend.h"
#include "q8c.h"

static char dir[64], model_path[128];

/* A module from text that must parse. */
static q8c_module *parse_ok(const char *name, const char *text) {
  q8c_module *m = NULL;
  assert_int_equal(q8c_parse_string(name, text, &m), Q8C_OK);
  assert_non_null(m);
  return m;
}

static const char *first_error_line(const q8c_module *m, char *buf, size_t size) {
  const char *e = q8c_module_error(m);
  if (!e)
    return "(no error)";
  const char *p = strstr(e, "error: ");
  p = p ? p + 7 : e;
  snprintf(buf, size, "%.*s", (int)strcspn(p, "\n"), p);
  return buf;
}

static void test_null_arguments(void **state) {
  (void)state;
  int64_t dims[Q8C_MAX_RANK];
  char *text = (char *)"unset";
  q8rt_model *rt = (q8rt_model *)&rt;
  q8c_module *m = NULL;
  /* A NULL path or text: a module that holds the message. */
  assert_int_equal(q8c_parse_file(NULL, &m), Q8C_ERR_ARG);
  assert_string_equal(q8c_module_error(m), "q8c_parse_file: path is NULL");
  assert_int_equal(q8c_num_inputs(m), -1);
  assert_int_equal(q8c_quantize(m, NULL), Q8C_ERR_ARG); /* its first error */
  q8c_module_free(m);
  assert_int_equal(q8c_parse_string("x.ir", NULL, &m), Q8C_ERR_ARG);
  assert_string_equal(q8c_module_error(m), "q8c_parse_string: text is NULL");
  q8c_module_free(m);
  assert_int_equal(q8c_parse_string("x.ir", "model m {}", NULL), Q8C_ERR_ARG);
  assert_int_equal(q8c_parse_file("x.ir", NULL), Q8C_ERR_ARG);
  /* A NULL module: the same answers as q8rt.h gives for a NULL model. */
  assert_string_equal(q8c_module_error(NULL), "no module");
  assert_int_equal(q8c_module_print(NULL, &text), Q8C_ERR_ARG);
  assert_null(text);
  assert_int_equal(q8c_num_inputs(NULL), -1);
  assert_int_equal(q8c_num_outputs(NULL), -1);
  assert_int_equal(q8c_num_inputs(NULL), q8rt_num_inputs(NULL));
  assert_int_equal(q8c_num_outputs(NULL), q8rt_num_outputs(NULL));
  assert_null(q8c_input_name(NULL, 0));
  assert_null(q8c_output_name(NULL, 0));
  assert_int_equal(q8c_input_shape(NULL, 0, 1, dims), -1);
  assert_int_equal(q8c_output_shape(NULL, 0, 1, dims), -1);
  assert_int_equal(q8c_run_reference(NULL, 1, 0, NULL, 0, NULL), Q8C_ERR_ARG);
  assert_int_equal(q8c_quantize(NULL, NULL), Q8C_ERR_ARG);
  assert_int_equal(q8c_compile(NULL, NULL, &rt), Q8C_ERR_ARG);
  assert_null(rt);
  q8c_module_free(NULL);

  /* q8rt_tensor_numel takes any descriptor, not only a checked model's. */
  q8_tensor_desc t = {"t", Q8_DTYPE_F32, 3, {1LL << 40, 1LL << 30, 1}, Q8_DTYPE_F32, 0, 0, 0};
  assert_int_equal(q8rt_tensor_numel(&t), -1);
  t.dims[1] = -2;
  assert_int_equal(q8rt_tensor_numel(&t), -1);
  t.dims[1] = 0;
  assert_int_equal(q8rt_tensor_numel(&t), 0);
  t.rank = 9;
  assert_int_equal(q8rt_tensor_numel(&t), -1);

  /* A NULL name is allowed (it is only used in messages). */
  m = parse_ok(NULL, "model m {\n input %x : f32[?, 4]\n %y = relu %x\n output %y\n}\n");
  assert_null(q8c_module_error(m));
  assert_null(q8c_input_name(m, -1));
  assert_null(q8c_input_name(m, 1));
  assert_null(q8c_output_name(m, 1));
  assert_int_equal(q8c_input_shape(m, 1, 1, dims), -1);
  assert_int_equal(q8c_input_shape(m, 0, 1, NULL), -1);
  assert_int_equal(q8c_output_shape(m, -1, 1, dims), -1);
  assert_int_equal(q8c_input_shape(m, 0, 5, dims), 2);
  assert_int_equal(dims[0], 5);
  assert_int_equal(q8c_module_print(m, NULL), Q8C_ERR_ARG);
  assert_string_equal(q8c_module_error(m), "<string>: error: q8c_module_print: text is NULL");
  q8c_module_free(m);
  m = parse_ok(NULL, "model m {\n input %x : f32[?, 4]\n %y = relu %x\n output %y\n}\n");
  assert_int_equal(q8c_compile(m, NULL, NULL), Q8C_ERR_ARG);
  assert_string_equal(q8c_module_error(m), "<string>: error: q8c_compile: out is NULL");
  q8c_module_free(m);
}

/* The status names, and the versions: the library's is this header's (they
 * are built together), and the ABI it writes the one the runtime loads. */
static void test_status_names_and_versions(void **state) {
  (void)state;
  assert_string_equal(q8c_status_name(Q8C_OK), "Q8C_OK");
  assert_string_equal(q8c_status_name(Q8C_ERR_ARG), "Q8C_ERR_ARG");
  assert_string_equal(q8c_status_name(Q8C_ERR_MODEL), "Q8C_ERR_MODEL");
  assert_string_equal(q8c_status_name(Q8C_ERR_SHAPE), "Q8C_ERR_SHAPE");
  assert_string_equal(q8c_status_name(Q8C_ERR_COMPILE), "Q8C_ERR_COMPILE");
  assert_string_equal(q8c_status_name(Q8C_ERR_NOMEM), "Q8C_ERR_NOMEM");
  assert_string_equal(q8c_status_name((q8c_status)42), "Q8C_ERR_?");
  assert_int_equal(q8c_version(), Q8_VERSION_NUMBER);
  assert_int_equal(q8c_version(), q8rt_version());
  assert_string_equal(q8c_version_string(), q8rt_version_string());
  assert_int_equal(q8c_model_abi_version(), Q8_MODEL_ABI_VERSION);
  assert_int_equal(q8c_model_abi_version(), q8rt_model_abi_version());
}

/* q8c_run_reference checks its arrays before it runs anything. */
static void test_run_reference_arguments(void **state) {
  (void)state;
  char buf[512];
  const char *text = "model m {\n input %x : f32[?, 4]\n %y = relu %x\n output %y\n}\n";
  float x[8] = {-1, 2, -3, 4, 5, -6, 7, -8}, y[8];
  const float *in[1] = {x}, *in_null[1] = {NULL};
  float *out[1] = {y}, *out_null[1] = {NULL};
  struct {
    int64_t batch;
    int nin;
    const float *const *in;
    int nout;
    float *const *out;
    q8c_status status;
    const char *want;
  } cases[] = {
      {2, 1, NULL, 1, out, Q8C_ERR_ARG, "q8c_run_reference: no buffer for input 0 (%x)"},
      {2, 1, in_null, 1, out, Q8C_ERR_ARG, "q8c_run_reference: no buffer for input 0 (%x)"},
      {2, 1, in, 1, NULL, Q8C_ERR_ARG, "q8c_run_reference: no buffer for output 0 (%y)"},
      {2, 1, in, 1, out_null, Q8C_ERR_ARG, "q8c_run_reference: no buffer for output 0 (%y)"},
      {0, 1, in, 1, out, Q8C_ERR_ARG, "q8c_run_reference: the batch size is 0"},
      {-3, 1, in, 1, out, Q8C_ERR_ARG, "q8c_run_reference: the batch size is -3"},
      /* Arrays of another length: refused before they are read. */
      {2, 0, NULL, 1, out, Q8C_ERR_SHAPE, "q8c_run_reference: 0 inputs given, the module has 1"},
      {2, 2, in, 1, out, Q8C_ERR_SHAPE, "q8c_run_reference: 2 inputs given, the module has 1"},
      {2, 1, in, 3, out, Q8C_ERR_SHAPE, "q8c_run_reference: 3 outputs given, the module has 1"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    q8c_module *m = parse_ok(model_path, text);
    assert_int_equal(q8c_run_reference(m, cases[i].batch, cases[i].nin, cases[i].in,
                                       cases[i].nout, cases[i].out),
                     cases[i].status);
    assert_string_equal(first_error_line(m, buf, sizeof buf), cases[i].want);
    /* A module keeps its first error: everything after it refuses, with
     * that error's status. */
    assert_int_equal(q8c_run_reference(m, 2, 1, in, 1, out), cases[i].status);
    assert_int_equal(q8c_quantize(m, NULL), cases[i].status);
    q8rt_model *rt = (q8rt_model *)&rt;
    assert_int_equal(q8c_compile(m, NULL, &rt), cases[i].status);
    assert_null(rt);
    char *printed = (char *)"unset";
    assert_int_equal(q8c_module_print(m, &printed), cases[i].status);
    assert_null(printed);
    q8c_module_free(m);
  }
  q8c_module *m = parse_ok(model_path, text);
  assert_int_equal(q8c_run_reference(m, 2, 1, in, 1, out), Q8C_OK);
  for (int i = 0; i < 8; i++)
    assert_true(y[i] == (x[i] > 0 ? x[i] : 0));
  q8c_module_free(m);

  /* Integer inputs or outputs (a quantized IR read back) do not fit the
   * float arrays: refused, not read or written past their ends. */
  const char *u8_out = "model q {\n input %x : f32[?, 4]\n"
                       " %y : u8[?, 4] = quantize %x {scale = 0.5, zero_point = 3, dtype = u8}\n"
                       " output %y\n}\n";
  m = parse_ok(model_path, u8_out);
  assert_null(q8c_module_error(m));
  assert_int_equal(q8c_run_reference(m, 2, 1, in, 1, out), Q8C_ERR_ARG);
  assert_string_equal(first_error_line(m, buf, sizeof buf),
                      "q8c_run_reference: output %y is u8; it runs models with f32 inputs and "
                      "outputs");
  q8c_module_free(m);
  const char *i8_in = "model q {\n input %x : i8[?, 4]\n"
                      " %y : f32[?, 4] = dequantize %x {scale = 0.5, zero_point = 0}\n"
                      " output %y\n}\n";
  m = parse_ok(model_path, i8_in);
  assert_null(q8c_module_error(m));
  assert_int_equal(q8c_run_reference(m, 2, 1, in, 1, out), Q8C_ERR_ARG);
  assert_string_equal(first_error_line(m, buf, sizeof buf),
                      "q8c_run_reference: input %x is i8; it runs models with f32 inputs and "
                      "outputs");
  q8c_module_free(m);
}

static void test_bad_options(void **state) {
  (void)state;
  char buf[512];
  const char *text = "model m {\n weights \"w.safetensors\"\n input %x : f32[?, 8]\n"
                     " %y = linear %x, @w, @b\n output %y\n}\n";
  static const struct {
    q8c_quant_options o;
    q8c_status status;
    const char *want;
  } q[] = {
      {{.calib_method = "median"}, Q8C_ERR_ARG,
       "unknown calibration method 'median' (minmax, ma-minmax, percentile:P, entropy, mse, "
       "auto)"},
      {{.smooth = "2"}, Q8C_ERR_ARG, "--smooth takes an alpha in [0, 1], got '2'"},
      {{.smooth = "-0.5"}, Q8C_ERR_ARG, "--smooth takes an alpha in [0, 1], got '-0.5'"},
      {{.outliers = "0"}, Q8C_ERR_ARG, "--outliers takes a threshold > 0, got '0'"},
      {{.target_sqnr = "abc"}, Q8C_ERR_ARG, "--target-sqnr needs a number of dB, got 'abc'"},
      {{.max_top1_drop = "200"}, Q8C_ERR_ARG,
       "--max-top1-drop needs a percentage in [0, 100], got '200'"},
      {{.target_sqnr = "40", .dynamic = 1}, Q8C_ERR_MODEL,
       "--target-sqnr=40 measures the int8 model on calibration samples: give --calib FILE"},
      {{.weights = "s4"}, Q8C_ERR_ARG,
       "--weights: unknown weight format 's4' (s8-per-channel, s8-per-tensor, s4-per-group:G, "
       "u4-per-group:G, s8-per-group:G, nf4:G, fp4:G)"},
      {{.weights_for = "@w:s4-per-group:24"}, Q8C_ERR_ARG,
       "--weights-for @w: weight format 's4-per-group:24' needs a group size: s4-per-group:32, "
       ":64 or :128"},
      {{.activations = "u16"}, Q8C_ERR_ARG, "--activations takes u8-asym or s8-sym, not 'u16'"},
      {{.keep_float = "nope", .dynamic = 1}, Q8C_ERR_MODEL,
       "--keep-float: the model has no value %nope and no weight @nope"},
      {{.calib_path = "/nonexistent/samples.npy"}, Q8C_ERR_MODEL,
       "/nonexistent/samples.npy: cannot open '/nonexistent/samples.npy': No such file or "
       "directory"},
      {{0}, Q8C_ERR_MODEL,
       "2 activations need a range to be quantized, starting with %x: give calibration "
       "samples (--calib FILE), write {range = [min, max]} on them, or use --dynamic"},
  };
  for (size_t i = 0; i < sizeof q / sizeof q[0]; i++) {
    q8c_module *m = parse_ok(model_path, text);
    assert_null(q8c_module_error(m));
    assert_int_equal(q8c_quantize(m, &q[i].o), q[i].status);
    assert_string_equal(first_error_line(m, buf, sizeof buf), q[i].want);
    q8c_module_free(m);
  }
  /* outliers "" is the default threshold, and implies dynamic. */
  q8c_module *m = parse_ok(model_path, text);
  q8c_quant_options outl = {.outliers = ""};
  assert_int_equal(q8c_quantize(m, &outl), Q8C_OK);
  q8c_module_free(m);
  m = parse_ok(model_path, text);
  q8c_quant_options dyn = {.dynamic = 1};
  assert_int_equal(q8c_quantize(m, &dyn), Q8C_OK);
  /* Quantizing twice finds nothing left to quantize. */
  assert_int_equal(q8c_quantize(m, &dyn), Q8C_OK);
  q8c_compile_options bad = {.target = "avx9000"};
  q8rt_model *rt = (q8rt_model *)&rt;
  assert_int_equal(q8c_compile(m, &bad, &rt), Q8C_ERR_ARG);
  assert_null(rt);
  assert_non_null(strstr(first_error_line(m, buf, sizeof buf), "target: unknown target 'avx9000'"));
  q8c_module_free(m);
  /* Out-of-range numbers are taken to the nearest meaningful value. */
  m = parse_ok(model_path, text);
  assert_int_equal(q8c_quantize(m, &dyn), Q8C_OK);
  q8c_compile_options odd = {.opt_level = 99, .batch = -5, .target = "generic"};
  assert_int_equal(q8c_compile(m, &odd, &rt), Q8C_OK);
  assert_non_null(rt);
  assert_int_equal(q8rt_input(rt, 0)->dims[0], 1);
  q8rt_free(rt);
  q8c_module_free(m);
}

/* q8c_compile binds `?`: afterwards the module runs, and compiles, only with
 * that batch size; another would make q8c_run_reference read and write
 * buffers sized for it with the bound shapes (a heap overflow, before). */
static void test_compiled_batch(void **state) {
  (void)state;
  char buf[512];
  const char *text = "model m {\n weights \"w.safetensors\"\n input %x : f32[?, 8]\n"
                     " %y = linear %x, @w, @b\n output %y\n}\n";
  float x[4 * 8] = {0}, y[4 * 4];
  const float *in[1] = {x};
  float *out[1] = {y};
  for (int again = 0; again < 2; again++) {
    q8c_module *m = parse_ok(model_path, text);
    q8c_quant_options dyn = {.dynamic = 1};
    assert_int_equal(q8c_quantize(m, &dyn), Q8C_OK);
    q8c_compile_options co = {.batch = 4, .target = "generic"};
    q8rt_model *rt;
    assert_int_equal(q8c_compile(m, &co, &rt), Q8C_OK);
    assert_non_null(rt);
    q8rt_free(rt);
    assert_int_equal(q8c_run_reference(m, 4, 1, in, 1, out), Q8C_OK);
    if (again) {
      co.batch = 2;
      assert_int_equal(q8c_compile(m, &co, &rt), Q8C_ERR_SHAPE);
      assert_null(rt);
      assert_string_equal(first_error_line(m, buf, sizeof buf),
                          "q8c_compile: the module was compiled for the batch size 4 already "
                          "(compiling binds '?'), not 2");
    } else {
      assert_int_equal(q8c_run_reference(m, 1, 1, in, 1, out), Q8C_ERR_SHAPE);
      assert_string_equal(first_error_line(m, buf, sizeof buf),
                          "q8c_run_reference: the module was compiled for the batch size 4 "
                          "(compiling binds '?'), not 1");
    }
    q8c_module_free(m);
  }
  /* A model without `?` has nothing to bind: any batch runs it. */
  q8c_module *m = parse_ok(model_path, "model m {\n input %x : f32[2, 4]\n"
                                       " %y = relu %x\n output %y\n}\n");
  q8c_compile_options co = {.batch = 4, .target = "generic"};
  q8rt_model *rt;
  assert_int_equal(q8c_compile(m, &co, &rt), Q8C_OK);
  assert_non_null(rt);
  q8rt_free(rt);
  assert_int_equal(q8c_run_reference(m, 3, 1, in, 1, out), Q8C_OK);
  q8c_module_free(m);
}

/* NaN quantizes to the zero point, as 0 does; +-Inf and values past the
 * range saturate to the ends of the integer range. The compiled model and the
 * interpreter agree bit for bit, with u8 and s8 activations and with
 * dynamic quantization. */
static void test_nan_inf_inputs(void **state) {
  (void)state;
  const char *text = "model m {\n weights \"w.safetensors\"\n"
                     " input %x : f32[?, 8] {range = [-4, 4]}\n"
                     " %h = linear %x, @w, @b {range = [-20, 20]}\n"
                     " %a = relu %h {range = [0, 20]}\n"
                     " %y = matmul %a, @m {range = [-50, 50]}\n"
                     " output %y\n}\n";
  enum { B = 6 };
  float x[B][8];
  for (int r = 0; r < B; r++)
    for (int c = 0; c < 8; c++)
      x[r][c] = (float)((r * 8 + c) % 7) - 3.0f;
  for (int c = 0; c < 8; c++) {
    x[0][c] = NAN; /* a row of NaN */
    x[1][c] = 0;   /* ... is the row of zeros */
    x[2][c] = c % 2 ? INFINITY : -INFINITY;
    x[3][c] = c % 2 ? 1000.0f : -1000.0f; /* ... is any value past the range */
    x[4][c] = c % 2 ? 3e38f : -3e38f;
  }
  x[5][3] = NAN;
  static const q8c_quant_options opts[] = {{0}, {.activations = "s8-sym"}, {.dynamic = 1}};
  for (size_t o = 0; o < sizeof opts / sizeof opts[0]; o++) {
    q8c_module *m = parse_ok(model_path, text);
    assert_null(q8c_module_error(m));
    assert_int_equal(q8c_quantize(m, &opts[o]), Q8C_OK);
    q8c_compile_options co = {.batch = B};
    q8rt_model *rt;
    assert_int_equal(q8c_compile(m, &co, &rt), Q8C_OK);
    assert_non_null(rt);
    float y[B][4], ref[B][4];
    const void *in[1] = {x};
    void *out[1] = {y};
    char err[256];
    assert_int_equal(q8rt_run(rt, 1, in, 1, out, err, sizeof err), Q8RT_OK);
    const float *rin[1] = {&x[0][0]};
    float *rout[1] = {&ref[0][0]};
    assert_int_equal(q8c_run_reference(m, B, 1, rin, 1, rout), Q8C_OK);
    assert_memory_equal(y, ref, sizeof y);
    if (!opts[o].dynamic) {
      /* Static quantization: NaN is the zero point, Inf the range's end. */
      assert_memory_equal(y[0], y[1], sizeof y[0]);
      assert_memory_equal(y[2], y[3], sizeof y[2]);
      assert_memory_equal(y[4], y[3], sizeof y[4]);
    }
    q8rt_free(rt);
    q8c_module_free(m);
  }
}

/* Ranges and weights so large that x_scale * w_scale overflows f32: refused
 * when folding, not compiled into a model whose outputs are inf and NaN
 * (and whose NaN signs compiled code and the interpreter disagree on). */
static void test_overflowing_multiplier(void **state) {
  (void)state;
  char buf[512];
  const char *text = "model m {\n weights \"big.safetensors\"\n"
                     " input %x : f32[?, 4] {range = [-1, 3e38]}\n"
                     " %y = linear %x, @w {range = [-1, 1]}\n output %y\n}\n";
  q8c_module *m = parse_ok(model_path, text);
  assert_null(q8c_module_error(m));
  assert_int_equal(q8c_quantize(m, NULL), Q8C_ERR_MODEL);
  assert_string_equal(first_error_line(m, buf, sizeof buf),
                      "fold-constants: %y: output channel 0 cannot be quantized: its multiplier "
                      "x_scale * w_scale is inf (x_scale 1.17647e+36, w_scale "
                      "7.87402e+17); the activation range or the weights are too large");
  q8c_module_free(m);
}

static int setup(void **state) {
  (void)state;
  snprintf(dir, sizeof dir, "/tmp/q8_misuse_XXXXXX");
  if (!mkdtemp(dir))
    return -1;
  snprintf(model_path, sizeof model_path, "%s/model.ir", dir);
  static float w[4 * 8], b[4], mm[4 * 4];
  for (int i = 0; i < 32; i++)
    w[i] = (float)((i * 5) % 9) / 4.0f - 1.0f;
  for (int i = 0; i < 4; i++)
    b[i] = (float)i - 1.5f;
  for (int i = 0; i < 16; i++)
    mm[i] = (float)((i * 3) % 7) / 3.0f - 1.0f;
  FeTensor ts[3] = {{"w", {IR_F32, 2, {4, 8}}, w, sizeof w},
                    {"b", {IR_F32, 1, {4}}, b, sizeof b},
                    {"m", {IR_F32, 2, {4, 4}}, mm, sizeof mm}};
  char path[160], err[256];
  snprintf(path, sizeof path, "%s/w.safetensors", dir);
  if (!fe_safetensors_write(path, ts, 3, err, sizeof err))
    return -1;
  static float big[2 * 4] = {1e20f, -1e20f, 1, 0, 1e20f, 2, 3, 4};
  FeTensor tb = {"w", {IR_F32, 2, {2, 4}}, big, sizeof big};
  snprintf(path, sizeof path, "%s/big.safetensors", dir);
  return fe_safetensors_write(path, &tb, 1, err, sizeof err) ? 0 : -1;
}

static int teardown(void **state) {
  (void)state;
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  return system(cmd) == 0 ? 0 : -1;
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_null_arguments),
      cmocka_unit_test(test_status_names_and_versions),
      cmocka_unit_test(test_run_reference_arguments),
      cmocka_unit_test(test_bad_options),
      cmocka_unit_test(test_compiled_batch),
      cmocka_unit_test(test_nan_inf_inputs),
      cmocka_unit_test(test_overflowing_multiplier),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
