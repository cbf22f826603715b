/* arena.h — per-request memory pools, nginx style: everything that lives as long as one HTTP
 * request (parsed strings, stop lists, token ids, rendered prompts) comes from its arena and
 * goes in one arena_fini(). Not thread-safe: one request is parsed by one thread. */
#ifndef OSPREY_ARENA_H
#define OSPREY_ARENA_H

#include <stddef.h>

struct arena_block;

struct arena {
    struct arena_block *head;   /* newest block first; NULL when empty */
    size_t total_bytes;         /* bytes of every block, headers included */
};

void arena_init(struct arena *a);
void arena_fini(struct arena *a);   /* frees every block; a may be init'ed again */

/* size bytes aligned for any type, zeroed; NULL on overflow or out of memory. */
void *arena_alloc(struct arena *a, size_t size);
/* n elements of size bytes each (overflow-checked), zeroed. */
void *arena_calloc(struct arena *a, size_t n, size_t size);
/* A NUL-terminated copy of s[0..len); NULL when out of memory. */
char *arena_strndup(struct arena *a, const char *s, size_t len);
char *arena_strdup(struct arena *a, const char *s);

#endif
