/* q8c.h: the q8c compiler as a library, for applications that embed it.
 *
 * A q8c_module is a model read from text IR (docs/ir.md) together with its
 * weights. Every function reports failure through its return value and keeps
 * the message, formatted `file:line:col: error: ...`, for q8c_module_error();
 * nothing here prints or exits. Modules are independent: separate threads may
 * use separate modules at the same time.
 *
 * The path from text to running code:
 *
 *   q8c_module *m = q8c_parse_file("model.ir");        // or q8c_parse_string
 *   q8c_quant_options qo = {.calib_path = "samples.npy"};
 *   q8c_quantize(m, &qo);                              // calibrate, quantize, fold
 *   q8rt_model *rt = q8c_compile(m, NULL);             // machine code, in memory
 *   q8rt_run(rt, inputs, outputs, err, sizeof err);    // q8rt.h
 *   q8rt_free(rt); q8c_module_free(m);
 *
 * examples/embed.c is a complete program.
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

typedef struct q8c_module q8c_module;

/* Parse the model in the file at `path` (its weights file is resolved relative
 * to it): text IR, or an ONNX model (a `.onnx` file, or recognised by its
 * content; docs/import.md). Returns a module, or NULL only when out of
 * memory; check q8c_module_error() before using it. */
q8c_module *q8c_parse_file(const char *path);

/* Parse model text held in memory. `name` is used in error messages and, like
 * a path, locates relative weights files ("dir/model.ir" -> "dir/"). */
q8c_module *q8c_parse_string(const char *name, const char *text);

/* The first error met, or NULL if the module is fine. Valid until free. */
const char *q8c_module_error(const q8c_module *m);

/* The module as text IR with every type filled in; malloc'd, free() it.
 * Returns NULL if the module failed or memory ran out. */
char *q8c_module_print(const q8c_module *m);

/* Inputs and outputs: count, name, and shape with the batch dimension bound
 * to `batch`. Shape functions write up to Q8C_MAX_RANK dims and return the
 * rank, or -1 for a bad index. */
int q8c_num_inputs(const q8c_module *m);
int q8c_num_outputs(const q8c_module *m);
const char *q8c_input_name(const q8c_module *m, int i);
const char *q8c_output_name(const q8c_module *m, int i);
int q8c_input_shape(const q8c_module *m, int i, int64_t batch, int64_t *dims);
int q8c_output_shape(const q8c_module *m, int i, int64_t batch, int64_t *dims);

/* Run the model with the f32 reference interpreter. inputs[i] holds input i,
 * dense row-major, with the shape q8c_input_shape(m, i, batch) gives;
 * outputs[i] receives output i likewise (the arrays have q8c_num_inputs and
 * q8c_num_outputs entries: their lengths cannot be checked). The model's
 * inputs and outputs must be f32. Returns 0, or -1 with the message in
 * q8c_module_error(). */
int q8c_run_reference(q8c_module *m, int64_t batch, const float *const *inputs,
                      float *const *outputs);

/* Quantization choices; a zeroed struct gives the defaults. Strings are the
 * values of the command-line options of the same names (q8c --help). */
typedef struct {
  const char *calib_path;    /* samples (.npy or .safetensors); NULL when every
                              * activation has a range, or with dynamic */
  const char *calib_method;  /* "minmax" (default), "ma-minmax", "percentile:P",
                              * "entropy", "mse" */
  const char *weights;       /* "s8-per-channel" (default) or "s8-per-tensor" */
  const char *activations;   /* "u8-asym" (default) or "s8-sym" */
  int dynamic;               /* quantize activations per row at run time */
  const char *keep_float;    /* comma-separated names kept in f32, or NULL */
} q8c_quant_options;

/* Run the quantization pipeline on the module (calibrate, quantize,
 * fuse-requant, fold-constants). Returns 0, or -1 with the message in
 * q8c_module_error(). `o` may be NULL for the defaults. */
int q8c_quantize(q8c_module *m, const q8c_quant_options *o);

typedef struct {
  const char *target;        /* "native" (default), or variants: "avx2,avx512vnni" */
  int opt_level;             /* 0..3; 0 in a zeroed struct means the default, 3 */
  int64_t batch;             /* the batch dimension `?`; 0 means 1 */
} q8c_compile_options;

/* Compile a quantized module to machine code in memory (LLVM ORC) and return
 * a runtime handle, as q8rt_load would for a .so: run it with q8rt_run,
 * release it with q8rt_free (the module may be freed first). NULL with the
 * message in q8c_module_error(). `o` may be NULL for the defaults. This binds
 * the module's batch dimension `?` to o->batch: afterwards the module's
 * shapes are those of that batch size, and q8c_run_reference and further
 * compiles accept only it. */
q8rt_model *q8c_compile(q8c_module *m, const q8c_compile_options *o);

void q8c_module_free(q8c_module *m);

#ifdef __cplusplus
}
#endif

#endif
