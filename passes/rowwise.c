/* rowwise.c: whether a model's batch rows are independent, so that row r of
 * every value with the batch dim `?` depends only on row r of the inputs.
 * Calibration then runs more samples at once through compiled code than the
 * --calib-batch its observers see at a time (calibrate.c, api/jiteval.c),
 * with the same bits.
 *
 * The test is conservative and per node: every value carries `?` at most
 * once and only as its first dim, a result has it when an operand has, and
 * the op is one of those below that never combine two positions of their
 * first axis, under the rule its row gives (softmax not over axis 0;
 * norms and matmul over inputs of rank 2 at least, where the first axis is
 * not the one reduced). Any other op (the dynamic and per-tensor run-time
 * quantizations among them) makes the answer no. */
#include "passes.h"

enum { NO = 0, ROWS, RANK2, NOT_AXIS0 };

static const unsigned char rule[IR_OP_COUNT] = {
    [IR_OP_LINEAR] = ROWS,     [IR_OP_ADD] = ROWS,         [IR_OP_MUL] = ROWS,
    [IR_OP_SUB] = ROWS,        [IR_OP_DIV] = ROWS,         [IR_OP_RELU] = ROWS,
    [IR_OP_GELU] = ROWS,       [IR_OP_SIGMOID] = ROWS,     [IR_OP_TANH] = ROWS,
    [IR_OP_SILU] = ROWS,       [IR_OP_GATHER] = ROWS,      [IR_OP_CONCAT] = ROWS,
    [IR_OP_SLICE] = ROWS,      [IR_OP_RESHAPE] = ROWS,     [IR_OP_TRANSPOSE] = ROWS,
    [IR_OP_QUANTIZE] = ROWS,   [IR_OP_DEQUANTIZE] = ROWS,  [IR_OP_QLINEAR] = ROWS,
    [IR_OP_QGEMM] = ROWS,      [IR_OP_LAYERNORM] = RANK2,  [IR_OP_RMSNORM] = RANK2,
    [IR_OP_MATMUL] = RANK2,    [IR_OP_QMATMUL] = RANK2,    [IR_OP_SOFTMAX] = NOT_AXIS0,
};

/* 1 when t has `?` as its first dim only, 0 when it has none, -1 when it
 * has it elsewhere or more than once. */
static int batch_first(const IrType *t) {
  int found = 0;
  for (int d = 0; d < t->rank; d++)
    if (t->dims[d] == IR_DIM_BATCH) {
      if (d > 0)
        return -1;
      found = 1;
    }
  return found;
}

static bool node_rowwise(const IrNode *n) {
  int r = rule[n->op], res = batch_first(&n->result->type);
  if (r == NO || res < 0)
    return false;
  bool any = false;
  for (int i = 0; i < n->nopnds; i++) {
    int b = batch_first(&n->opnds[i]->type);
    if (b < 0 || (b && r != ROWS && n->opnds[i]->type.rank < 2))
      return false;
    any |= b;
  }
  if (any != (res == 1))
    return false;
  if (r == NOT_AXIS0 && any) {
    int64_t rank = n->opnds[0]->type.rank, axis = ir_attr_int(n, IR_ATTR_AXIS, -1);
    if ((axis < 0 ? axis + rank : axis) == 0)
      return false;
  }
  return true;
}

bool pass_rows_independent(const IrModule *m) {
  for (int i = 0; i < m->ninputs; i++)
    if (batch_first(&m->inputs[i]->type) < 0)
      return false;
  for (int i = 0; i < m->nnodes; i++)
    if (!node_rowwise(m->nodes[i]))
      return false;
  return true;
}
