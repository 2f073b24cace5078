/* test_locale.c: the library reads and writes numbers the same under any
 * locale the embedding application sets (api/api.c runs every entry under
 * the C numeric locale). Under de_DE.UTF-8, whose decimal point is ',',
 * `range = [-2.5, 2.5]` used to read as [-2, 2] and print as
 * `[-2,5, 2,5]`. The locale must be installed (scripts/install-deps.sh
 * generates it); the test fails rather than skips without it, so that CI
 * cannot pass it silently. */
#include <locale.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "q8c.h"

static const char model[] =
    "model loc {\n"
    "  input %x : f32[?, 4] {range = [-2.5, 2.5]}\n"
    "  %y = relu %x {range = [0, 0.125]}\n"
    "  output %y\n"
    "}\n";

/* Set a comma-decimal locale, and check that it is in force for C's own
 * number formatting (else the test would prove nothing). */
static void comma_locale(void) {
  const char *names[] = {"de_DE.UTF-8", "de_DE.utf8"};
  const char *set = NULL;
  for (size_t i = 0; !set && i < sizeof names / sizeof names[0]; i++)
    set = setlocale(LC_ALL, names[i]);
  if (!set)
    fail_msg("the de_DE.UTF-8 locale is not installed (scripts/install-deps.sh generates it)");
  char buf[16];
  snprintf(buf, sizeof buf, "%.1f", 2.5);
  assert_string_equal(buf, "2,5");
}

static void test_parse_and_print_under_comma_locale(void **state) {
  comma_locale();
  q8c_module *m = NULL;
  assert_int_equal(q8c_parse_string("loc.ir", model, &m), Q8C_OK);
  char *text = NULL;
  assert_int_equal(q8c_module_print(m, &text), Q8C_OK);
  assert_non_null(strstr(text, "range = [-2.5, 2.5]"));
  assert_non_null(strstr(text, "range = [0, 0.125]"));
  /* What was printed parses back to the same text. */
  q8c_module *again = NULL;
  assert_int_equal(q8c_parse_string("again.ir", text, &again), Q8C_OK);
  char *text2 = NULL;
  assert_int_equal(q8c_module_print(again, &text2), Q8C_OK);
  assert_string_equal(text, text2);
  /* The interpreter sees 2.5, not 2: the range is used as given. */
  float x[4] = {-3, -1.5f, 0.5f, 2.25f}, y[4];
  const float *in[] = {x};
  float *out[] = {y};
  assert_int_equal(q8c_run_reference(m, 1, 1, in, 1, out), Q8C_OK);
  assert_true(y[3] == 2.25f && y[0] == 0);
  /* The caller's locale is back after each call. */
  char buf[16];
  snprintf(buf, sizeof buf, "%.1f", 2.5);
  assert_string_equal(buf, "2,5");
  free(text);
  free(text2);
  q8c_module_free(again);
  q8c_module_free(m);
  setlocale(LC_ALL, "C");
}

/* The bundled MLP (examples/mlp), calibrated, quantized and printed under
 * the comma locale and under "C": the same text, so the same scales, zero
 * points and ranges. */
static char *quantized_mlp(const char *locale) {
  setlocale(LC_ALL, locale);
  const char *data = getenv("Q8_TEST_DATA");
  assert_non_null(data);
  char ir[4096], calib[4096];
  snprintf(ir, sizeof ir, "%s/../../examples/mlp/mlp.ir", data);
  snprintf(calib, sizeof calib, "%s/../../examples/mlp/calib.npy", data);
  q8c_module *m = NULL;
  assert_int_equal(q8c_parse_file(ir, &m), Q8C_OK);
  q8c_quant_options qo = {.calib_path = calib};
  assert_int_equal(q8c_quantize(m, &qo), Q8C_OK);
  char *text = NULL;
  assert_int_equal(q8c_module_print(m, &text), Q8C_OK);
  q8c_module_free(m);
  return text;
}

static void test_quantize_under_comma_locale(void **state) {
  comma_locale();
  char *comma = quantized_mlp(setlocale(LC_ALL, NULL));
  char *c = quantized_mlp("C");
  assert_non_null(strstr(c, "scale = 0."));
  assert_string_equal(comma, c);
  free(comma);
  free(c);
  setlocale(LC_ALL, "C");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_parse_and_print_under_comma_locale),
      cmocka_unit_test(test_quantize_under_comma_locale),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
