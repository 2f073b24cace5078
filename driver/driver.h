/* driver.h: what the parts of the `q8c` command share: the parsed command
 * line, exit statuses, standard input and output as files, and the entry of
 * each subcommand.
 *
 *   main.c   the option table, parsing, --help, `q8c MODEL.ir` (the pass
 *            pipeline, then the output)
 *   run.c    `q8c run` (the interpreter, the JIT, or a compiled .so)
 *   info.c   `q8c info` (what a model library holds)
 *   bench.c  `q8c bench` (latency and throughput of a model)
 *   files.c  '-' for standard input and output, temporary files
 *
 * The driver is the only code that prints to stderr and picks an exit status:
 * 0 success, 1 an error in the input, 2 a usage error. */
#ifndef Q8_DRIVER_H
#define Q8_DRIVER_H

#include "../passes/passes.h"
#include "../frontend/frontend.h"
#include "q8rt.h"

enum { EXIT_INPUT = 1, EXIT_USAGE = 2, MAX_FILES = 64 };

/* The subcommands; CMD_COMPILE is `q8c MODEL.ir`. */
typedef enum { CMD_COMPILE, CMD_RUN, CMD_BENCH, CMD_INFO, CMD_IMPORT } Command;

/* -i / -o arguments: "NAME=PATH" or "PATH" ("-": standard input or output). */
typedef struct {
  const char *name;  /* NULL when given without NAME= */
  const char *path;
  char name_buf[128];
} FileArg;

typedef struct {
  Command cmd;
  bool jit;           /* run: compile in memory instead of interpreting */
  bool quantized;     /* run: the quantized entry (inputs and outputs in their
                       * quantized form where they have one) */
  bool quiet;         /* -q: no notes (and no progress, through pass.quiet) */
  const char *model;  /* "-": standard input */
  const char *emit;
  int64_t batch;      /* 0 = not given */
  int64_t max_batch;  /* --max-batch, 0 = not given */
  const char *report; /* NULL, "text", "json" or "html" */
  const char *target; /* --target, default "native" */
  const char *weights_out; /* --weights-out FILE, or NULL */
  int opt_level;      /* -O0..-O3, default 3 */
  bool list_passes;
  bool list_targets;
  int threads;        /* bench: 0 = the runtime's default */
  int warmup, runs;   /* bench: -1 = not given */
  bool json;          /* bench: JSON instead of a table */
  PassOptions pass;
  FileArg inputs[MAX_FILES], outputs[MAX_FILES];
  int ninputs, noutputs;
  FeDims dims;        /* --dim NAME=N: an ONNX model's symbolic dims */
  FeDims max_dims;    /* --max-dim NAME=N: a named dim's largest value */
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
  double rate_begin;        /* its first progress report: where rates count from */
  int64_t done, total;      /* the current stage's last progress */
  double slow_stage;        /* a stage this long leaves a line with its time */
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
/* main.c: print "q8c: error: MESSAGE" and the --help hint; returns EXIT_USAGE. */
int driver_usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* main.c: parse MODEL.ir, or `text` (standard input, already read) when the
 * path is "-". NULL only when out of memory (after printing why). */
/* --max-dim into CgOptions' max_dim_names / max_dim_values (each NAME one
 * of m's named dims; else a usage error printed, false). */
bool driver_max_dims(const Options *o, const IrModule *m, int *n, const char **names,
                     int64_t *values);
IrModule *driver_parse(const char *path, const char *text, const FeDims *dims);

/* run.c: `q8c run MODEL` with the parsed options; returns the exit status. */
int driver_run(const Options *o);
/* run.c: the descriptor's tensor as an IrType at the f32 or the quantized
 * entry, for messages and .npy files. */
IrType driver_desc_type(const q8_tensor_desc *d, bool quantized);

/* formnote.c: on a best variant of AVX2's vpmaddubsw form without
 * --reduce-range, a note on stderr of how many int8 GEMMs take the widened
 * form (none: nothing). */
void driver_form_note(const IrModule *m, int best_isa /* CgIsa */, const PassOptions *po);

/* info.c: `q8c info MODEL.so`. */
int driver_info(const Options *o);

/* bench.c: `q8c bench MODEL`. */
int driver_bench(const Options *o);

/* files.c: standard input is read once, whoever asks for it. */
/* The whole of standard input (NUL-terminated; *len without the NUL), read
 * on the first call and kept; NULL with a message printed on a read error. */
const char *driver_stdin_text(size_t *len);
/* Standard input copied to a temporary file (removed at exit) whose suffix
 * says what it holds (".npy" when it starts with the .npy magic, else
 * ".safetensors"), for readers that take a path; NULL after printing why. */
const char *driver_stdin_file(void);
/* A new empty temporary file ending in `suffix`, removed at exit; NULL after
 * printing why. */
const char *driver_temp_file(const char *suffix);
/* Copy the file at `path` to standard output; false after printing why. */
bool driver_copy_to_stdout(const char *path);
/* Is `path` "-" (standard input or output)? */
bool driver_is_stdio(const char *path);
/* How a library written to `lib` records its weights file `weights`
 * (--weights-out): the file's name when both are in one directory (the
 * pair moves together), else its absolute path. False with errno when a
 * directory cannot be resolved. */
bool driver_weights_name(const char *lib, const char *weights, char *out, size_t size);

#endif
