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
 *   if (q8rt_run(m, 1, in, 1, out, err, sizeof err) != Q8RT_OK) { puts(err); ... }
 *   q8rt_free(m);
 *
 * The conventions, shared with q8c.h:
 *   - Every function that can fail returns a status (q8rt_status; Q8RT_OK is
 *     0) and a one-line message without a trailing newline. Here the message
 *     goes into the caller's buffer (err, errlen): a runtime call may fail
 *     before there is a model to hold it, and one model serves several
 *     threads at once. err may be NULL; on success it is set to "".
 *   - Arrays are passed with their length (ninputs, inputs), and a length
 *     other than the model's is refused (Q8RT_ERR_SHAPE).
 *   - A NULL handle is accepted by every function: a query returns -1 (a
 *     number) or NULL (a pointer), a fallible function Q8RT_ERR_ARG, a free
 *     does nothing. Out-of-range indices are treated the same way.
 *   - Running out of memory is Q8RT_ERR_NOMEM, never an abort. Nothing here
 *     prints or exits.
 *   - q8rt_version() tells the library's version, for comparison with
 *     Q8_VERSION_NUMBER, the version of this header.
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

/* The version of q8c (compiler and runtime) this header belongs to; CMake
 * reads it from here. Q8_VERSION_NUMBER is 100 for 0.1.0, as lua_version()
 * gives 504 for 5.4. */
#define Q8_VERSION_MAJOR 0
#define Q8_VERSION_MINOR 1
#define Q8_VERSION_PATCH 0
#define Q8_VERSION_NUMBER (Q8_VERSION_MAJOR * 10000 + Q8_VERSION_MINOR * 100 + Q8_VERSION_PATCH)

typedef enum {
  Q8RT_OK = 0,
  Q8RT_ERR_ARG,     /* a bad argument or environment setting (Q8_ISA, Q8_THREADS, ...) */
  Q8RT_ERR_LOAD,    /* the file could not be loaded (dlopen failed) */
  Q8RT_ERR_FORMAT,  /* not a q8c model, or its descriptor is malformed */
  Q8RT_ERR_VERSION, /* built by a q8c with another model ABI */
  Q8RT_ERR_CPU,     /* no variant of the model runs on this CPU */
  Q8RT_ERR_NOMEM,   /* out of memory, or a thread could not be started */
  Q8RT_ERR_SHAPE,   /* the tensors passed do not match the model's: ninputs or
                     * noutputs is not the model's number */
  Q8RT_ERR_RUN,     /* the model's entry point reported a failure (returned non-zero), e.g.
                     * a token id outside an embedding table (Q8_RUN_ERR_*, q8model.h) */
} q8rt_status;

typedef struct q8rt_model q8rt_model;

/* The enumerator's name ("Q8RT_ERR_CPU"), or "Q8RT_ERR_?" for other values. */
Q8RT_API const char *q8rt_status_name(q8rt_status s);

/* --- Versions ----------------------------------------------------------- */

/* The library's version as a number (Q8_VERSION_NUMBER when it was built),
 * which may differ from the header's an application was compiled with. */
Q8RT_API int q8rt_version(void);
/* The same as text: "0.1.0". */
Q8RT_API const char *q8rt_version_string(void);
/* The model ABI this library loads (Q8_MODEL_ABI_VERSION when it was built):
 * a model whose q8_model_desc.abi_version differs is refused with
 * Q8RT_ERR_VERSION. */
Q8RT_API int q8rt_model_abi_version(void);

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

/* --- Queries (all return -1 or NULL for a NULL model or a bad index) ---- */

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

/* Run the model once. inputs has ninputs entries, which must be
 * q8rt_num_inputs(m), and outputs noutputs entries, q8rt_num_outputs(m):
 * inputs[i] points to input i and outputs[i] to the memory for output i,
 * dense row-major with the dims and dtype that q8rt_input / q8rt_output give
 * (inputs may be NULL when ninputs is 0). Each buffer must hold
 * q8rt_tensor_numel elements of its dtype: a pointer carries no size. Scratch
 * memory is allocated here (64-byte aligned, reused across calls). Several
 * threads may call q8rt_run on one model at once: each call gets its own
 * scratch; the model's thread pool serves one call at a time and the others
 * run on their calling thread. Errors: Q8RT_ERR_ARG (NULL model, array or
 * entry), _SHAPE (ninputs or noutputs is not the model's), _NOMEM, _RUN. */
Q8RT_API q8rt_status q8rt_run(q8rt_model *m, int ninputs, const void *const *inputs,
                              int noutputs, void *const *outputs, char *err, size_t errlen);

/* Run the model's quantized entry, for pipelines that hold or want int8
 * tensors: every input and output whose q8_tensor_desc has qdtype U8 or I8
 * (an f32 tensor with a quantized form) is passed in that type instead,
 * real = (q - zero_point) * scale; the others as q8rt_run takes them. For an
 * f32 input x and output y, the quantized entry computes exactly
 * quantize(y) from quantize(x) (docs/quantization.md, "The quantized
 * boundary"), without the f32 quantize / dequantize steps. Same rules and
 * errors as q8rt_run. */
Q8RT_API q8rt_status q8rt_run_quantized(q8rt_model *m, int ninputs, const void *const *inputs,
                                        int noutputs, void *const *outputs, char *err,
                                        size_t errlen);

/* --- Run-time batch ----------------------------------------------------- */

/* A model compiled without --batch takes any batch from 1 to its maximum
 * (--max-batch; no limit by default) at every call: its descriptor's
 * max_batch is > 0 and each tensor's batch_dims marks its `?` dims, which
 * q8rt_input / q8rt_output give as 1. q8rt_run and q8rt_run_quantized run it
 * at batch 1; q8rt_run_dims takes the inputs' actual shapes. */

/* The largest batch the model takes (INT64_MAX when unlimited), 0 for a
 * fixed-shape model (compiled with --batch N), -1 for NULL. */
Q8RT_API int64_t q8rt_max_batch(const q8rt_model *m);

/* Tensor t's dims with every batch dim set to `batch`: writes t->rank dims
 * into dims and returns the rank, or -1 for NULL arguments or a bad rank. */
Q8RT_API int q8rt_tensor_dims(const q8_tensor_desc *t, int64_t batch, int64_t *dims);

/* Named dims (docs/ir.md, "Named dims"): a model whose shapes lead with
 * `f32[B, T, 64]` has q8rt_desc(m)->nnamed > 0, and q8rt_run_dims reads B
 * and T from the inputs (each at least 1, at most its --max-dim, the same
 * in every input, their product at most q8rt_max_batch). Tensor t's dims
 * with named dim j set to values[j]: writes t->rank dims and returns the
 * rank, or -1. (q8rt_tensor_dims gives batch for the first and 1 for the
 * others: the same bytes.) */
Q8RT_API int q8rt_tensor_dims_named(const q8rt_model *m, const q8_tensor_desc *t,
                                    const int64_t *values, int64_t *dims);

/* Run the model on inputs of the shapes input_dims gives: input_dims[i]
 * points to input i's dims (as many as its rank). The batch is the length of
 * the inputs' batch dims; every other dim must be the model's. outputs[i]
 * must hold output i at that batch (q8rt_tensor_dims). A fixed-shape model
 * takes only its own shapes. Errors: those of q8rt_run, and Q8RT_ERR_SHAPE
 * for a dim other than the model's, batch dims that disagree, a batch of 0,
 * or one above q8rt_max_batch. */
Q8RT_API q8rt_status q8rt_run_dims(q8rt_model *m, int ninputs, const void *const *inputs,
                                   const int64_t *const *input_dims, int noutputs,
                                   void *const *outputs, char *err, size_t errlen);
/* The same through the quantized entry (q8rt_run_quantized). */
Q8RT_API q8rt_status q8rt_run_quantized_dims(q8rt_model *m, int ninputs,
                                             const void *const *inputs,
                                             const int64_t *const *input_dims, int noutputs,
                                             void *const *outputs, char *err, size_t errlen);

/* Use n threads (the calling thread plus n - 1 workers, 1 <= n <= 256) for
 * this model's runs. The default is Q8_THREADS, else 1: a library should not
 * start threads nobody asked for (the application may already run one model
 * per core), so parallelism is opt-in. Errors: Q8RT_ERR_ARG (NULL model, n
 * out of range), Q8RT_ERR_NOMEM (a thread could not be started: the model
 * keeps its previous threads). */
Q8RT_API q8rt_status q8rt_set_threads(q8rt_model *m, int n, char *err, size_t errlen);
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
