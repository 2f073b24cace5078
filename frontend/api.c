/* api.c: the public compiler API (include/q8c.h) over the internal layers.
 *
 * q8c_module is the IrModule itself, kept opaque so that the IR can change
 * without breaking embedding applications. Each entry point checks its
 * arguments, because a library must not crash on a caller's mistake. */
#include <stdlib.h>
#include <string.h>

#include "frontend.h"
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
  if (!m || m->diag.failed || !inputs || !outputs || batch < 1)
    return -1;
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

void q8c_module_free(q8c_module *m) { ir_module_free(ir_of(m)); }
