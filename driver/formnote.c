/* formnote.c: the note that AVX2 runs some int8 GEMMs in its slow form.
 * AVX2 without VNNI multiplies with vpmaddubsw, whose int16 sum of two
 * u8 x s8 products can saturate; a layer whose weight pairs could (8-bit
 * weights usually can) takes the widened vpmaddwd form instead, at about
 * half the speed, and so does every qmatmul of run-time operands
 * (codegen/x86/qgemm.c, choose_form; qmatmul_dyn, whose right operand stays
 * 8-bit, is not counted). --reduce-range (7-bit weights) lets
 * every one take vpmaddubsw; the note says how many layers it would move
 * when the best variant compiled is that form and the option is off. The
 * count takes any input byte (the kernel may know a narrower range and
 * pick vpmaddubsw anyway): it says "up to". */
#include <stdio.h>

#include "../codegen/codegen.h"
#include "driver.h"

void driver_form_note(const IrModule *m, int best_isa, const PassOptions *po) {
  if (po->reduce_range || best_isa < 0 || best_isa >= CG_ISA_COUNT ||
      cg_isa_info[best_isa].form != CG_FORM_MADDUBS)
    return;
  int widened = 0, gemms = 0;
  for (int i = 0; i < m->nnodes; i++) {
    const IrNode *n = m->nodes[i];
    if (n->op == IR_OP_QMATMUL) {
      gemms++;
      widened += ir_attr_int(n, IR_ATTR_B_BITS, 8) != 7;
    } else if (n->op == IR_OP_QGEMM || n->op == IR_OP_QLINEAR_DYN) {
      const IrValue *w = n->opnds[1];
      if (w->kind != IR_VAL_CONST || w->type.dtype != IR_I8 || w->type.rank != 2 || !w->data)
        continue;
      gemms++;
      widened += cg_pairs_can_saturate(w->data, w->type.dims[0], w->type.dims[1], 0, 255);
    }
  }
  if (widened)
    fprintf(stderr,
            "q8c: note: %s (no VNNI): up to %d of %d int8 GEMMs run the widened vpmaddwd form "
            "(their 8-bit weight pairs could saturate vpmaddubsw), about half its speed; "
            "--reduce-range (7-bit weights) gives them vpmaddubsw at some accuracy "
            "(docs/quantization.md, \"Reduced range\")\n",
            cg_isa_info[best_isa].name, widened, gemms);
}
