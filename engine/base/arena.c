/* arena.c — a chain of blocks: small allocations bump a pointer in the newest block, large
 * ones get a block of their own (put behind the newest so that its free space stays usable).
 * Freed all at once with the request (server/openai.c). */
#include "engine/base/arena.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define ARENA_BLOCK_BYTES 4096
#define ARENA_ALIGN       16

struct arena_block {
    struct arena_block *next;
    size_t used, cap;                           /* bytes of data[] */
    _Alignas(ARENA_ALIGN) unsigned char data[];
};

void arena_init(struct arena *a)
{
    a->head = NULL;
    a->total_bytes = 0;
}

void arena_fini(struct arena *a)
{
    struct arena_block *b = a->head, *next;

    for (; b; b = next) {
        next = b->next;
        free(b);
    }
    arena_init(a);
}

static struct arena_block *block_new(size_t cap)
{
    struct arena_block *b;

    if (cap > SIZE_MAX - sizeof *b || !(b = malloc(sizeof *b + cap)))
        return NULL;
    b->next = NULL;
    b->used = 0;
    b->cap = cap;
    return b;
}

void *arena_alloc(struct arena *a, size_t size)
{
    struct arena_block *b = a->head;
    size_t need;
    void *p;

    if (size > SIZE_MAX - ARENA_ALIGN)
        return NULL;
    need = (size + ARENA_ALIGN - 1) & ~(size_t)(ARENA_ALIGN - 1);
    if (need == 0)
        need = ARENA_ALIGN;
    if (!b || b->cap - b->used < need) {
        if (!(b = block_new(need > ARENA_BLOCK_BYTES / 4 ? need : ARENA_BLOCK_BYTES)))
            return NULL;
        a->total_bytes += sizeof *b + b->cap;
        if (a->head && need > ARENA_BLOCK_BYTES / 4) {
            /* A big one-off: keep the current block first, its free space is still good. */
            b->next = a->head->next;
            a->head->next = b;
        } else {
            b->next = a->head;
            a->head = b;
        }
    }
    p = b->data + b->used;
    b->used += need;
    memset(p, 0, size);
    return p;
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

    if (len == SIZE_MAX || !(p = arena_alloc(a, len + 1)))
        return NULL;
    memcpy(p, s, len);
    p[len] = '\0';
    return p;
}

char *arena_strdup(struct arena *a, const char *s)
{
    return arena_strndup(a, s, strlen(s));
}
