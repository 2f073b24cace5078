/* pack.c: the packed weight layout the GEMM kernels read, and the check that
 * decides whether the AVX2 kernel may use vpmaddubsw.
 *
 * A kernel multiplies one broadcast group of 4 input bytes x[m, 4g .. 4g+3]
 * by the 4 weights of nr channels at once (vpdpbusd: 4 byte products summed
 * into each int32 lane), so the weights are stored channel-group major, then
 * K-group, then channel, then the 4 K values:
 *
 *     packed[c / nr][g][c % nr][j] = wq[c, 4g + j]     (0 past N or K)
 *
 * One K group of one vector of channels is nr * 4 contiguous bytes (64 for
 * AVX-512: one zmm load), and each vector of channels is one stream through
 * K; nr is the variant's (isa.def: 16 for AVX-512's zmm, 8 for ymm, 4 for
 * SSE2's xmm). The zero padding makes the kernels' tails free: the K tail reads 4 bytes
 * of x whatever K is (the padding bytes of x meet zero weights) and the N
 * tail computes whole vectors and stores only the valid channels. */
#include <string.h>

#include "codegen.h"

size_t cg_packed_size(CgIsa isa, int64_t n, int64_t k) {
  int64_t nr = cg_isa_info[isa].nr;
  int64_t nvec = (n + nr - 1) / nr, kgroups = (k + 3) / 4;
  return (size_t)(nvec * kgroups * nr * 4);
}

void cg_pack_weights(CgIsa isa, const int8_t *wq, int64_t n, int64_t k, int8_t *dst) {
  int64_t nr = cg_isa_info[isa].nr;
  int64_t nvec = (n + nr - 1) / nr, kgroups = (k + 3) / 4;
  memset(dst, 0, cg_packed_size(isa, n, k));
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
