/* types.c: the static tables of the IR (ops from ops.def, attribute keys from
 * attrs.def, element types) and the arithmetic on tensor types.
 *
 * Element counts are computed with overflow checks: a shape read from a file
 * is untrusted, and a product that wraps would make a small allocation look
 * large enough. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ir.h"

const IrOpInfo ir_op_info[IR_OP_COUNT] = {
#define OP(ID, name, minops, maxops, attrs) [IR_OP_##ID] = {#name, minops, maxops, attrs},
#include "ops.def"
#undef OP
};

const IrAttrInfo ir_attr_info[IR_ATTR_COUNT] = {
#define ATTR(ID, key, kind) [IR_ATTR_##ID] = {#key, IR_AKIND_##kind},
#include "attrs.def"
#undef ATTR
};

/* The names of NAME keys, NULL-terminated; NULL for other keys. */
static const char *const *const attr_names[IR_ATTR_COUNT] = {
#define ATTR(ID, key, kind)
#define ATTR_NAMES(ID, ...) [IR_ATTR_##ID] = (const char *const[]){__VA_ARGS__, NULL},
#include "attrs.def"
#undef ATTR_NAMES
#undef ATTR
};

int ir_attr_name_count(IrAttrKey key) {
  int n = 0;
  while (key < IR_ATTR_COUNT && attr_names[key] && attr_names[key][n])
    n++;
  return n;
}

const char *ir_attr_name_str(IrAttrKey key, int i) {
  return i >= 0 && i < ir_attr_name_count(key) ? attr_names[key][i] : "?";
}

int ir_attr_name_index(IrAttrKey key, const char *s, size_t len) {
  for (int i = 0; i < ir_attr_name_count(key); i++)
    if (strlen(attr_names[key][i]) == len && memcmp(attr_names[key][i], s, len) == 0)
      return i;
  return -1;
}

bool ir_broadcast_dims(const int64_t *a, int ra, const int64_t *b, int rb, int64_t *out,
                       int *rout, int *axis) {
  int r = ra > rb ? ra : rb;
  *rout = r;
  for (int i = 1; i <= r; i++) {
    int64_t da = i <= ra ? a[ra - i] : 1, db = i <= rb ? b[rb - i] : 1;
    if (da == db || db == 1)
      out[r - i] = da;
    else if (da == 1)
      out[r - i] = db;
    else {
      *axis = r - i;
      return false;
    }
  }
  return true;
}

void ir_broadcast_strides(const int64_t *dims, int rank, int64_t unit, int out_rank,
                          int64_t *strides) {
  int64_t s = unit;
  for (int i = 1; i <= out_rank; i++) {
    if (i > rank) {
      strides[out_rank - i] = 0;
      continue;
    }
    int64_t d = dims[rank - i];
    strides[out_rank - i] = d == 1 ? 0 : s;
    s *= d;
  }
}

static const struct {
  const char *name;
  size_t size;
} dtype_info[IR_DTYPE_COUNT] = {
    [IR_DTYPE_NONE] = {"none", 0},
#define X(id, spelling, size) [IR_##id] = {spelling, size},
    IR_DTYPES(X)
#undef X
};

const char *ir_dtype_name(IrDType t) { return t < IR_DTYPE_COUNT ? dtype_info[t].name : "?"; }

bool ir_dtype_is_quantized(IrDType t) { return t == IR_U8 || t == IR_I8; }

size_t ir_dtype_size(IrDType t) { return t < IR_DTYPE_COUNT ? dtype_info[t].size : 0; }

static bool spelled(const char *word, const char *s, size_t len) {
  return strlen(word) == len && memcmp(word, s, len) == 0;
}

IrDType ir_dtype_from_name(const char *s, size_t len) {
  for (int t = IR_DTYPE_NONE + 1; t < IR_DTYPE_COUNT; t++)
    if (spelled(dtype_info[t].name, s, len))
      return (IrDType)t;
  return IR_DTYPE_NONE;
}

int ir_op_from_name(const char *s, size_t len) {
  for (int op = 0; op < IR_OP_COUNT; op++)
    if (spelled(ir_op_info[op].name, s, len))
      return op;
  return -1;
}

int ir_attr_from_name(const char *s, size_t len) {
  for (int k = 0; k < IR_ATTR_COUNT; k++)
    if (spelled(ir_attr_info[k].key, s, len))
      return k;
  return -1;
}

bool ir_type_equal(const IrType *a, const IrType *b) {
  if (a->dtype != b->dtype || a->rank != b->rank)
    return false;
  for (int i = 0; i < a->rank; i++)
    if (a->dims[i] != b->dims[i])
      return false;
  return true;
}

bool ir_type_numel(const IrType *t, int64_t batch, int64_t *out) {
  int64_t n = 1;
  for (int i = 0; i < t->rank; i++) {
    int64_t d = t->dims[i] == IR_DIM_BATCH ? batch : t->dims[i] == IR_DIM_FOLDED ? 1 : t->dims[i];
    if (d < 0 || (d != 0 && n > INT64_MAX / d))
      return false;
    n *= d;
  }
  *out = n;
  return true;
}

IrType ir_type_bind(const IrType *t, int64_t batch) {
  IrType r = *t;
  for (int i = 0; i < r.rank; i++)
    if (r.dims[i] == IR_DIM_BATCH)
      r.dims[i] = batch;
    else if (r.dims[i] == IR_DIM_FOLDED)
      r.dims[i] = 1;
  return r;
}

bool ir_max_tensor_bytes(uint64_t *limit, char *err, size_t errlen) {
  const char *env = getenv("Q8_MAX_TENSOR_BYTES");
  *limit = IR_DEFAULT_MAX_TENSOR_BYTES;
  if (!env || !*env)
    return true;
  /* Digits only: strtoull would take "-1" and wrap it. */
  uint64_t v = 0;
  const char *p = env;
  for (; *p >= '0' && *p <= '9'; p++) {
    if (v > (UINT64_MAX - 9) / 10)
      break;
    v = v * 10 + (uint64_t)(*p - '0');
  }
  int shift = 0;
  if (p != env && *p && !p[1]) {
    const char *units = "KkMmGgTt";
    const char *u = strchr(units, *p);
    if (u) {
      shift = 10 * (1 + (int)(u - units) / 2);
      p++;
    }
  }
  const uint64_t max = (uint64_t)1 << 60;
  if (p == env || *p || v == 0 || v > (max >> shift)) {
    snprintf(err, errlen,
             "Q8_MAX_TENSOR_BYTES: expected a byte count from 1 to 2^60 such as 16G, got '%s'", env);
    return false;
  }
  *limit = v << shift;
  return true;
}

bool ir_bytes_allowed(uint64_t bytes, char *err, size_t errlen) {
  uint64_t limit;
  if (!ir_max_tensor_bytes(&limit, err, errlen))
    return false;
  if (bytes <= limit && bytes <= SIZE_MAX)
    return true;
  snprintf(err, errlen, "needs %llu bytes, over the limit of %llu (Q8_MAX_TENSOR_BYTES)",
           (unsigned long long)bytes, (unsigned long long)limit);
  return false;
}

bool ir_type_bytes(const IrType *t, int64_t batch, size_t *bytes, char *err, size_t errlen) {
  int64_t numel;
  size_t esize = ir_dtype_size(t->dtype);
  if (!ir_type_numel(t, batch, &numel) || (uint64_t)numel > UINT64_MAX / (esize ? esize : 1)) {
    snprintf(err, errlen, "has more elements than 64-bit arithmetic holds");
    return false;
  }
  uint64_t n = (uint64_t)numel * esize;
  if (!ir_bytes_allowed(n, err, errlen))
    return false;
  *bytes = (size_t)n;
  return true;
}

char *ir_dims_str(const int64_t *dims, int rank, char *buf, size_t size) {
  size_t n = 0;
  n += (size_t)snprintf(buf, size, "[");
  for (int i = 0; i < rank && n < size; i++) {
    const char *sep = i ? ", " : "";
    if (ir_dim_symbolic(dims[i]))
      n += (size_t)snprintf(buf + n, size - n, "%s?", sep);
    else
      n += (size_t)snprintf(buf + n, size - n, "%s%lld", sep, (long long)dims[i]);
  }
  if (n < size)
    snprintf(buf + n, size - n, "]");
  return buf;
}

char *ir_dims_str_named(const IrModule *m, const int64_t *dims, int rank, char *buf,
                        size_t size) {
  size_t n = 0;
  n += (size_t)snprintf(buf, size, "[");
  for (int i = 0; i < rank && n < size; i++) {
    const char *sep = i ? ", " : "";
    if (m && m->nnamed > i && ir_dim_symbolic(dims[i]))
      n += (size_t)snprintf(buf + n, size - n, "%s%s", sep, m->named[i]);
    else if (ir_dim_symbolic(dims[i]))
      n += (size_t)snprintf(buf + n, size - n, "%s?", sep);
    else if (dims[i] == IR_DIM_INFER)
      n += (size_t)snprintf(buf + n, size - n, "%s-1", sep);
    else
      n += (size_t)snprintf(buf + n, size - n, "%s%lld", sep, (long long)dims[i]);
  }
  if (n < size)
    snprintf(buf + n, size - n, "]");
  return buf;
}

char *ir_type_str_named(const IrModule *m, const IrType *t, char *buf, size_t size) {
  int n = snprintf(buf, size, "%s", ir_dtype_name(t->dtype));
  if (n >= 0 && (size_t)n < size)
    ir_dims_str_named(m, t->dims, t->rank, buf + n, size - (size_t)n);
  return buf;
}

char *ir_type_str(const IrType *t, char *buf, size_t size) {
  int n = snprintf(buf, size, "%s", ir_dtype_name(t->dtype));
  if (n >= 0 && (size_t)n < size)
    ir_dims_str(t->dims, t->rank, buf + n, size - (size_t)n);
  return buf;
}
