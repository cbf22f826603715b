/* openai.c — /v1/completions and /v1/chat/completions: parse and validate, prepare the
 * prompts, then submit one engine request per choice (prompt i, choice j → index i*n + j,
 * with a seed: seed + index). The engine's callbacks (engine thread) only append to the
 * choice's pending output under the job's lock and wake the connection; responses and
 * stream chunks are rendered here on the HTTP threads.
 * A job lives as long as its HTTP request (server/http.c): the connection and every
 * unfinished engine request hold a reference, the last one out frees it. */
#include "server/openai.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "engine/engine.h"
#include "engine/base/log.h"
#include "engine/tokenizer/tokenizer.h"
#include "server/api.h"
#include "server/metrics.h"
#include "server/openai_render.h"
#include "server/responses.h"
#include "server/sse.h"

struct job;

struct choice {
    struct job *job;
    int index;                       /* OpenAI's choice index */
    int prompt;                      /* into job->req.prompts */
    uint64_t engine_id;
    bool submitted;
    /* engine → HTTP, under job->lock */
    struct sse_pending out;          /* all of it (non-streamed) or since the last chunk */
    bool finished;
    enum finish_reason reason;
    char error[256];
    int num_prompt_tokens, num_output_tokens, num_cached_tokens;
    /* HTTP side only (streams) */
    struct sse_pending held;         /* taken from out, not sent yet: the text goes at once,
                                        a token waits while its text_offset could still
                                        change (it lies in text held back for a stop string) */
    size_t text_sent;                /* bytes of generated text sent so far */
    bool final_sent;
    struct tool_stream tools;        /* chat with tool_choice auto: the output read for calls */
    struct harmony_stream harmony;   /* gpt-oss: the output read for reasoning, content, calls */
};

struct job {
    struct api *api;
    struct http_request *r;
    struct oai_request req;
    char id[48];                     /* "cmpl-…" / "chatcmpl-…" */
    int64_t created;
    char **prefixes;                 /* [num_prompts] echo: the prompt's text (arena), else NULL */
    size_t *prefix_lens;

    pthread_mutex_t lock;
    struct choice *choices;          /* [num_choices] */
    int num_choices;
    int num_open;                    /* submitted and not finished */
    size_t pending_bytes;            /* all choices' pending output */
    size_t out_waiting;              /* sse_buf_waiting(&out), published for the bound */
    bool overflow;                   /* a stream passed stream_buffer_bytes, or an answer
                                        max_response_bytes (or memory ran out): aborted, cut */
    bool too_large;                  /* non-streamed: the answer passed max_response_bytes */
    size_t answer_bytes;             /* non-streamed: the answer's size so far, estimated */

    /* streams, HTTP side only */
    struct sse_buf out;
    bool done_sent;
    struct resp_stream rs;           /* /v1/responses: the event stream's state */
    struct grammar *grammar;         /* a reference while the job lives, or NULL */
};

/* ---- finish reasons ---- */

static enum metrics_finish finish_metric(enum finish_reason f)
{
    switch (f) {
    case FINISH_LENGTH: return METRICS_LENGTH;
    case FINISH_ABORT: return METRICS_ABORT;
    case FINISH_ERROR: return METRICS_ERROR;
    default: return METRICS_STOP;
    }
}

/* ---- the job ---- */

static struct job *job_new(struct api *a, struct http_request *r, enum oai_kind kind, bool responses)
{
    struct job *j = calloc(1, sizeof *j);
    unsigned char rnd[16];
    int n;

    if (!j)
        return NULL;
    j->api = a;
    j->r = r;
    openai_request_init(&j->req);
    pthread_mutex_init(&j->lock, NULL);
    sse_buf_init(&j->out, 2 * a->stream_buffer_bytes + 65536);
    j->created = (int64_t)time(NULL);
    if (getrandom(rnd, sizeof rnd, 0) != (ssize_t)sizeof rnd) {
        /* No entropy yet (early boot): the request number keeps ids unique per process. */
        unsigned long long id = http_request_id(r);

        memset(rnd, 0, sizeof rnd);
        memcpy(rnd, &id, sizeof id);
    }
    n = snprintf(j->id, sizeof j->id, "%s", responses ? "resp_" : kind == OAI_CHAT ? "chatcmpl-" : "cmpl-");
    for (int i = 0; i < 16; i++)
        n += snprintf(j->id + n, sizeof j->id - (size_t)n, "%02x", rnd[i]);
    return j;
}

static void job_free(void *p)
{
    struct job *j = p;

    for (int i = 0; i < j->num_choices; i++) {
        sse_pending_fini(&j->choices[i].out);
        sse_pending_fini(&j->choices[i].held);
        tool_stream_fini(&j->choices[i].tools);
        harmony_stream_fini(&j->choices[i].harmony);
    }
    free(j->choices);
    sse_buf_fini(&j->out);
    resp_stream_fini(&j->rs);
    grammar_unref(j->grammar);
    openai_request_fini(&j->req);
    pthread_mutex_destroy(&j->lock);
    free(j);
}

/* Aborts every submitted choice. The ids are read under the lock (the engine thread may
 * call this while the HTTP thread still submits) and aborted outside it. */
static void job_abort(struct job *j)
{
    uint64_t ids[64];
    bool live[64];
    int n;

    for (int from = 0; from < j->num_choices; from += n) {
        n = 0;
        pthread_mutex_lock(&j->lock);
        for (int i = from; i < j->num_choices && n < (int)ARRAY_LEN(ids); i++, n++) {
            ids[n] = j->choices[i].engine_id;
            live[n] = j->choices[i].submitted && !j->choices[i].finished;
        }
        pthread_mutex_unlock(&j->lock);
        for (int i = 0; i < n; i++)
            if (live[i])
                engine_abort(j->api->engine, ids[i]);
    }
}

/* ops->closed: the connection is done or the client left. Aborting finished requests is a
 * no-op (engine_abort ignores unknown ids). */
static void job_closed(void *p)
{
    job_abort(p);
}

/* Usage over the choices: each prompt counted once (its first choice), outputs summed. */
static void usage_of(const struct job *j, struct oai_usage *u)
{
    memset(u, 0, sizeof *u);
    for (int i = 0; i < j->num_choices; i++) {
        const struct choice *c = &j->choices[i];

        if (c->index % j->req.n == 0) {
            u->prompt_tokens += c->num_prompt_tokens;
            u->cached_tokens += c->num_cached_tokens;
        }
        u->completion_tokens += c->num_output_tokens;
        u->reasoning_tokens += c->harmony.reasoning_tokens;   /* 0 unless read as harmony */
    }
}

/* ---- the size of a non-streamed answer ---- */

/* What a token adds to a non-streamed answer, estimated low on purpose: admission refuses
 * only an answer sure to pass the bound, and what it lets through is bounded as it grows
 * (and, exactly, as it is rendered). Measured on the tiny model: 68 bytes per logprob entry
 * in chat ({"token","logprob","bytes"} objects, 20 top logprobs), 30 in completions (a
 * "piece":logprob pair and the token's own lists), about 3 bytes of text per token. A
 * token's text counts 2 bytes before it exists, and what it is once it does. */
#define ANSWER_TEXT_BYTES 2

static size_t entry_bytes(const struct oai_request *q)
{
    return q->kind == OAI_CHAT ? 56 : 24;
}

static size_t logprob_bytes(const struct oai_request *q)
{
    return q->logprobs ? entry_bytes(q) * (1 + (size_t)q->top_logprobs) : 0;
}

/* ---- the engine side (engine thread): keep it short ---- */

static void output_cb(void *user, const struct engine_output *o)
{
    struct choice *c = user;
    struct job *j = c->job;
    struct api *a = j->api;
    struct oai_usage u;
    bool cut = false, wake;

    pthread_mutex_lock(&j->lock);
    if (!j->overflow) {
        size_t before = sse_pending_bytes(&c->out);

        if (sse_pending_append(&c->out, o->text, o->text_len, o->token_ids,
                               j->req.logprobs ? o->samples : NULL, o->text_offsets, o->num_tokens))
            cut = true;
        j->pending_bytes += sse_pending_bytes(&c->out) - before;
        if (j->req.stream && j->pending_bytes + j->out_waiting > a->stream_buffer_bytes)
            cut = true;
        if (!j->req.stream) {
            j->answer_bytes += o->text_len + (size_t)o->num_tokens * logprob_bytes(&j->req);
            if (a->max_response_bytes && j->answer_bytes > a->max_response_bytes)
                cut = j->too_large = true;
        }
        j->overflow = cut;
    }
    c->num_prompt_tokens = o->num_prompt_tokens;
    c->num_output_tokens = o->num_output_tokens;
    c->num_cached_tokens = o->num_cached_tokens;
    if (o->finished) {
        c->finished = true;
        c->reason = o->finish_reason;
        snprintf(c->error, sizeof c->error, "%s", o->error ? o->error : "");
        j->num_open--;
    }
    wake = j->req.stream || j->num_open == 0;
    usage_of(j, &u);
    pthread_mutex_unlock(&j->lock);
    /* The access log reads these when the connection ends, which may be before the last
     * token (a client that leaves mid-stream): they are kept current. */
    http_request_tokens(j->r, u.prompt_tokens, u.completion_tokens);

    if (o->finished) {
        double ttft = o->first_token_s > 0 ? o->first_token_s - o->arrival_s : -1;
        double tpot = o->num_output_tokens > 1 && o->first_token_s > 0
                          ? (o->now_s - o->first_token_s) / (o->num_output_tokens - 1) : -1;

        metrics_request_done(a->metrics, finish_metric(o->finish_reason), ttft, tpot,
                             o->now_s - o->arrival_s);
    }
    if (cut) {
        /* The client reads slower than we generate, or the answer outgrew its bound: stop,
         * rather than buffer without end. */
        if (j->req.stream)
            LOG(LL_WARN, "api", "req %llu: stream output passed stream-buffer-bytes (%zu); aborting",
                http_request_id(j->r), a->stream_buffer_bytes);
        else
            LOG(LL_WARN, "api", "req %llu: the answer passed max-response-bytes (%zu); aborting",
                http_request_id(j->r), a->max_response_bytes);
        job_abort(j);
    }
    if (wake)
        http_wake(j->r);
    if (o->finished)
        http_unref(j->r);
}

/* ---- answers ---- */

/* A token's raw bytes: logprobs report them in "bytes", and as a string (U+FFFD for each
 * byte that is not part of a whole character) in "token". */
static char *token_piece(void *ctx, int32_t id, size_t *len)
{
    char *bytes = NULL;

    if (tokenizer_token_bytes(ctx, id, &bytes, len))
        return NULL;
    return bytes;
}

/* The name the request gave when it is served (vLLM's choice), else the first one. */
static const char *model_of(const struct job *j)
{
    return j->req.model && openai_model_served(&j->api->cfg, j->req.model) ? j->req.model
                                                                          : j->api->cfg.served_model;
}

static void head_of(const struct job *j, struct oai_head *h)
{
    *h = (struct oai_head){ j->req.kind, j->id, j->created, model_of(j), NULL };
}

/* An error that ended a choice: the engine's failure (503 when the engine is dead, else
 * 500), or an abort while the daemon shuts down. NULL when every choice ended normally. */
static bool failure_of(const struct job *j, struct oai_error *e)
{
    for (int i = 0; i < j->num_choices; i++) {
        const struct choice *c = &j->choices[i];
        struct engine_stats st;

        if (c->reason == FINISH_ERROR) {
            engine_get_stats(j->api->engine, &st);
            openai_error(e, st.healthy ? 500 : 503, st.healthy ? "internal_error" : "engine_dead", NULL,
                         "The engine failed this request: %s", c->error[0] ? c->error : "unknown error");
            return true;
        }
        if (c->reason == FINISH_ABORT) {
            openai_error(e, 503, "shutting_down", NULL,
                         "The request was aborted (the server is shutting down).");
            return true;
        }
    }
    return false;
}

static void log_outputs(const struct job *j)
{
    if (!j->api->log_prompts)
        return;
    for (int i = 0; i < j->num_choices; i++)
        LOG(LL_DEBUG, "api", "req %llu choice %d output: %.*s", http_request_id(j->r),
            j->choices[i].index, (int)MIN(j->choices[i].out.text_len, 4096),
            j->choices[i].out.text ? j->choices[i].out.text : "");
}

/* The answer outgrew max_response_bytes while it was generated or rendered. */
static void too_large(const struct job *j, int tokens, struct oai_error *e)
{
    openai_error(e, 400, "response_too_large", NULL,
                 "The answer passed the server's max-response-bytes (%zu bytes) after %d tokens: "
                 "ask for fewer tokens, choices or logprobs, or stream it (\"stream\": true).",
                 j->api->max_response_bytes, tokens);
}

/* ops->resume, non-streamed: answers once every choice is finished. */
static void job_resume(void *p, struct http_request *r)
{
    struct job *j = p;
    struct oai_choice *cs;
    struct tool_parse *tps = NULL;
    char **joined = NULL;
    struct oai_usage u;
    struct oai_error e;
    struct oai_vocab v = { token_piece, (void *)j->api->tok };
    struct oai_head h;
    char *body = NULL;
    size_t len = 0;
    int open, rc;
    bool tools = openai_tools_active(&j->req), harmony = openai_harmony_active(&j->req), nomem = false;

    pthread_mutex_lock(&j->lock);
    open = j->num_open;
    pthread_mutex_unlock(&j->lock);
    if (open > 0)
        return;                      /* not all there yet: wait for the next wake */
    usage_of(j, &u);
    http_request_tokens(r, u.prompt_tokens, u.completion_tokens);
    if (j->overflow) {
        if (j->too_large)
            too_large(j, u.completion_tokens, &e);
        else
            openai_error(&e, 500, "internal_error", NULL, "out of memory");
        http_respond_error(r, &e);
        return;
    }
    if (failure_of(j, &e)) {
        http_respond_error(r, &e);
        return;
    }
    log_outputs(j);
    cs = calloc((size_t)j->num_choices, sizeof *cs);
    if (tools) {
        tps = calloc((size_t)j->num_choices, sizeof *tps);
        joined = calloc((size_t)j->num_choices, sizeof *joined);
    }
    if (!cs || (tools && (!tps || !joined))) {
        free(cs);
        free(tps);
        free(joined);
        openai_error(&e, 500, "internal_error", NULL, "out of memory");
        http_respond_error(r, &e);
        return;
    }
    for (int i = 0; i < j->num_choices; i++) {
        const struct choice *c = &j->choices[i];

        cs[i] = (struct oai_choice){
            .index = c->index, .text = c->out.text, .text_len = c->out.text_len, .ids = c->out.ids,
            .samples = c->out.samples, .offsets = c->out.offsets, .num_tokens = c->out.num_tokens,
            .offset_end = c->out.text_len, .finish_reason = finish_reason_name(c->reason),
        };
        if (j->prefixes) {
            cs[i].prefix = j->prefixes[c->prompt];
            cs[i].prefix_len = j->prefix_lens[c->prompt];
            cs[i].offset_base = cs[i].prefix_len;
        }
        if (tools && openai_tools_apply(&j->req, &cs[i], &tps[i], &joined[i]))
            nomem = true;
        /* the choice's own stream, unused when not streaming (init'ed with the job) */
        harmony_stream_fini(&j->choices[i].harmony);
        if (harmony && openai_harmony_apply(&j->req, j->api->tok, &cs[i], &j->choices[i].harmony))
            nomem = true;
    }
    usage_of(j, &u);   /* again: the harmony reads counted the reasoning tokens */
    head_of(j, &h);
    rc = nomem ? -ENOMEM : 0;
    if (!rc && j->req.responses) {
        struct resp_head rh = { j->id, j->created, model_of(j), &j->req };
        struct resp_output ro = { cs[0].text, cs[0].text_len, cs[0].tool_calls, cs[0].num_tool_calls,
                                  cs[0].finish_reason, cs[0].reasoning, cs[0].reasoning_len };

        rc = responses_render(&rh, &ro, &u, j->api->max_response_bytes, &body, &len);
    } else if (!rc) {
        rc = openai_render_response(&h, cs, j->num_choices, &u, j->req.logprobs, j->req.top_logprobs,
                                    &v, j->api->max_response_bytes, &body, &len);
    }
    for (int i = 0; tools && i < j->num_choices; i++) {
        tool_parse_fini(&tps[i]);
        free(joined[i]);
    }
    free(tps);
    free(joined);
    free(cs);
    if (rc == -E2BIG) {
        too_large(j, u.completion_tokens, &e);
        http_respond_error(r, &e);
        return;
    }
    if (rc) {
        openai_error(&e, 500, "internal_error", NULL, "out of memory");
        http_respond_error(r, &e);
        return;
    }
    http_respond(r, 200, "application/json", body, len);
}

/* Queues one rendered chunk (*len bytes: a pointer, since the renderer in the same call's
 * arguments sets it); false when out of memory or past the byte queue's bound. */
static bool queue_event(struct job *j, char *json, const size_t *len)
{
    bool ok = json && sse_buf_event(&j->out, json, *len) == 0;

    free(json);
    return ok;
}

/* Queues a Responses renderer's events (rc: its return) and frees them. */
static bool queue_resp_events(struct job *j, int rc, char **ev, size_t *lens, int n)
{
    bool ok = rc == 0;

    for (int i = 0; ok && i < n; i++)
        ok = sse_buf_event(&j->out, ev[i], lens[i]) == 0;
    resp_events_free(ev, lens, n);
    return ok;
}

/* The chunks a stream opens with: chat's role per choice, completions' echoed prompt. */
static bool stream_open(struct job *j)
{
    struct oai_head h;
    size_t len;

    if (j->req.responses) {
        struct resp_head rh = { j->id, j->created, model_of(j), &j->req };
        char **ev = NULL;
        size_t *lens = NULL;
        int n = 0, rc;

        resp_stream_init(&j->rs, openai_harmony_active(&j->req));
        rc = resp_stream_open(&j->rs, &rh, &ev, &lens, &n);
        return queue_resp_events(j, rc, ev, lens, n);
    }
    head_of(j, &h);
    for (int i = 0; i < j->num_choices; i++) {
        struct choice *c = &j->choices[i];
        struct oai_choice oc = { .index = c->index, .role = j->req.kind == OAI_CHAT };

        if (j->req.kind == OAI_CHAT || j->prefixes) {
            if (j->prefixes) {
                oc.text = j->prefixes[c->prompt];
                oc.text_len = j->prefix_lens[c->prompt];
                /* Chat echo with tools: the echoed message may itself start a call. */
                if (openai_tools_active(&j->req) &&
                    tool_stream_feed(&c->tools, j->req.tool_parser, oc.text, oc.text_len, &oc.text,
                                     &oc.text_len))
                    return false;
            }
            if (!queue_event(j, openai_render_chunk(&h, &oc, false, 0, j->req.include_usage, NULL, &len),
                             &len))
                return false;
        }
    }
    return true;
}

/* Each call as OpenAI streams it: its head (index, id, type, name) in one delta, then its
 * arguments; calls[k] is the message's call first + k. */
static bool queue_calls(struct job *j, const struct oai_head *h, int index, const struct tool_call *calls,
                        int first, int n)
{
    bool ok = true;
    size_t len;

    for (int k = 0; ok && k < n; k++) {
        struct oai_choice call = { .index = index, .tool_calls = &calls[k], .num_tool_calls = 1,
                                   .tool_call_index = first + k, .tool_delta = OAI_TOOL_DELTA_HEAD };

        ok = queue_event(j, openai_render_chunk(h, &call, false, 0, j->req.include_usage, NULL, &len), &len);
        call.tool_delta = OAI_TOOL_DELTA_ARGUMENTS;
        ok = ok && queue_event(j, openai_render_chunk(h, &call, false, 0, j->req.include_usage, NULL, &len), &len);
    }
    return ok;
}

/* gpt-oss: reasoning and content deltas in chunks of their own (within one delivery the
 * reasoning first: an analysis message precedes the answer), each call once complete, and
 * the finish ("tool_calls" after calls). */
static bool stream_harmony(struct job *j, struct choice *c, const struct oai_head *h,
                           const struct sse_pending *got, bool finished, enum finish_reason reason)
{
    struct harmony_delta d;
    bool ok;
    size_t len;

    ok = openai_harmony_feed(&c->harmony, got->text, got->text_len, got->ids, got->offsets, got->num_tokens,
                             finished, &d) == 0;
    if (ok && d.reasoning_len) {
        struct oai_choice oc = { .index = c->index, .reasoning = d.reasoning, .reasoning_len = d.reasoning_len };

        ok = queue_event(j, openai_render_chunk(h, &oc, false, 0, j->req.include_usage, NULL, &len), &len);
    }
    if (ok && d.content_len) {
        struct oai_choice oc = { .index = c->index, .text = d.content, .text_len = d.content_len };

        ok = queue_event(j, openai_render_chunk(h, &oc, false, 0, j->req.include_usage, NULL, &len), &len);
    }
    ok = ok && queue_calls(j, h, c->index, d.calls, d.first_call, d.num_calls);
    if (ok && finished) {
        struct oai_choice end = { .index = c->index, .finish_reason = finish_reason_name(
                                      c->harmony.parse.num_calls ? FINISH_TOOL_CALLS : reason) };

        ok = queue_event(j, openai_render_chunk(h, &end, false, 0, j->req.include_usage, NULL, &len), &len);
    }
    return ok;
}

/* A chat choice read for tool calls: content goes out once it cannot start a call; at the
 * end, the rest of the content, each call (its head, then its arguments) and the finish
 * reason ("tool_calls" when there are calls) in a chunk of its own. */
static bool stream_tools(struct job *j, struct choice *c, const struct oai_head *h,
                         const struct sse_pending *got, bool finished, enum finish_reason reason)
{
    struct oai_choice oc = { .index = c->index };
    struct tool_parse tp = { 0 };
    bool ok;
    size_t len;

    ok = tool_stream_feed(&c->tools, j->req.tool_parser, got->text, got->text_len, &oc.text,
                          &oc.text_len) == 0;
    if (ok && finished) {
        const char *rest;
        size_t rest_len = 0;

        /* The rest starts where feed's part ends, in the same buffer: one chunk for both. */
        ok = tool_stream_finish(&c->tools, &j->req, &tp, &rest, &rest_len) == 0;
        oc.text_len += rest_len;
    }
    if (ok && oc.text_len)
        ok = queue_event(j, openai_render_chunk(h, &oc, false, 0, j->req.include_usage, NULL, &len), &len);
    ok = ok && queue_calls(j, h, c->index, tp.calls, 0, tp.num_calls);
    if (ok && finished) {
        struct oai_choice end = { .index = c->index,
                                  .finish_reason = finish_reason_name(tp.num_calls ? FINISH_TOOL_CALLS : reason) };

        ok = queue_event(j, openai_render_chunk(h, &end, false, 0, j->req.include_usage, NULL, &len), &len);
    }
    tool_parse_fini(&tp);
    return ok;
}

/* /v1/responses: text deltas (through the tool-call hold-back when tools are on), and at
 * the end the closing events with the calls and the usage. */
static bool stream_responses(struct job *j, struct choice *c, const struct sse_pending *got, bool finished,
                             enum finish_reason reason)
{
    struct resp_head rh = { j->id, j->created, model_of(j), &j->req };
    struct tool_parse tp = { 0 };
    const char *text = got->text;
    size_t text_len = got->text_len;
    char **ev = NULL;
    size_t *lens = NULL;
    int n = 0, rc = 0;
    bool ok;

    if (openai_harmony_active(&j->req)) {
        struct harmony_delta d;

        /* the reasoning as it comes (an item before the message); calls at the end */
        rc = openai_harmony_feed(&c->harmony, got->text, got->text_len, got->ids, got->offsets,
                                 got->num_tokens, finished, &d);
        if (rc == 0) {
            rc = resp_stream_reasoning(&j->rs, d.reasoning, d.reasoning_len, &ev, &lens, &n);
            if (!queue_resp_events(j, rc, ev, lens, n))
                return false;
        }
        text = d.content;
        text_len = d.content_len;
    } else if (openai_tools_active(&j->req)) {
        rc = tool_stream_feed(&c->tools, j->req.tool_parser, got->text, got->text_len, &text, &text_len);
        if (!rc && finished) {
            const char *rest;
            size_t rest_len = 0;

            rc = tool_stream_finish(&c->tools, &j->req, &tp, &rest, &rest_len);
            text_len += rest_len;
        }
    }
    /* (the renderer runs before the queueing: its outputs are the queue's arguments) */
    if (rc == 0)
        rc = resp_stream_delta(&j->rs, text, text_len, &ev, &lens, &n);
    ok = queue_resp_events(j, rc, ev, lens, n);
    if (ok && finished) {
        const struct harmony_stream *hs = &c->harmony;
        bool harmony = openai_harmony_active(&j->req);
        const struct tool_parse *calls = harmony ? &hs->parse : &tp;
        struct resp_output ro = { NULL, 0, calls->calls, calls->num_calls,
                                  finish_reason_name(calls->num_calls ? FINISH_TOOL_CALLS : reason), NULL, 0 };
        struct oai_usage u;

        usage_of(j, &u);
        rc = resp_stream_close(&j->rs, &rh, &ro, &u, &ev, &lens, &n);
        ok = queue_resp_events(j, rc, ev, lens, n);
    }
    tool_parse_fini(&tp);
    return ok;
}

/* Renders what the engine delivered since the last call into the byte queue. */
static bool stream_fill(struct job *j)
{
    struct oai_vocab v = { token_piece, (void *)j->api->tok };
    struct oai_head h;
    bool ok = true, all_done;
    size_t len;

    head_of(j, &h);
    for (int i = 0; ok && i < j->num_choices; i++) {
        struct choice *c = &j->choices[i];
        struct sse_pending got;
        bool finished;
        enum finish_reason reason;
        char error[256];

        if (c->final_sent)
            continue;
        sse_pending_init(&got);
        pthread_mutex_lock(&j->lock);
        j->pending_bytes -= sse_pending_bytes(&c->out);
        sse_pending_take(&c->out, &got);
        finished = c->finished;
        reason = c->reason;
        memcpy(error, c->error, sizeof error);
        pthread_mutex_unlock(&j->lock);

        if (finished && reason == FINISH_ERROR) {
            struct oai_error e;

            openai_error(&e, 500, "internal_error", NULL, "The engine failed this request: %s",
                         error[0] ? error : "unknown error");
            ok = queue_event(j, openai_render_error(&e, &len), &len);
        } else if (j->req.responses) {
            ok = stream_responses(j, c, &got, finished, reason);
        } else if (openai_tools_active(&j->req)) {
            ok = stream_tools(j, c, &h, &got, finished, reason);
        } else if (openai_harmony_active(&j->req)) {
            ok = stream_harmony(j, c, &h, &got, finished, reason);
        } else if (sse_pending_append(&c->held, got.text, got.text_len, got.ids, got.samples,
                                      got.offsets, got.num_tokens)) {
            ok = false;
        } else if (c->held.text_len || c->held.num_tokens || finished) {
            struct sse_pending *hd = &c->held;
            size_t end = c->text_sent + hd->text_len;   /* generated text sent after this chunk */
            int k = 0;

            /* A token goes out once its text_offset is final: at or before the end of the
             * text sent, which no stop string can cut any more. One whose offset lies in
             * text still held back waits, so that a stream's offsets are the
             * non-streamed answer's. */
            while (k < hd->num_tokens && (finished || !hd->samples || hd->offsets[k] <= end))
                k++;
            struct oai_choice oc = {
                .index = c->index, .text = hd->text, .text_len = hd->text_len, .ids = hd->ids,
                .samples = hd->samples, .offsets = hd->offsets, .num_tokens = k,
                .offset_base = j->prefixes ? j->prefix_lens[c->prompt] : 0, .offset_end = end,
                .finish_reason = finished ? finish_reason_name(reason) : NULL,
            };

            /* Tokens without text (held back until a character completes): nothing to say
             * yet, unless logprobs report them. */
            if (hd->text_len || finished || (j->req.logprobs && k))
                ok = queue_event(j, openai_render_chunk(&h, &oc, j->req.logprobs, j->req.top_logprobs,
                                                        j->req.include_usage, &v, &len), &len);
            c->text_sent = end;
            sse_pending_drop(hd, k);
        }
        c->final_sent = finished;
        sse_pending_fini(&got);
    }
    all_done = true;
    for (int i = 0; i < j->num_choices; i++)
        all_done = all_done && j->choices[i].final_sent;
    if (ok && all_done && !j->done_sent) {
        struct oai_usage u;

        usage_of(j, &u);
        http_request_tokens(j->r, u.prompt_tokens, u.completion_tokens);
        if (j->req.include_usage)
            ok = queue_event(j, openai_render_usage_chunk(&h, &u, &len), &len);
        ok = ok && (j->req.responses || sse_buf_done(&j->out) == 0);   /* Responses: no [DONE] */
        j->done_sent = true;
        log_outputs(j);
    }
    return ok;
}

/* ops->read: one stream's bytes for MHD. */
static ssize_t job_read(void *p, char *buf, size_t max)
{
    struct job *j = p;
    bool overflow;
    size_t n;

    pthread_mutex_lock(&j->lock);
    overflow = j->overflow;
    pthread_mutex_unlock(&j->lock);
    if (overflow)
        return HTTP_STREAM_ERROR;    /* the client fell behind by stream-buffer-bytes */
    if (!sse_buf_waiting(&j->out) && !stream_fill(j))
        return HTTP_STREAM_ERROR;
    n = sse_buf_read(&j->out, buf, max);
    pthread_mutex_lock(&j->lock);
    j->out_waiting = sse_buf_waiting(&j->out);
    pthread_mutex_unlock(&j->lock);
    if (n)
        return (ssize_t)n;
    return j->done_sent ? HTTP_STREAM_END : 0;
}

static const struct http_job_ops job_ops = { job_resume, job_read, job_closed, job_free };

/* ---- submission ---- */

/* Compiles (or finds in the cache) the grammar the request asks for; a grammar we cannot
 * compile is the client's error, named by its field. */
static int compile_grammar(struct job *j, struct oai_error *e)
{
    struct oai_request *q = &j->req;
    char err[ERR_LEN] = "";
    int rc;

    if (!q->has_grammar)
        return 0;
    if (!j->api->grammars)
        return openai_error(e, 400, "unsupported_parameter", q->grammar_param,
                            "Unsupported parameter: '%s': this server has no tokenizer to constrain "
                            "the output with.", q->grammar_param);
    rc = grammar_cache_get(j->api->grammars, q->grammar_kind, q->grammar_src, q->grammar_len,
                           &j->grammar, err);
    if (rc == -ENOMEM)
        return openai_error(e, 500, "internal_error", NULL, "out of memory");
    if (rc)
        return openai_error(e, 400, "invalid_value", q->grammar_param, "Invalid '%s': %s",
                            q->grammar_param, err);
    q->params.grammar = j->grammar;
    return 0;
}

/* engine_submit's refusal as an OpenAI error. */
static void submit_error(struct http_request *r, int rc, const char *err, struct oai_error *e)
{
    switch (rc) {
    case -EAGAIN:
        http_add_header(r, "Retry-After", "1");
        openai_error(e, 503, "overloaded", NULL,
                     "The server is overloaded (the waiting queue is full); retry later.");
        break;
    case -ESHUTDOWN:
        openai_error(e, 503, "shutting_down", NULL, "The server is shutting down.");
        break;
    case -EIO:
        openai_error(e, 503, "engine_dead", NULL, "The engine failed and cannot serve.");
        break;
    case -E2BIG:
    case -EINVAL:
        openai_error(e, 400, "invalid_value", NULL, "%s", err[0] ? err : "The request cannot be served.");
        break;
    default:
        openai_error(e, 500, "internal_error", NULL, "%s", err[0] ? err : "The engine refused the request.");
    }
}

/* Echo: each prompt's text, decoded from its ids when it came as ids. */
static int echo_prefixes(struct job *j, struct oai_error *e)
{
    struct oai_request *q = &j->req;

    j->prefixes = arena_calloc(&q->arena, (size_t)q->num_prompts, sizeof *j->prefixes);
    j->prefix_lens = arena_calloc(&q->arena, (size_t)q->num_prompts, sizeof *j->prefix_lens);
    if (!j->prefixes || !j->prefix_lens)
        return openai_error(e, 500, "internal_error", NULL, "out of memory");
    for (int i = 0; i < q->num_prompts; i++) {
        char *text = NULL;
        size_t len = 0;

        if (q->prompts[i].text) {
            j->prefixes[i] = (char *)q->prompts[i].text;
            j->prefix_lens[i] = q->prompts[i].text_len;
            continue;
        }
        if (tokenizer_decode(j->api->tok, q->prompts[i].ids, q->prompts[i].num_ids,
                             q->params.skip_special_tokens, &text, &len, NULL))
            return openai_error(e, 500, "internal_error", NULL, "Tokenizer: cannot decode the prompt");
        j->prefixes[i] = arena_strndup(&q->arena, text, len);
        j->prefix_lens[i] = len;
        free(text);
        if (!j->prefixes[i])
            return openai_error(e, 500, "internal_error", NULL, "out of memory");
    }
    return 0;
}

/* Chat echo: the last message's content comes back before each choice's output. */
static int chat_echo_prefix(struct job *j, struct oai_error *e)
{
    struct oai_request *q = &j->req;

    j->prefixes = arena_calloc(&q->arena, 1, sizeof *j->prefixes);
    j->prefix_lens = arena_calloc(&q->arena, 1, sizeof *j->prefix_lens);
    if (!j->prefixes || !j->prefix_lens)
        return openai_error(e, 500, "internal_error", NULL, "out of memory");
    j->prefixes[0] = (char *)q->chat_echo;
    j->prefix_lens[0] = strlen(q->chat_echo);
    return 0;
}

/* Submits every choice. On a refusal the ones already in are aborted; their callbacks
 * still come and find the job alive (attached to the request). */
static int submit_all(struct job *j, const int *max_tokens, struct oai_error *e)
{
    struct oai_request *q = &j->req;
    char err[ERR_LEN];

    for (int i = 0; i < j->num_choices; i++) {
        struct choice *c = &j->choices[i];
        struct gen_params p = q->params;
        struct engine_request_desc d = {
            .prompt = q->prompts[c->prompt].ids, .num_prompt = q->prompts[c->prompt].num_ids,
            .params = &p, .cb = output_cb, .user = c,
        };
        uint64_t id = 0;
        int rc;

        p.max_tokens = max_tokens[c->prompt];
        if (p.has_seed)
            p.seed += (uint64_t)c->index;
        err[0] = '\0';
        http_ref(j->r);                      /* the engine request's, dropped by its final callback */
        pthread_mutex_lock(&j->lock);
        j->num_open++;
        pthread_mutex_unlock(&j->lock);
        rc = engine_submit(j->api->engine, &d, &id, err);
        pthread_mutex_lock(&j->lock);
        if (rc)
            j->num_open--;
        c->engine_id = id;
        c->submitted = rc == 0;
        pthread_mutex_unlock(&j->lock);
        if (rc) {
            http_unref(j->r);
            submit_error(j->r, rc, err, e);
            job_abort(j);
            return rc;
        }
    }
    return 0;
}

/* A non-streamed answer is built whole in memory: one that could pass max_response_bytes
 * (every choice at its max_tokens, estimated per token) is refused before it starts. */
static int check_answer_size(const struct job *j, const int *max_tokens, struct oai_error *e)
{
    const struct oai_request *q = &j->req;
    size_t limit = j->api->max_response_bytes, per_token = ANSWER_TEXT_BYTES + logprob_bytes(q);
    double tokens = 0;

    for (int i = 0; i < q->num_prompts; i++)
        tokens += (double)q->n * max_tokens[i];
    if (!limit || tokens * (double)per_token <= (double)limit)
        return 0;
    return openai_error(e, 400, "response_too_large", "max_tokens",
                        "The answer could reach about %.0f bytes (%.0f tokens over %d choices at "
                        "about %zu bytes each%s), more than the server's max-response-bytes "
                        "(%zu bytes): ask for fewer tokens, choices or top_logprobs, or stream it "
                        "(\"stream\": true).",
                        tokens * (double)per_token, tokens, q->num_prompts * q->n, per_token,
                        q->logprobs ? " with their logprobs" : "", limit);
}

static void handle(struct http_request *r, struct api *a, enum oai_kind kind, bool responses)
{
    struct job *j = job_new(a, r, kind, responses);
    struct oai_request *q;
    struct oai_error e;
    size_t len;
    const char *body = http_request_body(r, &len);
    int *max_tokens = NULL, rc;

    if (!j) {
        openai_error(&e, 500, "internal_error", NULL, "out of memory");
        http_respond_error(r, &e);
        return;
    }
    q = &j->req;
    rc = responses ? responses_parse(q, body, len, &a->cfg, &e)
         : kind == OAI_CHAT ? openai_parse_chat(q, body, len, &a->cfg, &e)
                            : openai_parse_completion(q, body, len, &a->cfg, &e);
    if (!rc)
        rc = compile_grammar(j, &e);
    if (!rc)
        rc = api_prepare_prompts(a, q, &e);
    if (!rc && !(max_tokens = arena_calloc(&q->arena, (size_t)q->num_prompts, sizeof *max_tokens)))
        rc = openai_error(&e, 500, "internal_error", NULL, "out of memory");
    for (int i = 0; !rc && i < q->num_prompts; i++) {
        if ((rc = openai_fit_context(q, q->prompts[i].num_ids, &a->cfg, &max_tokens[i], &e)) &&
            q->num_prompts > 1)
            snprintf(e.message + strlen(e.message), sizeof e.message - strlen(e.message), " (prompt %d)", i);
        if (!rc && a->log_prompts)
            LOG(LL_DEBUG, "api", "req %llu prompt %d (%d tokens): %.*s", http_request_id(r), i,
                q->prompts[i].num_ids, (int)MIN(q->prompts[i].text_len, 4096),
                q->prompts[i].text ? q->prompts[i].text : "(token ids)");
    }
    if (!rc && !q->stream)
        rc = check_answer_size(j, max_tokens, &e);
    if (!rc && q->echo && kind == OAI_COMPLETION)
        rc = echo_prefixes(j, &e);
    if (!rc && q->chat_echo)
        rc = chat_echo_prefix(j, &e);
    j->num_choices = q->num_prompts * q->n;
    if (!rc && !(j->choices = calloc((size_t)j->num_choices, sizeof *j->choices)))
        rc = openai_error(&e, 500, "internal_error", NULL, "out of memory");
    if (rc) {
        j->num_choices = 0;
        http_respond_error(r, &e);
        job_free(j);
        return;
    }
    for (int i = 0; i < j->num_choices; i++) {
        j->choices[i].job = j;
        j->choices[i].index = i;
        j->choices[i].prompt = i / q->n;
        sse_pending_init(&j->choices[i].out);
        openai_harmony_init(q, a->tok, &j->choices[i].harmony);
    }
    http_attach(r, &job_ops, j);             /* from here on the request owns the job */
    if (submit_all(j, max_tokens, &e)) {
        http_respond_error(r, &e);
        return;
    }
    if (!q->stream) {
        http_defer(r, &job_ops, j);
    } else if (!stream_open(j)) {
        openai_error(&e, 500, "internal_error", NULL, "out of memory");
        job_abort(j);
        http_respond_error(r, &e);
    } else {
        http_stream(r, &job_ops, j);
    }
}

void openai_completions(struct http_request *r, void *app)
{
    handle(r, app, OAI_COMPLETION, false);
}

void openai_chat_completions(struct http_request *r, void *app)
{
    handle(r, app, OAI_CHAT, false);
}

void openai_responses(struct http_request *r, void *app)
{
    handle(r, app, OAI_CHAT, true);
}
