/* aarch64/qgemm.c: the int8 GEMM kernels for AArch64, y[m, n] =
 * requant(bias[n] + sum_k x[m, k] * wq[n, k]), emitted as LLVM IR specialised
 * to one layer's shapes: the same task function (gemm_tasks.c), tiles and
 * epilogue as x86/qgemm.c, with NEON's 128-bit vectors (32 of them) and three
 * ways to multiply (DOT, MMLA, MULL), and the weights packed in this file's
 * own layout. The forms, signedness, layout, tile choice and edges are in
 * docs/kernels.md, "The AArch64 kernels". */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <llvm-c/DebugInfo.h>

#include "../codegen.h"

typedef enum { FORM_DOT, FORM_MMLA, FORM_MULL } Form;

enum {
  MAX_MR = 8,    /* rows of a tile (isa.def's max_mr may not exceed it) */
  MAX_AROWS = 8, /* accumulator rows: rows, or row pairs for MMLA */
  MAX_NV = 8,    /* weight vectors of a block */
  MAX_KS = 4,
  MIN_CHAINS = 8, /* independent accumulators that hide the latency */
};

typedef struct {
  LLVMContextRef ctx;
  LLVMModuleRef mod;
  LLVMBuilderRef b;
  const CgGemm *g;
  CgIsa isa;
  char name[512]; /* the kernel's (cg_gemm_name) */
  Form form;
  bool flip;      /* u8 x multiplied as x ^ 0x80 (bias corrected) */
  bool mixed;     /* u8 x by s8 w in one instruction (sudot, usmmla) */
  bool pairs_fit; /* MULL: two products summed in i16 cannot overflow */
  int cpv;        /* channels per weight vector */
  int kstep;      /* K values per channel in a weight vector: 16 / cpv */
  int spc;        /* steps per 16-byte chunk of x: 16 / kstep */
  int64_t ksteps; /* ceil(K / kstep) */
  int64_t nq;     /* quads of channels, ceil(N / 4) */
  int qb, nv;     /* quads and weight vectors of a full block */
  int64_t nblocks;
  int mr, arows, ks;
  int64_t mtiles;
  int64_t ysize; /* bytes per output element */
  LLVMTypeRef i8, i16, i32, i64, f32, ptr, vd, v16i8, v4i32, v2i64, v8i16;
  LLVMValueRef w, bias, mult; /* constant globals */
} Gemm;

/* ---- small IR helpers (irbuild.c, with this file's state) ---- */

static LLVMValueRef i32c(Gemm *e, int64_t v) { return LLVMConstInt(e->i32, (uint64_t)v, 1); }
static LLVMValueRef i64c(Gemm *e, int64_t v) { return LLVMConstInt(e->i64, (uint64_t)v, 1); }
static int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

static LLVMValueRef splat(LLVMValueRef c, unsigned n) { return cg_splat(c, n); }

static LLVMValueRef shuffle(Gemm *e, LLVMValueRef a, LLVMValueRef b, const int *idx, unsigned n) {
  return cg_shuffle(e->b, a, b, idx, n);
}

static LLVMValueRef intrinsic(Gemm *e, const char *name, LLVMTypeRef *over, size_t nover,
                              LLVMValueRef *args, unsigned nargs) {
  return cg_intrinsic(e->mod, e->b, name, over, nover, args, nargs);
}

/* base + i * scale + off bytes, i an i64 value. */
static LLVMValueRef at(Gemm *e, LLVMValueRef base, LLVMValueRef i, int64_t scale, int64_t off) {
  return cg_at(e->b, base, i, scale, off);
}

static LLVMValueRef load(Gemm *e, LLVMTypeRef t, LLVMValueRef p, unsigned align) {
  return cg_load(e->b, t, p, align);
}

static LLVMValueRef bitcast(Gemm *e, LLVMValueRef v, LLVMTypeRef t) {
  return LLVMBuildBitCast(e->b, v, t, "");
}

static LLVMValueRef private_const(Gemm *e, const char *suffix, LLVMValueRef init) {
  char name[600];
  snprintf(name, sizeof name, "%s.%s", e->name, suffix);
  return cg_private_const(e->mod, name, init);
}

/* Keep LLVM from unrolling the loop whose back edge is `br`: a K loop of a
 * few trips, fully unrolled, let the scheduler hoist loads until the
 * accumulators spilled (seen with the 4x16c8 tile at K = 64). One trip is
 * already a 16-byte chunk of every row against the whole block. */
static void no_unroll(Gemm *e, LLVMValueRef br) {
  LLVMMetadataRef self = LLVMTemporaryMDNode(e->ctx, NULL, 0);
  LLVMMetadataRef name = LLVMMDStringInContext2(e->ctx, "llvm.loop.unroll.disable", 24);
  LLVMMetadataRef ops[2] = {self, LLVMMDNodeInContext2(e->ctx, &name, 1)};
  LLVMMetadataRef id = LLVMMDNodeInContext2(e->ctx, ops, 2);
  LLVMMetadataReplaceAllUsesWith(self, id); /* the loop ID names itself */
  LLVMSetMetadata(br, LLVMGetMDKindIDInContext(e->ctx, "llvm.loop", 9),
                  LLVMMetadataAsValue(e->ctx, id));
}

/* ---- choosing the form and the tile ---- */

/* wq[c, k], 0 past K (the packed zero padding). */
static int32_t weight(const CgGemm *g, int64_t c, int64_t k) {
  return k < g->k ? g->wq[c * g->k + k] : 0;
}

/* Can x[k] * w[k] + x[k + 8] * w[k + 8], the i16 sum smull + smlal2 form for
 * one lane of a 16-byte chunk, leave int16 for some x in [lo, hi] (the
 * signed values the kernel multiplies)? A product is linear in x, so its
 * extremes are at the ends of the range, and the two x vary independently. */
static bool pairs_fit(const CgGemm *g, int32_t lo, int32_t hi) {
  for (int64_t c = 0; c < g->n; c++)
    for (int64_t k0 = 0; k0 < g->k; k0 += 16)
      for (int l = 0; l < 8; l++) {
        int32_t w0 = weight(g, c, k0 + l), w1 = weight(g, c, k0 + l + 8);
        int32_t a0 = lo * w0, b0 = hi * w0, a1 = lo * w1, b1 = hi * w1;
        int32_t max = (a0 > b0 ? a0 : b0) + (a1 > b1 ? a1 : b1);
        int32_t min = (a0 < b0 ? a0 : b0) + (a1 < b1 ? a1 : b1);
        if (max > INT16_MAX || min < INT16_MIN)
          return false;
      }
  return true;
}

/* The variant's form (isa.def); i8mm's MMLA falls back to DOT for one row,
 * with i8mm's mixed-sign sudot. */
static void choose_form(Gemm *e) {
  const CgGemm *g = e->g;
  bool u8 = g->x_dtype == IR_U8;
  switch (cg_isa_info[e->isa].form) {
  case CG_FORM_MMLA:
    /* A run-time M keeps one layout for every M: MMLA's (M = 1 pairs its
     * row with itself). */
    e->form = g->m >= 2 || g->runtime_m ? FORM_MMLA : FORM_DOT;
    e->mixed = u8;
    break;
  case CG_FORM_DOT:
    e->form = FORM_DOT;
    e->flip = u8;
    break;
  case CG_FORM_MULL:
    e->form = FORM_MULL;
    e->flip = u8;
    break;
  default:
    q8_die("isa.def: %s has no AArch64 form", cg_isa_info[e->isa].name);
  }
  e->cpv = e->form == FORM_DOT ? 4 : e->form == FORM_MMLA ? 2 : 1;
  e->kstep = 16 / e->cpv;
  e->spc = 16 / e->kstep;
  if (e->form == FORM_MULL) {
    int32_t lo = g->x_min, hi = g->x_max;
    if (lo > hi)
      ir_qbounds(g->x_dtype, &lo, &hi);
    if (e->flip) {
      lo -= 128;
      hi -= 128;
    }
    /* Weights packed at run time may take any value. */
    e->pairs_fit = !g->runtime_w && pairs_fit(g, lo, hi);
  }
}

/* Split K when a tile of mr rows has too few independent chains (e->arows:
 * its accumulator rows). */
static void choose_ks(Gemm *e, int mr) {
  const int regs = cg_isa_info[e->isa].vregs;
  int xregs = e->form == FORM_MMLA ? 2 : 1;
  int fixed = e->nv + 2;
  e->arows = e->form == FORM_MMLA ? (mr + 1) / 2 : mr;
  int chains = e->arows * e->nv;
  e->ks = 1;
  while (e->ks < MAX_KS && chains * e->ks < MIN_CHAINS &&
         (e->ks + 1) * chains + e->arows * xregs + fixed <= regs)
    e->ks++;
}

static void choose_tile(Gemm *e) {
  const CgGemm *g = e->g;
  const CgIsaInfo *info = &cg_isa_info[e->isa];
  const int regs = info->vregs;
  if (info->max_mr > MAX_MR || info->max_mr > MAX_AROWS || info->max_nrv * 4 / e->cpv > MAX_NV)
    q8_die("isa.def: %s's tile limits exceed aarch64/qgemm.c's arrays", info->name);
  /* Columns: max_nrv quads (16 channels; 8 for MULL, whose accumulators
   * hold one channel each), spread evenly: 5 quads are 3 + 2, not 4 + 1. */
  int qb_max = info->max_nrv;
  int64_t qb = e->nq < qb_max ? e->nq : qb_max;
  e->nblocks = ceil_div(e->nq, qb);
  e->qb = (int)ceil_div(e->nq, e->nblocks);
  e->nv = e->qb * 4 / e->cpv;
  /* Rows: as many as the registers left hold. An MMLA accumulator row is a
   * pair of rows and holds two x registers (the loads and their zips). */
  int rows_per = e->form == FORM_MMLA ? 2 : 1;
  int xregs = e->form == FORM_MMLA ? 2 : 1;
  int fixed = e->nv + 2;
  int arows = (regs - fixed) / (e->nv + xregs);
  arows = arows < 1 ? 1 : arows > MAX_AROWS ? MAX_AROWS : arows;
  int64_t mr = (int64_t)arows * rows_per;
  mr = mr > info->max_mr ? info->max_mr : mr;
  if (g->runtime_m) {
    /* A run-time M: the most rows; the tail is chosen at run time. */
    e->mtiles = 0;
    e->mr = (int)mr;
    choose_ks(e, e->mr);
    return;
  }
  int64_t m_even = e->form == FORM_MMLA ? (g->m + 1) / 2 * 2 : g->m;
  if (mr > m_even)
    mr = m_even;
  /* Spread evenly over M (MMLA: whole pairs). */
  e->mtiles = ceil_div(g->m, mr);
  mr = ceil_div(g->m, e->mtiles);
  if (e->form == FORM_MMLA) {
    mr = (mr + 1) / 2 * 2;
    e->mtiles = ceil_div(g->m, mr);
  }
  e->mr = (int)mr;
  choose_ks(e, e->mr);
}

/* ---- one chunk of K ---- */

/* The accumulators of a tile: acc[set][accumulator row][vector]. */
typedef LLVMValueRef Accs[MAX_KS][MAX_AROWS][MAX_NV];

/* 16 bytes of row `row` at chunk j, of which only `bytes` (4, 8, 12 or 16)
 * are read, the rest zero; flipped to signed when the form wants it. */
static LLVMValueRef load_x(Gemm *e, LLVMValueRef row, LLVMValueRef j, int bytes) {
  LLVMValueRef v;
  if (bytes == 16) {
    v = load(e, e->v16i8, at(e, row, j, 16, 0), 1);
  } else {
    v = LLVMConstNull(e->v4i32);
    for (int o = 0; o < bytes; o += 4)
      v = LLVMBuildInsertElement(e->b, v, load(e, e->i32, at(e, row, j, 16, o), 1), i32c(e, o / 4),
                                 "");
    v = bitcast(e, v, e->v16i8);
  }
  if (e->flip) /* u8 -> s8: x - 128 */
    v = LLVMBuildXor(e->b, v, splat(LLVMConstInt(e->i8, 0x80, 0), 16), "");
  return v;
}

/* The weights of step t of chunk j of this block: nv vectors. */
static void load_weights(Gemm *e, LLVMValueRef w, LLVMValueRef j, int t, int nv,
                         LLVMValueRef out[MAX_NV]) {
  for (int v = 0; v < nv; v++)
    out[v] =
        load(e, e->v16i8, at(e, w, j, (int64_t)e->spc * nv * 16, ((int64_t)t * nv + v) * 16), 16);
}

static LLVMValueRef half(Gemm *e, LLVMValueRef v, int hi) {
  static const int lo8[8] = {0, 1, 2, 3, 4, 5, 6, 7}, hi8[8] = {8, 9, 10, 11, 12, 13, 14, 15};
  return shuffle(e, v, NULL, hi ? hi8 : lo8, 8);
}

/* Multiply-accumulate chunk j (a loop counter or a constant) of mr rows
 * starting at x into acc: `steps` steps (fewer than spc in the last, partial
 * chunk of `bytes` bytes), step t into set set_of[t]. */
static void chunk(Gemm *e, int mr, int nv, LLVMValueRef x, LLVMValueRef w, LLVMValueRef j,
                  int bytes, int steps, const int *set_of, Accs acc) {
  const CgGemm *g = e->g;
  LLVMValueRef xv[MAX_MR], wv[MAX_NV];
  /* Load the rows' chunks (MMLA: both rows of each pair, the odd last row
   * paired with itself). */
  int arows = e->form == FORM_MMLA ? (mr + 1) / 2 : mr;
  int nx = e->form == FORM_MMLA ? 2 * arows : mr;
  for (int r = 0; r < nx; r++) {
    int rr = r < mr ? r : mr - 1;
    xv[r] = load_x(e, at(e, x, i64c(e, rr), g->x_stride, 0), j, bytes);
  }
  switch (e->form) {
  case FORM_DOT:
    /* sdot/sudot by element: lane t of x (4 bytes) against 4 channels. */
    for (int r = 0; r < mr; r++)
      xv[r] = bitcast(e, xv[r], e->v4i32);
    for (int t = 0; t < steps; t++) {
      load_weights(e, w, j, t, nv, wv);
      int lane[4] = {t, t, t, t};
      for (int r = 0; r < mr; r++) {
        LLVMValueRef xs = bitcast(e, shuffle(e, xv[r], NULL, lane, 4), e->v16i8);
        for (int v = 0; v < nv; v++) {
          LLVMValueRef *a = &acc[set_of[t]][r][v];
          LLVMTypeRef over[2] = {e->v4i32, e->v16i8};
          *a = e->mixed ? intrinsic(e, "llvm.aarch64.neon.usdot", over, 2,
                                    (LLVMValueRef[]){*a, xs, wv[v]}, 3)
                        : intrinsic(e, "llvm.aarch64.neon.sdot", over, 2,
                                    (LLVMValueRef[]){*a, wv[v], xs}, 3);
        }
      }
    }
    return;
  case FORM_MMLA: {
    /* Step t of a pair: the 8 bytes of step t of both rows, one 2x8 matrix. */
    for (int r = 0; r < nx; r++)
      xv[r] = bitcast(e, xv[r], e->v2i64);
    for (int t = 0; t < steps; t++) {
      load_weights(e, w, j, t, nv, wv);
      int idx[2] = {t, 2 + t};
      for (int p = 0; p < arows; p++) {
        LLVMValueRef xp = bitcast(e, shuffle(e, xv[2 * p], xv[2 * p + 1], idx, 2), e->v16i8);
        for (int v = 0; v < nv; v++) {
          LLVMValueRef *a = &acc[set_of[t]][p][v];
          *a =
              intrinsic(e, e->mixed ? "llvm.aarch64.neon.usmmla" : "llvm.aarch64.neon.smmla",
                        (LLVMTypeRef[]){e->v4i32, e->v16i8}, 2, (LLVMValueRef[]){*a, xp, wv[v]}, 3);
        }
      }
    }
    return;
  }
  case FORM_MULL: {
    /* smull of the low 8 bytes, smlal2 of the high 8, sadalp: one channel's
     * 16 products into its 4 lanes. */
    LLVMValueRef xlo[MAX_MR], xhi[MAX_MR];
    for (int r = 0; r < mr; r++) {
      xlo[r] = half(e, xv[r], 0);
      xhi[r] = half(e, xv[r], 1);
    }
    load_weights(e, w, j, 0, nv, wv);
    LLVMTypeRef p16 = e->v8i16, p32[2] = {e->v4i32, e->v8i16};
    for (int v = 0; v < nv; v++) {
      LLVMValueRef wlo = half(e, wv[v], 0), whi = half(e, wv[v], 1);
      for (int r = 0; r < mr; r++) {
        LLVMValueRef lo =
            intrinsic(e, "llvm.aarch64.neon.smull", &p16, 1, (LLVMValueRef[]){xlo[r], wlo}, 2);
        LLVMValueRef hi =
            intrinsic(e, "llvm.aarch64.neon.smull", &p16, 1, (LLVMValueRef[]){xhi[r], whi}, 2);
        LLVMValueRef *a = &acc[set_of[0]][r][v];
        if (e->pairs_fit) {
          LLVMValueRef s = LLVMBuildAdd(e->b, lo, hi, "");
          *a = LLVMBuildAdd(e->b, *a, intrinsic(e, "llvm.aarch64.neon.saddlp", p32, 2, &s, 1), "");
        } else {
          *a = LLVMBuildAdd(e->b, *a, intrinsic(e, "llvm.aarch64.neon.saddlp", p32, 2, &lo, 1), "");
          *a = LLVMBuildAdd(e->b, *a, intrinsic(e, "llvm.aarch64.neon.saddlp", p32, 2, &hi, 1), "");
        }
      }
    }
    return;
  }
  }
  q8_unreachable();
}

/* ---- requantization ---- */

/* Requantize one vector of 4 channel sums (bias included) and store its first
 * `valid` lanes at y. The arithmetic of x86/qgemm.c's requant_store. */
static void requant_store(Gemm *e, LLVMValueRef acc, LLVMValueRef mult, LLVMValueRef fbias,
                          LLVMValueRef y, int valid) {
  const CgGemm *g = e->g;
  LLVMTypeRef fv = LLVMVectorType(e->f32, 4);
  LLVMValueRef zero = LLVMConstNull(fv);
  /* f32(f32(acc) * mult): scvtf, fmul; two roundings, nothing fused; then
   * qlinear_dyn's f32 bias, a third. */
  LLVMValueRef v = LLVMBuildFMul(e->b, LLVMBuildSIToFP(e->b, acc, fv, ""), mult, "");
  if (fbias)
    v = LLVMBuildFAdd(e->b, v, fbias, "");
  LLVMValueRef out;
  if (g->y_dtype == IR_F32) {
    out = v;
    if (g->relu) /* y > 0 ? y : +0.0 (NaN and -0.0 give +0.0) */
      out = LLVMBuildSelect(e->b, LLVMBuildFCmp(e->b, LLVMRealOGT, v, zero, ""), v, zero, "");
  } else {
    /* clamp(rint(v), y_min - zp, y_max - zp) + zp, NaN -> zp; frintn. */
    LLVMValueRef r = intrinsic(e, "llvm.roundeven", &fv, 1, &v, 1);
    LLVMValueRef lo = splat(LLVMConstReal(e->f32, (float)(g->y_min - g->y_zero_point)), 4);
    LLVMValueRef hi = splat(LLVMConstReal(e->f32, (float)(g->y_max - g->y_zero_point)), 4);
    r = LLVMBuildSelect(e->b, LLVMBuildFCmp(e->b, LLVMRealOLT, r, lo, ""), lo, r, "");
    r = LLVMBuildSelect(e->b, LLVMBuildFCmp(e->b, LLVMRealOGT, r, hi, ""), hi, r, "");
    r = LLVMBuildSelect(e->b, LLVMBuildFCmp(e->b, LLVMRealUNO, r, r, ""), zero, r, "");
    LLVMValueRef q = LLVMBuildAdd(e->b, LLVMBuildFPToSI(e->b, r, e->v4i32, ""),
                                  splat(i32c(e, g->y_zero_point), 4), "");
    out = LLVMBuildTrunc(e->b, q, LLVMVectorType(e->i8, 4), ""); /* in range already */
  }
  if (valid < 4) {
    static const int idx[3] = {0, 1, 2};
    out = valid == 1 ? LLVMBuildExtractElement(e->b, out, i32c(e, 0), "")
                     : shuffle(e, out, NULL, idx, (unsigned)valid);
  }
  LLVMSetAlignment(LLVMBuildStore(e->b, out, y), 1);
}

/* The sums of quad q (channels 4q .. 4q + 3 of the block) for row r. */
static LLVMValueRef quad_sums(Gemm *e, Accs acc, int r, int q) {
  switch (e->form) {
  case FORM_DOT:
    return acc[0][r][q];
  case FORM_MMLA: {
    /* acc[p][v] is [r0 c0, r0 c1, r1 c0, r1 c1] of channels 2v, 2v + 1. */
    static const int top[4] = {0, 1, 4, 5}, bottom[4] = {2, 3, 6, 7};
    return shuffle(e, acc[0][r / 2][2 * q], acc[0][r / 2][2 * q + 1], r % 2 ? bottom : top, 4);
  }
  case FORM_MULL: {
    /* addp, addp: the 4 lanes of each of 4 channels into one lane each. */
    LLVMTypeRef vt = e->v4i32;
    LLVMValueRef *a = &acc[0][r][4 * q];
    LLVMValueRef s01 =
        intrinsic(e, "llvm.aarch64.neon.addp", &vt, 1, (LLVMValueRef[]){a[0], a[1]}, 2);
    LLVMValueRef s23 =
        intrinsic(e, "llvm.aarch64.neon.addp", &vt, 1, (LLVMValueRef[]){a[2], a[3]}, 2);
    return intrinsic(e, "llvm.aarch64.neon.addp", &vt, 1, (LLVMValueRef[]){s01, s23}, 2);
  }
  }
  q8_unreachable();
}

/* ---- the tile ---- */

/* void tile(x, y, w, bias, mult, rows): mr rows from x, nv weight vectors of
 * the block stream w (bias, mult at the block's first channel; rows at the
 * tile's first row), the last quad with `last_valid` valid channels, into y. */
static LLVMValueRef emit_tile(Gemm *e, int mr, int nv, int last_valid) {
  const CgGemm *g = e->g;
  char name[600];
  snprintf(name, sizeof name, "%s.%dx%d", e->name, mr, (nv * e->cpv / 4 - 1) * 4 + last_valid);
  LLVMTypeRef pt[6] = {e->ptr, e->ptr, e->ptr, e->ptr, e->ptr, e->ptr};
  LLVMValueRef fn = LLVMAddFunction(e->mod, name, LLVMFunctionType(e->vd, pt, 6, 0));
  LLVMSetLinkage(fn, LLVMPrivateLinkage);
  cg_set_isa_attrs(fn, e->isa);
  LLVMValueRef x = LLVMGetParam(fn, 0), y = LLVMGetParam(fn, 1), w = LLVMGetParam(fn, 2);
  LLVMValueRef bias = LLVMGetParam(fn, 3), mult = LLVMGetParam(fn, 4);
  LLVMValueRef rows = LLVMGetParam(fn, 5);
  LLVMBasicBlockRef entry = LLVMAppendBasicBlockInContext(e->ctx, fn, "entry");
  LLVMPositionBuilderAtEnd(e->b, entry);
  int arows = e->form == FORM_MMLA ? (mr + 1) / 2 : mr;

  /* The accumulators start at 0; the bias is added after the K loop. */
  Accs acc;
  for (int s = 0; s < e->ks; s++)
    for (int r = 0; r < arows; r++)
      for (int v = 0; v < nv; v++)
        acc[s][r][v] = LLVMConstNull(e->v4i32);

  /* Whole chunks: the 16 bytes of a row up to round_up(K, 4). A trip of the
   * loop takes `unroll` chunks, so that step s of K feeds set s % ks. */
  int64_t kpad4 = (g->k + 3) / 4 * 4;
  int64_t nfull = kpad4 / 16;
  int unroll = e->ks > e->spc ? e->ks / e->spc : 1;
  int64_t trips = nfull / unroll;
  int set_of[MAX_KS * 4];
  if (trips > 0) {
    LLVMBasicBlockRef loop = LLVMAppendBasicBlockInContext(e->ctx, fn, "k.loop");
    LLVMBasicBlockRef done = LLVMAppendBasicBlockInContext(e->ctx, fn, "k.done");
    LLVMBuildBr(e->b, loop);
    LLVMPositionBuilderAtEnd(e->b, loop);
    LLVMValueRef i = LLVMBuildPhi(e->b, e->i64, "k");
    Accs phi, init;
    memcpy(init, acc, sizeof acc);
    for (int s = 0; s < e->ks; s++)
      for (int r = 0; r < arows; r++)
        for (int v = 0; v < nv; v++)
          phi[s][r][v] = acc[s][r][v] = LLVMBuildPhi(e->b, e->v4i32, "acc");
    for (int u = 0; u < unroll; u++) {
      LLVMValueRef j =
          LLVMBuildAdd(e->b, LLVMBuildMul(e->b, i, i64c(e, unroll), ""), i64c(e, u), "");
      for (int t = 0; t < e->spc; t++)
        set_of[t] = (u * e->spc + t) % e->ks;
      chunk(e, mr, nv, x, w, j, 16, e->spc, set_of, acc);
    }
    LLVMValueRef next = LLVMBuildAdd(e->b, i, i64c(e, 1), "");
    LLVMBasicBlockRef latch = LLVMGetInsertBlock(e->b);
    no_unroll(e, LLVMBuildCondBr(e->b, LLVMBuildICmp(e->b, LLVMIntEQ, next, i64c(e, trips), ""),
                                 done, loop));
    LLVMValueRef zero = i64c(e, 0);
    LLVMAddIncoming(i, &zero, &entry, 1);
    LLVMAddIncoming(i, &next, &latch, 1);
    for (int s = 0; s < e->ks; s++)
      for (int r = 0; r < arows; r++)
        for (int v = 0; v < nv; v++) {
          LLVMAddIncoming(phi[s][r][v], &init[s][r][v], &entry, 1);
          LLVMAddIncoming(phi[s][r][v], &acc[s][r][v], &latch, 1);
        }
    LLVMPositionBuilderAtEnd(e->b, done);
  }
  /* The whole chunks the unrolled loop left, then the K tail: the last
   * partial chunk, its bytes and steps only. */
  int64_t nchunks = nfull + (kpad4 % 16 != 0);
  for (int64_t j = trips * unroll; j < nchunks; j++) {
    int bytes = j < nfull ? 16 : (int)(kpad4 % 16);
    int steps = j < nfull ? e->spc : (int)(e->ksteps - j * e->spc);
    for (int t = 0; t < steps; t++)
      set_of[t] = (int)((j * e->spc + t) % e->ks);
    chunk(e, mr, nv, x, w, i64c(e, j), bytes, steps, set_of, acc);
  }

  /* Requantize: sum the K sets, gather each quad's sums, add the bias. */
  for (int s = 1; s < e->ks; s++)
    for (int r = 0; r < arows; r++)
      for (int v = 0; v < nv; v++)
        acc[0][r][v] = LLVMBuildAdd(e->b, acc[0][r][v], acc[s][r][v], "");
  int quads = nv * e->cpv / 4;
  LLVMTypeRef fv = LLVMVectorType(e->f32, 4);
  int64_t npad = e->nq * 4;
  for (int q = 0; q < quads; q++) {
    LLVMValueRef bv = load(e, e->v4i32, at(e, bias, i64c(e, q), 16, 0), 4);
    LLVMValueRef mv = load(e, fv, at(e, mult, i64c(e, q), 16, 0), 4);
    LLVMValueRef cs = NULL, fb = NULL;
    if (g->row_terms)
      cs = load(e, e->v4i32, at(e, bias, i64c(e, q), 16, npad * 4), 4);
    if (g->fbias)
      fb = load(e, fv, at(e, mult, i64c(e, q), 16, npad * 4), 4);
    for (int r = 0; r < mr; r++) {
      LLVMValueRef sum = LLVMBuildAdd(e->b, quad_sums(e, acc, r, q), bv, "");
      LLVMValueRef mr_v = mv;
      if (g->row_terms) {
        /* sum + add[r] - zp[r] * colsum (wrapping) */
        LLVMValueRef rec = at(e, rows, i64c(e, r), sizeof(CgGemmRow), 0);
        LLVMValueRef add = load(e, e->i32, rec, 4);
        LLVMValueRef zp = load(e, e->i32, at(e, rec, i64c(e, 0), 0, 4), 4);
        sum = LLVMBuildAdd(e->b, sum, cg_splat_value(e->b, add, 4), "");
        sum = LLVMBuildSub(e->b, sum, LLVMBuildMul(e->b, cg_splat_value(e->b, zp, 4), cs, ""), "");
        if (g->row_scale) { /* f32(scale[r] * mult[n]) */
          LLVMValueRef sc = load(e, e->f32, at(e, rec, i64c(e, 0), 0, 8), 4);
          mr_v = LLVMBuildFMul(e->b, cg_splat_value(e->b, sc, 4), mv, "");
        }
      }
      LLVMValueRef yp = at(e, y, i64c(e, r), g->y_stride * e->ysize, (int64_t)q * 4 * e->ysize);
      requant_store(e, sum, mr_v, fb, yp, q == quads - 1 ? last_valid : 4);
    }
  }
  LLVMBuildRetVoid(e->b);
  return fn;
}

/* ---- constants ---- */

/* The packed weights, the bias (corrected when x is flipped) and the
 * multipliers, padded to whole quads, as private constants. False when memory
 * runs out. Channels are grouped in quads (4 channels, one requantized
 * vector); a block of qb quads is one tile's columns, nv = 4 * qb / cpv
 * vectors; each block is one stream through K:
 *
 *     packed[block][step][v][i] = wq[c, k]   (0 past N or K)
 *     c = block * 4 * qb + v * cpv + i / kstep,  k = step * kstep + i % kstep
 */
static bool emit_constants(Gemm *e, size_t *wsize_out) {
  const CgGemm *g = e->g;
  int64_t block_bytes = e->ksteps * e->nv * 16;
  int last_nv = (int)(e->nq - (e->nblocks - 1) * e->qb) * 4 / e->cpv;
  size_t wsize = (size_t)((e->nblocks - 1) * block_bytes + e->ksteps * last_nv * 16);
  *wsize_out = wsize;
  int64_t npad = e->nq * 4;
  if (g->runtime_w)
    return true;
  /* With row_terms, the column sums follow the bias and the f32 bias the
   * multipliers. */
  int64_t halves = g->row_terms ? 2 : 1;
  int8_t *packed = calloc(wsize, 1);
  LLVMValueRef *bv = malloc(sizeof *bv * (size_t)(npad * halves)),
               *mv = malloc(sizeof *mv * (size_t)(npad * halves));
  if (!packed || !bv || !mv) {
    free(packed);
    free(bv);
    free(mv);
    return false;
  }
  for (int64_t blk = 0; blk < e->nblocks; blk++) {
    int nvb = blk == e->nblocks - 1 ? last_nv : e->nv;
    int8_t *base = packed + blk * block_bytes;
    int64_t c0 = blk * e->qb * 4;
    for (int64_t s = 0; s < e->ksteps; s++)
      for (int v = 0; v < nvb; v++)
        for (int i = 0; i < 16; i++) {
          int64_t c = c0 + v * e->cpv + i / e->kstep, k = s * e->kstep + i % e->kstep;
          if (c < g->n && k < g->k)
            base[(s * nvb + v) * 16 + i] = g->wq[c * g->k + k];
        }
  }
  e->w = private_const(e, "w", LLVMConstStringInContext2(e->ctx, (const char *)packed, wsize, 1));
  free(packed);

  for (int64_t c = 0; c < npad; c++) {
    uint32_t b = 0;
    float mu = 0;
    if (c < g->n) {
      b = (uint32_t)g->bias[c];
      if (e->flip) { /* the kernel adds -128 * sum_k wq[c, k]: put it back (wrapping) */
        uint32_t s = 0;
        for (int64_t i = 0; i < g->k; i++)
          s += (uint32_t)(int32_t)g->wq[c * g->k + i];
        b += 128u * s;
      }
      mu = g->mult[c];
    }
    bv[c] = LLVMConstInt(e->i32, b, 0);
    mv[c] = LLVMConstReal(e->f32, mu);
    if (halves == 2) {
      uint32_t s = 0;
      for (int64_t i = 0; c < g->n && i < g->k; i++)
        s += (uint32_t)(int32_t)g->wq[c * g->k + i];
      bv[npad + c] = LLVMConstInt(e->i32, s, 0);
      mv[npad + c] = LLVMConstReal(e->f32, c < g->n && g->fbias ? g->fbias[c] : 0.0);
    }
  }
  e->bias = private_const(e, "bias", LLVMConstArray2(e->i32, bv, (uint64_t)(npad * halves)));
  e->mult = private_const(e, "mult", LLVMConstArray2(e->f32, mv, (uint64_t)(npad * halves)));
  free(bv);
  free(mv);
  return true;
}

LLVMValueRef cg_emit_qgemm_aarch64(LLVMModuleRef mod, const CgGemm *g, CgIsa isa, int64_t *ntasks,
                                   char *err, size_t errlen) {
  if (cg_isa_info[isa].arch != CG_ARCH_AARCH64) {
    snprintf(err, errlen, "%s is not an AArch64 variant", cg_isa_info[isa].name);
    return NULL;
  }
  if (!cg_gemm_check(g, err, errlen))
    return NULL;

  Gemm e = {.mod = mod, .ctx = LLVMGetModuleContext(mod), .g = g, .isa = isa};
  e.b = LLVMCreateBuilderInContext(e.ctx);
  e.i8 = LLVMInt8TypeInContext(e.ctx);
  e.i16 = LLVMInt16TypeInContext(e.ctx);
  e.i32 = LLVMInt32TypeInContext(e.ctx);
  e.i64 = LLVMInt64TypeInContext(e.ctx);
  e.f32 = LLVMFloatTypeInContext(e.ctx);
  e.ptr = LLVMPointerTypeInContext(e.ctx, 0);
  e.vd = LLVMVoidTypeInContext(e.ctx);
  e.v16i8 = LLVMVectorType(e.i8, 16);
  e.v8i16 = LLVMVectorType(e.i16, 8);
  e.v4i32 = LLVMVectorType(e.i32, 4);
  e.v2i64 = LLVMVectorType(e.i64, 2);
  choose_form(&e);
  e.ksteps = ceil_div(g->k, e.kstep);
  e.nq = ceil_div(g->n, 4);
  e.ysize = g->y_dtype == IR_F32 ? 4 : 1;
  choose_tile(&e);
  if (!cg_gemm_name(mod, g, isa, e.mr, (int64_t)e.qb * 4, e.kstep, e.name, sizeof e.name, err,
                    errlen)) {
    LLVMDisposeBuilder(e.b);
    return NULL;
  }
  size_t wsize;
  if (!emit_constants(&e, &wsize)) {
    snprintf(err, errlen, "qgemm %s: out of memory packing %zu bytes of weights", g->name, wsize);
    LLVMDisposeBuilder(e.b);
    return NULL;
  }

  int last_qb = (int)(e.nq - (e.nblocks - 1) * e.qb);
  if (g->rt) /* emit_constants' layout */
    *g->rt = (CgGemmRuntime){.packed_bytes = (int64_t)wsize,
                             .npad = e.nq * 4,
                             .cb = (int64_t)e.qb * 4,
                             .block_bytes = e.ksteps * e.nv * 16,
                             .kstep = e.kstep,
                             .cpv = e.cpv,
                             .step_bytes = (int64_t)e.nv * 16,
                             .last_step_bytes = (int64_t)last_qb * 4 / e.cpv * 16,
                             .flip = e.flip ? 128 : 0};

  /* The tiles: full, and the last channel block and last rows when they
   * differ (CgGemmTiles.tile); the shared task function calls them. */
  int last_valid = (int)(g->n - (e.nq - 1) * 4);
  int last_mr = g->runtime_m ? e.mr : (int)(g->m - (e.mtiles - 1) * e.mr);
  bool n_edge = last_qb != e.qb || last_valid != 4;
  bool m_edge = last_mr != e.mr;
  CgGemmTiles t = {.name = e.name,
                    .nblocks = e.nblocks,
                    .mtiles = e.mtiles,
                    .block_channels = (int64_t)e.qb * 4,
                    .block_weight_bytes = e.ksteps * e.nv * 16,
                    .tile_rows = e.mr,
                    .w = e.w,
                    .bias = e.bias,
                    .mult = e.mult};
  if (g->runtime_m) {
    /* Every row count of a tile, each with its own K split (as a kernel
     * compiled for that M would have it); the task function picks one by
     * the rows left. */
    for (int r = 1; r <= e.mr; r++) {
      choose_ks(&e, r);
      for (int ln = 0; ln <= (int)n_edge; ln++)
        t.rtile[r][ln] =
            emit_tile(&e, r, (ln ? last_qb : e.qb) * 4 / e.cpv, ln ? last_valid : 4);
    }
  } else {
    for (int lm = 0; lm <= (int)m_edge; lm++)
      for (int ln = 0; ln <= (int)n_edge; ln++)
        t.tile[lm][ln] = emit_tile(&e, lm ? last_mr : e.mr, (ln ? last_qb : e.qb) * 4 / e.cpv,
                                 ln ? last_valid : 4);
  }

  LLVMDisposeBuilder(e.b);
  return cg_emit_gemm_tasks(mod, g, isa, &t, ntasks);
}
