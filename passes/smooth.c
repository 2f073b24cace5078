/* smooth.c: the smooth pass, SmoothQuant (Xiao et al., 2023) with --smooth.
 *
 * An activation X with a few channels far larger than the rest quantizes
 * badly per tensor: the outlier channels set the scale, the others get a few
 * levels. When every use of X is a linear layer with constant weights
 * (linear, or matmul by a rank-2 constant), X W^T = (X / s)(W s)^T for any
 * s > 0 per input channel, so the pass moves the range from X into the
 * weights, which are quantized per output channel and take it well:
 *
 *   s_j = max|X_j|^alpha / max|W_j|^(1-alpha)
 *
 * with max|X_j| from the calibration samples (the window of o) and max|W_j|
 * over column j of every consumer's weight. W_j * s_j goes into each
 * consumer; X_j / s_j is folded into what produces X, when that is
 *
 *   - layernorm: gamma_j / s_j and beta_j / s_j;
 *   - rmsnorm: gamma_j / s_j;
 *   - a linear or matmul by a constant, directly or through one relu (which
 *     is positively homogeneous: relu(y / s) = relu(y) / s for s > 0): row j
 *     of its weight and its bias_j divided by s_j;
 *   - attention's heads merged, x = merge(P split(v)): the linear that makes
 *     v (or v's rows of a fused QKV projection), row j divided by s_j, since
 *     P v is linear in v's channels (smooth_attn.c).
 *
 * A norm whose result also feeds other ops (post-LN BERT's residual add) is
 * first copied for its linear consumers (`%x.smooth`), and the copy is
 * smoothed. Nothing else changes: the float model computes the same
 * function but for rounding. Changed constants get new names (`@ln.gamma.smooth`), so a dump
 * shows what was smoothed, and each smoothed activation gets a note and a
 * line in the report's decisions. A weight named in --keep-float keeps its
 * layer in f32 through the rename ({keep_float = 1}). With --target-sqnr or
 * --max-top1-drop the autopilot (autopilot.c) calls this pass itself, on
 * its fit samples, and the pipeline's run does nothing. Linear in the graph:
 * two sweeps to find the candidates, one run over the samples, one sweep per
 * constant changed. docs/quantization.md, "Smoothing", has the arithmetic. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "passes.h"

typedef struct {
  IrValue *x;          /* the activation smoothed */
  IrNode *producer;    /* layernorm, rmsnorm, linear or matmul by a constant */
  bool relu;           /* a relu lies between the producer and x */
  bool attn;           /* x is attention's heads merged (smooth_attn.c): the
                        * producer makes V, whose outputs [off, off + c)
                        * become x's channels */
  int64_t off;
  IrNode **users;      /* the linear layers consuming x */
  int nusers;
  int64_t c;           /* channels: x's last dim */
  float *xmax;         /* max|x_j| over the samples */
} Group;

/* Is `n` a linear layer with a constant f32 weight whose input channels are
 * the `c` channels of x (operand 0, and x nowhere else in it)? */
static bool consumes(const IrNode *n, const IrValue *x, int64_t c) {
  if ((n->op != IR_OP_LINEAR && n->op != IR_OP_MATMUL) || n->nopnds < 2 || n->opnds[0] != x)
    return false;
  const IrValue *w = n->opnds[1];
  if (w->kind != IR_VAL_CONST || w->type.dtype != IR_F32 || w->type.rank != 2 || w->literal)
    return false;
  for (int i = 1; i < n->nopnds; i++)
    if (n->opnds[i] == x)
      return false;
  return w->type.dims[n->op == IR_OP_LINEAR ? 1 : 0] == c;
}

/* A producer whose output channels can be scaled: layernorm or rmsnorm with
 * constant [c] parameters, or a linear or matmul with a constant weight
 * (and bias) with c outputs. */
static bool foldable(const IrNode *n, int64_t c) {
  const IrType *t;
  switch (n->op) {
  case IR_OP_LAYERNORM:
  case IR_OP_RMSNORM:
    for (int i = 1; i < n->nopnds; i++) {
      t = &n->opnds[i]->type;
      if (n->opnds[i]->kind != IR_VAL_CONST || n->opnds[i]->literal || t->dtype != IR_F32 ||
          t->rank != 1 || t->dims[0] != c)
        return false;
    }
    return true;
  case IR_OP_LINEAR:
  case IR_OP_MATMUL:
    if (n->nopnds < 2 || n->opnds[1]->kind != IR_VAL_CONST || n->opnds[1]->literal)
      return false;
    t = &n->opnds[1]->type;
    if (t->dtype != IR_F32 || t->rank != 2 || t->dims[n->op == IR_OP_LINEAR ? 0 : 1] != c)
      return false;
    if (n->nopnds > 2) {
      t = &n->opnds[2]->type;
      if (n->op != IR_OP_LINEAR || n->opnds[2]->kind != IR_VAL_CONST || n->opnds[2]->literal ||
          t->dtype != IR_F32 || t->rank != 1 || t->dims[0] != c)
        return false;
    }
    return true;
  default:
    return false;
  }
}

/* The producer of x when x can be smoothed into it, else NULL. */
static IrNode *producer_of(const IrModule *m, const IrValue *x, int64_t c, bool *relu) {
  IrNode *p = x->kind == IR_VAL_NODE ? x->def : NULL;
  *relu = false;
  if (p && p->op == IR_OP_RELU) {
    IrValue *y = p->opnds[0];
    if (y->kind != IR_VAL_NODE || ir_count_uses(m, y) != 1 || y->type.dtype != IR_F32 ||
        (y->def->op != IR_OP_LINEAR && y->def->op != IR_OP_MATMUL))
      return NULL;
    *relu = true;
    p = y->def;
  }
  return p && foldable(p, c) ? p : NULL;
}

/* A layernorm or rmsnorm whose result x feeds linear layers (at least one
 * quantizable) and something else too (post-LN BERT's residual add): the
 * linear consumers get a copy of the norm, `%x.smooth`, with the same
 * operands and eps, placed right after it, so that smoothing can fold into
 * the copy's gamma and beta and the other uses keep x. Returns the number
 * of copies; one sweep to count uses, one to rebuild the node list. */
static int clone_norms(IrModule *m, const PassOptions *o) {
  int nids = ir_number_values(m);
  int *uses = ir_alloc(m->arena, (size_t)(nids + 1) * sizeof *uses);
  bool *quant = ir_alloc(m->arena, (size_t)(nids + 1) * sizeof *quant);
  for (int i = 0; i < m->nnodes; i++) {
    IrNode *u = m->nodes[i];
    IrValue *x = u->nopnds ? u->opnds[0] : NULL;
    if (x && x->id >= 0 && x->id < nids && x->type.rank >= 1 &&
        consumes(u, x, x->type.dims[x->type.rank - 1])) {
      uses[x->id]++;
      quant[x->id] |= pass_is_quantizable(m, u, o);
    }
  }
  IrNode **list = ir_alloc(m->arena, (size_t)(2 * m->nnodes + 1) * sizeof *list);
  IrNode **clone_of = ir_alloc(m->arena, (size_t)(nids + 1) * sizeof *clone_of);
  int n = 0, clones = 0;
  for (int i = 0; i < m->nnodes; i++) {
    IrNode *p = m->nodes[i];
    IrValue *x = p->result;
    list[n++] = p;
    if ((p->op != IR_OP_LAYERNORM && p->op != IR_OP_RMSNORM) || x->id < 0 || x->id >= nids ||
        !quant[x->id] || uses[x->id] == ir_count_uses(m, x) || x->type.dtype != IR_F32 ||
        !foldable(p, x->type.dims[x->type.rank - 1]))
      continue;
    char name[512];
    snprintf(name, sizeof name, "%s.smooth", x->name);
    IrNode *c = ir_new_node(m, p->op, NULL, ir_unique_name(m, name), p->opnds, p->nopnds, p->loc);
    c->result->type = x->type;
    ir_copy_attr(m, p, c, IR_ATTR_EPS);
    clone_of[x->id] = c;
    list[n++] = c;
    clones++;
  }
  if (!clones)
    return 0;
  ir_set_nodes(m, list, n);
  for (int i = 0; i < m->nnodes; i++) {
    IrNode *u = m->nodes[i];
    IrValue *x = u->nopnds ? u->opnds[0] : NULL;
    IrNode *c = x && x->id >= 0 && x->id < nids ? clone_of[x->id] : NULL;
    if (c && c != u && consumes(u, x, x->type.dims[x->type.rank - 1]))
      ir_set_operand(m, u, 0, c->result);
  }
  return clones;
}

/* The candidates, in node order: values whose every use is a consuming
 * linear layer (at least one of them quantizable) and whose producer can
 * take the division. Two sweeps: count the consuming uses, then list them. */
static int find_groups(IrModule *m, const PassOptions *o, Group *groups) {
  int nids = ir_number_values(m);
  int *uses = ir_alloc(m->arena, (size_t)(nids + 1) * sizeof *uses);
  int *group_of = ir_alloc(m->arena, (size_t)(nids + 1) * sizeof *group_of);
  for (int i = 0; i < m->nnodes; i++) {
    IrValue *x = m->nodes[i]->nopnds ? m->nodes[i]->opnds[0] : NULL;
    if (x && x->id >= 0 && x->id < nids && x->type.rank >= 1 &&
        consumes(m->nodes[i], x, x->type.dims[x->type.rank - 1]))
      uses[x->id]++;
  }
  int n = 0;
  for (int i = 0; i < m->nnodes; i++) {
    IrValue *x = m->nodes[i]->result;
    if (x->id < 0 || x->id >= nids || uses[x->id] == 0 || uses[x->id] != ir_count_uses(m, x) ||
        x->type.dtype != IR_F32)
      continue;
    int64_t c = x->type.dims[x->type.rank - 1];
    bool relu;
    int64_t off = 0;
    IrNode *p = c > 0 ? producer_of(m, x, c, &relu) : NULL;
    bool attn = !p && c > 0 && (p = pass_smooth_through_attention(m, x, c, &off)) != NULL;
    if (!p)
      continue;
    groups[n] = (Group){x, p, relu, attn, off,
                        ir_alloc(m->arena, (size_t)uses[x->id] * sizeof(IrNode *)), 0, c, NULL};
    group_of[x->id] = ++n;
  }
  for (int i = 0; i < m->nnodes; i++) {
    IrNode *u = m->nodes[i];
    IrValue *x = u->nopnds ? u->opnds[0] : NULL;
    int g = x && x->id >= 0 && x->id < nids ? group_of[x->id] - 1 : -1;
    if (g >= 0 && consumes(u, x, groups[g].c))
      groups[g].users[groups[g].nusers++] = u;
  }
  /* Smoothing only pays where a consumer will be int8. */
  int kept = 0;
  for (int g = 0; g < n; g++) {
    bool any = false;
    for (int i = 0; i < groups[g].nusers; i++)
      any |= pass_is_quantizable(m, groups[g].users[i], o);
    if (any)
      groups[kept++] = groups[g];
  }
  return kept;
}

typedef struct {
  Group **by_id;
  int nids;
} Stats;

/* max|x_j| per channel of every smoothed activation. */
static void observe(void *user, const IrNode *node, const IrTensor *t) {
  Stats *st = user;
  int id = node->result->id;
  Group *g = id >= 0 && id < st->nids ? st->by_id[id] : NULL;
  int64_t n;
  if (!g || t->type.dtype != IR_F32 || !ir_type_numel(&t->type, 1, &n))
    return;
  const float *x = t->data;
  for (int64_t i = 0; i < n; i++) {
    float a = fabsf(x[i]);
    int64_t j = i % g->c;
    if (a > g->xmax[j]) /* NaN never compares greater: ignored */
      g->xmax[j] = a;
  }
}

static bool collect(IrModule *m, const PassOptions *o, Group *groups, int ngroups) {
  Stats st = {NULL, ir_number_values(m)};
  st.by_id = ir_alloc(m->arena, (size_t)(st.nids + 1) * sizeof *st.by_id);
  for (int g = 0; g < ngroups; g++) {
    groups[g].xmax = ir_alloc(m->arena, (size_t)groups[g].c * sizeof(float));
    st.by_id[groups[g].x->id] = &groups[g];
  }
  PassSamples *s = pass_samples_open_for(m, o);
  if (!s)
    return false;
  IrTensor *in = calloc((size_t)m->ninputs + 1, sizeof *in);
  IrTensor *out = calloc((size_t)m->noutputs + 1, sizeof *out);
  bool ok = in && out;
  if (!ok)
    ir_error(&m->diag, (IrLoc){0}, "out of memory");
  int64_t done = 0, total = pass_samples_count(s);
  for (int64_t batch; ok && (batch = pass_samples_next(s, in)) != 0;) {
    ok = batch > 0 && ir_interp_f32(m, batch, in, out, observe, &st);
    for (int i = 0; ok && i < m->noutputs; i++)
      free(out[i].data);
    done += batch;
    if (ok)
      pass_progress(o, "smooth", done, total);
  }
  free(in);
  free(out);
  pass_samples_close(s);
  return ok;
}

/* A writable copy of constant operand `i` of `n`, put in its place: a new
 * constant NAME.smooth, or the node's own one when it is already such a
 * copy used nowhere else. */
static float *own_const(IrModule *m, const PassOptions *o, IrNode *n, int i) {
  IrValue *c = n->opnds[i];
  int64_t numel;
  ir_type_numel(&c->type, 1, &numel);
  size_t len = strlen(c->name);
  if (len > 7 && strcmp(c->name + len - 7, ".smooth") == 0 && ir_count_uses(m, c) == 1)
    return (float *)c->data;
  float *data = ir_alloc_data(m->arena, (size_t)numel * sizeof *data);
  memcpy(data, ir_const_data(m, c), (size_t)numel * sizeof *data);
  if (i == 1 && pass_name_listed(o->keep_float, c->name))
    ir_set_attr_int(m, n, IR_ATTR_KEEP_FLOAT, 1);
  char name[600];
  snprintf(name, sizeof name, "%s.smooth", c->name);
  ir_set_operand(m, n, i, ir_add_const(m, ir_unique_const_name(m, name), c->type, data, c->loc));
  return data;
}

/* Scale channel j of x's consumers' weights by s_j (columns of W [N, c],
 * rows of B [c, N]). */
static void scale_users(IrModule *m, const PassOptions *o, Group *g, const double *s) {
  for (int u = 0; u < g->nusers; u++) {
    IrNode *n = g->users[u];
    float *w = own_const(m, o, n, 1);
    int64_t r = n->opnds[1]->type.dims[0], cols = n->opnds[1]->type.dims[1];
    for (int64_t i = 0; i < r; i++)
      for (int64_t j = 0; j < cols; j++)
        w[i * cols + j] = (float)(w[i * cols + j] * s[n->op == IR_OP_LINEAR ? j : i]);
  }
}

/* Divide output channel j of the producer by s_j. */
static void scale_producer(IrModule *m, const PassOptions *o, Group *g, const double *s) {
  IrNode *p = g->producer;
  if (p->op == IR_OP_LAYERNORM || p->op == IR_OP_RMSNORM) {
    for (int i = 1; i < p->nopnds; i++) {
      float *v = own_const(m, o, p, i);
      for (int64_t j = 0; j < g->c; j++)
        v[j] = (float)(v[j] / s[j]);
    }
    return;
  }
  /* Outputs [off, off + c) of the producer are x's channels. */
  float *w = own_const(m, o, p, 1);
  int64_t r = p->opnds[1]->type.dims[0], cols = p->opnds[1]->type.dims[1];
  for (int64_t i = 0; i < r; i++)
    for (int64_t j = 0; j < cols; j++) {
      int64_t ch = (p->op == IR_OP_LINEAR ? i : j) - g->off;
      if (ch >= 0 && ch < g->c)
        w[i * cols + j] = (float)(w[i * cols + j] / s[ch]);
    }
  if (p->nopnds > 2) {
    float *b = own_const(m, o, p, 2);
    for (int64_t j = 0; j < g->c; j++)
      b[g->off + j] = (float)(b[g->off + j] / s[j]);
  }
}

/* max|W_j| over column j of every consumer. */
static void weight_max(IrModule *m, const Group *g, double *wmax) {
  for (int64_t j = 0; j < g->c; j++)
    wmax[j] = 0;
  for (int u = 0; u < g->nusers; u++) {
    const IrNode *n = g->users[u];
    const float *w = ir_const_data(m, n->opnds[1]);
    int64_t r = n->opnds[1]->type.dims[0], cols = n->opnds[1]->type.dims[1];
    for (int64_t i = 0; i < r; i++)
      for (int64_t j = 0; j < cols; j++) {
        double a = fabs(w[i * cols + j]);
        int64_t ch = n->op == IR_OP_LINEAR ? j : i;
        if (a > wmax[ch])
          wmax[ch] = a;
      }
  }
}

static const char *producer_text(IrArena *a, const Group *g) {
  char buf[512];
  const IrNode *p = g->producer;
  if (p->op == IR_OP_LAYERNORM)
    snprintf(buf, sizeof buf, "layernorm %%%s gamma and beta", p->result->name);
  else if (p->op == IR_OP_RMSNORM)
    snprintf(buf, sizeof buf, "rmsnorm %%%s gamma", p->result->name);
  else if (g->attn)
    snprintf(buf, sizeof buf, "%s %%%s outputs [%lld, %lld) through attention (V)",
             ir_op_info[p->op].name, p->result->name, (long long)g->off,
             (long long)(g->off + g->c));
  else
    snprintf(buf, sizeof buf, "%s %%%s%s", ir_op_info[p->op].name, p->result->name,
             g->relu ? " through relu" : "");
  return ir_strdup(a, buf);
}

bool pass_smooth(IrModule *m, const PassOptions *o) {
  /* With a budget the autopilot smooths, as its chosen trial did. */
  if (!o->smooth || o->has_target_sqnr || o->has_max_top1_drop)
    return true;
  int clones = clone_norms(m, o);
  if (clones)
    pass_note(o, "smooth: %d norm%s also feeding other ops copied for %s linear consumers "
                 "(NAME.smooth)", clones, clones == 1 ? "" : "s", clones == 1 ? "its" : "their");
  Group *groups = ir_alloc(m->arena, (size_t)(m->nnodes + 1) * sizeof *groups);
  int ngroups = find_groups(m, o, groups);
  if (ngroups == 0) {
    pass_note(o, "smooth: nothing to smooth (no layernorm, rmsnorm or linear layer feeds only "
                 "linear layers)");
    return true;
  }
  if (!o->calib_path)
    return ir_error(&m->diag, ngroups ? groups[0].x->loc : (IrLoc){0},
                    "--smooth needs calibration samples to measure %%%s and the other "
                    "activations it smooths: give --calib FILE",
                    groups[0].x->name);
  if (!collect(m, o, groups, ngroups))
    return false;
  double alpha = o->smooth_alpha;
  for (int gi = 0; gi < ngroups; gi++) {
    Group *g = &groups[gi];
    double *s = ir_alloc(m->arena, (size_t)g->c * sizeof *s);
    double *wmax = ir_alloc(m->arena, (size_t)g->c * sizeof *wmax);
    weight_max(m, g, wmax);
    double smin = INFINITY, smax = 0, before = 0, after = 0;
    for (int64_t j = 0; j < g->c; j++) {
      double x = g->xmax[j], w = wmax[j];
      s[j] = x > 0 && w > 0 && isfinite(x) ? pow(x, alpha) / pow(w, 1 - alpha) : 1;
      if (!(s[j] > 0) || !isfinite(s[j]))
        s[j] = 1;
      smin = fmin(smin, s[j]);
      smax = fmax(smax, s[j]);
      before = fmax(before, x);
      after = fmax(after, x / s[j]);
    }
    scale_users(m, o, g, s);
    scale_producer(m, o, g, s);
    const char *into = producer_text(m->arena, g);
    pass_note(o, "smooth: %%%s (%lld channels, %d layer%s): max|x| %.4g -> %.4g, s in [%.4g, %.4g], "
                 "folded into %s",
              g->x->name, (long long)g->c, g->nusers, g->nusers == 1 ? "" : "s", before, after,
              smin, smax, into);
    pass_decision(o, "smooth %%%s: alpha %g, %lld channels, max|x| %.4g -> %.4g, s in [%.4g, "
                     "%.4g], folded into %s",
                  g->x->name, alpha, (long long)g->c, before, after, smin, smax, into);
  }
  if (o->smoothed) {
    ir_module_free(*o->smoothed);
    ir_remove_dead(m);
    *o->smoothed = pass_clone_module(m);
  }
  return true;
}
