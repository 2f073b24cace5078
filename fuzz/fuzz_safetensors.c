/* fuzz_safetensors.c: the safetensors loader (fe_safetensors_parse) on
 * arbitrary bytes.
 *
 * Properties: no crash or sanitizer report; a refused file has a message; an
 * accepted one has tensors whose byte counts match their types (every byte
 * is read here, so ASan sees any that is not really there), distinct names,
 * and survives a write and a read back unchanged. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"

static char tmp_path[4096];

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  snprintf(tmp_path, sizeof tmp_path, "%s/rewrite.safetensors", fuzz_setup());
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  IrArena *a = ir_arena_new();
  FeTensorSet set;
  char err[512];
  if (!fe_safetensors_parse(a, data, size, &set, err, sizeof err)) {
    fuzz_check(err[0] != '\0', "refused without a message");
    fuzz_check(set.n == 0, "a refused file still has tensors");
    ir_arena_free(a);
    return 0;
  }
  unsigned sum = 0;
  for (int i = 0; i < set.n; i++) {
    const FeTensor *t = &set.tensors[i];
    int64_t numel;
    fuzz_check(t->name != NULL, "tensor %d has no name", i);
    fuzz_check(t->type.rank >= 0 && t->type.rank <= IR_MAX_RANK, "rank %d", t->type.rank);
    /* A zero dimension makes the tensor empty whatever the others are (the
     * format allows [0, 2^62, 2^62]; ir_type_numel, which multiplies left
     * to right, refuses it, and so does the verifier if a model uses it). */
    bool empty = false;
    for (int d = 0; d < t->type.rank; d++)
      empty |= t->type.dims[d] == 0;
    if (empty)
      numel = 0;
    else
      fuzz_check(ir_type_numel(&t->type, 1, &numel), "'%s': no element count", t->name);
    fuzz_check((uint64_t)numel * ir_dtype_size(t->type.dtype) == t->nbytes,
               "'%s': nbytes %zu does not match its type", t->name, t->nbytes);
    for (size_t j = 0; j < t->nbytes; j++)
      sum += ((const unsigned char *)t->data)[j];
    fuzz_check(fe_tensorset_find(&set, t->name) == t, "'%s' is not found by name", t->name);
  }
  /* Written back and read again: the same tensors, bit for bit. */
  if (fe_safetensors_write(tmp_path, set.tensors, set.n, err, sizeof err)) {
    IrArena *b = ir_arena_new();
    FeTensorSet again;
    fuzz_check(fe_safetensors_read(b, tmp_path, &again, err, sizeof err),
               "a rewritten file does not read back: %s", err);
    fuzz_check(again.n == set.n, "%d tensors read back, %d written", again.n, set.n);
    for (int i = 0; i < set.n; i++) {
      const FeTensor *t = &set.tensors[i], *u = &again.tensors[i];
      fuzz_check(strcmp(t->name, u->name) == 0 && ir_type_equal(&t->type, &u->type) &&
                     t->nbytes == u->nbytes && memcmp(t->data, u->data, t->nbytes) == 0,
                 "tensor '%s' changed in a write and read back", t->name);
    }
    ir_arena_free(b);
  } else {
    /* The writer refuses only what the reader could not have produced. */
    fuzz_check(strstr(err, "reserved") || strstr(err, "out of memory") ||
                   strstr(err, "write error") || strstr(err, "cannot create"),
               "a file that reads cannot be written back: %s", err);
  }
  ir_arena_free(a);
  return (int)(sum & 0);
}
