/* onnx_read.c: the ONNX file itself: the protobuf decoding (protobuf-c, code
 * generated at build time from Debian's onnx.proto) and the tensors it holds
 * (initializers, Constant values, external data files).
 *
 * Every size in the file is untrusted: dims are checked for sign and rank,
 * element counts and byte sizes for overflow and against the memory cap
 * (ir_bytes_allowed) before anything is allocated, the data for its length,
 * and an external data file must lie inside the model's folder. */
#define _XOPEN_SOURCE 700 /* realpath */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "onnx_internal.h"

const char *onnx_str(const char *s) { return s ? s : ""; }

size_t onnx_hsize(HDType t) {
  switch (t) {
  case H_F32: case H_I32: return 4;
  case H_I64: return 8;
  case H_I8: case H_U8: return 1;
  }
  return 1;
}

const char *onnx_hname(HDType t) {
  static const char *names[] = {"f32", "i64", "i32", "i8", "u8"};
  return names[t];
}

double onnx_hget(const HTensor *t, int64_t i) {
  switch (t->dt) {
  case H_F32: return ((const float *)t->data)[i];
  case H_I64: return (double)((const int64_t *)t->data)[i];
  case H_I32: return ((const int32_t *)t->data)[i];
  case H_I8: return ((const int8_t *)t->data)[i];
  case H_U8: return ((const uint8_t *)t->data)[i];
  }
  return 0;
}

int64_t onnx_to_i64(double v) {
  /* Untrusted floats used as integers: NaN is 0, the rest saturates. */
  if (!(v == v))
    return 0;
  if (v <= -9.2e18)
    return INT64_MIN + 1;
  if (v >= 9.2e18)
    return INT64_MAX;
  return (int64_t)v;
}

int64_t onnx_hget_i64(const HTensor *t, int64_t i) {
  if (t->dt == H_I64)
    return ((const int64_t *)t->data)[i];
  return onnx_to_i64(onnx_hget(t, i));
}

/* Element count of `dims`, checked: false on a negative dim, a rank over
 * IR_MAX_RANK or overflow, with the end of a sentence in err. */
static bool count_elems(const int64_t *dims, size_t rank, int64_t *numel, char *err, size_t errlen) {
  if (rank > IR_MAX_RANK) {
    snprintf(err, errlen, "has rank %zu (q8c handles at most %d)", rank, IR_MAX_RANK);
    return false;
  }
  int64_t n = 1;
  bool zero = false;
  for (size_t i = 0; i < rank; i++) {
    if (dims[i] < 0) {
      snprintf(err, errlen, "has a negative dimension %lld", (long long)dims[i]);
      return false;
    }
    if (dims[i] == 0)
      zero = true;
    else if (n > INT64_MAX / dims[i]) {
      snprintf(err, errlen, "has more elements than 64-bit arithmetic holds");
      return false;
    }
    else
      n *= dims[i];
  }
  *numel = zero ? 0 : n;
  return true;
}

bool onnx_htensor_new(IrArena *a, HDType dt, int rank, const int64_t *dims, HTensor *t, char *err,
                      size_t errlen) {
  memset(t, 0, sizeof *t);
  t->dt = dt;
  if (!count_elems(dims, (size_t)rank, &t->numel, err, errlen))
    return false;
  t->rank = rank;
  if (rank > 0)
    memcpy(t->dims, dims, sizeof(int64_t) * (size_t)rank);
  if ((uint64_t)t->numel > UINT64_MAX / 8) {
    snprintf(err, errlen, "has more elements than 64-bit arithmetic holds");
    return false;
  }
  uint64_t bytes = (uint64_t)t->numel * onnx_hsize(dt);
  char why[256];
  if (!ir_bytes_allowed(bytes, why, sizeof why)) {
    snprintf(err, errlen, "%s", why);
    return false;
  }
  t->data = ir_alloc_data(a, bytes ? bytes : 1);
  if (!t->data) {
    snprintf(err, errlen, "needs %llu bytes: out of memory", (unsigned long long)bytes);
    return false;
  }
  return true;
}

static const char *onnx_dtype_name(int32_t dt) {
  static const char *names[] = {"UNDEFINED", "FLOAT",  "UINT8",  "INT8",      "UINT16",
                                "INT16",     "INT32",  "INT64",  "STRING",    "BOOL",
                                "FLOAT16",   "DOUBLE", "UINT32", "UINT64",    "COMPLEX64",
                                "COMPLEX128", "BFLOAT16"};
  if (dt >= 0 && dt < (int32_t)(sizeof names / sizeof names[0]))
    return names[dt];
  return "an unknown type";
}

static float half_to_float(uint16_t h) {
  uint32_t sign = (uint32_t)(h >> 15) << 31, exp = (h >> 10) & 0x1f, man = h & 0x3ff, bits;
  if (exp == 0) {
    if (man == 0) {
      bits = sign;
    } else { /* subnormal: normalize */
      exp = 127 - 15 + 1;
      while (!(man & 0x400)) {
        man <<= 1;
        exp--;
      }
      bits = sign | (exp << 23) | ((man & 0x3ff) << 13);
    }
  } else if (exp == 31) {
    bits = sign | 0x7f800000u | (man << 13);
  } else {
    bits = sign | ((exp - 15 + 127) << 23) | (man << 13);
  }
  float f;
  memcpy(&f, &bits, 4);
  return f;
}

static float bf16_to_float(uint16_t h) {
  uint32_t bits = (uint32_t)h << 16;
  float f;
  memcpy(&f, &bits, 4);
  return f;
}

/* The external data of tensor `tp`: its bytes, read from a file inside the
 * model's folder. */
static bool read_external(OnnxCtx *c, const Onnx__TensorProto *tp, const char *tname,
                          uint64_t want, unsigned char **out, char *err, size_t errlen) {
  const char *loc = NULL;
  long long offset = 0, length = -1;
  for (size_t i = 0; i < tp->n_external_data; i++) {
    const char *k = onnx_str(tp->external_data[i]->key), *v = onnx_str(tp->external_data[i]->value);
    char *end;
    if (strcmp(k, "location") == 0) {
      loc = v;
    } else if (strcmp(k, "offset") == 0 || strcmp(k, "length") == 0) {
      errno = 0;
      long long n = strtoll(v, &end, 10);
      if (errno || *end || end == v || n < 0) {
        snprintf(err, errlen, "tensor '%s': external data %s '%s' is not a byte count", tname, k, v);
        return false;
      }
      *(strcmp(k, "offset") == 0 ? &offset : &length) = n;
    }
  }
  if (!loc || !*loc) {
    snprintf(err, errlen, "tensor '%s': external data without a location", tname);
    return false;
  }
  if (!c->dir) {
    snprintf(err, errlen, "tensor '%s': external data '%s' needs the model's folder (the model was not read from a file)", tname, loc);
    return false;
  }
  /* Inside the model's folder: relative, no `..`, and after resolving
   * symbolic links still below the folder. */
  bool dotdot = false;
  for (const char *p = loc; *p;) {
    size_t n = strcspn(p, "/\\");
    if (n == 2 && p[0] == '.' && p[1] == '.')
      dotdot = true;
    p += n;
    if (*p)
      p++;
  }
  if (loc[0] == '/' || dotdot) {
    snprintf(err, errlen, "tensor '%s': external data location '%s' is outside the model's folder", tname, loc);
    return false;
  }
  size_t plen = strlen(c->dir) + strlen(loc) + 2;
  char *path = malloc(plen);
  char *real_dir = realpath(c->dir, NULL), *real = NULL;
  bool ok = false;
  FILE *f = NULL;
  if (!path || !real_dir) {
    snprintf(err, errlen, "tensor '%s': cannot resolve the model's folder", tname);
    goto done;
  }
  snprintf(path, plen, "%s/%s", c->dir, loc);
  real = realpath(path, NULL);
  if (!real) {
    snprintf(err, errlen, "tensor '%s': external data file '%s': %s", tname, loc, strerror(errno));
    goto done;
  }
  size_t dl = strlen(real_dir);
  if (strncmp(real, real_dir, dl) != 0 || (real[dl] != '/' && strcmp(real_dir, "/") != 0)) {
    snprintf(err, errlen, "tensor '%s': external data location '%s' is outside the model's folder", tname, loc);
    goto done;
  }
  struct stat st;
  if (!(f = fopen(real, "rb")) || fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
    snprintf(err, errlen, "tensor '%s': cannot read external data file '%s'", tname, loc);
    goto done;
  }
  if (length < 0)
    length = (long long)want;
  if ((uint64_t)length != want) {
    snprintf(err, errlen, "tensor '%s': external data length %lld does not match its type (%llu bytes)",
             tname, length, (unsigned long long)want);
    goto done;
  }
  if ((unsigned long long)offset > (unsigned long long)st.st_size ||
      (unsigned long long)length > (unsigned long long)st.st_size - (unsigned long long)offset) {
    snprintf(err, errlen, "tensor '%s': external data [%lld, +%lld) is past the end of '%s' (%lld bytes)",
             tname, offset, length, loc, (long long)st.st_size);
    goto done;
  }
  *out = ir_alloc_data(c->m->arena, want ? want : 1);
  if (!*out) {
    snprintf(err, errlen, "tensor '%s': out of memory", tname);
    goto done;
  }
  if (fseeko(f, (off_t)offset, SEEK_SET) != 0 || fread(*out, 1, want, f) != want) {
    snprintf(err, errlen, "tensor '%s': read error in '%s'", tname, loc);
    goto done;
  }
  ok = true;
done:
  if (f)
    fclose(f);
  free(path);
  free(real_dir);
  free(real);
  return ok;
}

bool onnx_read_tensor(OnnxCtx *c, const Onnx__TensorProto *tp, HTensor *t, char *err,
                      size_t errlen) {
  const char *tname = onnx_str(tp->name);
  int32_t dt = tp->has_data_type ? tp->data_type : 0;
  HDType h;
  size_t fsize; /* bytes per element in the file */
  switch (dt) {
  case ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT: h = H_F32; fsize = 4; break;
  case ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT16:
  case ONNX__TENSOR_PROTO__DATA_TYPE__BFLOAT16: h = H_F32; fsize = 2; break;
  case ONNX__TENSOR_PROTO__DATA_TYPE__DOUBLE: h = H_F32; fsize = 8; break;
  case ONNX__TENSOR_PROTO__DATA_TYPE__INT64: h = H_I64; fsize = 8; break;
  case ONNX__TENSOR_PROTO__DATA_TYPE__INT32: h = H_I32; fsize = 4; break;
  case ONNX__TENSOR_PROTO__DATA_TYPE__INT8: h = H_I8; fsize = 1; break;
  case ONNX__TENSOR_PROTO__DATA_TYPE__UINT8:
  case ONNX__TENSOR_PROTO__DATA_TYPE__BOOL: h = H_U8; fsize = 1; break; /* masks: 0 or 1 */
  default:
    snprintf(err, errlen,
             "tensor '%s' has data type %s; q8c reads FLOAT, FLOAT16, BFLOAT16, DOUBLE, INT64, "
             "INT32, INT8, UINT8 and BOOL",
             tname, onnx_dtype_name(dt));
    return false;
  }
  char why[256];
  if (tp->n_dims > IR_MAX_RANK) {
    snprintf(err, errlen, "tensor '%s' has rank %zu (q8c handles at most %d)", tname, tp->n_dims,
             IR_MAX_RANK);
    return false;
  }
  if (!onnx_htensor_new(c->m->arena, h, (int)tp->n_dims, tp->dims, t, why, sizeof why)) {
    snprintf(err, errlen, "tensor '%s' %s", tname, why);
    return false;
  }
  int64_t n = t->numel;
  uint64_t want = (uint64_t)n * fsize;
  const unsigned char *raw = NULL;
  unsigned char *ext = NULL;
  if (tp->has_data_location && tp->data_location == ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL) {
    if (!read_external(c, tp, tname, want, &ext, err, errlen))
      return false;
    raw = ext;
  } else if (tp->has_raw_data) {
    if (tp->raw_data.len != want) {
      snprintf(err, errlen, "tensor '%s' has %zu bytes of raw data; its dims [%s] of %s need %llu",
               tname, tp->raw_data.len, onnx_dims_str(t->dims, t->rank, why, sizeof why),
               onnx_dtype_name(dt), (unsigned long long)want);
      return false;
    }
    raw = tp->raw_data.data;
  } else {
    size_t have = 0;
    switch (dt) {
    case ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT: have = tp->n_float_data; break;
    case ONNX__TENSOR_PROTO__DATA_TYPE__DOUBLE: have = tp->n_double_data; break;
    case ONNX__TENSOR_PROTO__DATA_TYPE__INT64: have = tp->n_int64_data; break;
    default: have = tp->n_int32_data; break;
    }
    if ((uint64_t)have != (uint64_t)n) {
      snprintf(err, errlen, "tensor '%s' has %zu values; its dims [%s] need %lld", tname, have,
               onnx_dims_str(t->dims, t->rank, why, sizeof why), (long long)n);
      return false;
    }
  }
  for (int64_t i = 0; i < n; i++) {
    const unsigned char *p = raw ? raw + (size_t)i * fsize : NULL;
    switch (dt) {
    case ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT:
      if (p)
        memcpy((float *)t->data + i, p, 4);
      else
        ((float *)t->data)[i] = tp->float_data[i];
      break;
    case ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT16:
    case ONNX__TENSOR_PROTO__DATA_TYPE__BFLOAT16: {
      uint16_t b = p ? (uint16_t)(p[0] | p[1] << 8) : (uint16_t)tp->int32_data[i];
      ((float *)t->data)[i] = dt == ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT16 ? half_to_float(b)
                                                                         : bf16_to_float(b);
      break;
    }
    case ONNX__TENSOR_PROTO__DATA_TYPE__DOUBLE: {
      double d;
      if (p)
        memcpy(&d, p, 8);
      else
        d = tp->double_data[i];
      ((float *)t->data)[i] = (float)d;
      break;
    }
    case ONNX__TENSOR_PROTO__DATA_TYPE__INT64:
      if (p)
        memcpy((int64_t *)t->data + i, p, 8);
      else
        ((int64_t *)t->data)[i] = tp->int64_data[i];
      break;
    case ONNX__TENSOR_PROTO__DATA_TYPE__INT32:
      if (p)
        memcpy((int32_t *)t->data + i, p, 4);
      else
        ((int32_t *)t->data)[i] = tp->int32_data[i];
      break;
    case ONNX__TENSOR_PROTO__DATA_TYPE__INT8:
    case ONNX__TENSOR_PROTO__DATA_TYPE__BOOL:
    case ONNX__TENSOR_PROTO__DATA_TYPE__UINT8: {
      int32_t v = p ? (dt == ONNX__TENSOR_PROTO__DATA_TYPE__INT8 ? (int8_t)p[0] : p[0])
                    : tp->int32_data[i];
      int32_t lo = dt == ONNX__TENSOR_PROTO__DATA_TYPE__INT8 ? -128 : 0;
      if (v < lo || v > lo + 255) {
        snprintf(err, errlen, "tensor '%s': value %d is out of range for %s", tname, (int)v,
                 onnx_dtype_name(dt));
        return false;
      }
      if (dt == ONNX__TENSOR_PROTO__DATA_TYPE__INT8)
        ((int8_t *)t->data)[i] = (int8_t)v;
      else
        ((uint8_t *)t->data)[i] = (uint8_t)v;
      break;
    }
    }
  }
  return true;
}

char *onnx_dims_str(const int64_t *dims, int rank, char *buf, size_t size) {
  size_t n = 0;
  buf[0] = '\0';
  for (int i = 0; i < rank && n < size; i++) {
    if (dims[i] == ONNX_SYM_BATCH)
      n += (size_t)snprintf(buf + n, size - n, "%s?", i ? ", " : "");
    else
      n += (size_t)snprintf(buf + n, size - n, "%s%lld", i ? ", " : "", (long long)dims[i]);
  }
  return buf;
}

Onnx__ModelProto *onnx_unpack(const unsigned char *bytes, size_t size, char *err, size_t errlen) {
  Onnx__ModelProto *mp = onnx__model_proto__unpack(NULL, size, bytes);
  if (!mp) {
    snprintf(err, errlen,
             "not a valid ONNX model: the protobuf encoding is malformed (truncated, or a field "
             "has the wrong wire type)");
    return NULL;
  }
  if (!mp->graph) {
    onnx__model_proto__free_unpacked(mp, NULL);
    snprintf(err, errlen, "not an ONNX model: it has no graph");
    return NULL;
  }
  return mp;
}

void onnx_free(Onnx__ModelProto *mp) { onnx__model_proto__free_unpacked(mp, NULL); }
