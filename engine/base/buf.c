/* buf.c — the slow paths of struct buf (buf.h): growth by doubling from 64 bytes, the
 * front drop an SSE queue compacts with, and handing the bytes over. */
#include "engine/base/buf.h"

#include <stdint.h>
#include <stdlib.h>

#define BUF_FIRST_BYTES 64

void buf_fini(struct buf *b)
{
    free(b->p);
    buf_init(b);
}

int buf_grow_(struct buf *b, size_t extra)
{
    size_t need, cap = b->cap ? b->cap : BUF_FIRST_BYTES;
    char *p;

    if (extra > SIZE_MAX - 1 - b->len)
        return -ENOMEM;
    need = b->len + extra + 1;
    if (need <= b->cap)
        return 0;
    while (cap < need)
        cap = cap <= SIZE_MAX / 2 ? cap * 2 : need;
    if (!(p = realloc(b->p, cap)))
        return -ENOMEM;
    b->p = p;
    b->cap = cap;
    b->p[b->len] = '\0';
    return 0;
}

void buf_consume(struct buf *b, size_t n)
{
    if (n >= b->len) {
        buf_clear(b);
        return;
    }
    memmove(b->p, b->p + n, b->len - n);
    b->len -= n;
    b->p[b->len] = '\0';
}

char *buf_take(struct buf *b, size_t *len)
{
    char *p;

    if (buf_reserve(b, 0))
        return NULL;
    p = b->p;
    if (len)
        *len = b->len;
    buf_init(b);
    return p;
}
