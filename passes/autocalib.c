/* autocalib.c: --calib-method=auto, the calibration method chosen per
 * activation.
 *
 * The samples of the window are split: the last quarter (at least one) is
 * held back, the rest fits. Four observers per activation (minmax,
 * percentile:P with P from --calib-method's default 99.99, entropy, mse)
 * see the fit samples, in the two passes the histogram methods need. Each
 * gives a candidate range. Then the held-back samples run once: for each
 * activation x and each candidate range, the layer that consumes x (the
 * first quantizable linear or matmul by a constant taking it as its input)
 * is computed alone on x fake-quantized with that range, weights quantized
 * per output channel as the quantize pass does (or per tensor with
 * --weights=s8-per-tensor), output in f32, against the float layer on the
 * same x; the candidate whose isolated SQNR, 10 log10(sum y^2 / sum (y -
 * y_q)^2), is highest wins (ties: the first in the order above). An
 * activation no such layer consumes (a layer's result, a qmatmul operand)
 * is judged by its own SQNR after fake quantization. The chosen range is
 * the fit samples' one. Cost: two runs over the fit samples, one over the
 * held-back ones, and five times each consuming layer's work there. The
 * runs go through o->evaluator (compiled code, as calibrate.c's) when there
 * is one, with the interpreter's bits: the same values reach the observers
 * and the measurements, batch by batch. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "passes.h"

enum { NCAND = 4 };

static const PassCalibMethod candidates[NCAND] = {PASS_CALIB_MINMAX, PASS_CALIB_PERCENTILE,
                                                  PASS_CALIB_ENTROPY, PASS_CALIB_MSE};
static const char *const candidate_names[NCAND] = {"minmax", "percentile", "entropy", "mse"};

typedef struct {
  IrValue *v;
  PassObserver *obs[NCAND];
  IrQParams q[NCAND];
  float lo[NCAND], hi[NCAND];
  /* The consuming layer, or NULL: its float weight [N, K], the weight
   * quantized and dequantized, and its bias (or NULL). */
  const IrNode *layer;
  const float *w, *b;
  float *wdq;
  int64_t n, k;
  double ref2, err2[NCAND];
} Cand;

typedef struct {
  IrModule *m;
  const PassOptions *o;
  Cand *cands;
  int ncands;
  int *cand_of;   /* 1 + index by value id, 0 for none */
  int nids;
  bool evaluate;  /* held-back run: measure; else feed the observers */
  int pass;       /* 1 or 2 while fitting */
  float *y, *yq, *xq;  /* scratch */
  size_t cap_y, cap_yq, cap_x;
  /* The evaluator's handle (NULL: the interpreter), the node results it
   * gives and their data. */
  const PassEvaluator *ev;
  void *handle;
  IrValue **vals;
  const float **data;
  int nvals;
} Auto;

static bool grow(float **p, size_t *cap, size_t n) {
  if (n <= *cap)
    return true;
  float *q = realloc(*p, n * sizeof *q);
  if (!q)
    return false;
  *p = q;
  *cap = n;
  return true;
}

/* x fake-quantized: (q - zp) * scale as dequantize computes it. */
static void fake_quant(const IrQParams *p, const float *x, float *out, int64_t n) {
  int32_t qmin, qmax;
  ir_qbounds(p->dtype, &qmin, &qmax);
  for (int64_t i = 0; i < n; i++)
    out[i] = (float)(ir_quantize_value(x[i], p->scale, p->zero_point, qmin, qmax) -
                     p->zero_point) * p->scale;
}

/* y[rows, N] = x[rows, K] W^T + b, in double accumulation. */
static void layer_f32(const Cand *c, const float *w, const float *x, int64_t rows, float *y) {
  for (int64_t r = 0; r < rows; r++)
    for (int64_t j = 0; j < c->n; j++) {
      double acc = c->b ? c->b[j] : 0;
      const float *xr = x + r * c->k, *wr = w + j * c->k;
      for (int64_t i = 0; i < c->k; i++)
        acc += (double)xr[i] * wr[i];
      y[r * c->n + j] = (float)acc;
    }
}

static void evaluate(Auto *a, Cand *c, const float *x, int64_t numel) {
  if (!grow(&a->xq, &a->cap_x, (size_t)numel + 1)) {
    a->m->diag.failed = true;
    return;
  }
  if (!c->layer) {
    for (int64_t i = 0; i < numel; i++)
      c->ref2 += (double)x[i] * x[i];
    for (int k = 0; k < NCAND; k++) {
      fake_quant(&c->q[k], x, a->xq, numel);
      for (int64_t i = 0; i < numel; i++)
        c->err2[k] += ((double)x[i] - a->xq[i]) * ((double)x[i] - a->xq[i]);
    }
    return;
  }
  int64_t rows = numel / c->k;
  if (!grow(&a->y, &a->cap_y, (size_t)(rows * c->n) + 1) ||
      !grow(&a->yq, &a->cap_yq, (size_t)(rows * c->n) + 1)) {
    a->m->diag.failed = true;
    return;
  }
  float *yq = a->yq;
  layer_f32(c, c->w, x, rows, a->y);
  for (int64_t i = 0; i < rows * c->n; i++)
    c->ref2 += (double)a->y[i] * a->y[i];
  for (int k = 0; k < NCAND; k++) {
    fake_quant(&c->q[k], x, a->xq, numel);
    layer_f32(c, c->wdq, a->xq, rows, yq);
    for (int64_t i = 0; i < rows * c->n; i++)
      c->err2[k] += ((double)a->y[i] - yq[i]) * ((double)a->y[i] - yq[i]);
  }
}

static void see(Auto *a, const IrValue *v, const IrTensor *t) {
  int i = v->id >= 0 && v->id < a->nids ? a->cand_of[v->id] - 1 : -1;
  int64_t n;
  if (i < 0 || t->type.dtype != IR_F32 || !ir_type_numel(&t->type, 1, &n))
    return;
  Cand *c = &a->cands[i];
  if (a->evaluate) {
    evaluate(a, c, t->data, n);
    return;
  }
  for (int k = 0; k < NCAND; k++)
    if (a->pass == 1 || pass_observer_passes(c->obs[k]) == 2)
      pass_observer_update(c->obs[k], t->data, n);
}

static void observe(void *user, const IrNode *node, const IrTensor *t) {
  see(user, node->result, t);
}

static bool run(Auto *a, PassSamples *s) {
  IrModule *m = a->m;
  IrTensor *in = calloc((size_t)m->ninputs + 1, sizeof *in);
  IrTensor *out = calloc((size_t)m->noutputs + 1, sizeof *out);
  bool ok = in && out && pass_samples_rewind(s);
  for (int64_t batch; ok && (batch = pass_samples_next(s, in)) != 0;) {
    ok = batch > 0;
    for (int i = 0; ok && i < m->ninputs; i++)
      see(a, m->inputs[i], &in[i]);
    if (ok && a->handle) {
      char err[512];
      if (!a->ev->run(a->handle, in, batch, a->data, err, sizeof err))
        ok = ir_error(&m->diag, (IrLoc){0}, "calibrate: %s", err);
      for (int i = 0; ok && i < a->nvals; i++) {
        IrTensor t = {ir_type_bind(&a->vals[i]->type, batch), (void *)a->data[i]};
        see(a, a->vals[i], &t);
      }
      ok = ok && !m->diag.failed;
      continue;
    }
    ok = ok && ir_interp_f32(m, batch, in, out, observe, a) && !m->diag.failed;
    for (int i = 0; ok && i < m->noutputs; i++)
      free(out[i].data);
  }
  if (!in || !out || (m->diag.failed && !m->diag.msg[0]))
    ok = ir_error(&m->diag, (IrLoc){0}, "out of memory for automatic calibration");
  free(in);
  free(out);
  return ok;
}

/* The first quantizable node with a constant weight that takes v as its
 * input; its weights quantized as the quantize pass will. */
static void find_layer(IrModule *m, const PassOptions *o, Cand *c) {
  for (int i = 0; i < m->nnodes; i++) {
    const IrNode *n = m->nodes[i];
    bool fits;
    if (n->opnds[0] != c->v || !pass_is_quantizable(m, n, o) || pass_is_act_matmul(n, &fits) ||
        c->v->type.rank < 1)
      continue;
    c->layer = n;
    c->w = pass_weight_nk(m, n, &c->n, &c->k);
    c->b = n->op == IR_OP_LINEAR && n->nopnds > 2 ? ir_const_data(m, n->opnds[2]) : NULL;
    int64_t nscales = o->weights_per_tensor ? 1 : c->n;
    int8_t *q = ir_alloc_data(m->arena, (size_t)(c->n * c->k) + 1);
    float *s = ir_alloc_data(m->arena, (size_t)nscales * sizeof *s);
    c->wdq = ir_alloc_data(m->arena, (size_t)(c->n * c->k + 1) * sizeof *c->wdq);
    ir_quantize_weights_q(c->w, c->n, c->k, !o->weights_per_tensor,
                          o->reduce_range ? IR_WEIGHT_QMAX_7BIT : 127, q, s);
    for (int64_t j = 0; j < c->n; j++)
      for (int64_t k = 0; k < c->k; k++)
        c->wdq[j * c->k + k] = (float)q[j * c->k + k] * s[o->weights_per_tensor ? 0 : j];
    return;
  }
}

bool pass_calibrate_auto(IrModule *m, const PassOptions *o, IrValue **want, int nwant) {
  PassSamples *s = pass_samples_open_for(m, o);
  if (!s)
    return false;
  int64_t total = pass_samples_count(s), first = o->calib_first > 0 ? o->calib_first : 0;
  if (total < 2) {
    pass_samples_close(s);
    return ir_error(&m->diag, (IrLoc){0},
                    "--calib-method=auto holds back a quarter of the samples to choose on: it "
                    "needs at least 2, %s has %lld",
                    o->calib_path, (long long)total);
  }
  int64_t held = total / 4 > 0 ? total / 4 : 1, fit = total - held;
  Auto a = {m, o, ir_alloc(m->arena, (size_t)nwant * sizeof(Cand)), nwant, NULL,
            ir_number_values(m), false, 1, NULL, NULL, NULL, 0, 0, 0,
            NULL, NULL, NULL, NULL, 0};
  a.cand_of = ir_alloc(m->arena, (size_t)(a.nids + 1) * sizeof *a.cand_of);
  bool ok = true;
  for (int i = 0; ok && i < nwant; i++) {
    Cand *c = &a.cands[i];
    memset(c, 0, sizeof *c);
    c->v = want[i];
    a.cand_of[want[i]->id] = i + 1;
    for (int k = 0; ok && k < NCAND; k++) {
      PassCalibConfig cfg = o->calib;
      cfg.method = candidates[k];
      ok = (c->obs[k] = pass_observer_new(&cfg)) != NULL;
    }
    if (!ok)
      ir_error(&m->diag, (IrLoc){0}, "out of memory for calibration histograms");
    find_layer(m, o, c);
  }
  /* The node results through the evaluator, when there is one (as
   * calibrate.c: "calibrate: compile" in --time-passes). */
  a.ev = ok && !getenv("Q8_CALIB_INTERP") ? o->evaluator : NULL;
  if (a.ev) {
    a.vals = ir_alloc(m->arena, (size_t)nwant * sizeof *a.vals);
    a.data = ir_alloc(m->arena, (size_t)nwant * sizeof *a.data);
    for (int i = 0; i < nwant; i++)
      if (want[i]->kind == IR_VAL_NODE)
        a.vals[a.nvals++] = want[i];
  }
  if (a.nvals > 0) {
    double t0 = pass_clock();
    pass_stage(o, PASS_EVENT_BEGIN, "calibrate: compile", 0);
    a.handle = a.ev->open(a.ev->user, m, a.vals, a.nvals, pass_samples_batch(s),
                          2 * fit + held);
    pass_stage(o, PASS_EVENT_END, a.handle ? "calibrate: compile" : "calibrate: interpreter",
               pass_clock() - t0);
  }
  /* Fit: two passes (the histogram methods' second fills the histogram). */
  pass_samples_window(s, first, fit);
  for (a.pass = 1; ok && a.pass <= 2; a.pass++) {
    if (a.pass == 2)
      for (int i = 0; i < nwant; i++)
        for (int k = 0; k < NCAND; k++)
          pass_observer_next_pass(a.cands[i].obs[k]);
    ok = run(&a, s);
    pass_progress(o, "calibrate", a.pass * fit, 2 * fit + held);
  }
  for (int i = 0; ok && i < nwant; i++)
    for (int k = 0; k < NCAND; k++) {
      Cand *c = &a.cands[i];
      char note[256];
      if (!pass_observer_range(c->obs[k], &c->lo[k], &c->hi[k], note, sizeof note))
        c->lo[k] = c->hi[k] = 0;
      if (note[0] && k == 0)
        pass_note(o, "calibrate: %%%s: %s", c->v->name, note);
      ir_qparams_from_range(c->lo[k], c->hi[k], o->activations, &c->q[k]);
    }
  /* Choose on the held-back samples. */
  a.evaluate = true;
  pass_samples_window(s, first + fit, held);
  ok = ok && run(&a, s);
  pass_progress(o, "calibrate", 2 * fit + held, 2 * fit + held);
  for (int i = 0; ok && i < nwant; i++) {
    Cand *c = &a.cands[i];
    double sqnr[NCAND];
    int best = 0;
    for (int k = 0; k < NCAND; k++) {
      sqnr[k] = c->err2[k] == 0 ? INFINITY : 10 * log10(c->ref2 / c->err2[k]);
      if (isnan(sqnr[k]))
        sqnr[k] = -INFINITY;
      if (sqnr[k] > sqnr[best])
        best = k;
    }
    ir_set_value_range(m, c->v, c->lo[best], c->hi[best]);
    char by[300];
    if (c->layer)
      snprintf(by, sizeof by, "isolated SQNR of %%%s", c->layer->result->name);
    else
      snprintf(by, sizeof by, "SQNR of %%%s itself", c->v->name);
    pass_decision(o, "calibrate %%%s: auto chose %s (%s on %lld held-back samples: minmax %.2f, "
                     "percentile %.2f, entropy %.2f, mse %.2f dB)",
                  c->v->name, candidate_names[best], by, (long long)held, sqnr[0], sqnr[1],
                  sqnr[2], sqnr[3]);
    pass_note(o, "calibrate: %%%s: auto chose %s (%s: %.2f dB; minmax %.2f)", c->v->name,
              candidate_names[best], by, sqnr[best], sqnr[0]);
  }
  if (a.handle)
    a.ev->close(a.handle);
  for (int i = 0; i < nwant; i++)
    for (int k = 0; k < NCAND; k++)
      pass_observer_free(a.cands[i].obs[k]);
  free(a.y);
  free(a.yq);
  free(a.xq);
  pass_samples_close(s);
  return ok;
}
