/* nf4.c: linear_4bit (NF4 or FP4 weights, f32 activations: W4A32) as a
 * generated kernel, bit-exact with q8_ref_linear_4bit (docs/kernels.md,
 * "4-bit weights"). Each weight is table[code] * absmax of its block in
 * f32, each product x * w in f32, and the sum over K in the order of
 * docs/float.md's reductions: 16 partial sums p[k % 16] in order of k,
 * halved 8, 4, 2, 1 (K is a multiple of the block, so of 16: no tail).
 *
 * Per block of G weights of a row the kernel scales the 16-entry table by
 * the block maximum (16 products, each the f32 product a weight of that
 * code gets) and turns each group of 16 codes into 16 floats by a lookup
 * in registers: vpermps on AVX-512 (one zmm holds the table), tbl on NEON
 * (the table's 64 bytes in four registers, byte indices 4 c + 0..3), and
 * scalar loads from the table in memory on SSE2. AVX2 (and AVX-VNNI) looks
 * the unscaled table up instead with vpshufb in its four byte planes, 32
 * codes at a time, interleaves the planes into floats with two rounds of
 * unpacks and multiplies by the maximum (the same product): the first
 * version, two vpermps and a blend per 8 weights, measured no faster on
 * the Zen 3 this was written on (docs/kernels.md, "4-bit weights"), and
 * costs more per weight on cores with one shuffle port. The codes are repacked at compile time so that
 * each lookup's floats come out in order of k (repack). M = 1 walks 2 or 4
 * rows of W at once (independent sums hide the add latency); M > 1
 * dequantizes a row of W into a panel on the stack once and runs
 * every row of x over it, 4 at a time. */
#include <stdio.h>
#include <string.h>

#include "../ir/refops.h"
#include "module.h"

enum {
  NR = 4,          /* rows of W per step at M = 1, at most (nr_of) */
  MR = 4,          /* rows of x per step over a panel at M > 1 */
  TASK_N = 64,     /* rows of W (outputs) per task */
};

/* How a variant turns codes into table entries (from its features). */
typedef enum { LOOKUP_PERM16, LOOKUP_PSHUFB, LOOKUP_TBL, LOOKUP_SCALAR } Lookup;

static Lookup lookup_of(CgIsa isa) {
  const CgIsaInfo *v = &cg_isa_info[isa];
  if (v->arch == CG_ARCH_AARCH64)
    return LOOKUP_TBL;
  if (strstr(v->features, "+avx512f"))
    return LOOKUP_PERM16;
  if (strstr(v->features, "+avx2"))
    return LOOKUP_PSHUFB;
  return LOOKUP_SCALAR;
}

/* Rows of W per step at M = 1: as many as keep the scaled tables, the
 * sums and x in registers (a table is 1 zmm, 2 ymm or 4 NEON registers,
 * a sum as many). */
static int nr_of(Lookup l) { return l == LOOKUP_PERM16 ? 4 : l == LOOKUP_PSHUFB ? 1 : 2; }

/* The kernel being built. */
typedef struct {
  LLVMContextRef ctx;
  LLVMModuleRef mod;
  LLVMBuilderRef b;
  LLVMValueRef fn;
  LLVMTypeRef i8, i32, i64, f32, ptr, v16f, v16i, v8i8;
  Lookup lookup;
  int nr;                 /* rows of W per step at M = 1 */
  LLVMValueRef table_mem; /* LOOKUP_SCALAR: [16 x float] on the stack */
  /* the layer */
  int64_t m, k, n, block, x_stride, y_stride;
  bool dq;
  int code;               /* IR_4BIT_NF4 or IR_4BIT_FP4 */
  LLVMValueRef codes, absmax, absmax2, dq_map, bias, table; /* globals; table <16 x float> */
} K4;

static LLVMValueRef i64c(K4 *f, int64_t v) { return LLVMConstInt(f->i64, (uint64_t)v, 1); }
static LLVMValueRef i32c(K4 *f, int64_t v) { return LLVMConstInt(f->i32, (uint64_t)v, 1); }

typedef struct {
  LLVMBasicBlockRef pre, body, exit;
  LLVMValueRef i;
} Loop;

/* for (i = lo; i < hi; i += step): lo < hi is known. */
static LLVMValueRef loop_open(K4 *f, Loop *l, LLVMValueRef lo, const char *name) {
  l->pre = LLVMGetInsertBlock(f->b);
  l->body = LLVMAppendBasicBlockInContext(f->ctx, f->fn, name);
  l->exit = LLVMAppendBasicBlockInContext(f->ctx, f->fn, "");
  LLVMBuildBr(f->b, l->body);
  LLVMPositionBuilderAtEnd(f->b, l->body);
  l->i = LLVMBuildPhi(f->b, f->i64, name);
  LLVMAddIncoming(l->i, &lo, &l->pre, 1);
  return l->i;
}

/* A value carried around the loop: `init` on entry. */
static LLVMValueRef loop_phi(K4 *f, Loop *l, LLVMValueRef init) {
  LLVMValueRef p = LLVMBuildPhi(f->b, LLVMTypeOf(init), "");
  LLVMAddIncoming(p, &init, &l->pre, 1);
  return p;
}

/* Close the loop; phis[i] get next[i] from its latch. */
static void loop_close(K4 *f, Loop *l, LLVMValueRef hi, int64_t step, LLVMValueRef *phis,
                       LLVMValueRef *next, int count) {
  LLVMValueRef ni = LLVMBuildAdd(f->b, l->i, i64c(f, step), "");
  LLVMBasicBlockRef cur = LLVMGetInsertBlock(f->b);
  LLVMAddIncoming(l->i, &ni, &cur, 1);
  for (int i = 0; i < count; i++)
    LLVMAddIncoming(phis[i], &next[i], &cur, 1);
  LLVMBuildCondBr(f->b, LLVMBuildICmp(f->b, LLVMIntSLT, ni, hi, ""), l->body, l->exit);
  LLVMPositionBuilderAtEnd(f->b, l->exit);
}

/* The f32 maximum of block g (flat over [N, K / block]), i64 g. */
static LLVMValueRef absmax_at(K4 *f, LLVMValueRef g) {
  if (!f->dq)
    return cg_load(f->b, f->f32, LLVMBuildGEP2(f->b, f->f32, f->absmax, &g, 1, ""), 4);
  /* dq_map[q] * absmax2[g / 256] + mean, one rounding each. */
  LLVMValueRef q = cg_load(f->b, f->i8, LLVMBuildGEP2(f->b, f->i8, f->absmax, &g, 1, ""), 1);
  q = LLVMBuildZExt(f->b, q, f->i64, "");
  LLVMValueRef v = cg_load(f->b, f->f32, LLVMBuildGEP2(f->b, f->f32, f->dq_map, &q, 1, ""), 4);
  LLVMValueRef bi = LLVMBuildLShr(f->b, g, i64c(f, 8), "");
  LLVMValueRef s = cg_load(f->b, f->f32, LLVMBuildGEP2(f->b, f->f32, f->absmax2, &bi, 1, ""), 4);
  int64_t groups = f->n * (f->k / f->block);
  LLVMValueRef mi = i64c(f, (groups + 255) / 256);
  LLVMValueRef mean =
      cg_load(f->b, f->f32, LLVMBuildGEP2(f->b, f->f32, f->absmax2, &mi, 1, ""), 4);
  return LLVMBuildFAdd(f->b, LLVMBuildFMul(f->b, v, s, ""), mean, "");
}

/* The table scaled by block maximum a: entry c is f32(table[c] * a), the
 * weight every code c of the block stands for. */
static LLVMValueRef scaled_table(K4 *f, LLVMValueRef a) {
  return LLVMBuildFMul(f->b, f->table, cg_splat_value(f->b, a, 16), "tab");
}

static LLVMValueRef half_of(K4 *f, LLVMValueRef v, int half, unsigned lanes) {
  int idx[16];
  for (unsigned i = 0; i < lanes; i++)
    idx[i] = (int)(half * lanes + i);
  return cg_shuffle(f->b, v, NULL, idx, lanes);
}

static LLVMValueRef concat(K4 *f, LLVMValueRef a, LLVMValueRef b, unsigned lanes) {
  int idx[32];
  for (unsigned i = 0; i < 2 * lanes; i++)
    idx[i] = (int)i;
  return cg_shuffle(f->b, a, b, idx, 2 * lanes);
}

/* The 16 weights of the group of codes at byte address p: its 8 bytes
 * give k0 + j (low nibbles) and k0 + 8 + j (high nibbles), looked up in
 * `tab` (the scaled table). */
static LLVMValueRef weights16(K4 *f, LLVMValueRef tab, LLVMValueRef p) {
  LLVMValueRef bytes = cg_load(f->b, f->v8i8, p, 1);
  LLVMTypeRef v8i = LLVMVectorType(f->i32, 8);
  if (f->lookup == LOOKUP_TBL) {
    /* Byte indices 4 c + 0..3 into the table's 64 bytes (tbl4), 4 floats
     * per lookup. */
    LLVMTypeRef v16b = LLVMVectorType(f->i8, 16);
    LLVMValueRef lo = LLVMBuildAnd(f->b, bytes, cg_splat(LLVMConstInt(f->i8, 15, 0), 8), "");
    LLVMValueRef hi = LLVMBuildLShr(f->b, bytes, cg_splat(LLVMConstInt(f->i8, 4, 0), 8), "");
    LLVMValueRef c4 = LLVMBuildShl(f->b, concat(f, lo, hi, 8), cg_splat(LLVMConstInt(f->i8, 2, 0), 16), "");
    LLVMValueRef tb = LLVMBuildBitCast(f->b, tab, v16b == NULL ? NULL : LLVMVectorType(f->i8, 64), "");
    LLVMValueRef t[4];
    for (int q = 0; q < 4; q++) {
      int idx[16];
      for (int i = 0; i < 16; i++)
        idx[i] = 16 * q + i;
      t[q] = cg_shuffle(f->b, tb, NULL, idx, 16);
    }
    LLVMValueRef offs[16], parts[4];
    for (int i = 0; i < 16; i++)
      offs[i] = LLVMConstInt(f->i8, (uint64_t)(i % 4), 0);
    for (int q = 0; q < 4; q++) {
      int rep[16];
      for (int i = 0; i < 16; i++)
        rep[i] = 4 * q + i / 4;
      LLVMValueRef ix = LLVMBuildAdd(f->b, cg_shuffle(f->b, c4, NULL, rep, 16),
                                     LLVMConstVector(offs, 16), "");
      LLVMValueRef args[5] = {t[0], t[1], t[2], t[3], ix};
      LLVMValueRef r = cg_intrinsic(f->mod, f->b, "llvm.aarch64.neon.tbl4", &v16b, 1, args, 5);
      parts[q] = LLVMBuildBitCast(f->b, r, LLVMVectorType(f->f32, 4), "");
    }
    return concat(f, concat(f, parts[0], parts[1], 4), concat(f, parts[2], parts[3], 4), 8);
  }
  LLVMValueRef z = LLVMBuildZExt(f->b, bytes, v8i, "");
  LLVMValueRef hi = LLVMBuildLShr(f->b, z, cg_splat(i32c(f, 4), 8), "");
  LLVMValueRef lo = LLVMBuildAnd(f->b, z, cg_splat(i32c(f, 15), 8), "");
  LLVMValueRef idx = concat(f, lo, hi, 8);
  if (f->lookup == LOOKUP_PERM16) {
    LLVMValueRef args[2] = {tab, idx};
    return cg_intrinsic(f->mod, f->b, "llvm.x86.avx512.permvar.sf.512", NULL, 0, args, 2);
  }
  /* SSE2: the table through memory, one scalar load per weight. */
  LLVMSetAlignment(LLVMBuildStore(f->b, tab, f->table_mem), 64);
  LLVMValueRef w = LLVMGetUndef(f->v16f);
  for (int i = 0; i < 16; i++) {
    LLVMValueRef c = LLVMBuildExtractElement(f->b, idx, i32c(f, i), "");
    LLVMValueRef v = cg_load(f->b, f->f32, LLVMBuildGEP2(f->b, f->f32, f->table_mem, &c, 1, ""), 4);
    w = LLVMBuildInsertElement(f->b, w, v, i32c(f, i), "");
  }
  return w;
}

/* What a block's lookups start from: the table scaled by its maximum a,
 * or with pshufb the splat of a (the table's byte planes are constants and
 * each looked-up entry is multiplied by a: the same f32 product). */
static LLVMValueRef group_prep(K4 *f, LLVMValueRef a) {
  return f->lookup == LOOKUP_PSHUFB ? cg_splat_value(f->b, a, 8) : scaled_table(f, a);
}

/* AVX2's pshufb lookup of the 32 weights of 16 bytes at p (codes32
 * layout: repack's), times the block maximum: out[0] = w[k0 .. k0 + 16),
 * out[1] = w[k0 + 16 .. k0 + 32). Each 128-bit lane looks its 16 codes up
 * in the table's four byte planes, and two rounds of unpacks interleave the
 * planes into floats: slot s of the 32 (low nibbles 0..15, high 16..31)
 * lands at k0 + 8 (s % 16 / 4) + 4 (s / 16) + s % 4. */
static void weights32_pshufb(K4 *f, LLVMValueRef a8, LLVMValueRef p, LLVMValueRef *out) {
  LLVMTypeRef v16b = LLVMVectorType(f->i8, 16), v32b = LLVMVectorType(f->i8, 32);
  LLVMTypeRef v16s = LLVMVectorType(LLVMInt16TypeInContext(f->ctx), 16);
  LLVMTypeRef v8f = LLVMVectorType(f->f32, 8);
  LLVMValueRef bytes = cg_load(f->b, v16b, p, 1);
  LLVMValueRef lo = LLVMBuildAnd(f->b, bytes, cg_splat(LLVMConstInt(f->i8, 15, 0), 16), "");
  LLVMValueRef hi = LLVMBuildLShr(f->b, bytes, cg_splat(LLVMConstInt(f->i8, 4, 0), 16), "");
  LLVMValueRef codes = concat(f, lo, hi, 16);
  LLVMValueRef plane[4];
  for (int j = 0; j < 4; j++) {
    LLVMValueRef pb[32];
    for (int i = 0; i < 32; i++) {
      uint32_t bits;
      memcpy(&bits, &q8_ref_4bit_tables[f->code][i % 16], 4);
      pb[i] = LLVMConstInt(f->i8, (bits >> (8 * j)) & 255, 0);
    }
    LLVMValueRef args[2] = {LLVMConstVector(pb, 32), codes};
    plane[j] = cg_intrinsic(f->mod, f->b, "llvm.x86.avx2.pshuf.b", NULL, 0, args, 2);
  }
  /* unpack{lo,hi}_epi8 and _epi16, per 128-bit lane */
  int b_lo[32], b_hi[32], s_lo[16], s_hi[16];
  for (int l = 0; l < 2; l++) {
    for (int i = 0; i < 8; i++) {
      b_lo[16 * l + 2 * i] = 16 * l + i, b_lo[16 * l + 2 * i + 1] = 32 + 16 * l + i;
      b_hi[16 * l + 2 * i] = 16 * l + 8 + i, b_hi[16 * l + 2 * i + 1] = 32 + 16 * l + 8 + i;
    }
    for (int i = 0; i < 4; i++) {
      s_lo[8 * l + 2 * i] = 8 * l + i, s_lo[8 * l + 2 * i + 1] = 16 + 8 * l + i;
      s_hi[8 * l + 2 * i] = 8 * l + 4 + i, s_hi[8 * l + 2 * i + 1] = 16 + 8 * l + 4 + i;
    }
  }
  LLVMValueRef A = LLVMBuildBitCast(f->b, cg_shuffle(f->b, plane[0], plane[1], b_lo, 32), v16s, "");
  LLVMValueRef B = LLVMBuildBitCast(f->b, cg_shuffle(f->b, plane[0], plane[1], b_hi, 32), v16s, "");
  LLVMValueRef C = LLVMBuildBitCast(f->b, cg_shuffle(f->b, plane[2], plane[3], b_lo, 32), v16s, "");
  LLVMValueRef D = LLVMBuildBitCast(f->b, cg_shuffle(f->b, plane[2], plane[3], b_hi, 32), v16s, "");
  LLVMValueRef F[4] = {cg_shuffle(f->b, A, C, s_lo, 16), cg_shuffle(f->b, A, C, s_hi, 16),
                       cg_shuffle(f->b, B, D, s_lo, 16), cg_shuffle(f->b, B, D, s_hi, 16)};
  for (int q = 0; q < 4; q++)
    F[q] = LLVMBuildFMul(f->b, LLVMBuildBitCast(f->b, F[q], v8f, ""), a8, "");
  out[0] = concat(f, F[0], F[1], 8);
  out[1] = concat(f, F[2], F[3], 8);
  (void)v32b;
}

/* The 32 weights of the 16 code bytes at p: out[0] = w[k0 .. k0 + 16),
 * out[1] = w[k0 + 16 .. k0 + 32), from `prep` (group_prep). */
static void weights32(K4 *f, LLVMValueRef prep, LLVMValueRef p, LLVMValueRef *out) {
  if (f->lookup == LOOKUP_PSHUFB) {
    weights32_pshufb(f, prep, p, out);
    return;
  }
  LLVMValueRef eight = i64c(f, 8);
  out[0] = weights16(f, prep, p);
  out[1] = weights16(f, prep, LLVMBuildGEP2(f->b, f->i8, p, &eight, 1, ""));
}

/* p[i] += p[i + h] for h = 8, 4, 2, 1: p[0]. */
static LLVMValueRef reduce16(K4 *f, LLVMValueRef acc) {
  for (unsigned lanes = 8; lanes >= 1; lanes /= 2) {
    LLVMValueRef lo = lanes == 1 ? LLVMBuildExtractElement(f->b, acc, i32c(f, 0), "")
                                 : half_of(f, acc, 0, lanes);
    LLVMValueRef hi = lanes == 1 ? LLVMBuildExtractElement(f->b, acc, i32c(f, 1), "")
                                 : half_of(f, acc, 1, lanes);
    acc = LLVMBuildFAdd(f->b, lo, hi, "");
  }
  return acc;
}

/* y[row, n] = s (+ bias[n]). */
static void store_y(K4 *f, LLVMValueRef y, LLVMValueRef row, LLVMValueRef n, LLVMValueRef s) {
  if (f->bias)
    s = LLVMBuildFAdd(f->b, s,
                      cg_load(f->b, f->f32, LLVMBuildGEP2(f->b, f->f32, f->bias, &n, 1, ""), 4), "");
  LLVMValueRef at = LLVMBuildAdd(f->b, LLVMBuildMul(f->b, row, i64c(f, f->y_stride), ""), n, "");
  LLVMBuildStore(f->b, s, LLVMBuildGEP2(f->b, f->f32, y, &at, 1, ""));
}

/* M = 1: rows n0 .. n0 + nr - 1 of W (i64 n0) against x. */
static void gemv_rows(K4 *f, LLVMValueRef x, LLVMValueRef y, LLVMValueRef n0, int nr) {
  int64_t gc = f->block / 32, ng = f->k / f->block;
  LLVMValueRef zero = LLVMConstNull(f->v16f), acc[NR], phi[NR];
  Loop lg;
  LLVMValueRef g = loop_open(f, &lg, i64c(f, 0), "block");
  for (int r = 0; r < nr; r++)
    acc[r] = phi[r] = loop_phi(f, &lg, zero);
  LLVMValueRef prep[NR], row[NR];
  for (int r = 0; r < nr; r++) {
    row[r] = LLVMBuildAdd(f->b, n0, i64c(f, r), "");
    prep[r] = group_prep(f, absmax_at(f, LLVMBuildAdd(f->b, LLVMBuildMul(f->b, row[r], i64c(f, ng), ""), g, "")));
  }
  for (int64_t j = 0; j < gc; j++) {
    /* x[k0 .. k0 + 32), k0 = 32 c with c = g gc + j */
    LLVMValueRef c = LLVMBuildAdd(f->b, LLVMBuildMul(f->b, g, i64c(f, gc), ""), i64c(f, j), "");
    LLVMValueRef xv[2] = {cg_load(f->b, f->v16f, cg_at(f->b, x, c, 128, 0), 4),
                          cg_load(f->b, f->v16f, cg_at(f->b, x, c, 128, 64), 4)};
    for (int r = 0; r < nr; r++) {
      LLVMValueRef at = LLVMBuildAdd(f->b, LLVMBuildMul(f->b, row[r], i64c(f, f->k / 32), ""), c, "");
      LLVMValueRef w[2];
      weights32(f, prep[r], cg_at(f->b, f->codes, at, 16, 0), w);
      for (int h = 0; h < 2; h++)
        acc[r] = LLVMBuildFAdd(f->b, acc[r], LLVMBuildFMul(f->b, xv[h], w[h], ""), "");
    }
  }
  loop_close(f, &lg, i64c(f, ng), 1, phi, acc, nr);
  for (int r = 0; r < nr; r++)
    store_y(f, y, i64c(f, 0), row[r], reduce16(f, acc[r]));
}

/* M > 1: row n of W (i64) dequantized into `panel` (K floats), then every
 * row of x over it, MR at a time. */
static void gemm_row(K4 *f, LLVMValueRef x, LLVMValueRef y, LLVMValueRef n, LLVMValueRef panel) {
  int64_t kb = f->k / 16, gc = f->block / 32, ng = f->k / f->block;
  Loop lg;
  LLVMValueRef g = loop_open(f, &lg, i64c(f, 0), "panel");
  LLVMValueRef prep = group_prep(f, absmax_at(f, LLVMBuildAdd(f->b, LLVMBuildMul(f->b, n, i64c(f, ng), ""), g, "")));
  for (int64_t j = 0; j < gc; j++) {
    LLVMValueRef c = LLVMBuildAdd(f->b, LLVMBuildMul(f->b, g, i64c(f, gc), ""), i64c(f, j), "");
    LLVMValueRef at = LLVMBuildAdd(f->b, LLVMBuildMul(f->b, n, i64c(f, f->k / 32), ""), c, "");
    LLVMValueRef w[2];
    weights32(f, prep, cg_at(f->b, f->codes, at, 16, 0), w);
    for (int h = 0; h < 2; h++)
      LLVMSetAlignment(LLVMBuildStore(f->b, w[h], cg_at(f->b, panel, c, 128, 64 * h)), 64);
  }
  loop_close(f, &lg, i64c(f, ng), 1, NULL, NULL, 0);

  for (int pass = 0; pass < 2; pass++) {
    int mr = pass == 0 ? MR : 1;
    int64_t lo = pass == 0 ? 0 : f->m / MR * MR, hi = pass == 0 ? f->m / MR * MR : f->m;
    if (lo >= hi)
      continue;
    Loop lm;
    LLVMValueRef m0 = loop_open(f, &lm, i64c(f, lo), "rows");
    LLVMValueRef zero = LLVMConstNull(f->v16f), acc[MR], phi[MR], xrow[MR];
    for (int r = 0; r < mr; r++) {
      LLVMValueRef mi = LLVMBuildAdd(f->b, m0, i64c(f, r), "");
      xrow[r] = cg_at(f->b, x, mi, 4 * f->x_stride, 0);
    }
    Loop lk;
    LLVMValueRef kk = loop_open(f, &lk, i64c(f, 0), "k");
    for (int r = 0; r < mr; r++)
      acc[r] = phi[r] = loop_phi(f, &lk, zero);
    LLVMValueRef wv = cg_load(f->b, f->v16f, cg_at(f->b, panel, kk, 64, 0), 64);
    for (int r = 0; r < mr; r++) {
      LLVMValueRef xv = cg_load(f->b, f->v16f, cg_at(f->b, xrow[r], kk, 64, 0), 4);
      acc[r] = LLVMBuildFAdd(f->b, acc[r], LLVMBuildFMul(f->b, xv, wv, ""), "");
    }
    loop_close(f, &lk, i64c(f, kb), 1, phi, acc, mr);
    for (int r = 0; r < mr; r++)
      store_y(f, y, LLVMBuildAdd(f->b, m0, i64c(f, r), ""), n, reduce16(f, acc[r]));
    loop_close(f, &lm, i64c(f, hi), mr, NULL, NULL, 0);
  }
}

/* The codes of [n, k/2] (even k low) repacked for the lookup: per 16 k
 * (codes16) byte j holds k0 + j low and k0 + 8 + j high; per 32 k for
 * pshufb (codes32) byte b holds slots b low and 16 + b high, slot s being
 * k0 + 8 (s % 16 / 4) + 4 (s / 16) + s % 4 (weights32_pshufb). */
static uint8_t *repack(IrArena *a, const uint8_t *w, int64_t n, int64_t k, bool codes32) {
  uint8_t *p = ir_alloc(a, (size_t)(n * k / 2));
  for (int64_t r = 0; r < n; r++)
    for (int64_t k0 = 0; k0 < k; k0 += 16)
      for (int j = 0; j < 8; j++) {
        int64_t a0 = k0 + j, a1 = k0 + 8 + j;
        if (codes32) {
          int64_t c0 = k0 / 32 * 32, s0 = k0 % 32 / 2 + j, s1 = 16 + s0;
          a0 = c0 + 8 * (s0 % 16 / 4) + 4 * (s0 / 16) + s0 % 4;
          a1 = c0 + 8 * (s1 % 16 / 4) + 4 * (s1 / 16) + s1 % 4;
        }
        int c0 = (w[r * (k / 2) + a0 / 2] >> (4 * (a0 % 2))) & 15;
        int c1 = (w[r * (k / 2) + a1 / 2] >> (4 * (a1 % 2))) & 15;
        p[r * (k / 2) + k0 / 2 + j] = (uint8_t)(c0 | c1 << 4);
      }
  return p;
}

static LLVMValueRef const_bytes(Cg *cg, const char *base, const char *what, const void *d,
                                size_t size) {
  char name[600];
  snprintf(name, sizeof name, "%s.%s", base, what);
  LLVMValueRef g = LLVMGetNamedGlobal(cg->mod, name); /* the variants share it */
  return g ? g : cg_const_bytes(cg, name, d, size);
}

bool cg_emit_linear_4bit(Cg *cg, int idx, CgIsa isa) {
  IrModule *m = cg->m;
  IrNode *n = m->nodes[idx];
  const IrValue *x = n->opnds[0], *w = n->opnds[1];
  bool dq = ir_attr_int(n, IR_ATTR_DOUBLE_QUANT, 0) != 0;
  int nfixed = dq ? 4 : 3;
  const IrValue *bv = n->nopnds > nfixed ? n->opnds[nfixed] : NULL;
  const Loc *xl = &cg->loc[x->id], *yl = &cg->loc[n->result->id];
  int code = ir_attr_name(n, IR_ATTR_CODE, IR_4BIT_NF4);
  K4 f = {.ctx = cg->ctx, .mod = cg->mod, .b = cg->b, .lookup = lookup_of(isa)};
  f.nr = nr_of(f.lookup);
  f.m = xl->rows;
  f.k = x->type.dims[x->type.rank - 1];
  f.n = w->type.dims[0];
  f.block = ir_attr_int(n, IR_ATTR_BLOCK, 64);
  f.x_stride = xl->stride;
  f.y_stride = yl->stride;
  f.dq = dq;
  f.code = code;
  int64_t ntasks = (f.n + TASK_N - 1) / TASK_N;
  if (!cg->kernel[idx]) {
    char name[480];
    snprintf(name, sizeof name, "%s.%s.q8_%s_%s%lld%s_%lldx%lld_%s", cg->prefix,
             n->result->name, f.m == 1 ? "gemv" : "gemm", code ? "fp4" : "nf4",
             (long long)f.block, dq ? "dq" : "", (long long)(f.m == 1 ? 1 : MR),
             (long long)(f.m == 1 ? f.nr : 1), cg_isa_info[isa].name);
    f.i8 = cg->i8;
    f.i32 = cg->i32;
    f.i64 = cg->i64;
    f.f32 = cg->f32;
    f.ptr = cg->ptr;
    f.v16f = LLVMVectorType(f.f32, 16);
    f.v16i = LLVMVectorType(f.i32, 16);
    f.v8i8 = LLVMVectorType(f.i8, 8);
    /* The constants, shared by the variants (cg_const_bytes names them). */
    char cname[480];
    snprintf(cname, sizeof cname, "%s.%s.w4", cg->prefix, n->result->name);
    bool c32 = f.lookup == LOOKUP_PSHUFB;
    f.codes = const_bytes(cg, cname, c32 ? "codes32" : "codes16",
                          repack(m->arena, w->data, f.n, f.k, c32), (size_t)(f.n * f.k / 2));
    int64_t groups = f.n * (f.k / f.block);
    f.absmax = const_bytes(cg, cname, "absmax", n->opnds[2]->data,
                           (size_t)groups * (dq ? 1 : sizeof(float)));
    if (dq) {
      f.absmax2 = const_bytes(cg, cname, "absmax2", n->opnds[3]->data,
                              (size_t)((groups + 255) / 256 + 1) * sizeof(float));
      f.dq_map = const_bytes(cg, cg->prefix, "w4.dq_map", q8_ref_dq_map, sizeof q8_ref_dq_map);
    }
    f.bias = bv ? const_bytes(cg, cname, "bias", bv->data, (size_t)f.n * sizeof(float)) : NULL;
    LLVMValueRef tv[16];
    for (int i = 0; i < 16; i++)
      tv[i] = LLVMConstReal(f.f32, q8_ref_4bit_tables[code][i]);
    f.table = LLVMConstVector(tv, 16);

    LLVMTypeRef fty = LLVMFunctionType(cg->vd, (LLVMTypeRef[]){cg->ptr, cg->i64}, 2, 0);
    f.fn = LLVMAddFunction(cg->mod, name, fty);
    LLVMSetLinkage(f.fn, LLVMPrivateLinkage);
    cg_set_isa_attrs(f.fn, isa);
    /* A kernel of its own name in the assembly and in profiles. */
    LLVMAddAttributeAtIndex(f.fn, LLVMAttributeFunctionIndex,
                            LLVMCreateEnumAttribute(cg->ctx, LLVMGetEnumAttributeKindForName("noinline", 8), 0));
    LLVMBuilderRef saved = cg->b;
    LLVMBasicBlockRef saved_bb = LLVMGetInsertBlock(saved);
    f.b = LLVMCreateBuilderInContext(cg->ctx);
    LLVMPositionBuilderAtEnd(f.b, LLVMAppendBasicBlockInContext(cg->ctx, f.fn, "entry"));
    /* args: {const float *x, float *y} */
    LLVMValueRef args = LLVMGetParam(f.fn, 0), task = LLVMGetParam(f.fn, 1);
    LLVMTypeRef aty = LLVMStructTypeInContext(cg->ctx, (LLVMTypeRef[]){cg->ptr, cg->ptr}, 2, 0);
    LLVMValueRef xp = LLVMBuildLoad2(f.b, cg->ptr, LLVMBuildStructGEP2(f.b, aty, args, 0, ""), "x");
    LLVMValueRef yp = LLVMBuildLoad2(f.b, cg->ptr, LLVMBuildStructGEP2(f.b, aty, args, 1, ""), "y");
    LLVMValueRef panel = NULL;
    if (f.lookup == LOOKUP_SCALAR)
    {
      f.table_mem = LLVMBuildAlloca(f.b, LLVMArrayType(f.f32, 16), "table");
      LLVMSetAlignment(f.table_mem, 64);
    }
    if (f.m > 1) {
      panel = LLVMBuildArrayAlloca(f.b, f.f32, i64c(&f, f.k), "panel");
      LLVMSetAlignment(panel, 64);
    }
    /* This task's rows of W: [n0, n1). */
    LLVMValueRef n0 = LLVMBuildMul(f.b, task, i64c(&f, TASK_N), "");
    LLVMValueRef n1 = LLVMBuildAdd(f.b, n0, i64c(&f, TASK_N), "");
    n1 = LLVMBuildSelect(f.b, LLVMBuildICmp(f.b, LLVMIntSLT, n1, i64c(&f, f.n), ""), n1,
                         i64c(&f, f.n), "");
    if (f.m == 1) {
      /* f.nr rows at a time while they fit, then one at a time. */
      LLVMValueRef span = LLVMBuildSub(f.b, n1, n0, "");
      LLVMValueRef nfull = LLVMBuildAdd(
          f.b, n0, LLVMBuildMul(f.b, LLVMBuildSDiv(f.b, span, i64c(&f, f.nr), ""), i64c(&f, f.nr), ""), "");
      for (int pass = 0; pass < 2; pass++) {
        LLVMValueRef lo = pass == 0 ? n0 : nfull, hi = pass == 0 ? nfull : n1;
        LLVMBasicBlockRef run = LLVMAppendBasicBlockInContext(cg->ctx, f.fn, "");
        LLVMBasicBlockRef skip = LLVMAppendBasicBlockInContext(cg->ctx, f.fn, "");
        LLVMBuildCondBr(f.b, LLVMBuildICmp(f.b, LLVMIntSLT, lo, hi, ""), run, skip);
        LLVMPositionBuilderAtEnd(f.b, run);
        Loop ln;
        LLVMValueRef r = loop_open(&f, &ln, lo, "n");
        gemv_rows(&f, xp, yp, r, pass == 0 ? f.nr : 1);
        loop_close(&f, &ln, hi, pass == 0 ? f.nr : 1, NULL, NULL, 0);
        LLVMBuildBr(f.b, skip);
        LLVMPositionBuilderAtEnd(f.b, skip);
      }
    } else {
      Loop ln;
      LLVMValueRef r = loop_open(&f, &ln, n0, "n");
      gemm_row(&f, xp, yp, r, panel);
      loop_close(&f, &ln, n1, 1, NULL, NULL, 0);
    }
    LLVMBuildRetVoid(f.b);
    LLVMDisposeBuilder(f.b);
    LLVMPositionBuilderAtEnd(saved, saved_bb);
    cg->kernel[idx] = f.fn;
    cg->kernel_tasks[idx] = ntasks;
  }
  /* {x, y} on the entry's stack, then the tasks. */
  LLVMTypeRef aty = LLVMStructTypeInContext(cg->ctx, (LLVMTypeRef[]){cg->ptr, cg->ptr}, 2, 0);
  LLVMValueRef args = LLVMBuildAlloca(cg->b, aty, "w4.args");
  LLVMBuildStore(cg->b, cg_value_addr(cg, x), LLVMBuildStructGEP2(cg->b, aty, args, 0, ""));
  LLVMBuildStore(cg->b, cg_value_addr(cg, n->result), LLVMBuildStructGEP2(cg->b, aty, args, 1, ""));
  cg_run_tasks(cg, cg->kernel[idx], args, cg->kernel_tasks[idx], f.m * f.n * f.k >= (1 << 18));
  return true;
}
