/* constdata.c: constants held in their stored form. A weight read from a
 * mapped safetensors file need not exist in f32 for the whole compile: the
 * constant is a view of the file's bytes (IrConstView), ir_const_data makes
 * its f32 form when something reads it and ir_const_release lets it go, so
 * that a pass working one weight at a time (quantize) holds one f32 tensor,
 * never all of them. Every reader of constant data goes through
 * ir_const_data; the module counts the bytes of the f32 forms alive
 * (IrModule.view_bytes and its peak). docs/ir.md, "Constants in their
 * stored form". */
#include <stdlib.h>
#include <string.h>

#include "ir.h"

static float f32_from_bits(uint32_t bits) {
  float f;
  memcpy(&f, &bits, sizeof f);
  return f;
}

/* IEEE half to single, exactly: every half value is a single value. */
static float f16_to_f32(uint16_t h) {
  uint32_t sign = (uint32_t)(h & 0x8000) << 16;
  uint32_t exp = (h >> 10) & 0x1F, mant = h & 0x3FF;
  if (exp == 0x1F) /* inf, or nan with its payload */
    return f32_from_bits(sign | 0x7F800000u | mant << 13);
  if (exp != 0) /* rebias the exponent from 15 to 127 */
    return f32_from_bits(sign | (exp + 112) << 23 | mant << 13);
  if (mant == 0)
    return f32_from_bits(sign);
  /* A half subnormal is a normal single: shift the leading 1 into the
   * implicit bit, lowering the exponent from that of 2^-14 once per shift. */
  uint32_t e = 113;
  while (!(mant & 0x400)) {
    mant <<= 1;
    e--;
  }
  return f32_from_bits(sign | e << 23 | (mant & 0x3FF) << 13);
}

void ir_widen_f32(IrStored stored, const void *src, size_t n, float *dst) {
  const unsigned char *p = src;
  switch (stored) {
  case IR_STORED_F32:
    for (size_t i = 0; i < n; i++)
      dst[i] = f32_from_bits((uint32_t)p[4 * i] | (uint32_t)p[4 * i + 1] << 8 |
                             (uint32_t)p[4 * i + 2] << 16 | (uint32_t)p[4 * i + 3] << 24);
    break;
  case IR_STORED_F16:
    for (size_t i = 0; i < n; i++)
      dst[i] = f16_to_f32((uint16_t)(p[2 * i] | p[2 * i + 1] << 8));
    break;
  case IR_STORED_BF16: /* bf16 is the top half of an f32 */
    for (size_t i = 0; i < n; i++)
      dst[i] = f32_from_bits((uint32_t)p[2 * i] << 16 | (uint32_t)p[2 * i + 1] << 24);
    break;
  }
}

/* The arena frees a view's f32 form with the module. */
static void free_view(void *arg) {
  IrConstView *view = arg;
  free(view->buf);
  view->buf = NULL;
}

size_t ir_stored_size(IrStored stored) { return stored == IR_STORED_F32 ? 4 : 2; }

IrValue *ir_add_const_view(IrModule *m, const char *name, IrType type, const void *src,
                           IrStored stored, void (*drop_src)(const void *, size_t), IrLoc loc) {
  IrConstView *view = ir_alloc(m->arena, sizeof *view);
  int64_t numel = 0;
  ir_type_numel(&type, 1, &numel);
  *view = (IrConstView){src, stored, (size_t)numel, NULL, drop_src};
  ir_arena_defer(m->arena, free_view, view);
  IrValue *v = ir_add_const(m, name, type, NULL, loc);
  v->view = view;
  return v;
}

const void *ir_const_data(IrModule *m, const IrValue *v) {
  IrConstView *view = v->view;
  if (!view || view->buf || view->numel == 0)
    return view ? view->buf : v->data;
  size_t bytes = view->numel * sizeof(float);
  float *buf = malloc(bytes);
  if (!buf)
    ir_throw_nomem(m->arena, bytes);
  ir_widen_f32(view->stored, view->src, view->numel, buf);
  if (view->drop_src)
    view->drop_src(view->src, view->numel * ir_stored_size(view->stored));
  view->buf = buf;
  m->view_bytes += bytes;
  if (m->view_bytes > m->view_bytes_peak)
    m->view_bytes_peak = m->view_bytes;
  return buf;
}

void ir_const_release(IrModule *m, const IrValue *v) {
  IrConstView *view = v->view;
  if (!view || !view->buf)
    return;
  free(view->buf);
  view->buf = NULL;
  m->view_bytes -= view->numel * sizeof(float);
}

bool ir_const_has_data(const IrValue *v) { return v->data || v->view; }

bool ir_pin_non_weights(IrModule *m) {
  int count = ir_number_values(m);
  bool *weight = calloc((size_t)count + 1, sizeof *weight);
  if (!weight)
    ir_throw_nomem(m->arena, (size_t)count + 1);
  for (int i = 0; i < m->nnodes; i++) {
    const IrNode *n = m->nodes[i];
    if ((n->op == IR_OP_LINEAR || n->op == IR_OP_MATMUL) && n->nopnds > 1 &&
        n->opnds[1]->kind == IR_VAL_CONST)
      weight[n->opnds[1]->id] = true;
  }
  bool ok = true;
  for (int i = 0; ok && i < m->nconsts; i++) {
    IrValue *v = m->consts[i];
    if (!v->view || weight[v->id])
      continue;
    size_t bytes = v->view->numel * sizeof(float);
    float *data = ir_alloc_data(m->arena, bytes + 1);
    if (!data) {
      ok = ir_error(&m->diag, v->loc, "out of memory for the %zu bytes of @%s", bytes, v->name);
      break;
    }
    ir_widen_f32(v->view->stored, v->view->src, v->view->numel, data);
    if (v->view->drop_src)
      v->view->drop_src(v->view->src, v->view->numel * ir_stored_size(v->view->stored));
    ir_const_release(m, v);
    v->data = data;
    v->view = NULL;
  }
  free(weight);
  return ok;
}
