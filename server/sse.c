/* sse.c — per-choice pending output and the byte queue of a Server-Sent Events stream.
 * Both grow by doubling; the queue (a struct buf) compacts, moving its unsent bytes to the
 * front, before it grows, so a stream that is read as fast as it is written stays at the
 * size of a few chunks. */
#include "server/sse.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "engine/base/util.h"   /* MIN */

void sse_pending_init(struct sse_pending *p)
{
    memset(p, 0, sizeof *p);
}

void sse_pending_fini(struct sse_pending *p)
{
    free(p->text);
    free(p->ids);
    free(p->samples);
    free(p->offsets);
    sse_pending_init(p);
}

static size_t grow(size_t cap, size_t need, size_t first)
{
    size_t c = cap ? cap : first;

    while (c < need && c <= SIZE_MAX / 2)
        c *= 2;
    return c < need ? need : c;
}

int sse_pending_append(struct sse_pending *p, const char *text, size_t len, const int32_t *ids,
                       const struct sample_result *samples, const size_t *offsets, int n)
{
    if (len) {
        /* The text is a struct buf spelled out in three fields, which openai.c reads:
         * room is made here, the bytes go in once the token arrays have grown too. */
        struct buf t = { p->text, p->text_len, p->text_cap };

        if (buf_reserve(&t, len))
            return -ENOMEM;
        p->text = t.p;
        p->text_cap = t.cap;
    }
    if (n > 0 && p->num_tokens + n > p->cap_tokens) {
        int cap = (int)grow((size_t)p->cap_tokens, (size_t)p->num_tokens + (size_t)n, 16);
        int32_t *i = realloc(p->ids, (size_t)cap * sizeof *i);

        if (!i)
            return -ENOMEM;
        p->ids = i;
        if (samples || p->samples) {
            struct sample_result *s = realloc(p->samples, (size_t)cap * sizeof *s);

            if (!s)
                return -ENOMEM;   /* ids grew, nothing appended yet: still consistent */
            p->samples = s;
        }
        if (samples || offsets || p->offsets) {
            size_t *o = realloc(p->offsets, (size_t)cap * sizeof *o);

            if (!o)
                return -ENOMEM;
            p->offsets = o;
        }
        p->cap_tokens = cap;
    }
    if (len) {
        memcpy(p->text + p->text_len, text, len);
        p->text_len += len;
        p->text[p->text_len] = '\0';
    }
    if (n > 0) {
        memcpy(p->ids + p->num_tokens, ids, (size_t)n * sizeof *ids);
        if (samples && p->samples)
            memcpy(p->samples + p->num_tokens, samples, (size_t)n * sizeof *samples);
        if (offsets && p->offsets)
            memcpy(p->offsets + p->num_tokens, offsets, (size_t)n * sizeof *offsets);
        else if (p->offsets)
            memset(p->offsets + p->num_tokens, 0, (size_t)n * sizeof *offsets);
        p->num_tokens += n;
    }
    return 0;
}

size_t sse_pending_bytes(const struct sse_pending *p)
{
    return p->text_len + (size_t)p->num_tokens *
           (sizeof *p->ids + (p->samples ? sizeof *p->samples : 0) + (p->offsets ? sizeof *p->offsets : 0));
}

void sse_pending_drop(struct sse_pending *p, int num_tokens)
{
    int left = p->num_tokens - num_tokens;

    p->text_len = 0;
    if (p->text)
        p->text[0] = '\0';
    if (num_tokens <= 0)
        return;
    memmove(p->ids, p->ids + num_tokens, (size_t)left * sizeof *p->ids);
    if (p->samples)
        memmove(p->samples, p->samples + num_tokens, (size_t)left * sizeof *p->samples);
    if (p->offsets)
        memmove(p->offsets, p->offsets + num_tokens, (size_t)left * sizeof *p->offsets);
    p->num_tokens = left;
}

void sse_pending_take(struct sse_pending *p, struct sse_pending *out)
{
    sse_pending_fini(out);
    *out = *p;
    sse_pending_init(p);
}

void sse_buf_init(struct sse_buf *b, size_t limit)
{
    buf_init(&b->q);
    b->off = 0;
    b->limit = limit;
}

void sse_buf_fini(struct sse_buf *b)
{
    buf_fini(&b->q);
    b->off = 0;
}

size_t sse_buf_waiting(const struct sse_buf *b)
{
    return b->q.len - b->off;
}

/* Room for n more bytes at the end: compact first, grow if still short. */
static int reserve(struct sse_buf *b, size_t n)
{
    if (b->off && !(b->q.cap > b->q.len && b->q.cap - b->q.len > n)) {
        buf_consume(&b->q, b->off);
        b->off = 0;
    }
    return buf_reserve(&b->q, n);
}

static int append(struct sse_buf *b, const char *s, size_t n)
{
    int rc = reserve(b, n);

    return rc ? rc : buf_put(&b->q, s, n);
}

int sse_buf_event(struct sse_buf *b, const char *json, size_t len)
{
    static const char head[] = "data: ", tail[] = "\n\n";
    size_t n = sizeof head - 1 + len + sizeof tail - 1;
    int rc;

    if (len > b->limit || sse_buf_waiting(b) + n > b->limit)
        return -ENOBUFS;
    if ((rc = reserve(b, n)))
        return rc;
    append(b, head, sizeof head - 1);
    append(b, json, len);
    append(b, tail, sizeof tail - 1);
    return 0;
}

int sse_buf_done(struct sse_buf *b)
{
    static const char done[] = "data: [DONE]\n\n";

    return append(b, done, sizeof done - 1);
}

size_t sse_buf_read(struct sse_buf *b, char *dst, size_t max)
{
    size_t n = MIN(max, sse_buf_waiting(b));

    if (n == 0)
        return 0;
    memcpy(dst, b->q.p + b->off, n);
    b->off += n;
    if (b->off == b->q.len) {
        buf_clear(&b->q);
        b->off = 0;
    }
    return n;
}
