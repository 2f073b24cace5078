/* jiteval.c: the calibration evaluator (passes.h's PassEvaluator) over the
 * JIT. passes/ may not include codegen/, so the driver and the API hand the
 * calibrate pass this: a copy of the float model whose observed values are
 * all made outputs, compiled in memory for the native variant with `?` bound
 * to the batch (codegen's vector code, the f32 GEMM and its threads, the
 * interpreter's exact bits), run on each batch of samples through libq8rt
 * with one thread per core. The code reads the weights where the IR has them
 * (CgOptions.jit_in_place): compiling copies none, and packs each float
 * linear's W once. A shorter batch (the last) runs padded with zero rows in
 * the compiled batch when the model's rows are independent (rowwise.c: the
 * rows it has come out the same); otherwise a batch of another size gets its
 * own compiled copy, at most MAX_BATCHES kept.
 *
 * Open declines (NULL: the interpreter runs) when the work is too small to
 * pay for compiling (under ~2 G FLOP of linear and matmul over all samples;
 * Q8_CALIB_JIT=1 in the environment compiles anyway), or when the model
 * does not compile; the interpreter gives the same ranges. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../codegen/codegen.h"
#include "jiteval.h"
#include "q8rt.h"

enum { MAX_BATCHES = 4, MAX_THREADS = 64 };

typedef struct {
  int64_t batch;
  q8rt_model *rt;
  IrModule *copy;
  void **bufs;        /* one per output of the copy */
  int *val_out;       /* vals[i] is output val_out[i] of the copy */
  void **pad;         /* a shorter batch's inputs padded to `batch` rows */
} Compiled;

typedef struct {
  IrModule *m;
  IrValue *const *vals;
  int nvals;
  bool rowwise;       /* pass_rows_independent(m): shorter batches are padded */
  Compiled c[MAX_BATCHES];
  int nc;
} JitEval;

static void release_jit(void *jit) { cg_jit_free(jit); }

static void free_compiled(Compiled *c) {
  if (c->rt)
    q8rt_free(c->rt);
  if (c->bufs)
    for (int i = 0; i < c->copy->noutputs; i++)
      free(c->bufs[i]);
  free(c->bufs);
  if (c->pad)
    for (int i = 0; i < c->copy->ninputs; i++)
      free(c->pad[i]);
  free(c->pad);
  free(c->val_out);
  if (c->copy)
    ir_module_free(c->copy);
  memset(c, 0, sizeof *c);
}

static int thread_count(void) {
  const char *env = getenv("Q8_THREADS");
  long n = env ? strtol(env, NULL, 10) : sysconf(_SC_NPROCESSORS_ONLN);
  return n < 1 ? 1 : n > MAX_THREADS ? MAX_THREADS : (int)n;
}

/* The model for `batch`, compiled into c. */
static bool compile(JitEval *e, int64_t batch, Compiled *c) {
  memset(c, 0, sizeof *c);
  c->batch = batch;
  c->copy = pass_clone_module(e->m);
  IrModule *k = c->copy;
  c->val_out = malloc((size_t)(e->nvals + 1) * sizeof *c->val_out);
  if (!c->val_out)
    return false;
  for (int i = 0; i < e->nvals; i++) {
    IrValue *v = ir_find_value(k, e->vals[i]->name);
    if (!v)
      return false;
    int at = ir_output_index(k, v);
    if (at < 0) {
      ir_add_output(k, v, (IrLoc){0});
      at = k->noutputs - 1;
    }
    c->val_out[i] = at;
  }
  CgOptions co = {.opt_level = 3, .batch = batch, .jit_in_place = true};
  char err[512];
  if (!cg_parse_targets("native", &co, err, sizeof err))
    return false;
  const q8_model_desc *desc;
  CgJit *jit = cg_jit_compile(k, &co, &desc);
  if (!jit)
    return false;
  if (q8rt_model_from_desc(desc, release_jit, jit, &c->rt, err, sizeof err) != Q8RT_OK) {
    cg_jit_free(jit);
    return false;
  }
  q8rt_set_threads(c->rt, thread_count(), err, sizeof err); /* else one thread */
  c->bufs = calloc((size_t)k->noutputs, sizeof *c->bufs);
  if (!c->bufs)
    return false;
  for (int i = 0; i < k->noutputs; i++) {
    size_t bytes;
    if (!ir_type_bytes(&k->outputs[i]->type, batch, &bytes, err, sizeof err) ||
        !(c->bufs[i] = malloc(bytes ? bytes : 1)))
      return false;
  }
  return true;
}

static Compiled *compiled_for(JitEval *e, int64_t batch) {
  for (int i = 0; i < e->nc; i++)
    if (e->c[i].batch == batch)
      return &e->c[i];
  for (int i = 0; e->rowwise && i < e->nc; i++)
    if (e->c[i].batch > batch)
      return &e->c[i];
  if (e->nc == MAX_BATCHES)
    free_compiled(&e->c[--e->nc]);
  Compiled *c = &e->c[e->nc];
  if (!compile(e, batch, c)) {
    free_compiled(c);
    return NULL;
  }
  e->nc++;
  return c;
}

/* Multiply-adds of the float linear and matmul nodes per sample: the work
 * that decides whether compiling pays. */
static double macs_per_sample(const IrModule *m) {
  double macs = 0;
  for (int i = 0; i < m->nnodes; i++) {
    const IrNode *n = m->nodes[i];
    int64_t numel;
    const IrType *x = &n->opnds[0]->type;
    if ((n->op == IR_OP_LINEAR || n->op == IR_OP_MATMUL) && x->rank > 0 &&
        ir_type_numel(&n->result->type, 1, &numel))
      macs += (double)numel * (double)x->dims[x->rank - 1];
  }
  return macs;
}

static void *jit_open(void *user, IrModule *m, IrValue *const *vals, int nvals, int64_t batch,
                      int64_t samples) {
  (void)user;
  /* Below ~2 G FLOP (a second or two of the interpreter, about what
   * compiling takes) the interpreter is quicker; Q8_CALIB_JIT=1 compiles
   * anyway (the tests). */
  if (2 * macs_per_sample(m) * (double)samples < 2e9 && !getenv("Q8_CALIB_JIT"))
    return NULL;
  JitEval *e = calloc(1, sizeof *e);
  if (!e)
    return NULL;
  e->m = m;
  e->vals = vals;
  e->nvals = nvals;
  e->rowwise = pass_rows_independent(m);
  if (!compiled_for(e, batch)) {
    free(e);
    return NULL;
  }
  return e;
}

/* Input i of a batch of `batch` rows (fewer than c->batch) followed by zero
 * rows up to c->batch: rows are independent (JitEval.rowwise), so the first
 * `batch` rows of every result are what the batch alone gives. */
static const void *padded(Compiled *c, int i, const IrTensor *in, int64_t batch, char *err,
                          size_t errlen) {
  const IrType *t = &c->copy->inputs[i]->type;
  size_t have, want;
  if (!ir_type_bytes(t, batch, &have, err, errlen) ||
      !ir_type_bytes(t, c->batch, &want, err, errlen))
    return NULL;
  if ((!c->pad && !(c->pad = calloc((size_t)c->copy->ninputs, sizeof *c->pad))) ||
      (!c->pad[i] && !(c->pad[i] = malloc(want ? want : 1)))) {
    snprintf(err, errlen, "out of memory");
    return NULL;
  }
  memcpy(c->pad[i], in->data, have);
  memset((char *)c->pad[i] + have, 0, want - have);
  return c->pad[i];
}

static bool jit_run(void *handle, const IrTensor *in, int64_t batch, const float **out,
                    char *err, size_t errlen) {
  JitEval *e = handle;
  Compiled *c = compiled_for(e, batch);
  if (!c) {
    snprintf(err, errlen, "the model does not compile for a batch of %lld", (long long)batch);
    return false;
  }
  IrModule *k = c->copy;
  const void **ins = malloc((size_t)(k->ninputs + 1) * sizeof *ins);
  if (!ins) {
    snprintf(err, errlen, "out of memory");
    return false;
  }
  bool ok = true;
  for (int i = 0; ok && i < k->ninputs; i++)
    ins[i] = batch == c->batch ? in[i].data : padded(c, i, &in[i], batch, err, errlen);
  for (int i = 0; ok && i < k->ninputs; i++)
    ok = ins[i] != NULL;
  ok = ok && q8rt_run(c->rt, k->ninputs, ins, k->noutputs, c->bufs, err, errlen) == Q8RT_OK;
  free(ins);
  for (int i = 0; ok && i < e->nvals; i++)
    out[i] = c->bufs[c->val_out[i]];
  return ok;
}

static void jit_close(void *handle) {
  JitEval *e = handle;
  for (int i = 0; i < e->nc; i++)
    free_compiled(&e->c[i]);
  free(e);
}

const PassEvaluator q8c_jit_evaluator = {jit_open, jit_run, jit_close, NULL};
