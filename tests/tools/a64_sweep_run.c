/* a64_sweep_run.c: the aarch64 half of the AArch64 kernel sweep (a64_sweep.h
 * says how the halves fit). Linked with the kernels a64_sweep_gen emitted,
 * its case table and the aarch64 reference ops (libq8support.a), and run in
 * one qemu-aarch64 process (-cpu max: every variant's instructions).
 *
 * For each case it regenerates the data, checks it hashes as it did when the
 * kernel was emitted, runs every task of the kernel (last first: tasks are
 * independent), and compares all of y with q8_ref_qgemm's, byte for byte:
 * the m x n outputs, the padding between rows and one guard row after them,
 * which must keep their sentinel bytes. One line per failing case (the first
 * wrong element), the cases per variant, then `N passed, M failed`; exit
 * status 0 when every case passed. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "a64_sweep.h"
#include "ir/refops.h"

static const uint8_t sentinel = 0xA5;

static void describe(const SwConfig *c, char *buf, size_t len) {
  snprintf(buf, len,
           "%s m=%" PRId64 " k=%" PRId64 " n=%" PRId64 " x=%s y=%s relu=%d wmax=%d x in [%d,%d] "
           "mult=%d x_pad=%" PRId64 " y_pad=%" PRId64 " seed=%" PRIu64 "%s",
           c->isa, c->m, c->k, c->n, c->x_signed ? "i8" : "u8",
           c->y_dtype == Q8_DTYPE_F32  ? "f32"
           : c->y_dtype == Q8_DTYPE_I8 ? "i8"
                                       : "u8",
           c->relu, c->wmax, c->xlo, c->xhi, c->mult_kind, c->x_pad, c->y_pad, c->seed,
           c->kind == SW_SPECIAL_MULT ? " (special multipliers)"
           : c->kind == SW_WRAP       ? " (wrapping sums)"
                                      : "");
}

/* Run case `t`; true when its output is the reference's. */
static bool check_case(const SwCase *t) {
  const SwConfig *c = &t->c;
  char what[256];
  describe(c, what, sizeof what);
  SwData d;
  if (!sw_data_init(&d, c)) {
    printf("FAIL %s: out of memory\n", what);
    return false;
  }
  bool ok = false;
  uint8_t *want = malloc(d.y_bytes), *got = malloc(d.y_bytes);
  if (!want || !got) {
    printf("FAIL %s: out of memory\n", what);
    goto done;
  }
  if (sw_data_hash(&d, c) != t->data_hash) {
    printf("FAIL %s: the data differs from what the kernel was emitted with "
           "(a64_sweep.h draws differently here)\n", what);
    goto done;
  }
  memset(want, sentinel, d.y_bytes);
  q8_ref_qgemm(d.x, d.x_stride, c->x_signed, d.wq, d.bias, d.mult, want, d.y_stride, c->y_dtype,
               c->m, c->k, c->n, d.y_zero_point, d.y_min, d.y_max,
               c->y_dtype == Q8_DTYPE_F32 && c->relu);
  memset(got, sentinel, d.y_bytes);
  struct {
    const void *x;
    void *y;
  } args = {d.x, got}; /* CgGemmArgs */
  for (int64_t task = t->ntasks - 1; task >= 0; task--)
    t->kernel(&args, task);
  ok = memcmp(got, want, d.y_bytes) == 0;
  if (!ok) {
    size_t e = 0;
    while (memcmp(got + e * d.y_size, want + e * d.y_size, d.y_size) == 0)
      e++;
    long long i = (long long)(e / (size_t)d.y_stride), j = (long long)(e % (size_t)d.y_stride);
    const char *where = i >= c->m ? " (the guard row)" : j >= c->n ? " (row padding)" : "";
    if (d.y_size == 4) {
      float a, b;
      memcpy(&a, got + 4 * e, 4);
      memcpy(&b, want + 4 * e, 4);
      printf("FAIL %s: y[%lld, %lld]%s = %a, expected %a\n", what, i, j, where, (double)a,
             (double)b);
    } else {
      int a = c->y_dtype == Q8_DTYPE_I8 ? (int8_t)got[e] : got[e];
      int b = c->y_dtype == Q8_DTYPE_I8 ? (int8_t)want[e] : want[e];
      printf("FAIL %s: y[%lld, %lld]%s = %d, expected %d\n", what, i, j, where, a, b);
    }
  }
done:
  free(want);
  free(got);
  sw_data_free(&d);
  return ok;
}

int main(void) {
  int passed = 0, failed = 0;
  for (int i = 0; i < sw_ncases;) {
    /* The cases of one variant are adjacent in the table. */
    const char *isa = sw_cases[i].c.isa;
    int vpassed = 0, vfailed = 0;
    for (; i < sw_ncases && strcmp(sw_cases[i].c.isa, isa) == 0; i++)
      check_case(&sw_cases[i]) ? vpassed++ : vfailed++;
    printf("%s: %d cases, %d passed, %d failed\n", isa, vpassed + vfailed, vpassed, vfailed);
    passed += vpassed;
    failed += vfailed;
  }
  printf("%d passed, %d failed\n", passed, failed);
  fflush(stdout);
  return failed || !passed ? 1 : 0;
}
