/* embed.c: an application that embeds q8c: it reads a float model, quantizes
 * it on calibration samples, compiles it to machine code in memory (JIT),
 * runs it, and checks the result against q8c's reference interpreter, which
 * defines the exact int8 arithmetic. Then it uses the model the way a
 * pipeline holding uint8 tensors would: the quantized entry, with each
 * tensor's scale and zero point from the descriptor. No file is written.
 *
 *   embed [MODEL.ir [CALIB.npy]]     (default: the bundled examples/mlp) */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "q8c.h"
#include "q8rt.h"

enum { BATCH = 4 };

/* quantize as docs/quantization.md defines it (u8 here). */
static uint8_t quantize_u8(float x, const q8_tensor_desc *t) {
  if (x != x)
    return (uint8_t)t->zero_point;
  float q = rintf(x / t->scale);
  float lo = (float)(0 - t->zero_point), hi = (float)(255 - t->zero_point);
  q = q < lo ? lo : q > hi ? hi : q;
  return (uint8_t)((int32_t)q + t->zero_point);
}

int main(int argc, char **argv) {
  const char *model_path = argc > 1 ? argv[1] : "examples/mlp/mlp.ir";
  const char *calib_path = argc > 2 ? argv[2] : "examples/mlp/calib.npy";
  char err[512];
  int status = 1;

  /* 1. Parse and quantize. Every q8c_* call returns a status; the message
   * is the module's (m is NULL only if not even a module could be had). */
  q8c_module *m = NULL;
  q8c_status s = q8c_parse_file(model_path, &m);
  q8c_quant_options qo = {.calib_path = calib_path};
  if (s == Q8C_OK)
    s = q8c_quantize(m, &qo);

  /* 2. Compile for this CPU, in memory. */
  q8c_compile_options co = {.batch = BATCH};
  q8rt_model *rt = NULL;
  if (s == Q8C_OK)
    s = q8c_compile(m, &co, &rt);
  if (s != Q8C_OK) {
    fprintf(stderr, "%s\n", m ? q8c_module_error(m) : q8c_status_name(s));
    q8c_module_free(m);
    return 1;
  }
  printf("compiled '%s' for %s (q8c %s, model ABI %d)\n", model_path, q8rt_variant(rt),
         q8c_version_string(), q8c_model_abi_version());

  /* 3. Run on a deterministic input, and with the reference interpreter. */
  const q8_tensor_desc *in = q8rt_input(rt, 0), *out = q8rt_output(rt, 0);
  int64_t nin = q8rt_tensor_numel(in), nout = q8rt_tensor_numel(out);
  float *x = malloc((size_t)nin * sizeof *x), *y = malloc((size_t)nout * sizeof *y);
  float *ref = malloc((size_t)nout * sizeof *ref);
  uint8_t *xq = NULL, *yq = NULL;
  if (!x || !y || !ref)
    goto done;
  unsigned seed = 12345;
  for (int64_t i = 0; i < nin; i++) {
    seed = seed * 1103515245u + 12345u;
    x[i] = (float)((seed >> 8) & 0xffff) / 16384.0f - 2.0f;
  }
  const void *inputs[1] = {x};
  void *outputs[1] = {y};
  if (q8rt_run(rt, 1, inputs, 1, outputs, err, sizeof err) != Q8RT_OK) {
    fprintf(stderr, "run: %s\n", err);
    goto done;
  }
  const float *ref_in[1] = {x};
  float *ref_out[1] = {ref};
  if (q8c_run_reference(m, BATCH, 1, ref_in, 1, ref_out) != Q8C_OK) {
    fprintf(stderr, "%s\n", q8c_module_error(m));
    goto done;
  }
  printf("%%%s[0, 0..3] = %g %g %g %g\n", out->name, y[0], y[1], y[2], y[3]);
  if (memcmp(y, ref, (size_t)nout * sizeof *y) != 0) {
    fprintf(stderr, "compiled output differs from the reference interpreter\n");
    goto done;
  }
  printf("bit-identical to the reference interpreter (%lld values)\n", (long long)nout);

  /* 4. The quantized entry: uint8 in, uint8 out. Fed quantize(x), it gives
   * exactly quantize(y), without the f32 steps at either end. */
  if (in->qdtype != Q8_DTYPE_U8 || out->qdtype != Q8_DTYPE_U8) {
    fprintf(stderr, "expected u8 quantized forms (u8-asym activations)\n");
    goto done;
  }
  xq = malloc((size_t)nin);
  yq = malloc((size_t)nout);
  if (!xq || !yq)
    goto done;
  for (int64_t i = 0; i < nin; i++)
    xq[i] = quantize_u8(x[i], in);
  const void *qinputs[1] = {xq};
  void *qoutputs[1] = {yq};
  if (q8rt_run_quantized(rt, 1, qinputs, 1, qoutputs, err, sizeof err) != Q8RT_OK) {
    fprintf(stderr, "run_quantized: %s\n", err);
    goto done;
  }
  printf("quantized entry: %%%s u8 (scale %g, zero point %d) -> %%%s u8 (scale %g, zero point "
         "%d)\n",
         in->name, (double)in->scale, (int)in->zero_point, out->name, (double)out->scale,
         (int)out->zero_point);
  for (int64_t i = 0; i < nout; i++)
    if (yq[i] != quantize_u8(y[i], out)) {
      fprintf(stderr, "quantized entry: element %lld is %d, quantize(y) is %d\n", (long long)i,
              yq[i], quantize_u8(y[i], out));
      goto done;
    }
  printf("quantized entry gives quantize(y) exactly (%lld values)\n", (long long)nout);
  status = 0;
done:
  free(x);
  free(y);
  free(ref);
  free(xq);
  free(yq);
  q8rt_free(rt);
  q8c_module_free(m);
  return status;
}
