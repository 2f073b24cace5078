/* hash.c: FNV-1a hashing and SupMap, an open-addressing table from strings
 * to pointers (the IR's name table, the parser's tensors by name). Lookups
 * are O(1) expected, so that whatever is looked up once per statement or
 * per node stays linear in the size of the input. */
#include <stdlib.h>
#include <string.h>

#include "support.h"

uint64_t sup_hash(const void *data, size_t n) {
  const unsigned char *s = data;
  uint64_t h = 14695981039346656037u;
  for (size_t i = 0; i < n; i++)
    h = (h ^ s[i]) * 1099511628211u;
  return h;
}

typedef struct SupMapSlot Slot;

/* The slot of `key` (whose hash is h), or the empty slot where it would go.
 * The stored hashes spare comparing the keys of other slots. */
static Slot *slot_of(const SupMap *t, const char *key, uint64_t h) {
  size_t mask = t->cap - 1;
  size_t i = (size_t)h & mask;
  while (t->slots[i].key &&
         (t->slots[i].hash != h || (t->slots[i].key != key && strcmp(t->slots[i].key, key) != 0)))
    i = (i + 1) & mask;
  return &t->slots[i];
}

static uint64_t hash_key(const char *key) { return sup_hash(key, strlen(key)); }

void *sup_map_get(const SupMap *t, const char *key) {
  return t->cap ? slot_of(t, key, hash_key(key))->item : NULL;
}

const char *sup_map_intern(const SupMap *t, const char *key) {
  return t->cap ? slot_of(t, key, hash_key(key))->key : NULL;
}

/* Rehash into `cap` slots (a power of two above twice the count). */
static bool rehash(SupMap *t, size_t cap) {
  SupMap bigger = {calloc(cap, sizeof *t->slots), cap, t->count};
  if (!bigger.slots)
    return false;
  for (size_t i = 0; i < t->cap; i++)
    if (t->slots[i].key)
      *slot_of(&bigger, t->slots[i].key, t->slots[i].hash) = t->slots[i];
  free(t->slots);
  *t = bigger;
  return true;
}

static bool grow(SupMap *t) { return rehash(t, t->cap ? 2 * t->cap : 64); }

bool sup_map_reserve(SupMap *t, size_t n) {
  size_t cap = t->cap ? t->cap : 64;
  while (cap / 2 < n) {
    if (cap > SIZE_MAX / 4)
      return false;
    cap *= 2;
  }
  return cap == t->cap || rehash(t, cap);
}

bool sup_map_put(SupMap *t, const char *key, void *item) {
  /* At most half full, so probes stay short. */
  if (2 * (t->count + 1) > t->cap && !grow(t))
    return false;
  uint64_t h = hash_key(key);
  Slot *s = slot_of(t, key, h);
  if (!s->key) {
    *s = (Slot){key, NULL, h};
    t->count++;
  }
  s->item = item;
  return true;
}

void sup_map_free(SupMap *t) {
  free(t->slots);
  *t = (SupMap){0};
}
