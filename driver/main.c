/* main.c: the `q8c` command line: its options, and `q8c MODEL.ir`, which
 * runs the pass pipeline and writes what --emit asks for. `q8c run` is in
 * run.c, `q8c info` in info.c, `q8c bench` in bench.c.
 *
 * Every option is one row of `options[]` below: its spellings, whether it
 * takes a value, the subcommands it applies to and its --help text, so the
 * parser and the help cannot disagree. The parser follows GNU conventions
 * (getopt_long): `--name=VALUE` or `--name VALUE`, `-oFILE` or `-o FILE`,
 * grouped flags (`-qh`), unique prefixes of long names, `--` ending the
 * options, and '-' as a file meaning standard input or output.
 *
 * The driver only turns arguments into calls on the layers below and prints
 * what they report; it is the one place that writes to stderr and chooses an
 * exit status: 0 success, 1 an error in the input, 2 a usage error. Running
 * out of memory in the IR is one such error: main() sets the recovery point
 * the arena jumps to (IrRecover, ir/ir.h). */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../api/jiteval.h"
#include "../codegen/codegen.h"
#include "driver.h"

/* ---- the option table ---- */

typedef enum { ARG_NONE, ARG_REQUIRED, ARG_OPTIONAL } ArgKind;

enum {
  C = 1 << CMD_COMPILE,
  R = 1 << CMD_RUN,
  B = 1 << CMD_BENCH,
  I = 1 << CMD_INFO,
  M = 1 << CMD_IMPORT,
  ALL = C | R | B | I | M,
};

typedef enum {
  OPT_HELP,
  OPT_VERSION,
  OPT_QUIET,
  OPT_OUTPUT,
  OPT_INPUT,
  OPT_EMIT,
  OPT_TARGET,
  OPT_OPT_LEVEL,
  OPT_BATCH,
  OPT_MAX_BATCH,
  OPT_MAX_DIM,
  OPT_REPORT,
  OPT_JIT,
  OPT_QUANTIZED,
  OPT_LIST_PASSES,
  OPT_LIST_TARGETS,
  OPT_PASS, /* a pipeline option: passes.h's pass_options_set takes it by name */
  OPT_THREADS,
  OPT_WARMUP,
  OPT_RUNS,
  OPT_JSON,
  OPT_DIM,
  OPT_WEIGHTS_OUT,
} OptId;

typedef struct {
  const char *section; /* --help: a heading that starts a group, or NULL */
  const char *name;    /* the long name without "--", or NULL */
  char short_name;     /* or 0 */
  ArgKind arg;
  unsigned commands;   /* the subcommands it applies to (C, R, B, I) */
  OptId id;
  const char *spelling; /* --help's left column */
  const char *help;     /* --help's right column; '\n' continues it */
} OptSpec;

static const OptSpec options[] = {
    {"Output", "output", 'o', ARG_REQUIRED, C | R | M, OPT_OUTPUT, "-o FILE",
     "write to FILE ('-': standard output); without --emit\n"
     "its suffix chooses: .ir .ll .s .o .h, anything else a\n"
     "shared library ('-': IR)"},
    {NULL, "emit", 0, ARG_REQUIRED, C, OPT_EMIT, "--emit=KIND",
     "ir (the quantized IR; -o also writes its constants\n"
     "to FILE's .safetensors sidecar), llvm, asm, obj,\n"
     "so (a self-contained model library), header (a C\n"
     "header declaring the model's entry points).\n"
     "Default: ir to standard output, or by -o's suffix"},
    {NULL, "weights-out", 0, ARG_REQUIRED, C, OPT_WEIGHTS_OUT, "--weights-out=FILE",
     "a shared library's packed weights go to FILE, which\n"
     "the runtime maps read-only when it loads the library\n"
     "(shared between processes through the page cache),\n"
     "not into the library: for models of any size. The\n"
     "library records FILE's name (beside the library) or\n"
     "absolute path, size and checksum, and refuses to\n"
     "load with a missing, truncated or other model's file"},
    {NULL, "target", 0, ARG_REQUIRED, C | R | B, OPT_TARGET, "--target=T[,T]",
     "native (default) or variants: avx512vnni, avxvnni,\n"
     "avx2, generic (x86-64); aarch64-i8mm,\n"
     "aarch64-dotprod, aarch64 (cross-compiled with\n"
     "aarch64-linux-gnu-gcc). Several of one architecture\n"
     "go in one library; the runtime picks the best the\n"
     "CPU supports"},
    {NULL, "list-targets", 0, ARG_NONE, C, OPT_LIST_TARGETS, "--list-targets",
     "list the variants, best first within an architecture:\n"
     "name, architecture, and runs-here when this CPU runs\n"
     "it (as Q8_CPU_FEATURES restricts it), else '-'; exit"},
    {NULL, NULL, 'O', ARG_REQUIRED, C | R | B, OPT_OPT_LEVEL, "-O0 .. -O3",
     "LLVM optimisation level (default -O3)"},
    {NULL, "batch", 0, ARG_REQUIRED, C | R | B, OPT_BATCH, "--batch N",
     "bind the batch dimension '?' to N: a fixed-shape\n"
     "library. Without it, a model whose '?' leads every\n"
     "shape that has one takes any batch at each call\n"
     "(docs/ir.md, \"Run-time batch\"); others get 1"},
    {NULL, "max-batch", 0, ARG_REQUIRED, C, OPT_MAX_BATCH, "--max-batch N",
     "without --batch: refuse calls above batch N\n"
     "(default: no limit but memory)"},
    {NULL, "max-dim", 0, ARG_REQUIRED, C, OPT_MAX_DIM, "--max-dim NAME=N",
     "without --batch: refuse calls where the named dim\n"
     "NAME (f32[B, T, 64]) is above N (default: no limit)"},
    {NULL, "dim", 0, ARG_REQUIRED, C | R | B | M, OPT_DIM, "--dim NAME=N",
     "bind the symbolic dimension NAME to N: an ONNX\n"
     "dim_param, or a named dim of a text model (f32[B, T, 64]);\n"
     "repeat for several (--dim seq=128 --dim past=0)"},
    {NULL, "report", 0, ARG_OPTIONAL, C, OPT_REPORT, "--report[=text|json|html]",
     "per-layer accuracy of the int8 model against the\n"
     "float one on the --calib samples (SQNR, max error,\n"
     "cosine; propagated and isolated; layers kept in f32\n"
     "too), the outputs' SQNR, cosine and top-1 agreement,\n"
     "and model sizes, on standard output (the compiled\n"
     "output then needs -o). html: one self-contained page\n"
     "with a chart of SQNR by depth (redirect it:\n"
     "--report=html > report.html)"},

    {"Calibration", "calib", 0, ARG_REQUIRED, C, OPT_PASS, "--calib FILE",
     "samples along the first axis: .npy for a model with\n"
     "one input, else .safetensors with an array per input.\n"
     "Without it (and without ranges in the IR) activations\n"
     "are quantized at run time, as with --dynamic"},
    {NULL, "calib-method", 0, ARG_REQUIRED, C, OPT_PASS, "--calib-method M",
     "minmax (default), ma-minmax, percentile:P (e.g.\n"
     "percentile:99.99), entropy (KL), mse, or auto: per\n"
     "activation, the one of minmax, percentile:99.99,\n"
     "entropy and mse whose consuming layer has the best\n"
     "isolated SQNR on the last quarter of the samples"},
    {NULL, "calib-momentum", 0, ARG_REQUIRED, C, OPT_PASS, "--calib-momentum M",
     "ma-minmax: weight of each new batch (default 0.01)"},
    {NULL, "calib-batch", 0, ARG_REQUIRED, C, OPT_PASS, "--calib-batch N",
     "samples per calibration batch (default 16)"},

    {"Quantization scheme", "weights", 0, ARG_REQUIRED, C, OPT_PASS, "--weights=W",
     "s8-per-channel (default), s8-per-tensor, or grouped\n"
     "with activations quantized per row at run time:\n"
     "s4-per-group:G, u4-per-group:G, s8-per-group:G\n"
     "(G 32, 64 or 128; f16 scales, ':f32' for f32);\n"
     "nf4:G or fp4:G: 4-bit weights, f32 activations,\n"
     "one maximum per G weights (32..256, default 64)"},
    {NULL, "weights-for", 0, ARG_REQUIRED, C, OPT_PASS, "--weights-for=@W:F[,..]",
     "weight format F for weight @W (overrides --weights)"},
    {NULL, "double-quant", 0, ARG_NONE, C, OPT_PASS, "--double-quant",
     "nf4/fp4: the block maxima quantized to 8 bits"},
    {NULL, "reduce-range", 0, ARG_NONE, C, OPT_PASS, "--reduce-range",
     "7-bit weights ([-63, 63]; attention's right operands\n"
     "in a 7-bit window): AVX2 without VNNI then runs every\n"
     "int8 GEMM in its fast vpmaddubsw form (about 2x);\n"
     "costs some accuracy (docs/quantization.md)"},
    {NULL, "activations", 0, ARG_REQUIRED, C, OPT_PASS, "--activations=A",
     "u8-asym (default) or s8-sym"},
    {NULL, "dynamic", 0, ARG_NONE, C, OPT_PASS, "--dynamic",
     "quantize activations per row at run time (no\n"
     "calibration data; --calib only with --report,\n"
     "--smooth, --target-sqnr or --max-top1-drop)"},
    {NULL, "outliers", 0, ARG_OPTIONAL, C, OPT_PASS, "--outliers[=T]",
     "LLM.int8: as --dynamic, but the input columns where\n"
     "some |x| >= T in the batch (default T 6) are computed\n"
     "in f32 against an f32 copy of the weights (4 more\n"
     "bytes per weight), the rest in int8, the two summed"},
    {NULL, "keep-float", 0, ARG_REQUIRED, C, OPT_PASS, "--keep-float=N[,N]",
     "values (%name) or weights (@name) to keep in f32"},

    {"Accuracy remedies", "smooth", 0, ARG_OPTIONAL, C, OPT_PASS, "--smooth[=ALPHA]",
     "SmoothQuant: divide each channel of an activation\n"
     "feeding linear layers by s = max|x|^ALPHA /\n"
     "max|w|^(1-ALPHA) (default ALPHA 0.5, in [0, 1]),\n"
     "folded into the layernorm, rmsnorm or linear (through\n"
     "relu) that makes it, and multiply the weights by s.\n"
     "Needs --calib"},
    {NULL, "target-sqnr", 0, ARG_REQUIRED, C, OPT_PASS, "--target-sqnr=DB",
     "keep the fewest layers in f32 such that every output\n"
     "reaches DB dB of SQNR against the float model on the\n"
     "last quarter of the --calib samples (calibrating on\n"
     "the rest); smoothing and auto calibration are tried\n"
     "first. An error when even f32 cannot meet it"},
    {NULL, "max-top1-drop", 0, ARG_REQUIRED, C, OPT_PASS, "--max-top1-drop=P",
     "the same for top-1 agreement with the float model:\n"
     "at most P percent of rows may change their argmax"},

    {"Seeing the passes", "list-passes", 0, ARG_NONE, C, OPT_LIST_PASSES, "--list-passes",
     "list the pipeline's passes and exit"},
    {NULL, "print-before", 0, ARG_REQUIRED, C, OPT_PASS, "--print-before=P[,P]",
     "print the IR before these passes (to stderr)"},
    {NULL, "print-after", 0, ARG_REQUIRED, C, OPT_PASS, "--print-after=P[,P]",
     "print the IR after these passes (to stderr)"},
    {NULL, "print-after-all", 0, ARG_NONE, C, OPT_PASS, "--print-after-all",
     "print the IR after every pass (to stderr)"},
    {NULL, "stop-after", 0, ARG_REQUIRED, C, OPT_PASS, "--stop-after=P",
     "stop the pipeline after pass P (the output is IR)"},
    {NULL, "dump-dir", 0, ARG_REQUIRED, C, OPT_PASS, "--dump-dir=DIR",
     "write DIR/NN-PASS.ir (+ .safetensors) after each pass;\n"
     "every dump compiles again on its own"},
    {NULL, "time-passes", 0, ARG_NONE, C, OPT_PASS, "--time-passes",
     "after the run, print each pass's wall time (and the\n"
     "report's and code generation's) to stderr. On a\n"
     "terminal, calibration shows its progress (samples,\n"
     "rate, ETA) and stages taking over a second leave a\n"
     "line on stderr; -q silences them"},

    {"Running (q8c run, q8c bench)", "input", 'i', ARG_REQUIRED, R | B, OPT_INPUT,
     "-i [NAME=]FILE", "an input .npy ('-': standard input); bench: zeros\n"
     "when not given"},
    {NULL, "jit", 0, ARG_NONE, R, OPT_JIT, "--jit",
     "run: compile MODEL.ir in memory instead of interpreting"},
    {NULL, "quantized", 0, ARG_NONE, R, OPT_QUANTIZED, "--quantized",
     "run: the quantized entry (u8/i8 inputs and outputs)"},
    {NULL, "threads", 0, ARG_REQUIRED, B, OPT_THREADS, "--threads N",
     "bench: threads (default: Q8_THREADS, else 1)"},
    {NULL, "warmup", 0, ARG_REQUIRED, B, OPT_WARMUP, "--warmup N",
     "bench: untimed runs first (default 5)"},
    {NULL, "runs", 0, ARG_REQUIRED, B, OPT_RUNS, "--runs N",
     "bench: timed runs (default 100)"},
    {NULL, "json", 0, ARG_NONE, B, OPT_JSON, "--json", "bench: print JSON instead of a table"},

    {"General", "quiet", 'q', ARG_NONE, ALL, OPT_QUIET, "-q, --quiet",
     "no notes or progress on stderr (errors only)"},
    {NULL, "help", 'h', ARG_NONE, ALL, OPT_HELP, "-h, --help", "show this help and exit"},
    {NULL, "version", 0, ARG_NONE, ALL, OPT_VERSION, "--version",
     "show the version (and the model ABI and LLVM's) and exit"},
};
enum { NOPTIONS = sizeof options / sizeof options[0] };

static const char *const command_names[] = {"", "run", "bench", "info", "import"};

static const char usage_head[] =
    "usage: q8c [options] MODEL.ir [-o OUTPUT]\n"
    "       q8c run MODEL.ir|MODEL.so [--jit] [--quantized] -i [NAME=]INPUT.npy...\n"
    "               [-o [NAME=]OUTPUT.npy]...\n"
    "       q8c info MODEL.so\n"
    "       q8c import MODEL.onnx -o MODEL.ir   the model as text IR + safetensors\n"
    "       q8c bench MODEL.so|MODEL.ir [--batch N] [--threads N] [--warmup N]\n"
    "               [--runs N] [--json] [-i [NAME=]INPUT.npy]...\n"
    "       q8c help\n"
    "\n"
    "Quantize a float model written in q8c's text IR (docs/ir.md) to INT8 and\n"
    "compile it to machine code specialized to its shapes. The pipeline:\n"
    "(autopilot and smooth, with their options), calibrate, quantize,\n"
    "fuse-requant, fold-constants (--list-passes).\n"
    "Without --calib, activations that have no range in the IR are quantized\n"
    "at run time (--dynamic; a note says so); with it, statically.\n"
    "MODEL may be an ONNX file (.onnx, or recognised by its content) wherever\n"
    "MODEL.ir is accepted (docs/import.md).\n";

static const char usage_tail[] =
    "\n"
    "`q8c run` executes a model: MODEL.so through the runtime (libq8rt), MODEL.ir\n"
    "with the reference interpreter, or with --jit compiled in memory for\n"
    "--target. Inputs and outputs are .npy files; a model with several inputs or\n"
    "outputs names them as -i NAME=FILE and -o NAME=FILE. Without -o the outputs\n"
    "are printed. For .ir, --batch defaults to the inputs' batch size.\n"
    "--quantized runs the model's quantized entry: inputs and outputs that have a\n"
    "quantized form (`{scale, zero_point, dtype}` on their declaration, written by\n"
    "the fuse-requant pass) are u8 or i8 .npy files instead of f32.\n"
    "`q8c info` prints a model library's variants, inputs and outputs, scratch\n"
    "and weight bytes. `q8c bench` times a model on zero inputs (or -i files):\n"
    "warm-up runs, then latency median, p90, min and mean, and throughput\n"
    "(batch / median); a .so runs with the batch it was compiled for, a .ir is\n"
    "compiled in memory for --batch and --target.\n"
    "Environment: Q8_ISA forces a variant, Q8_THREADS sets threads,\n"
    "Q8_CPU_FEATURES limits the CPU features the runtime and --target=native\n"
    "see (q8rt.h).\n"
    "A FILE may be '-' for standard input or output: MODEL.ir (weights then\n"
    "resolve from the current directory), --calib, -i, and -o for text (binary\n"
    "outputs only when standard output is not a terminal). Long options may be\n"
    "abbreviated to a unique prefix; `--` ends the options. Exit status:\n"
    "0 success, 1 an error in the model or data, 2 a usage error.\n";

static void print_help(void) {
  fputs(usage_head, stdout);
  for (int i = 0; i < NOPTIONS; i++) {
    const OptSpec *s = &options[i];
    if (s->section)
      printf("\n%s:\n", s->section);
    const char *h = s->help;
    size_t n = strcspn(h, "\n");
    if (strlen(s->spelling) > 22)
      printf("  %s\n  %-22s %.*s\n", s->spelling, "", (int)n, h);
    else
      printf("  %-22s %.*s\n", s->spelling, (int)n, h);
    for (h += n; *h == '\n'; h += n) {
      h++;
      n = strcspn(h, "\n");
      printf("  %-22s %.*s\n", "", (int)n, h);
    }
  }
  fputs(usage_tail, stdout);
}

static void print_version(void) {
  unsigned major, minor, patch;
  LLVMGetVersion(&major, &minor, &patch);
  printf("q8c %s (model ABI %d, LLVM %u.%u.%u)\n", Q8_VERSION, Q8_MODEL_ABI_VERSION, major,
         minor, patch);
}

/* ---- parsing ---- */

int driver_usage_error(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "q8c: error: ");
  vfprintf(stderr, fmt, ap);
  fprintf(stderr, "\nTry 'q8c --help' for more information.\n");
  va_end(ap);
  return EXIT_USAGE;
}

/* Edit distance (insertions, deletions, substitutions) between a[0..na) and
 * b, for "did you mean"; names are short, so the quadratic table is fine. */
static int edit_distance(const char *a, size_t na, const char *b) {
  size_t nb = strlen(b);
  if (na > 63 || nb > 63)
    return 99;
  int d[64][64];
  for (size_t i = 0; i <= na; i++)
    d[i][0] = (int)i;
  for (size_t j = 0; j <= nb; j++)
    d[0][j] = (int)j;
  for (size_t i = 1; i <= na; i++)
    for (size_t j = 1; j <= nb; j++) {
      int best = d[i - 1][j - 1] + (a[i - 1] != b[j - 1]);
      if (d[i - 1][j] + 1 < best)
        best = d[i - 1][j] + 1;
      if (d[i][j - 1] + 1 < best)
        best = d[i][j - 1] + 1;
      d[i][j] = best;
    }
  return d[na][nb];
}

/* The closest of `names` to s[0..n), if close enough to be a likely typo. */
static const char *closest(const char *s, size_t n, const char *const *names, int count) {
  const char *best = NULL;
  int best_d = n < 4 ? 1 : n < 9 ? 2 : 3;
  for (int i = 0; i < count; i++) {
    if (!names[i])
      continue;
    int d = edit_distance(s, n, names[i]);
    if (d <= best_d && (!best || d < best_d)) {
      best = names[i];
      best_d = d;
    }
  }
  return best;
}

/* The row of `--name` (name[0..n)): an exact match, else the only option it
 * is a prefix of. NULL after printing a usage error. */
static const OptSpec *find_long(const char *name, size_t n, int *rc) {
  const OptSpec *found = NULL;
  int matches = 0;
  for (int i = 0; i < NOPTIONS; i++) {
    const char *ln = options[i].name;
    if (!ln || strncmp(ln, name, n) != 0)
      continue;
    if (strlen(ln) == n)
      return &options[i];
    found = &options[i];
    matches++;
  }
  if (matches == 1)
    return found;
  if (matches > 1) {
    char list[512] = "";
    size_t len = 0;
    for (int i = 0; i < NOPTIONS && len < sizeof list; i++)
      if (options[i].name && strncmp(options[i].name, name, n) == 0)
        len += (size_t)snprintf(list + len, sizeof list - len, "%s--%s", len ? ", " : "",
                                options[i].name);
    *rc = driver_usage_error("option '--%.*s' is ambiguous: it could be %s", (int)n, name, list);
    return NULL;
  }
  const char *names[NOPTIONS];
  for (int i = 0; i < NOPTIONS; i++)
    names[i] = options[i].name;
  const char *guess = closest(name, n, names, NOPTIONS);
  if (guess)
    *rc = driver_usage_error("unknown option '--%.*s'; did you mean '--%s'?", (int)n, name,
                             guess);
  else
    *rc = driver_usage_error("unknown option '--%.*s'", (int)n, name);
  return NULL;
}

static const OptSpec *find_short(char c) {
  for (int i = 0; i < NOPTIONS; i++)
    if (options[i].short_name == c)
      return &options[i];
  return NULL;
}

/* How an option was written, for messages: "--calib" or "-o". */
static const char *spelled(const OptSpec *s, char *buf, size_t size) {
  if (s->name)
    snprintf(buf, size, "--%s", s->name);
  else
    snprintf(buf, size, "-%c", s->short_name);
  return buf;
}

static bool parse_count(const char *s, int64_t lo, int64_t hi, int64_t *out) {
  char *end;
  errno = 0;
  long long v = strtoll(s, &end, 10);
  if (errno || *end || end == s || v < lo || v > hi)
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

/* Every name in a comma-separated list of passes must be a pass. */
static int check_pass_list(const char *option, const char *list) {
  if (!list)
    return 0;
  const char *names[64];
  int n = pass_count() < 64 ? pass_count() : 64;
  for (int i = 0; i < n; i++)
    names[i] = pass_name(i);
  const char *p;
  size_t len;
  for (const char *rest = list; sup_list_next(&rest, &p, &len);) {
    bool found = false;
    for (int i = 0; i < n; i++)
      found |= strlen(names[i]) == len && memcmp(names[i], p, len) == 0;
    if (!found) {
      const char *guess = closest(p, len, names, n);
      if (guess)
        return driver_usage_error("--%s: unknown pass '%.*s'; did you mean '%s'? (see "
                                  "--list-passes)",
                                  option, (int)len, p, guess);
      return driver_usage_error("--%s: unknown pass '%.*s' (see --list-passes)", option,
                                (int)len, p);
    }
  }
  return 0;
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
  if (!out || driver_is_stdio(out))
    return EMIT_IR;
  size_t len = strlen(out);
  for (size_t i = 0; i < sizeof by_suffix / sizeof by_suffix[0]; i++) {
    size_t sl = strlen(by_suffix[i].suffix);
    if (len > sl && strcmp(out + len - sl, by_suffix[i].suffix) == 0)
      return by_suffix[i].kind;
  }
  return CG_EMIT_SO;
}

/* Apply one option and its value (NULL for a flag). Returns an exit status,
 * or -1 to stop with 0 (--help, --version). */
static int apply(Options *o, const OptSpec *s, const char *v) {
  char buf[64], err[256];
  int64_t n;
  switch (s->id) {
  case OPT_HELP:
    print_help();
    return -1;
  case OPT_VERSION:
    print_version();
    return -1;
  case OPT_QUIET:
    o->quiet = o->pass.quiet = true;
    return 0;
  case OPT_OUTPUT:
  case OPT_INPUT: {
    FileArg *files = s->id == OPT_INPUT ? o->inputs : o->outputs;
    int *count = s->id == OPT_INPUT ? &o->ninputs : &o->noutputs;
    if (*count == MAX_FILES)
      return driver_usage_error("more than %d %s options", MAX_FILES, spelled(s, buf, sizeof buf));
    split_file_arg(v, &files[(*count)++]);
    return 0;
  }
  case OPT_EMIT:
    if (emit_kind(v) < 0)
      return driver_usage_error("--emit takes ir, llvm, asm, obj, so or header, not '%s'", v);
    o->emit = v;
    return 0;
  case OPT_WEIGHTS_OUT:
    o->weights_out = v;
    return 0;
  case OPT_TARGET:
    o->target = v;
    return 0;
  case OPT_OPT_LEVEL:
    if (!(v[0] >= '0' && v[0] <= '3' && !v[1]))
      return driver_usage_error("-O takes 0, 1, 2 or 3, not '%s'", v);
    o->opt_level = v[0] - '0';
    return 0;
  case OPT_DIM:
  case OPT_MAX_DIM: {
    const char *eq = strchr(v, '=');
    const char *opt = s->id == OPT_DIM ? "--dim" : "--max-dim";
    FeDims *dims = s->id == OPT_DIM ? &o->dims : &o->max_dims;
    int64_t d;
    if (!eq || eq == v || eq - v >= (ptrdiff_t)sizeof dims->name[0] ||
        !parse_count(eq + 1, 1, 1LL << 31, &d))
      return driver_usage_error("%s takes NAME=N with N a positive integer, not '%s'", opt, v);
    if (dims->n == (s->id == OPT_DIM ? FE_MAX_DIMS : IR_MAX_RANK))
      return driver_usage_error("more than %d %s options",
                                s->id == OPT_DIM ? FE_MAX_DIMS : IR_MAX_RANK, opt);
    snprintf(dims->name[dims->n], sizeof dims->name[0], "%.*s", (int)(eq - v), v);
    dims->value[dims->n++] = d;
    return 0;
  }
  case OPT_BATCH:
    if (!parse_count(v, 1, 1LL << 31, &o->batch))
      return driver_usage_error("--batch needs a positive integer, got '%s'", v);
    return 0;
  case OPT_MAX_BATCH:
    if (!parse_count(v, 1, 1LL << 31, &o->max_batch))
      return driver_usage_error("--max-batch needs a positive integer, got '%s'", v);
    return 0;
  case OPT_REPORT:
    o->report = v ? v : "text";
    if (strcmp(o->report, "text") != 0 && strcmp(o->report, "json") != 0 &&
        strcmp(o->report, "html") != 0)
      return driver_usage_error("--report takes text, json or html, not '%s'", o->report);
    return 0;
  case OPT_JIT:
    o->jit = true;
    return 0;
  case OPT_QUANTIZED:
    o->quantized = true;
    return 0;
  case OPT_LIST_PASSES:
    o->list_passes = true;
    return 0;
  case OPT_LIST_TARGETS:
    o->list_targets = true;
    return 0;
  case OPT_PASS:
    if (!pass_options_set(&o->pass, s->name, v, err, sizeof err))
      return driver_usage_error("%s", err[0] ? err : "internal: not a pipeline option");
    return 0;
  case OPT_THREADS:
  case OPT_WARMUP:
  case OPT_RUNS:
    if (!parse_count(v, s->id == OPT_WARMUP ? 0 : 1, 1 << 20, &n))
      return driver_usage_error("--%s needs a %s integer, got '%s'", s->name,
                                s->id == OPT_WARMUP ? "non-negative" : "positive", v);
    *(s->id == OPT_THREADS ? &o->threads : s->id == OPT_WARMUP ? &o->warmup : &o->runs) = (int)n;
    return 0;
  case OPT_JSON:
    o->json = true;
    return 0;
  }
  return 0;
}

/* A non-option argument: the subcommand (first, and before any `--`), else
 * the model. */
static int positional(Options *o, const char *a, bool *have_cmd, bool *help) {
  if (!*have_cmd && !o->model) {
    *have_cmd = true;
    for (int c = CMD_RUN; c <= CMD_IMPORT; c++)
      if (strcmp(a, command_names[c]) == 0) {
        o->cmd = (Command)c;
        return 0;
      }
    if (strcmp(a, "help") == 0) {
      *help = true;
      return 0;
    }
  }
  if (o->model)
    return driver_usage_error("more than one model file given ('%s' and '%s')", o->model, a);
  o->model = a;
  return 0;
}

/* Checks that need the whole command line. */
static int check_args(Options *o, const OptSpec **given, int ngiven) {
  char buf[64];
  for (int i = 0; i < ngiven; i++)
    if (!(given[i]->commands & (1u << o->cmd))) {
      char where[128] = "";
      size_t len = 0;
      for (int c = CMD_COMPILE; c <= CMD_IMPORT; c++)
        if (given[i]->commands & (1u << c))
          len += (size_t)snprintf(where + len, sizeof where - len, "%s`q8c %s`",
                                  len ? " and " : "", c == CMD_COMPILE ? "MODEL.ir" : command_names[c]);
      return driver_usage_error("%s is for %s", spelled(given[i], buf, sizeof buf), where);
    }
  if (o->list_passes || o->list_targets)
    return 0;
  if (!o->model)
    return driver_usage_error("no model file given");
  int rc;
  if ((rc = check_pass_list("print-before", o->pass.print_before)) ||
      (rc = check_pass_list("print-after", o->pass.print_after)) ||
      (rc = check_pass_list("stop-after", o->pass.stop_after)))
    return rc;
  if (o->max_batch && o->batch)
    return driver_usage_error("--max-batch is for a run-time batch; it cannot be combined with "
                              "--batch");
  if (o->max_dims.n && o->batch)
    return driver_usage_error("--max-dim is for a run-time batch; it cannot be combined with "
                              "--batch");
  if (o->report && !o->pass.calib_path)
    return driver_usage_error("--report measures on the calibration samples: give --calib FILE");
  if (o->pass.calib_path && o->pass.dynamic && !o->report && !o->pass.smooth &&
      !o->pass.has_target_sqnr && !o->pass.has_max_top1_drop)
    return driver_usage_error("--calib and --dynamic exclude each other: --dynamic quantizes "
                              "activations at run time from no data (--calib is used with it "
                              "only by --report)");
  if (o->cmd == CMD_COMPILE && o->noutputs > 1)
    return driver_usage_error("more than one -o given");
  if (o->cmd == CMD_IMPORT && (o->noutputs != 1 || driver_is_stdio(o->outputs[0].path)))
    return driver_usage_error("`q8c import` needs -o OUTPUT.ir (the constants go beside it)");
  if (o->cmd == CMD_RUN && o->ninputs == 0)
    return driver_usage_error("`q8c run` needs at least one -i INPUT.npy");
  /* Standard input can be read once. */
  const char *what[2 + MAX_FILES];
  int nstdin = 0;
  if (driver_is_stdio(o->model))
    what[nstdin++] = "the model";
  if (driver_is_stdio(o->pass.calib_path))
    what[nstdin++] = "--calib";
  for (int i = 0; i < o->ninputs; i++)
    if (driver_is_stdio(o->inputs[i].path))
      what[nstdin++] = "-i";
  if (nstdin > 1)
    return driver_usage_error("standard input ('-') can be read only once, but it is given "
                              "for %s and for %s",
                              what[0], what[1]);
  int nstdout = 0;
  for (int i = 0; i < o->noutputs; i++)
    nstdout += driver_is_stdio(o->outputs[i].path);
  if (nstdout > 1 || (nstdout && o->cmd == CMD_COMPILE && o->report))
    return driver_usage_error("standard output ('-') can take only one output%s",
                              o->report ? " (--report prints there)" : "");
  return 0;
}

/* Returns an exit status, or -1 when q8c should stop with 0 at once. */
static int parse_args(int argc, char **argv, Options *o) {
  pass_options_init(&o->pass);
  o->pass.evaluator = &q8c_jit_evaluator; /* calibration runs compiled code */
  o->opt_level = 3;
  o->warmup = o->runs = -1;
  const OptSpec **given = calloc((size_t)argc + 1, sizeof *given);
  if (!given) {
    fprintf(stderr, "q8c: error: out of memory\n");
    return EXIT_INPUT;
  }
  int ngiven = 0, rc = 0;
  bool options_ended = false, have_cmd = false, help = false;
  for (int i = 1; i < argc && rc == 0; i++) {
    const char *a = argv[i];
    if (!options_ended && strcmp(a, "--") == 0) {
      options_ended = have_cmd = true;
    } else if (options_ended || a[0] != '-' || a[1] == '\0') {
      rc = positional(o, a, &have_cmd, &help);
    } else if (a[1] == '-') {
      /* --name, --name=VALUE, --name VALUE */
      size_t n = strcspn(a + 2, "=");
      const char *v = a[2 + n] == '=' ? a + 3 + n : NULL;
      const OptSpec *s = find_long(a + 2, n, &rc);
      if (!s)
        break;
      if (v && s->arg == ARG_NONE) {
        rc = driver_usage_error("option '--%s' takes no value", s->name);
      } else if (!v && s->arg == ARG_REQUIRED) {
        if (i + 1 == argc)
          rc = driver_usage_error("option '--%s' needs a value", s->name);
        else
          v = argv[++i];
      }
      if (rc == 0) {
        given[ngiven++] = s;
        rc = apply(o, s, v);
      }
    } else {
      /* -x, grouped flags -qh, -oFILE, -o FILE */
      for (const char *p = a + 1; *p && rc == 0; p++) {
        const OptSpec *s = find_short(*p);
        if (!s) {
          rc = driver_usage_error("unknown option '-%c'", *p);
          break;
        }
        const char *v = NULL;
        if (s->arg == ARG_REQUIRED) {
          if (p[1])
            v = p + 1;
          else if (i + 1 < argc)
            v = argv[++i];
          else
            rc = driver_usage_error("option '-%c' needs a value", *p);
        }
        if (rc == 0) {
          given[ngiven++] = s;
          rc = apply(o, s, v);
        }
        if (v)
          break;
      }
    }
  }
  if (rc == 0 && help) {
    print_help();
    rc = -1;
  }
  if (rc == 0)
    rc = check_args(o, given, ngiven);
  free(given);
  return rc;
}

/* ---- compiling ---- */

int driver_fail(const IrModule *m) {
  fprintf(stderr, "%s\n", m->diag.msg);
  return EXIT_INPUT;
}

bool driver_max_dims(const Options *o, const IrModule *m, int *n, const char **names,
                     int64_t *values) {
  for (int i = 0; i < o->max_dims.n; i++) {
    bool known = false;
    for (int j = 0; j < m->nnamed; j++)
      known |= strcmp(m->named[j], o->max_dims.name[i]) == 0;
    if (!known) {
      driver_usage_error("--max-dim %s: the model has no named dim '%s'", o->max_dims.name[i],
                         o->max_dims.name[i]);
      return false;
    }
    names[*n] = o->max_dims.name[i];
    values[(*n)++] = o->max_dims.value[i];
  }
  return true;
}

IrModule *driver_parse(const char *path, const char *text, const FeDims *dims) {
  IrModule *m;
  if (driver_is_stdio(path)) {
    size_t len;
    if (!text && !(text = driver_stdin_text(&len)))
      return NULL;
    m = fe_parse_dims("-", text, dims);
  } else {
    m = fe_parse_file_dims(path, dims);
  }
  if (!m)
    fprintf(stderr, "q8c: error: out of memory\n");
  return m;
}

static int emit_ir(IrModule *m, const Options *o) {
  if (o->batch)
    ir_bind_batch(m, o->batch);
  if (o->noutputs && !driver_is_stdio(o->outputs[0].path)) {
    char err[512];
    if (!pass_write_module(m, o->outputs[0].path, err, sizeof err)) {
      fprintf(stderr, "q8c: error: %s\n", err);
      return EXIT_INPUT;
    }
    return 0;
  }
  if (o->report && !o->noutputs)
    return 0;
  char *text = ir_print(m);
  if (!text) {
    fprintf(stderr, "q8c: error: out of memory\n");
    return EXIT_INPUT;
  }
  fputs(text, stdout);
  free(text);
  if (fflush(stdout) != 0) {
    fprintf(stderr, "q8c: error: standard output: write error: %s\n", strerror(errno));
    return EXIT_INPUT;
  }
  return 0;
}

/* --list-targets: one line per row of codegen/isa.def, for people and for the
 * tests, which enumerate the variants from it. */
static int list_targets(void) {
  uint64_t have = q8rt_cpu_features();
  for (int i = 0; i < CG_ISA_COUNT; i++) {
    const CgIsaInfo *v = &cg_isa_info[i];
    bool runs = v->arch == cg_host_arch() && (v->bits & ~have) == 0;
    printf("%-16s %-8s %s\n", v->name, cg_arch_info[v->arch].name, runs ? "runs-here" : "-");
  }
  return 0;
}

static int list_passes(void) {
  for (int i = 0; i < pass_count(); i++)
    printf("%-16s %s\n", pass_name(i), pass_description(i));
  return 0;
}

/* Does the pipeline reach the calibrate pass (no --stop-after before it)? */
static bool reaches_calibrate(const PassOptions *p) {
  if (!p->stop_after)
    return true;
  for (int i = 0; i < pass_count(); i++) {
    if (strcmp(pass_name(i), "calibrate") == 0)
      return true;
    if (strcmp(pass_name(i), p->stop_after) == 0)
      return false;
  }
  return true;
}

/* Without --calib, a model whose activations lack ranges is quantized
 * dynamically (as ONNX Runtime's quantize_dynamic does without data) rather
 * than refused; one with every range in its IR stays static. */
static void choose_dynamic(IrModule *m, Options *o) {
  if (o->pass.calib_path || o->pass.dynamic || !reaches_calibrate(&o->pass) ||
      pass_unranged_activations(m, &o->pass) == 0)
    return;
  o->pass.dynamic = true;
  if (!o->quiet)
    fprintf(stderr, "q8c: note: no calibration data: activations are quantized at run time "
                    "(--dynamic); give --calib FILE for static int8\n");
}

enum { WEIGHTS_FILE_THRESHOLD = 1 << 30 };

/* The bytes of the module's int8 constants: the weights a library packs. */
static uint64_t int8_weight_bytes(const IrModule *m) {
  uint64_t n = 0;
  for (int i = 0; i < m->nconsts; i++) {
    int64_t e;
    if (m->consts[i]->type.dtype == IR_I8 && ir_type_numel(&m->consts[i]->type, 1, &e))
      n += (uint64_t)e;
  }
  return n;
}

/* --calib must be a .npy or a safetensors file: say so before its reader
 * trips over another kind of file with a message about its insides. */
static int check_calib_kind(const char *path, const char *shown) {
  FILE *f = fopen(path, "rb");
  if (!f)
    return 0; /* the sample reader names the file and the reason */
  unsigned char b[9] = {0};
  size_t got = fread(b, 1, sizeof b, f);
  fclose(f);
  bool npy = got >= 6 && memcmp(b, "\x93NUMPY", 6) == 0;
  uint64_t hlen = 0;
  for (int i = 7; got >= 9 && i >= 0; i--)
    hlen = hlen << 8 | b[i];
  bool st = got >= 9 && b[8] == '{' && hlen >= 2 && hlen < (1ULL << 40);
  if (npy || st)
    return 0;
  fprintf(stderr,
          "q8c: error: --calib %s: not calibration samples: expected a .npy array or a "
          ".safetensors file of arrays named after the inputs\n",
          shown);
  return EXIT_INPUT;
}

/* cg_compile_to_file for a library: the linker's own lines go to a temporary
 * file rather than to the user; a failed link is then one line, q8c's message
 * (the command and its exit status) and the linker's first error. */
static bool compile_library(IrModule *m, const CgOptions *co, const char *out) {
  const char *log = driver_temp_file(".log");
  int saved = log ? dup(STDERR_FILENO) : -1;
  FILE *f = saved >= 0 ? fopen(log, "w+") : NULL;
  if (!f) {
    if (saved >= 0)
      close(saved);
    return cg_compile_to_file(m, co, CG_EMIT_SO, out);
  }
  fflush(stderr);
  dup2(fileno(f), STDERR_FILENO);
  bool ok = cg_compile_to_file(m, co, CG_EMIT_SO, out);
  fflush(stderr);
  dup2(saved, STDERR_FILENO);
  close(saved);
  char line[1024], first[1024] = "", error[1024] = "";
  rewind(f);
  while (fgets(line, sizeof line, f)) {
    if (ok) {
      fputs(line, stderr); /* nothing to summarize: pass it on */
      continue;
    }
    line[strcspn(line, "\n")] = '\0';
    if (!first[0])
      snprintf(first, sizeof first, "%s", line);
    if (!error[0] && strstr(line, "error"))
      snprintf(error, sizeof error, "%s", line);
  }
  fclose(f);
  if (!ok && (error[0] || first[0])) {
    size_t n = strlen(m->diag.msg);
    snprintf(m->diag.msg + n, sizeof m->diag.msg - n, ": %s", error[0] ? error : first);
  }
  return ok;
}

/* Write a binary kind (obj, so) to standard output through a temporary file,
 * unless standard output is a terminal. */
static int compile_to_stdout(IrModule *m, const CgOptions *co, int kind, const char *emit) {
  if (isatty(STDOUT_FILENO)) {
    fprintf(stderr,
            "q8c: error: --emit=%s writes a binary file; standard output is a terminal "
            "(redirect it, or give -o FILE)\n",
            emit);
    return EXIT_USAGE;
  }
  const char *tmp = driver_temp_file(kind == CG_EMIT_SO ? ".so" : ".o");
  if (!tmp)
    return EXIT_INPUT;
  bool ok = kind == CG_EMIT_SO ? compile_library(m, co, tmp)
                               : cg_compile_to_file(m, co, (CgEmit)kind, tmp);
  if (!ok)
    return driver_fail(m);
  return driver_copy_to_stdout(tmp) ? 0 : EXIT_INPUT;
}

static PassReportFormat report_format(const char *s) {
  return strcmp(s, "json") == 0   ? PASS_REPORT_JSON
         : strcmp(s, "html") == 0 ? PASS_REPORT_HTML
                                  : PASS_REPORT_TEXT;
}

/* The driver's own stages (report, codegen) are announced and timed as the
 * pipeline does its passes, through the same callback. */
static double begin_stage(Options *o, const char *name) {
  pass_stage(&o->pass, PASS_EVENT_BEGIN, name, 0);
  return pass_clock();
}

static void end_stage(Options *o, const char *name, double start) {
  pass_stage(&o->pass, PASS_EVENT_END, name, pass_clock() - start);
}

/* Run the pass pipeline, then report and emit. */
static int compile_stages(IrModule *m, Options *o) {
  if (o->pass.calib_path) {
    const char *shown = o->pass.calib_path;
    if (driver_is_stdio(shown) && !(o->pass.calib_path = driver_stdin_file()))
      return EXIT_INPUT;
    int rc = check_calib_kind(o->pass.calib_path, shown);
    if (rc)
      return rc;
  }
  choose_dynamic(m, o);
  IrModule *ref = NULL;
  if (o->report) {
    /* The float model, untouched, to measure the int8 one against: parsed
     * again from the same text (standard input is read once). */
    ref = driver_parse(o->model, NULL, &o->dims);
    if (!ref)
      return EXIT_INPUT;
    if (ref->diag.failed) {
      int rc = driver_fail(ref);
      ir_module_free(ref);
      return rc;
    }
  }
  int rc = 0;
  SupBuf decisions = {0};
  IrModule *smoothed = NULL; /* the float model as smoothing left it */
  o->pass.decisions = o->report ? &decisions : NULL;
  o->pass.smoothed = o->report ? &smoothed : NULL;
  if (!pass_run_pipeline(m, &o->pass)) {
    rc = driver_fail(m);
  } else if (o->report) {
    double start = begin_stage(o, "report");
    /* Smoothed layers compute x / s: they are measured against the float
     * model smoothed (the same function but for rounding). */
    char *text = pass_report(smoothed ? smoothed : ref, m, &o->pass, report_format(o->report));
    end_stage(o, "report", start);
    if (!text)
      rc = driver_fail(m);
    else
      fputs(text, stdout);
    free(text);
  }
  ir_module_free(ref);
  o->pass.decisions = NULL;
  o->pass.smoothed = NULL;
  sup_buf_free(&decisions);
  ir_module_free(smoothed);
  if (rc)
    return rc;
  const char *out = o->noutputs ? o->outputs[0].path : NULL;
  bool to_stdout = !out || driver_is_stdio(out);
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
    fprintf(stderr, "q8c: error: --emit=%s writes a binary file: give -o FILE (or -o -)\n",
            o->emit);
    return EXIT_USAGE;
  }
  CgOptions co = {.opt_level = o->opt_level, .batch = o->batch, .max_batch = o->max_batch,
                  .scalar_floatops = getenv("Q8_SCALAR_FLOATOPS") != NULL};
  if (!driver_max_dims(o, m, &co.nmax_dims, co.max_dim_names, co.max_dim_values))
    return EXIT_USAGE;
  char err[512];
  char wname[4096], wauto[4096];
  /* Libraries whose int8 weights pass 1 GiB keep them in a weights file
   * beside them: the small code model reaches +-2 GiB, and the file is
   * mapped and shared rather than copied into each process. */
  uint64_t wbytes = int8_weight_bytes(m);
  if (!o->weights_out && kind == CG_EMIT_SO && !to_stdout && wbytes > WEIGHTS_FILE_THRESHOLD) {
    snprintf(wauto, sizeof wauto, "%s.weights", out);
    o->weights_out = wauto;
    if (!o->quiet)
      fprintf(stderr, "q8c: note: %.0f MB of int8 weights: they go to %s, which the library "
                      "maps when it loads (--weights-out)\n", (double)wbytes / 1e6, wauto);
  }
  if (o->weights_out) {
    if (kind != CG_EMIT_SO || to_stdout) {
      fprintf(stderr, "q8c: error: --weights-out applies to a shared library written to a "
                      "file (-o MODEL.so)\n");
      return EXIT_USAGE;
    }
    if (!driver_weights_name(out, o->weights_out, wname, sizeof wname)) {
      fprintf(stderr, "q8c: error: --weights-out: cannot resolve the directory of %s: %s\n",
              o->weights_out, strerror(errno));
      return 1;
    }
    co.weights_out = o->weights_out;
    co.weights_name = wname;
  }
  if (!cg_parse_targets(o->target ? o->target : "native", &co, err, sizeof err)) {
    fprintf(stderr, "q8c: error: --target: %s\n", err);
    return EXIT_USAGE;
  }
  /* The note on AVX2's widened form follows a compile that succeeded. */
  int note_isa = co.nisas ? (int)co.isas[0] : -1;
  if (to_stdout && (kind == CG_EMIT_OBJ || kind == CG_EMIT_SO)) {
    int rc = compile_to_stdout(m, &co, kind, o->emit ? o->emit : "so");
    if (rc == 0 && !o->quiet)
      driver_form_note(m, note_isa, &o->pass);
    return rc;
  }
  if (to_stdout)
    out = "/dev/stdout";
  double start = begin_stage(o, "codegen");
  bool ok = kind == CG_EMIT_SO ? compile_library(m, &co, out)
                               : cg_compile_to_file(m, &co, (CgEmit)kind, out);
  end_stage(o, "codegen", start);
  if (ok && !o->quiet)
    driver_form_note(m, note_isa, &o->pass);
  return ok ? 0 : driver_fail(m);
}

/* Compile, showing progress on a terminal and the stage times when asked. */
static int compile(IrModule *m, Options *o) {
  DriverProgress progress;
  driver_progress_attach(&progress, &o->pass);
  int rc = compile_stages(m, o);
  if (o->pass.time_passes)
    driver_print_timing(&progress);
  return rc;
}

static int q8c_main(int argc, char **argv) {
  Options o = {0};
  int rc = parse_args(argc, argv, &o);
  if (rc)
    return rc < 0 ? 0 : rc;
  if (o.list_passes)
    return list_passes();
  if (o.list_targets)
    return list_targets();
  if (o.cmd == CMD_RUN)
    return driver_run(&o);
  if (o.cmd == CMD_INFO)
    return driver_info(&o);
  if (o.cmd == CMD_BENCH)
    return driver_bench(&o);
  IrModule *m = driver_parse(o.model, NULL, &o.dims);
  if (!m)
    return EXIT_INPUT;
  if (m->diag.failed)
    rc = driver_fail(m);
  else if (o.cmd == CMD_IMPORT)
    rc = emit_ir(m, &o);
  else
    rc = compile(m, &o);
  ir_module_free(m);
  return rc;
}

/* Out of memory in the IR (ir_alloc, ir_arena_new) jumps here: a message and
 * the status of an error in the input, never an abort. */
int main(int argc, char **argv) {
  IrRecover r;
  int rc;
  ir_recover_push(&r);
  if (setjmp(r.jump) == 0) {
    rc = q8c_main(argc, argv);
  } else {
    ir_recover_free_arenas(&r);
    fflush(stdout);
    fprintf(stderr, "q8c: error: out of memory\n");
    rc = EXIT_INPUT;
  }
  ir_recover_pop(&r);
  return rc;
}
