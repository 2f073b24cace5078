/* test_rtshape.c: a run-time batch through the library API: examples/mlp
 * quantized with q8c_quantize, compiled once by the JIT with
 * Q8C_BATCH_RUNTIME, run by q8rt_run_dims at batch 1, 7 and 397: each
 * output byte-identical to q8c_run_reference at that batch (the module is
 * left unbound, so the reference runs any batch) and each row to the batch-1
 * run of that row; q8rt_run runs it at batch 1; the descriptor marks the
 * batch dims; the run call's errors (zero batch, above max_batch, a wrong
 * inner dim, batches that disagree) with their exact messages; a
 * fixed-shape compile refuses another batch. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "q8c.h"
#include "q8rt.h"

enum { K = 64, N = 10, MAXB = 397 };

static void example(char *path, size_t size, const char *file) {
  const char *data = getenv("Q8_TEST_DATA");
  snprintf(path, size, "%s/../../examples/mlp/%s", data ? data : "tests/data", file);
}

static q8c_module *quantized_mlp(void) {
  char ir[512], calib[512];
  example(ir, sizeof ir, "mlp.ir");
  example(calib, sizeof calib, "calib.npy");
  q8c_module *m = NULL;
  assert_int_equal(q8c_parse_file(ir, &m), Q8C_OK);
  q8c_quant_options qo = {.calib_path = calib};
  assert_int_equal(q8c_quantize(m, &qo), Q8C_OK);
  return m;
}

static float *inputs(void) {
  float *x = malloc(sizeof(float) * MAXB * K);
  uint32_t s = 12345;
  for (int i = 0; i < MAXB * K; i++) {
    s = s * 1664525u + 1013904223u;
    x[i] = ((float)(s >> 8) / (float)(1u << 24) - 0.5f) * 6.0f;
  }
  return x;
}

static q8rt_status run_at(q8rt_model *rt, const float *x, int64_t batch, int64_t k, float *y,
                          char *err) {
  int64_t dims[2] = {batch, k};
  const int64_t *dp[1] = {dims};
  const void *in[1] = {x};
  void *out[1] = {y};
  return q8rt_run_dims(rt, 1, in, dp, 1, out, err, 256);
}

static void test_one_library_every_batch(void **state) {
  (void)state;
  q8c_module *m = quantized_mlp();
  q8c_compile_options co = {.target = "avx2,generic", .batch = Q8C_BATCH_RUNTIME};
  q8rt_model *rt = NULL;
  assert_int_equal(q8c_compile(m, &co, &rt), Q8C_OK);
  assert_int_equal(q8rt_max_batch(rt), INT64_MAX);
  const q8_tensor_desc *xd = q8rt_input(rt, 0), *yd = q8rt_output(rt, 0);
  assert_int_equal(xd->batch_dims, 1);
  assert_int_equal(yd->batch_dims, 1);
  int64_t dims[8];
  assert_int_equal(q8rt_tensor_dims(yd, 397, dims), 2);
  assert_int_equal(dims[0], 397);
  assert_int_equal(dims[1], N);

  float *x = inputs(), *y = malloc(sizeof(float) * MAXB * N);
  float *ref = malloc(sizeof(float) * MAXB * N), row[N];
  char err[256];
  static const int64_t batches[] = {1, 7, 397};
  for (size_t b = 0; b < sizeof batches / sizeof batches[0]; b++) {
    int64_t nb = batches[b];
    assert_int_equal(run_at(rt, x, nb, K, y, err), Q8RT_OK);
    const float *rin[1] = {x};
    float *rout[1] = {ref};
    assert_int_equal(q8c_run_reference(m, nb, 1, rin, 1, rout), Q8C_OK);
    assert_memory_equal(y, ref, sizeof(float) * (size_t)(nb * N));
  }
  /* Row by row: each row of the batch-397 run (still in y) is the batch-1
   * run of that row. */
  for (int r = 0; r < MAXB; r += 33) {
    assert_int_equal(run_at(rt, x + r * K, 1, K, row, err), Q8RT_OK);
    assert_memory_equal(row, y + r * N, sizeof row);
  }
  /* q8rt_run: batch 1, the shapes q8rt_input gives. */
  const void *in[1] = {x};
  void *out[1] = {row};
  assert_int_equal(q8rt_run(rt, 1, in, 1, out, err, sizeof err), Q8RT_OK);
  assert_memory_equal(row, y, sizeof row);

  /* The run call's errors. */
  assert_int_equal(run_at(rt, x, 0, K, y, err), Q8RT_ERR_SHAPE);
  assert_string_equal(err, "q8rt_run_dims: input 'x' is [0, 64]: the batch must be at least 1");
  assert_int_equal(run_at(rt, x, 3, K + 1, y, err), Q8RT_ERR_SHAPE);
  assert_string_equal(err, "q8rt_run_dims: input 'x' is [3, 65] but the model takes [?, 64]");
  q8rt_free(rt);

  /* max_batch. */
  co.max_batch = 8;
  assert_int_equal(q8c_compile(m, &co, &rt), Q8C_OK);
  assert_int_equal(q8rt_max_batch(rt), 8);
  assert_int_equal(run_at(rt, x, 8, K, y, err), Q8RT_OK);
  assert_memory_equal(y, ref, sizeof(float) * 8 * N);
  assert_int_equal(run_at(rt, x, 9, K, y, err), Q8RT_ERR_SHAPE);
  assert_string_equal(err, "q8rt_run_dims: input 'x' is [9, 64]: batch 9 is above the model's "
                           "maximum 8 (--max-batch)");
  q8rt_free(rt);

  /* A fixed-shape compile (batch 7) takes only its own shapes. */
  co = (q8c_compile_options){.target = "avx2", .batch = 7};
  assert_int_equal(q8c_compile(m, &co, &rt), Q8C_OK);
  assert_int_equal(q8rt_max_batch(rt), 0);
  assert_int_equal(run_at(rt, x, 7, K, y, err), Q8RT_OK);
  assert_memory_equal(y, ref, sizeof(float) * 7 * N);
  assert_int_equal(run_at(rt, x, 4, K, y, err), Q8RT_ERR_SHAPE);
  assert_string_equal(err, "q8rt_run_dims: input 'x' is [4, 64] but the model takes [7, 64]");
  q8rt_free(rt);
  free(x);
  free(y);
  free(ref);
  q8c_module_free(m);
}

/* Two inputs whose batches disagree. */
static void test_batches_disagree(void **state) {
  (void)state;
  q8c_module *m = NULL;
  assert_int_equal(q8c_parse_string("two.ir",
                                    "model two {\n input %a : f32[?, 4]\n input %b : f32[?, 4]\n"
                                    " %y = add %a, %b\n output %y\n}\n",
                                    &m),
                   Q8C_OK);
  q8c_compile_options co = {.batch = Q8C_BATCH_RUNTIME};
  q8rt_model *rt = NULL;
  assert_int_equal(q8c_compile(m, &co, &rt), Q8C_OK);
  float a[12] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}, b[12] = {0}, y[12];
  for (int i = 0; i < 12; i++)
    b[i] = (float)(i * 10);
  int64_t da[2] = {3, 4}, db[2] = {2, 4};
  const int64_t *dims[2] = {da, db};
  const void *in[2] = {a, b};
  void *out[1] = {y};
  char err[256];
  assert_int_equal(q8rt_run_dims(rt, 2, in, dims, 1, out, err, sizeof err), Q8RT_ERR_SHAPE);
  assert_string_equal(err, "q8rt_run_dims: input 'b' has batch 2 but input 'a' has 3");
  db[0] = 3;
  assert_int_equal(q8rt_run_dims(rt, 2, in, dims, 1, out, err, sizeof err), Q8RT_OK);
  for (int i = 0; i < 12; i++)
    assert_true(y[i] == a[i] + b[i]);
  q8rt_free(rt);
  q8c_module_free(m);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_one_library_every_batch),
      cmocka_unit_test(test_batches_disagree),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
