/* fuzz_harmony.c — model outputs through gpt-oss's harmony reader (server/harmony.c). The
 * first byte: bit 0 reads calls (tools on), bit 1 keeps one call (parallel_tool_calls
 * false), bits 2–7 the stream's piece size − 1; the second: bit 0 reads by ids, bits 1–7
 * which markers' spellings are their tokens (the k-th spelling is when bit 1 + k % 7 is
 * set; the others are ordinary one-byte tokens); the other bytes are the output. Checked
 * beyond "no crash": the output fed in pieces (each with the tokens that start in it) gives
 * exactly the reasoning, content, calls and reasoning tokens the whole output gives; every call has a name and arguments that parse back as a
 * JSON object, none without tools, at most one when asked; reasoning and content are pieces
 * of the output (no longer than it, plus a newline per message) and valid UTF-8 when it is. */
#include "tests/fuzz/fuzz.h"

#include <cjson/cJSON.h>

#include "server/harmony.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fuzz_quiet();
    return 0;
}

/* Everything a reader gave, joined. */
struct got {
    struct buf reasoning, content;
    int num_calls;
};

static void take(struct got *g, const struct harmony_delta *d)
{
    if (buf_put(&g->reasoning, d->reasoning, d->reasoning_len) || buf_put(&g->content, d->content, d->content_len))
        abort();
    FUZZ_CHECK(d->first_call == g->num_calls, "call %d after %d", d->first_call, g->num_calls);
    g->num_calls += d->num_calls;
}

static bool same(const struct buf *a, const struct buf *b)
{
    return a->len == b->len && (!a->len || !memcmp(a->p, b->p, a->len));
}

/* The output as tokens: at each byte, a marker's spelling chosen by mode's bits is the
 * marker's token (id: its index in harmony_markers), else the byte is a token (id 1000).
 * Returns the count; ids and offsets hold len entries. */
static int tokens_of(const char *text, size_t len, unsigned mode, int32_t *ids, size_t *offsets)
{
    int n = 0, k = 0;

    for (size_t at = 0; at < len;) {
        size_t w = 1;

        ids[n] = 1000;
        for (int m = 0; m < HARMONY_NUM_MARKERS; m++) {
            size_t ml = strlen(harmony_markers[m]);

            if (ml <= len - at && !memcmp(text + at, harmony_markers[m], ml)) {
                if (mode >> (1 + k++ % 7) & 1) {
                    ids[n] = m;
                    w = ml;
                }
                break;
            }
        }
        offsets[n++] = at;
        at += w;
    }
    return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const int32_t marker_ids[HARMONY_NUM_MARKERS] = { 0, 1, 2, 3, 4, 5, 6, 7 };
    int32_t *ids;
    size_t *offsets;
    int num_tokens = 0, fed = 0;
    unsigned mode;
    struct harmony_stream whole, pieces;
    struct harmony_delta d;
    struct got w = { 0 }, p = { 0 };
    const char *text;
    size_t len, step;
    bool calls;
    int max_calls;

    if (size < 2)
        return 0;
    calls = data[0] & 1;
    max_calls = data[0] & 2 ? 1 : 0;
    step = 1 + (data[0] >> 2);
    mode = data[1];
    text = (const char *)data + 2;
    len = size - 2;
    ids = malloc((len + 1) * sizeof *ids);
    offsets = malloc((len + 1) * sizeof *offsets);
    if (!ids || !offsets)
        abort();
    num_tokens = tokens_of(text, len, mode, ids, offsets);

    harmony_stream_init(&whole, calls, max_calls);
    harmony_stream_init(&pieces, calls, max_calls);
    if (mode & 1) {
        harmony_stream_use_ids(&whole, marker_ids);
        harmony_stream_use_ids(&pieces, marker_ids);
    }
    if (harmony_stream_tokens(&whole, ids, offsets, num_tokens) || harmony_stream_feed(&whole, text, len, true, &d))
        abort();
    take(&w, &d);
    for (size_t at = 0; at < len; at += step) {
        size_t end = at + MIN(step, len - at);
        int k = fed;

        while (k < num_tokens && offsets[k] < end)
            k++;
        if (harmony_stream_tokens(&pieces, ids + fed, offsets + fed, k - fed) ||
            harmony_stream_feed(&pieces, text + at, end - at, false, &d))
            abort();
        fed = k;
        take(&p, &d);
    }
    if (harmony_stream_feed(&pieces, NULL, 0, true, &d))
        abort();
    take(&p, &d);

    FUZZ_CHECK(same(&w.reasoning, &p.reasoning), "reasoning %zu bytes whole, %zu in pieces of %zu",
               w.reasoning.len, p.reasoning.len, step);
    FUZZ_CHECK(same(&w.content, &p.content), "content %zu bytes whole, %zu in pieces of %zu", w.content.len,
               p.content.len, step);
    FUZZ_CHECK(w.num_calls == p.num_calls, "calls %d whole, %d in pieces", w.num_calls, p.num_calls);
    FUZZ_CHECK(whole.reasoning_tokens == pieces.reasoning_tokens && whole.reasoning_tokens <= num_tokens,
               "reasoning tokens %d whole, %d in pieces, of %d", whole.reasoning_tokens, pieces.reasoning_tokens,
               num_tokens);
    FUZZ_CHECK(calls || !w.num_calls, "%d calls without tools", w.num_calls);
    FUZZ_CHECK(!max_calls || w.num_calls <= 1, "%d calls past max_calls 1", w.num_calls);
    for (int i = 0; i < w.num_calls; i++) {
        const struct tool_call *c = &whole.parse.calls[i], *q = &pieces.parse.calls[i];
        cJSON *args = cJSON_Parse(c->arguments);

        FUZZ_CHECK(c->name[0] && c->id[0], "call %d", i);
        FUZZ_CHECK(!strcmp(c->name, q->name) && !strcmp(c->arguments, q->arguments), "call %d differs", i);
        FUZZ_CHECK(cJSON_IsObject(args), "call %d arguments %s", i, c->arguments);
        cJSON_Delete(args);
    }
    FUZZ_CHECK(w.reasoning.len + w.content.len <= len + len / 7, "%zu + %zu bytes out of %zu", w.reasoning.len,
               w.content.len, len);
    if (fuzz_utf8_valid(text, len))
        FUZZ_CHECK(fuzz_utf8_valid(w.reasoning.p ? w.reasoning.p : "", w.reasoning.len) &&
                   fuzz_utf8_valid(w.content.p ? w.content.p : "", w.content.len), "not UTF-8 out of UTF-8");
    harmony_stream_fini(&whole);
    harmony_stream_fini(&pieces);
    free(ids);
    free(offsets);
    buf_fini(&w.reasoning);
    buf_fini(&w.content);
    buf_fini(&p.reasoning);
    buf_fini(&p.content);
    return 0;
}
