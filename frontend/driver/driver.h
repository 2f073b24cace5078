/* driver.h: what the two halves of the `q8c` command share: the parsed
 * command line, exit statuses, and the entry of `q8c run`.
 *
 *   main.c  arguments, `q8c MODEL.ir` (the pass pipeline, then the output)
 *   run.c   `q8c run` (the interpreter, the JIT, or a compiled .so)
 *
 * The driver is the only code that prints to stderr and picks an exit status:
 * 0 success, 1 an error in the input, 2 a usage error. */
#ifndef Q8_DRIVER_H
#define Q8_DRIVER_H

#include "../../passes/passes.h"
#include "../frontend.h"

enum { EXIT_INPUT = 1, EXIT_USAGE = 2, MAX_FILES = 64 };

/* -i / -o arguments: "NAME=PATH" or "PATH". */
typedef struct {
  const char *name;  /* NULL when given without NAME= */
  const char *path;
  char name_buf[128];
} FileArg;

typedef struct {
  bool run;
  bool import;        /* `q8c import MODEL -o OUT.ir`: the model as text IR */
  bool jit;           /* run: compile in memory instead of interpreting */
  bool quantized;     /* run: the quantized entry (inputs and outputs in their
                       * quantized form where they have one) */
  const char *model;
  const char *emit;
  int64_t batch;      /* 0 = not given */
  const char *report; /* NULL, "text" or "json" */
  const char *target; /* --target, default "native" */
  int opt_level;      /* -O0..-O3, default 3 */
  bool list_passes;
  PassOptions pass;
  FileArg inputs[MAX_FILES], outputs[MAX_FILES];
  int ninputs, noutputs;
} Options;

/* main.c: print a module's first error; returns EXIT_INPUT. */
int driver_fail(const IrModule *m);

/* run.c: `q8c run MODEL` with the parsed options; returns the exit status. */
int driver_run(const Options *o);

#endif
