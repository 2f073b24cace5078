/* module.c: building a module: inputs, constants, nodes and outputs, and
 * the information kept in it so that no pass rescans the graph per node:
 *
 *   - the name table (m->value_names, m->const_names; QBE's `intern()`):
 *     every live value and constant by name, hashed. A value is registered
 *     when it is made and gives its name up when it leaves the graph
 *     (ir_remove_dead, ir_set_nodes, ir_rename_value), so ir_find_value,
 *     ir_unique_name and the parser's lookups are O(1);
 *   - use counts (IrValue.nuses; QBE's `filluse`): how many operands of
 *     listed nodes and outputs refer to each value, kept by the functions
 *     that change operands or the list, so ir_count_uses is O(1).
 *
 * Lists grow by doubling inside the arena (the old copy is simply left there;
 * the arena frees everything at once). Everything here is linear in the size
 * of the graph or better, so that a file of many thousands of statements
 * cannot make q8c run for minutes. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ir.h"

#include "../support/support.h"

/* Make room for one more element in an arena-backed array. */
static void *grow(IrArena *a, void *items, int n, int *cap, size_t elem) {
  if (n < *cap)
    return items;
  int newcap = *cap ? *cap * 2 : 8;
  void *p = ir_alloc(a, (size_t)newcap * elem);
  if (n)
    memcpy(p, items, (size_t)n * elem);
  *cap = newcap;
  return p;
}

#define PUSH(m, list, count, cap, item)                                                   \
  do {                                                                                    \
    (m)->list = grow((m)->arena, (m)->list, (m)->count, &(m)->cap, sizeof *(m)->list);    \
    (m)->list[(m)->count++] = (item);                                                     \
  } while (0)

/* The name tables are malloc'd (SupMap); they go with the arena, also when
 * a recovery point frees it after running out of memory. */
static void free_names(void *arg) {
  IrModule *m = arg;
  sup_map_free(&m->value_names);
  sup_map_free(&m->const_names);
}

IrModule *ir_module_new(const char *name) {
  IrArena *a = ir_arena_new();
  IrModule *m = ir_alloc(a, sizeof *m);
  m->arena = a;
  ir_arena_defer(a, free_names, m);
  m->name = ir_strdup(a, name ? name : "model");
  m->dir = ir_strdup(a, ".");
  ir_diag_init(&m->diag, NULL, NULL);
  return m;
}

void ir_module_free(IrModule *m) {
  if (!m)
    return;
  ir_arena_free(m->arena);
}

/* ---- the name table ---- */

static SupMap *table_of(IrModule *m, const IrValue *v) {
  return v->kind == IR_VAL_CONST ? &m->const_names : &m->value_names;
}

/* The table's copy of `name`, made once per distinct name. */
static const char *intern(IrModule *m, SupMap *t, const char *name) {
  const char *s = sup_map_intern(t, name);
  return s ? s : ir_strdup(m->arena, name);
}

/* `v` takes its name, unless a live value has it already (a duplicate the
 * parser or the verifier reports; the first keeps it, as in a scan). */
static void name_take(IrModule *m, IrValue *v) {
  SupMap *t = table_of(m, v);
  v->name = intern(m, t, v->name);
  if (!sup_map_get(t, v->name) && !sup_map_put(t, v->name, v))
    q8_die("out of memory in the name table");
}

static void name_release(IrModule *m, IrValue *v) {
  SupMap *t = table_of(m, v);
  if (sup_map_get(t, v->name) == v)
    sup_map_put(t, v->name, NULL); /* the key is there: cannot fail */
}

static IrValue *new_value(IrModule *m, IrValueKind kind, const char *name, IrLoc loc) {
  IrValue *v = ir_alloc(m->arena, sizeof *v);
  v->kind = kind;
  v->name = name;
  v->loc = loc;
  v->id = -1;
  name_take(m, v);
  return v;
}

static void count_uses(IrNode *n, int delta) {
  for (int j = 0; j < n->nopnds; j++)
    if (n->opnds[j])
      n->opnds[j]->nuses += delta;
}

IrValue *ir_add_input(IrModule *m, const char *name, IrType type, IrLoc loc) {
  IrValue *v = new_value(m, IR_VAL_INPUT, name, loc);
  v->type = type;
  PUSH(m, inputs, ninputs, cap_inputs, v);
  return v;
}

IrValue *ir_add_const(IrModule *m, const char *name, IrType type, const void *data, IrLoc loc) {
  IrValue *v = new_value(m, IR_VAL_CONST, name, loc);
  v->type = type;
  v->data = data;
  PUSH(m, consts, nconsts, cap_consts, v);
  return v;
}

IrNode *ir_new_node(IrModule *m, IrOp op, IrValue *result, const char *result_name,
                    IrValue **opnds, int nopnds, IrLoc loc) {
  IrNode *n = ir_alloc(m->arena, sizeof *n);
  n->op = op;
  n->loc = loc;
  n->nopnds = nopnds;
  n->opnds = ir_alloc(m->arena, (size_t)(nopnds ? nopnds : 1) * sizeof *n->opnds);
  if (nopnds)
    memcpy(n->opnds, opnds, (size_t)nopnds * sizeof *opnds);
  n->result = result ? result : new_value(m, IR_VAL_NODE, result_name, loc);
  n->result->def = n;
  return n;
}

IrNode *ir_add_node(IrModule *m, IrOp op, const char *result_name, IrValue **opnds, int nopnds,
                    IrLoc loc) {
  IrNode *n = ir_new_node(m, op, NULL, result_name, opnds, nopnds, loc);
  PUSH(m, nodes, nnodes, cap_nodes, n);
  count_uses(n, +1);
  return n;
}

void ir_set_nodes(IrModule *m, IrNode **nodes, int n) {
  /* Mark the results of the new list; the old list's others leave. */
  for (int i = 0; i < m->nnodes; i++)
    m->nodes[i]->result->mark = 0;
  for (int i = 0; i < n; i++)
    nodes[i]->result->mark = 1;
  for (int i = 0; i < m->nnodes; i++)
    if (!m->nodes[i]->result->mark)
      name_release(m, m->nodes[i]->result);
  for (int i = 0; i < n; i++) /* a node may come back into the list */
    name_take(m, nodes[i]->result);
  IrNode **list = ir_alloc(m->arena, (size_t)(n ? n : 1) * sizeof *list);
  if (n)
    memcpy(list, nodes, (size_t)n * sizeof *list);
  m->nodes = list;
  m->nnodes = m->cap_nodes = n;
  ir_fill_uses(m);
}

void ir_set_node(IrModule *m, int i, IrNode *n) {
  IrNode *old = m->nodes[i];
  count_uses(old, -1);
  if (old->result != n->result)
    name_release(m, old->result);
  m->nodes[i] = n;
  name_take(m, n->result);
  count_uses(n, +1);
}

void ir_set_operand(IrModule *m, IrNode *n, int i, IrValue *v) {
  if (n->opnds[i])
    n->opnds[i]->nuses--;
  n->opnds[i] = v;
  if (v)
    v->nuses++;
}

void ir_node_remove_attr(IrNode *n, IrAttrKey key) {
  for (int i = 0; i < n->nattrs; i++)
    if (n->attrs[i].key == key) {
      memmove(&n->attrs[i], &n->attrs[i + 1], (size_t)(n->nattrs - i - 1) * sizeof *n->attrs);
      n->nattrs--;
      return;
    }
}

/* `base` or `base.N` for the first N not taken in table `t`, interned. The
 * suffixes tried are few unless one base is asked for again and again. */
static const char *unique(IrModule *m, SupMap *t, const char *base) {
  if (!sup_map_get(t, base))
    return intern(m, t, base);
  size_t len = strlen(base) + 24;
  char *name = malloc(len);
  if (!name)
    q8_die("out of memory");
  const char *s = NULL;
  for (int i = 1; !s; i++) {
    snprintf(name, len, "%s.%d", base, i);
    if (!sup_map_get(t, name))
      s = intern(m, t, name);
  }
  free(name);
  return s;
}

const char *ir_unique_name(IrModule *m, const char *base) {
  return unique(m, &m->value_names, base);
}

const char *ir_unique_const_name(IrModule *m, const char *base) {
  return unique(m, &m->const_names, base);
}

void ir_rename_value(IrModule *m, IrValue *v, const char *base) {
  name_release(m, v);
  v->name = unique(m, table_of(m, v), base);
  name_take(m, v);
}

bool ir_value_range(const IrValue *v, double *lo, double *hi) {
  if (v->kind == IR_VAL_INPUT && v->has_range) {
    *lo = v->range[0];
    *hi = v->range[1];
    return true;
  }
  return v->kind == IR_VAL_NODE && v->def && ir_attr_range(v->def, IR_ATTR_RANGE, lo, hi);
}

void ir_set_value_range(IrModule *m, IrValue *v, double lo, double hi) {
  if (v->kind == IR_VAL_INPUT) {
    v->has_range = true;
    v->range[0] = lo;
    v->range[1] = hi;
  } else if (v->kind == IR_VAL_NODE) {
    double r[2] = {lo, hi};
    ir_node_set_attr(m, v->def, IR_ATTR_RANGE, r, 2, v->def->loc);
  }
}

void ir_fill_uses(IrModule *m) {
  for (int i = 0; i < m->ninputs; i++)
    m->inputs[i]->nuses = 0;
  for (int i = 0; i < m->nconsts; i++)
    m->consts[i]->nuses = 0;
  for (int i = 0; i < m->noutputs; i++)
    m->outputs[i]->nuses = 0;
  for (int i = 0; i < m->nnodes; i++) {
    m->nodes[i]->result->nuses = 0;
    for (int j = 0; j < m->nodes[i]->nopnds; j++)
      if (m->nodes[i]->opnds[j])
        m->nodes[i]->opnds[j]->nuses = 0;
  }
  for (int i = 0; i < m->nnodes; i++)
    count_uses(m->nodes[i], +1);
  for (int i = 0; i < m->noutputs; i++)
    m->outputs[i]->nuses++;
}

int ir_count_uses(const IrModule *m, const IrValue *v) { return v->nuses; }

int ir_output_index(const IrModule *m, const IrValue *v) {
  for (int i = 0; i < m->noutputs; i++)
    if (m->outputs[i] == v)
      return i;
  return -1;
}

void ir_replace_uses(IrModule *m, IrValue *from, IrValue *to) {
  for (int i = 0; i < m->nnodes; i++)
    for (int j = 0; j < m->nodes[i]->nopnds; j++)
      if (m->nodes[i]->opnds[j] == from)
        ir_set_operand(m, m->nodes[i], j, to);
  for (int i = 0; i < m->noutputs; i++)
    if (m->outputs[i] == from) {
      m->outputs[i] = to;
      from->nuses--;
      to->nuses++;
    }
}

/* The id of `v` if it is a value of the module as last numbered, else -1. */
static int value_id(IrValue *const *by_id, int count, const IrValue *v) {
  return v && v->id >= 0 && v->id < count && by_id[v->id] == v ? v->id : -1;
}

int ir_remove_dead(IrModule *m) {
  /* Use counts by value id, in one sweep over the graph; then backwards,
   * each dead node releases its operands, so a chain of dead nodes goes in
   * one sweep. Linear in the size of the graph, as everything run on every
   * pass must be: a model file of a few megabytes holds 100k nodes. A value
   * that is not the module's (a bug the verifier reports next) counts as
   * nothing. */
  int count = ir_number_values(m);
  /* Scratch from malloc, not the arena: this runs after every pass. */
  IrValue **by_id = calloc((size_t)count + 1, sizeof *by_id);
  int *uses = calloc((size_t)count + 1, sizeof *uses);
  bool *dead = calloc((size_t)m->nnodes + 1, sizeof *dead);
  if (!by_id || !uses || !dead)
    q8_die("out of memory removing dead nodes");
  for (int i = 0; i < m->ninputs; i++)
    by_id[m->inputs[i]->id] = m->inputs[i];
  for (int i = 0; i < m->nconsts; i++)
    by_id[m->consts[i]->id] = m->consts[i];
  for (int i = 0; i < m->nnodes; i++)
    by_id[m->nodes[i]->result->id] = m->nodes[i]->result;
  for (int i = 0; i < m->nnodes; i++)
    for (int j = 0; j < m->nodes[i]->nopnds; j++) {
      int id = value_id(by_id, count, m->nodes[i]->opnds[j]);
      if (id >= 0)
        uses[id]++;
    }
  for (int i = 0; i < m->noutputs; i++) {
    int id = value_id(by_id, count, m->outputs[i]);
    if (id >= 0)
      uses[id]++;
  }
  int removed = 0;
  for (int i = m->nnodes - 1; i >= 0; i--) {
    if (uses[m->nodes[i]->result->id] == 0) {
      dead[i] = true;
      removed++;
      for (int j = 0; j < m->nodes[i]->nopnds; j++) {
        int id = value_id(by_id, count, m->nodes[i]->opnds[j]);
        if (id >= 0)
          uses[id]--;
      }
    }
  }
  int kept = 0;
  for (int i = 0; i < m->nnodes; i++) {
    if (!dead[i])
      m->nodes[kept++] = m->nodes[i];
    else
      name_release(m, m->nodes[i]->result);
  }
  m->nnodes = kept;
  kept = 0;
  for (int i = 0; i < m->nconsts; i++) {
    if (uses[m->consts[i]->id] > 0)
      m->consts[kept++] = m->consts[i];
    else
      name_release(m, m->consts[i]);
  }
  m->nconsts = kept;
  free(by_id);
  free(uses);
  free(dead);
  ir_fill_uses(m);
  return removed;
}

void ir_node_set_attr(IrModule *m, IrNode *n, IrAttrKey key, const double *vals, int nvals,
                      IrLoc loc) {
  /* The array grows by doubling and a value overwritten in place keeps its
   * storage: passes set a node's attributes one by one, and an arena copy
   * per call made every quantized node cost kilobytes. */
  IrAttr *slot = (IrAttr *)ir_node_attr(n, key);
  if (!slot) {
    if (n->nattrs >= n->cap_attrs) {
      int cap = n->nattrs < 2 ? 4 : 2 * n->nattrs;
      IrAttr *attrs = ir_alloc(m->arena, (size_t)cap * sizeof *attrs);
      if (n->nattrs)
        memcpy(attrs, n->attrs, (size_t)n->nattrs * sizeof *attrs);
      n->attrs = attrs;
      n->cap_attrs = cap;
    }
    slot = &n->attrs[n->nattrs++];
    *slot = (IrAttr){.key = key}; /* may hold a stale copy after ir_node_remove_attr */
  }
  if (!slot->vals || slot->n < nvals)
    slot->vals = ir_alloc(m->arena, (size_t)(nvals ? nvals : 1) * sizeof(double));
  slot->key = key;
  slot->n = nvals;
  if (nvals)
    memcpy(slot->vals, vals, (size_t)nvals * sizeof(double));
  slot->loc = loc;
}

void ir_add_output(IrModule *m, IrValue *v, IrLoc loc) {
  int cap = m->cap_outputs;
  PUSH(m, outputs, noutputs, cap_outputs, v);
  v->nuses++;
  m->output_locs = grow(m->arena, m->output_locs, m->noutputs - 1, &cap, sizeof(IrLoc));
  m->output_locs[m->noutputs - 1] = loc;
}

void ir_add_weights(IrModule *m, const char *path, IrLoc loc) {
  IrWeightsRef w = {ir_strdup(m->arena, path), loc};
  PUSH(m, weights, nweights, cap_weights, w);
}

IrValue *ir_find_value(const IrModule *m, const char *name) {
  return sup_map_get(&m->value_names, name);
}

IrValue *ir_find_const(const IrModule *m, const char *name) {
  return sup_map_get(&m->const_names, name);
}

int ir_number_values(IrModule *m) {
  int id = 0;
  for (int i = 0; i < m->ninputs; i++)
    m->inputs[i]->id = id++;
  for (int i = 0; i < m->nconsts; i++)
    m->consts[i]->id = id++;
  for (int i = 0; i < m->nnodes; i++)
    m->nodes[i]->result->id = id++;
  return id;
}
