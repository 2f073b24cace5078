/* ir.h: the q8c graph IR, the layer every other layer builds on: an IrModule
 * of inputs, nodes in definition order, outputs and constants, all in the
 * module's arena and freed by one ir_module_free(), with no global mutable
 * state and user errors recorded in an IrDiag, never printed. The API is
 * grouped by the file that implements it; the module's rules are in
 * docs/ir.md, "In memory" and "The module in memory, exactly". */
#ifndef Q8_IR_H
#define Q8_IR_H

#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../support/support.h"

enum { IR_MAX_RANK = 8 };

/* The `?` dimension: the batch size, bound at compile or run time. */
#define IR_DIM_BATCH ((int64_t)-1)
/* `-1` in a reshape's shape: the one dimension inferred from the others
 * (only in DIMS attributes, never in a type). */
#define IR_DIM_INFER ((int64_t)-2)
/* A named dim after the first of a model's named prefix (`f32[B, T, 64]`:
 * T). The named dims lead every shape that has one, in one order, and no
 * node mixes them (ir/named.c), so each (b, t) row is computed alone: the
 * first named dim is `?`, bound to the product B x T, and each later one is
 * IR_DIM_FOLDED, bound to 1 wherever `?` is bound (same bytes, row-major). */
#define IR_DIM_FOLDED ((int64_t)-1024)
/* Whether d is `?` or a folded named dim: a dim bound with the batch. */
static inline bool ir_dim_symbolic(int64_t d) { return d == IR_DIM_BATCH || d == IR_DIM_FOLDED; }

/* ---- element types ---- */

#define IR_DTYPES(X) \
  X(F32, "f32", 4)   \
  X(I8, "i8", 1)     \
  X(U8, "u8", 1)     \
  X(I32, "i32", 4)    \
  X(I64, "i64", 8)

typedef enum {
  IR_DTYPE_NONE, /* not yet inferred */
#define X(id, spelling, size) IR_##id,
  IR_DTYPES(X)
#undef X
  IR_DTYPE_COUNT
} IrDType;

typedef struct {
  IrDType dtype;
  int rank;
  int64_t dims[IR_MAX_RANK]; /* IR_DIM_BATCH for `?` */
} IrType;

/* A source position; line 0 means "no position". */
typedef struct {
  int line, col;
} IrLoc;

/* ---- operations and attributes ---- */

typedef enum {
#define OP(ID, name, minops, maxops, attrs) IR_OP_##ID,
#include "ops.def"
#undef OP
  IR_OP_COUNT
} IrOp;

typedef enum {
  IR_AKIND_FLOAT,
  IR_AKIND_INT,
  IR_AKIND_DTYPE,
  IR_AKIND_INTS,
  IR_AKIND_DIMS,
  IR_AKIND_RANGE,
  IR_AKIND_NAME   /* one of the key's names (ATTR_NAMES in attrs.def) */
} IrAttrKind;

typedef enum {
#define ATTR(ID, key, kind) IR_ATTR_##ID,
#include "attrs.def"
#undef ATTR
  IR_ATTR_COUNT
} IrAttrKey;

/* The values of gelu's `approximate`: indices of its ATTR_NAMES. */
typedef enum { IR_GELU_NONE, IR_GELU_TANH } IrGeluApprox;
/* qlinear_dyn's `granularity`: a scale per row (q8c's arithmetic), or one
 * per tensor (ONNX's DynamicQuantizeLinear; docs/quantization.md). */
typedef enum { IR_DYN_ROW, IR_DYN_TENSOR } IrDynGranularity;

#define IR_ATTR_BIT(ID) (1u << IR_ATTR_##ID)
_Static_assert(IR_ATTR_COUNT <= 32, "IrOpInfo.attrs is a 32-bit mask of attribute keys");
/* Attributes every op may carry. */
#define IR_ATTRS_ANY_OP (IR_ATTR_BIT(RANGE) | IR_ATTR_BIT(KEEP_FLOAT))

typedef struct {
  const char *name;  /* spelling in the text IR */
  int min_operands;
  int max_operands;
  unsigned attrs;    /* IR_ATTR_BIT mask of accepted keys besides IR_ATTRS_ANY_OP */
} IrOpInfo;

typedef struct {
  const char *key;
  IrAttrKind kind;
} IrAttrInfo;

/* One attribute: FLOAT, INT, DTYPE and NAME have n = 1 (a DTYPE holds an
 * IrDType, a NAME the index of the name in its key's list),
 * RANGE has n = 2, INTS and DIMS have n >= 0 (a DIMS value holds IR_DIM_BATCH
 * for `?`). */
typedef struct {
  IrAttrKey key;
  int n;
  double *vals;
  IrLoc loc;
} IrAttr;

/* ---- values, nodes, module ---- */

typedef enum { IR_VAL_INPUT, IR_VAL_CONST, IR_VAL_NODE } IrValueKind;

typedef struct IrNode IrNode;

/* How a constant held in its stored form (IrConstView) has its elements:
 * little-endian f32, IEEE half, or bfloat16 (the top half of an f32). */
typedef enum { IR_STORED_F32, IR_STORED_F16, IR_STORED_BF16 } IrStored;

/* A constant not materialized: its f32 elements are those of `src` (a
 * mapped weights file's bytes, which live as long as the module) in the
 * stored form, converted on demand by ir_const_data into `buf` and let go
 * by ir_const_release (constdata.c; docs/ir.md "Constants in their stored
 * form"). */
typedef struct IrConstView {
  const void *src;
  IrStored stored;
  size_t numel;
  float *buf;  /* the f32 form while it exists (malloc'd), else NULL */
  /* Called with src and its size once the f32 form is made (NULL: none):
   * the frontend lets the mapped file's pages go. */
  void (*drop_src)(const void *src, size_t bytes);
} IrConstView;

/* real = (q - zero_point) * scale, q saturated to [qmin, qmax] (quant.c). */
typedef struct {
  float scale;
  int32_t zero_point;
  IrDType dtype;  /* IR_U8 or IR_I8 */
} IrQParams;

typedef struct IrValue {
  IrValueKind kind;
  const char *name;  /* without the % or @ sigil */
  IrType type;       /* dtype IR_DTYPE_NONE until inferred */
  IrNode *def;       /* IR_VAL_NODE: the node that produces it */
  const void *data;  /* IR_VAL_CONST: dense row-major elements of `type`, or
                      * NULL for a view: read constants through
                      * ir_const_data, which handles both */
  IrConstView *view; /* IR_VAL_CONST of type f32 held in its stored form */
  bool literal;      /* IR_VAL_CONST: an f32[] written as a number operand
                      * (`mul %s, 0.125`), printed back as that number */
  IrLoc loc;         /* where it is defined (or first used, for constants) */
  int id;            /* index in ir_module_values order; set by ir_number_values */
  bool has_range;    /* IR_VAL_INPUT: `{range = [lo, hi]}` on its declaration */
  double range[2];   /* (a node's result keeps its range in the node's attrs) */
  /* A model input or output of type f32: its quantized form, the tensor the
   * model's quantized entry takes or gives instead (`{scale = s, zero_point
   * = z, dtype = u8}` on its declaration; docs/quantization.md). */
  bool has_qform;
  IrQParams qform;
  IrLoc qform_loc;   /* of the declaration's `scale`, for messages */
  /* How many operands of listed nodes, plus outputs, refer to it: kept up to
   * date by the builder functions below (QBE's `filluse`); code that writes
   * `opnds` or `outputs` directly calls ir_fill_uses afterwards. */
  int nuses;
  unsigned mark;     /* scratch for module.c's sweeps */
} IrValue;

struct IrNode {
  IrOp op;
  IrValue *result;
  int nopnds;
  IrValue **opnds;
  IrLoc *opnd_locs;  /* where each operand is written; NULL for built nodes */
  int nattrs;
  IrAttr *attrs;
  int cap_attrs;     /* room in attrs (ir_node_set_attr) */
  IrLoc loc;         /* of the op keyword */
};

typedef struct IrArena IrArena;

/* The first user error met, already formatted. */
typedef struct {
  const char *file;  /* for `file:line:col` */
  const char *src;   /* source text, for the quoted line; may be NULL */
  bool failed;
  char msg[4096];
} IrDiag;

typedef struct {
  const char *path;  /* as written in the model */
  IrLoc loc;
} IrWeightsRef;

typedef struct {
  IrArena *arena;
  const char *name;      /* model NAME */
  const char *dir;       /* directory of the model file, for relative paths */
  int64_t bound_batch;   /* the size ir_bind_batch bound `?` to, or 0 */
  /* Named dims (`f32[B, T, 64]`): the names of the leading symbolic dims
   * of every shape that has one, in order (IR_DIM_BATCH then
   * IR_DIM_FOLDED in the types); 0 when the model writes only `?`. */
  int nnamed;
  const char *named[IR_MAX_RANK];
  IrDiag diag;

  int nweights;
  IrWeightsRef *weights;

  int ninputs;
  IrValue **inputs;
  int noutputs;
  IrValue **outputs;
  IrLoc *output_locs;
  int nnodes;
  IrNode **nodes;
  int nconsts;
  IrValue **consts;
  int cap_inputs, cap_outputs, cap_nodes, cap_consts, cap_weights;
  /* The name table: every live value (input or node result) and constant
   * by name, interned (a value's `name` is the table's key). Kept by the
   * builder functions: read it through ir_find_value / ir_find_const. */
  SupMap value_names, const_names;
  /* Bytes of views' f32 forms (IrConstView.buf) now and at most so far:
   * what the stored form saves is visible, and tests assert it. */
  size_t view_bytes, view_bytes_peak;
} IrModule;

/* A tensor with concrete dims (no `?`), for interpreters and file I/O. */
typedef struct {
  IrType type;
  void *data;
} IrTensor;

/* ---- arena.c ---- */

IrArena *ir_arena_new(void);
void ir_arena_free(IrArena *a);
/* Call fn(arg) when `a` is freed (last registered, first called), also when
 * a recovery point frees it after a jump: for malloc'd memory that belongs
 * with the arena's (a module's name tables, a parse's hash tables). */
void ir_arena_defer(IrArena *a, void (*fn)(void *), void *arg);
/* Zeroed memory aligned to 64 bytes, never NULL: on exhaustion it jumps to
 * the thread's recovery point (IrRecover, below). */
void *ir_alloc(IrArena *a, size_t size);
/* Zeroed memory, or NULL if `size` cannot be had (for tensor data). */
void *ir_alloc_data(IrArena *a, size_t size);
char *ir_strdup(IrArena *a, const char *s);
char *ir_strndup(IrArena *a, const char *s, size_t n);
/* Whether an allocation from `a` has failed (ir_alloc or ir_alloc_data). */
bool ir_arena_exhausted(const IrArena *a);

/* Out of memory as an error, never an abort (Lua's luaD_throw): when
 * ir_alloc or ir_arena_new cannot get memory, the arena records it and
 * longjmps to the innermost recovery point of the thread. The library's
 * entry points (api/api.c) and the driver set one around their work:
 *
 *   IrRecover r;
 *   ir_recover_push(&r);
 *   if (setjmp(r.jump) == 0)
 *     status = work(...);          // locals of this frame are not modified
 *   else
 *     status = out of memory;      // ir_recover_free_arenas(&r) if wanted
 *   ir_recover_pop(&r);
 *
 * Memory stays owned by its arena, so freeing the module frees it all; an
 * arena created under the point (a module being parsed) is listed in it
 * until the point is popped or the arena freed. Without a recovery point,
 * exhaustion is an internal error (q8_die). Q8_TEST_ARENA_LIMIT=N in the
 * environment (read by ir_arena_new) makes an arena refuse to hand out more
 * than N bytes, for tests of these paths. */
typedef struct IrRecover {
  jmp_buf jump;
  struct IrRecover *prev;
  IrArena *arenas; /* created under this point and not freed yet */
} IrRecover;
void ir_recover_push(IrRecover *r);
/* Pop `r`, the innermost point; the arenas it lists are left alone. */
void ir_recover_pop(IrRecover *r);
/* After the jump: free the arenas created under `r` (their modules are lost). */
void ir_recover_free_arenas(IrRecover *r);

/* The out-of-memory jump of ir_alloc, for memory that is not the arena's
 * (a constant's f32 form, constdata.c). */
_Noreturn void ir_throw_nomem(IrArena *a, size_t size);

/* ---- diag.c ---- */

void ir_diag_init(IrDiag *d, const char *file, const char *src);
/* Record `file:line:col: error: ...` plus the source line and a caret. Only the
 * first error is kept. Returns false, so callers can `return ir_error(...)`. */
bool ir_error(IrDiag *d, IrLoc loc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
bool ir_verror(IrDiag *d, IrLoc loc, const char *fmt, va_list ap);

/* Internal errors: a bug in q8c, not in the input. */
_Noreturn void q8_die_at(const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
#define q8_die(...) q8_die_at(__FILE__, __LINE__, __VA_ARGS__)
#define q8_unreachable() q8_die_at(__FILE__, __LINE__, "unreachable")

/* ---- types.c ---- */

extern const IrOpInfo ir_op_info[IR_OP_COUNT];
extern const IrAttrInfo ir_attr_info[IR_ATTR_COUNT];

const char *ir_dtype_name(IrDType t);
/* u8 or i8: a quantized element type. */
bool ir_dtype_is_quantized(IrDType t);
size_t ir_dtype_size(IrDType t);
/* Parse "f32", "u8", ...; returns IR_DTYPE_NONE when unknown. */
IrDType ir_dtype_from_name(const char *s, size_t len);
/* Lookups by spelling; return -1 when unknown. */
int ir_op_from_name(const char *s, size_t len);
int ir_attr_from_name(const char *s, size_t len);

bool ir_type_equal(const IrType *a, const IrType *b);
/* Numpy broadcasting: the shape `out` (rank *rout, the larger rank) of an
 * elementwise op on shapes a and b, aligned at their last axes. Two dims
 * fit when equal or when one is 1; `?` fits only `?` and 1. Returns false
 * when they do not fit, with *axis the first axis of `out` (from the
 * right) where they do not. */
bool ir_broadcast_dims(const int64_t *a, int ra, const int64_t *b, int rb, int64_t *out,
                       int *rout, int *axis);
/* The element strides along each of the `out_rank` axes of a broadcast
 * result for an operand of shape dims[rank] (aligned at the last axis,
 * no `?`) whose innermost unit is `unit` elements (1 for elementwise ops,
 * M*K for a matmul's matrices): 0 along an axis it does not have or has
 * as 1. */
void ir_broadcast_strides(const int64_t *dims, int rank, int64_t unit, int out_rank,
                          int64_t *strides);
/* Element count with `?` bound to `batch`; false on overflow of int64. */
bool ir_type_numel(const IrType *t, int64_t batch, int64_t *out);
/* The type with every `?` replaced by `batch`. */
IrType ir_type_bind(const IrType *t, int64_t batch);

/* The memory cap: no single buffer of model data that q8c allocates (a
 * tensor: weight, input, intermediate value or output; a weights file read
 * into memory; a batch of calibration samples; a compiled model's scratch)
 * may exceed it. It is Q8_MAX_TENSOR_BYTES from the environment, a byte count
 * with an optional K, M, G or T suffix (powers of 1024) from 1 to 2^60,
 * default 16G (IR_DEFAULT_MAX_TENSOR_BYTES). Returns false with a message
 * when the variable is malformed. docs/reliability.md. */
#define IR_DEFAULT_MAX_TENSOR_BYTES ((uint64_t)16 << 30)
bool ir_max_tensor_bytes(uint64_t *limit, char *err, size_t errlen);
/* Is a buffer of `bytes` within the cap? If not, err receives the end of a
 * sentence about it: "needs N bytes, over the limit of L
 * (Q8_MAX_TENSOR_BYTES)", or what is wrong with the variable. */
bool ir_bytes_allowed(uint64_t bytes, char *err, size_t errlen);
/* The bytes of a tensor of type `t` with `?` bound to `batch`, checked
 * before anything is allocated: false with the end of a sentence in err
 * ("has more elements than 64-bit arithmetic holds", or as
 * ir_bytes_allowed says) when the element count or the byte size overflows
 * or exceeds the cap. */
bool ir_type_bytes(const IrType *t, int64_t batch, size_t *bytes, char *err, size_t errlen);
/* "f32[?, 64]" into buf; returns buf. */
char *ir_type_str(const IrType *t, char *buf, size_t size);
/* The same with the module's named dims by name (`f32[B, T, 64]`), and -1
 * for IR_DIM_INFER (a reshape's shape). */
char *ir_dims_str_named(const IrModule *m, const int64_t *dims, int rank, char *buf,
                        size_t size);
char *ir_type_str_named(const IrModule *m, const IrType *t, char *buf, size_t size);
/* "[?, 64]" into buf; returns buf. */
char *ir_dims_str(const int64_t *dims, int rank, char *buf, size_t size);

/* ---- module.c ---- */

IrModule *ir_module_new(const char *name);
void ir_module_free(IrModule *m);
IrValue *ir_add_input(IrModule *m, const char *name, IrType type, IrLoc loc);
/* Constant whose `data` must live as long as the module (arena memory). */
IrValue *ir_add_const(IrModule *m, const char *name, IrType type, const void *data, IrLoc loc);
IrNode *ir_add_node(IrModule *m, IrOp op, const char *result_name, IrValue **opnds, int nopnds,
                    IrLoc loc);
/* A node that is not yet in the module's list (passes build new lists with
 * ir_set_nodes). It defines `result` when given (taking over an existing
 * value, so that its uses follow), else a new value named `result_name`,
 * whose name is taken from then on (ir_unique_name will not give it out). */
IrNode *ir_new_node(IrModule *m, IrOp op, IrValue *result, const char *result_name,
                    IrValue **opnds, int nopnds, IrLoc loc);
/* Make `nodes` the module's list. Results of nodes that leave the list (and
 * that no node of the new list defines) give up their names; use counts are
 * recomputed. Linear in the old and new lists. */
void ir_set_nodes(IrModule *m, IrNode **nodes, int n);
/* Put node `n` at position `i` of the list in place of the node there,
 * keeping use counts. O(operands). */
void ir_set_node(IrModule *m, int i, IrNode *n);
/* Set operand `i` of listed node `n` to `v`, keeping use counts. */
void ir_set_operand(IrModule *m, IrNode *n, int i, IrValue *v);
void ir_node_remove_attr(IrNode *n, IrAttrKey key);
/* `base`, or `base.1`, `base.2`, ... : a value name no live value carries.
 * O(1) expected (the name table). */
const char *ir_unique_name(IrModule *m, const char *base);
/* Same for constant names. */
const char *ir_unique_const_name(IrModule *m, const char *base);
/* Rename value `v` to ir_unique_name(m, base), as if it had no name first. */
void ir_rename_value(IrModule *m, IrValue *v, const char *base);
/* The calibrated range of a value (an input's declaration or the `range`
 * attribute of the node that produces it); false when it has none. */
bool ir_value_range(const IrValue *v, double *lo, double *hi);
void ir_set_value_range(IrModule *m, IrValue *v, double lo, double hi);
/* Drop nodes whose results nothing uses (and that are not outputs), then
 * constants nothing uses. Returns the number of nodes removed. */
int ir_remove_dead(IrModule *m);
/* Recompute every value's use count (IrValue.nuses) in one sweep. */
void ir_fill_uses(IrModule *m);
/* How many operands of nodes, plus outputs, refer to `v`: v->nuses, O(1). */
int ir_count_uses(const IrModule *m, const IrValue *v);
/* The index of `v` among the module's outputs, or -1. O(outputs). */
int ir_output_index(const IrModule *m, const IrValue *v);
/* Replace every use of `from` (operands and outputs) by `to`. O(graph):
 * a pass that replaces many values collects them and rewrites in one sweep. */
void ir_replace_uses(IrModule *m, IrValue *from, IrValue *to);
void ir_node_set_attr(IrModule *m, IrNode *n, IrAttrKey key, const double *vals, int nvals,
                      IrLoc loc);
void ir_add_output(IrModule *m, IrValue *v, IrLoc loc);
void ir_add_weights(IrModule *m, const char *path, IrLoc loc);
/* Lookups by name (without sigil) in the name table; NULL when absent. */
IrValue *ir_find_value(const IrModule *m, const char *name);
IrValue *ir_find_const(const IrModule *m, const char *name);
/* Number every value (inputs, constants, node results) 0..count-1 in
 * definition order; returns the count. Inputs come first: an input's id is
 * its index in m->inputs. */
int ir_number_values(IrModule *m);

/* ---- constdata.c: constants held in their stored form ---- */

/* A constant of f32 `type` whose elements are `src` in `stored` form: no
 * f32 copy exists until ir_const_data asks for one. `src` must live as long
 * as the module (a mapping the module's arena unmaps). */
IrValue *ir_add_const_view(IrModule *m, const char *name, IrType type, const void *src,
                           IrStored stored, void (*drop_src)(const void *, size_t), IrLoc loc);
/* Bytes of one element of `stored` form in `src`. */
size_t ir_stored_size(IrStored stored);
/* Constant `v`'s elements in its type (v->data, or a view's f32 form made
 * now if it does not exist): never NULL unless the constant has no
 * elements; out of memory jumps (ir_throw_nomem). Valid until
 * ir_const_release(v). */
const void *ir_const_data(IrModule *m, const IrValue *v);
/* Let go of a view's f32 form (made again if asked for); nothing for a
 * constant held in memory. A pass calls it once it has what it needs of a
 * weight (its int8 form), so that the f32 forms never all exist at once. */
void ir_const_release(IrModule *m, const IrValue *v);
/* Widen every view that is not a weight (operand 1 of a linear or matmul)
 * into memory for good: scales, biases, gains and tables are read
 * directly by code that predates views, and are small beside the weights.
 * False when memory runs out (the constant named in m->diag). */
bool ir_pin_non_weights(IrModule *m);
/* Does the constant have its elements (in memory or as a view)? */
bool ir_const_has_data(const IrValue *v);
/* n elements of `src` in `stored` form to f32, exactly (every half and
 * bfloat16 value is an f32 value; NaN payloads kept). */
void ir_widen_f32(IrStored stored, const void *src, size_t n, float *dst);

/* ---- attr.c: attributes through typed accessors ---- */

/* The attribute `key` of `n`, or NULL. Prefer the typed accessors. */
const IrAttr *ir_node_attr(const IrNode *n, IrAttrKey key);
/* Old untyped reader: the value or `dflt` when the node has no such
 * single-valued attribute. Kept for codegen/; new code uses the accessors. */
double ir_node_attr_float(const IrNode *n, IrAttrKey key, double dflt);
bool ir_has_attr(const IrNode *n, IrAttrKey key);
/* Give `to` the attribute `key` of `from` (value and location), if any. */
void ir_copy_attr(IrModule *m, const IrNode *from, IrNode *to, IrAttrKey key);
/* Where the attribute is written (for messages), else the node's location. */
IrLoc ir_attr_loc(const IrNode *n, IrAttrKey key);
/* Typed readers: the value of `key`, or `dflt` when the node does not carry
 * it. Reading a key through the accessor of another kind (attrs.def) is an
 * internal error (q8_die), never a silent conversion. */
double ir_attr_float(const IrNode *n, IrAttrKey key, double dflt);
int64_t ir_attr_int(const IrNode *n, IrAttrKey key, int64_t dflt);
IrDType ir_attr_dtype(const IrNode *n, IrAttrKey key, IrDType dflt);
/* INTS or DIMS: the number of elements (up to `max` copied into vals), or
 * -1 when absent. DIMS elements are IR_DIM_BATCH for `?`. */
int ir_attr_ints(const IrNode *n, IrAttrKey key, int64_t *vals, int max);
/* RANGE: false when absent. */
bool ir_attr_range(const IrNode *n, IrAttrKey key, double *lo, double *hi);
/* NAME: the index of the value in the key's names, or `dflt`. */
int ir_attr_name(const IrNode *n, IrAttrKey key, int dflt);
/* The names a NAME key takes (attrs.def's ATTR_NAMES): how many, the i-th,
 * and the index of a spelling (-1 when it is none of them). */
int ir_attr_name_count(IrAttrKey key);
const char *ir_attr_name_str(IrAttrKey key, int i);
int ir_attr_name_index(IrAttrKey key, const char *s, size_t len);
/* Typed writers, kind-checked the same way. */
void ir_set_attr_float(IrModule *m, IrNode *n, IrAttrKey key, double v);
void ir_set_attr_int(IrModule *m, IrNode *n, IrAttrKey key, int64_t v);
void ir_set_attr_dtype(IrModule *m, IrNode *n, IrAttrKey key, IrDType v);
void ir_set_attr_ints(IrModule *m, IrNode *n, IrAttrKey key, const int64_t *vals, int nvals);
void ir_set_attr_range(IrModule *m, IrNode *n, IrAttrKey key, double lo, double hi);
void ir_set_attr_name(IrModule *m, IrNode *n, IrAttrKey key, int v);

/* A quantized op's parameters: IR_QPARAMS_OUT its result's (scale,
 * zero_point, dtype), IR_QPARAMS_IN its input's (x_scale, x_zero_point,
 * x_dtype). */
/* IR_QPARAMS_B: qmatmul's right operand's (b_scale, b_zero_point, b_dtype). */
typedef enum { IR_QPARAMS_OUT, IR_QPARAMS_IN, IR_QPARAMS_B } IrQSide;
/* The three attributes as IrQParams; false (and *q untouched) unless the
 * node carries all three (a qlinear with f32 output has only dtype). */
bool ir_get_qparams(const IrNode *n, IrQSide side, IrQParams *q);
/* Set the three attributes (at the node's location). */
void ir_set_qparams(IrModule *m, IrNode *n, IrQSide side, const IrQParams *q);
/* The attribute keys of a side: scale, zero_point, dtype. */
void ir_qparams_keys(IrQSide side, IrAttrKey keys[3]);

/* ---- infer.c ---- */

/* Compute the result type of one node from its operands' types and its
 * attributes into *out. Returns false with a diagnostic if the operands do not
 * fit the op (wrong dtype, rank or dims; a bad attribute). */
bool ir_infer_type(IrModule *m, const IrNode *n, IrType *out);
/* numpy's x[start:end] along an axis of `dim` elements (a slice node's
 * attributes): negative indices count from the end, both are clamped to
 * [0, dim], and [*lo, *hi) is what remains (hi >= lo). */
void ir_slice_bounds(int64_t dim, int64_t start, int64_t end, int64_t *lo, int64_t *hi);
/* Set the result type of every node, in order. */
bool ir_infer_shapes(IrModule *m);
/* named.c: with named dims (m->nnamed >= 2), whether node n (its type
 * inferred) computes each row of the named prefix alone; else an error. */
bool ir_named_check_node(IrModule *m, const IrNode *n);
/* Replace every `?` (in types and in DIMS attributes) with `batch`, and
 * remember it in m->bound_batch if there was any. */
void ir_bind_batch(IrModule *m, int64_t batch);

/* ---- verify.c ---- */

/* Check the module's invariants: every operand defined before use, one
 * definition per name, operand counts and attributes as ops.def says, types
 * inferred and consistent. Returns false with a diagnostic otherwise. */
bool ir_verify(IrModule *m);

/* ---- printer.c ---- */

/* Print the module as text IR that ir parsing reads back to the same graph.
 * Returns a malloc'd string (caller frees), or NULL on allocation failure. */
char *ir_print(const IrModule *m);
/* Shortest decimal spelling of `v` that reads back as the same double. */
void ir_format_double(double v, char *buf, size_t size);

/* ---- nf4.c: 4-bit weights (docs/quantization.md, "4-bit weights") ---- */

/* The code tables, in linear_4bit's `code` attribute order. */
enum { IR_4BIT_NF4, IR_4BIT_FP4 };
/* The 4-bit code of v (a weight over its block's maximum, in [-1, 1]):
 * bitsandbytes' nearest-value thresholds, a value on one taking the code
 * below it. */
int ir_4bit_code(float v, int code);
/* W [n, k] (k a multiple of block) to codes packed two a byte, even k in
 * the low nibble (packed [n, k/2]), and absmax [n, k/block] the f32 maximum
 * of |w| of each block of `block` weights of a row; an all-zero block gets
 * maximum 0 and the code of 0. */
void ir_quantize_4bit(const float *w, int64_t n, int64_t k, int code, int64_t block,
                      uint8_t *packed, float *absmax);
/* Double quantization of `count` block maxima: absmax2[ceil(count / 256)]
 * is their mean, absmax2[b] the largest |absmax - mean| of block b of 256,
 * q[i] the index of q8_ref_dq_map nearest to (absmax[i] - mean) / absmax2[b]. */
void ir_double_quant(const float *absmax, int64_t count, uint8_t *q, float *absmax2);

/* ---- quant.c ---- */

/* The quantization arithmetic of docs/quantization.md, shared by the passes
 * that choose and fold parameters and by the reference interpreter, so that
 * both compute every constant the same way. */

/* The integer range of a quantized type: u8 [0, 255], i8 [-127, 127]. */
void ir_qbounds(IrDType t, int32_t *qmin, int32_t *qmax);
/* The bounds of `bits` (8, or 7 for --reduce-range) of type t: 8 as
 * ir_qbounds; 7 the window [64, 191] of u8 (the kernels multiply b - 128,
 * then in [-64, 63]) or [-63, 63] of i8 (docs/quantization.md, "Reduced
 * range"). */
void ir_qbounds_bits(IrDType t, int bits, int32_t *qmin, int32_t *qmax);
/* ir_qparams_from_range over the `bits` window of ir_qbounds_bits: u8's 7-bit
 * scale (hi - lo) / 127 with zero point 64 + rint(-lo / scale) in [64, 191];
 * i8's max|lo, hi| / 63. */
bool ir_qparams_from_range_bits(double lo, double hi, IrDType dtype, int bits, IrQParams *out);
/* Parameters for a calibrated range [lo, hi]: u8 asymmetric (range widened to
 * include 0) or i8 symmetric. Returns false if the range was degenerate (zero
 * width, or not finite) and a default scale of 1 was used. */
bool ir_qparams_from_range(double lo, double hi, IrDType dtype, IrQParams *out);
/* q = clamp(rint(x / scale), qmin - zp, qmax - zp) + zp in f32, NaN -> zp. */
int32_t ir_quantize_value(float x, float scale, int32_t zp, int32_t qmin, int32_t qmax);
/* q = clamp(rint((float)acc * mult), qmin - zp, qmax - zp) + zp in f32. */
int32_t ir_requantize(int32_t acc, float mult, int32_t zp, int32_t qmin, int32_t qmax);
/* Symmetric int8 weights in [-127, 127]: w_scale[n] = max|W[n, :]| / 127 per
 * output channel (or one scale for all when !per_channel; w_scale then has
 * one entry). Returns the number of all-zero channels (given scale 1). */
int64_t ir_quantize_weights(const float *w, int64_t n, int64_t k, bool per_channel, int8_t *wq,
                            float *w_scale);
/* The same in [-qmax, qmax]: 127, or IR_WEIGHT_QMAX_7BIT for --reduce-range
 * (docs/quantization.md, "Reduced range"). */
#define IR_WEIGHT_QMAX_7BIT 63
int64_t ir_quantize_weights_q(const float *w, int64_t n, int64_t k, bool per_channel, int qmax,
                              int8_t *wq, float *w_scale);
/* Fold a qlinear into a qgemm's constants: for each output channel n
 *   bias[n] = rint(b[n] / (x_scale * w_scale[n])) - x_zp * sum_k wq[n, k]
 *   mult[n] = x_scale * w_scale[n] / y_scale   (y_scale = 0: f32 output,
 *                                              mult = x_scale * w_scale[n])
 * in double, rounded once to int32 (saturated) and f32. `b` may be NULL and
 * w_scale has n entries, or 1 when per-tensor. Returns the number of
 * channels whose bias saturated int32. */
int64_t ir_fold_qlinear(const int8_t *wq, const float *w_scale, int w_scale_len, const float *b,
                        int64_t n, int64_t k, float x_scale, int32_t x_zp, float y_scale,
                        int32_t *bias, float *mult);
/* qmatmul's one multiplier: x_scale * b_scale / y_scale in double, rounded
 * once to f32 (as ir_fold_qlinear's mult); x_scale * b_scale for an f32
 * result (y_scale = 0). */
float ir_qmatmul_mult(float x_scale, float b_scale, float y_scale);

/* ---- qform.c: the quantized boundary (inputs and outputs in their
 * quantized form, for the quantized entry) ---- */

/* Does node `n` use input `x` only as a quantized layer's operand 0 that it
 * quantizes with exactly the parameters `q`? */
bool ir_qform_use_ok(const IrNode *n, const IrValue *x, const IrQParams *q);
/* Give each f32 input whose uses all quantize it alike (and that is no
 * output) that quantized form. */
void ir_set_input_qforms(IrModule *m);
/* The verifier's checks of every quantized form (parameters, f32, uses). */
bool ir_check_qforms(IrModule *m);
bool ir_has_qforms(const IrModule *m);
/* The element type of input or output `v` at the quantized entry (its
 * quantized form's) or at the f32 entry (its own). */
IrDType ir_boundary_dtype(const IrValue *v, bool quantized);

/* ---- interp.c ---- */

/* Called after each node with its result (for calibration observers). */
typedef void (*IrObserver)(void *user, const IrNode *node, const IrTensor *result);

/* Run the module in f32. `inputs` are the module's inputs in order, with `?`
 * bound to `batch` in their types. On success `outputs` (module's outputs in
 * order) receive malloc'd data the caller frees with free(outputs[i].data).
 * Returns false with a message in m->diag on failure. */
bool ir_interp_f32(IrModule *m, int64_t batch, const IrTensor *inputs, IrTensor *outputs,
                   IrObserver observe, void *user);
/* The same run through the model's quantized entry: each input and output
 * that has a quantized form is given or returned in it (ir_boundary_dtype),
 * the others as ir_interp_f32 takes them. */
bool ir_interp_quantized(IrModule *m, int64_t batch, const IrTensor *inputs, IrTensor *outputs);
/* Evaluate node `n` of `m` alone on operand tensors `opnds` (one per operand,
 * types with `?` bound, in each operand's dtype; an entry whose data is NULL
 * takes the module's constant). The result, in the node's dtype, is malloc'd
 * into *out (free(out->data)). Used to measure one layer in isolation. */
bool ir_interp_node(IrModule *m, const IrNode *n, int64_t batch, const IrTensor *opnds,
                    IrTensor *out);

#endif
