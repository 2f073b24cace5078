/* testutil.h: building small modules by hand for the C unit tests (the
 * builders test_interp.c and test_qinterp.c shared as copies).
 *
 * Types are written as F32(2, 3) or TYPED(IR_U8, Q, 4) (Q is the `?` batch
 * dimension); constants are copied into the module's arena, as the builder
 * API requires; nodes get their result type by hand, so that a test depends
 * on no shape inference. Include after <cmocka.h>; everything is static
 * inline, so a test uses what it needs. */
#ifndef Q8_TESTUTIL_H
#define Q8_TESTUTIL_H

#include <string.h>

#include "ir/ir.h"

static inline IrType make_type(IrDType dtype, int rank, const int64_t *dims) {
  IrType t = {.dtype = dtype, .rank = rank};
  for (int i = 0; i < rank; i++)
    t.dims[i] = dims[i];
  return t;
}

#define NDIMS(...) ((int)(sizeof((int64_t[]){__VA_ARGS__}) / sizeof(int64_t)))
#define TYPED(dt, ...) make_type(dt, NDIMS(__VA_ARGS__), (int64_t[]){__VA_ARGS__})
#define F32(...) TYPED(IR_F32, __VA_ARGS__)
#define U8(...) TYPED(IR_U8, __VA_ARGS__)
#define I8(...) TYPED(IR_I8, __VA_ARGS__)
#define I32(...) TYPED(IR_I32, __VA_ARGS__)
#define Q IR_DIM_BATCH

/* A constant of type `t` holding the `nbytes` bytes at `vals`. */
static inline IrValue *konst_bytes(IrModule *m, const char *name, IrType t, const void *vals,
                                   size_t nbytes) {
  void *data = ir_alloc_data(m->arena, nbytes ? nbytes : 1);
  assert_non_null(data);
  memcpy(data, vals, nbytes);
  return ir_add_const(m, name, t, data, (IrLoc){0});
}

/* A constant of type `t` whose elements are at `vals` (as many as `t` has). */
static inline IrValue *konst(IrModule *m, const char *name, IrType t, const void *vals) {
  int64_t n;
  assert_true(ir_type_numel(&t, 1, &n));
  return konst_bytes(m, name, t, vals, (size_t)n * ir_dtype_size(t.dtype));
}

/* A node whose result type is given by hand. */
static inline IrNode *node(IrModule *m, IrOp op, const char *name, IrType t, int nopnds,
                           IrValue **opnds) {
  IrNode *n = ir_add_node(m, op, name, opnds, nopnds, (IrLoc){0});
  n->result->type = t;
  return n;
}

/* NODE(m, RELU, "y", F32(2), x): the node; VALUE(...): its result. */
#define NODE(m, op, name, t, ...)                                                        \
  node(m, IR_OP_##op, name, t, (int)(sizeof((IrValue *[]){__VA_ARGS__}) / sizeof(IrValue *)), \
       (IrValue *[]){__VA_ARGS__})
#define VALUE(...) (NODE(__VA_ARGS__)->result)

static inline IrTensor tensor(IrType t, const void *data) { return (IrTensor){t, (void *)data}; }

#endif
