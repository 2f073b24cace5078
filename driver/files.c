/* files.c: '-' as a file name. Standard input can be read only once, yet the
 * driver may need a model's text twice (the pass pipeline and the float
 * reference of --report) and the calibration reader rewinds its file, so
 * standard input is read whole on first use and kept: in memory for the
 * model's text, or in a temporary file for the readers that take a path.
 * Outputs that must be written to a path (a linked library, a .npy) go to a
 * temporary file that is then copied to standard output. Temporary files are
 * removed when the process exits. */
#define _DEFAULT_SOURCE /* mkstemps, realpath */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "driver.h"

enum { MAX_TEMPS = 8 };

static char *stdin_text;
static size_t stdin_len;
static const char *stdin_path;
static char *temps[MAX_TEMPS];
static int ntemps;

bool driver_is_stdio(const char *path) { return path && strcmp(path, "-") == 0; }

static void remove_temps(void) {
  for (int i = 0; i < ntemps; i++) {
    unlink(temps[i]);
    free(temps[i]);
  }
  ntemps = 0;
}

const char *driver_stdin_text(size_t *len) {
  if (!stdin_text) {
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    for (size_t got; buf; n += got) {
      if (n + 1 >= cap) {
        char *bigger = cap < ((size_t)1 << 40) ? realloc(buf, cap *= 2) : NULL;
        if (!bigger) {
          free(buf);
          buf = NULL;
          break;
        }
        buf = bigger;
      }
      got = fread(buf + n, 1, cap - n - 1, stdin);
      if (got == 0)
        break;
    }
    if (!buf) {
      fprintf(stderr, "q8c: error: standard input: out of memory\n");
      return NULL;
    }
    if (ferror(stdin)) {
      fprintf(stderr, "q8c: error: standard input: read error: %s\n", strerror(errno));
      free(buf);
      return NULL;
    }
    buf[n] = '\0';
    stdin_text = buf;
    stdin_len = n;
  }
  if (len)
    *len = stdin_len;
  return stdin_text;
}

const char *driver_temp_file(const char *suffix) {
  const char *dir = getenv("TMPDIR");
  if (!dir || !*dir)
    dir = "/tmp";
  if (ntemps == MAX_TEMPS) {
    fprintf(stderr, "q8c: error: too many temporary files\n");
    return NULL;
  }
  size_t n = strlen(dir) + strlen(suffix) + 32;
  char *path = malloc(n);
  if (!path) {
    fprintf(stderr, "q8c: error: out of memory\n");
    return NULL;
  }
  snprintf(path, n, "%s/q8c-XXXXXX%s", dir, suffix);
  int fd = mkstemps(path, (int)strlen(suffix));
  if (fd < 0) {
    fprintf(stderr, "q8c: error: cannot create a temporary file in %s: %s\n", dir,
            strerror(errno));
    free(path);
    return NULL;
  }
  close(fd);
  if (ntemps == 0)
    atexit(remove_temps);
  temps[ntemps++] = path;
  return path;
}

const char *driver_stdin_file(void) {
  if (stdin_path)
    return stdin_path;
  size_t len;
  const char *text = driver_stdin_text(&len);
  if (!text)
    return NULL;
  bool npy = len >= 6 && memcmp(text, "\x93NUMPY", 6) == 0;
  const char *path = driver_temp_file(npy ? ".npy" : ".safetensors");
  if (!path)
    return NULL;
  FILE *f = fopen(path, "wb");
  if (!f || fwrite(text, 1, len, f) != len || fclose(f) != 0) {
    fprintf(stderr, "q8c: error: cannot write %s (standard input): %s\n", path, strerror(errno));
    return NULL;
  }
  return stdin_path = path;
}

bool driver_copy_to_stdout(const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f) {
    fprintf(stderr, "q8c: error: cannot open %s: %s\n", path, strerror(errno));
    return false;
  }
  char buf[1 << 16];
  bool ok = true;
  for (size_t got; ok && (got = fread(buf, 1, sizeof buf, f)) > 0;)
    ok = fwrite(buf, 1, got, stdout) == got;
  ok = ok && !ferror(f) && fflush(stdout) == 0;
  if (!ok)
    fprintf(stderr, "q8c: error: standard output: write error: %s\n", strerror(errno));
  fclose(f);
  return ok;
}

/* The directory of `path` resolved (realpath) into out[PATH_MAX], and its
 * last component in *base. */
static bool resolve_dir(const char *path, char *out, const char **base) {
  const char *slash = strrchr(path, '/');
  *base = slash ? slash + 1 : path;
  char dir[PATH_MAX];
  if (!slash)
    snprintf(dir, sizeof dir, ".");
  else if (slash == path)
    snprintf(dir, sizeof dir, "/");
  else
    snprintf(dir, sizeof dir, "%.*s", (int)(slash - path), path);
  return realpath(dir, out) != NULL;
}

bool driver_weights_name(const char *lib, const char *weights, char *out, size_t size) {
  char ldir[PATH_MAX], wdir[PATH_MAX];
  const char *lbase, *wbase;
  if (!resolve_dir(lib, ldir, &lbase) || !resolve_dir(weights, wdir, &wbase))
    return false;
  if (strcmp(ldir, wdir) == 0)
    snprintf(out, size, "%s", wbase);
  else
    snprintf(out, size, "%s/%s", strcmp(wdir, "/") == 0 ? "" : wdir, wbase);
  return true;
}
