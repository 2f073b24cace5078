/* test_npy.c: the .npy reader and writer (frontend/npy.c).
 *
 * Three kinds of input are used. Files written by numpy itself
 * (tests/data/npy, made by tests/data/gen_npy.py) check that we read the real
 * format, and that what we write is byte-for-byte what numpy writes. Headers
 * composed here byte by byte check the dict-literal parser on spellings numpy
 * does not produce (other key orders, double quotes, hostile shapes). And
 * round trips through fe_npy_write check every dtype and rank, including the
 * streaming reader against the whole-array reader. Every error is checked
 * by its exact message, since the messages are what a user sees. */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L /* mkstemp and truncate */
#endif
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include <unistd.h>

#include <cmocka.h>

#include "frontend/frontend.h"

#define SUPPORTED "(q8c reads little-endian f4, f8, i1, u1, i4, i8)"

/* ---- helpers ---- */

static const char *fixture(const char *name) {
  static char buf[4096];
  const char *dir = getenv("Q8_TEST_DATA");
  snprintf(buf, sizeof buf, "%s/npy/%s", dir ? dir : "tests/data", name);
  return buf;
}

/* A fresh temporary file's name in `buf`; the test removes it. */
static void temp_path(char *buf, size_t size) {
  const char *dir = getenv("TMPDIR");
  snprintf(buf, size, "%s/q8c_npy_XXXXXX", dir ? dir : "/tmp");
  int fd = mkstemp(buf);
  assert_true(fd >= 0);
  close(fd);
}

static IrType make_type(IrDType dt, int rank, const int64_t *dims) {
  IrType t = {.dtype = dt, .rank = rank};
  for (int i = 0; i < rank; i++)
    t.dims[i] = dims[i];
  return t;
}

static void assert_type(const IrType *t, IrDType dt, int rank, const int64_t *dims) {
  assert_int_equal(t->dtype, dt);
  assert_int_equal(t->rank, rank);
  for (int i = 0; i < rank; i++)
    assert_int_equal(t->dims[i], dims[i]);
}

/* Write a .npy file by hand: the preamble for version major.minor, `header`
 * as is (no padding), then `n` bytes of data. */
static void write_raw(const char *path, int major, int minor, const char *header,
                      const void *data, size_t n) {
  FILE *f = fopen(path, "wb");
  assert_non_null(f);
  size_t hlen = strlen(header);
  unsigned char pre[12] = {0x93, 'N', 'U', 'M', 'P', 'Y', (unsigned char)major,
                           (unsigned char)minor};
  size_t npre = major == 1 ? 10 : 12;
  for (size_t i = 0; i < npre - 8; i++)
    pre[8 + i] = (unsigned char)(hlen >> (8 * i));
  assert_int_equal(fwrite(pre, 1, npre, f), npre);
  assert_int_equal(fwrite(header, 1, hlen, f), hlen);
  if (n)
    assert_int_equal(fwrite(data, 1, n, f), n);
  assert_int_equal(fclose(f), 0);
}

/* Reading `path` fails with exactly `msg`, through both readers. */
static void assert_read_error(const char *path, const char *msg) {
  char err[512] = "";
  IrTensor t;
  assert_false(fe_npy_read(path, &t, err, sizeof err));
  assert_string_equal(err, msg);
  assert_null(t.data);

  FeNpyReader r;
  err[0] = '\0';
  assert_false(fe_npy_open(&r, path, err, sizeof err));
  assert_string_equal(err, msg);
  assert_null(r.f);
  fe_npy_close(&r); /* harmless after a failed open */
}

/* A hand-made 1.0 file with `header` and `n` data bytes fails with `msg`. */
static void assert_header_error(const char *header, const void *data, size_t n, const char *msg) {
  char path[256];
  temp_path(path, sizeof path);
  write_raw(path, 1, 0, header, data, n);
  assert_read_error(path, msg);
  remove(path);
}

static void *read_file(const char *path, size_t *size) {
  FILE *f = fopen(path, "rb");
  assert_non_null(f);
  assert_int_equal(fseek(f, 0, SEEK_END), 0);
  long n = ftell(f);
  assert_true(n >= 0);
  rewind(f);
  void *buf = malloc((size_t)n + 1);
  assert_non_null(buf);
  assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
  fclose(f);
  *size = (size_t)n;
  return buf;
}

/* ---- round trips ---- */

/* Write, check the header numpy would write, read back, compare. */
static void roundtrip(IrType type, const void *data, size_t nbytes, const char *header) {
  char path[256], err[512] = "";
  temp_path(path, sizeof path);
  IrTensor t = {type, (void *)data};
  assert_true(fe_npy_write(path, &t, err, sizeof err));

  size_t size;
  unsigned char *raw = read_file(path, &size);
  size_t hlen = (size_t)raw[8] | (size_t)raw[9] << 8;
  assert_memory_equal(raw, "\x93NUMPY\x01\x00", 8);
  assert_int_equal((10 + hlen) % 64, 0);
  assert_int_equal(size, 10 + hlen + nbytes);
  assert_memory_equal(raw + 10, header, strlen(header));
  for (size_t i = 10 + strlen(header); i < 10 + hlen - 1; i++)
    assert_int_equal(raw[i], ' ');
  assert_int_equal(raw[10 + hlen - 1], '\n');
  free(raw);

  IrTensor back;
  assert_true(fe_npy_read(path, &back, err, sizeof err));
  assert_type(&back.type, type.dtype, type.rank, type.dims);
  if (nbytes)
    assert_memory_equal(back.data, data, nbytes);
  free(back.data);
  remove(path);
}

static void test_roundtrip_f32(void **state) {
  (void)state;
  float v[6] = {0.0f, -0.0f, 1.5f, -3.25e-7f, 3.4e38f, INFINITY};
  int64_t dims[] = {2, 3};
  roundtrip(make_type(IR_F32, 2, dims), v, sizeof v,
            "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }");
}

static void test_roundtrip_i8(void **state) {
  (void)state;
  int8_t v[5] = {-128, -1, 0, 1, 127};
  int64_t dims[] = {5};
  roundtrip(make_type(IR_I8, 1, dims), v, sizeof v,
            "{'descr': '|i1', 'fortran_order': False, 'shape': (5,), }");
}

static void test_roundtrip_u8(void **state) {
  (void)state;
  uint8_t v[8];
  for (int i = 0; i < 8; i++)
    v[i] = (uint8_t)(i * 37);
  int64_t dims[] = {2, 1, 2, 2};
  roundtrip(make_type(IR_U8, 4, dims), v, sizeof v,
            "{'descr': '|u1', 'fortran_order': False, 'shape': (2, 1, 2, 2), }");
}

static void test_roundtrip_i32(void **state) {
  (void)state;
  int32_t v[4] = {INT32_MIN, -1, 65536, INT32_MAX};
  int64_t dims[] = {1, 4, 1};
  roundtrip(make_type(IR_I32, 3, dims), v, sizeof v,
            "{'descr': '<i4', 'fortran_order': False, 'shape': (1, 4, 1), }");
}

static void test_roundtrip_scalar_empty_rank8(void **state) {
  (void)state;
  float s = 42.0f;
  roundtrip(make_type(IR_F32, 0, NULL), &s, sizeof s,
            "{'descr': '<f4', 'fortran_order': False, 'shape': (), }");

  int64_t empty[] = {0, 5};
  roundtrip(make_type(IR_I32, 2, empty), NULL, 0,
            "{'descr': '<i4', 'fortran_order': False, 'shape': (0, 5), }");

  int64_t ones[] = {1, 1, 1, 1, 1, 1, 1, 2};
  uint8_t two[2] = {9, 8};
  roundtrip(make_type(IR_U8, 8, ones), two, sizeof two,
            "{'descr': '|u1', 'fortran_order': False, 'shape': (1, 1, 1, 1, 1, 1, 1, 2), }");
}

/* What we write is exactly what numpy wrote for the same array. */
static void test_write_matches_numpy(void **state) {
  (void)state;
  float v[12];
  for (int i = 0; i < 12; i++)
    v[i] = (float)(i - 5) * 0.25f;
  int64_t dims[] = {3, 4};
  IrTensor t = {make_type(IR_F32, 2, dims), v};
  char path[256], err[512] = "";
  temp_path(path, sizeof path);
  assert_true(fe_npy_write(path, &t, err, sizeof err));

  size_t ours_n, theirs_n;
  void *ours = read_file(path, &ours_n);
  void *theirs = read_file(fixture("f4_2d.npy"), &theirs_n);
  assert_int_equal(ours_n, theirs_n);
  assert_memory_equal(ours, theirs, ours_n);
  free(ours);
  free(theirs);
  remove(path);
}

static void test_write_errors(void **state) {
  (void)state;
  char path[256], err[512] = "";
  temp_path(path, sizeof path);
  float v[8] = {0};

  int64_t batch[] = {IR_DIM_BATCH, 4};
  IrTensor t = {make_type(IR_F32, 2, batch), v};
  assert_false(fe_npy_write(path, &t, err, sizeof err));
  assert_string_equal(err, "cannot write f32[?, 4] to .npy: dimension 0 is '?' (bind the batch "
                           "size first)");

  int64_t neg[] = {2, -3};
  t.type = make_type(IR_F32, 2, neg);
  assert_false(fe_npy_write(path, &t, err, sizeof err));
  assert_string_equal(err, "cannot write f32[2, -3] to .npy: dimension 1 is negative");

  int64_t two[] = {2};
  t.type = make_type(IR_DTYPE_NONE, 1, two);
  assert_false(fe_npy_write(path, &t, err, sizeof err));
  assert_string_equal(err, "cannot write dtype 'none' to .npy (q8c writes f32, i8, u8, i32, i64)");

  int64_t huge[] = {INT64_C(1) << 62, 4};
  t.type = make_type(IR_F32, 2, huge);
  assert_false(fe_npy_write(path, &t, err, sizeof err));
  assert_string_equal(err, "cannot write f32[4611686018427387904, 4] to .npy: too many elements");

  t.type = make_type(IR_F32, 1, two);
  t.data = NULL;
  assert_false(fe_npy_write(path, &t, err, sizeof err));
  assert_string_equal(err, "cannot write f32[2] to .npy: the tensor has no data");

  t.data = v;
  assert_false(fe_npy_write("/nonexistent-q8c-dir/x.npy", &t, err, sizeof err));
  assert_string_equal(err, "cannot open '/nonexistent-q8c-dir/x.npy' for writing: No such file "
                           "or directory");
  remove(path);
}

/* ---- files written by numpy ---- */

static void test_numpy_f4_2d(void **state) {
  (void)state;
  char err[512] = "";
  IrTensor t;
  assert_true(fe_npy_read(fixture("f4_2d.npy"), &t, err, sizeof err));
  int64_t dims[] = {3, 4};
  assert_type(&t.type, IR_F32, 2, dims);
  const float *v = t.data;
  for (int i = 0; i < 12; i++)
    assert_true(v[i] == (float)(i - 5) * 0.25f);
  free(t.data);
}

static void test_numpy_f8_3d(void **state) {
  (void)state;
  char err[512] = "";
  IrTensor t;
  assert_true(fe_npy_read(fixture("f8_3d.npy"), &t, err, sizeof err));
  int64_t dims[] = {2, 3, 4};
  assert_type(&t.type, IR_F32, 3, dims);
  const float *v = t.data;
  /* -0.0 keeps its sign; 1e-300 is below f32's range and becomes +0. */
  assert_true(v[0] == 0.0f && signbit(v[0]));
  assert_true(v[1] == 0.0f && !signbit(v[1]));
  for (int i = 2; i < 24; i++) {
    float want = (float)(i / 3.0); /* numpy's astype(float32) rounds the same way */
    assert_memory_equal(&v[i], &want, sizeof want);
  }
  free(t.data);
}

static void test_numpy_small_ints(void **state) {
  (void)state;
  char err[512] = "";
  IrTensor t;
  int64_t five[] = {5};

  assert_true(fe_npy_read(fixture("u1.npy"), &t, err, sizeof err));
  assert_type(&t.type, IR_U8, 1, five);
  const uint8_t u[5] = {0, 1, 127, 128, 255};
  assert_memory_equal(t.data, u, sizeof u);
  free(t.data);

  assert_true(fe_npy_read(fixture("i1.npy"), &t, err, sizeof err));
  assert_type(&t.type, IR_I8, 1, five);
  const int8_t s[5] = {-128, -1, 0, 1, 127};
  assert_memory_equal(t.data, s, sizeof s);
  free(t.data);
}

static void test_numpy_i4(void **state) {
  (void)state;
  char err[512] = "";
  IrTensor t;
  assert_true(fe_npy_read(fixture("i4.npy"), &t, err, sizeof err));
  int64_t dims[] = {2, 3};
  assert_type(&t.type, IR_I32, 2, dims);
  const int32_t want[6] = {INT32_MIN, -1, 0, 1, INT32_MAX, 123456789};
  assert_memory_equal(t.data, want, sizeof want);
  free(t.data);
}

static void test_numpy_scalar(void **state) {
  (void)state;
  char err[512] = "";
  IrTensor t;
  assert_true(fe_npy_read(fixture("scalar.npy"), &t, err, sizeof err));
  assert_type(&t.type, IR_F32, 0, NULL);
  assert_true(*(const float *)t.data == 3.5f);
  free(t.data);
}

static void test_numpy_versions_2_and_3(void **state) {
  (void)state;
  char err[512] = "";
  IrTensor t;
  int64_t four[] = {4}, three[] = {3};

  assert_true(fe_npy_read(fixture("v2.npy"), &t, err, sizeof err));
  assert_type(&t.type, IR_F32, 1, four);
  const float f[4] = {1.5f, -2.5f, 1e30f, -1e-30f};
  assert_memory_equal(t.data, f, sizeof f);
  free(t.data);

  assert_true(fe_npy_read(fixture("v3.npy"), &t, err, sizeof err));
  assert_type(&t.type, IR_I32, 1, three);
  const int32_t i[3] = {7, -7, 65536};
  assert_memory_equal(t.data, i, sizeof i);
  free(t.data);
}

static void test_numpy_rejected(void **state) {
  (void)state;
  assert_read_error(fixture("big_endian.npy"), "unsupported dtype '>f4' " SUPPORTED);
  assert_read_error(fixture("bool.npy"), "unsupported dtype '|b1' " SUPPORTED);
  assert_read_error(fixture("object.npy"),
                    "object arrays are not supported (dtype '|O'); save a numeric array");
  assert_read_error(fixture("fortran.npy"),
                    "fortran-order arrays are not supported; save with np.ascontiguousarray");
  assert_read_error(fixture("truncated.npy"),
                    "file is truncated: expected 48 data bytes, found 43");
  assert_read_error("/nonexistent-q8c-dir/x.npy",
                    "cannot open '/nonexistent-q8c-dir/x.npy': No such file or directory");
}

/* ---- the header parser, on hand-made files ---- */

static void read_ok(const char *header, const void *data, size_t n, IrTensor *t) {
  char path[256], err[512] = "";
  temp_path(path, sizeof path);
  write_raw(path, 1, 0, header, data, n);
  if (!fe_npy_read(path, t, err, sizeof err))
    fail_msg("%s: %s", header, err);
  remove(path);
}

static void test_header_spellings(void **state) {
  (void)state;
  const float f[2] = {1.0f, 2.0f};
  int64_t two[] = {2};
  const char *headers[] = {
      "{\"shape\":(2,),\"descr\":\"<f4\",\"fortran_order\":False}",
      "{ 'fortran_order' : False ,\n\t'shape' : ( 2 , ) , 'descr' : '=f4' , }   \n",
      "{'descr': '<f4', 'fortran_order': False, 'shape': (2L,), }\n",
  };
  for (size_t i = 0; i < sizeof headers / sizeof headers[0]; i++) {
    IrTensor t;
    read_ok(headers[i], f, sizeof f, &t);
    assert_type(&t.type, IR_F32, 1, two);
    assert_memory_equal(t.data, f, sizeof f);
    free(t.data);
  }

  /* Byte order means nothing for single bytes. */
  const char *bytes[] = {"<i1", "=i1", "|i1", ">i1"};
  for (size_t i = 0; i < 4; i++) {
    char header[128];
    snprintf(header, sizeof header, "{'descr': '%s', 'fortran_order': False, 'shape': (2,)}",
             bytes[i]);
    IrTensor t;
    const int8_t b[2] = {-5, 5};
    read_ok(header, b, sizeof b, &t);
    assert_type(&t.type, IR_I8, 1, two);
    assert_memory_equal(t.data, b, sizeof b);
    free(t.data);
  }

  /* A zero-size array reads as a valid (empty) tensor. */
  IrTensor t;
  read_ok("{'descr': '<f8', 'fortran_order': False, 'shape': (3, 0)}", NULL, 0, &t);
  int64_t empty[] = {3, 0};
  assert_type(&t.type, IR_F32, 2, empty);
  free(t.data);
}

static void test_header_errors(void **state) {
  (void)state;
  const char zeros[64] = {0};
  assert_header_error("{'descr': '<f4', 'fortran_order': False, 'shape': (1, 1, 1, 1, 1, 1, 1, "
                      "1, 1)}",
                      zeros, 4, "rank 9 exceeds the maximum of 8");
  assert_header_error("{'descr': '<f2', 'fortran_order': False, 'shape': (2,)}", zeros, 4,
                      "unsupported dtype '<f2' " SUPPORTED);
  assert_header_error("{'descr': '>i4', 'fortran_order': False, 'shape': (2,)}", zeros, 8,
                      "unsupported dtype '>i4' " SUPPORTED);
  assert_header_error("{'descr': '|f4', 'fortran_order': False, 'shape': (2,)}", zeros, 8,
                      "unsupported dtype '|f4' " SUPPORTED);
  assert_header_error("{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (2,)}", zeros,
                      8, "structured dtypes are not supported " SUPPORTED);
  assert_header_error("{'descr': '<f4', 'shape': (2,)}", zeros, 8,
                      "malformed .npy header: no 'fortran_order' key");
  assert_header_error("{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (2,)}",
                      zeros, 8, "malformed .npy header at offset 17: key 'descr' appears twice");
  assert_header_error("{'descr': '<f4', 'fortran_order': False, 'shape': (2,), 'x': 1}", zeros, 8,
                      "malformed .npy header at offset 56: unexpected key 'x'");
  assert_header_error("{'descr': '<f4' 'fortran_order': False, 'shape': (2,)}", zeros, 8,
                      "malformed .npy header at offset 16: expected ',' or '}', found \"'\"");
  assert_header_error("{'descr': '<f4', 'fortran_order': false, 'shape': (2,)}", zeros, 8,
                      "malformed .npy header at offset 34: expected True or False, found 'f'");
  assert_header_error("{'descr': '<f4', 'fortran_order': False, 'shape': (2,", zeros, 8,
                      "malformed .npy header at offset 53: expected a dimension, found the end "
                      "of the header");
  assert_header_error("{'descr': '<f4', 'fortran_order': False, 'shape': (2,)} x", zeros, 8,
                      "malformed .npy header at offset 56: expected the end of the header after "
                      "'}', found 'x'");
  assert_header_error("{'descr': '<f4', 'fortran_order': False, 'shape': (-2,)}", zeros, 8,
                      "malformed .npy header at offset 51: negative dimension");
  assert_header_error("{'descr': '<f4', 'fortran_order': False, 'shape': (2)}", zeros, 8,
                      "malformed .npy header at offset 52: a one-dimensional shape needs a "
                      "trailing comma, as in (2,)");
  assert_header_error("{'descr': '<f4', 'fortran_order': False, 'shape': (2.0,)}", zeros, 8,
                      "malformed .npy header at offset 52: expected ',' or ')' in the shape, "
                      "found '.'");
  assert_header_error("{'descr': 'f\\4', 'fortran_order': False, 'shape': (2,)}", zeros, 8,
                      "malformed .npy header at offset 12: expected a plain string without "
                      "escapes, found '\\'");
  assert_header_error("{'descr': '<f4', 'fortran_order': False, 'shape': (2,)}", zeros, 5,
                      "file is truncated: expected 8 data bytes, found 5");
  assert_header_error("{'descr': '<f4', 'fortran_order': False, 'shape': (2,)}", zeros, 0,
                      "file is truncated: expected 8 data bytes, found 0");
}

/* Shapes whose size overflows are refused by arithmetic; shapes whose size
 * fits but exceeds the file are refused by the file's length. Either way the
 * message proves nothing was allocated first: an attempt to allocate 4 TiB
 * would have ended in "out of memory", or not ended quickly. */
static void test_absurd_shapes(void **state) {
  (void)state;
  const char zeros[8] = {0};
  assert_header_error("{'descr': '<f4', 'fortran_order': False, "
                      "'shape': (4611686018427387904, 4611686018427387904)}",
                      zeros, 8,
                      "array of shape (4611686018427387904, 4611686018427387904) is too large");
  assert_header_error("{'descr': '<f8', 'fortran_order': False, 'shape': (2305843009213693952,)}",
                      zeros, 8, "array of shape (2305843009213693952,) is too large");
  assert_header_error("{'descr': '<f4', 'fortran_order': False, 'shape': (1099511627776,)}",
                      zeros, 8, "file is truncated: expected 4398046511104 data bytes, found 8");
  assert_header_error("{'descr': '|u1', 'fortran_order': False, "
                      "'shape': (2305843009213693952, 3)}",
                      zeros, 8, "file is truncated: expected 6917529027641081856 data bytes, "
                                "found 8");
  assert_header_error("{'descr': '|u1', 'fortran_order': False, 'shape': (99999999999999999999,)}",
                      zeros, 8, "dimension 99999999999999999999 in the .npy shape is too large");
  /* A zero dimension makes any other dimension harmless. */
  IrTensor t;
  read_ok("{'descr': '<f4', 'fortran_order': False, 'shape': (0, 9223372036854775807)}", NULL, 0,
          &t);
  assert_int_equal(t.type.dims[1], INT64_MAX);
  free(t.data);
}

static void test_preamble_errors(void **state) {
  (void)state;
  char path[256];
  temp_path(path, sizeof path);

  assert_read_error(path, "not a .npy file (bad magic)"); /* empty */
  FILE *f = fopen(path, "wb");
  fputs("PK\x03\x04 this is a zip file, not an array", f);
  fclose(f);
  assert_read_error(path, "not a .npy file (bad magic)");

  write_raw(path, 4, 0, "{}", NULL, 0);
  assert_read_error(path, "unsupported .npy format version 4.0 (q8c reads 1.0, 2.0 and 3.0)");
  write_raw(path, 1, 1, "{}", NULL, 0);
  assert_read_error(path, "unsupported .npy format version 1.1 (q8c reads 1.0, 2.0 and 3.0)");

  /* The header length says more than the file holds. */
  f = fopen(path, "wb");
  fwrite("\x93NUMPY\x01\x00\xe8\x03{'descr'", 1, 18, f);
  fclose(f);
  assert_read_error(path, "file is truncated: expected a 1000-byte header, found 8");

  f = fopen(path, "wb");
  fwrite("\x93NUMPY\x02\x00\x00\x00", 1, 10, f);
  fclose(f);
  assert_read_error(path, "file is truncated: the .npy preamble needs 12 bytes, found 10");

  f = fopen(path, "wb");
  fwrite("\x93NUMPY\x02\x00\x00\x00\x00\x01", 1, 12, f);
  fclose(f);
  assert_read_error(path, "header length 16777216 is too large (the limit is 1048576 bytes)");

  /* Version 2.0 with a u32 length, written by hand rather than by numpy. */
  const int32_t v[3] = {1, 2, 3};
  write_raw(path, 2, 0, "{'descr': '<i4', 'fortran_order': False, 'shape': (3,)}", v, sizeof v);
  IrTensor t;
  char err[512] = "";
  assert_true(fe_npy_read(path, &t, err, sizeof err));
  assert_memory_equal(t.data, v, sizeof v);
  free(t.data);
  remove(path);
}

/* ---- streaming ---- */

/* Read `path` whole, then again `chunk` rows at a time, and compare. */
static void stream_matches_whole(const char *path, int64_t chunk) {
  char err[512] = "";
  IrTensor whole;
  assert_true(fe_npy_read(path, &whole, err, sizeof err));
  size_t esize = whole.type.dtype == IR_F32 || whole.type.dtype == IR_I32 ? 4 : 1;
  size_t row_bytes = esize;
  for (int i = 1; i < whole.type.rank; i++)
    row_bytes *= (size_t)whole.type.dims[i];

  FeNpyReader r;
  assert_true(fe_npy_open(&r, path, err, sizeof err));
  assert_type(&r.type, whole.type.dtype, whole.type.rank, whole.type.dims);
  unsigned char *buf = malloc(row_bytes * (size_t)chunk + 1);
  assert_non_null(buf);
  int64_t rows = 0;
  for (;;) {
    int64_t got = fe_npy_read_rows(&r, buf, chunk, err, sizeof err);
    assert_true(got >= 0);
    if (got == 0)
      break;
    int64_t want = whole.type.dims[0] - rows < chunk ? whole.type.dims[0] - rows : chunk;
    assert_int_equal(got, want);
    assert_memory_equal(buf, (unsigned char *)whole.data + row_bytes * (size_t)rows,
                        row_bytes * (size_t)got);
    rows += got;
  }
  assert_int_equal(rows, whole.type.dims[0]);
  assert_int_equal(r.rows_read, rows);
  assert_int_equal(fe_npy_read_rows(&r, buf, chunk, err, sizeof err), 0); /* stays at the end */
  fe_npy_close(&r);
  assert_null(r.f);
  free(buf);
  free(whole.data);
}

static void test_stream_numpy_files(void **state) {
  (void)state;
  for (int64_t chunk = 1; chunk <= 4; chunk++) {
    stream_matches_whole(fixture("f4_2d.npy"), chunk);
    stream_matches_whole(fixture("f8_3d.npy"), chunk);
    stream_matches_whole(fixture("i4.npy"), chunk);
    stream_matches_whole(fixture("u1.npy"), chunk);
    stream_matches_whole(fixture("v2.npy"), chunk);
  }
}

/* f8 rows longer than the conversion buffer, and a chunk size with a tail. */
static void test_stream_large_f8(void **state) {
  (void)state;
  enum { ROWS = 7, COLS = 700 };
  double *d = malloc(sizeof(double) * ROWS * COLS);
  assert_non_null(d);
  for (int i = 0; i < ROWS * COLS; i++)
    d[i] = i * 0.1 - 100.0; /* little-endian host assumed, as in the fixtures */
  char path[256];
  temp_path(path, sizeof path);
  write_raw(path, 1, 0, "{'descr': '<f8', 'fortran_order': False, 'shape': (7, 700)}", d,
            sizeof(double) * ROWS * COLS);

  char err[512] = "";
  IrTensor t;
  assert_true(fe_npy_read(path, &t, err, sizeof err));
  for (int i = 0; i < ROWS * COLS; i++)
    assert_true(((float *)t.data)[i] == (float)d[i]);
  free(t.data);
  for (int64_t chunk = 1; chunk <= ROWS + 1; chunk++)
    stream_matches_whole(path, chunk);
  free(d);
  remove(path);
}

static void test_stream_errors(void **state) {
  (void)state;
  char err[512] = "";
  FeNpyReader r;
  assert_false(fe_npy_open(&r, fixture("scalar.npy"), err, sizeof err));
  assert_string_equal(err, "cannot read a scalar row by row: streaming needs rank >= 1");
  assert_null(r.f);
  assert_false(fe_npy_open(&r, fixture("truncated.npy"), err, sizeof err));
  assert_string_equal(err, "file is truncated: expected 48 data bytes, found 43");
  assert_int_equal(fe_npy_read_rows(&r, NULL, 1, err, sizeof err), -1);
  assert_string_equal(err, "the .npy reader is not open");

  /* The file shrinks while it is being streamed. It is larger than stdio's
   * buffer, so that the reads after the first row reach the file. */
  enum { ROWS = 4096, COLS = 3 };
  const char *header = "{'descr': '<i4', 'fortran_order': False, 'shape': (4096, 3)}";
  int32_t *v = calloc(ROWS * COLS, sizeof *v);
  assert_non_null(v);
  char path[256];
  temp_path(path, sizeof path);
  write_raw(path, 1, 0, header, v, sizeof *v * ROWS * COLS);
  assert_true(fe_npy_open(&r, path, err, sizeof err));
  assert_int_equal(fe_npy_read_rows(&r, v, 1, err, sizeof err), 1);
  assert_int_equal(fe_npy_read_rows(&r, v, -1, err, sizeof err), -1);
  assert_string_equal(err, "cannot read -1 rows");
  assert_int_equal(fe_npy_read_rows(&r, v, 0, err, sizeof err), 0);
  assert_int_equal(truncate(path, (off_t)(10 + strlen(header) + 20000)), 0);
  assert_int_equal(fe_npy_read_rows(&r, v, ROWS, err, sizeof err), -1);
  assert_string_equal(err, "file is truncated: expected 49152 data bytes, found 20000");
  free(v);
  fe_npy_close(&r);
  fe_npy_close(&r); /* closing twice is harmless */
  remove(path);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_roundtrip_f32),
      cmocka_unit_test(test_roundtrip_i8),
      cmocka_unit_test(test_roundtrip_u8),
      cmocka_unit_test(test_roundtrip_i32),
      cmocka_unit_test(test_roundtrip_scalar_empty_rank8),
      cmocka_unit_test(test_write_matches_numpy),
      cmocka_unit_test(test_write_errors),
      cmocka_unit_test(test_numpy_f4_2d),
      cmocka_unit_test(test_numpy_f8_3d),
      cmocka_unit_test(test_numpy_small_ints),
      cmocka_unit_test(test_numpy_i4),
      cmocka_unit_test(test_numpy_scalar),
      cmocka_unit_test(test_numpy_versions_2_and_3),
      cmocka_unit_test(test_numpy_rejected),
      cmocka_unit_test(test_header_spellings),
      cmocka_unit_test(test_header_errors),
      cmocka_unit_test(test_absurd_shapes),
      cmocka_unit_test(test_preamble_errors),
      cmocka_unit_test(test_stream_numpy_files),
      cmocka_unit_test(test_stream_large_f8),
      cmocka_unit_test(test_stream_errors),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
