/* fuzz_pipeline.c: the whole compiler on small generated graphs: parse,
 * verify, run in f32, quantize, run the integer interpreter, and for some
 * inputs compile with the JIT and run the machine code.
 *
 * The input bytes are not text: they drive a generator that writes a valid
 * model (an input of a few features, up to 8 ops drawn from linear, matmul by
 * a constant, relu, gelu in both forms, add, mul, sub, div (with values,
 * constants whose size-1 dims broadcast, and literal numbers), sigmoid,
 * tanh, silu, softmax (any axis, causal), layernorm, transpose, reshape
 * (with -1), rmsnorm, slice, concat, split and gather by constant i32 ids),
 * its weights file, the input data and calibration samples, whose values
 * include NaN, +-Inf, huge, tiny and subnormal numbers, and the quantization
 * options (ranges written in the text, dynamic, or calibration with each
 * method; u8 or s8 activations; per-channel or per-tensor weights). So every
 * input reaches the passes and the backend, instead of stopping at the
 * parser as random text would.
 *
 * Properties checked beyond "no crash, hang or sanitizer report":
 *   - the generated model parses (else the generator or the parser is wrong);
 *   - the f32 interpreter runs it;
 *   - the pipeline either succeeds or reports a user error, never "internal
 *     error" (a pass that breaks the IR);
 *   - the quantized module runs in the interpreter, through its f32 entry and
 *     its quantized entry (inputs quantized as their layers would), and each
 *     output with a quantized form is exactly quantize(the f32 output);
 *   - compiled by the JIT (one input in four, generic or native variant, at
 *     -O0..-O3), it loads through the runtime and the outputs of both entries
 *     are the interpreter's, byte for byte. JIT compilation takes ~50-100 ms, so
 *     libFuzzer runs this target at some tens of inputs per second. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codegen/codegen.h"
#include "fuzz.h"
#include "ir/refops.h"
#include "passes/passes.h"
#include "q8rt.h"

static char dir[4096];

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  snprintf(dir, sizeof dir, "%s", fuzz_setup());
  return 0;
}

/* ---- reading choices from the input ---- */

typedef struct {
  const uint8_t *p;
  size_t n, pos;
} Bytes;

/* The next byte, or 0 once the input is used up (so every input is a model). */
static unsigned next(Bytes *b) { return b->pos < b->n ? b->p[b->pos++] : 0; }
static unsigned pick(Bytes *b, unsigned n) { return n ? next(b) % n : 0; }

/* A float for weights and data: mostly small values on a grid, sometimes one
 * that stresses the arithmetic. */
static float value(Bytes *b, bool special) {
  unsigned c = next(b);
  if (special)
    switch (c) {
    case 250: return NAN;
    case 251: return INFINITY;
    case 252: return -INFINITY;
    case 253: return 3e38f;
    case 254: return 1e-41f; /* subnormal */
    case 255: return -1e20f;
    }
  return (float)((int)c - 128) / 32.0f;
}

/* ---- the model being generated ---- */

enum { MAX_VALUES = 12, MAX_CONSTS = 24, MAX_TEXT = 8192 };

typedef struct {
  char name[16];
  int rank;
  int64_t dims[3]; /* dims[0] is the batch `?` */
} Val;

typedef struct {
  char text[MAX_TEXT];
  size_t len;
  Val vals[MAX_VALUES];
  int nvals;
  FeTensor consts[MAX_CONSTS];
  float *data[MAX_CONSTS];
  int nconsts;
  bool special;
} Gen;

static void emit(Gen *g, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void emit(Gen *g, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(g->text + g->len, sizeof g->text - g->len, fmt, ap);
  va_end(ap);
  fuzz_check(n >= 0 && (size_t)n < sizeof g->text - g->len, "model text too long");
  g->len += (size_t)n;
}

/* A new f32 constant of shape [d0] or [d0, d1]; returns its name. */
static const char *add_const(Gen *g, Bytes *b, int64_t d0, int64_t d1) {
  fuzz_check(g->nconsts < MAX_CONSTS, "too many constants");
  int i = g->nconsts++;
  FeTensor *t = &g->consts[i];
  char *name = malloc(16);
  snprintf(name, 16, "c%d", i);
  int64_t n = d0 * (d1 ? d1 : 1);
  g->data[i] = malloc((size_t)n * sizeof(float));
  /* Weights: a row may be all zeros, or all equal. */
  unsigned style = pick(b, 8);
  for (int64_t j = 0; j < n; j++)
    g->data[i][j] = style == 0 ? 0.0f : style == 1 ? 0.5f : value(b, g->special);
  *t = (FeTensor){.name = name, .data = g->data[i], .nbytes = (size_t)n * sizeof(float)};
  t->type.dtype = IR_F32;
  t->type.rank = d1 ? 2 : 1;
  t->type.dims[0] = d0;
  t->type.dims[1] = d1;
  return name;
}

/* A new i32 constant [n] of ids in [0, vocab) (gather's); returns its name. */
static const char *add_ids_const(Gen *g, Bytes *b, int64_t n, int64_t vocab) {
  fuzz_check(g->nconsts < MAX_CONSTS, "too many constants");
  int i = g->nconsts++;
  FeTensor *t = &g->consts[i];
  char *name = malloc(16);
  snprintf(name, 16, "c%d", i);
  int32_t *ids = malloc((size_t)n * sizeof *ids);
  for (int64_t j = 0; j < n; j++)
    ids[j] = (int32_t)pick(b, (unsigned)vocab);
  g->data[i] = (float *)ids; /* freed with the others */
  *t = (FeTensor){.name = name, .data = ids, .nbytes = (size_t)n * sizeof *ids};
  t->type.dtype = IR_I32;
  t->type.rank = 1;
  t->type.dims[0] = n;
  return name;
}

static void range_attr(Gen *g, Bytes *b, bool ranges, bool first) {
  if (!ranges)
    return;
  double lo = -(double)pick(b, 16) / 2, hi = lo + (double)pick(b, 32) / 4;
  emit(g, "%srange = [%g, %g]", first ? " {" : ", ", lo, hi);
}

/* One node on value `a`; false when the op does not fit the operand. */
static bool gen_node(Gen *g, Bytes *b, int a, bool ranges) {
  Val v = g->vals[a], r = v;
  int64_t k = v.dims[v.rank - 1];
  snprintf(r.name, sizeof r.name, "v%d", g->nvals);
  char line[512];
  int attrs = 0; /* attributes already opened with '{' */
  /* Bytes below 240 choose among the first 12 ops as before the transformer
   * ops came, so the corpus and regression inputs keep their graphs unless
   * they hold a byte of 240 or more here; those choose a transformer op. */
  unsigned c = next(b);
  switch (c < 240 ? c % 12 : 12 + (c - 240) % 9) {
  case 0:
  case 1:
  case 2: { /* linear, with or without bias */
    int64_t n = 1 + pick(b, 12);
    const char *w = add_const(g, b, n, k);
    const char *bias = pick(b, 3) ? add_const(g, b, n, 0) : NULL;
    snprintf(line, sizeof line, "linear %%%s, @%s%s%s", v.name, w, bias ? ", @" : "",
             bias ? bias : "");
    r.dims[r.rank - 1] = n;
    break;
  }
  case 3: { /* matmul by a constant [K, N] */
    if (v.rank < 2)
      return false;
    int64_t n = 1 + pick(b, 12);
    const char *w = add_const(g, b, k, n);
    snprintf(line, sizeof line, "matmul %%%s, @%s", v.name, w);
    r.dims[r.rank - 1] = n;
    break;
  }
  case 4:
    snprintf(line, sizeof line, "relu %%%s", v.name);
    break;
  case 5:
    snprintf(line, sizeof line, "gelu %%%s", v.name);
    break;
  case 6:
  case 7: { /* add / mul with a vector, or with a value of the same shape */
    const char *op = pick(b, 2) ? "add" : "mul";
    int other = -1;
    for (int i = 0; i < g->nvals; i++)
      if (g->vals[i].rank == v.rank && memcmp(g->vals[i].dims, v.dims, sizeof v.dims) == 0 &&
          pick(b, 2))
        other = i;
    if (other >= 0)
      snprintf(line, sizeof line, "%s %%%s, %%%s", op, v.name, g->vals[other].name);
    else
      snprintf(line, sizeof line, "%s %%%s, @%s", op, v.name, add_const(g, b, k, 0));
    break;
  }
  case 8:
    snprintf(line, sizeof line, "softmax %%%s", v.name);
    break;
  case 9: {
    const char *gamma = add_const(g, b, k, 0), *beta = add_const(g, b, k, 0);
    snprintf(line, sizeof line, "layernorm %%%s, @%s, @%s {eps = %g", v.name, gamma, beta,
             pick(b, 2) ? 1e-5 : 0.0);
    attrs = 1;
    break;
  }
  case 10: /* swap the two inner axes of a rank-3 value */
    if (v.rank != 3)
      return false;
    snprintf(line, sizeof line, "transpose %%%s {perm = [0, 2, 1]", v.name);
    r.dims[1] = v.dims[2];
    r.dims[2] = v.dims[1];
    attrs = 1;
    break;
  case 18: { /* the activations of the transformer ops */
    static const char *const acts[] = {"sigmoid", "tanh", "silu", "gelu"};
    unsigned act = pick(b, 4);
    snprintf(line, sizeof line, "%s %%%s%s", acts[act], v.name,
             act == 3 ? " {approximate = tanh" : "");
    attrs = act == 3;
    break;
  }
  case 19:
  case 20: { /* a binary op with a literal, or a constant that broadcasts */
    static const char *const ops[] = {"sub", "div", "add", "mul"};
    const char *op = ops[pick(b, 4)];
    unsigned how = pick(b, 3);
    char other[40];
    if (how == 0) { /* a literal number, sometimes an infinity */
      unsigned c = pick(b, 16);
      if (c < 2)
        snprintf(other, sizeof other, "%sinf", c ? "-" : "");
      else
        snprintf(other, sizeof other, "%.9g", (double)value(b, false));
    } else if (how == 1 && v.rank == 3) { /* [a, 1]: size-1 dims on both sides */
      snprintf(other, sizeof other, "@%s", add_const(g, b, v.dims[1], 1));
    } else { /* [1, k] or [1] */
      const char *c = how == 1 ? add_const(g, b, 1, k) : add_const(g, b, 1, 0);
      snprintf(other, sizeof other, "@%s", c);
    }
    if (pick(b, 2))
      snprintf(line, sizeof line, "%s %%%s, %s", op, v.name, other);
    else
      snprintf(line, sizeof line, "%s %s, %%%s", op, other, v.name);
    break;
  }
  case 11: /* [?, a*b] <-> [?, a, b] */
    if (v.rank == 3) {
      snprintf(line, sizeof line, "reshape %%%s {shape = [?, %lld]", v.name,
               (long long)(v.dims[1] * v.dims[2]));
      r.rank = 2;
      r.dims[1] = v.dims[1] * v.dims[2];
    } else {
      int64_t f = k % 2 == 0 ? 2 : k % 3 == 0 ? 3 : 1;
      snprintf(line, sizeof line, "reshape %%%s {shape = [?, %lld, %lld]", v.name, (long long)f,
               (long long)(k / f));
      r.rank = 3;
      r.dims[1] = f;
      r.dims[2] = k / f;
    }
    attrs = 1;
    break;
  case 12: { /* rmsnorm over the last axis */
    const char *gamma = add_const(g, b, k, 0);
    snprintf(line, sizeof line, "rmsnorm %%%s, @%s {eps = %g", v.name, gamma,
             pick(b, 2) ? 1e-6 : 0.0);
    attrs = 1;
    break;
  }
  case 13: { /* slice of the last axis, the end sometimes past it (clamped) */
    int64_t start = pick(b, (unsigned)k), end = start + 1 + pick(b, (unsigned)(k - start + 2));
    snprintf(line, sizeof line, "slice %%%s {axis = %d, start = %lld, end = %lld", v.name,
             pick(b, 2) ? -1 : v.rank - 1, (long long)start, (long long)end);
    r.dims[r.rank - 1] = (end < k ? end : k) - start;
    attrs = 1;
    break;
  }
  case 14: { /* concat with itself or a value of the same shape, on a non-batch axis */
    int other = a, axis = 1 + (int)pick(b, (unsigned)(v.rank - 1));
    for (int i = 0; i < g->nvals; i++)
      if (g->vals[i].rank == v.rank && memcmp(g->vals[i].dims, v.dims, sizeof v.dims) == 0 &&
          pick(b, 2))
        other = i;
    snprintf(line, sizeof line, "concat %%%s, %%%s {axis = %d", v.name, g->vals[other].name,
             pick(b, 2) ? axis : axis - v.rank);
    r.dims[axis] *= 2;
    attrs = 1;
    break;
  }
  case 15: { /* softmax over a chosen axis, or causal over the last two */
    bool causal = v.rank == 3 && v.dims[1] <= v.dims[2] && pick(b, 2);
    snprintf(line, sizeof line, "softmax %%%s {%s = %d", v.name, causal ? "causal" : "axis",
             causal ? 1 : (int)pick(b, (unsigned)v.rank) - (pick(b, 2) ? v.rank : 0));
    attrs = 1;
    break;
  }
  case 16: { /* gather rows of a table by constant ids, added to a rank-3 value */
    if (v.rank != 3)
      return false;
    int64_t vocab = 1 + pick(b, 8);
    const char *table = add_const(g, b, vocab, v.dims[2]);
    const char *ids = add_ids_const(g, b, v.dims[1], vocab);
    emit(g, "  %%g%d = gather @%s, @%s\n", g->nvals, table, ids);
    snprintf(line, sizeof line, "add %%%s, %%g%d", v.name, g->nvals);
    break;
  }
  case 17: { /* reshape a rank-3 value with -1; split the last axis of a rank-2 one */
    if (v.rank == 3) {
      snprintf(line, sizeof line, "reshape %%%s {shape = [?, -1]", v.name);
      r.rank = 2;
      r.dims[1] = v.dims[1] * v.dims[2];
      attrs = 1;
      break;
    }
    if (k < 2)
      return false;
    /* Two parts, equal or [1, k - 1]; the first is used, the second is dead. */
    if (k % 2 == 0 && pick(b, 2)) {
      emit(g, "  %%%s, %%%s.b = split %%%s {axis = -1}\n", r.name, r.name, v.name);
      r.dims[1] = k / 2;
    } else {
      emit(g, "  %%%s, %%%s.b = split %%%s {axis = 1, sizes = [1, %lld]}\n", r.name, r.name,
           v.name, (long long)(k - 1));
      r.dims[1] = 1;
    }
    g->vals[g->nvals++] = r;
    return true;
  }
  }
  emit(g, "  %%%s = %s", r.name, line);
  if (attrs) {
    if (ranges) {
      double lo = -(double)pick(b, 16) / 2, hi = lo + (double)pick(b, 32) / 4;
      emit(g, ", range = [%g, %g]", lo, hi);
    }
    emit(g, "}");
  } else if (ranges) {
    range_attr(g, b, true, true);
    emit(g, "}");
  }
  emit(g, "\n");
  g->vals[g->nvals++] = r;
  return true;
}

static void free_gen(Gen *g) {
  for (int i = 0; i < g->nconsts; i++) {
    free((char *)g->consts[i].name);
    free(g->data[i]);
  }
}

/* ---- running ---- */

static void free_outputs(IrTensor *out, int n) {
  for (int i = 0; i < n; i++) {
    free(out[i].data);
    out[i].data = NULL;
  }
}

static size_t tensor_bytes(const IrTensor *t) {
  int64_t n;
  fuzz_check(ir_type_numel(&t->type, 1, &n), "output size");
  return (size_t)n * ir_dtype_size(t->type.dtype);
}

/* Run entry `quantized` of `rt` on `in` and compare with `want`. */
static void run_and_compare(IrModule *m, q8rt_model *rt, int opt_level, bool quantized,
                            const IrTensor *in, int nin, const IrTensor *want, int nout) {
  char err[512];
  q8rt_status s;
  const void *ins[2];
  void *outs[2];
  for (int i = 0; i < nin; i++)
    ins[i] = in[i].data;
  for (int i = 0; i < nout; i++) {
    const q8_tensor_desc *t = q8rt_output(rt, i);
    fuzz_check((quantized ? t->qdtype : t->dtype) == (int)want[i].type.dtype, "output %d dtype",
               i);
    fuzz_check(q8rt_tensor_numel(q8rt_output(rt, i)) * (int64_t)ir_dtype_size(want[i].type.dtype) ==
                   (int64_t)tensor_bytes(&want[i]),
               "output %d size", i);
    outs[i] = malloc(tensor_bytes(&want[i]) + 1);
  }
  s = (quantized ? q8rt_run_quantized : q8rt_run)(rt, nin, ins, nout, outs, err, sizeof err);
  fuzz_check(s == Q8RT_OK, "the compiled model fails: %s", err);
  for (int i = 0; i < nout; i++) {
    if (memcmp(outs[i], want[i].data, tensor_bytes(&want[i])) != 0) {
      char *text = ir_print(m);
      const unsigned char *x = outs[i], *y = want[i].data;
      size_t j = 0;
      while (x[j] == y[j])
        j++;
      char values[160] = "";
      if (want[i].type.dtype == IR_F32) {
        float fx, fy;
        memcpy(&fx, x + j / 4 * 4, 4);
        memcpy(&fy, y + j / 4 * 4, 4);
        snprintf(values, sizeof values, " (element %zu: %a vs %a)", j / 4, fx, fy);
      }
      fuzz_fail(__FILE__, __LINE__,
                "output %d: compiled (%s%s, -O%d) differs from the interpreter at byte %zu "
                "(0x%02x vs 0x%02x)%s\n%s",
                i, q8rt_variant(rt), quantized ? ", quantized entry" : "", opt_level, j, x[j],
                y[j], values, text ? text : "");
    }
    free(outs[i]);
  }
}

/* Compile `m` with the JIT and compare both of its entries with the
 * interpreter's: `in` -> `want` (f32 entry), `qin` -> `qwant` (quantized). */
static void jit_and_compare(IrModule *m, Bytes *b, int64_t batch, const IrTensor *in,
                            const IrTensor *want, const IrTensor *qin, const IrTensor *qwant) {
  CgOptions o = {.opt_level = (int)pick(b, 4), .batch = batch};
  char err[512];
  fuzz_check(cg_parse_targets(pick(b, 2) ? "generic" : "native", &o, err, sizeof err), "%s", err);
  const q8_model_desc *desc;
  CgJit *jit = cg_jit_compile(m, &o, &desc);
  fuzz_check(jit != NULL, "a quantized module does not compile: %s", m->diag.msg);
  q8rt_model *rt;
  q8rt_status s = q8rt_model_from_desc(desc, NULL, NULL, &rt, err, sizeof err);
  fuzz_check(s == Q8RT_OK, "the runtime refuses a JIT descriptor: %s", err);
  fuzz_check(q8rt_num_inputs(rt) == m->ninputs && q8rt_num_outputs(rt) == m->noutputs,
             "input/output counts");
  run_and_compare(m, rt, o.opt_level, false, in, m->ninputs, want, m->noutputs);
  run_and_compare(m, rt, o.opt_level, true, qin, m->ninputs, qwant, m->noutputs);
  q8rt_free(rt);
  cg_jit_free(jit);
}

/* The inputs as the quantized entry takes them: those with a quantized form
 * quantized (q8_ref_quantize, as their layers would), the others as they
 * are (data shared with `in`; `owned` says which to free). */
static void quantize_inputs(const IrModule *m, const IrTensor *in, IrTensor *qin, bool *owned) {
  for (int i = 0; i < m->ninputs; i++) {
    const IrValue *v = m->inputs[i];
    qin[i] = in[i];
    owned[i] = v->has_qform;
    if (!v->has_qform)
      continue;
    int64_t n;
    fuzz_check(ir_type_numel(&in[i].type, 1, &n), "input size");
    int32_t lo, hi;
    ir_qbounds(v->qform.dtype, &lo, &hi);
    qin[i].type.dtype = v->qform.dtype;
    qin[i].data = malloc((size_t)(n ? n : 1));
    q8_ref_quantize(in[i].data, qin[i].data, n, 1, n, v->qform.scale, v->qform.zero_point, lo,
                    hi, v->qform.dtype == IR_I8);
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  Bytes b = {data, size, 0};
  Gen *g = calloc(1, sizeof *g);
  unsigned flags = next(&b);
  g->special = flags & 1;
  unsigned mode = (flags >> 1) % 3; /* 0: ranges, 1: dynamic, 2: calibration samples */
  bool ranges = mode == 0;
  bool want_jit = (flags >> 3) % 4 == 0;
  int64_t batch = 1 + pick(&b, 3);

  /* The input: [?, K] or [?, S, K]. */
  Val *x = &g->vals[g->nvals++];
  snprintf(x->name, sizeof x->name, "x");
  x->rank = pick(&b, 4) == 0 ? 3 : 2;
  x->dims[0] = -1;
  x->dims[1] = 1 + pick(&b, 12);
  if (x->rank == 3)
    x->dims[2] = 1 + pick(&b, 8);
  emit(g, "model fuzz {\n  weights \"w.safetensors\"\n  input %%x : f32[?, %lld%s",
       (long long)x->dims[1], x->rank == 3 ? ", " : "");
  if (x->rank == 3)
    emit(g, "%lld", (long long)x->dims[2]);
  emit(g, "]");
  if (ranges) {
    double lo = -(double)pick(&b, 16) / 2, hi = lo + (double)pick(&b, 32) / 4;
    emit(g, " {range = [%g, %g]}", lo, hi);
  }
  emit(g, "\n");
  int nnodes = 1 + (int)pick(&b, 8);
  for (int i = 0; i < nnodes && g->nvals < MAX_VALUES; i++)
    for (int tries = 0; tries < 4; tries++)
      if (gen_node(g, &b, (int)pick(&b, (unsigned)g->nvals), ranges))
        break;
  int nout = g->nvals > 2 && pick(&b, 3) == 0 ? 2 : 1;
  const char *o1 = g->vals[g->nvals - 1].name;
  int second = nout == 2 ? 1 + (int)pick(&b, (unsigned)g->nvals - 2) : 0;
  if (nout == 2 && second == g->nvals - 1)
    nout = 1;
  if (g->nvals == 1)
    nout = 1; /* only the input: output it through a relu */
  if (g->nvals == 1)
    emit(g, "  %%y = relu %%x\n  output %%y\n}\n");
  else if (nout == 2)
    emit(g, "  output %%%s, %%%s\n}\n", o1, g->vals[second].name);
  else
    emit(g, "  output %%%s\n}\n", o1);

  /* Weights, then the model. */
  char path[4200], err[512];
  snprintf(path, sizeof path, "%s/w.safetensors", dir);
  if (g->nconsts) {
    fuzz_check(fe_safetensors_write(path, g->consts, g->nconsts, err, sizeof err), "%s", err);
  } else {
    float one = 1;
    FeTensor t = {.name = "unused", .type = {IR_F32, 1, {1}}, .data = &one, .nbytes = 4};
    fuzz_check(fe_safetensors_write(path, &t, 1, err, sizeof err), "%s", err);
  }
  snprintf(path, sizeof path, "%s/model.ir", dir);
  if (getenv("Q8_FUZZ_VERBOSE"))
    fprintf(stderr, "%s", g->text); /* the generated model */
  IrModule *m = fe_parse(path, g->text);
  fuzz_check(!m->diag.failed, "a generated model does not parse: %s\n%s", m->diag.msg, g->text);

  /* Input data. */
  IrTensor in[2] = {{.data = NULL}, {.data = NULL}};
  int64_t numel;
  in[0].type = ir_type_bind(&m->inputs[0]->type, batch);
  fuzz_check(ir_type_numel(&in[0].type, 1, &numel), "input size");
  in[0].data = malloc((size_t)numel * sizeof(float));
  for (int64_t j = 0; j < numel; j++)
    ((float *)in[0].data)[j] = value(&b, g->special);

  /* f32 reference. */
  IrTensor ref[2] = {{.data = NULL}, {.data = NULL}};
  fuzz_check(ir_interp_f32(m, batch, in, ref, NULL, NULL), "the f32 interpreter fails: %s\n%s",
             m->diag.msg, g->text);
  free_outputs(ref, m->noutputs);

  /* Quantize. */
  PassOptions o;
  pass_options_init(&o);
  o.dynamic = mode == 1;
  o.activations = pick(&b, 3) == 0 ? IR_I8 : IR_U8;
  o.weights_per_tensor = pick(&b, 3) == 0;
  static const PassCalibMethod methods[] = {PASS_CALIB_MINMAX, PASS_CALIB_MA_MINMAX,
                                            PASS_CALIB_PERCENTILE, PASS_CALIB_ENTROPY,
                                            PASS_CALIB_MSE};
  o.calib.method = methods[pick(&b, 5)];
  o.calib.percentile = 99.9;
  o.calib_batch = 1 + pick(&b, 4);
  char calib[4200];
  if (mode == 2) {
    /* Samples: [n, ...one sample...] as the input without `?`. */
    IrTensor s;
    s.type = ir_type_bind(&m->inputs[0]->type, 1 + pick(&b, 5));
    fuzz_check(ir_type_numel(&s.type, 1, &numel), "samples size");
    s.data = malloc((size_t)numel * sizeof(float));
    for (int64_t j = 0; j < numel; j++)
      ((float *)s.data)[j] = value(&b, g->special);
    snprintf(calib, sizeof calib, "%s/calib.npy", dir);
    fuzz_check(fe_npy_write(calib, &s, err, sizeof err), "%s", err);
    free(s.data);
    o.calib_path = calib;
  }
  if (pick(&b, 8) == 0 && m->nnodes > 0)
    o.keep_float = m->nodes[0]->result->name;
  bool verbose = getenv("Q8_FUZZ_VERBOSE") != NULL;
  if (!pass_run_pipeline(m, &o)) {
    if (verbose)
      fprintf(stderr, "pipeline refused: %s\n", m->diag.msg);
    fuzz_check(!fuzz_internal_error(m->diag.msg), "%s\n%s", m->diag.msg, g->text);
    goto done;
  }

  /* The integer interpreter, then the JIT against it. */
  IrTensor q[2] = {{.data = NULL}, {.data = NULL}};
  fuzz_check(ir_interp_f32(m, batch, in, q, NULL, NULL),
             "the interpreter fails on the quantized module: %s\n%s", m->diag.msg, g->text);
  /* The quantized entry's oracle: quantize(run(x)) for outputs with a
   * quantized form, checked here against the interpreter's f32 outputs. */
  IrTensor qin[2], qq[2] = {{.data = NULL}, {.data = NULL}};
  bool owned[2] = {false, false};
  quantize_inputs(m, in, qin, owned);
  fuzz_check(ir_interp_quantized(m, batch, qin, qq),
             "the interpreter fails on the quantized entry: %s\n%s", m->diag.msg, g->text);
  for (int i = 0; i < m->noutputs; i++) {
    const IrValue *v = m->outputs[i];
    int64_t n;
    fuzz_check(ir_type_numel(&q[i].type, 1, &n), "output size");
    if (!v->has_qform) {
      fuzz_check(memcmp(qq[i].data, q[i].data, tensor_bytes(&q[i])) == 0,
                 "output %d has no quantized form but the quantized entry changes it", i);
      continue;
    }
    int32_t lo, hi;
    ir_qbounds(v->qform.dtype, &lo, &hi);
    for (int64_t j = 0; j < n; j++) {
      int32_t want = ir_quantize_value(((const float *)q[i].data)[j], v->qform.scale,
                                       v->qform.zero_point, lo, hi);
      int32_t got = v->qform.dtype == IR_U8 ? ((const uint8_t *)qq[i].data)[j]
                                            : ((const int8_t *)qq[i].data)[j];
      fuzz_check(got == want, "quantized entry output %d element %lld: %d, quantize(f32) %d", i,
                 (long long)j, got, want);
    }
  }
  if (want_jit || getenv("Q8_FUZZ_ALWAYS_JIT"))
    jit_and_compare(m, &b, batch, in, q, qin, qq);
  for (int i = 0; i < m->ninputs; i++)
    if (owned[i])
      free(qin[i].data);
  free_outputs(qq, m->noutputs);
  if (verbose)
    fprintf(stderr, "%s: %d nodes quantized%s\n", m->name, m->nnodes,
            want_jit ? ", compiled and compared" : "");
  free_outputs(q, m->noutputs);
done:
  free(in[0].data);
  ir_module_free(m);
  free_gen(g);
  free(g);
  return 0;
}
