/* x86/qgemm.c: the int8 GEMM kernels for x86-64, y[m, n] = requant(bias[n] +
 * sum_k x[m, k] * wq[n, k]), emitted as LLVM IR specialised to one layer's
 * shapes: tile functions of MR rows by NRV vectors of nr channels, which the
 * task function of gemm_tasks.c calls, each keeping its accumulators in
 * registers over the whole of K and requantizing them in registers before it
 * stores; all it needs of a variant is that variant's row of isa.def. The
 * multiply forms, the tile choice, the edges, the tasks and the measured
 * prefetch are in docs/kernels.md, "The x86 kernels". */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../codegen.h"

/* How a K group is multiplied (the table in docs/kernels.md, "The x86
 * kernels"). PAIRS is both the widened AVX2 form (256 bits) and the generic
 * one (128 bits). */
typedef enum { FORM_VNNI, FORM_MADDUBS, FORM_PAIRS } Form;

enum {
  MAX_MR = 8, /* isa.def's max_mr may not exceed it */
  MAX_NRV = 4,
  MAX_KS = 4,
  MAX_PARTS = 2,
  MIN_CHAINS = 8, /* independent accumulators that hide the latency */
  PREFETCH_AHEAD = 2048, /* bytes ahead in each weight stream (docs/kernels.md) */
};

typedef struct {
  LLVMContextRef ctx;
  LLVMModuleRef mod;
  LLVMBuilderRef b;
  const CgGemm *g;
  CgIsa isa;
  char name[512];   /* the kernel's (cg_gemm_name) */
  Form form;
  bool flip;        /* i8 x multiplied as x ^ 0x80 (bias corrected) */
  bool x_signed;    /* PAIRS: x sign-extended (i8) rather than zero-extended */
  bool mult_finite; /* every multiplier is finite: requantized values are never NaN */
  int nr;           /* channels per vector */
  int parts;        /* accumulator vectors per row and channel vector */
  unsigned lanes16; /* PAIRS: i16 lanes of one pmaddwd (8 SSE2, 16 AVX2) */
  int64_t kg;       /* groups of 4 along K */
  int64_t nvec;     /* vectors of nr channels, ceil(N / nr) */
  int64_t pnr;      /* channels per packed block: nr, or the library's shared
                     * CgGemm.pack_nr (a multiple of nr) */
  int64_t rpv;      /* pnr / nr: channel vectors per packed block */
  int64_t ysize;    /* bytes per output element */
  /* the tile */
  int mr, nrv, ks, unroll;
  bool prefetch; /* tiles of 2+ rows prefetch their weight streams ahead */
  int64_t mtiles, nblocks;
  LLVMTypeRef i8, i16, i32, i64, f32, ptr, vd;
  LLVMTypeRef acc_ty;         /* one accumulator vector */
  LLVMValueRef w, bias, mult; /* constant globals */
  int64_t w_offset;           /* w NULL: the weights at this offset of the weights file */
} Gemm;

/* ---- small IR helpers ---- */

static LLVMValueRef i32c(Gemm *e, int64_t v) { return LLVMConstInt(e->i32, (uint64_t)v, 1); }
static LLVMValueRef i64c(Gemm *e, int64_t v) { return LLVMConstInt(e->i64, (uint64_t)v, 1); }

static LLVMValueRef splat(LLVMValueRef c, unsigned n) { return cg_splat(c, n); }


static LLVMValueRef shuffle(Gemm *e, LLVMValueRef a, LLVMValueRef b, const int *idx, unsigned n) {
  return cg_shuffle(e->b, a, b, idx, n);
}

static LLVMValueRef intrinsic(Gemm *e, const char *name, LLVMTypeRef *over, size_t nover,
                              LLVMValueRef *args, unsigned nargs) {
  return cg_intrinsic(e->mod, e->b, name, over, nover, args, nargs);
}

/* base + g * scale + off bytes, g an i64 value. */
static LLVMValueRef at(Gemm *e, LLVMValueRef base, LLVMValueRef g, int64_t scale, int64_t off) {
  return cg_at(e->b, base, g, scale, off);
}

static LLVMValueRef load(Gemm *e, LLVMTypeRef t, LLVMValueRef p, unsigned align) {
  return cg_load(e->b, t, p, align);
}

static LLVMValueRef private_const(Gemm *e, const char *suffix, LLVMValueRef init) {
  char name[600];
  snprintf(name, sizeof name, "%s.%s", e->name, suffix);
  return cg_private_const(e->mod, name, init);
}

/* ---- choosing the form and the tile ---- */

/* The variant's form (isa.def), but AVX2's MADDUBS falls back to the
 * widened PAIRS for a layer whose weight pairs could saturate. */
static Form choose_form(const CgGemm *g, CgIsa isa, bool *flip) {
  bool i8 = g->x_dtype == IR_I8;
  switch (cg_isa_info[isa].form) {
  case CG_FORM_VNNI:
    *flip = i8;
    return FORM_VNNI;
  case CG_FORM_MADDUBS: {
    /* Weights packed at run time may take any value: their pairs can
     * saturate, unless they are 7-bit (--reduce-range: in [-64, 63], and
     * 2 * 255 * 64 = 32640 fits i16). */
    if (g->runtime_w) {
      *flip = g->w_7bit && i8;
      return g->w_7bit ? FORM_MADDUBS : FORM_PAIRS;
    }
    /* vpmaddubsw sees x as unsigned bytes: x + 128 for i8. */
    int32_t lo = g->x_min, hi = g->x_max;
    if (lo > hi)
      ir_qbounds(g->x_dtype, &lo, &hi);
    if (i8) {
      lo += 128;
      hi += 128;
    }
    if (!cg_pairs_can_saturate(g->wq, g->n, g->k, lo, hi)) {
      *flip = i8;
      return FORM_MADDUBS;
    }
    *flip = false;
    return FORM_PAIRS;
  }
  default:
    *flip = false;
    return FORM_PAIRS;
  }
}

/* Vector registers a tile of mr x nrv needs besides its accumulators: the
 * weights of one K group, the broadcast x and temporaries. */
static int fixed_regs(const Gemm *e, int nrv) {
  /* Plus the registers the variant leaves free (isa.def's spare: SSE2's
   * two-operand pmaddwd also copies x, and LLVM spilled in the loop with 5
   * rows of SSE2 accumulators, not with 4). */
  int spare = cg_isa_info[e->isa].spare;
  switch (e->form) {
  case FORM_VNNI:
    return nrv + 2 + spare;
  case FORM_MADDUBS:
    return nrv + 3 + spare; /* x, ones, the i16 product */
  case FORM_PAIRS:
    return 2 * nrv + 2 + spare; /* two widened weight parts per vector, x, a product */
  }
  q8_unreachable();
}

static int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

/* Split K when a tile of mr rows has too few independent chains. */
static void choose_ks(Gemm *e, int mr) {
  int regs = cg_isa_info[e->isa].vregs, per_row = e->nrv * e->parts;
  int chains = mr * e->nrv * e->parts;
  e->ks = 1;
  while (e->ks < MAX_KS && chains * e->ks < MIN_CHAINS &&
         (e->ks + 1) * per_row * mr + fixed_regs(e, e->nrv) <= regs)
    e->ks++;
  e->unroll = e->ks > 1 ? e->ks : 2;
}

static void choose_tile(Gemm *e) {
  const CgGemm *g = e->g;
  const CgIsaInfo *info = &cg_isa_info[e->isa];
  int regs = info->vregs;
  /* The row's limit in its own form; the widened fallback holds two parts
   * per vector, so one vector. */
  int nrv_max = e->form == FORM_PAIRS ? 1 : info->max_nrv;
  if (info->max_mr > MAX_MR || info->max_nrv > MAX_NRV)
    q8_die("isa.def: %s's tile limits exceed x86/qgemm.c's arrays", info->name);
  /* Channel vectors per block, spread evenly: 5 vectors are 3 + 2, not 4 + 1. */
  int64_t nrv = e->nvec < nrv_max ? e->nvec : nrv_max;
  e->nblocks = ceil_div(e->nvec, nrv);
  e->nrv = (int)ceil_div(e->nvec, e->nblocks);
  /* Rows: as many as the registers left hold, spread evenly over M (a
   * run-time M: the most, the tail chosen at run time). */
  int per_row = e->nrv * e->parts;
  int mr = (regs - fixed_regs(e, e->nrv)) / per_row;
  mr = mr < 1 ? 1 : mr > info->max_mr ? info->max_mr : mr;
  if (mr > g->m && !g->runtime_m)
    mr = (int)g->m;
  e->mtiles = g->runtime_m ? 0 : ceil_div(g->m, mr);
  e->mr = g->runtime_m ? mr : (int)ceil_div(g->m, e->mtiles);
  choose_ks(e, e->mr);
}

/* ---- one K group ---- */

/* The weights of K group g of one channel vector (wv: the vector's stream). */
static void load_weights(Gemm *e, LLVMValueRef wv, LLVMValueRef g, LLVMValueRef out[MAX_PARTS]) {
  int64_t bytes = e->nr * 4, stride = e->pnr * 4; /* a vector's, a group's */
  switch (e->form) {
  case FORM_VNNI:
    out[0] =
        load(e, LLVMVectorType(e->i32, (unsigned)e->nr), at(e, wv, g, stride, 0), (unsigned)bytes);
    break;
  case FORM_MADDUBS:
    out[0] = load(e, LLVMVectorType(e->i8, 32), at(e, wv, g, stride, 0), 32);
    break;
  case FORM_PAIRS:
    /* lanes16 bytes (lanes16 / 4 channels x 4 K) per part, widened to i16. */
    for (int p = 0; p < e->parts; p++) {
      LLVMValueRef v = load(e, LLVMVectorType(e->i8, e->lanes16),
                            at(e, wv, g, stride, e->lanes16 * p), e->lanes16);
      out[p] = LLVMBuildSExt(e->b, v, LLVMVectorType(e->i16, e->lanes16), "");
    }
    break;
  }
}

/* The 4 bytes of K group g of one row, broadcast as the form wants them. */
static LLVMValueRef load_x(Gemm *e, LLVMValueRef xr, LLVMValueRef g) {
  LLVMValueRef x4 = load(e, e->i32, at(e, xr, g, 4, 0), 1);
  if (e->form == FORM_VNNI || e->form == FORM_MADDUBS) {
    unsigned lanes = e->form == FORM_VNNI ? (unsigned)e->nr : 8;
    LLVMTypeRef vt = LLVMVectorType(e->i32, lanes);
    LLVMValueRef v = LLVMBuildInsertElement(e->b, LLVMGetUndef(vt), x4, i32c(e, 0), "");
    int zeros[16] = {0};
    v = shuffle(e, v, NULL, zeros, lanes);
    if (e->flip) /* i8 -> u8: x + 128 */
      v = LLVMBuildXor(e->b, v, splat(i32c(e, (int32_t)0x80808080u), lanes), "");
    return e->form == FORM_MADDUBS ? LLVMBuildBitCast(e->b, v, LLVMVectorType(e->i8, 32), "") : v;
  }
  /* Pairs: x0 x1 x2 x3 as i16, repeated for each channel of a part. */
  LLVMValueRef b4 = LLVMBuildBitCast(e->b, x4, LLVMVectorType(e->i8, 4), "");
  LLVMTypeRef w4 = LLVMVectorType(e->i16, 4);
  b4 = e->x_signed ? LLVMBuildSExt(e->b, b4, w4, "") : LLVMBuildZExt(e->b, b4, w4, "");
  static const int rep[16] = {0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3};
  return shuffle(e, b4, NULL, rep, e->lanes16);
}

/* acc + the products of x and the weights (one part). */
static LLVMValueRef mac(Gemm *e, LLVMValueRef acc, LLVMValueRef x, LLVMValueRef w) {
  switch (e->form) {
  case FORM_VNNI: {
    const char *name =
        e->nr == 16 ? "llvm.x86.avx512.vpdpbusd.512" : "llvm.x86.avx512.vpdpbusd.256";
    return intrinsic(e, name, NULL, 0, (LLVMValueRef[]){acc, x, w}, 3);
  }
  case FORM_MADDUBS: {
    LLVMValueRef p16 =
        intrinsic(e, "llvm.x86.avx2.pmadd.ub.sw", NULL, 0, (LLVMValueRef[]){x, w}, 2);
    LLVMValueRef ones = splat(LLVMConstInt(e->i16, 1, 0), 16);
    LLVMValueRef p32 =
        intrinsic(e, "llvm.x86.avx2.pmadd.wd", NULL, 0, (LLVMValueRef[]){p16, ones}, 2);
    return LLVMBuildAdd(e->b, acc, p32, "");
  }
  case FORM_PAIRS: {
    /* pmaddwd: lane i = x[2i] * w[2i] + x[2i+1] * w[2i+1], exact in i32.
     * The generic variant uses SSE2's: LLVM 19 did not turn the plain IR
     * form (sext, mul, even/odd shuffles, add into the accumulator) into
     * pmaddwd once the adds were reassociated, and ran 3-4x slower. */
    const char *name = e->lanes16 == 16 ? "llvm.x86.avx2.pmadd.wd" : "llvm.x86.sse2.pmadd.wd";
    return LLVMBuildAdd(e->b, acc, intrinsic(e, name, NULL, 0, (LLVMValueRef[]){x, w}, 2), "");
  }
  }
  q8_unreachable();
}

/* The accumulators of a tile: acc[set][row][vector][part]. */
typedef LLVMValueRef Accs[MAX_KS][MAX_MR][MAX_NRV][MAX_PARTS];

/* Multiply-accumulate K group g into accumulator set s. */
static void kgroup(Gemm *e, int mr, int nrv, LLVMValueRef x, LLVMValueRef w, LLVMValueRef g, int s,
                   Accs acc) {
  LLVMValueRef wv[MAX_NRV][MAX_PARTS];
  for (int v = 0; v < nrv; v++) {
    /* Vector v's stream: its packed block, and its place in each group of
     * it (a tile starts at a packed block, or inside one it does not leave:
     * cg_emit_qgemm_x86 checks). */
    LLVMValueRef wstream =
        at(e, w, i64c(e, v / e->rpv), e->kg * e->pnr * 4, (v % e->rpv) * e->nr * 4);
    load_weights(e, wstream, g, wv[v]);
    if (e->prefetch && mr >= 2) {
      /* prefetcht0 of the line PREFETCH_AHEAD bytes on (one 64-byte line
       * per group and stream; past the stream's end it touches the next
       * stream or block, or harmlessly nothing: prefetches do not fault). */
      LLVMValueRef p = at(e, wstream, g, e->pnr * 4, PREFETCH_AHEAD);
      LLVMTypeRef pt = e->ptr;
      intrinsic(e, "llvm.prefetch", &pt, 1,
                (LLVMValueRef[]){p, i32c(e, 0 /* read */), i32c(e, 3 /* all levels */),
                                 i32c(e, 1 /* data */)},
                4);
    }
  }
  for (int r = 0; r < mr; r++) {
    LLVMValueRef xb = load_x(e, at(e, x, i64c(e, r), e->g->x_stride, 0), g);
    for (int v = 0; v < nrv; v++)
      for (int p = 0; p < e->parts; p++)
        acc[s][r][v][p] = mac(e, acc[s][r][v][p], xb, wv[v][p]);
  }
}

/* ---- requantization ---- */

/* rint, ties to even, of every lane. SSE2 (CG_ROUND_MAGIC) has no rounding
 * instruction and LLVM would call roundevenf, so there: below 2^23 in
 * magnitude, (|v| + 2^23) - 2^23 rounds to an integer in the current (nearest
 * even) mode, and the sign is put back; larger values are integers already. */
static LLVMValueRef round_even(Gemm *e, LLVMValueRef v, unsigned n) {
  LLVMTypeRef vt = LLVMVectorType(e->f32, n);
  if (cg_isa_info[e->isa].round != CG_ROUND_MAGIC)
    return intrinsic(e, "llvm.roundeven", &vt, 1, &v, 1);
  LLVMValueRef a = intrinsic(e, "llvm.fabs", &vt, 1, &v, 1);
  LLVMValueRef big = splat(LLVMConstReal(e->f32, 8388608.0), n);
  LLVMValueRef r = LLVMBuildFSub(e->b, LLVMBuildFAdd(e->b, a, big, ""), big, "");
  r = intrinsic(e, "llvm.copysign", &vt, 1, (LLVMValueRef[]){r, v}, 2);
  LLVMValueRef small = LLVMBuildFCmp(e->b, LLVMRealOLT, a, big, "");
  return LLVMBuildSelect(e->b, small, r, v, "");
}

/* Requantize one vector of channel sums (bias included) and store its first
 * `valid` lanes at y (fbias: added to the f32 product when not NULL). */
static void requant_store(Gemm *e, LLVMValueRef acc, LLVMValueRef mult, LLVMValueRef fbias,
                          LLVMValueRef y, int valid) {
  const CgGemm *g = e->g;
  unsigned n = (unsigned)e->nr;
  LLVMTypeRef fv = LLVMVectorType(e->f32, n);
  LLVMValueRef zero = LLVMConstNull(fv);
  /* f32(f32(acc) * mult): two roundings, no fused multiply-add; then the
   * f32 bias of qlinear_dyn, a third. */
  LLVMValueRef v = LLVMBuildFMul(e->b, LLVMBuildSIToFP(e->b, acc, fv, ""), mult, "");
  if (fbias)
    v = LLVMBuildFAdd(e->b, v, fbias, "");
  LLVMValueRef out;
  if (g->y_dtype == IR_F32) {
    out = v;
    if (g->relu) /* y > 0 ? y : +0.0 (NaN and -0.0 give +0.0) */
      out = LLVMBuildSelect(e->b, LLVMBuildFCmp(e->b, LLVMRealOGT, v, zero, ""), v, zero, "");
  } else {
    /* clamp(rint(v), y_min - zp, y_max - zp) + zp, NaN -> zp. The bounds
     * are integers, so clamping before rounding gives the same result, and
     * AVX-512 rounds and converts in one vcvtps2dq with embedded
     * round-to-nearest-even ({rn-sae}: whatever MXCSR says); elsewhere
     * roundeven (vroundps) and a truncating conversion. v can be NaN only
     * when a multiplier is not finite (a finite product overflows to
     * +-Inf, which the clamp handles), so the NaN select is only emitted
     * then. */
    LLVMTypeRef iv = LLVMVectorType(e->i32, n);
    LLVMValueRef lo = splat(LLVMConstReal(e->f32, (float)(g->y_min - g->y_zero_point)), n);
    LLVMValueRef hi = splat(LLVMConstReal(e->f32, (float)(g->y_max - g->y_zero_point)), n);
    bool fused = cg_isa_info[e->isa].round == CG_ROUND_EMBEDDED && n == 16;
    LLVMValueRef r = fused ? v : round_even(e, v, n);
    r = LLVMBuildSelect(e->b, LLVMBuildFCmp(e->b, LLVMRealOLT, r, lo, ""), lo, r, "");
    r = LLVMBuildSelect(e->b, LLVMBuildFCmp(e->b, LLVMRealOGT, r, hi, ""), hi, r, "");
    if (!e->mult_finite)
      r = LLVMBuildSelect(e->b, LLVMBuildFCmp(e->b, LLVMRealUNO, r, r, ""), zero, r, "");
    LLVMValueRef ri;
    if (fused)
      ri = intrinsic(e, "llvm.x86.avx512.mask.cvtps2dq.512", NULL, 0,
                     (LLVMValueRef[]){r, LLVMGetUndef(iv), LLVMConstInt(e->i16, 0xffff, 0),
                                      i32c(e, 8 /* {rn-sae} */)},
                     4);
    else
      ri = LLVMBuildFPToSI(e->b, r, iv, "");
    LLVMValueRef q = LLVMBuildAdd(e->b, ri, splat(i32c(e, g->y_zero_point), n), "");
    out = LLVMBuildTrunc(e->b, q, LLVMVectorType(e->i8, n), ""); /* in range already */
  }
  if (valid < (int)n) {
    int idx[16];
    for (int i = 0; i < valid; i++)
      idx[i] = i;
    out = valid == 1 ? LLVMBuildExtractElement(e->b, out, i32c(e, 0), "")
                     : shuffle(e, out, NULL, idx, (unsigned)valid);
  }
  LLVMSetAlignment(LLVMBuildStore(e->b, out, y), 1);
}

/* The channel sums of one accumulator's parts: PAIRS holds the two pair sums
 * of channel c in lanes 2c and 2c + 1 of its parts, one after the other. */
static LLVMValueRef channel_sums(Gemm *e, LLVMValueRef parts[MAX_PARTS]) {
  if (e->form == FORM_VNNI || e->form == FORM_MADDUBS)
    return parts[0];
  static const int even[8] = {0, 2, 4, 6, 8, 10, 12, 14}, odd[8] = {1, 3, 5, 7, 9, 11, 13, 15};
  unsigned n = (unsigned)e->nr;
  return LLVMBuildAdd(e->b, shuffle(e, parts[0], parts[1], even, n),
                      shuffle(e, parts[0], parts[1], odd, n), "");
}

/* ---- the tile ---- */

/* void tile(x, y, w, bias, mult, rows): mr rows from x, nrv channel vectors
 * from the packed stream w (bias, mult at the block's first channel; rows at
 * the tile's first row), the last vector with `last_valid` valid channels,
 * into y. */
static LLVMValueRef emit_tile(Gemm *e, int mr, int nrv, int last_valid) {
  const CgGemm *g = e->g;
  char name[600];
  snprintf(name, sizeof name, "%s.%dx%d", e->name, mr, (nrv - 1) * e->nr + last_valid);
  LLVMTypeRef pt[6] = {e->ptr, e->ptr, e->ptr, e->ptr, e->ptr, e->ptr};
  LLVMValueRef fn = LLVMAddFunction(e->mod, name, LLVMFunctionType(e->vd, pt, 6, 0));
  LLVMSetLinkage(fn, LLVMPrivateLinkage);
  cg_set_isa_attrs(fn, e->isa);
  LLVMValueRef x = LLVMGetParam(fn, 0), y = LLVMGetParam(fn, 1), w = LLVMGetParam(fn, 2);
  LLVMValueRef bias = LLVMGetParam(fn, 3), mult = LLVMGetParam(fn, 4);
  LLVMValueRef rows = LLVMGetParam(fn, 5);
  LLVMBasicBlockRef entry = LLVMAppendBasicBlockInContext(e->ctx, fn, "entry");
  LLVMPositionBuilderAtEnd(e->b, entry);

  /* The accumulators start at 0; the bias is added after the K loop. */
  Accs acc;
  for (int s = 0; s < e->ks; s++)
    for (int r = 0; r < mr; r++)
      for (int v = 0; v < nrv; v++)
        for (int p = 0; p < e->parts; p++)
          acc[s][r][v][p] = LLVMConstNull(e->acc_ty);

  /* The K loop, `unroll` groups per trip (group u of a trip feeds set u % ks). */
  int64_t trips = e->kg / e->unroll;
  if (trips > 0) {
    LLVMBasicBlockRef loop = LLVMAppendBasicBlockInContext(e->ctx, fn, "k.loop");
    LLVMBasicBlockRef done = LLVMAppendBasicBlockInContext(e->ctx, fn, "k.done");
    LLVMBuildBr(e->b, loop);
    LLVMPositionBuilderAtEnd(e->b, loop);
    LLVMValueRef i = LLVMBuildPhi(e->b, e->i64, "k");
    /* x and w of this trip as pointers stepped by the trip's bytes (the
     * groups of a trip at constant offsets from them): addressed as
     * i * unroll + u, LLVM's strength reduction left some layers (K 1536,
     * a one-row tile in the task function of a run-time M) with three
     * integer ops per group, 8% slower. */
    LLVMValueRef xi = LLVMBuildPhi(e->b, e->ptr, "x.k"), wi = LLVMBuildPhi(e->b, e->ptr, "w.k");
    Accs phi, init;
    memcpy(init, acc, sizeof acc);
    for (int s = 0; s < e->ks; s++)
      for (int r = 0; r < mr; r++)
        for (int v = 0; v < nrv; v++)
          for (int p = 0; p < e->parts; p++)
            phi[s][r][v][p] = acc[s][r][v][p] = LLVMBuildPhi(e->b, e->acc_ty, "acc");
    for (int u = 0; u < e->unroll; u++)
      kgroup(e, mr, nrv, xi, wi, i64c(e, u), u % e->ks, acc);
    LLVMValueRef next = LLVMBuildAdd(e->b, i, i64c(e, 1), "");
    LLVMValueRef xn = at(e, xi, i64c(e, 1), 4 * e->unroll, 0);
    LLVMValueRef wn = at(e, wi, i64c(e, 1), e->pnr * 4 * e->unroll, 0);
    LLVMBasicBlockRef latch = LLVMGetInsertBlock(e->b);
    LLVMBuildCondBr(e->b, LLVMBuildICmp(e->b, LLVMIntEQ, next, i64c(e, trips), ""), done, loop);
    LLVMValueRef zero = i64c(e, 0);
    LLVMAddIncoming(i, &zero, &entry, 1);
    LLVMAddIncoming(i, &next, &latch, 1);
    LLVMAddIncoming(xi, &x, &entry, 1);
    LLVMAddIncoming(xi, &xn, &latch, 1);
    LLVMAddIncoming(wi, &w, &entry, 1);
    LLVMAddIncoming(wi, &wn, &latch, 1);
    for (int s = 0; s < e->ks; s++)
      for (int r = 0; r < mr; r++)
        for (int v = 0; v < nrv; v++)
          for (int p = 0; p < e->parts; p++) {
            LLVMAddIncoming(phi[s][r][v][p], &init[s][r][v][p], &entry, 1);
            LLVMAddIncoming(phi[s][r][v][p], &acc[s][r][v][p], &latch, 1);
          }
    LLVMPositionBuilderAtEnd(e->b, done);
  }
  /* The K groups left over by the unrolled loop. */
  for (int64_t gi = trips * e->unroll; gi < e->kg; gi++)
    kgroup(e, mr, nrv, x, w, i64c(e, gi), (int)(gi % e->unroll) % e->ks, acc);

  /* Requantize: sum the K sets, combine pair lanes, add the bias (and the
   * rows' terms: the zero points and scales known only at run time). */
  unsigned n = (unsigned)e->nr;
  LLVMTypeRef iv = LLVMVectorType(e->i32, n);
  LLVMTypeRef fv = LLVMVectorType(e->f32, n);
  int64_t npad = e->nvec * e->nr;
  for (int v = 0; v < nrv; v++) {
    LLVMValueRef bv = load(e, iv, at(e, bias, i64c(e, v), e->nr * 4, 0), 4);
    LLVMValueRef mv = load(e, fv, at(e, mult, i64c(e, v), e->nr * 4, 0), 4);
    LLVMValueRef cs = NULL, fb = NULL;
    if (g->row_terms)
      cs = load(e, iv, at(e, bias, i64c(e, v), e->nr * 4, npad * 4), 4);
    if (g->fbias)
      fb = load(e, fv, at(e, mult, i64c(e, v), e->nr * 4, npad * 4), 4);
    for (int r = 0; r < mr; r++) {
      LLVMValueRef parts[MAX_PARTS];
      for (int p = 0; p < e->parts; p++) {
        parts[p] = acc[0][r][v][p];
        for (int s = 1; s < e->ks; s++)
          parts[p] = LLVMBuildAdd(e->b, parts[p], acc[s][r][v][p], "");
      }
      LLVMValueRef sum = LLVMBuildAdd(e->b, channel_sums(e, parts), bv, "");
      LLVMValueRef mr_v = mv;
      if (g->row_terms) {
        /* sum + add[r] - zp[r] * colsum (wrapping) */
        LLVMValueRef rec = at(e, rows, i64c(e, r), sizeof(CgGemmRow), 0);
        LLVMValueRef add = load(e, e->i32, rec, 4);
        LLVMValueRef zp = load(e, e->i32, at(e, rec, i64c(e, 0), 0, 4), 4);
        sum = LLVMBuildAdd(e->b, sum, cg_splat_value(e->b, add, n), "");
        sum = LLVMBuildSub(e->b, sum, LLVMBuildMul(e->b, cg_splat_value(e->b, zp, n), cs, ""), "");
        if (g->row_scale) { /* f32(scale[r] * mult[n]) */
          LLVMValueRef sc = load(e, e->f32, at(e, rec, i64c(e, 0), 0, 8), 4);
          mr_v = LLVMBuildFMul(e->b, cg_splat_value(e->b, sc, n), mv, "");
        }
      }
      LLVMValueRef yp = at(e, y, i64c(e, r), g->y_stride * e->ysize, v * e->nr * e->ysize);
      requant_store(e, sum, mr_v, fb, yp, v == nrv - 1 ? last_valid : e->nr);
    }
  }
  LLVMBuildRetVoid(e->b);
  return fn;
}

/* ---- constants ---- */

/* The packed weights as a constant global. In a library whose variants
 * share a layout (CgGemm.pack_nr) it is named after the layer and the
 * block, NAME.w<pnr>, and the variants after the first find it and use it
 * when its bytes are these (they are: the same layer packed the same way;
 * compared all the same, not assumed), so the library holds one copy. */
static LLVMValueRef shared_weights(Gemm *e, const int8_t *packed, size_t wsize) {
  if (e->g->pack_nr <= 0)
    return private_const(e, "w", LLVMConstStringInContext2(e->ctx, (const char *)packed, wsize, 1));
  char name[600];
  snprintf(name, sizeof name, "%s.w%lld", e->g->name, (long long)e->pnr);
  LLVMValueRef have = LLVMGetNamedGlobal(e->mod, name);
  if (have && LLVMGetInitializer(have) && LLVMIsAConstantDataSequential(LLVMGetInitializer(have))) {
    size_t len = 0;
    const char *bytes = LLVMGetAsString(LLVMGetInitializer(have), &len);
    if (len == wsize && memcmp(bytes, packed, wsize) == 0)
      return have;
  }
  return cg_private_const(e->mod, name,
                          LLVMConstStringInContext2(e->ctx, (const char *)packed, wsize, 1));
}

/* The packed weights, the bias (corrected when x is flipped) and the
 * multipliers, padded to whole vectors, as private constants. False when
 * memory runs out (nothing is added to the module then). */
static bool emit_constants(Gemm *e) {
  const CgGemm *g = e->g;
  size_t wsize = cg_packed_size_nr(e->pnr, g->n, g->k);
  int64_t npad = e->nvec * e->nr;
  if (g->runtime_w)
    return true;
  /* With row_terms, the column sums follow the bias and the f32 bias the
   * multipliers. */
  int64_t halves = g->row_terms ? 2 : 1;
  int8_t *packed = malloc(wsize);
  LLVMValueRef *bv = malloc(sizeof *bv * (size_t)(npad * halves)),
               *mv = malloc(sizeof *mv * (size_t)(npad * halves));
  if (!packed || !bv || !mv) {
    free(packed);
    free(bv);
    free(mv);
    return false;
  }
  cg_pack_weights_nr(e->pnr, g->wq, g->n, g->k, packed);
  if (g->wfile) {
    char name[600];
    snprintf(name, sizeof name, "%s.w%lld", g->name, (long long)e->pnr);
    e->w_offset = cg_weights_add(g->wfile, name, packed, wsize);
    e->w = NULL;
  } else {
    e->w = shared_weights(e, packed, wsize);
  }
  free(packed);
  if (g->wfile && e->w_offset < 0) {
    free(bv);
    free(mv);
    return false;
  }

  for (int64_t c = 0; c < npad; c++) {
    uint32_t b = 0;
    float mu = 0;
    if (c < g->n) {
      b = (uint32_t)g->bias[c];
      if (e->flip) { /* the kernel adds 128 * sum_k wq[c, k]: take it out (wrapping) */
        uint32_t s = 0;
        for (int64_t i = 0; i < g->k; i++)
          s += (uint32_t)(int32_t)g->wq[c * g->k + i];
        b -= 128u * s;
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

LLVMValueRef cg_emit_qgemm_x86(LLVMModuleRef mod, const CgGemm *g, CgIsa isa, int64_t *ntasks,
                               char *err, size_t errlen) {
  if (cg_isa_info[isa].arch != CG_ARCH_X86_64) {
    snprintf(err, errlen, "no int8 GEMM kernel for %s", cg_isa_info[isa].name);
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
  e.form = choose_form(g, isa, &e.flip);
  e.x_signed = g->x_dtype == IR_I8 && !e.flip;
  e.mult_finite = !g->runtime_w && !g->row_scale;
  for (int64_t c = 0; e.mult_finite && c < g->n; c++)
    e.mult_finite &= isfinite(g->mult[c]) != 0;
  e.nr = cg_isa_info[isa].nr;
  /* PAIRS: nr channels x 4 K are two pmaddwd of lanes16 = 2 * nr i16. */
  e.lanes16 = 2 * (unsigned)e.nr;
  e.parts = e.form == FORM_PAIRS ? 2 : 1;
  e.acc_ty = LLVMVectorType(e.i32, e.form == FORM_VNNI      ? (unsigned)e.nr
                                   : e.form == FORM_MADDUBS ? 8
                                                            : e.lanes16 / 2);
  e.kg = ceil_div(g->k, 4);
  e.nvec = ceil_div(g->n, e.nr);
  e.ysize = g->y_dtype == IR_F32 ? 4 : 1;
  choose_tile(&e);
  /* The shared layout when a tile's vectors keep to whole packed blocks, or
   * to one (x86's nr and tiles make it so; a layer where they would not
   * keeps the variant's own). */
  e.pnr = e.nr;
  e.rpv = 1;
  if (!g->runtime_w && g->pack_nr > e.nr && g->pack_nr % e.nr == 0) {
    int64_t r = g->pack_nr / e.nr;
    if (e.nrv % r == 0 || r % e.nrv == 0) {
      e.pnr = g->pack_nr;
      e.rpv = r;
    }
  }
  e.prefetch = cg_isa_info[isa].prefetch;
  if (!cg_gemm_name(mod, g, isa, e.mr, (int64_t)e.nrv * e.nr, 4, e.name, sizeof e.name, err,
                    errlen)) {
    LLVMDisposeBuilder(e.b);
    return NULL;
  }
  if (!emit_constants(&e)) {
    if (!g->wfile || !cg_weights_failed(g->wfile, err, errlen))
      snprintf(err, errlen, "qgemm %s: out of memory packing %zu bytes of weights", g->name,
               cg_packed_size_nr(e.pnr, g->n, g->k));
    LLVMDisposeBuilder(e.b);
    return NULL;
  }

  if (g->rt) /* pack.c's layout: a block of the formula is one vector */
    *g->rt = (CgGemmRuntime){.packed_bytes = (int64_t)cg_packed_size(isa, g->n, g->k),
                             .npad = e.nvec * e.nr,
                             .cb = e.nr,
                             .block_bytes = e.kg * e.nr * 4,
                             .kstep = 4,
                             .cpv = 4,
                             .step_bytes = e.nr * 4,
                             .last_step_bytes = e.nr * 4,
                             .flip = e.flip ? -128 : 0};

  /* The tiles: full, and the last channel block and last rows when they
   * differ (CgGemmTiles.tile); the shared task function calls them. */
  int last_nrv = (int)(e.nvec - (e.nblocks - 1) * e.nrv);
  int last_valid = (int)(g->n - (e.nvec - 1) * e.nr);
  int last_mr = (int)(g->m - (e.mtiles - 1) * e.mr);
  bool n_edge = last_nrv != e.nrv || last_valid != e.nr;
  bool m_edge = last_mr != e.mr;
  CgGemmTiles t = {.name = e.name,
                    .nblocks = e.nblocks,
                    .mtiles = e.mtiles,
                    .block_channels = (int64_t)e.nrv * e.nr,
                    .block_weight_bytes = (int64_t)e.nrv * e.nr * e.kg * 4,
                    /* blocks narrower than a packed block share its groups */
                    .w_interleave = e.rpv > e.nrv ? e.rpv / e.nrv : 1,
                    .w_sub_bytes = (int64_t)e.nrv * e.nr * 4,
                    .tile_rows = e.mr,
                    .w = e.w,
                    .w_base = g->wfile && !g->runtime_w ? cg_weights_base(g->wfile, mod) : NULL,
                    .w_offset = e.w_offset,
                    .bias = e.bias,
                    .mult = e.mult};
  if (g->runtime_m) {
    /* Every row count of a tile, each with its own K split (as a kernel
     * compiled for that M would have it); the task function picks one by
     * the rows left. */
    for (int r = 1; r <= e.mr; r++) {
      choose_ks(&e, r);
      for (int ln = 0; ln <= (int)n_edge; ln++)
        t.rtile[r][ln] = emit_tile(&e, r, ln ? last_nrv : e.nrv, ln ? last_valid : e.nr);
    }
  } else {
    for (int lm = 0; lm <= (int)m_edge; lm++)
      for (int ln = 0; ln <= (int)n_edge; ln++)
        t.tile[lm][ln] =
            emit_tile(&e, lm ? last_mr : e.mr, ln ? last_nrv : e.nrv, ln ? last_valid : e.nr);
  }

  LLVMDisposeBuilder(e.b);
  return cg_emit_gemm_tasks(mod, g, isa, &t, ntasks);
}
