/* run_model.c: run a compiled model through libq8rt and write its outputs,
 * for the tests of models q8c cross-compiles (AArch64, run under qemu-user;
 * tests/py/test_aarch64.py). It needs nothing but libc and the runtime, so
 * any cross compiler builds it.
 *
 *   run_model MODEL.so [--quantized] [--batch N] [-i INPUT.npy]... [-o OUTPUT.npy]...
 *
 * --quantized runs the quantized entry (q8rt_run_quantized): tensors in
 * their quantized form (q8_tensor_desc.qdtype) where they have one.
 * --batch N runs a model compiled with a run-time batch at batch N
 * (q8rt_run_dims; the tensors' batch dims are N long).
 * Inputs and outputs are in the model's order, .npy files (format version 1
 * to 3, little-endian, C order; f32, i8, u8, i32 or i64) whose dtype and shape
 * must be the model's. The variant the runtime chose is printed as
 * "variant: NAME". Exit status 0, or 1 with a message on stderr. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "q8rt.h"

enum { MAX_FILES = 64 };

static const struct {
  const char *descr;
  int32_t dtype;
  size_t size;
} dtypes[] = {
    {"<f4", Q8_DTYPE_F32, 4}, {"|i1", Q8_DTYPE_I8, 1}, {"|u1", Q8_DTYPE_U8, 1},
    {"<i4", Q8_DTYPE_I32, 4}, {"<i8", Q8_DTYPE_I64, 8}, {"<i1", Q8_DTYPE_I8, 1}, {"<u1", Q8_DTYPE_U8, 1},
};

static const char *descr_of(int32_t dtype) {
  for (size_t i = 0; i < sizeof dtypes / sizeof dtypes[0]; i++)
    if (dtypes[i].dtype == dtype)
      return dtypes[i].descr;
  return NULL;
}

static size_t size_of(int32_t dtype) {
  for (size_t i = 0; i < sizeof dtypes / sizeof dtypes[0]; i++)
    if (dtypes[i].dtype == dtype)
      return dtypes[i].size;
  return 0;
}

static int fail(const char *fmt, const char *a, const char *b) {
  fprintf(stderr, "run_model: error: ");
  fprintf(stderr, fmt, a, b);
  fputc('\n', stderr);
  return 0;
}

/* The value of 'key' in a .npy header dict: the text after "'key':". */
static const char *dict_value(const char *h, const char *key) {
  char pat[32];
  snprintf(pat, sizeof pat, "'%s':", key);
  const char *p = strstr(h, pat);
  if (!p)
    return NULL;
  p += strlen(pat);
  while (*p == ' ')
    p++;
  return p;
}

/* Read `path` into a new buffer after checking that it holds a tensor like
 * `t`. 1 on success, else 0 with a message. */
static int read_npy(const char *path, const q8_tensor_desc *t, void **out) {
  FILE *f = fopen(path, "rb");
  if (!f)
    return fail("cannot open '%s'%s", path, "");
  unsigned char pre[12];
  int ok = 0;
  char *h = NULL;
  void *data = NULL;
  if (fread(pre, 1, 10, f) != 10 || memcmp(pre, "\x93NUMPY", 6) != 0) {
    fail("'%s' is not a .npy file%s", path, "");
    goto done;
  }
  uint32_t hlen = pre[8] | (uint32_t)pre[9] << 8;
  if (pre[6] >= 2) {
    if (fread(pre + 10, 1, 2, f) != 2) {
      fail("'%s': truncated header%s", path, "");
      goto done;
    }
    hlen |= (uint32_t)pre[10] << 16 | (uint32_t)pre[11] << 24;
  }
  h = calloc(hlen + 1, 1);
  if (!h || fread(h, 1, hlen, f) != hlen) {
    fail("'%s': truncated header%s", path, "");
    goto done;
  }
  const char *descr = dict_value(h, "descr"), *fo = dict_value(h, "fortran_order"),
             *shape = dict_value(h, "shape");
  const char *want = descr_of(t->dtype);
  if (!descr || !fo || !shape || !want) {
    fail("'%s': a header without descr, fortran_order or shape%s", path, "");
    goto done;
  }
  if (strncmp(fo, "False", 5) != 0) {
    fail("'%s': Fortran order is not supported%s", path, "");
    goto done;
  }
  if (strncmp(descr + 1, want, 3) != 0 &&
      !(want[0] == '|' && descr[1] == '<' && strncmp(descr + 2, want + 1, 2) == 0)) {
    fail("'%s': dtype is not the model's (%s)", path, want);
    goto done;
  }
  /* The shape tuple: the model's dims, in order. */
  const char *p = shape + 1;
  int rank = 0;
  for (;;) {
    while (*p == ' ' || *p == ',')
      p++;
    if (*p == ')' || !*p)
      break;
    char *end;
    long long d = strtoll(p, &end, 10);
    if (end == p || rank >= t->rank || d != t->dims[rank]) {
      fail("'%s': its shape %s is not the model's", path, shape);
      goto done;
    }
    rank++;
    p = end;
  }
  if (rank != t->rank) {
    fail("'%s': its shape %s is not the model's", path, shape);
    goto done;
  }
  size_t bytes = (size_t)q8rt_tensor_numel(t) * size_of(t->dtype);
  data = malloc(bytes ? bytes : 1);
  if (!data || fread(data, 1, bytes, f) != bytes) {
    fail("'%s': truncated data%s", path, "");
    goto done;
  }
  *out = data;
  data = NULL;
  ok = 1;
done:
  free(data);
  free(h);
  fclose(f);
  return ok;
}

/* Write a tensor like `t` from `data` as a version 1 .npy file. */
static int write_npy(const char *path, const q8_tensor_desc *t, const void *data) {
  char shape[256] = "(";
  for (int i = 0; i < t->rank; i++)
    snprintf(shape + strlen(shape), sizeof shape - strlen(shape), "%lld%s", (long long)t->dims[i],
             t->rank == 1      ? ","
             : i + 1 < t->rank ? ", "
                               : "");
  strcat(shape, ")");
  char h[512];
  int n = snprintf(h, sizeof h, "{'descr': '%s', 'fortran_order': False, 'shape': %s, }",
                   descr_of(t->dtype), shape);
  /* Pad with spaces and a newline so that the data starts at a multiple of 64. */
  int total = (10 + n + 1 + 63) / 64 * 64;
  while (10 + n + 1 < total)
    h[n++] = ' ';
  h[n++] = '\n';
  FILE *f = fopen(path, "wb");
  if (!f)
    return fail("cannot write '%s'%s", path, "");
  unsigned char pre[10] = {
      0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, (unsigned char)(n & 0xff), (unsigned char)(n >> 8)};
  size_t bytes = (size_t)q8rt_tensor_numel(t) * size_of(t->dtype);
  int ok = fwrite(pre, 1, 10, f) == 10 && fwrite(h, 1, (size_t)n, f) == (size_t)n &&
           fwrite(data, 1, bytes, f) == bytes;
  if (fclose(f) != 0 || !ok)
    return fail("cannot write '%s'%s", path, "");
  return 1;
}

/* Tensor `t` as the chosen entry takes or gives it, at `batch` (0: the
 * descriptor's shapes). */
static q8_tensor_desc at_entry(const q8_tensor_desc *t, int quantized, int64_t batch) {
  q8_tensor_desc e = *t;
  if (quantized)
    e.dtype = t->qdtype;
  if (batch > 0)
    q8rt_tensor_dims(t, batch, e.dims);
  return e;
}

int main(int argc, char **argv) {
  const char *model = NULL, *ins[MAX_FILES], *outs[MAX_FILES];
  int nin = 0, nout = 0, quantized = 0;
  int64_t batch = 0;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--quantized") == 0) {
      quantized = 1;
    } else if (strcmp(argv[i], "--batch") == 0 && i + 1 < argc) {
      batch = atoll(argv[++i]);
    } else if ((strcmp(argv[i], "-i") == 0 || strcmp(argv[i], "-o") == 0) && i + 1 < argc) {
      if (argv[i][1] == 'i' && nin < MAX_FILES)
        ins[nin++] = argv[++i];
      else if (argv[i][1] == 'o' && nout < MAX_FILES)
        outs[nout++] = argv[++i];
      else
        return fail("too many files%s%s", "", ""), 1;
    } else if (!model && argv[i][0] != '-') {
      model = argv[i];
    } else {
      fprintf(stderr, "usage: run_model MODEL.so [--quantized] [--batch N] [-i INPUT.npy]... [-o OUTPUT.npy]...\n");
      return 1;
    }
  }
  if (!model) {
    fprintf(stderr, "usage: run_model MODEL.so [--quantized] [--batch N] [-i INPUT.npy]... [-o OUTPUT.npy]...\n");
    return 1;
  }
  char err[512];
  q8rt_model *m;
  if (q8rt_load(model, &m, err, sizeof err) != Q8RT_OK)
    return fail("%s%s", err, ""), 1;
  printf("variant: %s\n", q8rt_variant(m));
  int rc = 1;
  void *in[MAX_FILES] = {0}, *out[MAX_FILES] = {0};
  char count[64];
  snprintf(count, sizeof count, "%d inputs and %d outputs", q8rt_num_inputs(m),
           q8rt_num_outputs(m));
  if (nin != q8rt_num_inputs(m) || nout != q8rt_num_outputs(m)) {
    fail("the model has %s%s", count, "");
    goto done;
  }
  for (int i = 0; i < nin; i++) {
    q8_tensor_desc t = at_entry(q8rt_input(m, i), quantized, batch);
    if (!read_npy(ins[i], &t, &in[i]))
      goto done;
  }
  for (int i = 0; i < nout; i++) {
    q8_tensor_desc t = at_entry(q8rt_output(m, i), quantized, batch);
    size_t bytes = (size_t)q8rt_tensor_numel(&t) * size_of(t.dtype);
    if (!(out[i] = calloc(bytes ? bytes : 1, 1))) {
      fail("out of memory%s%s", "", "");
      goto done;
    }
  }
  int64_t dims[MAX_FILES][Q8_MODEL_MAX_RANK];
  const int64_t *dimp[MAX_FILES];
  for (int i = 0; i < nin; i++) {
    q8_tensor_desc t = at_entry(q8rt_input(m, i), quantized, batch);
    memcpy(dims[i], t.dims, sizeof dims[i]);
    dimp[i] = dims[i];
  }
  q8rt_status s =
      batch > 0 ? (quantized ? q8rt_run_quantized_dims : q8rt_run_dims)(
                      m, nin, (const void *const *)in, dimp, nout, out, err, sizeof err)
                : (quantized ? q8rt_run_quantized : q8rt_run)(m, nin, (const void *const *)in,
                                                              nout, out, err, sizeof err);
  if (s != Q8RT_OK) {
    fail("%s%s", err, "");
    goto done;
  }
  for (int i = 0; i < nout; i++) {
    q8_tensor_desc t = at_entry(q8rt_output(m, i), quantized, batch);
    if (!write_npy(outs[i], &t, out[i]))
      goto done;
  }
  rc = 0;
done:
  for (int i = 0; i < MAX_FILES; i++) {
    free(in[i]);
    free(out[i]);
  }
  q8rt_free(m);
  return rc;
}
