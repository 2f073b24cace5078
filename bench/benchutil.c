/* benchutil.c: the shared parts of the benchmarks (benchutil.h): timing
 * and medians, the machine's other load, random data, work files, running
 * the q8c binary, the interleaved measurement. */
#include "benchutil.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <omp.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

const char *bench_prog = "bench";

void die(const char *fmt, const char *a) {
  fprintf(stderr, "%s: ", bench_prog);
  fprintf(stderr, fmt, a);
  fprintf(stderr, "\n");
  exit(1);
}

void *xmalloc(size_t n) {
  void *p = aligned_alloc(64, (n + 63) / 64 * 64);
  if (!p)
    die("out of memory%s", "");
  return p;
}

/* ---- time ------------------------------------------------------------- */

double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void sleep_ms(double ms) {
  struct timespec ts = {(time_t)(ms / 1000), (long)(fmod(ms, 1000) * 1e6)};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

double median(const double *v, int n) {
  double *s = malloc((size_t)n * sizeof *s);
  memcpy(s, v, (size_t)n * sizeof *s);
  qsort(s, (size_t)n, sizeof *s, cmp_double);
  double m = n % 2 ? s[n / 2] : 0.5 * (s[n / 2 - 1] + s[n / 2]);
  free(s);
  return m;
}

/* ---- other load on the machine --------------------------------------- */

LoadMark load_mark(void) {
  LoadMark m = {now_s(), 0, 0};
  FILE *f = fopen("/proc/stat", "r");
  unsigned long long v[10] = {0};
  if (f && fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3],
                  &v[4], &v[5], &v[6], &v[7]) == 8)
    m.busy = (double)(v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) / (double)sysconf(_SC_CLK_TCK);
  if (f)
    fclose(f);
  struct rusage ru, rc;
  getrusage(RUSAGE_SELF, &ru);
  getrusage(RUSAGE_CHILDREN, &rc);
  m.self = (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec + rc.ru_utime.tv_sec +
                    rc.ru_stime.tv_sec) +
           1e-6 * (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec + rc.ru_utime.tv_usec +
                           rc.ru_stime.tv_usec);
  return m;
}

/* CPUs the rest of the machine kept busy on average since `a`. */
double other_load(LoadMark a) {
  LoadMark b = load_mark();
  double other = (b.busy - a.busy) - (b.self - a.self);
  return b.wall > a.wall && other > 0 ? other / (b.wall - a.wall) : 0;
}

/* Before a case: wait (up to max_s seconds) until the rest of the
 * machine keeps less than a quarter of a CPU busy over half a second. On a
 * shared machine that is the difference between measuring the kernels and
 * measuring someone else's build. */
void wait_for_quiet(double max_s) {
  double t0 = now_s();
  while (now_s() - t0 < max_s) {
    LoadMark m = load_mark();
    sleep_ms(500);
    double l = other_load(m);
    if (l < 0.25)
      return;
    fprintf(stderr, "  waiting: other processes keep %.2f CPUs busy\n", l);
  }
}

/* ---- random data (splitmix64: the same bytes on every run) ------------ */

static uint64_t rng_state = 0x9e3779b97f4a7c15u;

void rng_seed(uint64_t seed) { rng_state = seed; }

uint64_t rng_next(void) {
  uint64_t z = (rng_state += 0x9e3779b97f4a7c15u);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
  return z ^ (z >> 31);
}

double rng_unif(void) { return (double)(rng_next() >> 11) * 0x1p-53; }

int rng_int(int lo, int hi) { return lo + (int)(rng_next() % (uint64_t)(hi - lo + 1)); }

/* ---- files ------------------------------------------------------------ */

static char work_dir[512];
static bool work_made;
static char *made_files[1024];
static int nmade;

void work_init(const char *dir) {
  if (dir) {
    snprintf(work_dir, sizeof work_dir, "%s", dir);
    if (mkdir(work_dir, 0755) == 0)
      work_made = true;
  } else {
    snprintf(work_dir, sizeof work_dir, "/tmp/%s.XXXXXX", bench_prog);
    if (!mkdtemp(work_dir))
      die("cannot create %s", work_dir);
    work_made = true;
  }
}

void work_cleanup(bool keep) {
  if (!keep) {
    for (int i = 0; i < nmade; i++)
      unlink(made_files[i]);
    if (work_made)
      rmdir(work_dir);
  }
  for (int i = 0; i < nmade; i++)
    free(made_files[i]);
  nmade = 0;
}

const char *work_dir_name(void) { return work_dir; }

/* DIR/name, remembered so that it is removed at the end; the string lives
 * until then. */
const char *work_path(const char *name) {
  char p[600];
  snprintf(p, sizeof p, "%s/%s", work_dir, name);
  for (int i = 0; i < nmade; i++)
    if (strcmp(made_files[i], p) == 0)
      return made_files[i];
  if (nmade == 1024)
    die("too many files%s", "");
  return made_files[nmade++] = strdup(p);
}

void write_text(const char *path, const char *text) {
  FILE *f = fopen(path, "w");
  if (!f || fputs(text, f) < 0 || fclose(f) != 0)
    die("cannot write %s", path);
}

/* An 8-byte header length, the JSON header padded with spaces to a multiple
 * of 8, then the tensors' bytes in order. */
void write_safetensors(const char *path, const Tensor *t, int n) {
  char hdr[4096];
  size_t len = 0, off = 0;
  len += (size_t)snprintf(hdr + len, sizeof hdr - len, "{");
  for (int i = 0; i < n; i++) {
    size_t bytes = (size_t)(t[i].d0 * (t[i].d1 ? t[i].d1 : 1)) * t[i].esize;
    char shape[64];
    if (t[i].d1)
      snprintf(shape, sizeof shape, "[%lld,%lld]", (long long)t[i].d0, (long long)t[i].d1);
    else
      snprintf(shape, sizeof shape, "[%lld]", (long long)t[i].d0);
    len += (size_t)snprintf(hdr + len, sizeof hdr - len,
                            "%s\"%s\":{\"dtype\":\"%s\",\"shape\":%s,\"data_offsets\":[%zu,%zu]}",
                            i ? "," : "", t[i].name, t[i].dtype, shape, off, off + bytes);
    off += bytes;
  }
  len += (size_t)snprintf(hdr + len, sizeof hdr - len, "}");
  while (len % 8)
    hdr[len++] = ' ';
  FILE *f = fopen(path, "wb");
  uint64_t hl = len;
  if (!f || fwrite(&hl, 8, 1, f) != 1 || fwrite(hdr, 1, len, f) != len)
    die("cannot write %s", path);
  for (int i = 0; i < n; i++) {
    size_t cnt = (size_t)(t[i].d0 * (t[i].d1 ? t[i].d1 : 1));
    if (fwrite(t[i].data, t[i].esize, cnt, f) != cnt)
      die("cannot write %s", path);
  }
  if (fclose(f) != 0)
    die("cannot write %s", path);
}

void write_npy_f32(const char *path, const float *x, int ndim, const int64_t *dims) {
  char dict[256], shape[160];
  size_t len = 0;
  int64_t count = 1;
  for (int i = 0; i < ndim; i++) {
    len += (size_t)snprintf(shape + len, sizeof shape - len, "%lld, ", (long long)dims[i]);
    count *= dims[i];
  }
  if (ndim > 1)
    shape[len - 2] = 0; /* (a, b) but (a,) */
  int n = snprintf(dict, sizeof dict, "{'descr': '<f4', 'fortran_order': False, 'shape': (%s), }",
                   shape);
  int total = (10 + n + 1 + 63) / 64 * 64;
  char hdr[320];
  memcpy(hdr, "\x93NUMPY\x01\x00", 8);
  hdr[8] = (char)((total - 10) & 0xff);
  hdr[9] = (char)((total - 10) >> 8);
  memcpy(hdr + 10, dict, (size_t)n);
  memset(hdr + 10 + n, ' ', (size_t)(total - 10 - n - 1));
  hdr[total - 1] = '\n';
  FILE *f = fopen(path, "wb");
  if (!f || fwrite(hdr, 1, (size_t)total, f) != (size_t)total ||
      fwrite(x, sizeof *x, (size_t)count, f) != (size_t)count || fclose(f) != 0)
    die("cannot write %s", path);
}

/* Run the q8c binary with `args` (NULL-terminated, without argv[0]); its
 * output goes to q8c.log. Returns the wall time in seconds; dies on failure. */
double run_q8c(const char *q8c, const char *const *args) {
  const char *argv[32] = {q8c};
  int n = 1;
  for (; args[n - 1]; n++)
    argv[n] = args[n - 1];
  argv[n] = NULL;
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  const char *log = work_path("q8c.log");
  posix_spawn_file_actions_addopen(&fa, 1, log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_adddup2(&fa, 1, 2);
  double t0 = now_s();
  pid_t pid;
  int rc = posix_spawn(&pid, q8c, &fa, NULL, (char *const *)argv, environ);
  posix_spawn_file_actions_destroy(&fa);
  if (rc != 0)
    die("cannot run %s (--q8c)", q8c);
  int status;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  double t = now_s() - t0;
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    fprintf(stderr, "%s: q8c failed:", bench_prog);
    for (int i = 0; argv[i]; i++)
      fprintf(stderr, " %s", argv[i]);
    die("\n(see %s)", log);
  }
  return t;
}

q8rt_model *load_so(const char *path) {
  char err[512];
  q8rt_model *m;
  if (q8rt_load(path, &m, err, sizeof err) != Q8RT_OK)
    die("%s", err);
  return m;
}

/* ---- measurement ------------------------------------------------------ */

void run_q8(void *c) {
  Q8Run *r = c;
  char err[256];
  if (q8rt_run(r->m, 1, r->in, 1, r->out, err, sizeof err) != Q8RT_OK)
    die("q8rt_run: %s", err);
}

double time_calls(Impl *im, int calls) {
  omp_set_num_threads(im->threads);
  double t0 = now_s();
  for (int i = 0; i < calls; i++)
    im->run(im->ctx);
  return (now_s() - t0) / calls;
}

/* Before a sample: a pause, so that the previous implementation's idle
 * threads stop spinning and do not take this one's CPUs: GNU OpenMP's spin
 * for up to a few ms (oneDNN and the probes run on it), q8rt's for 50 us. */
static void settle(const Impl *prev) {
  sleep_ms(prev && prev->threads > 1 && prev->run != run_q8 ? 10 : 1);
}

/* Warm every implementation up, size its samples, then take the rounds:
 * in each round every implementation (both thread counts, the probes) gets
 * one sample, in turn, so that a burst of load from elsewhere on the
 * machine hits them alike. A sample is two untimed calls (threads awake,
 * data in cache), then back-to-back calls for --sample-ms. */
void measure(Impl *im, int n, int rounds, double sample_ms) {
  const Impl *prev = NULL;
  for (int i = 0; i < n; i++) {
    settle(prev);
    double t = time_calls(&im[i], 1), spent = t;
    while (spent < 0.05) {
      t = time_calls(&im[i], 1);
      spent += t;
    }
    int calls = (int)ceil(sample_ms * 1e-3 / t);
    im[i].calls = calls < 1 ? 1 : calls;
    prev = &im[i];
  }
  for (int r = 0; r < rounds; r++)
    for (int i = 0; i < n; i++) {
      settle(prev);
      time_calls(&im[i], 2);
      im[i].s[r] = time_calls(&im[i], im[i].calls);
      prev = &im[i];
    }
  for (int i = 0; i < n; i++)
    im[i].med = median(im[i].s, rounds);
}
