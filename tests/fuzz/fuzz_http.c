/* fuzz_http.c — the hand-written code of server/ that reads or writes client-controlled
 * bytes around the HTTP exchange (libmicrohttpd parses the requests themselves). The first
 * byte's low 2 bits pick the part, its high bits are options; the rest is the input:
 *   0 auth (server/auth.c): an Authorization header, NUL, an API key; auth_bearer and
 *     auth_check against a reading of "Bearer <token>" written here, auth_equal against
 *     memcmp, auth_mask never showing more than 4 characters of a key, none of one shorter
 *     than 16;
 *   1 stream rendering (openai_render.c + sse.c): NUL-separated pieces of token text as the
 *     chunks of a stream (with logprobs whose tokens are the pieces), a usage chunk, an error
 *     event and [DONE], read out in pieces of a fuzzed size; the bytes must be SSE framing
 *     ("data: <one line>\n\n"), every event valid UTF-8 and JSON that parses back, and each
 *     choice's text and logprob bytes exactly the pieces (where the pieces are UTF-8);
 *   2 the stream byte queue (sse.c): events, reads and [DONE] against a plain model of it
 *     (the limit, what is refused, what comes out);
 *   3 the request arena (arena.c): allocations of fuzzed sizes are zeroed, aligned, never
 *     overlap, and absurd sizes are refused. */
#include "tests/fuzz/fuzz.h"

#include <ctype.h>
#include <errno.h>

#include "engine/base/arena.h"
#include "server/auth.h"
#include "server/openai_render.h"
#include "server/sse.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    fuzz_quiet();
    return 0;
}

/* ---- 0: auth ---- */

static bool blank(char c)
{
    return c == ' ' || c == '\t';
}

/* The token of "Bearer <token>" as RFC 6750 reads it (scheme in any case, blanks around),
 * written independently of auth.c: returns whether there is one, with its bounds. */
static bool bearer_model(const char *h, size_t *start, size_t *len)
{
    static const char scheme[] = "bearer";
    size_t n = strlen(h), i = 0, end = n;

    while (i < n && blank(h[i]))
        i++;
    for (size_t k = 0; k < 6; k++, i++)
        if (i >= n || tolower((unsigned char)h[i]) != scheme[k])
            return false;
    if (i >= n || !blank(h[i]))
        return false;
    while (i < n && blank(h[i]))
        i++;
    while (end > i && blank(h[end - 1]))
        end--;
    *start = i;
    *len = end - i;
    return end > i;
}

static void fuzz_auth(const char *in, size_t n, unsigned opts)
{
    const char *h, *k;
    size_t hlen, klen, start = 0, want = 0, len = 0;
    char *header, *key, mask[40];
    const char *token = NULL;
    bool has;
    size_t cap = 1 + opts % sizeof mask;

    fuzz_split((const uint8_t *)in, n, &h, &hlen, &k, &klen);
    header = fuzz_strndup(h, hlen);
    key = fuzz_strndup(k ? k : "sk-test-key-0123", k ? klen : 16);
    klen = strlen(key);

    has = bearer_model(header, &start, &want);
    FUZZ_CHECK((auth_bearer(header, &token, &len) == 0) == has, "auth_bearer on '%.60s'", header);
    if (has)
        FUZZ_CHECK(token == header + start && len == want, "token bounds on '%.60s'", header);
    FUZZ_CHECK(auth_check(header, key) == (has && klen && want == klen && !memcmp(header + start, key, klen)),
               "auth_check '%.60s' against a key of %zu bytes", header, klen);
    FUZZ_CHECK(auth_equal(header, hlen, key, klen) == (hlen == klen && !memcmp(header, key, klen)),
               "auth_equal");
    FUZZ_CHECK(auth_bearer(NULL, &token, &len) != 0 && !auth_check(NULL, key), "no header");

    memset(mask, 'x', sizeof mask);
    auth_mask(key, mask, cap);
    FUZZ_CHECK(memchr(mask, 0, cap) != NULL, "auth_mask ends its text within %zu bytes", cap);
    FUZZ_CHECK(strlen(mask) <= 8 && (klen <= 4 || !strstr(mask, key)), "auth_mask shows '%s'", mask);
    if (cap >= 9)
        FUZZ_CHECK(!klen ? !strcmp(mask, "(none)")
                         : !strncmp(mask, "****", 4) &&
                               (klen < AUTH_MASK_MIN_LEN ? !mask[4] : !strcmp(mask + 4, key + klen - 4)),
                   "auth_mask gives '%s'", mask);
    free(header);
    free(key);
}

/* ---- 1: stream rendering ---- */

#define MAX_PIECES 64
#define NUM_CHOICES 3

struct pieces {
    const char *p[MAX_PIECES];
    size_t len[MAX_PIECES];
    int n;
};

/* A token's text for logprobs: the piece, cut to its UTF-8 part as the tokenizer's decoder
 * (server/openai.c's token_piece) only ever gives UTF-8. */
static size_t piece_len(const struct pieces *ps, int32_t id)
{
    return fuzz_utf8_prefix(ps->p[id], ps->len[id]);
}

static char *piece_cb(void *ctx, int32_t id, size_t *len)
{
    const struct pieces *ps = ctx;

    FUZZ_CHECK(id >= 0 && id < ps->n, "logprobs asked for token %d of %d", id, ps->n);
    *len = piece_len(ps, id);
    return fuzz_strndup(ps->p[id], *len);
}

/* A growing byte string. */
struct bytes {
    char *p;
    size_t len, cap;
};

static void put(struct bytes *b, const char *s, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        b->cap = (b->len + n + 1) * 2;
        if (!(b->p = realloc(b->p, b->cap)))
            abort();
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = 0;
}

/* JSON text holds no raw control byte (RFC 8259 §7): each is escaped. */
static bool no_raw_controls(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20)
            return false;
    return true;
}

static void check_logprobs(const cJSON *lp, bool chat, const struct pieces *ps, int id, int top_n)
{
    if (chat) {
        const cJSON *entry = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(lp, "content"), 0);
        const cJSON *bytes = cJSON_GetObjectItemCaseSensitive(entry, "bytes"), *b;
        const cJSON *top = cJSON_GetObjectItemCaseSensitive(entry, "top_logprobs");
        size_t i = 0;

        FUZZ_CHECK(cJSON_GetArraySize(bytes) == (int)piece_len(ps, id), "bytes of token %d", id);
        cJSON_ArrayForEach(b, bytes)
            FUZZ_CHECK(b->valuedouble == (unsigned char)ps->p[id][i++], "byte %zu of token %d", i - 1, id);
        FUZZ_CHECK(cJSON_GetArraySize(top) == MIN(top_n, ps->n), "top_logprobs of token %d", id);
    } else {
        const cJSON *tokens = cJSON_GetObjectItemCaseSensitive(lp, "tokens");
        const cJSON *offs = cJSON_GetObjectItemCaseSensitive(lp, "text_offset");

        FUZZ_CHECK(cJSON_GetArraySize(tokens) == 1 && cJSON_GetArraySize(offs) == 1, "completion logprobs");
    }
}

static void fuzz_stream(const char *in, size_t n, unsigned opts)
{
    static const struct oai_head heads[2] = {
        { OAI_COMPLETION, "cmpl-fuzz", 1700000000, "tiny", NULL },
        { OAI_CHAT, "chatcmpl-fuzz", 1700000000, "tiny", "fp_fuzz" },
    };
    bool chat = opts & 1, logprobs = opts & 2, usage_null = opts & 4;
    const struct oai_head *h = &heads[chat];
    size_t read_size = 1 + ((opts >> 3) * 37) % 4096, len;
    struct pieces ps = { .n = 0 };
    struct oai_vocab v = { piece_cb, &ps };
    struct oai_usage u = { 7, 5, 3 };
    struct oai_error e;
    struct sample_result *samples;
    struct sse_buf q;
    struct bytes wire = { 0 }, want[NUM_CHOICES] = { { 0 } }, got[NUM_CHOICES] = { { 0 } };
    bool exact[NUM_CHOICES] = { true, true, true };
    int top_n = (int)(opts >> 3) % (SAMPLE_MAX_LOGPROBS + 1), events = 0;
    char buf[4096], *json, *line, *next;
    cJSON *item;

    /* openai_json_string on the raw input, NULs included. */
    item = openai_json_string(in, n);
    FUZZ_CHECK(item && item->valuestring && no_raw_controls(item->valuestring, strlen(item->valuestring)),
               "openai_json_string escapes every control byte");
    cJSON_Delete(item);

    for (size_t at = 0; at <= n && ps.n < MAX_PIECES;) {
        const char *nul = memchr(in + at, 0, n - at);
        size_t plen = nul ? (size_t)(nul - (in + at)) : n - at;

        ps.p[ps.n] = in + at;
        ps.len[ps.n++] = plen;
        at += plen + 1;
    }
    if (!(samples = calloc((size_t)ps.n, sizeof *samples)))
        abort();
    sse_buf_init(&q, 1 << 24);
    for (int i = 0; i < ps.n; i++) {
        int32_t id = i;
        struct oai_choice c = {
            .index = i % NUM_CHOICES, .text = ps.p[i], .text_len = ps.len[i], .ids = &id,
            .samples = logprobs ? &samples[i] : NULL, .num_tokens = 1,
            .finish_reason = i + NUM_CHOICES >= ps.n ? "stop" : NULL, .role = chat && i < NUM_CHOICES,
        };

        samples[i] = (struct sample_result){ .token = id, .logprob = -(float)(i % 7),
                                             .num_top = MIN(ps.n, SAMPLE_MAX_LOGPROBS) };
        for (int k = 0; k < samples[i].num_top; k++) {
            samples[i].top_ids[k] = k;
            samples[i].top_logprobs[k] = -(float)k;
        }
        put(&want[c.index], ps.p[i], ps.len[i]);
        exact[c.index] &= fuzz_utf8_valid(ps.p[i], ps.len[i]);
        json = openai_render_chunk(h, &c, logprobs, top_n, usage_null, &v, &len);
        FUZZ_CHECK(json && strlen(json) == len, "chunk %d rendered", i);
        FUZZ_CHECK(sse_buf_event(&q, json, len) == 0, "chunk %d queued", i);
        free(json);
    }
    json = openai_render_usage_chunk(h, &u, &len);
    FUZZ_CHECK(json && sse_buf_event(&q, json, len) == 0, "usage chunk");
    free(json);
    openai_error(&e, 500, "internal_error", NULL, "The engine failed this request: %.*s",
                 (int)MIN(ps.len[0], 200), ps.p[0]);
    json = openai_render_error(&e, &len);
    FUZZ_CHECK(json && sse_buf_event(&q, json, len) == 0, "error event");
    free(json);
    FUZZ_CHECK(sse_buf_done(&q) == 0, "[DONE]");
    for (size_t r; (r = sse_buf_read(&q, buf, read_size)) > 0;)
        put(&wire, buf, r);
    FUZZ_CHECK(sse_buf_waiting(&q) == 0 && wire.len, "the queue drains");

    /* The wire: events "data: <line>\n\n", the last one [DONE]. */
    for (line = wire.p; *line; line = next) {
        char *end = strstr(line, "\n\n");
        cJSON *o, *choice, *text;

        FUZZ_CHECK(!strncmp(line, "data: ", 6) && end, "event %d is framed", events);
        *end = 0;
        next = end + 2;
        line += 6;
        FUZZ_CHECK(!strpbrk(line, "\r\n"), "event %d is one line", events);
        events++;
        if (!*next) {
            FUZZ_CHECK(!strcmp(line, "[DONE]"), "the stream ends with [DONE]");
            break;
        }
        FUZZ_CHECK((o = cJSON_Parse(line)) != NULL, "event %d is JSON: %.80s", events - 1, line);
        choice = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(o, "choices"), 0);
        if (choice) {
            int index = cJSON_GetObjectItemCaseSensitive(choice, "index")->valueint;

            FUZZ_CHECK(index >= 0 && index < NUM_CHOICES, "choice index %d", index);
            text = chat ? cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(choice, "delta"),
                                                           "content")
                        : cJSON_GetObjectItemCaseSensitive(choice, "text");
            if (text)
                put(&got[index], text->valuestring, strlen(text->valuestring));
            if (logprobs)
                check_logprobs(cJSON_GetObjectItemCaseSensitive(choice, "logprobs"), chat, &ps,
                               events - 1, top_n);
            FUZZ_CHECK(fuzz_utf8_valid(line, strlen(line)), "event %d is UTF-8", events - 1);
        }
        cJSON_Delete(o);
    }
    FUZZ_CHECK(events == ps.n + 3, "%d events for %d chunks", events, ps.n);
    /* Text that is UTF-8 comes back as it was; other bytes as U+FFFD. */
    for (int i = 0; i < NUM_CHOICES; i++)
        FUZZ_CHECK(!exact[i] || (got[i].len == want[i].len && (!got[i].len || !memcmp(got[i].p, want[i].p, got[i].len))),
                   "choice %d's text comes back", i);
    for (int i = 0; i < NUM_CHOICES; i++) {
        free(want[i].p);
        free(got[i].p);
    }
    free(wire.p);
    free(samples);
    sse_buf_fini(&q);
}

/* ---- 2: the stream byte queue against a model ---- */

static void fuzz_queue(const uint8_t *in, size_t n, unsigned opts)
{
    size_t limit = 16 + (size_t)opts * 16, i = 0;
    struct sse_buf q;
    struct bytes model = { 0 };
    size_t off = 0;                      /* model.p[off..len) waits */
    char out[512];

    sse_buf_init(&q, limit);
    while (i < n) {
        unsigned op = in[i] & 3, arg = i + 1 < n ? in[i + 1] : 0;

        i += 2;
        if (op <= 1) {
            size_t len = op ? arg * 8 : arg, take = MIN(len, n - MIN(i, n));
            size_t waiting = model.len - off, need = 6 + take + 2;
            int rc = sse_buf_event(&q, (const char *)in + MIN(i, n), take);
            bool fits = take <= limit && waiting + need <= limit;

            FUZZ_CHECK(rc == (fits ? 0 : -ENOBUFS), "event of %zu bytes, %zu waiting, limit %zu: %d",
                       take, waiting, limit, rc);
            if (fits) {
                put(&model, "data: ", 6);
                put(&model, (const char *)in + MIN(i, n), take);
                put(&model, "\n\n", 2);
            }
        } else if (op == 2) {
            size_t r = sse_buf_read(&q, out, 1 + arg), expect = MIN(1 + (size_t)arg, model.len - off);

            FUZZ_CHECK(r == expect && (!r || !memcmp(out, model.p + off, r)), "read of %u", 1 + arg);
            off += r;
        } else {
            FUZZ_CHECK(sse_buf_done(&q) == 0, "[DONE] always fits");
            put(&model, "data: [DONE]\n\n", 14);
        }
        FUZZ_CHECK(sse_buf_waiting(&q) == model.len - off, "waiting");
    }
    free(model.p);
    sse_buf_fini(&q);
}

/* ---- 3: the arena ---- */

/* Whether p[0..n) all hold v. Not instrumented: the fuzzer learns nothing from our own
 * checks, and tracing every compare made the arena part 20 times slower. */
__attribute__((noinline, no_sanitize("coverage")))
static bool all_bytes(const unsigned char *p, size_t n, unsigned char v)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] != v)
            return false;
    return true;
}

static void fuzz_arena(const uint8_t *in, size_t n, unsigned opts)
{
    struct arena a;
    unsigned char *p[256];
    size_t size[256], sum = 0;
    int count = 0;

    arena_init(&a);
    for (size_t i = 0; i + 2 < n && count < 256; i += 3) {
        size_t s = (size_t)in[i + 1] | (size_t)in[i + 2] << 8;
        unsigned char *q;

        switch (in[i] & 7) {
        case 0:
            q = arena_alloc(&a, s);               /* up to 64 KiB: blocks of their own */
            break;
        case 1:
        case 2:
            q = arena_alloc(&a, s &= 0x3ff);     /* small: bumps in a shared block */
            break;
        case 3:
            q = arena_calloc(&a, s & 0xff, s >> 8);
            s = (s & 0xff) * (s >> 8);
            break;
        case 4:
            s = MIN(s, n - i);
            q = (unsigned char *)arena_strndup(&a, (const char *)in + i, s);
            FUZZ_CHECK(q && !memcmp(q, in + i, s) && !q[s], "strndup of %zu bytes", s);
            s++;
            break;
        case 5:
            /* Sizes that wrap around when rounded up or multiplied (others reach malloc). */
            FUZZ_CHECK(!arena_alloc(&a, SIZE_MAX - s % 16) && !arena_calloc(&a, SIZE_MAX / 2 + 1 + s, 2 + (s & 1)),
                       "absurd sizes are refused");
            continue;
        default:
            FUZZ_CHECK(!arena_strndup(&a, "", SIZE_MAX), "strndup of SIZE_MAX");
            continue;
        }
        /* Strings are packed byte by byte; everything else starts on 16 bytes. */
        FUZZ_CHECK(q && ((in[i] & 7) == 4 || ((uintptr_t)q & 15) == 0), "allocation %d of %zu bytes is aligned",
                   count, s);
        if (sum + s > (256 << 10))
            break;     /* enough to check: the rest only slows the search down */
        FUZZ_CHECK((in[i] & 7) == 4 || all_bytes(q, s, 0), "allocation %d is zeroed", count);
        memset(q, count & 0xff, s);
        p[count] = q;
        size[count++] = s;
        sum += s;
    }
    FUZZ_CHECK(a.total_bytes >= sum, "total_bytes %zu counts %zu", a.total_bytes, sum);
    for (int k = 0; k < count; k++)
        FUZZ_CHECK(all_bytes(p[k], size[k], k & 0xff), "allocation %d was overwritten", k);
    arena_fini(&a);
    FUZZ_CHECK(!a.head && !a.total_bytes, "fini empties");
    (void)opts;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    unsigned opts;

    if (size < 1)
        return 0;
    opts = data[0] >> 2;
    switch (data[0] & 3) {
    case 0: fuzz_auth((const char *)data + 1, size - 1, opts); break;
    case 1: fuzz_stream((const char *)data + 1, size - 1, opts); break;
    case 2: fuzz_queue(data + 1, size - 1, opts); break;
    default: fuzz_arena(data + 1, size - 1, opts); break;
    }
    return 0;
}
