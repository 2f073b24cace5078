/* diag.c: user-facing error messages, in the form compilers use:
 *
 *   model.ir:7:22: error: linear: input has 784 features but weight
 *   @fc1.weight is f32[256, 700] (expects [256, 784])
 *     %h = linear %x, @fc1.weight, @fc1.bias
 *                     ^
 *
 * Only the first error is kept: later ones are usually consequences of it.
 * Internal errors (bugs in q8c) go through q8_die_at, which aborts with the
 * source position of the check that failed. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ir.h"

void ir_diag_init(IrDiag *d, const char *file, const char *src) {
  memset(d, 0, sizeof *d);
  d->file = file;
  d->src = src;
}

/* Append the source line `line` and a caret under column `col`. Tabs in the
 * prefix are copied so the caret lines up in a terminal. */
static void quote_line(const IrDiag *d, IrLoc loc, char *out, size_t size) {
  const char *p = d->src;
  for (int l = 1; l < loc.line && *p; p++)
    if (*p == '\n')
      l++;
  const char *end = p;
  while (*end && *end != '\n' && end - p < 512)
    end++;
  int len = (int)(end - p);
  size_t n = (size_t)snprintf(out, size, "\n  %.*s\n  ", len, p);
  for (int i = 0; i < loc.col - 1 && i < len && n + 2 < size; i++)
    out[n++] = p[i] == '\t' ? '\t' : ' ';
  if (n + 2 < size) {
    out[n++] = '^';
    out[n] = '\0';
  }
}

bool ir_verror(IrDiag *d, IrLoc loc, const char *fmt, va_list ap) {
  if (d->failed)
    return false;
  d->failed = true;
  size_t n;
  const char *file = d->file ? d->file : "<input>";
  if (loc.line > 0)
    n = (size_t)snprintf(d->msg, sizeof d->msg, "%s:%d:%d: error: ", file, loc.line, loc.col);
  else
    n = (size_t)snprintf(d->msg, sizeof d->msg, "%s: error: ", file);
  if (n < sizeof d->msg)
    n += (size_t)vsnprintf(d->msg + n, sizeof d->msg - n, fmt, ap);
  if (loc.line > 0 && d->src && n < sizeof d->msg)
    quote_line(d, loc, d->msg + n, sizeof d->msg - n);
  return false;
}

bool ir_error(IrDiag *d, IrLoc loc, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  ir_verror(d, loc, fmt, ap);
  va_end(ap);
  return false;
}

_Noreturn void q8_die_at(const char *file, int line, const char *fmt, ...) {
  va_list ap;
  fprintf(stderr, "q8c: internal error at %s:%d: ", file, line);
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fputc('\n', stderr);
  abort();
}
