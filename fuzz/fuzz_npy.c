/* fuzz_npy.c: the .npy reader, whole (fe_npy_read) and streamed by rows
 * (fe_npy_open / fe_npy_read_rows), on arbitrary bytes written to a file.
 *
 * Properties: no crash or sanitizer report; a refused file has a message;
 * an accepted array is read in full (ASan sees any byte that is missing),
 * and streaming it in chunks of any size gives the same bytes as reading it
 * whole. The first input byte chooses the chunk size; the rest is the file. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"

static char path[4096];

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  snprintf(path, sizeof path, "%s/input.npy", fuzz_setup());
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1)
    return 0;
  int64_t chunk = data[0] % 8; /* rows per read; 0 asks for none */
  fuzz_write_file(path, data + 1, size - 1);

  char err[512];
  IrTensor whole;
  bool ok = fe_npy_read(path, &whole, err, sizeof err);
  if (!ok) {
    fuzz_check(err[0] != '\0', "refused without a message");
    fuzz_check(whole.data == NULL, "a refused array still has data");
  }
  int64_t numel = 0;
  size_t esize = 0;
  if (ok) {
    fuzz_check(ir_type_numel(&whole.type, 1, &numel), "no element count");
    esize = ir_dtype_size(whole.type.dtype);
    unsigned sum = 0;
    for (size_t j = 0; j < (size_t)numel * esize; j++)
      sum += ((unsigned char *)whole.data)[j];
    (void)sum;
  }

  FeNpyReader r;
  if (!fe_npy_open(&r, path, err, sizeof err)) {
    fuzz_check(err[0] != '\0', "the stream refused without a message");
    /* Streaming refuses scalars, which the whole read accepts. */
    fuzz_check(!ok || whole.type.rank == 0, "the whole read accepts what the stream refuses: %s",
               err);
    free(whole.data);
    return 0;
  }
  fuzz_check(ok, "the stream accepts what the whole read refuses");
  fuzz_check(ir_type_equal(&r.type, &whole.type), "the stream sees another type");
  int64_t row = r.type.dims[0] ? numel / r.type.dims[0] : 0;
  unsigned char *buf = malloc((size_t)(chunk ? chunk : 1) * (size_t)row * esize + 1);
  int64_t done = 0;
  for (int guard = 0;; guard++) {
    int64_t got = fe_npy_read_rows(&r, buf, chunk, err, sizeof err);
    fuzz_check(got >= 0, "streaming a whole array failed: %s", err);
    fuzz_check(got <= chunk, "%lld rows for a chunk of %lld", (long long)got, (long long)chunk);
    if (got == 0)
      break;
    fuzz_check(memcmp(buf, (unsigned char *)whole.data + (size_t)(done * row) * esize,
                      (size_t)(got * row) * esize) == 0,
               "rows %lld.. differ between the stream and the whole read", (long long)done);
    done += got;
    /* Empty rows ((10^11, 0) is a valid array) take no reading: one chunk
     * shows they come; streaming all of them would only take long. */
    if (row == 0)
      break;
    fuzz_check(guard < 1 << 20, "the stream does not end");
  }
  fuzz_check(chunk == 0 || row == 0 || done == r.type.dims[0], "%lld of %lld rows streamed",
             (long long)done, (long long)r.type.dims[0]);
  fe_npy_close(&r);
  free(buf);
  free(whole.data);
  return 0;
}
