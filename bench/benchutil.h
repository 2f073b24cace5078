/* benchutil.h: what the benchmarks (q8bench.c, layerbench.c) share: timing
 * with medians over interleaved rounds, the other load on the machine,
 * deterministic random data, the files a case writes (safetensors, .npy,
 * text IR) in a work directory, running the q8c binary, and q8c models as
 * timed implementations. bench_prog names the program in messages. */
#ifndef Q8_BENCHUTIL_H
#define Q8_BENCHUTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "q8rt.h"

extern const char *bench_prog;

/* Print "PROG: " fmt (one %s for a) and exit(1): a benchmark, not the
 * library, so it may. */
void die(const char *fmt, const char *a);
/* 64-byte aligned, never NULL. */
void *xmalloc(size_t n);

/* ---- time ------------------------------------------------------------- */

double now_s(void);
void sleep_ms(double ms);
double median(const double *v, int n);

/* ---- other load on the machine --------------------------------------- */

/* The machine is shared: what else ran during a case is worth knowing. A
 * snapshot: the CPU time every process has used (from /proc/stat, busy
 * jiffies, steal included) and this process's own (getrusage, threads and
 * the q8c children included). */
typedef struct {
  double wall, busy, self;
} LoadMark;

LoadMark load_mark(void);
/* CPUs the rest of the machine kept busy on average since `a`. */
double other_load(LoadMark a);
/* Wait up to max_s seconds until the rest of the machine keeps less than a
 * quarter of a CPU busy over half a second. */
void wait_for_quiet(double max_s);

/* ---- random data (splitmix64: the same bytes on every run) ------------ */

/* Restart the sequence (its initial state is 0x9e3779b97f4a7c15). */
void rng_seed(uint64_t seed);
uint64_t rng_next(void);
double rng_unif(void); /* [0, 1) */
int rng_int(int lo, int hi);

/* ---- files ------------------------------------------------------------ */

/* The work directory: DIR (created if missing; kept if it existed) or, for
 * NULL, a new /tmp/PROG.XXXXXX. work_cleanup removes every file work_path
 * named, and the directory if this run made it, unless keep. */
void work_init(const char *dir);
void work_cleanup(bool keep);
const char *work_dir_name(void);
/* DIR/name, remembered so that it is removed at the end; the string lives
 * until then. */
const char *work_path(const char *name);

void write_text(const char *path, const char *text);

typedef struct {
  const char *name, *dtype; /* safetensors dtype: I8, I32, F32 */
  int64_t d0, d1;           /* d1 = 0 for a vector */
  const void *data;
  size_t esize;
} Tensor;

/* An 8-byte header length, the JSON header padded with spaces to a multiple
 * of 8, then the tensors' bytes in order. */
void write_safetensors(const char *path, const Tensor *t, int n);
/* A float32 .npy file of shape dims[0..ndim) (format 1.0, header padded to
 * 64). */
void write_npy_f32(const char *path, const float *x, int ndim, const int64_t *dims);

/* Run the q8c binary `q8c` with `args` (NULL-terminated, without argv[0]);
 * its output goes to q8c.log in the work directory. Returns the wall time in
 * seconds; dies on failure. */
double run_q8c(const char *q8c, const char *const *args);
q8rt_model *load_so(const char *path);

/* A float linear layer, y = x W^T + b. */
typedef struct {
  float *w, *b; /* [n, k], [n] */
  int n, k;
} Fc;

/* ---- measurement ------------------------------------------------------ */

typedef struct {
  const char *name;
  int threads;      /* for oneDNN and the probes: omp_set_num_threads */
  void (*run)(void *ctx);
  void *ctx;
  int calls;        /* per sample */
  double s[64];     /* seconds per call, per round */
  double med;       /* seconds per call */
} Impl;

/* A q8c model with one input and one output as an implementation. */
typedef struct {
  q8rt_model *m;
  const void *in[1];
  void *out[1];
} Q8Run;

void run_q8(void *c);
/* Seconds per call over `calls` back-to-back calls, with im->threads OpenMP
 * threads (q8c models have their own). */
double time_calls(Impl *im, int calls);
/* Warm every implementation up, size its samples (>= sample_ms), then take
 * `rounds` rounds (at most 64), each giving every implementation one sample
 * in turn; im[i].med is the median seconds per call. */
void measure(Impl *im, int n, int rounds, double sample_ms);

#endif
