/* buf.h — the project's one growable byte string: the tokenizer's working text, the Jinja
 * renderer's output, an SSE stream's queue, whole-file reads. It grows by doubling and
 * keeps a NUL after the bytes, so the text can go to C string functions as it is. The
 * append is inline (the tokenizer and the renderer append a few bytes at a time on the
 * HTTP path); only growth calls out. */
#ifndef OSPREY_BUF_H
#define OSPREY_BUF_H

#include <errno.h>
#include <stddef.h>
#include <string.h>

struct buf {
    char *p;            /* [cap] malloc'd; p[len] == '\0' once anything was reserved; NULL before */
    size_t len, cap;    /* bytes held (without the NUL), bytes allocated */
};

#define BUF_INIT { NULL, 0, 0 }

static inline void buf_init(struct buf *b)
{
    b->p = NULL;
    b->len = b->cap = 0;
}

void buf_fini(struct buf *b);   /* frees; b is empty and may be used again */

/* Makes room for extra more bytes and the NUL (p is never NULL afterwards, even for 0).
 * Returns 0, or -ENOMEM (the buffer unchanged) when memory or size_t runs out. */
int buf_grow_(struct buf *b, size_t extra);
static inline int buf_reserve(struct buf *b, size_t extra)
{
    if (b->cap > b->len && b->cap - b->len > extra)
        return 0;
    return buf_grow_(b, extra);
}

/* Appends n bytes of s (s may be NULL when n is 0). 0 or -ENOMEM (nothing appended). */
static inline int buf_put(struct buf *b, const void *s, size_t n)
{
    if (buf_reserve(b, n))
        return -ENOMEM;
    if (n)
        memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
    return 0;
}

/* Empties b and keeps its memory. */
static inline void buf_clear(struct buf *b)
{
    b->len = 0;
    if (b->p)
        b->p[0] = '\0';
}

/* Drops the first n (<= len) bytes, moving the rest to the front. */
void buf_consume(struct buf *b, size_t n);

/* Hands the bytes over: returns p (malloc'd, NUL-terminated, "" when nothing was put; NULL
 * only when out of memory), *len its length, and leaves b empty. */
char *buf_take(struct buf *b, size_t *len);

#endif
