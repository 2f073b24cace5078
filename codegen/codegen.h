/* codegen.h: the LLVM backend. It turns a quantized module (after
 * fold-constants) into machine code specialized to the model's shapes: one
 * LLVM module holding the packed weights as constant data, one entry point
 * per instruction-set variant, and the q8_model descriptor (q8model.h).
 *
 *   module.c    the driver: buffers, the entry function of each variant,
 *               calls to the reference ops for layers without a kernel
 *   isa.c       the variants (isa.def): names, LLVM features, CPU bits
 *   quantize.c  the f32 -> u8/i8 input quantization loop (any ISA)
 *   x86/qgemm.c the int8 GEMM kernels (AVX512-VNNI, AVX-VNNI, AVX2, generic)
 *   aarch64/qgemm.c  the AArch64 ones (i8mm, dot product, plain NEON), with
 *               their own weight packing
 *   pack.c      weight packing and the AVX2 saturation check
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

/* ---- isa.c ---- */

typedef enum {
#define ISA(ID, name, arch, cpu, features, bits) CG_ISA_##ID,
#include "isa.def"
#undef ISA
  CG_ISA_COUNT
} CgIsa;

typedef struct {
  const char *name;       /* --target spelling */
  const char *arch;       /* "x86_64" or "aarch64" */
  const char *cpu;        /* LLVM CPU name for the functions of this variant */
  const char *features;   /* LLVM target features for them */
  uint64_t bits;          /* Q8_FEATURE_* the code needs at run time */
} CgIsaInfo;

extern const CgIsaInfo cg_isa_info[CG_ISA_COUNT];
/* -1 when unknown. */
int cg_isa_from_name(const char *s, size_t len);
/* The best variant the machine running q8c supports ("native"), among those
 * of its own architecture. */
CgIsa cg_isa_native(void);
/* The architecture q8c itself runs on, spelled as CgIsaInfo.arch. */
const char *cg_host_arch(void);
bool cg_isa_is_aarch64(CgIsa isa);
/* Give function `fn` the CPU and features of `isa` (per-function target
 * attributes: one LLVM module holds every variant). */
void cg_set_isa_attrs(LLVMValueRef fn, CgIsa isa);

/* ---- pack.c ---- */

/* Channels per vector and K values per channel group of a packed weight
 * block for `isa`: weights are laid out as [ceil(N / nr)][ceil(K / 4)][nr][4]
 * int8, N and K padded with zeros. */
int cg_pack_nr(CgIsa isa);
/* Pack wq [n, k] for `isa` into dst (cg_packed_size bytes). */
size_t cg_packed_size(CgIsa isa, int64_t n, int64_t k);
void cg_pack_weights(CgIsa isa, const int8_t *wq, int64_t n, int64_t k, int8_t *dst);
/* Can vpmaddubsw's int16 sum of two products x0*w0 + x1*w1 saturate, for x
 * in [x_min, x_max] (as unsigned bytes the kernel multiplies) and the
 * adjacent pairs (k = 2j, 2j + 1) of each row of wq? */
bool cg_pairs_can_saturate(const int8_t *wq, int64_t n, int64_t k, int32_t x_min, int32_t x_max);

/* ---- x86/qgemm.c ---- */

/* One qgemm layer, shapes fixed: y[m, n] = requant(bias[n] + sum_k x[m, k] * wq[n, k]). */
typedef struct {
  const char *name;         /* prefix for the function and its constant globals */
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
} CgGemm;

/* The arguments of a gemm task function: void NAME(void *args, int64_t task)
 * with args pointing to this. */
typedef struct {
  const void *x;
  void *y;
} CgGemmArgs;

/* Emit the kernel for `g` and `isa` into `mod`: a function
 *   void NAME(void *args, int64_t task)   (args: CgGemmArgs *)
 * computing every output element of task `task`, 0 <= task < *ntasks (tasks
 * are independent: the caller may run them on any threads), with the packed
 * weights, bias and multipliers as private constant globals. Returns the
 * function, or NULL with a message in err. The arithmetic is exactly qgemm's
 * (docs/quantization.md). */
LLVMValueRef cg_emit_qgemm(LLVMModuleRef mod, const CgGemm *g, CgIsa isa, int64_t *ntasks,
                           char *err, size_t errlen);

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
/* A load of t from p with alignment `align`. */
LLVMValueRef cg_load(LLVMBuilderRef b, LLVMTypeRef t, LLVMValueRef p, unsigned align);

/* ---- gemm_tasks.c: what every GEMM backend shares ---- */

/* A backend's kernel, as the shared task function calls it: tile functions
 *   void tile(const void *x, void *y, const int8_t *w, const int32_t *bias,
 *             const float *mult)
 * computing one row tile of one channel block (x, y, w, bias and mult
 * already offset to them), and the constants they read. */
typedef struct {
  int64_t nblocks, mtiles;      /* channel blocks, row tiles */
  int64_t block_channels;       /* channels per block (the last may have fewer) */
  int64_t block_weight_bytes;   /* packed weight bytes per block */
  int64_t tile_rows;            /* rows per tile (the last may have fewer) */
  LLVMValueRef w, bias, mult;   /* the packed constants */
  /* tile[last row tile][last channel block]: [0][0] always; [1][*] only when
   * the last row tile is smaller, [*][1] only when the last block differs. */
  LLVMValueRef tile[2][2];
} CgGemmTiles;

/* The checks every backend makes of `g` (shapes, strides, types, a free
 * name): false with a message in err. */
bool cg_gemm_check(LLVMModuleRef mod, const CgGemm *g, char *err, size_t errlen);
/* The task function `void g->name(CgGemmArgs *args, int64_t task)` around
 * `t`'s tiles; *ntasks is the number of tasks (gemm_tasks.c says how the
 * work is split). */
LLVMValueRef cg_emit_gemm_tasks(LLVMModuleRef mod, const CgGemm *g, CgIsa isa,
                                const CgGemmTiles *t, int64_t *ntasks);

/* ---- aarch64/qgemm.c ---- */

/* cg_emit_qgemm for the AArch64 variants: the same task function, CgGemmArgs
 * and arithmetic, emitted with sdot/sudot (dot product), smmla/usmmla (i8mm)
 * or smull/sadalp (plain NEON), the weights packed in a layout of its own. */
LLVMValueRef cg_emit_qgemm_aarch64(LLVMModuleRef mod, const CgGemm *g, CgIsa isa,
                                   int64_t *ntasks, char *err, size_t errlen);

/* ---- quantize.c ---- */

/* Emit `void NAME(const float *x, void *q)` quantizing x [m, k] (dense) into
 * q with rows x_stride bytes apart: quantize(x; scale, zero_point, [qmin,
 * qmax]) exactly as docs/quantization.md states (NaN -> zero point). */
LLVMValueRef cg_emit_quantize_rows(LLVMModuleRef mod, const char *name, CgIsa isa, int64_t m,
                                   int64_t k, int64_t x_stride, float scale, int32_t zero_point,
                                   IrDType dtype);

/* ---- module.c ---- */

typedef struct {
  CgIsa isas[CG_ISA_COUNT]; /* variants to compile, best first */
  int nisas;
  int opt_level;            /* 0..3 */
  int64_t batch;            /* the `?` dimension */
} CgOptions;

/* Parse --target: "native" or a comma-separated list of variant names. */
bool cg_parse_targets(const char *list, CgOptions *o, char *err, size_t errlen);
/* Build the LLVM module for `m` (quantized and folded; `?` is bound to
 * o->batch here). NULL with a message in m->diag when an op cannot be
 * compiled. */
LLVMModuleRef cg_build_module(IrModule *m, LLVMContextRef ctx, const CgOptions *o);

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

#endif
