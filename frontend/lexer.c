/* lexer.c: splits text IR into tokens, tracking line and column for every
 * token so each diagnostic can point at the exact spot.
 *
 * `;` starts a comment that runs to the end of the line; newlines are
 * otherwise plain white space. Names (after %, @ or as identifiers) are made
 * of letters, digits, `_` and `.`, as docs/ir.md specifies. A signed
 * infinity, `-inf` or `+inf`, is a number token; a bare `inf` is a name,
 * which the parser reads as a number where it expects one.
 *
 * Numbers are read with strtod, which follows the C locale here: the CLI
 * never calls setlocale, and the API sets the locale at its boundary. */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "frontend.h"

void fe_lex_init(FeLexer *lx, const char *src, IrDiag *diag) {
  lx->p = src;
  lx->line_start = src;
  lx->line = 1;
  lx->diag = diag;
}

static bool is_name_char(char c) { return isalnum((unsigned char)c) || c == '_' || c == '.'; }

static IrLoc here(const FeLexer *lx) {
  return (IrLoc){lx->line, (int)(lx->p - lx->line_start) + 1};
}

static void skip_space(FeLexer *lx) {
  for (;;) {
    char c = *lx->p;
    if (c == '\n') {
      lx->p++;
      lx->line++;
      lx->line_start = lx->p;
    } else if (c == ' ' || c == '\t' || c == '\r') {
      lx->p++;
    } else if (c == ';') {
      while (*lx->p && *lx->p != '\n')
        lx->p++;
    } else {
      return;
    }
  }
}

static bool lex_number(FeLexer *lx, FeToken *t) {
  const char *s = lx->p, *p = s;
  bool is_int = true;
  if (*p == '-' || *p == '+')
    p++;
  while (isdigit((unsigned char)*p))
    p++;
  if (*p == '.') {
    is_int = false;
    p++;
    while (isdigit((unsigned char)*p))
      p++;
  }
  if ((*p == 'e' || *p == 'E') &&
      (isdigit((unsigned char)p[1]) ||
       ((p[1] == '+' || p[1] == '-') && isdigit((unsigned char)p[2])))) {
    is_int = false;
    p += 2;
    while (isdigit((unsigned char)*p))
      p++;
  }
  if (is_name_char(*p) && *p != '.')
    return ir_error(lx->diag, here(lx), "malformed number '%.*s'", (int)(p - s + 1), s);
  /* strtod reads the same grammar; the token is delimited above so that
   * strtod cannot run past it (it would accept "inf" or hex). */
  char buf[64];
  if (p - s >= (long)sizeof buf)
    return ir_error(lx->diag, here(lx), "number is too long");
  memcpy(buf, s, (size_t)(p - s));
  buf[p - s] = '\0';
  errno = 0;
  t->num = strtod(buf, NULL);
  if (errno == ERANGE && (t->num > 1 || t->num < -1))
    return ir_error(lx->diag, here(lx), "number '%s' is out of range", buf);
  t->is_int = is_int;
  t->kind = FE_TK_NUMBER;
  t->len = (int)(p - s);
  lx->p = p;
  return true;
}

bool fe_lex_next(FeLexer *lx, FeToken *t) {
  skip_space(lx);
  memset(t, 0, sizeof *t);
  t->loc = here(lx);
  t->text = lx->p;
  char c = *lx->p;
  if (c == '\0') {
    t->kind = FE_TK_EOF;
    return true;
  }
  if (c == '%' || c == '@') {
    const char *s = ++lx->p;
    while (is_name_char(*lx->p))
      lx->p++;
    if (lx->p == s)
      return ir_error(lx->diag, t->loc, "expected a name after '%c'", c);
    t->kind = c == '%' ? FE_TK_LOCAL : FE_TK_GLOBAL;
    t->text = s;
    t->len = (int)(lx->p - s);
    return true;
  }
  if (isalpha((unsigned char)c) || c == '_') {
    while (is_name_char(*lx->p))
      lx->p++;
    t->kind = FE_TK_IDENT;
    t->len = (int)(lx->p - t->text);
    return true;
  }
  if ((c == '-' || c == '+') && strncmp(lx->p + 1, "inf", 3) == 0 && !is_name_char(lx->p[4])) {
    t->kind = FE_TK_NUMBER;
    t->num = c == '-' ? -HUGE_VAL : HUGE_VAL;
    t->len = 4;
    lx->p += 4;
    return true;
  }
  if (isdigit((unsigned char)c) ||
      ((c == '-' || c == '+' || c == '.') &&
       (isdigit((unsigned char)lx->p[1]) || (lx->p[1] == '.' && isdigit((unsigned char)lx->p[2])))))
    return lex_number(lx, t);
  if (c == '"') {
    const char *s = ++lx->p;
    while (*lx->p != '"') {
      if (*lx->p == '\0' || *lx->p == '\n')
        return ir_error(lx->diag, t->loc, "unterminated string");
      if (*lx->p == '\\' && (lx->p[1] == '"' || lx->p[1] == '\\'))
        lx->p++;
      lx->p++;
    }
    t->kind = FE_TK_STRING;
    t->text = s;
    t->len = (int)(lx->p - s);
    lx->p++;
    return true;
  }
  if (strchr("{}[],:=?", c)) {
    lx->p++;
    t->kind = FE_TK_PUNCT;
    t->len = 1;
    return true;
  }
  if (isprint((unsigned char)c))
    return ir_error(lx->diag, t->loc, "unexpected character '%c'", c);
  return ir_error(lx->diag, t->loc, "unexpected byte 0x%02x", (unsigned char)c);
}
