/* test_pack.c: the packed weight layout (codegen/pack.c) the GEMM kernels
 * read, [ceil(N / nr)][ceil(K / 4)][nr][4] int8 with zero padding, and the
 * check that decides whether AVX2 may sum weight pairs with vpmaddubsw. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "codegen/codegen.h"

static void test_nr(void **state) {
  assert_int_equal(cg_isa_info[CG_ISA_AVX512VNNI].nr, 16);
  assert_int_equal(cg_isa_info[CG_ISA_AVXVNNI].nr, 8);
  assert_int_equal(cg_isa_info[CG_ISA_AVX2].nr, 8);
  assert_int_equal(cg_isa_info[CG_ISA_GENERIC].nr, 4);
}

static void test_size(void **state) {
  /* 17 channels, 5 K values: 2 vectors of 16, 2 groups of 4. */
  assert_int_equal(cg_packed_size(CG_ISA_AVX512VNNI, 17, 5), 2 * 2 * 16 * 4);
  assert_int_equal(cg_packed_size(CG_ISA_AVX512VNNI, 16, 4), 16 * 4);
  assert_int_equal(cg_packed_size(CG_ISA_AVX2, 1, 1), 8 * 4);
  assert_int_equal(cg_packed_size(CG_ISA_GENERIC, 9, 12), 3 * 3 * 4 * 4);
}

/* Every byte of the packed block against the formula, for shapes with every
 * kind of tail. */
static void test_layout(void **state) {
  static const int64_t ns[] = {1, 3, 4, 8, 15, 16, 17, 33};
  static const int64_t ks[] = {1, 2, 3, 4, 5, 8, 31};
  for (int isa = 0; isa < CG_ISA_COUNT; isa++)
    /* (The AArch64 kernels pack their own layout, in aarch64/qgemm.c: their
     * architecture has no pack function.) */
    for (size_t a = 0; a < sizeof ns / sizeof *ns && cg_arch_of((CgIsa)isa)->pack; a++)
      for (size_t b = 0; b < sizeof ks / sizeof *ks; b++) {
        int64_t n = ns[a], k = ks[b], nr = cg_isa_info[isa].nr;
        int8_t *wq = malloc((size_t)(n * k));
        for (int64_t i = 0; i < n * k; i++)
          wq[i] = (int8_t)((i * 37 + 11) % 255 - 127); /* nonzero mostly, -127..127 */
        size_t size = cg_packed_size((CgIsa)isa, n, k);
        int8_t *p = malloc(size);
        memset(p, 0x5a, size); /* packing must write the padding too */
        cg_pack_weights((CgIsa)isa, wq, n, k, p);
        int64_t nvec = (n + nr - 1) / nr, kg = (k + 3) / 4;
        assert_int_equal(size, (size_t)(nvec * kg * nr * 4));
        for (int64_t v = 0; v < nvec; v++)
          for (int64_t g = 0; g < kg; g++)
            for (int64_t c = 0; c < nr; c++)
              for (int64_t j = 0; j < 4; j++) {
                int64_t ch = v * nr + c, kk = 4 * g + j;
                int8_t want = ch < n && kk < k ? wq[ch * k + kk] : 0;
                assert_int_equal(p[((v * kg + g) * nr + c) * 4 + j], want);
              }
        free(p);
        free(wq);
      }
}

/* A hand-checked case: 2 channels, K = 5, AVX2 (nr = 8). */
static void test_layout_by_hand(void **state) {
  const int8_t wq[10] = {1, 2, 3, 4, 5, -1, -2, -3, -4, -5};
  int8_t p[2 * 8 * 4];
  assert_int_equal(cg_packed_size(CG_ISA_AVX2, 2, 5), sizeof p);
  cg_pack_weights(CG_ISA_AVX2, wq, 2, 5, p);
  int8_t want[sizeof p] = {0};
  /* group 0: channel 0 k0..3, channel 1 k0..3 */
  memcpy(want, (int8_t[]){1, 2, 3, 4, -1, -2, -3, -4}, 8);
  /* group 1 starts 32 bytes in: k4 of each channel, then zeros */
  want[32] = 5;
  want[36] = -5;
  assert_memory_equal(p, want, sizeof p);
}

static void test_saturation(void **state) {
  /* 255 * 127 * 2 = 64770 > 32767. */
  int8_t big[2] = {127, 127};
  assert_true(cg_pairs_can_saturate(big, 1, 2, 0, 255));
  /* 127 * 127 * 2 = 32258 fits. */
  assert_false(cg_pairs_can_saturate(big, 1, 2, 0, 127));
  /* 255 * 64 * 2 = 32640 fits; 255 * 65 + 255 * 64 = 32895 does not. */
  int8_t w64[2] = {64, 64}, w65[2] = {65, 64};
  assert_false(cg_pairs_can_saturate(w64, 1, 2, 0, 255));
  assert_true(cg_pairs_can_saturate(w65, 1, 2, 0, 255));
  /* Negative side: 255 * -64 * 2 = -32640 fits, -32768 exactly would too. */
  int8_t n64[2] = {-64, -64};
  assert_false(cg_pairs_can_saturate(n64, 1, 2, 0, 255));
  int8_t n65[2] = {-65, -64};
  assert_true(cg_pairs_can_saturate(n65, 1, 2, 0, 255));
  /* Opposite signs cancel: 255 * 127 + 0 * -127 = 32385 at most. */
  int8_t mixed[2] = {127, -127};
  assert_false(cg_pairs_can_saturate(mixed, 1, 2, 0, 255));
  /* A lower bound above 0 does not make mixed signs add up. */
  assert_false(cg_pairs_can_saturate(mixed, 1, 2, 200, 255));
  /* Pairs are (2j, 2j + 1): 127 at k = 1 and k = 2 are in different pairs. */
  int8_t straddle[4] = {0, 127, 127, 0};
  assert_false(cg_pairs_can_saturate(straddle, 1, 4, 0, 255));
  /* An odd K leaves the last value alone (paired with a zero). */
  int8_t odd[3] = {0, 0, 127};
  assert_false(cg_pairs_can_saturate(odd, 1, 3, 0, 255));
  /* Only the second row saturates. */
  int8_t rows[4] = {1, 1, 127, 127};
  assert_true(cg_pairs_can_saturate(rows, 2, 2, 0, 255));
  /* An i8 input flipped to x + 128 in [1, 255] (its range [-127, 127]). */
  assert_true(cg_pairs_can_saturate(big, 1, 2, 1, 255));
  /* Zero input range. */
  assert_false(cg_pairs_can_saturate(big, 1, 2, 0, 0));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_nr),
      cmocka_unit_test(test_size),
      cmocka_unit_test(test_layout),
      cmocka_unit_test(test_layout_by_hand),
      cmocka_unit_test(test_saturation),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
