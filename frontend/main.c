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

#include "../codegen/codegen.h"
#include "../passes/passes.h"
#include "q8rt.h"
#include "frontend.h"

enum { EXIT_INPUT = 1, EXIT_USAGE = 2, MAX_FILES = 64 };

static const char usage_text[] =
    "usage: q8c [options] MODEL.ir [-o OUTPUT]\n"
    "       q8c run MODEL.ir|MODEL.so -i [NAME=]INPUT.npy... [-o [NAME=]OUTPUT.npy]...\n"
    "\n"
    "Quantize a float model written in q8c's text IR (docs/ir.md) to INT8 and\n"
    "compile it to machine code specialized to its shapes. The pipeline:\n"
    "calibrate, quantize, fuse-requant, fold-constants (--list-passes).\n"
    "\n"
    "Output:\n"
    "  -o FILE                write to FILE; without --emit its suffix chooses:\n"
    "                         .ir .ll .s .o .h, anything else a shared library\n"
    "  --emit=KIND            ir (the quantized IR; -o also writes its constants\n"
    "                         to FILE's .safetensors sidecar), llvm, asm, obj,\n"
    "                         so (a self-contained model library), header (a C\n"
    "                         header declaring the model's entry points).\n"
    "                         Default: ir to standard output, or by -o's suffix\n"
    "  --target=T[,T]         native (default) or variants: avx512vnni, avxvnni,\n"
    "                         avx2, generic; several go in one library and the\n"
    "                         runtime picks the best the CPU supports\n"
    "  -O0 .. -O3             LLVM optimisation level (default -O3)\n"
    "  --batch N              bind the batch dimension '?' to N (default 1)\n"
    "  --report[=text|json]   per-layer accuracy of the int8 model against the\n"
    "                         float one on the --calib samples (SQNR, max error,\n"
    "                         cosine; propagated and isolated) and model sizes,\n"
    "                         on standard output (the compiled output then needs -o)\n"
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
    "  --stop-after=P         stop the pipeline after pass P (the output is IR)\n"
    "  --dump-dir=DIR         write DIR/NN-PASS.ir (+ .safetensors) after each pass;\n"
    "                         every dump compiles again on its own\n"
    "\n"
    "  -h, --help             show this help and exit\n"
    "  --version              show the version and exit\n"
    "\n"
    "`q8c run` executes a model: MODEL.so through the runtime (libq8rt), MODEL.ir\n"
    "with the reference interpreter, or with --jit compiled in memory for\n"
    "--target. Inputs and outputs are .npy files; a model with several inputs or\n"
    "outputs names them as -i NAME=FILE and -o NAME=FILE. Without -o the outputs\n"
    "are printed. For .ir, --batch defaults to the inputs' batch size.\n"
    "Environment: Q8_ISA forces a variant, Q8_THREADS sets threads (q8rt.h).\n"
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
  bool jit;           /* run: compile in memory instead of interpreting */
  const char *model;
  const char *emit;
  const char *out;
  int64_t batch;     /* 0 = not given */
  const char *report; /* NULL, "text" or "json" */
  const char *target; /* --target, default "native" */
  int opt_level;      /* -O0..-O3, default 3 */
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

/* The options that configure the pass pipeline (passes.h names them).
 * Returns true when argv[*i] was one of them; *rc is then non-zero on a bad
 * value. */
static bool is_pass_option(int argc, char **argv, int *i, PassOptions *p, int *rc) {
  const char *a = argv[*i];
  char name[64], opt[70];
  size_t len = strcspn(a + 2, "=");
  *rc = 0;
  if (strncmp(a, "--", 2) != 0 || len >= sizeof name)
    return false;
  memcpy(name, a + 2, len);
  name[len] = '\0';
  int kind = pass_option_kind(name);
  if (kind == 0)
    return false;
  snprintf(opt, sizeof opt, "--%s", name);
  const char *v = kind == 2 ? opt_value(argc, argv, i, opt) : NULL;
  char err[256];
  if (!pass_options_set(p, name, v, err, sizeof err))
    *rc = usage_error("%s", err);
  return true;
}

/* What --emit names, as a CgEmit, or EMIT_IR; -1 when unknown. */
enum { EMIT_IR = 100 };

static int emit_kind(const char *s) {
  static const struct {
    const char *name;
    int kind;
  } kinds[] = {{"ir", EMIT_IR},         {"llvm", CG_EMIT_LLVM}, {"asm", CG_EMIT_ASM},
               {"obj", CG_EMIT_OBJ},    {"so", CG_EMIT_SO},     {"header", CG_EMIT_HEADER}};
  for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++)
    if (strcmp(s, kinds[i].name) == 0)
      return kinds[i].kind;
  return -1;
}

/* Without --emit: what the -o file's name asks for, else IR on stdout. */
static int default_emit(const char *out) {
  static const struct {
    const char *suffix;
    int kind;
  } by_suffix[] = {{".ir", EMIT_IR},    {".ll", CG_EMIT_LLVM}, {".s", CG_EMIT_ASM},
                   {".o", CG_EMIT_OBJ}, {".h", CG_EMIT_HEADER}};
  if (!out)
    return EMIT_IR;
  size_t len = strlen(out);
  for (size_t i = 0; i < sizeof by_suffix / sizeof by_suffix[0]; i++) {
    size_t sl = strlen(by_suffix[i].suffix);
    if (len > sl && strcmp(out + len - sl, by_suffix[i].suffix) == 0)
      return by_suffix[i].kind;
  }
  return CG_EMIT_SO;
}

static int parse_args(int argc, char **argv, Options *o) {
  int i = 1, rc = 0;
  pass_options_init(&o->pass);
  o->opt_level = 3;
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
    } else if (is_opt(a, "--target")) {
      if (!(v = opt_value(argc, argv, &i, "--target")))
        return usage_error("%s needs a value", a);
      o->target = v;
    } else if (a[0] == '-' && a[1] == 'O' && a[2] >= '0' && a[2] <= '3' && !a[3]) {
      o->opt_level = a[2] - '0';
    } else if (is_opt(a, "--report")) {
      o->report = a[8] == '=' ? a + 9 : "text";
      if (strcmp(o->report, "text") != 0 && strcmp(o->report, "json") != 0)
        return usage_error("--report takes text or json, not '%s'", o->report);
    } else if (strcmp(a, "--jit") == 0) {
      o->jit = true;
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
  if (o->emit && emit_kind(o->emit) < 0)
    return usage_error("--emit takes ir, llvm, asm, obj, so or header, not '%s'", o->emit);
  if (o->run && o->emit)
    return usage_error("--emit does not apply to `q8c run`%s", "");
  if (!o->run && o->ninputs)
    return usage_error("-i is for `q8c run`%s", "");
  if (!o->run && o->noutputs > 1)
    return usage_error("more than one -o given%s", "");
  if (o->jit && !o->run)
    return usage_error("--jit is for `q8c run`%s", "");
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
  if (rc)
    return rc;
  const char *out = o->noutputs ? o->outputs[0].path : NULL;
  int kind = o->emit ? emit_kind(o->emit) : default_emit(out);
  if (o->pass.stop_after && kind != EMIT_IR) {
    if (o->emit) {
      fprintf(stderr, "q8c: error: --stop-after gives IR; it cannot be combined with --emit=%s\n",
              o->emit);
      return EXIT_USAGE;
    }
    kind = EMIT_IR;
  }
  if (kind == EMIT_IR)
    return emit_ir(m, o);
  if (!out && (kind == CG_EMIT_OBJ || kind == CG_EMIT_SO)) {
    fprintf(stderr, "q8c: error: --emit=%s writes a binary file: give -o FILE\n", o->emit);
    return EXIT_USAGE;
  }
  CgOptions co = {.opt_level = o->opt_level, .batch = o->batch ? o->batch : 1};
  char err[512];
  if (!cg_parse_targets(o->target ? o->target : "native", &co, err, sizeof err)) {
    fprintf(stderr, "q8c: error: --target: %s\n", err);
    return EXIT_USAGE;
  }
  if (!cg_compile_to_file(m, &co, (CgEmit)kind, out ? out : "/dev/stdout"))
    return fail(m);
  return 0;
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
  for (int64_t i = 0; i < n; i++) {
    if (row && i % row == 0)
      printf("\n ");
    switch (t->type.dtype) {
    case IR_F32:
      printf(" %.6g", ((const float *)t->data)[i]);
      break;
    case IR_U8:
      printf(" %d", ((const uint8_t *)t->data)[i]);
      break;
    case IR_I8:
      printf(" %d", ((const int8_t *)t->data)[i]);
      break;
    default:
      printf(" %d", (int)((const int32_t *)t->data)[i]);
      break;
    }
  }
  printf("\n");
}

static void release_jit(void *jit) { cg_jit_free(jit); }

/* `q8c run --jit`: compile the (quantized) module in memory for --target and
 * run the machine code instead of the interpreter; outputs are allocated like
 * the interpreter's. */
static bool run_jit(IrModule *m, const Options *o, int64_t batch, IrTensor *in, IrTensor *out) {
  CgOptions co = {.opt_level = o->opt_level, .batch = batch};
  char err[512];
  if (!cg_parse_targets(o->target ? o->target : "native", &co, err, sizeof err))
    return ir_error(&m->diag, (IrLoc){0}, "--target: %s", err);
  const q8_model_desc *desc;
  CgJit *jit = cg_jit_compile(m, &co, &desc);
  if (!jit)
    return false;
  q8rt_model *rt = NULL;
  if (q8rt_model_from_desc(desc, release_jit, jit, &rt, err, sizeof err) != Q8RT_OK) {
    cg_jit_free(jit);
    return ir_error(&m->diag, (IrLoc){0}, "%s", err);
  }
  const void *inp[MAX_FILES];
  void *outp[MAX_FILES];
  bool ok = true;
  for (int i = 0; ok && i < m->ninputs; i++) {
    IrType want = ir_type_bind(&m->inputs[i]->type, batch);
    char b1[128], b2[128];
    if (!ir_type_equal(&in[i].type, &want))
      ok = ir_error(&m->diag, (IrLoc){0}, "input '%s' is %s but the model expects %s",
                    m->inputs[i]->name, ir_type_str(&in[i].type, b1, sizeof b1),
                    ir_type_str(&want, b2, sizeof b2));
    inp[i] = in[i].data;
  }
  for (int i = 0; ok && i < m->noutputs; i++) {
    out[i].type = ir_type_bind(&m->outputs[i]->type, batch);
    int64_t n;
    ir_type_numel(&out[i].type, batch, &n);
    out[i].data = outp[i] = malloc((size_t)(n ? n : 1) * ir_dtype_size(out[i].type.dtype));
    ok = out[i].data != NULL;
  }
  if (!ok)
    ir_error(&m->diag, (IrLoc){0}, "out of memory");
  else if (q8rt_run(rt, inp, outp, err, sizeof err) != Q8RT_OK)
    ok = ir_error(&m->diag, (IrLoc){0}, "%s", err);
  q8rt_free(rt);
  return ok;
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
  if (o->jit ? !run_jit(m, o, batch, in, out) : !ir_interp_f32(m, batch, in, out, NULL, NULL)) {
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

static bool ends_with(const char *s, const char *suffix) {
  size_t n = strlen(s), k = strlen(suffix);
  return n >= k && strcmp(s + n - k, suffix) == 0;
}

/* The descriptor's tensor as an IrType, for messages and .npy files. */
static IrType desc_type(const q8_tensor_desc *d) {
  IrType t = {d->dtype == Q8_DTYPE_F32 ? IR_F32 : d->dtype == Q8_DTYPE_U8 ? IR_U8
              : d->dtype == Q8_DTYPE_I8 ? IR_I8 : IR_I32, d->rank, {0}};
  for (int i = 0; i < d->rank && i < IR_MAX_RANK; i++)
    t.dims[i] = d->dims[i];
  return t;
}

/* `q8c run model.so`: load with the runtime and run the compiled code. */
static int run_compiled(const Options *o) {
  char err[512];
  q8rt_model *model = NULL;
  if (q8rt_load(o->model, &model, err, sizeof err) != Q8RT_OK) {
    fprintf(stderr, "%s: error: %s\n", o->model, err);
    return EXIT_INPUT;
  }
  int nin = q8rt_num_inputs(model), nout = q8rt_num_outputs(model), status = EXIT_INPUT;
  IrTensor in[MAX_FILES] = {0}, out[MAX_FILES] = {0};
  const void *inp[MAX_FILES];
  void *outp[MAX_FILES];
  if (nin > MAX_FILES || nout > MAX_FILES) {
    fprintf(stderr, "q8c: error: more than %d inputs or outputs\n", MAX_FILES);
    goto done;
  }
  for (int i = 0; i < nin; i++) {
    const q8_tensor_desc *d = q8rt_input(model, i);
    IrValue v = {.name = d->name};
    const FileArg *f = match_file(o->inputs, o->ninputs, &v, nin);
    if (!f) {
      fprintf(stderr, "q8c: error: no file given for input '%s' (-i %s=FILE.npy)\n", d->name,
              d->name);
      goto done;
    }
    if (!fe_npy_read(f->path, &in[i], err, sizeof err)) {
      fprintf(stderr, "%s: error: %s\n", f->path, err);
      goto done;
    }
    IrType want = desc_type(d);
    char b1[128], b2[128];
    if (!ir_type_equal(&in[i].type, &want)) {
      fprintf(stderr,
              "%s: error: input '%s' is %s but the model was compiled for %s (recompile with "
              "--batch to change the batch size)\n",
              f->path, d->name, ir_type_str(&in[i].type, b1, sizeof b1),
              ir_type_str(&want, b2, sizeof b2));
      goto done;
    }
    inp[i] = in[i].data;
  }
  for (int i = 0; i < nout; i++) {
    const q8_tensor_desc *d = q8rt_output(model, i);
    out[i].type = desc_type(d);
    int64_t n = q8rt_tensor_numel(d);
    out[i].data = malloc((size_t)(n > 0 ? n : 1) * ir_dtype_size(out[i].type.dtype));
    outp[i] = out[i].data;
    if (!out[i].data) {
      fprintf(stderr, "q8c: error: out of memory\n");
      goto done;
    }
  }
  if (q8rt_run(model, inp, outp, err, sizeof err) != Q8RT_OK) {
    fprintf(stderr, "%s: error: %s\n", o->model, err);
    goto done;
  }
  for (int i = 0; i < nout; i++) {
    const q8_tensor_desc *d = q8rt_output(model, i);
    IrValue v = {.name = d->name};
    const FileArg *f = match_file(o->outputs, o->noutputs, &v, nout);
    if (o->noutputs == 0)
      print_tensor(d->name, &out[i]);
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
  q8rt_free(model);
  return status;
}

int main(int argc, char **argv) {
  Options o = {0};
  int rc = parse_args(argc, argv, &o);
  if (rc)
    return rc;
  if (o.list_passes)
    return list_passes();
  if (o.run && ends_with(o.model, ".so"))
    return run_compiled(&o);
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
