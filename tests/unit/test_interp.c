/* test_interp.c: the f32 reference interpreter on small hand-built modules.
 *
 * Every module is built with the builder API and its result types are set by
 * hand, so these tests depend on nothing but module.c and interp.c: shape
 * inference is tested elsewhere. Expected values are worked out by hand (or,
 * for erf and exp, written to double precision), small enough to check by eye.
 * Besides each op, the tests cover broadcasting from either side, binding the
 * `?` batch dimension, the refusal of integer operands (float ops take f32
 * only; the quantized ops are in test_qinterp.c), the messages for bad inputs,
 * and the observer the calibration pass relies on. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ir/ir.h"
#include "testutil.h"

/* ---- building modules (testutil.h) ---- */

#define KONST(m, name, t, ...)                                               \
  konst_bytes(m, name, t, (float[]){__VA_ARGS__}, sizeof((float[]){__VA_ARGS__}))

/* ---- checking results ---- */

/* Exact comparison when tol is 0, else relative (with an absolute floor for
 * values near zero). NaN matches NaN. */
static void check_floats(const float *got, const float *want, int n, double tol) {
  for (int i = 0; i < n; i++) {
    bool ok = isnan(want[i]) ? isnan(got[i])
              : tol == 0     ? got[i] == want[i]
                             : fabs((double)got[i] - want[i]) <= tol * fmax(1.0, fabs(want[i]));
    if (!ok)
      fail_msg("element %d: got %.9g, want %.9g", i, got[i], want[i]);
  }
}

#define CHECK(got, tol, ...)                                                           \
  check_floats(got, (float[]){__VA_ARGS__}, (int)(sizeof((float[]){__VA_ARGS__}) / sizeof(float)), \
               tol)

static void check_dims(const IrTensor *t, int rank, const int64_t *dims) {
  assert_int_equal(t->type.dtype, IR_F32);
  assert_int_equal(t->type.rank, rank);
  for (int i = 0; i < rank; i++)
    assert_int_equal(t->type.dims[i], dims[i]);
}

#define CHECK_DIMS(t, ...) check_dims(t, NDIMS(__VA_ARGS__), (int64_t[]){__VA_ARGS__})

/* Run a module with one output and return its data (the caller frees). */
static float *run1(IrModule *m, int64_t batch, const IrTensor *in, IrTensor *out) {
  if (!ir_interp_f32(m, batch, in, out, NULL, NULL))
    fail_msg("interp failed: %s", m->diag.msg);
  return out->data;
}

/* ---- linear and matmul ---- */

static void test_linear_bias(void **state) {
  (void)state;
  IrModule *m = ir_module_new("t");
  IrValue *x = ir_add_input(m, "x", F32(2, 3), (IrLoc){0});
  IrValue *w = KONST(m, "w", F32(2, 3), 1, 0, -1, 0.5, 0.5, 0.5);
  IrValue *b = KONST(m, "b", F32(2), 10, -1);
  ir_add_output(m, VALUE(m, LINEAR, "y", F32(2, 2), x, w, b), (IrLoc){0});
  IrTensor in = tensor(F32(2, 3), (float[]){1, 2, 3, 4, 5, 6}), out;
  float *y = run1(m, 1, &in, &out);
  CHECK_DIMS(&out, 2, 2);
  CHECK(y, 0, 8, 2, 8, 6.5);
  free(y);
  ir_module_free(m);
}

/* No bias, a rank-3 input with the batch dim first. */
static void test_linear_no_bias_batched(void **state) {
  (void)state;
  IrModule *m = ir_module_new("t");
  IrValue *x = ir_add_input(m, "x", F32(Q, 2, 2), (IrLoc){0});
  IrValue *w = KONST(m, "w", F32(1, 2), 1, 1);
  ir_add_output(m, VALUE(m, LINEAR, "y", F32(Q, 2, 1), x, w), (IrLoc){0});
  IrTensor in = tensor(F32(2, 2, 2), (float[]){1, 2, 3, 4, 5, 6, 7, 8}), out;
  float *y = run1(m, 2, &in, &out);
  CHECK_DIMS(&out, 2, 2, 1);
  CHECK(y, 0, 3, 7, 11, 15);
  free(y);
  ir_module_free(m);
}

/* Float ops take f32 only: an integer constant is not converted but refused,
 * naming the operand, and so is a float op declared to give an integer. */
static void test_integer_operands_rejected(void **state) {
  (void)state;
  IrModule *m = ir_module_new("t");
  IrValue *x = ir_add_input(m, "x", F32(1, 2), (IrLoc){0});
  IrValue *w = konst_bytes(m, "w", TYPED(IR_I8, 2, 2), (int8_t[]){1, -2, 3, 4}, 4);
  ir_add_output(m, VALUE(m, LINEAR, "h", F32(1, 2), x, w), (IrLoc){0});
  IrTensor in = tensor(F32(1, 2), (float[]){1, 1}), out = {.data = (void *)1};
  assert_false(ir_interp_f32(m, 1, &in, &out, NULL, NULL));
  assert_non_null(strstr(m->diag.msg, "linear expects f32 operands, but @w is i8[2, 2]"));
  assert_null(out.data);
  ir_module_free(m);

  m = ir_module_new("t");
  x = ir_add_input(m, "x", F32(2), (IrLoc){0});
  IrValue *b = konst_bytes(m, "b", TYPED(IR_I32, 2), (int32_t[]){100, -100}, 8);
  ir_add_output(m, VALUE(m, ADD, "y", F32(2), b, x), (IrLoc){0});
  IrTensor in2 = tensor(F32(2), (float[]){1, 1});
  assert_false(ir_interp_f32(m, 1, &in2, &out, NULL, NULL));
  assert_non_null(strstr(m->diag.msg, "add expects f32 operands, but @b is i32[2]"));
  ir_module_free(m);

  m = ir_module_new("t");
  x = ir_add_input(m, "x", F32(2), (IrLoc){0});
  ir_add_output(m, VALUE(m, RELU, "y", TYPED(IR_U8, 2), x), (IrLoc){0});
  assert_false(ir_interp_f32(m, 1, &in2, &out, NULL, NULL));
  assert_non_null(strstr(m->diag.msg, "relu gives f32, but its result %y is declared u8[2]"));
  ir_module_free(m);
}

/* B [K, N] shared by every leading index of A. */
static void test_matmul_shared(void **state) {
  (void)state;
  IrModule *m = ir_module_new("t");
  IrValue *a = ir_add_input(m, "a", F32(2, 2, 3), (IrLoc){0});
  IrValue *b = KONST(m, "b", F32(3, 2), 1, 0, 0, 1, 1, 1);
  ir_add_output(m, VALUE(m, MATMUL, "y", F32(2, 2, 2), a, b), (IrLoc){0});
  IrTensor in = tensor(F32(2, 2, 3), (float[]){1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}), out;
  float *y = run1(m, 1, &in, &out);
  CHECK_DIMS(&out, 2, 2, 2);
  CHECK(y, 0, 4, 5, 10, 11, 16, 17, 22, 23);
  free(y);
  ir_module_free(m);
}

/* Both operands are values, with the same leading dims. */
static void test_matmul_batched(void **state) {
  (void)state;
  IrModule *m = ir_module_new("t");
  IrValue *a = ir_add_input(m, "a", F32(Q, 1, 2), (IrLoc){0});
  IrValue *b = ir_add_input(m, "b", F32(Q, 2, 1), (IrLoc){0});
  ir_add_output(m, VALUE(m, MATMUL, "y", F32(Q, 1, 1), a, b), (IrLoc){0});
  IrTensor in[2] = {tensor(F32(2, 1, 2), (float[]){1, 2, 3, 4}),
                    tensor(F32(2, 2, 1), (float[]){1, 1, 2, -1})};
  IrTensor out;
  float *y = run1(m, 2, in, &out);
  CHECK_DIMS(&out, 2, 1, 1);
  CHECK(y, 0, 3, 2);
  free(y);
  ir_module_free(m);
}

/* The constant on the left. */
static void test_matmul_const_left(void **state) {
  (void)state;
  IrModule *m = ir_module_new("t");
  IrValue *a = KONST(m, "a", F32(2, 2), 1, 2, 3, 4);
  IrValue *x = ir_add_input(m, "x", F32(2, 1), (IrLoc){0});
  ir_add_output(m, VALUE(m, MATMUL, "y", F32(2, 1), a, x), (IrLoc){0});
  IrTensor in = tensor(F32(2, 1), (float[]){1, -1}), out;
  float *y = run1(m, 1, &in, &out);
  CHECK(y, 0, -1, -1);
  free(y);
  ir_module_free(m);
}

/* ---- elementwise ---- */

static void test_add_same_shape(void **state) {
  (void)state;
  IrModule *m = ir_module_new("t");
  IrValue *x = ir_add_input(m, "x", F32(2, 2), (IrLoc){0});
  IrValue *c = KONST(m, "c", F32(2, 2), 10, 20, 30, 40);
  ir_add_output(m, VALUE(m, ADD, "y", F32(2, 2), x, c), (IrLoc){0});
  IrTensor in = tensor(F32(2, 2), (float[]){1, 2, 3, 4}), out;
  float *y = run1(m, 1, &in, &out);
  CHECK(y, 0, 11, 22, 33, 44);
  free(y);
  ir_module_free(m);
}

/* The shorter operand second, then first; rank 3 against rank 2 and 1. */
static void test_add_broadcast_both_ways(void **state) {
  (void)state;
  IrModule *m = ir_module_new("t");
  IrValue *x = ir_add_input(m, "x", F32(2, 2, 2), (IrLoc){0});
  IrValue *c = KONST(m, "c", F32(2, 2), 10, 20, 30, 40);
  IrValue *v = KONST(m, "v", F32(2), 100, 200);
  IrValue *y1 = VALUE(m, ADD, "y1", F32(2, 2, 2), x, c);
  IrValue *y2 = VALUE(m, ADD, "y2", F32(2, 2, 2), v, x);
  ir_add_output(m, y1, (IrLoc){0});
  ir_add_output(m, y2, (IrLoc){0});
  IrTensor in = tensor(F32(2, 2, 2), (float[]){1, 2, 3, 4, 5, 6, 7, 8}), out[2];
  assert_true(ir_interp_f32(m, 1, &in, out, NULL, NULL));
  CHECK_DIMS(&out[0], 2, 2, 2);
  CHECK_DIMS(&out[1], 2, 2, 2);
  CHECK(out[0].data, 0, 11, 22, 33, 44, 15, 26, 37, 48);
  CHECK(out[1].data, 0, 101, 202, 103, 204, 105, 206, 107, 208);
  free(out[0].data);
  free(out[1].data);
  ir_module_free(m);
}

static void test_mul_broadcast_both_ways(void **state) {
  (void)state;
  IrModule *m = ir_module_new("t");
  IrValue *x = ir_add_input(m, "x", F32(Q, 3), (IrLoc){0});
  IrValue *s = KONST(m, "s", F32(3), 1, -2, 0.5);
  ir_add_output(m, VALUE(m, MUL, "y1", F32(Q, 3), x, s), (IrLoc){0});
  ir_add_output(m, VALUE(m, MUL, "y2", F32(Q, 3), s, x), (IrLoc){0});
  ir_add_output(m, VALUE(m, MUL, "y3", F32(Q, 3), x, x), (IrLoc){0});
  IrTensor in = tensor(F32(2, 3), (float[]){1, 2, 3, 4, 5, 6}), out[3];
  assert_true(ir_interp_f32(m, 2, &in, out, NULL, NULL));
  CHECK(out[0].data, 0, 1, -4, 1.5, 4, -10, 3);
  CHECK(out[1].data, 0, 1, -4, 1.5, 4, -10, 3);
  CHECK(out[2].data, 0, 1, 4, 9, 16, 25, 36);
  for (int i = 0; i < 3; i++)
    free(out[i].data);
  ir_module_free(m);
}

/* ---- activations and normalisation ---- */

static void test_relu(void **state) {
  (void)state;
  IrModule *m = ir_module_new("t");
  IrValue *x = ir_add_input(m, "x", F32(6), (IrLoc){0});
  ir_add_output(m, VALUE(m, RELU, "y", F32(6), x), (IrLoc){0});
  IrTensor in = tensor(F32(6), (float[]){-1.5f, 0, 2.5f, NAN, -INFINITY, INFINITY}), out;
  float *y = run1(m, 1, &in, &out);
  CHECK(y, 0, 0, 0, 2.5f, NAN, 0, INFINITY);
  free(y);
  ir_module_free(m);
}

static void test_gelu(void **state) {
  (void)state;
  IrModule *m = ir_module_new("t");
  IrValue *x = ir_add_input(m, "x", F32(6), (IrLoc){0});
  ir_add_output(m, VALUE(m, GELU, "y", F32(6), x), (IrLoc){0});
  IrTensor in = tensor(F32(6), (float[]){0, 1, -1, 2, -3, 0.5f}), out;
  float *y = run1(m, 1, &in, &out);
  /* 0.5 x (1 + erf(x / sqrt 2)), in double. */
  CHECK(y, 1e-6, 0, 0.8413447460685429, -0.15865525393145707, 1.9544997361036416,
        -0.00404969409489031, 0.34573123063700656);
  free(y);
  ir_module_free(m);
}

static void test_softmax(void **state) {
  (void)state;
  IrModule *m = ir_module_new("t");
  IrValue *x = ir_add_input(m, "x", F32(4, 2), (IrLoc){0});
  ir_add_output(m, VALUE(m, SOFTMAX, "y", F32(4, 2), x), (IrLoc){0});
  /* Row 2 overflows exp() unless the row maximum is subtracted first. */
  IrTensor in = tensor(F32(4, 2), (float[]){0, 0, 1000, 1000, 0, logf(3), -INFINITY, 0}), out;
  float *y = run1(m, 1, &in, &out);
  CHECK(y, 1e-6, 0.5, 0.5, 0.5, 0.5, 0.25, 0.75, 0, 1);
  free(y);
  ir_module_free(m);
}

static void test_layernorm_eps(void **state) {
  (void)state;
  IrModule *m = ir_module_new("t");
  IrValue *x = ir_add_input(m, "x", F32(2, 4), (IrLoc){0});
  IrValue *g = KONST(m, "g", F32(4), 1, 1, 2, 2);
  IrValue *b = KONST(m, "b", F32(4), 0, 0, 0, 1);
  IrValue *y = VALUE(m, LAYERNORM, "y", F32(2, 4), x, g, b);
  /* var([1, 2, 3, 4]) = 1.25, so eps = 0.75 makes the divisor sqrt(2). */
  ir_node_set_attr(m, y->def, IR_ATTR_EPS, (double[]){0.75}, 1, (IrLoc){0});
  ir_add_output(m, y, (IrLoc){0});
  IrTensor in = tensor(F32(2, 4), (float[]){1, 2, 3, 4, 2, 2, 2, 2}), out;
  float *r = run1(m, 1, &in, &out);
  CHECK(r, 1e-6, -1.0606601717798212, -0.35355339059327373, 0.7071067811865475,
        3.1213203435596424, 0, 0, 0, 1);
  free(r);
  ir_module_free(m);
}

static void test_layernorm_default_eps(void **state) {
  (void)state;
  IrModule *m = ir_module_new("t");
  IrValue *x = ir_add_input(m, "x", F32(1, 2), (IrLoc){0});
  IrValue *g = KONST(m, "g", F32(2), 1, 1);
  IrValue *b = KONST(m, "b", F32(2), 0, 0);
  ir_add_output(m, VALUE(m, LAYERNORM, "y", F32(1, 2), x, g, b), (IrLoc){0});
  IrTensor in = tensor(F32(1, 2), (float[]){0, 2}), out;
  float *r = run1(m, 1, &in, &out);
  /* mean 1, var 1: +-1 / sqrt(1 + 1e-5). */
  CHECK(r, 1e-7, -0.9999950000374997, 0.9999950000374997);
  free(r);
  ir_module_free(m);
}

/* ---- layout ---- */

static void test_transpose_default(void **state) {
  (void)state;
  IrModule *m = ir_module_new("t");
  IrValue *x = ir_add_input(m, "x", F32(2, 3), (IrLoc){0});
  IrValue *x3 = ir_add_input(m, "x3", F32(2, 2, 3), (IrLoc){0});
  ir_add_output(m, VALUE(m, TRANSPOSE, "y", F32(3, 2), x), (IrLoc){0});
  ir_add_output(m, VALUE(m, TRANSPOSE, "y3", F32(2, 3, 2), x3), (IrLoc){0});
  IrTensor in[2] = {tensor(F32(2, 3), (float[]){0, 1, 2, 3, 4, 5}),
                    tensor(F32(2, 2, 3), (float[]){0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11})};
  IrTensor out[2];
  assert_true(ir_interp_f32(m, 1, in, out, NULL, NULL));
  CHECK_DIMS(&out[0], 3, 2);
  CHECK(out[0].data, 0, 0, 3, 1, 4, 2, 5);
  CHECK_DIMS(&out[1], 2, 3, 2);
  CHECK(out[1].data, 0, 0, 3, 1, 4, 2, 5, 6, 9, 7, 10, 8, 11);
  free(out[0].data);
  free(out[1].data);
  ir_module_free(m);
}

/* perm = [2, 0, 1]: y[i][j][k] = x[j][k][i]. */
static void test_transpose_perm(void **state) {
  (void)state;
  IrModule *m = ir_module_new("t");
  IrValue *x = ir_add_input(m, "x", F32(2, 3, 4), (IrLoc){0});
  IrValue *y = VALUE(m, TRANSPOSE, "y", F32(4, 2, 3), x);
  ir_node_set_attr(m, y->def, IR_ATTR_PERM, (double[]){2, 0, 1}, 3, (IrLoc){0});
  ir_add_output(m, y, (IrLoc){0});
  float xs[24];
  for (int i = 0; i < 24; i++)
    xs[i] = (float)i;
  IrTensor in = tensor(F32(2, 3, 4), xs), out;
  float *r = run1(m, 1, &in, &out);
  CHECK_DIMS(&out, 4, 2, 3);
  for (int i = 0; i < 4; i++)
    for (int j = 0; j < 2; j++)
      for (int k = 0; k < 3; k++)
        assert_true(r[(i * 2 + j) * 3 + k] == xs[(j * 3 + k) * 4 + i]);
  free(r);
  ir_module_free(m);
}

static void test_reshape(void **state) {
  (void)state;
  IrModule *m = ir_module_new("t");
  IrValue *x = ir_add_input(m, "x", F32(Q, 4), (IrLoc){0});
  IrValue *y = VALUE(m, RESHAPE, "y", F32(Q, 2, 2), x);
  ir_node_set_attr(m, y->def, IR_ATTR_SHAPE, (double[]){(double)Q, 2, 2}, 3, (IrLoc){0});
  ir_add_output(m, y, (IrLoc){0});
  IrTensor in = tensor(F32(2, 4), (float[]){1, 2, 3, 4, 5, 6, 7, 8}), out;
  float *r = run1(m, 2, &in, &out);
  CHECK_DIMS(&out, 2, 2, 2);
  CHECK(r, 0, 1, 2, 3, 4, 5, 6, 7, 8);
  free(r);
  ir_module_free(m);
}

/* ---- inputs, outputs, batch ---- */

/* The same module runs at two batch sizes; outputs carry the bound dims. */
static void test_batch_binding(void **state) {
  (void)state;
  IrModule *m = ir_module_new("t");
  IrValue *x = ir_add_input(m, "x", F32(Q, 2), (IrLoc){0});
  IrValue *w = KONST(m, "w", F32(1, 2), 1, -1);
  ir_add_output(m, VALUE(m, LINEAR, "y", F32(Q, 1), x, w), (IrLoc){0});
  IrTensor out;
  IrTensor in3 = tensor(F32(3, 2), (float[]){5, 1, 1, 5, 2, 2});
  float *y = run1(m, 3, &in3, &out);
  CHECK_DIMS(&out, 3, 1);
  CHECK(y, 0, 4, -4, 0);
  free(y);
  IrTensor in1 = tensor(F32(1, 2), (float[]){7, 1});
  y = run1(m, 1, &in1, &out);
  CHECK_DIMS(&out, 1, 1);
  CHECK(y, 0, 6);
  free(y);
  ir_module_free(m);
}

/* Outputs are copies: an input, a constant and one value twice. */
static void test_outputs_are_copies(void **state) {
  (void)state;
  IrModule *m = ir_module_new("t");
  IrValue *x = ir_add_input(m, "x", F32(2), (IrLoc){0});
  IrValue *c = KONST(m, "c", F32(2), 3, 4);
  IrValue *y = VALUE(m, ADD, "y", F32(2), x, c);
  ir_add_output(m, x, (IrLoc){0});
  ir_add_output(m, c, (IrLoc){0});
  ir_add_output(m, y, (IrLoc){0});
  ir_add_output(m, y, (IrLoc){0});
  float xs[2] = {1, 2};
  IrTensor in = tensor(F32(2), xs), out[4];
  assert_true(ir_interp_f32(m, 1, &in, out, NULL, NULL));
  assert_ptr_not_equal(out[0].data, xs);
  assert_ptr_not_equal(out[2].data, out[3].data);
  CHECK(out[0].data, 0, 1, 2);
  CHECK(out[1].data, 0, 3, 4);
  CHECK(out[2].data, 0, 4, 6);
  CHECK(out[3].data, 0, 4, 6);
  for (int i = 0; i < 4; i++)
    free(out[i].data);
  ir_module_free(m);
}

/* A module `f32[?, 64] -> relu`, for the input checks. */
static IrModule *relu64(void) {
  IrModule *m = ir_module_new("t");
  IrValue *x = ir_add_input(m, "x", F32(Q, 64), (IrLoc){0});
  ir_add_output(m, VALUE(m, RELU, "y", F32(Q, 64), x), (IrLoc){0});
  return m;
}

static void test_wrong_input_shape(void **state) {
  (void)state;
  IrModule *m = relu64();
  float *data = calloc(3 * 65, sizeof(float));
  IrTensor in = tensor(F32(3, 65), data), out = {.data = (void *)1};
  assert_false(ir_interp_f32(m, 3, &in, &out, NULL, NULL));
  assert_true(m->diag.failed);
  assert_string_equal(m->diag.msg,
                      "<input>: error: input 'x' has shape [3, 65] but the model expects "
                      "f32[3, 64]");
  assert_null(out.data);
  free(data);
  ir_module_free(m);
}

/* The right dims for another batch size are still wrong. */
static void test_wrong_batch(void **state) {
  (void)state;
  IrModule *m = relu64();
  float *data = calloc(2 * 64, sizeof(float));
  IrTensor in = tensor(F32(2, 64), data), out;
  assert_false(ir_interp_f32(m, 3, &in, &out, NULL, NULL));
  assert_non_null(strstr(m->diag.msg, "input 'x' has shape [2, 64] but the model expects "
                                      "f32[3, 64]"));
  free(data);
  ir_module_free(m);
}

static void test_wrong_input_rank_and_dtype(void **state) {
  (void)state;
  IrModule *m = relu64();
  float *data = calloc(3 * 64, sizeof(float));
  IrTensor in = tensor(F32(3, 64, 1), data), out;
  assert_false(ir_interp_f32(m, 3, &in, &out, NULL, NULL));
  assert_non_null(strstr(m->diag.msg, "has shape [3, 64, 1] but the model expects f32[3, 64]"));
  ir_module_free(m);

  m = relu64();
  in = (IrTensor){TYPED(IR_I8, 3, 64), data};
  assert_false(ir_interp_f32(m, 3, &in, &out, NULL, NULL));
  assert_non_null(strstr(m->diag.msg, "input 'x' is i8[3, 64] but the model expects f32[3, 64]"));
  free(data);
  ir_module_free(m);
}

static void test_negative_batch(void **state) {
  (void)state;
  IrModule *m = relu64();
  IrTensor in = tensor(F32(1, 64), (float[64]){0}), out;
  assert_false(ir_interp_f32(m, -1, &in, &out, NULL, NULL));
  assert_non_null(strstr(m->diag.msg, "batch size -1"));
  ir_module_free(m);
}

/* ---- broken modules give messages, not crashes ---- */

static void test_uninferred_type(void **state) {
  (void)state;
  IrModule *m = ir_module_new("t");
  IrValue *x = ir_add_input(m, "x", F32(2), (IrLoc){0});
  IrValue *y = VALUE(m, RELU, "y", (IrType){0}, x);
  ir_add_output(m, y, (IrLoc){0});
  IrTensor in = tensor(F32(2), (float[]){1, 2}), out;
  assert_false(ir_interp_f32(m, 1, &in, &out, NULL, NULL));
  assert_non_null(strstr(m->diag.msg, "%y has no type"));
  ir_module_free(m);
}

static void test_inconsistent_type(void **state) {
  (void)state;
  IrModule *m = ir_module_new("t");
  IrValue *x = ir_add_input(m, "x", F32(2, 3), (IrLoc){0});
  IrValue *w = konst_bytes(m, "w", F32(4, 5), (float[20]){0}, 20 * sizeof(float));
  ir_add_output(m, VALUE(m, LINEAR, "y", F32(2, 4), x, w), (IrLoc){0});
  IrTensor in = tensor(F32(2, 3), (float[6]){0}), out;
  assert_false(ir_interp_f32(m, 1, &in, &out, NULL, NULL));
  assert_non_null(strstr(m->diag.msg, "linear: operands %x [2, 3], @w [4, 5] do not give the "
                                      "result %y [2, 4]"));
  ir_module_free(m);
}

static void test_bad_perm(void **state) {
  (void)state;
  IrModule *m = ir_module_new("t");
  IrValue *x = ir_add_input(m, "x", F32(2, 2), (IrLoc){0});
  IrValue *y = VALUE(m, TRANSPOSE, "y", F32(2, 2), x);
  ir_node_set_attr(m, y->def, IR_ATTR_PERM, (double[]){0, 0}, 2, (IrLoc){0});
  ir_add_output(m, y, (IrLoc){0});
  IrTensor in = tensor(F32(2, 2), (float[4]){0}), out;
  assert_false(ir_interp_f32(m, 1, &in, &out, NULL, NULL));
  assert_non_null(strstr(m->diag.msg, "perm must list each axis"));
  ir_module_free(m);
}

/* ---- the observer ---- */

typedef struct {
  int calls;
  const IrNode *nodes[4];
  IrType types[4];
  float vals[4][8];
} Seen;

static void record(void *user, const IrNode *node, const IrTensor *t) {
  Seen *s = user;
  assert_true(s->calls < 4);
  int64_t n;
  assert_true(ir_type_numel(&t->type, 0, &n) && n <= 8);
  s->nodes[s->calls] = node;
  s->types[s->calls] = t->type;
  memcpy(s->vals[s->calls], t->data, (size_t)n * sizeof(float));
  s->calls++;
}

/* An MLP: the observer sees each node once, in order, with its bound result. */
static void test_observer(void **state) {
  (void)state;
  IrModule *m = ir_module_new("t");
  IrValue *x = ir_add_input(m, "x", F32(Q, 2), (IrLoc){0});
  IrValue *w1 = KONST(m, "w1", F32(3, 2), 1, 0, 0, 1, 1, 1);
  IrValue *b1 = KONST(m, "b1", F32(3), 0, -5, 0);
  IrValue *w2 = KONST(m, "w2", F32(1, 3), 1, 1, -1);
  IrValue *h = VALUE(m, LINEAR, "h", F32(Q, 3), x, w1, b1);
  IrValue *a = VALUE(m, RELU, "a", F32(Q, 3), h);
  IrValue *y = VALUE(m, LINEAR, "y", F32(Q, 1), a, w2);
  ir_add_output(m, y, (IrLoc){0});
  IrTensor in = tensor(F32(2, 2), (float[]){1, 2, 3, 4}), out;
  Seen seen = {0};
  assert_true(ir_interp_f32(m, 2, &in, &out, record, &seen));
  assert_int_equal(seen.calls, 3);
  assert_ptr_equal(seen.nodes[0], h->def);
  assert_ptr_equal(seen.nodes[1], a->def);
  assert_ptr_equal(seen.nodes[2], y->def);
  assert_int_equal(seen.types[0].rank, 2);
  assert_int_equal(seen.types[0].dims[0], 2);
  assert_int_equal(seen.types[0].dims[1], 3);
  assert_int_equal(seen.types[2].dims[1], 1);
  check_floats(seen.vals[0], (float[]){1, -3, 3, 3, -1, 7}, 6, 0);
  check_floats(seen.vals[1], (float[]){1, 0, 3, 3, 0, 7}, 6, 0);
  check_floats(seen.vals[2], (float[]){-2, -4}, 2, 0);
  CHECK(out.data, 0, -2, -4);
  free(out.data);
  ir_module_free(m);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_linear_bias),
      cmocka_unit_test(test_linear_no_bias_batched),
      cmocka_unit_test(test_integer_operands_rejected),
      cmocka_unit_test(test_matmul_shared),
      cmocka_unit_test(test_matmul_batched),
      cmocka_unit_test(test_matmul_const_left),
      cmocka_unit_test(test_add_same_shape),
      cmocka_unit_test(test_add_broadcast_both_ways),
      cmocka_unit_test(test_mul_broadcast_both_ways),
      cmocka_unit_test(test_relu),
      cmocka_unit_test(test_gelu),
      cmocka_unit_test(test_softmax),
      cmocka_unit_test(test_layernorm_eps),
      cmocka_unit_test(test_layernorm_default_eps),
      cmocka_unit_test(test_transpose_default),
      cmocka_unit_test(test_transpose_perm),
      cmocka_unit_test(test_reshape),
      cmocka_unit_test(test_batch_binding),
      cmocka_unit_test(test_outputs_are_copies),
      cmocka_unit_test(test_wrong_input_shape),
      cmocka_unit_test(test_wrong_batch),
      cmocka_unit_test(test_wrong_input_rank_and_dtype),
      cmocka_unit_test(test_negative_batch),
      cmocka_unit_test(test_uninferred_type),
      cmocka_unit_test(test_inconsistent_type),
      cmocka_unit_test(test_bad_perm),
      cmocka_unit_test(test_observer),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
