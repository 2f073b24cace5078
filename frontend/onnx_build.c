/* onnx_build.c: the one place where the ONNX importer calls ir/ir.h's
 * builder functions (ir_module_new, ir_add_input, ir_add_const, ir_add_node,
 * ir_node_set_attr, ir_infer_type, ir_add_output, ir_remove_dead,
 * ir_verify), so that a change of that API is adapted here alone. onnx.c
 * works on ONNX names and host tensors and asks this file for IR values.
 *
 * Names are made unique here, with a hash set per namespace (values and
 * constants), like ir_unique_name (`base`, `base.1`, ...) but in constant
 * time, so that a graph of 100k nodes imports in linear time. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "onnx_internal.h"

static size_t hash_name(const char *s) {
  size_t h = 14695981039346656037u;
  for (; *s; s++)
    h = (h ^ (unsigned char)*s) * 1099511628211u;
  return h;
}

static bool set_has(const ObNames *t, const char *s) {
  if (!t->cap)
    return false;
  for (size_t i = hash_name(s) & (t->cap - 1); t->keys[i]; i = (i + 1) & (t->cap - 1))
    if (strcmp(t->keys[i], s) == 0)
      return true;
  return false;
}

static void set_put(IrArena *a, ObNames *t, const char *s) {
  if (2 * (t->count + 1) > t->cap) {
    size_t cap = t->cap ? 2 * t->cap : 256;
    const char **keys = ir_alloc(a, cap * sizeof *keys);
    for (size_t i = 0; i < t->cap; i++)
      if (t->keys[i]) {
        size_t j = hash_name(t->keys[i]) & (cap - 1);
        while (keys[j])
          j = (j + 1) & (cap - 1);
        keys[j] = t->keys[i];
      }
    t->keys = keys;
    t->cap = cap;
  }
  size_t i = hash_name(s) & (t->cap - 1);
  while (t->keys[i])
    i = (i + 1) & (t->cap - 1);
  t->keys[i] = s;
  t->count++;
}

/* `base`, or `base.1`, `base.2`, ...: the first not yet taken, now taken. */
static const char *unique(IrModule *m, ObNames *t, const char *base) {
  const char *name = base;
  if (set_has(t, base)) {
    size_t len = strlen(base) + 24;
    char *buf = ir_alloc(m->arena, len);
    for (int i = 1;; i++) {
      snprintf(buf, len, "%s.%d", base, i);
      if (!set_has(t, buf))
        break;
    }
    name = buf;
  } else {
    name = ir_strdup(m->arena, base);
  }
  set_put(m->arena, t, name);
  return name;
}

IrModule *ob_begin(ObBuild *b, const char *name) {
  memset(b, 0, sizeof *b);
  return b->m = ir_module_new(name);
}

IrValue *ob_input(ObBuild *b, const char *name, const IrType *type) {
  return ir_add_input(b->m, unique(b->m, &b->values, name), *type, (IrLoc){0});
}

IrValue *ob_const(ObBuild *b, const char *base, const HTensor *t) {
  IrType type = {.rank = t->rank};
  memcpy(type.dims, t->dims, sizeof(int64_t) * (size_t)t->rank);
  switch (t->dt) {
  case H_F32: type.dtype = IR_F32; break;
  case H_I8: type.dtype = IR_I8; break;
  case H_U8: type.dtype = IR_U8; break;
  case H_I32: type.dtype = IR_I32; break;
  case H_I64: type.dtype = IR_I64; break;
  }
  /* An f32 scalar (not NaN, which the text has no spelling for) is a
   * literal, printed as its number: `mul %x, -10000`, as hand-written IR
   * would have it. */
  if (t->dt == H_F32 && t->rank == 0 && !isnan(*(const float *)t->data)) {
    char name[32];
    snprintf(name, sizeof name, "lit.%d", b->nliterals++);
    IrValue *c = ir_add_const(b->m, unique(b->m, &b->consts, name), type, t->data, (IrLoc){0});
    c->literal = true;
    return c;
  }
  return ir_add_const(b->m, unique(b->m, &b->consts, base), type, t->data, (IrLoc){0});
}

IrValue *ob_node(ObBuild *b, IrOp op, const char *result_base, IrValue **opnds, int nopnds,
                 const BAttr *attrs, int nattrs) {
  IrModule *m = b->m;
  IrNode *n = ir_add_node(m, op, unique(m, &b->values, result_base), opnds, nopnds, (IrLoc){0});
  for (int i = 0; i < nattrs; i++)
    ir_node_set_attr(m, n, attrs[i].key, attrs[i].v, attrs[i].n, (IrLoc){0});
  IrType t;
  if (!ir_infer_type(m, n, &t))
    return NULL;
  n->result->type = t;
  return n->result;
}

void ob_output(ObBuild *b, IrValue *v) { ir_add_output(b->m, v, (IrLoc){0}); }

bool ob_finish(ObBuild *b) {
  ir_remove_dead(b->m);
  return ir_verify(b->m);
}
