/* test_onnx_dims.c: q8c_parse_file_dims, the C API's `--dim NAME=N`.
 *
 * tests/data/onnx/dims.onnx is one Relu on x [batch, seq, 4] (both dims
 * symbolic). Without bindings the import refuses `seq` (not the first axis);
 * bound, the input's shape is [?, 5, 4]; with `batch` bound too, [3, 5, 4]
 * whatever batch the caller asks for. Out-of-bounds bindings are
 * Q8C_ERR_ARG with a message saying which, as `q8c --dim` refuses them. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "q8c.h"

static char path[4096];

static int setup(void **state) {
  (void)state;
  const char *data = getenv("Q8_TEST_DATA");
  if (!data)
    return -1;
  snprintf(path, sizeof path, "%s/onnx/dims.onnx", data);
  return 0;
}

static void test_unbound(void **state) {
  (void)state;
  q8c_module *m = NULL;
  assert_int_equal(q8c_parse_file(path, &m), Q8C_ERR_MODEL);
  assert_non_null(strstr(q8c_module_error(m), "dimension 1 is symbolic ('seq'); bind it with "
                                              "--dim seq=N"));
  q8c_module_free(m);
  /* No bindings at all is q8c_parse_file. */
  assert_int_equal(q8c_parse_file_dims(path, 0, NULL, NULL, &m), Q8C_ERR_MODEL);
  q8c_module_free(m);
}

static void test_bound(void **state) {
  (void)state;
  const char *names[2] = {"seq", "batch"};
  const int64_t values[2] = {5, 3};
  int64_t dims[Q8C_MAX_RANK];
  q8c_module *m = NULL;
  assert_int_equal(q8c_parse_file_dims(path, 1, names, values, &m), Q8C_OK);
  assert_null(q8c_module_error(m));
  assert_int_equal(q8c_input_shape(m, 0, 2, dims), 3);
  assert_int_equal(dims[0], 2); /* the batch stays dynamic */
  assert_int_equal(dims[1], 5);
  assert_int_equal(dims[2], 4);
  q8c_module_free(m);
  assert_int_equal(q8c_parse_file_dims(path, 2, names, values, &m), Q8C_OK);
  assert_int_equal(q8c_input_shape(m, 0, 7, dims), 3);
  assert_int_equal(dims[0], 3);
  assert_int_equal(dims[1], 5);
  q8c_module_free(m);
  /* A name the model does not use is ignored. */
  const char *other[2] = {"seq", "past"};
  assert_int_equal(q8c_parse_file_dims(path, 2, other, values, &m), Q8C_OK);
  q8c_module_free(m);
}

/* One refused binding: Q8C_ERR_ARG, and the message. */
static void refused(int n, const char *const *names, const int64_t *values, const char *want) {
  q8c_module *m = NULL;
  assert_int_equal(q8c_parse_file_dims(path, n, names, values, &m), Q8C_ERR_ARG);
  assert_non_null(m);
  if (strcmp(q8c_module_error(m), want) != 0)
    fail_msg("got '%s', want '%s'", q8c_module_error(m), want);
  q8c_module_free(m);
}

static void test_bad_bindings(void **state) {
  (void)state;
  const char *names[17] = {"seq"};
  int64_t values[17] = {5};
  refused(17, names, values, "q8c_parse_file_dims: ndims is 17; it takes 0 to 16 bindings");
  refused(-1, names, values, "q8c_parse_file_dims: ndims is -1; it takes 0 to 16 bindings");
  refused(1, NULL, values, "q8c_parse_file_dims: names or values is NULL");
  refused(1, names, NULL, "q8c_parse_file_dims: names or values is NULL");
  values[0] = 0;
  refused(1, names, values, "q8c_parse_file_dims: values[0] (seq) is 0; a dim is 1 to 2^31");
  values[0] = 5;
  const char *empty[1] = {""};
  refused(1, empty, values,
          "q8c_parse_file_dims: names[0] is NULL, empty or longer than 63 bytes");
  assert_int_equal(q8c_parse_file_dims(path, 1, names, values, NULL), Q8C_ERR_ARG);
  q8c_module *m = NULL;
  assert_int_equal(q8c_parse_file_dims(NULL, 1, names, values, &m), Q8C_ERR_ARG);
  q8c_module_free(m);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_unbound),
      cmocka_unit_test(test_bound),
      cmocka_unit_test(test_bad_bindings),
  };
  return cmocka_run_group_tests(tests, setup, NULL);
}
