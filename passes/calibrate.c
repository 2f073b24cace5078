/* calibrate.c: the calibrate pass. It runs the float model over the
 * calibration samples and gives every activation a quantizable op consumes or
 * produces a `range` attribute, from one observer per activation
 * (observe.c). The model runs through o->evaluator when the caller gives
 * one (the driver and the API: compiled code, api/jiteval.c), else, or with
 * Q8_CALIB_INTERP set in the environment, in the interpreter; both compute
 * the same bits, so the ranges are the same.
 *
 * Samples are streamed in batches of --calib-batch rows, so memory is bounded
 * by the observers' histograms and one batch of activations, never by the
 * number of samples. Histogram methods read the data twice: once for min and
 * max, once to fill the histogram over that range. Ranges already written in
 * the IR are kept as given; a model whose activations all have ranges needs
 * no data. Progress (samples read of all to read) goes to the event callback
 * after every batch (every run, when a run gathers batches, below).
 *
 * Compiled code streams every weight once per run, so when the model's rows
 * are independent (rowwise.c) the evaluator runs up to RUN_ROWS samples at
 * once (Q8_CALIB_ROWS in the environment sets another number): that many
 * --calib-batch batches gathered into one run, the last run padded by the
 * evaluator. The observers still see each --calib-batch batch on its own,
 * in order, so every method (ma-minmax's per-batch averages too) gets what
 * the interpreter gives it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "passes.h"

/* Samples per compiled run (the evaluator's batch), and at most this many
 * bytes of observed values in one run. */
enum { RUN_ROWS = 256 };
static const int64_t run_bytes = (int64_t)256 << 20;

typedef struct {
  PassObserver **by_id;  /* observer of each value id, or NULL */
  const PassOptions *o;
  int64_t done, total;   /* samples read, over every pass over the data */
} Calib;

static void observe(void *user, const IrNode *node, const IrTensor *t) {
  Calib *c = user;
  PassObserver *obs = c->by_id[node->result->id];
  int64_t n;
  if (obs && t->type.dtype == IR_F32 && ir_type_numel(&t->type, 1, &n))
    pass_observer_update(obs, t->data, n);
}

/* The activations that need a range and have none yet, each once (marked
 * by value id, so that the pass stays linear in the graph). */
static int wanted_values(IrModule *m, const PassOptions *o, IrValue **out) {
  int n = 0, count = ir_number_values(m);
  bool *listed = ir_alloc(m->arena, (size_t)(count + 1) * sizeof *listed);
  double lo, hi;
  for (int i = 0; i < m->nnodes; i++) {
    IrNode *node = m->nodes[i];
    if (!pass_is_quantizable(m, node, o) || pass_node_grouped(m, node, o))
      continue;
    /* A qmatmul quantizes both operands: its right one is an activation. */
    bool fits, act = pass_is_act_matmul(node, &fits);
    IrValue *vs[3] = {node->opnds[0], node->result, node->opnds[1]};
    for (int j = 0; j < (act ? 3 : 2); j++) {
      IrValue *v = vs[j];
      bool numbered = v->id >= 0 && v->id < count;
      if (ir_value_range(v, &lo, &hi) || (numbered && listed[v->id]))
        continue;
      if (numbered)
        listed[v->id] = true;
      out[n++] = v;
    }
  }
  return n;
}

/* The evaluator's side of a pass over the samples: its handle and the
 * values it reports, each with its observer. */
typedef struct {
  const PassEvaluator *ev;
  void *handle;
  IrValue **vals; /* the observed node results */
  PassObserver **obs;
  const float **data;
  int nvals;
  /* Gathering (group > 1): `group` sample batches a run, each input's rows
   * copied into gather[i] (row_bytes[i] a row); chunk[] the batches of the
   * run being gathered, in order. */
  int64_t group, *chunk;
  void **gather;
  size_t *row_bytes;
} Eval;

/* Feed each observed node result of one run from the evaluator, in the
 * order of the values and, for each, the run's sample batches in order (each
 * observer sees its value's batches in sample order, as with the
 * interpreter). A value without the batch dim is the same in every batch,
 * and is fed once per batch, as the interpreter feeds it. */
static bool eval_run(IrModule *m, Eval *e, const IrTensor *in, int64_t rows,
                     const int64_t *chunk, int nchunks) {
  char err[512];
  if (!e->ev->run(e->handle, in, rows, e->data, err, sizeof err))
    return ir_error(&m->diag, (IrLoc){0}, "calibrate: %s", err);
  for (int i = 0; i < e->nvals; i++) {
    const IrType *t = &e->vals[i]->type;
    bool batched = t->rank > 0 && t->dims[0] == IR_DIM_BATCH;
    int64_t per_row = 0, at = 0, n;
    if (batched && !ir_type_numel(t, 1, &per_row))
      continue;
    for (int c = 0; c < nchunks; c++) {
      if (ir_type_numel(t, chunk[c], &n))
        pass_observer_update(e->obs[i], e->data[i] + at, n);
      at += batched ? chunk[c] * per_row : 0;
    }
  }
  return true;
}

/* Up to e->group sample batches into e->gather, the input observers fed
 * from each: the rows gathered (0 at the end, -1 on error), chunk[] and
 * *nchunks the batches. */
static int64_t gather(IrModule *m, PassSamples *samples, Eval *e, IrTensor *in,
                      PassObserver **input_obs, int *nchunks) {
  int64_t rows = 0, batch = 0;
  *nchunks = 0;
  while (*nchunks < e->group && (batch = pass_samples_next(samples, in)) > 0) {
    for (int i = 0; i < m->ninputs; i++) {
      int64_t n;
      if (input_obs[i] && ir_type_numel(&in[i].type, batch, &n))
        pass_observer_update(input_obs[i], in[i].data, n);
      memcpy((char *)e->gather[i] + (size_t)rows * e->row_bytes[i], in[i].data,
             (size_t)batch * e->row_bytes[i]);
    }
    e->chunk[(*nchunks)++] = batch;
    rows += batch;
  }
  if (batch < 0)
    return -1;
  for (int i = 0; i < m->ninputs; i++) {
    in[i].type = ir_type_bind(&m->inputs[i]->type, rows);
    in[i].data = e->gather[i];
  }
  return rows;
}

/* One pass over all samples, feeding every observer: model inputs directly,
 * node results through the evaluator, or the interpreter's observer hook. */
static bool run_samples(IrModule *m, PassSamples *samples, Calib *c, PassObserver **input_obs,
                        Eval *e) {
  IrTensor *in = calloc((size_t)m->ninputs, sizeof *in);
  IrTensor *out = calloc((size_t)m->noutputs, sizeof *out);
  bool ok = in && out;
  if (!ok)
    ir_error(&m->diag, (IrLoc){0}, "out of memory");
  while (ok && e->handle && e->group > 1) {
    int nchunks;
    int64_t rows = gather(m, samples, e, in, input_obs, &nchunks);
    ok = rows >= 0;
    if (rows <= 0)
      break;
    ok = eval_run(m, e, in, rows, e->chunk, nchunks);
    c->done += rows;
    if (ok)
      pass_progress(c->o, "calibrate", c->done, c->total);
  }
  for (int64_t batch; ok && !(e->handle && e->group > 1) &&
                      (batch = pass_samples_next(samples, in)) != 0;) {
    ok = batch > 0;
    for (int i = 0; ok && i < m->ninputs; i++) {
      int64_t n;
      ir_type_numel(&in[i].type, batch, &n);
      if (input_obs[i])
        pass_observer_update(input_obs[i], in[i].data, n);
    }
    if (e->handle) {
      ok = ok && eval_run(m, e, in, batch, &batch, 1);
    } else {
      ok = ok && ir_interp_f32(m, batch, in, out, observe, c);
      for (int i = 0; ok && i < m->noutputs; i++)
        free(out[i].data);
    }
    /* A batch is `batch` samples, or one when each sample runs alone. */
    c->done += batch > 0 ? batch : 0;
    if (ok)
      pass_progress(c->o, "calibrate", c->done, c->total);
  }
  free(in);
  free(out);
  return ok;
}

/* Sample batches per compiled run: 1 unless the samples come in batches
 * (every input batch-first) and the model's rows are independent; then
 * RUN_ROWS samples (or Q8_CALIB_ROWS), no more than the samples' whole
 * batches and than run_bytes of observed values allow. */
static int64_t run_group(const IrModule *m, PassSamples *samples, IrValue *const *vals,
                         int nvals) {
  int64_t batch = pass_samples_batch(samples), rows = RUN_ROWS, bytes = 0;
  const char *env = getenv("Q8_CALIB_ROWS");
  if (env && strtoll(env, NULL, 10) > 0)
    rows = strtoll(env, NULL, 10);
  if (batch <= 1 || !pass_rows_independent(m))
    return 1;
  for (int i = 0; i < nvals; i++) {
    int64_t n;
    if (ir_type_numel(&vals[i]->type, 1, &n))
      bytes += 4 * n;
  }
  if (bytes > 0 && rows > run_bytes / bytes)
    rows = run_bytes / bytes;
  int64_t whole = (pass_samples_count(samples) + batch - 1) / batch * batch;
  if (rows > whole)
    rows = whole;
  return rows / batch > 1 ? rows / batch : 1;
}

bool pass_calibrate(IrModule *m, const PassOptions *o) {
  if (o->dynamic)
    return true;
  IrValue **want = ir_alloc(m->arena, (size_t)(3 * m->nnodes + 1) * sizeof *want);
  int nwant = wanted_values(m, o, want);
  if (nwant == 0)
    return true;
  if (!o->calib_path)
    return ir_error(&m->diag, want[0]->loc,
                    "%d activation%s need%s a range to be quantized, starting with %%%s: give "
                    "calibration samples (--calib FILE), write {range = [min, max]} on them, "
                    "or use --dynamic",
                    nwant, nwant == 1 ? "" : "s", nwant == 1 ? "s" : "", want[0]->name);
  if (o->calib.method == PASS_CALIB_AUTO)
    return pass_calibrate_auto(m, o, want, nwant);
  PassSamples *samples = pass_samples_open_for(m, o);
  if (!samples)
    return false;

  int nvalues = ir_number_values(m);
  IrArena *tmp = ir_arena_new();
  Calib c = {ir_alloc(tmp, (size_t)nvalues * sizeof(PassObserver *)), o, 0, 0};
  PassObserver **all = ir_alloc(tmp, (size_t)nwant * sizeof *all);
  PassObserver **input_obs = ir_alloc(tmp, (size_t)m->ninputs * sizeof *input_obs);
  bool ok = true;
  for (int i = 0; ok && i < nwant; i++) {
    all[i] = pass_observer_new(&o->calib);
    if (!all[i]) {
      ok = ir_error(&m->diag, (IrLoc){0}, "out of memory for calibration histograms");
      break;
    }
    c.by_id[want[i]->id] = all[i];
    int id = want[i]->id; /* inputs are numbered first: id is the index */
    if (want[i]->kind == IR_VAL_INPUT && id < m->ninputs && m->inputs[id] == want[i])
      input_obs[id] = all[i];
  }
  /* The node results to observe, for an evaluator (the interpreter's hook
   * finds them by id). */
  Eval e = {.ev = o->evaluator};
  if (ok && e.ev && !getenv("Q8_CALIB_INTERP")) {
    e.vals = ir_alloc(tmp, (size_t)nwant * sizeof *e.vals);
    e.obs = ir_alloc(tmp, (size_t)nwant * sizeof *e.obs);
    e.data = ir_alloc(tmp, (size_t)nwant * sizeof *e.data);
    for (int i = 0; i < nwant; i++)
      if (want[i]->kind == IR_VAL_NODE) {
        e.vals[e.nvals] = want[i];
        e.obs[e.nvals++] = all[i];
      }
  }
  int npasses = ok ? pass_observer_passes(all[0]) : 0;
  if (e.nvals > 0) {
    e.group = ok ? run_group(m, samples, e.vals, e.nvals) : 1;
    if (e.group > 1) {
      e.chunk = ir_alloc(tmp, (size_t)e.group * sizeof *e.chunk);
      e.gather = ir_alloc(tmp, (size_t)m->ninputs * sizeof *e.gather);
      e.row_bytes = ir_alloc(tmp, (size_t)m->ninputs * sizeof *e.row_bytes);
      int64_t rows = e.group * pass_samples_batch(samples);
      for (int i = 0; ok && i < m->ninputs; i++) {
        char err[192] = "out of memory";
        if (!ir_type_bytes(&m->inputs[i]->type, 1, &e.row_bytes[i], err, sizeof err) ||
            !(e.gather[i] = ir_alloc(tmp, (size_t)rows * e.row_bytes[i] + 1)))
          ok = ir_error(&m->diag, (IrLoc){0}, "calibrate: %s", err);
      }
    }
    /* Compiling shows as a part of the stage, on the terminal and in
     * --time-passes: "calibrate: compile", or "calibrate: interpreter" when
     * the evaluator declined. */
    double t0 = pass_clock();
    pass_stage(o, PASS_EVENT_BEGIN, "calibrate: compile", 0);
    e.handle = ok ? e.ev->open(e.ev->user, m, e.vals, e.nvals,
                               e.group * pass_samples_batch(samples),
                               npasses * pass_samples_count(samples))
                  : NULL;
    pass_stage(o, PASS_EVENT_END, e.handle ? "calibrate: compile" : "calibrate: interpreter",
               pass_clock() - t0);
  }
  c.total = npasses * pass_samples_count(samples);
  pass_progress(o, "calibrate", 0, c.total);
  for (int p = 0; ok && p < npasses; p++) {
    if (p > 0) {
      for (int i = 0; i < nwant; i++)
        pass_observer_next_pass(all[i]);
      ok = pass_samples_rewind(samples);
    }
    ok = ok && run_samples(m, samples, &c, input_obs, &e);
  }
  if (e.handle)
    e.ev->close(e.handle);
  for (int i = 0; ok && i < nwant; i++) {
    float lo, hi;
    char note[256];
    if (!pass_observer_range(all[i], &lo, &hi, note, sizeof note))
      lo = hi = 0;
    if (note[0])
      pass_note(o, "calibrate: %%%s: %s", want[i]->name, note);
    ir_set_value_range(m, want[i], lo, hi);
  }
  for (int i = 0; i < nwant; i++)
    pass_observer_free(all[i]);
  pass_samples_close(samples);
  ir_arena_free(tmp);
  return ok;
}

int pass_unranged_activations(IrModule *m, const PassOptions *o) {
  IrValue **want = malloc((size_t)(3 * m->nnodes + 1) * sizeof *want);
  int n = want ? wanted_values(m, o, want) : 0;
  free(want);
  return n;
}
