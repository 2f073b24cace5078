/* list.c: walking comma-separated lists, as command-line options give them
 * (--keep-float %h,@fc1.weight; --print-after quantize,fuse-requant). */
#include <string.h>

#include "support.h"

bool sup_list_next(const char **p, const char **item, size_t *len) {
  if (!*p || !**p)
    return false;
  *item = *p;
  *len = strcspn(*p, ",");
  *p += *len + ((*p)[*len] == ',');
  return true;
}
