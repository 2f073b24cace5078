/* test_stream.c: the streaming compile (docs/ir.md, "Constants in their
 * stored form"). A model whose weights are BF16, F16 and F32 in a
 * safetensors file is parsed with its constants left as views of the mapped
 * file (the weights; the other constants are widened at parse time),
 * quantized and compiled: the f32 forms alive at once never exceed the
 * largest weight's (IrModule.view_bytes_peak is exactly its f32 size, while
 * all of them would be several times that), none is left alive after the
 * passes, and the quantized module, its interpreter outputs, the library
 * and the weights file are byte-identical to those of the same model with
 * every constant widened to f32 in memory at parse time, as q8c did before. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "codegen/codegen.h"
#include "frontend/frontend.h"
#include "passes/passes.h"

/* name, safetensors dtype, rows, cols (cols 0: rank 1) */
static const struct {
  const char *name, *dtype;
  int rows, cols;
} tensors[] = {
    {"g", "BF16", 40, 0},      {"w1", "BF16", 48, 40}, {"b1", "F32", 48, 0},
    {"w2", "F16", 64, 48},     {"b2", "BF16", 64, 0},  {"w3", "BF16", 16, 64},
};
enum { NT = sizeof tensors / sizeof tensors[0], LARGEST_F32 = 64 * 48 * 4 };

static const char *model_ir =
    "model stream {\n"
    "  weights \"w.safetensors\"\n"
    "  input %x : f32[?, 40] {range = [-2, 2]}\n"
    "  %h = rmsnorm %x, @g {range = [-4, 4]}\n"
    "  %a = linear %h, @w1, @b1 {range = [-6, 6]}\n"
    "  %s = silu %a {range = [-0.28, 6]}\n"
    "  %b = linear %s, @w2, @b2 {range = [-8, 8]}\n"
    "  %y = linear %b, @w3 {range = [-10, 10]}\n"
    "  output %y\n"
    "}\n";

static uint32_t lcg(uint32_t *s) {
  *s = *s * 1664525u + 1013904223u;
  return *s >> 8;
}

/* The model and its weights in a new directory; returns the .ir's path. */
static void write_model(const char *dir, char *ir_path, size_t size) {
  char path[512], header[2048];
  size_t hn = (size_t)snprintf(header, sizeof header, "{");
  uint64_t off = 0;
  for (int i = 0; i < NT; i++) {
    int esize = strcmp(tensors[i].dtype, "F32") == 0 ? 4 : 2;
    uint64_t n = (uint64_t)tensors[i].rows * (uint64_t)(tensors[i].cols ? tensors[i].cols : 1);
    char shape[64];
    if (tensors[i].cols)
      snprintf(shape, sizeof shape, "[%d, %d]", tensors[i].rows, tensors[i].cols);
    else
      snprintf(shape, sizeof shape, "[%d]", tensors[i].rows);
    hn += (size_t)snprintf(header + hn, sizeof header - hn,
                           "%s\"%s\": {\"dtype\": \"%s\", \"shape\": %s, \"data_offsets\": [%llu, "
                           "%llu]}",
                           i ? ", " : "", tensors[i].name, tensors[i].dtype, shape,
                           (unsigned long long)off, (unsigned long long)(off + n * esize));
    off += n * (uint64_t)esize;
  }
  hn += (size_t)snprintf(header + hn, sizeof header - hn, "}");
  snprintf(path, sizeof path, "%s/w.safetensors", dir);
  FILE *f = fopen(path, "wb");
  assert_non_null(f);
  uint64_t hlen = hn;
  unsigned char le[8];
  for (int b = 0; b < 8; b++)
    le[b] = (unsigned char)(hlen >> (8 * b));
  fwrite(le, 1, 8, f);
  fwrite(header, 1, hn, f);
  uint32_t seed = 12345;
  for (int i = 0; i < NT; i++) {
    uint64_t n = (uint64_t)tensors[i].rows * (uint64_t)(tensors[i].cols ? tensors[i].cols : 1);
    for (uint64_t j = 0; j < n; j++) {
      /* Values in about [-0.5, 0.5] (gains around 1), of every mantissa. */
      float v = ((float)(lcg(&seed) & 0xFFFF) / 65536.0f - 0.5f) * (tensors[i].cols ? 1 : 0.2f);
      if (!tensors[i].cols && strcmp(tensors[i].name, "g") == 0)
        v += 1;
      uint32_t bits;
      memcpy(&bits, &v, 4);
      if (strcmp(tensors[i].dtype, "F32") == 0) {
        for (int b = 0; b < 4; b++)
          fputc((int)(bits >> (8 * b)) & 0xFF, f);
      } else if (strcmp(tensors[i].dtype, "BF16") == 0) {
        fputc((int)(bits >> 16) & 0xFF, f);
        fputc((int)(bits >> 24) & 0xFF, f);
      } else { /* F16: sign, an exponent for [2^-6, 2), any mantissa */
        uint16_t h = (uint16_t)((bits >> 31) << 15 | (9 + lcg(&seed) % 7) << 10 |
                                (lcg(&seed) & 0x3FF));
        fputc(h & 0xFF, f);
        fputc(h >> 8, f);
      }
    }
  }
  assert_int_equal(fclose(f), 0);
  snprintf(ir_path, size, "%s/model.ir", dir);
  f = fopen(ir_path, "w");
  assert_non_null(f);
  fputs(model_ir, f);
  assert_int_equal(fclose(f), 0);
}

/* What q8c did before views: every constant widened to f32 in memory. */
static void materialize_all(IrModule *m) {
  for (int i = 0; i < m->nconsts; i++) {
    IrValue *v = m->consts[i];
    if (!v->view)
      continue;
    size_t bytes = v->view->numel * sizeof(float);
    void *copy = ir_alloc_data(m->arena, bytes);
    assert_non_null(copy);
    memcpy(copy, ir_const_data(m, v), bytes);
    ir_const_release(m, v);
    v->data = copy;
    v->view = NULL;
  }
}

static IrModule *quantized(const char *ir, bool views, size_t *all_f32) {
  IrModule *m = fe_parse_file(ir);
  assert_non_null(m);
  assert_false(m->diag.failed);
  size_t total = 0;
  int nviews = 0;
  for (int i = 0; i < m->nconsts; i++)
    if (m->consts[i]->view) {
      nviews++;
      total += m->consts[i]->view->numel * sizeof(float);
      assert_null(m->consts[i]->data);
    }
  /* The three weights, F16 and BF16 alike; the gain and the biases (F32,
   * BF16) are widened at parse time (ir_pin_non_weights). */
  assert_int_equal(nviews, 3);
  assert_int_equal(m->view_bytes, 0);
  if (all_f32)
    *all_f32 = total;
  if (!views)
    materialize_all(m);
  PassOptions o;
  pass_options_init(&o);
  o.quiet = true;
  if (!pass_run_pipeline(m, &o))
    fail_msg("%s", m->diag.msg);
  return m;
}

static unsigned char *slurp(const char *path, size_t *n) {
  FILE *f = fopen(path, "rb");
  assert_non_null(f);
  fseek(f, 0, SEEK_END);
  long size = ftell(f);
  fseek(f, 0, SEEK_SET);
  unsigned char *b = malloc((size_t)size + 1);
  assert_int_equal(fread(b, 1, (size_t)size, f), (size_t)size);
  fclose(f);
  *n = (size_t)size;
  return b;
}

static void assert_same_file(const char *a, const char *b) {
  size_t na, nb;
  unsigned char *da = slurp(a, &na), *db = slurp(b, &nb);
  assert_true(na > 0);
  assert_int_equal(na, nb);
  assert_memory_equal(da, db, na);
  free(da);
  free(db);
}

/* Compile to DIR/model.so (and DIR/model.weights with weights_out). */
static void compile(IrModule *m, const char *dir, bool weights_out) {
  CgOptions co = {.opt_level = 2};
  char err[256], so[512], wpath[512];
  assert_true(cg_parse_targets("avx2", &co, err, sizeof err));
  snprintf(so, sizeof so, "%s/model.so", dir);
  snprintf(wpath, sizeof wpath, "%s/model.weights", dir);
  if (weights_out) {
    co.weights_out = wpath;
    co.weights_name = "model.weights";
  }
  if (!cg_compile_to_file(m, &co, CG_EMIT_SO, so))
    fail_msg("%s", m->diag.msg);
}

static void test_stream(void **state) {
  (void)state;
  char dir[] = "/tmp/q8c_stream_XXXXXX", ir[600];
  assert_non_null(mkdtemp(dir));
  write_model(dir, ir, sizeof ir);

  size_t all_f32 = 0;
  IrModule *a = quantized(ir, true, &all_f32);
  /* One weight's f32 form at a time: the largest, w2 (F16 [64, 48]). */
  assert_int_equal(a->view_bytes_peak, LARGEST_F32);
  assert_int_equal(a->view_bytes, 0);
  assert_int_equal(all_f32, (48 * 40 + 64 * 48 + 16 * 64) * 4);
  IrModule *b = quantized(ir, false, NULL);

  /* The same quantized module, constant for constant. */
  char *pa = ir_print(a), *pb = ir_print(b);
  assert_non_null(pa);
  assert_non_null(pb);
  assert_string_equal(pa, pb);
  free(pa);
  free(pb);
  assert_int_equal(a->nconsts, b->nconsts);
  for (int i = 0; i < a->nconsts; i++) {
    const IrValue *ca = a->consts[i], *cb = b->consts[i];
    assert_string_equal(ca->name, cb->name);
    int64_t n;
    assert_true(ir_type_numel(&ca->type, 1, &n));
    assert_memory_equal(ir_const_data(a, ca), ir_const_data(b, cb),
                        (size_t)n * ir_dtype_size(ca->type.dtype));
    ir_const_release(a, ca);
  }

  /* The interpreter, batch 3. */
  float x[3 * 40];
  uint32_t seed = 7;
  for (int i = 0; i < 3 * 40; i++)
    x[i] = (float)(lcg(&seed) % 4001) / 1000.0f - 2.0f;
  IrTensor in = {{IR_F32, 2, {3, 40}}, x}, oa, ob;
  assert_true(ir_interp_f32(a, 3, &in, &oa, NULL, NULL));
  assert_true(ir_interp_f32(b, 3, &in, &ob, NULL, NULL));
  assert_memory_equal(oa.data, ob.data, 3 * 16 * sizeof(float));
  free(oa.data);
  free(ob.data);

  /* The libraries and weights files, byte for byte. */
  char da[700], db[700], fa[800], fb[800];
  snprintf(da, sizeof da, "%s/a", dir);
  snprintf(db, sizeof db, "%s/b", dir);
  assert_int_equal(mkdir(da, 0755), 0);
  assert_int_equal(mkdir(db, 0755), 0);
  for (int wo = 0; wo < 2; wo++) {
    compile(a, da, wo);
    compile(b, db, wo);
    snprintf(fa, sizeof fa, "%s/model.so", da);
    snprintf(fb, sizeof fb, "%s/model.so", db);
    assert_same_file(fa, fb);
    if (wo) {
      snprintf(fa, sizeof fa, "%s/model.weights", da);
      snprintf(fb, sizeof fb, "%s/model.weights", db);
      assert_same_file(fa, fb);
    }
  }
  /* Codegen's reads leave no f32 form alive. */
  assert_int_equal(a->view_bytes, 0);
  assert_int_equal(a->view_bytes_peak, LARGEST_F32);
  ir_module_free(a);
  ir_module_free(b);

  char cmd[800];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  assert_int_equal(system(cmd), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {cmocka_unit_test(test_stream)};
  return cmocka_run_group_tests(tests, NULL, NULL);
}
