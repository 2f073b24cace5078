/* fuzz_parse.c: the text-IR parser on arbitrary text, and what follows a
 * successful parse.
 *
 * The input is model text, parsed as fuzz/data/model.ir, so that `weights`
 * lines resolve against the committed weights files there (the float ones
 * of the golden tests, and quantized dumps: fuzz/data/README.md). Properties:
 *
 *   - no crash, hang or sanitizer report on any text;
 *   - a failed parse has a message that starts "fuzz/data/model.ir:";
 *   - a module that parses prints as text that parses back to the same text
 *     (the round trip the golden tests rely on);
 *   - when the model is small, the reference interpreter runs it without a
 *     crash (it may refuse it with a message), and so do the quantization
 *     pipeline (dynamic, or from the ranges the text gives) and the
 *     interpreter on the quantized module. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "passes/passes.h"

static char model_path[4096];

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  fuzz_setup();
  snprintf(model_path, sizeof model_path, "%s/model.ir", fuzz_data_dir());
  return 0;
}

/* Work the interpreter would do with the batch size 2: elements produced,
 * times K for the ops that reduce over it. A cap keeps each input fast. */
static double cost(const IrModule *m) {
  double c = 0;
  for (int i = 0; i < m->nnodes; i++) {
    const IrNode *n = m->nodes[i];
    int64_t numel;
    if (!ir_type_numel(&n->result->type, 2, &numel))
      return 1e300;
    double k = 1;
    if (n->nopnds > 0 && n->opnds[0]->type.rank > 0)
      k = (double)n->opnds[0]->type.dims[n->opnds[0]->type.rank - 1];
    c += (double)numel * (k > 1 ? k : 1);
  }
  for (int i = 0; i < m->ninputs; i++) {
    int64_t numel;
    if (!ir_type_numel(&m->inputs[i]->type, 2, &numel))
      return 1e300;
    c += (double)numel;
  }
  return c;
}

/* Run the interpreter with batch 2 on a fixed pattern; the outputs must have
 * the types the module gives them when it succeeds. */
static void interpret(IrModule *m) {
  IrTensor *in = calloc((size_t)m->ninputs + 1, sizeof *in);
  IrTensor *out = calloc((size_t)m->noutputs + 1, sizeof *out);
  bool ok = true;
  for (int i = 0; i < m->ninputs; i++) {
    int64_t numel;
    in[i].type = ir_type_bind(&m->inputs[i]->type, 2);
    fuzz_check(ir_type_numel(&in[i].type, 2, &numel), "input size");
    size_t es = ir_dtype_size(in[i].type.dtype);
    unsigned char *p = malloc((size_t)numel * (es ? es : 1) + 1);
    for (int64_t j = 0; j < numel * (int64_t)es; j++)
      p[j] = (unsigned char)(j * 37 + 11);
    /* f32 inputs: small finite values, with a NaN and an infinity. */
    if (in[i].type.dtype == IR_F32)
      for (int64_t j = 0; j < numel; j++)
        ((float *)p)[j] = j == 3 ? 0.0f / 0.0f : j == 5 ? -1.0f / 0.0f : (float)(j % 7) - 3.0f;
    in[i].data = p;
  }
  if (ok && ir_interp_f32(m, 2, in, out, NULL, NULL)) {
    for (int i = 0; i < m->noutputs; i++) {
      IrType want = ir_type_bind(&m->outputs[i]->type, 2);
      fuzz_check(ir_type_equal(&out[i].type, &want), "output %d has another type", i);
      free(out[i].data);
    }
  } else {
    fuzz_check(m->diag.failed && m->diag.msg[0], "the interpreter failed without a message");
  }
  for (int i = 0; i < m->ninputs; i++)
    free(in[i].data);
  free(in);
  free(out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size > 1 << 16)
    return 0;
  char *text = fuzz_cstr(data, size);
  IrModule *m = fe_parse(model_path, text);
  free(text);
  if (m->diag.failed) {
    fuzz_check(strncmp(m->diag.msg, model_path, strlen(model_path)) == 0 &&
                   m->diag.msg[strlen(model_path)] == ':',
               "error without the file's position: %s", m->diag.msg);
    ir_module_free(m);
    return 0;
  }

  /* Round trip: print, parse, print the same text. */
  char *printed = ir_print(m);
  fuzz_check(printed != NULL, "ir_print failed");
  IrModule *again = fe_parse(model_path, printed);
  fuzz_check(!again->diag.failed, "the printed module does not parse: %s\n%s", again->diag.msg,
             printed);
  char *reprinted = ir_print(again);
  fuzz_check(reprinted && strcmp(printed, reprinted) == 0,
             "the printed module prints differently after a round trip:\n%s\n---\n%s", printed,
             reprinted ? reprinted : "(null)");
  free(printed);
  free(reprinted);
  ir_module_free(again);

  if (cost(m) <= 1e6) {
    interpret(m);
    if (!m->diag.failed) {
      PassOptions o;
      pass_options_init(&o);
      o.dynamic = size % 2 == 0;
      o.activations = size % 3 == 0 ? IR_I8 : IR_U8;
      o.weights_per_tensor = size % 5 == 0;
      if (pass_run_pipeline(m, &o))
        interpret(m);
      else
        fuzz_check(m->diag.msg[0] && !fuzz_internal_error(m->diag.msg),
                   "the pipeline failed: %s", m->diag.msg);
    }
  }
  ir_module_free(m);
  return 0;
}
