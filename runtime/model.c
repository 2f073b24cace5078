/* model.c: loading a model, checking its descriptor, choosing the variant
 * this CPU runs, and running it.
 *
 * A model comes from a shared library (q8rt_load: dlopen, dlsym "q8_model")
 * or from memory (q8rt_model_from_desc, for the JIT); both go through
 * check_desc and choose_variant, and end in the same q8rt_model. Scratch
 * buffers are kept on a small lock-protected free list so that repeated runs
 * do not allocate and concurrent runs each get their own. */
#include <dlfcn.h>
#include <math.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* Limits that catch a garbage descriptor before it is walked. */
enum { MAX_TENSORS = 65536, MAX_VARIANTS = 64 };

typedef struct scratch_buf {
  struct scratch_buf *next;
  size_t size; /* bytes, a multiple of 64 */
} scratch_buf;

struct q8rt_model {
  const q8_model_desc *desc;
  const q8_variant_desc *variant;
  void *dl;                  /* dlopen handle, or NULL */
  const q8_weights_desc *weights; /* its weights file's record (weights.c), or NULL */
  void (*release)(void *);   /* for a descriptor from memory */
  void *release_ctx;
  int nthreads;
  int64_t spin_ns;           /* for the pool's workers (Q8_SPIN_US) */
  q8rt_pool *pool;           /* NULL when nthreads == 1 */
  size_t scratch_size;       /* scratch at batch 1 rounded up to 64, or 0 */
  pthread_mutex_t scratch_mu;
  scratch_buf *scratch_free; /* buffers not in use by a run */
};

q8rt_status q8rt_fail(q8rt_status s, char *err, size_t errlen, const char *fmt, ...) {
  if (err && errlen > 0) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
  }
  return s;
}

static void clear_err(char *err, size_t errlen) {
  if (err && errlen > 0)
    err[0] = '\0';
}

Q8RT_API const char *q8rt_status_name(q8rt_status s) {
  switch (s) {
  case Q8RT_OK: return "Q8RT_OK";
  case Q8RT_ERR_ARG: return "Q8RT_ERR_ARG";
  case Q8RT_ERR_LOAD: return "Q8RT_ERR_LOAD";
  case Q8RT_ERR_FORMAT: return "Q8RT_ERR_FORMAT";
  case Q8RT_ERR_VERSION: return "Q8RT_ERR_VERSION";
  case Q8RT_ERR_CPU: return "Q8RT_ERR_CPU";
  case Q8RT_ERR_NOMEM: return "Q8RT_ERR_NOMEM";
  case Q8RT_ERR_SHAPE: return "Q8RT_ERR_SHAPE";
  case Q8RT_ERR_RUN: return "Q8RT_ERR_RUN";
  }
  return "Q8RT_ERR_?";
}

Q8RT_API int q8rt_version(void) { return Q8_VERSION_NUMBER; }
Q8RT_API const char *q8rt_version_string(void) { return Q8_VERSION; }
Q8RT_API int q8rt_model_abi_version(void) { return Q8_MODEL_ABI_VERSION; }

/* --- Descriptor checks --------------------------------------------------- */

static q8rt_status check_tensors(const char *kind, const q8_tensor_desc *t, int32_t count,
                                 char *err, size_t errlen) {
  for (int i = 0; i < count; i++) {
    if (!t[i].name)
      return q8rt_fail(Q8RT_ERR_FORMAT, err, errlen,
                       "bad model descriptor: %s %d has no name", kind, i);
    if (t[i].dtype < Q8_DTYPE_F32 || t[i].dtype > Q8_DTYPE_I64)
      return q8rt_fail(Q8RT_ERR_FORMAT, err, errlen,
                       "bad model descriptor: %s %d ('%s') has unknown dtype %d", kind, i,
                       t[i].name, (int)t[i].dtype);
    if (t[i].rank < 0 || t[i].rank > Q8_MODEL_MAX_RANK)
      return q8rt_fail(Q8RT_ERR_FORMAT, err, errlen,
                       "bad model descriptor: %s %d ('%s') has rank %d (expected 0 to %d)", kind,
                       i, t[i].name, (int)t[i].rank, Q8_MODEL_MAX_RANK);
    int64_t numel = 1;
    for (int d = 0; d < t[i].rank; d++) {
      int64_t dim = t[i].dims[d];
      if (dim < 0)
        return q8rt_fail(Q8RT_ERR_FORMAT, err, errlen,
                         "bad model descriptor: %s %d ('%s') has dimension %d of %lld", kind, i,
                         t[i].name, d, (long long)dim);
      /* 16 bytes per element bounds every dtype with room to spare. */
      if (dim != 0 && numel > (INT64_MAX / 16) / dim)
        return q8rt_fail(Q8RT_ERR_FORMAT, err, errlen,
                         "bad model descriptor: %s %d ('%s') is too large", kind, i, t[i].name);
      numel *= dim;
    }
    /* The quantized entry's form: the tensor's own type, or u8 / i8 for an
     * f32 tensor, with a scale that means something. */
    bool own = t[i].qdtype == t[i].dtype;
    bool qform = t[i].dtype == Q8_DTYPE_F32 &&
                 (t[i].qdtype == Q8_DTYPE_U8 || t[i].qdtype == Q8_DTYPE_I8) && t[i].scale > 0 &&
                 t[i].scale < INFINITY;
    if (!own && !qform)
      return q8rt_fail(Q8RT_ERR_FORMAT, err, errlen,
                       "bad model descriptor: %s %d ('%s') has quantized form %d (scale %g) "
                       "for dtype %d",
                       kind, i, t[i].name, (int)t[i].qdtype, (double)t[i].scale,
                       (int)t[i].dtype);
  }
  return Q8RT_OK;
}

/* `where` names the descriptor's origin in messages: "'path'" or "the
 * descriptor". */
static q8rt_status check_desc(const q8_model_desc *d, const char *where, char *err,
                              size_t errlen) {
  if (d->magic != Q8_MODEL_MAGIC)
    return q8rt_fail(Q8RT_ERR_FORMAT, err, errlen,
                     "not a q8c model: bad magic 0x%08x in %s (expected 0x%08x)",
                     (unsigned)d->magic, where, (unsigned)Q8_MODEL_MAGIC);
  if (d->abi_version != Q8_MODEL_ABI_VERSION)
    return q8rt_fail(Q8RT_ERR_VERSION, err, errlen,
                     "built by an incompatible q8c (model ABI %u, runtime ABI %d)",
                     (unsigned)d->abi_version, Q8_MODEL_ABI_VERSION);
  if (d->ninputs < 0 || d->ninputs > MAX_TENSORS)
    return q8rt_fail(Q8RT_ERR_FORMAT, err, errlen,
                     "bad model descriptor: ninputs is %d (expected 0 to %d)", (int)d->ninputs,
                     MAX_TENSORS);
  if (d->noutputs < 1 || d->noutputs > MAX_TENSORS)
    return q8rt_fail(Q8RT_ERR_FORMAT, err, errlen,
                     "bad model descriptor: noutputs is %d (expected 1 to %d)", (int)d->noutputs,
                     MAX_TENSORS);
  if (d->ninputs > 0 && !d->inputs)
    return q8rt_fail(Q8RT_ERR_FORMAT, err, errlen, "bad model descriptor: inputs is NULL");
  if (!d->outputs)
    return q8rt_fail(Q8RT_ERR_FORMAT, err, errlen, "bad model descriptor: outputs is NULL");
  q8rt_status s = check_tensors("input", d->inputs, d->ninputs, err, errlen);
  if (s == Q8RT_OK)
    s = check_tensors("output", d->outputs, d->noutputs, err, errlen);
  if (s != Q8RT_OK)
    return s;
  if (d->scratch_bytes < 0 || (uint64_t)d->scratch_bytes > SIZE_MAX / 2)
    return q8rt_fail(Q8RT_ERR_FORMAT, err, errlen,
                     "bad model descriptor: scratch_bytes is %lld", (long long)d->scratch_bytes);
  if (d->max_batch < 0 || d->scratch_bytes_per_batch < 0 ||
      (uint64_t)d->scratch_bytes_per_batch > SIZE_MAX / 2 ||
      (d->max_batch == 0 && d->scratch_bytes_per_batch != 0))
    return q8rt_fail(Q8RT_ERR_FORMAT, err, errlen,
                     "bad model descriptor: max_batch %lld, scratch_bytes_per_batch %lld",
                     (long long)d->max_batch, (long long)d->scratch_bytes_per_batch);
  if (d->nvariants < 1 || d->nvariants > MAX_VARIANTS)
    return q8rt_fail(Q8RT_ERR_FORMAT, err, errlen,
                     "bad model descriptor: nvariants is %d (expected 1 to %d)",
                     (int)d->nvariants, MAX_VARIANTS);
  if (!d->variants)
    return q8rt_fail(Q8RT_ERR_FORMAT, err, errlen, "bad model descriptor: variants is NULL");
  for (int i = 0; i < d->nvariants; i++) {
    if (!d->variants[i].isa)
      return q8rt_fail(Q8RT_ERR_FORMAT, err, errlen,
                       "bad model descriptor: variant %d has no isa name", i);
    if (!d->variants[i].run || !d->variants[i].run_quantized)
      return q8rt_fail(Q8RT_ERR_FORMAT, err, errlen,
                       "bad model descriptor: variant %d (%s) has no %s entry point", i,
                       d->variants[i].isa, d->variants[i].run ? "quantized" : "f32");
  }
  return Q8RT_OK;
}

/* --- Variant choice ------------------------------------------------------ */

/* Append `s` to buf (of size n) at *len, truncating. */
static void append(char *buf, size_t n, size_t *len, const char *s) {
  int w = snprintf(buf + *len, n - *len, "%s", s);
  if (w > 0)
    *len = *len + (size_t)w < n ? *len + (size_t)w : n - 1;
}

/* The feature names in `missing`, comma-separated: the one the variant is
 * named after first (variant avx512vnni needs "avx512vnni, avx512bw"), then
 * the others in table order, then unknown bits by number. */
static void feature_list(char *buf, size_t n, uint64_t missing, const char *isa) {
  size_t len = 0;
  buf[0] = '\0';
  for (int i = 0; i < q8rt_nfeatures_known; i++)
    if ((missing & q8rt_features_known[i].bit) && strcmp(q8rt_features_known[i].name, isa) == 0) {
      append(buf, n, &len, q8rt_features_known[i].name);
      missing &= ~q8rt_features_known[i].bit;
    }
  for (int i = 0; i < q8rt_nfeatures_known; i++)
    if (missing & q8rt_features_known[i].bit) {
      append(buf, n, &len, len ? ", " : "");
      append(buf, n, &len, q8rt_features_known[i].name);
      missing &= ~q8rt_features_known[i].bit;
    }
  for (int b = 0; b < 64; b++)
    if (missing & ((uint64_t)1 << b)) {
      char num[32];
      snprintf(num, sizeof num, "feature bit %d", b);
      append(buf, n, &len, len ? ", " : "");
      append(buf, n, &len, num);
    }
}

static q8rt_status lacks(const q8_variant_desc *v, uint64_t have, const char *prefix, char *err,
                         size_t errlen) {
  char names[512];
  feature_list(names, sizeof names, v->features & ~have, v->isa);
  return q8rt_fail(Q8RT_ERR_CPU, err, errlen,
                   "%smodel variant %s needs %s, which this CPU lacks", prefix, v->isa, names);
}

static q8rt_status choose_variant(const q8_model_desc *d, const q8_variant_desc **out,
                                  char *err, size_t errlen) {
  uint64_t have;
  q8rt_status s = q8rt_effective_features(&have, err, errlen);
  if (s != Q8RT_OK)
    return s;
  const char *force = getenv("Q8_ISA");
  if (force && *force) {
    for (int i = 0; i < d->nvariants; i++) {
      const q8_variant_desc *v = &d->variants[i];
      if (strcmp(v->isa, force) != 0)
        continue;
      if (v->features & ~have)
        return lacks(v, have, "", err, errlen);
      *out = v;
      return Q8RT_OK;
    }
    char names[512];
    size_t len = 0;
    names[0] = '\0';
    for (int i = 0; i < d->nvariants; i++) {
      append(names, sizeof names, &len, i ? ", " : "");
      append(names, sizeof names, &len, d->variants[i].isa);
    }
    return q8rt_fail(Q8RT_ERR_ARG, err, errlen, "no variant '%s' in model (has: %s)", force,
                     names);
  }
  for (int i = 0; i < d->nvariants; i++)
    if ((d->variants[i].features & ~have) == 0) {
      *out = &d->variants[i];
      return Q8RT_OK;
    }
  return lacks(&d->variants[0], have, "no variant of the model runs on this CPU: ", err, errlen);
}

/* --- Models -------------------------------------------------------------- */

/* An integer setting from the environment: `dflt` when unset or empty, an
 * error naming the variable when it is not a number from lo to hi. */
static q8rt_status env_long(const char *name, const char *what, long lo, long hi, long dflt,
                            long *out, char *err, size_t errlen) {
  const char *env = getenv(name);
  *out = dflt;
  if (!env || !*env)
    return Q8RT_OK;
  char *end;
  long v = strtol(env, &end, 10);
  while (*end == ' ')
    end++;
  if (end == env || *end || v < lo || v > hi)
    return q8rt_fail(Q8RT_ERR_ARG, err, errlen, "%s: expected %s from %ld to %ld, got '%s'", name,
                     what, lo, hi, env);
  *out = v;
  return Q8RT_OK;
}

/* Check `d`, choose its variant and build the model (which owns neither the
 * dl handle nor the release callback until this succeeds). */
static bool scratch_bytes(const q8rt_model *m, int64_t batch, size_t *size);

static q8rt_status make_model(const q8_model_desc *d, const char *where, q8rt_model **out,
                              char *err, size_t errlen) {
  const q8_variant_desc *v = NULL;
  long nthreads, spin_us;
  q8rt_status s = check_desc(d, where, err, errlen);
  if (s == Q8RT_OK)
    s = choose_variant(d, &v, err, errlen);
  if (s == Q8RT_OK)
    s = env_long("Q8_THREADS", "a number of threads", 1, Q8RT_MAX_THREADS, 1, &nthreads, err,
                 errlen);
  if (s == Q8RT_OK)
    s = env_long("Q8_SPIN_US", "microseconds", 0, Q8RT_MAX_SPIN_US, Q8RT_DEFAULT_SPIN_US,
                 &spin_us, err, errlen);
  if (s != Q8RT_OK)
    return s;
  q8rt_model *m = calloc(1, sizeof *m);
  if (!m)
    return q8rt_fail(Q8RT_ERR_NOMEM, err, errlen, "out of memory");
  m->desc = d;
  m->variant = v;
  m->nthreads = 1;
  m->spin_ns = (int64_t)spin_us * 1000;
  scratch_bytes(m, 1, &m->scratch_size);
  pthread_mutex_init(&m->scratch_mu, NULL);
  if (nthreads > 1) {
    s = q8rt_pool_create((int)nthreads, m->spin_ns, &m->pool, err, errlen);
    if (s != Q8RT_OK) {
      pthread_mutex_destroy(&m->scratch_mu);
      free(m);
      return s;
    }
    m->nthreads = (int)nthreads;
  }
  *out = m;
  return Q8RT_OK;
}

Q8RT_API q8rt_status q8rt_load(const char *path, q8rt_model **out, char *err, size_t errlen) {
  if (out)
    *out = NULL;
  if (!path)
    return q8rt_fail(Q8RT_ERR_ARG, err, errlen, "q8rt_load: path is NULL");
  if (!out)
    return q8rt_fail(Q8RT_ERR_ARG, err, errlen, "q8rt_load: out is NULL");
  if (!*path)
    return q8rt_fail(Q8RT_ERR_ARG, err, errlen, "q8rt_load: path is empty");

  q8rt_status s = q8rt_check_elf(path, err, errlen);
  if (s != Q8RT_OK)
    return s;
  /* dlopen searches the library path for a name without a slash; a model is
   * a file, so "model.so" means ./model.so. */
  char *file = NULL;
  if (!strchr(path, '/')) {
    file = malloc(strlen(path) + 3);
    if (!file)
      return q8rt_fail(Q8RT_ERR_NOMEM, err, errlen, "out of memory");
    strcpy(file, "./");
    strcat(file, path);
  }
  void *dl = dlopen(file ? file : path, RTLD_NOW | RTLD_LOCAL);
  if (!dl) {
    /* dlerror() says "<file>: <reason>"; keep the reason. */
    const char *why = dlerror();
    const char *used = file ? file : path;
    size_t ulen = strlen(used);
    if (!why)
      why = "unknown error";
    else if (strncmp(why, used, ulen) == 0 && strncmp(why + ulen, ": ", 2) == 0)
      why += ulen + 2;
    q8rt_fail(Q8RT_ERR_LOAD, err, errlen, "cannot load '%s': %s", path, why);
    free(file);
    return Q8RT_ERR_LOAD;
  }
  free(file);
  dlerror();
  const q8_model_desc *d = dlsym(dl, "q8_model");
  if (!d) {
    dlclose(dl);
    return q8rt_fail(Q8RT_ERR_FORMAT, err, errlen,
                     "not a q8c model: '%s' does not export q8_model", path);
  }
  size_t wlen = strlen(path) + 3;
  char *where = malloc(wlen);
  if (!where) {
    dlclose(dl);
    return q8rt_fail(Q8RT_ERR_NOMEM, err, errlen, "out of memory");
  }
  snprintf(where, wlen, "'%s'", path);
  s = make_model(d, where, out, err, errlen);
  free(where);
  if (s != Q8RT_OK) {
    dlclose(dl);
    return s;
  }
  (*out)->dl = dl;
  /* A library compiled with --weights-out: its weights file, before any run. */
  const q8_weights_desc *w = dlsym(dl, "q8_weights");
  if (w && (s = q8rt_weights_attach(w, path, err, errlen)) != Q8RT_OK) {
    q8rt_free(*out);
    *out = NULL;
    return s;
  }
  (*out)->weights = w;
  clear_err(err, errlen);
  return Q8RT_OK;
}

Q8RT_API q8rt_status q8rt_model_from_desc(const q8_model_desc *desc, void (*release)(void *),
                                          void *release_ctx, q8rt_model **out, char *err,
                                          size_t errlen) {
  if (out)
    *out = NULL;
  if (!desc)
    return q8rt_fail(Q8RT_ERR_ARG, err, errlen, "q8rt_model_from_desc: desc is NULL");
  if (!out)
    return q8rt_fail(Q8RT_ERR_ARG, err, errlen, "q8rt_model_from_desc: out is NULL");
  q8rt_status s = make_model(desc, "the descriptor", out, err, errlen);
  if (s != Q8RT_OK)
    return s;
  (*out)->release = release;
  (*out)->release_ctx = release_ctx;
  clear_err(err, errlen);
  return Q8RT_OK;
}

Q8RT_API void q8rt_free(q8rt_model *m) {
  if (!m)
    return;
  q8rt_pool_destroy(m->pool);
  for (scratch_buf *b = m->scratch_free, *next; b; b = next) {
    next = b->next;
    free(b);
  }
  pthread_mutex_destroy(&m->scratch_mu);
  q8rt_weights_detach(m->weights);
  if (m->dl)
    dlclose(m->dl);
  if (m->release)
    m->release(m->release_ctx);
  free(m);
}

/* --- Queries ------------------------------------------------------------- */

Q8RT_API int q8rt_num_inputs(const q8rt_model *m) { return m ? m->desc->ninputs : -1; }
Q8RT_API int q8rt_num_outputs(const q8rt_model *m) { return m ? m->desc->noutputs : -1; }

Q8RT_API const q8_tensor_desc *q8rt_input(const q8rt_model *m, int i) {
  return m && i >= 0 && i < m->desc->ninputs ? &m->desc->inputs[i] : NULL;
}

Q8RT_API const q8_tensor_desc *q8rt_output(const q8rt_model *m, int i) {
  return m && i >= 0 && i < m->desc->noutputs ? &m->desc->outputs[i] : NULL;
}

Q8RT_API const char *q8rt_variant(const q8rt_model *m) { return m ? m->variant->isa : NULL; }
Q8RT_API const q8_model_desc *q8rt_desc(const q8rt_model *m) { return m ? m->desc : NULL; }
Q8RT_API int q8rt_num_threads(const q8rt_model *m) { return m ? m->nthreads : -1; }

Q8RT_API int64_t q8rt_tensor_numel(const q8_tensor_desc *t) {
  if (!t || t->rank < 0 || t->rank > Q8_MODEL_MAX_RANK)
    return -1;
  /* The caller may pass any descriptor, not only a checked model's: a
   * negative dimension or a product past int64 is -1, not an overflow. */
  int64_t n = 1;
  for (int d = 0; d < t->rank; d++) {
    if (t->dims[d] < 0 || (t->dims[d] != 0 && n > INT64_MAX / t->dims[d]))
      return -1;
    n *= t->dims[d];
  }
  return n;
}

/* --- Running ------------------------------------------------------------- */

Q8RT_API q8rt_status q8rt_set_threads(q8rt_model *m, int n, char *err, size_t errlen) {
  if (!m)
    return q8rt_fail(Q8RT_ERR_ARG, err, errlen, "q8rt_set_threads: model is NULL");
  if (n < 1 || n > Q8RT_MAX_THREADS)
    return q8rt_fail(Q8RT_ERR_ARG, err, errlen,
                     "q8rt_set_threads: %d threads (expected 1 to %d)", n, Q8RT_MAX_THREADS);
  if (n != m->nthreads) {
    q8rt_pool *pool = NULL;
    if (n > 1) {
      q8rt_status s = q8rt_pool_create(n, m->spin_ns, &pool, err, errlen);
      if (s != Q8RT_OK)
        return s;
    }
    q8rt_pool_destroy(m->pool);
    m->pool = pool;
    m->nthreads = n;
  }
  clear_err(err, errlen);
  return Q8RT_OK;
}

/* A buffer of at least *size bytes (a multiple of 64): a free one when it
 * is large enough, else a new one (a run-time-batch model's scratch grows
 * with the batch); *size becomes its size. The header (next, size) is the
 * run's to overwrite: scratch_put writes it again. */
static void *scratch_get(q8rt_model *m, size_t *size) {
  pthread_mutex_lock(&m->scratch_mu);
  scratch_buf *b = m->scratch_free;
  if (b)
    m->scratch_free = b->next;
  pthread_mutex_unlock(&m->scratch_mu);
  if (b && b->size < *size) {
    free(b);
    b = NULL;
  }
  if (b)
    *size = b->size;
  else if ((b = aligned_alloc(64, *size)))
    b->size = *size;
  return b;
}

/* Give back a buffer of `size` bytes (the run overwrote its header). */
static void scratch_put(q8rt_model *m, void *p, size_t size) {
  scratch_buf *b = p;
  b->size = size;
  pthread_mutex_lock(&m->scratch_mu);
  b->next = m->scratch_free;
  m->scratch_free = b;
  pthread_mutex_unlock(&m->scratch_mu);
}

/* The scratch bytes of a run at `batch` (the batch checked), rounded up to
 * 64 and to room for a scratch_buf; false when it passes SIZE_MAX / 2. */
static bool scratch_bytes(const q8rt_model *m, int64_t batch, size_t *size) {
  const q8_model_desc *d = m->desc;
  uint64_t need = (uint64_t)d->scratch_bytes, per = (uint64_t)d->scratch_bytes_per_batch;
  if (d->max_batch > 0 && batch > 1) {
    if (per && (uint64_t)(batch - 1) > (SIZE_MAX / 2 - need) / per)
      return false;
    need += (uint64_t)(batch - 1) * per;
  }
  if (need == 0) {
    *size = 0;
    return true;
  }
  if (need < sizeof(scratch_buf))
    need = sizeof(scratch_buf);
  *size = (size_t)((need + 63) & ~(uint64_t)63);
  return true;
}

/* q8rt_run, q8rt_run_quantized and their _dims forms: the same checks and
 * scratch, another entry point; `batch` is 1 for a fixed-shape model. */
q8rt_status q8rt_run_entry(q8rt_model *m, bool quantized, int64_t batch, const char *fn,
                           int ninputs, const void *const *inputs, int noutputs,
                           void *const *outputs, char *err, size_t errlen) {
  if (!m)
    return q8rt_fail(Q8RT_ERR_ARG, err, errlen, "%s: model is NULL", fn);
  const q8_model_desc *d = m->desc;
  if (ninputs != d->ninputs)
    return q8rt_fail(Q8RT_ERR_SHAPE, err, errlen, "%s: %d input%s given, the model has %d", fn,
                     ninputs, ninputs == 1 ? "" : "s", (int)d->ninputs);
  if (noutputs != d->noutputs)
    return q8rt_fail(Q8RT_ERR_SHAPE, err, errlen, "%s: %d output%s given, the model has %d", fn,
                     noutputs, noutputs == 1 ? "" : "s", (int)d->noutputs);
  if (d->ninputs > 0 && !inputs)
    return q8rt_fail(Q8RT_ERR_ARG, err, errlen, "%s: inputs is NULL (the model has %d)", fn,
                     (int)d->ninputs);
  for (int i = 0; i < d->ninputs; i++)
    if (!inputs[i])
      return q8rt_fail(Q8RT_ERR_ARG, err, errlen, "%s: inputs[%d] ('%s') is NULL", fn, i,
                       d->inputs[i].name);
  if (!outputs)
    return q8rt_fail(Q8RT_ERR_ARG, err, errlen, "%s: outputs is NULL (the model has %d)", fn,
                     (int)d->noutputs);
  for (int i = 0; i < d->noutputs; i++)
    if (!outputs[i])
      return q8rt_fail(Q8RT_ERR_ARG, err, errlen, "%s: outputs[%d] ('%s') is NULL", fn, i,
                       d->outputs[i].name);
  size_t size = m->scratch_size;
  if (d->max_batch > 0 && !scratch_bytes(m, batch, &size))
    return q8rt_fail(Q8RT_ERR_NOMEM, err, errlen, "%s: batch %lld needs more scratch than fits",
                     fn, (long long)batch);
  void *scratch = NULL;
  if (size) {
    scratch = scratch_get(m, &size);
    if (!scratch)
      return q8rt_fail(Q8RT_ERR_NOMEM, err, errlen, "%s: cannot allocate %zu bytes of scratch",
                       fn, size);
  }
  q8_entry_fn entry = quantized ? m->variant->run_quantized : m->variant->run;
  int rc = entry(q8rt_pool_threads(m->pool), inputs, outputs, scratch, batch);
  if (scratch)
    scratch_put(m, scratch, size);
  if (rc >= Q8_RUN_ERR_INPUT_ID && rc - Q8_RUN_ERR_INPUT_ID < d->ninputs)
    return q8rt_fail(Q8RT_ERR_RUN, err, errlen,
                     "%s: input '%s' holds a token id outside the embedding table (gather); "
                     "ids must be in [0, rows of the table)",
                     fn, d->inputs[rc - Q8_RUN_ERR_INPUT_ID].name);
  if (rc == Q8_RUN_ERR_ID)
    return q8rt_fail(Q8RT_ERR_RUN, err, errlen,
                     "%s: a token id computed from the inputs is outside the embedding table "
                     "(gather)", fn);
  if (rc != 0)
    return q8rt_fail(Q8RT_ERR_RUN, err, errlen, "model variant %s failed (its %sentry returned %d)",
                     m->variant->isa, quantized ? "quantized " : "", rc);
  clear_err(err, errlen);
  return Q8RT_OK;
}

Q8RT_API q8rt_status q8rt_run(q8rt_model *m, int ninputs, const void *const *inputs,
                              int noutputs, void *const *outputs, char *err, size_t errlen) {
  return q8rt_run_entry(m, false, 1, "q8rt_run", ninputs, inputs, noutputs, outputs, err,
                        errlen);
}

Q8RT_API q8rt_status q8rt_run_quantized(q8rt_model *m, int ninputs, const void *const *inputs,
                                        int noutputs, void *const *outputs, char *err,
                                        size_t errlen) {
  return q8rt_run_entry(m, true, 1, "q8rt_run_quantized", ninputs, inputs, noutputs, outputs,
                        err, errlen);
}
