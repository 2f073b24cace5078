/* main.c: the `q8c` command line: its options, and `q8c MODEL.ir`, which
 * runs the pass pipeline and writes what --emit asks for. `q8c run` is in
 * run.c.
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

#include "../../codegen/codegen.h"
#include "driver.h"

static const char usage_text[] =
    "usage: q8c [options] MODEL.ir [-o OUTPUT]\n"
    "       q8c run MODEL.ir|MODEL.so [--jit] [--quantized] -i [NAME=]INPUT.npy...\n"
    "               [-o [NAME=]OUTPUT.npy]...\n"
    "       q8c import MODEL.onnx -o MODEL.ir   the model as text IR + safetensors\n"
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
    "                         avx2, generic (x86-64); aarch64-i8mm,\n"
    "                         aarch64-dotprod, aarch64 (cross-compiled with\n"
    "                         aarch64-linux-gnu-gcc). Several of one architecture\n"
    "                         go in one library; the runtime picks the best the\n"
    "                         CPU supports\n"
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
    "--quantized runs the model's quantized entry: inputs and outputs that have a\n"
    "quantized form (`{scale, zero_point, dtype}` on their declaration, written by\n"
    "the fuse-requant pass) are u8 or i8 .npy files instead of f32.\n"
    "Environment: Q8_ISA forces a variant, Q8_THREADS sets threads,\n"
    "Q8_CPU_FEATURES limits the CPU features the runtime and --target=native\n"
    "see (q8rt.h).\n"
    "MODEL.ir may be '-' to read standard input (weights then resolve from the\n"
    "current directory). Exit status: 0 success, 1 an error in the model or\n"
    "data, 2 a usage error.\n"
    "MODEL may be an ONNX file (.onnx, or recognised by its content) wherever\n"
    "MODEL.ir is accepted (docs/import.md).\n";

static int usage_error(const char *fmt, const char *arg) {
  fprintf(stderr, "q8c: error: ");
  fprintf(stderr, fmt, arg);
  fprintf(stderr, "\nTry 'q8c --help' for more information.\n");
  return EXIT_USAGE;
}

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
  } else if (argc > 1 && strcmp(argv[1], "import") == 0) {
    o->import = true;
    i = 2;
  }
  for (; i < argc; i++) {
    const char *a = argv[i], *v;
    if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
      fputs(usage_text, stdout);
      exit(0);
    } else if (strcmp(a, "--version") == 0) {
      unsigned major, minor, patch;
      LLVMGetVersion(&major, &minor, &patch);
      printf("q8c %s (LLVM %u.%u.%u)\n", Q8_VERSION, major, minor, patch);
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
    } else if (strcmp(a, "--quantized") == 0) {
      o->quantized = true;
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
  if (o->import && o->noutputs != 1)
    return usage_error("`q8c import` needs -o OUTPUT.ir%s", "");
  if (o->run && o->emit)
    return usage_error("--emit does not apply to `q8c run`%s", "");
  if (!o->run && o->ninputs)
    return usage_error("-i is for `q8c run`%s", "");
  if (!o->run && o->noutputs > 1)
    return usage_error("more than one -o given%s", "");
  if (o->jit && !o->run)
    return usage_error("--jit is for `q8c run`%s", "");
  if (o->quantized && !o->run)
    return usage_error("--quantized is for `q8c run`%s", "");
  if (o->run && o->ninputs == 0)
    return usage_error("`q8c run` needs at least one -i INPUT.npy%s", "");
  return 0;
}

int driver_fail(const IrModule *m) {
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
      int rc = driver_fail(ref);
      ir_module_free(ref);
      return rc;
    }
  }
  int rc = 0;
  if (!pass_run_pipeline(m, &o->pass)) {
    rc = driver_fail(m);
  } else if (o->report) {
    char *text = pass_report(ref, m, &o->pass, strcmp(o->report, "json") == 0);
    if (!text)
      rc = driver_fail(m);
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
    return driver_fail(m);
  return 0;
}

int main(int argc, char **argv) {
  Options o = {0};
  int rc = parse_args(argc, argv, &o);
  if (rc)
    return rc;
  if (o.list_passes)
    return list_passes();
  if (o.run)
    return driver_run(&o);
  IrModule *m = fe_parse_file(o.model);
  if (!m) {
    fprintf(stderr, "q8c: error: out of memory\n");
    return EXIT_INPUT;
  }
  if (m->diag.failed)
    rc = driver_fail(m);
  else if (o.import)
    rc = emit_ir(m, &o);
  else
    rc = compile(m, &o);
  ir_module_free(m);
  return rc;
}
