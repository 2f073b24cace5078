/* fold_constants.c: the fold-constants pass. Each qlinear becomes a qgemm,
 * whose per-channel constants are what the kernels consume:
 *
 *   bias[n] = rint(b[n] / (x_scale * w_scale[n])) - x_zero_point * sum_k Wq[n, k]   (i32)
 *   mult[n] = x_scale * w_scale[n] / scale          (f32; without / scale for f32 output)
 *
 * so a kernel computes acc = bias[n] + sum_k xq * Wq and requantizes with one
 * multiply. The interpreter defines qlinear through the same folding
 * (ir_fold_qlinear), so this pass changes no bit of any result. */
#include <math.h>
#include <stdio.h>

#include "passes.h"

static bool fold(IrModule *m, const PassOptions *o, IrNode *n) {
  const IrValue *wq = n->opnds[1], *ws = n->opnds[2];
  const IrValue *b = n->nopnds == 4 ? n->opnds[3] : NULL;
  int64_t nn = wq->type.dims[0], k = wq->type.dims[1];
  bool f32_out = ir_attr_dtype(n, IR_ATTR_DTYPE, IR_DTYPE_NONE) == IR_F32;
  IrQParams x;
  if (!ir_get_qparams(n, IR_QPARAMS_IN, &x))
    q8_die("fold-constants: %%%s has no input parameters (the verifier checks them)",
           n->result->name);
  float x_scale = x.scale;
  int32_t x_zp = x.zero_point;
  float y_scale = f32_out ? 0.0f : (float)ir_attr_float(n, IR_ATTR_SCALE, 0);
  int32_t *bias = ir_alloc_data(m->arena, (size_t)nn * sizeof *bias);
  float *mult = ir_alloc_data(m->arena, (size_t)nn * sizeof *mult);
  if (!bias || !mult)
    return ir_error(&m->diag, n->loc, "out of memory folding %%%s", n->result->name);
  int64_t sat = ir_fold_qlinear(wq->data, ws->data, (int)ws->type.dims[0], b ? ir_const_data(m, b) : NULL, nn,
                                k, x_scale, x_zp, y_scale, bias, mult);
  if (b)
    ir_const_release(m, b); /* folded: a view's f32 form can go */
  if (sat)
    pass_note(o, "fold-constants: %%%s: %lld bias value%s saturated int32", n->result->name,
              (long long)sat, sat == 1 ? "" : "s");
  /* x_scale * w_scale (/ scale) past the f32 range: every output of the
   * channel would be +-inf, or NaN for an accumulator of 0, and LLVM does
   * not keep the sign of a NaN, so compiled code and the interpreter could
   * not even agree on the bits. The ranges or weights are beyond int8. */
  for (int64_t c = 0; c < nn; c++)
    if (!isfinite(mult[c]))
      return ir_error(&m->diag, n->loc,
                      "fold-constants: %%%s: output channel %lld cannot be quantized: its "
                      "multiplier x_scale * w_scale%s is %g (x_scale %g, w_scale %g); the "
                      "activation range or the weights are too large",
                      n->result->name, (long long)c, f32_out ? "" : " / scale",
                      (double)mult[c], (double)x_scale,
                      (double)((const float *)ws->data)[ws->type.dims[0] == 1 ? 0 : c]);
  char name[512];
  IrType bt = {IR_I32, 1, {nn}}, mt = {IR_F32, 1, {nn}};
  snprintf(name, sizeof name, "%s.bias", n->result->name);
  IrValue *bias_c = ir_add_const(m, ir_unique_const_name(m, name), bt, bias, n->loc);
  snprintf(name, sizeof name, "%s.mult", n->result->name);
  IrValue *mult_c = ir_add_const(m, ir_unique_const_name(m, name), mt, mult, n->loc);
  n->op = IR_OP_QGEMM;
  n->opnds[2] = bias_c;
  n->opnds[3] = mult_c;
  n->nopnds = 4;
  return true;
}

bool pass_fold_constants(IrModule *m, const PassOptions *o) {
  for (int i = 0; i < m->nnodes; i++) {
    IrNode *n = m->nodes[i];
    if (n->op != IR_OP_QLINEAR)
      continue;
    /* opnds has room for 3 or 4; qgemm always takes 4. */
    if (n->nopnds == 3) {
      IrValue **ops = ir_alloc(m->arena, 4 * sizeof *ops);
      for (int j = 0; j < 3; j++)
        ops[j] = n->opnds[j];
      n->opnds = ops;
      if (n->opnd_locs) {
        IrLoc *locs = ir_alloc(m->arena, 4 * sizeof *locs);
        for (int j = 0; j < 3; j++)
          locs[j] = n->opnd_locs[j];
        n->opnd_locs = locs;
      }
    }
    if (!fold(m, o, n))
      return false;
  }
  return true;
}
