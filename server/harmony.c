/* harmony.c — the reader of harmony.h: a small state machine over the output text. Each
 * step looks only at the undecided tail (from hs->at) and waits while a marker could still
 * be completing, so that no byte handed out is ever taken back. */
#include "server/harmony.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "engine/base/util.h"   /* ARRAY_LEN, MIN */

#define HEADER_MAX 256   /* bytes from a message's start to its <|message|>: past this it is text */

static const char START[] = "<|start|>", CHANNEL[] = "<|channel|>", MESSAGE[] = "<|message|>";
static const char END[] = "<|end|>", RETURN[] = "<|return|>", CALL[] = "<|call|>";
static const char EOT[] = "<|endoftext|>", CONSTRAIN[] = "<|constrain|>";
const char *const harmony_markers[HARMONY_NUM_MARKERS] = { START, CHANNEL, MESSAGE, END, RETURN, CALL, EOT,
                                                           CONSTRAIN };
static const char FUNCTIONS[] = "functions.";

enum hstate {
    H_FIRST,     /* the output's start: a header without <|start|> (the prompt wrote it) */
    H_NEXT,      /* after <|end|> or <|call|>: <|start|> or text */
    H_HEADER,    /* role, channel, recipient… up to <|message|> */
    H_BODY,      /* a message's body, up to its end marker */
    H_PLAIN,     /* not harmony (any more): the rest is content */
    H_DONE,      /* after <|return|>: the model is done */
};

/* A body ends at one of these; <|start|> without an <|end|> before it is taken as both.
 * <|endoftext|> is no harmony, but gpt-oss's generation_config stops on it as on <|return|>
 * and <|call|>, and the stop token's text stays in the output (special tokens are kept). */
static const char *const body_ends[] = { END, RETURN, CALL, START, EOT };
/* The stop tokens: where a message could start, they end the output instead. */
static const char *const stops[] = { RETURN, CALL, EOT };

void harmony_stream_init(struct harmony_stream *hs, bool calls, int max_calls)
{
    memset(hs, 0, sizeof *hs);
    buf_init(&hs->text);
    buf_init(&hs->reasoning);
    buf_init(&hs->content);
    buf_init(&hs->marks);
    buf_init(&hs->toks);
    hs->state = H_FIRST;
    hs->calls = calls;
    hs->max_calls = max_calls;
}

void harmony_stream_fini(struct harmony_stream *hs)
{
    if (!hs)
        return;
    buf_fini(&hs->text);
    buf_fini(&hs->reasoning);
    buf_fini(&hs->content);
    buf_fini(&hs->marks);
    buf_fini(&hs->toks);
    tool_parse_fini(&hs->parse);
}

void harmony_stream_use_ids(struct harmony_stream *hs, const int32_t ids[HARMONY_NUM_MARKERS])
{
    hs->by_ids = true;
    memcpy(hs->marker_ids, ids, sizeof hs->marker_ids);
}

/* Whether id is one of the markers' tokens. */
static bool is_marker(const struct harmony_stream *hs, int32_t id)
{
    for (int m = 0; m < HARMONY_NUM_MARKERS; m++)
        if (id == hs->marker_ids[m] && id >= 0)
            return true;
    return false;
}

int harmony_stream_tokens(struct harmony_stream *hs, const int32_t *ids, const size_t *offsets, int n)
{
    if (!offsets)
        return 0;
    for (int i = 0; i < n; i++) {
        if (buf_put(&hs->toks, &offsets[i], sizeof offsets[i]))
            return -ENOMEM;
        if (hs->by_ids && is_marker(hs, ids[i]) &&
            buf_put(&hs->marks, &offsets[i], sizeof offsets[i]))
            return -ENOMEM;
    }
    return 0;
}

static int cmp_offset(const void *a, const void *b)
{
    size_t x = *(const size_t *)a, y = *(const size_t *)b;

    return (x > y) - (x < y);
}

/* Whether a marker's spelling at byte `at` of the text is one: read by ids, only where a
 * marker's token's text starts (no marker's text begins another's, so the token there is
 * the one spelled; the marks are in order: the tokens are). */
static bool marked(const struct harmony_stream *hs, size_t at)
{
    if (!hs->by_ids)
        return true;
    return hs->marks.len &&
           bsearch(&at, hs->marks.p, hs->marks.len / sizeof at, sizeof at, cmp_offset) != NULL;
}

/* Where needle first occurs in s[from..len), or len. */
static size_t find(const char *s, size_t from, size_t len, const char *needle)
{
    const char *p = from < len ? memmem(s + from, len - from, needle, strlen(needle)) : NULL;

    return p ? (size_t)(p - s) : len;
}

/* Where the marker first occurs in the text's [from..len) as a marker (marked), or len. */
static size_t find_marker(const struct harmony_stream *hs, size_t from, size_t len, const char *marker)
{
    size_t at;

    while ((at = find(hs->text.p, from, len, marker)) < len && !marked(hs, at))
        from = at + 1;
    return at;
}

/* Whether s[0..n) begins word (1), could still grow into it (-1: n < its length), or
 * neither (0). */
static int opens(const char *s, size_t n, const char *word)
{
    size_t w = strlen(word);

    if (memcmp(s, word, MIN(n, w)))
        return 0;
    return n >= w ? 1 : -1;
}

/* opens for a marker at the text's byte at: 0 where the spelling is not a marker. */
static int opens_marker(const struct harmony_stream *hs, size_t at, const char *marker)
{
    int o = opens(hs->text.p ? hs->text.p + at : "", hs->text.len - at, marker);

    return o && marked(hs, at) ? o : 0;
}

/* Bytes at the end of the text's [from..len) that could be the start of one of the body's
 * end markers. */
static size_t partial_end(const struct harmony_stream *hs, size_t from, size_t len)
{
    size_t hold = 0;

    for (size_t m = 0; m < ARRAY_LEN(body_ends); m++) {
        size_t w = strlen(body_ends[m]);

        for (size_t n = MIN(len - from, w - 1); n > hold; n--)
            /* every marker opens with '<': the byte test spares most memcmp calls */
            if (hs->text.p[len - n] == '<' && !memcmp(hs->text.p + len - n, body_ends[m], n) &&
                marked(hs, len - n)) {
                hold = n;
                break;
            }
    }
    return hold;
}

/* Counts the tokens whose text starts in the text's [from..to) when that is reasoning;
 * passes them either way (the reader hands bytes out in order). */
static void count_tokens(struct harmony_stream *hs, enum harmony_route part, size_t from, size_t to)
{
    const size_t *t = (const size_t *)hs->toks.p;
    size_t n = hs->toks.len / sizeof *t;

    for (; hs->tok_next < n && t[hs->tok_next] < to; hs->tok_next++)
        hs->reasoning_tokens += part == HARMONY_REASONING && t[hs->tok_next] >= from;
}

/* Appends text (s within hs->text, or NULL when n is 0) to one part; a part's second
 * message opens with a newline. */
static int put(struct harmony_stream *hs, enum harmony_route part, const char *s, size_t n, bool first)
{
    struct buf *b = part == HARMONY_REASONING ? &hs->reasoning : &hs->content;

    if (n)
        count_tokens(hs, part, (size_t)(s - hs->text.p), (size_t)(s - hs->text.p) + n);
    if (first && hs->started[part] && buf_put(b, "\n", 1))
        return -ENOMEM;
    hs->started[part] = true;
    return n ? buf_put(b, s, n) : 0;
}

/* A word of the header: the bytes after key (found at the text's `at`, len when absent)
 * up to a blank or a marker; *wlen 0 when absent. */
static const char *header_word(const struct harmony_stream *hs, size_t at, size_t len, const char *key,
                               size_t *wlen)
{
    const char *h = hs->text.p;
    size_t end;

    *wlen = 0;
    if (at == len)
        return NULL;
    at += strlen(key);
    for (end = at; end < len && !strchr(" \t\n<", h[end]); end++)
        ;
    *wlen = end - at;
    return h + at;
}

/* Reads the header, the text's [from..len) (role, <|channel|>, to=…, <|constrain|>, in any
 * order). */
static void read_header(struct harmony_stream *hs, size_t from, size_t len)
{
    size_t clen, rlen, f = strlen(FUNCTIONS);
    const char *channel = header_word(hs, find_marker(hs, from, len, CHANNEL), len, CHANNEL, &clen);
    const char *to = header_word(hs, find(hs->text.p, from, len, "to="), len, "to=", &rlen);

    if (to) {
        /* A call to one of the request's functions, or to a built-in tool (browser,
         * python): the latter is the model's own work, so reasoning. */
        if (rlen > f && rlen - f < sizeof hs->name && !memcmp(to, FUNCTIONS, f)) {
            hs->route = hs->calls ? HARMONY_CALL : HARMONY_CONTENT;
            memcpy(hs->name, to + f, rlen - f);
            hs->name[rlen - f] = '\0';
        } else {
            hs->route = HARMONY_REASONING;
        }
        return;
    }
    hs->route = channel && clen == 8 && !memcmp(channel, "analysis", 8) ? HARMONY_REASONING : HARMONY_CONTENT;
}

/* A call's body is complete: a call when it is a JSON object, else content as written. */
static int end_call(struct harmony_stream *hs, const char *body, size_t len)
{
    int rc;

    if (hs->max_calls > 0 && hs->parse.num_calls >= hs->max_calls)
        return 0;   /* past parallel_tool_calls' one call: dropped, as tool_parser_parse does */
    if ((rc = tool_parse_add_call(&hs->parse, TOOL_PARSER_OPENAI, hs->name, body, len)) < 0)
        return rc;
    return rc ? 0 : put(hs, HARMONY_CONTENT, body, len, true);
}

/* One step from hs->at; returns 1 when it moved on, 0 when it must wait for more text,
 * -ENOMEM. */
static int step(struct harmony_stream *hs, bool finished)
{
    const char *s = hs->text.p ? hs->text.p : "";   /* nothing fed yet */
    size_t len = hs->text.len, at = hs->at, rest = len - at;
    int o;

    switch (hs->state) {
    case H_FIRST:
    case H_NEXT:
        hs->msg = at;
        if ((o = opens_marker(hs, at, START)) == 1) {
            hs->at = at + strlen(START);
            hs->state = H_HEADER;
            return 1;
        }
        if (hs->state == H_FIRST) {
            int c = opens_marker(hs, at, CHANNEL), t = opens(s + at, rest, " to=");

            if (c == 1 || t == 1) {
                hs->state = H_HEADER;
                return 1;
            }
            if (c == -1 || t == -1)
                o = -1;
        }
        for (size_t k = 0; k < ARRAY_LEN(stops); k++) {
            int e = opens_marker(hs, at, stops[k]);

            if (e == 1) {
                hs->at = len;
                hs->state = H_DONE;
                return 1;
            }
            if (e == -1)
                o = -1;
        }
        if (!rest || (o == -1 && !finished))
            return 0;
        hs->state = H_PLAIN;
        return 1;
    case H_HEADER: {
        size_t m = find_marker(hs, at, len, MESSAGE), bad = len;

        for (size_t k = 0; k < ARRAY_LEN(body_ends); k++)
            bad = MIN(bad, find_marker(hs, at, m, body_ends[k]));
        if (m < len && bad == m && m - hs->msg <= HEADER_MAX) {
            read_header(hs, at, m);
            hs->at = m + strlen(MESSAGE);
            hs->state = H_BODY;
            if (hs->route != HARMONY_CALL)
                return put(hs, hs->route, NULL, 0, true) ? -ENOMEM : 1;
            return 1;
        }
        if (bad == len && len - hs->msg < HEADER_MAX + strlen(MESSAGE) && !finished)
            return 0;
        /* no header after all: its text is content, and so is all that follows */
        hs->at = hs->msg;
        hs->state = H_PLAIN;
        return 1;
    }
    case H_BODY: {
        size_t end = len, which = 0;

        for (size_t k = 0; k < ARRAY_LEN(body_ends); k++) {
            size_t e = find_marker(hs, at, end, body_ends[k]);

            if (e < end) {
                end = e;
                which = k;
            }
        }
        if (end == len) {
            /* no end yet: hand out what cannot be a marker's start; a call waits whole */
            size_t safe = finished ? len : len - partial_end(hs, at, len);

            if (hs->route == HARMONY_CALL) {
                if (!finished)
                    return 0;
                hs->at = len;
                hs->state = H_DONE;
                return end_call(hs, s + at, rest) ? -ENOMEM : 1;
            }
            if (safe == at)
                return 0;
            hs->at = safe;
            return put(hs, hs->route, s + at, safe - at, false) ? -ENOMEM : 1;
        }
        if (hs->route == HARMONY_CALL ? end_call(hs, s + at, end - at)
                                      : put(hs, hs->route, s + at, end - at, false))
            return -ENOMEM;
        hs->at = end + (body_ends[which] == START ? 0 : strlen(body_ends[which]));
        hs->state = body_ends[which] == RETURN || body_ends[which] == EOT ? H_DONE : H_NEXT;
        return 1;
    }
    case H_PLAIN:
        if (!rest)
            return 0;
        hs->at = len;
        return put(hs, HARMONY_CONTENT, s + at, rest, false) ? -ENOMEM : 1;
    default:
        hs->at = len;   /* after <|return|> nothing is the model's answer */
        return 0;
    }
}

int harmony_stream_feed(struct harmony_stream *hs, const char *s, size_t n, bool finished,
                        struct harmony_delta *d)
{
    int rc;

    memset(d, 0, sizeof *d);
    if (n && buf_put(&hs->text, s, n))
        return -ENOMEM;
    while ((rc = step(hs, finished)) > 0)
        ;
    if (rc < 0)
        return rc;
    d->reasoning = hs->reasoning.p ? hs->reasoning.p + hs->reasoning_sent : "";
    d->reasoning_len = hs->reasoning.len - hs->reasoning_sent;
    d->content = hs->content.p ? hs->content.p + hs->content_sent : "";
    d->content_len = hs->content.len - hs->content_sent;
    d->calls = hs->parse.calls ? hs->parse.calls + hs->calls_sent : NULL;
    d->first_call = (int)hs->calls_sent;
    d->num_calls = hs->parse.num_calls - (int)hs->calls_sent;
    hs->reasoning_sent = hs->reasoning.len;
    hs->content_sent = hs->content.len;
    hs->calls_sent = (size_t)hs->parse.num_calls;
    return 0;
}
