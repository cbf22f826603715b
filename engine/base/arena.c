/* arena.c — a chain of blocks: small allocations bump a pointer in the newest block, large
 * ones (past a quarter of a block) get a block of their own, put behind the newest so that
 * its free space stays usable. Strings are packed byte-aligned; everything else starts on
 * a 16-byte boundary. Freed all at once by the owner. */
#include "engine/base/arena.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

void arena_init_sized(struct arena *a, size_t block_bytes, size_t max_bytes)
{
    a->head = NULL;
    a->total_bytes = 0;
    a->block_bytes = block_bytes ? block_bytes : ARENA_BLOCK_BYTES;
    a->max_bytes = max_bytes;
}

void arena_init(struct arena *a)
{
    arena_init_sized(a, ARENA_BLOCK_BYTES, SIZE_MAX);
}

void arena_fini(struct arena *a)
{
    struct arena_block *b = a->head, *next;

    for (; b; b = next) {
        next = b->next;
        free(b);
    }
    a->head = NULL;
    a->total_bytes = 0;
}

/* A new block of cap data bytes, linked in; NULL past the ceiling or out of memory. */
static struct arena_block *block_add(struct arena *a, size_t cap, int own)
{
    struct arena_block *b;
    size_t bytes;

    if (cap > SIZE_MAX - sizeof *b)
        return NULL;
    bytes = sizeof *b + cap;
    if (bytes > a->max_bytes || a->total_bytes > a->max_bytes - bytes || !(b = malloc(bytes)))
        return NULL;
    b->used = 0;
    b->cap = cap;
    a->total_bytes += bytes;
    if (own && a->head) {
        /* A big one-off: keep the current block first, its free space is still good. */
        b->next = a->head->next;
        a->head->next = b;
    } else {
        b->next = a->head;
        a->head = b;
    }
    return b;
}

/* size bytes at a multiple of align (a power of two, at most ARENA_ALIGN), not zeroed. */
static void *bump(struct arena *a, size_t size, size_t align)
{
    struct arena_block *b = a->head;
    size_t at;

    if (b) {
        at = (b->used + align - 1) & ~(align - 1);
        if (at <= b->cap && b->cap - at >= size) {
            b->used = at + size;
            return b->data + at;
        }
    }
    if (size > a->block_bytes / 4) {
        if (!(b = block_add(a, size ? size : 1, 1)))
            return NULL;
    } else if (!(b = block_add(a, a->block_bytes, 0))) {
        return NULL;
    }
    b->used = size;
    return b->data;
}

void *arena_alloc_block_(struct arena *a, size_t size)
{
    void *p = bump(a, size ? size : 1, ARENA_ALIGN);   /* distinct pointers even for 0 */

    if (p)
        memset(p, 0, size);
    return p;
}

void *arena_zero_(void *p, size_t size)
{
    return memset(p, 0, size);
}

void *arena_calloc(struct arena *a, size_t n, size_t size)
{
    if (size && n > SIZE_MAX / size)
        return NULL;
    return arena_alloc(a, n * size);
}

char *arena_strndup(struct arena *a, const char *s, size_t len)
{
    char *p;

    if (len == SIZE_MAX || !(p = bump(a, len + 1, 1)))
        return NULL;
    memcpy(p, s, len);
    p[len] = '\0';
    return p;
}

char *arena_strdup(struct arena *a, const char *s)
{
    return arena_strndup(a, s, strlen(s));
}
