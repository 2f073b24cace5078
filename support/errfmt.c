/* errfmt.c: error messages written into a caller's buffer, the convention
 * of the file readers (npy, safetensors, JSON) and of the library paths that
 * return a status and a message. */
#include <stdio.h>

#include "support.h"

bool sup_verrf(char *err, size_t errlen, const char *fmt, va_list ap) {
  if (err && errlen > 0)
    vsnprintf(err, errlen, fmt, ap);
  return false;
}

bool sup_errf(char *err, size_t errlen, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  sup_verrf(err, errlen, fmt, ap);
  va_end(ap);
  return false;
}
