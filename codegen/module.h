/* module.h: what the four files that build a model's LLVM module share, and
 * nothing else includes (codegen.h is the layer's API):
 *
 *   module.c      the driver: cg_build_module, and the constants all use
 *   layout.c      where every value lives at run time (Loc), the scratch size
 *   lower.c       the entry functions: each node lowered to a kernel call or
 *                 a reference op call
 *   attention.c   qmatmul, qmatmul_dyn, qlinear_dyn lowered to the int8
 *                 kernels, their operands packed at run time
 *   floatops.c    the float ops as vector code (with vmath.c)
 *   rtshape.c     a run-time batch: which models get one, the loop over
 *                 batch rows
 *   f32gemm.c     the float linear and matmul as a vector GEMM
 *   nf4.c         linear_4bit (NF4/FP4 weights, f32 activations) as a
 *                 generated kernel per variant
 *   descriptor.c  the exported q8_model descriptor (q8model.h) */
#ifndef Q8_CODEGEN_MODULE_H
#define Q8_CODEGEN_MODULE_H

#include "codegen.h"

typedef enum { LOC_NONE, LOC_INPUT, LOC_OUTPUT, LOC_SCRATCH, LOC_CONST } LocKind;

typedef struct {
  LocKind kind;
  int index;          /* LOC_INPUT / LOC_OUTPUT */
  int64_t offset;     /* LOC_SCRATCH */
  LLVMValueRef global;/* LOC_CONST */
  int64_t rows, cols; /* the value as [rows, cols]: cols is the last dim */
  int64_t stride;     /* elements between rows (padded for quantized values) */
  int64_t q_offset;   /* a LOC_OUTPUT value with a quantized form: its f32 slot in
                       * scratch at the quantized entry, or -1 */
  bool batched;       /* run-time batch: the value has it (rows above are one
                       * batch row's); its scratch slots are in the batched
                       * region, offset and q_offset per batch row (rtshape.c) */
} Loc;

/* Per node, for the variant being built: the functions attention.c emits
 * beside a kernel (shared by the two entries), and its packed layout. */
typedef struct {
  LLVMValueRef pack;             /* b packed as the kernel's weights */
  LLVMValueRef rows;             /* qmatmul: the rows' terms */
  LLVMValueRef quant_x, quant_b; /* f32 operands quantized (per tensor or per row) */
  LLVMValueRef mult;             /* qmatmul: the constant multipliers;
                                  * qmatmul_dyn: the routine writing them */
  CgGemmRuntime rt;              /* the kernel's packed layout */
} CgPrep;

/* The module being built. */
typedef struct {
  IrModule *m;
  const CgOptions *o;
  LLVMContextRef ctx;
  LLVMModuleRef mod;
  LLVMBuilderRef b;
  LLVMTypeRef i8, i32, i64, f32, f64, ptr, vd;
  Loc *loc;           /* by value id */
  int64_t scratch;    /* bytes (with a run-time batch: of the fixed region) */
  bool rtb;           /* a run-time batch (rtshape.c) */
  bool *batched;      /* rtb: by value id, whether the value has the batch dim */
  int64_t scratch_pb; /* rtb: bytes of the batched region per batch row */
  int64_t *xq_offset; /* per node: scratch for a qgemm's quantized f32 input, or -1 */
  bool *xq_batched;   /* per node: that slot is in the batched region (a qgemm
                       * with a run-time M, rtshape.c) */
  char prefix[128];   /* the model's name as a C identifier */
  /* per node, for the variant being built: its kernel (shared by the two
   * entries) and task count */
  LLVMValueRef *kernel;
  int64_t *kernel_tasks;
  LLVMValueRef *quantizer; /* its f32 input's quantization loop, or NULL */
  CgPrep *prep;            /* attention.c's */
  CgWeights *wfile;        /* --weights-out: the weights file, or NULL */
  /* inside the entry being built */
  bool quantized;     /* the quantized entry */
  LLVMValueRef fn, thr, inputs, outputs, scratch_ptr;
  LLVMValueRef nb;        /* the entry's batch argument */
  LLVMValueRef batch_row; /* inside a loop over batch rows: its index, else NULL */
} Cg;

static inline int64_t cg_round_up(int64_t x, int64_t to) { return (x + to - 1) / to * to; }

/* ---- module.c ---- */

static inline LLVMValueRef cg_i64c(Cg *cg, int64_t v) {
  return LLVMConstInt(cg->i64, (unsigned long long)v, 1);
}
static inline LLVMValueRef cg_i32c(Cg *cg, int64_t v) {
  return LLVMConstInt(cg->i32, (unsigned long long)v, 1);
}
/* A private constant global `name` holding `size` bytes, 64-byte aligned. */
LLVMValueRef cg_const_bytes(Cg *cg, const char *name, const void *data, size_t size);
/* A private constant NUL-terminated copy of s. */
LLVMValueRef cg_const_string(Cg *cg, const char *s);
/* Memory at p, by its address (in-process code: CgOptions.held). */
LLVMValueRef cg_const_addr(Cg *cg, const void *p);

/* ---- layout.c ---- */

/* Give every value of cg->m its Loc and cg->scratch its size. False with a
 * message in m->diag when the scratch memory passes the memory cap. */
bool cg_plan_memory(Cg *cg);
/* Whether node n (a qgemm, or a qlinear_dyn quantizing per row) runs its
 * kernel once over every batch row (a run-time M) rather than once per
 * batch row. */
bool cg_gemm_runtime_m(const Cg *cg, const IrNode *n);

/* ---- lower.c ---- */

/* Build the entry `NAME_run_ISA` (or `NAME_run_quantized_ISA`) of `isa`
 * into cg->mod: *entry. False with a message in m->diag. */
bool cg_emit_entry(Cg *cg, CgIsa isa, bool quantized, LLVMValueRef *entry);

/* What attention.c needs of the entry being built: the run-time address of
 * a value, an address in scratch, and `kernel(args, t)` for t < ntasks
 * (through the caller's threads when parallel). */
LLVMValueRef cg_value_addr(Cg *cg, const IrValue *v);
LLVMValueRef cg_scratch_addr(Cg *cg, int64_t offset);
void cg_run_tasks(Cg *cg, LLVMValueRef kernel, LLVMValueRef args, int64_t ntasks, bool parallel);
/* Node idx's scratch slot (cg->xq_offset[idx]) at `offset`: with a run-time
 * M (cg->xq_batched[idx]) the slot holds every batch row, so an offset of
 * one batch row's layout is scaled by the batch. */
LLVMValueRef cg_node_slot(Cg *cg, int idx, int64_t offset);
/* A kernel with a run-time M (CgGemm.runtime_m): args->m = m, then its
 * tasks for m rows (KERNEL.ntasks), through the caller's threads. */
void cg_run_gemm_m(Cg *cg, LLVMValueRef kernel, LLVMValueRef args, LLVMTypeRef args_ty,
                   unsigned m_field, LLVMValueRef m);

/* ---- attention.c ---- */

/* The scratch bytes qmatmul, qmatmul_dyn or qlinear_dyn node n needs to run
 * the int8 kernels, or -1 when it runs as a reference call (another op, or
 * a dimension 0). */
int64_t cg_attention_scratch(const IrNode *n);
/* Lower node idx (cg_attention_scratch(n) >= 0; its slot at
 * cg->xq_offset[idx]) into the entry being built. False with a message in
 * m->diag. */
bool cg_emit_attention(Cg *cg, int idx, CgIsa isa);

/* ---- nf4.c ---- */

/* Lower linear_4bit node idx into the entry being built: a generated
 * kernel (built once per variant, cg->kernel[idx]) split into tasks. */
bool cg_emit_linear_4bit(Cg *cg, int idx, CgIsa isa);
/* ---- qgroup.c ---- */
/* Lower qlinear_grp node idx (operand addresses in[], result y): the
 * grouped-weight GEMV/GEMM kernel of the variant, or the reference call.
 * False with a message in m->diag. */
bool cg_emit_qgroup(Cg *cg, int idx, CgIsa isa, LLVMValueRef *in, LLVMValueRef y);
/* The scratch bytes qlinear_grp node n needs for its kernel (the quantized
 * rows of x and their terms), or -1 (another op, or the reference call). */
int64_t cg_qgroup_scratch(const IrNode *n);

/* ---- floatops.c ---- */

/* Emit float op node idx (operand addresses in[], result y) as a call of
 * its vector function for isa (built once per variant, cg->kernel[idx]) at
 * the builder's position: false (nothing emitted) when the op, or its
 * broadcast pattern, has none, and the caller calls the reference op. */
bool cg_emit_floatop(Cg *cg, int idx, CgIsa isa, LLVMValueRef *in, LLVMValueRef y);

/* ---- rtshape.c ---- */

/* Bind m's `?` to 1 for building the code, first noting in batched[] (by
 * value id, ir_number_values) which values had it; cg_unbind_batch restores
 * m as it was. */
typedef struct CgUnbound CgUnbound;
CgUnbound *cg_bind_batch_one(IrModule *m, bool *batched);
void cg_unbind_batch(IrModule *m, CgUnbound *u);
/* The bytes of one batch row of value v as it lives in memory. */
int64_t cg_batch_row_bytes(const Cg *cg, const IrValue *v);
/* p, the address of value v, moved to the current batch row when inside a
 * loop over them and v has the batch. */
LLVMValueRef cg_batch_row_at(Cg *cg, const IrValue *v, LLVMValueRef p);
/* A loop over the batch rows [0, cg->nb) at the builder's position: between
 * open and close, cg->batch_row is the row. */
typedef struct {
  LLVMBasicBlockRef head, from;
  LLVMValueRef row;
} CgBatchLoop;
void cg_batch_loop_open(Cg *cg, CgBatchLoop *l);
void cg_batch_loop_close(Cg *cg, CgBatchLoop *l);

/* ---- f32gemm.c ---- */

/* Emit a float `linear` (constant W) or `matmul` node idx (operand
 * addresses in[], result y) as the vector GEMM of variant isa (its task
 * function built once per variant, cg->kernel[idx]), run through the
 * caller's threads: false (nothing emitted) when it has none for the node,
 * and the caller calls the reference op. */
bool cg_emit_f32gemm(Cg *cg, int idx, CgIsa isa, LLVMValueRef *in, LLVMValueRef y);

/* ---- descriptor.c ---- */

/* The exported `q8_model`: the model's inputs, outputs, scratch size and
 * one variant per o->isas[i], whose entries are entries[i][0] (f32) and
 * entries[i][1] (quantized). */
void cg_emit_descriptor(Cg *cg, LLVMValueRef (*entries)[2]);

#endif
