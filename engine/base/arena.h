/* arena.h — the project's one memory pool, nginx style: everything that lives as long as
 * one owner (an HTTP request's parsed strings and token ids, a tokenizer's vocabulary, a
 * parsed chat template or one render of it) comes from its arena and goes in one
 * arena_fini(). Not thread-safe: an arena has one thread at a time. */
#ifndef OSPREY_ARENA_H
#define OSPREY_ARENA_H

#include <stddef.h>
#include <stdint.h>   /* PTRDIFF_MAX */
#include <string.h>

#define ARENA_BLOCK_BYTES 4096   /* arena_init's block size */
#define ARENA_ALIGN       16     /* arena_alloc's alignment: any type's */

struct arena_block {
    struct arena_block *next;
    size_t used, cap;                           /* bytes of data[] */
    _Alignas(ARENA_ALIGN) unsigned char data[];
};

struct arena {
    struct arena_block *head;   /* newest block first; NULL when empty */
    size_t total_bytes;         /* bytes of every block, headers included */
    size_t block_bytes;         /* data bytes of a new block; larger requests get their own */
    size_t max_bytes;           /* ceiling on total_bytes: allocations past it fail */
};

/* ARENA_BLOCK_BYTES blocks, no ceiling: for many small arenas (one per request). */
void arena_init(struct arena *a);
/* block_bytes per block (a big owner takes big blocks and fewer mallocs); total_bytes never
 * passes max_bytes (SIZE_MAX: no ceiling). */
void arena_init_sized(struct arena *a, size_t block_bytes, size_t max_bytes);
/* Frees every block; the sizes stay, so a may be used again at once. */
void arena_fini(struct arena *a);

/* size bytes aligned for any type, zeroed; NULL on overflow, past max_bytes or out of memory.
 * Inline: the Jinja renderer allocates every value here, so the common case (room in the
 * newest block) must cost a few instructions, not a call. */
void *arena_alloc_block_(struct arena *a, size_t size);   /* the rest: a new block */
void *arena_zero_(void *p, size_t size);                  /* memset(p, 0, size), out of line */
static inline void *arena_alloc(struct arena *a, size_t size)
{
    struct arena_block *b = a->head;

    if (b && size && size <= PTRDIFF_MAX) {   /* the bound: no object is larger */
        size_t at = (b->used + ARENA_ALIGN - 1) & ~(size_t)(ARENA_ALIGN - 1);

        if (at <= b->cap && b->cap - at >= size) {
            void *p = b->data + at;

            b->used = at + size;
            /* Up to 64 bytes gcc zeroes with a few stores; past that it would inline a
             * rep stos, slower than libc's memset behind a call. */
            return size <= 64 ? memset(p, 0, size) : arena_zero_(p, size);
        }
    }
    return arena_alloc_block_(a, size);
}
/* n elements of size bytes each (overflow-checked), zeroed. */
void *arena_calloc(struct arena *a, size_t n, size_t size);
/* A NUL-terminated copy of s[0..len), packed byte-aligned after the previous string (a
 * vocabulary of short tokens wastes nothing); NULL when out of memory. */
char *arena_strndup(struct arena *a, const char *s, size_t len);
char *arena_strdup(struct arena *a, const char *s);

#endif
