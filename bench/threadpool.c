/* threadpool.c: what q8_threads.parallel_for costs, as a compiled model sees it.
 *
 * The benchmark is itself a "model": a descriptor in memory (through
 * q8rt_model_from_desc) whose entry point receives the runtime's q8_threads
 * and times parallel_for calls from inside, exactly where generated layers
 * call it. Three cases, each with 1 thread and with 2:
 *
 *   empty      two tasks that do nothing: the pure hand-off cost
 *   2 us       two tasks of ~1 us each: one layer's worth of small work
 *   2 us idle  the same after 500 us of idleness, when the workers have gone
 *              from spinning to sleeping: the futex-wake cost
 *   10 layers  ten such calls back to back after 500 us of idleness: a small
 *              model's run, paying one wake and then hand-offs to workers
 *              that are spinning
 *
 * Each figure is the median over many samples (a sample times a batch of
 * back-to-back calls, except in the idle case). For the 2-thread runs with
 * work it also counts how often a worker ran a task, and how often that
 * worker was on the caller's CPU (a scheduler may place a woken worker on
 * its waker's CPU; then there is no parallelism to be had).
 *
 * Run: build/tests/bench_threadpool [samples]; Q8_SPIN_US changes how long
 * idle workers spin. Not run by ctest: its numbers depend on the machine. */
#define _GNU_SOURCE /* sched_getcpu, for the diagnostics only */
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "q8rt.h"

static int64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* A dependent chain of multiply-adds the compiler cannot shorten. */
static uint64_t work(uint64_t iters, uint64_t x) {
  for (uint64_t i = 0; i < iters; i++)
    x = x * 6364136223846793005u + 1442695040888963407u;
  return x;
}

typedef struct {
  uint64_t iters;   /* per task */
  uint64_t sink[2]; /* results, so the work is not removed */
  pthread_t who[2]; /* which thread ran each task, on which CPU */
  int cpu[2];
  pthread_t caller;
  long calls, on_worker, same_cpu; /* calls; a worker ran a task; ... on our CPU */
} work_args;

static void empty_task(void *args, int64_t i) { (void)args, (void)i; }

static void work_task(void *args, int64_t i) {
  work_args *w = args;
  w->sink[i] = work(w->iters, (uint64_t)i + w->sink[i]);
  w->who[i] = pthread_self();
  w->cpu[i] = sched_getcpu();
}

/* After a call: did a worker run one of the tasks, on the caller's CPU? */
static void count_placement(work_args *w) {
  int me = sched_getcpu();
  w->calls++;
  for (int i = 0; i < 2; i++)
    if (!pthread_equal(w->who[i], w->caller)) {
      w->on_worker++;
      w->same_cpu += w->cpu[i] == me;
      break;
    }
}

/* What the entry point measures, passed as the model's one input. */
typedef struct {
  int samples;
  uint64_t iters;                  /* per task, for ~1 us */
  double empty_ns, work_ns, idle_ns, layers_ns; /* results: median ns per call */
  long calls, on_worker, same_cpu;             /* placement of the work tasks */
} bench_cfg;

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static double median(double *v, int n) {
  qsort(v, (size_t)n, sizeof *v, cmp_double);
  return v[n / 2];
}

/* The median over `samples` of the time per call of `batch` back-to-back
 * calls, preceded by `idle_us` of sleep when idle_us > 0 (not timed). */
static double measure(const q8_threads *t, q8_task_fn fn, void *args, int samples, int batch,
                      int idle_us) {
  work_args *w = fn == work_task ? args : NULL;
  double *v = malloc((size_t)samples * sizeof *v);
  for (int s = 0; s < samples; s++) {
    if (idle_us > 0) {
      struct timespec ts = {0, idle_us * 1000L};
      nanosleep(&ts, NULL);
    }
    int64_t t0 = now_ns();
    for (int k = 0; k < batch; k++) {
      t->parallel_for(t, fn, args, 2);
      if (w)
        count_placement(w);
    }
    v[s] = (double)(now_ns() - t0) / batch;
  }
  double m = median(v, samples);
  free(v);
  return m;
}

static int bench_entry(const q8_threads *threads, const void *const *inputs,
                       void *const *outputs, void *scratch, int64_t batch) {
  (void)outputs, (void)scratch, (void)batch;
  bench_cfg *cfg = (bench_cfg *)inputs[0];
  work_args w = {.iters = cfg->iters, .sink = {1, 2}, .caller = pthread_self()};
  measure(threads, work_task, &w, cfg->samples / 10 + 1, 10, 0); /* warm up */
  w.calls = w.on_worker = w.same_cpu = 0;
  cfg->empty_ns = measure(threads, empty_task, NULL, cfg->samples, 100, 0);
  cfg->work_ns = measure(threads, work_task, &w, cfg->samples, 20, 0);
  cfg->idle_ns = measure(threads, work_task, &w, cfg->samples / 10 + 1, 1, 500);
  cfg->layers_ns = 10 * measure(threads, work_task, &w, cfg->samples / 10 + 1, 10, 500);
  cfg->calls = w.calls;
  cfg->on_worker = w.on_worker;
  cfg->same_cpu = w.same_cpu;
  return 0;
}

static const q8_tensor_desc cfg_tensor[] = {{"cfg", Q8_DTYPE_U8, 1, {sizeof(bench_cfg)}, Q8_DTYPE_U8, 0, 0, 0}};
static const q8_variant_desc variants[] = {{"generic", 0, bench_entry, bench_entry}};
static const q8_model_desc desc = {
    Q8_MODEL_MAGIC, Q8_MODEL_ABI_VERSION, "bench_threadpool", "hand-written", 1, 1,
    cfg_tensor,     cfg_tensor,           0,                  1, variants, 0, 0, 0, NULL, NULL};

/* Iterations of work() that take ~1 us on this machine (best of several). */
static uint64_t calibrate(void) {
  const uint64_t n = 2000000;
  double best = 1e30;
  uint64_t sink = 0;
  for (int r = 0; r < 5; r++) {
    int64_t t0 = now_ns();
    sink += work(n, sink);
    double ns = (double)(now_ns() - t0);
    if (ns < best)
      best = ns;
  }
  if (sink == 42) /* keep sink alive */
    puts("");
  return (uint64_t)(1000.0 * (double)n / best);
}

int main(int argc, char **argv) {
  int samples = argc > 1 ? atoi(argv[1]) : 2000;
  if (samples < 10)
    samples = 10;
  char err[256];
  q8rt_model *m;
  if (q8rt_model_from_desc(&desc, NULL, NULL, &m, err, sizeof err) != Q8RT_OK) {
    fprintf(stderr, "bench_threadpool: %s\n", err);
    return 1;
  }
  uint64_t iters = calibrate();
  bench_cfg r[2];
  for (int t = 0; t < 2; t++) {
    if (q8rt_set_threads(m, t + 1, err, sizeof err) != Q8RT_OK) {
      fprintf(stderr, "bench_threadpool: %s\n", err);
      return 1;
    }
    r[t] = (bench_cfg){.samples = samples, .iters = iters};
    const void *in[] = {&r[t]};
    void *out[] = {&r[t]};
    if (q8rt_run(m, 1, in, 1, out, err, sizeof err) != Q8RT_OK) {
      fprintf(stderr, "bench_threadpool: %s\n", err);
      return 1;
    }
  }
  q8rt_free(m);

  const char *spin = getenv("Q8_SPIN_US");
  printf("parallel_for(n=2): median ns, %d samples, %llu iterations ~ 1 us, Q8_SPIN_US=%s\n",
         samples, (unsigned long long)iters, spin && *spin ? spin : "(default)");
  printf("%-38s %10s %10s %8s\n", "case", "1 thread", "2 threads", "speedup");
  const char *names[] = {"empty tasks (per call)", "2 us of work split in 2 (per call)",
                         "2 us, after 500 us idle (per call)",
                         "10 x 2 us, after 500 us idle (per run)"};
  for (int c = 0; c < 4; c++) {
    double a[2];
    for (int t = 0; t < 2; t++)
      a[t] = c == 0 ? r[t].empty_ns : c == 1 ? r[t].work_ns : c == 2 ? r[t].idle_ns
                                                                    : r[t].layers_ns;
    printf("%-38s %10.0f %10.0f %7.2fx\n", names[c], a[0], a[1], a[0] / a[1]);
  }
  printf("2 threads, %ld calls with work: a worker ran a task in %.1f%%, on the caller's CPU in "
         "%.1f%% of those\n",
         r[1].calls, 100.0 * (double)r[1].on_worker / (double)r[1].calls,
         r[1].on_worker ? 100.0 * (double)r[1].same_cpu / (double)r[1].on_worker : 0.0);
  return 0;
}
