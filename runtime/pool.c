/* pool.c: the thread pool a model's entry point gets as q8_threads.
 * parallel_for(fn, args, n) splits [0, n) into contiguous chunks, chunk 0 the
 * caller's and chunk k worker k's; workers spin (Q8_SPIN_US, 50 us) before
 * they sleep, chunks are claimed rather than assigned, and a second job at
 * once runs inline. Why, the measured spin time and the wake-up protocol are
 * in docs/kernels.md, "The thread pool". */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "internal.h"

/* How long the caller spins for the other chunks to finish before sleeping.
 * Chunks are of equal size, so it usually waits a fraction of one. (How long
 * an idle worker spins is the pool's spin_ns, from Q8_SPIN_US.) */
enum { CALLER_SPIN_NS = 100000 };

/* How long parallel_for waits for an awake worker to acknowledge the last
 * job (it is finishing a scan of the chunk flags) before running inline. */
enum { ACK_SPIN_NS = 2000 };

struct q8rt_pool {
  q8_threads threads; /* what the entry point gets; impl points back here */
  int nthreads;       /* the caller plus the workers */
  int nworkers;       /* workers running */
  int64_t spin_ns;    /* how long an idle worker spins before it sleeps */
  pthread_t *workers;
  atomic_int *claimed; /* per chunk: taken by some thread in this job */

  atomic_int busy; /* a parallel_for is in progress */

  /* The job: written by the caller before it bumps generation (release),
   * read by workers after they see it (acquire); not rewritten until every
   * worker has acknowledged it (acks == 0). */
  q8_task_fn fn;
  void *args;
  int64_t n;
  int active; /* chunks: min(nthreads, n) */

  _Atomic uint64_t generation; /* jobs published so far */
  atomic_int done;             /* chunks of the current job finished */
  atomic_int acks;             /* workers yet to see the current job */
  atomic_int sleepers;         /* workers asleep on work_cv (or about to be) */
  atomic_int caller_waiting;   /* the caller sleeps on done_cv */
  atomic_int stop;

  pthread_mutex_t mu;
  pthread_cond_t work_cv, done_cv;
};

typedef struct {
  q8rt_pool *pool;
  int index; /* 1..nworkers; the caller is 0 */
} worker_arg;

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
  __asm__ volatile("pause" ::: "memory");
#elif defined(__aarch64__)
  __asm__ volatile("yield" ::: "memory");
#else
  atomic_signal_fence(memory_order_seq_cst);
#endif
}

static int64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Chunk k of n items split over t threads: the first n % t chunks get one
 * more item. Written without n * k, which could overflow. */
static void chunk(int64_t n, int t, int k, int64_t *lo, int64_t *hi) {
  int64_t base = n / t, rem = n % t;
  *lo = k * base + (k < rem ? k : rem);
  *hi = *lo + base + (k < rem ? 1 : 0);
}

/* Chunk k is now this thread's (no other thread claimed it first). */
static int claim(q8rt_pool *p, int k) {
  return !atomic_load_explicit(&p->claimed[k], memory_order_relaxed) &&
         !atomic_exchange(&p->claimed[k], 1);
}

static void run_chunk(q8_task_fn fn, void *args, int64_t n, int active, int k) {
  int64_t lo, hi;
  chunk(n, active, k, &lo, &hi);
  for (int64_t i = lo; i < hi; i++)
    fn(args, i);
}

/* Count one chunk done; the last one wakes the caller if it sleeps. */
static void chunk_done(q8rt_pool *p, int active) {
  if (atomic_fetch_add(&p->done, 1) == active - 1 && atomic_load(&p->caller_waiting)) {
    pthread_mutex_lock(&p->mu);
    pthread_cond_signal(&p->done_cv);
    pthread_mutex_unlock(&p->mu);
  }
}

/* Thread `self`'s part of the current job: its own chunk first, then any
 * left unclaimed. A worker acknowledges the job before it counts its last
 * chunk, so when the caller sees every chunk done, every worker that ran one
 * has let go of the job, and the next can be published at once. */
static void work_on(q8rt_pool *p, int self, int is_worker) {
  q8_task_fn fn = p->fn;
  void *args = p->args;
  int64_t n = p->n;
  int active = p->active, last = 0;
  for (int d = 0; d < active; d++) {
    int k = (self + d) % active;
    if (!claim(p, k))
      continue;
    if (last)
      chunk_done(p, active);
    run_chunk(fn, args, n, active, k);
    last = 1;
  }
  if (is_worker)
    atomic_fetch_sub(&p->acks, 1);
  if (last)
    chunk_done(p, active);
}

static void *worker_main(void *argp) {
  worker_arg *wa = argp;
  q8rt_pool *p = wa->pool;
  int index = wa->index;
  free(wa);
  uint64_t seen = 0;
  for (;;) {
    /* Spin for the next job, then sleep. */
    if (atomic_load_explicit(&p->generation, memory_order_acquire) == seen &&
        !atomic_load_explicit(&p->stop, memory_order_relaxed)) {
      int64_t deadline = now_ns() + p->spin_ns;
      for (unsigned k = 1;; k++) {
        cpu_relax();
        if (atomic_load_explicit(&p->generation, memory_order_acquire) != seen ||
            atomic_load_explicit(&p->stop, memory_order_relaxed))
          break;
        if (k % 16 == 0 && now_ns() > deadline)
          break;
      }
    }
    if (atomic_load(&p->generation) == seen) {
      pthread_mutex_lock(&p->mu);
      atomic_fetch_add(&p->sleepers, 1);
      while (atomic_load(&p->generation) == seen && !atomic_load(&p->stop))
        pthread_cond_wait(&p->work_cv, &p->mu);
      atomic_fetch_sub(&p->sleepers, 1);
      pthread_mutex_unlock(&p->mu);
    }
    /* stop is only set between jobs, so a new generation is always run. */
    if (atomic_load(&p->generation) == seen)
      return NULL;
    seen++;
    work_on(p, index, 1);
  }
}

static void run_inline(q8_task_fn fn, void *args, int64_t n) {
  for (int64_t i = 0; i < n; i++)
    fn(args, i);
}

static void pool_parallel_for(const q8_threads *self, q8_task_fn fn, void *args, int64_t n) {
  q8rt_pool *p = self ? self->impl : NULL;
  if (!fn || n <= 0)
    return;
  int expect = 0;
  if (!p || p->nworkers == 0 || n < 2 ||
      !atomic_compare_exchange_strong_explicit(&p->busy, &expect, 1, memory_order_acquire,
                                               memory_order_relaxed)) {
    run_inline(fn, args, n);
    return;
  }
  /* A worker has not let go of the last job yet: wait a moment if all are
   * awake (it is about to), else do not wait for one to wake up. */
  if (atomic_load(&p->acks) != 0) {
    int64_t deadline = now_ns() + ACK_SPIN_NS;
    for (unsigned k = 1; atomic_load(&p->acks) != 0; k++) {
      cpu_relax();
      if (atomic_load_explicit(&p->sleepers, memory_order_relaxed) > 0 ||
          (k % 16 == 0 && now_ns() > deadline)) {
        atomic_store_explicit(&p->busy, 0, memory_order_release);
        run_inline(fn, args, n);
        return;
      }
    }
  }
  /* Publish the job. */
  p->fn = fn;
  p->args = args;
  p->n = n;
  p->active = n < p->nthreads ? (int)n : p->nthreads;
  for (int k = 0; k < p->active; k++)
    atomic_store_explicit(&p->claimed[k], 0, memory_order_relaxed);
  atomic_store_explicit(&p->done, 0, memory_order_relaxed);
  atomic_store_explicit(&p->acks, p->nworkers, memory_order_relaxed);
  atomic_fetch_add(&p->generation, 1);
  if (atomic_load(&p->sleepers) > 0) {
    pthread_mutex_lock(&p->mu);
    pthread_cond_broadcast(&p->work_cv);
    pthread_mutex_unlock(&p->mu);
  }

  work_on(p, 0, 0);

  /* Wait for the chunks other threads claimed: spin, then sleep. */
  if (atomic_load_explicit(&p->done, memory_order_acquire) != p->active) {
    int64_t deadline = now_ns() + CALLER_SPIN_NS;
    for (unsigned k = 1; atomic_load_explicit(&p->done, memory_order_acquire) != p->active;
         k++) {
      cpu_relax();
      if (k % 16 == 0 && now_ns() > deadline) {
        pthread_mutex_lock(&p->mu);
        atomic_store(&p->caller_waiting, 1);
        while (atomic_load(&p->done) != p->active)
          pthread_cond_wait(&p->done_cv, &p->mu);
        atomic_store(&p->caller_waiting, 0);
        pthread_mutex_unlock(&p->mu);
        break;
      }
    }
  }
  atomic_store_explicit(&p->busy, 0, memory_order_release);
}

static const q8_threads inline_threads = {pool_parallel_for, NULL};

const q8_threads *q8rt_pool_threads(q8rt_pool *p) { return p ? &p->threads : &inline_threads; }

q8rt_status q8rt_pool_create(int nthreads, int64_t spin_ns, q8rt_pool **out, char *err,
                             size_t errlen) {
  *out = NULL;
  q8rt_pool *p = calloc(1, sizeof *p);
  pthread_t *workers = calloc((size_t)nthreads, sizeof *workers);
  atomic_int *claimed = calloc((size_t)nthreads, sizeof *claimed);
  if (!p || !workers || !claimed) {
    free(p);
    free(workers);
    free(claimed);
    return q8rt_fail(Q8RT_ERR_NOMEM, err, errlen, "out of memory");
  }
  p->threads.parallel_for = pool_parallel_for;
  p->threads.impl = p;
  p->nthreads = nthreads;
  p->spin_ns = spin_ns;
  p->workers = workers;
  p->claimed = claimed;
  pthread_mutex_init(&p->mu, NULL);
  pthread_cond_init(&p->work_cv, NULL);
  pthread_cond_init(&p->done_cv, NULL);

  /* Workers block every signal (they inherit the creator's mask), so that
   * the application's handlers run on the application's threads. */
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  int rc = 0;
  for (int i = 1; i < nthreads; i++) {
    worker_arg *wa = malloc(sizeof *wa);
    if (!wa) {
      rc = ENOMEM;
      break;
    }
    wa->pool = p;
    wa->index = i;
    rc = pthread_create(&p->workers[i - 1], NULL, worker_main, wa);
    if (rc != 0) {
      free(wa);
      break;
    }
    p->nworkers++;
  }
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  if (rc != 0) {
    int started = p->nworkers;
    q8rt_pool_destroy(p);
    return q8rt_fail(Q8RT_ERR_NOMEM, err, errlen,
                     "cannot start thread %d of %d: %s", started + 2, nthreads, strerror(rc));
  }
  *out = p;
  return Q8RT_OK;
}

void q8rt_pool_destroy(q8rt_pool *p) {
  if (!p)
    return;

  atomic_store(&p->stop, 1);
  pthread_mutex_lock(&p->mu);
  pthread_cond_broadcast(&p->work_cv);
  pthread_mutex_unlock(&p->mu);
  for (int i = 0; i < p->nworkers; i++)
    pthread_join(p->workers[i], NULL);
  pthread_mutex_destroy(&p->mu);
  pthread_cond_destroy(&p->work_cv);
  pthread_cond_destroy(&p->done_cv);
  free(p->workers);
  free(p->claimed);
  free(p);
}
