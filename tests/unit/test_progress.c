/* test_progress.c: what the pipeline tells its caller as it runs
 * (PassOptions.event, passes/manager.c and calibrate.c), and -q.
 *
 * A small model (one linear, a relu) is written with its weights and
 * calibration samples to a scratch directory and compiled with an event
 * callback that records everything: every pass of the table must begin and
 * end, in order, with a non-negative wall time, and calibration must report
 * its samples from 0 to all of them, counted twice by a method that reads the
 * data twice. With `quiet` no progress and no note arrives (samples of zeros
 * make the calibration note a degenerate range), while the stages still do,
 * for --time-passes. The driver's printing of these events is tested by
 * tests/py/test_report.py on a pseudo-terminal. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "frontend/frontend.h"
#include "passes/passes.h"

enum { NSAMPLES = 37, K = 8, N = 4, MAX_EVENTS = 256 };

typedef struct {
  PassEvent ev[MAX_EVENTS];
  char stage[MAX_EVENTS][32];
  int nev;
  int nnotes;
} Record;

static void on_event(void *user, const PassEvent *e) {
  Record *r = user;
  if (r->nev == MAX_EVENTS)
    return;
  r->ev[r->nev] = *e;
  snprintf(r->stage[r->nev], sizeof r->stage[0], "%s", e->stage);
  r->nev++;
}

static void on_note(void *user, const char *text) { ((Record *)user)->nnotes++; }

/* The model, its weights and `NSAMPLES` samples (all `value`) in `dir`. */
static IrModule *make_model(char *dir, size_t dirlen, char *calib, size_t calib_len,
                            float value) {
  snprintf(dir, dirlen, "/tmp/q8c-progress-XXXXXX");
  assert_non_null(mkdtemp(dir));
  static float w[N * K], x[NSAMPLES * K];
  for (int i = 0; i < N * K; i++)
    w[i] = (float)((i * 7) % 11 - 5) / 8.0f;
  for (int i = 0; i < NSAMPLES * K; i++)
    x[i] = value;
  char path[512], err[256];
  FeTensor t = {"w", {IR_F32, 2, {N, K}}, w, sizeof w};
  snprintf(path, sizeof path, "%s/m.safetensors", dir);
  assert_true(fe_safetensors_write(path, &t, 1, err, sizeof err));
  IrTensor xt = {{IR_F32, 2, {NSAMPLES, K}}, x};
  snprintf(calib, calib_len, "%s/calib.npy", dir);
  assert_true(fe_npy_write(calib, &xt, err, sizeof err));
  snprintf(path, sizeof path, "%s/m.ir", dir);
  IrModule *m = fe_parse(path, "model m {\n  weights \"m.safetensors\"\n"
                               "  input %x : f32[?, 8]\n  %h = linear %x, @w\n"
                               "  %y = relu %h\n  output %y\n}\n");
  assert_false(m->diag.failed);
  return m;
}

static void remove_model(const char *dir) {
  char path[512];
  const char *files[] = {"m.safetensors", "calib.npy"};
  for (int i = 0; i < 2; i++) {
    snprintf(path, sizeof path, "%s/%s", dir, files[i]);
    unlink(path);
  }
  rmdir(dir);
}

/* Compile with `method` and `quiet`; the events and notes land in *r. */
static void compile(Record *r, PassCalibMethod method, bool quiet, float value) {
  char dir[64], calib[128];
  IrModule *m = make_model(dir, sizeof dir, calib, sizeof calib, value);
  PassOptions o;
  pass_options_init(&o);
  o.calib_path = calib;
  o.calib.method = method;
  o.calib_batch = 5;
  o.event = on_event;
  o.note = on_note;
  o.user = r;
  o.quiet = quiet;
  memset(r, 0, sizeof *r);
  bool ok = pass_run_pipeline(m, &o);
  if (!ok)
    fprintf(stderr, "%s\n", m->diag.msg);
  assert_true(ok);
  ir_module_free(m);
  remove_model(dir);
}

/* Every pass begins and ends in the table's order; what comes between is
 * progress of that pass only. Returns the number of progress events. */
static int check_stages(const Record *r) {
  int e = 0, nprogress = 0;
  for (int i = 0; i < pass_count(); i++) {
    assert_true(e < r->nev);
    assert_int_equal(r->ev[e].kind, PASS_EVENT_BEGIN);
    assert_string_equal(r->stage[e], pass_name(i));
    for (e++; e < r->nev && r->ev[e].kind == PASS_EVENT_PROGRESS; e++, nprogress++)
      assert_string_equal(r->stage[e], pass_name(i));
    assert_true(e < r->nev);
    assert_int_equal(r->ev[e].kind, PASS_EVENT_END);
    assert_string_equal(r->stage[e], pass_name(i));
    assert_true(r->ev[e].seconds >= 0);
    e++;
  }
  assert_int_equal(e, r->nev);
  return nprogress;
}

/* Calibration's progress: 0 first, then rising by at most a batch, up to all
 * the samples it reads. */
static void check_progress(const Record *r, int64_t total) {
  int64_t last = -1;
  int n = 0;
  for (int e = 0; e < r->nev; e++) {
    if (r->ev[e].kind != PASS_EVENT_PROGRESS)
      continue;
    assert_string_equal(r->stage[e], "calibrate");
    assert_int_equal(r->ev[e].total, total);
    if (n++ == 0)
      assert_int_equal(r->ev[e].done, 0);
    else
      assert_true(r->ev[e].done > last && r->ev[e].done <= last + 5);
    last = r->ev[e].done;
  }
  assert_int_equal(last, total);
}

static void test_stages_and_progress(void **state) {
  Record r;
  compile(&r, PASS_CALIB_MINMAX, false, 0.5f);
  assert_true(check_stages(&r) > 0);
  check_progress(&r, NSAMPLES);
  /* mse reads the samples twice: min and max, then the histogram. */
  compile(&r, PASS_CALIB_MSE, false, 0.5f);
  check_stages(&r);
  check_progress(&r, 2 * NSAMPLES);
}

static void test_quiet(void **state) {
  Record r;
  /* Samples all 0: the observers note a degenerate range. */
  compile(&r, PASS_CALIB_MINMAX, false, 0.0f);
  assert_true(r.nnotes > 0);
  compile(&r, PASS_CALIB_MINMAX, true, 0.0f);
  assert_int_equal(r.nnotes, 0);
  assert_int_equal(check_stages(&r), 0);

  /* The same through the two functions directly. */
  PassOptions o;
  pass_options_init(&o);
  memset(&r, 0, sizeof r);
  o.event = on_event;
  o.note = on_note;
  o.user = &r;
  pass_note(&o, "one");
  pass_progress(&o, "calibrate", 1, 2);
  assert_int_equal(r.nnotes, 1);
  assert_int_equal(r.nev, 1);
  o.quiet = true;
  pass_note(&o, "two");
  pass_progress(&o, "calibrate", 2, 2);
  pass_stage(&o, PASS_EVENT_END, "codegen", 1.5);
  assert_int_equal(r.nnotes, 1);
  assert_int_equal(r.nev, 2);
  assert_int_equal(r.ev[1].kind, PASS_EVENT_END);
  assert_true(r.ev[1].seconds == 1.5);
}

static void test_time_passes_option(void **state) {
  PassOptions o;
  char err[128];
  pass_options_init(&o);
  assert_false(o.time_passes);
  assert_int_equal(pass_option_kind("time-passes"), 1);
  assert_true(pass_options_set(&o, "time-passes", NULL, err, sizeof err));
  assert_true(o.time_passes);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_stages_and_progress),
      cmocka_unit_test(test_quiet),
      cmocka_unit_test(test_time_passes_option),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
