/* shapes.c: running a model at the batch of its inputs. A model compiled
 * without --batch (q8_model_desc.max_batch > 0) binds its `?` dims at each
 * call: q8rt_run_dims reads the batch from the inputs' shapes, checks every
 * other dim against the descriptor and the batch against 1 and max_batch,
 * and calls the entry with it (model.c sizes the scratch for it). With
 * named dims (nnamed > 0, `f32[B, T, 64]`) it reads each one's value, checks
 * it against 1, its --max-dim and the other inputs, and the entry takes
 * the product (B x T rows, at most max_batch). */
#include <stdint.h>
#include <stdio.h>

#include "internal.h"

Q8RT_API int64_t q8rt_max_batch(const q8rt_model *m) {
  return m ? q8rt_desc(m)->max_batch : -1;
}

Q8RT_API int q8rt_tensor_dims(const q8_tensor_desc *t, int64_t batch, int64_t *dims) {
  if (!t || !dims || t->rank < 0 || t->rank > Q8_MODEL_MAX_RANK)
    return -1;
  for (int d = 0; d < t->rank; d++)
    dims[d] = (t->batch_dims >> d & 1u) ? batch : t->dims[d];
  return t->rank;
}

Q8RT_API int q8rt_tensor_dims_named(const q8rt_model *m, const q8_tensor_desc *t,
                                    const int64_t *values, int64_t *dims) {
  if (!m || !t || !values || !dims || t->rank < 0 || t->rank > Q8_MODEL_MAX_RANK)
    return -1;
  int k = q8rt_desc(m)->nnamed;
  for (int d = 0; d < t->rank; d++)
    dims[d] = (t->batch_dims >> d & 1u) ? (k > 0 ? values[d < k ? d : 0] : values[0]) : t->dims[d];
  return t->rank;
}

/* "[?, 64]" or "[B, T, 64]" for the model's shape (batch dims as ? or
 * their names), "[7, 65]" for a caller's. */
static void shape_str(const q8_model_desc *md, const q8_tensor_desc *t, const int64_t *dims,
                      char *buf, size_t n) {
  size_t len = 0;
  len += (size_t)snprintf(buf, n, "[");
  for (int d = 0; d < t->rank && len < n; d++) {
    const char *sep = d ? ", " : "";
    if (!dims && (t->batch_dims >> d & 1u) && d < md->nnamed)
      len += (size_t)snprintf(buf + len, n - len, "%s%s", sep, md->named[d]);
    else if (!dims && (t->batch_dims >> d & 1u))
      len += (size_t)snprintf(buf + len, n - len, "%s?", sep);
    else
      len += (size_t)snprintf(buf + len, n - len, "%s%lld", sep,
                              (long long)(dims ? dims[d] : t->dims[d]));
  }
  if (len < n)
    snprintf(buf + len, n - len, "]");
}

/* q8rt_run_dims with named dims: each one's value read from the inputs. */
static q8rt_status run_named(q8rt_model *m, bool quantized, const char *fn,
                             const q8_model_desc *d, const void *const *inputs,
                             const int64_t *const *input_dims, int noutputs,
                             void *const *outputs, char *err, size_t errlen) {
  int64_t value[Q8_MODEL_MAX_RANK];
  int from[Q8_MODEL_MAX_RANK]; /* the input each value was read from, or -1 */
  int k = d->nnamed;
  for (int j = 0; j < k; j++)
    from[j] = -1, value[j] = 1;
  char got[160], want[160];
  for (int i = 0; i < d->ninputs; i++) {
    const q8_tensor_desc *t = &d->inputs[i];
    const int64_t *dims = input_dims[i];
    if (!dims && t->rank > 0)
      return q8rt_fail(Q8RT_ERR_ARG, err, errlen, "%s: input_dims[%d] ('%s') is NULL", fn, i,
                       t->name);
    for (int j = 0; j < t->rank; j++) {
      if (t->batch_dims >> j & 1u)
        continue;
      if (dims[j] != t->dims[j]) {
        shape_str(d, t, dims, got, sizeof got);
        shape_str(d, t, NULL, want, sizeof want);
        return q8rt_fail(Q8RT_ERR_SHAPE, err, errlen, "%s: input '%s' is %s but the model takes %s",
                         fn, t->name, got, want);
      }
    }
    for (int j = 0; j < k && j < t->rank; j++) {
      if (!(t->batch_dims >> j & 1u))
        continue;
      shape_str(d, t, dims, got, sizeof got);
      if (dims[j] < 1)
        return q8rt_fail(Q8RT_ERR_SHAPE, err, errlen, "%s: input '%s' is %s: %s must be at least 1",
                         fn, t->name, got, d->named[j]);
      if (dims[j] > d->named_max[j])
        return q8rt_fail(Q8RT_ERR_SHAPE, err, errlen,
                         "%s: input '%s' is %s: %s = %lld is above the model's maximum %lld "
                         "(--max-dim %s=%lld)",
                         fn, t->name, got, d->named[j], (long long)dims[j],
                         (long long)d->named_max[j], d->named[j], (long long)d->named_max[j]);
      if (from[j] >= 0 && dims[j] != value[j])
        return q8rt_fail(Q8RT_ERR_SHAPE, err, errlen,
                         "%s: input '%s' has %s = %lld but input '%s' has %lld", fn, t->name,
                         d->named[j], (long long)dims[j], d->inputs[from[j]].name,
                         (long long)value[j]);
      value[j] = dims[j];
      from[j] = i;
    }
  }
  /* The rows: the product, at most max_batch (and what int64 holds). */
  int64_t rows = 1;
  bool over = false;
  for (int j = 0; j < k; j++) {
    over |= value[j] > INT64_MAX / rows;
    rows = over ? INT64_MAX : rows * value[j];
  }
  if (over || rows > d->max_batch) {
    size_t len = 0;
    for (int j = 0; j < k && len < sizeof want; j++)
      len += (size_t)snprintf(want + len, sizeof want - len, "%s%s = %lld", j ? ", " : "",
                              d->named[j], (long long)value[j]);
    char count[32];
    snprintf(count, sizeof count, over ? "more than 2^63" : "%lld", (long long)rows);
    return q8rt_fail(Q8RT_ERR_SHAPE, err, errlen,
                     "%s: %s make %s rows, above the model's maximum %lld (--max-batch)", fn,
                     want, count, (long long)d->max_batch);
  }
  return q8rt_run_entry(m, quantized, rows, fn, d->ninputs, inputs, noutputs, outputs, err,
                        errlen);
}

static q8rt_status run_dims(q8rt_model *m, bool quantized, int ninputs, const void *const *inputs,
                            const int64_t *const *input_dims, int noutputs,
                            void *const *outputs, char *err, size_t errlen) {
  const char *fn = quantized ? "q8rt_run_quantized_dims" : "q8rt_run_dims";
  if (!m)
    return q8rt_fail(Q8RT_ERR_ARG, err, errlen, "%s: model is NULL", fn);
  const q8_model_desc *d = q8rt_desc(m);
  if (ninputs != d->ninputs)
    return q8rt_fail(Q8RT_ERR_SHAPE, err, errlen, "%s: %d input%s given, the model has %d", fn,
                     ninputs, ninputs == 1 ? "" : "s", (int)d->ninputs);
  if (d->ninputs > 0 && !input_dims)
    return q8rt_fail(Q8RT_ERR_ARG, err, errlen, "%s: input_dims is NULL (the model has %d)", fn,
                     (int)d->ninputs);
  if (d->max_batch > 0 && d->nnamed > 0)
    return run_named(m, quantized, fn, d, inputs, input_dims, noutputs, outputs, err, errlen);
  int64_t batch = 0;
  int from = -1; /* the input the batch was read from */
  for (int i = 0; i < d->ninputs; i++) {
    const q8_tensor_desc *t = &d->inputs[i];
    const int64_t *dims = input_dims[i];
    if (!dims && t->rank > 0)
      return q8rt_fail(Q8RT_ERR_ARG, err, errlen, "%s: input_dims[%d] ('%s') is NULL", fn, i,
                       t->name);
    char got[160], want[160];
    for (int k = 0; k < t->rank; k++) {
      bool is_batch = d->max_batch > 0 && (t->batch_dims >> k & 1u);
      if (!is_batch && dims[k] != t->dims[k]) {
        shape_str(d, t, dims, got, sizeof got);
        shape_str(d, t, d->max_batch > 0 ? NULL : dims, want, sizeof want);
        if (d->max_batch == 0)
          shape_str(d, t, t->dims, want, sizeof want);
        return q8rt_fail(Q8RT_ERR_SHAPE, err, errlen, "%s: input '%s' is %s but the model takes %s",
                         fn, t->name, got, want);
      }
      if (!is_batch)
        continue;
      /* The shape is spelled only for an error: snprintf on every run cost
       * ~2% of a batch-1 MLP's run (bench/rtshape.py). */
      if (dims[k] < 1 || dims[k] > d->max_batch)
        shape_str(d, t, dims, got, sizeof got);
      if (dims[k] < 1)
        return q8rt_fail(Q8RT_ERR_SHAPE, err, errlen,
                         "%s: input '%s' is %s: the batch must be at least 1", fn, t->name, got);
      if (dims[k] > d->max_batch)
        return q8rt_fail(Q8RT_ERR_SHAPE, err, errlen,
                         "%s: input '%s' is %s: batch %lld is above the model's maximum %lld "
                         "(--max-batch)",
                         fn, t->name, got, (long long)dims[k], (long long)d->max_batch);
      if (from >= 0 && dims[k] != batch)
        return q8rt_fail(Q8RT_ERR_SHAPE, err, errlen,
                         "%s: input '%s' has batch %lld but input '%s' has %lld", fn, t->name,
                         (long long)dims[k], d->inputs[from].name, (long long)batch);
      batch = dims[k];
      from = i;
    }
  }
  return q8rt_run_entry(m, quantized, from >= 0 ? batch : 1, fn, ninputs, inputs, noutputs,
                        outputs, err, errlen);
}

Q8RT_API q8rt_status q8rt_run_dims(q8rt_model *m, int ninputs, const void *const *inputs,
                                   const int64_t *const *input_dims, int noutputs,
                                   void *const *outputs, char *err, size_t errlen) {
  return run_dims(m, false, ninputs, inputs, input_dims, noutputs, outputs, err, errlen);
}

Q8RT_API q8rt_status q8rt_run_quantized_dims(q8rt_model *m, int ninputs,
                                             const void *const *inputs,
                                             const int64_t *const *input_dims, int noutputs,
                                             void *const *outputs, char *err, size_t errlen) {
  return run_dims(m, true, ninputs, inputs, input_dims, noutputs, outputs, err, errlen);
}
