/* pack.c: the packed weight layout the x86 GEMM kernels read,
 * packed[c / P][g][c % P][j] = wq[c, 4g + j] (zeros past N and K, so the
 * kernels' tails are free) with P the variant's nr, or a multiple of it that
 * every variant of a library reads (CgGemm.pack_nr: one copy of the weights
 * serves them all), and the check that decides whether the AVX2
 * kernel may use vpmaddubsw; codegen/x86/qgemm.c emits the kernels that read
 * it. Why this order, and the tails, in docs/kernels.md, "The packed layout". */
#include <string.h>

#include "codegen.h"

size_t cg_packed_size(CgIsa isa, int64_t n, int64_t k) {
  return cg_packed_size_nr(cg_isa_info[isa].nr, n, k);
}

void cg_pack_weights(CgIsa isa, const int8_t *wq, int64_t n, int64_t k, int8_t *dst) {
  cg_pack_weights_nr(cg_isa_info[isa].nr, wq, n, k, dst);
}

size_t cg_packed_size_nr(int64_t nr, int64_t n, int64_t k) {
  int64_t nvec = (n + nr - 1) / nr, kgroups = (k + 3) / 4;
  return (size_t)(nvec * kgroups * nr * 4);
}

void cg_pack_weights_nr(int64_t nr, const int8_t *wq, int64_t n, int64_t k, int8_t *dst) {
  int64_t nvec = (n + nr - 1) / nr, kgroups = (k + 3) / 4;
  memset(dst, 0, cg_packed_size_nr(nr, n, k));
  for (int64_t v = 0; v < nvec; v++)
    for (int64_t g = 0; g < kgroups; g++) {
      int8_t *block = dst + (v * kgroups + g) * nr * 4;
      for (int64_t c = 0; c < nr && v * nr + c < n; c++)
        for (int64_t j = 0; j < 4 && 4 * g + j < k; j++)
          block[c * 4 + j] = wq[(v * nr + c) * k + 4 * g + j];
    }
}

/* The extremes of x * w over x in [lo, hi]: a product is linear in x, so
 * they are at the ends of the range. */
static void product_range(int32_t lo, int32_t hi, int32_t w, int32_t *pmin, int32_t *pmax) {
  int32_t a = lo * w, b = hi * w;
  *pmin = a < b ? a : b;
  *pmax = a < b ? b : a;
}

bool cg_pairs_can_saturate(const int8_t *wq, int64_t n, int64_t k, int32_t x_min, int32_t x_max) {
  for (int64_t c = 0; c < n; c++) {
    const int8_t *row = wq + c * k;
    /* The pairs vpmaddubsw sums are the adjacent bytes of a packed group:
     * k = 2j, 2j + 1. An odd K leaves the last value paired with a zero
     * weight, one product, which always fits. */
    for (int64_t j = 0; j + 1 < k; j += 2) {
      int32_t lo0, hi0, lo1, hi1;
      product_range(x_min, x_max, row[j], &lo0, &hi0);
      product_range(x_min, x_max, row[j + 1], &lo1, &hi1);
      /* x0 and x1 vary independently, so the extremes add. */
      if (hi0 + hi1 > INT16_MAX || lo0 + lo1 < INT16_MIN)
        return true;
    }
  }
  return false;
}
