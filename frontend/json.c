/* json.c: a strict RFC 8259 JSON parser, used for safetensors headers
 * (safetensors.c). The header is untrusted input, so the parser accepts
 * exactly the JSON grammar, bounds its nesting, allocates in the caller's
 * arena through ir_alloc_data and converts numbers under the "C" locale. What
 * it refuses and why are in docs/reliability.md, "The file loaders' checks". */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif
#include <locale.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "frontend.h"

enum { MAX_DEPTH = 64 };

typedef struct {
  IrArena *a;
  const unsigned char *s;
  size_t len, pos;
  int depth;
  char *err;
  size_t errlen;
  bool failed;
  locale_t c_locale; /* created on the first number that needs strtod */
} Parser;

/* Growable item array of an array or object under construction. */
typedef struct {
  FeJson *items;
  const char **keys;
  size_t n, cap;
} List;

static bool report(Parser *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static bool report(Parser *p, const char *fmt, ...) {
  if (p->failed)
    return false; /* keep the first, most precise, message */
  p->failed = true;
  va_list ap;
  va_start(ap, fmt);
  sup_verrf(p->err, p->errlen, fmt, ap);
  va_end(ap);
  return false;
}

/* A syntax error at byte offset `at`; the message says what was expected. */
static bool fail(Parser *p, size_t at, const char *what) {
  return report(p, "invalid JSON: %s at offset %zu", what, at);
}

static bool out_of_memory(Parser *p) { return report(p, "out of memory"); }

static void skip_ws(Parser *p) {
  while (p->pos < p->len) {
    unsigned char c = p->s[p->pos];
    if (c != ' ' && c != '\t' && c != '\n' && c != '\r')
      break;
    p->pos++;
  }
}

static bool at_char(const Parser *p, unsigned char c) {
  return p->pos < p->len && p->s[p->pos] == c;
}

static bool is_digit(unsigned char c) { return c >= '0' && c <= '9'; }

static bool list_push(Parser *p, List *l, const FeJson *v, const char *key) {
  if (l->n == l->cap) {
    size_t cap = l->cap ? l->cap * 2 : 4;
    if (cap > SIZE_MAX / sizeof(FeJson))
      return out_of_memory(p);
    FeJson *items = ir_alloc_data(p->a, cap * sizeof *items);
    if (!items)
      return out_of_memory(p);
    if (l->n)
      memcpy(items, l->items, l->n * sizeof *items);
    l->items = items;
    if (key) {
      const char **keys = ir_alloc_data(p->a, cap * sizeof *keys);
      if (!keys)
        return out_of_memory(p);
      if (l->n)
        memcpy(keys, l->keys, l->n * sizeof *keys);
      l->keys = keys;
    }
    l->cap = cap;
  }
  l->items[l->n] = *v;
  if (key)
    l->keys[l->n] = key;
  l->n++;
  return true;
}

static int hex_value(unsigned char c) {
  if (c >= '0' && c <= '9')
    return c - '0';
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  if (c >= 'A' && c <= 'F')
    return c - 'A' + 10;
  return -1;
}

/* The four hex digits at s[i..i+4) within [0, end), or -1. */
static long read_hex4(const unsigned char *s, size_t i, size_t end) {
  if (end - i < 4)
    return -1;
  long v = 0;
  for (int k = 0; k < 4; k++) {
    int h = hex_value(s[i + k]);
    if (h < 0)
      return -1;
    v = v * 16 + h;
  }
  return v;
}

static size_t put_utf8(char *out, unsigned long cp) {
  if (cp < 0x80) {
    out[0] = (char)cp;
    return 1;
  }
  if (cp < 0x800) {
    out[0] = (char)(0xC0 | (cp >> 6));
    out[1] = (char)(0x80 | (cp & 0x3F));
    return 2;
  }
  if (cp < 0x10000) {
    out[0] = (char)(0xE0 | (cp >> 12));
    out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[2] = (char)(0x80 | (cp & 0x3F));
    return 3;
  }
  out[0] = (char)(0xF0 | (cp >> 18));
  out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
  out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
  out[3] = (char)(0x80 | (cp & 0x3F));
  return 4;
}

/* Length of the well-formed UTF-8 sequence at s[i] (lead byte >= 0x80) ending
 * before `end`, or 0. Rejects overlong forms, encoded surrogates and code
 * points past U+10FFFF, as RFC 3629 does. */
static size_t utf8_seq_len(const unsigned char *s, size_t i, size_t end) {
  unsigned char c = s[i];
  size_t n;
  unsigned char lo = 0x80, hi = 0xBF; /* allowed range of the second byte */
  if (c >= 0xC2 && c <= 0xDF) {
    n = 2;
  } else if (c >= 0xE0 && c <= 0xEF) {
    n = 3;
    if (c == 0xE0)
      lo = 0xA0;
    else if (c == 0xED)
      hi = 0x9F;
  } else if (c >= 0xF0 && c <= 0xF4) {
    n = 4;
    if (c == 0xF0)
      lo = 0x90;
    else if (c == 0xF4)
      hi = 0x8F;
  } else {
    return 0;
  }
  if (end - i < n)
    return 0;
  if (s[i + 1] < lo || s[i + 1] > hi)
    return 0;
  for (size_t k = 2; k < n; k++)
    if (s[i + k] < 0x80 || s[i + k] > 0xBF)
      return 0;
  return n;
}

/* The string whose opening quote is at p->pos. Decoded text never is longer
 * than its escaped spelling, so one allocation of the raw length suffices. */
static bool parse_string(Parser *p, const char **out, size_t *outlen) {
  const unsigned char *s = p->s;
  size_t start = p->pos, i = start + 1;
  /* Find the closing quote first, rejecting raw control characters. */
  for (;;) {
    if (i >= p->len)
      return fail(p, start, "unterminated string");
    unsigned char c = s[i];
    if (c == '"')
      break;
    if (c < 0x20) {
      char what[64];
      snprintf(what, sizeof what, "control character 0x%02x in string", c);
      return fail(p, i, what);
    }
    i += c == '\\' ? 2 : 1;
  }
  size_t end = i;
  char *buf = ir_alloc_data(p->a, end - start);
  if (!buf)
    return out_of_memory(p);
  size_t n = 0;
  for (i = start + 1; i < end;) {
    unsigned char c = s[i];
    if (c >= 0x80) {
      size_t k = utf8_seq_len(s, i, end);
      if (!k)
        return fail(p, i, "invalid UTF-8 in string");
      memcpy(buf + n, s + i, k);
      n += k;
      i += k;
      continue;
    }
    if (c != '\\') {
      buf[n++] = (char)c;
      i++;
      continue;
    }
    unsigned char e = s[i + 1]; /* exists: the scan above stepped over it */
    switch (e) {
    case '"': case '\\': case '/': buf[n++] = (char)e; i += 2; continue;
    case 'b': buf[n++] = '\b'; i += 2; continue;
    case 'f': buf[n++] = '\f'; i += 2; continue;
    case 'n': buf[n++] = '\n'; i += 2; continue;
    case 'r': buf[n++] = '\r'; i += 2; continue;
    case 't': buf[n++] = '\t'; i += 2; continue;
    case 'u': break;
    default: {
      char what[64];
      if (e > 0x20 && e < 0x7F)
        snprintf(what, sizeof what, "invalid escape '\\%c' in string", e);
      else
        snprintf(what, sizeof what, "invalid escape in string");
      return fail(p, i, what);
    }
    }
    long cp = read_hex4(s, i + 2, end);
    if (cp < 0)
      return fail(p, i, "invalid \\u escape in string");
    size_t esc = i;
    i += 6;
    if (cp >= 0xDC00 && cp <= 0xDFFF)
      return fail(p, esc, "unpaired surrogate in string");
    if (cp >= 0xD800 && cp <= 0xDBFF) {
      /* UTF-16 high surrogate: only valid with a low one right after. */
      long lo = end - i >= 2 && s[i] == '\\' && s[i + 1] == 'u' ? read_hex4(s, i + 2, end) : -1;
      if (lo < 0xDC00 || lo > 0xDFFF)
        return fail(p, esc, "unpaired surrogate in string");
      cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
      i += 6;
    }
    n += put_utf8(buf + n, (unsigned long)cp);
  }
  buf[n] = '\0';
  p->pos = end + 1;
  *out = buf;
  *outlen = n;
  return true;
}

static bool parse_number(Parser *p, double *out) {
  const unsigned char *s = p->s;
  size_t start = p->pos, i = start;
  if (i < p->len && s[i] == '-')
    i++;
  if (i < p->len && s[i] == '0') {
    i++;
    if (i < p->len && is_digit(s[i]))
      return fail(p, start, "invalid number (leading zero)");
  } else if (i < p->len && is_digit(s[i])) {
    while (i < p->len && is_digit(s[i]))
      i++;
  } else {
    return fail(p, start, "invalid number");
  }
  if (i < p->len && s[i] == '.') {
    i++;
    if (i >= p->len || !is_digit(s[i]))
      return fail(p, start, "invalid number (expected a digit after '.')");
    while (i < p->len && is_digit(s[i]))
      i++;
  }
  if (i < p->len && (s[i] == 'e' || s[i] == 'E')) {
    i++;
    if (i < p->len && (s[i] == '+' || s[i] == '-'))
      i++;
    if (i >= p->len || !is_digit(s[i]))
      return fail(p, start, "invalid number (expected a digit in the exponent)");
    while (i < p->len && is_digit(s[i]))
      i++;
  }

  /* strtod needs a terminated copy; the text is not NUL-terminated. */
  size_t n = i - start;
  char small[64];
  char *buf = n < sizeof small ? small : malloc(n + 1);
  if (!buf)
    return out_of_memory(p);
  memcpy(buf, s + start, n);
  buf[n] = '\0';
  if (!p->c_locale) {
    p->c_locale = newlocale(LC_NUMERIC_MASK, "C", (locale_t)0);
    if (!p->c_locale) {
      if (buf != small)
        free(buf);
      return out_of_memory(p);
    }
  }
  locale_t old = uselocale(p->c_locale);
  double v = strtod(buf, NULL);
  uselocale(old);
  if (buf != small)
    free(buf);
  if (isinf(v))
    return fail(p, start, "number out of range");
  *out = v;
  p->pos = i;
  return true;
}

static bool parse_literal(Parser *p, FeJson *v) {
  static const struct {
    const char *word;
    FeJsonKind kind;
    bool b;
  } lits[] = {{"true", FE_JSON_BOOL, true}, {"false", FE_JSON_BOOL, false}, {"null", FE_JSON_NULL, false}};
  for (size_t k = 0; k < sizeof lits / sizeof lits[0]; k++) {
    size_t n = strlen(lits[k].word);
    if (p->len - p->pos >= n && memcmp(p->s + p->pos, lits[k].word, n) == 0) {
      v->kind = lits[k].kind;
      v->b = lits[k].b;
      p->pos += n;
      return true;
    }
  }
  return fail(p, p->pos, "invalid literal");
}

static bool parse_value(Parser *p, FeJson *v);

static bool enter(Parser *p) {
  if (++p->depth > MAX_DEPTH)
    return fail(p, p->pos, "nesting deeper than 64");
  p->pos++; /* the opening bracket */
  skip_ws(p);
  return true;
}

static bool parse_array(Parser *p, FeJson *v) {
  if (!enter(p))
    return false;
  List l = {0};
  if (at_char(p, ']')) {
    p->pos++;
  } else {
    for (;;) {
      FeJson item;
      if (!parse_value(p, &item) || !list_push(p, &l, &item, NULL))
        return false;
      skip_ws(p);
      if (at_char(p, ']')) {
        p->pos++;
        break;
      }
      if (!at_char(p, ','))
        return fail(p, p->pos, "expected ',' or ']'");
      p->pos++;
      skip_ws(p);
    }
  }
  p->depth--;
  v->kind = FE_JSON_ARR;
  v->items = l.items;
  v->len = l.n;
  return true;
}

static bool parse_object(Parser *p, FeJson *v) {
  if (!enter(p))
    return false;
  List l = {0};
  if (at_char(p, '}')) {
    p->pos++;
  } else {
    for (;;) {
      if (!at_char(p, '"'))
        return fail(p, p->pos, "expected a string as object key");
      size_t key_at = p->pos, keylen;
      const char *key;
      if (!parse_string(p, &key, &keylen))
        return false;
      /* Keys are handed out as C strings, which cannot hold a NUL; refusing
       * the key beats silently matching a truncated name. */
      if (strlen(key) != keylen)
        return fail(p, key_at, "object key contains \\u0000");
      skip_ws(p);
      if (!at_char(p, ':'))
        return fail(p, p->pos, "expected ':'");
      p->pos++;
      skip_ws(p);
      FeJson item;
      if (!parse_value(p, &item) || !list_push(p, &l, &item, key))
        return false;
      skip_ws(p);
      if (at_char(p, '}')) {
        p->pos++;
        break;
      }
      if (!at_char(p, ','))
        return fail(p, p->pos, "expected ',' or '}'");
      p->pos++;
      skip_ws(p);
    }
  }
  p->depth--;
  v->kind = FE_JSON_OBJ;
  v->items = l.items;
  v->keys = l.keys;
  v->len = l.n;
  return true;
}

/* One value starting at p->pos (whitespace already skipped). */
static bool parse_value(Parser *p, FeJson *v) {
  memset(v, 0, sizeof *v);
  if (p->pos >= p->len)
    return fail(p, p->pos, "expected a value");
  unsigned char c = p->s[p->pos];
  switch (c) {
  case '{':
    return parse_object(p, v);
  case '[':
    return parse_array(p, v);
  case '"':
    v->kind = FE_JSON_STR;
    return parse_string(p, &v->str, &v->len);
  case 't': case 'f': case 'n':
    return parse_literal(p, v);
  default:
    if (c == '-' || is_digit(c)) {
      v->kind = FE_JSON_NUM;
      return parse_number(p, &v->num);
    }
    return fail(p, p->pos, "expected a value");
  }
}

FeJson *fe_json_parse(IrArena *a, const char *text, size_t len, char *err, size_t errlen) {
  static const unsigned char empty[1] = {0};
  Parser p = {
      .a = a,
      .s = text ? (const unsigned char *)text : empty,
      .len = text ? len : 0,
      .err = err,
      .errlen = errlen,
  };
  if (err && errlen)
    err[0] = '\0';
  FeJson *root = ir_alloc_data(a, sizeof *root);
  if (!root) {
    out_of_memory(&p);
    return NULL;
  }
  skip_ws(&p);
  bool ok = parse_value(&p, root);
  if (ok) {
    skip_ws(&p);
    if (p.pos < p.len)
      ok = fail(&p, p.pos, "unexpected data after the value");
  }
  if (p.c_locale)
    freelocale(p.c_locale);
  return ok ? root : NULL;
}

const FeJson *fe_json_get(const FeJson *obj, const char *key) {
  if (!obj || obj->kind != FE_JSON_OBJ || !key)
    return NULL;
  /* The first of duplicate keys wins; callers that care (safetensors tensor
   * names) look for duplicates themselves. */
  for (size_t i = 0; i < obj->len; i++)
    if (strcmp(obj->keys[i], key) == 0)
      return &obj->items[i];
  return NULL;
}
