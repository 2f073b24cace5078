/* consumer_jit.c: a program built against an installed libq8c (through
 * find_package or add_subdirectory): it parses a model, quantizes it,
 * compiles it in memory, runs it on the same fixed input as consumer_rt and
 * prints every output value.
 *
 *   consumer_jit MODEL.ir CALIB.npy BATCH */
#include <stdio.h>
#include <stdlib.h>

#include <q8c.h>

int main(int argc, char **argv) {
  char err[512];
  if (argc != 4) {
    fprintf(stderr, "usage: consumer_jit MODEL.ir CALIB.npy BATCH\n");
    return 2;
  }
  q8c_module *m = NULL;
  q8c_quant_options qo = {.calib_path = argv[2]};
  q8c_compile_options co = {.batch = atoi(argv[3])};
  q8rt_model *rt = NULL;
  if (q8c_parse_file(argv[1], &m) != Q8C_OK || q8c_quantize(m, &qo) != Q8C_OK ||
      q8c_compile(m, &co, &rt) != Q8C_OK) {
    fprintf(stderr, "consumer_jit: %s\n", m ? q8c_module_error(m) : "out of memory");
    q8c_module_free(m);
    return 1;
  }
  const q8_tensor_desc *xd = q8rt_input(rt, 0), *yd = q8rt_output(rt, 0);
  int64_t nx = q8rt_tensor_numel(xd), ny = q8rt_tensor_numel(yd);
  float *x = malloc((size_t)nx * sizeof *x), *y = malloc((size_t)ny * sizeof *y);
  for (int64_t i = 0; i < nx; i++)
    x[i] = (float)((i * 37) % 101) / 50.0f - 1.0f;
  const void *in[] = {x};
  void *out[] = {y};
  int rc = 0;
  if (q8rt_run(rt, 1, in, 1, out, err, sizeof err) != Q8RT_OK) {
    fprintf(stderr, "consumer_jit: %s\n", err);
    rc = 1;
  }
  for (int64_t i = 0; rc == 0 && i < ny; i++)
    printf("%a\n", y[i]);
  free(x);
  free(y);
  q8rt_free(rt);
  q8c_module_free(m);
  return rc;
}
