/* arena.c: the bump allocator that owns all memory of a module.
 *
 * Small requests are carved from 64 KiB blocks; a large request (tensor data)
 * gets a block of its own. Everything is released by ir_arena_free(), so the IR
 * never frees piecemeal. All memory is zeroed and 64-byte aligned, which suits
 * tensor data that vector code reads. */
#include <stdlib.h>
#include <string.h>

#include "ir.h"

enum { BLOCK_SIZE = 64 * 1024, ALIGN = 64 };

typedef struct Block {
  struct Block *next;
  size_t used, size;
  /* data follows, aligned */
} Block;

struct IrArena {
  Block *head;
};

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
    q8_die("out of memory");
  return a;
}

void ir_arena_free(IrArena *a) {
  if (!a)
    return;
  for (Block *b = a->head, *next; b; b = next) {
    next = b->next;
    free(b);
  }
  free(a);
}

void *ir_alloc_data(IrArena *a, size_t size) {
  if (size > SIZE_MAX - ALIGN)
    return NULL;
  size = (size + ALIGN - 1) & ~(size_t)(ALIGN - 1);
  if (size == 0)
    size = ALIGN;
  Block *b = a->head;
  if (!b || b->size - b->used < size) {
    if (size > BLOCK_SIZE / 4) {
      /* A block of its own, linked behind the current one so that the
       * current block keeps serving small requests. */
      Block *big = new_block(size);
      if (!big)
        return NULL;
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
    if (!b)
      return NULL;
    b->next = a->head;
    a->head = b;
  }
  char *p = (char *)b + header_size() + b->used;
  b->used += size;
  memset(p, 0, size);
  return p;
}

void *ir_alloc(IrArena *a, size_t size) {
  void *p = ir_alloc_data(a, size);
  if (!p)
    q8_die("out of memory (%zu bytes)", size);
  return p;
}

char *ir_strndup(IrArena *a, const char *s, size_t n) {
  char *p = ir_alloc(a, n + 1);
  memcpy(p, s, n);
  p[n] = '\0';
  return p;
}

char *ir_strdup(IrArena *a, const char *s) { return ir_strndup(a, s, strlen(s)); }
