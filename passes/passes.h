/* passes.h: IR-to-IR transformations and what they need: the calibration
 * observers, the pass manager, and the quantization passes.
 *
 * The API is grouped by the file that implements it; prefix pass_. */
#ifndef Q8_PASSES_H
#define Q8_PASSES_H

#include "../ir/ir.h"
#include "../ir/wformat.h"

/* ---- observe.c ---- */

/* How an observer turns the values it has seen into a range [lo, hi]. */
typedef enum {
  PASS_CALIB_MINMAX,     /* the smallest and largest finite value seen */
  PASS_CALIB_MA_MINMAX,  /* moving average of per-batch min and max */
  PASS_CALIB_PERCENTILE, /* the P and 100-P percentiles, from the histogram */
  PASS_CALIB_ENTROPY,    /* the threshold minimising KL divergence (TensorRT) */
  PASS_CALIB_MSE,        /* the range minimising the expected squared error */
  PASS_CALIB_AUTO,       /* per activation, the one of minmax, percentile,
                          * entropy and mse whose consuming layer has the best
                          * isolated SQNR on held-back samples (calibrate.c) */
} PassCalibMethod;

typedef struct {
  PassCalibMethod method;
  double momentum;    /* ma-minmax: weight of each new batch, 0 < m <= 1 (default 0.01) */
  double percentile;  /* percentile: P in (50, 100] (e.g. 99.99) */
  int bins;           /* histogram methods: number of bins (default 2048) */
  int levels;         /* quantized levels the range is for: 256 (u8 or s8) */
} PassCalibConfig;

typedef struct PassObserver PassObserver;

/* A new observer; its memory is fixed at creation (the histogram), never
 * growing with the number of values seen. NULL when out of memory. */
PassObserver *pass_observer_new(const PassCalibConfig *cfg);
void pass_observer_free(PassObserver *o);
/* How many passes over the data the method needs: 1 (minmax, ma-minmax) or 2
 * (histogram methods: the first finds min and max, the second fills the
 * histogram over that fixed range). */
int pass_observer_passes(const PassObserver *o);
/* Start the second pass (histogram methods). */
void pass_observer_next_pass(PassObserver *o);
/* Observe one batch of n values. NaN and +-Inf are not part of the range; they
 * are counted and reported by pass_observer_range. */
void pass_observer_update(PassObserver *o, const float *x, int64_t n);
/* The calibrated range. Returns false when no finite value was seen (then
 * lo = hi = 0). `note` receives a remark for the user when something is
 * degenerate ("12 NaN and 3 Inf values ignored", "all values equal 0.5"), or
 * an empty string. */
bool pass_observer_range(const PassObserver *o, float *lo, float *hi, char *note,
                         size_t notelen);

/* ---- manager.c ---- */

/* What the pipeline reports as it runs, through PassOptions.event: a stage
 * (a pass, or "report") beginning and ending, and inside one, how much of its
 * work is done. The library never prints; the driver turns these into a
 * progress line and the --time-passes table. */
typedef enum {
  PASS_EVENT_BEGIN,     /* `stage` starts */
  PASS_EVENT_PROGRESS,  /* `done` of `total` units (samples) are done */
  PASS_EVENT_END,       /* `stage` ended after `seconds` of wall time */
} PassEventKind;

typedef struct {
  PassEventKind kind;
  const char *stage;    /* the pass's name, or "report" */
  int64_t done, total;  /* PROGRESS: samples read so far and in all (a method
                         * that reads the data twice counts them twice) */
  double seconds;       /* END: wall time of the stage */
} PassEvent;

/* A faster way than the interpreter to run the float model over
 * calibration batches, which the layers above passes/ provide (api/jiteval.c:
 * the model compiled in memory, vector code over threads): passes/ cannot
 * include codegen/. It must compute the interpreter's bits (codegen's
 * contract), so the observers see the same values either way; calibrate.c
 * falls back to the interpreter when there is none or it declines. */
typedef struct PassEvaluator {
  /* Prepare to run float module m (not changed; it outlives the handle) on
   * batches of at most `batch` samples, `samples` in all, giving the f32
   * data of vals[0 .. nvals). NULL when it cannot, or judges the
   * interpreter quicker for so little work (then the interpreter runs). */
  void *(*open)(void *user, IrModule *m, IrValue *const *vals, int nvals, int64_t batch,
                int64_t samples);
  /* Run one batch: in[] the inputs as pass_samples_next gives them, `batch`
   * its `?` (pass_samples_next's result). out[i] receives vals[i]'s data,
   * valid until the next run or close. False with a message in err. */
  bool (*run)(void *handle, const IrTensor *in, int64_t batch, const float **out, char *err,
              size_t errlen);
  void (*close)(void *handle);
  void *user;
} PassEvaluator;

typedef struct {
  /* Calibration: samples along the first axis, in a .npy (one input) or a
   * safetensors file of arrays named after the inputs. */
  const char *calib_path;
  PassCalibConfig calib;
  int64_t calib_batch;        /* samples per interpreter run (default 16) */
  /* Runs the float model for calibration instead of the interpreter (NULL:
   * the interpreter). */
  const PassEvaluator *evaluator;
  /* The quantization scheme. */
  bool weights_per_tensor;    /* default: one scale per output channel */
  /* --reduce-range: int8 weights in [-63, 63] and the right operands of
   * qmatmul / qmatmul_dyn in a 7-bit window (b_bits = 7), so that AVX2's
   * vpmaddubsw cannot saturate (docs/quantization.md, "Reduced range"). */
  bool reduce_range;
  /* --weights=nf4:G / fp4:G (W4A32, linear_4bit): 1 + IR_4BIT_NF4 or
   * IR_4BIT_FP4, 0 for int8; G the weights per block maximum; and
   * --double-quant, the maxima quantized to 8 bits in turn. */
  int weights_4bit;
  int64_t weights_block;
  bool double_quant;
  IrWSpec weights_spec;       /* --weights as a format (ir/wformat.h) */
  const char *weights_for;    /* --weights-for: "@name:FORMAT[,...]" overrides */
  IrDType activations;        /* IR_U8 asymmetric (default) or IR_I8 symmetric */
  bool dynamic;               /* activations quantized per row at run time */
  /* --outliers[=THRESHOLD] (implies dynamic): linear layers become
   * qlinear_outl, input columns with some |x| >= outliers computed in f32
   * (LLM.int8); 0: off. */
  double outliers;
  const char *keep_float;     /* comma-separated value or weight names kept in f32 */
  /* --smooth[=ALPHA]: SmoothQuant before calibration (smooth.c). */
  bool smooth;
  double smooth_alpha;        /* in [0, 1] (default 0.5) */
  /* Mixed precision under a budget (autopilot.c): the fewest layers in f32
   * such that the outputs meet these on the check samples. */
  bool has_target_sqnr, has_max_top1_drop;
  double target_sqnr;         /* dB, each output's SQNR */
  double max_top1_drop;       /* percent: 100 - top-1 agreement, each output */
  /* The window of calibration samples the passes read: rows [calib_first,
   * calib_first + calib_count) of calib_path (count 0: to the end). The
   * autopilot and --calib-method=auto narrow it to the fit samples. */
  int64_t calib_first, calib_count;
  /* Decisions the passes made (what smoothing folded, the method auto
   * calibration chose, the layers kept in f32), one line each, for the
   * report; NULL: not kept. */
  SupBuf *decisions;
  /* When not NULL, the smooth pass leaves here a copy of the float model it
   * smoothed (replacing and freeing one already there), for the report to
   * measure each layer against what it computes. */
  IrModule **smoothed;
  /* Pipeline control: comma-separated pass names. */
  const char *print_before, *print_after, *stop_after;
  bool print_after_all;
  const char *dump_dir;       /* one NN-pass.ir (+ .safetensors) per pass */
  /* Where text goes: IR asked for by --print-*, and remarks for the user
   * (degenerate ranges, all-zero weight channels). */
  void (*print)(void *user, const char *text);
  void (*note)(void *user, const char *text);
  /* Stages, their progress and wall times (NULL: none are reported). */
  void (*event)(void *user, const PassEvent *e);
  void *user;
  bool quiet;        /* -q: no notes and no PASS_EVENT_PROGRESS (BEGIN and END
                      * still come, for --time-passes) */
  bool time_passes;  /* --time-passes: the caller wants the wall-time table */
} PassOptions;

void pass_options_init(PassOptions *o);
/* Set one option by its command-line name without the dashes ("calib",
 * "calib-method", "calib-momentum", "calib-batch", "weights", "activations",
 * "keep-float", "target-sqnr", "max-top1-drop", "print-before",
 * "print-after", "stop-after", "dump-dir"; "dynamic", "print-after-all",
 * "double-quant" and "time-passes" take no value; "smooth" may take one,
 * alpha, or NULL; "outliers" likewise, a threshold (6 when NULL)). Returns false with a
 * message in err for a bad value, and also when the name is not an option
 * (err then empty). `value` must outlive the options. */
bool pass_options_set(PassOptions *o, const char *name, const char *value, char *err,
                      size_t errlen);
/* 0: not a pipeline option; 1: a flag; 2: an option that takes a value;
 * 3: a flag that may take one (smooth). */
int pass_option_kind(const char *name);
/* Check that every pass named in the options exists (message in m->diag). */
bool pass_check_options(IrModule *m, const PassOptions *o);
/* Run the passes from `first` to the end, verifying after each, with no
 * printing, dumping or events (the autopilot's trials). */
bool pass_run_from(IrModule *m, const PassOptions *o, const char *first);
/* Run the pipeline (up to stop_after), verifying after every pass. */
bool pass_run_pipeline(IrModule *m, const PassOptions *o);
int pass_count(void);
const char *pass_name(int i);
const char *pass_description(int i);
/* A remark for the user, through o->note (printf-style); none when o->quiet. */
void pass_note(const PassOptions *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* A line of o->decisions (printf-style, no newline); none when it is NULL. */
void pass_decision(const PassOptions *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Report that `done` of `total` samples of stage `stage` are done, through
 * o->event; nothing when o->quiet. */
void pass_progress(const PassOptions *o, const char *stage, int64_t done, int64_t total);
/* Report a stage beginning or ending (PASS_EVENT_BEGIN or _END), with its
 * wall time for END. The pipeline does it for every pass; the driver for
 * what it runs after (report, codegen). */
void pass_stage(const PassOptions *o, PassEventKind kind, const char *stage, double seconds);
/* Wall-clock seconds from a fixed point (CLOCK_MONOTONIC), to time stages. */
double pass_clock(void);
/* Write the module as text IR at `ir_path`, with every constant it uses in a
 * safetensors file beside it (same name, .safetensors) that the text names,
 * so the file parses back on its own. */
bool pass_write_module(IrModule *m, const char *ir_path, char *err, size_t errlen);

/* ---- clone.c ---- */

/* A copy of m (its own arena; constants' data shared with m, which must
 * outlive it). */
IrModule *pass_clone_module(IrModule *m);

/* ---- the passes (one file each) ---- */

bool pass_verify(IrModule *m, const PassOptions *o);
bool pass_infer_shapes(IrModule *m, const PassOptions *o);
bool pass_smooth(IrModule *m, const PassOptions *o);
/* smooth_attn.c: when x [.., C] is attention's heads merged back,
 * reshape(transpose(matmul(P, transpose(reshape(v))))), with one use of each
 * value in the chain, the linear (or matmul by a constant) whose outputs
 * [*off, *off + c) are v (v itself, or a slice of a fused projection whose
 * other uses are slices of other rows), else NULL. */
IrNode *pass_smooth_through_attention(const IrModule *m, const IrValue *x, int64_t c,
                                      int64_t *off);
bool pass_autopilot(IrModule *m, const PassOptions *o);
bool pass_calibrate(IrModule *m, const PassOptions *o);
bool pass_quantize(IrModule *m, const PassOptions *o);
bool pass_fuse_requant(IrModule *m, const PassOptions *o);
bool pass_fold_constants(IrModule *m, const PassOptions *o);
/* autocalib.c: --calib-method=auto for the activations `want` (calibrate
 * calls it): each gets the range of the method its consuming layer
 * measures best on held-back samples. */
bool pass_calibrate_auto(IrModule *m, const PassOptions *o, IrValue **want, int nwant);
/* calibrate.c: how many activations the calibrate pass would need data for
 * (those a quantizable op uses without a range in the IR); 0 when the model
 * can be quantized statically without samples. */
int pass_unranged_activations(IrModule *m, const PassOptions *o);

/* ---- samples.c ---- */

/* Calibration samples, streamed batch by batch: a .npy for a model with one
 * input, or a safetensors file with one array per input, named after it. The
 * first axis counts samples; the rest is one sample of the input's shape
 * without `?` (or the whole shape, when the input has no `?`: then each
 * sample runs alone with batch 1). */
typedef struct PassSamples PassSamples;

/* NULL with a message in m->diag when the file does not fit the model. */
PassSamples *pass_samples_open(IrModule *m, const char *path, int64_t batch_rows);
/* The next batch as one tensor per model input (valid until the next call);
 * returns the batch size to run with, 0 at the end, -1 on error (m->diag). */
int64_t pass_samples_next(PassSamples *s, IrTensor *inputs);
bool pass_samples_rewind(PassSamples *s);
/* The samples served: the window's (all of the file's by default). */
int64_t pass_samples_count(const PassSamples *s);
/* The largest batch pass_samples_next returns: the `?` of a full batch (1
 * when the samples run one at a time). */
int64_t pass_samples_batch(const PassSamples *s);
/* The samples in the file. */
int64_t pass_samples_total(const PassSamples *s);
/* Serve only rows [first, first + count) (count <= 0: to the end), clamped
 * to the file; from the start of the window on the next read and after
 * every rewind. */
void pass_samples_window(PassSamples *s, int64_t first, int64_t count);
/* Open o->calib_path with o->calib_batch rows a batch and o's window
 * (calib_first, calib_count). */
PassSamples *pass_samples_open_for(IrModule *m, const PassOptions *o);
void pass_samples_close(PassSamples *s);

/* ---- rowwise.c ---- */

/* Whether row r of every value with the batch dim `?` depends only on row
 * r of the inputs (conservative: no when unsure), so that a model may run
 * more rows at once, or padded rows, with the same bits in each row. */
bool pass_rows_independent(const IrModule *m);

/* ---- report.c ---- */

/* The report's forms: a table for people, JSON for tools, or one
 * self-contained HTML page (inline CSS and SVG chart, no external resource). */
typedef enum { PASS_REPORT_TEXT, PASS_REPORT_JSON, PASS_REPORT_HTML } PassReportFormat;

/* Measure the quantized module `q` against the float module `ref` on the
 * calibration samples (o->calib_path): for each layer (quantized ops qgemm,
 * qlinear, qlinear_dyn, and the linear and matmul-by-a-constant left in f32),
 * SQNR, max abs error and cosine similarity of its output against the float
 * value it replaces, propagated (the int8 model end to end) and isolated (the
 * op alone, fed the float model's input); its scales and zero points and the
 * bytes of its constants; for each model output, SQNR, cosine and top-1
 * agreement (argmax over the last axis, per row); the model size in f32 and
 * int8; the q8c version and the options. Progress goes to o->event as stage
 * "report". Returns malloc'd text in `format`, or NULL with a message in
 * q->diag. */
char *pass_report(IrModule *ref, IrModule *q, const PassOptions *o, PassReportFormat format);

/* What pass_measure finds: the report's figures without the text. */
typedef struct {
  const char *name;      /* the layer's result in q */
  bool quantized;        /* an int8 op (else a layer left in f32) */
  int64_t bytes;         /* its constants in q */
  double iso_sqnr, prop_sqnr;  /* dB; inf when exact, NaN with nothing to measure */
} PassLayerMeasure;

typedef struct {
  double sqnr;           /* dB */
  double top1;           /* agreement, a fraction (NaN: no rows) */
} PassOutputMeasure;

typedef struct {
  int64_t samples;
  int nlayers, noutputs;
  PassLayerMeasure *layers;     /* malloc'd, by depth */
  PassOutputMeasure *outputs;   /* malloc'd, in the model's order */
  int64_t f32_bytes, bytes;     /* constants of ref and of q */
} PassMeasure;

/* The report's measurement (see pass_report) on the samples of o's window,
 * into *pm (free with pass_measure_free). False with a message in q->diag. */
bool pass_measure(IrModule *ref, IrModule *q, const PassOptions *o, PassMeasure *pm);
void pass_measure_free(PassMeasure *pm);

/* ---- select.c ---- */

/* Will the quantize pass turn this node into an int8 op? linear, and matmul
 * whose right operand is a rank-2 constant, on f32, unless kept in float by
 * --keep-float (the result's name or the weight's); and a matmul of two
 * activations with equal leading dims (a qmatmul), unless --keep-float
 * names its result. */
bool pass_is_quantizable(const IrModule *m, const IrNode *n, const PassOptions *o);
/* Is `n` a matmul of two f32 activations (neither operand a constant)? If
 * so, *fits says whether it has qmatmul's form: the same rank and the same
 * leading dims (pass_is_quantizable then depends on --keep-float only). */
bool pass_is_act_matmul(const IrNode *n, bool *fits);
/* Is `name` listed in the comma-separated `list`? */
bool pass_name_listed(const char *list, const char *name);
/* The weight of a quantizable node as [N, K] f32 (a matmul's B transposed,
 * into arena memory); *n_out, *k_out receive N and K. */
const float *pass_weight_nk(IrModule *m, const IrNode *n, int64_t *n_out, int64_t *k_out);

/* ---- wformat.c: weight formats (docs/quantization.md, "Weight formats") ---- */
/* Whether v is a valid --weights-for list; err says why not. */
bool pass_weights_for_check(const char *v, char *err, size_t errlen);
/* The format of weight `weight` (its name without '@'): its --weights-for
 * entry, else --weights. */
IrWSpec pass_weight_spec(const PassOptions *o, const char *weight);
/* Whether weight `weight` has a --weights-for entry: it takes that format
 * even under --weights=nf4:G or fp4:G. */
bool pass_weight_overridden(const PassOptions *o, const char *weight);
/* Whether quantizable node n (a linear or matmul by a constant) has a
 * weight in a grouped format: it quantizes its activations at run time and
 * needs no calibration. */
bool pass_node_grouped(const IrModule *m, const IrNode *n, const PassOptions *o);
/* Append n's qlinear_grp to out[] and set *done; *done false (nothing
 * appended, a note given) when K is not a multiple of the group. */
bool pass_quantize_grouped(IrModule *m, const PassOptions *o, IrNode *n, IrNode **out,
                           int *nout, bool *done);
/* Bits per weight of quantized layer n with a constant [N, K] weight,
 * scales and zero points included (qlinear_grp: its packed form; the int8
 * layers: 8 plus their f32 scales); *bytes (when not NULL) the compiled
 * size of qlinear_grp's constants, -1 for the others. */
double pass_layer_bits_per_weight(const IrNode *n, int64_t *bytes);
#endif
