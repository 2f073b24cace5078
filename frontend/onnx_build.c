/* onnx_build.c: the one place where the ONNX importer calls ir/ir.h's
 * builder functions (ir_module_new, ir_add_input, ir_add_const, ir_add_node,
 * ir_node_set_attr, ir_infer_type, ir_add_output, ir_unique_name,
 * ir_unique_const_name, ir_remove_dead, ir_verify), so that a change of that
 * API is adapted here alone. onnx.c works on ONNX names and host tensors and
 * asks this file for IR values. */
#include <string.h>

#include "onnx_internal.h"

IrModule *ob_module(const char *name) { return ir_module_new(name); }

IrValue *ob_input(IrModule *m, const char *name, const IrType *type) {
  return ir_add_input(m, ir_unique_name(m, name), *type, (IrLoc){0});
}

IrValue *ob_const(IrModule *m, const char *base, const HTensor *t) {
  IrType type = {.rank = t->rank};
  memcpy(type.dims, t->dims, sizeof(int64_t) * (size_t)t->rank);
  switch (t->dt) {
  case H_F32: type.dtype = IR_F32; break;
  case H_I8: type.dtype = IR_I8; break;
  case H_U8: type.dtype = IR_U8; break;
  case H_I32: type.dtype = IR_I32; break;
  case H_I64: q8_die("ob_const: i64 tensor '%s'", base);
  }
  return ir_add_const(m, ir_unique_const_name(m, base), type, t->data, (IrLoc){0});
}

IrValue *ob_node(IrModule *m, IrOp op, const char *result_base, IrValue **opnds, int nopnds,
                 const BAttr *attrs, int nattrs) {
  IrNode *n = ir_add_node(m, op, ir_unique_name(m, result_base), opnds, nopnds, (IrLoc){0});
  for (int i = 0; i < nattrs; i++)
    ir_node_set_attr(m, n, attrs[i].key, attrs[i].v, attrs[i].n, (IrLoc){0});
  IrType t;
  if (!ir_infer_type(m, n, &t))
    return NULL;
  n->result->type = t;
  return n->result;
}

void ob_output(IrModule *m, IrValue *v) { ir_add_output(m, v, (IrLoc){0}); }

bool ob_finish(IrModule *m) {
  ir_remove_dead(m);
  return ir_verify(m);
}
