/* manager.c: the pass manager. It runs the table in passes.def in order,
 * verifies the module after every pass, drops what a pass left unused, and
 * serves the debugging options: --print-before/--print-after (IR to the
 * print callback), --stop-after, and --dump-dir, which writes one numbered
 * file per pass (03-calibrate.ir) with the constants it uses in a sidecar
 * safetensors file, so that any dump parses back and compilation can resume
 * from it. Each pass is announced and timed through the event callback
 * (begin, end with its wall time), which the driver shows as progress and as
 * the --time-passes table. */
#include <errno.h>
#include <float.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "../frontend/frontend.h"
#include "passes.h"

typedef bool PassFn(IrModule *m, const PassOptions *o);

static const struct {
  const char *name;
  PassFn *run;
  const char *description;
} passes[] = {
#define PASS(ID, name, fn, desc) {name, fn, desc},
#include "passes.def"
#undef PASS
};

enum { NPASSES = sizeof passes / sizeof passes[0] };

int pass_count(void) { return NPASSES; }
const char *pass_name(int i) { return i >= 0 && i < NPASSES ? passes[i].name : NULL; }
const char *pass_description(int i) { return i >= 0 && i < NPASSES ? passes[i].description : NULL; }

void pass_options_init(PassOptions *o) {
  memset(o, 0, sizeof *o);
  o->calib.method = PASS_CALIB_MINMAX;
  o->calib.momentum = 0.01;
  o->calib.percentile = 99.99;
  o->calib.bins = 2048;
  o->calib.levels = 256;
  o->calib_batch = 16;
  o->activations = IR_U8;
  o->smooth_alpha = 0.5;
}

static bool parse_double(const char *s, double lo, double hi, double *out) {
  char *end;
  errno = 0;
  double v = strtod(s, &end);
  if (errno || *end || end == s || !(v >= lo && v <= hi))
    return false;
  *out = v;
  return true;
}

static bool set_calib_method(PassCalibConfig *c, const char *v, char *err, size_t errlen) {
  static const struct {
    const char *name;
    PassCalibMethod method;
  } methods[] = {{"minmax", PASS_CALIB_MINMAX},
                 {"ma-minmax", PASS_CALIB_MA_MINMAX},
                 {"entropy", PASS_CALIB_ENTROPY},
                 {"mse", PASS_CALIB_MSE},
                 {"auto", PASS_CALIB_AUTO}};
  for (size_t i = 0; i < sizeof methods / sizeof methods[0]; i++)
    if (strcmp(v, methods[i].name) == 0) {
      c->method = methods[i].method;
      return true;
    }
  if (strncmp(v, "percentile:", 11) == 0) {
    c->method = PASS_CALIB_PERCENTILE;
    if (parse_double(v + 11, 50.0000001, 100, &c->percentile))
      return true;
    snprintf(err, errlen, "percentile:P needs 50 < P <= 100, got '%s'", v + 11);
    return false;
  }
  snprintf(err, errlen,
           "unknown calibration method '%s' (minmax, ma-minmax, percentile:P, entropy, mse, auto)",
           v);
  return false;
}

/* --weights=nf4[:G] or fp4[:G]: 4-bit codes, one maximum per G weights of a
 * row (64, bitsandbytes' default; 32, 64, 128 or 256). */
static bool set_weights_4bit(PassOptions *o, const char *v, char *err, size_t errlen) {
  double g = 64;
  if (v[3] != '\0' && (v[3] != ':' || !parse_double(v + 4, 32, 256, &g) ||
                       (g != 32 && g != 64 && g != 128 && g != 256))) {
    snprintf(err, errlen, "--weights=%.3s:G takes a block size G of 32, 64, 128 or 256, not '%s'",
             v, v[3] == ':' ? v + 4 : v + 3);
    return false;
  }
  o->weights_4bit = 1 + (strncmp(v, "fp4", 3) == 0 ? IR_4BIT_FP4 : IR_4BIT_NF4);
  o->weights_block = (int64_t)g;
  return true;
}

static const char *const flag_options[] = {"dynamic", "print-after-all", "time-passes",
                                           "double-quant", "reduce-range"};
static const char *const value_options[] = {
    "calib",      "calib-method", "calib-momentum", "calib-batch", "weights",  "activations",
    "keep-float", "print-before", "print-after",    "stop-after",  "dump-dir", "target-sqnr",
    "max-top1-drop", "weights-for"};

int pass_option_kind(const char *name) {
  if (strcmp(name, "smooth") == 0 || strcmp(name, "outliers") == 0) /* optional value */
    return 3;
  for (size_t i = 0; i < sizeof flag_options / sizeof flag_options[0]; i++)
    if (strcmp(name, flag_options[i]) == 0)
      return 1;
  for (size_t i = 0; i < sizeof value_options / sizeof value_options[0]; i++)
    if (strcmp(name, value_options[i]) == 0)
      return 2;
  return 0;
}

bool pass_options_set(PassOptions *o, const char *name, const char *v, char *err,
                      size_t errlen) {
  err[0] = '\0';
  int kind = pass_option_kind(name);
  if (kind == 0)
    return false;
  if (strcmp(name, "dynamic") == 0) {
    o->dynamic = true;
    return true;
  }
  if (strcmp(name, "print-after-all") == 0) {
    o->print_after_all = true;
    return true;
  }
  if (strcmp(name, "time-passes") == 0) {
    o->time_passes = true;
    return true;
  }
  if (strcmp(name, "double-quant") == 0) {
    o->double_quant = true;
    return true;
  }
  if (strcmp(name, "reduce-range") == 0) {
    o->reduce_range = true;
    return true;
  }
  if (strcmp(name, "smooth") == 0) {
    o->smooth = true;
    o->smooth_alpha = 0.5;
    if (v && !parse_double(v, 0, 1, &o->smooth_alpha)) {
      snprintf(err, errlen, "--smooth takes an alpha in [0, 1], got '%s'", v);
      return false;
    }
    return true;
  }
  if (strcmp(name, "outliers") == 0) {
    o->dynamic = true;
    o->outliers = 6.0;
    if (v && (!parse_double(v, 1e-30, FLT_MAX, &o->outliers))) {
      snprintf(err, errlen, "--outliers takes a threshold > 0, got '%s'", v);
      return false;
    }
    return true;
  }
  if (!v || !*v) {
    snprintf(err, errlen, "--%s needs a value", name);
    return false;
  }
  double d;
  if (strcmp(name, "calib") == 0) {
    o->calib_path = v;
  } else if (strcmp(name, "calib-method") == 0) {
    return set_calib_method(&o->calib, v, err, errlen);
  } else if (strcmp(name, "calib-momentum") == 0) {
    if (!parse_double(v, 1e-9, 1, &o->calib.momentum)) {
      snprintf(err, errlen, "--calib-momentum needs a number in (0, 1], got '%s'", v);
      return false;
    }
  } else if (strcmp(name, "calib-batch") == 0) {
    if (!parse_double(v, 1, 1 << 20, &d) || d != (double)(int64_t)d) {
      snprintf(err, errlen, "--calib-batch needs a positive integer, got '%s'", v);
      return false;
    }
    o->calib_batch = (int64_t)d;
  } else if (strcmp(name, "weights") == 0 &&
             (strncmp(v, "nf4", 3) == 0 || strncmp(v, "fp4", 3) == 0)) {
    return set_weights_4bit(o, v, err, errlen);
  } else if (strcmp(name, "weights") == 0) {
    char why[400];
    if (!ir_wspec_parse(v, -1, &o->weights_spec, why, sizeof why)) {
      /* The model-wide formats also include the 4-bit codes (nf4, fp4). */
      size_t len = strlen(why);
      if (strncmp(why, "unknown weight format", 21) == 0 && len > 0 && why[len - 1] == ')')
        snprintf(err, errlen, "--weights: %.*s, nf4:G, fp4:G)", (int)(len - 1), why);
      else
        snprintf(err, errlen, "--weights: %s", why);
      return false;
    }
    o->weights_per_tensor = o->weights_spec.id == IR_WF_S8_TENSOR;
  } else if (strcmp(name, "weights-for") == 0) {
    if (!pass_weights_for_check(v, err, errlen))
      return false;
    o->weights_for = v;
  } else if (strcmp(name, "activations") == 0) {
    if (strcmp(v, "u8-asym") != 0 && strcmp(v, "s8-sym") != 0) {
      snprintf(err, errlen, "--activations takes u8-asym or s8-sym, not '%s'", v);
      return false;
    }
    o->activations = strcmp(v, "s8-sym") == 0 ? IR_I8 : IR_U8;
  } else if (strcmp(name, "target-sqnr") == 0) {
    if (!parse_double(v, -1000, 1000, &o->target_sqnr)) {
      snprintf(err, errlen, "--target-sqnr needs a number of dB, got '%s'", v);
      return false;
    }
    o->has_target_sqnr = true;
  } else if (strcmp(name, "max-top1-drop") == 0) {
    if (!parse_double(v, 0, 100, &o->max_top1_drop)) {
      snprintf(err, errlen, "--max-top1-drop needs a percentage in [0, 100], got '%s'", v);
      return false;
    }
    o->has_max_top1_drop = true;
  } else if (strcmp(name, "keep-float") == 0) {
    o->keep_float = v;
  } else if (strcmp(name, "print-before") == 0) {
    o->print_before = v;
  } else if (strcmp(name, "print-after") == 0) {
    o->print_after = v;
  } else if (strcmp(name, "stop-after") == 0) {
    o->stop_after = v;
  } else {
    o->dump_dir = v;
  }
  return true;
}

void pass_note(const PassOptions *o, const char *fmt, ...) {
  if (!o->note || o->quiet)
    return;
  char buf[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  o->note(o->user, buf);
}

void pass_decision(const PassOptions *o, const char *fmt, ...) {
  if (!o->decisions)
    return;
  va_list ap;
  va_start(ap, fmt);
  sup_buf_vprintf(o->decisions, fmt, ap);
  va_end(ap);
  sup_buf_printf(o->decisions, "\n");
}

void pass_progress(const PassOptions *o, const char *stage, int64_t done, int64_t total) {
  if (!o->event || o->quiet)
    return;
  PassEvent e = {PASS_EVENT_PROGRESS, stage, done, total, 0};
  o->event(o->user, &e);
}

void pass_stage(const PassOptions *o, PassEventKind kind, const char *stage, double seconds) {
  if (!o->event)
    return;
  PassEvent e = {kind, stage, 0, 0, seconds};
  o->event(o->user, &e);
}

double pass_clock(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

bool pass_verify(IrModule *m, const PassOptions *o) { return ir_verify(m); }
bool pass_infer_shapes(IrModule *m, const PassOptions *o) { return ir_infer_shapes(m); }

/* Every name in a comma-separated list must be a pass. */
static bool check_list(IrModule *m, const char *option, const char *list) {
  if (!list)
    return true;
  const char *p;
  size_t len;
  for (const char *rest = list; sup_list_next(&rest, &p, &len);) {
    bool found = false;
    for (int i = 0; i < NPASSES; i++)
      found |= strlen(passes[i].name) == len && memcmp(passes[i].name, p, len) == 0;
    if (!found)
      return ir_error(&m->diag, (IrLoc){0}, "%s: unknown pass '%.*s' (see --list-passes)",
                      option, (int)len, p);
  }
  return true;
}

/* Every --keep-float name must be a value or a constant of the model. */
static bool check_keep_float(IrModule *m, const char *list) {
  if (!list)
    return true;
  const char *p;
  size_t len;
  for (const char *rest = list; sup_list_next(&rest, &p, &len);) {
    char name[256];
    int skip = len && (*p == '%' || *p == '@');
    snprintf(name, sizeof name, "%.*s", (int)len - skip, p + skip);
    if (!ir_find_value(m, name) && !ir_find_const(m, name))
      return ir_error(&m->diag, (IrLoc){0},
                      "--keep-float: the model has no value %%%s and no weight @%s", name, name);
  }
  return true;
}

bool pass_check_options(IrModule *m, const PassOptions *o) {
  if (o->double_quant && !o->weights_4bit)
    return ir_error(&m->diag, (IrLoc){0},
                    "--double-quant quantizes 4-bit block maxima: it needs --weights=nf4:G or "
                    "fp4:G");
  return check_keep_float(m, o->keep_float) &&
         check_list(m, "--print-before", o->print_before) &&
         check_list(m, "--print-after", o->print_after) &&
         check_list(m, "--stop-after", o->stop_after);
}

static void print_ir(IrModule *m, const PassOptions *o, const char *when, const char *pass) {
  if (!o->print)
    return;
  char *text = ir_print(m);
  char header[128];
  snprintf(header, sizeof header, "; *** IR %s %s ***\n", when, pass);
  o->print(o->user, header);
  o->print(o->user, text ? text : "; (out of memory)\n");
  free(text);
}

bool pass_write_module(IrModule *m, const char *ir_path, char *err, size_t errlen) {
  /* The sidecar sits beside the .ir file and is named relative to it. */
  size_t plen = strlen(ir_path);
  size_t stem = plen > 3 && strcmp(ir_path + plen - 3, ".ir") == 0 ? plen - 3 : plen;
  char *st_path = malloc(stem + 16);
  if (!st_path) {
    snprintf(err, errlen, "out of memory");
    return false;
  }
  snprintf(st_path, stem + 16, "%.*s.safetensors", (int)stem, ir_path);
  const char *slash = strrchr(st_path, '/');
  const char *st_name = slash ? slash + 1 : st_path;

  /* Literal operands (`mul %x, 0.5`) are printed as numbers, not saved. */
  FeTensor *ts = calloc((size_t)m->nconsts + 1, sizeof *ts);
  bool ok = ts != NULL;
  int nsaved = 0;
  for (int i = 0; ok && i < m->nconsts; i++) {
    const IrValue *c = m->consts[i];
    int64_t numel;
    if (c->literal)
      continue;
    ir_type_numel(&c->type, 1, &numel);
    ts[nsaved++] =
        (FeTensor){c->name, c->type, ir_const_data(m, c), (size_t)numel * ir_dtype_size(c->type.dtype)};
  }
  if (!ok)
    snprintf(err, errlen, "out of memory");
  if (ok && nsaved)
    ok = fe_safetensors_write(st_path, ts, nsaved, err, errlen);
  free(ts);

  /* Print with the sidecar as the only weights file, then put back the
   * module's own list. */
  int nweights = m->nweights;
  IrWeightsRef *weights = m->weights, sidecar = {st_name, {0}};
  m->weights = &sidecar;
  m->nweights = nsaved ? 1 : 0;
  char *text = ok ? ir_print(m) : NULL;
  m->weights = weights;
  m->nweights = nweights;
  free(st_path);
  if (ok && !text) {
    snprintf(err, errlen, "out of memory");
    ok = false;
  }
  if (ok) {
    FILE *f = fopen(ir_path, "w");
    if (!f || fputs(text, f) == EOF || fclose(f) != 0) {
      snprintf(err, errlen, "cannot write %s: %s", ir_path, strerror(errno));
      ok = false;
    }
  }
  free(text);
  return ok;
}

static bool dump(IrModule *m, const PassOptions *o, int index, const char *pass) {
  char path[4096], err[512];
  if (mkdir(o->dump_dir, 0777) != 0 && errno != EEXIST)
    return ir_error(&m->diag, (IrLoc){0}, "--dump-dir: cannot create %s: %s", o->dump_dir,
                    strerror(errno));
  snprintf(path, sizeof path, "%s/%02d-%s.ir", o->dump_dir, index, pass);
  if (!pass_write_module(m, path, err, sizeof err))
    return ir_error(&m->diag, (IrLoc){0}, "--dump-dir: %s", err);
  return true;
}

bool pass_run_from(IrModule *m, const PassOptions *o, const char *first) {
  bool on = false;
  for (int i = 0; i < NPASSES; i++) {
    on |= strcmp(passes[i].name, first) == 0;
    if (!on)
      continue;
    ir_fill_uses(m);
    if (!passes[i].run(m, o))
      return false;
    ir_remove_dead(m);
    if (!ir_verify(m))
      return false;
  }
  return true;
}

bool pass_run_pipeline(IrModule *m, const PassOptions *o) {
  if (!pass_check_options(m, o))
    return false;
  for (int i = 0; i < NPASSES; i++) {
    const char *name = passes[i].name;
    if (pass_name_listed(o->print_before, name))
      print_ir(m, o, "before", name);
    /* A stage's time includes the dead-value sweep and the verifier that
     * follow it: what the user waits for because of it. */
    double start = pass_clock();
    ir_fill_uses(m); /* a pass may count on the use counts (ir_count_uses) */
    pass_stage(o, PASS_EVENT_BEGIN, name, 0);
    bool ok = passes[i].run(m, o);
    if (ok)
      ir_remove_dead(m);
    bool valid = ok && ir_verify(m);
    pass_stage(o, PASS_EVENT_END, name, pass_clock() - start);
    if (!ok)
      return false;
    if (!valid) {
      /* A pass that breaks the graph is a bug in q8c; say which pass. */
      char msg[sizeof m->diag.msg];
      snprintf(msg, sizeof msg, "%s", m->diag.msg);
      m->diag.failed = false;
      return ir_error(&m->diag, (IrLoc){0}, "internal error: IR invalid after %s: %s", name, msg);
    }
    if (o->print_after_all || pass_name_listed(o->print_after, name))
      print_ir(m, o, "after", name);
    if (o->dump_dir && !dump(m, o, i + 1, name))
      return false;
    if (pass_name_listed(o->stop_after, name))
      break;
  }
  return true;
}
