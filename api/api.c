/* api.c: the public compiler API (include/q8c.h) over the internal layers.
 *
 * q8c_module is the IrModule itself, kept opaque so that the IR can change
 * without breaking embedding applications. Each entry point checks its
 * arguments, because a library must not crash on a caller's mistake. */
#include <stdlib.h>
#include <string.h>

#include "../codegen/codegen.h"
#include "../passes/passes.h"
#include "../frontend/frontend.h"
#include "q8c.h"

struct q8c_module {
  IrModule ir; /* never instantiated: a q8c_module pointer is an IrModule pointer */
};

static IrModule *ir_of(const q8c_module *m) { return (IrModule *)m; }

q8c_module *q8c_parse_file(const char *path) {
  return path ? (q8c_module *)fe_parse_file(path) : NULL;
}

q8c_module *q8c_parse_string(const char *name, const char *text) {
  return text ? (q8c_module *)fe_parse(name ? name : "<string>", text) : NULL;
}

const char *q8c_module_error(const q8c_module *m) {
  if (!m)
    return "no module";
  return ir_of(m)->diag.failed ? ir_of(m)->diag.msg : NULL;
}

char *q8c_module_print(const q8c_module *m) {
  return m && !ir_of(m)->diag.failed ? ir_print(ir_of(m)) : NULL;
}

int q8c_num_inputs(const q8c_module *m) { return m ? ir_of(m)->ninputs : 0; }
int q8c_num_outputs(const q8c_module *m) { return m ? ir_of(m)->noutputs : 0; }

const char *q8c_input_name(const q8c_module *m, int i) {
  return m && i >= 0 && i < ir_of(m)->ninputs ? ir_of(m)->inputs[i]->name : NULL;
}

const char *q8c_output_name(const q8c_module *m, int i) {
  return m && i >= 0 && i < ir_of(m)->noutputs ? ir_of(m)->outputs[i]->name : NULL;
}

static int shape_of(const IrValue *v, int64_t batch, int64_t *dims) {
  IrType t = ir_type_bind(&v->type, batch);
  for (int d = 0; d < t.rank; d++)
    dims[d] = t.dims[d];
  return t.rank;
}

int q8c_input_shape(const q8c_module *m, int i, int64_t batch, int64_t *dims) {
  if (!m || !dims || i < 0 || i >= ir_of(m)->ninputs)
    return -1;
  return shape_of(ir_of(m)->inputs[i], batch, dims);
}

int q8c_output_shape(const q8c_module *m, int i, int64_t batch, int64_t *dims) {
  if (!m || !dims || i < 0 || i >= ir_of(m)->noutputs)
    return -1;
  return shape_of(ir_of(m)->outputs[i], batch, dims);
}

int q8c_run_reference(q8c_module *qm, int64_t batch, const float *const *inputs,
                      float *const *outputs) {
  IrModule *m = ir_of(qm);
  if (!m || m->diag.failed)
    return -1;
  /* The arrays hold floats: a module whose inputs or outputs are integers
   * (a quantized IR read back) would be read or written past their ends. */
  for (int i = 0; i < m->ninputs + m->noutputs; i++) {
    bool in = i < m->ninputs;
    const IrValue *v = in ? m->inputs[i] : m->outputs[i - m->ninputs];
    const void *p = in ? (inputs ? (const void *)inputs[i] : NULL)
                       : (outputs ? (const void *)outputs[i - m->ninputs] : NULL);
    if (v->type.dtype != IR_F32) {
      ir_error(&m->diag, (IrLoc){0},
               "q8c_run_reference: %s %%%s is %s; it runs models with f32 inputs and outputs",
               in ? "input" : "output", v->name, ir_dtype_name(v->type.dtype));
      return -1;
    }
    if (!p) {
      ir_error(&m->diag, (IrLoc){0}, "q8c_run_reference: no buffer for %s %d (%%%s)",
               in ? "input" : "output", in ? i : i - m->ninputs, v->name);
      return -1;
    }
  }
  if (batch < 1) {
    ir_error(&m->diag, (IrLoc){0}, "q8c_run_reference: the batch size is %lld",
             (long long)batch);
    return -1;
  }
  /* q8c_compile bound `?`: the module's shapes are now those of its batch
   * size, and buffers sized for another would be overrun. */
  if (m->bound_batch && batch != m->bound_batch) {
    ir_error(&m->diag, (IrLoc){0},
             "q8c_run_reference: the module was compiled for the batch size %lld (compiling "
             "binds '?'), not %lld",
             (long long)m->bound_batch, (long long)batch);
    return -1;
  }
  int rc = -1;
  IrTensor *in = calloc((size_t)m->ninputs + 1, sizeof *in);
  IrTensor *out = calloc((size_t)m->noutputs + 1, sizeof *out);
  if (!in || !out)
    goto done;
  for (int i = 0; i < m->ninputs; i++) {
    in[i].type = ir_type_bind(&m->inputs[i]->type, batch);
    in[i].data = (void *)inputs[i];
  }
  if (!ir_interp_f32(m, batch, in, out, NULL, NULL))
    goto done;
  for (int i = 0; i < m->noutputs; i++) {
    int64_t n;
    ir_type_numel(&out[i].type, batch, &n);
    memcpy(outputs[i], out[i].data, (size_t)n * sizeof(float));
  }
  rc = 0;
done:
  for (int i = 0; out && i < m->noutputs; i++)
    free(out[i].data);
  free(in);
  free(out);
  return rc;
}

int q8c_quantize(q8c_module *qm, const q8c_quant_options *qo) {
  IrModule *m = ir_of(qm);
  if (!m || m->diag.failed)
    return -1;
  q8c_quant_options none = {0};
  if (!qo)
    qo = &none;
  PassOptions o;
  pass_options_init(&o);
  char err[256];
  const struct {
    const char *name, *value;
  } set[] = {{"calib", qo->calib_path},     {"calib-method", qo->calib_method},
             {"weights", qo->weights},      {"activations", qo->activations},
             {"keep-float", qo->keep_float}};
  for (size_t i = 0; i < sizeof set / sizeof set[0]; i++)
    if (set[i].value && !pass_options_set(&o, set[i].name, set[i].value, err, sizeof err)) {
      ir_error(&m->diag, (IrLoc){0}, "%s", err);
      return -1;
    }
  o.dynamic = qo->dynamic != 0;
  return pass_run_pipeline(m, &o) ? 0 : -1;
}

static void release_jit(void *jit) { cg_jit_free(jit); }

q8rt_model *q8c_compile(q8c_module *qm, const q8c_compile_options *co) {
  IrModule *m = ir_of(qm);
  if (!m || m->diag.failed)
    return NULL;
  q8c_compile_options none = {0};
  if (!co)
    co = &none;
  CgOptions o = {.opt_level = co->opt_level ? co->opt_level : 3,
                 .batch = co->batch > 0 ? co->batch : 1};
  if (m->bound_batch && o.batch != m->bound_batch) {
    ir_error(&m->diag, (IrLoc){0},
             "q8c_compile: the module was compiled for the batch size %lld already (compiling "
             "binds '?'), not %lld",
             (long long)m->bound_batch, (long long)o.batch);
    return NULL;
  }
  char err[512];
  if (!cg_parse_targets(co->target ? co->target : "native", &o, err, sizeof err)) {
    ir_error(&m->diag, (IrLoc){0}, "target: %s", err);
    return NULL;
  }
  const q8_model_desc *desc;
  CgJit *jit = cg_jit_compile(m, &o, &desc);
  if (!jit)
    return NULL;
  q8rt_model *rt = NULL;
  if (q8rt_model_from_desc(desc, release_jit, jit, &rt, err, sizeof err) != Q8RT_OK) {
    cg_jit_free(jit);
    ir_error(&m->diag, (IrLoc){0}, "%s", err);
    return NULL;
  }
  return rt;
}

void q8c_module_free(q8c_module *m) { ir_module_free(ir_of(m)); }
