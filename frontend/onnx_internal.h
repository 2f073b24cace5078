/* onnx_internal.h: what the files of the ONNX importer share:
 *
 *   onnx_read.c   the protobuf file and its tensors (initializers, external data)
 *   onnx_build.c  the only file that calls ir/ir.h's builder functions
 *   onnx.c        the graph: ONNX nodes onto IR ops, folding, QDQ patterns
 *
 * Not a public header: frontend.h declares the entry points. */
#ifndef Q8_ONNX_INTERNAL_H
#define Q8_ONNX_INTERNAL_H

#include "frontend.h"
#include "onnx.pb-c.h"

/* The batch dimension `?` inside a folded shape tensor (an int64 value that
 * no real dimension or Reshape code such as -1 or 0 can take). */
#define ONNX_SYM_BATCH INT64_MIN

/* A tensor known at import time (an initializer, a Constant, a folded shape). */
typedef enum { H_F32, H_I64, H_I32, H_I8, H_U8 } HDType;

typedef struct {
  HDType dt;
  int rank;
  int64_t dims[IR_MAX_RANK];
  int64_t numel;
  void *data; /* arena memory, numel elements */
} HTensor;

typedef struct {
  IrModule *m;
  const char *dir; /* the model's folder, for external data; NULL from memory */
} OnnxCtx;

/* ---- onnx_read.c ---- */

const char *onnx_str(const char *s);
size_t onnx_hsize(HDType t);
const char *onnx_hname(HDType t);
double onnx_hget(const HTensor *t, int64_t i);
int64_t onnx_hget_i64(const HTensor *t, int64_t i);
/* A double as an integer: NaN 0, out of range saturated. */
int64_t onnx_to_i64(double v);
/* A new tensor of dims, checked for overflow and the memory cap. */
bool onnx_htensor_new(IrArena *a, HDType dt, int rank, const int64_t *dims, HTensor *t, char *err,
                      size_t errlen);
bool onnx_read_tensor(OnnxCtx *c, const Onnx__TensorProto *tp, HTensor *t, char *err,
                      size_t errlen);
char *onnx_dims_str(const int64_t *dims, int rank, char *buf, size_t size);
Onnx__ModelProto *onnx_unpack(const unsigned char *bytes, size_t size, char *err, size_t errlen);
void onnx_free(Onnx__ModelProto *mp);

/* ---- onnx_build.c: the IR builder calls, all of them ---- */

typedef struct {
  IrAttrKey key;
  int n;
  double v[IR_MAX_RANK];
} BAttr;

typedef struct {
  const char **keys;
  size_t cap, count;
} ObNames;

typedef struct {
  IrModule *m;
  ObNames values, consts; /* names taken */
  int nliterals;          /* f32 scalars made literals (`lit.N`) */
} ObBuild;

/* A new module, the builder's. */
IrModule *ob_begin(ObBuild *b, const char *name);
IrValue *ob_input(ObBuild *b, const char *name, const IrType *type);
/* A constant from a host tensor (f32, i8, u8, i32 or i64), named after
 * `base` (made unique); an f32 scalar is a literal instead. */
IrValue *ob_const(ObBuild *b, const char *base, const HTensor *t);
/* A node with its attributes, its result type inferred. NULL with the
 * inference's message in the module's diag. */
IrValue *ob_node(ObBuild *b, IrOp op, const char *result_base, IrValue **opnds, int nopnds,
                 const BAttr *attrs, int nattrs);
void ob_output(ObBuild *b, IrValue *v);
/* Drop what the patterns left unused, then verify. */
bool ob_finish(ObBuild *b);

#endif
