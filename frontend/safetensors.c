/* safetensors.c: reading and writing weights in the safetensors format (an
 * 8-byte header length, a JSON header parsed by json.c, then the data), which
 * the model's `weights "file"` directive loads and `@name` constants take
 * their data from. The file is untrusted: every count, offset and size is
 * checked before it is used, with one precise message per problem. The
 * format and the checks are in docs/reliability.md, "The file loaders'
 * checks". */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif
#define _DEFAULT_SOURCE /* madvise */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "frontend.h"

/* The safetensors reference implementation refuses larger headers too; it
 * bounds the memory a hostile header can make the JSON parser use. */
#define MAX_HEADER_LEN 100000000ull

typedef enum { ST_F32, ST_F16, ST_BF16, ST_I8, ST_U8, ST_I32, ST_I64 } StKind;

static const struct {
  const char *name;  /* spelling in the header */
  StKind kind;
  size_t size;       /* bytes per element in the file */
  IrDType load_as;   /* dtype of the loaded tensor */
} st_dtypes[] = {
    {"F32", ST_F32, 4, IR_F32}, {"F16", ST_F16, 2, IR_F32}, {"BF16", ST_BF16, 2, IR_F32},
    {"I8", ST_I8, 1, IR_I8},    {"U8", ST_U8, 1, IR_U8},    {"I32", ST_I32, 4, IR_I32},
    {"I64", ST_I64, 8, IR_I64},
};

/* Valid safetensors dtypes that q8c does not take: told apart from typos.
 * Such a tensor is skipped (a PyTorch state_dict holds a BOOL or U64 buffer
 * the model never uses); using it is the error (FeTensor.unsupported). */
static const char *const st_unsupported[] = {
    "BOOL", "F4",  "F6_E2M3", "F6_E3M2", "F8_E5M2", "F8_E4M3", "F8_E8M0",
    "I16",  "U16", "U32",     "C64",     "F64",     "U64",
};

enum { NDTYPES = sizeof st_dtypes / sizeof st_dtypes[0] };

/* One tensor entry of the header while it is being checked. */
typedef struct {
  const char *name;
  const FeJson *info;
  int index;  /* position in the header, for stable ordering */
  int dt;     /* index into st_dtypes */
  const char *unsupported; /* a valid dtype q8c does not take (then dt < 0) */
  IrType type;
  uint64_t begin, end, numel;
} Entry;

static bool mul_u64(uint64_t a, uint64_t b, uint64_t *out) {
  if (b != 0 && a > UINT64_MAX / b)
    return false;
  *out = a * b;
  return true;
}

/* Element count; a zero dimension makes it 0 even when the other dimensions
 * would overflow together. */
static bool numel_of(const IrType *t, uint64_t *out) {
  for (int i = 0; i < t->rank; i++)
    if (t->dims[i] == 0) {
      *out = 0;
      return true;
    }
  uint64_t n = 1;
  for (int i = 0; i < t->rank; i++)
    if (!mul_u64(n, (uint64_t)t->dims[i], &n))
      return false;
  *out = n;
  return true;
}

/* "F32[2, 3]"; `dtype` is the spelling in the file. */
static const char *type_str(const char *dtype, const IrType *t, char *buf, size_t size) {
  size_t n = (size_t)snprintf(buf, size, "%s[", dtype);
  for (int i = 0; i < t->rank && n < size; i++)
    n += (size_t)snprintf(buf + n, size - n, "%s%lld", i ? ", " : "", (long long)t->dims[i]);
  if (n < size)
    snprintf(buf + n, size - n, "]");
  return buf;
}

/* A JSON number that is a whole number in [0, limit). Doubles hold integers
 * exactly up to 2^53; larger values are off by rounding, which is harmless
 * because no real file has offsets or dimensions that large and they fail the
 * later size checks anyway. "24.0" is accepted as 24. */
static bool json_uint(const FeJson *v, double limit, uint64_t *out) {
  if (v->kind != FE_JSON_NUM || !(v->num >= 0) || !(v->num < limit) || v->num != floor(v->num))
    return false;
  *out = (uint64_t)v->num;
  return true;
}

static int cmp_entry_name(const void *x, const void *y) {
  const Entry *a = *(const Entry *const *)x, *b = *(const Entry *const *)y;
  int c = strcmp(a->name, b->name);
  return c ? c : (a->index > b->index) - (a->index < b->index);
}

static int cmp_entry_offset(const void *x, const void *y) {
  const Entry *a = *(const Entry *const *)x, *b = *(const Entry *const *)y;
  if (a->begin != b->begin)
    return a->begin < b->begin ? -1 : 1;
  if (a->end != b->end)
    return a->end < b->end ? -1 : 1;
  return (a->index > b->index) - (a->index < b->index);
}

static bool check_metadata(const FeJson *meta, char *err, size_t errlen) {
  if (meta->kind != FE_JSON_OBJ)
    return sup_errf(err, errlen, "\"__metadata__\" is not an object of strings");
  for (size_t i = 0; i < meta->len; i++)
    if (meta->items[i].kind != FE_JSON_STR)
      return sup_errf(err, errlen, "\"__metadata__\" is not an object of strings");
  return true;
}

/* Check one tensor entry's dtype, shape and offsets against the data size. */
static bool check_entry(Entry *e, uint64_t data_size, char *err, size_t errlen) {
  const char *name = e->name;
  const FeJson *info = e->info;
  if (info->kind != FE_JSON_OBJ)
    return sup_errf(err, errlen,
                    "tensor '%s': expected an object with \"dtype\", \"shape\" and \"data_offsets\"",
                    name);

  const FeJson *dtype = fe_json_get(info, "dtype");
  if (!dtype)
    return sup_errf(err, errlen, "tensor '%s': missing \"dtype\"", name);
  if (dtype->kind != FE_JSON_STR)
    return sup_errf(err, errlen, "tensor '%s': \"dtype\" is not a string", name);
  e->dt = -1;
  for (int i = 0; i < NDTYPES; i++)
    if (strcmp(dtype->str, st_dtypes[i].name) == 0)
      e->dt = i;
  if (e->dt < 0) {
    for (size_t i = 0; i < sizeof st_unsupported / sizeof st_unsupported[0]; i++)
      if (strcmp(dtype->str, st_unsupported[i]) == 0)
        e->unsupported = dtype->str;
    if (!e->unsupported)
      return sup_errf(err, errlen, "tensor '%s': unknown dtype '%s'", name, dtype->str);
  }

  const FeJson *shape = fe_json_get(info, "shape");
  if (!shape)
    return sup_errf(err, errlen, "tensor '%s': missing \"shape\"", name);
  if (shape->kind != FE_JSON_ARR)
    return sup_errf(err, errlen, "tensor '%s': \"shape\" is not a list of non-negative integers",
                    name);
  if (shape->len > IR_MAX_RANK)
    return sup_errf(err, errlen, "tensor '%s': rank %zu exceeds the maximum of %d", name,
                    shape->len, (int)IR_MAX_RANK);
  e->type.dtype = e->unsupported ? IR_DTYPE_NONE : st_dtypes[e->dt].load_as;
  e->type.rank = (int)shape->len;
  for (size_t i = 0; i < shape->len; i++) {
    uint64_t d;
    if (!json_uint(&shape->items[i], 9223372036854775808.0, &d))
      return sup_errf(err, errlen, "tensor '%s': \"shape\" is not a list of non-negative integers",
                      name);
    e->type.dims[i] = (int64_t)d;
  }

  const FeJson *offs = fe_json_get(info, "data_offsets");
  if (!offs)
    return sup_errf(err, errlen, "tensor '%s': missing \"data_offsets\"", name);
  if (offs->kind != FE_JSON_ARR || offs->len != 2 ||
      !json_uint(&offs->items[0], 18446744073709551616.0, &e->begin) ||
      !json_uint(&offs->items[1], 18446744073709551616.0, &e->end))
    return sup_errf(err, errlen,
                    "tensor '%s': \"data_offsets\" is not a pair of non-negative integers", name);
  if (e->end < e->begin)
    return sup_errf(err, errlen, "tensor '%s': data_offsets [%llu, %llu] end before they begin",
                    name, (unsigned long long)e->begin, (unsigned long long)e->end);
  if (e->end > data_size)
    return sup_errf(err, errlen,
                    "tensor '%s': data_offsets [%llu, %llu] are past the end of the data (%llu bytes)",
                    name, (unsigned long long)e->begin, (unsigned long long)e->end,
                    (unsigned long long)data_size);
  /* A skipped tensor's bytes only take part in the overlap check. */
  if (e->unsupported)
    return true;

  char ts[256];
  uint64_t file_bytes, load_bytes;
  if (!numel_of(&e->type, &e->numel) || !mul_u64(e->numel, st_dtypes[e->dt].size, &file_bytes) ||
      !mul_u64(e->numel, ir_dtype_size(e->type.dtype), &load_bytes) || load_bytes > SIZE_MAX)
    return sup_errf(err, errlen, "tensor '%s': %s has too many elements", name,
                    type_str(st_dtypes[e->dt].name, &e->type, ts, sizeof ts));
  if (e->end - e->begin != file_bytes)
    return sup_errf(err, errlen, "tensor '%s': data_offsets span %llu bytes but %s needs %llu",
                    name, (unsigned long long)(e->end - e->begin),
                    type_str(st_dtypes[e->dt].name, &e->type, ts, sizeof ts),
                    (unsigned long long)file_bytes);
  /* In memory (F16 and BF16 widened to f32) it must fit the memory cap. */
  char why[160];
  if (!ir_bytes_allowed(load_bytes, why, sizeof why))
    return sup_errf(err, errlen, "tensor '%s': %s %s", name,
                    type_str(st_dtypes[e->dt].name, &e->type, ts, sizeof ts), why);
  return true;
}

static uint32_t load_u32(const unsigned char *p) {
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static float f32_from_bits(uint32_t bits) {
  float f;
  memcpy(&f, &bits, sizeof f);
  return f;
}

/* Copy (and widen) one checked tensor into arena memory. */
static bool load_entry(IrArena *a, const Entry *e, const unsigned char *src, FeTensor *t,
                       char *err, size_t errlen) {
  size_t n = (size_t)e->numel;
  size_t nbytes = n * ir_dtype_size(e->type.dtype);
  void *dst = ir_alloc_data(a, nbytes);
  if (!dst)
    return sup_errf(err, errlen, "tensor '%s': out of memory for %zu bytes", e->name, nbytes);
  switch (st_dtypes[e->dt].kind) {
  case ST_F32:
    for (size_t i = 0; i < n; i++)
      ((float *)dst)[i] = f32_from_bits(load_u32(src + 4 * i));
    break;
  case ST_I32:
    for (size_t i = 0; i < n; i++)
      ((int32_t *)dst)[i] = (int32_t)load_u32(src + 4 * i);
    break;
  case ST_F16:
    ir_widen_f32(IR_STORED_F16, src, n, dst);
    break;
  case ST_BF16:
    ir_widen_f32(IR_STORED_BF16, src, n, dst);
    break;
  case ST_I64:
    for (size_t i = 0; i < n; i++)
      ((int64_t *)dst)[i] = (int64_t)((uint64_t)load_u32(src + 8 * i) |
                                      (uint64_t)load_u32(src + 8 * i + 4) << 32);
    break;
  case ST_I8:
  case ST_U8:
    if (n)
      memcpy(dst, src, n);
    break;
  }
  t->name = e->name;
  t->type = e->type;
  t->data = dst;
  t->nbytes = nbytes;
  return true;
}

/* One checked f32 tensor left in the mapping: a view of its bytes. */
static bool view_entry(const Entry *e, const unsigned char *src, FeTensor *t, FeView *v) {
  StKind k = st_dtypes[e->dt].kind;
  if (k != ST_F32 && k != ST_F16 && k != ST_BF16)
    return false;
  t->name = e->name;
  t->type = e->type;
  t->data = NULL;
  t->nbytes = (size_t)e->numel * sizeof(float);
  v->is_view = true;
  v->stored = k == ST_F32 ? IR_STORED_F32 : k == ST_F16 ? IR_STORED_F16 : IR_STORED_BF16;
  v->src = src;
  return true;
}

/* The pages of [p, p + n) of a read-only private file mapping dropped from
 * memory: they are read again from the file if touched. */
void fe_drop_pages(const void *p, size_t n) {
  long page = sysconf(_SC_PAGESIZE);
  if (page <= 0 || n == 0)
    return;
  uintptr_t lo = (uintptr_t)p / (uintptr_t)page * (uintptr_t)page;
  uintptr_t hi = ((uintptr_t)p + n + (uintptr_t)page - 1) / (uintptr_t)page * (uintptr_t)page;
  madvise((void *)lo, hi - lo, MADV_DONTNEED);
}

/* fe_safetensors_parse; `mapped`: bytes is a private read-only mapping of
 * the file, whose pages each tensor's are dropped once it is converted, so
 * that reading a file holds about one tensor of it at a time; `views`: the
 * mapping stays, and its f32 tensors are left in it as views. */
static bool parse(IrArena *a, const unsigned char *bytes, size_t size, FeTensorSet *out,
                  char *err, size_t errlen, bool mapped, bool views) {
  out->n = 0;
  out->tensors = NULL;
  out->nskipped = 0;
  out->skipped = NULL;
  out->views = NULL;
  if (err && errlen)
    err[0] = '\0';
  if (!bytes)
    size = 0;
  if (size < 8)
    return sup_errf(err, errlen, "file is too short to be safetensors (%zu bytes)", size);
  uint64_t hlen = (uint64_t)load_u32(bytes) | (uint64_t)load_u32(bytes + 4) << 32;
  if (hlen > size - 8)
    return sup_errf(err, errlen, "header length %llu is past the end of the file (%zu bytes)",
                    (unsigned long long)hlen, size);
  if (hlen > MAX_HEADER_LEN)
    return sup_errf(err, errlen, "header length %llu exceeds the limit of %llu bytes",
                    (unsigned long long)hlen, MAX_HEADER_LEN);
  const unsigned char *data = bytes + 8 + hlen;
  uint64_t data_size = size - 8 - hlen;

  char jerr[256];
  FeJson *root = fe_json_parse(a, (const char *)bytes + 8, (size_t)hlen, jerr, sizeof jerr);
  if (!root) {
    /* Say which JSON is invalid without repeating "invalid JSON". */
    static const char prefix[] = "invalid JSON: ";
    if (strncmp(jerr, prefix, sizeof prefix - 1) == 0)
      return sup_errf(err, errlen, "invalid JSON header: %s", jerr + sizeof prefix - 1);
    return sup_errf(err, errlen, "%s", jerr);
  }
  if (root->kind != FE_JSON_OBJ)
    return sup_errf(err, errlen, "header is not a JSON object");

  /* Gather the tensor entries, setting the metadata aside. */
  size_t nent = 0;
  bool seen_meta = false;
  if (root->len > INT32_MAX) /* FeTensorSet counts with an int */
    return sup_errf(err, errlen, "header has too many entries (%zu)", root->len);
  Entry *ents = ir_alloc_data(a, root->len * sizeof *ents);
  Entry **order = ir_alloc_data(a, root->len * sizeof *order);
  if (!ents || !order)
    return sup_errf(err, errlen, "out of memory");
  for (size_t i = 0; i < root->len; i++) {
    if (strcmp(root->keys[i], "__metadata__") == 0) {
      if (seen_meta)
        return sup_errf(err, errlen, "duplicate \"__metadata__\"");
      seen_meta = true;
      if (!check_metadata(&root->items[i], err, errlen))
        return false;
      continue;
    }
    ents[nent] = (Entry){.name = root->keys[i], .info = &root->items[i], .index = (int)nent};
    order[nent] = &ents[nent];
    nent++;
  }

  /* Names by sorting, so that a header of many tensors stays fast. */
  if (nent > 1)
    qsort(order, nent, sizeof *order, cmp_entry_name);
  for (size_t i = 1; i < nent; i++)
    if (strcmp(order[i - 1]->name, order[i]->name) == 0)
      return sup_errf(err, errlen, "duplicate tensor '%s'", order[i]->name);

  for (size_t i = 0; i < nent; i++)
    if (!check_entry(&ents[i], data_size, err, errlen))
      return false;

  /* Overlap: sweep the ranges by start, remembering the one reaching
   * furthest. Empty tensors occupy no bytes and overlap nothing. */
  if (nent > 1)
    qsort(order, nent, sizeof *order, cmp_entry_offset);
  const Entry *reach = NULL;
  for (size_t i = 0; i < nent; i++) {
    const Entry *e = order[i];
    if (e->begin == e->end)
      continue;
    if (reach && e->begin < reach->end)
      return sup_errf(
          err, errlen, "tensors '%s' and '%s' overlap in the data ([%llu, %llu] and [%llu, %llu])",
          reach->name, e->name, (unsigned long long)reach->begin, (unsigned long long)reach->end,
          (unsigned long long)e->begin, (unsigned long long)e->end);
    if (!reach || e->end > reach->end)
      reach = e;
  }

  FeTensor *ts = ir_alloc_data(a, nent * sizeof *ts);
  if (!ts)
    return sup_errf(err, errlen, "out of memory");
  FeSkipped *skipped = ir_alloc_data(a, nent * sizeof *skipped);
  FeView *fv = views ? ir_alloc_data(a, nent * sizeof *fv + 1) : NULL;
  if (!skipped || (views && !fv))
    return sup_errf(err, errlen, "out of memory");
  size_t nt = 0, ns = 0;
  for (size_t i = 0; i < nent; i++) {
    bool viewed = false;
    if (ents[i].unsupported)
      skipped[ns++] = (FeSkipped){ents[i].name, ents[i].unsupported};
    else if (views && view_entry(&ents[i], data + ents[i].begin, &ts[nt], &fv[nt]))
      viewed = true, nt++;
    else if (!load_entry(a, &ents[i], data + ents[i].begin, &ts[nt++], err, errlen))
      return false;
    if (mapped && !viewed)
      fe_drop_pages(data + ents[i].begin, (size_t)(ents[i].end - ents[i].begin));
  }
  out->n = (int)nt;
  out->tensors = ts;
  out->nskipped = (int)ns;
  out->skipped = skipped;
  out->views = fv;
  return true;
}

bool fe_safetensors_parse(IrArena *a, const unsigned char *bytes, size_t size, FeTensorSet *out,
                          char *err, size_t errlen) {
  return parse(a, bytes, size, out, err, errlen, false, false);
}

/* The mapping fe_safetensors_map leaves for the arena to unmap. */
typedef struct {
  void *p;
  size_t n;
} Mapping;

static void unmap(void *arg) {
  Mapping *mp = arg;
  munmap(mp->p, mp->n);
}

/* fe_safetensors_read, or fe_safetensors_map with `views`. */
static bool read_file(IrArena *a, const char *path, FeTensorSet *out, char *err, size_t errlen,
                      bool views) {
  out->n = 0;
  out->tensors = NULL;
  out->nskipped = 0;
  out->skipped = NULL;
  out->views = NULL;
  FILE *f = fopen(path, "rb");
  if (!f)
    return sup_errf(err, errlen, "cannot open: %s", strerror(errno));
  /* Size the buffer from fstat when possible; keep reading past it anyway in
   * case the file grows or is not a regular file. */
  struct stat st;
  size_t cap = 64 * 1024, len = 0;
  /* The whole file is held in memory, so the memory cap bounds it too; a
   * pipe (or /dev/zero) has no size to check first, so the loop checks as
   * the buffer grows. */
  uint64_t limit;
  char why[160];
  if (!ir_max_tensor_bytes(&limit, why, sizeof why)) {
    fclose(f);
    return sup_errf(err, errlen, "%s", why);
  }
  if (fstat(fileno(f), &st) == 0 && S_ISREG(st.st_mode) && st.st_size >= 0) {
    if (!ir_bytes_allowed((uint64_t)st.st_size, why, sizeof why)) {
      fclose(f);
      return sup_errf(err, errlen, "the file %s", why);
    }
    cap = (size_t)st.st_size + 1;
    /* A regular file is mapped, not copied: its tensors are converted one
     * at a time and their pages let go (parse), so the file never sits in
     * memory beside the tensors made from it. */
    void *map = st.st_size > 0 ? mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE,
                                      fileno(f), 0)
                               : MAP_FAILED;
    if (map != MAP_FAILED) {
      fclose(f);
      bool ok = parse(a, map, (size_t)st.st_size, out, err, errlen, true, views);
      if (views) {
        /* The views read the mapping until the arena (the module) goes. */
        Mapping *mp = ir_alloc(a, sizeof *mp);
        *mp = (Mapping){map, (size_t)st.st_size};
        ir_arena_defer(a, unmap, mp);
      } else {
        munmap(map, (size_t)st.st_size);
      }
      return ok;
    }
  }
  unsigned char *buf = malloc(cap);
  if (!buf) {
    fclose(f);
    return sup_errf(err, errlen, "out of memory reading the file");
  }
  for (;;) {
    if (len == cap) {
      if ((uint64_t)cap > limit) {
        free(buf);
        fclose(f);
        return sup_errf(err, errlen,
                        "the file is larger than the limit of %llu bytes (Q8_MAX_TENSOR_BYTES)",
                        (unsigned long long)limit);
      }
      /* limit <= 2^60, so neither product overflows. */
      size_t next = (uint64_t)cap > limit / 2 ? (size_t)limit + 1 : cap * 2;
      unsigned char *nb = realloc(buf, next);
      if (!nb) {
        free(buf);
        fclose(f);
        return sup_errf(err, errlen, "out of memory reading the file");
      }
      buf = nb;
      cap = next;
    }
    size_t got = fread(buf + len, 1, cap - len, f);
    len += got;
    if (got == 0) {
      if (ferror(f)) {
        int e = errno;
        free(buf);
        fclose(f);
        return sup_errf(err, errlen, "cannot read: %s", strerror(e));
      }
      break;
    }
  }
  fclose(f);
  bool ok = fe_safetensors_parse(a, buf, len, out, err, errlen);
  free(buf);
  return ok;
}

bool fe_safetensors_read(IrArena *a, const char *path, FeTensorSet *out, char *err,
                         size_t errlen) {
  return read_file(a, path, out, err, errlen, false);
}

bool fe_safetensors_map(IrArena *a, const char *path, FeTensorSet *out, char *err,
                        size_t errlen) {
  return read_file(a, path, out, err, errlen, true);
}

const FeTensor *fe_tensorset_find(const FeTensorSet *s, const char *name) {
  if (!s || !name)
    return NULL;
  for (int i = 0; i < s->n; i++)
    if (strcmp(s->tensors[i].name, name) == 0)
      return &s->tensors[i];
  return NULL;
}

/* ---- writing ---- */

typedef SupBuf Buf; /* the header under construction */

static void buf_add(Buf *b, const char *s, size_t n) { sup_buf_put(b, s, n); }

static void buf_str(Buf *b, const char *s) { buf_add(b, s, strlen(s)); }

static void buf_u64(Buf *b, uint64_t v) {
  char t[32];
  buf_add(b, t, (size_t)snprintf(t, sizeof t, "%llu", (unsigned long long)v));
}

/* A name as a JSON string: quotes, backslashes and control characters
 * escaped; other bytes (UTF-8) as they are. */
static void buf_json_string(Buf *b, const char *s) {
  buf_add(b, "\"", 1);
  for (; *s; s++) {
    unsigned char c = (unsigned char)*s;
    if (c == '"' || c == '\\') {
      char esc[2] = {'\\', (char)c};
      buf_add(b, esc, 2);
    } else if (c < 0x20) {
      char esc[8];
      buf_add(b, esc, (size_t)snprintf(esc, sizeof esc, "\\u%04x", c));
    } else {
      buf_add(b, (const char *)&c, 1);
    }
  }
  buf_add(b, "\"", 1);
}

static const char *write_dtype_name(IrDType t) {
  switch (t) {
  case IR_F32: return "F32";
  case IR_I8: return "I8";
  case IR_U8: return "U8";
  case IR_I32: return "I32";
  case IR_I64: return "I64";
  default: return NULL;
  }
}

static int cmp_tensor_name(const void *x, const void *y) {
  const FeTensor *a = *(const FeTensor *const *)x, *b = *(const FeTensor *const *)y;
  return strcmp(a->name, b->name);
}

/* Check what the caller passed: a bad tensor would write a file that the
 * reader (rightly) refuses. */
static bool check_for_write(const FeTensor *tensors, int n, char *err, size_t errlen) {
  for (int i = 0; i < n; i++) {
    const FeTensor *t = &tensors[i];
    if (!t->name)
      return sup_errf(err, errlen, "tensor %d has no name", i);
    if (strcmp(t->name, "__metadata__") == 0)
      return sup_errf(err, errlen, "tensor name '__metadata__' is reserved");
    const char *dt = write_dtype_name(t->type.dtype);
    if (!dt)
      return sup_errf(err, errlen, "tensor '%s': cannot write dtype %d", t->name,
                      (int)t->type.dtype);
    if (t->type.rank < 0 || t->type.rank > IR_MAX_RANK)
      return sup_errf(err, errlen, "tensor '%s': rank %d exceeds the maximum of %d", t->name,
                      t->type.rank, (int)IR_MAX_RANK);
    for (int d = 0; d < t->type.rank; d++)
      if (t->type.dims[d] < 0)
        return sup_errf(err, errlen, "tensor '%s': dimension %d is not a concrete size", t->name,
                        d);
    uint64_t numel, nbytes;
    char ts[256];
    if (!numel_of(&t->type, &numel) || !mul_u64(numel, ir_dtype_size(t->type.dtype), &nbytes))
      return sup_errf(err, errlen, "tensor '%s': %s has too many elements", t->name,
                      type_str(dt, &t->type, ts, sizeof ts));
    if (nbytes != t->nbytes)
      return sup_errf(err, errlen, "tensor '%s': nbytes is %zu but %s needs %llu", t->name,
                      t->nbytes, type_str(dt, &t->type, ts, sizeof ts), (unsigned long long)nbytes);
    if (nbytes && !t->data)
      return sup_errf(err, errlen, "tensor '%s': no data", t->name);
  }
  if (n < 2)
    return true;
  const FeTensor **order = malloc((size_t)n * sizeof *order);
  if (!order)
    return sup_errf(err, errlen, "out of memory");
  for (int i = 0; i < n; i++)
    order[i] = &tensors[i];
  qsort(order, (size_t)n, sizeof *order, cmp_tensor_name);
  for (int i = 1; i < n; i++)
    if (strcmp(order[i - 1]->name, order[i]->name) == 0) {
      sup_errf(err, errlen, "duplicate tensor '%s'", order[i]->name);
      free(order);
      return false;
    }
  free(order);
  return true;
}

/* The tensor's elements in little-endian order. */
static bool write_data(FILE *f, const FeTensor *t) {
  if (ir_dtype_size(t->type.dtype) == 1)
    return t->nbytes == 0 || fwrite(t->data, 1, t->nbytes, f) == t->nbytes;
  const unsigned char *src = t->data;
  unsigned char chunk[4096];
  for (size_t done = 0; done < t->nbytes;) {
    size_t k = t->nbytes - done < sizeof chunk ? t->nbytes - done : sizeof chunk;
    for (size_t i = 0; i < k; i += 4) {
      uint32_t v;
      memcpy(&v, src + done + i, 4);
      chunk[i] = (unsigned char)v;
      chunk[i + 1] = (unsigned char)(v >> 8);
      chunk[i + 2] = (unsigned char)(v >> 16);
      chunk[i + 3] = (unsigned char)(v >> 24);
    }
    if (fwrite(chunk, 1, k, f) != k)
      return false;
    done += k;
  }
  return true;
}

bool fe_safetensors_write(const char *path, const FeTensor *tensors, int n, char *err,
                          size_t errlen) {
  if (n < 0 || (n > 0 && !tensors))
    return sup_errf(err, errlen, "no tensors to write");
  if (!check_for_write(tensors, n, err, errlen))
    return false;

  /* The header, tensors in the given order and packed back to back. */
  Buf h = {0};
  uint64_t offset = 0;
  buf_str(&h, "{");
  for (int i = 0; i < n; i++) {
    const FeTensor *t = &tensors[i];
    if (i)
      buf_str(&h, ",");
    buf_json_string(&h, t->name);
    buf_str(&h, ":{\"dtype\":\"");
    buf_str(&h, write_dtype_name(t->type.dtype));
    buf_str(&h, "\",\"shape\":[");
    for (int d = 0; d < t->type.rank; d++) {
      if (d)
        buf_str(&h, ",");
      buf_u64(&h, (uint64_t)t->type.dims[d]);
    }
    buf_str(&h, "],\"data_offsets\":[");
    buf_u64(&h, offset);
    buf_str(&h, ",");
    offset += t->nbytes;
    buf_u64(&h, offset);
    buf_str(&h, "]}");
  }
  buf_str(&h, "}");
  /* Spaces up to a multiple of 8 keep the data 8-byte aligned in the file,
   * as the format recommends, so that mapped tensors can be used in place. */
  while (!h.oom && h.len % 8)
    buf_str(&h, " ");
  if (h.oom) {
    sup_buf_free(&h);
    return sup_errf(err, errlen, "out of memory");
  }

  FILE *f = fopen(path, "wb");
  if (!f) {
    int e = errno;
    sup_buf_free(&h);
    return sup_errf(err, errlen, "cannot create %s: %s", path, strerror(e));
  }
  unsigned char len8[8];
  for (int i = 0; i < 8; i++)
    len8[i] = (unsigned char)((uint64_t)h.len >> (8 * i));
  bool ok = fwrite(len8, 1, 8, f) == 8 && fwrite(h.p, 1, h.len, f) == h.len;
  for (int i = 0; ok && i < n; i++)
    ok = write_data(f, &tensors[i]);
  int e = errno;
  sup_buf_free(&h);
  if (fclose(f) != 0 && ok) {
    ok = false;
    e = errno;
  }
  if (!ok) {
    remove(path); /* a half-written file would only fail later, less clearly */
    return sup_errf(err, errlen, "cannot write %s: %s", path, strerror(e));
  }
  return true;
}
