/* codegen.h: the LLVM backend. It turns a quantized module (after
 * fold-constants) into machine code specialized to the model's shapes: one
 * LLVM module holding the packed weights as constant data, one entry point
 * per instruction-set variant, and the q8_model descriptor (q8model.h).
 *
 *   isa.c       the targets: the variants (isa.def, one row each), the
 *               architectures (CgArch: triple, linker, emitters), --target
 *   pack.c      the x86 weight packing and the AVX2 saturation check
 *   gemm_tasks.c  what every GEMM backend shares: checks, names, tasks
 *   x86/qgemm.c the int8 GEMM kernels (AVX512-VNNI, AVX-VNNI, AVX2, generic)
 *   aarch64/qgemm.c  the AArch64 ones (i8mm, dot product, plain NEON), with
 *               their own weight packing
 *   irbuild.c   LLVM IR building blocks the emitters share
 *   quantize.c  the f32 -> u8/i8 input quantization loop (any ISA), and
 *               the per-row dynamic one (--dynamic)
 *   refcall.c   calls to the reference ops, typed by ir/refops.def
 *   module.c    the driver, with layout.c (memory), lower.c (the entry
 *               functions) and descriptor.c (q8_model), sharing module.h
 *   emit.c      LLVM IR / assembly / object / shared library / C header
 *   jit.c       compile in memory with ORC LLJIT
 *
 * The API is grouped by the file that implements it; prefix cg_. */
#ifndef Q8_CODEGEN_H
#define Q8_CODEGEN_H

#include <llvm-c/Core.h>
#include <llvm-c/Target.h>
#include <llvm-c/TargetMachine.h>

#include "../ir/ir.h"
#include "q8model.h"

/* ---- isa.c: the targets ---- */

typedef enum { CG_ARCH_X86_64, CG_ARCH_AARCH64, CG_ARCH_COUNT } CgArchId;

/* How a kernel multiplies a group of K (isa.def's FORM column; the emitters'
 * header comments say what each is). */
typedef enum {
  CG_FORM_VNNI,    /* x86 vpdpbusd */
  CG_FORM_MADDUBS, /* x86 vpmaddubsw + vpmaddwd by ones */
  CG_FORM_PAIRS,   /* x86 widened pairs, pmaddwd */
  CG_FORM_DOT,     /* AArch64 sdot/sudot by element */
  CG_FORM_MMLA,    /* AArch64 smmla/usmmla */
  CG_FORM_MULL,    /* AArch64 smull/smlal2/sadalp */
} CgForm;

/* How floats are rounded to nearest even (isa.def's ROUND column). */
typedef enum { CG_ROUND_INSN, CG_ROUND_MAGIC, CG_ROUND_EMBEDDED } CgRound;

typedef enum {
#define ISA(ID, ...) CG_ISA_##ID,
#include "isa.def"
#undef ISA
  CG_ISA_COUNT
} CgIsa;

/* One row of isa.def (its header comment says what each field is). */
typedef struct {
  const char *name;       /* --target spelling */
  CgArchId arch;
  const char *cpu;        /* LLVM CPU name for the functions of this variant */
  const char *features;   /* LLVM target features for them */
  uint64_t bits;          /* Q8_FEATURE_* the code needs at run time */
  int vregs;              /* vector registers */
  int nr;                 /* channels per accumulator vector */
  CgForm form;            /* how a K group is multiplied */
  int max_mr, max_nrv;    /* tile limits: rows, accumulator vectors across */
  int spare;              /* registers left free for the compiler */
  CgRound round;          /* rounding to nearest even */
  bool prefetch;          /* multi-row tiles prefetch their weights */
  int qlanes;             /* floats per step of the input quantization */
} CgIsaInfo;

extern const CgIsaInfo cg_isa_info[CG_ISA_COUNT];

/* One qgemm layer, shapes fixed: y[m, n] = requant(bias[n] + sum_k x[m, k] * wq[n, k]). */
typedef struct {
  const char *name;         /* the model and layer ("mlp.y"): the kernel's
                             * name is NAME.q8_gemm_..., its constants' too */
  int64_t m, k, n;
  IrDType x_dtype;          /* u8 or i8: the quantized input as stored */
  int64_t x_stride;         /* bytes between rows of x: a multiple of 4, >= k; the
                             * bytes between k and x_stride may hold anything */
  const int8_t *wq;         /* [n, k] */
  const int32_t *bias;      /* [n] */
  const float *mult;        /* [n] */
  IrDType y_dtype;          /* u8, i8 or f32 */
  int64_t y_stride;         /* elements between rows of y */
  int32_t y_zero_point;     /* integer output */
  int32_t y_min, y_max;     /* integer output: clamp bounds, relu folded into y_min */
  bool relu;                /* f32 output: y > 0 ? y : +0.0 */
  int32_t x_min, x_max;     /* the values x can take (for the AVX2 saturation check) */
  /* The GEMMs of qmatmul, qmatmul_dyn and qlinear_dyn (docs/kernels.md, "Int8
   * attention and dynamic layers"): */
  bool runtime_w;           /* wq, bias and mult are NULL: the packed weights,
                             * bias[2 npad] and mult[2 npad] come in CgGemmArgs,
                             * packed as *rt says */
  bool row_terms;           /* sum += rows[r].add - rows[r].zp * colsum[n], colsum =
                             * bias + npad (CgGemmRow; rows in CgGemmArgs) */
  bool row_scale;           /* f32 output: v = f32(sum) * f32(rows[r].scale * mult[n]) */
  bool w_7bit;              /* runtime_w: the packed weights lie in [-64, 63] (qmatmul's
                             * b_bits = 7), so AVX2's vpmaddubsw cannot saturate */
  const float *fbias;       /* f32 output with row_terms and constant weights:
                             * v = f32(v + fbias[n]), or NULL */
  struct CgGemmRuntime *rt; /* when non-NULL, the emitter fills it */
  /* A run-time M (rtshape.c): m is only a hint; the rows come in
   * CgGemmArgs.m, the row tiles and the M tail are chosen at run time, and
   * the emitter adds `int64_t KERNEL.ntasks(int64_t m)`, the task count for
   * m rows. Only with CgArch.runtime_m. */
  bool runtime_m;
  struct CgWeights *wfile;  /* constant weights, x86: written to this weights
                             * file (weights.c) rather than into a constant */
  int pack_nr;              /* constant weights, x86: channels per packed block, a
                             * multiple of the variant's nr that every variant of
                             * the library reads (cg_shared_pack_nr), so they share
                             * one copy of the bytes; 0: the variant's nr */
} CgGemm;

/* The most rows of a GEMM tile on any variant (isa.def's max_mr). */
enum { CG_MAX_TILE_ROWS = 8 };

/* A row's terms of a GEMM with row_terms (16 bytes, in scratch). */
typedef struct {
  int32_t add;  /* added to the row's sums */
  int32_t zp;   /* times colsum[n], subtracted */
  float scale;  /* row_scale: times mult[n], in f32 */
  int32_t pad;
} CgGemmRow;

/* Where the emitter's packed layout puts wq[n, k], for packing at run time
 * (every backend's layout has this form):
 *   (n / cb) * block_bytes + (k / kstep) * step + ((n % cb) / cpv) * 16
 *     + (n % cpv) * kstep + k % kstep
 * step = step_bytes, or last_step_bytes in the last block; zeros past N and
 * K. The kernel adds flip * colsum[n] to nothing itself: a caller packing at
 * run time puts bias[n] = flip * colsum[n] (wrapping) besides its own. */
typedef struct CgGemmRuntime {
  int64_t packed_bytes, npad;
  int64_t cb, block_bytes, kstep, cpv, step_bytes, last_step_bytes;
  int32_t flip;
} CgGemmRuntime;

/* An architecture: what its code needs to be built, linked and run, and its
 * emitters. One descriptor per CgArchId (isa.c); the variants of isa.def
 * name theirs. */
typedef struct {
  const char *name;       /* "x86_64", "aarch64" */
  const char *triple;     /* LLVM target triple */
  const char *cpu;        /* the target machine's baseline CPU */
  void (*init_llvm)(void);/* registers LLVM's target (cg_init_llvm calls it) */
  CgIsa baseline;         /* the variant every machine of this architecture runs */
  /* linking a .so (emit.c): the C compiler driver, the variable naming
   * another, its Debian package; the variable naming libq8support.a, its
   * path relative to q8c's directory, its path in the build tree (or NULL);
   * cross-compiled, so a missing library names the package that builds it */
  const char *cc, *cc_env, *cc_package;
  const char *lib_env, *lib_beside, *lib_build;
  bool cross;
  /* The int8 GEMM emitter (cg_emit_qgemm's contract), and whether it takes
   * CgGemm.runtime_m. */
  LLVMValueRef (*emit_qgemm)(LLVMModuleRef mod, const CgGemm *g, CgIsa isa, int64_t *ntasks,
                             char *err, size_t errlen);
  bool runtime_m;
  /* Weight packing for the variants of this architecture (pack.c), or NULL
   * when the emitter packs per tile itself (AArch64: the layout depends on
   * the form, which depends on M). */
  size_t (*packed_size)(CgIsa isa, int64_t n, int64_t k);
  void (*pack)(CgIsa isa, const int8_t *wq, int64_t n, int64_t k, int8_t *dst);
  /* The input quantization emitter (cg_emit_quantize_rows' contract). */
  LLVMValueRef (*emit_quantize)(LLVMModuleRef mod, const char *name, CgIsa isa, int64_t m,
                                int64_t k, int64_t x_stride, float scale, int32_t zero_point,
                                IrDType dtype);
} CgArch;

extern const CgArch cg_arch_info[CG_ARCH_COUNT];
/* The architecture of variant `isa`. */
const CgArch *cg_arch_of(CgIsa isa);
/* -1 when unknown. */
int cg_isa_from_name(const char *s, size_t len);
/* The best variant the machine running q8c supports ("native"), among those
 * of its own architecture. */
CgIsa cg_isa_native(void);
/* The architecture q8c itself runs on. */
CgArchId cg_host_arch(void);
/* Give function `fn` the CPU and features of `isa` (per-function target
 * attributes: one LLVM module holds every variant). */
void cg_set_isa_attrs(LLVMValueRef fn, CgIsa isa);

typedef struct {
  CgIsa isas[CG_ISA_COUNT]; /* variants to compile, best first */
  int nisas;
  int opt_level;            /* 0..3 */
  int64_t batch;            /* the `?` dimension; 0: bound at each call when the
                             * model allows it (rtshape.c), else 1 */
  int64_t max_batch;        /* with a run-time batch: the largest (0: no limit) */
  /* --max-dim NAME=N: the largest value of each named dim (docs/ir.md,
   * "Named dims"), by name; others unlimited. */
  int nmax_dims;
  const char *max_dim_names[IR_MAX_RANK];
  int64_t max_dim_values[IR_MAX_RANK];
  bool scalar_floatops;     /* float ops as reference calls, not floatops.c's
                             * vector code (the driver's Q8_SCALAR_FLOATOPS=1,
                             * for bench/floatops.sh's comparison) */
  const char *weights_out;  /* --weights-out: write the packed weights of the
                             * x86 kernels to this file (weights.c), not into
                             * the module; NULL: constants */
  const char *weights_name; /* the file as the library records it: a name in
                             * the library's directory, or an absolute path */
  bool jit_in_place;        /* cg_jit_compile: constants are read where they
                             * are in memory, by address, not copied into the
                             * module (the IR's constant data must outlive the
                             * JIT), and what codegen derives from them (the
                             * float linear's packed W) is made in memory the
                             * JIT owns (calibration, api/jiteval.c) */
  struct CgHeld *held;      /* set by cg_jit_compile with jit_in_place: that
                             * memory (NULL: constants go into the module) */
} CgOptions;

/* Parse --target: "native" or a comma-separated list of variant names, all
 * of one architecture; o->isas gets them best first. */
bool cg_parse_targets(const char *list, CgOptions *o, char *err, size_t errlen);
/* The packed block (CgGemm.pack_nr) the variants of `o` share: the largest
 * nr among them when there are several, their architecture packs with
 * pack.c and each nr divides it; else 0 (one variant, or AArch64, whose
 * layout depends on the form). */
int cg_shared_pack_nr(const CgOptions *o);

/* ---- pack.c ---- */

/* The x86 layout: weights as [ceil(N / nr)][ceil(K / 4)][nr][4] int8, N and
 * K padded with zeros, nr the variant's (cg_isa_info[isa].nr). Its size in
 * bytes, and wq [n, k] packed into dst. */
size_t cg_packed_size(CgIsa isa, int64_t n, int64_t k);
void cg_pack_weights(CgIsa isa, const int8_t *wq, int64_t n, int64_t k, int8_t *dst);
/* The same with nr channels per block given: the layout several variants
 * share (CgGemm.pack_nr). */
size_t cg_packed_size_nr(int64_t nr, int64_t n, int64_t k);
void cg_pack_weights_nr(int64_t nr, const int8_t *wq, int64_t n, int64_t k, int8_t *dst);
/* Can vpmaddubsw's int16 sum of two products x0*w0 + x1*w1 saturate, for x
 * in [x_min, x_max] (as unsigned bytes the kernel multiplies) and the
 * adjacent pairs (k = 2j, 2j + 1) of each row of wq? */
bool cg_pairs_can_saturate(const int8_t *wq, int64_t n, int64_t k, int32_t x_min, int32_t x_max);

/* ---- weights.c: the weights file (--weights-out) ---- */

typedef struct CgWeights CgWeights;
/* Create `path` for writing; NULL with a message in err. */
CgWeights *cg_weights_open(const char *path, char *err, size_t errlen);
/* Append `size` bytes (a layer's packed weights, `name` saying which layer
 * and layout) at a 64-byte aligned payload offset, which it returns; the
 * same name, size and bytes (by their 64-bit hash) return the first copy's
 * offset. -1 on a write error (cg_weights_failed says it). */
int64_t cg_weights_add(CgWeights *w, const char *name, const void *data, size_t size);
/* The module's private global holding the payload's address at run time
 * (the runtime sets it through q8_weights.base). */
LLVMValueRef cg_weights_base(CgWeights *w, LLVMModuleRef mod);
bool cg_weights_failed(const CgWeights *w, char *err, size_t errlen);
/* Emit the exported `q8_weights` descriptor (q8model.h) into mod, naming
 * the file `file`, write the header and close the file. False with err. */
bool cg_weights_finish(CgWeights *w, LLVMModuleRef mod, const char *file, char *err,
                       size_t errlen);
void cg_weights_free(CgWeights *w);

/* ---- irbuild.c: LLVM IR building blocks ---- */

/* A constant vector of n copies of c (n <= 64). */
LLVMValueRef cg_splat(LLVMValueRef c, unsigned n);
/* shufflevector x, y (undef when NULL) by the constant indices idx[0..n). */
LLVMValueRef cg_shuffle(LLVMBuilderRef b, LLVMValueRef x, LLVMValueRef y, const int *idx,
                        unsigned n);
/* A call of the target-independent or target intrinsic `name`, overloaded on
 * over[0..nover) (q8_die if this LLVM lacks it: a build problem, not input). */
LLVMValueRef cg_intrinsic(LLVMModuleRef mod, LLVMBuilderRef b, const char *name,
                          LLVMTypeRef *over, size_t nover, LLVMValueRef *args, unsigned nargs);
/* A private, unnamed_addr, 64-byte aligned constant global `name` = init. */
LLVMValueRef cg_private_const(LLVMModuleRef mod, const char *name, LLVMValueRef init);
/* base + i * scale + off bytes, i an i64 value. */
LLVMValueRef cg_at(LLVMBuilderRef b, LLVMValueRef base, LLVMValueRef i, int64_t scale,
                   int64_t off);
/* n copies of the run-time scalar v. */
LLVMValueRef cg_splat_value(LLVMBuilderRef b, LLVMValueRef v, unsigned n);
/* A load of t from p with alignment `align`. */
LLVMValueRef cg_load(LLVMBuilderRef b, LLVMTypeRef t, LLVMValueRef p, unsigned align);

/* ---- gemm_tasks.c: what every GEMM backend shares ---- */

/* The arguments of a gemm task function: void NAME(void *args, int64_t task)
 * with args pointing to this. */
typedef struct {
  const void *x;
  void *y;
  /* runtime_w: the packed weights, bias[2 npad] (bias, colsum), mult[2 npad] */
  const void *w, *bias, *mult;
  const CgGemmRow *rows; /* row_terms: one per row of x */
  int64_t m;             /* runtime_m: the rows of x */
} CgGemmArgs;

/* Emit the kernel for `g` and `isa` into `mod`, with the emitter of the
 * variant's architecture (CgArch.emit_qgemm): a function
 *   void KERNEL(void *args, int64_t task)   (args: CgGemmArgs *)
 * computing every output element of task `task`, 0 <= task < *ntasks (tasks
 * are independent: the caller may run them on any threads), with the packed
 * weights, bias and multipliers as private constant globals. KERNEL is named
 * by what it is (cg_gemm_name). Returns the function, or NULL with a message
 * in err. The arithmetic is exactly qgemm's (docs/quantization.md). */
LLVMValueRef cg_emit_qgemm(LLVMModuleRef mod, const CgGemm *g, CgIsa isa, int64_t *ntasks,
                           char *err, size_t errlen);

/* A backend's kernel, as the shared task function calls it: tile functions
 *   void tile(const void *x, void *y, const int8_t *w, const int32_t *bias,
 *             const float *mult, const CgGemmRow *rows)
 * computing one row tile of one channel block (x, y, w, bias and mult
 * already offset to them), and the constants they read. */
typedef struct {
  const char *name;             /* the task function's (cg_gemm_name) */
  int64_t nblocks, mtiles;      /* channel blocks, row tiles */
  int64_t block_channels;       /* channels per block (the last may have fewer) */
  int64_t block_weight_bytes;   /* packed weight bytes per block */
  int64_t w_interleave;         /* blocks whose weights interleave in one packed
                                 * block of a shared layout (CgGemm.pack_nr), 1
                                 * otherwise: block nb's weights are at
                                 * (nb / i) * i * block_weight_bytes +
                                 * (nb % i) * w_sub_bytes */
  int64_t w_sub_bytes;
  int64_t tile_rows;            /* rows per tile (the last may have fewer) */
  LLVMValueRef w, bias, mult;   /* the packed constants (NULL: runtime_w) */
  LLVMValueRef w_base;          /* or the weights file's: w = *w_base + w_offset */
  int64_t w_offset;
  /* tile[last row tile][last channel block]: [0][0] always; [1][*] only when
   * the last row tile is smaller, [*][1] only when the last block differs. */
  LLVMValueRef tile[2][2];
  /* runtime_m: rtile[r][last channel block?] computes r rows (1 <= r <=
   * tile_rows; [*][1] only when the last block differs); mtiles and tile[]
   * are unused. */
  LLVMValueRef rtile[CG_MAX_TILE_ROWS + 1][2];
} CgGemmTiles;

/* The checks every backend makes of `g` (shapes, strides, types): false with
 * a message in err. */
bool cg_gemm_check(const CgGemm *g, char *err, size_t errlen);
/* The kernel's name, as XNNPACK names its kernels, after the layer's:
 *   NAME.q8_gemm_<x>_<y>_<mr>x<nc>c<kc>_<isa>
 * x the input (qu8, qs8), y the output (u8, i8, f32), the full tile mr rows
 * by nc channels with K interleaved by kc, e.g.
 * mlp.y.q8_gemm_qu8_f32_6x64c4_avx512vnni. Its tiles are KERNEL.<rows>x<ch>
 * (the edge tiles' real rows and channels) and its constants KERNEL.w, .bias,
 * .mult. False with a message in err when `mod` already has a function of
 * that name. */
bool cg_gemm_name(LLVMModuleRef mod, const CgGemm *g, CgIsa isa, int mr, int64_t nc, int kc,
                  char *name, size_t size, char *err, size_t errlen);
/* The task function `void t->name(CgGemmArgs *args, int64_t task)` around
 * `t`'s tiles; *ntasks is the number of tasks (gemm_tasks.c says how the
 * work is split). */
LLVMValueRef cg_emit_gemm_tasks(LLVMModuleRef mod, const CgGemm *g, CgIsa isa,
                                const CgGemmTiles *t, int64_t *ntasks);

/* ---- x86/qgemm.c ---- */

/* CgArch.emit_qgemm for the x86-64 variants: vpdpbusd (AVX512-VNNI,
 * AVX-VNNI), vpmaddubsw or widened pmaddwd (AVX2), pmaddwd (SSE2), the
 * weights packed by pack.c. */
LLVMValueRef cg_emit_qgemm_x86(LLVMModuleRef mod, const CgGemm *g, CgIsa isa, int64_t *ntasks,
                               char *err, size_t errlen);

/* ---- aarch64/qgemm.c ---- */

/* CgArch.emit_qgemm for the AArch64 variants: the same task function,
 * CgGemmArgs and arithmetic, emitted with sdot/sudot (dot product),
 * smmla/usmmla (i8mm) or smull/sadalp (plain NEON), the weights packed in a
 * layout of its own. */
LLVMValueRef cg_emit_qgemm_aarch64(LLVMModuleRef mod, const CgGemm *g, CgIsa isa,
                                   int64_t *ntasks, char *err, size_t errlen);

/* ---- quantize.c ---- */

/* Emit `void NAME(const float *x, void *q)` quantizing x [m, k] (dense) into
 * q with rows x_stride bytes apart: quantize(x; scale, zero_point, [qmin,
 * qmax]) exactly as docs/quantization.md states (NaN -> zero point). */
LLVMValueRef cg_emit_quantize_rows(LLVMModuleRef mod, const char *name, CgIsa isa, int64_t m,
                                   int64_t k, int64_t x_stride, float scale, int32_t zero_point,
                                   IrDType dtype);

/* Emit `void NAME(const float *x, uint8_t *q, CgGemmRow *rows, int32_t c)`
 * quantizing each row of x [m, k] (dense) to u8 from its own range, exactly
 * as q8_ref_qlinear_dyn (docs/quantization.md, "Dynamic quantization"), into
 * q with rows q_stride bytes apart, and writing each row's terms: zp = zx,
 * scale = sx, add = c * (sum_k q - k zx) (wrapping). */
LLVMValueRef cg_emit_quantize_rows_dyn(LLVMModuleRef mod, const char *name, CgIsa isa, int64_t m,
                                       int64_t k, int64_t q_stride);
/* The same function with one scale and zero point for the whole of x (all
 * m rows), ONNX's DynamicQuantizeLinear as q8_ref_qlinear_dyn_tensor finds
 * them (docs/quantization.md): a min/max pass over x, then the rows. */
LLVMValueRef cg_emit_quantize_tensor_dyn(LLVMModuleRef mod, const char *name, CgIsa isa,
                                         int64_t m, int64_t k, int64_t q_stride);

/* ---- refcall.c: calls to the reference ops ---- */

/* The reference ops of ir/refops.def, by name: REF_q8_ref_softmax, ... */
typedef enum {
#define REFOP(ret, name, args) REF_##name,
#include "../ir/refops.def"
#undef REFOP
  REF_COUNT
} CgRefOp;

/* Their argument counts as constants, REF_NARGS_q8_ref_softmax = 4, for
 * cg_call_ref's compile-time check (counted from the table's rows). */
#define CG_NARGS(...) CG_NARGS_(__VA_ARGS__, 20, 19, 18, 17, 16, 15, 14, 13, 12, 11, 10, 9, 8, 7, \
                                6, 5, 4, 3, 2, 1, 0)
#define CG_NARGS_(a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11, a12, a13, a14, a15, a16, a17, \
                  a18, a19, a20, n, ...)                                                       \
  n
enum {
#define REFOP(ret, name, args) REF_NARGS_##name = CG_NARGS args,
#include "../ir/refops.def"
#undef REFOP
};

/* The LLVM function type of reference op `op`, from its row of refops.def. */
LLVMTypeRef cg_ref_type(LLVMContextRef ctx, CgRefOp op);
/* Call reference op `op` (declared in `mod` on first use) with args[0..n)
 * at b's position. q8_die when n or an argument's type is not the table's:
 * a bug in q8c, caught the first time the call is built. */
LLVMValueRef cg_call_ref_args(LLVMModuleRef mod, LLVMBuilderRef b, CgRefOp op, LLVMValueRef *args,
                              unsigned n);
/* cg_call_ref(mod, b, q8_ref_softmax, x, y, rows, cols): the same, with the
 * argument count checked when q8c is compiled. */
#define cg_call_ref(mod, b, op, ...)                                                   \
  do {                                                                                 \
    LLVMValueRef cg_args_[] = {__VA_ARGS__};                                           \
    _Static_assert(sizeof cg_args_ / sizeof cg_args_[0] == REF_NARGS_##op,             \
                   #op ": the argument count differs from ir/refops.def");             \
    cg_call_ref_args((mod), (b), REF_##op, cg_args_, sizeof cg_args_ / sizeof cg_args_[0]); \
  } while (0)

/* ---- module.c ---- */

/* Build the LLVM module for `m` (quantized and folded; `?` is bound to
 * o->batch here, or with o->batch 0 at each call when m allows it, m's
 * types left unbound). NULL with a message in m->diag when an op cannot be
 * compiled. */
LLVMModuleRef cg_build_module(IrModule *m, LLVMContextRef ctx, const CgOptions *o);

/* ---- rtshape.c ---- */

/* Whether m (its `?` not bound) can take its batch at each call when
 * compiled with o->batch 0: false with the reason in why when not (it is
 * then compiled with `?` = 1). */
bool cg_runtime_batch_ok(const IrModule *m, char *why, size_t size);

/* ---- emit.c ---- */

typedef enum { CG_EMIT_LLVM, CG_EMIT_ASM, CG_EMIT_OBJ, CG_EMIT_SO, CG_EMIT_HEADER } CgEmit;

/* Register LLVM's targets (x86-64, AArch64, the host's). LLVM's target
 * registry is a linked list that two threads registering the same target at
 * once can corrupt, so this runs once per process (pthread_once) and every
 * path into LLVM here (compiling to a file, the JIT) calls it first. */
void cg_init_llvm(void);

/* The LLVM module for `m`, optimised at -O<opt_level>, with its triple and
 * data layout set (for the JIT). NULL with a message in m->diag. */
LLVMModuleRef cg_build_optimized(IrModule *m, const CgOptions *o, LLVMContextRef ctx);
/* Compile `m` and write the result to `path`. Errors go to m->diag. */
bool cg_compile_to_file(IrModule *m, const CgOptions *o, CgEmit emit, const char *path);

/* ---- jit.c ---- */

typedef struct CgJit CgJit;
/* Compile `m` in memory; *desc receives the model descriptor, valid until
 * cg_jit_free. NULL with a message in m->diag. */
CgJit *cg_jit_compile(IrModule *m, const CgOptions *o, const q8_model_desc **desc);
void cg_jit_free(CgJit *jit);
typedef struct CgHeld CgHeld;
/* `size` bytes that live as long as the JIT holding h (CgOptions.held),
 * for data the compiled code reads by address; NULL when out of memory. */
void *cg_held_alloc(CgHeld *h, size_t size);

#endif
