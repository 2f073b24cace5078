/* parser.c: text IR to IrModule, by recursive descent over the grammar in
 * docs/ir.md:
 *
 *   file      := 'model' NAME '{' item* '}'
 *   item      := 'weights' STRING
 *              | 'input' LOCAL ':' type [attrs]
 *              | 'output' LOCAL [attrs] (',' LOCAL [attrs])*
 *              | LOCAL [':' type] '=' OP operand (',' operand)* [attrs]
 *   operand   := LOCAL | GLOBAL | NUMBER        (a literal f32 scalar)
 *   attrs     := '{' [KEY '=' value (',' KEY '=' value)*] '}'
 *   type      := DTYPE '[' [dim (',' dim)*] ']'      dim := INT | '?' | NAME
 *
 * Each statement is checked as soon as it is read: weights files are loaded at
 * their directive, `@names` are resolved against them, and each node's result
 * type is inferred on the spot, so the first error reported is the first one
 * in the file, at the token that causes it. */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "frontend.h"

/* Names are looked up in hash tables, so that parsing stays linear in the
 * size of the input (a linear scan per statement made a 20k-line model take
 * 20 seconds): values and constants in the module's name table
 * (ir_find_value, ir_find_const), the tensors of each weights file in a
 * SupMap. */
typedef struct {
  const char *path;       /* as written */
  FeTensorSet set;
  SupMap tensors;         /* set's tensors by name (malloc'd: freed at the end) */
} LoadedWeights;

typedef struct {
  FeLexer lx;
  FeToken tok;            /* current token */
  IrModule *m;
  IrDiag *diag;
  LoadedWeights *loaded;  /* parallel to m->weights */
  int nloaded;
  int nliterals;          /* literal operands so far, for their names */
  const FeDims *dims;     /* --dim NAME=N: named dims bound to numbers, or NULL */
  bool plain_batch;       /* a shape with `?` and no name was read */
} Parser;

static IrValue *find_value(const Parser *p, const char *name) { return ir_find_value(p->m, name); }

static bool next(Parser *p) { return fe_lex_next(&p->lx, &p->tok); }

static bool is_punct(const Parser *p, char c) {
  return p->tok.kind == FE_TK_PUNCT && p->tok.text[0] == c;
}

static bool is_word(const Parser *p, const char *w) {
  return p->tok.kind == FE_TK_IDENT && (int)strlen(w) == p->tok.len &&
         memcmp(p->tok.text, w, (size_t)p->tok.len) == 0;
}

/* How the current token reads in "expected X, found Y". */
static const char *found(const Parser *p, char *buf, size_t size) {
  const FeToken *t = &p->tok;
  switch (t->kind) {
  case FE_TK_EOF:
    return "end of file";
  case FE_TK_LOCAL:
    snprintf(buf, size, "'%%%.*s'", t->len > 40 ? 40 : t->len, t->text);
    return buf;
  case FE_TK_GLOBAL:
    snprintf(buf, size, "'@%.*s'", t->len > 40 ? 40 : t->len, t->text);
    return buf;
  case FE_TK_STRING:
    snprintf(buf, size, "a string");
    return buf;
  default:
    snprintf(buf, size, "'%.*s'", t->len > 40 ? 40 : t->len, t->text);
    return buf;
  }
}

static bool expected(Parser *p, const char *what) {
  char b[64];
  return ir_error(p->diag, p->tok.loc, "expected %s, found %s", what, found(p, b, sizeof b));
}

static bool expect_punct(Parser *p, char c) {
  char what[8] = {'\'', c, '\'', 0};
  if (!is_punct(p, c))
    return expected(p, what);
  return next(p);
}

static char *tok_str(Parser *p) { return ir_strndup(p->m->arena, p->tok.text, (size_t)p->tok.len); }

/* Levenshtein distance, for "did you mean" hints on misspelt names. */
static int edit_distance(const char *a, int la, const char *b) {
  int lb = (int)strlen(b), row[64];
  if (la >= 63 || lb >= 63)
    return 99;
  for (int j = 0; j <= lb; j++)
    row[j] = j;
  for (int i = 1; i <= la; i++) {
    int diag = row[0];
    row[0] = i;
    for (int j = 1; j <= lb; j++) {
      int up = row[j];
      int cost = a[i - 1] == b[j - 1] ? 0 : 1;
      int best = diag + cost;
      if (up + 1 < best)
        best = up + 1;
      if (row[j - 1] + 1 < best)
        best = row[j - 1] + 1;
      row[j] = best;
      diag = up;
    }
  }
  return row[lb];
}

/* ---- types and attributes ---- */

static bool parse_int(Parser *p, double lo, double hi, const char *what, double *out) {
  if (p->tok.kind != FE_TK_NUMBER)
    return expected(p, what);
  if (!p->tok.is_int || p->tok.num < lo || p->tok.num > hi) {
    char b[64];
    return ir_error(p->diag, p->tok.loc, "expected %s, found %s", what, found(p, b, sizeof b));
  }
  *out = p->tok.num;
  return next(p);
}

/* The model's named prefix as written: "[B, T]". */
static const char *prefix_str(const IrModule *m, char *buf, size_t size) {
  size_t len = (size_t)snprintf(buf, size, "[");
  for (int i = 0; i < m->nnamed && len < size; i++)
    len += (size_t)snprintf(buf + len, size - len, "%s%s", i ? ", " : "", m->named[i]);
  if (len < size)
    snprintf(buf + len, size - len, "]");
  return buf;
}

/* The symbolic dims of one dim list (`?` and unbound names), by position:
 * they must be the model's named prefix (docs/ir.md, "Named dims"): the
 * first list with a name sets it, every later list with a symbolic dim
 * repeats it at its start. Writes IR_DIM_BATCH / IR_DIM_FOLDED into vals. */
static bool check_prefix(Parser *p, const char *const *names, const IrLoc *locs, double *vals,
                         int n) {
  IrModule *m = p->m;
  int nsym = 0, first_named = -1;
  for (int i = 0; i < n; i++)
    if (names[i]) {
      nsym++;
      if (first_named < 0 && strcmp(names[i], "?") != 0)
        first_named = i;
    }
  if (nsym == 0)
    return true;
  if (first_named < 0 && m->nnamed == 0) { /* `?` alone, as always */
    p->plain_batch = true;
    return true;
  }
  char b[160];
  if (m->nnamed == 0) {
    if (p->plain_batch)
      return ir_error(p->diag, locs[first_named],
                      "named dim '%s': an earlier shape has '?' alone; the named dims must "
                      "lead every shape that has a symbolic dim, in one order",
                      names[first_named]);
    for (int i = 0; i < nsym; i++) {
      if (!names[i])
        return ir_error(p->diag, locs[i > 0 ? i - 1 : 0],
                        "named dims must lead the shape (the first %d dims), then numbers", nsym);
      if (i > 0 && strcmp(names[i], "?") == 0)
        return ir_error(p->diag, locs[i], "'?' can only be the first of the named dims");
      for (int j = 0; j < i; j++)
        if (strcmp(names[i], names[j]) == 0)
          return ir_error(p->diag, locs[i], "named dim '%s' appears twice in one shape",
                          names[i]);
      m->named[m->nnamed++] = ir_strdup(m->arena, names[i]);
    }
  }
  for (int i = 0; i < n; i++) {
    bool want = i < m->nnamed;
    if (!want && !names[i])
      continue;
    if (!names[i] || !want || strcmp(names[i], m->named[i]) != 0) {
      IrLoc at = names[i] ? locs[i] : locs[i > 0 ? i - 1 : 0];
      return ir_error(p->diag, at,
                      "the named dims %s lead every shape that has a symbolic dim, in that "
                      "order (a named dim elsewhere, say a KV cache's length, is bound at "
                      "compile time: --dim NAME=N)",
                      prefix_str(m, b, sizeof b));
    }
    vals[i] = (double)(i == 0 ? IR_DIM_BATCH : IR_DIM_FOLDED);
  }
  return true;
}

/* '[' [dim (',' dim)*] ']' where dim is an integer, or '?' or a name when
 * allowed (a name bound by --dim is that number), or -1 (IR_DIM_INFER)
 * when allowed. */
static bool parse_dim_list(Parser *p, bool allow_batch, bool allow_infer, double lo,
                           const char *what, double *vals, int *n) {
  if (!expect_punct(p, '['))
    return false;
  *n = 0;
  const char *names[IR_MAX_RANK] = {0};
  IrLoc locs[IR_MAX_RANK];
  while (!is_punct(p, ']')) {
    if (*n)
      if (!expect_punct(p, ','))
        return false;
    if (*n == IR_MAX_RANK)
      return ir_error(p->diag, p->tok.loc, "more than %d dimensions", IR_MAX_RANK);
    locs[*n] = p->tok.loc;
    if (allow_batch && is_punct(p, '?')) {
      names[*n] = "?";
      vals[(*n)++] = (double)IR_DIM_BATCH;
      if (!next(p))
        return false;
    } else if (allow_batch && p->tok.kind == FE_TK_IDENT) {
      int bound = -1;
      for (int k = 0; p->dims && k < p->dims->n; k++)
        if ((int)strlen(p->dims->name[k]) == p->tok.len &&
            memcmp(p->dims->name[k], p->tok.text, (size_t)p->tok.len) == 0)
          bound = k;
      if (bound >= 0) {
        vals[(*n)++] = (double)p->dims->value[bound];
      } else {
        names[*n] = tok_str(p);
        vals[(*n)++] = (double)IR_DIM_BATCH;
      }
      if (!next(p))
        return false;
    } else if (allow_infer && p->tok.kind == FE_TK_NUMBER && p->tok.is_int && p->tok.num == -1) {
      vals[(*n)++] = (double)IR_DIM_INFER; /* reshape's inferred dim */
      if (!next(p))
        return false;
    } else if (!parse_int(p, lo, 1e15, what, &vals[(*n)++])) {
      return false;
    }
  }
  if (allow_batch && !check_prefix(p, names, locs, vals, *n))
    return false;
  return next(p);
}

static bool parse_type(Parser *p, IrType *t) {
  if (p->tok.kind != FE_TK_IDENT)
    return expected(p, "a tensor type such as f32[?, 64]");
  memset(t, 0, sizeof *t);
  t->dtype = ir_dtype_from_name(p->tok.text, (size_t)p->tok.len);
  if (t->dtype == IR_DTYPE_NONE)
    return ir_error(p->diag, p->tok.loc,
                    "unknown element type '%.*s' (expected f32, i8, u8, i32 or i64)", p->tok.len,
                    p->tok.text);
  if (!next(p))
    return false;
  double dims[IR_MAX_RANK];
  if (!parse_dim_list(p, true, false, 1, "a positive dimension or '?'", dims, &t->rank))
    return false;
  for (int i = 0; i < t->rank; i++)
    t->dims[i] = (int64_t)dims[i];
  return true;
}

/* A number token, or the name `inf` (the lexer makes `-inf` and `+inf`
 * numbers, but a bare `inf` is a name). */
static bool at_number(const Parser *p) { return p->tok.kind == FE_TK_NUMBER || is_word(p, "inf"); }

static bool parse_number(Parser *p, double *out) {
  if (!at_number(p))
    return expected(p, "a number");
  *out = p->tok.kind == FE_TK_NUMBER ? p->tok.num : HUGE_VAL;
  return next(p);
}

/* An element type as an attribute value (`dtype = u8`). */
static bool parse_dtype_value(Parser *p, IrDType *out) {
  *out = p->tok.kind == FE_TK_IDENT ? ir_dtype_from_name(p->tok.text, (size_t)p->tok.len)
                                    : IR_DTYPE_NONE;
  if (*out == IR_DTYPE_NONE)
    return expected(p, "an element type (f32, i8, u8, i32 or i64)");
  return next(p);
}

static bool parse_attr_value(Parser *p, IrAttrKey key, IrAttrKind kind, double *vals, int *n) {
  switch (kind) {
  case IR_AKIND_FLOAT:
    *n = 1;
    return parse_number(p, &vals[0]);
  case IR_AKIND_RANGE: {
    IrLoc at = p->tok.loc;
    *n = 2;
    if (!expect_punct(p, '[') || !parse_number(p, &vals[0]) || !expect_punct(p, ',') ||
        !parse_number(p, &vals[1]) || !expect_punct(p, ']'))
      return false;
    if (!(vals[0] <= vals[1]) || !isfinite(vals[0]) || !isfinite(vals[1]))
      return ir_error(p->diag, at, "range must be [min, max] with finite min <= max");
    return true;
  }
  case IR_AKIND_INT:
    *n = 1;
    return parse_int(p, -2147483648.0, 2147483647.0, "an integer", &vals[0]);
  case IR_AKIND_DTYPE: {
    IrDType t;
    *n = 1;
    if (!parse_dtype_value(p, &t))
      return false;
    vals[0] = t;
    return true;
  }
  case IR_AKIND_NAME: {
    int i = p->tok.kind == FE_TK_IDENT
                ? ir_attr_name_index(key, p->tok.text, (size_t)p->tok.len) : -1;
    if (i < 0) {
      char what[160];
      size_t len = (size_t)snprintf(what, sizeof what, "one of");
      for (int j = 0; j < ir_attr_name_count(key) && len < sizeof what; j++)
        len += (size_t)snprintf(what + len, sizeof what - len, "%s %s", j ? "," : "",
                                ir_attr_name_str(key, j));
      return expected(p, what);
    }
    *n = 1;
    vals[0] = i;
    return next(p);
  }
  case IR_AKIND_INTS:
    return parse_dim_list(p, false, false, -1e15, "an integer", vals, n);
  case IR_AKIND_DIMS:
    return parse_dim_list(p, true, true, 1, "a positive dimension, '?' or -1", vals, n);
  }
  q8_unreachable();
}

static bool parse_attrs(Parser *p, IrNode *node) {
  if (!expect_punct(p, '{'))
    return false;
  while (!is_punct(p, '}')) {
    if (node->nattrs && !expect_punct(p, ','))
      return false;
    if (p->tok.kind != FE_TK_IDENT)
      return expected(p, "an attribute name");
    IrLoc at = p->tok.loc;
    int key = ir_attr_from_name(p->tok.text, (size_t)p->tok.len);
    const IrOpInfo *info = &ir_op_info[node->op];
    if (key < 0)
      return ir_error(p->diag, at, "unknown attribute '%.*s'", p->tok.len, p->tok.text);
    if (!((info->attrs | IR_ATTRS_ANY_OP) & (1u << key)))
      return ir_error(p->diag, at, "%s does not take the attribute '%s'", info->name,
                      ir_attr_info[key].key);
    if (ir_has_attr(node, (IrAttrKey)key))
      return ir_error(p->diag, at, "attribute '%s' is given twice", ir_attr_info[key].key);
    if (!next(p) || !expect_punct(p, '='))
      return false;
    double vals[IR_MAX_RANK];
    int n = 0;
    if (!parse_attr_value(p, (IrAttrKey)key, ir_attr_info[key].kind, vals, &n))
      return false;
    ir_node_set_attr(p->m, node, (IrAttrKey)key, vals, n, at);
  }
  return next(p);
}

/* ---- weights and operands ---- */

static char *join_path(IrArena *a, const char *dir, const char *path) {
  if (path[0] == '/' || strcmp(dir, ".") == 0)
    return ir_strdup(a, path);
  size_t n = strlen(dir) + strlen(path) + 2;
  char *s = ir_alloc(a, n);
  snprintf(s, n, "%s/%s", dir, path);
  return s;
}

static bool parse_weights(Parser *p) {
  IrLoc at = p->tok.loc;
  if (p->tok.kind != FE_TK_STRING)
    return expected(p, "the weights file name as a string");
  /* Undo the two escapes the lexer allows. */
  char *path = ir_alloc(p->m->arena, (size_t)p->tok.len + 1), *d = path;
  for (int i = 0; i < p->tok.len; i++) {
    if (p->tok.text[i] == '\\')
      i++;
    *d++ = p->tok.text[i];
  }
  int idx = p->m->nweights;
  ir_add_weights(p->m, path, at);
  LoadedWeights *lw = ir_alloc(p->m->arena, (size_t)(idx + 1) * sizeof *lw);
  if (idx)
    memcpy(lw, p->loaded, (size_t)idx * sizeof *lw);
  p->loaded = lw;
  p->nloaded = idx + 1;
  lw[idx].path = path;
  char err[512];
  const char *full = join_path(p->m->arena, p->m->dir, path);
  if (!fe_safetensors_map(p->m->arena, full, &lw[idx].set, err, sizeof err))
    return ir_error(p->diag, at, "%s: %s", path, err);
  lw[idx].tensors = (SupMap){0};
  for (int i = 0; i < lw[idx].set.n; i++)
    if (!sup_map_put(&lw[idx].tensors, lw[idx].set.tensors[i].name, &lw[idx].set.tensors[i]))
      return ir_error(p->diag, at, "%s: out of memory", path);
  return next(p);
}

/* The constant `@name`, loaded from the weights files on first use. */
static IrValue *resolve_global(Parser *p, const char *name, IrLoc at) {
  IrValue *v = ir_find_const(p->m, name);
  if (v && !v->literal)
    return v;
  if (p->m->nweights == 0) {
    ir_error(p->diag, at, "@%s is used but the model names no weights file", name);
    return NULL;
  }
  const FeTensor *hit = NULL;
  const FeTensorSet *hit_set = NULL;
  const char *hit_file = NULL;
  for (int i = 0; i < p->m->nweights; i++) {
    const FeTensor *t = sup_map_get(&p->loaded[i].tensors, name);
    if (t && hit) {
      ir_error(p->diag, at, "@%s is in both %s and %s", name, hit_file, p->loaded[i].path);
      return NULL;
    }
    if (t) {
      hit = t;
      hit_set = &p->loaded[i].set;
      hit_file = p->loaded[i].path;
    }
  }
  for (int i = 0; !hit && i < p->m->nweights; i++)
    for (int j = 0; j < p->loaded[i].set.nskipped; j++)
      if (strcmp(p->loaded[i].set.skipped[j].name, name) == 0) {
        ir_error(p->diag, at,
                 "@%s in %s has dtype %s, which q8c does not take (F32, F16, BF16, I8, U8, I32 "
                 "or I64)",
                 name, p->loaded[i].path, p->loaded[i].set.skipped[j].dtype);
        return NULL;
      }
  if (!hit) {
    const char *best = NULL;
    int best_d = 4;
    for (int i = 0; i < p->m->nweights; i++)
      for (int j = 0; j < p->loaded[i].set.n; j++) {
        const char *cand = p->loaded[i].set.tensors[j].name;
        int d = edit_distance(name, (int)strlen(name), cand);
        if (d < best_d) {
          best_d = d;
          best = cand;
        }
      }
    if (best)
      ir_error(p->diag, at, "no tensor '%s' in %s (did you mean @%s?)", name,
               p->loaded[0].path, best);
    else
      ir_error(p->diag, at, "no tensor '%s' in %s", name, p->loaded[0].path);
    return NULL;
  }
  const FeView *view = hit_set->views ? &hit_set->views[hit - hit_set->tensors] : NULL;
  if (view && view->is_view)
    return ir_add_const_view(p->m, name, hit->type, view->src, view->stored, fe_drop_pages, at);
  return ir_add_const(p->m, name, hit->type, hit->data, at);
}

/* Is `name` a tensor of one of the weights files read so far? */
static bool in_weights(const Parser *p, const char *name) {
  for (int i = 0; i < p->m->nweights; i++)
    if (sup_map_get(&p->loaded[i].tensors, name))
      return true;
  return false;
}

/* A number operand: a new f32[] constant `@lit.N` (the first N that names
 * no constant or tensor) marked as a literal, so that it prints back as
 * the number. */
static IrValue *parse_literal(Parser *p) {
  IrLoc at = p->tok.loc;
  double v = p->tok.kind == FE_TK_NUMBER ? p->tok.num : HUGE_VAL;
  float f = (float)v;
  if (isfinite(v) && !isfinite(f)) {
    ir_error(p->diag, at, "the number %.*s is outside the range of f32", p->tok.len,
             p->tok.text);
    return NULL;
  }
  float *data = ir_alloc_data(p->m->arena, sizeof f);
  if (!data) {
    ir_error(p->diag, at, "out of memory");
    return NULL;
  }
  *data = f;
  char name[32];
  do
    snprintf(name, sizeof name, "lit.%d", p->nliterals++);
  while (ir_find_const(p->m, name) || in_weights(p, name));
  IrType t = {.dtype = IR_F32, .rank = 0};
  IrValue *c = ir_add_const(p->m, ir_strdup(p->m->arena, name), t, data, at);
  c->literal = true;
  return next(p) ? c : NULL;
}

static IrValue *parse_operand(Parser *p) {
  if (at_number(p))
    return parse_literal(p);
  char *name = tok_str(p);
  IrLoc at = p->tok.loc;
  IrValue *v;
  if (p->tok.kind == FE_TK_GLOBAL) {
    v = resolve_global(p, name, at);
  } else if (p->tok.kind == FE_TK_LOCAL) {
    v = find_value(p, name);
    if (!v)
      ir_error(p->diag, at, "value %%%s is not defined (values must be defined before use)",
               name);
  } else {
    expected(p, "an operand (%value, @constant or a number)");
    return NULL;
  }
  return v && next(p) ? v : NULL;
}

/* ---- statements ---- */

static bool check_new_name(Parser *p, const char *name, IrLoc at) {
  IrValue *old = find_value(p, name);
  if (old)
    return ir_error(p->diag, at, "value %%%s is already defined at line %d", name, old->loc.line);
  return true;
}

/* The attributes of an input or output declaration: an input's calibrated
 * `range`, and the quantized form of either, `scale`, `zero_point` and
 * `dtype` together (ir_check_qforms checks them against the graph). */
static bool parse_decl_attrs(Parser *p, IrValue *v, bool input) {
  IrLoc open = p->tok.loc, q_at = {0};
  bool seen[3] = {false, false, false}; /* scale, zero_point, dtype */
  IrAttrKey qkeys[3];
  ir_qparams_keys(IR_QPARAMS_OUT, qkeys);
  if (!next(p))
    return false;
  while (!is_punct(p, '}')) {
    if (p->tok.kind != FE_TK_IDENT)
      return expected(p, input ? "an input attribute (range, scale, zero_point, dtype)"
                               : "an output attribute (scale, zero_point, dtype)");
    IrLoc key_at = p->tok.loc;
    double vals[2];
    int n, k = -1;
    for (int i = 0; i < 3; i++)
      if (is_word(p, ir_attr_info[qkeys[i]].key))
        k = i;
    if (k < 0 && !(input && is_word(p, "range")))
      return ir_error(p->diag, key_at, "'%.*s' is not an %s attribute (%s)", p->tok.len,
                      p->tok.text, input ? "input" : "output",
                      input ? "range, scale, zero_point, dtype" : "scale, zero_point, dtype");
    if ((k >= 0 && seen[k]) || (k < 0 && v->has_range))
      return ir_error(p->diag, key_at, "attribute '%.*s' given twice", p->tok.len, p->tok.text);
    if (!next(p) || !expect_punct(p, '='))
      return false;
    if (k == 2 ? !parse_dtype_value(p, &v->qform.dtype)
               : !parse_attr_value(p, k < 0 ? IR_ATTR_RANGE : qkeys[k],
                                   k < 0 ? IR_AKIND_RANGE : ir_attr_info[qkeys[k]].kind, vals,
                                   &n))
      return false;
    if (k < 0) {
      v->range[0] = vals[0];
      v->range[1] = vals[1];
      v->has_range = true;
    } else {
      seen[k] = true;
      if (k == 0) {
        v->qform.scale = (float)vals[0];
        q_at = key_at;
      } else if (k == 1) {
        v->qform.zero_point = (int32_t)vals[0];
      }
      if (!q_at.line)
        q_at = key_at;
    }
    if (!is_punct(p, ','))
      break;
    if (!next(p))
      return false;
  }
  if (seen[0] || seen[1] || seen[2]) {
    for (int i = 0; i < 3; i++)
      if (!seen[i])
        return ir_error(p->diag, open,
                        "the quantized form of %%%s needs scale, zero_point and dtype; "
                        "'%s' is missing",
                        v->name, ir_attr_info[qkeys[i]].key);
    v->has_qform = true;
    v->qform_loc = q_at;
  }
  return expect_punct(p, '}');
}

static bool parse_input(Parser *p) {
  if (p->tok.kind != FE_TK_LOCAL)
    return expected(p, "an input name such as %x");
  char *name = tok_str(p);
  IrLoc at = p->tok.loc;
  IrType t;
  if (!check_new_name(p, name, at) || !next(p) || !expect_punct(p, ':') || !parse_type(p, &t))
    return false;
  IrValue *v = ir_add_input(p->m, name, t, at);
  return !is_punct(p, '{') || parse_decl_attrs(p, v, true);
}

static bool parse_output(Parser *p) {
  for (;;) {
    if (p->tok.kind != FE_TK_LOCAL)
      return expected(p, "an output value such as %y");
    char *name = tok_str(p);
    IrValue *v = find_value(p, name);
    if (!v)
      return ir_error(p->diag, p->tok.loc, "output %%%s is not defined", name);
    for (int i = 0; i < p->m->noutputs; i++)
      if (p->m->outputs[i] == v)
        return ir_error(p->diag, p->tok.loc, "%%%s is already an output", name);
    ir_add_output(p->m, v, p->tok.loc);
    if (!next(p))
      return false;
    if (is_punct(p, '{')) {
      if (v->kind == IR_VAL_INPUT)
        return ir_error(p->diag, p->tok.loc,
                        "output %%%s is a model input: give its attributes on the input", name);
      if (!parse_decl_attrs(p, v, false))
        return false;
    }
    if (!is_punct(p, ','))
      return true;
    if (!next(p))
      return false;
  }
}

/* "unknown op 'lnear' (did you mean 'linear'?) (ops: linear, matmul, ...)":
 * the nearest op when one is close, and every op, in ops.def's order. */
static bool unknown_op(Parser *p) {
  const char *best = NULL;
  int best_d = 3;
  char ops[1024];
  size_t len = 0;
  for (int op = 0; op < IR_OP_COUNT; op++) {
    int d = edit_distance(p->tok.text, p->tok.len, ir_op_info[op].name);
    if (d < best_d) {
      best_d = d;
      best = ir_op_info[op].name;
    }
    if (len < sizeof ops)
      len += (size_t)snprintf(ops + len, sizeof ops - len, "%s%s", op ? ", " : "",
                              ir_op_info[op].name);
  }
  if (best)
    return ir_error(p->diag, p->tok.loc, "unknown op '%.*s' (did you mean '%s'?) (ops: %s)",
                    p->tok.len, p->tok.text, best, ops);
  return ir_error(p->diag, p->tok.loc, "unknown op '%.*s' (ops: %s)", p->tok.len, p->tok.text,
                  ops);
}

/* Does the current token begin the operand list? The first operand must be on
 * the op's line: otherwise `%a = relu` followed by `%b = ...` on the next line
 * would read %b as relu's operand instead of reporting the missing one. After
 * a comma the list may continue on the next line. */
static bool at_operand(const Parser *p, IrLoc op_loc) {
  return (p->tok.kind == FE_TK_LOCAL || p->tok.kind == FE_TK_GLOBAL || at_number(p)) &&
         p->tok.loc.line == op_loc.line;
}

/* `%a, %b, ... = split %x {axis = A, sizes = [...]}`: not an op of the IR
 * but one slice node per result (docs/ir.md), so the printed module, which
 * shows the slices, parses back to the same graph. Equal parts without
 * `sizes`. The current token is the operand. */
enum { MAX_SPLIT = 64 };

static bool parse_split(Parser *p, char **names, const IrLoc *name_locs, int nres, IrLoc op_loc) {
  if (!at_operand(p, op_loc))
    return ir_error(p->diag, p->tok.loc, "split takes 1 operand, found 0");
  IrLoc x_at = p->tok.loc;
  IrValue *x = parse_operand(p);
  if (!x)
    return false;
  if (is_punct(p, ','))
    return ir_error(p->diag, p->tok.loc, "split takes 1 operand");
  double axis = -1, sizes[IR_MAX_RANK];
  int nsizes = -1;
  IrLoc axis_at = op_loc, sizes_at = op_loc;
  if (is_punct(p, '{')) {
    if (!next(p))
      return false;
    bool seen_axis = false;
    while (!is_punct(p, '}')) {
      if ((seen_axis || nsizes >= 0) && !expect_punct(p, ','))
        return false;
      IrLoc at = p->tok.loc;
      int key = p->tok.kind == FE_TK_IDENT ? ir_attr_from_name(p->tok.text, (size_t)p->tok.len) : -1;
      if (key != IR_ATTR_AXIS && key != IR_ATTR_SIZES)
        return p->tok.kind == FE_TK_IDENT
                   ? ir_error(p->diag, at, "split takes the attributes axis and sizes, not '%.*s'",
                              p->tok.len, p->tok.text)
                   : expected(p, "an attribute name");
      if ((key == IR_ATTR_AXIS && seen_axis) || (key == IR_ATTR_SIZES && nsizes >= 0))
        return ir_error(p->diag, at, "attribute '%s' is given twice", ir_attr_info[key].key);
      if (!next(p) || !expect_punct(p, '='))
        return false;
      int n = 0;
      if (key == IR_ATTR_AXIS) {
        axis_at = at;
        seen_axis = true;
        if (!parse_attr_value(p, IR_ATTR_AXIS, IR_AKIND_INT, &axis, &n))
          return false;
      } else {
        sizes_at = at;
        if (!parse_attr_value(p, IR_ATTR_SIZES, IR_AKIND_INTS, sizes, &n))
          return false;
        nsizes = n;
      }
    }
    if (!next(p))
      return false;
  }
  const IrType *t = &x->type;
  char b[96];
  int rank = t->rank, ax = (int)(axis < 0 ? axis + rank : axis);
  if (ax < 0 || ax >= rank)
    return ir_error(p->diag, axis_at, "split: axis %lld is out of range for %s%s, which is %s",
                    (long long)axis, x->kind == IR_VAL_CONST ? "@" : "%", x->name,
                    ir_type_str(t, b, sizeof b));
  int64_t dim = t->dims[ax];
  if (ir_dim_symbolic(dim))
    return ir_error(p->diag, axis_at, "split: axis %d of %s%s (%s) is the batch dim '?'", ax,
                    x->kind == IR_VAL_CONST ? "@" : "%", x->name, ir_type_str(t, b, sizeof b));
  int64_t part[MAX_SPLIT], sum = 0;
  if (nsizes >= 0) {
    if (nsizes != nres)
      return ir_error(p->diag, sizes_at, "split: sizes has %d entries but there are %d results",
                      nsizes, nres);
    for (int i = 0; i < nres; i++) {
      if (sizes[i] < 1)
        return ir_error(p->diag, sizes_at, "split: sizes must be positive");
      sum += (int64_t)sizes[i];
      part[i] = (int64_t)sizes[i];
    }
    if (sum != dim)
      return ir_error(p->diag, sizes_at,
                      "split: sizes add up to %lld but axis %d of %s%s (%s) has %lld",
                      (long long)sum, ax, x->kind == IR_VAL_CONST ? "@" : "%", x->name,
                      ir_type_str(t, b, sizeof b), (long long)dim);
  } else {
    if (dim % nres != 0)
      return ir_error(p->diag, name_locs[0],
                      "split: %d results, but axis %d of %s%s (%s) has %lld, which does not "
                      "divide into %d equal parts (give sizes = [...])",
                      nres, ax, x->kind == IR_VAL_CONST ? "@" : "%", x->name,
                      ir_type_str(t, b, sizeof b), (long long)dim, nres);
    for (int i = 0; i < nres; i++)
      part[i] = dim / nres;
  }
  int64_t start = 0;
  for (int i = 0; i < nres; i++) {
    IrNode *node = ir_add_node(p->m, IR_OP_SLICE, names[i], &x, 1, op_loc);
    node->result->loc = name_locs[i];
    node->opnd_locs = ir_alloc(p->m->arena, sizeof *node->opnd_locs);
    node->opnd_locs[0] = x_at;
    ir_set_attr_int(p->m, node, IR_ATTR_AXIS, (int64_t)axis);
    ir_set_attr_int(p->m, node, IR_ATTR_START, start);
    ir_set_attr_int(p->m, node, IR_ATTR_END, start + part[i]);
    start += part[i];
    if (!ir_infer_type(p->m, node, &node->result->type) || !ir_named_check_node(p->m, node))
      return false;
  }
  return true;
}

static bool parse_node(Parser *p) {
  char *name = tok_str(p);
  IrLoc at = p->tok.loc;
  IrType declared = {0};
  bool has_declared = false;
  if (!check_new_name(p, name, at) || !next(p))
    return false;
  if (is_punct(p, ',')) {
    /* Several results: only split has them. */
    char *names[MAX_SPLIT] = {name};
    IrLoc locs[MAX_SPLIT] = {at};
    int nres = 1;
    while (is_punct(p, ',')) {
      if (!next(p))
        return false;
      if (p->tok.kind != FE_TK_LOCAL)
        return expected(p, "a result name such as %v");
      if (nres == MAX_SPLIT)
        return ir_error(p->diag, p->tok.loc, "more than %d results", MAX_SPLIT);
      names[nres] = tok_str(p);
      locs[nres] = p->tok.loc;
      for (int i = 0; i < nres; i++)
        if (strcmp(names[i], names[nres]) == 0)
          return ir_error(p->diag, p->tok.loc, "%%%s is named twice", names[nres]);
      if (!check_new_name(p, names[nres], locs[nres]) || !next(p))
        return false;
      nres++;
    }
    if (!expect_punct(p, '='))
      return false;
    if (!is_word(p, "split"))
      return p->tok.kind == FE_TK_IDENT
                 ? ir_error(p->diag, p->tok.loc,
                            "%.*s has one result, but %d are named (only split has several)",
                            p->tok.len, p->tok.text, nres)
                 : expected(p, "split");
    IrLoc op_loc = p->tok.loc;
    return next(p) && parse_split(p, names, locs, nres, op_loc);
  }
  if (is_punct(p, ':')) {
    if (!next(p) || !parse_type(p, &declared))
      return false;
    has_declared = true;
  }
  if (!expect_punct(p, '='))
    return false;
  if (p->tok.kind != FE_TK_IDENT)
    return expected(p, "an op name");
  int op = ir_op_from_name(p->tok.text, (size_t)p->tok.len);
  if (op < 0 && is_word(p, "split") && !has_declared) {
    IrLoc op_loc = p->tok.loc;
    return next(p) && parse_split(p, &name, &at, 1, op_loc);
  }
  if (op < 0)
    return unknown_op(p);
  IrLoc op_loc = p->tok.loc;
  const IrOpInfo *info = &ir_op_info[op];
  if (!next(p))
    return false;

  IrValue *opnds[16];
  IrLoc locs[16];
  int n = 0;
  if (at_operand(p, op_loc)) {
    for (;;) {
      if (n == 16)
        return ir_error(p->diag, p->tok.loc, "too many operands");
      locs[n] = p->tok.loc;
      if (!(opnds[n] = parse_operand(p)))
        return false;
      n++;
      if (!is_punct(p, ','))
        break;
      if (!next(p))
        return false;
    }
  }
  if (n < info->min_operands || n > info->max_operands) {
    if (info->min_operands == info->max_operands)
      return ir_error(p->diag, op_loc, "%s takes %d operand%s, found %d", info->name,
                      info->min_operands, info->min_operands == 1 ? "" : "s", n);
    return ir_error(p->diag, op_loc, "%s takes %d to %d operands, found %d", info->name,
                    info->min_operands, info->max_operands, n);
  }
  IrNode *node = ir_add_node(p->m, (IrOp)op, name, opnds, n, op_loc);
  node->result->loc = at;
  node->opnd_locs = ir_alloc(p->m->arena, (size_t)(n ? n : 1) * sizeof *locs);
  memcpy(node->opnd_locs, locs, (size_t)n * sizeof *locs);
  if (is_punct(p, '{') && !parse_attrs(p, node))
    return false;
  if (!ir_infer_type(p->m, node, &node->result->type) || !ir_named_check_node(p->m, node))
    return false;
  char b1[96], b2[96];
  if (has_declared && !ir_type_equal(&declared, &node->result->type))
    return ir_error(p->diag, at, "%%%s is declared %s but %s produces %s", name,
                    ir_type_str(&declared, b1, sizeof b1), info->name,
                    ir_type_str(&node->result->type, b2, sizeof b2));
  return true;
}

static bool parse_item(Parser *p) {
  if (is_word(p, "weights"))
    return next(p) && parse_weights(p);
  if (is_word(p, "input"))
    return next(p) && parse_input(p);
  if (is_word(p, "output"))
    return next(p) && parse_output(p);
  if (p->tok.kind == FE_TK_LOCAL)
    return parse_node(p);
  return expected(p, "'weights', 'input', 'output', a %value = op statement or '}'");
}

static bool parse_model(Parser *p) {
  if (!next(p))
    return false;
  if (!is_word(p, "model"))
    return expected(p, "'model'");
  IrLoc open_at = p->tok.loc;
  if (!next(p))
    return false;
  if (p->tok.kind != FE_TK_IDENT)
    return expected(p, "a model name");
  p->m->name = tok_str(p);
  if (!next(p) || !expect_punct(p, '{'))
    return false;
  while (!is_punct(p, '}')) {
    if (p->tok.kind == FE_TK_EOF)
      return ir_error(p->diag, p->tok.loc,
                      "expected '}' to close model '%s' (opened at line %d), found end of file",
                      p->m->name, open_at.line);
    if (!parse_item(p))
      return false;
  }
  if (p->m->noutputs == 0)
    return ir_error(p->diag, p->tok.loc, "model '%s' has no outputs (add 'output %%value')",
                    p->m->name);
  if (!next(p))
    return false;
  if (p->tok.kind != FE_TK_EOF)
    return expected(p, "end of file after the model's '}'");
  /* Only the weights stay in the mapped file (docs/ir.md, "Constants in
   * their stored form"). */
  return ir_pin_non_weights(p->m) && ir_verify(p->m);
}

static char *dir_of(IrArena *a, const char *path) {
  const char *slash = strrchr(path, '/');
  if (!slash)
    return ir_strdup(a, ".");
  if (slash == path)
    return ir_strdup(a, "/");
  return ir_strndup(a, path, (size_t)(slash - path));
}

/* The weights files' tables (idempotent: a freed SupMap is empty). */
static void free_loaded(void *arg) {
  Parser *p = arg;
  for (int i = 0; i < p->nloaded; i++)
    sup_map_free(&p->loaded[i].tensors);
}

IrModule *fe_parse(const char *path, const char *src) { return fe_parse_dims(path, src, NULL); }

IrModule *fe_parse_dims(const char *path, const char *src, const FeDims *dims) {
  IrModule *m = ir_module_new("model");
  m->dir = dir_of(m->arena, path);
  ir_diag_init(&m->diag, ir_strdup(m->arena, path), NULL);
  /* The module keeps its own copy of the text: diagnostics from later
   * passes quote it. */
  size_t len = strlen(src);
  char *copy = ir_alloc_data(m->arena, len + 1);
  if (!copy) {
    ir_error(&m->diag, (IrLoc){0}, "out of memory reading the model");
    return m;
  }
  memcpy(copy, src, len + 1);
  m->diag.src = copy;
  /* In the arena, so that the tables of the weights files are freed with
   * it, also when running out of memory jumps out of the parse. */
  Parser *p = ir_alloc(m->arena, sizeof *p);
  *p = (Parser){.m = m, .diag = &m->diag, .dims = dims};
  ir_arena_defer(m->arena, free_loaded, p);
  fe_lex_init(&p->lx, copy, &m->diag);
  parse_model(p);
  free_loaded(p);
  return m;
}

/* The whole file in malloc'd memory, NUL-terminated; a pipe or /dev/stdin
 * has no size to ask for, so it is read in growing chunks. */
static char *slurp(FILE *f, size_t *len, const char **err) {
  size_t cap = 1 << 16, n = 0;
  char *buf = malloc(cap);
  for (;;) {
    if (!buf) {
      *err = "out of memory reading the model";
      return NULL;
    }
    n += fread(buf + n, 1, cap - n - 1, f);
    if (n < cap - 1)
      break;
    char *bigger = cap < ((size_t)1 << 30) ? realloc(buf, cap * 2) : NULL;
    if (!bigger) {
      free(buf);
      *err = "model text is larger than 1 GiB";
      return NULL;
    }
    buf = bigger;
    cap *= 2;
  }
  if (ferror(f)) {
    free(buf);
    *err = "read error";
    return NULL;
  }
  buf[n] = '\0';
  *len = n;
  return buf;
}

/* A module that carries only an error about the file itself. */
static IrModule *file_error(const char *path, const char *msg) {
  IrModule *m = ir_module_new("model");
  ir_diag_init(&m->diag, ir_strdup(m->arena, path), NULL);
  ir_error(&m->diag, (IrLoc){0}, "%s", msg);
  return m;
}

IrModule *fe_parse_file(const char *path) { return fe_parse_file_dims(path, NULL); }

IrModule *fe_parse_file_dims(const char *path, const FeDims *dims) {
  if (strcmp(path, "-") != 0 && fe_onnx_is_onnx(path, NULL, 0)) /* by suffix: onnx.c */
    return fe_onnx_parse_file(path, dims);
  FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
  if (!f) {
    char msg[256];
    snprintf(msg, sizeof msg, "cannot open: %s", strerror(errno));
    return file_error(path, msg);
  }
  size_t len = 0;
  const char *err = NULL;
  char *buf = slurp(f, &len, &err);
  if (f != stdin)
    fclose(f);
  if (!buf)
    return file_error(path, err);
  /* The text belongs to an arena of its own while it is parsed, so that it
   * is freed also when running out of memory jumps out of the parse (the
   * recovery point frees the arenas made under it). */
  IrArena *hold = ir_arena_new();
  ir_arena_defer(hold, free, buf);
  IrModule *m;
  if (fe_onnx_is_onnx(path, (const unsigned char *)buf, len)) /* by content: onnx.c */
    m = fe_onnx_parse(path, (const unsigned char *)buf, len, strcmp(path, "-") != 0, dims);
  else if (memchr(buf, '\0', len))
    m = file_error(path, "not a text file (it contains a NUL byte)");
  else
    m = fe_parse_dims(path, buf, dims);
  ir_arena_free(hold);
  return m;
}
