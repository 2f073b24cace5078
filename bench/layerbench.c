/* layerbench.c: one transformer layer, q8c against oneDNN, in one run, on
 * one machine (any x86-64: q8c compiles for --target=native).
 *
 * Run (after a build with oneDNN installed, see bench/CMakeLists.txt, or
 * through scripts/bench-layer.sh):
 *
 *   build/bench/layerbench [--json FILE] [--rounds N] [--sample-ms MS]
 *                          [--threads 1,2] [--cases SUBSTR,...] [--calib N]
 *                          [--dnnl-wmax N] [--no-breakdown] [--work DIR] [--keep]
 *                          [--q8c PATH] [--wait-quiet SEC] [--reduce-range on|off]
 *
 * Cases (bench/layerir.h), batch 1, f32 in and out: a BERT-base encoder
 * layer and a GPT-2-small decoder layer, T 128, d 768, 12 heads, FFN 3072,
 * random weights at PyTorch's default scale, inputs N(0, 1). Each layer is
 * written as q8c text IR and compiled by the q8c binary twice: static int8
 * (--calib on --calib N random samples, default 4) and dynamic int8
 * (--dynamic). Engines, timed interleaved round by round as q8bench does
 * (bench/benchutil.h: medians over --rounds samples of back-to-back calls,
 * a sleep between engines, the other load on the machine alongside):
 *
 *   q8c-static   the static .so through q8rt_load / q8rt_run;
 *   q8c-dynamic  the dynamic .so;
 *   dnnl-int8    oneDNN layer by layer (bench/dnnllayer.h): int8 linears
 *                (quantizing reorder, u8 x s8 matmul, f32 out) with the
 *                input scales q8c's static calibration chose, f32 attention
 *                matmuls, softmax, layer normalization, GELU, binary adds;
 *                its s8 weights in [-63, 63] on a CPU without AVX512-VNNI
 *                (--dnnl-wmax; dnnllayer.h says why); q8c then likewise
 *                compiles with --reduce-range (7-bit weights, the fast
 *                vpmaddubsw form on AVX2; --reduce-range off: q8c's
 *                8-bit weights, the widened form there);
 *   dnnl-f32     the same with f32 linears.
 *
 * Every engine's output is checked against q8c's float reference
 * interpreter (q8c_run_reference, what `q8c run model.ir` runs) on the same
 * input: the SQNR is printed.
 *
 * The breakdown by op class (1 thread, unless --no-breakdown): q8c writes
 * each quantized layer as IR (--emit=ir); every node of it is then compiled
 * alone (its operands as model inputs, random data of their types, the same
 * constants) and timed interleaved with the whole layer. Node times are
 * summed by class (GEMM: qgemm/qlinear_dyn; attention: qmatmul and
 * qmatmul_dyn; softmax; norms; elementwise: add, mul, gelu; layout:
 * reshape, transpose, slice; quantize: quantize, dequantize). A node alone
 * starts with cold inputs of its own and pays one runtime call; the sum of
 * the nodes beside the whole layer shows what that adds.
 *
 * It prints the tables, checks the targets of issue 15 that concern the
 * layer (q8c 1.5x oneDNN int8 and 3x oneDNN f32 at one thread, dynamic
 * within 1.25x of static, non-GEMM work at most 20%, 2 threads 1.7x
 * faster than 1) and writes a JSON file (default layerbench.json).
 * docs/kernels.md holds a table it printed. */
#include <math.h>
#include <omp.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <oneapi/dnnl/dnnl.h>

#include "benchutil.h"
#include "dnnllayer.h"
#include "dnnlprim.h"
#include "layerir.h"
#include "q8c.h"
#include "q8rt.h"

/* ---- options ---------------------------------------------------------- */

typedef struct {
  const char *q8c, *json, *work, *cases;
  int rounds, ncalib;
  int wmax; /* oneDNN's int8 weights: [-wmax, wmax]; 0: 127 with VNNI, else 63 */
  int reduce_range; /* q8c --reduce-range: 1 on, 0 off, -1 (default) when wmax < 127 */
  double wait_quiet, sample_ms;
  bool keep, breakdown;
  int threads[4], nthreads;
} Opts;

static Opts opt = {
    .q8c = LAYERBENCH_Q8C,
    .json = "layerbench.json",
    .rounds = 11,
    .ncalib = 4,
    .sample_ms = 4,
    .breakdown = true,
    .threads = {1},
    .nthreads = 1,
    .reduce_range = -1,
};

static const LayerSpec cases[] = {
    {"bert-base", false, 128, 768, 12, 3072, 1e-12},
    {"gpt2-small", true, 128, 768, 12, 3072, 1e-5},
};

static bool selected(const char *name) {
  if (!opt.cases)
    return true;
  char buf[256];
  snprintf(buf, sizeof buf, "%s", opt.cases);
  for (char *s = strtok(buf, ","); s; s = strtok(NULL, ","))
    if (strstr(name, s))
      return true;
  return false;
}

/* ---- data ------------------------------------------------------------- */

/* N(0, 1) by Box-Muller from the bench's rng. */
static float rng_normal(void) {
  double u = 1 - rng_unif(), v = rng_unif();
  return (float)(sqrt(-2 * log(u)) * cos(6.283185307179586 * v));
}

static double sqnr_db(const float *ref, const float *got, int64_t n) {
  double s = 0, e = 0;
  for (int64_t i = 0; i < n; i++) {
    s += (double)ref[i] * ref[i];
    e += ((double)got[i] - ref[i]) * ((double)got[i] - ref[i]);
  }
  return e > 0 ? 10 * log10(s / e) : INFINITY;
}

static char *read_text(const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f)
    die("cannot read %s", path);
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  char *s = malloc((size_t)n + 1);
  if (!s || fread(s, 1, (size_t)n, f) != (size_t)n)
    die("cannot read %s", path);
  s[n] = 0;
  fclose(f);
  return s;
}

/* ---- the quantized IR ------------------------------------------------- */

/* The number after "key = " in line (up to its end), or false. */
static bool attr_num(const char *line, const char *end, const char *key, double *v) {
  char k[48];
  snprintf(k, sizeof k, "%s = ", key);
  for (const char *p = strstr(line, k); p && p < end; p = strstr(p + 1, k))
    if (p[-1] == ' ' || p[-1] == '{') {
      *v = strtod(p + strlen(k), NULL);
      return true;
    }
  return false;
}

/* oneDNN's input parameters per linear: the x_scale and x_zero_point of the
 * qgemm q8c's static quantization made of it (its weights are "@NAME.q"). */
static void linear_params(const char *qir, const LayerWeights *w, LinearQ *q) {
  for (int i = 0; i < w->nlin; i++) {
    char key[48];
    snprintf(key, sizeof key, "@%s.q,", w->lin_name[i]);
    const char *p = strstr(qir, key);
    if (!p)
      die("the static IR has no qgemm of @%s", w->lin_name[i]);
    const char *line = p, *end = strchr(p, '\n');
    while (line > qir && line[-1] != '\n')
      line--;
    double s, z;
    if (!attr_num(line, end, "x_scale", &s) || !attr_num(line, end, "x_zero_point", &z))
      die("no x_scale / x_zero_point on the qgemm of @%s", w->lin_name[i]);
    q[i].sx = (float)s, q[i].zx = (int32_t)z;
  }
}

/* ---- the breakdown: every node compiled alone ------------------------- */

enum { NCLASS = 7, MAX_NODES = 64, MAX_IN = 4 };
static const char *class_names[NCLASS] = {"GEMM",        "attention", "softmax", "norms",
                                          "elementwise", "layout",    "quantize"};

static int op_class(const char *op) {
  static const struct {
    const char *op;
    int cls;
  } tab[] = {{"qgemm", 0},   {"qlinear", 0},    {"qlinear_dyn", 0}, {"linear", 0},
             {"qlinear_outl", 0},
             {"qmatmul", 1}, {"qmatmul_dyn", 1}, {"matmul", 1},     {"softmax", 2},
             {"layernorm", 3}, {"rmsnorm", 3},   {"add", 4},        {"mul", 4},
             {"sub", 4},     {"div", 4},        {"gelu", 4},       {"relu", 4},
             {"reshape", 5}, {"transpose", 5},  {"slice", 5},      {"concat", 5},
             {"quantize", 6}, {"dequantize", 6}};
  for (size_t i = 0; i < sizeof tab / sizeof *tab; i++)
    if (strcmp(tab[i].op, op) == 0)
      return tab[i].cls;
  die("breakdown: no class for op %s", op);
  return -1;
}

typedef struct {
  char name[48], op[24];
  int cls;
  q8rt_model *m;
  void *in[MAX_IN];
  int nin;
  void *out;
  double med; /* seconds */
} Node;

static void run_node(void *c) {
  Node *n = c;
  char err[256];
  if (q8rt_run(n->m, n->nin, (const void *const *)n->in, 1, &n->out, err, sizeof err) != Q8RT_OK)
    die("q8rt_run: %s", err);
}

static size_t dtype_size(int dt) { return dt == Q8_DTYPE_F32 || dt == Q8_DTYPE_I32 ? 4 : dt == Q8_DTYPE_I64 ? 8 : 1; }

static void *tensor_buf(const q8_tensor_desc *t, bool fill) {
  int64_t n = q8rt_tensor_numel(t);
  void *p = xmalloc((size_t)n * dtype_size(t->dtype));
  if (fill) {
    if (t->dtype == Q8_DTYPE_F32)
      for (int64_t i = 0; i < n; i++)
        ((float *)p)[i] = rng_normal();
    else
      for (int64_t i = 0; i < (int64_t)((size_t)n * dtype_size(t->dtype)); i++)
        ((uint8_t *)p)[i] = (uint8_t)rng_next();
  }
  return p;
}

/* One model per node of the quantized IR at `qir_path` (whose weights file
 * is `weights`, beside it), compiled with --batch 1 for the native target,
 * loaded, with random inputs. Returns the number of nodes. */
static int node_models(const char *qir_path, const char *tag, Node *nodes) {
  char *text = read_text(qir_path);
  /* Declarations: every input line and node line, by value name. */
  const char *decl_name[MAX_NODES + 8], *decl_line[MAX_NODES + 8];
  int decl_len[MAX_NODES + 8], decl_is_input[MAX_NODES + 8], ndecl = 0;
  const char *weights = NULL;
  int nn = 0;
  for (char *line = text; *line; line = strchr(line, '\n') ? strchr(line, '\n') + 1 : line + strlen(line)) {
    char *eol = strchr(line, '\n');
    int len = eol ? (int)(eol - line) : (int)strlen(line);
    const char *p = line;
    while (*p == ' ')
      p++;
    if (strncmp(p, "weights \"", 9) == 0) {
      weights = p;
      continue;
    }
    bool input = strncmp(p, "input %", 7) == 0;
    if (!input && *p != '%')
      continue;
    if (ndecl == MAX_NODES + 8)
      die("breakdown: too many values in %s", qir_path);
    decl_name[ndecl] = input ? p + 6 : p;
    decl_line[ndecl] = line;
    decl_len[ndecl] = len;
    decl_is_input[ndecl++] = input;
  }
  if (!weights)
    die("breakdown: no weights line in %s", qir_path);
  int wlen = (int)strcspn(weights, "\n");
  for (int di = 0; di < ndecl; di++) {
    if (decl_is_input[di])
      continue;
    const char *line = decl_line[di], *nm = decl_name[di];
    int nmlen = (int)strcspn(nm, " ");
    const char *eq = strstr(nm, " = ");
    const char *colon = strstr(nm, " : ");
    if (!eq || !colon || nn == MAX_NODES)
      die("breakdown: cannot read a node of %s", qir_path);
    Node *n = &nodes[nn];
    memset(n, 0, sizeof *n);
    snprintf(n->name, sizeof n->name, "%.*s", nmlen, nm);
    const char *op = eq + 3;
    int oplen = (int)strcspn(op, " \n");
    snprintf(n->op, sizeof n->op, "%.*s", oplen, op);
    n->cls = op_class(n->op);
    /* The operands: up to " {" or the end of the line. */
    const char *ops = op + oplen, *end = line + decl_len[di];
    const char *brace = strstr(ops, " {");
    if (brace && brace < end)
      end = brace;
    char model[8192];
    size_t ml = (size_t)snprintf(model, sizeof model, "model node {\n  %.*s\n", wlen, weights);
    const char *seen[MAX_IN];
    int nseen = 0;
    for (const char *o = strchr(ops, '%'); o && o < end; o = strchr(o + 1, '%')) {
      int olen = (int)strcspn(o, ", \n");
      bool dup = false;
      for (int k = 0; k < nseen; k++)
        dup |= strncmp(seen[k], o, (size_t)olen) == 0 && (int)strcspn(seen[k], ", \n") == olen;
      if (dup)
        continue;
      if (nseen == MAX_IN)
        die("breakdown: too many operands in %s", n->name);
      seen[nseen++] = o;
      int k = 0;
      for (; k < di; k++)
        if (strncmp(decl_name[k], o, (size_t)olen) == 0 && decl_name[k][olen] == ' ')
          break;
      if (k == di)
        die("breakdown: operand of %s not declared before it", n->name);
      if (decl_is_input[k]) {
        ml += (size_t)snprintf(model + ml, sizeof model - ml, "%.*s\n", decl_len[k], decl_line[k]);
      } else {
        const char *c = strstr(decl_name[k], " : ") + 3;
        int tlen = (int)(strstr(c, " = ") - c);
        ml += (size_t)snprintf(model + ml, sizeof model - ml, "  input %.*s : %.*s\n", olen, o,
                               tlen, c);
      }
    }
    ml += (size_t)snprintf(model + ml, sizeof model - ml, "%.*s\n  output %s\n}\n", decl_len[di],
                           line, n->name);
    if (ml >= sizeof model)
      die("breakdown: node %s too long", n->name);
    char fn[160];
    snprintf(fn, sizeof fn, "%s_node%d.ir", tag, nn);
    const char *ir = work_path(fn);
    write_text(ir, model);
    snprintf(fn, sizeof fn, "%s_node%d.so", tag, nn);
    const char *so = work_path(fn);
    const char *args[] = {ir, "--batch", "1", "--target=native", "-o", so, NULL};
    run_q8c(opt.q8c, args);
    n->m = load_so(so);
    n->nin = q8rt_num_inputs(n->m);
    for (int i = 0; i < n->nin; i++)
      n->in[i] = tensor_buf(q8rt_input(n->m, i), true);
    n->out = tensor_buf(q8rt_output(n->m, 0), false);
    nn++;
  }
  free(text);
  return nn;
}

static void free_nodes(Node *nodes, int n) {
  for (int i = 0; i < n; i++) {
    for (int j = 0; j < nodes[i].nin; j++)
      free(nodes[i].in[j]);
    free(nodes[i].out);
    q8rt_free(nodes[i].m);
  }
}

/* ---- results ---------------------------------------------------------- */

enum { ENGINES = 4 };
static const char *engine_names[ENGINES] = {"q8c-static", "q8c-dynamic", "dnnl-int8", "dnnl-f32"};

typedef struct {
  const LayerSpec *spec;
  int threads;
  double t[ENGINES]; /* seconds per run */
  double load;
} Result;

typedef struct {
  const LayerSpec *spec;
  double sqnr[ENGINES];
  double compile_static_s, compile_dynamic_s;
  char variant[32];
  /* breakdown: [0] static, [1] dynamic */
  bool has_breakdown;
  double cls[2][NCLASS], sum[2], whole[2];
  int ncls[2][NCLASS];
  Node nodes[2][MAX_NODES];
  int nnodes[2];
  double bload;
} CaseInfo;

static Result results[16];
static int nresults;
static CaseInfo infos[4];
static int ninfos;
static char cpu_name[128] = "?";

static double gmacs(int64_t macs, double s) { return (double)macs / s * 1e-9; }

/* ---- one case --------------------------------------------------------- */

static void bench_case(const LayerSpec *s) {
  if (!selected(s->name))
    return;
  fprintf(stderr, "%s\n", s->name);
  /* Each case's weights and data are its own, whichever cases run. */
  rng_seed(0x9e3779b97f4a7c15u + (uint64_t)(s - cases));
  CaseInfo *info = &infos[ninfos++];
  memset(info, 0, sizeof *info);
  info->spec = s;
  int64_t T = s->t, d = s->d, n = T * s->d;

  /* The model, its calibration samples, an input. */
  LayerWeights w;
  layer_weights_init(s, &w);
  char fn[96];
  snprintf(fn, sizeof fn, "%s.safetensors", s->name);
  layer_write_weights(s, &w, work_path(fn));
  char *irtext = layer_ir(s, fn);
  snprintf(fn, sizeof fn, "%s.ir", s->name);
  const char *ir = work_path(fn);
  write_text(ir, irtext);
  free(irtext);
  float *calib = xmalloc((size_t)(opt.ncalib * n) * 4), *x = xmalloc((size_t)n * 4);
  for (int64_t i = 0; i < opt.ncalib * n; i++)
    calib[i] = rng_normal();
  for (int64_t i = 0; i < n; i++)
    x[i] = rng_normal();
  snprintf(fn, sizeof fn, "%s_calib.npy", s->name);
  const char *cal = work_path(fn);
  write_npy_f32(cal, calib, 3, (int64_t[]){opt.ncalib, T, d});

  /* q8c: static and dynamic, as .so and as quantized IR. */
  char sso[512], dso[512], sir[512], dir[512];
  snprintf(sso, sizeof sso, "%s", work_path((snprintf(fn, sizeof fn, "%s_static.so", s->name), fn)));
  snprintf(dso, sizeof dso, "%s", work_path((snprintf(fn, sizeof fn, "%s_dynamic.so", s->name), fn)));
  snprintf(sir, sizeof sir, "%s", work_path((snprintf(fn, sizeof fn, "%s_static.ir", s->name), fn)));
  snprintf(dir, sizeof dir, "%s", work_path((snprintf(fn, sizeof fn, "%s_dynamic.ir", s->name), fn)));
  /* The sidecars the --emit=ir outputs write. */
  work_path((snprintf(fn, sizeof fn, "%s_static.safetensors", s->name), fn));
  work_path((snprintf(fn, sizeof fn, "%s_dynamic.safetensors", s->name), fn));
  /* --reduce-range last, or nothing (the arrays end at the first NULL). */
  const char *rr = opt.reduce_range ? "--reduce-range" : NULL;
  const char *a1[] = {ir, "--calib", cal, "--batch", "1", "--target=native", "-o", sso, rr, NULL};
  info->compile_static_s = run_q8c(opt.q8c, a1);
  const char *a2[] = {ir, "--dynamic", "--batch", "1", "--target=native", "-o", dso, rr, NULL};
  info->compile_dynamic_s = run_q8c(opt.q8c, a2);
  const char *a3[] = {ir, "--calib", cal, "--emit=ir", "-o", sir, rr, NULL};
  run_q8c(opt.q8c, a3);
  const char *a4[] = {ir, "--dynamic", "--emit=ir", "-o", dir, rr, NULL};
  run_q8c(opt.q8c, a4);

  /* The float reference: q8c's interpreter. */
  float *ref = xmalloc((size_t)n * 4);
  q8c_module *mod = NULL;
  q8c_status st = q8c_parse_file(ir, &mod);
  const float *ins[1] = {x};
  float *outs[1] = {ref};
  if (st == Q8C_OK)
    st = q8c_run_reference(mod, 1, 1, ins, 1, outs);
  if (st != Q8C_OK)
    die("reference: %s", mod ? q8c_module_error(mod) : q8c_status_name(st));
  q8c_module_free(mod);

  /* oneDNN's input parameters: q8c's calibration. */
  LinearQ lq[LAYER_MAX_LINEARS];
  char *sirtext = read_text(sir);
  linear_params(sirtext, &w, lq);
  free(sirtext);

  float *y[ENGINES];
  for (int e = 0; e < ENGINES; e++)
    y[e] = xmalloc((size_t)n * 4);
  enum { PER = ENGINES };
  q8rt_model *qs[4], *qd[4];
  Q8Run rs[4], rd[4];
  DnnlLayer *L8 = xmalloc(4 * sizeof *L8), *Lf = xmalloc(4 * sizeof *Lf);
  DRun r8[4], rf[4];
  Impl im[4 * PER];
  for (int ti = 0; ti < opt.nthreads; ti++) {
    int th = opt.threads[ti];
    char err[256];
    qs[ti] = load_so(sso);
    qd[ti] = load_so(dso);
    if (q8rt_set_threads(qs[ti], th, err, sizeof err) != Q8RT_OK ||
        q8rt_set_threads(qd[ti], th, err, sizeof err) != Q8RT_OK)
      die("q8rt_set_threads: %s", err);
    snprintf(info->variant, sizeof info->variant, "%s", q8rt_variant(qs[ti]));
    omp_set_num_threads(th);
    dnnl_layer_build(&L8[ti], s, &w, x, y[2], lq, opt.wmax);
    dnnl_layer_build(&Lf[ti], s, &w, x, y[3], NULL, 0);
    rs[ti] = (Q8Run){qs[ti], {x}, {y[0]}};
    rd[ti] = (Q8Run){qd[ti], {x}, {y[1]}};
    r8[ti] = (DRun){L8[ti].p, L8[ti].n};
    rf[ti] = (DRun){Lf[ti].p, Lf[ti].n};
    Impl *e = &im[ti * PER];
    e[0] = (Impl){"q8c-static", th, run_q8, &rs[ti], 0, {0}, 0};
    e[1] = (Impl){"q8c-dynamic", th, run_q8, &rd[ti], 0, {0}, 0};
    e[2] = (Impl){"dnnl-int8", th, run_dnnl, &r8[ti], 0, {0}, 0};
    e[3] = (Impl){"dnnl-f32", th, run_dnnl, &rf[ti], 0, {0}, 0};
    /* Every engine's output against the interpreter's (the first thread
     * count's run; the others compute the same). */
    if (ti == 0)
      for (int k = 0; k < ENGINES; k++) {
        memset(y[k], 0, (size_t)n * 4);
        time_calls(&e[k], 1);
        info->sqnr[k] = sqnr_db(ref, y[k], n);
      }
  }
  fprintf(stderr, "  SQNR vs the interpreter: static %.1f dB, dynamic %.1f dB, oneDNN int8 %.1f dB, "
                  "f32 %.1f dB\n",
          info->sqnr[0], info->sqnr[1], info->sqnr[2], info->sqnr[3]);
  wait_for_quiet(opt.wait_quiet);
  LoadMark mark = load_mark();
  measure(im, opt.nthreads * PER, opt.rounds, opt.sample_ms);
  double load = other_load(mark);
  for (int ti = 0; ti < opt.nthreads; ti++) {
    Result *r = &results[nresults++];
    r->spec = s, r->threads = opt.threads[ti], r->load = load;
    for (int k = 0; k < ENGINES; k++)
      r->t[k] = im[ti * PER + k].med;
  }

  /* The breakdown at one thread: the nodes of each quantized IR alone,
   * interleaved with the whole layer. */
  if (opt.breakdown) {
    fprintf(stderr, "  breakdown: compiling every node alone\n");
    int ti1 = -1;
    for (int ti = 0; ti < opt.nthreads; ti++)
      if (opt.threads[ti] == 1)
        ti1 = ti;
    q8rt_model *one[2] = {NULL, NULL};
    if (ti1 < 0) {
      one[0] = load_so(sso), one[1] = load_so(dso);
    }
    Q8Run whole[2] = {{ti1 >= 0 ? qs[ti1] : one[0], {x}, {y[0]}},
                      {ti1 >= 0 ? qd[ti1] : one[1], {x}, {y[1]}}};
    const char *tags[2] = {"static", "dynamic"};
    const char *irs[2] = {sir, dir};
    int total = 2;
    for (int v = 0; v < 2; v++) {
      char tag[64];
      snprintf(tag, sizeof tag, "%s_%s", s->name, tags[v]);
      info->nnodes[v] = node_models(irs[v], tag, info->nodes[v]);
      total += info->nnodes[v];
    }
    Impl *bi = xmalloc((size_t)total * sizeof *bi);
    int k = 0;
    for (int v = 0; v < 2; v++) {
      bi[k++] = (Impl){tags[v], 1, run_q8, &whole[v], 0, {0}, 0};
      for (int i = 0; i < info->nnodes[v]; i++)
        bi[k++] = (Impl){info->nodes[v][i].name, 1, run_node, &info->nodes[v][i], 0, {0}, 0};
    }
    wait_for_quiet(opt.wait_quiet);
    mark = load_mark();
    measure(bi, total, opt.rounds, opt.sample_ms);
    info->bload = other_load(mark);
    k = 0;
    for (int v = 0; v < 2; v++) {
      info->whole[v] = bi[k++].med;
      for (int i = 0; i < info->nnodes[v]; i++) {
        Node *nd = &info->nodes[v][i];
        nd->med = bi[k++].med;
        info->cls[v][nd->cls] += nd->med;
        info->ncls[v][nd->cls]++;
        info->sum[v] += nd->med;
      }
      free_nodes(info->nodes[v], info->nnodes[v]);
    }
    info->has_breakdown = true;
    free(bi);
    q8rt_free(one[0]);
    q8rt_free(one[1]);
  }

  for (int ti = 0; ti < opt.nthreads; ti++) {
    q8rt_free(qs[ti]);
    q8rt_free(qd[ti]);
    dnnl_layer_free(&L8[ti]);
    dnnl_layer_free(&Lf[ti]);
  }
  free(L8), free(Lf);
  for (int e = 0; e < ENGINES; e++)
    free(y[e]);
  free(ref), free(x), free(calib);
  layer_weights_free(&w);
}

/* ---- the targets of issue 15 that concern the layer ------------------- */

typedef struct {
  char what[96];
  double value, want;
  bool at_most; /* value <= want, else value >= want */
  bool ok;
} Target;

static Target targets[64];
static int ntargets;

static void target(bool at_most, double value, double want, const char *fmt, const char *name) {
  if (ntargets == 64)
    return;
  Target *t = &targets[ntargets++];
  snprintf(t->what, sizeof t->what, fmt, name);
  t->value = value, t->want = want, t->at_most = at_most;
  t->ok = at_most ? value <= want : value >= want;
}

static const Result *find_result(const LayerSpec *s, int threads) {
  for (int i = 0; i < nresults; i++)
    if (results[i].spec == s && results[i].threads == threads)
      return &results[i];
  return NULL;
}

/* One thread unless said otherwise; ratios are speed ratios. */
static void check_targets(void) {
  for (int i = 0; i < ninfos; i++) {
    const CaseInfo *c = &infos[i];
    const char *nm = c->spec->name;
    const Result *r1 = find_result(c->spec, 1), *r2 = find_result(c->spec, 2);
    if (r1) {
      target(false, r1->t[2] / r1->t[0], 1.5, "%s: q8c static / oneDNN int8 >= 1.5", nm);
      target(false, r1->t[2] / r1->t[1], 1.5, "%s: q8c dynamic / oneDNN int8 >= 1.5", nm);
      target(false, r1->t[3] / r1->t[0], 3.0, "%s: q8c static / oneDNN f32 >= 3", nm);
      target(false, r1->t[3] / r1->t[1], 3.0, "%s: q8c dynamic / oneDNN f32 >= 3", nm);
      target(true, r1->t[1] / r1->t[0], 1.25, "%s: q8c dynamic time / static time <= 1.25", nm);
    }
    if (c->has_breakdown)
      for (int v = 0; v < 2; v++)
        target(true, 100 * (c->sum[v] - c->cls[v][0] - c->cls[v][1]) / c->sum[v], 20,
               v ? "%s: q8c dynamic non-GEMM share <= 20%%" : "%s: q8c static non-GEMM share <= 20%%",
               nm);
    if (r1 && r2) {
      target(false, r1->t[0] / r2->t[0], 1.7, "%s: q8c static 2 threads / 1 >= 1.7", nm);
      target(false, r1->t[1] / r2->t[1], 1.7, "%s: q8c dynamic 2 threads / 1 >= 1.7", nm);
    }
  }
}

static void print_targets(FILE *f) {
  int ok = 0;
  fprintf(f, "\ntargets (issue 15, the layer; non-GEMM: softmax, norms, elementwise, layout, "
             "quantize):\n");
  for (int i = 0; i < ntargets; i++) {
    fprintf(f, "  %-4s %-58s %7.2f\n", targets[i].ok ? "ok" : "MISS", targets[i].what,
            targets[i].value);
    ok += targets[i].ok;
  }
  fprintf(f, "%d of %d targets hold\n", ok, ntargets);
}

/* ---- report ----------------------------------------------------------- */

static void print_tables(FILE *f) {
  fprintf(f,
          "layerbench: %s, %ld CPUs, q8c --target=native (variant %s), oneDNN %d.%d.%d; "
          "medians of %d rounds\n",
          cpu_name, sysconf(_SC_NPROCESSORS_ONLN), ninfos ? infos[0].variant : "?",
          dnnl_version()->major, dnnl_version()->minor, dnnl_version()->patch, opt.rounds);
  fprintf(f, "batch 1, T 128, f32 in and out; dnnl-int8: int8 linears (s8 weights in [-%d, %d]), "
             "f32 attention matmuls; q8c %s\n", opt.wmax, opt.wmax,
          opt.reduce_range ? "--reduce-range (7-bit weights)" : "8-bit weights");
  fprintf(f, "\n%-11s %3s %6s |", "case", "thr", "GMAC");
  for (int e = 0; e < ENGINES; e++)
    fprintf(f, " %15s", engine_names[e]);
  fprintf(f, " | %8s %8s %8s %8s | %5s\n", "static/", "static/", "dynamic/", "dynamic/", "other");
  fprintf(f, "%-11s %3s %6s |", "", "", "");
  for (int e = 0; e < ENGINES; e++)
    fprintf(f, " %7s %7s", "ms", "GMAC/s");
  fprintf(f, " | %8s %8s %8s %8s | %5s\n", "int8", "f32", "int8", "f32", "load");
  for (int i = 0; i < nresults; i++) {
    const Result *r = &results[i];
    int64_t macs = layer_macs(r->spec);
    fprintf(f, "%-11s %3d %6.3f |", r->spec->name, r->threads, (double)macs * 1e-9);
    for (int e = 0; e < ENGINES; e++)
      fprintf(f, " %7.2f %7.1f", r->t[e] * 1e3, gmacs(macs, r->t[e]));
    fprintf(f, " | %8.2f %8.2f %8.2f %8.2f | %5.2f\n", r->t[2] / r->t[0], r->t[3] / r->t[0],
            r->t[2] / r->t[1], r->t[3] / r->t[1], r->load);
  }
  fprintf(f, "\nSQNR of each engine's output against q8c's f32 reference interpreter (dB), "
             "and q8c's compile times:\n");
  for (int i = 0; i < ninfos; i++) {
    const CaseInfo *c = &infos[i];
    fprintf(f, "%-11s", c->spec->name);
    for (int e = 0; e < ENGINES; e++)
      fprintf(f, "  %s %.1f", engine_names[e], c->sqnr[e]);
    fprintf(f, "  | compile static %.2f s, dynamic %.2f s\n", c->compile_static_s,
            c->compile_dynamic_s);
  }
  for (int i = 0; i < ninfos; i++) {
    const CaseInfo *c = &infos[i];
    if (!c->has_breakdown)
      continue;
    fprintf(f, "\nq8c by op class, %s, 1 thread: each node of the quantized IR compiled and "
               "timed alone (other load %.2f)\n",
            c->spec->name, c->bload);
    fprintf(f, "%-13s %10s %6s %5s %10s %6s %5s\n", "class", "static ms", "%", "nodes",
            "dynamic ms", "%", "nodes");
    for (int k = 0; k < NCLASS; k++)
      fprintf(f, "%-13s %10.2f %5.1f%% %5d %10.2f %5.1f%% %5d\n", class_names[k],
              c->cls[0][k] * 1e3, 100 * c->cls[0][k] / c->sum[0], c->ncls[0][k],
              c->cls[1][k] * 1e3, 100 * c->cls[1][k] / c->sum[1], c->ncls[1][k]);
    fprintf(f, "%-13s %10.2f %6s %5d %10.2f %6s %5d\n", "sum of nodes", c->sum[0] * 1e3, "",
            c->nnodes[0], c->sum[1] * 1e3, "", c->nnodes[1]);
    fprintf(f, "%-13s %10.2f %6s %5s %10.2f\n", "whole layer", c->whole[0] * 1e3, "", "",
            c->whole[1] * 1e3);
    fprintf(f, "non-GEMM share (softmax, norms, elementwise, layout, quantize): static %.1f%%, "
               "dynamic %.1f%%\n",
            100 * (c->sum[0] - c->cls[0][0] - c->cls[0][1]) / c->sum[0],
            100 * (c->sum[1] - c->cls[1][0] - c->cls[1][1]) / c->sum[1]);
  }
  fprintf(f, "\nX/Y: speed ratio of q8c (X) over oneDNN (Y), > 1: q8c faster. other load: CPUs "
             "other processes kept busy\nwhile the case was measured (the machine is shared; "
             "figures mean little above ~0.3).\n");
}

static void write_json(const char *path) {
  FILE *f = fopen(path, "w");
  if (!f)
    die("cannot write %s", path);
  fprintf(f, "{\n  \"cpu\": \"%s\",\n  \"cpus\": %ld,\n  \"variant\": \"%s\",\n", cpu_name,
          sysconf(_SC_NPROCESSORS_ONLN), ninfos ? infos[0].variant : "?");
  fprintf(f, "  \"onednn\": \"%d.%d.%d\",\n  \"rounds\": %d,\n  \"sample_ms\": %g,\n",
          dnnl_version()->major, dnnl_version()->minor, dnnl_version()->patch, opt.rounds,
          opt.sample_ms);
  fprintf(f, "  \"onednn_int8_attention\": \"f32\",\n  \"onednn_int8_wmax\": %d,\n", opt.wmax);
  fprintf(f, "  \"q8c_reduce_range\": %s,\n", opt.reduce_range ? "true" : "false");
  fprintf(f, "  \"results\": [\n");
  for (int i = 0; i < nresults; i++) {
    const Result *r = &results[i];
    int64_t macs = layer_macs(r->spec);
    fprintf(f, "    {\"case\": \"%s\", \"threads\": %d, \"macs\": %lld", r->spec->name,
            r->threads, (long long)macs);
    for (int e = 0; e < ENGINES; e++)
      fprintf(f, ", \"%s_ms\": %.3f, \"%s_gmacs\": %.2f", engine_names[e], r->t[e] * 1e3,
              engine_names[e], gmacs(macs, r->t[e]));
    fprintf(f,
            ", \"static_over_int8\": %.3f, \"static_over_f32\": %.3f, \"dynamic_over_int8\": "
            "%.3f, \"dynamic_over_f32\": %.3f, \"other_load\": %.2f}%s\n",
            r->t[2] / r->t[0], r->t[3] / r->t[0], r->t[2] / r->t[1], r->t[3] / r->t[1], r->load,
            i + 1 < nresults ? "," : "");
  }
  fprintf(f, "  ],\n  \"cases\": [\n");
  for (int i = 0; i < ninfos; i++) {
    const CaseInfo *c = &infos[i];
    fprintf(f, "    {\"case\": \"%s\", \"sqnr_db\": {", c->spec->name);
    for (int e = 0; e < ENGINES; e++)
      fprintf(f, "%s\"%s\": %.2f", e ? ", " : "", engine_names[e], c->sqnr[e]);
    fprintf(f, "}, \"compile_static_s\": %.3f, \"compile_dynamic_s\": %.3f", c->compile_static_s,
            c->compile_dynamic_s);
    if (c->has_breakdown) {
      const char *tags[2] = {"static", "dynamic"};
      fprintf(f, ", \"breakdown_other_load\": %.2f, \"breakdown\": {", c->bload);
      for (int v = 0; v < 2; v++) {
        fprintf(f, "%s\"%s\": {\"whole_ms\": %.3f, \"sum_ms\": %.3f, \"classes_ms\": {",
                v ? ", " : "", tags[v], c->whole[v] * 1e3, c->sum[v] * 1e3);
        for (int k = 0; k < NCLASS; k++)
          fprintf(f, "%s\"%s\": %.3f", k ? ", " : "", class_names[k], c->cls[v][k] * 1e3);
        fprintf(f, "}, \"nodes\": [");
        for (int k = 0; k < c->nnodes[v]; k++)
          fprintf(f, "%s{\"value\": \"%s\", \"op\": \"%s\", \"ms\": %.4f}", k ? ", " : "",
                  c->nodes[v][k].name, c->nodes[v][k].op, c->nodes[v][k].med * 1e3);
        fprintf(f, "]}");
      }
      fprintf(f, "}");
    }
    fprintf(f, "}%s\n", i + 1 < ninfos ? "," : "");
  }
  fprintf(f, "  ],\n  \"targets\": [\n");
  for (int i = 0; i < ntargets; i++)
    fprintf(f, "    {\"target\": \"%s\", \"value\": %.3f, \"want\": %.3f, \"ok\": %s}%s\n",
            targets[i].what, targets[i].value, targets[i].want, targets[i].ok ? "true" : "false",
            i + 1 < ntargets ? "," : "");
  fprintf(f, "  ]\n}\n");
  if (fclose(f) != 0)
    die("cannot write %s", path);
}

/* ---- main ------------------------------------------------------------- */

static void usage(void) {
  fprintf(stderr,
          "usage: layerbench [--json FILE] [--rounds N] [--sample-ms MS] [--threads 1,2]\n"
          "                  [--cases SUBSTR,...] [--calib N] [--dnnl-wmax N] [--no-breakdown]\n"
          "                  [--work DIR] [--keep] [--q8c PATH] [--wait-quiet SEC]\n"
          "                  [--reduce-range on|off]\n"
          "cases: bert-base, gpt2-small\n");
  exit(2);
}

int main(int argc, char **argv) {
  bench_prog = "layerbench";
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    const char *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (strcmp(a, "--keep") == 0) {
      opt.keep = true;
      continue;
    }
    if (strcmp(a, "--no-breakdown") == 0) {
      opt.breakdown = false;
      continue;
    }
    if (!v)
      usage();
    i++;
    if (strcmp(a, "--json") == 0)
      opt.json = v;
    else if (strcmp(a, "--rounds") == 0)
      opt.rounds = atoi(v);
    else if (strcmp(a, "--sample-ms") == 0)
      opt.sample_ms = atof(v);
    else if (strcmp(a, "--cases") == 0)
      opt.cases = v;
    else if (strcmp(a, "--dnnl-wmax") == 0)
      opt.wmax = atoi(v);
    else if (strcmp(a, "--calib") == 0)
      opt.ncalib = atoi(v);
    else if (strcmp(a, "--work") == 0)
      opt.work = v;
    else if (strcmp(a, "--wait-quiet") == 0)
      opt.wait_quiet = atof(v);
    else if (strcmp(a, "--q8c") == 0)
      opt.q8c = v;
    else if (strcmp(a, "--reduce-range") == 0 && (!strcmp(v, "on") || !strcmp(v, "off")))
      opt.reduce_range = strcmp(v, "on") == 0;
    else if (strcmp(a, "--threads") == 0) {
      opt.nthreads = 0;
      for (const char *p = v; *p && opt.nthreads < 4;
           p += strcspn(p, ",") + (p[strcspn(p, ",")] != 0))
        opt.threads[opt.nthreads++] = atoi(p);
    } else
      usage();
  }
  if (opt.rounds < 1 || opt.rounds > 64 || opt.nthreads < 1 || opt.sample_ms <= 0 ||
      opt.ncalib < 1 || opt.ncalib > 256 || opt.wmax < 0 || opt.wmax > 127)
    usage();
  if (!opt.wmax)
    opt.wmax = q8rt_cpu_features() & Q8_FEATURE_AVX512VNNI ? 127 : 63;
  if (opt.reduce_range < 0)
    opt.reduce_range = opt.wmax < 127;
  for (int i = 0; i < opt.nthreads; i++)
    if (opt.threads[i] < 1 || opt.threads[i] > 256)
      usage();

  FILE *ci = fopen("/proc/cpuinfo", "r");
  char line[512];
  while (ci && fgets(line, sizeof line, ci))
    if (strncmp(line, "model name", 10) == 0) {
      char *p = strchr(line, ':');
      snprintf(cpu_name, sizeof cpu_name, "%.120s", p ? p + 2 : line);
      cpu_name[strcspn(cpu_name, "\n")] = 0;
      break;
    }
  if (ci)
    fclose(ci);

  work_init(opt.work);
  DN(dnnl_engine_create(&eng, dnnl_cpu, 0));
  DN(dnnl_stream_create(&strm, eng, dnnl_stream_default_flags));
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
    bench_case(&cases[i]);
  check_targets();
  print_tables(stdout);
  print_targets(stdout);
  write_json(opt.json);
  printf("\nJSON: %s\n", opt.json);
  dnnl_stream_destroy(strm);
  dnnl_engine_destroy(eng);
  work_cleanup(opt.keep);
  if (opt.keep)
    printf("files kept in %s\n", work_dir_name());
  return 0;
}
