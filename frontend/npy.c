/* npy.c: reading and writing numpy's .npy arrays (calibration inputs,
 * reference outputs, test data), including a streaming reader that hands out
 * rows along axis 0 for calibration sets larger than memory. The header is
 * read by a parser of the dict literal numpy writes, and every size is
 * checked before anything is allocated. The format, the dtypes read and the
 * checks are in docs/reliability.md, "The file loaders' checks". */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L /* fileno and fstat, to size the file before allocating */
#endif
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "frontend.h"

static const char MAGIC[6] = "\x93NUMPY";

/* numpy itself refuses headers over 10000 bytes by default; a valid header
 * for the dtypes we accept is under 300 bytes, so this only stops a corrupt
 * length from making us allocate. */
enum { MAX_HEADER_LEN = 1 << 20 };

/* Conversion goes through a bounce buffer of this many bytes. */
enum { CHUNK_BYTES = 4096 };

static bool host_is_little_endian(void) {
  const uint16_t one = 1;
  unsigned char first;
  memcpy(&first, &one, 1);
  return first == 1;
}

/* ---- element kinds ---- */

/* A file dtype q8c accepts: the type code after the byte-order character. */
typedef struct {
  const char code[3];
  IrDType dtype; /* in memory, after conversion */
  int file_size; /* bytes per element in the file */
  bool is_f64;
} NpyKind;

static const NpyKind KINDS[] = {
    {"f4", IR_F32, 4, false},
    {"f8", IR_F32, 8, true},
    {"i1", IR_I8, 1, false},
    {"u1", IR_U8, 1, false},
    {"i4", IR_I32, 4, false},
    {"i8", IR_I64, 8, false},
};

static const char SUPPORTED[] = "q8c reads little-endian f4, f8, i1, u1, i4, i8";

/* Map a descr such as "<f4" to its kind. '<' is little-endian. '=' (the
 * writer's native order) never comes from numpy, which spells the order out;
 * a hand-written one is taken as little-endian, the order of every machine q8c
 * targets. For single bytes the order means nothing, so '|' and '>' pass too. */
static const NpyKind *kind_from_descr(const char *descr, char *err, size_t errlen) {
  if (descr[0] == 'O' || (descr[0] != '\0' && descr[1] == 'O')) {
    sup_errf(err, errlen, "object arrays are not supported (dtype '%s'); save a numeric array",
             descr);
    return NULL;
  }
  if (strlen(descr) == 3) {
    char order = descr[0];
    for (size_t i = 0; i < sizeof KINDS / sizeof KINDS[0]; i++) {
      const NpyKind *k = &KINDS[i];
      if (strcmp(descr + 1, k->code) != 0)
        continue;
      bool ok = k->file_size == 1 ? (order == '<' || order == '=' || order == '|' || order == '>')
                                  : (order == '<' || order == '=');
      if (ok)
        return k;
    }
  }
  sup_errf(err, errlen, "unsupported dtype '%s' (%s)", descr, SUPPORTED);
  return NULL;
}

/* ---- size arithmetic ---- */

/* Product of dims, or false if it exceeds int64 (dims are all >= 0). */
static bool checked_numel(const int64_t *dims, int rank, int64_t *out) {
  int64_t n = 1;
  for (int i = 0; i < rank; i++) {
    if (dims[i] < 0)
      return false;
    if (dims[i] != 0 && n > INT64_MAX / dims[i])
      return false;
    n *= dims[i];
  }
  *out = n;
  return true;
}

/* "(3, 4)", "(5,)", "()" as numpy spells shapes, for messages and headers. */
static void shape_str(const int64_t *dims, int rank, char *buf, size_t size) {
  size_t n = 0;
  n += (size_t)snprintf(buf + n, size - n, "(");
  for (int i = 0; i < rank && n < size; i++)
    n += (size_t)snprintf(buf + n, size - n, i ? ", %" PRId64 : "%" PRId64, dims[i]);
  if (n < size)
    snprintf(buf + n, size - n, rank == 1 ? ",)" : ")");
}

/* ---- the header dict literal ---- */

typedef struct {
  const char *s;
  size_t len, pos;
  char *err;
  size_t errlen;
} HdrLex;

/* What the header says, before validation. */
typedef struct {
  char descr[32];
  bool fortran_order;
  int rank; /* may exceed IR_MAX_RANK; only the first IR_MAX_RANK dims are kept */
  int64_t dims[IR_MAX_RANK];
  bool has_descr, has_fortran, has_shape;
} NpyHeader;

static void skip_ws(HdrLex *lx) {
  while (lx->pos < lx->len && (lx->s[lx->pos] == ' ' || lx->s[lx->pos] == '\t' ||
                               lx->s[lx->pos] == '\n' || lx->s[lx->pos] == '\r'))
    lx->pos++;
}

static bool syntax_error(HdrLex *lx, const char *expected) {
  char found[32];
  unsigned char c = lx->pos < lx->len ? (unsigned char)lx->s[lx->pos] : 0;
  if (lx->pos >= lx->len)
    snprintf(found, sizeof found, "the end of the header");
  else if (c == '\'')
    snprintf(found, sizeof found, "\"'\"");
  else if (c >= 0x20 && c < 0x7f)
    snprintf(found, sizeof found, "'%c'", c);
  else
    snprintf(found, sizeof found, "byte 0x%02x", c);
  return sup_errf(lx->err, lx->errlen, "malformed .npy header at offset %zu: expected %s, found %s",
                  lx->pos, expected, found);
}

/* Skip blanks, then consume `c` if it is next. */
static bool accept(HdrLex *lx, char c) {
  skip_ws(lx);
  if (lx->pos < lx->len && lx->s[lx->pos] == c) {
    lx->pos++;
    return true;
  }
  return false;
}

static bool expect(HdrLex *lx, char c, const char *spelled) {
  return accept(lx, c) || syntax_error(lx, spelled);
}

/* A Python string literal in ' or " quotes, without escapes (no key or dtype
 * we accept needs one). */
static bool parse_string(HdrLex *lx, char *out, size_t cap) {
  skip_ws(lx);
  if (lx->pos >= lx->len || (lx->s[lx->pos] != '\'' && lx->s[lx->pos] != '"'))
    return syntax_error(lx, "a quoted string");
  char quote = lx->s[lx->pos++];
  size_t start = lx->pos;
  while (lx->pos < lx->len && lx->s[lx->pos] != quote) {
    if (lx->s[lx->pos] == '\\' || lx->s[lx->pos] == '\n')
      return syntax_error(lx, "a plain string without escapes");
    lx->pos++;
  }
  if (lx->pos >= lx->len)
    return syntax_error(lx, "the closing quote");
  size_t n = lx->pos - start;
  if (n >= cap)
    return sup_errf(lx->err, lx->errlen, "malformed .npy header at offset %zu: string is too long",
                    start);
  memcpy(out, lx->s + start, n);
  out[n] = '\0';
  lx->pos++;
  return true;
}

static bool parse_bool(HdrLex *lx, bool *out) {
  skip_ws(lx);
  const char *p = lx->s + lx->pos;
  size_t left = lx->len - lx->pos;
  if (left >= 4 && memcmp(p, "True", 4) == 0) {
    *out = true;
    lx->pos += 4;
    return true;
  }
  if (left >= 5 && memcmp(p, "False", 5) == 0) {
    *out = false;
    lx->pos += 5;
    return true;
  }
  return syntax_error(lx, "True or False");
}

/* A non-negative decimal integer; Python 2 wrote longs with an 'L' suffix. */
static bool parse_dim(HdrLex *lx, int64_t *out) {
  skip_ws(lx);
  size_t start = lx->pos, end = lx->pos;
  while (end < lx->len && lx->s[end] >= '0' && lx->s[end] <= '9')
    end++;
  if (end == start) {
    if (start < lx->len && lx->s[start] == '-')
      return sup_errf(lx->err, lx->errlen,
                      "malformed .npy header at offset %zu: negative dimension", start);
    return syntax_error(lx, "a dimension");
  }
  int64_t v = 0;
  for (size_t i = start; i < end; i++) {
    int d = lx->s[i] - '0';
    if (v > (INT64_MAX - d) / 10) {
      int shown = end - start > 40 ? 40 : (int)(end - start);
      return sup_errf(lx->err, lx->errlen, "dimension %.*s%s in the .npy shape is too large", shown,
                      lx->s + start, end - start > 40 ? "..." : "");
    }
    v = v * 10 + d;
  }
  lx->pos = end;
  if (lx->pos < lx->len && lx->s[lx->pos] == 'L')
    lx->pos++;
  *out = v;
  return true;
}

/* A tuple of dims as Python spells it: "()" for a scalar, "(d0,)" for one
 * dim, "(d0, d1)" or "(d0, d1,)" for more. */
static bool parse_shape(HdrLex *lx, NpyHeader *h) {
  if (!expect(lx, '(', "'(' to start the shape"))
    return false;
  h->rank = 0;
  if (accept(lx, ')'))
    return true;
  for (;;) {
    int64_t d = 0; /* set by parse_dim; initialized for -Wmaybe-uninitialized */
    if (!parse_dim(lx, &d))
      return false;
    if (h->rank < IR_MAX_RANK)
      h->dims[h->rank] = d;
    h->rank++;
    if (h->rank == 1 && accept(lx, ')'))
      /* In Python "(2)" is the integer 2, not a tuple; numpy would refuse it. */
      return sup_errf(lx->err, lx->errlen,
                      "malformed .npy header at offset %zu: a one-dimensional shape needs a trailing "
                      "comma, as in (%" PRId64 ",)",
                      lx->pos - 1, d);
    if (accept(lx, ')'))
      return true;
    if (!expect(lx, ',', "',' or ')' in the shape"))
      return false;
    if (accept(lx, ')'))
      return true;
  }
}

static bool parse_header(const char *text, size_t len, NpyHeader *h, char *err, size_t errlen) {
  HdrLex lx = {text, len, 0, err, errlen};
  memset(h, 0, sizeof *h);
  if (!expect(&lx, '{', "'{'"))
    return false;
  while (!accept(&lx, '}')) {
    char key[32];
    size_t key_pos = (skip_ws(&lx), lx.pos);
    if (!parse_string(&lx, key, sizeof key) || !expect(&lx, ':', "':'"))
      return false;
    bool *seen;
    if (strcmp(key, "descr") == 0) {
      seen = &h->has_descr;
      skip_ws(&lx);
      /* A list here describes a structured (record) dtype. */
      if (lx.pos < lx.len && lx.s[lx.pos] == '[')
        return sup_errf(err, errlen, "structured dtypes are not supported (%s)", SUPPORTED);
      if (!parse_string(&lx, h->descr, sizeof h->descr))
        return false;
    } else if (strcmp(key, "fortran_order") == 0) {
      seen = &h->has_fortran;
      if (!parse_bool(&lx, &h->fortran_order))
        return false;
    } else if (strcmp(key, "shape") == 0) {
      seen = &h->has_shape;
      if (!parse_shape(&lx, h))
        return false;
    } else {
      return sup_errf(err, errlen, "malformed .npy header at offset %zu: unexpected key '%s'",
                      key_pos, key);
    }
    if (*seen)
      return sup_errf(err, errlen, "malformed .npy header at offset %zu: key '%s' appears twice",
                      key_pos, key);
    *seen = true;
    if (accept(&lx, '}'))
      break;
    if (!expect(&lx, ',', "',' or '}'"))
      return false;
  }
  skip_ws(&lx);
  if (lx.pos != lx.len)
    return syntax_error(&lx, "the end of the header after '}'");
  const char *missing = !h->has_descr     ? "descr"
                        : !h->has_fortran ? "fortran_order"
                        : !h->has_shape   ? "shape"
                                          : NULL;
  if (missing)
    return sup_errf(err, errlen, "malformed .npy header: no '%s' key", missing);
  return true;
}

/* ---- reading the file's preamble ---- */

/* Everything needed to read the data that follows the header. */
typedef struct {
  IrType type; /* converted dtype */
  const NpyKind *kind;
  int64_t numel;
  uint64_t data_bytes; /* in the file */
} NpyInfo;

/* Read and validate magic, version and header; leaves `f` at the first data
 * byte. Fails unless the whole array is present in the file. */
static bool read_preamble(FILE *f, NpyInfo *info, char *err, size_t errlen) {
  /* Where the file's length is known, sizes are checked against it before
   * anything is allocated; a pipe gets only the checks while reading. */
  struct stat st;
  bool sized = fstat(fileno(f), &st) == 0 && S_ISREG(st.st_mode);
  uint64_t file_size = sized ? (uint64_t)st.st_size : 0;

  unsigned char pre[12];
  size_t got = fread(pre, 1, 10, f);
  if (got < 8 || memcmp(pre, MAGIC, 6) != 0)
    return sup_errf(err, errlen, "not a .npy file (bad magic)");
  int major = pre[6], minor = pre[7];
  if ((major != 1 && major != 2 && major != 3) || minor != 0)
    return sup_errf(err, errlen,
                    "unsupported .npy format version %d.%d (q8c reads 1.0, 2.0 and 3.0)", major,
                    minor);
  size_t prefix = major == 1 ? 10 : 12;
  if (got == 10 && prefix == 12)
    got += fread(pre + 10, 1, 2, f);
  if (got < prefix)
    return sup_errf(err, errlen, "file is truncated: the .npy preamble needs %zu bytes, found %zu",
                    prefix, got);
  uint32_t hlen = major == 1 ? (uint32_t)(pre[8] | pre[9] << 8)
                             : (uint32_t)pre[8] | (uint32_t)pre[9] << 8 | (uint32_t)pre[10] << 16 |
                                   (uint32_t)pre[11] << 24;
  if (hlen > MAX_HEADER_LEN)
    return sup_errf(err, errlen, "header length %" PRIu32 " is too large (the limit is %d bytes)",
                    hlen, MAX_HEADER_LEN);
  if (sized && file_size < prefix + hlen)
    return sup_errf(err, errlen,
                    "file is truncated: expected a %" PRIu32 "-byte header, found %" PRIu64, hlen,
                    file_size - prefix);

  char *text = malloc(hlen ? hlen : 1);
  if (!text)
    return sup_errf(err, errlen, "out of memory reading a %" PRIu32 "-byte header", hlen);
  size_t hgot = fread(text, 1, hlen, f);
  NpyHeader h;
  bool ok = hgot == hlen ? parse_header(text, hlen, &h, err, errlen)
                         : sup_errf(err, errlen,
                                    "file is truncated: expected a %" PRIu32 "-byte header, found %zu",
                                    hlen, hgot);
  free(text);
  if (!ok)
    return false;

  const NpyKind *kind = kind_from_descr(h.descr, err, errlen);
  if (!kind)
    return false;
  if (h.fortran_order)
    return sup_errf(err, errlen,
                    "fortran-order arrays are not supported; save with np.ascontiguousarray");
  if (h.rank > IR_MAX_RANK)
    return sup_errf(err, errlen, "rank %d exceeds the maximum of %d", h.rank, IR_MAX_RANK);

  int64_t numel;
  char shape[IR_MAX_RANK * 22 + 4];
  if (!checked_numel(h.dims, h.rank, &numel) || (uint64_t)numel > UINT64_MAX / kind->file_size ||
      (uint64_t)numel > SIZE_MAX / ir_dtype_size(kind->dtype)) {
    shape_str(h.dims, h.rank, shape, sizeof shape);
    return sup_errf(err, errlen, "array of shape %s is too large", shape);
  }
  info->kind = kind;
  info->numel = numel;
  info->data_bytes = (uint64_t)numel * (uint64_t)kind->file_size;
  info->type.dtype = kind->dtype;
  info->type.rank = h.rank;
  memset(info->type.dims, 0, sizeof info->type.dims);
  memcpy(info->type.dims, h.dims, sizeof h.dims[0] * (size_t)h.rank);

  uint64_t data_start = prefix + hlen;
  /* Bytes after the array are ignored, as numpy ignores them. */
  if (sized && file_size - data_start < info->data_bytes)
    return sup_errf(err, errlen,
                    "file is truncated: expected %" PRIu64 " data bytes, found %" PRIu64,
                    info->data_bytes, file_size - data_start);
  return true;
}

/* ---- element data ---- */

static uint32_t load_le32(const unsigned char *p) {
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t load_le64(const unsigned char *p) {
  return (uint64_t)load_le32(p) | (uint64_t)load_le32(p + 4) << 32;
}

static void store_le32(unsigned char *p, uint32_t v) {
  p[0] = (unsigned char)v;
  p[1] = (unsigned char)(v >> 8);
  p[2] = (unsigned char)(v >> 16);
  p[3] = (unsigned char)(v >> 24);
}

/* Read `n` elements stored as `file_size`-byte little-endian values into
 * `dst` in host order, converting f8 to f32. `before` and `total` are data
 * byte counts for the message when the file ends early. */
static bool read_elems(FILE *f, int file_size, bool is_f64, void *dst, uint64_t n, uint64_t before,
                       uint64_t total, char *err, size_t errlen) {
  uint64_t got = 0; /* bytes */
  if (!is_f64) {
    uint64_t want = n * (uint64_t)file_size;
    got = fread(dst, 1, want, f);
    if (got == want && file_size == 4 && !host_is_little_endian()) {
      unsigned char *p = dst;
      for (uint64_t i = 0; i < n; i++) {
        uint32_t v = load_le32(p + 4 * i);
        memcpy(p + 4 * i, &v, 4);
      }
    }
  } else {
    /* Through a small buffer, so that f8 never needs a second array. */
    unsigned char buf[CHUNK_BYTES];
    float *out = dst;
    for (uint64_t done = 0; done < n;) {
      size_t k = n - done < CHUNK_BYTES / 8 ? (size_t)(n - done) : CHUNK_BYTES / 8;
      size_t r = fread(buf, 1, k * 8, f);
      got += r;
      if (r < k * 8)
        break;
      for (size_t i = 0; i < k; i++) {
        uint64_t bits = load_le64(buf + 8 * i);
        double d;
        memcpy(&d, &bits, sizeof d);
        /* Out-of-range values become +-inf, NaN stays NaN: C's conversion. */
        out[done + i] = (float)d;
      }
      done += k;
    }
  }
  if (got < n * (uint64_t)file_size) {
    if (ferror(f))
      return sup_errf(err, errlen, "read error: %s", strerror(errno));
    return sup_errf(err, errlen,
                    "file is truncated: expected %" PRIu64 " data bytes, found %" PRIu64, total,
                    before + got);
  }
  return true;
}

/* ---- whole arrays ---- */

bool fe_npy_read(const char *path, IrTensor *out, char *err, size_t errlen) {
  memset(out, 0, sizeof *out);
  FILE *f = fopen(path, "rb");
  if (!f)
    return sup_errf(err, errlen, "cannot open '%s': %s", path, strerror(errno));
  NpyInfo info;
  void *data = NULL;
  bool ok = read_preamble(f, &info, err, errlen);
  if (ok) {
    /* read_preamble checked that this product fits in size_t. */
    size_t bytes = (size_t)info.numel * ir_dtype_size(info.type.dtype);
    char why[160], shape[IR_MAX_RANK * 22 + 4];
    if (!ir_bytes_allowed(bytes, why, sizeof why)) {
      shape_str(info.type.dims, info.type.rank, shape, sizeof shape);
      fclose(f);
      return sup_errf(err, errlen, "array of shape %s %s", shape, why);
    }
    data = malloc(bytes ? bytes : 1);
    if (!data)
      ok = sup_errf(err, errlen, "out of memory: the array needs %zu bytes", bytes);
  }
  if (ok)
    ok = read_elems(f, info.kind->file_size, info.kind->is_f64, data, (uint64_t)info.numel, 0,
                    info.data_bytes, err, errlen);
  fclose(f);
  if (!ok) {
    free(data);
    return false;
  }
  out->type = info.type;
  out->data = data;
  return true;
}

/* The .npy descr numpy writes for each IR dtype. */
static const char *descr_for(IrDType t) {
  switch (t) {
  case IR_F32: return "<f4";
  case IR_I8: return "|i1";
  case IR_U8: return "|u1";
  case IR_I32: return "<i4";
  case IR_I64: return "<i8";
  default: return NULL;
  }
}

static bool write_all(FILE *f, const IrTensor *t, size_t numel) {
  size_t size = ir_dtype_size(t->type.dtype);
  if (numel == 0) /* data may be NULL */
    return true;
  if (size == 1 || host_is_little_endian())
    return fwrite(t->data, size, numel, f) == numel;
  /* A big-endian host: byte-swap 4-byte elements through a buffer. */
  unsigned char buf[CHUNK_BYTES];
  const unsigned char *src = t->data;
  for (size_t done = 0; done < numel;) {
    size_t k = numel - done < CHUNK_BYTES / 4 ? numel - done : CHUNK_BYTES / 4;
    for (size_t i = 0; i < k; i++) {
      uint32_t v;
      memcpy(&v, src + 4 * (done + i), 4);
      store_le32(buf + 4 * i, v);
    }
    if (fwrite(buf, 4, k, f) != k)
      return false;
    done += k;
  }
  return true;
}

bool fe_npy_write(const char *path, const IrTensor *t, char *err, size_t errlen) {
  char tstr[256];
  const char *descr = descr_for(t->type.dtype);
  if (!descr)
    return sup_errf(err, errlen, "cannot write dtype '%s' to .npy (q8c writes f32, i8, u8, i32, i64)",
                    ir_dtype_name(t->type.dtype));
  if (t->type.rank < 0 || t->type.rank > IR_MAX_RANK)
    return sup_errf(err, errlen, "rank %d is outside 0..%d", t->type.rank, IR_MAX_RANK);
  for (int i = 0; i < t->type.rank; i++) {
    if (t->type.dims[i] < 0)
      return sup_errf(err, errlen, "cannot write %s to .npy: dimension %d is %s",
                      ir_type_str(&t->type, tstr, sizeof tstr), i,
                      t->type.dims[i] == IR_DIM_BATCH ? "'?' (bind the batch size first)" : "negative");
  }
  int64_t numel;
  size_t size = ir_dtype_size(t->type.dtype);
  if (!checked_numel(t->type.dims, t->type.rank, &numel) || (uint64_t)numel > SIZE_MAX / size)
    return sup_errf(err, errlen, "cannot write %s to .npy: too many elements",
                    ir_type_str(&t->type, tstr, sizeof tstr));
  if (numel > 0 && !t->data)
    return sup_errf(err, errlen, "cannot write %s to .npy: the tensor has no data",
                    ir_type_str(&t->type, tstr, sizeof tstr));

  /* numpy's own spelling, padded with spaces and a newline so that the data
   * starts at a multiple of 64 bytes (the preamble is 10 bytes). */
  char shape[IR_MAX_RANK * 22 + 4];
  char header[512];
  shape_str(t->type.dims, t->type.rank, shape, sizeof shape);
  int n = snprintf(header, sizeof header, "{'descr': '%s', 'fortran_order': False, 'shape': %s, }",
                   descr, shape);
  size_t hlen = (size_t)n + 1;
  size_t pad = (64 - (10 + hlen) % 64) % 64;
  memset(header + n, ' ', pad);
  hlen += pad;
  header[hlen - 1] = '\n';
  unsigned char pre[10];
  memcpy(pre, MAGIC, 6);
  pre[6] = 1;
  pre[7] = 0;
  pre[8] = (unsigned char)hlen;
  pre[9] = (unsigned char)(hlen >> 8);

  FILE *f = fopen(path, "wb");
  if (!f)
    return sup_errf(err, errlen, "cannot open '%s' for writing: %s", path, strerror(errno));
  bool ok = fwrite(pre, 1, sizeof pre, f) == sizeof pre && fwrite(header, 1, hlen, f) == hlen &&
            write_all(f, t, (size_t)numel);
  int saved = errno;
  if (fclose(f) != 0 && ok) {
    ok = false;
    saved = errno;
  }
  if (!ok) {
    /* A half-written array must not be mistaken for a whole one later. */
    remove(path);
    return sup_errf(err, errlen, "cannot write '%s': %s", path, strerror(saved));
  }
  return true;
}

/* ---- streaming along axis 0 ---- */

bool fe_npy_open(FeNpyReader *r, const char *path, char *err, size_t errlen) {
  memset(r, 0, sizeof *r);
  FILE *f = fopen(path, "rb");
  if (!f)
    return sup_errf(err, errlen, "cannot open '%s': %s", path, strerror(errno));
  NpyInfo info;
  if (!read_preamble(f, &info, err, errlen)) {
    fclose(f);
    return false;
  }
  if (info.type.rank == 0) {
    fclose(f);
    return sup_errf(err, errlen, "cannot read a scalar row by row: streaming needs rank >= 1");
  }
  r->f = f;
  r->type = info.type;
  r->file_dtype_size = info.kind->file_size;
  r->file_is_f64 = info.kind->is_f64;
  r->rows_read = 0;
  return true;
}

int64_t fe_npy_read_rows(FeNpyReader *r, void *dst, int64_t max_rows, char *err, size_t errlen) {
  if (!r->f) {
    sup_errf(err, errlen, "the .npy reader is not open");
    return -1;
  }
  if (max_rows < 0) {
    sup_errf(err, errlen, "cannot read %" PRId64 " rows", max_rows);
    return -1;
  }
  int64_t left = r->type.dims[0] - r->rows_read;
  int64_t rows = max_rows < left ? max_rows : left;
  if (rows == 0)
    return 0;
  /* The whole array's size was checked at open, so no product here overflows. */
  int64_t row_elems = 1;
  for (int i = 1; i < r->type.rank; i++)
    row_elems *= r->type.dims[i];
  uint64_t row_bytes = (uint64_t)row_elems * (uint64_t)r->file_dtype_size;
  uint64_t total = (uint64_t)r->type.dims[0] * row_bytes;
  if (!read_elems(r->f, r->file_dtype_size, r->file_is_f64, dst, (uint64_t)(rows * row_elems),
                  (uint64_t)r->rows_read * row_bytes, total, err, errlen))
    return -1;
  r->rows_read += rows;
  return rows;
}

void fe_npy_close(FeNpyReader *r) {
  if (r->f)
    fclose(r->f);
  r->f = NULL;
}
