/* q8c.h: the q8c compiler as a library, for applications that embed it.
 *
 * A q8c_module is a model read from text IR (docs/ir.md) together with its
 * weights. Modules are independent: separate threads may use separate
 * modules at the same time.
 *
 * The path from text to running code:
 *
 *   q8c_module *m;
 *   if (q8c_parse_file("model.ir", &m) != Q8C_OK) { puts(q8c_module_error(m)); ... }
 *   q8c_quant_options qo = {.calib_path = "samples.npy"};
 *   q8c_quantize(m, &qo);                              // calibrate, quantize, fold
 *   q8rt_model *rt;
 *   q8c_compile(m, NULL, &rt);                         // machine code, in memory
 *   q8rt_run(rt, 1, inputs, 1, outputs, err, sizeof err);  // q8rt.h
 *   q8rt_free(rt); q8c_module_free(m);
 *
 * examples/embed.c is a complete program.
 *
 * The conventions, shared with q8rt.h:
 *   - Every function that can fail returns a status (q8c_status; Q8C_OK is
 *     0) and a message. Here the message is kept in the module, formatted
 *     `file:line:col: error: ...` with the source line and a caret, for
 *     q8c_module_error(): a module is used by one thread at a time, and its
 *     errors point into its text. (q8rt.h, whose calls may fail before there
 *     is a model and whose models serve several threads, writes its messages
 *     into a caller's buffer instead.) A module keeps its first error: every
 *     later fallible call on it returns that error's status and does nothing.
 *   - Arrays are passed with their length (ninputs, inputs), and a length
 *     other than the module's is refused (Q8C_ERR_SHAPE).
 *   - A NULL handle is accepted by every function: a query returns -1 (a
 *     number) or NULL (a pointer), a fallible function Q8C_ERR_ARG, a free
 *     does nothing. Out-of-range indices are treated the same way.
 *   - Running out of memory is Q8C_ERR_NOMEM with "out of memory" in the
 *     message, never an abort; the module then holds no more memory than
 *     q8c_module_free releases. Nothing here prints or exits.
 *   - q8c_version() tells the library's version, for comparison with
 *     Q8_VERSION_NUMBER (q8rt.h), the version of this header.
 *
 * Memory: no buffer of model data (a tensor, a weights file, a calibration
 * batch, a compiled model's scratch) may exceed Q8_MAX_TENSOR_BYTES from the
 * environment (default 16G); larger or overflowing shapes are refused with a
 * message before anything is allocated. docs/reliability.md lists what is
 * checked and guaranteed on bad input. */
#ifndef Q8C_H
#define Q8C_H

#include <stdint.h>

#include "q8rt.h"

#ifdef __cplusplus
extern "C" {
#endif

#define Q8C_MAX_RANK 8

typedef enum {
  Q8C_OK = 0,
  Q8C_ERR_ARG,     /* a bad argument: a NULL pointer, an option's unknown value, a
                    * batch size below 1, a module this function cannot take */
  Q8C_ERR_MODEL,   /* an error in the model or its data: syntax, types, weights
                    * file, calibration samples, a value that cannot be quantized */
  Q8C_ERR_SHAPE,   /* the arrays or the batch size do not match the module's:
                    * ninputs or noutputs is not its number, or it was compiled
                    * for another batch size */
  Q8C_ERR_COMPILE, /* code generation failed, or its result cannot run here
                    * (no variant for this CPU) */
  Q8C_ERR_NOMEM,   /* out of memory */
} q8c_status;

typedef struct q8c_module q8c_module;

/* The enumerator's name ("Q8C_ERR_MODEL"), or "Q8C_ERR_?" for other values. */
const char *q8c_status_name(q8c_status s);

/* The library's version as a number (Q8_VERSION_NUMBER when it was built). */
int q8c_version(void);
/* The same as text: "0.1.0". */
const char *q8c_version_string(void);
/* The model ABI of the code q8c_compile and `q8c -o model.so` produce
 * (q8_model_desc.abi_version, Q8_MODEL_ABI_VERSION when it was built). */
int q8c_model_abi_version(void);

/* Parse the model in the file at `path` (its weights file is resolved relative
 * to it): text IR, or an ONNX model (a `.onnx` file, or recognised by its
 * content; docs/import.md), into a new module stored in *out. *out is set whenever memory allowed
 * a module, also on failure: its q8c_module_error() says why, and it must be
 * freed with q8c_module_free. It is NULL only when `out` is NULL (Q8C_ERR_ARG)
 * or no memory was left for a module at all (Q8C_ERR_NOMEM). Errors:
 * Q8C_ERR_ARG (path is NULL), _MODEL (the file cannot be read, or the model
 * is invalid), _NOMEM. */
q8c_status q8c_parse_file(const char *path, q8c_module **out);

/* q8c_parse_file binding an ONNX model's symbolic input dims (dim_param) by
 * name, as `q8c --dim NAME=N` does (docs/import.md): names[i] (1 to 63
 * bytes) takes values[i] (1 to 2^31), for i < ndims (0 to 16; names and
 * values may be NULL when ndims is 0). A name the model does not use is
 * ignored; a symbolic dim left unbound becomes the batch `?` at axis 0 and
 * is an error elsewhere. A text IR file ignores the bindings. Errors as
 * q8c_parse_file's, and Q8C_ERR_ARG for a binding out of those bounds (the
 * module's error says which). */
q8c_status q8c_parse_file_dims(const char *path, int ndims, const char *const *names,
                               const int64_t *values, q8c_module **out);

/* Parse model text held in memory, like q8c_parse_file. `name` is used in
 * error messages and, like a path, locates relative weights files
 * ("dir/model.ir" -> "dir/"); NULL means "<string>". */
q8c_status q8c_parse_string(const char *name, const char *text, q8c_module **out);

/* The first error met, or NULL if the module is fine; "no module" for NULL.
 * Valid until the module is freed. */
const char *q8c_module_error(const q8c_module *m);

/* The module as text IR with every type filled in, stored in *text
 * (malloc'd: free() it; NULL on failure). Errors: Q8C_ERR_ARG, _NOMEM, or the
 * module's first error. */
q8c_status q8c_module_print(q8c_module *m, char **text);

/* Inputs and outputs: count, name, and shape with the batch dimension bound
 * to `batch`. Counts are -1 for NULL; names NULL for NULL or a bad index;
 * shape functions write up to Q8C_MAX_RANK dims and return the rank, or -1
 * for NULL or a bad index. */
int q8c_num_inputs(const q8c_module *m);
int q8c_num_outputs(const q8c_module *m);
const char *q8c_input_name(const q8c_module *m, int i);
const char *q8c_output_name(const q8c_module *m, int i);
int q8c_input_shape(const q8c_module *m, int i, int64_t batch, int64_t *dims);
int q8c_output_shape(const q8c_module *m, int i, int64_t batch, int64_t *dims);

/* Run the model with the f32 reference interpreter. inputs has ninputs
 * entries, which must be q8c_num_inputs(m), outputs noutputs entries,
 * q8c_num_outputs(m): inputs[i] holds input i, dense row-major, with the shape
 * q8c_input_shape(m, i, batch) gives; outputs[i] receives output i likewise.
 * The model's inputs and outputs must be f32. Errors: Q8C_ERR_ARG (NULL
 * arrays or entries, batch < 1, inputs or outputs that are not f32), _SHAPE
 * (counts, or a batch other than the one the module was compiled for),
 * _MODEL (the interpreter failed), _NOMEM. */
q8c_status q8c_run_reference(q8c_module *m, int64_t batch, int ninputs,
                             const float *const *inputs, int noutputs, float *const *outputs);

/* Quantization choices; a zeroed struct gives the defaults. Strings are the
 * values of the command-line options of the same names (q8c --help). */
typedef struct {
  const char *calib_path;    /* samples (.npy or .safetensors); NULL when every
                              * activation has a range, or with dynamic */
  const char *calib_method;  /* "minmax" (default), "ma-minmax", "percentile:P",
                              * "entropy", "mse", "auto" */
  const char *weights;       /* "s8-per-channel" (default), "s8-per-tensor", a
                              * grouped format: "s4-per-group:32", "u4-per-group:G",
                              * "s8-per-group:G" (G 32, 64, 128; ":f32" scales), or
                              * "nf4:G" / "fp4:G" (4-bit, G 32..256, default 64) */
  const char *activations;   /* "u8-asym" (default) or "s8-sym" */
  int dynamic;               /* quantize activations per row at run time */
  const char *keep_float;    /* comma-separated names kept in f32, or NULL */
  /* Accuracy remedies (docs/quantization.md), NULL for none: */
  const char *smooth;        /* SmoothQuant's alpha in [0, 1] ("0.5"), or "" for
                              * the default 0.5 (--smooth); needs calib_path */
  const char *target_sqnr;   /* dB ("40"): the fewest layers in f32 such that
                              * every output meets it on held-back samples */
  const char *max_top1_drop; /* percent ("1"): the same for top-1 agreement */
  const char *outliers;      /* LLM.int8 threshold ("6"), or "" for the default
                              * 6 (--outliers); implies dynamic */
  int double_quant;          /* nf4/fp4: the block maxima quantized to 8 bits */
  /* Per-weight formats overriding `weights`: "@name:FORMAT[,@name:FORMAT]"
   * (docs/quantization.md, "Weight formats"), or NULL. */
  const char *weights_for;
  /* 7-bit weights (ONNX Runtime's reduce_range): int8 weights in [-63, 63]
   * and attention's right operands in a 7-bit window, so that every AVX2
   * GEMM takes the fast vpmaddubsw form (--reduce-range). */
  int reduce_range;
} q8c_quant_options;

/* Run the quantization pipeline on the module (calibrate, quantize,
 * fuse-requant, fold-constants). `o` may be NULL for the defaults. Errors:
 * Q8C_ERR_ARG (an option's value), _MODEL (calibration samples, ranges,
 * values that cannot be quantized), _NOMEM. */
q8c_status q8c_quantize(q8c_module *m, const q8c_quant_options *o);

typedef struct {
  const char *target;        /* "native" (default), or variants: "avx2,avx512vnni" */
  int opt_level;             /* 0..3; 0 in a zeroed struct means the default, 3 */
  int64_t batch;             /* the batch dimension `?`; 0 means 1; Q8C_BATCH_RUNTIME:
                              * bound at each call (q8rt_run_dims) when the model
                              * allows it (docs/ir.md, "Run-time batch"), else 1 */
  int64_t max_batch;         /* with Q8C_BATCH_RUNTIME: the largest batch a call may
                              * take (0: no limit) */
} q8c_compile_options;

#define Q8C_BATCH_RUNTIME ((int64_t)-1)

/* Compile a quantized module to machine code in memory (LLVM ORC) and store
 * a runtime handle in *out, as q8rt_load would for a .so (NULL on failure):
 * run it with q8rt_run, release it with q8rt_free (the module may be freed
 * first). `o` may be NULL for the defaults. This binds the module's batch
 * dimension `?` to o->batch: afterwards the module's shapes are those of
 * that batch size, and q8c_run_reference and further compiles accept only
 * it (a run-time batch, Q8C_BATCH_RUNTIME, binds nothing). Errors: Q8C_ERR_ARG (out is NULL, an unknown target), _SHAPE (another
 * batch size than a previous compile's), _COMPILE, _NOMEM. */
q8c_status q8c_compile(q8c_module *m, const q8c_compile_options *o, q8rt_model **out);

/* Free the module and everything it holds. NULL is accepted. */
void q8c_module_free(q8c_module *m);

#ifdef __cplusplus
}
#endif

#endif
