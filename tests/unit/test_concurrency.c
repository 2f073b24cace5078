/* test_concurrency.c: q8c and its runtime used from several threads at once
 * give the results they give alone.
 *
 *   - Several threads each parse, quantize, compile (JIT) and run a different
 *     model, and run the reference interpreter on it, at the same time. The
 *     library keeps no mutable global state (ir.h), each compilation has its
 *     own LLVM context and LLJIT (jit.c), and LLVM's target registry is set
 *     up once (cg_init_llvm); the outputs must match, bit for bit, those of
 *     the same steps run one model at a time.
 *   - Several threads run one compiled model on different inputs, with the
 *     model's thread pool (q8rt_set_threads) and without: each output must
 *     match the one computed alone.
 *
 * Threads do not call cmocka's asserts (they jump to the main thread's
 * context); they record what they got, and the main thread checks it.
 * scripts/sanitize.sh thread runs this test under ThreadSanitizer. */
#include <pthread.h>
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
#include "q8c.h"

enum { NMODELS = 4, BATCH = 3, ROUNDS = 3 };

static char dir[64];

/* Sizes and quantization choices of the models the threads build. */
static const struct {
  int k, n, m;       /* x[?, k] -> linear n -> relu -> linear m */
  int dynamic;
  const char *activations;
} spec[NMODELS] = {
    {16, 32, 8, 0, NULL},
    {24, 40, 12, 1, NULL},
    {64, 64, 10, 0, "s8-sym"},
    {8, 100, 3, 0, NULL},
};

static float pseudo(uint32_t *s) {
  *s = *s * 1664525u + 1013904223u;
  return (float)((*s >> 9) & 0xffff) / 16384.0f - 2.0f;
}

static void fill(float *x, int64_t n, uint32_t seed) {
  for (int64_t i = 0; i < n; i++)
    x[i] = pseudo(&seed);
}

static const char *model_path(int i, char *buf, size_t size) {
  snprintf(buf, size, "%s/model%d.ir", dir, i);
  return buf;
}

/* Weights, calibration samples and text of model i. */
static char *write_model(int i) {
  int k = spec[i].k, n = spec[i].n, m = spec[i].m;
  float *w1 = malloc(sizeof(float) * (size_t)(n * k)), *b1 = malloc(sizeof(float) * (size_t)n);
  float *w2 = malloc(sizeof(float) * (size_t)(m * n)), *b2 = malloc(sizeof(float) * (size_t)m);
  fill(w1, n * k, 11u + (uint32_t)i);
  fill(b1, n, 12u + (uint32_t)i);
  fill(w2, m * n, 13u + (uint32_t)i);
  fill(b2, m, 14u + (uint32_t)i);
  FeTensor ts[4] = {{"w1", {IR_F32, 2, {n, k}}, w1, sizeof(float) * (size_t)(n * k)},
                    {"b1", {IR_F32, 1, {n}}, b1, sizeof(float) * (size_t)n},
                    {"w2", {IR_F32, 2, {m, n}}, w2, sizeof(float) * (size_t)(m * n)},
                    {"b2", {IR_F32, 1, {m}}, b2, sizeof(float) * (size_t)m}};
  char path[128], err[256];
  snprintf(path, sizeof path, "%s/w%d.safetensors", dir, i);
  assert_true(fe_safetensors_write(path, ts, 4, err, sizeof err));
  float *calib = malloc(sizeof(float) * (size_t)(32 * k));
  fill(calib, 32 * k, 15u + (uint32_t)i);
  IrTensor c = {{IR_F32, 2, {32, k}}, calib};
  snprintf(path, sizeof path, "%s/calib%d.npy", dir, i);
  assert_true(fe_npy_write(path, &c, err, sizeof err));
  free(calib);
  free(w1);
  free(b1);
  free(w2);
  free(b2);
  char *text = malloc(512);
  snprintf(text, 512,
           "model m%d {\n"
           "  weights \"w%d.safetensors\"\n"
           "  input %%x : f32[?, %d]\n"
           "  %%h = linear %%x, @w1, @b1\n"
           "  %%a = relu %%h\n"
           "  %%y = linear %%a, @w2, @b2\n"
           "  output %%y\n"
           "}\n",
           i, i, k);
  return text;
}

/* ---- several models at once ---- */

typedef struct {
  int index;
  const char *text;
  pthread_barrier_t *start;
  /* results */
  const char *failed;   /* the step that failed, or NULL */
  char msg[512];
  float *compiled, *reference; /* BATCH x m each */
} Job;

static void *build_and_run(void *arg) {
  Job *j = arg;
  int i = j->index;
  char path[128], calib[128];
  if (j->start)
    pthread_barrier_wait(j->start);
  q8c_module *m = NULL;
  q8c_status ps = q8c_parse_string(model_path(i, path, sizeof path), j->text, &m);
  q8rt_model *rt = NULL;
  float *x = malloc(sizeof(float) * (size_t)(BATCH * spec[i].k));
  fill(x, BATCH * spec[i].k, 100u + (uint32_t)i);
  j->compiled = calloc((size_t)(BATCH * spec[i].m), sizeof(float));
  j->reference = calloc((size_t)(BATCH * spec[i].m), sizeof(float));
  snprintf(calib, sizeof calib, "%s/calib%d.npy", dir, i);
  q8c_quant_options qo = {.calib_path = spec[i].dynamic ? NULL : calib,
                          .dynamic = spec[i].dynamic,
                          .activations = spec[i].activations};
  q8c_compile_options co = {.batch = BATCH};
  const void *in[1] = {x};
  void *out[1] = {j->compiled};
  const float *rin[1] = {x};
  float *rout[1] = {j->reference};
  if (ps != Q8C_OK || q8c_module_error(m))
    j->failed = "parse";
  else if (q8c_quantize(m, &qo) != Q8C_OK)
    j->failed = "quantize";
  else if (q8c_compile(m, &co, &rt) != Q8C_OK || !rt)
    j->failed = "compile";
  else if (q8rt_run(rt, 1, in, 1, out, j->msg, sizeof j->msg) != Q8RT_OK)
    j->failed = "run";
  else if (q8c_run_reference(m, BATCH, 1, rin, 1, rout) != Q8C_OK)
    j->failed = "reference";
  if (j->failed && m && q8c_module_error(m))
    snprintf(j->msg, sizeof j->msg, "%s", q8c_module_error(m));
  q8rt_free(rt);
  q8c_module_free(m);
  free(x);
  return NULL;
}

/* Every model built and run by two threads at once, all threads started
 * together; the results are filled into jobs[2 * NMODELS]. */
static void run_all_at_once(char **texts, Job *jobs) {
  pthread_barrier_t start;
  pthread_barrier_init(&start, NULL, 2 * NMODELS);
  pthread_t tid[2 * NMODELS];
  for (int t = 0; t < 2 * NMODELS; t++) {
    jobs[t] = (Job){.index = t % NMODELS, .text = texts[t % NMODELS], .start = &start};
    assert_int_equal(pthread_create(&tid[t], NULL, build_and_run, &jobs[t]), 0);
  }
  for (int t = 0; t < 2 * NMODELS; t++)
    pthread_join(tid[t], NULL);
  pthread_barrier_destroy(&start);
}

static void test_models_in_parallel(void **state) {
  (void)state;
  char *texts[NMODELS];
  Job alone[NMODELS], jobs[ROUNDS][2 * NMODELS];
  for (int i = 0; i < NMODELS; i++)
    texts[i] = write_model(i);
  /* First all at once: this is the process's first use of LLVM, so the
   * threads also race to initialize it (cg_init_llvm). */
  run_all_at_once(texts, jobs[0]);
  /* One at a time: the expected results. */
  for (int i = 0; i < NMODELS; i++) {
    alone[i] = (Job){.index = i, .text = texts[i]};
    build_and_run(&alone[i]);
    if (alone[i].failed)
      fail_msg("model %d alone: %s failed: %s", i, alone[i].failed, alone[i].msg);
    /* The compiled model is the interpreter, bit for bit. */
    assert_memory_equal(alone[i].compiled, alone[i].reference,
                        sizeof(float) * (size_t)(BATCH * spec[i].m));
  }
  for (int round = 1; round < ROUNDS; round++)
    run_all_at_once(texts, jobs[round]);
  for (int round = 0; round < ROUNDS; round++)
    for (int t = 0; t < 2 * NMODELS; t++) {
      Job *j = &jobs[round][t];
      int i = t % NMODELS;
      size_t bytes = sizeof(float) * (size_t)(BATCH * spec[i].m);
      if (j->failed)
        fail_msg("round %d, thread %d (model %d): %s failed: %s", round, t, i, j->failed, j->msg);
      assert_memory_equal(j->compiled, alone[i].compiled, bytes);
      assert_memory_equal(j->reference, alone[i].reference, bytes);
      free(j->compiled);
      free(j->reference);
    }
  for (int i = 0; i < NMODELS; i++) {
    free(alone[i].compiled);
    free(alone[i].reference);
    free(texts[i]);
  }
}

/* ---- one model, many callers ---- */

enum { NCALLERS = 4, NRUNS = 40 };

typedef struct {
  q8rt_model *rt;
  int caller;
  int k, m;
  const float *want; /* [NRUNS][BATCH * m]: each run's expected output */
  int mismatches;
  q8rt_status status;
  char msg[256];
} Caller;

static void input_for(int run, int k, float *x) { fill(x, BATCH * k, 1000u + (uint32_t)run); }

static void *call_model(void *arg) {
  Caller *c = arg;
  float *x = malloc(sizeof(float) * (size_t)(BATCH * c->k));
  float *y = malloc(sizeof(float) * (size_t)(BATCH * c->m));
  for (int r = 0; r < NRUNS; r++) {
    /* Callers take the runs in different orders, so that different inputs
     * are in flight at the same time. */
    int run = (r * (c->caller + 1) + c->caller) % NRUNS;
    input_for(run, c->k, x);
    const void *in[1] = {x};
    void *out[1] = {y};
    q8rt_status s = q8rt_run(c->rt, 1, in, 1, out, c->msg, sizeof c->msg);
    if (s != Q8RT_OK) {
      c->status = s;
      break;
    }
    c->mismatches +=
        memcmp(y, c->want + (size_t)run * (size_t)(BATCH * c->m), sizeof(float) * (size_t)(BATCH * c->m)) != 0;
  }
  free(x);
  free(y);
  return NULL;
}

static void test_one_model_many_callers(void **state) {
  (void)state;
  const int i = 2;
  char *text = write_model(i);
  char path[128], calib[128];
  snprintf(calib, sizeof calib, "%s/calib%d.npy", dir, i);
  q8c_module *m;
  assert_int_equal(q8c_parse_string(model_path(i, path, sizeof path), text, &m), Q8C_OK);
  assert_null(q8c_module_error(m));
  q8c_quant_options qo = {.calib_path = calib};
  assert_int_equal(q8c_quantize(m, &qo), Q8C_OK);
  q8c_compile_options co = {.batch = BATCH};
  q8rt_model *rt;
  assert_int_equal(q8c_compile(m, &co, &rt), Q8C_OK);
  assert_non_null(rt);
  int k = spec[i].k, mo = spec[i].m;
  /* Alone: every run's output, checked against the interpreter. */
  float *want = malloc(sizeof(float) * (size_t)(NRUNS * BATCH * mo));
  float *x = malloc(sizeof(float) * (size_t)(BATCH * k));
  float *ref = malloc(sizeof(float) * (size_t)(BATCH * mo));
  for (int r = 0; r < NRUNS; r++) {
    input_for(r, k, x);
    const void *in[1] = {x};
    void *out[1] = {want + (size_t)r * (size_t)(BATCH * mo)};
    char err[256];
    assert_int_equal(q8rt_run(rt, 1, in, 1, out, err, sizeof err), Q8RT_OK);
    const float *rin[1] = {x};
    float *rout[1] = {ref};
    assert_int_equal(q8c_run_reference(m, BATCH, 1, rin, 1, rout), Q8C_OK);
    assert_memory_equal(ref, out[0], sizeof(float) * (size_t)(BATCH * mo));
  }
  /* Many callers, with the model's pool (one call uses it, the others run
   * on their own thread) and without. */
  for (int threads = 1; threads <= 3; threads += 2) {
    assert_int_equal(q8rt_set_threads(rt, threads, NULL, 0), Q8RT_OK);
    Caller callers[NCALLERS];
    pthread_t tid[NCALLERS];
    for (int c = 0; c < NCALLERS; c++) {
      callers[c] = (Caller){.rt = rt, .caller = c, .k = k, .m = mo, .want = want};
      assert_int_equal(pthread_create(&tid[c], NULL, call_model, &callers[c]), 0);
    }
    for (int c = 0; c < NCALLERS; c++)
      pthread_join(tid[c], NULL);
    for (int c = 0; c < NCALLERS; c++) {
      if (callers[c].status != Q8RT_OK)
        fail_msg("caller %d with %d threads: %s", c, threads, callers[c].msg);
      assert_int_equal(callers[c].mismatches, 0);
    }
  }
  q8rt_free(rt);
  q8c_module_free(m);
  free(want);
  free(x);
  free(ref);
  free(text);
}

static int make_dir(void **state) {
  (void)state;
  snprintf(dir, sizeof dir, "/tmp/q8_threads_XXXXXX");
  return mkdtemp(dir) ? 0 : -1;
}

static int remove_dir(void **state) {
  (void)state;
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  return system(cmd) == 0 ? 0 : -1;
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_models_in_parallel),
      cmocka_unit_test(test_one_model_many_callers),
  };
  return cmocka_run_group_tests(tests, make_dir, remove_dir);
}
