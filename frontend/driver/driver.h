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
  bool jit;           /* run: compile in memory instead of interpreting */
  bool quantized;     /* run: the quantized entry (inputs and outputs in their
                       * quantized form where they have one) */
  const char *model;
  const char *emit;
  int64_t batch;      /* 0 = not given */
  const char *report; /* NULL, "text", "json" or "html" */
  const char *target; /* --target, default "native" */
  int opt_level;      /* -O0..-O3, default 3 */
  bool list_passes;
  PassOptions pass;
  FileArg inputs[MAX_FILES], outputs[MAX_FILES];
  int ninputs, noutputs;
} Options;

/* progress.c: the progress line and the stage times (--time-passes). */
enum { DRIVER_MAX_STAGES = 64 };

typedef struct {
  const PassOptions *opts;  /* read for `quiet` */
  bool tty;                 /* stderr is a terminal: progress is shown */
  bool line_open;           /* a progress line is up, without its newline */
  bool progressed;          /* the current stage reported progress */
  int draws;                /* progress lines drawn for the current stage */
  double begin, last_draw;  /* the current stage's start; the last redraw */
  int64_t done, total;      /* the current stage's last progress */
  struct {
    char name[32];
    double seconds;
  } stages[DRIVER_MAX_STAGES];
  int nstages;
} DriverProgress;

/* Route o's print, note and event callbacks to `p` (which must outlive the
 * run): notes and IR to stderr, progress on a terminal, times recorded. */
void driver_progress_attach(DriverProgress *p, PassOptions *o);
/* The --time-passes table of every stage that ended, to stderr. */
void driver_print_timing(const DriverProgress *p);

/* main.c: print a module's first error; returns EXIT_INPUT. */
int driver_fail(const IrModule *m);

/* run.c: `q8c run MODEL` with the parsed options; returns the exit status. */
int driver_run(const Options *o);

#endif
