/* attr.c: node attributes through typed accessors (Glow's generated node
 * getters). An attribute stores its values as doubles (IrAttr), but every
 * key has one kind in attrs.def, and code reads and writes a key only
 * through the accessor of that kind: ir_attr_dtype for a DTYPE key,
 * ir_attr_int for an INT key, and so on. Using another kind's accessor is a
 * bug in q8c and stops it (q8_die), rather than casting a number silently.
 *
 * The quantization parameters of an op are read and written as one
 * IrQParams (ir_get_qparams / ir_set_qparams), for its result (scale,
 * zero_point, dtype) or its input (x_scale, x_zero_point, x_dtype). */
#include "ir.h"

const IrAttr *ir_node_attr(const IrNode *n, IrAttrKey key) {
  for (int i = 0; i < n->nattrs; i++)
    if (n->attrs[i].key == key)
      return &n->attrs[i];
  return NULL;
}

double ir_node_attr_float(const IrNode *n, IrAttrKey key, double dflt) {
  const IrAttr *a = ir_node_attr(n, key);
  return a && a->n == 1 ? a->vals[0] : dflt;
}

bool ir_has_attr(const IrNode *n, IrAttrKey key) { return ir_node_attr(n, key) != NULL; }

void ir_copy_attr(IrModule *m, const IrNode *from, IrNode *to, IrAttrKey key) {
  const IrAttr *a = ir_node_attr(from, key);
  if (a)
    ir_node_set_attr(m, to, key, a->vals, a->n, a->loc);
}

IrLoc ir_attr_loc(const IrNode *n, IrAttrKey key) {
  const IrAttr *a = ir_node_attr(n, key);
  return a ? a->loc : n->loc;
}

/* The attribute `key` if the node has it, after checking that the caller
 * reads it as its kind (`k2` is a second accepted kind, or -1). */
static const IrAttr *typed(const IrNode *n, IrAttrKey key, IrAttrKind k, int k2) {
  if (key >= IR_ATTR_COUNT)
    q8_die("attribute key %d out of range", (int)key);
  IrAttrKind kind = ir_attr_info[key].kind;
  if (kind != k && (int)kind != k2)
    q8_die("attribute '%s' read or written as the wrong kind", ir_attr_info[key].key);
  return n ? ir_node_attr(n, key) : NULL;
}

double ir_attr_float(const IrNode *n, IrAttrKey key, double dflt) {
  const IrAttr *a = typed(n, key, IR_AKIND_FLOAT, -1);
  return a && a->n == 1 ? a->vals[0] : dflt;
}

int64_t ir_attr_int(const IrNode *n, IrAttrKey key, int64_t dflt) {
  const IrAttr *a = typed(n, key, IR_AKIND_INT, -1);
  return a && a->n == 1 ? (int64_t)a->vals[0] : dflt;
}

IrDType ir_attr_dtype(const IrNode *n, IrAttrKey key, IrDType dflt) {
  const IrAttr *a = typed(n, key, IR_AKIND_DTYPE, -1);
  if (!a || a->n != 1)
    return dflt;
  double v = a->vals[0];
  return v > IR_DTYPE_NONE && v < IR_DTYPE_COUNT ? (IrDType)(int)v : IR_DTYPE_NONE;
}

int ir_attr_ints(const IrNode *n, IrAttrKey key, int64_t *vals, int max) {
  const IrAttr *a = typed(n, key, IR_AKIND_INTS, IR_AKIND_DIMS);
  if (!a)
    return -1;
  for (int i = 0; i < a->n && i < max; i++)
    vals[i] = (int64_t)a->vals[i];
  return a->n;
}

bool ir_attr_range(const IrNode *n, IrAttrKey key, double *lo, double *hi) {
  const IrAttr *a = typed(n, key, IR_AKIND_RANGE, -1);
  if (!a || a->n != 2)
    return false;
  *lo = a->vals[0];
  *hi = a->vals[1];
  return true;
}

int ir_attr_name(const IrNode *n, IrAttrKey key, int dflt) {
  const IrAttr *a = typed(n, key, IR_AKIND_NAME, -1);
  if (!a || a->n != 1)
    return dflt;
  double v = a->vals[0];
  return v >= 0 && v < ir_attr_name_count(key) && v == (int)v ? (int)v : dflt;
}

void ir_set_attr_float(IrModule *m, IrNode *n, IrAttrKey key, double v) {
  typed(NULL, key, IR_AKIND_FLOAT, -1);
  ir_node_set_attr(m, n, key, &v, 1, n->loc);
}

void ir_set_attr_int(IrModule *m, IrNode *n, IrAttrKey key, int64_t v) {
  typed(NULL, key, IR_AKIND_INT, -1);
  double d = (double)v;
  ir_node_set_attr(m, n, key, &d, 1, n->loc);
}

void ir_set_attr_dtype(IrModule *m, IrNode *n, IrAttrKey key, IrDType v) {
  typed(NULL, key, IR_AKIND_DTYPE, -1);
  double d = v;
  ir_node_set_attr(m, n, key, &d, 1, n->loc);
}

void ir_set_attr_ints(IrModule *m, IrNode *n, IrAttrKey key, const int64_t *vals, int nvals) {
  typed(NULL, key, IR_AKIND_INTS, IR_AKIND_DIMS);
  double d[IR_MAX_RANK];
  if (nvals > IR_MAX_RANK)
    q8_die("attribute '%s' with %d values", ir_attr_info[key].key, nvals);
  for (int i = 0; i < nvals; i++)
    d[i] = (double)vals[i];
  ir_node_set_attr(m, n, key, d, nvals, n->loc);
}

void ir_set_attr_range(IrModule *m, IrNode *n, IrAttrKey key, double lo, double hi) {
  typed(NULL, key, IR_AKIND_RANGE, -1);
  double d[2] = {lo, hi};
  ir_node_set_attr(m, n, key, d, 2, n->loc);
}

void ir_set_attr_name(IrModule *m, IrNode *n, IrAttrKey key, int v) {
  typed(NULL, key, IR_AKIND_NAME, -1);
  if (v < 0 || v >= ir_attr_name_count(key))
    q8_die("attribute '%s' set to name %d of %d", ir_attr_info[key].key, v,
           ir_attr_name_count(key));
  double d = v;
  ir_node_set_attr(m, n, key, &d, 1, n->loc);
}

void ir_qparams_keys(IrQSide side, IrAttrKey keys[3]) {
  keys[0] = side == IR_QPARAMS_IN ? IR_ATTR_X_SCALE : IR_ATTR_SCALE;
  keys[1] = side == IR_QPARAMS_IN ? IR_ATTR_X_ZERO_POINT : IR_ATTR_ZERO_POINT;
  keys[2] = side == IR_QPARAMS_IN ? IR_ATTR_X_DTYPE : IR_ATTR_DTYPE;
  if (side == IR_QPARAMS_B) {
    keys[0] = IR_ATTR_B_SCALE;
    keys[1] = IR_ATTR_B_ZERO_POINT;
    keys[2] = IR_ATTR_B_DTYPE;
  }
}

bool ir_get_qparams(const IrNode *n, IrQSide side, IrQParams *q) {
  IrAttrKey k[3];
  ir_qparams_keys(side, k);
  if (!ir_has_attr(n, k[0]) || !ir_has_attr(n, k[1]) || !ir_has_attr(n, k[2]))
    return false;
  *q = (IrQParams){(float)ir_attr_float(n, k[0], 0), (int32_t)ir_attr_int(n, k[1], 0),
                   ir_attr_dtype(n, k[2], IR_DTYPE_NONE)};
  return true;
}

void ir_set_qparams(IrModule *m, IrNode *n, IrQSide side, const IrQParams *q) {
  IrAttrKey k[3];
  ir_qparams_keys(side, k);
  ir_set_attr_float(m, n, k[0], q->scale);
  ir_set_attr_int(m, n, k[1], q->zero_point);
  ir_set_attr_dtype(m, n, k[2], q->dtype);
}
