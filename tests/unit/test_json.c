/* test_json.c: unit tests of the strict JSON parser (frontend/json.c).
 *
 * The parser reads untrusted safetensors headers, so besides the values it
 * produces these tests pin down what it must refuse (every deviation from
 * RFC 8259 we could think of), the exact error texts that users will see, the
 * nesting limit, and that mutated inputs never crash it. */
#include <locale.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "frontend/frontend.h"

static int setup(void **state) {
  *state = ir_arena_new();
  return 0;
}

static int teardown(void **state) {
  ir_arena_free(*state);
  return 0;
}

static FeJson *parse_n(void **state, const char *text, size_t len, char *err, size_t errlen) {
  return fe_json_parse(*state, text, len, err, errlen);
}

static FeJson *parse_ok(void **state, const char *text) {
  char err[256];
  FeJson *v = parse_n(state, text, strlen(text), err, sizeof err);
  if (!v)
    fail_msg("parsing %s: %s", text, err);
  return v;
}

/* The error text for `text` (which must fail). */
static const char *parse_err(void **state, const char *text, size_t len) {
  static char err[256];
  strcpy(err, "(no error written)");
  FeJson *v = parse_n(state, text, len, err, sizeof err);
  if (v)
    fail_msg("accepted invalid JSON: %.*s", (int)len, text);
  return err;
}

static void test_literals(void **state) {
  FeJson *v = parse_ok(state, "true");
  assert_int_equal(v->kind, FE_JSON_BOOL);
  assert_true(v->b);
  v = parse_ok(state, " false ");
  assert_int_equal(v->kind, FE_JSON_BOOL);
  assert_false(v->b);
  v = parse_ok(state, "\t\r\nnull\n");
  assert_int_equal(v->kind, FE_JSON_NULL);
}

static void test_numbers(void **state) {
  static const struct {
    const char *text;
    double val;
  } cases[] = {
      {"0", 0},          {"-0", -0.0},        {"7", 7},          {"-12", -12},
      {"1.5", 1.5},      {"1.5e3", 1500},     {"-1E-2", -0.01},  {"2e+2", 200},
      {"0.125", 0.125},  {"9007199254740993", 9007199254740992.0},
      {"123456789012345678901234567890", 1.2345678901234568e29}, {"1e-400", 0},
      {"1.7976931348623157e308", 1.7976931348623157e308},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    FeJson *v = parse_ok(state, cases[i].text);
    assert_int_equal(v->kind, FE_JSON_NUM);
    assert_true(v->num == cases[i].val);
  }
  assert_true(signbit(parse_ok(state, "-0")->num));
  assert_false(signbit(parse_ok(state, "0")->num));
}

/* strtod follows LC_NUMERIC; the parser must not. Skipped when no locale with
 * a decimal comma is installed. */
static void test_numbers_ignore_locale(void **state) {
  static const char *const comma_locales[] = {"de_DE.UTF-8", "de_DE.utf8", "fr_FR.UTF-8", "de_DE"};
  const char *set = NULL;
  for (size_t i = 0; i < sizeof comma_locales / sizeof comma_locales[0] && !set; i++)
    set = setlocale(LC_NUMERIC, comma_locales[i]);
  if (!set)
    skip();
  FeJson *v = parse_ok(state, "[1.5, 2.25e1]");
  setlocale(LC_NUMERIC, "C");
  assert_true(v->items[0].num == 1.5);
  assert_true(v->items[1].num == 22.5);
}

static void test_strings(void **state) {
  FeJson *v = parse_ok(state, "\"plain\"");
  assert_int_equal(v->kind, FE_JSON_STR);
  assert_string_equal(v->str, "plain");
  assert_int_equal(v->len, 5);

  v = parse_ok(state, "\"\\\" \\\\ \\/ \\b \\f \\n \\r \\t\"");
  assert_string_equal(v->str, "\" \\ / \b \f \n \r \t");

  v = parse_ok(state, "\"\"");
  assert_string_equal(v->str, "");
  assert_int_equal(v->len, 0);

  /* \u escapes become UTF-8: 1, 2, 3 bytes, and a surrogate pair 4 bytes. */
  v = parse_ok(state, "\"\\u0041\\u00e9\\u20AC\\ud83d\\ude00\"");
  assert_string_equal(v->str, "A\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80");
  assert_int_equal(v->len, 10);

  /* Raw UTF-8 passes through unchanged. */
  v = parse_ok(state, "\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\"");
  assert_string_equal(v->str, "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80");

  /* A NUL inside a value is kept; len tells the real length. */
  v = parse_ok(state, "\"a\\u0000b\"");
  assert_int_equal(v->len, 3);
  assert_memory_equal(v->str, "a\0b", 4);

  /* Highest code point, U+10FFFF, as an escape pair. */
  v = parse_ok(state, "\"\\udbff\\udfff\"");
  assert_string_equal(v->str, "\xf4\x8f\xbf\xbf");
}

static void test_arrays_and_objects(void **state) {
  FeJson *v = parse_ok(state, " [ 1 , [ ] , { } , \"x\" , [true, null] ] ");
  assert_int_equal(v->kind, FE_JSON_ARR);
  assert_int_equal(v->len, 5);
  assert_true(v->items[0].num == 1);
  assert_int_equal(v->items[1].kind, FE_JSON_ARR);
  assert_int_equal(v->items[1].len, 0);
  assert_int_equal(v->items[2].kind, FE_JSON_OBJ);
  assert_int_equal(v->items[2].len, 0);
  assert_string_equal(v->items[3].str, "x");
  assert_int_equal(v->items[4].len, 2);
  assert_int_equal(v->items[4].items[1].kind, FE_JSON_NULL);

  v = parse_ok(state, "{\"a\": 1, \"b\": {\"c\": [2, 3]}, \"\": \"empty key\"}");
  assert_int_equal(v->kind, FE_JSON_OBJ);
  assert_int_equal(v->len, 3);
  assert_string_equal(v->keys[0], "a");
  assert_string_equal(v->keys[1], "b");
  const FeJson *b = fe_json_get(v, "b");
  assert_non_null(b);
  const FeJson *c = fe_json_get(b, "c");
  assert_non_null(c);
  assert_int_equal(c->len, 2);
  assert_true(c->items[1].num == 3);
  assert_string_equal(fe_json_get(v, "")->str, "empty key");
  assert_null(fe_json_get(v, "missing"));
  assert_null(fe_json_get(c, "a"));   /* not an object */
  assert_null(fe_json_get(NULL, "a"));

  /* Many items, past several doublings of the item arrays. */
  char big[8192];
  size_t n = 0;
  n += (size_t)snprintf(big + n, sizeof big - n, "[");
  for (int i = 0; i < 1000; i++)
    n += (size_t)snprintf(big + n, sizeof big - n, "%s%d", i ? "," : "", i);
  snprintf(big + n, sizeof big - n, "]");
  v = parse_ok(state, big);
  assert_int_equal(v->len, 1000);
  for (int i = 0; i < 1000; i++)
    assert_true(v->items[i].num == i);
}

static void test_duplicate_keys_kept(void **state) {
  /* Duplicates are kept in order (safetensors reports duplicate tensors);
   * lookups find the first. */
  FeJson *v = parse_ok(state, "{\"k\": 1, \"k\": 2}");
  assert_int_equal(v->len, 2);
  assert_string_equal(v->keys[1], "k");
  assert_true(fe_json_get(v, "k")->num == 1);
}

static char *nested(int depth) {
  char *s = malloc((size_t)depth * 2 + 1);
  for (int i = 0; i < depth; i++) {
    s[i] = '[';
    s[depth + i] = ']';
  }
  s[2 * depth] = '\0';
  return s;
}

static void test_depth_limit(void **state) {
  char *s = nested(64);
  FeJson *v = parse_ok(state, s);
  for (int i = 0; i < 63; i++) {
    assert_int_equal(v->kind, FE_JSON_ARR);
    v = &v->items[0];
  }
  assert_int_equal(v->len, 0);
  free(s);

  s = nested(65);
  assert_string_equal(parse_err(state, s, strlen(s)),
                      "invalid JSON: nesting deeper than 64 at offset 64");
  free(s);

  /* Objects count too, and a deep unclosed input is refused before it can
   * recurse further. */
  char deep[5 * 65 + 1];
  for (int i = 0; i < 65; i++)
    memcpy(deep + 5 * i, i % 2 ? "[    " : "{\"a\":", 5);
  deep[5 * 65] = '\0';
  const char *e = parse_err(state, deep, strlen(deep));
  assert_non_null(strstr(e, "nesting deeper than 64"));
  char *huge = malloc(100001);
  memset(huge, '[', 100000);
  huge[100000] = '\0';
  assert_string_equal(parse_err(state, huge, 100000),
                      "invalid JSON: nesting deeper than 64 at offset 64");
  free(huge);
}

static void test_error_messages(void **state) {
  static const struct {
    const char *text;
    const char *err;
  } cases[] = {
      {"", "invalid JSON: expected a value at offset 0"},
      {"   ", "invalid JSON: expected a value at offset 3"},
      {"{\"a\": 1 \"b\": 2}", "invalid JSON: expected ',' or '}' at offset 8"},
      {"[1 2]", "invalid JSON: expected ',' or ']' at offset 3"},
      {"{\"a\" 1}", "invalid JSON: expected ':' at offset 5"},
      {"{a: 1}", "invalid JSON: expected a string as object key at offset 1"},
      {"{\"a\": 1,}", "invalid JSON: expected a string as object key at offset 8"},
      {"[1,]", "invalid JSON: expected a value at offset 3"},
      {"[,1]", "invalid JSON: expected a value at offset 1"},
      {"[1", "invalid JSON: expected ',' or ']' at offset 2"},
      {"{\"a\":", "invalid JSON: expected a value at offset 5"},
      {"\"abc", "invalid JSON: unterminated string at offset 0"},
      {"\"a\nb\"", "invalid JSON: control character 0x0a in string at offset 2"},
      {"\"a\tb\"", "invalid JSON: control character 0x09 in string at offset 2"},
      {"\"\\x\"", "invalid JSON: invalid escape '\\x' in string at offset 1"},
      {"\"\\u12\"", "invalid JSON: invalid \\u escape in string at offset 1"},
      {"\"\\u12g4\"", "invalid JSON: invalid \\u escape in string at offset 1"},
      {"\"\\ud800\"", "invalid JSON: unpaired surrogate in string at offset 1"},
      {"\"\\udc00\"", "invalid JSON: unpaired surrogate in string at offset 1"},
      {"\"x\\ud800\\u0041\"", "invalid JSON: unpaired surrogate in string at offset 2"},
      {"\"\\ud800\\ud800\"", "invalid JSON: unpaired surrogate in string at offset 1"},
      {"\"\xc3\"", "invalid JSON: invalid UTF-8 in string at offset 1"},
      {"01", "invalid JSON: invalid number (leading zero) at offset 0"},
      {"[-01]", "invalid JSON: invalid number (leading zero) at offset 1"},
      {"1.", "invalid JSON: invalid number (expected a digit after '.') at offset 0"},
      {"1e", "invalid JSON: invalid number (expected a digit in the exponent) at offset 0"},
      {"1e+", "invalid JSON: invalid number (expected a digit in the exponent) at offset 0"},
      {"-", "invalid JSON: invalid number at offset 0"},
      {"1e400", "invalid JSON: number out of range at offset 0"},
      {"-1e400", "invalid JSON: number out of range at offset 0"},
      {"tru", "invalid JSON: invalid literal at offset 0"},
      {"nul", "invalid JSON: invalid literal at offset 0"},
      {"[1] x", "invalid JSON: unexpected data after the value at offset 4"},
      {"1 2", "invalid JSON: unexpected data after the value at offset 2"},
      {"{\"a\\u0000b\": 1}", "invalid JSON: object key contains \\u0000 at offset 1"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    const char *e = parse_err(state, cases[i].text, strlen(cases[i].text));
    if (strcmp(e, cases[i].err) != 0)
      fail_msg("input %s\n  got      %s\n  expected %s", cases[i].text, e, cases[i].err);
  }
}

/* Inputs other parsers take but RFC 8259 does not. */
static void test_rejects_non_json(void **state) {
  static const char *const bad[] = {
      ".5", "+1", "0x10", "1.e5", "-.5", "NaN", "Infinity", "-Infinity", "'x'", "[1,]",
      "{\"a\":1,}", "// c\n1", "/* c */ 1", "[1]]", "{}}", "{\"a\"}", "{\"a\":}", "[\"a\":1]",
      "\xef\xbb\xbf{}",       /* byte order mark */
      "\"\xc0\xaf\"",         /* overlong '/' */
      "\"\xe0\x80\xaf\"",     /* overlong, three bytes */
      "\"\xed\xa0\x80\"",     /* UTF-8 encoded surrogate */
      "\"\xf4\x90\x80\x80\"", /* past U+10FFFF */
      "\"\xf8\x88\x80\x80\x80\"", "\"\x80\"", "\"\xe2\x82\"", "\xff", "\"\\\"", "\"\\",
      "\"\x7f\x01\"", "\v1", "\f1", "[1\v]", "True", "nulll", "{\"a\":1 \"b\":2}", "[", "{", "]",
      "}", ",", ":", "\"\\U0041\"", "\"\\u+041\"", "1_000", "1.5.2", "--1", "1e5e5", "0.",
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    const char *e = parse_err(state, bad[i], strlen(bad[i]));
    if (strncmp(e, "invalid JSON: ", 14) != 0 || !strstr(e, " at offset "))
      fail_msg("input %s: unexpected message %s", bad[i], e);
  }
  /* Bytes after a NUL are still input: the length is what counts. */
  assert_string_equal(parse_err(state, "1\0", 2),
                      "invalid JSON: unexpected data after the value at offset 1");
  assert_string_equal(parse_err(state, "\"a\0b\"", 5),
                      "invalid JSON: control character 0x00 in string at offset 2");
  /* A length that cuts the text short. */
  assert_string_equal(parse_err(state, "[1, 2]", 4), "invalid JSON: expected a value at offset 4");
  assert_null(fe_json_parse(*state, NULL, 0, NULL, 0));
}

static uint32_t rng_next(uint32_t *s) {
  *s ^= *s << 13;
  *s ^= *s >> 17;
  *s ^= *s << 5;
  return *s;
}

/* Mutations of a valid document: whatever happens, the parser returns either
 * a value or a well-formed message, and sanitizers see no bad access. */
static void test_mutations_never_crash(void **state) {
  static const char doc[] =
      "{\"w\": {\"dtype\": \"F32\", \"shape\": [2, 3], \"data_offsets\": [0, 24]},"
      " \"s\": \"\\u00e9\\ud83d\\ude00\\n\", \"n\": [-1.5e-3, true, false, null, {}]}";
  static const char alphabet[] = "{}[],:\"\\u0123456789abcdefEe+-. \ntrfn\x80\xc3\xed\xf0\xff";
  uint32_t seed = 12345;
  char buf[sizeof doc + 8];
  int accepted = 0;
  for (int iter = 0; iter < 20000; iter++) {
    size_t len = sizeof doc - 1;
    memcpy(buf, doc, len);
    int edits = 1 + (int)(rng_next(&seed) % 4);
    for (int k = 0; k < edits; k++) {
      size_t at = rng_next(&seed) % len;
      switch (rng_next(&seed) % 3) {
      case 0: /* replace a byte */
        buf[at] = alphabet[rng_next(&seed) % (sizeof alphabet - 1)];
        break;
      case 1: /* delete a byte */
        memmove(buf + at, buf + at + 1, len - at - 1);
        len--;
        break;
      default: /* truncate */
        len = at;
        break;
      }
      if (len == 0)
        break;
    }
    /* Copy to an exact-size heap block so that reading past `len` is caught. */
    char *exact = malloc(len ? len : 1);
    memcpy(exact, buf, len);
    char err[256] = "";
    FeJson *v = fe_json_parse(*state, exact, len, err, sizeof err);
    if (v)
      accepted++;
    else if (strncmp(err, "invalid JSON: ", 14) != 0)
      fail_msg("unexpected message %s", err);
    free(exact);
  }
  assert_true(accepted > 0);
  assert_true(accepted < 20000);
}

static void test_small_error_buffer(void **state) {
  char err[8];
  assert_null(fe_json_parse(*state, "[1,]", 4, err, sizeof err));
  assert_string_equal(err, "invalid");
  assert_null(fe_json_parse(*state, "[1,]", 4, NULL, 0));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_literals, setup, teardown),
      cmocka_unit_test_setup_teardown(test_numbers, setup, teardown),
      cmocka_unit_test_setup_teardown(test_numbers_ignore_locale, setup, teardown),
      cmocka_unit_test_setup_teardown(test_strings, setup, teardown),
      cmocka_unit_test_setup_teardown(test_arrays_and_objects, setup, teardown),
      cmocka_unit_test_setup_teardown(test_duplicate_keys_kept, setup, teardown),
      cmocka_unit_test_setup_teardown(test_depth_limit, setup, teardown),
      cmocka_unit_test_setup_teardown(test_error_messages, setup, teardown),
      cmocka_unit_test_setup_teardown(test_rejects_non_json, setup, teardown),
      cmocka_unit_test_setup_teardown(test_mutations_never_crash, setup, teardown),
      cmocka_unit_test_setup_teardown(test_small_error_buffer, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
