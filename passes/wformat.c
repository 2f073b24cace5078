/* wformat.c: the weight formats in the quantize pass: which format each
 * weight has (--weights, overridden per weight by --weights-for, which
 * also wins over the 4-bit --weights=nf4:G / fp4:G), and the
 * rewrite of a linear whose weight has a grouped format into qlinear_grp
 * (docs/quantization.md, "Weight formats"). A grouped layer quantizes its
 * activations per row at run time, so calibration leaves it alone. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "passes.h"

/* Walk "@name:FORMAT[,@name:FORMAT]": each item's name and format. False
 * with a message on the first malformed one. */
typedef bool ItemFn(const char *name, size_t nlen, const char *fmt, size_t flen, void *user);

static bool walk(const char *list, ItemFn *fn, void *user, char *err, size_t errlen) {
  const char *p = list;
  while (*p) {
    const char *end = strchr(p, ',');
    size_t len = end ? (size_t)(end - p) : strlen(p);
    const char *colon = memchr(p, ':', len);
    if (p[0] != '@' || !colon || colon == p + 1 || colon == p + len - 1) {
      if (err)
        snprintf(err, errlen, "--weights-for takes @WEIGHT:FORMAT[,@WEIGHT:FORMAT], not '%.*s'",
                 (int)len, p);
      return false;
    }
    if (fn(p + 1, (size_t)(colon - p - 1), colon + 1, (size_t)(p + len - colon - 1), user))
      return true;
    p += len + (end ? 1 : 0);
  }
  return true;
}

typedef struct {
  char *err;
  size_t errlen;
  bool bad;
} Check;

static bool check_item(const char *name, size_t nlen, const char *fmt, size_t flen, void *user) {
  Check *c = user;
  IrWSpec s;
  char why[400];
  if (ir_wspec_parse(fmt, (long)flen, &s, why, sizeof why))
    return false;
  snprintf(c->err, c->errlen, "--weights-for @%.*s: %s", (int)nlen, name, why);
  c->bad = true;
  return true;
}

bool pass_weights_for_check(const char *v, char *err, size_t errlen) {
  Check c = {err, errlen, false};
  return walk(v, check_item, &c, err, errlen) && !c.bad;
}

typedef struct {
  const char *want;
  IrWSpec spec;
  bool found;
} Find;

static bool find_item(const char *name, size_t nlen, const char *fmt, size_t flen, void *user) {
  Find *f = user;
  if (strlen(f->want) != nlen || strncmp(f->want, name, nlen) != 0)
    return false;
  char why[400];
  f->found = ir_wspec_parse(fmt, (long)flen, &f->spec, why, sizeof why);
  return f->found; /* the last valid one would do too; options checked them */
}

/* The --weights-for entry of `weight`, if it has one. */
static bool weight_for(const PassOptions *o, const char *weight, IrWSpec *spec) {
  if (!o->weights_for)
    return false;
  Find f = {weight, {0}, false};
  walk(o->weights_for, find_item, &f, NULL, 0);
  if (f.found)
    *spec = f.spec;
  return f.found;
}

bool pass_weight_overridden(const PassOptions *o, const char *weight) {
  IrWSpec s;
  return weight_for(o, weight, &s);
}

IrWSpec pass_weight_spec(const PassOptions *o, const char *weight) {
  IrWSpec s;
  if (weight_for(o, weight, &s))
    return s;
  s = o->weights_spec;
  if (o->weights_per_tensor)
    s.id = IR_WF_S8_TENSOR;
  return s;
}

bool pass_node_grouped(const IrModule *m, const IrNode *n, const PassOptions *o) {
  bool fits;
  if (pass_is_act_matmul(n, &fits) || !pass_is_quantizable(m, n, o))
    return false;
  IrWSpec s = pass_weight_spec(o, n->opnds[1]->name);
  return ir_wformat_info[s.id].grouped;
}

/* `@W.q`, `@W.scale` and (asymmetric) `@W.zero` in spec's format, made once
 * per weight. */
static bool group_consts(IrModule *m, const PassOptions *o, IrNode *n, const IrWSpec *spec,
                         IrValue **wq_out, IrValue **ws_out, IrValue **wz_out) {
  const IrValue *w = n->opnds[1];
  const IrWFormatInfo *f = &ir_wformat_info[spec->id];
  char base[512], qname[600], sname[600], zname[600];
  snprintf(base, sizeof base, "%s%s", w->name, n->op == IR_OP_MATMUL ? ".T" : "");
  snprintf(qname, sizeof qname, "%s.q", base);
  snprintf(sname, sizeof sname, "%s.scale", base);
  snprintf(zname, sizeof zname, "%s.zero", base);
  int64_t nn, k;
  const float *wf = pass_weight_nk(m, n, &nn, &k);
  int64_t ng = k / spec->group;
  IrValue *wq = ir_find_const(m, qname), *ws = ir_find_const(m, sname);
  IrValue *wz = f->zero ? ir_find_const(m, zname) : NULL;
  if (wq && ws && (wz || !f->zero) && ws->type.rank == 2 && ws->type.dims[1] == ng) {
    *wq_out = wq;
    *ws_out = ws;
    *wz_out = wz;
    return true;
  }
  for (int64_t i = 0; i < nn * k; i++)
    if (!isfinite(wf[i]))
      return ir_error(&m->diag, n->opnds[1]->loc, "quantize: weight @%s holds %s values",
                      w->name, isnan(wf[i]) ? "NaN" : "infinite");
  int8_t *q = ir_alloc_data(m->arena, (size_t)(nn * k));
  float *s = ir_alloc_data(m->arena, (size_t)(nn * ng) * sizeof *s);
  int8_t *z = f->zero ? ir_alloc_data(m->arena, (size_t)(nn * ng)) : NULL;
  if (!q || !s || (f->zero && !z))
    return ir_error(&m->diag, n->loc, "out of memory quantizing @%s", w->name);
  int64_t empty = ir_quantize_groups(wf, nn, k, spec, q, s, z);
  if (empty)
    pass_note(o, "quantize: @%s has %lld all-zero group%s (scale 1)", w->name, (long long)empty,
              empty == 1 ? "" : "s");
  IrType qt = {IR_I8, 2, {nn, k}}, st = {IR_F32, 2, {nn, ng}}, zt = {IR_I8, 2, {nn, ng}};
  *wq_out = ir_add_const(m, ir_unique_const_name(m, qname), qt, q, w->loc);
  *ws_out = ir_add_const(m, ir_unique_const_name(m, sname), st, s, w->loc);
  *wz_out = f->zero ? ir_add_const(m, ir_unique_const_name(m, zname), zt, z, w->loc) : NULL;
  return true;
}

bool pass_quantize_grouped(IrModule *m, const PassOptions *o, IrNode *n, IrNode **out,
                           int *nout, bool *done) {
  *done = false;
  IrWSpec spec = pass_weight_spec(o, n->opnds[1]->name);
  int64_t nn, k;
  pass_weight_nk(m, n, &nn, &k);
  if (k % spec.group != 0) {
    char fs[64];
    ir_wspec_str(&spec, fs, sizeof fs);
    pass_note(o, "quantize: @%s has K = %lld inputs, not a multiple of the group of %s: it is "
              "quantized s8-per-channel, its activations per row (qlinear_dyn)",
              n->opnds[1]->name, (long long)k, fs);
    return true;
  }
  IrValue *wq, *ws, *wz;
  if (!group_consts(m, o, n, &spec, &wq, &ws, &wz))
    return false;
  IrValue *bias = n->op == IR_OP_LINEAR && n->nopnds == 3 ? n->opnds[2] : NULL;
  IrValue *ops[5];
  int nops = 0;
  ops[nops++] = n->opnds[0];
  ops[nops++] = wq;
  ops[nops++] = ws;
  if (wz)
    ops[nops++] = wz;
  if (bias)
    ops[nops++] = bias;
  IrNode *d = ir_new_node(m, IR_OP_QLINEAR_GRP, n->result, NULL, ops, nops, n->loc);
  ir_set_attr_int(m, d, IR_ATTR_GROUP, spec.group);
  ir_set_attr_int(m, d, IR_ATTR_WBITS, ir_wformat_info[spec.id].bits);
  ir_set_attr_int(m, d, IR_ATTR_SBITS, spec.scale_bits);
  ir_copy_attr(m, n, d, IR_ATTR_RANGE);
  out[(*nout)++] = d;
  *done = true;
  return true;
}

double pass_layer_bits_per_weight(const IrNode *n, int64_t *bytes) {
  const IrValue *w = n->opnds[1];
  int64_t nn = w->type.dims[0], k = w->type.dims[1];
  if (nn <= 0 || k <= 0)
    return 0;
  if (n->op == IR_OP_QLINEAR_GRP) {
    int64_t g = ir_attr_int(n, IR_ATTR_GROUP, 1), wbits = ir_attr_int(n, IR_ATTR_WBITS, 8);
    int64_t sbits = ir_attr_int(n, IR_ATTR_SBITS, 32);
    bool zero = n->nopnds > 3 && n->opnds[3]->type.dtype == IR_I8;
    int64_t bits = nn * k * wbits + nn * (k / g) * (sbits + (zero ? wbits : 0));
    if (bytes)
      *bytes = bits / 8 + (zero && bits % 8 ? 1 : 0) + (n->nopnds > (zero ? 4 : 3) ? nn * 4 : 0);
    return (double)bits / (double)(nn * k);
  }
  /* The int8 layers: one byte a weight and one f32 scale per scale value. */
  int64_t scales = n->nopnds > 2 ? n->opnds[n->op == IR_OP_QGEMM ? 3 : 2]->type.dims[0] : 0;
  if (bytes)
    *bytes = -1;
  return 8.0 + 32.0 * (double)scales / (double)(nn * k);
}
