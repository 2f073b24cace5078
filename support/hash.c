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

/* The slot of `key` (whose hash is h), or of the empty slot where it would
 * go. Stored hashes spare reading the keys of other slots. */
static size_t slot_of(const SupMap *t, const char *key, uint64_t h) {
  size_t mask = t->cap - 1;
  size_t i = (size_t)h & mask;
  while (t->keys[i] && (t->hashes[i] != h || (t->keys[i] != key && strcmp(t->keys[i], key) != 0)))
    i = (i + 1) & mask;
  return i;
}

static uint64_t hash_key(const char *key) { return sup_hash(key, strlen(key)); }

void *sup_map_get(const SupMap *t, const char *key) {
  if (!t->cap)
    return NULL;
  return t->items[slot_of(t, key, hash_key(key))];
}

const char *sup_map_intern(const SupMap *t, const char *key) {
  if (!t->cap)
    return NULL;
  return t->keys[slot_of(t, key, hash_key(key))];
}

static bool grow(SupMap *t) {
  size_t cap = t->cap ? 2 * t->cap : 64;
  SupMap bigger = {calloc(cap, sizeof *t->keys), calloc(cap, sizeof *t->items),
                   calloc(cap, sizeof *t->hashes), cap, t->count};
  if (!bigger.keys || !bigger.items || !bigger.hashes) {
    sup_map_free(&bigger);
    return false;
  }
  for (size_t i = 0; i < t->cap; i++)
    if (t->keys[i]) {
      size_t j = slot_of(&bigger, t->keys[i], t->hashes[i]);
      bigger.keys[j] = t->keys[i];
      bigger.items[j] = t->items[i];
      bigger.hashes[j] = t->hashes[i];
    }
  sup_map_free(t);
  *t = bigger;
  return true;
}

bool sup_map_put(SupMap *t, const char *key, void *item) {
  /* At most half full, so probes stay short. */
  if (2 * (t->count + 1) > t->cap && !grow(t))
    return false;
  uint64_t h = hash_key(key);
  size_t i = slot_of(t, key, h);
  if (!t->keys[i]) {
    t->keys[i] = key;
    t->hashes[i] = h;
    t->count++;
  }
  t->items[i] = item;
  return true;
}

void sup_map_free(SupMap *t) {
  free(t->keys);
  free(t->items);
  free(t->hashes);
  *t = (SupMap){0};
}
