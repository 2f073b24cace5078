/* arena.c: the bump allocator that owns all memory of a module.
 *
 * Small requests are carved from 64 KiB blocks; a large request (tensor data)
 * gets a block of its own. Everything is released by ir_arena_free(), so the IR
 * never frees piecemeal. All memory is zeroed and 64-byte aligned, which suits
 * tensor data that vector code reads.
 *
 * Exhaustion: ir_alloc_data returns NULL and its caller reports it; ir_alloc,
 * whose callers (every node, value and name of the IR) cannot check, jumps to
 * the thread's recovery point instead (IrRecover in ir.h), as Lua's
 * luaD_throw does. Either way the arena remembers it (ir_arena_exhausted), so
 * that the API can say "out of memory" rather than "invalid model". */
#include <stdlib.h>
#include <string.h>

#include "ir.h"

enum { BLOCK_SIZE = 64 * 1024, ALIGN = 64 };

typedef struct Block {
  struct Block *next;
  size_t used, size;
  /* data follows, aligned */
} Block;

/* A cleanup ir_arena_free runs (ir_arena_defer). */
typedef struct Deferred {
  struct Deferred *next;
  void (*fn)(void *);
  void *arg;
} Deferred;

struct IrArena {
  Block *head;
  Deferred *deferred;      /* newest first */
  size_t total, limit;     /* bytes handed out; Q8_TEST_ARENA_LIMIT, or SIZE_MAX */
  bool exhausted;          /* an allocation failed */
  IrRecover *region;       /* the recovery point it was created under, while set */
  IrArena *next_in_region;
};

/* The innermost recovery point of this thread. */
static _Thread_local IrRecover *recover_top;

void ir_recover_push(IrRecover *r) {
  r->prev = recover_top;
  r->arenas = NULL;
  recover_top = r;
}

void ir_recover_pop(IrRecover *r) {
  if (recover_top != r)
    q8_die("ir_recover_pop: not the innermost recovery point");
  for (IrArena *a = r->arenas; a; a = a->next_in_region)
    a->region = NULL;
  r->arenas = NULL;
  recover_top = r->prev;
}

void ir_recover_free_arenas(IrRecover *r) {
  while (r->arenas)
    ir_arena_free(r->arenas); /* unlinks it */
}

/* Out of memory where the caller cannot check: jump, or die if nobody set a
 * recovery point (a caller inside q8c forgot to: a bug). */
_Noreturn void ir_throw_nomem(IrArena *a, size_t size) {
  if (a)
    a->exhausted = true;
  if (recover_top)
    longjmp(recover_top->jump, 1);
  q8_die("out of memory (%zu bytes) with no recovery point set", size);
}

/* Q8_TEST_ARENA_LIMIT: bytes an arena may hand out, for tests of the
 * out-of-memory paths. */
static size_t env_limit(void) {
  const char *env = getenv("Q8_TEST_ARENA_LIMIT");
  if (!env || !*env)
    return SIZE_MAX;
  char *end;
  unsigned long long v = strtoull(env, &end, 10);
  return *end ? SIZE_MAX : (size_t)v;
}

static size_t header_size(void) { return (sizeof(Block) + ALIGN - 1) & ~(size_t)(ALIGN - 1); }

static Block *new_block(size_t size) {
  if (size > SIZE_MAX - header_size())
    return NULL;
  Block *b = aligned_alloc(ALIGN, (header_size() + size + ALIGN - 1) & ~(size_t)(ALIGN - 1));
  if (!b)
    return NULL;
  b->next = NULL;
  b->used = 0;
  b->size = size;
  return b;
}

IrArena *ir_arena_new(void) {
  IrArena *a = calloc(1, sizeof *a);
  if (!a)
    ir_throw_nomem(NULL, sizeof *a);
  a->limit = env_limit();
  if (recover_top) {
    a->region = recover_top;
    a->next_in_region = recover_top->arenas;
    recover_top->arenas = a;
  }
  return a;
}

bool ir_arena_exhausted(const IrArena *a) { return a && a->exhausted; }

void ir_arena_defer(IrArena *a, void (*fn)(void *), void *arg) {
  Deferred *d = ir_alloc(a, sizeof *d);
  d->fn = fn;
  d->arg = arg;
  d->next = a->deferred;
  a->deferred = d;
}

void ir_arena_free(IrArena *a) {
  if (!a)
    return;
  if (a->region) {
    IrArena **p = &a->region->arenas;
    while (*p != a)
      p = &(*p)->next_in_region;
    *p = a->next_in_region;
  }
  for (Deferred *d = a->deferred; d; d = d->next)
    d->fn(d->arg);
  for (Block *b = a->head, *next; b; b = next) {
    next = b->next;
    free(b);
  }
  free(a);
}

void *ir_alloc_data(IrArena *a, size_t size) {
  if (size > SIZE_MAX - ALIGN || a->total > a->limit || size > a->limit - a->total) {
    a->exhausted = true;
    return NULL;
  }
  size = (size + ALIGN - 1) & ~(size_t)(ALIGN - 1);
  if (size == 0)
    size = ALIGN;
  Block *b = a->head;
  if (!b || b->size - b->used < size) {
    if (size > BLOCK_SIZE / 4) {
      /* A block of its own, linked behind the current one so that the
       * current block keeps serving small requests. */
      Block *big = new_block(size);
      if (!big) {
        a->exhausted = true;
        return NULL;
      }
      a->total += size;
      big->used = size;
      if (b) {
        big->next = b->next;
        b->next = big;
      } else {
        a->head = big;
      }
      char *p = (char *)big + header_size();
      memset(p, 0, size);
      return p;
    }
    b = new_block(BLOCK_SIZE);
    if (!b) {
      a->exhausted = true;
      return NULL;
    }
    b->next = a->head;
    a->head = b;
  }
  char *p = (char *)b + header_size() + b->used;
  b->used += size;
  a->total += size;
  memset(p, 0, size);
  return p;
}

void *ir_alloc(IrArena *a, size_t size) {
  void *p = ir_alloc_data(a, size);
  if (!p)
    ir_throw_nomem(a, size);
  return p;
}

char *ir_strndup(IrArena *a, const char *s, size_t n) {
  char *p = ir_alloc(a, n + 1);
  memcpy(p, s, n);
  p[n] = '\0';
  return p;
}

char *ir_strdup(IrArena *a, const char *s) { return ir_strndup(a, s, strlen(s)); }
