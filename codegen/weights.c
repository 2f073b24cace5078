/* weights.c: the weights file (--weights-out): the packed weights of a
 * model library written to a file of their own, which the runtime maps
 * read-only (runtime/weights.c), instead of into the library's constants.
 *
 *   file:    header (64 bytes) | payload
 *   header:  "Q8CWGHT1" | u64 payload bytes | u64 checksum | zeros
 *   payload: each kernel's packed weights, 64-byte aligned, in the order the
 *            kernels were emitted; a layer's weights once, whatever the
 *            number of variants reading them (the shared layout,
 *            CgGemm.pack_nr)
 *
 * The kernels read their weights at `*NAME.weights + offset`, NAME.weights a
 * pointer the runtime sets when it maps the file; the library exports
 * `q8_weights` (q8_weights_desc, q8model.h), which names the file and holds
 * its payload size and checksum, so a missing, truncated or other model's
 * file is refused at load. The checksum is FNV-1a over the payload's 64-bit
 * words (the header carries it: loading compares headers, never rereads the
 * payload).
 *
 * The packed bytes go to the file as each kernel is emitted and are freed:
 * they are never LLVM constants, and the object file and the library hold
 * only code, so neither LLVM's memory nor the library's 2 GB reach of
 * position-independent code (the small code model's ±2 GB) limits the
 * weights' size. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codegen.h"

enum { HEADER = 64, ALIGN = 64 };

typedef struct {
  char *name;
  uint64_t hash;
  size_t size;
  int64_t offset;
} Entry;

struct CgWeights {
  FILE *f;
  char *path;
  int64_t offset;     /* payload bytes written */
  uint64_t checksum;  /* over the payload so far */
  LLVMValueRef base;  /* NAME.weights: the mapped payload's address */
  Entry *entries;
  int n, cap;
  bool failed;
  char err[256];
};

static uint64_t fnv_words(uint64_t h, const void *data, size_t n) {
  const unsigned char *p = data;
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    uint64_t w;
    memcpy(&w, p + i, 8);
    h = (h ^ w) * 1099511628211u;
  }
  if (i < n) {
    uint64_t w = 0;
    memcpy(&w, p + i, n - i);
    h = (h ^ w) * 1099511628211u;
  }
  return h;
}

static bool put(CgWeights *w, const void *data, size_t n) {
  if (w->failed)
    return false;
  if (fwrite(data, 1, n, w->f) != n) {
    snprintf(w->err, sizeof w->err, "cannot write %s: %s", w->path, strerror(errno));
    return !(w->failed = true);
  }
  /* Every write is a multiple of 8 bytes (the padding makes it so), so the
   * words hashed are the payload's whatever the pieces. */
  w->checksum = fnv_words(w->checksum, data, n);
  w->offset += (int64_t)n;
  return true;
}

CgWeights *cg_weights_open(const char *path, char *err, size_t errlen) {
  CgWeights *w = calloc(1, sizeof *w);
  if (!w || !(w->path = strdup(path))) {
    free(w);
    snprintf(err, errlen, "out of memory");
    return NULL;
  }
  w->f = fopen(path, "wb");
  if (!w->f) {
    snprintf(err, errlen, "cannot write %s: %s", path, strerror(errno));
    free(w->path);
    free(w);
    return NULL;
  }
  static const char zeros[HEADER];
  fwrite(zeros, 1, HEADER, w->f); /* the header, written last */
  w->checksum = 14695981039346656037u;
  return w;
}

int64_t cg_weights_add(CgWeights *w, const char *name, const void *data, size_t size) {
  uint64_t h = fnv_words(14695981039346656037u, data, size);
  for (int i = 0; i < w->n; i++)
    if (w->entries[i].size == size && w->entries[i].hash == h &&
        strcmp(w->entries[i].name, name) == 0)
      return w->entries[i].offset;
  if (w->n == w->cap) {
    int cap = w->cap ? 2 * w->cap : 64;
    Entry *e = realloc(w->entries, (size_t)cap * sizeof *e);
    if (!e) {
      snprintf(w->err, sizeof w->err, "out of memory");
      w->failed = true;
      return -1;
    }
    w->entries = e;
    w->cap = cap;
  }
  int64_t at = w->offset;
  static const char zeros[ALIGN];
  size_t pad = (size_t)((ALIGN - (int64_t)size % ALIGN) % ALIGN);
  char *name_copy = strdup(name);
  if (!name_copy || !put(w, data, size) || !put(w, zeros, pad)) {
    free(name_copy);
    if (!w->failed)
      snprintf(w->err, sizeof w->err, "out of memory");
    w->failed = true;
    return -1;
  }
  w->entries[w->n++] = (Entry){name_copy, h, size, at};
  return at;
}

LLVMValueRef cg_weights_base(CgWeights *w, LLVMModuleRef mod) {
  if (!w->base) {
    LLVMTypeRef ptr = LLVMPointerTypeInContext(LLVMGetModuleContext(mod), 0);
    w->base = LLVMAddGlobal(mod, ptr, "q8_weights.base");
    LLVMSetInitializer(w->base, LLVMConstNull(ptr));
    LLVMSetLinkage(w->base, LLVMPrivateLinkage);
  }
  return w->base;
}

bool cg_weights_failed(const CgWeights *w, char *err, size_t errlen) {
  if (w->failed)
    snprintf(err, errlen, "%s", w->err);
  return w->failed;
}

/* q8_weights_desc, q8model.h. */
static void emit_desc(CgWeights *w, LLVMModuleRef mod, const char *file) {
  LLVMContextRef ctx = LLVMGetModuleContext(mod);
  LLVMTypeRef i32 = LLVMInt32TypeInContext(ctx), i64 = LLVMInt64TypeInContext(ctx),
              ptr = LLVMPointerTypeInContext(ctx, 0);
  LLVMValueRef fname =
      cg_private_const(mod, "q8_weights.file", LLVMConstStringInContext2(ctx, file, strlen(file), 0));
  LLVMValueRef refs = LLVMAddGlobal(mod, i64, "q8_weights.refs");
  LLVMSetInitializer(refs, LLVMConstInt(i64, 0, 0));
  LLVMSetLinkage(refs, LLVMPrivateLinkage);
  LLVMValueRef fields[] = {LLVMConstInt(i32, Q8_WEIGHTS_MAGIC, 0),
                           LLVMConstInt(i32, Q8_WEIGHTS_VERSION, 0),
                           fname,
                           LLVMConstInt(i64, (uint64_t)w->offset, 0),
                           LLVMConstInt(i64, w->checksum, 0),
                           cg_weights_base(w, mod),
                           refs};
  LLVMValueRef init = LLVMConstStructInContext(ctx, fields, 7, 0);
  LLVMValueRef g = LLVMAddGlobal(mod, LLVMTypeOf(init), "q8_weights");
  LLVMSetInitializer(g, init);
  LLVMSetGlobalConstant(g, 1);
  (void)ptr;
}

bool cg_weights_finish(CgWeights *w, LLVMModuleRef mod, const char *file, char *err,
                       size_t errlen) {
  unsigned char header[HEADER] = Q8_WEIGHTS_FILE_MAGIC;
  uint64_t n = (uint64_t)w->offset;
  memcpy(header + 8, &n, 8);
  memcpy(header + 16, &w->checksum, 8);
  bool ok = !w->failed && fseek(w->f, 0, SEEK_SET) == 0 &&
            fwrite(header, 1, HEADER, w->f) == HEADER;
  if (fclose(w->f) != 0)
    ok = false;
  w->f = NULL;
  if (!ok) {
    snprintf(err, errlen, "%s", w->failed ? w->err : "cannot write the weights file");
    return false;
  }
  emit_desc(w, mod, file);
  return true;
}

void cg_weights_free(CgWeights *w) {
  if (!w)
    return;
  if (w->f)
    fclose(w->f);
  for (int i = 0; i < w->n; i++)
    free(w->entries[i].name);
  free(w->entries);
  free(w->path);
  free(w);
}
