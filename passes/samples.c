/* samples.c: reading calibration samples in batches, shared by the calibrate
 * pass and the accuracy report.
 *
 * A .npy is streamed a batch at a time (fe_npy_read_rows), so memory does not
 * grow with the number of samples. A safetensors file (needed for a model
 * with several inputs) is read whole by the loader and sliced. */
#include <stdlib.h>
#include <string.h>

#include "../frontend/frontend.h"
#include "passes.h"

typedef struct {
  IrValue *input;
  bool batch_first;     /* the input's first dim is `?`: rows are batched */
  int64_t row_numel;    /* elements per sample */
  size_t esize;         /* bytes per element: f32, or i32/i64 token ids */
  const char *array;    /* safetensors: the whole array */
  void *buf;            /* one batch */
} Source;

struct PassSamples {
  IrModule *m;
  const char *path;
  IrArena *arena;       /* sources, buffers, and a loaded safetensors file */
  Source *src;
  int64_t nrows, next_row, batch_rows;
  int64_t first, count;  /* the window of rows served (pass_samples_window) */
  bool batched;         /* every input batch-first: run batch_rows at once */
  FeNpyReader npy;
  bool npy_open;
};

/* Check input `v` against its samples' type in the file. */
static bool setup_source(PassSamples *s, Source *src, IrValue *v, const IrType *file_type) {
  IrModule *m = s->m;
  const IrType *t = &v->type;
  char b1[96], b2[96];
  src->input = v;
  src->batch_first = t->rank > 0 && t->dims[0] == IR_DIM_BATCH;
  for (int d = src->batch_first; d < t->rank; d++)
    if (t->dims[d] == IR_DIM_BATCH)
      return ir_error(&m->diag, v->loc,
                      "samples need the batch dimension '?' first in input %%%s (%s)", v->name,
                      ir_type_str(t, b1, sizeof b1));
  if (t->dtype != IR_F32 && t->dtype != IR_I32 && t->dtype != IR_I64)
    return ir_error(&m->diag, v->loc, "samples feed f32, i32 or i64 inputs, but %%%s is %s",
                    v->name, ir_type_str(t, b1, sizeof b1));
  src->esize = ir_dtype_size(t->dtype);
  IrType row = *t;
  if (src->batch_first) {
    row.rank = t->rank - 1;
    memmove(row.dims, t->dims + 1, (size_t)row.rank * sizeof row.dims[0]);
  }
  /* Named dims (f32[B, T, 64]): a sample is one row, [1, 64]. */
  for (int d = 0; d < row.rank; d++)
    if (row.dims[d] == IR_DIM_FOLDED)
      row.dims[d] = 1;
  bool fits = file_type->dtype == t->dtype && file_type->rank == row.rank + 1;
  for (int d = 0; fits && d < row.rank; d++)
    fits = file_type->dims[d + 1] == row.dims[d];
  if (!fits)
    return ir_error(&m->diag, (IrLoc){0},
                    "%s: samples for %%%s are %s; expected %s[N, ...] with one sample of %s "
                    "per row",
                    s->path, v->name, ir_type_str(file_type, b1, sizeof b1), ir_dtype_name(t->dtype),
                    ir_type_str(&row, b2, sizeof b2));
  ir_type_numel(&row, 1, &src->row_numel);
  return true;
}

static bool open_all(PassSamples *s) {
  IrModule *m = s->m;
  char err[512];
  size_t len = strlen(s->path);
  if (len > 4 && strcmp(s->path + len - 4, ".npy") == 0) {
    if (m->ninputs != 1)
      return ir_error(&m->diag, (IrLoc){0},
                      "%s: the model has %d inputs; give their samples as a safetensors file "
                      "of arrays named after them",
                      s->path, m->ninputs);
    if (!fe_npy_open(&s->npy, s->path, err, sizeof err))
      return ir_error(&m->diag, (IrLoc){0}, "%s: %s", s->path, err);
    s->npy_open = true;
    s->nrows = s->npy.type.rank ? s->npy.type.dims[0] : 0;
    return setup_source(s, &s->src[0], m->inputs[0], &s->npy.type);
  }
  FeTensorSet set;
  if (!fe_safetensors_read(s->arena, s->path, &set, err, sizeof err))
    return ir_error(&m->diag, (IrLoc){0}, "%s: %s", s->path, err);
  for (int i = 0; i < m->ninputs; i++) {
    const FeTensor *t = fe_tensorset_find(&set, m->inputs[i]->name);
    if (!t)
      return ir_error(&m->diag, (IrLoc){0}, "%s: no array named '%s' for input %%%s", s->path,
                      m->inputs[i]->name, m->inputs[i]->name);
    if (!setup_source(s, &s->src[i], m->inputs[i], &t->type))
      return false;
    s->src[i].array = t->data;
    if (i == 0)
      s->nrows = t->type.dims[0];
    else if (t->type.dims[0] != s->nrows)
      return ir_error(&m->diag, (IrLoc){0}, "%s: arrays '%s' and '%s' have %lld and %lld samples",
                      s->path, m->inputs[0]->name, m->inputs[i]->name, (long long)s->nrows,
                      (long long)t->type.dims[0]);
  }
  return true;
}

PassSamples *pass_samples_open(IrModule *m, const char *path, int64_t batch_rows) {
  IrArena *a = ir_arena_new();
  PassSamples *s = ir_alloc(a, sizeof *s);
  s->m = m;
  s->path = path;
  s->arena = a;
  s->src = ir_alloc(a, (size_t)(m->ninputs + 1) * sizeof *s->src);
  if (!open_all(s)) {
    pass_samples_close(s);
    return NULL;
  }
  s->batched = true;
  for (int i = 0; i < m->ninputs; i++)
    s->batched = s->batched && s->src[i].batch_first;
  s->batch_rows = s->batched ? batch_rows : 1;
  for (int i = 0; i < m->ninputs; i++) {
    /* Each row fits the memory cap (ir_verify); a batch of them may not. */
    uint64_t rows = (uint64_t)s->batch_rows, row_bytes = (uint64_t)s->src[i].row_numel * s->src[i].esize;
    char err[160];
    if (!ir_bytes_allowed(row_bytes > UINT64_MAX / rows ? UINT64_MAX : rows * row_bytes, err,
                          sizeof err)) {
      ir_error(&m->diag, (IrLoc){0}, "%s: a batch of %lld samples for %%%s %s; lower --calib-batch",
               path, (long long)s->batch_rows, m->inputs[i]->name, err);
      pass_samples_close(s);
      return NULL;
    }
    s->src[i].buf = ir_alloc_data(a, (size_t)(s->batch_rows * s->src[i].row_numel) * s->src[i].esize);
    if (!s->src[i].buf) {
      ir_error(&m->diag, (IrLoc){0}, "out of memory for a batch of samples");
      pass_samples_close(s);
      return NULL;
    }
  }
  if (s->nrows == 0) {
    ir_error(&m->diag, (IrLoc){0}, "%s holds no samples", path);
    pass_samples_close(s);
    return NULL;
  }
  s->first = 0;
  s->count = s->nrows;
  return s;
}

int64_t pass_samples_count(const PassSamples *s) { return s->count; }

int64_t pass_samples_batch(const PassSamples *s) { return s->batched ? s->batch_rows : 1; }

int64_t pass_samples_total(const PassSamples *s) { return s->nrows; }

void pass_samples_window(PassSamples *s, int64_t first, int64_t count) {
  s->first = first < 0 ? 0 : first > s->nrows ? s->nrows : first;
  s->count = count <= 0 || count > s->nrows - s->first ? s->nrows - s->first : count;
}

PassSamples *pass_samples_open_for(IrModule *m, const PassOptions *o) {
  PassSamples *s = pass_samples_open(m, o->calib_path, o->calib_batch > 0 ? o->calib_batch : 16);
  if (s && (o->calib_first > 0 || o->calib_count > 0))
    pass_samples_window(s, o->calib_first, o->calib_count);
  return s;
}

int64_t pass_samples_next(PassSamples *s, IrTensor *inputs) {
  IrModule *m = s->m;
  int64_t got, end = s->first + s->count;
  if (s->npy_open) {
    char err[512];
    /* Rows before the window are read and dropped, a batch at a time. */
    while (s->next_row < s->first) {
      int64_t skip = s->first - s->next_row < s->batch_rows ? s->first - s->next_row
                                                             : s->batch_rows;
      got = fe_npy_read_rows(&s->npy, s->src[0].buf, skip, err, sizeof err);
      if (got <= 0) {
        ir_error(&m->diag, (IrLoc){0}, "%s: %s", s->path, got < 0 ? err : "too few samples");
        return -1;
      }
      s->next_row += got;
    }
    int64_t want = end - s->next_row < s->batch_rows ? end - s->next_row : s->batch_rows;
    got = want > 0 ? fe_npy_read_rows(&s->npy, s->src[0].buf, want, err, sizeof err) : 0;
    if (got < 0) {
      ir_error(&m->diag, (IrLoc){0}, "%s: %s", s->path, err);
      return -1;
    }
    s->next_row += got;
  } else {
    if (s->next_row < s->first)
      s->next_row = s->first;
    got = end - s->next_row < s->batch_rows ? end - s->next_row : s->batch_rows;
    for (int i = 0; i < m->ninputs; i++)
      memcpy(s->src[i].buf,
             s->src[i].array + (size_t)(s->next_row * s->src[i].row_numel) * s->src[i].esize,
             (size_t)(got * s->src[i].row_numel) * s->src[i].esize);
    s->next_row += got;
  }
  for (int i = 0; i < m->ninputs; i++) {
    inputs[i].type = ir_type_bind(&m->inputs[i]->type, got);
    inputs[i].data = s->src[i].buf;
  }
  return got == 0 ? 0 : s->batched ? got : 1;
}

bool pass_samples_rewind(PassSamples *s) {
  s->next_row = 0;
  if (!s->npy_open)
    return true;
  char err[512];
  fe_npy_close(&s->npy);
  s->npy_open = fe_npy_open(&s->npy, s->path, err, sizeof err);
  if (!s->npy_open)
    return ir_error(&s->m->diag, (IrLoc){0}, "%s: %s", s->path, err);
  return true;
}

void pass_samples_close(PassSamples *s) {
  if (!s)
    return;
  if (s->npy_open)
    fe_npy_close(&s->npy);
  ir_arena_free(s->arena);
}
