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

typedef SupBuf Out;

static void put(Out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void put(Out *o, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  sup_buf_vprintf(o, fmt, ap);
  va_end(ap);
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

static void put_type(Out *o, const IrModule *m, const IrType *t) {
  char b[160];
  put(o, "%s", ir_type_str_named(m, t, b, sizeof b));
}

static void put_double(Out *o, double v) {
  char num[40];
  ir_format_double(v, num, sizeof num);
  put(o, "%s", num);
}

static void put_range(Out *o, double lo, double hi) {
  put(o, "[");
  put_double(o, lo);
  put(o, ", ");
  put_double(o, hi);
  put(o, "]");
}

/* `key = value`, the value read through the accessor of the key's kind. */
static void put_attr(Out *o, const IrModule *m, const IrNode *n, IrAttrKey key) {
  put(o, "%s = ", ir_attr_info[key].key);
  switch (ir_attr_info[key].kind) {
  case IR_AKIND_FLOAT:
    put_double(o, ir_attr_float(n, key, 0));
    return;
  case IR_AKIND_INT:
    put(o, "%lld", (long long)ir_attr_int(n, key, 0));
    return;
  case IR_AKIND_DTYPE:
    put(o, "%s", ir_dtype_name(ir_attr_dtype(n, key, IR_DTYPE_NONE)));
    return;
  case IR_AKIND_NAME:
    put(o, "%s", ir_attr_name_str(key, ir_attr_name(n, key, -1)));
    return;
  case IR_AKIND_RANGE: {
    double lo = 0, hi = 0;
    ir_attr_range(n, key, &lo, &hi);
    put_range(o, lo, hi);
    return;
  }
  case IR_AKIND_INTS:
  case IR_AKIND_DIMS: {
    int64_t v[IR_MAX_RANK];
    int count = ir_attr_ints(n, key, v, IR_MAX_RANK);
    bool dims = ir_attr_info[key].kind == IR_AKIND_DIMS;
    if (dims) {
      char b[256];
      put(o, "%s", ir_dims_str_named(m, v, count < IR_MAX_RANK ? count : IR_MAX_RANK, b, sizeof b));
      return;
    }
    put(o, "[");
    for (int i = 0; i < count && i < IR_MAX_RANK; i++)
      put(o, "%s%lld", i ? ", " : "", (long long)v[i]);
    put(o, "]");
    return;
  }
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
  const char *sep = " {";
  if (input && v->has_range) {
    put(o, "%srange = ", sep);
    put_range(o, v->range[0], v->range[1]);
    sep = ", ";
  }
  if (v->has_qform) {
    put(o, "%sscale = ", sep);
    put_double(o, v->qform.scale);
    put(o, ", zero_point = %lld, dtype = %s", (long long)v->qform.zero_point,
        ir_dtype_name(v->qform.dtype));
    sep = ", ";
  }
  if (sep[0] == ',')
    put(o, "}");
}

static void put_node(Out *o, const IrModule *m, const IrNode *n) {
  put(o, "  %%%s : ", n->result->name);
  put_type(o, m, &n->result->type);
  put(o, " = %s", ir_op_info[n->op].name);
  for (int i = 0; i < n->nopnds; i++) {
    const IrValue *v = n->opnds[i];
    if (v->literal && v->data) {
      /* A number operand reads back as the same f32 constant. */
      put(o, "%s", i ? ", " : " ");
      put_double(o, *(const float *)v->data);
    } else {
      put(o, "%s%s%s", i ? ", " : " ", v->kind == IR_VAL_CONST ? "@" : "%", v->name);
    }
  }
  if (n->nattrs) {
    put(o, " {");
    for (int i = 0; i < n->nattrs; i++) {
      if (i)
        put(o, ", ");
      put_attr(o, m, n, n->attrs[i].key);
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
    put_type(&o, m, &in->type);
    put_decl_attrs(&o, in, true);
    put(&o, "\n");
  }
  for (int i = 0; i < m->nnodes; i++)
    put_node(&o, m, m->nodes[i]);
  for (int i = 0; i < m->noutputs; i++) {
    put(&o, "  output %%%s", m->outputs[i]->name);
    if (m->outputs[i]->kind != IR_VAL_INPUT)
      put_decl_attrs(&o, m->outputs[i], false);
    put(&o, "\n");
  }
  put(&o, "}\n");
  return sup_buf_take(&o);
}
