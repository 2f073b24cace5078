/* buf.c: growable strings (SupBuf), for printers and reports that build a
 * text of unknown length. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "support.h"

/* Room for `more` bytes plus the NUL. */
static bool reserve(SupBuf *b, size_t more) {
  if (b->oom)
    return false;
  if (b->len + more + 1 <= b->cap)
    return true;
  size_t cap = b->cap ? b->cap : 256;
  while (cap < b->len + more + 1) {
    if (cap > SIZE_MAX / 2) {
      b->oom = true;
      return false;
    }
    cap *= 2;
  }
  char *p = realloc(b->p, cap);
  if (!p) {
    b->oom = true;
    return false;
  }
  b->p = p;
  b->cap = cap;
  return true;
}

void sup_buf_vprintf(SupBuf *b, const char *fmt, va_list ap) {
  if (b->oom)
    return;
  va_list again;
  va_copy(again, ap);
  int n = vsnprintf(NULL, 0, fmt, ap);
  if (n < 0 || !reserve(b, (size_t)n)) {
    b->oom = true;
    va_end(again);
    return;
  }
  vsnprintf(b->p + b->len, (size_t)n + 1, fmt, again);
  va_end(again);
  b->len += (size_t)n;
}

void sup_buf_printf(SupBuf *b, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  sup_buf_vprintf(b, fmt, ap);
  va_end(ap);
}

void sup_buf_put(SupBuf *b, const void *data, size_t n) {
  if (!reserve(b, n))
    return;
  if (n)
    memcpy(b->p + b->len, data, n);
  b->len += n;
  b->p[b->len] = '\0';
}

char *sup_buf_take(SupBuf *b) {
  if (!b->oom && !b->p)
    reserve(b, 0);
  if (b->oom) {
    sup_buf_free(b);
    return NULL;
  }
  char *p = b->p;
  p[b->len] = '\0';
  *b = (SupBuf){0};
  return p;
}

void sup_buf_free(SupBuf *b) {
  free(b->p);
  *b = (SupBuf){0};
}
