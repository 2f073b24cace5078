/* qgroup.c: qlinear_grp (grouped weights, activations quantized per row at
 * run time; docs/quantization.md, "Weight formats") lowered to a kernel:
 *
 *   the rows of x quantized to u8 from their own ranges (quantize.c's
 *   cg_emit_quantize_rows_dyn, exactly as the reference), then
 *   NAME.q8_grp_ISA(xq, rows, y): for each row, each block of 8 output
 *   channels, each group g of G inputs in ascending order
 *     acc[8] = sum_{k in g} (xq[k] - zx) (w[n, k] - zw[n, g])   int32 lanes
 *     y[8] = f32(y + f32(f32(sx * scale[n, g]) * f32(acc)))     (y from -0.0)
 *   then + b; lanes past N are not stored.
 *
 * The weights are packed at compile time, one stream per block of 8
 * channels, group after group: the group's weights as K-quads of the 8
 * channels ([8][4] bytes a step, the nr x 4 layout of qgemm's x86 packing),
 * then its 8 scales (f16 or f32, as the op's sbits) and, asymmetric, its 8
 * zero points (nibbles, 4 bytes). 4-bit weights hold two steps per 32
 * bytes: step 2p in the low nibbles, 2p + 1 in the high ones, each nibble
 * w + 8 (symmetric) or w (asymmetric), so one subtraction of the zero-point
 * vector (8 for symmetric) gives w - zw as a signed byte. The unpacking
 * happens in registers: an and, a shift, a subtraction.
 *
 * The products per step, by variant (isa.def's form):
 *   VNNI     vpdpbusd(acc, x, w') and vpdpbusd(zacc, zx, w'), acc - zacc
 *   MADDUBS  4-bit only: pmaddubsw(x, w') - pmaddubsw(zx, w') (no pair can
 *            saturate: |w'| <= 15, 2 * 255 * 15 < 2^15; two steps stay
 *            below 2^15), then pmaddwd by ones into the int32 lanes
 *   others   (x - zx) * w' in int16 lanes (|.| <= 255 * 127, exact),
 *            widened and summed by quads: generic vector code, which LLVM
 *            selects per target (SSE2 pmullw, NEON smull)
 * Every route computes the same integers; the float part is the same
 * operations in the same order, so every variant is bit-exact with
 * q8_ref_qlinear_grp. Scales are converted from f16 with integer
 * arithmetic (they are normal numbers by construction, ir_round_scale_f16),
 * exact and without F16C. Layers whose operands do not fit the packing
 * (values outside the stored bits, a group not a multiple of 8) call the
 * reference op. */
#include <stdio.h>
#include <string.h>

#include "module.h"
#include "../ir/qgroup.h"

enum { NR = 8 }; /* output channels per block: the int32 lanes of a vector */
enum { MR = 4 }; /* rows of x per tile: each weight load serves them all */

/* The packed layout of one node. */
typedef struct {
  int64_t n, k, g, ng, nb;
  int wbits, sbits;
  bool zero;
  int64_t wbytes, sbytes, zbytes, gbytes; /* per block and group */
} Pack;

static Pack pack_of(const IrNode *n) {
  Pack p = {0};
  p.n = n->opnds[1]->type.dims[0];
  p.k = n->opnds[1]->type.dims[1];
  p.g = ir_attr_int(n, IR_ATTR_GROUP, 1);
  p.ng = p.k / p.g;
  p.nb = (p.n + NR - 1) / NR;
  p.wbits = (int)ir_attr_int(n, IR_ATTR_WBITS, 8);
  p.sbits = (int)ir_attr_int(n, IR_ATTR_SBITS, 32);
  p.zero = ir_qgrp_zero(n) != NULL;
  p.wbytes = NR * p.g * p.wbits / 8;
  p.sbytes = NR * p.sbits / 8;
  p.zbytes = p.zero ? NR / 2 : 0;
  p.gbytes = p.wbytes + p.sbytes + p.zbytes;
  return p;
}

/* f32 bits -> f16 bits of a normal f16 value (exact: the scale was rounded). */
static uint16_t f16_bits(float v) {
  uint32_t u;
  memcpy(&u, &v, 4);
  return (uint16_t)(((u >> 13) & 0x3FFu) | ((((u >> 23) & 0xFFu) - 112u) << 10));
}

static bool f16_exact(float v) {
  uint32_t u;
  memcpy(&u, &v, 4);
  uint32_t e = (u >> 23) & 0xFFu;
  return (u & 0x80001FFFu) == 0 && e >= 113 && e <= 142;
}

/* Whether node n runs the kernel: every dimension positive, the group a
 * multiple of 8, the values inside the packing's bits. */
static bool fits(const IrNode *n) {
  const IrType *xt = &n->opnds[0]->type;
  int64_t rows;
  ir_type_numel(xt, 1, &rows);
  Pack p = pack_of(n);
  if (rows <= 0 || p.n <= 0 || p.k <= 0 || p.g % 8 != 0 || p.k % p.g != 0)
    return false;
  const int8_t *w = n->opnds[1]->data, *z = p.zero ? ir_qgrp_zero(n)->data : NULL;
  const float *s = n->opnds[2]->data;
  int lo = p.wbits == 4 ? (p.zero ? 0 : -8) : -127, hi = p.wbits == 4 ? (p.zero ? 15 : 7) : 127;
  if (p.wbits == 8 && p.zero)
    return false;
  for (int64_t i = 0; i < p.n * p.k; i++)
    if (w[i] < lo || w[i] > hi)
      return false;
  for (int64_t i = 0; i < p.n * p.ng; i++) {
    if (z && (z[i] < 0 || z[i] > 15))
      return false;
    if (p.sbits == 16 && !f16_exact(s[i]))
      return false;
  }
  return true;
}

int64_t cg_qgroup_scratch(const IrNode *n) {
  if (n->op != IR_OP_QLINEAR_GRP || !fits(n))
    return -1;
  int64_t k = n->opnds[1]->type.dims[1], numel;
  ir_type_numel(&n->opnds[0]->type, 1, &numel);
  int64_t rows = numel / k;
  return cg_round_up(rows * cg_round_up(k, 4), 64) + rows * (int64_t)sizeof(CgGemmRow);
}

/* The packed stream (pack_of's layout). */
static uint8_t *pack(IrArena *a, const IrNode *n, const Pack *p, int64_t *bytes) {
  const int8_t *w = n->opnds[1]->data, *z = p->zero ? ir_qgrp_zero(n)->data : NULL;
  const float *s = n->opnds[2]->data;
  *bytes = p->nb * p->ng * p->gbytes;
  uint8_t *out = ir_alloc(a, (size_t)*bytes);
  memset(out, 0, (size_t)*bytes);
  for (int64_t b = 0; b < p->nb; b++)
    for (int64_t g = 0; g < p->ng; g++) {
      uint8_t *o = out + (b * p->ng + g) * p->gbytes;
      for (int64_t q = 0; q < NR; q++) {
        int64_t ch = b * NR + q;
        bool real = ch < p->n;
        int32_t zw = z && real ? z[ch * p->ng + g] : 0;
        for (int64_t i = 0; i < p->g; i++) {
          int32_t v = real ? w[ch * p->k + g * p->g + i] : zw;
          int64_t quad = i / 4, kk = i % 4;
          if (p->wbits == 8) {
            o[quad * 32 + q * 4 + kk] = (uint8_t)(int8_t)v;
          } else {
            uint8_t nib = (uint8_t)(p->zero ? v : v + 8);
            int64_t at = (quad / 2) * 32 + q * 4 + kk;
            o[at] |= quad % 2 ? (uint8_t)(nib << 4) : nib;
          }
        }
        float sc = real ? s[ch * p->ng + g] : 0.0f;
        if (p->sbits == 16) {
          uint16_t h = real ? f16_bits(sc) : 0;
          memcpy(o + p->wbytes + q * 2, &h, 2);
        } else {
          memcpy(o + p->wbytes + q * 4, &sc, 4);
        }
        if (p->zero)
          o[p->wbytes + p->sbytes + q / 2] |= (uint8_t)(q % 2 ? zw << 4 : zw);
      }
    }
  return out;
}

/* ---- the kernel ---- */

typedef struct {
  LLVMContextRef ctx;
  LLVMModuleRef mod;
  LLVMBuilderRef b;
  LLVMValueRef fn;
  LLVMTypeRef i8, i16, i32, i64, f32, ptr, v32i8, v32i16, v8i32, v8f32, v16i16;
  CgForm form;
} K;

static LLVMValueRef i64k(K *k, int64_t v) { return LLVMConstInt(k->i64, (uint64_t)v, 1); }
static LLVMValueRef i32k(K *k, int64_t v) { return LLVMConstInt(k->i32, (uint64_t)v, 1); }

static LLVMValueRef splat(K *k, LLVMTypeRef vt, LLVMValueRef s) {
  unsigned n = LLVMGetVectorSize(vt);
  LLVMValueRef v = LLVMBuildInsertElement(k->b, LLVMGetUndef(vt), s, i32k(k, 0), "");
  LLVMValueRef zeros[64];
  for (unsigned i = 0; i < n; i++)
    zeros[i] = i32k(k, 0);
  return LLVMBuildShuffleVector(k->b, v, LLVMGetUndef(vt), LLVMConstVector(zeros, n), "");
}

static LLVMValueRef shuffle(K *k, LLVMValueRef a, LLVMValueRef b, const int *idx, unsigned n) {
  LLVMValueRef m[64];
  for (unsigned i = 0; i < n; i++)
    m[i] = i32k(k, idx[i]);
  return LLVMBuildShuffleVector(k->b, a, b ? b : LLVMGetUndef(LLVMTypeOf(a)),
                                LLVMConstVector(m, n), "");
}

static LLVMValueRef gep(K *k, LLVMValueRef p, LLVMValueRef off) {
  return LLVMBuildGEP2(k->b, k->i8, p, &off, 1, "");
}

static LLVMValueRef load(K *k, LLVMTypeRef t, LLVMValueRef p) {
  LLVMValueRef v = LLVMBuildLoad2(k->b, t, p, "");
  LLVMSetAlignment(v, 1);
  return v;
}

static LLVMValueRef intrinsic(K *k, const char *name, LLVMTypeRef ret, LLVMValueRef *args,
                              unsigned n) {
  LLVMTypeRef ts[4];
  for (unsigned i = 0; i < n; i++)
    ts[i] = LLVMTypeOf(args[i]);
  LLVMTypeRef fty = LLVMFunctionType(ret, ts, n, 0);
  LLVMValueRef f = LLVMGetNamedFunction(k->mod, name);
  if (!f)
    f = LLVMAddFunction(k->mod, name, fty);
  return LLVMBuildCall2(k->b, fty, f, args, n, "");
}

/* The 4 bytes of xq at byte offset off, in every lane: <32 x i8>. */
static LLVMValueRef xquad(K *k, LLVMValueRef xrow, LLVMValueRef off) {
  LLVMValueRef v = load(k, k->i32, gep(k, xrow, off));
  return LLVMBuildBitCast(k->b, splat(k, k->v8i32, v), k->v32i8, "");
}

/* The generic route: sum over each quad of (x - zx) w', int32 lanes. */
static LLVMValueRef dot_generic(K *k, LLVMValueRef x, LLVMValueRef zx16, LLVMValueRef w) {
  LLVMValueRef xs = LLVMBuildSub(k->b, LLVMBuildZExt(k->b, x, k->v32i16, ""), zx16, "");
  LLVMValueRef p = LLVMBuildMul(k->b, xs, LLVMBuildSExt(k->b, w, k->v32i16, ""), "");
  LLVMTypeRef v32i32 = LLVMVectorType(k->i32, 32);
  LLVMValueRef p32 = LLVMBuildSExt(k->b, p, v32i32, "");
  int idx[4][8];
  for (int j = 0; j < 4; j++)
    for (int q = 0; q < 8; q++)
      idx[j][q] = q * 4 + j;
  LLVMValueRef s01 = LLVMBuildAdd(k->b, shuffle(k, p32, NULL, idx[0], 8),
                                  shuffle(k, p32, NULL, idx[1], 8), "");
  LLVMValueRef s23 = LLVMBuildAdd(k->b, shuffle(k, p32, NULL, idx[2], 8),
                                  shuffle(k, p32, NULL, idx[3], 8), "");
  return LLVMBuildAdd(k->b, s01, s23, "");
}

/* acc (int32 lanes) plus the quads of the steps in x[]/w[] (nsteps <= 2). */
static LLVMValueRef accumulate(K *k, LLVMValueRef acc, LLVMValueRef *zacc, LLVMValueRef *x,
                               LLVMValueRef *w, int nsteps, LLVMValueRef zx8,
                               LLVMValueRef zx16, bool narrow) {
  if (k->form == CG_FORM_VNNI) {
    for (int s = 0; s < nsteps; s++) {
      LLVMValueRef wi = LLVMBuildBitCast(k->b, w[s], k->v8i32, "");
      LLVMValueRef a1[3] = {acc, LLVMBuildBitCast(k->b, x[s], k->v8i32, ""), wi};
      acc = intrinsic(k, "llvm.x86.avx512.vpdpbusd.256", k->v8i32, a1, 3);
      LLVMValueRef a2[3] = {*zacc, LLVMBuildBitCast(k->b, zx8, k->v8i32, ""), wi};
      *zacc = intrinsic(k, "llvm.x86.avx512.vpdpbusd.256", k->v8i32, a2, 3);
    }
    return acc;
  }
  if (k->form == CG_FORM_MADDUBS && narrow) {
    LLVMValueRef t = NULL;
    for (int s = 0; s < nsteps; s++) {
      LLVMValueRef a1[2] = {x[s], w[s]}, a2[2] = {zx8, w[s]};
      LLVMValueRef d =
          LLVMBuildSub(k->b, intrinsic(k, "llvm.x86.avx2.pmadd.ub.sw", k->v16i16, a1, 2),
                       intrinsic(k, "llvm.x86.avx2.pmadd.ub.sw", k->v16i16, a2, 2), "");
      t = t ? LLVMBuildAdd(k->b, t, d, "") : d;
    }
    LLVMValueRef ones = splat(k, k->v16i16, LLVMConstInt(k->i16, 1, 0));
    LLVMValueRef a[2] = {t, ones};
    return LLVMBuildAdd(k->b, acc, intrinsic(k, "llvm.x86.avx2.pmadd.wd", k->v8i32, a, 2), "");
  }
  for (int s = 0; s < nsteps; s++)
    acc = LLVMBuildAdd(k->b, acc, dot_generic(k, x[s], zx16, w[s]), "");
  return acc;
}

/* acc + udot(x, w): unsigned bytes in quads, on the two halves (AArch64
 * dotprod; i8mm cores have it too). */
static LLVMValueRef udot(K *k, LLVMValueRef acc, LLVMValueRef x, LLVMValueRef w) {
  LLVMTypeRef v4i32 = LLVMVectorType(k->i32, 4), v16i8 = LLVMVectorType(k->i8, 16);
  int lo[16], hi[16], lo4[4] = {0, 1, 2, 3}, hi4[4] = {4, 5, 6, 7}, all[8];
  for (int i = 0; i < 16; i++) {
    lo[i] = i;
    hi[i] = 16 + i;
  }
  for (int i = 0; i < 8; i++)
    all[i] = i;
  LLVMValueRef r[2];
  for (int h = 0; h < 2; h++) {
    LLVMValueRef a[3] = {shuffle(k, acc, NULL, h ? hi4 : lo4, 4),
                         shuffle(k, x, NULL, h ? hi : lo, 16),
                         shuffle(k, w, NULL, h ? hi : lo, 16)};
    LLVMTypeRef ts[3] = {v4i32, v16i8, v16i8};
    LLVMTypeRef fty = LLVMFunctionType(v4i32, ts, 3, 0);
    const char *name = "llvm.aarch64.neon.udot.v4i32.v16i8";
    LLVMValueRef f = LLVMGetNamedFunction(k->mod, name);
    if (!f)
      f = LLVMAddFunction(k->mod, name, fty);
    r[h] = LLVMBuildCall2(k->b, fty, f, a, 3, "");
  }
  return shuffle(k, r[0], r[1], all, 8);
}

/* One group of 4-bit weights on VNNI and MADDUBS for the mr rows of a tile
 * (xg[i], zx[i]: row i's group of x and its zero point; acc[i] its result):
 * the raw nibbles u (w' = u - zl, zl = 8 symmetric or the lane's zero
 * point), unpacked once for all rows, multiply x unsigned, and the zero
 * points come in once per group:
 *   acc = sum x u - zx U - zl (X - G zx),  U = sum u (per lane), X = sum x
 * T = sum x u: vpdpbusd, or pmaddubsw into int16 (4 steps at most: 4 * 2 *
 * 255 * 15 < 2^15) then pmaddwd by ones. U: the nibbles added as bytes (16
 * steps at most: 16 * 15 < 2^8), then multiplied by ones. X: psadbw. On
 * AArch64 (dotprod, i8mm) T and U are udot (x and u both unsigned), X a
 * widened sum (uaddlv). */
static void narrow_group(K *k, const Pack *p, LLVMValueRef wg, const LLVMValueRef *xg,
                         const LLVMValueRef *zx, int mr, LLVMValueRef zl8, LLVMValueRef *acc) {
  bool vnni = k->form == CG_FORM_VNNI, a64 = k->form == CG_FORM_DOT || k->form == CG_FORM_MMLA;
  LLVMValueRef m15 = splat(k, k->v32i8, LLVMConstInt(k->i8, 15, 0));
  LLVMValueRef four = splat(k, k->v32i8, LLVMConstInt(k->i8, 4, 0));
  LLVMValueRef ones8 = splat(k, k->v32i8, LLVMConstInt(k->i8, 1, 0));
  LLVMValueRef ones16 = splat(k, k->v16i16, LLVMConstInt(k->i16, 1, 0));
  LLVMValueRef uacc = LLVMConstNull(k->v8i32), t16[MR], usum = NULL;
  for (int i = 0; i < mr; i++) {
    acc[i] = LLVMConstNull(k->v8i32);
    t16[i] = NULL;
  }
  int tsteps = 0, usteps = 0;
  int64_t quads = p->g / 4;
  for (int64_t q = 0; q < quads; q += 2) {
    LLVMValueRef raw = load(k, k->v32i8, gep(k, wg, i64k(k, q / 2 * 32)));
    LLVMValueRef u[2] = {LLVMBuildAnd(k->b, raw, m15, ""),
                         LLVMBuildAnd(k->b, LLVMBuildLShr(k->b, raw, four, ""), m15, "")};
    for (int s = 0; s < 2; s++) {
      bool flush = ++tsteps == 4 || q + s + 1 == quads;
      for (int i = 0; i < mr; i++) {
        LLVMValueRef x = xquad(k, xg[i], i64k(k, (q + s) * 4));
        if (a64) {
          acc[i] = udot(k, acc[i], x, u[s]);
          continue;
        }
        if (vnni) {
          LLVMValueRef a[3] = {acc[i], LLVMBuildBitCast(k->b, x, k->v8i32, ""),
                               LLVMBuildBitCast(k->b, u[s], k->v8i32, "")};
          acc[i] = intrinsic(k, "llvm.x86.avx512.vpdpbusd.256", k->v8i32, a, 3);
          continue;
        }
        LLVMValueRef a[2] = {x, u[s]};
        LLVMValueRef d = intrinsic(k, "llvm.x86.avx2.pmadd.ub.sw", k->v16i16, a, 2);
        t16[i] = t16[i] ? LLVMBuildAdd(k->b, t16[i], d, "") : d;
        if (flush) {
          LLVMValueRef b[2] = {t16[i], ones16};
          acc[i] = LLVMBuildAdd(k->b, acc[i],
                                intrinsic(k, "llvm.x86.avx2.pmadd.wd", k->v8i32, b, 2), "");
          t16[i] = NULL;
        }
      }
      if (flush)
        tsteps = 0;
      usum = usum ? LLVMBuildAdd(k->b, usum, u[s], "") : u[s];
      if (++usteps == 16 || q + s + 1 == quads) {
        if (a64) {
          uacc = udot(k, uacc, usum, ones8);
        } else if (vnni) {
          LLVMValueRef a[3] = {uacc, LLVMBuildBitCast(k->b, usum, k->v8i32, ""),
                               LLVMBuildBitCast(k->b, ones8, k->v8i32, "")};
          uacc = intrinsic(k, "llvm.x86.avx512.vpdpbusd.256", k->v8i32, a, 3);
        } else {
          LLVMValueRef a[2] = {usum, ones8};
          LLVMValueRef w = intrinsic(k, "llvm.x86.avx2.pmadd.ub.sw", k->v16i16, a, 2);
          LLVMValueRef b[2] = {w, ones16};
          uacc = LLVMBuildAdd(k->b, uacc, intrinsic(k, "llvm.x86.avx2.pmadd.wd", k->v8i32, b, 2),
                              "");
        }
        usum = NULL;
        usteps = 0;
      }
    }
  }
  LLVMValueRef zl = zl8 ? LLVMBuildZExt(k->b, zl8, k->v8i32, "")
                        : splat(k, k->v8i32, i32k(k, 8));
  LLVMTypeRef v4i64 = LLVMVectorType(k->i64, 4);
  LLVMTypeRef fty = LLVMFunctionType(k->i64, &v4i64, 1, 0);
  LLVMValueRef rf = LLVMGetNamedFunction(k->mod, "llvm.vector.reduce.add.v4i64");
  if (!rf)
    rf = LLVMAddFunction(k->mod, "llvm.vector.reduce.add.v4i64", fty);
  for (int i = 0; i < mr; i++) {
    LLVMValueRef xs;
    if (a64) {
      /* X = the group's sum of x, widened and added (uaddlv). */
      LLVMTypeRef vg = LLVMVectorType(k->i8, (unsigned)p->g);
      LLVMTypeRef vg32 = LLVMVectorType(k->i32, (unsigned)p->g);
      LLVMValueRef wide = LLVMBuildZExt(k->b, load(k, vg, xg[i]), vg32, "");
      char rname[64];
      snprintf(rname, sizeof rname, "llvm.vector.reduce.add.v%di32", (int)p->g);
      LLVMTypeRef rty = LLVMFunctionType(k->i32, &vg32, 1, 0);
      LLVMValueRef red = LLVMGetNamedFunction(k->mod, rname);
      if (!red)
        red = LLVMAddFunction(k->mod, rname, rty);
      xs = LLVMBuildCall2(k->b, rty, red, &wide, 1, "");
    } else {
    /* X = the group's sum of x: psadbw against zero over its G bytes. */
    LLVMValueRef xsum = LLVMConstNull(v4i64);
    for (int64_t o = 0; o < p->g; o += 32) {
      LLVMValueRef xv;
      if (p->g - o >= 32) {
        xv = load(k, k->v32i8, gep(k, xg[i], i64k(k, o)));
      } else { /* G = 8 or 16 past a multiple of 32: zero-extended */
        LLVMTypeRef vt = LLVMVectorType(k->i8, (unsigned)(p->g - o));
        LLVMValueRef part = load(k, vt, gep(k, xg[i], i64k(k, o)));
        int idx[32];
        for (int j = 0; j < 32; j++)
          idx[j] = j < p->g - o ? j : (int)(p->g - o);
        xv = shuffle(k, part, LLVMConstNull(vt), idx, 32);
      }
      LLVMValueRef a[2] = {xv, LLVMConstNull(k->v32i8)};
      xsum = LLVMBuildAdd(k->b, xsum, intrinsic(k, "llvm.x86.avx2.psad.bw", v4i64, a, 2), "");
    }
    xs = LLVMBuildTrunc(k->b, LLVMBuildCall2(k->b, fty, rf, &xsum, 1, ""), k->i32, "");
    }
    /* acc - zx U - zl (X - G zx), wrapping int32 (exact). */
    LLVMValueRef xc = LLVMBuildSub(k->b, xs, LLVMBuildMul(k->b, zx[i], i32k(k, p->g), ""), "");
    acc[i] = LLVMBuildSub(k->b, acc[i], LLVMBuildMul(k->b, splat(k, k->v8i32, zx[i]), uacc, ""),
                          "");
    acc[i] = LLVMBuildSub(k->b, acc[i], LLVMBuildMul(k->b, zl, splat(k, k->v8i32, xc), ""), "");
  }
}

/* The 8 scales of a block and group at p, as <8 x float>. */
static LLVMValueRef scales(K *k, LLVMValueRef p, int sbits) {
  if (sbits == 32)
    return load(k, k->v8f32, p);
  LLVMTypeRef v8i16 = LLVMVectorType(k->i16, 8);
  LLVMValueRef h = LLVMBuildZExt(k->b, load(k, v8i16, p), k->v8i32, "");
  /* A normal f16: (h << 13) + (112 << 23) are its f32 bits. */
  LLVMValueRef bits =
      LLVMBuildAdd(k->b, LLVMBuildShl(k->b, h, splat(k, k->v8i32, i32k(k, 13)), ""),
                   splat(k, k->v8i32, i32k(k, 112 << 23)), "");
  return LLVMBuildBitCast(k->b, bits, k->v8f32, "");
}

typedef struct {
  LLVMBasicBlockRef pre, body;
  LLVMValueRef i;
} Loop;

static LLVMValueRef loop_begin(K *k, Loop *l, const char *name) {
  l->pre = LLVMGetInsertBlock(k->b);
  l->body = LLVMAppendBasicBlockInContext(k->ctx, k->fn, name);
  LLVMBuildBr(k->b, l->body);
  LLVMPositionBuilderAtEnd(k->b, l->body);
  l->i = LLVMBuildPhi(k->b, k->i64, name);
  return l->i;
}

static void loop_end(K *k, Loop *l, int64_t count) {
  LLVMValueRef next = LLVMBuildAdd(k->b, l->i, i64k(k, 1), "");
  LLVMBasicBlockRef latch = LLVMGetInsertBlock(k->b);
  LLVMBasicBlockRef done = LLVMAppendBasicBlockInContext(k->ctx, k->fn, "");
  LLVMValueRef zero = i64k(k, 0);
  LLVMAddIncoming(l->i, &zero, &l->pre, 1);
  LLVMAddIncoming(l->i, &next, &latch, 1);
  LLVMBuildCondBr(k->b, LLVMBuildICmp(k->b, LLVMIntEQ, next, i64k(k, count), ""), done,
                  l->body);
  LLVMPositionBuilderAtEnd(k->b, done);
}

/* The block and group loops for the mr rows from row r0 (i64): y[r0 + i]
 * for every block of channels. */
static void emit_rows(K *k, const Pack *p, LLVMValueRef r0, int mr, LLVMValueRef wglob,
                      LLVMValueRef bglob, int64_t xstride, LLVMValueRef *yslot) {
  LLVMValueRef xq = LLVMGetParam(k->fn, 0), rowp = LLVMGetParam(k->fn, 1),
               y = LLVMGetParam(k->fn, 2);
  bool narrow = p->wbits == 4;
  LLVMValueRef xrow[MR], zx[MR], sxv[MR], zx8[MR], zx16[MR], yrow[MR];
  for (int i = 0; i < mr; i++) {
    LLVMValueRef r = LLVMBuildAdd(k->b, r0, i64k(k, i), "");
    xrow[i] = gep(k, xq, LLVMBuildMul(k->b, r, i64k(k, xstride), ""));
    LLVMValueRef rrec = gep(k, rowp, LLVMBuildMul(k->b, r, i64k(k, sizeof(CgGemmRow)), ""));
    zx[i] = load(k, k->i32, gep(k, rrec, i64k(k, offsetof(CgGemmRow, zp))));
    LLVMValueRef sx = load(k, k->f32, gep(k, rrec, i64k(k, offsetof(CgGemmRow, scale))));
    zx8[i] = splat(k, k->v32i8, LLVMBuildTrunc(k->b, zx[i], k->i8, ""));
    zx16[i] = splat(k, k->v32i16, LLVMBuildTrunc(k->b, zx[i], k->i16, ""));
    sxv[i] = splat(k, k->v8f32, sx);
    yrow[i] = gep(k, y, LLVMBuildMul(k->b, r, i64k(k, p->n * 4), ""));
  }

  Loop lb, lg;
  LLVMValueRef blk = loop_begin(k, &lb, "block");
  LLVMValueRef wblk = gep(k, wglob, LLVMBuildMul(k->b, blk, i64k(k, p->ng * p->gbytes), ""));
  for (int i = 0; i < mr; i++)
    LLVMBuildStore(k->b, splat(k, k->v8f32, LLVMConstReal(k->f32, -0.0)), yslot[i]);

  LLVMValueRef g = loop_begin(k, &lg, "group");
  LLVMValueRef wg = gep(k, wblk, LLVMBuildMul(k->b, g, i64k(k, p->gbytes), ""));
  LLVMValueRef xg[MR];
  for (int i = 0; i < mr; i++)
    xg[i] = gep(k, xrow[i], LLVMBuildMul(k->b, g, i64k(k, p->g), ""));
  /* The vector subtracted from each stored byte: zw per lane (asymmetric),
   * 8 (symmetric 4-bit), nothing (8-bit). */
  LLVMValueRef zsub = NULL, zl8 = NULL;
  if (p->wbits == 4 && !p->zero) {
    zsub = splat(k, k->v32i8, LLVMConstInt(k->i8, 8, 0));
  } else if (p->zero) {
    LLVMTypeRef v4i8 = LLVMVectorType(k->i8, 4), v8i8 = LLVMVectorType(k->i8, 8);
    LLVMValueRef z4 = load(k, v4i8, gep(k, wg, i64k(k, p->wbytes + p->sbytes)));
    LLVMValueRef z8 = shuffle(k, z4, NULL, (const int[]){0, 0, 1, 1, 2, 2, 3, 3}, 8);
    LLVMValueRef lo = LLVMBuildAnd(k->b, z8, splat(k, v8i8, LLVMConstInt(k->i8, 15, 0)), "");
    LLVMValueRef hi = LLVMBuildLShr(k->b, z8, splat(k, v8i8, LLVMConstInt(k->i8, 4, 0)), "");
    zl8 = shuffle(k, lo, hi, (const int[]){0, 9, 2, 11, 4, 13, 6, 15}, 8);
    int rep[32];
    for (int i = 0; i < 32; i++)
      rep[i] = i / 4;
    zsub = shuffle(k, zl8, NULL, rep, 32);
  }
  LLVMValueRef acc[MR], zacc[MR];
  for (int i = 0; i < mr; i++)
    acc[i] = zacc[i] = LLVMConstNull(k->v8i32);
  if (narrow && (k->form == CG_FORM_VNNI || k->form == CG_FORM_MADDUBS ||
                 k->form == CG_FORM_DOT || k->form == CG_FORM_MMLA)) {
    narrow_group(k, p, wg, xg, zx, mr, zl8, acc);
  } else {
    int64_t quads = p->g / 4;
    LLVMValueRef m15 = splat(k, k->v32i8, LLVMConstInt(k->i8, 15, 0));
    LLVMValueRef four = splat(k, k->v32i8, LLVMConstInt(k->i8, 4, 0));
    for (int64_t q = 0; q < quads; q += 2) {
      LLVMValueRef xs[2], ws[2];
      int nsteps;
      if (narrow) {
        LLVMValueRef raw = load(k, k->v32i8, gep(k, wg, i64k(k, q / 2 * 32)));
        ws[0] = LLVMBuildSub(k->b, LLVMBuildAnd(k->b, raw, m15, ""), zsub, "");
        ws[1] = LLVMBuildSub(k->b, LLVMBuildLShr(k->b, raw, four, ""), zsub, "");
        nsteps = 2;
      } else {
        nsteps = quads - q >= 2 ? 2 : 1;
        for (int s = 0; s < nsteps; s++)
          ws[s] = load(k, k->v32i8, gep(k, wg, i64k(k, (q + s) * 32)));
      }
      for (int i = 0; i < mr; i++) {
        for (int s = 0; s < nsteps; s++)
          xs[s] = xquad(k, xg[i], i64k(k, (q + s) * 4));
        acc[i] = accumulate(k, acc[i], &zacc[i], xs, ws, nsteps, zx8[i], zx16[i], narrow);
      }
    }
    if (k->form == CG_FORM_VNNI)
      for (int i = 0; i < mr; i++)
        acc[i] = LLVMBuildSub(k->b, acc[i], zacc[i], "");
  }
  LLVMValueRef sc = scales(k, gep(k, wg, i64k(k, p->wbytes)), p->sbits);
  for (int i = 0; i < mr; i++) {
    LLVMValueRef t = LLVMBuildFMul(k->b, sxv[i], sc, "");
    t = LLVMBuildFMul(k->b, t, LLVMBuildSIToFP(k->b, acc[i], k->v8f32, ""), "");
    LLVMValueRef yv = LLVMBuildFAdd(k->b, LLVMBuildLoad2(k->b, k->v8f32, yslot[i], ""), t, "");
    LLVMBuildStore(k->b, yv, yslot[i]);
  }
  loop_end(k, &lg, p->ng);

  LLVMValueRef bv = bglob ? load(k, k->v8f32, gep(k, bglob, LLVMBuildMul(k->b, blk, i64k(k, 32), "")))
                          : NULL;
  LLVMValueRef yv[MR], yp[MR];
  for (int i = 0; i < mr; i++) {
    yv[i] = LLVMBuildLoad2(k->b, k->v8f32, yslot[i], "");
    if (bv)
      yv[i] = LLVMBuildFAdd(k->b, yv[i], bv, "");
    yp[i] = gep(k, yrow[i], LLVMBuildMul(k->b, blk, i64k(k, NR * 4), ""));
  }
  if (p->n % NR == 0) {
    for (int i = 0; i < mr; i++)
      LLVMSetAlignment(LLVMBuildStore(k->b, yv[i], yp[i]), 4);
  } else {
    /* The last block stores only its channels below N. */
    LLVMValueRef last = LLVMBuildICmp(k->b, LLVMIntEQ, blk, i64k(k, p->nb - 1), "");
    LLVMBasicBlockRef full = LLVMAppendBasicBlockInContext(k->ctx, k->fn, "full"),
                      part = LLVMAppendBasicBlockInContext(k->ctx, k->fn, "part"),
                      join = LLVMAppendBasicBlockInContext(k->ctx, k->fn, "join");
    LLVMBuildCondBr(k->b, last, part, full);
    LLVMPositionBuilderAtEnd(k->b, full);
    for (int i = 0; i < mr; i++)
      LLVMSetAlignment(LLVMBuildStore(k->b, yv[i], yp[i]), 4);
    LLVMBuildBr(k->b, join);
    LLVMPositionBuilderAtEnd(k->b, part);
    for (int i = 0; i < mr; i++)
      for (int64_t q = 0; q < p->n % NR; q++)
        LLVMSetAlignment(
            LLVMBuildStore(k->b, LLVMBuildExtractElement(k->b, yv[i], i32k(k, q), ""),
                           gep(k, yp[i], i64k(k, q * 4))),
            4);
    LLVMBuildBr(k->b, join);
    LLVMPositionBuilderAtEnd(k->b, join);
  }
  loop_end(k, &lb, p->nb);
}

/* void NAME(const uint8_t *xq, const CgGemmRow *rows, float *y): tiles of
 * MR rows share each load and unpacking of the weights, then the rows left. */
static LLVMValueRef emit_kernel(Cg *cg, const char *name, CgIsa isa, const Pack *p,
                                LLVMValueRef wglob, LLVMValueRef bglob, int64_t rows,
                                int64_t xstride) {
  K k = {.ctx = cg->ctx, .mod = cg->mod, .i8 = cg->i8, .i32 = cg->i32, .i64 = cg->i64,
         .f32 = cg->f32, .ptr = cg->ptr, .form = cg_isa_info[isa].form};
  k.i16 = LLVMInt16TypeInContext(k.ctx);
  k.v32i8 = LLVMVectorType(k.i8, 32);
  k.v32i16 = LLVMVectorType(k.i16, 32);
  k.v16i16 = LLVMVectorType(k.i16, 16);
  k.v8i32 = LLVMVectorType(k.i32, 8);
  k.v8f32 = LLVMVectorType(k.f32, 8);
  LLVMTypeRef fty = LLVMFunctionType(cg->vd, (LLVMTypeRef[]){k.ptr, k.ptr, k.ptr}, 3, 0);
  k.fn = LLVMAddFunction(k.mod, name, fty);
  LLVMSetLinkage(k.fn, LLVMPrivateLinkage);
  cg_set_isa_attrs(k.fn, isa);
  k.b = LLVMCreateBuilderInContext(k.ctx);
  LLVMPositionBuilderAtEnd(k.b, LLVMAppendBasicBlockInContext(k.ctx, k.fn, "entry"));
  LLVMValueRef yslot[MR];
  for (int i = 0; i < MR; i++)
    yslot[i] = LLVMBuildAlloca(k.b, k.v8f32, "y");
  int64_t full = rows / MR, rest = rows % MR;
  if (full > 0) {
    Loop lt;
    LLVMValueRef t = loop_begin(&k, &lt, "tile");
    emit_rows(&k, p, LLVMBuildMul(k.b, t, i64k(&k, MR), ""), MR, wglob, bglob, xstride, yslot);
    loop_end(&k, &lt, full);
  }
  if (rest > 0)
    emit_rows(&k, p, i64k(&k, full * MR), (int)rest, wglob, bglob, xstride, yslot);
  LLVMBuildRetVoid(k.b);
  LLVMDisposeBuilder(k.b);
  return k.fn;
}

bool cg_emit_qgroup(Cg *cg, int idx, CgIsa isa, LLVMValueRef *in, LLVMValueRef y) {
  IrNode *n = cg->m->nodes[idx];
  const IrValue *x = n->opnds[0], *zv = ir_qgrp_zero(n), *bv = ir_qgrp_bias(n);
  const Loc *xl = &cg->loc[x->id], *rl = &cg->loc[n->result->id];
  Pack p = pack_of(n);
  if (cg->xq_offset[idx] < 0 || !fits(n)) {
    cg_call_ref(cg->mod, cg->b, q8_ref_qlinear_grp, in[0], in[1], in[2],
                zv ? in[3] : LLVMConstNull(cg->ptr), bv ? in[zv ? 4 : 3] : LLVMConstNull(cg->ptr),
                y, cg_i64c(cg, xl->rows), cg_i64c(cg, xl->cols), cg_i64c(cg, rl->cols),
                cg_i64c(cg, p.g));
    return true;
  }
  int64_t rows = xl->rows, ks = cg_round_up(p.k, 4);
  int64_t base = cg->xq_offset[idx];
  if (!cg->kernel[idx]) {
    char name[400];
    snprintf(name, sizeof name, "%s.%s.q8_grp%d_%s", cg->prefix, n->result->name, p.wbits,
             cg_isa_info[isa].name);
    int64_t bytes = 0;
    /* One packing for every variant: made by the first. */
    char gname[440];
    snprintf(gname, sizeof gname, "%s.%s.q8_grp.w", cg->prefix, n->result->name);
    LLVMValueRef wglob = LLVMGetNamedGlobal(cg->mod, gname);
    if (!wglob) {
      const uint8_t *packed = pack(cg->m->arena, n, &p, &bytes);
      wglob = cg_const_bytes(cg, gname, packed, (size_t)bytes);
    }
    LLVMValueRef bglob = NULL;
    if (bv) {
      float *bp = ir_alloc(cg->m->arena, (size_t)(p.nb * NR) * sizeof *bp);
      memset(bp, 0, (size_t)(p.nb * NR) * sizeof *bp);
      memcpy(bp, bv->data, (size_t)p.n * sizeof *bp);
      snprintf(gname, sizeof gname, "%s.%s.q8_grp.b", cg->prefix, n->result->name);
      bglob = LLVMGetNamedGlobal(cg->mod, gname);
      if (!bglob)
        bglob = cg_const_bytes(cg, gname, bp, (size_t)(p.nb * NR) * sizeof *bp);
    }
    cg->kernel[idx] = emit_kernel(cg, name, isa, &p, wglob, bglob, rows, ks);
    snprintf(gname, sizeof gname, "%s.quantize_rows", name);
    cg->quantizer[idx] = cg_emit_quantize_rows_dyn(cg->mod, gname, isa, rows, p.k, ks);
  }
  LLVMValueRef xq = cg_scratch_addr(cg, base);
  LLVMValueRef rrec = cg_scratch_addr(cg, base + cg_round_up(rows * ks, 64));
  LLVMTypeRef qty =
      LLVMFunctionType(cg->vd, (LLVMTypeRef[]){cg->ptr, cg->ptr, cg->ptr, cg->i32}, 4, 0);
  LLVMBuildCall2(cg->b, qty, cg->quantizer[idx],
                 (LLVMValueRef[]){in[0], xq, rrec, cg_i32c(cg, 0)}, 4, "");
  LLVMTypeRef kty = LLVMFunctionType(cg->vd, (LLVMTypeRef[]){cg->ptr, cg->ptr, cg->ptr}, 3, 0);
  LLVMBuildCall2(cg->b, kty, cg->kernel[idx], (LLVMValueRef[]){xq, rrec, y}, 3, "");
  return true;
}
