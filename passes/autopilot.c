/* autopilot.c: the autopilot pass, mixed precision under a budget
 * (--target-sqnr=DB, --max-top1-drop=P).
 *
 * The calibration samples of the window are split: the last quarter (at
 * least one) is the check set, the rest the fit set. A trial quantizes a
 * copy of the module with the rest of the pipeline (smooth, calibrate on the
 * fit set, quantize, fuse-requant, fold-constants), some layers kept in f32,
 * and measures it against this module on the check set as the report does
 * (pass_measure). It meets the budget when every output's SQNR is at least
 * DB and its top-1 agreement at least 100 - P percent.
 *
 *  1. Bases, in order: the options as given; with --calib-method=auto; with
 *     smoothing; with both (each only when it changes something). The first that
 *     meets the budget with every layer int8 is taken, and that is all.
 *     Else the one with the best worst margin (dB, or percentage points)
 *     goes on.
 *  2. Its int8 layers, by isolated SQNR, worst first: the smallest k such
 *     that keeping the first k in f32 meets the budget, by bisection (every
 *     layer in f32 first: if even that fails, an error says so).
 *  3. Refine: each of the k, least sensitive first (at most 16 trials), goes
 *     back to int8 if the budget still holds without it.
 *
 * Trials: at most 4 + 1 + log2(layers) + 16, each linear in the model. The
 * decision is then applied to this module: smoothing (--smooth, or the
 * base's), {keep_float = 1} on the layers kept, and
 * the calibration of the base on the fit set, which leaves the calibrate
 * pass nothing to do; the pipeline then builds the model the last trial
 * measured (the smooth pass, after this one, leaves smoothing to it when
 * there is a budget). Trials and the result are measured against this
 * module, the float model as given. Notes and the report's decisions give each layer's fate, the
 * check-set figures and the sizes. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "passes.h"

/* ---- trials ---- */

typedef struct {
  const char *name;       /* for notes */
  bool smooth;            /* the trial smooths (besides --smooth) */
  PassCalibMethod method;
} Base;

typedef struct {
  IrModule *m;
  const PassOptions *o;
  int64_t first, fit, check;  /* the split of the window */
  int trials;
} Pilot;

typedef struct {
  bool meets;
  double margin;          /* the worst output's, dB or percentage points */
  double sqnr, drop;      /* the worst output's SQNR and top-1 drop (percent) */
  PassMeasure pm;
} Result;

static void judge(const PassOptions *o, Result *r) {
  r->meets = true;
  r->margin = INFINITY;
  r->sqnr = INFINITY;
  r->drop = 0;
  for (int i = 0; i < r->pm.noutputs; i++) {
    double s = r->pm.outputs[i].sqnr, t = r->pm.outputs[i].top1;
    double drop = isnan(t) ? 0 : 100 * (1 - t);
    if (!isnan(s))
      r->sqnr = fmin(r->sqnr, s);
    r->drop = fmax(r->drop, drop);
    if (o->has_target_sqnr && !isnan(s))
      r->margin = fmin(r->margin, s - o->target_sqnr);
    if (o->has_max_top1_drop)
      r->margin = fmin(r->margin, o->max_top1_drop - drop);
  }
  r->meets = !(r->margin < 0);
}

/* The options a trial runs with: quiet, no printing, dumping or budget. */
static PassOptions trial_options(const Pilot *p, const Base *b, const char *keep) {
  PassOptions t = *p->o;
  t.print_before = t.print_after = t.stop_after = t.dump_dir = NULL;
  t.print_after_all = false;
  t.note = NULL;
  t.event = NULL;
  t.decisions = NULL;
  t.smoothed = NULL;
  t.quiet = true;
  t.has_target_sqnr = t.has_max_top1_drop = false;
  t.smooth = p->o->smooth || b->smooth;
  t.calib.method = b->method;
  t.keep_float = keep;
  t.calib_first = p->first;
  t.calib_count = p->fit;
  return t;
}

/* --keep-float as given, then `names[0..k)`. */
static const char *keep_list(IrArena *a, const char *given, const char **names, int k,
                             const bool *skip) {
  SupBuf b = {0};
  if (given)
    sup_buf_printf(&b, "%s", given);
  for (int i = 0; i < k; i++)
    if (!skip || !skip[i])
      sup_buf_printf(&b, "%s%%%s", b.len ? "," : "", names[i]);
  const char *s = b.len ? ir_strdup(a, b.p) : NULL;
  sup_buf_free(&b);
  return s;
}

/* Quantize a copy of m as base `b` with `keep` in f32 and judge its outputs
 * against m. Smoothing is decided with the layers of --keep-float only, so
 * that it stays the same while the search moves layers to f32. With
 * `layers`, the layers' figures are measured against the smoothed float
 * model, each layer against the value it computes. */
static bool trial(Pilot *p, const Base *b, const char *keep, Result *r, bool layers) {
  IrModule *m = p->m, *ref_s = NULL;
  PassOptions t = trial_options(p, b, keep);
  IrModule *c = pass_clone_module(m);
  bool ok = true;
  if (t.smooth) {
    PassOptions ts = t;
    ts.keep_float = p->o->keep_float;
    ts.smoothed = layers ? &ref_s : NULL;
    ir_fill_uses(c);
    ok = pass_smooth(c, &ts);
    t.smooth = false;
  }
  ok = ok && pass_run_from(c, &t, "smooth"); /* the passes after this one */
  PassOptions mo = t;
  mo.calib_first = p->first + p->fit;
  mo.calib_count = p->check;
  ok = ok && pass_measure(m, c, &mo, &r->pm);
  if (ok && layers && ref_s) {
    PassMeasure lm;
    ok = pass_measure(ref_s, c, &mo, &lm);
    if (ok) {
      free(r->pm.layers);
      r->pm.layers = lm.layers;
      r->pm.nlayers = lm.nlayers;
      free(lm.outputs);
    }
  }
  if (ok) {
    /* The names live in c: keep them in m. */
    for (int i = 0; i < r->pm.nlayers; i++)
      r->pm.layers[i].name = ir_strdup(m->arena, r->pm.layers[i].name);
    judge(p->o, r);
  } else if (!m->diag.failed) {
    m->diag.failed = true;
    snprintf(m->diag.msg, sizeof m->diag.msg, "%s",
             c->diag.failed ? c->diag.msg : ref_s ? ref_s->diag.msg : "trial failed");
  }
  ir_module_free(ref_s);
  ir_module_free(c);
  p->trials++;
  return ok;
}

/* The report names a layer by the float value it replaces: after
 * fuse-requant that is the relu's result when the relu was fused. The node
 * of m that --keep-float must name is the linear or matmul itself. */
static IrNode *layer_node(IrModule *m, const char *name) {
  IrValue *v = ir_find_value(m, name);
  IrNode *n = v && v->kind == IR_VAL_NODE ? v->def : NULL;
  if (n && n->op == IR_OP_RELU && n->opnds[0]->kind == IR_VAL_NODE)
    n = n->opnds[0]->def;
  return n;
}

/* ---- the search ---- */

typedef struct {
  const char *name;
  double sqnr;
  int depth;
} Sens;

static int by_sensitivity(const void *a, const void *b) {
  const Sens *x = a, *y = b;
  double sx = isnan(x->sqnr) ? INFINITY : x->sqnr, sy = isnan(y->sqnr) ? INFINITY : y->sqnr;
  if (sx != sy)
    return sx < sy ? -1 : 1;
  return x->depth - y->depth;
}

static void budget_text(const PassOptions *o, char *buf, size_t size) {
  if (o->has_target_sqnr && o->has_max_top1_drop)
    snprintf(buf, size, "--target-sqnr=%g and --max-top1-drop=%g", o->target_sqnr,
             o->max_top1_drop);
  else if (o->has_target_sqnr)
    snprintf(buf, size, "--target-sqnr=%g", o->target_sqnr);
  else
    snprintf(buf, size, "--max-top1-drop=%g", o->max_top1_drop);
}

static void figures_text(const Result *r, char *buf, size_t size) {
  char s[64];
  if (isinf(r->sqnr))
    snprintf(s, sizeof s, "inf");
  else
    snprintf(s, sizeof s, "%.2f", r->sqnr);
  snprintf(buf, size, "output SQNR %s dB, top-1 drop %.2f%%", s, r->drop);
}

static void size_text(const Result *r, char *buf, size_t size) {
  snprintf(buf, size, "constants %.1f KiB (f32 %.1f KiB)", (double)r->pm.bytes / 1024,
           (double)r->pm.f32_bytes / 1024);
}

bool pass_autopilot(IrModule *m, const PassOptions *o) {
  if (!o->has_target_sqnr && !o->has_max_top1_drop)
    return true;
  char budget[128];
  budget_text(o, budget, sizeof budget);
  if (!o->calib_path)
    return ir_error(&m->diag, (IrLoc){0},
                    "%s measures the int8 model on calibration samples: give --calib FILE",
                    budget);
  PassSamples *s = pass_samples_open_for(m, o);
  if (!s)
    return false;
  int64_t count = pass_samples_count(s);
  pass_samples_close(s);
  if (count < 2)
    return ir_error(&m->diag, (IrLoc){0},
                    "%s checks on a quarter of the samples it does not fit on: it needs at "
                    "least 2, %s has %lld",
                    budget, o->calib_path, (long long)count);
  Pilot p = {m, o, o->calib_first > 0 ? o->calib_first : 0, 0, count / 4 > 0 ? count / 4 : 1, 0};
  p.fit = count - p.check;

  /* 1. The bases. */
  Base bases[4];
  int nbases = 0;
  bases[nbases++] = (Base){"the options as given", false, o->calib.method};
  bool calib_auto = !o->dynamic && o->calib.method != PASS_CALIB_AUTO;
  if (calib_auto)
    bases[nbases++] = (Base){"auto calibration", false, PASS_CALIB_AUTO};
  if (!o->smooth)
    bases[nbases++] = (Base){"smoothing", true, o->calib.method};
  if (!o->smooth && calib_auto)
    bases[nbases++] = (Base){"smoothing and auto calibration", true, PASS_CALIB_AUTO};
  Result best = {0}, r = {0};
  int best_base = -1;
  char fig[128], size[128];
  for (int i = 0; i < nbases; i++) {
    r = (Result){0};
    if (!trial(&p, &bases[i], keep_list(m->arena, o->keep_float, NULL, 0, NULL), &r, true)) {
      pass_measure_free(&best.pm);
      return false;
    }
    figures_text(&r, fig, sizeof fig);
    pass_note(o, "autopilot: every layer int8 with %s: %s", bases[i].name, fig);
    pass_decision(o, "autopilot: every layer int8 with %s: %s on %lld check samples",
                  bases[i].name, fig, (long long)p.check);
    if (best_base < 0 || r.margin > best.margin || r.meets) {
      pass_measure_free(&best.pm);
      best = r;
      best_base = i;
    } else {
      pass_measure_free(&r.pm);
    }
    if (best.meets)
      break;
  }
  const Base *base = &bases[best_base];

  /* 2. Bisection on the number of layers kept, worst isolated SQNR first. */
  Sens *sens = ir_alloc(m->arena, (size_t)(best.pm.nlayers + 1) * sizeof *sens);
  int nl = 0;
  for (int i = 0; i < best.pm.nlayers; i++)
    if (best.pm.layers[i].quantized && layer_node(m, best.pm.layers[i].name))
      sens[nl++] = (Sens){layer_node(m, best.pm.layers[i].name)->result->name,
                          best.pm.layers[i].iso_sqnr, i};
  qsort(sens, (size_t)nl, sizeof *sens, by_sensitivity);
  const char **names = ir_alloc(m->arena, (size_t)(nl + 1) * sizeof *names);
  for (int i = 0; i < nl; i++)
    names[i] = sens[i].name;
  bool *back = ir_alloc(m->arena, (size_t)(nl + 1) * sizeof *back);
  int k = 0;
  if (!best.meets) {
    r = (Result){0};
    if (!trial(&p, base, keep_list(m->arena, o->keep_float, names, nl, NULL), &r, false)) {
      pass_measure_free(&best.pm);
      return false;
    }
    if (!r.meets) {
      figures_text(&r, fig, sizeof fig);
      pass_measure_free(&r.pm);
      pass_measure_free(&best.pm);
      return ir_error(&m->diag, (IrLoc){0},
                      "%s cannot be met even with every layer in f32 (with %s): %s on the %lld "
                      "check samples",
                      budget, base->name, fig, (long long)p.check);
    }
    int lo = 0, hi = nl;
    pass_measure_free(&best.pm);
    best = r;
    while (hi - lo > 1) {
      int mid = lo + (hi - lo) / 2;
      r = (Result){0};
      if (!trial(&p, base, keep_list(m->arena, o->keep_float, names, mid, NULL), &r, false)) {
        pass_measure_free(&best.pm);
        return false;
      }
      if (r.meets) {
        hi = mid;
        pass_measure_free(&best.pm);
        best = r;
      } else {
        lo = mid;
        pass_measure_free(&r.pm);
      }
    }
    k = hi;
    /* 3. Refine: back to int8, least sensitive first. */
    for (int i = k - 1, tries = 0; i >= 0 && tries < 16 && k > 1; i--, tries++) {
      back[i] = true;
      r = (Result){0};
      if (!trial(&p, base, keep_list(m->arena, o->keep_float, names, k, back), &r, false)) {
        pass_measure_free(&best.pm);
        return false;
      }
      if (r.meets) {
        pass_measure_free(&best.pm);
        best = r;
      } else {
        back[i] = false;
        pass_measure_free(&r.pm);
      }
    }
  }

  /* Apply the decision to m. */
  bool ok = true;
  PassOptions a = trial_options(&p, base, o->keep_float);
  a.note = o->note;
  a.quiet = o->quiet;
  a.decisions = o->decisions;
  a.event = o->event;
  a.smoothed = o->smoothed;
  if (a.smooth)
    ok = pass_smooth(m, &a);
  int kept = 0;
  for (int i = 0; ok && i < nl; i++) {
    IrNode *n = layer_node(m, names[i]);
    bool keep = i < k && !back[i];
    if (keep && n) {
      ir_set_attr_int(m, n, IR_ATTR_KEEP_FLOAT, 1);
      kept++;
    }
    pass_decision(o, "autopilot %%%s: %s (isolated SQNR %.2f dB in int8)", names[i],
                  keep ? "kept in f32" : "int8", sens[i].sqnr);
    if (keep)
      pass_note(o, "autopilot: %%%s kept in f32 (isolated SQNR %.2f dB in int8)", names[i],
                sens[i].sqnr);
  }
  if (ok && !o->dynamic) {
    ir_fill_uses(m);
    a.keep_float = o->keep_float;
    ok = pass_calibrate(m, &a);
  }
  figures_text(&best, fig, sizeof fig);
  size_text(&best, size, sizeof size);
  if (ok) {
    pass_note(o, "autopilot: %s met with %s, %d of %d layers in f32: %s on %lld check samples, "
                 "%s; %d trials",
              budget, base->name, kept, nl, fig, (long long)p.check, size, p.trials);
    pass_decision(o, "autopilot: %s met with %s, %d of %d layers in f32: %s on %lld check "
                     "samples (fit on %lld), %s; %d trials",
                  budget, base->name, kept, nl, fig, (long long)p.check, (long long)p.fit, size,
                  p.trials);
  }
  pass_measure_free(&best.pm);
  return ok;
}
