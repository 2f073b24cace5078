/* consumer_rt.c: a program built against an installed libq8rt only (through
 * pkg-config or find_package): it loads a model library, runs it on a fixed
 * input and prints every output value, so that two builds can be compared
 * bit for bit.
 *
 *   consumer_rt MODEL.so */
#include <stdio.h>
#include <stdlib.h>

#include <q8rt.h>

int main(int argc, char **argv) {
  char err[512];
  q8rt_model *m;
  if (argc != 2) {
    fprintf(stderr, "usage: consumer_rt MODEL.so\n");
    return 2;
  }
  if (q8rt_load(argv[1], &m, err, sizeof err) != Q8RT_OK) {
    fprintf(stderr, "consumer_rt: %s\n", err);
    return 1;
  }
  const q8_tensor_desc *xd = q8rt_input(m, 0), *yd = q8rt_output(m, 0);
  int64_t nx = q8rt_tensor_numel(xd), ny = q8rt_tensor_numel(yd);
  float *x = malloc((size_t)nx * sizeof *x), *y = malloc((size_t)ny * sizeof *y);
  for (int64_t i = 0; i < nx; i++)
    x[i] = (float)((i * 37) % 101) / 50.0f - 1.0f;
  const void *in[] = {x};
  void *out[] = {y};
  int rc = 0;
  if (q8rt_run(m, 1, in, 1, out, err, sizeof err) != Q8RT_OK) {
    fprintf(stderr, "consumer_rt: %s\n", err);
    rc = 1;
  }
  for (int64_t i = 0; rc == 0 && i < ny; i++)
    printf("%a\n", y[i]);
  free(x);
  free(y);
  q8rt_free(m);
  return rc;
}
