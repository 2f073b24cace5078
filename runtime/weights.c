/* weights.c: the weights file of a library compiled with --weights-out
 * (codegen/weights.c writes it; q8_weights_desc in q8model.h). At load the
 * file is found (its recorded name beside the library, or its absolute
 * path), its header is checked against the library's record (size and
 * checksum: another model's or another compilation's file is refused), its
 * length against header + payload (a truncated file is refused), and it is
 * mapped read-only and shared, so processes running one model share its
 * weights through the page cache; the payload's address goes to the
 * library's *base before any entry runs.
 *
 * Several loads of one library share its globals (dlopen returns the same
 * handle), so they share one mapping: refs counts them under a process-wide
 * mutex, the last unmaps. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"
#include "q8model.h"

static pthread_mutex_t weights_mu = PTHREAD_MUTEX_INITIALIZER;

/* The file's path: w->file as it is when absolute, else beside `lib`. */
static char *file_path(const q8_weights_desc *w, const char *lib) {
  const char *slash = w->file[0] == '/' ? NULL : strrchr(lib, '/');
  size_t dir = slash ? (size_t)(slash + 1 - lib) : 0;
  char *p = malloc(dir + strlen(w->file) + 1);
  if (p) {
    memcpy(p, lib, dir);
    strcpy(p + dir, w->file);
  }
  return p;
}

static q8rt_status map_file(const q8_weights_desc *w, const char *path, const char *lib,
                            char *err, size_t errlen) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return q8rt_fail(Q8RT_ERR_LOAD, err, errlen, "cannot open the weights file '%s' of '%s': %s",
                     path, lib, strerror(errno));
  struct stat st;
  unsigned char h[Q8_WEIGHTS_HEADER_BYTES];
  q8rt_status s = Q8RT_OK;
  if (fstat(fd, &st) != 0) {
    s = q8rt_fail(Q8RT_ERR_LOAD, err, errlen, "cannot read the weights file '%s': %s", path,
                  strerror(errno));
  } else if (st.st_size < Q8_WEIGHTS_HEADER_BYTES ||
             pread(fd, h, sizeof h, 0) != (ssize_t)sizeof h ||
             memcmp(h, Q8_WEIGHTS_FILE_MAGIC, 8) != 0) {
    s = q8rt_fail(Q8RT_ERR_FORMAT, err, errlen, "'%s' is not a q8c weights file", path);
  } else {
    uint64_t size, sum;
    memcpy(&size, h + 8, 8);
    memcpy(&sum, h + 16, 8);
    uint64_t want = Q8_WEIGHTS_HEADER_BYTES + w->size;
    if (size != w->size || sum != w->checksum)
      s = q8rt_fail(Q8RT_ERR_FORMAT, err, errlen,
                    "the weights file '%s' is not the one '%s' was compiled with: it holds %llu "
                    "bytes of weights with checksum %016llx, the library expects %llu bytes with "
                    "checksum %016llx",
                    path, lib, (unsigned long long)size, (unsigned long long)sum,
                    (unsigned long long)w->size, (unsigned long long)w->checksum);
    else if ((uint64_t)st.st_size < want)
      s = q8rt_fail(Q8RT_ERR_FORMAT, err, errlen,
                    "the weights file '%s' is truncated: %llu bytes, '%s' expects %llu", path,
                    (unsigned long long)st.st_size, lib, (unsigned long long)want);
    else {
      void *p = mmap(NULL, (size_t)want, PROT_READ, MAP_SHARED, fd, 0);
      if (p == MAP_FAILED)
        s = q8rt_fail(errno == ENOMEM ? Q8RT_ERR_NOMEM : Q8RT_ERR_LOAD, err, errlen,
                      "cannot map the weights file '%s': %s", path, strerror(errno));
      else
        *w->base = (const unsigned char *)p + Q8_WEIGHTS_HEADER_BYTES;
    }
  }
  close(fd);
  return s;
}

q8rt_status q8rt_weights_attach(const q8_weights_desc *w, const char *lib, char *err,
                                size_t errlen) {
  if (w->magic != Q8_WEIGHTS_MAGIC || w->version != Q8_WEIGHTS_VERSION || !w->file ||
      !w->base || !w->refs)
    return q8rt_fail(Q8RT_ERR_FORMAT, err, errlen,
                     "'%s' has a malformed q8_weights record (magic %08x, version %u)", lib,
                     (unsigned)w->magic, (unsigned)w->version);
  char *path = file_path(w, lib);
  if (!path)
    return q8rt_fail(Q8RT_ERR_NOMEM, err, errlen, "out of memory");
  pthread_mutex_lock(&weights_mu);
  q8rt_status s = Q8RT_OK;
  if (*w->refs == 0)
    s = map_file(w, path, lib, err, errlen);
  if (s == Q8RT_OK)
    ++*w->refs;
  pthread_mutex_unlock(&weights_mu);
  free(path);
  return s;
}

void q8rt_weights_detach(const q8_weights_desc *w) {
  if (!w)
    return;
  pthread_mutex_lock(&weights_mu);
  if (*w->refs > 0 && --*w->refs == 0) {
    munmap((void *)((const unsigned char *)*w->base - Q8_WEIGHTS_HEADER_BYTES),
           (size_t)(Q8_WEIGHTS_HEADER_BYTES + w->size));
    *w->base = NULL;
  }
  pthread_mutex_unlock(&weights_mu);
}
