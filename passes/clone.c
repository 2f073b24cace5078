/* clone.c: a copy of a module, for passes that try something on it (the
 * autopilot's trials) or keep a stage of it (the smoothed float model the
 * report measures against). Values, nodes, attributes and outputs are
 * copied; constants share their data with the original, which must outlive
 * the copy and not change it. Linear in the module. */
#include <string.h>

#include "passes.h"

IrModule *pass_clone_module(IrModule *m) {
  IrModule *c = ir_module_new(m->name);
  ir_diag_init(&c->diag, m->diag.file, m->diag.src);
  c->dir = ir_strdup(c->arena, m->dir);
  c->bound_batch = m->bound_batch;
  c->nnamed = m->nnamed;
  for (int i = 0; i < m->nnamed; i++)
    c->named[i] = ir_strdup(c->arena, m->named[i]);
  int nids = ir_number_values(m);
  IrValue **map = ir_alloc(c->arena, (size_t)(nids + 1) * sizeof *map);
  for (int i = 0; i < m->ninputs; i++) {
    const IrValue *v = m->inputs[i];
    IrValue *n = ir_add_input(c, ir_strdup(c->arena, v->name), v->type, v->loc);
    n->has_range = v->has_range;
    n->range[0] = v->range[0];
    n->range[1] = v->range[1];
    n->has_qform = v->has_qform;
    n->qform = v->qform;
    n->qform_loc = v->qform_loc;
    map[v->id] = n;
  }
  for (int i = 0; i < m->nconsts; i++) {
    const IrValue *v = m->consts[i];
    /* A view stays one (over the same stored bytes) with its own f32 form. */
    IrValue *n = v->view ? ir_add_const_view(c, ir_strdup(c->arena, v->name), v->type,
                                             v->view->src, v->view->stored,
                                             v->view->drop_src, v->loc)
                         : ir_add_const(c, ir_strdup(c->arena, v->name), v->type, v->data, v->loc);
    n->literal = v->literal;
    map[v->id] = n;
  }
  IrValue *ops[16];
  for (int i = 0; i < m->nnodes; i++) {
    const IrNode *n = m->nodes[i];
    IrValue **opnds = n->nopnds <= 16 ? ops : ir_alloc(c->arena, (size_t)n->nopnds * sizeof *opnds);
    for (int j = 0; j < n->nopnds; j++)
      opnds[j] = map[n->opnds[j]->id];
    IrNode *k = ir_add_node(c, n->op, ir_strdup(c->arena, n->result->name), opnds, n->nopnds,
                            n->loc);
    k->result->type = n->result->type;
    for (int a = 0; a < n->nattrs; a++)
      ir_node_set_attr(c, k, n->attrs[a].key, n->attrs[a].vals, n->attrs[a].n, n->attrs[a].loc);
    map[n->result->id] = k->result;
  }
  for (int i = 0; i < m->noutputs; i++)
    ir_add_output(c, map[m->outputs[i]->id], m->output_locs ? m->output_locs[i] : (IrLoc){0});
  return c;
}

