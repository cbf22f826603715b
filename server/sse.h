/* sse.h — the output buffers of one request. struct sse_pending collects what the engine
 * delivered for one choice (text, token ids, logprobs) until the HTTP side renders it: the
 * whole answer of a non-streamed request, or what arrived since the last chunk of a stream.
 * struct sse_buf is the stream's byte queue of Server-Sent Events ("data: …\n\n") that
 * MHD's content reader drains. Neither locks: server/openai.c holds the request's lock. */
#ifndef OSPREY_SSE_H
#define OSPREY_SSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "engine/base/buf.h"
#include "engine/sampler.h"   /* struct sample_result */

struct sse_pending {
    char *text;                       /* [text_len] UTF-8, NUL-terminated when non-NULL */
    size_t text_len, text_cap;        /* bytes */
    int32_t *ids;                     /* [num_tokens] */
    struct sample_result *samples;    /* [num_tokens] when logprobs are kept, else NULL */
    size_t *offsets;                  /* [num_tokens] when given (the engine gives them; 0s
                                         when a call gave none): bytes into the choice's whole
                                         text where each token's text starts (harmony reads
                                         its special tokens' places by them) */
    int num_tokens, cap_tokens;
};

void sse_pending_init(struct sse_pending *p);
void sse_pending_fini(struct sse_pending *p);
/* Appends text (len bytes) and n tokens; samples are NULL on every call (no logprobs kept)
 * or on none; offsets (each token's text offset) NULL or not.
 * Returns 0 or -ENOMEM (nothing appended). */
int sse_pending_append(struct sse_pending *p, const char *text, size_t len, const int32_t *ids,
                       const struct sample_result *samples, const size_t *offsets, int n);
/* Drops all the text and the first num_tokens tokens (a stream sent them; the rest wait). */
void sse_pending_drop(struct sse_pending *p, int num_tokens);
/* Bytes held: what the stream-buffer-bytes bound counts. */
size_t sse_pending_bytes(const struct sse_pending *p);
/* Moves everything from p into out (which is fini'ed first) and leaves p empty. */
void sse_pending_take(struct sse_pending *p, struct sse_pending *out);

struct sse_buf {
    struct buf q;                     /* bytes q.p[off..q.len) wait to be sent */
    size_t off;
    size_t limit;                     /* bytes waiting at most; sse_buf_event refuses past it */
};

void sse_buf_init(struct sse_buf *b, size_t limit);
void sse_buf_fini(struct sse_buf *b);
/* Queues "data: <json>\n\n". Returns 0, -ENOBUFS when the bytes waiting would pass the
 * limit (nothing queued), or -ENOMEM. */
int sse_buf_event(struct sse_buf *b, const char *json, size_t len);
/* Queues "data: [DONE]\n\n", the stream's end, even past the limit. 0 or -ENOMEM. */
int sse_buf_done(struct sse_buf *b);
/* Copies up to max waiting bytes into dst and drops them from the queue; returns the count. */
size_t sse_buf_read(struct sse_buf *b, char *dst, size_t max);
size_t sse_buf_waiting(const struct sse_buf *b);

#endif
