/* internal.h: what the runtime's files share and do not export (the library
 * is built with hidden visibility: only Q8RT_API functions are visible).
 *
 *   cpu.c    CPU feature detection, Q8_CPU_FEATURES, feature names
 *   elf.c    a model file's ELF headers, checked before dlopen
 *   pool.c   the thread pool behind q8_threads.parallel_for
 *   model.c  loading, descriptor checks, variant choice, q8rt_run
 *   shapes.c run-time batch: q8rt_run_dims, the shapes of a call */
#ifndef Q8RT_INTERNAL_H
#define Q8RT_INTERNAL_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "q8model.h"
#include "q8rt.h"

/* Write a message into err (if err && errlen) and return `s`. */
q8rt_status q8rt_fail(q8rt_status s, char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* --- model.c --- */

/* Run model m's f32 or quantized entry at `batch` (1 for a fixed-shape
 * model; checked by the caller), `fn` naming the API call in messages. */
q8rt_status q8rt_run_entry(q8rt_model *m, bool quantized, int64_t batch, const char *fn,
                           int ninputs, const void *const *inputs, int noutputs,
                           void *const *outputs, char *err, size_t errlen);

/* --- cpu.c --- */

/* Every feature the runtime knows, in the order messages list them. */
extern const struct q8rt_feature_info {
  const char *name;
  uint64_t bit;
} q8rt_features_known[];
extern const int q8rt_nfeatures_known;

/* The features to choose a variant with: the detected ones, restricted by
 * Q8_CPU_FEATURES. Fails (Q8RT_ERR_ARG) on an unknown name there. */
q8rt_status q8rt_effective_features(uint64_t *out, char *err, size_t errlen);

/* --- elf.c --- */

/* Open `path` and check that it is a complete ELF shared library:
 * Q8RT_ERR_LOAD (cannot open, truncated) or Q8RT_ERR_FORMAT (not a library). */
q8rt_status q8rt_check_elf(const char *path, char *err, size_t errlen);

/* --- weights.c --- */

/* Map the weights file of the library at `lib` that `w` describes (or use
 * the mapping an earlier load of it made) and point *w->base at its
 * payload; refuses a missing, other or truncated file with a message. */
q8rt_status q8rt_weights_attach(const q8_weights_desc *w, const char *lib, char *err,
                                size_t errlen);
/* Drop one use; the last unmaps. NULL is accepted. */
void q8rt_weights_detach(const q8_weights_desc *w);

/* --- pool.c --- */

#define Q8RT_MAX_THREADS 256
#define Q8RT_DEFAULT_SPIN_US 50
#define Q8RT_MAX_SPIN_US 1000000

typedef struct q8rt_pool q8rt_pool;

/* Start nthreads - 1 workers (nthreads >= 2) that spin spin_ns for work
 * before they sleep. Q8RT_ERR_NOMEM on failure. */
q8rt_status q8rt_pool_create(int nthreads, int64_t spin_ns, q8rt_pool **out, char *err,
                             size_t errlen);
/* Stop and join the workers. NULL is accepted. */
void q8rt_pool_destroy(q8rt_pool *p);
/* The q8_threads to hand to an entry point; NULL gives one that runs every
 * task on the calling thread. */
const q8_threads *q8rt_pool_threads(q8rt_pool *p);

#endif
