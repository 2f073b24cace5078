/* test_qinterp.c: the interpreter as the exact integer reference for the
 * quantized ops (quantize, dequantize, qgemm, qlinear, qlinear_dyn).
 *
 * Generated code must match these results bit for bit, so every expected
 * value here is exact: worked out by hand from the rules in ir.h's quant.c
 * section and interp.c (round half to even, saturation to u8 [0, 255] and
 * i8 [-127, 127], int32 accumulators that wrap, one f32 operation per step),
 * with numbers chosen so that each step is exact in f32. Modules are built
 * with the builder API and result types are set by hand, so the tests depend
 * only on module.c, quant.c and interp.c.
 *
 * qlinear is defined as its folded form, so one test folds random qlinears
 * with ir_fold_qlinear and checks that the qgemm on the folded constants gives
 * the same bytes, over every input and output dtype, relu, per-tensor and
 * per-channel weight scales, with and without bias. */
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

/* Attributes are set as raw numbers: some tests store values the
 * interpreter must reject. */
static void attr(IrModule *m, IrNode *n, IrAttrKey key, double v) {
  ir_node_set_attr(m, n, key, &v, 1, (IrLoc){0});
}

/* The output attributes of qgemm and qlinear; scale and zp only for u8/i8. */
static void out_attrs(IrModule *m, IrNode *n, IrDType dtype, double scale, int zp, int relu) {
  attr(m, n, IR_ATTR_DTYPE, dtype);
  if (dtype != IR_F32) {
    attr(m, n, IR_ATTR_SCALE, scale);
    attr(m, n, IR_ATTR_ZERO_POINT, zp);
  }
  if (relu >= 0)
    attr(m, n, IR_ATTR_RELU, relu);
}

static void in_attrs(IrModule *m, IrNode *n, IrDType dtype, double scale, int zp) {
  attr(m, n, IR_ATTR_X_DTYPE, dtype);
  attr(m, n, IR_ATTR_X_SCALE, scale);
  attr(m, n, IR_ATTR_X_ZERO_POINT, zp);
}

/* Run a module with one output of dtype `dt`; returns its data (caller frees). */
static void *run1(IrModule *m, int64_t batch, const IrTensor *in, IrDType dt) {
  IrTensor out;
  if (!ir_interp_f32(m, batch, in, &out, NULL, NULL))
    fail_msg("interp failed: %s", m->diag.msg);
  assert_int_equal(out.type.dtype, dt);
  return out.data;
}

/* Runs that must fail with a message containing `want`. */
static void expect_error(IrModule *m, int64_t batch, const IrTensor *in, const char *want) {
  IrTensor out[4];
  assert_false(ir_interp_f32(m, batch, in, out, NULL, NULL));
  if (!strstr(m->diag.msg, want))
    fail_msg("message\n  %s\nlacks\n  %s", m->diag.msg, want);
}

/* ---- checking results ---- */

static void check_ints(const void *got, IrDType dt, const int32_t *want, int n) {
  for (int i = 0; i < n; i++) {
    int32_t g = dt == IR_U8 ? ((const uint8_t *)got)[i] : ((const int8_t *)got)[i];
    if (g != want[i])
      fail_msg("element %d: got %d, want %d", i, g, want[i]);
  }
}

#define CHECK_Q(got, dt, ...)                                                               \
  check_ints(got, dt, (int32_t[]){__VA_ARGS__},                                               \
             (int)(sizeof((int32_t[]){__VA_ARGS__}) / sizeof(int32_t)))

/* Bit-exact floats: equal values with equal sign (so -0.0 differs from +0.0). */
static void check_floats(const float *got, const float *want, int n) {
  for (int i = 0; i < n; i++)
    if (!(got[i] == want[i] && signbit(got[i]) == signbit(want[i])) &&
        !(isnan(got[i]) && isnan(want[i])))
      fail_msg("element %d: got %.9g, want %.9g", i, got[i], want[i]);
}

#define CHECK_F(got, ...)                                                                   \
  check_floats(got, (float[]){__VA_ARGS__}, (int)(sizeof((float[]){__VA_ARGS__}) / sizeof(float)))

/* ---- quantize and dequantize ---- */

/* u8, scale 0.5, zp 10: x / 0.5 at the ties 2.5, 3.5 and -2.5 rounds to even;
 * the ends saturate to [0, 255] (x / scale clamped to [-10, 245] before the
 * zero point is added); NaN gives the zero point and +-Inf saturate. */
static void test_quantize_u8(void **state) {
  (void)state;
  IrModule *m = ir_module_new("t");
  IrValue *x = ir_add_input(m, "x", F32(Q), (IrLoc){0});
  IrNode *n = NODE(m, QUANTIZE, "q", U8(Q), x);
  attr(m, n, IR_ATTR_SCALE, 0.5);
  attr(m, n, IR_ATTR_ZERO_POINT, 10);
  attr(m, n, IR_ATTR_DTYPE, IR_U8);
  ir_add_output(m, n->result, (IrLoc){0});
  float xs[] = {1.25f, 1.75f, -1.25f, 0.25f, 0, 122.25f, 122.5f, 122.75f, 200,
                -5, -5.25f, -5.5f, -20, NAN, INFINITY, -INFINITY};
  IrTensor in = tensor(F32(16), xs);
  void *y = run1(m, 16, &in, IR_U8);
  CHECK_Q(y, IR_U8, 12, 14, 8, 10, 10, 254, 255, 255, 255, 0, 0, 0, 0, 10, 255, 0);
  free(y);
  ir_module_free(m);
}

/* i8 is symmetric [-127, 127]: -128 is never produced. A zero point moves
 * the clamp window: with zp 3, x / scale is clamped to [-130, 124]. */
static void test_quantize_i8(void **state) {
  (void)state;
  IrModule *m = ir_module_new("t");
  IrValue *x = ir_add_input(m, "x", F32(12), (IrLoc){0});
  IrNode *n = NODE(m, QUANTIZE, "q", I8(12), x);
  attr(m, n, IR_ATTR_SCALE, 1);
  attr(m, n, IR_ATTR_ZERO_POINT, 0);
  attr(m, n, IR_ATTR_DTYPE, IR_I8);
  IrNode *n3 = NODE(m, QUANTIZE, "q3", I8(12), x);
  attr(m, n3, IR_ATTR_SCALE, 1);
  attr(m, n3, IR_ATTR_ZERO_POINT, 3);
  attr(m, n3, IR_ATTR_DTYPE, IR_I8);
  ir_add_output(m, n->result, (IrLoc){0});
  ir_add_output(m, n3->result, (IrLoc){0});
  float xs[] = {2.5f, 3.5f, -2.5f, 127.4f, 127.5f, 128, -127.5f, -128, -1000, NAN, INFINITY,
                -INFINITY};
  IrTensor in = tensor(F32(12), xs), out[2];
  assert_true(ir_interp_f32(m, 1, &in, out, NULL, NULL));
  assert_int_equal(out[0].type.dtype, IR_I8);
  CHECK_Q(out[0].data, IR_I8, 2, 4, -2, 127, 127, 127, -127, -127, -127, 0, 127, -127);
  CHECK_Q(out[1].data, IR_I8, 5, 7, 1, 127, 127, 127, -125, -125, -127, 3, 127, -127);
  free(out[0].data);
  free(out[1].data);
  ir_module_free(m);
}

/* y = (q - zp) * scale, for u8 and i8 inputs (i8 -128 is read as it is). */
static void test_dequantize(void **state) {
  (void)state;
  IrModule *m = ir_module_new("t");
  IrValue *qu = ir_add_input(m, "qu", U8(4), (IrLoc){0});
  IrValue *qi = ir_add_input(m, "qi", I8(4), (IrLoc){0});
  IrNode *du = NODE(m, DEQUANTIZE, "du", F32(4), qu);
  attr(m, du, IR_ATTR_SCALE, 0.5);
  attr(m, du, IR_ATTR_ZERO_POINT, 10);
  IrNode *di = NODE(m, DEQUANTIZE, "di", F32(4), qi);
  attr(m, di, IR_ATTR_SCALE, 0.25);
  attr(m, di, IR_ATTR_ZERO_POINT, -3);
  ir_add_output(m, du->result, (IrLoc){0});
  ir_add_output(m, di->result, (IrLoc){0});
  IrTensor in[2] = {tensor(U8(4), (uint8_t[]){0, 10, 11, 255}),
                    tensor(I8(4), (int8_t[]){-128, -127, 0, 127})},
           out[2];
  assert_true(ir_interp_f32(m, 1, in, out, NULL, NULL));
  assert_int_equal(out[0].type.dtype, IR_F32);
  CHECK_F(out[0].data, -5, 0, 0.5f, 122.5f);
  CHECK_F(out[1].data, -31.25f, -31, 0.75f, 32.5f);
  free(out[0].data);
  free(out[1].data);
  ir_module_free(m);
}

/* quantize then dequantize: a round trip through u8 in one module, with the
 * observer seeing the u8 tensor in its own dtype. */
typedef struct {
  int calls;
  IrDType dtypes[4];
  uint8_t first[4];
} Seen;

static void record(void *user, const IrNode *node, const IrTensor *t) {
  (void)node;
  Seen *s = user;
  assert_true(s->calls < 4);
  s->dtypes[s->calls] = t->type.dtype;
  if (t->type.dtype == IR_U8)
    memcpy(s->first, t->data, 4);
  s->calls++;
}

static void test_round_trip_and_observer(void **state) {
  (void)state;
  IrModule *m = ir_module_new("t");
  IrValue *x = ir_add_input(m, "x", F32(Q, 2), (IrLoc){0});
  IrNode *q = NODE(m, QUANTIZE, "q", U8(Q, 2), x);
  attr(m, q, IR_ATTR_SCALE, 0.25);
  attr(m, q, IR_ATTR_ZERO_POINT, 128);
  attr(m, q, IR_ATTR_DTYPE, IR_U8);
  IrNode *d = NODE(m, DEQUANTIZE, "d", F32(Q, 2), q->result);
  attr(m, d, IR_ATTR_SCALE, 0.25);
  attr(m, d, IR_ATTR_ZERO_POINT, 128);
  ir_add_output(m, q->result, (IrLoc){0});
  ir_add_output(m, d->result, (IrLoc){0});
  IrTensor in = tensor(F32(2, 2), (float[]){-1, 0.3f, 100, -0.125f}), out[2];
  Seen seen = {0};
  assert_true(ir_interp_f32(m, 2, &in, out, record, &seen));
  assert_int_equal(seen.calls, 2);
  assert_int_equal(seen.dtypes[0], IR_U8);
  assert_int_equal(seen.dtypes[1], IR_F32);
  /* 0.3 / 0.25 = 1.2 -> 1; 100 / 0.25 saturates at 127; -0.5 ties to -0. */
  CHECK_Q(seen.first, IR_U8, 124, 129, 255, 128);
  assert_int_equal(out[0].type.dtype, IR_U8);
  assert_int_equal(out[0].type.dims[0], 2);
  CHECK_Q(out[0].data, IR_U8, 124, 129, 255, 128);
  CHECK_F(out[1].data, -1, 0.25f, 31.75f, 0);
  free(out[0].data);
  free(out[1].data);
  ir_module_free(m);
}

/* ---- qgemm ---- */

/* x u8 [4, 3], W [2, 3], bias [5, -1000], mult [0.5, 1/32], u8 out, zp 100:
 *   acc = [[55, 2780], [-248, -873], [6, -876], [770, 30620]]
 *   acc * mult = [[27.5, 86.875], [-124, -27.28], [3, -27.375], [385, 956.875]]
 *   rounded (27.5 ties to 28) = [[28, 87], [-124, -27], [3, -27], [385, 957]]
 * plus 100, saturated to [0, 255]; with relu the floor is the zero point. */
static IrModule *qgemm_u8_module(int relu) {
  IrModule *m = ir_module_new("t");
  IrValue *x = ir_add_input(m, "x", U8(Q, 3), (IrLoc){0});
  IrValue *w = konst(m, "w", I8(2, 3), (int8_t[]){1, -1, 2, -3, 0, 127});
  IrValue *b = konst(m, "bias", I32(2), (int32_t[]){5, -1000});
  IrValue *mu = konst(m, "mult", F32(2), (float[]){0.5f, 0.03125f});
  IrNode *n = NODE(m, QGEMM, "y", U8(Q, 2), x, w, b, mu);
  out_attrs(m, n, IR_U8, 0.1, 100, relu);
  ir_add_output(m, n->result, (IrLoc){0});
  return m;
}

static const uint8_t qgemm_x[12] = {10, 20, 30, 0, 255, 1, 1, 2, 1, 255, 0, 255};

static void test_qgemm_u8_in_u8_out(void **state) {
  (void)state;
  IrModule *m = qgemm_u8_module(-1);
  IrTensor in = tensor(U8(4, 3), qgemm_x);
  void *y = run1(m, 4, &in, IR_U8);
  CHECK_Q(y, IR_U8, 128, 187, 0, 73, 103, 73, 255, 255);
  free(y);
  ir_module_free(m);
}

static void test_qgemm_relu_clamps_at_zero_point(void **state) {
  (void)state;
  IrModule *m = qgemm_u8_module(1);
  IrTensor in = tensor(U8(4, 3), qgemm_x);
  void *y = run1(m, 4, &in, IR_U8);
  CHECK_Q(y, IR_U8, 128, 187, 100, 100, 103, 100, 255, 255);
  free(y);
  ir_module_free(m);
  /* relu = 0 is the same as no relu. */
  m = qgemm_u8_module(0);
  y = run1(m, 4, &in, IR_U8);
  CHECK_Q(y, IR_U8, 128, 187, 0, 73, 103, 73, 255, 255);
  free(y);
  ir_module_free(m);
}

/* i8 in (-128 read as it is), i8 out with zp -3: acc = [[-32285, 124], [1624,
 * -12]], times 0.01f rounds to [[-323, 1], [16, -0]], clamped to [-124, 130]
 * and less 3. */
static void test_qgemm_i8_in_i8_out(void **state) {
  (void)state;
  IrModule *m = ir_module_new("t");
  IrValue *x = ir_add_input(m, "x", I8(2, 2), (IrLoc){0});
  IrValue *w = konst(m, "w", I8(2, 2), (int8_t[]){127, -127, 2, 3});
  IrValue *b = konst(m, "bias", I32(2), (int32_t[]){100, -1});
  IrValue *mu = konst(m, "mult", F32(2), (float[]){0.01f, 0.01f});
  IrNode *n = NODE(m, QGEMM, "y", I8(2, 2), x, w, b, mu);
  out_attrs(m, n, IR_I8, 0.1, -3, -1);
  attr(m, n, IR_ATTR_X_DTYPE, IR_I8); /* optional for an integer input, checked if given */
  ir_add_output(m, n->result, (IrLoc){0});
  IrTensor in = tensor(I8(2, 2), (int8_t[]){-128, 127, 5, -7});
  void *y = run1(m, 1, &in, IR_I8);
  CHECK_Q(y, IR_I8, -127, -2, 13, -3);
  free(y);
  ir_module_free(m);
}

/* f32 in: x is quantized with x_scale 0.5, x_zp 3 (u8) inside the op, to
 * [5, 7, 0, 3] (1.25 / 0.5 and 1.75 / 0.5 tie to even; -10 saturates; NaN is
 * the zero point). The zero point is not subtracted again: it is folded into
 * the bias, so acc = 0 + 15 and y = 15 * 0.5. With i8 (zp 0), -1000
 * saturates at -127: [2, 4, -127, 0], acc = 100 - 121 = -21, y = -10.5. */
static void test_qgemm_f32_in(void **state) {
  (void)state;
  IrModule *m = ir_module_new("t");
  IrValue *x = ir_add_input(m, "x", F32(1, 4), (IrLoc){0});
  IrValue *w = konst(m, "w", I8(1, 4), (int8_t[]){1, 1, 1, 1});
  IrValue *b0 = konst(m, "b0", I32(1), (int32_t[]){0});
  IrValue *b1 = konst(m, "b1", I32(1), (int32_t[]){100});
  IrValue *mu = konst(m, "mult", F32(1), (float[]){0.5f});
  IrNode *nu = NODE(m, QGEMM, "yu", F32(1, 1), x, w, b0, mu);
  in_attrs(m, nu, IR_U8, 0.5, 3);
  out_attrs(m, nu, IR_F32, 0, 0, -1);
  IrNode *ni = NODE(m, QGEMM, "yi", F32(1, 1), x, w, b1, mu);
  in_attrs(m, ni, IR_I8, 0.5, 0);
  out_attrs(m, ni, IR_F32, 0, 0, -1);
  ir_add_output(m, nu->result, (IrLoc){0});
  ir_add_output(m, ni->result, (IrLoc){0});
  IrTensor in = tensor(F32(1, 4), (float[]){1.25f, 1.75f, -1000, NAN}), out[2];
  assert_true(ir_interp_f32(m, 1, &in, out, NULL, NULL));
  CHECK_F(out[0].data, 7.5f);
  CHECK_F(out[1].data, -10.5f);
  free(out[0].data);
  free(out[1].data);
  ir_module_free(m);
}

/* f32 out: y = (float)acc * mult; relu maps negatives and -0.0 to +0.0.
 * x = [5], W = [1, -1, 0, 2], mult = [1, 1, -1, 0.25]: acc = [5, -5, 0, 10]. */
static void test_qgemm_f32_out_relu(void **state) {
  (void)state;
  IrModule *m = ir_module_new("t");
  IrValue *x = ir_add_input(m, "x", U8(1, 1), (IrLoc){0});
  IrValue *w = konst(m, "w", I8(4, 1), (int8_t[]){1, -1, 0, 2});
  IrValue *b = konst(m, "bias", I32(4), (int32_t[]){0, 0, 0, 0});
  IrValue *mu = konst(m, "mult", F32(4), (float[]){1, 1, -1, 0.25f});
  IrNode *plain = NODE(m, QGEMM, "y", F32(1, 4), x, w, b, mu);
  out_attrs(m, plain, IR_F32, 0, 0, -1);
  IrNode *relu = NODE(m, QGEMM, "r", F32(1, 4), x, w, b, mu);
  out_attrs(m, relu, IR_F32, 0, 0, 1);
  ir_add_output(m, plain->result, (IrLoc){0});
  ir_add_output(m, relu->result, (IrLoc){0});
  IrTensor in = tensor(U8(1, 1), (uint8_t[]){5}), out[2];
  assert_true(ir_interp_f32(m, 1, &in, out, NULL, NULL));
  CHECK_F(out[0].data, 5, -5, -0.0f, 2.5f);
  CHECK_F(out[1].data, 5, 0, 0, 2.5f);
  assert_false(signbit(((float *)out[1].data)[2]));
  free(out[0].data);
  free(out[1].data);
  ir_module_free(m);
}

/* The accumulator is int32 and wraps: INT32_MAX + 1 * 1 is INT32_MIN, and
 * INT32_MIN + 255 * -127 is INT32_MAX - 32384 (2147451263, 2147451264.0f). */
static void test_qgemm_accumulator_wraps(void **state) {
  (void)state;
  IrModule *m = ir_module_new("t");
  IrValue *x = ir_add_input(m, "x", U8(1, 1), (IrLoc){0});
  IrValue *w = konst(m, "w", I8(2, 1), (int8_t[]){1, -127});
  IrValue *b = konst(m, "bias", I32(2), (int32_t[]){INT32_MAX, INT32_MIN});
  IrValue *mu = konst(m, "mult", F32(2), (float[]){1, 1});
  IrNode *n = NODE(m, QGEMM, "y", F32(1, 2), x, w, b, mu);
  out_attrs(m, n, IR_F32, 0, 0, -1);
  IrNode *nq = NODE(m, QGEMM, "yq", I8(1, 2), x, w, b, mu);
  out_attrs(m, nq, IR_I8, 1, 0, -1);
  ir_add_output(m, n->result, (IrLoc){0});
  ir_add_output(m, nq->result, (IrLoc){0});
  IrTensor in1 = tensor(U8(1, 1), (uint8_t[]){1}), out[2];
  assert_true(ir_interp_f32(m, 1, &in1, out, NULL, NULL));
  CHECK_F(out[0].data, -2147483648.0f, 2147483520.0f); /* INT32_MIN - 127 wraps too */
  CHECK_Q(out[1].data, IR_I8, -127, 127);
  free(out[0].data);
  free(out[1].data);
  IrTensor in255 = tensor(U8(1, 1), (uint8_t[]){255});
  assert_true(ir_interp_f32(m, 1, &in255, out, NULL, NULL));
  CHECK_F(out[0].data, (float)(INT32_MIN + 254), 2147451264.0f);
  free(out[0].data);
  free(out[1].data);
  ir_module_free(m);
}

/* ---- qlinear ---- */

/* x u8 [10, 20] with x_scale 0.5, x_zp 10 (real [0, 5]); W [[1, 2], [-1, 3]]
 * with one scale 0.25 (real [[0.25, 0.5], [-0.25, 0.75]]); b [1, -0.5].
 * Folded: x_scale * w_scale = 0.125, bias = [8 - 10 * 3, -4 - 10 * 2] =
 * [-22, -24], so acc = [28, 26] and y = [3.5, 3.25] = the real x W^T + b.
 * Per channel with w_scale [0.25, 0.5], channel 1 has 0.25: bias -2 - 20,
 * acc 28, y 7. u8 out with scale 0.25: mult 0.5, y = [14, 13]. */
static void test_qlinear_per_tensor_and_channel(void **state) {
  (void)state;
  IrModule *m = ir_module_new("t");
  IrValue *x = ir_add_input(m, "x", U8(1, 2), (IrLoc){0});
  IrValue *w = konst(m, "w", I8(2, 2), (int8_t[]){1, 2, -1, 3});
  IrValue *s1 = konst(m, "s1", F32(1), (float[]){0.25f});
  IrValue *s2 = konst(m, "s2", F32(2), (float[]){0.25f, 0.5f});
  IrValue *b = konst(m, "b", F32(2), (float[]){1, -0.5f});
  IrNode *pt = NODE(m, QLINEAR, "pt", F32(1, 2), x, w, s1, b);
  IrNode *pc = NODE(m, QLINEAR, "pc", F32(1, 2), x, w, s2, b);
  IrNode *pq = NODE(m, QLINEAR, "pq", U8(1, 2), x, w, s1, b);
  IrNode *nodes[] = {pt, pc, pq};
  for (int i = 0; i < 3; i++) {
    in_attrs(m, nodes[i], IR_U8, 0.5, 10);
    out_attrs(m, nodes[i], i == 2 ? IR_U8 : IR_F32, 0.25, 0, -1);
    ir_add_output(m, nodes[i]->result, (IrLoc){0});
  }
  IrTensor in = tensor(U8(1, 2), (uint8_t[]){10, 20}), out[3];
  assert_true(ir_interp_f32(m, 1, &in, out, NULL, NULL));
  CHECK_F(out[0].data, 3.5f, 3.25f);
  CHECK_F(out[1].data, 3.5f, 7);
  CHECK_Q(out[2].data, IR_U8, 14, 13);
  for (int i = 0; i < 3; i++)
    free(out[i].data);
  ir_module_free(m);
}

/* A small deterministic generator, so failures reproduce. */
static uint32_t rng_next(uint32_t *s) {
  *s = *s * 1664525u + 1013904223u;
  return *s >> 8;
}

static float rng_float(uint32_t *s, float lo, float hi) {
  return lo + (hi - lo) * (float)rng_next(s) / (float)(1u << 24);
}

enum { RM = 5, RK = 37, RN = 11 };

/* One random qlinear and the qgemm on its folded constants, in one module;
 * their outputs must be the same bytes. */
static void check_qlinear_folds(uint32_t seed, IrDType xt, IrDType yt, int relu, bool per_tensor,
                                bool has_bias) {
  uint32_t s = seed;
  IrModule *m = ir_module_new("t");
  int8_t wq[RN * RK];
  float ws[RN], b[RN];
  for (int i = 0; i < RN * RK; i++)
    wq[i] = (int8_t)((int)(rng_next(&s) % 255) - 127);
  for (int i = 0; i < RN; i++) {
    ws[i] = rng_float(&s, 0.001f, 0.05f);
    b[i] = rng_float(&s, -2, 2);
  }
  IrDType xq = xt == IR_F32 ? (seed % 2 ? IR_U8 : IR_I8) : xt;
  float x_scale = rng_float(&s, 0.005f, 0.05f);
  int x_zp = xq == IR_U8 ? (int)(rng_next(&s) % 256) : 0;
  float y_scale = rng_float(&s, 0.01f, 0.2f);
  int y_zp = yt == IR_U8   ? (int)(rng_next(&s) % 256)
             : yt == IR_I8 ? (int)(rng_next(&s) % 21) - 10
                           : 0;

  IrValue *x = ir_add_input(m, "x", TYPED(xt, Q, RK), (IrLoc){0});
  IrValue *w = konst(m, "w", I8(RN, RK), wq);
  IrValue *wsv = per_tensor ? konst(m, "ws", F32(1), ws) : konst(m, "ws", F32(RN), ws);
  IrValue *bv = konst(m, "b", F32(RN), b);
  IrNode *ql = has_bias ? NODE(m, QLINEAR, "ql", TYPED(yt, Q, RN), x, w, wsv, bv)
                        : NODE(m, QLINEAR, "ql", TYPED(yt, Q, RN), x, w, wsv);
  in_attrs(m, ql, xq, x_scale, x_zp);
  out_attrs(m, ql, yt, y_scale, y_zp, relu);

  int32_t bias[RN];
  float mult[RN];
  ir_fold_qlinear(wq, ws, per_tensor ? 1 : RN, has_bias ? b : NULL, RN, RK, x_scale, x_zp,
                  yt == IR_F32 ? 0.0f : y_scale, bias, mult);
  IrValue *biasv = konst(m, "bias", I32(RN), bias);
  IrValue *multv = konst(m, "mult", F32(RN), mult);
  IrNode *qg = NODE(m, QGEMM, "qg", TYPED(yt, Q, RN), x, w, biasv, multv);
  if (xt == IR_F32)
    in_attrs(m, qg, xq, x_scale, x_zp);
  out_attrs(m, qg, yt, y_scale, y_zp, relu);
  ir_add_output(m, ql->result, (IrLoc){0});
  ir_add_output(m, qg->result, (IrLoc){0});

  /* Inputs over the whole range, with a few special values for f32. */
  union {
    float f[RM * RK];
    uint8_t u[RM * RK];
    int8_t i[RM * RK];
  } xs;
  for (int i = 0; i < RM * RK; i++) {
    if (xt == IR_F32)
      xs.f[i] = rng_float(&s, -2, 2);
    else if (xt == IR_U8)
      xs.u[i] = (uint8_t)(rng_next(&s) % 256);
    else
      xs.i[i] = (int8_t)((int)(rng_next(&s) % 256) - 128);
  }
  if (xt == IR_F32) {
    xs.f[3] = NAN;
    xs.f[40] = INFINITY;
    xs.f[41] = -1e30f;
  }
  IrTensor in = tensor(TYPED(xt, RM, RK), &xs), out[2];
  assert_true(ir_interp_f32(m, RM, &in, out, NULL, NULL));
  size_t bytes = (size_t)RM * RN * ir_dtype_size(yt);
  if (memcmp(out[0].data, out[1].data, bytes) != 0)
    fail_msg("qlinear and its folded qgemm differ (seed %u, x %s, y %s, relu %d)", seed,
             ir_dtype_name(xt), ir_dtype_name(yt), relu);
  /* A sanity check that the inputs were not all saturated into one value. */
  if (yt != IR_F32) {
    int distinct = 0;
    for (size_t i = 1; i < bytes; i++)
      distinct += ((uint8_t *)out[0].data)[i] != ((uint8_t *)out[0].data)[0];
    assert_true(distinct > 0);
  }
  free(out[0].data);
  free(out[1].data);
  ir_module_free(m);
}

static void test_qlinear_equals_folded_qgemm(void **state) {
  (void)state;
  const IrDType xts[] = {IR_F32, IR_U8, IR_I8}, yts[] = {IR_F32, IR_U8, IR_I8};
  uint32_t seed = 1;
  for (int xi = 0; xi < 3; xi++)
    for (int yi = 0; yi < 3; yi++)
      for (int relu = 0; relu <= 1; relu++)
        for (int pt = 0; pt <= 1; pt++)
          for (int hb = 0; hb <= 1; hb++)
            check_qlinear_folds(seed++, xts[xi], yts[yi], relu, pt, hb);
}

/* With f32 in and out, qlinear approximates x (wq * w_scale)^T + b to within
 * the input's quantization step: half a step per element, times sum |w|. */
static void test_qlinear_approximates_float(void **state) {
  (void)state;
  uint32_t s = 7;
  IrModule *m = ir_module_new("t");
  int8_t wq[RN * RK];
  float ws[RN], b[RN], xs[RM * RK];
  for (int i = 0; i < RN * RK; i++)
    wq[i] = (int8_t)((int)(rng_next(&s) % 255) - 127);
  for (int i = 0; i < RN; i++) {
    ws[i] = rng_float(&s, 0.001f, 0.05f);
    b[i] = rng_float(&s, -2, 2);
  }
  for (int i = 0; i < RM * RK; i++)
    xs[i] = rng_float(&s, -1, 3);
  IrValue *x = ir_add_input(m, "x", F32(RM, RK), (IrLoc){0});
  IrValue *w = konst(m, "w", I8(RN, RK), wq);
  IrNode *n = NODE(m, QLINEAR, "y", F32(RM, RN), x, w, konst(m, "ws", F32(RN), ws),
                   konst(m, "b", F32(RN), b));
  const float x_scale = 4.0f / 255, x_zp = 64; /* covers [-1, 3] */
  in_attrs(m, n, IR_U8, x_scale, (int)x_zp);
  out_attrs(m, n, IR_F32, 0, 0, -1);
  ir_add_output(m, n->result, (IrLoc){0});
  IrTensor in = tensor(F32(RM, RK), xs);
  float *y = run1(m, 1, &in, IR_F32);
  for (int i = 0; i < RM; i++)
    for (int j = 0; j < RN; j++) {
      double ref = b[j], wabs = 0;
      for (int k = 0; k < RK; k++) {
        ref += (double)xs[i * RK + k] * wq[j * RK + k] * ws[j];
        wabs += fabs((double)wq[j * RK + k] * ws[j]);
      }
      double tol = 0.5 * x_scale * wabs + x_scale * ws[j] + 1e-4;
      if (fabs(y[i * RN + j] - ref) > tol)
        fail_msg("[%d, %d]: got %g, want %g within %g", i, j, y[i * RN + j], ref, tol);
    }
  free(y);
  ir_module_free(m);
}

/* ---- qlinear_dyn ---- */

/* x [5, 4], W [[1, 2, 3, 4], [-1, 0, 1, 127]]. Per row (sx, zx, xq - zx):
 *   [-32, 0, 10.25, 95.5]: range [-32, 95.5], sx 0.5, zx 64; x / sx =
 *     [-64, 0, 20.5, 191] -> [-64, 0, 20, 191]; acc [760, 24341]
 *   all zeros: sx 1, zx 0; acc [0, 0]
 *   [1e-35, 0, 0, 0]: (hi - lo) / 255 < 1e-30, so sx 1 and 1e-35 quantizes
 *     to 0; acc [0, 0] (with sx 3.9e-38 the result would be tiny, not 0)
 *   [NaN, -16, Inf, 47.75]: finite range [-16, 47.75], sx 0.25, zx 64; NaN
 *     -> 0, Inf saturates -> 191; acc [1209, 24448]
 *   [-255, -127.5, 0, -1]: range [-255, 0], sx 1, zx 255; -127.5 ties to
 *     -128; acc [-515, 128]
 * y = acc * (sx * w_scale[n]) (+ b[n]), each step exact here. */
static void test_qlinear_dyn(void **state) {
  (void)state;
  IrModule *m = ir_module_new("t");
  IrValue *x = ir_add_input(m, "x", F32(Q, 4), (IrLoc){0});
  IrValue *w = konst(m, "w", I8(2, 4), (int8_t[]){1, 2, 3, 4, -1, 0, 1, 127});
  IrValue *s2 = konst(m, "s2", F32(2), (float[]){0.25f, 0.125f});
  IrValue *s1 = konst(m, "s1", F32(1), (float[]){0.25f});
  IrValue *b = konst(m, "b", F32(2), (float[]){1, -0.5f});
  IrNode *pc = NODE(m, QLINEAR_DYN, "pc", F32(Q, 2), x, w, s2, b);
  IrNode *pt = NODE(m, QLINEAR_DYN, "pt", F32(Q, 2), x, w, s1);
  ir_add_output(m, pc->result, (IrLoc){0});
  ir_add_output(m, pt->result, (IrLoc){0});
  float xs[] = {-32, 0, 10.25f, 95.5f, 0, 0, 0, 0, 1e-35f, 0, 0, 0,
                NAN, -16, INFINITY, 47.75f, -255, -127.5f, 0, -1};
  IrTensor in = tensor(F32(5, 4), xs), out[2];
  assert_true(ir_interp_f32(m, 5, &in, out, NULL, NULL));
  CHECK_F(out[0].data, 96, 1520.8125f, 1, -0.5f, 1, -0.5f, 76.5625f, 763.5f, -127.75f, 15.5f);
  CHECK_F(out[1].data, 95, 3042.625f, 0, 0, 0, 0, 75.5625f, 1528, -128.75f, 32);
  free(out[0].data);
  free(out[1].data);
  ir_module_free(m);
}

/* Each float step rounds to f32 on its own. The values are chosen so that
 * the alternatives differ: a scale used as a double, sx * w_scale * acc
 * rounded once, or the bias added by a fused multiply-add. The expected
 * values follow the rules step by step through volatile floats, and the test
 * first checks that they do tell the alternatives apart. */
static void test_float_steps_round_separately(void **state) {
  (void)state;
  /* dequantize 19 with zp 10 and scale 0.1: 9 * 0.1f in f32. */
  volatile float nine = 9, tenth = (float)0.1;
  float deq = nine * tenth;
  assert_true(deq != (float)(9 * 0.1));

  /* qlinear_dyn on the row [0, 1]: sx = f32(1 / 255), zx 0, xq [0, 255];
   * W [0, 8], w_scale 0.01, b 0.3: acc 2040. */
  volatile float sx = (float)(1.0 / 255.0), ws = 0.01f, b = 0.3f, acc = 2040;
  float t = sx * ws;
  float y = acc * t;
  float yb = y + b;
  assert_true(y != (float)(2040.0 * (double)sx * (double)ws));
  assert_true(yb != fmaf(acc, t, b));

  IrModule *m = ir_module_new("t");
  IrValue *q = ir_add_input(m, "q", U8(1), (IrLoc){0});
  IrValue *x = ir_add_input(m, "x", F32(1, 2), (IrLoc){0});
  IrNode *dq = NODE(m, DEQUANTIZE, "d", F32(1), q);
  attr(m, dq, IR_ATTR_SCALE, 0.1);
  attr(m, dq, IR_ATTR_ZERO_POINT, 10);
  IrValue *w = konst(m, "w", I8(1, 2), (int8_t[]){0, 8});
  IrValue *wsv = konst(m, "ws", F32(1), (float[]){0.01f});
  IrValue *bv = konst(m, "b", F32(1), (float[]){0.3f});
  IrNode *dyn = NODE(m, QLINEAR_DYN, "y", F32(1, 1), x, w, wsv);
  IrNode *dynb = NODE(m, QLINEAR_DYN, "yb", F32(1, 1), x, w, wsv, bv);
  ir_add_output(m, dq->result, (IrLoc){0});
  ir_add_output(m, dyn->result, (IrLoc){0});
  ir_add_output(m, dynb->result, (IrLoc){0});
  IrTensor in[2] = {tensor(U8(1), (uint8_t[]){19}), tensor(F32(1, 2), (float[]){0, 1})}, out[3];
  assert_true(ir_interp_f32(m, 1, in, out, NULL, NULL));
  CHECK_F(out[0].data, deq);
  CHECK_F(out[1].data, y);
  CHECK_F(out[2].data, yb);
  for (int i = 0; i < 3; i++)
    free(out[i].data);
  ir_module_free(m);
}

/* ---- ir_interp_node ---- */

/* The qgemm of qgemm_u8_module alone: x given, the constants taken from the
 * module; then W given explicitly (negated), which overrides the constant. */
static void test_interp_node_qgemm(void **state) {
  (void)state;
  IrModule *m = qgemm_u8_module(-1);
  const IrNode *n = m->nodes[0];
  IrTensor opnds[4] = {tensor(U8(4, 3), qgemm_x), {.data = NULL}, {.data = NULL},
                       {.data = NULL}};
  IrTensor out;
  if (!ir_interp_node(m, n, 4, opnds, &out))
    fail_msg("%s", m->diag.msg);
  assert_int_equal(out.type.dtype, IR_U8);
  assert_int_equal(out.type.rank, 2);
  assert_int_equal(out.type.dims[0], 4);
  assert_int_equal(out.type.dims[1], 2);
  CHECK_Q(out.data, IR_U8, 128, 187, 0, 73, 103, 73, 255, 255);
  free(out.data);

  /* -W: acc = [[-45, -4780], ...]; row 0: -22.5 -> -22 + 100, -149.375 -> 0. */
  opnds[1] = tensor(I8(2, 3), (int8_t[]){-1, 1, -2, 3, 0, -127});
  if (!ir_interp_node(m, n, 4, opnds, &out))
    fail_msg("%s", m->diag.msg);
  assert_int_equal(((uint8_t *)out.data)[0], 78);
  assert_int_equal(((uint8_t *)out.data)[1], 0);
  free(out.data);
  ir_module_free(m);
}

static void test_interp_node_errors(void **state) {
  (void)state;
  IrModule *m = qgemm_u8_module(-1);
  IrTensor opnds[4] = {{.data = NULL}}, out = {.data = (void *)1};
  assert_false(ir_interp_node(m, m->nodes[0], 2, opnds, &out));
  assert_null(out.data);
  assert_non_null(strstr(m->diag.msg, "qgemm: operand %x has no data"));
  ir_module_free(m);

  m = qgemm_u8_module(-1);
  opnds[0] = tensor(F32(2, 3), (float[6]){0});
  assert_false(ir_interp_node(m, m->nodes[0], 2, opnds, &out));
  assert_non_null(strstr(m->diag.msg, "qgemm: operand %x was given as f32[2, 3] but the node "
                                      "expects u8[2, 3]"));
  ir_module_free(m);
}

/* ---- inputs and broken modules ---- */

static void test_integer_input_checked(void **state) {
  (void)state;
  IrModule *m = qgemm_u8_module(-1);
  IrTensor in = tensor(I8(4, 3), qgemm_x);
  expect_error(m, 4, &in, "input 'x' is i8[4, 3] but the model expects u8[4, 3]");
  ir_module_free(m);
}

/* The quantized ops re-check dtypes and attributes: a hand-built module gets
 * a message, not a wrong read. */
static void test_quantized_errors(void **state) {
  (void)state;
  uint8_t xs[2] = {1, 2};
  IrTensor in = tensor(U8(1, 2), xs);

  /* bias must be i32 */
  IrModule *m = ir_module_new("t");
  IrValue *x = ir_add_input(m, "x", U8(1, 2), (IrLoc){0});
  IrValue *w = konst(m, "w", I8(1, 2), (int8_t[]){1, 1});
  IrValue *bf = konst(m, "bf", F32(1), (float[]){0});
  IrNode *n = NODE(m, QGEMM, "y", U8(1, 1), x, w, bf, bf);
  out_attrs(m, n, IR_U8, 1, 0, -1);
  ir_add_output(m, n->result, (IrLoc){0});
  expect_error(m, 1, &in, "qgemm: operand @bf must be i32, but it is f32[1]");
  ir_module_free(m);

  /* u8 output without a zero point */
  m = ir_module_new("t");
  x = ir_add_input(m, "x", U8(1, 2), (IrLoc){0});
  w = konst(m, "w", I8(1, 2), (int8_t[]){1, 1});
  IrValue *bi = konst(m, "bi", I32(1), (int32_t[]){0});
  IrValue *mu = konst(m, "mu", F32(1), (float[]){1});
  n = NODE(m, QGEMM, "y", U8(1, 1), x, w, bi, mu);
  attr(m, n, IR_ATTR_DTYPE, IR_U8);
  attr(m, n, IR_ATTR_SCALE, 1);
  ir_add_output(m, n->result, (IrLoc){0});
  expect_error(m, 1, &in, "qgemm needs the attribute 'zero_point'");
  ir_module_free(m);

  /* the result type must be the dtype attribute */
  m = ir_module_new("t");
  x = ir_add_input(m, "x", U8(1, 2), (IrLoc){0});
  w = konst(m, "w", I8(1, 2), (int8_t[]){1, 1});
  bi = konst(m, "bi", I32(1), (int32_t[]){0});
  mu = konst(m, "mu", F32(1), (float[]){1});
  n = NODE(m, QGEMM, "y", F32(1, 1), x, w, bi, mu);
  out_attrs(m, n, IR_I8, 1, 0, -1);
  ir_add_output(m, n->result, (IrLoc){0});
  expect_error(m, 1, &in, "qgemm gives i8, but its result %y is declared f32[1, 1]");
  ir_module_free(m);

  /* a zero point outside the type's range */
  m = ir_module_new("t");
  IrValue *xf = ir_add_input(m, "x", F32(2), (IrLoc){0});
  n = NODE(m, QUANTIZE, "q", I8(2), xf);
  attr(m, n, IR_ATTR_SCALE, 1);
  attr(m, n, IR_ATTR_ZERO_POINT, 200);
  attr(m, n, IR_ATTR_DTYPE, IR_I8);
  ir_add_output(m, n->result, (IrLoc){0});
  IrTensor inf = tensor(F32(2), (float[]){0, 1});
  expect_error(m, 1, &inf, "quantize: zero_point 200 is not an integer in i8's range [-127, 127]");
  ir_module_free(m);

  /* a scale that is not positive */
  m = ir_module_new("t");
  xf = ir_add_input(m, "x", F32(2), (IrLoc){0});
  n = NODE(m, QUANTIZE, "q", U8(2), xf);
  attr(m, n, IR_ATTR_SCALE, 0);
  attr(m, n, IR_ATTR_ZERO_POINT, 0);
  attr(m, n, IR_ATTR_DTYPE, IR_U8);
  ir_add_output(m, n->result, (IrLoc){0});
  expect_error(m, 1, &inf, "quantize: scale = 0 is not a positive finite f32 number");
  ir_module_free(m);

  /* qlinear_dyn's per-channel vectors must have N entries */
  m = ir_module_new("t");
  xf = ir_add_input(m, "x", F32(1, 2), (IrLoc){0});
  w = konst(m, "w", I8(3, 2), (int8_t[]){1, 1, 1, 1, 1, 1});
  IrValue *s2 = konst(m, "s", F32(2), (float[]){1, 1});
  n = NODE(m, QLINEAR_DYN, "y", F32(1, 3), xf, w, s2);
  ir_add_output(m, n->result, (IrLoc){0});
  IrTensor in2 = tensor(F32(1, 2), (float[]){0, 1});
  expect_error(m, 1, &in2, "qlinear_dyn: operands %x [1, 2], @w [3, 2], @s [2] do not give the "
                           "result %y [1, 3]");
  ir_module_free(m);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_quantize_u8),
      cmocka_unit_test(test_quantize_i8),
      cmocka_unit_test(test_dequantize),
      cmocka_unit_test(test_round_trip_and_observer),
      cmocka_unit_test(test_qgemm_u8_in_u8_out),
      cmocka_unit_test(test_qgemm_relu_clamps_at_zero_point),
      cmocka_unit_test(test_qgemm_i8_in_i8_out),
      cmocka_unit_test(test_qgemm_f32_in),
      cmocka_unit_test(test_qgemm_f32_out_relu),
      cmocka_unit_test(test_qgemm_accumulator_wraps),
      cmocka_unit_test(test_qlinear_per_tensor_and_channel),
      cmocka_unit_test(test_qlinear_equals_folded_qgemm),
      cmocka_unit_test(test_qlinear_approximates_float),
      cmocka_unit_test(test_qlinear_dyn),
      cmocka_unit_test(test_float_steps_round_separately),
      cmocka_unit_test(test_interp_node_qgemm),
      cmocka_unit_test(test_interp_node_errors),
      cmocka_unit_test(test_integer_input_checked),
      cmocka_unit_test(test_quantized_errors),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
