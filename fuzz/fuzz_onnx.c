/* fuzz_onnx.c: the ONNX importer (fe_onnx_parse) on arbitrary bytes.
 *
 * The input is the model file's bytes, named fuzz/data/model.onnx (external
 * data is not read from memory: a model that asks for it is refused).
 * Properties:
 *
 *   - no crash, hang or sanitizer report on any bytes;
 *   - a refused model has a message that starts "model.onnx: error: ", and
 *     no message reports an internal error;
 *   - an accepted module verifies and prints as text IR that parses back to
 *     the same text (so `q8c import` always writes a file q8c reads). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  fuzz_setup();
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  IrModule *m = fe_onnx_parse("model.onnx", data, size, false, NULL);
  if (m->diag.failed) {
    fuzz_check(strncmp(m->diag.msg, "model.onnx: error: ", 19) == 0, "bad message: %s",
               m->diag.msg);
    fuzz_check(!fuzz_internal_error(m->diag.msg), "internal error: %s", m->diag.msg);
    ir_module_free(m);
    return 0;
  }
  fuzz_check(ir_verify(m), "an imported module does not verify: %s", m->diag.msg);
  /* Constants stay in memory: print without weights, parse back the text
   * of a module without constants only. */
  char *text = ir_print(m);
  fuzz_check(text != NULL, "print failed");
  if (m->nconsts == 0) {
    IrModule *again = fe_parse("model.ir", text);
    fuzz_check(!again->diag.failed, "imported text does not parse: %s\n%s", again->diag.msg, text);
    char *text2 = ir_print(again);
    fuzz_check(text2 && strcmp(text, text2) == 0, "round trip changed the text");
    free(text2);
    ir_module_free(again);
  }
  free(text);
  ir_module_free(m);
  return 0;
}
