/* qgroup.h: the operands of qlinear_grp (x, Wq, w_scale, [w_zero], [b]),
 * where the fourth is the zero points when it is i8 and the bias when f32;
 * the one place that tells them apart. */
#ifndef Q8_IR_QGROUP_H
#define Q8_IR_QGROUP_H
#include "ir.h"

static inline IrValue *ir_qgrp_zero(const IrNode *n) {
  return n->nopnds > 3 && n->opnds[3]->type.dtype == IR_I8 ? n->opnds[3] : NULL;
}

static inline IrValue *ir_qgrp_bias(const IrNode *n) {
  int at = ir_qgrp_zero(n) ? 4 : 3;
  return n->nopnds > at ? n->opnds[at] : NULL;
}
#endif
