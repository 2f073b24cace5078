/* run.c: `q8c run`: execute a model on .npy inputs and write .npy outputs
 * (or print them). A .so goes through the runtime (libq8rt); a .ir runs in
 * the reference interpreter, or with --jit as machine code compiled in
 * memory, the interpreter's exact twin. --quantized runs the quantized entry
 * (q8rt_run_quantized, ir_interp_quantized) instead. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../codegen/codegen.h"
#include "driver.h"

/* The model's inputs or outputs, by name, for matching -i and -o. */
typedef struct {
  int n;
  const char *names[MAX_FILES];
} Names;

/* Which file argument belongs to the value named `name`: NAME=FILE, or a
 * bare FILE when the model has exactly one. */
static const FileArg *match_file(const FileArg *args, int nargs, const char *name, int count) {
  for (int i = 0; i < nargs; i++)
    if (args[i].name && strcmp(args[i].name, name) == 0)
      return &args[i];
  if (count == 1 && nargs == 1 && !args[0].name)
    return &args[0];
  return NULL;
}

static bool check_file_names(const FileArg *args, int nargs, const Names *names,
                             const char *kind) {
  for (int i = 0; i < nargs; i++)
    if (kind[0] == 'o' && driver_is_stdio(args[i].path) && isatty(STDOUT_FILENO)) {
      fprintf(stderr, "q8c: error: -o -: a .npy is binary and standard output is a terminal "
                      "(redirect it, or give -o FILE.npy)\n");
      return false;
    }
  if (names->n > MAX_FILES) {
    fprintf(stderr, "q8c: error: the model has more than %d %ss\n", MAX_FILES, kind);
    return false;
  }
  for (int i = 0; i < nargs; i++) {
    if (!args[i].name) {
      if (names->n > 1 || nargs > 1) {
        fprintf(stderr, "q8c: error: the model has %d %ss; name each as %s NAME=FILE\n",
                names->n, kind, kind[0] == 'i' ? "-i" : "-o");
        return false;
      }
      continue;
    }
    bool found = false;
    for (int j = 0; j < names->n; j++)
      found |= strcmp(args[i].name, names->names[j]) == 0;
    if (!found) {
      fprintf(stderr, "q8c: error: the model has no %s named '%s'\n", kind, args[i].name);
      return false;
    }
  }
  return true;
}

/* Read each input's .npy into in[] (malloc'd data); '-' is standard input.
 * Returns 0, or the exit status after printing why. */
static int read_inputs(const Options *o, const Names *names, IrTensor *in) {
  char err[512];
  for (int i = 0; i < names->n; i++) {
    const FileArg *f = match_file(o->inputs, o->ninputs, names->names[i], names->n);
    if (!f) {
      fprintf(stderr,
              "q8c: error: no file given for input '%s' (-i %s=FILE.npy)\nTry 'q8c --help' for "
              "more information.\n",
              names->names[i], names->names[i]);
      return EXIT_USAGE;
    }
    const char *path = f->path;
    if (driver_is_stdio(path) && !(path = driver_stdin_file()))
      return EXIT_INPUT;
    if (!fe_npy_read(path, &in[i], err, sizeof err)) {
      fprintf(stderr, "%s: error: %s\n", driver_is_stdio(f->path) ? "<stdin>" : f->path, err);
      return EXIT_INPUT;
    }
  }
  return 0;
}

/* The batch size the inputs imply: the length of each `?` dim must agree.
 * With named dims (`f32[B, T, 64]`), each one's value (values[j], from the
 * inputs; they must agree), and the batch is their product. */
static bool infer_batch(const IrModule *m, const IrTensor *in, const Options *o, int64_t *batch,
                        int64_t *values) {
  *batch = o->batch;
  int k = m->nnamed > 1 ? m->nnamed : 0;
  int from[IR_MAX_RANK];
  for (int j = 0; j < k; j++)
    from[j] = -1, values[j] = 1;
  for (int i = 0; i < m->ninputs; i++) {
    const IrType *t = &m->inputs[i]->type;
    if (in[i].type.rank != t->rank)
      continue; /* the interpreter reports the mismatch */
    for (int d = 0; d < k && d < t->rank; d++) {
      if (!ir_dim_symbolic(t->dims[d]))
        continue;
      int64_t got = in[i].type.dims[d];
      if (from[d] >= 0 && got != values[d]) {
        fprintf(stderr, "q8c: error: input '%s' has %s = %" PRId64 " but input '%s' has %" PRId64
                        "\n",
                m->inputs[i]->name, m->named[d], got, m->inputs[from[d]]->name, values[d]);
        return false;
      }
      from[d] = i;
      values[d] = got;
    }
    for (int d = 0; d < t->rank; d++) {
      if (t->dims[d] != IR_DIM_BATCH || k)
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
  if (k) {
    int64_t rows = 1;
    for (int j = 0; j < k; j++) {
      if (values[j] < 1 || values[j] > INT64_MAX / rows) {
        fprintf(stderr, "q8c: error: %s = %" PRId64 " %s\n", m->named[j], values[j],
                values[j] < 1 ? "must be at least 1" : "makes too many rows");
        return false;
      }
      rows *= values[j];
    }
    *batch = rows;
  }
  if (*batch == 0)
    *batch = 1;
  return true;
}

/* With named dims: tensor t of the model's type `want` as the interpreter
 * binds it (the first named dim the product, the others 1: the same
 * bytes), or back to the named values. */
static void fold_named(const IrModule *m, const IrType *want, IrTensor *t, int64_t batch,
                       const int64_t *values, bool fold) {
  if (m->nnamed < 2 || t->type.rank != want->rank || !ir_dim_symbolic(want->dims[0]))
    return;
  for (int j = 0; j < m->nnamed && j < t->type.rank; j++)
    t->type.dims[j] = fold ? (j == 0 ? batch : 1) : values[j];
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

/* Write each output to its -o file, or print them all when there is none. */
static bool write_outputs(const Options *o, const Names *names, const IrTensor *out) {
  char err[512];
  for (int i = 0; i < names->n; i++) {
    const FileArg *f = match_file(o->outputs, o->noutputs, names->names[i], names->n);
    if (o->noutputs == 0) {
      print_tensor(names->names[i], &out[i]);
    } else if (f && driver_is_stdio(f->path)) {
      const char *tmp = driver_temp_file(".npy");
      if (!tmp)
        return false;
      if (!fe_npy_write(tmp, &out[i], err, sizeof err)) {
        fprintf(stderr, "q8c: error: standard output: %s\n", err);
        return false;
      }
      if (!driver_copy_to_stdout(tmp))
        return false;
    } else if (f && !fe_npy_write(f->path, &out[i], err, sizeof err)) {
      fprintf(stderr, "%s: error: %s\n", f->path, err);
      return false;
    }
  }
  return true;
}

static void free_tensors(IrTensor *t, int n) {
  for (int i = 0; i < n; i++)
    free(t[i].data);
}

/* Room for each output of `types` (malloc'd data). */
static bool alloc_outputs(IrTensor *out, const IrType *types, int n) {
  for (int i = 0; i < n; i++) {
    int64_t numel;
    out[i].type = types[i];
    if (!ir_type_numel(&types[i], 1, &numel) ||
        !(out[i].data = malloc((size_t)(numel ? numel : 1) * ir_dtype_size(types[i].dtype)))) {
      fprintf(stderr, "q8c: error: out of memory for output %d\n", i);
      return false;
    }
  }
  return true;
}

static void release_jit(void *jit) { cg_jit_free(jit); }

/* `q8c run --jit`: compile the module in memory for --target and run the
 * machine code instead of the interpreter. */
static bool run_jit(IrModule *m, const Options *o, int64_t batch, IrTensor *in,
                    const IrType *given, IrTensor *out) {
  for (int i = 0; i < m->ninputs; i++) {
    IrType want = ir_type_bind(&m->inputs[i]->type, batch);
    want.dtype = ir_boundary_dtype(m->inputs[i], o->quantized);
    char b1[128], b2[128];
    IrTensor folded = in[i];
    fold_named(m, &m->inputs[i]->type, &folded, batch, NULL, true);
    if (!ir_type_equal(&folded.type, &want))
      return ir_error(&m->diag, (IrLoc){0}, "input '%s' is %s but the model expects %s",
                      m->inputs[i]->name, ir_type_str(&in[i].type, b1, sizeof b1),
                      ir_type_str(&want, b2, sizeof b2));
  }
  /* Without --batch, a run-time batch when the model allows it (the
   * library a .so compile gives), called with the inputs' shapes. */
  char why[200];
  CgOptions co = {.opt_level = o->opt_level,
                  .batch = o->batch || !cg_runtime_batch_ok(m, why, sizeof why) ? batch : 0};
  if (!driver_max_dims(o, m, &co.nmax_dims, co.max_dim_names, co.max_dim_values))
    return ir_error(&m->diag, (IrLoc){0}, "--max-dim names no named dim of the model");
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
  IrType types[MAX_FILES];
  const void *inp[MAX_FILES];
  void *outp[MAX_FILES];
  for (int i = 0; i < m->noutputs; i++) {
    types[i] = ir_type_bind(&m->outputs[i]->type, batch);
    types[i].dtype = ir_boundary_dtype(m->outputs[i], o->quantized);
  }
  bool ok = alloc_outputs(out, types, m->noutputs);
  for (int i = 0; ok && i < m->ninputs; i++)
    inp[i] = in[i].data;
  for (int i = 0; ok && i < m->noutputs; i++)
    outp[i] = out[i].data;
  /* A run-time batch takes the shapes as given (named dims: each one's
   * value); a fixed-shape library the bound ones. */
  const int64_t *dims[MAX_FILES];
  IrTensor folded[MAX_FILES];
  for (int i = 0; ok && i < m->ninputs; i++) {
    folded[i] = in[i];
    fold_named(m, &m->inputs[i]->type, &folded[i], batch, NULL, true);
    dims[i] = co.batch ? folded[i].type.dims : given[i].dims;
  }
  if (ok && (o->quantized ? q8rt_run_quantized_dims : q8rt_run_dims)(
                rt, m->ninputs, inp, dims, m->noutputs, outp, err, sizeof err) != Q8RT_OK)
    ok = ir_error(&m->diag, (IrLoc){0}, "%s", err);
  q8rt_free(rt);
  return ok;
}

/* A .ir model: the reference interpreter, or --jit. */
static int run_ir(IrModule *m, const Options *o) {
  Names ins = {m->ninputs, {0}}, outs = {m->noutputs, {0}};
  for (int i = 0; i < m->ninputs && i < MAX_FILES; i++)
    ins.names[i] = m->inputs[i]->name;
  for (int i = 0; i < m->noutputs && i < MAX_FILES; i++)
    outs.names[i] = m->outputs[i]->name;
  if (!check_file_names(o->inputs, o->ninputs, &ins, "input") ||
      !check_file_names(o->outputs, o->noutputs, &outs, "output"))
    return EXIT_USAGE;
  IrTensor in[MAX_FILES] = {{{0}, 0}}, out[MAX_FILES] = {{{0}, 0}};
  int64_t batch, values[IR_MAX_RANK];
  int status = read_inputs(o, &ins, in);
  if (status == 0 && !infer_batch(m, in, o, &batch, values))
    status = EXIT_INPUT;
  if (status == 0) {
    status = EXIT_INPUT;
    /* Named dims: the interpreter runs [B, T, 64] as [B x T, 1, 64]. */
    IrType given[MAX_FILES];
    for (int i = 0; i < m->ninputs && i < MAX_FILES; i++) {
      given[i] = in[i].type;
      if (!o->jit)
        fold_named(m, &m->inputs[i]->type, &in[i], batch, values, true);
    }
    bool ran = o->jit         ? run_jit(m, o, batch, in, given, out)
               : o->quantized ? ir_interp_quantized(m, batch, in, out)
                              : ir_interp_f32(m, batch, in, out, NULL, NULL);
    for (int i = 0; ran && i < m->noutputs; i++)
      fold_named(m, &m->outputs[i]->type, &out[i], batch, values, false);
    if (!ran)
      driver_fail(m);
    else if (write_outputs(o, &outs, out))
      status = 0;
  }
  free_tensors(in, MAX_FILES);
  free_tensors(out, MAX_FILES);
  return status;
}

IrType driver_desc_type(const q8_tensor_desc *d, bool quantized) {
  int32_t dt = quantized ? d->qdtype : d->dtype;
  IrType t = {dt == Q8_DTYPE_F32  ? IR_F32
              : dt == Q8_DTYPE_U8 ? IR_U8
              : dt == Q8_DTYPE_I8 ? IR_I8
              : dt == Q8_DTYPE_I64 ? IR_I64
                                  : IR_I32,
              d->rank,
              {0}};
  for (int i = 0; i < d->rank && i < IR_MAX_RANK; i++)
    t.dims[i] = d->dims[i];
  return t;
}

/* The same with the batch dims of a run-time-batch model as `?`. */
static IrType desc_type_rt(const q8_tensor_desc *d, bool quantized) {
  IrType t = driver_desc_type(d, quantized);
  for (int i = 0; i < t.rank; i++)
    if (d->batch_dims >> i & 1u)
      t.dims[i] = IR_DIM_BATCH;
  return t;
}

/* Whether `got` has the type `want` but for the length of its `?` dims. */
static bool fits_batch(const IrType *got, const IrType *want) {
  if (got->dtype != want->dtype || got->rank != want->rank)
    return false;
  for (int i = 0; i < got->rank; i++)
    if (want->dims[i] != IR_DIM_BATCH && got->dims[i] != want->dims[i])
      return false;
  return true;
}

/* A .so model: loaded and run by the runtime, with its compiled shapes. */
static int run_so(const Options *o) {
  char err[512];
  q8rt_model *model = NULL;
  if (q8rt_load(o->model, &model, err, sizeof err) != Q8RT_OK) {
    fprintf(stderr, "%s: error: %s\n", o->model, err);
    return EXIT_INPUT;
  }
  Names ins = {q8rt_num_inputs(model), {0}}, outs = {q8rt_num_outputs(model), {0}};
  for (int i = 0; i < ins.n && i < MAX_FILES; i++)
    ins.names[i] = q8rt_input(model, i)->name;
  for (int i = 0; i < outs.n && i < MAX_FILES; i++)
    outs.names[i] = q8rt_output(model, i)->name;
  if (!check_file_names(o->inputs, o->ninputs, &ins, "input") ||
      !check_file_names(o->outputs, o->noutputs, &outs, "output")) {
    q8rt_free(model);
    return EXIT_USAGE;
  }
  IrTensor in[MAX_FILES] = {{{0}, 0}}, out[MAX_FILES] = {{{0}, 0}};
  IrType types[MAX_FILES];
  const void *inp[MAX_FILES];
  const int64_t *dims[MAX_FILES];
  void *outp[MAX_FILES];
  int status = read_inputs(o, &ins, in);
  bool ok = status == 0;
  status = status ? status : EXIT_INPUT;
  /* A run-time batch: the runtime checks the dims (q8rt_run_dims); here
   * only the element type and rank, and the batch to size the outputs. */
  int64_t max_batch = q8rt_max_batch(model), batch = 1, values[Q8_MODEL_MAX_RANK];
  int nnamed = max_batch > 0 ? q8rt_desc(model)->nnamed : 0;
  for (int j = 0; j < Q8_MODEL_MAX_RANK; j++)
    values[j] = 1;
  for (int i = 0; ok && max_batch > 0 && i < ins.n; i++) {
    const q8_tensor_desc *t = q8rt_input(model, i);
    IrType want = desc_type_rt(t, o->quantized);
    char b1[128], b2[128];
    if (in[i].type.dtype != want.dtype || in[i].type.rank != want.rank) {
      const char *hint = in[i].type.dtype == want.dtype ? ""
                         : o->quantized ? " (--quantized takes each input in its quantized form)"
                         : want.dtype == IR_F32 ? " (a quantized input is for --quantized)"
                                                : "";
      fprintf(stderr, "q8c: error: input '%s' is %s but the model%s %s%s\n", ins.names[i],
              ir_type_str(&in[i].type, b1, sizeof b1),
              o->quantized ? "'s quantized entry takes" : " takes", ir_type_str(&want, b2, sizeof b2),
              hint);
      ok = false;
    }
    for (int d = 0; ok && d < want.rank; d++)
      if (want.dims[d] == IR_DIM_BATCH && fits_batch(&in[i].type, &want)) {
        int64_t v = in[i].type.dims[d];
        if (d < nnamed)
          /* the runtime refuses what does not fit */
          values[d] = v >= 1 && v <= q8rt_desc(model)->named_max[d] ? v : 1;
        else
          batch = v >= 1 && v <= max_batch ? v : 1;
      }
    inp[i] = in[i].data;
    dims[i] = in[i].type.dims;
  }
  for (int i = 0; ok && max_batch <= 0 && i < ins.n; i++) {
    IrType want = driver_desc_type(q8rt_input(model, i), o->quantized);
    char b1[128], b2[128];
    if (!ir_type_equal(&in[i].type, &want)) {
      /* Only a different shape is a matter of --batch; a different element
       * type is a matter of the entry (--quantized) or of the data. */
      IrType same = in[i].type;
      same.dtype = want.dtype;
      const char *hint =
          !ir_type_equal(&same, &want) ? " (recompile with --batch to change the batch size)"
          : o->quantized             ? " (--quantized takes each input in its quantized form)"
          : want.dtype == IR_F32 && in[i].type.dtype != IR_F32
              ? " (a quantized input is for --quantized)"
              : "";
      fprintf(stderr, "q8c: error: input '%s' is %s but the model%s %s%s\n", ins.names[i],
              ir_type_str(&in[i].type, b1, sizeof b1),
              o->quantized ? "'s quantized entry takes" : " was compiled for",
              ir_type_str(&want, b2, sizeof b2), hint);
      ok = false;
    }
    inp[i] = in[i].data;
  }
  for (int i = 0; ok && i < outs.n; i++) {
    const q8_tensor_desc *t = q8rt_output(model, i);
    types[i] = driver_desc_type(t, o->quantized);
    if (nnamed > 0)
      q8rt_tensor_dims_named(model, t, values, types[i].dims);
    else if (max_batch > 0)
      q8rt_tensor_dims(t, batch, types[i].dims);
  }
  ok = ok && alloc_outputs(out, types, outs.n);
  for (int i = 0; ok && i < outs.n; i++)
    outp[i] = out[i].data;
  if (ok &&
      (max_batch > 0
           ? (o->quantized ? q8rt_run_quantized_dims : q8rt_run_dims)(model, ins.n, inp, dims,
                                                                     outs.n, outp, err, sizeof err)
           : (o->quantized ? q8rt_run_quantized : q8rt_run)(model, ins.n, inp, outs.n, outp, err,
                                                            sizeof err)) != Q8RT_OK) {
    fprintf(stderr, "%s: error: %s\n", o->model, err);
    ok = false;
  }
  if (ok && write_outputs(o, &outs, out))
    status = 0;
  free_tensors(in, MAX_FILES);
  free_tensors(out, MAX_FILES);
  q8rt_free(model);
  return status;
}

static bool ends_with(const char *s, const char *suffix) {
  size_t n = strlen(s), k = strlen(suffix);
  return n >= k && strcmp(s + n - k, suffix) == 0;
}

int driver_run(const Options *o) {
  if (ends_with(o->model, ".so"))
    return run_so(o);
  IrModule *m = driver_parse(o->model, NULL, &o->dims);
  if (!m)
    return EXIT_INPUT;
  int rc = m->diag.failed ? driver_fail(m) : run_ir(m, o);
  ir_module_free(m);
  return rc;
}
