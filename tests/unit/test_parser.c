/* test_parser.c: unit tests for the pieces under the text IR: the arena, type
 * arithmetic, number printing, the lexer, and the parser as embedders reach it
 * through q8c.h (parse, query, print, round trip, run the interpreter).
 *
 * Error texts for whole files are covered by the golden tests; here the focus
 * is on the API contract: what is returned, what is reported, what is freed. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "frontend/frontend.h"
#include "q8c.h"

static void test_arena_alignment_and_zeroing(void **state) {
  (void)state;
  IrArena *a = ir_arena_new();
  for (int i = 1; i < 2000; i += 37) {
    unsigned char *p = ir_alloc(a, (size_t)i);
    assert_int_equal((uintptr_t)p % 64, 0);
    for (int j = 0; j < i; j++)
      assert_int_equal(p[j], 0);
    memset(p, 0xab, (size_t)i);
  }
  /* A large block, then small ones again: both come back usable. */
  unsigned char *big = ir_alloc_data(a, 1 << 20);
  assert_non_null(big);
  big[(1 << 20) - 1] = 1;
  char *s = ir_strdup(a, "fc1.weight");
  assert_string_equal(s, "fc1.weight");
  assert_null(ir_alloc_data(a, SIZE_MAX - 8));
  ir_arena_free(a);
}

static void test_type_numel_overflow(void **state) {
  (void)state;
  IrType t = {IR_F32, 3, {IR_DIM_BATCH, 1LL << 31, 1LL << 31}};
  int64_t n;
  assert_true(ir_type_numel(&t, 1, &n));
  assert_int_equal(n, (int64_t)1 << 62);
  assert_false(ir_type_numel(&t, 2, &n)); /* 2^63 does not fit */
  IrType u = {IR_U8, 2, {IR_DIM_BATCH, 7}};
  IrType b = ir_type_bind(&u, 5);
  assert_int_equal(b.dims[0], 5);
  char buf[64];
  assert_string_equal(ir_type_str(&u, buf, sizeof buf), "u8[?, 7]");
  IrType scalar = {IR_F32, 0, {0}};
  assert_string_equal(ir_type_str(&scalar, buf, sizeof buf), "f32[]");
  assert_true(ir_type_numel(&scalar, 1, &n));
  assert_int_equal(n, 1);
}

static void test_format_double_round_trips(void **state) {
  (void)state;
  const double vals[] = {0.1, 1.0 / 3, -2.5, 1e-300, 5e-324, 1e300, 123456789.0, -0.0,
                         3.4028234663852886e38, 1e-5, (float)0.026966326, (float)1e-7, 30.0};
  for (size_t i = 0; i < sizeof vals / sizeof vals[0]; i++) {
    char buf[64], again[64];
    ir_format_double(vals[i], buf, sizeof buf);
    double r = strtod(buf, NULL);
    /* f32 values read back as the same f32, the others exactly. */
    if ((double)(float)vals[i] == vals[i])
      assert_true((float)r == (float)vals[i]);
    else
      assert_true(r == vals[i]);
    assert_true(signbit(r) == signbit(vals[i]));
    /* Printing what was read gives the same text: dumps are stable. */
    ir_format_double(r, again, sizeof again);
    assert_string_equal(buf, again);
  }
  struct {
    double v;
    const char *text;
  } spell[] = {{0.1, "0.1"}, {1e-5, "0.00001"}, {30.0, "30"}, {(float)0.026966326, "0.026966326"},
               {(float)0.1, "0.1"}, {1e300, "1e+300"}, {-2.5, "-2.5"}};
  for (size_t i = 0; i < sizeof spell / sizeof spell[0]; i++) {
    char buf[64];
    ir_format_double(spell[i].v, buf, sizeof buf);
    assert_string_equal(buf, spell[i].text);
  }
}

static void test_lexer_tokens_and_positions(void **state) {
  (void)state;
  IrDiag d;
  const char *src = "model m {\n  %h : f32[?, 64] = linear %x, @fc1.weight ; c\n -1.5e3 \"a\\\"b\"";
  ir_diag_init(&d, "t.ir", src);
  FeLexer lx;
  fe_lex_init(&lx, src, &d);
  FeTokKind want[] = {FE_TK_IDENT, FE_TK_IDENT, FE_TK_PUNCT,  FE_TK_LOCAL,  FE_TK_PUNCT,
                      FE_TK_IDENT, FE_TK_PUNCT, FE_TK_PUNCT,  FE_TK_PUNCT,  FE_TK_NUMBER,
                      FE_TK_PUNCT, FE_TK_PUNCT, FE_TK_IDENT,  FE_TK_LOCAL,  FE_TK_PUNCT,
                      FE_TK_GLOBAL, FE_TK_NUMBER, FE_TK_STRING, FE_TK_EOF};
  FeToken t;
  for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
    assert_true(fe_lex_next(&lx, &t));
    assert_int_equal(t.kind, want[i]);
    if (i == 3) {
      assert_int_equal(t.loc.line, 2);
      assert_int_equal(t.loc.col, 3);
      assert_int_equal(t.len, 1);
    }
    if (i == 15)
      assert_int_equal(t.len, 10);
    if (i == 16) {
      assert_true(t.num == -1500.0);
      assert_false(t.is_int);
    }
    if (i == 17)
      assert_int_equal(t.len, 4);
  }
  assert_false(d.failed);
}

static void test_lexer_rejects_bad_tokens(void **state) {
  (void)state;
  const char *bad[] = {"%", "@ x", "\"open", "12abc", "#", "\x01"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    IrDiag d;
    ir_diag_init(&d, "t.ir", bad[i]);
    FeLexer lx;
    fe_lex_init(&lx, bad[i], &d);
    FeToken t;
    bool ok = true;
    for (int n = 0; ok && n < 4; n++)
      ok = fe_lex_next(&lx, &t) && t.kind != FE_TK_EOF;
    assert_true(d.failed);
    assert_non_null(strstr(d.msg, "t.ir:1:"));
  }
}

static const char tiny[] =
    "model tiny {\n"
    "  input %a : f32[?, 3]\n"
    "  input %b : f32[3]\n"
    "  %c = add %a, %b\n"
    "  %d = mul %c, %c {range = [0, 36]}\n"
    "  %e = relu %d\n"
    "  output %e, %c\n"
    "}\n";

static void test_api_parse_query_run(void **state) {
  (void)state;
  q8c_module *m;
  assert_int_equal(q8c_parse_string("tiny.ir", tiny, &m), Q8C_OK);
  assert_non_null(m);
  assert_null(q8c_module_error(m));
  assert_int_equal(q8c_num_inputs(m), 2);
  assert_int_equal(q8c_num_outputs(m), 2);
  assert_string_equal(q8c_input_name(m, 1), "b");
  assert_string_equal(q8c_output_name(m, 1), "c");
  assert_null(q8c_input_name(m, 2));
  int64_t dims[Q8C_MAX_RANK];
  assert_int_equal(q8c_output_shape(m, 0, 2, dims), 2);
  assert_int_equal(dims[0], 2);
  assert_int_equal(dims[1], 3);
  assert_int_equal(q8c_input_shape(m, 5, 2, dims), -1);

  const float a[6] = {1, 2, 3, -4, -5, -6}, b[3] = {1, 1, 1};
  float e[6], c[6];
  const float *in[2] = {a, b};
  float *out[2] = {e, c};
  assert_int_equal(q8c_run_reference(m, 2, 2, in, 2, out), Q8C_OK);
  const float want_c[6] = {2, 3, 4, -3, -4, -5};
  for (int i = 0; i < 6; i++) {
    assert_true(c[i] == want_c[i]);
    assert_true(e[i] == want_c[i] * want_c[i]);
  }
  q8c_module_free(m);
}

static void test_api_round_trip(void **state) {
  (void)state;
  q8c_module *m, *again;
  char *text, *text2;
  q8c_parse_string("tiny.ir", tiny, &m);
  assert_int_equal(q8c_module_print(m, &text), Q8C_OK);
  assert_non_null(text);
  assert_non_null(strstr(text, "%d : f32[?, 3] = mul %c, %c {range = [0, 36]}"));
  q8c_parse_string("again.ir", text, &again);
  assert_null(q8c_module_error(again));
  q8c_module_print(again, &text2);
  assert_string_equal(text, text2);
  free(text);
  free(text2);
  q8c_module_free(m);
  q8c_module_free(again);
}

static void test_api_reports_errors(void **state) {
  (void)state;
  q8c_module *m;
  assert_int_equal(q8c_parse_string("dir/bad.ir", "model m {\n  input %x : f32[2]\n  %y = relu %z\n  output %y\n}\n", &m), Q8C_ERR_MODEL);
  assert_non_null(m);
  assert_string_equal(q8c_module_error(m),
                      "dir/bad.ir:3:13: error: value %z is not defined (values must be defined "
                      "before use)\n    %y = relu %z\n              ^");
  char *text = (char *)"unset";
  assert_int_equal(q8c_module_print(m, &text), Q8C_ERR_MODEL);
  assert_null(text);
  const float x[2] = {0};
  float y[2];
  const float *in[1] = {x};
  float *out[1] = {y};
  assert_int_equal(q8c_run_reference(m, 1, 1, in, 1, out), Q8C_ERR_MODEL);
  q8c_module_free(m);

  assert_int_equal(q8c_parse_file("/nonexistent/model.ir", &m), Q8C_ERR_MODEL);
  assert_string_equal(q8c_module_error(m), "/nonexistent/model.ir: error: cannot open: No such file or directory");
  q8c_module_free(m);

  /* NULL arguments are refused, not dereferenced. */
  assert_int_equal(q8c_parse_string("x", NULL, &m), Q8C_ERR_ARG);
  assert_string_equal(q8c_module_error(m), "q8c_parse_string: text is NULL");
  q8c_module_free(m);
  assert_int_equal(q8c_parse_file(NULL, &m), Q8C_ERR_ARG);
  assert_string_equal(q8c_module_error(m), "q8c_parse_file: path is NULL");
  q8c_module_free(m);
  assert_string_equal(q8c_module_error(NULL), "no module");
  assert_int_equal(q8c_num_inputs(NULL), -1);
  assert_int_equal(q8c_run_reference(NULL, 1, 1, in, 1, out), Q8C_ERR_ARG);
  q8c_module_free(NULL);
}

static void test_only_first_error_is_kept(void **state) {
  (void)state;
  IrDiag d;
  ir_diag_init(&d, "f.ir", "abc\ndef\n");
  assert_false(ir_error(&d, (IrLoc){2, 2}, "first %d", 1));
  ir_error(&d, (IrLoc){1, 1}, "second");
  assert_string_equal(d.msg, "f.ir:2:2: error: first 1\n  def\n   ^");
}

static void test_verifier_catches_broken_graphs(void **state) {
  (void)state;
  IrModule *m = ir_module_new("v");
  IrType t = {IR_F32, 1, {4}};
  IrValue *x = ir_add_input(m, "x", t, (IrLoc){0});
  IrNode *n = ir_add_node(m, IR_OP_RELU, "y", &x, 1, (IrLoc){0});
  n->result->type = t;
  ir_add_output(m, n->result, (IrLoc){0});
  assert_true(ir_verify(m));

  /* A pass that forgot to update a type. */
  n->result->type.dims[0] = 5;
  assert_false(ir_verify(m));
  assert_string_equal(m->diag.msg, "<input>: error: %y has type f32[5] but relu computes f32[4]");

  /* A node that uses a value defined after it. */
  IrModule *m2 = ir_module_new("v2");
  IrValue *x2 = ir_add_input(m2, "x", t, (IrLoc){0});
  IrNode *a = ir_add_node(m2, IR_OP_RELU, "a", &x2, 1, (IrLoc){0});
  a->result->type = t;
  IrNode *b = ir_add_node(m2, IR_OP_RELU, "b", &a->result, 1, (IrLoc){0});
  b->result->type = t;
  a->opnds[0] = b->result;
  ir_add_output(m2, b->result, (IrLoc){0});
  assert_false(ir_verify(m2));
  assert_non_null(strstr(m2->diag.msg, "operand %b is not defined before its use"));
  ir_module_free(m);
  ir_module_free(m2);
}

/* A literal operand is an f32[] constant marked as such, printed back as
 * the number; a name-valued attribute reads through its accessor; -inf is
 * a number. */
static void test_literals_and_name_attrs(void **state) {
  (void)state;
  IrModule *m = fe_parse("lit.ir", "model t {\n"
                                   "  input %x : f32[?, 4]\n"
                                   "  %a = mul %x, 0.125\n"
                                   "  %b = sub -inf, %a\n"
                                   "  %g = gelu %b {approximate = tanh}\n"
                                   "  output %g\n"
                                   "}\n");
  assert_false(m->diag.failed);
  assert_int_equal(m->nconsts, 2);
  const IrValue *c = m->nodes[0]->opnds[1];
  assert_true(c->kind == IR_VAL_CONST && c->literal);
  assert_string_equal(c->name, "lit.0");
  assert_int_equal(c->type.rank, 0);
  assert_true(*(const float *)c->data == 0.125f);
  assert_true(*(const float *)m->nodes[1]->opnds[0]->data == -INFINITY);
  assert_int_equal(ir_attr_name(m->nodes[2], IR_ATTR_APPROXIMATE, -1), IR_GELU_TANH);
  assert_int_equal(ir_attr_name(m->nodes[1], IR_ATTR_APPROXIMATE, -1), -1);
  assert_int_equal(ir_attr_name_index(IR_ATTR_APPROXIMATE, "none", 4), IR_GELU_NONE);
  assert_int_equal(ir_attr_name_index(IR_ATTR_APPROXIMATE, "exact", 5), -1);
  char *text = ir_print(m);
  assert_non_null(strstr(text, "= mul %x, 0.125\n"));
  assert_non_null(strstr(text, "= sub -inf, %a\n"));
  assert_non_null(strstr(text, "= gelu %b {approximate = tanh}\n"));
  free(text);
  ir_module_free(m);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_arena_alignment_and_zeroing),
      cmocka_unit_test(test_type_numel_overflow),
      cmocka_unit_test(test_format_double_round_trips),
      cmocka_unit_test(test_lexer_tokens_and_positions),
      cmocka_unit_test(test_lexer_rejects_bad_tokens),
      cmocka_unit_test(test_api_parse_query_run),
      cmocka_unit_test(test_api_round_trip),
      cmocka_unit_test(test_api_reports_errors),
      cmocka_unit_test(test_only_first_error_is_kept),
      cmocka_unit_test(test_verifier_catches_broken_graphs),
      cmocka_unit_test(test_literals_and_name_attrs),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
