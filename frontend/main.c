/* main.c: the `q8c` command-line driver.
 *
 *   q8c [options] MODEL.ir                   compile (for now: --emit=ir)
 *   q8c run MODEL.ir -i X.npy [-o Y.npy]     run the float reference interpreter
 *
 * The driver only turns arguments into calls on the layers below and prints
 * what they report; it is the one place that writes to stderr and chooses an
 * exit status: 0 success, 1 an error in the input, 2 a usage error. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../passes/passes.h"
#include "frontend.h"

enum { EXIT_INPUT = 1, EXIT_USAGE = 2, MAX_FILES = 64 };

static const char usage_text[] =
    "usage: q8c [options] MODEL.ir\n"
    "       q8c run MODEL.ir -i [NAME=]INPUT.npy... [-o [NAME=]OUTPUT.npy]...\n"
    "\n"
    "Quantize a float model written in q8c's text IR (docs/ir.md) to INT8:\n"
    "calibrate, quantize, fuse requantization, fold constants (--list-passes).\n"
    "The result is printed as IR (this version's only output; -o FILE writes it\n"
    "with its constants in FILE's .safetensors sidecar).\n"
    "\n"
    "Output:\n"
    "  --emit=ir              the IR after the pipeline (the default)\n"
    "  -o FILE                write to FILE instead of standard output\n"
    "  --batch N              bind the batch dimension '?' to N\n"
    "  --report[=text|json]   per-layer accuracy of the int8 model against the\n"
    "                         float one on the --calib samples (SQNR, max error,\n"
    "                         cosine; propagated and isolated) and model sizes,\n"
    "                         on standard output (the IR then needs -o)\n"
    "\n"
    "Calibration:\n"
    "  --calib FILE           samples along the first axis: .npy for a model with\n"
    "                         one input, else .safetensors with an array per input\n"
    "  --calib-method M       minmax (default), ma-minmax, percentile:P (e.g.\n"
    "                         percentile:99.99), entropy (KL), mse\n"
    "  --calib-momentum M     ma-minmax: weight of each new batch (default 0.01)\n"
    "  --calib-batch N        samples per calibration batch (default 16)\n"
    "\n"
    "Quantization scheme:\n"
    "  --weights=W            s8-per-channel (default) or s8-per-tensor\n"
    "  --activations=A        u8-asym (default) or s8-sym\n"
    "  --dynamic              quantize activations per row at run time (no\n"
    "                         calibration needed)\n"
    "  --keep-float=N[,N]     values (%name) or weights (@name) to keep in f32\n"
    "\n"
    "Seeing the passes:\n"
    "  --list-passes          list the pipeline's passes and exit\n"
    "  --print-before=P[,P]   print the IR before these passes (to stderr)\n"
    "  --print-after=P[,P]    print the IR after these passes (to stderr)\n"
    "  --print-after-all      print the IR after every pass (to stderr)\n"
    "  --stop-after=P         stop the pipeline after pass P\n"
    "  --dump-dir=DIR         write DIR/NN-PASS.ir (+ .safetensors) after each pass;\n"
    "                         every dump compiles again on its own\n"
    "\n"
    "  -h, --help             show this help and exit\n"
    "  --version              show the version and exit\n"
    "\n"
    "`q8c run` executes a model (float or quantized) with the reference\n"
    "interpreter. Inputs and outputs are .npy files; a model with several\n"
    "inputs or outputs names them as -i NAME=FILE and -o NAME=FILE. Without -o\n"
    "the outputs are printed. `--batch` defaults to the inputs' batch size.\n"
    "MODEL.ir may be '-' to read standard input (weights then resolve from the\n"
    "current directory). Exit status: 0 success, 1 an error in the model or\n"
    "data, 2 a usage error.\n";

static int usage_error(const char *fmt, const char *arg) {
  fprintf(stderr, "q8c: error: ");
  fprintf(stderr, fmt, arg);
  fprintf(stderr, "\nTry 'q8c --help' for more information.\n");
  return EXIT_USAGE;
}

typedef struct {
  const char *name;  /* NULL when given without NAME= */
  const char *path;
  char name_buf[128];
} FileArg;

typedef struct {
  bool run;
  const char *model;
  const char *emit;
  const char *out;
  int64_t batch;     /* 0 = not given */
  const char *report; /* NULL, "text" or "json" */
  bool list_passes;
  PassOptions pass;
  FileArg inputs[MAX_FILES], outputs[MAX_FILES];
  int ninputs, noutputs;
} Options;

static bool parse_batch(const char *s, int64_t *out) {
  char *end;
  errno = 0;
  long long v = strtoll(s, &end, 10);
  if (errno || *end || end == s || v < 1 || v > (1LL << 31))
    return false;
  *out = v;
  return true;
}

/* "NAME=PATH" or "PATH". A name is made of name characters only, so paths with
 * '=' in a directory are still taken whole. */
static void split_file_arg(const char *s, FileArg *f) {
  const char *eq = strchr(s, '=');
  size_t n = eq ? (size_t)(eq - s) : 0;
  f->name = NULL;
  f->path = s;
  if (eq && n > 0 && n < sizeof f->name_buf && strcspn(s, "/") > n) {
    memcpy(f->name_buf, s, n);
    f->name_buf[n] = '\0';
    f->name = f->name_buf;
    f->path = eq + 1;
  }
}

/* The value of `--opt=V` or `--opt V` / `-o V`; advances *i for the latter. */
static const char *opt_value(int argc, char **argv, int *i, const char *opt) {
  size_t n = strlen(opt);
  if (strncmp(argv[*i], opt, n) == 0 && argv[*i][n] == '=')
    return argv[*i] + n + 1;
  if (strcmp(argv[*i], opt) == 0 && *i + 1 < argc)
    return argv[++*i];
  return NULL;
}

static bool is_opt(const char *arg, const char *opt) {
  size_t n = strlen(opt);
  return strncmp(arg, opt, n) == 0 && (arg[n] == '\0' || arg[n] == '=');
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

static int set_calib_method(PassCalibConfig *c, const char *v) {
  if (strcmp(v, "minmax") == 0)
    c->method = PASS_CALIB_MINMAX;
  else if (strcmp(v, "ma-minmax") == 0)
    c->method = PASS_CALIB_MA_MINMAX;
  else if (strcmp(v, "entropy") == 0)
    c->method = PASS_CALIB_ENTROPY;
  else if (strcmp(v, "mse") == 0)
    c->method = PASS_CALIB_MSE;
  else if (strncmp(v, "percentile:", 11) == 0) {
    c->method = PASS_CALIB_PERCENTILE;
    if (!parse_double(v + 11, 50.0000001, 100, &c->percentile))
      return usage_error("percentile:P needs 50 < P <= 100, got '%s'", v + 11);
  } else {
    return usage_error("unknown --calib-method '%s' (minmax, ma-minmax, percentile:P, entropy, "
                       "mse)", v);
  }
  return 0;
}

/* The options that configure the pass pipeline. Returns true when argv[*i]
 * was one of them; *rc is then non-zero on a bad value. */
static bool is_pass_option(int argc, char **argv, int *i, PassOptions *p, int *rc) {
  const char *a = argv[*i], *v;
  static const char *const with_value[] = {
      "--calib", "--calib-method", "--calib-momentum", "--calib-batch", "--weights",
      "--activations", "--keep-float", "--print-before", "--print-after", "--stop-after",
      "--dump-dir"};
  *rc = 0;
  if (strcmp(a, "--dynamic") == 0) {
    p->dynamic = true;
    return true;
  }
  if (strcmp(a, "--print-after-all") == 0) {
    p->print_after_all = true;
    return true;
  }
  size_t k = 0, n = sizeof with_value / sizeof with_value[0];
  while (k < n && !is_opt(a, with_value[k]))
    k++;
  if (k == n)
    return false;
  const char *opt = with_value[k];
  if (!(v = opt_value(argc, argv, i, opt)) || !*v) {
    *rc = usage_error("%s needs a value", opt);
    return true;
  }
  double d;
  if (strcmp(opt, "--calib") == 0) {
    p->calib_path = v;
  } else if (strcmp(opt, "--calib-method") == 0) {
    *rc = set_calib_method(&p->calib, v);
  } else if (strcmp(opt, "--calib-momentum") == 0) {
    if (!parse_double(v, 1e-9, 1, &p->calib.momentum))
      *rc = usage_error("--calib-momentum needs a number in (0, 1], got '%s'", v);
  } else if (strcmp(opt, "--calib-batch") == 0) {
    if (!parse_double(v, 1, 1 << 20, &d) || d != (int64_t)d)
      *rc = usage_error("--calib-batch needs a positive integer, got '%s'", v);
    p->calib_batch = (int64_t)d;
  } else if (strcmp(opt, "--weights") == 0) {
    if (strcmp(v, "s8-per-channel") == 0 || strcmp(v, "s8-per-tensor") == 0)
      p->weights_per_tensor = strcmp(v, "s8-per-tensor") == 0;
    else
      *rc = usage_error("--weights takes s8-per-channel or s8-per-tensor, not '%s'", v);
  } else if (strcmp(opt, "--activations") == 0) {
    if (strcmp(v, "u8-asym") == 0 || strcmp(v, "s8-sym") == 0)
      p->activations = strcmp(v, "s8-sym") == 0 ? IR_I8 : IR_U8;
    else
      *rc = usage_error("--activations takes u8-asym or s8-sym, not '%s'", v);
  } else if (strcmp(opt, "--keep-float") == 0) {
    /* Names may be written with their sigils (%h, @fc1.weight). */
    static char names[4096];
    size_t len = 0;
    for (const char *q = v; *q && len + 1 < sizeof names; q++)
      if (!((*q == '%' || *q == '@') && (q == v || q[-1] == ',')))
        names[len++] = *q;
    names[len] = '\0';
    p->keep_float = names;
  } else if (strcmp(opt, "--print-before") == 0) {
    p->print_before = v;
  } else if (strcmp(opt, "--print-after") == 0) {
    p->print_after = v;
  } else if (strcmp(opt, "--stop-after") == 0) {
    p->stop_after = v;
  } else {
    p->dump_dir = v;
  }
  return true;
}

static int parse_args(int argc, char **argv, Options *o) {
  int i = 1, rc = 0;
  pass_options_init(&o->pass);
  if (argc > 1 && strcmp(argv[1], "run") == 0) {
    o->run = true;
    i = 2;
  }
  for (; i < argc; i++) {
    const char *a = argv[i], *v;
    if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
      fputs(usage_text, stdout);
      exit(0);
    } else if (strcmp(a, "--version") == 0) {
      printf("q8c %s\n", Q8_VERSION);
      exit(0);
    } else if (is_opt(a, "--emit")) {
      if (!(v = opt_value(argc, argv, &i, "--emit")))
        return usage_error("%s needs a value", a);
      o->emit = v;
    } else if (is_opt(a, "--batch")) {
      if (!(v = opt_value(argc, argv, &i, "--batch")) || !parse_batch(v, &o->batch))
        return usage_error("--batch needs a positive integer, got '%s'", v ? v : "");
    } else if (is_opt(a, "--report")) {
      o->report = a[8] == '=' ? a + 9 : "text";
      if (strcmp(o->report, "text") != 0 && strcmp(o->report, "json") != 0)
        return usage_error("--report takes text or json, not '%s'", o->report);
    } else if (strcmp(a, "--list-passes") == 0) {
      o->list_passes = true;
    } else if (is_pass_option(argc, argv, &i, &o->pass, &rc)) {
      if (rc)
        return rc;
    } else if (strcmp(a, "-i") == 0 || is_opt(a, "--input")) {
      if (!(v = opt_value(argc, argv, &i, a[1] == 'i' ? "-i" : "--input")))
        return usage_error("%s needs a file", a);
      if (o->ninputs == MAX_FILES)
        return usage_error("too many inputs%s", "");
      split_file_arg(v, &o->inputs[o->ninputs++]);
    } else if (strcmp(a, "-o") == 0 || is_opt(a, "--output")) {
      if (!(v = opt_value(argc, argv, &i, a[1] == 'o' ? "-o" : "--output")))
        return usage_error("%s needs a file", a);
      if (o->noutputs == MAX_FILES)
        return usage_error("too many outputs%s", "");
      split_file_arg(v, &o->outputs[o->noutputs++]);
    } else if (a[0] == '-' && a[1] != '\0') {
      return usage_error("unknown option '%s'", a);
    } else if (o->model) {
      return usage_error("more than one model file given ('%s')", a);
    } else {
      o->model = a;
    }
  }
  if (o->list_passes)
    return 0;
  if (!o->model)
    return usage_error("no model file given%s", "");
  if (o->report && !o->pass.calib_path)
    return usage_error("--report measures on the calibration samples: give --calib FILE%s", "");
  if (o->emit && strcmp(o->emit, "ir") != 0)
    return usage_error("--emit=%s is not supported (this version emits: ir)", o->emit);
  if (o->run && o->emit)
    return usage_error("--emit does not apply to `q8c run`%s", "");
  if (!o->run && o->ninputs)
    return usage_error("-i is for `q8c run`%s", "");
  if (!o->run && o->noutputs > 1)
    return usage_error("more than one -o given%s", "");
  if (o->run && o->ninputs == 0)
    return usage_error("`q8c run` needs at least one -i INPUT.npy%s", "");
  return 0;
}

static int fail(const IrModule *m) {
  fprintf(stderr, "%s\n", m->diag.msg);
  return EXIT_INPUT;
}

static int emit_ir(IrModule *m, const Options *o) {
  if (o->batch)
    ir_bind_batch(m, o->batch);
  if (o->noutputs) {
    char err[512];
    if (!pass_write_module(m, o->outputs[0].path, err, sizeof err)) {
      fprintf(stderr, "q8c: error: %s\n", err);
      return EXIT_INPUT;
    }
    return 0;
  }
  if (o->report)
    return 0;
  char *text = ir_print(m);
  if (!text) {
    fprintf(stderr, "q8c: error: out of memory\n");
    return EXIT_INPUT;
  }
  fputs(text, stdout);
  free(text);
  if (fflush(stdout) != 0) {
    fprintf(stderr, "q8c: error: write failed: %s\n", strerror(errno));
    return EXIT_INPUT;
  }
  return 0;
}

static void print_to_stderr(void *user, const char *text) { fputs(text, stderr); }

static void note_to_stderr(void *user, const char *text) {
  fprintf(stderr, "q8c: note: %s\n", text);
}

static int list_passes(void) {
  for (int i = 0; i < pass_count(); i++)
    printf("%-16s %s\n", pass_name(i), pass_description(i));
  return 0;
}

/* Compile: run the pass pipeline, then report and emit. */
static int compile(IrModule *m, Options *o) {
  o->pass.print = print_to_stderr;
  o->pass.note = note_to_stderr;
  IrModule *ref = NULL;
  if (o->report) {
    /* The float model, untouched, to measure the int8 one against. */
    ref = fe_parse_file(o->model);
    if (ref->diag.failed) {
      int rc = fail(ref);
      ir_module_free(ref);
      return rc;
    }
  }
  int rc = 0;
  if (!pass_run_pipeline(m, &o->pass)) {
    rc = fail(m);
  } else if (o->report) {
    char *text = pass_report(ref, m, &o->pass, strcmp(o->report, "json") == 0);
    if (!text)
      rc = fail(m);
    else
      fputs(text, stdout);
    free(text);
  }
  ir_module_free(ref);
  return rc ? rc : emit_ir(m, o);
}

/* Which file argument belongs to model value `v` (index `idx` of `count`). */
static const FileArg *match_file(const FileArg *args, int nargs, const IrValue *v, int count) {
  for (int i = 0; i < nargs; i++)
    if (args[i].name && strcmp(args[i].name, v->name) == 0)
      return &args[i];
  if (count == 1 && nargs == 1 && !args[0].name)
    return &args[0];
  return NULL;
}

static bool check_file_names(const FileArg *args, int nargs, IrValue **vals, int nvals,
                             const char *kind) {
  for (int i = 0; i < nargs; i++) {
    if (!args[i].name) {
      if (nvals > 1 || nargs > 1) {
        fprintf(stderr, "q8c: error: the model has %d %ss; name each as %s NAME=FILE\n", nvals,
                kind, kind[0] == 'i' ? "-i" : "-o");
        return false;
      }
      continue;
    }
    bool found = false;
    for (int j = 0; j < nvals; j++)
      found |= strcmp(args[i].name, vals[j]->name) == 0;
    if (!found) {
      fprintf(stderr, "q8c: error: the model has no %s named '%s'\n", kind, args[i].name);
      return false;
    }
  }
  return true;
}

/* The batch size the inputs imply: the length of each `?` dim must agree. */
static bool infer_batch(const IrModule *m, const IrTensor *in, const Options *o, int64_t *batch) {
  *batch = o->batch;
  for (int i = 0; i < m->ninputs; i++) {
    const IrType *t = &m->inputs[i]->type;
    if (in[i].type.rank != t->rank)
      continue; /* the interpreter reports the mismatch */
    for (int d = 0; d < t->rank; d++) {
      if (t->dims[d] != IR_DIM_BATCH)
        continue;
      int64_t got = in[i].type.dims[d];
      if (*batch == 0) {
        *batch = got;
      } else if (got != *batch) {
        fprintf(stderr,
                "q8c: error: input '%s' has %" PRId64 " in the batch dimension ('?') but the "
                "batch is %" PRId64 "%s\n",
                m->inputs[i]->name, got, *batch, o->batch ? " (--batch)" : "");
        return false;
      }
    }
  }
  if (*batch == 0)
    *batch = 1;
  return true;
}

/* Print a tensor like numpy's repr, for `q8c run` without -o. */
static void print_tensor(const char *name, const IrTensor *t) {
  char b[160];
  int64_t n;
  ir_type_numel(&t->type, 0, &n);
  printf("%%%s : %s =", name, ir_type_str(&t->type, b, sizeof b));
  int64_t row = t->type.rank ? t->type.dims[t->type.rank - 1] : 1;
  const float *x = t->data;
  for (int64_t i = 0; i < n; i++) {
    if (row && i % row == 0)
      printf("\n ");
    printf(" %.6g", x[i]);
  }
  printf("\n");
}

static int run_model(IrModule *m, const Options *o) {
  if (!check_file_names(o->inputs, o->ninputs, m->inputs, m->ninputs, "input") ||
      !check_file_names(o->outputs, o->noutputs, m->outputs, m->noutputs, "output"))
    return EXIT_USAGE;
  static IrTensor in[MAX_FILES], out[MAX_FILES];
  int status = EXIT_INPUT;
  if (m->ninputs > MAX_FILES || m->noutputs > MAX_FILES) {
    fprintf(stderr, "q8c: error: more than %d inputs or outputs\n", MAX_FILES);
    return EXIT_INPUT;
  }
  for (int i = 0; i < m->ninputs; i++) {
    const FileArg *f = match_file(o->inputs, o->ninputs, m->inputs[i], m->ninputs);
    char err[512];
    if (!f) {
      fprintf(stderr, "q8c: error: no file given for input '%s' (-i %s=FILE.npy)\n",
              m->inputs[i]->name, m->inputs[i]->name);
      goto done;
    }
    if (!fe_npy_read(f->path, &in[i], err, sizeof err)) {
      fprintf(stderr, "%s: error: %s\n", f->path, err);
      goto done;
    }
  }
  int64_t batch;
  if (!infer_batch(m, in, o, &batch))
    goto done;
  if (!ir_interp_f32(m, batch, in, out, NULL, NULL)) {
    fail(m);
    goto done;
  }
  for (int i = 0; i < m->noutputs; i++) {
    char err[512];
    const FileArg *f = match_file(o->outputs, o->noutputs, m->outputs[i], m->noutputs);
    if (o->noutputs == 0)
      print_tensor(m->outputs[i]->name, &out[i]);
    else if (f && !fe_npy_write(f->path, &out[i], err, sizeof err)) {
      fprintf(stderr, "%s: error: %s\n", f->path, err);
      goto done;
    }
  }
  status = 0;
done:
  for (int i = 0; i < MAX_FILES; i++) {
    free(in[i].data);
    free(out[i].data);
  }
  return status;
}

int main(int argc, char **argv) {
  Options o = {0};
  int rc = parse_args(argc, argv, &o);
  if (rc)
    return rc;
  if (o.list_passes)
    return list_passes();
  IrModule *m = fe_parse_file(o.model);
  if (!m) {
    fprintf(stderr, "q8c: error: out of memory\n");
    return EXIT_INPUT;
  }
  if (m->diag.failed)
    rc = fail(m);
  else
    rc = o.run ? run_model(m, &o) : compile(m, &o);
  ir_module_free(m);
  return rc;
}
