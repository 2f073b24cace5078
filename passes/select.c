/* select.c: which nodes become int8, decided in one place so that the
 * calibration pass observes exactly the activations the quantize pass will
 * need ranges for.
 *
 * A node is quantizable when it is a linear, or a matmul whose right operand
 * is a rank-2 constant (then it is a linear with W = B^T), all in f32, and
 * neither its result nor its weight is listed in --keep-float, nor is it
 * marked {keep_float = 1} (the quantize pass marks the ones --keep-float
 * kept, so a saved model remembers the choice). A matmul of two activations
 * (attention's Q K^T, P V) is quantizable too, as a qmatmul, when both have
 * the same rank and the same leading dims; with broadcast leading dims it
 * stays in f32 (pass_is_act_matmul tells which, for the quantizer's note). */
#include <string.h>

#include "passes.h"

bool pass_name_listed(const char *list, const char *name) {
  if (!list)
    return false;
  size_t n = strlen(name), qlen;
  const char *q;
  for (const char *rest = list; sup_list_next(&rest, &q, &qlen);) {
    /* Names may carry their sigil: %h, @fc1.weight. */
    if (qlen && (*q == '%' || *q == '@')) {
      q++;
      qlen--;
    }
    if (qlen == n && memcmp(q, name, n) == 0)
      return true;
  }
  return false;
}

bool pass_is_act_matmul(const IrNode *n, bool *fits) {
  if (n->op != IR_OP_MATMUL || n->opnds[0]->kind == IR_VAL_CONST ||
      n->opnds[1]->kind == IR_VAL_CONST || n->opnds[0]->type.dtype != IR_F32 ||
      n->opnds[1]->type.dtype != IR_F32)
    return false;
  const IrType *a = &n->opnds[0]->type, *b = &n->opnds[1]->type;
  *fits = a->rank == b->rank && a->rank >= 2;
  for (int i = 0; *fits && i < a->rank - 2; i++)
    *fits = a->dims[i] == b->dims[i];
  return true;
}

bool pass_is_quantizable(const IrModule *m, const IrNode *n, const PassOptions *o) {
  const IrValue *w;
  bool fits;
  if (pass_is_act_matmul(n, &fits))
    return fits && ir_attr_int(n, IR_ATTR_KEEP_FLOAT, 0) == 0 &&
           !pass_name_listed(o->keep_float, n->result->name);
  if (n->op == IR_OP_LINEAR)
    w = n->opnds[1];
  else if (n->op == IR_OP_MATMUL && n->opnds[1]->kind == IR_VAL_CONST &&
           n->opnds[1]->type.rank == 2)
    w = n->opnds[1];
  else
    return false;
  if (w->kind != IR_VAL_CONST || w->type.dtype != IR_F32 || n->opnds[0]->type.dtype != IR_F32)
    return false;
  return ir_attr_int(n, IR_ATTR_KEEP_FLOAT, 0) == 0 &&
         !pass_name_listed(o->keep_float, n->result->name) &&
         !pass_name_listed(o->keep_float, w->name);
}

const float *pass_weight_nk(IrModule *m, const IrNode *n, int64_t *n_out, int64_t *k_out) {
  const IrValue *w = n->opnds[1];
  const float *data = ir_const_data(m, w);
  if (n->op == IR_OP_LINEAR) {
    *n_out = w->type.dims[0];
    *k_out = w->type.dims[1];
    return data;
  }
  /* matmul: B is [K, N]; the kernels want [N, K]. */
  int64_t k = w->type.dims[0], nn = w->type.dims[1];
  float *t = ir_alloc(m->arena, (size_t)(k * nn) * sizeof *t);
  for (int64_t i = 0; i < k; i++)
    for (int64_t j = 0; j < nn; j++)
      t[j * k + i] = data[i * nn + j];
  *n_out = nn;
  *k_out = k;
  return t;
}
