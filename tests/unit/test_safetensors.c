/* test_safetensors.c: unit tests of the safetensors reader and writer
 * (frontend/safetensors.c).
 *
 * Files are assembled in memory from a header string and data bytes, so each
 * test shows the exact header it feeds. Every error the reader can report is
 * checked by its full text, because users see these messages (prefixed with
 * the `weights` directive's position) and golden files compare them. The F16
 * and BF16 widening is checked on the values where conversions usually go
 * wrong: subnormals, infinities, NaN and negative zero. */
#include <errno.h>
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

static int setup(void **state) {
  *state = ir_arena_new();
  return 0;
}

static int teardown(void **state) {
  ir_arena_free(*state);
  return 0;
}

/* Bytes of a safetensors file: `hlen` as the length field (the real header
 * length for well-formed files), the header text, then `dlen` data bytes.
 * Exactly sized on the heap so that sanitizers catch reads past the end. */
static unsigned char *make_raw(uint64_t hlen, const char *header, const void *data, size_t dlen,
                               size_t *size) {
  size_t h = strlen(header);
  *size = 8 + h + dlen;
  unsigned char *b = malloc(*size);
  for (int i = 0; i < 8; i++)
    b[i] = (unsigned char)(hlen >> (8 * i));
  memcpy(b + 8, header, h);
  if (dlen)
    memcpy(b + 8 + h, data, dlen);
  return b;
}

static unsigned char *make_st(const char *header, const void *data, size_t dlen, size_t *size) {
  return make_raw(strlen(header), header, data, dlen, size);
}

static const unsigned char zeros[256];

/* Parse header + `dlen` zero bytes; the file must be refused. Returns the
 * message. */
static const char *st_err(void **state, const char *header, size_t dlen) {
  static char err[512];
  size_t size;
  unsigned char *b = make_st(header, zeros, dlen, &size);
  FeTensorSet set = {.n = -1};
  strcpy(err, "(no error written)");
  bool ok = fe_safetensors_parse(*state, b, size, &set, err, sizeof err);
  free(b);
  if (ok)
    fail_msg("accepted %s", header);
  assert_int_equal(set.n, 0);
  return err;
}

static FeTensorSet st_ok(void **state, const char *header, const void *data, size_t dlen) {
  char err[512];
  size_t size;
  unsigned char *b = make_st(header, data, dlen, &size);
  FeTensorSet set;
  bool ok = fe_safetensors_parse(*state, b, size, &set, err, sizeof err);
  free(b);
  if (!ok)
    fail_msg("refused %s: %s", header, err);
  return set;
}

static void test_too_short(void **state) {
  char err[256];
  FeTensorSet set;
  static const unsigned char five[5] = {16, 0, 0, 0, 0};
  assert_false(fe_safetensors_parse(*state, five, 5, &set, err, sizeof err));
  assert_string_equal(err, "file is too short to be safetensors (5 bytes)");
  assert_false(fe_safetensors_parse(*state, five, 0, &set, err, sizeof err));
  assert_string_equal(err, "file is too short to be safetensors (0 bytes)");
  assert_false(fe_safetensors_parse(*state, zeros, 7, &set, err, sizeof err));
  assert_string_equal(err, "file is too short to be safetensors (7 bytes)");
  assert_false(fe_safetensors_parse(*state, NULL, 0, &set, err, sizeof err));
}

static void test_header_past_end(void **state) {
  char err[256];
  FeTensorSet set;
  size_t size;
  unsigned char *b = make_raw(4096, "{}", zeros, 90, &size);
  assert_int_equal(size, 100);
  assert_false(fe_safetensors_parse(*state, b, size, &set, err, sizeof err));
  assert_string_equal(err, "header length 4096 is past the end of the file (100 bytes)");
  free(b);

  /* One byte too long, and a length that would wrap 8 + N. */
  b = make_raw(3, "{}", NULL, 0, &size);
  assert_false(fe_safetensors_parse(*state, b, size, &set, err, sizeof err));
  assert_string_equal(err, "header length 3 is past the end of the file (10 bytes)");
  free(b);
  b = make_raw(UINT64_MAX, "", NULL, 0, &size);
  assert_false(fe_safetensors_parse(*state, b, size, &set, err, sizeof err));
  assert_string_equal(err,
                      "header length 18446744073709551615 is past the end of the file (8 bytes)");
  free(b);
}

static void test_invalid_json_header(void **state) {
  assert_string_equal(st_err(state, "{\"w\": {\"dtype\": \"F32\" \"shape\": [1]}}", 0),
                      "invalid JSON header: expected ',' or '}' at offset 22");
  assert_string_equal(st_err(state, "", 0), "invalid JSON header: expected a value at offset 0");
  assert_string_equal(st_err(state, "{\"w\": 1}\x01", 0),
                      "invalid JSON header: unexpected data after the value at offset 8");
  /* Padding is spaces; NUL padding is not JSON. */
  static const unsigned char nul_padded[16] = {8, 0, 0, 0, 0, 0, 0, 0, '{', '}'};
  char err[256];
  FeTensorSet set;
  assert_false(fe_safetensors_parse(*state, nul_padded, sizeof nul_padded, &set, err, sizeof err));
  assert_string_equal(err, "invalid JSON header: unexpected data after the value at offset 2");
}

static void test_header_not_object(void **state) {
  assert_string_equal(st_err(state, "[]", 0), "header is not a JSON object");
  assert_string_equal(st_err(state, "\"w\"      ", 0), "header is not a JSON object");
}

static void test_malformed_entries(void **state) {
  static const struct {
    const char *header;
    const char *err;
  } cases[] = {
      {"{\"w\": 3}",
       "tensor 'w': expected an object with \"dtype\", \"shape\" and \"data_offsets\""},
      {"{\"w\": {\"shape\": [1], \"data_offsets\": [0, 4]}}", "tensor 'w': missing \"dtype\""},
      {"{\"w\": {\"dtype\": \"F32\", \"data_offsets\": [0, 4]}}", "tensor 'w': missing \"shape\""},
      {"{\"w\": {\"dtype\": \"F32\", \"shape\": [1]}}", "tensor 'w': missing \"data_offsets\""},
      {"{\"w\": {\"dtype\": 32, \"shape\": [1], \"data_offsets\": [0, 4]}}",
       "tensor 'w': \"dtype\" is not a string"},
      {"{\"w\": {\"dtype\": \"F32\", \"shape\": 1, \"data_offsets\": [0, 4]}}",
       "tensor 'w': \"shape\" is not a list of non-negative integers"},
      {"{\"w\": {\"dtype\": \"F32\", \"shape\": [-1], \"data_offsets\": [0, 4]}}",
       "tensor 'w': \"shape\" is not a list of non-negative integers"},
      {"{\"w\": {\"dtype\": \"F32\", \"shape\": [1.5], \"data_offsets\": [0, 4]}}",
       "tensor 'w': \"shape\" is not a list of non-negative integers"},
      {"{\"w\": {\"dtype\": \"F32\", \"shape\": [\"1\"], \"data_offsets\": [0, 4]}}",
       "tensor 'w': \"shape\" is not a list of non-negative integers"},
      {"{\"w\": {\"dtype\": \"F32\", \"shape\": [1e300], \"data_offsets\": [0, 4]}}",
       "tensor 'w': \"shape\" is not a list of non-negative integers"},
      {"{\"w\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0]}}",
       "tensor 'w': \"data_offsets\" is not a pair of non-negative integers"},
      {"{\"w\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4, 8]}}",
       "tensor 'w': \"data_offsets\" is not a pair of non-negative integers"},
      {"{\"w\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [-4, 0]}}",
       "tensor 'w': \"data_offsets\" is not a pair of non-negative integers"},
      {"{\"w\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": {\"0\": 4}}}",
       "tensor 'w': \"data_offsets\" is not a pair of non-negative integers"},
      {"{\"w\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [8, 4]}}",
       "tensor 'w': data_offsets [8, 4] end before they begin"},
      {"{\"__metadata__\": [\"x\"]}", "\"__metadata__\" is not an object of strings"},
      {"{\"__metadata__\": {\"format\": 1}}", "\"__metadata__\" is not an object of strings"},
      {"{\"__metadata__\": {}, \"__metadata__\": {}}", "duplicate \"__metadata__\""},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    const char *e = st_err(state, cases[i].header, 16);
    if (strcmp(e, cases[i].err) != 0)
      fail_msg("header %s\n  got      %s\n  expected %s", cases[i].header, e, cases[i].err);
  }
}

static void test_dtypes_refused(void **state) {
  char header[256], want[128];
  static const char *const unknown[] = {"XYZ", "Q4", "f32", "F32 ", "", "FLOAT"};
  for (size_t i = 0; i < sizeof unknown / sizeof unknown[0]; i++) {
    snprintf(header, sizeof header,
             "{\"w\": {\"dtype\": \"%s\", \"shape\": [1], \"data_offsets\": [0, 4]}}", unknown[i]);
    snprintf(want, sizeof want, "tensor 'w': unknown dtype '%s'", unknown[i]);
    assert_string_equal(st_err(state, header, 4), want);
  }
  /* Valid dtypes q8c does not take are skipped, not refused: a state_dict
   * holds such buffers (an I64 was one before I64 was read), and only using
   * one is an error (the parser's). Their ranges still take part in the
   * overlap check. */
  static const char *const unsupported[] = {"F64", "U64", "BOOL", "I16", "U16",
                                            "U32", "F8_E4M3", "F8_E5M2"};
  static const float one = 1.0f;
  for (size_t i = 0; i < sizeof unsupported / sizeof unsupported[0]; i++) {
    snprintf(header, sizeof header,
             "{\"w\": {\"dtype\": \"%s\", \"shape\": [1], \"data_offsets\": [0, 8]}, "
             "\"x\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [8, 12]}}",
             unsupported[i]);
    unsigned char data[12] = {0};
    memcpy(data + 8, &one, 4);
    FeTensorSet set = st_ok(state, header, data, sizeof data);
    assert_int_equal(set.n, 1);
    assert_string_equal(set.tensors[0].name, "x");
    assert_int_equal(set.nskipped, 1);
    assert_string_equal(set.skipped[0].name, "w");
    assert_string_equal(set.skipped[0].dtype, unsupported[i]);
    snprintf(header, sizeof header,
             "{\"w\": {\"dtype\": \"%s\", \"shape\": [1], \"data_offsets\": [0, 8]}, "
             "\"x\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [4, 8]}}",
             unsupported[i]);
    assert_string_equal(st_err(state, header, 8),
                        "tensors 'w' and 'x' overlap in the data ([0, 8] and [4, 8])");
  }
}

/* I64 tensors are read as they are (token ids, PyTorch's integer buffers). */
static void test_i64(void **state) {
  const int64_t v[2] = {-3, (int64_t)1 << 40};
  FeTensorSet set = st_ok(state,
                          "{\"ids\": {\"dtype\": \"I64\", \"shape\": [2], "
                          "\"data_offsets\": [0, 16]}}",
                          v, sizeof v);
  assert_int_equal(set.n, 1);
  assert_int_equal(set.tensors[0].type.dtype, IR_I64);
  assert_int_equal(set.tensors[0].nbytes, 16);
  assert_memory_equal(set.tensors[0].data, v, sizeof v);
}

static void test_offsets_past_end(void **state) {
  assert_string_equal(
      st_err(state, "{\"w\": {\"dtype\": \"F32\", \"shape\": [2, 3], \"data_offsets\": [0, 24]}}", 16),
      "tensor 'w': data_offsets [0, 24] are past the end of the data (16 bytes)");
  /* Huge offsets do not wrap. */
  assert_string_equal(
      st_err(state,
             "{\"w\": {\"dtype\": \"U8\", \"shape\": [0], "
             "\"data_offsets\": [18446744073709549568, 18446744073709549568]}}",
             16),
      "tensor 'w': data_offsets [18446744073709549568, 18446744073709549568] are past the end of "
      "the data (16 bytes)");
}

static void test_size_mismatch(void **state) {
  assert_string_equal(
      st_err(state, "{\"w\": {\"dtype\": \"F32\", \"shape\": [2, 3], \"data_offsets\": [0, 12]}}", 12),
      "tensor 'w': data_offsets span 12 bytes but F32[2, 3] needs 24");
  assert_string_equal(
      st_err(state, "{\"w\": {\"dtype\": \"F16\", \"shape\": [], \"data_offsets\": [0, 4]}}", 4),
      "tensor 'w': data_offsets span 4 bytes but F16[] needs 2");
  /* Sizes near 2^64 are computed without wrapping. */
  assert_string_equal(
      st_err(state,
             "{\"w\": {\"dtype\": \"F32\", \"shape\": [2305843009213693952], "
             "\"data_offsets\": [0, 0]}}",
             0),
      "tensor 'w': data_offsets span 0 bytes but F32[2305843009213693952] needs "
      "9223372036854775808");
  assert_string_equal(
      st_err(state,
             "{\"w\": {\"dtype\": \"F32\", \"shape\": [4611686018427387904], "
             "\"data_offsets\": [0, 0]}}",
             0),
      "tensor 'w': F32[4611686018427387904] has too many elements");
  assert_string_equal(
      st_err(state,
             "{\"w\": {\"dtype\": \"U8\", \"shape\": [4294967296, 4294967296, 2], "
             "\"data_offsets\": [0, 0]}}",
             0),
      "tensor 'w': U8[4294967296, 4294967296, 2] has too many elements");
}

static void test_overlap(void **state) {
  const char *want = "tensors 'A' and 'B' overlap in the data ([0, 24] and [16, 40])";
  assert_string_equal(st_err(state,
                             "{\"A\": {\"dtype\": \"F32\", \"shape\": [2, 3], \"data_offsets\": [0, 24]},"
                             " \"B\": {\"dtype\": \"F32\", \"shape\": [6], \"data_offsets\": [16, 40]}}",
                             40),
                      want);
  /* The same whatever the order in the header. */
  assert_string_equal(st_err(state,
                             "{\"B\": {\"dtype\": \"F32\", \"shape\": [6], \"data_offsets\": [16, 40]},"
                             " \"A\": {\"dtype\": \"F32\", \"shape\": [2, 3], \"data_offsets\": [0, 24]}}",
                             40),
                      want);
  /* A range inside another, past a third that does not overlap. */
  assert_string_equal(
      st_err(state,
             "{\"big\": {\"dtype\": \"U8\", \"shape\": [32], \"data_offsets\": [8, 40]},"
             " \"first\": {\"dtype\": \"U8\", \"shape\": [8], \"data_offsets\": [0, 8]},"
             " \"mid\": {\"dtype\": \"U8\", \"shape\": [4], \"data_offsets\": [12, 16]}}",
             40),
      "tensors 'big' and 'mid' overlap in the data ([8, 40] and [12, 16])");
  /* Identical ranges. */
  assert_string_equal(
      st_err(state,
             "{\"x\": {\"dtype\": \"I32\", \"shape\": [1], \"data_offsets\": [0, 4]},"
             " \"y\": {\"dtype\": \"F32\", \"shape\": [], \"data_offsets\": [0, 4]}}",
             4),
      "tensors 'x' and 'y' overlap in the data ([0, 4] and [0, 4])");

  /* Touching ranges and empty tensors inside others are fine. */
  FeTensorSet set =
      st_ok(state,
            "{\"a\": {\"dtype\": \"U8\", \"shape\": [4], \"data_offsets\": [0, 4]},"
            " \"b\": {\"dtype\": \"U8\", \"shape\": [4], \"data_offsets\": [4, 8]},"
            " \"e\": {\"dtype\": \"F32\", \"shape\": [0, 7], \"data_offsets\": [2, 2]}}",
            zeros, 8);
  assert_int_equal(set.n, 3);
}

static void test_duplicate_names(void **state) {
  assert_string_equal(
      st_err(state,
             "{\"w\": {\"dtype\": \"U8\", \"shape\": [1], \"data_offsets\": [0, 1]},"
             " \"b\": {\"dtype\": \"U8\", \"shape\": [1], \"data_offsets\": [1, 2]},"
             " \"w\": {\"dtype\": \"U8\", \"shape\": [1], \"data_offsets\": [2, 3]}}",
             3),
      "duplicate tensor 'w'");
}

static void test_rank_limit(void **state) {
  assert_string_equal(
      st_err(state,
             "{\"w\": {\"dtype\": \"F32\", \"shape\": [1, 1, 1, 1, 1, 1, 1, 1, 1], "
             "\"data_offsets\": [0, 4]}}",
             4),
      "tensor 'w': rank 9 exceeds the maximum of 8");
  float one = 1.0f;
  FeTensorSet set = st_ok(state,
                          "{\"w\": {\"dtype\": \"F32\", \"shape\": [1, 1, 1, 1, 1, 1, 1, 1], "
                          "\"data_offsets\": [0, 4]}}",
                          &one, 4);
  assert_int_equal(set.tensors[0].type.rank, 8);
  assert_true(*(const float *)set.tensors[0].data == 1.0f);
}

static void test_load_kept_dtypes(void **state) {
  unsigned char data[4 * 3 + 3 + 3 + 4 * 4];
  size_t o = 0;
  const float f[3] = {1.5f, -2.25f, INFINITY};
  memcpy(data + o, f, sizeof f); /* the host is little-endian, as is the format */
  o += sizeof f;
  const int8_t i8[3] = {-128, 0, 127};
  memcpy(data + o, i8, 3);
  o += 3;
  const uint8_t u8[3] = {0, 128, 255};
  memcpy(data + o, u8, 3);
  o += 3;
  const int32_t i32[4] = {INT32_MIN, -1, 0, INT32_MAX};
  memcpy(data + o, i32, sizeof i32);
  o += sizeof i32;
  FeTensorSet set = st_ok(state,
                          "{\"__metadata__\": {\"format\": \"pt\"},"
                          " \"f\": {\"dtype\": \"F32\", \"shape\": [3], \"data_offsets\": [0, 12]},"
                          " \"i8\": {\"dtype\": \"I8\", \"shape\": [1, 3], \"data_offsets\": [12, 15]},"
                          " \"u8\": {\"dtype\": \"U8\", \"shape\": [3, 1], \"data_offsets\": [15, 18]},"
                          " \"i32\": {\"dtype\": \"I32\", \"shape\": [2, 2], \"data_offsets\": [18, 34]}}",
                          data, o);
  assert_int_equal(set.n, 4);
  assert_string_equal(set.tensors[0].name, "f");
  assert_string_equal(set.tensors[3].name, "i32");

  const FeTensor *t = fe_tensorset_find(&set, "f");
  assert_int_equal(t->type.dtype, IR_F32);
  assert_int_equal(t->nbytes, 12);
  assert_memory_equal(t->data, f, sizeof f);

  t = fe_tensorset_find(&set, "i8");
  assert_int_equal(t->type.dtype, IR_I8);
  assert_int_equal(t->type.rank, 2);
  assert_int_equal(t->type.dims[0], 1);
  assert_int_equal(t->type.dims[1], 3);
  assert_int_equal(t->nbytes, 3);
  assert_memory_equal(t->data, i8, 3);

  t = fe_tensorset_find(&set, "u8");
  assert_int_equal(t->type.dtype, IR_U8);
  assert_memory_equal(t->data, u8, 3);

  /* Offset 18 in the file; the loaded copy is aligned for its dtype. */
  t = fe_tensorset_find(&set, "i32");
  assert_int_equal(t->type.dtype, IR_I32);
  assert_int_equal(t->nbytes, 16);
  assert_int_equal((uintptr_t)t->data % _Alignof(int32_t), 0);
  assert_int_equal(((const int32_t *)t->data)[0], INT32_MIN);
  assert_int_equal(((const int32_t *)t->data)[3], INT32_MAX);

  assert_null(fe_tensorset_find(&set, "missing"));
  assert_null(fe_tensorset_find(&set, "__metadata__"));
  assert_null(fe_tensorset_find(NULL, "f"));
}

static void test_unaligned_f32(void **state) {
  unsigned char data[1 + 8];
  data[0] = 7;
  const float f[2] = {3.0f, -0.5f};
  memcpy(data + 1, f, sizeof f);
  FeTensorSet set = st_ok(state,
                          "{\"pad\": {\"dtype\": \"U8\", \"shape\": [1], \"data_offsets\": [0, 1]},"
                          " \"w\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [1, 9]}}",
                          data, sizeof data);
  const FeTensor *w = fe_tensorset_find(&set, "w");
  assert_non_null(w);
  assert_int_equal((uintptr_t)w->data % _Alignof(float), 0);
  assert_true(((const float *)w->data)[0] == 3.0f);
  assert_true(((const float *)w->data)[1] == -0.5f);
}

/* Check one loaded float against an expected value, NaN and the sign of zero
 * included. */
static void assert_float_is(float got, float want, const char *what, unsigned bits) {
  if (isnan(want)) {
    if (!isnan(got))
      fail_msg("%s 0x%04x: got %g, want nan", what, bits, got);
    return;
  }
  if (got != want || signbit(got) != signbit(want))
    fail_msg("%s 0x%04x: got %.9g, want %.9g", what, bits, got, want);
}

static const FeTensor *load_16bit(void **state, const char *dtype, const uint16_t *vals, size_t n) {
  unsigned char data[64];
  for (size_t i = 0; i < n; i++) {
    data[2 * i] = (unsigned char)vals[i];
    data[2 * i + 1] = (unsigned char)(vals[i] >> 8);
  }
  char header[256];
  snprintf(header, sizeof header,
           "{\"h\": {\"dtype\": \"%s\", \"shape\": [%zu], \"data_offsets\": [0, %zu]}}", dtype, n,
           2 * n);
  FeTensorSet set = st_ok(state, header, data, 2 * n);
  const FeTensor *t = fe_tensorset_find(&set, "h");
  assert_non_null(t);
  assert_int_equal(t->type.dtype, IR_F32);
  assert_int_equal(t->nbytes, 4 * n);
  assert_int_equal((uintptr_t)t->data % _Alignof(float), 0);
  return t;
}

static void test_f16_conversion(void **state) {
  static const struct {
    uint16_t bits;
    float val;
  } cases[] = {
      {0x0000, 0.0f},
      {0x8000, -0.0f},
      {0x3C00, 1.0f},
      {0xBC00, -1.0f},
      {0xC000, -2.0f},
      {0x3555, 0.333251953125f},
      {0x7BFF, 65504.0f},               /* largest finite */
      {0x0400, 0x1p-14f},               /* smallest normal */
      {0x03FF, 1023 * 0x1p-24f},        /* largest subnormal */
      {0x0200, 0x1p-15f},
      {0x0001, 0x1p-24f},               /* smallest subnormal */
      {0x8001, -0x1p-24f},
      {0x0003, 3 * 0x1p-24f},
      {0x7C00, INFINITY},
      {0xFC00, -INFINITY},
      {0x7E00, NAN},
      {0x7C01, NAN},                    /* signalling payload */
      {0xFE00, NAN},
  };
  enum { N = sizeof cases / sizeof cases[0] };
  uint16_t bits[N];
  for (int i = 0; i < N; i++)
    bits[i] = cases[i].bits;
  const FeTensor *t = load_16bit(state, "F16", bits, N);
  for (int i = 0; i < N; i++)
    assert_float_is(((const float *)t->data)[i], cases[i].val, "F16", cases[i].bits);
}

static void test_bf16_conversion(void **state) {
  static const struct {
    uint16_t bits;
    float val;
  } cases[] = {
      {0x0000, 0.0f},
      {0x8000, -0.0f},
      {0x3F80, 1.0f},
      {0xC040, -3.0f},
      {0x4049, 3.140625f},
      {0x7F7F, 0x1.FEp127f},            /* largest finite */
      {0x0080, 0x1p-126f},              /* smallest normal */
      {0x0001, 0x1p-133f},              /* smallest subnormal */
      {0x807F, -127 * 0x1p-133f},       /* largest negative subnormal */
      {0x7F80, INFINITY},
      {0xFF80, -INFINITY},
      {0x7FC0, NAN},
      {0xFFC1, NAN},
  };
  enum { N = sizeof cases / sizeof cases[0] };
  uint16_t bits[N];
  for (int i = 0; i < N; i++)
    bits[i] = cases[i].bits;
  const FeTensor *t = load_16bit(state, "BF16", bits, N);
  for (int i = 0; i < N; i++)
    assert_float_is(((const float *)t->data)[i], cases[i].val, "BF16", cases[i].bits);
}

static void test_empty_and_scalar(void **state) {
  const float s = 42.0f;
  FeTensorSet set =
      st_ok(state,
            "  {\"s\": {\"dtype\": \"F32\", \"shape\": [], \"data_offsets\": [0, 4]},"
            " \"e\": {\"dtype\": \"F32\", \"shape\": [3, 0], \"data_offsets\": [4, 4]},"
            " \"e16\": {\"dtype\": \"F16\", \"shape\": [0], \"data_offsets\": [4, 4]}}      ",
            &s, 4);
  assert_int_equal(set.n, 3);
  const FeTensor *t = fe_tensorset_find(&set, "s");
  assert_int_equal(t->type.rank, 0);
  assert_int_equal(t->nbytes, 4);
  assert_true(*(const float *)t->data == 42.0f);
  t = fe_tensorset_find(&set, "e");
  assert_int_equal(t->type.rank, 2);
  assert_int_equal(t->type.dims[0], 3);
  assert_int_equal(t->type.dims[1], 0);
  assert_int_equal(t->nbytes, 0);
  assert_non_null(t->data);
  t = fe_tensorset_find(&set, "e16");
  assert_int_equal(t->type.dtype, IR_F32);
  assert_int_equal(t->nbytes, 0);

  /* No tensors at all, and gaps and trailing bytes in the data. */
  set = st_ok(state, "{}", NULL, 0);
  assert_int_equal(set.n, 0);
  set = st_ok(state, "{\"w\": {\"dtype\": \"U8\", \"shape\": [2], \"data_offsets\": [3, 5]}}",
              "abcdefgh", 8);
  assert_int_equal(set.n, 1);
  assert_memory_equal(set.tensors[0].data, "de", 2);
}

static char *tmp_path(const char *tag) {
  static char path[128];
  snprintf(path, sizeof path, "/tmp/q8c_test_st_%ld_%s.safetensors", (long)getpid(), tag);
  return path;
}

static void test_round_trip(void **state) {
  const float f[6] = {1, -2, 3.5f, -0.0f, 1e-30f, 65504};
  const int8_t i8[4] = {-128, -1, 0, 127};
  const uint8_t u8[3] = {0, 1, 255};
  const int32_t i32[2] = {INT32_MIN, 123456789};
  const float scalar = -7.25f;
  FeTensor in[] = {
      {.name = "layer.w", .type = {IR_F32, 2, {2, 3}}, .data = f, .nbytes = sizeof f},
      {.name = "q", .type = {IR_I8, 1, {4}}, .data = i8, .nbytes = sizeof i8},
      {.name = "zp", .type = {IR_U8, 3, {1, 3, 1}}, .data = u8, .nbytes = sizeof u8},
      {.name = "bias", .type = {IR_I32, 1, {2}}, .data = i32, .nbytes = sizeof i32},
      {.name = "s", .type = {IR_F32, 0, {0}}, .data = &scalar, .nbytes = 4},
      {.name = "empty", .type = {IR_F32, 2, {0, 5}}, .data = NULL, .nbytes = 0},
      {.name = "odd \"name\" \\ \n caf\xc3\xa9", .type = {IR_U8, 1, {1}}, .data = u8, .nbytes = 1},
  };
  enum { N = sizeof in / sizeof in[0] };
  char err[256];
  const char *path = tmp_path("rt");
  assert_true(fe_safetensors_write(path, in, N, err, sizeof err));

  /* The raw file: header length a multiple of 8, padded with spaces. */
  FILE *fp = fopen(path, "rb");
  assert_non_null(fp);
  unsigned char raw[4096];
  size_t size = fread(raw, 1, sizeof raw, fp);
  fclose(fp);
  uint64_t hlen = 0;
  for (int i = 0; i < 8; i++)
    hlen |= (uint64_t)raw[i] << (8 * i);
  assert_int_equal(hlen % 8, 0);
  assert_true(8 + hlen <= size);
  assert_int_equal(raw[8], '{');
  size_t last = 8 + hlen - 1;
  while (raw[last] == ' ')
    last--;
  assert_int_equal(raw[last], '}');
  assert_true(8 + hlen - 1 - last < 8);
  size_t total = 0;
  for (int i = 0; i < N; i++)
    total += in[i].nbytes;
  assert_int_equal(size, 8 + hlen + total); /* packed, nothing else */

  FeTensorSet set;
  assert_true(fe_safetensors_read(*state, path, &set, err, sizeof err));
  remove(path);
  assert_int_equal(set.n, N);
  for (int i = 0; i < N; i++) {
    const FeTensor *t = &set.tensors[i];
    assert_string_equal(t->name, in[i].name); /* in the given order */
    assert_int_equal(t->type.dtype, in[i].type.dtype);
    assert_int_equal(t->type.rank, in[i].type.rank);
    for (int d = 0; d < t->type.rank; d++)
      assert_int_equal(t->type.dims[d], in[i].type.dims[d]);
    assert_int_equal(t->nbytes, in[i].nbytes);
    if (in[i].nbytes)
      assert_memory_equal(t->data, in[i].data, in[i].nbytes);
  }
  assert_true(signbit(((const float *)set.tensors[0].data)[3]));

  /* Nothing at all is a valid file too. */
  assert_true(fe_safetensors_write(path, NULL, 0, err, sizeof err));
  assert_true(fe_safetensors_read(*state, path, &set, err, sizeof err));
  assert_int_equal(set.n, 0);
  remove(path);
}

/* A regular file is read through a mapping whose pages each tensor lets go
 * once converted (fe_safetensors_read); bytes in memory are parsed in
 * place (fe_safetensors_parse). Both give the same tensors, bit for bit, for
 * every dtype the loader widens or copies, tensors of many pages, one
 * sharing a page with its neighbours, and the file read twice. */
static void test_mapped_read_equals_parse(void **state) {
  enum { N1 = 5000, N2 = 3001, N3 = 7, N4 = 4099 };
  const char *header = "{\"a\":{\"dtype\":\"BF16\",\"shape\":[5000],\"data_offsets\":[0,10000]},"
                       "\"b\":{\"dtype\":\"F16\",\"shape\":[3001],\"data_offsets\":[10000,16002]},"
                       "\"c\":{\"dtype\":\"F32\",\"shape\":[7],\"data_offsets\":[16002,16030]},"
                       "\"d\":{\"dtype\":\"I8\",\"shape\":[4099],\"data_offsets\":[16030,20129]}}";
  size_t dlen = 2 * N1 + 2 * N2 + 4 * N3 + N4;
  unsigned char *data = malloc(dlen);
  uint32_t r = 12345;
  for (size_t i = 0; i < dlen; i++) {
    r = r * 1664525u + 1013904223u;
    data[i] = (unsigned char)(r >> 24);
  }
  size_t size;
  unsigned char *bytes = make_st(header, data, dlen, &size);
  const char *path = tmp_path("mapped");
  FILE *f = fopen(path, "wb");
  assert_non_null(f);
  assert_int_equal(fwrite(bytes, 1, size, f), size);
  assert_int_equal(fclose(f), 0);
  char err[256];
  FeTensorSet mem, file, again;
  assert_true(fe_safetensors_parse(*state, bytes, size, &mem, err, sizeof err));
  assert_true(fe_safetensors_read(*state, path, &file, err, sizeof err));
  assert_true(fe_safetensors_read(*state, path, &again, err, sizeof err));
  remove(path);
  assert_int_equal(mem.n, 4);
  assert_int_equal(file.n, 4);
  assert_int_equal(again.n, 4);
  for (int i = 0; i < 4; i++) {
    assert_string_equal(file.tensors[i].name, mem.tensors[i].name);
    assert_int_equal(file.tensors[i].nbytes, mem.tensors[i].nbytes);
    assert_memory_equal(file.tensors[i].data, mem.tensors[i].data, mem.tensors[i].nbytes);
    assert_memory_equal(again.tensors[i].data, mem.tensors[i].data, mem.tensors[i].nbytes);
  }
  free(bytes);
  free(data);
}

static void test_write_errors(void **state) {
  (void)state;
  const float f[6] = {0};
  char err[256];
  const char *path = tmp_path("werr");

  FeTensor t = {.name = "w", .type = {IR_F32, 2, {2, 3}}, .data = f, .nbytes = 20};
  assert_false(fe_safetensors_write(path, &t, 1, err, sizeof err));
  assert_string_equal(err, "tensor 'w': nbytes is 20 but F32[2, 3] needs 24");

  t.nbytes = 24;
  t.type.dims[0] = IR_DIM_BATCH;
  assert_false(fe_safetensors_write(path, &t, 1, err, sizeof err));
  assert_string_equal(err, "tensor 'w': dimension 0 is not a concrete size");

  t.type.dims[0] = 2;
  t.type.dtype = IR_DTYPE_NONE;
  assert_false(fe_safetensors_write(path, &t, 1, err, sizeof err));
  assert_string_equal(err, "tensor 'w': cannot write dtype 0");

  t.type.dtype = IR_F32;
  t.type.rank = 9;
  assert_false(fe_safetensors_write(path, &t, 1, err, sizeof err));
  assert_string_equal(err, "tensor 'w': rank 9 exceeds the maximum of 8");
  t.type.rank = 2;

  FeTensor two[2] = {t, t};
  assert_false(fe_safetensors_write(path, two, 2, err, sizeof err));
  assert_string_equal(err, "duplicate tensor 'w'");

  t.name = "__metadata__";
  assert_false(fe_safetensors_write(path, &t, 1, err, sizeof err));
  assert_string_equal(err, "tensor name '__metadata__' is reserved");
  t.name = "w";

  /* Nothing was created by the refusals above. */
  assert_int_equal(access(path, F_OK), -1);

  assert_false(fe_safetensors_write("/nonexistent-dir/x.safetensors", &t, 1, err, sizeof err));
  char want[256];
  snprintf(want, sizeof want, "cannot create /nonexistent-dir/x.safetensors: %s",
           strerror(ENOENT));
  assert_string_equal(err, want);
}

static void test_read_errors(void **state) {
  char err[256], want[256];
  FeTensorSet set;
  assert_false(fe_safetensors_read(*state, "/nonexistent-dir/x.safetensors", &set, err, sizeof err));
  snprintf(want, sizeof want, "cannot open: %s", strerror(ENOENT));
  assert_string_equal(err, want);

  assert_false(fe_safetensors_read(*state, "/tmp", &set, err, sizeof err));
  snprintf(want, sizeof want, "cannot read: %s", strerror(EISDIR));
  assert_string_equal(err, want);

  /* A file on disk reports what the in-memory parser reports. */
  const char *path = tmp_path("short");
  FILE *fp = fopen(path, "wb");
  assert_non_null(fp);
  fwrite("\x10\0\0\0\0", 1, 5, fp);
  fclose(fp);
  assert_false(fe_safetensors_read(*state, path, &set, err, sizeof err));
  remove(path);
  assert_string_equal(err, "file is too short to be safetensors (5 bytes)");
}

/* Every proper prefix of a valid file is refused, and byte flips anywhere
 * never crash (run under sanitizers to make this test meaningful). */
static void test_truncations_and_flips(void **state) {
  const char *header =
      "{\"a\": {\"dtype\": \"F16\", \"shape\": [2, 2], \"data_offsets\": [0, 8]},"
      " \"b\": {\"dtype\": \"I32\", \"shape\": [3], \"data_offsets\": [8, 20]}}";
  unsigned char data[20];
  for (int i = 0; i < 20; i++)
    data[i] = (unsigned char)(i * 37);
  size_t size;
  unsigned char *full = make_st(header, data, sizeof data, &size);
  char err[512];
  FeTensorSet set;
  assert_true(fe_safetensors_parse(*state, full, size, &set, err, sizeof err));
  for (size_t n = 0; n < size; n++) {
    unsigned char *cut = malloc(n ? n : 1);
    memcpy(cut, full, n);
    if (fe_safetensors_parse(*state, cut, n, &set, err, sizeof err))
      fail_msg("accepted a prefix of %zu of %zu bytes", n, size);
    assert_true(err[0] != '\0');
    free(cut);
  }
  static const unsigned char flips[] = {0x00, 0x01, 0x20, 0x22, 0x2C, 0x5B, 0x5D, 0x7B, 0x7D,
                                        0x80, 0xFF, '9', '-', 'e'};
  for (size_t at = 0; at < size; at++)
    for (size_t k = 0; k < sizeof flips; k++) {
      unsigned char *m = malloc(size);
      memcpy(m, full, size);
      m[at] = flips[k];
      err[0] = '\0';
      bool ok = fe_safetensors_parse(*state, m, size, &set, err, sizeof err);
      assert_true(ok || err[0] != '\0');
      free(m);
    }
  free(full);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_too_short, setup, teardown),
      cmocka_unit_test_setup_teardown(test_header_past_end, setup, teardown),
      cmocka_unit_test_setup_teardown(test_invalid_json_header, setup, teardown),
      cmocka_unit_test_setup_teardown(test_header_not_object, setup, teardown),
      cmocka_unit_test_setup_teardown(test_malformed_entries, setup, teardown),
      cmocka_unit_test_setup_teardown(test_i64, setup, teardown),
      cmocka_unit_test_setup_teardown(test_dtypes_refused, setup, teardown),
      cmocka_unit_test_setup_teardown(test_offsets_past_end, setup, teardown),
      cmocka_unit_test_setup_teardown(test_size_mismatch, setup, teardown),
      cmocka_unit_test_setup_teardown(test_overlap, setup, teardown),
      cmocka_unit_test_setup_teardown(test_duplicate_names, setup, teardown),
      cmocka_unit_test_setup_teardown(test_rank_limit, setup, teardown),
      cmocka_unit_test_setup_teardown(test_load_kept_dtypes, setup, teardown),
      cmocka_unit_test_setup_teardown(test_unaligned_f32, setup, teardown),
      cmocka_unit_test_setup_teardown(test_f16_conversion, setup, teardown),
      cmocka_unit_test_setup_teardown(test_bf16_conversion, setup, teardown),
      cmocka_unit_test_setup_teardown(test_empty_and_scalar, setup, teardown),
      cmocka_unit_test_setup_teardown(test_round_trip, setup, teardown),
      cmocka_unit_test_setup_teardown(test_mapped_read_equals_parse, setup, teardown),
      cmocka_unit_test_setup_teardown(test_write_errors, setup, teardown),
      cmocka_unit_test_setup_teardown(test_read_errors, setup, teardown),
      cmocka_unit_test_setup_teardown(test_truncations_and_flips, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
