/* bench.c: `q8c bench MODEL`: how fast the user's own model runs here, the
 * way llama-bench and onnxruntime_perf_test measure: inputs of zeros (or the
 * -i files), --warmup untimed runs, then --runs timed ones, each timed alone
 * with a monotonic clock; printed as latency median, p90, min and mean and
 * throughput (samples per second = batch / median latency), in a small table
 * or as JSON (--json).
 *
 * A .so runs through the runtime with the shapes it was compiled for; its
 * batch is the first dimension of its first input, or --batch for a library
 * compiled with a run-time batch (q8rt_run_dims). A .ir is compiled in
 * memory (the JIT) for --batch and --target, as `q8c run --jit` does; it is
 * timed as written (a float .ir is not quantized first). */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../codegen/codegen.h"
#include "driver.h"

typedef struct {
  double median, p90, min, mean; /* milliseconds */
} Latency;

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

/* Sorts t[0..n). p90 is the smallest time not exceeded by 90% of the runs
 * (nearest rank), so p90 >= median >= min. */
static Latency summarize(double *t, int n) {
  qsort(t, (size_t)n, sizeof *t, cmp_double);
  Latency l = {0};
  l.median = n % 2 ? t[n / 2] : (t[n / 2 - 1] + t[n / 2]) / 2;
  int rank = (int)ceil(0.9 * n);
  l.p90 = t[rank > 0 ? rank - 1 : 0];
  l.min = t[0];
  for (int i = 0; i < n; i++)
    l.mean += t[i] / n;
  return l;
}

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static void release_jit(void *jit) { cg_jit_free(jit); }

/* A .ir model compiled in memory for --batch and --target. */
static q8rt_model *load_ir(const Options *o, int64_t batch) {
  IrModule *m = driver_parse(o->model, NULL, &o->dims);
  if (!m)
    return NULL;
  q8rt_model *rt = NULL;
  if (m->diag.failed) {
    driver_fail(m);
    ir_module_free(m);
    return NULL;
  }
  CgOptions co = {.opt_level = o->opt_level, .batch = batch};
  char err[512];
  const q8_model_desc *desc;
  CgJit *jit = NULL;
  if (!cg_parse_targets(o->target ? o->target : "native", &co, err, sizeof err))
    fprintf(stderr, "q8c: error: --target: %s\n", err);
  else if (!(jit = cg_jit_compile(m, &co, &desc)))
    driver_fail(m);
  else if (q8rt_model_from_desc(desc, release_jit, jit, &rt, err, sizeof err) != Q8RT_OK) {
    fprintf(stderr, "%s: error: %s\n", o->model, err);
    cg_jit_free(jit);
    rt = NULL;
  }
  ir_module_free(m);
  return rt;
}

static bool ends_with(const char *s, const char *suffix) {
  size_t n = strlen(s), k = strlen(suffix);
  return n >= k && strcmp(s + n - k, suffix) == 0;
}

/* The input buffers: each -i file (which must match the model at `batch`),
 * else zeros; dims[i] their shapes. */
static int make_inputs(const Options *o, q8rt_model *model, int64_t batch, void **in,
                       int64_t (*dims)[Q8_MODEL_MAX_RANK]) {
  int n = q8rt_num_inputs(model);
  for (int i = 0; i < n; i++) {
    const q8_tensor_desc *t = q8rt_input(model, i);
    IrType want = driver_desc_type(t, false);
    q8rt_tensor_dims(t, batch, want.dims);
    memcpy(dims[i], want.dims, sizeof dims[i]);
    const FileArg *f = NULL;
    for (int k = 0; k < o->ninputs; k++)
      if ((o->inputs[k].name && strcmp(o->inputs[k].name, t->name) == 0) ||
          (!o->inputs[k].name && n == 1))
        f = &o->inputs[k];
    if (!f) {
      int64_t numel;
      if (!ir_type_numel(&want, 1, &numel))
        numel = -1;
      in[i] = calloc((size_t)(numel > 0 ? numel : 1), ir_dtype_size(want.dtype));
      if (!in[i]) {
        fprintf(stderr, "q8c: error: out of memory for input '%s'\n", t->name);
        return EXIT_INPUT;
      }
      continue;
    }
    IrTensor x;
    char err[512], b1[128], b2[128];
    const char *path = driver_is_stdio(f->path) ? driver_stdin_file() : f->path;
    if (!path)
      return EXIT_INPUT;
    if (!fe_npy_read(path, &x, err, sizeof err)) {
      fprintf(stderr, "%s: error: %s\n", f->path, err);
      return EXIT_INPUT;
    }
    in[i] = x.data;
    if (!ir_type_equal(&x.type, &want)) {
      fprintf(stderr, "q8c: error: input '%s' is %s but the model takes %s\n", t->name,
              ir_type_str(&x.type, b1, sizeof b1), ir_type_str(&want, b2, sizeof b2));
      return EXIT_INPUT;
    }
  }
  for (int k = 0; k < o->ninputs; k++) {
    bool found = false;
    for (int i = 0; i < n; i++)
      found |= !o->inputs[k].name || strcmp(o->inputs[k].name, q8rt_input(model, i)->name) == 0;
    if (!found)
      return driver_usage_error("the model has no input named '%s'", o->inputs[k].name);
    if (!o->inputs[k].name && n > 1)
      return driver_usage_error("the model has %d inputs; name each as -i NAME=FILE", n);
  }
  return 0;
}

static void print_table(const Options *o, q8rt_model *model, int64_t batch, int warmup, int runs,
                        const Latency *l, double throughput) {
  printf("model       %s (%s)\n", o->model, q8rt_desc(model)->name);
  printf("variant     %s\n", q8rt_variant(model));
  printf("batch       %" PRId64 "\n", batch);
  printf("threads     %d\n", q8rt_num_threads(model));
  printf("runs        %d (after %d warm-up)\n", runs, warmup);
  printf("\n%-12s %12s %12s %12s %12s %16s\n", "", "median ms", "p90 ms", "min ms", "mean ms",
         "samples/s");
  printf("%-12s %12.4f %12.4f %12.4f %12.4f %16.1f\n", "latency", l->median, l->p90, l->min,
         l->mean, throughput);
}

static void print_json(const Options *o, q8rt_model *model, int64_t batch, int warmup, int runs,
                       const Latency *l, double throughput) {
  printf("{\"model\": \"");
  for (const char *p = o->model; *p; p++)
    printf(*p == '"' || *p == '\\' ? "\\%c" : (unsigned char)*p < 0x20 ? "?" : "%c", *p);
  printf("\", \"name\": \"%s\", \"variant\": \"%s\", \"batch\": %" PRId64
         ", \"threads\": %d, \"warmup\": %d, \"runs\": %d,\n",
         q8rt_desc(model)->name, q8rt_variant(model), batch, q8rt_num_threads(model), warmup,
         runs);
  printf(" \"latency_ms\": {\"median\": %.6f, \"p90\": %.6f, \"min\": %.6f, \"mean\": %.6f},\n",
         l->median, l->p90, l->min, l->mean);
  printf(" \"samples_per_s\": %.3f}\n", throughput);
}

int driver_bench(const Options *o) {
  bool so = ends_with(o->model, ".so");
  int warmup = o->warmup >= 0 ? o->warmup : 5, runs = o->runs > 0 ? o->runs : 100;
  char err[512];
  q8rt_model *model = NULL;
  if (so) {
    if (q8rt_load(o->model, &model, err, sizeof err) != Q8RT_OK) {
      fprintf(stderr, "%s: error: %s\n", o->model, err);
      return EXIT_INPUT;
    }
    if (o->batch && q8rt_max_batch(model) == 0) {
      q8rt_free(model);
      return driver_usage_error("%s was compiled for fixed shapes: --batch applies to a .ir "
                                "model or a library compiled without --batch (recompile the "
                                "library with --batch N to change it)",
                                o->model);
    }
  } else if (!(model = load_ir(o, o->batch ? o->batch : 1))) {
    return EXIT_INPUT;
  }
  /* The batch of a run-time-batch library: --batch, else 1. */
  int64_t rbatch = so && o->batch ? o->batch : 1;
  if (o->threads && q8rt_set_threads(model, o->threads, err, sizeof err) != Q8RT_OK) {
    fprintf(stderr, "q8c: error: --threads %d: %s\n", o->threads, err);
    q8rt_free(model);
    return EXIT_INPUT;
  }
  int nin = q8rt_num_inputs(model), nout = q8rt_num_outputs(model);
  void **in = calloc((size_t)nin + 1, sizeof *in), **out = calloc((size_t)nout + 1, sizeof *out);
  double *times = malloc((size_t)runs * sizeof *times);
  int64_t(*dims)[Q8_MODEL_MAX_RANK] = calloc((size_t)nin + 1, sizeof *dims);
  const int64_t **dimp = calloc((size_t)nin + 1, sizeof *dimp);
  int rc = in && out && times && dims && dimp ? make_inputs(o, model, rbatch, in, dims)
                                              : EXIT_INPUT;
  for (int i = 0; rc == 0 && i < nin; i++)
    dimp[i] = dims[i];
  for (int i = 0; rc == 0 && i < nout; i++) {
    const q8_tensor_desc *t = q8rt_output(model, i);
    IrType type = driver_desc_type(t, false);
    q8rt_tensor_dims(t, rbatch, type.dims);
    int64_t numel;
    if (!ir_type_numel(&type, 1, &numel))
      numel = -1;
    if (!(out[i] = malloc((size_t)(numel > 0 ? numel : 1) * ir_dtype_size(type.dtype))))
      rc = EXIT_INPUT;
  }
  if (rc == 0 && !(in && out && times))
    fprintf(stderr, "q8c: error: out of memory\n");
  for (int r = 0; rc == 0 && r < warmup + runs; r++) {
    double t0 = now_ms();
    if ((q8rt_max_batch(model) > 0
             ? q8rt_run_dims(model, nin, (const void *const *)in, dimp, nout, out, err, sizeof err)
             : q8rt_run(model, nin, (const void *const *)in, nout, out, err, sizeof err)) !=
        Q8RT_OK) {
      fprintf(stderr, "%s: error: %s\n", o->model, err);
      rc = EXIT_INPUT;
    }
    double t1 = now_ms();
    if (r >= warmup)
      times[r - warmup] = t1 - t0 > 0 ? t1 - t0 : 1e-6;
  }
  if (rc == 0) {
    /* The batch: a .ir's --batch, else the leading dimension of the first
     * input of the compiled library. */
    const q8_tensor_desc *x = nin ? q8rt_input(model, 0) : NULL;
    int64_t batch = !so ? (o->batch ? o->batch : 1)
                    : q8rt_max_batch(model) > 0 ? rbatch
                    : x && x->rank ? x->dims[0] : 1;
    Latency l = summarize(times, runs);
    double throughput = (double)batch / (l.median / 1e3);
    (o->json ? print_json : print_table)(o, model, batch, warmup, runs, &l, throughput);
  }
  for (int i = 0; in && i < nin; i++)
    free(in[i]);
  for (int i = 0; out && i < nout; i++)
    free(out[i]);
  free(in);
  free(out);
  free(times);
  free(dims);
  free(dimp);
  q8rt_free(model);
  return rc;
}
