/* api.c: the public compiler API (include/q8c.h) over the internal layers.
 *
 * A q8c_module wraps an IrModule, kept opaque so that the IR can change
 * without breaking embedding applications, together with the status of its
 * first error. Each entry point checks its arguments, because a library must
 * not crash on a caller's mistake, and runs the layers below under a recovery
 * point (IrRecover, ir/ir.h): when the IR's arena runs out of memory it jumps
 * back here, and the call returns Q8C_ERR_NOMEM instead of the process
 * aborting. The work itself is in the *_work functions, so that the frame
 * that calls setjmp modifies no local variable the jump could clobber.
 *
 * Numbers are read and written in the C locale whatever the application
 * chose with setlocale: under a comma-decimal locale (de_DE) strtod would
 * stop at the '.' of `2.5` and printf would write `2,5`, which no parser
 * reads back. Every entry runs its work under the C numeric locale through
 * uselocale, which changes the calling thread only, and restores the
 * caller's on return. */
#include <locale.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../codegen/codegen.h"
#include "jiteval.h"
#include "../frontend/frontend.h"
#include "../passes/passes.h"
#include "q8c.h"

struct q8c_module {
  IrModule *ir;      /* NULL when the parse had no text or ran out of memory */
  q8c_status status; /* of the first error; Q8C_OK while there is none */
  char msg[512];     /* the first error when there is no IrModule to hold it */
};

const char *q8c_status_name(q8c_status s) {
  switch (s) {
  case Q8C_OK: return "Q8C_OK";
  case Q8C_ERR_ARG: return "Q8C_ERR_ARG";
  case Q8C_ERR_MODEL: return "Q8C_ERR_MODEL";
  case Q8C_ERR_SHAPE: return "Q8C_ERR_SHAPE";
  case Q8C_ERR_COMPILE: return "Q8C_ERR_COMPILE";
  case Q8C_ERR_NOMEM: return "Q8C_ERR_NOMEM";
  }
  return "Q8C_ERR_?";
}

int q8c_version(void) { return Q8_VERSION_NUMBER; }
const char *q8c_version_string(void) { return Q8_VERSION; }
int q8c_model_abi_version(void) { return Q8_MODEL_ABI_VERSION; }

/* --- Errors -------------------------------------------------------------- */

/* Record an error with status `s` (the module keeps the first one) and
 * return the module's status. */
__attribute__((format(printf, 3, 4))) static q8c_status fail(q8c_module *qm, q8c_status s,
                                                             const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  if (qm->ir)
    ir_verror(&qm->ir->diag, (IrLoc){0}, fmt, ap);
  else if (qm->status == Q8C_OK)
    vsnprintf(qm->msg, sizeof qm->msg, fmt, ap);
  va_end(ap);
  if (qm->status == Q8C_OK)
    qm->status = s;
  return qm->status;
}

/* A layer below returned failure, with its message in the module's IrDiag:
 * status `s`, or Q8C_ERR_NOMEM when it was the arena that ran out. */
static q8c_status layer_failed(q8c_module *qm, q8c_status s) {
  bool nomem = ir_arena_exhausted(qm->ir->arena);
  if (!qm->ir->diag.failed)
    ir_error(&qm->ir->diag, (IrLoc){0}, "%s", nomem ? "out of memory" : "internal error");
  if (qm->status == Q8C_OK)
    qm->status = nomem ? Q8C_ERR_NOMEM : s;
  return qm->status;
}

/* Whether the module can be worked on: Q8C_OK, Q8C_ERR_ARG for NULL, else
 * the status of its first error. */
static q8c_status usable(const q8c_module *qm) {
  if (!qm)
    return Q8C_ERR_ARG;
  return qm->status;
}

/* Run work(qm, args) under a recovery point: out of memory in the IR's
 * arena comes back here as Q8C_ERR_NOMEM. Arenas created meanwhile (a
 * module being parsed) are freed; the module's own arena keeps everything
 * it handed out, so q8c_module_free still releases all of it. */
typedef q8c_status (*work_fn)(q8c_module *qm, void *args);

/* This thread to the C numeric locale; returns the locale to restore, or
 * (locale_t)0 when none could be had (then numbers follow the caller's). */
static locale_t c_numbers_begin(void) {
  locale_t c = newlocale(LC_NUMERIC_MASK, "C", (locale_t)0);
  if (!c)
    return (locale_t)0;
  locale_t old = uselocale(c);
  if (!old)
    freelocale(c);
  return old;
}

static void c_numbers_end(locale_t old) {
  if (!old)
    return;
  locale_t c = uselocale(old);
  if (c && c != LC_GLOBAL_LOCALE)
    freelocale(c);
}

static q8c_status recover(q8c_module *qm, work_fn work, void *args) {
  IrRecover r;
  q8c_status s;
  ir_recover_push(&r);
  if (setjmp(r.jump) == 0) {
    s = work(qm, args);
  } else {
    ir_recover_free_arenas(&r);
    s = fail(qm, Q8C_ERR_NOMEM, "out of memory");
  }
  ir_recover_pop(&r);
  return s;
}

/* recover() under the C numeric locale (outside the frame that calls
 * setjmp, which must not keep locals across the jump). */
static q8c_status protect(q8c_module *qm, work_fn work, void *args) {
  locale_t caller = c_numbers_begin();
  q8c_status s = recover(qm, work, args);
  c_numbers_end(caller);
  return s;
}

/* --- Parsing ------------------------------------------------------------- */

typedef struct {
  const char *name, *path, *text;
  const FeDims *dims; /* q8c_parse_file_dims's, or NULL */
} ParseArgs;

static q8c_status parse_work(q8c_module *qm, void *p) {
  const ParseArgs *a = p;
  qm->ir = a->path ? fe_parse_file_dims(a->path, a->dims) : fe_parse(a->name, a->text);
  return qm->ir->diag.failed ? layer_failed(qm, Q8C_ERR_MODEL) : Q8C_OK;
}

static q8c_status parse(const char *fn, const ParseArgs *a, q8c_module **out) {
  if (!out)
    return Q8C_ERR_ARG;
  q8c_module *qm = calloc(1, sizeof *qm);
  *out = qm;
  if (!qm)
    return Q8C_ERR_NOMEM;
  if (!a->path && !a->text)
    return fail(qm, Q8C_ERR_ARG, "%s: %s is NULL", fn, a->name ? "text" : "path");
  q8c_status s = protect(qm, parse_work, (void *)a);
  if (s == Q8C_ERR_NOMEM && !qm->ir)
    snprintf(qm->msg, sizeof qm->msg, "%.400s: error: out of memory",
             a->path ? a->path : a->name);
  return s;
}

q8c_status q8c_parse_file(const char *path, q8c_module **out) {
  ParseArgs a = {NULL, path, NULL, NULL};
  return parse("q8c_parse_file", &a, out);
}

q8c_status q8c_parse_file_dims(const char *path, int ndims, const char *const *names,
                               const int64_t *values, q8c_module **out) {
  static const char fn[] = "q8c_parse_file_dims";
  FeDims dims = {0};
  ParseArgs a = {NULL, path, NULL, &dims};
  /* The bindings are checked as `--dim NAME=N` is (driver/main.c). */
  const char *bad = NULL;
  char why[160];
  if (ndims < 0 || ndims > FE_MAX_DIMS)
    snprintf(why, sizeof why, "ndims is %d; it takes 0 to %d bindings", ndims, FE_MAX_DIMS),
        bad = why;
  else if (ndims > 0 && (!names || !values))
    bad = "names or values is NULL";
  for (int i = 0; !bad && i < ndims; i++) {
    if (!names[i] || !*names[i] || strlen(names[i]) >= sizeof dims.name[0])
      snprintf(why, sizeof why, "names[%d] is NULL, empty or longer than %d bytes", i,
               (int)sizeof dims.name[0] - 1),
          bad = why;
    else if (values[i] < 1 || values[i] > (1LL << 31))
      snprintf(why, sizeof why, "values[%d] (%s) is %lld; a dim is 1 to 2^31", i, names[i],
               (long long)values[i]),
          bad = why;
    else {
      snprintf(dims.name[i], sizeof dims.name[i], "%s", names[i]);
      dims.value[i] = values[i];
    }
  }
  dims.n = ndims;
  if (!bad)
    return parse(fn, &a, out);
  /* A module carrying the message, as parse() makes for a NULL path. */
  if (!out)
    return Q8C_ERR_ARG;
  *out = calloc(1, sizeof **out);
  return *out ? fail(*out, Q8C_ERR_ARG, "%s: %s", fn, bad) : Q8C_ERR_NOMEM;
}

q8c_status q8c_parse_string(const char *name, const char *text, q8c_module **out) {
  ParseArgs a = {name ? name : "<string>", NULL, text, NULL};
  return parse("q8c_parse_string", &a, out);
}

const char *q8c_module_error(const q8c_module *qm) {
  if (!qm)
    return "no module";
  if (qm->status == Q8C_OK)
    return NULL;
  return qm->ir && qm->ir->diag.failed ? qm->ir->diag.msg : qm->msg;
}

q8c_status q8c_module_print(q8c_module *qm, char **text) {
  if (text)
    *text = NULL;
  q8c_status s = usable(qm);
  if (s != Q8C_OK)
    return s;
  if (!text)
    return fail(qm, Q8C_ERR_ARG, "q8c_module_print: text is NULL");
  /* ir_print builds the text in malloc'd memory, outside the arena. */
  locale_t caller = c_numbers_begin();
  *text = ir_print(qm->ir);
  c_numbers_end(caller);
  return *text ? Q8C_OK : fail(qm, Q8C_ERR_NOMEM, "q8c_module_print: out of memory");
}

/* --- Queries ------------------------------------------------------------- */

/* The IrModule of a module that has one, else NULL. */
static const IrModule *ir_of(const q8c_module *qm) { return qm ? qm->ir : NULL; }

int q8c_num_inputs(const q8c_module *qm) { return ir_of(qm) ? ir_of(qm)->ninputs : -1; }
int q8c_num_outputs(const q8c_module *qm) { return ir_of(qm) ? ir_of(qm)->noutputs : -1; }

const char *q8c_input_name(const q8c_module *qm, int i) {
  const IrModule *m = ir_of(qm);
  return m && i >= 0 && i < m->ninputs ? m->inputs[i]->name : NULL;
}

const char *q8c_output_name(const q8c_module *qm, int i) {
  const IrModule *m = ir_of(qm);
  return m && i >= 0 && i < m->noutputs ? m->outputs[i]->name : NULL;
}

static int shape_of(const IrValue *v, int64_t batch, int64_t *dims) {
  IrType t = ir_type_bind(&v->type, batch);
  for (int d = 0; d < t.rank; d++)
    dims[d] = t.dims[d];
  return t.rank;
}

int q8c_input_shape(const q8c_module *qm, int i, int64_t batch, int64_t *dims) {
  const IrModule *m = ir_of(qm);
  if (!m || !dims || i < 0 || i >= m->ninputs)
    return -1;
  return shape_of(m->inputs[i], batch, dims);
}

int q8c_output_shape(const q8c_module *qm, int i, int64_t batch, int64_t *dims) {
  const IrModule *m = ir_of(qm);
  if (!m || !dims || i < 0 || i >= m->noutputs)
    return -1;
  return shape_of(m->outputs[i], batch, dims);
}

/* --- The reference interpreter ------------------------------------------- */

typedef struct {
  int64_t batch;
  const float *const *inputs;
  float *const *outputs;
  IrTensor *in, *out; /* allocated by the caller, outside the recovery point */
} RunArgs;

static q8c_status run_reference_work(q8c_module *qm, void *p) {
  RunArgs *a = p;
  IrModule *m = qm->ir;
  for (int i = 0; i < m->ninputs; i++) {
    a->in[i].type = ir_type_bind(&m->inputs[i]->type, a->batch);
    a->in[i].data = (void *)a->inputs[i];
  }
  if (!ir_interp_f32(m, a->batch, a->in, a->out, NULL, NULL))
    return layer_failed(qm, Q8C_ERR_MODEL);
  for (int i = 0; i < m->noutputs; i++) {
    int64_t n;
    ir_type_numel(&a->out[i].type, a->batch, &n);
    memcpy(a->outputs[i], a->out[i].data, (size_t)n * sizeof(float));
  }
  return Q8C_OK;
}

q8c_status q8c_run_reference(q8c_module *qm, int64_t batch, int ninputs,
                             const float *const *inputs, int noutputs, float *const *outputs) {
  q8c_status s = usable(qm);
  if (s != Q8C_OK)
    return s;
  IrModule *m = qm->ir;
  if (ninputs != m->ninputs)
    return fail(qm, Q8C_ERR_SHAPE, "q8c_run_reference: %d input%s given, the module has %d",
                ninputs, ninputs == 1 ? "" : "s", m->ninputs);
  if (noutputs != m->noutputs)
    return fail(qm, Q8C_ERR_SHAPE, "q8c_run_reference: %d output%s given, the module has %d",
                noutputs, noutputs == 1 ? "" : "s", m->noutputs);
  /* The arrays hold floats: a module whose inputs or outputs are integers
   * (a quantized IR read back) would be read or written past their ends. */
  for (int i = 0; i < m->ninputs + m->noutputs; i++) {
    bool in = i < m->ninputs;
    const IrValue *v = in ? m->inputs[i] : m->outputs[i - m->ninputs];
    const void *p = in ? (inputs ? (const void *)inputs[i] : NULL)
                       : (outputs ? (const void *)outputs[i - m->ninputs] : NULL);
    if (v->type.dtype != IR_F32)
      return fail(qm, Q8C_ERR_ARG,
                  "q8c_run_reference: %s %%%s is %s; it runs models with f32 inputs and outputs",
                  in ? "input" : "output", v->name, ir_dtype_name(v->type.dtype));
    if (!p)
      return fail(qm, Q8C_ERR_ARG, "q8c_run_reference: no buffer for %s %d (%%%s)",
                  in ? "input" : "output", in ? i : i - m->ninputs, v->name);
  }
  if (batch < 1)
    return fail(qm, Q8C_ERR_ARG, "q8c_run_reference: the batch size is %lld", (long long)batch);
  /* q8c_compile bound `?`: the module's shapes are now those of its batch
   * size, and buffers sized for another would be overrun. */
  if (m->bound_batch && batch != m->bound_batch)
    return fail(qm, Q8C_ERR_SHAPE,
                "q8c_run_reference: the module was compiled for the batch size %lld (compiling "
                "binds '?'), not %lld",
                (long long)m->bound_batch, (long long)batch);
  RunArgs a = {batch, inputs, outputs, calloc((size_t)m->ninputs + 1, sizeof(IrTensor)),
               calloc((size_t)m->noutputs + 1, sizeof(IrTensor))};
  if (!a.in || !a.out)
    s = fail(qm, Q8C_ERR_NOMEM, "q8c_run_reference: out of memory");
  else
    s = protect(qm, run_reference_work, &a);
  for (int i = 0; a.out && i < m->noutputs; i++)
    free(a.out[i].data);
  free(a.in);
  free(a.out);
  return s;
}

/* --- Quantizing and compiling ------------------------------------------- */

static q8c_status quantize_work(q8c_module *qm, void *p) {
  const q8c_quant_options *qo = p;
  PassOptions o;
  pass_options_init(&o);
  o.evaluator = &q8c_jit_evaluator; /* calibration runs compiled code */
  char err[256];
  const struct {
    const char *name, *value;
  } set[] = {{"calib", qo->calib_path},     {"calib-method", qo->calib_method},
             {"weights", qo->weights},      {"activations", qo->activations},
             {"keep-float", qo->keep_float},
             {"target-sqnr", qo->target_sqnr},
             {"max-top1-drop", qo->max_top1_drop},
             {"weights-for", qo->weights_for}};
  for (size_t i = 0; i < sizeof set / sizeof set[0]; i++)
    if (set[i].value && !pass_options_set(&o, set[i].name, set[i].value, err, sizeof err))
      return fail(qm, Q8C_ERR_ARG, "%s", err);
  /* smooth: "" is the flag alone (the default alpha). */
  if (qo->smooth &&
      !pass_options_set(&o, "smooth", qo->smooth[0] ? qo->smooth : NULL, err, sizeof err))
    return fail(qm, Q8C_ERR_ARG, "%s", err);
  o.dynamic = qo->dynamic != 0;
  /* outliers: "" is the flag alone (threshold 6); it implies dynamic. */
  if (qo->outliers &&
      !pass_options_set(&o, "outliers", qo->outliers[0] ? qo->outliers : NULL, err, sizeof err))
    return fail(qm, Q8C_ERR_ARG, "%s", err);
  o.double_quant = qo->double_quant != 0;
  o.reduce_range = qo->reduce_range != 0;
  return pass_run_pipeline(qm->ir, &o) ? Q8C_OK : layer_failed(qm, Q8C_ERR_MODEL);
}

q8c_status q8c_quantize(q8c_module *qm, const q8c_quant_options *qo) {
  q8c_status s = usable(qm);
  if (s != Q8C_OK)
    return s;
  q8c_quant_options none = {0};
  return protect(qm, quantize_work, (void *)(qo ? qo : &none));
}

static void release_jit(void *jit) { cg_jit_free(jit); }

typedef struct {
  const q8c_compile_options *co;
  q8rt_model **out;
} CompileArgs;

static q8c_status compile_work(q8c_module *qm, void *p) {
  const CompileArgs *a = p;
  IrModule *m = qm->ir;
  bool runtime = a->co->batch == Q8C_BATCH_RUNTIME && !m->bound_batch;
  CgOptions o = {.opt_level = a->co->opt_level ? a->co->opt_level : 3,
                 .batch = runtime                                 ? 0
                          : a->co->batch > 0                      ? a->co->batch
                          : a->co->batch == Q8C_BATCH_RUNTIME      ? m->bound_batch
                                                                  : 1,
                 .max_batch = a->co->max_batch > 0 ? a->co->max_batch : 0};
  if (m->bound_batch && o.batch != m->bound_batch)
    return fail(qm, Q8C_ERR_SHAPE,
                "q8c_compile: the module was compiled for the batch size %lld already "
                "(compiling binds '?'), not %lld",
                (long long)m->bound_batch, (long long)o.batch);
  char err[512];
  if (!cg_parse_targets(a->co->target ? a->co->target : "native", &o, err, sizeof err))
    return fail(qm, Q8C_ERR_ARG, "target: %s", err);
  const q8_model_desc *desc;
  CgJit *jit = cg_jit_compile(m, &o, &desc);
  if (!jit)
    return layer_failed(qm, Q8C_ERR_COMPILE);
  q8rt_status rs = q8rt_model_from_desc(desc, release_jit, jit, a->out, err, sizeof err);
  if (rs != Q8RT_OK) {
    cg_jit_free(jit);
    return fail(qm, rs == Q8RT_ERR_NOMEM ? Q8C_ERR_NOMEM : Q8C_ERR_COMPILE, "%s", err);
  }
  return Q8C_OK;
}

q8c_status q8c_compile(q8c_module *qm, const q8c_compile_options *co, q8rt_model **out) {
  if (out)
    *out = NULL;
  q8c_status s = usable(qm);
  if (s != Q8C_OK)
    return s;
  if (!out)
    return fail(qm, Q8C_ERR_ARG, "q8c_compile: out is NULL");
  q8c_compile_options none = {0};
  CompileArgs a = {co ? co : &none, out};
  return protect(qm, compile_work, &a);
}

void q8c_module_free(q8c_module *qm) {
  if (!qm)
    return;
  ir_module_free(qm->ir);
  free(qm);
}
