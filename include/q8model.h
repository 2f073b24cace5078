/* q8model.h: the binary interface of a model compiled by q8c.
 *
 * A model shared library (`q8c model.ir -o model.so`), or a model compiled in
 * memory by the JIT, exports one constant, `q8_model`, a q8_model_desc. It
 * names the model's inputs and outputs and lists one entry point per
 * instruction-set variant compiled in, best first. The runtime (q8rt.h)
 * reads it; an application can also use it directly with nothing but this
 * header and the .so (see the header `q8c --emit=header` writes).
 *
 * Everything here is plain data and function pointers, so the generated code
 * needs no library of its own: threads, when wanted, are lent by the caller
 * through q8_threads. */
#ifndef Q8MODEL_H
#define Q8MODEL_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define Q8_MODEL_MAGIC 0x4d443851u /* "Q8DM" little-endian */
#define Q8_MODEL_ABI_VERSION 4
#define Q8_MODEL_MAX_RANK 8

/* Element types (q8_tensor_desc.dtype and .qdtype). */
enum { Q8_DTYPE_F32 = 1, Q8_DTYPE_I8 = 2, Q8_DTYPE_U8 = 3, Q8_DTYPE_I32 = 4, Q8_DTYPE_I64 = 5 };

/* What an entry returns (q8_entry_fn): 0, or why the run stopped. An
 * embedding lookup (gather) found a token id outside its table: in model
 * input i (Q8_RUN_ERR_INPUT_ID + i), or in ids computed from the inputs
 * (Q8_RUN_ERR_ID). Nothing is read out of bounds; the outputs are not
 * complete. */
enum { Q8_RUN_OK = 0, Q8_RUN_ERR_ID = 2, Q8_RUN_ERR_INPUT_ID = 0x100 };

/* CPU features a variant needs (q8_variant_desc.features). */
enum {
  Q8_FEATURE_SSE41 = 1u << 0,
  Q8_FEATURE_AVX2 = 1u << 1,
  Q8_FEATURE_FMA = 1u << 2,
  Q8_FEATURE_AVX512F = 1u << 3,
  Q8_FEATURE_AVX512BW = 1u << 4,
  Q8_FEATURE_AVX512VL = 1u << 5,
  Q8_FEATURE_AVX512VNNI = 1u << 6,
  Q8_FEATURE_AVXVNNI = 1u << 7,
  Q8_FEATURE_F16C = 1u << 8,
  Q8_FEATURE_NEON = 1u << 16,
  Q8_FEATURE_DOTPROD = 1u << 17,
  Q8_FEATURE_I8MM = 1u << 18,
};

typedef struct {
  const char *name;
  int32_t dtype;                      /* Q8_DTYPE_*: at the (f32) entry */
  int32_t rank;
  int64_t dims[Q8_MODEL_MAX_RANK];    /* the batch dimension bound at compile time; in
                                       * a run-time-batch model (max_batch > 0), 1 */
  /* At the quantized entry: the element type (Q8_DTYPE_U8 or _I8 for an f32
   * tensor that has a quantized form, else dtype), and the form's
   * parameters, real = (q - zero_point) * scale (scale 0 when it has none). */
  int32_t qdtype;
  float scale;
  int32_t zero_point;
  /* Bit d set: dim d is the batch `?`, bound at each call in a run-time-batch
   * model (q8_model_desc.max_batch > 0); 0 in a fixed-shape one. With named
   * dims (q8_model_desc.nnamed > 0) the first nnamed bits: dim j is
   * named[j]. */
  uint32_t batch_dims;
} q8_tensor_desc;

/* A unit of parallel work: fn(args, i) for one i in [0, n). */
typedef void (*q8_task_fn)(void *args, int64_t i);

/* Threads lent by the caller. parallel_for runs fn(args, i) for every i in
 * [0, n), possibly on several threads, and returns when all have finished. */
typedef struct q8_threads {
  void (*parallel_for)(const struct q8_threads *self, q8_task_fn fn, void *args, int64_t n);
  void *impl;
} q8_threads;

/* Run the model once. inputs[i] and outputs[i] are dense row-major tensors
 * as the descriptor gives them, with every batch dim (batch_dims) `batch`
 * long; scratch is scratch_bytes + (batch - 1) * scratch_bytes_per_batch
 * bytes of memory aligned to 64 bytes, private to this call; threads may be
 * NULL (run on the calling thread). A fixed-shape model (max_batch 0)
 * ignores `batch`; a run-time-batch one needs 1 <= batch <= max_batch (not
 * checked here: q8rt checks it). Returns Q8_RUN_OK (0), or a Q8_RUN_ERR_*
 * status. */
typedef int (*q8_entry_fn)(const q8_threads *threads, const void *const *inputs,
                           void *const *outputs, void *scratch, int64_t batch);

typedef struct {
  const char *isa;        /* "avx512vnni", "avxvnni", "avx2", "generic", ... */
  uint64_t features;      /* Q8_FEATURE_* bits this variant's code uses */
  q8_entry_fn run;        /* tensors as q8_tensor_desc.dtype gives them */
  q8_entry_fn run_quantized; /* tensors as q8_tensor_desc.qdtype gives them */
} q8_variant_desc;

typedef struct {
  uint32_t magic;         /* Q8_MODEL_MAGIC */
  uint32_t abi_version;   /* Q8_MODEL_ABI_VERSION */
  const char *name;       /* the model's name in its IR */
  const char *compiler;   /* "q8c 0.1.0" */
  int32_t ninputs, noutputs;
  const q8_tensor_desc *inputs, *outputs;
  int64_t scratch_bytes;
  int32_t nvariants;
  const q8_variant_desc *variants; /* best first */
  /* Run-time batch (ABI 3): 0 when every shape is fixed at compile time;
   * else the largest batch the entries take (INT64_MAX: no limit but
   * memory), the batch dims marked in each tensor's batch_dims. */
  int64_t max_batch;
  int64_t scratch_bytes_per_batch; /* scratch beyond scratch_bytes per batch row past 1 */
  /* Named dims (ABI 4): with a run-time batch whose dims the model names
   * (`f32[B, T, 64]`), their number (0: the one `?`), names and maxima
   * (--max-dim; INT64_MAX: none). Each batched tensor leads with them (its
   * batch_dims bits 0 .. nnamed - 1), and the entries take the product of
   * their values as the batch, each row of it computed alone. */
  int32_t nnamed;
  const char *const *named;
  const int64_t *named_max;
} q8_model_desc;

/* A library compiled with --weights-out also exports `q8_weights`: its
 * kernels' packed weights are in a file of their own (64 bytes of header,
 * "Q8CWGHT1", the payload's size and checksum as u64, then the payload),
 * which the loader maps read-only and whose payload address it stores at
 * *base before any run; refs counts the models using the mapping. A file
 * whose header does not match size and checksum, or shorter than the
 * header and payload, is refused at load. */
#define Q8_WEIGHTS_MAGIC 0x57443851u /* "Q8DW" little-endian */
#define Q8_WEIGHTS_VERSION 1
#define Q8_WEIGHTS_FILE_MAGIC "Q8CWGHT1"
#define Q8_WEIGHTS_HEADER_BYTES 64

typedef struct {
  uint32_t magic;    /* Q8_WEIGHTS_MAGIC */
  uint32_t version;  /* Q8_WEIGHTS_VERSION */
  const char *file;  /* a name in the library's directory, or an absolute path */
  uint64_t size;     /* payload bytes */
  uint64_t checksum; /* FNV-1a 64 over the payload's little-endian 64-bit words */
  const void **base; /* where the loader stores the payload's address */
  int64_t *refs;     /* models using the mapping (the loader's count) */
} q8_weights_desc;

#ifdef __cplusplus
}
#endif

#endif
