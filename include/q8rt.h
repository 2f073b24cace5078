/* q8rt.h: the q8c runtime, the small library (libc, libdl and pthreads only)
 * that loads a compiled model and runs it.
 *
 * A model is a shared library written by `q8c model.ir -o model.so` (or a
 * descriptor the JIT built in memory) exporting a q8_model_desc (q8model.h):
 * its inputs and outputs, and one entry point per instruction-set variant,
 * best first. q8rt_load checks the descriptor, picks the first variant this
 * CPU can execute, and q8rt_run calls it with scratch memory and a thread
 * pool.
 *
 *   q8rt_model *m;
 *   char err[256];
 *   if (q8rt_load("mlp.so", &m, err, sizeof err) != Q8RT_OK) { puts(err); ... }
 *   const void *in[] = {x};
 *   void *out[] = {y};
 *   if (q8rt_run(m, in, out, err, sizeof err) != Q8RT_OK) { puts(err); ... }
 *   q8rt_free(m);
 *
 * Every function that can fail returns a q8rt_status and, when the caller
 * passes a buffer (err, errlen), a one-line message without a trailing
 * newline; err may be NULL. Nothing here prints, exits or aborts, and bad
 * arguments (NULL pointers, out-of-range indices) are reported, not crashed
 * on.
 *
 * Environment variables (read by q8rt_load and q8rt_model_from_desc):
 *   Q8_THREADS=n        threads per model, caller included (default 1).
 *   Q8_SPIN_US=n        how long idle worker threads spin, waiting for the
 *                       next parallel loop, before they sleep (default 50).
 *   Q8_ISA=name         force the variant with this isa name ("avx2"); the
 *                       load fails if the model has none or the CPU cannot
 *                       run it.
 *   Q8_CPU_FEATURES=a,b for tests: pretend the CPU has only these features
 *                       (names as q8rt_feature_name gives, or "none"). It
 *                       can only take features away: a feature the CPU lacks
 *                       stays absent, so no variant the CPU cannot execute
 *                       is ever run.
 *
 * Threads: a model's calls may come from several application threads at
 * once (q8rt_run is thread-safe on one model); q8rt_set_threads and q8rt_free
 * must not overlap a q8rt_run on the same model. */
#ifndef Q8RT_H
#define Q8RT_H

#include <stddef.h>
#include <stdint.h>

#include "q8model.h"

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define Q8RT_API __attribute__((visibility("default")))
#else
#define Q8RT_API
#endif

typedef enum {
  Q8RT_F32 = 1,
  Q8RT_I8 = 2,
  Q8RT_U8 = 3,
  Q8RT_I32 = 4,
} q8rt_dtype;

typedef enum {
  Q8RT_OK = 0,
  Q8RT_ERR_ARG,     /* a bad argument or environment setting (Q8_ISA, Q8_THREADS, ...) */
  Q8RT_ERR_LOAD,    /* the file could not be loaded (dlopen failed) */
  Q8RT_ERR_FORMAT,  /* not a q8c model, or its descriptor is malformed */
  Q8RT_ERR_VERSION, /* built by a q8c with another model ABI */
  Q8RT_ERR_CPU,     /* no variant of the model runs on this CPU */
  Q8RT_ERR_NOMEM,   /* out of memory, or a thread could not be started */
  Q8RT_ERR_SHAPE,   /* reserved: a tensor's shape does not match the model's */
  Q8RT_ERR_RUN,     /* the model's entry point reported a failure (returned non-zero) */
} q8rt_status;

typedef struct q8rt_model q8rt_model;

/* The enumerator's name ("Q8RT_ERR_CPU"), or "Q8RT_ERR_?" for other values. */
Q8RT_API const char *q8rt_status_name(q8rt_status s);

/* --- Loading ------------------------------------------------------------ */

/* Load the model library at `path` (a file path: "model.so" means the file in
 * the current directory, not a search of the library path). On success
 * stores a new model in *out; on failure *out is NULL (when out is not) and
 * nothing stays loaded. Errors: Q8RT_ERR_ARG, _LOAD, _FORMAT, _VERSION,
 * _CPU, _NOMEM. */
Q8RT_API q8rt_status q8rt_load(const char *path, q8rt_model **out, char *err, size_t errlen);

/* The same checks and variant choice for a descriptor already in memory (the
 * JIT uses it). The descriptor and everything it points to must stay valid
 * until q8rt_free, which then calls release(release_ctx) if release is not
 * NULL. On failure release is not called: the caller still owns the
 * descriptor. */
Q8RT_API q8rt_status q8rt_model_from_desc(const q8_model_desc *desc, void (*release)(void *),
                                          void *release_ctx, q8rt_model **out, char *err,
                                          size_t errlen);

/* Stop the model's threads, then unload the library (or call release).
 * NULL is accepted. */
Q8RT_API void q8rt_free(q8rt_model *m);

/* --- Queries (all return -1 or NULL for a NULL model or a bad index) ----- */

Q8RT_API int q8rt_num_inputs(const q8rt_model *m);
Q8RT_API int q8rt_num_outputs(const q8rt_model *m);
Q8RT_API const q8_tensor_desc *q8rt_input(const q8rt_model *m, int i);
Q8RT_API const q8_tensor_desc *q8rt_output(const q8rt_model *m, int i);
/* The isa name of the variant chosen ("avx2"). */
Q8RT_API const char *q8rt_variant(const q8rt_model *m);
/* The model's descriptor (its name, compiler, every variant). */
Q8RT_API const q8_model_desc *q8rt_desc(const q8rt_model *m);
/* Elements in a tensor: the product of its dims (1 for rank 0), or -1 for
 * NULL, a bad rank, a negative dimension or a product past int64. */
Q8RT_API int64_t q8rt_tensor_numel(const q8_tensor_desc *t);

/* --- Running ------------------------------------------------------------ */

/* Run the model once. inputs[i] points to input i and outputs[i] to the
 * memory for output i, dense row-major with the dims and dtype that
 * q8rt_input / q8rt_output give (inputs may be NULL for a model without
 * inputs). The arrays must have q8rt_num_inputs(m) and q8rt_num_outputs(m)
 * entries: a C array carries no length, so a shorter one is read past its
 * end (NULL entries are reported). Scratch memory is allocated here (64-byte aligned, reused across
 * calls). Several threads may call q8rt_run on one model at once: each call
 * gets its own scratch; the model's thread pool serves one call at a time and
 * the others run on their calling thread. Errors: Q8RT_ERR_ARG, _NOMEM,
 * _RUN. */
Q8RT_API q8rt_status q8rt_run(q8rt_model *m, const void *const *inputs, void *const *outputs,
                              char *err, size_t errlen);

/* Run the model's quantized entry, for pipelines that hold or want int8
 * tensors: every input and output whose q8_tensor_desc has qdtype U8 or I8
 * (an f32 tensor with a quantized form) is passed in that type instead,
 * real = (q - zero_point) * scale; the others as q8rt_run takes them. For an
 * f32 input x and output y, the quantized entry computes exactly
 * quantize(y) from quantize(x) (docs/quantization.md, "The quantized
 * boundary"), without the f32 quantize / dequantize steps. Same rules and
 * errors as q8rt_run. */
Q8RT_API q8rt_status q8rt_run_quantized(q8rt_model *m, const void *const *inputs,
                                        void *const *outputs, char *err, size_t errlen);

/* Use n threads (the calling thread plus n - 1 workers, 1 <= n <= 256) for
 * this model's runs. The default is Q8_THREADS, else 1: a library should not
 * start threads nobody asked for (the application may already run one model
 * per core), so parallelism is opt-in. Errors: Q8RT_ERR_ARG (NULL model, n
 * out of range), Q8RT_ERR_NOMEM (a thread could not be started: the model
 * keeps its previous threads). */
Q8RT_API q8rt_status q8rt_set_threads(q8rt_model *m, int n);
/* The number of threads the model uses, or -1 for NULL. */
Q8RT_API int q8rt_num_threads(const q8rt_model *m);

/* --- CPU features ------------------------------------------------------- */

/* The Q8_FEATURE_* bits of this CPU (cpuid and xgetbv on x86_64, so a
 * feature whose registers the OS does not save is absent; getauxval on
 * aarch64), restricted by Q8_CPU_FEATURES when it is set (unknown names in
 * it are ignored here; q8rt_load reports them). */
Q8RT_API uint64_t q8rt_cpu_features(void);

/* The name of one Q8_FEATURE_* bit ("avx512vnni"), or NULL if `bit` is not a
 * single known feature. */
Q8RT_API const char *q8rt_feature_name(uint64_t bit);

#ifdef __cplusplus
}
#endif

#endif
