/* printer.c: the module as text IR, in the syntax docs/ir.md specifies and
 * the parser reads back to the same graph (the round trip the golden tests
 * check after every pass).
 *
 * Every result is printed with its type, so a printed module documents the
 * shapes inference found. Numbers are printed in the shortest form that reads
 * back as the same double, so attributes such as calibrated ranges survive a
 * dump and reload bit for bit. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ir.h"

typedef struct {
  char *buf;
  size_t len, cap;
  bool oom;
} Out;

static void put(Out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void put(Out *o, const char *fmt, ...) {
  if (o->oom)
    return;
  for (;;) {
    va_list ap;
    va_start(ap, fmt);
    /* Before the first allocation buf is NULL, and NULL + 0 is undefined. */
    int n = vsnprintf(o->buf ? o->buf + o->len : NULL, o->cap - o->len, fmt, ap);
    va_end(ap);
    if (n < 0) {
      o->oom = true;
      return;
    }
    if ((size_t)n < o->cap - o->len) {
      o->len += (size_t)n;
      return;
    }
    size_t cap = (o->cap + (size_t)n + 1) * 2;
    char *p = realloc(o->buf, cap);
    if (!p) {
      o->oom = true;
      return;
    }
    o->buf = p;
    o->cap = cap;
  }
}

/* Does `buf` read back as `v`: exactly, or as the same f32 when v is one? */
static bool reads_back(const char *buf, double v, bool as_float) {
  double r = strtod(buf, NULL);
  return as_float ? (float)r == (float)v : r == v;
}

void ir_format_double(double v, char *buf, size_t size) {
  /* Values that are f32 (scales, calibrated ranges) print as the shortest
   * decimal of that f32, so dumps read 0.026966326 rather than
   * 0.02696632593870163; every consumer converts them to f32 again. */
  bool as_float = isfinite(v) && (double)(float)v == v;
  double mag = fabs(v);
  if (v == 0 || (mag >= 1e-5 && mag < 1e15)) {
    for (int decimals = 0; decimals <= 40; decimals++) {
      snprintf(buf, size, "%.*f", decimals, v);
      if (reads_back(buf, v, as_float))
        return;
    }
  }
  for (int prec = 1; prec <= 17; prec++) {
    snprintf(buf, size, "%.*g", prec, v);
    if (reads_back(buf, v, as_float))
      return;
  }
}

static void put_type(Out *o, const IrType *t) {
  char b[160];
  put(o, "%s", ir_type_str(t, b, sizeof b));
}

static void put_attr(Out *o, const IrAttr *a) {
  char num[40];
  put(o, "%s = ", ir_attr_info[a->key].key);
  switch (ir_attr_info[a->key].kind) {
  case IR_AKIND_FLOAT:
    ir_format_double(a->vals[0], num, sizeof num);
    put(o, "%s", num);
    return;
  case IR_AKIND_INT:
    put(o, "%lld", (long long)a->vals[0]);
    return;
  case IR_AKIND_DTYPE:
    put(o, "%s", ir_dtype_name((IrDType)a->vals[0]));
    return;
  case IR_AKIND_RANGE:
  case IR_AKIND_INTS:
  case IR_AKIND_DIMS:
    put(o, "[");
    for (int i = 0; i < a->n; i++) {
      if (ir_attr_info[a->key].kind == IR_AKIND_RANGE)
        ir_format_double(a->vals[i], num, sizeof num);
      else if (a->vals[i] == (double)IR_DIM_BATCH && ir_attr_info[a->key].kind == IR_AKIND_DIMS)
        snprintf(num, sizeof num, "?");
      else
        snprintf(num, sizeof num, "%lld", (long long)a->vals[i]);
      put(o, "%s%s", i ? ", " : "", num);
    }
    put(o, "]");
    return;
  }
}

static void put_string(Out *o, const char *s) {
  put(o, "\"");
  for (; *s; s++)
    put(o, *s == '"' || *s == '\\' ? "\\%c" : "%c", *s);
  put(o, "\"");
}

/* An input's range and quantized form, an output's quantized form. */
static void put_decl_attrs(Out *o, const IrValue *v, bool input) {
  IrAttr a[4];
  int n = 0;
  double scale = v->qform.scale, zp = v->qform.zero_point, dtype = v->qform.dtype;
  if (input && v->has_range)
    a[n++] = (IrAttr){IR_ATTR_RANGE, 2, (double *)v->range, v->loc};
  if (v->has_qform) {
    a[n++] = (IrAttr){IR_ATTR_SCALE, 1, &scale, v->qform_loc};
    a[n++] = (IrAttr){IR_ATTR_ZERO_POINT, 1, &zp, v->qform_loc};
    a[n++] = (IrAttr){IR_ATTR_DTYPE, 1, &dtype, v->qform_loc};
  }
  for (int i = 0; i < n; i++) {
    put(o, i ? ", " : " {");
    put_attr(o, &a[i]);
  }
  if (n)
    put(o, "}");
}

static void put_node(Out *o, const IrNode *n) {
  put(o, "  %%%s : ", n->result->name);
  put_type(o, &n->result->type);
  put(o, " = %s", ir_op_info[n->op].name);
  for (int i = 0; i < n->nopnds; i++)
    put(o, "%s%s%s", i ? ", " : " ", n->opnds[i]->kind == IR_VAL_CONST ? "@" : "%",
        n->opnds[i]->name);
  if (n->nattrs) {
    put(o, " {");
    for (int i = 0; i < n->nattrs; i++) {
      if (i)
        put(o, ", ");
      put_attr(o, &n->attrs[i]);
    }
    put(o, "}");
  }
  put(o, "\n");
}

char *ir_print(const IrModule *m) {
  Out o = {0};
  put(&o, "model %s {\n", m->name);
  for (int i = 0; i < m->nweights; i++) {
    put(&o, "  weights ");
    put_string(&o, m->weights[i].path);
    put(&o, "\n");
  }
  if (m->nweights)
    put(&o, "\n");
  for (int i = 0; i < m->ninputs; i++) {
    const IrValue *in = m->inputs[i];
    put(&o, "  input %%%s : ", in->name);
    put_type(&o, &in->type);
    put_decl_attrs(&o, in, true);
    put(&o, "\n");
  }
  for (int i = 0; i < m->nnodes; i++)
    put_node(&o, m->nodes[i]);
  for (int i = 0; i < m->noutputs; i++) {
    put(&o, "  output %%%s", m->outputs[i]->name);
    if (m->outputs[i]->kind != IR_VAL_INPUT)
      put_decl_attrs(&o, m->outputs[i], false);
    put(&o, "\n");
  }
  put(&o, "}\n");
  if (o.oom) {
    free(o.buf);
    return NULL;
  }
  return o.buf;
}
