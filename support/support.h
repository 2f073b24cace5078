/* support.h: the small helpers every layer shares (chibicc's strings.c and
 * hashmap.c, QBE's util.c): growable text buffers, error messages into a
 * caller's buffer, comma-separated lists, and a hashed table of strings.
 *
 * This module sits below every layer and knows nothing of the IR; its prefix
 * is `sup_`. Memory is malloc'd; failures are reported, never fatal: a
 * buffer remembers that an allocation failed, a table put returns false. */
#ifndef Q8_SUPPORT_H
#define Q8_SUPPORT_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- buf.c: a growable, always NUL-terminated string ---- */

/* Zero-initialise (SupBuf b = {0}). `oom` sticks once an allocation failed;
 * later appends do nothing. */
typedef struct {
  char *p;
  size_t len, cap;
  bool oom;
} SupBuf;

void sup_buf_printf(SupBuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void sup_buf_vprintf(SupBuf *b, const char *fmt, va_list ap);
/* Append `n` bytes (text or binary). */
void sup_buf_put(SupBuf *b, const void *data, size_t n);
/* The contents, malloc'd and NUL-terminated, for the caller to free; the
 * buffer is left empty. NULL if an allocation failed. */
char *sup_buf_take(SupBuf *b);
void sup_buf_free(SupBuf *b);

/* ---- errfmt.c: error messages ---- */

/* Format a message into err[errlen] (when err is not NULL) and return false,
 * so that a failing check reads `return sup_errf(err, errlen, "...", ...)`. */
bool sup_errf(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
bool sup_verrf(char *err, size_t errlen, const char *fmt, va_list ap);

/* ---- list.c: comma-separated lists ("a,b,c") ---- */

/* The next item of the list at *p: sets *item and *len (an item may be
 * empty) and advances *p past it and its comma. False at the end of the
 * list (or when *p is NULL). Use:
 *   const char *it; size_t len;
 *   for (const char *p = list; sup_list_next(&p, &it, &len);) ... */
bool sup_list_next(const char **p, const char **item, size_t *len);

/* ---- hash.c: hashing and a string table ---- */

/* FNV-1a over n bytes. */
uint64_t sup_hash(const void *data, size_t n);

/* Strings to pointers, open addressing. Zero-initialise (SupMap t = {0}).
 * The table keeps the key pointers it is given (they must outlive it) and
 * compares keys by contents. A key's item may be set to NULL, which reads
 * as absent; the key stays (so that sup_map_intern still finds it). */
typedef struct {
  struct SupMapSlot {
    const char *key; /* NULL: an empty slot */
    void *item;
    uint64_t hash;
  } *slots;          /* one array, so that a probe reads one cache line */
  size_t cap, count; /* cap: 0 or a power of two */
} SupMap;

/* The item of `key`, or NULL. */
void *sup_map_get(const SupMap *t, const char *key);
/* The table's own pointer for a key equal to `key`, or NULL. */
const char *sup_map_intern(const SupMap *t, const char *key);
/* Make room for `n` keys in all, so that filling the table does not rehash.
 * False when out of memory. */
bool sup_map_reserve(SupMap *t, size_t n);
/* Set the item of `key` (adding the key if new). False when out of memory. */
bool sup_map_put(SupMap *t, const char *key, void *item);
void sup_map_free(SupMap *t);

#endif
