/* test_support.c: the support module (growable buffers, error formatting,
 * comma lists, the string table) and the information the IR keeps on it:
 * the module's name table and use counts, which the passes rely on to stay
 * linear, and the typed attribute accessors. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ir/ir.h"
#include "support/support.h"
#include "testutil.h"

static void test_buf_grows_and_takes(void **state) {
  (void)state;
  SupBuf b = {0};
  for (int i = 0; i < 1000; i++)
    sup_buf_printf(&b, "%d,", i);
  sup_buf_put(&b, "end", 3);
  assert_false(b.oom);
  char *s = sup_buf_take(&b);
  assert_non_null(s);
  assert_int_equal(strncmp(s, "0,1,2,", 6), 0);
  assert_string_equal(s + strlen(s) - 7, "999,end");
  assert_null(b.p);
  free(s);
  /* An empty buffer gives an empty string. */
  s = sup_buf_take(&b);
  assert_string_equal(s, "");
  free(s);
}

static void test_errf_formats_and_returns_false(void **state) {
  (void)state;
  char err[16];
  assert_false(sup_errf(err, sizeof err, "bad %s at %d", "header", 12345678));
  assert_string_equal(err, "bad header at 1"); /* truncated, terminated */
  assert_false(sup_errf(NULL, 0, "ignored %d", 1));
}

static void test_list_next_walks_items(void **state) {
  (void)state;
  const char *want[] = {"a", "", "%bc", "d"};
  const char *it;
  size_t len;
  int n = 0;
  for (const char *p = "a,,%bc,d"; sup_list_next(&p, &it, &len); n++) {
    assert_true(n < 4);
    assert_int_equal(len, strlen(want[n]));
    assert_int_equal(memcmp(it, want[n], len), 0);
  }
  assert_int_equal(n, 4);
  const char *none = NULL;
  assert_false(sup_list_next(&none, &it, &len));
  const char *empty = "";
  assert_false(sup_list_next(&empty, &it, &len));
}

static void test_map_put_get_intern(void **state) {
  (void)state;
  SupMap t = {0};
  char keys[3000][16];
  for (int i = 0; i < 3000; i++) {
    snprintf(keys[i], sizeof keys[i], "k%d", i);
    assert_true(sup_map_put(&t, keys[i], &keys[i]));
  }
  for (int i = 0; i < 3000; i++) {
    char probe[16];
    snprintf(probe, sizeof probe, "k%d", i);
    assert_ptr_equal(sup_map_get(&t, probe), &keys[i]);
    assert_ptr_equal(sup_map_intern(&t, probe), keys[i]);
  }
  assert_null(sup_map_get(&t, "k3000"));
  /* A key set to NULL reads as absent but stays interned. */
  assert_true(sup_map_put(&t, keys[7], NULL));
  assert_null(sup_map_get(&t, "k7"));
  assert_ptr_equal(sup_map_intern(&t, "k7"), keys[7]);
  assert_int_equal(sup_hash("a", 1), sup_hash("a", 1));
  assert_int_not_equal(sup_hash("a", 1), sup_hash("b", 1));
  sup_map_free(&t);
  assert_null(sup_map_get(&t, "k1"));
}

/* %x -> relu %a -> relu %b, output %b. */
static IrModule *chain(IrNode **a, IrNode **b) {
  IrModule *m = ir_module_new("chain");
  IrValue *x = ir_add_input(m, "x", F32(1, 4), (IrLoc){0});
  *a = NODE(m, RELU, "a", F32(1, 4), x);
  *b = NODE(m, RELU, "b", F32(1, 4), (*a)->result);
  ir_add_output(m, (*b)->result, (IrLoc){0});
  return m;
}

static void test_name_table(void **state) {
  (void)state;
  IrNode *a, *b;
  IrModule *m = chain(&a, &b);
  assert_ptr_equal(ir_find_value(m, "a"), a->result);
  assert_ptr_equal(ir_find_value(m, "x"), m->inputs[0]);
  assert_null(ir_find_value(m, "c"));
  assert_string_equal(ir_unique_name(m, "a"), "a.1");
  assert_string_equal(ir_unique_name(m, "c"), "c");
  /* A node made but not yet listed holds its name. */
  IrNode *c = ir_new_node(m, IR_OP_RELU, NULL, "a.1", &b->result, 1, (IrLoc){0});
  assert_ptr_equal(ir_find_value(m, "a.1"), c->result);
  assert_string_equal(ir_unique_name(m, "a"), "a.2");
  /* Renaming releases the old name. */
  ir_rename_value(m, a->result, "z");
  assert_string_equal(a->result->name, "z");
  assert_null(ir_find_value(m, "a"));
  assert_ptr_equal(ir_find_value(m, "z"), a->result);
  /* Constants have their own names. */
  IrValue *w = konst(m, "a", F32(1), (float[]){1});
  assert_ptr_equal(ir_find_const(m, "a"), w);
  assert_string_equal(ir_unique_const_name(m, "a"), "a.1");
  /* Dead nodes and constants give their names up. */
  ir_set_operand(m, b, 0, m->inputs[0]);
  assert_int_equal(ir_remove_dead(m), 1);
  assert_null(ir_find_value(m, "z"));
  assert_null(ir_find_const(m, "a"));
  assert_string_equal(ir_unique_const_name(m, "a"), "a");
  ir_module_free(m);
}

static void test_use_counts(void **state) {
  (void)state;
  IrNode *a, *b;
  IrModule *m = chain(&a, &b);
  IrValue *x = m->inputs[0];
  assert_int_equal(ir_count_uses(m, x), 1);
  assert_int_equal(ir_count_uses(m, a->result), 1);
  assert_int_equal(ir_count_uses(m, b->result), 1); /* the output */
  ir_set_operand(m, b, 0, x);
  assert_int_equal(ir_count_uses(m, x), 2);
  assert_int_equal(ir_count_uses(m, a->result), 0);
  ir_replace_uses(m, x, a->result);
  assert_int_equal(ir_count_uses(m, x), 0);
  assert_int_equal(ir_count_uses(m, a->result), 2);
  /* A direct write, then a sweep. */
  a->opnds[0] = x;
  b->opnds[0] = x;
  ir_fill_uses(m);
  assert_int_equal(ir_count_uses(m, x), 2);
  assert_int_equal(ir_count_uses(m, a->result), 0);
  /* ir_set_node and ir_set_nodes keep the counts. */
  IrNode *d = ir_new_node(m, IR_OP_RELU, NULL, "d", &a->result, 1, (IrLoc){0});
  ir_set_node(m, 1, d);
  assert_int_equal(ir_count_uses(m, a->result), 1);
  assert_int_equal(ir_count_uses(m, x), 1);
  IrNode *list[2] = {a, b};
  ir_set_nodes(m, list, 2);
  assert_int_equal(ir_count_uses(m, a->result), 0);
  assert_int_equal(ir_count_uses(m, x), 2);
  assert_null(ir_find_value(m, "d")); /* left the list */
  assert_ptr_equal(ir_find_value(m, "b"), b->result); /* back in it */
  ir_module_free(m);
}

static void test_typed_attrs_and_qparams(void **state) {
  (void)state;
  IrModule *m = ir_module_new("q");
  IrValue *x = ir_add_input(m, "x", F32(1, 4), (IrLoc){0});
  IrNode *q = NODE(m, QUANTIZE, "q", U8(1, 4), x);
  IrQParams p = {0.5f, 3, IR_U8}, got = {0};
  assert_false(ir_get_qparams(q, IR_QPARAMS_OUT, &got));
  ir_set_qparams(m, q, IR_QPARAMS_OUT, &p);
  assert_true(ir_get_qparams(q, IR_QPARAMS_OUT, &got));
  assert_true(got.scale == 0.5f);
  assert_int_equal(got.zero_point, 3);
  assert_int_equal(got.dtype, IR_U8);
  assert_false(ir_get_qparams(q, IR_QPARAMS_IN, &got));
  assert_int_equal(ir_attr_int(q, IR_ATTR_ZERO_POINT, -1), 3);
  assert_int_equal(ir_attr_dtype(q, IR_ATTR_DTYPE, IR_F32), IR_U8);
  assert_true(ir_attr_float(q, IR_ATTR_EPS, 7.0) == 7.0); /* absent: the default */
  ir_set_attr_range(m, q, IR_ATTR_RANGE, -1, 2);
  double lo, hi;
  assert_true(ir_attr_range(q, IR_ATTR_RANGE, &lo, &hi));
  assert_true(lo == -1 && hi == 2);
  int64_t dims[IR_MAX_RANK];
  ir_set_attr_ints(m, q, IR_ATTR_SHAPE, (int64_t[]){IR_DIM_BATCH, 4}, 2);
  assert_int_equal(ir_attr_ints(q, IR_ATTR_SHAPE, dims, IR_MAX_RANK), 2);
  assert_int_equal(dims[0], IR_DIM_BATCH);
  assert_int_equal(ir_attr_ints(q, IR_ATTR_PERM, dims, IR_MAX_RANK), -1);
  assert_true(ir_dtype_is_quantized(IR_U8) && ir_dtype_is_quantized(IR_I8));
  assert_false(ir_dtype_is_quantized(IR_F32) || ir_dtype_is_quantized(IR_I32));
  ir_module_free(m);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_buf_grows_and_takes),
      cmocka_unit_test(test_errf_formats_and_returns_false),
      cmocka_unit_test(test_list_next_walks_items),
      cmocka_unit_test(test_map_put_get_intern),
      cmocka_unit_test(test_name_table),
      cmocka_unit_test(test_use_counts),
      cmocka_unit_test(test_typed_attrs_and_qparams),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
